//! ROD tokens: the 512-byte layout of the digest §5.1, authenticated with
//! HMAC-SHA256 under the copy-domain key, and the [`TokenStore`] that issues,
//! verifies, reference-counts, expires, deletes and revokes them.
//!
//! Layout of a token this copy manager issues (big-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | ROD TYPE |
//! | 4..6 | reserved |
//! | 6..8 | ROD TOKEN LENGTH = 01F8h |
//! | 8..16 | COPY MANAGER ROD TOKEN IDENTIFIER (per-store counter) |
//! | 16..48 | CREATOR LOGICAL UNIT DESCRIPTOR: E4h CSCD with the creator's NAA designator, block length at 45..48 |
//! | 48..64 | NUMBER OF BYTES REPRESENTED (128-bit) |
//! | 64..96 | SHARED-STORAGE LOCATOR: where a node of the same storage cluster finds the ROD without its creator (an RBD snapshot: `oxcopy_storage::Storage::shared_locator`); all zero when none |
//! | 96..128 | DEVICE TYPE SPECIFIC DATA (READ CAPACITY(16) bytes 8..: block length, LBPPBE, LBPME/LBPRZ) |
//! | 128..416 | TARGET DEVICE DESCRIPTOR: SCSI name string designator of the creating target |
//! | 416..432 | copy manager identifier (which daemon of the copy domain issued it) |
//! | 432..440 | GENERATION: the issuing daemon's per-start generation (a token of an earlier run is unknown) |
//! | 440..448 | reserved |
//! | 448..480 | 32 random bytes |
//! | 480..512 | HMAC-SHA256(copy-domain key, bytes 0..480) |
//!
//! Verification ([`TokenStore::acquire`]) checks the MAC in constant time
//! *before* any lookup, so a forged or corrupted token never reaches the
//! table: bad MAC → TOKEN CORRUPT (23h/05h); authentic but not in the table
//! → TOKEN UNKNOWN (23h/04h) unless a bounded tombstone list remembers why it
//! left (deleted 23h/09h, expired 23h/07h, revoked 23h/06h, cancelled 23h/08h);
//! authentic but issued by another copy manager of the domain → REMOTE TOKEN
//! USAGE NOT SUPPORTED (23h/02h), the door a cross-node copy domain will open.
//!
//! The store has no clock thread: time comes from a [`Clock`], and expired
//! tokens are reaped lazily on every access and by [`TokenStore::reap`],
//! which the daemon may call periodically.

use crate::clock::Clock;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use rand::RngCore;
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Randomness passed in: token bytes and identifiers come from it.
pub type TokenRng = Box<dyn RngCore + Send>;
use subtle::ConstantTimeEq;
use thiserror::Error;

/// Length of every ROD token, bytes.
pub const TOKEN_LEN: usize = 512;
/// ROD TOKEN LENGTH field value: bytes after byte 7.
pub const TOKEN_LENGTH_FIELD: u16 = 0x01F8;
/// Length of a copy-domain key, bytes.
pub const KEY_LEN: usize = 32;

mod off {
    pub const ROD_TYPE: usize = 0;
    pub const LENGTH: usize = 6;
    pub const ID: usize = 8;
    pub const CREATOR: usize = 16;
    pub const BYTES: usize = 48;
    pub const LOCATOR: usize = 64;
    pub const DEVICE_SPECIFIC: usize = 96;
    pub const TARGET_DESIGNATOR: usize = 128;
    pub const TARGET_DESIGNATOR_END: usize = 416;
    pub const MANAGER_ID: usize = 416;
    pub const GENERATION: usize = 432;
    pub const RANDOM: usize = 448;
    pub const MAC: usize = 480;
}

/// ROD TYPE values (digest §5.2).
pub struct RodType;

