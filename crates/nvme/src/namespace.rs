//! A namespace: what the controller reports ([`NamespaceInfo`]) and the
//! copy-engine [`Unit`] its blocks live in.
//!
//! The unit may be a SCSI logical unit serving the same file over iSCSI:
//! both protocols then share its range locks and its write hook, so an NVMe
//! write takes the same locks as a SCSI one and point-in-time ROD tokens see
//! NVMe writes too. A namespace that shares no file with a LUN uses an
//! [`NsUnit`], a plain unit over a [`Storage`].

use crate::model::{CopyLimits, NamespaceInfo};
use oxcopy_copy::{RangeLocks, Unit, UnitId, WriteHook};
use oxcopy_storage::Storage;
use parking_lot::RwLock;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why a namespace could not be built over a unit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamespaceError {
    /// The namespace and its unit disagree on the block size.
    #[error("namespace block size {info} differs from the unit's {unit}")]
    BlockSize {
        /// The namespace's.
        info: u32,
        /// The unit's.
        unit: u32,
    },
    /// The namespace is larger than its unit.
    #[error("namespace of {info} blocks on a unit of {unit} blocks")]
    TooLarge {
        /// The namespace's size, blocks.
        info: u64,
        /// The unit's, blocks.
        unit: u64,
    },
    /// Block size other than 512 or 4096 bytes.
    #[error("unsupported block size {0}")]
    UnsupportedBlockSize(u32),
    /// NSID 0 and FFFFFFFFh are not namespace identifiers.
    #[error("invalid namespace identifier {0:#x}")]
    InvalidNsid(u32),
    /// Copy limits Identify cannot advertise: MSSRL 0, MCL below MSSRL
    /// (NVM Command Set: MCL ≥ MSSRL), or a range count outside 1..=256.
    #[error("copy limits {0:?} cannot be advertised")]
    CopyLimits(CopyLimits),
}

/// One namespace of a subsystem.
#[derive(Debug, Clone)]
pub struct Namespace {
    /// What the controller reports (Identify Namespace).
    pub info: NamespaceInfo,
    /// Where its blocks live.
    pub unit: Arc<dyn Unit>,
}

impl Namespace {
    /// A namespace over `unit`; its block size must be the unit's, and it
    /// may not be larger than the unit.
    pub fn new(info: NamespaceInfo, unit: Arc<dyn Unit>) -> Result<Self, NamespaceError> {
        if info.nsid == 0 || info.nsid == u32::MAX {
            return Err(NamespaceError::InvalidNsid(info.nsid));
        }
        if info.block_size != 512 && info.block_size != 4096 {
            return Err(NamespaceError::UnsupportedBlockSize(info.block_size));
        }
        if info.block_size != unit.block_size() {
            return Err(NamespaceError::BlockSize { info: info.block_size, unit: unit.block_size() });
        }
        if info.blocks > unit.num_blocks() {
            return Err(NamespaceError::TooLarge { info: info.blocks, unit: unit.num_blocks() });
        }
        let c = info.copy;
        if c.mssrl == 0 || c.mcl < u32::from(c.mssrl) || c.max_ranges == 0 || c.max_ranges > 256 {
            return Err(NamespaceError::CopyLimits(c));
        }
        Ok(Self { info, unit })
    }

    /// What Identify Namespace reports.
    pub fn info(&self) -> &NamespaceInfo {
        &self.info
    }

    /// The copy limits Identify Namespace advertises (MSSRL, MCL, MSRC) —
    /// the same numbers Copy enforces.
    pub fn copy_limits(&self) -> CopyLimits {
        self.info.copy
    }

    /// Namespace ID.
    pub fn nsid(&self) -> u32 {
        self.info.nsid
    }

    /// Logical block size, bytes.
    pub fn block_size(&self) -> u32 {
        self.info.block_size
    }

    /// Size in blocks.
    pub fn blocks(&self) -> u64 {
        self.info.blocks
    }

    /// Whether writes fail now: configured read-only, or the unit is write
    /// protected (a LUN's software write protect, say).
    pub fn write_protected(&self) -> bool {
        self.info.read_only || self.unit.write_protected()
    }
}

/// A unit of its own for a namespace that shares no file with a LUN: an
/// [`Arc<dyn Storage>`] with its own range locks, write-hook slot and
/// write-protect flag; its id is the namespace's NGUID.
pub struct NsUnit {
    id: UnitId,
    block_size: u32,
    storage: Arc<dyn Storage>,
    locks: RangeLocks,
    hook: RwLock<Option<Arc<dyn WriteHook>>>,
    read_only: AtomicBool,
}

