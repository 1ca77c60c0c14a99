//! The session handle, its shared state, and the full-feature-phase API.

use crate::command::{DataDir, ScsiOutcome};
use crate::config::SessionConfig;
use crate::conn;
use crate::discovery::DiscoveredTarget;
use crate::error::{InitiatorError, Result};
use crate::lun::encode_lun;
use bytes::{Bytes, BytesMut};
use oxcopy_iscsi::frame::{extended_cdb_ahs, FrameLimits, MAX_CDB_LEN};
use oxcopy_iscsi::pdu::{
    DataOut, Header, LogoutReason, LogoutRequest, LogoutResponseCode, NopOut, ScsiCommand, TaskAttr, TaskMgmtRequest,
    TextRequest, TmfFunction, TmfResponse, RESERVED_TAG,
};
use oxcopy_iscsi::{serial, Pdu, SessionParams};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::{Instant, Sleep};

/// Largest Text Response payload we reassemble (SendTargets of many targets
/// fits easily; a target looping on continuations does not).
const MAX_TEXT_RESPONSE: usize = 4 * 1024 * 1024;

// ---------------------------------------------------------------------------
// Counters.

/// Bytes and PDUs on the wire since the full-feature phase started (login
/// traffic included when the session was opened with `connect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WireStats {
    /// Bytes written to the socket.
    pub bytes_sent: u64,
    /// Bytes read from the socket.
    pub bytes_received: u64,
    /// PDUs sent.
    pub pdus_sent: u64,
    /// PDUs received.
    pub pdus_received: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub pdus_sent: AtomicU64,
    pub pdus_received: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    fn snapshot(&self) -> WireStats {
        WireStats {
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            pdus_sent: self.pdus_sent.load(Ordering::Relaxed),
            pdus_received: self.pdus_received.load(Ordering::Relaxed),
        }
    }
}

// ---------------------------------------------------------------------------
// Tasks (one per ITT in use).

/// A PDU queued for the writer task; ExpStatSN is filled in when encoded.
pub(crate) struct OutPdu {
    pub header: Header,
    pub ahs: Bytes,
    pub data: Bytes,
}

impl OutPdu {
    pub(crate) fn new(header: Header) -> OutPdu {
        OutPdu { header, ahs: Bytes::new(), data: Bytes::new() }
    }
}

pub(crate) type ScsiReply = oneshot::Sender<Result<ScsiOutcome>>;

/// Where Data-In bytes go: nothing yet, one zero-copy frame (the common
/// single-PDU read), or one pre-sized buffer filled by offset.
pub(crate) enum InBuf {
    Empty,
    Whole(Bytes),
    Buf(BytesMut),
}

pub(crate) struct ScsiTask {
    /// `None` once the caller has been answered (e.g. with a protocol error)
    /// while the target still owns the task: later PDUs are consumed quietly.
    pub tx: Option<ScsiReply>,
    pub read_len: u32,
    pub inbuf: InBuf,
    pub high: u32,
    pub received: u64,
    pub next_data_sn: u32,
    pub write: Bytes,
}

impl ScsiTask {
    /// Place one Data-In segment. Bounds-checked against the expected
    /// length: never grows the buffer.
    pub(crate) fn put_data(&mut self, offset: u32, data: Bytes) -> std::result::Result<(), String> {
        let end = offset as u64 + data.len() as u64;
        if end > self.read_len as u64 {
            return Err(format!("Data-In [{offset}, {end}) past the expected {} bytes", self.read_len));
        }
        if data.is_empty() {
            return Ok(());
        }
        let (off, end_us) = (offset as usize, end as usize);
        match &mut self.inbuf {
            InBuf::Empty if off == 0 => {
                self.high = self.high.max(end as u32);
                self.received += data.len() as u64;
                self.inbuf = InBuf::Whole(data);
                return Ok(());
            }
            InBuf::Empty => {
                let mut b = BytesMut::zeroed(self.read_len as usize);
                b[off..end_us].copy_from_slice(&data);
                self.inbuf = InBuf::Buf(b);
            }
            InBuf::Whole(w) => {
                let mut b = BytesMut::zeroed(self.read_len as usize);
                b[..w.len()].copy_from_slice(w);
                b[off..end_us].copy_from_slice(&data);
                self.inbuf = InBuf::Buf(b);
            }
            InBuf::Buf(b) => b[off..end_us].copy_from_slice(&data),
        }
        self.high = self.high.max(end as u32);
        self.received += data.len() as u64;
        Ok(())
    }