impl RodType {
    /// Copy-manager internal format (POPULATE TOKEN RTV=0 asks for the default, which we make point in time).
    pub const INTERNAL: u32 = 0x0000_0000;
    /// Access upon reference: data read when the token is used.
    pub const ACCESS_UPON_REFERENCE: u32 = 0x0001_0000;
    /// Point in time, default flavour.
    pub const POINT_IN_TIME_DEFAULT: u32 = 0x0080_0000;
    /// Point in time, change vulnerable: invalidated by a write to a covered range.
    pub const POINT_IN_TIME_CHANGE_VULNERABLE: u32 = 0x0080_0001;
    /// Point in time, persistent: preserved even if the source is overwritten.
    pub const POINT_IN_TIME_PERSISTENT: u32 = 0x0080_0002;
    /// Block device zero ROD token (well known, SBC-3).
    pub const BLOCK_DEVICE_ZERO: u32 = 0xFFFF_0001;
}

/// A 32-byte copy-domain key. `Debug` never shows the bytes.
#[derive(Clone)]
pub struct CopyDomainKey([u8; KEY_LEN]);

impl CopyDomainKey {
    /// Wrap raw key bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        CopyDomainKey(bytes)
    }

    /// A fresh key from `rng`.
    pub fn random(rng: &mut dyn RngCore) -> Self {
        let mut k = [0u8; KEY_LEN];
        rng.fill_bytes(&mut k);
        CopyDomainKey(k)
    }

    /// The raw bytes (for persisting the key; keep them secret).
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for CopyDomainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CopyDomainKey(..)")
    }
}

/// Why a copy-domain key could not be obtained.
#[derive(Debug, Error)]
pub enum KeyError {
    /// Reading or creating the key failed.
    #[error("copy-domain key {path}: {source}")]
    Io {
        /// Where the key lives.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The key exists but is not exactly 32 bytes.
    #[error("copy-domain key {path}: {len} bytes, expected {KEY_LEN}")]
    BadLength {
        /// Where the key lives.
        path: String,
        /// The length found.
        len: u64,
    },
    /// The key file is readable or writable by group or others.
    #[error("copy-domain key {path}: mode {mode:o} gives access beyond the owner (want 0600)")]
    InsecureMode {
        /// Where the key lives.
        path: String,
        /// The permission bits found.
        mode: u32,
    },
}

/// Where the copy-domain key comes from. The daemon implements it over a
/// file (created with mode 0600 at first start); the SCSI crate stays
/// I/O-free.
pub trait KeySource {
    /// The key, creating and persisting a fresh one if there is none yet.
    fn load_or_create(&self) -> Result<CopyDomainKey, KeyError>;
}

/// Why a token is refused (front ends map each to their status: the SCSI
/// copy edge to ILLEGAL REQUEST 23h/xx, 55h/0Dh).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TokenError {
    /// The token field is not 512 bytes (23h/0Ah).
    #[error("invalid token length")]
    InvalidLength,
    /// Malformed, or the MAC does not verify (23h/05h).
    #[error("token corrupt")]
    Corrupt,
    /// Authentic but unknown here (23h/04h).
    #[error("token unknown")]
    Unknown,
    /// Issued by another copy manager of the domain (23h/02h).
    #[error("remote token usage not supported")]
    Remote,
    /// Revoked: its LU was deleted, resized or reconfigured, or it could no longer be honoured (23h/06h).
    #[error("token revoked")]
    Revoked,
    /// Its inactivity timeout elapsed (23h/07h).
    #[error("token expired")]
    Expired,
    /// Its POPULATE TOKEN was aborted (23h/08h).
    #[error("token cancelled")]
    Cancelled,
    /// Deleted by DEL_TKN (23h/09h).
    #[error("token deleted")]
    Deleted,
    /// The ROD type is not supported for this use (23h/01h).
    #[error("unsupported token type")]
    UnsupportedType,
    /// No room for another live token (55h/0Dh).
    #[error("too many live tokens")]
    TooMany,
    /// The requesting initiator holds its share of live tokens (55h/0Dh).
    #[error("the initiator holds its share of live tokens")]
    InitiatorShare,
}

