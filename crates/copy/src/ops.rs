//! Copy operations and their list-identifier records.
//!
//! Every copy command that moves data (EXTENDED COPY, POPULATE TOKEN, WRITE
//! USING TOKEN; NVMe Copy next) is a [`CopyOperation`]: progress counters, a
//! cancel token and a final status, shared between the thread running it and
//! the status commands that read it.
//!
//! Records are keyed by (requester, unit, list identifier); the requester
//! type `K` is the front end's (the SCSI I_T nexus), and so is the outcome
//! `O` it records (SCSI status and sense). One namespace per requester and
//! unit for every command family, as FreeBSD CTL does (LID1 identifiers are
//! simply the values 0..=255 of it). A list identifier still running for
//! the same requester and unit refuses a new command
//! ([`CopyError::OperationInProgress`]); a completed one is replaced.
//!
//! Completed records are kept until their status has been read and, for a
//! failed copy, its failure details too; or until the retention time has
//! passed since completion (on the injected [`Clock`]), the requester is
//! lost, or the record table is full and the record is the oldest completed
//! one. Operations without a list identifier have no record at all.

use crate::cancel::CancelToken;
use crate::clock::Clock;
use crate::error::CopyError;
use crate::exec::Progress;
use crate::token::TOKEN_LEN;
use crate::unit::UnitId;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a completed record is kept when nobody reads it.
pub const RECORD_RETENTION: Duration = Duration::from_secs(60);
/// Records kept across all nexuses; beyond it the oldest completed go first.
pub const MAX_RECORDS: usize = 4096;

/// A requester key: who issued a copy (the SCSI I_T nexus, say).
pub trait Requester: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static {}
impl<T: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static> Requester for T {}

/// A front end's record of how a command ended (SCSI status and sense, say);
/// `Default` is what a running operation reads.
pub trait Outcome: Clone + Default + fmt::Debug + Send + Sync + 'static {}
impl<T: Clone + Default + fmt::Debug + Send + Sync + 'static> Outcome for T {}

/// Which record: requester, unit and list identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListKey<K> {
    /// Who issued the command.
    pub requester: K,
    /// The unit that received it.
    pub unit: UnitId,
    /// Its list identifier (LID1: 0..=255).
    pub list_id: u32,
}

/// Where a copy operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpStatus {
    /// Still copying.
    Running,
    /// Completed without error.
    Succeeded,
    /// Completed with an error (the sense data says which).
    Failed,
    /// Stopped by ABORT TASK, LUN RESET, COPY OPERATION ABORT or nexus loss.
    Aborted,
}

/// How a copy operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion<O> {
    /// Succeeded, Failed or Aborted.
    pub status: OpStatus,
    /// What the originating command returned, in the front end's terms.
    pub outcome: O,
}

/// A point-in-time view of an operation, for status commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpSnapshot<O> {
    /// Service action of the originating command (00h EXTENDED COPY LID1, ...).
    pub service_action: u8,
    /// Running or how it ended.
    pub status: OpStatus,
    /// Segments (or ranges) completed.
    pub segments: u32,
    /// Bytes copied.
    pub bytes: u64,
    /// Backend operations issued.
    pub operations: u64,
    /// What the command returned (`O::default()` while running).
    pub outcome: O,
    /// Token copy only: what RECEIVE ROD TOKEN INFORMATION reports.
    pub rod: Option<RodInfo>,
    /// Time since the operation began, by the manager's clock (set by
    /// [`CopyManager::lookup`]; zero from [`CopyOperation::snapshot`]).
    pub elapsed: Duration,
}

/// What a POPULATE TOKEN / WRITE USING TOKEN operation adds to its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RodInfo {
    /// Logical block length the transfer count counts in (the LU addressed).
    pub block_size: u32,
    /// Blocks the command asked for.
    pub requested_blocks: u64,
    /// Runs in the background (IMMED=1): in progress reads 12h, not 11h.
    pub background: bool,
    /// POPULATE TOKEN: blocks represented, once the token exists.
    pub represented_blocks: u64,
    /// POPULATE TOKEN: the token, once it exists.
    pub token: Option<Box<[u8; TOKEN_LEN]>>,
}

/// One copy operation, shared by its runner and its observers.
#[derive(Debug)]
pub struct CopyOperation<K, O> {
    key: Option<ListKey<K>>,
    requester: K,
    unit: UnitId,
    service_action: u8,
    cancel: CancelToken,
    progress: Progress,
    segments: AtomicU32,
    done: Mutex<Option<(Completion<O>, Instant)>>,
    rod: Mutex<Option<RodInfo>>,
    started: Instant,
}

