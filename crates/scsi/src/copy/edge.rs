//! The copy engine's outcomes in SCSI terms: one table from
//! [`oxcopy_copy::CopyError`] (and [`TokenError`]) to status and sense.

use super::records::{Completion, ScsiOutcome};
use crate::exec::Fail;
use crate::lu::LogicalUnit;
use crate::result::ScsiStatus;
use crate::sense::{Asc, Sense, SenseKey};
use oxcopy_copy::{CopyError, OpStatus, Refusal, TokenError};

/// The record of a command's result, with its sense in the LU's format.
pub(crate) fn completion(result: &Result<(), Fail>, lu: &LogicalUnit) -> Completion {
    match result {
        Ok(()) => Completion { status: OpStatus::Succeeded, outcome: ScsiOutcome::default() },
        Err(Fail::Check(s)) => Completion {
            status: OpStatus::Failed,
            outcome: ScsiOutcome { scsi_status: ScsiStatus::CHECK_CONDITION, sense: Some(s.encode(lu.mode.d_sense())) },
        },
        Err(Fail::Status(st)) => Completion {
            status: if *st == ScsiStatus::TASK_ABORTED { OpStatus::Aborted } else { OpStatus::Failed },
            outcome: ScsiOutcome { scsi_status: *st, sense: None },
        },
    }
}

/// ADDITIONAL SENSE CODE of a token refusal (ILLEGAL REQUEST).
pub fn token_asc(e: TokenError) -> Asc {
    match e {
        TokenError::InvalidLength => Asc::INVALID_TOKEN_OPERATION_INVALID_TOKEN_LENGTH,
        TokenError::Corrupt => Asc::INVALID_TOKEN_OPERATION_TOKEN_CORRUPT,
        TokenError::Unknown => Asc::INVALID_TOKEN_OPERATION_TOKEN_UNKNOWN,
        TokenError::Remote => Asc::INVALID_TOKEN_OPERATION_REMOTE_TOKEN_USAGE_NOT_SUPPORTED,
        TokenError::Revoked => Asc::INVALID_TOKEN_OPERATION_TOKEN_REVOKED,
        TokenError::Expired => Asc::INVALID_TOKEN_OPERATION_TOKEN_EXPIRED,
        TokenError::Cancelled => Asc::INVALID_TOKEN_OPERATION_TOKEN_CANCELLED,
        TokenError::Deleted => Asc::INVALID_TOKEN_OPERATION_TOKEN_DELETED,
        TokenError::UnsupportedType => Asc::INVALID_TOKEN_OPERATION_UNSUPPORTED_TOKEN_TYPE,
        TokenError::TooMany | TokenError::InitiatorShare => Asc::INSUFFICIENT_RESOURCES_TO_CREATE_ROD_TOKEN,
    }
}

/// ILLEGAL REQUEST with [`token_asc`].
pub fn token_sense(e: TokenError) -> Sense {
    Sense::illegal(token_asc(e))
}

/// A write hook's refusal as sense: the sense a SCSI hook put in it, else
/// HARDWARE ERROR / INTERNAL TARGET FAILURE.
pub(crate) fn refusal_sense(r: Refusal) -> Sense {
    match r.0.downcast::<SenseRefusal>() {
        Ok(s) => s.0,
        Err(other) => {
            tracing::warn!(reason = %other, "write refused by a hook");
            Sense::new(SenseKey::HARDWARE_ERROR, Asc::INTERNAL_TARGET_FAILURE)
        }
    }
}

/// A SCSI write hook's reason: the sense the write fails with.
#[derive(Debug, thiserror::Error)]
#[error("write refused with sense {0:?}")]
pub struct SenseRefusal(pub Sense);

impl From<Sense> for Refusal {
    fn from(s: Sense) -> Self {
        Refusal::new(SenseRefusal(s))
    }
}

impl From<Refusal> for Fail {
    fn from(r: Refusal) -> Self {
        Fail::Check(refusal_sense(r))
    }
}

