//! Target side of the full feature phase, as a state machine with no I/O.
//!
//! The daemon feeds every received PDU to [`TargetConnection::on_pdu`] and
//! every finished SCSI command to [`TargetConnection::complete`]; both return
//! [`Action`]s: PDUs to send, commands to execute, tasks to cancel, task
//! management to perform, or "close". This module owns everything RFC 7143
//! says about sequence numbers (CmdSN window and ordering, StatSN, DataSN,
//! R2TSN), data transfer (immediate/unsolicited data, R2T, Data-In
//! splitting, residuals), NOP keepalive, task management bookkeeping, Text
//! (SendTargets) and Logout, at ErrorRecoveryLevel 0.
//!
//! It also owns the connection's timers (see [`crate::timeout`]): the
//! driver reports when bytes arrive ([`TargetConnection::bytes_received`]),
//! waits until [`TargetConnection::poll_timeout`] and then calls
//! [`TargetConnection::handle_timeout`], which sends the NOP-In keepalive,
//! ends writes whose data did not all arrive within `write_data_timeout` of
//! their command, or says why the connection must close.

use crate::budget::{BudgetGuard, Budgeted, WriteBudget};
use crate::frame::{encode_frame, EncodedPdu, Pdu};
use crate::params::{SessionParams, SessionType};
use crate::pdu::*;
use crate::timeout::{deadline, due, ConnTimeouts, Timeout};
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

/// Limits the daemon imposes on one connection.
#[derive(Debug, Clone)]
pub struct TargetConnConfig {
    /// Commands the initiator may have queued beyond ExpCmdSN (the CmdSN
    /// window); bounds memory per session.
    pub cmd_window: u32,
    /// Largest Expected Data Transfer Length accepted for a write (bytes we
    /// are willing to buffer for one command).
    pub max_write_buffer: u32,
    /// Text data answering `SendTargets=All` (already encoded key=value
    /// pairs); empty when the initiator may discover nothing.
    pub send_targets: Vec<u8>,
}

/// Names one task instance of a connection, never reused: an ITT is reused
/// by the initiator once a task is over (or aborted), a `TaskId` is not, so
/// the result of an execution is matched to the exact task it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub u64);

/// A SCSI command ready to execute: in CmdSN order, with all its data-out.
#[derive(Debug, Clone)]
pub struct ScsiTask {
    /// This task instance (hand it back to [`TargetConnection::complete_task`]).
    pub id: TaskId,
    pub itt: u32,
    pub lun: [u8; 8],
    pub cdb: Vec<u8>,
    pub data_out: Bytes,
    pub expected_len: u32,
    pub read: bool,
    pub write: bool,
    pub attr: TaskAttr,
}

/// The outcome of an executed task, handed back to [`TargetConnection::complete`].
#[derive(Debug, Clone, Default)]
pub struct TaskOutcome {
    pub status: u8,
    pub sense: Option<Vec<u8>>,
    pub data_in: Bytes,
    /// Data-out bytes the CDB called for (residuals of write-type commands).
    pub data_out_wanted: u32,
}

/// A task management request the daemon must carry out at the SCSI level
/// (after cancelling `aborted`), then answer with
/// [`TargetConnection::tmf_done`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskManagement {
    pub itt: u32,
    pub function: TmfFunction,
    pub lun: [u8; 8],
    /// Tasks of this connection that the function aborts (their responses
    /// are suppressed from now on).
    pub aborted: Vec<u32>,
}

/// What the daemon must do next.
#[derive(Debug, Clone)]
pub enum Action {
    Send(EncodedPdu),
    Execute(ScsiTask),
    /// Cancel running tasks (ABORT TASK and friends). Their results, when
    /// they arrive, are discarded.
    Cancel(Vec<u32>),
    TaskManagement(TaskManagement),
    /// Send what is queued, then close the connection.
    Close,
}

/// A command answered TASK SET FULL because its data did not fit a budget
/// (see [`TargetConnection::take_refusals`]): for the daemon to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub itt: u32,
    pub lun: [u8; 8],
    /// A write (its data to buffer) or a read (its data-in).
    pub write: bool,
    /// Its Expected Data Transfer Length.
    pub bytes: u32,
    /// The name of the budget it did not fit in (see
    /// [`WriteBudget::named`]).
    pub limit: &'static str,
}

/// Refusals kept for [`TargetConnection::take_refusals`] at most; more are
/// only counted.
const MAX_REFUSALS_KEPT: usize = 64;

/// Why a connection failed in a way the caller should log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

#[derive(Debug)]
struct R2tState {
    offset: u32,
    len: u32,
    received: u32,
    next_data_sn: u32,
}

#[derive(Debug)]
struct Collecting {
    task: ScsiTask,
    buf: BytesMut,
    /// Contiguous bytes received so far (DataPDUInOrder/SequenceInOrder = Yes).
    received: u32,
    /// Bytes the initiator may send unsolicited (immediate + Data-Out with
    /// TTT ffffffff).
    unsolicited_end: u32,
    unsolicited_data_sn: u32,
    /// Next offset not yet covered by an R2T.
    solicit_next: u32,
    r2ts: HashMap<u32, R2tState>,
    r2t_sn: u32,
    /// This write's share of the write budget (travels with its data).
    budget: Option<BudgetGuard>,
    /// When its SCSI Command PDU arrived (set by the first `bytes_received`
    /// after it): all its data must be in within `write_data_timeout`.
    since: Option<Instant>,
    /// A Data-Out of this write failed its data digest: the write will not
    /// run; it ends with PROTOCOL SERVICE CRC ERROR once the bursts under way
    /// are over (RFC 7143 §7.8).
    crc_failed: bool,
}

#[derive(Debug)]
enum TaskState {
    Collecting(Box<Collecting>),
    Running {
        id: TaskId,
        read: bool,
        expected_len: u32,
        r2t_count: u32,
        lun: [u8; 8],
        /// A read's share of the read budget: held until its data-in has
        /// been sent (it travels with the Data-In PDUs' data).
        budget: Option<BudgetGuard>,
    },
}

/// The driver's handle on one execution, kept until its result is in.
#[derive(Debug)]
struct Execution<H> {
    itt: u32,
    handle: H,
    /// A task management function gave up waiting for it and was answered:
    /// the initiator may reuse its ITT; its result, whenever it comes, is
    /// dropped.
    orphaned: bool,
}

/// A task management function waiting for the executions it aborted to
/// stop (at most the connection's `abort_wait`).
#[derive(Debug)]
struct PendingTmf {
    tm: TaskManagement,
    waiting: Vec<TaskId>,
    /// When its PDU arrived (set by the first `bytes_received` after it);
    /// the wait is bounded from then.
    since: Option<Instant>,
}

/// A non-immediate PDU held until its CmdSN comes up.
#[derive(Debug)]
struct Held {
    /// `None`: the CmdSN counts as received but there is nothing to run
    /// (ABORT TASK named it before it arrived, RFC 7143 §11.6.1 b); a copy
    /// arriving later is a duplicate and is dropped.
    pdu: Option<Pdu>,
    /// A SCSI Command whose immediate data failed its digest.
    crc_failed: bool,
}

/// Sense for transport-detected failures of a task (fixed format, 18 bytes).
pub fn transport_sense(key: u8, asc: u8, ascq: u8) -> Vec<u8> {
    let mut s = vec![0u8; 18];
    s[0] = 0x70;
    s[2] = key & 0x0f;
    s[7] = 10;
    s[12] = asc;
    s[13] = ascq;
    s
}

