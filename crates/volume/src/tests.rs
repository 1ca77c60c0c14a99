//! Volumes against a flat model: stacks of linear, striped and mirror
//! volumes over memory leaves must read back exactly what a plain byte
//! array would after the same writes, discards and copies; maps cover
//! ranges exactly; copies between volumes of one geometry are one call per
//! leg; snapshots are point in time across members; mirror legs fail and
//! resync (also under concurrent writes).

use super::*;
use oxcopy_storage::{generic_copy_range, MemStorage};
use oxcopy_testkit::pattern;
use proptest::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A memory leaf that counts copies, can fail on demand and can snapshot.
#[derive(Debug)]
struct Leaf {
    mem: MemStorage,
    fail: AtomicBool,
    copies: AtomicUsize,
    snapshots: bool,
}

fn leaf(len: u64) -> Arc<Leaf> {
    Arc::new(Leaf {
        mem: MemStorage::new(len as usize),
        fail: AtomicBool::new(false),
        copies: AtomicUsize::new(0),
        snapshots: true,
    })
}

impl Leaf {
    fn check(&self) -> Result<()> {
        match self.fail.load(Ordering::Relaxed) {
            true => Err(StorageError::new(StorageErrorKind::Io, "injected")),
            false => Ok(()),
        }
    }
}

impl Storage for Leaf {
    fn len(&self) -> u64 {
        self.mem.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.check()?;
        self.mem.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check()?;
        self.mem.write_at(buf, offset)
    }
    fn flush(&self) -> Result<()> {
        self.check()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities { fs_block_size: 4096, ..Default::default() }
    }
    fn copy_range(&self, dst_offset: u64, src: &dyn Storage, src_offset: u64, len: u64) -> Result<CopyReport> {
        self.check()?;
        self.copies.fetch_add(1, Ordering::Relaxed);
        generic_copy_range(self, dst_offset, src, src_offset, len)
    }
    fn snapshot(&self, ranges: &[(u64, u64)]) -> Result<Option<Arc<dyn Storage>>> {
        if !self.snapshots {
            return Ok(None);
        }
        let total: u64 = ranges.iter().map(|r| r.1).sum();
        let snap = leaf(total);
        let mut at = 0;
        for &(off, len) in ranges {
            let mut b = vec![0u8; len as usize];
            self.read_at(&mut b, off)?;
            snap.write_at(&b, at)?;
            at += len;
        }
        Ok(Some(snap))
    }
}

fn m(store: &Arc<Leaf>, offset: u64, len: u64) -> Member {
    Member { store: store.clone(), offset, len, label: format!("leaf@{offset}") }
}

fn read(v: &dyn Storage, off: u64, len: u64) -> Vec<u8> {
    let mut b = vec![0u8; len as usize];
    v.read_at(&mut b, off).expect("read");
    b
}

const K: u64 = 4096;

/// linear [ 40K of a | striped(8K; b, c) 64K | mirror(d, e) 24K ], with
/// members at offsets inside their leaves.
fn stack() -> (Volume, Vec<Arc<Leaf>>) {
    let l: Vec<Arc<Leaf>> = (0..5).map(|_| leaf(256 * K)).collect();
    let striped = Volume::striped("s", 2 * K, vec![m(&l[1], 4 * K, 16 * K), m(&l[2], 0, 17 * K)]).expect("striped");
    let mirror = Volume::mirror("mi", vec![m(&l[3], 0, 24 * K), m(&l[4], 8 * K, 30 * K)]).expect("mirror");
    let top = Volume::linear(
        "top",
        vec![
            m(&l[0], 12 * K, 10 * K),
            Member::whole(Arc::new(striped), "volume:s"),
            Member::whole(Arc::new(mirror), "volume:mi"),
        ],
    )
    .expect("linear");
    (top, l)
}

