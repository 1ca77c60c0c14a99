//! The NVM command set I/O commands: [`parse_io`] turns a submission queue
//! entry into an [`IoCommand`] (every field checked against the namespace),
//! [`execute`] runs it on the namespace's copy-engine [`Unit`] and returns
//! the completion ([`IoOutcome`]). Synchronous: the daemon calls it on its
//! I/O thread pool. Errors become statuses in [`crate::nvm_edge`] only.
//!
//! | opcode | command | what runs |
//! |---|---|---|
//! | 00h | Flush | `Storage::flush` |
//! | 01h | Write | exclusive range lock, write hook, `write_at` (FUA: flush) |
//! | 02h | Read | shared range lock, `read_at` (FUA: flush first) |
//! | 05h | Compare | shared range lock, read, compare → COMPARE_FAILURE (FUA: flush first) |
//! | 08h | Write Zeroes | per chunk: exclusive lock, hook, zero (DEAC: deallocate) |
//! | 09h | Dataset Management | every range checked, then (AD) deallocated per chunk under lock and hook |
//! | 0Ch | Verify | shared lock per chunk, read → UNRECOVERED_READ_ERROR on failure |
//! | 19h | Copy | every range checked, then one engine run per source range |
//!
//! # Choices where the specification leaves room (or we chose)
//! - **Data length.** Read, Write and Compare need an SGL length of exactly
//!   (NLB+1) × block size, else DATA_SGL_LENGTH_INVALID (Linux nvmet's
//!   `nvmet_check_transfer_len`). Dataset Management and Copy need at least
//!   their ranges' bytes (nvmet's `nvmet_check_data_len_lte`); more is ignored.
//! - **Protection information.** No namespace here is formatted with PI:
//!   Read, Write, Compare, Verify and Write Zeroes refuse a non-zero PRINFO
//!   (and STC, CETYPE, DTYPE) with INVALID_FIELD. Copy ignores PRINFOR and
//!   PRINFOW, as NVM Command Set 1.2 §3.3.2.3 requires for a namespace
//!   without PI, and refuses CETYPE / DTYPE (no Key Per I/O, no directives).
//! - **Copy formats.** 0h and 2h are supported ([`SUPPORTED_COPY_FORMATS`]
//!   for OCFS); 2h only while the host enabled it (CDFE). 1h and 3h are PI
//!   formats: not supported, so INVALID_FIELD (NVM 1.2 §3.3.2: "not
//!   supported by the controller" comes before the Invalid Namespace or
//!   Format rule, which applies to supported formats only).
//! - **Copy validation before any byte moves.** Limits (NR+1 > MSRC+1, any
//!   NLB+1 > MSSRL, sum > MCL: COMMAND_SIZE_LIMIT_EXCEEDED), then each range
//!   in order (CETYPE, source namespace, block size, source bounds, FCO),
//!   then the destination range, then overlap (format 2h only). Since no
//!   data was written, DW0 is 0 for every one of these failures, as NVM 1.2
//!   §3.3.2.5 requires ("If no data was written to the destination LBAs,
//!   then Dword 0 ... shall be cleared to 0h") — not the index of the bad
//!   range.
//! - **Copy during execution.** Ranges run in order, one engine run each
//!   (range locks, chunking, cancellation, the write hook, reflink /
//!   copy_file_range / read-write); a failure in range *i* completes with
//!   DW0 = *i*: the lowest-numbered range not fully copied. A failed FUA
//!   flush after all ranges reports WRITE_FAULT with DW0 = 0 (nothing is
//!   known durable).
//! - **Source namespace (2h).** SNSID 0h, FFFFFFFFh or above the subsystem's
//!   NN: INVALID_NAMESPACE (Invalid Namespace or Format); an NSID in range
//!   but not attached to this controller: INVALID_FIELD (NVM 1.2 figure 39
//!   text); a different block size: INCOMPATIBLE_NAMESPACE_OR_FORMAT.
//! - **Overlap.** Format 0h: allowed (the spec leaves the overlapping
//!   blocks' contents to any source range; we copy in range order, each
//!   range like `memmove`). Format 2h: a source range in the destination
//!   namespace overlapping the destination range is OVERLAPPING_IO_RANGE.
//! - **Fast Copy Only.** A copy is fast when source and destination are
//!   both files on one file system (same `st_dev`): the kernel moves the
//!   bytes (FICLONERANGE where aligned and supported, else
//!   copy_file_range), none pass through the daemon. Otherwise FCO fails
//!   the command with FAST_COPY_NOT_POSSIBLE (DNR: the host should copy by
//!   Read and Write itself).
//! - **Dataset Management.** Every range is checked first (any past the end:
//!   LBA_OUT_OF_RANGE, nothing done). With AD on a namespace that reports
//!   deallocation (`NamespaceInfo::deallocate`), ranges are punched out
//!   (zeroed where the backend's deallocation does not read back zero);
//!   otherwise the command is advisory and does nothing. IDR/IDW and the
//!   context attributes are accepted and ignored.
//! - **Write Zeroes with DEAC** deallocates when the namespace reports
//!   deallocation and the backend's deallocation reads back zero; else it
//!   writes zeroes. Both in bounded chunks (no NLB × block-size buffer).

