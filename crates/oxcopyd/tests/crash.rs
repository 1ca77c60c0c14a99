//! Crash safety of the real `oxcopyd` binary: writes (FUA or followed by
//! SYNCHRONIZE CACHE), EXTENDED COPY copies (and ROD token copies when the
//! build serves them) run from several sessions while the daemon is killed
//! with SIGKILL at a random moment; it is restarted on the same data dir
//! and checked, round after round:
//!
//! - every write acknowledged durable (FUA, or before an acknowledged
//!   SYNCHRONIZE CACHE) is there; every other sector holds a version that
//!   was written to it at some point (no garbage, nothing older than what
//!   was durable);
//! - a copy destination holds, sector by sector, its old data or the
//!   source's; one acknowledged and synchronized holds the source's;
//! - no byte outside the ranges being written or copied changed
//!   (checksums of the copy sources and of untouched regions);
//! - persistent reservations made with APTPL survived;
//! - no stray temporary or snapshot files are left behind.
//!
//! The same runs with the LUNs on Ceph RBD images
//! (`sigkill_mid_workload_loses_nothing_acknowledged_on_rbd`, against the
//! cluster `OXCOPY_CEPH_CONF` names; see `rbd_support`): LUNs 0, 1 and 2 are
//! images, and a file LUN 3 is added, a copy destination of LUN 0 (RBD →
//! file) and a copy source holding the same bytes as LUN 0's (file → RBD,
//! into LUN 1), besides RBD → RBD. The untouched bytes of the images are
//! read back through the restarted daemon, and no `oxcopy.*` snapshot (a
//! point-in-time token's) may outlive a restart. The killed daemon held
//! each image's exclusive lock: a restart is retried while the start fails
//! on it (see [`restart`]).
//!
//! `OXCOPY_CRASH_ROUNDS` (default 5 on files, 3 on RBD) sets the number of
//! rounds, `OXCOPY_CRASH_SEED` the random seed (printed); `scripts/crash.sh`
//! runs many rounds.

mod common;
mod rbd_support;

use bytes::Bytes;
use common::{exec_past_ua, pr_keys, pr_reservation, prout, spawn_opts};
use oxcopy_initiator::odx::{BlockRange, PopulateToken, WriteUsingToken};
use oxcopy_initiator::xcopy::{Cscd, Designator, ListIdUsage, ParamList, Segment};
use oxcopy_initiator::{DataDir, Session, SessionConfig, STATUS_GOOD};
use oxcopy_testkit::{file_bytes as file_range, fnv, pattern, DaemonConfig, Lun, Proc, Spawn, Target};
use rand::{Rng, SeedableRng};
use rbd_support::Images;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const IQN: &str = "iqn.2026-11.dev.oxcopy:crash";
const HOST: &str = "iqn.2026-11.test:crash-host";
const BS: u64 = 512;
const LUN_BYTES: u64 = 32 << 20;
/// LUN 0: writes go to [0, W_END) in 4 KiB slots.
const W_END: u64 = 8 << 20;
const SLOT: u64 = 4096;
const SLOTS: usize = (W_END / SLOT) as usize;
/// LUN 0: the copy source [S_START, S_END), never written.
const S_START: u64 = 8 << 20;
const S_END: u64 = 16 << 20;
/// A destination LUN's copy destinations [0, DL), chunk j ← source chunk j.
const DL: u64 = S_END - S_START;
const CHUNK: u64 = 512 << 10;
const CHUNKS: usize = (DL / CHUNK) as usize;
const WRITERS: usize = 4;
const KEY: u64 = 0xC0FF_EE00_0000_0001;
const STEP: Duration = Duration::from_secs(30);
/// With RBD LUNs: the file LUN, a copy destination ([0, DL)) and a copy
/// source ([S_START, S_END), LUN 0's source bytes).
const FILE_LUN: u64 = 3;
/// How long a restart after SIGKILL is retried while the start fails on an
/// image's exclusive lock (the dead owner's watch times out after 30 s).
const RBD_RESTART: Duration = Duration::from_secs(60);

/// One kind of copy: source chunk j of LUN `src` → chunk j of LUN `dst`,
/// the destination `d` of [`Layout::dests`].
#[derive(Clone, Copy, Debug)]
struct Route {
    src: u64,
    dst: u64,
    d: usize,
    name: &'static str,
}

