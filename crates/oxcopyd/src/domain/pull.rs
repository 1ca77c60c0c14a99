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
//!
//! Into a file-backed destination, frames without a CRC (sent by the
//! creator straight from a snapshot file) are moved by the kernel from the
//! socket to the destination file (`splice` through a pipe): with
//! `sendfile` on the creator, the bytes are copied once between the two
//! page caches, never through user space. Frames with a CRC are read into a
//! buffer, checked, then written.

use super::wire::{self, RecvError};
use super::{NodeDomain, DATA_TIMEOUT};
use oxcopy_copy::source::REMOTE_BUFFER;
use oxcopy_copy::{CopyError, RemoteInfo, RemoteRod};
use oxcopy_link::{parse_data_prefix, Message, MsgKind, DATA_PREFIX, MAX_DATA, TOKEN_LEN};
use oxcopy_storage::{check_range, Storage, StorageError, StorageErrorKind};
use parking_lot::Mutex;
use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{BorrowedFd, OwnedFd};
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
    /// For moving DATA from the socket to a file in the kernel (made on first use).
    pipe: Option<(OwnedFd, OwnedFd)>,
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
        let conn =
            Conn { s, next: 0, end: 0, held: Vec::new(), held_at: 0, broken: None, scratch: Vec::new(), pipe: None };
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

    /// Receive the next DATA frame of the outstanding READ into `sink`:
    /// straight into the caller's buffer or file when the frame fits in
    /// what is wanted, else into the held-over buffer. Returns the frame's
    /// length and whether it went to the sink.
    fn next_frame(&self, c: &mut Conn, sink: Sink<'_>) -> Result<(usize, bool), CopyError> {
        let h = wire::recv_header(&mut c.s).map_err(|e| self.lost(e))?;
        if h.kind != MsgKind::DATA {
            let mut buf = std::mem::take(&mut c.scratch);
            let e = self.not_expected(wire::recv_payload(&mut c.s, h, &mut buf), "during a READ");
            c.scratch = buf;
            return Err(e);
        }
        // The header parser bounded the length: DATA_PREFIX + 1..=MAX_DATA.
        let n = (h.len as usize).saturating_sub(DATA_PREFIX);
        let mut prefix = [0u8; DATA_PREFIX];
        c.s.read_exact(&mut prefix).map_err(|e| self.lost(e.into()))?;
        let (offset, crc) = parse_data_prefix(&prefix).map_err(|e| self.lost(e.into()))?;
        if offset != c.next || c.next + n as u64 > c.end {
            return Err(CopyError::RemoteFailed(format!(
                "node {}: DATA at {offset} (+{n}) where {} .. {} was expected",
                self.peer, c.next, c.end
            )));
        }
        let fits = n as u64 <= sink.room();
        match sink {
            // No CRC to check: the kernel moves the bytes from the socket
            // to the destination file (splice through a pipe).
            Sink::File(fd, at, _) if fits && crc.is_none() => self.splice_in(c, fd, at, n)?,
            Sink::File(_, _, _) | Sink::Buf(_) if !fits => {
                c.held.resize(n, 0);
                c.s.read_exact(&mut c.held).map_err(|e| self.lost(e.into()))?;
                self.check(&c.held, crc)?;
                c.held_at = offset;
            }
            Sink::Buf(b) => {
                let data = &mut b[..n];
                c.s.read_exact(data).map_err(|e| self.lost(e.into()))?;
                self.check(data, crc)?;
            }
            Sink::File(fd, at, _) => {
                let mut buf = std::mem::take(&mut c.scratch);
                buf.resize(n, 0);
                let r = c.s.read_exact(&mut buf).map_err(|e| self.lost(e.into())).and_then(|()| {
                    self.check(&buf, crc)?;
                    write_all_at(fd, &buf, at).map_err(|e| CopyError::Storage(storage_error(e)))
                });
                c.scratch = buf;
                r?;
            }
        }
        c.next += n as u64;
        Ok((n, fits))
    }

    /// The error for a frame other than the one expected (`what`): the
    /// creator's ERROR as its code says, anything else a failure.
    fn not_expected(&self, m: Result<Message<'_>, RecvError>, what: &str) -> CopyError {
        match m {
            Ok(Message::Error { code, message }) => wire::code_error(&self.peer.to_string(), code, message),
            Ok(other) => CopyError::RemoteFailed(format!("node {}: sent {} {what}", self.peer, other.kind().name())),
            Err(e) => self.lost(e),
        }
    }

    /// Receive (and drop) what is still coming for the outstanding READ.
    fn drain(&self, c: &mut Conn) -> Result<(), CopyError> {
        c.held.clear();
        while c.next < c.end {
            self.next_frame(c, Sink::Buf(&mut []))?;
            c.held.clear();
        }
        Ok(())
    }

    fn check(&self, data: &[u8], crc: Option<u32>) -> Result<(), CopyError> {
        match crc {
            Some(c) if crc32c::crc32c(data) != c => {
                Err(CopyError::RemoteFailed(format!("node {}: DATA frame failed its checksum", self.peer)))
            }
            _ => Ok(()),
        }
    }

    /// Move `n` bytes from the socket into `fd` at `at` without a
    /// user-space copy (socket → pipe → file).
    fn splice_in(&self, c: &mut Conn, fd: BorrowedFd<'_>, mut at: u64, n: usize) -> Result<(), CopyError> {
        use rustix::pipe::{splice, SpliceFlags};
        if c.pipe.is_none() {
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| CopyError::RemoteFailed(format!("pipe: {e}")))?;
            // A bigger pipe moves a whole frame per call; the default works too.
            let _ = rustix::pipe::fcntl_setpipe_size(&w, MAX_DATA);
            c.pipe = Some((r, w));
        }
        let Some((r, w)) = &c.pipe else { unreachable!("just made") };
        let mut left = n;
        while left > 0 {
            let k = match splice(&c.s, None, w, None, left, SpliceFlags::MOVE) {
                Ok(0) => return Err(self.lost(RecvError::Closed)),
                Ok(k) => k,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(self.lost(std::io::Error::from(e).into())),
            };
            let mut in_pipe = k;
            while in_pipe > 0 {
                match splice(r, None, fd, Some(&mut at), in_pipe, SpliceFlags::MOVE) {
                    Ok(0) => return Err(CopyError::Storage(storage_error(std::io::ErrorKind::WriteZero.into()))),
                    Ok(m) => in_pipe -= m,
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => {
                        // Bytes may be left in the pipe: this link is done.
                        c.pipe = None;
                        return Err(CopyError::Storage(storage_error(std::io::Error::from(e))));
                    }
                }
            }
            left -= k;
        }
        Ok(())
    }

    /// Make the stream deliver `[off, off + len)` next.
    fn position(&self, c: &mut Conn, off: u64, len: u64) -> Result<(), CopyError> {
        // Where the stream stands: held-over bytes first, then the wire.
        let at = if c.held.is_empty() { c.next } else { c.held_at };
        if at == off && off.saturating_add(len) <= c.end {
            return Ok(());
        }
        // Drain what is still coming for the old request.
        self.drain(c)?;
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
                let want = buf.len() - done;
                done += take_held(c, off + done as u64, want, |b| {
                    buf[done..done + b.len()].copy_from_slice(b);
                    Ok(())
                })?;
                continue;
            }
            let (n, direct) = self.next_frame(c, Sink::Buf(&mut buf[done..]))?;
            if direct {
                done += n;
            }
        }
        Ok(())
    }
}

