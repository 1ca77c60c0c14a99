//! Tests of the "complete disk" commands, through `ScsiTarget::execute` with
//! byte vectors: thin provisioning (UNMAP, WRITE SAME, GET LBA STATUS, VPD),
//! COMPARE AND WRITE (including concurrent atomicity), ORWRITE, READ DEFECT
//! DATA, read-only LUs, SPC-2 and persistent reservations across I_T
//! nexuses, unit attentions, and APTPL persistence through a `PrStore`.

use crate::*;
use oxcopy_storage::{AllocationRun, Capabilities, MemStorage, Storage};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

const TARGET: &str = "iqn.2026-11.dev.oxcopy:disk";
const BS: usize = 512;

fn nexus_of(init: &str, isid: u8) -> Nexus {
    Nexus { initiator_name: Arc::from(init), isid: [0x80, 0, 0, 0, 0, isid], target_name: Arc::from(TARGET), tpgt: 1 }
}

fn cfg(read_only: bool) -> LuConfig {
    LuConfig { block_size: BS as u32, read_only, serial: "S1".into(), ..LuConfig::default() }
}

/// A memory store that tracks allocation per 4 KiB page (written pages are
/// mapped, discarded whole pages become holes), counts flushes, and can
/// pretend it cannot deallocate.
#[derive(Debug)]
struct Thin {
    mem: MemStorage,
    mapped: Mutex<Vec<bool>>,
    discard: bool,
    flushes: AtomicUsize,
}

const PAGE: u64 = 4096;

impl Thin {
    fn new(bytes: usize, discard: bool) -> Thin {
        let pages = (bytes as u64).div_ceil(PAGE) as usize;
        Thin {
            mem: MemStorage::new(bytes),
            mapped: Mutex::new(vec![false; pages]),
            discard,
            flushes: AtomicUsize::new(0),
        }
    }
    fn mark(&self, offset: u64, len: u64, mapped: bool) {
        let mut m = self.mapped.lock();
        if mapped {
            for p in offset / PAGE..(offset + len).div_ceil(PAGE) {
                m[p as usize] = true;
            }
        } else {
            for p in offset.div_ceil(PAGE)..(offset + len) / PAGE {
                m[p as usize] = false;
            }
        }
    }
}

