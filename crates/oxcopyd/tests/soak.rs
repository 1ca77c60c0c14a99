//! Soak test of the real `oxcopyd` binary.
//!
//! 1. Latency: 4 KiB reads, idle and while a large EXTENDED COPY (4 GiB of
//!    real data by default, `OXCOPY_SOAK_COPY_MIB`) runs on other LUNs; p50
//!    and p99 are printed, never asserted (performance is not a test).
//! 2. Mixed workload for `OXCOPY_SOAK_SECS` (default 20): 16 sessions on
//!    the same LUNs, each with a region of its own for WRITE and COMPARE
//!    AND WRITE (plus deliberate miscompares) and a copy destination region
//!    filled by EXTENDED COPY (and POPULATE TOKEN / WRITE USING TOKEN when
//!    served) from a shared stable source region that every session also
//!    reads. Every read's expected content is known: zero mismatches and no
//!    unprovoked errors are allowed.
//!
//! The daemon's resident memory (VmRSS) is printed at start and end.
//! `scripts/soak.sh` runs the long version.
//!
//! `soak_on_rbd` runs the same with LUNs 0, 1 and 3 on Ceph RBD images of
//! the cluster `OXCOPY_CEPH_CONF` names (see `rbd_support`): the large copy
//! goes from the file LUN 2 to the image of LUN 3 (file → RBD; 256 MiB by
//! default) and is checked through the daemon, and the sessions' copies
//! go from LUN 0 to LUN 1 (RBD → RBD) or to a file LUN 4 laid out like
//! LUN 1 (RBD → file).

mod common;
mod rbd_support;

use bytes::Bytes;
use common::spawn_opts;
use oxcopy_initiator::odx::{BlockRange, PopulateToken, WriteUsingToken};
use oxcopy_initiator::scsi::cdb;
use oxcopy_initiator::xcopy::{Cscd, Designator, ListIdUsage, ParamList, Segment};
use oxcopy_initiator::{DataDir, ScsiOutcome, Session, SessionConfig};
use oxcopy_testkit::{file_bytes, pattern, DaemonConfig, Lun, Proc, Spawn, Target};
use rand::{Rng, SeedableRng};
use rbd_support::Images;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const IQN: &str = "iqn.2026-11.dev.oxcopy:soak";
const HOST: &str = "iqn.2026-11.test:soak-host";
const BS: u64 = 512;
const SESSIONS: usize = 16;
/// LUN 0: session i owns [i * REGION, (i + 1) * REGION) for writes and CAW.
const REGION: u64 = 2 << 20;
/// LUN 0: the shared stable source [SRC, SRC + SRC_LEN).
const SRC: u64 = SESSIONS as u64 * REGION;
const SRC_LEN: u64 = 32 << 20;
const LUN0_BYTES: u64 = SRC + SRC_LEN;
/// LUN 1: session i's copy destination [i * REGION, (i + 1) * REGION).
const LUN1_BYTES: u64 = SESSIONS as u64 * REGION;
/// With RBD LUNs: a file LUN laid out like LUN 1, a second copy destination.
const FILE_DST_LUN: u64 = 4;
const STEP: Duration = Duration::from_secs(60);

/// The daemon on `config`, its stderr passed through.
fn spawn(config: &Path) -> Proc {
    Proc::spawn(
        config,
        &Spawn { rust_log: "warn", capture_stderr: false, cwd: None, url_timeout: STEP, ..spawn_opts() },
    )
}

/// What the soak does with the daemon: watch its memory, log in, stop it.
trait SoakDaemon {
    fn rss_kib(&self) -> u64;
    async fn session(&self) -> Session;
    fn stop(self);
}

impl SoakDaemon for Proc {
    fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    async fn session(&self) -> Session {
        let cfg = SessionConfig {
            initiator_name: HOST.into(),
            command_timeout: Duration::from_secs(300),
            login_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: None,
            ..SessionConfig::for_target(IQN)
        };
        tokio::time::timeout(STEP, Session::connect(self.addr(), cfg)).await.expect("login in time").expect("login")
    }

