//! The tokio driver: listeners, one task per connection, the login and
//! full-feature state machines of `oxcopy-iscsi`, and SCSI execution on the
//! blocking pool.

use crate::config::Config;
use crate::identity::{serial_from_naa, Identities};
use anyhow::{Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use oxcopy_iscsi::chap::{TargetChap, TargetChapConfig, TargetChapHandle};
use oxcopy_iscsi::frame::{decode_frame, encode_frame, EncodedPdu, FrameError, FrameLimits, Pdu};
use oxcopy_iscsi::login::{Authenticator, LoginPolicy, LoginStep, TargetInfo, TargetLogin, TargetLoginConfig};
use oxcopy_iscsi::params::{SessionParams, SessionType};
use oxcopy_iscsi::pdu::{Header, LoginStatus, RejectReason, TmfFunction, TmfResponse, BHS_LEN};
use oxcopy_iscsi::target::{Action, TargetConnConfig, TargetConnection, TaskManagement, TaskOutcome};
use oxcopy_iscsi::timeout::ConnTimeouts;
use oxcopy_scsi::{
    AccessList, CancelToken, LogicalUnit, LuConfig, LuRegistry, Metrics, Nexus, Request, ScsiTarget, TmfResult,
};
use oxcopy_storage::{FileStorage, OpenOptions, Storage};
use std::collections::HashMap;
use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

mod pool;
use pool::IoPool;

/// MaxRecvDataSegmentLength we declare: the largest data segment we accept.
pub const OUR_MAX_RECV_DATA_SEGMENT: u32 = 256 * 1024;
/// Largest write we buffer for one command (matches the Block Limits VPD
/// MAXIMUM TRANSFER LENGTH of 16 MiB, plus room for parameter lists).
pub const MAX_WRITE_BUFFER: u32 = 16 * 1024 * 1024;
/// How long shutdown waits for in-flight commands before abandoning them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Threads executing SCSI commands at most (commands beyond that queue).
const IO_THREADS: usize = 64;
/// Commands moving more bytes than this get an I/O thread of their own
/// (see `pool`); shorter ones are cheaper to run on an already awake one.
const LONG_TRANSFER: u32 = 64 * 1024;
/// Bytes of the CHAP challenge the target sends.
const CHAP_CHALLENGE_LEN: usize = 32;
/// An I/O thread idle this long exits.
const IO_THREAD_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// A target as the daemon serves it.
struct TargetEntry {
    scsi: Arc<ScsiTarget>,
    alias: Option<String>,
    initiators: Option<Vec<String>>,
    tpgt: u16,
    /// CHAP required for normal sessions (`[target.chap]`).
    chap: Option<TargetChapConfig>,
}

impl TargetEntry {
    fn admits(&self, initiator: &str) -> bool {
        self.initiators.as_ref().is_none_or(|list| list.iter().any(|i| i.eq_ignore_ascii_case(initiator)))
    }
}

/// State shared by every connection.
struct Shared {
    targets: HashMap<String, TargetEntry>,
    luns: Vec<Arc<LogicalUnit>>,
    cfg: Config,
    next_tsih: AtomicU16,
    next_stat_sn: AtomicU64,
    /// Where SCSI commands run.
    io_pool: IoPool,
    /// Recent CHAP failures per source address (slows down guessing).
    auth_failures: AuthFailures,
    /// Normal sessions logged in or logging in (`server.max_sessions`).
    sessions: Arc<AtomicUsize>,
    /// Write data buffered daemon-wide (`server.write_buffer_limit`).
    write_budget: Arc<oxcopy_iscsi::budget::WriteBudget>,
}

/// One of `server.max_sessions`; given back on drop.
struct SessionSlot(Arc<AtomicUsize>);

impl SessionSlot {
    fn try_take(count: &Arc<AtomicUsize>, max: usize) -> Option<SessionSlot> {
        count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        Some(SessionSlot(count.clone()))
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shared {
    fn tsih(&self) -> u16 {
        loop {
            let t = self.next_tsih.fetch_add(1, Ordering::Relaxed);
            if t != 0 {
                return t;
            }
        }
    }
}

/// A running daemon (for the binary and for in-process tests).
pub struct Running {
    /// The addresses actually bound (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
    /// Where `GET /metrics` is served (port 0 resolved), when configured.
    pub metrics_addr: Option<SocketAddr>,
    /// The daemon-wide LU registry (copy records, metrics).
    pub registry: Arc<LuRegistry>,
    shutdown: watch::Sender<bool>,
    join: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
}

impl Running {
    /// The iSCSI URLs of every LUN (libiscsi convention).
    pub fn urls(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Some(addr) = self.addrs.first() else { return out };
        for t in &self.shared.cfg.targets {
            for l in &t.luns {
                out.push(format!("iscsi://{addr}/{}/{}", t.iqn, l.id));
            }
        }
        out
    }

    /// Graceful shutdown: stop accepting, let connections finish their
    /// in-flight commands (bounded), flush every LUN.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        let _ = self.join.await;
        // Background (IMMED) copies outlive their commands: stop them, and
        // wait (bounded) until none still writes, before the final flush.
        let copies = self.registry.copy_manager();
        if copies.cancel_all() > 0 {
            let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
            while copies.running_total() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let luns = self.shared.luns.clone();
        tokio::task::spawn_blocking(move || {
            for lu in luns {
                if let Err(e) = lu.flush() {
                    warn!("flush at shutdown failed: {e}");
                }
            }
        })
        .await?;
        Ok(())
    }
}

/// Open every LUN (creating missing files), bind every portal and start
/// serving.
pub async fn start(cfg: Config) -> Result<Running> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    // The copy-domain key authenticates ROD tokens: created (0600) at first
    // start, refused if unreadable, mis-sized or group/other-accessible.
    let key_file = crate::copy_domain::KeyFile::resolve(&cfg.data_dir, cfg.copy_domain.key_file.as_deref());
    let copy_domain_key = oxcopy_scsi::copy::token::KeySource::load_or_create(&key_file)?;
    debug!(path = %key_file.path().display(), key = ?copy_domain_key, "copy-domain key ready");
    crate::odx::remove_stale_temporaries(&cfg);
    let mut ids = Identities::load(&cfg.data_dir)?;
    let mut targets = HashMap::new();
    let mut all_luns = Vec::new();
    let metrics = Metrics::new();
    let registry = Arc::new(LuRegistry::with_metrics(metrics.clone()));
    for t in &cfg.targets {
        let mut luns = Vec::new();
        for l in &t.luns {
            if let Some(dir) = l.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            let storage = FileStorage::open(&l.path, &OpenOptions { create_size: l.size, read_only: l.read_only })
                .with_context(|| format!("opening LUN {} of {} at {}", l.id, t.iqn, l.path.display()))?;
            let naa = ids.naa(&t.iqn, l.id);
            let lu = Arc::new(LogicalUnit::new(
                LuConfig {
                    block_size: l.block_size,
                    read_only: l.read_only,
                    serial: serial_from_naa(&naa),
                    naa,
                    vendor: "OXCOPY".into(),
                    product: "oxcopy disk".into(),
                    revision: "0001".into(),
                },
                Arc::new(storage) as Arc<dyn Storage>,
            ));
            lu.set_third_party_copy(l.third_party_copy);
            crate::pr_store::attach(&lu, &cfg.data_dir, &t.iqn, l.id)?;
            all_luns.push(lu.clone());
            luns.push((l.id, lu));
        }
        registry.add_target(&t.iqn, AccessList::from_config(t.initiators.as_deref()), luns)?;
        for l in t.luns.iter().filter(|l| l.initiators.is_some()) {
            registry.set_lun_access(&t.iqn, l.id, AccessList::from_config(l.initiators.as_deref()));
        }
        let scsi = Arc::new(ScsiTarget::in_registry(&t.iqn, 1, registry.clone()));
        targets.insert(
            t.iqn.clone(),
            TargetEntry {
                scsi,
                alias: t.alias.clone(),
                initiators: t.initiators.clone(),
                tpgt: 1,
                chap: t.chap.clone(),
            },
        );
    }
    // Token copy: tokens name this data directory's copy manager and a
    // per-start generation, and are authenticated by the domain key.
    let manager_id = ids.copy_manager_id();
    ids.save()?;
    registry.set_rod(Arc::new(crate::odx::rod_manager(&cfg.copy_domain, copy_domain_key, manager_id, metrics.clone())));
    registry.copy_manager().set_max_concurrent(cfg.max_concurrent_copies);

    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for a in &cfg.listen {
        let l = TcpListener::bind(a).await.with_context(|| format!("binding {a}"))?;
        addrs.push(l.local_addr()?);
        listeners.push(l);
    }
    let cfg_metrics = cfg.metrics;
    let write_limit = cfg.write_buffer_limit;
    let shared = Arc::new(Shared {
        targets,
        luns: all_luns,
        cfg,
        next_tsih: AtomicU16::new(1),
        next_stat_sn: AtomicU64::new(0x1000),
        io_pool: IoPool::new(IO_THREADS, IO_THREAD_KEEP_ALIVE),
        auth_failures: AuthFailures::default(),
        sessions: Arc::new(AtomicUsize::new(0)),
        write_budget: oxcopy_iscsi::budget::WriteBudget::new(write_limit),
    });
    let (tx, rx) = watch::channel(false);
    let metrics_addr = match cfg_metrics {
        Some(addr) => {
            let listener = crate::metrics_http::bind(addr).await?;
            let bound = listener.local_addr()?;
            let mut prom = prometheus_client::registry::Registry::default();
            metrics.register(&mut prom);
            tokio::spawn(crate::metrics_http::serve(listener, Arc::new(prom), rx.clone()));
            Some(bound)
        }
        None => None,
    };
    tokio::spawn(crate::odx::reap_periodically(registry.clone(), rx.clone()));
    let join = tokio::spawn(accept_all(listeners, shared.clone(), rx));
    Ok(Running { addrs, metrics_addr, registry, shutdown: tx, join, shared })
}

async fn accept_all(listeners: Vec<TcpListener>, shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    let mut accepts = JoinSet::new();
    let (conn_tx, mut conn_rx) = mpsc::channel::<(TcpStream, SocketAddr)>(64);
    for l in listeners {
        let tx = conn_tx.clone();
        let mut sd = shutdown.clone();
        accepts.spawn(async move {
            loop {
                tokio::select! {
                    r = l.accept() => match r {
                        Ok(c) => { if tx.send(c).await.is_err() { return; } }
                        Err(e) => { warn!("accept: {e}"); tokio::time::sleep(Duration::from_millis(50)).await; }
                    },
                    _ = async { let _ = sd.wait_for(|v| *v).await; } => return,
                }
            }
        });
    }
    drop(conn_tx);
    let mut sd = shutdown.clone();
    loop {
        tokio::select! {
            c = conn_rx.recv() => match c {
                Some((stream, peer)) => {
                    let shared = shared.clone();
                    let sd = shutdown.clone();
                    conns.spawn(async move { serve_connection(stream, peer, shared, sd).await });
                }
                None => break,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = async { let _ = sd.wait_for(|v| *v).await; } => break,
        }
    }
    accepts.abort_all();
    // Connections see the same shutdown signal; wait for them (each bounds
    // its own grace period).
    let all = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(2), all).await.is_err() {
        warn!("connections still open after the shutdown grace period; abandoning them");
        conns.abort_all();
    }
}

/// What the writer task sends.
enum Out {
    Pdu(EncodedPdu),
    Close,
}

/// Write PDUs with vectored I/O, batching whatever is queued.
/// A peer that accepts no bytes for `stall` is given up on (the connection
/// closes), so that responses cannot pile up behind it. This one timer stays
/// here rather than in the protocol core: only the pending write itself can
/// see that the socket accepts nothing, and the writer runs apart from the
/// connection task precisely so that reading never waits on it.
async fn writer(mut w: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Out>, stall: Duration) {
    let mut bufs: Vec<Bytes> = Vec::with_capacity(192);
    'outer: while let Some(first) = rx.recv().await {
        let mut close = false;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Out::Pdu(p) => {
                    for b in [p.head, p.data, p.tail] {
                        if !b.is_empty() {
                            bufs.push(b);
                        }
                    }
                }
                Out::Close => {
                    close = true;
                    break;
                }
            }
            if bufs.len() < 180 {
                next = rx.try_recv().ok();
            }
        }
        if let Err(e) = write_all_vectored(&mut w, &mut bufs, stall).await {
            debug!("write failed: {e}");
            break 'outer;
        }
        if close {
            break;
        }
    }
    let _ = w.shutdown().await;
}

