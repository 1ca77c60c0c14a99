//! A logical unit: a block device over a [`Storage`] backend plus the state
//! SPC/SBC attach to it (mode parameters, unit attentions, range locks).

use crate::mode::ModeState;
use crate::nexus::Nexus;
use crate::reservation::{PrStateError, PrStore, Reservations};
use crate::sense::Asc;
use crate::ua::UnitAttentions;
use crate::wire::vpd::{Association, CodeSet, Designation, DesignatorType};
use oxcopy_copy::{RangeLocks, Unit, UnitId, WriteHook};
use oxcopy_storage::{Capabilities, Storage, StorageError};
use parking_lot::RwLock;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Largest data transfer of one command, bytes (MAXIMUM TRANSFER LENGTH in
/// VPD B0h is this divided by the block size).
pub const MAX_TRANSFER_BYTES: u32 = 16 << 20;
/// OPTIMAL TRANSFER LENGTH advertised, bytes.
pub const OPTIMAL_TRANSFER_BYTES: u32 = 1 << 20;

/// Static configuration of a logical unit, supplied by the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuConfig {
    /// Logical block size: 512 or 4096.
    pub block_size: u32,
    /// Every write-type command fails with DATA PROTECT / WRITE PROTECTED.
    pub read_only: bool,
    /// Unit serial number (VPD 80h), printable ASCII.
    pub serial: String,
    /// NAA 6 (IEEE Registered Extended) designator, 16 bytes, computed by the
    /// daemon from a stable per-LU identity.
    pub naa: [u8; 16],
    /// T10 vendor identification (8 characters used).
    pub vendor: String,
    /// Product identification (16 characters used).
    pub product: String,
    /// Product revision level (4 characters used).
    pub revision: String,
}

impl Default for LuConfig {
    fn default() -> Self {
        LuConfig {
            block_size: 512,
            read_only: false,
            serial: String::new(),
            naa: [0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            vendor: "OXCOPY".into(),
            product: "oxcopy disk".into(),
            revision: "0001".into(),
        }
    }
}

/// Logical block provisioning as reported by READ CAPACITY (16) and VPD B2h,
/// derived from the backend's capabilities ([`Provisioning::derive`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Provisioning {
    /// LBPME: logical block provisioning management enabled.
    pub lbpme: bool,
    /// LBPRZ: unmapped blocks read as zeroes.
    pub lbprz: bool,
    /// LBPU: UNMAP supported.
    pub lbpu: bool,
    /// LBPWS: WRITE SAME (16) with UNMAP supported.
    pub lbpws: bool,
    /// LBPWS10: WRITE SAME (10) with UNMAP supported.
    pub lbpws10: bool,
}

impl Provisioning {
    /// The provisioning an LU reports, derived from its backend's capabilities.
    pub(crate) fn derive(caps: Capabilities, read_only: bool) -> Provisioning {
        let thin = caps.discard && !read_only;
        Provisioning { lbpme: thin, lbprz: thin && caps.discard_zeroes, lbpu: thin, lbpws: thin, lbpws10: thin }
    }
}

/// One logical unit.
pub struct LogicalUnit {
    cfg: LuConfig,
    storage: Arc<dyn Storage>,
    /// Grows with [`LogicalUnit::grow`], never shrinks.
    num_blocks: AtomicU64,
    pub(crate) mode: ModeState,
    pub(crate) ua: UnitAttentions,
    locks: RangeLocks,
    third_party_copy: AtomicBool,
    write_hook: RwLock<Option<Arc<dyn WriteHook>>>,
    provisioning: Provisioning,
    /// SPC-2 and persistent reservations.
    pub(crate) pr: Reservations,
}

impl fmt::Debug for LogicalUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogicalUnit")
            .field("serial", &self.cfg.serial)
            .field("block_size", &self.cfg.block_size)
            .field("num_blocks", &self.num_blocks())
            .field("read_only", &self.cfg.read_only)
            .finish_non_exhaustive()
    }
}

