//! The target side of one NVMe/TCP connection (one NVMe queue), with no I/O
//! and no clock: bytes in, [`Action`]s out, the current time passed in.
//!
//! The daemon owns the socket. It feeds what it reads to
//! [`TargetQueue::on_bytes`], drains [`TargetQueue::poll_action`]: sends
//! [`Action::Send`] in order, runs [`Action::Execute`] (a command with all of
//! its host → controller data gathered) and reports each result with
//! [`TargetQueue::complete`]; on [`Action::Close`] it flushes what is queued
//! and closes. It sleeps until [`TargetQueue::poll_timeout`] and then calls
//! [`TargetQueue::handle_timeout`].
//!
//! # Choices where the spec leaves room
//!
//! - One R2T per write for its whole length (as Linux nvmet); the host splits
//!   it into H2CData PDUs of at most MAXH2CDATA. One outstanding R2T per
//!   command always satisfies the host's MAXR2T.
//! - Write data is gathered per command; the bytes held (gathered, executing,
//!   until [`TargetQueue::complete`]) are bounded by
//!   [`TransportConfig::max_write_bytes`]: the R2T of a further write waits
//!   (FIFO) until completions release enough. In-capsule data is counted too
//!   but cannot wait (it is already there): it is bounded by queue size ×
//!   in-capsule size. The effective MDTS is `min(max_data_transfer,
//!   max_write_bytes)` so a write always fits once the queue is idle.
//! - Statuses of commands refused without executing:
//!   bidirectional data, in-capsule data on a command that does not move data
//!   host → controller, in-capsule data with a transport SGL, or a length over
//!   the MDTS → Invalid Field in Command (the MDTS rule of NVMe Base);
//!   an SGL type other than 01h / 5Ah → SGL Descriptor Type Invalid; an
//!   in-capsule SGL with a non-zero offset → SGL Offset Invalid, whose length
//!   differs from the data in the capsule → Data SGL Length Invalid; a CID
//!   already outstanding → Command ID Conflict; a bad data digest →
//!   Transient Transport Error.
//! - A zero-length SGL is "no data" and executes (the Linux host sends a null
//!   transport SGL, 5Ah with length 0, for Set/Get Features without a buffer):
//!   the command set layer decides whether the command needed data. Commands
//!   with no data direction skip the SGL checks.
//! - More outstanding commands than the queue size (SQSIZE + 1; 32 before
//!   [`TargetQueue::set_queue_size`]) is a host protocol violation: C2HTermReq
//!   PDU Sequence Error and close (Linux nvmet also drops the connection when
//!   it runs out of commands).
//! - Controller → host data is sent only on success (as nvmet), cut to the
//!   SGL length, in C2HData PDUs of at most
//!   [`TransportConfig::max_c2h_data`], DATA_LAST on the last; the
//!   DATA_SUCCESS optimization is never used: a CapsuleResp always follows.
//! - A write whose data has not all arrived `write_data_timeout` after its
//!   R2T completes with Transient Transport Error; H2CData arriving for it
//!   later is an unknown command (fatal).
//! - Every CQE sent carries the transport's SQ head (capsules received
//!   modulo the queue size; 0 when Connect disabled SQ flow control) and,
//!   once the Connect was seen, its queue id as SQID.
//! - Header-field errors found after the PDU was decoded (H2CData for an
//!   unknown command or tag, wrong offset, DATA_LAST misplaced) are Invalid
//!   PDU Header Field with the field's offset; data past the R2T's range is
//!   Data Transfer Out of Range.

