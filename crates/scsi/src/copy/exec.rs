//! The copy executor: moves byte ranges between logical units below the
//! protocol, through [`oxcopy_storage::Storage::copy_range`] (reflink, then
//! copy_file_range, then read/write, chosen per extent by the backend).
//!
//! Every protocol front end that copies uses this: EXTENDED COPY segments
//! through [`copy_extents`]; WRITE USING TOKEN (`odx`) through the same
//! chunking, lock order (`lock_chunk`) and write-hook rule with its own
//! source (snapshot, copy-on-write store or live LU); NVMe Copy later.
//!
//! # Chunks, locks, cancellation
//! An extent is copied in chunks of at most [`ExecControl::chunk_bytes`], so
//! one huge segment never holds a logical unit for long. For each chunk the
//! executor
//! 1. checks the cancel tokens (ABORT TASK, LUN RESET, COPY OPERATION ABORT,
//!    session loss) and stops if any is set — progress then tells what was
//!    done;
//! 2. takes the range locks: shared on the source blocks, exclusive on the
//!    destination blocks, in one global order (logical units by NAA
//!    designator, then by address; within one logical unit by LBA; a source
//!    and destination that overlap on the same logical unit get a single
//!    exclusive lock over both), so two copies in opposite directions, or a
//!    copy and a write, can never deadlock;
//! 3. runs the destination's write hook (point-in-time tokens preserve old
//!    blocks there) and copies;
//! 4. adds the bytes to the progress counters and to the metrics, per method.
//!
//! Overlapping copies within one logical unit run chunk by chunk in the safe
//! direction (backwards when the destination starts inside the source), like
//! `memmove`; inside a chunk the backend does the same.

