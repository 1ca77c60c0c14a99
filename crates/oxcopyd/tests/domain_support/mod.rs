//! Fixtures for the copy-domain tests: several real `oxcopyd` processes
//! (A on 127.0.0.2, B on .3, C on .4, …), each with its own data dir, LUN
//! files, metrics endpoint and node-link port, sharing one copy-domain key
//! file; wire helpers around our initiator's POPULATE TOKEN / RRTI / WRITE
//! USING TOKEN; a hand-driven node-link client (frames of
//! docs/node-link.md, no oxcopy-link code) for the link's own refusals.
//!
//! Every daemon is a [`Proc`]: SIGKILLed by PID and reaped when dropped.
#![allow(dead_code)]

use bytes::Bytes;
use oxcopy_initiator::odx::{BlockRange, PopulateToken, RodTokenInfo, WriteUsingToken, TOKEN_LEN};
use oxcopy_initiator::{InitiatorError, ScsiOutcome, Session, SessionConfig};
use oxcopy_testkit::{free_port, pattern as tk_pattern, DaemonConfig, Lun, Proc, Spawn, Target};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub type Token = [u8; TOKEN_LEN];

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const BS: u32 = 512;
pub const INITIATOR: &str = "iqn.2026-11.dev.oxcopy:domain-host";
/// Bound for one exchange that should be quick.
pub const STEP: Duration = Duration::from_secs(60);

/// ROD types.
pub const PIT_DEFAULT: u32 = 0x0080_0000;
pub const PIT_CHANGE_VULNERABLE: u32 = 0x0080_0001;
/// RRTI COPY OPERATION STATUS values.
pub const ST_COMPLETED: u8 = 0x01;
pub const ST_TERMINATED: u8 = 0x60;

/// LUNs of every node's target: 0 the copy source, 1 the destination, 2
/// for unrelated I/O.
pub const SRC: u64 = 0;
pub const DST: u64 = 1;
pub const OTHER: u64 = 2;

/// The target IQN of node `name`.
pub fn iqn(name: &str) -> String {
    format!("iqn.2026-11.dev.oxcopy:domain-{}", name.to_ascii_lowercase())
}

/// How to build one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: &'static str,
    /// Loopback address of everything it serves (iSCSI, metrics, link).
    pub ip: &'static str,
    /// Where its LUN files go (a subdirectory per node is made).
    pub lun_dir: PathBuf,
    /// Size of each of its three LUNs.
    pub lun_bytes: u64,
    /// `link_max_bytes_per_second`, if any.
    pub link_rate: Option<&'static str>,
    /// Key seed: nodes of one domain share it (see [`Cluster::start`]).
    pub key_seed: u64,
}

/// A running node.
pub struct Node {
    pub name: &'static str,
    pub ip: IpAddr,
    pub proc_: Option<Proc>,
    pub iscsi: SocketAddr,
    pub metrics: SocketAddr,
    pub link: SocketAddr,
    pub lun_dir: PathBuf,
    pub config: PathBuf,
    pub target: String,
}

impl Node {
    pub fn lun_file(&self, lun: u64) -> PathBuf {
        self.lun_dir.join(format!("lun{lun}.img"))
    }

    pub async fn session(&self) -> Session {
        self.session_isid(None).await
    }

    /// A session with a given ISID (another I_T nexus of the same initiator).
    pub async fn session_isid(&self, isid: Option<[u8; 6]>) -> Session {
        let cfg = SessionConfig {
            isid,
            initiator_name: INITIATOR.into(),
            command_timeout: Duration::from_secs(600),
            management_timeout: Duration::from_secs(60),
            login_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: None,
            ..SessionConfig::for_target(&self.target)
        };
        tokio::time::timeout(STEP, Session::connect(self.iscsi, cfg))
            .await
            .unwrap_or_else(|_| panic!("login to node {} timed out", self.name))
            .unwrap_or_else(|e| panic!("login to node {}: {e}", self.name))
    }

    /// The metrics exposition.
    pub async fn scrape(&self) -> String {
        tokio::time::timeout(STEP, oxcopyd::metrics_http::scrape(self.metrics))
            .await
            .unwrap_or_else(|_| panic!("scrape of node {} hung", self.name))
            .unwrap_or_else(|e| panic!("scrape /metrics of node {}: {e:#}", self.name))
    }

