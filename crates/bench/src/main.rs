//! `oxcopy-io-bench`: a READ(16)/WRITE(16) load generator over our own
//! initiator (`oxcopy-initiator`), so that `bench/io.sh` drives tgt and
//! oxcopyd with the same client for the write figure (libiscsi's
//! `iscsi-perf` only reads) — and the same load as NVMe Read/Write over our
//! NVMe/TCP host (`oxcopy_initiator::nvme`), so that `bench/nvme.sh` compares
//! the two protocols with one client.
//!
//! ```text
//! oxcopy-io-bench [-i IQN] [-m QD] [-b BLOCKS] [-t SECS] [--write|--read] [-r] [--digests] iscsi://host[:port]/target-iqn/lun
//! oxcopy-io-bench [-m QD] [-b BLOCKS] [-t SECS] [--write|--read] [-r] [--queues N] [--digests] nvme+tcp://host[:port]/subsystem-nqn/nsid
//! ```
//!
//! Keeps `QD` commands of `BLOCKS` logical blocks in flight for `SECS`
//! seconds — sequentially through the LUN (namespace), wrapping at the end,
//! or at random LBAs with `-r` — then drains and prints one line
//!
//! ```text
//! RESULT iops=<n> mib_s=<x> bytes=<n> secs=<x> lat_avg_us=<x>
//! ```
//!
//! (the format `bench/io.sh` parses). The elapsed time includes the drain.
//! Exit status: 0 on success, 2 on a usage error, 10 on an iSCSI/SCSI or
//! NVMe error (the RESULT line is still printed for what completed).
//!
//! Both protocols get one TCP connection by default: the iSCSI session has
//! one, and the NVMe controller opens `--queues` I/O queues (default 1; the
//! admin queue's connection carries only keep-alives), commands going
//! round-robin over them. NVMe/TCP's port defaults to 4420.

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use oxcopy_initiator::nvme::{NvmeConfig, NvmeController};
use oxcopy_initiator::{DataDir, DigestPolicy, Session, SessionConfig};
use oxcopy_nvme::wire::command::Opcode;
use oxcopy_nvme::wire::nvm::rw_sqe;
use oxcopy_scsi::wire::cdb;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// READ(16)/WRITE(16) load generator over the oxcopy initiator.
///
/// Without --read or --write it writes (the contract of bench/io.sh's
/// WRITE_CLIENT hook: `-i IQN -m QD -b BLOCKS -t SECS URL`).
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// Our initiator name.
    #[arg(short = 'i', long = "initiator-name", default_value = "iqn.2026-11.dev.oxcopy:io-bench")]
    initiator: String,
    /// Commands kept in flight (queue depth).
    #[arg(short = 'm', long = "max", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    queue_depth: u32,
    /// Logical blocks per command.
    #[arg(short = 'b', long = "blocks", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    blocks: u32,
    /// Seconds to issue commands for (then in-flight commands drain).
    #[arg(short = 't', long = "runtime", default_value_t = 10.0)]
    secs: f64,
    /// WRITE(16) (the default).
    #[arg(long, conflicts_with = "read")]
    write: bool,
    /// READ(16) instead of WRITE(16).
    #[arg(long)]
    read: bool,
    /// Random LBAs instead of a sequential sweep.
    #[arg(short = 'r', long)]
    random: bool,
    /// After the workload, time one SYNCHRONIZE CACHE(16) of the whole LUN
    /// (what a flush right after the writes waits for): `sync_ms=` in the
    /// RESULT line.
    #[arg(long)]
    sync_after: bool,
    /// Runtime worker threads; 1 (the default) runs the client on one
    /// thread like libiscsi's tools.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
    /// NVMe/TCP: I/O queues (TCP connections) to open; commands go
    /// round-robin over them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    queues: u16,
    /// Header and data digests (CRC32C): NVMe/TCP HDGST+DDGST, iSCSI
    /// HeaderDigest and DataDigest.
    #[arg(long)]
    digests: bool,
    /// iscsi://host[:port]/target-iqn/lun or nvme+tcp://host[:port]/nqn/nsid
    url: String,
}

/// The parts of an iSCSI URL we use.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IscsiUrl {
    host: String,
    port: u16,
    target: String,
    lun: u64,
}

/// What the URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Url {
    Iscsi(IscsiUrl),
    Nvme(oxcopy_bench::NvmeUrl),
}

