//! Fixtures for the ODX (token copy) end-to-end tests: an in-process daemon
//! with the three targets of `xcopy_support` (open, shared, private) plus a
//! `[copy_domain]` section, and wire-level helpers around our initiator's
//! POPULATE TOKEN / RRTI / WRITE USING TOKEN calls. Everything is checked
//! through the wire (and, for the data, the backing files).
#![allow(dead_code)]

pub mod scenarios;

use crate::xcopy_support::{config as xcopy_config, Sizes, INITIATOR, STEP};
use oxcopy_initiator::odx::{BlockRange, PopulateToken, RodTokenInfo, WriteUsingToken, TOKEN_LEN};
use oxcopy_initiator::{InitiatorError, ScsiOutcome, Session};
use oxcopy_scsi::{Asc, SenseKey};
use oxcopy_testkit::DaemonConfig;
use oxcopyd::config::Config;
use oxcopyd::Running;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A 512-byte ROD token.
pub type Token = [u8; TOKEN_LEN];

/// ROD types (digest §5.2).
pub const AUR: u32 = 0x0001_0000;
pub const PIT_DEFAULT: u32 = 0x0080_0000;
pub const PIT_CHANGE_VULNERABLE: u32 = 0x0080_0001;
pub const PIT_PERSISTENT: u32 = 0x0080_0002;
pub const ZERO: u32 = 0xFFFF_0001;

/// RRTI COPY OPERATION STATUS values.
pub const ST_COMPLETED: u8 = 0x01;
pub const ST_TERMINATED: u8 = 0x60;

/// `[copy_domain]` knobs a test may set.
#[derive(Debug, Clone, Default)]
pub struct Domain {
    /// `token_scope` (`None`: not written, the default "domain").
    pub token_scope: Option<&'static str>,
    /// `max_inactivity_timeout`, seconds.
    pub max_inactivity_timeout: Option<u32>,
}

/// The configuration: `xcopy_support`'s three targets plus `[copy_domain]`.
pub fn config(lun_dir: &Path, state_dir: &Path, sizes: Sizes, dom: &Domain) -> DaemonConfig {
    let mut c = xcopy_config(lun_dir, state_dir, sizes);
    if let Some(s) = dom.token_scope {
        c = c.copy_domain("token_scope", s);
    }
    if let Some(m) = dom.max_inactivity_timeout {
        c = c.copy_domain("max_inactivity_timeout", m);
    }
    c
}

/// An in-process daemon for the ODX tests.
pub struct ODaemon {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub lun_dir: PathBuf,
    _state: tempfile::TempDir,
}

impl ODaemon {
    /// LUN files in a fresh temp dir.
    pub async fn start(sizes: Sizes, dom: Domain) -> (ODaemon, tempfile::TempDir) {
        let luns = tempfile::tempdir().expect("tempdir");
        let d = ODaemon::start_in(luns.path(), sizes, dom).await;
        (d, luns)
    }

    /// LUN files in `lun_dir` (e.g. a loop-mounted filesystem).
    pub async fn start_in(lun_dir: &Path, sizes: Sizes, dom: Domain) -> ODaemon {
        let state = tempfile::tempdir().expect("tempdir");
        let path = config(lun_dir, state.path(), sizes, &dom).write(state.path().join("oxcopyd.toml"));
        let cfg = Config::from_file(&path).expect("config validates");
        let running =
            tokio::time::timeout(STEP, oxcopyd::start(cfg)).await.expect("start hung").expect("daemon starts");
        let addr = running.addrs[0];
        assert!(addr.ip().is_loopback() && addr.port() != 0, "bound to {addr}");
        let metrics = running.metrics_addr.expect("metrics endpoint configured");
        ODaemon { running: Some(running), addr, metrics, lun_dir: lun_dir.to_path_buf(), _state: state }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.lun_dir.join(name)
    }

    pub async fn session(&self, target: &str) -> Session {
        self.connect(target, INITIATOR, None).await
    }

    pub async fn session_as(&self, target: &str, initiator: &str) -> Session {
        self.connect(target, initiator, None).await
    }

