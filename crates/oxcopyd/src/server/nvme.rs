//! NVMe over TCP: the subsystems served (`[[subsystem]]`), their namespaces
//! (own files, or the logical units of iSCSI LUNs on the same files), the
//! controllers hosts create, and the listeners. One task per connection
//! (`nvme_conn`) drives the transport core of `oxcopy-nvme`; the admin queue's
//! commands go to the controller model, the I/O queues' to the NVM command
//! set on the I/O pool — through the same copy engine, range locks and write
//! hooks as SCSI.

use super::nvme_metrics::NvmeMetrics;
use crate::config::Config;
use crate::identity::Identities;
use crate::subsystems::{SubsystemConfig, DISCOVERY_NQN};
use anyhow::{Context, Result};
use oxcopy_copy::{CancelToken, Unit};
use oxcopy_nvme::controller::{Controller, Limits, SubsystemInfo};
use oxcopy_nvme::model::{CopyLimits, NamespaceInfo};
use oxcopy_nvme::namespace::{Namespace, NsUnit};
use oxcopy_nvme::transport::TransportConfig;
use oxcopy_nvme::wire::log::{AdrFam, DiscoveryEntry, SecType, SubType, TrType};
use oxcopy_scsi::LogicalUnit;
use oxcopy_storage::{FileStorage, OpenOptions, Storage};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Largest data transfer of one NVMe command (MDTS): 1 MiB.
pub const NVME_MDTS: u32 = 1 << 20;
/// In-capsule data an I/O queue accepts (IOCCSZ): 16 KiB.
pub const NVME_IN_CAPSULE: u32 = 16 * 1024;
/// I/O queues a controller may have.
pub const NVME_MAX_IO_QUEUES: u16 = 16;
/// Entries per I/O queue (MQES + 1).
pub const NVME_QUEUE_DEPTH: u16 = 128;
/// Write data one queue holds at once (gathered or executing); the R2T of
/// a further write waits until some is released.
pub const NVME_WRITE_BYTES_PER_QUEUE: usize = 4 << 20;
/// NVMe/TCP connections (queues) open at once, per `server.max_sessions`:
/// with the per-queue bounds, what bounds the front end's memory.
pub const NVME_QUEUES_PER_SESSION: usize = 4;

/// Identify Controller model number.
const MODEL: &str = "oxcopy NVMe/TCP";
/// Identify Controller firmware revision.
const FIRMWARE: &str = "0.1";

/// One subsystem as served.
pub(crate) struct Subsys {
    pub(crate) listen: Vec<SocketAddr>,
    pub(crate) info: Arc<SubsystemInfo>,
    pub(crate) namespaces: BTreeMap<u32, Arc<Namespace>>,
}

impl Subsys {
    /// The namespace `nsid`, if attached.
    pub(crate) fn namespace(&self, nsid: u32) -> Option<Arc<Namespace>> {
        self.namespaces.get(&nsid).cloned()
    }
}

/// A controller: made by a Connect on an admin queue, shared by the I/O
/// queues connected to it, gone when its admin queue closes or its
/// keep-alive timer expires.
pub(crate) struct Ctrl {
    pub(crate) cntlid: u16,
    pub(crate) subnqn: String,
    pub(crate) hostnqn: String,
    pub(crate) model: Mutex<Controller>,
    /// Set when the controller ends: its queues close.
    pub(crate) gone: watch::Sender<bool>,
    /// Commands executing on its I/O queues, by (queue, command id): Abort
    /// cancels them.
    pub(crate) running: Mutex<HashMap<(u16, u16), CancelToken>>,
}

/// Everything the NVMe front end serves.
pub(crate) struct NvmeService {
    pub(crate) subsystems: HashMap<String, Arc<Subsys>>,
    controllers: Mutex<HashMap<u16, Arc<Ctrl>>>,
    next_cntlid: AtomicU16,
    pub(crate) metrics: NvmeMetrics,
    pub(crate) transport: TransportConfig,
    /// The LU registry: where copies count their bytes (one
    /// `oxcopy_copy_bytes_total` for every protocol) and the copy chunk size.
    pub(crate) registry: Arc<oxcopy_scsi::LuRegistry>,
    /// `server.poll_before_sleep`.
    pub(crate) poll_budget: Duration,
    /// Connections open now, and the most allowed.
    open: std::sync::atomic::AtomicUsize,
    max_open: usize,
    /// The listeners' bound addresses (for the discovery log).
    bound: Mutex<Vec<(SocketAddr, SocketAddr)>>,
}

