//! Token copy state: the ROD token store of this copy manager, what each
//! token stands for ([`RodSource`]), how point-in-time tokens keep their
//! promise, the snapshot-space account and the background spawner.
//!
//! # What a token reads
//! | ROD type | source | a later write to a covered source range |
//! |---|---|---|
//! | 00010000h access upon reference | the live source at WUT time | is visible in the copy |
//! | 00800001h change vulnerable | the live source | revokes the token (23h/06h) |
//! | 00800000h / 00800002h point in time (RTV=0 too) | a reflink snapshot, else copy-on-write | is not visible |
//!
//! The point in time is established while POPULATE TOKEN holds shared range
//! locks over every source range, so no write is half done at that instant.
//!
//! **Reflink snapshot** ([`oxcopy_storage::Storage::snapshot`]): the ranges
//! are cloned, end to end, into an unlinked O_TMPFILE beside the backing
//! file; metadata only, and nothing survives a crash.
//!
//! **Copy-on-write** (ext4, memory, unaligned ranges): the source unit gets a
//! [`WriteHook`] ([`PitHook`]); every write — SBC writes, COMPARE AND WRITE,
//! WRITE SAME/UNMAP, copies into it — calls it with the exclusive range lock
//! held, before the data lands. For each live point-in-time token covering
//! the range it copies the not yet preserved old blocks into the token's
//! preservation store (a sparse unlinked scratch file beside the backing
//! file, [`oxcopy_storage::Storage::scratch`], or sparse memory; made at the
//! first preservation, so an untouched token holds no file), at the same
//! offsets, through [`crate::exec::transfer`]. A [`RodSource`] is a
//! [`CopySource`]: the executor reads preserved blocks from the store and
//! the rest from the live source *while holding the shared source range
//! lock*, so no write can slip in between deciding and reading.
//!
//! # Space accounting (`max_snapshot_bytes`)
//! A reflink snapshot is charged its represented bytes when it is made (the
//! worst case it can grow to once the source is overwritten); if that does
//! not fit, POPULATE TOKEN fails with INSUFFICIENT RESOURCES TO CREATE ROD
//! (55h/0Ch). A copy-on-write token starts at zero and is charged each
//! block as it is preserved; a host write that would exceed the bound is
//! never failed — the token is revoked instead (its next use reads 23h/06h),
//! so the result is never a silently wrong copy. Charges are returned when
//! the token's payload is dropped (expired, deleted, revoked, and no copy
//! still using it). Two tokens over the same blocks preserve (and are
//! charged) separately.
//!
//! # Threads
//! The core owns none: IMMED copies run through an injected [`Spawner`]
//! (the daemon's), bounded by `max_background`; beyond it the command is
//! refused with INSUFFICIENT RESOURCES (55h/03h). Without a spawner IMMED
//! commands run to completion before returning (allowed: the status then
//! reads "completed" at once).

use crate::clock::Clock;
use crate::error::{CopyError, Refusal};
use crate::exec::blocks_of;
use crate::exec::transfer;
use crate::lock::LockMode;
use crate::remote::{Domain, RemoteSource};
use crate::source::{CopySource, From, Piece};
use crate::token::{
    CopyDomainKey, CreatorInfo, RodType, TokenError, TokenHeader, TokenLimits, TokenSpec, TokenStore, TOKEN_LEN,
};
use crate::unit::{CopyMetrics, Unit, WriteHook};
use oxcopy_storage::{check_range, Capabilities, Storage};
use parking_lot::{Mutex, RwLock};
use rand::RngCore;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Who may use a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenScope {
    /// The token is the capability (SPC, Windows): any initiator that may
    /// write the destination may use it.
    #[default]
    Domain,
    /// The writing nexus must also be able to reach the source LU.
    Initiator,
}

/// A range of blocks of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockRange {
    /// First block.
    pub lba: u64,
    /// Number of blocks.
    pub blocks: u32,
}

/// Default bound on concurrent background (IMMED) copies.
pub const DEFAULT_MAX_BACKGROUND: usize = 16;

/// Everything the daemon decides about token copy.
#[derive(Debug, Clone)]
pub struct RodConfig {
    /// The copy-domain key authenticating tokens.
    pub key: CopyDomainKey,
    /// This copy manager's identifier in the domain (stable per data directory).
    pub manager_id: [u8; 16],
    /// Per-start generation: tokens of an earlier run are unknown.
    pub generation: u64,
    /// Who may use a token.
    pub scope: TokenScope,
    /// Inactivity timeout for INACTIVITY TIMEOUT 0, seconds.
    pub default_inactivity_timeout: u32,
    /// Largest INACTIVITY TIMEOUT accepted, seconds.
    pub max_inactivity_timeout: u32,
    /// Live tokens at most.
    pub max_tokens: usize,
    /// Live tokens one initiator may hold at most.
    pub max_tokens_per_initiator: usize,
    /// Snapshot space at most, bytes (see the module docs).
    pub max_snapshot_bytes: u64,
    /// Snapshot space the tokens of one initiator may hold at most, bytes.
    pub max_snapshot_bytes_per_initiator: u64,
    /// Concurrent background copies at most.
    pub max_background: usize,
}