impl<K: Requester, O: Outcome> CopyOperation<K, O> {
    /// Its record key (`None` without a list identifier).
    pub fn key(&self) -> Option<&ListKey<K>> {
        self.key.as_ref()
    }
    /// Set by COPY OPERATION ABORT and nexus loss; the executor checks it.
    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }
    /// Byte and operation counters, updated by the executor.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }
    /// One more segment completed.
    pub fn segment_done(&self) {
        self.segments.fetch_add(1, Ordering::AcqRel);
    }
    /// Attach (or update) the token-copy details RRTI reports.
    pub fn set_rod_info(&self, info: RodInfo) {
        *self.rod.lock() = Some(info);
    }
    /// Update the token-copy details in place (no-op without them).
    pub fn update_rod_info(&self, f: impl FnOnce(&mut RodInfo)) {
        if let Some(r) = self.rod.lock().as_mut() {
            f(r);
        }
    }
    /// A consistent view for status commands.
    pub fn snapshot(&self) -> OpSnapshot<O> {
        let done = self.done.lock().clone();
        let (status, outcome) = match done {
            None => (OpStatus::Running, O::default()),
            Some((c, _)) => (c.status, c.outcome),
        };
        OpSnapshot {
            service_action: self.service_action,
            status,
            segments: self.segments.load(Ordering::Acquire),
            bytes: self.progress.bytes(),
            operations: self.progress.operations(),
            outcome,
            rod: self.rod.lock().clone(),
            elapsed: Duration::ZERO,
        }
    }
    fn completed_at(&self) -> Option<Instant> {
        self.done.lock().as_ref().map(|(_, at)| *at)
    }
    fn failed(&self) -> bool {
        self.done.lock().as_ref().is_some_and(|(c, _)| c.status != OpStatus::Succeeded)
    }
}

#[derive(Debug)]
struct Entry<K, O> {
    op: Arc<CopyOperation<K, O>>,
    status_read: bool,
    details_read: bool,
}

#[derive(Debug)]
struct Records<K, O> {
    entries: HashMap<ListKey<K>, Entry<K, O>>,
    /// Running operations per unit.
    running: HashMap<UnitId, u32>,
    /// Running operations per requester.
    by_requester: HashMap<K, u32>,
}

impl<K: Requester, O: Outcome> Records<K, O> {
    fn purge_expired(&mut self, now: Instant, retention: Duration) {
        self.entries.retain(|_, e| e.op.completed_at().is_none_or(|at| now.duration_since(at) < retention));
    }

    fn evict_oldest_completed(&mut self) -> bool {
        let oldest = self
            .entries
            .iter()
            .filter_map(|(k, e)| e.op.completed_at().map(|at| (at, k.clone())))
            .min_by_key(|(at, _)| *at)
            .map(|(_, k)| k);
        match oldest {
            Some(k) => self.entries.remove(&k).is_some(),
            None => false,
        }
    }
}

/// The copy manager's bookkeeping: records and concurrency, daemon-wide.
#[derive(Debug)]
pub struct CopyManager<K, O> {
    records: Mutex<Records<K, O>>,
    retention: Duration,
    clock: Arc<dyn Clock>,
    /// Operations running at once on one unit.
    max_per_unit: u32,
    /// Operations running at once across every unit (daemon-wide bound).
    max_total: AtomicU32,
    /// Operations one requester may run at once (its share of the total).
    max_per_requester: AtomicU32,
}

/// Which part of a record a status command consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consume {
    /// COPY STATUS / RECEIVE COPY STATUS (LID4).
    Status,
    /// FAILED SEGMENT DETAILS.
    Details,
}

impl<K: Requester, O: Outcome> CopyManager<K, O> {
    /// No records; at most `max_per_unit` operations running on one unit;
    /// completed records kept for [`RECORD_RETENTION`] of `clock`'s time.
    pub fn new(clock: Arc<dyn Clock>, max_per_unit: u32) -> Self {
        Self::with_retention(clock, max_per_unit, RECORD_RETENTION)
    }

    /// [`CopyManager::new`], keeping completed records for `retention` when unread.
    pub fn with_retention(clock: Arc<dyn Clock>, max_per_unit: u32, retention: Duration) -> Self {
        CopyManager {
            records: Mutex::new(Records {
                entries: HashMap::new(),
                running: HashMap::new(),
                by_requester: HashMap::new(),
            }),
            retention,
            clock,
            max_per_unit,
            max_total: AtomicU32::new(u32::MAX),
            max_per_requester: AtomicU32::new(u32::MAX),
        }
    }