    /// The Data-In bytes received, up to the highest offset.
    pub(crate) fn take_data(&mut self) -> std::result::Result<Bytes, String> {
        if self.received < self.high as u64 {
            return Err(format!("Data-In left gaps: {} bytes received below offset {}", self.received, self.high));
        }
        Ok(match std::mem::replace(&mut self.inbuf, InBuf::Empty) {
            InBuf::Empty => Bytes::new(),
            InBuf::Whole(b) => b,
            InBuf::Buf(mut b) => {
                b.truncate(self.high as usize);
                b.freeze()
            }
        })
    }

    /// Answer the caller (once).
    pub(crate) fn reply(&mut self, r: Result<ScsiOutcome>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(r);
        }
    }
}

pub(crate) enum TaskKind {
    Scsi(ScsiTask),
    Nop(oneshot::Sender<Result<Bytes>>),
    Tmf { function: TmfFunction, referenced: u32, tx: oneshot::Sender<Result<TmfResponse>> },
    Text(mpsc::UnboundedSender<Result<Pdu>>),
    Logout(oneshot::Sender<Result<LogoutResponseCode>>),
}

pub(crate) struct Task {
    pub lun: [u8; 8],
    pub cmd_sn: u32,
    pub kind: TaskKind,
}

impl Task {
    /// Complete the task with an error, whatever its kind.
    pub(crate) fn fail(self, e: impl Fn() -> InitiatorError) {
        match self.kind {
            TaskKind::Scsi(mut t) => t.reply(Err(e())),
            TaskKind::Nop(tx) => drop(tx.send(Err(e()))),
            TaskKind::Tmf { tx, .. } => drop(tx.send(Err(e()))),
            TaskKind::Text(tx) => drop(tx.send(Err(e()))),
            TaskKind::Logout(tx) => drop(tx.send(Err(e()))),
        }
    }
}

pub(crate) struct State {
    /// CmdSN of the next non-immediate command.
    pub cmd_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub next_itt: u32,
    pub tasks: HashMap<u32, Task>,
    pub closed: Option<String>,
    pub logout_started: bool,
}

impl State {
    fn alloc_itt(&mut self) -> u32 {
        loop {
            let itt = self.next_itt;
            self.next_itt = itt.wrapping_add(1);
            if itt != RESERVED_TAG && !self.tasks.contains_key(&itt) {
                return itt;
            }
        }
    }

    /// Accept ExpCmdSN/MaxCmdSN from a target PDU (RFC 7143 §4.2.2.1).
    /// Returns true when the window grew.
    pub(crate) fn update_window(&mut self, exp: u32, max: u32) -> bool {
        if serial::lt(max, exp.wrapping_sub(1)) {
            return false; // invalid pair: ignore
        }
        if serial::lt(self.exp_cmd_sn, exp) {
            self.exp_cmd_sn = exp;
        }
        if serial::lt(self.max_cmd_sn, max) {
            self.max_cmd_sn = max;
            return true;
        }
        false
    }
}

// ---------------------------------------------------------------------------
// Shared state of one session (held by the handle and the connection tasks).

pub(crate) struct Shared {
    pub params: SessionParams,
    pub cfg: SessionConfig,
    pub state: Mutex<State>,
    pub window: Notify,
    pub out: mpsc::UnboundedSender<OutPdu>,
    /// ExpStatSN we acknowledge; written by the reader, read by the writer.
    pub exp_stat_sn: AtomicU32,
    pub stats: Counters,
    pub closed_tx: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue a PDU for the writer (dropped silently once closed).
    pub(crate) fn send(&self, pdu: OutPdu) {
        let _ = self.out.send(pdu);
    }

    /// Acknowledge a status-bearing PDU: ExpStatSN = StatSN + 1 (never back).
    pub(crate) fn ack_stat_sn(&self, next: u32) {
        let cur = self.exp_stat_sn.load(Ordering::Relaxed);
        if serial::lt(cur, next) {
            self.exp_stat_sn.store(next, Ordering::Relaxed);
        }
    }