/// Parse `iscsi://host[:port]/target/lun` (host may be `[v6]`).
fn parse_url(url: &str) -> Result<IscsiUrl> {
    let rest = url.strip_prefix("iscsi://").ok_or_else(|| anyhow!("URL must start with iscsi://: {url}"))?;
    let (authority, path) = rest.split_once('/').ok_or_else(|| anyhow!("URL has no target: {url}"))?;
    if authority.contains('@') {
        bail!("CHAP credentials in the URL are not supported: {url}");
    }
    let (host, port) = oxcopy_bench::split_authority(authority, 3260, url)?;
    let (target, lun) = path.rsplit_once('/').ok_or_else(|| anyhow!("URL has no LUN: {url}"))?;
    if host.is_empty() || target.is_empty() {
        bail!("URL needs a host and a target name: {url}");
    }
    let lun = lun.parse().with_context(|| format!("bad LUN in {url}"))?;
    Ok(IscsiUrl { host, port, target: target.to_string(), lun })
}

/// Parse an `iscsi://` or `nvme+tcp://` URL (the NVMe one must name a
/// namespace).
fn parse_any_url(url: &str) -> Result<Url> {
    if url.starts_with("nvme+tcp://") {
        let u = oxcopy_bench::parse_nvme_url(url)?;
        if u.nsid.is_none() {
            bail!("URL has no namespace ID: {url}");
        }
        Ok(Url::Nvme(u))
    } else {
        parse_url(url).map(Url::Iscsi)
    }
}

/// The connection the workers share.
enum Client {
    Iscsi { session: Session, lun: u64 },
    Nvme { ctrl: Arc<NvmeController>, nsid: u32 },
}

/// What every worker shares.
struct Work {
    client: Client,
    write: bool,
    random: bool,
    block_size: u32,
    num_blocks: u64,
    blocks: u32,
    /// Written by every WRITE (sliced, never copied).
    data: Bytes,
    /// Next LBA of the sequential sweep.
    next_lba: AtomicU64,
    deadline: Instant,
    stop: AtomicBool,
    ios: AtomicU64,
    bytes: AtomicU64,
    latency_ns: AtomicU64,
    error: Mutex<Option<String>>,
}

impl Work {
    /// The LBA of the next command: sequential (whole commands, wrapping
    /// at the end of the LUN) or uniformly random.
    fn next_lba(&self, rng: &mut u64) -> u64 {
        let n = u64::from(self.blocks);
        if self.random {
            return xorshift(rng) % (self.num_blocks - n + 1);
        }
        sequential_next(&self.next_lba, n, self.num_blocks)
    }

    fn fail(&self, e: String) {
        self.stop.store(true, Ordering::Relaxed);
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(e);
    }
}

/// Take the next `n`-block command of a sweep over `num_blocks` blocks:
/// whole commands only, back to LBA 0 when the next one would pass the end.
fn sequential_next(next: &AtomicU64, n: u64, num_blocks: u64) -> u64 {
    let mut cur = next.load(Ordering::Relaxed);
    loop {
        let lba = if cur + n > num_blocks { 0 } else { cur };
        match next.compare_exchange_weak(cur, lba + n, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return lba,
            Err(c) => cur = c,
        }
    }
}

fn xorshift(s: &mut u64) -> u64 {
    let mut x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    x
}

/// One queue slot: issue a command, wait for it, repeat until the deadline.
async fn worker(w: Arc<Work>, rng: u64) {
    match &w.client {
        Client::Iscsi { session, lun } => iscsi_worker(&w, session, *lun, rng).await,
        Client::Nvme { ctrl, nsid } => nvme_worker(&w, ctrl, *nsid, rng).await,
    }
}

/// [`worker`] over iSCSI: READ(16) / WRITE(16).
async fn iscsi_worker(w: &Work, session: &Session, lun: u64, mut rng: u64) {
    let len = w.blocks * w.block_size;
    while !w.stop.load(Ordering::Relaxed) && Instant::now() < w.deadline {
        let lba = w.next_lba(&mut rng);
        let (c, dir) = if w.write {
            (cdb::write16(lba, w.blocks, false), DataDir::Write { data: w.data.clone() })
        } else {
            (cdb::read16(lba, w.blocks, false), DataDir::Read { len })
        };
        let t0 = Instant::now();
        let outcome = match session.submit(lun, &c, dir).await {
            Ok(pending) => pending.await,
            Err(e) => Err(e),
        };
        let what = if w.write { "WRITE(16)" } else { "READ(16)" };
        match outcome {
            Ok(o) if o.is_good() => {
                if !w.write && o.data.len() != len as usize {
                    w.fail(format!("{what} at LBA {lba} returned {} of {len} bytes", o.data.len()));
                    return;
                }
                w.latency_ns.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                w.ios.fetch_add(1, Ordering::Relaxed);
                w.bytes.fetch_add(u64::from(len), Ordering::Relaxed);
            }
            Ok(o) => {
                let sense = o.sense_info().map(|s| s.to_string()).unwrap_or_else(|| "no sense".into());
                w.fail(format!("{what} at LBA {lba} failed: status {:#04x}, {sense}", o.status));
                return;
            }
            Err(e) => {
                w.fail(format!("{what} at LBA {lba} failed: {e}"));
                return;
            }
        }
    }
}