impl LogicalUnit {
    /// Build an LU. A block size other than 512 or 4096 is replaced by 512
    /// (the daemon validates configuration; this keeps the model total).
    /// Trailing bytes of the store beyond a whole block are not addressable.
    pub fn new(cfg: LuConfig, storage: Arc<dyn Storage>) -> Self {
        let mut cfg = cfg;
        if cfg.block_size != 512 && cfg.block_size != 4096 {
            tracing::warn!(block_size = cfg.block_size, "unsupported block size, using 512");
            cfg.block_size = 512;
        }
        let num_blocks = storage.len() / u64::from(cfg.block_size);
        let provisioning = Provisioning::derive(storage.capabilities(), cfg.read_only);
        LogicalUnit {
            cfg,
            storage,
            num_blocks: AtomicU64::new(num_blocks),
            mode: ModeState::default(),
            ua: UnitAttentions::default(),
            locks: RangeLocks::new(),
            third_party_copy: AtomicBool::new(true),
            write_hook: RwLock::new(None),
            provisioning,
            pr: Reservations::default(),
        }
    }

    /// Logical block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.cfg.block_size
    }

    /// Number of addressable logical blocks.
    pub fn num_blocks(&self) -> u64 {
        self.num_blocks.load(Ordering::Acquire)
    }

    /// Grow the LU to `new_bytes` (a whole number of blocks): the backend
    /// first, then the capacity commands see, then CAPACITY DATA HAS CHANGED
    /// (2Ah/09h) for every nexus that has used the LU. The capacity only
    /// grows, so range checks of commands in flight stay valid. Returns the
    /// new number of blocks.
    pub fn grow(&self, new_bytes: u64) -> Result<u64, StorageError> {
        let bs = u64::from(self.cfg.block_size);
        let blocks = new_bytes / bs;
        if blocks <= self.num_blocks() {
            return Ok(self.num_blocks());
        }
        self.storage.grow(blocks * bs)?;
        self.num_blocks.fetch_max(blocks, Ordering::AcqRel);
        self.ua.establish_all(Asc::CAPACITY_DATA_HAS_CHANGED, None);
        Ok(self.num_blocks())
    }

    /// Make every nexus known to `old` (an LU this one replaces at the same
    /// LUN) known here too, so conditions established for "every nexus"
    /// reach the initiators that used the LUN before.
    pub fn adopt_nexuses(&self, old: &LogicalUnit) {
        self.ua.adopt(&old.ua);
    }

    /// The NAA 6 designator (VPD 83h), also the copy manager's lookup key.
    pub fn naa(&self) -> [u8; 16] {
        self.cfg.naa
    }

    /// The LU-associated designators of page 83h as (byte 0, byte 1, value):
    /// what identifies the LU wherever it is reached, and what EXTENDED COPY
    /// identification CSCDs are matched against (through the registry).
    pub(crate) fn designators(&self) -> Vec<(u8, u8, Vec<u8>)> {
        let id = self.naa();
        let naa = Designation::new(None, CodeSet::BINARY, Association::LOGICAL_UNIT, DesignatorType::NAA, &id);
        vec![(naa.code_set, naa.assoc_type, naa.value.to_vec())]
    }

    /// MAXIMUM TRANSFER LENGTH in blocks of this LU.
    pub(crate) fn max_transfer_blocks(&self) -> u64 {
        u64::from(MAX_TRANSFER_BYTES / self.block_size())
    }

    /// Configuration as given.
    pub fn config(&self) -> &LuConfig {
        &self.cfg
    }

    /// The backend.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The LU's range-lock table.
    pub fn range_locks(&self) -> &RangeLocks {
        &self.locks
    }

    /// Make completed writes durable.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.storage.flush()
    }

    /// True when writes must fail: configured read-only or SWP set in the
    /// Control mode page.
    pub fn write_protected(&self) -> bool {
        self.cfg.read_only || self.mode.swp()
    }

    /// Whether the LU advertises its copy manager (INQUIRY 3PC bit, VPD
    /// 8Fh). On by default: every LU can take part in EXTENDED COPY.
    pub fn third_party_copy(&self) -> bool {
        self.third_party_copy.load(Ordering::Relaxed)
    }

    /// Turn the 3PC advertisement on or off.
    pub fn set_third_party_copy(&self, on: bool) {
        self.third_party_copy.store(on, Ordering::Relaxed);
    }

    /// Run the write hook, if any, before `blocks` blocks at `lba` are
    /// overwritten (the caller holds their exclusive range lock).
    pub(crate) fn before_write(&self, lba: u64, blocks: u64) -> Result<(), oxcopy_copy::Refusal> {
        match self.write_hook() {
            Some(hook) => hook.before_write(self, lba, blocks),
            None => Ok(()),
        }
    }

    /// Whether [`LogicalUnit::before_write`] may have work to do (and wait)
    /// for that write.
    pub(crate) fn write_hook_would_act(&self, lba: u64, blocks: u64) -> bool {
        self.write_hook().is_some_and(|hook| hook.would_act(self, lba, blocks))
    }

    /// Provisioning state reported to initiators.
    pub fn provisioning(&self) -> Provisioning {
        self.provisioning
    }

    /// Establish a unit attention for every I_T nexus that has used this LU
    /// (e.g. CAPACITY DATA HAS CHANGED after a resize).
    pub fn establish_unit_attention(&self, asc: Asc) {
        self.ua.establish_all(asc, None);
    }

    /// Unit attentions pending for `nexus`, oldest first.
    pub fn pending_unit_attentions(&self, nexus: &Nexus) -> Vec<Asc> {
        self.ua.peek(nexus)
    }

    /// LOGICAL UNIT RESET effects (SAM-5 §6.3.3): mode parameters back to
    /// their defaults (we save none) and the given reset condition for every
    /// known nexus.
    pub(crate) fn reset(&self, asc: Asc) {
        self.mode.reset();
        self.pr.reset(); // SPC-2 reservations end; persistent ones stay
        self.ua.reset_all(asc);
    }

    /// Whether `nexus` reading (`write` false) or writing this LU now would
    /// meet RESERVATION CONFLICT: for the copy manager, which touches LUs
    /// other than the one its command addressed.
    pub fn reservation_conflict(&self, nexus: &Nexus, write: bool) -> bool {
        self.pr.access_conflict(nexus, write)
    }

    /// Keep persistent reservations in `store` while a registration asks
    /// for APTPL (PTPL_C=1 from now on), and restore what it holds. Returns
    /// whether registrations were restored. On error nothing is restored
    /// and the store stays attached (the next change overwrites it).
    pub fn attach_pr_store(&self, store: Arc<dyn PrStore>) -> Result<bool, PrStateError> {
        self.pr.attach_store(store)
    }
}

