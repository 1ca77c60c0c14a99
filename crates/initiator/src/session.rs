//! The session handle and the full-feature-phase API (the state it shares
//! with the connection tasks is [`crate::shared`]'s).

use crate::command::{DataDir, ScsiOutcome};
use crate::config::SessionConfig;
use crate::conn;
use crate::discovery::DiscoveredTarget;
use crate::error::{InitiatorError, Result};
use crate::lun::encode_lun;
use crate::shared::{data_out_pdus, Counters, InBuf, OutPdu, ScsiTask, Shared, State, Task, TaskKind, WireStats};
use bytes::{Bytes, BytesMut};
use oxcopy_iscsi::frame::{extended_cdb_ahs, FrameLimits, MAX_CDB_LEN};
use oxcopy_iscsi::pdu::{Header, ScsiCommand, TaskAttr, TmfFunction, TmfResponse, RESERVED_TAG};
use oxcopy_iscsi::SessionParams;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::{Instant, Sleep};

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
