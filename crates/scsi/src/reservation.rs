//! Reservations: SPC-2 RESERVE/RELEASE and SPC-4 persistent reservations
//! (§5.13). This module keeps the per-LU state, the conflict check every
//! command passes before its handler runs, the SPC-2 commands, and the
//! persistence format used when a registration asks for APTPL; the
//! PERSISTENT RESERVE IN/OUT commands live in [`crate::pr`].
//!
//! # Conflicts
//! With a persistent reservation, each command falls in one of three classes
//! ([`Access`], after SPC-4 table 66 and SBC-3 table 13): always allowed
//! (INQUIRY, REPORT LUNS, TEST UNIT READY, READ CAPACITY, PERSISTENT RESERVE
//! IN/OUT, ...), reads (allowed through Write Exclusive, in conflict with
//! Exclusive Access), and everything else, in conflict for every non-holder.
//! Registrants count as holders for access under the registrants-only and
//! all-registrants types. With an SPC-2 reservation held by another I_T
//! nexus only INQUIRY, REPORT LUNS, REQUEST SENSE, REPORT SUPPORTED
//! OPERATION CODES and RELEASE are allowed. RESERVE/RELEASE conflict while
//! any persistent registration exists (SPC-4 §5.13.3, CRH=1).
//!
//! # Lifetime
//! SPC-2 reservations end with the holder's I_T nexus and with any LU or
//! target reset; persistent reservations survive both, and survive a
//! restart of the daemon when the last registration asked for APTPL and a
//! [`PrStore`] is attached ([`crate::LogicalUnit::attach_pr_store`]).
//!
//! # Concurrency
//! The command path reads one atomic flag while nothing is reserved. State
//! changes are serialized by a mutex, computed on a copy, persisted first
//! (when APTPL asks for it) and only then published, so a failed save
//! changes nothing.

use crate::cdb::{byte, Opcode, ServiceAction, Template};
use crate::nexus::Nexus;
use crate::result::Fail;
use crate::result::ScsiStatus;
use crate::sense::{Asc, Sense, SenseKey};
use parking_lot::{Mutex, RwLock};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Registrations one LU keeps; more fail with INSUFFICIENT REGISTRATION
/// RESOURCES (bounds memory and the READ KEYS / READ FULL STATUS data).
pub const MAX_REGISTRATIONS: usize = 256;
/// PREEMPT AND ABORT victims remembered for running commands to notice; a
/// command older than the oldest one kept is not aborted (bounded memory).
const MAX_ABORTS: usize = 64;

/// Persistent storage for one LU's persistent-reservation state, used while
/// the state asks for persistence through power loss (APTPL=1). The SCSI
/// layer stays I/O-free: the daemon implements this over a file.
pub trait PrStore: Send + Sync + fmt::Debug {
    /// The last saved state, `None` when nothing was ever saved.
    fn load(&self) -> io::Result<Option<Vec<u8>>>;
    /// Replace the saved state atomically and durably. The command that
    /// changed the state completes only after this returns.
    fn save(&self, bytes: &[u8]) -> io::Result<()>;
}

/// Why saved reservation state could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum PrStateError {
    /// The store could not be read.
    #[error("reading persistent reservation state: {0}")]
    Io(#[from] io::Error),
    /// The bytes are not a state this version wrote (truncated, corrupt,
    /// unknown version).
    #[error("persistent reservation state is not valid: {0}")]
    Corrupt(&'static str),
}

/// Persistent reservation TYPE codes (SPC-4 table 173).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrType {
    WriteExclusive,
    ExclusiveAccess,
    WriteExclusiveRegistrantsOnly,
    ExclusiveAccessRegistrantsOnly,
    WriteExclusiveAllRegistrants,
    ExclusiveAccessAllRegistrants,
}

impl PrType {
    /// Every type, in REPORT CAPABILITIES mask order.
    pub const ALL: [PrType; 6] = [
        PrType::WriteExclusive,
        PrType::ExclusiveAccess,
        PrType::WriteExclusiveRegistrantsOnly,
        PrType::ExclusiveAccessRegistrantsOnly,
        PrType::WriteExclusiveAllRegistrants,
        PrType::ExclusiveAccessAllRegistrants,
    ];

