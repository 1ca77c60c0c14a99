//! The executor: the one loop that copies, for every protocol.
//!
//! [`execute`] moves a list of byte [`Run`]s from a [`CopySource`] into a
//! destination [`Unit`]: EXTENDED COPY segments (a [`crate::LiveSource`]),
//! WRITE USING TOKEN ranges (a [`crate::RodSource`] or [`crate::Zeros`]),
//! NVMe Copy next. [`transfer`] is the one function that moves bytes between
//! extents; the executor calls it for each piece of each chunk, and
//! copy-on-write preservation ([`crate::rod`]) calls it too.
//!
//! # Chunks, locks, cancellation
//! A run is copied in chunks of at most [`ExecControl::chunk_bytes`] (a
//! multiple of the destination block size), so one huge run never holds a
//! unit for long. For each chunk the executor
//! 1. checks the cancel tokens and the stop condition (ABORT TASK, LUN
//!    RESET, COPY OPERATION ABORT, PREEMPT AND ABORT, session loss) and
//!    stops if any holds — progress then tells what was done;
//! 2. takes the range locks: exclusive on the destination blocks and, for a
//!    source that reads a live unit, shared on the source blocks, in one
//!    global order (units by [`Unit::id`], then by address; within one unit
//!    by LBA; a source and destination that overlap on the same unit get a
//!    single exclusive lock over both), so two copies in opposite
//!    directions, or a copy and a write, can never deadlock;
//! 3. asks the source whether it is still usable (a revoked token stops the
//!    copy here), refuses a write-protected destination, runs the
//!    destination's write hook (point-in-time tokens preserve old blocks
//!    there) and moves the source's pieces with [`transfer`];
//! 4. adds the bytes to the progress counters and, per method, to the metrics.
//!
//! A live source overlapping its destination on the same unit is copied
//! chunk by chunk in the safe direction (backwards when the destination
//! starts inside the source), like `memmove`; inside a chunk the backend
//! does the same.

use crate::cancel::CancelToken;
use crate::error::CopyError;
use crate::lock::{LockMode, RangeGuard};
use crate::source::{CopySource, From};
use crate::unit::{same_unit, CopyMetrics, Unit};
use oxcopy_storage::{CopyMethod, CopyReport, Storage};
use std::sync::atomic::{AtomicU64, Ordering};

/// Default largest chunk copied under one set of range locks.
pub const DEFAULT_CHUNK_BYTES: u64 = 64 << 20;

/// One run: `len` bytes from byte `src` of the source to byte `dst` of the
/// destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Byte offset in the source.
    pub src: u64,
    /// Byte offset in the destination.
    pub dst: u64,
    /// Bytes.
    pub len: u64,
}

/// Progress of one copy operation, readable while it runs.
#[derive(Debug, Default)]
pub struct Progress {
    bytes: AtomicU64,
    operations: AtomicU64,
}

impl Progress {
    /// Bytes copied so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }
    /// Backend operations (chunks) issued so far.
    pub fn operations(&self) -> u64 {
        self.operations.load(Ordering::Acquire)
    }
    fn add(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
        self.operations.fetch_add(1, Ordering::AcqRel);
    }
}

/// How an executor run is controlled and observed.
#[derive(Clone, Copy)]
pub struct ExecControl<'a> {
    /// Stop between chunks when any of these is cancelled.
    pub cancel: &'a [&'a CancelToken],
    /// Also stop between chunks when this says so (PREEMPT AND ABORT of
    /// the issuing nexus, for one).
    pub stop: Option<&'a dyn Fn() -> bool>,
    /// Updated after every chunk.
    pub progress: &'a Progress,
    /// Bytes per copy method.
    pub metrics: &'a dyn CopyMetrics,
    /// Largest chunk, bytes (rounded down to whole destination blocks, at least one).
    pub chunk_bytes: u64,
}

