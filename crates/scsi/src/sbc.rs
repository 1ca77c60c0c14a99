//! Block commands (SBC-3): READ, WRITE, VERIFY, WRITE AND VERIFY,
//! READ CAPACITY, SYNCHRONIZE CACHE, PRE-FETCH.
//!
//! # Range rule
//! A command whose LBA is past the last block, or whose LBA + transfer
//! length passes the end (with 64-bit overflow counted as past the end), fails
//! with LOGICAL BLOCK ADDRESS OUT OF RANGE, even for a zero transfer length.
//!
//! # Short data-out (iSCSI overflow residual)
//! When fewer data-out bytes arrived than the CDB asks for (the initiator's
//! expected transfer length was smaller), the command processes exactly the
//! **whole logical blocks that arrived**, from the first LBA, and nothing
//! beyond them; the transport reports the overflow residual. If the data
//! ends inside a block, nothing is written and the command fails with
//! ILLEGAL REQUEST / INVALID FIELD IN INFORMATION UNIT (0Eh/03h). This is
//! what libiscsi's iSCSIResiduals suite requires: Write10Residuals expects
//! GOOD for EDTL=0 with a 1-block WRITE, GOOD with only the first block
//! written for a 2-block WRITE with a 1-block EDTL, and accepts 0Eh/03h for
//! EDTL=200 (newer libiscsi then also checks that nothing was written).
//! VERIFY with BYTCHK and WRITE AND VERIFY follow the same rule.

use crate::cdb::{be, byte};
use crate::exec::{CmdResult, Ctx, Done, Fail};
use crate::lu::LogicalUnit;
use crate::range_lock::LockMode;
use crate::result::ScsiStatus;
use crate::sense::{Asc, Sense, SenseKey};
use crate::wire::capacity::ReadCapacity16;
use oxcopy_storage::{StorageError, StorageErrorKind};

/// I/O is issued (and cancellation checked) in chunks of this many bytes.
pub(crate) const IO_CHUNK: usize = 1 << 20;

/// LBA, transfer length and where the length field sits, for one CDB size.
#[derive(Debug, Clone, Copy)]
struct Rw {
    lba: u64,
    blocks: u64,
    len_off: usize,
}

fn parse(cdb: &[u8], size: usize) -> Rw {
    match size {
        6 => {
            let n = be(cdb, 4, 1);
            Rw { lba: be(cdb, 1, 3) & 0x1F_FFFF, blocks: if n == 0 { 256 } else { n }, len_off: 4 }
        }
        10 => Rw { lba: be(cdb, 2, 4), blocks: be(cdb, 7, 2), len_off: 7 },
        12 => Rw { lba: be(cdb, 2, 4), blocks: be(cdb, 6, 4), len_off: 6 },
        _ => Rw { lba: be(cdb, 2, 8), blocks: be(cdb, 10, 4), len_off: 10 },
    }
}

/// The range rule above.
pub(crate) fn check_range(lu: &LogicalUnit, lba: u64, blocks: u64) -> Result<(), Fail> {
    let n = lu.num_blocks();
    match lba.checked_add(blocks) {
        Some(end) if lba < n && end <= n => Ok(()),
        _ => Err(Sense::lba_out_of_range().into()),
    }
}

/// Transfers above MAXIMUM TRANSFER LENGTH are an invalid CDB field (SBC-3 §6.6.4).
fn check_len(lu: &LogicalUnit, rw: Rw) -> Result<(), Fail> {
    if rw.blocks > lu.max_transfer_blocks() {
        return Err(Sense::invalid_cdb_field(rw.len_off, None).into());
    }
    Ok(())
}

pub(crate) fn check_writable(lu: &LogicalUnit) -> Result<(), Fail> {
    if lu.config().read_only {
        return Err(Sense::new(SenseKey::DATA_PROTECT, Asc::WRITE_PROTECTED).into());
    }
    if lu.mode.swp() {
        return Err(Sense::new(SenseKey::DATA_PROTECT, Asc::SOFTWARE_WRITE_PROTECTED).into());
    }
    Ok(())
}