impl RodConfig {
    /// A random key, manager id and generation (from `rng`) with the
    /// default limits: a copy manager whose tokens mean nothing outside this
    /// process.
    pub fn ephemeral(rng: &mut dyn RngCore) -> Self {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        RodConfig {
            key: CopyDomainKey::random(rng),
            manager_id: id,
            generation: rng.next_u64(),
            scope: TokenScope::Domain,
            default_inactivity_timeout: 60,
            max_inactivity_timeout: 3600,
            max_tokens: 1024,
            max_tokens_per_initiator: 1024,
            max_snapshot_bytes: 64 << 30,
            max_snapshot_bytes_per_initiator: 64 << 30,
            max_background: DEFAULT_MAX_BACKGROUND,
        }
    }
}

/// Runs background (IMMED) copies; the daemon implements it over its
/// threads. The core never starts a thread itself.
pub trait Spawner: Send + Sync + fmt::Debug {
    /// Run `job` elsewhere, or give it back when that is not possible now.
    fn spawn(&self, job: Box<dyn FnOnce() + Send>) -> Result<(), Box<dyn FnOnce() + Send>>;
}

/// The snapshot-space account: daemon-wide, and per initiator (whose
/// tokens the space is charged to), so that one initiator cannot take it all.
#[derive(Debug)]
struct Space {
    used: AtomicU64,
    max: u64,
    max_per_owner: u64,
    by_owner: Mutex<HashMap<Arc<str>, u64>>,
    metrics: Arc<dyn CopyMetrics>,
}

impl Space {
    fn try_charge(&self, owner: &Arc<str>, n: u64) -> bool {
        let mut by_owner = self.by_owner.lock();
        let mine = by_owner.get(owner).copied().unwrap_or(0);
        if mine.checked_add(n).is_none_or(|t| t > self.max_per_owner) {
            return false;
        }
        let ok = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_add(n).filter(|&t| t <= self.max))
            .is_ok();
        if ok {
            by_owner.insert(owner.clone(), mine + n);
        }
        self.metrics.rod_snapshot_bytes(self.used.load(Ordering::Acquire));
        ok
    }
    fn release(&self, owner: &Arc<str>, n: u64) {
        let mut by_owner = self.by_owner.lock();
        if let Some(m) = by_owner.get_mut(owner) {
            *m = m.saturating_sub(n);
            if *m == 0 {
                by_owner.remove(owner);
            }
        }
        let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| Some(u.saturating_sub(n)));
        self.metrics.rod_snapshot_bytes(self.used.load(Ordering::Acquire));
    }
}

/// Bytes charged to one token (and its initiator), returned when it goes.
#[derive(Debug)]
struct Charge {
    space: Arc<Space>,
    owner: Arc<str>,
    bytes: AtomicU64,
}

impl Charge {
    fn try_add(&self, n: u64) -> bool {
        let ok = self.space.try_charge(&self.owner, n);
        if ok {
            self.bytes.fetch_add(n, Ordering::AcqRel);
        }
        ok
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.space.release(&self.owner, self.bytes.load(Ordering::Acquire));
    }
}

/// A sparse in-memory store of 64 KiB pages, for copy-on-write when the
/// backend offers no scratch file (memory LUs, test backends).
#[derive(Debug)]
struct SparseMem {
    len: u64,
    pages: Mutex<HashMap<u64, Box<[u8]>>>,
}

const PAGE: u64 = 64 << 10;

impl SparseMem {
    fn each(&self, offset: u64, len: u64, mut f: impl FnMut(u64, usize, usize, usize)) {
        let mut done = 0u64;
        while done < len {
            let pos = offset + done;
            let (page, at) = (pos / PAGE, (pos % PAGE) as usize);
            let n = (PAGE - pos % PAGE).min(len - done) as usize;
            f(page, at, n, done as usize);
            done += n as u64;
        }
    }
}

