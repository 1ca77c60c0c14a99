//! FileStorage on the default temp directory (ext4 on the dev box; whatever
//! `std::env::temp_dir()` is elsewhere). Reflink-specific behaviour is in
//! `xfs_reflink.rs` / `ext4_loop.rs` on loop-mounted filesystems.

mod common;

use common::{create, read, MIB};
use oxcopy_storage::{CopyReport, FileStorage, MemStorage, OpenOptions, Storage, StorageErrorKind};
use oxcopy_testkit::{output_within, pattern};
use proptest::prelude::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn read_all(s: &dyn Storage) -> Vec<u8> {
    read(s, 0, s.len())
}

fn fs_type(path: &Path) -> String {
    let out =
        output_within(Command::new("findmnt").args(["-n", "-o", "FSTYPE", "-T"]).arg(path), Duration::from_secs(20));
    out.ok().flatten().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}

#[test]
fn create_is_sparse_and_reopen_never_resizes() {
    let dir = tempfile::tempdir().unwrap();
    eprintln!("temp dir {} is {}", dir.path().display(), fs_type(dir.path()));
    let p = dir.path().join("lun0.img");
    let s = create(&p, 64 * MIB);
    assert_eq!(s.len(), 64 * MIB);
    assert_eq!(s.path(), p.as_path());
    let md = std::fs::metadata(&p).unwrap();
    assert_eq!(md.len(), 64 * MIB);
    assert_eq!(md.blocks(), 0, "fresh LUN must be sparse");
    assert_eq!(md.mode() & 0o777, 0o600);
    s.write_at(b"hello", 4096).unwrap();
    s.flush().unwrap();
    drop(s);

    // Same size: fine. No size: adopt the file's size.
    let s = create(&p, 64 * MIB);
    let mut b = [0u8; 5];
    s.read_at(&mut b, 4096).unwrap();
    assert_eq!(&b, b"hello");
    drop(s);
    let s = FileStorage::open(&p, &OpenOptions::default()).unwrap();
    assert_eq!(s.len(), 64 * MIB);
    drop(s);

    // Different size: refused, file untouched.
    for wrong in [32 * MIB, 128 * MIB] {
        let err = FileStorage::open(&p, &OpenOptions { create_size: Some(wrong), read_only: false }).unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::SizeMismatch);
        let msg = err.to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(msg.contains(&(64 * MIB).to_string()) && msg.contains(&wrong.to_string()), "{msg}");
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 64 * MIB);
    }
    // Only the LUN file is in the directory: no temporaries left over.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("lun0.img")]);
}

#[test]
fn missing_file_without_create_size_or_read_only_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("missing.img");
    let err = FileStorage::open(&p, &OpenOptions::default()).unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Io);
    assert!(err.to_string().contains("missing.img"), "{err}");
    let err = FileStorage::open(&p, &OpenOptions { create_size: Some(MIB), read_only: true }).unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    assert!(!p.exists());
    // Not a regular file.
    let err = FileStorage::open(dir.path(), &OpenOptions::default()).unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Unsupported);
}

#[test]
fn failed_creation_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.img");
    // Larger than any filesystem's maximum file size: ftruncate fails (EFBIG/EINVAL).
    let err = FileStorage::open(&p, &OpenOptions { create_size: Some(u64::MAX / 2), read_only: false }).unwrap_err();
    assert!(err.to_string().contains("huge.img"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no half-made file");
}

#[test]
fn bounds_are_checked_and_truncation_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("b.img");
    let s = create(&p, 8192);
    s.write_at(&[7; 3], 8189).unwrap();
    let oor = |r: oxcopy_storage::Result<()>| assert_eq!(r.unwrap_err().kind, StorageErrorKind::OutOfRange);
    oor(s.write_at(&[1; 4], 8189));
    oor(s.read_at(&mut [0; 1], 8192));
    oor(s.read_at(&mut [0; 1], u64::MAX));
    oor(s.discard(8000, 193));
    oor(s.write_zeroes(u64::MAX, 2));
    assert_eq!(s.allocation(8192, 1).unwrap_err().kind, StorageErrorKind::OutOfRange);
    assert_eq!(s.copy_range(8000, &s, 0, 193).unwrap_err().kind, StorageErrorKind::OutOfRange);
    assert_eq!(s.copy_range(0, &s, u64::MAX, 2).unwrap_err().kind, StorageErrorKind::OutOfRange);
    // The failed write did not touch the last bytes.
    let mut b = [0u8; 3];
    s.read_at(&mut b, 8189).unwrap();
    assert_eq!(b, [7; 3]);
    // Zero-length operations at the end are fine.
    s.read_at(&mut [], 8192).unwrap();
    s.discard(8192, 0).unwrap();

    // Someone truncates the file behind our back: reads past the new EOF are
    // Io errors, never short reads or panics.
    std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(4096).unwrap();
    let err = s.read_at(&mut [0; 16], 8000).unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Io);
    assert!(err.to_string().contains("shorter"), "{err}");
}

