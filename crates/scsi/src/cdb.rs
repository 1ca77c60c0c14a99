//! Operation codes, bounds-safe CDB field access, and the per-command
//! template type. The table itself lives in [`crate::commands`].

use crate::sense::Sense;

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
}

/// Opcodes whose CDB byte 1 bits 4:0 carry a service action.
pub(crate) fn has_service_action(op: u8) -> bool {
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
pub(crate) fn be(b: &[u8], off: usize, n: usize) -> u64 {
    (0..n).fold(0u64, |acc, i| {
        let byte = off.checked_add(i).and_then(|j| b.get(j)).copied().unwrap_or(0);
        (acc << 8) | u64::from(byte)
    })
}

/// Byte at `off`, zero when absent.
pub(crate) fn byte(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

/// Direction of the data phase a command uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDir {
    /// No data phase.
    None,
    /// Device to initiator.
    In,
    /// Initiator to device.
    Out,
}

/// How to compute the data-out length a CDB implies (for `data_out_wanted`),
/// before any other validation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutLen {
    /// No data-out.
    None,
    /// TRANSFER LENGTH in logical blocks, `width` bytes at `off`
    /// (width 1 = READ/WRITE(6), where 0 means 256 blocks).
    Blocks { off: usize, width: usize },
    /// As `Blocks`, but only when BYTCHK (byte 1 bits 2:1) is non-zero;
    /// BYTCHK=11b transfers a single block.
    VerifyBlocks { off: usize, width: usize },
    /// PARAMETER LIST LENGTH in bytes, `width` bytes at `off`.
    Bytes { off: usize, width: usize },
    /// WRITE SAME: one logical block, none when NDOB (byte 1 bit 0) is set.
    OneBlockUnlessNdob,
    /// COMPARE AND WRITE: twice the NUMBER OF LOGICAL BLOCKS at `off` (1 byte).
    DoubleBlocks { off: usize },
}

impl OutLen {
    /// Bytes of data-out the CDB asks for, saturated to `u32`.
    pub(crate) fn wanted(self, cdb: &[u8], block_size: u32) -> u32 {
        let blocks = |off, width| {
            let n = be(cdb, off, width);
            if width == 1 && n == 0 {
                256
            } else {
                n
            }
        };
        let v = match self {
            OutLen::None => 0,
            OutLen::Blocks { off, width } => blocks(off, width).saturating_mul(block_size.into()),
            OutLen::VerifyBlocks { off, width } => match (byte(cdb, 1) >> 1) & 3 {
                0 => 0,
                3 => {
                    if blocks(off, width) == 0 {
                        0
                    } else {
                        u64::from(block_size)
                    }
                }
                _ => blocks(off, width).saturating_mul(block_size.into()),
            },
            OutLen::Bytes { off, width } => be(cdb, off, width),
            OutLen::OneBlockUnlessNdob => {
                if byte(cdb, 1) & 0x01 != 0 {
                    0
                } else {
                    u64::from(block_size)
                }
            }
            OutLen::DoubleBlocks { off } => be(cdb, off, 1) * 2 * u64::from(block_size),
        };
        u32::try_from(v).unwrap_or(u32::MAX)
    }
}

/// Timeouts reported by REPORT SUPPORTED OPERATION CODES with RCTD=1, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub nominal: u32,
    pub recommended: u32,
}

/// Bits of the CONTROL byte we evaluate: NACA (bit 2). Vendor-specific bits
/// 7:6 are ignored; NACA=1 and the obsolete LINK/FLAG bits are rejected.
pub(crate) const CONTROL_USAGE: u8 = 0x04;

/// One supported command: everything the dispatcher, the reserved-bit
/// validator and REPORT SUPPORTED OPERATION CODES need.
pub(crate) struct Template<H> {
    pub name: &'static str,
    pub opcode: Opcode,
    /// Service action, for multiplexed opcodes.
    pub sa: Option<u8>,
    /// CDB USAGE DATA: byte 0 the opcode, then per byte the bits the device
    /// server evaluates (for service-action commands byte 1 also carries
    /// the service action value). Its length is the CDB length; the last
    /// byte is the CONTROL byte.
    pub usage: &'static [u8],
    pub dir: DataDir,
    pub out_len: OutLen,
    /// Served on a LUN that does not exist (INQUIRY, REPORT LUNS, REQUEST SENSE).
    pub lu_optional: bool,
    /// Neither reports nor clears a pending unit attention (SAM-5 §5.14).
    pub ua_exempt: bool,
    /// Changes the medium (subject to write protection and reservations).
    pub writes: bool,
    pub timeouts: Timeouts,
    /// What runs the command (the context layer's handler type).
    pub handler: H,
}

impl<H> Template<H> {
    /// CDB length.
    pub(crate) fn len(&self) -> usize {
        self.usage.len()
    }

    /// Reject any bit set outside the usage mask with INVALID FIELD IN CDB
    /// pointing at that byte and its most significant offending bit.
    pub(crate) fn check_reserved_bits(&self, cdb: &[u8]) -> Result<(), Sense> {
        let n = self.len();
        for i in 1..n.saturating_sub(1) {
            let mut allowed = byte(self.usage, i);
            if i == 1 && self.sa.is_some() {
                allowed |= 0x1F;
            }
            let bad = byte(cdb, i) & !allowed;
            if bad != 0 {
                return Err(Sense::invalid_cdb_field(i, Some(high_bit(bad))));
            }
        }
        let ctl = n.saturating_sub(1);
        let bad = byte(cdb, ctl) & 0x3F & !CONTROL_USAGE;
        let naca = byte(cdb, ctl) & 0x04;
        if naca != 0 {
            return Err(Sense::invalid_cdb_field(ctl, Some(2)));
        }
        if bad != 0 {
            return Err(Sense::invalid_cdb_field(ctl, Some(high_bit(bad))));
        }
        Ok(())
    }
}

/// Index of the most significant set bit of a non-zero byte.
pub(crate) fn high_bit(b: u8) -> u8 {
    7u8.saturating_sub(b.leading_zeros() as u8)
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
    }

    #[test]
    fn out_len_computation() {
        let w6 = [0x0A, 0, 0, 0, 0, 0];
        assert_eq!(OutLen::Blocks { off: 4, width: 1 }.wanted(&w6, 512), 256 * 512);
        let v10 = [0x2F, 0x06, 0, 0, 0, 0, 0, 0, 9, 0];
        assert_eq!(OutLen::VerifyBlocks { off: 7, width: 2 }.wanted(&v10, 512), 512);
        let v10 = [0x2F, 0x02, 0, 0, 0, 0, 0, 0, 9, 0];
        assert_eq!(OutLen::VerifyBlocks { off: 7, width: 2 }.wanted(&v10, 512), 9 * 512);
        let w16 = [0x8A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0];
        assert_eq!(OutLen::Blocks { off: 10, width: 4 }.wanted(&w16, 4096), u32::MAX);
    }

    #[test]
    fn high_bit_values() {
        assert_eq!(high_bit(0x01), 0);
        assert_eq!(high_bit(0x80), 7);
        assert_eq!(high_bit(0x28), 5);
    }
}