async fn write_all_vectored(w: &mut OwnedWriteHalf, bufs: &mut Vec<Bytes>, stall: Duration) -> std::io::Result<()> {
    let mut idx = 0;
    while idx < bufs.len() {
        let slices: Vec<IoSlice<'_>> = bufs[idx..].iter().take(64).map(|b| IoSlice::new(b)).collect();
        let mut n = tokio::time::timeout(stall, w.write_vectored(&slices))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "peer accepts no data"))??;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && idx < bufs.len() {
            let len = bufs[idx].len();
            if n >= len {
                n -= len;
                idx += 1;
            } else {
                bufs[idx].advance(n);
                n = 0;
            }
        }
    }
    bufs.clear();
    Ok(())
}

/// Read until one PDU is framed. `Ok(None)` on a clean EOF.
async fn read_pdu(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    limits: &FrameLimits,
) -> std::result::Result<Option<Pdu>, ReadError> {
    loop {
        match decode_frame(buf, limits) {
            Ok(Some(p)) => return Ok(Some(p)),
            Ok(None) => {}
            Err(e) => return Err(ReadError::Frame(e)),
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        let n = rd.read_buf(buf).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Ok(None);
        }
    }
}

#[derive(Debug)]
enum ReadError {
    Io(std::io::Error),
    Frame(FrameError),
}

