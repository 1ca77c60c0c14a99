//! The command table: one [`Command`] (a CDB template with its handler) per
//! supported command. It drives
//! dispatch, reserved-bit validation and REPORT SUPPORTED OPERATION CODES,
//! so a command exists exactly when it is listed here.

use crate::cdb::{DataDir, Opcode, OutLen, ServiceAction, Timeouts};
use crate::exec::Command;
use crate::{caw, copy, defect, inquiry, mode_commands, pr, provisioning, sbc, spc};
use std::sync::OnceLock;

const QUICK: Timeouts = Timeouts { nominal: 1, recommended: 10 };
const IO: Timeouts = Timeouts { nominal: 1, recommended: 30 };
const FLUSH: Timeouts = Timeouts { nominal: 10, recommended: 120 };
/// EXTENDED COPY: many GiB may move (by reflink usually in milliseconds).
const COPY: Timeouts = Timeouts { nominal: 60, recommended: 3600 };

const C: u8 = 0x04; // CONTROL byte: NACA evaluated (and refused when set)

const fn t(
    name: &'static str,
    opcode: Opcode,
    usage: &'static [u8],
    dir: DataDir,
    out_len: OutLen,
    handler: crate::exec::Handler,
) -> Command {
    Command {
        name,
        opcode,
        sa: None,
        usage,
        dir,
        out_len,
        lu_optional: false,
        ua_exempt: false,
        writes: false,
        timeouts: QUICK,
        handler,
    }
}

const fn io(mut t: Command) -> Command {
    t.timeouts = IO;
    t
}

const fn writes(mut t: Command) -> Command {
    t.writes = true;
    t.timeouts = IO;
    t
}

/// Served without an LU and without touching unit attentions.
const fn lu_less(mut t: Command) -> Command {
    t.lu_optional = true;
    t.ua_exempt = true;
    t
}

const fn sa(mut t: Command, sa: u8) -> Command {
    t.sa = Some(sa);
    t
}

const fn flushes(mut t: Command) -> Command {
    t.timeouts = FLUSH;
    t
}

const fn copies(mut t: Command) -> Command {
    t.timeouts = COPY;
    t
}

use DataDir::{In, None as NoData, Out};

const B6: OutLen = OutLen::Blocks { off: 4, width: 1 };
const B10: OutLen = OutLen::Blocks { off: 7, width: 2 };
const B12: OutLen = OutLen::Blocks { off: 6, width: 4 };
const B16: OutLen = OutLen::Blocks { off: 10, width: 4 };
const V10: OutLen = OutLen::VerifyBlocks { off: 7, width: 2 };
const V12: OutLen = OutLen::VerifyBlocks { off: 6, width: 4 };
const V16: OutLen = OutLen::VerifyBlocks { off: 10, width: 4 };
const NONE: OutLen = OutLen::None;
/// WRITE SAME: one block of data-out (none with NDOB).
const WS: OutLen = OutLen::OneBlockUnlessNdob;

/// PERSISTENT RESERVE OUT: PARAMETER LIST LENGTH in bytes 5-8.
const PR_OUT_LEN: OutLen = OutLen::Bytes { off: 5, width: 4 };

/// A PERSISTENT RESERVE OUT service action (one handler for all).
const fn prout(name: &'static str, usage: &'static [u8], sa_code: u8) -> Command {
    sa(t(name, Opcode::PERSISTENT_RESERVE_OUT, usage, Out, PR_OUT_LEN, pr::persistent_reserve_out), sa_code)
}

