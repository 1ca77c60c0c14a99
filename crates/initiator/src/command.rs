//! Values describing one SCSI command: data direction, outcome, residual.
//! The status bytes are [`ScsiStatus`]'s, as the target's.
//!
//! This module is a leaf: it imports no other module of the crate.
//! [`ScsiOutcome::into_result`], which needs the error type, is defined in
//! [`crate::error`].

use bytes::Bytes;
use oxcopy_scsi::wire::sense::SenseData as Sense;
use oxcopy_scsi::ScsiStatus;

/// SCSI status GOOD.
pub const STATUS_GOOD: u8 = ScsiStatus::GOOD.0;
/// SCSI status CHECK CONDITION (sense data describes the failure).
pub const STATUS_CHECK_CONDITION: u8 = ScsiStatus::CHECK_CONDITION.0;
/// SCSI status CONDITION MET.
pub const STATUS_CONDITION_MET: u8 = ScsiStatus::CONDITION_MET.0;
/// SCSI status BUSY.
pub const STATUS_BUSY: u8 = ScsiStatus::BUSY.0;
/// SCSI status RESERVATION CONFLICT.
pub const STATUS_RESERVATION_CONFLICT: u8 = ScsiStatus::RESERVATION_CONFLICT.0;
/// SCSI status TASK SET FULL.
pub const STATUS_TASK_SET_FULL: u8 = ScsiStatus::TASK_SET_FULL.0;
/// SCSI status TASK ABORTED.
pub const STATUS_TASK_ABORTED: u8 = ScsiStatus::TASK_ABORTED.0;

/// Direction and size of a command's data transfer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DataDir {
    /// No data phase.
    #[default]
    None,
    /// Data-In: the target sends up to `len` bytes (the allocation length
    /// / ExpectedDataTransferLength).
    Read {
        /// Expected data transfer length in bytes.
        len: u32,
    },
    /// Data-Out: these bytes go to the target (immediate data, unsolicited
    /// Data-Out and R2T-solicited Data-Out, as negotiated). The buffer is
    /// sliced, never copied.
    Write {
        /// The data to send; its length is the ExpectedDataTransferLength.
        data: Bytes,
    },
}

/// Residual reported by the target (RFC 7143 §11.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Residual {
    /// The target transferred exactly the expected length.
    #[default]
    None,
    /// The target transferred this many bytes *less* than expected.
    Underflow(u32),
    /// The target wanted to transfer this many bytes *more* than expected.
    Overflow(u32),
}

impl Residual {
    pub(crate) fn from_flags(overflow: bool, underflow: bool, count: u32) -> Residual {
        if overflow {
            Residual::Overflow(count)
        } else if underflow {
            Residual::Underflow(count)
        } else {
            Residual::None
        }
    }
}

/// How a SCSI command completed at the target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScsiOutcome {
    /// SCSI status byte (`STATUS_GOOD`, `STATUS_CHECK_CONDITION`, ...).
    pub status: u8,
    /// Sense data (without the 2-byte SenseLength prefix), if the target
    /// sent any.
    pub sense: Option<Bytes>,
    /// Data-In bytes as received (up to the highest offset transferred).
    pub data: Bytes,
    /// Residual over/underflow.
    pub residual: Residual,
}

impl ScsiOutcome {
    /// True when the status is GOOD.
    pub fn is_good(&self) -> bool {
        self.status == STATUS_GOOD
    }

    /// True when the status is CHECK CONDITION.
    pub fn is_check_condition(&self) -> bool {
        self.status == STATUS_CHECK_CONDITION
    }

    /// Parsed sense data (fixed or descriptor format), if any.
    pub fn sense_info(&self) -> Option<Sense> {
        self.sense.as_deref().and_then(Sense::parse)
    }
}