/// A UUID (RFC 4122 version 4 layout) from 16 stable random bytes.
fn uuid_from(id: &[u8; 16]) -> [u8; 16] {
    let mut u = *id;
    u.reverse();
    u[6] = (u[6] & 0x0F) | 0x40;
    u[8] = (u[8] & 0x3F) | 0x80;
    u
}

impl NvmeService {
    /// Opens every namespace of `cfg.subsystems` (creating missing files),
    /// sharing the logical units of LUNs on the same files (`luns`).
    pub(crate) fn open(
        cfg: &Config,
        luns: &BTreeMap<(String, u16), Arc<LogicalUnit>>,
        ids: &mut Identities,
        registry: Arc<oxcopy_scsi::LuRegistry>,
    ) -> Result<Self> {
        let mut subsystems = HashMap::new();
        for s in &cfg.subsystems {
            let sub = open_subsystem(cfg, s, luns, ids)?;
            subsystems.insert(s.nqn.clone(), Arc::new(sub));
        }
        let pdu_timeout = Duration::from_secs(cfg.pdu_timeout_secs.max(1));
        let transport = TransportConfig {
            header_digest: true,
            data_digest: true,
            maxh2cdata: 128 * 1024,
            in_capsule_data: NVME_IN_CAPSULE,
            max_data_transfer: NVME_MDTS,
            max_write_bytes: NVME_WRITE_BYTES_PER_QUEUE,
            max_c2h_data: 256 * 1024,
            pdu_timeout,
            write_data_timeout: Duration::from_secs(cfg.write_data_timeout_secs).max(pdu_timeout),
            connect_timeout: Duration::from_secs(cfg.login_timeout_secs.max(1)),
            ..TransportConfig::default()
        };
        Ok(NvmeService {
            subsystems,
            controllers: Mutex::new(HashMap::new()),
            next_cntlid: AtomicU16::new(1),
            metrics: NvmeMetrics::default(),
            transport,
            registry,
            poll_budget: Duration::from_micros(cfg.poll_before_sleep_us),
            open: std::sync::atomic::AtomicUsize::new(0),
            max_open: (cfg.max_sessions as usize).saturating_mul(NVME_QUEUES_PER_SESSION),
            bound: Mutex::new(Vec::new()),
        })
    }

