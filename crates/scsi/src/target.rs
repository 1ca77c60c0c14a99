//! A SCSI target device (one iSCSI target): its LUNs, command dispatch and
//! task management effects.

use crate::cdb::{byte, DataDir};
use crate::commands::{self, Lookup, COMMANDS};
use crate::exec::{served_by, Command, Ctx, Done, Fail, Request, TargetView};
use crate::lu::LogicalUnit;
use crate::lun::decode_lun;
use crate::metrics::LunCounters;
use crate::nexus::Nexus;
use crate::pr;
use crate::registry::{AccessList, LuRegistry};
use crate::result::{CommandResult, ScsiStatus};
use crate::sbc;
use crate::sense::{Asc, Sense, SenseKey};
use parking_lot::RwLock;
use std::sync::Arc;

/// What the command table says about a CDB (for the transport: direction
/// checks against the PDU's R/W bits, logging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandInfo {
    /// Command name as in the standard, e.g. "WRITE (10)".
    pub name: &'static str,
    /// Data phase direction.
    pub dir: DataDir,
    /// CDB length the command uses.
    pub cdb_len: usize,
}

/// Look a CDB up in the command table; `None` when unsupported.
pub fn command_info(cdb: &[u8]) -> Option<CommandInfo> {
    match commands::lookup(*cdb.first()?, byte(cdb, 1)) {
        Lookup::Found(t) => Some(CommandInfo { name: t.name, dir: t.dir, cdb_len: t.len() }),
        _ => None,
    }
}

/// Outcome of a task management function, as far as the SCSI layer is
/// concerned (the transport maps it to its response codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmfResult {
    Complete,
    LunDoesNotExist,
    Rejected,
}

/// A target device: a name, the portal group it was configured with, and a
/// set of logical units (shared: the same LU may sit behind several targets
/// and in the daemon's registry).
///
/// Its LUNs come from the daemon-wide [`LuRegistry`], which it keeps an
/// `Arc` to for everything that crosses targets (copy CSCDs, copy records,
/// metrics); the LUN table is copied out at construction, and again by
/// [`ScsiTarget::refresh`] after a reconfiguration, so the per-command lookup
/// stays a binary search in an immutable table (taken once per command: a
/// command runs to its end on the table it started with).
#[derive(Debug)]
pub struct ScsiTarget {
    name: String,
    tpgt: u16,
    table: RwLock<Arc<LunTable>>,
    registry: Arc<LuRegistry>,
}

/// The LUNs of a target at one point in time.
#[derive(Debug, Default)]
struct LunTable {
    /// Sorted by LUN number, unique.
    luns: Vec<(u16, Arc<LogicalUnit>)>,
    /// Per-LUN metric handles, parallel to `luns`.
    counters: Vec<LunCounters>,
    /// LUN masking, parallel to `luns`: which initiators see each LUN.
    masks: Vec<AccessList>,
}

impl LunTable {
    fn from_registry(name: &str, registry: &LuRegistry) -> LunTable {
        let luns = registry.target_luns(name);
        let counters = luns.iter().map(|(id, _)| registry.metrics().lun(name, *id)).collect();
        let masks = luns.iter().map(|(id, _)| registry.lun_access(name, *id)).collect();
        LunTable { luns, counters, masks }
    }

    fn lu(&self, id: u16) -> Option<&Arc<LogicalUnit>> {
        self.luns.binary_search_by_key(&id, |(i, _)| *i).ok().map(|i| &self.luns[i].1)
    }

    fn lun_ids_for(&self, initiator: &str) -> Vec<u16> {
        self.luns.iter().zip(&self.masks).filter(|(_, m)| m.admits(initiator)).map(|((id, _), _)| *id).collect()
    }

    fn visible_index(&self, nexus: &Nexus, lun: [u8; 8]) -> Option<usize> {
        let i = decode_lun(lun).and_then(|id| self.luns.binary_search_by_key(&id, |(i, _)| *i).ok())?;
        self.masks.get(i).is_none_or(|m| m.admits(&nexus.initiator_name)).then_some(i)
    }
}

/// What the handlers of one command see of the target: its LUN table as
/// the command found it.
struct View<'a> {
    target: &'a ScsiTarget,
    table: &'a LunTable,
}

/// READ (6/10/12/16): counted as reads in the per-LUN metrics.
fn is_read(op: u8) -> bool {
    matches!(op, 0x08 | 0x28 | 0xA8 | 0x88)
}

/// WRITE (6/10/12/16).
fn is_write(op: u8) -> bool {
    matches!(op, 0x0A | 0x2A | 0xAA | 0x8A)
}

