//! What the oxcopy crates' tests share: one deterministic data pattern and
//! byte helpers (this file), process guards ([`process`]), the real
//! `oxcopyd` binary as a child process ([`daemon`]), loop-mounted
//! filesystems ([`loopfs`]) and a builder for `oxcopyd` configuration files
//! ([`config`]).
//!
//! It depends on no oxcopy crate, so that any of them (the initiator's and
//! the SCSI model's own unit tests included) can use it as a
//! dev-dependency.

pub mod config;
pub mod daemon;
pub mod loopfs;
pub mod process;

pub use config::{Chap, DaemonConfig, Lun, Target};
pub use daemon::{Proc, Spawn, SpawnError};
pub use loopfs::LoopFs;
pub use process::{output_within, status_within, ChildGuard};

use std::os::unix::fs::FileExt;
use std::path::Path;

/// `len` deterministic pseudo-random bytes (xorshift64*), distinct per
/// `seed`; a shorter pattern of a seed is a prefix of a longer one.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A TCP port on `ip` that was free a moment ago (bound to port 0, then
/// released): for configuration files that must name a port before the
/// daemon starts (a node link, a metrics endpoint). Another process may
/// take it in between; tests accept that small race.
pub fn free_port(ip: std::net::IpAddr) -> u16 {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}:0: {e}"));
    l.local_addr().expect("local address").port()
}

/// Write a 32-byte copy-domain key (bytes of [`pattern`]`(seed)`) to
/// `path`, mode 0600, and return `path`.
pub fn write_key_file(path: &Path, seed: u64) -> std::path::PathBuf {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::os::unix::fs::PermissionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.set_permissions(std::fs::Permissions::from_mode(0o600)).expect("chmod 0600");
    f.write_all(&pattern(seed, 32)).expect("write key");
    path.to_path_buf()
}

/// FNV-1a 64 of `data`: a cheap checksum for comparing large regions.
pub fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Assert `got == want` without dumping megabytes on failure: the message
/// names `what` and the first differing byte.
#[track_caller]
pub fn assert_same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if got == want {
        return; // memcmp: fast even in debug builds
    }
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: first difference at byte {i} (got {:#04x}, want {:#04x})", got[i], want[i]);
    }
}

/// `len` bytes at byte `offset` of a file (e.g. a LUN's backing file);
/// `len` may be any integer type. Panics if the file is shorter.
#[track_caller]
pub fn file_bytes<L>(path: &Path, offset: u64, len: L) -> Vec<u8>
where
    L: TryInto<usize>,
    L::Error: std::fmt::Debug,
{
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut v = vec![0u8; len.try_into().expect("length fits in memory")];
    f.read_exact_at(&mut v, offset).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_deterministic_distinct_and_prefix_stable() {
        assert_eq!(pattern(1, 100), pattern(1, 100));
        assert_ne!(pattern(1, 100), pattern(2, 100));
        assert_eq!(pattern(3, 1000)[..37], pattern(3, 37)[..]);
        assert!(pattern(0, 0).is_empty());
    }

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn key_file_is_32_bytes_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = write_key_file(&dir.path().join("k"), 5);
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!((m.len(), m.permissions().mode() & 0o777), (32, 0o600));
        assert_eq!(std::fs::read(&p).unwrap(), pattern(5, 32));
        let port = free_port("127.0.0.1".parse().unwrap());
        assert_ne!(port, 0);
    }

    #[test]
    fn file_bytes_reads_a_range() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, pattern(9, 4096)).unwrap();
        assert_eq!(file_bytes(&p, 100, 10u64), pattern(9, 4096)[100..110]);
        assert_eq!(file_bytes(&p, 0, 4096usize), pattern(9, 4096));
    }

    #[test]
    #[should_panic(expected = "x: first difference at byte 2")]
    fn assert_same_names_the_first_difference() {
        assert_same(&[1, 2, 3], &[1, 2, 4], "x");
    }
}
