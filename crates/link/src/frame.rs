//! Frames: the 12-byte header, the payload of every kind ([`Message`]), and
//! the codec ([`parse_header`], [`parse_payload`], [`decode`],
//! [`Message::encode`], [`data_prefix`]). See `docs/node-link.md`, "Frames".
//!
//! Parsing never panics and never allocates: every length is checked
//! against the kind's bound from the header alone, and payload fields are
//! read through a small bounded reader.

use crate::codes::{ErrorCode, MsgKind};
use crate::error::LinkError;
use crate::{NodeId, Nonce, Proof, DATA_PREFIX, HEADER_LEN, MAGIC, MAX_DATA, MAX_ERROR_MESSAGE, TOKEN_LEN, VERSION};

/// Bytes of an ERROR payload before the message: code, reserved, message length.
const ERROR_PREFIX: usize = 6;
/// Bytes of a HELLO payload: version u16, reserved u16, node id, nonce.
const HELLO_LEN: usize = 4 + 16 + 32;
/// Bytes of a HELLO_REPLY payload: node id, nonce, proof.
const HELLO_REPLY_LEN: usize = 16 + 32 + 32;
/// Bytes of an OPENED payload.
const OPENED_LEN: usize = 24;

/// A frame header that passed [`parse_header`]: a known kind and a payload
/// length within that kind's bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The frame's kind.
    pub kind: MsgKind,
    /// The payload bytes that follow the header.
    pub len: u32,
}

/// What OPENED reports about the token the server accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenedInfo {
    /// Bytes the token represents (READ ranges lie within them).
    pub bytes: u64,
    /// The block size of the ROD, bytes.
    pub block_size: u32,
    /// The ROD type of the token.
    pub rod_type: u32,
    /// The token's inactivity timeout, seconds.
    pub inactivity_timeout_secs: u32,
}

/// One frame, decoded. Borrowed fields point into the received bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// Client → server, first: who the client is and its nonce. The protocol
    /// version field is written as 1 by [`Message::encode`] and checked by
    /// [`parse_payload`] ([`LinkError::Version`] otherwise).
    Hello {
        /// The client's node id (`id_c`).
        node: NodeId,
        /// The client's fresh nonce (`n_c`).
        nonce: Nonce,
    },
    /// Server → client: who the server is, its nonce and its proof `P_s`.
    HelloReply {
        /// The server's node id (`id_s`).
        node: NodeId,
        /// The server's fresh nonce (`n_s`).
        nonce: Nonce,
        /// `P_s`.
        proof: Proof,
    },
    /// Client → server: the client's proof `P_c`.
    Auth {
        /// `P_c`.
        proof: Proof,
    },
    /// Server → client: the handshake is done.
    Ready,
    /// Client → server: the token to read from.
    Open {
        /// The 512-byte ROD token.
        token: &'a [u8; TOKEN_LEN],
    },
    /// Server → client: the token was accepted.
    Opened(OpenedInfo),
    /// Client → server: stream `len` bytes from `offset`.
    Read {
        /// First byte.
        offset: u64,
        /// Bytes.
        len: u64,
    },
    /// Server → client: `data` (1..=[`MAX_DATA`] bytes) at `offset`. With
    /// `crc`, the frame carries a CRC32C of the data ([`DATA_FLAG_CRC`]):
    /// computed by [`Message::encode`], verified by the parser. Without
    /// (data sent straight from a file by the kernel), TCP's own checks
    /// are all there is.
    Data {
        /// Where `data` lies in the ROD.
        offset: u64,
        /// The bytes.
        data: &'a [u8],
        /// Whether a CRC32C of `data` travels with it.
        crc: bool,
    },
    /// Client → server: delete the token.
    Delete,
    /// Server → client: the token was deleted.
    Deleted,
    /// Either way: a liveness probe with its cookie.
    Ping(u64),
    /// Either way: the answer to a PING with the same cookie.
    Pong(u64),
    /// Either way: a refusal; the sender closes after it.
    Error {
        /// Why.
        code: ErrorCode,
        /// Words for a log (at most [`MAX_ERROR_MESSAGE`] bytes on the wire).
        message: &'a str,
    },
}

