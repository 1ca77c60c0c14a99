//! LUN numbers ⇄ the 8-byte SAM LUN structure.

/// Encode a LUN number: below 256 in peripheral device addressing
/// (`00 nn 00..`), below 16384 in flat space addressing (`40|hi lo 00..`),
/// anything larger is taken as the raw 8-byte LUN structure (big-endian).
pub fn encode_lun(lun: u64) -> [u8; 8] {
    if lun < 256 {
        [0, lun as u8, 0, 0, 0, 0, 0, 0]
    } else if lun < 0x4000 {
        [0x40 | (lun >> 8) as u8, lun as u8, 0, 0, 0, 0, 0, 0]
    } else {
        lun.to_be_bytes()
    }
}

/// Decode an 8-byte LUN structure (as in REPORT LUNS data) into the number
/// [`encode_lun`] maps back to the same bytes.
pub fn decode_lun(b: [u8; 8]) -> u64 {
    let rest_zero = b[2..].iter().all(|&x| x == 0);
    match b[0] >> 6 {
        0 if rest_zero && b[0] == 0 => b[1] as u64,
        1 if rest_zero => (((b[0] & 0x3f) as u64) << 8) | b[1] as u64,
        _ => u64::from_be_bytes(b),
    }
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
