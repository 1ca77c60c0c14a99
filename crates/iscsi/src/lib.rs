//! iSCSI protocol core (RFC 7143) with no I/O and no clock.
//!
//! Bytes go in, typed PDUs and events come out; the caller owns sockets and
//! passes the current time in: the target's state machines decide when a
//! timer fires and what it does, the caller only waits until then. Used by
//! both the target daemon and the initiator library.
//!
//! - [`pdu`]: the 48-byte Basic Header Segment of every opcode, typed.
//! - [`frame`]: framing a byte stream into PDUs (AHS, digests, padding, limits).
//! - [`params`]: the negotiated session parameters.
//! - [`text`]: key=value text data (login and Text PDUs).
//! - [`negotiate`]: the key table and negotiation rules shared by both roles.
//! - [`chap`]: CHAP digests, encodings and the target-side authenticator.
//! - [`login`]: login state machines for the target and initiator roles.
//! - [`discovery`]: SendTargets (build, split, reassemble, parse).
//! - [`serial`]: RFC 1982 serial number arithmetic (CmdSN, StatSN, DataSN).
//! - [`target`]: the target's full-feature phase (sequence numbers, R2T,
//!   Data-In, task management, Text, Logout, keepalive and stall timers).
//! - [`timeout`]: the target's timer settings and reasons for closing.

pub mod budget;
pub mod chap;
pub mod discovery;
pub mod frame;
pub mod login;
pub mod negotiate;
pub mod params;
pub mod pdu;
pub mod serial;
pub mod target;
#[cfg(test)]
mod target_tests;
pub mod text;
pub mod timeout;

pub use frame::{decode_frame, encode_frame, EncodedPdu, FrameError, FrameLimits, Pdu};
pub use params::{SessionParams, SessionType};
pub use pdu::*;