    /// Every address a subsystem listens on (each once).
    pub(crate) fn listen_addrs(&self, cfg: &Config) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = Vec::new();
        for s in &cfg.subsystems {
            for a in &s.listen {
                if !out.contains(a) {
                    out.push(*a);
                }
            }
        }
        out
    }

    /// Records that the configured address `configured` is bound at `bound`.
    pub(crate) fn bound(&self, configured: SocketAddr, bound: SocketAddr) {
        self.bound.lock().push((configured, bound));
    }

    /// Where the configured address `configured` is bound.
    pub(crate) fn bound_addr(&self, configured: SocketAddr) -> Option<SocketAddr> {
        self.bound.lock().iter().find(|(c, _)| *c == configured).map(|(_, b)| *b)
    }

    /// Whether subsystem `s` listens on the listener bound at `local`.
    pub(crate) fn listens(&self, s: &Subsys, local: SocketAddr) -> bool {
        self.bound.lock().iter().any(|(c, b)| *b == local && s.listen.contains(c))
    }

    /// The discovery subsystem of the listener bound at `local`: every
    /// subsystem listening there.
    pub(crate) fn discovery(&self, local: SocketAddr) -> Arc<SubsystemInfo> {
        let configured: Vec<SocketAddr> =
            self.bound.lock().iter().filter(|(_, b)| *b == local).map(|(c, _)| *c).collect();
        let mut entries = Vec::new();
        let mut nqns: Vec<&String> = self.subsystems.keys().collect();
        nqns.sort();
        for nqn in nqns {
            let s = &self.subsystems[nqn];
            if s.listen.iter().any(|a| configured.contains(a)) {
                entries.push(DiscoveryEntry {
                    trtype: TrType::TCP,
                    adrfam: if local.is_ipv4() { AdrFam::IPV4 } else { AdrFam::IPV6 },
                    subtype: SubType::NVME,
                    // No secure channel required; SQ flow control not
                    // disabled (bits 1:0 = 10b: not required).
                    treq: 0b10,
                    portid: 1,
                    cntlid: 0xFFFF,
                    asqsz: 32,
                    eflags: 0,
                    trsvcid: local.port().to_string(),
                    subnqn: nqn.clone(),
                    traddr: local.ip().to_string(),
                    sectype: SecType::NONE,
                });
            }
        }
        let _ = DISCOVERY_NQN;
        Arc::new(SubsystemInfo::discovery(&serial_of(DISCOVERY_NQN), MODEL, FIRMWARE, entries))
    }

    /// A place for one more connection (`None`: at the limit); the
    /// connection holds it until it closes.
    pub(crate) fn open_slot(self: &Arc<Self>) -> Option<OpenSlot> {
        let mut n = self.open.load(Ordering::Relaxed);
        loop {
            if n >= self.max_open {
                return None;
            }
            match self.open.compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(OpenSlot(self.clone())),
                Err(now) => n = now,
            }
        }
    }

    /// A fresh controller id (1..=FFEFh), not in use.
    pub(crate) fn add_controller(&self, make: impl FnOnce(u16) -> Ctrl) -> Option<Arc<Ctrl>> {
        let mut ctrls = self.controllers.lock();
        for _ in 0..0xFFF0u32 {
            let id = self.next_cntlid.fetch_add(1, Ordering::Relaxed);
            let id = if (1..=0xFFEF).contains(&id) {
                id
            } else {
                self.next_cntlid.store(2, Ordering::Relaxed);
                1
            };
            if let std::collections::hash_map::Entry::Vacant(v) = ctrls.entry(id) {
                let c = Arc::new(make(id));
                v.insert(c.clone());
                return Some(c);
            }
        }
        None
    }

    /// The controller `cntlid`.
    pub(crate) fn controller(&self, cntlid: u16) -> Option<Arc<Ctrl>> {
        self.controllers.lock().get(&cntlid).cloned()
    }

    /// The controller ends: its queues close, its id is free again.
    pub(crate) fn remove_controller(&self, c: &Ctrl) {
        self.controllers.lock().remove(&c.cntlid);
        c.gone.send_replace(true);
        for (_, t) in c.running.lock().drain() {
            t.cancel();
        }
    }
}

/// One open NVMe/TCP connection, counted against the limit until dropped.
pub(crate) struct OpenSlot(Arc<NvmeService>);

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

