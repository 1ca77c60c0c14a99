//! Integration tests against a real Ceph cluster.
//!
//! Set `OXCOPY_CEPH_CONF` to a ceph.conf with client.admin access and a pool
//! `rbd` (`scripts/ceph-cluster.sh start DIR` prints one). Without it the
//! cluster tests print a loud SKIPPED line and pass, unless
//! `OXCOPY_REQUIRE_CEPH=1`, which makes them fail instead (CI).
#![cfg(feature = "ceph")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxcopy_rbd::{rbd_error_kind, RbdErrorKind, RbdOptions, RbdStorage, SNAPSHOT_PREFIX};
use oxcopy_storage::{CopyMethod, Storage, StorageErrorKind};

const MIB: u64 = 1 << 20;
const OBJ: u64 = 4 * MIB;

fn require() -> bool {
    std::env::var("OXCOPY_REQUIRE_CEPH").is_ok_and(|v| v == "1")
}

fn conf() -> Option<PathBuf> {
    match std::env::var_os("OXCOPY_CEPH_CONF") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            assert!(!require(), "OXCOPY_REQUIRE_CEPH=1 but OXCOPY_CEPH_CONF is not set");
            // Straight to stderr: the test harness does not capture this, so
            // the skip shows up even without --nocapture.
            let _ = writeln!(
                std::io::stderr(),
                "\n********************************************************************\n\
                 SKIPPED: no OXCOPY_CEPH_CONF (scripts/ceph-cluster.sh start DIR prints one)\n\
                 ********************************************************************"
            );
            None
        }
    }
}

/// A uniquely named image in pool `rbd`, removed (best effort) when dropped.
struct TestImage {
    conf: PathBuf,
    name: String,
    pool: String,
}

impl TestImage {
    fn new(conf: &Path, what: &str) -> Self {
        TestImage {
            conf: conf.to_path_buf(),
            name: format!("oxcopy-test-{what}-{:08x}", rand::random::<u32>()),
            pool: "rbd".into(),
        }
    }

    fn opts(&self, size: u64) -> RbdOptions {
        let mut o = RbdOptions::new(&self.conf, &self.pool, &self.name);
        o.create_size = Some(size);
        o.op_timeout = Duration::from_secs(20);
        o
    }

    fn rbd(&self, args: &[&str]) -> String {
        let out = Command::new("timeout")
            .arg("60")
            .arg("rbd")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .expect("run the rbd CLI");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn spec(&self) -> String {
        format!("{}/{}", self.pool, self.name)
    }

    /// Create the image with the rbd CLI: `size` and `object_size` in bytes,
    /// `features` as `rbd create --image-feature` takes them.
    fn create_cli(conf: &Path, pool: &str, what: &str, size: u64, object_size: u64, features: &str) -> Self {
        let mut t = TestImage::new(conf, what);
        t.pool = pool.into();
        let out = Command::new("timeout")
            .args(["60", "rbd", "-c"])
            .arg(conf)
            .args([
                "create",
                "--size",
                &format!("{}K", size >> 10),
                "--object-size",
                &format!("{}K", object_size >> 10),
            ])
            .args(["--image-feature", features, &t.spec()])
            .output()
            .expect("run the rbd CLI");
        assert!(out.status.success(), "rbd create {}: {}", t.spec(), String::from_utf8_lossy(&out.stderr));
        t
    }

    /// Open the existing image, exclusive or not.
    fn open(&self, exclusive: bool) -> RbdStorage {
        let mut o = self.opts(0);
        o.create_size = None;
        o.exclusive = exclusive;
        RbdStorage::open(&o).expect("open")
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let spec = self.spec();
        self.rbd(&["snap", "purge", &spec]);
        self.rbd(&["rm", "--no-progress", &spec]);
    }
}

/// A deterministic pattern that differs per byte position and per seed.
fn pattern(seed: u8, offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| ((offset + i).wrapping_mul(2654435761) >> 13) as u8 ^ seed).collect()
}

/// Compare without dumping megabytes on failure.
fn same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: first difference at byte {i}: got {} want {}", got[i], want[i]);
    }
}

fn read(s: &dyn Storage, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0xAAu8; len];
    s.read_at(&mut buf, offset).expect("read");
    buf
}

#[test]
fn create_write_read_across_objects() {
    let Some(conf) = conf() else { return };
    let t = TestImage::new(&conf, "rw");
    let s = RbdStorage::open(&t.opts(16 * MIB)).expect("create + open");
    assert_eq!(s.len(), 16 * MIB);
    assert_eq!(s.object_size(), OBJ);
    assert!(read(&s, 0, 8192).iter().all(|&b| b == 0), "new image reads zero");

    // 9 MiB + 777 bytes starting 1000 bytes before the first object boundary:
    // three objects, unaligned at both ends.
    let off = OBJ - 1000;
    let data = pattern(1, off, (9 * MIB + 777) as usize);
    s.write_at(&data, off).expect("write");
    s.flush().expect("flush");
    same(&read(&s, off, data.len()), &data, "read back");
    // unaligned sub-ranges, one crossing the second boundary
    let sub = 2 * OBJ - 333;
    assert_eq!(read(&s, sub, 4000), &data[(sub - off) as usize..(sub - off) as usize + 4000]);
    assert!(read(&s, off - 24, 24).iter().all(|&b| b == 0), "bytes before the write untouched");

    // out of range is refused before touching the cluster
    let e = s.write_at(&[1], 16 * MIB).expect_err("past the end");
    assert_eq!(e.kind, StorageErrorKind::OutOfRange);
    let mut b = [0u8; 2];
    assert_eq!(s.read_at(&mut b, 16 * MIB - 1).expect_err("crosses the end").kind, StorageErrorKind::OutOfRange);
    s.read_at(&mut [], 16 * MIB).expect("empty read at the end");

    // reopen sees the same data (existing image, create_size ignored)
    drop(s);
    let s = RbdStorage::open(&t.opts(1)).expect("reopen");
    assert_eq!(s.len(), 16 * MIB);
    same(&read(&s, off, data.len()), &data, "read back");
}

