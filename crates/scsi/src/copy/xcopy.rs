//! EXTENDED COPY (LID1, 83h/00h): parse, plan, execute.
//!
//! # Planning before copying
//! After the parameter list parses, every segment is planned before any
//! byte moves: its CSCDs are resolved through the registry (filtered by the
//! nexus's access rights), its byte ranges computed and checked. Any
//! problem ends the command with COPY ABORTED, COMMAND-SPECIFIC INFORMATION
//! = the index of the offending segment, a segment pointer in the
//! sense-key-specific field, and nothing read or written:
//! - a CSCD ID that is neither an index into the CSCD list nor FFFFh (this
//!   LU), or a designator no reachable LU carries: UNREACHABLE COPY TARGET
//!   (08h/04h) — copying from or to another initiator's LUN is exactly this;
//! - a CSCD whose peripheral device type is not 0 (block): INCORRECT COPY
//!   TARGET DEVICE TYPE (0Dh/03h);
//! - an 02h segment whose byte count is not a whole number of both block
//!   lengths: UNEXPECTED INEXACT SEGMENT (26h/0Ah) (CAT/PAD processing is
//!   not implemented, so inexact segments are refused whatever CAT says);
//! - a range past the end of its LU (including LBA arithmetic that
//!   overflows 64 bits): COPY TARGET DEVICE NOT REACHABLE (0Dh/02h) — one
//!   of the three codes libiscsi's ValidateSegDescr accepts, and distinct
//!   from the access-control refusal;
//! - a segment longer than MAXIMUM SEGMENT LENGTH: COPY SEGMENT GRANULARITY
//!   VIOLATION (26h/0Dh);
//! - a write-protected destination: THIRD PARTY DEVICE FAILURE (0Dh/01h).
//!
//! Block lengths: a CSCD's DISK BLOCK LENGTH, when non-zero, is the unit of
//! that CSCD's LBAs and block counts (so a host may view a 512-byte LU in
//! 4096-byte blocks); zero means the LU's own block length.
//!
//! # Whose rights
//! The copy manager lives inside the target and has no I_T nexus of its
//! own: it reaches a copy source or destination with the I_T nexus of the
//! issuing initiator port and the target port through which that LU is
//! reachable (the receiving target, or the other target the registry found
//! it in). Persistent reservations are checked with that nexus before each
//! segment moves data — a host cannot copy into or out of an LU its
//! reservation rights keep it from writing or reading (COPY ABORTED / THIRD
//! PARTY DEVICE FAILURE) — and a 14h segment registers exactly that nexus
//! (PERSISTENT RESERVE OUT REGISTER with the segment's keys; a refusal is
//! THIRD PARTY DEVICE FAILURE too).
//!
//! # Executing
//! Segments run in order through the [`super::exec`] executor; a backend
//! failure is COPY ABORTED / THIRD PARTY DEVICE FAILURE with the segment
//! index; ABORT TASK / LUN RESET / session loss stop the copy between
//! chunks (TASK ABORTED; the record says what was done). Destinations with
//! write caching disabled (WCE=0) are flushed at the end, as writes are.

use super::edge::{completion, failure};
use super::params::{self, Cscd, ListIdUsage, ParamList, SegmentField, SegmentKind, CSCD_ID_THIS_LU};
use super::records::CopyOperation;
use super::{limits, SA_EXTENDED_COPY_LID1};
use crate::cdb::be;
use crate::exec::Request;
use crate::exec::{CmdResult, Ctx, Done, Fail};
use crate::lu::LogicalUnit;
use crate::lun::decode_lun;
use crate::metrics::CopyCommand;
use crate::nexus::Nexus;
use crate::registry::Resolution;
use crate::result::ScsiStatus;
use crate::sense::{Asc, Sense, SenseKey, SenseKeySpecific};
use oxcopy_copy::{execute, ExecControl, LiveSource, Run};
use std::sync::Arc;

/// Bytes of one segment: `run` from `src` to `dst`.
struct Extent {
    src: Arc<LogicalUnit>,
    dst: Arc<LogicalUnit>,
    run: Run,
}

/// A planned segment.
enum Step {
    /// Copy bytes, reading with the first nexus and writing with the second.
    Copy(Extent, Nexus, Nexus),
    /// Register `nexus` on `lu` with the keys (14h).
    Register { lu: Arc<LogicalUnit>, nexus: Nexus, key: u64, sa_key: u64 },
    /// Nothing to move (verify CSCD, zero-length segment).
    Nothing,
}