/// The daemon's login policy; remembers the CHAP exchange it handed out so
/// a failure can be logged with its reason and accounted per address.
struct Policy<'a>(&'a Shared, parking_lot::Mutex<Option<TargetChapHandle>>, parking_lot::Mutex<Option<SessionSlot>>);

/// Longest delay before answering a failed CHAP login.
const MAX_AUTH_DELAY: Duration = Duration::from_secs(5);
/// A source address's failure count is forgotten after this long without one.
const AUTH_FAILURE_MEMORY: Duration = Duration::from_secs(600);
/// Addresses tracked at most (bounds memory under a distributed attack).
const AUTH_FAILURE_SLOTS: usize = 4096;

/// Consecutive CHAP failures per source address. Each failure after the
/// first delays its Login Response (200 ms, doubling, at most
/// [`MAX_AUTH_DELAY`]); only that connection waits, never other logins.
#[derive(Default)]
struct AuthFailures(parking_lot::Mutex<HashMap<IpAddr, (u32, Instant)>>);

impl AuthFailures {
    /// Record a failure from `ip`; returns how long to delay the response.
    fn record(&self, ip: IpAddr) -> Duration {
        let now = Instant::now();
        let mut m = self.0.lock();
        if m.len() >= AUTH_FAILURE_SLOTS && !m.contains_key(&ip) {
            m.retain(|_, (_, at)| now.duration_since(*at) < AUTH_FAILURE_MEMORY);
            if m.len() >= AUTH_FAILURE_SLOTS {
                // Still full: treat every untracked address as suspect.
                return MAX_AUTH_DELAY;
            }
        }
        let e = m.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) >= AUTH_FAILURE_MEMORY {
            e.0 = 0;
        }
        e.0 = e.0.saturating_add(1);
        e.1 = now;
        auth_delay(e.0)
    }

    /// A successful CHAP login from `ip` clears its count.
    fn clear(&self, ip: IpAddr) {
        self.0.lock().remove(&ip);
    }
}

