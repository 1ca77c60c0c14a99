//! Volumes: stores built from other stores, stacked to any depth.
//!
//! | kind | bytes | reads | writes |
//! |---|---|---|---|
//! | linear | the members' ranges end to end | the member holding them | the member holding them |
//! | striped | `stripe` bytes per leg in turn | the leg holding them | the leg holding them |
//! | mirror | every leg holds all of them | one in-sync leg | every leg not failed |
//!
//! A member is `len` bytes at `offset` of a store: a file, another volume,
//! or (for the snapshots of point-in-time tokens) a snapshot of either.
//! A [`Volume`] is a [`Storage`], so a LUN sits on it like on a file; it
//! also maps its ranges down to the leaf stores ([`Storage::read_map`],
//! [`Storage::write_map`]), so a copy between two volumes (or a volume and a
//! file) is split into leaf-to-leaf pieces at every segment and stripe
//! boundary of both sides and each piece done by the cheapest method its
//! pair allows ([`oxcopy_storage::copy_mapped`]): a copy never fails
//! because it must be split.
//!
//! Layout changes (a linear volume growing by a segment, a mirror leg
//! failing, resyncing or coming back) swap in a new layout; every I/O maps
//! its range against one layout, taken when it starts.

use oxcopy_copy::lock::{LockMode, RangeLocks};
use oxcopy_storage::{
    copy_mapped, AllocationRun, Capabilities, CopyReport, Extent, Result, Storage, StorageError, StorageErrorKind,
};
use parking_lot::RwLock;
use std::fmt;
use std::sync::Arc;

/// How a volume lays its bytes over its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Members end to end.
    Linear,
    /// `stripe` bytes on each leg in turn.
    Striped { stripe: u64 },
    /// Every leg holds every byte.
    Mirror,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Linear => f.write_str("linear"),
            Kind::Striped { stripe } => write!(f, "striped (stripe {stripe} bytes)"),
            Kind::Mirror => f.write_str("mirror"),
        }
    }
}

/// The state of a mirror leg (always `InSync` for other kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegState {
    /// Holds every byte: read from, written to.
    InSync,
    /// Coming back: written to, not read from, until its resync is over.
    Resyncing,
    /// Out: neither read nor written.
    Failed,
}

/// `len` bytes at `offset` of `store`.
#[derive(Clone)]
pub struct Member {
    pub store: Arc<dyn Storage>,
    pub offset: u64,
    pub len: u64,
    /// What the member is, for people (`oxcopy inspect`, logs).
    pub label: String,
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}+{}]", self.label, self.offset, self.len)
    }
}

impl Member {
    /// The whole of `store`.
    pub fn whole(store: Arc<dyn Storage>, label: impl Into<String>) -> Member {
        let len = store.len();
        Member { store, offset: 0, len, label: label.into() }
    }
}

/// One layout: the members as they are now.
#[derive(Debug, Clone)]
struct Layout {
    members: Vec<Member>,
    states: Vec<LegState>,
    /// Linear: where each member starts in the volume.
    starts: Vec<u64>,
    len: u64,
    /// Linear: a segment being moved (its index, and where to), whose
    /// writes go to both until the switch.
    moving: Option<(usize, Member)>,
}

/// A piece of a volume range on one member: `len` bytes at `offset` of the
/// member's store, for the bytes at `at` of the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    member: usize,
    offset: u64,
    len: u64,
    at: u64,
}

/// A leaf a snapshot touches: its key, the store, its ranges in order and
/// the bytes they hold.
type SnapLeaf = (usize, Arc<dyn Storage>, Vec<(u64, u64)>, u64);

/// Errors building a volume.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VolumeError {
    #[error("a volume needs at least {min} member(s), got {got}")]
    TooFewMembers { min: usize, got: usize },
    #[error("member {index} ({label}): {offset}+{len} lies outside its store of {store_len} bytes")]
    MemberOutOfRange { index: usize, label: String, offset: u64, len: u64, store_len: u64 },
    #[error("stripe size {0} must be a power of two between 4 KiB and 1 GiB")]
    BadStripe(u64),
    #[error("the volume would hold no bytes")]
    Empty,
    #[error("{0} volumes cannot grow by a segment")]
    NotLinear(Kind),
    #[error("leg {0} does not exist")]
    NoSuchLeg(usize),
    #[error("the last in-sync leg cannot be taken out")]
    LastLeg,
    #[error("segment {0} does not exist")]
    NoSuchSegment(usize),
    #[error("a segment move is already running (segment {0})")]
    MoveRunning(usize),
    #[error("no segment move is running")]
    NoMove,
    #[error("the new place holds {got} bytes; segment {segment} holds {want}")]
    MoveSize { segment: usize, want: u64, got: u64 },
}