/// The payload length bounds (min, max) of a kind, or `None` if unknown.
fn bounds(kind: MsgKind) -> Option<(u32, u32)> {
    let exact = |n: usize| Some((n as u32, n as u32));
    match kind {
        MsgKind::HELLO => exact(HELLO_LEN),
        MsgKind::HELLO_REPLY => exact(HELLO_REPLY_LEN),
        MsgKind::AUTH => exact(32),
        MsgKind::READY | MsgKind::DELETE | MsgKind::DELETED => exact(0),
        MsgKind::OPEN => exact(TOKEN_LEN),
        MsgKind::OPENED => exact(OPENED_LEN),
        MsgKind::READ => exact(16),
        MsgKind::PING | MsgKind::PONG => exact(8),
        MsgKind::DATA => Some(((DATA_PREFIX + 1) as u32, (DATA_PREFIX + MAX_DATA) as u32)),
        MsgKind::ERROR => Some((ERROR_PREFIX as u32, (ERROR_PREFIX + MAX_ERROR_MESSAGE) as u32)),
        _ => None,
    }
}

/// Checks a kind and a payload length against the kind's bound.
fn check_len(kind: MsgKind, len: u32) -> Result<(), LinkError> {
    let (min, max) = bounds(kind).ok_or(LinkError::UnknownKind(kind.0))?;
    if len > max {
        return Err(LinkError::TooLong { kind, len, max });
    }
    if len < min {
        return Err(LinkError::BadLength { kind, len });
    }
    Ok(())
}

/// Checks a frame header: magic, version, reserved bytes == 0, a known kind,
/// and the payload length against the kind's bound (the exact size for
/// fixed-size kinds, [`LinkError::TooLong`] above, [`LinkError::BadLength`]
/// below; DATA: `DATA_PREFIX + 1 ..= DATA_PREFIX + MAX_DATA`; ERROR:
/// `6 ..= 6 + MAX_ERROR_MESSAGE`) — all before any payload is read.
pub fn parse_header(b: &[u8; HEADER_LEN]) -> Result<Header, LinkError> {
    let [m0, m1, m2, m3, version, kind, r0, r1, l0, l1, l2, l3] = *b;
    if [m0, m1, m2, m3] != MAGIC {
        return Err(LinkError::BadMagic);
    }
    if version != VERSION {
        return Err(LinkError::BadVersion(version));
    }
    if r0 != 0 || r1 != 0 {
        return Err(LinkError::Reserved);
    }
    let kind = MsgKind(kind);
    let len = u32::from_be_bytes([l0, l1, l2, l3]);
    check_len(kind, len)?;
    Ok(Header { kind, len })
}

/// Reads fixed-size fields off the front of a payload; running short is
/// [`LinkError::BadLength`] for the frame's kind, never a panic.
struct Reader<'a> {
    kind: MsgKind,
    len: u32,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(kind: MsgKind, payload: &'a [u8]) -> Self {
        Reader { kind, len: u32::try_from(payload.len()).unwrap_or(u32::MAX), rest: payload }
    }

    fn short(&self) -> LinkError {
        LinkError::BadLength { kind: self.kind, len: self.len }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], LinkError> {
        match (self.rest.get(..n), self.rest.get(n..)) {
            (Some(head), Some(tail)) => {
                self.rest = tail;
                Ok(head)
            }
            _ => Err(self.short()),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<&'a [u8; N], LinkError> {
        self.bytes(N)?.try_into().map_err(|_| self.short())
    }

    fn u16(&mut self) -> Result<u16, LinkError> {
        Ok(u16::from_be_bytes(*self.array()?))
    }

    fn u32(&mut self) -> Result<u32, LinkError> {
        Ok(u32::from_be_bytes(*self.array()?))
    }

    fn u64(&mut self) -> Result<u64, LinkError> {
        Ok(u64::from_be_bytes(*self.array()?))
    }

    /// The rest of the payload.
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// The payload must be used up.
    fn end(&self) -> Result<(), LinkError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.short())
        }
    }
}

