//! `oxcopy-nvme-copy-bench`: copy blocks between NVMe namespaces (or within
//! one) over our NVMe/TCP host, the controller copying (NVMe Copy) or the
//! host (Read + Write), timed and reported as one line
//!
//! ```text
//! RESULT mode=<offload|host> bytes=<n> secs=<x> mib_s=<x> wire_bytes=<n> commands=<n> wire_per_command=<n>
//! ```
//!
//! ```text
//! oxcopy-nvme-copy-bench [--host] [-m QD] [--chunk BYTES] [--queues N] [--digests]
//!                        --copy SRC_NSID:SLBA DST_NSID:DLBA BLOCKS nvme+tcp://host[:port]/subsystem-nqn
//! ```
//!
//! Offload (the default): the ranges are split within the namespace's
//! limits (MSSRL blocks per range, MCL blocks and MSRC+1 ranges per
//! command), as many ranges per Copy command as fit; descriptor format 0h
//! within one namespace, 2h across namespaces (enabled first with Host
//! Behavior Support, before the timing and the wire count start). `--host`: `QD` chunks of `--chunk` bytes (at most
//! MDTS and 65536 blocks) in flight, each read then written. `wire_bytes`
//! counts both directions of every connection of the controller during the
//! copy (keep-alive is off, so nothing else is on the wire); `commands` is
//! the Copy commands, or the Reads plus Writes. Exit status: 0 on success,
//! 2 on a usage error, 10 on an NVMe error.

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use oxcopy_initiator::nvme::{NvmeConfig, NvmeController};
use oxcopy_nvme::wire::command::Opcode;
use oxcopy_nvme::wire::nvm::{rw_sqe, CopyFormat, CopyRange};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most ranges a plan may hold (bounds memory for tiny copy limits).
const MAX_PLANNED_RANGES: u64 = 1 << 24;

/// NVMe copy benchmark: NVMe Copy commands or a host copy over NVMe/TCP.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// What to copy: SRC_NSID:SLBA DST_NSID:DLBA BLOCKS.
    #[arg(long, num_args = 3, value_names = ["SRC_NSID:SLBA", "DST_NSID:DLBA", "BLOCKS"], required = true)]
    copy: Vec<String>,
    /// Copy through the host (Read + Write) instead of NVMe Copy commands.
    #[arg(long)]
    host: bool,
    /// Commands in flight (host: chunks, each read then written).
    #[arg(short = 'm', long = "max", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    queue_depth: u32,
    /// Host copy: bytes per Read/Write (rounded down to whole blocks, at most MDTS).
    #[arg(long, default_value_t = 1 << 20)]
    chunk: u64,
    /// I/O queues (TCP connections).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    queues: u16,
    /// Header and data digests (CRC32C).
    #[arg(long)]
    digests: bool,
    /// nvme+tcp://host[:port]/subsystem-nqn
    url: String,
}

/// `NSID:LBA`.
fn parse_place(s: &str) -> Result<(u32, u64)> {
    let (ns, lba) = s.split_once(':').ok_or_else(|| anyhow!("expected NSID:LBA, got {s:?}"))?;
    let ns: u32 = ns.parse().with_context(|| format!("bad namespace ID in {s:?}"))?;
    if ns == 0 || ns == u32::MAX {
        bail!("namespace ID {ns} is not a namespace");
    }
    Ok((ns, lba.parse().with_context(|| format!("bad LBA in {s:?}"))?))
}

/// One Copy command: destination LBA and `(slba, blocks)` source ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CopyCmd {
    sdlba: u64,
    ranges: Vec<(u64, u32)>,
}