use crate::model::NamespaceInfo;
use crate::namespace::Namespace;
use crate::nvm_edge::{copy_status, refusal_status, storage_status, Side};
use crate::wire::command::{Opcode, Sqe, Status};
use crate::wire::nvm::{
    decode_copy_ranges, decode_dsm_ranges, CopyControl, CopyFormat, DsmAttributes, ListError, RwControl, DSM_RANGE_LEN,
};
use bytes::Bytes;
use oxcopy_copy::unit::same_unit;
use oxcopy_copy::{CancelToken, CopyMetrics, ExecControl, LiveSource, LockMode, Progress, Run, Unit};
use oxcopy_storage::Storage;
use std::sync::Arc;

/// Copy descriptor formats supported (Identify Controller OCFS: bit n =
/// format n): 0h and 2h.
pub const SUPPORTED_COPY_FORMATS: u16 = (1 << 0) | (1 << 2);

/// Identify Controller ONCS bits for the commands served here: Compare (0),
/// Dataset Management (2), Write Zeroes (3), Verify (7), Copy (8), and
/// NVMCSA (9: the write portion of a Copy follows the atomicity rules of
/// one write — each engine chunk is written under one exclusive range lock,
/// and the atomic write unit advertised is one block).
pub const ONCS: u16 = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 7) | (1 << 8) | (1 << 9);

/// Reads, writes and compares move data through one buffer in chunks of
/// this many bytes, checking for cancellation between chunks.
const IO_CHUNK: usize = 1 << 20;
/// Bytes zeroed or deallocated per storage call (under one range lock).
const ZERO_CHUNK: u64 = 64 << 20;

/// LBA range of Read, Write, Compare, Verify and Write Zeroes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rw {
    /// Starting LBA.
    pub slba: u64,
    /// Blocks (1..=65536).
    pub blocks: u32,
    /// Force Unit Access.
    pub fua: bool,
}

/// A Copy command's fields (the source ranges come with the data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyCommand {
    /// Starting destination LBA.
    pub sdlba: u64,
    /// Number of source ranges (1..=256).
    pub ranges: usize,
    /// Descriptor format.
    pub format: CopyFormat,
    /// Force Unit Access: the destination is flushed at the end.
    pub fua: bool,
}

/// A parsed, checked I/O command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoCommand {
    /// Flush (00h).
    Flush,
    /// Write (01h).
    Write(Rw),
    /// Read (02h).
    Read(Rw),
    /// Compare (05h).
    Compare(Rw),
    /// Write Zeroes (08h); `deallocate` is DEAC.
    WriteZeroes {
        /// Range.
        range: Rw,
        /// Deallocate (DEAC).
        deallocate: bool,
    },
    /// Dataset Management (09h).
    DatasetManagement {
        /// Number of ranges in the data (1..=256).
        ranges: usize,
        /// Attributes (CDW11).
        attrs: DsmAttributes,
    },
    /// Verify (0Ch).
    Verify(Rw),
    /// Copy (19h).
    Copy(CopyCommand),
}