const SENSE_KEY_ILLEGAL_REQUEST: u8 = 0x05;
const SENSE_KEY_ABORTED_COMMAND: u8 = 0x0b;
/// 4Bh/00h DATA PHASE ERROR (sequence violations in Data-Out).
const ASC_DATA_PHASE_ERROR: (u8, u8) = (0x4b, 0x00);
/// 4Bh/05h DATA OFFSET ERROR.
const ASC_DATA_OFFSET_ERROR: (u8, u8) = (0x4b, 0x05);
/// 4Bh/02h TOO MUCH WRITE DATA.
const ASC_TOO_MUCH_WRITE_DATA: (u8, u8) = (0x4b, 0x02);
/// 47h/05h PROTOCOL SERVICE CRC ERROR (data digest at ERL 0).
const ASC_PROTOCOL_CRC_ERROR: (u8, u8) = (0x47, 0x05);
/// 4Bh/06h INITIATOR RESPONSE TIMEOUT (a write's data did not all arrive
/// within `write_data_timeout`).
const ASC_INITIATOR_RESPONSE_TIMEOUT: (u8, u8) = (0x4b, 0x06);
/// 24h/00h INVALID FIELD IN CDB.
const ASC_INVALID_FIELD_IN_CDB: (u8, u8) = (0x24, 0x00);
/// 0Eh/03h INVALID FIELD IN INFORMATION UNIT.
const ASC_INVALID_FIELD_IN_IU: (u8, u8) = (0x0e, 0x03);

/// Write `data` at `offset` of a write buffer whose length is the highest
/// offset written so far: a gap before `offset` reads as zeroes, as if the
/// buffer had been zeroed up front, but data arriving in order (the normal
/// case) is only copied once.
fn put_at(buf: &mut BytesMut, offset: usize, data: &[u8]) {
    if offset > buf.len() {
        buf.resize(offset, 0);
    }
    let overlap = (buf.len() - offset).min(data.len());
    buf[offset..offset + overlap].copy_from_slice(&data[..overlap]);
    buf.extend_from_slice(&data[overlap..]);
}

/// `a < b` in 32-bit serial number arithmetic (RFC 1982); see [`crate::serial`].
pub fn sn_lt(a: u32, b: u32) -> bool {
    crate::serial::lt(a, b)
}

/// The timer state of a connection whose driver started the timers.
#[derive(Debug)]
struct Clocks {
    cfg: ConnTimeouts,
    /// When bytes last arrived (or the timers started).
    last_rx: Instant,
    /// When the keepalive interval last began: bytes arrived or a NOP-In
    /// ping went out.
    idle_since: Instant,
    /// When the first bytes of the PDU that the bytes received so far end
    /// inside arrived (`None`: they end at a PDU boundary). The whole PDU
    /// must arrive within `pdu_timeout` of this, however its bytes trickle.
    pdu_started: Option<Instant>,
    /// A PDU ended (was fed to the core) since bytes last arrived: bytes
    /// still buffered then belong to a new PDU.
    pdu_ended: bool,
}

/// The full-feature state of one connection of a single-connection session.
///
/// It is the one table of the connection's tasks. `H` is the driver's handle
/// on a task's execution (say, a cancel token): handed over with
/// [`executing`](Self::executing) after [`Action::Execute`], it stays here
/// until [`complete`](Self::complete) reports the execution over, also when
/// the task was aborted meanwhile; its ITT is not reused until then.
#[derive(Debug)]
pub struct TargetConnection<H = ()> {
    params: SessionParams,
    cfg: TargetConnConfig,
    stat_sn: u32,
    exp_cmd_sn: u32,
    tasks: HashMap<u32, TaskState>,
    held: BTreeMap<u32, Held>,
    next_ttt: u32,
    /// TTT of our outstanding NOP-In ping, if any.
    ping_ttt: Option<u32>,
    /// Pending SendTargets text not yet sent (continuation), keyed by TTT.
    text_pending: Option<(u32, Bytes)>,
    logging_out: bool,
    /// ITT of the one immediate SCSI command admitted outside the CmdSN
    /// window (it counts while that ITT is in `tasks`).
    immediate_itt: Option<u32>,
    /// Bytes of write data we may buffer (shared with other connections).
    write_budget: Option<Arc<WriteBudget>>,
    /// Bytes of read data (data-in) our commands may hold until it is sent.
    read_budget: Option<Arc<WriteBudget>>,
    /// Commands refused for a budget since the driver last asked.
    refusals: Vec<Refusal>,
    /// Refusals in all (also those not kept).
    refusals_total: u64,
    /// Keepalive and stall timers (none until started).
    clocks: Option<Clocks>,
    /// The driver's handles on executions not yet completed: tasks
    /// running, and aborted ones still stopping.
    executions: HashMap<TaskId, Execution<H>>,
    /// Task management functions waiting for aborted executions to stop.
    pending_tmfs: Vec<PendingTmf>,
    next_task_id: u64,
}

impl TargetConnection {
    /// Start the full feature phase, for a driver that keeps no per-task
    /// handles. `stat_sn` is the next StatSN to use and `exp_cmd_sn` the
    /// CmdSN expected next, both as login left them.
    pub fn new(params: SessionParams, cfg: TargetConnConfig, stat_sn: u32, exp_cmd_sn: u32) -> Self {
        Self::with_handles(params, cfg, stat_sn, exp_cmd_sn)
    }
}

impl<H> TargetConnection<H> {
    /// Start the full feature phase, keeping a handle of type `H` per
    /// executing task (see [`executing`](Self::executing)); otherwise as
    /// [`TargetConnection::new`].
    pub fn with_handles(params: SessionParams, cfg: TargetConnConfig, stat_sn: u32, exp_cmd_sn: u32) -> Self {
        TargetConnection {
            params,
            cfg,
            stat_sn,
            exp_cmd_sn,
            tasks: HashMap::new(),
            held: BTreeMap::new(),
            next_ttt: 1,
            ping_ttt: None,
            text_pending: None,
            logging_out: false,
            immediate_itt: None,
            write_budget: None,
            read_budget: None,
            refusals: Vec::new(),
            refusals_total: 0,
            clocks: None,
            executions: HashMap::new(),
            pending_tmfs: Vec::new(),
            next_task_id: 1,
        }
    }

    fn fresh_task_id(&mut self) -> TaskId {
        let id = TaskId(self.next_task_id);
        self.next_task_id = self.next_task_id.wrapping_add(1);
        id
    }

    /// The task `itt` of an [`Action::Execute`] now executes; keep `handle`
    /// until [`complete_task`](Self::complete_task) is called for it.
    /// Ignored unless the task is running.
    pub fn executing(&mut self, itt: u32, handle: H) {
        if let Some(TaskState::Running { id, .. }) = self.tasks.get(&itt) {
            self.executions.insert(*id, Execution { itt, handle, orphaned: false });
        }
    }

    /// The current execution of `itt`: running, or aborted and still
    /// stopping, but not one whose ITT was handed back to the initiator.
    fn execution_of(&self, itt: u32) -> Option<TaskId> {
        self.executions.iter().find(|(_, e)| e.itt == itt && !e.orphaned).map(|(id, _)| *id)
    }

    /// The handle on the current execution of `itt` (running, or aborted
    /// and not yet completed).
    pub fn handle_mut(&mut self, itt: u32) -> Option<&mut H> {
        let id = self.execution_of(itt)?;
        self.executions.get_mut(&id).map(|e| &mut e.handle)
    }