/// All supported commands, by opcode then service action.
#[rustfmt::skip]
pub(crate) static COMMANDS: &[Command] = &[
    t("TEST UNIT READY", Opcode::TEST_UNIT_READY, &[0x00, 0, 0, 0, 0, C], NoData, NONE, spc::test_unit_ready),
    lu_less(t("REQUEST SENSE", Opcode::REQUEST_SENSE, &[0x03, 0x01, 0, 0, 0xFF, C], In, NONE, spc::request_sense)),
    io(t("READ (6)", Opcode::READ_6, &[0x08, 0x1F, 0xFF, 0xFF, 0xFF, C], In, NONE, sbc::read6)),
    writes(t("WRITE (6)", Opcode::WRITE_6, &[0x0A, 0x1F, 0xFF, 0xFF, 0xFF, C], Out, B6, sbc::write6)),
    lu_less(t("INQUIRY", Opcode::INQUIRY, &[0x12, 0x01, 0xFF, 0xFF, 0xFF, C], In, NONE, inquiry::inquiry)),
    t("MODE SELECT (6)", Opcode::MODE_SELECT_6, &[0x15, 0x11, 0, 0, 0xFF, C], Out,
        OutLen::Bytes { off: 4, width: 1 }, mode_select6),
    t("RESERVE (6)", Opcode::RESERVE_6, &[0x16, 0, 0, 0, 0, C], NoData, NONE, pr::reserve_spc2),
    t("RELEASE (6)", Opcode::RELEASE_6, &[0x17, 0, 0, 0, 0, C], NoData, NONE, pr::release_spc2),
    t("MODE SENSE (6)", Opcode::MODE_SENSE_6, &[0x1A, 0x08, 0xFF, 0xFF, 0xFF, C], In, NONE, mode_sense6),
    t("START STOP UNIT", Opcode::START_STOP_UNIT, &[0x1B, 0x01, 0, 0x0F, 0xF7, C], NoData, NONE, spc::start_stop_unit),
    t("PREVENT ALLOW MEDIUM REMOVAL", Opcode::PREVENT_ALLOW_MEDIUM_REMOVAL, &[0x1E, 0, 0, 0, 0x03, C], NoData, NONE,
        spc::prevent_allow),
    t("READ CAPACITY (10)", Opcode::READ_CAPACITY_10, &[0x25, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x01, C], In, NONE,
        sbc::read_capacity10),
    io(t("READ (10)", Opcode::READ_10, &[0x28, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, C], In, NONE, sbc::read10)),
    writes(t("WRITE (10)", Opcode::WRITE_10, &[0x2A, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, C], Out, B10,
        sbc::write10)),
    writes(t("WRITE AND VERIFY (10)", Opcode::WRITE_AND_VERIFY_10, &[0x2E, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, C],
        Out, B10, sbc::write_verify10)),
    io(t("VERIFY (10)", Opcode::VERIFY_10, &[0x2F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, C], Out, V10,
        sbc::verify10)),
    t("PRE-FETCH (10)", Opcode::PRE_FETCH_10, &[0x34, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, C], NoData, NONE,
        sbc::prefetch10),
    flushes(t("SYNCHRONIZE CACHE (10)", Opcode::SYNCHRONIZE_CACHE_10, &[0x35, 0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, C],
        NoData, NONE, sbc::sync_cache10)),
    t("READ DEFECT DATA (10)", Opcode::READ_DEFECT_DATA_10, &[0x37, 0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, C], In, NONE,
        defect::read_defect_data10),
    writes(t("WRITE SAME (10)", Opcode::WRITE_SAME_10, &[0x41, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, C], Out, WS,
        provisioning::write_same10)),
    writes(t("UNMAP", Opcode::UNMAP, &[0x42, 0, 0, 0, 0, 0, 0x3F, 0xFF, 0xFF, C], Out, OutLen::Bytes { off: 7, width: 2 },
        provisioning::unmap)),
    t("MODE SELECT (10)", Opcode::MODE_SELECT_10, &[0x55, 0x11, 0, 0, 0, 0, 0, 0xFF, 0xFF, C], Out,
        OutLen::Bytes { off: 7, width: 2 }, mode_select10),
    t("RESERVE (10)", Opcode::RESERVE_10, &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, C], NoData, NONE, pr::reserve_spc2),
    t("RELEASE (10)", Opcode::RELEASE_10, &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, C], NoData, NONE, pr::release_spc2),
    t("MODE SENSE (10)", Opcode::MODE_SENSE_10, &[0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, C], In, NONE, mode_sense10),
    sa(t("PERSISTENT RESERVE IN (READ KEYS)", Opcode::PERSISTENT_RESERVE_IN, &[0x5E, 0x00, 0, 0, 0, 0, 0, 0xFF, 0xFF, C],
        In, NONE, pr::read_keys), ServiceAction::PR_READ_KEYS),
    sa(t("PERSISTENT RESERVE IN (READ RESERVATION)", Opcode::PERSISTENT_RESERVE_IN,
        &[0x5E, 0x01, 0, 0, 0, 0, 0, 0xFF, 0xFF, C], In, NONE, pr::read_reservation), ServiceAction::PR_READ_RESERVATION),
    sa(t("PERSISTENT RESERVE IN (REPORT CAPABILITIES)", Opcode::PERSISTENT_RESERVE_IN,
        &[0x5E, 0x02, 0, 0, 0, 0, 0, 0xFF, 0xFF, C], In, NONE, pr::report_capabilities),
        ServiceAction::PR_REPORT_CAPABILITIES),
    sa(t("PERSISTENT RESERVE IN (READ FULL STATUS)", Opcode::PERSISTENT_RESERVE_IN,
        &[0x5E, 0x03, 0, 0, 0, 0, 0, 0xFF, 0xFF, C], In, NONE, pr::read_full_status), ServiceAction::PR_READ_FULL_STATUS),
    prout("PERSISTENT RESERVE OUT (REGISTER)", &[0x5F, 0x00, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, C],
        ServiceAction::PR_REGISTER),
    prout("PERSISTENT RESERVE OUT (RESERVE)", &[0x5F, 0x01, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, C],
        ServiceAction::PR_RESERVE),
    prout("PERSISTENT RESERVE OUT (RELEASE)", &[0x5F, 0x02, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, C],
        ServiceAction::PR_RELEASE),
    prout("PERSISTENT RESERVE OUT (CLEAR)", &[0x5F, 0x03, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, C], ServiceAction::PR_CLEAR),
    prout("PERSISTENT RESERVE OUT (PREEMPT)", &[0x5F, 0x04, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, C],
        ServiceAction::PR_PREEMPT),
    prout("PERSISTENT RESERVE OUT (PREEMPT AND ABORT)", &[0x5F, 0x05, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, C],
        ServiceAction::PR_PREEMPT_AND_ABORT),
    prout("PERSISTENT RESERVE OUT (REGISTER AND IGNORE EXISTING KEY)", &[0x5F, 0x06, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, C],
        ServiceAction::PR_REGISTER_AND_IGNORE_EXISTING_KEY),
    copies(sa(t("EXTENDED COPY (LID1)", Opcode::THIRD_PARTY_COPY_OUT,
        &[0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, C], Out, OutLen::Bytes { off: 10, width: 4 },
        copy::extended_copy), 0x00)),
    copies(sa(t("POPULATE TOKEN", Opcode::THIRD_PARTY_COPY_OUT,
        &[0x83, 0x10, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, C], Out,
        OutLen::Bytes { off: 10, width: 4 }, copy::populate_token), 0x10)),
    copies(sa(t("WRITE USING TOKEN", Opcode::THIRD_PARTY_COPY_OUT,
        &[0x83, 0x11, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, C], Out,
        OutLen::Bytes { off: 10, width: 4 }, copy::write_using_token), 0x11)),
    sa(t("COPY OPERATION ABORT", Opcode::THIRD_PARTY_COPY_OUT,
        &[0x83, 0x1C, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0, C], NoData, NONE,
        copy::copy_operation_abort), 0x1C),
    sa(t("RECEIVE COPY STATUS (LID1)", Opcode::THIRD_PARTY_COPY_IN,
        &[0x84, 0x00, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, C], In, NONE, copy::receive_copy_status), 0x00),
    sa(t("RECEIVE COPY OPERATING PARAMETERS", Opcode::THIRD_PARTY_COPY_IN,
        &[0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, C], In, NONE,
        copy::receive_copy_operating_parameters), 0x03),
    sa(t("RECEIVE COPY FAILURE DETAILS (LID1)", Opcode::THIRD_PARTY_COPY_IN,
        &[0x84, 0x04, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, C], In, NONE,
        copy::receive_copy_failure_details), 0x04),
    sa(t("RECEIVE COPY STATUS (LID4)", Opcode::THIRD_PARTY_COPY_IN,
        &[0x84, 0x05, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, C], In, NONE,
        copy::receive_copy_status_lid4), 0x05),
    sa(t("RECEIVE ROD TOKEN INFORMATION", Opcode::THIRD_PARTY_COPY_IN,
        &[0x84, 0x07, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, C], In, NONE,
        copy::receive_rod_token_information), 0x07),
    sa(t("REPORT ALL ROD TOKENS", Opcode::THIRD_PARTY_COPY_IN,
        &[0x84, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, C], In, NONE,
        copy::report_all_rod_tokens), 0x08),
    io(t("READ (16)", Opcode::READ_16, &[0x88, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C],
        In, NONE, sbc::read16)),
    writes(t("COMPARE AND WRITE", Opcode::COMPARE_AND_WRITE, &[0x89, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0x3F, C], Out,
        OutLen::DoubleBlocks { off: 13 }, caw::compare_and_write)),
    writes(t("WRITE (16)", Opcode::WRITE_16, &[0x8A, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C],
        Out, B16, sbc::write16)),
    writes(t("ORWRITE (16)", Opcode::ORWRITE_16, &[0x8B, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C], Out, B16, caw::orwrite16)),
    writes(t("WRITE AND VERIFY (16)", Opcode::WRITE_AND_VERIFY_16,
        &[0x8E, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C], Out, B16, sbc::write_verify16)),
    io(t("VERIFY (16)", Opcode::VERIFY_16, &[0x8F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C],
        Out, V16, sbc::verify16)),
    t("PRE-FETCH (16)", Opcode::PRE_FETCH_16, &[0x90, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C],
        NoData, NONE, sbc::prefetch16),
    flushes(t("SYNCHRONIZE CACHE (16)", Opcode::SYNCHRONIZE_CACHE_16,
        &[0x91, 0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C], NoData, NONE, sbc::sync_cache16)),
    writes(t("WRITE SAME (16)", Opcode::WRITE_SAME_16, &[0x93, 0x09, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C], Out, WS,
        provisioning::write_same16)),
    sa(t("READ CAPACITY (16)", Opcode::SERVICE_ACTION_IN_16,
        &[0x9E, 0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, C], In, NONE, sbc::read_capacity16),
        crate::cdb::ServiceAction::READ_CAPACITY_16),
    io(sa(t("GET LBA STATUS", Opcode::SERVICE_ACTION_IN_16,
        &[0x9E, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, C], In, NONE,
        provisioning::get_lba_status), ServiceAction::GET_LBA_STATUS)),
    lu_less(t("REPORT LUNS", Opcode::REPORT_LUNS, &[0xA0, 0, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, C], In, NONE,
        spc::report_luns)),
    sa(t("REPORT SUPPORTED OPERATION CODES", Opcode::MAINTENANCE_IN,
        &[0xA3, 0x0C, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, C], In, NONE, spc::report_supported_opcodes),
        crate::cdb::ServiceAction::REPORT_SUPPORTED_OPERATION_CODES),
    io(t("READ (12)", Opcode::READ_12, &[0xA8, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C], In, NONE, sbc::read12)),
    writes(t("WRITE (12)", Opcode::WRITE_12, &[0xAA, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C], Out, B12,
        sbc::write12)),
    writes(t("WRITE AND VERIFY (12)", Opcode::WRITE_AND_VERIFY_12, &[0xAE, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C],
        Out, B12, sbc::write_verify12)),
    io(t("VERIFY (12)", Opcode::VERIFY_12, &[0xAF, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, C], Out, V12,
        sbc::verify12)),
    t("READ DEFECT DATA (12)", Opcode::READ_DEFECT_DATA_12, &[0xB7, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, C],
        In, NONE, defect::read_defect_data12),
];

