//! Primary commands (SPC-4) that are not INQUIRY or mode parameters:
//! TEST UNIT READY, REQUEST SENSE, REPORT LUNS, REPORT SUPPORTED OPERATION
//! CODES, START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL.

use crate::cdb::{be, byte, has_service_action, Opcode, Template, CONTROL_USAGE};
use crate::exec::{served_by, CmdResult, Ctx, Done};
use crate::lun::encode_lun;
use crate::sense::{Asc, Sense, SenseKey};
use crate::wire::capacity::ReportLuns;

/// TEST UNIT READY: always ready (no removable medium, no spin-up).
pub(crate) fn test_unit_ready(ctx: &Ctx<'_>) -> CmdResult {
    ctx.lu()?;
    Ok(Done::good())
}

/// REQUEST SENSE: reports (and clears) a pending unit attention, otherwise
/// NO SENSE; on a LUN without an LU, LOGICAL UNIT NOT SUPPORTED as data.
/// DESC selects the format, independent of D_SENSE.
pub(crate) fn request_sense(ctx: &Ctx<'_>) -> CmdResult {
    let desc = byte(ctx.cdb, 1) & 0x01 != 0;
    let alloc = be(ctx.cdb, 4, 1);
    let sense = match ctx.lu {
        None => Sense::illegal(Asc::LOGICAL_UNIT_NOT_SUPPORTED),
        Some(lu) => match lu.ua.next(ctx.req.nexus, true) {
            Some(asc) => Sense::new(SenseKey::UNIT_ATTENTION, asc),
            None => Sense::new(SenseKey::NO_SENSE, Asc::NO_ADDITIONAL_SENSE),
        },
    };
    Ok(Done::data(sense.encode(desc), alloc))
}

/// REPORT LUNS. SELECT REPORT 00h and 02h list our LUs; 01h (well-known
/// LUs only) is an empty list. ALLOCATION LENGTH < 16 is invalid (SPC-4).
pub(crate) fn report_luns(ctx: &Ctx<'_>) -> CmdResult {
    let select = byte(ctx.cdb, 2);
    let alloc = be(ctx.cdb, 6, 4);
    if alloc < 16 {
        return Err(Sense::invalid_cdb_field(6, None).into());
    }
    let ids: Vec<u16> = match select {
        0x00 | 0x02 => ctx.target.lun_ids_for(&ctx.req.nexus.initiator_name),
        0x01 => Vec::new(),
        _ => return Err(Sense::invalid_cdb_field(2, Some(7)).into()),
    };
    let d = ReportLuns::new(ids.into_iter().map(encode_lun).collect()).encode();
    Ok(Done::data(d, alloc))
}

/// START STOP UNIT: accepted; a stop without NO_FLUSH flushes the cache, and
/// the LU stays ready (there is nothing to spin down or eject).
pub(crate) fn start_stop_unit(ctx: &Ctx<'_>) -> CmdResult {
    let lu = ctx.lu()?;
    let b4 = byte(ctx.cdb, 4);
    let start = b4 & 0x01 != 0;
    let no_flush = b4 & 0x04 != 0;
    if !start && !no_flush {
        lu.flush().map_err(|e| {
            tracing::warn!(error = %e, "flush on STOP failed");
            Sense::new(SenseKey::MEDIUM_ERROR, Asc::WRITE_ERROR)
        })?;
    }
    Ok(Done::good())
}

/// PREVENT ALLOW MEDIUM REMOVAL: 00b/01b accepted (no removable medium);
/// the obsolete values 10b/11b are refused.
pub(crate) fn prevent_allow(ctx: &Ctx<'_>) -> CmdResult {
    ctx.lu()?;
    if byte(ctx.cdb, 4) & 0x02 != 0 {
        return Err(Sense::invalid_cdb_field(4, Some(1)).into());
    }
    Ok(Done::good())
}

/// SUPPORT field values of a one-command RSOC response.
const SUPPORT_NOT_SUPPORTED: u8 = 0b001;
const SUPPORT_STANDARD: u8 = 0b011;

/// CDB USAGE DATA as reported: the template mask with the control byte
/// restricted to what we evaluate.
fn usage_data<H>(t: &Template<H>) -> Vec<u8> {
    let mut u = t.usage.to_vec();
    if let Some(last) = u.last_mut() {
        *last = CONTROL_USAGE;
    }
    u
}

/// Command timeouts descriptor (SPC-4 §6.31.4): length 0Ah.
fn timeouts_descriptor<H>(t: &Template<H>, out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x00, 0x0A, 0x00, 0x00]);
    out.extend_from_slice(&t.timeouts.nominal.to_be_bytes());
    out.extend_from_slice(&t.timeouts.recommended.to_be_bytes());
}

