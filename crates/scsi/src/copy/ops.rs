//! Copy operations and their list-identifier records.
//!
//! Every third-party copy command that moves data (EXTENDED COPY today;
//! POPULATE TOKEN, WRITE USING TOKEN and LID4 EXTENDED COPY with IMMED next)
//! is a [`CopyOperation`]: progress counters, a cancel token and a final
//! status, shared between the thread running it and RECEIVE COPY RESULTS /
//! RECEIVE ROD TOKEN INFORMATION readers.
//!
//! Records are keyed by (I_T nexus, logical unit, list identifier): one
//! namespace per nexus and LU for every command family, as FreeBSD CTL
//! does (LID1 identifiers are simply the values 0..=255 of it). A list
//! identifier still running on the same nexus and LU refuses a new command
//! with OPERATION IN PROGRESS; a completed one is replaced.
//!
//! Completed records are kept until their status has been read (COPY
//! STATUS or RECEIVE COPY STATUS (LID4)) and, for a failed copy, its failure
//! details too (FAILED SEGMENT DETAILS); or until [`RECORD_RETENTION`] has
//! passed since completion, the I_T nexus is lost, or the record table is
//! full and the record is the oldest completed one. Operations with LIST ID
//! USAGE 11b have no record at all.

use super::exec::Progress;
use super::limits;
use crate::lu::LogicalUnit;
use crate::nexus::{CancelToken, Nexus};
use crate::result::ScsiStatus;
use crate::sense::{Asc, Sense};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a completed record is kept when nobody reads it.
pub const RECORD_RETENTION: Duration = Duration::from_secs(60);
/// Records kept across all nexuses; beyond it the oldest completed go first.
pub const MAX_RECORDS: usize = 4096;

/// Which record: I_T nexus, logical unit (by NAA designator) and list identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListKey {
    /// The nexus that issued the command.
    pub nexus: Nexus,
    /// The logical unit that received it.
    pub lu: [u8; 16],
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
pub struct Completion {
    /// Succeeded, Failed or Aborted.
    pub status: OpStatus,
    /// The status the originating command got.
    pub scsi_status: ScsiStatus,
    /// Its sense data, encoded as the command returned it.
    pub sense: Option<Vec<u8>>,
}

/// A point-in-time view of an operation, for status commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpSnapshot {
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
    /// Final SCSI status (GOOD while running).
    pub scsi_status: ScsiStatus,
    /// Final sense data, if any.
    pub sense: Option<Vec<u8>>,
    /// Token copy only: what RECEIVE ROD TOKEN INFORMATION reports.
    pub rod: Option<RodInfo>,
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
    pub token: Option<Box<[u8; super::token::TOKEN_LEN]>>,
}

/// One copy operation, shared by its runner and its observers.
#[derive(Debug)]
pub struct CopyOperation {
    key: Option<ListKey>,
    lu: [u8; 16],
    service_action: u8,
    cancel: CancelToken,
    progress: Progress,
    segments: AtomicU32,
    done: Mutex<Option<(Completion, Instant)>>,
    rod: Mutex<Option<RodInfo>>,
}

