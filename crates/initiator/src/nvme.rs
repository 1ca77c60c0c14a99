//! NVMe over TCP host: an async driver around `oxcopy-nvme`'s host queue
//! core ([`oxcopy_nvme::host::HostQueue`]).
//!
//! [`NvmeController::connect`] makes a controller the way the Linux host
//! does — admin queue (ICReq, Fabrics Connect, CC.EN, Identify Controller,
//! Number of Queues), then one TCP connection per I/O queue — and keeps it
//! alive with Keep Alive commands every KATO/2. [`NvmeController::discover`]
//! reads a discovery controller's log. Commands go round-robin over the I/O
//! queues; any number of tasks may have commands in flight, bounded by the
//! queue size. A completion with an error status is a value
//! ([`Completion`]) for the raw calls and an [`NvmeError::Status`] for the
//! typed helpers (read, write, copy, ...).
//!
//! ```no_run
//! use oxcopy_initiator::nvme::{NvmeConfig, NvmeController};
//! # async fn demo() -> Result<(), oxcopy_initiator::nvme::NvmeError> {
//! let c = NvmeController::connect("127.0.0.1:4420".parse().unwrap(), "nqn.2026-12.dev.oxcopy:nvme", &NvmeConfig::default()).await?;
//! let ns = c.namespace(1).await?;
//! c.write(1, 0, bytes::Bytes::from(vec![7u8; ns.block_size as usize]), false).await?;
//! let data = c.read(1, 0, 1).await?;
//! c.copy(1, 100, &[(0, 1)]).await?; // NVMe Copy: block 0 → block 100
//! c.shutdown().await;
//! # let _ = data; Ok(()) }
//! ```

use bytes::{Bytes, BytesMut};
use oxcopy_nvme::host::{HostConfig, HostEvent, HostQueue};
use oxcopy_nvme::wire::command::{Cqe, Opcode, Sqe, Status};
use oxcopy_nvme::wire::connect::{ConnectCommand, ConnectData, Property, PropertyGet, PropertySet};
use oxcopy_nvme::wire::features::{FeatureId, GetFeatures, HostBehavior, Select, SetFeatures};
use oxcopy_nvme::wire::identify::{parse_ns_list, Cns, IdentifyCommand, IdentifyController, IdentifyNamespace};
use oxcopy_nvme::wire::log::{parse_discovery_log, DiscoveryEntry, GetLogPage, LogId};
use oxcopy_nvme::wire::nvm::{
    copy_sqe, dsm_sqe, encode_copy_ranges, encode_dsm_ranges, flush_sqe, rw_sqe, write_zeroes_sqe, CopyFormat,
    CopyRange, DsmAttributes, DsmRange,
};
use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// The well-known discovery subsystem NQN.
pub const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";

/// Errors of the NVMe/TCP host.
#[derive(Debug, thiserror::Error)]
pub enum NvmeError {
    /// The socket failed.
    #[error("NVMe/TCP I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The queue closed (the controller or the connection went away).
    #[error("NVMe/TCP queue closed: {0}")]
    Closed(String),
    /// The controller answered with an error status.
    #[error("NVMe status {status} (command {cid:#x}, DW0 {result:#x})")]
    Status {
        /// The status.
        status: Status,
        /// The command identifier.
        cid: u16,
        /// Completion DW0.
        result: u32,
    },
    /// The controller sent something we cannot use.
    #[error("NVMe protocol: {0}")]
    Protocol(String),
    /// No answer in time.
    #[error("NVMe/TCP: no answer within {0:?}")]
    Timeout(Duration),
}

/// Result of the NVMe host.
pub type Result<T> = std::result::Result<T, NvmeError>;

/// What a command returned: its completion and its controller → host data.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The completion queue entry.
    pub cqe: Cqe,
    /// Read data (empty when none).
    pub data: Bytes,
}