impl Pull {
    /// [`RemoteRod::copy_to`] under the connection lock.
    fn copy_into(&self, c: &mut Conn, off: u64, len: u64, dst: &dyn Storage, dst_off: u64) -> Result<(), CopyError> {
        let Some(fd) = dst.as_fd() else {
            // No file to move into: through a buffer.
            let mut buf = vec![0u8; usize::try_from(len.min(REMOTE_BUFFER)).unwrap_or(0)];
            let mut done = 0u64;
            while done < len {
                let n = (len - done).min(buf.len() as u64) as usize;
                self.fill(c, off + done, &mut buf[..n])?;
                dst.write_at(&buf[..n], dst_off + done)?;
                done += n as u64;
            }
            return Ok(());
        };
        check_range(dst.len(), dst_off, len)?;
        self.position(c, off, len)?;
        let mut done = 0u64;
        while done < len {
            if !c.held.is_empty() {
                let want = usize::try_from(len - done).unwrap_or(usize::MAX);
                done += take_held(c, off + done, want, |b| {
                    write_all_at(fd, b, dst_off + done).map_err(|e| CopyError::Storage(storage_error(e)))
                })? as u64;
                continue;
            }
            let (n, direct) = self.next_frame(c, Sink::File(fd, dst_off + done, len - done))?;
            if direct {
                done += n as u64;
            }
        }
        Ok(())
    }
}

/// Hand `put` the held-over bytes at ROD offset `at` (at most `want`), then
/// keep the rest held, re-based at the next wanted offset; returns how many
/// were handed over.
fn take_held(
    c: &mut Conn,
    at: u64,
    want: usize,
    put: impl FnOnce(&[u8]) -> Result<(), CopyError>,
) -> Result<usize, CopyError> {
    let skip = usize::try_from(at.saturating_sub(c.held_at)).unwrap_or(usize::MAX).min(c.held.len());
    let n = (c.held.len() - skip).min(want);
    put(&c.held[skip..skip + n])?;
    if skip + n == c.held.len() {
        c.held.clear();
    } else {
        c.held.drain(..skip + n);
        c.held_at = at + n as u64;
    }
    Ok(n)
}

