//! A byte budget for buffered data, shared by every connection of a daemon
//! (or one session, or nothing: it is just a counter). Budgets nest: a
//! session's share ([`WriteBudget::share`]) is charged together with the
//! daemon-wide budget it is a share of, so one session cannot take the
//! whole of it.
//!
//! A write command reserves its Expected Data Transfer Length when its data
//! starts to be collected; the reservation travels with the buffer (see
//! [`BudgetGuard`]) and is returned when the last reference to the data is
//! dropped — after the command has executed, or when it is aborted, failed
//! or its connection goes away. A write that does not fit is answered with
//! TASK SET FULL before any data is solicited. Read commands are charged
//! the same way (a budget of their own) for the data-in they will produce,
//! until that has been sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes of data that may be buffered at once (write data, or read data on
/// its way out).
#[derive(Debug)]
pub struct WriteBudget {
    limit: u64,
    used: AtomicU64,
    /// What this budget is called in refusals (a configuration key).
    name: &'static str,
    /// The budget this one is a share of: charged as well.
    parent: Option<Arc<WriteBudget>>,
}

impl WriteBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<Self> {
        Self::named(limit, "")
    }

    /// A budget of `limit` bytes called `name` (see [`reserve`](Self::reserve)).
    pub fn named(limit: u64, name: &'static str) -> Arc<Self> {
        Arc::new(WriteBudget { limit, used: AtomicU64::new(0), name, parent: None })
    }

    /// A share of this budget of at most `limit` bytes (say, one session's):
    /// what it reserves is reserved here too.
    pub fn share(self: &Arc<Self>, limit: u64, name: &'static str) -> Arc<Self> {
        Arc::new(WriteBudget { limit, used: AtomicU64::new(0), name, parent: Some(self.clone()) })
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// What this budget is called.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The budget this one is a share of.
    pub fn parent(&self) -> Option<&Arc<WriteBudget>> {
        self.parent.as_ref()
    }

    /// Bytes reserved right now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Reserve `bytes`; `None` when they do not fit.
    pub fn try_reserve(self: &Arc<Self>, bytes: u64) -> Option<BudgetGuard> {
        self.reserve(bytes).ok()
    }

    /// Reserve `bytes` here and in every budget this one is a share of
    /// (this one first); `Err` with the name of the budget they do not fit
    /// in (nothing is reserved then).
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Result<BudgetGuard, &'static str> {
        let mut level: &WriteBudget = self;
        loop {
            if !level.take(bytes) {
                let refused = level.name;
                // Give back what the levels below it took.
                let mut l: &WriteBudget = self;
                while !std::ptr::eq(l, level) {
                    l.used.fetch_sub(bytes, Ordering::AcqRel);
                    l = l.parent.as_deref().expect("below the refusing level");
                }
                return Err(refused);
            }
            match &level.parent {
                Some(p) => level = p,
                None => return Ok(BudgetGuard { budget: self.clone(), bytes }),
            }
        }
    }

    /// Reserve `bytes` in this budget alone.
    fn take(&self, bytes: u64) -> bool {
        let mut cur = self.used.load(Ordering::Acquire);
        loop {
            let Some(next) = cur.checked_add(bytes).filter(|n| *n <= self.limit) else { return false };
            match self.used.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }
}

/// A reservation; returned to its budget (and those it is a share of) on
/// drop.
#[derive(Debug)]
pub struct BudgetGuard {
    budget: Arc<WriteBudget>,
    bytes: u64,
}

impl BudgetGuard {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for BudgetGuard {
    fn drop(&mut self) {
        let mut level = Some(&self.budget);
        while let Some(l) = level {
            l.used.fetch_sub(self.bytes, Ordering::AcqRel);
            level = l.parent.as_ref();
        }
    }
}

/// Data that keeps its reservation alive (the owner behind a
/// [`bytes::Bytes`] made with `Bytes::from_owner`): a write's buffer, or a
/// read's data-in until its last Data-In PDU is sent.
pub(crate) struct Budgeted<D> {
    pub(crate) data: D,
    pub(crate) _guard: BudgetGuard,
}

impl<D: AsRef<[u8]>> AsRef<[u8]> for Budgeted<D> {
    fn as_ref(&self) -> &[u8] {
        self.data.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_and_release() {
        let b = WriteBudget::new(100);
        let g1 = b.try_reserve(60).unwrap();
        assert!(b.try_reserve(41).is_none());
        let g2 = b.try_reserve(40).unwrap();
        assert_eq!(b.used(), 100);
        drop(g1);
        assert_eq!(b.used(), 40);
        let bytes = bytes::Bytes::from_owner(Budgeted { data: bytes::BytesMut::from(&b"abc"[..]), _guard: g2 });
        let c = bytes.clone();
        drop(bytes);
        assert_eq!(b.used(), 40, "a clone still holds the data");
        assert_eq!(&c[..], b"abc");
        drop(c);
        assert_eq!(b.used(), 0);
        assert!(b.try_reserve(u64::MAX).is_none());
    }

    #[test]
    fn a_share_is_charged_with_its_parent() {
        let daemon = WriteBudget::named(100, "daemon");
        let a = daemon.share(60, "session");
        let b = daemon.share(60, "session");
        let ga = a.reserve(60).unwrap();
        assert_eq!((a.used(), daemon.used()), (60, 60));
        assert_eq!(a.reserve(1).unwrap_err(), "session", "a's share is full");
        assert_eq!(daemon.used(), 60, "a refused share takes nothing from the daemon");
        let gb = b.reserve(40).unwrap();
        assert_eq!(b.reserve(1).unwrap_err(), "daemon", "b has room, the daemon has not");
        assert_eq!((b.used(), daemon.used()), (40, 100), "nothing left behind by the refusal");
        drop(ga);
        assert_eq!((a.used(), daemon.used()), (0, 40));
        let gb2 = b.reserve(20).unwrap();
        drop((gb, gb2));
        assert_eq!((b.used(), daemon.used()), (0, 0));
    }
}
