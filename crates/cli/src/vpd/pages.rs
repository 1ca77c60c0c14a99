//! Standard INQUIRY data and the VPD pages 00h, 80h, 83h, B0h, B1h, B2h.

use oxcopy_scsi::wire::inquiry::{self, ProvisioningType};
use oxcopy_scsi::wire::vpd::{self, Association, CodeSet, DesignatorType};

use super::{ascii, code16, code8, device_type_name, hex, page_body, vpd_page_name};
use serde::Serialize;

/// Standard INQUIRY data (SPC-4 §6.6.2).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StandardInquiry {
    pub peripheral_qualifier: u8,
    pub peripheral_device_type: String,
    pub removable: bool,
    pub version: String,
    pub normaca: bool,
    pub hisup: bool,
    pub response_data_format: u8,
    pub sccs: bool,
    pub acc: bool,
    pub tpgs: u8,
    /// The 3PC bit: third-party copy (EXTENDED COPY / tokens) supported.
    pub third_party_copy: bool,
    pub protect: bool,
    pub encserv: bool,
    pub multip: bool,
    pub cmdque: bool,
    pub vendor: String,
    pub product: String,
    pub revision: String,
    pub version_descriptors: Vec<String>,
    /// Fewer bytes than ADDITIONAL LENGTH announced (missing fields read as 0).
    pub truncated: bool,
}

fn version_name(v: u8) -> &'static str {
    match v {
        0x00 => "no standard claimed",
        0x03 => "SPC",
        0x04 => "SPC-2",
        0x05 => "SPC-3",
        0x06 => "SPC-4",
        0x07 => "SPC-5",
        _ => "unknown",
    }
}

fn version_descriptor_name(v: u16) -> &'static str {
    match v {
        0x0060..=0x007f => "SAM-3",
        0x0080..=0x009f => "SAM-4",
        0x00a0..=0x00bf => "SAM-5",
        0x00c0..=0x00df => "SAM-6",
        0x0300..=0x031f => "SPC-3",
        0x0460..=0x047f => "SPC-4",
        0x04c0..=0x04df => "SBC-3",
        0x0600..=0x061f => "SBC-4",
        0x0960..=0x097f => "iSCSI",
        0x0d40..=0x0d5f => "SAS",
        0x1ea0..=0x1ebf => "SAT",
        _ => "other",
    }
}

/// Decode standard INQUIRY data (the layout is the wire layer's).
pub fn decode_standard_inquiry(d: &[u8]) -> StandardInquiry {
    let s = inquiry::StandardInquiry::decode(d);
    let declared = usize::from(s.additional_length) + 5;
    let dtype = s.peripheral & 0x1f;
    StandardInquiry {
        peripheral_qualifier: s.peripheral >> 5,
        peripheral_device_type: format!("{} {}", code8(dtype), device_type_name(dtype)),
        removable: s.removable,
        version: format!("{} {}", code8(s.version), version_name(s.version)),
        normaca: s.normaca,
        hisup: s.hisup,
        response_data_format: s.response_data_format,
        sccs: s.sccs,
        acc: s.acc,
        tpgs: s.tpgs,
        third_party_copy: s.third_party_copy,
        protect: s.protect,
        encserv: s.encserv,
        multip: s.multip,
        cmdque: s.cmdque,
        vendor: ascii(&s.vendor),
        product: ascii(&s.product),
        revision: ascii(&s.revision),
        version_descriptors: s
            .version_descriptors
            .iter()
            .map(|&v| format!("{} {}", code16(v), version_descriptor_name(v)))
            .collect(),
        truncated: d.len() < 36.min(declared) || d.len() < 5,
    }
}

/// One entry of the Supported VPD Pages list.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PageRef {
    pub code: String,
    pub name: &'static str,
}

/// VPD 00h: the page codes (and the decoded list for display).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SupportedPages {
    #[serde(skip)]
    pub codes: Vec<u8>,
    pub pages: Vec<PageRef>,
    pub truncated: bool,
}

/// Decode VPD 00h.
pub fn decode_supported_pages(d: &[u8]) -> SupportedPages {
    let (body, truncated) = page_body(d);
    SupportedPages {
        codes: body.to_vec(),
        pages: body.iter().map(|&c| PageRef { code: code8(c), name: vpd_page_name(c) }).collect(),
        truncated,
    }
}

/// VPD 80h.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UnitSerialNumber {
    pub serial_number: String,
    pub truncated: bool,
}

/// Decode VPD 80h.
pub fn decode_unit_serial_number(d: &[u8]) -> UnitSerialNumber {
    let (body, truncated) = page_body(d);
    UnitSerialNumber { serial_number: ascii(body), truncated }
}

