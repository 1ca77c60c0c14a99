//! NVM command set layouts (NVM Command Set 1.0–1.2): the command dword
//! fields of the I/O commands served here, the 16-byte Dataset Management
//! range, and the Copy source range descriptors of formats 0h–3h. Parsers
//! for the target, builders for the host tool; everything little-endian.
//!
//! Descriptor layouts (bytes, inclusive; libnvme `nvme_copy_range_f0..f3`
//! and NVM Command Set 1.2 figures 39–40 agree):
//!
//! ```text
//! Format 0h (32 B): 0-7 rsvd | 8-15 SLBA | 16-17 NLB (0's based) | 18 CETYPE (bits 3:0)
//!                   | 19 rsvd | 20-21 CEV | 22-23 rsvd | 24-27 ELBT | 28-29 ELBAT | 30-31 ELBATM
//! Format 2h (32 B): 0-3 SNSID | 4-7 rsvd | as 0h, with 22-23 SOPT (bit 15 FCO)
//! Format 1h (40 B): 0-7 rsvd | 8-15 SLBA | 16-17 NLB | 18 CETYPE | 19 rsvd | 20-21 CEV
//!                   | 22-25 rsvd | 26-35 ELBT | 36-37 ELBAT | 38-39 ELBATM
//! Format 3h (40 B): 0-3 SNSID | 4-7 rsvd | as 1h, with 22-23 SOPT and 24-25 rsvd
//! ```
//!
//! A Dataset Management range (16 B): 0-3 context attributes, 4-7 length in
//! logical blocks (**not** 0's based), 8-15 starting LBA.

use crate::wire::command::{Opcode, Sgl, SglType, Sqe};
use std::fmt;

/// Size of one Dataset Management range.
pub const DSM_RANGE_LEN: usize = 16;
/// Most ranges one Dataset Management command carries (NR is 8 bits, 0's based).
pub const DSM_MAX_RANGES: usize = 256;
/// Most source ranges one Copy command carries (NR is 8 bits, 0's based).
pub const COPY_MAX_RANGES: usize = 256;

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Command Dword 12 of Read, Write, Compare, Verify and Write Zeroes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RwControl {
    /// Number of logical blocks, 0's based (bits 15:0).
    pub nlb: u16,
    /// Command Extension Type (bits 19:16, Key Per I/O).
    pub cetype: u8,
    /// Directive Type (bits 23:20; Write only).
    pub dtype: u8,
    /// Storage Tag Check (bit 24).
    pub stc: bool,
    /// Deallocate (bit 25; Write Zeroes only).
    pub deac: bool,
    /// Protection Information field (bits 29:26: PRACT bit 29, PRCHK 28:26).
    pub prinfo: u8,
    /// Force Unit Access (bit 30).
    pub fua: bool,
    /// Limited Retry (bit 31).
    pub lr: bool,
}

impl RwControl {
    /// From the dword.
    pub fn from_cdw12(v: u32) -> Self {
        Self {
            nlb: (v & 0xFFFF) as u16,
            cetype: ((v >> 16) & 0xF) as u8,
            dtype: ((v >> 20) & 0xF) as u8,
            stc: v & (1 << 24) != 0,
            deac: v & (1 << 25) != 0,
            prinfo: ((v >> 26) & 0xF) as u8,
            fua: v & (1 << 30) != 0,
            lr: v & (1 << 31) != 0,
        }
    }
    /// To the dword.
    pub fn to_cdw12(self) -> u32 {
        u32::from(self.nlb)
            | u32::from(self.cetype & 0xF) << 16
            | u32::from(self.dtype & 0xF) << 20
            | u32::from(self.stc) << 24
            | u32::from(self.deac) << 25
            | u32::from(self.prinfo & 0xF) << 26
            | u32::from(self.fua) << 30
            | u32::from(self.lr) << 31
    }
    /// Logical blocks (1-based): `nlb + 1`.
    pub fn blocks(self) -> u32 {
        u32::from(self.nlb) + 1
    }
}

/// Copy descriptor format (CDW12 DESFMT).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CopyFormat(pub u8);

