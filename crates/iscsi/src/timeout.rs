//! The timers of a target connection, as deadlines: no clock, no waiting.
//!
//! The login and full-feature state machines are told the current time with
//! every event that matters to a timer; each exposes `poll_timeout` (the
//! next instant it needs attention) and `handle_timeout(now)` (what to do
//! then: send a keepalive, or close with a [`Timeout`]). The driver waits
//! until the instant asked for and calls back; early or spurious calls are
//! harmless.

use std::time::{Duration, Instant};

/// The full-feature timers of one connection (`[server]` `nop_interval`,
/// `pdu_timeout` and `write_data_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnTimeouts {
    /// Silence after which a NOP-In keepalive is sent; a keepalive still
    /// unanswered when the connection has been silent this long again closes
    /// it. `None`: no keepalive.
    pub nop_interval: Option<Duration>,
    /// How long one PDU may take to arrive, from its first byte to its last
    /// (bytes trickling in do not extend it), and how long the initiator may
    /// send nothing while a write it started waits for its Data-Out.
    /// Silence between PDUs with no write pending is not a stall.
    pub pdu_timeout: Duration,
    /// How long all the data of a write may take to arrive, from its SCSI
    /// Command PDU (`[server]` `write_data_timeout`; at least
    /// `pdu_timeout`). However its Data-Out PDUs trickle in, a write that
    /// is not complete by then ends with CHECK CONDITION, ABORTED COMMAND,
    /// INITIATOR RESPONSE TIMEOUT (4Bh/06h) and gives its buffer back; the
    /// connection stays.
    pub write_data_timeout: Duration,
    /// How long a task management function waits for the commands it
    /// aborts to stop before it is carried out (and answered) anyway; their
    /// ITTs are then free for the initiator to reuse.
    pub abort_wait: Duration,
}

/// Why a timer closed the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Timeout {
    /// The NOP-In keepalive got no answer.
    #[error("no answer to the NOP-In keepalive within {0:?}")]
    Keepalive(Duration),
    /// A PDU did not arrive whole within the limit, or a write's data
    /// stopped coming for that long.
    #[error("a PDU took longer than {0:?} to arrive, or a write's data stopped for that long")]
    PduStall(Duration),
    /// Login took longer than allowed.
    #[error("login did not complete within {0:?}")]
    Login(Duration),
}

/// `start + after`, or `None` (never) if that is beyond what `Instant` can
/// represent.
pub(crate) fn deadline(start: Instant, after: Duration) -> Option<Instant> {
    start.checked_add(after)
}

/// Whether `at` has come by `now`.
pub(crate) fn due(at: Option<Instant>, now: Instant) -> bool {
    at.is_some_and(|at| at <= now)
}