/// The CDB length of a READ or WRITE opcode (see [`is_read`], [`is_write`]).
fn rw_cdb_len(op: u8) -> usize {
    match op {
        0x08 | 0x0A => 6,
        0x28 | 0x2A => 10,
        0xA8 | 0xAA => 12,
        _ => 16,
    }
}

/// `dispatch` without `nowait` always runs the command, so this is never
/// called; should it be, the command fails instead of the daemon.
#[cold]
fn not_run() -> CommandResult {
    finish(None, Err(Sense::new(SenseKey::HARDWARE_ERROR, Asc::INTERNAL_TARGET_FAILURE).into()), 0)
}

impl ScsiTarget {
    /// A stand-alone target with its own private `registry` (any initiator
    /// admitted): copies stay among these LUNs. Duplicate LUN numbers keep
    /// the first LU; numbers above [`MAX_LUN`] are dropped (both logged).
    pub fn new(name: &str, tpgt: u16, luns: Vec<(u16, Arc<LogicalUnit>)>, registry: LuRegistry) -> Self {
        let registry = Arc::new(registry);
        if let Err(e) = registry.add_target(name, AccessList::Any, luns) {
            tracing::warn!(error = %e, "registering a stand-alone target");
        }
        Self::in_registry(name, tpgt, registry)
    }

    /// The target `name` of `registry` (no LUNs when it is not registered).
    pub fn in_registry(name: &str, tpgt: u16, registry: Arc<LuRegistry>) -> Self {
        let table = RwLock::new(Arc::new(LunTable::from_registry(name, &registry)));
        ScsiTarget { name: name.to_owned(), tpgt, table, registry }
    }

    /// Take the target's LUNs and masks from the registry again (after a
    /// reconfiguration changed them there). Commands already running finish
    /// on the table they started with; a target no longer registered has no
    /// LUNs.
    pub fn refresh(&self) {
        let table = Arc::new(LunTable::from_registry(&self.name, &self.registry));
        *self.table.write() = table;
    }

    fn table(&self) -> Arc<LunTable> {
        self.table.read().clone()
    }

    /// The daemon-wide registry this target belongs to.
    pub fn registry(&self) -> &Arc<LuRegistry> {
        &self.registry
    }

    /// The target's iSCSI name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The portal group tag it was built with.
    pub fn tpgt(&self) -> u16 {
        self.tpgt
    }

    /// LUN numbers, ascending.
    pub fn lun_ids(&self) -> Vec<u16> {
        self.table().luns.iter().map(|(id, _)| *id).collect()
    }

    /// The LU with LUN number `id`.
    pub fn lu(&self, id: u16) -> Option<Arc<LogicalUnit>> {
        self.table().lu(id).cloned()
    }

    /// LUN numbers `initiator` sees (LUN masking applied), ascending.
    pub fn lun_ids_for(&self, initiator: &str) -> Vec<u16> {
        self.table().lun_ids_for(initiator)
    }

    /// Whether a raw SAM LUN addresses one of our LUs.
    pub fn lun_exists(&self, lun: [u8; 8]) -> bool {
        self.lu_raw(lun).is_some()
    }

    /// Whether a raw SAM LUN addresses one of our LUs that `nexus` sees
    /// (not masked from its initiator).
    pub fn lun_visible(&self, nexus: &Nexus, lun: [u8; 8]) -> bool {
        self.table().visible_index(nexus, lun).is_some()
    }

    fn lu_raw(&self, lun: [u8; 8]) -> Option<Arc<LogicalUnit>> {
        decode_lun(lun).and_then(|id| self.lu(id))
    }

    /// Execute one command. Never panics for any input bytes.
    ///
    /// Order of checks: LUN (LOGICAL UNIT NOT SUPPORTED except for INQUIRY,
    /// REPORT LUNS, REQUEST SENSE; a LUN masked from the initiator does not
    /// exist for it),
    /// REPORT LUNS, REQUEST SENSE), operation code, pending unit attention
    /// (not for those three), CDB length and reserved bits, reservations,
    /// then the command itself.
    pub fn execute(&self, req: &Request<'_>) -> CommandResult {
        let r = self.dispatch(req, false).unwrap_or_else(not_run);
        if r.status == ScsiStatus::CHECK_CONDITION && tracing::enabled!(tracing::Level::DEBUG) {
            log_check_condition(&self.name, req, r.sense.as_deref());
        }
        r
    }

