//! Token copy through `ScsiTarget::execute`, without sockets: PT → RRTI →
//! WUT across LUs and targets, OFFSET INTO ROD, point-in-time by
//! copy-on-write (MemStorage) and by a snapshot-capable backend, change
//! vulnerable and access-upon-reference tokens, the zero token, expiry,
//! DEL_TKN, block sizes, remote and stale tokens, token scope, the space
//! bound, discovery (VPD 8Fh, RSOC), COPY OPERATION ABORT and IMMED.

use crate::copy::test_support::{contents, naa, nexus, run};
use crate::registry::{AccessList, LuRegistry};
use crate::*;
use oxcopy_copy::token::{zero_token, TOKEN_LEN};
use oxcopy_copy::{ManualClock, RodConfig, RodManager, Spawner, TokenScope};
use oxcopy_storage::{Capabilities, MemStorage, Storage};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const OPEN: &str = "iqn.2026-11.test:open";
const OTHER: &str = "iqn.2026-11.test:other";
const PRIVATE: &str = "iqn.2026-11.test:private";
const HOST: &str = "iqn.2026-11.test:host";
const VICTIM: &str = "iqn.2026-11.test:victim";
const MIB: usize = 1 << 20;

/// A memory store that can pretend to snapshot cheaply (like reflink) and
/// can hold writers at a gate.
#[derive(Debug)]
struct Store {
    inner: MemStorage,
    fake_reflink: bool,
    gate: Gate,
    snapshots: AtomicU64,
}

/// Once armed with `n`, lets `n` more writes through and holds the rest
/// until opened.
#[derive(Debug, Default)]
struct Gate {
    /// (armed, writes still allowed, writers waiting)
    state: parking_lot::Mutex<(bool, u64, u64)>,
    cv: parking_lot::Condvar,
}

impl Gate {
    fn arm(&self, allowed: u64) {
        *self.state.lock() = (true, allowed, 0);
    }
    fn open(&self) {
        self.state.lock().0 = false;
        self.cv.notify_all();
    }
    fn pass(&self) {
        let mut st = self.state.lock();
        if st.0 && st.1 > 0 {
            st.1 -= 1;
            return;
        }
        st.2 += 1;
        self.cv.notify_all();
        while st.0 {
            self.cv.wait(&mut st);
        }
        st.2 -= 1;
    }
    /// Wait (bounded) until a writer is held.
    fn wait_held(&self) -> bool {
        let mut st = self.state.lock();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while st.2 == 0 {
            if self.cv.wait_until(&mut st, deadline).timed_out() {
                return false;
            }
        }
        true
    }
}

