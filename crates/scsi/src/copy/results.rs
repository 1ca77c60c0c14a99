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
use crate::wire::results::{CopyManagerStatus, CopyStatus, FailureDetails, OperatingParameters};
use crate::wire::rod::{CopyOpStatus, CopyStatusHeader};
use oxcopy_copy::{Consume, OpStatus};

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
    let (units, count) = scaled_count(snap.bytes);
    let d = CopyStatus {
        status: match snap.status {
            OpStatus::Running => CopyManagerStatus::IN_PROGRESS,
            OpStatus::Succeeded => CopyManagerStatus::COMPLETED,
            OpStatus::Failed | OpStatus::Aborted => CopyManagerStatus::COMPLETED_WITH_ERRORS,
        }
        .0,
        held_data_discarded: false,
        segments_processed: u16::try_from(snap.segments).unwrap_or(u16::MAX),
        units,
        count,
    }
    .encode();
    Ok(Done::data(d, be(ctx.cdb, 10, 4)))
}

/// The implemented descriptor type codes, ascending (RCR 03h and VPD 8Fh 0008h).
pub(crate) fn implemented_descriptors() -> &'static [u8] {
    &limits::IMPLEMENTED_DESCRIPTOR_TYPES
}

/// 84h/03h RECEIVE COPY OPERATING PARAMETERS.
pub(crate) fn operating_parameters(ctx: &Ctx<'_>) -> CmdResult {
    ctx.lu()?;
    let d = OperatingParameters {
        snlid: true,
        max_cscd_descriptors: limits::MAX_CSCD_DESCRIPTORS,
        max_segment_descriptors: limits::MAX_SEGMENT_DESCRIPTORS,
        max_descriptor_list_length: limits::MAX_DESCRIPTOR_LIST_LENGTH,
        max_segment_length: limits::MAX_SEGMENT_LENGTH,
        max_inline_data_length: limits::MAX_INLINE_DATA_LENGTH,
        held_data_limit: limits::HELD_DATA_LIMIT,
        max_stream_transfer_size: 0, // no stream devices
        total_concurrent_copies: limits::TOTAL_CONCURRENT_COPIES,
        max_concurrent_copies: u8::try_from(limits::TOTAL_CONCURRENT_COPIES).unwrap_or(u8::MAX),
        data_segment_granularity: limits::DATA_SEGMENT_GRANULARITY_LOG2,
        inline_data_granularity: limits::INLINE_DATA_GRANULARITY_LOG2,
        held_data_granularity: 0,
        descriptor_types: implemented_descriptors().to_vec(),
    }
    .encode();
    Ok(Done::data(d, be(ctx.cdb, 10, 4)))
}

/// 84h/04h RECEIVE COPY FAILURE DETAILS (LID1).
pub(crate) fn failure_details(ctx: &Ctx<'_>) -> CmdResult {
    let snap = lookup(ctx, u32::from(byte(ctx.cdb, 2)), Consume::Details)?;
    let d = match snap.status {
        OpStatus::Succeeded | OpStatus::Running => FailureDetails::default(),
        OpStatus::Failed | OpStatus::Aborted => {
            FailureDetails::failed(CopyManagerStatus::COMPLETED_WITH_ERRORS.0, snap.outcome.sense.unwrap_or_default())
        }
    }
    .encode();
    Ok(Done::data(d, be(ctx.cdb, 10, 4)))
}

/// The RECEIVE COPY STATUS (LID4) header plus sense data (the sense data
/// field exactly as long as the sense data).
fn lid4_status(snap: &OpSnapshot) -> CopyStatusHeader {
    let sense = snap.outcome.sense.clone().unwrap_or_default();
    CopyStatusHeader {
        service_action: snap.service_action,
        status: match snap.status {
            OpStatus::Running => CopyOpStatus::IN_PROGRESS_FOREGROUND,
            OpStatus::Succeeded => CopyOpStatus::COMPLETED,
            OpStatus::Failed => CopyOpStatus::COMPLETED_WITH_ERRORS,
            OpStatus::Aborted => CopyOpStatus::TERMINATED,
        }
        .0,
        operation_counter: u16::try_from(snap.operations).unwrap_or(u16::MAX),
        estimated_delay: if snap.status == OpStatus::Running { DELAY_RUNNING_MS } else { DELAY_FINAL },
        completion_status: snap.outcome.scsi_status.0,
        sense_space: u8::try_from(sense.len()).unwrap_or(u8::MAX),
        sense,
        units: UNITS_BYTES,
        count: snap.bytes,
        segments_processed: u16::try_from(snap.segments).unwrap_or(u16::MAX),
    }
}

