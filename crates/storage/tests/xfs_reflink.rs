//! FileStorage on a loop-mounted XFS with reflink: copies must share extents.
//! Root only; skipped (with a "skipped: …" line) otherwise, unless
//! OXCOPY_REQUIRE_XFS=1.

mod common;

use common::{create, read, MIB};
use oxcopy_storage::Storage;
use oxcopy_testkit::{pattern, LoopFs};

#[test]
fn xfs_copies_use_reflink() {
    let Some(fs) = LoopFs::xfs_reflink(512) else {
        return;
    };
    let size = 64 * MIB;
    let a = create(&fs.mnt.join("a.img"), size);
    let b = create(&fs.mnt.join("b.img"), size);
    let caps = a.capabilities();
    eprintln!("XFS capabilities: {caps:?}");
    assert!(caps.reflink, "reflink probe failed on XFS reflink=1");
    assert!(caps.discard && caps.allocation_status);
    let bs = u64::from(caps.fs_block_size);
    assert_eq!(bs, 4096);

    // Source: 16 MiB of data, a hole, 8 MiB more data, hole to the end.
    let d1 = pattern(1, 16 * MIB as usize);
    let d2 = pattern(2, 8 * MIB as usize);
    a.write_at(&d1, 0).unwrap();
    a.write_at(&d2, 32 * MIB).unwrap();
    b.write_at(&pattern(9, size as usize), 0).unwrap();

    // Whole aligned copy: data reflinked, holes punched.
    let r = b.copy_range(0, &a, 0, size).unwrap();
    eprintln!("aligned whole copy: {r:?}");
    assert_eq!(r.total(), size);
    assert_eq!(r.reflink, 24 * MIB, "{r:?}");
    assert_eq!(r.hole, 40 * MIB, "{r:?}");
    assert_eq!(r.copy_file_range + r.read_write, 0, "{r:?}");
    assert_eq!(read(&b, 0, size), read(&a, 0, size));

    // Equal misalignment: unaligned head and tail by copy_file_range,
    // the aligned middle by reflink.
    let r = b.copy_range(100, &a, 100, 10 * MIB).unwrap();
    eprintln!("head/middle/tail copy: {r:?}");
    assert_eq!(r.total(), 10 * MIB);
    assert_eq!(r.copy_file_range, (bs - 100) + 100, "{r:?}");
    assert_eq!(r.reflink, 10 * MIB - bs, "{r:?}");
    assert_eq!(read(&b, 100, 10 * MIB), &d1[100..100 + 10 * MIB as usize]);

    // Different misalignment: no block lines up, kernel copy only.
    let r = b.copy_range(MIB + 1, &a, 0, 2 * MIB).unwrap();
    eprintln!("misaligned copy: {r:?}");
    assert_eq!((r.reflink, r.copy_file_range), (0, 2 * MIB), "{r:?}");
    assert_eq!(read(&b, MIB + 1, 2 * MIB), &d1[..2 * MIB as usize]);

    // Within one file, non-overlapping: reflink too.
    let r = a.copy_range(48 * MIB, &a, 0, 4 * MIB).unwrap();
    assert_eq!(r.reflink, 4 * MIB, "{r:?}");
    assert_eq!(read(&a, 48 * MIB, 4 * MIB), &d1[..4 * MIB as usize]);

    // Overlapping within one file: generic safe-direction copy, still right.
    let before = read(&a, 0, 16 * MIB);
    let r = a.copy_range(4096, &a, 0, 8 * MIB).unwrap();
    assert_eq!(r.read_write, 8 * MIB, "{r:?}");
    let mut model = before.clone();
    model.copy_within(0..8 * MIB as usize, 4096);
    assert_eq!(read(&a, 0, 16 * MIB), model);

    // Writes after a reflink do not leak into the other file (CoW).
    let snapshot = read(&b, 0, 4 * MIB);
    a.write_at(&vec![0xab; 4 * MIB as usize], 0).unwrap();
    assert_eq!(read(&b, 0, 4 * MIB), snapshot);

    // Snapshot primitive: reflinked hidden file, unaffected by later writes.
    let (snap, r) = b.snapshot_range(0, 16 * MIB).unwrap();
    assert_eq!(r.reflink, 16 * MIB, "{r:?}");
    let old = read(&b, 0, 16 * MIB);
    b.write_zeroes(0, 16 * MIB).unwrap();
    assert_eq!(read(&snap, 0, 16 * MIB), old);

    // Across filesystems (XFS → the host temp dir): EXDEV, falls back.
    let other_dir = tempfile::tempdir().unwrap();
    let c = create(&other_dir.path().join("c.img"), size);
    let r = c.copy_range(0, &a, 0, 16 * MIB).unwrap();
    eprintln!("cross-filesystem copy: {r:?}");
    assert_eq!(r.reflink, 0, "{r:?}");
    assert_eq!(r.total(), 16 * MIB);
    assert_eq!(read(&c, 0, 16 * MIB), read(&a, 0, 16 * MIB));
    b.flush().unwrap();
}