/// Split `blocks` blocks at `slba` → `dlba` into Copy commands within the
/// limits: `mssrl` blocks per range, `mcl` blocks and `max_ranges` ranges
/// per command.
fn plan(slba: u64, dlba: u64, blocks: u64, mssrl: u32, mcl: u32, max_ranges: usize) -> Result<Vec<CopyCmd>> {
    if mssrl == 0 || mcl == 0 || max_ranges == 0 {
        bail!("the namespace does not copy (MSSRL {mssrl}, MCL {mcl}, {max_ranges} ranges)");
    }
    // A range's NLB field holds at most 65536 blocks.
    let per_range = u64::from(mssrl.min(1 << 16).min(mcl));
    if blocks.div_ceil(per_range) > MAX_PLANNED_RANGES {
        bail!("{blocks} blocks in ranges of {per_range} blocks: too many ranges");
    }
    let mut out = Vec::new();
    let mut done = 0u64;
    while done < blocks {
        let sdlba = dlba + done;
        let mut ranges = Vec::new();
        let mut in_cmd = 0u64;
        while done < blocks && ranges.len() < max_ranges && in_cmd < u64::from(mcl) {
            let n = per_range.min(blocks - done).min(u64::from(mcl) - in_cmd);
            ranges.push((slba + done, n as u32));
            done += n;
            in_cmd += n;
        }
        out.push(CopyCmd { sdlba, ranges });
    }
    Ok(out)
}

fn report(mode: &str, bytes: u64, secs: f64, wire: u64, commands: u64) {
    let mib_s = bytes as f64 / (1 << 20) as f64 / secs.max(1e-9);
    println!(
        "RESULT mode={mode} bytes={bytes} secs={secs:.6} mib_s={mib_s:.1} wire_bytes={wire} commands={commands} \
         wire_per_command={}",
        wire / commands.max(1)
    );
}

fn wire_total(c: &NvmeController) -> u64 {
    let (s, r) = c.wire_bytes();
    s + r
}

/// NVMe Copy commands, `qd` in flight.
async fn offload(ctrl: Arc<NvmeController>, src: (u32, u64), dst: (u32, u64), blocks: u64, qd: u32) -> Result<u64> {
    let g = ctrl.namespace(dst.0).await.with_context(|| format!("Identify Namespace {}", dst.0))?;
    let cmds = plan(src.1, dst.1, blocks, u32::from(g.mssrl), g.mcl, usize::from(g.max_ranges))?;
    let format = if src.0 == dst.0 { CopyFormat::F0 } else { CopyFormat::F2 };
    let cmds = Arc::new(cmds);
    let next = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..qd.min(cmds.len() as u32) {
        let (ctrl, cmds, next) = (ctrl.clone(), cmds.clone(), next.clone());
        let snsid = src.0;
        let dnsid = dst.0;
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(c) = cmds.get(i) else { return Ok::<(), anyhow::Error>(()) };
                let rs: Option<Vec<CopyRange>> = c.ranges.iter().map(|&(s, n)| CopyRange::new(snsid, s, n)).collect();
                let rs = rs.ok_or_else(|| anyhow!("a Copy range does not fit NLB"))?;
                let done = ctrl.copy_ranges(dnsid, c.sdlba, format, &rs).await.context("Copy")?;
                if !done.cqe.status.is_success() {
                    bail!(
                        "Copy to LBA {} ({} ranges) failed: status {}, DW0 {:#x}",
                        c.sdlba,
                        rs.len(),
                        done.cqe.status,
                        done.cqe.result
                    );
                }
            }
        }));
    }
    for h in handles {
        h.await.map_err(|e| anyhow!("copy task failed: {e}"))??;
    }
    Ok(cmds.len() as u64)
}

