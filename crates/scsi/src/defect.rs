//! READ DEFECT DATA (10) and (12) (SBC-3 §5.12, §5.13). A file-backed LU
//! has no medium defects: both lists are reported valid (when requested)
//! and empty, in the address descriptor format asked for.

use crate::cdb::{be, byte};
use crate::exec::{CmdResult, Ctx, Done};
use crate::sense::Sense;

/// REQ_PLIST / REQ_GLIST request bits and PLISTV / GLISTV answer bits.
const PLIST: u8 = 0x10;
const GLIST: u8 = 0x08;
/// DEFECT LIST FORMAT values SBC-3 defines (short block, long block, bytes
/// from index, physical sector, vendor specific); 001b, 010b, 111b are
/// reserved.
const VALID_FORMATS: [u8; 5] = [0b000, 0b011, 0b100, 0b101, 0b110];

/// The PLISTV/GLISTV/format byte, or INVALID FIELD IN CDB at `byte_off`.
fn list_byte(b: u8, byte_off: usize) -> Result<u8, Sense> {
    let format = b & 0x07;
    if !VALID_FORMATS.contains(&format) {
        return Err(Sense::invalid_cdb_field(byte_off, Some(2)));
    }
    Ok(b & (PLIST | GLIST) | format)
}

/// READ DEFECT DATA (10): 4-byte header, DEFECT LIST LENGTH 0.
pub(crate) fn read_defect_data10(ctx: &Ctx<'_>) -> CmdResult {
    ctx.lu()?;
    let b = list_byte(byte(ctx.cdb, 2), 2)?;
    Ok(Done::data(vec![0, b, 0, 0], be(ctx.cdb, 7, 2)))
}

/// READ DEFECT DATA (12): 8-byte header, generation 0, DEFECT LIST LENGTH 0
/// (whatever ADDRESS DESCRIPTOR INDEX asks for, there is nothing past it).
pub(crate) fn read_defect_data12(ctx: &Ctx<'_>) -> CmdResult {
    ctx.lu()?;
    let b = list_byte(byte(ctx.cdb, 1), 1)?;
    Ok(Done::data(vec![0, b, 0, 0, 0, 0, 0, 0], be(ctx.cdb, 6, 4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(list_byte(0x18, 2).ok(), Some(0x18));
        assert_eq!(list_byte(0x13, 2).ok(), Some(0x13));
        assert!(list_byte(0x01, 2).is_err());
        assert!(list_byte(0x07, 1).is_err());
    }
}
