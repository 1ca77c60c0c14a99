//! SAM logical unit numbers: the 8-byte LUN field and its addressing methods.

/// Highest LUN number we address (flat space addressing is 14 bits).
pub const MAX_LUN: u16 = 0x3FFF;

/// Decode a SAM LUN: peripheral device addressing (bus 0) or flat space
/// addressing, single level. Anything else is `None`.
pub fn decode_lun(raw: [u8; 8]) -> Option<u16> {
    if raw[2..].iter().any(|&b| b != 0) {
        return None;
    }
    match raw[0] >> 6 {
        0b00 if raw[0] & 0x3F == 0 => Some(u16::from(raw[1])),
        0b01 => Some(u16::from(raw[0] & 0x3F) << 8 | u16::from(raw[1])),
        _ => None,
    }
}

/// Encode a LUN number: peripheral device addressing below 256, flat space
/// addressing above. Numbers above [`MAX_LUN`] are not addressable (their
/// top bits are dropped); a target never holds such LUNs.
pub fn encode_lun(id: u16) -> [u8; 8] {
    let [hi, lo] = id.to_be_bytes();
    if id < 256 {
        [0, lo, 0, 0, 0, 0, 0, 0]
    } else {
        [0x40 | (hi & 0x3F), lo, 0, 0, 0, 0, 0, 0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lun_encoding_roundtrip() {
        for id in [0u16, 1, 255, 256, 1000, MAX_LUN] {
            assert_eq!(decode_lun(encode_lun(id)), Some(id));
        }
        assert_eq!(encode_lun(3), [0, 3, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode_lun(0x123), [0x41, 0x23, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode_lun([0x40, 5, 0, 0, 0, 0, 0, 0]), Some(5));
        assert_eq!(decode_lun([0x01, 5, 0, 0, 0, 0, 0, 0]), None); // bus 1
        assert_eq!(decode_lun([0x80, 5, 0, 0, 0, 0, 0, 0]), None); // logical unit addressing
        assert_eq!(decode_lun([0, 5, 0, 1, 0, 0, 0, 0]), None); // second level
    }
}