    /// The TYPE field value.
    pub fn code(self) -> u8 {
        match self {
            PrType::WriteExclusive => 0x1,
            PrType::ExclusiveAccess => 0x3,
            PrType::WriteExclusiveRegistrantsOnly => 0x5,
            PrType::ExclusiveAccessRegistrantsOnly => 0x6,
            PrType::WriteExclusiveAllRegistrants => 0x7,
            PrType::ExclusiveAccessAllRegistrants => 0x8,
        }
    }

    /// The type a TYPE field value names, if any.
    pub fn from_code(code: u8) -> Option<PrType> {
        PrType::ALL.into_iter().find(|t| t.code() == code)
    }

    /// Every registrant holds the reservation.
    pub fn all_registrants(self) -> bool {
        matches!(self, PrType::WriteExclusiveAllRegistrants | PrType::ExclusiveAccessAllRegistrants)
    }

    /// Registrants get access, one of them holds the reservation.
    pub fn registrants_only(self) -> bool {
        matches!(self, PrType::WriteExclusiveRegistrantsOnly | PrType::ExclusiveAccessRegistrantsOnly)
    }

    /// Reads conflict too (not only writes).
    fn exclusive_access(self) -> bool {
        matches!(
            self,
            PrType::ExclusiveAccess | PrType::ExclusiveAccessRegistrantsOnly | PrType::ExclusiveAccessAllRegistrants
        )
    }
}

/// How a command fares against a persistent reservation it does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Never in conflict.
    Allowed,
    /// Allowed through Write Exclusive, in conflict with Exclusive Access.
    Read,
    /// In conflict with every type.
    Write,
}

/// A target port: target name and portal group tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetPort {
    pub name: Arc<str>,
    pub tpgt: u16,
}

/// One registration: a reservation key for an initiator port, on one target
/// port or (ALL_TG_PT=1) on all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registration {
    pub key: u64,
    pub initiator: Arc<str>,
    pub isid: [u8; 6],
    /// `None`: registered through every target port.
    pub target: Option<TargetPort>,
}

impl Registration {
    /// A registration of `n`'s initiator port, on its target port or on all.
    pub(crate) fn of(n: &Nexus, key: u64, all_target_ports: bool) -> Registration {
        Registration {
            key,
            initiator: n.initiator_name.clone(),
            isid: n.isid,
            target: (!all_target_ports).then(|| TargetPort { name: n.target_name.clone(), tpgt: n.tpgt }),
        }
    }

    /// Whether this registration covers I_T nexus `n`.
    pub(crate) fn matches(&self, n: &Nexus) -> bool {
        *self.initiator == *n.initiator_name
            && self.isid == n.isid
            && self.target.as_ref().is_none_or(|t| *t.name == *n.target_name && t.tpgt == n.tpgt)
    }

    /// Same initiator port (whatever the target port).
    pub(crate) fn same_initiator_port(&self, n: &Nexus) -> bool {
        *self.initiator == *n.initiator_name && self.isid == n.isid
    }
}

/// A persistent reservation (scope is always LU_SCOPE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Persistent {
    pub pr_type: PrType,
    /// The holding I_T nexus; `None` for the all-registrants types, where
    /// every registrant holds it.
    pub holder: Option<Nexus>,
}

/// The reservation state of one LU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PrState {
    /// PRGENERATION (not persisted: a power on resets it).
    pub generation: u32,
    /// Activate persist through power loss, from the last registration.
    pub aptpl: bool,
    pub registrations: Vec<Registration>,
    pub reservation: Option<Persistent>,
    /// SPC-2 RESERVE holder.
    pub spc2: Option<Nexus>,
}

impl PrState {
    /// Index of the registration covering `n`.
    pub(crate) fn find(&self, n: &Nexus) -> Option<usize> {
        self.registrations.iter().position(|r| r.matches(n))
    }

    /// Whether `n` holds the persistent reservation `res`.
    pub(crate) fn is_holder(&self, res: &Persistent, n: &Nexus) -> bool {
        if res.pr_type.all_registrants() {
            self.find(n).is_some()
        } else {
            res.holder.as_ref() == Some(n)
        }
    }

