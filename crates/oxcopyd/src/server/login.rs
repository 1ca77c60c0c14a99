//! The login phase and the daemon's login policy: which targets exist and
//! whom their allow-lists admit, CHAP, the session limit
//! (`server.max_sessions`), and slowing down repeated authentication
//! failures. The protocol (negotiation, the login timeout) is
//! `oxcopy_iscsi::login::TargetLogin`'s.

use crate::server::writer::Out;
use crate::server::{wait_until, Shared, TargetEntry, MAX_WRITE_BUFFER, OUR_MAX_RECV_DATA_SEGMENT};
use anyhow::Result;
use bytes::BytesMut;
use oxcopy_iscsi::chap::{TargetChap, TargetChapHandle};
use oxcopy_iscsi::frame::{decode_frame, encode_frame, FrameError, FrameLimits, Pdu};
use oxcopy_iscsi::login::{Authenticator, LoginPolicy, LoginStep, TargetInfo, TargetLogin, TargetLoginConfig};
use oxcopy_iscsi::params::SessionParams;
use oxcopy_iscsi::pdu::{Header, LoginStatus, Stage};
use oxcopy_iscsi::timeout::Timeout;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Bytes of the CHAP challenge the target sends.
const CHAP_CHALLENGE_LEN: usize = 32;

/// A successful login: where the full feature phase starts.
pub(super) struct LoggedIn {
    /// The negotiated parameters.
    pub(super) params: SessionParams,
    /// The next StatSN.
    pub(super) stat_sn: u32,
    /// The CmdSN expected next.
    pub(super) exp_cmd_sn: u32,
    /// The session's place under `server.max_sessions` (normal sessions),
    /// held for as long as this is.
    _slot: Option<SessionSlot>,
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

/// The login phase of a connection accepted at `accepted`: `Ok(None)` when
/// it ends without a session (refused, timed out, or the peer left).
pub(super) async fn login(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    tx: &mpsc::UnboundedSender<Out>,
    shared: &Shared,
    peer: SocketAddr,
    accepted: Instant,
) -> Result<Option<LoggedIn>> {
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
        cmd_window: shared.live().cfg.max_commands_per_session,
    });
    login.start_timer(Duration::from_secs(shared.live().cfg.login_timeout_secs.max(1)), accepted);
    let policy = Policy { shared, chap: parking_lot::Mutex::new(None), normal: parking_lot::Mutex::new(false) };
    loop {
        let read = tokio::select! {
            r = read_pdu(rd, buf, &FrameLimits::LOGIN) => r,
            t = expired(&mut login) => {
                warn!(%peer, "{t}; closing");
                return Ok(None);
            }
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
                if policy.chap.lock().is_some() {
                    shared.auth_failures.clear(peer.ip());
                }
                // A normal session takes its place under `max_sessions` only
                // now: a login still in progress (bounded by the login
                // timeout) holds none.
                let slot = if *policy.normal.lock() {
                    let max = shared.live().cfg.max_sessions as usize;
                    match SessionSlot::try_take(&shared.sessions, max) {
                        Some(slot) => Some(slot),
                        None => {
                            warn!(%peer, initiator = %params.initiator_name, max, "session limit reached; login refused (out of resources)");
                            send_pdu(tx, refusal(response, LoginStatus::OUT_OF_RESOURCES));
                            return Ok(None);
                        }
                    }
                } else {
                    None
                };
                send_pdu(tx, response);
                return Ok(Some(LoggedIn { params, stat_sn, exp_cmd_sn, _slot: slot }));
            }
            LoginStep::Fail { response } => {
                if let Header::LoginResponse(r) = &response.header {
                    info!(status = ?r.status, "login refused");
                    if r.status == LoginStatus::AUTHENTICATION_FAILURE {
                        let reason = policy.chap.lock().as_ref().and_then(|h| h.failure());
                        let why = reason.map_or_else(|| "CHAP required but not done".to_string(), |f| f.to_string());
                        let delay = shared.auth_failures.record(peer.ip());
                        let cap = Duration::from_secs(shared.live().cfg.login_timeout_secs.max(1)) / 2;
                        let delay = delay.min(cap);
                        warn!(%peer, "authentication failed: {why}; answering after {delay:?}");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            t = expired(&mut login) => {
                                warn!(%peer, "{t}; closing");
                                return Ok(None);
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

/// Wait until the login runs out of time (`login_timeout`); why it did.
/// Each round waits for the same deadline, so a second one is never needed
/// in practice (a timer does not fire early).
async fn expired(login: &mut TargetLogin) -> Timeout {
    loop {
        wait_until(login.poll_timeout()).await;
        if let Err(t) = login.handle_timeout(Instant::now()) {
            return t;
        }
    }
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

/// The final Login Response of a login that negotiated to the end but is
/// refused after all (`status`): no transit, no data, the TSIH of the
/// request (none is assigned), the StatSN the success would have used.
fn refusal(response: Pdu, status: LoginStatus) -> Pdu {
    let Header::LoginResponse(mut r) = response.header else { return response };
    r.status = status;
    r.transit = false;
    r.continue_ = false;
    r.nsg = Stage(0);
    r.tsih = 0;
    Pdu::new(Header::LoginResponse(r), bytes::Bytes::new())
}

/// The daemon's login policy for one login; remembers the CHAP exchange it
/// handed out, so that a failure can be logged with its reason and
/// accounted per address, and whether the login is for a normal session
/// (one that needs a place under `max_sessions` when it completes).
struct Policy<'a> {
    shared: &'a Shared,
    chap: parking_lot::Mutex<Option<TargetChapHandle>>,
    normal: parking_lot::Mutex<bool>,
}

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
pub(super) struct AuthFailures(parking_lot::Mutex<HashMap<IpAddr, (u32, Instant)>>);

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
        let live = self.shared.live();
        let Some(t) = live.targets.get(target_name) else {
            return Err(LoginStatus::NOT_FOUND);
        };
        if !t.admits(initiator_name) {
            return Err(LoginStatus::AUTHORIZATION_FAILURE);
        }
        // Refused early when the limit is already reached; the place itself
        // is only taken when the login completes (see `login`).
        let max = live.cfg.max_sessions as usize;
        if self.shared.sessions.load(Ordering::Acquire) >= max {
            warn!(initiator = initiator_name, max, "session limit reached; login refused (out of resources)");
            return Err(LoginStatus::OUT_OF_RESOURCES);
        }
        *self.normal.lock() = true;
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
        let chap = self.shared.live().targets.get(target_name?)?.chap.clone()?;
        let mut challenge = vec![0u8; CHAP_CHALLENGE_LEN];
        let mut id = [0u8; 1];
        rand::rngs::OsRng.fill_bytes(&mut challenge);
        rand::rngs::OsRng.fill_bytes(&mut id);
        let (auth, handle) = TargetChap::new(chap, id[0], challenge);
        *self.chap.lock() = Some(handle);
        Some(Box::new(auth))
    }
}

/// The SendTargets answer for `initiator`: the targets whose allow-list
/// admits it, at the portal it connected to.
pub(super) fn send_targets_text(shared: &Shared, initiator: &str, local: SocketAddr) -> Vec<u8> {
    let live = shared.live();
    let mut names: Vec<(&String, &TargetEntry)> = live.targets.iter().collect();
    names.sort_by_key(|(n, _)| *n);
    let mut out = Vec::new();
    for (name, t) in names {
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