/// Read + Write through the host, `qd` chunks in flight.
async fn host_copy(
    ctrl: Arc<NvmeController>,
    src: (u32, u64),
    dst: (u32, u64),
    blocks: u64,
    qd: u32,
    chunk: u64,
) -> Result<u64> {
    let g = ctrl.namespace(src.0).await.with_context(|| format!("Identify Namespace {}", src.0))?;
    let bs = u64::from(g.block_size);
    // MDTS: 2^MDTS pages of 4 KiB (CAP.MPSMIN 0); 0 is no limit.
    let mdts = match ctrl.identify.mdts {
        0 => u64::MAX,
        m => 4096u64 << m.min(32),
    };
    let per = (chunk.min(mdts) / bs).clamp(1, 1 << 16);
    let next = Arc::new(AtomicU64::new(0));
    let commands = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..qd {
        let (ctrl, next, commands) = (ctrl.clone(), next.clone(), commands.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let off = next.fetch_add(per, Ordering::Relaxed);
                if off >= blocks {
                    return Ok::<(), anyhow::Error>(());
                }
                let n = per.min(blocks - off) as u32;
                let bs = bs as u32;
                let rd = rw_sqe(Opcode::READ, 0, src.0, src.1 + off, n, bs, false)
                    .ok_or_else(|| anyhow!("a Read of {n} blocks does not fit a command"))?;
                let c = ctrl.io(rd, None, n * bs).await.context("Read")?;
                let data = c.ok().with_context(|| format!("Read at LBA {}", src.1 + off))?;
                if data.len() != (n * bs) as usize {
                    bail!("Read at LBA {} returned {} of {} bytes", src.1 + off, data.len(), n * bs);
                }
                let wr = rw_sqe(Opcode::WRITE, 0, dst.0, dst.1 + off, n, bs, false)
                    .ok_or_else(|| anyhow!("a Write of {n} blocks does not fit a command"))?;
                let c = ctrl.io(wr, Some(data), 0).await.context("Write")?;
                c.ok().with_context(|| format!("Write at LBA {}", dst.1 + off))?;
                commands.fetch_add(2, Ordering::Relaxed);
            }
        }));
    }
    let mut first = None;
    for h in handles {
        let r = h.await.map_err(|e| anyhow!("copy task failed: {e}")).and_then(|r| r);
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(commands.load(Ordering::Relaxed)),
    }
}