/// What the token says about the LU that created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatorInfo {
    /// The creator LU's NAA designator (VPD 83h), 16 bytes.
    pub naa: [u8; 16],
    /// Its logical block length, bytes.
    pub block_size: u32,
    /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT.
    pub lbppbe: u8,
    /// Thin provisioning enabled (LBPME).
    pub lbpme: bool,
    /// Unmapped blocks read as zero (LBPRZ).
    pub lbprz: bool,
    /// The issuing copy manager's per-start generation ([`TokenStore::with_generation`]).
    pub generation: u64,
}

/// Everything POPULATE TOKEN decides about a new token.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// ROD TYPE to put in the token (never the zero token).
    pub rod_type: u32,
    /// The creating LU.
    pub creator: CreatorInfo,
    /// SCSI name of the creating target (iSCSI IQN); truncated to fit.
    pub target_name: String,
    /// NUMBER OF BYTES REPRESENTED.
    pub bytes: u128,
    /// Inactivity timeout (already validated against the maximum; non-zero).
    pub inactivity_timeout: Duration,
    /// Who asked for it (the initiator's name): its share of live tokens is bounded.
    pub owner: String,
    /// Where another node of the same storage cluster can read the ROD
    /// itself (bytes 64..96); `None`: only through the creator.
    pub locator: Option<[u8; LOCATOR_LEN]>,
}

/// Length of the shared-storage locator of a token.
pub const LOCATOR_LEN: usize = 32;

/// Limits of a [`TokenStore`].
#[derive(Debug, Clone, Copy)]
pub struct TokenLimits {
    /// Live tokens at most (POPULATE TOKEN beyond → 55h/0Dh).
    pub max_live: usize,
    /// Live tokens one owner (initiator) may hold at most, so that one
    /// initiator cannot starve the others (beyond → 55h/0Dh).
    pub max_per_owner: usize,
    /// How many ended tokens are remembered for precise sense (older ones read as unknown).
    pub max_tombstones: usize,
}

impl Default for TokenLimits {
    fn default() -> Self {
        TokenLimits { max_live: 1024, max_per_owner: 1024, max_tombstones: 4096 }
    }
}

/// A token's data as parsed from its (verified) bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHeader {
    /// ROD TYPE.
    pub rod_type: u32,
    /// COPY MANAGER ROD TOKEN IDENTIFIER.
    pub id: u64,
    /// The creator LU's NAA designator.
    pub creator_naa: [u8; 16],
    /// The creator LU's block length.
    pub block_size: u32,
    /// NUMBER OF BYTES REPRESENTED.
    pub bytes: u128,
    /// Issuing copy manager.
    pub manager_id: [u8; 16],
    /// Creator LU generation.
    pub generation: u64,
    /// Shared-storage locator (bytes 64..96), `None` when all zero.
    pub locator: Option<[u8; LOCATOR_LEN]>,
}

/// The 512-byte block device zero ROD token (digest §5.3).
pub fn zero_token() -> [u8; TOKEN_LEN] {
    let mut t = [0u8; TOKEN_LEN];
    t[off::ROD_TYPE..off::ROD_TYPE + 4].copy_from_slice(&RodType::BLOCK_DEVICE_ZERO.to_be_bytes());
    t[off::LENGTH..off::LENGTH + 2].copy_from_slice(&TOKEN_LENGTH_FIELD.to_be_bytes());
    t
}