#[test]
fn shapes_and_lengths() {
    let (top, _) = stack();
    assert_eq!(top.len(), 10 * K + 32 * K + 24 * K, "stripes: 2 legs × 16K (the shorter leg's whole stripes)");
    let d = top.describe();
    assert!(d.contains("volume top (linear)") && d.contains("volume s (striped (stripe 8192 bytes))"), "{d}");
    assert!(d.contains("in sync"), "{d}");
}

#[test]
fn bad_volumes_are_refused() {
    let a = leaf(64 * K);
    assert_eq!(Volume::striped("x", 3000, vec![m(&a, 0, K), m(&a, K, K)]).unwrap_err(), VolumeError::BadStripe(3000));
    assert!(matches!(Volume::striped("x", K, vec![m(&a, 0, K)]), Err(VolumeError::TooFewMembers { min: 2, got: 1 })));
    assert!(matches!(Volume::linear("x", vec![m(&a, 60 * K, 8 * K)]), Err(VolumeError::MemberOutOfRange { .. })));
    assert!(matches!(Volume::linear("x", vec![m(&a, 0, u64::MAX)]), Err(VolumeError::MemberOutOfRange { .. })));
    assert_eq!(Volume::linear("x", vec![m(&a, 0, 0)]).unwrap_err(), VolumeError::Empty);
    assert_eq!(Volume::striped("x", 8 * K, vec![m(&a, 0, K), m(&a, K, K)]).unwrap_err(), VolumeError::Empty);
    let v = Volume::mirror("x", vec![m(&a, 0, K), m(&a, K, K)]).unwrap();
    assert_eq!(v.add_segment(m(&a, 0, K)).unwrap_err(), VolumeError::NotLinear(Kind::Mirror));
    let v = Volume::linear("x", vec![m(&a, 0, K)]).unwrap();
    assert_eq!(v.read_at(&mut [0; 512], K).unwrap_err().kind, StorageErrorKind::OutOfRange);
    assert_eq!(v.write_at(&[0; 512], u64::MAX - 10).unwrap_err().kind, StorageErrorKind::OutOfRange);
}

#[test]
fn bytes_land_where_the_layout_says() {
    let a = leaf(64 * K);
    let b = leaf(64 * K);
    let v = Volume::striped("s", K, vec![m(&a, 2 * K, 8 * K), m(&b, 0, 8 * K)]).unwrap();
    let data = pattern(1, 3 * K as usize);
    v.write_at(&data, K / 2).unwrap();
    // Stripe 0 → a@2K, stripe 1 → b@0, stripe 2 → a@3K, stripe 3 → b@1K.
    assert_eq!(read(&*a, 2 * K + K / 2, K / 2), data[..(K / 2) as usize]);
    assert_eq!(read(&*b, 0, K), data[(K / 2) as usize..(3 * K / 2) as usize]);
    assert_eq!(read(&*a, 3 * K, K), data[(3 * K / 2) as usize..(5 * K / 2) as usize]);
    assert_eq!(read(&*b, K, K / 2), data[(5 * K / 2) as usize..]);
    let map = v.read_map(K / 2, 3 * K).unwrap().unwrap();
    let lens: Vec<u64> = map.iter().map(|e| e.len).collect();
    assert_eq!(lens, vec![K / 2, K, K, K / 2]);
    assert_eq!(map.iter().map(|e| e.at).collect::<Vec<_>>(), vec![0, K / 2, 3 * K / 2, 5 * K / 2]);
}