    pub async fn session_with_isid(&self, target: &str, isid: [u8; 6]) -> Session {
        self.connect(target, INITIATOR, Some(isid)).await
    }

    async fn connect(&self, target: &str, initiator: &str, isid: Option<[u8; 6]>) -> Session {
        crate::xcopy_support::connect(self.addr, target, initiator, isid).await
    }

    pub async fn scrape(&self) -> String {
        oxcopyd::metrics_http::scrape(self.metrics).await.expect("scrape /metrics")
    }

    /// Bytes per copy method (`oxcopy_copy_bytes_total{method=...}`).
    pub async fn methods(&self) -> Methods {
        let text = self.scrape().await;
        let m = |k: &str| oxcopyd::metrics_http::sample(&text, "oxcopy_copy_bytes_total", &format!("method=\"{k}\""));
        Methods { reflink: m("reflink"), cfr: m("copy_file_range"), rw: m("read_write"), hole: m("hole") }
    }

    /// `oxcopy_rod_snapshot_bytes` (bytes held for point-in-time tokens).
    pub async fn snapshot_bytes(&self) -> u64 {
        oxcopyd::metrics_http::sample(&self.scrape().await, "oxcopy_rod_snapshot_bytes", "")
    }

    pub async fn shutdown(mut self) {
        crate::xcopy_support::shutdown(self.running.take()).await;
    }
}

/// `oxcopy_copy_bytes_total` per method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Methods {
    pub reflink: u64,
    pub cfr: u64,
    pub rw: u64,
    pub hole: u64,
}

impl Methods {
    pub fn since(self, before: Methods) -> Methods {
        Methods {
            reflink: self.reflink - before.reflink,
            cfr: self.cfr - before.cfr,
            rw: self.rw - before.rw,
            hole: self.hole - before.hole,
        }
    }

    pub fn total(self) -> u64 {
        self.reflink + self.cfr + self.rw + self.hole
    }
}

pub fn range(lba: u64, blocks: u32) -> BlockRange {
    BlockRange { lba, blocks }
}

pub fn pt(rod_type: Option<u32>, ranges: Vec<BlockRange>) -> PopulateToken {
    PopulateToken { rod_type, ranges, ..Default::default() }
}

pub fn wut(token: Token, offset_into_rod: u64, ranges: Vec<BlockRange>) -> WriteUsingToken {
    WriteUsingToken { token, offset_into_rod, ranges, ..Default::default() }
}

fn describe(o: &ScsiOutcome) -> String {
    format!("status {:#04x} sense {:?}", o.status, o.sense_info())
}

/// RRTI of `list_id`, which must answer GOOD.
pub async fn rrti(s: &Session, lun: u64, list_id: u32) -> RodTokenInfo {
    match tokio::time::timeout(STEP, s.receive_rod_token_information(lun, list_id)).await.expect("RRTI hung") {
        Ok(i) => i,
        Err(InitiatorError::ScsiStatus(o)) => panic!("RRTI of list {list_id}: {}", describe(&o)),
        Err(e) => panic!("RRTI of list {list_id}: {e}"),
    }
}

/// Poll RRTI while the operation is in progress (bounded in count and
/// time), sleeping as ddpt does: the reported delay when 0 < delay <
/// FFFFFFFEh (capped at 200 ms here), else 50 ms. Returns the final report
/// and the in-progress reports seen.
pub async fn poll_rrti(s: &Session, lun: u64, list_id: u32, limit: Duration) -> (RodTokenInfo, Vec<RodTokenInfo>) {
    let t0 = Instant::now();
    let mut seen = Vec::new();
    for _ in 0..20_000 {
        let i = rrti(s, lun, list_id).await;
        if !i.in_progress() {
            return (i, seen);
        }
        assert!(t0.elapsed() < limit, "list {list_id} still in progress after {:?}: {i:?}", t0.elapsed());
        let d = if i.delay_ms > 0 && i.delay_ms < 0xFFFF_FFFE { i.delay_ms.min(200) } else { 50 };
        seen.push(i);
        tokio::time::sleep(Duration::from_millis(u64::from(d))).await;
    }
    panic!("list {list_id}: RRTI polled 20000 times without a final status");
}

