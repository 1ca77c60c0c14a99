//! Standard INQUIRY data (SPC-4 §6.6.2) and the block device VPD pages
//! (SBC-3 §6.6): B0h Block Limits, B1h Block Device Characteristics and
//! B2h Logical Block Provisioning — their page bodies (after the 4-byte
//! header [`super::vpd::page`] frames). The device server encodes them
//! (`crate::inquiry`), the CLI decodes them.
//!
//! Standard INQUIRY data decodes leniently (a short allocation length is
//! normal): bytes past the data read as 0, text fields as far as received.
//!
//! Decoders take the body [`super::vpd::page_body`] returns and read each
//! field as `None` when the page ends before it (an old-style short page
//! is not an error); encoders write absent fields as 0.
//!
//! ```text
//! standard  B0 QUALIFIER|TYPE  B1 RMB(7)  B2 VERSION  B3 NORMACA(5)|HISUP(4)|FORMAT(3:0)
//!           B4 ADDITIONAL LENGTH  B5 SCCS|ACC|TPGS(5:4)|3PC(3)|PROTECT(0)
//!           B6 ENCSERV(6)|MULTIP(4)  B7 CMDQUE(1)  B8-15 VENDOR  B16-31 PRODUCT
//!           B32-35 REVISION  B58-73 VERSION DESCRIPTORS
//! B0h (page offsets)  B4 WSNZ(0)  B5 MAX COMPARE AND WRITE  B6-7 OPT GRANULARITY
//!     B8-11 MAX TRANSFER  B12-15 OPT TRANSFER  B16-19 MAX PREFETCH
//!     B20-23 MAX UNMAP LBA COUNT  B24-27 MAX UNMAP DESCRIPTORS  B28-31 OPT UNMAP GRANULARITY
//!     B32-35 UGAVALID(31)|ALIGNMENT  B36-43 MAX WRITE SAME  B44-63 atomic fields
//! B1h  B4-5 MEDIUM ROTATION RATE  B6 PRODUCT TYPE  B7 WABEREQ|WACEREQ|FORM FACTOR
//!      B8 ZONED(5:4)|FUAB(1)|VBULS(0)
//! B2h  B4 THRESHOLD EXPONENT  B5 LBPU|LBPWS|LBPWS10|LBPRZ(4:2)|ANC_SUP|DP
//!      B6 MINIMUM PERCENTAGE(7:3)|PROVISIONING TYPE(2:0)  B7 THRESHOLD PERCENTAGE
//! ```

use super::Fields;

/// Length of the standard INQUIRY data encoded (ADDITIONAL LENGTH 91).
pub const STANDARD_LEN: usize = 96;
/// Offset of the first VERSION DESCRIPTOR.
const VERSION_DESCRIPTORS_AT: usize = 58;
/// Number of VERSION DESCRIPTOR fields.
const VERSION_DESCRIPTORS: usize = 8;

/// Standard INQUIRY data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StandardInquiry {
    /// Byte 0: PERIPHERAL QUALIFIER (7:5) and PERIPHERAL DEVICE TYPE (4:0).
    pub peripheral: u8,
    /// RMB: removable medium.
    pub removable: bool,
    /// VERSION (06h SPC-4).
    pub version: u8,
    /// NORMACA.
    pub normaca: bool,
    /// HISUP: hierarchical LUN addressing.
    pub hisup: bool,
    /// RESPONSE DATA FORMAT (2).
    pub response_data_format: u8,
    /// ADDITIONAL LENGTH as decoded (0 when absent); the encoder writes its own.
    pub additional_length: u8,
    /// SCCS.
    pub sccs: bool,
    /// ACC.
    pub acc: bool,
    /// TPGS (2 bits).
    pub tpgs: u8,
    /// 3PC: third-party copy supported.
    pub third_party_copy: bool,
    /// PROTECT.
    pub protect: bool,
    /// ENCSERV.
    pub encserv: bool,
    /// MULTIP.
    pub multip: bool,
    /// CMDQUE.
    pub cmdque: bool,
    /// T10 VENDOR IDENTIFICATION (8 bytes; the encoder keeps printable
    /// ASCII and pads with spaces).
    pub vendor: Vec<u8>,
    /// PRODUCT IDENTIFICATION (16 bytes, likewise).
    pub product: Vec<u8>,
    /// PRODUCT REVISION LEVEL (4 bytes, likewise).
    pub revision: Vec<u8>,
    /// The non-zero VERSION DESCRIPTORs within ADDITIONAL LENGTH (at most 8).
    pub version_descriptors: Vec<u16>,
}

