//! The EXTENDED COPY (LID1) parameter list (SPC-4 §6.4): header, CSCD
//! descriptors and segment descriptors — the layout constants both sides
//! use and the encoder an initiator sends. The device server's bounded
//! parser is `crate::copy::params`.
//!
//! ```text
//! header  B0 LIST IDENTIFIER  B1 bits 4:3 LIST ID USAGE, 2:0 PRIORITY
//!         B2-3 CSCD DESCRIPTOR LIST LENGTH  B8-11 SEGMENT DESCRIPTOR LIST LENGTH
//!         B12-15 INLINE DATA LENGTH
//! E4h     B0 type  B1 LU ID TYPE|PDT  B2-3 RELATIVE PORT  B4 CODE SET
//!         B5 ASSOCIATION|DESIGNATOR TYPE  B7 length  B8-27 designator
//!         B29-31 DISK BLOCK LENGTH
//! segment B0 type  B1 DC/CAT  B2-3 DESCRIPTOR LENGTH (after B3)  B4.. body
//! ```

use super::len16;

/// Length of the LID1 parameter list header.
pub const HEADER_LEN: usize = 16;
/// Length of one CSCD descriptor.
pub const CSCD_LEN: usize = 32;
/// Longest designator an identification CSCD can carry (bytes 8..27).
pub const MAX_DESIGNATOR_LEN: usize = 20;
/// CSCD ID naming the logical unit that received the EXTENDED COPY.
pub const CSCD_ID_THIS_LU: u16 = 0xFFFF;

/// Descriptor type codes.
pub struct TypeCode;

impl TypeCode {
    /// Segment: block device to block device.
    pub const BLOCK_TO_BLOCK: u8 = 0x02;
    /// Segment: verify CSCD (optionally with TEST UNIT READY).
    pub const VERIFY_CSCD: u8 = 0x07;
    /// Segment: block device with byte offset to block device with byte offset.
    pub const BLOCK_TO_BLOCK_OFFSET: u8 = 0x0A;
    /// Segment: register persistent reservation key.
    pub const REGISTER_KEY: u8 = 0x14;
    /// CSCD: identification descriptor (a VPD 83h designator).
    pub const IDENTIFICATION: u8 = 0xE4;

    /// DESCRIPTOR LENGTH (bytes after byte 3) of the segment descriptor
    /// types above; `None` for any other code.
    pub fn segment_len(ty: u8) -> Option<u16> {
        match ty {
            Self::BLOCK_TO_BLOCK | Self::REGISTER_KEY => Some(0x18),
            Self::BLOCK_TO_BLOCK_OFFSET => Some(0x1C),
            Self::VERIFY_CSCD => Some(0x08),
            _ => None,
        }
    }
}

/// LIST ID USAGE (header byte 1 bits 4:3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListIdUsage {
    /// 00b: the list identifier is valid; status (and held data) is kept
    /// for RECEIVE COPY RESULTS.
    Hold,
    /// 10b: the list identifier is valid; status is kept, no held data.
    Discard,
    /// 11b: no list identifier (it must be 0); no status is kept.
    None,
}

impl ListIdUsage {
    /// The two-bit field value.
    pub fn bits(self) -> u8 {
        match self {
            ListIdUsage::Hold => 0b00,
            ListIdUsage::Discard => 0b10,
            ListIdUsage::None => 0b11,
        }
    }

    /// Decode the two-bit field; `None` for the reserved 01b.
    pub fn from_bits(bits: u8) -> Option<Self> {
        match bits & 0x03 {
            0b00 => Some(ListIdUsage::Hold),
            0b10 => Some(ListIdUsage::Discard),
            0b11 => Some(ListIdUsage::None),
            _ => None,
        }
    }
}

/// A VPD 83h designator as an identification CSCD carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Designator {
    /// CODE SET (CSCD byte 4 bits 3:0; the protocol identifier nibble is masked).
    pub code_set: u8,
    /// ASSOCIATION and DESIGNATOR TYPE (CSCD byte 5 bits 5:0; PIV masked).
    pub assoc_type: u8,
    /// The designator bytes (at most [`MAX_DESIGNATOR_LEN`] fit a CSCD).
    pub value: Vec<u8>,
}

/// An identification (E4h) CSCD descriptor for a block device, to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cscd {
    /// Which logical unit.
    pub designator: Designator,
    /// DISK BLOCK LENGTH; 0 = the logical unit's own.
    pub block_len: u32,
    /// PERIPHERAL DEVICE TYPE (0 = block device).
    pub pdt: u8,
    /// LU ID TYPE (0 = LUN; ignored by SPC-4 targets for E4h).
    pub lu_id_type: u8,
}