/// The copy engine's view of a logical unit.
impl Unit for LogicalUnit {
    fn id(&self) -> UnitId {
        self.cfg.naa
    }
    fn block_size(&self) -> u32 {
        self.cfg.block_size
    }
    fn num_blocks(&self) -> u64 {
        LogicalUnit::num_blocks(self)
    }
    fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }
    fn range_locks(&self) -> &RangeLocks {
        &self.locks
    }
    fn write_protected(&self) -> bool {
        LogicalUnit::write_protected(self)
    }
    fn write_hook(&self) -> Option<Arc<dyn WriteHook>> {
        self.write_hook.read().clone()
    }
    /// The token layer keeps its own hook installed (chaining any hook it
    /// finds), re-installing it at the next POPULATE TOKEN if replaced; a
    /// replacement should call the hook it replaces, or point-in-time tokens
    /// miss the writes in between.
    fn set_write_hook(&self, hook: Option<Arc<dyn WriteHook>>) {
        *self.write_hook.write() = hook;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_follows_capabilities() {
        let caps = Capabilities { discard: true, discard_zeroes: true, ..Default::default() };
        let p = Provisioning::derive(caps, false);
        assert!(p.lbpme && p.lbprz && p.lbpu && p.lbpws && p.lbpws10);
        assert_eq!(Provisioning::derive(caps, true), Provisioning::default());
        assert_eq!(Provisioning::derive(Capabilities::default(), false), Provisioning::default());
        let p = Provisioning::derive(Capabilities { discard: true, ..Default::default() }, false);
        assert!(p.lbpme && !p.lbprz);
    }
}