impl Storage for Thin {
    fn len(&self) -> u64 {
        self.mem.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> oxcopy_storage::Result<()> {
        self.mem.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> oxcopy_storage::Result<()> {
        self.mem.write_at(buf, offset)?;
        self.mark(offset, buf.len() as u64, true);
        Ok(())
    }
    fn flush(&self) -> oxcopy_storage::Result<()> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            discard: self.discard,
            discard_zeroes: self.discard,
            allocation_status: true,
            reflink: false,
            fs_block_size: PAGE as u32,
        }
    }
    fn discard(&self, offset: u64, len: u64) -> oxcopy_storage::Result<()> {
        self.mem.write_zeroes(offset, len)?;
        self.mark(offset, len, false);
        Ok(())
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> oxcopy_storage::Result<()> {
        self.mem.write_zeroes(offset, len)?;
        self.mark(offset, len, true);
        Ok(())
    }
    fn allocation(&self, offset: u64, len: u64) -> oxcopy_storage::Result<AllocationRun> {
        let m = self.mapped.lock();
        let first = m[(offset / PAGE) as usize];
        let mut end = (offset / PAGE + 1) * PAGE;
        while end < offset + len && m[(end / PAGE) as usize] == first {
            end += PAGE;
        }
        Ok(AllocationRun { mapped: first, len: end.min(offset + len) - offset })
    }
}

struct Fx {
    target: ScsiTarget,
    lu: Arc<LogicalUnit>,
    store: Arc<Thin>,
    a: Nexus,
    b: Nexus,
    cancel: CancelToken,
}

fn fx_opts(blocks: usize, read_only: bool, discard: bool) -> Fx {
    let store = Arc::new(Thin::new(blocks * BS, discard));
    let lu = Arc::new(LogicalUnit::new(cfg(read_only), store.clone()));
    fx_with_lu(lu, store)
}

fn fx_with_lu(lu: Arc<LogicalUnit>, store: Arc<Thin>) -> Fx {
    let target = ScsiTarget::new(TARGET, 1, vec![(0, lu.clone())], crate::testing::registry());
    Fx {
        target,
        lu,
        store,
        a: nexus_of("iqn.2000-01.test:a", 1),
        b: nexus_of("iqn.2000-01.test:b", 2),
        cancel: CancelToken::new(),
    }
}

fn fx(blocks: usize) -> Fx {
    fx_opts(blocks, false, true)
}

impl Fx {
    fn run_as(&self, n: &Nexus, cdb: &[u8], data: &[u8]) -> CommandResult {
        let req = Request {
            nexus: n,
            lun: encode_lun(0),
            cdb,
            data_out: data,
            expected_len: data.len() as u32,
            cancel: &self.cancel,
        };
        self.target.execute(&req)
    }
    fn run(&self, cdb: &[u8], data: &[u8]) -> CommandResult {
        self.run_as(&self.a, cdb, data)
    }
    #[track_caller]
    fn good_as(&self, n: &Nexus, cdb: &[u8], data: &[u8]) -> Vec<u8> {
        let r = self.run_as(n, cdb, data);
        assert_eq!(r.status, ScsiStatus::GOOD, "cdb {cdb:02x?}: {:?}", r.sense.as_deref().and_then(Sense::decode));
        r.data_in
    }
    #[track_caller]
    fn good(&self, cdb: &[u8], data: &[u8]) -> Vec<u8> {
        self.good_as(&self.a, cdb, data)
    }
    fn contents(&self) -> Vec<u8> {
        self.store.mem.contents()
    }
    fn blocks(&self, lba: usize, n: usize) -> Vec<u8> {
        self.contents()[lba * BS..(lba + n) * BS].to_vec()
    }
}

#[track_caller]
fn check(r: &CommandResult, key: SenseKey, asc: Asc) -> Sense {
    assert_eq!(r.status, ScsiStatus::CHECK_CONDITION, "expected CHECK CONDITION");
    let s = Sense::decode(r.sense.as_deref().unwrap_or(&[])).expect("well-formed sense");
    assert_eq!((s.key, s.asc), (key, asc));
    s
}

#[track_caller]
fn conflict(r: &CommandResult) {
    assert_eq!((r.status, r.sense.as_ref()), (ScsiStatus::RESERVATION_CONFLICT, None));
}

#[track_caller]
fn param_field(r: &CommandResult, byte: u16, bit: Option<u8>) {
    let s = check(r, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_PARAMETER_LIST);
    assert_eq!(s.sks, Some(SenseKeySpecific::Field { cdb: false, byte, bit }));
}

#[track_caller]
fn cdb_field(r: &CommandResult, byte: u16, bit: Option<u8>) {
    let s = check(r, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB);
    assert_eq!(s.sks, Some(SenseKeySpecific::Field { cdb: true, byte, bit }));
}

// ---- CDB and parameter-list builders -------------------------------------------

fn rw10(op: u8, lba: u32, n: u16) -> Vec<u8> {
    let mut c = vec![op, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&n.to_be_bytes());
    c
}
fn rw16(op: u8, flags: u8, lba: u64, n: u32) -> Vec<u8> {
    let mut c = vec![0u8; 16];
    c[0] = op;
    c[1] = flags;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&n.to_be_bytes());
    c
}
fn unmap_cdb(pll: u16) -> Vec<u8> {
    let mut c = vec![0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c[7..9].copy_from_slice(&pll.to_be_bytes());
    c
}
fn unmap_list(extents: &[(u64, u32)]) -> Vec<u8> {
    let mut d = vec![0u8; 8];
    d[0..2].copy_from_slice(&((6 + 16 * extents.len()) as u16).to_be_bytes());
    d[2..4].copy_from_slice(&((16 * extents.len()) as u16).to_be_bytes());
    for &(lba, n) in extents {
        d.extend_from_slice(&lba.to_be_bytes());
        d.extend_from_slice(&n.to_be_bytes());
        d.extend_from_slice(&[0; 4]);
    }
    d
}
fn ws10(flags: u8, lba: u32, n: u16) -> Vec<u8> {
    let mut c = rw10(0x41, lba, n);
    c[1] = flags;
    c
}
fn caw(flags: u8, lba: u64, n: u8) -> Vec<u8> {
    let mut c = rw16(0x89, flags, lba, 0);
    c[10..14].fill(0);
    c[13] = n;
    c
}
fn gls(lba: u64, alloc: u32) -> Vec<u8> {
    let mut c = rw16(0x9E, 0x12, lba, alloc);
    c[14] = 0;
    c
}
fn prin(sa: u8, alloc: u16) -> Vec<u8> {
    let a = alloc.to_be_bytes();
    vec![0x5E, sa, 0, 0, 0, 0, 0, a[0], a[1], 0]
}
fn prout(sa: u8, pr_type: u8) -> Vec<u8> {
    vec![0x5F, sa, pr_type, 0, 0, 0, 0, 0, 24, 0]
}
fn prout_params(key: u64, sa_key: u64, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[20] = flags;
    p
}
fn fill(n: usize, v: u8) -> Vec<u8> {
    vec![v; n * BS]
}

const REGISTER: u8 = 0x00;
const RESERVE: u8 = 0x01;
const RELEASE: u8 = 0x02;
const CLEAR: u8 = 0x03;
const PREEMPT: u8 = 0x04;
const PREEMPT_AND_ABORT: u8 = 0x05;
const REGISTER_IGNORE: u8 = 0x06;
const WE: u8 = 0x1;
const EA: u8 = 0x3;
const WE_RO: u8 = 0x5;
const EA_RO: u8 = 0x6;
const WE_AR: u8 = 0x7;
const EA_AR: u8 = 0x8;
const APTPL: u8 = 0x01;
const ALL_TG_PT: u8 = 0x04;

impl Fx {
    fn register(&self, n: &Nexus, key: u64) {
        self.good_as(n, &prout(REGISTER_IGNORE, 0), &prout_params(0, key, 0));
    }
    /// TEST UNIT READY, to collect a pending unit attention.
    fn tur(&self, n: &Nexus) {
        self.run_as(n, &[0; 6], &[]);
    }
    fn keys(&self) -> (u32, Vec<u64>) {
        let d = self.good_as(&self.a, &prin(0, 4096), &[]);
        let gen = u32::from_be_bytes(d[0..4].try_into().unwrap());
        let len = u32::from_be_bytes(d[4..8].try_into().unwrap()) as usize;
        assert_eq!(len, d.len() - 8);
        (gen, d[8..].chunks(8).map(|c| u64::from_be_bytes(c.try_into().unwrap())).collect())
    }
    /// (key, type) of the reservation, if any.
    fn reservation(&self) -> Option<(u64, u8)> {
        let d = self.good_as(&self.a, &prin(1, 4096), &[]);
        match u32::from_be_bytes(d[4..8].try_into().unwrap()) {
            0 => None,
            16 => Some((u64::from_be_bytes(d[8..16].try_into().unwrap()), d[21])),
            n => panic!("bad ADDITIONAL LENGTH {n}"),
        }
    }
}

// ---- Provisioning: VPD, READ CAPACITY ---------------------------------------------

#[test]
fn provisioning_follows_the_backend() {
    let thin = fx(64);
    assert_eq!(thin.good(&[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], &[])[14], 0xC0);
    assert_eq!(&thin.good(&[0x12, 1, 0xB2, 0, 255, 0], &[])[4..8], &[0, 0xE4, 0x02, 0]);
    let bl = thin.good(&[0x12, 1, 0xB0, 0, 255, 0], &[]);
    assert_eq!(bl[4] & 0x01, 0, "WSNZ=0");
    assert_eq!(bl[5], 255, "MAXIMUM COMPARE AND WRITE LENGTH");
    assert_eq!(u32::from_be_bytes(bl[20..24].try_into().unwrap()), provisioning::MAX_UNMAP_LBA_COUNT);
    assert_eq!(u32::from_be_bytes(bl[24..28].try_into().unwrap()), provisioning::MAX_UNMAP_DESCRIPTORS);
    assert_eq!(u32::from_be_bytes(bl[28..32].try_into().unwrap()), 8);
    assert_eq!(u64::from_be_bytes(bl[36..44].try_into().unwrap()), provisioning::MAX_WRITE_SAME_BLOCKS);
    // No deallocation in the backend: fully provisioned, no UNMAP limits.
    let full = fx_opts(64, false, false);
    assert_eq!(full.good(&[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], &[])[14], 0);
    assert_eq!(&full.good(&[0x12, 1, 0xB2, 0, 255, 0], &[])[4..8], &[0, 0, 0, 0]);
    assert_eq!(&full.good(&[0x12, 1, 0xB0, 0, 255, 0], &[])[20..36], &[0; 16]);
    check(
        &full.run(&unmap_cdb(24), &unmap_list(&[(0, 1)])),
        SenseKey::ILLEGAL_REQUEST,
        Asc::INVALID_COMMAND_OPERATION_CODE,
    );
    // WRITE SAME with UNMAP=1 then just writes the block.
    full.good(&ws10(0x08, 2, 3), &fill(1, 0x5A));
    assert_eq!(full.blocks(2, 3), fill(3, 0x5A));
}

// ---- UNMAP --------------------------------------------------------------------

#[test]
fn unmap_deallocates_what_it_names() {
    let f = fx(64);
    f.good(&rw10(0x2A, 0, 64), &fill(64, 0xAB));
    let list = unmap_list(&[(8, 8), (32, 16), (60, 0)]);
    f.good(&unmap_cdb(list.len() as u16), &list);
    let c = f.contents();
    for (lba, blk) in c.chunks(BS).enumerate() {
        let zero = (8..16).contains(&lba) || (32..48).contains(&lba);
        assert!(blk.iter().all(|&b| b == if zero { 0 } else { 0xAB }), "block {lba}");
    }
    // The holes show in GET LBA STATUS: mapped 0-7, deallocated 8-15, mapped 16-31, ...
    let d = f.good(&gls(0, 1024), &[]);
    let descs: Vec<(u64, u32, u8)> = d[8..]
        .chunks(16)
        .map(|c| {
            (u64::from_be_bytes(c[0..8].try_into().unwrap()), u32::from_be_bytes(c[8..12].try_into().unwrap()), c[12])
        })
        .collect();
    assert_eq!(descs, vec![(0, 8, 0), (8, 8, 1), (16, 16, 0), (32, 16, 1), (48, 16, 0)]);
    assert_eq!(u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize, d.len() - 4);
}

#[test]
fn unmap_validates_every_length_and_limit_before_unmapping() {
    let f = fx(64);
    f.good(&rw10(0x2A, 0, 64), &fill(64, 0xAB));
    let plle = |r: &CommandResult| check(r, SenseKey::ILLEGAL_REQUEST, Asc::PARAMETER_LIST_LENGTH_ERROR);
    // No parameter list: nothing to do.
    f.good(&unmap_cdb(0), &[]);
    // Shorter than the header, or shorter than the CDB says.
    plle(&f.run(&unmap_cdb(6), &[0; 6]));
    let list = unmap_list(&[(0, 1)]);
    plle(&f.run(&unmap_cdb(24), &list[..20]));
    // UNMAP DATA LENGTH or BLOCK DESCRIPTOR DATA LENGTH claiming more than the list holds.
    let mut bad = list.clone();
    bad[0..2].copy_from_slice(&100u16.to_be_bytes());
    param_field(&f.run(&unmap_cdb(24), &bad), 0, None);
    let mut bad = list.clone();
    bad[2..4].copy_from_slice(&32u16.to_be_bytes());
    param_field(&f.run(&unmap_cdb(24), &bad), 2, None);
    // More descriptors than advertised.
    let many: Vec<(u64, u32)> = (0..=provisioning::MAX_UNMAP_DESCRIPTORS as u64).map(|i| (i % 64, 0)).collect();
    let l = unmap_list(&many);
    param_field(&f.run(&unmap_cdb(l.len() as u16), &l), 2, None);
    // More blocks than MAXIMUM UNMAP LBA COUNT in total: pointer at the descriptor that tips it.
    let l = unmap_list(&[(0, 1), (0, provisioning::MAX_UNMAP_LBA_COUNT)]);
    param_field(&f.run(&unmap_cdb(l.len() as u16), &l), 32, None);
    // One descriptor out of range: LBA OUT OF RANGE, and nothing unmapped.
    let l = unmap_list(&[(0, 4), (60, 5)]);
    check(&f.run(&unmap_cdb(l.len() as u16), &l), SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE);
    let l = unmap_list(&[(0, 4), (u64::MAX, 2)]);
    check(&f.run(&unmap_cdb(l.len() as u16), &l), SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE);
    assert!(f.contents().iter().all(|&b| b == 0xAB));
    // Zero-length descriptors are fine anywhere, even one past the end;
    // a trailing partial descriptor is ignored.
    let mut l = unmap_list(&[(64, 0), (u64::MAX, 0)]);
    l.extend_from_slice(&[0xFF; 8]);
    l[2..4].copy_from_slice(&40u16.to_be_bytes());
    l[0..2].copy_from_slice(&46u16.to_be_bytes());
    f.good(&unmap_cdb(l.len() as u16), &l);
    assert!(f.contents().iter().all(|&b| b == 0xAB));
    // ANCHOR is not supported.
    cdb_field(&f.run(&[0x42, 1, 0, 0, 0, 0, 0, 0, 24, 0], &unmap_list(&[(0, 1)])), 1, Some(0));
}

// ---- WRITE SAME ------------------------------------------------------------------

#[test]
fn write_same_writes_zeroes_unmaps_and_honours_limits() {
    let f = fx(256);
    let mut blk = vec![0u8; BS];
    blk[..4].copy_from_slice(b"oxws");
    f.good(&ws10(0, 10, 5), &blk);
    assert_eq!(f.blocks(10, 5), blk.repeat(5));
    assert!(f.blocks(9, 1).iter().chain(f.blocks(15, 1).iter()).all(|&b| b == 0));
    // WRITE SAME (16), 0 blocks = to the last block.
    f.good(&rw16(0x93, 0, 250, 0), &blk);
    assert_eq!(f.blocks(250, 6), blk.repeat(6));
    // UNMAP=1: deallocated (reads zero) whatever the data block holds.
    f.good(&ws10(0x08, 10, 3), &blk);
    assert_eq!(f.blocks(10, 3), fill(3, 0));
    assert_eq!(f.blocks(13, 2), blk.repeat(2));
    // NDOB: no data-out, zeroes; data_out_wanted is 0 then, one block otherwise.
    let r = f.run(&rw16(0x93, 0x01, 13, 2), &[]);
    assert_eq!((r.status, r.data_out_wanted), (ScsiStatus::GOOD, 0));
    assert_eq!(f.blocks(13, 2), fill(2, 0));
    assert_eq!(f.run(&ws10(0, 0, 1), &blk).data_out_wanted, BS as u32);
    // A data-out that is not exactly one block.
    for bad in [&blk[..BS / 2], &[blk.clone(), blk.clone()].concat()[..]] {
        check(&f.run(&ws10(0, 0, 1), bad), SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_INFORMATION_UNIT);
    }
    // Range and length limits.
    check(&f.run(&ws10(0, 256, 0), &blk), SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE);
    check(&f.run(&ws10(0, 255, 2), &blk), SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE);
    check(&f.run(&rw16(0x93, 0, u64::MAX, 1), &blk), SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE);
    let big = fx(0x10000 + 8);
    cdb_field(&big.run(&rw16(0x93, 0, 0, 0x10000), &blk), 10, None);
    cdb_field(&big.run(&ws10(0, 0, 0), &blk), 7, None); // 0 = to the end = over the limit
    big.good(&ws10(0, 9, 0), &blk); // exactly MAXIMUM WRITE SAME LENGTH blocks to the end
                                    // ANCHOR and WRPROTECT are refused.
    cdb_field(&f.run(&ws10(0x10, 0, 1), &blk), 1, Some(4));
    cdb_field(&f.run(&ws10(0x20, 0, 1), &blk), 1, Some(5));
}

#[test]
fn write_same_zero_block_keeps_blocks_mapped() {
    let f = fx(64);
    f.good(&ws10(0, 0, 64), &fill(1, 0));
    let d = f.good(&gls(0, 24), &[]);
    assert_eq!(&d[8..21], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0]);
}