/// One designation descriptor of VPD 83h.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Designator {
    pub designator_type: String,
    pub association: &'static str,
    pub code_set: &'static str,
    /// Protocol identifier, when PIV is set for a port/target association.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<&'static str>,
    pub length: u8,
    /// Text for ASCII/UTF-8 designators, `naa.`/`eui.` + hex for those types,
    /// a number for relative target ports, hex otherwise.
    pub value: String,
    /// The designator bytes (hex), as they go into an E4h CSCD descriptor.
    pub hex: String,
}

/// VPD 83h.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeviceIdentification {
    pub designators: Vec<Designator>,
    pub truncated: bool,
}

fn designator_type_name(t: u8) -> &'static str {
    match t {
        0 => "vendor specific",
        1 => "T10 vendor ID",
        2 => "EUI-64",
        3 => "NAA",
        4 => "relative target port",
        5 => "target port group",
        6 => "logical unit group",
        7 => "MD5 logical unit",
        8 => "SCSI name string",
        9 => "protocol specific port",
        10 => "UUID",
        _ => "reserved",
    }
}

fn protocol_name(p: u8) -> &'static str {
    match p {
        0 => "Fibre Channel",
        1 => "parallel SCSI",
        2 => "SSA",
        3 => "IEEE 1394",
        4 => "SCSI RDMA",
        5 => "iSCSI",
        6 => "SAS",
        7 => "ADT",
        8 => "ATA",
        9 => "UAS",
        10 => "SOP",
        _ => "other",
    }
}

/// Decode VPD 83h.
pub fn decode_device_identification(d: &[u8]) -> DeviceIdentification {
    let (body, truncated) = page_body(d);
    let mut used = 0;
    let designators = vpd::designations(d)
        .map(|des| {
            used += 4 + des.value.len();
            let (value, dtype, code_set) = (des.value, des.designator_type(), des.code_set & 0x0f);
            let text = matches!(code_set, CodeSet::ASCII | CodeSet::UTF8);
            let shown = match dtype {
                _ if text => value.iter().take_while(|&&c| c != 0).map(|&c| c as char).collect(),
                DesignatorType::NAA => format!("naa.{}", hex(value)),
                DesignatorType::EUI64 => format!("eui.{}", hex(value)),
                4..=6 if value.len() == 4 => u32::from_be_bytes([value[0], value[1], value[2], value[3]]).to_string(),
                _ => format!("0x{}", hex(value)),
            };
            Designator {
                designator_type: format!("{dtype} {}", designator_type_name(dtype)),
                association: match des.association() {
                    Association::LOGICAL_UNIT => "logical unit",
                    Association::TARGET_PORT => "target port",
                    Association::TARGET_DEVICE => "target device",
                    _ => "reserved",
                },
                code_set: match code_set {
                    CodeSet::BINARY => "binary",
                    CodeSet::ASCII => "ASCII",
                    CodeSet::UTF8 => "UTF-8",
                    _ => "reserved",
                },
                protocol: des.protocol().map(protocol_name),
                length: value.len() as u8,
                value: shown,
                hex: hex(value),
            }
        })
        .collect();
    // A descriptor cut short ends the walk: the page is truncated.
    DeviceIdentification { designators, truncated: truncated || used < body.len() }
}

/// VPD B0h Block Limits (SBC-4 §6.6.4): the wire layer's fields (`None` =
/// past the end of the page; lengths in logical blocks, 0 = "not reported"),
/// printed flat, and whether the page was cut short.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BlockLimits {
    #[serde(flatten)]
    pub page: inquiry::BlockLimits,
    pub truncated: bool,
}

/// Decode VPD B0h (the layout is the wire layer's, which the target encodes).
pub fn decode_block_limits(d: &[u8]) -> BlockLimits {
    let (body, truncated) = page_body(d);
    BlockLimits { page: inquiry::BlockLimits::decode(body), truncated }
}

/// VPD B1h Block Device Characteristics.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BlockDeviceCharacteristics {
    /// 0 = not reported, 1 = non-rotating (solid state), else rpm.
    pub medium_rotation_rate: Option<String>,
    pub product_type: Option<u8>,
    pub wabereq: Option<u8>,
    pub wacereq: Option<u8>,
    pub nominal_form_factor: Option<String>,
    pub zoned: Option<u8>,
    pub fuab: Option<bool>,
    pub vbuls: Option<bool>,
    pub truncated: bool,
}