    /// SIGTERM (graceful) by PID and wait, bounded.
    fn stop(mut self) {
        self.sigterm().expect("SIGTERM by PID");
        match self.wait_exit(Duration::from_secs(30), Duration::from_millis(100)) {
            Some(st) => assert!(st.success(), "oxcopyd exit status {st}"),
            None => panic!("oxcopyd did not stop within 30 s of SIGTERM"),
        }
    }
}

async fn exec(s: &Session, lun: u64, cdb: &[u8], dir: DataDir, what: &str) -> ScsiOutcome {
    match tokio::time::timeout(STEP, s.execute(lun, cdb, dir)).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what}: no answer within {STEP:?}"),
    }
}

#[track_caller]
fn good(o: &ScsiOutcome, what: &str) {
    assert!(o.is_good(), "{what}: status {:#04x} {:?} (unprovoked error)", o.status, o.sense_info());
}

async fn read(s: &Session, lun: u64, off: u64, len: u64, what: &str) -> Bytes {
    let o =
        exec(s, lun, &cdb::read16(off / BS, (len / BS) as u32, false), DataDir::Read { len: len as u32 }, what).await;
    good(&o, what);
    o.data
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// 4 KiB random reads of the stable source until `stop` (at most `max`).
async fn sample_reads(s: &Session, stop: &AtomicBool, max: Duration, src: &[u8]) -> Vec<Duration> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut v = Vec::new();
    let t0 = Instant::now();
    while !stop.load(Ordering::Relaxed) && t0.elapsed() < max {
        let off = rng.gen_range(0..SRC_LEN / 4096) * 4096;
        let t = Instant::now();
        let got = read(s, 0, SRC + off, 4096, "latency read").await;
        v.push(t.elapsed());
        assert!(got[..] == src[off as usize..off as usize + 4096], "latency read: data mismatch");
    }
    v.sort();
    v
}

#[derive(Default)]
struct Counts {
    ops: AtomicU64,
    writes: AtomicU64,
    reads: AtomicU64,
    caw: AtomicU64,
    miscompares: AtomicU64,
    xcopies: AtomicU64,
    token_copies: AtomicU64,
}