/// Whether `token` is the block device zero token (recognised from bytes 0..4, as CTL does).
pub fn is_zero_token(token: &[u8]) -> bool {
    token.get(0..4) == Some(&RodType::BLOCK_DEVICE_ZERO.to_be_bytes()[..])
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Parse the fields of a token whose MAC has been verified.
fn parse_header(t: &[u8; TOKEN_LEN]) -> TokenHeader {
    let rod_type = u32::from_be_bytes([t[0], t[1], t[2], t[3]]);
    let mut creator_naa = [0u8; 16];
    creator_naa.copy_from_slice(&t[off::CREATOR + 8..off::CREATOR + 24]);
    let block_size = u32::from_be_bytes([0, t[off::CREATOR + 29], t[off::CREATOR + 30], t[off::CREATOR + 31]]);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&t[off::BYTES..off::BYTES + 16]);
    let mut manager_id = [0u8; 16];
    manager_id.copy_from_slice(&t[off::MANAGER_ID..off::MANAGER_ID + 16]);
    let mut locator = [0u8; LOCATOR_LEN];
    locator.copy_from_slice(&t[off::LOCATOR..off::LOCATOR + LOCATOR_LEN]);
    TokenHeader {
        rod_type,
        id: be_u64(&t[off::ID..]),
        creator_naa,
        block_size,
        bytes: u128::from_be_bytes(bytes),
        manager_id,
        generation: be_u64(&t[off::GENERATION..]),
        locator: (locator != [0u8; LOCATOR_LEN]).then_some(locator),
    }
}

/// Lay out the unauthenticated part of a token (everything but the MAC).
fn build_body(spec: &TokenSpec, id: u64, manager_id: &[u8; 16], rng: &mut dyn RngCore) -> [u8; TOKEN_LEN] {
    let mut t = [0u8; TOKEN_LEN];
    t[off::ROD_TYPE..off::ROD_TYPE + 4].copy_from_slice(&spec.rod_type.to_be_bytes());
    t[off::LENGTH..off::LENGTH + 2].copy_from_slice(&TOKEN_LENGTH_FIELD.to_be_bytes());
    t[off::ID..off::ID + 8].copy_from_slice(&id.to_be_bytes());
    // E4h identification CSCD: PDT 0 (disk), relative port 0, NAA designator
    // (binary, LU association, type 3, length 16), block length in 29..32.
    let c = off::CREATOR;
    t[c] = 0xE4;
    t[c + 4] = 0x01;
    t[c + 5] = 0x03;
    t[c + 7] = 16;
    t[c + 8..c + 24].copy_from_slice(&spec.creator.naa);
    let bs = spec.creator.block_size.to_be_bytes();
    t[c + 29..c + 32].copy_from_slice(&bs[1..4]);
    t[off::BYTES..off::BYTES + 16].copy_from_slice(&spec.bytes.to_be_bytes());
    if let Some(l) = &spec.locator {
        t[off::LOCATOR..off::LOCATOR + LOCATOR_LEN].copy_from_slice(l);
    }
    // READ CAPACITY(16) bytes 8..: block length, LBPPBE, LBPME/LBPRZ.
    let d = off::DEVICE_SPECIFIC;
    t[d..d + 4].copy_from_slice(&bs);
    t[d + 5] = spec.creator.lbppbe & 0x0F;
    t[d + 6] = (u8::from(spec.creator.lbpme) << 7) | (u8::from(spec.creator.lbprz) << 6);
    // SCSI name string designator (UTF-8, target device association, type 8),
    // NUL-terminated and padded to a multiple of 4.
    let room = off::TARGET_DESIGNATOR_END - off::TARGET_DESIGNATOR - 4;
    let name = spec.target_name.as_bytes();
    let name = &name[..name.len().min(room - 4)];
    let padded = (name.len() + 1).div_ceil(4) * 4;
    let g = off::TARGET_DESIGNATOR;
    t[g] = 0x03;
    t[g + 1] = 0x20 | 0x08;
    t[g + 3] = padded as u8;
    t[g + 4..g + 4 + name.len()].copy_from_slice(name);
    t[off::MANAGER_ID..off::MANAGER_ID + 16].copy_from_slice(manager_id);
    t[off::GENERATION..off::GENERATION + 8].copy_from_slice(&spec.creator.generation.to_be_bytes());
    rng.fill_bytes(&mut t[off::RANDOM..off::MAC]);
    t
}

