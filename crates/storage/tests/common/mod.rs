//! What the storage integration tests share (the generic parts, data
//! patterns and loop filesystems, are `oxcopy_testkit`'s).

use oxcopy_storage::{FileStorage, OpenOptions, Storage};
use std::path::Path;

pub const MIB: u64 = 1 << 20;

/// A new sparse backing file of `size` bytes at `path`, read-write.
pub fn create(path: &Path, size: u64) -> FileStorage {
    FileStorage::open(path, &OpenOptions { create_size: Some(size), read_only: false }).unwrap()
}

/// `len` bytes at `off` of `s`.
pub fn read(s: &dyn Storage, off: u64, len: u64) -> Vec<u8> {
    let mut v = vec![0u8; len as usize];
    s.read_at(&mut v, off).unwrap();
    v
}