/// Parses the payload of a frame whose header [`parse_header`] accepted.
/// `payload.len()` must equal `h.len` (the caller's job; checked anyway, as
/// are the kind and its bound, so a hand-made [`Header`] is safe too).
pub fn parse_payload(h: Header, payload: &[u8]) -> Result<Message<'_>, LinkError> {
    check_len(h.kind, h.len)?;
    if payload.len() != h.len as usize {
        return Err(LinkError::BadLength { kind: h.kind, len: u32::try_from(payload.len()).unwrap_or(u32::MAX) });
    }
    let mut r = Reader::new(h.kind, payload);
    let msg = match h.kind {
        MsgKind::HELLO => {
            let version = r.u16()?;
            let reserved = r.u16()?;
            if version != u16::from(VERSION) {
                return Err(LinkError::Version(version));
            }
            if reserved != 0 {
                return Err(LinkError::Reserved);
            }
            Message::Hello { node: *r.array()?, nonce: *r.array()? }
        }
        MsgKind::HELLO_REPLY => Message::HelloReply { node: *r.array()?, nonce: *r.array()?, proof: *r.array()? },
        MsgKind::AUTH => Message::Auth { proof: *r.array()? },
        MsgKind::READY => Message::Ready,
        MsgKind::OPEN => Message::Open { token: r.array()? },
        MsgKind::OPENED => {
            let info = OpenedInfo {
                bytes: r.u64()?,
                block_size: r.u32()?,
                rod_type: r.u32()?,
                inactivity_timeout_secs: r.u32()?,
            };
            if r.u32()? != 0 {
                return Err(LinkError::Reserved);
            }
            Message::Opened(info)
        }
        MsgKind::READ => Message::Read { offset: r.u64()?, len: r.u64()? },
        MsgKind::DATA => {
            let offset = r.u64()?;
            let crc = r.u32()?;
            let flags = r.u32()?;
            let checked = data_flags(flags, crc)?;
            let data = r.rest();
            if data.is_empty() {
                return Err(r.short());
            }
            if checked.is_some_and(|c| crc32c::crc32c(data) != c) {
                return Err(LinkError::Checksum);
            }
            Message::Data { offset, data, crc: checked.is_some() }
        }
        MsgKind::DELETE => Message::Delete,
        MsgKind::DELETED => Message::Deleted,
        MsgKind::PING => Message::Ping(r.u64()?),
        MsgKind::PONG => Message::Pong(r.u64()?),
        MsgKind::ERROR => {
            let code = ErrorCode(r.u16()?);
            if r.u16()? != 0 {
                return Err(LinkError::Reserved);
            }
            let n = usize::from(r.u16()?);
            let text = r.rest();
            if text.len() != n {
                return Err(r.short());
            }
            let message = std::str::from_utf8(text).map_err(|_| LinkError::Utf8)?;
            Message::Error { code, message }
        }
        other => return Err(LinkError::UnknownKind(other.0)),
    };
    r.end()?;
    Ok(msg)
}

/// Decodes one whole frame from the front of `buf`: `Ok(None)` if more bytes
/// are needed, `Ok(Some((message, bytes consumed)))` otherwise. A bad header
/// is reported as soon as its 12 bytes are there, whatever follows.
pub fn decode(buf: &[u8]) -> Result<Option<(Message<'_>, usize)>, LinkError> {
    let Some(head) = buf.get(..HEADER_LEN).and_then(|h| <&[u8; HEADER_LEN]>::try_from(h).ok()) else {
        return Ok(None);
    };
    let h = parse_header(head)?;
    let total = HEADER_LEN + h.len as usize;
    let Some(payload) = buf.get(HEADER_LEN..total) else {
        return Ok(None);
    };
    Ok(Some((parse_payload(h, payload)?, total)))
}

/// Appends a frame header for `kind` with a payload of `len` bytes.
fn put_header(out: &mut Vec<u8>, kind: MsgKind, len: usize) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind.0);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char
/// boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// DATA FLAGS bit 0: the CRC32C field is valid (else it must be 0).
pub const DATA_FLAG_CRC: u32 = 1;

/// The CRC a DATA prefix's FLAGS and CRC fields promise (`None`: no CRC);
/// unknown flag bits, or a CRC without its flag, are refused.
fn data_flags(flags: u32, crc: u32) -> Result<Option<u32>, LinkError> {
    match flags {
        DATA_FLAG_CRC => Ok(Some(crc)),
        0 if crc == 0 => Ok(None),
        _ => Err(LinkError::Reserved),
    }
}

fn prefix_bytes(offset: u64, len: usize, crc: Option<u32>) -> [u8; HEADER_LEN + DATA_PREFIX] {
    debug_assert!((1..=MAX_DATA).contains(&len), "DATA carries 1..=MAX_DATA bytes, not {len}");
    let len = u32::try_from(DATA_PREFIX + len).unwrap_or(u32::MAX);
    let flags = if crc.is_some() { DATA_FLAG_CRC } else { 0 };
    let bytes = MAGIC
        .into_iter()
        .chain([VERSION, MsgKind::DATA.0, 0, 0])
        .chain(len.to_be_bytes())
        .chain(offset.to_be_bytes())
        .chain(crc.unwrap_or(0).to_be_bytes())
        .chain(flags.to_be_bytes());
    let mut out = [0u8; HEADER_LEN + DATA_PREFIX];
    for (dst, b) in out.iter_mut().zip(bytes) {
        *dst = b;
    }
    out
}

/// The frame header and DATA prefix (offset, CRC32C of `data`, flags) of
/// a DATA frame carrying `data`, so a sender can `writev(prefix, data)`
/// without copying the data. `data.len()` must be `1..=MAX_DATA`
/// (debug-asserted; never a panic in release).
pub fn data_prefix(offset: u64, data: &[u8]) -> [u8; HEADER_LEN + DATA_PREFIX] {
    prefix_bytes(offset, data.len(), Some(crc32c::crc32c(data)))
}