use crate::wire::command::{Cqe, Direction, FabricsType, SglType, Sqe, Status};
use crate::wire::pdu::{
    self, field, DataPdu, DecodeError, EncodedPdu, IcReq, IcResp, Pdu, PduType, R2t, Role, RxParams, TermReq,
    TermReqFes, TxParams, ADMIN_IN_CAPSULE_DATA, MAX_PDA, MAX_TERM_DATA, MIN_MAXH2CDATA,
};
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Queue size before [`TargetQueue::set_queue_size`] (the admin queue depth
/// Linux uses).
pub const DEFAULT_QUEUE_SIZE: u32 = 32;

/// Limits and timers of a target queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// Whether header digests are granted when the host asks.
    pub header_digest: bool,
    /// Whether data digests are granted when the host asks.
    pub data_digest: bool,
    /// MAXH2CDATA announced in ICResp (at least 4096).
    pub maxh2cdata: u32,
    /// In-capsule data size of I/O queues (IOCCSZ × 16 − 64).
    pub in_capsule_data: u32,
    /// In-capsule data size of the admin queue.
    pub admin_in_capsule_data: u32,
    /// Largest data transfer of one command in bytes (MDTS).
    pub max_data_transfer: u32,
    /// Largest total of write data held by this queue.
    pub max_write_bytes: usize,
    /// Largest data of one C2HData PDU sent.
    pub max_c2h_data: u32,
    /// A PDU partially received for longer closes the connection.
    pub pdu_timeout: Duration,
    /// A write whose data has not all arrived this long after its R2T fails.
    pub write_data_timeout: Duration,
    /// No ICReq this long after the connection was accepted closes it.
    pub connect_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            header_digest: true,
            data_digest: true,
            maxh2cdata: 128 * 1024,
            in_capsule_data: 8192,
            admin_in_capsule_data: ADMIN_IN_CAPSULE_DATA,
            max_data_transfer: 1 << 20,
            max_write_bytes: 8 << 20,
            max_c2h_data: 128 * 1024,
            pdu_timeout: Duration::from_secs(30),
            write_data_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// A command to execute, with all of its host → controller data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capsule {
    /// The submission queue entry.
    pub sqe: Sqe,
    /// Host → controller data (empty for reads and commands without data).
    pub data: Bytes,
    /// Controller → host bytes the host expects at most (the SGL length of a
    /// read; 0 otherwise). Data returned beyond it is not sent.
    pub read_len: u32,
}

/// Why the queue closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// A fatal transport error: a C2HTermReq with these values was queued.
    Fatal {
        /// Fatal error status sent.
        fes: TermReqFes,
        /// Fatal error information sent.
        fei: u32,
    },
    /// The host sent an H2CTermReq (not answered).
    HostTerminated {
        /// Fatal error status received.
        fes: TermReqFes,
        /// Fatal error information received.
        fei: u32,
    },
    /// A PDU stayed partially received longer than the PDU timeout.
    PduTimeout,
    /// No ICReq within the connect timeout.
    ConnectTimeout,
}

/// What the daemon must do next, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this PDU.
    Send(EncodedPdu),
    /// Execute this command, then call [`TargetQueue::complete`].
    Execute(Capsule),
    /// Send what is queued, then close the connection. Nothing follows.
    Close(CloseReason),
}

/// Counters for the daemon to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Bytes of whole PDUs received.
    pub bytes_in: u64,
    /// Bytes of PDUs queued to send.
    pub bytes_out: u64,
    /// PDUs received.
    pub pdus_in: u64,
    /// PDUs queued to send.
    pub pdus_out: u64,
    /// Header digest errors (each fatal).
    pub header_digest_errors: u64,
    /// Data digest errors (each fails its command).
    pub data_digest_errors: u64,
    /// Command capsules received.
    pub commands: u64,
    /// Commands completed by the transport without executing.
    pub refused: u64,
}

/// What ICReq / ICResp settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Header digests on.
    pub hdgst: bool,
    /// Data digests on.
    pub ddgst: bool,
    /// The host's PDU data alignment (C2HData padding).
    pub hpda: u8,
    /// The host's MAXR2T (0's based).
    pub maxr2t: u32,
    /// MAXH2CDATA announced.
    pub maxh2cdata: u32,
}

/// Why [`TargetQueue::complete`] refused a completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CompleteError {
    /// No command with this CID is executing (never was, already completed,
    /// or failed by the transport).
    #[error("no executing command with cid {0}")]
    UnknownCid(u16),
    /// The queue is closed.
    #[error("queue closed")]
    Closed,
}

#[derive(Debug)]
enum Stage {
    /// Handed to the daemon.
    Executing,
    /// A write waiting for the budget before its R2T.
    AwaitBudget,
    /// R2T sent, gathering H2CData.
    Receiving { ttag: u16, data: Gather, received: u32, deadline: Instant, failed: bool },
}

#[derive(Debug)]
struct Cmd {
    sqe: Sqe,
    /// SGL length: write data expected or read data allowed.
    len: u32,
    read_len: u32,
    /// Write bytes counted against the budget.
    held: usize,
    stage: Stage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitIcReq { deadline: Instant },
    Ready,
    Closed,
}