/// One session's mixed workload until `deadline`; its copies go to the
/// LUNs `dests` (LUN 1, and on RBD the file LUN too), by token with
/// probability `tokens` (0 when token copies are not served).
async fn worker(
    s: Session,
    i: usize,
    src: Arc<Vec<u8>>,
    deadline: Instant,
    c: Arc<Counts>,
    tokens: f64,
    dests: Arc<Vec<u64>>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + i as u64);
    let base = i as u64 * REGION;
    let mut own = vec![0u8; REGION as usize]; // LUN 0 region: starts zero (sparse file, new image)
    let mut dst = vec![vec![0u8; REGION as usize]; dests.len()]; // the region on each destination LUN
    let d0 = s.lu_designator(0).await.expect("designator");
    let mut dd = Vec::new();
    for &lun in dests.iter() {
        dd.push(s.lu_designator(lun).await.expect("designator"));
    }
    let pick = |rng: &mut rand::rngs::StdRng| if dests.len() == 1 { 0 } else { rng.gen_range(0..dests.len()) };
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let what = rng.gen_range(0..100);
        match what {
            0..=29 => {
                let len = rng.gen_range(1..=32u64) * 2048;
                let off = rng.gen_range(0..(REGION - len) / BS) * BS;
                let data = pattern((i as u64) << 40 | n, len as usize);
                let o = exec(
                    &s,
                    0,
                    &cdb::write16((base + off) / BS, (len / BS) as u32, rng.gen_bool(0.1)),
                    DataDir::Write { data: Bytes::from(data.clone()) },
                    "write",
                )
                .await;
                good(&o, "write");
                own[off as usize..(off + len) as usize].copy_from_slice(&data);
                c.writes.fetch_add(1, Ordering::Relaxed);
            }
            30..=54 => {
                let len = rng.gen_range(1..=64u64) * 2048;
                let off = rng.gen_range(0..(REGION - len) / BS) * BS;
                let got = read(&s, 0, base + off, len, "read own").await;
                assert!(
                    got[..] == own[off as usize..(off + len) as usize],
                    "session {i}: own region mismatch at {off}"
                );
                c.reads.fetch_add(1, Ordering::Relaxed);
            }
            55..=64 => {
                let off = rng.gen_range(0..(SRC_LEN - 65536) / BS) * BS;
                let len = rng.gen_range(1..=128u64) * 512;
                let got = read(&s, 0, SRC + off, len, "read source").await;
                assert!(got[..] == src[off as usize..(off + len) as usize], "session {i}: source mismatch at {off}");
                c.reads.fetch_add(1, Ordering::Relaxed);
            }
            65..=76 => {
                let blocks = rng.gen_range(1..=8u64);
                let off = rng.gen_range(0..(REGION / BS - blocks)) * BS;
                let len = (blocks * BS) as usize;
                let provoke = rng.gen_bool(0.2);
                let mut compare = own[off as usize..off as usize + len].to_vec();
                if provoke {
                    compare[rng.gen_range(0..len)] ^= 0x5A;
                }
                let new = pattern((i as u64) << 40 | 1 << 39 | n, len);
                let mut payload = compare;
                payload.extend_from_slice(&new);
                let mut c16 = [0u8; 16];
                c16[0] = 0x89;
                c16[2..10].copy_from_slice(&((base + off) / BS).to_be_bytes());
                c16[13] = blocks as u8;
                let o = exec(&s, 0, &c16, DataDir::Write { data: Bytes::from(payload) }, "COMPARE AND WRITE").await;
                if provoke {
                    let sense = o.sense_info().unwrap_or_else(|| panic!("miscompare: status {:#04x}", o.status));
                    assert_eq!((sense.key, sense.asc, sense.ascq), (0x0E, 0x1D, 0x00), "MISCOMPARE");
                    c.miscompares.fetch_add(1, Ordering::Relaxed);
                } else {
                    good(&o, "COMPARE AND WRITE");
                    own[off as usize..off as usize + len].copy_from_slice(&new);
                    c.caw.fetch_add(1, Ordering::Relaxed);
                }
            }
            77..=88 => {
                let blocks = rng.gen_range(1..=1024u64);
                let soff = rng.gen_range(0..(SRC_LEN / BS - blocks)) * BS;
                let doff = rng.gen_range(0..(REGION / BS - blocks)) * BS;
                let by_token = tokens > 0.0 && rng.gen_bool(tokens);
                let d = pick(&mut rng);
                if by_token {
                    let list_id = (i as u32) << 24 | (n as u32 & 0xFF_FFFF);
                    let pt = PopulateToken {
                        ranges: vec![BlockRange { lba: (SRC + soff) / BS, blocks: blocks as u32 }],
                        ..Default::default()
                    };
                    let o =
                        tokio::time::timeout(STEP, s.populate_token(0, list_id, &pt)).await.expect("PT").expect("PT");
                    good(&o, "POPULATE TOKEN");
                    let info = s.receive_rod_token_information(0, list_id).await.expect("RRTI");
                    let token = info.token.expect("token");
                    let wut = WriteUsingToken {
                        token,
                        ranges: vec![BlockRange { lba: (base + doff) / BS, blocks: blocks as u32 }],
                        del_tkn: true,
                        ..Default::default()
                    };
                    let o = tokio::time::timeout(STEP, s.write_using_token(dests[d], list_id, &wut))
                        .await
                        .expect("WUT")
                        .expect("WUT");
                    good(&o, "WRITE USING TOKEN");
                    c.token_copies.fetch_add(1, Ordering::Relaxed);
                } else {
                    let list = copy_list(&d0, &dd[d], (SRC + soff) / BS, (base + doff) / BS, blocks as u16);
                    let o = tokio::time::timeout(STEP, s.extended_copy(0, &list)).await.expect("XCOPY").expect("XCOPY");
                    good(&o, "EXTENDED COPY");
                    c.xcopies.fetch_add(1, Ordering::Relaxed);
                }
                let len = (blocks * BS) as usize;
                dst[d][doff as usize..doff as usize + len].copy_from_slice(&src[soff as usize..soff as usize + len]);
            }
            _ => {
                let len = rng.gen_range(1..=64u64) * 2048;
                let off = rng.gen_range(0..(REGION - len) / BS) * BS;
                let d = pick(&mut rng);
                let got = read(&s, dests[d], base + off, len, "read destination").await;
                assert!(
                    got[..] == dst[d][off as usize..(off + len) as usize],
                    "session {i}: LUN {} destination mismatch at {off}",
                    dests[d]
                );
                c.reads.fetch_add(1, Ordering::Relaxed);
            }
        }
        c.ops.fetch_add(1, Ordering::Relaxed);
    }
    // Final full check of both regions.
    let regions = std::iter::once((0u64, &own)).chain(dests.iter().copied().zip(&dst));
    for (lun, mine) in regions {
        for off in (0..REGION).step_by(1 << 20) {
            let got = read(&s, lun, base + off, 1 << 20, "final read").await;
            assert!(got[..] == mine[off as usize..(off + (1 << 20)) as usize], "session {i}: LUN {lun} final mismatch");
        }
    }
    let _ = s.logout().await;
}