impl Storage for SparseMem {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> oxcopy_storage::Result<()> {
        check_range(self.len, offset, buf.len() as u64)?;
        let pages = self.pages.lock();
        self.each(offset, buf.len() as u64, |page, at, n, b| match pages.get(&page) {
            Some(p) => buf[b..b + n].copy_from_slice(&p[at..at + n]),
            None => buf[b..b + n].fill(0),
        });
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> oxcopy_storage::Result<()> {
        check_range(self.len, offset, buf.len() as u64)?;
        let mut pages = self.pages.lock();
        self.each(offset, buf.len() as u64, |page, at, n, b| {
            let p = pages.entry(page).or_insert_with(|| vec![0u8; PAGE as usize].into_boxed_slice());
            p[at..at + n].copy_from_slice(&buf[b..b + n]);
        });
        Ok(())
    }
    fn flush(&self) -> oxcopy_storage::Result<()> {
        Ok(())
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
}

/// Blocks preserved by copy-on-write: sorted, disjoint `[start, end)` runs.
#[derive(Debug, Default)]
struct BlockSet(Vec<(u64, u64)>);

impl BlockSet {
    /// The parts of `[s, e)` not in the set.
    fn missing(&self, s: u64, e: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut at = s;
        for &(a, b) in self.0.iter().filter(|&&(a, b)| b > s && a < e) {
            if a > at {
                out.push((at, a.min(e)));
            }
            at = at.max(b);
        }
        if at < e {
            out.push((at, e));
        }
        out
    }
    fn insert(&mut self, s: u64, e: u64) {
        self.0.push((s, e));
        self.0.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.0.len());
        for &(a, b) in &self.0 {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.0 = merged;
    }
    /// `[s, e)` split into (preserved?, start, end) pieces, in order.
    fn pieces(&self, s: u64, e: u64) -> Vec<(bool, u64, u64)> {
        let mut out = Vec::new();
        let mut at = s;
        for &(a, b) in self.0.iter().filter(|&&(a, b)| b > s && a < e) {
            if a > at {
                out.push((false, at, a));
            }
            let (ps, pe) = (a.max(at), b.min(e));
            out.push((true, ps, pe));
            at = pe;
        }
        if at < e {
            out.push((false, at, e));
        }
        out
    }
}

/// The copy-on-write state of one point-in-time token. The lock is held
/// across preserve-and-record, so a reader never sees a block marked before
/// its old data is in the store.
#[derive(Debug, Default)]
pub(crate) struct CowStore(Mutex<CowState>);

#[derive(Debug, Default)]
struct CowState {
    /// Preserved source blocks.
    preserved: BlockSet,
    /// Made at the first preservation (most tokens never need one: no file
    /// descriptor and no space until then).
    store: Option<Arc<dyn Storage>>,
}

/// A scratch store as long as `unit`'s backend: a sparse unlinked file
/// beside it, or sparse memory when the backend has no such place.
fn scratch_for(unit: &dyn Unit) -> oxcopy_storage::Result<Arc<dyn Storage>> {
    let len = unit.storage().len();
    Ok(match unit.storage().scratch(len)? {
        Some(s) => s,
        None => Arc::new(SparseMem { len, pages: Mutex::new(HashMap::new()) }),
    })
}

/// Where a token's data comes from.
#[derive(Debug)]
pub(crate) enum SourceKind {
    /// Access upon reference: the live source.
    Live,
    /// Change vulnerable: the live source; a covering write revokes.
    ChangeVulnerable,
    /// A reflink snapshot: the ranges laid end to end.
    Snapshot(Arc<dyn Storage>),
    /// Copy-on-write over the live source.
    Cow(CowStore),
}

/// What a ROD token carries: its source unit, ranges and data source. It
/// is the token's [`CopySource`].
#[derive(Debug)]
pub struct RodSource {
    unit: Arc<dyn Unit>,
    /// The PT's ranges in list order, in blocks of `unit` (empty ones dropped).
    ranges: Vec<BlockRange>,
    kind: SourceKind,
    invalid: AtomicBool,
    charge: Charge,
}

impl RodSource {
    /// Whether a write (or space exhaustion) has broken the token's promise.
    pub fn is_invalid(&self) -> bool {
        self.invalid.load(Ordering::Acquire)
    }

    fn invalidate(&self, why: &str) {
        if !self.invalid.swap(true, Ordering::AcqRel) {
            tracing::info!(why, "ROD token revoked");
        }
    }

    /// The unit the token was made on.
    pub fn unit(&self) -> &Arc<dyn Unit> {
        &self.unit
    }

    /// The ranges as the planner sees them, in this source's offsets: for a
    /// snapshot, laid end to end; otherwise the source unit's own LBAs.
    pub fn plan_ranges(&self) -> Vec<BlockRange> {
        match &self.kind {
            SourceKind::Snapshot(_) => {
                let mut at = 0u64;
                self.ranges
                    .iter()
                    .map(|r| {
                        let b = BlockRange { lba: at, blocks: r.blocks };
                        at += u64::from(r.blocks);
                        b
                    })
                    .collect()
            }
            _ => self.ranges.clone(),
        }
    }

