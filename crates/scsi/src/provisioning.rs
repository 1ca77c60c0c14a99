//! Logical block provisioning (SBC-3 §4.7): UNMAP, WRITE SAME (10/16) with
//! and without the UNMAP bit (and NDOB), GET LBA STATUS, and the limits the
//! Block Limits VPD page advertises for them.
//!
//! What we advertise follows the backend: an LU is thin (LBPME=1, with
//! LBPU, LBPWS and LBPWS10) when its storage can deallocate
//! ([`Capabilities::discard`]) and it is writable; LBPRZ=1 when deallocated
//! blocks read back as zeroes ([`Capabilities::discard_zeroes`]). A read-only
//! LU reports full provisioning and refuses UNMAP and WRITE SAME with DATA
//! PROTECT like every other write.
//!
//! Allocation state for GET LBA STATUS comes from [`Storage::allocation`]
//! (SEEK_DATA/SEEK_HOLE for files). A WRITE SAME with UNMAP=0 and an all-zero
//! block uses [`Storage::write_zeroes`], which keeps the space allocated but
//! may show up as unwritten (hole-like) extents: GET LBA STATUS can then report
//! such blocks as deallocated, which with LBPRZ=1 reads back the same.
//!
//! [`Storage::allocation`]: oxcopy_storage::Storage::allocation
//! [`Storage::write_zeroes`]: oxcopy_storage::Storage::write_zeroes

use crate::cdb::{be, byte};
use crate::exec::{CmdResult, Ctx, Done, Fail};
use crate::lu::LogicalUnit;
use crate::range_lock::LockMode;
use crate::sbc::{byte_offset, cancelled, check_range, check_writable, storage_fail, IO_CHUNK};
use crate::sense::{Asc, Sense};
use crate::wire::inquiry::BlockLimits;

/// MAXIMUM UNMAP LBA COUNT: logical blocks one UNMAP may deallocate in
/// total. libiscsi treats anything above 2^20 as "insanely big".
pub const MAX_UNMAP_LBA_COUNT: u32 = 1 << 20;
/// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT: bounds the per-command work (one
/// hole punch per descriptor) and the parameter list we parse.
pub const MAX_UNMAP_DESCRIPTORS: u32 = 256;
/// MAXIMUM WRITE SAME LENGTH in logical blocks. Bounds one command's work
/// (32 MiB at 512-byte blocks, 256 MiB at 4 KiB) so ABORT TASK and LUN
/// RESET stay prompt; initiators split larger requests. Kept below 65536 on
/// purpose: libiscsi's WriteSame16.Unmap otherwise writes 65536 blocks with
/// a single WRITE (10), whose 16-bit length field cannot express that.
pub const MAX_WRITE_SAME_BLOCKS: u64 = 0xFFFF;
/// GET LBA STATUS returns at most this many descriptors per command.
const MAX_LBA_STATUS_DESCRIPTORS: usize = 256;
/// Bytes zeroed or deallocated per storage call (cancellation is checked
/// between calls).
const ZERO_CHUNK: u64 = 256 << 20;

/// UNMAP parameter list header and descriptor sizes (SBC-3 §5.28.2).
const UNMAP_HEADER_LEN: usize = 8;
const UNMAP_DESCRIPTOR_LEN: usize = 16;
/// GET LBA STATUS parameter data header and descriptor sizes (SBC-3 §5.5.2).
const LBA_STATUS_HEADER_LEN: usize = 8;
const LBA_STATUS_DESCRIPTOR_LEN: usize = 16;

/// PROVISIONING STATUS values of an LBA status descriptor.
const STATUS_MAPPED: u8 = 0x0;
const STATUS_DEALLOCATED: u8 = 0x1;

/// WRITE SAME byte 1 flags.
const WS_UNMAP: u8 = 0x08;
const WS_NDOB: u8 = 0x01;