// ---- GET LBA STATUS ---------------------------------------------------------------

#[test]
fn get_lba_status_bytes_and_limits() {
    let f = fx(64);
    // Nothing written yet: one deallocated run to the end.
    let d = f.good(&gls(5, 4096), &[]);
    assert_eq!(d, vec![0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 59, 1, 0, 0, 0]);
    // A write inside one 4 KiB page maps the whole page (blocks 8-15).
    f.good(&rw10(0x2A, 9, 1), &fill(1, 1));
    let d = f.good(&gls(0, 4096), &[]);
    assert_eq!(d.len(), 8 + 3 * 16);
    assert_eq!(&d[8 + 16..8 + 29], &[0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 8, 0]);
    // The allocation length bounds the descriptors (at least one is built).
    assert_eq!(f.good(&gls(0, 24), &[]).len(), 24);
    assert_eq!(f.good(&gls(0, 30), &[]).len(), 24);
    assert_eq!(f.good(&gls(0, 40), &[]).len(), 40);
    assert_eq!(f.good(&gls(0, 4), &[]), vec![0, 0, 0, 20]);
    assert!(f.good(&gls(0, 0), &[]).is_empty());
    for lba in [64, 65, u64::MAX, 1 << 63] {
        check(&f.run(&gls(lba, 24), &[]), SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE);
    }
    // Starting inside a run reports from the starting LBA.
    let d = f.good(&gls(12, 24), &[]);
    assert_eq!(&d[8..21], &[0, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 4, 0]);
}

// ---- COMPARE AND WRITE / ORWRITE ---------------------------------------------------

#[test]
fn compare_and_write_writes_on_match_only() {
    let f = fx(64);
    f.good(&rw10(0x2A, 4, 2), &fill(2, b'A'));
    let mut data = fill(2, b'A');
    data.extend(fill(2, b'B'));
    f.good(&caw(0, 4, 2), &data);
    assert_eq!(f.blocks(4, 2), fill(2, b'B'));
    // Mismatch: nothing written, INFORMATION = offset of the first differing byte.
    for off in [0usize, 1, 511, 512, 1023] {
        let mut d = fill(2, b'B');
        d[off] = b'Z';
        d.extend(fill(2, b'C'));
        let s = check(&f.run(&caw(0, 4, 2), &d), SenseKey::MISCOMPARE, Asc::MISCOMPARE_DURING_VERIFY);
        assert_eq!(s.information, Some(off as u64));
        assert_eq!(f.blocks(4, 2), fill(2, b'B'));
    }
    // Data-out must be exactly 2 x NUMBER OF LOGICAL BLOCKS (256 wraps to 0 in the CDB).
    cdb_field(&f.run(&caw(0, 4, 2), &fill(3, b'B')), 13, None);
    cdb_field(&f.run(&caw(0, 4, 0), &fill(512, b'B')), 13, None);
    assert_eq!(f.run(&caw(0, 4, 3), &[]).data_out_wanted, 6 * BS as u32);
    f.good(&caw(0, 4, 0), &[]);
    check(&f.run(&caw(0, 63, 2), &fill(4, 0)), SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE);
    // FUA flushes; WRPROTECT is refused.
    let before = f.store.flushes.load(Ordering::Relaxed);
    let mut d = fill(1, b'B');
    d.extend(fill(1, b'D'));
    f.good(&caw(0x08, 4, 1), &d);
    assert_eq!(f.store.flushes.load(Ordering::Relaxed), before + 1);
    cdb_field(&f.run(&caw(0x20, 4, 1), &d), 1, Some(5));
}

