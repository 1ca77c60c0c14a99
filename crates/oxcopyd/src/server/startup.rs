//! Start-up and shutdown: open every LUN, bind every portal, accept
//! connections (one task each), and on shutdown stop accepting, let the
//! connections finish (bounded) and flush every LUN.

use crate::config::Config;
use crate::identity::Identities;
use crate::server::connection;
use crate::server::login::AuthFailures;
use crate::server::pool::IoPool;
use crate::server::reload::ReloadSummary;
use crate::server::{Live, Shared, TargetEntry, SHUTDOWN_GRACE};
use anyhow::{Context, Result};
use oxcopy_iscsi::budget::WriteBudget;
use oxcopy_scsi::{AccessList, LogicalUnit, LuRegistry, Metrics, ScsiTarget};
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// Threads executing SCSI commands at most (commands beyond that queue).
const IO_THREADS: usize = 64;
/// An I/O thread idle this long exits.
const IO_THREAD_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// A running daemon (for the binary and for in-process tests).
pub struct Running {
    /// The addresses actually bound (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
    /// Where `GET /metrics` is served (port 0 resolved), when configured.
    pub metrics_addr: Option<SocketAddr>,
    /// Where the node link is served (port 0 resolved), when configured.
    pub node_link_addr: Option<SocketAddr>,
    /// This node's part in a copy domain of several nodes, if any.
    pub domain: Option<Arc<crate::domain::NodeDomain>>,
    /// The daemon-wide LU registry (copy records, metrics).
    pub registry: Arc<LuRegistry>,
    shutdown: watch::Sender<bool>,
    join: tokio::task::JoinHandle<()>,
    /// The NVMe/TCP front end and its accept loop (when subsystems are configured).
    nvme: Option<(Arc<super::nvme::NvmeService>, tokio::task::JoinHandle<()>)>,
    /// NVMe/TCP listeners actually bound (port 0 resolved), in configuration order.
    pub nvme_addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
    reloading: AtomicBool,
    /// Volume layout changes and their background jobs.
    admin: Arc<crate::volume_admin::VolumeAdmin>,
    /// The admin socket (removed at shutdown), when it could be bound.
    admin_socket: Option<std::path::PathBuf>,
}

impl Running {
    /// The iSCSI URLs of every LUN (libiscsi convention).
    pub fn urls(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Some(addr) = self.addrs.first() else { return out };
        let live = self.shared.live();
        for t in &live.cfg.targets {
            for l in &t.luns {
                out.push(format!("iscsi://{addr}/{}/{}", t.iqn, l.id));
            }
        }
        out
    }

    /// One `nvme+tcp://` URL per namespace served (at each subsystem's first
    /// listener).
    pub fn nvme_urls(&self) -> Vec<String> {
        let Some((svc, _)) = &self.nvme else { return Vec::new() };
        let live = self.shared.live();
        let mut out = Vec::new();
        for s in &live.cfg.subsystems {
            let Some(addr) = s.listen.first().and_then(|a| svc.bound_addr(*a)) else { continue };
            for n in &s.namespaces {
                out.push(format!("nvme+tcp://{addr}/{}/{}", s.nqn, n.nsid));
            }
        }
        out
    }

    /// Re-read the configuration file `path` and apply it (SIGHUP): see
    /// [`crate::server::reload`]. `listen` overrides `[server] listen` as
    /// `--listen` did at start. On error nothing changed and the running
    /// configuration keeps being served.
    pub async fn reload(&self, path: &Path, listen: &[SocketAddr]) -> Result<ReloadSummary> {
        if self.reloading.swap(true, Ordering::AcqRel) {
            anyhow::bail!("a reload is already in progress");
        }
        let (shared, registry, path, listen) =
            (self.shared.clone(), self.registry.clone(), path.to_owned(), listen.to_vec());
        let r = tokio::task::spawn_blocking(move || -> Result<ReloadSummary> {
            let mut cfg = Config::from_file_for_reload(&path)?;
            if !listen.is_empty() {
                cfg.listen = listen;
            }
            crate::check::preflight(&cfg)?;
            super::reload::apply(&shared, &registry, cfg)
        })
        .await;
        self.reloading.store(false, Ordering::Release);
        r?
    }