impl CopyFormat {
    /// 32-byte descriptors, source in the destination namespace.
    pub const F0: Self = Self(0);
    /// 40-byte descriptors (32b/64b guard PI), source in the destination namespace.
    pub const F1: Self = Self(1);
    /// 32-byte descriptors with a source namespace (SNSID).
    pub const F2: Self = Self(2);
    /// 40-byte descriptors with a source namespace (SNSID).
    pub const F3: Self = Self(3);

    /// Descriptor size for formats 0h–3h; `None` for any other format.
    pub fn desc_len(self) -> Option<usize> {
        match self.0 {
            0 | 2 => Some(32),
            1 | 3 => Some(40),
            _ => None,
        }
    }
    /// Whether descriptors carry SNSID and SOPT (formats 2h and 3h).
    pub fn has_snsid(self) -> bool {
        self.0 == 2 || self.0 == 3
    }
    /// This format's bit in OCFS / CDFE bit masks (`None` past bit 15).
    pub fn bit(self) -> Option<u16> {
        1u16.checked_shl(u32::from(self.0))
    }
}

impl fmt::Debug for CopyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CopyFormat({:#x})", self.0)
    }
}

/// Command Dword 12 of Copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CopyControl {
    /// Number of ranges, 0's based (bits 7:0).
    pub nr: u8,
    /// Descriptor format (bits 11:8).
    pub desfmt: u8,
    /// Protection Information Read (bits 15:12).
    pub prinfor: u8,
    /// Command Extension Type (bits 19:16).
    pub cetype: u8,
    /// Directive Type (bits 23:20).
    pub dtype: u8,
    /// Storage Tag Check Write (bit 24).
    pub stcw: bool,
    /// Storage Tag Check Read (bit 25).
    pub stcr: bool,
    /// Protection Information Write (bits 29:26).
    pub prinfow: u8,
    /// Force Unit Access (bit 30).
    pub fua: bool,
    /// Limited Retry (bit 31).
    pub lr: bool,
}

impl CopyControl {
    /// From the dword.
    pub fn from_cdw12(v: u32) -> Self {
        Self {
            nr: (v & 0xFF) as u8,
            desfmt: ((v >> 8) & 0xF) as u8,
            prinfor: ((v >> 12) & 0xF) as u8,
            cetype: ((v >> 16) & 0xF) as u8,
            dtype: ((v >> 20) & 0xF) as u8,
            stcw: v & (1 << 24) != 0,
            stcr: v & (1 << 25) != 0,
            prinfow: ((v >> 26) & 0xF) as u8,
            fua: v & (1 << 30) != 0,
            lr: v & (1 << 31) != 0,
        }
    }
    /// To the dword.
    pub fn to_cdw12(self) -> u32 {
        u32::from(self.nr)
            | u32::from(self.desfmt & 0xF) << 8
            | u32::from(self.prinfor & 0xF) << 12
            | u32::from(self.cetype & 0xF) << 16
            | u32::from(self.dtype & 0xF) << 20
            | u32::from(self.stcw) << 24
            | u32::from(self.stcr) << 25
            | u32::from(self.prinfow & 0xF) << 26
            | u32::from(self.fua) << 30
            | u32::from(self.lr) << 31
    }
    /// Number of ranges (1-based): `nr + 1`.
    pub fn ranges(self) -> usize {
        usize::from(self.nr) + 1
    }
    /// The descriptor format.
    pub fn format(self) -> CopyFormat {
        CopyFormat(self.desfmt)
    }
}

/// Dataset Management attributes (CDW11).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DsmAttributes(pub u32);

impl DsmAttributes {
    /// Integral Dataset for Read (bit 0).
    pub const IDR: Self = Self(1 << 0);
    /// Integral Dataset for Write (bit 1).
    pub const IDW: Self = Self(1 << 1);
    /// Deallocate (bit 2).
    pub const AD: Self = Self(1 << 2);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    /// Both sets of bits.
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl fmt::Debug for DsmAttributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DsmAttributes({:#x})", self.0)
    }
}

/// One Dataset Management range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DsmRange {
    /// Context attributes (bytes 0-3), advisory.
    pub cattr: u32,
    /// Length in logical blocks (bytes 4-7; a count, not 0's based).
    pub blocks: u32,
    /// Starting LBA (bytes 8-15).
    pub slba: u64,
}