    /// `name{labels}` (labels exactly as printed), 0 when absent.
    pub async fn metric(&self, name: &str, labels: &str) -> u64 {
        oxcopyd::metrics_http::sample(&self.scrape().await, name, labels)
    }

    /// The sum of every series of `name` (all label values).
    pub async fn metric_sum(&self, name: &str) -> u64 {
        metric_sum(&self.scrape().await, name)
    }

    /// `oxcopy_link_sessions_total`, all results: link connections this
    /// node accepted.
    pub async fn link_sessions(&self) -> u64 {
        self.metric_sum("oxcopy_link_sessions_total").await
    }

    /// `oxcopy_link_pulls_total`, all results: remote tokens this node
    /// tried to open at their creators.
    pub async fn link_pulls(&self) -> u64 {
        self.metric_sum("oxcopy_link_pulls_total").await
    }

    /// `oxcopy_copy_bytes_total{method="remote"}`: bytes this node pulled.
    pub async fn remote_bytes(&self) -> u64 {
        self.metric("oxcopy_copy_bytes_total", "method=\"remote\"").await
    }

    /// The daemon's stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        self.proc_.as_ref().map(|p| p.stderr()).unwrap_or_default()
    }

    /// SIGKILL by PID and reap.
    pub fn kill(&mut self) {
        if let Some(p) = self.proc_.take() {
            p.kill();
        }
    }
}

/// GET /metrics with std's blocking TCP (for code outside the runtime).
pub fn scrape_blocking(addr: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to metrics {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .expect("send GET /metrics");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read /metrics");
    let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "metrics endpoint {addr} answered: {head}");
    body.to_string()
}

/// Sum of the samples of `name` (with or without labels) in an exposition.
pub fn metric_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = if rest.starts_with('{') { &rest[rest.find('}')? + 1..] } else { rest };
            rest.strip_prefix(' ')?.trim().parse::<f64>().ok()
        })
        .map(|v| v as u64)
        .sum()
}

