//! Tests of the real `oxcopyd` binary: graceful SIGTERM shutdown with I/O in
//! flight from several sessions, and refusal of bad configurations.

mod common;

use common::*;
use oxcopy_testkit::{Proc, Spawn};
use std::path::Path;
use std::time::{Duration, Instant};

/// SIGTERM while four sessions are writing: exit code 0 within a bounded
/// time, every write acknowledged GOOD is in the backing file, the
/// sessions see the connection close (no hang), the listener is closed,
/// and nothing panicked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_io_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &Opts::default()).write(dir.path().join("oxcopyd.toml"));
    let o = Spawn { rust_log: "info", cwd: Some(dir.path()), url_timeout: Duration::from_secs(20), ..spawn_opts() };
    let mut p = Proc::spawn(&cfg, &o);
    let addr = p.addr();
    assert!(addr.ip().is_loopback());

    let writers = Writers::start(addr, 4).await;
    writers.wait_progress(3).await;
    let t = Instant::now();
    p.sigterm().expect("SIGTERM by PID");
    let status = tokio::task::block_in_place(|| p.wait_exit(Duration::from_secs(20), Duration::from_millis(20)));
    let took = t.elapsed();
    let status = status.unwrap_or_else(|| panic!("no exit 20 s after SIGTERM; stderr:\n{}", p.stderr()));
    assert_eq!(status.code(), Some(0), "exit status; stderr:\n{}", p.stderr());
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");

    let (total, cut_short) = writers.verify(&dir.path().join("lun0.img")).await;
    eprintln!("{total} acknowledged writes verified; {cut_short}/4 sessions were cut short; shutdown took {took:?}");
    assert!(cut_short > 0, "SIGTERM came after every session had finished: no I/O was in flight");
    match tokio::net::TcpStream::connect(addr).await {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(_) => panic!("{addr} still accepts connections after exit"),
    }
    let err = p.stderr();
    assert!(!err.contains("panicked"), "stderr:\n{err}");
    assert!(err.contains("shut down cleanly"), "stderr:\n{err}");
}

/// Run the binary on a config expected to be refused.
fn refused(dir: &Path, name: &str, text: &str) -> String {
    let cfg = dir.join(name);
    std::fs::write(&cfg, text).expect("config");
    let mut p = Proc::launch(&cfg, &Spawn { rust_log: "info", cwd: Some(dir), ..spawn_opts() });
    let st = p
        .wait_exit(Duration::from_secs(20), Duration::from_millis(20))
        .unwrap_or_else(|| panic!("{name}: still running"));
    let err = p.stderr();
    assert_eq!(st.code(), Some(2), "{name}: exit status; stderr:\n{err}");
    assert!(err.contains(&cfg.display().to_string()), "{name}: message must name the file:\n{err}");
    err
}

/// Bad configurations: exit code 2, a message naming the file and the key,
/// and nothing created (no data dir, no LUN directory or file, an existing
/// file left as it was).
#[test]
fn bad_config_exits_2_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display().to_string();
    let target = |lun: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\ndata_dir = \"{d}/state\"\n\n[[target]]\niqn = \"iqn.2026-11.dev.oxcopy:x\"\n\n[[target.lun]]\n{lun}\n"
        )
    };
    let lun_ok = format!("id = 0\npath = \"{d}/luns/lun0.img\"\nsize = \"64MiB\"");
    let cases: Vec<(&str, String, &str)> = vec![
        ("block_size.toml", target(&format!("{lun_ok}\nblock_size = 1000")), "target[0].lun[0].block_size"),
        (
            "size.toml",
            target(&format!("id = 0\npath = \"{d}/luns/lun0.img\"\nsize = \"lots\"")),
            "target[0].lun[0].size",
        ),
        (
            "id.toml",
            target(&format!("id = 20000\npath = \"{d}/luns/lun0.img\"\nsize = \"1MiB\"")),
            "target[0].lun[0].id",
        ),
        ("iqn.toml", target(&lun_ok).replace("iqn.2026-11.dev.oxcopy:x", "disk1"), "target[0].iqn"),
        ("listen.toml", target(&lun_ok).replace("127.0.0.1:0", "localhost"), "server.listen[0]"),
        ("unknown.toml", target(&lun_ok).replace("[server]\n", "[server]\nbogus_key = 1\n"), "bogus_key"),
        (
            "window.toml",
            target(&lun_ok).replace("[server]\n", "[server]\nmax_commands_per_session = 0\n"),
            "server.max_commands_per_session",
        ),
        (
            "duplicate.toml",
            target(&format!("{lun_ok}\n\n[[target.lun]]\nid = 0\npath = \"{d}/luns/lun1.img\"\nsize = \"1MiB\"")),
            "target[0].lun[1].id",
        ),
        (
            "initiators.toml",
            target(&lun_ok).replace(
                "iqn = \"iqn.2026-11.dev.oxcopy:x\"",
                "iqn = \"iqn.2026-11.dev.oxcopy:x\"\ninitiators = [\"Not A Name\"]",
            ),
            "target[0].initiators[0]",
        ),
    ];
    for (name, text, key) in &cases {
        let err = refused(dir.path(), name, text);
        assert!(err.contains(key), "{name}: message must name {key}:\n{err}");
        assert!(!dir.path().join("state").exists(), "{name}: data dir created");
        assert!(!dir.path().join("luns").exists(), "{name}: LUN directory created");
    }

    // An existing file whose size disagrees: refused, left untouched.
    let existing = dir.path().join("existing.img");
    std::fs::write(&existing, vec![0x5a; 8192]).expect("existing file");
    let text = target(&format!("id = 0\npath = \"{}\"\nsize = \"1MiB\"", existing.display()));
    let err = refused(dir.path(), "disagree.toml", &text);
    assert!(err.contains("target[0].lun[0].size"), "{err}");
    assert_eq!(std::fs::read(&existing).expect("read"), vec![0x5a; 8192], "existing file modified");
    assert!(!dir.path().join("state").exists());

    // A missing config file.
    let missing = dir.path().join("missing.toml");
    let mut p = Proc::launch(&missing, &Spawn { rust_log: "info", cwd: Some(dir.path()), ..spawn_opts() });
    let st = p.wait_exit(Duration::from_secs(20), Duration::from_millis(20)).expect("exits");
    assert_eq!(st.code(), Some(2), "{}", p.stderr());
    assert!(p.stderr().contains(&missing.display().to_string()), "{}", p.stderr());
    // Nothing created in the working directory either (no default data dir).
    assert!(!dir.path().join("oxcopy-data").exists());
}