impl Completion {
    /// `Ok` with the data on success, else [`NvmeError::Status`].
    pub fn ok(self) -> Result<Bytes> {
        if self.cqe.status.is_success() {
            Ok(self.data)
        } else {
            Err(NvmeError::Status { status: self.cqe.status, cid: self.cqe.cid, result: self.cqe.result as u32 })
        }
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct NvmeConfig {
    /// Our host NQN.
    pub hostnqn: String,
    /// Our host identifier.
    pub hostid: [u8; 16],
    /// Ask for header digests.
    pub header_digest: bool,
    /// Ask for data digests.
    pub data_digest: bool,
    /// I/O queues (TCP connections) to open (at most what the controller grants).
    pub io_queues: u16,
    /// Entries per I/O queue.
    pub queue_size: u16,
    /// Keep-alive timeout asked for, ms (0: none).
    pub kato_ms: u32,
    /// Send Keep Alive every KATO/2 (tests turn it off to see the
    /// controller expire).
    pub keep_alive: bool,
    /// How long one command may take before it is given up on.
    pub timeout: Duration,
}

impl Default for NvmeConfig {
    fn default() -> Self {
        let hostid: [u8; 16] = rand::random();
        NvmeConfig {
            hostnqn: format!("nqn.2014-08.org.nvmexpress:uuid:{}", uuid_text(&hostid)),
            hostid,
            header_digest: false,
            data_digest: false,
            io_queues: 1,
            queue_size: 128,
            kato_ms: 10_000,
            keep_alive: true,
            timeout: Duration::from_secs(60),
        }
    }
}

fn uuid_text(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Wire byte counters of a controller's connections.
#[derive(Debug, Default)]
pub struct WireStats {
    /// Bytes sent.
    pub sent: AtomicU64,
    /// Bytes received.
    pub received: AtomicU64,
}

struct Request {
    sqe: Sqe,
    data: Option<Bytes>,
    read_len: u32,
    reply: oneshot::Sender<Result<Completion>>,
    /// Told the command identifier once assigned (for Abort).
    cid_tx: Option<oneshot::Sender<u16>>,
}

/// A command submitted and not yet complete (see [`NvmeController::start_io`]).
#[derive(Debug)]
pub struct PendingCommand {
    /// Its submission queue (I/O queue id, 1-based).
    pub qid: u16,
    /// Its command identifier.
    pub cid: u16,
    rx: oneshot::Receiver<Result<Completion>>,
    timeout: Duration,
}

impl PendingCommand {
    /// Wait for its completion.
    pub async fn wait(self) -> Result<Completion> {
        match tokio::time::timeout(self.timeout, self.rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(NvmeError::Closed("queue task gone".into())),
            Err(_) => Err(NvmeError::Timeout(self.timeout)),
        }
    }
}

/// One queue (one TCP connection): a handle on its task.
#[derive(Clone)]
struct Queue {
    tx: mpsc::Sender<Request>,
}

impl Queue {
    /// Open the connection and exchange ICReq / ICResp.
    async fn open(addr: SocketAddr, cfg: HostConfig, stats: Arc<WireStats>, timeout: Duration) -> Result<Self> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| NvmeError::Timeout(timeout))??;
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let mut hq = HostQueue::new(cfg.clone());
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let handshake = async {
            loop {
                let mut sends = Vec::new();
                for e in hq.drain_events() {
                    match e {
                        HostEvent::Send(p) => sends.push(p),
                        HostEvent::Close(r) => return Err(NvmeError::Protocol(format!("ICResp refused: {r:?}"))),
                        HostEvent::Completed { .. } => {}
                    }
                }
                for p in sends {
                    write_pdu(&mut wr, &p.head, &p.data, &p.tail, &stats).await?;
                }
                if hq.is_ready() {
                    return Ok(());
                }
                let n = rd.read_buf(&mut buf).await?;
                if n == 0 {
                    return Err(NvmeError::Closed("connection closed before ICResp".into()));
                }
                stats.received.fetch_add(n as u64, Ordering::Relaxed);
                hq.on_bytes(&mut buf);
            }
        };
        tokio::time::timeout(timeout, handshake).await.map_err(|_| NvmeError::Timeout(timeout))??;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run_queue(rd, wr, hq, buf, rx, cfg.queue_size, stats));
        Ok(Queue { tx })
    }

    async fn call(&self, sqe: Sqe, data: Option<Bytes>, read_len: u32, timeout: Duration) -> Result<Completion> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { sqe, data, read_len, reply, cid_tx: None })
            .await
            .map_err(|_| NvmeError::Closed("queue task gone".into()))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(NvmeError::Closed("queue task gone".into())),
            Err(_) => Err(NvmeError::Timeout(timeout)),
        }
    }
}