#[test]
fn a_copy_between_volumes_of_one_geometry_is_one_call_per_leg() {
    let legs: Vec<Arc<Leaf>> = (0..8).map(|_| leaf(64 * K)).collect();
    let src = Volume::striped("src", K, legs[..4].iter().map(|l| m(l, 0, 64 * K)).collect()).unwrap();
    let dst = Volume::striped("dst", K, legs[4..].iter().map(|l| m(l, 0, 64 * K)).collect()).unwrap();
    let data = pattern(2, 256 * K as usize);
    src.write_at(&data, 0).unwrap();
    let r = copy_mapped(&dst, 0, &src, 0, 256 * K).unwrap();
    assert_eq!(r.total(), 256 * K);
    assert_eq!(read(&dst, 0, 256 * K), data);
    let calls: Vec<usize> = legs[4..].iter().map(|l| l.copies.load(Ordering::Relaxed)).collect();
    assert_eq!(calls, vec![1, 1, 1, 1], "256 stripes merged into one copy per leg");
    // Shifted by one stripe: still whole runs per leg pair (4 pairs).
    let r = copy_mapped(&dst, K, &src, 0, 200 * K).unwrap();
    assert_eq!(r.total(), 200 * K);
    assert_eq!(read(&dst, K, 200 * K), data[..(200 * K) as usize]);
    let calls: usize = legs[4..].iter().map(|l| l.copies.load(Ordering::Relaxed)).sum();
    assert_eq!(calls, 4 + 4, "one run per (dst leg, src leg) pair");
}

#[test]
fn overlapping_copy_within_one_volume_is_safe() {
    let (top, _) = stack();
    let n = top.len();
    let data = pattern(3, n as usize);
    top.write_at(&data, 0).unwrap();
    copy_mapped(&top, 5 * K, &top, 0, n - 5 * K).unwrap();
    let mut want = data.clone();
    want.copy_within(0..(n - 5 * K) as usize, (5 * K) as usize);
    assert_eq!(read(&top, 0, n), want);
    copy_mapped(&top, 0, &top, 7 * K + 100, n - 8 * K).unwrap();
    want.copy_within((7 * K + 100) as usize..(7 * K + 100 + n - 8 * K) as usize, 0);
    assert_eq!(read(&top, 0, n), want);
}

#[test]
fn snapshot_is_point_in_time_across_members() {
    let (top, _) = stack();
    let n = top.len();
    let data = pattern(4, n as usize);
    top.write_at(&data, 0).unwrap();
    let ranges = [(3 * K, 20 * K), (40 * K, n - 40 * K)];
    let snap = top.snapshot(&ranges).unwrap().expect("every leaf snapshots");
    top.write_at(&pattern(5, n as usize), 0).unwrap();
    let mut want = data[(3 * K) as usize..(23 * K) as usize].to_vec();
    want.extend_from_slice(&data[(40 * K) as usize..]);
    assert_eq!(snap.len(), want.len() as u64);
    assert_eq!(read(&*snap, 0, snap.len()), want);
}

#[test]
fn no_snapshot_when_a_leaf_cannot() {
    let a = leaf(64 * K);
    let b = Arc::new(Leaf { snapshots: false, ..Arc::try_unwrap(leaf(64 * K)).unwrap() });
    let v = Volume::linear("x", vec![m(&a, 0, 8 * K), m(&b, 0, 8 * K)]).unwrap();
    assert!(v.snapshot(&[(0, 4 * K)]).unwrap().is_some());
    assert!(v.snapshot(&[(0, 12 * K)]).unwrap().is_none(), "touches b, which cannot");
}

#[test]
fn growing_a_linear_volume() {
    let a = leaf(64 * K);
    let v = Volume::linear("x", vec![m(&a, 0, 8 * K)]).unwrap();
    let old = pattern(6, 8 * K as usize);
    v.write_at(&old, 0).unwrap();
    assert_eq!(v.add_segment(m(&a, 32 * K, 16 * K)).unwrap(), 24 * K);
    assert_eq!(v.len(), 24 * K);
    let new = pattern(7, 16 * K as usize);
    v.write_at(&new, 8 * K).unwrap();
    assert_eq!(read(&v, 0, 8 * K), old);
    assert_eq!(read(&*a, 32 * K, 16 * K), new);
}