impl CopyOperation {
    /// Its record key (`None` with LIST ID USAGE 11b).
    pub fn key(&self) -> Option<&ListKey> {
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
    pub fn snapshot(&self) -> OpSnapshot {
        let done = self.done.lock().clone();
        let (status, scsi_status, sense) = match done {
            None => (OpStatus::Running, ScsiStatus::GOOD, None),
            Some((c, _)) => (c.status, c.scsi_status, c.sense),
        };
        OpSnapshot {
            service_action: self.service_action,
            status,
            segments: self.segments.load(Ordering::Acquire),
            bytes: self.progress.bytes(),
            operations: self.progress.operations(),
            scsi_status,
            sense,
            rod: self.rod.lock().clone(),
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
struct Entry {
    op: Arc<CopyOperation>,
    status_read: bool,
    details_read: bool,
}

#[derive(Debug, Default)]
struct Records {
    entries: HashMap<ListKey, Entry>,
    /// Running operations per logical unit (TOTAL CONCURRENT COPIES).
    running: HashMap<[u8; 16], u32>,
}

impl Records {
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
pub struct CopyManager {
    records: Mutex<Records>,
    retention: Duration,
    /// Operations running at once across every LU (daemon-wide bound).
    max_total: AtomicU32,
}

impl Default for CopyManager {
    fn default() -> Self {
        Self::new()
    }
}

/// Which part of a record a status command consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consume {
    /// COPY STATUS / RECEIVE COPY STATUS (LID4).
    Status,
    /// FAILED SEGMENT DETAILS.
    Details,
}

impl CopyManager {
    /// No records; completed ones kept for [`RECORD_RETENTION`].
    pub fn new() -> Self {
        Self::with_retention(RECORD_RETENTION)
    }

    /// No records; completed ones kept for `retention` when unread.
    pub fn with_retention(retention: Duration) -> Self {
        CopyManager { records: Mutex::new(Records::default()), retention, max_total: AtomicU32::new(u32::MAX) }
    }

    /// Bound the operations running at once across every LU; beyond it
    /// [`CopyManager::begin`] fails with INSUFFICIENT RESOURCES.
    pub fn set_max_concurrent(&self, n: u32) {
        self.max_total.store(n.max(1), Ordering::Relaxed);
    }

    /// Operations running right now, across every LU.
    pub fn running_total(&self) -> u32 {
        self.records.lock().running.values().sum()
    }

    /// Start an operation for `nexus` on `lu`. `list_id` is `None` for LIST
    /// ID USAGE 11b. Fails with OPERATION IN PROGRESS when the same list
    /// identifier is running on this nexus and LU, and with INSUFFICIENT
    /// RESOURCES beyond TOTAL CONCURRENT COPIES on the LU or when the
    /// record table is full of running operations.
    pub fn begin(
        &self,
        nexus: &Nexus,
        lu: &LogicalUnit,
        list_id: Option<u32>,
        service_action: u8,
    ) -> Result<Arc<CopyOperation>, Sense> {
        let now = Instant::now();
        let naa = lu.naa();
        let mut r = self.records.lock();
        r.purge_expired(now, self.retention);
        let key = list_id.map(|id| ListKey { nexus: nexus.clone(), lu: naa, list_id: id });
        if let Some(k) = &key {
            if let Some(e) = r.entries.get(k) {
                if e.op.completed_at().is_none() {
                    return Err(Sense::illegal(Asc::OPERATION_IN_PROGRESS));
                }
                r.entries.remove(k);
            }
        }
        let running = r.running.get(&naa).copied().unwrap_or(0);
        if running >= u32::from(limits::TOTAL_CONCURRENT_COPIES) {
            return Err(Sense::illegal(Asc::INSUFFICIENT_RESOURCES));
        }
        if r.running.values().sum::<u32>() >= self.max_total.load(Ordering::Relaxed) {
            return Err(Sense::illegal(Asc::INSUFFICIENT_RESOURCES));
        }
        if key.is_some() && r.entries.len() >= MAX_RECORDS && !r.evict_oldest_completed() {
            return Err(Sense::illegal(Asc::INSUFFICIENT_RESOURCES));
        }
        let op = Arc::new(CopyOperation {
            key: key.clone(),
            lu: naa,
            service_action,
            cancel: CancelToken::new(),
            progress: Progress::default(),
            segments: AtomicU32::new(0),
            done: Mutex::new(None),
            rod: Mutex::new(None),
        });
        *r.running.entry(naa).or_insert(0) += 1;
        if let Some(k) = key {
            r.entries.insert(k, Entry { op: op.clone(), status_read: false, details_read: false });
        }
        Ok(op)
    }

    /// Record how `op` ended. Call exactly once per [`CopyManager::begin`].
    pub fn finish(&self, op: &CopyOperation, completion: Completion) {
        let mut r = self.records.lock();
        {
            let mut done = op.done.lock();
            if done.is_some() {
                return;
            }
            *done = Some((completion, Instant::now()));
        }
        if let Some(n) = r.running.get_mut(&op.lu) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                r.running.remove(&op.lu);
            }
        }
    }

    /// The record of `list_id` for `nexus` on `lu`, consuming the `what`
    /// part of a completed one. `None` when there is no such record (or,
    /// for failure details, while it still runs).
    pub fn lookup(&self, nexus: &Nexus, lu: &LogicalUnit, list_id: u32, what: Consume) -> Option<OpSnapshot> {
        let key = ListKey { nexus: nexus.clone(), lu: lu.naa(), list_id };
        let mut r = self.records.lock();
        r.purge_expired(Instant::now(), self.retention);
        let e = r.entries.get_mut(&key)?;
        let snap = e.op.snapshot();
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

    /// The running operation `list_id` of `nexus` on `lu`, if any (COPY
    /// OPERATION ABORT, RECEIVE ROD TOKEN INFORMATION).
    pub fn running(&self, nexus: &Nexus, lu: &LogicalUnit, list_id: u32) -> Option<Arc<CopyOperation>> {
        let key = ListKey { nexus: nexus.clone(), lu: lu.naa(), list_id };
        let r = self.records.lock();
        r.entries.get(&key).filter(|e| e.op.completed_at().is_none()).map(|e| e.op.clone())
    }

    /// Whether `nexus` has a record (running or completed) of `list_id` on `lu`.
    pub fn known(&self, nexus: &Nexus, lu: &LogicalUnit, list_id: u32) -> bool {
        let key = ListKey { nexus: nexus.clone(), lu: lu.naa(), list_id };
        self.records.lock().entries.contains_key(&key)
    }

    /// Cancel every running operation on the LU with designator `naa`,
    /// whichever nexus started it: a LOGICAL UNIT RESET or hard reset ends
    /// background (IMMED) copies too, not only the tasks still in flight.
    /// Their records stay, reading "aborted". Returns how many were running.
    pub fn cancel_lu(&self, naa: &[u8; 16]) -> usize {
        self.cancel_where(|k| &k.lu == naa)
    }

    /// Cancel every running operation (daemon shutdown).
    pub fn cancel_all(&self) -> usize {
        self.cancel_where(|_| true)
    }

    fn cancel_where(&self, mut pred: impl FnMut(&ListKey) -> bool) -> usize {
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

    /// The I_T nexus is gone: its running operations are cancelled and its
    /// records dropped.
    pub fn nexus_lost(&self, nexus: &Nexus) {
        let mut r = self.records.lock();
        r.entries.retain(|k, e| {
            if &k.nexus != nexus {
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
    use crate::lu::LuConfig;
    use oxcopy_storage::MemStorage;

    fn nx(i: u8) -> Nexus {
        Nexus {
            initiator_name: Arc::from("iqn.2000-01.test:i"),
            isid: [0, 0, 0, 0, 0, i],
            target_name: Arc::from("iqn.2000-01.test:t"),
            tpgt: 1,
        }
    }

    fn lu(last: u8) -> LogicalUnit {
        let mut naa = [0x60; 16];
        naa[15] = last;
        LogicalUnit::new(LuConfig { naa, ..LuConfig::default() }, Arc::new(MemStorage::new(4096)))
    }

    fn ok() -> Completion {
        Completion { status: OpStatus::Succeeded, scsi_status: ScsiStatus::GOOD, sense: None }
    }

    #[test]
    fn duplicate_running_id_is_refused_completed_one_replaced() {
        let m = CopyManager::new();
        let (a, b) = (lu(1), lu(2));
        let op = m.begin(&nx(1), &a, Some(7), 0).unwrap();
        assert_eq!(m.begin(&nx(1), &a, Some(7), 0).unwrap_err().asc, Asc::OPERATION_IN_PROGRESS);
        // Other nexus, other LU, other id: separate namespaces.
        let o2 = m.begin(&nx(2), &a, Some(7), 0).unwrap();
        let o3 = m.begin(&nx(1), &b, Some(7), 0).unwrap();
        let o4 = m.begin(&nx(1), &a, Some(8), 0).unwrap();
        assert_eq!(m.lookup(&nx(1), &a, 7, Consume::Status).unwrap().status, OpStatus::Running);
        assert!(m.lookup(&nx(1), &a, 7, Consume::Details).is_none(), "no details while running");
        op.segment_done();
        m.finish(&op, ok());
        let again = m.begin(&nx(1), &a, Some(7), 0).unwrap();
        assert_eq!(m.lookup(&nx(1), &a, 7, Consume::Status).unwrap().segments, 0, "replaced");
        for o in [o2, o3, o4, again] {
            m.finish(&o, ok());
        }
    }

    #[test]
    fn records_are_consumed_by_reading() {
        let m = CopyManager::new();
        let a = lu(1);
        let op = m.begin(&nx(1), &a, Some(1), 0).unwrap();
        m.finish(&op, ok());
        let s = m.lookup(&nx(1), &a, 1, Consume::Status).unwrap();
        assert_eq!((s.status, s.scsi_status), (OpStatus::Succeeded, ScsiStatus::GOOD));
        assert!(m.lookup(&nx(1), &a, 1, Consume::Status).is_none(), "a successful copy's status is read once");
        // A failed copy keeps its details until they are read too.
        let op = m.begin(&nx(1), &a, Some(2), 0).unwrap();
        let fail =
            Completion { status: OpStatus::Failed, scsi_status: ScsiStatus::CHECK_CONDITION, sense: Some(vec![0x70]) };
        m.finish(&op, fail);
        assert!(m.lookup(&nx(1), &a, 2, Consume::Status).is_some());
        assert_eq!(m.lookup(&nx(1), &a, 2, Consume::Details).unwrap().sense, Some(vec![0x70]));
        assert!(m.lookup(&nx(1), &a, 2, Consume::Details).is_none());
        // No record at all for usage 11b.
        let op = m.begin(&nx(1), &a, None, 0).unwrap();
        assert_eq!(m.record_count(), 0);
        m.finish(&op, ok());
    }

    #[test]
    fn completed_records_expire() {
        let m = CopyManager::with_retention(Duration::from_millis(20));
        let a = lu(1);
        let op = m.begin(&nx(1), &a, Some(1), 0).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        assert!(m.lookup(&nx(1), &a, 1, Consume::Details).is_none(), "running: no details yet");
        assert_eq!(m.record_count(), 1, "a running operation never expires");
        m.finish(&op, ok());
        assert_eq!(m.record_count(), 1);
        std::thread::sleep(Duration::from_millis(40));
        assert!(m.lookup(&nx(1), &a, 1, Consume::Status).is_none(), "expired unread");
        assert_eq!(m.record_count(), 0);
    }

    #[test]
    fn lu_reset_and_shutdown_cancel_running_operations_of_every_nexus() {
        let m = CopyManager::new();
        let (a, b) = (lu(1), lu(2));
        let a1 = m.begin(&nx(1), &a, Some(1), 0).unwrap();
        let a2 = m.begin(&nx(2), &a, Some(1), 0).unwrap();
        let b1 = m.begin(&nx(1), &b, Some(1), 0).unwrap();
        let done = m.begin(&nx(1), &a, Some(2), 0).unwrap();
        m.finish(&done, ok());
        assert_eq!(m.cancel_lu(&a.naa()), 2, "only the running ones on LU a");
        assert!(a1.cancel_token().is_cancelled() && a2.cancel_token().is_cancelled());
        assert!(!b1.cancel_token().is_cancelled(), "another LU is untouched");
        assert_eq!(m.cancel_all(), 3, "cancelled-but-unfinished still count as running");
        assert!(b1.cancel_token().is_cancelled());
        for o in [a1, a2, b1] {
            m.finish(&o, ok());
        }
        assert_eq!((m.running_total(), m.cancel_all()), (0, 0));
    }

    #[test]
    fn concurrency_limit_and_nexus_loss() {
        let m = CopyManager::new();
        let a = lu(1);
        let ops: Vec<_> =
            (0..limits::TOTAL_CONCURRENT_COPIES).map(|i| m.begin(&nx(1), &a, Some(u32::from(i)), 0).unwrap()).collect();
        assert_eq!(m.begin(&nx(2), &a, None, 0).unwrap_err().asc, Asc::INSUFFICIENT_RESOURCES);
        // Another LU has its own count.
        let b = lu(2);
        let ob = m.begin(&nx(2), &b, None, 0).unwrap();
        m.finish(&ob, ok());
        m.nexus_lost(&nx(1));
        assert!(ops.iter().all(|o| o.cancel_token().is_cancelled()));
        assert_eq!(m.record_count(), 0);
        // Still counted as running until they finish.
        assert!(m.begin(&nx(2), &a, None, 0).is_err());
        for o in &ops {
            m.finish(o, ok());
        }
        let o = m.begin(&nx(2), &a, None, 0).unwrap();
        m.finish(&o, ok());
        m.finish(&o, ok()); // a second finish is ignored
    }
}
