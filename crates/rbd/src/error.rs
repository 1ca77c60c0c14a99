//! RBD failures and their mapping onto [`StorageError`].
//!
//! `oxcopy_storage::StorageErrorKind` has no kinds for "timed out", "locked by
//! another client" or "fenced", and that crate is not ours to change. So every
//! error from this crate is a [`StorageError`] whose `kind` is the nearest
//! storage kind and whose `source` is an `std::io::Error` wrapping an
//! [`RbdError`] with the precise [`RbdErrorKind`] and errno; [`rbd_error`]
//! digs it out again.
//!
//! | librbd / local condition | [`RbdErrorKind`] | `StorageErrorKind` |
//! | --- | --- | --- |
//! | -ETIMEDOUT, or our own bounded wait expired | `Timeout` | `Io` |
//! | exclusive lock held by another client at open (-EROFS/-EBUSY from `rbd_lock_acquire`) | `LockedByOther` | `ReadOnly` |
//! | -EROFS on I/O (another client holds the lock in managed mode; a snapshot) | `NotWritable` | `ReadOnly` |
//! | -ESHUTDOWN (= -EBLOCKLISTED: this client was blocklisted, lost its lock) | `Fenced` | `ReadOnly` |
//! | -ENOENT (pool, image, snapshot missing) | `NotFound` | `Io` |
//! | -ENOSPC, -EDQUOT | `NoSpace` | `NoSpace` |
//! | -EOPNOTSUPP, -ENOSYS | `Unsupported` | `Unsupported` |
//! | -EACCES, -EPERM (cephx caps) | `PermissionDenied` | `Io` |
//! | bad option (NUL in a string, zero timeout, size overflow) | `InvalidArgument` | `Io` |
//! | crate built without the `ceph` feature | `NoCephSupport` | `Unsupported` |
//! | anything else | `Other` | `Io` |

use oxcopy_storage::{StorageError, StorageErrorKind};

/// Precise class of an RBD failure (finer than [`StorageErrorKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RbdErrorKind {
    /// The cluster did not answer within the operation timeout (-ETIMEDOUT, or
    /// our own wait gave up). A write that timed out may still be applied later.
    Timeout,
    /// Opening with `exclusive`: another client owns the image's exclusive lock.
    LockedByOther,
    /// A write was refused with -EROFS: another client holds the exclusive lock
    /// in managed mode, or the handle reads a snapshot.
    NotWritable,
    /// This client has been blocklisted (-ESHUTDOWN): its lock was broken by
    /// another client. Writes are fenced for good; reconnect to recover.
    Fenced,
    /// Pool, image or snapshot does not exist (-ENOENT).
    NotFound,
    /// No space in the pool (-ENOSPC, -EDQUOT).
    NoSpace,
    /// The cluster or image does not support the operation.
    Unsupported,
    /// cephx refused (-EACCES, -EPERM).
    PermissionDenied,
    /// A bad option or argument, found before talking to the cluster.
    InvalidArgument,
    /// The crate was built without the cargo feature `ceph`.
    NoCephSupport,
    /// Any other librbd / librados error.
    Other,
}

impl RbdErrorKind {
    /// Classify a (positive or negative) errno returned by librados/librbd.
    pub fn from_errno(errno: i32) -> Self {
        match errno.saturating_abs() {
            libc::ETIMEDOUT => RbdErrorKind::Timeout,
            libc::EROFS => RbdErrorKind::NotWritable,
            libc::ESHUTDOWN => RbdErrorKind::Fenced,
            libc::ENOENT => RbdErrorKind::NotFound,
            libc::ENOSPC | libc::EDQUOT => RbdErrorKind::NoSpace,
            libc::EOPNOTSUPP | libc::ENOSYS => RbdErrorKind::Unsupported,
            libc::EACCES | libc::EPERM => RbdErrorKind::PermissionDenied,
            _ => RbdErrorKind::Other,
        }
    }

    /// The storage-level kind this maps to (see the module table).
    pub fn storage_kind(self) -> StorageErrorKind {
        match self {
            RbdErrorKind::LockedByOther | RbdErrorKind::NotWritable | RbdErrorKind::Fenced => {
                StorageErrorKind::ReadOnly
            }
            RbdErrorKind::NoSpace => StorageErrorKind::NoSpace,
            RbdErrorKind::Unsupported | RbdErrorKind::NoCephSupport => StorageErrorKind::Unsupported,
            RbdErrorKind::Timeout
            | RbdErrorKind::NotFound
            | RbdErrorKind::PermissionDenied
            | RbdErrorKind::InvalidArgument
            | RbdErrorKind::Other => StorageErrorKind::Io,
        }
    }

    fn io_kind(self) -> std::io::ErrorKind {
        use std::io::ErrorKind as K;
        match self {
            RbdErrorKind::Timeout => K::TimedOut,
            RbdErrorKind::LockedByOther => K::ResourceBusy,
            RbdErrorKind::NotWritable | RbdErrorKind::Fenced => K::ReadOnlyFilesystem,
            RbdErrorKind::NotFound => K::NotFound,
            RbdErrorKind::NoSpace => K::StorageFull,
            RbdErrorKind::Unsupported | RbdErrorKind::NoCephSupport => K::Unsupported,
            RbdErrorKind::PermissionDenied => K::PermissionDenied,
            RbdErrorKind::InvalidArgument => K::InvalidInput,
            RbdErrorKind::Other => K::Other,
        }
    }
}

