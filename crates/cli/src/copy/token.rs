//! The token engine (ODX): POPULATE TOKEN on the source creates a ROD
//! token for a gather list, WRITE USING TOKEN on the destination writes it
//! to a scatter list. Both are sent with IMMED and followed by RECEIVE ROD
//! TOKEN INFORMATION polls on the same nexus: the POPULATE TOKEN's returns
//! the token, the WRITE USING TOKEN's the blocks written so far (the
//! progress bar). Copies larger than one token may represent (VPD 8Fh
//! 0000h: ranges per command, blocks per token) use several tokens
//! ([`oxcopy_initiator::plan::plan_tokens`]).

use super::offload::{self, OffloadError, OffloadReport, PollVerdict, Poller};
use super::xcopy::lun_name;
use crate::conn::IscsiLun;
use crate::progress::Progress;
use crate::sense;
use oxcopy_initiator::odx::{BlockRange, PopulateToken, RodTokenInfo, WriteUsingToken, TOKEN_LEN};
use oxcopy_initiator::plan::{plan_tokens, ranges, TokenLimits};
use oxcopy_initiator::Sense;
use oxcopy_scsi::wire::rod::CopyOpStatus;
use std::time::{Duration, Instant};

/// A ROD token.
pub type Token = [u8; TOKEN_LEN];

/// Longest a token operation may go without finishing (polls included).
pub const OPERATION_DEADLINE: Duration = Duration::from_secs(3600);

/// The LUN's token limits as advertised.
pub fn limits(l: &IscsiLun) -> TokenLimits {
    let t = l.offload.token.clone().unwrap_or_default();
    TokenLimits { max_range_descriptors: t.max_range_descriptors, max_token_transfer_size: t.max_token_transfer_size }
}

/// Why a finished operation failed, from its RRTI.
fn failure(what: &str, info: &RodTokenInfo) -> String {
    let sense = Sense::parse(&info.sense).map(|s| sense::describe(&s));
    match sense {
        Some(s) => format!("{what} {} ({:02X}h): {s}", CopyOpStatus(info.status).name(), info.status),
        None => format!("{what} {} ({:02X}h)", CopyOpStatus(info.status).name(), info.status),
    }
}

/// Poll RRTI for `list_id` until the operation ends; `on_progress` sees
/// each in-progress answer.
async fn wait(
    l: &IscsiLun,
    list_id: u32,
    what: &str,
    report: &mut OffloadReport,
    mut on_progress: impl FnMut(&RodTokenInfo),
) -> Result<RodTokenInfo, String> {
    let mut poller = Poller::new();
    let started = Instant::now();
    offload::set_active(Some((l.session.clone(), l.lun(), list_id)));
    let mut delay = Duration::ZERO;
    // Poll soon at first (most token operations on a fast copy manager end
    // in milliseconds), then back off quickly, never waiting past the copy
    // manager's estimate of the time left: a handful of polls per copy
    // whatever its size, so the initiator's wire stays quiet.
    let mut backoff = offload::FIRST_POLL;
    let r = loop {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if started.elapsed() > OPERATION_DEADLINE {
            break Err(format!("{what} did not finish within {} s", OPERATION_DEADLINE.as_secs()));
        }
        match l.session.receive_rod_token_information(l.lun(), list_id).await {
            Ok(info) => {
                poller.ok();
                if !info.in_progress() {
                    break Ok(info);
                }
                on_progress(&info);
                delay = backoff.min(offload::interval(info.delay_ms));
                backoff = (backoff * offload::POLL_BACKOFF).min(offload::MAX_POLL_INTERVAL);
            }
            Err(e) => match poller.failed(&e) {
                PollVerdict::Again => delay = offload::POLL_INTERVAL,
                PollVerdict::Stop => {
                    break Err(format!(
                        "RECEIVE ROD TOKEN INFORMATION for {what} keeps failing: {}",
                        sense::describe_error(&e)
                    ))
                }
                PollVerdict::Unknown(why) => break Err(format!("{what}: {why}")),
            },
        }
    };
    offload::set_active(None);
    if r.is_err() {
        // Do not leave a copy running that nobody waits for.
        let _ = tokio::time::timeout(Duration::from_secs(5), l.session.copy_operation_abort(l.lun(), list_id)).await;
    }
    report.status_polls += poller.polls;
    report.early_polls += poller.early;
    r
}

/// POPULATE TOKEN (IMMED) for `ranges` of `l`, then wait for the token.
pub async fn populate(
    l: &IscsiLun,
    ranges: Vec<BlockRange>,
    inactivity_timeout: u32,
    report: &mut OffloadReport,
) -> Result<Token, String> {
    let what = format!("POPULATE TOKEN on {}", lun_name(l));
    let list_id = offload::list_id();
    let pt = PopulateToken { immed: true, rod_type: None, inactivity_timeout, ranges };
    report.commands += 1;
    let o = l
        .session
        .populate_token(l.lun(), list_id, &pt)
        .await
        .map_err(|e| format!("{what}: {}", sense::describe_error(&e)))?;
    if !o.is_good() {
        return Err(format!("{what}: {}", sense::describe_outcome(&o)));
    }
    let info = wait(l, list_id, &what, report, |_| {}).await?;
    if !CopyOpStatus(info.status).is_success() {
        return Err(failure(&what, &info));
    }
    report.tokens += 1;
    info.token.ok_or_else(|| {
        format!(
            "{what}: the copy manager returned no token (ROD TOKEN DESCRIPTORS LENGTH {})",
            info.token_descriptors_length
        )
    })
}