impl Cscd {
    /// A block-device CSCD for `designator` (block length 0: the LU's own).
    pub fn new(designator: Designator, block_len: u32) -> Self {
        Cscd { designator, block_len, pdt: 0, lu_id_type: 0 }
    }

    /// The 32 bytes of the descriptor (a designator over 20 bytes is cut).
    pub fn encode(&self) -> [u8; CSCD_LEN] {
        let mut d = [0u8; CSCD_LEN];
        d[0] = TypeCode::IDENTIFICATION;
        d[1] = (self.lu_id_type & 0x03) << 6 | (self.pdt & 0x1F);
        d[4] = self.designator.code_set & 0x0F;
        d[5] = self.designator.assoc_type & 0x3F;
        let n = self.designator.value.len().min(MAX_DESIGNATOR_LEN);
        d[7] = n as u8;
        d[8..8 + n].copy_from_slice(&self.designator.value[..n]);
        d[29..32].copy_from_slice(&self.block_len.to_be_bytes()[1..]);
        d
    }
}

/// A segment descriptor, to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// 02h block → block: `blocks` source blocks (destination blocks with `dc`).
    BlockToBlock {
        /// Source CSCD ID (index into the CSCD list, or [`CSCD_ID_THIS_LU`]).
        src: u16,
        /// Destination CSCD ID.
        dst: u16,
        /// DC: count in destination blocks.
        dc: bool,
        /// NUMBER OF BLOCKS.
        blocks: u16,
        /// SOURCE BLOCK DEVICE LBA.
        src_lba: u64,
        /// DESTINATION BLOCK DEVICE LBA.
        dst_lba: u64,
    },
    /// 0Ah block with byte offset → block with byte offset.
    BlockToBlockOffset {
        /// Source CSCD ID.
        src: u16,
        /// Destination CSCD ID.
        dst: u16,
        /// NUMBER OF BYTES.
        bytes: u32,
        /// SOURCE BLOCK DEVICE LBA.
        src_lba: u64,
        /// DESTINATION BLOCK DEVICE LBA.
        dst_lba: u64,
        /// SOURCE BYTE OFFSET into that block.
        src_offset: u16,
        /// DESTINATION BYTE OFFSET into that block.
        dst_offset: u16,
    },
    /// 07h verify CSCD (with TEST UNIT READY when `tur`).
    Verify {
        /// CSCD ID to verify.
        src: u16,
        /// TUR bit.
        tur: bool,
    },
    /// 14h register persistent reservation key: the copy manager's I_T
    /// nexus to `dst` is registered (PERSISTENT RESERVE OUT REGISTER).
    RegisterKey {
        /// Destination CSCD ID.
        dst: u16,
        /// RESERVATION KEY (the current key, 0 when not registered).
        key: u64,
        /// SERVICE ACTION RESERVATION KEY (the new key; 0 unregisters).
        sa_key: u64,
    },
}

impl Segment {
    /// The segment descriptor type code.
    pub fn type_code(&self) -> u8 {
        match self {
            Segment::BlockToBlock { .. } => TypeCode::BLOCK_TO_BLOCK,
            Segment::BlockToBlockOffset { .. } => TypeCode::BLOCK_TO_BLOCK_OFFSET,
            Segment::Verify { .. } => TypeCode::VERIFY_CSCD,
            Segment::RegisterKey { .. } => TypeCode::REGISTER_KEY,
        }
    }

    /// The descriptor bytes.
    pub fn encode(&self) -> Vec<u8> {
        let ty = self.type_code();
        let len = TypeCode::segment_len(ty).unwrap_or(0);
        let mut d = vec![0u8; 4 + usize::from(len)];
        d[0] = ty;
        d[2..4].copy_from_slice(&len.to_be_bytes());
        match *self {
            Segment::BlockToBlock { src, dst, dc, blocks, src_lba, dst_lba } => {
                d[1] = if dc { 0x02 } else { 0 };
                d[4..6].copy_from_slice(&src.to_be_bytes());
                d[6..8].copy_from_slice(&dst.to_be_bytes());
                d[10..12].copy_from_slice(&blocks.to_be_bytes());
                d[12..20].copy_from_slice(&src_lba.to_be_bytes());
                d[20..28].copy_from_slice(&dst_lba.to_be_bytes());
            }
            Segment::BlockToBlockOffset { src, dst, bytes, src_lba, dst_lba, src_offset, dst_offset } => {
                d[4..6].copy_from_slice(&src.to_be_bytes());
                d[6..8].copy_from_slice(&dst.to_be_bytes());
                d[8..12].copy_from_slice(&bytes.to_be_bytes());
                d[12..20].copy_from_slice(&src_lba.to_be_bytes());
                d[20..28].copy_from_slice(&dst_lba.to_be_bytes());
                d[28..30].copy_from_slice(&src_offset.to_be_bytes());
                d[30..32].copy_from_slice(&dst_offset.to_be_bytes());
            }
            Segment::RegisterKey { dst, key, sa_key } => {
                d[6..8].copy_from_slice(&dst.to_be_bytes());
                d[8..16].copy_from_slice(&key.to_be_bytes());
                d[16..24].copy_from_slice(&sa_key.to_be_bytes());
            }
            Segment::Verify { src, tur } => {
                d[4..6].copy_from_slice(&src.to_be_bytes());
                d[8] = u8::from(tur);
            }
        }
        d
    }
}

