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
//! attentions, [`range_lock`] the per-LU range locks; [`registry`] is the
//! daemon-wide LU registry (lookups by target/LUN and by designator, filtered
//! by access rights) that owns the [`copy`] manager's records and the
//! [`metrics`]; `reservation` and `pr` hold SPC-2 and persistent
//! reservations, [`provisioning`] UNMAP / WRITE SAME / GET LBA STATUS, `caw`
//! COMPARE AND WRITE and ORWRITE. [`wire`] is the bottom layer: the SCSI
//! byte layouts (CDBs, sense, VPD and copy parameter lists) shared with the
//! initiator side.

mod caw;
mod cdb;
mod commands;
pub mod copy;
mod defect;
mod exec;
pub mod inquiry;
pub mod lu;
pub mod lun;
pub mod metrics;
pub mod mode;
mod mode_commands;
pub mod nexus;
mod pr;
pub mod provisioning;
pub mod registry;
mod reservation;
pub mod result;
pub mod sbc;
pub mod spc;
pub mod target;
mod ua;
pub mod wire;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_disk;

pub use cdb::DataDir;
pub use exec::Request;
pub use lu::{LogicalUnit, LuConfig, Provisioning, MAX_TRANSFER_BYTES};
pub use lun::{decode_lun, encode_lun, MAX_LUN};
pub use metrics::Metrics;
pub use nexus::{CancelToken, Nexus};
pub use oxcopy_copy::lock as range_lock;
pub use oxcopy_copy::{LockMode, RangeGuard, RangeLocks, Unit, WriteHook};
pub use registry::{AccessList, DomainInfo, LuRegistry, Resolution, ResolvedLu};
pub use reservation::{PrStateError, PrStore, PrType, MAX_REGISTRATIONS};
pub use result::{CommandResult, ScsiStatus};
pub use target::{command_info, CommandInfo, ScsiTarget, TmfResult};
pub use wire::cdb::{Opcode, ServiceAction};
pub use wire::sense::{self as sense, Asc, Sense, SenseData, SenseKey, SenseKeySpecific};
pub use wire::vpd::{CopyDomainPage, CopyDomainPageError, DomainNode, NodeState};
