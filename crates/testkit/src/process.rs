//! Process guards: every process a test starts is killed (SIGKILL) by its
//! PID and reaped when its guard is dropped, panics included.

use std::io::Read;
use std::ops::{Deref, DerefMut};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// A child process, killed (SIGKILL, by PID) and reaped on drop. Once the
/// child has been reaped (by [`ChildGuard::wait_exit`] or through `Deref`'s
/// `wait`/`try_wait`), dropping the guard sends nothing: std never signals
/// a PID it has reaped.
#[derive(Debug)]
pub struct ChildGuard(Child);

impl ChildGuard {
    /// Guard a spawned child.
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard(child)
    }

    /// Spawn `cmd` and guard the child.
    pub fn spawn(cmd: &mut Command) -> std::io::Result<ChildGuard> {
        cmd.spawn().map(ChildGuard)
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Send SIGTERM to the child (by PID), unless it has been reaped.
    pub fn sigterm(&mut self) -> std::io::Result<()> {
        if self.0.try_wait()?.is_some() {
            return Ok(()); // reaped: its PID may be someone else's by now
        }
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).expect("child PID is positive");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        Ok(())
    }

    /// Wait for the child to exit, at most `timeout`, polling every `poll`;
    /// `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration, poll: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.0.try_wait().expect("try_wait") {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(poll);
        }
    }
}

impl Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // SIGKILL by our own child's PID (a no-op once reaped), then reap.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run `cmd` (its stdio as the caller set it) and wait for it, at most
/// `timeout`: `Ok(None)` if it was still running then (it has been killed by
/// PID and reaped). For scripts that leave a daemon behind, whose output
/// must not be collected (see [`output_within`]).
pub fn status_within(cmd: &mut Command, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let mut guard = ChildGuard::spawn(cmd)?;
    Ok(guard.wait_exit(timeout, Duration::from_millis(10)))
}

/// Run `cmd` (stdin null, stdout and stderr collected) and wait for it, at
/// most `timeout`: `Ok(None)` if it was still running then (it has been
/// killed by PID and reaped). Output is collected until the pipes close, so
/// `cmd` must not leave a process behind that keeps them open.
pub fn output_within(cmd: &mut Command, timeout: Duration) -> std::io::Result<Option<Output>> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut guard = ChildGuard::spawn(cmd)?;
    let out = collect(guard.stdout.take());
    let err = collect(guard.stderr.take());
    let Some(status) = guard.wait_exit(timeout, Duration::from_millis(10)) else {
        drop(guard); // kills it; the readers see EOF
        let _ = (out.join(), err.join());
        return Ok(None);
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok(Some(Output { status, stdout, stderr }))
}

/// Read `r` to its end on a thread of its own.
fn collect<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut v);
        }
        v
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_within_collects_and_kills_on_timeout() {
        let out =
            output_within(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]), Duration::from_secs(20))
                .expect("spawn sh")
                .expect("exits");
        assert_eq!((out.status.code(), &out.stdout[..], &out.stderr[..]), (Some(3), &b"out\n"[..], &b"err\n"[..]));
        let t = Instant::now();
        assert!(output_within(Command::new("sleep").arg("30"), Duration::from_millis(100)).expect("spawn").is_none());
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn status_within_waits_or_kills() {
        let st = status_within(Command::new("sh").args(["-c", "exit 4"]), Duration::from_secs(20)).expect("spawn sh");
        assert_eq!(st.and_then(|s| s.code()), Some(4));
        assert!(status_within(Command::new("sleep").arg("30"), Duration::from_millis(100)).expect("spawn").is_none());
    }

    #[test]
    fn guard_kills_on_drop_and_sigterm_stops() {
        let mut g = ChildGuard::spawn(Command::new("sleep").arg("30")).expect("spawn sleep");
        g.sigterm().expect("SIGTERM");
        let st = g.wait_exit(Duration::from_secs(10), Duration::from_millis(10)).expect("exits on SIGTERM");
        assert!(!st.success());
        g.sigterm().expect("a reaped child is not signalled");
        let g = ChildGuard::spawn(Command::new("sleep").arg("30")).expect("spawn sleep");
        let pid = g.pid();
        drop(g);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "killed and reaped");
    }
}