    /// The token's reflink snapshot, if it has one: its bytes are the ROD's
    /// (offset for offset) and never change, so they may be sent from the
    /// file without locks or checks.
    pub fn snapshot(&self) -> Option<&Arc<dyn Storage>> {
        match &self.kind {
            SourceKind::Snapshot(s) => Some(s),
            _ => None,
        }
    }

    /// Bytes the ROD represents (its ranges laid end to end).
    pub fn rod_bytes(&self) -> u64 {
        let bs = u64::from(self.unit.block_size());
        self.ranges.iter().map(|r| u64::from(r.blocks) * bs).sum()
    }

    /// ROD bytes `[off, off + len)` as (source offset, length) extents in
    /// this source's offsets ([`CopySource::pieces`]).
    fn rod_extents(&self, off: u64, len: u64) -> Vec<(u64, u64)> {
        let bs = u64::from(self.unit.block_size());
        let mut out = Vec::new();
        let (mut at, end) = (0u64, off + len);
        // plan_ranges: a snapshot's ranges are its own offsets, end to end;
        // other kinds read the unit at the token's LBAs.
        for r in self.plan_ranges() {
            let n = u64::from(r.blocks) * bs;
            let (s, e) = (at.max(off), (at + n).min(end));
            if s < e {
                out.push((r.lba * bs + (s - at), e - s));
            }
            at += n;
            if at >= end {
                break;
            }
        }
        out
    }

    /// Read ROD bytes `[off, off + buf.len())` into `buf`, as a copy would:
    /// under the source's shared range locks (for a live or copy-on-write
    /// source), after checking the token still holds. What a node serves
    /// to another node of the copy domain.
    pub fn read_rod(&self, off: u64, buf: &mut [u8]) -> Result<(), CopyError> {
        let len = buf.len() as u64;
        if off.checked_add(len).is_none_or(|e| e > self.rod_bytes()) {
            return Err(CopyError::OutOfRange);
        }
        let mut at = 0usize;
        for (src, n) in self.rod_extents(off, len) {
            let _guard = self.live().map(|u| {
                let (b0, b1) = blocks_of(u, src, n);
                u.range_locks().lock(b0, b1 - b0, LockMode::Shared)
            });
            self.check()?;
            for p in self.pieces(src, n) {
                let part = &mut buf[at..at + p.len as usize];
                match &p.from {
                    From::Store(store, o) => store.read_at(part, *o)?,
                    From::Zeros => part.fill(0),
                    From::Remote(rod, o) => rod.read(*o, part)?,
                }
                at += p.len as usize;
            }
        }
        Ok(())
    }

    /// Source blocks of `[lba, lba+blocks)` this token covers.
    fn covered(&self, lba: u64, blocks: u64) -> Vec<(u64, u64)> {
        let end = lba.saturating_add(blocks);
        self.ranges
            .iter()
            .filter_map(|r| {
                let (s, e) = (r.lba.max(lba), (r.lba + u64::from(r.blocks)).min(end));
                (s < e).then_some((s, e))
            })
            .collect()
    }

    /// The write hook's work for this token (exclusive lock on the range held).
    fn before_source_write(&self, unit: &dyn Unit, lba: u64, blocks: u64) {
        if self.is_invalid() {
            return;
        }
        let covered = self.covered(lba, blocks);
        if covered.is_empty() {
            return;
        }
        let cow = match &self.kind {
            SourceKind::ChangeVulnerable => return self.invalidate("change-vulnerable source written"),
            SourceKind::Cow(c) => c,
            SourceKind::Live | SourceKind::Snapshot(_) => return,
        };
        let bs = u64::from(unit.block_size());
        let mut st = cow.0.lock();
        let todo: Vec<(u64, u64)> = covered.iter().flat_map(|&(s, e)| st.preserved.missing(s, e)).collect();
        let bytes: u64 = todo.iter().map(|(s, e)| (e - s) * bs).sum();
        if bytes == 0 {
            return;
        }
        if !self.charge.try_add(bytes) {
            return self.invalidate("snapshot space exhausted");
        }
        let store = match &st.store {
            Some(s) => s.clone(),
            None => match scratch_for(unit) {
                Ok(s) => st.store.insert(s).clone(),
                Err(err) => {
                    tracing::warn!(error = %err, "no scratch store for copy-on-write");
                    return self.invalidate("no scratch store");
                }
            },
        };
        for (s, e) in todo {
            let old = From::Store(unit.storage().clone(), s * bs);
            if let Err(err) = transfer(store.as_ref(), s * bs, &old, (e - s) * bs) {
                tracing::warn!(error = %err, "preserving point-in-time data failed");
                return self.invalidate("preserving old data failed");
            }
            st.preserved.insert(s, e);
        }
    }
}

impl CopySource for RodSource {
    fn live(&self) -> Option<&dyn Unit> {
        match self.kind {
            SourceKind::Snapshot(_) => None,
            _ => Some(self.unit.as_ref()),
        }
    }