/// An EXTENDED COPY (LID1) parameter list, to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamList {
    /// LIST IDENTIFIER.
    pub list_id: u8,
    /// LIST ID USAGE.
    pub usage: ListIdUsage,
    /// CSCD descriptors (segments refer to them by index).
    pub cscds: Vec<Cscd>,
    /// Segment descriptors, processed in order.
    pub segments: Vec<Segment>,
}

impl ParamList {
    /// The parameter list bytes: header, CSCDs, segments (no inline data).
    pub fn encode(&self) -> Vec<u8> {
        let cscds: Vec<u8> = self.cscds.iter().flat_map(|c| c.encode()).collect();
        let segs: Vec<u8> = self.segments.iter().flat_map(|s| s.encode()).collect();
        let mut l = vec![0u8; HEADER_LEN];
        l[0] = self.list_id;
        l[1] = self.usage.bits() << 3;
        l[2..4].copy_from_slice(&len16(cscds.len()));
        l[8..12].copy_from_slice(&u32::try_from(segs.len()).unwrap_or(u32::MAX).to_be_bytes());
        l.extend(cscds);
        l.extend(segs);
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_usage_bits_round_trip() {
        for u in [ListIdUsage::Hold, ListIdUsage::Discard, ListIdUsage::None] {
            assert_eq!(ListIdUsage::from_bits(u.bits()), Some(u));
        }
        assert_eq!(ListIdUsage::from_bits(0b01), None);
    }

    #[test]
    fn list_layout() {
        let d = Designator { code_set: 0x51, assoc_type: 0x83, value: vec![0x60; 16] };
        let l = ParamList {
            list_id: 5,
            usage: ListIdUsage::Discard,
            cscds: vec![Cscd::new(d, 512)],
            segments: vec![
                Segment::BlockToBlock { src: 0, dst: CSCD_ID_THIS_LU, dc: true, blocks: 3, src_lba: 1, dst_lba: 2 },
                Segment::Verify { src: 0, tur: true },
            ],
        };
        let b = l.encode();
        assert_eq!(b.len(), 16 + 32 + 28 + 12);
        assert_eq!(&b[..16], &[5, 0x10, 0, 32, 0, 0, 0, 0, 0, 0, 0, 40, 0, 0, 0, 0]);
        // CSCD: protocol nibble and PIV masked; block length in bytes 29..31.
        assert_eq!(&b[16..24], &[0xE4, 0, 0, 0, 0x01, 0x03, 0, 16]);
        assert_eq!(&b[45..48], &[0, 2, 0]);
        assert_eq!(&b[48..56], &[0x02, 0x02, 0, 0x18, 0, 0, 0xFF, 0xFF]);
        assert_eq!(&b[56..76], &[0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(&b[76..], &[0x07, 0, 0, 8, 0, 0, 0, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn offset_and_register_key_segments() {
        let o = Segment::BlockToBlockOffset {
            src: 1,
            dst: 2,
            bytes: 0x0304,
            src_lba: 5,
            dst_lba: 6,
            src_offset: 7,
            dst_offset: 8,
        }
        .encode();
        assert_eq!(o.len(), 32);
        assert_eq!(&o[..12], &[0x0A, 0, 0, 0x1C, 0, 1, 0, 2, 0, 0, 3, 4]);
        assert_eq!(&o[28..], &[0, 7, 0, 8]);
        let r = Segment::RegisterKey { dst: 0xFFFF, key: 7, sa_key: 9 }.encode();
        assert_eq!(r.len(), 28);
        assert_eq!(&r[..8], &[0x14, 0, 0, 0x18, 0, 0, 0xFF, 0xFF]);
        assert_eq!((r[15], r[23]), (7, 9));
    }
}
