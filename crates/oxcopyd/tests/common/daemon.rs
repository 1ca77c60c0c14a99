//! The real `oxcopyd` binary as a child process: spawned on a config file,
//! its portal learnt from the `iscsi://host:port/...` line it prints on
//! stdout, killed (SIGKILL) and reaped when dropped.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How to start the daemon.
#[derive(Debug, Clone)]
pub struct Spawn<'a> {
    /// `RUST_LOG` of the daemon.
    pub rust_log: &'a str,
    /// Collect stderr (see [`Proc::stderr`]) instead of passing it through
    /// to the test's own stderr.
    pub capture_stderr: bool,
    /// Working directory (default: the test's).
    pub cwd: Option<&'a Path>,
    /// How long to wait for the URL line.
    pub url_timeout: Duration,
}

impl Default for Spawn<'_> {
    fn default() -> Self {
        Spawn { rust_log: "warn", capture_stderr: true, cwd: None, url_timeout: Duration::from_secs(30) }
    }
}

/// A spawned `oxcopyd`.
pub struct Proc {
    pub child: Child,
    /// The first portal it printed (once [`Proc::portal`] has read it).
    addr: Option<SocketAddr>,
    stderr: Option<Arc<Mutex<String>>>,
    collector: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGKILL by our own child's PID (a no-op if it was already reaped),
        // then reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Spawn `oxcopyd --config <config>` and wait for its portal; panics
    /// (with the daemon's stderr when captured) if none is printed in time.
    pub fn spawn(config: &Path, o: &Spawn) -> Proc {
        let mut p = Proc::launch(config, o);
        p.portal(o.url_timeout);
        p
    }

    /// Spawn `oxcopyd --config <config>` without waiting for anything.
    pub fn launch(config: &Path, o: &Spawn) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_oxcopyd"));
        cmd.arg("--config").arg(config).env("RUST_LOG", o.rust_log).stdin(Stdio::null()).stdout(Stdio::piped());
        cmd.stderr(if o.capture_stderr { Stdio::piped() } else { Stdio::inherit() });
        if let Some(cwd) = o.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd.spawn().expect("spawn oxcopyd");
        let mut collector = None;
        let stderr = child.stderr.take().map(|mut err| {
            let buf = Arc::new(Mutex::new(String::new()));
            let sink = buf.clone();
            collector = Some(std::thread::spawn(move || {
                let mut b = [0u8; 4096];
                while let Ok(n) = err.read(&mut b) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().push_str(&String::from_utf8_lossy(&b[..n]));
                }
            }));
            buf
        });
        Proc { child, addr: None, stderr, collector }
    }

    /// Read stdout until the first iSCSI URL and return its portal; if none
    /// comes within `timeout`, kill the daemon and panic with its stderr.
    pub fn portal(&mut self, timeout: Duration) -> SocketAddr {
        if let Some(a) = self.addr {
            return a;
        }
        let out = self.child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.trim().strip_prefix("iscsi://") {
                    let _ = tx.send(rest.split('/').next().unwrap_or("").to_string());
                }
            }
        });
        match rx.recv_timeout(timeout) {
            Ok(addr) => {
                let a = addr.parse().expect("portal address");
                self.addr = Some(a);
                a
            }
            Err(_) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                if self.stderr.is_none() {
                    panic!("oxcopyd printed no URL");
                }
                if let Some(t) = self.collector.take() {
                    let _ = t.join();
                }
                panic!("oxcopyd printed no URL; stderr:\n{}", self.stderr());
            }
        }
    }

    /// The portal (see [`Proc::spawn`]).
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("portal not read yet")
    }

    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// What the daemon wrote to stderr so far (empty unless captured).
    pub fn stderr(&self) -> String {
        self.stderr.as_ref().map(|s| s.lock().unwrap().clone()).unwrap_or_default()
    }

    /// Send SIGTERM; returns what kill(2) returned.
    pub fn sigterm(&self) -> i32 {
        // SAFETY: kill(2) on the PID of our own child, which has not been
        // reaped yet (only `wait_exit` and drop reap it).
        unsafe { libc::kill(self.pid(), libc::SIGTERM) }
    }

    /// Wait for exit, at most `d`, polling every `poll`.
    pub fn wait_exit(&mut self, d: Duration, poll: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + d;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(poll);
        }
    }

    /// Kill (SIGKILL) without any chance to flush or save, and reap.
    pub fn kill(self) {
        drop(self);
    }
}