/// A volume (see the module docs).
pub struct Volume {
    name: String,
    kind: Kind,
    layout: RwLock<Arc<Layout>>,
    caps: Capabilities,
    /// Mirror resync: a chunk being copied to a returning leg excludes the
    /// writes to it (which otherwise share).
    resync_locks: RangeLocks,
    /// Told (before the I/O that failed returns) when a mirror leg is
    /// taken out for an I/O error: the owner records it durably, so a
    /// restart does not read the stale leg.
    leg_failed: RwLock<Option<LegFailedHook>>,
}

/// See [`Volume::on_leg_failure`].
pub type LegFailedHook = Arc<dyn Fn(usize) + Send + Sync>;

impl fmt::Debug for Volume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = self.layout();
        f.debug_struct("Volume")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("members", &l.members)
            .finish()
    }
}

const MIN_STRIPE: u64 = 4096;
const MAX_STRIPE: u64 = 1 << 30;
/// A mirror resync copies this much at a time.
const RESYNC_CHUNK: u64 = 64 << 20;

fn check_members(members: &[Member], min: usize) -> std::result::Result<(), VolumeError> {
    if members.len() < min {
        return Err(VolumeError::TooFewMembers { min, got: members.len() });
    }
    for (index, m) in members.iter().enumerate() {
        let store_len = m.store.len();
        if m.offset.checked_add(m.len).is_none_or(|end| end > store_len) {
            return Err(VolumeError::MemberOutOfRange {
                index,
                label: m.label.clone(),
                offset: m.offset,
                len: m.len,
                store_len,
            });
        }
    }
    Ok(())
}

fn combined_caps(members: &[Member]) -> Capabilities {
    let mut caps = Capabilities {
        discard: true,
        discard_zeroes: true,
        allocation_status: true,
        reflink: true,
        fs_block_size: 512,
    };
    for m in members {
        let c = m.store.capabilities();
        caps.discard &= c.discard;
        caps.discard_zeroes &= c.discard_zeroes;
        caps.allocation_status &= c.allocation_status;
        caps.reflink &= c.reflink;
        caps.fs_block_size = caps.fs_block_size.max(c.fs_block_size);
    }
    caps
}

impl Volume {
    fn new(name: &str, kind: Kind, members: Vec<Member>) -> std::result::Result<Volume, VolumeError> {
        let states = vec![LegState::InSync; members.len()];
        let layout = Self::lay_out(kind, members, states)?;
        let caps = combined_caps(&layout.members);
        Ok(Volume {
            name: name.to_string(),
            kind,
            layout: RwLock::new(Arc::new(layout)),
            caps,
            resync_locks: RangeLocks::new(),
            leg_failed: RwLock::new(None),
        })
    }

    fn lay_out(kind: Kind, members: Vec<Member>, states: Vec<LegState>) -> std::result::Result<Layout, VolumeError> {
        let (starts, len) = match kind {
            Kind::Linear => {
                let mut starts = Vec::with_capacity(members.len());
                let mut at = 0u64;
                for m in &members {
                    starts.push(at);
                    at = at.checked_add(m.len).ok_or(VolumeError::Empty)?;
                }
                (starts, at)
            }
            Kind::Striped { stripe } => {
                let per_leg = members.iter().map(|m| m.len).min().unwrap_or(0) / stripe * stripe;
                (Vec::new(), per_leg.checked_mul(members.len() as u64).ok_or(VolumeError::Empty)?)
            }
            Kind::Mirror => (Vec::new(), members.iter().map(|m| m.len).min().unwrap_or(0)),
        };
        if len == 0 {
            return Err(VolumeError::Empty);
        }
        Ok(Layout { members, states, starts, len, moving: None })
    }

    /// Members end to end.
    pub fn linear(name: &str, members: Vec<Member>) -> std::result::Result<Volume, VolumeError> {
        check_members(&members, 1)?;
        Volume::new(name, Kind::Linear, members)
    }

