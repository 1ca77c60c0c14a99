//! Wire layouts, one definition for both roles (target and host).
//!
//! - [`command`]: the 64-byte submission queue entry, the 16-byte completion
//!   queue entry, opcodes and status codes (newtypes with named constants).
//! - [`pdu`]: NVMe/TCP PDUs, digests and padding: incremental decode, zero-copy
//!   encode.
//! - [`connect`]: Fabrics Connect / Disconnect, Property Get / Set.
//! - [`identify`]: Identify command and its data structures.
//! - [`log`]: Get Log Page, log page layouts, asynchronous event encoding.
//! - [`features`]: Get / Set Features, Host Behavior Support, Timestamp.
//! - [`field`]: bounds-checked field access and [`field::LayoutError`].
//! - [`nvm`]: NVM command set fields and data: command dword 12 of the I/O
//!   commands, Dataset Management ranges, Copy source range descriptors
//!   (formats 0h–3h), and SQE builders for the host.

pub mod command;
pub mod connect;
pub mod features;
pub mod field;
pub mod identify;
pub mod log;
pub mod nvm;
pub mod pdu;
