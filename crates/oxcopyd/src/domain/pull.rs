//! One remote token opened at its creator: a streaming
//! [`oxcopy_copy::RemoteRod`] over one node link.
//!
//! The executor announces each chunk ([`RemoteRod::prefetch`]) before it
//! reads it in 1 MiB pieces; the announcement sends one READ for the whole
//! chunk and the creator streams DATA frames back to back, paced by TCP
//! flow control, so the link stays busy while this node writes (memory:
//! the executor's one buffer plus at most one frame held over). A read at
//! an offset the stream is not at drains the outstanding frames and asks
//! again. Every wait is bounded by [`super::DATA_TIMEOUT`]; a creator that
//! goes away (closed, reset, silent) fails the copy as not reachable.

use super::wire::{self, RecvError};
use super::{NodeDomain, DATA_TIMEOUT};
use oxcopy_copy::{CopyError, RemoteInfo, RemoteRod};
use oxcopy_link::{parse_data_prefix, Message, MsgKind, DATA_PREFIX, TOKEN_LEN};
use parking_lot::Mutex;
use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;

/// Why this link cannot be used any more (kept to answer later calls).
#[derive(Debug, Clone)]
enum Broken {
    Unreachable(String),
    Failed(String),
    Token(oxcopy_copy::TokenError),
}

impl Broken {
    fn error(&self) -> CopyError {
        match self {
            Broken::Unreachable(w) => CopyError::Unreachable(w.clone()),
            Broken::Failed(w) => CopyError::RemoteFailed(w.clone()),
            Broken::Token(t) => CopyError::Token(*t),
        }
    }

    fn of(e: &CopyError) -> Broken {
        match e {
            CopyError::Token(t) => Broken::Token(*t),
            CopyError::Unreachable(w) => Broken::Unreachable(w.clone()),
            other => Broken::Failed(other.to_string()),
        }
    }
}

#[derive(Debug)]
struct Conn {
    s: TcpStream,
    /// ROD offset of the next byte the creator will send.
    next: u64,
    /// End of the outstanding READ (`next == end`: nothing outstanding).
    end: u64,
    /// Bytes of a DATA frame received beyond what a read wanted, at `held_at`.
    held: Vec<u8>,
    held_at: u64,
    broken: Option<Broken>,
    scratch: Vec<u8>,
}

/// A remote token held open at its creator.
#[derive(Debug)]
pub struct Pull {
    peer: SocketAddr,
    info: RemoteInfo,
    conn: Mutex<Conn>,
}

impl Pull {
    /// OPEN `token` on the authenticated link `s` to `peer`.
    pub(crate) fn open(
        _domain: Arc<NodeDomain>,
        peer: SocketAddr,
        mut s: TcpStream,
        token: &[u8; TOKEN_LEN],
    ) -> Result<Arc<Pull>, CopyError> {
        let lost = |e: &dyn std::fmt::Display| CopyError::Unreachable(format!("node {peer}: {e}"));
        wire::send(&mut s, &Message::Open { token }).map_err(|e| lost(&e))?;
        let mut buf = Vec::new();
        let info = match wire::recv(&mut s, &mut buf) {
            Ok(Message::Opened(o)) => o,
            Ok(Message::Error { code, message }) => return Err(wire::code_error(&peer.to_string(), code, message)),
            Ok(other) => {
                return Err(CopyError::RemoteFailed(format!("node {peer}: answered OPEN with {}", other.kind().name())))
            }
            Err(e) => return Err(lost(&e)),
        };
        if info.block_size == 0 || info.bytes % u64::from(info.block_size) != 0 {
            return Err(CopyError::RemoteFailed(format!("node {peer}: inconsistent ROD size {info:?}")));
        }
        let info = RemoteInfo { bytes: info.bytes, block_size: info.block_size, rod_type: info.rod_type };
        let conn = Conn { s, next: 0, end: 0, held: Vec::new(), held_at: 0, broken: None, scratch: Vec::new() };
        Ok(Arc::new(Pull { peer, info, conn: Mutex::new(conn) }))
    }

    fn lost(&self, e: RecvError) -> CopyError {
        match e {
            RecvError::TimedOut => {
                CopyError::Unreachable(format!("node {}: no data for {} s", self.peer, DATA_TIMEOUT.as_secs()))
            }
            RecvError::Link(l) => CopyError::RemoteFailed(format!("node {}: malformed frame: {l}", self.peer)),
            other => CopyError::Unreachable(format!("node {}: link lost: {other}", self.peer)),
        }
    }