    /// Execute `req` only if that needs no waiting, so that a transport can
    /// answer it on the thread that received it: a READ whose range no
    /// write holds and whose blocks are all in memory (the page cache); a
    /// short WRITE that needs no flush and that the storage takes without
    /// waiting (see `sbc::try_write`); or a READ or WRITE that ends before
    /// its handler (unknown LUN, unit attention, bad CDB, reservation
    /// conflict). `None`: it would wait, or it is neither a READ nor a
    /// WRITE; nothing was done (no unit attention taken, no byte written)
    /// and the caller runs [`ScsiTarget::execute`] where waiting is
    /// allowed.
    pub fn try_execute(&self, req: &Request<'_>) -> Option<CommandResult> {
        let r = self.dispatch(req, true)?;
        if r.status == ScsiStatus::CHECK_CONDITION && tracing::enabled!(tracing::Level::DEBUG) {
            log_check_condition(&self.name, req, r.sense.as_deref());
        }
        Some(r)
    }

    /// Check and run a command; with `nowait`, only a READ is run and only
    /// if it needs no waiting (`None` otherwise, before any side effect).
    fn dispatch(&self, req: &Request<'_>, nowait: bool) -> Option<CommandResult> {
        if nowait && !req.cdb.first().is_some_and(|&op| is_read(op) || is_write(op)) {
            return None;
        }
        let table = self.table();
        let view = View { target: self, table: &table };
        let idx = table.visible_index(req.nexus, req.lun);
        let lu = idx.map(|i| &*table.luns[i].1);
        let bs = lu.map_or(512, |l| l.block_size());
        let cdb = req.cdb;
        let Some(&op) = cdb.first() else {
            return Some(finish(lu, Err(Sense::illegal(Asc::INVALID_COMMAND_OPERATION_CODE).into()), 0));
        };
        let lookup = commands::lookup(op, byte(cdb, 1));
        let template = match lookup {
            Lookup::Found(t) => Some(t),
            _ => None,
        };
        let wanted = template.map_or(0, |t| t.out_len.wanted(cdb, bs));
        if lu.is_none() && !template.is_some_and(|t| t.lu_optional) {
            return Some(finish(lu, Err(Sense::illegal(Asc::LOGICAL_UNIT_NOT_SUPPORTED).into()), wanted));
        }
        let t = match lookup {
            Lookup::Found(t) if served_by(t, lu) => t,
            Lookup::Found(_) | Lookup::UnknownOpcode => {
                let s = Sense::illegal(Asc::INVALID_COMMAND_OPERATION_CODE);
                return Some(finish(lu, Err(s.into()), wanted));
            }
            Lookup::UnknownServiceAction => {
                return Some(finish(lu, Err(Sense::invalid_cdb_field(1, Some(4)).into()), wanted));
            }
        };
        if let Some(lu) = lu {
            if let Some(asc) = lu.ua.next(req.nexus, !t.ua_exempt) {
                let s = Sense::new(SenseKey::UNIT_ATTENTION, asc);
                return Some(finish(Some(lu), Err(s.into()), wanted));
            }
        }
        let Some(cdb) = cdb.get(..t.len()) else {
            return Some(finish(lu, Err(Sense::illegal(Asc::INVALID_FIELD_IN_CDB).into()), wanted));
        };
        if let Err(s) = t.check_reserved_bits(cdb) {
            return Some(finish(lu, Err(s.into()), wanted));
        }
        if let Some(lu) = lu {
            if let Err(f) = pr::check(lu, req.nexus, t, cdb) {
                return Some(finish(Some(lu), Err(f), wanted));
            }
        }
        let ctx = Ctx { target: &view, lu, req, cdb, pr_epoch: lu.map_or(0, |l| l.pr.abort_epoch()) };
        let r = match nowait {
            false => (t.handler)(&ctx),
            true if is_read(t.opcode.0) => sbc::try_read(&ctx, rw_cdb_len(t.opcode.0))?,
            true => sbc::try_write(&ctx, rw_cdb_len(t.opcode.0))?,
        };
        if let (Some(c), Ok(d)) = (idx.and_then(|i| table.counters.get(i)), &r) {
            if d.status == ScsiStatus::GOOD {
                if nowait {
                    c.inline();
                }
                if is_read(t.opcode.0) {
                    c.read(d.data_in.len() as u64);
                } else if t.writes {
                    c.write(req.data_out.len().min(wanted as usize) as u64);
                }
            }
        }
        Some(finish(lu, r, wanted))
    }

