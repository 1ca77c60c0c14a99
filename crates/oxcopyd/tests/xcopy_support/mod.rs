//! Fixtures for the EXTENDED COPY end-to-end tests: an in-process daemon
//! with three targets (one open, one whose allow-list admits us, one whose
//! allow-list does not), a metrics endpoint and data helpers.
#![allow(dead_code)]

pub mod scenarios;

use bytes::Bytes;
use oxcopy_initiator::scsi::Sense;
use oxcopy_initiator::xcopy::{Cscd, Designator, ListIdUsage, ParamList, Segment};
use oxcopy_initiator::{ScsiOutcome, Session, SessionConfig};
use oxcopy_scsi::{Asc, SenseKey};
pub use oxcopy_testkit::{assert_same as same, file_bytes, pattern};
use oxcopy_testkit::{DaemonConfig, Lun, Target};
use oxcopyd::config::Config;
use oxcopyd::Running;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Open target: LUN 0 and 1 with 512-byte blocks, LUN 2 with 4096.
pub const OPEN: &str = "iqn.2026-11.dev.oxcopy:xcopy-open";
/// A target whose allow-list admits [`INITIATOR`].
pub const SHARED: &str = "iqn.2026-11.dev.oxcopy:xcopy-shared";
/// A target whose allow-list admits only [`OTHER_INITIATOR`].
pub const PRIVATE: &str = "iqn.2026-11.dev.oxcopy:xcopy-private";
/// Our initiator.
pub const INITIATOR: &str = "iqn.2026-11.dev.oxcopy:xcopy-host";
/// The only initiator [`PRIVATE`] admits.
pub const OTHER_INITIATOR: &str = "iqn.2026-11.dev.oxcopy:xcopy-victim";

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * MIB;

/// Bound for one exchange.
pub const STEP: Duration = Duration::from_secs(60);

/// Sizes of the LUNs of a test daemon.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// LUN 0 and 1 of [`OPEN`] (512-byte blocks).
    pub open: u64,
    /// LUN 2 of [`OPEN`] (4096-byte blocks).
    pub open_4k: u64,
    /// LUN 0 of [`SHARED`] and of [`PRIVATE`].
    pub small: u64,
}

impl Default for Sizes {
    fn default() -> Self {
        Sizes { open: 256 * MIB, open_4k: 256 * MIB, small: 64 * MIB }
    }
}

/// The configuration: LUN files under `lun_dir`, state under `state_dir`.
pub fn config(lun_dir: &Path, state_dir: &Path, sizes: Sizes) -> DaemonConfig {
    let lun = |id: u32, name: &str, size: u64| Lun::new(id, lun_dir.join(name)).size(size);
    DaemonConfig::new(state_dir.join("state"))
        .server("metrics", "127.0.0.1:0")
        .server("nop_interval", 0)
        .target(
            Target::new(OPEN)
                .lun(lun(0, "open0.img", sizes.open))
                .lun(lun(1, "open1.img", sizes.open))
                .lun(lun(2, "open2.img", sizes.open_4k).block_size(4096)),
        )
        .target(Target::new(SHARED).initiators(&[INITIATOR]).lun(lun(0, "shared0.img", sizes.small)))
        .target(Target::new(PRIVATE).initiators(&[OTHER_INITIATOR]).lun(lun(0, "private0.img", sizes.small)))
}

/// An in-process daemon serving [`config`].
pub struct XDaemon {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub lun_dir: PathBuf,
    _state: tempfile::TempDir,
}

impl XDaemon {
    /// LUN files in a fresh temp dir.
    pub async fn start(sizes: Sizes) -> (XDaemon, tempfile::TempDir) {
        let luns = tempfile::tempdir().expect("tempdir");
        let d = XDaemon::start_in(luns.path(), sizes).await;
        (d, luns)
    }

    /// LUN files in `lun_dir` (e.g. a loop-mounted filesystem).
    pub async fn start_in(lun_dir: &Path, sizes: Sizes) -> XDaemon {
        let state = tempfile::tempdir().expect("tempdir");
        let path = config(lun_dir, state.path(), sizes).write(state.path().join("oxcopyd.toml"));
        let cfg = Config::from_file(&path).expect("config validates");
        let running = oxcopyd::start(cfg).await.expect("daemon starts");
        let addr = running.addrs[0];
        let metrics = running.metrics_addr.expect("metrics endpoint configured");
        XDaemon { running: Some(running), addr, metrics, lun_dir: lun_dir.to_path_buf(), _state: state }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.lun_dir.join(name)
    }

    pub async fn session(&self, target: &str) -> Session {
        self.session_as(target, INITIATOR).await
    }

    pub async fn session_with_isid(&self, target: &str, isid: [u8; 6]) -> Session {
        self.connect(target, INITIATOR, Some(isid)).await
    }