impl IoCommand {
    /// Bytes the host sends with the command (host to controller): what the
    /// transport must receive before [`execute`].
    pub fn data_out_len(&self, block_size: u32) -> u64 {
        match self {
            IoCommand::Write(rw) | IoCommand::Compare(rw) => u64::from(rw.blocks) * u64::from(block_size),
            IoCommand::DatasetManagement { ranges, .. } => (*ranges * DSM_RANGE_LEN) as u64,
            IoCommand::Copy(c) => c.format.desc_len().map_or(0, |l| (c.ranges * l) as u64),
            _ => 0,
        }
    }
    /// Bytes returned to the host (controller to host).
    pub fn data_in_len(&self, block_size: u32) -> u64 {
        match self {
            IoCommand::Read(rw) => u64::from(rw.blocks) * u64::from(block_size),
            _ => 0,
        }
    }
    /// Whether the command writes the namespace.
    pub fn writes(&self) -> bool {
        match self {
            IoCommand::Write(_) | IoCommand::WriteZeroes { .. } | IoCommand::Copy(_) => true,
            IoCommand::DatasetManagement { attrs, .. } => attrs.contains(DsmAttributes::AD),
            _ => false,
        }
    }
}

/// What [`execute`] needs besides the namespace and the data.
pub struct IoContext<'a> {
    /// Set by Abort, connection loss or controller reset: long commands stop
    /// between chunks (ABORT_REQUESTED).
    pub cancel: &'a CancelToken,
    /// The other namespaces attached to this controller (Copy format 2h
    /// sources).
    pub lookup: &'a dyn Fn(u32) -> Option<Arc<Namespace>>,
    /// The subsystem's Number of Namespaces (Identify Controller NN): an
    /// SNSID above it is invalid, one at or below it but not attached is
    /// inactive (the two get different statuses).
    pub max_nsid: u32,
    /// Copy descriptor formats the host enabled with Host Behavior Support
    /// CDFE (bit n = format n). Format 0h is always enabled.
    pub copy_formats_enabled: u16,
    /// Copy-engine metrics (bytes per method).
    pub metrics: &'a dyn CopyMetrics,
    /// Largest chunk the engine copies under one set of range locks, bytes
    /// (0: the engine's default).
    pub chunk_bytes: u64,
}

impl std::fmt::Debug for IoContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoContext")
            .field("cancel", &self.cancel)
            .field("max_nsid", &self.max_nsid)
            .field("copy_formats_enabled", &self.copy_formats_enabled)
            .field("chunk_bytes", &self.chunk_bytes)
            .finish_non_exhaustive()
    }
}

/// A command's completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoOutcome {
    /// Status.
    pub status: Status,
    /// CQE DW0 (Copy failures: the lowest-numbered range not fully copied).
    pub result: u32,
    /// Data for the host (Read).
    pub data: Option<Bytes>,
}

impl IoOutcome {
    /// Success without data.
    pub fn success() -> Self {
        Self { status: Status::SUCCESS, result: 0, data: None }
    }
    /// A failure with DW0 = 0.
    pub fn failed(status: Status) -> Self {
        Self { status, result: 0, data: None }
    }
}

impl From<Result<Option<Bytes>, Status>> for IoOutcome {
    fn from(r: Result<Option<Bytes>, Status>) -> Self {
        match r {
            Ok(data) => Self { status: Status::SUCCESS, result: 0, data },
            Err(status) => Self::failed(status),
        }
    }
}

/// Whether `[slba, slba + blocks)` lies inside a namespace of `size` blocks.
fn in_range(size: u64, slba: u64, blocks: u64) -> bool {
    slba.checked_add(blocks).is_some_and(|end| end <= size)
}

fn rw_fields(sqe: &Sqe, info: &NamespaceInfo, data: bool, write: bool) -> Result<(Rw, RwControl), Status> {
    let ctl = RwControl::from_cdw12(sqe.cdw(12));
    // DEAC (bit 25) means something to Write Zeroes only; reserved elsewhere.
    let deac_reserved = ctl.deac && sqe.opcode() != Opcode::WRITE_ZEROES;
    if ctl.prinfo != 0 || ctl.stc || ctl.cetype != 0 || ctl.dtype != 0 || deac_reserved {
        return Err(Status::INVALID_FIELD);
    }
    let rw = Rw { slba: sqe.cdw10_11(), blocks: ctl.blocks(), fua: ctl.fua };
    if data {
        let want = u64::from(rw.blocks) * u64::from(info.block_size);
        if u64::from(sqe.sgl().len) != want {
            return Err(Status::DATA_SGL_LENGTH_INVALID);
        }
    }
    if !in_range(info.blocks, rw.slba, u64::from(rw.blocks)) {
        return Err(Status::LBA_OUT_OF_RANGE);
    }
    if write && info.read_only {
        return Err(Status::NAMESPACE_WRITE_PROTECTED);
    }
    Ok((rw, ctl))
}