fn mode_sense6(c: &crate::exec::Ctx<'_>) -> crate::exec::CmdResult {
    mode_commands::mode_sense(c, false)
}
fn mode_sense10(c: &crate::exec::Ctx<'_>) -> crate::exec::CmdResult {
    mode_commands::mode_sense(c, true)
}
fn mode_select6(c: &crate::exec::Ctx<'_>) -> crate::exec::CmdResult {
    mode_commands::mode_select(c, false)
}
fn mode_select10(c: &crate::exec::Ctx<'_>) -> crate::exec::CmdResult {
    mode_commands::mode_select(c, true)
}

/// What the table says about a CDB's opcode/service action.
pub(crate) enum Lookup {
    Found(&'static Command),
    /// Opcode not implemented at all.
    UnknownOpcode,
    /// Multiplexed opcode we implement, but not this service action.
    UnknownServiceAction,
}

/// First table index per opcode (255 = none): O(1) dispatch.
fn index() -> &'static [u8; 256] {
    static INDEX: OnceLock<[u8; 256]> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut idx = [u8::MAX; 256];
        for (i, t) in COMMANDS.iter().enumerate().rev() {
            idx[usize::from(t.opcode.0)] = i as u8;
        }
        idx
    })
}

/// Find the template for a CDB (at least one byte long).
pub(crate) fn lookup(op: u8, byte1: u8) -> Lookup {
    let first = index()[usize::from(op)];
    if first == u8::MAX {
        return Lookup::UnknownOpcode;
    }
    let sa = byte1 & 0x1F;
    for t in COMMANDS.iter().skip(usize::from(first)).take_while(|t| t.opcode.0 == op) {
        match t.sa {
            None => return Lookup::Found(t),
            Some(s) if s == sa => return Lookup::Found(t),
            Some(_) => {}
        }
    }
    Lookup::UnknownServiceAction
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdb::has_service_action;

    #[test]
    fn table_is_consistent() {
        let mut prev: Option<(u8, u8)> = None;
        for t in COMMANDS {
            assert_eq!(t.usage[0], t.opcode.0, "{}", t.name);
            assert!(matches!(t.len(), 6 | 10 | 12 | 16), "{}", t.name);
            assert_eq!(t.sa.is_some(), has_service_action(t.opcode.0), "{}", t.name);
            if let Some(sa) = t.sa {
                assert_eq!(t.usage[1] & 0x1F, sa, "{}", t.name);
            }
            let key = (t.opcode.0, t.sa.unwrap_or(0));
            if let Some(p) = prev {
                assert!(p < key, "{} out of order", t.name);
            }
            prev = Some(key);
            assert_eq!(t.dir == DataDir::Out, t.out_len != OutLen::None, "{}", t.name);
        }
        assert!(COMMANDS.len() < 255);
        assert!(COMMANDS.iter().any(|t| t.opcode == Opcode::THIRD_PARTY_COPY_OUT));
    }

    #[test]
    fn lookup_by_opcode_and_sa() {
        assert!(matches!(lookup(0x28, 0xFF), Lookup::Found(t) if t.name == "READ (10)"));
        assert!(matches!(lookup(0x9E, 0x10), Lookup::Found(t) if t.name == "READ CAPACITY (16)"));
        assert!(matches!(lookup(0x9E, 0x12), Lookup::Found(t) if t.name == "GET LBA STATUS"));
        assert!(matches!(lookup(0x9E, 0x13), Lookup::UnknownServiceAction));
        assert!(matches!(lookup(0x83, 0x00), Lookup::Found(t) if t.name == "EXTENDED COPY (LID1)"));
        assert!(matches!(lookup(0x84, 0x03), Lookup::Found(t) if t.name == "RECEIVE COPY OPERATING PARAMETERS"));
        assert!(matches!(lookup(0x83, 0x01), Lookup::UnknownServiceAction));
        assert!(matches!(lookup(0x84, 0x01), Lookup::UnknownServiceAction));
        assert!(matches!(lookup(0x83, 0x10), Lookup::Found(t) if t.name == "POPULATE TOKEN"));
        assert!(matches!(lookup(0x83, 0x11), Lookup::Found(t) if t.name == "WRITE USING TOKEN"));
        assert!(matches!(lookup(0x83, 0x1C), Lookup::Found(t) if t.name == "COPY OPERATION ABORT"));
        assert!(matches!(lookup(0x84, 0x07), Lookup::Found(t) if t.name == "RECEIVE ROD TOKEN INFORMATION"));
        assert!(matches!(lookup(0x84, 0x08), Lookup::Found(t) if t.name == "REPORT ALL ROD TOKENS"));
    }
}
