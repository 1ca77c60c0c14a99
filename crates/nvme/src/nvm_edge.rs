//! The copy engine's and the backend's errors in NVMe terms: the one table
//! from [`CopyError`], [`StorageError`] and write-hook [`Refusal`]s to a
//! completion [`Status`]. Every I/O command of [`crate::nvm`] goes through
//! here; nothing else turns an error into a status.
//!
//! | error | status |
//! |---|---|
//! | [`CopyError::Cancelled`] (Abort, connection loss) | ABORT_REQUESTED |
//! | [`CopyError::WriteProtected`] | NAMESPACE_WRITE_PROTECTED |
//! | [`CopyError::OutOfRange`] | LBA_OUT_OF_RANGE |
//! | [`CopyError::Refused`] | the hook's [`NvmeRefusal`] status, else INTERNAL_ERROR |
//! | [`CopyError::InsufficientResources`], `RequesterShare`, `OperationInProgress`, `NoSnapshotSpace` | INSUFFICIENT_RESOURCES (Copy 89h) |
//! | [`CopyError::Token`], `Unreachable`, `RemoteFailed` (never for a live source) | INTERNAL_ERROR |
//! | [`CopyError::Storage`] | the storage row below, as a write for a copy |
//! | storage `NoSpace` | CAPACITY_EXCEEDED (as Linux nvmet maps ENOSPC) |
//! | storage `Io` reading | UNRECOVERED_READ_ERROR |
//! | storage `Io` writing | WRITE_FAULT |
//! | storage `ReadOnly` | NAMESPACE_WRITE_PROTECTED |
//! | storage `OutOfRange`, `Unsupported`, `SizeMismatch` | INTERNAL_ERROR (our fault, not the medium's) |
//!
//! A copy's storage error cannot tell its read side from its write side (the
//! kernel copies both at once); it counts as a write: WRITE_FAULT.

use crate::wire::command::Status;
use oxcopy_copy::{CopyError, Refusal};
use oxcopy_storage::{StorageError, StorageErrorKind};

/// Which side of an I/O met a storage error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Reading (Read, Compare, Verify).
    Read,
    /// Writing (Write, Write Zeroes, deallocation, Flush, a copy).
    Write,
}

/// An NVMe-aware write hook's reason: the status the write fails with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("write refused with status {0}")]
pub struct NvmeRefusal(pub Status);

impl From<NvmeRefusal> for Refusal {
    fn from(r: NvmeRefusal) -> Self {
        Refusal::new(r)
    }
}

/// A write hook's refusal as a status: what an [`NvmeRefusal`] carries, else
/// INTERNAL_ERROR (a SCSI hook's sense means nothing to an NVMe host).
pub fn refusal_status(r: &Refusal) -> Status {
    match r.0.downcast_ref::<NvmeRefusal>() {
        Some(n) => n.0,
        None => Status::INTERNAL_ERROR,
    }
}

/// A storage error met on `side`.
pub fn storage_status(e: &StorageError, side: Side) -> Status {
    match (e.kind, side) {
        (StorageErrorKind::NoSpace, _) => Status::CAPACITY_EXCEEDED,
        (StorageErrorKind::Io, Side::Read) => Status::UNRECOVERED_READ_ERROR,
        (StorageErrorKind::Io, Side::Write) => Status::WRITE_FAULT,
        (StorageErrorKind::ReadOnly, _) => Status::NAMESPACE_WRITE_PROTECTED,
        _ => Status::INTERNAL_ERROR,
    }
}

/// A copy-engine error (Copy, and the write-hook / cancellation outcomes of
/// every other command).
pub fn copy_status(e: &CopyError) -> Status {
    match e {
        CopyError::Cancelled => Status::ABORT_REQUESTED,
        CopyError::WriteProtected => Status::NAMESPACE_WRITE_PROTECTED,
        CopyError::OutOfRange => Status::LBA_OUT_OF_RANGE,
        CopyError::Refused(r) => refusal_status(r),
        CopyError::Storage(s) => storage_status(s, Side::Write),
        CopyError::InsufficientResources
        | CopyError::RequesterShare
        | CopyError::OperationInProgress
        | CopyError::NoSnapshotSpace => Status::INSUFFICIENT_RESOURCES,
        CopyError::Token(_) | CopyError::Unreachable(_) | CopyError::RemoteFailed(_) => Status::INTERNAL_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcopy_copy::TokenError;

    #[derive(Debug, thiserror::Error)]
    #[error("someone else's reason")]
    struct Other;

    #[test]
    fn the_table() {
        let st = |k| StorageError::new(k, "x");
        assert_eq!(copy_status(&CopyError::Cancelled), Status::ABORT_REQUESTED);
        assert_eq!(copy_status(&CopyError::WriteProtected), Status::NAMESPACE_WRITE_PROTECTED);
        assert_eq!(copy_status(&CopyError::OutOfRange), Status::LBA_OUT_OF_RANGE);
        assert_eq!(copy_status(&CopyError::Storage(st(StorageErrorKind::Io))), Status::WRITE_FAULT);
        assert_eq!(copy_status(&CopyError::Storage(st(StorageErrorKind::NoSpace))), Status::CAPACITY_EXCEEDED);
        assert_eq!(copy_status(&CopyError::NoSnapshotSpace), Status::INSUFFICIENT_RESOURCES);
        assert_eq!(copy_status(&CopyError::Token(TokenError::Revoked)), Status::INTERNAL_ERROR);
        assert_eq!(copy_status(&CopyError::Refused(NvmeRefusal(Status::ACCESS_DENIED).into())), Status::ACCESS_DENIED);
        assert_eq!(copy_status(&CopyError::Refused(Refusal::new(Other))), Status::INTERNAL_ERROR);
        assert_eq!(storage_status(&st(StorageErrorKind::Io), Side::Read), Status::UNRECOVERED_READ_ERROR);
        assert_eq!(storage_status(&st(StorageErrorKind::ReadOnly), Side::Write), Status::NAMESPACE_WRITE_PROTECTED);
        assert_eq!(storage_status(&st(StorageErrorKind::OutOfRange), Side::Read), Status::INTERNAL_ERROR);
        assert_eq!(storage_status(&st(StorageErrorKind::Unsupported), Side::Write), Status::INTERNAL_ERROR);
    }
}