impl fmt::Debug for NsUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NsUnit")
            .field("id", &self.id)
            .field("block_size", &self.block_size)
            .field("blocks", &self.num_blocks())
            .field("read_only", &self.read_only.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl NsUnit {
    /// A unit over `storage` with blocks of `block_size` bytes (512 or
    /// 4096; anything else is replaced by 512, as for LUNs) and id `nguid`.
    /// Trailing bytes past the last whole block are not addressable.
    pub fn new(nguid: UnitId, block_size: u32, storage: Arc<dyn Storage>) -> Self {
        let block_size = if block_size == 4096 { 4096 } else { 512 };
        Self {
            id: nguid,
            block_size,
            storage,
            locks: RangeLocks::new(),
            hook: RwLock::new(None),
            read_only: AtomicBool::new(false),
        }
    }

    /// Refuse (or allow again) writes.
    pub fn set_write_protected(&self, on: bool) {
        self.read_only.store(on, Ordering::Release);
    }
}

impl Unit for NsUnit {
    fn id(&self) -> UnitId {
        self.id
    }
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn num_blocks(&self) -> u64 {
        self.storage.len() / u64::from(self.block_size)
    }
    fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }
    fn range_locks(&self) -> &RangeLocks {
        &self.locks
    }
    fn write_protected(&self) -> bool {
        self.read_only.load(Ordering::Acquire)
    }
    fn write_hook(&self) -> Option<Arc<dyn WriteHook>> {
        self.hook.read().clone()
    }
    fn set_write_hook(&self, hook: Option<Arc<dyn WriteHook>>) {
        *self.hook.write() = hook;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcopy_storage::MemStorage;

    fn info(nsid: u32, bs: u32, blocks: u64) -> NamespaceInfo {
        NamespaceInfo {
            nsid,
            block_size: bs,
            blocks,
            nguid: [nsid as u8; 16],
            uuid: [0; 16],
            read_only: false,
            deallocate: true,
            copy: CopyLimits::default(),
        }
    }

    #[test]
    fn namespace_checks_its_unit() {
        let unit: Arc<dyn Unit> = Arc::new(NsUnit::new([1; 16], 512, Arc::new(MemStorage::new(512 * 10 + 7))));
        assert_eq!(unit.num_blocks(), 10);
        assert!(Namespace::new(info(1, 512, 10), unit.clone()).is_ok());
        assert_eq!(
            Namespace::new(info(1, 512, 11), unit.clone()).unwrap_err(),
            NamespaceError::TooLarge { info: 11, unit: 10 }
        );
        assert!(matches!(Namespace::new(info(1, 4096, 1), unit.clone()), Err(NamespaceError::BlockSize { .. })));
        assert!(matches!(Namespace::new(info(0, 512, 1), unit.clone()), Err(NamespaceError::InvalidNsid(0))));
        assert!(matches!(
            Namespace::new(info(1, 1024, 1), unit.clone()),
            Err(NamespaceError::UnsupportedBlockSize(1024))
        ));
        for copy in [
            CopyLimits { mssrl: 0, mcl: 1, max_ranges: 1 },
            CopyLimits { mssrl: 8, mcl: 7, max_ranges: 1 },
            CopyLimits { mssrl: 8, mcl: 8, max_ranges: 0 },
            CopyLimits { mssrl: 8, mcl: 8, max_ranges: 257 },
        ] {
            let i = NamespaceInfo { copy, ..info(1, 512, 10) };
            assert_eq!(Namespace::new(i, unit.clone()).unwrap_err(), NamespaceError::CopyLimits(copy));
        }
        assert!(Namespace::new(NamespaceInfo { copy: CopyLimits::default(), ..info(1, 512, 10) }, unit).is_ok());
    }

    #[test]
    fn write_protection_from_either_side() {
        let u = Arc::new(NsUnit::new([1; 16], 512, Arc::new(MemStorage::new(4096))));
        let ns = Namespace::new(info(1, 512, 8), u.clone()).unwrap();
        assert!(!ns.write_protected());
        u.set_write_protected(true);
        assert!(ns.write_protected());
        u.set_write_protected(false);
        let mut i = info(1, 512, 8);
        i.read_only = true;
        assert!(Namespace::new(i, u).unwrap().write_protected());
    }
}
