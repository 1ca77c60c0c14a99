//! EXTENDED COPY and RECEIVE COPY RESULTS through `ScsiTarget::execute`,
//! without sockets: access control across targets of one registry, sense
//! formats, cancellation, write hooks, write protection, backend failures,
//! CSCD block lengths.

use crate::copy::test_support::{contents, naa, nexus, run};
use crate::registry::{AccessList, LuRegistry};
use crate::*;
use oxcopy_storage::{Capabilities, MemStorage, Storage, StorageError, StorageErrorKind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

const OPEN: &str = "iqn.2026-11.test:open";
const PRIVATE: &str = "iqn.2026-11.test:private";
const HOST: &str = "iqn.2026-11.test:host";
const MIB: usize = 1 << 20;

/// A store that can be told to fail reads and writes.
#[derive(Debug)]
struct Flaky {
    inner: MemStorage,
    fail: AtomicBool,
    copies: AtomicUsize,
}

impl Storage for Flaky {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> oxcopy_storage::Result<()> {
        if self.fail.load(Ordering::Relaxed) {
            return Err(StorageError::new(StorageErrorKind::Io, "injected"));
        }
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> oxcopy_storage::Result<()> {
        if self.fail.load(Ordering::Relaxed) {
            return Err(StorageError::new(StorageErrorKind::Io, "injected"));
        }
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> oxcopy_storage::Result<()> {
        Ok(())
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn copy_range(
        &self,
        dst_offset: u64,
        src: &dyn Storage,
        src_offset: u64,
        len: u64,
    ) -> oxcopy_storage::Result<oxcopy_storage::CopyReport> {
        self.copies.fetch_add(1, Ordering::Relaxed);
        oxcopy_storage::generic_copy_range(self, dst_offset, src, src_offset, len)
    }
}

struct Fx {
    registry: Arc<LuRegistry>,
    open: ScsiTarget,
    private: ScsiTarget,
    /// OPEN LUN 0, 1 (512) and 2 (4096); PRIVATE LUN 0.
    lus: Vec<(Arc<LogicalUnit>, Arc<Flaky>)>,
    cancel: CancelToken,
}

fn lu(last: u8, bytes: usize, bs: u32, read_only: bool) -> (Arc<LogicalUnit>, Arc<Flaky>) {
    let data = contents(last, 31, bytes);
    let st = Arc::new(Flaky {
        inner: MemStorage::from_bytes(&data),
        fail: AtomicBool::new(false),
        copies: AtomicUsize::new(0),
    });
    let cfg = LuConfig { block_size: bs, read_only, naa: naa(last), ..LuConfig::default() };
    (Arc::new(LogicalUnit::new(cfg, st.clone() as Arc<dyn Storage>)), st)
}

fn fx() -> Fx {
    let lus = vec![
        lu(1, 4 * MIB, 512, false),
        lu(2, 4 * MIB, 512, false),
        lu(3, 4 * MIB, 4096, false),
        lu(4, MIB, 512, false),
    ];
    let registry = Arc::new(crate::testing::registry());
    registry
        .add_target(OPEN, AccessList::Any, vec![(0, lus[0].0.clone()), (1, lus[1].0.clone()), (2, lus[2].0.clone())])
        .unwrap();
    registry
        .add_target(PRIVATE, AccessList::Only(vec!["iqn.2026-11.test:victim".into()]), vec![(0, lus[3].0.clone())])
        .unwrap();
    let open = ScsiTarget::in_registry(OPEN, 1, registry.clone());
    let private = ScsiTarget::in_registry(PRIVATE, 1, registry.clone());
    Fx { registry, open, private, lus, cancel: CancelToken::new() }
}

impl Fx {
    fn run(&self, t: &ScsiTarget, nx: &Nexus, lun: u16, cdb: &[u8], data: &[u8]) -> CommandResult {
        run(t, nx, lun, cdb, data, &self.cancel)
    }
    fn xcopy(&self, lun: u16, list: &[u8]) -> CommandResult {
        self.run(&self.open, &nexus(HOST, OPEN), lun, &xcopy_cdb(list.len() as u32), list)
    }
    fn bytes(&self, i: usize) -> Vec<u8> {
        self.lus[i].1.inner.contents()
    }
}

fn xcopy_cdb(len: u32) -> Vec<u8> {
    let mut c = vec![0u8; 16];
    c[0] = 0x83;
    c[10..14].copy_from_slice(&len.to_be_bytes());
    c
}

fn rcr(sa: u8, list_id: u32, alloc: u32) -> Vec<u8> {
    let mut c = vec![0u8; 16];
    c[0] = 0x84;
    c[1] = sa;
    if sa == 5 {
        c[2..6].copy_from_slice(&list_id.to_be_bytes());
    } else {
        c[2] = list_id as u8;
    }
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

fn cscd(naa_last: u8, block_len: u32) -> Vec<u8> {
    let mut d = vec![0u8; 32];
    d[0] = 0xE4;
    d[4] = 0x01;
    d[5] = 0x03;
    d[7] = 16;
    d[8..12].copy_from_slice(&[0x60, 0xAC, 0xDE, 0x48]);
    d[23] = naa_last;
    d[29..32].copy_from_slice(&block_len.to_be_bytes()[1..]);
    d
}

fn b2b(src: u16, dst: u16, dc: bool, blocks: u16, s: u64, t: u64) -> Vec<u8> {
    let mut d = vec![0u8; 28];
    d[0] = 0x02;
    d[1] = if dc { 2 } else { 0 };
    d[3] = 0x18;
    d[4..6].copy_from_slice(&src.to_be_bytes());
    d[6..8].copy_from_slice(&dst.to_be_bytes());
    d[10..12].copy_from_slice(&blocks.to_be_bytes());
    d[12..20].copy_from_slice(&s.to_be_bytes());
    d[20..28].copy_from_slice(&t.to_be_bytes());
    d
}

fn list(id: u8, usage: u8, cscds: &[Vec<u8>], segs: &[Vec<u8>]) -> Vec<u8> {
    let c = cscds.concat();
    let s = segs.concat();
    let mut l = vec![0u8; 16];
    l[0] = id;
    l[1] = usage << 3;
    l[2..4].copy_from_slice(&(c.len() as u16).to_be_bytes());
    l[8..12].copy_from_slice(&(s.len() as u32).to_be_bytes());
    l.extend(c);
    l.extend(s);
    l
}

fn sense(r: &CommandResult) -> Sense {
    assert_eq!(r.status, ScsiStatus::CHECK_CONDITION, "{r:?}");
    Sense::decode(r.sense.as_deref().unwrap()).unwrap()
}

/// The CVE-2020-28374 attack at the SCSI layer: a CSCD naming the LU of a
/// target whose allow-list does not admit the initiator resolves to
/// nothing; both directions fail and neither LU changes.
#[test]
fn unreachable_lu_is_never_touched() {
    let f = fx();
    let (open_before, private_before) = (f.bytes(0), f.bytes(3));
    for (s, d) in [(0u16, 1u16), (1, 0)] {
        let l = list(1, 0, &[cscd(1, 0), cscd(4, 0)], &[b2b(s, d, false, 64, 0, 0)]);
        let s = sense(&f.xcopy(0, &l));
        assert_eq!((s.key, s.asc), (SenseKey::COPY_ABORTED, Asc::UNREACHABLE_COPY_TARGET));
        assert_eq!(s.command_specific.unwrap_or(0), 0, "segment 0 (fixed format: a zero CSI decodes as absent)");
        // The segment pointer names the offending CSCD (the second, at byte 48).
        assert_eq!(s.sks, Some(SenseKeySpecific::Raw([0x80, 0, 48])));
    }
    assert_eq!(f.bytes(0), open_before);
    assert_eq!(f.bytes(3), private_before);
    assert_eq!(f.lus[3].1.copies.load(Ordering::Relaxed), 0);
    // The victim itself, from the open target, may copy.
    let victim = nexus("iqn.2026-11.test:victim", OPEN);
    let l = list(1, 0, &[cscd(4, 0), cscd(1, 0)], &[b2b(0, 1, false, 64, 0, 0)]);
    assert_eq!(f.run(&f.open, &victim, 0, &xcopy_cdb(l.len() as u32), &l).status, ScsiStatus::GOOD);
    assert_eq!(&f.bytes(0)[..32768], &private_before[..32768]);
    // And on its own target, FFFFh means its own LU.
    let l = list(2, 0, &[cscd(4, 0)], &[b2b(0xFFFF, 0, false, 1, 0, 1)]);
    let on_private = nexus("iqn.2026-11.test:victim", PRIVATE);
    assert_eq!(f.run(&f.private, &on_private, 0, &xcopy_cdb(l.len() as u32), &l).status, ScsiStatus::GOOD);
}

/// Descriptor-format sense (D_SENSE=1) carries the segment index in a
/// command-specific information descriptor; RECEIVE COPY RESULTS returns
/// the same bytes.
#[test]
fn descriptor_sense_and_failure_details() {
    let f = fx();
    let nx = nexus(HOST, OPEN);
    // MODE SENSE (6) the Control page, set D_SENSE, MODE SELECT it back.
    let r = f.run(&f.open, &nx, 0, &[0x1A, 0x08, 0x0A, 0, 255, 0], &[]);
    let mut page = r.data_in.clone();
    page[0] = 0;
    page[4 + 2] |= 0x04;
    let sel = [0x15, 0x10, 0, 0, page.len() as u8, 0];
    assert_eq!(f.run(&f.open, &nx, 0, &sel, &page).status, ScsiStatus::GOOD);
    let _ = f.run(&f.open, &nx, 0, &[0, 0, 0, 0, 0, 0], &[]); // MODE PARAMETERS CHANGED, if any
    let l = list(9, 0, &[cscd(1, 0)], &[b2b(0, 0, false, 1, 0, 0), b2b(0, 0, false, 1, 1 << 40, 0)]);
    let r = f.xcopy(0, &l);
    let raw = r.sense.clone().unwrap();
    assert_eq!(raw[0], 0x72, "descriptor format");
    let s = sense(&r);
    assert_eq!(
        (s.key, s.asc, s.command_specific),
        (SenseKey::COPY_ABORTED, Asc::COPY_TARGET_DEVICE_NOT_REACHABLE, Some(1))
    );
    let d = f.run(&f.open, &nx, 0, &rcr(4, 9, 1024), &[]);
    assert_eq!(d.status, ScsiStatus::GOOD);
    assert_eq!(d.data_in[56], 0x02);
    assert_eq!(&d.data_in[60..], &raw[..]);
    assert_eq!(u32::from_be_bytes(d.data_in[0..4].try_into().unwrap()) as usize, 56 + raw.len());
}

/// A cancelled command ends with TASK ABORTED; LID4 status says 60h
/// (terminated) with the SCSI status it got.
#[test]
fn cancelled_copy_reports_terminated() {
    let f = fx();
    f.cancel.cancel();
    let before = f.bytes(1);
    let l = list(3, 0, &[cscd(1, 0), cscd(2, 0)], &[b2b(0, 1, false, 8, 0, 0)]);
    assert_eq!(f.xcopy(0, &l).status, ScsiStatus::TASK_ABORTED);
    assert_eq!(f.bytes(1), before);
    let r = f.run(&f.open, &nexus(HOST, OPEN), 0, &rcr(5, 3, 64), &[]);
    let d = r.data_in;
    assert_eq!((d[4], d[5], d[12]), (0x00, 0x60, 0x40));
    assert_eq!(&d[16..24], &[0; 8], "nothing transferred");
}

#[derive(Debug, Default)]
struct Hook {
    calls: parking_lot::Mutex<Vec<(u64, u64)>>,
    refuse: AtomicBool,
}

impl WriteHook for Hook {
    fn before_write(&self, _lu: &dyn Unit, lba: u64, blocks: u64) -> Result<(), oxcopy_copy::Refusal> {
        self.calls.lock().push((lba, blocks));
        if self.refuse.load(Ordering::Relaxed) {
            return Err(Sense::new(SenseKey::ABORTED_COMMAND, Asc::INSUFFICIENT_RESOURCES).into());
        }
        Ok(())
    }
}

/// Copy destinations go through the write hook (point-in-time tokens), and
/// a refusal ends the copy with the hook's sense and the segment index.
#[test]
fn write_hook_sees_copy_destinations() {
    let f = fx();
    let hook = Arc::new(Hook::default());
    f.lus[1].0.set_write_hook(Some(hook.clone()));
    let l = list(4, 0, &[cscd(1, 0), cscd(2, 0)], &[b2b(0, 1, false, 10, 0, 100)]);
    assert_eq!(f.xcopy(0, &l).status, ScsiStatus::GOOD);
    assert_eq!(*hook.calls.lock(), vec![(100, 10)]);
    hook.refuse.store(true, Ordering::Relaxed);
    let s = sense(&f.xcopy(0, &l));
    assert_eq!(
        (s.key, s.asc, s.command_specific.unwrap_or(0)),
        (SenseKey::ABORTED_COMMAND, Asc::INSUFFICIENT_RESOURCES, 0)
    );
}

/// Write-protected destinations and failing backends: COPY ABORTED / THIRD
/// PARTY DEVICE FAILURE with the segment index.
#[test]
fn write_protect_and_backend_failures() {
    let f = fx();
    let (ro, ro_store) = lu(9, MIB, 512, true);
    f.registry.add_target("iqn.2026-11.test:ro", AccessList::Any, vec![(0, ro)]).unwrap();
    let before = ro_store.inner.contents();
    let l = list(5, 0, &[cscd(1, 0), cscd(9, 0)], &[b2b(0, 1, false, 8, 0, 0)]);
    let s = sense(&f.xcopy(0, &l));
    assert_eq!(
        (s.key, s.asc, s.command_specific.unwrap_or(0)),
        (SenseKey::COPY_ABORTED, Asc::THIRD_PARTY_DEVICE_FAILURE, 0)
    );
    assert_eq!(ro_store.inner.contents(), before);
    // A backend failure in the second segment: the first one is done.
    f.lus[1].1.fail.store(true, Ordering::Relaxed);
    let l = list(6, 0, &[cscd(1, 0), cscd(2, 0)], &[b2b(0, 0, false, 8, 0, 64), b2b(0, 1, false, 8, 0, 0)]);
    let s = sense(&f.xcopy(0, &l));
    assert_eq!((s.key, s.asc, s.command_specific), (SenseKey::COPY_ABORTED, Asc::THIRD_PARTY_DEVICE_FAILURE, Some(1)));
    let st = f.run(&f.open, &nexus(HOST, OPEN), 0, &rcr(0, 6, 12), &[]).data_in;
    assert_eq!(
        (st[4], u16::from_be_bytes([st[5], st[6]]), u32::from_be_bytes(st[8..12].try_into().unwrap())),
        (2, 1, 4096)
    );
}

/// A CSCD's DISK BLOCK LENGTH is the unit of its LBAs: a 4096-byte view of
/// a 512-byte LU, and the inexact check uses it.
#[test]
fn cscd_block_length_is_honoured() {
    let f = fx();
    // Source LU 0 seen in 4096-byte blocks: LBA 2 = byte 8192.
    let l = list(7, 0, &[cscd(1, 4096), cscd(2, 0)], &[b2b(0, 1, false, 1, 2, 10)]);
    assert_eq!(f.xcopy(0, &l).status, ScsiStatus::GOOD);
    assert_eq!(&f.bytes(1)[5120..5120 + 4096], &f.bytes(0)[8192..8192 + 4096]);
    // 3 blocks of 1536 bytes to a 4096-byte LU: not whole destination blocks.
    let l = list(8, 0, &[cscd(1, 1536), cscd(3, 0)], &[b2b(0, 1, false, 3, 0, 0)]);
    let s = sense(&f.xcopy(0, &l));
    assert_eq!((s.key, s.asc), (SenseKey::COPY_ABORTED, Asc::UNEXPECTED_INEXACT_SEGMENT));
    // 8 blocks of 1536 = 12288 = 3 × 4096: exact.
    let l = list(8, 0, &[cscd(1, 1536), cscd(3, 0)], &[b2b(0, 1, false, 8, 0, 0)]);
    assert_eq!(f.xcopy(0, &l).status, ScsiStatus::GOOD);
    assert_eq!(&f.bytes(2)[..12288], &f.bytes(0)[..12288]);
    // A peripheral device type other than block.
    let mut tape = cscd(2, 0);
    tape[1] = 0x01;
    let s = sense(&f.xcopy(0, &list(8, 0, &[cscd(1, 0), tape], &[b2b(0, 1, false, 1, 0, 0)])));
    assert_eq!(s.asc, Asc::INCORRECT_COPY_TARGET_DEVICE_TYPE);
    // A huge block length makes a 02h segment longer than MAXIMUM SEGMENT LENGTH.
    let l = list(8, 0, &[cscd(1, 0xFF_FFFF), cscd(2, 0xFF_FFFF)], &[b2b(0, 1, false, 0xFFFF, 0, 0)]);
    assert_eq!(sense(&f.xcopy(0, &l)).asc, Asc::COPY_SEGMENT_GRANULARITY_VIOLATION);
}

/// Per-LUN metrics count reads and writes; copy metrics count bytes.
#[test]
fn metrics_follow_commands() {
    let f = fx();
    let nx = nexus(HOST, OPEN);
    let mut w = vec![0u8; 16];
    w[0] = 0x8A;
    w[13] = 2;
    assert_eq!(f.run(&f.open, &nx, 1, &w, &[7u8; 1024]).status, ScsiStatus::GOOD);
    let mut r = w.clone();
    r[0] = 0x88;
    assert_eq!(f.run(&f.open, &nx, 1, &r, &[]).status, ScsiStatus::GOOD);
    let l = list(10, 3, &[cscd(1, 0), cscd(2, 0)], &[b2b(0, 1, false, 8, 0, 0)]);
    let mut l = l;
    l[0] = 0;
    assert_eq!(f.xcopy(0, &l).status, ScsiStatus::GOOD);
    let m = f.registry.metrics();
    assert_eq!(m.lun(OPEN, 1).snapshot(), (1, 1024, 1, 1024));
    assert_eq!(m.copy_bytes(oxcopy_storage::CopyMethod::ReadWrite), 4096);
    assert_eq!(m.copy_commands(crate::metrics::CopyCommand::ExtendedCopy, true), 1);
}

fn prout(sa: u8, pr_type: u8, key: u64, sa_key: u64) -> (Vec<u8>, Vec<u8>) {
    let cdb = vec![0x5F, sa, pr_type, 0, 0, 0, 0, 0, 24, 0];
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    (cdb, p)
}

fn register_seg(dst: u16, key: u64, sa_key: u64) -> Vec<u8> {
    let mut d = vec![0u8; 28];
    d[0] = 0x14;
    d[3] = 0x18;
    d[6..8].copy_from_slice(&dst.to_be_bytes());
    d[8..16].copy_from_slice(&key.to_be_bytes());
    d[16..24].copy_from_slice(&sa_key.to_be_bytes());
    d
}

/// Reservations bind copies: the copy manager reaches LUs with the issuing
/// nexus's rights, and a 14h segment registers that nexus.
#[test]
fn reservations_and_register_key_segments() {
    const WRITE_EXCLUSIVE: u8 = 0x01;
    const WRITE_EXCLUSIVE_REGISTRANTS_ONLY: u8 = 0x05;
    let f = fx();
    let owner = nexus("iqn.2026-11.test:owner", OPEN);
    let host = nexus(HOST, OPEN);
    let run = |nx: &Nexus, lun: u16, (cdb, p): (Vec<u8>, Vec<u8>)| f.run(&f.open, nx, lun, &cdb, &p).status;
    assert_eq!(run(&owner, 1, prout(0x00, 0, 0, 1)), ScsiStatus::GOOD);
    assert_eq!(run(&owner, 1, prout(0x01, WRITE_EXCLUSIVE, 1, 0)), ScsiStatus::GOOD);
    let before = f.bytes(1);
    // Writing LU 1 by copy is refused (sent to LU 0, which is not reserved) ...
    let l = list(1, 0, &[cscd(1, 0), cscd(2, 0)], &[b2b(0, 1, false, 8, 0, 0)]);
    let s = sense(&f.xcopy(0, &l));
    assert_eq!((s.key, s.asc), (SenseKey::COPY_ABORTED, Asc::THIRD_PARTY_DEVICE_FAILURE));
    assert_eq!(f.bytes(1), before);
    // ... reading it is not (WRITE EXCLUSIVE).
    let l = list(2, 0, &[cscd(2, 0), cscd(1, 0)], &[b2b(0, 1, false, 8, 0, 0)]);
    assert_eq!(f.xcopy(0, &l).status, ScsiStatus::GOOD);
    // Registrants-only: a 14h segment registers the host's nexus to LU 1,
    // after which the copy in the same list may write.
    assert_eq!(run(&owner, 1, prout(0x02, WRITE_EXCLUSIVE, 1, 0)), ScsiStatus::GOOD, "RELEASE");
    assert_eq!(run(&owner, 1, prout(0x01, WRITE_EXCLUSIVE_REGISTRANTS_ONLY, 1, 0)), ScsiStatus::GOOD);
    let l = list(3, 0, &[cscd(1, 0), cscd(2, 0)], &[b2b(0, 1, false, 8, 0, 0)]);
    assert_eq!(sense(&f.xcopy(0, &l)).asc, Asc::THIRD_PARTY_DEVICE_FAILURE);
    let l = list(4, 0, &[cscd(1, 0), cscd(2, 0)], &[register_seg(1, 0, 0x77), b2b(0, 1, false, 8, 0, 0)]);
    assert_eq!(f.xcopy(0, &l).status, ScsiStatus::GOOD);
    assert_eq!(&f.bytes(1)[..4096], &f.bytes(0)[..4096]);
    let keys = f.run(&f.open, &host, 1, &[0x5E, 0x00, 0, 0, 0, 0, 0, 1, 0, 0], &[]).data_in;
    assert_eq!(u32::from_be_bytes(keys[4..8].try_into().unwrap()), 16, "two registrations");
    assert!(keys[8..].chunks(8).any(|k| k == 0x77u64.to_be_bytes()));
    // A wrong key: REGISTER is refused, so is the segment.
    let l = list(5, 0, &[cscd(2, 0)], &[register_seg(0, 0x1234, 0x78)]);
    let s = sense(&f.xcopy(0, &l));
    assert_eq!(
        (s.key, s.asc, s.command_specific.unwrap_or(0)),
        (SenseKey::COPY_ABORTED, Asc::THIRD_PARTY_DEVICE_FAILURE, 0)
    );
}