#[test]
fn read_only_store_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ro.img");
    create(&p, MIB).write_at(b"data", 0).unwrap();
    let ro = FileStorage::open(&p, &OpenOptions { create_size: None, read_only: true }).unwrap();
    assert!(ro.is_read_only());
    let mut b = [0u8; 4];
    ro.read_at(&mut b, 0).unwrap();
    assert_eq!(&b, b"data");
    assert_eq!(ro.write_at(b"x", 0).unwrap_err().kind, StorageErrorKind::ReadOnly);
    assert_eq!(ro.discard(0, 4096).unwrap_err().kind, StorageErrorKind::ReadOnly);
    assert_eq!(ro.write_zeroes(0, 4096).unwrap_err().kind, StorageErrorKind::ReadOnly);
    assert_eq!(ro.copy_range(4096, &ro, 0, 4).unwrap_err().kind, StorageErrorKind::ReadOnly);
    assert!(!ro.capabilities().discard);
    ro.flush().unwrap();
    // A read-only store is a fine copy source.
    let rw = create(&dir.path().join("rw.img"), MIB);
    let r = rw.copy_range(0, &ro, 0, MIB).unwrap();
    assert_eq!(r.total(), MIB);
    rw.read_at(&mut b, 0).unwrap();
    assert_eq!(&b, b"data");
}

#[test]
fn discard_punches_holes_and_allocation_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = create(&dir.path().join("d.img"), 8 * MIB);
    let caps = s.capabilities();
    eprintln!("capabilities on {}: {caps:?}", fs_type(dir.path()));
    assert!(caps.discard && caps.discard_zeroes && caps.allocation_status);
    assert!(caps.fs_block_size >= 512 && caps.fs_block_size.is_power_of_two());

    // Fresh: one hole over everything.
    let run = s.allocation(0, 8 * MIB).unwrap();
    assert!(!run.mapped);
    assert_eq!(run.len, 8 * MIB);

    s.write_at(&pattern(1, 4 * MIB as usize), 2 * MIB).unwrap();
    let run = s.allocation(0, 8 * MIB).unwrap();
    assert_eq!((run.mapped, run.len), (false, 2 * MIB));
    let run = s.allocation(2 * MIB, 6 * MIB).unwrap();
    assert_eq!((run.mapped, run.len), (true, 4 * MIB));
    // Clipped to the query length.
    assert_eq!(s.allocation(3 * MIB, 4096).unwrap().len, 4096);
    // Past the last data: ENXIO → hole to the end.
    assert_eq!(s.allocation(6 * MIB, 2 * MIB).unwrap(), oxcopy_storage::AllocationRun { mapped: false, len: 2 * MIB });

    s.discard(3 * MIB, MIB).unwrap();
    let run = s.allocation(3 * MIB, 3 * MIB).unwrap();
    assert_eq!((run.mapped, run.len), (false, MIB));
    let mut b = vec![1u8; MIB as usize];
    s.read_at(&mut b, 3 * MIB).unwrap();
    assert!(b.iter().all(|&x| x == 0));

    // Unaligned discard still reads back zero, neighbours intact.
    s.discard(2 * MIB + 100, 5000).unwrap();
    let mut b = vec![0u8; 5200];
    s.read_at(&mut b, 2 * MIB).unwrap();
    let p = pattern(1, 4 * MIB as usize);
    assert_eq!(&b[..100], &p[..100]);
    assert!(b[100..5100].iter().all(|&x| x == 0));
    assert_eq!(&b[5100..], &p[5100..5200]);

    // write_zeroes reads back zero.
    s.write_zeroes(4 * MIB + 7, 12345).unwrap();
    let mut b = vec![1u8; 12345];
    s.read_at(&mut b, 4 * MIB + 7).unwrap();
    assert!(b.iter().all(|&x| x == 0));
}