    /// Graceful shutdown: stop accepting, let connections finish their
    /// in-flight commands (bounded), flush every LUN.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        if let Some(d) = &self.domain {
            d.stop();
        }
        let _ = self.join.await;
        let mut ns_flush = Vec::new();
        if let Some((svc, join)) = self.nvme {
            let _ = join.await;
            ns_flush = svc.subsystems.values().flat_map(|s| s.namespaces.values().cloned()).collect();
        }
        // Background (IMMED) copies outlive their commands: stop them, and
        // wait (bounded) until none still writes, before the final flush.
        let copies = self.registry.copy_manager();
        if copies.cancel_all() > 0 {
            let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
            while copies.running_total() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let luns: Vec<Arc<LogicalUnit>> = self.shared.live().luns.values().cloned().collect();
        tokio::task::spawn_blocking(move || {
            crate::shared_storage::stop_sweep(SHUTDOWN_GRACE);
            for lu in luns {
                if let Err(e) = lu.flush() {
                    warn!("flush at shutdown failed: {e}");
                }
            }
            for ns in ns_flush {
                if let Err(e) = ns.unit.storage().flush() {
                    warn!(nsid = ns.nsid(), "namespace flush at shutdown failed: {e}");
                }
            }
        })
        .await?;
        // Background moves and resyncs stop; their journals stay, so the
        // next start resumes them.
        let admin = self.admin.clone();
        tokio::task::spawn_blocking(move || admin.shutdown(SHUTDOWN_GRACE)).await?;
        if let Some(p) = &self.admin_socket {
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    }

    /// The admin socket's path (`None`: it could not be bound).
    pub fn admin_socket(&self) -> Option<&Path> {
        self.admin_socket.as_deref()
    }
}