pub(crate) fn cancelled(ctx: &Ctx<'_>) -> Result<(), Fail> {
    let preempted = ctx.lu.is_some_and(|lu| lu.pr.aborted_since(ctx.req.nexus, ctx.pr_epoch));
    if ctx.req.cancel.is_cancelled() || preempted {
        return Err(Fail::Status(ScsiStatus::TASK_ABORTED));
    }
    Ok(())
}

pub(crate) fn byte_offset(lu: &LogicalUnit, lba: u64) -> u64 {
    lba.saturating_mul(u64::from(lu.block_size()))
}

pub(crate) fn storage_fail(e: &StorageError, lba: u64, write: bool) -> Fail {
    tracing::warn!(error = %e, lba, write, "storage error");
    let sense = match e.kind {
        StorageErrorKind::NoSpace => Sense::new(SenseKey::DATA_PROTECT, Asc::SPACE_ALLOCATION_FAILED_WRITE_PROTECT),
        StorageErrorKind::Io if write => Sense::new(SenseKey::MEDIUM_ERROR, Asc::WRITE_ERROR),
        StorageErrorKind::Io => Sense::new(SenseKey::MEDIUM_ERROR, Asc::UNRECOVERED_READ_ERROR),
        StorageErrorKind::ReadOnly => Sense::new(SenseKey::DATA_PROTECT, Asc::WRITE_PROTECTED),
        // Out of range, unsupported, size mismatch and anything added later:
        // the target's fault, not the medium's.
        _ => Sense::new(SenseKey::HARDWARE_ERROR, Asc::INTERNAL_TARGET_FAILURE),
    };
    sense.with_information(lba).into()
}

/// Read `buf.len()` bytes (whole blocks) from `lba` in bounded chunks.
pub(crate) fn read_into(ctx: &Ctx<'_>, lu: &LogicalUnit, lba: u64, buf: &mut [u8]) -> Result<(), Fail> {
    let bs = lu.block_size() as usize;
    for (i, chunk) in buf.chunks_mut(IO_CHUNK).enumerate() {
        cancelled(ctx)?;
        let at = lba + (i * IO_CHUNK / bs) as u64;
        lu.storage().read_at(chunk, byte_offset(lu, at)).map_err(|e| storage_fail(&e, at, false))?;
    }
    Ok(())
}

/// The whole blocks of data-out that arrived (see the module docs).
pub(crate) fn received<'a>(ctx: &Ctx<'a>, lu: &LogicalUnit, blocks: u64) -> Result<&'a [u8], Fail> {
    let bs = u64::from(lu.block_size());
    let want = usize::try_from(blocks.saturating_mul(bs)).unwrap_or(usize::MAX);
    let data = ctx.req.data_out;
    let got = &data[..want.min(data.len())];
    if got.len() as u64 % bs != 0 {
        return Err(Sense::illegal(Asc::INVALID_FIELD_IN_INFORMATION_UNIT).into());
    }
    Ok(got)
}

pub(crate) fn miscompare(offset: u64) -> Fail {
    Sense::new(SenseKey::MISCOMPARE, Asc::MISCOMPARE_DURING_VERIFY).with_information(offset).into()
}

/// Offset of the first differing byte.
pub(crate) fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// READ (6/10/12/16). DPO is a hint we ignore; FUA needs nothing since we
/// read through the page cache, which is coherent with the medium.
pub(crate) fn read(ctx: &Ctx<'_>, size: usize) -> CmdResult {
    let lu = ctx.lu()?;
    let rw = parse(ctx.cdb, size);
    check_len(lu, rw)?;
    check_range(lu, rw.lba, rw.blocks)?;
    if rw.blocks == 0 {
        return Ok(Done::good());
    }
    let bytes = (rw.blocks * u64::from(lu.block_size())) as usize; // ≤ 16 MiB
    let _g = lu.range_locks().lock(rw.lba, rw.blocks, LockMode::Shared);
    let mut buf = vec![0u8; bytes];
    read_into(ctx, lu, rw.lba, &mut buf)?;
    Ok(Done { status: ScsiStatus::GOOD, data_in: buf })
}