    /// Bound the operations one requester (an I_T nexus) may run at once,
    /// so that one cannot starve the others; beyond it
    /// [`CopyManager::begin`] fails with [`CopyError::RequesterShare`].
    pub fn set_max_per_requester(&self, n: u32) {
        self.max_per_requester.store(n.max(1), Ordering::Relaxed);
    }

    /// Bound the operations running at once across every unit; beyond it
    /// [`CopyManager::begin`] fails with [`CopyError::InsufficientResources`].
    pub fn set_max_concurrent(&self, n: u32) {
        self.max_total.store(n.max(1), Ordering::Relaxed);
    }

    /// Operations running right now, across every LU.
    pub fn running_total(&self) -> u32 {
        self.records.lock().running.values().sum()
    }

    /// Start an operation for `requester` on `unit`. `list_id` is `None`
    /// for an operation without a record. Fails with
    /// [`CopyError::OperationInProgress`] when the same list identifier is
    /// running for this requester and unit, and with
    /// [`CopyError::InsufficientResources`] beyond the per-unit or total
    /// bound or when the record table is full of running operations.
    pub fn begin(
        &self,
        requester: &K,
        unit: UnitId,
        list_id: Option<u32>,
        service_action: u8,
    ) -> Result<Arc<CopyOperation<K, O>>, CopyError> {
        let now = self.clock.now();
        let mut r = self.records.lock();
        r.purge_expired(now, self.retention);
        let key = list_id.map(|id| ListKey { requester: requester.clone(), unit, list_id: id });
        if let Some(k) = &key {
            if let Some(e) = r.entries.get(k) {
                if e.op.completed_at().is_none() {
                    return Err(CopyError::OperationInProgress);
                }
                r.entries.remove(k);
            }
        }
        let running = r.running.get(&unit).copied().unwrap_or(0);
        if running >= self.max_per_unit {
            return Err(CopyError::InsufficientResources);
        }
        if r.running.values().sum::<u32>() >= self.max_total.load(Ordering::Relaxed) {
            return Err(CopyError::InsufficientResources);
        }
        if r.by_requester.get(requester).copied().unwrap_or(0) >= self.max_per_requester.load(Ordering::Relaxed) {
            return Err(CopyError::RequesterShare);
        }
        if key.is_some() && r.entries.len() >= MAX_RECORDS && !r.evict_oldest_completed() {
            return Err(CopyError::InsufficientResources);
        }
        let op = Arc::new(CopyOperation {
            key: key.clone(),
            requester: requester.clone(),
            unit,
            service_action,
            cancel: CancelToken::new(),
            progress: Progress::default(),
            segments: AtomicU32::new(0),
            done: Mutex::new(None),
            rod: Mutex::new(None),
            started: now,
        });
        *r.running.entry(unit).or_insert(0) += 1;
        *r.by_requester.entry(requester.clone()).or_insert(0) += 1;
        if let Some(k) = key {
            r.entries.insert(k, Entry { op: op.clone(), status_read: false, details_read: false });
        }
        Ok(op)
    }