    /// Tear the session down: every waiter gets `ConnectionClosed`.
    pub(crate) fn close(&self, reason: &str) {
        let tasks = {
            let mut st = self.lock();
            if st.closed.is_some() {
                return;
            }
            st.closed = Some(reason.to_string());
            std::mem::take(&mut st.tasks)
        };
        tracing::debug!(reason, pending = tasks.len(), "iSCSI session closed");
        for (_, t) in tasks {
            t.fail(|| InitiatorError::ConnectionClosed);
        }
        self.closed_tx.send_replace(true);
        self.window.notify_waiters();
    }

    /// Allocate an ITT (or reuse `itt`), wait for the CmdSN window if the
    /// PDU is non-immediate, then let `make` register the task and return
    /// the PDUs to queue — all under one lock so the wire order is the CmdSN
    /// order.
    pub(crate) async fn issue(
        &self,
        immediate: bool,
        itt: Option<u32>,
        deadline: Instant,
        make: impl FnOnce(&mut State, u32, u32) -> Vec<OutPdu>,
    ) -> Result<u32> {
        loop {
            let notified = self.window.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock();
                if st.closed.is_some() {
                    return Err(InitiatorError::ConnectionClosed);
                }
                if immediate || serial::le(st.cmd_sn, st.max_cmd_sn) {
                    let itt = match itt {
                        Some(i) => i,
                        None => st.alloc_itt(),
                    };
                    let cmd_sn = st.cmd_sn;
                    if !immediate {
                        st.cmd_sn = cmd_sn.wrapping_add(1);
                    }
                    for p in make(&mut st, itt, cmd_sn) {
                        self.send(p);
                    }
                    return Ok(itt);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(InitiatorError::Timeout("waiting for the CmdSN window (MaxCmdSN)"));
            }
        }
    }

    fn mgmt_deadline(&self) -> Instant {
        Instant::now() + self.cfg.management_timeout
    }

    /// Send a task management request and wait for its response.
    pub(crate) async fn tmf(&self, function: TmfFunction, lun: [u8; 8], referenced: u32) -> Result<TmfResponse> {
        let (tx, rx) = oneshot::channel();
        let deadline = self.mgmt_deadline();
        let itt = self
            .issue(true, None, deadline, |st, itt, cmd_sn| {
                // RefCmdSN: the CmdSN of the referenced task when we know it.
                let ref_cmd_sn = st.tasks.get(&referenced).map(|t| t.cmd_sn).unwrap_or(cmd_sn);
                st.tasks.insert(itt, Task { lun, cmd_sn, kind: TaskKind::Tmf { function, referenced, tx } });
                vec![OutPdu::new(Header::TaskMgmtRequest(TaskMgmtRequest {
                    immediate: true,
                    function,
                    lun,
                    itt,
                    referenced_task_tag: referenced,
                    cmd_sn,
                    exp_stat_sn: 0,
                    ref_cmd_sn,
                    exp_data_sn: 0,
                }))]
            })
            .await?;
        self.wait(itt, deadline, rx, "task management response").await
    }