/// Daemons of one test (their files in `dir`).
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// Start every node of `specs`; the `nodes` list of each names every
    /// node of the same key seed (itself included), and each node with seed
    /// `s` uses the key file `dir/domain-<s>.key`.
    pub fn start(specs: &[NodeSpec]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let links: Vec<SocketAddr> = specs
            .iter()
            .map(|s| {
                let ip: IpAddr = s.ip.parse().expect("node IP");
                SocketAddr::new(ip, free_port(ip))
            })
            .collect();
        let mut nodes = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            let ip: IpAddr = s.ip.parse().expect("node IP");
            let key =
                oxcopy_testkit::write_key_file(&dir.path().join(format!("domain-{}.key", s.key_seed)), s.key_seed);
            let members: Vec<String> = specs
                .iter()
                .zip(&links)
                .filter(|(o, _)| o.key_seed == s.key_seed || o.name == s.name)
                .map(|(_, l)| l.to_string())
                .collect();
            // A foreign-key node lists the domain's nodes too (it is
            // configured as a member; only its key differs).
            let members = if specs.iter().filter(|o| o.key_seed == s.key_seed).count() == 1 {
                links.iter().map(|l| l.to_string()).collect()
            } else {
                members
            };
            let lun_dir = s.lun_dir.join(format!("node-{}", s.name));
            std::fs::create_dir_all(&lun_dir).expect("mkdir LUN dir");
            let metrics = SocketAddr::new(ip, free_port(ip));
            let target = iqn(s.name);
            let mut t = Target::new(&target);
            for lun in [SRC, DST, OTHER] {
                t = t.lun(Lun::new(lun as u32, lun_dir.join(format!("lun{lun}.img"))).size(s.lun_bytes).block_size(BS));
            }
            let mut cfg = DaemonConfig::new(dir.path().join(format!("state-{}", s.name)))
                .listen(&[&format!("{}:0", s.ip)])
                .server("metrics", metrics.to_string())
                .server("nop_interval", 0)
                .target(t)
                .domain_node(&key, &links[i].to_string(), &members);
            if let Some(r) = s.link_rate {
                cfg = cfg.copy_domain("link_max_bytes_per_second", r);
            }
            let config = cfg.write(dir.path().join(format!("oxcopyd-{}.toml", s.name)));
            let p = Proc::spawn(
                &config,
                &Spawn { rust_log: "warn", ..Spawn::new(Path::new(env!("CARGO_BIN_EXE_oxcopyd"))) },
            );
            let iscsi = p.addr();
            assert_eq!(iscsi.ip(), ip, "node {} serves iSCSI on its own address", s.name);
            nodes.push(Node {
                name: s.name,
                ip,
                proc_: Some(p),
                iscsi,
                metrics,
                link: links[i],
                lun_dir,
                config,
                target,
            });
        }
        let c = Cluster { nodes, dir };
        c.wait_links_listening();
        c
    }

    /// Three nodes A (127.0.0.2), B (.3), C (.4) of one domain, LUN files
    /// under `lun_dirs[i]` (one directory for all when given one), A's link
    /// bounded by `a_rate`.
    pub fn abc(lun_dirs: &[&Path], lun_bytes: u64, a_rate: Option<&'static str>) -> Cluster {
        let d = |i: usize| lun_dirs[i.min(lun_dirs.len() - 1)].to_path_buf();
        Cluster::start(&[
            NodeSpec { name: "A", ip: "127.0.0.2", lun_dir: d(0), lun_bytes, link_rate: a_rate, key_seed: 1 },
            NodeSpec { name: "B", ip: "127.0.0.3", lun_dir: d(1), lun_bytes, link_rate: None, key_seed: 1 },
            NodeSpec { name: "C", ip: "127.0.0.4", lun_dir: d(2), lun_bytes, link_rate: None, key_seed: 1 },
        ])
    }

    /// Every node's node link accepts TCP connections (bounded wait): the
    /// daemon prints its iSCSI URL once iSCSI is up, the link may follow.
    /// The probe is one link connection closed at once, which the node
    /// counts in `oxcopy_link_sessions_total` when it ends: wait for that
    /// too, so that tests comparing the counter start from a settled value.
    fn wait_links_listening(&self) {
        for n in &self.nodes {
            let t0 = Instant::now();
            loop {
                if std::net::TcpStream::connect_timeout(&n.link, Duration::from_secs(1)).is_ok() {
                    break;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(20),
                    "node {} does not listen on its node link {} (is [copy_domain] node_listen served?); stderr:\n{}",
                    n.name,
                    n.link,
                    n.stderr()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        for n in &self.nodes {
            let t0 = Instant::now();
            loop {
                let v = metric_sum(&scrape_blocking(n.metrics), "oxcopy_link_sessions_total");
                if v >= 1 {
                    break;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "node {}: the probe connection to its node link is not counted in oxcopy_link_sessions_total",
                    n.name
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).expect("node")
    }

    pub fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.name == name).expect("node")
    }

    /// Every node's stderr, for a failure message.
    pub fn logs(&self) -> String {
        self.nodes.iter().map(|n| format!("--- node {} stderr:\n{}\n", n.name, n.stderr())).collect()
    }
}

/// Bound any future by `d`, with a message naming what hung.
pub async fn within<F: std::future::Future>(d: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(d, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {d:?}"),
    }
}

pub fn pattern(seed: u64, len: u64) -> Vec<u8> {
    tk_pattern(seed, len as usize)
}

pub fn range(lba: u64, blocks: u32) -> BlockRange {
    BlockRange { lba, blocks }
}

/// `blocks` blocks from `lba` as range descriptors of at most 2^20 blocks.
pub fn split(lba: u64, blocks: u64) -> Vec<BlockRange> {
    let mut v = Vec::new();
    let mut done = 0;
    while done < blocks {
        let n = (blocks - done).min(1 << 20);
        v.push(range(lba + done, n as u32));
        done += n;
    }
    v
}

pub fn describe(o: &ScsiOutcome) -> String {
    format!("status {:#04x} sense {:?}", o.status, o.sense_info())
}

/// Write through the initiator (WRITE (16) in ≤ 8 MiB commands).
pub async fn write(s: &Session, lun: u64, lba: u64, data: &[u8]) {
    let per = (8 * MIB) as usize;
    for (i, c) in data.chunks(per).enumerate() {
        let at = lba + (i * per / BS as usize) as u64;
        within(STEP, "WRITE (16)", s.write16(lun, at, Bytes::copy_from_slice(c), BS, false)).await.expect("WRITE (16)");
    }
}

/// Read through the initiator (READ (16) in ≤ 8 MiB commands).
pub async fn read(s: &Session, lun: u64, lba: u64, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len as usize);
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(8 * MIB);
        let d = within(STEP, "READ (16)", s.read16(lun, lba + done / u64::from(BS), (n / u64::from(BS)) as u32, BS))
            .await
            .expect("READ (16)");
        out.extend_from_slice(&d);
        done += n;
    }
    out
}

