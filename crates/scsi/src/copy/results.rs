//! THIRD-PARTY COPY IN (84h), the RECEIVE COPY RESULTS family: COPY STATUS
//! (00h), OPERATING PARAMETERS (03h), FAILED SEGMENT DETAILS (04h) and
//! RECEIVE COPY STATUS (LID4) (05h).
//!
//! Responses are always cut to the ALLOCATION LENGTH, never refused for a
//! short one. An unknown list identifier (or one of another nexus or LU)
//! is INVALID FIELD IN CDB pointing at the LIST IDENTIFIER (byte 2).

use super::limits;
use super::records::OpSnapshot;
use crate::cdb::{be, byte};
use crate::exec::{CmdResult, Ctx, Done, Fail};
use crate::sense::Sense;
use oxcopy_copy::{Consume, OpStatus};

/// COPY MANAGER STATUS values of COPY STATUS (LID1).
const LID1_IN_PROGRESS: u8 = 0x00;
const LID1_COMPLETED_OK: u8 = 0x01;
const LID1_COMPLETED_ERROR: u8 = 0x02;

/// COPY OPERATION STATUS values of RECEIVE COPY STATUS (LID4) / RRTI.
pub const LID4_COMPLETED_OK: u8 = 0x01;
pub const LID4_COMPLETED_ERROR: u8 = 0x02;
pub const LID4_IN_PROGRESS_FOREGROUND: u8 = 0x11;
pub const LID4_TERMINATED: u8 = 0x60;

/// ESTIMATED STATUS UPDATE DELAY once the status is final, and while running (ms).
const DELAY_FINAL: u32 = 0xFFFF_FFFE;
const DELAY_RUNNING_MS: u32 = 100;

/// TRANSFER COUNT UNITS: bytes.
const UNITS_BYTES: u8 = 0x00;

fn unknown_list() -> Sense {
    Sense::invalid_cdb_field(2, None)
}

fn lookup(ctx: &Ctx<'_>, list_id: u32, what: Consume) -> Result<OpSnapshot, Fail> {
    let lu = ctx.lu()?;
    Ok(ctx.target.registry().copy_manager().lookup(ctx.req.nexus, lu.naa(), list_id, what).ok_or_else(unknown_list)?)
}

/// The smallest TRANSFER COUNT UNITS (bytes, KiB, MiB, ... EiB) in which
/// `bytes` fits a 32-bit count.
fn scaled_count(bytes: u64) -> (u8, u32) {
    let mut units = 0u8;
    let mut v = bytes;
    while v > u64::from(u32::MAX) {
        v >>= 10;
        units += 1;
    }
    (units, u32::try_from(v).unwrap_or(u32::MAX))
}

/// 84h/00h COPY STATUS (LID1): 12 bytes.
pub(crate) fn copy_status(ctx: &Ctx<'_>) -> CmdResult {
    let snap = lookup(ctx, u32::from(byte(ctx.cdb, 2)), Consume::Status)?;
    let mut d = vec![0u8; 12];
    d[0..4].copy_from_slice(&8u32.to_be_bytes());
    d[4] = match snap.status {
        OpStatus::Running => LID1_IN_PROGRESS,
        OpStatus::Succeeded => LID1_COMPLETED_OK,
        OpStatus::Failed | OpStatus::Aborted => LID1_COMPLETED_ERROR,
    };
    d[5..7].copy_from_slice(&u16::try_from(snap.segments).unwrap_or(u16::MAX).to_be_bytes());
    let (units, count) = scaled_count(snap.bytes);
    d[7] = units;
    d[8..12].copy_from_slice(&count.to_be_bytes());
    Ok(Done::data(d, be(ctx.cdb, 10, 4)))
}

/// The implemented descriptor type codes, ascending (RCR 03h and VPD 8Fh 0008h).
pub(crate) fn implemented_descriptors() -> &'static [u8] {
    &limits::IMPLEMENTED_DESCRIPTOR_TYPES
}