    /// The registration of the holder of a single-holder reservation.
    pub(crate) fn holder_registration(&self) -> Option<&Registration> {
        let h = self.reservation.as_ref()?.holder.as_ref()?;
        self.registrations.iter().find(|r| r.matches(h))
    }

    /// Whether a command of class `access` from `n` conflicts with the
    /// persistent reservation (false when there is none).
    pub(crate) fn pr_conflict(&self, n: &Nexus, access: Access) -> bool {
        let Some(res) = &self.reservation else { return false };
        if access == Access::Allowed || self.is_holder(res, n) {
            return false;
        }
        let open_to_registrants = res.pr_type.registrants_only() || res.pr_type.all_registrants();
        if open_to_registrants && self.find(n).is_some() {
            return false;
        }
        access == Access::Write || res.pr_type.exclusive_access()
    }

    /// Whether a command conflicts with an SPC-2 reservation held by another
    /// I_T nexus.
    pub(crate) fn spc2_conflict(&self, n: &Nexus, cdb: &[u8]) -> bool {
        self.spc2.as_ref().is_some_and(|h| h != n) && !spc2_allowed(cdb)
    }

    /// Remove registration `i`, releasing the reservation when its holder
    /// (or, for all-registrants types, the last registrant) goes. Unit
    /// attentions owed to the remaining registrants are pushed on `ua`.
    pub(crate) fn unregister(&mut self, i: usize, ua: &mut UaEffects) -> Registration {
        let reg = self.registrations.remove(i);
        if let Some(res) = &self.reservation {
            if res.pr_type.all_registrants() {
                if self.registrations.is_empty() {
                    self.reservation = None;
                }
            } else if res.holder.as_ref().is_some_and(|h| reg.matches(h)) {
                let registrants_only = res.pr_type.registrants_only();
                self.reservation = None;
                if registrants_only {
                    for r in &self.registrations {
                        ua.push((Asc::RESERVATIONS_RELEASED, r.clone()));
                    }
                }
            }
        }
        reg
    }

    /// The part that persists (APTPL): everything but the generation and
    /// the SPC-2 reservation.
    fn persistent_part_eq(&self, other: &PrState) -> bool {
        self.aptpl == other.aptpl && self.registrations == other.registrations && self.reservation == other.reservation
    }
}

/// Unit attentions a state change owes: the condition and the registration
/// whose I_T nexuses get it (the nexus that caused the change never does).
pub(crate) type UaEffects = Vec<(Asc, Registration)>;

/// The reservation state of one LU and its optional persistent store.
pub(crate) struct Reservations {
    state: RwLock<PrState>,
    /// Serializes changes (and the save that precedes publishing one).
    update: Mutex<()>,
    /// A persistent or SPC-2 reservation exists: the command path skips the
    /// state lock otherwise.
    reserved: AtomicBool,
    store: RwLock<Option<Arc<dyn PrStore>>>,
    /// Bumped by every PREEMPT AND ABORT; commands note it when they start.
    abort_epoch: AtomicU64,
    /// Registrations preempted with abort, with the epoch they were at.
    aborted: RwLock<VecDeque<(u64, Registration)>>,
}

impl Default for Reservations {
    fn default() -> Self {
        Reservations {
            state: RwLock::new(PrState::default()),
            update: Mutex::new(()),
            reserved: AtomicBool::new(false),
            store: RwLock::new(None),
            abort_epoch: AtomicU64::new(0),
            aborted: RwLock::new(VecDeque::new()),
        }
    }
}

impl fmt::Debug for Reservations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservations").field("state", &*self.state.read()).finish_non_exhaustive()
    }
}

fn conflict() -> Fail {
    Fail::Status(ScsiStatus::RESERVATION_CONFLICT)
}

impl Reservations {
    /// A copy of the current state.
    pub(crate) fn snapshot(&self) -> PrState {
        self.state.read().clone()
    }

    /// Whether a store is attached (PTPL_C).
    pub(crate) fn persist_capable(&self) -> bool {
        self.store.read().is_some()
    }

    /// The current PREEMPT AND ABORT epoch (one atomic load).
    pub(crate) fn abort_epoch(&self) -> u64 {
        self.abort_epoch.load(Ordering::Acquire)
    }