impl DsmRange {
    /// The 16 bytes.
    pub fn encode(&self) -> [u8; DSM_RANGE_LEN] {
        let mut b = [0u8; DSM_RANGE_LEN];
        b[0..4].copy_from_slice(&self.cattr.to_le_bytes());
        b[4..8].copy_from_slice(&self.blocks.to_le_bytes());
        b[8..16].copy_from_slice(&self.slba.to_le_bytes());
        b
    }
    /// From the first 16 bytes of `b`; `None` when shorter.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let b = b.get(..DSM_RANGE_LEN)?;
        Some(Self { cattr: le32(b, 0), blocks: le32(b, 4), slba: le64(b, 8) })
    }
}

/// Why a list of ranges or descriptors did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// The data holds fewer bytes than the count needs.
    #[error("{need} bytes of ranges needed, {got} present")]
    Short {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        got: usize,
    },
    /// More ranges than the command can carry.
    #[error("{0} ranges: more than a command carries")]
    TooMany(usize),
    /// The descriptor format is not 0h–3h.
    #[error("descriptor format {0:?} has no layout here")]
    Format(CopyFormat),
}

/// `count` Dataset Management ranges from `data` (trailing bytes ignored).
pub fn decode_dsm_ranges(data: &[u8], count: usize) -> Result<Vec<DsmRange>, ListError> {
    if count > DSM_MAX_RANGES {
        return Err(ListError::TooMany(count));
    }
    let need = count * DSM_RANGE_LEN;
    if data.len() < need {
        return Err(ListError::Short { need, got: data.len() });
    }
    Ok(data[..need].chunks_exact(DSM_RANGE_LEN).filter_map(DsmRange::decode).collect())
}

/// The ranges laid end to end.
pub fn encode_dsm_ranges(ranges: &[DsmRange]) -> Vec<u8> {
    ranges.iter().flat_map(|r| r.encode()).collect()
}

/// One Copy source range descriptor (any of formats 0h–3h; fields a format
/// lacks are zero when decoded and not written when encoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CopyRange {
    /// Source namespace (formats 2h/3h, bytes 0-3).
    pub snsid: u32,
    /// Starting LBA (bytes 8-15).
    pub slba: u64,
    /// Number of logical blocks, 0's based (bytes 16-17).
    pub nlb: u16,
    /// Command Extension Type (byte 18 bits 3:0).
    pub cetype: u8,
    /// Command Extension Value (bytes 20-21).
    pub cev: u16,
    /// Source options (formats 2h/3h, bytes 22-23): bit 15 Fast Copy Only.
    pub sopt: u16,
    /// Expected logical block tags: 4 bytes (24-27) in formats 0h/2h, 10
    /// bytes (26-35) in formats 1h/3h; kept as bytes, unused without PI.
    pub elbt: [u8; 10],
    /// Expected logical block application tag.
    pub elbat: u16,
    /// Expected logical block application tag mask.
    pub elbatm: u16,
}

/// SOPT bit 15: Fast Copy Only.
pub const SOPT_FCO: u16 = 1 << 15;

impl CopyRange {
    /// A range of `blocks` (1..=65536) blocks at `slba` of namespace `snsid`
    /// (ignored by formats 0h/1h); `None` when `blocks` does not fit NLB.
    pub fn new(snsid: u32, slba: u64, blocks: u32) -> Option<Self> {
        let nlb = u16::try_from(blocks.checked_sub(1)?).ok()?;
        Some(Self { snsid, slba, nlb, ..Self::default() })
    }
    /// Logical blocks (1-based): `nlb + 1`.
    pub fn blocks(&self) -> u32 {
        u32::from(self.nlb) + 1
    }
    /// Whether Fast Copy Only is set (formats 2h/3h).
    pub fn fco(&self) -> bool {
        self.sopt & SOPT_FCO != 0
    }

