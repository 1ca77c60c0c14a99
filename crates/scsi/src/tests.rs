//! Whole-model tests: byte vectors per command family, CDB truncation and
//! reserved bits, unit attentions, read-only LUs, the short data-out rule,
//! and property tests.

use crate::cdb::high_bit;
use crate::commands::COMMANDS;
use crate::*;
use oxcopy_storage::{Capabilities, MemStorage, Storage, StorageError, StorageErrorKind};
use oxcopy_testkit::pattern;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const TARGET: &str = "iqn.2025-01.org.oxcopy:t1";

fn nexus(i: u8) -> Nexus {
    Nexus {
        initiator_name: Arc::from("iqn.2000-01.test:init"),
        isid: [0x80, 0, 0, 0, 0, i],
        target_name: Arc::from(TARGET),
        tpgt: 1,
    }
}

fn cfg(bs: u32, read_only: bool) -> LuConfig {
    LuConfig {
        block_size: bs,
        read_only,
        serial: "SER123".into(),
        naa: [0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        vendor: "OXCOPY".into(),
        product: "oxcopy disk".into(),
        revision: "0001".into(),
    }
}

/// Storage wrapper that counts flushes and can be told to fail.
#[derive(Debug)]
struct Probe {
    inner: MemStorage,
    flushes: AtomicUsize,
    fail: Option<StorageErrorKind>,
}

impl Storage for Probe {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> oxcopy_storage::Result<()> {
        match self.fail {
            Some(k) => Err(StorageError::new(k, "injected")),
            None => self.inner.read_at(buf, offset),
        }
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> oxcopy_storage::Result<()> {
        match self.fail {
            Some(k) => Err(StorageError::new(k, "injected")),
            None => self.inner.write_at(buf, offset),
        }
    }
    fn flush(&self) -> oxcopy_storage::Result<()> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
}

/// A huge store that reads zeroes and discards writes (capacity tests).
#[derive(Debug)]
struct Huge(u64);

impl Storage for Huge {
    fn len(&self) -> u64 {
        self.0
    }
    fn read_at(&self, buf: &mut [u8], _offset: u64) -> oxcopy_storage::Result<()> {
        buf.fill(0);
        Ok(())
    }
    fn write_at(&self, _buf: &[u8], _offset: u64) -> oxcopy_storage::Result<()> {
        Ok(())
    }
    fn flush(&self) -> oxcopy_storage::Result<()> {
        Ok(())
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities { fs_block_size: 4096, ..Default::default() }
    }
}

struct Fx {
    target: ScsiTarget,
    lu: Arc<LogicalUnit>,
    probe: Arc<Probe>,
    nx: Nexus,
    cancel: CancelToken,
}

fn fx_with(blocks: u64, bs: u32, read_only: bool, fail: Option<StorageErrorKind>) -> Fx {
    let probe = Arc::new(Probe {
        inner: MemStorage::new((blocks * u64::from(bs)) as usize),
        flushes: AtomicUsize::new(0),
        fail,
    });
    let lu = Arc::new(LogicalUnit::new(cfg(bs, read_only), probe.clone()));
    let target = ScsiTarget::new(TARGET, 1, vec![(0, lu.clone())], crate::testing::registry());
    Fx { target, lu, probe, nx: nexus(1), cancel: CancelToken::new() }
}

fn fx(blocks: u64) -> Fx {
    fx_with(blocks, 512, false, None)
}

impl Fx {
    fn run(&self, cdb: &[u8], data: &[u8]) -> CommandResult {
        self.run_as(&self.nx, 0, cdb, data)
    }
    fn run_as(&self, nx: &Nexus, lun: u16, cdb: &[u8], data: &[u8]) -> CommandResult {
        let req = Request {
            nexus: nx,
            lun: encode_lun(lun),
            cdb,
            data_out: data,
            expected_len: data.len() as u32,
            cancel: &self.cancel,
        };
        self.target.execute(&req)
    }
    fn good(&self, cdb: &[u8], data: &[u8]) -> Vec<u8> {
        let r = self.run(cdb, data);
        assert_eq!(r.status, ScsiStatus::GOOD, "cdb {cdb:02x?}: {:?}", r.sense.as_deref().and_then(Sense::decode));
        r.data_in
    }
    fn contents(&self) -> Vec<u8> {
        self.probe.inner.contents()
    }
}

fn sense(r: &CommandResult) -> Sense {
    assert_eq!(r.status, ScsiStatus::CHECK_CONDITION, "expected CHECK CONDITION");
    Sense::decode(r.sense.as_deref().unwrap_or(&[])).expect("well-formed sense")
}

#[track_caller]
fn check(r: &CommandResult, key: SenseKey, asc: Asc) -> Sense {
    let s = sense(r);
    assert_eq!((s.key, s.asc), (key, asc));
    s
}

#[track_caller]
fn invalid_field(r: &CommandResult, byte: u16, bit: Option<u8>) {
    let s = check(r, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB);
    assert_eq!(s.sks, Some(SenseKeySpecific::Field { cdb: true, byte, bit }));
}

// ---- CDB builders -------------------------------------------------------

fn rw10(op: u8, flags: u8, lba: u32, n: u16) -> Vec<u8> {
    let mut c = vec![op, flags, 0, 0, 0, 0, 0, 0, 0, 0];
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&n.to_be_bytes());
    c
}
fn rw12(op: u8, flags: u8, lba: u32, n: u32) -> Vec<u8> {
    let mut c = vec![op, flags, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[6..10].copy_from_slice(&n.to_be_bytes());
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
fn rw6(op: u8, lba: u32, n: u8) -> Vec<u8> {
    let b = lba.to_be_bytes();
    vec![op, b[1] & 0x1F, b[2], b[3], n, 0]
}
fn inquiry(evpd: bool, page: u8, alloc: u16) -> Vec<u8> {
    let a = alloc.to_be_bytes();
    vec![0x12, u8::from(evpd), page, a[0], a[1], 0]
}
fn tur() -> Vec<u8> {
    vec![0; 6]
}
fn mode_sense6(dbd: bool, pc: u8, page: u8, sub: u8, alloc: u8) -> Vec<u8> {
    vec![0x1A, if dbd { 0x08 } else { 0 }, pc << 6 | page, sub, alloc, 0]
}
fn mode_sense10(llbaa: bool, dbd: bool, pc: u8, page: u8, alloc: u16) -> Vec<u8> {
    let a = alloc.to_be_bytes();
    let b1 = if llbaa { 0x10 } else { 0 } | if dbd { 0x08 } else { 0 };
    vec![0x5A, b1, pc << 6 | page, 0, 0, 0, 0, a[0], a[1], 0]
}
fn rsoc(rctd: bool, options: u8, op: u8, sa: u16, alloc: u32) -> Vec<u8> {
    let mut c = vec![0xA3, 0x0C, if rctd { 0x80 } else { 0 } | options, op, 0, 0, 0, 0, 0, 0, 0, 0];
    c[4..6].copy_from_slice(&sa.to_be_bytes());
    c[6..10].copy_from_slice(&alloc.to_be_bytes());
    c
}
fn report_luns(select: u8, alloc: u32) -> Vec<u8> {
    let mut c = vec![0xA0, 0, select, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c[6..10].copy_from_slice(&alloc.to_be_bytes());
    c
}

// ---- INQUIRY -------------------------------------------------------------

#[test]
fn inquiry_standard_bytes() {
    let f = fx(64);
    let d = f.good(&inquiry(false, 0, 260), &[]);
    assert_eq!(d.len(), 96);
    assert_eq!(&d[..8], &[0x00, 0x00, 0x06, 0x12, 91, 0x08, 0x00, 0x02]);
    assert_eq!(&d[8..16], b"OXCOPY  ");
    assert_eq!(&d[16..32], b"oxcopy disk     ");
    assert_eq!(&d[32..36], b"0001");
    assert!(d[36..58].iter().all(|&b| b == 0));
    assert_eq!(&d[58..66], &[0x00, 0xA0, 0x04, 0x60, 0x04, 0xC0, 0x09, 0x60]);
    assert!(d[66..].iter().all(|&b| b == 0));
    // 3PC follows the copy-manager flag (on by default).
    f.lu.set_third_party_copy(false);
    assert_eq!(f.good(&inquiry(false, 0, 8), &[])[5], 0x00);
}

#[test]
fn inquiry_allocation_length() {
    let f = fx(64);
    let full = f.good(&inquiry(false, 0, 512), &[]);
    for a in 0..=300u16 {
        let d = f.good(&inquiry(false, 0, a), &[]);
        assert_eq!(d.len(), usize::from(a).min(96));
        assert_eq!(&d[..], &full[..d.len()]);
    }
    assert_eq!(f.good(&inquiry(false, 0, 511), &[]), full);
}

#[test]
fn inquiry_invalid_fields() {
    let f = fx(64);
    invalid_field(&f.run(&inquiry(false, 1, 256), &[]), 2, Some(7));
    invalid_field(&f.run(&inquiry(true, 0x81, 256), &[]), 2, Some(7));
    // 8Fh is served only while the LU advertises its copy manager.
    f.lu.set_third_party_copy(false);
    invalid_field(&f.run(&inquiry(true, 0x8F, 256), &[]), 2, Some(7));
    f.lu.set_third_party_copy(true);
    // CmdDt (obsolete bit 1) is reserved for us.
    invalid_field(&f.run(&[0x12, 0x02, 0, 0, 255, 0], &[]), 1, Some(1));
}

#[test]
fn vpd_supported_pages_and_serial() {
    let f = fx(64);
    assert_eq!(f.good(&inquiry(true, 0x00, 255), &[]), vec![0, 0, 0, 7, 0x00, 0x80, 0x83, 0x8F, 0xB0, 0xB1, 0xB2]);
    assert_eq!(f.good(&inquiry(true, 0x80, 255), &[]), b"\x00\x80\x00\x06SER123".to_vec());
    // Every listed page is served.
    for p in [0x00, 0x80, 0x83, 0x8F, 0xB0, 0xB1, 0xB2] {
        let d = f.good(&inquiry(true, p, 1024), &[]);
        assert_eq!(d[1], p);
        assert_eq!(usize::from(u16::from_be_bytes([d[2], d[3]])) + 4, d.len());
    }
}

#[test]
fn vpd_device_identification_bytes() {
    let f = fx(64);
    let d = f.good(&inquiry(true, 0x83, 1024), &[]);
    let mut want = vec![0x00, 0x83, 0x00, 0x00];
    want.extend_from_slice(&[0x01, 0x03, 0x00, 0x10]);
    want.extend_from_slice(&[0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    want.extend_from_slice(&[0x51, 0x94, 0x00, 0x04, 0, 0, 0, 1]);
    let port = b"iqn.2025-01.org.oxcopy:t1,t,0x0001\0\0";
    want.extend_from_slice(&[0x53, 0x98, 0x00, port.len() as u8]);
    want.extend_from_slice(port);
    let name = b"iqn.2025-01.org.oxcopy:t1\0\0\0";
    want.extend_from_slice(&[0x53, 0xA8, 0x00, name.len() as u8]);
    want.extend_from_slice(name);
    let len = (want.len() - 4) as u16;
    want[2..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(d, want);
    assert_eq!(port.len() % 4, 0);
    assert_eq!(name.len() % 4, 0);
}

#[test]
fn vpd_block_pages_bytes() {
    let f = fx(64);
    let bl = f.good(&inquiry(true, 0xB0, 255), &[]);
    let mut want = vec![0u8; 64];
    want[1] = 0xB0;
    want[3] = 0x3C;
    want[5] = 255; // MAXIMUM COMPARE AND WRITE LENGTH
    want[6..8].copy_from_slice(&8u16.to_be_bytes()); // 4096 / 512
    want[8..12].copy_from_slice(&32768u32.to_be_bytes());
    want[12..16].copy_from_slice(&2048u32.to_be_bytes());
    want[16..20].copy_from_slice(&32768u32.to_be_bytes());
    want[20..24].copy_from_slice(&(1u32 << 20).to_be_bytes()); // MAXIMUM UNMAP LBA COUNT
    want[24..28].copy_from_slice(&256u32.to_be_bytes()); // MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
    want[28..32].copy_from_slice(&8u32.to_be_bytes()); // OPTIMAL UNMAP GRANULARITY
    want[32..36].copy_from_slice(&0x8000_0000u32.to_be_bytes()); // UGAVALID
    want[36..44].copy_from_slice(&0xFFFFu64.to_be_bytes()); // MAXIMUM WRITE SAME LENGTH
    assert_eq!(bl, want);

    let bdc = f.good(&inquiry(true, 0xB1, 255), &[]);
    assert_eq!(bdc.len(), 64);
    assert_eq!(&bdc[..6], &[0, 0xB1, 0, 0x3C, 0x00, 0x01]);
    assert!(bdc[6..].iter().all(|&b| b == 0));

    // LBPU, LBPWS, LBPWS10, LBPRZ; thin provisioned.
    assert_eq!(f.good(&inquiry(true, 0xB2, 255), &[]), vec![0, 0xB2, 0, 4, 0, 0xE4, 0x02, 0]);
    // A read-only LU is reported fully provisioned.
    let ro = fx_with(64, 512, true, None);
    assert_eq!(ro.good(&inquiry(true, 0xB2, 255), &[]), vec![0, 0xB2, 0, 4, 0, 0, 0, 0]);
    assert_eq!(&ro.good(&inquiry(true, 0xB0, 255), &[])[20..28], &[0; 8]);

    let f4 = fx_with(64, 4096, false, None);
    let bl = f4.good(&inquiry(true, 0xB0, 255), &[]);
    assert_eq!(&bl[6..20], &[0, 1, 0, 0, 0x10, 0, 0, 0, 1, 0, 0, 0, 0x10, 0]);
}

#[test]
fn missing_lun_behaviour() {
    let f = fx(64);
    let nx = nexus(1);
    let r = f.run_as(&nx, 5, &inquiry(false, 0, 96), &[]);
    assert_eq!(r.status, ScsiStatus::GOOD);
    assert_eq!(r.data_in[0], 0x7F);
    assert_eq!(r.data_in.len(), 96);
    assert_eq!(f.run_as(&nx, 5, &inquiry(true, 0, 96), &[]).data_in, vec![0x7F, 0, 0, 1, 0]);
    invalid_field(&f.run_as(&nx, 5, &inquiry(true, 0x83, 96), &[]), 2, Some(7));
    for cdb in [tur(), rw10(0x28, 0, 0, 1), vec![0xFF, 0, 0, 0, 0, 0], vec![0x83; 16]] {
        check(&f.run_as(&nx, 5, &cdb, &[]), SenseKey::ILLEGAL_REQUEST, Asc::LOGICAL_UNIT_NOT_SUPPORTED);
    }
    let r = f.run_as(&nx, 5, &report_luns(0, 64), &[]);
    assert_eq!(r.data_in, vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let r = f.run_as(&nx, 5, &[0x03, 0, 0, 0, 18, 0], &[]);
    assert_eq!(r.status, ScsiStatus::GOOD);
    let s = Sense::decode(&r.data_in).unwrap();
    assert_eq!((s.key, s.asc), (SenseKey::ILLEGAL_REQUEST, Asc::LOGICAL_UNIT_NOT_SUPPORTED));
    // An unparseable LUN is simply absent.
    let req = Request {
        nexus: &nx,
        lun: [0xC0, 0, 0, 0, 0, 0, 0, 0],
        cdb: &tur(),
        data_out: &[],
        expected_len: 0,
        cancel: &f.cancel,
    };
    check(&f.target.execute(&req), SenseKey::ILLEGAL_REQUEST, Asc::LOGICAL_UNIT_NOT_SUPPORTED);
    assert!(!f.target.lun_exists([0xC0, 0, 0, 0, 0, 0, 0, 0]));
    assert!(f.target.lun_exists(encode_lun(0)));
}

// ---- READ CAPACITY ----------------------------------------------------

#[test]
fn read_capacity_bytes() {
    let f = fx(64);
    assert_eq!(f.good(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]), vec![0, 0, 0, 63, 0, 0, 2, 0]);
    invalid_field(&f.run(&[0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0], &[]), 2, None);
    assert_eq!(f.good(&[0x25, 0, 0, 0, 0, 1, 0, 0, 1, 0], &[]).len(), 8);
    let mut rc16 = vec![0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0];
    let d = f.good(&rc16, &[]);
    let mut want = vec![0u8; 32];
    want[7] = 63;
    want[10] = 2;
    want[14] = 0xC0; // LBPME, LBPRZ: the backend deallocates and reads back zeroes
    assert_eq!(d, want);
    for a in 0..40u8 {
        rc16[13] = a;
        assert_eq!(f.good(&rc16, &[]), want[..usize::from(a).min(32)].to_vec());
    }
    rc16[9] = 1;
    invalid_field(&f.run(&rc16, &[]), 2, None);
}

#[test]
fn read_capacity_large_lu() {
    let lu = Arc::new(LogicalUnit::new(cfg(512, false), Arc::new(Huge(1 << 42))));
    let t = ScsiTarget::new(TARGET, 1, vec![(0, lu)], crate::testing::registry());
    let nx = nexus(1);
    let c = CancelToken::new();
    let run = |cdb: &[u8]| {
        t.execute(&Request { nexus: &nx, lun: encode_lun(0), cdb, data_out: &[], expected_len: 0, cancel: &c })
    };
    assert_eq!(run(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]).data_in, vec![0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 2, 0]);
    let d = run(&[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0]).data_in;
    assert_eq!(u64::from_be_bytes(d[..8].try_into().unwrap()), (1 << 33) - 1);
    // Short block descriptor saturates; long one is exact.
    let d = run(&mode_sense6(false, 0, 0x0A, 0, 255)).data_in;
    assert_eq!(&d[4..12], &[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 2, 0]);
    let d = run(&mode_sense10(true, false, 0, 0x0A, 255)).data_in;
    assert_eq!(d[4], 0x01);
    assert_eq!(&d[8..16], &((1u64 << 33).to_be_bytes()));
}

// ---- READ / WRITE -----------------------------------------------------

#[test]
fn read_write_all_sizes_roundtrip() {
    let f = fx(300);
    let data = pattern(7, 3 * 512);
    f.good(&rw6(0x0A, 10, 3), &data);
    assert_eq!(f.good(&rw6(0x08, 10, 3), &[]), data);
    f.good(&rw10(0x2A, 0, 20, 3), &data);
    assert_eq!(f.good(&rw10(0x28, 0, 20, 3), &[]), data);
    f.good(&rw12(0xAA, 0, 30, 3), &data);
    assert_eq!(f.good(&rw12(0xA8, 0, 30, 3), &[]), data);
    f.good(&rw16(0x8A, 0, 40, 3), &data);
    assert_eq!(f.good(&rw16(0x88, 0, 40, 3), &[]), data);
    let c = f.contents();
    for lba in [10usize, 20, 30, 40] {
        assert_eq!(&c[lba * 512..(lba + 3) * 512], &data[..]);
    }
    // READ (6) with 0 means 256 blocks.
    assert_eq!(f.good(&rw6(0x08, 0, 0), &[]).len(), 256 * 512);
    assert_eq!(f.run(&rw6(0x0A, 0, 0), &[]).data_out_wanted, 256 * 512);
}

#[test]
fn zero_length_and_beyond_end() {
    let f = fx(100);
    let n = 100u64;
    for op in [0x28u8, 0x2A, 0x2F, 0x2E, 0x34, 0x35] {
        let r = f.run(&rw10(op, 0, 0, 0), &[]);
        assert!(matches!(r.status, ScsiStatus::GOOD | ScsiStatus::CONDITION_MET), "op {op:02x}");
        for lba in [n as u32 + 1, 0x8000_0000, u32::MAX] {
            check(&f.run(&rw10(op, 0, lba, 0), &[]), SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE);
        }
        for i in 1..=8u16 {
            let data = vec![0xA6; usize::from(i) * 512];
            for lba in [n as u32 + 1 - u32::from(i), 0x8000_0000, u32::MAX] {
                let r = f.run(&rw10(op, 0x02 & if op == 0x2F { 0x02 } else { 0 }, lba, i), &data);
                check(&r, SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE);
            }
            if i >= 2 {
                let r = f.run(&rw10(op, 0, n as u32 - 1, i), &data);
                check(&r, SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE);
            }
        }
    }
    for op in [0x88u8, 0x8A, 0x8F, 0x8E, 0x90, 0x91] {
        for lba in [n + 1, 1 << 63, u64::MAX, 1 << 55, 1 << 54, u64::MAX - 3] {
            for len in [0u32, 1, 7, u32::MAX] {
                let r = f.run(&rw16(op, 0, lba, len), &[]);
                let s = sense(&r);
                assert_eq!(s.key, SenseKey::ILLEGAL_REQUEST);
                assert!(s.asc == Asc::LBA_OUT_OF_RANGE || s.asc == Asc::INVALID_FIELD_IN_CDB);
            }
        }
    }
    // READ (6) near the 21-bit limit.
    check(&f.run(&rw6(0x08, 0x1F_FFFF, 1), &[]), SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE);
    // The last block is fine.
    f.good(&rw16(0x88, 0, n - 1, 1), &[]);
    f.good(&rw12(0xA8, 0, n as u32 - 8, 8), &[]);
}

#[test]
fn transfer_length_limit() {
    let f = fx(100_000);
    let max = MAX_TRANSFER_BYTES / 512;
    assert_eq!(f.good(&rw16(0x88, 0, 0, max), &[]).len(), MAX_TRANSFER_BYTES as usize);
    invalid_field(&f.run(&rw16(0x88, 0, 0, max + 1), &[]), 10, None);
    invalid_field(&f.run(&rw12(0xAA, 0, 0, max + 1), &[]), 6, None);
    // VERIFY without BYTCHK moves no data: no limit.
    f.good(&rw16(0x8F, 0, 0, max + 1), &[]);
    // PRE-FETCH beyond the prefetch limit: GOOD instead of CONDITION MET.
    assert_eq!(f.run(&rw16(0x90, 0, 0, max), &[]).status, ScsiStatus::CONDITION_MET);
    assert_eq!(f.run(&rw16(0x90, 0, 0, max + 1), &[]).status, ScsiStatus::GOOD);
    assert_eq!(f.run(&rw16(0x90, 0x02, 10, 0), &[]).status, ScsiStatus::GOOD);
}

#[test]
fn protect_fields_are_invalid() {
    let f = fx(64);
    let blk = vec![0u8; 512];
    for i in 1..8u8 {
        let bit = Some(high_bit(i << 5));
        invalid_field(&f.run(&rw10(0x28, i << 5, 0, 1), &[]), 1, bit);
        invalid_field(&f.run(&rw12(0xA8, i << 5, 0, 1), &[]), 1, bit);
        invalid_field(&f.run(&rw16(0x88, i << 5, 0, 1), &[]), 1, bit);
        invalid_field(&f.run(&rw10(0x2A, i << 5, 0, 1), &blk), 1, bit);
        invalid_field(&f.run(&rw16(0x8A, i << 5, 0, 1), &blk), 1, bit);
        invalid_field(&f.run(&rw10(0x2F, i << 5 | 0x02, 0, 1), &blk), 1, bit);
        invalid_field(&f.run(&rw10(0x2E, i << 5 | 0x02, 0, 1), &blk), 1, bit);
    }
}

#[test]
fn dpo_fua_flags_and_flush() {
    let f = fx(64);
    let blk = vec![0xA6u8; 512];
    for flags in [0x10u8, 0x08, 0x18, 0x02, 0x1A] {
        f.good(&rw10(0x28, flags, 0, 1), &[]);
        f.good(&rw12(0xA8, flags, 0, 1), &[]);
        f.good(&rw16(0x88, flags, 0, 1), &[]);
    }
    let before = f.probe.flushes.load(Ordering::Relaxed);
    f.good(&rw10(0x2A, 0x10, 0, 1), &blk);
    assert_eq!(f.probe.flushes.load(Ordering::Relaxed), before, "DPO alone does not flush");
    f.good(&rw10(0x2A, 0x08, 0, 1), &blk);
    f.good(&rw12(0xAA, 0x18, 0, 1), &blk);
    f.good(&rw16(0x8A, 0x08, 0, 1), &blk);
    assert_eq!(f.probe.flushes.load(Ordering::Relaxed), before + 3);
    f.good(&rw10(0x2A, 0x02, 0, 1), &blk); // FUA_NV accepted
    f.good(&rw10(0x2E, 0x10, 0, 1), &blk); // WRITE AND VERIFY: DPO ok, always durable
    assert_eq!(f.probe.flushes.load(Ordering::Relaxed), before + 4);
    // Group numbers are accepted.
    let mut c = rw10(0x2A, 0, 0, 1);
    c[6] = 3;
    f.good(&c, &blk);
    // MODE SENSE advertises DPOFUA, RSOC the DPO/FUA usage bits.
    let ms = f.good(&mode_sense6(false, 0, 0x3F, 0, 255), &[]);
    assert_eq!(ms[2], 0x10);
    for op in [0x28u8, 0x2A, 0xA8, 0xAA, 0x88, 0x8A] {
        let d = f.good(&rsoc(false, 1, op, 0, 512), &[]);
        assert_eq!(d[5] & 0x18, 0x18, "op {op:02x}");
    }
    for op in [0x2Fu8, 0x2E, 0xAF, 0xAE, 0x8F, 0x8E] {
        let d = f.good(&rsoc(false, 1, op, 0, 512), &[]);
        assert_eq!(d[5] & 0x10, 0x10, "op {op:02x}");
    }
}

#[test]
fn write_cache_disabled_flushes_every_write() {
    let f = fx(64);
    let blk = vec![1u8; 512];
    let caching = f.good(&mode_sense6(true, 0, 0x08, 0, 255), &[]);
    let mut sel = vec![0, 0, 0, 0];
    sel.extend_from_slice(&caching[4..]);
    sel[4 + 2] &= !0x04; // WCE off
    f.good(&[0x15, 0x10, 0, 0, sel.len() as u8, 0], &sel);
    let before = f.probe.flushes.load(Ordering::Relaxed);
    f.good(&rw10(0x2A, 0, 0, 1), &blk);
    assert_eq!(f.probe.flushes.load(Ordering::Relaxed), before + 1);
    assert_eq!(f.good(&mode_sense6(true, 0, 0x08, 0, 255), &[])[6], 0);
}

// ---- Short data-out (residuals) ----------------------------------------

#[test]
fn short_data_out_rule() {
    for op in [0x2Au8, 0x2E] {
        let f = fx(64);
        f.good(&rw10(0x2A, 0, 0, 2), &vec![b'a'; 1024]);
        // EDTL 0 for a 1-block write: GOOD, nothing written.
        let r = f.run(&rw10(op, 0, 0, 1), &[]);
        assert_eq!((r.status, r.data_out_wanted), (ScsiStatus::GOOD, 512));
        assert_eq!(&f.contents()[..1024], &vec![b'a'; 1024][..]);
        // 2 blocks asked, 1 block sent: only the first block is written.
        let r = f.run(&rw10(op, 0, 0, 2), &vec![b'b'; 512]);
        assert_eq!((r.status, r.data_out_wanted), (ScsiStatus::GOOD, 1024));
        assert_eq!(&f.contents()[..512], &vec![b'b'; 512][..]);
        assert_eq!(&f.contents()[512..1024], &vec![b'a'; 512][..]);
        // 200 bytes: refused, nothing written.
        let r = f.run(&rw10(op, 0, 0, 1), &[b'c'; 200]);
        check(&r, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_INFORMATION_UNIT);
        assert_eq!(r.data_out_wanted, 512);
        assert_eq!(&f.contents()[..512], &vec![b'b'; 512][..]);
        // More than asked: only the CDB's blocks are written.
        let r = f.run(&rw10(op, 0, 0, 1), &vec![b'd'; 10000]);
        assert_eq!(r.status, ScsiStatus::GOOD);
        assert_eq!(&f.contents()[..512], &vec![b'd'; 512][..]);
        assert_eq!(&f.contents()[512..1024], &vec![b'a'; 512][..]);
    }
}

#[test]
fn data_out_wanted_per_command() {
    let f = fx(64);
    assert_eq!(f.run(&rw16(0x8A, 0, 0, 3), &[]).data_out_wanted, 1536);
    assert_eq!(f.run(&rw10(0x2F, 0x00, 0, 3), &[]).data_out_wanted, 0);
    assert_eq!(f.run(&rw10(0x2F, 0x02, 0, 3), &[]).data_out_wanted, 1536);
    assert_eq!(f.run(&rw10(0x2F, 0x06, 0, 3), &[]).data_out_wanted, 512);
    assert_eq!(f.run(&rw10(0x28, 0, 0, 3), &[]).data_out_wanted, 0);
    assert_eq!(f.run(&[0x15, 0x10, 0, 0, 24, 0], &[]).data_out_wanted, 24);
    // Even when the command fails early.
    assert_eq!(f.run(&rw10(0x2A, 0, 1000, 2), &[]).data_out_wanted, 1024);
}

// ---- VERIFY / WRITE AND VERIFY -------------------------------------------

#[test]
fn verify_modes_and_miscompare() {
    let f = fx(64);
    let data = pattern(3, 4 * 512);
    f.good(&rw10(0x2A, 0, 8, 4), &data);
    // BYTCHK 00b: medium check only, data-out ignored.
    f.good(&rw10(0x2F, 0, 8, 4), &[]);
    f.good(&rw16(0x8F, 0x10, 8, 4), &[]);
    // BYTCHK 01b.
    f.good(&rw10(0x2F, 0x02, 8, 4), &data);
    f.good(&rw12(0xAF, 0x02, 8, 4), &data);
    f.good(&rw16(0x8F, 0x12, 8, 4), &data);
    for off in [0usize, 1, 511, 512, 2047] {
        let mut bad = data.clone();
        bad[off] ^= b'X';
        for cdb in [rw10(0x2F, 0x02, 8, 4), rw12(0xAF, 0x02, 8, 4), rw16(0x8F, 0x02, 8, 4)] {
            let s = check(&f.run(&cdb, &bad), SenseKey::MISCOMPARE, Asc::MISCOMPARE_DURING_VERIFY);
            assert_eq!(s.information, Some(off as u64));
        }
    }
    // BYTCHK 11b: one block against each.
    f.good(&rw10(0x2A, 0, 20, 3), &vec![0x5A; 3 * 512]);
    f.good(&rw10(0x2F, 0x06, 20, 3), &[0x5A; 512]);
    let mut b = vec![0x5A; 3 * 512];
    b[2 * 512 + 9] = 0;
    f.good(&rw10(0x2A, 0, 20, 3), &b);
    let s = check(&f.run(&rw10(0x2F, 0x06, 20, 3), &[0x5A; 512]), SenseKey::MISCOMPARE, Asc::MISCOMPARE_DURING_VERIFY);
    assert_eq!(s.information, Some(2 * 512 + 9));
    // BYTCHK 10b is reserved.
    invalid_field(&f.run(&rw10(0x2F, 0x04, 0, 1), &[]), 1, Some(2));
    // Descriptor-format sense carries the same INFORMATION.
    set_d_sense(&f, true);
    let mut bad = data.clone();
    bad[100] ^= 1;
    let r = f.run(&rw10(0x2F, 0x02, 8, 4), &bad);
    assert_eq!(r.sense.as_ref().unwrap()[0], 0x72);
    assert_eq!(sense(&r).information, Some(100));
}

#[test]
fn write_and_verify_writes() {
    let f = fx(64);
    let data = pattern(9, 2 * 512);
    f.good(&rw10(0x2E, 0x02, 5, 2), &data);
    f.good(&rw12(0xAE, 0x00, 7, 2), &data);
    f.good(&rw16(0x8E, 0x02, 9, 2), &data);
    let c = f.contents();
    for lba in [5usize, 7, 9] {
        assert_eq!(&c[lba * 512..(lba + 2) * 512], &data[..]);
    }
    // BYTCHK 11b is not defined for WRITE AND VERIFY here.
    invalid_field(&f.run(&rw10(0x2E, 0x06, 0, 1), &data[..512]), 1, Some(2));
    f.good(&rw16(0x8E, 0x02, 0, 0), &[]);
}

// ---- Misc SBC/SPC ---------------------------------------------------------

#[test]
fn sync_prefetch_tur_startstop_prevent() {
    let f = fx(64);
    let before = f.probe.flushes.load(Ordering::Relaxed);
    f.good(&rw10(0x35, 0, 0, 0), &[]);
    f.good(&rw10(0x35, 0x02, 10, 5), &[]);
    f.good(&rw16(0x91, 0x02, 0, 64), &[]);
    assert_eq!(f.probe.flushes.load(Ordering::Relaxed), before + 3);
    check(&f.run(&rw16(0x91, 0, 60, 5), &[]), SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE);
    for cdb in [rw10(0x34, 0, 0, 1), rw10(0x34, 0x02, 0, 1), rw16(0x90, 0, 63, 1), rw16(0x90, 0x02, 0, 0)] {
        assert_eq!(f.run(&cdb, &[]).status, ScsiStatus::CONDITION_MET);
    }
    let mut grp = rw16(0x90, 0x02, 0, 1);
    grp[14] = 3;
    assert_eq!(f.run(&grp, &[]).status, ScsiStatus::CONDITION_MET);
    f.good(&tur(), &[]);
    for (b1, b3, b4) in [(0, 0, 1), (1, 0, 0), (0, 0, 3), (1, 0x0F, 0xF5), (0, 0, 0x04)] {
        f.good(&[0x1B, b1, 0, b3, b4, 0], &[]);
    }
    let before = f.probe.flushes.load(Ordering::Relaxed);
    f.good(&[0x1B, 0, 0, 0, 0, 0], &[]); // STOP flushes
    assert_eq!(f.probe.flushes.load(Ordering::Relaxed), before + 1);
    f.good(&tur(), &[]); // still ready
    f.good(&[0x1E, 0, 0, 0, 1, 0], &[]);
    f.good(&[0x1E, 0, 0, 0, 0, 0], &[]);
    invalid_field(&f.run(&[0x1E, 0, 0, 0, 2, 0], &[]), 4, Some(1));
    invalid_field(&f.run(&[0x1E, 0, 0, 0, 4, 0], &[]), 4, Some(2));
}

#[test]
fn request_sense_formats() {
    let f = fx(64);
    let fixed = f.good(&[0x03, 0, 0, 0, 252, 0], &[]);
    assert_eq!(fixed, vec![0x70, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(f.good(&[0x03, 1, 0, 0, 252, 0], &[]), vec![0x72, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(f.good(&[0x03, 0, 0, 0, 4, 0], &[]).len(), 4);
    assert!(f.good(&[0x03, 0, 0, 0, 0, 0], &[]).is_empty());
}

#[test]
fn report_luns_variants() {
    let probe = Arc::new(MemStorage::new(4096));
    let lu = Arc::new(LogicalUnit::new(cfg(512, false), probe));
    let t = ScsiTarget::new(
        TARGET,
        1,
        vec![(300, lu.clone()), (0, lu.clone()), (7, lu.clone()), (7, lu.clone()), (20000, lu)],
        crate::testing::registry(),
    );
    assert_eq!(t.lun_ids(), vec![0, 7, 300]);
    let nx = nexus(1);
    let c = CancelToken::new();
    let run = |lun: u16, cdb: &[u8]| {
        t.execute(&Request { nexus: &nx, lun: encode_lun(lun), cdb, data_out: &[], expected_len: 0, cancel: &c })
    };
    let d = run(0, &report_luns(0, 1000)).data_in;
    assert_eq!(
        d,
        vec![0, 0, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0x41, 0x2C, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(run(300, &report_luns(2, 1000)).data_in, d);
    assert_eq!(run(0, &report_luns(1, 1000)).data_in, vec![0; 8]);
    assert_eq!(run(0, &report_luns(0, 16)).data_in, d[..16].to_vec());
    invalid_field(&run(0, &report_luns(0, 15)), 6, None);
    invalid_field(&run(0, &report_luns(3, 100)), 2, Some(7));
    invalid_field(&run(0, &report_luns(0x10, 100)), 2, Some(7));
    assert_eq!(run(300, &tur()).status, ScsiStatus::GOOD);
}

#[test]
fn unsupported_opcodes_and_service_actions() {
    let f = fx(64);
    // FORMAT UNIT, SANITIZE, WRITE ATOMIC (16), variable length, vendor.
    for op in [0x04u8, 0x48, 0x9C, 0x7F, 0xFF] {
        let mut c = vec![0u8; 16];
        c[0] = op;
        check(&f.run(&c, &[]), SenseKey::ILLEGAL_REQUEST, Asc::INVALID_COMMAND_OPERATION_CODE);
    }
    // A3h/0Ah REPORT TARGET PORT GROUPS, 5Fh/07h REGISTER AND MOVE: libiscsi
    // treats field pointer 1 as "not implemented".
    invalid_field(&f.run(&[0x5F, 0x07, 0, 0, 0, 0, 0, 0, 24, 0], &[0; 24]), 1, Some(4));
    let mut rtpg = rsoc(false, 0, 0, 0, 0);
    rtpg[1] = 0x0A;
    invalid_field(&f.run(&rtpg, &[]), 1, Some(4));
    check(&f.run(&[], &[]), SenseKey::ILLEGAL_REQUEST, Asc::INVALID_COMMAND_OPERATION_CODE);
    assert_eq!(command_info(&rw10(0x2A, 0, 0, 1)).map(|i| (i.dir, i.cdb_len)), Some((DataDir::Out, 10)));
    assert_eq!(command_info(&[0x83; 16]), None);
}

// ---- CDB validation table-wide ---------------------------------------------

/// A CDB for `t` that is valid apart from what the test changes: reserved
/// bits clear, transfer lengths 0, allocation lengths modest.
fn base_cdb(t: &crate::exec::Command) -> Vec<u8> {
    let mut c = vec![0u8; t.len()];
    c[0] = t.opcode.0;
    if let Some(sa) = t.sa {
        c[1] = sa;
    }
    c
}

#[test]
fn reserved_bits_are_rejected_with_exact_pointer() {
    let f = fx(64);
    for t in COMMANDS {
        for i in 1..t.len() - 1 {
            let mut allowed = t.usage[i];
            if i == 1 && t.sa.is_some() {
                allowed |= 0x1F;
            }
            for bit in 0..8u8 {
                if allowed & (1 << bit) != 0 {
                    continue;
                }
                let mut c = base_cdb(t);
                c[i] |= 1 << bit;
                invalid_field(&f.run(&c, &[]), i as u16, Some(bit));
            }
        }
        let ctl = t.len() - 1;
        for bit in [0u8, 1, 2] {
            let mut c = base_cdb(t);
            c[ctl] |= 1 << bit;
            invalid_field(&f.run(&c, &[]), ctl as u16, Some(bit));
        }
        // Vendor-specific control bits are ignored.
        let mut c = base_cdb(t);
        c[ctl] = 0xC0;
        let r = f.run(&c, &[]);
        if r.status == ScsiStatus::CHECK_CONDITION {
            let s = sense(&r);
            assert!(s.sks != Some(SenseKeySpecific::Field { cdb: true, byte: ctl as u16, bit: Some(7) }), "{}", t.name);
        }
    }
}

#[test]
fn every_truncated_cdb_gets_proper_sense() {
    let f = fx(64);
    for t in COMMANDS {
        let full = base_cdb(t);
        for n in 0..t.len() {
            let r = f.run(&full[..n], &[]);
            let s = sense(&r);
            assert_eq!(s.key, SenseKey::ILLEGAL_REQUEST, "{} len {n}", t.name);
            assert!(
                [Asc::INVALID_FIELD_IN_CDB, Asc::INVALID_COMMAND_OPERATION_CODE].contains(&s.asc),
                "{} len {n}: {:?}",
                t.name,
                s.asc
            );
        }
        // Longer than needed is fine: trailing bytes are ignored.
        let mut long = full.clone();
        long.extend_from_slice(&[0xFF; 20]);
        let r = f.run(&long, &[]);
        let r0 = f.run(&full, &[]);
        assert_eq!(r.status, r0.status, "{}", t.name);
    }
}

// ---- MODE SENSE / SELECT ------------------------------------------------------

fn set_d_sense(f: &Fx, on: bool) {
    let cur = f.good(&mode_sense6(true, 0, 0x0A, 0, 255), &[]);
    let mut sel = vec![0, 0, 0, 0];
    sel.extend_from_slice(&cur[4..]);
    if on {
        sel[6] |= 0x04;
    } else {
        sel[6] &= !0x04;
    }
    f.good(&[0x15, 0x10, 0, 0, sel.len() as u8, 0], &sel);
}

#[test]
fn mode_sense6_all_pages_bytes() {
    let f = fx(64);
    let d = f.good(&mode_sense6(false, 0, 0x3F, 0, 255), &[]);
    let mut want = vec![55, 0, 0x10, 8, 0, 0, 0, 64, 0, 0, 2, 0];
    want.extend_from_slice(&[0x08, 0x12, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    want.extend_from_slice(&[0x0A, 0x0A, 0, 0x10, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0]);
    want.extend_from_slice(&[0x1C, 0x0A, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(d, want);
    assert_eq!(f.good(&mode_sense6(false, 0, 0x3F, 0xFF, 255), &[]), want);
    assert_eq!(f.good(&mode_sense6(false, 0, 0x3F, 0, 4), &[]), want[..4].to_vec());
    assert_eq!(f.good(&mode_sense6(false, 2, 0x3F, 0, 255), &[]), want);
    // DBD drops the block descriptor.
    let d = f.good(&mode_sense6(true, 0, 0x0A, 0, 255), &[]);
    assert_eq!(d, vec![15, 0, 0x10, 0, 0x0A, 0x0A, 0, 0x10, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0]);
    // Changeable values.
    let d = f.good(&mode_sense6(true, 1, 0x3F, 0, 255), &[]);
    assert_eq!(&d[4..8], &[0x08, 0x12, 0x04, 0]);
    assert_eq!(&d[24..36], &[0x0A, 0x0A, 0x04, 0, 0x08, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&d[36..48], &[0x1C, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn mode_sense_errors_and_10_byte() {
    let f = fx(64);
    let s = check(
        &f.run(&mode_sense6(false, 3, 0x3F, 0, 255), &[]),
        SenseKey::ILLEGAL_REQUEST,
        Asc::SAVING_PARAMETERS_NOT_SUPPORTED,
    );
    assert_eq!(s.sks, Some(SenseKeySpecific::Field { cdb: true, byte: 2, bit: Some(7) }));
    invalid_field(&f.run(&mode_sense6(false, 0, 0x01, 0, 255), &[]), 2, Some(5));
    invalid_field(&f.run(&mode_sense6(false, 0, 0x0A, 1, 255), &[]), 3, Some(7));
    let d = f.good(&mode_sense10(false, false, 0, 0x08, 1000), &[]);
    assert_eq!(&d[..8], &[0, 34, 0, 0x10, 0, 0, 0, 8]);
    assert_eq!(&d[8..16], &[0, 0, 0, 64, 0, 0, 2, 0]);
    assert_eq!(d.len(), 36);
    let d = f.good(&mode_sense10(true, false, 0, 0x08, 1000), &[]);
    assert_eq!(&d[..8], &[0, 42, 0, 0x10, 1, 0, 0, 16]);
    assert_eq!(&d[8..24], &[0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 2, 0]);
    let d = f.good(&mode_sense10(true, true, 0, 0x08, 1000), &[]);
    assert_eq!(&d[..8], &[0, 26, 0, 0x10, 0, 0, 0, 0]);
}

#[test]
fn mode_select_d_sense_and_unit_attention() {
    let f = fx(64);
    let other = nexus(2);
    f.run_as(&other, 0, &tur(), &[]); // make the other nexus known
                                      // Fixed format by default.
    let r = f.run(&rw16(0x88, 0, u64::MAX, 1), &[]);
    assert_eq!(r.sense.as_ref().unwrap()[0], 0x70);
    set_d_sense(&f, true);
    let r = f.run(&rw16(0x88, 0, u64::MAX, 1), &[]);
    assert_eq!(r.sense.as_ref().unwrap(), &vec![0x72, 0x05, 0x21, 0x00, 0, 0, 0, 0]);
    let d = f.good(&mode_sense6(true, 0, 0x0A, 0, 255), &[]);
    assert_eq!(d[6], 0x04);
    // The other nexus is told, once; the requester is not.
    f.good(&tur(), &[]);
    let r = f.run_as(&other, 0, &tur(), &[]);
    assert_eq!(r.sense.as_ref().unwrap()[0], 0x72, "UA sense follows D_SENSE");
    check(&r, SenseKey::UNIT_ATTENTION, Asc::MODE_PARAMETERS_CHANGED);
    assert_eq!(f.run_as(&other, 0, &tur(), &[]).status, ScsiStatus::GOOD);
    // Selecting the same values again changes nothing: no UA.
    set_d_sense(&f, true);
    assert_eq!(f.run_as(&other, 0, &tur(), &[]).status, ScsiStatus::GOOD);
    set_d_sense(&f, false);
    assert_eq!(f.run(&rw16(0x88, 0, u64::MAX, 1), &[]).sense.unwrap()[0], 0x70);
}

#[test]
fn mode_select_validation() {
    let f = fx(64);
    let cur = f.good(&mode_sense6(true, 0, 0x0A, 0, 255), &[]);
    let page = cur[4..].to_vec();
    let sel = |hdr: &[u8], body: &[u8]| {
        let mut v = hdr.to_vec();
        v.extend_from_slice(body);
        v
    };
    let ok = sel(&[0, 0, 0, 0], &page);
    f.good(&[0x15, 0x10, 0, 0, ok.len() as u8, 0], &ok);
    f.good(&[0x15, 0x00, 0, 0, 0, 0], &[]); // empty list needs no PF
    invalid_field(&f.run(&[0x15, 0x00, 0, 0, ok.len() as u8, 0], &ok), 1, Some(4));
    invalid_field(&f.run(&[0x15, 0x11, 0, 0, ok.len() as u8, 0], &ok), 1, Some(0));
    // Changing QERR (not changeable).
    let mut bad = ok.clone();
    bad[4 + 3] |= 0x02;
    let s = check(
        &f.run(&[0x15, 0x10, 0, 0, bad.len() as u8, 0], &bad),
        SenseKey::ILLEGAL_REQUEST,
        Asc::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    assert_eq!(s.sks, Some(SenseKeySpecific::Field { cdb: false, byte: 7, bit: Some(1) }));
    // Unknown page, wrong page length, truncated list, medium type.
    let s = check(
        &f.run(&[0x15, 0x10, 0, 0, 8, 0], &[0, 0, 0, 0, 0x02, 2, 0, 0]),
        SenseKey::ILLEGAL_REQUEST,
        Asc::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    assert_eq!(s.sks, Some(SenseKeySpecific::Field { cdb: false, byte: 4, bit: Some(5) }));
    let mut badlen = ok.clone();
    badlen[5] = 0x0B;
    badlen.push(0);
    check(
        &f.run(&[0x15, 0x10, 0, 0, badlen.len() as u8, 0], &badlen),
        SenseKey::ILLEGAL_REQUEST,
        Asc::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    check(&f.run(&[0x15, 0x10, 0, 0, 10, 0], &ok[..10]), SenseKey::ILLEGAL_REQUEST, Asc::PARAMETER_LIST_LENGTH_ERROR);
    check(&f.run(&[0x15, 0x10, 0, 0, 16, 0], &ok[..10]), SenseKey::ILLEGAL_REQUEST, Asc::PARAMETER_LIST_LENGTH_ERROR);
    check(&f.run(&[0x15, 0x10, 0, 0, 3, 0], &ok[..3]), SenseKey::ILLEGAL_REQUEST, Asc::PARAMETER_LIST_LENGTH_ERROR);
    let mut mt = ok.clone();
    mt[1] = 1;
    check(
        &f.run(&[0x15, 0x10, 0, 0, mt.len() as u8, 0], &mt),
        SenseKey::ILLEGAL_REQUEST,
        Asc::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    // A block descriptor restating the geometry is fine; changing it is not.
    let bd = sel(&[0, 0, 0, 8, 0, 0, 0, 64, 0, 0, 2, 0], &page);
    f.good(&[0x15, 0x10, 0, 0, bd.len() as u8, 0], &bd);
    let bd = sel(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x10, 0], &page);
    let s = check(
        &f.run(&[0x15, 0x10, 0, 0, bd.len() as u8, 0], &bd),
        SenseKey::ILLEGAL_REQUEST,
        Asc::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    assert_eq!(s.sks, Some(SenseKeySpecific::Field { cdb: false, byte: 9, bit: None }));
    // MODE SELECT (10) with a long descriptor.
    let mut hdr10 = vec![0, 0, 0, 0, 1, 0, 0, 16];
    hdr10.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 2, 0]);
    let s10 = sel(&hdr10, &page);
    let l = (s10.len() as u16).to_be_bytes();
    f.good(&[0x55, 0x10, 0, 0, 0, 0, 0, l[0], l[1], 0], &s10);
    // Everything is validated before anything is applied.
    let caching = f.good(&mode_sense6(true, 0, 0x08, 0, 255), &[])[4..].to_vec();
    let mut two = vec![0, 0, 0, 0];
    let mut c2 = caching.clone();
    c2[2] &= !0x04;
    two.extend_from_slice(&c2);
    let mut p2 = page.clone();
    p2[3] |= 0x02;
    two.extend_from_slice(&p2);
    check(
        &f.run(&[0x15, 0x10, 0, 0, two.len() as u8, 0], &two),
        SenseKey::ILLEGAL_REQUEST,
        Asc::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    assert_eq!(f.good(&mode_sense6(true, 0, 0x08, 0, 255), &[])[6], 0x04, "WCE untouched");
}

#[test]
fn software_write_protect() {
    let f = fx(64);
    let cur = f.good(&mode_sense6(true, 0, 0x0A, 0, 255), &[]);
    let mut sel = vec![0, 0, 0, 0];
    sel.extend_from_slice(&cur[4..]);
    sel[8] |= 0x08; // SWP
    f.good(&[0x15, 0x10, 0, 0, sel.len() as u8, 0], &sel);
    assert_eq!(f.good(&mode_sense6(true, 0, 0x3F, 0, 255), &[])[2] & 0x80, 0x80);
    f.good(&rw10(0x28, 0, 0, 1), &[]);
    check(&f.run(&rw10(0x2A, 0, 0, 1), &[0; 512]), SenseKey::DATA_PROTECT, Asc::SOFTWARE_WRITE_PROTECTED);
    sel[8] &= !0x08;
    f.good(&[0x15, 0x10, 0, 0, sel.len() as u8, 0], &sel);
    f.good(&rw10(0x2A, 0, 0, 1), &[0; 512]);
}

#[test]
fn read_only_lu() {
    let f = fx_with(64, 512, true, None);
    let blk = vec![1u8; 512];
    for cdb in [
        rw6(0x0A, 0, 1),
        rw10(0x2A, 0, 0, 1),
        rw12(0xAA, 0, 0, 1),
        rw16(0x8A, 0, 0, 1),
        rw10(0x2E, 0, 0, 1),
        rw12(0xAE, 0, 0, 1),
        rw16(0x8E, 0x02, 0, 1),
    ] {
        check(&f.run(&cdb, &blk), SenseKey::DATA_PROTECT, Asc::WRITE_PROTECTED);
    }
    assert!(f.contents().iter().all(|&b| b == 0));
    f.good(&rw10(0x28, 0, 0, 1), &[]);
    f.good(&rw10(0x2F, 0x02, 0, 1), &[0; 512]);
    f.good(&rw10(0x35, 0, 0, 0), &[]);
    assert_eq!(f.good(&mode_sense6(false, 0, 0x3F, 0, 255), &[])[2], 0x90);
    assert_eq!(f.good(&mode_sense10(false, false, 0, 0x3F, 255), &[])[3], 0x90);
}

// ---- REPORT SUPPORTED OPERATION CODES -------------------------------------

#[test]
fn rsoc_all_commands() {
    let f = fx(64);
    let d = f.good(&rsoc(false, 0, 0, 0, 65535), &[]);
    let len = u32::from_be_bytes(d[..4].try_into().unwrap()) as usize;
    assert_eq!(len, COMMANDS.len() * 8);
    assert_eq!(d.len(), 4 + len);
    // READ CAPACITY (16) entry: opcode 9Eh, SA 10h, SERVACTV, CDB length 16.
    let e = d[4..].chunks(8).find(|e| e[0] == 0x9E).unwrap();
    assert_eq!(e, &[0x9E, 0, 0, 0x10, 0, 0x01, 0, 16]);
    let e = d[4..].chunks(8).find(|e| e[0] == 0x28).unwrap();
    assert_eq!(e, &[0x28, 0, 0, 0, 0, 0x00, 0, 10]);
    // With timeouts descriptors.
    let d = f.good(&rsoc(true, 0, 0, 0, 65535), &[]);
    let len = u32::from_be_bytes(d[..4].try_into().unwrap()) as usize;
    assert_eq!(len, COMMANDS.len() * 20);
    for e in d[4..].chunks(20) {
        assert_eq!(e[5] & 0x02, 0x02);
        assert_eq!(&e[8..10], &[0, 0x0A]);
    }
    assert_eq!(f.good(&rsoc(false, 0, 0, 0, 10), &[]).len(), 10);
}

/// An LU with its copy manager disabled neither lists nor serves the
/// third-party copy commands (83h/84h): it answers as for any command it
/// does not implement, so hosts fall back instead of half-offloading.
#[test]
fn copy_commands_follow_third_party_copy_switch() {
    let f = fx(64);
    f.lu.set_third_party_copy(false);
    let d = f.good(&rsoc(false, 0, 0, 0, 65535), &[]);
    assert!(d[4..].chunks(8).all(|e| e[0] != 0x83 && e[0] != 0x84), "RSOC lists a copy command");
    let d = f.good(&rsoc(false, 2, 0x83, 0x10, 512), &[]);
    assert_eq!(d[1] & 0x07, 0x01, "POPULATE TOKEN reported as supported");
    let xcopy = [0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    check(&f.run(&xcopy, &[]), SenseKey::ILLEGAL_REQUEST, Asc::INVALID_COMMAND_OPERATION_CODE);
    let rrti = [0x84, 0x07, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0];
    check(&f.run(&rrti, &[]), SenseKey::ILLEGAL_REQUEST, Asc::INVALID_COMMAND_OPERATION_CODE);
    f.lu.set_third_party_copy(true);
    let d = f.good(&rsoc(false, 0, 0, 0, 65535), &[]);
    assert!(d[4..].chunks(8).any(|e| e[0] == 0x83 && e[3] == 0x10));
    assert_eq!(f.good(&rsoc(false, 2, 0x83, 0x10, 512), &[])[1] & 0x07, 0x03);
}

#[test]
fn rsoc_one_command() {
    let f = fx(64);
    let d = f.good(&rsoc(false, 1, 0x28, 0, 512), &[]);
    assert_eq!(d, vec![0, 0x03, 0, 10, 0x28, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x04]);
    let d = f.good(&rsoc(true, 2, 0x9E, 0x10, 512), &[]);
    assert_eq!(&d[..6], &[0, 0x83, 0, 16, 0x9E, 0x10]);
    assert_eq!(d.len(), 4 + 16 + 12);
    assert_eq!(&d[20..24], &[0, 0x0A, 0, 0]);
    let d = f.good(&rsoc(false, 3, 0x9E, 0x10, 512), &[]);
    assert_eq!(d[1], 0x03);
    let d = f.good(&rsoc(false, 3, 0x2A, 0x77, 512), &[]);
    assert_eq!(d[1], 0x03, "option 3 ignores the SA of a non-SA opcode");
    // Unsupported commands.
    assert_eq!(f.good(&rsoc(false, 1, 0x48, 0, 512), &[]), vec![0, 0x01, 0, 0]);
    assert_eq!(f.good(&rsoc(true, 2, 0x9E, 0x13, 512), &[]), vec![0, 0x01, 0, 0]);
    assert_eq!(f.good(&rsoc(false, 3, 0x83, 0x01, 512), &[]), vec![0, 0x01, 0, 0]);
    // Asking the wrong way.
    invalid_field(&f.run(&rsoc(false, 1, 0x9E, 0x10, 512), &[]), 3, None);
    invalid_field(&f.run(&rsoc(false, 2, 0x28, 0, 512), &[]), 3, None);
    invalid_field(&f.run(&rsoc(false, 4, 0x28, 0, 512), &[]), 2, Some(2));
    // libiscsi's OneCommand loop: every listed command answers.
    let all = f.good(&rsoc(false, 0, 0, 0, 65535), &[]);
    for e in all[4..].chunks(8) {
        let servactv = e[5] & 1 != 0;
        let sa = u16::from_be_bytes([e[2], e[3]]);
        let opt = if servactv { 2 } else { 1 };
        let d = f.good(&rsoc(false, opt, e[0], sa, 65535), &[]);
        assert_eq!(d[1] & 0x07, 0x03);
        assert_eq!(d[4], e[0]);
        assert_eq!(u16::from_be_bytes([d[2], d[3]]), u16::from_be_bytes([e[6], e[7]]));
        assert!(sa == 0 || servactv);
    }
}

// ---- Unit attentions and task management -------------------------------------

#[test]
fn lun_reset_unit_attention() {
    let f = fx(64);
    let a = nexus(1);
    let b = nexus(2);
    f.run_as(&a, 0, &tur(), &[]);
    f.run_as(&b, 0, &tur(), &[]);
    assert_eq!(f.target.lun_reset(&a, encode_lun(0)), TmfResult::Complete);
    assert_eq!(f.target.lun_reset(&a, encode_lun(9)), TmfResult::LunDoesNotExist);
    // INQUIRY and REPORT LUNS neither report nor clear it.
    assert_eq!(f.run_as(&a, 0, &inquiry(false, 0, 96), &[]).status, ScsiStatus::GOOD);
    assert_eq!(f.run_as(&a, 0, &report_luns(0, 64), &[]).status, ScsiStatus::GOOD);
    let s = check(
        &f.run_as(&a, 0, &rw10(0x28, 0, 0, 1), &[]),
        SenseKey::UNIT_ATTENTION,
        Asc::BUS_DEVICE_RESET_FUNCTION_OCCURRED,
    );
    assert_eq!(s.sks, None);
    assert_eq!(f.run_as(&a, 0, &tur(), &[]).status, ScsiStatus::GOOD);
    // REQUEST SENSE reports and clears it for the other nexus.
    let r = f.run_as(&b, 0, &[0x03, 0, 0, 0, 18, 0], &[]);
    assert_eq!(r.status, ScsiStatus::GOOD);
    let s = Sense::decode(&r.data_in).unwrap();
    assert_eq!((s.key, s.asc), (SenseKey::UNIT_ATTENTION, Asc::BUS_DEVICE_RESET_FUNCTION_OCCURRED));
    assert_eq!(f.run_as(&b, 0, &tur(), &[]).status, ScsiStatus::GOOD);
    // A nexus that never spoke to the LU is not interrupted.
    assert_eq!(f.run_as(&nexus(3), 0, &tur(), &[]).status, ScsiStatus::GOOD);
    // An unsupported opcode does not consume the UA.
    f.target.lun_reset(&a, encode_lun(0));
    check(&f.run_as(&a, 0, &[0xFF; 16], &[]), SenseKey::ILLEGAL_REQUEST, Asc::INVALID_COMMAND_OPERATION_CODE);
    check(&f.run_as(&a, 0, &tur(), &[]), SenseKey::UNIT_ATTENTION, Asc::BUS_DEVICE_RESET_FUNCTION_OCCURRED);
}

#[test]
fn lun_reset_restores_mode_defaults() {
    let f = fx(64);
    set_d_sense(&f, true);
    f.target.lun_reset(&f.nx, encode_lun(0));
    let r = f.run(&tur(), &[]);
    assert_eq!(r.sense.as_ref().unwrap()[0], 0x70, "D_SENSE back to default");
    assert_eq!(f.good(&mode_sense6(true, 0, 0x0A, 0, 255), &[])[6], 0);
}

#[test]
fn target_reset_and_nexus_loss() {
    let f = fx(64);
    f.run(&tur(), &[]);
    assert_eq!(f.target.target_reset(&f.nx), TmfResult::Complete);
    assert_eq!(f.lu.pending_unit_attentions(&f.nx), vec![Asc::POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED]);
    check(&f.run(&tur(), &[]), SenseKey::UNIT_ATTENTION, Asc::POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED);
    f.good(&tur(), &[]);
    f.lu.establish_unit_attention(Asc::CAPACITY_DATA_HAS_CHANGED);
    f.target.nexus_lost(&f.nx);
    f.good(&tur(), &[]);
    f.lu.establish_unit_attention(Asc::CAPACITY_DATA_HAS_CHANGED);
    check(&f.run(&tur(), &[]), SenseKey::UNIT_ATTENTION, Asc::CAPACITY_DATA_HAS_CHANGED);
}

// ---- Errors, cancellation, hooks ---------------------------------------------

#[test]
fn storage_errors_map_to_sense() {
    let f = fx_with(64, 512, false, Some(StorageErrorKind::Io));
    let s = check(&f.run(&rw10(0x28, 0, 5, 1), &[]), SenseKey::MEDIUM_ERROR, Asc::UNRECOVERED_READ_ERROR);
    assert_eq!(s.information, Some(5));
    check(&f.run(&rw10(0x2A, 0, 5, 1), &[0; 512]), SenseKey::MEDIUM_ERROR, Asc::WRITE_ERROR);
    check(&f.run(&rw10(0x2F, 0x02, 5, 1), &[0; 512]), SenseKey::MEDIUM_ERROR, Asc::UNRECOVERED_READ_ERROR);
    let f = fx_with(64, 512, false, Some(StorageErrorKind::NoSpace));
    check(&f.run(&rw10(0x2A, 0, 5, 1), &[0; 512]), SenseKey::DATA_PROTECT, Asc::SPACE_ALLOCATION_FAILED_WRITE_PROTECT);
    let f = fx_with(64, 512, false, Some(StorageErrorKind::OutOfRange));
    check(&f.run(&rw10(0x28, 0, 5, 1), &[]), SenseKey::HARDWARE_ERROR, Asc::INTERNAL_TARGET_FAILURE);
}

#[test]
fn cancelled_command_is_aborted() {
    let f = fx(64);
    f.cancel.cancel();
    let r = f.run(&rw10(0x28, 0, 0, 1), &[]);
    assert_eq!((r.status, r.sense), (ScsiStatus::TASK_ABORTED, None));
    let r = f.run(&rw10(0x2A, 0, 0, 1), &[1; 512]);
    assert_eq!(r.status, ScsiStatus::TASK_ABORTED);
}

#[derive(Debug, Default)]
struct Recorder(parking_lot::Mutex<Vec<(u64, u64, usize)>>);

impl WriteHook for Recorder {
    fn before_write(&self, lu: &dyn Unit, lba: u64, blocks: u64) -> Result<(), oxcopy_copy::Refusal> {
        // The exclusive range lock is held while the hook runs.
        let held = lu.range_locks().held();
        self.0.lock().push((lba, blocks, held));
        if lba == 13 {
            return Err(Sense::new(SenseKey::DATA_PROTECT, Asc::WRITE_PROTECTED).into());
        }
        Ok(())
    }
}

#[test]
fn write_hook_and_range_locks() {
    let f = fx(64);
    let rec = Arc::new(Recorder::default());
    f.lu.set_write_hook(Some(rec.clone()));
    f.good(&rw10(0x2A, 0, 4, 2), &[7; 1024]);
    f.good(&rw10(0x2A, 0, 0, 0), &[]);
    check(&f.run(&rw10(0x2A, 0, 13, 1), &[7; 512]), SenseKey::DATA_PROTECT, Asc::WRITE_PROTECTED);
    assert_eq!(*rec.0.lock(), vec![(4, 2, 1), (13, 1, 1)]);
    assert!(f.contents()[13 * 512..14 * 512].iter().all(|&b| b == 0));
    assert_eq!(f.lu.range_locks().held(), 0);
    // A held exclusive range blocks writers but the guard is released after.
    let g = f.lu.range_locks().lock(0, 64, LockMode::Shared);
    assert!(f.lu.range_locks().try_lock(0, 1, LockMode::Exclusive).is_none());
    drop(g);
    f.lu.set_write_hook(None);
    f.good(&rw10(0x2A, 0, 13, 1), &[7; 512]);
}

#[test]
fn four_k_blocks() {
    let f = fx_with(16, 4096, false, None);
    let data = pattern(1, 8192);
    f.good(&rw10(0x2A, 0, 14, 2), &data);
    assert_eq!(f.good(&rw16(0x88, 0, 14, 2), &[]), data);
    assert_eq!(f.good(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]), vec![0, 0, 0, 15, 0, 0, 0x10, 0]);
    check(&f.run(&rw10(0x2A, 0, 0, 1), &[0; 512]), SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_INFORMATION_UNIT);
}

// ---- Property tests ------------------------------------------------------------

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn opcode() -> impl Strategy<Value = u8> {
        prop_oneof![
            3 => proptest::sample::select(COMMANDS.iter().map(|t| t.opcode.0).collect::<Vec<_>>()),
            1 => any::<u8>(),
        ]
    }

    fn cdb() -> impl Strategy<Value = Vec<u8>> {
        (opcode(), proptest::collection::vec(any::<u8>(), 0..40)).prop_map(|(op, mut rest)| {
            rest.insert(0, op);
            rest
        })
    }

    fn well_formed(r: &CommandResult) -> Result<(), TestCaseError> {
        prop_assert!(matches!(r.status, ScsiStatus::GOOD | ScsiStatus::CHECK_CONDITION | ScsiStatus::CONDITION_MET));
        if r.status == ScsiStatus::CHECK_CONDITION {
            let raw = r.sense.as_deref().unwrap_or(&[]);
            prop_assert!(raw.len() >= 8 && raw.len() <= 252);
            let s = Sense::decode(raw);
            prop_assert!(s.is_some());
            let s = s.unwrap();
            prop_assert!(s.key != SenseKey::NO_SENSE);
            prop_assert!(r.data_in.is_empty());
        } else {
            prop_assert!(r.sense.is_none());
        }
        prop_assert!(r.data_in.len() <= MAX_TRANSFER_BYTES as usize);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        #[test]
        fn random_cdbs_never_panic(cdb in cdb(), data in proptest::collection::vec(any::<u8>(), 0..2048),
                                   lun in 0u16..3, ro in any::<bool>()) {
            let f = fx_with(32, 512, ro, None);
            let r = f.run_as(&f.nx.clone(), lun, &cdb, &data);
            well_formed(&r)?;
            // And again with descriptor sense.
            set_d_sense(&f, true);
            let r = f.run_as(&f.nx.clone(), lun, &cdb, &data);
            well_formed(&r)?;
            // Sense from a LUN without an LU is always fixed format.
            if let Some(s) = &r.sense { prop_assert_eq!(s[0], if lun == 0 { 0x72 } else { 0x70 }); }
        }

        #[test]
        fn random_raw_luns_never_panic(lun in any::<[u8; 8]>(), cdb in cdb()) {
            let f = fx(8);
            let req = Request { nexus: &f.nx, lun, cdb: &cdb, data_out: &[], expected_len: 0, cancel: &f.cancel };
            well_formed(&f.target.execute(&req))?;
        }

        #[test]
        fn read_write_roundtrip(ops in proptest::collection::vec(
            (0u64..80, 0u32..12, any::<u8>(), 0usize..4, any::<bool>()), 1..40)) {
            let blocks = 64u64;
            let f = fx(blocks);
            let mut model = vec![0u8; (blocks * 512) as usize];
            for (lba, n, seed, size, fua) in ops {
                let data = pattern(u64::from(seed), n as usize * 512);
                let flags = if fua { 0x08 } else { 0 };
                let cdb = match size {
                    0 => rw6(0x0A, lba as u32, n as u8),
                    1 => rw10(0x2A, flags, lba as u32, n as u16),
                    2 => rw12(0xAA, flags, lba as u32, n),
                    _ => rw16(0x8A, flags, lba, n),
                };
                // READ/WRITE (6) transfer 256 blocks for 0.
                let eff = if size == 0 && n == 0 { 256 } else { u64::from(n) };
                let r = f.run(&cdb, &data);
                let in_range = lba < blocks && lba + eff <= blocks;
                if in_range {
                    prop_assert_eq!(r.status, ScsiStatus::GOOD);
                    let start = (lba * 512) as usize;
                    let len = data.len().min((eff * 512) as usize);
                    model[start..start + len].copy_from_slice(&data[..len]);
                } else {
                    let s = sense(&r);
                    prop_assert_eq!(s.asc, Asc::LBA_OUT_OF_RANGE);
                }
                let back = f.run(&rw16(0x88, 0, 0, blocks as u32), &[]);
                prop_assert_eq!(&back.data_in, &model);
            }
            prop_assert_eq!(f.contents(), model);
        }
    }
}

#[test]
fn model_types_are_thread_safe() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ScsiTarget>();
    assert_send_sync::<LogicalUnit>();
    assert_send_sync::<RangeLocks>();
}

#[test]
fn concurrent_io_from_many_nexuses() {
    let f = Arc::new(fx(64));
    let threads: Vec<_> = (0..4u8)
        .map(|i| {
            let f = Arc::clone(&f);
            std::thread::spawn(move || {
                let nx = nexus(10 + i);
                for k in 0..50u8 {
                    let data = vec![i ^ k; 8 * 512];
                    let r = f.run_as(&nx, 0, &rw10(0x2A, 0, 8, 8), &data);
                    assert_eq!(r.status, ScsiStatus::GOOD);
                    let r = f.run_as(&nx, 0, &rw10(0x28, 0, 8, 8), &[]);
                    // Whole-command atomicity under the range lock.
                    assert!(r.data_in.iter().all(|&b| b == r.data_in[0]));
                }
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().is_ok());
    }
    assert_eq!(f.lu.range_locks().held(), 0);
}

// --- try_execute: the no-waiting path a transport runs inline ------------

fn try_run(target: &ScsiTarget, nx: &Nexus, cdb: &[u8], data: &[u8], cancel: &CancelToken) -> Option<CommandResult> {
    let req = Request { nexus: nx, lun: encode_lun(0), cdb, data_out: data, expected_len: data.len() as u32, cancel };
    target.try_execute(&req)
}

fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x28;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

#[test]
fn try_execute_answers_reads_that_need_no_waiting_and_declines_everything_else() {
    let lu = Arc::new(LogicalUnit::new(cfg(512, false), Arc::new(MemStorage::new(64 * 512))));
    let target = ScsiTarget::new(TARGET, 1, vec![(0, lu.clone())], crate::testing::registry());
    let (nx, cancel) = (nexus(1), CancelToken::new());
    let data = pattern(3, 4 * 512);
    let mut w10 = [0x2A, 0, 0, 0, 0, 8, 0, 0, 4, 0];
    let run = |cdb: &[u8], d: &[u8]| {
        target.execute(&Request {
            nexus: &nx,
            lun: encode_lun(0),
            cdb,
            data_out: d,
            expected_len: d.len() as u32,
            cancel: &cancel,
        })
    };
    assert_eq!(run(&w10, &data).status, ScsiStatus::GOOD);

    // Every READ size, same bytes as `execute`.
    let r6 = [0x08, 0, 0, 8, 4, 0];
    let r12 = [0xA8, 0, 0, 0, 0, 8, 0, 0, 0, 4, 0, 0];
    let r16 = [0x88, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 4, 0, 0];
    for cdb in [&read10(8, 4)[..], &r6, &r12, &r16] {
        let r = try_run(&target, &nx, cdb, &[], &cancel).expect("a read of memory needs no waiting");
        assert_eq!(r.status, ScsiStatus::GOOD, "{cdb:02x?}");
        assert_eq!(r.data_in, data, "{cdb:02x?}");
    }
    // A write that must be durable (FUA) waits for a flush: declined, and
    // nothing done.
    w10[5] = 16;
    let mut fua = w10;
    fua[1] = 0x08;
    assert!(try_run(&target, &nx, &fua, &data, &cancel).is_none(), "WRITE with FUA is not run inline");
    assert!(try_run(&target, &nx, &[0; 6], &[], &cancel).is_none(), "TEST UNIT READY is neither READ nor WRITE");
    assert_eq!(run(&read10(16, 4), &[]).data_in, vec![0u8; 2048], "the declined write did not happen");
    // A command holding the range (here a reader): a write would wait.
    {
        let _r = lu.range_locks().lock(17, 1, crate::range_lock::LockMode::Shared);
        assert!(try_run(&target, &nx, &w10, &data, &cancel).is_none());
    }
    assert_eq!(run(&read10(16, 4), &[]).data_in, vec![0u8; 2048]);
    // A plain write into memory is done inline.
    let r = try_run(&target, &nx, &w10, &data, &cancel).expect("a write into memory needs no waiting");
    assert_eq!(r.status, ScsiStatus::GOOD);
    assert_eq!(run(&read10(16, 4), &[]).data_in, data);
    // A read that fails its checks ends inline like any other.
    let r = try_run(&target, &nx, &read10(62, 4), &[], &cancel).expect("out of range is answered");
    check(&r, SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE);
    // A write holding the range: the read would wait, so it is declined.
    {
        let _w = lu.range_locks().lock(10, 1, crate::range_lock::LockMode::Exclusive);
        assert!(try_run(&target, &nx, &read10(8, 4), &[], &cancel).is_none());
        assert!(try_run(&target, &nx, &read10(12, 4), &[], &cancel).is_some(), "a disjoint read still runs");
    }
    assert!(try_run(&target, &nx, &read10(8, 4), &[], &cancel).is_some());
    // A pending unit attention is not taken by a declined command, and is
    // reported by a read like by any other command.
    lu.reset(Asc::POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED);
    assert!(try_run(&target, &nx, &[0; 6], &[], &cancel).is_none());
    let r = try_run(&target, &nx, &read10(8, 4), &[], &cancel).expect("the unit attention is an answer");
    check(&r, SenseKey::UNIT_ATTENTION, Asc::POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED);
    assert_eq!(run(&read10(8, 4), &[]).status, ScsiStatus::GOOD, "reported once");
}

#[test]
fn try_execute_declines_a_read_the_storage_cannot_do_without_waiting() {
    // `Probe` keeps the default `try_read_at` (always "would wait").
    let f = fx(64);
    f.good(&[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0], &pattern(1, 512));
    assert!(try_run(&f.target, &f.nx, &read10(0, 1), &[], &f.cancel).is_none());
    assert_eq!(f.good(&read10(0, 1), &[]), pattern(1, 512));
}