/// [`worker`] over NVMe/TCP: Read / Write (round-robin over the I/O queues).
async fn nvme_worker(w: &Work, ctrl: &NvmeController, nsid: u32, mut rng: u64) {
    let len = w.blocks * w.block_size;
    let (opcode, what) = if w.write { (Opcode::WRITE, "Write") } else { (Opcode::READ, "Read") };
    while !w.stop.load(Ordering::Relaxed) && Instant::now() < w.deadline {
        let lba = w.next_lba(&mut rng);
        // `run` checked that `blocks` fits a command.
        let Some(sqe) = rw_sqe(opcode, 0, nsid, lba, w.blocks, w.block_size, false) else {
            w.fail(format!("{what} of {} blocks does not fit a command", w.blocks));
            return;
        };
        let (data, read_len) = if w.write { (Some(w.data.clone()), 0) } else { (None, len) };
        let t0 = Instant::now();
        match ctrl.io(sqe, data, read_len).await {
            Ok(c) if c.cqe.status.is_success() => {
                if !w.write && c.data.len() != len as usize {
                    w.fail(format!("{what} at LBA {lba} returned {} of {len} bytes", c.data.len()));
                    return;
                }
                w.latency_ns.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                w.ios.fetch_add(1, Ordering::Relaxed);
                w.bytes.fetch_add(u64::from(len), Ordering::Relaxed);
            }
            Ok(c) => {
                w.fail(format!("{what} at LBA {lba} failed: status {}", c.cqe.status));
                return;
            }
            Err(e) => {
                w.fail(format!("{what} at LBA {lba} failed: {e}"));
                return;
            }
        }
    }
}

/// TEST UNIT READY until no UNIT ATTENTION is left (tgt reports POWER ON
/// OCCURRED to a new session; libiscsi's login does the same).
async fn clear_unit_attentions(session: &Session, lun: u64) -> Result<()> {
    for _ in 0..16 {
        let o = session.execute(lun, &cdb::test_unit_ready(), DataDir::None).await.context("TEST UNIT READY")?;
        if o.is_good() {
            return Ok(());
        }
        match o.sense_info() {
            Some(s) if s.sense_key() == oxcopy_scsi::SenseKey::UNIT_ATTENTION => continue,
            s => bail!("TEST UNIT READY: status {:#04x}, {}", o.status, s.map_or("no sense".into(), |s| s.to_string())),
        }
    }
    bail!("TEST UNIT READY still reports UNIT ATTENTION after 16 tries")
}

/// Log in (iSCSI) or connect (NVMe/TCP): the client, and the LUN's or
/// namespace's size in blocks and block size.
async fn connect(args: &Args, url: &Url) -> Result<(Client, u64, u32)> {
    match url {
        Url::Iscsi(url) => {
            let addr = oxcopy_bench::resolve(&url.host, url.port)?;
            let digest = if args.digests { DigestPolicy::Crc32c } else { DigestPolicy::None };
            let cfg = SessionConfig {
                initiator_name: args.initiator.clone(),
                keepalive_interval: None,
                command_timeout: Duration::from_secs(60),
                header_digest: digest,
                data_digest: digest,
                ..SessionConfig::for_target(&url.target)
            };
            let session = Session::connect(addr, cfg).await.with_context(|| format!("login to {}", args.url))?;
            clear_unit_attentions(&session, url.lun).await?;
            let (num_blocks, block_size) = session.read_capacity16(url.lun).await.context("READ CAPACITY (16)")?;
            Ok((Client::Iscsi { session, lun: url.lun }, num_blocks, block_size))
        }
        Url::Nvme(url) => {
            let addr = oxcopy_bench::resolve(&url.host, url.port)?;
            let nsid = url.nsid.ok_or_else(|| anyhow!("URL has no namespace ID: {}", args.url))?;
            let cfg = NvmeConfig {
                io_queues: args.queues,
                header_digest: args.digests,
                data_digest: args.digests,
                ..NvmeConfig::default()
            };
            let ctrl = NvmeController::connect(addr, &url.nqn, &cfg)
                .await
                .with_context(|| format!("connect to {}", args.url))?;
            if ctrl.io_queues() < usize::from(args.queues) {
                eprintln!("oxcopy-io-bench: the controller granted {} of {} I/O queues", ctrl.io_queues(), args.queues);
            }
            let g = ctrl.namespace(nsid).await.with_context(|| format!("Identify Namespace {nsid}"))?;
            if args.blocks > 65536 {
                bail!("{} blocks per command: an NVMe Read/Write moves at most 65536", args.blocks);
            }
            Ok((Client::Nvme { ctrl: Arc::new(ctrl), nsid }, g.blocks, g.block_size))
        }
    }
}

