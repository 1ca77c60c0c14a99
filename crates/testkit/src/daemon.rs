//! The real `oxcopyd` binary as a child process: spawned on a config file,
//! its portal learnt from the `iscsi://host:port/...` line it prints on
//! stdout, killed (SIGKILL) by PID and reaped when dropped. The caller
//! passes the binary (`env!("CARGO_BIN_EXE_oxcopyd")` in oxcopyd's tests).

use crate::process::ChildGuard;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How to start the daemon.
#[derive(Debug, Clone)]
pub struct Spawn<'a> {
    /// The `oxcopyd` executable.
    pub bin: &'a Path,
    /// `RUST_LOG` of the daemon.
    pub rust_log: &'a str,
    /// Collect stderr (see [`Proc::stderr`]) instead of passing it through
    /// to the test's own stderr.
    pub capture_stderr: bool,
    /// Working directory (default: the test's).
    pub cwd: Option<&'a Path>,
    /// How long to wait for the URL line.
    pub url_timeout: Duration,
    /// More environment variables of the daemon.
    pub env: &'a [(&'a str, &'a str)],
}

impl<'a> Spawn<'a> {
    /// Defaults for the binary `bin`: `RUST_LOG=warn`, stderr captured, the
    /// test's working directory, 30 s for the URL line.
    pub fn new(bin: &'a Path) -> Spawn<'a> {
        Spawn { bin, rust_log: "warn", capture_stderr: true, cwd: None, url_timeout: Duration::from_secs(30), env: &[] }
    }
}

/// A daemon that printed no portal (see [`Proc::try_spawn`]).
#[derive(Debug)]
pub struct SpawnError {
    /// How it ended (`None` if it could not be reaped).
    pub status: Option<ExitStatus>,
    /// Its stderr (empty unless captured).
    pub stderr: String,
}

impl SpawnError {
    /// The exit code, if it exited by itself.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    fn status_text(&self) -> String {
        self.status.map_or_else(|| "status unknown".to_string(), |s| s.to_string())
    }
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "oxcopyd printed no URL ({}); stderr:\n{}", self.status_text(), self.stderr)
    }
}

/// A spawned `oxcopyd`.
pub struct Proc {
    child: ChildGuard,
    /// The first portal it printed (once [`Proc::portal`] has read it).
    addr: Option<SocketAddr>,
    stderr: Option<Arc<Mutex<String>>>,
    collector: Option<JoinHandle<()>>,
}

impl Proc {
    /// Spawn `oxcopyd --config <config>` and wait for its portal; panics
    /// (with the daemon's stderr when captured) if none is printed in time.
    pub fn spawn(config: &Path, o: &Spawn) -> Proc {
        let mut p = Proc::launch(config, o);
        p.portal(o.url_timeout);
        p
    }

    /// Spawn `oxcopyd --config <config>` and wait for its portal, like
    /// [`Proc::spawn`], but without panicking when none comes: the daemon
    /// is then killed (if still running) and reaped, and the error holds its
    /// exit status and (when captured) its stderr — for a test that expects
    /// a start to be refused, or retries one.
    pub fn try_spawn(config: &Path, o: &Spawn) -> Result<Proc, SpawnError> {
        let mut p = Proc::launch(config, o);
        p.try_portal(o.url_timeout)?;
        Ok(p)
    }

    /// Spawn `oxcopyd --config <config>` without waiting for anything.
    pub fn launch(config: &Path, o: &Spawn) -> Proc {
        let mut cmd = Command::new(o.bin);
        cmd.arg("--config").arg(config).env("RUST_LOG", o.rust_log).stdin(Stdio::null()).stdout(Stdio::piped());
        cmd.envs(o.env.iter().copied());
        cmd.stderr(if o.capture_stderr { Stdio::piped() } else { Stdio::inherit() });
        if let Some(cwd) = o.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = ChildGuard::spawn(&mut cmd).unwrap_or_else(|e| panic!("spawn {}: {e}", o.bin.display()));
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
        match self.try_portal(timeout) {
            Ok(a) => a,
            Err(e) if self.stderr.is_none() => panic!("oxcopyd printed no URL ({})", e.status_text()),
            Err(e) => panic!("oxcopyd printed no URL; stderr:\n{}", e.stderr),
        }
    }

    /// [`Proc::portal`] without the panic: if no URL comes within `timeout`
    /// (or the daemon exits first), kill it if it still runs, reap it and
    /// return its exit status and stderr.
    pub fn try_portal(&mut self, timeout: Duration) -> Result<SocketAddr, SpawnError> {
        if let Some(a) = self.addr {
            return Ok(a);
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
                Ok(a)
            }
            Err(_) => {
                // Exited on its own (stdout closed), or still running: the
                // status is its own exit code in the first case, SIGKILL's in
                // the second.
                let _ = self.child.kill();
                let status = self.child.wait().ok();
                if let Some(t) = self.collector.take() {
                    let _ = t.join();
                }
                Err(SpawnError { status, stderr: self.stderr() })
            }
        }
    }

    /// The portal (see [`Proc::spawn`]).
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("portal not read yet")
    }

    /// The daemon's PID.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// What the daemon wrote to stderr so far (empty unless captured).
    pub fn stderr(&self) -> String {
        self.stderr.as_ref().map(|s| s.lock().unwrap().clone()).unwrap_or_default()
    }

    /// Send SIGTERM by PID (nothing once the daemon has been reaped).
    pub fn sigterm(&mut self) -> std::io::Result<()> {
        self.child.sigterm()
    }

    /// Wait for exit, at most `d`, polling every `poll`; once it has
    /// exited, [`Proc::stderr`] has all of its stderr.
    pub fn wait_exit(&mut self, d: Duration, poll: Duration) -> Option<ExitStatus> {
        let st = self.child.wait_exit(d, poll)?;
        // The daemon is gone, so its stderr has ended: collect the rest.
        if let Some(t) = self.collector.take() {
            let _ = t.join();
        }
        Some(st)
    }

    /// Kill (SIGKILL) without any chance to flush or save, and reap.
    pub fn kill(self) {
        drop(self);
    }
}