/// How a token ended, remembered for precise sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Expired,
    Deleted,
    Revoked,
    Cancelled,
}

impl From<Ended> for TokenError {
    fn from(e: Ended) -> Self {
        match e {
            Ended::Expired => TokenError::Expired,
            Ended::Deleted => TokenError::Deleted,
            Ended::Revoked => TokenError::Revoked,
            Ended::Cancelled => TokenError::Cancelled,
        }
    }
}

struct Entry<P> {
    token: Box<[u8; TOKEN_LEN]>,
    owner: Arc<str>,
    header: TokenHeader,
    payload: Arc<P>,
    timeout: Duration,
    last_active: Instant,
    refs: u32,
}

struct Inner<P> {
    live: HashMap<u64, Entry<P>>,
    ended: HashMap<u64, Ended>,
    ended_order: VecDeque<u64>,
}

impl<P> Inner<P> {
    fn end(&mut self, id: u64, how: Ended, max_tombstones: usize) -> Option<Entry<P>> {
        let e = self.live.remove(&id);
        if max_tombstones > 0 {
            if self.ended.insert(id, how).is_none() {
                self.ended_order.push_back(id);
            }
            while self.ended_order.len() > max_tombstones {
                if let Some(old) = self.ended_order.pop_front() {
                    self.ended.remove(&old);
                }
            }
        }
        e
    }
}

/// The live ROD tokens of one copy manager, generic over what a token
/// carries (`P`: its ranges, snapshot handle, …).
pub struct TokenStore<P> {
    key: CopyDomainKey,
    manager_id: [u8; 16],
    clock: Arc<dyn Clock>,
    rng: Mutex<TokenRng>,
    limits: TokenLimits,
    next_id: AtomicU64,
    generation: Option<u64>,
    inner: Mutex<Inner<P>>,
}

impl<P> fmt::Debug for TokenStore<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenStore").field("live", &self.inner.lock().live.len()).finish_non_exhaustive()
    }
}

/// A token in use: while it lives the token cannot expire. Dropping it
/// marks the token active "now" (the inactivity timeout restarts).
pub struct TokenRef<'a, P> {
    store: &'a TokenStore<P>,
    header: TokenHeader,
    payload: Arc<P>,
}

impl<P> TokenRef<'_, P> {
    /// The token's verified fields.
    pub fn header(&self) -> &TokenHeader {
        &self.header
    }

    /// What the token carries.
    pub fn payload(&self) -> &Arc<P> {
        &self.payload
    }
}

impl<P> Drop for TokenRef<'_, P> {
    fn drop(&mut self) {
        self.store.release(self.header.id);
    }
}

impl<P> TokenStore<P> {
    /// A store issuing tokens as copy manager `manager_id` of the domain
    /// keyed by `key`, telling time by `clock` and drawing token bytes from `rng`.
    pub fn new(
        key: CopyDomainKey,
        manager_id: [u8; 16],
        clock: Arc<dyn Clock>,
        mut rng: TokenRng,
        limits: TokenLimits,
    ) -> Self {
        let mut first = [0u8; 8];
        rng.fill_bytes(&mut first);
        // Start the counter at a random point (top bit clear, so it never wraps in practice):
        // identifiers of a previous run, with the same key, are then almost surely unknown rather than aliased.
        let start = u64::from_be_bytes(first) >> 1;
        TokenStore {
            key,
            manager_id,
            clock,
            rng: Mutex::new(rng),
            limits,
            next_id: AtomicU64::new(start),
            generation: None,
            inner: Mutex::new(Inner { live: HashMap::new(), ended: HashMap::new(), ended_order: VecDeque::new() }),
        }
    }

    /// Only accept tokens whose GENERATION field is `generation` (the
    /// daemon's per-start value): a token of an earlier run of this copy
    /// manager is then TOKEN UNKNOWN, never mistaken for a remote one.
    pub fn with_generation(mut self, generation: u64) -> Self {
        self.generation = Some(generation);
        self
    }