/// The target side of one NVMe/TCP connection. See the module docs.
#[derive(Debug)]
pub struct TargetQueue {
    cfg: TransportConfig,
    mdts: u32,
    state: State,
    rx: RxParams,
    tx: TxParams,
    negotiated: Option<Negotiated>,
    qid: Option<u16>,
    queue_limit: u32,
    /// SQ head: capsules received, modulo the queue size.
    sq_head: u32,
    /// SQ flow control (off when Connect's CATTR asked to disable it).
    sq_flow: bool,
    cmds: HashMap<u16, Cmd>,
    r2t_wait: VecDeque<u16>,
    write_held: usize,
    pdu_started: Option<Instant>,
    actions: VecDeque<Action>,
    next_ttag: u16,
    stats: QueueStats,
}

impl TargetQueue {
    /// A queue for a connection accepted at `now` (the connect timeout runs
    /// from there). Out-of-range config values are clamped (MAXH2CDATA and
    /// the C2HData size to at least 4096).
    pub fn new(cfg: TransportConfig, now: Instant) -> Self {
        let mut cfg = cfg;
        cfg.maxh2cdata = cfg.maxh2cdata.max(MIN_MAXH2CDATA);
        cfg.max_c2h_data = cfg.max_c2h_data.max(MIN_MAXH2CDATA);
        let mdts = cfg.max_data_transfer.min(u32::try_from(cfg.max_write_bytes).unwrap_or(u32::MAX));
        Self {
            state: State::AwaitIcReq { deadline: later(now, cfg.connect_timeout) },
            rx: RxParams::initial(Role::Target),
            tx: TxParams::default(),
            negotiated: None,
            qid: None,
            queue_limit: DEFAULT_QUEUE_SIZE,
            sq_head: 0,
            sq_flow: true,
            cmds: HashMap::new(),
            r2t_wait: VecDeque::new(),
            write_held: 0,
            pdu_started: None,
            actions: VecDeque::new(),
            next_ttag: 0,
            stats: QueueStats::default(),
            mdts,
            cfg,
        }
    }

    /// Consumes every whole PDU at the front of `buf` (the bytes read from
    /// the socket so far; what is left is an incomplete PDU). Does nothing
    /// once closed.
    pub fn on_bytes(&mut self, buf: &mut BytesMut, now: Instant) {
        let before = buf.len();
        while self.state != State::Closed {
            if let State::AwaitIcReq { .. } = self.state {
                if let Some(ch) = pdu::peek_header(buf) {
                    if ch.pdu_type != PduType::IC_REQ {
                        let n = buf.len().min(pdu::CH_LEN);
                        let header = Bytes::copy_from_slice(&buf[..n]);
                        self.fatal(TermReqFes::PDU_SEQUENCE_ERROR, 0, header);
                        break;
                    }
                }
            }
            match pdu::decode(buf, &self.rx) {
                Ok(None) => break,
                Ok(Some(p)) => {
                    self.stats.pdus_in += 1;
                    self.pdu_started = None;
                    self.on_pdu(p, true, now);
                }
                Err(DecodeError::DataDigest(p)) => {
                    self.stats.pdus_in += 1;
                    self.stats.data_digest_errors += 1;
                    self.pdu_started = None;
                    self.on_pdu(*p, false, now);
                }
                Err(DecodeError::Fatal { fes, fei, header }) => {
                    if fes == TermReqFes::HEADER_DIGEST_ERROR {
                        self.stats.header_digest_errors += 1;
                    }
                    self.fatal(fes, fei, header);
                    break;
                }
            }
        }
        self.stats.bytes_in += (before - buf.len().min(before)) as u64;
        if self.state != State::Closed {
            if buf.is_empty() {
                self.pdu_started = None;
            } else if self.pdu_started.is_none() {
                self.pdu_started = Some(now);
            }
        }
    }

