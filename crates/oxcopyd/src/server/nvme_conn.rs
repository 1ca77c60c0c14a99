//! One NVMe/TCP connection (one queue): feeds what it reads, the results of
//! commands and the clock to the transport core (`oxcopy_nvme::transport`)
//! and carries out its actions. The first command is a Fabrics Connect:
//! queue 0 makes a controller (an NVM or a discovery controller), any other
//! queue joins one. Admin commands go to the controller model (quick, on
//! this task); I/O commands run on the I/O pool with a cancel token that
//! Abort, a lost controller and shutdown use.

use super::nvme::{Ctrl, NvmeService, Subsys};
use super::poll::{poll_next, PollBeforeSleep, Polled};
use super::writer::{self, Out};
use super::{wait_until, Shared, SHUTDOWN_GRACE};
use crate::subsystems::DISCOVERY_NQN;
use bytes::{Bytes, BytesMut};
use oxcopy_copy::CancelToken;
use oxcopy_nvme::controller::{
    abort_reply, connect_accepted, disconnect_reply, AdminOutcome, ConnectReject, ConnectRequest, Controller,
    SubsystemInfo,
};
use oxcopy_nvme::nvm::{self, IoContext, IoOutcome};
use oxcopy_nvme::transport::{Action, Capsule, TargetQueue};
use oxcopy_nvme::wire::command::{Cqe, FabricsType, Status};
use oxcopy_nvme::wire::nvm::CopyRange;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

/// I/O commands moving more bytes than this get an I/O thread of their own.
const LONG_TRANSFER: u64 = 64 * 1024;

/// What this connection is.
enum Role {
    /// No Connect yet.
    Unbound,
    /// The admin queue of this controller.
    Admin(Arc<Ctrl>),
    /// I/O queue `qid` of this controller.
    Io { ctrl: Arc<Ctrl>, subsys: Arc<Subsys>, qid: u16 },
}

/// A command's result coming back from the I/O pool.
struct Done {
    cid: u16,
    outcome: IoOutcome,
    command: &'static str,
    nsid: u32,
    bytes: u64,
}

struct Conn {
    svc: Arc<NvmeService>,
    shared: Arc<Shared>,
    q: TargetQueue,
    tx: mpsc::UnboundedSender<Out>,
    done_tx: mpsc::UnboundedSender<Done>,
    role: Role,
    peer: SocketAddr,
    local: SocketAddr,
    /// Cancel tokens of this queue's running I/O commands, by command id.
    running: HashMap<u16, CancelToken>,
    closing: bool,
    /// Commands taken from the bytes last received (one at a time: queue
    /// depth 1, worth polling for).
    batch: usize,
    /// The subsystem label for metrics.
    label: String,
    /// PDUs made and not yet handed to the writer: the answers to one read
    /// batch go in one hand-off (see [`Conn::flush`]).
    out: Vec<oxcopy_iscsi::frame::EncodedPdu>,
    /// Counters resolved per (namespace, command).
    counters: HashMap<(u32, &'static str), super::nvme_metrics::CommandCounters>,
}

/// Serve one accepted NVMe/TCP connection until it closes.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    svc: Arc<NvmeService>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else { return };
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(writer::run(wr, rx, svc.transport.pdu_timeout));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut conn = Conn {
        q: TargetQueue::new(svc.transport.clone(), Instant::now()),
        svc,
        shared,
        tx: tx.clone(),
        done_tx,
        role: Role::Unbound,
        peer,
        local,
        running: HashMap::new(),
        closing: false,
        batch: 0,
        label: String::new(),
        counters: HashMap::new(),
        out: Vec::new(),
    };
    let mut poll = PollBeforeSleep::new(conn.svc.poll_budget);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut gone = watch::channel(false).1;
    loop {
        let wake = conn.next_timer();
        tokio::select! {
            r = rd.read_buf(&mut buf) => {
                if !matches!(r, Ok(n) if n > 0) {
                    break;
                }
                let now = Instant::now();
                conn.received(&mut buf, now);
                poll.woken(now, conn.batch);
                if let Some(g) = conn.gone_watch() {
                    gone = g;
                }
                // Commands one at a time: wait for the next one awake,
                // briefly (back to the select every 64: timers, shutdown).
                for _ in 0..64 {
                    if conn.closing || !poll.hot() {
                        break;
                    }
                    match poll_next(&rd, &mut buf, &mut done_rx, poll.budget).await {
                        Polled::Bytes => {
                            conn.received(&mut buf, Instant::now());
                            if conn.batch > 1 {
                                poll.missed();
                            }
                        }
                        Polled::Done(d) => {
                            conn.done(d);
                            conn.pump();
                        }
                        Polled::Nothing => {
                            poll.missed();
                            break;
                        }
                        Polled::Closed => conn.closing = true,
                    }
                }
                poll.idle_from(Instant::now());
            }
            Some(d) = done_rx.recv() => {
                conn.done(d);
                conn.pump();
            }
            _ = wait_until(wake) => conn.timers(Instant::now()),
            Ok(()) = gone.changed() => {
                if *gone.borrow() {
                    debug!(peer = %conn.peer, "controller gone; closing the queue");
                    conn.closing = true;
                }
            }
            _ = async { let _ = shutdown.wait_for(|v| *v).await; } => {
                conn.drain(&mut done_rx).await;
                conn.closing = true;
            }
        }
        if conn.closing {
            break;
        }
    }
    conn.end();
    let _ = tx.send(Out::Close);
    drop(tx);
    drop(conn);
    let _ = writer.await;
}