async fn write_pdu(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    head: &Bytes,
    data: &Bytes,
    tail: &Bytes,
    stats: &WireStats,
) -> std::io::Result<()> {
    let total = head.len() + data.len() + tail.len();
    let mut parts = [head.clone(), data.clone(), tail.clone()];
    let mut idx = 0;
    while idx < parts.len() {
        if parts[idx].is_empty() {
            idx += 1;
            continue;
        }
        let slices: Vec<IoSlice<'_>> = parts[idx..].iter().map(|b| IoSlice::new(b)).collect();
        let mut n = wr.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 && idx < parts.len() {
            let take = n.min(parts[idx].len());
            let _ = parts[idx].split_to(take);
            n -= take;
            if parts[idx].is_empty() {
                idx += 1;
            }
        }
    }
    stats.sent.fetch_add(total as u64, Ordering::Relaxed);
    Ok(())
}

/// Most iovecs handed to one `writev`.
const MAX_IOVECS: usize = 512;

/// Write every buffer of `bufs`, in order, with as few vectored writes as
/// possible (at most [`MAX_IOVECS`] buffers each).
async fn write_all_vectored(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    bufs: &mut VecDeque<Bytes>,
    stats: &WireStats,
) -> std::io::Result<()> {
    while !bufs.is_empty() {
        let slices: Vec<IoSlice<'_>> = bufs.iter().take(MAX_IOVECS).map(|b| IoSlice::new(b)).collect();
        let mut n = wr.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        stats.sent.fetch_add(n as u64, Ordering::Relaxed);
        while n > 0 {
            let Some(front) = bufs.front_mut() else { break };
            let take = n.min(front.len());
            let _ = front.split_to(take);
            n -= take;
            if front.is_empty() {
                bufs.pop_front();
            }
        }
    }
    Ok(())
}

/// Submit one request to the core, allocating its command identifier.
fn submit(
    hq: &mut HostQueue,
    mut req: Request,
    free: &mut VecDeque<u16>,
    pending: &mut HashMap<u16, oneshot::Sender<Result<Completion>>>,
) {
    let Some(cid) = free.pop_front() else {
        let _ = req.reply.send(Err(NvmeError::Closed("no free command identifier".into())));
        return;
    };
    req.sqe.set_cid(cid);
    match hq.submit(req.sqe, req.data, req.read_len) {
        Ok(()) => {
            if let Some(t) = req.cid_tx.take() {
                let _ = t.send(cid);
            }
            pending.insert(cid, req.reply);
        }
        Err(e) => {
            free.push_back(cid);
            let _ = req.reply.send(Err(NvmeError::Closed(format!("submit: {e}"))));
        }
    }
}

/// The task of one queue: submits requests (allocating command ids) —
/// every request already queued at once —, sends the PDUs they make in as
/// few vectored writes as possible, completes requests.
async fn run_queue(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut hq: HostQueue,
    mut buf: BytesMut,
    mut rx: mpsc::Receiver<Request>,
    queue_size: u32,
    stats: Arc<WireStats>,
) {
    let mut pending: HashMap<u16, oneshot::Sender<Result<Completion>>> = HashMap::new();
    let mut free: VecDeque<u16> = (0..queue_size.clamp(1, 65535) as u16).collect();
    let mut out: VecDeque<Bytes> = VecDeque::new();
    let mut why = String::from("connection closed");
    let mut requests_open = true;
    'run: loop {
        // Everything already queued goes out together.
        while requests_open && !free.is_empty() {
            match rx.try_recv() {
                Ok(req) => submit(&mut hq, req, &mut free, &mut pending),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => requests_open = false,
            }
        }
        // Carry out what the core asked for.
        for e in hq.drain_events() {
            match e {
                HostEvent::Send(p) => {
                    for b in [p.head, p.data, p.tail] {
                        if !b.is_empty() {
                            out.push_back(b);
                        }
                    }
                }
                HostEvent::Completed { cqe, data } => {
                    if let Some(r) = pending.remove(&cqe.cid) {
                        free.push_back(cqe.cid);
                        let _ = r.send(Ok(Completion { cqe, data }));
                    }
                }
                HostEvent::Close(r) => {
                    why = format!("{r:?}");
                    break 'run;
                }
            }
        }
        if let Err(e) = write_all_vectored(&mut wr, &mut out, &stats).await {
            why = format!("write: {e}");
            break;
        }
        if !requests_open && pending.is_empty() {
            break;
        }
        tokio::select! {
            r = rd.read_buf(&mut buf) => match r {
                Ok(n) if n > 0 => {
                    stats.received.fetch_add(n as u64, Ordering::Relaxed);
                    hq.on_bytes(&mut buf);
                    if buf.capacity() - buf.len() < 4096 {
                        buf.reserve(64 * 1024);
                    }
                }
                Ok(_) => break,
                Err(e) => { why = format!("read: {e}"); break; }
            },
            req = rx.recv(), if requests_open && !free.is_empty() => match req {
                Some(req) => submit(&mut hq, req, &mut free, &mut pending),
                None => requests_open = false,
            },
        }
    }
    let _ = wr.shutdown().await;
    for (_, r) in pending.drain() {
        let _ = r.send(Err(NvmeError::Closed(why.clone())));
    }
}

