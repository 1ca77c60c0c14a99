//! The host side of one NVMe/TCP connection (one NVMe queue), with no I/O:
//! the core of our initiator.
//!
//! [`HostQueue::new`] queues the ICReq; the caller sends every
//! [`HostEvent::Send`], feeds received bytes to [`HostQueue::on_bytes`] and
//! gets [`HostEvent::Completed`] for each command. Commands go in with
//! [`HostQueue::submit`] once [`HostQueue::is_ready`].
//!
//! Choices: write data goes in the capsule when it fits the in-capsule size
//! the caller says the controller supports (8 KiB on the admin queue, IOCCSZ
//! on I/O queues), else by R2T with a transport SGL; reads always use a
//! transport SGL of `read_len` bytes. H2CData PDUs are at most MAXH2CDATA.
//! C2HData must arrive in order, inside `read_len`; DATA_SUCCESS completes
//! the command without a CapsuleResp. A C2HData data digest error completes
//! the command with Transient Transport Error once its response arrives.
//! Protocol violations by the controller send an H2CTermReq and close.
//! Timers (keep alive, command timeouts) are the caller's.

use crate::transport::Gather;
use crate::wire::command::{Cqe, Sgl, SglType, Sqe, Status};
use crate::wire::pdu::{
    self, field, DataPdu, DecodeError, EncodedPdu, IcReq, IcResp, Pdu, Role, RxParams, TermReq, TermReqFes, TxParams,
    MAX_PDA, MIN_MAXH2CDATA,
};
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};

/// What the host asks for and accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// Ask for header digests.
    pub header_digest: bool,
    /// Ask for data digests.
    pub data_digest: bool,
    /// Host PDU data alignment asked of the controller (0's based dwords).
    pub hpda: u8,
    /// MAXR2T announced (0's based).
    pub maxr2t: u32,
    /// In-capsule data the controller accepts on this queue (8192 on the
    /// admin queue; IOCCSZ × 16 − 64 on I/O queues).
    pub in_capsule_data: u32,
    /// Largest C2HData PDU data accepted (the controller may send a whole
    /// read in one PDU: at least its MDTS).
    pub max_c2h_data: u32,
    /// Most commands outstanding (the queue size).
    pub queue_size: u32,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            header_digest: false,
            data_digest: false,
            hpda: 0,
            maxr2t: 0,
            in_capsule_data: pdu::ADMIN_IN_CAPSULE_DATA,
            max_c2h_data: 1 << 20,
            queue_size: 32,
        }
    }
}

/// Why the host queue closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostCloseReason {
    /// The controller violated the protocol: an H2CTermReq with these values
    /// was queued.
    Fatal {
        /// Fatal error status sent.
        fes: TermReqFes,
        /// Fatal error information sent.
        fei: u32,
    },
    /// The controller sent a C2HTermReq.
    ControllerTerminated {
        /// Fatal error status received.
        fes: TermReqFes,
        /// Fatal error information received.
        fei: u32,
    },
    /// ICResp was unacceptable (version, digests, MAXH2CDATA, CPDA).
    BadIcResp,
}

/// What the caller must do next, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// Send this PDU.
    Send(EncodedPdu),
    /// A command completed; `data` is its controller → host data (empty when
    /// none).
    Completed {
        /// The completion.
        cqe: Cqe,
        /// Read data.
        data: Bytes,
    },
    /// Send what is queued, then close. Outstanding commands are lost.
    Close(HostCloseReason),
}

/// Why [`HostQueue::submit`] refused a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// ICResp has not arrived yet.
    #[error("connection not initialized")]
    NotReady,
    /// The queue closed.
    #[error("queue closed")]
    Closed,
    /// A command with this CID is outstanding.
    #[error("cid {0} in use")]
    CidInUse(u16),
    /// As many commands as the queue size are outstanding.
    #[error("queue full")]
    QueueFull,
    /// Both write data and a read length (bidirectional is not supported).
    #[error("bidirectional data")]
    Bidirectional,
    /// Data longer than an SGL can describe.
    #[error("data too long")]
    TooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitIcResp,
    Ready,
    Closed,
}

