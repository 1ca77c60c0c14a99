//! Token copy commands (ODX): POPULATE TOKEN (83h/10h), WRITE USING TOKEN
//! (83h/11h), COPY OPERATION ABORT (83h/1Ch), RECEIVE ROD TOKEN INFORMATION
//! (84h/07h) and REPORT ALL ROD TOKENS (84h/08h).
//!
//! PT and WUT are [`CopyOperation`]s in the same per-(nexus, LU, list id)
//! records as EXTENDED COPY, so RRTI, RECEIVE COPY STATUS (LID4) and COPY
//! OPERATION ABORT find them. Parameter lists are validated completely
//! ([`super::rod_params`], [`super::rod_plan`]) before anything is begun;
//! then the work runs in the foreground, or with IMMED=1 through the
//! registry's spawner while the command returns GOOD at once.
//!
//! WUT sense, besides the validation errors: token refusals are ILLEGAL
//! REQUEST 23h/xx ([`TokenError::sense`]); a token that may not be used by
//! this nexus (`token_scope = "initiator"` and the source LU is out of its
//! reach) is 23h/00h INVALID TOKEN OPERATION, CAUSE NOT REPORTABLE (nothing
//! about the source is revealed); a token revoked while the copy runs stops
//! it with 23h/06h; a backend failure is COPY ABORTED / THIRD PARTY DEVICE
//! FAILURE (0Dh/01h) with INFORMATION = destination blocks written; COPY
//! OPERATION ABORT, ABORT TASK or nexus loss end it with TASK ABORTED and
//! the record reads 60h.

use super::edge::{completion, failure};
use super::limits::rod_limits;
use super::records::CopyOperation;
use super::rod_params::{parse_populate, parse_write_using_token, PopulateParams, WriteUsingTokenParams};
use super::rod_plan::{plan_write, ByteRun};
use super::rod_results::{estimated_delay_ms, final_status, rrti_body, RodOpStatus, RrtiReport};
use crate::cdb::be;
use crate::exec::{CmdResult, Ctx, Done, Fail};
use crate::lu::LogicalUnit;
use crate::lun::decode_lun;
use crate::metrics::CopyCommand;
use crate::registry::{LuRegistry, Resolution};
use crate::result::ScsiStatus;
use crate::sense::{Asc, Sense, SenseKey};
use oxcopy_copy::token::is_zero_token;
use oxcopy_copy::{
    execute, CancelToken, Consume, CopyError, CopySource, DeviceInfo, ExecControl, Held, OpStatus, RodInfo, RodManager,
    TokenScope, Unit, Zeros,
};
use std::sync::Arc;

/// Service actions of THIRD-PARTY COPY OUT (83h) for token copy.
pub struct CopyOutServiceAction;

impl CopyOutServiceAction {
    /// POPULATE TOKEN.
    pub const POPULATE_TOKEN: u8 = 0x10;
    /// WRITE USING TOKEN.
    pub const WRITE_USING_TOKEN: u8 = 0x11;
    /// COPY OPERATION ABORT.
    pub const COPY_OPERATION_ABORT: u8 = 0x1C;
}

/// REPORT ALL ROD TOKENS lists at most this many (as CTL).
const MAX_REPORTED_TOKENS: usize = 512;

fn list_id(ctx: &Ctx<'_>, at: usize) -> u32 {
    u32::try_from(be(ctx.cdb, at, 4)).unwrap_or(u32::MAX)
}

/// The addressed LU as an `Arc` (background work outlives the borrow).
fn this_lu(ctx: &Ctx<'_>) -> Result<Arc<LogicalUnit>, Fail> {
    decode_lun(ctx.req.lun)
        .and_then(|id| ctx.target.lu(id).cloned())
        .ok_or_else(|| Sense::illegal(Asc::LOGICAL_UNIT_NOT_SUPPORTED).into())
}

