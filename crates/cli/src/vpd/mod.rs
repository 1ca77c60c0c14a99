//! Pure decoders for INQUIRY data: the standard page and the VPD pages 00h,
//! 80h, 83h, B0h, B1h, B2h, 8Fh (Third-party Copy) and oxcopy's C0h (copy
//! domain, [`domain`]).
//!
//! Every decoder takes the bytes as received (page header included) and
//! never panics, whatever the input: fields past the end of a short page are
//! `None` (or the page is marked `truncated`), a descriptor cut short is kept
//! as hex. The results serialize (serde) into the `inspect --json` schema,
//! and [`render`] turns the same values into indented text.

pub mod domain;
pub mod pages;
pub mod render;
pub mod tpc;

pub use domain::decode_copy_domain;
pub use pages::{
    decode_block_device_characteristics, decode_block_limits, decode_device_identification,
    decode_logical_block_provisioning, decode_standard_inquiry, decode_supported_pages, decode_unit_serial_number,
    BlockLimits,
};
pub use tpc::{decode_third_party_copy, ThirdPartyCopy};

pub(crate) use oxcopy_scsi::wire::Fields;

/// Lower-case hex with no separators.
pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// `83h`-style code.
pub fn code8(v: u8) -> String {
    format!("{v:02X}h")
}

/// `0000h`-style code.
pub fn code16(v: u16) -> String {
    format!("{v:04X}h")
}

/// `00010000h`-style code.
pub fn code32(v: u32) -> String {
    format!("{v:08X}h")
}

/// Printable ASCII of a fixed field, trailing spaces and NULs removed.
pub fn ascii(b: &[u8]) -> String {
    let s: String = b.iter().map(|&c| if (0x20..0x7f).contains(&c) { c as char } else { '.' }).collect();
    s.trim_end_matches(['.', ' ']).trim_start().to_string()
}

pub(crate) use oxcopy_scsi::wire::vpd::page_body;

/// Name of a peripheral device type.
pub fn device_type_name(t: u8) -> &'static str {
    match t {
        0x00 => "direct-access block device",
        0x01 => "sequential-access device",
        0x03 => "processor device",
        0x05 => "CD/DVD device",
        0x07 => "optical memory device",
        0x08 => "media changer",
        0x0c => "storage array controller",
        0x0d => "enclosure services device",
        0x0e => "simplified direct-access device",
        0x11 => "object-based storage device",
        0x1f => "unknown or no device type",
        _ => "other",
    }
}

/// Name of a VPD page code.
pub fn vpd_page_name(p: u8) -> &'static str {
    match p {
        0x00 => "Supported VPD Pages",
        0x80 => "Unit Serial Number",
        0x83 => "Device Identification",
        0x84 => "Software Interface Identification",
        0x85 => "Management Network Addresses",
        0x86 => "Extended INQUIRY Data",
        0x87 => "Mode Page Policy",
        0x88 => "SCSI Ports",
        0x89 => "ATA Information",
        0x8a => "Power Condition",
        0x8b => "Device Constituents",
        0x8f => "Third-party Copy",
        0xb0 => "Block Limits",
        0xb1 => "Block Device Characteristics",
        0xb2 => "Logical Block Provisioning",
        0xb3 => "Referrals",
        0xb4 => "Supported Block Lengths and Protection Types",
        0xb5 => "Block Device Characteristics Extension",
        0xb6 => "Zoned Block Device Characteristics",
        0xb7 => "Block Limits Extension",
        0xc0 => "oxcopy copy domain (vendor specific)",
        0xc1 => "oxcopy volume layout (vendor specific)",
        0xc2..=0xff => "vendor specific",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buf_bounds() {
        let b = Fields(&[1, 2, 3]);
        assert_eq!(b.u16(1), Some(0x0203));
        assert_eq!(b.u16(2), None);
        assert_eq!(b.u32(0), None);
        assert_eq!(b.u64(usize::MAX - 2), None);
        assert_eq!(b.slice(usize::MAX, 2), None);
        assert_eq!(b.tail(9), &[] as &[u8]);
        assert_eq!(page_body(&[0, 0x80, 0, 5, b'a']), (&b"a"[..], true));
        assert_eq!(page_body(&[0, 0x80, 0, 1, b'a', b'b']), (&b"a"[..], false));
        assert_eq!(page_body(&[0]), (&[][..], true));
        assert_eq!(ascii(b"AB  \0\0"), "AB");
    }
}