/// Decode VPD B1h (the layout is the wire layer's).
pub fn decode_block_device_characteristics(d: &[u8]) -> BlockDeviceCharacteristics {
    let (body, truncated) = page_body(d);
    let c = inquiry::BlockDeviceCharacteristics::decode(body);
    BlockDeviceCharacteristics {
        medium_rotation_rate: c.medium_rotation_rate.map(|r| match r {
            0 => "not reported".to_string(),
            inquiry::NON_ROTATING => "non-rotating medium".to_string(),
            r => format!("{r} rpm"),
        }),
        product_type: c.product_type,
        wabereq: c.wabereq,
        wacereq: c.wacereq,
        nominal_form_factor: c.nominal_form_factor.map(|v| {
            match v {
                0 => "not reported",
                1 => "5.25 inch",
                2 => "3.5 inch",
                3 => "2.5 inch",
                4 => "1.8 inch",
                5 => "less than 1.8 inch",
                _ => "reserved",
            }
            .to_string()
        }),
        zoned: c.zoned,
        fuab: c.fuab,
        vbuls: c.vbuls,
        truncated,
    }
}

/// VPD B2h Logical Block Provisioning.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LogicalBlockProvisioning {
    pub threshold_exponent: Option<u8>,
    /// UNMAP supported.
    pub lbpu: Option<bool>,
    /// WRITE SAME (16) with UNMAP supported.
    pub lbpws: Option<bool>,
    /// WRITE SAME (10) with UNMAP supported.
    pub lbpws10: Option<bool>,
    /// Unmapped blocks read back as zeroes (LBPRZ field).
    pub lbprz: Option<u8>,
    pub anc_sup: Option<bool>,
    pub dp: Option<bool>,
    pub minimum_percentage: Option<u8>,
    pub provisioning_type: Option<String>,
    pub threshold_percentage: Option<u8>,
    pub truncated: bool,
}

