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
//! `OXCOPY_CRASH_ROUNDS` (default 5) sets the number of rounds,
//! `OXCOPY_CRASH_SEED` the random seed (printed); `scripts/crash.sh` runs
//! many rounds.

mod common;

use bytes::Bytes;
use common::{exec_past_ua, pr_keys, pr_reservation, prout, spawn_opts};
use oxcopy_initiator::odx::{BlockRange, PopulateToken, WriteUsingToken};
use oxcopy_initiator::xcopy::{Cscd, Designator, ListIdUsage, ParamList, Segment};
use oxcopy_initiator::{DataDir, Session, SessionConfig, STATUS_GOOD};
use oxcopy_testkit::{file_bytes as file_range, fnv, pattern, DaemonConfig, Lun, Proc, Spawn, Target};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
/// LUN 1: copy destinations [0, S_END - S_START), chunk j ← source chunk j.
const CHUNK: u64 = 512 << 10;
const CHUNKS: usize = ((S_END - S_START) / CHUNK) as usize;
const WRITERS: usize = 4;
const KEY: u64 = 0xC0FF_EE00_0000_0001;
const STEP: Duration = Duration::from_secs(30);

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
    /// Per copy chunk: a copy into it was acknowledged and synchronized (or
    /// found complete after a crash).
    chunk_synced: Vec<bool>,
    writes: u64,
    syncs: u64,
    copies: u64,
    token_copies: u64,
}

/// The daemon on `config`, quiet but for errors (stderr collected).
fn spawn(config: &Path) -> Proc {
    Proc::spawn(config, &Spawn { rust_log: "error", url_timeout: STEP, ..spawn_opts() })
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

/// Copies source chunk j → destination chunk j, by EXTENDED COPY or (when
/// served) by token, each followed by SYNCHRONIZE CACHE on the destination.
async fn copier(s: Session, book: Arc<Mutex<Book>>, seed: u64, tokens: bool) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let Ok(src) = s.lu_designator(0).await else { return };
    let Ok(dst) = s.lu_designator(1).await else { return };
    for n in 0..1_000_000u32 {
        let j = rng.gen_range(0..CHUNKS);
        let by_token = tokens && rng.gen_bool(0.5);
        let ok = if by_token {
            let blocks = (CHUNK / BS) as u32;
            let pt = PopulateToken {
                ranges: vec![BlockRange { lba: (S_START + j as u64 * CHUNK) / BS, blocks }],
                ..Default::default()
            };
            let list_id = 0x1000 + n;
            match s.populate_token(0, list_id, &pt).await {
                Ok(o) if o.is_good() => {}
                Ok(o) => panic!("POPULATE TOKEN failed without a crash: {:?}", o.sense_info()),
                Err(_) => return,
            }
            let info = match s.receive_rod_token_information(0, list_id).await {
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
            match s.write_using_token(1, list_id + 1, &wut).await {
                Ok(o) if o.is_good() => true,
                Ok(o) => panic!("WRITE USING TOKEN failed without a crash: {:?}", o.sense_info()),
                Err(_) => return,
            }
        } else {
            match s.extended_copy(0, &b2b(&src, &dst, j)).await {
                Ok(o) if o.is_good() => true,
                Ok(o) => panic!("EXTENDED COPY failed without a crash: {:?}", o.sense_info()),
                Err(_) => return,
            }
        };
        if ok {
            match exec_past_ua(&s, 1, &sync16(), DataDir::None).await {
                Ok(o) if o.status == STATUS_GOOD => {
                    let mut b = book.lock().unwrap();
                    b.chunk_synced[j] = true;
                    if by_token {
                        b.token_copies += 1;
                    } else {
                        b.copies += 1;
                    }
                }
                _ => return,
            }
        }
    }
}

struct Layout {
    lun0: PathBuf,
    lun1: PathBuf,
    /// Checksums of LUN 0's copy source and untouched tail, LUN 1's tail.
    s_sum: u64,
    lun0_tail: u64,
    lun1_tail: u64,
    /// Initial content of LUN 1's destination region.
    dst_init: Vec<u8>,
    src: Vec<u8>,
}

fn prefill(dir: &Path) -> Layout {
    let lun0 = dir.join("luns").join("lun0.img");
    let lun1 = dir.join("luns").join("lun1.img");
    let mut l0 = Vec::with_capacity(LUN_BYTES as usize);
    for slot in 0..SLOTS {
        l0.extend_from_slice(&slot_data(slot, 0));
    }
    l0.extend_from_slice(&pattern(0x5050, (S_END - S_START) as usize));
    l0.extend_from_slice(&pattern(0x7A11, (LUN_BYTES - S_END) as usize));
    let l1 = pattern(0xD1D1, LUN_BYTES as usize);
    std::fs::write(&lun0, &l0).expect("write lun0");
    std::fs::write(&lun1, &l1).expect("write lun1");
    let dst_len = (S_END - S_START) as usize;
    Layout {
        s_sum: fnv(&l0[S_START as usize..S_END as usize]),
        lun0_tail: fnv(&l0[S_END as usize..]),
        lun1_tail: fnv(&l1[dst_len..]),
        dst_init: l1[..dst_len].to_vec(),
        src: l0[S_START as usize..S_END as usize].to_vec(),
        lun0,
        lun1,
    }
}

/// Check everything after a restart (data read through the daemon where it
/// matters, checksums of the rest from the files); tighten the floors.
async fn verify(round: u32, p: &Proc, lay: &Layout, book: &Arc<Mutex<Book>>, data_dir: &Path, luns_dir: &Path) {
    let s = p.session(0x40).await;
    // Write region, through the restarted daemon.
    let mut got = Vec::with_capacity(W_END as usize);
    let step = 1u64 << 20;
    for off in (0..W_END).step_by(step as usize) {
        let cdb = oxcopy_initiator::scsi::cdb::read16(off / BS, (step / BS) as u32, false);
        let o = exec_past_ua(&s, 0, &cdb, DataDir::Read { len: step as u32 }).await.expect("read");
        assert_eq!(o.status, STATUS_GOOD, "read after restart");
        got.extend_from_slice(&o.data);
    }
    // Copy destinations, through the daemon.
    let dst = {
        let mut v = Vec::new();
        for off in (0..S_END - S_START).step_by(step as usize) {
            let cdb = oxcopy_initiator::scsi::cdb::read16(off / BS, (step / BS) as u32, false);
            let o = exec_past_ua(&s, 1, &cdb, DataDir::Read { len: step as u32 }).await.expect("read");
            v.extend_from_slice(&o.data);
        }
        v
    };
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
        for j in 0..CHUNKS {
            let r = j * CHUNK as usize..(j + 1) * CHUNK as usize;
            if b.chunk_synced[j] {
                assert!(dst[r.clone()] == lay.src[r.clone()], "round {round}: synced copy chunk {j} lost");
                continue;
            }
            for sec in r.clone().step_by(BS as usize) {
                let sr = sec..sec + BS as usize;
                assert!(
                    dst[sr.clone()] == lay.src[sr.clone()] || dst[sr.clone()] == lay.dst_init[sr.clone()],
                    "round {round}: copy chunk {j}, byte {sec}: neither old data nor the source's"
                );
            }
            if dst[r.clone()] == lay.src[r] {
                b.chunk_synced[j] = true;
            }
        }
    }
    // Everything nobody wrote.
    assert_eq!(fnv(&file_range(&lay.lun0, S_START, S_END - S_START)), lay.s_sum, "round {round}: copy source changed");
    assert_eq!(
        fnv(&file_range(&lay.lun0, S_END, LUN_BYTES - S_END)),
        lay.lun0_tail,
        "round {round}: LUN 0 tail changed"
    );
    let dl = S_END - S_START;
    assert_eq!(fnv(&file_range(&lay.lun1, dl, LUN_BYTES - dl)), lay.lun1_tail, "round {round}: LUN 1 tail changed");
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
    let _ = s.logout().await;
}

