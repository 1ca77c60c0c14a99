//! Tests of the NVM command set: parse and execute on memory and on files.

use super::*;
use crate::model::CopyLimits;
use crate::namespace::NsUnit;
use crate::nvm_edge::NvmeRefusal;
use crate::wire::command::{Sgl, SglType};
use crate::wire::nvm::{
    copy_sqe, dsm_sqe, encode_copy_ranges, encode_dsm_ranges, flush_sqe, rw_sqe, write_zeroes_sqe, CopyRange, DsmRange,
    SOPT_FCO,
};
use oxcopy_copy::{NoMetrics, Refusal, WriteHook};
use oxcopy_storage::{Capabilities, FileStorage, MemStorage, OpenOptions, StorageError, StorageErrorKind};
use parking_lot::Mutex;
use proptest::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Deterministic bytes.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn info(nsid: u32, bs: u32, blocks: u64) -> NamespaceInfo {
    NamespaceInfo {
        nsid,
        block_size: bs,
        blocks,
        nguid: [nsid as u8; 16],
        uuid: [0; 16],
        read_only: false,
        deallocate: true,
        copy: CopyLimits { mssrl: 1024, mcl: 4096, max_ranges: 16 },
    }
}

/// A namespace over patterned memory.
fn mem_ns(nsid: u32, bs: u32, blocks: u64) -> (Arc<Namespace>, Arc<MemStorage>, Arc<NsUnit>) {
    let len = (blocks * u64::from(bs)) as usize;
    let mem = Arc::new(MemStorage::from_bytes(&pattern(u64::from(nsid), len)));
    let mut id = [0x77; 16];
    id[15] = nsid as u8;
    let unit = Arc::new(NsUnit::new(id, bs, mem.clone()));
    let ns = Arc::new(Namespace::new(info(nsid, bs, blocks), unit.clone()).unwrap());
    (ns, mem, unit)
}

/// A subsystem of namespaces and the controller state a command runs with.
struct Env {
    namespaces: Vec<Arc<Namespace>>,
    cancel: CancelToken,
    formats: u16,
    chunk: u64,
    max_nsid: u32,
}

impl Env {
    fn new(namespaces: Vec<Arc<Namespace>>) -> Self {
        Self { namespaces, cancel: CancelToken::new(), formats: 0b101, chunk: 0, max_nsid: 32 }
    }
    fn ns(&self, nsid: u32) -> Option<Arc<Namespace>> {
        self.namespaces.iter().find(|n| n.nsid() == nsid).cloned()
    }
    /// Parse and execute, as the daemon does.
    fn run(&self, sqe: &Sqe, data: &[u8]) -> IoOutcome {
        let ns = self.ns(sqe.nsid());
        let cmd = match parse_io(sqe, ns.as_ref().map(|n| n.info())) {
            Ok(c) => c,
            Err(s) => return IoOutcome::failed(s),
        };
        let Some(ns) = ns else { panic!("parsed without a namespace") };
        let lookup = |id: u32| self.ns(id);
        let ctx = IoContext {
            cancel: &self.cancel,
            lookup: &lookup,
            max_nsid: self.max_nsid,
            copy_formats_enabled: self.formats,
            metrics: &NoMetrics,
            chunk_bytes: self.chunk,
        };
        execute(&ns, &cmd, Bytes::copy_from_slice(data), &ctx)
    }
}

fn st(o: &IoOutcome) -> Status {
    o.status
}

fn write_sqe(nsid: u32, slba: u64, blocks: u32, bs: u32) -> Sqe {
    rw_sqe(Opcode::WRITE, 1, nsid, slba, blocks, bs, false).unwrap()
}
fn read_sqe(nsid: u32, slba: u64, blocks: u32, bs: u32) -> Sqe {
    rw_sqe(Opcode::READ, 1, nsid, slba, blocks, bs, false).unwrap()
}

fn copy_cmd(nsid: u32, sdlba: u64, format: CopyFormat, ranges: &[CopyRange]) -> (Sqe, Vec<u8>) {
    let sqe = copy_sqe(9, nsid, sdlba, ranges.len(), format, false).unwrap();
    (sqe, encode_copy_ranges(format, ranges).unwrap())
}

fn r(snsid: u32, slba: u64, blocks: u32) -> CopyRange {
    CopyRange::new(snsid, slba, blocks).unwrap()
}

// ---- Read, Write, Flush ----

#[test]
fn write_then_read_both_block_sizes() {
    for bs in [512u32, 4096] {
        let (ns, mem, _) = mem_ns(1, bs, 64);
        let env = Env::new(vec![ns]);
        let data = pattern(99, 5 * bs as usize);
        let before = mem.contents();
        let w = env.run(&write_sqe(1, 10, 5, bs), &data);
        assert_eq!(w, IoOutcome::success());
        let got = env.run(&read_sqe(1, 10, 5, bs), &[]);
        assert_eq!(got.status, Status::SUCCESS);
        assert_eq!(got.data.as_deref(), Some(&data[..]));
        let after = mem.contents();
        let (a, b) = (10 * bs as usize, 15 * bs as usize);
        assert_eq!(&after[..a], &before[..a]);
        assert_eq!(&after[b..], &before[b..]);
        // FUA and Flush succeed on memory.
        let fua = rw_sqe(Opcode::WRITE, 2, 1, 63, 1, bs, true).unwrap();
        assert_eq!(st(&env.run(&fua, &data[..bs as usize])), Status::SUCCESS);
        assert_eq!(st(&env.run(&flush_sqe(3, 1), &[])), Status::SUCCESS);
    }
}