/// 84h/05h RECEIVE COPY STATUS (LID4): also answers for LID1 list identifiers.
pub(crate) fn copy_status_lid4(ctx: &Ctx<'_>) -> CmdResult {
    let list_id = u32::try_from(be(ctx.cdb, 2, 4)).unwrap_or(u32::MAX);
    let snap = lookup(ctx, list_id, Consume::Status)?;
    let d = lid4_status(&snap).encode();
    Ok(Done::data(d, be(ctx.cdb, 10, 4)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::test_support::{contents, naa, nexus, run};
    use crate::registry::AccessList;
    use crate::wire::cdb::{extended_copy, receive_copy_results};
    use crate::wire::xcopy::{Cscd, Designator, ListIdUsage, ParamList, Segment};
    use crate::*;
    use oxcopy_storage::{MemStorage, Storage};
    use std::sync::Arc;

    const TARGET: &str = "iqn.2026-11.test:results";

    /// What the device server encodes, the wire layer decodes: one good
    /// and one failed copy on a fresh target, then each RECEIVE COPY
    /// RESULTS form.
    #[test]
    fn results_round_trip_through_the_wire_decoders() {
        let st = Arc::new(MemStorage::from_bytes(&contents(1, 31, 1 << 20)));
        let cfg = LuConfig { block_size: 512, naa: naa(1), ..LuConfig::default() };
        let lu = Arc::new(LogicalUnit::new(cfg, st as Arc<dyn Storage>));
        let registry = Arc::new(crate::testing::registry());
        registry.add_target(TARGET, AccessList::Any, vec![(0, lu)]).unwrap();
        let t = ScsiTarget::in_registry(TARGET, 1, registry);
        let (nx, cancel) = (nexus("iqn.2026-11.test:host", TARGET), CancelToken::new());
        let go = |cdb: &[u8], data: &[u8]| run(&t, &nx, 0, cdb, data, &cancel);
        let rcr = |sa: u8, id: u32| go(&receive_copy_results(sa, id, 1024), &[]);
        let designator = Designator { code_set: 0x01, assoc_type: 0x03, value: naa(1).to_vec() };
        let seg = |src_lba| Segment::BlockToBlock { src: 0, dst: 0, dc: false, blocks: 8, src_lba, dst_lba: 64 };
        // A status read consumes the record of a good copy: one copy per status form.
        let copy = |list_id, far: u64| {
            let cscds = vec![Cscd::new(designator.clone(), 0)];
            let list = ParamList { list_id, usage: ListIdUsage::Hold, cscds, segments: vec![seg(0), seg(far)] };
            let l = list.encode();
            go(&extended_copy(l.len() as u32), &l)
        };

        assert_eq!(copy(7, 8).status, ScsiStatus::GOOD);
        let s = CopyStatus::parse(&rcr(0x00, 7).data_in).unwrap();
        assert_eq!(
            s,
            CopyStatus { status: 1, held_data_discarded: false, segments_processed: 2, units: 0, count: 8192 }
        );
        assert_eq!(copy(7, 8).status, ScsiStatus::GOOD);
        assert_eq!(FailureDetails::parse(&rcr(0x04, 7).data_in).unwrap(), FailureDetails::default());
        let h = CopyStatusHeader::parse(&rcr(0x05, 7).data_in).unwrap();
        assert_eq!((h.status, h.estimated_delay, h.count, h.segments_processed), (1, DELAY_FINAL, 8192, 2));
        let p = OperatingParameters::parse(&rcr(0x03, 0).data_in).unwrap();
        assert_eq!((p.max_cscd_descriptors, p.total_concurrent_copies), (limits::MAX_CSCD_DESCRIPTORS, 255));
        assert_eq!(p.descriptor_types, implemented_descriptors());

        let r = copy(8, 1 << 40);
        assert_eq!(r.status, ScsiStatus::CHECK_CONDITION);
        let raw = r.sense.clone().unwrap();
        let h = CopyStatusHeader::parse(&rcr(0x05, 8).data_in).unwrap();
        assert_eq!((h.status, h.completion_status, &h.sense), (2, 2, &raw));
        let f = FailureDetails::parse(&rcr(0x04, 8).data_in).unwrap();
        assert_eq!(f, FailureDetails::failed(2, raw));
        assert_eq!(copy(9, 1 << 40).status, ScsiStatus::CHECK_CONDITION);
        assert_eq!(CopyStatus::parse(&rcr(0x00, 9).data_in).unwrap().status, 2);
    }

    #[test]
    fn transfer_count_scaling() {
        assert_eq!(scaled_count(0), (0, 0));
        assert_eq!(scaled_count(u64::from(u32::MAX)), (0, u32::MAX));
        assert_eq!(scaled_count(1 << 32), (1, 1 << 22));
        assert_eq!(scaled_count(5 << 40), (2, 5 << 20));
        assert_eq!(scaled_count(u64::MAX), (4, (u64::MAX >> 40) as u32));
    }
}