    /// Whether a command of `n` that started at epoch `start` has been
    /// aborted by a PREEMPT AND ABORT since. Free while none happened.
    pub(crate) fn aborted_since(&self, n: &Nexus, start: u64) -> bool {
        if self.abort_epoch.load(Ordering::Acquire) == start {
            return false;
        }
        self.aborted.read().iter().any(|(e, r)| *e > start && r.matches(n))
    }

    /// PREEMPT AND ABORT: the running commands of every I_T nexus these
    /// registrations covered stop at their next cancellation check (TASK
    /// ABORTED); later ones meet the new reservation.
    pub(crate) fn abort_tasks_of(&self, victims: &[Registration]) {
        if victims.is_empty() {
            return;
        }
        // Bump under the write lock: a reader that sees the new epoch waits
        // for the victims to be listed.
        let mut list = self.aborted.write();
        let epoch = self.abort_epoch.fetch_add(1, Ordering::AcqRel) + 1;
        for v in victims {
            if list.len() == MAX_ABORTS {
                list.pop_front();
            }
            list.push_back((epoch, v.clone()));
        }
    }

    /// Whether `n` reading (or writing) the LU now would be in conflict with
    /// a reservation held by another I_T nexus.
    pub(crate) fn access_conflict(&self, n: &Nexus, write: bool) -> bool {
        if !self.reserved.load(Ordering::Acquire) {
            return false;
        }
        let st = self.state.read();
        st.spc2.as_ref().is_some_and(|h| h != n) || st.pr_conflict(n, if write { Access::Write } else { Access::Read })
    }

    /// `Err(RESERVATION CONFLICT)` when `n` may not run this command now.
    pub(crate) fn check<H>(&self, n: &Nexus, t: &Template<H>, cdb: &[u8]) -> Result<(), Fail> {
        if !self.reserved.load(Ordering::Acquire) {
            return Ok(());
        }
        let st = self.state.read();
        if st.spc2_conflict(n, cdb) || st.pr_conflict(n, access(t, cdb)) {
            return Err(conflict());
        }
        Ok(())
    }

    /// Apply `f` to a copy of the state; persist the result when APTPL is
    /// (or was) on and the persistent part changed; then publish it. An
    /// error from `f` or from the store leaves the state untouched.
    pub(crate) fn modify<T>(&self, f: impl FnOnce(&mut PrState) -> Result<T, Fail>) -> Result<T, Fail> {
        let _serial = self.update.lock();
        let old = self.state.read().clone();
        let mut next = old.clone();
        let out = f(&mut next)?;
        if next == old {
            return Ok(out);
        }
        if (next.aptpl || old.aptpl) && !next.persistent_part_eq(&old) {
            if let Some(store) = self.store.read().clone() {
                let bytes = encode(&next);
                store.save(&bytes).map_err(|e| {
                    tracing::error!(error = %e, "saving persistent reservation state failed");
                    Fail::Check(Sense::new(SenseKey::HARDWARE_ERROR, Asc::INTERNAL_TARGET_FAILURE))
                })?;
            }
        }
        let reserved = next.reservation.is_some() || next.spc2.is_some();
        *self.state.write() = next;
        self.reserved.store(reserved, Ordering::Release);
        Ok(out)
    }

    /// Attach `store` and restore what it holds. Returns whether any state
    /// was restored. A state that cannot be read or decoded is reported and
    /// nothing is restored (the store stays attached: the next change
    /// overwrites it).
    pub(crate) fn attach_store(&self, store: Arc<dyn PrStore>) -> Result<bool, PrStateError> {
        *self.store.write() = Some(store.clone());
        let Some(bytes) = store.load()? else { return Ok(false) };
        let restored = decode(&bytes)?;
        if !restored.aptpl {
            return Ok(false);
        }
        let _serial = self.update.lock();
        let mut st = self.state.write();
        st.aptpl = true;
        st.registrations = restored.registrations;
        st.reservation = restored.reservation;
        let reserved = st.reservation.is_some() || st.spc2.is_some();
        drop(st);
        self.reserved.store(reserved, Ordering::Release);
        Ok(true)
    }