    /// `stripe` bytes on each leg in turn; every leg contributes as many
    /// whole stripes as the shortest holds.
    pub fn striped(name: &str, stripe: u64, legs: Vec<Member>) -> std::result::Result<Volume, VolumeError> {
        if !stripe.is_power_of_two() || !(MIN_STRIPE..=MAX_STRIPE).contains(&stripe) {
            return Err(VolumeError::BadStripe(stripe));
        }
        check_members(&legs, 2)?;
        Volume::new(name, Kind::Striped { stripe }, legs)
    }

    /// Every leg holds every byte (the volume is as long as the shortest).
    pub fn mirror(name: &str, legs: Vec<Member>) -> std::result::Result<Volume, VolumeError> {
        check_members(&legs, 2)?;
        Volume::new(name, Kind::Mirror, legs)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    fn layout(&self) -> Arc<Layout> {
        self.layout.read().clone()
    }

    /// The members and their states, as they are now.
    pub fn members(&self) -> Vec<(Member, LegState)> {
        let l = self.layout();
        l.members.iter().cloned().zip(l.states.iter().copied()).collect()
    }

    /// The layout in words, one line per member, stacked volumes indented.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        self.describe_into(&mut out, 0);
        out
    }

    fn describe_into(&self, out: &mut String, depth: usize) {
        use std::fmt::Write;
        let l = self.layout();
        let pad = "  ".repeat(depth);
        let _ = writeln!(out, "{pad}volume {} ({}), {} bytes", self.name, self.kind, l.len);
        for (i, (m, st)) in l.members.iter().zip(&l.states).enumerate() {
            let state = match (self.kind, st) {
                (Kind::Mirror, LegState::InSync) => " in sync",
                (Kind::Mirror, LegState::Resyncing) => " resyncing",
                (Kind::Mirror, LegState::Failed) => " FAILED",
                _ => "",
            };
            let at = match self.kind {
                Kind::Linear => format!(" at {}", l.starts[i]),
                _ => String::new(),
            };
            let _ = writeln!(out, "{pad}  [{i}]{at}: {} bytes at {} of {}{state}", m.len, m.offset, m.label);
            if let Some(sub) = m.store.layout() {
                for line in sub.lines() {
                    let _ = writeln!(out, "{pad}    {line}");
                }
            }
        }
    }

    /// Grow a linear volume by one segment at its end; returns the new
    /// length. (The caller tells initiators: CAPACITY DATA HAS CHANGED.)
    pub fn add_segment(&self, m: Member) -> std::result::Result<u64, VolumeError> {
        if self.kind != Kind::Linear {
            return Err(VolumeError::NotLinear(self.kind));
        }
        check_members(std::slice::from_ref(&m), 1)?;
        let mut g = self.layout.write();
        let mut members = g.members.clone();
        members.push(m);
        let states = vec![LegState::InSync; members.len()];
        let mut l = Self::lay_out(self.kind, members, states)?;
        l.moving = g.moving.clone();
        let len = l.len;
        *g = Arc::new(l);
        Ok(len)
    }

    /// Take mirror leg `leg` out (neither read nor written from now on).
    pub fn fail_leg(&self, leg: usize) -> std::result::Result<(), VolumeError> {
        let mut g = self.layout.write();
        let st = *g.states.get(leg).ok_or(VolumeError::NoSuchLeg(leg))?;
        if st == LegState::InSync && g.states.iter().filter(|s| **s == LegState::InSync).count() == 1 {
            return Err(VolumeError::LastLeg);
        }
        let mut l = (**g).clone();
        l.states[leg] = LegState::Failed;
        *g = Arc::new(l);
        tracing::warn!(volume = %self.name, leg, "mirror leg out");
        Ok(())
    }

    fn set_state(&self, leg: usize, state: LegState) {
        let mut g = self.layout.write();
        if g.states.get(leg).is_some_and(|s| *s != state) {
            let mut l = (**g).clone();
            l.states[leg] = state;
            *g = Arc::new(l);
        }
    }

    /// Bring mirror leg `leg` back: written to at once, then copied from an
    /// in-sync leg chunk by chunk (each chunk excludes writes to it while it
    /// is copied; writes take the lock before they look at the layout, so
    /// one the chunk waited for is in the copy and one after it writes the
    /// returning leg too), then read from. `stop` is asked between chunks
    /// (true: give up, and the leg is out again). Returns what was copied.
    pub fn resync_leg(&self, leg: usize, stop: &dyn Fn() -> bool) -> Result<CopyReport> {
        self.resync_leg_with_progress(leg, stop, &mut |_, _| {})
    }

