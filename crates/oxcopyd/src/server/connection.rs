//! One connection: its login, then its full feature phase. The task feeds
//! what it reads, the results of commands and the clock to the state
//! machines of `oxcopy-iscsi` and carries out the actions they return; the
//! protocol core decides everything else (sequencing, data transfer,
//! keepalive and stall timers) and keeps the one table of the connection's
//! tasks, with this driver's [`Execution`] handle on each command running
//! on the I/O pool.

use crate::server::login::{self, LoggedIn};
use crate::server::poll::{poll_next, PollBeforeSleep, Polled};
use crate::server::writer::{self, Out};
use crate::server::{wait_until, Shared, MAX_WRITE_BUFFER, OUR_MAX_RECV_DATA_SEGMENT, SHUTDOWN_GRACE};
use bytes::{Bytes, BytesMut};
use oxcopy_iscsi::frame::{decode_frame, encode_frame, FrameError, FrameLimits};
use oxcopy_iscsi::params::SessionType;
use oxcopy_iscsi::pdu::{Header, Reject, RejectReason, TmfFunction, TmfResponse, BHS_LEN};
use oxcopy_iscsi::target::{Action, ScsiTask, TargetConnConfig, TargetConnection, TaskId, TaskManagement, TaskOutcome};
use oxcopy_iscsi::timeout::ConnTimeouts;
use oxcopy_scsi::{CancelToken, Nexus, Request, ScsiTarget, TmfResult};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

/// Commands moving more bytes than this get an I/O thread of their own
/// (see `pool`); shorter ones are cheaper to run on an already awake one.
const LONG_TRANSFER: u32 = 64 * 1024;
/// READs and WRITEs up to this long are tried inline on the connection's
/// task first (done there if that needs no waiting — see
/// [`ScsiTarget::try_execute`]: copying a few pages costs less than waking
/// an I/O thread and being woken by it).
const INLINE_MAX: u32 = 64 * 1024;
/// How long a task management function waits for the commands it aborts
/// to stop before it is carried out anyway (the core keeps the time).
const ABORT_WAIT: Duration = Duration::from_secs(30);

/// Serve one accepted connection until it closes.
pub(super) async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let pdu_timeout = Duration::from_secs(shared.live().cfg.pdu_timeout_secs.max(1));
    let writer = tokio::spawn(writer::run(wr, rx, pdu_timeout));
    let mut buf = BytesMut::with_capacity(64 * 1024);

    let login = login::login(&mut rd, &mut buf, &tx, &shared, peer, Instant::now());
    // A connection still logging in has nothing in flight: shutdown does not
    // wait for it.
    let mut sd = shutdown.clone();
    let outcome = tokio::select! {
        r = login => match r {
            Ok(o) => o,
            Err(e) => {
                debug!(%peer, "login failed: {e}");
                None
            }
        },
        _ = sd.wait_for(|v| *v) => {
            debug!(%peer, "shutting down during login; closing");
            None
        }
    };
    if let Some(session) = outcome {
        let params = &session.params;
        info!(
            %peer,
            initiator = %params.initiator_name,
            target = params.target_name.as_deref().unwrap_or("<discovery>"),
            header_digest = params.header_digest,
            data_digest = params.data_digest,
            max_recv_data_segment = params.initiator_max_recv_data_segment_length,
            max_burst = params.max_burst_length,
            first_burst = params.first_burst_length,
            immediate_data = params.immediate_data,
            initial_r2t = params.initial_r2t,
            "login"
        );
        full_feature(rd, buf, tx.clone(), shared, &session, local, shutdown).await;
    }
    let _ = tx.send(Out::Close);
    drop(tx);
    let _ = writer.await;
}

/// Results coming back to the connection task.
enum Done {
    /// The result of one task instance (matched by id, not ITT: the ITT may
    /// have been reused meanwhile).
    Task(TaskId, TaskOutcome),
    Tmf(u32, TmfResponse),
}

/// The driver's handle on a command executing on the I/O pool; the core
/// keeps it with the task until the command's result is in.
struct Execution {
    cancel: CancelToken,
}

/// The full feature phase of one connection.
struct FullFeature {
    core: TargetConnection<Execution>,
    tx: mpsc::UnboundedSender<Out>,
    /// The SCSI target of a normal session (none for discovery).
    target: Option<Arc<ScsiTarget>>,
    nexus: Arc<Nexus>,
    done_tx: mpsc::UnboundedSender<Done>,
    shared: Arc<Shared>,
    /// PDUs in the bytes last received (one at a time: a queue depth of 1).
    last_batch: usize,
}

