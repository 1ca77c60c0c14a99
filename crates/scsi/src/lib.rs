//! The SCSI device model: logical units over a [`oxcopy_storage::Storage`]
//! backend, with no knowledge of the transport.
//!
//! A command goes in as a CDB plus its data-out bytes and the identity of the
//! asking I_T nexus; a [`CommandResult`] comes out: status, sense and data-in.
//! Every SCSI failure is a CHECK CONDITION *value*; Rust errors are reserved
//! for transport or internal failures. Execution is synchronous and may block
//! on disk I/O: transports call it from a blocking worker pool.
//!
//! Layout: [`target`] dispatches through the command table
//! (`commands`, one template per command: CDB length, usage mask, data
//! direction, handler, timeouts), handlers live in [`sbc`], [`spc`],
//! [`inquiry`] and [`mode`]; [`lu`] holds per-LU state, `ua` unit
//! attentions, [`range_lock`] the per-LU range locks; [`copy`] and
//! `reservation` are the hooks later issues fill in.

mod cdb;
mod commands;
pub mod copy;
mod exec;
pub mod inquiry;
pub mod lu;
pub mod mode;
pub mod nexus;
pub mod range_lock;
mod reservation;
pub mod result;
pub mod sbc;
pub mod sense;
pub mod spc;
pub mod target;
mod ua;

#[cfg(test)]
mod tests;

pub use cdb::{DataDir, Opcode, ServiceAction};
pub use lu::{LogicalUnit, LuConfig, Provisioning, WriteHook, MAX_TRANSFER_BYTES};
pub use nexus::{CancelToken, Nexus};
pub use range_lock::{LockMode, RangeGuard, RangeLocks};
pub use result::{CommandResult, ScsiStatus};
pub use sense::{Asc, Sense, SenseKey, SenseKeySpecific};
pub use target::{command_info, decode_lun, encode_lun, CommandInfo, Request, ScsiTarget, TmfResult, MAX_LUN};