/// The one table: an engine error as the SCSI outcome of the copy command
/// that met it. Commands add their own detail (EXTENDED COPY the segment
/// index, WRITE USING TOKEN the blocks written) to COPY ABORTED sense.
pub(crate) fn failure(e: CopyError) -> Fail {
    let aborted = |asc| Fail::Check(Sense::new(SenseKey::COPY_ABORTED, asc));
    match e {
        CopyError::Cancelled => Fail::Status(ScsiStatus::TASK_ABORTED),
        CopyError::Refused(r) => Fail::Check(refusal_sense(r)),
        CopyError::OutOfRange => aborted(Asc::COPY_TARGET_DEVICE_NOT_REACHABLE),
        CopyError::WriteProtected => aborted(Asc::THIRD_PARTY_DEVICE_FAILURE),
        CopyError::Storage(err) => {
            tracing::warn!(error = %err, "copy failed in the backend");
            aborted(Asc::THIRD_PARTY_DEVICE_FAILURE)
        }
        CopyError::Token(t) => Fail::Check(token_sense(t)),
        CopyError::Unreachable(why) => {
            tracing::warn!(error = %why, "copy source node not reachable");
            aborted(Asc::COPY_TARGET_DEVICE_NOT_REACHABLE)
        }
        CopyError::RemoteFailed(why) => {
            tracing::warn!(error = %why, "copy source node failed");
            aborted(Asc::THIRD_PARTY_DEVICE_FAILURE)
        }
        CopyError::OperationInProgress => Fail::Check(Sense::illegal(Asc::OPERATION_IN_PROGRESS)),
        CopyError::InsufficientResources | CopyError::RequesterShare => {
            Fail::Check(Sense::illegal(Asc::INSUFFICIENT_RESOURCES))
        }
        CopyError::NoSnapshotSpace => Fail::Check(Sense::illegal(Asc::INSUFFICIENT_RESOURCES_TO_CREATE_ROD)),
    }
}

impl From<CopyError> for Fail {
    fn from(e: CopyError) -> Self {
        failure(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcopy_storage::{StorageError, StorageErrorKind};

    fn check(f: Fail) -> (SenseKey, Asc) {
        match f {
            Fail::Check(s) => (s.key, s.asc),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn token_refusals_read_as_the_digest_says() {
        let table = [
            (TokenError::InvalidLength, Asc(0x23, 0x0A)),
            (TokenError::Corrupt, Asc(0x23, 0x05)),
            (TokenError::Unknown, Asc(0x23, 0x04)),
            (TokenError::Remote, Asc(0x23, 0x02)),
            (TokenError::Revoked, Asc(0x23, 0x06)),
            (TokenError::Expired, Asc(0x23, 0x07)),
            (TokenError::Cancelled, Asc(0x23, 0x08)),
            (TokenError::Deleted, Asc(0x23, 0x09)),
            (TokenError::UnsupportedType, Asc(0x23, 0x01)),
            (TokenError::TooMany, Asc(0x55, 0x0D)),
            (TokenError::InitiatorShare, Asc(0x55, 0x0D)),
        ];
        for (e, asc) in table {
            assert_eq!(token_asc(e), asc, "{e:?}");
            assert_eq!(check(failure(CopyError::Token(e))), (SenseKey::ILLEGAL_REQUEST, asc));
        }
    }

    #[test]
    fn engine_errors_read_as_scsi() {
        assert_eq!(failure(CopyError::Cancelled), Fail::Status(ScsiStatus::TASK_ABORTED));
        let storage = StorageError::new(StorageErrorKind::Io, "boom".to_string());
        assert_eq!(check(failure(storage.into())), (SenseKey::COPY_ABORTED, Asc::THIRD_PARTY_DEVICE_FAILURE));
        assert_eq!(
            check(failure(CopyError::OutOfRange)),
            (SenseKey::COPY_ABORTED, Asc::COPY_TARGET_DEVICE_NOT_REACHABLE)
        );
        assert_eq!(
            check(failure(CopyError::OperationInProgress)),
            (SenseKey::ILLEGAL_REQUEST, Asc::OPERATION_IN_PROGRESS)
        );
        assert_eq!(
            check(failure(CopyError::NoSnapshotSpace)),
            (SenseKey::ILLEGAL_REQUEST, Asc::INSUFFICIENT_RESOURCES_TO_CREATE_ROD)
        );
        assert_eq!(
            check(failure(CopyError::Unreachable("gone".into()))),
            (SenseKey::COPY_ABORTED, Asc::COPY_TARGET_DEVICE_NOT_REACHABLE)
        );
        assert_eq!(
            check(failure(CopyError::RemoteFailed("eio".into()))),
            (SenseKey::COPY_ABORTED, Asc::THIRD_PARTY_DEVICE_FAILURE)
        );
        let hook = Sense::new(SenseKey::DATA_PROTECT, Asc::WRITE_PROTECTED);
        assert_eq!(check(failure(CopyError::Refused(hook.into()))), (SenseKey::DATA_PROTECT, Asc::WRITE_PROTECTED));
    }
}