/// The delay for the `n`th consecutive failure (1-based).
fn auth_delay(n: u32) -> Duration {
    if n <= 1 {
        return Duration::ZERO;
    }
    let ms = 200u64.saturating_mul(1u64 << (n - 2).min(16));
    Duration::from_millis(ms).min(MAX_AUTH_DELAY)
}

impl LoginPolicy for Policy<'_> {
    fn check_target(&self, target_name: &str, initiator_name: &str) -> std::result::Result<TargetInfo, LoginStatus> {
        let Some(t) = self.0.targets.get(target_name) else {
            return Err(LoginStatus::NOT_FOUND);
        };
        if !t.admits(initiator_name) {
            return Err(LoginStatus::AUTHORIZATION_FAILURE);
        }
        let max = self.0.cfg.max_sessions as usize;
        let Some(slot) = SessionSlot::try_take(&self.0.sessions, max) else {
            warn!(initiator = initiator_name, max, "session limit reached; login refused (out of resources)");
            return Err(LoginStatus::OUT_OF_RESOURCES);
        };
        *self.2.lock() = Some(slot);
        Ok(TargetInfo { tpgt: t.tpgt, alias: t.alias.clone() })
    }

    fn discovery_allowed(&self, _initiator_name: &str) -> bool {
        true
    }

    /// CHAP for normal sessions to a target with `[target.chap]`; discovery
    /// sessions are not authenticated (SendTargets only lists targets the
    /// initiator is admitted to).
    fn authenticator(&self, _initiator_name: &str, target_name: Option<&str>) -> Option<Box<dyn Authenticator>> {
        use rand::RngCore;
        let chap = self.0.targets.get(target_name?)?.chap.clone()?;
        let mut challenge = vec![0u8; CHAP_CHALLENGE_LEN];
        let mut id = [0u8; 1];
        rand::rngs::OsRng.fill_bytes(&mut challenge);
        rand::rngs::OsRng.fill_bytes(&mut id);
        let (auth, handle) = TargetChap::new(chap, id[0], challenge);
        *self.1.lock() = Some(handle);
        Some(Box::new(auth))
    }
}

