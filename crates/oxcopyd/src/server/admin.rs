//! The admin socket, `DATA_DIR/admin.sock` (mode 0600): a client sends one
//! request line (UTF-8, at most [`MAX_REQUEST`] bytes, within
//! [`READ_TIMEOUT`]); the daemon answers `ok` or `error: <reason>` on the
//! first line, then any text, and closes. Requests (see
//! [`crate::volume_admin`] for what they do):
//!
//! - `volume list`, `volume status NAME`
//! - `volume move NAME SEGMENT PATH:SIZE`, `volume abandon NAME`
//! - `volume leg NAME INDEX fail`, `volume leg NAME INDEX restore`

use crate::server::Shared;
use crate::volume_admin::{config_files, parse_place, VolumeAdmin};
use anyhow::{bail, Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tracing::warn;

/// Longest request line (without its newline).
pub const MAX_REQUEST: usize = 4096;
/// How long a client may take to send its request line.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The socket's path under `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// Bind the admin socket (removing a stale one), mode 0600. Another
/// daemon answering on it refuses the start; a socket that cannot be bound
/// (e.g. a path longer than a socket address holds) is logged and the
/// daemon runs without it.
pub(super) fn bind(data_dir: &Path) -> Result<Option<(UnixListener, PathBuf)>> {
    let path = socket_path(data_dir);
    if path.symlink_metadata().is_ok() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            bail!("{}: another oxcopyd answers on this data directory's admin socket", path.display());
        }
        std::fs::remove_file(&path).with_context(|| format!("removing the stale {}", path.display()))?;
    }
    let bound = UnixListener::bind(&path).and_then(|l| {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(l)
    });
    match bound {
        Ok(l) => Ok(Some((l, path))),
        Err(e) => {
            tracing::error!("cannot serve the admin socket {}: {e}; running without it", path.display());
            let _ = std::fs::remove_file(&path);
            Ok(None)
        }
    }
}

/// Answer requests until shutdown.
pub(super) async fn serve(
    l: UnixListener,
    admin: Arc<VolumeAdmin>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = l.accept() => match r {
                Ok((s, _)) => { tokio::spawn(handle(s, admin.clone(), shared.clone())); }
                Err(e) => { warn!("admin socket accept: {e}"); tokio::time::sleep(Duration::from_millis(50)).await; }
            },
            _ = async { let _ = shutdown.wait_for(|v| *v).await; } => return,
        }
    }
}

async fn handle(mut s: UnixStream, admin: Arc<VolumeAdmin>, shared: Arc<Shared>) {
    let answer = match tokio::time::timeout(READ_TIMEOUT, read_line(&mut s)).await {
        Err(_) => format!("error: no request line within {} s\n", READ_TIMEOUT.as_secs()),
        Ok(Err(e)) => format!("error: {e}\n"),
        Ok(Ok(line)) => {
            tracing::info!(request = %line, "admin request");
            match tokio::task::spawn_blocking(move || execute(&line, &admin, &shared)).await {
                Ok(Ok(text)) => format!("ok\n{text}"),
                Ok(Err(e)) => format!("error: {e:#}\n"),
                Err(e) => format!("error: the request failed: {e}\n"),
            }
        }
    };
    let _ = tokio::time::timeout(READ_TIMEOUT, async {
        let _ = s.write_all(answer.as_bytes()).await;
        let _ = s.shutdown().await;
        // Read what the client still sends (an oversized request), so that
        // closing does not reset the connection before it reads the answer.
        let mut sink = [0u8; 4096];
        let mut left = 1usize << 20;
        while let Ok(n) = s.read(&mut sink).await {
            if n == 0 || n >= left {
                break;
            }
            left -= n;
        }
    })
    .await;
}

/// One request line: up to the first newline (or the end of the stream).
async fn read_line(s: &mut UnixStream) -> std::result::Result<String, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await.map_err(|e| format!("reading the request: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            buf.truncate(i);
            break;
        }
        if buf.len() > MAX_REQUEST {
            break;
        }
    }
    if buf.len() > MAX_REQUEST {
        return Err(format!("request line longer than {MAX_REQUEST} bytes"));
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).map_err(|_| "the request line is not UTF-8".to_string())
}

const USAGE: &str = "requests: volume list | volume status NAME | volume move NAME SEGMENT PATH:SIZE | \
                     volume abandon NAME | volume leg NAME INDEX fail|restore";

fn number(s: &str, what: &str) -> Result<usize> {
    s.parse().with_context(|| format!("'{s}' is not a {what} number"))
}

/// Carry out one request (blocking: journal writes, joins).
fn execute(line: &str, admin: &VolumeAdmin, shared: &Shared) -> Result<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["volume", "list"] => {
            let s = admin.status(None)?;
            Ok(if s.is_empty() { "no volumes configured\n".into() } else { s })
        }
        ["volume", "status", name] => admin.status(Some(name)),
        ["volume", "move", name, segment, place] => {
            let segment = number(segment, "segment")?;
            let (path, size) = parse_place(place)?;
            let files = config_files(&shared.live().cfg);
            admin.start_move(name, segment, &path, size, &files)
        }
        ["volume", "abandon", name] => admin.abandon(name),
        ["volume", "leg", name, index, "fail"] => admin.fail_leg(name, number(index, "leg")?),
        ["volume", "leg", name, index, "restore"] => admin.restore_leg(name, number(index, "leg")?),
        [] => bail!("empty request; {USAGE}"),
        _ => bail!("unknown request '{line}'; {USAGE}"),
    }
}
