//! FileStorage on a loop-mounted ext4: no reflink, copies go through
//! copy_file_range. Root only; skipped (with a "skipped: …" line) otherwise,
//! unless OXCOPY_REQUIRE_XFS=1.

mod common;

use common::{create, read, MIB};
use oxcopy_storage::Storage;
use oxcopy_testkit::{pattern, LoopFs};

#[test]
fn ext4_copies_use_copy_file_range() {
    let Some(fs) = LoopFs::ext4(512) else {
        return;
    };
    let size = 64 * MIB;
    let a = create(&fs.mnt.join("a.img"), size);
    let b = create(&fs.mnt.join("b.img"), size);
    let caps = a.capabilities();
    eprintln!("ext4 capabilities: {caps:?}");
    assert!(!caps.reflink);
    assert!(caps.discard && caps.allocation_status);

    let data = pattern(8, 24 * MIB as usize);
    a.write_at(&data, 8 * MIB).unwrap();
    let r = b.copy_range(0, &a, 0, size).unwrap();
    eprintln!("ext4 copy: {r:?}");
    assert_eq!(r.reflink, 0, "{r:?}");
    assert_eq!(r.read_write, 0, "{r:?}");
    assert_eq!(r.copy_file_range, 24 * MIB, "{r:?}");
    assert_eq!(r.hole, 40 * MIB, "{r:?}");
    assert_eq!(read(&b, 0, size), read(&a, 0, size));

    let r = b.copy_range(333, &a, 8 * MIB + 5, 3 * MIB).unwrap();
    assert_eq!((r.reflink, r.copy_file_range), (0, 3 * MIB), "{r:?}");
    assert_eq!(read(&b, 333, 3 * MIB), &data[5..5 + 3 * MIB as usize]);
}