    /// Encode into `out` (at least the format's descriptor size); `None`
    /// for a format without a layout or a short buffer.
    pub fn encode_into(&self, format: CopyFormat, out: &mut [u8]) -> Option<()> {
        let len = format.desc_len()?;
        let b = out.get_mut(..len)?;
        b.fill(0);
        if format.has_snsid() {
            b[0..4].copy_from_slice(&self.snsid.to_le_bytes());
            b[22..24].copy_from_slice(&self.sopt.to_le_bytes());
        }
        b[8..16].copy_from_slice(&self.slba.to_le_bytes());
        b[16..18].copy_from_slice(&self.nlb.to_le_bytes());
        b[18] = self.cetype & 0xF;
        b[20..22].copy_from_slice(&self.cev.to_le_bytes());
        let tags = if len == 32 { 24 } else { 26 };
        let elbt_len = if len == 32 { 4 } else { 10 };
        b[tags..tags + elbt_len].copy_from_slice(&self.elbt[..elbt_len]);
        b[tags + elbt_len..tags + elbt_len + 2].copy_from_slice(&self.elbat.to_le_bytes());
        b[tags + elbt_len + 2..tags + elbt_len + 4].copy_from_slice(&self.elbatm.to_le_bytes());
        Some(())
    }

    /// The descriptor's bytes.
    pub fn encode(&self, format: CopyFormat) -> Option<Vec<u8>> {
        let mut v = vec![0u8; format.desc_len()?];
        self.encode_into(format, &mut v)?;
        Some(v)
    }

    /// From the first descriptor in `b`; `None` for a format without a
    /// layout or fewer bytes than one descriptor.
    pub fn decode(format: CopyFormat, b: &[u8]) -> Option<Self> {
        let len = format.desc_len()?;
        let b = b.get(..len)?;
        let (tags, elbt_len) = if len == 32 { (24, 4) } else { (26, 10) };
        let mut elbt = [0u8; 10];
        elbt[..elbt_len].copy_from_slice(&b[tags..tags + elbt_len]);
        let snsid_fmt = format.has_snsid();
        Some(Self {
            snsid: if snsid_fmt { le32(b, 0) } else { 0 },
            slba: le64(b, 8),
            nlb: le16(b, 16),
            cetype: b[18] & 0xF,
            cev: le16(b, 20),
            sopt: if snsid_fmt { le16(b, 22) } else { 0 },
            elbt,
            elbat: le16(b, tags + elbt_len),
            elbatm: le16(b, tags + elbt_len + 2),
        })
    }
}

/// `count` descriptors of `format` from `data` (trailing bytes ignored).
/// The count is bounded before anything is allocated.
pub fn decode_copy_ranges(format: CopyFormat, data: &[u8], count: usize) -> Result<Vec<CopyRange>, ListError> {
    let len = format.desc_len().ok_or(ListError::Format(format))?;
    if count > COPY_MAX_RANGES {
        return Err(ListError::TooMany(count));
    }
    let need = count * len;
    if data.len() < need {
        return Err(ListError::Short { need, got: data.len() });
    }
    Ok(data[..need].chunks_exact(len).filter_map(|d| CopyRange::decode(format, d)).collect())
}

/// The descriptors laid end to end; `None` for a format without a layout.
pub fn encode_copy_ranges(format: CopyFormat, ranges: &[CopyRange]) -> Option<Vec<u8>> {
    let len = format.desc_len()?;
    let mut out = vec![0u8; len * ranges.len()];
    for (r, chunk) in ranges.iter().zip(out.chunks_exact_mut(len)) {
        r.encode_into(format, chunk)?;
    }
    Some(out)
}

// Builders: submission queue entries for the host tool and tests. Each sets
// a transport SGL data block descriptor of the command's data length; the
// host transport may replace it (in-capsule data) with [`Sqe::set_sgl`].

fn with_data(mut s: Sqe, len: u32) -> Sqe {
    s.set_sgl(Sgl { addr: 0, len, kind: SglType::TRANSPORT_DATA_BLOCK });
    s
}