#[test]
fn orwrite_ors_into_the_medium() {
    let f = fx(64);
    f.good(&rw10(0x2A, 0, 2), &fill(2, 0xA0));
    f.good(&rw16(0x8B, 0, 0, 2), &fill(2, 0x05));
    assert_eq!(f.blocks(0, 2), fill(2, 0xA5));
    f.good(&rw16(0x8B, 0, 63, 0), &[]);
    check(&f.run(&rw16(0x8B, 0, 63, 2), &fill(2, 1)), SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE);
    check(&f.run(&rw16(0x8B, 0, 1 << 63, 1), &fill(1, 1)), SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE);
    cdb_field(&f.run(&rw16(0x8B, 0x20, 0, 1), &fill(1, 1)), 1, Some(5));
}

/// CAW is atomic against every other command: threads on two I_T nexuses
/// increment a counter block with COMPARE AND WRITE retry loops while other
/// threads overwrite the second block of each CAW's range with plain WRITEs
/// (forcing miscompares and retries). No increment may be lost.
#[test]
fn compare_and_write_increments_are_never_lost() {
    let f = Arc::new(fx(16));
    f.good(&rw10(0x2A, 0, 2), &fill(2, 0));
    const THREADS: usize = 4;
    const INCREMENTS: u64 = 150;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2u8 {
        let (f, stop) = (f.clone(), stop.clone());
        writers.push(std::thread::spawn(move || {
            let n = if w == 0 { f.a.clone() } else { f.b.clone() };
            let mut i = 0u8;
            while !stop.load(Ordering::Relaxed) {
                i = i.wrapping_add(1);
                f.good_as(&n, &rw10(0x2A, 1, 1), &fill(1, i));
                std::thread::yield_now();
            }
        }));
    }
    let mut incs = Vec::new();
    for t in 0..THREADS {
        let f = f.clone();
        incs.push(std::thread::spawn(move || {
            let n = if t % 2 == 0 { f.a.clone() } else { f.b.clone() };
            let mut done = 0;
            let mut miscompares = 0u64;
            while done < INCREMENTS {
                let cur = f.good_as(&n, &rw10(0x28, 0, 2), &[]);
                let v = u64::from_be_bytes(cur[..8].try_into().unwrap());
                let mut new = cur.clone();
                new[..8].copy_from_slice(&(v + 1).to_be_bytes());
                let mut data = cur;
                data.extend(new);
                let r = f.run_as(&n, &caw(0, 0, 2), &data);
                match r.status {
                    ScsiStatus::GOOD => done += 1,
                    _ => {
                        check(&r, SenseKey::MISCOMPARE, Asc::MISCOMPARE_DURING_VERIFY);
                        miscompares += 1;
                    }
                }
            }
            miscompares
        }));
    }
    let miscompares: u64 = incs.into_iter().map(|h| h.join().unwrap()).sum();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let v = u64::from_be_bytes(f.blocks(0, 1)[..8].try_into().unwrap());
    assert_eq!(v, THREADS as u64 * INCREMENTS, "lost or duplicated increments ({miscompares} miscompares)");
    assert!(f.blocks(0, 1)[8..].iter().all(|&b| b == 0));
    assert_eq!(f.lu.range_locks().held(), 0);
}

/// Concurrent WRITEs, WRITE SAMEs and COMPARE AND WRITEs on overlapping
/// ranges leave data some serial order could have produced: every block
/// holds exactly one command's data, and no two commands that both covered
/// blocks x and y are seen in opposite orders on x and y.
#[test]
fn overlapping_writers_and_caws_match_a_serial_order() {
    const BLOCKS: u64 = 8;
    let f = Arc::new(fx(BLOCKS as usize));
    // Every command writes its id (4 bytes) repeated over its blocks.
    let stamp = |id: u32, n: u64| id.to_be_bytes().repeat(n as usize * BS / 4);
    let ranges: Arc<Mutex<Vec<(u32, u64, u64)>>> = Arc::new(Mutex::new(vec![(0, 0, BLOCKS)]));
    let mut hs = Vec::new();
    for t in 0..4u32 {
        let (f, ranges) = (f.clone(), ranges.clone());
        hs.push(std::thread::spawn(move || {
            let n = if t % 2 == 0 { f.a.clone() } else { f.b.clone() };
            let mut seed = 0x9E37_79B9u32.wrapping_mul(t + 1);
            for i in 0..200u32 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let lba = u64::from(seed % BLOCKS as u32);
                let len = 1 + u64::from((seed >> 8) % (BLOCKS - lba) as u32);
                let id = (t + 1) << 16 | i;
                let ok = match seed % 3 {
                    0 => f.run_as(&n, &rw10(0x2A, lba as u32, len as u16), &stamp(id, len)).status == ScsiStatus::GOOD,
                    1 => {
                        // WRITE SAME of a one-block stamp.
                        f.run_as(&n, &ws10(0, lba as u32, len as u16), &stamp(id, 1)).status == ScsiStatus::GOOD
                    }
                    _ => {
                        let mut d = f.good_as(&n, &rw10(0x28, lba as u32, len as u16), &[]);
                        d.extend(stamp(id, len));
                        f.run_as(&n, &caw(0, lba, len as u8), &d).status == ScsiStatus::GOOD
                    }
                };
                if ok {
                    ranges.lock().push((id, lba, lba + len));
                }
            }
        }));
    }
    for h in hs {
        h.join().unwrap();
    }
    let ranges = ranges.lock();
    let covers = |id: u32, b: u64| ranges.iter().any(|&(i, s, e)| i == id && (s..e).contains(&b));
    let owners: Vec<u32> = (0..BLOCKS)
        .map(|b| {
            let blk = f.blocks(b as usize, 1);
            let id = u32::from_be_bytes(blk[..4].try_into().unwrap());
            assert!(blk.chunks(4).all(|c| c == id.to_be_bytes()), "block {b} is torn");
            assert!(covers(id, b), "block {b} holds data of {id:x}, which never covered it");
            id
        })
        .collect();
    for x in 0..BLOCKS {
        for y in 0..BLOCKS {
            let (a, b) = (owners[x as usize], owners[y as usize]);
            if a != b {
                assert!(
                    !(covers(a, y) && covers(b, x)),
                    "blocks {x} and {y}: {a:x} and {b:x} both covered both, seen in opposite orders"
                );
            }
        }
    }
}

// ---- READ DEFECT DATA ------------------------------------------------------------------

#[test]
fn read_defect_data_is_empty() {
    let f = fx(64);
    assert_eq!(f.good(&[0x37, 0, 0x18, 0, 0, 0, 0, 0, 32, 0], &[]), vec![0, 0x18, 0, 0]);
    assert_eq!(f.good(&[0x37, 0, 0x05, 0, 0, 0, 0, 0, 2, 0], &[]), vec![0, 0x05]);
    cdb_field(&f.run(&[0x37, 0, 0x01, 0, 0, 0, 0, 0, 32, 0], &[]), 2, Some(2));
    let d = f.good(&[0xB7, 0x13, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], &[]);
    assert_eq!(d, vec![0, 0x13, 0, 0, 0, 0, 0, 0]);
}