fn send_targets_text(shared: &Shared, initiator: &str, local: SocketAddr) -> Vec<u8> {
    let mut names: Vec<&String> = shared.targets.keys().collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let t = &shared.targets[name];
        if !t.admits(initiator) {
            continue;
        }
        let addr = match local {
            SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        out.extend_from_slice(format!("TargetName={name}\0TargetAddress={addr},{}\0", t.tpgt).as_bytes());
    }
    out
}

fn send_pdu(tx: &mpsc::UnboundedSender<Out>, pdu: Pdu) {
    let _ = tx.send(Out::Pdu(encode_frame(&pdu.header, &pdu.ahs, pdu.data, false, false)));
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(writer(wr, rx, Duration::from_secs(shared.cfg.pdu_timeout_secs.max(1))));
    let mut buf = BytesMut::with_capacity(64 * 1024);

    let login = do_login(&mut rd, &mut buf, &tx, &shared, peer, Instant::now());
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
    if let Some((params, stat_sn, exp_cmd_sn, _session_slot)) = outcome {
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
        full_feature(rd, buf, &tx, &shared, params, stat_sn, exp_cmd_sn, local, shutdown).await;
    }
    let _ = tx.send(Out::Close);
    drop(tx);
    let _ = writer.await;
}

/// Wait until `at`; forever when `None`.
async fn wait_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn do_login(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    tx: &mpsc::UnboundedSender<Out>,
    shared: &Shared,
    peer: SocketAddr,
    accepted: Instant,
) -> Result<Option<(SessionParams, u32, u32, Option<SessionSlot>)>> {
    let mut login = TargetLogin::new(TargetLoginConfig {
        max_recv_data_segment_length: OUR_MAX_RECV_DATA_SEGMENT,
        max_burst_length: MAX_WRITE_BUFFER,
        first_burst_length: 256 * 1024,
        max_outstanding_r2t: 8,
        immediate_data: true,
        initial_r2t: false,
        header_digest: oxcopy_iscsi::login::DigestPolicy::PreferNone,
        data_digest: oxcopy_iscsi::login::DigestPolicy::PreferNone,
        initial_stat_sn: (shared.next_stat_sn.fetch_add(0x10000, Ordering::Relaxed) & 0xffff_ffff) as u32,
        tsih: shared.tsih(),
        cmd_window: shared.cfg.max_commands_per_session,
    });
    login.start_timer(Duration::from_secs(shared.cfg.login_timeout_secs.max(1)), accepted);
    let policy = Policy(shared, parking_lot::Mutex::new(None), parking_lot::Mutex::new(None));
    loop {
        let read = tokio::select! {
            r = read_pdu(rd, buf, &FrameLimits::LOGIN) => r,
            _ = wait_until(login.poll_timeout()) => match login.handle_timeout(Instant::now()) {
                Ok(()) => continue,
                Err(t) => {
                    warn!(%peer, "{t}; closing");
                    return Ok(None);
                }
            },
        };
        let pdu = match read {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(None),
            Err(ReadError::Io(e)) => return Err(e.into()),
            Err(ReadError::Frame(e)) => anyhow::bail!("framing during login: {e}"),
        };
        match login.on_pdu(&pdu, &policy) {
            LoginStep::Respond(p) => send_pdu(tx, p),
            LoginStep::Complete { response, params } => {
                let (stat_sn, exp_cmd_sn) = match &response.header {
                    Header::LoginResponse(r) => (r.stat_sn.wrapping_add(1), r.exp_cmd_sn),
                    _ => anyhow::bail!("login produced a non-login response"),
                };
                if policy.1.lock().is_some() {
                    shared.auth_failures.clear(peer.ip());
                }
                send_pdu(tx, response);
                let slot = policy.2.lock().take();
                return Ok(Some((params, stat_sn, exp_cmd_sn, slot)));
            }
            LoginStep::Fail { response } => {
                if let Header::LoginResponse(r) = &response.header {
                    info!(status = ?r.status, "login refused");
                    if r.status == LoginStatus::AUTHENTICATION_FAILURE {
                        let reason = policy.1.lock().as_ref().and_then(|h| h.failure());
                        let why = reason.map_or_else(|| "CHAP required but not done".to_string(), |f| f.to_string());
                        let delay = shared.auth_failures.record(peer.ip());
                        let cap = Duration::from_secs(shared.cfg.login_timeout_secs.max(1)) / 2;
                        let delay = delay.min(cap);
                        warn!(%peer, "authentication failed: {why}; answering after {delay:?}");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = wait_until(login.poll_timeout()) => {
                                if let Err(t) = login.handle_timeout(Instant::now()) {
                                    warn!(%peer, "{t}; closing");
                                    return Ok(None);
                                }
                            }
                        }
                    }
                }
                send_pdu(tx, response);
                return Ok(None);
            }
        }
    }
}

