//! A byte budget for buffered write data, shared by every connection of a
//! daemon (or one session, or nothing: it is just a counter).
//!
//! A write command reserves its Expected Data Transfer Length when its data
//! starts to be collected; the reservation travels with the buffer (see
//! [`BudgetGuard`]) and is returned when the last reference to the data is
//! dropped — after the command has executed, or when it is aborted, failed
//! or its connection goes away. A write that does not fit is answered with
//! TASK SET FULL before any data is solicited.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes of write data that may be buffered at once.
#[derive(Debug)]
pub struct WriteBudget {
    limit: u64,
    used: AtomicU64,
}

impl WriteBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(WriteBudget { limit, used: AtomicU64::new(0) })
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes reserved right now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Reserve `bytes`; `None` when they do not fit.
    pub fn try_reserve(self: &Arc<Self>, bytes: u64) -> Option<BudgetGuard> {
        let mut cur = self.used.load(Ordering::Acquire);
        loop {
            let next = cur.checked_add(bytes).filter(|n| *n <= self.limit)?;
            match self.used.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(BudgetGuard { budget: self.clone(), bytes }),
                Err(actual) => cur = actual,
            }
        }
    }
}

/// A reservation; returned to its budget on drop.
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
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Write data that keeps its reservation alive (the owner behind a
/// [`bytes::Bytes`] made with `Bytes::from_owner`).
pub(crate) struct Budgeted {
    pub(crate) data: bytes::BytesMut,
    pub(crate) _guard: BudgetGuard,
}

impl AsRef<[u8]> for Budgeted {
    fn as_ref(&self) -> &[u8] {
        &self.data
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
}