/// Copy `s` into a space-padded fixed field, replacing anything outside
/// printable ASCII (SPC-4 §4.4.1 allows only 20h-7Eh here).
pub fn ascii_field(dst: &mut [u8], s: &[u8]) {
    dst.fill(b' ');
    for (d, &c) in dst.iter_mut().zip(s) {
        *d = if (0x20..=0x7E).contains(&c) { c } else { b' ' };
    }
}

impl StandardInquiry {
    /// Decode (lenient and bounded: bytes past `d` read as 0).
    pub fn decode(d: &[u8]) -> StandardInquiry {
        let f = Fields(d);
        let g = |i: usize| f.u8(i).unwrap_or(0);
        let bit = |i: usize, n: u8| g(i) & (1 << n) != 0;
        let text = |i: usize, n: usize| d.get(i..(i + n).min(d.len())).unwrap_or(&[]).to_vec();
        let declared = usize::from(g(4)) + 5;
        let end = declared.min(d.len()).min(VERSION_DESCRIPTORS_AT + 2 * VERSION_DESCRIPTORS);
        let version_descriptors = (VERSION_DESCRIPTORS_AT..end.max(VERSION_DESCRIPTORS_AT))
            .step_by(2)
            .filter_map(|i| f.u16(i).filter(|&v| v != 0 && i + 2 <= end))
            .collect();
        StandardInquiry {
            peripheral: g(0),
            removable: bit(1, 7),
            version: g(2),
            normaca: bit(3, 5),
            hisup: bit(3, 4),
            response_data_format: g(3) & 0x0F,
            additional_length: g(4),
            sccs: bit(5, 7),
            acc: bit(5, 6),
            tpgs: (g(5) >> 4) & 3,
            third_party_copy: bit(5, 3),
            protect: bit(5, 0),
            encserv: bit(6, 6),
            multip: bit(6, 4),
            cmdque: bit(7, 1),
            vendor: text(8, 8),
            product: text(16, 16),
            revision: text(32, 4),
            version_descriptors,
        }
    }

    /// The 96-byte data (ADDITIONAL LENGTH 91).
    pub fn encode(&self) -> Vec<u8> {
        let flag = |v: bool, bit: u8| u8::from(v) << bit;
        let mut d = vec![0u8; STANDARD_LEN];
        d[0] = self.peripheral;
        d[1] = flag(self.removable, 7);
        d[2] = self.version;
        d[3] = flag(self.normaca, 5) | flag(self.hisup, 4) | (self.response_data_format & 0x0F);
        d[4] = (STANDARD_LEN - 5) as u8;
        d[5] = flag(self.sccs, 7)
            | flag(self.acc, 6)
            | ((self.tpgs & 3) << 4)
            | flag(self.third_party_copy, 3)
            | flag(self.protect, 0);
        d[6] = flag(self.encserv, 6) | flag(self.multip, 4);
        d[7] = flag(self.cmdque, 1);
        ascii_field(&mut d[8..16], &self.vendor);
        ascii_field(&mut d[16..32], &self.product);
        ascii_field(&mut d[32..36], &self.revision);
        for (i, v) in self.version_descriptors.iter().take(VERSION_DESCRIPTORS).enumerate() {
            let o = VERSION_DESCRIPTORS_AT + 2 * i;
            d[o..o + 2].copy_from_slice(&v.to_be_bytes());
        }
        d
    }
}

