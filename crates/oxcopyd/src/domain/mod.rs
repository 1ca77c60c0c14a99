//! This node's part in a copy domain: several `oxcopyd` nodes that share
//! the copy-domain key and list each other (`[copy_domain] node_listen`,
//! `nodes`). Any node writes the tokens of any other: WRITE USING TOKEN
//! on a token made elsewhere opens it at its creator over the *node link*
//! (`docs/node-link.md`, codec and handshake in `oxcopy-link`) and pulls
//! the ROD's bytes from the creator's point-in-time snapshot or
//! copy-on-write store; the engine writes them through its one executor.
//!
//! | module | role |
//! |---|---|
//! | [`wire`] | blocking, bounded frame I/O; link error codes ↔ engine errors |
//! | [`serve`] | the node-link server: authenticates peers, serves OPEN / READ / DELETE from this node's tokens |
//! | [`pull`] | the client side of one remote token: a streaming [`oxcopy_copy::RemoteRod`] |
//! | [`direct`] | a remote token whose ROD is an RBD snapshot of a cluster this node serves too: read from the cluster, not the creator |
//! | this file | membership (who answers for which copy manager), the prober, metrics, [`oxcopy_copy::Domain`] |
//!
//! Threads: link connections run on threads of their own (blocking
//! sockets with timeouts; at most [`serve::MAX_LINKS`] served at once),
//! pulls on the copy's thread; the prober is one thread. Nothing here
//! runs on the reactor but the accept loop.

pub mod direct;
pub mod pull;
pub mod serve;
pub mod wire;

use crate::copy_domain::CopyDomainConfig;
use oxcopy_copy::source::RemoteInfo;
use oxcopy_copy::token::TokenHeader;
use oxcopy_copy::{CopyDomainKey, CopyError, RemoteRod};
use oxcopy_link::{ClientHandshake, Message, NodeId};
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rand::RngCore;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connecting to a node at most.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The whole handshake at most (each end).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Without a byte from the creator while data is outstanding, at most.
pub const DATA_TIMEOUT: Duration = Duration::from_secs(15);
/// Between membership probes of a node.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(10);

/// Label set of the link counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// How it ended.
    pub result: String,
}

/// Node-link metrics.
#[derive(Debug, Clone, Default)]
pub struct LinkMetrics {
    /// Link connections this node accepted, by outcome (`ok`, `auth_failed`, `protocol`, `busy`, `closed`).
    pub sessions: Family<ResultLabel, Counter>,
    /// OPEN requests this node answered (`ok`, `refused`).
    pub opens: Family<ResultLabel, Counter>,
    /// DATA payload bytes this node served.
    pub bytes_sent: Counter,
    /// Remote tokens this node opened at their creators (`ok`, `refused`, `unreachable`, `failed`).
    pub pulls: Family<ResultLabel, Counter>,
    /// Remote tokens read straight from shared storage (`creator_up`: the
    /// creator holds the token meanwhile; `creator_down`: it did not
    /// answer; `failed`: the shared snapshot could not be opened).
    pub direct: Family<ResultLabel, Counter>,
}

impl LinkMetrics {
    fn inc(f: &Family<ResultLabel, Counter>, result: &str) {
        f.get_or_create(&ResultLabel { result: result.to_owned() }).inc();
    }

    /// Register the counters.
    pub fn register(&self, r: &mut Registry) {
        r.register("oxcopy_link_sessions", "Node-link connections accepted, by outcome", self.sessions.clone());
        r.register("oxcopy_link_opens", "Remote token opens answered, by outcome", self.opens.clone());
        r.register("oxcopy_link_bytes_sent", "ROD bytes served to other nodes", self.bytes_sent.clone());
        r.register("oxcopy_link_pulls", "Remote tokens opened at their creators, by outcome", self.pulls.clone());
        r.register(
            "oxcopy_link_direct_opens",
            "Remote tokens read from storage shared with their creator (an RBD cluster), by outcome",
            self.direct.clone(),
        );
    }
}

/// What this node knows of another node of the domain.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its node link.
    pub addr: SocketAddr,
    /// Its copy-manager id, once it authenticated.
    pub id: Option<NodeId>,
    /// Whether the last contact succeeded (`None`: never tried).
    pub up: Option<bool>,
    /// When `up` last changed.
    pub since: Instant,
    /// Why the last contact failed.
    pub error: Option<String>,
}