/// 84h/03h RECEIVE COPY OPERATING PARAMETERS.
pub(crate) fn operating_parameters(ctx: &Ctx<'_>) -> CmdResult {
    ctx.lu()?;
    let codes = implemented_descriptors();
    let mut d = vec![0u8; 44];
    d.extend_from_slice(codes);
    let avail = u32::try_from(d.len() - 4).unwrap_or(u32::MAX);
    d[0..4].copy_from_slice(&avail.to_be_bytes());
    d[4] = 0x01; // SNLID: LIST ID USAGE 11b supported
    d[8..10].copy_from_slice(&limits::MAX_CSCD_DESCRIPTORS.to_be_bytes());
    d[10..12].copy_from_slice(&limits::MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    d[12..16].copy_from_slice(&limits::MAX_DESCRIPTOR_LIST_LENGTH.to_be_bytes());
    d[16..20].copy_from_slice(&limits::MAX_SEGMENT_LENGTH.to_be_bytes());
    d[20..24].copy_from_slice(&limits::MAX_INLINE_DATA_LENGTH.to_be_bytes());
    d[24..28].copy_from_slice(&limits::HELD_DATA_LIMIT.to_be_bytes());
    // 28..32 MAXIMUM STREAM DEVICE TRANSFER SIZE: 0 (no stream devices).
    d[34..36].copy_from_slice(&limits::TOTAL_CONCURRENT_COPIES.to_be_bytes());
    d[36] = u8::try_from(limits::TOTAL_CONCURRENT_COPIES).unwrap_or(u8::MAX);
    d[37] = limits::DATA_SEGMENT_GRANULARITY_LOG2;
    d[38] = limits::INLINE_DATA_GRANULARITY_LOG2;
    d[39] = 0; // HELD DATA GRANULARITY
    d[43] = u8::try_from(codes.len()).unwrap_or(u8::MAX);
    Ok(Done::data(d, be(ctx.cdb, 10, 4)))
}

/// 84h/04h RECEIVE COPY FAILURE DETAILS (LID1).
pub(crate) fn failure_details(ctx: &Ctx<'_>) -> CmdResult {
    let snap = lookup(ctx, u32::from(byte(ctx.cdb, 2)), Consume::Details)?;
    let sense = match snap.status {
        OpStatus::Succeeded | OpStatus::Running => None,
        OpStatus::Failed | OpStatus::Aborted => Some(snap.outcome.sense.unwrap_or_default()),
    };
    let mut d = vec![0u8; 60];
    if let Some(sense) = sense {
        let avail = u32::try_from(56 + sense.len()).unwrap_or(u32::MAX);
        d[0..4].copy_from_slice(&avail.to_be_bytes());
        d[56] = LID1_COMPLETED_ERROR;
        d[58..60].copy_from_slice(&u16::try_from(sense.len()).unwrap_or(u16::MAX).to_be_bytes());
        d.extend_from_slice(&sense);
    }
    Ok(Done::data(d, be(ctx.cdb, 10, 4)))
}

/// The 32-byte RECEIVE COPY STATUS (LID4) header plus sense data, shared
/// with RECEIVE ROD TOKEN INFORMATION (which appends its token area).
pub(crate) fn lid4_status_body(snap: &OpSnapshot) -> Vec<u8> {
    let sense = snap.outcome.sense.clone().unwrap_or_default();
    let sense_len = u8::try_from(sense.len()).unwrap_or(u8::MAX);
    let mut d = vec![0u8; 32];
    d[4] = snap.service_action & 0x1F;
    d[5] = match snap.status {
        OpStatus::Running => LID4_IN_PROGRESS_FOREGROUND,
        OpStatus::Succeeded => LID4_COMPLETED_OK,
        OpStatus::Failed => LID4_COMPLETED_ERROR,
        OpStatus::Aborted => LID4_TERMINATED,
    };
    d[6..8].copy_from_slice(&u16::try_from(snap.operations).unwrap_or(u16::MAX).to_be_bytes());
    let delay = if snap.status == OpStatus::Running { DELAY_RUNNING_MS } else { DELAY_FINAL };
    d[8..12].copy_from_slice(&delay.to_be_bytes());
    d[12] = snap.outcome.scsi_status.0;
    d[13] = sense_len;
    d[14] = sense_len;
    d[15] = UNITS_BYTES;
    d[16..24].copy_from_slice(&snap.bytes.to_be_bytes());
    d[24..26].copy_from_slice(&u16::try_from(snap.segments).unwrap_or(u16::MAX).to_be_bytes());
    d.extend_from_slice(&sense[..usize::from(sense_len)]);
    d
}

/// 84h/05h RECEIVE COPY STATUS (LID4): also answers for LID1 list identifiers.
pub(crate) fn copy_status_lid4(ctx: &Ctx<'_>) -> CmdResult {
    let list_id = u32::try_from(be(ctx.cdb, 2, 4)).unwrap_or(u32::MAX);
    let snap = lookup(ctx, list_id, Consume::Status)?;
    let mut d = lid4_status_body(&snap);
    let avail = u32::try_from(d.len() - 4).unwrap_or(u32::MAX);
    d[0..4].copy_from_slice(&avail.to_be_bytes());
    Ok(Done::data(d, be(ctx.cdb, 10, 4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_count_scaling() {
        assert_eq!(scaled_count(0), (0, 0));
        assert_eq!(scaled_count(u64::from(u32::MAX)), (0, u32::MAX));
        assert_eq!(scaled_count(1 << 32), (1, 1 << 22));
        assert_eq!(scaled_count(5 << 40), (2, 5 << 20));
        assert_eq!(scaled_count(u64::MAX), (4, (u64::MAX >> 40) as u32));
    }
}
