//! Storage backends behind oxcopy logical units.
//!
//! A backend is a byte-addressed, fixed-size store. The SCSI layer calls it
//! synchronously from a blocking worker thread (never from the async reactor),
//! so every method here may block on disk I/O.
//!
//! Capabilities differ per backend and per file (a LUN on XFS can reflink, one
//! on ext4 cannot), so they are discovered at open time and reported by
//! [`Storage::capabilities`]; `copy_range` always succeeds by *some* method
//! and reports which one it used, so a missing fast path never fails a copy.

mod error;
mod file;
mod mapped;
mod mem;
mod write_behind;

pub use error::{Result, StorageError, StorageErrorKind};
pub use file::{remove_stale_temporaries, FileStorage, OpenOptions};
pub use mapped::{copy_mapped, Extent};
pub use mem::MemStorage;

use std::os::fd::BorrowedFd;
use std::sync::Arc;

/// How a range copy was (or would be) carried out, cheapest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CopyMethod {
    /// A hole in the source: nothing read; the destination range was
    /// deallocated (or zeroed where deallocation does not read back zero).
    Hole,
    /// Extents shared with FICLONERANGE (metadata only).
    Reflink,
    /// In-kernel copy with copy_file_range(2).
    CopyFileRange,
    /// Positional reads and writes through a reused buffer.
    ReadWrite,
    /// No source at all: the destination was zero-filled (deallocated where
    /// that reads back zero), as for the block device zero ROD token.
    Zero,
    /// Pulled from another node of the copy domain over the node link.
    Remote,
    /// Copied by the Ceph OSDs themselves (RADOS `copy_from` of whole
    /// objects between RBD images): nothing passed through the gateway.
    Rados,
    /// Read and written by the gateway through librbd (RBD to RBD where the
    /// OSDs could not copy: unaligned ends, other cluster, unsupported image).
    Rbd,
}

impl CopyMethod {
    /// Every method, cheapest first (for metrics label sets).
    pub const ALL: [CopyMethod; 8] = [
        CopyMethod::Hole,
        CopyMethod::Reflink,
        CopyMethod::CopyFileRange,
        CopyMethod::ReadWrite,
        CopyMethod::Zero,
        CopyMethod::Remote,
        CopyMethod::Rados,
        CopyMethod::Rbd,
    ];

    /// Stable lower-case name, used as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyMethod::Hole => "hole",
            CopyMethod::Reflink => "reflink",
            CopyMethod::CopyFileRange => "copy_file_range",
            CopyMethod::ReadWrite => "read_write",
            CopyMethod::Zero => "zero",
            CopyMethod::Remote => "remote",
            CopyMethod::Rados => "rados",
            CopyMethod::Rbd => "rbd",
        }
    }
}

/// Bytes moved by each method during one `copy_range` call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Bytes of source holes, deallocated/zeroed in the destination.
    pub hole: u64,
    /// Bytes shared with FICLONERANGE.
    pub reflink: u64,
    /// Bytes copied in the kernel with copy_file_range(2).
    pub copy_file_range: u64,
    /// Bytes copied through a userspace buffer.
    pub read_write: u64,
    /// Bytes zero-filled with no source.
    pub zero: u64,
    /// Bytes pulled from another node of the copy domain.
    pub remote: u64,
    /// Bytes copied by the Ceph OSDs (RADOS `copy_from`).
    pub rados: u64,
    /// Bytes read and written through librbd by the gateway.
    pub rbd: u64,
}

impl CopyReport {
    /// All bytes accounted for, whatever the method (equals the copy length).
    pub fn total(&self) -> u64 {
        self.hole
            + self.reflink
            + self.copy_file_range
            + self.read_write
            + self.zero
            + self.remote
            + self.rados
            + self.rbd
    }

    /// Bytes attributed to `method`.
    pub fn get(&self, method: CopyMethod) -> u64 {
        match method {
            CopyMethod::Hole => self.hole,
            CopyMethod::Reflink => self.reflink,
            CopyMethod::CopyFileRange => self.copy_file_range,
            CopyMethod::ReadWrite => self.read_write,
            CopyMethod::Zero => self.zero,
            CopyMethod::Remote => self.remote,
            CopyMethod::Rados => self.rados,
            CopyMethod::Rbd => self.rbd,
        }
    }

