//! NVMe over TCP protocol core with no sockets and no clock.
//!
//! Bytes go in, typed commands and events come out; the caller owns sockets and
//! passes the current time in. Used by the target daemon (`oxcopyd`) and the
//! host library (`oxcopy-initiator`).
//!
//! | module | role |
//! |---|---|
//! | [`wire`] | SQE / CQE layouts, opcodes, status codes |
//! | [`model`] | what a subsystem and its namespaces are, as plain data |
//! | [`controller`] | Connect validation, properties and the admin command set (NVM and discovery) |

pub mod controller;
pub mod model;
pub mod wire;

pub use wire::command::{Cqe, Sqe, Status};