    pub async fn session_as(&self, target: &str, initiator: &str) -> Session {
        self.connect(target, initiator, None).await
    }

    async fn connect(&self, target: &str, initiator: &str, isid: Option<[u8; 6]>) -> Session {
        connect(self.addr, target, initiator, isid).await
    }

    /// The metrics exposition.
    pub async fn scrape(&self) -> String {
        oxcopyd::metrics_http::scrape(self.metrics).await.expect("scrape /metrics")
    }

    /// `oxcopy_copy_bytes_total{method=...}`.
    pub async fn copy_bytes(&self, method: &str) -> u64 {
        oxcopyd::metrics_http::sample(&self.scrape().await, "oxcopy_copy_bytes_total", &format!("method=\"{method}\""))
    }

    pub async fn shutdown(mut self) {
        shutdown(self.running.take()).await;
    }
}

/// Graceful shutdown of an in-process daemon (if still running), bounded.
pub async fn shutdown(running: Option<Running>) {
    if let Some(r) = running {
        tokio::time::timeout(Duration::from_secs(60), r.shutdown()).await.expect("shutdown hung").expect("shutdown");
    }
}

/// Log in to `target` at `addr` as `initiator` (with `isid` if given),
/// with generous command timeouts and no keepalive.
pub async fn connect(addr: SocketAddr, target: &str, initiator: &str, isid: Option<[u8; 6]>) -> Session {
    let cfg = SessionConfig {
        isid,
        initiator_name: initiator.into(),
        command_timeout: Duration::from_secs(600),
        management_timeout: Duration::from_secs(60),
        login_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        keepalive_interval: None,
        ..SessionConfig::for_target(target)
    };
    tokio::time::timeout(STEP, Session::connect(addr, cfg)).await.expect("login timed out").expect("login")
}

/// Write `data` at byte `off` of a backing file (the daemon sees it through
/// the page cache), in 16 MiB pieces.
pub fn fill_file(path: &Path, off: u64, data: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).expect("open LUN file");
    for (i, c) in data.chunks(16 << 20).enumerate() {
        f.write_all_at(c, off + (i as u64) * (16 << 20)).expect("write LUN file");
    }
}

/// Compare two byte ranges of (possibly two) files, 16 MiB at a time.
#[track_caller]
pub fn same_files(a: &Path, a_off: u64, b: &Path, b_off: u64, len: u64, what: &str) {
    let mut done = 0;
    while done < len {
        let n = (len - done).min(16 * MIB);
        same(&file_bytes(a, a_off + done, n), &file_bytes(b, b_off + done, n), &format!("{what} at +{done}"));
        done += n;
    }
}

/// Write through the initiator (WRITE (16) in ≤ 8 MiB commands).
pub async fn write(s: &Session, lun: u64, lba: u64, data: &[u8], bs: u32) {
    let per = (8 * MIB) as usize;
    for (i, c) in data.chunks(per).enumerate() {
        let at = lba + (i * per / bs as usize) as u64;
        s.write16(lun, at, Bytes::copy_from_slice(c), bs, false).await.expect("WRITE (16)");
    }
}

/// Read through the initiator (READ (16) in ≤ 8 MiB commands).
pub async fn read(s: &Session, lun: u64, lba: u64, len: u64, bs: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(len as usize);
    let per = 8 * MIB;
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(per);
        let d = s.read16(lun, lba + done / u64::from(bs), (n / u64::from(bs)) as u32, bs).await.expect("READ (16)");
        out.extend_from_slice(&d);
        done += n;
    }
    out
}

/// The designator of `lun` as seen by `s`.
pub async fn designator(s: &Session, lun: u64) -> Designator {
    s.lu_designator(lun).await.expect("VPD 83h designator")
}

/// A one-segment list copying `blocks` blocks between two CSCDs.
pub fn b2b_list(list_id: u8, src: Designator, dst: Designator, blocks: u16, src_lba: u64, dst_lba: u64) -> ParamList {
    ParamList {
        list_id,
        usage: ListIdUsage::Hold,
        cscds: vec![Cscd::new(src, 0), Cscd::new(dst, 0)],
        segments: vec![Segment::BlockToBlock { src: 0, dst: 1, dc: false, blocks, src_lba, dst_lba }],
    }
}

/// The parsed sense of a CHECK CONDITION.
#[track_caller]
pub fn sense_of(o: &ScsiOutcome) -> Sense {
    assert!(o.is_check_condition(), "expected CHECK CONDITION, got status {:#x}", o.status);
    o.sense_info().expect("sense data")
}

/// Assert the sense key and ASC/ASCQ, by their names.
#[track_caller]
pub fn expect_sense(o: &ScsiOutcome, key: SenseKey, asc: Asc, what: &str) -> Sense {
    let s = sense_of(o);
    assert_eq!((s.key, s.asc, s.ascq), (key.0, asc.asc(), asc.ascq()), "{what}: sense {s:?}");
    s
}
