//! `Storage::snapshot` / `Storage::scratch` on real filesystems: on XFS
//! (reflink=1) a point-in-time snapshot shares extents (no data blocks are
//! used) and keeps the old data after the source is overwritten, and nothing
//! is left in the directory; on ext4 there is no cheap snapshot (`None`) but
//! an unlinked sparse scratch file. Root only; skipped (with a "skipped: …"
//! line) otherwise, unless OXCOPY_REQUIRE_XFS=1.

mod common;

use common::{create, read, MIB};
use oxcopy_storage::Storage;
use oxcopy_testkit::{pattern, LoopFs};
use std::path::Path;

fn free_bytes(dir: &Path) -> u64 {
    let st = rustix::fs::statvfs(dir).unwrap();
    st.f_bavail * st.f_frsize
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn xfs_snapshot_is_metadata_only_and_point_in_time() {
    let Some(fs) = LoopFs::xfs_reflink(512) else {
        return;
    };
    let a = create(&fs.mnt.join("a.img"), 128 * MIB);
    assert!(a.capabilities().reflink);
    let data = pattern(13, 96 * MIB as usize);
    a.write_at(&data, 0).unwrap();
    a.flush().unwrap();
    let before = entries(&fs.mnt);
    let free = free_bytes(&fs.mnt);
    let snap = a.snapshot(&[(8 * MIB, 32 * MIB), (64 * MIB, 16 * MIB)]).unwrap().expect("reflink snapshot");
    assert_eq!(snap.len(), 48 * MIB);
    let used = free.saturating_sub(free_bytes(&fs.mnt));
    eprintln!("48 MiB snapshot used {used} bytes");
    assert!(used < 4 * MIB, "a reflink snapshot uses metadata only, not {used} bytes");
    assert_eq!(entries(&fs.mnt), before, "the snapshot has no name");
    // Overwrite the source: the snapshot keeps the point in time.
    a.write_at(&vec![0xEE; 96 * MIB as usize], 0).unwrap();
    assert_eq!(read(snap.as_ref(), 0, 32 * MIB), &data[8 * MIB as usize..40 * MIB as usize]);
    assert_eq!(read(snap.as_ref(), 32 * MIB, 16 * MIB), &data[64 * MIB as usize..80 * MIB as usize]);
    // Unaligned ranges are not cheap: no snapshot.
    assert!(a.snapshot(&[(512, 4096)]).unwrap().is_none());
    drop(snap);
    assert_eq!(entries(&fs.mnt), before);
}

#[test]
fn ext4_has_no_cheap_snapshot_but_a_sparse_scratch_file() {
    let Some(fs) = LoopFs::ext4(512) else {
        return;
    };
    let a = create(&fs.mnt.join("a.img"), 64 * MIB);
    a.write_at(&[7u8; 4096], 0).unwrap();
    assert!(a.snapshot(&[(0, 4096)]).unwrap().is_none());
    let before = entries(&fs.mnt);
    let free = free_bytes(&fs.mnt);
    let s = a.scratch(64 * MIB).unwrap().expect("scratch file");
    assert_eq!(s.len(), 64 * MIB);
    assert_eq!(entries(&fs.mnt), before, "unlinked");
    assert!(free.saturating_sub(free_bytes(&fs.mnt)) < MIB, "sparse");
    s.copy_range(0, &a, 0, 4096).unwrap();
    assert_eq!(read(s.as_ref(), 0, 4096), vec![7u8; 4096]);
    assert_eq!(read(s.as_ref(), 8 * MIB, 4096), vec![0u8; 4096]);
}
