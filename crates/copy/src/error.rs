//! The engine's one error type. Front ends derive their status from it in
//! one table each (SCSI sense in `oxcopy-scsi`'s copy edge; NVMe status
//! later); nothing here knows those codes.

use crate::token::TokenError;
use oxcopy_storage::StorageError;
use std::fmt;

/// A write hook's refusal, carrying the front end's own reason (a SCSI
/// hook returns its sense data in it; the edge downcasts it back).
pub struct Refusal(pub Box<dyn std::error::Error + Send + Sync>);

impl Refusal {
    /// Wrap a reason.
    pub fn new(reason: impl std::error::Error + Send + Sync + 'static) -> Self {
        Refusal(Box::new(reason))
    }
}

impl fmt::Debug for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Refusal({:?})", self.0)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Why a copy (or a copy-state request) did not complete.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A cancel token was set (or the caller's stop condition held); the
    /// chunks before it are done.
    #[error("copy cancelled")]
    Cancelled,
    /// The destination is write protected.
    #[error("copy destination is write protected")]
    WriteProtected,
    /// A byte range lies outside its unit (or its source).
    #[error("copy range outside the unit")]
    OutOfRange,
    /// The destination's write hook refused the write.
    #[error("destination write hook refused the copy: {0}")]
    Refused(Refusal),
    /// A ROD token could not be used (or stopped being usable mid-copy).
    #[error("token: {0}")]
    Token(#[from] TokenError),
    /// The list identifier is still running for this requester and unit.
    #[error("an operation with this list identifier is in progress")]
    OperationInProgress,
    /// A concurrency or record bound was reached.
    #[error("insufficient resources for another copy operation")]
    InsufficientResources,
    /// The requester runs its share of the copy operations already.
    #[error("the requester runs its share of copy operations already")]
    RequesterShare,
    /// The snapshot-space bound leaves no room for a point-in-time copy.
    #[error("no snapshot space left for a point-in-time copy")]
    NoSnapshotSpace,
    /// The backend failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The node holding the source (another copy manager of the domain)
    /// cannot be reached, stopped answering, or was lost mid-copy.
    #[error("source node not reachable: {0}")]
    Unreachable(String),
    /// The node holding the source failed to deliver it.
    #[error("source node failed: {0}")]
    RemoteFailed(String),
}
