//! Operation codes, service actions, bounds-safe CDB field access (the
//! device server's side) and CDB builders (the initiator's side).

/// A SCSI operation code. A newtype so any byte is representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Opcode(pub u8);

impl Opcode {
    pub const TEST_UNIT_READY: Self = Self(0x00);
    pub const REQUEST_SENSE: Self = Self(0x03);
    pub const READ_6: Self = Self(0x08);
    pub const WRITE_6: Self = Self(0x0A);
    pub const INQUIRY: Self = Self(0x12);
    pub const MODE_SELECT_6: Self = Self(0x15);
    pub const RESERVE_6: Self = Self(0x16);
    pub const RELEASE_6: Self = Self(0x17);
    pub const MODE_SENSE_6: Self = Self(0x1A);
    pub const START_STOP_UNIT: Self = Self(0x1B);
    pub const PREVENT_ALLOW_MEDIUM_REMOVAL: Self = Self(0x1E);
    pub const READ_CAPACITY_10: Self = Self(0x25);
    pub const READ_10: Self = Self(0x28);
    pub const WRITE_10: Self = Self(0x2A);
    pub const WRITE_AND_VERIFY_10: Self = Self(0x2E);
    pub const VERIFY_10: Self = Self(0x2F);
    pub const PRE_FETCH_10: Self = Self(0x34);
    pub const SYNCHRONIZE_CACHE_10: Self = Self(0x35);
    pub const READ_DEFECT_DATA_10: Self = Self(0x37);
    pub const WRITE_SAME_10: Self = Self(0x41);
    pub const UNMAP: Self = Self(0x42);
    pub const SANITIZE: Self = Self(0x48);
    pub const MODE_SELECT_10: Self = Self(0x55);
    pub const RESERVE_10: Self = Self(0x56);
    pub const RELEASE_10: Self = Self(0x57);
    pub const MODE_SENSE_10: Self = Self(0x5A);
    pub const PERSISTENT_RESERVE_IN: Self = Self(0x5E);
    pub const PERSISTENT_RESERVE_OUT: Self = Self(0x5F);
    pub const VARIABLE_LENGTH: Self = Self(0x7F);
    /// THIRD-PARTY COPY OUT (EXTENDED COPY, POPULATE TOKEN, WRITE USING TOKEN).
    pub const THIRD_PARTY_COPY_OUT: Self = Self(0x83);
    /// THIRD-PARTY COPY IN (RECEIVE COPY RESULTS, RRTI).
    pub const THIRD_PARTY_COPY_IN: Self = Self(0x84);
    pub const READ_16: Self = Self(0x88);
    pub const COMPARE_AND_WRITE: Self = Self(0x89);
    pub const WRITE_16: Self = Self(0x8A);
    pub const ORWRITE_16: Self = Self(0x8B);
    pub const WRITE_AND_VERIFY_16: Self = Self(0x8E);
    pub const VERIFY_16: Self = Self(0x8F);
    pub const PRE_FETCH_16: Self = Self(0x90);
    pub const SYNCHRONIZE_CACHE_16: Self = Self(0x91);
    pub const WRITE_SAME_16: Self = Self(0x93);
    /// SERVICE ACTION IN (16): READ CAPACITY (16), GET LBA STATUS.
    pub const SERVICE_ACTION_IN_16: Self = Self(0x9E);
    pub const REPORT_LUNS: Self = Self(0xA0);
    /// MAINTENANCE IN: REPORT SUPPORTED OPERATION CODES, REPORT TARGET PORT GROUPS.
    pub const MAINTENANCE_IN: Self = Self(0xA3);
    pub const READ_12: Self = Self(0xA8);
    pub const WRITE_12: Self = Self(0xAA);
    pub const WRITE_AND_VERIFY_12: Self = Self(0xAE);
    pub const VERIFY_12: Self = Self(0xAF);
    pub const READ_DEFECT_DATA_12: Self = Self(0xB7);
}

/// Service actions of the multiplexed opcodes we implement.
pub struct ServiceAction;