/// Run `job` for `op`: in the background when asked and possible, else
/// now. Records the outcome and counts the command either way.
fn run_op(
    ctx: &Ctx<'_>,
    rod: &Arc<RodManager>,
    lu: &Arc<LogicalUnit>,
    op: Arc<CopyOperation>,
    immed: bool,
    command: CopyCommand,
    job: impl FnOnce(&[&CancelToken]) -> Result<(), Fail> + Send + 'static,
) -> CmdResult {
    let registry = ctx.target.registry().clone();
    let spawner = if immed { rod.spawner() } else { None };
    if let Some(spawner) = spawner {
        let Some(slot) = rod.background_slot() else {
            registry.refusals().refused(
                &ctx.req.nexus.initiator_name,
                &lu_name(ctx),
                "background copies (16 at once)",
                command.as_str(),
            );
            registry.copy_manager().finish(&op, completion(&Err(too_busy().into()), lu));
            registry.metrics().copy_command(command, false);
            return Err(too_busy().into());
        };
        op.update_rod_info(|r| r.background = true);
        let lu = lu.clone();
        let op2 = op.clone();
        let bg = Box::new(move || {
            let _slot = slot;
            let r = job(&[op2.cancel_token()]);
            registry.copy_manager().finish(&op2, completion(&r, &lu));
            registry.metrics().copy_command(command, r.is_ok());
        });
        return match spawner.spawn(bg) {
            Ok(()) => Ok(Done::good()),
            Err(job) => {
                // Could not hand it over: run it here rather than fail.
                op.update_rod_info(|r| r.background = false);
                job();
                Ok(Done::good())
            }
        };
    }
    let r = job(&[ctx.req.cancel, op.cancel_token()]);
    registry.copy_manager().finish(&op, completion(&r, lu));
    registry.metrics().copy_command(command, r.is_ok());
    r.map(|()| Done::good())
}

/// "target/LUN" of the addressed LU, for logs.
pub(crate) fn lu_name(ctx: &Ctx<'_>) -> String {
    format!("{}/{}", ctx.target.name(), decode_lun(ctx.req.lun).map_or(-1, i32::from))
}

/// Begin the operation of list identifier (CDB bytes 6..10) on `lu`, logging a resource refusal.
fn begin(ctx: &Ctx<'_>, lu: &LogicalUnit, sa: u8, command: &str) -> Result<Arc<CopyOperation>, Fail> {
    let registry = ctx.target.registry();
    registry.copy_manager().begin(ctx.req.nexus, lu.naa(), Some(list_id(ctx, 6)), sa).map_err(|e| {
        registry.note_refusal(&ctx.req.nexus.initiator_name, &lu_name(ctx), command, &e);
        e.into()
    })
}

fn too_busy() -> Sense {
    Sense::illegal(Asc::INSUFFICIENT_RESOURCES)
}

/// Count a command refused before its operation began.
fn refused<T>(registry: &LuRegistry, command: CopyCommand, r: Result<T, Fail>) -> Result<T, Fail> {
    if r.is_err() {
        registry.metrics().copy_command(command, false);
    }
    r
}

/// 83h/10h POPULATE TOKEN.
pub(crate) fn populate_token(ctx: &Ctx<'_>) -> CmdResult {
    let registry = ctx.target.registry();
    let rod = registry.rod();
    rod.reap();
    let prep = refused(registry, CopyCommand::PopulateToken, prepare_populate(ctx, &rod));
    let (lu, params, op) = prep?;
    let prov = lu.provisioning();
    let device = DeviceInfo { target_name: ctx.target.name().to_owned(), lbpme: prov.lbpme, lbprz: prov.lbprz };
    let owner = ctx.req.nexus.initiator_name.clone();
    let (registry2, lu_label) = (registry.clone(), lu_name(ctx));
    let rod2 = rod.clone();
    let unit: Arc<dyn Unit> = lu.clone();
    let op2 = op.clone();
    run_op(ctx, &rod, &lu, op, params.immed, CopyCommand::PopulateToken, move |cancel| {
        if cancel.iter().any(|c| c.is_cancelled()) {
            return Err(Fail::Status(ScsiStatus::TASK_ABORTED));
        }
        let (token, blocks) = rod2
            .create(&unit, &device, params.rod_type, &params.ranges, params.inactivity_timeout, &owner)
            .inspect_err(|e| registry2.note_refusal(&owner, &lu_label, "POPULATE TOKEN", e))?;
        if cancel.iter().any(|c| c.is_cancelled()) {
            if let Ok(h) = rod2.store().verify(&token[..]) {
                rod2.cancel(h.id);
            }
            return Err(Fail::Status(ScsiStatus::TASK_ABORTED));
        }
        op2.update_rod_info(|r| {
            r.represented_blocks = blocks;
            r.token = Some(token);
        });
        Ok(())
    })
}

fn prepare_populate(
    ctx: &Ctx<'_>,
    rod: &RodManager,
) -> Result<(Arc<LogicalUnit>, PopulateParams, Arc<CopyOperation>), Fail> {
    let lu = this_lu(ctx)?;
    let limits = rod_limits(rod, &lu);
    let params = parse_populate(ctx.req.data_out, list_id(ctx, 10), lu.num_blocks(), &limits)?;
    let op = begin(ctx, &lu, CopyOutServiceAction::POPULATE_TOKEN, "POPULATE TOKEN")?;
    op.set_rod_info(RodInfo {
        block_size: lu.block_size(),
        requested_blocks: params.total_blocks,
        background: false,
        represented_blocks: 0,
        token: None,
    });
    Ok((lu, params, op))
}