// ---- Read-only LUs ---------------------------------------------------------------------

#[test]
fn read_only_lu_refuses_every_kind_of_write() {
    let f = fx_opts(64, true, true);
    let blk = fill(1, 0x11);
    let mut caw_data = fill(1, 0);
    caw_data.extend(fill(1, 0x11));
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("WRITE (6)", vec![0x0A, 0, 0, 0, 1, 0], blk.clone()),
        ("WRITE (10)", rw10(0x2A, 0, 1), blk.clone()),
        ("WRITE (12)", vec![0xAA, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], blk.clone()),
        ("WRITE (16)", rw16(0x8A, 0, 0, 1), blk.clone()),
        ("WRITE AND VERIFY (10)", rw10(0x2E, 0, 1), blk.clone()),
        ("WRITE AND VERIFY (16)", rw16(0x8E, 0, 0, 1), blk.clone()),
        ("WRITE SAME (10)", ws10(0, 0, 1), blk.clone()),
        ("WRITE SAME (10) UNMAP", ws10(0x08, 0, 1), blk.clone()),
        ("WRITE SAME (16)", rw16(0x93, 0, 0, 1), blk.clone()),
        ("WRITE SAME (16) UNMAP", rw16(0x93, 0x08, 0, 1), blk.clone()),
        ("WRITE SAME (16) NDOB", rw16(0x93, 0x09, 0, 1), vec![]),
        ("UNMAP", unmap_cdb(24), unmap_list(&[(0, 1)])),
        ("COMPARE AND WRITE", caw(0, 0, 1), caw_data),
        ("ORWRITE (16)", rw16(0x8B, 0, 0, 1), blk.clone()),
    ];
    for (name, cdb, data) in cases {
        let r = f.run(&cdb, &data);
        assert_eq!(r.status, ScsiStatus::CHECK_CONDITION, "{name}");
        let s = Sense::decode(r.sense.as_deref().unwrap()).unwrap();
        assert_eq!((s.key, s.asc), (SenseKey::DATA_PROTECT, Asc::WRITE_PROTECTED), "{name}");
    }
    assert!(f.contents().iter().all(|&b| b == 0));
    // Reading, verifying and asking about allocation still work.
    f.good(&rw10(0x28, 0, 1), &[]);
    f.good(&gls(0, 24), &[]);
    f.good(&[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]);
}

// ---- SPC-2 RESERVE / RELEASE ---------------------------------------------------------