/// This node in its copy domain.
pub struct NodeDomain {
    key: CopyDomainKey,
    me: NodeId,
    cfg: CopyDomainConfig,
    peers: Mutex<Vec<Peer>>,
    /// Node-link counters.
    pub metrics: LinkMetrics,
    stop: AtomicBool,
    /// Serialises on-demand probing (one sweep at a time).
    sweep: Mutex<()>,
}

impl std::fmt::Debug for NodeDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeDomain").field("listen", &self.cfg.node_listen).field("nodes", &self.cfg.nodes).finish()
    }
}

/// Why a link to a node could not be set up.
fn unreachable(addr: SocketAddr, what: impl std::fmt::Display) -> CopyError {
    CopyError::Unreachable(format!("node {addr}: {what}"))
}

impl NodeDomain {
    /// This node (copy manager `me`) in the domain of `cfg`, keyed by `key`.
    pub fn new(cfg: &CopyDomainConfig, key: CopyDomainKey, me: NodeId) -> Arc<NodeDomain> {
        let now = Instant::now();
        let peers =
            cfg.peers().into_iter().map(|addr| Peer { addr, id: None, up: None, since: now, error: None }).collect();
        Arc::new(NodeDomain {
            key,
            me,
            cfg: cfg.clone(),
            peers: Mutex::new(peers),
            metrics: LinkMetrics::default(),
            stop: AtomicBool::new(false),
            sweep: Mutex::new(()),
        })
    }

    /// This node's copy-manager id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The domain configuration.
    pub fn config(&self) -> &CopyDomainConfig {
        &self.cfg
    }

    /// The domain key's bytes (link authentication).
    pub(crate) fn key(&self) -> &[u8] {
        self.key.as_bytes()
    }