impl std::fmt::Debug for ExecControl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecControl")
            .field("cancel", &self.cancel)
            .field("stop", &self.stop.is_some())
            .field("progress", &self.progress)
            .field("chunk_bytes", &self.chunk_bytes)
            .finish_non_exhaustive()
    }
}

impl ExecControl<'_> {
    fn cancelled(&self) -> bool {
        self.cancel.iter().any(|c| c.is_cancelled()) || self.stop.is_some_and(|f| f())
    }
}

/// Move `len` bytes from `from` into `dst` at byte `dst_offset`, by the
/// cheapest method the pair allows (reflink, copy_file_range, read/write,
/// hole-skipping; zero-fill for [`From::Zeros`]). The one function that
/// moves bytes between extents; the caller holds the range locks.
pub fn transfer(dst: &dyn Storage, dst_offset: u64, from: &From, len: u64) -> Result<CopyReport, CopyError> {
    let mut r = CopyReport::default();
    match from {
        From::Store(src, offset) => {
            return Ok(oxcopy_storage::copy_mapped(dst, dst_offset, src.as_ref(), *offset, len)?);
        }
        From::Zeros => {
            dst.write_zeroes(dst_offset, len)?;
            r.add(CopyMethod::Zero, len);
        }
        From::Remote(rod, offset) => {
            rod.copy_to(*offset, len, dst, dst_offset)?;
            r.add(CopyMethod::Remote, len);
        }
    }
    Ok(r)
}

/// Blocks `[first, end)` touched by `len` bytes at byte `off` of `unit`.
pub fn blocks_of(unit: &dyn Unit, off: u64, len: u64) -> (u64, u64) {
    let bs = u64::from(unit.block_size().max(1));
    (off / bs, (off + len).div_ceil(bs))
}

/// Sort key putting units in one global lock order.
fn order_key(unit: &dyn Unit) -> ([u8; 16], usize) {
    (unit.id(), unit as *const dyn Unit as *const () as usize)
}

/// Take one chunk's locks in the global order (see the module docs).
fn lock_chunk<'a>(
    src: Option<&'a dyn Unit>,
    src_off: u64,
    dst: &'a dyn Unit,
    dst_off: u64,
    len: u64,
) -> Vec<RangeGuard<'a>> {
    let (d0, d1) = blocks_of(dst, dst_off, len);
    let Some(src) = src else {
        return vec![dst.range_locks().lock(d0, d1 - d0, LockMode::Exclusive)];
    };
    let (s0, s1) = blocks_of(src, src_off, len);
    if same_unit(src, dst) {
        if s0 < d1 && d0 < s1 {
            return vec![dst.range_locks().lock(s0.min(d0), s1.max(d1) - s0.min(d0), LockMode::Exclusive)];
        }
        let (a, b) = if s0 < d0 {
            ((s0, s1, LockMode::Shared), (d0, d1, LockMode::Exclusive))
        } else {
            ((d0, d1, LockMode::Exclusive), (s0, s1, LockMode::Shared))
        };
        let g1 = src.range_locks().lock(a.0, a.1 - a.0, a.2);
        let g2 = src.range_locks().lock(b.0, b.1 - b.0, b.2);
        return vec![g1, g2];
    }
    if order_key(src) < order_key(dst) {
        let g1 = src.range_locks().lock(s0, s1 - s0, LockMode::Shared);
        let g2 = dst.range_locks().lock(d0, d1 - d0, LockMode::Exclusive);
        vec![g1, g2]
    } else {
        let g1 = dst.range_locks().lock(d0, d1 - d0, LockMode::Exclusive);
        let g2 = src.range_locks().lock(s0, s1 - s0, LockMode::Shared);
        vec![g1, g2]
    }
}

fn fits(size: u64, off: u64, len: u64) -> bool {
    off.checked_add(len).is_some_and(|end| end <= size)
}