    /// The next action, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// All pending actions, in order.
    pub fn drain_actions(&mut self) -> std::collections::vec_deque::Drain<'_, Action> {
        self.actions.drain(..)
    }

    /// Reports the result of an executed command: `cqe.cid` names it; the
    /// daemon fills status and result. The transport sets `sqhd` (see
    /// [`TargetQueue::sq_head`]) and, once a Connect was seen, `sqid`. `data`
    /// is its controller →
    /// host data (sent only on success, cut to the SGL length). Releases its
    /// write bytes, which may let waiting writes get their R2T (`now` starts
    /// their data timer).
    pub fn complete(&mut self, cqe: Cqe, data: Option<Bytes>, now: Instant) -> Result<(), CompleteError> {
        if self.state == State::Closed {
            return Err(CompleteError::Closed);
        }
        match self.cmds.get(&cqe.cid) {
            Some(c) if matches!(c.stage, Stage::Executing) => {}
            _ => return Err(CompleteError::UnknownCid(cqe.cid)),
        }
        let Some(cmd) = self.cmds.remove(&cqe.cid) else { return Err(CompleteError::UnknownCid(cqe.cid)) };
        self.write_held = self.write_held.saturating_sub(cmd.held);
        if let Some(mut d) = data.filter(|_| cqe.status.is_success()) {
            d.truncate(usize::try_from(cmd.read_len).unwrap_or(usize::MAX));
            let chunk = usize::try_from(self.cfg.max_c2h_data).unwrap_or(usize::MAX).max(1);
            let total = d.len();
            let mut off = 0usize;
            while off < total {
                let n = chunk.min(total - off);
                let last = off + n == total;
                let p = DataPdu {
                    cid: cqe.cid,
                    ttag: 0,
                    offset: u32::try_from(off).unwrap_or(u32::MAX),
                    data: d.slice(off..off + n),
                    last,
                    success: false,
                };
                self.send(Pdu::C2HData(p));
                off += n;
            }
        }
        self.send_resp(cqe);
        self.pump_r2t(now);
        Ok(())
    }

    /// Sets the queue size from the Connect command's SQSIZE (0's based): at
    /// most `sqsize + 1` commands may be outstanding.
    pub fn set_queue_size(&mut self, sqsize: u16) {
        self.queue_limit = u32::from(sqsize) + 1;
        self.sq_head %= self.queue_limit;
    }

    /// The SQ head pointer put in every CQE sent: the number of command
    /// capsules received modulo the queue size, or 0 when the Connect on this
    /// queue disabled SQ flow control (CATTR bit 2), as Linux nvmet does.
    pub fn sq_head(&self) -> u16 {
        if self.sq_flow {
            u16::try_from(self.sq_head).unwrap_or(0)
        } else {
            0
        }
    }

    /// The earliest instant at which [`TargetQueue::handle_timeout`] has
    /// something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = match self.state {
            State::Closed => return None,
            State::AwaitIcReq { deadline } => Some(deadline),
            State::Ready => None,
        };
        let mut earliest = |x: Instant| t = Some(t.map_or(x, |y| y.min(x)));
        if let Some(s) = self.pdu_started {
            earliest(later(s, self.cfg.pdu_timeout));
        }
        for c in self.cmds.values() {
            if let Stage::Receiving { deadline, .. } = c.stage {
                earliest(deadline);
            }
        }
        t
    }

    /// Runs the timers due at `now`; results come as actions.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Closed => return,
            State::AwaitIcReq { deadline } if now >= deadline => {
                self.close(CloseReason::ConnectTimeout);
                return;
            }
            _ => {}
        }
        if self.pdu_started.is_some_and(|s| now >= later(s, self.cfg.pdu_timeout)) {
            self.close(CloseReason::PduTimeout);
            return;
        }
        let mut late: Vec<u16> = self
            .cmds
            .iter()
            .filter(|(_, c)| matches!(c.stage, Stage::Receiving { deadline, .. } if now >= deadline))
            .map(|(&cid, _)| cid)
            .collect();
        late.sort_unstable();
        for cid in late {
            if let Some(c) = self.cmds.remove(&cid) {
                self.write_held = self.write_held.saturating_sub(c.held);
                self.respond(cid, Status::TRANSIENT_TRANSPORT_ERROR);
            }
        }
        self.pump_r2t(now);
    }

    /// Counters.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }
    /// What ICReq / ICResp settled (`None` before).
    pub fn negotiated(&self) -> Option<Negotiated> {
        self.negotiated
    }
    /// The queue id from the Connect command seen on this connection.
    pub fn qid(&self) -> Option<u16> {
        self.qid
    }
    /// Whether the queue has closed (after [`Action::Close`]).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }
    /// Commands outstanding (received, not yet answered).
    pub fn outstanding(&self) -> usize {
        self.cmds.len()
    }
    /// Write bytes held (gathered or executing).
    pub fn write_bytes_held(&self) -> usize {
        self.write_held
    }
    /// Bytes held by this queue in gathered write data still arriving (a
    /// subset of [`TargetQueue::write_bytes_held`] plus in-capsule data).
    pub fn buffered_bytes(&self) -> usize {
        self.cmds
            .values()
            .map(|c| match &c.stage {
                Stage::Receiving { data, .. } => data.len(),
                _ => 0,
            })
            .sum()
    }

    fn send(&mut self, p: Pdu) {
        let e = pdu::encode(p, &self.tx);
        self.stats.pdus_out += 1;
        self.stats.bytes_out += e.len() as u64;
        self.actions.push_back(Action::Send(e));
    }

    fn close(&mut self, reason: CloseReason) {
        self.state = State::Closed;
        self.cmds.clear();
        self.r2t_wait.clear();
        self.write_held = 0;
        self.pdu_started = None;
        self.actions.push_back(Action::Close(reason));
    }

    fn fatal(&mut self, fes: TermReqFes, fei: u32, header: Bytes) {
        let data = header.slice(..header.len().min(MAX_TERM_DATA));
        self.send(Pdu::C2HTermReq(TermReq { fes, fei, data }));
        self.close(CloseReason::Fatal { fes, fei });
    }

    /// Fatal error about a PDU already decoded: its header re-encoded.
    fn fatal_pdu(&mut self, fes: TermReqFes, fei: u32, p: Pdu) {
        let hlen = p.pdu_type().hlen().unwrap_or(pdu::CH_LEN);
        let tx = TxParams { hdgst: self.rx.hdgst, ddgst: self.rx.ddgst, pda: self.rx.pda };
        let head = pdu::encode(p, &tx).head;
        let header = head.slice(..hlen.min(head.len()));
        self.fatal(fes, fei, header);
    }

    fn respond(&mut self, cid: u16, status: Status) {
        self.stats.refused += 1;
        self.send_resp(Cqe::new(cid, status));
    }

    fn send_resp(&mut self, mut cqe: Cqe) {
        cqe.sqhd = self.sq_head();
        if let Some(q) = self.qid {
            cqe.sqid = q;
        }
        self.send(Pdu::CapsuleResp { cqe });
    }

    fn capsule_limit(&self) -> u32 {
        match self.qid {
            Some(0) => self.cfg.admin_in_capsule_data,
            Some(_) => self.cfg.in_capsule_data,
            None => self.cfg.admin_in_capsule_data.max(self.cfg.in_capsule_data),
        }
    }

    fn on_pdu(&mut self, p: Pdu, digest_ok: bool, now: Instant) {
        match (self.state, p) {
            (State::AwaitIcReq { .. }, Pdu::IcReq(r)) => self.on_icreq(r),
            (State::Ready, Pdu::H2CTermReq(t)) => self.close(CloseReason::HostTerminated { fes: t.fes, fei: t.fei }),
            (State::Ready, Pdu::CapsuleCmd { sqe, data }) => self.on_capsule(sqe, data, digest_ok, now),
            (State::Ready, Pdu::H2CData(d)) => self.on_h2c(d, digest_ok),
            (State::Closed, _) => {}
            (_, p) => self.fatal_pdu(TermReqFes::PDU_SEQUENCE_ERROR, 0, p),
        }
    }

    fn on_icreq(&mut self, r: IcReq) {
        if r.pfv != 0 {
            return self.fatal_pdu(TermReqFes::UNSUPPORTED_PARAMETER, field::PFV, Pdu::IcReq(r));
        }
        if r.hpda > MAX_PDA {
            return self.fatal_pdu(TermReqFes::UNSUPPORTED_PARAMETER, field::HPDA, Pdu::IcReq(r));
        }
        let hdgst = r.hdgst && self.cfg.header_digest;
        let ddgst = r.ddgst && self.cfg.data_digest;
        let resp = IcResp { pfv: 0, cpda: 0, hdgst, ddgst, maxh2cdata: self.cfg.maxh2cdata };
        // ICResp never carries digests: send before switching.
        self.send(Pdu::IcResp(resp));
        self.tx = TxParams { hdgst, ddgst, pda: r.hpda };
        self.rx = RxParams {
            role: Role::Target,
            hdgst,
            ddgst,
            pda: 0,
            max_capsule_data: self.capsule_limit(),
            max_data: self.cfg.maxh2cdata,
        };
        self.negotiated =
            Some(Negotiated { hdgst, ddgst, hpda: r.hpda, maxr2t: r.maxr2t, maxh2cdata: resp.maxh2cdata });
        self.state = State::Ready;
    }

    fn on_capsule(&mut self, sqe: Sqe, data: Bytes, digest_ok: bool, now: Instant) {
        self.stats.commands += 1;
        let cid = sqe.cid();
        if self.qid.is_none() && sqe.is_fabrics() && sqe.fctype() == FabricsType::CONNECT {
            self.qid = Some((sqe.cdw(10) >> 16) as u16);
            self.sq_flow = (sqe.cdw(11) >> 16) & 0x04 == 0;
            self.rx.max_capsule_data = self.capsule_limit();
        }
        self.sq_head = (self.sq_head + 1) % self.queue_limit.max(1);
        if self.cmds.len() as u64 >= u64::from(self.queue_limit) {
            return self.fatal_pdu(TermReqFes::PDU_SEQUENCE_ERROR, 0, Pdu::CapsuleCmd { sqe, data });
        }
        if self.cmds.contains_key(&cid) {
            return self.respond(cid, Status::COMMAND_ID_CONFLICT);
        }
        if !digest_ok {
            return self.respond(cid, Status::TRANSIENT_TRANSPORT_ERROR);
        }
        match self.check_capsule(&sqe, &data) {
            Err(status) => self.respond(cid, status),
            Ok(Plan::Execute { read_len }) => self.execute(sqe, data, read_len),
            Ok(Plan::R2t { len }) => {
                self.cmds.insert(cid, Cmd { sqe, len, read_len: 0, held: 0, stage: Stage::AwaitBudget });
                self.r2t_wait.push_back(cid);
                self.pump_r2t(now);
            }
        }
    }

    fn check_capsule(&self, sqe: &Sqe, data: &Bytes) -> Result<Plan, Status> {
        let sgl = sqe.sgl();
        let dir = sqe.direction();
        match dir {
            Direction::Bidirectional => return Err(Status::INVALID_FIELD),
            Direction::None if !data.is_empty() => return Err(Status::INVALID_FIELD),
            Direction::None => return Ok(Plan::Execute { read_len: 0 }),
            _ => {}
        }
        if sgl.len > self.mdts {
            return Err(Status::INVALID_FIELD);
        }
        match sgl.kind {
            SglType::DATA_BLOCK_OFFSET => {
                if dir != Direction::HostToController && (sgl.len > 0 || !data.is_empty()) {
                    return Err(Status::INVALID_FIELD);
                }
                if sgl.addr != 0 {
                    return Err(Status::SGL_OFFSET_INVALID);
                }
                if u64::from(sgl.len) != data.len() as u64 {
                    return Err(Status::DATA_SGL_LENGTH_INVALID);
                }
                Ok(Plan::Execute { read_len: 0 })
            }
            SglType::TRANSPORT_DATA_BLOCK => {
                if !data.is_empty() {
                    return Err(Status::INVALID_FIELD);
                }
                match dir {
                    Direction::HostToController if sgl.len > 0 => Ok(Plan::R2t { len: sgl.len }),
                    Direction::ControllerToHost => Ok(Plan::Execute { read_len: sgl.len }),
                    _ => Ok(Plan::Execute { read_len: 0 }),
                }
            }
            _ => Err(Status::SGL_DESCRIPTOR_TYPE_INVALID),
        }
    }

    fn execute(&mut self, sqe: Sqe, data: Bytes, read_len: u32) {
        let held = data.len();
        self.write_held += held;
        let len = u32::try_from(held).unwrap_or(u32::MAX).max(read_len);
        self.cmds.insert(sqe.cid(), Cmd { sqe, len, read_len, held, stage: Stage::Executing });
        self.actions.push_back(Action::Execute(Capsule { sqe, data, read_len }));
    }

    /// Issues R2Ts to waiting writes, in order, while the budget allows.
    fn pump_r2t(&mut self, now: Instant) {
        while let Some(&cid) = self.r2t_wait.front() {
            let Some(cmd) = self.cmds.get_mut(&cid) else {
                self.r2t_wait.pop_front();
                continue;
            };
            if !matches!(cmd.stage, Stage::AwaitBudget) {
                self.r2t_wait.pop_front();
                continue;
            }
            let need = usize::try_from(cmd.len).unwrap_or(usize::MAX);
            if self.write_held > 0 && self.write_held.saturating_add(need) > self.cfg.max_write_bytes {
                break;
            }
            self.r2t_wait.pop_front();
            let ttag = self.next_ttag;
            self.next_ttag = self.next_ttag.wrapping_add(1);
            cmd.held = need;
            cmd.stage = Stage::Receiving {
                ttag,
                data: Gather::new(need),
                received: 0,
                deadline: later(now, self.cfg.write_data_timeout),
                failed: false,
            };
            let len = cmd.len;
            self.write_held = self.write_held.saturating_add(need);
            self.send(Pdu::R2T(R2t { cid, ttag, offset: 0, len }));
        }
    }

    fn on_h2c(&mut self, d: DataPdu, digest_ok: bool) {
        let Some(cmd) = self.cmds.get_mut(&d.cid) else {
            return self.fatal_pdu(TermReqFes::INVALID_HEADER_FIELD, field::CCCID, Pdu::H2CData(d));
        };
        let total = cmd.len;
        let Stage::Receiving { ttag, data, received, failed, .. } = &mut cmd.stage else {
            return self.fatal_pdu(TermReqFes::INVALID_HEADER_FIELD, field::CCCID, Pdu::H2CData(d));
        };
        if d.ttag != *ttag {
            return self.fatal_pdu(TermReqFes::INVALID_HEADER_FIELD, field::TTAG, Pdu::H2CData(d));
        }
        let end = u64::from(d.offset) + d.data.len() as u64;
        if end > u64::from(total) {
            return self.fatal_pdu(TermReqFes::DATA_OUT_OF_RANGE, 0, Pdu::H2CData(d));
        }
        if d.offset != *received {
            return self.fatal_pdu(TermReqFes::INVALID_HEADER_FIELD, field::DATAO, Pdu::H2CData(d));
        }
        let done = end == u64::from(total);
        if d.last != done {
            return self.fatal_pdu(TermReqFes::INVALID_HEADER_FIELD, field::FLAGS, Pdu::H2CData(d));
        }
        // end ≤ total ≤ u32::MAX.
        *received = u32::try_from(end).unwrap_or(u32::MAX);
        if !digest_ok {
            *failed = true;
            data.clear();
        }
        if !*failed {
            data.push(d.data);
        }
        if !done {
            return;
        }
        let failed = *failed;
        let data = std::mem::take(data);
        if failed {
            if let Some(c) = self.cmds.remove(&d.cid) {
                self.write_held = self.write_held.saturating_sub(c.held);
            }
            return self.respond(d.cid, Status::TRANSIENT_TRANSPORT_ERROR);
        }
        cmd.stage = Stage::Executing;
        let sqe = cmd.sqe;
        self.actions.push_back(Action::Execute(Capsule { sqe, data: data.finish(), read_len: 0 }));
    }
}