    /// LOGICAL UNIT RESET: mode parameters to defaults and a BUS DEVICE
    /// RESET FUNCTION OCCURRED (29h/03h) unit attention for every nexus that
    /// has used the LU, including the requester (SAM-5 §7.7). Aborting the
    /// LU's tasks is the transport's job (it owns the cancel tokens).
    pub fn lun_reset(&self, nexus: &Nexus, lun: [u8; 8]) -> TmfResult {
        let table = self.table();
        match table.visible_index(nexus, lun).map(|i| &table.luns[i].1) {
            None => TmfResult::LunDoesNotExist,
            Some(lu) => {
                lu.ua.next(nexus, false); // make sure the requester is known
                lu.reset(Asc::BUS_DEVICE_RESET_FUNCTION_OCCURRED);
                self.registry.copy_manager().cancel_unit(&lu.naa());
                TmfResult::Complete
            }
        }
    }

    /// TARGET WARM/COLD RESET (a hard reset, SAM-5 §6.3.2): every LU is reset
    /// and reports POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (29h/00h).
    /// LUNs masked from the requester are left alone.
    pub fn target_reset(&self, nexus: &Nexus) -> TmfResult {
        let table = self.table();
        for ((_, lu), mask) in table.luns.iter().zip(&table.masks) {
            if !mask.admits(&nexus.initiator_name) {
                continue;
            }
            lu.ua.next(nexus, false);
            lu.reset(Asc::POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED);
            self.registry.copy_manager().cancel_unit(&lu.naa());
        }
        TmfResult::Complete
    }

    /// The I_T nexus is gone (session closed): drop its per-LU state.
    pub fn nexus_lost(&self, nexus: &Nexus) {
        self.registry.copy_manager().requester_lost(nexus);
        for (_, lu) in &self.table().luns {
            lu.ua.forget(nexus);
            lu.pr.nexus_lost(nexus); // its SPC-2 reservation ends
        }
    }
}

/// Turn a handler outcome into the transport's result, encoding sense in the
/// LU's format (fixed when there is no LU).
impl TargetView for View<'_> {
    fn name(&self) -> &str {
        self.target.name()
    }
    fn registry(&self) -> &Arc<LuRegistry> {
        self.target.registry()
    }
    fn lu(&self, id: u16) -> Option<&Arc<LogicalUnit>> {
        self.table.lu(id)
    }
    fn lun_ids_for(&self, initiator: &str) -> Vec<u16> {
        self.table.lun_ids_for(initiator)
    }
    fn commands(&self) -> &'static [Command] {
        COMMANDS
    }
}

/// Sense data in words: "ILLEGAL REQUEST, INVALID FIELD IN CDB (24h/00h)".
pub fn sense_in_words(sense: &Sense) -> String {
    let (a, q) = (sense.asc.asc(), sense.asc.ascq());
    match sense.asc.name() {
        Some(n) => format!("{}, {n} ({a:02X}h/{q:02X}h)", sense.key.name()),
        None => format!("{}, ASC/ASCQ {a:02X}h/{q:02X}h", sense.key.name()),
    }
}

/// Every CHECK CONDITION at debug level: who, which LUN, which command, why.
fn log_check_condition(target: &str, req: &Request<'_>, sense: Option<&[u8]>) {
    let op = req.cdb.first().copied().unwrap_or(0);
    let command = match commands::lookup(op, byte(req.cdb, 1)) {
        Lookup::Found(t) => t.name,
        _ => "unsupported",
    };
    let why = sense.and_then(Sense::decode).map_or_else(|| "no sense data".to_owned(), |s| sense_in_words(&s));
    tracing::debug!(
        initiator = %req.nexus.initiator_name,
        target,
        lun = decode_lun(req.lun).map_or(-1, i32::from),
        opcode = %format_args!("{op:02X}h"),
        command,
        sense = %why,
        "CHECK CONDITION"
    );
}

fn finish(lu: Option<&LogicalUnit>, r: Result<Done, Fail>, wanted: u32) -> CommandResult {
    match r {
        Ok(d) => CommandResult { status: d.status, sense: None, data_in: d.data_in, data_out_wanted: wanted },
        Err(Fail::Check(s)) => {
            let desc = lu.is_some_and(|l| l.mode.d_sense());
            CommandResult {
                status: ScsiStatus::CHECK_CONDITION,
                sense: Some(s.encode(desc)),
                data_in: Vec::new(),
                data_out_wanted: wanted,
            }
        }
        Err(Fail::Status(status)) => {
            CommandResult { status, sense: None, data_in: Vec::new(), data_out_wanted: wanted }
        }
    }
}