/// One RBD failure: precise kind, the errno behind it (0 when none) and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}{}", errno_suffix(*errno))]
pub struct RbdError {
    /// Precise class.
    pub kind: RbdErrorKind,
    /// Positive errno from librados/librbd, or 0 for a local failure.
    pub errno: i32,
    /// What went wrong, in words.
    pub message: String,
}

fn errno_suffix(errno: i32) -> String {
    if errno == 0 {
        String::new()
    } else {
        format!(" ({}, errno {errno})", std::io::Error::from_raw_os_error(errno))
    }
}

impl RbdError {
    /// A failure with no errno behind it.
    pub fn new(kind: RbdErrorKind, message: impl Into<String>) -> Self {
        RbdError { kind, errno: 0, message: message.into() }
    }

    /// Classify the return code `rc` (negative errno, as librbd returns) of `what`.
    pub fn from_rc(what: impl Into<String>, rc: i64) -> Self {
        let errno = i32::try_from(rc.saturating_abs()).unwrap_or(i32::MAX);
        RbdError { kind: RbdErrorKind::from_errno(errno), errno, message: what.into() }
    }

    /// Same failure, another kind (e.g. -EROFS at lock time is `LockedByOther`).
    pub fn with_kind(mut self, kind: RbdErrorKind) -> Self {
        self.kind = kind;
        self
    }
}

/// The `source` of a [`StorageError`] made from an [`RbdError`]: displays
/// only what the context does not already say (precise kind and errno), so
/// `StorageError`'s Display does not repeat the message.
#[derive(Debug)]
struct Cause(RbdError);

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rbd {:?}", self.0.kind)?;
        if self.0.errno != 0 {
            write!(f, ", {}", std::io::Error::from_raw_os_error(self.0.errno))?;
        }
        Ok(())
    }
}

impl std::error::Error for Cause {}

impl From<RbdError> for StorageError {
    fn from(e: RbdError) -> Self {
        let kind = e.kind.storage_kind();
        let io_kind = e.kind.io_kind();
        StorageError { kind, context: e.message.clone(), source: Some(std::io::Error::new(io_kind, Cause(e))) }
    }
}

/// The [`RbdError`] inside a [`StorageError`] produced by this crate, if any.
pub fn rbd_error(e: &StorageError) -> Option<&RbdError> {
    e.source.as_ref()?.get_ref()?.downcast_ref::<Cause>().map(|c| &c.0)
}

/// The [`RbdErrorKind`] of a [`StorageError`] produced by this crate, if any.
pub fn rbd_error_kind(e: &StorageError) -> Option<RbdErrorKind> {
    rbd_error(e).map(|r| r.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        let cases = [
            (-libc::ETIMEDOUT, RbdErrorKind::Timeout, StorageErrorKind::Io),
            (-libc::EROFS, RbdErrorKind::NotWritable, StorageErrorKind::ReadOnly),
            (-libc::ESHUTDOWN, RbdErrorKind::Fenced, StorageErrorKind::ReadOnly),
            (-libc::ENOENT, RbdErrorKind::NotFound, StorageErrorKind::Io),
            (-libc::ENOSPC, RbdErrorKind::NoSpace, StorageErrorKind::NoSpace),
            (-libc::EDQUOT, RbdErrorKind::NoSpace, StorageErrorKind::NoSpace),
            (-libc::EOPNOTSUPP, RbdErrorKind::Unsupported, StorageErrorKind::Unsupported),
            (-libc::EACCES, RbdErrorKind::PermissionDenied, StorageErrorKind::Io),
            (-libc::EIO, RbdErrorKind::Other, StorageErrorKind::Io),
            (libc::ETIMEDOUT, RbdErrorKind::Timeout, StorageErrorKind::Io),
        ];
        for (rc, kind, skind) in cases {
            let e = RbdError::from_rc("op", i64::from(rc));
            assert_eq!(e.kind, kind, "rc {rc}");
            assert_eq!(e.errno, rc.abs());
            let s = StorageError::from(e.clone());
            assert_eq!(s.kind, skind, "rc {rc}");
            assert_eq!(rbd_error(&s), Some(&e));
            assert_eq!(s.context, "op");
            assert!(s.to_string().starts_with(&format!("{skind:?}: op: rbd {kind:?}, ")), "{s}");
        }
    }

    #[test]
    fn extreme_return_codes_do_not_panic() {
        for rc in [i64::MIN, i64::MAX, i64::from(i32::MIN), 0] {
            let e = RbdError::from_rc("x", rc);
            let _ = e.to_string();
            let _ = StorageError::from(e);
        }
        assert_eq!(RbdErrorKind::from_errno(i32::MIN), RbdErrorKind::Other);
    }

    #[test]
    fn local_errors_have_no_errno_suffix() {
        let e = RbdError::new(RbdErrorKind::LockedByOther, "image rbd/a is locked by 127.0.0.1:0/1");
        assert_eq!(e.to_string(), "image rbd/a is locked by 127.0.0.1:0/1");
        let s = StorageError::from(e);
        assert_eq!(s.kind, StorageErrorKind::ReadOnly);
        assert_eq!(rbd_error_kind(&s), Some(RbdErrorKind::LockedByOther));
        assert_eq!(rbd_error_kind(&StorageError::new(StorageErrorKind::Io, "x")), None);
    }
}