#[test]
fn mirror_survives_a_failed_leg_and_resyncs_it() {
    let (a, b) = (leaf(64 * K), leaf(64 * K));
    let v = Volume::mirror("mi", vec![m(&a, 0, 32 * K), m(&b, 0, 32 * K)]).unwrap();
    v.write_at(&pattern(8, 32 * K as usize), 0).unwrap();
    assert_eq!(read(&*a, 0, 32 * K), read(&*b, 0, 32 * K));
    let told = Arc::new(std::sync::Mutex::new(Vec::new()));
    let t2 = told.clone();
    v.on_leg_failure(Arc::new(move |leg| t2.lock().unwrap().push(leg)));
    b.fail.store(true, Ordering::Relaxed);
    let newer = pattern(9, 16 * K as usize);
    v.write_at(&newer, 8 * K).expect("a write with one good leg succeeds");
    assert_eq!(v.members()[1].1, LegState::Failed);
    assert_eq!(*told.lock().unwrap(), vec![1], "the owner is told before the write returns");
    assert_eq!(read(&v, 8 * K, 16 * K), newer);
    assert_eq!(v.fail_leg(0).unwrap_err(), VolumeError::LastLeg);
    // The leg comes back: resync makes it identical.
    b.fail.store(false, Ordering::Relaxed);
    assert_ne!(read(&*a, 0, 32 * K), read(&*b, 0, 32 * K));
    let r = v.resync_leg(1, &|| false).unwrap();
    assert_eq!(r.total(), 32 * K);
    assert_eq!(v.members()[1].1, LegState::InSync);
    assert_eq!(read(&*a, 0, 32 * K), read(&*b, 0, 32 * K));
    // Both serve reads again (reads spread by MiB; this one is in range 0).
    assert_eq!(read(&v, 0, 32 * K), read(&*a, 0, 32 * K));
}

#[test]
fn mirror_resync_under_concurrent_writes_ends_identical() {
    let len = 3 * RESYNC_CHUNK + 12345 * 512;
    let (a, b) = (leaf(len), leaf(len));
    let v = Arc::new(Volume::mirror("mi", vec![m(&a, 0, len), m(&b, 0, len)]).unwrap());
    v.fail_leg(1).unwrap();
    v.write_at(&pattern(10, 1 << 20), 0).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (v, stop) = (v.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 100_000 {
                let off = (i.wrapping_mul(0x9E37_79B9) % (len / 4096)) * 4096;
                v.write_at(&pattern(i, 4096), off).unwrap();
                i += 1;
            }
            i
        })
    };
    v.resync_leg(1, &|| false).unwrap();
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().unwrap();
    assert!(writes > 0);
    assert!(read(&*a, 0, len) == read(&*b, 0, len), "legs differ after resync with {writes} concurrent writes");
}

#[test]
fn mirror_read_error_takes_the_leg_out_and_reads_the_other() {
    let (a, b) = (leaf(64 * K), leaf(64 * K));
    let v = Volume::mirror("mi", vec![m(&a, 0, 8 * K), m(&b, 0, 8 * K)]).unwrap();
    let data = pattern(11, 8 * K as usize);
    v.write_at(&data, 0).unwrap();
    a.fail.store(true, Ordering::Relaxed);
    assert_eq!(read(&v, 0, 8 * K), data);
    assert_eq!(v.members()[0].1, LegState::Failed);
    b.fail.store(true, Ordering::Relaxed);
    assert_eq!(v.read_at(&mut [0; 512], 0).unwrap_err().kind, StorageErrorKind::Io, "no leg left: an error");
}

#[derive(Debug, Clone)]
enum Op {
    Write(u64, u64, u64),
    Zero(u64, u64),
    Copy(u64, u64, u64),
}

