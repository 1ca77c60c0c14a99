//! Per-unit block-range locks.
//!
//! Every read takes a shared lock and every write an exclusive lock on the
//! blocks it touches. Today that only orders overlapping I/O; it is the
//! place where COMPARE AND WRITE gets its atomicity, copy chunks exclude
//! concurrent writes, and (through [`crate::unit::WriteHook`], called while the
//! exclusive lock is held) point-in-time tokens preserve old blocks before a
//! write lands. Uncontended cost: one mutex round trip to insert and one to
//! remove; waiters are only woken when someone is waiting.

use parking_lot::{Condvar, Mutex};

/// Whether a holder excludes other readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Readers (and verifiers): share with other shared holders.
    Shared,
    /// Writers: exclude everything overlapping.
    Exclusive,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    id: u64,
    start: u64,
    end: u64, // exclusive
    mode: LockMode,
}

impl Held {
    fn conflicts(&self, start: u64, end: u64, mode: LockMode) -> bool {
        let overlap = start < end && self.start < end && start < self.end;
        overlap && (mode == LockMode::Exclusive || self.mode == LockMode::Exclusive)
    }
}

#[derive(Debug, Default)]
struct State {
    held: Vec<Held>,
    next_id: u64,
    waiters: usize,
}

/// The range-lock table of one logical unit.
#[derive(Debug, Default)]
pub struct RangeLocks {
    state: Mutex<State>,
    cv: Condvar,
}

/// Holds a range until dropped.
#[derive(Debug)]
#[must_use = "the range is unlocked when the guard is dropped"]
pub struct RangeGuard<'a> {
    locks: &'a RangeLocks,
    id: u64,
}

impl RangeLocks {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lock `blocks` blocks from `lba`, waiting for conflicting holders.
    /// A zero-length range never conflicts.
    pub fn lock(&self, lba: u64, blocks: u64, mode: LockMode) -> RangeGuard<'_> {
        let end = lba.saturating_add(blocks);
        let mut st = self.state.lock();
        while st.held.iter().any(|h| h.conflicts(lba, end, mode)) {
            st.waiters += 1;
            self.cv.wait(&mut st);
            st.waiters -= 1;
        }
        self.insert(&mut st, lba, end, mode)
    }

    /// Lock without waiting; `None` when a conflicting holder exists.
    pub fn try_lock(&self, lba: u64, blocks: u64, mode: LockMode) -> Option<RangeGuard<'_>> {
        let end = lba.saturating_add(blocks);
        let mut st = self.state.lock();
        if st.held.iter().any(|h| h.conflicts(lba, end, mode)) {
            return None;
        }
        Some(self.insert(&mut st, lba, end, mode))
    }

    /// Number of ranges currently held (diagnostics and tests).
    pub fn held(&self) -> usize {
        self.state.lock().held.len()
    }

    /// Number of callers waiting for a range (diagnostics and tests).
    pub fn waiting(&self) -> usize {
        self.state.lock().waiters
    }

    fn insert(&self, st: &mut State, start: u64, end: u64, mode: LockMode) -> RangeGuard<'_> {
        let id = st.next_id;
        st.next_id = st.next_id.wrapping_add(1);
        st.held.push(Held { id, start, end, mode });
        RangeGuard { locks: self, id }
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.locks.state.lock();
        if let Some(i) = st.held.iter().position(|h| h.id == self.id) {
            st.held.swap_remove(i);
        }
        if st.waiters > 0 {
            self.locks.cv.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn shared_overlap_exclusive_conflicts() {
        let l = RangeLocks::new();
        let a = l.lock(0, 10, LockMode::Shared);
        let b = l.try_lock(5, 10, LockMode::Shared);
        assert!(b.is_some());
        assert!(l.try_lock(9, 1, LockMode::Exclusive).is_none());
        assert!(l.try_lock(15, 1, LockMode::Exclusive).is_some());
        assert!(l.try_lock(3, 0, LockMode::Exclusive).is_some());
        drop(a);
        drop(b);
        assert_eq!(l.held(), 0);
        let _w = l.lock(0, u64::MAX, LockMode::Exclusive);
        assert!(l.try_lock(u64::MAX - 1, 1, LockMode::Shared).is_none());
    }

    #[test]
    fn waiter_is_woken_on_release() {
        let l = Arc::new(RangeLocks::new());
        let g = l.lock(0, 8, LockMode::Exclusive);
        let l2 = Arc::clone(&l);
        let t = std::thread::spawn(move || {
            let _g = l2.lock(4, 8, LockMode::Exclusive);
            7
        });
        // Bounded: the waiter registers within a few scheduler rounds.
        for _ in 0..10_000_000 {
            if l.waiting() == 1 {
                break;
            }
            std::thread::yield_now();
        }
        assert_eq!(l.waiting(), 1, "the second locker waits");
        assert!(!t.is_finished());
        drop(g);
        assert_eq!(t.join().ok(), Some(7));
        assert_eq!(l.held(), 0);
    }
}