    /// Wait on a oneshot until `deadline`; on timeout the task is forgotten.
    async fn wait<T>(
        &self,
        itt: u32,
        deadline: Instant,
        rx: oneshot::Receiver<Result<T>>,
        what: &'static str,
    ) -> Result<T> {
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(InitiatorError::ConnectionClosed),
            Err(_) => {
                self.lock().tasks.remove(&itt);
                Err(InitiatorError::Timeout(what))
            }
        }
    }

    /// NOP-Out ping; returns the round-trip time.
    pub(crate) async fn ping(&self) -> Result<Duration> {
        let (tx, rx) = oneshot::channel();
        let start = Instant::now();
        let deadline = self.mgmt_deadline();
        let itt = self
            .issue(true, None, deadline, |st, itt, cmd_sn| {
                st.tasks.insert(itt, Task { lun: [0; 8], cmd_sn, kind: TaskKind::Nop(tx) });
                vec![OutPdu::new(Header::NopOut(NopOut {
                    immediate: true,
                    lun: [0; 8],
                    itt,
                    ttt: RESERVED_TAG,
                    cmd_sn,
                    exp_stat_sn: 0,
                }))]
            })
            .await?;
        self.wait(itt, deadline, rx, "NOP-In").await?;
        Ok(start.elapsed())
    }

    /// Logout (close the session), then close the connection.
    pub(crate) async fn logout(&self) -> Result<()> {
        {
            let mut st = self.lock();
            if st.logout_started {
                return Ok(());
            }
            st.logout_started = true;
        }
        let (tx, rx) = oneshot::channel();
        let deadline = self.mgmt_deadline();
        let r = async {
            let itt = self
                .issue(true, None, deadline, |st, itt, cmd_sn| {
                    st.tasks.insert(itt, Task { lun: [0; 8], cmd_sn, kind: TaskKind::Logout(tx) });
                    vec![OutPdu::new(Header::LogoutRequest(LogoutRequest {
                        immediate: true,
                        reason: LogoutReason::CLOSE_SESSION,
                        itt,
                        cid: 0,
                        cmd_sn,
                        exp_stat_sn: 0,
                    }))]
                })
                .await?;
            match self.wait(itt, deadline, rx, "Logout Response").await? {
                LogoutResponseCode::SUCCESS => Ok(()),
                LogoutResponseCode(c) => Err(InitiatorError::Protocol(format!("logout refused, response {c}"))),
            }
        }
        .await;
        self.close("logged out");
        r
    }

    /// One Text Request/Response exchange, following continuations
    /// (F=0 or C=1 → an empty Text Request echoing the TTT).
    pub(crate) async fn text(&self, data: Bytes) -> Result<Bytes> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let deadline = self.mgmt_deadline();
        let mut tx = Some(tx);
        let mut req_data = data;
        let mut itt_opt = None;
        let mut ttt = RESERVED_TAG;
        let mut acc = BytesMut::new();
        loop {
            let sender = tx.take();
            let body = std::mem::take(&mut req_data);
            let itt = self
                .issue(false, itt_opt, deadline, |st, itt, cmd_sn| {
                    if let Some(sender) = sender {
                        st.tasks.insert(itt, Task { lun: [0; 8], cmd_sn, kind: TaskKind::Text(sender) });
                    }
                    vec![OutPdu {
                        header: Header::TextRequest(TextRequest {
                            immediate: false,
                            final_: true,
                            continue_: false,
                            lun: [0; 8],
                            itt,
                            ttt,
                            cmd_sn,
                            exp_stat_sn: 0,
                        }),
                        ahs: Bytes::new(),
                        data: body,
                    }]
                })
                .await?;
            itt_opt = Some(itt);
            let pdu = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => r?,
                Ok(None) => return Err(InitiatorError::ConnectionClosed),
                Err(_) => {
                    self.lock().tasks.remove(&itt);
                    return Err(InitiatorError::Timeout("Text Response"));
                }
            };
            let Header::TextResponse(h) = &pdu.header else {
                return Err(InitiatorError::Protocol("expected a Text Response".into()));
            };
            if acc.len() + pdu.data.len() > MAX_TEXT_RESPONSE {
                self.lock().tasks.remove(&itt);
                return Err(InitiatorError::Protocol("Text Response too long".into()));
            }
            acc.extend_from_slice(&pdu.data);
            if h.final_ && !h.continue_ {
                return Ok(acc.freeze());
            }
            ttt = h.ttt;
        }
    }
}

// ---------------------------------------------------------------------------
// Public handle.

/// Everything the full-feature phase needs from a completed login.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    /// The negotiated parameters.
    pub params: SessionParams,
    /// StatSN of the final Login Response (we acknowledge StatSN + 1).
    pub stat_sn: u32,
    /// ExpCmdSN of the final Login Response: the CmdSN of our first command.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN of the final Login Response.
    pub max_cmd_sn: u32,
}

struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close("every Session handle was dropped");
    }
}