impl Storage for Store {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> oxcopy_storage::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> oxcopy_storage::Result<()> {
        self.gate.pass();
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> oxcopy_storage::Result<()> {
        Ok(())
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn snapshot(&self, ranges: &[(u64, u64)]) -> oxcopy_storage::Result<Option<Arc<dyn Storage>>> {
        if !self.fake_reflink {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        for &(off, len) in ranges {
            let mut b = vec![0u8; len as usize];
            self.inner.read_at(&mut b, off)?;
            bytes.extend(b);
        }
        self.snapshots.fetch_add(1, Ordering::Relaxed);
        Ok(Some(Arc::new(MemStorage::from_bytes(&bytes))))
    }
}

/// Runs jobs on plain threads (the daemon uses its own pool).
#[derive(Debug)]
struct Threads;

impl Spawner for Threads {
    fn spawn(&self, job: Box<dyn FnOnce() + Send>) -> Result<(), Box<dyn FnOnce() + Send>> {
        std::thread::spawn(job);
        Ok(())
    }
}

struct Fx {
    registry: Arc<LuRegistry>,
    open: ScsiTarget,
    other: ScsiTarget,
    private: ScsiTarget,
    /// OPEN: LUN 0 (512), 1 (512), 2 (4096); OTHER: LUN 0 (512); PRIVATE: LUN 0 (512).
    lus: Vec<(Arc<LogicalUnit>, Arc<Store>)>,
    clock: Arc<ManualClock>,
    rod: Arc<RodManager>,
    cancel: CancelToken,
}

fn lu(last: u8, bytes: usize, bs: u32, fake_reflink: bool) -> (Arc<LogicalUnit>, Arc<Store>) {
    let data = contents(last, 37, bytes);
    let st = Arc::new(Store {
        inner: MemStorage::from_bytes(&data),
        fake_reflink,
        gate: Gate::default(),
        snapshots: AtomicU64::new(0),
    });
    let cfg = LuConfig { block_size: bs, naa: naa(last), ..LuConfig::default() };
    (Arc::new(LogicalUnit::new(cfg, st.clone() as Arc<dyn Storage>)), st)
}

/// A fresh seeded generator per call: every fixture is its own copy manager.
fn rng() -> StdRng {
    static SEED: AtomicU64 = AtomicU64::new(1);
    StdRng::seed_from_u64(SEED.fetch_add(1, Ordering::Relaxed))
}

fn config() -> RodConfig {
    RodConfig { max_snapshot_bytes: 64 * MIB as u64, ..RodConfig::ephemeral(&mut rng()) }
}

fn fx_with(cfg: RodConfig, fake_reflink: bool) -> Fx {
    let lus = vec![
        lu(1, 4 * MIB, 512, fake_reflink),
        lu(2, 4 * MIB, 512, false),
        lu(3, 4 * MIB, 4096, false),
        lu(4, 4 * MIB, 512, false),
        lu(5, MIB, 512, false),
    ];
    let registry = Arc::new(crate::testing::registry());
    let clock = Arc::new(ManualClock::new());
    let rod = Arc::new(RodManager::new(cfg, clock.clone(), Box::new(rng()), Arc::new(registry.metrics().clone())));
    registry.set_rod(rod.clone());
    registry
        .add_target(OPEN, AccessList::Any, vec![(0, lus[0].0.clone()), (1, lus[1].0.clone()), (2, lus[2].0.clone())])
        .unwrap();
    registry.add_target(OTHER, AccessList::Any, vec![(0, lus[3].0.clone())]).unwrap();
    registry.add_target(PRIVATE, AccessList::Only(vec![VICTIM.into()]), vec![(0, lus[4].0.clone())]).unwrap();
    let open = ScsiTarget::in_registry(OPEN, 1, registry.clone());
    let other = ScsiTarget::in_registry(OTHER, 1, registry.clone());
    let private = ScsiTarget::in_registry(PRIVATE, 1, registry.clone());
    Fx { registry, open, other, private, lus, clock, rod, cancel: CancelToken::new() }
}

fn fx() -> Fx {
    fx_with(config(), false)
}

fn cdb16(op: u8, sa: u8, list_id: u32, len: u32) -> Vec<u8> {
    let mut c = vec![0u8; 16];
    c[0] = op;
    c[1] = sa;
    if op == 0x83 && sa != 0x1C {
        c[6..10].copy_from_slice(&list_id.to_be_bytes());
    } else {
        c[2..6].copy_from_slice(&list_id.to_be_bytes());
    }
    c[10..14].copy_from_slice(&len.to_be_bytes());
    c
}

fn ranges_bytes(ranges: &[(u64, u32)]) -> Vec<u8> {
    let mut b = Vec::new();
    for &(lba, n) in ranges {
        b.extend_from_slice(&lba.to_be_bytes());
        b.extend_from_slice(&n.to_be_bytes());
        b.extend_from_slice(&[0; 4]);
    }
    b
}

/// A POPULATE TOKEN list: `rod_type` None = RTV 0.
fn pt_list(immed: bool, timeout: u32, rod_type: Option<u32>, ranges: &[(u64, u32)]) -> Vec<u8> {
    let r = ranges_bytes(ranges);
    let mut l = vec![0u8; 16];
    l[0..2].copy_from_slice(&((14 + r.len()) as u16).to_be_bytes());
    l[2] = u8::from(rod_type.is_some()) << 1 | u8::from(immed);
    l[4..8].copy_from_slice(&timeout.to_be_bytes());
    l[8..12].copy_from_slice(&rod_type.unwrap_or(0).to_be_bytes());
    l[14..16].copy_from_slice(&(r.len() as u16).to_be_bytes());
    l.extend(r);
    l
}

fn wut_list(immed: bool, del_tkn: bool, offset: u64, token: &[u8], ranges: &[(u64, u32)]) -> Vec<u8> {
    let r = ranges_bytes(ranges);
    let mut l = vec![0u8; 536];
    l[0..2].copy_from_slice(&((534 + r.len()) as u16).to_be_bytes());
    l[2] = u8::from(del_tkn) << 1 | u8::from(immed);
    l[8..16].copy_from_slice(&offset.to_be_bytes());
    l[16..528].copy_from_slice(token);
    l[534..536].copy_from_slice(&(r.len() as u16).to_be_bytes());
    l.extend(r);
    l
}

fn sense(r: &CommandResult) -> Sense {
    assert_eq!(r.status, ScsiStatus::CHECK_CONDITION, "{r:?}");
    Sense::decode(r.sense.as_deref().expect("sense")).expect("decodes")
}

struct Rrti {
    sa: u8,
    status: u8,
    count: u64,
    token: Option<Vec<u8>>,
    sense: Option<Sense>,
}

impl Fx {
    fn run(&self, t: &ScsiTarget, nx: &Nexus, lun: u16, cdb: &[u8], data: &[u8]) -> CommandResult {
        run(t, nx, lun, cdb, data, &self.cancel)
    }
    fn host(&self) -> Nexus {
        nexus(HOST, OPEN)
    }
    fn pt(&self, lun: u16, id: u32, list: &[u8]) -> CommandResult {
        self.run(&self.open, &self.host(), lun, &cdb16(0x83, 0x10, id, list.len() as u32), list)
    }
    fn wut_on(&self, t: &ScsiTarget, nx: &Nexus, lun: u16, id: u32, list: &[u8]) -> CommandResult {
        self.run(t, nx, lun, &cdb16(0x83, 0x11, id, list.len() as u32), list)
    }
    fn wut(&self, lun: u16, id: u32, list: &[u8]) -> CommandResult {
        self.wut_on(&self.open, &self.host(), lun, id, list)
    }
    fn rrti_on(&self, t: &ScsiTarget, nx: &Nexus, lun: u16, id: u32) -> Result<Rrti, Sense> {
        let r = self.run(t, nx, lun, &cdb16(0x84, 0x07, id, 1024), &[]);
        if r.status != ScsiStatus::GOOD {
            return Err(sense(&r));
        }
        let d = &r.data_in;
        let at = 32 + usize::from(d[13]);
        let tlen = u32::from_be_bytes(d[at..at + 4].try_into().unwrap()) as usize;
        let sense = (d[14] > 0).then(|| Sense::decode(&d[32..32 + usize::from(d[14])]).unwrap());
        Ok(Rrti {
            sa: d[4],
            status: d[5],
            count: u64::from_be_bytes(d[16..24].try_into().unwrap()),
            token: (tlen == 514).then(|| d[at + 6..at + 6 + TOKEN_LEN].to_vec()),
            sense,
        })
    }
    fn rrti(&self, lun: u16, id: u32) -> Result<Rrti, Sense> {
        self.rrti_on(&self.open, &self.host(), lun, id)
    }
    /// PT + RRTI on OPEN `lun`: the token.
    fn token(&self, lun: u16, id: u32, rod_type: Option<u32>, ranges: &[(u64, u32)]) -> Vec<u8> {
        let r = self.pt(lun, id, &pt_list(false, 0, rod_type, ranges));
        assert_eq!(r.status, ScsiStatus::GOOD, "{r:?}");
        let info = self.rrti(lun, id).expect("RRTI");
        assert_eq!((info.sa, info.status), (0x10, 0x01));
        assert_eq!(info.count, ranges.iter().map(|r| u64::from(r.1)).sum::<u64>());
        info.token.expect("token")
    }
    fn bytes(&self, i: usize, off: usize, len: usize) -> Vec<u8> {
        self.lus[i].1.inner.contents()[off..off + len].to_vec()
    }
    fn write10(&self, lun: u16, lba: u32, data: &[u8]) {
        let blocks = (data.len() / 512) as u16;
        let mut c = vec![0x2A, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        c[2..6].copy_from_slice(&lba.to_be_bytes());
        c[7..9].copy_from_slice(&blocks.to_be_bytes());
        let r = self.run(&self.open, &self.host(), lun, &c, data);
        assert_eq!(r.status, ScsiStatus::GOOD, "{r:?}");
    }
}

#[test]
fn populate_rrti_write_across_lus_and_targets() {
    let f = fx();
    let src = f.bytes(0, 0, 4 * MIB);
    let token = f.token(0, 7, None, &[(8, 16), (100, 8)]);
    assert_eq!(token.len(), 512);
    // A nexus on another target writes its own LU with it (scope domain).
    let other = nexus(HOST, OTHER);
    let r = f.wut_on(&f.other, &other, 0, 1, &wut_list(false, false, 0, &token, &[(0, 24)]));
    assert_eq!(r.status, ScsiStatus::GOOD, "{r:?}");
    let dst = f.bytes(3, 0, 24 * 512);
    assert_eq!(&dst[..16 * 512], &src[8 * 512..24 * 512]);
    assert_eq!(&dst[16 * 512..], &src[100 * 512..108 * 512]);
    let info = f.rrti_on(&f.other, &other, 0, 1).expect("RRTI after WUT");
    assert_eq!((info.sa, info.status, info.count), (0x11, 0x01, 24));
    assert!(info.token.is_none());
    // The record is read once; the list id is then unknown (24h at byte 2).
    let s = f.rrti_on(&f.other, &other, 0, 1).err().expect("consumed");
    assert_eq!((s.asc, s.key), (Asc::INVALID_FIELD_IN_CDB, SenseKey::ILLEGAL_REQUEST));
    // RRTI belongs to the nexus of the PT.
    let r = f.pt(0, 9, &pt_list(false, 0, None, &[(0, 1)]));
    assert_eq!(r.status, ScsiStatus::GOOD);
    assert!(f.rrti_on(&f.open, &nexus("iqn.2026-11.test:someone", OPEN), 0, 9).is_err());
    let m = f.registry.metrics();
    assert_eq!(m.copy_commands(metrics::CopyCommand::PopulateToken, true), 2);
    assert_eq!(m.copy_commands(metrics::CopyCommand::WriteUsingToken, true), 1);
    assert_eq!(m.rod_gauges().0, 2, "two live tokens");
}

#[test]
fn offset_into_rod_several_ranges_and_partial_use_by_several_writes() {
    let f = fx();
    let src = f.bytes(0, 0, 4 * MIB);
    let b = |lba: usize, n: usize| src[lba * 512..(lba + n) * 512].to_vec();
    // ROD: 10..14, 50..52, 200..206 (12 blocks).
    let token = f.token(0, 1, None, &[(10, 4), (50, 2), (200, 6)]);
    // Three WUTs, Windows style: OFFSET INTO ROD = blocks already written.
    for (i, (off, ranges)) in
        [(0u64, vec![(0u64, 3u32)]), (3, vec![(100, 2), (7, 2)]), (7, vec![(300, 5)])].into_iter().enumerate()
    {
        let r = f.wut(1, 10 + i as u32, &wut_list(false, false, off, &token, &ranges));
        assert_eq!(r.status, ScsiStatus::GOOD, "{r:?}");
    }
    let rod: Vec<u8> = [b(10, 4), b(50, 2), b(200, 6)].concat();
    assert_eq!(f.bytes(1, 0, 3 * 512), rod[..3 * 512]);
    assert_eq!(f.bytes(1, 100 * 512, 2 * 512), rod[3 * 512..5 * 512]);
    assert_eq!(f.bytes(1, 7 * 512, 2 * 512), rod[5 * 512..7 * 512]);
    assert_eq!(f.bytes(1, 300 * 512, 5 * 512), rod[7 * 512..]);
}

#[test]
fn point_in_time_by_copy_on_write() {
    let f = fx();
    let old = f.bytes(0, 0, 64 * 512);
    let token = f.token(0, 1, None, &[(0, 32), (40, 8)]);
    assert_eq!(f.rod.snapshot_bytes(), 0, "copy-on-write charges nothing up front");
    // Overwrite part of the ROD (and a block outside it) after PT.
    f.write10(0, 4, &[0xEE; 8 * 512]);
    f.write10(0, 36, &[0xDD; 8 * 512]);
    assert_eq!(f.rod.snapshot_bytes(), 12 * 512, "8 + 4 preserved blocks");
    assert_eq!(f.registry.metrics().rod_gauges().1, 12 * 512);
    // Overwriting preserved blocks again preserves nothing more.
    f.write10(0, 4, &[0xCC; 512]);
    assert_eq!(f.rod.snapshot_bytes(), 12 * 512);
    let r = f.wut(1, 2, &wut_list(false, false, 0, &token, &[(0, 40)]));
    assert_eq!(r.status, ScsiStatus::GOOD, "{r:?}");
    let dst = f.bytes(1, 0, 40 * 512);
    assert_eq!(&dst[..32 * 512], &old[..32 * 512], "the old data, not the overwrite");
    assert_eq!(&dst[32 * 512..], &old[40 * 512..48 * 512]);
    // A WUT into the source LU itself over a ROD range: still point in time.
    let r = f.wut(0, 3, &wut_list(false, false, 0, &token, &[(8, 16)]));
    assert_eq!(r.status, ScsiStatus::GOOD, "{r:?}");
    assert_eq!(f.bytes(0, 8 * 512, 16 * 512), old[..16 * 512]);
    let r = f.wut(1, 4, &wut_list(false, false, 0, &token, &[(100, 32)]));
    assert_eq!(r.status, ScsiStatus::GOOD);
    assert_eq!(f.bytes(1, 100 * 512, 32 * 512), old[..32 * 512]);
    // Expiry returns the space.
    f.clock.advance(Duration::from_secs(61));
    f.rod.reap();
    assert_eq!(f.rod.snapshot_bytes(), 0);
    assert_eq!(f.registry.metrics().rod_gauges(), (0, 0));
}

#[test]
fn point_in_time_by_snapshot_and_its_space_bound() {
    let cfg = RodConfig { max_snapshot_bytes: 64 * 512, ..config() };
    let f = fx_with(cfg, true);
    let old = f.bytes(0, 0, 64 * 512);
    let token = f.token(0, 1, Some(0x0080_0002), &[(0, 16), (32, 16)]);
    assert_eq!(f.lus[0].1.snapshots.load(Ordering::Relaxed), 1);
    assert_eq!(f.rod.snapshot_bytes(), 32 * 512, "charged its represented bytes at PT");
    f.write10(0, 0, &[0xAB; 64 * 512]);
    let r = f.wut(1, 2, &wut_list(false, false, 8, &token, &[(0, 24)]));
    assert_eq!(r.status, ScsiStatus::GOOD, "{r:?}");
    assert_eq!(f.bytes(1, 0, 8 * 512), old[8 * 512..16 * 512]);
    assert_eq!(f.bytes(1, 8 * 512, 16 * 512), old[32 * 512..48 * 512]);
    // Another 40 blocks do not fit the 64-block bound: 55h/0Ch at PT.
    let r = f.pt(0, 3, &pt_list(false, 0, None, &[(0, 40)]));
    let s = sense(&r);
    assert_eq!((s.key, s.asc), (SenseKey::ILLEGAL_REQUEST, Asc::INSUFFICIENT_RESOURCES_TO_CREATE_ROD));
    let info = f.rrti(0, 3).expect("the failed PT has a record");
    assert_eq!(info.status, 0x02);
    assert_eq!(info.sense.map(|s| s.asc), Some(Asc::INSUFFICIENT_RESOURCES_TO_CREATE_ROD));
}

#[test]
fn copy_on_write_over_the_space_bound_revokes_instead_of_failing_the_write() {
    let cfg = RodConfig { max_snapshot_bytes: 16 * 512, ..config() };
    let f = fx_with(cfg, false);
    let token = f.token(0, 1, None, &[(0, 64)]);
    f.write10(0, 0, &[1; 8 * 512]);
    assert_eq!(f.rod.snapshot_bytes(), 8 * 512);
    // 16 more blocks would exceed the bound: the host write still succeeds…
    f.write10(0, 16, &[2; 16 * 512]);
    assert_eq!(f.bytes(0, 16 * 512, 512), vec![2; 512]);
    // …and the token is revoked rather than silently copying new data.
    let s = sense(&f.wut(1, 2, &wut_list(false, false, 0, &token, &[(0, 64)])));
    assert_eq!(s.asc, Asc::INVALID_TOKEN_OPERATION_TOKEN_REVOKED);
    assert_eq!(f.rod.snapshot_bytes(), 0, "its space is returned");
    let s = sense(&f.wut(1, 3, &wut_list(false, false, 0, &token, &[(0, 64)])));
    assert_eq!(s.asc, Asc::INVALID_TOKEN_OPERATION_TOKEN_REVOKED, "and stays revoked");
}

#[test]
fn change_vulnerable_and_access_upon_reference() {
    let f = fx();
    let cv = f.token(0, 1, Some(0x0080_0001), &[(0, 16)]);
    let aur = f.token(0, 2, Some(0x0001_0000), &[(0, 16)]);
    // A write outside the ranges changes nothing.
    f.write10(0, 100, &[9; 512]);
    let r = f.wut(1, 3, &wut_list(false, false, 0, &cv, &[(0, 16)]));
    assert_eq!(r.status, ScsiStatus::GOOD, "{r:?}");
    f.write10(0, 3, &[0x77; 512]);
    let s = sense(&f.wut(1, 4, &wut_list(false, false, 0, &cv, &[(0, 16)])));
    assert_eq!(s.asc, Asc::INVALID_TOKEN_OPERATION_TOKEN_REVOKED);
    // Access upon reference reads the live data.
    let r = f.wut(1, 5, &wut_list(false, false, 0, &aur, &[(200, 16)]));
    assert_eq!(r.status, ScsiStatus::GOOD);
    assert_eq!(f.bytes(1, 203 * 512, 512), vec![0x77; 512]);
    assert_eq!(f.rod.snapshot_bytes(), 0);
}

#[test]
fn zero_token_expiry_and_del_tkn() {
    let f = fx();
    let r = f.wut(1, 1, &wut_list(false, false, 5, &zero_token(), &[(10, 4), (30, 2)]));
    assert_eq!(r.status, ScsiStatus::GOOD, "{r:?}");
    assert_eq!(f.bytes(1, 10 * 512, 4 * 512), vec![0; 4 * 512]);
    assert_eq!(f.bytes(1, 30 * 512, 2 * 512), vec![0; 2 * 512]);
    assert_ne!(f.bytes(1, 14 * 512, 512), vec![0; 512], "only the ranges");
    // Expiry: a 5 s inactivity timeout.
    let r = f.pt(0, 2, &pt_list(false, 5, None, &[(0, 8)]));
    assert_eq!(r.status, ScsiStatus::GOOD);
    let t = f.rrti(0, 2).unwrap().token.unwrap();
    f.clock.advance(Duration::from_secs(4));
    assert_eq!(f.wut(1, 3, &wut_list(false, false, 0, &t, &[(0, 8)])).status, ScsiStatus::GOOD);
    f.clock.advance(Duration::from_secs(4));
    assert_eq!(f.wut(1, 4, &wut_list(false, false, 0, &t, &[(0, 8)])).status, ScsiStatus::GOOD, "use restarts it");
    f.clock.advance(Duration::from_secs(6));
    let s = sense(&f.wut(1, 5, &wut_list(false, false, 0, &t, &[(0, 8)])));
    assert_eq!(s.asc, Asc::INVALID_TOKEN_OPERATION_TOKEN_EXPIRED);
    // Over the maximum inactivity timeout: refused at byte 4.
    let s = sense(&f.pt(0, 6, &pt_list(false, 3601, None, &[(0, 8)])));
    assert_eq!(s, Sense::invalid_param_field(4, None));
    // DEL_TKN: the next use reads "deleted".
    let t = f.token(0, 7, None, &[(0, 8)]);
    assert_eq!(f.wut(1, 8, &wut_list(false, true, 0, &t, &[(0, 4)])).status, ScsiStatus::GOOD);
    let s = sense(&f.wut(1, 9, &wut_list(false, false, 4, &t, &[(4, 4)])));
    assert_eq!(s.asc, Asc::INVALID_TOKEN_OPERATION_TOKEN_DELETED);
}

#[test]
fn block_sizes_underrun_and_corrupt_tokens() {
    let f = fx();
    // 4096-byte source → 512-byte destination, offset in destination blocks.
    let src = f.bytes(2, 0, 4 * MIB);
    let t = f.token(2, 1, None, &[(1, 2)]); // 8 KiB = 16 destination blocks
    let r = f.wut(1, 2, &wut_list(false, false, 3, &t, &[(0, 13)]));
    assert_eq!(r.status, ScsiStatus::GOOD, "{r:?}");
    assert_eq!(f.bytes(1, 0, 13 * 512), src[4096 + 1536..3 * 4096]);
    // One block more than the ROD holds past the offset: 0Dh/04h.
    let s = sense(&f.wut(1, 3, &wut_list(false, false, 3, &t, &[(0, 14)])));
    assert_eq!((s.key, s.asc), (SenseKey::ILLEGAL_REQUEST, Asc::COPY_TARGET_DEVICE_DATA_UNDERRUN));
    // 512 → 4096: 8 source blocks make one destination block.
    let src0 = f.bytes(0, 0, MIB);
    let t = f.token(0, 4, None, &[(16, 8), (64, 8)]);
    assert_eq!(f.wut(2, 5, &wut_list(false, false, 1, &t, &[(9, 1)])).status, ScsiStatus::GOOD);
    assert_eq!(f.bytes(2, 9 * 4096, 4096), src0[64 * 512..72 * 512]);
    // A flipped byte: corrupt; an unknown type: corrupt too (MAC first).
    let mut bad = t.clone();
    bad[300] ^= 1;
    let s = sense(&f.wut(1, 6, &wut_list(false, false, 0, &bad, &[(0, 1)])));
    assert_eq!(s.asc, Asc::INVALID_TOKEN_OPERATION_TOKEN_CORRUPT);
}

#[test]
fn remote_and_stale_tokens() {
    let f = fx();
    let key = f.rod.config().key.clone();
    // Same domain key, another copy manager: remote.
    let peer = fx_with(RodConfig { key: key.clone(), ..config() }, false);
    let t = peer.token(0, 1, None, &[(0, 8)]);
    let s = sense(&f.wut(1, 2, &wut_list(false, false, 0, &t, &[(0, 8)])));
    assert_eq!(s.asc, Asc::INVALID_TOKEN_OPERATION_REMOTE_TOKEN_USAGE_NOT_SUPPORTED);
    // Same manager id, earlier run (other generation): unknown, not remote.
    let prev = fx_with(
        RodConfig { key, manager_id: f.rod.config().manager_id, generation: f.rod.config().generation ^ 1, ..config() },
        false,
    );
    let t = prev.token(0, 1, None, &[(0, 8)]);
    let s = sense(&f.wut(1, 3, &wut_list(false, false, 0, &t, &[(0, 8)])));
    assert_eq!(s.asc, Asc::INVALID_TOKEN_OPERATION_TOKEN_UNKNOWN);
    // Another domain key: corrupt.
    let stranger = fx();
    let t = stranger.token(0, 1, None, &[(0, 8)]);
    let s = sense(&f.wut(1, 4, &wut_list(false, false, 0, &t, &[(0, 8)])));
    assert_eq!(s.asc, Asc::INVALID_TOKEN_OPERATION_TOKEN_CORRUPT);
}

#[test]
fn token_scope_initiator_denies_a_writer_that_cannot_reach_the_source() {
    for scope in [TokenScope::Domain, TokenScope::Initiator] {
        let f = fx_with(RodConfig { scope, ..config() }, false);
        let victim = nexus(VICTIM, PRIVATE);
        let list = pt_list(false, 0, None, &[(0, 8)]);
        let r = f.run(&f.private, &victim, 0, &cdb16(0x83, 0x10, 1, list.len() as u32), &list);
        assert_eq!(r.status, ScsiStatus::GOOD);
        let t = f.rrti_on(&f.private, &victim, 0, 1).unwrap().token.unwrap();
        let r = f.wut(1, 2, &wut_list(false, false, 0, &t, &[(0, 8)]));
        match scope {
            TokenScope::Domain => assert_eq!(r.status, ScsiStatus::GOOD, "the token is the capability"),
            TokenScope::Initiator => {
                assert_eq!(sense(&r).asc, Asc::INVALID_TOKEN_OPERATION_CAUSE_NOT_REPORTABLE);
                // The victim itself, on a LU of an open target, may.
                let on_open = nexus(VICTIM, OPEN);
                let r = f.wut_on(&f.open, &on_open, 1, 3, &wut_list(false, false, 0, &t, &[(0, 8)]));
                assert_eq!(r.status, ScsiStatus::GOOD, "{r:?}");
            }
        }
    }
}

#[test]
fn discovery_vpd_8f_and_rsoc() {
    let f = fx();
    let r = f.run(&f.open, &f.host(), 0, &[0x12, 0x01, 0x8F, 0x10, 0x00, 0], &[]);
    assert_eq!(r.status, ScsiStatus::GOOD);
    let d = &r.data_in;
    assert_eq!(d[1], 0x8F);
    assert!(u16::from_be_bytes([d[2], d[3]]) >= 36);
    assert_eq!(&d[4..8], &[0x00, 0x00, 0x00, 0x20], "0000h first, length 0020h");
    let mut types = Vec::new();
    let mut at = 4;
    while at + 4 <= d.len() {
        types.push(u16::from_be_bytes([d[at], d[at + 1]]));
        at += 4 + usize::from(u16::from_be_bytes([d[at + 2], d[at + 3]]));
    }
    assert_eq!(types, vec![0x0000, 0x0001, 0x0004, 0x0008, 0x000C, 0x0106, 0x0108, 0x8001]);
    // REPORT SUPPORTED OPERATION CODES, all commands.
    let r = f.run(&f.open, &f.host(), 0, &[0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0], &[]);
    assert_eq!(r.status, ScsiStatus::GOOD);
    let listed: Vec<(u8, u16)> = r.data_in[4..].chunks(8).map(|c| (c[0], u16::from_be_bytes([c[2], c[3]]))).collect();
    for want in [(0x83, 0x10), (0x83, 0x11), (0x83, 0x1C), (0x84, 0x07), (0x84, 0x08)] {
        assert!(listed.contains(&want), "{want:?} not in RSOC");
    }
}

#[test]
fn report_all_rod_tokens_lists_management_parts_only() {
    let f = fx();
    let t = f.token(0, 1, None, &[(0, 8)]);
    f.token(1, 2, None, &[(0, 8)]);
    let r = f.run(&f.open, &f.host(), 0, &cdb16(0x84, 0x08, 0, 4096), &[]);
    assert_eq!(r.status, ScsiStatus::GOOD);
    assert_eq!(r.data_in.len(), 8 + 96);
    assert_eq!(&r.data_in[8..], &t[..96]);
}

#[test]
fn immed_progress_and_copy_operation_abort() {
    let f = fx();
    f.rod.set_spawner(Some(Arc::new(Threads)));
    f.registry.set_copy_chunk_bytes(4096);
    let t = f.token(0, 1, Some(0x0001_0000), &[(0, 8192)]);
    // The first 4 KiB chunk lands, the second is held at the gate.
    f.lus[1].1.gate.arm(1);
    // IMMED=1: GOOD at once, progress through RRTI (background 12h).
    let r = f.wut(1, 2, &wut_list(true, false, 0, &t, &[(0, 8192)]));
    assert_eq!(r.status, ScsiStatus::GOOD, "{r:?}");
    assert!(f.lus[1].1.gate.wait_held(), "the copy reaches its second chunk");
    let i = f.rrti(1, 2).unwrap();
    assert_eq!((i.sa, i.status, i.count), (0x11, 0x12, 8), "RRTI: background, one chunk (8 blocks) done");
    // COPY OPERATION ABORT: the operation ends with status 60h.
    let r = f.run(&f.open, &f.host(), 1, &cdb16(0x83, 0x1C, 2, 0), &[]);
    assert_eq!(r.status, ScsiStatus::GOOD);
    f.lus[1].1.gate.open();
    let end = wait_for(|| f.rrti(1, 2).ok().filter(|i| i.status != 0x12)).expect("the copy ends");
    assert_eq!(end.status, 0x60, "terminated");
    assert_eq!(end.count, 16, "stopped at the chunk after the abort");
    // Unknown list id: 24h at byte 2.
    let s = sense(&f.run(&f.open, &f.host(), 1, &cdb16(0x83, 0x1C, 99, 0), &[]));
    assert_eq!(s, Sense::invalid_cdb_field(2, None));
}

/// Poll `f` until it yields a value: bounded in time (10 s), yielding the
/// thread between polls (the work runs on another thread).
fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::yield_now();
    }
    None
}

#[test]
fn background_bound_refuses_with_insufficient_resources() {
    let f = fx_with(RodConfig { max_background: 0, ..config() }, false);
    f.rod.set_spawner(Some(Arc::new(Threads)));
    let t = f.token(0, 1, None, &[(0, 8)]);
    let s = sense(&f.wut(1, 2, &wut_list(true, false, 0, &t, &[(0, 8)])));
    assert_eq!(s.asc, Asc::INSUFFICIENT_RESOURCES);
    // Without IMMED the same copy runs in the foreground.
    assert_eq!(f.wut(1, 3, &wut_list(false, false, 0, &t, &[(0, 8)])).status, ScsiStatus::GOOD);
}

/// A hook that counts the writes it sees.
#[derive(Debug, Default)]
struct Counting(AtomicU64);

impl WriteHook for Counting {
    fn before_write(&self, _lu: &dyn Unit, _lba: u64, blocks: u64) -> Result<(), oxcopy_copy::Refusal> {
        self.0.fetch_add(blocks, Ordering::Relaxed);
        Ok(())
    }
}

#[test]
fn a_replaced_write_hook_is_chained_and_protection_restored() {
    let f = fx();
    let old = f.bytes(0, 0, 16 * 512);
    let t1 = f.token(0, 1, None, &[(0, 16)]);
    let counting = Arc::new(Counting::default());
    f.lus[0].0.set_write_hook(Some(counting.clone()));
    // The next POPULATE TOKEN puts the token hook back in front, chained.
    f.token(0, 2, None, &[(100, 1)]);
    f.write10(0, 0, &[0x55; 4 * 512]);
    assert_eq!(counting.0.load(Ordering::Relaxed), 4, "the replacing hook still runs");
    let r = f.wut(1, 3, &wut_list(false, false, 0, &t1, &[(0, 16)]));
    assert_eq!(r.status, ScsiStatus::GOOD, "{r:?}");
    assert_eq!(f.bytes(1, 0, 16 * 512), old, "the first token kept its point in time");
}

#[test]
fn immed_populate_token_reports_the_token_when_done() {
    let f = fx();
    f.rod.set_spawner(Some(Arc::new(Threads)));
    let r = f.pt(0, 5, &pt_list(true, 0, None, &[(0, 64)]));
    assert_eq!(r.status, ScsiStatus::GOOD, "{r:?}");
    let info = wait_for(|| f.rrti(0, 5).ok().filter(|i| i.status != 0x12)).expect("PT ends");
    assert_eq!((info.sa, info.status, info.count), (0x10, 0x01, 64));
    let t = info.token.expect("token");
    assert_eq!(f.wut(1, 6, &wut_list(false, false, 0, &t, &[(0, 64)])).status, ScsiStatus::GOOD);
    assert_eq!(f.bytes(1, 0, 64 * 512), f.bytes(0, 0, 64 * 512));
}

/// One initiator looping on POPULATE TOKEN gets INSUFFICIENT RESOURCES TO
/// CREATE ROD TOKEN once it holds its share; another still gets tokens.
#[test]
fn one_session_exhausting_its_token_share_leaves_tokens_for_another() {
    let cfg = RodConfig { max_tokens: 8, max_tokens_per_initiator: 3, ..config() };
    let f = fx_with(cfg, false);
    for id in 1..=3 {
        let r = f.pt(0, id, &pt_list(false, 0, None, &[(0, 8)]));
        assert_eq!(r.status, ScsiStatus::GOOD, "token {id}: {r:?}");
    }
    let s = sense(&f.pt(0, 4, &pt_list(false, 0, None, &[(0, 8)])));
    assert_eq!((s.key, s.asc), (SenseKey::ILLEGAL_REQUEST, Asc::INSUFFICIENT_RESOURCES_TO_CREATE_ROD_TOKEN));
    let second = nexus("iqn.2026-11.test:second", OPEN);
    let list = pt_list(false, 0, None, &[(0, 8)]);
    let r = f.run(&f.open, &second, 0, &cdb16(0x83, 0x10, 1, list.len() as u32), &list);
    assert_eq!(r.status, ScsiStatus::GOOD, "another initiator still creates tokens: {r:?}");
    assert_eq!(f.rod.store().live(), 4);
}
