//! The NVMe Copy engine: one controller copies between blocks of its
//! subsystem. Within one namespace with source range descriptors of format
//! 0h; between two namespaces with format 2h (each range names its source
//! namespace), once enabled with Set Features Host Behavior Support (CDFE).
//! The copy is split into Copy commands within the destination namespace's
//! limits ([`plan_copy`], pure): MSSRL blocks per source range, MCL blocks
//! per command, MSRC + 1 ranges per command.

use super::offload::{OffloadError, OffloadReport};
use crate::nvme::{self, NvmeNs};
use crate::progress::Progress;
use oxcopy_nvme::wire::nvm::{CopyFormat, CopyRange, COPY_MAX_RANGES};

/// NLB is 16 bits, 0's based: at most this many blocks per source range.
pub const MAX_RANGE_BLOCKS: u64 = 65536;

/// A namespace's Copy limits (Identify Namespace), 0 meaning "not limited".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyLimits {
    /// MSSRL: blocks per source range.
    pub mssrl: u64,
    /// MCL: blocks per Copy command.
    pub mcl: u64,
    /// MSRC + 1: source ranges per Copy command.
    pub max_ranges: u64,
}

/// One Copy command: its source ranges `(slba, blocks)`, written one after
/// the other from `sdlba`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyCommand {
    pub sdlba: u64,
    pub ranges: Vec<(u64, u32)>,
}

impl CopyCommand {
    /// Blocks the command copies.
    pub fn blocks(&self) -> u64 {
        self.ranges.iter().map(|r| r.1 as u64).sum()
    }
}

/// Split a copy of `blocks` blocks from `src_lba` to `dst_lba` into Copy
/// commands within `l`.
pub fn plan_copy(src_lba: u64, dst_lba: u64, blocks: u64, l: CopyLimits) -> Vec<CopyCommand> {
    let per_range = match l.mssrl {
        0 => MAX_RANGE_BLOCKS,
        n => n.min(MAX_RANGE_BLOCKS),
    };
    let per_range = if l.mcl > 0 { per_range.min(l.mcl) } else { per_range };
    let ranges = l.max_ranges.clamp(1, COPY_MAX_RANGES as u64);
    let per_cmd = match l.mcl {
        0 => per_range * ranges,
        n => n.min(per_range * ranges),
    };
    let mut out = Vec::new();
    let mut done = 0u64;
    while done < blocks {
        let n = per_cmd.min(blocks - done);
        let mut cmd = CopyCommand { sdlba: dst_lba + done, ranges: Vec::new() };
        let mut k = 0;
        while k < n {
            let r = per_range.min(n - k);
            cmd.ranges.push((src_lba + done + k, r as u32));
            k += r;
        }
        out.push(cmd);
        done += n;
    }
    out
}

/// The destination namespace's limits.
pub fn limits(n: &NvmeNs) -> CopyLimits {
    let g = &n.geometry;
    CopyLimits { mssrl: g.mssrl as u64, mcl: g.mcl as u64, max_ranges: g.max_ranges as u64 }
}