/// Content of version `v` of write slot `slot` (version 0: the prefill).
fn slot_data(slot: usize, v: u32) -> Vec<u8> {
    pattern(((slot as u64) << 24) | u64::from(v), SLOT as usize)
}

/// What the workload knows about each write slot and copy chunk.
#[derive(Default)]
struct Book {
    /// Per slot: highest version sent.
    issued: Vec<u32>,
    /// Per slot: highest version acknowledged GOOD.
    acked: Vec<u32>,
    /// Per slot: highest version known durable (FUA, or synced).
    durable: Vec<u32>,
    /// Per sector of the write region: oldest version it may still hold
    /// (what was found after the last crash).
    floor: Vec<u32>,
    /// Per destination, per copy chunk: a copy into it was acknowledged and
    /// synchronized (or found complete after a crash).
    chunk_synced: Vec<Vec<bool>>,
    writes: u64,
    syncs: u64,
    copies: u64,
    token_copies: u64,
    /// Copies acknowledged and synchronized, by route name.
    by_route: HashMap<&'static str, u64>,
}

/// The daemon on `config`, quiet but for errors (stderr collected).
fn spawn(config: &Path) -> Proc {
    Proc::spawn(config, &Spawn { rust_log: "error", url_timeout: STEP, ..spawn_opts() })
}