/// Parse and check an I/O submission queue entry for the namespace its
/// NSID names (`None`: no such namespace attached, INVALID_NAMESPACE).
/// Unsupported opcodes: INVALID_OPCODE (checked first). Checks needing
/// the data or the controller state (Copy descriptors, CDFE) are made by
/// [`execute`] before anything is read or written.
pub fn parse_io(sqe: &Sqe, info: Option<&NamespaceInfo>) -> Result<IoCommand, Status> {
    let op = sqe.opcode();
    let known = [
        Opcode::FLUSH,
        Opcode::WRITE,
        Opcode::READ,
        Opcode::COMPARE,
        Opcode::WRITE_ZEROES,
        Opcode::DATASET_MANAGEMENT,
        Opcode::VERIFY,
        Opcode::COPY,
    ];
    if !known.contains(&op) {
        return Err(Status::INVALID_OPCODE);
    }
    let info = info.ok_or(Status::INVALID_NAMESPACE)?;
    match op {
        Opcode::FLUSH => Ok(IoCommand::Flush),
        Opcode::WRITE => rw_fields(sqe, info, true, true).map(|(rw, _)| IoCommand::Write(rw)),
        Opcode::READ => rw_fields(sqe, info, true, false).map(|(rw, _)| IoCommand::Read(rw)),
        Opcode::COMPARE => rw_fields(sqe, info, true, false).map(|(rw, _)| IoCommand::Compare(rw)),
        Opcode::VERIFY => rw_fields(sqe, info, false, false).map(|(rw, _)| IoCommand::Verify(rw)),
        Opcode::WRITE_ZEROES => {
            let (rw, ctl) = rw_fields(sqe, info, false, true)?;
            Ok(IoCommand::WriteZeroes { range: rw, deallocate: ctl.deac })
        }
        Opcode::DATASET_MANAGEMENT => {
            let ranges = (sqe.cdw(10) & 0xFF) as usize + 1;
            let attrs = DsmAttributes(sqe.cdw(11));
            if (sqe.sgl().len as usize) < ranges * DSM_RANGE_LEN {
                return Err(Status::DATA_SGL_LENGTH_INVALID);
            }
            if attrs.contains(DsmAttributes::AD) && info.read_only {
                return Err(Status::NAMESPACE_WRITE_PROTECTED);
            }
            Ok(IoCommand::DatasetManagement { ranges, attrs })
        }
        _ => parse_copy(sqe, info),
    }
}

fn parse_copy(sqe: &Sqe, info: &NamespaceInfo) -> Result<IoCommand, Status> {
    let ctl = CopyControl::from_cdw12(sqe.cdw(12));
    let format = ctl.format();
    let supported = format.bit().is_some_and(|b| SUPPORTED_COPY_FORMATS & b != 0);
    if !supported || ctl.cetype != 0 || ctl.dtype != 0 {
        return Err(Status::INVALID_FIELD);
    }
    if ctl.ranges() > usize::from(info.copy.max_ranges) {
        return Err(Status::COMMAND_SIZE_LIMIT_EXCEEDED);
    }
    let need = format.desc_len().map_or(usize::MAX, |l| l * ctl.ranges());
    if (sqe.sgl().len as usize) < need {
        return Err(Status::DATA_SGL_LENGTH_INVALID);
    }
    let sdlba = sqe.cdw10_11();
    if sdlba >= info.blocks {
        return Err(Status::LBA_OUT_OF_RANGE);
    }
    if info.read_only {
        return Err(Status::NAMESPACE_WRITE_PROTECTED);
    }
    Ok(IoCommand::Copy(CopyCommand { sdlba, ranges: ctl.ranges(), format, fua: ctl.fua }))
}

