//! Fixtures for the trust tests (access control, resource limits, soak):
//! an in-process daemon from a caller-supplied `[server]` section and
//! target list, sessions as a chosen initiator, sense helpers.
#![allow(dead_code)]

pub use crate::common::within;
use oxcopy_initiator::{ScsiOutcome, Session, SessionConfig};
pub use oxcopy_testkit::{assert_same as same, file_bytes, fnv, pattern, DaemonConfig, Lun, Target};
use oxcopyd::config::Config;
use oxcopyd::Running;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Generous bound for one exchange that should take milliseconds.
pub const STEP: Duration = Duration::from_secs(20);

/// An in-process daemon on 127.0.0.1:0.
pub struct TDaemon {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl TDaemon {
    /// The configuration `config` makes of the temp dir (where the LUN
    /// files go) and a `[server]` with `data_dir` there and no keepalive.
    pub async fn start(config: impl FnOnce(&Path, DaemonConfig) -> DaemonConfig) -> TDaemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let path =
            config(d, DaemonConfig::new(d.join("state")).server("nop_interval", 0)).write(d.join("oxcopyd.toml"));
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

/// SHA-256-free whole-file fingerprint (FNV-1a 64 over the bytes).
pub fn fingerprint(path: &Path) -> u64 {
    let data = std::fs::read(path).expect("read backing file");
    fnv(&data)
}

/// (sense key, ASC, ASCQ) of a CHECK CONDITION outcome.
#[track_caller]
pub fn sense3(o: &ScsiOutcome) -> (u8, u8, u8) {
    let s = o.sense_info().unwrap_or_else(|| panic!("expected sense, got status {:#04x}", o.status));
    (s.key, s.asc, s.ascq)
}

/// ILLEGAL REQUEST / LOGICAL UNIT NOT SUPPORTED.
pub const LU_NOT_SUPPORTED: (u8, u8, u8) = (0x05, 0x25, 0x00);