#[derive(Debug)]
struct HostCmd {
    /// Write data still to send by R2T (empty when in-capsule or none).
    write: Bytes,
    /// Where the next R2T must start (R2Ts in order, no overlap: the data
    /// sent per command is bounded by its length).
    r2t_next: u32,
    read_len: u32,
    read: Gather,
    received: u32,
    digest_failed: bool,
}

/// The host side of one NVMe/TCP connection. See the module docs.
#[derive(Debug)]
pub struct HostQueue {
    cfg: HostConfig,
    state: State,
    rx: RxParams,
    tx: TxParams,
    icresp: Option<IcResp>,
    cmds: HashMap<u16, HostCmd>,
    events: VecDeque<HostEvent>,
}

impl HostQueue {
    /// A new queue; its ICReq is the first event.
    pub fn new(cfg: HostConfig) -> Self {
        let mut q = Self {
            state: State::AwaitIcResp,
            rx: RxParams::initial(Role::Host),
            tx: TxParams::default(),
            icresp: None,
            cmds: HashMap::new(),
            events: VecDeque::new(),
            cfg,
        };
        q.cfg.hpda = q.cfg.hpda.min(MAX_PDA);
        let ic = IcReq {
            pfv: 0,
            hpda: q.cfg.hpda,
            hdgst: q.cfg.header_digest,
            ddgst: q.cfg.data_digest,
            maxr2t: q.cfg.maxr2t,
        };
        q.send(Pdu::IcReq(ic));
        q
    }