async fn full_feature(
    mut rd: OwnedReadHalf,
    mut buf: BytesMut,
    tx: mpsc::UnboundedSender<Out>,
    shared: Arc<Shared>,
    session: &LoggedIn,
    local: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let params = &session.params;
    // Subscribed before the target is looked up: a reload after this point
    // is seen by the loop below.
    let mut reconfigured = shared.reconfigured.subscribe();
    let live = shared.live();
    let target = match (&params.session_type, params.target_name.as_ref()) {
        (SessionType::Normal, Some(name)) => match live.targets.get(name) {
            Some(t) => Some(t.scsi.clone()),
            None => {
                info!(initiator = %params.initiator_name, target = %name, "target removed by a reload during login; closing");
                return;
            }
        },
        _ => None,
    };
    let nexus = Arc::new(Nexus {
        initiator_name: params.initiator_name.as_str().into(),
        isid: params.isid,
        target_name: params.target_name.clone().unwrap_or_default().into(),
        tpgt: params.target_portal_group_tag,
    });
    let limits = FrameLimits {
        header_digest: params.header_digest,
        data_digest: params.data_digest,
        max_data_segment: OUR_MAX_RECV_DATA_SEGMENT,
    };
    let conn_cfg = TargetConnConfig {
        cmd_window: live.cfg.max_commands_per_session,
        max_write_buffer: MAX_WRITE_BUFFER,
        send_targets: login::send_targets_text(&shared, &params.initiator_name, local),
    };
    let mut core = TargetConnection::with_handles(params.clone(), conn_cfg, session.stat_sn, session.exp_cmd_sn);
    core.set_write_budget(
        shared.write_budget.share(live.cfg.write_buffer_per_session, "server.write_buffer_per_session"),
    );
    core.set_read_budget(shared.read_budget.share(live.cfg.read_buffer_per_session, "server.read_buffer_per_session"));
    let nop_interval = Some(Duration::from_secs(live.cfg.nop_interval_secs)).filter(|d| !d.is_zero());
    let pdu_timeout = Duration::from_secs(live.cfg.pdu_timeout_secs.max(1));
    let write_data_timeout = Duration::from_secs(live.cfg.write_data_timeout_secs).max(pdu_timeout);
    let poll_budget = Duration::from_micros(live.cfg.poll_before_sleep_us);
    drop(live);
    let timeouts = ConnTimeouts { nop_interval, pdu_timeout, write_data_timeout, abort_wait: ABORT_WAIT };
    core.start_timers(timeouts, Instant::now());
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut conn = FullFeature { core, tx, target, nexus, done_tx, shared, last_batch: 0 };
    let mut poll = PollBeforeSleep::new(poll_budget);

    loop {
        let wake = conn.core.poll_timeout();
        let closing = tokio::select! {
            r = rd.read_buf(&mut buf) => {
                if !matches!(r, Ok(n) if n > 0) {
                    break;
                }
                let now = Instant::now();
                let mut closing = conn.received(&mut buf, &limits, now);
                poll.woken(now, conn.last_batch);
                if buf.capacity() - buf.len() < 4096 {
                    buf.reserve(64 * 1024);
                }
                // A stream of commands one at a time: wait for the next one
                // awake, briefly, instead of in the kernel (back to the
                // select every 64 commands: timers, shutdown, reloads).
                for _ in 0..64 {
                    if closing || !poll.hot() {
                        break;
                    }
                    match poll_next(&rd, &mut buf, &mut done_rx, poll.budget).await {
                        Polled::Bytes => {
                            closing = conn.received(&mut buf, &limits, Instant::now());
                            if conn.last_batch > 1 {
                                // Commands come several at a time: no need.
                                poll.missed();
                            }
                            if buf.capacity() - buf.len() < 4096 {
                                buf.reserve(64 * 1024);
                            }
                        }
                        Polled::Done(done) => closing = conn.done(done),
                        Polled::Nothing => {
                            poll.missed();
                            break;
                        }
                        Polled::Closed => {
                            closing = true;
                        }
                    }
                }
                poll.idle_from(Instant::now());
                closing
            }
            Some(done) = done_rx.recv() => conn.done(done),
            _ = wait_until(wake) => match conn.core.handle_timeout(Instant::now()) {
                Ok(actions) => conn.apply(actions),
                Err(t) => {
                    warn!(initiator = %conn.nexus.initiator_name, "{t}; closing the connection");
                    true
                }
            },
            _ = async { let _ = shutdown.wait_for(|v| *v).await; } => {
                conn.drain(&mut done_rx).await;
                true
            }
            Ok(()) = reconfigured.changed(), if conn.target.is_some() => {
                if conn.still_served() {
                    false
                } else {
                    info!(
                        initiator = %conn.nexus.initiator_name,
                        target = %conn.nexus.target_name,
                        "the reloaded configuration removed the target or no longer admits the initiator; \
                         closing the session once its commands are done"
                    );
                    conn.drain(&mut done_rx).await;
                    true
                }
            }
        };
        if closing {
            break;
        }
    }
    conn.end().await;
}