async fn run(args: Args) -> Result<()> {
    let [src, dst, blocks] = args.copy.as_slice() else {
        bail!("--copy takes SRC_NSID:SLBA DST_NSID:DLBA BLOCKS");
    };
    let src = parse_place(src)?;
    let dst = parse_place(dst)?;
    let blocks: u64 = blocks.parse().with_context(|| format!("bad block count {blocks:?}"))?;
    if blocks == 0 {
        bail!("nothing to copy (0 blocks)");
    }
    let url = oxcopy_bench::parse_nvme_url(&args.url)?;
    if url.nsid.is_some() {
        bail!("the URL names the subsystem only (namespaces are in --copy): {}", args.url);
    }
    let addr = oxcopy_bench::resolve(&url.host, url.port)?;
    let cfg = NvmeConfig {
        io_queues: args.queues,
        header_digest: args.digests,
        data_digest: args.digests,
        kato_ms: 0,
        keep_alive: false,
        timeout: Duration::from_secs(3600),
        ..NvmeConfig::default()
    };
    let ctrl =
        NvmeController::connect(addr, &url.nqn, &cfg).await.with_context(|| format!("connect to {}", args.url))?;
    let gs = ctrl.namespace(src.0).await.with_context(|| format!("Identify Namespace {}", src.0))?;
    let gd = ctrl.namespace(dst.0).await.with_context(|| format!("Identify Namespace {}", dst.0))?;
    if gs.block_size != gd.block_size {
        bail!(
            "block sizes differ: {} (namespace {}) and {} (namespace {})",
            gs.block_size,
            src.0,
            gd.block_size,
            dst.0
        );
    }
    for (what, (ns, lba), g) in [("source", src, gs), ("destination", dst, gd)] {
        if lba.checked_add(blocks).is_none_or(|end| end > g.blocks) {
            bail!("{what} {lba}+{blocks} is past the end of namespace {ns} ({} blocks)", g.blocks);
        }
    }
    if src.0 == dst.0 && src.1 < dst.1 + blocks && dst.1 < src.1 + blocks {
        bail!("source and destination ranges overlap");
    }
    if !args.host && src.0 != dst.0 {
        // Before the clock and the wire count start: once per controller.
        ctrl.enable_copy_formats(1 << 2).await.context("enabling Copy descriptor format 2h (Host Behavior Support)")?;
    }
    let bytes = blocks * u64::from(gs.block_size);
    let ctrl = Arc::new(ctrl);
    let w0 = wire_total(&ctrl);
    let t = Instant::now();
    let r = if args.host {
        host_copy(ctrl.clone(), src, dst, blocks, args.queue_depth, args.chunk).await
    } else {
        offload(ctrl.clone(), src, dst, blocks, args.queue_depth).await
    };
    let secs = t.elapsed().as_secs_f64();
    let wire = wire_total(&ctrl) - w0;
    if let Some(c) = Arc::into_inner(ctrl) {
        let _ = tokio::time::timeout(Duration::from_secs(5), c.shutdown()).await;
    }
    let commands = r?;
    report(if args.host { "host" } else { "offload" }, bytes, secs, wire, commands);
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oxcopy-nvme-copy-bench: cannot start the runtime: {e}");
            return ExitCode::from(10);
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oxcopy-nvme-copy-bench: {e:#}");
            ExitCode::from(10)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places() {
        assert_eq!(parse_place("1:0").unwrap(), (1, 0));
        assert_eq!(parse_place("2:8388608").unwrap(), (2, 8_388_608));
        assert!(parse_place("0:5").is_err());
        assert!(parse_place("1").is_err());
        assert!(parse_place("x:1").is_err());
        assert!(parse_place("1:-1").is_err());
    }

    #[test]
    fn plans_stay_within_the_limits() {
        // 4 GiB of 4 KiB blocks with the daemon's defaults: one command.
        let p = plan(0, 0, 1 << 20, 65535, 1 << 24, 128).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].ranges.len(), 17);
        assert_eq!(p[0].ranges.iter().map(|r| u64::from(r.1)).sum::<u64>(), 1 << 20);
        // 512-byte blocks: 129 ranges, two commands.
        let p = plan(10, 1000, 1 << 23, 65535, 1 << 24, 128).unwrap();
        assert_eq!((p.len(), p[0].ranges.len(), p[1].ranges.len()), (2, 128, 1));
        assert_eq!(p[1].sdlba, 1000 + 128 * 65535);
        assert_eq!(p[1].ranges[0].0, 10 + 128 * 65535);
        // MCL smaller than a range, and ranges cut by MCL.
        let p = plan(0, 0, 25, 8, 10, 4).unwrap();
        let shapes: Vec<Vec<u32>> = p.iter().map(|c| c.ranges.iter().map(|r| r.1).collect()).collect();
        assert_eq!(shapes, vec![vec![8, 2], vec![8, 2], vec![5]]);
        assert_eq!(p.iter().map(|c| c.sdlba).collect::<Vec<_>>(), vec![0, 10, 20]);
        assert!(plan(0, 0, 1, 0, 1, 1).is_err());
        assert!(plan(0, 0, 1, 1, 0, 1).is_err());
        assert!(plan(0, 0, 1, 1, 1, 0).is_err());
        assert!(plan(0, 0, u64::MAX, 1, 1, 1).is_err());
    }

    #[test]
    fn args() {
        let a = Args::try_parse_from(["b", "--copy", "1:0", "2:0", "100", "nvme+tcp://h/n"]).unwrap();
        assert_eq!(a.copy, vec!["1:0", "2:0", "100"]);
        assert!(!a.host);
        assert!(Args::try_parse_from(["b", "--copy", "1:0", "2:0", "nvme+tcp://h/n"]).is_err());
        assert!(Args::try_parse_from(["b", "nvme+tcp://h/n"]).is_err());
    }
}