impl ServiceAction {
    /// 9Eh/10h READ CAPACITY (16).
    pub const READ_CAPACITY_16: u8 = 0x10;
    /// 9Eh/12h GET LBA STATUS.
    pub const GET_LBA_STATUS: u8 = 0x12;
    /// 5Eh/00h..03h PERSISTENT RESERVE IN service actions.
    pub const PR_READ_KEYS: u8 = 0x00;
    pub const PR_READ_RESERVATION: u8 = 0x01;
    pub const PR_REPORT_CAPABILITIES: u8 = 0x02;
    pub const PR_READ_FULL_STATUS: u8 = 0x03;
    /// 5Fh/00h..06h PERSISTENT RESERVE OUT service actions (07h REGISTER
    /// AND MOVE is not implemented).
    pub const PR_REGISTER: u8 = 0x00;
    pub const PR_RESERVE: u8 = 0x01;
    pub const PR_RELEASE: u8 = 0x02;
    pub const PR_CLEAR: u8 = 0x03;
    pub const PR_PREEMPT: u8 = 0x04;
    pub const PR_PREEMPT_AND_ABORT: u8 = 0x05;
    pub const PR_REGISTER_AND_IGNORE_EXISTING_KEY: u8 = 0x06;
    /// A3h/0Ah REPORT TARGET PORT GROUPS.
    pub const REPORT_TARGET_PORT_GROUPS: u8 = 0x0A;
    /// A3h/0Ch REPORT SUPPORTED OPERATION CODES.
    pub const REPORT_SUPPORTED_OPERATION_CODES: u8 = 0x0C;
    /// 83h/00h EXTENDED COPY (LID1).
    pub const EXTENDED_COPY_LID1: u8 = 0x00;
    /// 83h/01h EXTENDED COPY (LID4).
    pub const EXTENDED_COPY_LID4: u8 = 0x01;
    /// 83h/10h POPULATE TOKEN.
    pub const POPULATE_TOKEN: u8 = 0x10;
    /// 83h/11h WRITE USING TOKEN.
    pub const WRITE_USING_TOKEN: u8 = 0x11;
    /// 83h/1Ch COPY OPERATION ABORT.
    pub const COPY_OPERATION_ABORT: u8 = 0x1C;
    /// 84h/00h RECEIVE COPY STATUS (LID1).
    pub const RECEIVE_COPY_STATUS_LID1: u8 = 0x00;
    /// 84h/03h RECEIVE COPY OPERATING PARAMETERS.
    pub const RECEIVE_COPY_OPERATING_PARAMETERS: u8 = 0x03;
    /// 84h/04h RECEIVE COPY FAILURE DETAILS (LID1).
    pub const RECEIVE_COPY_FAILURE_DETAILS: u8 = 0x04;
    /// 84h/05h RECEIVE COPY STATUS (LID4).
    pub const RECEIVE_COPY_STATUS_LID4: u8 = 0x05;
    /// 84h/07h RECEIVE ROD TOKEN INFORMATION.
    pub const RECEIVE_ROD_TOKEN_INFORMATION: u8 = 0x07;
    /// 84h/08h REPORT ALL ROD TOKENS.
    pub const REPORT_ALL_ROD_TOKENS: u8 = 0x08;
}

/// Opcodes whose CDB byte 1 bits 4:0 carry a service action.
pub fn has_service_action(op: u8) -> bool {
    matches!(
        Opcode(op),
        Opcode::THIRD_PARTY_COPY_OUT
            | Opcode::THIRD_PARTY_COPY_IN
            | Opcode::SERVICE_ACTION_IN_16
            | Opcode::MAINTENANCE_IN
            | Opcode::PERSISTENT_RESERVE_IN
            | Opcode::PERSISTENT_RESERVE_OUT
    ) || op == 0x9F
        || op == 0xA4
}

/// Big-endian unsigned field of `n` (≤ 8) bytes at `off`. Bytes past the end
/// of `b` read as zero, so a malformed buffer can never cause a panic.
pub fn be(b: &[u8], off: usize, n: usize) -> u64 {
    (0..n).fold(0u64, |acc, i| {
        let byte = off.checked_add(i).and_then(|j| b.get(j)).copied().unwrap_or(0);
        (acc << 8) | u64::from(byte)
    })
}