use crate::lu::LogicalUnit;
use crate::metrics::Metrics;
use crate::nexus::CancelToken;
use crate::range_lock::{LockMode, RangeGuard};
use crate::sense::Sense;
use oxcopy_storage::{CopyReport, StorageError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Default largest chunk copied under one set of range locks.
pub const DEFAULT_CHUNK_BYTES: u64 = 64 << 20;

/// One range copy: `len` bytes from byte `src_offset` of `src` to byte
/// `dst_offset` of `dst` (which may be the same logical unit, with
/// overlapping ranges).
#[derive(Debug, Clone)]
pub struct Extent {
    /// Copy source.
    pub src: Arc<LogicalUnit>,
    /// Byte offset in the source.
    pub src_offset: u64,
    /// Copy destination.
    pub dst: Arc<LogicalUnit>,
    /// Byte offset in the destination.
    pub dst_offset: u64,
    /// Bytes to copy.
    pub len: u64,
}

impl Extent {
    /// Whether both byte ranges lie inside their logical units.
    pub fn in_range(&self) -> bool {
        let fits = |lu: &LogicalUnit, off: u64| {
            let cap = lu.num_blocks().saturating_mul(u64::from(lu.block_size()));
            off.checked_add(self.len).is_some_and(|end| end <= cap)
        };
        fits(&self.src, self.src_offset) && fits(&self.dst, self.dst_offset)
    }
}

/// Progress of one copy operation, readable while it runs (RECEIVE COPY
/// RESULTS, RECEIVE ROD TOKEN INFORMATION).
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
    pub(crate) fn add(&self, bytes: u64) {
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
    pub metrics: &'a Metrics,
    /// Largest chunk (bytes, at least one block).
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

/// Why an extent copy stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A cancel token was set; the chunks before it are done.
    #[error("copy cancelled")]
    Cancelled,
    /// The destination is write protected.
    #[error("copy destination is write protected")]
    WriteProtected,
    /// A byte range lies outside its logical unit.
    #[error("copy range outside the logical unit")]
    OutOfRange,
    /// The destination's write hook refused the write.
    #[error("destination write hook refused the copy: {0:?}")]
    Refused(Sense),
    /// The backend failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// Blocks `[first, end)` touched by `len` bytes at byte `off` of `lu`.
pub(crate) fn blocks_of(lu: &LogicalUnit, off: u64, len: u64) -> (u64, u64) {
    let bs = u64::from(lu.block_size().max(1));
    (off / bs, (off + len).div_ceil(bs))
}

/// Sort key putting logical units in one global lock order.
fn order_key(lu: &LogicalUnit) -> ([u8; 16], usize) {
    (lu.naa(), lu as *const LogicalUnit as usize)
}

/// Take the chunk's locks in the global order (see the module docs).
pub(crate) fn lock_chunk<'a>(
    src: &'a LogicalUnit,
    src_off: u64,
    dst: &'a LogicalUnit,
    dst_off: u64,
    len: u64,
) -> Vec<RangeGuard<'a>> {
    let (s0, s1) = blocks_of(src, src_off, len);
    let (d0, d1) = blocks_of(dst, dst_off, len);
    if std::ptr::eq(src, dst) {
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

/// Copy one extent in chunks. Returns the bytes moved per method.
pub fn copy_extent(ext: &Extent, ctl: &ExecControl<'_>) -> Result<CopyReport, ExecError> {
    let mut report = CopyReport::default();
    if ext.len == 0 {
        return Ok(report);
    }
    if !ext.in_range() {
        return Err(ExecError::OutOfRange);
    }
    let (src, dst) = (&*ext.src, &*ext.dst);
    let same = std::ptr::eq(src, dst);
    let backwards = same && ext.dst_offset > ext.src_offset && ext.dst_offset < ext.src_offset + ext.len;
    let chunk = ctl.chunk_bytes.max(u64::from(dst.block_size()));
    let mut done = 0u64;
    while done < ext.len {
        if ctl.cancelled() {
            return Err(ExecError::Cancelled);
        }
        let n = chunk.min(ext.len - done);
        let rel = if backwards { ext.len - done - n } else { done };
        let (s, d) = (ext.src_offset + rel, ext.dst_offset + rel);
        let _guards = lock_chunk(src, s, dst, d, n);
        if dst.write_protected() {
            return Err(ExecError::WriteProtected);
        }
        if let Some(hook) = dst.write_hook() {
            let (b0, b1) = blocks_of(dst, d, n);
            hook.before_write(dst, b0, b1 - b0).map_err(ExecError::Refused)?;
        }
        let r = dst.storage().copy_range(d, src.storage().as_ref(), s, n)?;
        ctl.metrics.copy_report(&r);
        ctl.progress.add(n);
        report.merge(&r);
        done += n;
    }
    Ok(report)
}

/// Copy several extents in order (a WRITE USING TOKEN's ranges, say).
pub fn copy_extents(exts: &[Extent], ctl: &ExecControl<'_>) -> Result<CopyReport, ExecError> {
    let mut report = CopyReport::default();
    for e in exts {
        report.merge(&copy_extent(e, ctl)?);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lu::LuConfig;
    use oxcopy_storage::{MemStorage, Storage};

    fn lu(bytes: usize, bs: u32, naa_last: u8) -> (Arc<LogicalUnit>, Arc<MemStorage>) {
        let mut naa = [0x60; 16];
        naa[15] = naa_last;
        let m = Arc::new(MemStorage::from_bytes(&(0..bytes).map(|i| (i * 7 + i / 251) as u8).collect::<Vec<_>>()));
        let cfg = LuConfig { block_size: bs, naa, ..LuConfig::default() };
        (Arc::new(LogicalUnit::new(cfg, m.clone() as Arc<dyn Storage>)), m)
    }

    fn run(e: &Extent, chunk: u64, cancel: &CancelToken) -> (Result<CopyReport, ExecError>, u64) {
        let p = Progress::default();
        let m = Metrics::new();
        let ctl = ExecControl { cancel: &[cancel], stop: None, progress: &p, metrics: &m, chunk_bytes: chunk };
        let r = copy_extent(e, &ctl);
        (r, p.bytes())
    }

    #[test]
    fn overlapping_copies_in_one_lu_match_memmove() {
        for (s, d) in [(0u64, 1000u64), (1000, 0), (512, 4096), (4096, 512), (0, 0)] {
            let (a, m) = lu(1 << 16, 512, 1);
            let mut model = m.contents();
            let len = 20_000u64;
            model.copy_within(s as usize..(s + len) as usize, d as usize);
            let e = Extent { src: a.clone(), src_offset: s, dst: a.clone(), dst_offset: d, len };
            let (r, bytes) = run(&e, 3000, &CancelToken::new());
            assert_eq!(r.unwrap().total(), len);
            assert_eq!(bytes, len);
            assert_eq!(m.contents(), model, "{s} -> {d}");
            assert_eq!(a.range_locks().held(), 0);
        }
    }

    #[test]
    fn between_lus_and_bounds() {
        let (a, ma) = lu(1 << 16, 512, 1);
        let (b, mb) = lu(1 << 16, 4096, 2);
        let before = mb.contents();
        let e = Extent { src: a.clone(), src_offset: 100, dst: b.clone(), dst_offset: 5000, len: 10_000 };
        let (r, _) = run(&e, 4096, &CancelToken::new());
        assert_eq!(r.unwrap().read_write, 10_000);
        let after = mb.contents();
        assert_eq!(&after[5000..15_000], &ma.contents()[100..10_100]);
        assert_eq!(&after[..5000], &before[..5000]);
        assert_eq!(&after[15_000..], &before[15_000..]);
        let e = Extent { src: a.clone(), src_offset: (1 << 16) - 10, dst: b.clone(), dst_offset: 0, len: 11 };
        assert!(matches!(run(&e, 4096, &CancelToken::new()).0, Err(ExecError::OutOfRange)));
        let e = Extent { src: a, src_offset: u64::MAX, dst: b, dst_offset: 0, len: 2 };
        assert!(matches!(run(&e, 4096, &CancelToken::new()).0, Err(ExecError::OutOfRange)));
    }

    #[test]
    fn cancelled_before_start_copies_nothing() {
        let (a, _) = lu(1 << 16, 512, 1);
        let (b, mb) = lu(1 << 16, 512, 2);
        let before = mb.contents();
        let c = CancelToken::new();
        c.cancel();
        let e = Extent { src: a, src_offset: 0, dst: b, dst_offset: 0, len: 8192 };
        let (r, bytes) = run(&e, 4096, &c);
        assert!(matches!(r, Err(ExecError::Cancelled)));
        assert_eq!(bytes, 0);
        assert_eq!(mb.contents(), before);
    }

    #[test]
    fn write_protected_destination() {
        let (a, _) = lu(1 << 16, 512, 1);
        let (b, mb) = lu(1 << 16, 512, 2);
        let before = mb.contents();
        let mut cfg = b.config().clone();
        cfg.read_only = true;
        let ro = Arc::new(LogicalUnit::new(cfg, mb.clone() as Arc<dyn Storage>));
        let e = Extent { src: a, src_offset: 0, dst: ro, dst_offset: 0, len: 8192 };
        assert!(matches!(run(&e, 4096, &CancelToken::new()).0, Err(ExecError::WriteProtected)));
        assert_eq!(mb.contents(), before);
    }

    /// Two copies between the same two LUs in opposite directions, plus a
    /// self-copy, hammered from several threads: no deadlock.
    #[test]
    fn opposite_direction_copies_do_not_deadlock() {
        let (a, _) = lu(1 << 18, 512, 1);
        let (b, _) = lu(1 << 18, 512, 2);
        let pairs = [(a.clone(), b.clone()), (b.clone(), a.clone()), (a.clone(), a.clone()), (b.clone(), b.clone())];
        let handles: Vec<_> = pairs
            .into_iter()
            .map(|(s, d)| {
                std::thread::spawn(move || {
                    for i in 0..50u64 {
                        let e = Extent {
                            src: s.clone(),
                            src_offset: (i * 4096) % 65536,
                            dst: d.clone(),
                            dst_offset: (i * 8192 + 512) % 65536,
                            len: 65536,
                        };
                        run(&e, 8192, &CancelToken::new()).0.unwrap();
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