#[test]
fn concurrent_io_from_many_threads() {
    let Some(conf) = conf() else { return };
    let t = TestImage::new(&conf, "mt");
    let s = Arc::new(RbdStorage::open(&t.opts(32 * MIB)).expect("open"));
    let threads: Vec<_> = (0..8u64)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || {
                let off = i * 4 * MIB + 512 * i + 17;
                for round in 0..4u8 {
                    let data = pattern(round ^ i as u8, off, 300_000);
                    s.write_at(&data, off).expect("write");
                    same(&read(&*s, off, data.len()), &data, "read back");
                }
            })
        })
        .collect();
    for th in threads {
        th.join().expect("thread");
    }
}

#[test]
fn discard_write_zeroes_and_allocation() {
    let Some(conf) = conf() else { return };
    let t = TestImage::new(&conf, "alloc");
    let s = RbdStorage::open(&t.opts(16 * MIB)).expect("open");
    let caps = s.capabilities();
    assert!(caps.discard && caps.discard_zeroes && caps.allocation_status && !caps.reflink);

    let run = s.allocation(0, 16 * MIB).expect("allocation");
    assert!(!run.mapped && run.len == 16 * MIB, "fresh image is one hole: {run:?}");

    let data = pattern(7, 0, (12 * MIB) as usize);
    s.write_at(&data, 0).expect("write objects 0..3");
    let run = s.allocation(0, 16 * MIB).expect("allocation");
    assert_eq!((run.mapped, run.len), (true, 12 * MIB), "objects 0-2 mapped");
    let run = s.allocation(12 * MIB + 5, 100).expect("allocation");
    assert_eq!((run.mapped, run.len), (false, 100), "object 3 is a hole, clipped to the query");
    let run = s.allocation(MIB + 3, 16 * MIB - MIB - 3).expect("allocation");
    assert_eq!((run.mapped, run.len), (true, 11 * MIB - 3));

    // unaligned discard reads back zero, neighbours intact
    s.discard(100, 5000).expect("discard");
    let got = read(&s, 0, 8192);
    assert_eq!(&got[..100], &data[..100]);
    assert!(got[100..5100].iter().all(|&b| b == 0), "discarded bytes read zero");
    assert_eq!(&got[5100..], &data[5100..8192]);

    // discard of a whole object deallocates it
    s.discard(OBJ, OBJ).expect("discard object 1");
    assert!(read(&s, OBJ - 10, (OBJ + 20) as usize)[10..(OBJ + 10) as usize].iter().all(|&b| b == 0));
    let run = s.allocation(0, 16 * MIB).expect("allocation");
    assert_eq!((run.mapped, run.len), (true, OBJ), "object 0 still mapped");
    let run = s.allocation(OBJ, 12 * MIB).expect("allocation");
    assert_eq!((run.mapped, run.len), (false, OBJ), "object 1 deallocated");
    let run = s.allocation(2 * OBJ, 8 * MIB).expect("allocation");
    assert_eq!((run.mapped, run.len), (true, OBJ), "object 2 mapped, then the hole of object 3");

    // write zeroes inside object 2, unaligned, across into object 3
    let zoff = 3 * OBJ - 4099;
    s.write_zeroes(zoff, 10_000).expect("write zeroes");
    let got = read(&s, zoff - 10, 10_020);
    assert_eq!(&got[..10], &data[(zoff - 10) as usize..zoff as usize]);
    assert!(got[10..10_010].iter().all(|&b| b == 0), "zeroed");
    assert!(got[10_010..].iter().all(|&b| b == 0), "object 3 was never written");
    s.write_zeroes(0, 0).expect("empty");
    s.discard(16 * MIB, 0).expect("empty at the end");
    assert_eq!(s.discard(16 * MIB - 1, 2).expect_err("past the end").kind, StorageErrorKind::OutOfRange);
    s.flush().expect("flush");
}

#[test]
fn snapshot_keeps_old_data_and_is_removed_on_drop() {
    let Some(conf) = conf() else { return };
    let t = TestImage::new(&conf, "snap");
    let s = RbdStorage::open(&t.opts(12 * MIB)).expect("open");
    let old = pattern(3, 0, (12 * MIB) as usize);
    s.write_at(&old, 0).expect("write");

    let ranges = [(OBJ - 512, 8192u64), (100, 4096), (11 * MIB, MIB)];
    let snap = s.snapshot(&ranges).expect("snapshot").expect("rbd can snapshot");
    assert_eq!(snap.len(), 8192 + 4096 + MIB);
    let names = s.snapshot_names().expect("snap list");
    let ours: Vec<_> = names.iter().filter(|n| n.starts_with(SNAPSHOT_PREFIX)).cloned().collect();
    assert_eq!(ours.len(), 1, "{names:?}");
    assert!(t.rbd(&["snap", "ls", &format!("rbd/{}", t.name)]).contains(&ours[0]), "rbd CLI sees it");

    // overwrite everything: the snapshot keeps the old bytes
    let new = pattern(9, 0, (12 * MIB) as usize);
    s.write_at(&new, 0).expect("overwrite");
    s.discard(11 * MIB, MIB).expect("discard");
    let mut expect = Vec::new();
    for &(o, l) in &ranges {
        expect.extend_from_slice(&old[o as usize..(o + l) as usize]);
    }
    same(&read(&*snap, 0, expect.len()), &expect, "ranges laid end to end, old data");
    assert_eq!(read(&*snap, 8000, 300), &expect[8000..8300], "read across two ranges");
    assert_eq!(read(&s, 0, 4096), &new[..4096], "head has the new data");
    let run = snap.allocation(0, snap.len()).expect("snapshot allocation");
    assert!(run.mapped && run.len >= 1 && run.len <= 8192, "{run:?}");

    let e = snap.write_at(&[1], 0).expect_err("read-only");
    assert_eq!(e.kind, StorageErrorKind::ReadOnly);
    assert_eq!(rbd_error_kind(&e), Some(RbdErrorKind::NotWritable));
    assert!(snap.discard(0, 512).is_err());

    // out-of-range ranges: no snapshot
    assert!(s.snapshot(&[(12 * MIB - 1, 2)]).expect("no error").is_none());

    drop(snap);
    let names = s.snapshot_names().expect("snap list");
    assert!(!names.contains(&ours[0]), "snapshot removed on drop: {names:?}");
    assert!(!t.rbd(&["snap", "ls", &format!("rbd/{}", t.name)]).contains(&ours[0]));
}