    /// Eight bytes naming the domain without revealing its key.
    pub fn fingerprint(&self) -> [u8; 8] {
        let k = oxcopy_link::link_key(self.key.as_bytes());
        use hmac::Mac;
        let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&k).expect("HMAC takes any key length");
        m.update(b"oxcopy copy domain fingerprint");
        let out = m.finalize().into_bytes();
        let mut f = [0u8; 8];
        f.copy_from_slice(&out[..8]);
        f
    }

    /// The other nodes as last seen.
    pub fn peers(&self) -> Vec<Peer> {
        self.peers.lock().clone()
    }

    /// Stop the prober and refuse new work.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Connect to `addr` and authenticate both ways; returns the socket
    /// (read timeout [`DATA_TIMEOUT`]) and the peer's copy-manager id.
    pub(crate) fn connect(&self, addr: SocketAddr) -> Result<(TcpStream, NodeId), CopyError> {
        let mut s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| unreachable(addr, e))?;
        let io = |e: std::io::Error| unreachable(addr, e);
        s.set_nodelay(true).map_err(io)?;
        s.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).map_err(io)?;
        s.set_write_timeout(Some(DATA_TIMEOUT)).map_err(io)?;
        let mut nonce = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut hs = ClientHandshake::new(self.key.as_bytes(), self.me, nonce);
        wire::send_raw(&mut s, &hs.hello()).map_err(io)?;
        let mut buf = Vec::new();
        let rx = |e: wire::RecvError| unreachable(addr, format!("handshake: {e}"));
        let reply = wire::recv(&mut s, &mut buf).map_err(rx)?;
        let (auth, peer) = match hs.on_reply(&reply) {
            Ok(x) => x,
            Err(e) => {
                wire::send_error(&mut s, e.code(), &e.to_string());
                tracing::warn!(node = %addr, error = %e, "node link: the node failed authentication (another copy-domain key?)");
                return Err(unreachable(addr, format!("authentication failed: {e}")));
            }
        };
        wire::send_raw(&mut s, &auth).map_err(io)?;
        let ready = wire::recv(&mut s, &mut buf).map_err(rx)?;
        hs.on_ready(&ready).map_err(|e| unreachable(addr, format!("not admitted: {e}")))?;
        s.set_read_timeout(Some(DATA_TIMEOUT)).map_err(io)?;
        Ok((s, peer))
    }

    /// Contact `addr` (handshake + PING) and record what was learnt.
    fn probe(&self, addr: SocketAddr) {
        let r = self.connect(addr).and_then(|(mut s, id)| {
            let mut buf = Vec::new();
            wire::send(&mut s, &Message::Ping(1)).map_err(|e| unreachable(addr, e))?;
            match wire::recv(&mut s, &mut buf) {
                Ok(Message::Pong(1)) => Ok(id),
                Ok(other) => Err(unreachable(addr, format!("answered PING with {}", other.kind().name()))),
                Err(e) => Err(unreachable(addr, e)),
            }
        });
        self.record(addr, r.map_err(|e| e.to_string()));
    }

    fn record(&self, addr: SocketAddr, r: Result<NodeId, String>) {
        let mut peers = self.peers.lock();
        let Some(p) = peers.iter_mut().find(|p| p.addr == addr) else { return };
        let up = r.is_ok();
        if p.up != Some(up) {
            p.since = Instant::now();
            match &r {
                Ok(id) => tracing::info!(node = %addr, id = %hex(id), "copy domain: node up"),
                Err(e) => tracing::warn!(node = %addr, error = %e, "copy domain: node not reachable"),
            }
        }
        p.up = Some(up);
        match r {
            Ok(id) => {
                p.id = Some(id);
                p.error = None;
            }
            Err(e) => p.error = Some(e),
        }
    }

    /// Probe every other node now, in parallel (each bounded by the
    /// connect and handshake timeouts).
    pub fn probe_all(&self) {
        let _one = self.sweep.lock();
        let addrs: Vec<SocketAddr> = self.peers.lock().iter().map(|p| p.addr).collect();
        std::thread::scope(|sc| {
            for a in addrs {
                sc.spawn(move || self.probe(a));
            }
        });
    }

    /// Probe the nodes every [`PROBE_INTERVAL`] until [`NodeDomain::stop`].
    pub fn spawn_prober(self: &Arc<Self>) {
        if self.cfg.peers().is_empty() {
            return;
        }
        let me = Arc::downgrade(self);
        let r = std::thread::Builder::new().name("oxcopy-domain".into()).spawn(move || loop {
            let Some(d) = me.upgrade() else { return };
            if d.stopping() {
                return;
            }
            d.probe_all();
            drop(d);
            // Sleep in short steps so a stop is seen soon.
            for _ in 0..(PROBE_INTERVAL.as_millis() / 200) {
                std::thread::sleep(Duration::from_millis(200));
                match me.upgrade() {
                    Some(d) if !d.stopping() => {}
                    _ => return,
                }
            }
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, "copy domain: cannot start the membership prober");
        }
    }

    /// The node that answers as copy manager `id`: a known one, else after
    /// probing every node once more.
    fn locate(&self, id: &NodeId) -> Result<SocketAddr, CopyError> {
        let find =
            |peers: &[Peer]| peers.iter().find(|p| p.id.as_ref() == Some(id) && p.up == Some(true)).map(|p| p.addr);
        if let Some(a) = find(&self.peers.lock()) {
            return Ok(a);
        }
        self.probe_all();
        let peers = self.peers.lock();
        if let Some(a) = find(&peers) {
            return Ok(a);
        }
        if let Some(p) = peers.iter().find(|p| p.id.as_ref() == Some(id)) {
            return Err(CopyError::Unreachable(format!(
                "node {} (copy manager {}) that made the token: {}",
                p.addr,
                hex(id),
                p.error.as_deref().unwrap_or("not reachable")
            )));
        }
        Err(CopyError::Unreachable(format!(
            "no node of the copy domain answers as copy manager {} that made the token",
            hex(id)
        )))
    }

    /// Open a remote token (the [`oxcopy_copy::Domain`] work).
    fn open_remote(
        self: &Arc<Self>,
        token: &[u8; oxcopy_copy::token::TOKEN_LEN],
        header: &TokenHeader,
    ) -> Result<Arc<dyn RemoteRod>, CopyError> {
        let r = self.locate(&header.manager_id).and_then(|addr| {
            let (s, id) = self.connect(addr).inspect_err(|e| self.record(addr, Err(e.to_string())))?;
            if id != header.manager_id {
                self.record(addr, Ok(id));
                return Err(unreachable(addr, "answers as another copy manager now"));
            }
            pull::Pull::open(self.clone(), addr, s, token)
        });
        let label = match &r {
            Ok(_) => "ok",
            Err(CopyError::Token(_)) => "refused",
            Err(CopyError::Unreachable(_)) => "unreachable",
            Err(_) => "failed",
        };
        LinkMetrics::inc(&self.metrics.pulls, label);
        if let Err(e) = &r {
            tracing::info!(error = %e, "remote token not opened");
        }
        let r = r.map(|p| p as Arc<dyn RemoteRod>);
        self.direct_or(r, header)
    }

    /// A token whose ROD is a snapshot in a cluster this node serves too is
    /// read from the cluster: with the creator's open held (`link` Ok), or
    /// — the creator unreachable — from the snapshot alone.
    fn direct_or(
        &self,
        link: Result<Arc<dyn RemoteRod>, CopyError>,
        header: &TokenHeader,
    ) -> Result<Arc<dyn RemoteRod>, CopyError> {
        let Some((loc, store)) = header.locator.and_then(|l| crate::shared_storage::for_locator(&l).map(|s| (l, s)))
        else {
            return link;
        };
        let link = match link {
            Ok(l) => Some(l),
            Err(CopyError::Unreachable(m)) => {
                tracing::info!(reason = %m, "creator of the token unreachable: reading its snapshot from the cluster");
                None
            }
            Err(e) => return Err(e),
        };
        let bytes = u64::try_from(header.bytes).map_err(|_| CopyError::Token(oxcopy_copy::TokenError::Corrupt))?;
        match store.open_located(&loc, bytes) {
            Ok(snap) => {
                let info = match &link {
                    Some(l) => l.info(),
                    None => RemoteInfo { bytes, block_size: header.block_size, rod_type: header.rod_type },
                };
                LinkMetrics::inc(&self.metrics.direct, if link.is_some() { "creator_up" } else { "creator_down" });
                Ok(Arc::new(direct::DirectRod::new(snap, info, link)))
            }
            Err(e) => {
                LinkMetrics::inc(&self.metrics.direct, "failed");
                match link {
                    // The creator still has it: stream through the link.
                    Some(l) => {
                        tracing::warn!(error = %e, "token snapshot not readable from the cluster; pulling from its creator");
                        Ok(l)
                    }
                    None if oxcopy_rbd::rbd_error_kind(&e) == Some(oxcopy_rbd::RbdErrorKind::NotFound) => {
                        Err(CopyError::Token(oxcopy_copy::TokenError::Unknown))
                    }
                    None => Err(CopyError::Unreachable(format!("the token's creator is gone and its snapshot: {e}"))),
                }
            }
        }
    }
}

