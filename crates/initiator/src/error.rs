//! The initiator's error type.

use crate::command::{ScsiOutcome, STATUS_CONDITION_MET, STATUS_GOOD};
pub use oxcopy_iscsi::login::LoginError;

/// Why an initiator operation failed.
///
/// A SCSI command that completes with a non-GOOD status (CHECK CONDITION,
/// BUSY, ...) is *not* an error of [`crate::Session::execute`]: it is a
/// [`ScsiOutcome`] value. Only the typed helpers of [`crate::scsi`] turn a
/// non-GOOD status into [`InitiatorError::ScsiStatus`], so that `?` works.
#[derive(Debug, thiserror::Error)]
pub enum InitiatorError {
    /// Socket error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// An operation did not finish in time (connect, login, command, TMF,
    /// NOP, logout, or waiting for the CmdSN window).
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// Login failed (negotiation, or a non-success Login Response status:
    /// see [`LoginError::Rejected`] / [`LoginError::Redirected`]).
    #[error("login failed: {0}")]
    Login(#[from] LoginError),
    /// The target violated the protocol in a way that concerns this
    /// operation (e.g. a Data-In past the expected buffer, malformed sense).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The target answered our PDU with a Reject (reason code, RFC 7143
    /// §11.17.1, e.g. 0x04 protocol error, 0x09 invalid PDU field).
    #[error("rejected by target, reason {reason:#04x}")]
    Rejected {
        /// Reject reason code.
        reason: u8,
    },
    /// The command was aborted by a task management function (ABORT TASK,
    /// ABORT TASK SET, CLEAR TASK SET, LUN RESET, TARGET RESET) before it
    /// completed.
    #[error("command aborted by task management")]
    Aborted,
    /// The iSCSI service response of a SCSI Response was not "command
    /// completed at target" (0x01 = target failure).
    #[error("iSCSI service response {0:#04x} (target failure)")]
    ServiceResponse(u8),
    /// The connection is gone (closed by the target, a fatal protocol or I/O
    /// error, logout, or every `Session` handle dropped).
    #[error("connection closed")]
    ConnectionClosed,
    /// A typed SCSI helper got a status other than GOOD. The full outcome
    /// (status, sense, data) is kept.
    #[error("SCSI status {:#04x}{}", .0.status, .0.sense_info().map(|s| format!(" ({s})")).unwrap_or_default())]
    ScsiStatus(Box<ScsiOutcome>),
    /// Invalid argument given by the caller (empty CDB, CDB too long, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl InitiatorError {
    /// The SCSI outcome carried by [`InitiatorError::ScsiStatus`].
    pub fn scsi_outcome(&self) -> Option<&ScsiOutcome> {
        match self {
            InitiatorError::ScsiStatus(o) => Some(o),
            _ => None,
        }
    }
}

impl ScsiOutcome {
    /// `Ok(self)` for GOOD (and CONDITION MET), otherwise
    /// [`InitiatorError::ScsiStatus`] carrying the outcome.
    pub fn into_result(self) -> Result<ScsiOutcome> {
        if self.status == STATUS_GOOD || self.status == STATUS_CONDITION_MET {
            Ok(self)
        } else {
            Err(InitiatorError::ScsiStatus(Box::new(self)))
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = InitiatorError> = std::result::Result<T, E>;