/// Open every LUN (creating missing files), bind every portal and start
/// serving.
pub async fn start(cfg: Config) -> Result<Running> {
    // What `oxcopyd --check` checks, before anything is created.
    crate::check::preflight(&cfg)?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    // The copy-domain key authenticates ROD tokens: created (0600) at first
    // start, refused if unreadable, mis-sized or group/other-accessible.
    let key_file = crate::copy_domain::KeyFile::resolve(&cfg.data_dir, cfg.copy_domain.key_file.as_deref());
    let copy_domain_key = oxcopy_copy::token::KeySource::load_or_create(&key_file)?;
    debug!(path = %key_file.path().display(), key = ?copy_domain_key, "copy-domain key ready");
    crate::odx::remove_stale_temporaries(&cfg);
    let mut ids = Identities::load(&cfg.data_dir)?;
    let mut targets = HashMap::new();
    let mut all_luns = BTreeMap::new();
    let metrics = Metrics::new();
    // Time and randomness come from here; the cores below are handed them.
    let registry = Arc::new(LuRegistry::new(
        metrics.clone(),
        Arc::new(oxcopy_copy::SystemClock),
        Box::new(<rand::rngs::StdRng as rand::SeedableRng>::from_entropy()),
    ));
    let volumes = Arc::new(crate::volumes::build(&cfg.volumes, cfg.write_behind)?);
    // Journaled layout changes, before anything is served.
    let admin =
        Arc::new(crate::volume_admin::VolumeAdmin::recover(&cfg.data_dir, &cfg.volumes, &volumes, cfg.write_behind)?);
    for t in &cfg.targets {
        let mut luns = Vec::new();
        for l in &t.luns {
            let lu = super::lun::open_lun(&cfg, t, l, &volumes, &mut ids)?;
            all_luns.insert((t.iqn.clone(), l.id), lu.clone());
            luns.push((l.id, lu));
        }
        registry.add_target(&t.iqn, AccessList::from_config(t.initiators.as_deref()), luns)?;
        for l in t.luns.iter().filter(|l| l.initiators.is_some()) {
            registry.set_lun_access(&t.iqn, l.id, AccessList::from_config(l.initiators.as_deref()));
        }
        let scsi = Arc::new(ScsiTarget::in_registry(&t.iqn, 1, registry.clone()));
        targets.insert(t.iqn.clone(), TargetEntry::new(t, scsi));
    }
    // NVMe/TCP subsystems: namespaces on their own files or on the LUNs'.
    let nvme = if cfg.subsystems.is_empty() {
        None
    } else {
        Some(Arc::new(super::nvme::NvmeService::open(&cfg, &all_luns, &mut ids, registry.clone())?))
    };
    // Token copy: tokens name this data directory's copy manager and a
    // per-start generation, and are authenticated by the domain key.
    let manager_id = ids.copy_manager_id();
    ids.save()?;
    let rod = Arc::new(crate::odx::rod_manager(&cfg.copy_domain, copy_domain_key.clone(), manager_id, metrics.clone()));
    registry.set_rod(rod.clone());
    // A copy domain of several nodes: other nodes' tokens are opened at
    // their creators; ours are served on the node link.
    let domain = (cfg.copy_domain.node_listen.is_some() || !cfg.copy_domain.peers().is_empty())
        .then(|| crate::domain::NodeDomain::new(&cfg.copy_domain, copy_domain_key, manager_id));
    let mut node_link = None;
    if let Some(d) = &domain {
        rod.set_domain(Some(Arc::new(crate::domain::DomainHandle(d.clone()))));
        registry.set_domain_info(Some(d.clone() as Arc<dyn oxcopy_scsi::DomainInfo>));
        if let Some(a) = cfg.copy_domain.node_listen {
            let l = TcpListener::bind(a).await.with_context(|| format!("binding the node link {a}"))?;
            node_link = Some((l.local_addr()?, l));
        }
    }
    registry.copy_manager().set_max_concurrent(cfg.max_concurrent_copies);
    registry.copy_manager().set_max_per_requester(cfg.max_concurrent_copies_per_session);

    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for a in &cfg.listen {
        let l = TcpListener::bind(a).await.with_context(|| format!("binding {a}"))?;
        addrs.push(l.local_addr()?);
        listeners.push(l);
    }
    let mut nvme_listeners = Vec::new();
    let mut nvme_addrs = Vec::new();
    if let Some(svc) = &nvme {
        for a in svc.listen_addrs(&cfg) {
            let l = TcpListener::bind(a).await.with_context(|| format!("binding the NVMe/TCP listener {a}"))?;
            let bound = l.local_addr()?;
            svc.bound(a, bound);
            tracing::info!(addr = %bound, "NVMe/TCP listening");
            nvme_addrs.push(bound);
            nvme_listeners.push(l);
        }
    }
    let cfg_metrics = cfg.metrics;
    let (write_limit, read_limit) = (cfg.write_buffer_limit, cfg.read_buffer_limit);
    let shared = Arc::new(Shared {
        live: RwLock::new(Arc::new(Live { targets, luns: all_luns, volumes, cfg })),
        reconfigured: watch::channel(0).0,
        next_tsih: AtomicU16::new(1),
        next_stat_sn: AtomicU64::new(0x1000),
        io_pool: IoPool::new(IO_THREADS, IO_THREAD_KEEP_ALIVE),
        auth_failures: AuthFailures::default(),
        sessions: Arc::new(AtomicUsize::new(0)),
        write_budget: WriteBudget::named(write_limit, "server.write_buffer_limit"),
        read_budget: WriteBudget::named(read_limit, "server.read_buffer_limit"),
    });
    let (tx, rx) = watch::channel(false);
    let admin_socket = match super::admin::bind(&shared.live().cfg.data_dir)? {
        Some((l, path)) => {
            tokio::spawn(super::admin::serve(l, admin.clone(), shared.clone(), rx.clone()));
            Some(path)
        }
        None => None,
    };
    let metrics_addr = match cfg_metrics {
        Some(addr) => {
            let listener = crate::metrics_http::bind(addr).await?;
            let bound = listener.local_addr()?;
            let mut prom = prometheus_client::registry::Registry::default();
            metrics.register(&mut prom);
            if let Some(svc) = &nvme {
                svc.metrics.register(&mut prom);
            }
            if let Some(d) = &domain {
                d.metrics.register(&mut prom);
            }
            tokio::spawn(crate::metrics_http::serve(listener, Arc::new(prom), rx.clone()));
            Some(bound)
        }
        None => None,
    };
    tokio::spawn(crate::odx::reap_periodically(registry.clone(), rx.clone()));
    let mut node_link_addr = None;
    if let Some(d) = &domain {
        if let Some((addr, l)) = node_link {
            tracing::info!(%addr, "node link listening");
            node_link_addr = Some(addr);
            let server = crate::domain::serve::Server::new(d.clone(), registry.clone());
            tokio::spawn(server.accept_loop(l, rx.clone()));
        }
        d.spawn_prober();
    }
    // Snapshots of tokens that died with a crashed gateway, in the pools we serve.
    crate::shared_storage::spawn_orphan_sweep();
    let nvme = nvme.map(|svc| {
        let j = tokio::spawn(super::nvme::accept_all(nvme_listeners, svc.clone(), shared.clone(), rx.clone()));
        (svc, j)
    });
    let join = tokio::spawn(accept_all(listeners, shared.clone(), rx));
    Ok(Running {
        nvme,
        nvme_addrs,
        addrs,
        metrics_addr,
        node_link_addr,
        domain,
        registry,
        shutdown: tx,
        join,
        shared,
        reloading: AtomicBool::new(false),
        admin,
        admin_socket,
    })
}

async fn accept_all(listeners: Vec<TcpListener>, shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    let mut accepts = JoinSet::new();
    let (conn_tx, mut conn_rx) = mpsc::channel::<(TcpStream, SocketAddr)>(64);
    for l in listeners {
        let tx = conn_tx.clone();
        let mut sd = shutdown.clone();
        accepts.spawn(async move {
            loop {
                tokio::select! {
                    r = l.accept() => match r {
                        Ok(c) => { if tx.send(c).await.is_err() { return; } }
                        Err(e) => { warn!("accept: {e}"); tokio::time::sleep(Duration::from_millis(50)).await; }
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
                    let shared = shared.clone();
                    let sd = shutdown.clone();
                    conns.spawn(async move { connection::serve(stream, peer, shared, sd).await });
                }
                None => break,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = async { let _ = sd.wait_for(|v| *v).await; } => break,
        }
    }
    accepts.abort_all();
    // Connections see the same shutdown signal; wait for them (each bounds
    // its own grace period).
    let all = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(2), all).await.is_err() {
        warn!("connections still open after the shutdown grace period; abandoning them");
        conns.abort_all();
    }
}
