//! Stand-in for builds without the cargo feature `ceph`.

use oxcopy_storage::{Capabilities, Result, Storage, StorageError};

use crate::error::{RbdError, RbdErrorKind};
use crate::RbdOptions;

/// Built without Ceph support: [`RbdStorage::open`] always fails. (Rebuild
/// with `--features ceph`, which needs librbd-dev and librados-dev.)
#[derive(Debug)]
pub struct RbdStorage {
    never: std::convert::Infallible,
}

impl RbdStorage {
    /// Always fails with [`RbdErrorKind::NoCephSupport`].
    pub fn open(opts: &RbdOptions) -> Result<RbdStorage> {
        Err(StorageError::from(RbdError::new(
            RbdErrorKind::NoCephSupport,
            format!(
                "cannot open RBD image {}/{}: built without Ceph support (cargo feature `ceph`)",
                opts.pool, opts.image
            ),
        )))
    }
}

impl RbdStorage {
    /// Unreachable: no stub storage exists.
    pub fn name(&self) -> &str {
        match self.never {}
    }
    /// Unreachable: no stub storage exists.
    pub fn cluster_fsid(&self) -> [u8; 16] {
        match self.never {}
    }
    /// Unreachable: no stub storage exists.
    pub fn open_located(&self, _locator: &[u8; 32], _bytes: u64) -> Result<std::sync::Arc<dyn Storage>> {
        match self.never {}
    }
    /// Unreachable: no stub storage exists.
    pub fn remove_orphan_snapshots(&self, _stop: &dyn Fn() -> bool) -> Result<usize> {
        match self.never {}
    }
}

impl Storage for RbdStorage {
    fn len(&self) -> u64 {
        match self.never {}
    }
    fn read_at(&self, _buf: &mut [u8], _offset: u64) -> Result<()> {
        match self.never {}
    }
    fn write_at(&self, _buf: &[u8], _offset: u64) -> Result<()> {
        match self.never {}
    }
    fn flush(&self) -> Result<()> {
        match self.never {}
    }
    fn capabilities(&self) -> Capabilities {
        match self.never {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_says_why() {
        let e = RbdStorage::open(&RbdOptions::new("/etc/ceph/ceph.conf", "rbd", "lun0")).expect_err("stub");
        assert_eq!(e.kind, oxcopy_storage::StorageErrorKind::Unsupported);
        assert_eq!(crate::rbd_error_kind(&e), Some(RbdErrorKind::NoCephSupport));
        assert!(e.to_string().contains("built without Ceph support (cargo feature `ceph`)"), "{e}");
    }
}
