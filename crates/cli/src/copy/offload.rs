//! What the offload engines (EXTENDED COPY, token copy, NVMe Copy) share: the
//! error that lets `auto` fall back, the report, list identifiers and the
//! status-poll loop.
//!
//! A status poll is a second command on the same I_T nexus as the copy it
//! asks about. The two are in flight at once, and the poll can overtake the
//! copy (the copy's parameter list has to arrive first, after an R2T): until
//! then the copy manager does not know the list identifier and answers
//! ILLEGAL REQUEST. [`Poller`] tolerates that for [`UNKNOWN_GRACE`] at
//! first, and never fails a copy because a poll failed — the copy
//! command's own status (or its RRTI) is what counts.

use crate::sense;
use oxcopy_initiator::InitiatorError;
use oxcopy_scsi::SenseKey;
use serde::Serialize;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long an unknown list identifier is tolerated before the first good poll.
pub const UNKNOWN_GRACE: Duration = Duration::from_secs(10);
/// Time between status polls when the copy manager gives no estimate.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Longest wait between two polls (the copy manager's estimate, or our
/// backoff, whichever is shorter, never exceeds it).
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// Factor by which the wait between polls grows while the copy runs.
pub const POLL_BACKOFF: u32 = 8;
/// The first wait between polls (most token operations of a fast copy
/// manager end within it).
pub const FIRST_POLL: Duration = Duration::from_millis(4);
/// Polls that may fail in a row, after the first good one, before polling
/// stops (the copy itself goes on).
pub const MAX_POLL_FAILURES: u32 = 20;

/// An offload that did not complete.
#[derive(Debug)]
pub struct OffloadError {
    /// In words, sense decoded.
    pub reason: String,
    /// Bytes known to be copied before it stopped.
    pub done: u64,
}

impl OffloadError {
    pub fn new(reason: impl Into<String>, done: u64) -> OffloadError {
        OffloadError { reason: reason.into(), done }
    }
}

/// How an offloaded copy went, for `--json` and the summary line.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct OffloadReport {
    /// Which LUN ran the copy (EXTENDED COPY) or created / consumed the tokens.
    pub copy_manager: String,
    /// Copy commands sent (EXTENDED COPY, POPULATE TOKEN, WRITE USING TOKEN).
    pub commands: u32,
    /// Status polls sent (RECEIVE COPY RESULTS / RECEIVE ROD TOKEN INFORMATION).
    pub status_polls: u32,
    /// Polls answered "unknown list identifier" while the copy was still arriving.
    pub early_polls: u32,
    /// Tokens created (token copy).
    pub tokens: u32,
    /// NVMe Copy: the source range descriptor format ("0h" or "2h").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_format: Option<String>,
}

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// The token operation running in the background (IMMED), if any: what an
/// interrupt must abort (COPY OPERATION ABORT) before the process exits.
static ACTIVE: std::sync::Mutex<Option<(oxcopy_initiator::Session, u64, u32)>> = std::sync::Mutex::new(None);

/// Record (or clear, with `None`) the background operation of this process.
pub fn set_active(op: Option<(oxcopy_initiator::Session, u64, u32)>) {
    if let Ok(mut a) = ACTIVE.lock() {
        *a = op;
    }
}

/// On interrupt: ask the copy manager to abort the background operation.
/// Returns the list identifier it was sent for.
pub async fn abort_active() -> Option<u32> {
    let op = ACTIVE.lock().ok().and_then(|mut a| a.take());
    let (session, lun, list_id) = op?;
    let r = tokio::time::timeout(Duration::from_secs(5), session.copy_operation_abort(lun, list_id)).await;
    matches!(r, Ok(Ok(ref o)) if o.is_good()).then_some(list_id)
}

/// A fresh list identifier: different for every command of this process and
/// unlikely to collide with another process on the same nexus (which cannot
/// happen anyway: each process logs in with its own ISID).
pub fn list_id() -> u32 {
    if NEXT_ID.load(Ordering::Relaxed) == 0 {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
                ^ std::process::id().rotate_left(16);
        let _ = NEXT_ID.compare_exchange(0, (seed | 1) & 0x7fff_ffff, Ordering::Relaxed, Ordering::Relaxed);
    }
    NEXT_ID.fetch_add(1, Ordering::Relaxed).max(1)
}