/// READ (6/10/12/16) if it needs no waiting: no write holds its range and
/// every block is cached. `None`: it would wait, and nothing was done.
pub(crate) fn try_read(ctx: &Ctx<'_>, size: usize) -> Option<CmdResult> {
    let lu = match ctx.lu() {
        Ok(lu) => lu,
        Err(f) => return Some(Err(f)),
    };
    let rw = parse(ctx.cdb, size);
    if let Err(f) = check_len(lu, rw).and_then(|()| check_range(lu, rw.lba, rw.blocks)) {
        return Some(Err(f));
    }
    if rw.blocks == 0 {
        return Some(Ok(Done::good()));
    }
    let bytes = (rw.blocks * u64::from(lu.block_size())) as usize; // ≤ 16 MiB
    let _g = lu.range_locks().try_lock(rw.lba, rw.blocks, LockMode::Shared)?;
    let mut buf = vec![0u8; bytes];
    match lu.storage().try_read_at(&mut buf, byte_offset(lu, rw.lba)) {
        Ok(true) => Some(Ok(Done { status: ScsiStatus::GOOD, data_in: buf })),
        Ok(false) => None,
        Err(e) => Some(Err(storage_fail(&e, rw.lba, false))),
    }
}

/// WRITE (6/10/12/16) if it is quick: no flush asked for (FUA, WCE=0),
/// no point-in-time token to preserve blocks for, no command holding its
/// range, and storage that takes the bytes without waiting (see
/// [`oxcopy_storage::Storage::try_write_at`]). `None`: nothing was written.
pub(crate) fn try_write(ctx: &Ctx<'_>, size: usize) -> Option<CmdResult> {
    let lu = match ctx.lu() {
        Ok(lu) => lu,
        Err(f) => return Some(Err(f)),
    };
    let fua = size != 6 && byte(ctx.cdb, 1) & 0x08 != 0;
    if fua || !lu.mode.wce() {
        return None;
    }
    let rw = parse(ctx.cdb, size);
    let checked = check_len(lu, rw)
        .and_then(|()| check_range(lu, rw.lba, rw.blocks))
        .and_then(|()| check_writable(lu))
        .and_then(|()| received(ctx, lu, rw.blocks));
    let data = match checked {
        Ok(d) => d,
        Err(f) => return Some(Err(f)),
    };
    let blocks = data.len() as u64 / u64::from(lu.block_size());
    if blocks == 0 {
        return Some(Ok(Done::good()));
    }
    if data.len() > IO_CHUNK || lu.write_hook_would_act(rw.lba, blocks) {
        return None;
    }
    let _g = lu.range_locks().try_lock(rw.lba, blocks, LockMode::Exclusive)?;
    match lu.storage().try_write_at(data, byte_offset(lu, rw.lba)) {
        Ok(true) => Some(Ok(Done::good())),
        Ok(false) => None,
        Err(e) => Some(Err(storage_fail(&e, rw.lba, true))),
    }
}

/// WRITE (6/10/12/16). FUA (or WCE=0) flushes after the write.
pub(crate) fn write(ctx: &Ctx<'_>, size: usize) -> CmdResult {
    let fua = size != 6 && byte(ctx.cdb, 1) & 0x08 != 0;
    write_common(ctx, size, fua, false)
}

/// WRITE AND VERIFY (10/12/16): always durable before the verification;
/// BYTCHK=1 reads the blocks back and compares them with the data-out.
pub(crate) fn write_verify(ctx: &Ctx<'_>, size: usize) -> CmdResult {
    let bytchk = byte(ctx.cdb, 1) & 0x02 != 0;
    write_common(ctx, size, true, bytchk)
}

fn write_common(ctx: &Ctx<'_>, size: usize, durable: bool, compare: bool) -> CmdResult {
    let lu = ctx.lu()?;
    let rw = parse(ctx.cdb, size);
    check_len(lu, rw)?;
    check_range(lu, rw.lba, rw.blocks)?;
    check_writable(lu)?;
    let data = received(ctx, lu, rw.blocks)?;
    let blocks = data.len() as u64 / u64::from(lu.block_size());
    if blocks == 0 {
        return Ok(Done::good());
    }
    let _g = lu.range_locks().lock(rw.lba, blocks, LockMode::Exclusive);
    lu.before_write(rw.lba, blocks)?;
    let bs = lu.block_size() as usize;
    for (i, chunk) in data.chunks(IO_CHUNK).enumerate() {
        cancelled(ctx)?;
        let at = rw.lba + (i * IO_CHUNK / bs) as u64;
        lu.storage().write_at(chunk, byte_offset(lu, at)).map_err(|e| storage_fail(&e, at, true))?;
    }
    if durable || !lu.mode.wce() {
        lu.flush().map_err(|e| storage_fail(&e, rw.lba, true))?;
    }
    if compare {
        let mut buf = vec![0u8; IO_CHUNK.min(data.len())];
        for (i, chunk) in data.chunks(IO_CHUNK).enumerate() {
            let at = rw.lba + (i * IO_CHUNK / bs) as u64;
            let b = &mut buf[..chunk.len()];
            read_into(ctx, lu, at, b)?;
            if let Some(p) = first_diff(chunk, b) {
                return Err(miscompare((i * IO_CHUNK + p) as u64));
            }
        }
    }
    Ok(Done::good())
}