/// Decode VPD B2h (the layout is the wire layer's).
pub fn decode_logical_block_provisioning(d: &[u8]) -> LogicalBlockProvisioning {
    let (body, truncated) = page_body(d);
    let p = inquiry::LogicalBlockProvisioning::decode(body);
    LogicalBlockProvisioning {
        threshold_exponent: p.threshold_exponent,
        lbpu: p.lbpu,
        lbpws: p.lbpws,
        lbpws10: p.lbpws10,
        lbprz: p.lbprz,
        anc_sup: p.anc_sup,
        dp: p.dp,
        minimum_percentage: p.minimum_percentage,
        provisioning_type: p.provisioning_type.map(|t| {
            match t {
                ProvisioningType::FULL => "not reported (fully provisioned)",
                ProvisioningType::RESOURCE => "resource provisioned",
                ProvisioningType::THIN => "thin provisioned",
                _ => "reserved",
            }
            .to_string()
        }),
        threshold_percentage: p.threshold_percentage,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What oxcopyd sends (see crates/scsi/src/inquiry.rs).
    fn standard_bytes() -> Vec<u8> {
        let mut d = vec![0u8; 96];
        d[2] = 0x06;
        d[3] = 0x12;
        d[4] = 91;
        d[5] = 0x08;
        d[7] = 0x02;
        d[8..16].copy_from_slice(b"OXCOPY  ");
        d[16..32].copy_from_slice(b"disk            ");
        d[32..36].copy_from_slice(b"0.1 ");
        d[58..60].copy_from_slice(&0x00A0u16.to_be_bytes());
        d[60..62].copy_from_slice(&0x0460u16.to_be_bytes());
        d
    }

    #[test]
    fn standard_inquiry() {
        let s = decode_standard_inquiry(&standard_bytes());
        assert_eq!(s.peripheral_device_type, "00h direct-access block device");
        assert_eq!(s.version, "06h SPC-4");
        assert!(s.third_party_copy && s.cmdque && s.hisup && !s.truncated);
        assert_eq!((s.vendor.as_str(), s.product.as_str(), s.revision.as_str()), ("OXCOPY", "disk", "0.1"));
        assert_eq!(s.version_descriptors, vec!["00A0h SAM-5", "0460h SPC-4"]);
        assert!(decode_standard_inquiry(&standard_bytes()[..20]).truncated);
    }

    #[test]
    fn supported_pages_and_serial() {
        let p = decode_supported_pages(&[0, 0, 0, 4, 0x00, 0x80, 0x83, 0x8f]);
        assert_eq!(p.codes, vec![0, 0x80, 0x83, 0x8f]);
        assert_eq!(p.pages[3], PageRef { code: "8Fh".into(), name: "Third-party Copy" });
        let s = decode_unit_serial_number(b"\0\x80\0\x06abc123");
        assert_eq!(s.serial_number, "abc123");
    }

    #[test]
    fn device_identification() {
        let mut d = vec![0, 0x83, 0, 0];
        // NAA 6, LU.
        d.extend_from_slice(&[0x01, 0x03, 0, 16]);
        d.extend_from_slice(&[0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        // Relative target port 1 (iSCSI, PIV).
        d.extend_from_slice(&[0x51, 0x94, 0, 4, 0, 0, 0, 1]);
        // SCSI name string, target device.
        d.extend_from_slice(&[0x53, 0xa8, 0, 8]);
        d.extend_from_slice(b"iqn.x:y\0");
        let n = (d.len() - 4) as u16;
        d[2..4].copy_from_slice(&n.to_be_bytes());
        let id = decode_device_identification(&d);
        assert!(!id.truncated);
        assert_eq!(id.designators.len(), 3);
        assert_eq!(id.designators[0].designator_type, "3 NAA");
        assert_eq!(id.designators[0].value, "naa.600102030405060708090a0b0c0d0e0f");
        assert_eq!(id.designators[0].association, "logical unit");
        assert_eq!(id.designators[0].protocol, None);
        assert_eq!(id.designators[1].value, "1");
        assert_eq!(id.designators[1].protocol, Some("iSCSI"));
        assert_eq!(id.designators[2].value, "iqn.x:y");
        assert_eq!(id.designators[2].association, "target device");
        // Every prefix decodes without panicking; short ones are truncated.
        for n in 0..d.len() {
            let r = decode_device_identification(&d[..n]);
            assert!(r.truncated || n == d.len(), "{n}");
        }
    }

    #[test]
    fn block_limits() {
        let mut d = vec![0, 0xb0, 0, 0x3c];
        d.extend_from_slice(&[0u8; 0x3c]);
        d[4] = 1;
        d[6..8].copy_from_slice(&8u16.to_be_bytes());
        d[8..12].copy_from_slice(&32768u32.to_be_bytes());
        d[12..16].copy_from_slice(&2048u32.to_be_bytes());
        d[36..44].copy_from_slice(&0x1_0000_0000u64.to_be_bytes());
        let l = decode_block_limits(&d);
        assert_eq!(l.page.write_same_non_zero, Some(true));
        assert_eq!(l.page.optimal_transfer_length_granularity, Some(8));
        assert_eq!(l.page.maximum_transfer_length, Some(32768));
        assert_eq!(l.page.optimal_transfer_length, Some(2048));
        assert_eq!(l.page.maximum_write_same_length, Some(0x1_0000_0000));
        assert_eq!(l.page.maximum_atomic_boundary_size, Some(0));
        // An old-style short page (length 0Ch): the rest is absent, not zero.
        let mut s = d[..16].to_vec();
        s[3] = 0x0c;
        let l = decode_block_limits(&s);
        assert_eq!(
            (l.page.optimal_transfer_length, l.page.maximum_prefetch_length, l.truncated),
            (Some(2048), None, false)
        );
        for n in 0..d.len() {
            let _ = decode_block_limits(&d[..n]);
        }
    }

    #[test]
    fn characteristics_and_provisioning() {
        let c = decode_block_device_characteristics(&[0, 0xb1, 0, 0x3c, 0, 1, 0, 0x03, 0x02]);
        assert_eq!(c.medium_rotation_rate.as_deref(), Some("non-rotating medium"));
        assert_eq!(c.nominal_form_factor.as_deref(), Some("2.5 inch"));
        assert_eq!(c.fuab, Some(true));
        assert!(c.truncated);
        let p = decode_logical_block_provisioning(&[0, 0xb2, 0, 4, 0, 0xe4, 0x02, 0]);
        assert_eq!((p.lbpu, p.lbpws, p.lbpws10, p.lbprz), (Some(true), Some(true), Some(true), Some(1)));
        assert_eq!(p.provisioning_type.as_deref(), Some("thin provisioned"));
        for n in 0..8 {
            let _ = decode_logical_block_provisioning(&[0, 0xb2, 0, 4, 0, 0xe4, 0x02, 0][..n]);
            let _ = decode_block_device_characteristics(&[0, 0xb1, 0, 0x3c, 0, 1, 0, 0x03, 0x02][..n]);
            let _ = decode_standard_inquiry(&standard_bytes()[..n]);
            let _ = decode_supported_pages(&[0, 0, 0, 4, 0x00, 0x80, 0x83, 0x8f][..n]);
            let _ = decode_unit_serial_number(&b"\0\x80\0\x06abc123"[..n]);
        }
    }
}