/// Run a parsed command on `ns`. `data` is what the host sent (Write,
/// Compare, Dataset Management, Copy); the outcome carries Read's data.
/// Every range is checked again here, so a command parsed for another
/// namespace fails cleanly instead of touching bytes it should not.
pub fn execute(ns: &Namespace, cmd: &IoCommand, data: Bytes, ctx: &IoContext<'_>) -> IoOutcome {
    match cmd {
        IoCommand::Flush => flush(ns).map(|()| None).into(),
        IoCommand::Read(rw) => read(ns, rw, ctx).map(Some).into(),
        IoCommand::Write(rw) => write(ns, rw, &data, ctx).map(|()| None).into(),
        IoCommand::Compare(rw) => compare(ns, rw, &data, ctx).map(|()| None).into(),
        IoCommand::Verify(rw) => verify(ns, rw, ctx).map(|()| None).into(),
        IoCommand::WriteZeroes { range, deallocate } => write_zeroes(ns, range, *deallocate, ctx).map(|()| None).into(),
        IoCommand::DatasetManagement { ranges, attrs } => dsm(ns, *ranges, *attrs, &data, ctx).map(|()| None).into(),
        IoCommand::Copy(c) => copy(ns, c, &data, ctx),
    }
}

/// Largest Read or Write [`try_execute`] runs.
pub const INLINE_MAX: u64 = 64 * 1024;

/// A short Read or Write (at most [`INLINE_MAX`] bytes, no FUA) run only if
/// it needs no waiting: no command holds its range, no write hook would act
/// (a point-in-time token preserving blocks), and the storage answers
/// without blocking (`Storage::try_read_at` / `try_write_at`: cached pages,
/// a non-blocking buffered write). `None`: it would wait, and nothing was
/// done — not a byte read or written; run [`execute`] where waiting is
/// allowed. Lets the transport's thread answer a cached 4 KiB read itself
/// instead of waking an I/O thread.
pub fn try_execute(ns: &Namespace, cmd: &IoCommand, data: &[u8]) -> Option<IoOutcome> {
    match cmd {
        IoCommand::Read(rw) if !rw.fua => {
            let (off, len) = match bytes_of(ns, rw.slba, u64::from(rw.blocks)) {
                Ok(x) => x,
                Err(s) => return Some(IoOutcome::failed(s)),
            };
            if len > INLINE_MAX {
                return None;
            }
            let _g = ns.unit.range_locks().try_lock(rw.slba, u64::from(rw.blocks), LockMode::Shared)?;
            let mut buf = vec![0u8; len as usize];
            match ns.unit.storage().try_read_at(&mut buf, off) {
                Ok(true) => Some(IoOutcome { status: Status::SUCCESS, result: 0, data: Some(Bytes::from(buf)) }),
                Ok(false) => None,
                Err(e) => Some(IoOutcome::failed(storage_status(&e, Side::Read))),
            }
        }
        IoCommand::Write(rw) if !rw.fua => {
            let (off, len) = match bytes_of(ns, rw.slba, u64::from(rw.blocks)) {
                Ok(x) => x,
                Err(s) => return Some(IoOutcome::failed(s)),
            };
            if len > INLINE_MAX || data.len() as u64 != len || ns.write_protected() {
                return None;
            }
            let blocks = u64::from(rw.blocks);
            if ns.unit.write_hook().is_some_and(|h| h.would_act(ns.unit.as_ref(), rw.slba, blocks)) {
                return None;
            }
            let _g = ns.unit.range_locks().try_lock(rw.slba, blocks, LockMode::Exclusive)?;
            match ns.unit.storage().try_write_at(data, off) {
                Ok(true) => Some(IoOutcome::success()),
                Ok(false) => None,
                Err(e) => Some(IoOutcome::failed(storage_status(&e, Side::Write))),
            }
        }
        _ => None,
    }
}

fn cancelled(ctx: &IoContext<'_>) -> Result<(), Status> {
    if ctx.cancel.is_cancelled() {
        return Err(Status::ABORT_REQUESTED);
    }
    Ok(())
}

/// Byte offset and length of `blocks` blocks at `slba`, inside `ns`.
fn bytes_of(ns: &Namespace, slba: u64, blocks: u64) -> Result<(u64, u64), Status> {
    if !in_range(ns.blocks(), slba, blocks) {
        return Err(Status::LBA_OUT_OF_RANGE);
    }
    let bs = u64::from(ns.block_size());
    let off = slba.checked_mul(bs).ok_or(Status::LBA_OUT_OF_RANGE)?;
    let len = blocks.checked_mul(bs).ok_or(Status::LBA_OUT_OF_RANGE)?;
    off.checked_add(len).ok_or(Status::LBA_OUT_OF_RANGE)?;
    Ok((off, len))
}

