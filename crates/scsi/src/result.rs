//! Command outcomes.

use crate::sense::Sense;

/// SCSI status byte (SAM-5). A newtype: any byte is representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScsiStatus(pub u8);

impl ScsiStatus {
    /// GOOD.
    pub const GOOD: Self = Self(0x00);
    /// CHECK CONDITION: sense data describes the failure.
    pub const CHECK_CONDITION: Self = Self(0x02);
    /// CONDITION MET.
    pub const CONDITION_MET: Self = Self(0x04);
    /// BUSY.
    pub const BUSY: Self = Self(0x08);
    /// RESERVATION CONFLICT.
    pub const RESERVATION_CONFLICT: Self = Self(0x18);
    /// TASK SET FULL.
    pub const TASK_SET_FULL: Self = Self(0x28);
    /// ACA ACTIVE.
    pub const ACA_ACTIVE: Self = Self(0x30);
    /// TASK ABORTED.
    pub const TASK_ABORTED: Self = Self(0x40);

    /// The status in words (`"unknown status"` for other bytes).
    pub fn name(self) -> &'static str {
        match self {
            Self::GOOD => "GOOD",
            Self::CHECK_CONDITION => "CHECK CONDITION",
            Self::CONDITION_MET => "CONDITION MET",
            Self::BUSY => "BUSY",
            Self::RESERVATION_CONFLICT => "RESERVATION CONFLICT",
            Self::TASK_SET_FULL => "TASK SET FULL",
            Self::ACA_ACTIVE => "ACA ACTIVE",
            Self::TASK_ABORTED => "TASK ABORTED",
            _ => "unknown status",
        }
    }
}

/// The outcome of one command, as the transport needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    /// GOOD, CHECK CONDITION, CONDITION MET, TASK ABORTED, ...
    pub status: ScsiStatus,
    /// Encoded sense data (fixed or descriptor format, as the LU's D_SENSE
    /// selects), present with CHECK CONDITION.
    pub sense: Option<Vec<u8>>,
    /// Data-in bytes, already clipped to the CDB's allocation/transfer length
    /// (but not to the transport's expected length: the transport clips and
    /// computes the residual).
    pub data_in: Vec<u8>,
    /// Bytes of data-out the CDB called for (the transport compares it to
    /// what it was told to expect, for residuals). 0 for non-write commands.
    pub data_out_wanted: u32,
}

/// A successful outcome: GOOD or CONDITION MET, with data-in already clipped
/// to the CDB's allocation length.
#[derive(Debug)]
pub(crate) struct Done {
    pub status: ScsiStatus,
    pub data_in: Vec<u8>,
}

impl Done {
    pub(crate) fn good() -> Self {
        Done { status: ScsiStatus::GOOD, data_in: Vec::new() }
    }
    pub(crate) fn data(mut data: Vec<u8>, alloc_len: u64) -> Self {
        data.truncate(usize::try_from(alloc_len).unwrap_or(usize::MAX));
        Done { status: ScsiStatus::GOOD, data_in: data }
    }
}

/// A failed outcome: CHECK CONDITION with sense, or a bare status
/// (RESERVATION CONFLICT, TASK ABORTED, BUSY).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fail {
    Check(Sense),
    Status(ScsiStatus),
}

impl From<Sense> for Fail {
    fn from(s: Sense) -> Self {
        Fail::Check(s)
    }
}

pub(crate) type CmdResult = Result<Done, Fail>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names() {
        assert_eq!((ScsiStatus::GOOD.name(), ScsiStatus(0x28).name()), ("GOOD", "TASK SET FULL"));
        assert_eq!((ScsiStatus::TASK_ABORTED.name(), ScsiStatus(0x22).name()), ("TASK ABORTED", "unknown status"));
    }
}
