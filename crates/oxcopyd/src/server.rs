//! The tokio driver of the iSCSI target, one module per job:
//!
//! - `startup`: open the LUNs, bind the portals, accept connections, shut
//!   down (`start`, `Running`).
//! - `login`: the login phase and the daemon's login policy: allow-lists,
//!   CHAP, the session limit, slowing down repeated authentication failures.
//! - `connection`: one task per connection, feeding what it reads, the
//!   results of commands and the clock to the state machines of
//!   `oxcopy-iscsi` and carrying out their actions; the protocol core
//!   decides everything else (sequencing, data transfer, timers) and keeps
//!   the one table of the connection's tasks.
//! - `writer`: the task that writes a connection's PDUs.
//! - `pool`: the threads executing SCSI commands.
//! - `reload`: applying a changed configuration to the running daemon
//!   (SIGHUP).
//! - `nvme`, `nvme_conn`, `nvme_metrics`: the NVMe/TCP front end — the
//!   subsystems and their namespaces, controllers, listeners, one task per
//!   queue driving `oxcopy-nvme`'s transport core; I/O commands run on the
//!   same pool and engine as SCSI commands.

use crate::config::Config;
use oxcopy_iscsi::budget::WriteBudget;
use oxcopy_iscsi::chap::TargetChapConfig;
use oxcopy_iscsi::target::Refusal;
use oxcopy_scsi::{LogicalUnit, ScsiTarget};
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub mod admin;
mod connection;
mod login;
mod lun;
mod nvme;
mod nvme_conn;
mod nvme_metrics;
mod poll;
mod pool;
mod reload;
mod startup;
mod writer;

pub use lun::LunUnavailable;
pub use reload::ReloadSummary;
pub use startup::{start, Running};

/// MaxRecvDataSegmentLength we declare: the largest data segment we accept.
pub const OUR_MAX_RECV_DATA_SEGMENT: u32 = 256 * 1024;
/// Largest write we buffer for one command (matches the Block Limits VPD
/// MAXIMUM TRANSFER LENGTH of 16 MiB, plus room for parameter lists).
pub const MAX_WRITE_BUFFER: u32 = 16 * 1024 * 1024;
/// How long shutdown waits for in-flight commands before abandoning them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
    /// The entry of target `t`, served by `scsi`.
    fn new(t: &crate::config::TargetConfig, scsi: Arc<ScsiTarget>) -> Self {
        TargetEntry { scsi, alias: t.alias.clone(), initiators: t.initiators.clone(), tpgt: 1, chap: t.chap.clone() }
    }

    /// Whether the allow-list (`[[target]] initiators`) admits `initiator`.
    fn admits(&self, initiator: &str) -> bool {
        self.initiators.as_ref().is_none_or(|list| list.iter().any(|i| i.eq_ignore_ascii_case(initiator)))
    }
}

/// What a reload replaces as a whole: the configuration served, the
/// targets as login sees them, every LUN. Readers take the current one
/// ([`Shared::live`]) and keep it for as long as they need a consistent view.
struct Live {
    targets: HashMap<String, TargetEntry>,
    /// Every LUN served, by (target, LUN id).
    luns: BTreeMap<(String, u16), Arc<LogicalUnit>>,
    /// The `[[volume]]`s (built at start; a reload cannot change them).
    volumes: Arc<lun::Volumes>,
    cfg: Config,
}

/// State shared by every connection.
struct Shared {
    live: RwLock<Arc<Live>>,
    /// Bumped after every applied reload: sessions then check that their
    /// target still exists and still admits their initiator.
    reconfigured: watch::Sender<u64>,
    next_tsih: AtomicU16,
    next_stat_sn: AtomicU64,
    /// Where SCSI commands run.
    io_pool: pool::IoPool,
    /// Recent CHAP failures per source address (slows down guessing).
    auth_failures: login::AuthFailures,
    /// Normal sessions logged in (`server.max_sessions`); a login in
    /// progress takes its place only when it completes.
    sessions: Arc<AtomicUsize>,
    /// Write data buffered daemon-wide (`server.write_buffer_limit`); each
    /// session gets a share of it (`server.write_buffer_per_session`).
    write_budget: Arc<WriteBudget>,
    /// Read data held until sent, daemon-wide (`server.read_buffer_limit`);
    /// each session gets a share of it (`server.read_buffer_per_session`).
    read_budget: Arc<WriteBudget>,
}

impl Shared {
    /// The configuration and targets being served now.
    fn live(&self) -> Arc<Live> {
        self.live.read().clone()
    }

    /// A fresh TSIH (never 0).
    fn tsih(&self) -> u16 {
        let t = self.next_tsih.fetch_add(1, Ordering::Relaxed);
        if t != 0 {
            t
        } else {
            self.next_tsih.fetch_add(1, Ordering::Relaxed)
        }
    }
}

/// Log the commands a connection's core answered TASK SET FULL because
/// their data did not fit a buffer budget (rate-limited per initiator and
/// limit, with the registry's other resource refusals).
fn log_budget_refusals(target: Option<&ScsiTarget>, initiator: &str, refusals: Vec<Refusal>) {
    let Some(target) = target else { return };
    for r in refusals {
        let lu = format!("{}/{}", target.name(), oxcopy_scsi::decode_lun(r.lun).map_or(-1, i32::from));
        let what = if r.write { "write (buffering its data)" } else { "read (holding its data-in)" };
        target.registry().refusals().refused(initiator, &lu, r.limit, what);
    }
}

/// Wait until `at` (as a protocol core asked); forever when `None`.
async fn wait_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