#[test]
fn read_write_field_errors() {
    let (ns, mem, unit) = mem_ns(1, 512, 64);
    let env = Env::new(vec![ns]);
    let before = mem.contents();
    // Past the end, by one block and by overflow.
    assert_eq!(st(&env.run(&read_sqe(1, 60, 5, 512), &[])), Status::LBA_OUT_OF_RANGE);
    assert_eq!(st(&env.run(&read_sqe(1, 64, 1, 512), &[])), Status::LBA_OUT_OF_RANGE);
    assert_eq!(st(&env.run(&read_sqe(1, u64::MAX, 1, 512), &[])), Status::LBA_OUT_OF_RANGE);
    assert_eq!(st(&env.run(&write_sqe(1, u64::MAX - 1, 4, 512), &[0; 2048])), Status::LBA_OUT_OF_RANGE);
    // SGL length other than (NLB+1) blocks.
    let mut s = read_sqe(1, 0, 2, 512);
    s.set_sgl(Sgl { addr: 0, len: 512, kind: SglType::TRANSPORT_DATA_BLOCK });
    assert_eq!(st(&env.run(&s, &[])), Status::DATA_SGL_LENGTH_INVALID);
    // Data shorter than the SGL said (transport bug): refused, nothing written.
    assert_eq!(st(&env.run(&write_sqe(1, 0, 2, 512), &[1; 512])), Status::DATA_SGL_LENGTH_INVALID);
    // PRINFO, STC, CETYPE, DEAC on a write: invalid fields.
    for bits in [1u32 << 29, 1 << 26, 1 << 24, 1 << 16, 1 << 25, 1 << 20] {
        let mut s = write_sqe(1, 0, 1, 512);
        s.set_cdw(12, s.cdw(12) | bits);
        assert_eq!(st(&env.run(&s, &[0; 512])), Status::INVALID_FIELD, "{bits:#x}");
    }
    // Unknown namespace, unsupported opcode (before the namespace check).
    assert_eq!(st(&env.run(&read_sqe(2, 0, 1, 512), &[])), Status::INVALID_NAMESPACE);
    assert_eq!(st(&env.run(&Sqe::new(Opcode::WRITE_UNCORRECTABLE, 1, 2), &[])), Status::INVALID_OPCODE);
    assert_eq!(st(&env.run(&Sqe::new(Opcode(0x7E), 1, 1), &[])), Status::INVALID_OPCODE);
    // Write protected by the unit at execution time.
    unit.set_write_protected(true);
    assert_eq!(st(&env.run(&write_sqe(1, 0, 1, 512), &[0; 512])), Status::NAMESPACE_WRITE_PROTECTED);
    assert_eq!(st(&env.run(&read_sqe(1, 0, 1, 512), &[])), Status::SUCCESS);
    assert_eq!(mem.contents(), before);
}

#[test]
fn read_only_namespace_refuses_writes_at_parse() {
    let mut i = info(1, 512, 8);
    i.read_only = true;
    let sqes = [
        write_sqe(1, 0, 1, 512),
        write_zeroes_sqe(1, 1, 0, 1, false, false).unwrap(),
        dsm_sqe(1, 1, 1, DsmAttributes::AD).unwrap(),
        copy_sqe(1, 1, 0, 1, CopyFormat::F0, false).unwrap(),
    ];
    for s in sqes {
        assert_eq!(parse_io(&s, Some(&i)), Err(Status::NAMESPACE_WRITE_PROTECTED), "{s:?}");
    }
    assert!(parse_io(&read_sqe(1, 0, 1, 512), Some(&i)).is_ok());
    assert!(parse_io(&dsm_sqe(1, 1, 1, DsmAttributes::IDR).unwrap(), Some(&i)).is_ok());
}

// ---- Compare, Verify ----

#[test]
fn compare_matches_and_fails() {
    let (ns, mem, _) = mem_ns(1, 512, 16);
    let env = Env::new(vec![ns]);
    let cur = mem.contents()[1024..2048].to_vec();
    let cmp = rw_sqe(Opcode::COMPARE, 1, 1, 2, 2, 512, false).unwrap();
    assert_eq!(st(&env.run(&cmp, &cur)), Status::SUCCESS);
    let mut bad = cur.clone();
    bad[1000] ^= 1;
    assert_eq!(st(&env.run(&cmp, &bad)), Status::COMPARE_FAILURE);
    assert_eq!(st(&env.run(&cmp, &cur[..512])), Status::DATA_SGL_LENGTH_INVALID);
    let fua = rw_sqe(Opcode::COMPARE, 1, 1, 2, 2, 512, true).unwrap();
    assert_eq!(st(&env.run(&fua, &cur)), Status::SUCCESS);
}

/// Memory that fails reads or writes touching a byte range.
#[derive(Debug)]
struct Faulty {
    inner: MemStorage,
    bad: (u64, u64),
    reads: AtomicBool,
    writes: AtomicBool,
}

impl Faulty {
    fn new(bytes: &[u8], bad: (u64, u64)) -> Self {
        Self { inner: MemStorage::from_bytes(bytes), bad, reads: AtomicBool::new(true), writes: AtomicBool::new(false) }
    }
    fn hits(&self, off: u64, len: u64) -> bool {
        off < self.bad.1 && self.bad.0 < off + len
    }
}