async fn tokens_served(s: &Session) -> bool {
    let pt = PopulateToken { ranges: vec![BlockRange { lba: S_START / BS, blocks: 8 }], ..Default::default() };
    matches!(s.populate_token(0, 0xFFFF, &pt).await, Ok(o) if o.is_good())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_workload_loses_nothing_acknowledged() {
    let rounds: u32 = std::env::var("OXCOPY_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let seed: u64 = std::env::var("OXCOPY_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("crash test: {rounds} rounds, OXCOPY_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let luns_dir = dir.path().join("luns");
    std::fs::create_dir_all(&luns_dir).expect("mkdir");
    let lay = prefill(dir.path());
    let config = DaemonConfig::new(&data_dir)
        .server("nop_interval", 0)
        .target(
            Target::new(IQN)
                .lun(Lun::new(0, &lay.lun0))
                .lun(Lun::new(1, &lay.lun1))
                .lun(Lun::new(2, luns_dir.join("pr.img")).size("1MiB")),
        )
        .write(dir.path().join("oxcopyd.toml"));
    let book = Arc::new(Mutex::new(Book {
        issued: vec![0; SLOTS],
        acked: vec![0; SLOTS],
        durable: vec![0; SLOTS],
        floor: vec![0; SLOTS * (SLOT / BS) as usize],
        chunk_synced: vec![false; CHUNKS],
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
    for round in 1..=rounds {
        let proc_ = p.take().unwrap_or_else(|| spawn(&config));
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..WRITERS {
            let s = proc_.session(w as u8).await;
            tasks.spawn(writer(s, w, book.clone(), rng.gen()));
        }
        let s = proc_.session(0x20).await;
        tasks.spawn(copier(s, book.clone(), rng.gen(), tokens));
        let run = Duration::from_millis(rng.gen_range(200..1500));
        tokio::time::sleep(run).await;
        drop(proc_); // SIGKILL by PID, reaped
        while let Some(r) = tokio::time::timeout(STEP, tasks.join_next()).await.expect("workload stops after the kill")
        {
            r.expect("workload task");
        }
        let restarted = spawn(&config);
        verify(round, &restarted, &lay, &book, &data_dir, &luns_dir).await;
        let b = book.lock().unwrap();
        eprintln!(
            "round {round}: killed after {run:?}; so far {} writes, {} syncs, {} EXTENDED COPY, {} token copies acknowledged",
            b.writes, b.syncs, b.copies, b.token_copies
        );
        drop(b);
        p = Some(restarted);
    }
    drop(p);
    let b = book.lock().unwrap();
    assert!(b.writes > 0 && b.copies + b.token_copies > 0, "the workload did something");
}