    /// [`Volume::resync_leg`], telling `progress(bytes done, bytes in all)`
    /// after each chunk.
    pub fn resync_leg_with_progress(
        &self,
        leg: usize,
        stop: &dyn Fn() -> bool,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<CopyReport> {
        if self.kind != Kind::Mirror {
            return Err(StorageError::new(StorageErrorKind::Unsupported, format!("{}: not a mirror", self.name)));
        }
        let st = self.layout().states.get(leg).copied();
        match st {
            None => {
                return Err(StorageError::new(StorageErrorKind::OutOfRange, format!("{}: no leg {leg}", self.name)))
            }
            Some(LegState::InSync) => return Ok(CopyReport::default()),
            Some(_) => self.set_state(leg, LegState::Resyncing),
        }
        let mut report = CopyReport::default();
        let len = self.layout().len;
        let mut at = 0u64;
        while at < len {
            if stop() {
                self.set_state(leg, LegState::Failed);
                return Err(StorageError::new(
                    StorageErrorKind::Io,
                    format!("{}: resync of leg {leg} stopped", self.name),
                ));
            }
            let n = (len - at).min(RESYNC_CHUNK);
            let _g = self.resync_locks.lock(at, n, LockMode::Exclusive);
            let l = self.layout();
            if l.states[leg] != LegState::Resyncing {
                return Err(StorageError::new(
                    StorageErrorKind::Io,
                    format!("{}: leg {leg} went out during its resync", self.name),
                ));
            }
            let Some(from) = (0..l.members.len()).find(|&i| l.states[i] == LegState::InSync) else {
                return Err(StorageError::new(
                    StorageErrorKind::Io,
                    format!("{}: no in-sync leg to resync from", self.name),
                ));
            };
            let (d, s) = (&l.members[leg], &l.members[from]);
            match copy_mapped(&*d.store, d.offset + at, &*s.store, s.offset + at, n) {
                Ok(r) => report.merge(&r),
                Err(e) => {
                    drop(_g);
                    self.set_state(leg, LegState::Failed);
                    return Err(e);
                }
            }
            at += n;
            progress(at, len);
        }
        self.set_state(leg, LegState::InSync);
        tracing::info!(volume = %self.name, leg, bytes = report.total(), "mirror leg back in sync");
        Ok(report)
    }

    /// Member `i` of `l`; `members.len()` is the place a moving segment
    /// goes to.
    fn member(l: &Layout, i: usize) -> &Member {
        match &l.moving {
            Some((_, to)) if i == l.members.len() => to,
            _ => &l.members[i],
        }
    }

    /// Start moving segment `segment` of a linear volume to `to` (as many
    /// bytes): from now on every write to the segment goes to both places.
    /// Then [`Volume::copy_move`] copies it, [`Volume::finish_move`]
    /// switches to the new place (or [`Volume::abandon_move`] drops it).
    pub fn begin_move(&self, segment: usize, to: Member) -> std::result::Result<(), VolumeError> {
        if self.kind != Kind::Linear {
            return Err(VolumeError::NotLinear(self.kind));
        }
        check_members(std::slice::from_ref(&to), 1)?;
        // Every write in flight finishes first: any write after this sees the move.
        let _g = self.resync_locks.lock(0, u64::MAX, LockMode::Exclusive);
        let mut g = self.layout.write();
        if let Some((i, _)) = &g.moving {
            return Err(VolumeError::MoveRunning(*i));
        }
        let m = g.members.get(segment).ok_or(VolumeError::NoSuchSegment(segment))?;
        if m.len != to.len {
            return Err(VolumeError::MoveSize { segment, want: m.len, got: to.len });
        }
        let mut l = (**g).clone();
        tracing::info!(volume = %self.name, segment, from = %m.label, to = %to.label, "segment move started");
        l.moving = Some((segment, to));
        *g = Arc::new(l);
        Ok(())
    }

    /// The move running: (segment, where to, segment length).
    pub fn moving(&self) -> Option<(usize, Member, u64)> {
        let l = self.layout();
        l.moving.as_ref().map(|(i, to)| (*i, to.clone(), l.members[*i].len))
    }

    /// Copy the moving segment to its new place from byte `from` of the
    /// segment to its end, chunk by chunk, each chunk excluding the writes
    /// to it while it is copied (writes take the lock before they look at
    /// the layout, so one the chunk waited for is in the copy and one after
    /// goes to both places). `progress(bytes done)` after each chunk (the
    /// caller journals it; an error stops the copy); `stop` between chunks.
    pub fn copy_move(
        &self,
        from: u64,
        progress: &mut dyn FnMut(u64) -> Result<()>,
        stop: &dyn Fn() -> bool,
    ) -> Result<CopyReport> {
        let Some((segment, _, len)) = self.moving() else {
            return Err(StorageError::new(StorageErrorKind::Unsupported, format!("{}: no segment move", self.name)));
        };
        let mut report = CopyReport::default();
        let mut at = from.min(len);
        while at < len {
            if stop() {
                return Err(StorageError::new(StorageErrorKind::Io, format!("{}: segment move stopped", self.name)));
            }
            let n = (len - at).min(RESYNC_CHUNK);
            {
                let l = self.layout();
                let start = l.starts[segment];
                let _g = self.resync_locks.lock(start + at, n, LockMode::Exclusive);
                let l = self.layout();
                let Some((i, to)) = l.moving.as_ref().filter(|(i, _)| *i == segment) else {
                    return Err(StorageError::new(
                        StorageErrorKind::Io,
                        format!("{}: the move was dropped", self.name),
                    ));
                };
                let m = &l.members[*i];
                report.merge(&copy_mapped(&*to.store, to.offset + at, &*m.store, m.offset + at, n)?);
            }
            at += n;
            progress(at)?;
        }
        Ok(report)
    }

    /// Switch the moving segment to its new place (after
    /// [`Volume::copy_move`] copied all of it): its bytes are flushed
    /// there, then, with every write to the segment finished, the layout
    /// names the new place alone. Returns the old member.
    pub fn finish_move(&self) -> Result<Member> {
        let Some((segment, to, _)) = self.moving() else {
            return Err(StorageError::new(StorageErrorKind::Unsupported, format!("{}: no segment move", self.name)));
        };
        to.store.flush()?;
        let _g = self.resync_locks.lock(0, u64::MAX, LockMode::Exclusive);
        let mut g = self.layout.write();
        let mut l = (**g).clone();
        let old = std::mem::replace(&mut l.members[segment], to);
        l.moving = None;
        *g = Arc::new(l);
        tracing::info!(volume = %self.name, segment, from = %old.label, "segment move finished");
        Ok(old)
    }

    /// Drop the move: the segment stays where it was (which always had
    /// every byte); the new place is no longer written.
    pub fn abandon_move(&self) -> std::result::Result<(), VolumeError> {
        let _g = self.resync_locks.lock(0, u64::MAX, LockMode::Exclusive);
        let mut g = self.layout.write();
        if g.moving.is_none() {
            return Err(VolumeError::NoMove);
        }
        let mut l = (**g).clone();
        l.moving = None;
        *g = Arc::new(l);
        tracing::info!(volume = %self.name, "segment move abandoned");
        Ok(())
    }

    /// Whether writes take the volume's range locks (linear: a segment may
    /// move; mirror: a leg may resync).
    fn locked_writes(&self) -> bool {
        !matches!(self.kind, Kind::Striped { .. })
    }

    /// The pieces of `offset..offset+len` (already range-checked): for a
    /// mirror, one in-sync leg when reading, every leg not failed when
    /// writing.
    fn pieces(&self, l: &Layout, offset: u64, len: u64, write: bool) -> Vec<Piece> {
        let mut out = Vec::new();
        match self.kind {
            Kind::Linear => {
                let mut i = l.starts.partition_point(|&s| s <= offset).saturating_sub(1);
                let mut at = 0u64;
                while at < len && i < l.members.len() {
                    let pos = offset + at;
                    let within = pos - l.starts[i];
                    let n = (l.members[i].len - within).min(len - at);
                    if n > 0 {
                        out.push(Piece { member: i, offset: l.members[i].offset + within, len: n, at });
                        match &l.moving {
                            Some((mi, to)) if write && *mi == i => {
                                out.push(Piece { member: l.members.len(), offset: to.offset + within, len: n, at })
                            }
                            _ => {}
                        }
                    }
                    at += n;
                    i += 1;
                }
            }
            Kind::Striped { stripe } => {
                let legs = l.members.len() as u64;
                let mut at = 0u64;
                while at < len {
                    let pos = offset + at;
                    let (k, within) = (pos / stripe, pos % stripe);
                    let n = (stripe - within).min(len - at);
                    let leg = (k % legs) as usize;
                    let off = l.members[leg].offset + (k / legs) * stripe + within;
                    out.push(Piece { member: leg, offset: off, len: n, at });
                    at += n;
                }
            }
            Kind::Mirror => {
                if write {
                    for (i, m) in l.members.iter().enumerate() {
                        if l.states[i] != LegState::Failed {
                            out.push(Piece { member: i, offset: m.offset + offset, len, at: 0 });
                        }
                    }
                } else {
                    // Spread reads over the in-sync legs, 1 MiB at a time.
                    let in_sync: Vec<usize> =
                        (0..l.members.len()).filter(|&i| l.states[i] == LegState::InSync).collect();
                    if !in_sync.is_empty() {
                        let i = in_sync[((offset >> 20) as usize) % in_sync.len()];
                        out.push(Piece { member: i, offset: l.members[i].offset + offset, len, at: 0 });
                    }
                }
            }
        }
        out
    }

    fn check(&self, l: &Layout, offset: u64, len: u64) -> Result<()> {
        oxcopy_storage::check_range(l.len, offset, len).map_err(|e| self.ctx(e))
    }

    fn ctx(&self, e: StorageError) -> StorageError {
        StorageError::new(e.kind, format!("volume {}: {e}", self.name))
    }

    fn no_leg(&self) -> StorageError {
        StorageError::new(StorageErrorKind::Io, format!("volume {}: no mirror leg in sync", self.name))
    }

    /// Call `hook(leg)` whenever a mirror leg is taken out because an I/O on
    /// it failed, before that I/O's caller hears of the outcome (so a write
    /// acknowledged without that leg is never followed, after a restart, by
    /// reads from it).
    pub fn on_leg_failure(&self, hook: LegFailedHook) {
        *self.leg_failed.write() = Some(hook);
    }

    /// A mirror leg failed an I/O: take it out (unless it is the last) and
    /// tell the owner.
    fn leg_error(&self, leg: usize, e: &StorageError) {
        if self.kind == Kind::Mirror {
            tracing::warn!(volume = %self.name, leg, error = %e, "mirror leg failed an I/O");
            if self.fail_leg(leg).is_ok() {
                self.tell_leg_failed(leg);
            }
        }
    }

    fn tell_leg_failed(&self, leg: usize) {
        let hook = self.leg_failed.read().clone();
        if let Some(hook) = hook {
            hook(leg);
        }
    }

    /// Write through `f` to every piece of a write; a mirror leg that fails
    /// is taken out as long as another leg took the bytes.
    fn for_each_write(&self, offset: u64, len: u64, f: &dyn Fn(&Member, &Piece) -> Result<()>) -> Result<()> {
        // The lock first, the layout then: a write that a resync waited for
        // is copied by it, one after sees the returning leg (see
        // `resync_leg`).
        let _g = self.locked_writes().then(|| self.resync_locks.lock(offset, len.max(1), LockMode::Shared));
        let l = self.layout();
        self.check(&l, offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let pieces = self.pieces(&l, offset, len, true);
        if self.kind != Kind::Mirror {
            for p in &pieces {
                f(Self::member(&l, p.member), p)?;
            }
            return Ok(());
        }
        let mut ok = 0;
        let mut last_err = None;
        for p in &pieces {
            match f(&l.members[p.member], p) {
                Ok(()) => ok += 1,
                Err(e) => {
                    if pieces.len() > 1 {
                        self.leg_error(p.member, &e);
                    }
                    last_err = Some(e);
                }
            }
        }
        match (ok, last_err) {
            (0, Some(e)) => Err(e),
            (0, None) => Err(self.no_leg()),
            _ => Ok(()),
        }
    }

    /// The leaf extents of a range (recursively through stacked volumes;
    /// a mirror below, for writes, is a leaf itself).
    fn map(&self, offset: u64, len: u64, write: bool) -> Result<Vec<Extent>> {
        let l = self.layout();
        self.check(&l, offset, len)?;
        let mut out = Vec::new();
        for p in self.pieces(&l, offset, len, write) {
            let m = &l.members[p.member];
            let inner = if write { m.store.write_map(p.offset, p.len)? } else { m.store.read_map(p.offset, p.len)? };
            let inner = inner.filter(|v| !v.is_empty() || p.len == 0);
            match inner {
                Some(v) => out.extend(v.into_iter().map(|e| Extent { at: e.at + p.at, ..e })),
                None => out.push(Extent { store: m.store.clone(), offset: p.offset, len: p.len, at: p.at }),
            }
        }
        if !write && out.iter().map(|e| e.len).sum::<u64>() != len {
            return Err(self.no_leg());
        }
        Ok(out)
    }
}

impl Storage for Volume {
    fn len(&self) -> u64 {
        self.layout().len
    }

    /// A volume grows by its layout ([`Volume::add_segment`]), not on
    /// request: asking for what it already holds succeeds.
    fn grow(&self, new_len: u64) -> Result<()> {
        let len = self.len();
        if new_len <= len {
            return Ok(());
        }
        Err(StorageError::new(
            StorageErrorKind::Unsupported,
            format!("volume {}: holds {len} bytes; it grows by a new segment, not to {new_len}", self.name),
        ))
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let len = buf.len() as u64;
        loop {
            let l = self.layout();
            self.check(&l, offset, len)?;
            let pieces = self.pieces(&l, offset, len, false);
            if len > 0 && pieces.is_empty() {
                return Err(self.no_leg());
            }
            let mut failed = None;
            for p in &pieces {
                let m = &l.members[p.member];
                let b = &mut buf[p.at as usize..(p.at + p.len) as usize];
                if let Err(e) = m.store.read_at(b, p.offset) {
                    failed = Some((p.member, e));
                    break;
                }
            }
            match failed {
                None => return Ok(()),
                // A mirror leg that cannot read is taken out and the read
                // tried again on another (bounded: each retry has one leg
                // fewer; the last leg's error is returned).
                Some((leg, e)) if self.kind == Kind::Mirror => {
                    if self.fail_leg(leg).is_err() {
                        return Err(e);
                    }
                    tracing::warn!(volume = %self.name, leg, error = %e, "mirror leg failed a read");
                    self.tell_leg_failed(leg);
                }
                Some((_, e)) => return Err(e),
            }
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.for_each_write(offset, buf.len() as u64, &|m, p| {
            m.store.write_at(&buf[p.at as usize..(p.at + p.len) as usize], p.offset)
        })
    }

    fn flush(&self) -> Result<()> {
        let l = self.layout();
        for (m, st) in l.members.iter().zip(&l.states) {
            if *st != LegState::Failed {
                m.store.flush()?;
            }
        }
        // A moving segment's new place holds acknowledged writes too (the
        // copy resumes after a crash from what it journaled as copied).
        if let Some((_, to)) = &l.moving {
            to.store.flush()?;
        }
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.for_each_write(offset, len, &|m, p| m.store.discard(p.offset, p.len))
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.for_each_write(offset, len, &|m, p| m.store.write_zeroes(p.offset, p.len))
    }

    fn allocation(&self, offset: u64, len: u64) -> Result<AllocationRun> {
        let l = self.layout();
        self.check(&l, offset, len)?;
        match self.pieces(&l, offset, len, false).first() {
            Some(p) => {
                let r = l.members[p.member].store.allocation(p.offset, p.len)?;
                Ok(AllocationRun { mapped: r.mapped, len: r.len.clamp(1, p.len) })
            }
            None if len == 0 => Ok(AllocationRun { mapped: true, len: 0 }),
            None => Err(self.no_leg()),
        }
    }

    /// Every leaf the ranges touch is snapshotted, in one go per leaf; the
    /// snapshot is a linear volume over the leaves' snapshots. `None` when
    /// any leaf cannot (the caller protects the ranges by copy-on-write).
    fn snapshot(&self, ranges: &[(u64, u64)]) -> Result<Option<Arc<dyn Storage>>> {
        // Leaf extents in logical order, and each leaf's ranges in order.
        let mut extents: Vec<Extent> = Vec::new();
        for &(off, len) in ranges {
            let base = extents.last().map_or(0, |e| e.at + e.len);
            extents.extend(self.map(off, len, false)?.into_iter().map(|e| Extent { at: e.at + base, ..e }));
        }
        let key = |s: &Arc<dyn Storage>| Arc::as_ptr(s) as *const () as usize;
        // Per leaf: its ranges in order (contiguous ones merged) and how
        // many bytes they hold so far.
        let mut leaves: Vec<SnapLeaf> = Vec::new();
        // Where each extent lands in its leaf's snapshot.
        let mut place: Vec<(usize, u64)> = Vec::with_capacity(extents.len());
        for e in &extents {
            let k = key(&e.store);
            let i = match leaves.iter().position(|l| l.0 == k) {
                Some(i) => i,
                None => {
                    leaves.push((k, e.store.clone(), Vec::new(), 0));
                    leaves.len() - 1
                }
            };
            let leaf = &mut leaves[i];
            place.push((i, leaf.3));
            leaf.3 += e.len;
            match leaf.2.last_mut() {
                Some(r) if r.0 + r.1 == e.offset => r.1 += e.len,
                _ => leaf.2.push((e.offset, e.len)),
            }
        }
        let mut snaps = Vec::with_capacity(leaves.len());
        for (_, store, rs, _) in &leaves {
            match store.snapshot(rs)? {
                Some(s) => snaps.push(s),
                None => return Ok(None),
            }
        }
        let members = extents
            .iter()
            .zip(&place)
            .map(|(e, &(i, pos))| Member { store: snaps[i].clone(), offset: pos, len: e.len, label: "snapshot".into() })
            .collect();
        match Volume::linear(&format!("snapshot of {}", self.name), members) {
            Ok(v) => Ok(Some(Arc::new(v))),
            Err(e) => Err(StorageError::new(StorageErrorKind::Io, format!("volume {}: snapshot: {e}", self.name))),
        }
    }

    fn scratch(&self, len: u64) -> Result<Option<Arc<dyn Storage>>> {
        let l = self.layout();
        match l.members.first() {
            Some(m) => m.store.scratch(len),
            None => Ok(None),
        }
    }

    fn read_map(&self, offset: u64, len: u64) -> Result<Option<Vec<Extent>>> {
        self.map(offset, len, false).map(Some)
    }

    /// A mirror or a linear volume is a leaf for writes: copies into it go
    /// through its [`Storage::copy_range`], which keeps them in step with a
    /// resync or a segment move (they take its range locks).
    fn write_map(&self, offset: u64, len: u64) -> Result<Option<Vec<Extent>>> {
        if self.locked_writes() {
            return Ok(None);
        }
        self.map(offset, len, true).map(Some)
    }

    /// Split into leaf pieces (see [`copy_mapped`]); into a mirror, leg by
    /// leg under the resync lock of the range (so a leg coming back gets
    /// the bytes either from the copy or from its resync).
    fn copy_range(&self, dst_offset: u64, src: &dyn Storage, src_offset: u64, len: u64) -> Result<CopyReport> {
        if !self.locked_writes() {
            return copy_mapped(self, dst_offset, src, src_offset, len);
        }
        let overlap = src_offset < dst_offset + len && dst_offset < src_offset + len;
        if overlap && std::ptr::addr_eq(src as *const dyn Storage, self as *const Self) {
            return oxcopy_storage::generic_copy_range(self, dst_offset, src, src_offset, len);
        }
        let _g = self.resync_locks.lock(dst_offset, len.max(1), LockMode::Shared);
        let l = self.layout();
        self.check(&l, dst_offset, len)?;
        let mut report = CopyReport::default();
        // A mirror's other legs and a moving segment's new place get the
        // bytes again: the report counts each byte of the range once.
        let mut ok = 0;
        let mut last_err = None;
        for p in self.pieces(&l, dst_offset, len, true) {
            let m = Self::member(&l, p.member);
            let first = match self.kind {
                Kind::Mirror => ok == 0,
                _ => p.member < l.members.len(),
            };
            match copy_mapped(&*m.store, p.offset, src, src_offset + p.at, p.len) {
                Ok(r) => {
                    if first {
                        report.merge(&r);
                    }
                    ok += 1;
                }
                Err(e) if self.kind == Kind::Mirror => {
                    self.leg_error(p.member, &e);
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        match (ok, last_err) {
            (0, Some(e)) => Err(e),
            (0, None) if len > 0 => Err(self.no_leg()),
            _ => Ok(report),
        }
    }

    fn layout(&self) -> Option<String> {
        Some(self.describe())
    }
}

#[cfg(test)]
mod tests;