async fn run(args: Args) -> Result<bool> {
    let url = parse_any_url(&args.url)?;
    let (client, num_blocks, block_size) = connect(&args, &url).await?;
    let nvme = matches!(client, Client::Nvme { .. });
    if block_size == 0 || num_blocks < u64::from(args.blocks) {
        bail!("LUN of {num_blocks} blocks of {block_size} bytes is smaller than one command");
    }
    let len = u64::from(args.blocks) * u64::from(block_size);
    if len > u64::from(u32::MAX) {
        bail!("{len} bytes per command is too large");
    }
    let write = !args.read;
    let data: Bytes = if write {
        (0..len).map(|i| (i.wrapping_mul(131) + 7) as u8).collect::<Vec<u8>>().into()
    } else {
        Bytes::new()
    };
    let what = match (nvme, write) {
        (false, true) => "WRITE(16)",
        (false, false) => "READ(16)",
        (true, true) => "NVMe Write",
        (true, false) => "NVMe Read",
    };
    println!(
        "{} {what} of {} blocks ({len} bytes), {} in flight, {:.1} s, {} of {num_blocks} blocks of {block_size} bytes",
        if args.random { "random" } else { "sequential" },
        args.blocks,
        args.queue_depth,
        args.secs,
        if nvme { "namespace" } else { "LUN" },
    );
    let start = Instant::now();
    let work = Arc::new(Work {
        client,
        write,
        random: args.random,
        block_size,
        num_blocks,
        blocks: args.blocks,
        data,
        next_lba: AtomicU64::new(0),
        deadline: start + Duration::from_secs_f64(args.secs),
        stop: AtomicBool::new(false),
        ios: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        latency_ns: AtomicU64::new(0),
        error: Mutex::new(None),
    });
    let seed =
        start.elapsed().as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
    let mut handles = Vec::with_capacity(args.queue_depth as usize);
    for i in 0..u64::from(args.queue_depth) {
        let rng = (seed ^ i.wrapping_mul(0xbf58_476d_1ce4_e5b9)) | 1;
        handles.push(tokio::spawn(worker(work.clone(), rng)));
    }
    for h in handles {
        if let Err(e) = h.await {
            work.fail(format!("worker task failed: {e}"));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let mut sync = String::new();
    if args.sync_after {
        let t = Instant::now();
        let r = match &work.client {
            Client::Iscsi { session, lun } => {
                session.sync_cache16(*lun, 0, 0).await.map_err(|e| format!("SYNCHRONIZE CACHE: {e}"))
            }
            Client::Nvme { ctrl, nsid } => ctrl.flush(*nsid).await.map_err(|e| format!("Flush: {e}")),
        };
        match r {
            Ok(()) => sync = format!(" sync_ms={}", t.elapsed().as_millis()),
            Err(e) => work.fail(e),
        }
    }
    let ios = work.ios.load(Ordering::Relaxed);
    let bytes = work.bytes.load(Ordering::Relaxed);
    let lat = if ios > 0 { work.latency_ns.load(Ordering::Relaxed) as f64 / ios as f64 / 1e3 } else { 0.0 };
    println!(
        "RESULT iops={:.0} mib_s={:.1} bytes={bytes} secs={secs:.3} lat_avg_us={lat:.0}{sync}",
        ios as f64 / secs,
        bytes as f64 / secs / (1024.0 * 1024.0),
    );
    let error = work.error.lock().unwrap_or_else(|p| p.into_inner()).take();
    let work = Arc::into_inner(work);
    match work.map(|w| w.client) {
        Some(Client::Iscsi { session, .. }) => {
            let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
        }
        Some(Client::Nvme { ctrl, .. }) => {
            if let Some(ctrl) = Arc::into_inner(ctrl) {
                let _ = tokio::time::timeout(Duration::from_secs(5), ctrl.shutdown()).await;
            }
        }
        None => {}
    }
    match error {
        Some(e) => {
            eprintln!("oxcopy-io-bench: {e}");
            Ok(false)
        }
        None => Ok(true),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !(args.secs > 0.0 && args.secs.is_finite()) {
        eprintln!("oxcopy-io-bench: -t must be a positive number of seconds");
        return ExitCode::from(2);
    }
    let rt = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads as usize).enable_all().build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oxcopy-io-bench: cannot start the runtime: {e}");
            return ExitCode::from(10);
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(10),
        Err(e) => {
            eprintln!("oxcopy-io-bench: {e:#}");
            ExitCode::from(10)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("iscsi://127.0.0.1:3262/iqn.2026-11.dev.oxcopy:bench/0").unwrap();
        assert_eq!(
            u,
            IscsiUrl { host: "127.0.0.1".into(), port: 3262, target: "iqn.2026-11.dev.oxcopy:bench".into(), lun: 0 }
        );
        let u = parse_url("iscsi://[::1]/iqn.2026-11.dev.oxcopy:t/3").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.lun), ("::1", 3260, 3));
        let u = parse_url("iscsi://host/iqn.x:y/1").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.target.as_str()), ("host", 3260, "iqn.x:y"));
        assert!(parse_url("http://h/t/0").is_err());
        assert!(parse_url("iscsi://h/t").is_err());
        assert!(parse_url("iscsi://h:x/t/0").is_err());
        assert!(parse_url("iscsi://u%p@h/t/0").is_err());
        assert!(parse_url("iscsi://h/t/lun").is_err());
    }

    #[test]
    fn nvme_urls() {
        let u = parse_any_url("nvme+tcp://127.0.0.1:4421/nqn.2026-12.dev.oxcopy:nvme/1").unwrap();
        let Url::Nvme(u) = u else { panic!("not NVMe: {u:?}") };
        assert_eq!(
            (u.host.as_str(), u.port, u.nqn.as_str(), u.nsid),
            ("127.0.0.1", 4421, "nqn.2026-12.dev.oxcopy:nvme", Some(1))
        );
        let Url::Nvme(u) = parse_any_url("nvme+tcp://[::1]/nqn.x:y/7").unwrap() else { panic!() };
        assert_eq!((u.host.as_str(), u.port, u.nsid), ("::1", 4420, Some(7)));
        assert!(matches!(parse_any_url("iscsi://h/t/0").unwrap(), Url::Iscsi(_)));
        assert!(parse_any_url("nvme+tcp://h/nqn.x:y").is_err());
        assert!(parse_any_url("nvme+tcp://h/nqn.x:y/0").is_err());
        assert!(parse_any_url("nvme+tcp://h/nqn.x:y/ns").is_err());
        assert!(parse_any_url("nvme+tcp://h:99999/nqn.x:y/1").is_err());
        assert!(parse_any_url("nvme+tcp:///nqn.x:y/1").is_err());
        assert!(parse_any_url("nvme+tcp://h//1").is_err());
    }

    #[test]
    fn args_follow_the_io_sh_contract() {
        let a =
            Args::try_parse_from(["b", "-i", "iqn.x:y", "-m", "8", "-b", "2048", "-t", "10", "iscsi://h/t/0"]).unwrap();
        assert_eq!((a.queue_depth, a.blocks, a.secs, a.read, a.random), (8, 2048, 10.0, false, false));
        let a = Args::try_parse_from(["b", "--read", "-r", "iscsi://h/t/0"]).unwrap();
        assert!(a.read && a.random);
        assert!(Args::try_parse_from(["b", "--read", "--write", "iscsi://h/t/0"]).is_err());
        assert!(Args::try_parse_from(["b", "-m", "0", "iscsi://h/t/0"]).is_err());
        let a = Args::try_parse_from(["b", "--read", "--queues", "4", "--digests", "nvme+tcp://h/n/1"]).unwrap();
        assert!(a.read && a.digests && a.queues == 4);
        assert!(Args::try_parse_from(["b", "--queues", "0", "nvme+tcp://h/n/1"]).is_err());
    }

    #[test]
    fn sequential_lbas_wrap_on_whole_commands() {
        let next = AtomicU64::new(0);
        let seen: Vec<u64> = (0..5).map(|_| sequential_next(&next, 4, 10)).collect();
        assert_eq!(seen, vec![0, 4, 0, 4, 0]);
        let next = AtomicU64::new(0);
        let seen: Vec<u64> = (0..4).map(|_| sequential_next(&next, 5, 10)).collect();
        assert_eq!(seen, vec![0, 5, 0, 5]);
    }
}