fn copy_list(src: &Designator, dst: &Designator, src_lba: u64, dst_lba: u64, blocks: u16) -> ParamList {
    ParamList {
        list_id: 0,
        usage: ListIdUsage::None,
        cscds: vec![Cscd::new(src.clone(), 0), Cscd::new(dst.clone(), 0)],
        segments: vec![Segment::BlockToBlock { src: 0, dst: 1, dc: false, blocks, src_lba, dst_lba }],
    }
}

/// A file of `mib` MiB of non-zero data (distinct per MiB).
fn fill(path: &Path, mib: u64) {
    let mut f = std::io::BufWriter::with_capacity(4 << 20, std::fs::File::create(path).expect("create"));
    let mut buf = pattern(0xB16, 1 << 20);
    for k in 0..mib {
        buf[..8].copy_from_slice(&k.to_le_bytes());
        f.write_all(&buf).expect("fill");
    }
    f.flush().expect("flush");
}

/// `len` bytes at `off` of LUN `lun` with 4 KiB blocks, through the daemon.
async fn read_4k(s: &Session, lun: u64, off: u64, len: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len as usize);
    for at in (off..off + len).step_by(1 << 20) {
        let n = (1u64 << 20).min(off + len - at);
        let o =
            exec(s, lun, &cdb::read16(at / 4096, (n / 4096) as u32, false), DataDir::Read { len: n as u32 }, "read")
                .await;
        good(&o, "read of the large copy's destination");
        v.extend_from_slice(&o.data);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak() {
    soak_run(None).await;
}

/// The same on RBD LUNs (`OXCOPY_CEPH_CONF`; skipped without it unless
/// `OXCOPY_REQUIRE_CEPH=1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_on_rbd() {
    let Some(conf) = rbd_support::cluster("soak on RBD LUNs") else { return };
    let mut images = Images::new(&conf, "soak");
    soak_run(Some(&mut images)).await;
    let left = images.remove_all();
    assert!(left.is_empty(), "RBD images not removed: {left:?}");
}

