//! Read-compare/modify-write commands: COMPARE AND WRITE (SBC-3 §5.2, the
//! VMware ATS primitive) and ORWRITE (16) (SBC-3 §5.9).
//!
//! Both run entirely under the LU's exclusive range lock on their blocks.
//! Every read takes a shared lock and every write (WRITE, WRITE SAME, UNMAP,
//! the copy manager's chunks) an exclusive one on the same table, so no
//! other command from any session can observe or modify the blocks between
//! the read and the write: the pair is atomic with respect to every other
//! command on the LU.

use crate::cdb::{be, byte};
use crate::exec::{CmdResult, Ctx, Done, Fail};
use crate::lu::LogicalUnit;
use crate::range_lock::LockMode;
use crate::sbc::{
    byte_offset, cancelled, check_range, check_writable, first_diff, miscompare, received, storage_fail, IO_CHUNK,
};
use crate::sense::Sense;

/// MAXIMUM COMPARE AND WRITE LENGTH advertised in VPD B0h, in logical
/// blocks: the largest NUMBER OF LOGICAL BLOCKS the one-byte CDB field can
/// carry (VMware uses 1; the data-out is at most 2 × 255 × 4 KiB).
pub const MAX_CAW_BLOCKS: u8 = 255;

/// FUA bit of COMPARE AND WRITE / ORWRITE byte 1.
const FUA: u8 = 0x08;

fn flush_after(lu: &LogicalUnit, fua: bool, lba: u64) -> Result<(), Fail> {
    if fua || !lu.mode.wce() {
        lu.flush().map_err(|e| storage_fail(&e, lba, true))?;
    }
    Ok(())
}

/// COMPARE AND WRITE. The data-out holds the verify data followed by the
/// write data, NUMBER OF LOGICAL BLOCKS each. On a mismatch nothing is
/// written and the command fails with MISCOMPARE / MISCOMPARE DURING VERIFY
/// OPERATION, INFORMATION = offset of the first differing byte.
pub(crate) fn compare_and_write(ctx: &Ctx<'_>) -> CmdResult {
    let lu = ctx.lu()?;
    let cdb = ctx.cdb;
    let lba = be(cdb, 2, 8);
    let nlb = u64::from(byte(cdb, 13));
    let fua = byte(cdb, 1) & FUA != 0;
    if nlb > u64::from(MAX_CAW_BLOCKS) {
        return Err(Sense::invalid_cdb_field(13, None).into());
    }
    check_range(lu, lba, nlb)?;
    check_writable(lu)?;
    let len = (nlb * u64::from(lu.block_size())) as usize; // ≤ 255 × 4 KiB
    let data = ctx.req.data_out;
    if data.len() != 2 * len {
        // Verify and write halves can only be told apart with the exact
        // length; a transfer that disagrees with NUMBER OF LOGICAL BLOCKS
        // (e.g. 256 blocks wrapped to 0 in the one-byte field) is refused.
        return Err(Sense::invalid_cdb_field(13, None).into());
    }
    if nlb == 0 {
        // SBC-3: no compare, no write, not an error.
        return Ok(Done::good());
    }
    let (verify, write) = data.split_at(len);
    let off = byte_offset(lu, lba);
    let _g = lu.range_locks().lock(lba, nlb, LockMode::Exclusive);
    cancelled(ctx)?;
    let mut current = vec![0u8; len];
    lu.storage().read_at(&mut current, off).map_err(|e| storage_fail(&e, lba, false))?;
    if let Some(p) = first_diff(verify, &current) {
        return Err(miscompare(p as u64));
    }
    lu.before_write(lba, nlb)?;
    lu.storage().write_at(write, off).map_err(|e| storage_fail(&e, lba, true))?;
    flush_after(lu, fua, lba)?;
    Ok(Done::good())
}

/// ORWRITE (16): each data-out byte is ORed into the medium. Follows the
/// WRITE rules for ranges, transfer length limits and short data-out.
pub(crate) fn orwrite16(ctx: &Ctx<'_>) -> CmdResult {
    let lu = ctx.lu()?;
    let cdb = ctx.cdb;
    let lba = be(cdb, 2, 8);
    let blocks = be(cdb, 10, 4);
    let fua = byte(cdb, 1) & FUA != 0;
    if blocks > lu.max_transfer_blocks() {
        return Err(Sense::invalid_cdb_field(10, None).into());
    }
    check_range(lu, lba, blocks)?;
    check_writable(lu)?;
    let data = received(ctx, lu, blocks)?;
    let bs = lu.block_size() as usize;
    let blocks = (data.len() / bs) as u64;
    if blocks == 0 {
        return Ok(Done::good());
    }
    let _g = lu.range_locks().lock(lba, blocks, LockMode::Exclusive);
    lu.before_write(lba, blocks)?;
    let mut buf = vec![0u8; IO_CHUNK.min(data.len())];
    for (i, chunk) in data.chunks(IO_CHUNK).enumerate() {
        cancelled(ctx)?;
        let at = lba + (i * IO_CHUNK / bs) as u64;
        let b = &mut buf[..chunk.len()];
        lu.storage().read_at(b, byte_offset(lu, at)).map_err(|e| storage_fail(&e, at, false))?;
        for (m, d) in b.iter_mut().zip(chunk) {
            *m |= d;
        }
        lu.storage().write_at(b, byte_offset(lu, at)).map_err(|e| storage_fail(&e, at, true))?;
    }
    flush_after(lu, fua, lba)?;
    Ok(Done::good())
}