/// PAGE LENGTH of Block Limits and Block Device Characteristics.
pub const BLOCK_PAGE_LEN: usize = 0x3C;
/// PAGE LENGTH of Logical Block Provisioning without a descriptor (DP=0).
pub const LBP_PAGE_LEN: usize = 4;

/// VPD B0h Block Limits. Lengths are in logical blocks; 0 = not reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct BlockLimits {
    /// WSNZ: WRITE SAME with 0 blocks is refused.
    pub write_same_non_zero: Option<bool>,
    /// MAXIMUM COMPARE AND WRITE LENGTH.
    pub maximum_compare_and_write_length: Option<u8>,
    /// OPTIMAL TRANSFER LENGTH GRANULARITY.
    pub optimal_transfer_length_granularity: Option<u16>,
    /// MAXIMUM TRANSFER LENGTH.
    pub maximum_transfer_length: Option<u32>,
    /// OPTIMAL TRANSFER LENGTH.
    pub optimal_transfer_length: Option<u32>,
    /// MAXIMUM PREFETCH LENGTH.
    pub maximum_prefetch_length: Option<u32>,
    /// MAXIMUM UNMAP LBA COUNT.
    pub maximum_unmap_lba_count: Option<u32>,
    /// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT.
    pub maximum_unmap_block_descriptor_count: Option<u32>,
    /// OPTIMAL UNMAP GRANULARITY.
    pub optimal_unmap_granularity: Option<u32>,
    /// UGAVALID.
    pub unmap_granularity_alignment_valid: Option<bool>,
    /// UNMAP GRANULARITY ALIGNMENT (31 bits).
    pub unmap_granularity_alignment: Option<u32>,
    /// MAXIMUM WRITE SAME LENGTH.
    pub maximum_write_same_length: Option<u64>,
    /// MAXIMUM ATOMIC TRANSFER LENGTH.
    pub maximum_atomic_transfer_length: Option<u32>,
    /// ATOMIC ALIGNMENT.
    pub atomic_alignment: Option<u32>,
    /// ATOMIC TRANSFER LENGTH GRANULARITY.
    pub atomic_transfer_length_granularity: Option<u32>,
    /// MAXIMUM ATOMIC TRANSFER LENGTH WITH ATOMIC BOUNDARY.
    pub maximum_atomic_transfer_length_with_atomic_boundary: Option<u32>,
    /// MAXIMUM ATOMIC BOUNDARY SIZE.
    pub maximum_atomic_boundary_size: Option<u32>,
}

impl BlockLimits {
    /// Decode a page body (bounded: fields past its end are `None`).
    pub fn decode(body: &[u8]) -> BlockLimits {
        // Offsets are body offsets: page offset − 4.
        let b = Fields(body);
        BlockLimits {
            write_same_non_zero: b.bit(0, 0),
            maximum_compare_and_write_length: b.u8(1),
            optimal_transfer_length_granularity: b.u16(2),
            maximum_transfer_length: b.u32(4),
            optimal_transfer_length: b.u32(8),
            maximum_prefetch_length: b.u32(12),
            maximum_unmap_lba_count: b.u32(16),
            maximum_unmap_block_descriptor_count: b.u32(20),
            optimal_unmap_granularity: b.u32(24),
            unmap_granularity_alignment_valid: b.bit(28, 7),
            unmap_granularity_alignment: b.u32(28).map(|v| v & 0x7FFF_FFFF),
            maximum_write_same_length: b.u64(32),
            maximum_atomic_transfer_length: b.u32(40),
            atomic_alignment: b.u32(44),
            atomic_transfer_length_granularity: b.u32(48),
            maximum_atomic_transfer_length_with_atomic_boundary: b.u32(52),
            maximum_atomic_boundary_size: b.u32(56),
        }
    }

