//! Write-behind: once `window` bytes have been written to a file since
//! writeback was last started, start writeback of the range they touched
//! (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, the one `unsafe` call here: asynchronous, the writer does
//! not wait for the disk). A LUN then never holds much more dirty data than
//! the disk has not yet caught up with, so a point-in-time token (whose
//! reflink waits for writeback of its source range) or a SYNCHRONIZE CACHE
//! does not wait for gigabytes written long ago — without throttling the
//! writes themselves.

use parking_lot::Mutex;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};

/// Written bytes not yet handed to writeback, and the range they span.
#[derive(Debug, Default)]
struct Pending {
    bytes: u64,
    lo: u64,
    hi: u64,
}

/// The write-behind state of one file (off until [`WriteBehind::set`]).
#[derive(Debug, Default)]
pub(crate) struct WriteBehind {
    /// Bytes between writeback starts; 0 = off.
    window: AtomicU64,
    pending: Mutex<Pending>,
    /// Writebacks started (for tests and diagnostics).
    started: AtomicU64,
}

impl WriteBehind {
    /// Start writeback after every `window` bytes written (`None`: off).
    pub(crate) fn set(&self, window: Option<u64>) {
        self.window.store(window.unwrap_or(0), Ordering::Relaxed);
    }

    /// Writebacks started so far.
    pub(crate) fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// The window, if on.
    pub(crate) fn window(&self) -> Option<u64> {
        Some(self.window.load(Ordering::Relaxed)).filter(|&w| w > 0)
    }

    /// Account a write of `len` bytes at `off`; returns the range
    /// `(offset, length)` whose writeback is due now, if any.
    pub(crate) fn wrote(&self, off: u64, len: u64) -> Option<(u64, u64)> {
        let window = self.window()?;
        let mut p = self.pending.lock();
        let end = off.saturating_add(len);
        if p.bytes == 0 {
            (p.lo, p.hi) = (off, end);
        } else {
            (p.lo, p.hi) = (p.lo.min(off), p.hi.max(end));
        }
        p.bytes = p.bytes.saturating_add(len);
        if p.bytes < window {
            return None;
        }
        let due = (p.lo, p.hi - p.lo);
        *p = Pending::default();
        self.started.fetch_add(1, Ordering::Relaxed);
        Some(due)
    }
}

/// Start (not wait for) writeback of `[off, off + len)` of `fd`. Advisory:
/// an error only means the kernel's own flusher does it later.
impl WriteBehind {
    /// Count a write of `len` bytes at `off` that is about to be done where
    /// starting writeback must not happen (a thread that must not wait):
    /// true when counted, false — nothing counted — when it would make
    /// writeback due (that write belongs where waiting is allowed).
    pub(crate) fn count_unless_due(&self, off: u64, len: u64) -> bool {
        let Some(window) = self.window() else { return true };
        let mut p = self.pending.lock();
        if p.bytes.saturating_add(len) >= window {
            return false;
        }
        let end = off.saturating_add(len);
        if p.bytes == 0 {
            (p.lo, p.hi) = (off, end);
        } else {
            (p.lo, p.hi) = (p.lo.min(off), p.hi.max(end));
        }
        p.bytes += len;
        true
    }
}

pub(crate) fn start_writeback(fd: BorrowedFd<'_>, off: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(o), Ok(l)) = (libc::off64_t::try_from(off), libc::off64_t::try_from(len)) else { return };
    // Neither rustix nor nix wraps sync_file_range(2).
    // SAFETY: a plain syscall on a descriptor that `fd` keeps open for the
    // duration of the call; it takes no pointers, and any failure is
    // reported through the return value, which is ignored (advisory).
    let _ = unsafe { libc::sync_file_range(fd.as_raw_fd(), o, l, libc::SYNC_FILE_RANGE_WRITE) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_then_due_every_window_with_the_range_touched() {
        let wb = WriteBehind::default();
        assert_eq!(wb.wrote(0, 1 << 30), None, "off");
        wb.set(Some(1000));
        assert_eq!(wb.wrote(5000, 400), None);
        assert_eq!(wb.wrote(100, 400), None);
        assert_eq!(wb.wrote(9000, 200), Some((100, 9100)), "1000 bytes: due, over the span touched");
        assert_eq!(wb.wrote(0, 999), None, "counting starts again");
        assert_eq!(wb.wrote(999, 1), Some((0, 1000)));
        wb.set(None);
        assert_eq!(wb.wrote(0, u64::MAX), None);
    }

    #[test]
    fn a_write_that_would_make_writeback_due_is_not_counted_inline() {
        let wb = WriteBehind::default();
        assert!(wb.count_unless_due(0, 1 << 40), "off: always counted");
        wb.set(Some(1000));
        assert!(wb.count_unless_due(5000, 400));
        assert!(wb.count_unless_due(100, 500));
        assert!(!wb.count_unless_due(0, 100), "900 + 100 reaches the window");
        assert_eq!(wb.wrote(0, 100), Some((0, 5400)), "the same write, counted where it may wait, starts it");
        assert!(wb.count_unless_due(0, 999));
    }
}
