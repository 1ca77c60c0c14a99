//! The node link of a copy domain: the TCP protocol by which `oxcopyd`
//! daemons that share a copy-domain key pull ROD data from each other.
//!
//! This crate is the wire format and the handshake only — no I/O, no clock,
//! no randomness (nonces are passed in). The daemon reads and writes the
//! socket and drives these types. The protocol itself, its security model
//! and its rules are specified in `docs/node-link.md`; this crate implements
//! exactly that.
//!
//! | module | role |
//! |---|---|
//! | [`codes`] | [`MsgKind`] (frame kinds) and [`ErrorCode`] (codes of ERROR frames) |
//! | [`error`] | [`LinkError`]: why a frame or a handshake was refused |
//! | [`frame`] | the 12-byte header, [`Message`], [`decode`], [`Message::encode`], [`data_prefix`] |
//! | [`handshake`] | [`link_key`], [`ClientHandshake`], [`ServerHandshake`] |
//!
//! Imports go one way: `codes` ← `error` ← `frame` ← `handshake`.
//!
//! Receiving: read [`HEADER_LEN`] bytes, [`parse_header`] them (the length is
//! bounded per kind before any payload is awaited), read `len` bytes and
//! [`parse_payload`]; or keep a buffer and call [`decode`] on it. Sending:
//! [`Message::encode`], or [`data_prefix`] + the data for a DATA frame
//! without copying the data.
//!
//! ```
//! use oxcopy_link::{decode, ClientHandshake, Message, ServerHandshake};
//!
//! let key = b"copy-domain key";
//! let mut client = ClientHandshake::new(key, [1; 16], [0xC0; 32]); // nonces: fresh random bytes
//! let mut server = ServerHandshake::new(key, [2; 16], [0x5E; 32]);
//!
//! let hello = client.hello();
//! let reply = server.on_hello(&decode(&hello)?.unwrap().0)?;
//! let (auth, server_id) = client.on_reply(&decode(&reply)?.unwrap().0)?;
//! let (ready, client_id) = server.on_auth(&decode(&auth)?.unwrap().0)?;
//! client.on_ready(&decode(&ready)?.unwrap().0)?;
//! assert_eq!((server_id, client_id), ([2; 16], [1; 16]));
//!
//! let read = Message::Read { offset: 0, len: 4096 }.to_frame();
//! assert_eq!(decode(&read[..20])?, None); // more bytes needed
//! assert_eq!(decode(&read)?, Some((Message::Read { offset: 0, len: 4096 }, read.len())));
//! # Ok::<(), oxcopy_link::LinkError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codes;
pub mod error;
pub mod frame;
pub mod handshake;

pub use codes::{ErrorCode, MsgKind};
pub use error::LinkError;
pub use frame::{
    data_prefix, data_prefix_unchecked, decode, parse_data_prefix, parse_header, parse_payload, Header, Message,
    OpenedInfo, DATA_FLAG_CRC,
};
pub use handshake::{link_key, ClientHandshake, ServerHandshake};

/// The four bytes every frame starts with: "OXNL".
pub const MAGIC: [u8; 4] = *b"OXNL";
/// The protocol version: in every frame header, and in HELLO.
pub const VERSION: u8 = 1;
/// Bytes of a frame header: magic, version, kind, reserved u16, payload length u32.
pub const HEADER_LEN: usize = 12;
/// Bytes of a DATA payload before the data: offset u64, crc32c u32, reserved u32.
pub const DATA_PREFIX: usize = 16;
/// Data bytes one DATA frame carries at most (1 MiB); at least 1.
pub const MAX_DATA: usize = 1 << 20;
/// Bytes of UTF-8 an ERROR frame's message carries at most.
pub const MAX_ERROR_MESSAGE: usize = 256;
/// Bytes of a ROD token (OPEN's payload).
pub const TOKEN_LEN: usize = 512;
/// A node's identity: the 16-byte copy-manager identifier its tokens carry.
pub type NodeId = [u8; 16];
/// A handshake nonce: 32 fresh random bytes from each end.
pub type Nonce = [u8; 32];
/// A handshake proof: an HMAC-SHA256 under the link key.
pub type Proof = [u8; 32];
