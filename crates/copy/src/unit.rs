//! What the engine needs of a block device. A SCSI logical unit implements
//! [`Unit`] today; an NVMe namespace or a stacked volume will too.

use crate::error::Refusal;
use crate::lock::RangeLocks;
use oxcopy_storage::{CopyReport, Storage};
use std::fmt;
use std::sync::Arc;

/// A unit's stable identifier (its NAA designator for SCSI, NGUID for NVMe):
/// the key of copy records, the creator named in ROD tokens and the first
/// half of the global lock order.
pub type UnitId = [u8; 16];

/// A block device the engine copies from and to.
pub trait Unit: Send + Sync + fmt::Debug {
    /// Stable identifier.
    fn id(&self) -> UnitId;
    /// Logical block size, bytes.
    fn block_size(&self) -> u32;
    /// Addressable blocks.
    fn num_blocks(&self) -> u64;
    /// The backend.
    fn storage(&self) -> &Arc<dyn Storage>;
    /// The unit's range-lock table: every write holds an exclusive lock on
    /// its blocks, every read a shared one.
    fn range_locks(&self) -> &RangeLocks;
    /// Whether writes must fail now.
    fn write_protected(&self) -> bool;
    /// The installed write hook, if any.
    fn write_hook(&self) -> Option<Arc<dyn WriteHook>>;
    /// Install (or remove) the write hook.
    fn set_write_hook(&self, hook: Option<Arc<dyn WriteHook>>);

    /// Capacity in bytes.
    fn capacity(&self) -> u64 {
        self.num_blocks().saturating_mul(u64::from(self.block_size()))
    }
}

/// Whether two units are the same object.
pub fn same_unit(a: &dyn Unit, b: &dyn Unit) -> bool {
    std::ptr::addr_eq(a as *const dyn Unit, b as *const dyn Unit)
}

/// Called with the exclusive range lock held, before any write reaches a
/// unit's storage — host writes and copies alike. Point-in-time tokens
/// preserve old blocks here; a refusal fails the write with the hook's reason.
pub trait WriteHook: Send + Sync + fmt::Debug {
    /// Runs before `blocks` blocks at `lba` of `unit` are overwritten.
    fn before_write(&self, unit: &dyn Unit, lba: u64, blocks: u64) -> Result<(), Refusal>;

    /// Whether [`WriteHook::before_write`] would have anything to do for
    /// that write (and so may wait): a transport runs a short write inline
    /// only when it would not. Default: it would.
    fn would_act(&self, unit: &dyn Unit, lba: u64, blocks: u64) -> bool {
        let _ = (unit, lba, blocks);
        true
    }
}

/// Where the engine reports what it did (a front end's metrics).
pub trait CopyMetrics: Send + Sync + fmt::Debug {
    /// Bytes moved, per method.
    fn copied(&self, report: &CopyReport);
    /// Live ROD tokens now.
    fn rod_tokens(&self, live: usize);
    /// Bytes charged to point-in-time tokens now.
    fn rod_snapshot_bytes(&self, bytes: u64);
}

/// Metrics that go nowhere (tests, tools).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMetrics;

impl CopyMetrics for NoMetrics {
    fn copied(&self, _: &CopyReport) {}
    fn rod_tokens(&self, _: usize) {}
    fn rod_snapshot_bytes(&self, _: u64) {}
}
