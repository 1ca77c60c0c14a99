//! Unit attention conditions (SAM-5 §5.14): a queue per I_T nexus, per LU.
//!
//! A nexus becomes known to the LU with its first command; conditions that
//! are established "for all I_T nexuses" reach the known ones (a nexus that
//! never talked to the LU has no stale view to be warned about). No power-on
//! condition is raised for a nexus's first command: a fresh login has nothing
//! to be told, and initiators clear it with TEST UNIT READY anyway.

use crate::nexus::Nexus;
use crate::sense::Asc;
use parking_lot::RwLock;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Conditions queued per nexus beyond this are dropped (oldest kept): the
/// initiator will learn of the state change from the ones it does get.
const MAX_QUEUED: usize = 8;

#[derive(Debug, Default)]
pub(crate) struct UnitAttentions {
    /// Total queued conditions across nexuses: lets the common path skip
    /// the write lock.
    pending: AtomicUsize,
    queues: RwLock<HashMap<Nexus, VecDeque<Asc>>>,
}

impl UnitAttentions {
    /// Register `nexus` and, if `consume`, pop its oldest pending condition.
    pub(crate) fn next(&self, nexus: &Nexus, consume: bool) -> Option<Asc> {
        if self.pending.load(Ordering::Acquire) == 0 || !consume {
            if self.queues.read().contains_key(nexus) {
                return None;
            }
            self.queues.write().entry(nexus.clone()).or_default();
            return None;
        }
        let mut q = self.queues.write();
        let queue = q.entry(nexus.clone()).or_default();
        let asc = queue.pop_front()?;
        self.pending.fetch_sub(1, Ordering::AcqRel);
        Some(asc)
    }

    /// Establish `asc` for every known nexus except `except`.
    pub(crate) fn establish_all(&self, asc: Asc, except: Option<&Nexus>) {
        let mut q = self.queues.write();
        for (n, queue) in q.iter_mut() {
            if Some(n) == except || queue.contains(&asc) || queue.len() >= MAX_QUEUED {
                continue;
            }
            queue.push_back(asc);
            self.pending.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Establish `asc` for every known nexus `pred` accepts (persistent
    /// reservation changes address the registered I_T nexuses).
    pub(crate) fn establish_where(&self, asc: Asc, mut pred: impl FnMut(&Nexus) -> bool) {
        let mut q = self.queues.write();
        for (n, queue) in q.iter_mut() {
            if !pred(n) || queue.contains(&asc) || queue.len() >= MAX_QUEUED {
                continue;
            }
            queue.push_back(asc);
            self.pending.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// A reset supersedes everything queued (SAM-5: the reset condition is
    /// the one to report), then is established for every known nexus.
    pub(crate) fn reset_all(&self, asc: Asc) {
        let mut q = self.queues.write();
        let mut total = 0;
        for queue in q.values_mut() {
            queue.clear();
            queue.push_back(asc);
            total += 1;
        }
        self.pending.store(total, Ordering::Release);
    }

    /// Know every nexus `other` knows (with nothing pending for it here).
    pub(crate) fn adopt(&self, other: &UnitAttentions) {
        let known: Vec<Nexus> = other.queues.read().keys().cloned().collect();
        let mut q = self.queues.write();
        for n in known {
            q.entry(n).or_default();
        }
    }

    /// Forget a nexus (session gone).
    pub(crate) fn forget(&self, nexus: &Nexus) {
        if let Some(queue) = self.queues.write().remove(nexus) {
            self.pending.fetch_sub(queue.len(), Ordering::AcqRel);
        }
    }

    /// Conditions pending for `nexus`, oldest first (tests, diagnostics).
    pub(crate) fn peek(&self, nexus: &Nexus) -> Vec<Asc> {
        self.queues.read().get(nexus).map(|q| q.iter().copied().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn nx(i: u8) -> Nexus {
        Nexus {
            initiator_name: Arc::from("iqn.2000-01.test:i"),
            isid: [0, 0, 0, 0, 0, i],
            target_name: Arc::from("iqn.2000-01.test:t"),
            tpgt: 1,
        }
    }

    #[test]
    fn queue_per_nexus() {
        let ua = UnitAttentions::default();
        assert_eq!(ua.next(&nx(1), true), None);
        assert_eq!(ua.next(&nx(2), true), None);
        ua.establish_all(Asc::MODE_PARAMETERS_CHANGED, Some(&nx(1)));
        ua.establish_all(Asc::MODE_PARAMETERS_CHANGED, None); // dedup for 2
        assert_eq!(ua.next(&nx(1), false), None);
        assert_eq!(ua.next(&nx(1), true), Some(Asc::MODE_PARAMETERS_CHANGED));
        assert_eq!(ua.next(&nx(1), true), None);
        assert_eq!(ua.next(&nx(2), true), Some(Asc::MODE_PARAMETERS_CHANGED));
        assert_eq!(ua.next(&nx(2), true), None);
        // Unknown nexus gets nothing.
        ua.establish_all(Asc::CAPACITY_DATA_HAS_CHANGED, None);
        assert_eq!(ua.next(&nx(3), true), None);
        ua.reset_all(Asc::BUS_DEVICE_RESET_FUNCTION_OCCURRED);
        assert_eq!(ua.peek(&nx(1)), vec![Asc::BUS_DEVICE_RESET_FUNCTION_OCCURRED]);
        ua.forget(&nx(1));
        ua.forget(&nx(2));
        ua.forget(&nx(3));
        assert_eq!(ua.pending.load(Ordering::Acquire), 0);
    }

    #[test]
    fn adopted_nexuses_get_later_conditions() {
        let old = UnitAttentions::default();
        assert_eq!(old.next(&nx(1), true), None);
        let new = UnitAttentions::default();
        new.adopt(&old);
        new.establish_all(Asc::REPORTED_LUNS_DATA_HAS_CHANGED, None);
        assert_eq!(new.next(&nx(1), true), Some(Asc::REPORTED_LUNS_DATA_HAS_CHANGED));
        assert_eq!(new.next(&nx(2), true), None, "a nexus the old LU never saw gets nothing");
    }
}