/// Copy `runs` from `source` into `dst`, in order, in chunks (see the module
/// docs). Returns the bytes moved per method; on error the chunks before it
/// are done and [`Progress`] says how many bytes that was.
pub fn execute(
    source: &dyn CopySource,
    dst: &dyn Unit,
    runs: &[Run],
    ctl: &ExecControl<'_>,
) -> Result<CopyReport, CopyError> {
    let bs = u64::from(dst.block_size().max(1));
    let limit = source.max_chunk().map_or(ctl.chunk_bytes, |m| m.min(ctl.chunk_bytes));
    let chunk = (limit / bs).max(1) * bs;
    let live = source.live();
    let mut report = CopyReport::default();
    for run in runs.iter().filter(|r| r.len > 0) {
        if !fits(source.len(), run.src, run.len) || !fits(dst.capacity(), run.dst, run.len) {
            return Err(CopyError::OutOfRange);
        }
        let backwards = live.is_some_and(|s| same_unit(s, dst)) && run.dst > run.src && run.dst < run.src + run.len;
        let chunks = run.len.div_ceil(chunk);
        for i in 0..chunks {
            if ctl.cancelled() {
                return Err(CopyError::Cancelled);
            }
            let i = if backwards { chunks - 1 - i } else { i };
            let rel = i * chunk;
            let n = chunk.min(run.len - rel);
            let (s, d) = (run.src + rel, run.dst + rel);
            let _guards = lock_chunk(live, s, dst, d, n);
            // Checked under the locks: a write that revoked a token has run
            // its hook before we got here.
            source.check()?;
            if dst.write_protected() {
                return Err(CopyError::WriteProtected);
            }
            if let Some(hook) = dst.write_hook() {
                let (b0, b1) = blocks_of(dst, d, n);
                hook.before_write(dst, b0, b1 - b0).map_err(CopyError::Refused)?;
            }
            let mut at = d;
            for piece in source.pieces(s, n) {
                let r = transfer(dst.storage().as_ref(), at, &piece.from, piece.len)?;
                ctl.metrics.copied(&r);
                report.merge(&r);
                at += piece.len;
            }
            ctl.progress.add(n);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{LiveSource, Zeros};
    use crate::testing::{mem_unit, TestUnit};
    use crate::unit::NoMetrics;
    use crate::CancelToken;
    use std::sync::Arc;

    fn run(
        source: &dyn CopySource,
        dst: &dyn Unit,
        runs: &[Run],
        chunk: u64,
        c: &CancelToken,
    ) -> (Result<CopyReport, CopyError>, u64) {
        let p = Progress::default();
        let ctl = ExecControl { cancel: &[c], stop: None, progress: &p, metrics: &NoMetrics, chunk_bytes: chunk };
        let r = execute(source, dst, runs, &ctl);
        (r, p.bytes())
    }

    fn one(src: u64, dst: u64, len: u64) -> [Run; 1] {
        [Run { src, dst, len }]
    }

    /// The overlap rule, once: a live source overlapping its destination on
    /// one unit is copied like memmove, whatever the chunking.
    #[test]
    fn overlapping_copies_in_one_unit_match_memmove() {
        for chunk in [512u64, 3000, 1 << 20] {
            for (s, d) in [(0u64, 1000u64), (1000, 0), (512, 4096), (4096, 512), (0, 0), (0, 512), (512, 0)] {
                let (a, m) = mem_unit(1 << 16, 512, 1);
                let mut model = m.contents();
                let len = 20_000u64;
                model.copy_within(s as usize..(s + len) as usize, d as usize);
                let (r, bytes) = run(&LiveSource(a.clone()), a.as_ref(), &one(s, d, len), chunk, &CancelToken::new());
                assert_eq!(r.unwrap().total(), len);
                assert_eq!(bytes, len);
                assert_eq!(m.contents(), model, "{s} -> {d}, chunk {chunk}");
                assert_eq!(a.range_locks().held(), 0);
            }
        }
    }

    #[test]
    fn between_units_and_bounds() {
        let (a, ma) = mem_unit(1 << 16, 512, 1);
        let (b, mb) = mem_unit(1 << 16, 4096, 2);
        let before = mb.contents();
        let (r, _) = run(&LiveSource(a.clone()), b.as_ref(), &one(100, 5000, 10_000), 4096, &CancelToken::new());
        assert_eq!(r.unwrap().read_write, 10_000);
        let after = mb.contents();
        assert_eq!(&after[5000..15_000], &ma.contents()[100..10_100]);
        assert_eq!(&after[..5000], &before[..5000]);
        assert_eq!(&after[15_000..], &before[15_000..]);
        let src = LiveSource(a.clone());
        let (r, _) = run(&src, b.as_ref(), &one((1 << 16) - 10, 0, 11), 4096, &CancelToken::new());
        assert!(matches!(r, Err(CopyError::OutOfRange)));
        let (r, _) = run(&src, b.as_ref(), &one(u64::MAX, 0, 2), 4096, &CancelToken::new());
        assert!(matches!(r, Err(CopyError::OutOfRange)));
        let (r, _) = run(&src, b.as_ref(), &one(0, u64::MAX - 1, 2), 4096, &CancelToken::new());
        assert!(matches!(r, Err(CopyError::OutOfRange)));
        assert_eq!(mb.contents(), after, "nothing written by refused runs");
    }

    #[test]
    fn zeros_fill_and_are_counted() {
        let (b, mb) = mem_unit(1 << 16, 512, 2);
        let (r, bytes) = run(&Zeros, b.as_ref(), &one(0, 1024, 4096), 1024, &CancelToken::new());
        assert_eq!(r.unwrap().zero, 4096);
        assert_eq!(bytes, 4096);
        let c = mb.contents();
        assert!(c[1024..5120].iter().all(|&x| x == 0));
        assert!(c[..1024].iter().any(|&x| x != 0));
        assert!(c[5120..].iter().any(|&x| x != 0));
    }

    #[test]
    fn cancelled_before_start_copies_nothing() {
        let (a, _) = mem_unit(1 << 16, 512, 1);
        let (b, mb) = mem_unit(1 << 16, 512, 2);
        let before = mb.contents();
        let c = CancelToken::new();
        c.cancel();
        let (r, bytes) = run(&LiveSource(a), b.as_ref(), &one(0, 0, 8192), 4096, &c);
        assert!(matches!(r, Err(CopyError::Cancelled)));
        assert_eq!(bytes, 0);
        assert_eq!(mb.contents(), before);
    }

    #[test]
    fn write_protected_destination() {
        let (a, _) = mem_unit(1 << 16, 512, 1);
        let (b, mb) = mem_unit(1 << 16, 512, 2);
        b.read_only.store(true, std::sync::atomic::Ordering::Relaxed);
        let before = mb.contents();
        let (r, _) = run(&LiveSource(a), b.as_ref(), &one(0, 0, 8192), 4096, &CancelToken::new());
        assert!(matches!(r, Err(CopyError::WriteProtected)));
        assert_eq!(mb.contents(), before);
    }

    /// Two copies between the same two units in opposite directions, plus a
    /// self-copy, hammered from several threads: no deadlock.
    #[test]
    fn opposite_direction_copies_do_not_deadlock() {
        let (a, _) = mem_unit(1 << 18, 512, 1);
        let (b, _) = mem_unit(1 << 18, 512, 2);
        let pairs: [(Arc<TestUnit>, Arc<TestUnit>); 4] =
            [(a.clone(), b.clone()), (b.clone(), a.clone()), (a.clone(), a.clone()), (b.clone(), b.clone())];
        let handles: Vec<_> = pairs
            .into_iter()
            .map(|(s, d)| {
                std::thread::spawn(move || {
                    for i in 0..50u64 {
                        let r = one((i * 4096) % 65536, (i * 8192 + 512) % 65536, 65536);
                        run(&LiveSource(s.clone()), d.as_ref(), &r, 8192, &CancelToken::new()).0.unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(a.range_locks().held(), 0);
        assert_eq!(b.range_locks().held(), 0);
    }
}