/// Results coming back to the connection task.
enum Done {
    Task(u32, TaskOutcome),
    Tmf(u32, TmfResponse),
}

struct Running1 {
    cancel: CancelToken,
    /// Resolves (with an error: the sender is dropped) once the command has
    /// stopped running.
    finished: Option<oneshot::Receiver<()>>,
}

#[allow(clippy::too_many_arguments)]
async fn full_feature(
    mut rd: OwnedReadHalf,
    mut buf: BytesMut,
    tx: &mpsc::UnboundedSender<Out>,
    shared: &Arc<Shared>,
    params: SessionParams,
    stat_sn: u32,
    exp_cmd_sn: u32,
    local: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let target = match (&params.session_type, params.target_name.as_ref()) {
        (SessionType::Normal, Some(name)) => shared.targets.get(name).map(|t| t.scsi.clone()),
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
        cmd_window: shared.cfg.max_commands_per_session,
        max_write_buffer: MAX_WRITE_BUFFER,
        send_targets: send_targets_text(shared, &params.initiator_name, local),
    };
    let mut conn = TargetConnection::new(params, conn_cfg, stat_sn, exp_cmd_sn);
    conn.set_write_budget(shared.write_budget.clone());
    let nop_interval = Some(Duration::from_secs(shared.cfg.nop_interval_secs)).filter(|d| !d.is_zero());
    let pdu_timeout = Duration::from_secs(shared.cfg.pdu_timeout_secs.max(1));
    conn.start_timers(ConnTimeouts { nop_interval, pdu_timeout }, Instant::now());
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut running: HashMap<u32, Running1> = HashMap::new();
    let mut closing = false;

    loop {
        let wake = conn.poll_timeout();
        tokio::select! {
            r = rd.read_buf(&mut buf) => {
                match r {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let now = Instant::now();
                loop {
                    let actions = match decode_frame(&mut buf, &limits) {
                        Ok(Some(pdu)) => conn.on_pdu(pdu),
                        Ok(None) => break,
                        Err(FrameError::DataDigest { bhs }) => conn.on_data_digest_error(&bhs),
                        Err(FrameError::DataSegmentTooLong { bhs, len, max }) => {
                            warn!(len, max, "data segment longer than negotiated; rejecting and closing");
                            send_reject(tx, &conn, RejectReason::PROTOCOL_ERROR, &bhs);
                            closing = true;
                            break;
                        }
                        Err(FrameError::HeaderDigest) => {
                            warn!("header digest error; closing the connection");
                            closing = true;
                            break;
                        }
                    };
                    closing |= apply(actions, tx, &target, &nexus, &done_tx, &mut running, &shared.io_pool);
                    if closing { break; }
                }
                conn.bytes_received(now, buf.len());
                if buf.capacity() - buf.len() < 4096 {
                    buf.reserve(64 * 1024);
                }
            }
            Some(done) = done_rx.recv() => {
                let actions = match done {
                    Done::Task(itt, outcome) => {
                        running.remove(&itt);
                        conn.complete(itt, outcome)
                    }
                    Done::Tmf(itt, resp) => conn.tmf_done(itt, resp),
                };
                closing |= apply(actions, tx, &target, &nexus, &done_tx, &mut running, &shared.io_pool);
            }
            _ = wait_until(wake) => match conn.handle_timeout(Instant::now()) {
                Ok(actions) => {
                    closing |= apply(actions, tx, &target, &nexus, &done_tx, &mut running, &shared.io_pool);
                }
                Err(t) => {
                    warn!(initiator = %nexus.initiator_name, "{t}; closing the connection");
                    break;
                }
            },
            _ = async { let _ = shutdown.wait_for(|v| *v).await; } => {
                // Stop taking commands; finish what is in flight (bounded).
                let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
                while !running.is_empty() {
                    match tokio::time::timeout_at(deadline, done_rx.recv()).await {
                        Ok(Some(Done::Task(itt, outcome))) => {
                            running.remove(&itt);
                            let a = conn.complete(itt, outcome);
                            apply(a, tx, &target, &nexus, &done_tx, &mut running, &shared.io_pool);
                        }
                        Ok(Some(Done::Tmf(itt, resp))) => {
                            let a = conn.tmf_done(itt, resp);
                            apply(a, tx, &target, &nexus, &done_tx, &mut running, &shared.io_pool);
                        }
                        Ok(None) | Err(_) => {
                            for r in running.values() { r.cancel.cancel(); }
                            running.clear();
                        }
                    }
                }
                break;
            }
        }
        if closing {
            break;
        }
    }
    // Connection gone: cancel whatever still runs; their results are dropped.
    for r in running.values() {
        r.cancel.cancel();
    }
    // The I_T nexus ends with the session (single connection per session):
    // drop its per-LU state (unit attention queues).
    if let Some(t) = target {
        let n = nexus.clone();
        let _ = tokio::task::spawn_blocking(move || t.nexus_lost(&n)).await;
    }
}

fn send_reject(tx: &mpsc::UnboundedSender<Out>, conn: &TargetConnection, reason: RejectReason, bhs: &[u8; BHS_LEN]) {
    let h = Header::Reject(oxcopy_iscsi::pdu::Reject {
        reason,
        stat_sn: conn.stat_sn(),
        exp_cmd_sn: conn.exp_cmd_sn(),
        max_cmd_sn: conn.max_cmd_sn(),
        data_sn: 0,
    });
    let p = conn.params();
    let _ = tx.send(Out::Pdu(encode_frame(&h, &[], Bytes::copy_from_slice(bhs), p.header_digest, p.data_digest)));
}

/// Carry out actions; returns true when the connection must close.
fn apply(
    actions: Vec<Action>,
    tx: &mpsc::UnboundedSender<Out>,
    target: &Option<Arc<ScsiTarget>>,
    nexus: &Arc<Nexus>,
    done_tx: &mpsc::UnboundedSender<Done>,
    running: &mut HashMap<u32, Running1>,
    pool: &IoPool,
) -> bool {
    let mut close = false;
    for a in actions {
        match a {
            Action::Send(p) => {
                let _ = tx.send(Out::Pdu(p));
            }
            Action::Execute(task) => {
                let itt = task.itt;
                let cancel = CancelToken::new();
                let done = done_tx.clone();
                let Some(target) = target.clone() else {
                    // Discovery sessions carry no SCSI; the state machine
                    // rejects commands there, so this is unreachable in
                    // practice. Answer rather than hang.
                    let _ = done.send(Done::Task(itt, TaskOutcome { status: 0x02, ..Default::default() }));
                    continue;
                };
                let nexus = nexus.clone();
                let c2 = cancel.clone();
                let (finished_tx, finished) = oneshot::channel::<()>();
                pool.spawn(task.expected_len > LONG_TRANSFER, move || {
                    let _finished = finished_tx;
                    let req = Request {
                        nexus: &nexus,
                        lun: task.lun,
                        cdb: &task.cdb,
                        data_out: &task.data_out,
                        expected_len: task.expected_len,
                        cancel: &c2,
                    };
                    let r = target.execute(&req);
                    let outcome = TaskOutcome {
                        status: r.status.0,
                        sense: r.sense,
                        data_in: Bytes::from(r.data_in),
                        data_out_wanted: r.data_out_wanted,
                    };
                    let _ = done.send(Done::Task(itt, outcome));
                });
                running.insert(itt, Running1 { cancel, finished: Some(finished) });
            }
            Action::Cancel(itts) => {
                for itt in itts {
                    if let Some(r) = running.get(&itt) {
                        r.cancel.cancel();
                    }
                }
            }
            Action::TaskManagement(tm) => {
                let handles: Vec<_> =
                    tm.aborted.iter().filter_map(|itt| running.get_mut(itt).and_then(|r| r.finished.take())).collect();
                let done = done_tx.clone();
                let target = target.clone();
                let nexus = nexus.clone();
                let tmf_itt = tm.itt;
                tokio::spawn(async move {
                    // The aborted commands must be over before we say so.
                    let wait = async {
                        for h in handles {
                            let _ = h.await;
                        }
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(30), wait).await;
                    let resp = match target {
                        Some(t) => tokio::task::spawn_blocking(move || tmf_at_scsi_level(&t, &nexus, &tm))
                            .await
                            .unwrap_or(TmfResponse::REJECTED),
                        None => TmfResponse::NOT_SUPPORTED,
                    };
                    let _ = done.send(Done::Tmf(tmf_itt, resp));
                });
            }
            Action::Close => close = true,
        }
    }
    close
}

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