fn ops(n: u64) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        (0..n, 1..(n / 2), any::<u64>()).prop_map(|(o, l, s)| Op::Write(o, l, s)),
        (0..n, 1..(n / 2)).prop_map(|(o, l)| Op::Zero(o, l)),
        (0..n, 0..n, 1..(n / 2)).prop_map(|(d, s, l)| Op::Copy(d, s, l)),
    ];
    proptest::collection::vec(op, 1..24)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of writes, zeroings and copies (within the stack, and
    /// into a second volume of another shape) reads back like a flat array.
    #[test]
    fn a_stack_behaves_like_a_byte_array(ops in ops(66 * K)) {
        let (top, _) = stack();
        let n = top.len();
        let other_legs: Vec<Arc<Leaf>> = (0..3).map(|_| leaf(40 * K)).collect();
        let other = Volume::striped("o", 4 * K, other_legs.iter().map(|l| m(l, 0, 40 * K)).collect()).unwrap();
        let mut model = vec![0u8; n as usize];
        let mut model2 = vec![0u8; other.len() as usize];
        for op in ops {
            match op {
                Op::Write(o, l, s) => {
                    let l = l.min(n - o.min(n));
                    let data = pattern(s, l as usize);
                    top.write_at(&data, o).unwrap();
                    model[o as usize..(o + l) as usize].copy_from_slice(&data);
                }
                Op::Zero(o, l) => {
                    let l = l.min(n - o.min(n));
                    top.write_zeroes(o, l).unwrap();
                    model[o as usize..(o + l) as usize].fill(0);
                }
                Op::Copy(d, s, l) => {
                    let l = l.min(n - d.max(s));
                    copy_mapped(&top, d, &top, s, l).unwrap();
                    model.copy_within(s as usize..(s + l) as usize, d as usize);
                    let l2 = l.min(other.len() - d.min(other.len()));
                    copy_mapped(&other, d.min(other.len()), &top, s, l2).unwrap();
                    let d2 = d.min(other.len()) as usize;
                    model2[d2..d2 + l2 as usize].copy_from_slice(&model[s as usize..(s + l2) as usize]);
                }
            }
        }
        prop_assert!(read(&top, 0, n) == model);
        prop_assert!(read(&other, 0, other.len()) == model2);
        // Maps cover any range exactly once for reads.
        let map = top.read_map(1000, n - 2000).unwrap().unwrap();
        prop_assert_eq!(map.iter().map(|e| e.len).sum::<u64>(), n - 2000);
        let mut at = 0;
        for e in &map {
            prop_assert_eq!(e.at, at);
            prop_assert!(e.offset + e.len <= e.store.len());
            at += e.len;
        }
    }
}