impl Conn {
    /// Bytes arrived: feed the transport, carry out what it asks.
    fn received(&mut self, buf: &mut BytesMut, now: Instant) {
        self.batch = 0;
        self.q.on_bytes(buf, now);
        self.pump();
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
    }

    /// The earliest timer: the transport's, and the controller's keep-alive
    /// on an admin queue.
    fn next_timer(&self) -> Option<Instant> {
        let t = self.q.poll_timeout();
        let ka = match &self.role {
            Role::Admin(c) => c.model.lock().keep_alive_deadline(),
            _ => None,
        };
        match (t, ka) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn gone_watch(&self) -> Option<watch::Receiver<bool>> {
        match &self.role {
            Role::Admin(c) | Role::Io { ctrl: c, .. } => Some(c.gone.subscribe()),
            Role::Unbound => None,
        }
    }

    fn timers(&mut self, now: Instant) {
        self.q.handle_timeout(now);
        if let Role::Admin(c) = &self.role {
            if c.model.lock().keep_alive_expired(now) {
                warn!(
                    peer = %self.peer, cntlid = c.cntlid, subsystem = %c.subnqn, host = %c.hostnqn,
                    "keep-alive timer expired: ending the controller and its queues"
                );
                self.svc.metrics.keep_alive_expired(&c.subnqn);
                self.svc.remove_controller(c);
                self.closing = true;
            }
        }
        self.pump();
    }

    /// Carry out the transport's actions.
    fn pump(&mut self) {
        while let Some(a) = self.q.poll_action() {
            match a {
                Action::Send(p) => {
                    self.out.push(oxcopy_iscsi::frame::EncodedPdu { head: p.head, data: p.data, tail: p.tail });
                }
                Action::Execute(c) => self.command(c),
                Action::Close(reason) => {
                    debug!(peer = %self.peer, ?reason, "NVMe/TCP queue closing");
                    self.closing = true;
                }
            }
        }
        self.flush();
    }

    /// Hand the PDUs made so far to the writer, in one message.
    fn flush(&mut self) {
        match self.out.len() {
            0 => {}
            1 => {
                if let Some(p) = self.out.pop() {
                    let _ = self.tx.send(Out::Pdu(p));
                }
            }
            _ => {
                let _ = self.tx.send(Out::Pdus(std::mem::take(&mut self.out)));
            }
        }
    }

    /// Answer command `cid` now (the transport stamps the SQ head and id).
    fn reply(&mut self, cid: u16, status: Status, result: u64, data: Option<Bytes>) {
        let cqe = Cqe { result, sqhd: 0, sqid: 0, cid, status };
        if let Err(e) = self.q.complete(cqe, data, Instant::now()) {
            debug!(peer = %self.peer, "completion dropped: {e:?}");
        }
    }

    fn command(&mut self, c: Capsule) {
        self.batch += 1;
        let cid = c.sqe.cid();
        if c.sqe.is_fabrics() && c.sqe.fctype() == FabricsType::CONNECT {
            self.connect(c);
            return;
        }
        match &self.role {
            Role::Unbound => self.reply(cid, Status::COMMAND_SEQUENCE_ERROR, 0, None),
            Role::Admin(ctrl) => {
                let ctrl = ctrl.clone();
                self.admin(&ctrl, c);
            }
            Role::Io { ctrl, subsys, qid } => {
                let (ctrl, subsys, qid) = (ctrl.clone(), subsys.clone(), *qid);
                if c.sqe.is_fabrics() {
                    if c.sqe.fctype() == FabricsType::DISCONNECT {
                        let cqe = disconnect_reply(&c.sqe);
                        self.reply(cid, cqe.status, cqe.result, None);
                        self.closing = true;
                    } else {
                        self.reply(cid, Status::INVALID_FIELD, 0, None);
                    }
                    return;
                }
                if let Err(st) = ctrl.model.lock().check_io_ready() {
                    self.reply(cid, st, 0, None);
                    return;
                }
                self.io(&ctrl, &subsys, qid, c);
            }
        }
    }

    /// Fabrics Connect: a new controller on queue 0, else join one.
    fn connect(&mut self, c: Capsule) {
        let cid = c.sqe.cid();
        if !matches!(self.role, Role::Unbound) {
            self.reply(cid, Status::COMMAND_SEQUENCE_ERROR, 0, None);
            return;
        }
        let req = match ConnectRequest::parse(&c.sqe, &c.data) {
            Ok(r) => r,
            Err(rej) => return self.refuse(cid, rej, "malformed Connect"),
        };
        let subsys = self.svc.subsystems.get(&req.subnqn).filter(|s| self.svc.listens(s, self.local)).cloned();
        if req.is_admin() {
            let info: Option<Arc<SubsystemInfo>> = if req.subnqn == DISCOVERY_NQN {
                Some(self.svc.discovery(self.local))
            } else {
                subsys.as_ref().map(|s| s.info.clone())
            };
            if let Err(rej) = req.check_admin(info.as_deref()) {
                info!(peer = %self.peer, subsystem = %req.subnqn, host = %req.hostnqn, status = %rej.status, "Connect refused");
                return self.refuse(cid, rej, "");
            }
            let Some(info) = info else { return };
            let now = Instant::now();
            let made = self.svc.add_controller(|cntlid| Ctrl {
                cntlid,
                subnqn: req.subnqn.clone(),
                hostnqn: req.hostnqn.clone(),
                model: Mutex::new(Controller::new(info, cntlid, &req, now)),
                gone: watch::channel(false).0,
                running: Mutex::new(HashMap::new()),
            });
            let Some(ctrl) = made else {
                self.reply(cid, Status::CONNECT_CONTROLLER_BUSY, 0, None);
                return;
            };
            info!(
                peer = %self.peer, cntlid = ctrl.cntlid, subsystem = %req.subnqn, host = %req.hostnqn,
                kato_ms = req.kato_ms, "NVMe controller created"
            );
            self.bind(&req);
            let cqe = connect_accepted(cid, ctrl.cntlid);
            self.role = Role::Admin(ctrl);
            self.reply(cid, cqe.status, cqe.result, None);
            return;
        }
        // An I/O queue joins the controller its host made.
        let (Some(ctrl), Some(subsys)) = (self.svc.controller(req.cntlid), subsys) else {
            return self.refuse(cid, ConnectReject::unknown_controller(), "I/O queue for an unknown controller");
        };
        if let Err(rej) = ctrl.model.lock().accept_io_queue(&req) {
            return self.refuse(cid, rej, "I/O queue refused");
        }
        self.bind(&req);
        debug!(peer = %self.peer, cntlid = ctrl.cntlid, qid = req.qid, "NVMe I/O queue connected");
        let cqe = connect_accepted(cid, ctrl.cntlid);
        self.role = Role::Io { ctrl, subsys, qid: req.qid };
        self.reply(cid, cqe.status, cqe.result, None);
    }

    /// The queue is connected: its size, its metrics label.
    fn bind(&mut self, req: &ConnectRequest) {
        self.q.set_queue_size(req.sqsize);
        self.label = req.subnqn.clone();
        self.svc.metrics.connection(&self.label, 1);
    }

    fn refuse(&mut self, cid: u16, rej: ConnectReject, what: &str) {
        if !what.is_empty() {
            debug!(peer = %self.peer, status = %rej.status, "{what}");
        }
        let cqe = rej.cqe(cid);
        self.reply(cid, cqe.status, cqe.result, None);
    }

    /// An admin-queue command: the controller model answers (Property
    /// Get/Set, Identify, Get Log Page, features, Keep Alive, AER), except
    /// Abort, which reaches the I/O queues' running commands.
    fn admin(&mut self, ctrl: &Arc<Ctrl>, c: Capsule) {
        let cid = c.sqe.cid();
        let outcome = ctrl.model.lock().admin(&c.sqe, &c.data, c.read_len as usize, Instant::now());
        match outcome {
            AdminOutcome::Reply { cqe, data } => self.reply(cid, cqe.status, cqe.result, data.map(Bytes::from)),
            AdminOutcome::Held => {}
            AdminOutcome::Abort { sqid, cid: victim, abort_cid } => {
                let token = ctrl.running.lock().get(&(sqid, victim)).cloned();
                let aborted = token.is_some();
                if let Some(t) = token {
                    info!(cntlid = ctrl.cntlid, sqid, cid = victim, "Abort: cancelling the command");
                    t.cancel();
                }
                let cqe = abort_reply(abort_cid, aborted);
                self.reply(abort_cid, cqe.status, cqe.result, None);
            }
        }
        let events = ctrl.model.lock().take_events();
        for cqe in events {
            self.reply(cqe.cid, cqe.status, cqe.result, None);
        }
    }

    /// An I/O command: checked here, executed on the I/O pool.
    fn io(&mut self, ctrl: &Arc<Ctrl>, subsys: &Arc<Subsys>, qid: u16, c: Capsule) {
        let cid = c.sqe.cid();
        let nsid = c.sqe.nsid();
        let ns = subsys.namespace(nsid);
        let cmd = match nvm::parse_io(&c.sqe, ns.as_ref().map(|n| n.info())) {
            Ok(cmd) => cmd,
            Err(status) => {
                self.count(nsid, command_name(c.sqe.opcode().0), false, 0);
                self.reply(cid, status, 0, None);
                return;
            }
        };
        let Some(ns) = ns else {
            self.reply(cid, Status::INVALID_NAMESPACE, 0, None);
            return;
        };
        let command = command_name(c.sqe.opcode().0);
        let bs = ns.block_size();
        let moved = cmd.data_out_len(bs).max(cmd.data_in_len(bs));
        // A short Read or Write that needs no waiting is answered here.
        if let Some(outcome) = nvm::try_execute(&ns, &cmd, &c.data) {
            self.done(Done { cid, outcome, command, nsid, bytes: moved });
            return;
        }
        let cancel = CancelToken::new();
        self.running.insert(cid, cancel.clone());
        ctrl.running.lock().insert((qid, cid), cancel.clone());
        let formats = ctrl.model.lock().copy_formats_enabled();
        let done_tx = self.done_tx.clone();
        let subsys = subsys.clone();
        let svc = self.svc.clone();
        let long = moved > LONG_TRANSFER || command == "copy";
        let data = c.data;
        // A Copy's bytes, for the metrics: the sum of its ranges.
        let copied = match &cmd {
            nvm::IoCommand::Copy(cc) => copy_bytes(cc, &data, bs),
            _ => 0,
        };
        self.shared.io_pool.spawn(long, move || {
            let lookup = |id: u32| subsys.namespace(id);
            let ctx = IoContext {
                cancel: &cancel,
                lookup: &lookup,
                max_nsid: subsys.namespaces.keys().next_back().copied().unwrap_or(0),
                copy_formats_enabled: formats,
                metrics: svc.registry.metrics(),
                chunk_bytes: svc.registry.copy_chunk_bytes(),
            };
            let outcome = nvm::execute(&ns, &cmd, data, &ctx);
            let bytes = if command == "copy" { copied } else { moved };
            let _ = done_tx.send(Done { cid, outcome, command, nsid, bytes });
        });
    }

    /// Count a completed I/O command (counters resolved once per
    /// namespace and command; at most a few hundred NSIDs × 9 commands, as
    /// NSIDs outside the subsystem are counted under 0).
    fn count(&mut self, nsid: u32, command: &'static str, ok: bool, bytes: u64) {
        let nsid = match &self.role {
            Role::Io { subsys, .. } if subsys.namespaces.contains_key(&nsid) => nsid,
            _ => 0,
        };
        let c = match self.counters.get(&(nsid, command)) {
            Some(c) => c,
            None => {
                let c = self.svc.metrics.counters(&self.label, nsid, command);
                self.counters.entry((nsid, command)).or_insert(c)
            }
        };
        c.done(ok, bytes);
    }

    fn done(&mut self, d: Done) {
        self.running.remove(&d.cid);
        if let Role::Io { ctrl, qid, .. } = &self.role {
            ctrl.running.lock().remove(&(*qid, d.cid));
        }
        self.count(d.nsid, d.command, d.outcome.status.is_success(), d.bytes);
        self.reply(d.cid, d.outcome.status, u64::from(d.outcome.result), d.outcome.data);
    }

    /// Shutdown: wait (bounded) for the commands running, answer them.
    async fn drain(&mut self, done_rx: &mut mpsc::UnboundedReceiver<Done>) {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while !self.running.is_empty() {
            match tokio::time::timeout_at(deadline, done_rx.recv()).await {
                Ok(Some(d)) => {
                    self.done(d);
                    self.pump();
                }
                _ => break,
            }
        }
    }

    /// The connection is gone: cancel what still runs; an admin queue ends
    /// its controller (and so its I/O queues).
    fn end(&mut self) {
        self.flush();
        for (_, t) in self.running.drain() {
            t.cancel();
        }
        match &self.role {
            Role::Admin(c) => {
                info!(peer = %self.peer, cntlid = c.cntlid, subsystem = %c.subnqn, "NVMe controller ended");
                self.svc.remove_controller(c);
                self.svc.metrics.connection(&self.label, -1);
            }
            Role::Io { ctrl, qid, .. } => {
                ctrl.model.lock().io_queue_closed(*qid);
                let mut r = ctrl.running.lock();
                r.retain(|(q, _), _| q != qid);
                self.svc.metrics.connection(&self.label, -1);
            }
            Role::Unbound => {}
        }
    }
}

/// Bytes a Copy writes (for metrics): the sum of its source ranges.
fn copy_bytes(c: &nvm::CopyCommand, data: &[u8], bs: u32) -> u64 {
    let Some(len) = c.format.desc_len() else { return 0 };
    data.chunks_exact(len)
        .take(c.ranges)
        .filter_map(|d| CopyRange::decode(c.format, d))
        .map(|r| u64::from(r.blocks()) * u64::from(bs))
        .sum()
}

/// The `command` label of an NVM opcode.
fn command_name(op: u8) -> &'static str {
    match op {
        0x00 => "flush",
        0x01 => "write",
        0x02 => "read",
        0x05 => "compare",
        0x08 => "write_zeroes",
        0x09 => "dsm",
        0x0C => "verify",
        0x19 => "copy",
        _ => "other",
    }
}
