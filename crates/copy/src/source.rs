//! Where copied bytes come from.
//!
//! A [`CopySource`] tells the executor three things: whether it reads a live
//! unit (then the executor takes that unit's shared range lock with the
//! destination's exclusive one, in the global order, and copies overlapping
//! ranges like `memmove`), whether it is still usable (checked under the
//! locks before every chunk: a revoked token stops the copy), and which
//! stores hold the bytes of a range ([`Piece`]s, moved by
//! [`crate::exec::transfer`]). Kinds today: [`LiveSource`] (EXTENDED COPY, and
//! tokens read upon reference), [`Zeros`] (the zero ROD token) and
//! [`crate::rod::RodSource`] (a token's reflink snapshot or copy-on-write
//! store) and [`crate::remote::RemoteSource`] (a ROD held by another node of
//! the copy domain, pulled through a [`RemoteRod`]). An RBD snapshot is one
//! more implementation; the executor does not change.

use crate::error::CopyError;
use crate::unit::Unit;
use oxcopy_storage::Storage;
use std::fmt;
use std::sync::Arc;

/// Where one piece of a source range lives.
#[derive(Debug, Clone)]
pub enum From {
    /// `store` at byte `offset`.
    Store(Arc<dyn Storage>, u64),
    /// No data: zeros.
    Zeros,
    /// A ROD held by another copy manager, at ROD byte `offset`.
    Remote(Arc<dyn RemoteRod>, u64),
}

/// Buffer for bytes pulled from a remote ROD through user space, at most.
pub const REMOTE_BUFFER: u64 = 1 << 20;

/// What a remote ROD is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteInfo {
    /// NUMBER OF BYTES REPRESENTED.
    pub bytes: u64,
    /// The creating unit's block length.
    pub block_size: u32,
    /// ROD TYPE of the token.
    pub rod_type: u32,
}

/// A ROD held by another copy manager of the copy domain, opened for
/// reading (the daemon implements it over the node link). Offsets are ROD
/// byte offsets: the token's ranges laid end to end. Reads normally
/// continue where the previous one ended; an implementation streams.
pub trait RemoteRod: Send + Sync + fmt::Debug {
    /// Size and kind of the ROD.
    fn info(&self) -> RemoteInfo;
    /// Fill `buf` with ROD bytes starting at `offset`. Errors say why the
    /// creator could not deliver: [`CopyError::Unreachable`] (gone, not
    /// answering), [`CopyError::Token`] (the token was refused there, with
    /// the creator's reason), [`CopyError::RemoteFailed`] (anything else).
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), CopyError>;
    /// `[offset, offset + len)` is read next, in order (start streaming it).
    fn prefetch(&self, _offset: u64, _len: u64) {}
    /// Write ROD bytes `[offset, offset + len)` into `dst` at byte
    /// `dst_offset` (the executor's move, range locks held). The default
    /// goes through one bounded buffer; an implementation may let the
    /// kernel move the bytes from its socket to `dst`'s file instead.
    fn copy_to(&self, offset: u64, len: u64, dst: &dyn Storage, dst_offset: u64) -> Result<(), CopyError> {
        let mut buf = vec![0u8; usize::try_from(len.min(REMOTE_BUFFER)).unwrap_or(0)];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            let b = &mut buf[..n];
            self.read(offset + done, b)?;
            dst.write_at(b, dst_offset + done)?;
            done += n as u64;
        }
        Ok(())
    }
    /// DEL_TKN: delete the token at its creator (once its users finish).
    fn delete(&self) -> Result<(), CopyError>;
    /// The ROD as a store this node reads itself — a snapshot in storage
    /// the creator shares with this node (an RBD snapshot read straight from
    /// the cluster). The executor then copies from it as from a local
    /// snapshot, and the destination's `copy_range` picks the method (a
    /// server-side copy inside the cluster where it can). `None`: the bytes
    /// come from the creator through [`RemoteRod::read`].
    fn store(&self) -> Option<Arc<dyn Storage>> {
        None
    }
}

/// A piece of a source range: `len` bytes from `from`.
#[derive(Debug, Clone)]
pub struct Piece {
    /// Where the bytes are.
    pub from: From,
    /// How many.
    pub len: u64,
}

/// A source of copied bytes (see the module docs).
pub trait CopySource: Send + Sync + fmt::Debug {
    /// The unit read live, under its shared range lock; `None` for a source
    /// that nothing else writes (a snapshot, zeros).
    fn live(&self) -> Option<&dyn Unit>;
    /// Bytes addressable in this source (offsets of [`CopySource::pieces`]).
    fn len(&self) -> u64;
    /// Whether the source holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Called under the chunk's locks before any byte moves.
    fn check(&self) -> Result<(), CopyError> {
        Ok(())
    }
    /// The largest chunk worth copying under one set of locks, if this
    /// source wants smaller ones than the executor's (a remote source:
    /// cancellation acts between chunks, and a network is slower than a
    /// reflink).
    fn max_chunk(&self) -> Option<u64> {
        None
    }
    /// The pieces holding source bytes `[offset, offset + len)`, in order,
    /// their lengths adding up to `len`. Called under the chunk's locks.
    fn pieces(&self, offset: u64, len: u64) -> Vec<Piece>;
}

/// A live unit's bytes.
#[derive(Debug, Clone)]
pub struct LiveSource(pub Arc<dyn Unit>);

impl CopySource for LiveSource {
    fn live(&self) -> Option<&dyn Unit> {
        Some(self.0.as_ref())
    }
    fn len(&self) -> u64 {
        self.0.capacity()
    }
    fn pieces(&self, offset: u64, len: u64) -> Vec<Piece> {
        vec![Piece { from: From::Store(self.0.storage().clone(), offset), len }]
    }
}

/// Endless zeros (the block device zero ROD token).
#[derive(Debug, Clone, Copy, Default)]
pub struct Zeros;

impl CopySource for Zeros {
    fn live(&self) -> Option<&dyn Unit> {
        None
    }
    fn len(&self) -> u64 {
        u64::MAX
    }
    fn pieces(&self, _offset: u64, len: u64) -> Vec<Piece> {
        vec![Piece { from: From::Zeros, len }]
    }
}