fn before_write(unit: &Arc<dyn Unit>, lba: u64, blocks: u64) -> Result<(), Status> {
    match unit.write_hook() {
        Some(hook) => hook.before_write(unit.as_ref(), lba, blocks).map_err(|r| refusal_status(&r)),
        None => Ok(()),
    }
}

fn writable(ns: &Namespace) -> Result<(), Status> {
    if ns.write_protected() {
        return Err(Status::NAMESPACE_WRITE_PROTECTED);
    }
    Ok(())
}

fn flush(ns: &Namespace) -> Result<(), Status> {
    ns.unit.storage().flush().map_err(|e| storage_status(&e, Side::Write))
}

/// Read `buf` from byte `off` in bounded chunks, checking cancellation.
fn read_chunks(storage: &dyn Storage, off: u64, buf: &mut [u8], ctx: &IoContext<'_>) -> Result<(), Status> {
    let mut at = off;
    for chunk in buf.chunks_mut(IO_CHUNK) {
        cancelled(ctx)?;
        storage.read_at(chunk, at).map_err(|e| storage_status(&e, Side::Read))?;
        at += chunk.len() as u64;
    }
    Ok(())
}

fn read(ns: &Namespace, rw: &Rw, ctx: &IoContext<'_>) -> Result<Bytes, Status> {
    let (off, len) = bytes_of(ns, rw.slba, u64::from(rw.blocks))?;
    let len = usize::try_from(len).map_err(|_| Status::INTERNAL_ERROR)?;
    if rw.fua {
        // FUA on a read: the blocks are committed before they are returned.
        flush(ns)?;
    }
    let _g = ns.unit.range_locks().lock(rw.slba, u64::from(rw.blocks), LockMode::Shared);
    let mut buf = vec![0u8; len];
    read_chunks(ns.unit.storage().as_ref(), off, &mut buf, ctx)?;
    Ok(Bytes::from(buf))
}

fn write(ns: &Namespace, rw: &Rw, data: &[u8], ctx: &IoContext<'_>) -> Result<(), Status> {
    let (off, len) = bytes_of(ns, rw.slba, u64::from(rw.blocks))?;
    if data.len() as u64 != len {
        return Err(Status::DATA_SGL_LENGTH_INVALID);
    }
    writable(ns)?;
    let blocks = u64::from(rw.blocks);
    let _g = ns.unit.range_locks().lock(rw.slba, blocks, LockMode::Exclusive);
    before_write(&ns.unit, rw.slba, blocks)?;
    let storage = ns.unit.storage();
    let mut at = off;
    for chunk in data.chunks(IO_CHUNK) {
        cancelled(ctx)?;
        storage.write_at(chunk, at).map_err(|e| storage_status(&e, Side::Write))?;
        at += chunk.len() as u64;
    }
    if rw.fua {
        flush(ns)?;
    }
    Ok(())
}

fn compare(ns: &Namespace, rw: &Rw, data: &[u8], ctx: &IoContext<'_>) -> Result<(), Status> {
    let (off, len) = bytes_of(ns, rw.slba, u64::from(rw.blocks))?;
    if data.len() as u64 != len {
        return Err(Status::DATA_SGL_LENGTH_INVALID);
    }
    if rw.fua {
        flush(ns)?;
    }
    let _g = ns.unit.range_locks().lock(rw.slba, u64::from(rw.blocks), LockMode::Shared);
    let storage = ns.unit.storage();
    let mut buf = vec![0u8; IO_CHUNK.min(data.len())];
    let mut at = off;
    for want in data.chunks(IO_CHUNK) {
        cancelled(ctx)?;
        let got = &mut buf[..want.len()];
        storage.read_at(got, at).map_err(|e| storage_status(&e, Side::Read))?;
        if got != want {
            return Err(Status::COMPARE_FAILURE);
        }
        at += want.len() as u64;
    }
    Ok(())
}