/// Where a DATA frame's bytes go.
enum Sink<'a> {
    /// The caller's buffer (its length is what is wanted).
    Buf(&'a mut [u8]),
    /// A file at an offset, with this many bytes still wanted.
    File(BorrowedFd<'a>, u64, u64),
}

impl Sink<'_> {
    fn room(&self) -> u64 {
        match self {
            Sink::Buf(b) => b.len() as u64,
            Sink::File(_, _, n) => *n,
        }
    }
}

fn storage_error(e: std::io::Error) -> StorageError {
    StorageError::new(StorageErrorKind::Io, format!("writing pulled data: {e}"))
}

/// pwrite all of `buf` at `at`.
fn write_all_at(fd: BorrowedFd<'_>, mut buf: &[u8], mut at: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        match rustix::io::pwrite(fd, buf, at) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(k) => {
                buf = &buf[k..];
                at += k as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

impl RemoteRod for Pull {
    fn info(&self) -> RemoteInfo {
        self.info
    }

    fn copy_to(&self, offset: u64, len: u64, dst: &dyn Storage, dst_offset: u64) -> Result<(), CopyError> {
        let mut c = self.conn.lock();
        if let Some(b) = &c.broken {
            return Err(b.error());
        }
        let r = self.copy_into(&mut c, offset, len, dst, dst_offset);
        if let Err(e) = &r {
            c.broken = Some(Broken::of(e));
            let _ = c.s.shutdown(Shutdown::Both);
        }
        r
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
            self.drain(&mut c)?;
            wire::send(&mut c.s, &Message::Delete).map_err(|e| self.lost(e.into()))?;
            let mut buf = std::mem::take(&mut c.scratch);
            let r = match wire::recv(&mut c.s, &mut buf) {
                Ok(Message::Deleted) => Ok(()),
                other => Err(self.not_expected(other, "in answer to DELETE")),
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

#[cfg(test)]
mod tests {
    //! The pull against a scripted creator on loopback: frames of odd sizes,
    //! with and without CRC, reads of other sizes, seeks, a corrupt frame,
    //! a creator that goes away.
    use super::*;
    use crate::copy_domain::CopyDomainConfig;
    use oxcopy_copy::CopyDomainKey;
    use oxcopy_link::{data_prefix, data_prefix_unchecked, OpenedInfo, ServerHandshake};
    use oxcopy_storage::{FileStorage, OpenOptions};
    use std::io::Write;
    use std::net::TcpListener;

    const KEY: [u8; 32] = [7; 32];
    const ROD: usize = 3 << 20;

    fn rod_bytes() -> Vec<u8> {
        (0..ROD).map(|i| (i * 31 % 253) as u8).collect()
    }

    /// How the scripted creator misbehaves.
    #[derive(Clone, Copy, PartialEq)]
    enum Script {
        Good,
        /// Flip a data byte of the second CRC frame.
        Corrupt,
        /// Close the connection after this many bytes of the first READ.
        CloseAfter(usize),
    }

    /// Serve one link: handshake, OPEN, then READs in `frame`-byte DATA
    /// frames, alternately with and without CRC; DELETE.
    fn creator(script: Script, frame: usize) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let data = rod_bytes();
            let mut hs = ServerHandshake::new(&KEY, [2; 16], [9; 32]);
            let mut buf = Vec::new();
            let hello = wire::recv(&mut s, &mut buf).unwrap();
            let reply = hs.on_hello(&hello).unwrap();
            s.write_all(&reply).unwrap();
            let auth = wire::recv(&mut s, &mut buf).unwrap();
            let (ready, _) = hs.on_auth(&auth).unwrap();
            s.write_all(&ready).unwrap();
            let mut sent = 0usize;
            let mut crc_frames = 0;
            loop {
                let m = match wire::recv(&mut s, &mut buf) {
                    Ok(m) => m,
                    Err(_) => return,
                };
                match m {
                    Message::Open { .. } => {
                        let info = OpenedInfo {
                            bytes: ROD as u64,
                            block_size: 512,
                            rod_type: 0x0080_0000,
                            inactivity_timeout_secs: 60,
                        };
                        wire::send(&mut s, &Message::Opened(info)).unwrap();
                    }
                    Message::Read { offset, len } => {
                        let (mut at, end) = (offset as usize, (offset + len) as usize);
                        let mut i = 0;
                        while at < end {
                            let n = frame.min(end - at);
                            let mut chunk = data[at..at + n].to_vec();
                            let with_crc = i % 2 == 0;
                            let prefix = if with_crc {
                                data_prefix(at as u64, &chunk)
                            } else {
                                data_prefix_unchecked(at as u64, n)
                            };
                            if with_crc {
                                crc_frames += 1;
                                if script == Script::Corrupt && crc_frames == 2 {
                                    chunk[0] ^= 1;
                                }
                            }
                            if let Script::CloseAfter(limit) = script {
                                if sent + n > limit {
                                    return;
                                }
                            }
                            if s.write_all(&prefix).and_then(|()| s.write_all(&chunk)).is_err() {
                                return;
                            }
                            sent += n;
                            at += n;
                            i += 1;
                        }
                    }
                    Message::Delete => wire::send(&mut s, &Message::Deleted).unwrap(),
                    _ => return,
                }
            }
        });
        (addr, h)
    }

    fn pull(addr: std::net::SocketAddr) -> Arc<Pull> {
        let d = NodeDomain::new(&CopyDomainConfig::default(), CopyDomainKey::from_bytes(KEY), [1; 16]);
        let (s, id) = d.connect(addr).expect("handshake");
        assert_eq!(id, [2; 16]);
        Pull::open(d, addr, s, &[0u8; TOKEN_LEN]).expect("open")
    }

    #[test]
    fn reads_of_any_size_across_frames_with_and_without_crc_and_a_seek_back() {
        let (addr, h) = creator(Script::Good, 300_001);
        let p = pull(addr);
        let want = rod_bytes();
        assert_eq!(p.info().bytes, ROD as u64);
        p.prefetch(0, 2 << 20);
        let mut at = 0usize;
        for step in [1usize, 4095, 100_000, 300_001, 777_777, 1 << 20] {
            let mut b = vec![0u8; step];
            p.read(at as u64, &mut b).unwrap();
            assert_eq!(b, &want[at..at + step], "read of {step} at {at}");
            at += step;
        }
        // Back to the start: the rest of the stream is drained, then asked again.
        let mut b = vec![0u8; 5000];
        p.read(10, &mut b).unwrap();
        assert_eq!(b, &want[10..5010]);
        p.delete().unwrap();
        drop(p);
        h.join().unwrap();
    }

    #[test]
    fn copy_to_a_file_splices_unchecked_frames_and_checks_the_others() {
        let (addr, h) = creator(Script::Good, 1 << 20);
        let p = pull(addr);
        let dir = tempfile::tempdir().unwrap();
        let dst =
            FileStorage::open(&dir.path().join("d"), &OpenOptions { create_size: Some(4 << 20), read_only: false })
                .unwrap();
        // As the executor does: prefetch a chunk, then move it in pieces.
        p.prefetch(4096, (2 << 20) + 512);
        p.copy_to(4096, 1 << 20, &dst, 512).unwrap();
        p.copy_to(4096 + (1 << 20), (1 << 20) + 512, &dst, 512 + (1 << 20)).unwrap();
        let mut got = vec![0u8; (2 << 20) + 512];
        dst.read_at(&mut got, 512).unwrap();
        assert_eq!(got, &rod_bytes()[4096..4096 + (2 << 20) + 512]);
        let mut head = [1u8; 512];
        dst.read_at(&mut head, 0).unwrap();
        assert_eq!(head, [0u8; 512], "nothing written before the destination offset");
        drop(p);
        h.join().unwrap();
    }

    #[test]
    fn a_corrupt_frame_fails_the_copy_and_the_link() {
        let (addr, h) = creator(Script::Corrupt, 256 << 10);
        let p = pull(addr);
        let mut b = vec![0u8; 2 << 20];
        let e = p.read(0, &mut b).unwrap_err();
        assert!(matches!(&e, CopyError::RemoteFailed(w) if w.contains("checksum")), "{e:?}");
        // The link stays failed.
        assert!(p.read(0, &mut b[..10]).is_err());
        drop(p);
        h.join().unwrap();
    }

    #[test]
    fn a_creator_that_goes_away_mid_copy_is_not_reachable() {
        let (addr, h) = creator(Script::CloseAfter(700_000), 256 << 10);
        let p = pull(addr);
        let dir = tempfile::tempdir().unwrap();
        let dst =
            FileStorage::open(&dir.path().join("d"), &OpenOptions { create_size: Some(4 << 20), read_only: false })
                .unwrap();
        p.prefetch(0, 2 << 20);
        let e = p.copy_to(0, 2 << 20, &dst, 0).unwrap_err();
        assert!(matches!(e, CopyError::Unreachable(_)), "{e:?}");
        let e = p.delete().unwrap_err();
        assert!(matches!(e, CopyError::Unreachable(_)), "{e:?}");
        h.join().unwrap();
    }
}