fn open_subsystem(
    cfg: &Config,
    s: &SubsystemConfig,
    luns: &BTreeMap<(String, u16), Arc<LogicalUnit>>,
    ids: &mut Identities,
) -> Result<Subsys> {
    let mut namespaces = BTreeMap::new();
    for n in &s.namespaces {
        let (unit, id): (Arc<dyn Unit>, [u8; 16]) = match &n.shares_lun {
            Some((iqn, lun)) => {
                let lu = luns
                    .get(&(iqn.clone(), *lun))
                    .with_context(|| format!("namespace {} of {}: LUN {lun} of {iqn} is not open", n.nsid, s.nqn))?;
                let id = lu.id();
                (lu.clone() as Arc<dyn Unit>, id)
            }
            None => {
                if let Some(dir) = n.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                }
                let f = FileStorage::open(&n.path, &OpenOptions { create_size: n.size, read_only: n.read_only })
                    .with_context(|| format!("opening namespace {} of {} at {}", n.nsid, s.nqn, n.path.display()))?;
                f.set_write_behind(cfg.write_behind);
                let storage: Arc<dyn Storage> = Arc::new(f);
                // NVMe namespaces get their stable identity the way LUNs do
                // (no subsystem NQN is a target IQN: the keys never collide).
                let id = ids.naa(&s.nqn, u16::try_from(n.nsid).unwrap_or(u16::MAX));
                let unit = NsUnit::new(id, n.block_size, storage);
                unit.set_write_protected(n.read_only);
                (Arc::new(unit) as Arc<dyn Unit>, id)
            }
        };
        let info = NamespaceInfo {
            nsid: n.nsid,
            block_size: unit.block_size(),
            blocks: unit.num_blocks(),
            nguid: id,
            uuid: uuid_from(&id),
            read_only: n.read_only || unit.write_protected(),
            deallocate: true,
            copy: CopyLimits::default(),
        };
        let ns = Namespace::new(info, unit).map_err(|e| anyhow::anyhow!("namespace {} of {}: {e}", n.nsid, s.nqn))?;
        namespaces.insert(n.nsid, Arc::new(ns));
    }
    let infos: Vec<NamespaceInfo> = namespaces.values().map(|n| n.info().clone()).collect();
    let mut info = SubsystemInfo::nvm(&s.nqn, &serial_of(&s.nqn), MODEL, FIRMWARE, infos);
    info.allowed_hosts = s.hosts.clone().unwrap_or_default();
    info.limits = Limits {
        max_io_queues: NVME_MAX_IO_QUEUES,
        queue_depth: NVME_QUEUE_DEPTH,
        mdts_bytes: NVME_MDTS,
        in_capsule_data: NVME_IN_CAPSULE,
        max_aer: 4,
        max_namespaces: crate::subsystems::MAX_NSID,
    };
    Ok(Subsys { listen: s.listen.clone(), info: Arc::new(info), namespaces })
}

/// A stable 20-character serial number for a subsystem (from its NQN).
fn serial_of(nqn: &str) -> String {
    let h = crc32c::crc32c(nqn.as_bytes());
    let h2 = crc32c::crc32c_append(h, b"oxcopy");
    format!("OX{h:08X}{h2:08X}")
}

/// Accept NVMe/TCP connections on `listeners` until shutdown; each
/// connection is served by its own task, waited for (bounded) at shutdown.
pub(crate) async fn accept_all(
    listeners: Vec<tokio::net::TcpListener>,
    svc: Arc<NvmeService>,
    shared: Arc<super::Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel::<(tokio::net::TcpStream, SocketAddr)>(64);
    let mut accepts = tokio::task::JoinSet::new();
    for l in listeners {
        let tx = conn_tx.clone();
        let mut sd = shutdown.clone();
        accepts.spawn(async move {
            loop {
                tokio::select! {
                    r = l.accept() => match r {
                        Ok(c) => { if tx.send(c).await.is_err() { return; } }
                        Err(e) => { tracing::warn!("NVMe/TCP accept: {e}"); tokio::time::sleep(Duration::from_millis(50)).await; }
                    },
                    _ = async { let _ = sd.wait_for(|v| *v).await; } => return,
                }
            }
        });
    }
    drop(conn_tx);
    let mut sd = shutdown.clone();
    loop {
        tokio::select! {
            c = conn_rx.recv() => match c {
                Some((stream, peer)) => {
                    let Some(slot) = svc.open_slot() else {
                        tracing::warn!(%peer, limit = svc.max_open, "NVMe/TCP connection refused: as many queues open as 4 × server.max_sessions");
                        drop(stream);
                        continue;
                    };
                    let (svc, shared, sd) = (svc.clone(), shared.clone(), shutdown.clone());
                    conns.spawn(async move {
                        super::nvme_conn::serve(stream, peer, svc, shared, sd).await;
                        drop(slot);
                    });
                }
                None => break,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = async { let _ = sd.wait_for(|v| *v).await; } => break,
        }
    }
    accepts.abort_all();
    let all = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(super::SHUTDOWN_GRACE + Duration::from_secs(2), all).await.is_err() {
        tracing::warn!("NVMe/TCP connections still open after the shutdown grace period; abandoning them");
        conns.abort_all();
    }
}