    /// The handles on every execution not yet completed.
    pub fn handles(&self) -> impl Iterator<Item = &H> {
        self.executions.values().map(|e| &e.handle)
    }

    /// Whether `itt` names a task, or an execution not yet completed whose
    /// end the initiator has not been told of: a new task may not reuse it.
    fn itt_in_use(&self, itt: u32) -> bool {
        self.tasks.contains_key(&itt) || self.execution_of(itt).is_some()
    }

    /// Start the keepalive and stall timers at `now` (the full feature phase
    /// begins). Without this call the connection has no timers.
    pub fn start_timers(&mut self, cfg: ConnTimeouts, now: Instant) {
        self.clocks = Some(Clocks { cfg, last_rx: now, idle_since: now, pdu_started: None, pdu_ended: false });
    }

    /// Bytes arrived at `now`. Call after feeding every complete PDU among
    /// them to [`on_pdu`](Self::on_pdu); `undecoded` is how many bytes of an
    /// incomplete PDU remain buffered (0 at a PDU boundary).
    pub fn bytes_received(&mut self, now: Instant, undecoded: usize) {
        if let Some(c) = &mut self.clocks {
            c.last_rx = now;
            c.idle_since = now;
            c.pdu_started = match c.pdu_started {
                _ if undecoded == 0 => None,
                Some(start) if !c.pdu_ended => Some(start),
                _ => Some(now),
            };
            c.pdu_ended = false;
            for p in self.pending_tmfs.iter_mut().filter(|p| p.since.is_none()) {
                p.since = Some(now);
            }
            for t in self.tasks.values_mut() {
                if let TaskState::Collecting(c) = t {
                    c.since.get_or_insert(now);
                }
            }
        }
    }