#[test]
fn copy_between_files_uses_kernel_copy_and_skips_holes() {
    let dir = tempfile::tempdir().unwrap();
    let a = create(&dir.path().join("a.img"), 16 * MIB);
    let b = create(&dir.path().join("b.img"), 16 * MIB);
    let data = pattern(9, 4 * MIB as usize);
    a.write_at(&data, 4 * MIB).unwrap();
    b.write_at(&pattern(3, 16 * MIB as usize), 0).unwrap(); // dst holes must end up zero
    let r = b.copy_range(0, &a, 0, 16 * MIB).unwrap();
    eprintln!("copy report on {}: {r:?} (reflink capability {})", fs_type(dir.path()), a.capabilities().reflink);
    assert_eq!(r.total(), 16 * MIB);
    assert_eq!(r.hole, 12 * MIB, "{r:?}");
    if a.capabilities().reflink {
        assert_eq!(r.reflink, 4 * MIB, "{r:?}");
    } else {
        assert_eq!(r.copy_file_range, 4 * MIB, "{r:?}");
    }
    assert_eq!(read_all(&b), read_all(&a));
    // The destination holes really are holes again.
    assert!(!b.allocation(0, 4 * MIB).unwrap().mapped);

    // Unaligned copy of data.
    let r = b.copy_range(1001, &a, 4 * MIB + 3, 2 * MIB).unwrap();
    assert_eq!(r.total(), 2 * MIB);
    assert_eq!(r.read_write, 0, "{r:?}");
    let mut got = vec![0u8; 2 * MIB as usize];
    b.read_at(&mut got, 1001).unwrap();
    assert_eq!(got, &data[3..3 + 2 * MIB as usize]);
}

#[test]
fn sparse_4gib_copy_does_not_read_zeroes() {
    let dir = tempfile::tempdir().unwrap();
    let size = 4 << 30;
    let a = create(&dir.path().join("big-a.img"), size);
    let b = create(&dir.path().join("big-b.img"), size);
    a.write_at(&pattern(5, MIB as usize), 0).unwrap();
    a.write_at(&pattern(6, MIB as usize), size / 2 + 4096).unwrap();
    a.write_at(&pattern(7, 4096), size - 4096).unwrap();
    let t = std::time::Instant::now();
    let r = b.copy_range(0, &a, 0, size).unwrap();
    eprintln!("4 GiB sparse copy: {r:?} in {:?}", t.elapsed());
    assert_eq!(r.total(), size);
    assert!(r.hole >= size - 3 * MIB, "{r:?}");
    assert_eq!(r.read_write, 0);
    for (off, len) in [(0, MIB), (size / 2, 2 * MIB), (size - MIB, MIB)] {
        let (mut x, mut y) = (vec![0u8; len as usize], vec![1u8; len as usize]);
        a.read_at(&mut x, off).unwrap();
        b.read_at(&mut y, off).unwrap();
        assert_eq!(x, y, "at {off}");
    }
    assert!(std::fs::metadata(b.path()).unwrap().blocks() * 512 < 16 * MIB, "destination stays sparse");
}

#[test]
fn overlapping_copy_within_one_file_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("o.img");
    let len = 4 * MIB;
    let bytes = pattern(11, len as usize);
    for (dst, src, n) in
        [(4096u64, 0u64, 3 * MIB), (0, 4096, 3 * MIB), (100, 0, 3 * MIB + 7), (0, 333, MIB), (0, 0, MIB)]
    {
        let s = create(&p, len);
        s.write_at(&bytes, 0).unwrap();
        let r = s.copy_range(dst, &s, src, n).unwrap();
        assert_eq!(r.total(), n);
        let mut model = bytes.clone();
        model.copy_within(src as usize..(src + n) as usize, dst as usize);
        assert_eq!(read_all(&s), model, "dst {dst} src {src} len {n}");
        // Same file behind a second descriptor.
        s.write_at(&bytes, 0).unwrap();
        let other = FileStorage::open(&p, &OpenOptions::default()).unwrap();
        s.copy_range(dst, &other, src, n).unwrap();
        assert_eq!(read_all(&s), model, "second fd: dst {dst} src {src} len {n}");
        drop((s, other));
        std::fs::remove_file(&p).unwrap();
    }
    // Non-overlapping ranges of one file go through the kernel.
    let s = create(&p, len);
    s.write_at(&bytes, 0).unwrap();
    let r = s.copy_range(2 * MIB, &s, 0, MIB).unwrap();
    assert_eq!(r.read_write, 0, "{r:?}");
    let mut model = bytes.clone();
    model.copy_within(0..MIB as usize, 2 * MIB as usize);
    assert_eq!(read_all(&s), model);
}

#[test]
fn copies_to_and_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let f = create(&dir.path().join("m.img"), MIB);
    let m = MemStorage::from_bytes(&pattern(2, MIB as usize));
    let r = f.copy_range(0, &m, 0, MIB).unwrap();
    assert_eq!(r, CopyReport { read_write: MIB, ..Default::default() });
    assert_eq!(read_all(&f), m.contents());
    let m2 = MemStorage::new(MIB as usize);
    m2.copy_range(10, &f, 0, MIB - 10).unwrap();
    assert_eq!(&m2.contents()[10..], &m.contents()[..(MIB - 10) as usize]);
}

#[test]
fn snapshot_range_keeps_the_old_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = create(&dir.path().join("snap.img"), 4 * MIB);
    let data = pattern(4, 4 * MIB as usize);
    s.write_at(&data, 0).unwrap();
    let (snap, r) = s.snapshot_range(MIB, 2 * MIB).unwrap();
    assert_eq!(r.total(), 2 * MIB);
    s.write_at(&vec![0xee; 4 * MIB as usize], 0).unwrap();
    assert_eq!(read_all(&snap), &data[MIB as usize..3 * MIB as usize]);
    // Hidden: nothing new in the directory.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[derive(Debug, Clone)]