/// Where a WRITE USING TOKEN reads.
enum WriteSource {
    /// The block device zero ROD token.
    Zero,
    /// A token of ours, or one of another node of the copy domain, held for the copy.
    Token(Held),
}

impl WriteSource {
    /// The engine's source for this copy.
    fn source(&self) -> &dyn CopySource {
        match self {
            WriteSource::Zero => &Zeros,
            WriteSource::Token(held) => held.source(),
        }
    }
}

/// 83h/11h WRITE USING TOKEN.
pub(crate) fn write_using_token(ctx: &Ctx<'_>) -> CmdResult {
    let registry = ctx.target.registry();
    let rod = registry.rod();
    rod.reap();
    let prep = refused(registry, CopyCommand::WriteUsingToken, prepare_write(ctx, &rod));
    let (lu, params, source, runs, op) = prep?;
    let chunk = registry.copy_chunk_bytes();
    let metrics = registry.metrics().clone();
    let lu2 = lu.clone();
    let op2 = op.clone();
    let (nexus, pr_epoch) = (ctx.req.nexus.clone(), ctx.pr_epoch);
    run_op(ctx, &rod, &lu, op, params.immed, CopyCommand::WriteUsingToken, move |cancel| {
        // PREEMPT AND ABORT of the issuing nexus stops the copy too.
        let preempted = || lu2.pr.aborted_since(&nexus, pr_epoch);
        let ctl = ExecControl {
            cancel,
            stop: Some(&preempted),
            progress: op2.progress(),
            metrics: &metrics,
            chunk_bytes: chunk,
        };
        let r = execute(source.source(), lu2.as_ref(), &runs, &ctl).map(|_| ()).map_err(|e| {
            // COPY ABORTED sense says how many destination blocks were written.
            let blocks = ctl.progress.bytes() / u64::from(lu2.block_size().max(1));
            match failure(e) {
                Fail::Check(s) if s.key == SenseKey::COPY_ABORTED => Fail::Check(s.with_information(blocks)),
                other => other,
            }
        });
        if let (true, WriteSource::Token(held)) = (params.del_tkn, &source) {
            held.delete();
        }
        drop(source);
        if r.is_ok() && !lu2.mode.wce() {
            if let Err(e) = lu2.flush() {
                tracing::warn!(error = %e, "flush after WRITE USING TOKEN failed");
                return Err(Sense::new(SenseKey::COPY_ABORTED, Asc::THIRD_PARTY_DEVICE_FAILURE).into());
            }
        }
        r
    })
}

type Prepared = (Arc<LogicalUnit>, WriteUsingTokenParams, WriteSource, Vec<ByteRun>, Arc<CopyOperation>);

fn prepare_write(ctx: &Ctx<'_>, rod: &Arc<RodManager>) -> Result<Prepared, Fail> {
    let lu = this_lu(ctx)?;
    let limits = rod_limits(rod, &lu);
    let params = parse_write_using_token(ctx.req.data_out, list_id(ctx, 10), lu.num_blocks(), &limits)?;
    crate::sbc::check_writable(&lu)?;
    let dst_bs = lu.block_size();
    let (source, runs) = if is_zero_token(&params.token[..]) {
        // Zero-fill the destination ranges: the zero ROD is endless, so
        // OFFSET INTO ROD changes nothing and nothing is looked up.
        let bs = u64::from(dst_bs);
        let runs = params
            .ranges
            .iter()
            .filter(|r| r.blocks > 0)
            .map(|r| ByteRun { src: 0, dst: r.lba * bs, len: u64::from(r.blocks) * bs })
            .collect();
        (WriteSource::Zero, runs)
    } else {
        let held = rod.acquire(&params.token[..]).map_err(|e| {
            if let CopyError::Unreachable(why) | CopyError::RemoteFailed(why) = &e {
                tracing::warn!(error = %why, "WRITE USING TOKEN: the node that made the token cannot serve it");
            }
            failure(e)
        })?;
        // Under token_scope = initiator the writing nexus must reach the
        // source LU; another node's LU cannot be checked from here.
        let reachable = || {
            held.local_unit().is_some_and(|u| {
                matches!(ctx.target.registry().resolve(ctx.req.nexus, 0x01, 0x03, &u.id()), Resolution::Local(_))
            })
        };
        if rod.config().scope == TokenScope::Initiator && !reachable() {
            tracing::info!(
                initiator = %ctx.req.nexus.initiator_name,
                "WRITE USING TOKEN: the token's source is out of this initiator's reach (token_scope = initiator)"
            );
            return Err(Sense::illegal(Asc::INVALID_TOKEN_OPERATION_CAUSE_NOT_REPORTABLE).into());
        }
        let (rod_ranges, rod_bs) = held.plan();
        let runs = plan_write(&rod_ranges, rod_bs, params.offset_into_rod, &params.ranges, dst_bs)?;
        (WriteSource::Token(held), runs)
    };
    let op = begin(ctx, &lu, CopyOutServiceAction::WRITE_USING_TOKEN, "WRITE USING TOKEN")?;
    op.set_rod_info(RodInfo {
        block_size: dst_bs,
        requested_blocks: params.total_blocks,
        background: false,
        represented_blocks: 0,
        token: None,
    });
    Ok((lu, params, source, runs, op))
}