#[test]
fn snapshot_outlives_its_storage() {
    let Some(conf) = conf() else { return };
    let t = TestImage::new(&conf, "snap2");
    let s = RbdStorage::open(&t.opts(4 * MIB)).expect("open");
    s.write_at(&[5u8; 4096], 0).expect("write");
    let snap = s.snapshot(&[(0, 4096)]).expect("snapshot").expect("some");
    drop(s);
    assert_eq!(read(&*snap, 0, 4096), vec![5u8; 4096]);
    drop(snap);
    let s = RbdStorage::open(&t.opts(4 * MIB)).expect("reopen");
    assert!(s.snapshot_names().expect("list").is_empty());
}

#[test]
fn exclusive_lock_refuses_a_second_opener() {
    let Some(conf) = conf() else { return };
    let t = TestImage::new(&conf, "excl");
    let mut o = t.opts(8 * MIB);
    o.exclusive = true;
    let a = RbdStorage::open(&o).expect("first opener takes the lock");
    a.write_at(&[1u8; 4096], 0).expect("owner writes");

    let t0 = Instant::now();
    let e = RbdStorage::open(&o).expect_err("second exclusive opener");
    assert_eq!(rbd_error_kind(&e), Some(RbdErrorKind::LockedByOther), "{e}");
    assert_eq!(e.kind, StorageErrorKind::ReadOnly);
    assert!(e.to_string().contains("locked exclusively by another client (127.0.0.1"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(15), "refused promptly: {:?}", t0.elapsed());

    // a non-exclusive opener can read, but its writes are refused (-EROFS)
    let mut shared = o.clone();
    shared.exclusive = false;
    let b = RbdStorage::open(&shared).expect("shared open");
    assert_eq!(read(&b, 0, 4096), vec![1u8; 4096]);
    let e = b.write_at(&[2u8; 512], 0).expect_err("lock owned by a");
    assert_eq!(rbd_error_kind(&e), Some(RbdErrorKind::NotWritable), "{e}");
    a.write_at(&[3u8; 512], 0).expect("owner still writes");
    drop(b);

    // once the owner is gone, the lock can be taken
    drop(a);
    let c = RbdStorage::open(&o).expect("lock free again");
    c.write_at(&[4u8; 512], 0).expect("new owner writes");
}

#[test]
fn grow_never_shrinks() {
    let Some(conf) = conf() else { return };
    let t = TestImage::new(&conf, "grow");
    let s = RbdStorage::open(&t.opts(4 * MIB)).expect("open");
    s.write_at(&[9u8; 512], 4 * MIB - 512).expect("write at the end");
    assert_eq!(s.write_at(&[1u8; 512], 4 * MIB).expect_err("past end").kind, StorageErrorKind::OutOfRange);
    s.grow(10 * MIB + 4096).expect("grow");
    assert_eq!(s.len(), 10 * MIB + 4096);
    s.write_at(&[1u8; 8192], 10 * MIB - 4096).expect("write at the new end");
    assert!(read(&s, 4 * MIB, 4096).iter().all(|&b| b == 0), "grown bytes read zero");
    assert_eq!(s.grow(MIB).expect_err("shrink").kind, StorageErrorKind::Unsupported);
    s.grow(s.len()).expect("same size is fine");
    drop(s);
    assert_eq!(RbdStorage::open(&t.opts(1)).expect("reopen").len(), 10 * MIB + 4096);
}

#[test]
fn open_errors() {
    let Some(conf) = conf() else { return };
    let mut o = RbdOptions::new(&conf, "rbd", format!("oxcopy-test-missing-{:08x}", rand::random::<u32>()));
    o.op_timeout = Duration::from_secs(10);
    let e = RbdStorage::open(&o).expect_err("missing image, no create_size");
    assert_eq!(rbd_error_kind(&e), Some(RbdErrorKind::NotFound), "{e}");

    let mut bad = o.clone();
    bad.image = "a\0b".into();
    assert_eq!(rbd_error_kind(&RbdStorage::open(&bad).expect_err("NUL")), Some(RbdErrorKind::InvalidArgument));
    let mut bad = o.clone();
    bad.pool = "no-such-pool".into();
    assert_eq!(rbd_error_kind(&RbdStorage::open(&bad).expect_err("pool")), Some(RbdErrorKind::NotFound));
    let mut full = o.clone();
    full.user = "client.admin".into();
    full.create_size = Some(MIB);
    let t = TestImage { conf: conf.clone(), name: full.image.clone(), pool: "rbd".into() };
    RbdStorage::open(&full).expect("client.admin works as a user too");
    drop(t);
    let mut bad = o.clone();
    bad.user = "nobody".into();
    let e = RbdStorage::open(&bad).expect_err("unknown client");
    eprintln!("unknown client: {e}");
    assert_eq!(rbd_error_kind(&e), Some(RbdErrorKind::PermissionDenied), "{e}");
    let mut bad = o.clone();
    bad.op_timeout = Duration::ZERO;
    assert_eq!(rbd_error_kind(&RbdStorage::open(&bad).expect_err("zero")), Some(RbdErrorKind::InvalidArgument));
}

/// Needs no cluster: a monitor address where nothing listens must fail
/// within op_timeout plus a few seconds, with a timeout error.
#[test]
fn unreachable_monitor_fails_in_bounded_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("ceph.conf");
    std::fs::write(
        &conf,
        "[global]\nmon_host = 127.0.0.1:1\nauth_client_required = none\nauth_cluster_required = none\n\
         auth_service_required = none\nlog_to_stderr = false\nerr_to_stderr = false\n",
    )
    .expect("write conf");
    let mut o = RbdOptions::new(&conf, "rbd", "x");
    o.op_timeout = Duration::from_secs(3);
    let t0 = Instant::now();
    let e = RbdStorage::open(&o).expect_err("nobody there");
    let took = t0.elapsed();
    eprintln!("unreachable monitor: {e} after {took:?}");
    assert_eq!(rbd_error_kind(&e), Some(RbdErrorKind::Timeout), "{e}");
    assert!(took < Duration::from_secs(3 + 5 + 3), "bounded: {took:?}");
}