    fn len(&self) -> u64 {
        match &self.kind {
            SourceKind::Snapshot(snap) => snap.len(),
            _ => self.unit.capacity(),
        }
    }

    /// A token whose promise broke stops the copy (checked under the
    /// source lock, after any write that broke it has run its hook).
    fn check(&self) -> Result<(), CopyError> {
        if self.is_invalid() {
            return Err(TokenError::Revoked.into());
        }
        Ok(())
    }

    fn pieces(&self, off: u64, len: u64) -> Vec<Piece> {
        let live = || From::Store(self.unit.storage().clone(), off);
        match &self.kind {
            SourceKind::Live | SourceKind::ChangeVulnerable => vec![Piece { from: live(), len }],
            SourceKind::Snapshot(snap) => vec![Piece { from: From::Store(snap.clone(), off), len }],
            SourceKind::Cow(c) => {
                // The preserved set of this range cannot change while the
                // executor holds the shared source lock; the store handle is
                // taken under the state lock.
                let bs = u64::from(self.unit.block_size().max(1));
                let st = c.0.lock();
                st.preserved
                    .pieces(off / bs, (off + len).div_ceil(bs))
                    .into_iter()
                    .map(|(kept, s, e)| {
                        let (a, b) = ((s * bs).max(off), (e * bs).min(off + len));
                        let store = match (&st.store, kept) {
                            (Some(store), true) => store.clone(),
                            _ => self.unit.storage().clone(),
                        };
                        Piece { from: From::Store(store, a), len: b - a }
                    })
                    .collect()
            }
        }
    }
}

/// The write hook installed on a source LU of point-in-time or
/// change-vulnerable tokens (chained after any hook already there).
#[derive(Debug)]
pub struct PitHook {
    sources: Mutex<Vec<Weak<RodSource>>>,
    prev: Option<Arc<dyn WriteHook>>,
}

impl WriteHook for PitHook {
    fn before_write(&self, unit: &dyn Unit, lba: u64, blocks: u64) -> Result<(), Refusal> {
        if let Some(p) = &self.prev {
            p.before_write(unit, lba, blocks)?;
        }
        let live: Vec<Arc<RodSource>> = {
            let mut v = self.sources.lock();
            v.retain(|w| w.strong_count() > 0);
            v.iter().filter_map(Weak::upgrade).collect()
        };
        for s in live {
            s.before_source_write(unit, lba, blocks);
        }
        Ok(())
    }

    /// Only while no point-in-time token of the unit is alive is a write
    /// left alone.
    fn would_act(&self, unit: &dyn Unit, lba: u64, blocks: u64) -> bool {
        self.prev.as_ref().is_some_and(|p| p.would_act(unit, lba, blocks))
            || self.sources.lock().iter().any(|w| w.strong_count() > 0)
    }
}

/// A token in use by a WRITE USING TOKEN (foreground or background); the
/// inactivity timer restarts when it is dropped, and a token in use never
/// expires.
pub struct HeldToken {
    mgr: Arc<RodManager>,
    header: TokenHeader,
    source: Arc<RodSource>,
}

impl fmt::Debug for HeldToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldToken").field("id", &self.header.id).finish_non_exhaustive()
    }
}

impl HeldToken {
    /// The token's verified fields.
    pub fn header(&self) -> &TokenHeader {
        &self.header
    }
    /// What it stands for.
    pub fn source(&self) -> &Arc<RodSource> {
        &self.source
    }
}

impl Drop for HeldToken {
    fn drop(&mut self) {
        self.mgr.store.release(self.header.id);
    }
}

/// A token held for a WRITE USING TOKEN: one of ours, or one of another
/// copy manager of the domain opened at its creator.
#[derive(Debug)]
pub enum Held {
    /// Issued here.
    Local(HeldToken),
    /// Issued by another node; its bytes are pulled from there.
    Remote(RemoteSource),
}

impl Held {
    /// The engine's source for the copy.
    pub fn source(&self) -> &dyn CopySource {
        match self {
            Held::Local(h) => h.source().as_ref(),
            Held::Remote(r) => r,
        }
    }