/// 83h/1Ch COPY OPERATION ABORT: the operation ends with status 60h.
pub(crate) fn copy_operation_abort(ctx: &Ctx<'_>) -> CmdResult {
    let lu = ctx.lu()?;
    let id = list_id(ctx, 2);
    let manager = ctx.target.registry().copy_manager();
    if let Some(op) = manager.running(ctx.req.nexus, lu.naa(), id) {
        op.cancel_token().cancel();
        return Ok(Done::good());
    }
    if manager.known(ctx.req.nexus, lu.naa(), id) {
        return Ok(Done::good()); // already ended: nothing to abort
    }
    Err(Sense::invalid_cdb_field(2, None).into())
}

/// 84h/07h RECEIVE ROD TOKEN INFORMATION.
pub(crate) fn receive_rod_token_information(ctx: &Ctx<'_>) -> CmdResult {
    let lu = ctx.lu()?;
    let registry = ctx.target.registry();
    registry.rod().reap();
    let snap = registry
        .copy_manager()
        .lookup(ctx.req.nexus, lu.naa(), list_id(ctx, 2), Consume::Status)
        .ok_or_else(|| Sense::invalid_cdb_field(2, None))?;
    let bs = snap.rod.as_ref().map_or(lu.block_size(), |r| r.block_size).max(1);
    let requested = snap.rod.as_ref().map_or(0, |r| r.requested_blocks);
    let is_pt = snap.service_action == CopyOutServiceAction::POPULATE_TOKEN;
    let count = match (&snap.rod, is_pt) {
        (Some(r), true) => r.represented_blocks,
        _ => snap.bytes / u64::from(bs),
    };
    let status = match snap.status {
        OpStatus::Running if snap.rod.as_ref().is_some_and(|r| r.background) => RodOpStatus::InProgressBackground,
        OpStatus::Running => RodOpStatus::InProgressForeground,
        OpStatus::Succeeded => final_status(count, requested),
        OpStatus::Failed => RodOpStatus::CompletedWithErrors,
        OpStatus::Aborted => RodOpStatus::Terminated,
    };
    let sense = snap.outcome.sense.as_deref().and_then(Sense::decode);
    let token = match (snap.status, &snap.rod) {
        (OpStatus::Succeeded, Some(r)) if is_pt => r.token.as_deref(),
        _ => None,
    };
    let body = rrti_body(&RrtiReport {
        response_to_sa: snap.service_action,
        status,
        transfer_count: count,
        completion_status: snap.outcome.scsi_status.0,
        sense: sense.as_ref(),
        token,
        delay_ms: estimated_delay_ms(snap.bytes, requested.saturating_mul(u64::from(bs)), snap.elapsed),
    });
    Ok(Done::data(body, be(ctx.cdb, 10, 4)))
}

/// 84h/08h REPORT ALL ROD TOKENS: the ROD management part (first 96
/// bytes) of each live token created by the addressed LU — never the
/// authenticated remainder, so the list cannot be replayed as tokens.
pub(crate) fn report_all_rod_tokens(ctx: &Ctx<'_>) -> CmdResult {
    let lu = ctx.lu()?;
    let rod = ctx.target.registry().rod();
    rod.reap();
    let tokens = rod.management_tokens(&lu.naa(), MAX_REPORTED_TOKENS);
    let mut d = vec![0u8; 8];
    for t in &tokens {
        d.extend_from_slice(t);
    }
    let avail = u32::try_from(d.len() - 4).unwrap_or(u32::MAX);
    d[0..4].copy_from_slice(&avail.to_be_bytes());
    Ok(Done::data(d, be(ctx.cdb, 10, 4)))
}

#[cfg(test)]
#[path = "odx_tests.rs"]
mod tests;
