//! [`LinkError`]: why a frame or a handshake step was refused, and which
//! [`ErrorCode`] to send the peer before closing.

use crate::codes::{ErrorCode, MsgKind};

/// A frame or a handshake step refused. Every one ends the link: send
/// ERROR([`LinkError::code`]) (except after [`LinkError::Peer`]) and close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The frame does not start with "OXNL".
    #[error("node link: bad magic")]
    BadMagic,
    /// The frame header carries a version other than 1.
    #[error("node link: frame version {0} (this node speaks 1)")]
    BadVersion(u8),
    /// A reserved field is not zero.
    #[error("node link: reserved field not zero")]
    Reserved,
    /// The frame header carries a kind this protocol does not define.
    #[error("node link: unknown frame kind {0:02X}h")]
    UnknownKind(u8),
    /// The payload length is above the kind's bound.
    #[error("node link: {kind} payload of {len} bytes (at most {max})")]
    TooLong {
        /// The frame's kind.
        kind: MsgKind,
        /// The length the header announced.
        len: u32,
        /// The kind's bound.
        max: u32,
    },
    /// The payload length is below the kind's bound (or not its exact size),
    /// or disagrees with a length inside the payload.
    #[error("node link: {kind} payload of {len} bytes is malformed")]
    BadLength {
        /// The frame's kind.
        kind: MsgKind,
        /// The payload's length.
        len: u32,
    },
    /// A DATA frame's CRC32C does not match its data.
    #[error("node link: DATA checksum mismatch")]
    Checksum,
    /// An ERROR frame's message is not UTF-8.
    #[error("node link: ERROR message not UTF-8")]
    Utf8,
    /// HELLO asks for a protocol version other than 1.
    #[error("node link: protocol version {0} not supported (this node speaks 1)")]
    Version(u16),
    /// A message this step of the protocol does not accept.
    #[error("node link: expected {expected}, got {got}")]
    Unexpected {
        /// What the step accepts.
        expected: &'static str,
        /// What came (or, for a handshake used out of order, what was passed).
        got: MsgKind,
    },
    /// The peer's handshake proof did not verify: it does not hold the
    /// copy-domain key (or is replaying or reflecting another exchange).
    #[error("node link: peer failed authentication")]
    AuthFailed,
    /// The peer sent ERROR (it closes after it).
    #[error("node link: peer refused: {code}: {message}")]
    Peer {
        /// The peer's code.
        code: ErrorCode,
        /// The peer's message.
        message: String,
    },
}

impl LinkError {
    /// The code to send to the peer (in an ERROR frame) before closing. For
    /// [`LinkError::Peer`] it is the peer's own code, to report rather than
    /// send: the peer has closed already.
    pub fn code(&self) -> ErrorCode {
        match self {
            LinkError::BadVersion(_) | LinkError::Version(_) => ErrorCode::VERSION,
            LinkError::AuthFailed => ErrorCode::AUTH_FAILED,
            LinkError::Peer { code, .. } => *code,
            LinkError::BadMagic
            | LinkError::Reserved
            | LinkError::UnknownKind(_)
            | LinkError::TooLong { .. }
            | LinkError::BadLength { .. }
            | LinkError::Checksum
            | LinkError::Utf8
            | LinkError::Unexpected { .. } => ErrorCode::PROTOCOL,
        }
    }
}