#[test]
fn reserve6_across_two_nexuses() {
    let f = fx(64);
    for (reserve, release) in [
        (vec![0x16, 0, 0, 0, 0, 0], vec![0x17, 0, 0, 0, 0, 0]),
        (vec![0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0], vec![0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    ] {
        f.good_as(&f.a, &reserve, &[]);
        f.good_as(&f.a, &reserve, &[]); // again: still ours
        conflict(&f.run_as(&f.b, &reserve, &[]));
        conflict(&f.run_as(&f.b, &rw10(0x28, 0, 1), &[]));
        conflict(&f.run_as(&f.b, &[0x1A, 0, 0x3F, 0, 255, 0], &[]));
        conflict(&f.run_as(&f.b, &[0, 0, 0, 0, 0, 0], &[]));
        conflict(&f.run_as(&f.b, &prin(0, 64), &[]));
        f.good_as(&f.b, &[0x12, 0, 0, 0, 96, 0], &[]);
        f.good_as(&f.b, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0], &[]);
        f.good_as(&f.b, &release, &[]); // no-op from the other nexus
        conflict(&f.run_as(&f.b, &rw10(0x28, 0, 1), &[]));
        f.good_as(&f.a, &rw10(0x2A, 0, 1), &fill(1, 1));
        f.good_as(&f.a, &release, &[]);
        f.good_as(&f.b, &reserve, &[]);
        f.good_as(&f.b, &release, &[]);
    }
    // Ended by I_T nexus loss and by resets.
    f.good_as(&f.a, &[0x16, 0, 0, 0, 0, 0], &[]);
    f.target.nexus_lost(&f.a);
    f.good_as(&f.b, &[0x16, 0, 0, 0, 0, 0], &[]);
    f.target.lun_reset(&f.b, encode_lun(0));
    f.run_as(&f.a, &[0, 0, 0, 0, 0, 0], &[]); // collect the reset UA
    f.good_as(&f.a, &[0x16, 0, 0, 0, 0, 0], &[]);
    f.target.target_reset(&f.a);
    f.run_as(&f.b, &[0, 0, 0, 0, 0, 0], &[]);
    f.good_as(&f.b, &[0x16, 0, 0, 0, 0, 0], &[]);
    f.good_as(&f.b, &[0x17, 0, 0, 0, 0, 0], &[]);
    f.tur(&f.a);
    // With persistent registrations RESERVE and RELEASE conflict (CRH=1).
    f.register(&f.a, 7);
    conflict(&f.run_as(&f.a, &[0x16, 0, 0, 0, 0, 0], &[]));
    conflict(&f.run_as(&f.b, &[0x17, 0, 0, 0, 0, 0], &[]));
    // Third-party RESERVE (10) is not supported.
    cdb_field(&f.run_as(&f.b, &[0x56, 0x10, 0, 0, 0, 0, 0, 0, 0, 0], &[]), 1, Some(4));
}

// ---- Persistent reservations ---------------------------------------------------------

#[test]
fn register_read_keys_and_generation() {
    let f = fx(64);
    assert_eq!(f.keys(), (0, vec![]));
    f.register(&f.a, 0xA);
    f.register(&f.b, 0xB);
    assert_eq!(f.keys(), (2, vec![0xA, 0xB]));
    // REGISTER needs the current key; REGISTER AND IGNORE does not.
    conflict(&f.run_as(&f.a, &prout(REGISTER, 0), &prout_params(0, 0xAA, 0)));
    f.good_as(&f.a, &prout(REGISTER, 0), &prout_params(0xA, 0xAA, 0));
    f.good_as(&f.a, &prout(REGISTER_IGNORE, 0), &prout_params(0x1234, 0xAAA, 0));
    assert_eq!(f.keys(), (4, vec![0xAAA, 0xB]));
    // An unregistered nexus with a non-zero key conflicts; SARK 0 is a no-op.
    let c = nexus_of("iqn.2000-01.test:c", 3);
    conflict(&f.run_as(&c, &prout(REGISTER, 0), &prout_params(5, 6, 0)));
    f.good_as(&c, &prout(REGISTER, 0), &prout_params(0, 0, 0));
    assert_eq!(f.keys().0, 4);
    // Unregister.
    f.good_as(&f.b, &prout(REGISTER, 0), &prout_params(0xB, 0, 0));
    assert_eq!(f.keys(), (5, vec![0xAAA]));
    // READ KEYS truncated: ADDITIONAL LENGTH still counts every key.
    assert_eq!(f.good(&prin(0, 8), &[]), vec![0, 0, 0, 5, 0, 0, 0, 8]);
}

#[test]
fn prout_parameter_list_checks() {
    let f = fx(64);
    let plle = |r: &CommandResult| check(r, SenseKey::ILLEGAL_REQUEST, Asc::PARAMETER_LIST_LENGTH_ERROR);
    let mut cdb = prout(REGISTER_IGNORE, 0);
    cdb[8] = 23;
    plle(&f.run(&cdb, &prout_params(0, 1, 0)[..23]));
    cdb[8] = 28;
    plle(&f.run(&cdb, &[0; 28]));
    // The CDB says 24 but fewer bytes arrived.
    plle(&f.run(&prout(REGISTER_IGNORE, 0), &prout_params(0, 1, 0)[..20]));
    // SPEC_I_PT is not supported; APTPL needs a store.
    param_field(&f.run(&prout(REGISTER_IGNORE, 0), &prout_params(0, 1, 0x08)), 20, Some(3));
    param_field(&f.run(&prout(REGISTER_IGNORE, 0), &prout_params(0, 1, APTPL)), 20, Some(0));
    assert_eq!(f.keys(), (0, vec![]));
    // Bad scope or type on RESERVE.
    f.register(&f.a, 1);
    cdb_field(&f.run(&prout(RESERVE, 0x10 | WE), &prout_params(1, 0, 0)), 2, Some(7));
    cdb_field(&f.run(&prout(RESERVE, 0x2), &prout_params(1, 0, 0)), 2, Some(3));
    // REGISTER AND MOVE and unknown service actions.
    cdb_field(&f.run(&[0x5F, 0x07, 0, 0, 0, 0, 0, 0, 24, 0], &[0; 24]), 1, Some(4));
    cdb_field(&f.run(&prin(4, 64), &[]), 1, Some(4));
}

#[test]
fn registrations_cap() {
    let f = fx(8);
    for i in 0..MAX_REGISTRATIONS {
        f.register(&nexus_of(&format!("iqn.2000-01.test:n{i}"), 1), i as u64 + 1);
    }
    let r = f.run_as(&nexus_of("iqn.2000-01.test:one-too-many", 1), &prout(REGISTER_IGNORE, 0), &prout_params(0, 9, 0));
    check(&r, SenseKey::ILLEGAL_REQUEST, Asc::INSUFFICIENT_REGISTRATION_RESOURCES);
}

/// Access from a second nexus under each reservation type, registered and
/// not (the matrix libiscsi's ProutReserve.Access* tests check, plus the
/// command classes in between).
#[test]
fn reservation_conflicts_per_type_across_nexuses() {
    // (type, reg can read, reg can write, unreg can read, unreg can write)
    let table = [
        (WE, true, false, true, false),
        (EA, false, false, false, false),
        (WE_RO, true, true, true, false),
        (EA_RO, true, true, false, false),
        (WE_AR, true, true, true, false),
        (EA_AR, true, true, false, false),
    ];
    for (t, reg_r, reg_w, unreg_r, unreg_w) in table {
        let f = fx(64);
        f.register(&f.a, 1);
        f.register(&f.b, 2);
        f.good_as(&f.a, &prout(RESERVE, t), &prout_params(1, 0, 0));
        let key = if t == WE_AR || t == EA_AR { 0 } else { 1 };
        assert_eq!(f.reservation(), Some((key, t)));
        // The holder can do anything.
        f.good_as(&f.a, &rw10(0x28, 0, 1), &[]);
        f.good_as(&f.a, &rw10(0x2A, 0, 1), &fill(1, 1));
        let probe = |can_read: bool, can_write: bool| {
            for (cdb, data, allowed) in [
                (rw10(0x28, 0, 1), vec![], can_read),
                (vec![0x2F, 0, 0, 0, 0, 0, 0, 0, 1, 0], vec![], can_read), // VERIFY, BYTCHK=0
                (gls(0, 24), vec![], can_read),
                (rw10(0x2A, 0, 1), fill(1, 1), can_write),
                (ws10(0, 0, 1), fill(1, 1), can_write),
                (unmap_cdb(24), unmap_list(&[(0, 1)]), can_write),
                (vec![0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], vec![], can_write),
                (vec![0x1A, 0, 0x3F, 0, 255, 0], vec![], can_write), // MODE SENSE: conflict for both
            ] {
                let r = f.run_as(&f.b, &cdb, &data);
                if allowed {
                    assert_eq!(r.status, ScsiStatus::GOOD, "type {t} cdb {:02x}", cdb[0]);
                } else {
                    assert_eq!(r.status, ScsiStatus::RESERVATION_CONFLICT, "type {t} cdb {:02x}", cdb[0]);
                }
            }
            // Always allowed.
            for cdb in [
                vec![0, 0, 0, 0, 0, 0],
                vec![0x12, 0, 0, 0, 96, 0],
                vec![0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                vec![0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0],
                vec![0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0],
                prin(0, 64),
            ] {
                assert_eq!(f.run_as(&f.b, &cdb, &[]).status, ScsiStatus::GOOD, "type {t} cdb {:02x}", cdb[0]);
            }
        };
        probe(reg_r, reg_w);
        f.good_as(&f.b, &prout(REGISTER, 0), &prout_params(2, 0, 0));
        probe(unreg_r, unreg_w);
        // An unregistered nexus cannot reserve, release, clear or preempt.
        for sa in [RESERVE, RELEASE, CLEAR, PREEMPT] {
            conflict(&f.run_as(&f.b, &prout(sa, t), &prout_params(2, 1, 0)));
        }
        // Another registrant cannot take a single-holder reservation.
        f.register(&f.b, 2);
        let r = f.run_as(&f.b, &prout(RESERVE, t), &prout_params(2, 0, 0));
        if t == WE_AR || t == EA_AR {
            assert_eq!(r.status, ScsiStatus::GOOD, "every registrant holds an all-registrants reservation");
        } else {
            conflict(&r);
        }
        // Releasing with the wrong type is refused; the right one works.
        let wrong = if t == WE { EA } else { WE };
        check(
            &f.run_as(&f.a, &prout(RELEASE, wrong), &prout_params(1, 0, 0)),
            SenseKey::ILLEGAL_REQUEST,
            Asc::INVALID_RELEASE_OF_PERSISTENT_RESERVATION,
        );
        f.good_as(&f.a, &prout(RELEASE, t), &prout_params(1, 0, 0));
        assert_eq!(f.reservation(), None);
        // Registrants of shared types were told (RESERVATIONS RELEASED).
        let told = [WE_RO, EA_RO, WE_AR, EA_AR].contains(&t);
        assert_eq!(f.lu.pending_unit_attentions(&f.b).is_empty(), !told, "type {t}");
        f.tur(&f.b);
        f.good_as(&f.b, &rw10(0x2A, 0, 1), &fill(1, 2));
    }
}

#[test]
fn release_and_unregister_raise_unit_attentions() {
    let f = fx(64);
    f.register(&f.a, 1);
    f.register(&f.b, 2);
    f.good_as(&f.b, &[0, 0, 0, 0, 0, 0], &[]);
    // Releasing a registrants-only reservation tells the other registrants.
    f.good_as(&f.a, &prout(RESERVE, WE_RO), &prout_params(1, 0, 0));
    f.good_as(&f.a, &prout(RELEASE, WE_RO), &prout_params(1, 0, 0));
    assert_eq!(f.lu.pending_unit_attentions(&f.b), vec![Asc::RESERVATIONS_RELEASED]);
    assert!(f.lu.pending_unit_attentions(&f.a).is_empty());
    check(&f.run_as(&f.b, &[0, 0, 0, 0, 0, 0], &[]), SenseKey::UNIT_ATTENTION, Asc::RESERVATIONS_RELEASED);
    // A plain Write Exclusive release does not.
    f.good_as(&f.a, &prout(RESERVE, WE), &prout_params(1, 0, 0));
    f.good_as(&f.a, &prout(RELEASE, WE), &prout_params(1, 0, 0));
    assert!(f.lu.pending_unit_attentions(&f.b).is_empty());
    // The holder of a registrants-only reservation unregistering releases it.
    f.good_as(&f.a, &prout(RESERVE, EA_RO), &prout_params(1, 0, 0));
    f.good_as(&f.a, &prout(REGISTER, 0), &prout_params(1, 0, 0));
    assert_eq!(f.reservation(), None);
    assert_eq!(f.lu.pending_unit_attentions(&f.b), vec![Asc::RESERVATIONS_RELEASED]);
}

#[test]
fn all_registrants_reservation_outlives_its_creator() {
    let f = fx(64);
    f.register(&f.a, 1);
    f.register(&f.b, 2);
    f.good_as(&f.a, &prout(RESERVE, EA_AR), &prout_params(1, 0, 0));
    f.good_as(&f.a, &prout(REGISTER, 0), &prout_params(1, 0, 0));
    assert_eq!(f.reservation(), Some((0, EA_AR)));
    conflict(&f.run_as(&f.a, &rw10(0x28, 0, 1), &[]));
    f.good_as(&f.b, &rw10(0x28, 0, 1), &[]);
    f.good_as(&f.b, &prout(RELEASE, EA_AR), &prout_params(2, 0, 0));
    assert_eq!(f.reservation(), None);
    // The last registrant leaving ends it too.
    f.good_as(&f.b, &prout(RESERVE, WE_AR), &prout_params(2, 0, 0));
    f.good_as(&f.b, &prout(REGISTER, 0), &prout_params(2, 0, 0));
    assert_eq!(f.reservation(), None);
}

#[test]
fn clear_removes_everything_and_tells_the_others() {
    let f = fx(64);
    f.register(&f.a, 1);
    f.register(&f.b, 2);
    f.good_as(&f.b, &[0, 0, 0, 0, 0, 0], &[]);
    f.good_as(&f.a, &prout(RESERVE, EA), &prout_params(1, 0, 0));
    let gen = f.keys().0;
    conflict(&f.run_as(&f.a, &prout(CLEAR, 0), &prout_params(9, 0, 0)));
    f.good_as(&f.a, &prout(CLEAR, 0), &prout_params(1, 0, 0));
    assert_eq!(f.keys(), (gen + 1, vec![]));
    assert_eq!(f.reservation(), None);
    assert_eq!(f.lu.pending_unit_attentions(&f.b), vec![Asc::RESERVATIONS_PREEMPTED]);
    assert!(f.lu.pending_unit_attentions(&f.a).is_empty());
}

#[test]
fn preempt_registrations_and_reservations() {
    let f = fx(64);
    let c = nexus_of("iqn.2000-01.test:c", 3);
    f.register(&f.a, 1);
    f.register(&f.b, 2);
    f.register(&c, 2);
    f.good_as(&f.b, &[0, 0, 0, 0, 0, 0], &[]);
    f.good_as(&c, &[0, 0, 0, 0, 0, 0], &[]);
    // No reservation: PREEMPT removes every registration with SARK.
    let gen = f.keys().0;
    f.good_as(&f.a, &prout(PREEMPT, EA), &prout_params(1, 2, 0));
    assert_eq!(f.keys(), (gen + 1, vec![1]));
    assert_eq!(f.lu.pending_unit_attentions(&f.b), vec![Asc::REGISTRATIONS_PREEMPTED]);
    assert_eq!(f.lu.pending_unit_attentions(&c), vec![Asc::REGISTRATIONS_PREEMPTED]);
    // SARK 0 without a reservation, or matching nothing, fails.
    param_field(&f.run_as(&f.a, &prout(PREEMPT, EA), &prout_params(1, 0, 0)), 8, None);
    conflict(&f.run_as(&f.a, &prout(PREEMPT, EA), &prout_params(1, 77, 0)));
    // Preempting the holder moves the reservation (and may change its type).
    f.run_as(&f.b, &[0, 0, 0, 0, 0, 0], &[]);
    f.register(&f.b, 2);
    f.good_as(&f.a, &prout(RESERVE, WE), &prout_params(1, 0, 0));
    f.good_as(&f.b, &prout(PREEMPT_AND_ABORT, EA), &prout_params(2, 1, 0));
    assert_eq!(f.lu.pending_unit_attentions(&f.a), vec![Asc::REGISTRATIONS_PREEMPTED]);
    f.tur(&f.a);
    assert_eq!(f.reservation(), Some((2, EA)));
    assert_eq!(f.keys().1, vec![2]);
    conflict(&f.run_as(&f.a, &rw10(0x28, 0, 1), &[]));
    // Preempting a non-holder's key leaves the reservation alone.
    f.register(&f.a, 1);
    f.good_as(&f.b, &prout(PREEMPT, EA), &prout_params(2, 1, 0));
    f.tur(&f.a);
    assert_eq!((f.reservation(), f.keys().1), (Some((2, EA)), vec![2]));
    // All registrants with SARK 0: everybody else goes, the preemptor holds.
    f.register(&f.a, 1);
    f.good_as(&f.b, &prout(RELEASE, EA), &prout_params(2, 0, 0));
    f.good_as(&f.b, &prout(RESERVE, WE_AR), &prout_params(2, 0, 0));
    f.good_as(&f.a, &prout(PREEMPT, WE), &prout_params(1, 0, 0));
    assert_eq!((f.reservation(), f.keys().1), (Some((1, WE)), vec![1]));
    assert_eq!(f.lu.pending_unit_attentions(&f.b), vec![Asc::REGISTRATIONS_PREEMPTED]);
}

#[test]
fn report_capabilities_and_read_full_status_bytes() {
    let f = fx(64);
    let caps = f.good(&prin(2, 64), &[]);
    assert_eq!(caps, vec![0, 8, 0x14, 0x90, 0xEA, 0x01, 0, 0]);
    // ALL_TG_PT registration for a, plain one for b; a holds WE_RO.
    f.good_as(&f.a, &prout(REGISTER_IGNORE, 0), &prout_params(0, 0x11, ALL_TG_PT));
    f.register(&f.b, 0x22);
    f.good_as(&f.a, &prout(RESERVE, WE_RO), &prout_params(0x11, 0, 0));
    let d = f.good(&prin(3, 4096), &[]);
    // 35 characters and a NUL: already a multiple of four.
    let tid_a = b"iqn.2000-01.test:a,i,0x800000000001\0";
    let tid_b = b"iqn.2000-01.test:b,i,0x800000000002\0";
    assert_eq!(tid_a.len(), 36);
    let mut want = vec![0, 0, 0, 2, 0, 0, 0, 0];
    for (key, flags, st, rtpi, tid) in [(0x11u64, 0x03u8, 0x05u8, 0u16, tid_a), (0x22, 0, 0, 1, tid_b)] {
        want.extend_from_slice(&key.to_be_bytes());
        want.extend_from_slice(&[0, 0, 0, 0, flags, st, 0, 0, 0, 0]);
        want.extend_from_slice(&rtpi.to_be_bytes());
        want.extend_from_slice(&((tid.len() + 4) as u32).to_be_bytes());
        want.extend_from_slice(&[0x45, 0, 0, tid.len() as u8]);
        want.extend_from_slice(tid);
    }
    let len = (want.len() - 8) as u32;
    want[4..8].copy_from_slice(&len.to_be_bytes());
    assert_eq!(d, want);
    // READ RESERVATION bytes.
    assert_eq!(
        f.good(&prin(1, 64), &[]),
        vec![0, 0, 0, 2, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0x11, 0, 0, 0, 0, 0, 0x05, 0, 0]
    );
    // The ALL_TG_PT registration covers a's nexus through another portal group.
    let a2 = Nexus { tpgt: 2, ..f.a.clone() };
    f.good_as(&a2, &rw10(0x2A, 0, 1), &fill(1, 3));
}

// ---- APTPL: persistence through a PrStore ------------------------------------------

#[derive(Debug, Default)]
struct MemPrStore {
    bytes: Mutex<Option<Vec<u8>>>,
    fail: AtomicBool,
    saves: AtomicUsize,
}

impl PrStore for MemPrStore {
    fn load(&self) -> std::io::Result<Option<Vec<u8>>> {
        Ok(self.bytes.lock().clone())
    }
    fn save(&self, bytes: &[u8]) -> std::io::Result<()> {
        if self.fail.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("disk on fire"));
        }
        self.saves.fetch_add(1, Ordering::Relaxed);
        *self.bytes.lock() = Some(bytes.to_vec());
        Ok(())
    }
}