    /// When the connection next needs [`handle_timeout`](Self::handle_timeout):
    /// the keepalive is due, or the initiator will have stalled. `None`: no
    /// timer runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let (keepalive, stall) = self.deadlines();
        [keepalive, stall, self.tmf_deadline(), self.write_data_deadline()].into_iter().flatten().min()
    }

    /// When the first write whose data is still coming runs out of
    /// `write_data_timeout`.
    fn write_data_deadline(&self) -> Option<Instant> {
        let c = self.clocks.as_ref().filter(|_| !self.logging_out)?;
        self.tasks
            .values()
            .filter_map(|t| match t {
                TaskState::Collecting(w) => w.since.and_then(|s| deadline(s, c.cfg.write_data_timeout)),
                TaskState::Running { .. } => None,
            })
            .min()
    }

    /// Writes whose data did not all arrive within `write_data_timeout` of
    /// their command, by `now`: ended with CHECK CONDITION, ABORTED COMMAND,
    /// INITIATOR RESPONSE TIMEOUT; their buffers and reservations are given
    /// back, their R2Ts forgotten, and Data-Out still coming for them is
    /// ignored (as for any task that is over).
    fn writes_timed_out(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(limit) = self.clocks.as_ref().filter(|_| !self.logging_out).map(|c| c.cfg.write_data_timeout) else {
            return;
        };
        let mut expired: Vec<u32> = self
            .tasks
            .iter()
            .filter(|(_, t)| match t {
                TaskState::Collecting(w) => due(w.since.and_then(|s| deadline(s, limit)), now),
                TaskState::Running { .. } => false,
            })
            .map(|(itt, _)| *itt)
            .collect();
        expired.sort_unstable();
        for itt in expired {
            self.fail_task(itt, SENSE_KEY_ABORTED_COMMAND, ASC_INITIATOR_RESPONSE_TIMEOUT, out);
        }
    }

    /// When the first waiting task management function gives up waiting.
    fn tmf_deadline(&self) -> Option<Instant> {
        let c = self.clocks.as_ref().filter(|_| !self.logging_out)?;
        self.pending_tmfs.iter().filter_map(|p| p.since.and_then(|s| deadline(s, c.cfg.abort_wait))).min()
    }

    /// The keepalive and stall deadlines, when armed.
    fn deadlines(&self) -> (Option<Instant>, Option<Instant>) {
        let Some(c) = self.clocks.as_ref().filter(|_| !self.logging_out) else { return (None, None) };
        let keepalive = c.cfg.nop_interval.and_then(|i| deadline(c.idle_since, i));
        let stall = match c.pdu_started {
            // Inside a PDU: from its first byte, not its latest.
            Some(start) => deadline(start, c.cfg.pdu_timeout),
            None if self.awaiting_data_out() => deadline(c.last_rx, c.cfg.pdu_timeout),
            None => None,
        };
        (keepalive, stall)
    }

    /// Act on the timers that are due at `now`: `Ok` with the NOP-In
    /// keepalive to send (or nothing), or `Err` when the connection must
    /// close: the initiator stalled in the middle of a PDU or of a write's
    /// data, or left the previous keepalive unanswered.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<Vec<Action>, Timeout> {
        let (keepalive, stall) = self.deadlines();
        let mut out = self.tmfs_given_up(now);
        self.writes_timed_out(now, &mut out);
        let Some(c) = &mut self.clocks else { return Ok(out) };
        if due(stall, now) {
            return Err(Timeout::PduStall(c.cfg.pdu_timeout));
        }
        let Some(interval) = c.cfg.nop_interval.filter(|_| due(keepalive, now)) else { return Ok(out) };
        c.idle_since = now;
        let ping = self.ping().ok_or(Timeout::Keepalive(interval))?;
        out.push(ping);
        Ok(out)
    }

    /// Task management functions whose wait for the executions they aborted
    /// is over at `now`: carried out anyway. Those executions are orphaned:
    /// their ITTs may be reused, their results will be dropped.
    fn tmfs_given_up(&mut self, now: Instant) -> Vec<Action> {
        let Some(wait) = self.clocks.as_ref().filter(|_| !self.logging_out).map(|c| c.cfg.abort_wait) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.pending_tmfs.len() {
            let p = &self.pending_tmfs[i];
            if !due(p.since.and_then(|s| deadline(s, wait)), now) {
                i += 1;
                continue;
            }
            let p = self.pending_tmfs.swap_remove(i);
            for id in &p.waiting {
                if let Some(e) = self.executions.get_mut(id) {
                    e.orphaned = true;
                }
            }
            out.push(Action::TaskManagement(p.tm));
        }
        out
    }

    /// Charge the data of writes that must be collected (solicited or
    /// unsolicited Data-Out) to `budget`: a write whose Expected Data
    /// Transfer Length does not fit is answered TASK SET FULL at once, and
    /// no data is solicited for it.
    pub fn set_write_budget(&mut self, budget: Arc<WriteBudget>) {
        self.write_budget = Some(budget);
    }

    /// Charge the data-in of read commands (with data to move and no write
    /// data) to `budget`, from before they execute until their Data-In has
    /// been sent: a read whose Expected Data Transfer Length does not fit
    /// is answered TASK SET FULL at once and does not execute.
    pub fn set_read_budget(&mut self, budget: Arc<WriteBudget>) {
        self.read_budget = Some(budget);
    }

    /// The commands answered TASK SET FULL for a budget since the last call
    /// (at most the first 64 of them; [`refusals_total`](Self::refusals_total)
    /// counts them all), for the driver to log.
    pub fn take_refusals(&mut self) -> Vec<Refusal> {
        std::mem::take(&mut self.refusals)
    }

    /// Commands answered TASK SET FULL for a budget on this connection.
    pub fn refusals_total(&self) -> u64 {
        self.refusals_total
    }

    /// Answer `h` TASK SET FULL (SAM-5 §5.3.1): its data did not fit the
    /// budget `limit`. Unsolicited data that follows is ignored.
    fn task_set_full(&mut self, h: &ScsiCommand, limit: &'static str, out: &mut Vec<Action>) {
        let edtl = h.expected_data_length;
        self.refusals_total += 1;
        if self.refusals.len() < MAX_REFUSALS_KEPT {
            self.refusals.push(Refusal { itt: h.itt, lun: h.lun, write: h.write, bytes: edtl, limit });
        }
        let wanted = if h.write { edtl } else { 0 };
        let outcome = TaskOutcome { status: 0x28, sense: None, data_in: Bytes::new(), data_out_wanted: wanted };
        self.respond(h.itt, false, edtl, 0, outcome, out);
    }

    /// The negotiated parameters.
    pub fn params(&self) -> &SessionParams {
        &self.params
    }

    /// Tasks currently known (collecting data or running).
    pub fn tasks_in_flight(&self) -> usize {
        self.tasks.len()
    }

    /// Whether some write is waiting for Data-Out from the initiator (its
    /// data solicited or expected unsolicited): the connection is then in
    /// the middle of a command, not idle.
    pub fn awaiting_data_out(&self) -> bool {
        self.tasks.values().any(|t| matches!(t, TaskState::Collecting(_)))
    }

    /// ITTs of every task in flight (for cancelling them at connection loss).
    pub fn task_itts(&self) -> Vec<u32> {
        self.tasks.keys().copied().collect()
    }

    /// StatSN the next response will carry.
    pub fn stat_sn(&self) -> u32 {
        self.stat_sn
    }

    /// ExpCmdSN: the next CmdSN we will accept.
    pub fn exp_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn
    }

    /// MaxCmdSN: the window shrinks as tasks pile up so that a session can
    /// never have more than `cmd_window` commands (plus one immediate)
    /// buffered. Held (early) commands already sit inside the advertised
    /// window and the immediate task is outside it: counting either would
    /// pull MaxCmdSN back, which initiators ignore (RFC 7143 §4.2.2.1), so
    /// commands they may legitimately send would then be dropped.
    pub fn max_cmd_sn(&self) -> u32 {
        let busy = self.tasks.len() as u32 - self.immediate_task_running() as u32;
        let room = self.cfg.cmd_window.max(1).saturating_sub(busy);
        self.exp_cmd_sn.wrapping_add(room).wrapping_sub(1)
    }

    fn immediate_task_running(&self) -> bool {
        self.immediate_itt.is_some_and(|itt| self.tasks.contains_key(&itt))
    }

    fn fresh_ttt(&mut self) -> u32 {
        let t = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1);
        if self.next_ttt == RESERVED_TAG {
            self.next_ttt = 1;
        }
        t
    }

    fn next_stat_sn(&mut self) -> u32 {
        let s = self.stat_sn;
        self.stat_sn = self.stat_sn.wrapping_add(1);
        s
    }

    fn encode(&self, header: Header, data: Bytes) -> Action {
        Action::Send(encode_frame(&header, &[], data, self.params.header_digest, self.params.data_digest))
    }

    fn reject(&mut self, reason: RejectReason, bhs: &[u8; BHS_LEN]) -> Action {
        // A Reject carries StatSN but does not advance it (RFC 7143 §11.17.1
        // lets the target reuse it; libiscsi and Linux accept either).
        let h = Header::Reject(Reject {
            reason,
            stat_sn: self.stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data_sn: 0,
        });
        self.encode(h, Bytes::copy_from_slice(bhs))
    }

    /// A NOP-In ping to send when the connection has been idle (keepalive).
    /// Returns `None` while a previous ping is unanswered.
    pub(crate) fn ping(&mut self) -> Option<Action> {
        if self.ping_ttt.is_some() {
            return None;
        }
        let ttt = self.fresh_ttt();
        self.ping_ttt = Some(ttt);
        let h = Header::NopIn(NopIn {
            lun: [0; 8],
            itt: RESERVED_TAG,
            ttt,
            // An unsolicited NOP-In does not advance StatSN.
            stat_sn: self.stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
        });
        Some(self.encode(h, Bytes::new()))
    }

    /// True while a keepalive ping awaits its answer.
    pub fn ping_outstanding(&self) -> bool {
        self.ping_ttt.is_some()
    }

    fn pdu_ended(&mut self) {
        if let Some(c) = &mut self.clocks {
            c.pdu_ended = true;
        }
    }

    /// Handle one received PDU.
    pub fn on_pdu(&mut self, pdu: Pdu) -> Vec<Action> {
        self.pdu_ended();
        let mut out = Vec::new();
        if self.logging_out {
            return out;
        }
        match &pdu.header {
            Header::DataOut(_) => self.on_data_out(pdu, &mut out),
            Header::NopOut(h) if h.itt == RESERVED_TAG => {
                // Answer to our ping (or an unsolicited ping that wants no
                // reply). Never acknowledged, never advances CmdSN.
                if Some(h.ttt) == self.ping_ttt {
                    self.ping_ttt = None;
                }
            }
            Header::ScsiCommand(_)
            | Header::NopOut(_)
            | Header::TaskMgmtRequest(_)
            | Header::TextRequest(_)
            | Header::LogoutRequest(_) => self.on_command(pdu, false, &mut out),
            Header::LoginRequest(_) => {
                out.push(self.reject(RejectReason::PROTOCOL_ERROR, &pdu.bhs));
            }
            _ => out.push(self.reject(RejectReason::COMMAND_NOT_SUPPORTED, &pdu.bhs)),
        }
        out
    }

    /// A PDU that carries CmdSN: check the window, hold it if it is early,
    /// run it (and anything it unblocks) when its turn comes.
    fn on_command(&mut self, pdu: Pdu, crc_failed: bool, out: &mut Vec<Action>) {
        let (immediate, cmd_sn) = match &pdu.header {
            Header::ScsiCommand(h) => (h.immediate, h.cmd_sn),
            Header::NopOut(h) => (h.immediate, h.cmd_sn),
            Header::TaskMgmtRequest(h) => (h.immediate, h.cmd_sn),
            Header::TextRequest(h) => (h.immediate, h.cmd_sn),
            Header::LogoutRequest(h) => (h.immediate, h.cmd_sn),
            _ => return,
        };
        if immediate {
            // Immediate commands are delivered at once and do not advance
            // ExpCmdSN (RFC 7143 §4.2.2.1).
            self.dispatch(pdu, crc_failed, out);
            return;
        }
        if sn_lt(cmd_sn, self.exp_cmd_sn) || sn_lt(self.max_cmd_sn(), cmd_sn) {
            // Outside the window (a closed one included): silently ignored
            // (RFC 7143 §4.2.2.1).
            return;
        }
        if cmd_sn != self.exp_cmd_sn {
            // Early but inside the window: hold (bounded by the window). A
            // duplicate of a held command is ignored.
            self.held.entry(cmd_sn).or_insert(Held { pdu: Some(pdu), crc_failed });
            return;
        }
        self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
        self.dispatch(pdu, crc_failed, out);
        self.release_held(out);
    }

    /// Run the held commands that are now in order (bounded by the window:
    /// every entry is removed as it is passed).
    fn release_held(&mut self, out: &mut Vec<Action>) {
        while let Some(held) = self.held.remove(&self.exp_cmd_sn) {
            self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
            if let Some(pdu) = held.pdu {
                self.dispatch(pdu, held.crc_failed, out);
            }
        }
    }

    /// ABORT TASK whose Referenced Task Tag names no task (RFC 7143
    /// §11.6.1): a command still held for its turn is dropped; otherwise, if
    /// RefCmdSN is inside the CmdSN window and before the TMF's own CmdSN,
    /// that CmdSN counts as received (the command, should it arrive, is
    /// dropped as a duplicate). Both answer Function Complete; anything else
    /// is Task Does Not Exist.
    fn abort_unknown_task(&mut self, h: &TaskMgmtRequest, out: &mut Vec<Action>) {
        let rtt = h.referenced_task_tag;
        let held_sn = self.held.iter().find(|(_, held)| {
            held.pdu.as_ref().is_some_and(|p| matches!(&p.header, Header::ScsiCommand(c) if c.itt == rtt))
        });
        if let Some((&sn, _)) = held_sn {
            self.held.insert(sn, Held { pdu: None, crc_failed: false });
            self.tmf_response(h.itt, TmfResponse::COMPLETE, out);
            return;
        }
        let r = h.ref_cmd_sn;
        let in_window = crate::serial::le(self.exp_cmd_sn, r) && crate::serial::le(r, self.max_cmd_sn());
        if !in_window || !sn_lt(r, h.cmd_sn) || self.held.contains_key(&r) {
            // Already received (and over), beyond the window, not before the
            // TMF, or some other command's CmdSN.
            self.tmf_response(h.itt, TmfResponse::TASK_DOES_NOT_EXIST, out);
            return;
        }
        self.held.insert(r, Held { pdu: None, crc_failed: false });
        self.tmf_response(h.itt, TmfResponse::COMPLETE, out);
        self.release_held(out);
    }

    fn dispatch(&mut self, pdu: Pdu, crc_failed: bool, out: &mut Vec<Action>) {
        match &pdu.header {
            Header::ScsiCommand(h) if crc_failed => {
                // Its immediate data failed the digest: the command takes
                // its turn and ends with PROTOCOL SERVICE CRC ERROR.
                if self.itt_in_use(h.itt) {
                    out.push(self.reject(RejectReason::TASK_IN_PROGRESS, &pdu.bhs));
                    return;
                }
                let (itt, edtl, lun) = (h.itt, h.expected_data_length, h.lun);
                let id = self.fresh_task_id();
                self.tasks.insert(
                    itt,
                    TaskState::Running { id, read: false, expected_len: edtl, r2t_count: 0, lun, budget: None },
                );
                self.fail_task_running(itt, SENSE_KEY_ABORTED_COMMAND, ASC_PROTOCOL_CRC_ERROR, edtl, out);
            }
            Header::ScsiCommand(_) => self.on_scsi_command(pdu, out),
            Header::NopOut(h) => {
                let h = Header::NopIn(NopIn {
                    lun: h.lun,
                    itt: h.itt,
                    ttt: RESERVED_TAG,
                    stat_sn: self.next_stat_sn(),
                    exp_cmd_sn: self.exp_cmd_sn,
                    max_cmd_sn: self.max_cmd_sn(),
                });
                // The ping data is echoed, up to the initiator's
                // MaxRecvDataSegmentLength (RFC 7143 §11.18.5).
                let mut data = pdu.data.clone();
                data.truncate(self.params.initiator_max_recv_data_segment_length.max(512) as usize);
                out.push(self.encode(h, data));
            }
            Header::TaskMgmtRequest(h) => {
                let h = h.clone();
                self.on_tmf(h, out);
            }
            Header::TextRequest(h) => {
                let h = h.clone();
                self.on_text(h, &pdu, out);
            }
            Header::LogoutRequest(h) => {
                let resp = if h.reason == LogoutReason::CLOSE_SESSION || h.reason == LogoutReason::CLOSE_CONNECTION {
                    LogoutResponseCode::SUCCESS
                } else {
                    LogoutResponseCode::RECOVERY_NOT_SUPPORTED
                };
                let itt = h.itt;
                // Everything in flight is abandoned with the connection.
                let running: Vec<u32> = self.tasks.keys().copied().collect();
                self.tasks.clear();
                self.held.clear();
                self.pending_tmfs.clear();
                if !running.is_empty() {
                    out.push(Action::Cancel(running));
                }
                let h = Header::LogoutResponse(LogoutResponse {
                    response: resp,
                    itt,
                    stat_sn: self.next_stat_sn(),
                    exp_cmd_sn: self.exp_cmd_sn,
                    max_cmd_sn: self.max_cmd_sn(),
                    time2wait: 0,
                    time2retain: 0,
                });
                out.push(self.encode(h, Bytes::new()));
                self.logging_out = true;
                out.push(Action::Close);
            }
            _ => {}
        }
    }

    fn fail_task(&mut self, itt: u32, sense_key: u8, asc: (u8, u8), out: &mut Vec<Action>) {
        let (expected, wanted) = match self.tasks.remove(&itt) {
            Some(TaskState::Collecting(c)) => (c.task.expected_len, c.task.expected_len),
            _ => (0, 0),
        };
        let outcome = TaskOutcome {
            status: 0x02,
            sense: Some(transport_sense(sense_key, asc.0, asc.1)),
            data_in: Bytes::new(),
            data_out_wanted: wanted,
        };
        self.respond(itt, false, expected, 0, outcome, out);
    }

    fn on_scsi_command(&mut self, pdu: Pdu, out: &mut Vec<Action>) {
        let Header::ScsiCommand(h) = &pdu.header else { return };
        let h = h.clone();
        if self.params.session_type == SessionType::Discovery {
            out.push(self.reject(RejectReason::PROTOCOL_ERROR, &pdu.bhs));
            return;
        }
        if self.itt_in_use(h.itt) {
            out.push(self.reject(RejectReason::TASK_IN_PROGRESS, &pdu.bhs));
            return;
        }
        if self.immediate_itt == Some(h.itt) {
            // That immediate task is over (a live one was rejected above).
            self.immediate_itt = None;
        }
        if h.immediate {
            // Immediate commands bypass the CmdSN window; admit one at a time
            // so that memory stays bounded (RFC 7143 §4.2.2.1, §11.17.1).
            if self.immediate_task_running() {
                out.push(self.reject(RejectReason::IMMEDIATE_COMMAND_REJECT, &pdu.bhs));
                return;
            }
            self.immediate_itt = Some(h.itt);
        }
        let Some(cdb) = pdu.full_cdb() else {
            out.push(self.reject(RejectReason::INVALID_PDU_FIELD, &pdu.bhs));
            return;
        };
        let imm_len = pdu.data.len() as u32;
        let edtl = h.expected_data_length;
        let id = self.fresh_task_id();
        let mut task = ScsiTask {
            id,
            itt: h.itt,
            lun: h.lun,
            cdb,
            data_out: Bytes::new(),
            expected_len: edtl,
            read: h.read,
            write: h.write,
            attr: h.attr,
        };
        // Immediate data is only legal on writes, within ImmediateData=Yes,
        // FirstBurstLength and EDTL.
        if imm_len > 0
            && (!h.write || !self.params.immediate_data || imm_len > self.params.first_burst_length || imm_len > edtl)
        {
            out.push(self.reject(RejectReason::PROTOCOL_ERROR, &pdu.bhs));
            return;
        }
        if h.read && h.write {
            // Bidirectional commands are not supported by any command we
            // implement.
            self.tasks.insert(
                h.itt,
                TaskState::Running { id, read: false, expected_len: edtl, r2t_count: 0, lun: h.lun, budget: None },
            );
            self.fail_task_running(h.itt, SENSE_KEY_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, edtl, out);
            return;
        }
        if !h.write || edtl == 0 {
            // A read holds its data-in's worth of the read budget from now
            // until that has been sent.
            let budget = match &self.read_budget {
                Some(b) if h.read && edtl > 0 => match b.reserve(u64::from(edtl)) {
                    Ok(g) => Some(g),
                    Err(limit) => {
                        self.task_set_full(&h, limit, out);
                        return;
                    }
                },
                _ => None,
            };
            self.tasks.insert(
                h.itt,
                TaskState::Running { id, read: h.read, expected_len: edtl, r2t_count: 0, lun: h.lun, budget },
            );
            out.push(Action::Execute(task));
            return;
        }
        if edtl > self.cfg.max_write_buffer {
            // More than we will buffer for one command: refuse without
            // soliciting data (unsolicited data that follows is ignored).
            self.tasks.insert(
                h.itt,
                TaskState::Running { id, read: false, expected_len: edtl, r2t_count: 0, lun: h.lun, budget: None },
            );
            self.fail_task_running(h.itt, SENSE_KEY_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_IU, edtl, out);
            return;
        }
        if imm_len == edtl {
            task.data_out = pdu.data.clone();
            self.tasks.insert(
                h.itt,
                TaskState::Running { id, read: false, expected_len: edtl, r2t_count: 0, lun: h.lun, budget: None },
            );
            out.push(Action::Execute(task));
            return;
        }
        let budget = match &self.write_budget {
            None => None,
            Some(b) => match b.reserve(u64::from(edtl)) {
                Ok(g) => Some(g),
                Err(limit) => {
                    // Over the write budget (the session's share or the
                    // daemon's): TASK SET FULL, no data solicited.
                    self.task_set_full(&h, limit, out);
                    return;
                }
            },
        };
        let unsolicited_end =
            if self.params.initial_r2t { imm_len } else { self.params.first_burst_length.min(edtl).max(imm_len) };
        // Filled as the data arrives (see `put_at`): no up-front zeroing.
        let mut buf = BytesMut::with_capacity(edtl as usize);
        buf.extend_from_slice(&pdu.data);
        let c = Collecting {
            task,
            buf,
            received: imm_len,
            unsolicited_end,
            unsolicited_data_sn: 0,
            solicit_next: unsolicited_end,
            r2ts: HashMap::new(),
            r2t_sn: 0,
            budget,
            since: None,
            crc_failed: false,
        };
        self.tasks.insert(h.itt, TaskState::Collecting(Box::new(c)));
        self.issue_r2ts(h.itt, out);
    }

    fn fail_task_running(&mut self, itt: u32, key: u8, asc: (u8, u8), edtl: u32, out: &mut Vec<Action>) {
        self.tasks.remove(&itt);
        let outcome = TaskOutcome {
            status: 0x02,
            sense: Some(transport_sense(key, asc.0, asc.1)),
            data_in: Bytes::new(),
            data_out_wanted: edtl,
        };
        self.respond(itt, false, edtl, 0, outcome, out);
    }

    /// Solicit the rest of a write's data: up to MaxOutstandingR2T bursts of
    /// at most MaxBurstLength each.
    fn issue_r2ts(&mut self, itt: u32, out: &mut Vec<Action>) {
        let max_burst = self.params.max_burst_length.max(512);
        let max_out = self.params.max_outstanding_r2t.max(1) as usize;
        let mut to_send = Vec::new();
        {
            let Some(TaskState::Collecting(c)) = self.tasks.get_mut(&itt) else { return };
            let edtl = c.task.expected_len;
            while c.r2ts.len() + to_send.len() < max_out && c.solicit_next < edtl {
                let len = (edtl - c.solicit_next).min(max_burst);
                let offset = c.solicit_next;
                c.solicit_next += len;
                let r2t_sn = c.r2t_sn;
                c.r2t_sn += 1;
                to_send.push((offset, len, r2t_sn, c.task.lun));
            }
        }
        for (offset, len, r2t_sn, lun) in to_send {
            let ttt = self.fresh_ttt();
            if let Some(TaskState::Collecting(c)) = self.tasks.get_mut(&itt) {
                c.r2ts.insert(ttt, R2tState { offset, len, received: 0, next_data_sn: 0 });
            }
            let h = Header::R2t(R2t {
                lun,
                itt,
                ttt,
                stat_sn: self.stat_sn,
                exp_cmd_sn: self.exp_cmd_sn,
                max_cmd_sn: self.max_cmd_sn(),
                r2t_sn,
                buffer_offset: offset,
                desired_length: len,
            });
            out.push(self.encode(h, Bytes::new()));
        }
    }

    fn on_data_out(&mut self, pdu: Pdu, out: &mut Vec<Action>) {
        let Header::DataOut(h) = &pdu.header else { return };
        let h = h.clone();
        let len = pdu.data.len() as u32;
        self.data_out(h, len, Some(&pdu.data), out);
    }

    /// One Data-Out: its header, data segment length and data (`None`: the
    /// data failed its digest and is discarded; the header still counts
    /// for the sequence).
    fn data_out(&mut self, h: DataOut, len: u32, data: Option<&Bytes>, out: &mut Vec<Action>) {
        let Some(TaskState::Collecting(c)) = self.tasks.get_mut(&h.itt) else {
            // Data for a task we no longer (or never) knew: aborted, failed,
            // or dropped for an out-of-window CmdSN. Ignore it.
            return;
        };
        let end = match h.buffer_offset.checked_add(len) {
            Some(e) if e <= c.task.expected_len => e,
            _ => {
                self.fail_task(h.itt, SENSE_KEY_ABORTED_COMMAND, ASC_TOO_MUCH_WRITE_DATA, out);
                return;
            }
        };
        if h.ttt == RESERVED_TAG {
            // Unsolicited Data-Out.
            if h.buffer_offset != c.received || end > c.unsolicited_end {
                self.fail_task(h.itt, SENSE_KEY_ABORTED_COMMAND, ASC_DATA_OFFSET_ERROR, out);
                return;
            }
            if h.data_sn != c.unsolicited_data_sn {
                self.fail_task(h.itt, SENSE_KEY_ABORTED_COMMAND, ASC_DATA_PHASE_ERROR, out);
                return;
            }
            c.unsolicited_data_sn += 1;
        } else {
            if c.received < c.unsolicited_end {
                // Solicited data before the unsolicited burst is complete:
                // out of order (DataSequenceInOrder=Yes), and it would let
                // the write run with a hole in its data.
                self.fail_task(h.itt, SENSE_KEY_ABORTED_COMMAND, ASC_DATA_OFFSET_ERROR, out);
                return;
            }
            let Some(r) = c.r2ts.get_mut(&h.ttt) else {
                self.fail_task(h.itt, SENSE_KEY_ABORTED_COMMAND, (0x4b, 0x01), out);
                return;
            };
            if h.data_sn != r.next_data_sn {
                self.fail_task(h.itt, SENSE_KEY_ABORTED_COMMAND, ASC_DATA_PHASE_ERROR, out);
                return;
            }
            if h.buffer_offset != r.offset + r.received || end > r.offset + r.len {
                self.fail_task(h.itt, SENSE_KEY_ABORTED_COMMAND, ASC_DATA_OFFSET_ERROR, out);
                return;
            }
            r.next_data_sn += 1;
            r.received += len;
            if r.received == r.len {
                c.r2ts.remove(&h.ttt);
            }
        }
        match data {
            Some(d) if !c.crc_failed => put_at(&mut c.buf, h.buffer_offset as usize, d),
            Some(_) => {}
            None => {
                c.crc_failed = true;
                // The data will be thrown away: give its memory back now.
                c.buf = BytesMut::new();
            }
        }
        if end > c.received {
            c.received = end;
        }
        if c.crc_failed {
            // RFC 7143 §7.8 a) 2) (ERL 0: no recovery R2T): end the task
            // once the unsolicited burst and every outstanding R2T are
            // over; solicit nothing more.
            if c.r2ts.is_empty() && c.received >= c.unsolicited_end {
                self.fail_task(h.itt, SENSE_KEY_ABORTED_COMMAND, ASC_PROTOCOL_CRC_ERROR, out);
            }
            return;
        }
        let complete = c.received == c.task.expected_len && c.r2ts.is_empty();
        if complete {
            if let Some(TaskState::Collecting(c)) = self.tasks.remove(&h.itt) {
                let c = *c;
                let mut task = c.task;
                let mut buf = c.buf;
                // Already `expected_len` long (`received` is its length).
                buf.resize(task.expected_len as usize, 0);
                task.data_out = match c.budget {
                    // The reservation ends when the last reference to the data does.
                    Some(g) => Bytes::from_owner(Budgeted { data: buf, _guard: g }),
                    None => buf.freeze(),
                };
                self.tasks.insert(
                    h.itt,
                    TaskState::Running {
                        id: task.id,
                        read: false,
                        expected_len: task.expected_len,
                        r2t_count: c.r2t_sn,
                        lun: task.lun,
                        budget: None,
                    },
                );
                out.push(Action::Execute(task));
            }
        } else {
            self.issue_r2ts(h.itt, out);
        }
    }

    /// A data digest error on a received PDU: Reject it (RFC 7143 §7.8).
    /// A Data-Out's data is discarded and, at ERL 0 (no recovery R2T), its
    /// write ends with PROTOCOL SERVICE CRC ERROR once the rest of the data
    /// under way has arrived (§7.8 a) 2)).
    pub fn on_data_digest_error(&mut self, bhs: &[u8; BHS_LEN]) -> Vec<Action> {
        self.pdu_ended();
        let mut out = vec![self.reject(RejectReason::DATA_DIGEST_ERROR, bhs)];
        let itt = bhs_itt(bhs);
        let opcode = bhs_opcode(bhs);
        if opcode == Opcode::SCSI_COMMAND
            && self.params.session_type == SessionType::Normal
            && !self.logging_out
            && !self.tasks.contains_key(&itt)
        {
            // Immediate data failed: the command PDU is lost with it. At ERL 0
            // the initiator cannot retry it, and the hole it would leave in
            // the CmdSN sequence would stall every later command; so the
            // command is taken in its turn (window and ordering as usual)
            // and ends in CHECK CONDITION instead of executing.
            let pdu = Pdu { header: Header::decode(bhs), bhs: *bhs, ahs: Bytes::new(), data: Bytes::new() };
            self.on_command(pdu, true, &mut out);
        } else if opcode == Opcode::DATA_OUT && !self.logging_out {
            if let Header::DataOut(h) = Header::decode(bhs) {
                let len = u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]);
                self.data_out(h, len, None, &mut out);
            }
        } else if opcode == Opcode::SCSI_COMMAND && matches!(self.tasks.get(&itt), Some(TaskState::Collecting(_))) {
            self.fail_task(itt, SENSE_KEY_ABORTED_COMMAND, ASC_PROTOCOL_CRC_ERROR, &mut out);
        }
        out
    }

    fn on_tmf(&mut self, h: TaskMgmtRequest, out: &mut Vec<Action>) {
        let f = h.function;
        let mut aborted = Vec::new();
        if f == TmfFunction::ABORT_TASK {
            if self.tasks.remove(&h.referenced_task_tag).is_some() {
                aborted.push(h.referenced_task_tag);
            } else {
                self.abort_unknown_task(&h, out);
                return;
            }
        } else if f == TmfFunction::ABORT_TASK_SET
            || f == TmfFunction::CLEAR_TASK_SET
            || f == TmfFunction::LOGICAL_UNIT_RESET
        {
            aborted = self.tasks_for_lun(h.lun);
        } else if f == TmfFunction::TARGET_WARM_RESET || f == TmfFunction::TARGET_COLD_RESET {
            aborted = self.tasks.keys().copied().collect();
        } else if f == TmfFunction::CLEAR_ACA {
            // NACA is never accepted, so no ACA can exist.
            self.tmf_response(h.itt, TmfResponse::COMPLETE, out);
            return;
        } else {
            self.tmf_response(h.itt, TmfResponse::NOT_SUPPORTED, out);
            return;
        }
        for itt in &aborted {
            self.tasks.remove(itt);
        }
        if !aborted.is_empty() {
            out.push(Action::Cancel(aborted.clone()));
        }
        // The aborted commands must be over before the function is carried
        // out and answered: wait for their executions to complete (at most
        // `abort_wait`, see `handle_timeout`).
        let waiting: Vec<TaskId> = aborted.iter().filter_map(|itt| self.execution_of(*itt)).collect();
        let tm = TaskManagement { itt: h.itt, function: f, lun: h.lun, aborted };
        if waiting.is_empty() {
            out.push(Action::TaskManagement(tm));
        } else {
            self.pending_tmfs.push(PendingTmf { tm, waiting, since: None });
        }
    }

    fn tasks_for_lun(&self, lun: [u8; 8]) -> Vec<u32> {
        self.tasks
            .iter()
            .filter(|(_, t)| match t {
                TaskState::Collecting(c) => c.task.lun == lun,
                TaskState::Running { lun: l, .. } => *l == lun,
            })
            .map(|(itt, _)| *itt)
            .collect()
    }

    /// The daemon finished a task management function.
    pub fn tmf_done(&mut self, itt: u32, response: TmfResponse) -> Vec<Action> {
        let mut out = Vec::new();
        self.tmf_response(itt, response, &mut out);
        out
    }

    fn tmf_response(&mut self, itt: u32, response: TmfResponse, out: &mut Vec<Action>) {
        let h = Header::TaskMgmtResponse(TaskMgmtResponse {
            response,
            itt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
        });
        out.push(self.encode(h, Bytes::new()));
    }

    fn on_text(&mut self, h: TextRequest, pdu: &Pdu, out: &mut Vec<Action>) {
        let mrdsl = self.params.initiator_max_recv_data_segment_length.max(512) as usize;
        let mut body: Bytes = if h.ttt != RESERVED_TAG {
            // Continuation of a long response we started.
            match self.text_pending.take() {
                Some((ttt, rest)) if ttt == h.ttt => rest,
                _ => {
                    out.push(self.reject(RejectReason::PROTOCOL_ERROR, &pdu.bhs));
                    return;
                }
            }
        } else {
            self.text_pending = None;
            Bytes::from(self.text_answer(&pdu.data))
        };
        let (chunk, more) = if body.len() > mrdsl {
            let chunk = body.split_to(mrdsl);
            (chunk, true)
        } else {
            (std::mem::take(&mut body), false)
        };
        let ttt = if more {
            let t = self.fresh_ttt();
            self.text_pending = Some((t, body));
            t
        } else {
            RESERVED_TAG
        };
        let resp = Header::TextResponse(TextResponse {
            final_: !more,
            continue_: more,
            lun: h.lun,
            itt: h.itt,
            ttt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
        });
        out.push(self.encode(resp, chunk));
    }

    /// Answer the keys of a Text Request: SendTargets from the configured
    /// list, anything else NotUnderstood.
    fn text_answer(&self, data: &[u8]) -> Vec<u8> {
        let mut resp = Vec::new();
        for pair in data.split(|b| *b == 0).filter(|p| !p.is_empty()).take(64) {
            let Some(eq) = pair.iter().position(|b| *b == b'=') else { continue };
            let key = &pair[..eq];
            if key == b"SendTargets" {
                resp.extend_from_slice(&self.cfg.send_targets);
            } else if key.len() <= 63 {
                resp.extend_from_slice(key);
                resp.extend_from_slice(b"=NotUnderstood\0");
            }
        }
        resp
    }

    /// The task now running as `itt` finished executing (for drivers that
    /// track tasks by ITT alone; see [`complete_task`](Self::complete_task)).
    pub fn complete(&mut self, itt: u32, outcome: TaskOutcome) -> Vec<Action> {
        let id = match self.tasks.get(&itt) {
            Some(TaskState::Running { id, .. }) => Some(*id),
            _ => self.execution_of(itt),
        };
        match id {
            Some(id) => self.complete_task(id, outcome),
            None => Vec::new(),
        }
    }

    /// The task instance `id` finished executing: build its Data-In and
    /// response PDUs. Results of tasks that were aborted meanwhile are
    /// dropped (also when the initiator has reused the ITT since: the new
    /// task is another instance). Its handle is dropped either way, and a
    /// task management function waiting for it may now be carried out.
    pub fn complete_task(&mut self, id: TaskId, outcome: TaskOutcome) -> Vec<Action> {
        let mut out = Vec::new();
        self.executions.remove(&id);
        let mut i = 0;
        while i < self.pending_tmfs.len() {
            let p = &mut self.pending_tmfs[i];
            p.waiting.retain(|w| *w != id);
            if p.waiting.is_empty() {
                let p = self.pending_tmfs.swap_remove(i);
                out.push(Action::TaskManagement(p.tm));
            } else {
                i += 1;
            }
        }
        let itt = self.tasks.iter().find(|(_, t)| matches!(t, TaskState::Running { id: r, .. } if *r == id));
        let Some(itt) = itt.map(|(itt, _)| *itt) else { return out };
        let Some(TaskState::Running { read, expected_len, r2t_count, budget, .. }) = self.tasks.remove(&itt) else {
            return out;
        };
        let mut outcome = outcome;
        if let Some(g) = budget.filter(|_| read && !outcome.data_in.is_empty()) {
            // The reservation ends when the last Data-In PDU carrying this
            // data is gone (sent, or dropped with the connection).
            outcome.data_in = Bytes::from_owner(Budgeted { data: outcome.data_in, _guard: g });
        }
        self.respond(itt, read, expected_len, r2t_count, outcome, &mut out);
        out
    }

    fn respond(
        &mut self,
        itt: u32,
        read: bool,
        edtl: u32,
        r2t_count: u32,
        outcome: TaskOutcome,
        out: &mut Vec<Action>,
    ) {
        // Residuals compare what the command wanted to move with what the
        // initiator said it expected (RFC 7143 §11.4.5).
        let wanted = if read || outcome.data_out_wanted == 0 {
            outcome.data_in.len() as u64
        } else {
            outcome.data_out_wanted as u64
        };
        let wanted = if !read && outcome.data_out_wanted == 0 && !outcome.data_in.is_empty() {
            // Data-in produced for a command sent without the R bit: none of
            // it can be transferred.
            outcome.data_in.len() as u64
        } else {
            wanted
        };
        let (overflow, underflow, residual) = if wanted > edtl as u64 {
            (true, false, (wanted - edtl as u64).min(u32::MAX as u64) as u32)
        } else if wanted < edtl as u64 {
            (false, true, edtl - wanted as u32)
        } else {
            (false, false, 0)
        };
        let mut data = if read { outcome.data_in } else { Bytes::new() };
        data.truncate(edtl as usize);
        let can_collapse = outcome.sense.is_none() && (outcome.status == 0x00 || outcome.status == 0x04);
        let seg = self.params.initiator_max_recv_data_segment_length.max(512) as usize;
        let burst = self.params.max_burst_length.max(512) as usize;
        let mut data_sn = 0u32;
        let mut offset = 0usize;
        let total = data.len();
        while offset < total {
            // No PDU crosses a MaxBurstLength boundary: each Data-In
            // sequence ends (F bit) at one.
            let n = seg.min(total - offset).min(burst - offset % burst);
            let last = offset + n == total;
            let end_of_burst = last || (offset + n) % burst == 0;
            let with_status = last && can_collapse;
            let chunk = data.slice(offset..offset + n);
            let h = Header::DataIn(DataIn {
                final_: end_of_burst || with_status,
                ack: false,
                overflow: with_status && overflow,
                underflow: with_status && underflow,
                has_status: with_status,
                status: outcome.status,
                lun: [0; 8],
                itt,
                ttt: RESERVED_TAG,
                stat_sn: if with_status { self.next_stat_sn() } else { self.stat_sn },
                exp_cmd_sn: self.exp_cmd_sn,
                max_cmd_sn: self.max_cmd_sn(),
                data_sn,
                buffer_offset: offset as u32,
                residual: if with_status { residual } else { 0 },
            });
            out.push(self.encode(h, chunk));
            data_sn += 1;
            offset += n;
            if with_status {
                return;
            }
        }
        let mut sense_data = Bytes::new();
        if let Some(sense) = outcome.sense {
            let n = sense.len().min(seg.saturating_sub(2)).min(u16::MAX as usize);
            let mut v = Vec::with_capacity(n + 2);
            v.extend_from_slice(&(n as u16).to_be_bytes());
            v.extend_from_slice(&sense[..n]);
            sense_data = Bytes::from(v);
        }
        let h = Header::ScsiResponse(ScsiResponse {
            bidi_overflow: false,
            bidi_underflow: false,
            overflow,
            underflow,
            response: ServiceResponse::COMPLETED.0,
            status: outcome.status,
            itt,
            snack_tag: 0,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            exp_data_sn: if read { data_sn } else { r2t_count },
            bidi_residual: 0,
            residual,
        });
        out.push(self.encode(h, sense_data));
    }
}

#[cfg(test)]
mod put_at_tests {
    use super::put_at;
    use bytes::BytesMut;

    #[test]
    fn in_order_gaps_and_overlaps_match_a_zeroed_buffer() {
        let mut b = BytesMut::with_capacity(16);
        put_at(&mut b, 0, b"abcd");
        put_at(&mut b, 4, b"ef");
        assert_eq!(&b[..], b"abcdef");
        put_at(&mut b, 8, b"ij"); // gap reads as zeroes
        assert_eq!(&b[..], b"abcdef\0\0ij");
        put_at(&mut b, 6, b"GHIJK"); // overlaps the end, then extends
        assert_eq!(&b[..], b"abcdefGHIJK");
        put_at(&mut b, 1, b"BC"); // inside
        assert_eq!(&b[..], b"aBCdefGHIJK");
        put_at(&mut b, 11, b"");
        assert_eq!(b.len(), 11);
    }
}