/// A namespace's geometry and copy limits, from Identify Namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespaceGeometry {
    /// Namespace ID.
    pub nsid: u32,
    /// Logical block size, bytes.
    pub block_size: u32,
    /// Size, blocks.
    pub blocks: u64,
    /// Largest source range of a Copy, blocks.
    pub mssrl: u16,
    /// Largest total of a Copy, blocks.
    pub mcl: u32,
    /// Most source ranges of a Copy.
    pub max_ranges: u16,
    /// NGUID.
    pub nguid: [u8; 16],
}

/// A connected controller: its admin queue and I/O queues.
pub struct NvmeController {
    admin: Queue,
    io: Vec<Queue>,
    next: AtomicUsize,
    /// The controller id the target gave.
    pub cntlid: u16,
    /// Identify Controller.
    pub identify: IdentifyController,
    /// The subsystem NQN connected to.
    pub subnqn: String,
    stats: Arc<WireStats>,
    timeout: Duration,
    keep_alive: Option<tokio::task::JoinHandle<()>>,
    /// Namespace geometry seen so far (never held across an await).
    geometry: std::sync::Mutex<HashMap<u32, NamespaceGeometry>>,
}

fn status_err(c: &Completion) -> Result<()> {
    if c.cqe.status.is_success() {
        Ok(())
    } else {
        Err(NvmeError::Status { status: c.cqe.status, cid: c.cqe.cid, result: c.cqe.result as u32 })
    }
}