/// The frame header and DATA prefix of a DATA frame of `len` bytes that
/// carries no CRC (the kernel sends the data straight from a file, which
/// user space never reads). `len` must be `1..=MAX_DATA`.
pub fn data_prefix_unchecked(offset: u64, len: usize) -> [u8; HEADER_LEN + DATA_PREFIX] {
    prefix_bytes(offset, len, None)
}

/// The DATA prefix of a DATA frame whose data the caller reads straight
/// into its own buffer (or file): its offset and the CRC32C the caller must
/// check, if the frame carries one. Flags and CRC are checked as
/// [`parse_payload`] checks them.
pub fn parse_data_prefix(p: &[u8; DATA_PREFIX]) -> Result<(u64, Option<u32>), LinkError> {
    let mut o = [0u8; 8];
    o.copy_from_slice(&p[..8]);
    let mut c = [0u8; 4];
    c.copy_from_slice(&p[8..12]);
    let mut f = [0u8; 4];
    f.copy_from_slice(&p[12..16]);
    let crc = data_flags(u32::from_be_bytes(f), u32::from_be_bytes(c))?;
    Ok((u64::from_be_bytes(o), crc))
}

impl Message<'_> {
    /// The frame kind of this message.
    pub fn kind(&self) -> MsgKind {
        match self {
            Message::Hello { .. } => MsgKind::HELLO,
            Message::HelloReply { .. } => MsgKind::HELLO_REPLY,
            Message::Auth { .. } => MsgKind::AUTH,
            Message::Ready => MsgKind::READY,
            Message::Open { .. } => MsgKind::OPEN,
            Message::Opened(_) => MsgKind::OPENED,
            Message::Read { .. } => MsgKind::READ,
            Message::Data { .. } => MsgKind::DATA,
            Message::Delete => MsgKind::DELETE,
            Message::Deleted => MsgKind::DELETED,
            Message::Ping(_) => MsgKind::PING,
            Message::Pong(_) => MsgKind::PONG,
            Message::Error { .. } => MsgKind::ERROR,
        }
    }

    /// Appends one whole frame (header and payload) to `out`. An ERROR
    /// message longer than [`MAX_ERROR_MESSAGE`] bytes is truncated at a char
    /// boundary; DATA must carry `1..=MAX_DATA` bytes (debug-asserted: the
    /// peer refuses anything else).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let kind = self.kind();
        match self {
            Message::Hello { node, nonce } => {
                put_header(out, kind, HELLO_LEN);
                out.extend_from_slice(&u16::from(VERSION).to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(node);
                out.extend_from_slice(nonce);
            }
            Message::HelloReply { node, nonce, proof } => {
                put_header(out, kind, HELLO_REPLY_LEN);
                out.extend_from_slice(node);
                out.extend_from_slice(nonce);
                out.extend_from_slice(proof);
            }
            Message::Auth { proof } => {
                put_header(out, kind, proof.len());
                out.extend_from_slice(proof);
            }
            Message::Ready | Message::Delete | Message::Deleted => put_header(out, kind, 0),
            Message::Open { token } => {
                put_header(out, kind, TOKEN_LEN);
                out.extend_from_slice(token.as_slice());
            }
            Message::Opened(info) => {
                put_header(out, kind, OPENED_LEN);
                out.extend_from_slice(&info.bytes.to_be_bytes());
                out.extend_from_slice(&info.block_size.to_be_bytes());
                out.extend_from_slice(&info.rod_type.to_be_bytes());
                out.extend_from_slice(&info.inactivity_timeout_secs.to_be_bytes());
                out.extend_from_slice(&[0; 4]);
            }
            Message::Read { offset, len } => {
                put_header(out, kind, 16);
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
            }
            Message::Data { offset, data, crc } => {
                out.reserve(HEADER_LEN + DATA_PREFIX + data.len());
                let p = if *crc { data_prefix(*offset, data) } else { data_prefix_unchecked(*offset, data.len()) };
                out.extend_from_slice(&p);
                out.extend_from_slice(data);
            }
            Message::Ping(cookie) | Message::Pong(cookie) => {
                put_header(out, kind, 8);
                out.extend_from_slice(&cookie.to_be_bytes());
            }
            Message::Error { code, message } => {
                let text = truncate(message, MAX_ERROR_MESSAGE);
                put_header(out, kind, ERROR_PREFIX + text.len());
                out.extend_from_slice(&code.0.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&u16::try_from(text.len()).unwrap_or(u16::MAX).to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
        }
    }

    /// The whole frame of this message in a new buffer.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}