/// Whether an error says the copy manager does not (yet) know the list id.
pub fn unknown_list_id(e: &InitiatorError) -> bool {
    sense::sense_of(e).is_some_and(|s| {
        s.sense_key() == SenseKey::ILLEGAL_REQUEST && matches!(s.asc, 0x24 | 0x26)
        // INVALID FIELD IN CDB / PARAMETER LIST
    })
}

/// Poll bookkeeping for one copy command.
#[derive(Debug)]
pub struct Poller {
    started: Instant,
    seen: bool,
    failures: u32,
    pub polls: u32,
    pub early: u32,
}

/// What to do after a poll.
#[derive(Debug, PartialEq, Eq)]
pub enum PollVerdict {
    /// Go on polling.
    Again,
    /// Stop polling (the copy goes on).
    Stop,
    /// Give up: the copy manager never learned of the copy.
    Unknown(String),
}

impl Default for Poller {
    fn default() -> Self {
        Poller::new()
    }
}

impl Poller {
    pub fn new() -> Poller {
        Poller { started: Instant::now(), seen: false, failures: 0, polls: 0, early: 0 }
    }

    /// A poll answered.
    pub fn ok(&mut self) {
        self.polls += 1;
        self.seen = true;
        self.failures = 0;
    }

    /// A poll failed with `e`.
    pub fn failed(&mut self, e: &InitiatorError) -> PollVerdict {
        self.polls += 1;
        if !self.seen && unknown_list_id(e) {
            self.early += 1;
            if self.started.elapsed() < UNKNOWN_GRACE {
                return PollVerdict::Again;
            }
            return PollVerdict::Unknown(format!(
                "the copy manager still did not know the copy after {} s: {}",
                UNKNOWN_GRACE.as_secs(),
                sense::describe_error(e)
            ));
        }
        self.failures += 1;
        tracing::debug!("status poll failed: {}", sense::describe_error(e));
        if self.failures >= MAX_POLL_FAILURES {
            PollVerdict::Stop
        } else {
            PollVerdict::Again
        }
    }
}

/// Interval from a copy manager's ESTIMATED STATUS UPDATE DELAY (ms).
pub fn interval(delay_ms: u32) -> Duration {
    if delay_ms == 0 {
        POLL_INTERVAL
    } else {
        Duration::from_millis(delay_ms as u64).clamp(Duration::from_millis(1), MAX_POLL_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use oxcopy_initiator::ScsiOutcome;

    fn check(key: u8, asc: u8) -> InitiatorError {
        let sense = vec![0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, 0, 0, 0, 0, 0];
        InitiatorError::ScsiStatus(Box::new(ScsiOutcome {
            status: 2,
            sense: Some(Bytes::from(sense)),
            ..Default::default()
        }))
    }

    #[test]
    fn early_unknown_list_ids_are_tolerated_then_failures_stop_polling() {
        let mut p = Poller::new();
        assert_eq!(p.failed(&check(5, 0x24)), PollVerdict::Again);
        assert_eq!(p.early, 1);
        p.ok();
        for _ in 0..MAX_POLL_FAILURES - 1 {
            assert_eq!(p.failed(&check(5, 0x24)), PollVerdict::Again);
        }
        assert_eq!(p.failed(&check(5, 0x24)), PollVerdict::Stop);
        assert_eq!(p.early, 1);
        // Past the grace period an unknown list id is reported.
        let mut p = Poller { started: Instant::now() - UNKNOWN_GRACE, ..Poller::new() };
        assert!(matches!(p.failed(&check(5, 0x24)), PollVerdict::Unknown(_)));
        assert!(!unknown_list_id(&check(4, 0x44)));
    }

    #[test]
    fn ids_differ_and_intervals_are_bounded() {
        let (a, b) = (list_id(), list_id());
        assert_ne!(a, b);
        assert!(a > 0 && b > 0);
        assert_eq!(interval(0), POLL_INTERVAL);
        assert_eq!(interval(1), Duration::from_millis(1));
        assert_eq!(interval(100_000), MAX_POLL_INTERVAL);
    }
}
