//! Wire layouts, one definition for both roles (target and host).
//!
//! - [`command`]: the 64-byte submission queue entry, the 16-byte completion
//!   queue entry, opcodes and status codes (newtypes with named constants).
//! - [`pdu`]: NVMe/TCP PDUs, digests and padding: incremental decode, zero-copy
//!   encode.

pub mod command;
pub mod pdu;
