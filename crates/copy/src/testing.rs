//! Test units over memory.

use crate::lock::RangeLocks;
use crate::unit::{Unit, UnitId, WriteHook};
use oxcopy_storage::{MemStorage, Storage};
use parking_lot::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A unit over any storage, for the engine's own tests.
#[derive(Debug)]
pub(crate) struct TestUnit {
    pub id: UnitId,
    pub block_size: u32,
    pub storage: Arc<dyn Storage>,
    pub locks: RangeLocks,
    pub hook: RwLock<Option<Arc<dyn WriteHook>>>,
    pub read_only: AtomicBool,
}

impl Unit for TestUnit {
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
        self.read_only.load(Ordering::Relaxed)
    }
    fn write_hook(&self) -> Option<Arc<dyn WriteHook>> {
        self.hook.read().clone()
    }
    fn set_write_hook(&self, hook: Option<Arc<dyn WriteHook>>) {
        *self.hook.write() = hook;
    }
}

/// A unit of `bytes` patterned bytes with block size `bs` and id ending in `last`.
pub(crate) fn mem_unit(bytes: usize, bs: u32, last: u8) -> (Arc<TestUnit>, Arc<MemStorage>) {
    let mut id = [0x60; 16];
    id[15] = last;
    let m = Arc::new(MemStorage::from_bytes(&oxcopy_testkit::pattern(u64::from(last), bytes)));
    let u = TestUnit {
        id,
        block_size: bs,
        storage: m.clone(),
        locks: RangeLocks::new(),
        hook: RwLock::new(None),
        read_only: AtomicBool::new(false),
    };
    (Arc::new(u), m)
}