/// POPULATE TOKEN (must be GOOD), then RRTI: the Windows-visible layout
/// checks of the digest §4.5 and the token.
pub async fn populate(s: &Session, lun: u64, list_id: u32, p: &PopulateToken) -> Token {
    let o = tokio::time::timeout(STEP, s.populate_token(lun, list_id, p)).await.expect("PT hung").expect("PT sent");
    assert!(o.is_good(), "POPULATE TOKEN (list {list_id}, {p:?}): {}", describe(&o));
    let (i, _) = poll_rrti(s, lun, list_id, STEP).await;
    let blocks: u64 = p.ranges.iter().map(|r| u64::from(r.blocks)).sum();
    assert_eq!(i.response_to_sa, 0x10, "RRTI after PT: response to SA {i:?}");
    assert_eq!(i.status, ST_COMPLETED, "RRTI after PT: status {i:?}");
    assert_eq!(i.units, 0xF1, "RRTI after PT: units are logical blocks {i:?}");
    assert_eq!(i.transfer_count, blocks, "RRTI after PT: blocks represented {i:?}");
    assert_eq!(i.token_descriptors_length, 514, "RRTI after PT: token descriptors length {i:?}");
    let t = i.token.expect("a token");
    assert_eq!(&t[6..8], &[0x01, 0xF8], "ROD TOKEN LENGTH");
    if let Some(want) = p.rod_type {
        assert_eq!(rod_type(&t), want, "the token has the ROD type asked for");
    }
    t
}

pub fn rod_type(t: &Token) -> u32 {
    u32::from_be_bytes([t[0], t[1], t[2], t[3]])
}

/// WRITE USING TOKEN, raw outcome.
pub async fn wut_raw(s: &Session, lun: u64, list_id: u32, w: &WriteUsingToken) -> ScsiOutcome {
    tokio::time::timeout(STEP, s.write_using_token(lun, list_id, w)).await.expect("WUT hung").expect("WUT sent")
}

/// WRITE USING TOKEN that must be GOOD.
#[track_caller]
pub fn wut_ok<'a>(
    s: &'a Session,
    lun: u64,
    list_id: u32,
    w: &'a WriteUsingToken,
) -> impl std::future::Future<Output = ()> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        let o = wut_raw(s, lun, list_id, w).await;
        assert!(o.is_good(), "{caller}: WRITE USING TOKEN (list {list_id}, ranges {:?}): {}", w.ranges, describe(&o));
    }
}

/// The outcome must be CHECK CONDITION with this sense key and ASC/ASCQ.
#[track_caller]
pub fn expect_sense(o: &ScsiOutcome, key: SenseKey, asc: Asc, what: &str) -> oxcopy_initiator::Sense {
    assert!(o.is_check_condition(), "{what}: expected CHECK CONDITION, got {}", describe(o));
    let s = o.sense_info().expect("sense data");
    assert_eq!(
        (s.key, s.asc, s.ascq),
        (key.0, asc.asc(), asc.ascq()),
        "{what}: sense {s:?} (want {:02x}/{:02x}h/{:02x}h)",
        key.0,
        asc.asc(),
        asc.ascq()
    );
    s
}

/// ILLEGAL REQUEST, INVALID TOKEN OPERATION with ASCQ `ascq`.
#[track_caller]
pub fn expect_token_error(o: &ScsiOutcome, ascq: u8, what: &str) {
    assert!(o.is_check_condition(), "{what}: expected CHECK CONDITION, got {}", describe(o));
    let s = o.sense_info().expect("sense data");
    assert_eq!((s.key, s.asc, s.ascq), (SenseKey::ILLEGAL_REQUEST.0, 0x23, ascq), "{what}: sense {s:?}");
}

/// Read-back helpers re-exported for the scenarios.
#[allow(unused_imports)]
pub use crate::xcopy_support::{fill_file, pattern, read, same, write, GIB, KIB, MIB};