/// Runs its own cluster (scripts/ceph-cluster.sh in a fresh directory) so it
/// may stop it: I/O while the cluster is down fails with a timeout within
/// op_timeout + grace, dropping a snapshot while down neither hangs nor
/// panics, and the same handle works again after a restart.
/// Gated like the others on OXCOPY_CEPH_CONF (the environment has Ceph); ~40 s.
#[test]
fn io_times_out_while_the_cluster_is_down() {
    let Some(_) = conf() else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ceph-cluster.sh");
    let dir = PathBuf::from(format!("/tmp/oxcopy-rbd-test-{:08x}", rand::random::<u32>()));
    struct Cluster {
        script: PathBuf,
        dir: PathBuf,
    }
    impl Cluster {
        fn run(&self, cmd: &str) -> bool {
            Command::new(&self.script).arg(cmd).arg(&self.dir).status().is_ok_and(|s| s.success())
        }
    }
    impl Drop for Cluster {
        fn drop(&mut self) {
            self.run("stop");
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
    let cluster = Cluster { script, dir };
    assert!(cluster.run("start"), "starting a private cluster in {}", cluster.dir.display());
    let conf = cluster.dir.join("ceph.conf");
    let t = TestImage::new(&conf, "down");
    let mut o = t.opts(8 * MIB);
    o.op_timeout = Duration::from_secs(5);
    o.exclusive = true;
    let s = RbdStorage::open(&o).expect("open");
    let data = pattern(4, 0, 2 * MIB as usize);
    s.write_at(&data, OBJ - MIB).expect("write before the outage");
    let snap = s.snapshot(&[(0, 4096)]).expect("snapshot").expect("some");

    assert!(cluster.run("stop"), "stop");
    let t0 = Instant::now();
    let e = s.write_at(&pattern(5, 0, 8192), OBJ - 4096).expect_err("cluster down");
    let took = t0.elapsed();
    eprintln!("write while down: {e} after {took:?}");
    assert_eq!(rbd_error_kind(&e), Some(RbdErrorKind::Timeout), "{e}");
    assert!(took < Duration::from_secs(5 + 5 + 3), "bounded: {took:?}");
    let t0 = Instant::now();
    let mut buf = vec![0u8; 4096];
    let e = s.read_at(&mut buf, 0).expect_err("cluster down");
    assert_eq!(rbd_error_kind(&e), Some(RbdErrorKind::Timeout), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(13), "bounded: {:?}", t0.elapsed());
    let t0 = Instant::now();
    drop(snap);
    assert!(t0.elapsed() < Duration::from_secs(25), "snapshot drop bounded: {:?}", t0.elapsed());

    assert!(cluster.run("start"), "restart");
    // The timed-out write may or may not have landed; everything else is intact.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match s.write_at(&data[..4096], OBJ - MIB) {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => eprintln!("after restart: {e}"),
            Err(e) => panic!("no recovery after restart: {e}"),
        }
    }
    same(&read(&s, OBJ - MIB, MIB as usize - 4096), &data[..MIB as usize - 4096], "after restart");
    drop(s);
    // The snapshot dropped while the cluster was down is left behind; the
    // next exclusive open removes it.
    let leaked = t.rbd(&["snap", "ls", &format!("rbd/{}", t.name)]);
    assert!(leaked.contains(SNAPSHOT_PREFIX), "left behind while down: {leaked}");
    let s = RbdStorage::open(&o).expect("reopen exclusive");
    assert_eq!(s.snapshot_names().expect("list"), Vec::<String>::new(), "stale snapshot removed at open");
    drop(s);
    drop(t);
}