/// VERIFY (10/12/16). BYTCHK 00b: medium check only (the range is all we
/// can check); 01b: compare the data-out with the medium; 11b: compare one
/// data-out block with every block of the range; 10b: invalid.
pub(crate) fn verify(ctx: &Ctx<'_>, size: usize) -> CmdResult {
    let lu = ctx.lu()?;
    let rw = parse(ctx.cdb, size);
    let bytchk = (byte(ctx.cdb, 1) >> 1) & 0x03;
    if bytchk == 0b10 {
        return Err(Sense::invalid_cdb_field(1, Some(2)).into());
    }
    if bytchk == 0b01 {
        check_len(lu, rw)?;
    }
    check_range(lu, rw.lba, rw.blocks)?;
    if bytchk == 0 || rw.blocks == 0 {
        return Ok(Done::good());
    }
    let bs = lu.block_size() as usize;
    if bytchk == 0b01 {
        let data = received(ctx, lu, rw.blocks)?;
        let blocks = (data.len() / bs) as u64;
        if blocks == 0 {
            return Ok(Done::good());
        }
        let _g = lu.range_locks().lock(rw.lba, blocks, LockMode::Shared);
        let mut buf = vec![0u8; IO_CHUNK.min(data.len())];
        for (i, chunk) in data.chunks(IO_CHUNK).enumerate() {
            let at = rw.lba + (i * IO_CHUNK / bs) as u64;
            let b = &mut buf[..chunk.len()];
            read_into(ctx, lu, at, b)?;
            if let Some(p) = first_diff(chunk, b) {
                return Err(miscompare((i * IO_CHUNK + p) as u64));
            }
        }
        return Ok(Done::good());
    }
    // BYTCHK 11b: a single block of data-out.
    let pattern = received(ctx, lu, 1)?;
    if pattern.is_empty() {
        return Ok(Done::good());
    }
    let _g = lu.range_locks().lock(rw.lba, rw.blocks, LockMode::Shared);
    let per_chunk = (IO_CHUNK / bs) as u64;
    let mut buf = vec![0u8; (per_chunk.min(rw.blocks) as usize) * bs];
    let mut done = 0u64;
    while done < rw.blocks {
        let n = per_chunk.min(rw.blocks - done);
        let b = &mut buf[..n as usize * bs];
        read_into(ctx, lu, rw.lba + done, b)?;
        for (j, blk) in b.chunks(bs).enumerate() {
            if let Some(p) = first_diff(pattern, blk) {
                return Err(miscompare((done + j as u64) * bs as u64 + p as u64));
            }
        }
        done += n;
    }
    Ok(Done::good())
}

/// READ CAPACITY (10): FFFFFFFFh when the last LBA does not fit.
pub(crate) fn read_capacity10(ctx: &Ctx<'_>) -> CmdResult {
    let lu = ctx.lu()?;
    let pmi = byte(ctx.cdb, 8) & 0x01 != 0;
    if !pmi && be(ctx.cdb, 2, 4) != 0 {
        return Err(Sense::invalid_cdb_field(2, None).into());
    }
    let last = lu.num_blocks().saturating_sub(1);
    let last = u32::try_from(last).unwrap_or(u32::MAX);
    let mut d = Vec::with_capacity(8);
    d.extend_from_slice(&last.to_be_bytes());
    d.extend_from_slice(&lu.block_size().to_be_bytes());
    Ok(Done::data(d, 8))
}

