//! Storage this gateway shares with others: the RBD images it serves, by
//! cluster. A token made on another gateway for an image of a cluster we
//! also reach is read straight from that cluster (see `domain`), through
//! the connection of one of our LUNs on it; and at start, the snapshots of
//! tokens whose gateway died are swept from the pools we serve.

use oxcopy_rbd::RbdStorage;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The RBD images this process has open (LUNs opened at start or by a
/// reload; a dropped LUN's entry dies with it).
static STORES: Mutex<Vec<Weak<RbdStorage>>> = Mutex::new(Vec::new());

/// Remember an opened RBD LUN's storage.
pub fn register(s: &Arc<RbdStorage>) {
    let mut v = STORES.lock();
    v.retain(|w| w.strong_count() > 0);
    v.push(Arc::downgrade(s));
}

/// The live RBD stores.
pub fn all() -> Vec<Arc<RbdStorage>> {
    STORES.lock().iter().filter_map(Weak::upgrade).collect()
}

/// The running sweep, and the flag that asks it to stop.
static SWEEP: Mutex<Option<JoinHandle<()>>> = Mutex::new(None);
static SWEEP_STOP: AtomicBool = AtomicBool::new(false);

/// A store of ours connected to the cluster a token's `locator` names.
pub fn for_locator(locator: &[u8; 32]) -> Option<Arc<RbdStorage>> {
    let loc = oxcopy_rbd::locator::SnapshotLocator::decode(locator)?;
    all().into_iter().find(|s| loc.same_cluster(&s.cluster_fsid()))
}

/// Sweep the pools of our RBD LUNs (one store per pool) for snapshots of
/// tokens whose gateway died, on a thread of its own (it may take a while
/// on a large pool; nothing waits for it).
pub fn spawn_orphan_sweep() {
    let stores = all();
    if stores.is_empty() {
        return;
    }
    SWEEP_STOP.store(false, Ordering::Release);
    let r = std::thread::Builder::new().name("oxcopy-rbd-sweep".into()).spawn(move || {
        let mut seen: Vec<([u8; 16], String)> = Vec::new();
        for s in stores {
            if SWEEP_STOP.load(Ordering::Acquire) {
                return;
            }
            let pool = s.name().split('/').next().unwrap_or_default().to_owned();
            let key = (s.cluster_fsid(), pool);
            if seen.contains(&key) {
                continue;
            }
            match s.remove_orphan_snapshots(&|| SWEEP_STOP.load(Ordering::Acquire)) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(pool = %key.1, removed = n, "removed snapshots of tokens whose gateway is gone")
                }
                Err(e) => tracing::warn!(pool = %key.1, "cannot sweep for orphan token snapshots: {e}"),
            }
            seen.push(key);
        }
    });
    match r {
        Ok(h) => *SWEEP.lock() = Some(h),
        Err(e) => tracing::warn!("cannot start the orphan snapshot sweep: {e}"),
    }
}

/// At shutdown: ask the sweep to stop after the pool it is on and wait for
/// it at most `grace`, so that no librados call is running (and no RBD
/// connection is held by it) when the process tears its connections down.
pub fn stop_sweep(grace: Duration) {
    SWEEP_STOP.store(true, Ordering::Release);
    let Some(h) = SWEEP.lock().take() else { return };
    let deadline = Instant::now() + grace;
    while !h.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if h.is_finished() {
        let _ = h.join();
    } else {
        tracing::warn!("the orphan snapshot sweep did not stop within {grace:?}");
    }
}