/// The daemon on `config` again, after the last one was killed; how long it
/// took and how many starts.
///
/// On files the first start must serve. With RBD LUNs the killed process
/// held every image's exclusive lock (managed mode), and its watch on the
/// image header outlives it until `osd_client_watch_timeout` (30 s): a new
/// `rbd_lock_acquire` meanwhile waits, and librbd breaks the dead owner's
/// lock (blocklisting it) only once the watch has expired. A start whose
/// wait outlasts its `rbd_timeout` (+ 5 s) gives up with exit 2 naming the
/// exclusive lock — as one refused because a live gateway holds the lock
/// does. Such a start is retried (what a service manager restarting the
/// daemon would do) for at most [`RBD_RESTART`]; any other failure fails
/// the test.
fn restart(config: &Path, rbd: bool) -> (Proc, Duration, u32) {
    if !rbd {
        let t = Instant::now();
        return (spawn(config), t.elapsed(), 1);
    }
    let t = Instant::now();
    let opts = Spawn { rust_log: "error", url_timeout: STEP * 2, ..spawn_opts() };
    let mut starts = 0;
    loop {
        starts += 1;
        match Proc::try_spawn(config, &opts) {
            Ok(p) => return (p, t.elapsed(), starts),
            Err(e)
                if e.code() == Some(2)
                    && (e.stderr.contains("exclusive lock") || e.stderr.contains("locked exclusively"))
                    && t.elapsed() < RBD_RESTART =>
            {
                let last = e.stderr.lines().last().unwrap_or("").to_owned();
                eprintln!("restart: start {starts} refused after {:?} (exit 2): {last}", t.elapsed());
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => panic!("restart after SIGKILL: start {starts}, {:?} after the kill: {e}", t.elapsed()),
        }
    }
}

/// Log in to the daemon.
trait CrashDaemon {
    async fn session(&self, isid: u8) -> Session;
}

impl CrashDaemon for Proc {
    async fn session(&self, isid: u8) -> Session {
        let cfg = SessionConfig {
            initiator_name: HOST.into(),
            isid: Some([0x80, 0, 0, 0x5c, 0, isid]),
            command_timeout: Duration::from_secs(30),
            login_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: None,
            ..SessionConfig::for_target(IQN)
        };
        tokio::time::timeout(STEP, Session::connect(self.addr(), cfg)).await.expect("login in time").expect("login")
    }
}

fn write16(lba: u64, blocks: u32, fua: bool) -> [u8; 16] {
    oxcopy_initiator::scsi::cdb::write16(lba, blocks, fua)
}

fn sync16() -> [u8; 16] {
    oxcopy_initiator::scsi::cdb::sync_cache16(0, 0, false)
}

/// The keys and the reservation on LUN 2.
async fn pr_state(s: &Session) -> (Vec<u64>, Option<(u64, u8)>) {
    (pr_keys(s, 2).await, pr_reservation(s, 2).await)
}

/// One writer: random slots of its own (slot % WRITERS == w), FUA on some,
/// SYNCHRONIZE CACHE every few writes; stops at the first error.
async fn writer(s: Session, w: usize, book: Arc<Mutex<Book>>, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for n in 0..1_000_000u64 {
        let slot = rng.gen_range(0..SLOTS / WRITERS) * WRITERS + w;
        let fua = rng.gen_bool(0.3);
        let v = {
            let mut b = book.lock().unwrap();
            b.issued[slot] += 1;
            b.issued[slot]
        };
        let lba = slot as u64 * SLOT / BS;
        let data = Bytes::from(slot_data(slot, v));
        match exec_past_ua(&s, 0, &write16(lba, (SLOT / BS) as u32, fua), DataDir::Write { data }).await {
            Ok(o) if o.status == STATUS_GOOD => {
                let mut b = book.lock().unwrap();
                b.acked[slot] = b.acked[slot].max(v);
                if fua {
                    b.durable[slot] = b.durable[slot].max(v);
                }
                b.writes += 1;
            }
            Ok(o) => panic!("write failed without a crash: status {:#04x} {:?}", o.status, o.sense_info()),
            Err(_) => return,
        }
        if n % 8 == 7 {
            let snapshot: Vec<(usize, u32)> = {
                let b = book.lock().unwrap();
                (w..SLOTS).step_by(WRITERS).map(|i| (i, b.acked[i])).collect()
            };
            match exec_past_ua(&s, 0, &sync16(), DataDir::None).await {
                Ok(o) if o.status == STATUS_GOOD => {
                    let mut b = book.lock().unwrap();
                    for (i, v) in snapshot {
                        b.durable[i] = b.durable[i].max(v);
                    }
                    b.syncs += 1;
                }
                Ok(o) => panic!("SYNCHRONIZE CACHE failed: {:#04x}", o.status),
                Err(_) => return,
            }
        }
    }
}

fn b2b(src: &Designator, dst: &Designator, j: usize) -> ParamList {
    ParamList {
        list_id: 0,
        usage: ListIdUsage::None,
        cscds: vec![Cscd::new(src.clone(), 0), Cscd::new(dst.clone(), 0)],
        segments: vec![Segment::BlockToBlock {
            src: 0,
            dst: 1,
            dc: false,
            blocks: (CHUNK / BS) as u16,
            src_lba: (S_START + j as u64 * CHUNK) / BS,
            dst_lba: j as u64 * CHUNK / BS,
        }],
    }
}

/// Copies source chunk j → destination chunk j along `routes`, by
/// EXTENDED COPY or (when served) by token, each followed by SYNCHRONIZE
/// CACHE on the destination.
async fn copier(s: Session, book: Arc<Mutex<Book>>, seed: u64, tokens: bool, routes: Vec<Route>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut des = HashMap::new();
    for lun in routes.iter().flat_map(|r| [r.src, r.dst]) {
        let Ok(d) = s.lu_designator(lun).await else { return };
        des.insert(lun, d);
    }
    // Several routes take turns, from a random one: every route runs in a
    // round that completes as many copies as there are routes.
    let first = if routes.len() == 1 { 0 } else { rng.gen_range(0..routes.len()) };
    for n in 0..1_000_000u32 {
        let r = routes[(first + n as usize) % routes.len()];
        let j = rng.gen_range(0..CHUNKS);
        let by_token = tokens && rng.gen_bool(0.5);
        let ok = if by_token {
            let blocks = (CHUNK / BS) as u32;
            let pt = PopulateToken {
                ranges: vec![BlockRange { lba: (S_START + j as u64 * CHUNK) / BS, blocks }],
                ..Default::default()
            };
            let list_id = 0x1000 + n;
            match s.populate_token(r.src, list_id, &pt).await {
                Ok(o) if o.is_good() => {}
                Ok(o) => panic!("POPULATE TOKEN ({}) failed without a crash: {:?}", r.name, o.sense_info()),
                Err(_) => return,
            }
            let info = match s.receive_rod_token_information(r.src, list_id).await {
                Ok(i) => i,
                Err(_) => return,
            };
            let Some(token) = info.token else { panic!("RRTI returned no token") };
            let wut = WriteUsingToken {
                token,
                ranges: vec![BlockRange { lba: j as u64 * CHUNK / BS, blocks }],
                del_tkn: true,
                ..Default::default()
            };
            match s.write_using_token(r.dst, list_id + 1, &wut).await {
                Ok(o) if o.is_good() => true,
                Ok(o) => panic!("WRITE USING TOKEN ({}) failed without a crash: {:?}", r.name, o.sense_info()),
                Err(_) => return,
            }
        } else {
            match s.extended_copy(r.src, &b2b(&des[&r.src], &des[&r.dst], j)).await {
                Ok(o) if o.is_good() => true,
                Ok(o) => panic!("EXTENDED COPY ({}) failed without a crash: {:?}", r.name, o.sense_info()),
                Err(_) => return,
            }
        };
        if ok {
            match exec_past_ua(&s, r.dst, &sync16(), DataDir::None).await {
                Ok(o) if o.status == STATUS_GOOD => {
                    let mut b = book.lock().unwrap();
                    b.chunk_synced[r.d][j] = true;
                    if by_token {
                        b.token_copies += 1;
                    } else {
                        b.copies += 1;
                    }
                    *b.by_route.entry(r.name).or_default() += 1;
                }
                _ => return,
            }
        }
    }
}

/// A copy destination: LUN `lun`'s [0, DL) held `init` before any copy.
struct Dest {
    lun: u64,
    init: Vec<u8>,
}

/// A range nobody writes or copies into, and its checksum.
struct Untouched {
    what: &'static str,
    lun: u64,
    /// The LUN's file (read directly), or `None`: read through the daemon
    /// (an RBD image).
    file: Option<PathBuf>,
    off: u64,
    len: u64,
    sum: u64,
}

struct Layout {
    /// The copy destinations (LUN 1; with RBD LUNs also the file LUN).
    dests: Vec<Dest>,
    /// The copies the workload makes.
    routes: Vec<Route>,
    untouched: Vec<Untouched>,
    /// The bytes of every copy source region.
    src: Vec<u8>,
    /// The LUNs, in order.
    luns: Vec<Lun>,
}

/// LUN 0 (writes, copy source, tail), LUN 1 (copy destination, tail), LUN 2
/// (the APTPL reservation): files in `dir/luns`, or with `rbd` images
/// holding the same bytes, plus the file LUN 3.
fn prefill(dir: &Path, rbd: Option<&mut Images>) -> Layout {
    let luns = dir.join("luns");
    let lun0 = luns.join("lun0.img");
    let lun1 = luns.join("lun1.img");
    let mut l0 = Vec::with_capacity(LUN_BYTES as usize);
    for slot in 0..SLOTS {
        l0.extend_from_slice(&slot_data(slot, 0));
    }
    l0.extend_from_slice(&pattern(0x5050, (S_END - S_START) as usize));
    l0.extend_from_slice(&pattern(0x7A11, (LUN_BYTES - S_END) as usize));
    let l1 = pattern(0xD1D1, LUN_BYTES as usize);
    std::fs::write(&lun0, &l0).expect("write lun0");
    std::fs::write(&lun1, &l1).expect("write lun1");
    let src = l0[S_START as usize..S_END as usize].to_vec();
    let untouched = |what, lun, file: &Option<PathBuf>, data: &[u8], off: u64, len: u64| Untouched {
        what,
        lun,
        file: file.clone(),
        off,
        len,
        sum: fnv(&data[off as usize..(off + len) as usize]),
    };
    let one = Route { src: 0, dst: 1, d: 0, name: "LUN 0 → LUN 1" };
    let Some(images) = rbd else {
        let (f0, f1) = (Some(lun0.clone()), Some(lun1.clone()));
        return Layout {
            untouched: vec![
                untouched("copy source", 0, &f0, &l0, S_START, S_END - S_START),
                untouched("LUN 0 tail", 0, &f0, &l0, S_END, LUN_BYTES - S_END),
                untouched("LUN 1 tail", 1, &f1, &l1, DL, LUN_BYTES - DL),
            ],
            dests: vec![Dest { lun: 1, init: l1[..DL as usize].to_vec() }],
            routes: vec![one],
            src,
            luns: vec![Lun::new(0, &lun0), Lun::new(1, &lun1), Lun::new(2, luns.join("pr.img")).size("1MiB")],
        };
    };
    // The images get the files' bytes; the files go (the daemon must not
    // be what keeps them).
    let (s0, s1) = (images.import("lun0", &lun0), images.import("lun1", &lun1));
    let s2 = images.spec("pr");
    std::fs::remove_file(&lun0).expect("rm lun0");
    std::fs::remove_file(&lun1).expect("rm lun1");
    let lun3 = luns.join("lun3.img");
    let mut l3 = pattern(0xD3D3, DL as usize);
    l3.extend_from_slice(&src);
    l3.extend_from_slice(&pattern(0x7A33, (LUN_BYTES - S_END) as usize));
    std::fs::write(&lun3, &l3).expect("write lun3");
    let conf = images.conf().to_path_buf();
    let f3 = Some(lun3.clone());
    Layout {
        untouched: vec![
            untouched("LUN 0 copy source (RBD)", 0, &None, &l0, S_START, S_END - S_START),
            untouched("LUN 0 tail (RBD)", 0, &None, &l0, S_END, LUN_BYTES - S_END),
            untouched("LUN 1 tail (RBD)", 1, &None, &l1, DL, LUN_BYTES - DL),
            untouched("LUN 3 copy source (file)", FILE_LUN, &f3, &l3, S_START, S_END - S_START),
            untouched("LUN 3 tail (file)", FILE_LUN, &f3, &l3, S_END, LUN_BYTES - S_END),
        ],
        dests: vec![
            Dest { lun: 1, init: l1[..DL as usize].to_vec() },
            Dest { lun: FILE_LUN, init: l3[..DL as usize].to_vec() },
        ],
        routes: vec![
            Route { name: "RBD → RBD", ..one },
            Route { src: 0, dst: FILE_LUN, d: 1, name: "RBD → file" },
            Route { src: FILE_LUN, dst: 1, d: 0, name: "file → RBD" },
        ],
        src,
        luns: vec![
            Lun::rbd(0, &s0, &conf),
            Lun::rbd(1, &s1, &conf),
            Lun::rbd(2, &s2, &conf).size("1MiB"),
            Lun::new(FILE_LUN as u32, &lun3),
        ],
    }
}

/// `len` bytes at `off` of LUN `lun`, read through the daemon.
async fn read_lun(s: &Session, lun: u64, off: u64, len: u64) -> Vec<u8> {
    let step = 1u64 << 20;
    let mut v = Vec::with_capacity(len as usize);
    let mut at = off;
    while at < off + len {
        let n = step.min(off + len - at);
        let cdb = oxcopy_initiator::scsi::cdb::read16(at / BS, (n / BS) as u32, false);
        let o = exec_past_ua(s, lun, &cdb, DataDir::Read { len: n as u32 }).await.expect("read");
        assert_eq!(o.status, STATUS_GOOD, "read LUN {lun} at {at} after restart: {:?}", o.sense_info());
        v.extend_from_slice(&o.data);
        at += n;
    }
    v
}

/// Check everything after a restart (data read through the daemon where it
/// matters, checksums of the rest from the files, or through the daemon
/// from images); tighten the floors.
async fn verify(
    round: u32,
    p: &Proc,
    lay: &Layout,
    book: &Arc<Mutex<Book>>,
    data_dir: &Path,
    luns_dir: &Path,
    images: Option<&Images>,
) {
    let s = p.session(0x40).await;
    // Write region, through the restarted daemon.
    let got = read_lun(&s, 0, 0, W_END).await;
    // Copy destinations, through the daemon.
    let mut dsts = Vec::new();
    for d in &lay.dests {
        dsts.push(read_lun(&s, d.lun, 0, DL).await);
    }
    {
        let mut b = book.lock().unwrap();
        let sectors_per_slot = (SLOT / BS) as usize;
        for slot in 0..SLOTS {
            let lo_slot = b.durable[slot];
            let hi = b.issued[slot];
            for k in 0..sectors_per_slot {
                let sector = slot * sectors_per_slot + k;
                let lo = lo_slot.max(b.floor[sector]);
                let have = &got[sector * BS as usize..(sector + 1) * BS as usize];
                let found =
                    (lo..=hi).rev().find(|&v| &slot_data(slot, v)[k * BS as usize..(k + 1) * BS as usize] == have);
                match found {
                    Some(v) => b.floor[sector] = v,
                    None => panic!(
                        "round {round}: slot {slot} sector {k}: no version in {lo}..={hi} matches \
                         (durable {lo_slot}, acked {}, issued {hi}) — a durable write was lost or garbage appeared",
                        b.acked[slot]
                    ),
                }
            }
        }
        for (d, (dest, dst)) in lay.dests.iter().zip(&dsts).enumerate() {
            let lun = dest.lun;
            for j in 0..CHUNKS {
                let r = j * CHUNK as usize..(j + 1) * CHUNK as usize;
                if b.chunk_synced[d][j] {
                    assert!(
                        dst[r.clone()] == lay.src[r.clone()],
                        "round {round}: LUN {lun}: synced copy chunk {j} lost"
                    );
                    continue;
                }
                for sec in r.clone().step_by(BS as usize) {
                    let sr = sec..sec + BS as usize;
                    assert!(
                        dst[sr.clone()] == lay.src[sr.clone()] || dst[sr.clone()] == dest.init[sr.clone()],
                        "round {round}: LUN {lun}: copy chunk {j}, byte {sec}: neither old data nor the source's"
                    );
                }
                if dst[r.clone()] == lay.src[r] {
                    b.chunk_synced[d][j] = true;
                }
            }
        }
    }
    // Everything nobody wrote.
    for u in &lay.untouched {
        let bytes = match &u.file {
            Some(f) => file_range(f, u.off, u.len),
            None => read_lun(&s, u.lun, u.off, u.len).await,
        };
        assert_eq!(fnv(&bytes), u.sum, "round {round}: {} changed", u.what);
    }
    // Reservations with APTPL.
    assert_eq!(pr_state(&s).await, (vec![KEY], Some((KEY, 3))), "round {round}: APTPL reservation after restart");
    // Stray files.
    for dir in [data_dir, luns_dir] {
        for e in std::fs::read_dir(dir).expect("list dir") {
            let name = e.expect("entry").file_name().to_string_lossy().to_string();
            let known = name.ends_with(".img")
                || name == "identities.toml"
                || name == "copy-domain.key"
                || (name.starts_with("pr-") && name.ends_with(".state"));
            let suspicious = name.contains("snap") || name.contains("tmp") || name.starts_with('.');
            assert!(known || !suspicious, "round {round}: stray file {} left in {}", name, dir.display());
            if !known {
                eprintln!("round {round}: note: unexpected file {name} in {}", dir.display());
            }
        }
    }
    // Stray RBD snapshots (a point-in-time token's, whose daemon was killed):
    // the restarted daemon removes them before serving.
    if let Some(images) = images {
        for spec in images.specs() {
            let left = images.oxcopy_snapshots(spec);
            assert!(left.is_empty(), "round {round}: stray snapshots of {spec} after the restart: {left:?}");
        }
    }
    let _ = s.logout().await;
}

async fn tokens_served(s: &Session) -> bool {
    let pt = PopulateToken { ranges: vec![BlockRange { lba: S_START / BS, blocks: 8 }], ..Default::default() };
    matches!(s.populate_token(0, 0xFFFF, &pt).await, Ok(o) if o.is_good())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_workload_loses_nothing_acknowledged() {
    crash_rounds(None).await;
}

/// The same on RBD LUNs (`OXCOPY_CEPH_CONF`; skipped without it unless
/// `OXCOPY_REQUIRE_CEPH=1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_workload_loses_nothing_acknowledged_on_rbd() {
    let Some(conf) = rbd_support::cluster("crash test on RBD LUNs") else { return };
    let mut images = Images::new(&conf, "crash");
    crash_rounds(Some(&mut images)).await;
    let left = images.remove_all();
    assert!(left.is_empty(), "RBD images not removed: {left:?}");
}

/// Round 0, then `OXCOPY_CRASH_ROUNDS` rounds of workload, SIGKILL,
/// restart and checks; on files, or on images made in `rbd`.
async fn crash_rounds(mut rbd: Option<&mut Images>) {
    let on_rbd = rbd.is_some();
    let rounds: u32 =
        std::env::var("OXCOPY_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(if on_rbd { 3 } else { 5 });
    let seed: u64 = std::env::var("OXCOPY_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    let on = if on_rbd { " on RBD LUNs" } else { "" };
    eprintln!("crash test{on}: {rounds} rounds, OXCOPY_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let luns_dir = dir.path().join("luns");
    std::fs::create_dir_all(&luns_dir).expect("mkdir");
    let lay = prefill(dir.path(), rbd.as_deref_mut());
    let mut target = Target::new(IQN);
    for l in &lay.luns {
        target = target.lun(l.clone());
    }
    let config =
        DaemonConfig::new(&data_dir).server("nop_interval", 0).target(target).write(dir.path().join("oxcopyd.toml"));
    let book = Arc::new(Mutex::new(Book {
        issued: vec![0; SLOTS],
        acked: vec![0; SLOTS],
        durable: vec![0; SLOTS],
        floor: vec![0; SLOTS * (SLOT / BS) as usize],
        chunk_synced: vec![vec![false; CHUNKS]; lay.dests.len()],
        ..Book::default()
    }));

    // Round 0 sets up the APTPL reservation on LUN 2.
    let p = spawn(&config);
    let s = p.session(0x41).await;
    assert_eq!(prout(&s, 2, 0x06, 0, 0, KEY, 0x01).await, STATUS_GOOD, "REGISTER AND IGNORE with APTPL");
    assert_eq!(prout(&s, 2, 0x01, 0x03, KEY, 0, 0).await, STATUS_GOOD, "RESERVE Exclusive Access");
    let tokens = tokens_served(&s).await;
    eprintln!("token copies {}", if tokens { "served: included" } else { "not served by this build: skipped" });
    drop(s);
    let mut p = Some(p);
    let mut restarts = Vec::new();
    for round in 1..=rounds {
        let proc_ = p.take().unwrap_or_else(|| spawn(&config));
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..WRITERS {
            let s = proc_.session(w as u8).await;
            tasks.spawn(writer(s, w, book.clone(), rng.gen()));
        }
        let s = proc_.session(0x20).await;
        tasks.spawn(copier(s, book.clone(), rng.gen(), tokens, lay.routes.clone()));
        if on_rbd && tokens {
            // A token copy on RBD makes and removes an RBD snapshot (about a
            // second each under this load, against milliseconds for an
            // EXTENDED COPY): a second copier, EXTENDED COPY only, keeps
            // copies going meanwhile.
            let s = proc_.session(0x21).await;
            tasks.spawn(copier(s, book.clone(), rng.gen(), false, lay.routes.clone()));
        }
        // On RBD each restart waits ~30 s for the dead owner's locks: a
        // longer run costs little more and lets token copies (an RBD
        // snapshot each, a second or more) be acknowledged before the kill.
        let run = Duration::from_millis(if on_rbd { rng.gen_range(1500..6000) } else { rng.gen_range(200..1500) });
        tokio::time::sleep(run).await;
        drop(proc_); // SIGKILL by PID, reaped
        while let Some(r) = tokio::time::timeout(STEP, tasks.join_next()).await.expect("workload stops after the kill")
        {
            r.expect("workload task");
        }
        let (restarted, took, starts) = tokio::task::block_in_place(|| restart(&config, on_rbd));
        restarts.push(took);
        verify(round, &restarted, &lay, &book, &data_dir, &luns_dir, rbd.as_deref()).await;
        let b = book.lock().unwrap();
        let routes = if on_rbd { format!(" (by route: {:?})", b.by_route) } else { String::new() };
        let restart = if on_rbd { format!("; restart took {took:.1?} ({starts} starts)") } else { String::new() };
        eprintln!(
            "round {round}: killed after {run:?}{restart}; so far {} writes, {} syncs, {} EXTENDED COPY, {} token copies acknowledged{routes}",
            b.writes, b.syncs, b.copies, b.token_copies
        );
        drop(b);
        p = Some(restarted);
    }
    if on_rbd {
        eprintln!("crash test on RBD LUNs: restarts after SIGKILL took {restarts:.1?}");
        // Stopped gracefully, so that its images close (no watch left behind)
        // and can be removed at once.
        if let Some(mut last) = p.take() {
            let t = Instant::now();
            last.sigterm().expect("SIGTERM by PID");
            let st = last.wait_exit(Duration::from_secs(60), Duration::from_millis(100));
            assert!(st.is_some_and(|s| s.success()), "oxcopyd on RBD did not stop cleanly within 60 s: {st:?}");
            eprintln!("crash test on RBD LUNs: the last daemon stopped (SIGTERM) in {:.1?}", t.elapsed());
        }
    }
    drop(p);
    let b = book.lock().unwrap();
    assert!(b.writes > 0 && b.copies + b.token_copies > 0, "the workload did something");
    // Every kind of copy ran (certain once some round completed as many
    // copies as there are routes, which more copies than that per round
    // on average imply).
    if on_rbd && b.copies + b.token_copies >= (lay.routes.len() as u64) * u64::from(rounds) {
        for r in &lay.routes {
            assert!(b.by_route.get(r.name).copied().unwrap_or(0) > 0, "no copy {} was acknowledged", r.name);
        }
    }
}
