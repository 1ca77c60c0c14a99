//! The node-link server: other nodes of the domain open this node's
//! tokens and read their RODs (`docs/node-link.md`).
//!
//! Each accepted connection runs on a thread of its own with blocking
//! socket I/O and timeouts: [`HANDSHAKE_TIMEOUT`] for the whole
//! handshake, [`IDLE_TIMEOUT`] between requests, [`WRITE_TIMEOUT`] for a
//! peer that stops reading. At most [`MAX_LINKS`] at once; beyond, ERROR
//! BUSY. A peer that fails authentication gets ERROR AUTH_FAILED and
//! nothing else, and is logged; a malformed frame gets ERROR PROTOCOL and
//! the connection is closed. A served token is held (it cannot expire
//! here) until the link closes; ROD bytes are read exactly as a local copy
//! reads them ([`oxcopy_copy::RodSource::read_rod`]: under the source's
//! range locks, after checking the token still holds), one DATA frame at a
//! time, so memory per link is one frame and TCP flow control paces us.
//! A token with a reflink snapshot is sent by the kernel straight from the
//! snapshot file (`sendfile`: no lock needed, the file never changes, no
//! user-space copy; such frames carry no CRC); others go through a buffer
//! and carry a CRC32C when `link_data_digest` asks for it.

use super::wire::{self, RecvError};
use super::{LinkMetrics, NodeDomain, HANDSHAKE_TIMEOUT};
use oxcopy_copy::{CopyError, HeldToken};
use oxcopy_link::{
    data_prefix, data_prefix_unchecked, ErrorCode, LinkError, Message, OpenedInfo, ServerHandshake, MAX_DATA,
};
use oxcopy_scsi::LuRegistry;
use parking_lot::Mutex;
use rand::RngCore;
use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Link connections served at once at most.
pub const MAX_LINKS: usize = 64;
/// Between two requests of a peer at most.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// A peer that stops reading is dropped after this.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// DATA frames read ahead of the socket per link (1 MiB each).
pub const BUFFERS: usize = 3;

/// Paces what this node serves to `link_max_bytes_per_second`, across all links.
#[derive(Debug)]
struct Pacer {
    rate: u64,
    next: Mutex<Instant>,
}

impl Pacer {
    /// Wait for the slot of `bytes` (bounded sleeps; returns early on stop).
    fn wait(&self, bytes: u64, stop: &dyn Fn() -> bool) {
        let slot = {
            let mut next = self.next.lock();
            let start = (*next).max(Instant::now());
            *next = start + Duration::from_secs_f64(bytes as f64 / self.rate as f64);
            start
        };
        while !stop() {
            let now = Instant::now();
            if now >= slot {
                return;
            }
            std::thread::sleep((slot - now).min(Duration::from_millis(100)));
        }
    }
}

/// The server state.
pub struct Server {
    domain: Arc<NodeDomain>,
    registry: Arc<LuRegistry>,
    active: AtomicUsize,
    next_conn: AtomicU64,
    conns: Mutex<HashMap<u64, TcpStream>>,
    pacer: Option<Pacer>,
    digest: bool,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("active", &self.active).finish_non_exhaustive()
    }
}

/// Why a served link ended.
enum End {
    /// The peer closed, or asked nothing more.
    Closed,
    /// Ended with an ERROR frame of this code (sent).
    Error(ErrorCode),
    /// The socket failed.
    Io,
}

impl Server {
    /// A server for `domain`'s node, serving the tokens of `registry`.
    pub fn new(domain: Arc<NodeDomain>, registry: Arc<LuRegistry>) -> Arc<Server> {
        let pacer =
            domain.config().link_max_bytes_per_second.map(|rate| Pacer { rate, next: Mutex::new(Instant::now()) });
        let digest = domain.config().link_data_digest;
        Arc::new(Server {
            domain,
            registry,
            active: AtomicUsize::new(0),
            next_conn: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            pacer,
            digest,
        })
    }

    fn metrics(&self) -> &LinkMetrics {
        &self.domain.metrics
    }