/// A Read, Write, Compare or Verify of `blocks` (1..=65536) blocks at `slba`
/// with data length `blocks * block_size` (0 for Verify, which moves no
/// data); `None` when `blocks` is out of range or the length overflows.
pub fn rw_sqe(opcode: Opcode, cid: u16, nsid: u32, slba: u64, blocks: u32, block_size: u32, fua: bool) -> Option<Sqe> {
    let nlb = u16::try_from(blocks.checked_sub(1)?).ok()?;
    let mut s = Sqe::new(opcode, cid, nsid);
    s.set_cdw10_11(slba);
    s.set_cdw(12, RwControl { nlb, fua, ..RwControl::default() }.to_cdw12());
    let len = if opcode == Opcode::VERIFY { 0 } else { blocks.checked_mul(block_size)? };
    Some(with_data(s, len))
}

/// A Write Zeroes of `blocks` (1..=65536) blocks at `slba`; `deallocate`
/// sets DEAC.
pub fn write_zeroes_sqe(cid: u16, nsid: u32, slba: u64, blocks: u32, deallocate: bool, fua: bool) -> Option<Sqe> {
    let nlb = u16::try_from(blocks.checked_sub(1)?).ok()?;
    let mut s = Sqe::new(Opcode::WRITE_ZEROES, cid, nsid);
    s.set_cdw10_11(slba);
    s.set_cdw(12, RwControl { nlb, deac: deallocate, fua, ..RwControl::default() }.to_cdw12());
    Some(s)
}

/// A Flush.
pub fn flush_sqe(cid: u16, nsid: u32) -> Sqe {
    Sqe::new(Opcode::FLUSH, cid, nsid)
}

/// A Dataset Management of `ranges` (1..=256) ranges with `attrs`.
pub fn dsm_sqe(cid: u16, nsid: u32, ranges: usize, attrs: DsmAttributes) -> Option<Sqe> {
    let nr = u8::try_from(ranges.checked_sub(1)?).ok()?;
    let mut s = Sqe::new(Opcode::DATASET_MANAGEMENT, cid, nsid);
    s.set_cdw(10, u32::from(nr));
    s.set_cdw(11, attrs.0);
    Some(with_data(s, (ranges * DSM_RANGE_LEN) as u32))
}

