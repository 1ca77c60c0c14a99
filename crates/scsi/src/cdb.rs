//! The per-command template type (the table itself lives in
//! [`crate::commands`]); operation codes and CDB field access are the wire
//! layer's ([`crate::wire::cdb`]), re-exported here for the device server.

pub(crate) use crate::wire::cdb::{be, byte, has_service_action, Opcode, ServiceAction};
use crate::wire::sense::Sense;

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

    /// Every CDB the initiator builds is one the command table accepts as is.
    #[test]
    fn wire_builders_pass_the_command_table() {
        use crate::commands::{lookup, Lookup};
        use crate::wire::cdb as w;
        let sa = ServiceAction::RECEIVE_COPY_STATUS_LID4;
        let cdbs: [&[u8]; 12] = [
            &w::test_unit_ready(),
            &w::inquiry(true, 0x83, 255),
            &w::read_capacity16(32),
            &w::read16(1, 2, true),
            &w::write16(1, 2, true),
            &w::sync_cache16(1, 2, true),
            &w::report_luns(0, 1024),
            &w::extended_copy(64),
            &w::receive_copy_results(sa, 7, 1024),
            &w::token_out(ServiceAction::POPULATE_TOKEN, 7, 32),
            &w::token_out(ServiceAction::WRITE_USING_TOKEN, 7, 552),
            &w::copy_operation_abort(7),
        ];
        for c in cdbs {
            let Lookup::Found(t) = lookup(c[0], c[1]) else { panic!("{c:02x?} is not in the table") };
            assert_eq!(t.len(), c.len(), "{}", t.name);
            assert_eq!(t.check_reserved_bits(c), Ok(()), "{}", t.name);
        }
    }

    #[test]
    fn high_bit_values() {
        assert_eq!(high_bit(0x01), 0);
        assert_eq!(high_bit(0x80), 7);
        assert_eq!(high_bit(0x28), 5);
    }
}
