//! Wire layouts, one definition for both roles (target and host).
//!
//! - [`command`]: the 64-byte submission queue entry, the 16-byte completion
//!   queue entry, opcodes and status codes (newtypes with named constants).

pub mod command;
