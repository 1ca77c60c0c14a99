//! The state one session's handle and its connection tasks share: the
//! task table (one entry per ITT in use), the CmdSN window, the PDU queue of
//! the writer, the wire counters, and the management exchanges (TMF, NOP,
//! Text, Logout) built on them. [`crate::session`] (the public handle) and
//! [`crate::conn`] (the reader/writer tasks) both build on this module; it
//! imports neither.

use crate::command::ScsiOutcome;
use crate::config::SessionConfig;
use crate::error::{InitiatorError, Result};
use bytes::{Bytes, BytesMut};
use oxcopy_iscsi::pdu::{
    DataOut, Header, LogoutReason, LogoutRequest, LogoutResponseCode, NopOut, TaskMgmtRequest, TextRequest,
    TmfFunction, TmfResponse, RESERVED_TAG,
};
use oxcopy_iscsi::{serial, Pdu, SessionParams};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

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
    pub(crate) fn snapshot(&self) -> WireStats {
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