    /// The I_T nexus is gone: its SPC-2 reservation ends (persistent
    /// registrations and reservations stay, SPC-4 §5.13.1).
    pub(crate) fn nexus_lost(&self, n: &Nexus) {
        if !self.reserved.load(Ordering::Acquire) {
            return;
        }
        let _ = self.modify(|st| {
            if st.spc2.as_ref() == Some(n) {
                st.spc2 = None;
            }
            Ok(())
        });
    }

    /// LU or target reset: SPC-2 reservations end.
    pub(crate) fn reset(&self) {
        let _ = self.modify(|st| {
            st.spc2 = None;
            Ok(())
        });
    }
}

/// The conflict class of a command (SPC-4 table 66, SBC-3 table 13).
pub(crate) fn access<H>(t: &Template<H>, cdb: &[u8]) -> Access {
    let op = Opcode(byte(cdb, 0));
    match op {
        Opcode::TEST_UNIT_READY
        | Opcode::INQUIRY
        | Opcode::REQUEST_SENSE
        | Opcode::REPORT_LUNS
        | Opcode::READ_CAPACITY_10
        | Opcode::PERSISTENT_RESERVE_IN
        // PERSISTENT RESERVE OUT applies its own rules per service action;
        // RESERVE/RELEASE conflict in their handlers while registrations exist.
        | Opcode::PERSISTENT_RESERVE_OUT
        | Opcode::RESERVE_6
        | Opcode::RELEASE_6
        | Opcode::RESERVE_10
        | Opcode::RELEASE_10
        | Opcode::MAINTENANCE_IN => Access::Allowed,
        Opcode::SERVICE_ACTION_IN_16 if byte(cdb, 1) & 0x1F == ServiceAction::READ_CAPACITY_16 => Access::Allowed,
        Opcode::SERVICE_ACTION_IN_16 => Access::Read, // GET LBA STATUS
        // PREVENT=0 and START=1 with no power condition change nothing.
        Opcode::PREVENT_ALLOW_MEDIUM_REMOVAL if byte(cdb, 4) & 0x03 == 0 => Access::Allowed,
        Opcode::START_STOP_UNIT if byte(cdb, 4) & 0xF1 == 0x01 => Access::Allowed,
        // POPULATE TOKEN only reads its LU (digest §7, as CTL).
        Opcode::THIRD_PARTY_COPY_OUT if byte(cdb, 1) & 0x1F == 0x10 => Access::Read,
        _ if t.writes => Access::Write,
        Opcode::READ_6
        | Opcode::READ_10
        | Opcode::READ_12
        | Opcode::READ_16
        | Opcode::VERIFY_10
        | Opcode::VERIFY_12
        | Opcode::VERIFY_16
        | Opcode::PRE_FETCH_10
        | Opcode::PRE_FETCH_16
        | Opcode::READ_DEFECT_DATA_10
        | Opcode::READ_DEFECT_DATA_12 => Access::Read,
        // MODE SENSE/SELECT, SYNCHRONIZE CACHE, copy commands, anything new.
        _ => Access::Write,
    }
}

/// Commands another I_T nexus's SPC-2 reservation does not block.
fn spc2_allowed(cdb: &[u8]) -> bool {
    matches!(
        Opcode(byte(cdb, 0)),
        Opcode::INQUIRY
            | Opcode::REPORT_LUNS
            | Opcode::REQUEST_SENSE
            | Opcode::RELEASE_6
            | Opcode::RELEASE_10
            | Opcode::MAINTENANCE_IN
    )
}

// ---- persistence -----------------------------------------------------------

const MAGIC: &[u8; 4] = b"OXPR";
const VERSION: u8 = 1;
/// Longest name accepted when decoding (iSCSI names are at most 223 bytes).
const MAX_NAME: usize = 1024;
const FLAG_APTPL: u8 = 0x01;
const FLAG_ALL_TG_PT: u8 = 0x01;