/// RRTI of `list_id`, which must answer GOOD.
pub async fn rrti(s: &Session, lun: u64, list_id: u32) -> RodTokenInfo {
    match within(STEP, "RRTI", s.receive_rod_token_information(lun, list_id)).await {
        Ok(i) => i,
        Err(InitiatorError::ScsiStatus(o)) => panic!("RRTI of list {list_id}: {}", describe(&o)),
        Err(e) => panic!("RRTI of list {list_id}: {e}"),
    }
}

/// Poll RRTI while in progress (bounded in count and time); the final
/// report and the in-progress ones seen.
pub async fn poll_rrti(s: &Session, lun: u64, list_id: u32, limit: Duration) -> (RodTokenInfo, Vec<RodTokenInfo>) {
    let t0 = Instant::now();
    let mut seen = Vec::new();
    for _ in 0..20_000 {
        let i = rrti(s, lun, list_id).await;
        if !i.in_progress() {
            return (i, seen);
        }
        assert!(t0.elapsed() < limit, "list {list_id} still in progress after {:?}: {i:?}", t0.elapsed());
        seen.push(i);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("list {list_id}: RRTI polled 20000 times without a final status");
}

/// POPULATE TOKEN (must be GOOD), then RRTI: the token.
pub async fn populate(s: &Session, lun: u64, list_id: u32, p: &PopulateToken) -> Token {
    let o = within(STEP, "POPULATE TOKEN", s.populate_token(lun, list_id, p)).await.expect("PT sent");
    assert!(o.is_good(), "POPULATE TOKEN (list {list_id}): {}", describe(&o));
    let (i, _) = poll_rrti(s, lun, list_id, STEP).await;
    assert_eq!((i.response_to_sa, i.status), (0x10, ST_COMPLETED), "RRTI after PT: {i:?}");
    let blocks: u64 = p.ranges.iter().map(|r| u64::from(r.blocks)).sum();
    assert_eq!(i.transfer_count, blocks, "RRTI after PT: blocks represented {i:?}");
    let t = i.token.expect("a token");
    if let Some(want) = p.rod_type {
        assert_eq!(u32::from_be_bytes([t[0], t[1], t[2], t[3]]), want, "ROD type of the token");
    }
    t
}

pub fn pt(rod_type: Option<u32>, ranges: Vec<BlockRange>) -> PopulateToken {
    PopulateToken { rod_type, ranges, ..Default::default() }
}

pub fn wut(token: Token, offset_into_rod: u64, ranges: Vec<BlockRange>) -> WriteUsingToken {
    WriteUsingToken { token, offset_into_rod, ranges, ..Default::default() }
}

/// WRITE USING TOKEN, raw outcome, bounded by `d`.
pub async fn wut_within(s: &Session, lun: u64, list_id: u32, w: &WriteUsingToken, d: Duration) -> ScsiOutcome {
    within(d, "WRITE USING TOKEN", s.write_using_token(lun, list_id, w)).await.expect("WUT sent")
}

/// WRITE USING TOKEN, raw outcome.
pub async fn wut_raw(s: &Session, lun: u64, list_id: u32, w: &WriteUsingToken) -> ScsiOutcome {
    wut_within(s, lun, list_id, w, STEP).await
}

/// The outcome must be CHECK CONDITION with this sense key, ASC, ASCQ.
#[track_caller]
pub fn expect_sense(o: &ScsiOutcome, key: u8, asc: u8, ascq: u8, what: &str) -> oxcopy_initiator::Sense {
    assert!(o.is_check_condition(), "{what}: expected CHECK CONDITION, got {}", describe(o));
    let s = o.sense_info().expect("sense data");
    assert_eq!((s.key, s.asc, s.ascq), (key, asc, ascq), "{what}: sense {s:?} (want {key:02x}/{asc:02x}h/{ascq:02x}h)");
    s
}

/// ILLEGAL REQUEST, INVALID TOKEN OPERATION (23h) with ASCQ `ascq`.
#[track_caller]
pub fn expect_token_error(o: &ScsiOutcome, ascq: u8, what: &str) {
    expect_sense(o, 0x05, 0x23, ascq, what);
}

/// Wait (bounded) until `f` holds for node `n`'s metric sum of `name`.
pub async fn wait_metric(n: &Node, name: &str, labels: &str, want: impl Fn(u64) -> bool, what: &str) -> u64 {
    let t0 = Instant::now();
    loop {
        let v = if labels.is_empty() { n.metric_sum(name).await } else { n.metric(name, labels).await };
        if want(v) {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{what}: {name}{{{labels}}} = {v} on node {}", n.name);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// The node link by hand (docs/node-link.md), no oxcopy-link code: frames
// are a 12-byte header (OXNL, version 1, kind, reserved, length BE) and the
// payload.

pub mod link {
    use super::*;

    pub const HELLO: u8 = 0x01;
    pub const HELLO_REPLY: u8 = 0x02;
    pub const AUTH: u8 = 0x03;
    pub const READY: u8 = 0x04;
    pub const OPEN: u8 = 0x10;
    pub const OPENED: u8 = 0x11;
    pub const READ: u8 = 0x12;
    pub const DATA: u8 = 0x13;
    pub const ERROR: u8 = 0x7F;
    pub const AUTH_FAILED: u16 = 0x0002;
    pub const PROTOCOL: u16 = 0x0001;

    pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(12 + payload.len());
        v.extend_from_slice(b"OXNL");
        v.push(1);
        v.push(kind);
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// HELLO: version 1, reserved, node id, nonce.
    pub fn hello(node_id: [u8; 16], nonce: [u8; 32]) -> Vec<u8> {
        let mut p = vec![0, 1, 0, 0];
        p.extend_from_slice(&node_id);
        p.extend_from_slice(&nonce);
        frame(HELLO, &p)
    }

    /// What came back from the server.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Got {
        Frame {
            kind: u8,
            payload: Vec<u8>,
        },
        /// EOF or reset.
        Closed,
        /// Nothing within the bound.
        Silent,
    }

    impl Got {
        /// The error code of an ERROR frame.
        pub fn error_code(&self) -> Option<u16> {
            match self {
                Got::Frame { kind: ERROR, payload } if payload.len() >= 2 => {
                    Some(u16::from_be_bytes([payload[0], payload[1]]))
                }
                _ => None,
            }
        }
    }

    pub async fn connect(addr: SocketAddr) -> TcpStream {
        within(Duration::from_secs(10), "node link connect", TcpStream::connect(addr))
            .await
            .expect("connect to node link")
    }

    /// Next frame (header checked loosely: magic and length ≤ 2 MiB), or
    /// closed, or silent for `d`.
    pub async fn recv(s: &mut TcpStream, d: Duration) -> Got {
        let r = tokio::time::timeout(d, async {
            let mut h = [0u8; 12];
            if s.read_exact(&mut h).await.is_err() {
                return Got::Closed;
            }
            assert_eq!(&h[0..4], b"OXNL", "frame magic from the server: {h:02x?}");
            let len = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
            assert!(len <= 2 << 20, "frame length {len}");
            let mut p = vec![0u8; len];
            if s.read_exact(&mut p).await.is_err() {
                return Got::Closed;
            }
            Got::Frame { kind: h[5], payload: p }
        })
        .await;
        r.unwrap_or(Got::Silent)
    }

    /// Read until EOF (bounded): every frame received on the way.
    pub async fn drain_until_closed(s: &mut TcpStream, d: Duration) -> Result<Vec<Got>, Vec<Got>> {
        let t0 = Instant::now();
        let mut got = Vec::new();
        for _ in 0..64 {
            let left = d.saturating_sub(t0.elapsed());
            match recv(s, left).await {
                Got::Closed => return Ok(got),
                Got::Silent => return Err(got),
                f => got.push(f),
            }
        }
        Err(got)
    }

    /// Send bytes; a write error (the server closed) is not a failure.
    pub async fn send(s: &mut TcpStream, b: &[u8]) -> bool {
        matches!(tokio::time::timeout(Duration::from_secs(10), s.write_all(b)).await, Ok(Ok(())))
    }
}