/// Another client breaking our exclusive lock (`rbd lock rm`, which
/// blocklists us) fences our writes: `Fenced`, mapped to `ReadOnly`.
#[test]
fn broken_lock_fences_writes() {
    let Some(conf) = conf() else { return };
    let t = TestImage::new(&conf, "fence");
    let mut o = t.opts(8 * MIB);
    o.exclusive = true;
    let a = RbdStorage::open(&o).expect("open exclusive");
    a.write_at(&[1u8; 4096], 0).expect("owner writes");
    let spec = format!("rbd/{}", t.name);
    let ls = t.rbd(&["lock", "ls", &spec]);
    // "client.4161    auto 140230145230848   127.0.0.1:0/1234"
    let line = ls.lines().find(|l| l.starts_with("client.")).unwrap_or_else(|| panic!("no locker in: {ls}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    assert!(f.len() >= 3, "{line}");
    let id = format!("{} {}", f[1], f[2]);
    let out = Command::new("timeout")
        .args(["60", "rbd", "-c"])
        .arg(&conf)
        .args(["lock", "rm", &spec, &id, f[0]])
        .output()
        .expect("rbd lock rm");
    assert!(out.status.success(), "rbd lock rm: {}", String::from_utf8_lossy(&out.stderr));

    let t0 = Instant::now();
    let e = loop {
        match a.write_at(&[2u8; 4096], 0) {
            Err(e) => break e,
            Ok(()) if t0.elapsed() < Duration::from_secs(30) => std::thread::sleep(Duration::from_millis(200)),
            Ok(()) => panic!("writes still succeed 30 s after our lock was broken"),
        }
    };
    assert_eq!(rbd_error_kind(&e), Some(RbdErrorKind::Fenced), "{e}");
    assert_eq!(e.kind, StorageErrorKind::ReadOnly);
    drop(a);
    // a new client takes over
    let b = RbdStorage::open(&o).expect("new owner");
    b.write_at(&[3u8; 4096], 0).expect("new owner writes");
}

/// Random writes / discards / write-zeroes / copies applied to an RBD image
/// and to a MemStorage model read back the same, and allocation never calls
/// a range with data a hole.
#[test]
fn random_ops_match_a_memory_model() {
    let Some(conf) = conf() else { return };
    use rand::{Rng, SeedableRng};
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let size = 3 * OBJ + 12345 * 512; // not a multiple of the object size
    let t = TestImage::new(&conf, "model");
    let s = RbdStorage::open(&t.opts(size)).expect("open");
    let m = oxcopy_storage::MemStorage::new(size as usize);
    for i in 0..60 {
        let off = rng.gen_range(0..size);
        let len = rng.gen_range(0..=(size - off).min(3 * MIB));
        match rng.gen_range(0..5) {
            0 | 1 => {
                let data = pattern(i as u8, off, len as usize);
                s.write_at(&data, off).expect("write");
                m.write_at(&data, off).expect("model write");
            }
            2 => {
                s.discard(off, len).expect("discard");
                m.discard(off, len).expect("model discard");
            }
            3 => {
                s.write_zeroes(off, len).expect("write zeroes");
                m.write_zeroes(off, len).expect("model write zeroes");
            }
            _ => {
                let dst = rng.gen_range(0..=size - len);
                s.copy_range(dst, &s, off, len).expect("copy within the image");
                m.copy_range(dst, &m, off, len).expect("model copy");
            }
        }
    }
    s.flush().expect("flush");
    let got = read(&s, 0, size as usize);
    same(&got, &m.contents(), &format!("image vs model (seed {seed})"));
    let mut at = 0;
    while at < size {
        let run = s.allocation(at, size - at).expect("allocation");
        assert!(run.len >= 1 && run.len <= size - at);
        if !run.mapped {
            let r = (at as usize)..((at + run.len) as usize);
            assert!(got[r].iter().all(|&b| b == 0), "hole at {at}+{} holds data (seed {seed})", run.len);
        }
        at += run.len;
    }
}

#[test]
fn image_metadata_round_trips_and_is_bounded() {
    let Some(conf) = conf() else { return };
    let t = TestImage::new(&conf, "meta");
    let s = RbdStorage::open(&t.opts(4 * MIB)).expect("open");
    assert_eq!(s.metadata_get("oxcopy.test").expect("get"), None);
    // Longer than the first read buffer: the -ERANGE retry path.
    let long = "x".repeat(5000);
    s.metadata_set("oxcopy.test", &long).expect("set");
    assert_eq!(s.metadata_get("oxcopy.test").expect("get").as_deref(), Some(long.as_str()));
    s.metadata_set("oxcopy.test", "").expect("set empty");
    assert_eq!(s.metadata_get("oxcopy.test").expect("get").as_deref(), Some(""));
    assert!(s.metadata_set("oxcopy.test", &"y".repeat(65 << 10)).is_err(), "over 64 KiB refused");
    s.metadata_remove("oxcopy.test").expect("remove");
    s.metadata_remove("oxcopy.test").expect("remove again");
    assert_eq!(s.metadata_get("oxcopy.test").expect("get"), None);
}

/// A token snapshot made through one connection is opened through another
/// (another gateway) by its locator alone, reads the point in time, and
/// stays when that view is dropped; it goes with its maker's store.
#[test]
fn another_gateway_opens_a_token_snapshot_by_its_locator() {
    let Some(conf) = conf() else { return };
    let (tx, ty) = (TestImage::new(&conf, "locx"), TestImage::new(&conf, "locy"));
    let mut ox = tx.opts(8 * MIB);
    ox.exclusive = true;
    let x = RbdStorage::open(&ox).expect("open x");
    let y = RbdStorage::open(&ty.opts(4 * MIB)).expect("open y (the other gateway)");
    assert_eq!(x.cluster_fsid(), y.cluster_fsid());
    x.write_at(&pattern(1, 0, 8 * MIB as usize), 0).expect("write");
    let ranges = [(OBJ + 4096, 8192u64), (512, 1024)];
    let snap = x.snapshot(&ranges).expect("snapshot").expect("some");
    let loc = snap.shared_locator().expect("a locator");
    x.write_at(&[0xEE; 65536], 0).expect("overwrite head");
    x.write_at(&[0xEE; 65536], OBJ).expect("overwrite head");
    let view = y.open_located(&loc, 9216).expect("open by locator");
    assert_eq!(view.len(), 9216);
    let got = read(&*view, 0, 9216);
    let mut want = pattern(1, OBJ + 4096, 8192);
    want.extend(pattern(1, 512, 1024));
    same(&got, &want, "the point in time through the other connection");
    assert!(view.write_at(&[1], 0).is_err(), "read-only");
    // A token that claims another size does not match the record.
    assert!(y.open_located(&loc, 4096).is_err());
    // Not a locator / another cluster.
    assert!(y.open_located(&[0u8; 32], 9216).is_err());
    let mut other = loc;
    other[3] ^= 0x55;
    assert!(y.open_located(&other, 9216).is_err());
    drop(view);
    let names = x.snapshot_names().expect("list");
    assert_eq!(names.len(), 1, "the other gateway's view does not remove it: {names:?}");
    let key = format!("oxcopy.snap.{}", names[0]);
    assert!(x.metadata_get(&key).expect("record").is_some_and(|r| r.starts_with("v1 creator=")));
    drop(snap);
    assert!(x.snapshot_names().expect("list").is_empty());
    assert_eq!(x.metadata_get(&key).expect("record"), None, "record removed with the snapshot");
    let e = y.open_located(&loc, 9216).expect_err("token ended");
    assert_eq!(rbd_error_kind(&e), Some(RbdErrorKind::NotFound), "{e}");
}

/// Snapshots whose maker is gone (its connection no longer watches the
/// image) are removed by another gateway's sweep; a live maker's stay.
#[test]
fn orphan_sweep_removes_only_snapshots_whose_maker_is_gone() {
    let Some(conf) = conf() else { return };
    let (tx, ty) = (TestImage::new(&conf, "orpx"), TestImage::new(&conf, "orpy"));
    let y = RbdStorage::open(&ty.opts(4 * MIB)).expect("open y");
    let mut ox = tx.opts(4 * MIB);
    ox.exclusive = true;
    let x = RbdStorage::open(&ox).expect("open x");
    x.write_at(&[3u8; 4096], 0).expect("write");
    let live = x.snapshot(&[(0, 4096)]).expect("snapshot").expect("some");
    y.remove_orphan_snapshots(&|| false).expect("sweep");
    assert_eq!(x.snapshot_names().expect("list").len(), 1, "the maker is alive: kept");
    // A snapshot made by a client that is gone (global id 1 never watches:
    // ids start far higher), as a crashed gateway leaves it.
    let spec = format!("rbd/{}", tx.name);
    tx.rbd(&["snap", "create", &format!("{spec}@oxcopy.deadbeef")]);
    tx.rbd(&["image-meta", "set", &spec, "oxcopy.snap.oxcopy.deadbeef", "v1 creator=1 ranges=0+4096"]);
    assert_eq!(x.snapshot_names().expect("list").len(), 2);
    let n = y.remove_orphan_snapshots(&|| false).expect("sweep");
    assert_eq!(n, 1);
    let names = x.snapshot_names().expect("list");
    assert_eq!(names.len(), 1, "{names:?}");
    assert_ne!(names[0], "oxcopy.deadbeef");
    assert_eq!(x.metadata_get("oxcopy.snap.oxcopy.deadbeef").expect("get"), None);
    // Without a record: removed only when nobody watches the image.
    tx.rbd(&["snap", "create", &format!("{spec}@oxcopy.norecord")]);
    assert_eq!(y.remove_orphan_snapshots(&|| false).expect("sweep"), 0, "x is open: kept");
    drop(live);
    drop(x);
    assert_eq!(y.remove_orphan_snapshots(&|| false).expect("sweep"), 1, "nobody watches x: removed");
    let check = RbdStorage::open(&tx.opts(4 * MIB)).expect("open x again");
    assert!(check.snapshot_names().expect("list").is_empty());
}

// ---------------------------------------------------------------------------
// Server-side copies (RADOS copy_from) between images.

/// Features of images made with the rbd CLI for copy tests.
const WITH_OBJECT_MAP: &str = "layering,exclusive-lock,object-map,fast-diff";
const NO_OBJECT_MAP: &str = "layering,exclusive-lock";

/// Whole objects between two default images (4 MiB objects, object-map and
/// fast-diff: pitfall 1) go through the OSDs; the destination, read through
/// its exclusive handle (object map loaded), shows the copied bytes.
#[test]
fn rados_copy_of_whole_objects_reads_back() {
    let Some(conf) = conf() else { return };
    let (ts, td) = (TestImage::new(&conf, "xsrc"), TestImage::new(&conf, "xdst"));
    let src = RbdStorage::open(&ts.opts(3 * OBJ)).expect("create src");
    let mut o = td.opts(3 * OBJ);
    o.exclusive = true;
    let dst = RbdStorage::open(&o).expect("create dst");
    let data = pattern(21, 0, (3 * OBJ) as usize);
    src.write_at(&data, 0).expect("write src");
    // The destination's object 1 exists before the copy (and is overwritten
    // whole), objects 0 and 2 do not (object map says so).
    dst.write_at(&[0xEE; 8192], OBJ + 4096).expect("dst write");

    let r = dst.copy_range(0, &src, 0, 3 * OBJ).expect("copy");
    assert_eq!(r.get(CopyMethod::Rados), 3 * OBJ, "{r:?}");
    assert_eq!(r.total(), 3 * OBJ, "{r:?}");
    same(&read(&dst, 0, data.len()), &data, "destination through its exclusive handle");
    let other = td.open(false);
    same(&read(&other, 0, data.len()), &data, "destination through another handle");
    // fast-diff / allocation still sees the objects
    let run = dst.allocation(0, 3 * OBJ).expect("allocation");
    assert!(run.mapped && run.len == 3 * OBJ, "{run:?}");
}

/// Unaligned head and tail go through librbd, the objects in between
/// through the OSDs; offsets not congruent modulo the object size go all
/// through librbd. Images with 1 MiB objects, no object map.
#[test]
fn rados_copy_unaligned_ends_go_through_librbd() {
    let Some(conf) = conf() else { return };
    let ts = TestImage::create_cli(&conf, "rbd", "usrc", 8 * MIB, MIB, NO_OBJECT_MAP);
    let td = TestImage::create_cli(&conf, "rbd", "udst", 8 * MIB, MIB, NO_OBJECT_MAP);
    let src = ts.open(false);
    let dst = td.open(true);
    assert_eq!(dst.object_size(), MIB);
    let data = pattern(5, 0, (8 * MIB) as usize);
    src.write_at(&data, 0).expect("write src");
    let mut want = vec![0u8; (8 * MIB) as usize];

    // [MiB+100, 4 MiB+100): objects 2 and 3 whole, MiB-100 before, 100 after.
    let (off, len) = (MIB + 100, 3 * MIB);
    let r = dst.copy_range(off, &src, off, len).expect("copy");
    assert_eq!((r.get(CopyMethod::Rados), r.get(CopyMethod::Rbd)), (2 * MIB, MIB), "{r:?}");
    want[off as usize..(off + len) as usize].copy_from_slice(&data[off as usize..(off + len) as usize]);
    same(&read(&dst, 0, want.len()), &want, "after the unaligned copy");

    // Source 512 bytes after the destination: no object lines up.
    let r = dst.copy_range(5 * MIB, &src, 5 * MIB + 512, 2 * MIB).expect("copy");
    assert_eq!((r.get(CopyMethod::Rados), r.get(CopyMethod::Rbd)), (0, 2 * MIB), "{r:?}");
    want[(5 * MIB) as usize..(7 * MIB) as usize]
        .copy_from_slice(&data[(5 * MIB + 512) as usize..(7 * MIB + 512) as usize]);
    same(&read(&dst, 0, want.len()), &want, "after the misaligned copy");

    // Different objects, aligned: source object 6 onto destination object 0.
    let r = dst.copy_range(0, &src, 6 * MIB, MIB).expect("copy");
    assert_eq!(r.get(CopyMethod::Rados), MIB, "{r:?}");
    want[..MIB as usize].copy_from_slice(&data[(6 * MIB) as usize..(7 * MIB) as usize]);
    same(&read(&dst, 0, want.len()), &want, "after the object-to-object copy");

    // Within one image, overlapping: the generic direction-safe path.
    let r = dst.copy_range(2 * MIB, &dst, MIB, 3 * MIB).expect("overlapping copy");
    assert_eq!((r.get(CopyMethod::Rados), r.get(CopyMethod::Rbd)), (0, 3 * MIB), "{r:?}");
    let moved = want[MIB as usize..(4 * MIB) as usize].to_vec();
    want[(2 * MIB) as usize..(5 * MIB) as usize].copy_from_slice(&moved);
    same(&read(&dst, 0, want.len()), &want, "after the overlapping copy");

    // Within one image, not overlapping: the OSDs copy between its objects.
    let r = dst.copy_range(6 * MIB, &dst, 0, 2 * MIB).expect("copy within");
    assert_eq!(r.get(CopyMethod::Rados), 2 * MIB, "{r:?}");
    let moved = want[..(2 * MIB) as usize].to_vec();
    want[(6 * MIB) as usize..].copy_from_slice(&moved);
    same(&read(&dst, 0, want.len()), &want, "after the copy within the image");
}

/// A copy from a snapshot view reads the snapshot (the source was
/// overwritten after it), ranges of the view mapped to image offsets.
#[test]
fn rados_copy_from_a_snapshot_view_reads_the_snapshot() {
    let Some(conf) = conf() else { return };
    let ts = TestImage::create_cli(&conf, "rbd", "ssrc", 4 * MIB, MIB, WITH_OBJECT_MAP);
    let td = TestImage::create_cli(&conf, "rbd", "sdst", 4 * MIB, MIB, WITH_OBJECT_MAP);
    let src = ts.open(true);
    let dst = td.open(true);
    let old = pattern(7, 0, (4 * MIB) as usize);
    src.write_at(&old, 0).expect("write");
    // The view: image [2 MiB, 4 MiB) then [0, 2 MiB).
    let snap = src.snapshot(&[(2 * MIB, 2 * MIB), (0, 2 * MIB)]).expect("snapshot").expect("some");
    src.write_at(&pattern(8, 0, (4 * MIB) as usize), 0).expect("overwrite the head");
    src.discard(MIB, MIB).expect("discard an object of the head");

    let r = dst.copy_range(0, &*snap, 0, 4 * MIB).expect("copy");
    assert_eq!(r.get(CopyMethod::Rados), 4 * MIB, "{r:?}");
    let mut want = old[(2 * MIB) as usize..].to_vec();
    want.extend_from_slice(&old[..(2 * MIB) as usize]);
    same(&read(&dst, 0, want.len()), &want, "destination has the snapshot's bytes");

    // A piece of the view crossing its two ranges, unaligned at the start.
    let r = dst.copy_range(MIB + 10, &*snap, MIB + 10, 2 * MIB).expect("copy across ranges");
    assert_eq!((r.get(CopyMethod::Rados), r.get(CopyMethod::Rbd)), (MIB, MIB), "{r:?}");
    same(&read(&dst, 0, want.len()), &want, "unchanged by the second copy");
}

/// The destination's snapshots keep their data after a RADOS copy (the
/// copy carries the destination's snap context: pitfall 2), with and
/// without object map; checked through an oxcopy snapshot view and through
/// `rbd export` of a snapshot made with the CLI before opening.
#[test]
fn rados_copy_keeps_destination_snapshots() {
    let Some(conf) = conf() else { return };
    for features in [WITH_OBJECT_MAP, NO_OBJECT_MAP] {
        let ts = TestImage::create_cli(&conf, "rbd", "psrc", 3 * MIB, MIB, features);
        let td = TestImage::create_cli(&conf, "rbd", "pdst", 3 * MIB, MIB, features);
        let old = pattern(11, 0, (3 * MIB) as usize);
        {
            let dst = td.open(false);
            dst.write_at(&old, 0).expect("dst write");
        }
        let out = Command::new("timeout")
            .args(["60", "rbd", "-c"])
            .arg(&conf)
            .args(["snap", "create", &format!("{}@before", td.spec())])
            .output()
            .expect("rbd snap create");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let src = ts.open(false);
        let dst = td.open(true);
        let view = dst.snapshot(&[(0, 3 * MIB)]).expect("snapshot").expect("some");
        let new = pattern(12, 0, (3 * MIB) as usize);
        src.write_at(&new, 0).expect("src write");

        let r = dst.copy_range(0, &src, 0, 3 * MIB).expect("copy");
        assert_eq!(r.get(CopyMethod::Rados), 3 * MIB, "{features}: {r:?}");
        same(&read(&dst, 0, new.len()), &new, "head has the copied data");
        same(&read(&*view, 0, old.len()), &old, "oxcopy snapshot view keeps the old data");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("before.raw");
        let out = Command::new("timeout")
            .args(["60", "rbd", "-c"])
            .arg(&conf)
            .args(["export", "--no-progress", &format!("{}@before", td.spec())])
            .arg(&path)
            .output()
            .expect("rbd export");
        assert!(out.status.success(), "rbd export: {}", String::from_utf8_lossy(&out.stderr));
        same(&std::fs::read(&path).expect("read export"), &old, "rbd export of the CLI snapshot");
    }
}

/// A source object that does not exist is a hole: the destination object
/// (garbage before) reads zero afterwards, no bytes read.
#[test]
fn rados_copy_of_a_sparse_source_zeroes_the_destination() {
    let Some(conf) = conf() else { return };
    for features in [WITH_OBJECT_MAP, NO_OBJECT_MAP] {
        let ts = TestImage::create_cli(&conf, "rbd", "hsrc", 3 * MIB, MIB, features);
        let td = TestImage::create_cli(&conf, "rbd", "hdst", 3 * MIB, MIB, features);
        let src = ts.open(false);
        let dst = td.open(true);
        let a = pattern(1, 0, MIB as usize);
        src.write_at(&a, 0).expect("object 0");
        src.write_at(&a, 2 * MIB).expect("object 2");
        dst.write_at(&pattern(99, 0, (3 * MIB) as usize), 0).expect("garbage");
        let r = dst.copy_range(0, &src, 0, 3 * MIB).expect("copy");
        assert_eq!((r.get(CopyMethod::Rados), r.get(CopyMethod::Hole)), (2 * MIB, MIB), "{features}: {r:?}");
        let got = read(&dst, 0, (3 * MIB) as usize);
        same(&got[..MIB as usize], &a, "object 0");
        assert!(got[MIB as usize..(2 * MIB) as usize].iter().all(|&b| b == 0), "{features}: object 1 zero");
        same(&got[(2 * MIB) as usize..], &a, "object 2");
    }
}

/// Images in two pools of one cluster: the source objects are read from the
/// source's pool by an I/O context made in the destination's connection.
#[test]
fn rados_copy_between_pools() {
    let Some(conf) = conf() else { return };
    let pool = "oxcopy-test-pool2";
    let ceph = |args: &[&str]| {
        Command::new("timeout").args(["60", "ceph", "-c"]).arg(&conf).args(args).output().expect("ceph CLI")
    };
    let made = ceph(&["osd", "pool", "create", pool, "8", "8"]);
    if !made.status.success() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED rados_copy_between_pools: cannot create pool {pool}: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        return;
    }
    let _ = ceph(&["osd", "pool", "application", "enable", pool, "rbd"]);
    let init = Command::new("timeout").args(["60", "rbd", "-c"]).arg(&conf).args(["pool", "init", pool]).output();
    assert!(init.is_ok_and(|o| o.status.success()), "rbd pool init {pool}");
    let ts = TestImage::create_cli(&conf, pool, "psrc", 2 * MIB, MIB, WITH_OBJECT_MAP);
    let td = TestImage::create_cli(&conf, "rbd", "pdst", 2 * MIB, MIB, WITH_OBJECT_MAP);
    let src = ts.open(false);
    let dst = td.open(true);
    let data = pattern(31, 0, (2 * MIB) as usize);
    src.write_at(&data, 0).expect("write");
    let r = dst.copy_range(0, &src, 0, 2 * MIB).expect("copy");
    assert_eq!(r.get(CopyMethod::Rados), 2 * MIB, "{r:?}");
    same(&read(&dst, 0, data.len()), &data, "copied across pools");
    // and back the other way, into the second pool
    let back = ts.open(false);
    drop(src);
    let r = back.copy_range(0, &dst, 0, MIB).expect("copy back");
    assert_eq!(r.get(CopyMethod::Rbd), MIB, "not exclusive: through librbd: {r:?}");
}

/// A destination opened without `exclusive` does not hold the lock for
/// sure: everything goes through librbd. Object sizes that differ, too.
#[test]
fn rados_copy_needs_an_exclusive_destination_and_equal_objects() {
    let Some(conf) = conf() else { return };
    let ts = TestImage::create_cli(&conf, "rbd", "nsrc", 2 * MIB, MIB, WITH_OBJECT_MAP);
    let td = TestImage::create_cli(&conf, "rbd", "ndst", 2 * MIB, MIB, WITH_OBJECT_MAP);
    let t4 = TestImage::new(&conf, "n4m");
    let src = ts.open(false);
    let data = pattern(41, 0, (2 * MIB) as usize);
    src.write_at(&data, 0).expect("write");
    {
        let dst = td.open(false);
        let r = dst.copy_range(0, &src, 0, 2 * MIB).expect("copy");
        assert_eq!((r.get(CopyMethod::Rados), r.get(CopyMethod::Rbd)), (0, 2 * MIB), "{r:?}");
        same(&read(&dst, 0, data.len()), &data, "copied through librbd");
    }
    let mut o = t4.opts(OBJ);
    o.exclusive = true;
    let big = RbdStorage::open(&o).expect("4 MiB objects");
    let r = big.copy_range(0, &src, 0, 2 * MIB).expect("copy");
    assert_eq!(r.get(CopyMethod::Rbd), 2 * MIB, "{r:?}");
    same(&read(&big, 0, data.len()), &data, "copied through librbd");
    // A non-RBD source: the generic path.
    let mem = oxcopy_storage::MemStorage::new(MIB as usize);
    mem.write_at(&[3u8; 4096], 0).expect("mem write");
    let r = big.copy_range(0, &mem, 0, MIB).expect("copy from memory");
    assert_eq!(r.get(CopyMethod::ReadWrite), MIB, "{r:?}");
    assert_eq!(read(&big, 0, 4096), vec![3u8; 4096]);
}