/// An iSCSI session in the full-feature phase (one connection, ERL 0).
///
/// Cheap to clone (`Arc`); clones share the connection, so many tasks can
/// have commands in flight at once. The connection closes when the last
/// clone is dropped, on [`Session::logout`], or on a fatal error.
#[derive(Clone)]
pub struct Session {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.handle.shared.params;
        f.debug_struct("Session")
            .field("target", &p.target_name)
            .field("tsih", &p.tsih)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Session {
    /// Start the full-feature phase over an already logged-in connection:
    /// spawns the reader and writer tasks (and the keepalive task when
    /// configured). `leftover` is whatever was read past the last Login
    /// Response. Must be called inside a tokio runtime.
    ///
    /// [`Session::connect`] does this after login; it is public for custom
    /// transports and for tests that script the target side.
    pub fn start<R, W>(reader: R, writer: W, leftover: BytesMut, login: LoginOutcome, cfg: SessionConfig) -> Session
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (out, rx) = mpsc::unbounded_channel();
        let (closed_tx, _) = watch::channel(false);
        let params = login.params;
        let rx_limits = FrameLimits {
            header_digest: params.header_digest,
            data_digest: params.data_digest,
            max_data_segment: params.initiator_max_recv_data_segment_length,
        };
        let shared = Arc::new(Shared {
            cfg,
            state: Mutex::new(State {
                cmd_sn: login.exp_cmd_sn,
                exp_cmd_sn: login.exp_cmd_sn,
                max_cmd_sn: login.max_cmd_sn,
                next_itt: (crate::config::random_u64() as u32) | 1,
                tasks: HashMap::new(),
                closed: None,
                logout_started: false,
            }),
            window: Notify::new(),
            out,
            exp_stat_sn: AtomicU32::new(login.stat_sn.wrapping_add(1)),
            stats: Counters::default(),
            closed_tx,
            params,
        });
        let rd = tokio::spawn(conn::reader_task(shared.clone(), reader, leftover, rx_limits));
        let wr = tokio::spawn(conn::writer_task(shared.clone(), writer, rx));
        // Should a connection task ever panic, fail everything instead of
        // leaving callers to their timeouts.
        let sh = shared.clone();
        tokio::spawn(async move {
            let (a, b) = tokio::join!(rd, wr);
            if a.is_err() || b.is_err() {
                sh.close("connection task panicked");
            }
        });
        if let Some(every) = shared.cfg.keepalive_interval {
            tokio::spawn(conn::keepalive_task(Arc::downgrade(&shared), every));
        }
        Session { handle: Arc::new(Handle { shared }) }
    }