/// `t + d` without overflow: a duration too large for `Instant` is cut to
/// about a century.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d).or_else(|| t.checked_add(Duration::from_secs(100 * 365 * 86_400))).unwrap_or(t)
}

/// How a valid capsule proceeds.
enum Plan {
    Execute { read_len: u32 },
    R2t { len: u32 },
}

/// The data of one transfer arriving in pieces: a single piece is kept as
/// is (no copy); from the second on, pieces are copied into one buffer of the
/// transfer's size, so memory held is the transfer plus at most one piece
/// (never a list of small slices each pinning a receive buffer).
#[derive(Debug, Default)]
pub(crate) struct Gather {
    first: Option<Bytes>,
    buf: BytesMut,
    cap: usize,
}

impl Gather {
    /// For a transfer of `cap` bytes (already bounded by the caller).
    pub(crate) fn new(cap: usize) -> Self {
        Self { first: None, buf: BytesMut::new(), cap }
    }
    /// Appends a piece.
    pub(crate) fn push(&mut self, d: Bytes) {
        if self.first.is_none() && self.buf.is_empty() {
            self.first = Some(d);
            return;
        }
        if let Some(f) = self.first.take() {
            self.buf.reserve(self.cap.max(f.len() + d.len()));
            self.buf.extend_from_slice(&f);
        }
        self.buf.extend_from_slice(&d);
    }
    /// Drops what was gathered.
    pub(crate) fn clear(&mut self) {
        self.first = None;
        self.buf = BytesMut::new();
    }
    /// Bytes gathered.
    pub(crate) fn len(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.buf.len()
    }
    /// The whole data.
    pub(crate) fn finish(self) -> Bytes {
        match self.first {
            Some(f) => f,
            None => self.buf.freeze(),
        }
    }
}

#[cfg(test)]
#[path = "transport_tests.rs"]
mod tests;