    /// The 3Ch-byte page body.
    pub fn encode(&self) -> Vec<u8> {
        let mut d = vec![0u8; BLOCK_PAGE_LEN];
        d[0] = u8::from(self.write_same_non_zero.unwrap_or(false));
        d[1] = self.maximum_compare_and_write_length.unwrap_or(0);
        d[2..4].copy_from_slice(&self.optimal_transfer_length_granularity.unwrap_or(0).to_be_bytes());
        let words = [
            (4, self.maximum_transfer_length),
            (8, self.optimal_transfer_length),
            (12, self.maximum_prefetch_length),
            (16, self.maximum_unmap_lba_count),
            (20, self.maximum_unmap_block_descriptor_count),
            (24, self.optimal_unmap_granularity),
            (28, self.unmap_granularity_alignment.map(|v| v & 0x7FFF_FFFF)),
            (40, self.maximum_atomic_transfer_length),
            (44, self.atomic_alignment),
            (48, self.atomic_transfer_length_granularity),
            (52, self.maximum_atomic_transfer_length_with_atomic_boundary),
            (56, self.maximum_atomic_boundary_size),
        ];
        for (at, v) in words {
            d[at..at + 4].copy_from_slice(&v.unwrap_or(0).to_be_bytes());
        }
        if self.unmap_granularity_alignment_valid == Some(true) {
            d[28] |= 0x80;
        }
        d[32..40].copy_from_slice(&self.maximum_write_same_length.unwrap_or(0).to_be_bytes());
        d
    }
}

/// MEDIUM ROTATION RATE of a non-rotating (solid state) medium.
pub const NON_ROTATING: u16 = 1;

/// VPD B1h Block Device Characteristics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockDeviceCharacteristics {
    /// MEDIUM ROTATION RATE: 0 not reported, 1 non-rotating, else rpm.
    pub medium_rotation_rate: Option<u16>,
    /// PRODUCT TYPE.
    pub product_type: Option<u8>,
    /// WABEREQ (2 bits).
    pub wabereq: Option<u8>,
    /// WACEREQ (2 bits).
    pub wacereq: Option<u8>,
    /// NOMINAL FORM FACTOR (4 bits).
    pub nominal_form_factor: Option<u8>,
    /// ZONED (2 bits).
    pub zoned: Option<u8>,
    /// FUAB.
    pub fuab: Option<bool>,
    /// VBULS.
    pub vbuls: Option<bool>,
}

impl BlockDeviceCharacteristics {
    /// Decode a page body (bounded: fields past its end are `None`).
    pub fn decode(body: &[u8]) -> BlockDeviceCharacteristics {
        let b = Fields(body);
        BlockDeviceCharacteristics {
            medium_rotation_rate: b.u16(0),
            product_type: b.u8(2),
            wabereq: b.u8(3).map(|v| v >> 6),
            wacereq: b.u8(3).map(|v| (v >> 4) & 3),
            nominal_form_factor: b.u8(3).map(|v| v & 0x0F),
            zoned: b.u8(4).map(|v| (v >> 4) & 3),
            fuab: b.bit(4, 1),
            vbuls: b.bit(4, 0),
        }
    }

    /// The 3Ch-byte page body.
    pub fn encode(&self) -> Vec<u8> {
        let mut d = vec![0u8; BLOCK_PAGE_LEN];
        d[0..2].copy_from_slice(&self.medium_rotation_rate.unwrap_or(0).to_be_bytes());
        d[2] = self.product_type.unwrap_or(0);
        d[3] = ((self.wabereq.unwrap_or(0) & 3) << 6)
            | ((self.wacereq.unwrap_or(0) & 3) << 4)
            | (self.nominal_form_factor.unwrap_or(0) & 0x0F);
        d[4] = ((self.zoned.unwrap_or(0) & 3) << 4)
            | (u8::from(self.fuab.unwrap_or(false)) << 1)
            | u8::from(self.vbuls.unwrap_or(false));
        d
    }
}

/// PROVISIONING TYPE of Logical Block Provisioning (3 bits). A newtype:
/// any value is representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProvisioningType(pub u8);

impl ProvisioningType {
    /// Not reported (fully provisioned).
    pub const FULL: Self = Self(0);
    /// Resource provisioned.
    pub const RESOURCE: Self = Self(1);
    /// Thin provisioned.
    pub const THIN: Self = Self(2);
}