impl FullFeature {
    /// Whether the current configuration still serves this normal session:
    /// its target exists (the same one it logged in to) and admits its
    /// initiator.
    fn still_served(&self) -> bool {
        let live = self.shared.live();
        let Some(mine) = &self.target else { return true };
        live.targets
            .get(&*self.nexus.target_name)
            .is_some_and(|t| Arc::ptr_eq(&t.scsi, mine) && t.admits(&self.nexus.initiator_name))
    }

    /// Feed the PDUs among the bytes read at `now` to the core and carry out
    /// its answers; true when the connection must close.
    fn received(&mut self, buf: &mut BytesMut, limits: &FrameLimits, now: Instant) -> bool {
        self.last_batch = 0;
        loop {
            let actions = match decode_frame(buf, limits) {
                Ok(Some(pdu)) => {
                    self.last_batch += 1;
                    self.core.on_pdu(pdu)
                }
                Ok(None) => break,
                Err(FrameError::DataDigest { bhs }) => self.core.on_data_digest_error(&bhs),
                Err(FrameError::DataSegmentTooLong { bhs, len, max }) => {
                    warn!(len, max, "data segment longer than negotiated; rejecting and closing");
                    self.send_reject(RejectReason::PROTOCOL_ERROR, &bhs);
                    return true;
                }
                Err(FrameError::HeaderDigest) => {
                    warn!("header digest error; closing the connection");
                    return true;
                }
            };
            if self.apply(actions) {
                return true;
            }
        }
        self.core.bytes_received(now, buf.len());
        false
    }

    /// A command or task management function is over; true when the
    /// connection must close.
    fn done(&mut self, done: Done) -> bool {
        let actions = match done {
            Done::Task(id, outcome) => self.core.complete_task(id, outcome),
            Done::Tmf(itt, resp) => self.core.tmf_done(itt, resp),
        };
        self.apply(actions)
    }