    /// Record how `op` ended. Call exactly once per [`CopyManager::begin`].
    pub fn finish(&self, op: &CopyOperation<K, O>, completion: Completion<O>) {
        let now = self.clock.now();
        let mut r = self.records.lock();
        {
            let mut done = op.done.lock();
            if done.is_some() {
                return;
            }
            *done = Some((completion, now));
        }
        if let Some(n) = r.running.get_mut(&op.unit) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                r.running.remove(&op.unit);
            }
        }
        if let Some(n) = r.by_requester.get_mut(&op.requester) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                r.by_requester.remove(&op.requester);
            }
        }
    }

    /// The record of `list_id` for `requester` on `unit`, consuming the
    /// `what` part of a completed one. `None` when there is no such record
    /// (or, for failure details, while it still runs).
    pub fn lookup(&self, requester: &K, unit: UnitId, list_id: u32, what: Consume) -> Option<OpSnapshot<O>> {
        let key = ListKey { requester: requester.clone(), unit, list_id };
        let now = self.clock.now();
        let mut r = self.records.lock();
        r.purge_expired(now, self.retention);
        let e = r.entries.get_mut(&key)?;
        let mut snap = e.op.snapshot();
        snap.elapsed = now.saturating_duration_since(e.op.started);
        if snap.status == OpStatus::Running {
            return (what == Consume::Status).then_some(snap);
        }
        match what {
            Consume::Status => e.status_read = true,
            Consume::Details => e.details_read = true,
        }
        if e.status_read && (e.details_read || !e.op.failed()) {
            r.entries.remove(&key);
        }
        Some(snap)
    }

    /// The running operation `list_id` of `requester` on `unit`, if any
    /// (COPY OPERATION ABORT).
    pub fn running(&self, requester: &K, unit: UnitId, list_id: u32) -> Option<Arc<CopyOperation<K, O>>> {
        let key = ListKey { requester: requester.clone(), unit, list_id };
        let r = self.records.lock();
        r.entries.get(&key).filter(|e| e.op.completed_at().is_none()).map(|e| e.op.clone())
    }

    /// Whether `requester` has a record (running or completed) of `list_id` on `unit`.
    pub fn known(&self, requester: &K, unit: UnitId, list_id: u32) -> bool {
        let key = ListKey { requester: requester.clone(), unit, list_id };
        self.records.lock().entries.contains_key(&key)
    }

    /// Cancel every running operation on `unit`, whichever requester
    /// started it: a LOGICAL UNIT RESET or hard reset ends background
    /// (IMMED) copies too, not only the tasks still in flight. Their records
    /// stay, reading "aborted". Returns how many were running.
    pub fn cancel_unit(&self, unit: &UnitId) -> usize {
        self.cancel_where(|k| &k.unit == unit)
    }

    /// Cancel every running operation (daemon shutdown).
    pub fn cancel_all(&self) -> usize {
        self.cancel_where(|_| true)
    }

    fn cancel_where(&self, mut pred: impl FnMut(&ListKey<K>) -> bool) -> usize {
        let r = self.records.lock();
        let mut n = 0;
        for (k, e) in &r.entries {
            if e.op.completed_at().is_none() && pred(k) {
                e.op.cancel.cancel();
                n += 1;
            }
        }
        n
    }

    /// The requester is gone (I_T nexus loss): its running operations are
    /// cancelled and its records dropped.
    pub fn requester_lost(&self, requester: &K) {
        let mut r = self.records.lock();
        r.entries.retain(|k, e| {
            if &k.requester != requester {
                return true;
            }
            e.op.cancel.cancel();
            false
        });
    }

    /// Records held (tests, diagnostics).
    pub fn record_count(&self) -> usize {
        self.records.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// The outcome tests record: a status byte and detail bytes.
    type Out = (u8, Option<Vec<u8>>);
    type Manager = CopyManager<u8, Out>;
    const PER_UNIT: u32 = 255;

    fn manager() -> (Manager, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        (CopyManager::new(clock.clone(), PER_UNIT), clock)
    }

    fn unit(last: u8) -> UnitId {
        let mut id = [0x60; 16];
        id[15] = last;
        id
    }

    fn ok() -> Completion<Out> {
        Completion { status: OpStatus::Succeeded, outcome: (0, None) }
    }

    #[test]
    fn duplicate_running_id_is_refused_completed_one_replaced() {
        let (m, _) = manager();
        let (a, b) = (unit(1), unit(2));
        let op = m.begin(&1, a, Some(7), 0).unwrap();
        assert!(matches!(m.begin(&1, a, Some(7), 0), Err(CopyError::OperationInProgress)));
        // Other requester, other unit, other id: separate namespaces.
        let o2 = m.begin(&2, a, Some(7), 0).unwrap();
        let o3 = m.begin(&1, b, Some(7), 0).unwrap();
        let o4 = m.begin(&1, a, Some(8), 0).unwrap();
        assert_eq!(m.lookup(&1, a, 7, Consume::Status).unwrap().status, OpStatus::Running);
        assert!(m.lookup(&1, a, 7, Consume::Details).is_none(), "no details while running");
        op.segment_done();
        m.finish(&op, ok());
        let again = m.begin(&1, a, Some(7), 0).unwrap();
        assert_eq!(m.lookup(&1, a, 7, Consume::Status).unwrap().segments, 0, "replaced");
        for o in [o2, o3, o4, again] {
            m.finish(&o, ok());
        }
    }

    #[test]
    fn records_are_consumed_by_reading() {
        let (m, _) = manager();
        let a = unit(1);
        let op = m.begin(&1, a, Some(1), 0).unwrap();
        m.finish(&op, ok());
        let s = m.lookup(&1, a, 1, Consume::Status).unwrap();
        assert_eq!((s.status, s.outcome), (OpStatus::Succeeded, (0, None)));
        assert!(m.lookup(&1, a, 1, Consume::Status).is_none(), "a successful copy's status is read once");
        // A failed copy keeps its details until they are read too.
        let op = m.begin(&1, a, Some(2), 0).unwrap();
        m.finish(&op, Completion { status: OpStatus::Failed, outcome: (2, Some(vec![0x70])) });
        assert!(m.lookup(&1, a, 2, Consume::Status).is_some());
        assert_eq!(m.lookup(&1, a, 2, Consume::Details).unwrap().outcome.1, Some(vec![0x70]));
        assert!(m.lookup(&1, a, 2, Consume::Details).is_none());
        // No record at all without a list identifier.
        let op = m.begin(&1, a, None, 0).unwrap();
        assert_eq!(m.record_count(), 0);
        m.finish(&op, ok());
    }

    /// Retention runs on the injected clock: nothing sleeps.
    #[test]
    fn completed_records_expire_on_the_virtual_clock() {
        let clock = Arc::new(ManualClock::new());
        let m: Manager = CopyManager::with_retention(clock.clone(), PER_UNIT, Duration::from_secs(60));
        let a = unit(1);
        let op = m.begin(&1, a, Some(1), 0).unwrap();
        clock.advance(Duration::from_secs(3600));
        assert!(m.lookup(&1, a, 1, Consume::Details).is_none(), "running: no details yet");
        assert_eq!(m.record_count(), 1, "a running operation never expires");
        m.finish(&op, ok());
        clock.advance(Duration::from_secs(59));
        assert!(m.known(&1, a, 1), "kept within the retention time");
        clock.advance(Duration::from_secs(1));
        assert!(m.lookup(&1, a, 1, Consume::Status).is_none(), "expired unread");
        assert_eq!(m.record_count(), 0);
    }

    #[test]
    fn unit_reset_and_shutdown_cancel_running_operations_of_every_requester() {
        let (m, _) = manager();
        let (a, b) = (unit(1), unit(2));
        let a1 = m.begin(&1, a, Some(1), 0).unwrap();
        let a2 = m.begin(&2, a, Some(1), 0).unwrap();
        let b1 = m.begin(&1, b, Some(1), 0).unwrap();
        let done = m.begin(&1, a, Some(2), 0).unwrap();
        m.finish(&done, ok());
        assert_eq!(m.cancel_unit(&a), 2, "only the running ones on unit a");
        assert!(a1.cancel_token().is_cancelled() && a2.cancel_token().is_cancelled());
        assert!(!b1.cancel_token().is_cancelled(), "another unit is untouched");
        assert_eq!(m.cancel_all(), 3, "cancelled-but-unfinished still count as running");
        assert!(b1.cancel_token().is_cancelled());
        for o in [a1, a2, b1] {
            m.finish(&o, ok());
        }
        assert_eq!((m.running_total(), m.cancel_all()), (0, 0));
    }

    #[test]
    fn concurrency_limits_and_requester_loss() {
        let (m, _) = manager();
        let a = unit(1);
        let ops: Vec<_> = (0..PER_UNIT).map(|i| m.begin(&1, a, Some(i), 0).unwrap()).collect();
        assert!(matches!(m.begin(&2, a, None, 0), Err(CopyError::InsufficientResources)));
        // Another unit has its own count.
        let b = unit(2);
        let ob = m.begin(&2, b, None, 0).unwrap();
        m.finish(&ob, ok());
        m.requester_lost(&1);
        assert!(ops.iter().all(|o| o.cancel_token().is_cancelled()));
        assert_eq!(m.record_count(), 0);
        // Still counted as running until they finish.
        assert!(m.begin(&2, a, None, 0).is_err());
        for o in &ops {
            m.finish(o, ok());
        }
        let o = m.begin(&2, a, None, 0).unwrap();
        m.finish(&o, ok());
        m.finish(&o, ok()); // a second finish is ignored
                            // The daemon-wide bound.
        m.set_max_concurrent(1);
        let o = m.begin(&2, a, None, 0).unwrap();
        assert!(matches!(m.begin(&3, b, None, 0), Err(CopyError::InsufficientResources)));
        m.finish(&o, ok());
        assert!(m.begin(&3, b, None, 0).is_ok());
    }

    /// One requester running its share does not stop another.
    #[test]
    fn one_requester_cannot_take_every_slot() {
        let (m, _) = manager();
        m.set_max_per_requester(2);
        let (a, b) = (unit(1), unit(2));
        let o1 = m.begin(&1, a, Some(1), 0).unwrap();
        let o2 = m.begin(&1, b, None, 0).unwrap();
        assert!(matches!(m.begin(&1, b, Some(3), 0), Err(CopyError::RequesterShare)));
        let other = m.begin(&2, a, None, 0).expect("another requester still runs copies");
        m.finish(&o1, ok());
        let o3 = m.begin(&1, b, Some(3), 0).expect("room again once one finished");
        for o in [o2, o3, other] {
            m.finish(&o, ok());
        }
        assert_eq!(m.running_total(), 0);
    }
}