/// Byte at `off`, zero when absent.
pub fn byte(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

/// A 16-byte CDB with `op` in byte 0 and service action `sa` in byte 1.
fn cdb16(op: Opcode, sa: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op.0;
    c[1] = sa & 0x1F;
    c
}

/// TEST UNIT READY (6).
pub fn test_unit_ready() -> [u8; 6] {
    [Opcode::TEST_UNIT_READY.0, 0, 0, 0, 0, 0]
}

/// INQUIRY (6): standard data, or VPD page `page` when `evpd`.
pub fn inquiry(evpd: bool, page: u8, alloc: u16) -> [u8; 6] {
    let [hi, lo] = alloc.to_be_bytes();
    [Opcode::INQUIRY.0, u8::from(evpd), page, hi, lo, 0]
}

/// READ CAPACITY (16) (SERVICE ACTION IN (16), 10h).
pub fn read_capacity16(alloc: u32) -> [u8; 16] {
    let mut c = cdb16(Opcode::SERVICE_ACTION_IN_16, ServiceAction::READ_CAPACITY_16);
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

fn rw16(op: Opcode, lba: u64, blocks: u32, fua: bool) -> [u8; 16] {
    let mut c = cdb16(op, 0);
    c[1] = if fua { 0x08 } else { 0 };
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// READ (16).
pub fn read16(lba: u64, blocks: u32, fua: bool) -> [u8; 16] {
    rw16(Opcode::READ_16, lba, blocks, fua)
}

/// WRITE (16).
pub fn write16(lba: u64, blocks: u32, fua: bool) -> [u8; 16] {
    rw16(Opcode::WRITE_16, lba, blocks, fua)
}

/// SYNCHRONIZE CACHE (16); `blocks == 0` means to the end of the LU.
pub fn sync_cache16(lba: u64, blocks: u32, immed: bool) -> [u8; 16] {
    let mut c = rw16(Opcode::SYNCHRONIZE_CACHE_16, lba, blocks, false);
    c[1] = if immed { 0x02 } else { 0 };
    c
}

/// REPORT LUNS (12) with SELECT REPORT `select`.
pub fn report_luns(select: u8, alloc: u32) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[0] = Opcode::REPORT_LUNS.0;
    c[2] = select;
    c[6..10].copy_from_slice(&alloc.to_be_bytes());
    c
}

/// EXTENDED COPY (LID1) with `param_len` bytes of parameter list.
pub fn extended_copy(param_len: u32) -> [u8; 16] {
    let mut c = cdb16(Opcode::THIRD_PARTY_COPY_OUT, ServiceAction::EXTENDED_COPY_LID1);
    c[10..14].copy_from_slice(&param_len.to_be_bytes());
    c
}

/// RECEIVE COPY RESULTS / THIRD-PARTY COPY IN service action `sa` for
/// `list_id` (8-bit in byte 2 for the LID1 forms 00h/01h/04h, 32-bit in
/// bytes 2..5 for 05h..07h) with `alloc` bytes of allocation length.
pub fn receive_copy_results(sa: u8, list_id: u32, alloc: u32) -> [u8; 16] {
    let mut c = cdb16(Opcode::THIRD_PARTY_COPY_IN, sa);
    match sa {
        0x00 | 0x01 | 0x04 => c[2] = list_id as u8,
        0x05..=0x07 => c[2..6].copy_from_slice(&list_id.to_be_bytes()),
        _ => {}
    }
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

/// POPULATE TOKEN (`sa` 10h) or WRITE USING TOKEN (11h) for `list_id` with `param_len` bytes.
pub fn token_out(sa: u8, list_id: u32, param_len: u32) -> [u8; 16] {
    let mut c = cdb16(Opcode::THIRD_PARTY_COPY_OUT, sa);
    c[6..10].copy_from_slice(&list_id.to_be_bytes());
    c[10..14].copy_from_slice(&param_len.to_be_bytes());
    c
}

/// COPY OPERATION ABORT of `list_id`.
pub fn copy_operation_abort(list_id: u32) -> [u8; 16] {
    let mut c = cdb16(Opcode::THIRD_PARTY_COPY_OUT, ServiceAction::COPY_OPERATION_ABORT);
    c[2..6].copy_from_slice(&list_id.to_be_bytes());
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn be_reads_past_end_as_zero() {
        assert_eq!(be(&[1, 2, 3], 0, 2), 0x0102);
        assert_eq!(be(&[1, 2, 3], 2, 2), 0x0300);
        assert_eq!(be(&[1], usize::MAX, 8), 0);
        assert_eq!(be(&[0xFF; 8], 0, 8), u64::MAX);
        assert_eq!((byte(&[7], 0), byte(&[7], 1)), (7, 0));
    }

    #[test]
    fn builders_match_spc4_and_sbc3() {
        assert_eq!(test_unit_ready(), [0; 6]);
        assert_eq!(inquiry(true, 0x83, 0x0102), [0x12, 1, 0x83, 1, 2, 0]);
        assert_eq!(read_capacity16(32), [0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0]);
        assert_eq!(read16(0x0102, 3, true), [0x88, 0x08, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 3, 0, 0]);
        assert_eq!(write16(5, 0x0100, false), [0x8A, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 1, 0, 0, 0]);
        assert_eq!(sync_cache16(1, 0, true), [0x91, 0x02, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(report_luns(2, 0x0408), [0xA0, 0, 2, 0, 0, 0, 0, 0, 4, 8, 0, 0]);
        assert_eq!(extended_copy(0x1234), [0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0, 0]);
        assert_eq!(receive_copy_results(0x00, 0x1FF, 12), [0x84, 0, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0]);
        assert_eq!(receive_copy_results(0x07, 0x0102_0304, 9)[..6], [0x84, 0x07, 1, 2, 3, 4]);
        assert_eq!(receive_copy_results(0x03, 7, 9)[..6], [0x84, 0x03, 0, 0, 0, 0]);
        assert_eq!(token_out(0x10, 257, 32), [0x83, 0x10, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 32, 0, 0]);
        assert_eq!(copy_operation_abort(257)[..6], [0x83, 0x1C, 0, 0, 1, 1]);
    }
}