impl Storage for Faulty {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> oxcopy_storage::Result<()> {
        if self.reads.load(Ordering::Relaxed) && self.hits(offset, buf.len() as u64) {
            return Err(StorageError::new(StorageErrorKind::Io, "bad sector"));
        }
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> oxcopy_storage::Result<()> {
        if self.writes.load(Ordering::Relaxed) && self.hits(offset, buf.len() as u64) {
            return Err(StorageError::new(StorageErrorKind::Io, "write fault"));
        }
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> oxcopy_storage::Result<()> {
        Ok(())
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
}

fn faulty_ns(nsid: u32, blocks: u64, bad: (u64, u64)) -> (Arc<Namespace>, Arc<Faulty>) {
    let f = Arc::new(Faulty::new(&pattern(u64::from(nsid), (blocks * 512) as usize), bad));
    let unit = Arc::new(NsUnit::new([nsid as u8; 16], 512, f.clone()));
    (Arc::new(Namespace::new(info(nsid, 512, blocks), unit).unwrap()), f)
}

#[test]
fn verify_reads_the_range() {
    let (ns, _) = faulty_ns(1, 8192, (4096 * 512, 4097 * 512));
    let env = Env::new(vec![ns]);
    let v = |slba, blocks| rw_sqe(Opcode::VERIFY, 1, 1, slba, blocks, 512, false).unwrap();
    assert_eq!(v(0, 1).sgl().len, 0);
    assert_eq!(st(&env.run(&v(0, 4096), &[])), Status::SUCCESS);
    assert_eq!(st(&env.run(&v(4000, 200), &[])), Status::UNRECOVERED_READ_ERROR);
    assert_eq!(st(&env.run(&v(8000, 193), &[])), Status::LBA_OUT_OF_RANGE);
    assert_eq!(st(&env.run(&read_sqe(1, 4090, 10, 512), &[])), Status::UNRECOVERED_READ_ERROR);
    env.cancel.cancel();
    assert_eq!(st(&env.run(&v(0, 10), &[])), Status::ABORT_REQUESTED);
}

// ---- Write Zeroes, Dataset Management ----

#[test]
fn write_zeroes_with_and_without_deac() {
    for deac in [false, true] {
        // 65536 blocks: the largest NLB, zeroed in bounded chunks.
        let (ns, mem, _) = mem_ns(1, 512, 70_000);
        let env = Env::new(vec![ns]);
        let before = mem.contents();
        let s = write_zeroes_sqe(1, 1, 100, 65_536, deac, true).unwrap();
        assert_eq!(st(&env.run(&s, &[])), Status::SUCCESS);
        let after = mem.contents();
        let (a, b) = (100 * 512, (100 + 65_536) * 512);
        assert!(after[a..b].iter().all(|&x| x == 0));
        assert_eq!(&after[..a], &before[..a]);
        assert_eq!(&after[b..], &before[b..]);
        let past = write_zeroes_sqe(1, 1, 69_999, 2, deac, false).unwrap();
        assert_eq!(st(&env.run(&past, &[])), Status::LBA_OUT_OF_RANGE);
    }
}

#[test]
fn dsm_deallocates_only_after_every_range_checks() {
    let (ns, mem, _) = mem_ns(1, 512, 1000);
    let env = Env::new(vec![ns]);
    let before = mem.contents();
    let ranges = [
        DsmRange { cattr: 0, blocks: 10, slba: 0 },
        DsmRange { cattr: 0xFFFF, blocks: 0, slba: 5000 }, // empty: not checked against the size? it is
        DsmRange { cattr: 0, blocks: 5, slba: 990 },
    ];
    // An empty range past the end still counts as out of range: checked first.
    let s = dsm_sqe(1, 1, 3, DsmAttributes::AD).unwrap();
    assert_eq!(st(&env.run(&s, &encode_dsm_ranges(&ranges))), Status::LBA_OUT_OF_RANGE);
    assert_eq!(mem.contents(), before, "nothing deallocated");
    let ranges = [ranges[0], DsmRange { cattr: 0, blocks: 0, slba: 3 }, ranges[2]];
    let data = encode_dsm_ranges(&ranges);
    // Without AD: advisory, nothing changes.
    let idr = dsm_sqe(1, 1, 3, DsmAttributes::IDR.union(DsmAttributes::IDW)).unwrap();
    assert_eq!(st(&env.run(&idr, &data)), Status::SUCCESS);
    assert_eq!(mem.contents(), before);
    // Short data.
    assert_eq!(st(&env.run(&s, &data[..40])), Status::DATA_SGL_LENGTH_INVALID);
    let mut short = s;
    short.set_sgl(Sgl { addr: 0, len: 47, kind: SglType::TRANSPORT_DATA_BLOCK });
    assert_eq!(st(&env.run(&short, &data)), Status::DATA_SGL_LENGTH_INVALID);
    assert_eq!(st(&env.run(&s, &data)), Status::SUCCESS);
    let after = mem.contents();
    assert!(after[..5120].iter().all(|&x| x == 0));
    assert_eq!(&after[5120..990 * 512], &before[5120..990 * 512]);
    assert!(after[990 * 512..995 * 512].iter().all(|&x| x == 0));
    assert_eq!(&after[995 * 512..], &before[995 * 512..]);
}

#[test]
fn dsm_on_a_namespace_without_deallocation_is_advisory() {
    let mem = Arc::new(MemStorage::from_bytes(&pattern(3, 8 * 512)));
    let mut i = info(1, 512, 8);
    i.deallocate = false;
    let ns = Arc::new(Namespace::new(i, Arc::new(NsUnit::new([1; 16], 512, mem.clone()))).unwrap());
    let env = Env::new(vec![ns]);
    let before = mem.contents();
    let s = dsm_sqe(1, 1, 1, DsmAttributes::AD).unwrap();
    let data = encode_dsm_ranges(&[DsmRange { cattr: 0, blocks: 8, slba: 0 }]);
    assert_eq!(st(&env.run(&s, &data)), Status::SUCCESS);
    assert_eq!(mem.contents(), before);
    // Write Zeroes with DEAC still zeroes.
    assert_eq!(st(&env.run(&write_zeroes_sqe(1, 1, 0, 8, true, false).unwrap(), &[])), Status::SUCCESS);
    assert!(mem.contents().iter().all(|&x| x == 0));
}

// ---- Write hook ----

/// Records every write it is asked about; refuses when told to; cancels a
/// token on its `cancel_at`-th call.
#[derive(Debug, Default)]
struct Recorder {
    calls: Mutex<Vec<(u64, u64)>>,
    refuse: AtomicBool,
    cancel: Mutex<Option<(CancelToken, usize)>>,
}

impl WriteHook for Recorder {
    fn before_write(&self, _unit: &dyn Unit, lba: u64, blocks: u64) -> Result<(), Refusal> {
        let n = {
            let mut c = self.calls.lock();
            c.push((lba, blocks));
            c.len()
        };
        if let Some((tok, at)) = &*self.cancel.lock() {
            if n == *at {
                tok.cancel();
            }
        }
        if self.refuse.load(Ordering::Relaxed) {
            return Err(NvmeRefusal(Status::ACCESS_DENIED).into());
        }
        Ok(())
    }
}

#[test]
fn the_write_hook_sees_every_write_and_can_refuse() {
    let (ns, mem, unit) = mem_ns(1, 512, 256);
    let hook = Arc::new(Recorder::default());
    unit.set_write_hook(Some(hook.clone()));
    let env = Env::new(vec![ns]);
    assert_eq!(st(&env.run(&write_sqe(1, 3, 2, 512), &[7; 1024])), Status::SUCCESS);
    assert_eq!(st(&env.run(&write_zeroes_sqe(1, 1, 10, 4, false, false).unwrap(), &[])), Status::SUCCESS);
    let dsm = encode_dsm_ranges(&[DsmRange { cattr: 0, blocks: 2, slba: 20 }]);
    assert_eq!(st(&env.run(&dsm_sqe(1, 1, 1, DsmAttributes::AD).unwrap(), &dsm)), Status::SUCCESS);
    let (c, d) = copy_cmd(1, 100, CopyFormat::F0, &[r(0, 0, 8), r(0, 50, 4)]);
    assert_eq!(st(&env.run(&c, &d)), Status::SUCCESS);
    assert_eq!(*hook.calls.lock(), vec![(3, 2), (10, 4), (20, 2), (100, 8), (108, 4)]);
    // A refusal fails the write with the hook's status; nothing is written.
    hook.refuse.store(true, Ordering::Relaxed);
    let before = mem.contents();
    assert_eq!(st(&env.run(&write_sqe(1, 30, 1, 512), &[1; 512])), Status::ACCESS_DENIED);
    let (c, d) = copy_cmd(1, 200, CopyFormat::F0, &[r(0, 0, 8)]);
    let o = env.run(&c, &d);
    assert_eq!((o.status, o.result), (Status::ACCESS_DENIED, 0));
    assert_eq!(mem.contents(), before);
    assert_eq!(unit.range_locks().held(), 0);
}

// ---- Copy ----

/// The destination after copying `ranges` (source blocks of `src`) to
/// `sdlba` of `dst`, block size `bs`.
fn model_copy(src: &[u8], dst: &mut [u8], sdlba: u64, ranges: &[CopyRange], bs: usize) {
    let mut at = sdlba as usize * bs;
    for r in ranges {
        let (s, n) = (r.slba as usize * bs, r.blocks() as usize * bs);
        let chunk = src[s..s + n].to_vec();
        dst[at..at + n].copy_from_slice(&chunk);
        at += n;
    }
}

#[test]
fn copy_format0_many_ranges() {
    for bs in [512u32, 4096] {
        let (ns, mem, _) = mem_ns(1, bs, 4096);
        let mut env = Env::new(vec![ns]);
        env.chunk = u64::from(bs) * 3; // several engine chunks per range
        let ranges: Vec<CopyRange> = (0..16).map(|i| r(0, 7 * i * i + 1, (i as u32 % 5) * 3 + 1)).collect();
        let mut model = mem.contents();
        let before = model.clone();
        model_copy(&before, &mut model, 3000, &ranges, bs as usize);
        let (c, d) = copy_cmd(1, 3000, CopyFormat::F0, &ranges);
        assert_eq!(env.run(&c, &d), IoOutcome::success());
        assert_eq!(mem.contents(), model, "block size {bs}");
    }
}

#[test]
fn copy_format0_overlap_is_allowed_and_copies_in_range_order() {
    let (ns, mem, _) = mem_ns(1, 512, 256);
    let env = Env::new(vec![ns]);
    // Destination 10.. overlaps range 0's source 0..20 (memmove-like).
    let ranges = [r(0, 0, 20), r(0, 100, 5)];
    let before = mem.contents();
    let mut model = before.clone();
    model.copy_within(0..20 * 512, 10 * 512);
    model.copy_within(100 * 512..105 * 512, 30 * 512);
    let (c, d) = copy_cmd(1, 10, CopyFormat::F0, &ranges);
    assert_eq!(st(&env.run(&c, &d)), Status::SUCCESS);
    assert_eq!(mem.contents(), model);
}

#[test]
fn copy_format2_across_namespaces() {
    let (a, ma, _) = mem_ns(1, 512, 512);
    let (b, mb, _) = mem_ns(2, 512, 512);
    let (c4k, _, _) = mem_ns(3, 4096, 64);
    let mut env = Env::new(vec![a, b, c4k]);
    let ranges = [r(2, 0, 10), r(1, 400, 3), r(2, 500, 12), r(0x1, 0, 1)];
    let (sqe, data) = copy_cmd(1, 100, CopyFormat::F2, &ranges);
    // Not enabled by CDFE: Invalid Field.
    env.formats = 0;
    assert_eq!(st(&env.run(&sqe, &data)), Status::INVALID_FIELD);
    env.formats = 1 << 2;
    // Source blocks from either namespace, in range order.
    let mut model = ma.contents();
    let (sa, sb) = (model.clone(), mb.contents());
    let mut at = 100 * 512;
    for x in &ranges {
        let src = if x.snsid == 2 { &sb } else { &sa };
        let (s, n) = (x.slba as usize * 512, x.blocks() as usize * 512);
        model[at..at + n].copy_from_slice(&src[s..s + n]);
        at += n;
    }
    assert_eq!(env.run(&sqe, &data), IoOutcome::success());
    assert_eq!(ma.contents(), model);
    assert_eq!(mb.contents(), sb, "the source is untouched");
    // Different block size: Incompatible Namespace or Format.
    let (sqe, data) = copy_cmd(1, 0, CopyFormat::F2, &[r(1, 300, 1), r(3, 0, 1)]);
    assert_eq!(st(&env.run(&sqe, &data)), Status::INCOMPATIBLE_NAMESPACE_OR_FORMAT);
    // SNSID 0, FFFFFFFFh, above NN: invalid; inactive (≤ NN, not attached): invalid field.
    for (snsid, want) in [
        (0, Status::INVALID_NAMESPACE),
        (u32::MAX, Status::INVALID_NAMESPACE),
        (33, Status::INVALID_NAMESPACE),
        (7, Status::INVALID_FIELD),
    ] {
        let (sqe, data) = copy_cmd(1, 0, CopyFormat::F2, &[r(snsid, 0, 1)]);
        let o = env.run(&sqe, &data);
        assert_eq!((o.status, o.result), (want, 0), "snsid {snsid:#x}");
    }
    // A source range past the end of its own (smaller) namespace.
    let (sqe, data) = copy_cmd(1, 0, CopyFormat::F2, &[r(2, 510, 3)]);
    assert_eq!(st(&env.run(&sqe, &data)), Status::LBA_OUT_OF_RANGE);
}

#[test]
fn copy_format2_overlap_in_the_destination_namespace_is_refused() {
    let (a, ma, _) = mem_ns(1, 512, 512);
    let (b, _, _) = mem_ns(2, 512, 512);
    let env = Env::new(vec![a, b]);
    let before = ma.contents();
    // Destination 100..110; range 1 (in namespace 1 itself) 105..107 overlaps.
    let (sqe, data) = copy_cmd(1, 100, CopyFormat::F2, &[r(2, 100, 8), r(1, 105, 2)]);
    let o = env.run(&sqe, &data);
    assert_eq!((o.status, o.result), (Status::OVERLAPPING_IO_RANGE, 0));
    assert_eq!(ma.contents(), before);
    // The same blocks in the other namespace do not overlap; adjacent ones neither.
    let (sqe, data) = copy_cmd(1, 100, CopyFormat::F2, &[r(2, 100, 8), r(1, 112, 2), r(1, 98, 2)]);
    assert_eq!(st(&env.run(&sqe, &data)), Status::SUCCESS);
}

#[test]
fn copy_limits() {
    let (ns, mem, _) = mem_ns(1, 512, 20_000);
    let env = Env::new(vec![ns]);
    let before = mem.contents();
    // 17 ranges > MSRC+1 = 16: at parse.
    let many: Vec<CopyRange> = (0..17).map(|i| r(0, i, 1)).collect();
    let (sqe, data) = copy_cmd(1, 10_000, CopyFormat::F0, &many);
    assert_eq!(st(&env.run(&sqe, &data)), Status::COMMAND_SIZE_LIMIT_EXCEEDED);
    // One range of 1025 > MSSRL 1024.
    let (sqe, data) = copy_cmd(1, 10_000, CopyFormat::F0, &[r(0, 0, 1), r(0, 0, 1025)]);
    assert_eq!(st(&env.run(&sqe, &data)), Status::COMMAND_SIZE_LIMIT_EXCEEDED);
    // Five ranges of 1000: 5000 > MCL 4096.
    let five: Vec<CopyRange> = (0..5).map(|i| r(0, i * 1000, 1000)).collect();
    let (sqe, data) = copy_cmd(1, 10_000, CopyFormat::F0, &five);
    assert_eq!(st(&env.run(&sqe, &data)), Status::COMMAND_SIZE_LIMIT_EXCEEDED);
    // Exactly at every limit: fine.
    let at: Vec<CopyRange> = (0..4).map(|i| r(0, i * 1024, 1024)).collect();
    let (sqe, data) = copy_cmd(1, 10_000, CopyFormat::F0, &at);
    assert_eq!(st(&env.run(&sqe, &data)), Status::SUCCESS);
    let mut model = before.clone();
    model_copy(&before, &mut model, 10_000, &at, 512);
    assert_eq!(mem.contents(), model);
}

#[test]
fn copy_field_errors() {
    let (ns, mem, _) = mem_ns(1, 512, 256);
    let env = Env::new(vec![ns]);
    let before = mem.contents();
    // Formats 1h and 3h (PI) and reserved formats are not supported.
    for f in [1u8, 3, 4, 15] {
        let mut s = copy_sqe(1, 1, 0, 1, CopyFormat::F0, false).unwrap();
        s.set_cdw(12, s.cdw(12) | u32::from(f) << 8);
        assert_eq!(st(&env.run(&s, &[0; 64])), Status::INVALID_FIELD, "format {f}");
    }
    // CETYPE in the command or in a descriptor, DTYPE: invalid fields.
    let (mut s, d) = copy_cmd(1, 100, CopyFormat::F0, &[r(0, 0, 1)]);
    s.set_cdw(12, s.cdw(12) | 1 << 16);
    assert_eq!(st(&env.run(&s, &d)), Status::INVALID_FIELD);
    let mut x = r(0, 0, 1);
    x.cetype = 1;
    let (s, d) = copy_cmd(1, 100, CopyFormat::F0, &[x]);
    assert_eq!(st(&env.run(&s, &d)), Status::INVALID_FIELD);
    // PRINFOR / PRINFOW are ignored on a namespace without PI.
    let (mut s, d) = copy_cmd(1, 100, CopyFormat::F0, &[r(0, 0, 1)]);
    s.set_cdw(12, s.cdw(12) | 0xF << 12 | 0xF << 26);
    assert_eq!(st(&env.run(&s, &d)), Status::SUCCESS);
    let after_ok = mem.contents();
    // Descriptors shorter than NR+1 of them, by SGL or by data.
    let (mut s, d) = copy_cmd(1, 100, CopyFormat::F0, &[r(0, 0, 1), r(0, 1, 1)]);
    assert_eq!(st(&env.run(&s, &d[..63])), Status::DATA_SGL_LENGTH_INVALID);
    s.set_sgl(Sgl { addr: 0, len: 63, kind: SglType::TRANSPORT_DATA_BLOCK });
    assert_eq!(st(&env.run(&s, &d)), Status::DATA_SGL_LENGTH_INVALID);
    // Destination past the end (start, and start + total).
    let (s, d) = copy_cmd(1, 256, CopyFormat::F0, &[r(0, 0, 1)]);
    assert_eq!(st(&env.run(&s, &d)), Status::LBA_OUT_OF_RANGE);
    let (s, d) = copy_cmd(1, 250, CopyFormat::F0, &[r(0, 0, 4), r(0, 0, 3)]);
    assert_eq!(st(&env.run(&s, &d)), Status::LBA_OUT_OF_RANGE);
    let (s, d) = copy_cmd(1, 0, CopyFormat::F0, &[r(0, u64::MAX, 2)]);
    assert_eq!(st(&env.run(&s, &d)), Status::LBA_OUT_OF_RANGE);
    assert_eq!(mem.contents(), after_ok);
    let _ = before;
}

/// Range 3 of 5 is out of range: nothing is copied and DW0 is 0 (no data
/// written, NVM 1.2 §3.3.2.5).
#[test]
fn copy_validates_every_range_before_moving_a_byte() {
    let (ns, mem, _) = mem_ns(1, 512, 256);
    let env = Env::new(vec![ns]);
    let before = mem.contents();
    let ranges = [r(0, 0, 1), r(0, 1, 1), r(0, 2, 1), r(0, 255, 2), r(0, 4, 1)];
    let (s, d) = copy_cmd(1, 100, CopyFormat::F0, &ranges);
    let o = env.run(&s, &d);
    assert_eq!((o.status, o.result), (Status::LBA_OUT_OF_RANGE, 0));
    assert_eq!(mem.contents(), before);
}

/// A failure while copying range 2: ranges 0 and 1 are copied, DW0 = 2.
#[test]
fn copy_failure_mid_way_reports_the_lowest_range_not_copied() {
    let (a, ma, _) = mem_ns(1, 512, 512);
    let (b, fb) = faulty_ns(2, 512, (300 * 512, 301 * 512));
    let env = Env::new(vec![a, b]);
    let before = ma.contents();
    let ranges = [r(1, 0, 4), r(2, 10, 4), r(2, 299, 4), r(1, 8, 4)];
    let (s, d) = copy_cmd(1, 100, CopyFormat::F2, &ranges);
    let o = env.run(&s, &d);
    assert_eq!((o.status, o.result), (Status::WRITE_FAULT, 2));
    let after = ma.contents();
    let sb = fb.inner.contents();
    assert_eq!(&after[100 * 512..104 * 512], &before[..4 * 512]);
    assert_eq!(&after[104 * 512..108 * 512], &sb[10 * 512..14 * 512]);
    assert_eq!(&after[112 * 512..], &before[112 * 512..], "range 3 not copied");
}

#[test]
fn copy_cancelled_mid_way() {
    let (ns, mem, unit) = mem_ns(1, 512, 4096);
    let mut env = Env::new(vec![ns]);
    env.chunk = 512 * 4;
    let hook = Arc::new(Recorder::default());
    // The hook cancels on the 5th chunk: range 0 (4 chunks) done, range 1
    // stops after its first chunk.
    *hook.cancel.lock() = Some((env.cancel.clone(), 5));
    unit.set_write_hook(Some(hook.clone()));
    let before = mem.contents();
    let ranges = [r(0, 0, 16), r(0, 100, 16), r(0, 200, 16)];
    let (s, d) = copy_cmd(1, 1000, CopyFormat::F0, &ranges);
    let o = env.run(&s, &d);
    assert_eq!((o.status, o.result), (Status::ABORT_REQUESTED, 1));
    let after = mem.contents();
    assert_eq!(&after[1000 * 512..1016 * 512], &before[..16 * 512]);
    assert_eq!(&after[1016 * 512..1020 * 512], &before[100 * 512..104 * 512]);
    assert_eq!(&after[1020 * 512..], &before[1020 * 512..]);
    assert_eq!(hook.calls.lock().len(), 5);
    assert_eq!(unit.range_locks().held(), 0);
    // Cancelled before the start: nothing copied, DW0 0.
    let o = env.run(&s, &d);
    assert_eq!((o.status, o.result), (Status::ABORT_REQUESTED, 0));
}

#[test]
fn copy_to_a_write_protected_unit() {
    let (ns, mem, unit) = mem_ns(1, 512, 64);
    let env = Env::new(vec![ns]);
    unit.set_write_protected(true);
    let before = mem.contents();
    let (s, d) = copy_cmd(1, 10, CopyFormat::F0, &[r(0, 0, 2)]);
    assert_eq!(st(&env.run(&s, &d)), Status::NAMESPACE_WRITE_PROTECTED);
    assert_eq!(mem.contents(), before);
}

#[test]
fn fast_copy_only_on_memory_is_not_possible() {
    let (a, ma, _) = mem_ns(1, 512, 64);
    let (b, _, _) = mem_ns(2, 512, 64);
    let env = Env::new(vec![a, b]);
    let before = ma.contents();
    let mut x = r(2, 0, 2);
    x.sopt = SOPT_FCO;
    let (s, d) = copy_cmd(1, 10, CopyFormat::F2, &[r(2, 5, 1), x]);
    let o = env.run(&s, &d);
    assert_eq!((o.status, o.result), (Status::FAST_COPY_NOT_POSSIBLE, 0));
    assert!(o.status.dnr);
    assert_eq!(ma.contents(), before);
}

// ---- Files ----

fn file_ns(dir: &std::path::Path, name: &str, nsid: u32, blocks: u64) -> (Arc<Namespace>, Arc<FileStorage>) {
    let path = dir.join(name);
    let len = blocks * 4096;
    std::fs::write(&path, pattern(u64::from(nsid), len as usize)).unwrap();
    let fs = Arc::new(FileStorage::open(&path, &OpenOptions { create_size: None, read_only: false }).unwrap());
    let unit = Arc::new(NsUnit::new([nsid as u8; 16], 4096, fs.clone()));
    (Arc::new(Namespace::new(info(nsid, 4096, blocks), unit).unwrap()), fs)
}

fn file_bytes(fs: &FileStorage) -> Vec<u8> {
    let mut v = vec![0u8; fs.len() as usize];
    fs.read_at(&mut v, 0).unwrap();
    v
}

#[test]
fn on_files_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let (a, fa) = file_ns(dir.path(), "a.img", 1, 256);
    let (b, fb) = file_ns(dir.path(), "b.img", 2, 256);
    let env = Env::new(vec![a, b]);
    let data = pattern(5, 3 * 4096);
    assert_eq!(st(&env.run(&rw_sqe(Opcode::WRITE, 1, 1, 7, 3, 4096, true).unwrap(), &data)), Status::SUCCESS);
    assert_eq!(env.run(&read_sqe(1, 7, 3, 4096), &[]).data.as_deref(), Some(&data[..]));
    assert_eq!(st(&env.run(&rw_sqe(Opcode::COMPARE, 1, 1, 7, 3, 4096, false).unwrap(), &data)), Status::SUCCESS);
    assert_eq!(st(&env.run(&rw_sqe(Opcode::VERIFY, 1, 1, 0, 256, 4096, false).unwrap(), &[])), Status::SUCCESS);
    assert_eq!(st(&env.run(&flush_sqe(1, 1), &[])), Status::SUCCESS);
    // Write Zeroes with DEAC (hole punch) and DSM deallocate read back zero.
    assert_eq!(st(&env.run(&write_zeroes_sqe(1, 1, 20, 10, true, false).unwrap(), &[])), Status::SUCCESS);
    let dsm = encode_dsm_ranges(&[DsmRange { cattr: 0, blocks: 5, slba: 40 }]);
    assert_eq!(st(&env.run(&dsm_sqe(1, 1, 1, DsmAttributes::AD).unwrap(), &dsm)), Status::SUCCESS);
    let now = file_bytes(&fa);
    assert!(now[20 * 4096..30 * 4096].iter().all(|&x| x == 0));
    assert!(now[40 * 4096..45 * 4096].iter().all(|&x| x == 0));
    // Copy within and across files; Fast Copy Only is possible (one file system).
    let sb = file_bytes(&fb);
    let mut x = r(2, 100, 8);
    x.sopt = SOPT_FCO;
    let ranges = [r(1, 7, 3), x, r(1, 0, 2)];
    let (s, d) = copy_cmd(1, 200, CopyFormat::F2, &ranges);
    let before = file_bytes(&fa);
    assert_eq!(env.run(&s, &d), IoOutcome::success());
    let after = file_bytes(&fa);
    assert_eq!(&after[200 * 4096..203 * 4096], &before[7 * 4096..10 * 4096]);
    assert_eq!(&after[203 * 4096..211 * 4096], &sb[100 * 4096..108 * 4096]);
    assert_eq!(&after[211 * 4096..213 * 4096], &before[..2 * 4096]);
    assert_eq!(&after[..200 * 4096], &before[..200 * 4096]);
    assert_eq!(&after[213 * 4096..], &before[213 * 4096..]);
    // Format 0h with FUA.
    let (mut s, d) = copy_cmd(1, 250, CopyFormat::F0, &[r(0, 0, 6)]);
    s.set_cdw(12, s.cdw(12) | 1 << 30);
    assert_eq!(st(&env.run(&s, &d)), Status::SUCCESS);
    assert_eq!(&file_bytes(&fa)[250 * 4096..], &after[..6 * 4096]);
}

// ---- Robustness ----

/// Counts bytes copied, to see the engine's metrics are fed.
#[derive(Debug, Default)]
struct Count(AtomicU64);

impl CopyMetrics for Count {
    fn copied(&self, report: &oxcopy_storage::CopyReport) {
        self.0.fetch_add(report.total(), Ordering::Relaxed);
    }
    fn rod_tokens(&self, _: usize) {}
    fn rod_snapshot_bytes(&self, _: u64) {}
}

#[test]
fn copy_feeds_the_metrics_and_a_mismatched_command_fails_cleanly() {
    let (a, _, _) = mem_ns(1, 512, 64);
    let (small, _, _) = mem_ns(2, 512, 4);
    let count = Count::default();
    let cancel = CancelToken::new();
    let lookup = |_: u32| None;
    let ctx = IoContext {
        cancel: &cancel,
        lookup: &lookup,
        max_nsid: 2,
        copy_formats_enabled: 0,
        metrics: &count,
        chunk_bytes: 0,
    };
    let (s, d) = copy_cmd(1, 10, CopyFormat::F0, &[r(0, 0, 3)]);
    let cmd = parse_io(&s, Some(a.info())).unwrap();
    assert_eq!(execute(&a, &cmd, Bytes::from(d.clone()), &ctx), IoOutcome::success());
    assert_eq!(count.0.load(Ordering::Relaxed), 3 * 512);
    // The same command run on a namespace too small for it.
    assert_eq!(execute(&small, &cmd, Bytes::from(d), &ctx).status, Status::LBA_OUT_OF_RANGE);
    let rd = parse_io(&read_sqe(1, 60, 4, 512), Some(a.info())).unwrap();
    assert_eq!(execute(&small, &rd, Bytes::new(), &ctx).status, Status::LBA_OUT_OF_RANGE);
    assert_eq!(rd.data_in_len(512), 2048);
    assert_eq!(cmd.data_out_len(512), 32);
    assert!(cmd.writes() && !rd.writes());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any SQE and any data: a status, never a panic, and never a write to
    /// a read-only namespace.
    #[test]
    fn any_command_any_data(raw in any::<[u8; 64]>(), op in prop::sample::select(vec![0u8, 1, 2, 5, 8, 9, 0x0C, 0x19, 0x04]), nsid in 0u32..4, data in proptest::collection::vec(any::<u8>(), 0..600), slba in 0u64..80, cdw12 in any::<u32>()) {
        let (a, _, _) = mem_ns(1, 512, 64);
        let (b, mb, ub) = mem_ns(2, 512, 32);
        ub.set_write_protected(true);
        let env = Env::new(vec![a, b]);
        let mut s = Sqe(raw);
        s.0[0] = op;
        s.0[4..8].copy_from_slice(&nsid.to_le_bytes());
        // Keep the LBA small often enough to reach execution.
        if raw[63] & 1 == 0 {
            s.set_cdw10_11(slba);
            s.set_cdw(12, cdw12 & 0xC000_0F0F);
        }
        let before = mb.contents();
        let o = env.run(&s, &data);
        if o.status.is_success() {
            prop_assert!(o.result == 0);
        }
        prop_assert_eq!(mb.contents(), before);
    }
}

/// Another front end (iSCSI on the same LU) holding a range: an NVMe write
/// to it waits for the release, an NVMe read of other blocks does not.
#[test]
fn range_locks_are_the_units() {
    let (ns, mem, unit) = mem_ns(1, 512, 64);
    let env = Arc::new(Env::new(vec![ns]));
    let held = unit.range_locks().lock(8, 8, LockMode::Exclusive);
    let e2 = Arc::clone(&env);
    let t = std::thread::spawn(move || e2.run(&write_sqe(1, 10, 1, 512), &[0xAB; 512]).status);
    for _ in 0..10_000_000 {
        if unit.range_locks().waiting() == 1 {
            break;
        }
        std::thread::yield_now();
    }
    assert_eq!(unit.range_locks().waiting(), 1, "the write waits for the range");
    assert_eq!(st(&env.run(&read_sqe(1, 0, 8, 512), &[])), Status::SUCCESS);
    assert_ne!(&mem.contents()[10 * 512..11 * 512], &[0xAB; 512][..]);
    drop(held);
    assert_eq!(t.join().ok(), Some(Status::SUCCESS));
    assert_eq!(&mem.contents()[10 * 512..11 * 512], &[0xAB; 512][..]);
}

#[test]
fn format0_ignores_the_bytes_format2_uses_for_snsid_and_sopt() {
    let (ns, mem, _) = mem_ns(1, 512, 64);
    let env = Env::new(vec![ns]);
    let before = mem.contents();
    let mut d = encode_copy_ranges(CopyFormat::F0, &[r(0, 2, 3)]).unwrap();
    d[0..4].copy_from_slice(&77u32.to_le_bytes());
    d[22..24].copy_from_slice(&SOPT_FCO.to_le_bytes());
    let s = copy_sqe(1, 1, 40, 1, CopyFormat::F0, false).unwrap();
    assert_eq!(st(&env.run(&s, &d)), Status::SUCCESS);
    assert_eq!(&mem.contents()[40 * 512..43 * 512], &before[2 * 512..5 * 512]);
}

#[test]
fn deallocation_on_a_unit_write_protected_at_execution() {
    let (ns, mem, unit) = mem_ns(1, 512, 64);
    let env = Env::new(vec![ns]);
    unit.set_write_protected(true);
    let before = mem.contents();
    let dsm = encode_dsm_ranges(&[DsmRange { cattr: 0, blocks: 4, slba: 0 }]);
    assert_eq!(st(&env.run(&dsm_sqe(1, 1, 1, DsmAttributes::AD).unwrap(), &dsm)), Status::NAMESPACE_WRITE_PROTECTED);
    assert_eq!(st(&env.run(&dsm_sqe(1, 1, 1, DsmAttributes::IDW).unwrap(), &dsm)), Status::SUCCESS);
    let wz = write_zeroes_sqe(1, 1, 0, 4, false, false).unwrap();
    assert_eq!(st(&env.run(&wz, &[])), Status::NAMESPACE_WRITE_PROTECTED);
    assert_eq!(mem.contents(), before);
}

proptest! {
    /// What the builders make, `parse_io` reads back.
    #[test]
    fn builders_parse_back(slba in 0u64..2000, blocks in 1u32..=65536, fua in any::<bool>(), deac in any::<bool>(), nr in 1usize..=16, sdlba in 0u64..5000, f2 in any::<bool>()) {
        let i = NamespaceInfo { blocks: 70_000, ..info(1, 512, 0) };
        for op in [Opcode::READ, Opcode::WRITE, Opcode::COMPARE, Opcode::VERIFY] {
            let s = rw_sqe(op, 1, 1, slba, blocks, 512, fua).unwrap();
            let rw = Rw { slba, blocks, fua };
            let want = match op {
                Opcode::READ => IoCommand::Read(rw),
                Opcode::WRITE => IoCommand::Write(rw),
                Opcode::COMPARE => IoCommand::Compare(rw),
                _ => IoCommand::Verify(rw),
            };
            prop_assert_eq!(parse_io(&s, Some(&i)), Ok(want));
        }
        let wz = write_zeroes_sqe(1, 1, slba, blocks, deac, fua).unwrap();
        prop_assert_eq!(parse_io(&wz, Some(&i)), Ok(IoCommand::WriteZeroes { range: Rw { slba, blocks, fua }, deallocate: deac }));
        let format = if f2 { CopyFormat::F2 } else { CopyFormat::F0 };
        let c = copy_sqe(1, 1, sdlba, nr, format, fua).unwrap();
        prop_assert_eq!(parse_io(&c, Some(&i)), Ok(IoCommand::Copy(CopyCommand { sdlba, ranges: nr, format, fua })));
        let d = dsm_sqe(1, 1, nr, DsmAttributes::AD).unwrap();
        prop_assert_eq!(parse_io(&d, Some(&i)), Ok(IoCommand::DatasetManagement { ranges: nr, attrs: DsmAttributes::AD }));
    }
}

#[test]
fn try_execute_runs_short_reads_and_writes_only_when_nothing_waits() {
    let (ns, mem, unit) = mem_ns(1, 512, 1024);
    let parse = |sqe: Sqe| parse_io(&sqe, Some(ns.info())).unwrap();
    // A cached read: done inline, the bytes of the store.
    let read = parse(rw_sqe(Opcode::READ, 1, 1, 8, 8, 512, false).unwrap());
    let got = try_execute(&ns, &read, &[]).expect("inline read");
    assert_eq!(got.status, Status::SUCCESS);
    let mut want = vec![0u8; 4096];
    mem.read_at(&mut want, 8 * 512).unwrap();
    assert_eq!(got.data.as_deref(), Some(&want[..]));
    // A write: done inline, visible in the store.
    let write = parse(rw_sqe(Opcode::WRITE, 2, 1, 16, 8, 512, false).unwrap());
    let data = pattern(99, 4096);
    assert_eq!(try_execute(&ns, &write, &data).expect("inline write").status, Status::SUCCESS);
    let mut back = vec![0u8; 4096];
    mem.read_at(&mut back, 16 * 512).unwrap();
    assert_eq!(back, data);
    // A range held by another command: declined, nothing written.
    let other = pattern(7, 4096);
    {
        let _held = unit.range_locks().lock(20, 1, LockMode::Shared);
        assert!(try_execute(&ns, &write, &other).is_none());
        let _w = unit.range_locks().lock(12, 1, LockMode::Exclusive);
        assert!(try_execute(&ns, &read, &[]).is_none());
    }
    mem.read_at(&mut back, 16 * 512).unwrap();
    assert_eq!(back, data, "a declined write wrote nothing");
    // FUA, long transfers and other commands go to the pool.
    let fua = parse(rw_sqe(Opcode::WRITE, 3, 1, 16, 8, 512, true).unwrap());
    assert!(try_execute(&ns, &fua, &data).is_none());
    let long = parse(rw_sqe(Opcode::READ, 4, 1, 0, 256, 512, false).unwrap());
    assert!(try_execute(&ns, &long, &[]).is_none());
    assert!(try_execute(&ns, &IoCommand::Flush, &[]).is_none());
    // A write hook that would act (a point-in-time token): declined.
    #[derive(Debug)]
    struct Acts;
    impl WriteHook for Acts {
        fn before_write(&self, _: &dyn Unit, _: u64, _: u64) -> Result<(), Refusal> {
            Ok(())
        }
    }
    unit.set_write_hook(Some(Arc::new(Acts)));
    assert!(try_execute(&ns, &write, &other).is_none());
    unit.set_write_hook(None);
    // Out of range: answered inline with the status.
    let past = IoCommand::Read(Rw { slba: 1020, blocks: 8, fua: false });
    assert_eq!(try_execute(&ns, &past, &[]).map(|o| o.status), Some(Status::LBA_OUT_OF_RANGE));
}