impl NvmeController {
    /// Connect to subsystem `subnqn` at `addr`: admin queue, enable,
    /// Identify Controller, then `cfg.io_queues` I/O queues (NVM subsystems).
    pub async fn connect(addr: SocketAddr, subnqn: &str, cfg: &NvmeConfig) -> Result<Self> {
        let stats = Arc::new(WireStats::default());
        let host = HostConfig {
            header_digest: cfg.header_digest,
            data_digest: cfg.data_digest,
            queue_size: 32,
            ..HostConfig::default()
        };
        let admin = Queue::open(addr, host.clone(), stats.clone(), cfg.timeout).await?;
        let data =
            ConnectData { hostid: cfg.hostid, cntlid: 0xFFFF, subnqn: subnqn.into(), hostnqn: cfg.hostnqn.clone() };
        let kato = if subnqn == DISCOVERY_NQN { 0 } else { cfg.kato_ms };
        let cmd = ConnectCommand { cid: 0, recfmt: 0, qid: 0, sqsize: 31, cattr: 0, kato };
        let c = admin.call(cmd.to_sqe(), Some(Bytes::from(data.build())), 0, cfg.timeout).await?;
        status_err(&c)?;
        let cntlid = c.cqe.result as u16;
        // Enable: CC.EN with 64-byte SQEs and 16-byte CQEs, wait for CSTS.RDY.
        let set = PropertySet { cid: 0, eight: false, offset: Property::CC, value: 0x0046_0001 };
        status_err(&admin.call(set.to_sqe(), None, 0, cfg.timeout).await?)?;
        let mut ready = false;
        for _ in 0..500 {
            let get = PropertyGet { cid: 0, eight: false, offset: Property::CSTS };
            let c = admin.call(get.to_sqe(), None, 0, cfg.timeout).await?;
            status_err(&c)?;
            if c.cqe.result & 1 == 1 {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !ready {
            return Err(NvmeError::Protocol("CSTS.RDY did not become 1 within 5 s".into()));
        }
        let id = IdentifyCommand { cid: 0, nsid: 0, cns: Cns::CONTROLLER, cntid: 0, csi: 0 };
        let c = admin.call(id.to_sqe(), None, 4096, cfg.timeout).await?;
        let identify = IdentifyController::parse(&c.ok()?)
            .map_err(|e| NvmeError::Protocol(format!("Identify Controller: {e}")))?;
        let mut me = NvmeController {
            admin,
            io: Vec::new(),
            next: AtomicUsize::new(0),
            cntlid,
            identify,
            subnqn: subnqn.into(),
            stats: stats.clone(),
            timeout: cfg.timeout,
            keep_alive: None,
            geometry: Default::default(),
        };
        if subnqn != DISCOVERY_NQN && cfg.io_queues > 0 {
            let want = u32::from(cfg.io_queues - 1);
            let sf = SetFeatures {
                cid: 0,
                nsid: 0,
                fid: FeatureId::NUMBER_OF_QUEUES,
                save: false,
                cdw11: want | (want << 16),
            };
            let c = me.admin.call(sf.to_sqe(), None, 0, cfg.timeout).await?;
            status_err(&c)?;
            let granted = ((c.cqe.result & 0xFFFF) as u16).min((c.cqe.result >> 16) as u16) + 1;
            let in_capsule = (me.identify.ioccsz.saturating_mul(16)).saturating_sub(64);
            for qid in 1..=cfg.io_queues.min(granted) {
                let host = HostConfig {
                    header_digest: cfg.header_digest,
                    data_digest: cfg.data_digest,
                    in_capsule_data: in_capsule,
                    queue_size: u32::from(cfg.queue_size),
                    ..HostConfig::default()
                };
                let q = Queue::open(addr, host, stats.clone(), cfg.timeout).await?;
                let cmd = ConnectCommand { cid: 0, recfmt: 0, qid, sqsize: cfg.queue_size - 1, cattr: 0, kato: 0 };
                let data =
                    ConnectData { hostid: cfg.hostid, cntlid, subnqn: subnqn.into(), hostnqn: cfg.hostnqn.clone() };
                status_err(&q.call(cmd.to_sqe(), Some(Bytes::from(data.build())), 0, cfg.timeout).await?)?;
                me.io.push(q);
            }
        }
        if kato > 0 && cfg.keep_alive {
            let admin = me.admin.clone();
            let every = Duration::from_millis(u64::from(kato / 2).max(100));
            let timeout = cfg.timeout;
            me.keep_alive = Some(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let ka = Sqe::new(Opcode::KEEP_ALIVE, 0, 0);
                    if admin.call(ka, None, 0, timeout).await.is_err() {
                        return;
                    }
                }
            }));
        }
        Ok(me)
    }

    /// The subsystems a discovery controller at `addr` lists.
    pub async fn discover(addr: SocketAddr, cfg: &NvmeConfig) -> Result<Vec<DiscoveryEntry>> {
        let c = Self::connect(addr, DISCOVERY_NQN, cfg).await?;
        let log = c.get_log_page(LogId::DISCOVERY, 0, 4096).await?;
        let (hdr, _) = parse_discovery_log(&log).map_err(|e| NvmeError::Protocol(format!("discovery log: {e}")))?;
        let len = 1024u64.saturating_add(hdr.numrec.min(256).saturating_mul(1024));
        let log = if len > 4096 { c.get_log_page(LogId::DISCOVERY, 0, len as u32).await? } else { log };
        let (_, entries) = parse_discovery_log(&log).map_err(|e| NvmeError::Protocol(format!("discovery log: {e}")))?;
        c.shutdown().await;
        Ok(entries)
    }

    /// Bytes sent and received on all of this controller's connections.
    pub fn wire_bytes(&self) -> (u64, u64) {
        (self.stats.sent.load(Ordering::Relaxed), self.stats.received.load(Ordering::Relaxed))
    }

    /// I/O queues connected.
    pub fn io_queues(&self) -> usize {
        self.io.len()
    }

    /// A raw admin command (its CID is assigned here). Error statuses are
    /// values.
    pub async fn admin(&self, sqe: Sqe, data: Option<Bytes>, read_len: u32) -> Result<Completion> {
        self.admin.call(sqe, data, read_len, self.timeout).await
    }

    /// A raw I/O command on the next I/O queue (round-robin).
    pub async fn io(&self, sqe: Sqe, data: Option<Bytes>, read_len: u32) -> Result<Completion> {
        if self.io.is_empty() {
            return Err(NvmeError::Closed("no I/O queue".into()));
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.io.len();
        self.io[i].call(sqe, data, read_len, self.timeout).await
    }

    /// A raw I/O command on I/O queue `index` (0-based; queue id index + 1).
    pub async fn io_on(&self, index: usize, sqe: Sqe, data: Option<Bytes>, read_len: u32) -> Result<Completion> {
        let q = self.io.get(index).ok_or_else(|| NvmeError::Closed(format!("no I/O queue {index}")))?;
        q.call(sqe, data, read_len, self.timeout).await
    }

    /// Submit an I/O command on I/O queue `index` (0-based) and return once
    /// it is sent, with its command identifier (for [`Self::abort`]).
    pub async fn start_io(&self, index: usize, sqe: Sqe, data: Option<Bytes>, read_len: u32) -> Result<PendingCommand> {
        let q = self.io.get(index).ok_or_else(|| NvmeError::Closed(format!("no I/O queue {index}")))?;
        let (reply, rx) = oneshot::channel();
        let (cid_tx, cid_rx) = oneshot::channel();
        q.tx.send(Request { sqe, data, read_len, reply, cid_tx: Some(cid_tx) })
            .await
            .map_err(|_| NvmeError::Closed("queue task gone".into()))?;
        let cid = tokio::time::timeout(self.timeout, cid_rx)
            .await
            .map_err(|_| NvmeError::Timeout(self.timeout))?
            .map_err(|_| NvmeError::Closed("queue task gone".into()))?;
        let qid = u16::try_from(index + 1).unwrap_or(u16::MAX);
        Ok(PendingCommand { qid, cid, rx, timeout: self.timeout })
    }

    /// Abort command `cid` of submission queue `sqid`: `true` when the
    /// controller says it aborted it (DW0 bit 0 clear).
    pub async fn abort(&self, sqid: u16, cid: u16) -> Result<bool> {
        let mut sqe = Sqe::new(Opcode::ABORT, 0, 0);
        sqe.set_cdw(10, u32::from(sqid) | (u32::from(cid) << 16));
        let c = self.admin(sqe, None, 0).await?;
        status_err(&c)?;
        Ok(c.cqe.result & 1 == 0)
    }

    /// Get Log Page.
    pub async fn get_log_page(&self, lid: LogId, nsid: u32, len: u32) -> Result<Bytes> {
        let g = GetLogPage::new(0, nsid, lid, len, 0, false);
        self.admin(g.to_sqe(), None, len).await?.ok()
    }

    /// Active namespace IDs.
    pub async fn namespaces(&self) -> Result<Vec<u32>> {
        let id = IdentifyCommand { cid: 0, nsid: 0, cns: Cns::ACTIVE_NS_LIST, cntid: 0, csi: 0 };
        let b = self.admin(id.to_sqe(), None, 4096).await?.ok()?;
        parse_ns_list(&b).map_err(|e| NvmeError::Protocol(format!("namespace list: {e}")))
    }

    /// Identify Namespace, raw.
    pub async fn identify_namespace(&self, nsid: u32) -> Result<IdentifyNamespace> {
        let id = IdentifyCommand { cid: 0, nsid, cns: Cns::NAMESPACE, cntid: 0, csi: 0 };
        let b = self.admin(id.to_sqe(), None, 4096).await?.ok()?;
        IdentifyNamespace::parse(&b).map_err(|e| NvmeError::Protocol(format!("Identify Namespace: {e}")))
    }

    /// Namespace `nsid`'s geometry (cached after the first call).
    pub async fn namespace(&self, nsid: u32) -> Result<NamespaceGeometry> {
        if let Some(g) = self.geometry.lock().ok().and_then(|m| m.get(&nsid).copied()) {
            return Ok(g);
        }
        let n = self.identify_namespace(nsid).await?;
        let block_size =
            n.block_size().ok_or_else(|| NvmeError::Protocol(format!("namespace {nsid}: no usable LBA format")))?;
        if n.nsze == 0 {
            return Err(NvmeError::Status { status: Status::INVALID_NAMESPACE, cid: 0, result: 0 });
        }
        let g = NamespaceGeometry {
            nsid,
            block_size,
            blocks: n.nsze,
            mssrl: n.mssrl,
            mcl: n.mcl,
            max_ranges: u16::from(n.msrc) + 1,
            nguid: n.nguid,
        };
        if let Ok(mut m) = self.geometry.lock() {
            m.insert(nsid, g);
        }
        Ok(g)
    }

    /// Set Features (optionally with data).
    pub async fn set_features(&self, fid: FeatureId, cdw11: u32, data: Option<Bytes>) -> Result<Completion> {
        let sf = SetFeatures { cid: 0, nsid: 0, fid, save: false, cdw11 };
        self.admin(sf.to_sqe(), data, 0).await
    }

    /// Get Features (DW0 in the completion; data up to `read_len`).
    pub async fn get_features(&self, fid: FeatureId, read_len: u32) -> Result<Completion> {
        let gf = GetFeatures { cid: 0, nsid: 0, fid, sel: Select::CURRENT, cdw11: 0 };
        self.admin(gf.to_sqe(), None, read_len).await
    }

    /// Enables Copy descriptor formats (Host Behavior Support CDFE): bit n
    /// = format n (formats 2h and 3h copy across namespaces).
    pub async fn enable_copy_formats(&self, cdfe: u16) -> Result<()> {
        let hb = HostBehavior { cdfe, ..HostBehavior::default() };
        status_err(&self.set_features(FeatureId::HOST_BEHAVIOR, 0, Some(Bytes::from(hb.build()))).await?)
    }

    /// Read `blocks` blocks at `slba` of namespace `nsid`.
    pub async fn read(&self, nsid: u32, slba: u64, blocks: u32) -> Result<Bytes> {
        let g = self.namespace(nsid).await?;
        let sqe = rw_sqe(Opcode::READ, 0, nsid, slba, blocks, g.block_size, false)
            .ok_or_else(|| NvmeError::Protocol("read of 0 or more than 65536 blocks".into()))?;
        self.io(sqe, None, blocks * g.block_size).await?.ok()
    }

    /// Write `data` (whole blocks) at `slba` of namespace `nsid`.
    pub async fn write(&self, nsid: u32, slba: u64, data: Bytes, fua: bool) -> Result<()> {
        let g = self.namespace(nsid).await?;
        let blocks = u32::try_from(data.len() as u64 / u64::from(g.block_size)).unwrap_or(0);
        let sqe = rw_sqe(Opcode::WRITE, 0, nsid, slba, blocks, g.block_size, fua)
            .ok_or_else(|| NvmeError::Protocol("write of 0 or more than 65536 blocks".into()))?;
        self.io(sqe, Some(data), 0).await?.ok().map(drop)
    }

    /// Compare `data` with the blocks at `slba` (COMPARE_FAILURE on a mismatch).
    pub async fn compare(&self, nsid: u32, slba: u64, data: Bytes) -> Result<()> {
        let g = self.namespace(nsid).await?;
        let blocks = u32::try_from(data.len() as u64 / u64::from(g.block_size)).unwrap_or(0);
        let sqe = rw_sqe(Opcode::COMPARE, 0, nsid, slba, blocks, g.block_size, false)
            .ok_or_else(|| NvmeError::Protocol("compare of 0 or more than 65536 blocks".into()))?;
        self.io(sqe, Some(data), 0).await?.ok().map(drop)
    }

    /// Verify `blocks` blocks at `slba`.
    pub async fn verify(&self, nsid: u32, slba: u64, blocks: u32) -> Result<()> {
        let g = self.namespace(nsid).await?;
        let sqe = rw_sqe(Opcode::VERIFY, 0, nsid, slba, blocks, g.block_size, false)
            .ok_or_else(|| NvmeError::Protocol("verify of 0 or more than 65536 blocks".into()))?;
        self.io(sqe, None, 0).await?.ok().map(drop)
    }

    /// Flush namespace `nsid`.
    pub async fn flush(&self, nsid: u32) -> Result<()> {
        self.io(flush_sqe(0, nsid), None, 0).await?.ok().map(drop)
    }

    /// Write Zeroes (`deallocate`: DEAC).
    pub async fn write_zeroes(&self, nsid: u32, slba: u64, blocks: u32, deallocate: bool) -> Result<()> {
        let sqe = write_zeroes_sqe(0, nsid, slba, blocks, deallocate, false)
            .ok_or_else(|| NvmeError::Protocol("write zeroes of 0 or more than 65536 blocks".into()))?;
        self.io(sqe, None, 0).await?.ok().map(drop)
    }

    /// Dataset Management, deallocate: `(slba, blocks)` ranges.
    pub async fn deallocate(&self, nsid: u32, ranges: &[(u64, u32)]) -> Result<()> {
        let rs: Vec<DsmRange> = ranges.iter().map(|&(slba, blocks)| DsmRange { cattr: 0, blocks, slba }).collect();
        let data = encode_dsm_ranges(&rs);
        let sqe = dsm_sqe(0, nsid, rs.len(), DsmAttributes::AD)
            .ok_or_else(|| NvmeError::Protocol("dataset management of 0 or more than 256 ranges".into()))?;
        self.io(sqe, Some(Bytes::from(data)), 0).await?.ok().map(drop)
    }

    /// NVMe Copy within namespace `nsid` (format 0h): `(slba, blocks)`
    /// source ranges, written one after the other from `sdlba`. The
    /// completion comes back for DW0 (the lowest failed range) on errors.
    pub async fn copy(&self, nsid: u32, sdlba: u64, ranges: &[(u64, u32)]) -> Result<Completion> {
        let rs: Option<Vec<CopyRange>> = ranges.iter().map(|&(s, n)| CopyRange::new(0, s, n)).collect();
        let rs = rs.ok_or_else(|| NvmeError::Protocol("a Copy range of 0 or more than 65536 blocks".into()))?;
        self.copy_ranges(nsid, sdlba, CopyFormat::F0, &rs).await
    }

    /// NVMe Copy with descriptors of `format` (2h: each range names its
    /// source namespace; enable it first with [`Self::enable_copy_formats`]).
    pub async fn copy_ranges(
        &self,
        nsid: u32,
        sdlba: u64,
        format: CopyFormat,
        ranges: &[CopyRange],
    ) -> Result<Completion> {
        let data = encode_copy_ranges(format, ranges)
            .ok_or_else(|| NvmeError::Protocol(format!("no layout for Copy format {}", format.0)))?;
        let sqe = copy_sqe(0, nsid, sdlba, ranges.len(), format, false)
            .ok_or_else(|| NvmeError::Protocol("a Copy of 0 or more than 256 ranges".into()))?;
        self.io(sqe, Some(Bytes::from(data)), 0).await
    }

    /// Keep Alive now.
    pub async fn keep_alive(&self) -> Result<()> {
        status_err(&self.admin(Sqe::new(Opcode::KEEP_ALIVE, 0, 0), None, 0).await?)
    }

    /// Shut the controller down (CC.SHN) and close every connection.
    pub async fn shutdown(mut self) {
        if let Some(k) = self.keep_alive.take() {
            k.abort();
        }
        let set = PropertySet { cid: 0, eight: false, offset: Property::CC, value: 0x0046_4001 };
        let _ = self.admin.call(set.to_sqe(), None, 0, Duration::from_secs(5)).await;
        // Dropping the handles ends the queue tasks, which close the sockets.
    }
}

impl Drop for NvmeController {
    fn drop(&mut self) {
        if let Some(k) = self.keep_alive.take() {
            k.abort();
        }
    }
}