async fn soak_run(rbd: Option<&mut Images>) {
    let on_rbd = rbd.is_some();
    let secs: u64 = std::env::var("OXCOPY_SOAK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let copy_mib: u64 = std::env::var("OXCOPY_SOAK_COPY_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(if on_rbd {
        256
    } else {
        4096
    });
    let copy_mib = copy_mib.div_ceil(64) * 64;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let src = Arc::new(pattern(0x50c, SRC_LEN as usize));
    {
        let mut l0 = vec![0u8; LUN0_BYTES as usize];
        l0[SRC as usize..].copy_from_slice(&src);
        std::fs::write(d.join("lun0.img"), l0).expect("lun0");
    }
    let t = Instant::now();
    fill(&d.join("big-src.img"), copy_mib);
    eprintln!("soak: wrote the {copy_mib} MiB copy source in {:?}", t.elapsed());
    let big_src = Lun::new(2, d.join("big-src.img")).block_size(4096);
    let target = match rbd {
        None => Target::new(IQN)
            .lun(Lun::new(0, d.join("lun0.img")))
            .lun(Lun::new(1, d.join("lun1.img")).size(LUN1_BYTES))
            .lun(big_src)
            .lun(Lun::new(3, d.join("big-dst.img")).size(format!("{copy_mib}MiB")).block_size(4096)),
        Some(images) => {
            let conf = images.conf().to_path_buf();
            let s0 = images.import("lun0", &d.join("lun0.img"));
            std::fs::remove_file(d.join("lun0.img")).expect("rm lun0");
            Target::new(IQN)
                .lun(Lun::rbd(0, &s0, &conf))
                .lun(Lun::rbd(1, &images.spec("lun1"), &conf).size(LUN1_BYTES))
                .lun(big_src)
                .lun(Lun::rbd(3, &images.spec("big-dst"), &conf).size(format!("{copy_mib}MiB")).block_size(4096))
                .lun(Lun::new(FILE_DST_LUN as u32, d.join("lun4.img")).size(LUN1_BYTES))
        }
    };
    DaemonConfig::new(d.join("state")).server("nop_interval", 0).target(target).write(d.join("oxcopyd.toml"));
    let p = spawn(&d.join("oxcopyd.toml"));
    let rss_start = p.rss_kib();

    // 1. Latency, idle and during a large copy.
    let probe = p.session().await;
    let stop = AtomicBool::new(false);
    let idle = sample_reads(&probe, &stop, Duration::from_secs(2), &src).await;
    let copier = p.session().await;
    let (s2, s3) = (copier.lu_designator(2).await.expect("d2"), copier.lu_designator(3).await.expect("d3"));
    let seg_blocks = 16384u64; // 64 MiB of 4 KiB blocks per segment
    let segs = copy_mib / 64;
    let stop = Arc::new(AtomicBool::new(false));
    let copy_task = {
        let stop = stop.clone();
        let copier = copier.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            // At most 64 segments per command.
            for first in (0..segs).step_by(64) {
                let segments = (first..(first + 64).min(segs))
                    .map(|k| Segment::BlockToBlock {
                        src: 0,
                        dst: 1,
                        dc: false,
                        blocks: seg_blocks as u16,
                        src_lba: k * seg_blocks,
                        dst_lba: k * seg_blocks,
                    })
                    .collect();
                let list = ParamList {
                    list_id: 0,
                    usage: ListIdUsage::None,
                    cscds: vec![Cscd::new(s2.clone(), 0), Cscd::new(s3.clone(), 0)],
                    segments,
                };
                let o = copier.extended_copy(2, &list).await.expect("big copy");
                good(&o, "large EXTENDED COPY");
            }
            stop.store(true, Ordering::Relaxed);
            t.elapsed()
        })
    };
    let during = sample_reads(&probe, &stop, Duration::from_secs(600), &src).await;
    let copy_took = tokio::time::timeout(Duration::from_secs(900), copy_task).await.expect("copy ends").expect("copy");
    // Spot-check the copy: 16 MiB samples at both ends and the middle
    // (from the destination file, or through the daemon from the image).
    for off_mib in [0, copy_mib / 2, copy_mib - 16] {
        let len = 16u64 << 20;
        let a = tokio::task::spawn_blocking({
            let p = d.join("big-src.img");
            move || file_bytes(&p, off_mib << 20, len)
        });
        let b = if on_rbd {
            read_4k(&copier, 3, off_mib << 20, len).await
        } else {
            tokio::task::spawn_blocking({
                let p = d.join("big-dst.img");
                move || file_bytes(&p, off_mib << 20, len)
            })
            .await
            .expect("read")
        };
        assert!(a.await.expect("read") == b, "large copy differs at {off_mib} MiB");
    }
    eprintln!(
        "soak: 4 KiB read latency idle: n={} p50={:?} p99={:?}; during the {copy_mib} MiB copy ({copy_took:?}): n={} p50={:?} p99={:?}",
        idle.len(),
        percentile(&idle, 0.5),
        percentile(&idle, 0.99),
        during.len(),
        percentile(&during, 0.5),
        percentile(&during, 0.99),
    );
    let _ = std::fs::remove_file(d.join("big-src.img"));

    // 2. Mixed workload.
    let tokens = {
        let pt = PopulateToken { ranges: vec![BlockRange { lba: SRC / BS, blocks: 8 }], ..Default::default() };
        matches!(probe.populate_token(0, 0xFFFF_FF00, &pt).await, Ok(o) if o.is_good())
    };
    let counts = Arc::new(Counts::default());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let dests = Arc::new(if on_rbd { vec![1, FILE_DST_LUN] } else { vec![1] });
    // A token copy from an RBD LUN makes and removes an RBD snapshot, which
    // holds up the image's I/O for a good part of a second: at the files'
    // share (half the copies) they take most of the run (~20 ops/s instead
    // of ~2000); a tenth keeps them in the mix without crowding it out.
    let token_share = match (tokens, on_rbd) {
        (false, _) => 0.0,
        (true, false) => 0.5,
        (true, true) => 0.1,
    };
    let mut set = tokio::task::JoinSet::new();
    for i in 0..SESSIONS {
        let s = p.session().await;
        set.spawn(worker(s, i, src.clone(), deadline, counts.clone(), token_share, dests.clone()));
    }
    let mut rss_peak = p.rss_kib();
    loop {
        match tokio::time::timeout(Duration::from_secs(1), set.join_next()).await {
            Ok(None) => break,
            Ok(Some(r)) => r.expect("worker"),
            Err(_) => {
                rss_peak = rss_peak.max(p.rss_kib());
                assert!(Instant::now() < deadline + STEP * 2, "workers did not finish");
            }
        }
    }
    let rss_end = p.rss_kib();
    let rss_peak = rss_peak.max(rss_end);
    let c = &counts;
    eprintln!(
        "soak{}: {secs} s, {} sessions, {} ops ({} writes, {} reads, {} COMPARE AND WRITE + {} provoked miscompares, \
         {} EXTENDED COPY, {} token copies{}); 0 mismatches, 0 unprovoked errors",
        if on_rbd { " on RBD LUNs" } else { "" },
        SESSIONS,
        c.ops.load(Ordering::Relaxed),
        c.writes.load(Ordering::Relaxed),
        c.reads.load(Ordering::Relaxed),
        c.caw.load(Ordering::Relaxed),
        c.miscompares.load(Ordering::Relaxed),
        c.xcopies.load(Ordering::Relaxed),
        c.token_copies.load(Ordering::Relaxed),
        if tokens { "" } else { " — token copies not served by this build" },
    );
    eprintln!("soak: oxcopyd VmRSS start {rss_start} KiB, peak {rss_peak} KiB, end {rss_end} KiB");
    drop((probe, copier));
    let t = Instant::now();
    p.stop();
    if on_rbd {
        eprintln!("soak on RBD LUNs: oxcopyd stopped (SIGTERM) in {:.1?}", t.elapsed());
    }
}