    /// The ROD's ranges in the source's offsets and the block length they
    /// count in (what WRITE USING TOKEN planning needs). A remote ROD is
    /// one run of blocks from 0 (split where a range's 32-bit block count
    /// would overflow).
    pub fn plan(&self) -> (Vec<BlockRange>, u32) {
        match self {
            Held::Local(h) => (h.source().plan_ranges(), h.source().unit().block_size()),
            Held::Remote(r) => {
                let info = r.info();
                let bs = info.block_size.max(1);
                let mut left = info.bytes / u64::from(bs);
                let (mut lba, mut out) = (0u64, Vec::new());
                while left > 0 {
                    let blocks = u32::try_from(left).unwrap_or(u32::MAX);
                    out.push(BlockRange { lba, blocks });
                    lba += u64::from(blocks);
                    left -= u64::from(blocks);
                }
                (out, bs)
            }
        }
    }

    /// The local unit the token was made on (`None` for a remote token).
    pub fn local_unit(&self) -> Option<&Arc<dyn Unit>> {
        match self {
            Held::Local(h) => Some(h.source().unit()),
            Held::Remote(_) => None,
        }
    }

    /// DEL_TKN: delete the token where it was made (once its users finish).
    pub fn delete(&self) {
        match self {
            Held::Local(h) => h.mgr.delete(h.header.id),
            Held::Remote(r) => {
                if let Err(e) = r.rod().delete() {
                    tracing::warn!(error = %e, "DEL_TKN: could not delete the token at the node that made it");
                }
            }
        }
    }
}

/// What a token records about its creating device beyond [`Unit`].
#[derive(Debug, Clone, Default)]
pub struct DeviceInfo {
    /// Name of the creating target (SCSI name string designator).
    pub target_name: String,
    /// Thin provisioning enabled (LBPME).
    pub lbpme: bool,
    /// Unmapped blocks read as zero (LBPRZ).
    pub lbprz: bool,
}

/// The token side of the copy manager (daemon-wide, owned by the registry).
pub struct RodManager {
    cfg: RodConfig,
    store: TokenStore<RodSource>,
    space: Arc<Space>,
    hooks: Mutex<HashMap<[u8; 16], Arc<PitHook>>>,
    spawner: RwLock<Option<Arc<dyn Spawner>>>,
    background: AtomicUsize,
    metrics: Arc<dyn CopyMetrics>,
    domain: RwLock<Option<Arc<dyn Domain>>>,
}

impl fmt::Debug for RodManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RodManager").field("cfg", &self.cfg).field("store", &self.store).finish_non_exhaustive()
    }
}

/// Decrements the background count when a background job ends.
pub struct BackgroundSlot(Arc<RodManager>);

impl Drop for BackgroundSlot {
    fn drop(&mut self) {
        self.0.background.fetch_sub(1, Ordering::AcqRel);
    }
}

impl RodManager {
    /// A manager for `cfg`, telling time by `clock`, drawing token bytes
    /// from `rng`, reporting into `metrics`.
    pub fn new(
        cfg: RodConfig,
        clock: Arc<dyn Clock>,
        rng: crate::token::TokenRng,
        metrics: Arc<dyn CopyMetrics>,
    ) -> Self {
        let limits = TokenLimits {
            max_live: cfg.max_tokens,
            max_per_owner: cfg.max_tokens_per_initiator.clamp(1, cfg.max_tokens.max(1)),
            ..TokenLimits::default()
        };
        let store =
            TokenStore::new(cfg.key.clone(), cfg.manager_id, clock, rng, limits).with_generation(cfg.generation);
        let space = Arc::new(Space {
            used: AtomicU64::new(0),
            max: cfg.max_snapshot_bytes,
            max_per_owner: cfg.max_snapshot_bytes_per_initiator,
            by_owner: Mutex::new(HashMap::new()),
            metrics: metrics.clone(),
        });
        RodManager {
            cfg,
            store,
            space,
            hooks: Mutex::new(HashMap::new()),
            spawner: RwLock::new(None),
            background: AtomicUsize::new(0),
            metrics,
            domain: RwLock::new(None),
        }
    }

    /// Join a copy domain: tokens of its other copy managers are opened
    /// there instead of being refused as remote (23h/02h).
    pub fn set_domain(&self, domain: Option<Arc<dyn Domain>>) {
        *self.domain.write() = domain;
    }

    /// Whether tokens of other copy managers are accepted (VPD 8Fh REMOTE TOKENS).
    pub fn accepts_remote(&self) -> bool {
        self.domain.read().as_ref().is_some_and(|d| d.accepts_remote())
    }

    /// The configuration.
    pub fn config(&self) -> &RodConfig {
        &self.cfg
    }

    /// The token store (tests, diagnostics).
    pub fn store(&self) -> &TokenStore<RodSource> {
        &self.store
    }

    /// Install the spawner for background copies.
    pub fn set_spawner(&self, spawner: Option<Arc<dyn Spawner>>) {
        *self.spawner.write() = spawner;
    }