/// WRITE USING TOKEN (IMMED) of `bytes` from `offset_into_rod` (blocks of
/// `l`) to `l` from `lba`, split into as many commands as `l`'s limits need
/// (each further one `offset_into_rod` on). DEL_TKN on the last when `delete`.
/// `progress` moves from `base` by the bytes written.
#[allow(clippy::too_many_arguments)]
pub async fn write(
    l: &IscsiLun,
    token: &Token,
    offset_into_rod: u64,
    lba: u64,
    bytes: u64,
    delete: bool,
    progress: &Progress,
    base: u64,
    report: &mut OffloadReport,
) -> Result<(), String> {
    let bs = l.block_size as u64;
    let lim = limits(l);
    let max_ranges = lim.max_range_descriptors.max(1) as usize;
    let mut all = ranges(lba, bytes, l.block_size);
    // Split ranges longer than the per-command transfer size.
    if lim.max_token_transfer_size > 0 {
        let cap = lim.max_token_transfer_size.min(u32::MAX as u64);
        all = all
            .into_iter()
            .flat_map(|r| {
                let mut v = Vec::new();
                let mut off = 0u64;
                while off < r.blocks as u64 {
                    let n = cap.min(r.blocks as u64 - off);
                    v.push(BlockRange { lba: r.lba + off, blocks: n as u32 });
                    off += n;
                }
                v
            })
            .collect();
    }
    // Group into commands: ≤ max ranges and ≤ max transfer size each.
    let mut cmds: Vec<Vec<BlockRange>> = Vec::new();
    let mut cur: Vec<BlockRange> = Vec::new();
    let mut cur_blocks = 0u64;
    for r in all {
        let fits_size = lim.max_token_transfer_size == 0 || cur_blocks + r.blocks as u64 <= lim.max_token_transfer_size;
        if !cur.is_empty() && (cur.len() >= max_ranges || !fits_size) {
            cmds.push(std::mem::take(&mut cur));
            cur_blocks = 0;
        }
        cur_blocks += r.blocks as u64;
        cur.push(r);
    }
    if !cur.is_empty() {
        cmds.push(cur);
    }
    let what = format!("WRITE USING TOKEN on {}", lun_name(l));
    let mut rod_off = offset_into_rod;
    let mut written = 0u64;
    let n = cmds.len();
    for (i, cmd) in cmds.into_iter().enumerate() {
        let blocks: u64 = cmd.iter().map(|r| r.blocks as u64).sum();
        let list_id = offload::list_id();
        let wut = WriteUsingToken {
            immed: true,
            del_tkn: delete && i + 1 == n,
            offset_into_rod: rod_off,
            token: *token,
            ranges: cmd,
        };
        report.commands += 1;
        let o = l
            .session
            .write_using_token(l.lun(), list_id, &wut)
            .await
            .map_err(|e| format!("{what}: {}", sense::describe_error(&e)))?;
        if !o.is_good() {
            return Err(format!("{what}: {}", sense::describe_outcome(&o)));
        }
        let at = base + written;
        let info = wait(l, list_id, &what, report, |info| {
            if info.units == 0xF1 {
                progress.set_position(at + (info.transfer_count.saturating_mul(bs)).min(blocks * bs));
            }
        })
        .await?;
        if !CopyOpStatus(info.status).is_success() {
            return Err(failure(&what, &info));
        }
        rod_off += blocks;
        written += blocks * bs;
        progress.set_position(base + written);
    }
    Ok(())
}

/// Copy `bytes` from byte `src_off` of `src` to byte `dst_off` of `dst` by tokens.
pub async fn copy(
    src: &IscsiLun,
    src_off: u64,
    dst: &IscsiLun,
    dst_off: u64,
    bytes: u64,
    progress: &Progress,
) -> Result<OffloadReport, OffloadError> {
    let (sbs, dbs) = (src.block_size, dst.block_size);
    let chunks = plan_tokens(src_off / sbs as u64, dst_off / dbs as u64, bytes, sbs, dbs, limits(src), limits(dst))
        .map_err(|e| OffloadError::new(e.to_string(), 0))?;
    let mut report = OffloadReport { copy_manager: lun_name(src), ..Default::default() };
    for c in chunks {
        let token = populate(src, c.src, 0, &mut report).await.map_err(|r| OffloadError::new(r, c.offset))?;
        let lba = c.dst.first().map(|r| r.lba).unwrap_or(dst_off / dbs as u64);
        write(dst, &token, 0, lba, c.bytes, true, progress, c.offset, &mut report)
            .await
            .map_err(|r| OffloadError::new(r, c.offset))?;
    }
    Ok(report)
}
