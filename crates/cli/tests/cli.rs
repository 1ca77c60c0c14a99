//! End-to-end tests of the real `oxcopy` binary against a real `oxcopyd`
//! (started in this test process with `oxcopyd::start`, on 127.0.0.1 with a
//! free port) and, when it is installed and we are root, against tgt.
//!
//! Every child process is killed by PID if it outlives its deadline (and in
//! a Drop guard); every daemon is shut down when its test ends.

use oxcopy_testkit::{file_bytes, output_within, pattern, status_within, Chap, DaemonConfig, LoopFs, Lun, Target};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const TARGET: &str = "iqn.2026-11.dev.oxcopy:cli";
const LUN_BLOCKS_512: u64 = 32768; // 16 MiB
const LUN_SIZE: u64 = 16 << 20;

// ---------------------------------------------------------------------------
// Fixtures.

/// An in-process oxcopyd with LUN 0 and 2 (512-byte blocks), LUN 1 (4096),
/// LUN 3 (read-only), and LUN 4 and 5 without a copy manager
/// (`third_party_copy = false`), each 16 MiB, in a temp dir.
struct Daemon {
    rt: tokio::runtime::Runtime,
    running: Option<oxcopyd::Running>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn start() -> Daemon {
        Daemon::start_with(|_| Vec::new())
    }

    /// The standard LUNs plus the ones `extra` returns (given the temp dir,
    /// where it may create their files first).
    fn start_with(extra: impl FnOnce(&Path) -> Vec<Lun>) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let lun = |id: u32, bs: u32, ro: bool| {
            Lun::new(id, d.join(format!("lun{id}.img"))).size("16MiB").block_size(bs).read_only(ro)
        };
        let mut target = Target::new(TARGET).lun(lun(0, 512, false)).lun(lun(1, 4096, false)).lun(lun(2, 512, false));
        // A read-only LUN is never created: make its (sparse) file first.
        let f = std::fs::File::create(d.join("lun3.img")).expect("lun3");
        f.set_len(LUN_SIZE).expect("lun3 size");
        target = target.lun(Lun::new(3, d.join("lun3.img")).block_size(512).read_only(true));
        for id in [4, 5] {
            target = target.lun(lun(id, 512, false).third_party_copy(false));
        }
        for l in extra(d) {
            target = target.lun(l);
        }
        let path =
            DaemonConfig::new(d.join("state")).server("nop_interval", 0).target(target).write(d.join("oxcopyd.toml"));
        Daemon::launch(dir, &path)
    }

    /// A daemon on the configuration `text(dir)` written into a new temp dir.
    fn start_toml(text: impl FnOnce(&Path) -> String) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("oxcopyd.toml");
        std::fs::write(&path, text(dir.path())).expect("write config");
        Daemon::launch(dir, &path)
    }

    fn launch(dir: tempfile::TempDir, path: &Path) -> Daemon {
        let cfg = oxcopyd::Config::from_file(path).expect("config validates");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let running = rt.block_on(oxcopyd::start(cfg)).expect("daemon starts");
        let addr = running.addrs[0];
        Daemon { rt, running: Some(running), addr, dir }
    }

    fn url(&self, lun: u32) -> String {
        format!("iscsi://{}/{TARGET}/{lun}", self.addr)
    }

    fn lun_path(&self, lun: u32) -> PathBuf {
        self.dir.path().join(format!("lun{lun}.img"))
    }

    /// Raw VPD page bytes through the initiator library.
    fn raw_vpd(&self, lun: u64, page: u8) -> Option<Vec<u8>> {
        self.rt.block_on(async {
            let cfg = oxcopy_initiator::SessionConfig {
                keepalive_interval: None,
                ..oxcopy_initiator::SessionConfig::for_target(TARGET)
            };
            let s = oxcopy_initiator::Session::connect(self.addr, cfg).await.expect("login");
            let r = s.inquiry(lun, true, page, 4096).await.ok().map(|b| b.to_vec());
            let _ = s.logout().await;
            r
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), r.shutdown()).await });
        }
    }
}