    /// Account `bytes` to `method`.
    pub fn add(&mut self, method: CopyMethod, bytes: u64) {
        match method {
            CopyMethod::Hole => self.hole += bytes,
            CopyMethod::Reflink => self.reflink += bytes,
            CopyMethod::CopyFileRange => self.copy_file_range += bytes,
            CopyMethod::ReadWrite => self.read_write += bytes,
            CopyMethod::Zero => self.zero += bytes,
            CopyMethod::Remote => self.remote += bytes,
            CopyMethod::Rados => self.rados += bytes,
            CopyMethod::Rbd => self.rbd += bytes,
        }
    }
    /// Add another report's figures to this one.
    pub fn merge(&mut self, other: &CopyReport) {
        self.hole += other.hole;
        self.reflink += other.reflink;
        self.copy_file_range += other.copy_file_range;
        self.read_write += other.read_write;
        self.zero += other.zero;
        self.remote += other.remote;
        self.rados += other.rados;
        self.rbd += other.rbd;
    }
}

/// What a backend can do beyond plain reads and writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `discard` deallocates (punches holes).
    pub discard: bool,
    /// Reading a discarded range returns zeroes.
    pub discard_zeroes: bool,
    /// `allocation` reports real mapped/unmapped state.
    pub allocation_status: bool,
    /// FICLONERANGE worked on this file when probed at open.
    pub reflink: bool,
    /// Filesystem block size (alignment needed for reflink), bytes.
    pub fs_block_size: u32,
}

/// One run of equal allocation state starting at the queried offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocationRun {
    /// True when the run is backed by data (or unknown); false for a hole.
    pub mapped: bool,
    /// Length of the run in bytes (> 0, clipped to the queried length).
    pub len: u64,
}

/// A fixed-size byte store. All offsets and lengths are in bytes; callers
/// (the SCSI layer) guarantee `offset + len <= self.len()` and never pass
/// ranges that overflow `u64`. Implementations must still check and return
/// `StorageErrorKind::OutOfRange` rather than touch bytes outside the store.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Size in bytes: fixed, except that [`Storage::grow`] may raise it.
    fn len(&self) -> u64;

    /// Grow the store to `new_len` bytes (the new bytes read as zeroes);
    /// never shrinks. Default: `Unsupported` (fixed-size backends).
    fn grow(&self, new_len: u64) -> Result<()> {
        Err(StorageError::new(
            StorageErrorKind::Unsupported,
            format!("this store cannot grow from {} to {new_len} bytes", self.len()),
        ))
    }

    /// True when the store holds zero bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fill `buf` from `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;

    /// Fill `buf` from `offset` only if that needs no waiting: every byte is
    /// in memory already (the page cache, for files). `Ok(true)`: `buf` is
    /// filled. `Ok(false)`: it would have waited, and `buf` holds nothing
    /// promised; the caller reads with [`Storage::read_at`] where waiting is
    /// allowed. Lets a transport answer a cached read on the thread that
    /// received it instead of handing it to an I/O thread. Default: never.
    fn try_read_at(&self, buf: &mut [u8], offset: u64) -> Result<bool> {
        let _ = (buf, offset);
        Ok(false)
    }

    /// Write all of `buf` at `offset` only if that is quick, so a transport
    /// may do it on the thread that received it. `Ok(true)`: written, as by
    /// [`Storage::write_at`]. `Ok(false)`: nothing written; the caller uses
    /// `write_at` where waiting is allowed. Files: a non-blocking buffered
    /// write where the file system has one (XFS, btrfs); elsewhere a plain
    /// write as long as such writes have been quick (see `FileStorage`).
    /// Default: never.
    fn try_write_at(&self, buf: &[u8], offset: u64) -> Result<bool> {
        let _ = (buf, offset);
        Ok(false)
    }

    /// Write all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()>;

    /// Make every completed write durable (fdatasync for files).
    fn flush(&self) -> Result<()>;

    /// Capabilities discovered at open.
    fn capabilities(&self) -> Capabilities;

    /// Deallocate a range; afterwards it reads as zeroes if
    /// `capabilities().discard_zeroes`. Default: write zeroes.
    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.write_zeroes(offset, len)
    }

    /// Write zeroes over a range (may deallocate where that reads back zero).
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        generic_write_zeroes(self, offset, len)
    }

    /// Allocation state of the run that starts at `offset` (at most `len` bytes).
    fn allocation(&self, offset: u64, len: u64) -> Result<AllocationRun> {
        let _ = offset;
        Ok(AllocationRun { mapped: true, len })
    }

    /// The file descriptor behind this store, when it is a file; lets two
    /// file backends copy between each other with reflink / copy_file_range.
    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// This store as [`std::any::Any`], for a backend that copies faster
    /// between two stores of its own kind: its `copy_range` downcasts `src`
    /// to recognize one (RBD images of one cluster copy object by object on
    /// the OSDs). Default `None`: not recognizable, copies take the generic
    /// path. Wrappers must not forward it (the downcast would bypass them).
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// A point-in-time copy of `ranges` (byte offset, length), laid end to end
    /// in a new hidden store, when this backend can make one cheaply (reflink:
    /// metadata only). `Ok(None)` when it cannot — unaligned ranges, no reflink,
    /// not a file — and the caller protects the ranges by copy-on-write instead.
    /// The store is unlinked: nothing is left behind after a crash.
    fn snapshot(&self, ranges: &[(u64, u64)]) -> Result<Option<Arc<dyn Storage>>> {
        let _ = ranges;
        Ok(None)
    }

    /// For a snapshot in storage other nodes share (an RBD snapshot): 32
    /// opaque bytes with which a node connected to the same cluster opens it
    /// without this process (they travel in ROD tokens, under the MAC).
    /// `None` for local stores.
    fn shared_locator(&self) -> Option<[u8; 32]> {
        None
    }

    /// A sparse, hidden scratch store of `len` bytes beside this one (same
    /// filesystem, so copies into it may share extents), for blocks preserved
    /// by copy-on-write. `Ok(None)`: no such place; the caller uses memory.
    fn scratch(&self, len: u64) -> Result<Option<Arc<dyn Storage>>> {
        let _ = len;
        Ok(None)
    }

    /// For a store built from others (a volume): the leaf stores that hold
    /// `offset..offset+len` for reading, in order, covering the range once
    /// (one leg of a mirror). `Ok(None)` for a leaf store (a file, memory).
    /// Lets a copy be split into leaf-to-leaf pieces, each done by the
    /// cheapest method its pair allows (see [`copy_mapped`]).
    fn read_map(&self, offset: u64, len: u64) -> Result<Option<Vec<Extent>>> {
        let _ = (offset, len);
        Ok(None)
    }

    /// As [`Storage::read_map`], for writing: every place the bytes must
    /// go (each leg of a mirror: the range may be covered several times).
    fn write_map(&self, offset: u64, len: u64) -> Result<Option<Vec<Extent>>> {
        let _ = (offset, len);
        Ok(None)
    }

    /// The layout in words when this store is built from others (a volume:
    /// one line per member, stacked volumes indented); `None` for a leaf.
    fn layout(&self) -> Option<String> {
        None
    }

    /// Copy `len` bytes from `src` at `src_offset` into `self` at `dst_offset`,
    /// by the cheapest method available for each extent. `src` may be `self`,
    /// with overlapping ranges (the copy then runs in the safe direction).
    fn copy_range(&self, dst_offset: u64, src: &dyn Storage, src_offset: u64, len: u64) -> Result<CopyReport> {
        generic_copy_range(self, dst_offset, src, src_offset, len)
    }
}