/// REPORT SUPPORTED OPERATION CODES, driven by the command table.
pub(crate) fn report_supported_opcodes(ctx: &Ctx<'_>) -> CmdResult {
    let cdb = ctx.cdb;
    let rctd = byte(cdb, 2) & 0x80 != 0;
    let options = byte(cdb, 2) & 0x07;
    let op = byte(cdb, 3);
    let sa = be(cdb, 4, 2);
    let alloc = be(cdb, 6, 4);
    let data = match options {
        0 => {
            let mut d = vec![0u8; 4];
            for t in ctx.target.commands().iter().filter(|t| served_by(t, ctx.lu)) {
                d.push(t.opcode.0);
                d.push(0);
                d.extend_from_slice(&u16::from(t.sa.unwrap_or(0)).to_be_bytes());
                d.push(0);
                d.push(if rctd { 0x02 } else { 0 } | if t.sa.is_some() { 0x01 } else { 0 });
                d.extend_from_slice(&(t.len() as u16).to_be_bytes());
                if rctd {
                    timeouts_descriptor(t, &mut d);
                }
            }
            let len = u32::try_from(d.len() - 4).unwrap_or(u32::MAX);
            d[0..4].copy_from_slice(&len.to_be_bytes());
            d
        }
        1..=3 => {
            let multiplexed = has_service_action(op);
            // Option 1 asks for an opcode without service actions, option 2
            // for one with; asking the wrong way is an invalid CDB field.
            if options == 1 && multiplexed {
                return Err(Sense::invalid_cdb_field(3, None).into());
            }
            if options == 2 && !multiplexed {
                return Err(Sense::invalid_cdb_field(3, None).into());
            }
            let found = ctx
                .target
                .commands()
                .iter()
                .find(|t| t.opcode == Opcode(op) && (!multiplexed || u64::from(t.sa.unwrap_or(0)) == sa))
                .filter(|t| served_by(t, ctx.lu));
            let mut d = vec![0u8; 4];
            match found {
                Some(t) => {
                    let u = usage_data(t);
                    d[1] = SUPPORT_STANDARD | if rctd { 0x80 } else { 0 };
                    d[2..4].copy_from_slice(&(u.len() as u16).to_be_bytes());
                    d.extend(u);
                    if rctd {
                        timeouts_descriptor(t, &mut d);
                    }
                }
                None => d[1] = SUPPORT_NOT_SUPPORTED,
            }
            d
        }
        _ => return Err(Sense::invalid_cdb_field(2, Some(2)).into()),
    };
    Ok(Done::data(data, alloc))
}

#[cfg(test)]
mod tests {
    use crate::wire::capacity::{ReadCapacity16, ReportLuns};
    use crate::wire::cdb;
    use crate::*;
    use oxcopy_storage::{MemStorage, Storage};
    use std::sync::Arc;

    const TARGET: &str = "iqn.2026-11.test:spc";

    /// What the device server encodes for READ CAPACITY (16) and REPORT
    /// LUNS, the wire layer decodes.
    #[test]
    fn capacity_and_luns_round_trip_through_the_wire_decoders() {
        let lu = |bs: u32| {
            let st = Arc::new(MemStorage::new(1 << 20)) as Arc<dyn Storage>;
            Arc::new(LogicalUnit::new(LuConfig { block_size: bs, ..LuConfig::default() }, st))
        };
        let t = ScsiTarget::new(TARGET, 1, vec![(0, lu(512)), (300, lu(4096))], crate::testing::registry());
        let nx = Nexus {
            initiator_name: Arc::from("iqn.2026-11.test:host"),
            isid: [0x80, 0, 0, 0, 0, 1],
            target_name: Arc::from(TARGET),
            tpgt: 1,
        };
        let cancel = CancelToken::new();
        let go = |lun: u16, cdb: &[u8]| {
            let req =
                Request { nexus: &nx, lun: encode_lun(lun), cdb, data_out: &[], expected_len: 0, cancel: &cancel };
            t.execute(&req).data_in
        };

        let rc = ReadCapacity16::parse(&go(300, &cdb::read_capacity16(32))).unwrap();
        assert_eq!((rc.blocks(), rc.block_len, rc.lbppbe, rc.lowest_aligned_lba), (256, 4096, 0, 0));
        assert_eq!((rc.lbpme, rc.lbprz), (true, true));
        assert_eq!(rc.encode(), go(300, &cdb::read_capacity16(32)));

        let r = ReportLuns::parse(&go(0, &cdb::report_luns(0, 64))).unwrap();
        assert_eq!(r, ReportLuns::new(vec![encode_lun(0), encode_lun(300)]));
        // Cut by the allocation length: the list length still counts both.
        let r = ReportLuns::parse(&go(0, &cdb::report_luns(0, 16))).unwrap();
        assert_eq!((r.list_length, r.luns.len()), (16, 1));
    }
}
