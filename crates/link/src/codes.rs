//! The numbers on the wire: frame kinds ([`MsgKind`]) and the codes of
//! ERROR frames ([`ErrorCode`]), as tabled in `docs/node-link.md`.

/// The kind byte of a frame header (byte 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MsgKind(pub u8);

impl MsgKind {
    /// Client → server: protocol version, node id, nonce.
    pub const HELLO: MsgKind = MsgKind(0x01);
    /// Server → client: node id, nonce, server proof.
    pub const HELLO_REPLY: MsgKind = MsgKind(0x02);
    /// Client → server: client proof.
    pub const AUTH: MsgKind = MsgKind(0x03);
    /// Server → client: the handshake succeeded.
    pub const READY: MsgKind = MsgKind(0x04);
    /// Client → server: a ROD token to read from.
    pub const OPEN: MsgKind = MsgKind(0x10);
    /// Server → client: the token was accepted; what it represents.
    pub const OPENED: MsgKind = MsgKind(0x11);
    /// Client → server: a byte range of the ROD to stream.
    pub const READ: MsgKind = MsgKind(0x12);
    /// Server → client: bytes of the ROD at an offset.
    pub const DATA: MsgKind = MsgKind(0x13);
    /// Client → server: delete the token once its users finish.
    pub const DELETE: MsgKind = MsgKind(0x14);
    /// Server → client: the token was deleted.
    pub const DELETED: MsgKind = MsgKind(0x15);
    /// Either way: a liveness probe with a cookie.
    pub const PING: MsgKind = MsgKind(0x16);
    /// Either way: the answer to a PING, with its cookie.
    pub const PONG: MsgKind = MsgKind(0x17);
    /// Either way: a refusal; the sender closes the link after it.
    pub const ERROR: MsgKind = MsgKind(0x7F);

    /// The name of the kind as the spec writes it, or "unknown".
    pub fn name(self) -> &'static str {
        match self {
            MsgKind::HELLO => "HELLO",
            MsgKind::HELLO_REPLY => "HELLO_REPLY",
            MsgKind::AUTH => "AUTH",
            MsgKind::READY => "READY",
            MsgKind::OPEN => "OPEN",
            MsgKind::OPENED => "OPENED",
            MsgKind::READ => "READ",
            MsgKind::DATA => "DATA",
            MsgKind::DELETE => "DELETE",
            MsgKind::DELETED => "DELETED",
            MsgKind::PING => "PING",
            MsgKind::PONG => "PONG",
            MsgKind::ERROR => "ERROR",
            _ => "unknown",
        }
    }
}

impl std::fmt::Display for MsgKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:02X}h)", self.name(), self.0)
    }
}

/// The code of an ERROR frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// A malformed or unexpected frame.
    pub const PROTOCOL: ErrorCode = ErrorCode(0x0001);
    /// A handshake proof did not verify.
    pub const AUTH_FAILED: ErrorCode = ErrorCode(0x0002);
    /// The protocol version is not supported.
    pub const VERSION: ErrorCode = ErrorCode(0x0003);
    /// Too many links.
    pub const BUSY: ErrorCode = ErrorCode(0x0004);
    /// READ or DELETE before OPEN.
    pub const NOT_OPEN: ErrorCode = ErrorCode(0x0005);
    /// A READ beyond the bytes the token represents, or of length 0.
    pub const OUT_OF_RANGE: ErrorCode = ErrorCode(0x0006);
    /// The ROD could not be read.
    pub const SOURCE_FAILED: ErrorCode = ErrorCode(0x0007);
    /// The serving daemon is shutting down.
    pub const SHUTTING_DOWN: ErrorCode = ErrorCode(0x0008);
    /// Token refused: invalid length.
    pub const TOKEN_INVALID_LENGTH: ErrorCode = ErrorCode(0x0101);
    /// Token refused: corrupt (MAC does not verify).
    pub const TOKEN_CORRUPT: ErrorCode = ErrorCode(0x0102);
    /// Token refused: unknown.
    pub const TOKEN_UNKNOWN: ErrorCode = ErrorCode(0x0103);
    /// Token refused: not made by this node.
    pub const TOKEN_REMOTE: ErrorCode = ErrorCode(0x0104);
    /// Token refused: revoked.
    pub const TOKEN_REVOKED: ErrorCode = ErrorCode(0x0105);
    /// Token refused: expired.
    pub const TOKEN_EXPIRED: ErrorCode = ErrorCode(0x0106);
    /// Token refused: cancelled.
    pub const TOKEN_CANCELLED: ErrorCode = ErrorCode(0x0107);
    /// Token refused: deleted.
    pub const TOKEN_DELETED: ErrorCode = ErrorCode(0x0108);
    /// Token refused: unsupported ROD type.
    pub const TOKEN_UNSUPPORTED_TYPE: ErrorCode = ErrorCode(0x0109);

    /// The name of the code as the spec writes it, or "unknown".
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::PROTOCOL => "PROTOCOL",
            ErrorCode::AUTH_FAILED => "AUTH_FAILED",
            ErrorCode::VERSION => "VERSION",
            ErrorCode::BUSY => "BUSY",
            ErrorCode::NOT_OPEN => "NOT_OPEN",
            ErrorCode::OUT_OF_RANGE => "OUT_OF_RANGE",
            ErrorCode::SOURCE_FAILED => "SOURCE_FAILED",
            ErrorCode::SHUTTING_DOWN => "SHUTTING_DOWN",
            ErrorCode::TOKEN_INVALID_LENGTH => "TOKEN_INVALID_LENGTH",
            ErrorCode::TOKEN_CORRUPT => "TOKEN_CORRUPT",
            ErrorCode::TOKEN_UNKNOWN => "TOKEN_UNKNOWN",
            ErrorCode::TOKEN_REMOTE => "TOKEN_REMOTE",
            ErrorCode::TOKEN_REVOKED => "TOKEN_REVOKED",
            ErrorCode::TOKEN_EXPIRED => "TOKEN_EXPIRED",
            ErrorCode::TOKEN_CANCELLED => "TOKEN_CANCELLED",
            ErrorCode::TOKEN_DELETED => "TOKEN_DELETED",
            ErrorCode::TOKEN_UNSUPPORTED_TYPE => "TOKEN_UNSUPPORTED_TYPE",
            _ => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:04X}h)", self.name(), self.0)
    }
}