/// Fill the provisioning fields of the Block Limits VPD page: MAXIMUM UNMAP LBA COUNT, MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT,
/// OPTIMAL UNMAP GRANULARITY (the filesystem block), UGAVALID with alignment
/// 0, and MAXIMUM WRITE SAME LENGTH. The UNMAP fields stay zero when UNMAP is
/// not supported, as SBC-3 requires.
pub(crate) fn block_limits(lu: &LogicalUnit, l: &mut BlockLimits) {
    if lu.provisioning().lbpu {
        let fs = lu.storage().capabilities().fs_block_size;
        l.maximum_unmap_lba_count = Some(MAX_UNMAP_LBA_COUNT);
        l.maximum_unmap_block_descriptor_count = Some(MAX_UNMAP_DESCRIPTORS);
        l.optimal_unmap_granularity = Some((fs / lu.block_size()).max(1));
        l.unmap_granularity_alignment_valid = Some(true);
        l.unmap_granularity_alignment = Some(0);
    }
    l.maximum_write_same_length = Some(MAX_WRITE_SAME_BLOCKS);
}

/// One validated UNMAP block descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Extent {
    lba: u64,
    blocks: u64,
}

/// Parse and validate an UNMAP parameter list of `pll` bytes (the CDB's
/// PARAMETER LIST LENGTH). Every length is checked against what arrived;
/// field pointers name the offending parameter-list byte.
fn parse_unmap_list(lu: &LogicalUnit, data: &[u8], pll: usize) -> Result<Vec<Extent>, Fail> {
    let plle = || Fail::from(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
    let list = data.get(..pll).ok_or_else(plle)?;
    if list.len() < UNMAP_HEADER_LEN {
        return Err(plle());
    }
    // UNMAP DATA LENGTH counts the bytes after itself; it may not claim
    // more than the list holds.
    let udl = be(list, 0, 2) as usize;
    if udl + 2 > list.len() {
        return Err(Sense::invalid_param_field(0, None).into());
    }
    let bdl = be(list, 2, 2) as usize;
    if UNMAP_HEADER_LEN + bdl > list.len() || bdl + 6 > udl {
        return Err(Sense::invalid_param_field(2, None).into());
    }
    // A trailing partial descriptor is ignored (SBC-3 §5.28.2).
    let count = bdl / UNMAP_DESCRIPTOR_LEN;
    if count > MAX_UNMAP_DESCRIPTORS as usize {
        return Err(Sense::invalid_param_field(2, None).into());
    }
    let mut out = Vec::with_capacity(count);
    let mut total = 0u64;
    for i in 0..count {
        let off = UNMAP_HEADER_LEN + i * UNMAP_DESCRIPTOR_LEN;
        let lba = be(list, off, 8);
        let blocks = be(list, off + 8, 4);
        total = total.saturating_add(blocks);
        if total > u64::from(MAX_UNMAP_LBA_COUNT) {
            return Err(Sense::invalid_param_field(off + 8, None).into());
        }
        // Zero blocks unmaps nothing and is not an error, wherever it points.
        if blocks == 0 {
            continue;
        }
        check_range(lu, lba, blocks)?;
        out.push(Extent { lba, blocks });
    }
    Ok(out)
}

/// Apply `op(byte_offset, byte_len)` to `blocks` blocks at `lba` in bounded
/// calls, each under the exclusive range lock and after the write hook,
/// checking for cancellation between calls.
fn for_each_locked_chunk(
    ctx: &Ctx<'_>,
    lu: &LogicalUnit,
    lba: u64,
    blocks: u64,
    op: impl Fn(u64, u64) -> oxcopy_storage::Result<()>,
) -> Result<(), Fail> {
    let bs = u64::from(lu.block_size());
    let per_call = (ZERO_CHUNK / bs).max(1);
    let mut done = 0;
    while done < blocks {
        cancelled(ctx)?;
        let n = per_call.min(blocks - done);
        let at = lba + done;
        let _g = lu.range_locks().lock(at, n, LockMode::Exclusive);
        lu.before_write(at, n)?;
        op(byte_offset(lu, at), n * bs).map_err(|e| storage_fail(&e, at, true))?;
        done += n;
    }
    Ok(())
}

/// Deallocate `blocks` blocks at `lba` under the exclusive range lock, in
/// bounded storage calls.
fn deallocate(ctx: &Ctx<'_>, lu: &LogicalUnit, lba: u64, blocks: u64) -> Result<(), Fail> {
    for_each_locked_chunk(ctx, lu, lba, blocks, |off, len| lu.storage().discard(off, len))
}

/// Flush when the write cache is off (every write is then durable).
fn flush_if_write_through(lu: &LogicalUnit, lba: u64) -> Result<(), Fail> {
    if !lu.mode.wce() {
        lu.flush().map_err(|e| storage_fail(&e, lba, true))?;
    }
    Ok(())
}

/// UNMAP (SBC-3 §5.28). ANCHOR is refused by the usage mask (ANC_SUP=0).
/// Every descriptor is validated (range, totals against the advertised
/// limits) before any block is deallocated.
pub(crate) fn unmap(ctx: &Ctx<'_>) -> CmdResult {
    let lu = ctx.lu()?;
    check_writable(lu)?;
    if !lu.provisioning().lbpu {
        // Fully provisioned: UNMAP is not available (LBPU=0).
        return Err(Sense::illegal(Asc::INVALID_COMMAND_OPERATION_CODE).into());
    }
    let pll = be(ctx.cdb, 7, 2) as usize;
    if pll == 0 {
        return Ok(Done::good());
    }
    let extents = parse_unmap_list(lu, ctx.req.data_out, pll)?;
    for e in &extents {
        deallocate(ctx, lu, e.lba, e.blocks)?;
    }
    if let Some(e) = extents.first() {
        flush_if_write_through(lu, e.lba)?;
    }
    Ok(Done::good())
}

/// WRITE SAME (10) and (16). NUMBER OF LOGICAL BLOCKS 0 means "to the last
/// block" (WSNZ=0). With UNMAP=1 on a thin LU the range is deallocated and
/// the data-out block is not written (SBC-3 as libiscsi, LIO and tgt read
/// it: afterwards the blocks read as LBPRZ says); on a fully provisioned LU
/// the UNMAP bit is ignored and the block is written to every LBA. NDOB
/// (16 only): no data-out, the block is all zeroes.
pub(crate) fn write_same(ctx: &Ctx<'_>, sixteen: bool) -> CmdResult {
    let lu = ctx.lu()?;
    let cdb = ctx.cdb;
    let flags = byte(cdb, 1);
    let unmap = flags & WS_UNMAP != 0;
    let ndob = sixteen && flags & WS_NDOB != 0;
    let (lba, nlb, len_off) =
        if sixteen { (be(cdb, 2, 8), be(cdb, 10, 4), 10) } else { (be(cdb, 2, 4), be(cdb, 7, 2), 7) };
    let n = lu.num_blocks();
    if lba >= n {
        return Err(Sense::lba_out_of_range().into());
    }
    let blocks = if nlb == 0 { n - lba } else { nlb };
    if blocks > MAX_WRITE_SAME_BLOCKS {
        return Err(Sense::invalid_cdb_field(len_off, None).into());
    }
    check_range(lu, lba, blocks)?;
    check_writable(lu)?;
    let bs = lu.block_size() as usize;
    let block: Option<&[u8]> = if ndob {
        None
    } else {
        // Exactly one logical block of data-out: anything else is a
        // transfer that does not match the CDB.
        let d = ctx.req.data_out;
        if d.len() != bs {
            return Err(Sense::illegal(Asc::INVALID_FIELD_IN_INFORMATION_UNIT).into());
        }
        Some(d)
    };
    let zero = block.is_none_or(|b| b.iter().all(|&x| x == 0));
    let p = lu.provisioning();
    let may_unmap = if sixteen { p.lbpws } else { p.lbpws10 };
    if unmap && may_unmap {
        deallocate(ctx, lu, lba, blocks)?;
    } else if zero {
        write_zeroes(ctx, lu, lba, blocks)?;
    } else if let Some(block) = block {
        write_pattern(ctx, lu, lba, blocks, block)?;
    }
    flush_if_write_through(lu, lba)?;
    Ok(Done::good())
}

/// Zero `blocks` blocks at `lba` (allocating: the blocks stay mapped).
fn write_zeroes(ctx: &Ctx<'_>, lu: &LogicalUnit, lba: u64, blocks: u64) -> Result<(), Fail> {
    for_each_locked_chunk(ctx, lu, lba, blocks, |off, len| lu.storage().write_zeroes(off, len))
}

/// Write `block` to each of `blocks` blocks at `lba`, through one reused
/// buffer of at most [`IO_CHUNK`] bytes.
fn write_pattern(ctx: &Ctx<'_>, lu: &LogicalUnit, lba: u64, blocks: u64, block: &[u8]) -> Result<(), Fail> {
    let bs = block.len();
    let per_chunk = (IO_CHUNK / bs).max(1) as u64;
    let buf: Vec<u8> = block.repeat(per_chunk.min(blocks) as usize);
    let mut done = 0;
    while done < blocks {
        cancelled(ctx)?;
        let n = per_chunk.min(blocks - done);
        let at = lba + done;
        let _g = lu.range_locks().lock(at, n, LockMode::Exclusive);
        lu.before_write(at, n)?;
        let len = n as usize * bs;
        lu.storage().write_at(&buf[..len], byte_offset(lu, at)).map_err(|e| storage_fail(&e, at, true))?;
        done += n;
    }
    Ok(())
}

/// One LBA status descriptor: a run of blocks with one provisioning status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    lba: u64,
    blocks: u64,
    mapped: bool,
}