/// COPY ABORTED for segment `index`, with a segment pointer at `field`
/// bytes into its descriptor (or into the parameter list when `in_list`).
fn aborted(asc: Asc, index: usize, pointer: Option<(bool, usize)>) -> Sense {
    let mut s = Sense::new(SenseKey::COPY_ABORTED, asc).with_command_specific(index as u64);
    if let Some((relative_to_segment, byte)) = pointer {
        let byte = u16::try_from(byte).unwrap_or(u16::MAX);
        s.sks = Some(SenseKeySpecific::segment_pointer(relative_to_segment, byte, None));
    }
    s
}

/// One end of a segment: the LU, the block length its LBAs count in, and
/// the I_T nexus the copy manager reaches it with.
struct End {
    lu: Arc<LogicalUnit>,
    block_len: u64,
    nexus: Nexus,
}

struct Planner<'a, 'c> {
    ctx: &'a Ctx<'c>,
    this_lu: Arc<LogicalUnit>,
    list: &'a ParamList,
}

impl Planner<'_, '_> {
    /// Resolve the CSCD ID `id` (the field at `field` of segment `index`).
    fn end(&self, id: u16, index: usize, field: u16) -> Result<End, Sense> {
        if id == CSCD_ID_THIS_LU {
            let bl = u64::from(self.this_lu.block_size());
            return Ok(End { lu: self.this_lu.clone(), block_len: bl, nexus: self.ctx.req.nexus.clone() });
        }
        let Some(cscd) = self.list.cscds.get(usize::from(id)) else {
            return Err(aborted(Asc::UNREACHABLE_COPY_TARGET, index, Some((true, usize::from(field)))));
        };
        self.resolve(cscd, index)
    }

    fn resolve(&self, cscd: &Cscd, index: usize) -> Result<End, Sense> {
        let d = &cscd.designator;
        let registry = self.ctx.target.registry();
        let asking = self.ctx.req.nexus;
        let (lu, nexus) = match registry.resolve(asking, d.code_set, d.assoc_type, &d.value) {
            Resolution::Local(r) => (r.lu, Nexus { target_name: r.target, ..asking.clone() }),
            _ => {
                tracing::info!(
                    initiator = %self.ctx.req.nexus.initiator_name,
                    target = %self.ctx.req.nexus.target_name,
                    cscd_offset = cscd.offset,
                    "EXTENDED COPY names a logical unit this nexus cannot reach"
                );
                return Err(aborted(Asc::UNREACHABLE_COPY_TARGET, index, Some((false, cscd.offset))));
            }
        };
        if cscd.pdt != 0 {
            return Err(aborted(Asc::INCORRECT_COPY_TARGET_DEVICE_TYPE, index, Some((false, cscd.offset + 1))));
        }
        let block_len = if cscd.block_len != 0 { u64::from(cscd.block_len) } else { u64::from(lu.block_size()) };
        Ok(End { lu, block_len, nexus })
    }