/// A Copy of `ranges` (1..=256) descriptors of `format` to `sdlba` of
/// namespace `nsid`.
pub fn copy_sqe(cid: u16, nsid: u32, sdlba: u64, ranges: usize, format: CopyFormat, fua: bool) -> Option<Sqe> {
    let nr = u8::try_from(ranges.checked_sub(1)?).ok()?;
    let len = format.desc_len()?;
    let mut s = Sqe::new(Opcode::COPY, cid, nsid);
    s.set_cdw10_11(sdlba);
    s.set_cdw(12, CopyControl { nr, desfmt: format.0, fua, ..CopyControl::default() }.to_cdw12());
    Some(with_data(s, (ranges * len) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn format0_bytes() {
        let r = CopyRange {
            snsid: 0xDEAD_BEEF, // not in format 0h
            slba: 0x0102_0304_0506_0708,
            nlb: 0x0A0B,
            cetype: 0x3,
            cev: 0x1122,
            sopt: SOPT_FCO, // not in format 0h
            elbt: [0xE0, 0xE1, 0xE2, 0xE3, 0, 0, 0, 0, 0, 0],
            elbat: 0x3344,
            elbatm: 0x5566,
        };
        let b = r.encode(CopyFormat::F0).unwrap();
        let want: [u8; 32] = [
            0, 0, 0, 0, 0, 0, 0, 0, // reserved
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // SLBA
            0x0B, 0x0A, // NLB
            0x03, 0, // CETYPE, reserved
            0x22, 0x11, // CEV
            0, 0, // reserved (SOPT only in 2h)
            0xE0, 0xE1, 0xE2, 0xE3, // ELBT
            0x44, 0x33, 0x66, 0x55, // ELBAT, ELBATM
        ];
        assert_eq!(b, want);
        let d = CopyRange::decode(CopyFormat::F0, &b).unwrap();
        assert_eq!(d, CopyRange { snsid: 0, sopt: 0, ..r });
        assert_eq!(d.blocks(), 0x0A0C);
    }

    #[test]
    fn format2_bytes() {
        let r = CopyRange { snsid: 7, slba: 100, nlb: 3, sopt: SOPT_FCO, ..CopyRange::default() };
        let b = r.encode(CopyFormat::F2).unwrap();
        assert_eq!(b.len(), 32);
        assert_eq!(&b[0..4], &[7, 0, 0, 0]);
        assert_eq!(&b[8..16], &100u64.to_le_bytes());
        assert_eq!(&b[16..18], &[3, 0]);
        assert_eq!(&b[22..24], &[0x00, 0x80]);
        assert!(CopyRange::decode(CopyFormat::F2, &b).unwrap().fco());
        // Format 0h reads the same bytes without SNSID and SOPT.
        let as0 = CopyRange::decode(CopyFormat::F0, &b).unwrap();
        assert_eq!((as0.snsid, as0.sopt, as0.slba, as0.nlb), (0, 0, 100, 3));
    }

    #[test]
    fn format1_and_3_bytes() {
        let elbt = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        let r = CopyRange {
            snsid: 9,
            slba: 5,
            nlb: 1,
            sopt: 0x8001,
            elbt,
            elbat: 0xAABB,
            elbatm: 0xCCDD,
            ..Default::default()
        };
        let b1 = r.encode(CopyFormat::F1).unwrap();
        assert_eq!(b1.len(), 40);
        assert_eq!(&b1[0..8], &[0; 8]);
        assert_eq!(&b1[22..26], &[0; 4]);
        assert_eq!(&b1[26..36], &elbt);
        assert_eq!(&b1[36..40], &[0xBB, 0xAA, 0xDD, 0xCC]);
        let b3 = r.encode(CopyFormat::F3).unwrap();
        assert_eq!(&b3[0..4], &[9, 0, 0, 0]);
        assert_eq!(&b3[22..24], &[0x01, 0x80]);
        assert_eq!(&b3[24..26], &[0, 0]);
        assert_eq!(&b3[26..36], &elbt);
        assert_eq!(CopyRange::decode(CopyFormat::F3, &b3), Some(r));
        assert!(CopyRange::encode(&r, CopyFormat(4)).is_none());
    }

    #[test]
    fn dsm_range_bytes() {
        let r = DsmRange { cattr: 0x0102_0304, blocks: 0x10, slba: 0x1122_3344_5566_7788 };
        let b = r.encode();
        assert_eq!(b, [4, 3, 2, 1, 0x10, 0, 0, 0, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
        assert_eq!(DsmRange::decode(&b), Some(r));
    }

    #[test]
    fn every_prefix_of_a_list_is_an_error_not_a_panic() {
        for format in [CopyFormat::F0, CopyFormat::F1, CopyFormat::F2, CopyFormat::F3] {
            let ranges: Vec<CopyRange> = (0..3).map(|i| CopyRange::new(1, i * 10, 5).unwrap()).collect();
            let data = encode_copy_ranges(format, &ranges).unwrap();
            for n in 0..data.len() {
                assert!(matches!(decode_copy_ranges(format, &data[..n], 3), Err(ListError::Short { .. })));
                for k in 0..n {
                    let _ = CopyRange::decode(format, &data[k..n]);
                }
            }
            assert_eq!(decode_copy_ranges(format, &data, 3).unwrap().len(), 3);
        }
        let data = encode_dsm_ranges(&[DsmRange { cattr: 0, blocks: 1, slba: 2 }; 2]);
        for n in 0..data.len() {
            assert!(decode_dsm_ranges(&data[..n], 2).is_err());
        }
        assert!(matches!(decode_copy_ranges(CopyFormat(5), &[0; 64], 1), Err(ListError::Format(_))));
        assert!(matches!(decode_copy_ranges(CopyFormat::F0, &[], 257), Err(ListError::TooMany(257))));
    }

    #[test]
    fn builders() {
        let s = rw_sqe(Opcode::WRITE, 3, 1, 0x1_0000_0000, 8, 512, true).unwrap();
        assert_eq!(s.cdw10_11(), 0x1_0000_0000);
        assert_eq!(RwControl::from_cdw12(s.cdw(12)), RwControl { nlb: 7, fua: true, ..Default::default() });
        assert_eq!(s.sgl().len, 4096);
        assert!(rw_sqe(Opcode::READ, 0, 1, 0, 0, 512, false).is_none());
        assert!(rw_sqe(Opcode::READ, 0, 1, 0, 65537, 512, false).is_none());
        assert_eq!(rw_sqe(Opcode::READ, 0, 1, 0, 65536, 4096, false).unwrap().sgl().len, 1 << 28);
        let c = copy_sqe(1, 2, 77, 3, CopyFormat::F2, false).unwrap();
        let cc = CopyControl::from_cdw12(c.cdw(12));
        assert_eq!((cc.ranges(), cc.format(), c.cdw10_11(), c.sgl().len), (3, CopyFormat::F2, 77, 96));
        let wz = write_zeroes_sqe(1, 1, 9, 2, true, false).unwrap();
        assert!(RwControl::from_cdw12(wz.cdw(12)).deac);
        assert_eq!(wz.cdw(12) & (1 << 25), 1 << 25);
        let d = dsm_sqe(1, 1, 256, DsmAttributes::AD).unwrap();
        assert_eq!((d.cdw(10), d.cdw(11), d.sgl().len), (255, 4, 4096));
        assert!(dsm_sqe(1, 1, 257, DsmAttributes::AD).is_none());
    }

    fn any_range() -> impl Strategy<Value = CopyRange> {
        (
            any::<u32>(),
            any::<u64>(),
            any::<u16>(),
            0u8..16,
            any::<u16>(),
            any::<u16>(),
            any::<[u8; 10]>(),
            any::<u16>(),
            any::<u16>(),
        )
            .prop_map(|(snsid, slba, nlb, cetype, cev, sopt, elbt, elbat, elbatm)| CopyRange {
                snsid,
                slba,
                nlb,
                cetype,
                cev,
                sopt,
                elbt,
                elbat,
                elbatm,
            })
    }

    /// What a format keeps of a range.
    fn kept(format: CopyFormat, r: CopyRange) -> CopyRange {
        let mut k = r;
        if !format.has_snsid() {
            k.snsid = 0;
            k.sopt = 0;
        }
        if format.desc_len() == Some(32) {
            k.elbt[4..].fill(0);
        }
        k
    }

    proptest! {
        #[test]
        fn copy_ranges_round_trip(fmt in 0u8..4, ranges in proptest::collection::vec(any_range(), 1..20)) {
            let format = CopyFormat(fmt);
            let data = encode_copy_ranges(format, &ranges).unwrap();
            prop_assert_eq!(data.len(), ranges.len() * format.desc_len().unwrap());
            let back = decode_copy_ranges(format, &data, ranges.len()).unwrap();
            let want: Vec<_> = ranges.iter().map(|r| kept(format, *r)).collect();
            prop_assert_eq!(back, want);
        }

        #[test]
        fn decoders_never_panic(fmt in any::<u8>(), data in proptest::collection::vec(any::<u8>(), 0..200), count in 0usize..300) {
            let _ = decode_copy_ranges(CopyFormat(fmt), &data, count);
            let _ = decode_dsm_ranges(&data, count);
        }

        #[test]
        fn dsm_round_trip(ranges in proptest::collection::vec((any::<u32>(), any::<u32>(), any::<u64>()), 1..40)) {
            let ranges: Vec<DsmRange> = ranges.into_iter().map(|(cattr, blocks, slba)| DsmRange { cattr, blocks, slba }).collect();
            let data = encode_dsm_ranges(&ranges);
            prop_assert_eq!(decode_dsm_ranges(&data, ranges.len()).unwrap(), ranges);
        }

        #[test]
        fn control_dwords_round_trip(v in any::<u32>()) {
            prop_assert_eq!(CopyControl::from_cdw12(v).to_cdw12(), v);
            prop_assert_eq!(RwControl::from_cdw12(v).to_cdw12(), v);
        }
    }
}