    /// Bytes currently charged to point-in-time tokens.
    pub fn snapshot_bytes(&self) -> u64 {
        self.space.used.load(Ordering::Acquire)
    }

    /// Drop tokens whose promise broke (revoked, 23h/06h from now on) and
    /// expired ones, with their snapshot space; refresh the gauges. Called
    /// by every token command and periodically by the daemon.
    pub fn reap(&self) -> usize {
        let revoked = self.store.revoke_where(|_, p| p.is_invalid());
        let expired = self.store.reap();
        self.metrics.rod_tokens(self.store.live());
        self.metrics.rod_snapshot_bytes(self.snapshot_bytes());
        revoked + expired
    }

    /// Reserve a background slot, or `None` when `max_background` are running.
    pub fn background_slot(self: &Arc<Self>) -> Option<BackgroundSlot> {
        let ok = self
            .background
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.cfg.max_background).then_some(n + 1))
            .is_ok();
        ok.then(|| BackgroundSlot(self.clone()))
    }

    /// The spawner, if any.
    pub fn spawner(&self) -> Option<Arc<dyn Spawner>> {
        self.spawner.read().clone()
    }

    /// The LU's token hook, installed (chained after the current hook) on
    /// first use — and again if someone replaced it meanwhile, carrying the
    /// protected sources over, so a replaced hook never silently drops a
    /// point-in-time promise for new writes.
    fn hook_for(&self, unit: &dyn Unit) -> Arc<PitHook> {
        let mut hooks = self.hooks.lock();
        let current = unit.write_hook();
        let ours = hooks.get(&unit.id()).cloned();
        if let (Some(h), Some(c)) = (&ours, &current) {
            if std::ptr::addr_eq(Arc::as_ptr(h), Arc::as_ptr(c)) {
                return h.clone();
            }
        }
        let sources = ours.map(|h| std::mem::take(&mut *h.sources.lock())).unwrap_or_default();
        let h = Arc::new(PitHook { sources: Mutex::new(sources), prev: current });
        unit.set_write_hook(Some(h.clone() as Arc<dyn WriteHook>));
        hooks.insert(unit.id(), h.clone());
        h
    }

    /// POPULATE TOKEN's work: establish the ROD of `ranges` on `unit` with
    /// `rod_type` and issue its token, charged to initiator `owner` (its
    /// shares of live tokens and snapshot space). `device` is what the token
    /// says about the unit and its target beyond what [`Unit`] knows
    /// (provisioning, target name).
    pub fn create(
        &self,
        unit: &Arc<dyn Unit>,
        device: &DeviceInfo,
        rod_type: u32,
        ranges: &[BlockRange],
        timeout_secs: u32,
        owner: &str,
    ) -> Result<(Box<[u8; TOKEN_LEN]>, u64), CopyError> {
        let lu = unit;
        let bs = u64::from(lu.block_size());
        let ranges: Vec<BlockRange> = ranges.iter().copied().filter(|r| r.blocks > 0).collect();
        let total_blocks: u64 = ranges.iter().map(|r| u64::from(r.blocks)).sum();
        let byte_ranges: Vec<(u64, u64)> = ranges.iter().map(|r| (r.lba * bs, u64::from(r.blocks) * bs)).collect();
        // The point in time: no write is in progress on any source range
        // while these are held (taken in LBA order, the LU's lock order).
        let mut sorted = ranges.clone();
        sorted.sort_by_key(|r| r.lba);
        let _guards: Vec<_> =
            sorted.iter().map(|r| lu.range_locks().lock(r.lba, u64::from(r.blocks), LockMode::Shared)).collect();
        let charge = Charge { space: self.space.clone(), owner: Arc::from(owner), bytes: AtomicU64::new(0) };
        let kind = match rod_type {
            RodType::ACCESS_UPON_REFERENCE => SourceKind::Live,
            RodType::POINT_IN_TIME_CHANGE_VULNERABLE => SourceKind::ChangeVulnerable,
            _ => {
                let snap = match lu.storage().snapshot(&byte_ranges) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "reflink snapshot failed; using copy-on-write");
                        None
                    }
                };
                match snap {
                    Some(snap) => {
                        if !charge.try_add(total_blocks * bs) {
                            return Err(CopyError::NoSnapshotSpace);
                        }
                        SourceKind::Snapshot(snap)
                    }
                    None => SourceKind::Cow(CowStore::default()),
                }
            }
        };
        let protects = matches!(kind, SourceKind::ChangeVulnerable | SourceKind::Cow(_));
        // A snapshot in shared storage (RBD) can be read by another node of
        // the same cluster without this one: the token says where.
        let locator = match &kind {
            SourceKind::Snapshot(snap) => snap.shared_locator(),
            _ => None,
        };
        let source = Arc::new(RodSource { unit: lu.clone(), ranges, kind, invalid: AtomicBool::new(false), charge });
        if protects {
            self.hook_for(lu.as_ref()).sources.lock().push(Arc::downgrade(&source));
        }
        let spec = TokenSpec {
            rod_type,
            creator: CreatorInfo {
                naa: lu.id(),
                block_size: lu.block_size(),
                lbppbe: 0,
                lbpme: device.lbpme,
                lbprz: device.lbprz,
                generation: self.cfg.generation,
            },
            target_name: device.target_name.clone(),
            bytes: u128::from(total_blocks * bs),
            inactivity_timeout: Duration::from_secs(u64::from(timeout_secs.max(1))),
            owner: owner.to_owned(),
            locator,
        };
        let token = self.store.issue_shared(&spec, source)?;
        self.metrics.rod_tokens(self.store.live());
        Ok((token, total_blocks))
    }

    /// Verify `token` and hold it for a WRITE USING TOKEN: one of ours
    /// ([`RodManager::acquire_local`]), or — when this copy manager is in a
    /// domain — one of another copy manager's, opened at its creator. The
    /// MAC is checked first, so a forged token never reaches another node.
    pub fn acquire(self: &Arc<Self>, token: &[u8]) -> Result<Held, CopyError> {
        let header = self.store.verify(token)?;
        if self.store.locate(&header) == Err(TokenError::Remote) {
            let domain = self.domain.read().clone();
            let (Some(domain), Ok(t)) = (domain, <&[u8; TOKEN_LEN]>::try_from(token)) else {
                return Err(TokenError::Remote.into());
            };
            return Ok(Held::Remote(RemoteSource::new(domain.open(t, &header)?)));
        }
        Ok(Held::Local(self.acquire_local(token)?))
    }

    /// Verify `token`, which must be one of ours from this run, and hold it
    /// (what the node link serves to other nodes). A token whose promise
    /// broke is revoked here (23h/06h).
    pub fn acquire_local(self: &Arc<Self>, token: &[u8]) -> Result<HeldToken, TokenError> {
        let (header, source) = self.store.acquire_raw(token)?;
        let held = HeldToken { mgr: self.clone(), header, source };
        if held.source.is_invalid() {
            let id = held.header.id;
            drop(held);
            self.store.revoke_where(|h, _| h.id == id);
            return Err(TokenError::Revoked);
        }
        Ok(held)
    }

    /// DEL_TKN: the token is gone once its current users finish.
    pub fn delete(&self, id: u64) {
        self.store.delete(id);
        self.metrics.rod_tokens(self.store.live());
    }

    /// The POPULATE TOKEN of this token was aborted.
    pub fn cancel(&self, id: u64) {
        self.store.cancel(id);
        self.metrics.rod_tokens(self.store.live());
    }

    /// The first 96 bytes of live tokens created by the LU `naa` (REPORT ALL ROD TOKENS).
    pub fn management_tokens(&self, naa: &[u8; 16], max: usize) -> Vec<[u8; 96]> {
        self.store
            .tokens(usize::MAX)
            .into_iter()
            .filter(|t| &t[24..40] == naa)
            .take(max)
            .map(|t| {
                let mut m = [0u8; 96];
                m.copy_from_slice(&t[..96]);
                m
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_set_algebra() {
        let mut s = BlockSet::default();
        s.insert(10, 20);
        s.insert(30, 40);
        assert_eq!(s.missing(0, 50), vec![(0, 10), (20, 30), (40, 50)]);
        assert_eq!(s.missing(12, 18), vec![]);
        s.insert(20, 30);
        assert_eq!(s.0, vec![(10, 40)]);
        assert_eq!(s.pieces(5, 45), vec![(false, 5, 10), (true, 10, 40), (false, 40, 45)]);
        assert_eq!(s.pieces(15, 16), vec![(true, 15, 16)]);
    }

    #[test]
    fn sparse_mem_reads_zero_where_unwritten() {
        let m = SparseMem { len: 3 * PAGE, pages: Mutex::new(HashMap::new()) };
        m.write_at(&[7u8; 100], PAGE - 50).unwrap();
        let mut b = vec![1u8; 200];
        m.read_at(&mut b, PAGE - 100).unwrap();
        assert_eq!(&b[..50], &[0u8; 50][..]);
        assert_eq!(&b[50..150], &[7u8; 100][..]);
        assert_eq!(&b[150..], &[0u8; 50][..]);
        assert_eq!(m.pages.lock().len(), 2);
        assert!(m.write_at(&[0], 3 * PAGE).is_err());
    }
}