    fn plan(&self, index: usize) -> Result<Step, Sense> {
        let seg = &self.list.segments[index];
        let range_error =
            |field: u16| aborted(Asc::COPY_TARGET_DEVICE_NOT_REACHABLE, index, Some((true, usize::from(field))));
        let (src, dst, src_byte, dst_byte, len, count_field) = match seg.kind {
            SegmentKind::Verify { src, tur: _ } => {
                // Reachable is all there is to check: our LUs are always ready.
                self.end(src, index, SegmentField::SOURCE_CSCD_ID)?;
                return Ok(Step::Nothing);
            }
            SegmentKind::RegisterKey { dst, key, sa_key } => {
                let d = self.end(dst, index, SegmentField::DESTINATION_CSCD_ID)?;
                return Ok(Step::Register { lu: d.lu, nexus: d.nexus, key, sa_key });
            }
            SegmentKind::BlockToBlock { src, dst, dc, cat: _, blocks, src_lba, dst_lba } => {
                let s = self.end(src, index, SegmentField::SOURCE_CSCD_ID)?;
                let d = self.end(dst, index, SegmentField::DESTINATION_CSCD_ID)?;
                let unit = if dc { d.block_len } else { s.block_len };
                let len = u64::from(blocks) * unit; // ≤ 65535 × (2^24 - 1): no overflow
                if len % s.block_len != 0 || len % d.block_len != 0 {
                    return Err(aborted(
                        Asc::UNEXPECTED_INEXACT_SEGMENT,
                        index,
                        Some((true, usize::from(SegmentField::COUNT_02H))),
                    ));
                }
                let sb = src_lba.checked_mul(s.block_len).ok_or_else(|| range_error(SegmentField::SOURCE_LBA))?;
                let db = dst_lba.checked_mul(d.block_len).ok_or_else(|| range_error(SegmentField::DESTINATION_LBA))?;
                (s, d, sb, db, len, SegmentField::COUNT_02H)
            }
            SegmentKind::BlockToBlockOffset { src, dst, cat: _, bytes, src_lba, dst_lba, src_offset, dst_offset } => {
                let s = self.end(src, index, SegmentField::SOURCE_CSCD_ID)?;
                let d = self.end(dst, index, SegmentField::DESTINATION_CSCD_ID)?;
                let sb = src_lba
                    .checked_mul(s.block_len)
                    .and_then(|b| b.checked_add(u64::from(src_offset)))
                    .ok_or_else(|| range_error(SegmentField::SOURCE_LBA))?;
                let db = dst_lba
                    .checked_mul(d.block_len)
                    .and_then(|b| b.checked_add(u64::from(dst_offset)))
                    .ok_or_else(|| range_error(SegmentField::DESTINATION_LBA))?;
                (s, d, sb, db, u64::from(bytes), SegmentField::COUNT_0AH)
            }
        };
        if len > u64::from(limits::MAX_SEGMENT_LENGTH) {
            return Err(aborted(
                Asc::COPY_SEGMENT_GRANULARITY_VIOLATION,
                index,
                Some((true, usize::from(count_field))),
            ));
        }
        let cap = |lu: &LogicalUnit| lu.num_blocks().saturating_mul(u64::from(lu.block_size()));
        // Zero-length segments are no-ops, but their LBAs must still be on the LU.
        if src_byte.checked_add(len).is_none_or(|end| end > cap(&src.lu) || (len == 0 && src_byte >= cap(&src.lu))) {
            return Err(range_error(SegmentField::SOURCE_LBA));
        }
        if dst_byte.checked_add(len).is_none_or(|end| end > cap(&dst.lu) || (len == 0 && dst_byte >= cap(&dst.lu))) {
            return Err(range_error(SegmentField::DESTINATION_LBA));
        }
        if len == 0 {
            return Ok(Step::Nothing);
        }
        if dst.lu.write_protected() {
            return Err(aborted(Asc::THIRD_PARTY_DEVICE_FAILURE, index, None));
        }
        let ext = Extent { src: src.lu, dst: dst.lu, run: Run { src: src_byte, dst: dst_byte, len } };
        Ok(Step::Copy(ext, src.nexus, dst.nexus))
    }
}

/// EXTENDED COPY (LID1).
pub(crate) fn extended_copy(ctx: &Ctx<'_>) -> CmdResult {
    let registry = ctx.target.registry();
    let r = run(ctx);
    registry.metrics().copy_command(CopyCommand::ExtendedCopy, r.as_ref().is_ok_and(|d| d.status == ScsiStatus::GOOD));
    r
}

fn run(ctx: &Ctx<'_>) -> CmdResult {
    let lu = ctx.lu()?;
    let param_len = u32::try_from(be(ctx.cdb, 10, 4)).unwrap_or(u32::MAX);
    let Some(list) = params::parse_lid1(ctx.req.data_out, param_len)? else {
        return Ok(Done::good());
    };
    let this_lu = decode_lun(ctx.req.lun)
        .and_then(|id| ctx.target.lu(id).cloned())
        .ok_or_else(|| Sense::illegal(Asc::LOGICAL_UNIT_NOT_SUPPORTED))?;
    let list_id = (list.usage != ListIdUsage::None).then_some(u32::from(list.list_id));
    let manager = ctx.target.registry().copy_manager();
    let op = manager.begin(ctx.req.nexus, lu.naa(), list_id, SA_EXTENDED_COPY_LID1).map_err(|e| {
        let lu_label = super::odx::lu_name(ctx);
        ctx.target.registry().note_refusal(&ctx.req.nexus.initiator_name, &lu_label, "EXTENDED COPY", &e);
        Fail::from(e)
    })?;
    let result = run_list(ctx, &this_lu, &list, &op);
    manager.finish(&op, completion(&result, lu));
    result.map(|()| Done::good())
}