/// Allocation runs from `lba` to the end of the LU, at most `max` of them.
/// A block that is only partly backed by data counts as mapped.
fn allocation_runs(ctx: &Ctx<'_>, lu: &LogicalUnit, lba: u64, max: usize) -> Result<Vec<Run>, Fail> {
    let bs = u64::from(lu.block_size());
    let end = lu.num_blocks();
    let mut runs: Vec<Run> = Vec::new();
    let mut at = lba;
    // Bounded even when runs keep merging (pathological sub-block extents).
    let mut calls = 0;
    while at < end && calls < max * 4 {
        calls += 1;
        cancelled(ctx)?;
        let off = at * bs;
        let r = lu.storage().allocation(off, (end - at) * bs).map_err(|e| storage_fail(&e, at, false))?;
        let run_end = off.saturating_add(r.len.max(1));
        let (mapped, next) = if r.mapped {
            (true, run_end.div_ceil(bs))
        } else if run_end / bs > at {
            (false, run_end / bs)
        } else {
            // A hole smaller than the block: the block still holds data.
            (true, run_end.div_ceil(bs))
        };
        let next = next.clamp(at + 1, end);
        match runs.last_mut() {
            Some(last) if last.mapped == mapped && last.lba + last.blocks == at => last.blocks += next - at,
            _ => {
                if runs.len() == max {
                    break;
                }
                runs.push(Run { lba: at, blocks: next - at, mapped });
            }
        }
        at = next;
    }
    Ok(runs)
}