enum Op {
    Write { file: usize, off: u64, len: u64, seed: u8 },
    Discard { file: usize, off: u64, len: u64 },
    Copy { dst: usize, dst_off: u64, src: usize, src_off: u64, len: u64 },
}

const PSIZE: u64 = 512 * 1024;

fn range() -> impl Strategy<Value = (u64, u64)> {
    // Mix of block-aligned and odd ranges, some large enough to hold holes
    // above the hole-skip threshold.
    prop_oneof![(0..PSIZE / 4096, 0..=PSIZE / 4096).prop_map(|(a, n)| (a * 4096, n * 4096)), (0..PSIZE, 0..PSIZE),]
        .prop_map(|(off, len)| (off, len.min(PSIZE - off)))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..2usize, range(), any::<u8>()).prop_map(|(file, (off, len), seed)| Op::Write {
            file,
            off,
            len: len.min(128 * 1024),
            seed
        }),
        (0..2usize, range()).prop_map(|(file, (off, len))| Op::Discard { file, off, len }),
        (0..2usize, 0..2usize, range(), 0..PSIZE).prop_map(|(dst, src, (src_off, len), d)| {
            let len = len.min(PSIZE - d);
            Op::Copy { dst, dst_off: d, src, src_off, len }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn random_copies_match_a_naive_model(ops in proptest::collection::vec(op(), 1..12)) {
        let dir = tempfile::tempdir().unwrap();
        let files = [create(&dir.path().join("p0.img"), PSIZE), create(&dir.path().join("p1.img"), PSIZE)];
        let mut model = vec![vec![0u8; PSIZE as usize]; 2];
        for op in ops {
            match op {
                Op::Write { file, off, len, seed } => {
                    let data = pattern(u64::from(seed), len as usize);
                    files[file].write_at(&data, off).unwrap();
                    model[file][off as usize..(off + len) as usize].copy_from_slice(&data);
                }
                Op::Discard { file, off, len } => {
                    files[file].discard(off, len).unwrap();
                    model[file][off as usize..(off + len) as usize].fill(0);
                }
                Op::Copy { dst, dst_off, src, src_off, len } => {
                    let r = files[dst].copy_range(dst_off, &files[src], src_off, len).unwrap();
                    prop_assert_eq!(r.total(), len);
                    let chunk = model[src][src_off as usize..(src_off + len) as usize].to_vec();
                    model[dst][dst_off as usize..(dst_off + len) as usize].copy_from_slice(&chunk);
                }
            }
        }
        for (f, m) in files.iter().zip(&model) {
            prop_assert!(read_all(f) == *m);
        }
    }
}

#[test]
fn stale_temporaries_of_dead_processes_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join(".snapshot.oxcopy-tmp.4000000.3");
    let alive = dir.path().join(format!(".snapshot.oxcopy-tmp.{}.1", std::process::id()));
    let lun_tmp = dir.path().join(".a.img.oxcopy-tmp.4000001.0");
    let other = dir.path().join("a.img");
    let odd = dir.path().join(".x.oxcopy-tmp.notapid.1");
    for p in [&dead, &alive, &lun_tmp, &other, &odd] {
        std::fs::write(p, b"x").unwrap();
    }
    let mut removed = oxcopy_storage::remove_stale_temporaries(dir.path()).unwrap();
    removed.sort();
    assert_eq!(removed, vec![lun_tmp.clone(), dead.clone()]);
    assert!(alive.exists() && other.exists() && odd.exists());
}

/// Write-behind starts writeback once per window of bytes written (and
/// never when off); the data is as written either way.
#[test]
fn write_behind_starts_writeback_every_window() {
    let dir = tempfile::tempdir().unwrap();
    let s = FileStorage::open(&dir.path().join("wb"), &OpenOptions { create_size: Some(16 * MIB), read_only: false })
        .unwrap();
    let data = pattern(5, MIB as usize);
    s.write_at(&data, 0).unwrap();
    assert_eq!(s.writebacks_started(), 0, "off by default");
    s.set_write_behind(Some(4 * MIB));
    for i in 0..10u64 {
        s.write_at(&data, i * MIB).unwrap();
    }
    assert_eq!(s.writebacks_started(), 2, "10 MiB written with a 4 MiB window");
    s.set_write_behind(None);
    s.write_at(&data, 10 * MIB).unwrap();
    assert_eq!(s.writebacks_started(), 2);
    let mut back = vec![0u8; MIB as usize];
    s.read_at(&mut back, 9 * MIB).unwrap();
    assert_eq!(back, data);
}
