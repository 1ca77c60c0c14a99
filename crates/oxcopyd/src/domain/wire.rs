//! Blocking frame I/O on a node-link socket, and the mapping between the
//! link's error codes and the copy engine's errors.
//!
//! Every read is bounded: the 12-byte header is checked by
//! [`oxcopy_link::parse_header`] (kind, exact or maximum length) before the
//! payload is read into a buffer that never grows past one DATA frame.

use oxcopy_copy::{CopyError, TokenError};
use oxcopy_link::{parse_header, parse_payload, ErrorCode, Header, LinkError, Message, HEADER_LEN};
use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;

/// Why a frame could not be received.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecvError {
    /// The peer closed the connection (cleanly or not).
    #[error("connection closed by the peer")]
    Closed,
    /// Nothing arrived within the socket's read timeout.
    #[error("timed out waiting for the peer")]
    TimedOut,
    /// Another socket error.
    #[error("{0}")]
    Io(io::Error),
    /// Bytes that are not a valid frame.
    #[error("malformed frame: {0}")]
    Link(#[from] LinkError),
}

impl From<io::Error> for RecvError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => RecvError::Closed,
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => RecvError::TimedOut,
            _ => RecvError::Io(e),
        }
    }
}

/// Read one frame header.
pub(crate) fn recv_header(s: &mut TcpStream) -> Result<Header, RecvError> {
    let mut h = [0u8; HEADER_LEN];
    s.read_exact(&mut h)?;
    Ok(parse_header(&h)?)
}

/// Read one whole frame into `buf` (at most one DATA frame long) and parse it.
pub(crate) fn recv<'a>(s: &mut TcpStream, buf: &'a mut Vec<u8>) -> Result<Message<'a>, RecvError> {
    let h = recv_header(s)?;
    recv_payload(s, h, buf)
}

/// Read and parse the payload of a frame whose header was read.
pub(crate) fn recv_payload<'a>(s: &mut TcpStream, h: Header, buf: &'a mut Vec<u8>) -> Result<Message<'a>, RecvError> {
    // The header parser bounded `h.len` by the kind's maximum.
    buf.clear();
    buf.resize(h.len as usize, 0);
    s.read_exact(buf)?;
    Ok(parse_payload(h, buf)?)
}

/// Send one message.
pub(crate) fn send(s: &mut TcpStream, m: &Message<'_>) -> io::Result<()> {
    let mut v = Vec::with_capacity(64);
    m.encode(&mut v);
    s.write_all(&v)
}

/// Send encoded frame bytes.
pub(crate) fn send_raw(s: &mut TcpStream, frame: &[u8]) -> io::Result<()> {
    s.write_all(frame)
}

/// Tell the peer why the link ends (best effort: it may be gone).
pub(crate) fn send_error(s: &mut TcpStream, code: ErrorCode, message: &str) {
    let _ = send(s, &Message::Error { code, message });
}

/// Write all of `parts` with vectored writes (DATA prefix + data without copying).
pub(crate) fn write_all_vectored(s: &mut TcpStream, parts: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let mut bufs = &mut slices[..];
    while !bufs.is_empty() {
        match s.write_vectored(bufs) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "link socket accepted no bytes")),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The link code for a token refusal (what the creator says).
pub(crate) fn token_code(e: TokenError) -> ErrorCode {
    match e {
        TokenError::InvalidLength => ErrorCode::TOKEN_INVALID_LENGTH,
        TokenError::Corrupt => ErrorCode::TOKEN_CORRUPT,
        TokenError::Unknown | TokenError::TooMany | TokenError::InitiatorShare => ErrorCode::TOKEN_UNKNOWN,
        TokenError::Remote => ErrorCode::TOKEN_REMOTE,
        TokenError::Revoked => ErrorCode::TOKEN_REVOKED,
        TokenError::Expired => ErrorCode::TOKEN_EXPIRED,
        TokenError::Cancelled => ErrorCode::TOKEN_CANCELLED,
        TokenError::Deleted => ErrorCode::TOKEN_DELETED,
        TokenError::UnsupportedType => ErrorCode::TOKEN_UNSUPPORTED_TYPE,
    }
}

/// The engine error for an ERROR frame from the creator: token refusals
/// read exactly as the creator would say them (a token another node made
/// is unknown to it: 23h/04h); a creator that will not serve us is not
/// reachable (0Dh/02h); anything else is a third-party device failure.
pub(crate) fn code_error(peer: &str, code: ErrorCode, message: &str) -> CopyError {
    let token = match code {
        ErrorCode::TOKEN_INVALID_LENGTH => Some(TokenError::InvalidLength),
        ErrorCode::TOKEN_CORRUPT => Some(TokenError::Corrupt),
        ErrorCode::TOKEN_UNKNOWN | ErrorCode::TOKEN_REMOTE => Some(TokenError::Unknown),
        ErrorCode::TOKEN_REVOKED => Some(TokenError::Revoked),
        ErrorCode::TOKEN_EXPIRED => Some(TokenError::Expired),
        ErrorCode::TOKEN_CANCELLED => Some(TokenError::Cancelled),
        ErrorCode::TOKEN_DELETED => Some(TokenError::Deleted),
        ErrorCode::TOKEN_UNSUPPORTED_TYPE => Some(TokenError::UnsupportedType),
        _ => None,
    };
    if let Some(t) = token {
        return CopyError::Token(t);
    }
    let why = format!("node {peer}: {} ({message})", code.name());
    match code {
        ErrorCode::AUTH_FAILED | ErrorCode::VERSION | ErrorCode::BUSY | ErrorCode::SHUTTING_DOWN => {
            CopyError::Unreachable(why)
        }
        _ => CopyError::RemoteFailed(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_refusals_cross_the_link_unchanged() {
        for e in [
            TokenError::InvalidLength,
            TokenError::Corrupt,
            TokenError::Revoked,
            TokenError::Expired,
            TokenError::Cancelled,
            TokenError::Deleted,
            TokenError::UnsupportedType,
            TokenError::Unknown,
        ] {
            match code_error("a", token_code(e), "") {
                CopyError::Token(t) => assert_eq!(t, e),
                other => panic!("{e:?} -> {other:?}"),
            }
        }
        // A token the asked node did not make is unknown there.
        assert!(matches!(code_error("a", token_code(TokenError::Remote), ""), CopyError::Token(TokenError::Unknown)));
        assert!(matches!(code_error("a", ErrorCode::AUTH_FAILED, ""), CopyError::Unreachable(_)));
        assert!(matches!(code_error("a", ErrorCode::BUSY, ""), CopyError::Unreachable(_)));
        assert!(matches!(code_error("a", ErrorCode::SOURCE_FAILED, ""), CopyError::RemoteFailed(_)));
        assert!(matches!(code_error("a", ErrorCode(0x7777), ""), CopyError::RemoteFailed(_)));
    }
}