/// VPD B2h Logical Block Provisioning (no provisioning group descriptor).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogicalBlockProvisioning {
    /// THRESHOLD EXPONENT.
    pub threshold_exponent: Option<u8>,
    /// LBPU: UNMAP supported.
    pub lbpu: Option<bool>,
    /// LBPWS: WRITE SAME (16) with UNMAP supported.
    pub lbpws: Option<bool>,
    /// LBPWS10: WRITE SAME (10) with UNMAP supported.
    pub lbpws10: Option<bool>,
    /// LBPRZ (3 bits): unmapped blocks read back as zeroes when 1.
    pub lbprz: Option<u8>,
    /// ANC_SUP.
    pub anc_sup: Option<bool>,
    /// DP: a provisioning group descriptor follows.
    pub dp: Option<bool>,
    /// MINIMUM PERCENTAGE (5 bits).
    pub minimum_percentage: Option<u8>,
    /// PROVISIONING TYPE.
    pub provisioning_type: Option<ProvisioningType>,
    /// THRESHOLD PERCENTAGE.
    pub threshold_percentage: Option<u8>,
}

impl LogicalBlockProvisioning {
    /// Decode a page body (bounded: fields past its end are `None`).
    pub fn decode(body: &[u8]) -> LogicalBlockProvisioning {
        let b = Fields(body);
        LogicalBlockProvisioning {
            threshold_exponent: b.u8(0),
            lbpu: b.bit(1, 7),
            lbpws: b.bit(1, 6),
            lbpws10: b.bit(1, 5),
            lbprz: b.u8(1).map(|v| (v >> 2) & 7),
            anc_sup: b.bit(1, 1),
            dp: b.bit(1, 0),
            minimum_percentage: b.u8(2).map(|v| v >> 3),
            provisioning_type: b.u8(2).map(|v| ProvisioningType(v & 7)),
            threshold_percentage: b.u8(3),
        }
    }