/// Buffer size used by the read/write fallbacks.
pub const COPY_CHUNK: usize = 1 << 20;

/// Copy through a bounded buffer, choosing the direction that is safe when
/// `src` and `dst` are the same store and the ranges overlap.
pub fn generic_copy_range(
    dst: &(impl Storage + ?Sized),
    dst_offset: u64,
    src: &dyn Storage,
    src_offset: u64,
    len: u64,
) -> Result<CopyReport> {
    check_range(src.len(), src_offset, len)?;
    check_range(dst.len(), dst_offset, len)?;
    let mut report = CopyReport::default();
    if len == 0 {
        return Ok(report);
    }
    let mut buf = vec![0u8; COPY_CHUNK.min(len as usize)];
    // Copy backwards when the destination starts inside the source range
    // (same store): a forward copy would read bytes it has already overwritten.
    let backwards = dst_offset > src_offset && dst_offset < src_offset + len;
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64);
        let rel = if backwards { len - done - n } else { done };
        let chunk = &mut buf[..n as usize];
        src.read_at(chunk, src_offset + rel)?;
        dst.write_at(chunk, dst_offset + rel)?;
        done += n;
    }
    report.add(CopyMethod::ReadWrite, len);
    Ok(report)
}

/// Write zeroes through a bounded zero buffer.
pub fn generic_write_zeroes(dst: &(impl Storage + ?Sized), offset: u64, len: u64) -> Result<()> {
    check_range(dst.len(), offset, len)?;
    let zero = vec![0u8; COPY_CHUNK.min(len as usize)];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(zero.len() as u64) as usize;
        dst.write_at(&zero[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

/// `offset..offset+len` must lie inside a store of `size` bytes.
pub fn check_range(size: u64, offset: u64, len: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(StorageError::new(
            StorageErrorKind::OutOfRange,
            format!("range {offset}+{len} outside store of {size} bytes"),
        )),
    }
}