/// GET LBA STATUS (SBC-3 §5.5): mapped/deallocated runs from the starting
/// LBA, as many descriptors as the allocation length holds (at least one,
/// at most [`MAX_LBA_STATUS_DESCRIPTORS`]).
pub(crate) fn get_lba_status(ctx: &Ctx<'_>) -> CmdResult {
    let lu = ctx.lu()?;
    let lba = be(ctx.cdb, 2, 8);
    let alloc = be(ctx.cdb, 10, 4);
    if lba >= lu.num_blocks() {
        return Err(Sense::lba_out_of_range().into());
    }
    let fit = (alloc.saturating_sub(LBA_STATUS_HEADER_LEN as u64) / LBA_STATUS_DESCRIPTOR_LEN as u64) as usize;
    let max = fit.clamp(1, MAX_LBA_STATUS_DESCRIPTORS);
    let runs = allocation_runs(ctx, lu, lba, max)?;
    let mut d = vec![0u8; LBA_STATUS_HEADER_LEN];
    for r in &runs {
        // NUMBER OF LOGICAL BLOCKS is 32 bits: a longer run is reported in part.
        let blocks = u32::try_from(r.blocks).unwrap_or(u32::MAX);
        d.extend_from_slice(&r.lba.to_be_bytes());
        d.extend_from_slice(&blocks.to_be_bytes());
        d.push(if r.mapped { STATUS_MAPPED } else { STATUS_DEALLOCATED });
        d.extend_from_slice(&[0; 3]);
    }
    let len = u32::try_from(d.len() - 4).unwrap_or(u32::MAX);
    d[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(Done::data(d, alloc))
}

// fn-pointer shims for the command table.
pub(crate) fn write_same10(c: &Ctx<'_>) -> CmdResult {
    write_same(c, false)
}
pub(crate) fn write_same16(c: &Ctx<'_>) -> CmdResult {
    write_same(c, true)
}