    /// The 4-byte page body.
    pub fn encode(&self) -> Vec<u8> {
        let flag = |v: Option<bool>, bit: u8| u8::from(v.unwrap_or(false)) << bit;
        let mut d = vec![0u8; LBP_PAGE_LEN];
        d[0] = self.threshold_exponent.unwrap_or(0);
        d[1] = flag(self.lbpu, 7)
            | flag(self.lbpws, 6)
            | flag(self.lbpws10, 5)
            | ((self.lbprz.unwrap_or(0) & 7) << 2)
            | flag(self.anc_sup, 1)
            | flag(self.dp, 0);
        d[2] = (self.minimum_percentage.unwrap_or(0) << 3) | (self.provisioning_type.map_or(0, |t| t.0) & 7);
        d[3] = self.threshold_percentage.unwrap_or(0);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_inquiry_bytes_and_prefixes() {
        let s = StandardInquiry {
            version: 0x06,
            hisup: true,
            response_data_format: 2,
            additional_length: 91,
            third_party_copy: true,
            cmdque: true,
            vendor: b"OXCOPY  ".to_vec(),
            product: b"oxcopy disk     ".to_vec(),
            revision: b"0001".to_vec(),
            version_descriptors: vec![0x00A0, 0x0460],
            ..Default::default()
        };
        let d = s.encode();
        assert_eq!(d.len(), 96);
        assert_eq!(&d[..8], &[0x00, 0x00, 0x06, 0x12, 91, 0x08, 0x00, 0x02]);
        assert_eq!((&d[8..16], &d[32..36]), (&b"OXCOPY  "[..], &b"0001"[..]));
        assert_eq!(&d[58..64], &[0x00, 0xA0, 0x04, 0x60, 0, 0]);
        assert_eq!(StandardInquiry::decode(&d), s);
        // Every prefix decodes; what it holds is what the whole data says.
        for n in 0..d.len() {
            let p = StandardInquiry::decode(&d[..n]);
            assert_eq!(p.vendor[..], d[8.min(n)..16.min(n).max(8.min(n))], "prefix {n}");
            assert_eq!(p.version_descriptors.len(), usize::from(n >= 60) + usize::from(n >= 62), "prefix {n}");
            assert_eq!(p.cmdque, n >= 8, "prefix {n}");
        }
    }

    #[test]
    fn block_limits_bytes_and_prefixes() {
        let l = BlockLimits {
            write_same_non_zero: Some(true),
            maximum_compare_and_write_length: Some(1),
            optimal_transfer_length_granularity: Some(8),
            maximum_transfer_length: Some(32768),
            optimal_transfer_length: Some(2048),
            maximum_prefetch_length: Some(3),
            maximum_unmap_lba_count: Some(4),
            maximum_unmap_block_descriptor_count: Some(5),
            optimal_unmap_granularity: Some(6),
            unmap_granularity_alignment_valid: Some(true),
            unmap_granularity_alignment: Some(7),
            maximum_write_same_length: Some(0x1_0000_0000),
            maximum_atomic_transfer_length: Some(9),
            atomic_alignment: Some(10),
            atomic_transfer_length_granularity: Some(11),
            maximum_atomic_transfer_length_with_atomic_boundary: Some(12),
            maximum_atomic_boundary_size: Some(13),
        };
        let d = l.encode();
        assert_eq!(d.len(), 0x3C);
        assert_eq!(&d[..16], &[1, 1, 0, 8, 0, 0, 0x80, 0, 0, 0, 8, 0, 0, 0, 0, 3]);
        assert_eq!(&d[16..32], &[0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6, 0x80, 0, 0, 7]);
        assert_eq!(&d[32..44], &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(&d[56..], &[0, 0, 0, 13]);
        assert_eq!(BlockLimits::decode(&d), l);
        // Each prefix: the fields it holds, and no more.
        for n in 0..d.len() {
            let p = BlockLimits::decode(&d[..n]);
            assert_eq!(p.maximum_transfer_length.is_some(), n >= 8, "prefix {n}");
            assert_eq!(p.maximum_atomic_boundary_size.is_some(), n >= 60, "prefix {n}");
            assert_eq!(BlockLimits::decode(&p.encode()[..n]), p, "prefix {n}");
        }
        assert_eq!(BlockLimits::default().encode(), vec![0u8; 0x3C]);
    }

    #[test]
    fn characteristics_bytes_and_prefixes() {
        let c = BlockDeviceCharacteristics {
            medium_rotation_rate: Some(1),
            product_type: Some(2),
            wabereq: Some(1),
            wacereq: Some(2),
            nominal_form_factor: Some(3),
            zoned: Some(1),
            fuab: Some(true),
            vbuls: Some(false),
        };
        let d = c.encode();
        assert_eq!((d.len(), &d[..5]), (0x3C, &[0, 1, 2, 0x63, 0x12][..]));
        assert_eq!(BlockDeviceCharacteristics::decode(&d), c);
        for n in 0..5 {
            let p = BlockDeviceCharacteristics::decode(&d[..n]);
            assert_eq!((p.medium_rotation_rate.is_some(), p.vbuls.is_some()), (n >= 2, false), "prefix {n}");
        }
    }

    #[test]
    fn provisioning_bytes_and_prefixes() {
        let p = LogicalBlockProvisioning {
            threshold_exponent: Some(0),
            lbpu: Some(true),
            lbpws: Some(true),
            lbpws10: Some(true),
            lbprz: Some(1),
            anc_sup: Some(false),
            dp: Some(false),
            minimum_percentage: Some(1),
            provisioning_type: Some(ProvisioningType::THIN),
            threshold_percentage: Some(9),
        };
        let d = p.encode();
        assert_eq!(d, [0, 0xE4, 0x0A, 9]);
        assert_eq!(LogicalBlockProvisioning::decode(&d), p);
        for n in 0..d.len() {
            let q = LogicalBlockProvisioning::decode(&d[..n]);
            assert_eq!((q.lbpu.is_some(), q.threshold_percentage.is_some()), (n >= 2, false), "prefix {n}");
        }
    }
}