    /// Shutdown: take no more commands, let those running finish (bounded)
    /// and answer them.
    async fn drain(&mut self, done_rx: &mut mpsc::UnboundedReceiver<Done>) {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while self.core.handles().next().is_some() {
            match tokio::time::timeout_at(deadline, done_rx.recv()).await {
                Ok(Some(done)) => {
                    self.done(done);
                }
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// The connection is over: cancel whatever still runs (results are
    /// dropped), and end the I_T nexus with the session (single connection
    /// per session): its per-LU state (unit attention queues) goes.
    async fn end(self) {
        for e in self.core.handles() {
            e.cancel.cancel();
        }
        if let Some(t) = self.target {
            let n = self.nexus.clone();
            let _ = tokio::task::spawn_blocking(move || t.nexus_lost(&n)).await;
        }
    }

    fn send_reject(&self, reason: RejectReason, bhs: &[u8; BHS_LEN]) {
        let core = &self.core;
        let h = Header::Reject(Reject {
            reason,
            stat_sn: core.stat_sn(),
            exp_cmd_sn: core.exp_cmd_sn(),
            max_cmd_sn: core.max_cmd_sn(),
            data_sn: 0,
        });
        let p = core.params();
        let pdu = encode_frame(&h, &[], Bytes::copy_from_slice(bhs), p.header_digest, p.data_digest);
        let _ = self.tx.send(Out::Pdu(pdu));
    }

    /// Carry out the core's actions; true when the connection must close.
    fn apply(&mut self, actions: Vec<Action>) -> bool {
        let mut close = false;
        let mut answered = Vec::new();
        for a in actions {
            match a {
                Action::Send(p) => {
                    let _ = self.tx.send(Out::Pdu(p));
                }
                Action::Execute(task) => {
                    if let Some(done) = self.execute(task) {
                        answered.push(done);
                    }
                }
                Action::Cancel(itts) => {
                    for itt in itts {
                        if let Some(e) = self.core.handle_mut(itt) {
                            e.cancel.cancel();
                        }
                    }
                }
                Action::TaskManagement(tm) => self.task_management(tm),
                Action::Close => close = true,
            }
        }
        // Commands answered inline complete only now: the core's answers to
        // them (responses, and task management waiting on them) come after
        // the actions they were part of.
        for (id, outcome) in answered {
            let actions = self.core.complete_task(id, outcome);
            close |= self.apply(actions);
        }
        super::log_budget_refusals(self.target.as_deref(), &self.nexus.initiator_name, self.core.take_refusals());
        close
    }

    /// Run a command: answered here and now (returned) when it needs no
    /// waiting — a short READ from the page cache or WRITE into it, see
    /// [`ScsiTarget::try_execute`] — which spares it two thread hand-offs;
    /// otherwise on the I/O pool, its result coming back as [`Done::Task`].
    fn execute(&mut self, task: ScsiTask) -> Option<(TaskId, TaskOutcome)> {
        let (itt, id) = (task.itt, task.id);
        let done = self.done_tx.clone();
        let Some(target) = self.target.clone() else {
            // Discovery sessions carry no SCSI; the state machine rejects
            // commands there, so this is unreachable in practice. Answer
            // rather than hang.
            return Some((id, TaskOutcome { status: 0x02, ..Default::default() }));
        };
        let nexus = self.nexus.clone();
        let cancel = CancelToken::new();
        if task.expected_len <= INLINE_MAX {
            if let Some(r) = target.try_execute(&request(&task, &nexus, &cancel)) {
                return Some((id, outcome(r)));
            }
        }
        let c2 = cancel.clone();
        self.shared.io_pool.spawn(task.expected_len > LONG_TRANSFER, move || {
            let r = target.execute(&request(&task, &nexus, &c2));
            // The data of a write, and with it its share of the write
            // budget, is gone before its response can bring the next write.
            drop(task);
            let _ = done.send(Done::Task(id, outcome(r)));
        });
        self.core.executing(itt, Execution { cancel });
        None
    }

    /// Carry out a task management function at the SCSI level and answer
    /// with [`Done::Tmf`]. The core hands it over once the commands it
    /// aborts have stopped, or `ABORT_WAIT` has passed.
    fn task_management(&mut self, tm: TaskManagement) {
        let done = self.done_tx.clone();
        let target = self.target.clone();
        let nexus = self.nexus.clone();
        let tmf_itt = tm.itt;
        tokio::spawn(async move {
            let resp = match target {
                Some(t) => tokio::task::spawn_blocking(move || tmf_at_scsi_level(&t, &nexus, &tm))
                    .await
                    .unwrap_or(TmfResponse::REJECTED),
                None => TmfResponse::NOT_SUPPORTED,
            };
            let _ = done.send(Done::Tmf(tmf_itt, resp));
        });
    }
}

/// The SCSI request of `task`.
fn request<'a>(task: &'a ScsiTask, nexus: &'a Nexus, cancel: &'a CancelToken) -> Request<'a> {
    Request { nexus, lun: task.lun, cdb: &task.cdb, data_out: &task.data_out, expected_len: task.expected_len, cancel }
}

/// A command's result, as the connection core takes it.
fn outcome(r: oxcopy_scsi::CommandResult) -> TaskOutcome {
    TaskOutcome {
        status: r.status.0,
        sense: r.sense,
        data_in: Bytes::from(r.data_in),
        data_out_wanted: r.data_out_wanted,
    }
}

/// Carry out a task management function at the SCSI level (after the
/// commands it aborts have stopped).
fn tmf_at_scsi_level(target: &ScsiTarget, nexus: &Nexus, tm: &TaskManagement) -> TmfResponse {
    let map = |r: TmfResult| match r {
        TmfResult::Complete => TmfResponse::COMPLETE,
        TmfResult::LunDoesNotExist => TmfResponse::LUN_DOES_NOT_EXIST,
        TmfResult::Rejected => TmfResponse::REJECTED,
    };
    match tm.function {
        TmfFunction::LOGICAL_UNIT_RESET => map(target.lun_reset(nexus, tm.lun)),
        TmfFunction::TARGET_WARM_RESET | TmfFunction::TARGET_COLD_RESET => map(target.target_reset(nexus)),
        TmfFunction::ABORT_TASK_SET | TmfFunction::CLEAR_TASK_SET => {
            if target.lun_visible(nexus, tm.lun) {
                TmfResponse::COMPLETE
            } else {
                TmfResponse::LUN_DOES_NOT_EXIST
            }
        }
        _ => TmfResponse::COMPLETE,
    }
}