    pub(crate) fn add_login_stats(&self, (bs, br, ps, pr): (u64, u64, u64, u64)) {
        let c = &self.shared().stats;
        Counters::add(&c.bytes_sent, bs);
        Counters::add(&c.bytes_received, br);
        Counters::add(&c.pdus_sent, ps);
        Counters::add(&c.pdus_received, pr);
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// The negotiated session parameters.
    pub fn params(&self) -> &SessionParams {
        &self.shared().params
    }

    /// The configuration the session was opened with.
    pub fn config(&self) -> &SessionConfig {
        &self.shared().cfg
    }

    /// Bytes/PDUs sent and received on the wire so far.
    pub fn wire_stats(&self) -> WireStats {
        self.shared().stats.snapshot()
    }

    /// True once the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.shared().lock().closed.is_some()
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<String> {
        self.shared().lock().closed.clone()
    }

    /// Resolves when the connection is gone.
    pub async fn closed(&self) {
        let mut rx = self.shared().closed_tx.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Number of tasks (commands, TMFs, pings...) awaiting a response.
    pub fn tasks_in_flight(&self) -> usize {
        self.shared().lock().tasks.len()
    }

    /// Queue a SCSI command and return as soon as it is on its way (after
    /// waiting for the CmdSN window if needed). The returned
    /// [`PendingCommand`] knows the ITT (for [`Session::abort_task`]) and
    /// resolves to the outcome.
    ///
    /// `lun` is encoded with [`crate::lun::encode_lun`]. CDBs longer than 16
    /// bytes go out with an Extended CDB AHS.
    pub async fn submit(&self, lun: u64, cdb: &[u8], dir: DataDir) -> Result<PendingCommand> {
        let sh = self.shared();
        if cdb.is_empty() || cdb.len() > MAX_CDB_LEN {
            return Err(InitiatorError::InvalidArgument(format!("CDB length {} not in 1..={MAX_CDB_LEN}", cdb.len())));
        }
        let (read_len, write) = match dir {
            DataDir::None => (0, Bytes::new()),
            DataDir::Read { len } => (len, Bytes::new()),
            DataDir::Write { data } => {
                if data.len() > u32::MAX as usize {
                    return Err(InitiatorError::InvalidArgument("write data over 4 GiB".into()));
                }
                (0, data)
            }
        };
        let lun_b = encode_lun(lun);
        let mut cdb16 = [0u8; 16];
        let n = cdb.len().min(16);
        cdb16[..n].copy_from_slice(&cdb[..n]);
        let ahs = Bytes::from(extended_cdb_ahs(cdb));

        // Data-Out planning (RFC 7143 §4.2.5.2 / §13.11-13.14).
        let p = &sh.params;
        let mrdsl = p.target_max_recv_data_segment_length.max(512) as usize;
        let first_burst = p.first_burst_length as usize;
        let imm_len = if p.immediate_data { write.len().min(first_burst).min(mrdsl) } else { 0 };
        let unsolicited_end = if p.initial_r2t { imm_len } else { write.len().min(first_burst) };
        let sends_data_out = unsolicited_end > imm_len;

        let (tx, rx) = oneshot::channel();
        let timeout = sh.cfg.command_timeout;
        let deadline = Instant::now() + timeout;
        let itt = sh
            .issue(false, None, deadline, |st, itt, cmd_sn| {
                let mut pdus = Vec::with_capacity(1 + (unsolicited_end - imm_len).div_ceil(mrdsl));
                pdus.push(OutPdu {
                    header: Header::ScsiCommand(ScsiCommand {
                        immediate: false,
                        final_: !sends_data_out,
                        read: read_len > 0,
                        write: !write.is_empty(),
                        attr: TaskAttr::SIMPLE,
                        lun: lun_b,
                        itt,
                        expected_data_length: if write.is_empty() { read_len } else { write.len() as u32 },
                        cmd_sn,
                        exp_stat_sn: 0,
                        cdb: cdb16,
                    }),
                    ahs,
                    data: write.slice(..imm_len),
                });
                data_out_pdus(&mut pdus, &write, lun_b, itt, RESERVED_TAG, imm_len, unsolicited_end, mrdsl);
                st.tasks.insert(
                    itt,
                    Task {
                        lun: lun_b,
                        cmd_sn,
                        kind: TaskKind::Scsi(ScsiTask {
                            tx: Some(tx),
                            read_len,
                            inbuf: InBuf::Empty,
                            high: 0,
                            received: 0,
                            next_data_sn: 0,
                            write,
                        }),
                    },
                );
                pdus
            })
            .await?;
        Ok(PendingCommand { itt, rx, sleep: Box::pin(tokio::time::sleep_until(deadline)), handle: self.handle.clone() })
    }

    /// Run one SCSI command to completion. A CHECK CONDITION is an `Ok`
    /// outcome with `status == 2` and sense data.
    pub async fn execute(&self, lun: u64, cdb: &[u8], dir: DataDir) -> Result<ScsiOutcome> {
        self.submit(lun, cdb, dir).await?.await
    }

    /// NOP-Out ping (immediate); resolves with the round-trip time.
    pub async fn nop(&self) -> Result<Duration> {
        self.shared().ping().await
    }

    /// Any task management function. `referenced_itt` matters for ABORT
    /// TASK only. On FUNCTION COMPLETE the affected commands resolve with
    /// [`InitiatorError::Aborted`].
    pub async fn task_management(
        &self,
        function: TmfFunction,
        lun: u64,
        referenced_itt: Option<u32>,
    ) -> Result<TmfResponse> {
        self.shared().tmf(function, encode_lun(lun), referenced_itt.unwrap_or(RESERVED_TAG)).await
    }

    /// ABORT TASK for the command with this ITT (see [`PendingCommand::itt`]).
    pub async fn abort_task(&self, itt: u32) -> Result<TmfResponse> {
        let lun = self.shared().lock().tasks.get(&itt).map(|t| t.lun).unwrap_or([0; 8]);
        self.shared().tmf(TmfFunction::ABORT_TASK, lun, itt).await
    }

    /// ABORT TASK SET on a LUN.
    pub async fn abort_task_set(&self, lun: u64) -> Result<TmfResponse> {
        self.task_management(TmfFunction::ABORT_TASK_SET, lun, None).await
    }

    /// LOGICAL UNIT RESET.
    pub async fn lun_reset(&self, lun: u64) -> Result<TmfResponse> {
        self.task_management(TmfFunction::LOGICAL_UNIT_RESET, lun, None).await
    }

    /// TARGET WARM RESET.
    pub async fn target_warm_reset(&self) -> Result<TmfResponse> {
        self.task_management(TmfFunction::TARGET_WARM_RESET, 0, None).await
    }

    /// A Text Request/Response exchange (key=value data, NUL-separated),
    /// with continued responses reassembled.
    pub async fn text(&self, data: Bytes) -> Result<Bytes> {
        self.shared().text(data).await
    }

    /// `SendTargets=All` on this session (normally a discovery session).
    pub async fn send_targets(&self) -> Result<Vec<DiscoveredTarget>> {
        let data = self.text(Bytes::from_static(b"SendTargets=All\0")).await?;
        crate::discovery::parse_send_targets(&data)
    }

    /// Log out (close the session) and close the connection. Commands still
    /// in flight resolve with [`InitiatorError::ConnectionClosed`]; other
    /// clones of this handle see a closed session.
    pub async fn logout(self) -> Result<()> {
        self.shared().logout().await
    }
}

/// Queue Data-Out PDUs covering `data[from..to]`, at most `mrdsl` bytes
/// each, DataSN from 0, F on the last one.
#[allow(clippy::too_many_arguments)]
pub(crate) fn data_out_pdus(
    pdus: &mut Vec<OutPdu>,
    data: &Bytes,
    lun: [u8; 8],
    itt: u32,
    ttt: u32,
    from: usize,
    to: usize,
    mrdsl: usize,
) {
    let mut off = from;
    let mut data_sn = 0u32;
    while off < to {
        let end = (off + mrdsl).min(to);
        pdus.push(OutPdu {
            header: Header::DataOut(DataOut {
                final_: end == to,
                lun,
                itt,
                ttt,
                exp_stat_sn: 0,
                data_sn,
                buffer_offset: off as u32,
            }),
            ahs: Bytes::new(),
            data: data.slice(off..end),
        });
        data_sn = data_sn.wrapping_add(1);
        off = end;
    }
}

/// A SCSI command in flight. Await it for the [`ScsiOutcome`].
///
/// Times out after [`SessionConfig::command_timeout`] (or
/// [`PendingCommand::with_timeout`]); on timeout an ABORT TASK is sent in the
/// background. Dropping it does not cancel the command at the target.
pub struct PendingCommand {
    itt: u32,
    rx: oneshot::Receiver<Result<ScsiOutcome>>,
    sleep: Pin<Box<Sleep>>,
    handle: Arc<Handle>,
}

impl std::fmt::Debug for PendingCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCommand").field("itt", &self.itt).finish()
    }
}

impl PendingCommand {
    /// The Initiator Task Tag of this command.
    pub fn itt(&self) -> u32 {
        self.itt
    }

    /// Replace the time limit (counted from now).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.sleep.as_mut().reset(Instant::now() + timeout);
        self
    }
}

impl Future for PendingCommand {
    type Output = Result<ScsiOutcome>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(r) = Pin::new(&mut self.rx).poll(cx) {
            return Poll::Ready(r.unwrap_or(Err(InitiatorError::ConnectionClosed)));
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            let shared = self.handle.shared.clone();
            let itt = self.itt;
            let lun = shared.lock().tasks.get(&itt).map(|t| t.lun);
            if let Some(lun) = lun {
                tracing::warn!(itt, "SCSI command timed out; sending ABORT TASK");
                tokio::spawn(async move {
                    let _ = shared.tmf(TmfFunction::ABORT_TASK, lun, itt).await;
                });
            }
            return Poll::Ready(Err(InitiatorError::Timeout("SCSI command")));
        }
        Poll::Pending
    }
}
