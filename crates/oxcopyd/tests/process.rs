//! Tests of the real `oxcopyd` binary: graceful SIGTERM shutdown with I/O in
//! flight from several sessions, and refusal of bad configurations.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A spawned `oxcopyd`, killed by its PID when dropped.
struct Proc {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on the PID of our own child, which has not been
            // reaped yet (try_wait said it is still running).
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL);
            }
            let _ = self.child.wait();
        }
    }
}

impl Proc {
    fn spawn(config: &Path, cwd: &Path) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_oxcopyd"))
            .arg("--config")
            .arg(config)
            .current_dir(cwd)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn oxcopyd");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc { child, stderr }
    }

    fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Read stdout until the first iSCSI URL and return its portal.
    fn portal(&mut self) -> SocketAddr {
        let out = self.child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.trim().strip_prefix("iscsi://") {
                    let addr = rest.split('/').next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("oxcopyd printed no URL; stderr:\n{}", self.stderr()));
        addr.parse().expect("portal address")
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait for exit, at most `d`.
    fn wait_exit(&mut self, d: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + d;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// SIGTERM while four sessions are writing: exit code 0 within a bounded
/// time, every write acknowledged GOOD is in the backing file, the
/// sessions see the connection close (no hang), the listener is closed,
/// and nothing panicked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_io_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("oxcopyd.toml");
    std::fs::write(&cfg, config_text(dir.path(), &Opts::default(), "127.0.0.1:0")).expect("config");
    let mut p = Proc::spawn(&cfg, dir.path());
    let addr = p.portal();
    assert!(addr.ip().is_loopback());

    let writers = Writers::start(addr, 4).await;
    writers.wait_progress(3).await;
    let t = Instant::now();
    // SAFETY: kill(2) on our own, still running child.
    assert_eq!(unsafe { libc::kill(p.pid(), libc::SIGTERM) }, 0);
    let status = tokio::task::block_in_place(|| p.wait_exit(Duration::from_secs(20)));
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
    let mut p = Proc::spawn(&cfg, dir);
    let st = p.wait_exit(Duration::from_secs(20)).unwrap_or_else(|| panic!("{name}: still running"));
    std::thread::sleep(Duration::from_millis(50)); // let the stderr reader drain
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
    let mut p = Proc::spawn(&missing, dir.path());
    let st = p.wait_exit(Duration::from_secs(20)).expect("exits");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(st.code(), Some(2), "{}", p.stderr());
    assert!(p.stderr().contains(&missing.display().to_string()), "{}", p.stderr());
    // Nothing created in the working directory either (no default data dir).
    assert!(!dir.path().join("oxcopy-data").exists());
}