fn restart(f: &Fx, store: &Arc<MemPrStore>) -> (Fx, bool) {
    let lu = Arc::new(LogicalUnit::new(cfg(false), f.store.clone()));
    let restored = lu.attach_pr_store(store.clone()).expect("state restores");
    (fx_with_lu(lu, f.store.clone()), restored)
}

#[test]
fn aptpl_registrations_and_reservation_survive_a_restart() {
    let f = fx(64);
    let store = Arc::new(MemPrStore::default());
    assert!(!f.lu.attach_pr_store(store.clone()).unwrap());
    // Without APTPL nothing is saved.
    f.register(&f.b, 0xB);
    assert_eq!(store.saves.load(Ordering::Relaxed), 0);
    f.good_as(&f.a, &prout(REGISTER_IGNORE, 0), &prout_params(0, 0xA, APTPL));
    f.good_as(&f.a, &prout(RESERVE, EA_RO), &prout_params(0xA, 0, 0));
    assert_eq!(&f.good(&prin(2, 8), &[])[2..4], &[0x15, 0x91], "PTPL_C and PTPL_A");
    let (g, restored) = restart(&f, &store);
    assert!(restored);
    assert_eq!(g.keys().1, vec![0xB, 0xA]);
    assert_eq!(g.reservation(), Some((0xA, EA_RO)));
    // The reservation is enforced after the restart.
    let c = nexus_of("iqn.2000-01.test:c", 9);
    conflict(&g.run_as(&c, &rw10(0x28, 0, 1), &[]));
    g.good_as(&g.b, &rw10(0x28, 0, 1), &[]);
    g.good_as(&g.a, &rw10(0x2A, 0, 1), &fill(1, 1));
    // A failed save fails the command and changes nothing.
    store.fail.store(true, Ordering::Relaxed);
    let r = g.run_as(&g.a, &prout(REGISTER, 0), &prout_params(0xA, 0xAB, APTPL));
    check(&r, SenseKey::HARDWARE_ERROR, Asc::INTERNAL_TARGET_FAILURE);
    assert_eq!(g.keys().1, vec![0xB, 0xA]);
    store.fail.store(false, Ordering::Relaxed);
    // APTPL=0 in a later registration stops persisting (and clears the saved state).
    g.good_as(&g.a, &prout(REGISTER, 0), &prout_params(0xA, 0xAC, 0));
    let (h, restored) = restart(&g, &store);
    assert!(!restored);
    assert_eq!(h.keys(), (0, vec![]));
    // A damaged state is reported, not half-restored.
    *store.bytes.lock() = Some(b"OXPR\x01garbage".to_vec());
    let lu = LogicalUnit::new(cfg(false), f.store.clone());
    assert!(matches!(lu.attach_pr_store(store.clone()), Err(PrStateError::Corrupt(_))));
}