/// The engine's view of the domain, bound to this node.
#[derive(Debug, Clone)]
pub struct DomainHandle(pub Arc<NodeDomain>);

impl oxcopy_copy::Domain for DomainHandle {
    fn open(
        &self,
        token: &[u8; oxcopy_copy::token::TOKEN_LEN],
        header: &TokenHeader,
    ) -> Result<Arc<dyn RemoteRod>, CopyError> {
        self.0.open_remote(token, header)
    }

    fn accepts_remote(&self) -> bool {
        !self.0.cfg.peers().is_empty()
    }
}

/// Lower-case hex of an id.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl oxcopy_scsi::DomainInfo for NodeDomain {
    /// VPD page C0h: answered from memory (the prober keeps the states).
    fn page(&self) -> oxcopy_scsi::CopyDomainPage {
        use oxcopy_scsi::{DomainNode, NodeState};
        let peers = self.peers.lock().clone();
        let nodes = self
            .cfg
            .nodes
            .iter()
            .map(|a| {
                if Some(*a) == self.cfg.node_listen {
                    return DomainNode {
                        address: a.to_string(),
                        manager_id: Some(self.me),
                        state: NodeState::SELF,
                        seconds: 0,
                    };
                }
                let p = peers.iter().find(|p| p.addr == *a);
                DomainNode {
                    address: a.to_string(),
                    manager_id: p.and_then(|p| p.id),
                    state: match p.and_then(|p| p.up) {
                        None => NodeState::UNKNOWN,
                        Some(true) => NodeState::UP,
                        Some(false) => NodeState::DOWN,
                    },
                    seconds: p.map_or(0, |p| u32::try_from(p.since.elapsed().as_secs()).unwrap_or(u32::MAX)),
                }
            })
            .collect();
        oxcopy_scsi::CopyDomainPage {
            fingerprint: self.fingerprint(),
            manager_id: self.me,
            remote_tokens: !self.cfg.peers().is_empty(),
            listen: self.cfg.node_listen.map(|a| a.to_string()).unwrap_or_default(),
            nodes,
        }
    }
}
