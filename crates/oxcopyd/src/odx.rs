//! Token copy (ODX) in the daemon: the [`RodManager`] built from the
//! copy-domain key, this data directory's copy-manager id, a per-start
//! generation and `[copy_domain]`; the spawner for IMMED copies; the
//! periodic reaper of expired tokens (and their snapshot space).

use crate::copy_domain::{CopyDomainConfig, TokenScope};
use oxcopy_copy::{CopyDomainKey, RodConfig, RodManager, Spawner, SystemClock};
use oxcopy_scsi::{LuRegistry, Metrics};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often expired tokens are reaped besides on every token command.
pub const REAP_INTERVAL: Duration = Duration::from_secs(1);
/// Background (IMMED) copies running at once at most.
pub const MAX_BACKGROUND_COPIES: usize = 16;

/// Runs each background copy on a thread of its own (their number is
/// bounded by the manager's `max_background`).
#[derive(Debug, Default)]
pub struct ThreadSpawner;

impl Spawner for ThreadSpawner {
    fn spawn(&self, job: Box<dyn FnOnce() + Send>) -> Result<(), Box<dyn FnOnce() + Send>> {
        // `Builder::spawn` consumes the closure even on failure; keep it in
        // a slot so it can be handed back.
        let slot = Arc::new(parking_lot::Mutex::new(Some(job)));
        let theirs = slot.clone();
        let spawned = std::thread::Builder::new().name("oxcopy-odx".into()).spawn(move || {
            if let Some(job) = theirs.lock().take() {
                job();
            }
        });
        match spawned {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a background copy thread; running it in the foreground");
                let job = slot.lock().take();
                job.map_or(Ok(()), Err)
            }
        }
    }
}

/// The token manager for this daemon.
pub fn rod_manager(cfg: &CopyDomainConfig, key: CopyDomainKey, manager_id: [u8; 16], metrics: Metrics) -> RodManager {
    // The daemon is where randomness comes from: the engine is handed it.
    let mut rng = StdRng::from_entropy();
    let rod = RodConfig {
        key,
        manager_id,
        // Tokens of an earlier run are "unknown", not "remote".
        generation: rng.next_u64(),
        scope: match cfg.token_scope {
            TokenScope::Domain => oxcopy_copy::TokenScope::Domain,
            TokenScope::Initiator => oxcopy_copy::TokenScope::Initiator,
        },
        default_inactivity_timeout: cfg.default_inactivity_timeout_secs,
        max_inactivity_timeout: cfg.max_inactivity_timeout_secs,
        max_tokens: usize::try_from(cfg.max_tokens).unwrap_or(usize::MAX),
        max_tokens_per_initiator: usize::try_from(cfg.max_tokens_per_initiator).unwrap_or(usize::MAX),
        max_snapshot_bytes: cfg.max_snapshot_bytes,
        max_snapshot_bytes_per_initiator: cfg.max_snapshot_bytes_per_initiator,
        max_background: MAX_BACKGROUND_COPIES,
    };
    let m = RodManager::new(rod, Arc::new(SystemClock), Box::new(rng), Arc::new(metrics));
    m.set_spawner(Some(Arc::new(ThreadSpawner)));
    m
}

/// Reap expired and revoked tokens every [`REAP_INTERVAL`] until shutdown
/// (dropping a snapshot may close a file with many extents: off the reactor).
pub async fn reap_periodically(registry: Arc<LuRegistry>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(REAP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let rod = registry.rod();
                let _ = tokio::task::spawn_blocking(move || rod.reap()).await;
            }
            _ = async { let _ = shutdown.wait_for(|v| *v).await; } => return,
        }
    }
}

/// Remove named temporaries a crashed daemon left beside the LUN files
/// (snapshot/scratch files are unlinked O_TMPFILEs where the filesystem
/// supports them; elsewhere they carry a hidden name for an instant).
pub fn remove_stale_temporaries(cfg: &crate::config::Config) {
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    for l in cfg.targets.iter().flat_map(|t| &t.luns) {
        let dir = match l.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    for dir in dirs {
        match oxcopy_storage::remove_stale_temporaries(&dir) {
            Ok(gone) => {
                for p in gone {
                    tracing::info!(path = %p.display(), "removed a temporary file left by an earlier run");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot clean up temporary files"),
        }
    }
}