/// FNV-1a, 64 bits: detects truncation and corruption of the state file.
fn checksum(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn put_name(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(MAX_NAME)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// Serialize the persistent part of `st` (version 1):
/// `"OXPR" 01 flags nreg:u16 {key:u64 flags isid[6] name [target tpgt:u16]}*
/// res:u8 [type:u8 holder:u8 [name isid[6] target tpgt:u16]] fnv1a:u64`,
/// names as `len:u16 bytes`, integers big-endian.
pub(crate) fn encode(st: &PrState) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + st.registrations.len() * 96);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(if st.aptpl { FLAG_APTPL } else { 0 });
    let regs = &st.registrations[..st.registrations.len().min(MAX_REGISTRATIONS)];
    out.extend_from_slice(&(regs.len() as u16).to_be_bytes());
    for r in regs {
        out.extend_from_slice(&r.key.to_be_bytes());
        out.push(if r.target.is_none() { FLAG_ALL_TG_PT } else { 0 });
        out.extend_from_slice(&r.isid);
        put_name(&mut out, &r.initiator);
        if let Some(t) = &r.target {
            put_name(&mut out, &t.name);
            out.extend_from_slice(&t.tpgt.to_be_bytes());
        }
    }
    match &st.reservation {
        None => out.push(0),
        Some(res) => {
            out.push(1);
            out.push(res.pr_type.code());
            match &res.holder {
                None => out.push(0),
                Some(h) => {
                    out.push(1);
                    put_name(&mut out, &h.initiator_name);
                    out.extend_from_slice(&h.isid);
                    put_name(&mut out, &h.target_name);
                    out.extend_from_slice(&h.tpgt.to_be_bytes());
                }
            }
        }
    }
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_be_bytes());
    out
}

