//! LUN numbers ⇄ the 8-byte SAM LUN structure.

use oxcopy_scsi::lun::MAX_LUN;

/// Encode a LUN number: below 256 in peripheral device addressing
/// (`00 nn 00..`), below 16384 in flat space addressing (`40|hi lo 00..`) —
/// the target's encoding ([`oxcopy_scsi::lun::encode_lun`]); anything larger
/// is taken as the raw 8-byte LUN structure (big-endian).
pub fn encode_lun(lun: u64) -> [u8; 8] {
    match u16::try_from(lun) {
        Ok(id) if id <= MAX_LUN => oxcopy_scsi::lun::encode_lun(id),
        _ => lun.to_be_bytes(),
    }
}

/// Decode an 8-byte LUN structure (as in REPORT LUNS data) into the number
/// [`encode_lun`] maps back to the same bytes: the target's decoding for the
/// addressing methods it serves, the raw bytes otherwise.
pub fn decode_lun(b: [u8; 8]) -> u64 {
    oxcopy_scsi::lun::decode_lun(b).map_or_else(|| u64::from_be_bytes(b), u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        for lun in [0u64, 1, 255, 256, 0x3fff, 0x4000, 0x0102_0304_0506_0708] {
            assert_eq!(decode_lun(encode_lun(lun)), lun, "{lun:#x}");
        }
        assert_eq!(encode_lun(3), [0, 3, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode_lun(0x123), [0x41, 0x23, 0, 0, 0, 0, 0, 0]);
    }
}
