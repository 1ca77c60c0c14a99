//! NVMe over TCP protocol core with no sockets and no clock.
//!
//! Bytes go in, typed commands and events come out; the caller owns sockets and
//! passes the current time in. Used by the target daemon (`oxcopyd`) and the
//! host library (`oxcopy-initiator`).
//!
//! | module | role |
//! |---|---|
//! | [`wire`] | SQE / CQE layouts, opcodes, status codes |
//! | [`host`] | the host side of one NVMe/TCP connection (initiator core) |
//! | [`model`] | what a subsystem and its namespaces are, as plain data |
//! | [`namespace`] | a namespace over a copy-engine unit ([`Namespace`], [`NsUnit`]) |
//! | [`nvm`] | the NVM command set I/O commands, Copy included: parse, check, execute |
//! | [`nvm_edge`] | engine and storage errors as NVMe statuses, in one table |
//! | [`transport`] | the target side of one NVMe/TCP connection: PDUs in, commands and PDUs out |
//! | [`controller`] | Connect validation, properties and the admin command set (NVM and discovery) |

pub mod controller;
pub mod host;
pub mod model;
pub mod namespace;
pub mod nvm;
pub mod nvm_edge;
pub mod transport;
pub mod wire;

pub use namespace::{Namespace, NsUnit};
pub use nvm::{IoCommand, IoContext, IoOutcome};

pub use wire::command::{Cqe, Sqe, Status};