fn verify(ns: &Namespace, rw: &Rw, ctx: &IoContext<'_>) -> Result<(), Status> {
    let (off, len) = bytes_of(ns, rw.slba, u64::from(rw.blocks))?;
    if rw.fua {
        flush(ns)?;
    }
    let bs = u64::from(ns.block_size());
    let per = (IO_CHUNK as u64 / bs).max(1);
    let mut buf = vec![0u8; usize::try_from(len.min(per * bs)).map_err(|_| Status::INTERNAL_ERROR)?];
    let blocks = u64::from(rw.blocks);
    let mut done = 0u64;
    while done < blocks {
        cancelled(ctx)?;
        let n = per.min(blocks - done);
        let lba = rw.slba + done;
        let b = &mut buf[..(n * bs) as usize];
        let _g = ns.unit.range_locks().lock(lba, n, LockMode::Shared);
        ns.unit.storage().read_at(b, off + done * bs).map_err(|e| storage_status(&e, Side::Read))?;
        done += n;
    }
    Ok(())
}

/// Zero (or, with `deallocate`, deallocate) `blocks` blocks at `slba` in
/// bounded calls, each under the exclusive range lock after the write hook.
fn zero_range(ns: &Namespace, slba: u64, blocks: u64, deallocate: bool, ctx: &IoContext<'_>) -> Result<(), Status> {
    let (off, _) = bytes_of(ns, slba, blocks)?;
    let storage = ns.unit.storage();
    let caps = storage.capabilities();
    let punch = deallocate && ns.info.deallocate && caps.discard && caps.discard_zeroes;
    let bs = u64::from(ns.block_size());
    let per = (ZERO_CHUNK / bs).max(1);
    let mut done = 0u64;
    while done < blocks {
        cancelled(ctx)?;
        let n = per.min(blocks - done);
        let lba = slba + done;
        let _g = ns.unit.range_locks().lock(lba, n, LockMode::Exclusive);
        before_write(&ns.unit, lba, n)?;
        let (at, len) = (off + done * bs, n * bs);
        let r = if punch { storage.discard(at, len) } else { storage.write_zeroes(at, len) };
        r.map_err(|e| storage_status(&e, Side::Write))?;
        done += n;
    }
    Ok(())
}

fn write_zeroes(ns: &Namespace, rw: &Rw, deallocate: bool, ctx: &IoContext<'_>) -> Result<(), Status> {
    bytes_of(ns, rw.slba, u64::from(rw.blocks))?;
    writable(ns)?;
    zero_range(ns, rw.slba, u64::from(rw.blocks), deallocate, ctx)?;
    if rw.fua {
        flush(ns)?;
    }
    Ok(())
}

fn dsm(ns: &Namespace, ranges: usize, attrs: DsmAttributes, data: &[u8], ctx: &IoContext<'_>) -> Result<(), Status> {
    let list = decode_dsm_ranges(data, ranges).map_err(|e| match e {
        ListError::Short { .. } => Status::DATA_SGL_LENGTH_INVALID,
        _ => Status::INVALID_FIELD,
    })?;
    if list.iter().any(|r| !in_range(ns.blocks(), r.slba, u64::from(r.blocks))) {
        return Err(Status::LBA_OUT_OF_RANGE);
    }
    if !attrs.contains(DsmAttributes::AD) {
        return Ok(());
    }
    writable(ns)?;
    if !ns.info.deallocate {
        // Advisory: a namespace that reports no deallocation keeps its data.
        return Ok(());
    }
    for r in list.iter().filter(|r| r.blocks > 0) {
        zero_range(ns, r.slba, u64::from(r.blocks), true, ctx)?;
    }
    Ok(())
}

/// Whether a copy between these stores is a fast copy (see the module
/// docs): both files on one file system.
pub fn fast_copy_possible(src: &dyn Storage, dst: &dyn Storage) -> bool {
    use std::os::unix::fs::MetadataExt;
    let dev = |s: &dyn Storage| {
        let fd = s.as_fd()?.try_clone_to_owned().ok()?;
        std::fs::File::from(fd).metadata().ok().map(|m| m.dev())
    };
    matches!((dev(src), dev(dst)), (Some(a), Some(b)) if a == b)
}

/// One planned source range: the source unit and the bytes to move.
struct Planned {
    src: Arc<dyn Unit>,
    run: Run,
}