fn run_list(ctx: &Ctx<'_>, this_lu: &Arc<LogicalUnit>, list: &ParamList, op: &CopyOperation) -> Result<(), Fail> {
    let planner = Planner { ctx, this_lu: this_lu.clone(), list };
    let steps = (0..list.segments.len()).map(|i| planner.plan(i)).collect::<Result<Vec<_>, Sense>>()?;
    let registry = ctx.target.registry();
    let cancel = [ctx.req.cancel, op.cancel_token()];
    let preempted = || this_lu.pr.aborted_since(ctx.req.nexus, ctx.pr_epoch);
    let ctl = ExecControl {
        cancel: &cancel,
        stop: Some(&preempted),
        progress: op.progress(),
        metrics: registry.metrics(),
        chunk_bytes: registry.copy_chunk_bytes(),
    };
    let mut written: Vec<Arc<LogicalUnit>> = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        match step {
            Step::Copy(ext, reader, writer) => {
                if ext.src.reservation_conflict(reader, false) || ext.dst.reservation_conflict(writer, true) {
                    flush_uncached(&written);
                    return Err(aborted(Asc::THIRD_PARTY_DEVICE_FAILURE, index, None).into());
                }
                if let Err(e) = execute(&LiveSource(ext.src.clone()), ext.dst.as_ref(), &[ext.run], &ctl) {
                    flush_uncached(&written);
                    return Err(segment_failure(e, index));
                }
                if !written.iter().any(|w| Arc::ptr_eq(w, &ext.dst)) {
                    written.push(ext.dst.clone());
                }
            }
            Step::Register { lu, nexus, key, sa_key } => {
                if let Err(f) = register_key(ctx, lu, nexus, *key, *sa_key) {
                    tracing::info!(?f, segment = index, "EXTENDED COPY: registering the reservation key failed");
                    flush_uncached(&written);
                    return Err(aborted(Asc::THIRD_PARTY_DEVICE_FAILURE, index, None).into());
                }
            }
            Step::Nothing => {}
        }
        op.segment_done();
    }
    if !flush_uncached(&written) {
        return Err(aborted(Asc::THIRD_PARTY_DEVICE_FAILURE, steps.len().saturating_sub(1), None).into());
    }
    Ok(())
}

/// 14h: PERSISTENT RESERVE OUT (REGISTER) of `nexus` on `lu`, through the
/// reservation code itself so that every REGISTER rule (key match, unit
/// attentions, APTPL state) applies unchanged.
fn register_key(ctx: &Ctx<'_>, lu: &LogicalUnit, nexus: &Nexus, key: u64, sa_key: u64) -> Result<(), Fail> {
    const PROUT_REGISTER: u8 = 0x00;
    let cdb = [0x5F, PROUT_REGISTER, 0, 0, 0, 0, 0, 0, 24, 0];
    let mut params = [0u8; 24];
    params[0..8].copy_from_slice(&key.to_be_bytes());
    params[8..16].copy_from_slice(&sa_key.to_be_bytes());
    let req =
        Request { nexus, lun: ctx.req.lun, cdb: &cdb, data_out: &params, expected_len: 24, cancel: ctx.req.cancel };
    let sub = Ctx { target: ctx.target, lu: Some(lu), req: &req, cdb: &cdb, pr_epoch: lu.pr.abort_epoch() };
    crate::pr::persistent_reserve_out(&sub).map(|_| ())
}

/// Flush destinations whose write cache is disabled; false if one failed.
fn flush_uncached(lus: &[Arc<LogicalUnit>]) -> bool {
    let mut ok = true;
    for lu in lus.iter().filter(|l| !l.mode.wce()) {
        if let Err(e) = lu.flush() {
            tracing::warn!(error = %e, "flush after EXTENDED COPY failed");
            ok = false;
        }
    }
    ok
}

/// The engine's error for segment `index`: the edge's sense, with the
/// segment index in COMMAND-SPECIFIC INFORMATION.
fn segment_failure(e: oxcopy_copy::CopyError, index: usize) -> Fail {
    match failure(e) {
        Fail::Check(s) => Fail::Check(s.with_command_specific(index as u64)),
        other => other,
    }
}