/// Copy `bytes` from byte `src_off` of `src` to byte `dst_off` of `dst`
/// (two namespaces on one controller, same block size).
pub async fn copy(
    src: &NvmeNs,
    src_off: u64,
    dst: &NvmeNs,
    dst_off: u64,
    bytes: u64,
    progress: &Progress,
) -> Result<OffloadReport, OffloadError> {
    let c = &dst.ctl.ctrl;
    let bs = dst.block_size() as u64;
    if src.block_size() as u64 != bs || bs == 0 {
        return Err(OffloadError::new("the namespaces' block sizes differ", 0));
    }
    let same = src.nsid() == dst.nsid();
    let format = if same { CopyFormat::F0 } else { CopyFormat::F2 };
    let mut report = OffloadReport {
        copy_manager: format!("controller {} of {}", c.cntlid, dst.ctl.nqn),
        copy_format: Some(format!("{:x}h", format.0)),
        ..Default::default()
    };
    if !same {
        c.enable_copy_formats(0b100).await.map_err(|e| {
            OffloadError::new(
                format!("enabling Copy format 2h (Set Features Host Behavior Support): {}", nvme::describe(&e)),
                0,
            )
        })?;
    }
    let plan = plan_copy(src_off / bs, dst_off / bs, bytes / bs, limits(dst));
    let mut done = 0u64;
    for cmd in plan {
        let r = if same {
            c.copy(dst.nsid(), cmd.sdlba, &cmd.ranges).await
        } else {
            let ranges: Option<Vec<CopyRange>> =
                cmd.ranges.iter().map(|&(s, n)| CopyRange::new(src.nsid(), s, n)).collect();
            match ranges {
                Some(rs) => c.copy_ranges(dst.nsid(), cmd.sdlba, CopyFormat::F2, &rs).await,
                None => return Err(OffloadError::new("internal error: a Copy range of 0 blocks", done)),
            }
        };
        report.commands += 1;
        let what =
            |why: String| format!("Copy of {} blocks to LBA {} of {}: {why}", cmd.blocks(), cmd.sdlba, dst.name());
        match r {
            Ok(comp) if comp.cqe.status.is_success() => {}
            Ok(comp) => return Err(OffloadError::new(what(nvme::describe_status(comp.cqe.status)), done)),
            Err(e) => return Err(OffloadError::new(what(nvme::describe(&e)), done)),
        }
        let n = cmd.blocks() * bs;
        done += n;
        progress.inc(n);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(mssrl: u64, mcl: u64, max_ranges: u64) -> CopyLimits {
        CopyLimits { mssrl, mcl, max_ranges }
    }

    #[test]
    fn one_command_when_it_fits() {
        let p = plan_copy(0, 1000, 100, l(128, 1024, 8));
        assert_eq!(p, vec![CopyCommand { sdlba: 1000, ranges: vec![(0, 100)] }]);
        assert!(plan_copy(5, 6, 0, l(1, 1, 1)).is_empty());
    }

    #[test]
    fn ranges_within_mssrl_and_commands_within_mcl_and_msrc() {
        // 1000 blocks, 128 per range, 4 ranges (512 blocks) per command.
        let p = plan_copy(10, 5000, 1000, l(128, 0, 4));
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].ranges, vec![(10, 128), (138, 128), (266, 128), (394, 128)]);
        assert_eq!(p[0].sdlba, 5000);
        assert_eq!(p[1].sdlba, 5512);
        assert_eq!(p[1].ranges, vec![(522, 128), (650, 128), (778, 128), (906, 104)]);
        // MCL smaller than the ranges allow.
        let p = plan_copy(0, 0, 1000, l(128, 300, 8));
        assert_eq!(p.iter().map(CopyCommand::blocks).collect::<Vec<_>>(), vec![300, 300, 300, 100]);
        assert_eq!(p[0].ranges, vec![(0, 128), (128, 128), (256, 44)]);
        // MCL smaller than MSSRL: ranges no longer than MCL.
        let p = plan_copy(0, 0, 10, l(128, 4, 8));
        assert!(p.iter().all(|c| c.blocks() <= 4 && c.ranges.len() == 1), "{p:?}");
        // No limits: 65536-block ranges, 256 per command.
        let p = plan_copy(0, 0, 1 << 20, l(0, 0, 256));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].ranges.len(), 16);
        assert!(p[0].ranges.iter().all(|r| r.1 == 65536));
        // Every block exactly once, in order.
        for lim in [l(7, 50, 3), l(1, 1, 1), l(65535, 100_000, 256)] {
            let p = plan_copy(3, 9, 1234, lim);
            let mut next = 3;
            for (i, c) in p.iter().enumerate() {
                assert!(c.ranges.len() as u64 <= lim.max_ranges && c.blocks() <= lim.mcl, "{i}: {c:?}");
                assert_eq!(c.sdlba, 9 + (next - 3));
                for &(s, n) in &c.ranges {
                    assert_eq!(s, next);
                    assert!(n as u64 <= lim.mssrl && n > 0);
                    next += n as u64;
                }
            }
            assert_eq!(next, 3 + 1234);
        }
    }
}
