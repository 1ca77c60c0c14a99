//! Async iSCSI initiator (RFC 7143, ErrorRecoveryLevel 0) for oxcopy.
//!
//! - [`Session::connect`] opens a TCP connection, logs in and starts the
//!   full-feature phase; [`Session::discover`] runs SendTargets discovery.
//! - One connection task pair per session: a writer that sends queued PDUs
//!   with vectored writes, and a reader that completes commands. The
//!   [`Session`] handle is `Arc`-cheap to clone; any number of tasks can
//!   have commands in flight, bounded by the target's MaxCmdSN window.
//! - [`Session::execute`] / [`Session::submit`] run one SCSI command with
//!   immediate data, unsolicited Data-Out and R2T-solicited Data-Out as
//!   negotiated, Data-In reassembly, sense and residuals.
//! - Task management, NOP keepalive, Text, Logout, Async Messages.
//! - [`scsi`] holds typed helpers (READ/WRITE (16), INQUIRY, ...).
//! - [`xcopy`] builds EXTENDED COPY (LID1) parameter lists from VPD 83h
//!   designators and decodes RECEIVE COPY RESULTS.
//!
//! A CHECK CONDITION is a [`ScsiOutcome`] value, not an error.
//!
//! ```no_run
//! use bytes::Bytes;
//! use oxcopy_initiator::{DataDir, Session, SessionConfig};
//!
//! # async fn demo() -> oxcopy_initiator::Result<()> {
//! let addr = "127.0.0.1:3260".parse().unwrap();
//! let targets = Session::discover(addr, SessionConfig::discovery()).await?;
//! let s = Session::connect(addr, SessionConfig::for_target(&targets[0].name)).await?;
//! let (blocks, bs) = s.read_capacity16(0).await?;
//! s.write16(0, 0, Bytes::from(vec![0xab; bs as usize]), bs, false).await?;
//! let data = s.read16(0, 0, 1, bs).await?;
//! // Raw CDBs: status and sense come back as values.
//! let pending = s.submit(0, &[0x00; 6], DataDir::None).await?; // TEST UNIT READY
//! println!("ITT {:#x}", pending.itt());
//! let outcome = pending.await?;
//! if let Some(sense) = outcome.sense_info() {
//!     println!("{sense}");
//! }
//! # let _ = (blocks, data);
//! s.logout().await
//! # }
//! ```

#![warn(missing_docs)]

pub mod chap;
mod command;
pub mod config;
mod conn;
mod connect;
pub mod discovery;
pub mod error;
pub mod lun;
pub mod nvme;
pub mod odx;
pub mod plan;
pub mod scsi;
mod session;
mod shared;
pub mod xcopy;

pub use chap::{ChapAlgorithm, ChapConfig, ChapCredentials};
pub use command::{
    DataDir, Residual, ScsiOutcome, STATUS_BUSY, STATUS_CHECK_CONDITION, STATUS_CONDITION_MET, STATUS_GOOD,
    STATUS_RESERVATION_CONFLICT, STATUS_TASK_ABORTED, STATUS_TASK_SET_FULL,
};
pub use config::{default_initiator_name, DigestPolicy, SessionConfig};
pub use discovery::DiscoveredTarget;
pub use error::{InitiatorError, LoginError, Result};
pub use oxcopy_iscsi::pdu::{TmfFunction, TmfResponse};
pub use oxcopy_iscsi::SessionParams;
pub use scsi::Sense;
pub use session::{LoginOutcome, PendingCommand, Session};
pub use shared::WireStats;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_loopback;