    /// The per-start generation tokens must carry, if any.
    pub fn generation(&self) -> Option<u64> {
        self.generation
    }

    /// This copy manager's identifier within the copy domain.
    pub fn manager_id(&self) -> &[u8; 16] {
        &self.manager_id
    }

    /// Where a verified token comes from — the one place that decides local
    /// vs remote (a cross-node copy domain routes `Remote` to the issuing node
    /// instead of refusing it): another copy manager's → REMOTE TOKEN USAGE
    /// NOT SUPPORTED; ours from an earlier run (other generation) → TOKEN UNKNOWN.
    pub fn locate(&self, header: &TokenHeader) -> Result<(), TokenError> {
        if !bool::from(header.manager_id[..].ct_eq(&self.manager_id[..])) {
            return Err(TokenError::Remote);
        }
        match self.generation {
            Some(g) if g != header.generation => Err(TokenError::Unknown),
            _ => Ok(()),
        }
    }

    fn mac(&self, body: &[u8]) -> [u8; 32] {
        // HMAC accepts keys of any length: `new_from_slice` cannot fail.
        let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_bytes()) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        m.update(body);
        m.finalize().into_bytes().into()
    }

    /// Check a token's MAC in constant time and parse it. No table lookup.
    pub fn verify(&self, token: &[u8]) -> Result<TokenHeader, TokenError> {
        let t: &[u8; TOKEN_LEN] = token.try_into().map_err(|_| TokenError::InvalidLength)?;
        let expect = self.mac(&t[..off::MAC]);
        if !bool::from(expect[..].ct_eq(&t[off::MAC..])) {
            return Err(TokenError::Corrupt);
        }
        let h = parse_header(t);
        if t[off::LENGTH..off::LENGTH + 2] != TOKEN_LENGTH_FIELD.to_be_bytes() {
            return Err(TokenError::Corrupt);
        }
        Ok(h)
    }

    /// Issue a token for `spec`, carrying `payload`.
    pub fn issue(&self, spec: &TokenSpec, payload: P) -> Result<Box<[u8; TOKEN_LEN]>, TokenError> {
        self.issue_shared(spec, Arc::new(payload))
    }

    /// [`TokenStore::issue`] with a payload the caller keeps a handle to
    /// (a write hook holds it weakly, say).
    pub fn issue_shared(&self, spec: &TokenSpec, payload: Arc<P>) -> Result<Box<[u8; TOKEN_LEN]>, TokenError> {
        if spec.rod_type == RodType::BLOCK_DEVICE_ZERO {
            return Err(TokenError::UnsupportedType);
        }
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        self.reap_locked(&mut inner, now);
        if inner.live.len() >= self.limits.max_live {
            return Err(TokenError::TooMany);
        }
        if inner.live.values().filter(|e| *e.owner == *spec.owner).count() >= self.limits.max_per_owner {
            return Err(TokenError::InitiatorShare);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut t = Box::new(build_body(spec, id, &self.manager_id, &mut **self.rng.lock()));
        let mac = self.mac(&t[..off::MAC]);
        t[off::MAC..].copy_from_slice(&mac);
        let header = parse_header(&t);
        inner.live.insert(
            id,
            Entry {
                token: t.clone(),
                owner: Arc::from(spec.owner.as_str()),
                header,
                payload,
                timeout: spec.inactivity_timeout,
                last_active: now,
                refs: 0,
            },
        );
        Ok(t)
    }

    /// Verify `token` and take a reference on it (it cannot expire while held).
    pub fn acquire(&self, token: &[u8]) -> Result<TokenRef<'_, P>, TokenError> {
        let (header, payload) = self.acquire_raw(token)?;
        Ok(TokenRef { store: self, header, payload })
    }

    /// [`TokenStore::acquire`] without a guard: the caller must call
    /// [`TokenStore::release`] with the token's id exactly once (for a
    /// reference that outlives a borrow of the store, e.g. a background copy).
    pub fn acquire_raw(&self, token: &[u8]) -> Result<(TokenHeader, Arc<P>), TokenError> {
        let header = self.verify(token)?;
        self.locate(&header)?;
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        self.reap_locked(&mut inner, now);
        let Some(e) = inner.live.get_mut(&header.id) else {
            return Err(inner.ended.get(&header.id).map_or(TokenError::Unknown, |&how| how.into()));
        };
        if !bool::from(e.token[..].ct_eq(token)) {
            return Err(TokenError::Unknown);
        }
        e.refs = e.refs.saturating_add(1);
        e.last_active = now;
        Ok((header, e.payload.clone()))
    }

    /// Drop a reference taken by [`TokenStore::acquire_raw`]: the
    /// inactivity timeout restarts now.
    pub fn release(&self, id: u64) {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        if let Some(e) = inner.live.get_mut(&id) {
            e.refs = e.refs.saturating_sub(1);
            e.last_active = now;
        }
    }

    fn expired(e: &Entry<P>, now: Instant) -> bool {
        e.refs == 0 && now.saturating_duration_since(e.last_active) >= e.timeout
    }

    fn reap_locked(&self, inner: &mut Inner<P>, now: Instant) -> usize {
        let gone: Vec<u64> = inner.live.iter().filter(|(_, e)| Self::expired(e, now)).map(|(&id, _)| id).collect();
        for &id in &gone {
            inner.end(id, Ended::Expired, self.limits.max_tombstones);
        }
        gone.len()
    }

    /// Drop every expired token (and with it its payload, e.g. snapshot
    /// space); returns how many went.
    pub fn reap(&self) -> usize {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        self.reap_locked(&mut inner, now)
    }

    fn end_if(&self, how: Ended, mut pred: impl FnMut(&TokenHeader, &P) -> bool) -> usize {
        let mut inner = self.inner.lock();
        let gone: Vec<u64> =
            inner.live.iter().filter(|(_, e)| pred(&e.header, &e.payload)).map(|(&id, _)| id).collect();
        for &id in &gone {
            inner.end(id, how, self.limits.max_tombstones);
        }
        gone.len()
    }

    /// DEL_TKN: the token is gone once the current use completes (holders keep their payload).
    pub fn delete(&self, id: u64) -> bool {
        self.end_if(Ended::Deleted, |h, _| h.id == id) > 0
    }

    /// Cancel a token (its POPULATE TOKEN was aborted).
    pub fn cancel(&self, id: u64) -> bool {
        self.end_if(Ended::Cancelled, |h, _| h.id == id) > 0
    }

    /// Revoke every token matching `pred` (LU deleted, resized, reconfigured,
    /// or a point-in-time promise that can no longer be kept).
    pub fn revoke_where(&self, pred: impl FnMut(&TokenHeader, &P) -> bool) -> usize {
        self.end_if(Ended::Revoked, pred)
    }

    /// Revoke every token created by the LU with designator `naa`.
    pub fn revoke_creator(&self, naa: &[u8; 16]) -> usize {
        self.revoke_where(|h, _| &h.creator_naa == naa)
    }

    /// Live tokens right now (after reaping expired ones).
    pub fn live(&self) -> usize {
        self.reap();
        self.inner.lock().live.len()
    }

    /// The bytes of every live token (REPORT ALL ROD TOKENS), at most `max`.
    pub fn tokens(&self, max: usize) -> Vec<Box<[u8; TOKEN_LEN]>> {
        self.reap();
        self.inner.lock().live.values().take(max).map(|e| e.token.clone()).collect()
    }

    /// The remaining inactivity time of a live token, if any.
    pub fn remaining(&self, id: u64) -> Option<Duration> {
        let now = self.clock.now();
        let inner = self.inner.lock();
        inner.live.get(&id).map(|e| e.timeout.saturating_sub(now.saturating_duration_since(e.last_active)))
    }
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