    /// Accept links until `shutdown`, each on a thread of its own; then
    /// close every link still open.
    pub async fn accept_loop(self: Arc<Self>, listener: tokio::net::TcpListener, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((stream, peer)) => self.clone().start(stream, peer),
                    Err(e) => {
                        tracing::warn!(error = %e, "node link: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = async { let _ = shutdown.wait_for(|v| *v).await; } => break,
            }
        }
        self.domain.stop();
        for (_, s) in self.conns.lock().drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn start(self: Arc<Self>, stream: tokio::net::TcpStream, peer: SocketAddr) {
        let s = match stream.into_std().and_then(|s| s.set_nonblocking(false).map(|()| s)) {
            Ok(s) => s,
            Err(e) => return tracing::warn!(%peer, error = %e, "node link: cannot take the connection"),
        };
        if self.active.fetch_add(1, Ordering::AcqRel) >= MAX_LINKS {
            self.active.fetch_sub(1, Ordering::AcqRel);
            let mut s = s;
            let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
            wire::send_error(&mut s, ErrorCode::BUSY, "too many node links");
            LinkMetrics::inc(&self.metrics().sessions, "busy");
            return tracing::warn!(%peer, "node link refused: {MAX_LINKS} links already open");
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new().name("oxcopy-link".into()).spawn(move || {
            let id = me.next_conn.fetch_add(1, Ordering::Relaxed);
            if let Ok(c) = s.try_clone() {
                me.conns.lock().insert(id, c);
            }
            let end = me.serve(s, peer);
            me.conns.lock().remove(&id);
            me.active.fetch_sub(1, Ordering::AcqRel);
            let label = match end {
                End::Closed => "ok",
                End::Error(ErrorCode::AUTH_FAILED) => "auth_failed",
                End::Error(ErrorCode::PROTOCOL | ErrorCode::VERSION) => "protocol",
                End::Error(_) => "error",
                End::Io => "closed",
            };
            LinkMetrics::inc(&me.metrics().sessions, label);
        });
        if let Err(e) = spawned {
            self.active.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(%peer, error = %e, "node link: cannot start a thread");
        }
    }

    /// Fail the link with `e` (malformed input from the peer).
    fn protocol(s: &mut TcpStream, peer: SocketAddr, e: &LinkError) -> End {
        tracing::warn!(%peer, error = %e, "node link: malformed or unexpected frame; closing");
        wire::send_error(s, e.code(), &e.to_string());
        End::Error(e.code())
    }

    fn recv_failed(s: &mut TcpStream, peer: SocketAddr, e: RecvError) -> End {
        match e {
            RecvError::Closed => End::Closed,
            RecvError::Link(l) => Self::protocol(s, peer, &l),
            RecvError::TimedOut => {
                tracing::info!(%peer, "node link: peer idle or too slow; closing");
                End::Io
            }
            RecvError::Io(err) => {
                tracing::info!(%peer, error = %err, "node link: socket error");
                End::Io
            }
        }
    }

    fn serve(&self, mut s: TcpStream, peer: SocketAddr) -> End {
        if s.set_nodelay(true).is_err()
            || s.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).is_err()
            || s.set_write_timeout(Some(WRITE_TIMEOUT)).is_err()
        {
            return End::Io;
        }
        let mut buf = Vec::new();
        // Handshake: HELLO, then AUTH, each within the handshake time.
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let mut nonce = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut hs = ServerHandshake::new(self.domain.key(), self.domain.me(), nonce);
        let hello = match wire::recv(&mut s, &mut buf) {
            Ok(m) => m,
            Err(e) => return Self::recv_failed(&mut s, peer, e),
        };
        let reply = match hs.on_hello(&hello) {
            Ok(r) => r,
            Err(e) => return Self::protocol(&mut s, peer, &e),
        };
        if wire::send_raw(&mut s, &reply).is_err() {
            return End::Io;
        }
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        if s.set_read_timeout(Some(left)).is_err() {
            return End::Io;
        }
        let auth = match wire::recv(&mut s, &mut buf) {
            Ok(m) => m,
            Err(e) => return Self::recv_failed(&mut s, peer, e),
        };
        let (ready, node) = match hs.on_auth(&auth) {
            Ok(x) => x,
            Err(LinkError::AuthFailed) => {
                tracing::warn!(%peer, "node link: peer failed authentication (not of this copy domain); nothing served");
                wire::send_error(&mut s, ErrorCode::AUTH_FAILED, "authentication failed");
                return End::Error(ErrorCode::AUTH_FAILED);
            }
            Err(e) => return Self::protocol(&mut s, peer, &e),
        };
        if wire::send_raw(&mut s, &ready).is_err() || s.set_read_timeout(Some(IDLE_TIMEOUT)).is_err() {
            return End::Io;
        }
        tracing::debug!(%peer, node = %super::hex(&node), "node link: peer authenticated");
        let rod = self.registry.rod();
        let mut held: Option<HeldToken> = None;
        loop {
            let m = match wire::recv(&mut s, &mut buf) {
                Ok(m) => m,
                Err(e) => return Self::recv_failed(&mut s, peer, e),
            };
            let r = match m {
                Message::Open { token } if held.is_none() => match rod.acquire_local(token) {
                    Ok(h) => {
                        LinkMetrics::inc(&self.metrics().opens, "ok");
                        let info = OpenedInfo {
                            bytes: h.source().rod_bytes(),
                            block_size: h.source().unit().block_size(),
                            rod_type: h.header().rod_type,
                            inactivity_timeout_secs: rod
                                .store()
                                .remaining(h.header().id)
                                .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
                        };
                        held = Some(h);
                        wire::send(&mut s, &Message::Opened(info)).map_err(|_| End::Io)
                    }
                    Err(e) => {
                        LinkMetrics::inc(&self.metrics().opens, "refused");
                        tracing::info!(%peer, error = %e, "node link: token refused");
                        wire::send_error(&mut s, wire::token_code(e), &e.to_string());
                        return End::Error(wire::token_code(e));
                    }
                },
                Message::Read { offset, len } => match &held {
                    None => Err(self.fail(&mut s, ErrorCode::NOT_OPEN, "READ before OPEN")),
                    Some(h) => self.stream(&mut s, h, offset, len),
                },
                Message::Delete => match &held {
                    None => Err(self.fail(&mut s, ErrorCode::NOT_OPEN, "DELETE before OPEN")),
                    Some(h) => {
                        tracing::info!(%peer, "node link: DEL_TKN from the writing node");
                        rod.delete(h.header().id);
                        wire::send(&mut s, &Message::Deleted).map_err(|_| End::Io)
                    }
                },
                Message::Ping(c) => wire::send(&mut s, &Message::Pong(c)).map_err(|_| End::Io),
                other => {
                    let e = LinkError::Unexpected { expected: "OPEN, READ, DELETE or PING", got: other.kind() };
                    Err(Self::protocol(&mut s, peer, &e))
                }
            };
            if let Err(end) = r {
                return end;
            }
        }
    }

    fn fail(&self, s: &mut TcpStream, code: ErrorCode, why: &str) -> End {
        wire::send_error(s, code, why);
        End::Error(code)
    }

    /// Stream ROD bytes `[offset, offset + len)` of `h` as DATA frames.
    fn stream(&self, s: &mut TcpStream, h: &HeldToken, offset: u64, len: u64) -> Result<(), End> {
        let total = h.source().rod_bytes();
        if len == 0 || offset.checked_add(len).is_none_or(|e| e > total) {
            return Err(self.fail(s, ErrorCode::OUT_OF_RANGE, "READ beyond the ROD"));
        }
        if let Some(snap) = h.source().snapshot() {
            if let Some(fd) = snap.as_fd() {
                return self.send_file(s, fd, offset, len);
            }
        }
        self.stream_buffered(s, h, offset, len)
    }

    /// [`Server::stream`] through buffers: a reader thread fills them (the
    /// ROD read under the source's locks) while this thread sends, so the
    /// read of one frame overlaps the send of the one before; at most
    /// [`BUFFERS`] frames in memory per link, reused.
    fn stream_buffered(&self, s: &mut TcpStream, h: &HeldToken, offset: u64, len: u64) -> Result<(), End> {
        use std::sync::mpsc::sync_channel;
        let n_bufs = BUFFERS.min(len.div_ceil(MAX_DATA as u64) as usize).max(1);
        std::thread::scope(|scope| {
            // Made inside the scope and moved into each side, so that either
            // side ending drops its ends and the other sees it (no deadlock
            // at the scope's join).
            let (full_tx, full_rx) = sync_channel::<Result<(u64, Vec<u8>), CopyError>>(n_bufs);
            let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(n_bufs);
            for _ in 0..n_bufs {
                let _ = empty_tx.send(vec![0u8; MAX_DATA]);
            }
            let reader = std::thread::Builder::new().name("oxcopy-link-read".into()).spawn_scoped(scope, move || {
                let mut done = 0u64;
                while done < len && !self.domain.stopping() {
                    let Ok(mut buf) = empty_rx.recv() else { return };
                    let n = (len - done).min(MAX_DATA as u64) as usize;
                    let at = offset + done;
                    let r = h.source().read_rod(at, &mut buf[..n]).map(|()| {
                        buf.truncate(n);
                        (at, buf)
                    });
                    let failed = r.is_err();
                    if full_tx.send(r).is_err() || failed {
                        return;
                    }
                    done += n as u64;
                }
            });
            if reader.is_err() {
                return Err(self.fail(s, ErrorCode::SOURCE_FAILED, "cannot start a reader thread"));
            }
            self.send_buffers(s, len, full_rx, empty_tx)
        })
    }

    /// The sending side of [`Server::stream_buffered`].
    fn send_buffers(
        &self,
        s: &mut TcpStream,
        len: u64,
        full_rx: std::sync::mpsc::Receiver<Result<(u64, Vec<u8>), CopyError>>,
        empty_tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    ) -> Result<(), End> {
        {
            // Dropping `full_rx` and `empty_tx` on return stops the reader.
            let mut done = 0u64;
            while done < len {
                if self.domain.stopping() {
                    return Err(self.fail(s, ErrorCode::SHUTTING_DOWN, "node shutting down"));
                }
                let (at, mut buf) = match full_rx.recv() {
                    Ok(Ok(x)) => x,
                    Ok(Err(CopyError::Token(t))) => return Err(self.fail(s, wire::token_code(t), &t.to_string())),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "node link: reading a ROD for another node failed");
                        return Err(self.fail(s, ErrorCode::SOURCE_FAILED, &e.to_string()));
                    }
                    Err(_) => return Err(self.fail(s, ErrorCode::SHUTTING_DOWN, "node shutting down")),
                };
                let n = buf.len();
                if let Some(p) = &self.pacer {
                    p.wait(n as u64, &|| self.domain.stopping());
                }
                // CRC32C only when asked for (`link_data_digest`): without it
                // the receiver can move the bytes into its file in the kernel.
                let prefix = if self.digest { data_prefix(at, &buf) } else { data_prefix_unchecked(at, n) };
                wire::write_all_vectored(s, &[&prefix, &buf]).map_err(|_| End::Io)?;
                self.metrics().bytes_sent.inc_by(n as u64);
                done += n as u64;
                buf.resize(MAX_DATA, 0);
                // The reader may have stopped (error sent above, or done).
                let _ = empty_tx.send(buf);
            }
            Ok(())
        }
    }

    /// [`Server::stream`] from an immutable snapshot file: each DATA frame's
    /// bytes go from the file to the socket in the kernel.
    fn send_file(&self, s: &mut TcpStream, fd: BorrowedFd<'_>, offset: u64, len: u64) -> Result<(), End> {
        let mut done = 0u64;
        while done < len {
            if self.domain.stopping() {
                return Err(self.fail(s, ErrorCode::SHUTTING_DOWN, "node shutting down"));
            }
            let n = (len - done).min(MAX_DATA as u64) as usize;
            let mut at = offset + done;
            if let Some(p) = &self.pacer {
                p.wait(n as u64, &|| self.domain.stopping());
            }
            let prefix = data_prefix_unchecked(at, n);
            let mut sent = 0;
            while sent < prefix.len() {
                match rustix::net::send(&*s, &prefix[sent..], rustix::net::SendFlags::MORE) {
                    Ok(k) => sent += k,
                    Err(rustix::io::Errno::INTR) => {}
                    Err(_) => return Err(End::Io),
                }
            }
            let mut left = n;
            while left > 0 {
                match rustix::fs::sendfile(&*s, fd, Some(&mut at), left) {
                    Ok(0) => {
                        // The snapshot is shorter than the ROD: cannot happen
                        // for a snapshot made of the ROD's ranges.
                        tracing::warn!(at, "node link: snapshot file ended early");
                        return Err(End::Io);
                    }
                    Ok(k) => left -= k,
                    Err(rustix::io::Errno::INTR) => {}
                    Err(_) => return Err(End::Io),
                }
            }
            self.metrics().bytes_sent.inc_by(n as u64);
            done += n as u64;
        }
        Ok(())
    }
}
