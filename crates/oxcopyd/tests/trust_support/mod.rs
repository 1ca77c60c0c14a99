//! Fixtures for the trust tests (access control, resource limits, soak):
//! an in-process daemon from a caller-supplied `[server]` section and
//! target list, sessions as a chosen initiator, sense helpers.
#![allow(dead_code)]

use oxcopy_initiator::{ScsiOutcome, Session, SessionConfig};
use oxcopyd::config::Config;
use oxcopyd::Running;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Generous bound for one exchange that should take milliseconds.
pub const STEP: Duration = Duration::from_secs(20);

/// Bound any future by `d`, naming what hung.
pub async fn within<F: std::future::Future>(d: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(d, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {d:?}"),
    }
}

/// An in-process daemon on 127.0.0.1:0.
pub struct TDaemon {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl TDaemon {
    /// `server` is extra `[server]` lines; `targets` the `[[target]]`
    /// sections, where `{d}` stands for the temp dir.
    pub async fn start(server: &str, targets: &str) -> TDaemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display().to_string();
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\ndata_dir = \"{d}/state\"\nnop_interval = 0\n{server}\n{}",
            targets.replace("{d}", &d)
        );
        let path = dir.path().join("oxcopyd.toml");
        std::fs::write(&path, text).expect("write config");
        let cfg = Config::from_file(&path).expect("test config validates");
        let running = within(STEP, "daemon start", oxcopyd::start(cfg)).await.expect("daemon starts");
        let addr = running.addrs[0];
        TDaemon { running: Some(running), addr, dir }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn registry(&self) -> &std::sync::Arc<oxcopy_scsi::LuRegistry> {
        &self.running.as_ref().expect("running").registry
    }

    pub async fn try_session(&self, target: &str, initiator: &str) -> oxcopy_initiator::Result<Session> {
        within(STEP, "login", Session::connect(self.addr, cfg(Some(target), initiator))).await
    }

    pub async fn session(&self, target: &str, initiator: &str) -> Session {
        self.try_session(target, initiator).await.unwrap_or_else(|e| panic!("login of {initiator} to {target}: {e}"))
    }

    pub async fn discover(&self, initiator: &str) -> Vec<String> {
        let t = within(STEP, "discovery", Session::discover(self.addr, cfg(None, initiator))).await.expect("discovery");
        t.into_iter().map(|t| t.name).collect()
    }

    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            within(Duration::from_secs(60), "shutdown", r.shutdown()).await.expect("shutdown");
        }
    }
}

/// A session configuration as `initiator` (discovery when `target` is None).
pub fn cfg(target: Option<&str>, initiator: &str) -> SessionConfig {
    let base = match target {
        Some(t) => SessionConfig::for_target(t),
        None => SessionConfig::discovery(),
    };
    SessionConfig {
        initiator_name: initiator.into(),
        command_timeout: Duration::from_secs(60),
        management_timeout: Duration::from_secs(10),
        login_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        keepalive_interval: None,
        ..base
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), distinct per seed.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Read `len` bytes at `offset` of a backing file.
pub fn file_bytes(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).expect("open backing file");
    let mut v = vec![0u8; len];
    f.read_exact_at(&mut v, offset).expect("read backing file");
    v
}

/// SHA-256-free whole-file fingerprint (FNV-1a 64 over the bytes).
pub fn fingerprint(path: &Path) -> u64 {
    let data = std::fs::read(path).expect("read backing file");
    fnv(&data)
}

/// FNV-1a 64.
pub fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Compare without dumping megabytes on failure.
#[track_caller]
pub fn same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: first difference at byte {i} (got {:#04x}, want {:#04x})", got[i], want[i]);
    }
}

/// (sense key, ASC, ASCQ) of a CHECK CONDITION outcome.
#[track_caller]
pub fn sense3(o: &ScsiOutcome) -> (u8, u8, u8) {
    let s = o.sense_info().unwrap_or_else(|| panic!("expected sense, got status {:#04x}", o.status));
    (s.key, s.asc, s.ascq)
}

/// ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED.
pub const LU_NOT_SUPPORTED: (u8, u8, u8) = (0x05, 0x25, 0x00);