    /// Receive the next DATA frame of the outstanding READ into `dst`
    /// (when it fits) or into the held-over buffer; returns its length.
    fn next_frame(&self, c: &mut Conn, dst: &mut [u8]) -> Result<usize, CopyError> {
        let h = wire::recv_header(&mut c.s).map_err(|e| self.lost(e))?;
        if h.kind != MsgKind::DATA {
            let mut buf = std::mem::take(&mut c.scratch);
            let r = match wire::recv_payload(&mut c.s, h, &mut buf) {
                Ok(Message::Error { code, message }) => Err(wire::code_error(&self.peer.to_string(), code, message)),
                Ok(other) => Err(CopyError::RemoteFailed(format!(
                    "node {}: sent {} during a READ",
                    self.peer,
                    other.kind().name()
                ))),
                Err(e) => Err(self.lost(e)),
            };
            c.scratch = buf;
            return r;
        }
        // The header parser bounded the length: DATA_PREFIX + 1..=MAX_DATA.
        let n = (h.len as usize).saturating_sub(DATA_PREFIX);
        let mut prefix = [0u8; DATA_PREFIX];
        c.s.read_exact(&mut prefix).map_err(|e| self.lost(e.into()))?;
        let into_dst = n <= dst.len();
        let data: &mut [u8] = if into_dst {
            &mut dst[..n]
        } else {
            c.held.resize(n, 0);
            &mut c.held[..]
        };
        c.s.read_exact(data).map_err(|e| self.lost(e.into()))?;
        // The data went straight to its place; check it against the prefix.
        let (offset, crc) = parse_data_prefix(&prefix).map_err(|e| self.lost(e.into()))?;
        if crc32c::crc32c(data) != crc {
            return Err(CopyError::RemoteFailed(format!("node {}: DATA frame failed its checksum", self.peer)));
        }
        if offset != c.next || c.next + n as u64 > c.end {
            return Err(CopyError::RemoteFailed(format!(
                "node {}: DATA at {offset} (+{n}) where {} .. {} was expected",
                self.peer, c.next, c.end
            )));
        }
        if !into_dst {
            c.held_at = offset;
        }
        c.next += n as u64;
        Ok(n)
    }

    /// Make the stream deliver `[off, off + len)` next.
    fn position(&self, c: &mut Conn, off: u64, len: u64) -> Result<(), CopyError> {
        // Where the stream stands: held-over bytes first, then the wire.
        let at = if c.held.is_empty() { c.next } else { c.held_at };
        if at == off && off.saturating_add(len) <= c.end {
            return Ok(());
        }
        // Drain what is still coming for the old request.
        c.held.clear();
        let mut sink = vec![0u8; 0];
        while c.next < c.end {
            self.next_frame(c, &mut sink)?;
            c.held.clear();
        }
        let end = off.checked_add(len).filter(|&e| e <= self.info.bytes).ok_or(CopyError::OutOfRange)?;
        wire::send(&mut c.s, &Message::Read { offset: off, len }).map_err(|e| self.lost(e.into()))?;
        c.next = off;
        c.end = end;
        Ok(())
    }

    fn fill(&self, c: &mut Conn, off: u64, buf: &mut [u8]) -> Result<(), CopyError> {
        self.position(c, off, buf.len() as u64)?;
        let mut done = 0usize;
        while done < buf.len() {
            if !c.held.is_empty() {
                let at = off + done as u64;
                let skip = (at - c.held_at) as usize;
                let n = (c.held.len() - skip).min(buf.len() - done);
                buf[done..done + n].copy_from_slice(&c.held[skip..skip + n]);
                done += n;
                if skip + n == c.held.len() {
                    c.held.clear();
                } else {
                    // Keep the rest held, re-based at the next wanted offset.
                    c.held.drain(..skip + n);
                    c.held_at = at + n as u64;
                }
                continue;
            }
            let n = self.next_frame(c, &mut buf[done..])?;
            if c.held.is_empty() {
                done += n;
            }
        }
        Ok(())
    }
}

impl RemoteRod for Pull {
    fn info(&self) -> RemoteInfo {
        self.info
    }

    fn prefetch(&self, offset: u64, len: u64) {
        let mut c = self.conn.lock();
        if c.broken.is_some() || len == 0 {
            return;
        }
        if let Err(e) = self.position(&mut c, offset, len) {
            c.broken = Some(Broken::of(&e));
        }
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), CopyError> {
        let mut c = self.conn.lock();
        if let Some(b) = &c.broken {
            return Err(b.error());
        }
        if buf.is_empty() {
            return Ok(());
        }
        let r = self.fill(&mut c, offset, buf);
        if let Err(e) = &r {
            c.broken = Some(Broken::of(e));
            let _ = c.s.shutdown(Shutdown::Both);
        }
        r
    }

    fn delete(&self) -> Result<(), CopyError> {
        let mut c = self.conn.lock();
        if let Some(b) = &c.broken {
            return Err(b.error());
        }
        let r = (|| {
            c.held.clear();
            let mut sink = Vec::new();
            while c.next < c.end {
                self.next_frame(&mut c, &mut sink)?;
                c.held.clear();
            }
            wire::send(&mut c.s, &Message::Delete).map_err(|e| self.lost(e.into()))?;
            let mut buf = std::mem::take(&mut c.scratch);
            let r = match wire::recv(&mut c.s, &mut buf) {
                Ok(Message::Deleted) => Ok(()),
                Ok(Message::Error { code, message }) => Err(wire::code_error(&self.peer.to_string(), code, message)),
                Ok(other) => Err(CopyError::RemoteFailed(format!(
                    "node {}: answered DELETE with {}",
                    self.peer,
                    other.kind().name()
                ))),
                Err(e) => Err(self.lost(e)),
            };
            c.scratch = buf;
            r
        })();
        if let Err(e) = &r {
            c.broken = Some(Broken::of(e));
        }
        r
    }
}

impl Drop for Pull {
    fn drop(&mut self) {
        // Closing the link releases the token at its creator.
        let _ = self.conn.get_mut().s.shutdown(Shutdown::Both);
    }
}