    /// Whether ICResp was accepted and commands may be submitted.
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }
    /// Whether the queue closed.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }
    /// The controller's ICResp, once accepted.
    pub fn icresp(&self) -> Option<IcResp> {
        self.icresp
    }
    /// Commands outstanding.
    pub fn outstanding(&self) -> usize {
        self.cmds.len()
    }
    /// Changes the in-capsule data size (after Identify Controller gives
    /// IOCCSZ).
    pub fn set_in_capsule_data(&mut self, bytes: u32) {
        self.cfg.in_capsule_data = bytes;
    }
    /// Changes the queue size (after Connect).
    pub fn set_queue_size(&mut self, entries: u32) {
        self.cfg.queue_size = entries;
    }

    /// The next event, in order.
    pub fn poll_event(&mut self) -> Option<HostEvent> {
        self.events.pop_front()
    }
    /// All pending events, in order.
    pub fn drain_events(&mut self) -> std::collections::vec_deque::Drain<'_, HostEvent> {
        self.events.drain(..)
    }

    /// Submits a command: `data` is its host → controller data, `read_len`
    /// the controller → host bytes expected (0 for none). The SGL descriptor
    /// of `sqe` is set here; its CID must not be outstanding.
    pub fn submit(&mut self, sqe: Sqe, data: Option<Bytes>, read_len: u32) -> Result<(), SubmitError> {
        match self.state {
            State::AwaitIcResp => return Err(SubmitError::NotReady),
            State::Closed => return Err(SubmitError::Closed),
            State::Ready => {}
        }
        let cid = sqe.cid();
        if self.cmds.contains_key(&cid) {
            return Err(SubmitError::CidInUse(cid));
        }
        if self.cmds.len() as u64 >= u64::from(self.cfg.queue_size) {
            return Err(SubmitError::QueueFull);
        }
        let data = data.unwrap_or_default();
        if !data.is_empty() && read_len > 0 {
            return Err(SubmitError::Bidirectional);
        }
        let len = u32::try_from(data.len()).map_err(|_| SubmitError::TooLong)?;
        let mut sqe = sqe;
        let (capsule_data, write) = if data.is_empty() {
            let len = read_len;
            sqe.set_sgl(Sgl { addr: 0, len, kind: SglType::TRANSPORT_DATA_BLOCK });
            (Bytes::new(), Bytes::new())
        } else if len <= self.cfg.in_capsule_data {
            sqe.set_sgl(Sgl { addr: 0, len, kind: SglType::DATA_BLOCK_OFFSET });
            (data, Bytes::new())
        } else {
            sqe.set_sgl(Sgl { addr: 0, len, kind: SglType::TRANSPORT_DATA_BLOCK });
            (Bytes::new(), data)
        };
        let read = Gather::new(usize::try_from(read_len).unwrap_or(0));
        self.cmds.insert(cid, HostCmd { write, r2t_next: 0, read_len, read, received: 0, digest_failed: false });
        self.send(Pdu::CapsuleCmd { sqe, data: capsule_data });
        Ok(())
    }

    /// Consumes every whole PDU at the front of `buf`. Does nothing once
    /// closed.
    pub fn on_bytes(&mut self, buf: &mut BytesMut) {
        while self.state != State::Closed {
            match pdu::decode(buf, &self.rx) {
                Ok(None) => break,
                Ok(Some(p)) => self.on_pdu(p, true),
                Err(DecodeError::DataDigest(p)) => self.on_pdu(*p, false),
                Err(DecodeError::Fatal { fes, fei, header }) => {
                    self.fatal(fes, fei, header);
                    break;
                }
            }
        }
    }

    fn send(&mut self, p: Pdu) {
        let e = pdu::encode(p, &self.tx);
        self.events.push_back(HostEvent::Send(e));
    }

    fn close(&mut self, reason: HostCloseReason) {
        self.state = State::Closed;
        self.cmds.clear();
        self.events.push_back(HostEvent::Close(reason));
    }

    fn fatal(&mut self, fes: TermReqFes, fei: u32, header: Bytes) {
        let data = header.slice(..header.len().min(pdu::MAX_TERM_DATA));
        self.send(Pdu::H2CTermReq(TermReq { fes, fei, data }));
        self.close(HostCloseReason::Fatal { fes, fei });
    }

    fn fatal_pdu(&mut self, fes: TermReqFes, fei: u32, p: Pdu) {
        let hlen = p.pdu_type().hlen().unwrap_or(pdu::CH_LEN);
        let tx = TxParams { hdgst: self.rx.hdgst, ddgst: self.rx.ddgst, pda: self.rx.pda };
        let head = pdu::encode(p, &tx).head;
        self.fatal(fes, fei, head.slice(..hlen.min(head.len())));
    }

    fn on_pdu(&mut self, p: Pdu, digest_ok: bool) {
        match (self.state, p) {
            (State::AwaitIcResp, Pdu::IcResp(r)) => self.on_icresp(r),
            (_, Pdu::C2HTermReq(t)) => self.close(HostCloseReason::ControllerTerminated { fes: t.fes, fei: t.fei }),
            (State::Ready, Pdu::R2T(r)) => self.on_r2t(r),
            (State::Ready, Pdu::C2HData(d)) => self.on_c2h(d, digest_ok),
            (State::Ready, Pdu::CapsuleResp { cqe }) => self.on_resp(cqe),
            (State::Closed, _) => {}
            (_, p) => self.fatal_pdu(TermReqFes::PDU_SEQUENCE_ERROR, 0, p),
        }
    }

    fn on_icresp(&mut self, r: IcResp) {
        let ok = r.pfv == 0
            && r.cpda <= MAX_PDA
            && r.maxh2cdata >= MIN_MAXH2CDATA
            && r.maxh2cdata % 4 == 0
            && (!r.hdgst || self.cfg.header_digest)
            && (!r.ddgst || self.cfg.data_digest);
        if !ok {
            return self.close(HostCloseReason::BadIcResp);
        }
        self.tx = TxParams { hdgst: r.hdgst, ddgst: r.ddgst, pda: r.cpda };
        self.rx = RxParams {
            role: Role::Host,
            hdgst: r.hdgst,
            ddgst: r.ddgst,
            pda: self.cfg.hpda,
            max_capsule_data: 0,
            max_data: self.cfg.max_c2h_data,
        };
        self.icresp = Some(r);
        self.state = State::Ready;
    }

    fn on_r2t(&mut self, r: pdu::R2t) {
        let Some(cmd) = self.cmds.get_mut(&r.cid) else {
            return self.fatal_pdu(TermReqFes::INVALID_HEADER_FIELD, field::CCCID, Pdu::R2T(r));
        };
        let end = u64::from(r.offset) + u64::from(r.len);
        if r.len == 0 || end > cmd.write.len() as u64 {
            return self.fatal_pdu(TermReqFes::DATA_OUT_OF_RANGE, 0, Pdu::R2T(r));
        }
        if r.offset != cmd.r2t_next {
            return self.fatal_pdu(TermReqFes::INVALID_HEADER_FIELD, field::DATAO, Pdu::R2T(r));
        }
        cmd.r2t_next = u32::try_from(end).unwrap_or(u32::MAX);
        let write = cmd.write.clone();
        let max = self.icresp.map_or(MIN_MAXH2CDATA, |i| i.maxh2cdata).max(MIN_MAXH2CDATA);
        let (mut off, end) = (r.offset, u32::try_from(end).unwrap_or(u32::MAX));
        while off < end {
            let n = max.min(end - off);
            let (a, b) = (off as usize, (off + n) as usize);
            let d = DataPdu {
                cid: r.cid,
                ttag: r.ttag,
                offset: off,
                data: write.slice(a..b),
                last: off + n == end,
                success: false,
            };
            self.send(Pdu::H2CData(d));
            off += n;
        }
    }

    fn on_c2h(&mut self, d: DataPdu, digest_ok: bool) {
        let Some(cmd) = self.cmds.get_mut(&d.cid) else {
            return self.fatal_pdu(TermReqFes::INVALID_HEADER_FIELD, field::CCCID, Pdu::C2HData(d));
        };
        let end = u64::from(d.offset) + d.data.len() as u64;
        if end > u64::from(cmd.read_len) {
            return self.fatal_pdu(TermReqFes::DATA_OUT_OF_RANGE, 0, Pdu::C2HData(d));
        }
        if d.offset != cmd.received {
            return self.fatal_pdu(TermReqFes::INVALID_HEADER_FIELD, field::DATAO, Pdu::C2HData(d));
        }
        cmd.received = u32::try_from(end).unwrap_or(u32::MAX);
        if !digest_ok {
            cmd.digest_failed = true;
            cmd.read.clear();
        }
        if !cmd.digest_failed {
            cmd.read.push(d.data);
        }
        if d.success {
            let status = if cmd.digest_failed { Status::TRANSIENT_TRANSPORT_ERROR } else { Status::SUCCESS };
            self.finish(Cqe::new(d.cid, status));
        }
    }

    fn on_resp(&mut self, cqe: Cqe) {
        if !self.cmds.contains_key(&cqe.cid) {
            return self.fatal_pdu(TermReqFes::INVALID_HEADER_FIELD, field::CCCID, Pdu::CapsuleResp { cqe });
        }
        self.finish(cqe);
    }

    fn finish(&mut self, mut cqe: Cqe) {
        let Some(cmd) = self.cmds.remove(&cqe.cid) else { return };
        if cmd.digest_failed {
            cqe.status = Status::TRANSIENT_TRANSPORT_ERROR;
        }
        let data = cmd.read.finish();
        self.events.push_back(HostEvent::Completed { cqe, data });
    }
}

#[cfg(test)]
#[path = "host_tests.rs"]
mod tests;