#[test]
fn moving_a_segment_under_writes_and_copies_keeps_every_byte() {
    let seg = 2 * RESYNC_CHUNK + 3 * K;
    let (a, b, c, dst) = (leaf(8 * K), leaf(seg + 4 * K), leaf(seg), leaf(seg + 16 * K));
    let v = Arc::new(Volume::linear("lin", vec![m(&a, 0, 8 * K), m(&b, 4 * K, seg)]).unwrap());
    let n = v.len();
    v.write_at(&pattern(20, n as usize), 0).unwrap();
    assert!(matches!(v.begin_move(1, m(&c, 0, seg - K)), Err(VolumeError::MoveSize { .. })));
    assert!(matches!(v.begin_move(2, m(&c, 0, seg)), Err(VolumeError::NoSuchSegment(2))));
    v.begin_move(1, m(&c, 0, seg)).unwrap();
    assert!(matches!(v.begin_move(0, m(&dst, 0, 8 * K)), Err(VolumeError::MoveRunning(1))));
    // Writes and copies into the volume while the segment moves.
    let stop = Arc::new(AtomicBool::new(false));
    let other = Arc::new(Volume::linear("other", vec![m(&dst, 0, seg)]).unwrap());
    other.write_at(&pattern(21, seg as usize), 0).unwrap();
    let writer = {
        let (v, other, stop) = (v.clone(), other.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut model_writes = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 20_000 {
                let off = (i.wrapping_mul(0x9E37_79B9) % (n / 4096)) * 4096;
                if i % 50 == 49 {
                    let len = 64 * K.min(n - off);
                    let len = len.min(n - off);
                    copy_mapped(&*v, off, &*other, 0, len).unwrap();
                    model_writes.push((off, None, len));
                } else {
                    v.write_at(&pattern(i, 4096), off).unwrap();
                    model_writes.push((off, Some(i), 4096));
                }
                i += 1;
            }
            model_writes
        })
    };
    let mut seen = Vec::new();
    v.copy_move(
        0,
        &mut |done| {
            seen.push(done);
            Ok(())
        },
        &|| false,
    )
    .unwrap();
    let old = v.finish_move().unwrap();
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().unwrap();
    assert_eq!(seen, vec![RESYNC_CHUNK, 2 * RESYNC_CHUNK, seg], "progress after each chunk");
    assert_eq!(old.label, "leaf@16384");
    assert!(v.moving().is_none());
    // The model: the first pattern, then every write and copy in order.
    let mut model = pattern(20, n as usize);
    let src = pattern(21, seg as usize);
    for (off, w, len) in &writes {
        let (o, l) = (*off as usize, *len as usize);
        match w {
            Some(i) => model[o..o + l].copy_from_slice(&pattern(*i, 4096)),
            None => model[o..o + l].copy_from_slice(&src[..l]),
        }
    }
    assert!(read(&*v, 0, n) == model, "{} writes/copies during the move", writes.len());
    assert!(read(&*c, 0, seg) == model[(8 * K) as usize..], "the new place holds the segment");
    // After the switch only the new place is written.
    v.write_at(&[0xEE; 4096], 8 * K).unwrap();
    assert_eq!(read(&*c, 0, 4096), vec![0xEE; 4096]);
    assert_ne!(read(&*b, 4 * K, 4096), vec![0xEE; 4096]);
}

#[test]
fn a_move_resumes_from_its_progress_or_is_abandoned() {
    let seg = 3 * RESYNC_CHUNK;
    let (a, c) = (leaf(seg), leaf(seg));
    let v = Volume::linear("lin", vec![m(&a, 0, seg)]).unwrap();
    v.write_at(&pattern(30, seg as usize), 0).unwrap();
    v.begin_move(0, m(&c, 0, seg)).unwrap();
    let chunks = std::cell::Cell::new(0);
    let e = v.copy_move(0, &mut |_| Ok(()), &|| {
        chunks.set(chunks.get() + 1);
        chunks.get() > 1
    });
    assert!(e.is_err(), "stopped after one chunk");
    // A write while moving goes to both places, wherever it falls.
    v.write_at(&[7; 4096], 2 * RESYNC_CHUNK).unwrap();
    assert_eq!(read(&*c, 2 * RESYNC_CHUNK, 4096), vec![7; 4096]);
    // "Restart": a new volume over the same leaves resumes from the progress.
    let v2 = Volume::linear("lin", vec![m(&a, 0, seg)]).unwrap();
    v2.begin_move(0, m(&c, 0, seg)).unwrap();
    v2.copy_move(RESYNC_CHUNK, &mut |_| Ok(()), &|| false).unwrap();
    v2.finish_move().unwrap();
    assert!(read(&*c, 0, seg) == read(&*a, 0, seg));
    // Abandoned: the old place keeps serving, the new one is left alone.
    let d = leaf(seg);
    v2.begin_move(0, m(&d, 0, seg)).unwrap();
    v2.abandon_move().unwrap();
    assert_eq!(v2.abandon_move().unwrap_err(), VolumeError::NoMove);
    v2.write_at(&[9; 4096], 0).unwrap();
    assert_eq!(read(&*d, 0, 4096), vec![0; 4096]);
    assert_eq!(read(&v2, 0, 4096), vec![9; 4096]);
    let s = Volume::striped("s", K, vec![m(&a, 0, 4 * K), m(&c, 0, 4 * K)]).unwrap();
    assert!(matches!(s.begin_move(0, m(&d, 0, 4 * K)), Err(VolumeError::NotLinear(_))));
}