/// READ CAPACITY (16): no protection, one logical block per physical block,
/// lowest aligned LBA 0, LBPME/LBPRZ from the provisioning state.
pub(crate) fn read_capacity16(ctx: &Ctx<'_>) -> CmdResult {
    let lu = ctx.lu()?;
    let pmi = byte(ctx.cdb, 14) & 0x01 != 0;
    if !pmi && be(ctx.cdb, 2, 8) != 0 {
        return Err(Sense::invalid_cdb_field(2, None).into());
    }
    let p = lu.provisioning();
    let d = ReadCapacity16 {
        last_lba: lu.num_blocks().saturating_sub(1),
        block_len: lu.block_size(),
        lbpme: p.lbpme,
        lbprz: p.lbprz,
        ..ReadCapacity16::default()
    }
    .encode();
    Ok(Done::data(d, be(ctx.cdb, 10, 4)))
}

/// SYNCHRONIZE CACHE (10/16). NUMBER OF BLOCKS 0 means "to the end". IMMED
/// is accepted; we simply finish the flush before answering.
pub(crate) fn sync_cache(ctx: &Ctx<'_>, size: usize) -> CmdResult {
    let lu = ctx.lu()?;
    let rw = parse(ctx.cdb, size);
    check_range(lu, rw.lba, rw.blocks)?;
    lu.flush().map_err(|e| storage_fail(&e, rw.lba, true))?;
    Ok(Done::good())
}

/// PRE-FETCH (10/16). Nothing to do for a page-cache-backed LU; reports
/// CONDITION MET when the range fits MAXIMUM PREFETCH LENGTH (SBC-3: the
/// cache "has sufficient capacity"), GOOD otherwise. Length 0 = to the end.
pub(crate) fn prefetch(ctx: &Ctx<'_>, size: usize) -> CmdResult {
    let lu = ctx.lu()?;
    let rw = parse(ctx.cdb, size);
    check_range(lu, rw.lba, rw.blocks)?;
    let len = if rw.blocks == 0 { lu.num_blocks() - rw.lba } else { rw.blocks };
    let status = if len <= lu.max_transfer_blocks() { ScsiStatus::CONDITION_MET } else { ScsiStatus::GOOD };
    Ok(Done { status, data_in: Vec::new() })
}

// fn-pointer shims for the command table.
pub(crate) fn read6(c: &Ctx<'_>) -> CmdResult {
    read(c, 6)
}
pub(crate) fn read10(c: &Ctx<'_>) -> CmdResult {
    read(c, 10)
}
pub(crate) fn read12(c: &Ctx<'_>) -> CmdResult {
    read(c, 12)
}
pub(crate) fn read16(c: &Ctx<'_>) -> CmdResult {
    read(c, 16)
}
pub(crate) fn write6(c: &Ctx<'_>) -> CmdResult {
    write(c, 6)
}
pub(crate) fn write10(c: &Ctx<'_>) -> CmdResult {
    write(c, 10)
}
pub(crate) fn write12(c: &Ctx<'_>) -> CmdResult {
    write(c, 12)
}
pub(crate) fn write16(c: &Ctx<'_>) -> CmdResult {
    write(c, 16)
}
pub(crate) fn verify10(c: &Ctx<'_>) -> CmdResult {
    verify(c, 10)
}
pub(crate) fn verify12(c: &Ctx<'_>) -> CmdResult {
    verify(c, 12)
}
pub(crate) fn verify16(c: &Ctx<'_>) -> CmdResult {
    verify(c, 16)
}
pub(crate) fn write_verify10(c: &Ctx<'_>) -> CmdResult {
    write_verify(c, 10)
}
pub(crate) fn write_verify12(c: &Ctx<'_>) -> CmdResult {
    write_verify(c, 12)
}
pub(crate) fn write_verify16(c: &Ctx<'_>) -> CmdResult {
    write_verify(c, 16)
}
pub(crate) fn sync_cache10(c: &Ctx<'_>) -> CmdResult {
    sync_cache(c, 10)
}
pub(crate) fn sync_cache16(c: &Ctx<'_>) -> CmdResult {
    sync_cache(c, 16)
}
pub(crate) fn prefetch10(c: &Ctx<'_>) -> CmdResult {
    prefetch(c, 10)
}
pub(crate) fn prefetch16(c: &Ctx<'_>) -> CmdResult {
    prefetch(c, 16)
}