/// Bounds-checked reader over the state bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PrStateError> {
        if self.0.len() < n {
            return Err(PrStateError::Corrupt("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, PrStateError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, PrStateError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u64(&mut self) -> Result<u64, PrStateError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn isid(&mut self) -> Result<[u8; 6], PrStateError> {
        let mut a = [0u8; 6];
        a.copy_from_slice(self.take(6)?);
        Ok(a)
    }
    fn name(&mut self) -> Result<Arc<str>, PrStateError> {
        let n = usize::from(self.u16()?);
        if n > MAX_NAME {
            return Err(PrStateError::Corrupt("name too long"));
        }
        let s = std::str::from_utf8(self.take(n)?).map_err(|_| PrStateError::Corrupt("name is not UTF-8"))?;
        Ok(Arc::from(s))
    }
}

/// Parse what [`encode`] wrote. Never panics; rejects anything inconsistent.
pub(crate) fn decode(bytes: &[u8]) -> Result<PrState, PrStateError> {
    let body_len = bytes.len().checked_sub(8).ok_or(PrStateError::Corrupt("truncated"))?;
    let (body, sum) = bytes.split_at(body_len);
    let mut s = [0u8; 8];
    s.copy_from_slice(sum);
    if checksum(body) != u64::from_be_bytes(s) {
        return Err(PrStateError::Corrupt("checksum mismatch"));
    }
    let mut r = Reader(body);
    if r.take(4)? != MAGIC {
        return Err(PrStateError::Corrupt("not a reservation state file"));
    }
    if r.u8()? != VERSION {
        return Err(PrStateError::Corrupt("unknown version"));
    }
    let mut st = PrState { aptpl: r.u8()? & FLAG_APTPL != 0, ..PrState::default() };
    let nreg = usize::from(r.u16()?);
    if nreg > MAX_REGISTRATIONS {
        return Err(PrStateError::Corrupt("too many registrations"));
    }
    for _ in 0..nreg {
        let key = r.u64()?;
        let all = r.u8()? & FLAG_ALL_TG_PT != 0;
        let isid = r.isid()?;
        let initiator = r.name()?;
        let target = if all { None } else { Some(TargetPort { name: r.name()?, tpgt: r.u16()? }) };
        if key == 0 {
            return Err(PrStateError::Corrupt("registration with key 0"));
        }
        st.registrations.push(Registration { key, initiator, isid, target });
    }
    if r.u8()? == 1 {
        let pr_type = PrType::from_code(r.u8()?).ok_or(PrStateError::Corrupt("unknown reservation type"))?;
        let holder = if r.u8()? == 1 {
            let initiator_name = r.name()?;
            let isid = r.isid()?;
            let target_name = r.name()?;
            let tpgt = r.u16()?;
            Some(Nexus { initiator_name, isid, target_name, tpgt })
        } else {
            None
        };
        if holder.is_none() != pr_type.all_registrants() {
            return Err(PrStateError::Corrupt("reservation holder does not match its type"));
        }
        let res = Persistent { pr_type, holder };
        let held = match &res.holder {
            Some(h) => st.find(h).is_some(),
            None => !st.registrations.is_empty(),
        };
        if !held {
            return Err(PrStateError::Corrupt("reservation without a registered holder"));
        }
        st.reservation = Some(res);
    }
    if !r.0.is_empty() {
        return Err(PrStateError::Corrupt("trailing bytes"));
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nx(init: &str, isid: u8, tpgt: u16) -> Nexus {
        Nexus {
            initiator_name: Arc::from(init),
            isid: [0x80, 0, 0, 0, 0, isid],
            target_name: Arc::from("iqn.2000-01.test:t"),
            tpgt,
        }
    }

    /// Conflict expected for a non-holder, by type, registration and class
    /// (SPC-4 table 66): `[WE, EA, WE_RO, EA_RO, WE_AR, EA_AR]`.
    const TABLE: [(bool, Access, [bool; 6]); 6] = [
        (false, Access::Allowed, [false; 6]),
        (true, Access::Allowed, [false; 6]),
        (false, Access::Read, [false, true, false, true, false, true]),
        (true, Access::Read, [false, true, false, false, false, false]),
        (false, Access::Write, [true, true, true, true, true, true]),
        (true, Access::Write, [true, true, false, false, false, false]),
    ];

    #[test]
    fn conflict_table_for_every_type_and_class() {
        let holder = nx("iqn.a", 1, 1);
        let other = nx("iqn.b", 2, 1);
        for (ti, t) in PrType::ALL.into_iter().enumerate() {
            for (registered, access, want) in TABLE {
                let mut st = PrState::default();
                st.registrations.push(Registration::of(&holder, 1, false));
                if registered {
                    st.registrations.push(Registration::of(&other, 2, false));
                }
                st.reservation =
                    Some(Persistent { pr_type: t, holder: (!t.all_registrants()).then(|| holder.clone()) });
                assert_eq!(st.pr_conflict(&other, access), want[ti], "{t:?} registered={registered} {access:?}");
                // The holder never conflicts.
                assert!(!st.pr_conflict(&holder, access), "{t:?} holder {access:?}");
            }
        }
        // No reservation, no conflict.
        assert!(!PrState::default().pr_conflict(&other, Access::Write));
    }

    #[test]
    fn command_classes() {
        use crate::commands::{lookup, Lookup};
        let class = |cdb: &[u8]| match lookup(cdb[0], byte(cdb, 1)) {
            Lookup::Found(t) => access(t, cdb),
            _ => panic!("{:02x} not in table", cdb[0]),
        };
        let mut c16 = [0u8; 16];
        for (op, want) in [
            (0x00, Access::Allowed), // TEST UNIT READY
            (0x12, Access::Allowed), // INQUIRY
            (0x25, Access::Allowed), // READ CAPACITY (10)
            (0xA0, Access::Allowed), // REPORT LUNS
            (0x28, Access::Read),
            (0x88, Access::Read),
            (0x2F, Access::Read), // VERIFY (10)
            (0x34, Access::Read), // PRE-FETCH (10)
            (0x2A, Access::Write),
            (0x8A, Access::Write),
            (0x89, Access::Write), // COMPARE AND WRITE
            (0x42, Access::Write), // UNMAP
            (0x93, Access::Write), // WRITE SAME (16)
            (0x35, Access::Write), // SYNCHRONIZE CACHE
            (0x1A, Access::Write), // MODE SENSE: conflicts with both types
        ] {
            c16[0] = op;
            assert_eq!(class(&c16), want, "{op:02x}");
        }
        assert_eq!(class(&[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0]), Access::Allowed);
        assert_eq!(class(&[0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0]), Access::Read);
        assert_eq!(class(&[0x1E, 0, 0, 0, 0, 0]), Access::Allowed);
        assert_eq!(class(&[0x1E, 0, 0, 0, 1, 0]), Access::Write);
        assert_eq!(class(&[0x1B, 0, 0, 0, 1, 0]), Access::Allowed);
        assert_eq!(class(&[0x1B, 0, 0, 0, 0, 0]), Access::Write);
        assert_eq!(class(&[0x1B, 0, 0, 0, 0x11, 0]), Access::Write);
    }

    #[test]
    fn spc2_reservation_blocks_all_but_a_few() {
        let a = nx("iqn.a", 1, 1);
        let b = nx("iqn.b", 1, 1);
        let st = PrState { spc2: Some(a.clone()), ..PrState::default() };
        assert!(!st.spc2_conflict(&a, &[0x28]));
        assert!(st.spc2_conflict(&b, &[0x28]));
        assert!(st.spc2_conflict(&b, &[0x00]));
        assert!(st.spc2_conflict(&b, &[0x1A]));
        assert!(st.spc2_conflict(&b, &[0x16]));
        for op in [0x12u8, 0xA0, 0x03, 0x17, 0x57, 0xA3] {
            assert!(!st.spc2_conflict(&b, &[op]), "{op:02x}");
        }
    }

    #[test]
    fn registration_matching() {
        let a1 = nx("iqn.a", 1, 1);
        let a1_tpg2 = nx("iqn.a", 1, 2);
        let a2 = nx("iqn.a", 2, 1);
        let r = Registration::of(&a1, 5, false);
        assert!(r.matches(&a1) && !r.matches(&a1_tpg2) && !r.matches(&a2));
        let all = Registration::of(&a1, 5, true);
        assert!(all.matches(&a1) && all.matches(&a1_tpg2) && !all.matches(&a2));
        assert!(all.same_initiator_port(&a1_tpg2));
    }

    #[test]
    fn unregistering_the_holder_releases() {
        let a = nx("iqn.a", 1, 1);
        let b = nx("iqn.b", 1, 1);
        let mut st = PrState::default();
        st.registrations.push(Registration::of(&a, 1, false));
        st.registrations.push(Registration::of(&b, 2, false));
        st.reservation = Some(Persistent { pr_type: PrType::WriteExclusiveRegistrantsOnly, holder: Some(a.clone()) });
        let mut ua = Vec::new();
        st.unregister(0, &mut ua);
        assert!(st.reservation.is_none());
        assert_eq!(ua, vec![(Asc::RESERVATIONS_RELEASED, Registration::of(&b, 2, false))]);
        // All registrants: only the last registrant's departure releases.
        st.registrations.insert(0, Registration::of(&a, 1, false));
        st.reservation = Some(Persistent { pr_type: PrType::ExclusiveAccessAllRegistrants, holder: None });
        let mut ua = Vec::new();
        st.unregister(0, &mut ua);
        assert!(st.reservation.is_some() && ua.is_empty());
        st.unregister(0, &mut ua);
        assert!(st.reservation.is_none() && ua.is_empty());
    }

    fn sample() -> PrState {
        let a = nx("iqn.2000-01.test:a", 1, 1);
        let b = nx("iqn.2000-01.test:b", 7, 3);
        PrState {
            generation: 9,
            aptpl: true,
            registrations: vec![Registration::of(&a, 0x1122, false), Registration::of(&b, u64::MAX, true)],
            reservation: Some(Persistent { pr_type: PrType::ExclusiveAccess, holder: Some(a) }),
            spc2: None,
        }
    }

    #[test]
    fn encoding_roundtrips_without_generation() {
        let st = sample();
        let back = decode(&encode(&st)).expect("decodes");
        assert!(back.persistent_part_eq(&st));
        assert_eq!(back.generation, 0);
        let ar = PrState {
            reservation: Some(Persistent { pr_type: PrType::WriteExclusiveAllRegistrants, holder: None }),
            ..sample()
        };
        assert!(decode(&encode(&ar)).expect("decodes").persistent_part_eq(&ar));
        assert!(decode(&encode(&PrState::default())).expect("decodes").registrations.is_empty());
    }

    #[test]
    fn decoding_rejects_damage() {
        let good = encode(&sample());
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_err(), "truncated to {n}");
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flipped byte {i}");
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decode_with_valid_checksum_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = body.clone();
            b.extend_from_slice(&checksum(&body).to_be_bytes());
            let _ = decode(&b);
        }
    }
}