#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    /// Failure output: exactly one line, no panic, no backtrace.
    #[track_caller]
    fn assert_one_line_error(&self, code: i32, contains: &str) {
        assert_eq!(self.code, code, "exit code; {self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {self:?}");
        assert!(lines[0].starts_with("oxcopy: "), "{self:?}");
        assert!(lines[0].contains(contains), "wanted {contains:?}: {self:?}");
        for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace", "internal error"] {
            assert!(!self.stderr.contains(bad), "{self:?}");
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

fn oxcopy(args: &[&str]) -> Out {
    oxcopy_env(args, &[])
}

fn oxcopy_env(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oxcopy"));
    cmd.args(args)
        .env_remove("OXCOPY_CHAP_SECRET")
        .env_remove("OXCOPY_TARGET_CHAP_SECRET")
        .env_remove("OXCOPY_HOSTNQN")
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = output_within(&mut cmd, Duration::from_secs(180))
        .expect("spawn oxcopy")
        .unwrap_or_else(|| panic!("oxcopy {args:?} did not finish in time"));
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn write_file(p: &Path, data: &[u8]) {
    std::fs::write(p, data).expect("write file");
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The `--json` summary schema.
#[track_caller]
fn check_summary(v: &serde_json::Value, bytes: u64) {
    let o = v.as_object().expect("object");
    for k in ["method", "bytes", "seconds", "bytes_per_second", "wire_bytes_sent", "wire_bytes_received", "fallback"] {
        assert!(o.contains_key(k), "missing {k}: {v}");
    }
    assert!(["host", "xcopy", "token", "copy"].contains(&o["method"].as_str().expect("method string")), "{v}");
    assert_eq!(o["bytes"].as_u64(), Some(bytes), "{v}");
    assert!(o["seconds"].as_f64().expect("seconds") >= 0.0);
    assert!(o["bytes_per_second"].as_f64().expect("rate") >= 0.0);
    assert!(o["wire_bytes_sent"].as_u64().is_some() && o["wire_bytes_received"].as_u64().is_some(), "{v}");
    match &o["fallback"] {
        serde_json::Value::Null => {}
        serde_json::Value::Object(f) => {
            assert!(["token", "xcopy", "copy"].contains(&f["from"].as_str().expect("from")), "{v}");
            assert!(!f["reason"].as_str().expect("reason").is_empty(), "{v}");
        }
        other => panic!("fallback must be null or an object: {other}"),
    }
    match (&o["method"], &o["offload"]) {
        (m, serde_json::Value::Object(x)) if m == "token" || m == "xcopy" || m == "copy" => {
            let cm = if m == "copy" { "controller " } else { "LUN " };
            assert!(x["copy_manager"].as_str().is_some_and(|c| c.starts_with(cm)), "{v}");
            for k in ["commands", "status_polls", "early_polls", "tokens"] {
                assert!(x[k].as_u64().is_some(), "offload.{k}: {v}");
            }
            assert!(x["commands"].as_u64() >= Some(1), "{v}");
        }
        (m, x) => assert!(m == "host" && x.is_null(), "offload report only for offloads: {v}"),
    }
}

/// Bytes `[off, off + len)` of a file.
fn file_range(p: &Path, off: usize, len: usize) -> Vec<u8> {
    file_bytes(p, off as u64, len)
}

// ---------------------------------------------------------------------------
// Copies.

#[test]
fn host_copy_between_luns_and_back_with_verify() {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = pattern(1, LUN_SIZE as usize);
    let src_file = tmp.path().join("src.img");
    write_file(&src_file, &data);

    // file → LUN 0.
    let r = oxcopy(&["cp", "--json", path_str(&src_file), &d.url(0)]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    check_summary(&j, LUN_SIZE);
    assert_eq!(j["method"], "host");
    assert_eq!(j["fallback"], serde_json::Value::Null, "a local source has no offload to fall back from");
    assert!(j["wire_bytes_sent"].as_u64().unwrap() >= LUN_SIZE, "{j}");
    assert!(j["queue_depth"].as_u64().unwrap() > 1);

    // LUN 0 → LUN 2 (auto), verified; the summary says how.
    let r = oxcopy(&["cp", "--verify", "--json", &d.url(0), &d.url(2)]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    check_summary(&j, LUN_SIZE);
    assert_eq!(j["verify"]["ok"], true);
    assert_eq!(j["verify"]["mismatched_chunks"], 0);
    if j["method"] == "host" {
        // Both directions of the host copy went over the wire.
        assert!(j["wire_bytes_received"].as_u64().unwrap() >= LUN_SIZE, "{j}");
        assert!(j["wire_bytes_sent"].as_u64().unwrap() >= LUN_SIZE, "{j}");
    }
    if !j["fallback"].is_null() {
        // Auto says so when it falls back.
        assert!(r.stderr.contains("falling back"), "{r:?}");
    }

    // LUN 2 → file, compared byte for byte.
    let back = tmp.path().join("back.img");
    let r = oxcopy(&["cp", "--method", "host", &d.url(2), path_str(&back)]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("copied 16 MiB"), "{r:?}");
    assert!(std::fs::read(&back).unwrap() == data, "round trip through two LUNs changed the data");

    // A range of the 512-byte LUN into the 4096-byte LUN at LBA 3.
    let r = oxcopy(&[
        "cp",
        "--verify",
        "--queue-depth",
        "3",
        &format!("{}?lba=8&blocks=2048", d.url(0)),
        &format!("{}?lba=3", d.url(1)),
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    let lun1 = std::fs::read(d.lun_path(1)).unwrap();
    assert!(lun1[3 * 4096..3 * 4096 + 2048 * 512] == data[8 * 512..8 * 512 + 2048 * 512]);
}

#[test]
fn local_to_local_reports_the_kernel_method() {
    let tmp = tempfile::tempdir().unwrap();
    let data = pattern(2, (8 << 20) + 123);
    let src = tmp.path().join("a.img");
    let dst = tmp.path().join("b.img");
    write_file(&src, &data);
    // An existing longer destination is truncated to the source's size.
    write_file(&dst, &vec![0xee; 10 << 20]);
    let r = oxcopy(&["cp", "--json", "--verify", path_str(&src), path_str(&dst)]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    check_summary(&j, data.len() as u64);
    let local = &j["local"];
    let kernel = local["reflink"].as_u64().unwrap() + local["copy_file_range"].as_u64().unwrap();
    assert_eq!(kernel, data.len() as u64, "in-kernel copy expected on this filesystem: {j}");
    assert_eq!(local["read_write"], 0);
    assert_eq!(j["wire_bytes_sent"], 0);
    assert_eq!(j["verify"]["ok"], true);
    assert!(std::fs::read(&dst).unwrap() == data);
    // Text output names the method.
    let r = oxcopy(&["cp", path_str(&src), path_str(&tmp.path().join("c.img"))]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("copy_file_range") || r.stdout.contains("reflink"), "{r:?}");
}

#[test]
fn verify_catches_a_corrupted_destination() {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let src_file = tmp.path().join("src.img");
    write_file(&src_file, &pattern(3, 4 << 20));
    // iSCSI destination.
    let r = oxcopy(&["cp", "--verify", "--json", "--test-corrupt-destination", path_str(&src_file), &d.url(0)]);
    r.assert_one_line_error(1, "verify failed: 1 of 4 chunks differ");
    let j = r.json();
    check_summary(&j, 4 << 20);
    assert_eq!(j["verify"]["ok"], false);
    assert_eq!(j["verify"]["mismatched_chunks"], 1);
    assert_eq!(j["verify"]["first_mismatch_offset"], 2 << 20);
    // Local destination.
    let dst = tmp.path().join("dst.img");
    let r = oxcopy(&["cp", "--verify", "--test-corrupt-destination", &d.url(0), path_str(&dst)]);
    r.assert_one_line_error(1, "verify failed");
    // Without the hook the same copies verify.
    let r = oxcopy(&["cp", "--verify", path_str(&src_file), &d.url(0)]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("verified: 4 chunks match"), "{r:?}");
}

// ---------------------------------------------------------------------------
// Errors: one line, the right exit code, never a panic.

#[test]
fn bad_urls_are_usage_errors() {
    for (src, want) in [
        ("iscsi://127.0.0.1/iqn.2026-11.x:y", "missing LUN"),
        ("iscsi://127.0.0.1/iqn.2026-11.x:y/zero", "is not a number"),
        ("iscsi://127.0.0.1:99999/iqn.2026-11.x:y/0", "invalid port"),
        ("iscsi://127.0.0.1/disk/0", "must start with iqn."),
        ("iscsi://127.0.0.1/iqn.2026-11.x:y/0?lba=1&lba=2", "given twice"),
        ("iscsi://127.0.0.1/iqn.2026-11.x:y/0?blocks=0", "selects nothing"),
        ("iscsi:/127.0.0.1/iqn.2026-11.x:y/0", "must start with iscsi://"),
        ("http://example.com/x", "unsupported URL scheme"),
        ("", "empty path"),
    ] {
        let r = oxcopy(&["cp", src, "/tmp/oxcopy-test-never-written"]);
        r.assert_one_line_error(2, want);
    }
    let r = oxcopy(&["cp", "--method", "fast", "a", "b"]);
    r.assert_one_line_error(2, "invalid value 'fast'");
    let r = oxcopy(&["cp", "only-one-arg"]);
    r.assert_one_line_error(2, "<DST>");
    let r = oxcopy(&["inspect", "iscsi://u%hunter2@127.0.0.1/iqn.2026-11.x:y/x"]);
    r.assert_one_line_error(2, "u%***@");
    assert!(!r.stderr.contains("hunter2"), "{r:?}");
    assert!(!Path::new("/tmp/oxcopy-test-never-written").exists());
}

#[test]
fn unreachable_portal_is_a_connection_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("iscsi://127.0.0.1:{port}/iqn.2026-11.x:y/0");
    oxcopy(&["cp", &url, "/tmp/oxcopy-test-never-written"]).assert_one_line_error(2, "connection refused");
    oxcopy(&["inspect", &url]).assert_one_line_error(2, "connection refused");
    oxcopy(&["ls", &format!("127.0.0.1:{port}")]).assert_one_line_error(2, "connection refused");
}

#[test]
fn missing_lun_range_past_end_and_failed_writes() {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.img");
    let out_s = path_str(&out);
    oxcopy(&["cp", &d.url(9), out_s]).assert_one_line_error(2, "no LUN 9 on target");
    oxcopy(&["inspect", &d.url(9)]).assert_one_line_error(2, "no LUN 9 on target");
    let past = format!("{}?lba={}&blocks=100", d.url(0), LUN_BLOCKS_512 - 10);
    oxcopy(&["cp", &past, out_s]).assert_one_line_error(2, "runs past the end");
    let past = format!("{}?lba={}", d.url(0), LUN_BLOCKS_512 + 1);
    oxcopy(&["cp", &past, out_s]).assert_one_line_error(2, "past the end");
    assert!(!out.exists(), "nothing is created when the copy cannot start");
    // Wrong target name.
    let wrong = format!("iscsi://{}/iqn.2026-11.dev.oxcopy:nope/0", d.addr);
    oxcopy(&["cp", &wrong, out_s]).assert_one_line_error(2, "target not found");
    // Does not fit / overlaps.
    oxcopy(&["cp", &d.url(0), &format!("{}?lba=1", d.url(2))]).assert_one_line_error(2, "has room for");
    oxcopy(&["cp", &format!("{}?blocks=64", d.url(0)), &format!("{}?lba=32", d.url(0))])
        .assert_one_line_error(2, "overlap");
    // A method that needs iSCSI ends, or LUNs that advertise it.
    oxcopy(&["cp", "--method", "xcopy", out_s, "/tmp/x"]).assert_one_line_error(2, "needs an iSCSI source");
    let r = oxcopy(&["cp", "--method", "token", &d.url(4), &d.url(5)]);
    r.assert_one_line_error(2, "--method token: the source LUN cannot create ROD tokens");
    let r = oxcopy(&["cp", "--method", "xcopy", &d.url(4), &d.url(5)]);
    r.assert_one_line_error(2, "--method xcopy: neither LUN advertises EXTENDED COPY");
    // An offload that fails while running: the destination LUN is read-only.
    let r = oxcopy(&["cp", "--method", "xcopy", &format!("{}?blocks=8", d.url(0)), &d.url(3)]);
    r.assert_one_line_error(1, "--method xcopy: EXTENDED COPY to LUN 3");
    assert!(r.stderr.contains("DATA PROTECT") || r.stderr.contains("COPY ABORTED"), "{r:?}");
    // A copy that fails while running: the destination LUN is read-only.
    let r = oxcopy(&["cp", "--method", "host", &format!("{}?blocks=8", d.url(0)), &d.url(3)]);
    r.assert_one_line_error(1, "DATA PROTECT");
    // CHAP user without a secret.
    let r = oxcopy(&["--chap-user", "bob", "cp", &d.url(0), out_s]);
    r.assert_one_line_error(2, "OXCOPY_CHAP_SECRET");
}

// ---------------------------------------------------------------------------
// Offload: every method between LUNs of one oxcopyd, token files, fallbacks.

#[test]
fn every_method_between_luns_of_one_daemon() {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = pattern(11, LUN_SIZE as usize);
    let f = tmp.path().join("src.img");
    write_file(&f, &data);
    let r = oxcopy(&["cp", "--method", "host", path_str(&f), &d.url(0)]);
    assert_eq!(r.code, 0, "{r:?}");
    // 4 MiB pieces of LUN 0 to four places of LUN 2, one per method.
    let piece: u64 = 8192; // blocks of 512
    for (k, m) in ["token", "xcopy", "host", "auto"].iter().enumerate() {
        let k = k as u64;
        let src = format!("{}?lba={}&blocks={piece}", d.url(0), k * piece);
        let dst = format!("{}?lba={}", d.url(2), (3 - k) * piece);
        let r = oxcopy(&["cp", "--json", "--verify", "--method", m, &src, &dst]);
        assert_eq!(r.code, 0, "{m}: {r:?}");
        let j = r.json();
        check_summary(&j, piece * 512);
        let want = if *m == "auto" { "token" } else { m };
        assert_eq!(j["method"], want, "{j}");
        assert_eq!(j["fallback"], serde_json::Value::Null, "{j}");
        assert_eq!(j["verify"]["ok"], true, "{j}");
        if want != "host" {
            // The data did not cross the wire.
            let wire = j["wire_bytes_sent"].as_u64().unwrap() + j["wire_bytes_received"].as_u64().unwrap();
            assert!(wire < 64 << 10, "{m} moved {wire} bytes over the wire: {j}");
        }
        if want == "token" {
            assert_eq!(j["offload"]["tokens"], 1, "{j}");
        }
        let (so, dof, n) = ((k * piece * 512) as usize, ((3 - k) * piece * 512) as usize, (piece * 512) as usize);
        assert!(file_range(&d.lun_path(2), dof, n) == data[so..so + n], "{m}: destination differs");
    }
    // Between block sizes: 512-byte LUN 0 into 4096-byte LUN 1 at LBA 7, by each offload.
    for m in ["token", "xcopy"] {
        let r = oxcopy(&[
            "cp",
            "--json",
            "--method",
            m,
            &format!("{}?lba=16&blocks=4096", d.url(0)),
            &format!("{}?lba=7", d.url(1)),
        ]);
        assert_eq!(r.code, 0, "{m}: {r:?}");
        check_summary(&r.json(), 4096 * 512);
        assert!(file_range(&d.lun_path(1), 7 * 4096, 4096 * 512) == data[16 * 512..(16 + 4096) * 512], "{m}");
    }
    // The whole LUN, text output names the engine.
    let r = oxcopy(&["cp", &d.url(0), &d.url(2)]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("copied 16 MiB") && r.stdout.contains("by token copy"), "{r:?}");
    let r = oxcopy(&["cp", "--method", "xcopy", &d.url(2), &d.url(0)]);
    assert!(r.stdout.contains("by EXTENDED COPY"), "{r:?}");
    assert!(std::fs::read(d.lun_path(2)).unwrap() == data);
    // --verify catches a corrupted destination after an offloaded copy too.
    for m in ["token", "xcopy"] {
        let r = oxcopy(&["cp", "--verify", "--test-corrupt-destination", "--method", m, &d.url(0), &d.url(2)]);
        r.assert_one_line_error(1, "verify failed: 1 of");
    }
}

#[test]
fn large_copies_are_split_within_the_limits() {
    // Two sparse 5 GiB LUNs with data at a few places: more than one
    // EXTENDED COPY list (64 segments of 65535 blocks ≈ 2 GiB) and more than
    // one token (8Fh 0000h: 8388608 blocks = 4 GiB) are needed.
    const BIG: u64 = 5 << 30;
    let marks: [u64; 4] = [0, (2 << 30) - 4096, (4 << 30) + (1 << 20), BIG - (1 << 20)];
    let d = Daemon::start_with(|dir| {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(dir.join("big6.img")).expect("big6");
        f.set_len(BIG).expect("size");
        for (i, &at) in marks.iter().enumerate() {
            f.write_all_at(&pattern(20 + i as u64, 1 << 20), at).expect("mark");
        }
        vec![Lun::new(6, dir.join("big6.img")), Lun::new(7, dir.join("big7.img")).size("5GiB")]
    });
    for (m, commands, tokens) in [("xcopy", 3, 0), ("token", 4, 2)] {
        let r = oxcopy(&["cp", "--json", "--method", m, &d.url(6), &d.url(7)]);
        assert_eq!(r.code, 0, "{m}: {r:?}");
        let j = r.json();
        check_summary(&j, BIG);
        assert_eq!(j["offload"]["commands"], commands, "{m}: {j}");
        assert_eq!(j["offload"]["tokens"], tokens, "{m}: {j}");
        for (i, &at) in marks.iter().enumerate() {
            let f = std::fs::File::open(d.dir.path().join("big7.img")).unwrap();
            let mut buf = vec![0u8; 1 << 20];
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, at).unwrap();
            assert!(buf == pattern(20 + i as u64, 1 << 20), "{m}: data at byte {at}");
        }
        // Start over from an empty destination.
        let f = std::fs::OpenOptions::new().write(true).open(d.dir.path().join("big7.img")).unwrap();
        for &at in &marks {
            std::os::unix::fs::FileExt::write_all_at(&f, &vec![0u8; 1 << 20], at).unwrap();
        }
    }
}

#[test]
fn auto_without_offload_or_through_one_copy_manager() {
    let d = Daemon::start();
    // LUN 4 and 5 have no copy manager: a host copy, and auto says why.
    let r = oxcopy(&["inspect", &d.url(4)]);
    assert!(r.stdout.contains("offload: no offload"), "{r:?}");
    let r = oxcopy(&["cp", "--json", &d.url(4), &d.url(5)]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    check_summary(&j, LUN_SIZE);
    assert_eq!(j["method"], "host");
    let reason = j["fallback"]["reason"].as_str().expect("fallback with a reason");
    assert!(reason.contains("cannot create ROD tokens") && reason.contains("neither LUN advertises"), "{j}");
    assert!(r.stderr.contains("no copy offload between these LUNs"), "{r:?}");
    // LUN 0 → LUN 4: no tokens on LUN 4, but LUN 0's copy manager reaches both.
    let r = oxcopy(&["cp", "--json", &format!("{}?blocks=2048", d.url(0)), &d.url(4)]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    assert_eq!(j["method"], "xcopy", "{j}");
    assert_eq!(j["offload"]["copy_manager"], format!("LUN 0 of {TARGET}"));
    assert_eq!(j["fallback"], serde_json::Value::Null);
}

#[test]
fn auto_falls_back_when_the_destination_refuses_the_tokens() {
    // Two daemons: their copy domains differ (each its own key), so B cannot
    // use A's tokens, and B's copy manager cannot reach A's LUN.
    let a = Daemon::start();
    let b = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = pattern(12, 1 << 20);
    let f = tmp.path().join("src.img");
    write_file(&f, &data);
    assert_eq!(oxcopy(&["cp", path_str(&f), &a.url(0)]).code, 0);
    let src = format!("{}?blocks=2048", a.url(0));
    let r = oxcopy(&["cp", "--json", &src, &b.url(0)]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    check_summary(&j, 1 << 20);
    assert_eq!(j["method"], "host", "{j}");
    assert_eq!(j["fallback"]["from"], "token", "{j}");
    let reason = j["fallback"]["reason"].as_str().unwrap();
    assert!(reason.contains("WRITE USING TOKEN") && reason.contains("INVALID TOKEN OPERATION"), "{j}");
    assert_eq!(r.stderr.matches("falling back").count(), 2, "token → xcopy → host: {r:?}");
    assert!(file_range(&b.lun_path(0), 0, 1 << 20) == data);
    // Explicit methods fail, saying why in words (exit 1: the copy failed).
    oxcopy(&["cp", "--method", "token", &src, &b.url(0)])
        .assert_one_line_error(1, "--method token: WRITE USING TOKEN on LUN 0");
    oxcopy(&["cp", "--method", "xcopy", &src, &b.url(0)]).assert_one_line_error(1, "--method xcopy: EXTENDED COPY to");
}

#[test]
fn token_files_between_two_processes() {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = pattern(13, 4 << 20);
    let f = tmp.path().join("src.img");
    write_file(&f, &data);
    assert_eq!(oxcopy(&["cp", path_str(&f), &d.url(0)]).code, 0);
    let tok = tmp.path().join("a.tok");
    let tok_s = path_str(&tok);
    // Machine A.
    let r = oxcopy(&["token", "create", "--ttl", "300", "-o", tok_s, &format!("{}?lba=2048&blocks=4096", d.url(0))]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("written to") && r.stdout.contains("300 s"), "{r:?}");
    {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(&tok).unwrap();
        assert_eq!(m.len(), 512);
        assert_eq!(m.permissions().mode() & 0o777, 0o600, "not private");
    }
    // Never overwritten.
    let r = oxcopy(&["token", "create", "-o", tok_s, &d.url(0)]);
    r.assert_one_line_error(2, "already exists");
    // Offline decoding.
    let r = oxcopy(&["token", "info", "--json", tok_s]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    assert_eq!(j["bytes_represented"], 4096 * 512);
    assert_eq!(j["block_size"], 512);
    assert_eq!(j["blocks_represented"], 4096);
    assert!(j["creator"]["designator"].as_str().unwrap().starts_with("naa.6"), "{j}");
    assert_eq!(j["target"], TARGET);
    let vpd = oxcopy(&["inspect", "--json", &d.url(0)]).json();
    assert_eq!(j["creator"]["designator"], vpd["vpd"]["83h"]["designators"][0]["value"], "creator = LUN 0");
    let r = oxcopy(&["token", "info", tok_s]);
    assert!(r.stdout.contains("bytes represented:  2097152 (2 MiB) = 4096 blocks of 512 bytes"), "{r:?}");
    // Machine B: a separate process writes it (part of it, then all of it and deletes it).
    let r = oxcopy(&["token", "write", "--json", "--offset-into-rod", "1024", tok_s, &format!("{}?lba=10", d.url(2))]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["bytes"], 3072 * 512);
    assert!(file_range(&d.lun_path(2), 10 * 512, 3072 * 512) == data[(2048 + 1024) * 512..(2048 + 4096) * 512]);
    let r = oxcopy(&["token", "write", "--delete", tok_s, &format!("{}?lba=7", d.url(1))]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("token deleted"), "{r:?}");
    assert!(file_range(&d.lun_path(1), 7 * 4096, 4096 * 512) == data[2048 * 512..(2048 + 4096) * 512]);
    // Deleted: the next use fails, in words.
    oxcopy(&["token", "write", tok_s, &d.url(2)]).assert_one_line_error(1, "TOKEN DELETED (23h/09h)");
    // Bad token files and ranges.
    let junk = tmp.path().join("junk.tok");
    write_file(&junk, b"not a token");
    oxcopy(&["token", "info", path_str(&junk)]).assert_one_line_error(2, "not a 512-byte ROD token");
    oxcopy(&["token", "write", path_str(&junk), &d.url(2)]).assert_one_line_error(2, "not a 512-byte ROD token");
    let r = oxcopy(&["token", "write", "--offset-into-rod", "5000", tok_s, &d.url(2)]);
    r.assert_one_line_error(2, "past the end of the token");
    oxcopy(&["token", "create", "-o", path_str(&tmp.path().join("x.tok")), &d.url(4)])
        .assert_one_line_error(2, "cannot create ROD tokens");
    assert!(!tmp.path().join("x.tok").exists());
    oxcopy(&["token", "create", "-o", path_str(&tmp.path().join("y.tok")), &d.url(9)])
        .assert_one_line_error(2, "no LUN 9");
}

#[test]
fn wrong_chap_secret_against_oxcopyd() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("alice.secret");
    std::fs::write(&secret, "alice-secret-1234").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let path = DaemonConfig::new(dir.path().join("state"))
        .server("nop_interval", 0)
        .target(
            Target::new(TARGET)
                .chap(Chap::new("alice", &secret))
                .lun(Lun::new(0, dir.path().join("lun0.img")).size("1MiB")),
        )
        .write(dir.path().join("oxcopyd.toml"));
    let cfg = oxcopyd::Config::from_file(&path).expect("config validates");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let running = rt.block_on(oxcopyd::start(cfg)).expect("daemon starts");
    let url = format!("iscsi://{}/{TARGET}/0", running.addrs[0]);
    let env = [("OXCOPY_CHAP_SECRET", "not-the-secret")];
    oxcopy_env(&["--chap-user", "alice", "inspect", &url], &env).assert_one_line_error(2, "wrong CHAP user or secret");
    oxcopy(&["inspect", &url]).assert_one_line_error(2, "cannot log in");
    let env = [("OXCOPY_CHAP_SECRET", "alice-secret-1234")];
    let ok = oxcopy_env(&["--chap-user", "alice", "cp", "--json", &url, path_str(&dir.path().join("o.img"))], &env);
    assert_eq!(ok.code, 0, "{ok:?}");
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), running.shutdown()).await });
}

// ---------------------------------------------------------------------------
// Local → local on XFS (reflink) and ext4 (no reflink): loop filesystems, as
// root; skipped otherwise unless OXCOPY_REQUIRE_XFS=1.

fn local_copy_on(fs: &LoopFs) -> serde_json::Value {
    let data = pattern(14, (16 << 20) + 4096);
    let src = fs.mnt.join("a.img");
    write_file(&src, &data);
    let dst = fs.mnt.join("b.img");
    let r = oxcopy(&["cp", "--json", "--verify", path_str(&src), path_str(&dst)]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    check_summary(&j, data.len() as u64);
    assert!(std::fs::read(&dst).unwrap() == data);
    j
}

#[test]
fn local_copy_reflinks_on_xfs() {
    let Some(fs) = LoopFs::xfs_reflink(512) else { return };
    let j = local_copy_on(&fs);
    assert_eq!(j["local"]["reflink"], (16 << 20) + 4096, "{j}");
    assert_eq!(j["local"]["read_write"], 0, "{j}");
}

#[test]
fn local_copy_without_reflink_on_ext4() {
    let Some(fs) = LoopFs::ext4(256) else { return };
    let j = local_copy_on(&fs);
    assert_eq!(j["local"]["reflink"], 0, "{j}");
    assert_eq!(j["local"]["copy_file_range"], (16 << 20) + 4096, "{j}");
}

// ---------------------------------------------------------------------------
// ls and inspect.

#[test]
fn ls_lists_targets_and_luns() {
    let d = Daemon::start();
    let portal = d.addr.to_string();
    let r = oxcopy(&["ls", &portal]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.lines().next().unwrap().starts_with(TARGET), "{r:?}");
    assert!(r.stdout.contains("LUN 0        16 MiB  32768 × 512 B"), "{r:?}");
    assert!(r.stdout.contains("LUN 1        16 MiB  4096 × 4096 B"), "{r:?}");
    let r = oxcopy(&["ls", "--json", &format!("iscsi://{portal}/")]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    let t = &j["targets"][0];
    assert_eq!(t["name"], TARGET);
    let luns = t["luns"].as_array().unwrap();
    assert_eq!(luns.len(), 6);
    assert_eq!(luns[1]["block_size"], 4096);
    assert_eq!(luns[1]["bytes"], LUN_SIZE);
}

/// A LUN on a stacked volume: `inspect` lists page C1h and prints the
/// layout, stacked volume indented under its parent.
#[test]
fn inspect_shows_a_volume_layout() {
    let d = Daemon::start_toml(|d| {
        let base = DaemonConfig::new(d.join("state")).server("nop_interval", 0).target(Target::new(TARGET)).to_toml();
        let f = |n: &str| d.join(n).display().to_string();
        format!(
            "{base}\n[[target.lun]]\nid = 0\nvolume = \"top\"\n\n\
             [[volume]]\nname = \"s\"\ntype = \"striped\"\nstripe_size = \"64KiB\"\n\
             members = [\"{}:4MiB\", \"{}:4MiB\"]\n\n\
             [[volume]]\nname = \"top\"\ntype = \"linear\"\nmembers = [\"volume:s\", \"{}:2MiB\"]\n",
            f("a.img"),
            f("b.img"),
            f("c.img")
        )
    });
    let r = oxcopy(&["inspect", "--json", &d.url(0)]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    assert_eq!(j["capacity"]["bytes"], 10 << 20);
    let layout = j["vpd"]["C1h"]["layout"].as_str().unwrap_or_else(|| panic!("no C1h: {j}"));
    assert!(layout.starts_with("volume top (linear), 10485760 bytes"), "{layout}");
    assert!(layout.contains("    volume s (striped (stripe 65536 bytes)), 8388608 bytes"), "{layout}");
    assert!(layout.contains("c.img"), "{layout}");
    let r = oxcopy(&["inspect", &d.url(0)]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Volume layout (VPD C1h)\n  volume top (linear)"), "{}", r.stdout);
}

#[test]
fn inspect_decodes_every_page_and_descriptor() {
    let d = Daemon::start();
    let r = oxcopy(&["inspect", "--json", &d.url(0)]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    assert_eq!(j["capacity"]["blocks"], LUN_BLOCKS_512);
    assert_eq!(j["capacity"]["block_size"], 512);
    assert_eq!(j["inquiry"]["peripheral_device_type"], "00h direct-access block device");
    let vpd = j["vpd"].as_object().unwrap();
    for p in ["00h", "80h", "83h", "B0h", "B1h", "B2h"] {
        assert!(vpd.contains_key(p), "page {p} missing: {j}");
        assert!(vpd[p].get("error").is_none(), "page {p}: {j}");
    }
    assert!(vpd["83h"]["designators"][0]["value"].as_str().unwrap().starts_with("naa.6"), "{j}");
    assert!(vpd["B0h"]["maximum_transfer_length"].as_u64().is_some_and(|n| n > 0), "{j}");
    let summary = j["offload"]["summary"].as_str().unwrap();
    // VPD 8Fh: every descriptor the target sends is listed with its values.
    match d.raw_vpd(0, 0x8f) {
        Some(raw) if raw.len() > 4 => {
            let listed = vpd["8Fh"]["descriptors"].as_array().expect("8Fh decoded");
            let mut types = Vec::new();
            let mut off = 4;
            while off + 4 <= raw.len() {
                let t = u16::from_be_bytes([raw[off], raw[off + 1]]);
                let len = u16::from_be_bytes([raw[off + 2], raw[off + 3]]) as usize;
                types.push(format!("{t:04X}h"));
                off += 4 + len;
            }
            let got: Vec<&str> = listed.iter().map(|d| d["type"].as_str().unwrap()).collect();
            assert_eq!(got, types, "{j}");
            assert_eq!(vpd["8Fh"]["truncated"], false);
            for desc in listed {
                assert!(desc["name"].as_str().unwrap() != "unknown", "{desc}");
                // Something beyond type/name/length: the decoded values.
                assert!(desc.as_object().unwrap().len() > 3, "{desc}");
            }
            assert_ne!(summary, "no offload", "{j}");
        }
        _ => assert!(summary.starts_with("no offload"), "{j}"),
    }
    // The text form leads with the summary.
    let r = oxcopy(&["inspect", &d.url(1)]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("capacity: 16 MiB (4096 blocks of 4096 bytes)"), "{r:?}");
    let j1 = oxcopy(&["inspect", "--json", &d.url(1)]).json();
    assert!(r.stdout.contains(&format!("offload: {}", j1["offload"]["summary"].as_str().unwrap())), "{r:?}");
    assert!(r.stdout.contains("VPD B0h Block Limits"), "{r:?}");
    // What our target offloads, in one plain line (each ROD type named once).
    for want in ["EXTENDED COPY LID1: segments 02h", "CSCD E4h", "tokens: ", "point-in-time", "zero", "max 64 ranges"] {
        assert!(summary.contains(want), "{want:?} missing from {summary:?}");
    }
    assert_eq!(summary.matches("point-in-time").count(), 1, "{summary}");
    // Every 8Fh descriptor with its values: the token limits among them.
    let descs = vpd["8Fh"]["descriptors"].as_array().unwrap();
    let limits = descs.iter().find(|x| x["type"] == "0000h").expect("0000h Block Device ROD Token Limits");
    assert_eq!(limits["maximum_range_descriptors"], 64, "{limits}");
    assert!(descs.iter().any(|x| x["type"] == "0108h"), "0108h Supported ROD Types");
}

// ---------------------------------------------------------------------------
// tgt: another target (no offload, CHAP). Runs when tgtd is installed and we
// are root; otherwise says why and passes — unless OXCOPY_REQUIRE_TGT=1 (CI),
// where a missing tgt is a failure.

/// Bound on each run of `scripts/tgt.sh` and `tgtadm`.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

struct Tgt {
    port: u16,
    dir: tempfile::TempDir,
}

impl Tgt {
    fn start() -> Option<Tgt> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/tgt.sh");
        let root = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
            .unwrap_or(false);
        let required = std::env::var_os("OXCOPY_REQUIRE_TGT").is_some_and(|v| v == "1");
        if !root || !Path::new("/usr/sbin/tgtd").exists() || !script.exists() {
            assert!(!required, "OXCOPY_REQUIRE_TGT=1 but root, /usr/sbin/tgtd or scripts/tgt.sh is missing");
            eprintln!("tgt tests skipped: need root, /usr/sbin/tgtd and scripts/tgt.sh");
            return None;
        }
        // tgtd's control port (= the iSCSI port in tgt.sh) must be below 32768.
        let seed = std::process::id() as u16 % 5000;
        let port = (0..5000u16)
            .map(|i| 20000 + (seed + i) % 10000)
            .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())?;
        let dir = tempfile::tempdir().ok()?;
        let mut start = Command::new(&script);
        start.args(["start", &port.to_string(), path_str(dir.path()), "--size", "16M"]).stdout(Stdio::null());
        let st = status_within(&mut start, TOOL_TIMEOUT).ok()??;
        if !st.success() {
            assert!(!required, "OXCOPY_REQUIRE_TGT=1 but scripts/tgt.sh start failed");
            eprintln!("tgt tests skipped: scripts/tgt.sh start failed");
            return None;
        }
        Some(Tgt { port, dir })
    }

    fn url(&self, lun: u32) -> String {
        format!("iscsi://127.0.0.1:{}/iqn.2026-11.dev.oxcopy:tgt/{lun}", self.port)
    }

    fn tgtadm(&self, args: &[&str]) {
        let mut cmd = Command::new("tgtadm");
        cmd.args(["-C", &self.port.to_string(), "--lld", "iscsi"]).args(args);
        let st = status_within(&mut cmd, TOOL_TIMEOUT).expect("tgtadm").expect("tgtadm finishes");
        assert!(st.success(), "tgtadm {args:?}");
    }
}

impl Drop for Tgt {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/tgt.sh");
        let mut stop = Command::new(script);
        stop.args(["stop", &self.port.to_string(), path_str(self.dir.path())])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = status_within(&mut stop, TOOL_TIMEOUT);
    }
}

#[test]
fn tgt_has_no_offload_and_speaks_chap() {
    let Some(t) = Tgt::start() else { return };
    let r = oxcopy(&["inspect", "--json", &t.url(1)]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["offload"]["summary"], "no offload");
    // LUN 0 is tgt's controller: inspectable, but not a copy endpoint.
    oxcopy(&["cp", &t.url(0), "/tmp/oxcopy-test-never-written"]).assert_one_line_error(2, "is not a disk");
    // Auto against a target without offload: a silent host copy.
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("f.img");
    write_file(&f, &pattern(4, 1 << 20));
    let r = oxcopy(&["cp", "--json", "--verify", path_str(&f), &t.url(1)]);
    assert_eq!(r.code, 0, "{r:?}");
    check_summary(&r.json(), 1 << 20);
    // LUN to LUN range on tgt: no offload, the fallback says why.
    let r = oxcopy(&["cp", "--json", &format!("{}?blocks=2048", t.url(1)), &format!("{}?lba=4096", t.url(1))]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    assert_eq!(j["method"], "host");
    assert!(j["fallback"]["reason"].as_str().unwrap().contains("cannot create ROD tokens"), "{j}");
    oxcopy(&["cp", "--method", "xcopy", &format!("{}?blocks=8", t.url(1)), &format!("{}?lba=64", t.url(1))])
        .assert_one_line_error(2, "neither LUN advertises");
    // CHAP: require it, then log in with the right and a wrong secret.
    t.tgtadm(&["--op", "new", "--mode", "account", "--user", "alice", "--password", "alice-secret-12"]);
    t.tgtadm(&["--op", "bind", "--mode", "account", "--tid", "1", "--user", "alice"]);
    oxcopy(&["inspect", &t.url(1)]).assert_one_line_error(2, "cannot log in");
    let ok = oxcopy_env(&["--chap-user", "alice", "inspect", &t.url(1)], &[("OXCOPY_CHAP_SECRET", "alice-secret-12")]);
    assert_eq!(ok.code, 0, "{ok:?}");
    let secret_file = tmp.path().join("secret");
    write_file(&secret_file, b"alice-secret-12\n");
    let ok = oxcopy(&[
        "--chap-user",
        "alice",
        "--chap-secret-file",
        path_str(&secret_file),
        "ls",
        &format!("127.0.0.1:{}", t.port),
    ]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains("LUN 1"), "{ok:?}");
    let url = t.url(1).replace("iscsi://", "iscsi://alice%alice-secret-12@");
    assert_eq!(oxcopy(&["inspect", &url]).code, 0);
    let bad = oxcopy_env(&["--chap-user", "alice", "inspect", &t.url(1)], &[("OXCOPY_CHAP_SECRET", "wrong")]);
    bad.assert_one_line_error(2, "authentication failure");
    // Mutual CHAP.
    t.tgtadm(&["--op", "new", "--mode", "account", "--user", "tgt", "--password", "tgt-secret-3456"]);
    t.tgtadm(&["--op", "bind", "--mode", "account", "--tid", "1", "--user", "tgt", "--outgoing"]);
    let env = [("OXCOPY_CHAP_SECRET", "alice-secret-12"), ("OXCOPY_TARGET_CHAP_SECRET", "tgt-secret-3456")];
    let ok = oxcopy_env(&["--chap-user", "alice", "--target-chap-user", "tgt", "inspect", &t.url(1)], &env);
    assert_eq!(ok.code, 0, "{ok:?}");
    let env = [("OXCOPY_CHAP_SECRET", "alice-secret-12"), ("OXCOPY_TARGET_CHAP_SECRET", "not-the-secret")];
    oxcopy_env(&["--chap-user", "alice", "--target-chap-user", "tgt", "inspect", &t.url(1)], &env)
        .assert_one_line_error(2, "target secret mismatch");
}

// ---------------------------------------------------------------------------
// NVMe/TCP.

const NQN: &str = "nqn.2026-12.dev.oxcopy:cli";
const NQN_B: &str = "nqn.2026-12.dev.oxcopy:cli-b";
const NS_SIZE: usize = 8 << 20;
const LOCKED: &str = "nqn.2026-12.dev.oxcopy:cli-locked";
const THE_HOST: &str = "nqn.2026-12.dev.oxcopy:the-one-host";

/// A daemon with iSCSI LUN 0 (8 MiB, 512-byte blocks) and two NVMe/TCP
/// subsystems on one listener: `NQN` with namespaces 1 and 2 (8 MiB, 512-byte
/// blocks; namespace 1 filled with pattern 31), 3 (8 MiB, 4096-byte
/// blocks) and 4 (8 MiB, 512-byte blocks, read-only), `NQN_B` with namespace
/// 1 (8 MiB, 512-byte blocks), and `LOCKED` (namespace 1, 1 MiB) that only
/// host `THE_HOST` may connect to.
fn nvme_daemon() -> (Daemon, SocketAddr) {
    let d = Daemon::start_toml(|d| {
        std::fs::write(d.join("ns1.img"), pattern(31, NS_SIZE)).expect("ns1");
        std::fs::write(d.join("ns4.img"), vec![0u8; NS_SIZE]).expect("ns4");
        format!(
            r#"[server]
listen = ["127.0.0.1:0"]
data_dir = "{d}/state"
nop_interval = 0

[[target]]
iqn = "{TARGET}"
[[target.lun]]
id = 0
path = "{d}/lun0.img"
size = "8MiB"

[[subsystem]]
nqn = "{NQN}"
listen = ["127.0.0.1:0"]
[[subsystem.namespace]]
nsid = 1
path = "{d}/ns1.img"
[[subsystem.namespace]]
nsid = 2
path = "{d}/ns2.img"
size = "8MiB"
[[subsystem.namespace]]
nsid = 3
path = "{d}/ns3.img"
size = "8MiB"
block_size = 4096
[[subsystem.namespace]]
nsid = 4
path = "{d}/ns4.img"
read_only = true

[[subsystem]]
nqn = "{NQN_B}"
listen = ["127.0.0.1:0"]
[[subsystem.namespace]]
nsid = 1
path = "{d}/b1.img"
size = "8MiB"

[[subsystem]]
nqn = "{LOCKED}"
listen = ["127.0.0.1:0"]
hosts = ["{THE_HOST}"]
[[subsystem.namespace]]
nsid = 1
path = "{d}/locked.img"
size = "1MiB"
"#,
            d = d.display()
        )
    });
    let addr = *d.running.as_ref().expect("running").nvme_addrs.first().expect("an NVMe/TCP listener");
    (d, addr)
}

fn ns_url(addr: SocketAddr, nqn: &str, nsid: u32, query: &str) -> String {
    format!("nvme+tcp://{addr}/{nqn}/{nsid}{query}")
}

fn wire_total(j: &serde_json::Value) -> u64 {
    j["wire_bytes_sent"].as_u64().unwrap_or(u64::MAX) + j["wire_bytes_received"].as_u64().unwrap_or(u64::MAX)
}

#[test]
fn nvme_copy_within_and_across_namespaces() {
    let (d, a) = nvme_daemon();
    let data = pattern(31, NS_SIZE);
    let ns = |dir: &str| d.dir.path().join(dir);

    // Same namespace: format 0h, chosen by auto; few bytes on the wire.
    let src = ns_url(a, NQN, 1, "?lba=0&blocks=4096");
    let dst = ns_url(a, NQN, 1, "?lba=8192");
    let r = oxcopy(&["cp", "--json", &src, &dst]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    check_summary(&j, 4096 * 512);
    assert_eq!(j["method"], "copy", "{j}");
    assert_eq!(j["fallback"], serde_json::Value::Null, "{j}");
    assert_eq!(j["offload"]["copy_format"], "0h", "{j}");
    assert!(j["offload"]["commands"].as_u64() >= Some(1), "{j}");
    assert!(wire_total(&j) < 64 << 10, "NVMe Copy moved {} bytes over the wire: {j}", wire_total(&j));
    assert!(file_range(&ns("ns1.img"), 8192 * 512, 4096 * 512) == data[..4096 * 512], "same-namespace copy differs");
    assert!(file_range(&ns("ns1.img"), 0, 8192 * 512) == data[..8192 * 512], "source changed");

    // Across namespaces of one subsystem: format 2h; the text summary says so.
    let r = oxcopy(&["cp", "--method", "copy", "--verify", &ns_url(a, NQN, 1, ""), &ns_url(a, NQN, 2, "")]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("copied 8 MiB") && r.stdout.contains("by NVMe Copy (format 2h, "), "{r:?}");
    assert!(r.stdout.contains("verified: "), "{r:?}");
    assert!(r.stderr.is_empty(), "{r:?}");
    let want = std::fs::read(ns("ns1.img")).unwrap();
    assert!(std::fs::read(ns("ns2.img")).unwrap() == want, "cross-namespace copy differs");

    // A Copy the controller refuses (read-only destination): auto says so and
    // falls back to the host copy, which fails too; --method copy fails in words.
    let r = oxcopy(&["cp", &ns_url(a, NQN, 1, "?blocks=64"), &ns_url(a, NQN, 4, "")]);
    assert_eq!(r.code, 1, "{r:?}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{r:?}");
    assert!(lines[0].starts_with("oxcopy: note: NVMe Copy failed, falling back to host: Copy of 64 blocks"), "{r:?}");
    assert!(lines[0].contains("write protected"), "{r:?}");
    assert!(lines[1].starts_with("oxcopy: writing nvme+tcp://") && lines[1].contains("write protected"), "{r:?}");
    let r = oxcopy(&["cp", "--method", "copy", &ns_url(a, NQN, 1, "?blocks=64"), &ns_url(a, NQN, 4, "")]);
    r.assert_one_line_error(
        1,
        "--method copy: Copy of 64 blocks to LBA 0 of namespace 4 of nqn.2026-12.dev.oxcopy:cli",
    );

    // Overlapping ranges on one namespace.
    let r = oxcopy(&["cp", &ns_url(a, NQN, 1, "?lba=0&blocks=100"), &ns_url(a, NQN, 1, "?lba=50")]);
    r.assert_one_line_error(2, "the source and destination ranges overlap on the same namespace");

    // Different block sizes: --method copy refuses, auto copies by the host and says why.
    let r = oxcopy(&["cp", "--method", "copy", &ns_url(a, NQN, 1, "?blocks=4096"), &ns_url(a, NQN, 3, "")]);
    r.assert_one_line_error(2, "--method copy: the namespaces' block sizes differ (512 and 4096 bytes)");
    let r = oxcopy(&["cp", "--json", &ns_url(a, NQN, 1, "?blocks=4096"), &ns_url(a, NQN, 3, "?lba=8")]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    check_summary(&j, 4096 * 512);
    assert_eq!(j["method"], "host", "{j}");
    assert_eq!(j["fallback"]["from"], "copy", "{j}");
    assert!(r.stderr.contains("note: no NVMe Copy between these namespaces, using the host copy"), "{r:?}");
    assert!(file_range(&ns("ns3.img"), 8 * 4096, 4096 * 512) == want[..4096 * 512], "host copy differs");

    // Different subsystems (same address): no NVMe Copy.
    let r = oxcopy(&["cp", "--method", "copy", &ns_url(a, NQN, 1, ""), &ns_url(a, NQN_B, 1, "")]);
    r.assert_one_line_error(2, "--method copy: the source and destination are not in one NVMe subsystem");
    let r = oxcopy(&["cp", "--json", &ns_url(a, NQN, 1, ""), &ns_url(a, NQN_B, 1, "")]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.json()["method"], "host", "{r:?}");
    assert!(std::fs::read(ns("b1.img")).unwrap() == want, "copy to the other subsystem differs");

    // A missing namespace, a missing subsystem.
    oxcopy(&["cp", &ns_url(a, NQN, 9, ""), "/dev/null"]).assert_one_line_error(2, "no namespace 9 in NVMe subsystem");
    oxcopy(&["cp", &ns_url(a, "nqn.2026-12.dev.oxcopy:nope", 1, ""), "/dev/null"])
        .assert_one_line_error(2, "cannot connect to NVMe subsystem nqn.2026-12.dev.oxcopy:nope");
}

#[test]
fn nvme_host_copies_with_files_and_iscsi() {
    let (d, a) = nvme_daemon();
    let data = pattern(31, NS_SIZE);
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("out.img");

    // Namespace → file.
    let r = oxcopy(&["cp", "--json", "--verify", &ns_url(a, NQN, 1, "?lba=16&blocks=2048"), path_str(&f)]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    check_summary(&j, 2048 * 512);
    assert_eq!((j["method"].as_str(), j["verify"]["ok"].as_bool()), (Some("host"), Some(true)), "{j}");
    assert!(std::fs::read(&f).unwrap() == data[16 * 512..(16 + 2048) * 512]);
    assert!(r.stderr.is_empty(), "{r:?}");

    // File → namespace (4096-byte blocks).
    let r = oxcopy(&["cp", path_str(&f), &ns_url(a, NQN, 3, "?lba=1")]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("by host copy"), "{r:?}");
    assert!(file_range(&d.dir.path().join("ns3.img"), 4096, 2048 * 512) == data[16 * 512..(16 + 2048) * 512]);
    // A file that is not whole blocks.
    let odd = tmp.path().join("odd.img");
    write_file(&odd, &[1u8; 1000]);
    oxcopy(&["cp", path_str(&odd), &ns_url(a, NQN, 2, "")]).assert_one_line_error(2, "512-byte blocks");
    // --method copy needs two namespaces.
    oxcopy(&["cp", "--method", "copy", path_str(&f), &ns_url(a, NQN, 2, "")])
        .assert_one_line_error(2, "--method copy: NVMe Copy needs an NVMe source and destination");

    // Namespace → iSCSI LUN, and back to another namespace, on the same daemon.
    let r = oxcopy(&["cp", "--json", &ns_url(a, NQN, 1, ""), &d.url(0)]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    check_summary(&j, NS_SIZE as u64);
    assert_eq!(j["method"], "host", "{j}");
    assert!(wire_total(&j) >= 2 * NS_SIZE as u64, "the data crossed the wire twice: {j}");
    assert!(std::fs::read(d.lun_path(0)).unwrap() == data, "NVMe → iSCSI differs");
    let r = oxcopy(&["cp", "--verify", &format!("{}?lba=100&blocks=1000", d.url(0)), &ns_url(a, NQN_B, 1, "?lba=7")]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("by host copy") && r.stdout.contains("verified: "), "{r:?}");
    assert!(file_range(&d.dir.path().join("b1.img"), 7 * 512, 1000 * 512) == data[100 * 512..1100 * 512]);
    // A range past the end of a namespace.
    oxcopy(&["cp", &ns_url(a, NQN, 1, "?lba=16380&blocks=8"), path_str(&f)])
        .assert_one_line_error(2, "runs past the end of namespace 1 of nqn.2026-12.dev.oxcopy:cli");
    // Nothing listening.
    let port = oxcopy_testkit::free_port("127.0.0.1".parse().unwrap());
    oxcopy(&["cp", &format!("nvme+tcp://127.0.0.1:{port}/{NQN}/1"), path_str(&f)])
        .assert_one_line_error(2, "connection refused");
}

#[test]
fn nvme_ls_and_inspect() {
    let (_d, a) = nvme_daemon();
    // The discovery log, and each subsystem's namespaces.
    let r = oxcopy(&["ls", &format!("nvme+tcp://{a}")]);
    assert_eq!(r.code, 0, "{r:?}");
    let first = r.stdout.lines().find(|l| l.starts_with(NQN)).unwrap_or_else(|| panic!("{r:?}"));
    assert!(first.starts_with(&format!("{NQN}  (nvm {}:{}", a.ip(), a.port())), "{r:?}");
    assert!(r.stdout.lines().any(|l| l.starts_with(NQN_B)), "{r:?}");
    assert!(r.stdout.contains("  NS 1          8 MiB  16384 × 512 B  NGUID "), "{r:?}");
    assert!(r.stdout.contains("  NS 3          8 MiB  2048 × 4096 B  NGUID "), "{r:?}");
    let r = oxcopy(&["ls", "--json", &format!("nvme+tcp://{a}/")]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    assert_eq!(j["address"], a.to_string());
    let subs = j["subsystems"].as_array().unwrap();
    let s = subs.iter().find(|s| s["nqn"] == NQN).unwrap_or_else(|| panic!("{j}"));
    assert_eq!(s["type"], "nvm");
    let ns = s["namespaces"].as_array().unwrap();
    assert_eq!(ns.iter().map(|n| n["nsid"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!((ns[2]["block_size"].as_u64(), ns[2]["bytes"].as_u64()), (Some(4096), Some(NS_SIZE as u64)));
    assert_eq!(ns[0]["nguid"].as_str().map(str::len), Some(32), "{j}");
    // One subsystem only.
    let r = oxcopy(&["ls", "--json", &format!("nvme+tcp://{a}/{NQN_B}")]);
    assert_eq!(r.code, 0, "{r:?}");
    let j = r.json();
    assert_eq!(j["subsystems"].as_array().map(Vec::len), Some(1), "{j}");
    assert_eq!(j["subsystems"][0]["namespaces"][0]["blocks"], 16384, "{j}");
    oxcopy(&["ls", &format!("nvme+tcp://{a}/nqn.2026-12.dev.oxcopy:nope")])
        .assert_one_line_error(2, "cannot connect to NVMe subsystem nqn.2026-12.dev.oxcopy:nope");
    oxcopy(&["ls", &format!("nvme+tcp://{a}/{NQN}/1")]).assert_one_line_error(2, "see oxcopy inspect");

    // inspect: controller, namespace and offload.
    let r = oxcopy(&["inspect", &ns_url(a, NQN, 1, "")]);
    assert_eq!(r.code, 0, "{r:?}");
    for want in [
        "  capacity: 8 MiB (16384 blocks of 512 bytes)",
        "  offload: NVMe Copy: formats 0h, 2h (across namespaces of the subsystem too); max ",
        &format!("  subsystem NQN: {NQN}"),
        "    Copy: yes",
        "    Write Zeroes: yes",
        "  Copy formats (OCFS 0x0005): 0h, 2h",
        "  block size: 512 bytes",
        "  Copy limits: MSSRL ",
    ] {
        assert!(r.stdout.contains(want), "wanted {want:?}: {r:?}");
    }
    let j = oxcopy(&["inspect", "--json", &ns_url(a, NQN, 3, "")]).json();
    assert_eq!(j["namespace"]["block_size"], 4096, "{j}");
    assert_eq!(j["namespace"]["bytes"], NS_SIZE as u64, "{j}");
    assert_eq!(j["controller"]["subnqn"], NQN, "{j}");
    assert_eq!(j["offload"]["copy"], true, "{j}");
    assert_eq!(j["offload"]["cross_namespace"], true, "{j}");
    assert_eq!(j["controller"]["copy_formats"], serde_json::json!(["0h", "2h"]), "{j}");
    assert!(j["controller"]["optional_commands"].as_array().unwrap().contains(&serde_json::json!("Copy")), "{j}");
    assert!(j["namespace"]["mssrl"].as_u64() > Some(0) && j["offload"]["max_ranges"].as_u64() > Some(1), "{j}");
    oxcopy(&["inspect", &ns_url(a, NQN, 7, "")]).assert_one_line_error(2, "no namespace 7 in NVMe subsystem");
    oxcopy(&["inspect", &format!("nvme+tcp://{a}/{NQN}")]).assert_one_line_error(2, "inspect needs a namespace");

    // The host NQN: --hostnqn, else OXCOPY_HOSTNQN, else ours (refused by LOCKED).
    let locked = format!("nvme+tcp://{a}/{LOCKED}");
    oxcopy(&["ls", &locked]).assert_one_line_error(2, "the subsystem does not allow this host NQN (see --hostnqn)");
    let r = oxcopy(&["ls", "--hostnqn", THE_HOST, &locked]);
    assert!(r.code == 0 && r.stdout.contains("  NS 1          1 MiB  2048 × 512 B"), "{r:?}");
    let r = oxcopy_env(&["inspect", &format!("{locked}/1")], &[("OXCOPY_HOSTNQN", THE_HOST)]);
    assert!(r.code == 0 && r.stdout.contains("capacity: 1 MiB"), "{r:?}");
    oxcopy(&["--hostnqn", "not an nqn", "ls", &locked]).assert_one_line_error(2, "must start with nqn.");
    // In the full listing it is there, with the reason it could not be opened.
    let r = oxcopy(&["ls", &format!("nvme+tcp://{a}")]);
    assert!(r.code == 0 && r.stdout.contains("does not allow this host NQN"), "{r:?}");
}