/// Check a Copy completely before anything moves (see the module docs).
fn plan_copy(ns: &Namespace, c: &CopyCommand, data: &[u8], ctx: &IoContext<'_>) -> Result<Vec<Planned>, Status> {
    let enabled = SUPPORTED_COPY_FORMATS & (ctx.copy_formats_enabled | 1);
    if c.format.bit().is_none_or(|b| enabled & b == 0) {
        return Err(Status::INVALID_FIELD);
    }
    let limits = ns.copy_limits();
    if c.ranges > usize::from(limits.max_ranges) {
        return Err(Status::COMMAND_SIZE_LIMIT_EXCEEDED);
    }
    let ranges = decode_copy_ranges(c.format, data, c.ranges).map_err(|e| match e {
        ListError::Short { .. } => Status::DATA_SGL_LENGTH_INVALID,
        ListError::TooMany(_) => Status::COMMAND_SIZE_LIMIT_EXCEEDED,
        ListError::Format(_) => Status::INVALID_FIELD,
    })?;
    // Size limits first: they need no namespace.
    let mut total = 0u64;
    for r in &ranges {
        if r.blocks() > u32::from(limits.mssrl) {
            return Err(Status::COMMAND_SIZE_LIMIT_EXCEEDED);
        }
        total += u64::from(r.blocks()); // ≤ 256 × 65536: no overflow
    }
    if total > u64::from(limits.mcl) {
        return Err(Status::COMMAND_SIZE_LIMIT_EXCEEDED);
    }
    let bs = u64::from(ns.block_size());
    let (dst_off, _) = bytes_of(ns, c.sdlba, total)?;
    let mut plan = Vec::with_capacity(ranges.len());
    let mut dst_lba = c.sdlba;
    for r in &ranges {
        if r.cetype != 0 {
            return Err(Status::INVALID_FIELD);
        }
        let blocks = u64::from(r.blocks());
        let other;
        let src: &Namespace = if !c.format.has_snsid() || r.snsid == ns.nsid() {
            ns
        } else {
            if r.snsid == 0 || r.snsid == u32::MAX || r.snsid > ctx.max_nsid {
                return Err(Status::INVALID_NAMESPACE);
            }
            other = (ctx.lookup)(r.snsid).ok_or(Status::INVALID_FIELD)?;
            if other.block_size() != ns.block_size() {
                return Err(Status::INCOMPATIBLE_NAMESPACE_OR_FORMAT);
            }
            &other
        };
        let (src_off, len) = bytes_of(src, r.slba, blocks)?;
        let in_dst_ns = std::ptr::eq(src, ns) || same_unit(src.unit.as_ref(), ns.unit.as_ref());
        if c.format.has_snsid() && in_dst_ns && r.slba < c.sdlba + total && c.sdlba < r.slba + blocks {
            return Err(Status::OVERLAPPING_IO_RANGE);
        }
        if r.fco() && !fast_copy_possible(src.unit.storage().as_ref(), ns.unit.storage().as_ref()) {
            return Err(Status::FAST_COPY_NOT_POSSIBLE);
        }
        let dst = dst_off + (dst_lba - c.sdlba) * bs;
        plan.push(Planned { src: src.unit.clone(), run: Run { src: src_off, dst, len } });
        dst_lba += blocks;
    }
    writable(ns)?;
    Ok(plan)
}

fn copy(ns: &Namespace, c: &CopyCommand, data: &[u8], ctx: &IoContext<'_>) -> IoOutcome {
    let plan = match plan_copy(ns, c, data, ctx) {
        Ok(p) => p,
        // Nothing was written: DW0 is 0 (NVM 1.2 §3.3.2.5).
        Err(status) => return IoOutcome::failed(status),
    };
    let progress = Progress::default();
    let cancel = [ctx.cancel];
    let chunk_bytes = if ctx.chunk_bytes == 0 { oxcopy_copy::DEFAULT_CHUNK_BYTES } else { ctx.chunk_bytes };
    let ctl = ExecControl { cancel: &cancel, stop: None, progress: &progress, metrics: ctx.metrics, chunk_bytes };
    for (i, p) in plan.iter().enumerate() {
        if let Err(e) = oxcopy_copy::execute(&LiveSource(p.src.clone()), ns.unit.as_ref(), &[p.run], &ctl) {
            return IoOutcome { status: copy_status(&e), result: i as u32, data: None };
        }
    }
    if c.fua {
        if let Err(status) = flush(ns) {
            return IoOutcome::failed(status);
        }
    }
    IoOutcome::success()
}

#[cfg(test)]
#[path = "nvm_tests.rs"]
mod tests;
