use std::fmt;

/// Result alias for storage operations.
pub type Result<T> = std::result::Result<T, StorageError>;

/// Broad class of a storage failure; the SCSI layer maps each to a sense code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// The range lies outside the store (a caller bug; never touch the data).
    OutOfRange,
    /// The operation is not supported by this backend.
    Unsupported,
    /// No space left to allocate blocks.
    NoSpace,
    /// Any other I/O failure (medium error from the initiator's view).
    Io,
    /// An existing backing file does not have the configured size (open
    /// time only; existing files are never resized).
    SizeMismatch,
    /// A write-type operation on a store opened read-only.
    ReadOnly,
}

/// A storage failure: kind plus context (what was being done).
#[derive(Debug, thiserror::Error)]
pub struct StorageError {
    /// What class of failure this is.
    pub kind: StorageErrorKind,
    /// What was being done, with the path / offsets involved.
    pub context: String,
    /// The OS error behind this failure, if any.
    #[source]
    pub source: Option<std::io::Error>,
}

impl StorageError {
    /// A failure without an underlying OS error.
    pub fn new(kind: StorageErrorKind, context: impl Into<String>) -> Self {
        StorageError { kind, context: context.into(), source: None }
    }

    /// Wrap an OS error, classifying ENOSPC/EOPNOTSUPP.
    pub fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        let kind = match err.raw_os_error() {
            Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error() => StorageErrorKind::NoSpace,
            Some(code) if code == rustix::io::Errno::OPNOTSUPP.raw_os_error() => StorageErrorKind::Unsupported,
            Some(code) if code == rustix::io::Errno::ROFS.raw_os_error() => StorageErrorKind::ReadOnly,
            _ => StorageErrorKind::Io,
        };
        StorageError { kind, context: context.into(), source: Some(err) }
    }

    /// Wrap an errno returned by a rustix call (see [`StorageError::io`]).
    pub fn errno(context: impl Into<String>, err: rustix::io::Errno) -> Self {
        Self::io(context, std::io::Error::from(err))
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.context)?;
        if let Some(src) = &self.source {
            write!(f, ": {src}")?;
        }
        Ok(())
    }
}