/// Holds the first write of a command until released, so a test can act
/// while the command is running.
#[derive(Debug, Default)]
struct Gate {
    entered: Mutex<bool>,
    open: Mutex<bool>,
    cv: parking_lot::Condvar,
}

impl WriteHook for Gate {
    fn before_write(&self, _lu: &dyn Unit, _lba: u64, _blocks: u64) -> Result<(), oxcopy_copy::Refusal> {
        *self.entered.lock() = true;
        self.cv.notify_all();
        let mut open = self.open.lock();
        while !*open {
            self.cv.wait(&mut open);
        }
        Ok(())
    }
}

impl Gate {
    fn wait_entered(&self) {
        let mut e = self.entered.lock();
        while !*e {
            self.cv.wait_for(&mut e, std::time::Duration::from_millis(10));
        }
    }
    fn release(&self) {
        *self.open.lock() = true;
        self.cv.notify_all();
    }
}

/// A long WRITE SAME from `b` (two 1 MiB chunks) is held at its first
/// chunk while `a` preempts `b`; with ABORT it ends TASK ABORTED before the
/// second chunk, without it it completes.
#[test]
fn preempt_and_abort_stops_running_commands_of_the_preempted() {
    for abort in [true, false] {
        let f = Arc::new(fx(4096));
        f.register(&f.a, 1);
        f.register(&f.b, 2);
        let gate = Arc::new(Gate::default());
        f.lu.set_write_hook(Some(gate.clone()));
        let f2 = f.clone();
        let ws = std::thread::spawn(move || f2.run_as(&f2.b, &ws10(0, 0, 4096), &fill(1, 0x77)).status);
        gate.wait_entered();
        let sa = if abort { PREEMPT_AND_ABORT } else { PREEMPT };
        f.good_as(&f.a, &prout(sa, WE), &prout_params(1, 2, 0));
        gate.release();
        let status = ws.join().unwrap();
        let second_chunk = f.blocks(2048, 1);
        if abort {
            assert_eq!(status, ScsiStatus::TASK_ABORTED);
            assert_eq!(second_chunk, fill(1, 0), "nothing after the abort point");
        } else {
            assert_eq!(status, ScsiStatus::GOOD);
            assert_eq!(second_chunk, fill(1, 0x77));
        }
        assert_eq!(f.blocks(0, 1), fill(1, 0x77), "the chunk in flight completed");
        // Commands of other nexuses, and later ones, are unaffected by the epoch.
        f.lu.set_write_hook(None);
        f.good_as(&f.a, &ws10(0, 0, 4096), &fill(1, 0x55));
    }
}

#[test]
fn reservation_conflict_for_the_copy_manager() {
    let f = fx(8);
    assert!(!f.lu.reservation_conflict(&f.b, true));
    f.register(&f.a, 1);
    f.good_as(&f.a, &prout(RESERVE, WE), &prout_params(1, 0, 0));
    assert!(f.lu.reservation_conflict(&f.b, true));
    assert!(!f.lu.reservation_conflict(&f.b, false));
    assert!(!f.lu.reservation_conflict(&f.a, true));
    f.good_as(&f.a, &prout(CLEAR, 0), &prout_params(1, 0, 0));
    f.good_as(&f.a, &[0x16, 0, 0, 0, 0, 0], &[]);
    assert!(f.lu.reservation_conflict(&f.b, false));
}

/// Two sessions of one initiator (same name, different ISIDs) are two I_T
/// nexuses: registrations, reservations and unit attentions are per nexus.
#[test]
fn sessions_of_one_initiator_are_separate_nexuses() {
    let f = fx(8);
    let s1 = nexus_of("iqn.2000-01.test:host", 1);
    let s2 = nexus_of("iqn.2000-01.test:host", 2);
    f.good_as(&s2, &[0; 6], &[]);
    f.register(&s1, 5);
    f.good_as(&s1, &prout(RESERVE, EA_RO), &prout_params(5, 0, 0));
    conflict(&f.run_as(&s2, &rw10(0x28, 0, 1), &[]));
    conflict(&f.run_as(&s2, &prout(RELEASE, EA_RO), &prout_params(5, 0, 0)));
    f.register(&s2, 6);
    f.good_as(&s2, &rw10(0x28, 0, 1), &[]);
    f.good_as(&s1, &prout(RELEASE, EA_RO), &prout_params(5, 0, 0));
    assert_eq!(f.lu.pending_unit_attentions(&s2), vec![Asc::RESERVATIONS_RELEASED]);
    assert!(f.lu.pending_unit_attentions(&s1).is_empty());
    f.good_as(&s1, &prout(CLEAR, 0), &prout_params(5, 0, 0));
    assert_eq!(f.lu.pending_unit_attentions(&s2), vec![Asc::RESERVATIONS_RELEASED, Asc::RESERVATIONS_PREEMPTED]);
    f.tur(&s2);
    f.tur(&s2);
    // SPC-2: one session's reservation shuts the other session out.
    f.good_as(&s1, &[0x16, 0, 0, 0, 0, 0], &[]);
    conflict(&f.run_as(&s2, &rw10(0x28, 0, 1), &[]));
    f.target.nexus_lost(&s1);
    f.good_as(&s2, &rw10(0x28, 0, 1), &[]);
}
