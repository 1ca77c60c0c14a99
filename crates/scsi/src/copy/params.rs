//! The EXTENDED COPY (LID1) parameter list: header, CSCD descriptors and
//! segment descriptors, parsed from untrusted bytes into typed values.
//!
//! # Validation order (copy-offload digest §2.3, libiscsi's ExtendedCopy suite)
//! 1. PARAMETER LIST LENGTH 0: nothing to do (GOOD). Shorter than the
//!    16-byte header: INVALID FIELD IN CDB pointing at the length field.
//! 2. Longer than the header plus MAXIMUM DESCRIPTOR LIST LENGTH plus
//!    MAXIMUM INLINE DATA LENGTH: PARAMETER LIST LENGTH ERROR. (FreeBSD CTL
//!    answers INVALID FIELD IN CDB here; libiscsi's DescrLimits test sends
//!    exactly such a list and expects PARAMETER LIST LENGTH ERROR, which is
//!    also what SPC-4 prescribes for a descriptor list over the maximum.)
//!    Fewer data-out bytes than the CDB announces: PARAMETER LIST LENGTH
//!    ERROR as well (a list cut short by the transport is truncated).
//! 3. CSCD DESCRIPTOR LIST LENGTH over `MAX_CSCD_DESCRIPTORS` × 32: TOO MANY
//!    TARGET DESCRIPTORS.
//! 4. More than `MAX_SEGMENT_DESCRIPTORS` segment descriptors (counted by
//!    walking their headers in what was received): TOO MANY SEGMENT
//!    DESCRIPTORS.
//! 5. Descriptor lists over MAXIMUM DESCRIPTOR LIST LENGTH, inline data over
//!    its maximum (0), declared lengths that run past the bytes received, or
//!    a segment descriptor running past the segment list: PARAMETER LIST
//!    LENGTH ERROR.
//! 6. Header fields (LIST ID USAGE 01b; a list identifier with usage 11b)
//!    and a CSCD list length that is not a multiple of 32: INVALID FIELD IN
//!    PARAMETER LIST with a field pointer.
//! 7. CSCD type codes other than E4h: UNSUPPORTED TARGET DESCRIPTOR TYPE
//!    CODE; a designator longer than 20 bytes: INVALID FIELD IN PARAMETER LIST.
//! 8. Segment type codes other than 02h, 07h, 0Ah, 14h: UNSUPPORTED SEGMENT
//!    DESCRIPTOR TYPE CODE; a known type with the wrong DESCRIPTOR LENGTH:
//!    INVALID FIELD IN PARAMETER LIST.
//!
//! Everything after parsing (resolving CSCDs, ranges, inexact segments) is
//! the executor's and reports COPY ABORTED.

use super::codec::Reader;
use super::limits;
use crate::wire::sense::{Asc, Sense};

pub use crate::wire::xcopy::{
    Designator, ListIdUsage, TypeCode, CSCD_ID_THIS_LU, CSCD_LEN, HEADER_LEN, MAX_DESIGNATOR_LEN,
};

/// One CSCD descriptor (only the E4h identification form is accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cscd {
    /// Byte offset of the descriptor in the parameter list.
    pub offset: usize,
    /// LU ID TYPE (ignored for E4h under SPC-4).
    pub lu_id_type: u8,
    /// PERIPHERAL DEVICE TYPE the initiator expects (0 = block).
    pub pdt: u8,
    /// RELATIVE INITIATOR PORT IDENTIFIER (0 = any).
    pub relative_port: u16,
    /// Which logical unit.
    pub designator: Designator,
    /// DISK BLOCK LENGTH; 0 means "the logical unit's own".
    pub block_len: u32,
}

/// What a segment descriptor asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentKind {
    /// 02h: `blocks` blocks (source blocks, or destination blocks with DC).
    BlockToBlock { src: u16, dst: u16, dc: bool, cat: bool, blocks: u16, src_lba: u64, dst_lba: u64 },
    /// 0Ah: `bytes` bytes between byte addresses LBA × block length + offset.
    BlockToBlockOffset {
        src: u16,
        dst: u16,
        cat: bool,
        bytes: u32,
        src_lba: u64,
        dst_lba: u64,
        src_offset: u16,
        dst_offset: u16,
    },
    /// 07h: check that the CSCD is reachable (and ready, with TUR).
    Verify { src: u16, tur: bool },
    /// 14h: register the copy manager's I_T nexus to `dst` with the keys
    /// (a PERSISTENT RESERVE OUT REGISTER).
    RegisterKey { dst: u16, key: u64, sa_key: u64 },
}

/// One segment descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Byte offset of the descriptor in the parameter list.
    pub offset: usize,
    /// What it asks for.
    pub kind: SegmentKind,
}

/// Field offsets inside segment descriptors (for segment pointers).
pub struct SegmentField;

impl SegmentField {
    pub const SOURCE_CSCD_ID: u16 = 4;
    pub const DESTINATION_CSCD_ID: u16 = 6;
    /// NUMBER OF BLOCKS (02h) / NUMBER OF BYTES (0Ah, bytes 8..11).
    pub const COUNT_02H: u16 = 10;
    pub const COUNT_0AH: u16 = 8;
    pub const SOURCE_LBA: u16 = 12;
    pub const DESTINATION_LBA: u16 = 20;
}

/// A parsed LID1 parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamList {
    /// LIST IDENTIFIER.
    pub list_id: u8,
    /// LIST ID USAGE.
    pub usage: ListIdUsage,
    /// PRIORITY (0 highest; informational).
    pub priority: u8,
    /// CSCD descriptors, indexed by the segments' CSCD IDs 0000h..07FFh.
    pub cscds: Vec<Cscd>,
    /// Segment descriptors, in processing order.
    pub segments: Vec<Segment>,
}

fn length_error() -> Sense {
    Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR)
}

/// Walk segment descriptor headers in `region`: (absolute offset, type,
/// descriptor bytes). Stops at the end of `region`; `Err(())` when the
/// walk finds a partial header or a descriptor running past `region`.
fn walk_segments<'a>(mut r: Reader<'a>, mut visit: impl FnMut(usize, u8, Reader<'a>) -> bool) -> Result<(), ()> {
    while r.left() > 0 {
        let at = r.pos();
        let head = r.peek(4).ok_or(())?;
        let ty = head[0];
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let desc = r.sub(4 + len).ok_or(())?;
        if !visit(at, ty, desc) {
            return Ok(());
        }
    }
    Ok(())
}

/// Parse an EXTENDED COPY (LID1) parameter list: `data` is the data-out
/// received, `param_len` the CDB's PARAMETER LIST LENGTH. `Ok(None)` for a
/// zero-length list (nothing to do).
pub fn parse_lid1(data: &[u8], param_len: u32) -> Result<Option<ParamList>, Sense> {
    if param_len == 0 {
        return Ok(None);
    }
    let param_len = usize::try_from(param_len).unwrap_or(usize::MAX);
    // 1. The header must fit in what the CDB announces.
    if param_len < HEADER_LEN {
        return Err(Sense::invalid_cdb_field(10, None));
    }
    // 2. Nothing longer than we advertise.
    let max_total = HEADER_LEN + limits::MAX_DESCRIPTOR_LIST_LENGTH as usize + limits::MAX_INLINE_DATA_LENGTH as usize;
    if param_len > max_total {
        return Err(length_error());
    }
    // Fewer bytes than the CDB announces arrived (the initiator's expected
    // transfer length was shorter): the list is truncated.
    if data.len() < param_len {
        return Err(length_error());
    }
    let avail = &data[..param_len];
    let mut r = Reader::new(avail);
    let mut hdr = r.sub(HEADER_LEN).ok_or_else(length_error)?;
    let (list_id, flags, cscd_len) = match (hdr.u8(), hdr.u8(), hdr.u16()) {
        (Some(a), Some(b), Some(c)) => (a, b, usize::from(c)),
        _ => return Err(length_error()),
    };
    hdr.skip(4).ok_or_else(length_error)?;
    let (seg_len, inline_len) = match (hdr.u32(), hdr.u32()) {
        (Some(s), Some(i)) => (u64::from(s), u64::from(i)),
        _ => return Err(length_error()),
    };
    // 3. CSCD count.
    if cscd_len > usize::from(limits::MAX_CSCD_DESCRIPTORS) * CSCD_LEN {
        return Err(Sense::illegal(Asc::TOO_MANY_TARGET_DESCRIPTORS));
    }
    // 4. Segment count, from the headers that arrived.
    let seg_start = HEADER_LEN + cscd_len;
    let seg_end = u64::try_from(seg_start).unwrap_or(u64::MAX).saturating_add(seg_len);
    let seg_end_avail = usize::try_from(seg_end).unwrap_or(usize::MAX).min(avail.len());
    if seg_start < seg_end_avail {
        let mut w = Reader::new(avail);
        w.skip(seg_start).ok_or_else(length_error)?;
        let region = w.sub(seg_end_avail - seg_start).ok_or_else(length_error)?;
        let mut count = 0usize;
        let mut too_many = false;
        // A truncated tail is judged in step 5; only the count matters here.
        let _ = walk_segments(region, |_, _, _| {
            count += 1;
            too_many = count > usize::from(limits::MAX_SEGMENT_DESCRIPTORS);
            !too_many
        });
        if too_many {
            return Err(Sense::illegal(Asc::TOO_MANY_SEGMENT_DESCRIPTORS));
        }
    }
    // 5. Lengths against the maxima and against what was received.
    let lists = cscd_len as u64 + seg_len;
    let total = HEADER_LEN as u64 + lists + inline_len;
    if lists > u64::from(limits::MAX_DESCRIPTOR_LIST_LENGTH)
        || inline_len > u64::from(limits::MAX_INLINE_DATA_LENGTH)
        || total > avail.len() as u64
    {
        return Err(length_error());
    }
    let seg_len = usize::try_from(seg_len).map_err(|_| length_error())?;
    let mut body = r;
    let cscd_region = body.sub(cscd_len).ok_or_else(length_error)?;
    let seg_region = body.sub(seg_len).ok_or_else(length_error)?;
    let mut raw_segments = Vec::new();
    walk_segments(seg_region, |at, ty, desc| {
        raw_segments.push((at, ty, desc));
        true
    })
    .map_err(|()| length_error())?;
    // 6. Header fields.
    let usage = ListIdUsage::from_bits(flags >> 3).ok_or_else(|| Sense::invalid_param_field(1, Some(4)))?;
    if usage == ListIdUsage::None && list_id != 0 {
        return Err(Sense::invalid_param_field(0, None));
    }
    if cscd_len % CSCD_LEN != 0 {
        return Err(Sense::invalid_param_field(2, None));
    }
    // 7. CSCD descriptors.
    let mut cscds = Vec::with_capacity(cscd_len / CSCD_LEN);
    let mut cr = cscd_region;
    while cr.left() > 0 {
        let d = cr.sub(CSCD_LEN).ok_or_else(length_error)?;
        cscds.push(parse_cscd(d)?);
    }
    // 8. Segment descriptors.
    let mut segments = Vec::with_capacity(raw_segments.len());
    for (at, ty, desc) in raw_segments {
        segments.push(Segment { offset: at, kind: parse_segment(at, ty, desc)? });
    }
    Ok(Some(ParamList { list_id, usage, priority: flags & 0x07, cscds, segments }))
}

fn parse_cscd(mut d: Reader<'_>) -> Result<Cscd, Sense> {
    let offset = d.pos();
    let short = length_error;
    let ty = d.u8().ok_or_else(short)?;
    if ty != TypeCode::IDENTIFICATION {
        return Err(Sense::illegal(Asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE).with_field(false, offset, None));
    }
    let b1 = d.u8().ok_or_else(short)?;
    let relative_port = d.u16().ok_or_else(short)?;
    let code_set = d.u8().ok_or_else(short)? & 0x0F;
    let assoc_type = d.u8().ok_or_else(short)? & 0x3F;
    d.skip(1).ok_or_else(short)?;
    let len = usize::from(d.u8().ok_or_else(short)?);
    if len > MAX_DESIGNATOR_LEN {
        return Err(Sense::invalid_param_field(offset + 7, None));
    }
    let field = d.take(MAX_DESIGNATOR_LEN).ok_or_else(short)?;
    let value = field[..len].to_vec();
    d.skip(1).ok_or_else(short)?; // PAD and reserved bits (no CAT/PAD processing)
    let block_len = d.u24().ok_or_else(short)?;
    Ok(Cscd {
        offset,
        lu_id_type: b1 >> 6,
        pdt: b1 & 0x1F,
        relative_port,
        designator: Designator { code_set, assoc_type, value },
        block_len,
    })
}

fn parse_segment(at: usize, ty: u8, mut d: Reader<'_>) -> Result<SegmentKind, Sense> {
    let want = TypeCode::segment_len(ty)
        .ok_or_else(|| Sense::illegal(Asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE).with_field(false, at, None))?;
    let short = length_error;
    d.skip(1).ok_or_else(short)?;
    let flags = d.u8().ok_or_else(short)?;
    let len = d.u16().ok_or_else(short)?;
    if len != want {
        return Err(Sense::invalid_param_field(at + 2, None));
    }
    let src = d.u16().ok_or_else(short)?;
    let cat = flags & 0x01 != 0;
    Ok(match ty {
        TypeCode::BLOCK_TO_BLOCK => {
            let dst = d.u16().ok_or_else(short)?;
            d.skip(2).ok_or_else(short)?;
            let blocks = d.u16().ok_or_else(short)?;
            let src_lba = d.u64().ok_or_else(short)?;
            let dst_lba = d.u64().ok_or_else(short)?;
            SegmentKind::BlockToBlock { src, dst, dc: flags & 0x02 != 0, cat, blocks, src_lba, dst_lba }
        }
        TypeCode::BLOCK_TO_BLOCK_OFFSET => {
            let dst = d.u16().ok_or_else(short)?;
            let bytes = d.u32().ok_or_else(short)?;
            let src_lba = d.u64().ok_or_else(short)?;
            let dst_lba = d.u64().ok_or_else(short)?;
            let src_offset = d.u16().ok_or_else(short)?;
            let dst_offset = d.u16().ok_or_else(short)?;
            SegmentKind::BlockToBlockOffset { src, dst, cat, bytes, src_lba, dst_lba, src_offset, dst_offset }
        }
        TypeCode::REGISTER_KEY => {
            // Bytes 4..5 (read as `src` above) are reserved here.
            let dst = d.u16().ok_or_else(short)?;
            let key = d.u64().ok_or_else(short)?;
            let sa_key = d.u64().ok_or_else(short)?;
            SegmentKind::RegisterKey { dst, key, sa_key }
        }
        _ => {
            d.skip(2).ok_or_else(short)?;
            let tur = d.u8().ok_or_else(short)? & 0x01 != 0;
            SegmentKind::Verify { src, tur }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sense::SenseKeySpecific;

    const NAA: [u8; 16] = [0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

    fn cscd(ty: u8, bl: u32) -> Vec<u8> {
        let mut d = vec![0u8; 32];
        d[0] = ty;
        d[4] = 0x51; // iSCSI protocol id nibble + binary code set: nibble masked
        d[5] = 0x83; // PIV + LU association + NAA
        d[7] = 16;
        d[8..24].copy_from_slice(&NAA);
        d[29..32].copy_from_slice(&bl.to_be_bytes()[1..]);
        d
    }

    fn b2b(src: u16, dst: u16, blocks: u16, s: u64, t: u64) -> Vec<u8> {
        let mut d = vec![0u8; 28];
        d[0] = 0x02;
        d[2..4].copy_from_slice(&0x18u16.to_be_bytes());
        d[4..6].copy_from_slice(&src.to_be_bytes());
        d[6..8].copy_from_slice(&dst.to_be_bytes());
        d[10..12].copy_from_slice(&blocks.to_be_bytes());
        d[12..20].copy_from_slice(&s.to_be_bytes());
        d[20..28].copy_from_slice(&t.to_be_bytes());
        d
    }

    fn list(id: u8, usage: u8, cscds: &[Vec<u8>], segs: &[Vec<u8>]) -> Vec<u8> {
        let c: Vec<u8> = cscds.concat();
        let s: Vec<u8> = segs.concat();
        let mut l = vec![0u8; 16];
        l[0] = id;
        l[1] = usage << 3;
        l[2..4].copy_from_slice(&(c.len() as u16).to_be_bytes());
        l[8..12].copy_from_slice(&(s.len() as u32).to_be_bytes());
        l.extend(c);
        l.extend(s);
        l
    }

    fn parse(l: &[u8]) -> Result<Option<ParamList>, Sense> {
        parse_lid1(l, l.len() as u32)
    }

    fn asc(r: Result<Option<ParamList>, Sense>) -> Asc {
        r.expect_err("should fail").asc
    }

    #[test]
    fn good_list_parses_into_typed_values() {
        let mut off = vec![0u8; 32];
        off[0] = 0x0A;
        off[2..4].copy_from_slice(&0x1Cu16.to_be_bytes());
        off[4..6].copy_from_slice(&0xFFFFu16.to_be_bytes());
        off[8..12].copy_from_slice(&1000u32.to_be_bytes());
        off[28..30].copy_from_slice(&7u16.to_be_bytes());
        let mut verify = vec![0u8; 12];
        verify[0] = 0x07;
        verify[2..4].copy_from_slice(&8u16.to_be_bytes());
        verify[8] = 1;
        let l = list(9, 2, &[cscd(0xE4, 512)], &[b2b(0, 0, 16, 1, 2), off, verify]);
        let p = parse(&l).unwrap().unwrap();
        assert_eq!((p.list_id, p.usage, p.priority), (9, ListIdUsage::Discard, 0));
        assert_eq!(p.cscds.len(), 1);
        let c = &p.cscds[0];
        assert_eq!((c.offset, c.pdt, c.block_len), (16, 0, 512));
        assert_eq!(c.designator, Designator { code_set: 1, assoc_type: 0x03, value: NAA.to_vec() });
        assert_eq!(p.segments.len(), 3);
        assert_eq!(
            p.segments[0],
            Segment {
                offset: 48,
                kind: SegmentKind::BlockToBlock {
                    src: 0,
                    dst: 0,
                    dc: false,
                    cat: false,
                    blocks: 16,
                    src_lba: 1,
                    dst_lba: 2
                }
            }
        );
        assert_eq!(
            p.segments[1].kind,
            SegmentKind::BlockToBlockOffset {
                src: 0xFFFF,
                dst: 0,
                cat: false,
                bytes: 1000,
                src_lba: 0,
                dst_lba: 0,
                src_offset: 7,
                dst_offset: 0
            }
        );
        assert_eq!(p.segments[2], Segment { offset: 108, kind: SegmentKind::Verify { src: 0, tur: true } });
        let mut reg = vec![0u8; 28];
        reg[0] = 0x14;
        reg[3] = 0x18;
        reg[6..8].copy_from_slice(&0xFFFFu16.to_be_bytes());
        reg[8..16].copy_from_slice(&7u64.to_be_bytes());
        reg[16..24].copy_from_slice(&9u64.to_be_bytes());
        let p = parse(&list(0, 3, &[], &[reg])).unwrap().unwrap();
        assert_eq!(p.segments[0].kind, SegmentKind::RegisterKey { dst: 0xFFFF, key: 7, sa_key: 9 });
        assert_eq!(parse_lid1(&[], 0), Ok(None));
    }

    /// Every strict prefix of a valid list, announced with its true length
    /// or with the full length (a data-out shorter than the CDB says), fails
    /// cleanly with a length error or the header error, never panics.
    /// What the initiator encodes ([`crate::wire::xcopy`]) is what the copy
    /// manager parses, field for field.
    #[test]
    fn wire_encoder_round_trips() {
        use crate::wire::xcopy as w;
        let d = Designator { code_set: 0x51, assoc_type: 0x83, value: NAA.to_vec() };
        let list = w::ParamList {
            list_id: 9,
            usage: ListIdUsage::Discard,
            cscds: vec![w::Cscd::new(d.clone(), 4096), w::Cscd { pdt: 0, lu_id_type: 1, ..w::Cscd::new(d, 0) }],
            segments: vec![
                w::Segment::BlockToBlock { src: 0, dst: 1, dc: true, blocks: 16, src_lba: 1, dst_lba: 2 },
                w::Segment::BlockToBlockOffset {
                    src: 1,
                    dst: CSCD_ID_THIS_LU,
                    bytes: 700,
                    src_lba: 3,
                    dst_lba: 4,
                    src_offset: 5,
                    dst_offset: 6,
                },
                w::Segment::Verify { src: 1, tur: true },
                w::Segment::RegisterKey { dst: 0, key: 7, sa_key: 8 },
            ],
        };
        let b = list.encode();
        let p = parse(&b).unwrap().unwrap();
        assert_eq!((p.list_id, p.usage, p.priority), (9, ListIdUsage::Discard, 0));
        let masked = Designator { code_set: 0x01, assoc_type: 0x03, value: NAA.to_vec() };
        assert_eq!(p.cscds.len(), 2);
        for (c, (off, block_len, lu_id_type)) in p.cscds.iter().zip([(16, 4096, 0), (48, 0, 1)]) {
            assert_eq!((c.offset, c.block_len, c.lu_id_type, c.pdt), (off, block_len, lu_id_type, 0));
            assert_eq!(c.designator, masked);
        }
        let kinds: Vec<_> = p.segments.iter().map(|s| (s.offset, s.kind.clone())).collect();
        assert_eq!(
            kinds,
            vec![
                (
                    80,
                    SegmentKind::BlockToBlock {
                        src: 0,
                        dst: 1,
                        dc: true,
                        cat: false,
                        blocks: 16,
                        src_lba: 1,
                        dst_lba: 2
                    }
                ),
                (
                    108,
                    SegmentKind::BlockToBlockOffset {
                        src: 1,
                        dst: CSCD_ID_THIS_LU,
                        cat: false,
                        bytes: 700,
                        src_lba: 3,
                        dst_lba: 4,
                        src_offset: 5,
                        dst_offset: 6
                    }
                ),
                (140, SegmentKind::Verify { src: 1, tur: true }),
                (152, SegmentKind::RegisterKey { dst: 0, key: 7, sa_key: 8 }),
            ]
        );
        let none = w::ParamList { list_id: 0, usage: ListIdUsage::None, cscds: vec![], segments: vec![] };
        assert_eq!(parse(&none.encode()).unwrap().unwrap().usage, ListIdUsage::None);
    }

    #[test]
    fn every_prefix_is_refused() {
        let l = list(1, 0, &[cscd(0xE4, 0), cscd(0xE4, 4096)], &[b2b(0, 1, 8, 0, 0), b2b(1, 0, 1, 5, 6)]);
        assert!(parse(&l).unwrap().is_some());
        for n in 1..l.len() {
            let e = parse_lid1(&l[..n], n as u32).unwrap_err();
            if n < HEADER_LEN {
                assert_eq!(e, Sense::invalid_cdb_field(10, None), "prefix {n}");
            } else {
                assert_eq!(e.asc, Asc::PARAMETER_LIST_LENGTH_ERROR, "prefix {n}");
            }
            let e = parse_lid1(&l[..n], l.len() as u32).unwrap_err();
            assert_eq!(e.asc, Asc::PARAMETER_LIST_LENGTH_ERROR, "prefix {n} of announced {}", l.len());
        }
    }

    #[test]
    fn limits_and_their_order() {
        let c = cscd(0xE4, 0);
        let s = b2b(0, 0, 1, 0, 0);
        // 65 CSCDs: too many target descriptors.
        let l = list(1, 0, &vec![c.clone(); 65], std::slice::from_ref(&s));
        assert_eq!(asc(parse(&l)), Asc::TOO_MANY_TARGET_DESCRIPTORS);
        // 64 are fine.
        assert!(parse(&list(1, 0, &vec![c.clone(); 64], std::slice::from_ref(&s))).is_ok());
        // 65 segments: too many segment descriptors.
        let l = list(1, 0, std::slice::from_ref(&c), &vec![s.clone(); 65]);
        assert_eq!(asc(parse(&l)), Asc::TOO_MANY_SEGMENT_DESCRIPTORS);
        assert!(parse(&list(1, 0, std::slice::from_ref(&c), &vec![s.clone(); 64])).is_ok());
        // libiscsi DescrLimits: 65 CSCDs + 219 segments, 8228 bytes in all.
        let l = list(3, 0, &vec![c.clone(); 65], &vec![s.clone(); 219]);
        assert_eq!(l.len(), 8228);
        assert_eq!(asc(parse(&l)), Asc::PARAMETER_LIST_LENGTH_ERROR);
        // A list exactly at the maximum passes the length checks.
        let mut l = list(1, 0, &vec![c.clone(); 64], &[]);
        let seg_bytes = 8192 - 64 * 32;
        l[8..12].copy_from_slice(&(seg_bytes as u32).to_be_bytes());
        let mut segs = vec![s.clone(); seg_bytes / 28];
        let mut pad = b2b(0, 0, 0, 0, 0);
        pad.truncate(seg_bytes % 28);
        if !pad.is_empty() {
            // Make the remainder one verify-length-shaped descriptor of unknown type.
            pad[0] = 0x03;
            let n = (pad.len() - 4) as u16;
            pad[2..4].copy_from_slice(&n.to_be_bytes());
        }
        segs.push(pad);
        l.extend(segs.concat());
        assert_eq!(l.len(), 16 + 8192);
        // 219+ segments: the count is over the limit first.
        assert_eq!(asc(parse(&l)), Asc::TOO_MANY_SEGMENT_DESCRIPTORS);
        // Inline data is not supported (maximum 0).
        let mut l = list(1, 0, std::slice::from_ref(&c), std::slice::from_ref(&s));
        l[12..16].copy_from_slice(&4u32.to_be_bytes());
        l.extend([0u8; 4]);
        assert_eq!(asc(parse(&l)), Asc::PARAMETER_LIST_LENGTH_ERROR);
        // A declared segment list longer than the maximum.
        let mut l = list(1, 0, std::slice::from_ref(&c), std::slice::from_ref(&s));
        l[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(asc(parse(&l)), Asc::PARAMETER_LIST_LENGTH_ERROR);
        // A CDB length over header + maximum.
        assert_eq!(asc(parse_lid1(&l, 16 + 8192 + 1)), Asc::PARAMETER_LIST_LENGTH_ERROR);
        assert_eq!(asc(parse_lid1(&l, u32::MAX)), Asc::PARAMETER_LIST_LENGTH_ERROR);
        assert_eq!(parse_lid1(&l, 15), Err(Sense::invalid_cdb_field(10, None)));
    }

    #[test]
    fn lengths_that_lie() {
        let c = cscd(0xE4, 0);
        let s = b2b(0, 0, 1, 0, 0);
        // CSCD list length claims more than was sent.
        let mut l = list(1, 0, std::slice::from_ref(&c), std::slice::from_ref(&s));
        l[2..4].copy_from_slice(&64u16.to_be_bytes());
        assert_eq!(asc(parse(&l)), Asc::PARAMETER_LIST_LENGTH_ERROR);
        // Segment descriptor length runs past the segment list.
        let mut l = list(1, 0, std::slice::from_ref(&c), std::slice::from_ref(&s));
        l[48 + 3] = 0x40;
        assert_eq!(asc(parse(&l)), Asc::PARAMETER_LIST_LENGTH_ERROR);
        // Segment list with a trailing partial header.
        let mut l = list(1, 0, std::slice::from_ref(&c), &[s.clone(), vec![0x02, 0]]);
        assert_eq!(asc(parse(&l)), Asc::PARAMETER_LIST_LENGTH_ERROR);
        // Segment list shorter than the descriptors sent: the rest is
        // unannounced trailing data, and the short list truncates one.
        l[8..12].copy_from_slice(&20u32.to_be_bytes());
        assert_eq!(asc(parse(&l)), Asc::PARAMETER_LIST_LENGTH_ERROR);
        // A CSCD list length that is not a multiple of 32.
        let mut l = list(1, 0, std::slice::from_ref(&c), &[]);
        l[2..4].copy_from_slice(&31u16.to_be_bytes());
        assert_eq!(parse(&l), Err(Sense::invalid_param_field(2, None)));
        // Wrong descriptor length for a known segment type.
        let mut bad = s.clone();
        bad[3] = 0x14;
        bad.truncate(24);
        let l = list(1, 0, std::slice::from_ref(&c), &[bad]);
        assert_eq!(parse(&l), Err(Sense::invalid_param_field(48 + 2, None)));
    }

    #[test]
    fn header_fields_and_type_codes() {
        let c = cscd(0xE4, 0);
        let s = b2b(0, 0, 1, 0, 0);
        assert_eq!(
            parse(&list(1, 1, std::slice::from_ref(&c), std::slice::from_ref(&s))),
            Err(Sense::invalid_param_field(1, Some(4)))
        );
        assert_eq!(
            parse(&list(1, 3, std::slice::from_ref(&c), std::slice::from_ref(&s))),
            Err(Sense::invalid_param_field(0, None))
        );
        assert_eq!(
            parse(&list(0, 3, std::slice::from_ref(&c), std::slice::from_ref(&s))).unwrap().unwrap().usage,
            ListIdUsage::None
        );
        assert_eq!(
            parse(&list(7, 0, std::slice::from_ref(&c), std::slice::from_ref(&s))).unwrap().unwrap().usage,
            ListIdUsage::Hold
        );
        // Fibre Channel N_Port_Name CSCD.
        let e = parse(&list(1, 0, &[cscd(0xE0, 0)], std::slice::from_ref(&s))).unwrap_err();
        assert_eq!(e.asc, Asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE);
        assert_eq!(e.sks, Some(SenseKeySpecific::Field { cdb: false, byte: 16, bit: None }));
        // The FFh extension and the ROD CSCD are not implemented either.
        for ty in [0xFEu8, 0xFF, 0xE9] {
            assert_eq!(
                asc(parse(&list(1, 0, &[cscd(ty, 0)], std::slice::from_ref(&s)))),
                Asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE
            );
        }
        // Stream to stream (03h), block to stream (00h), populate ROD (BFh).
        for ty in [0x03u8, 0x00, 0xBF] {
            let mut seg = vec![0u8; 20];
            seg[0] = ty;
            seg[3] = 16;
            let e = parse(&list(1, 0, std::slice::from_ref(&c), &[seg])).unwrap_err();
            assert_eq!(e.asc, Asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE, "type {ty:#x}");
        }
        // Designator longer than 20 bytes.
        let mut long = c.clone();
        long[7] = 21;
        assert_eq!(parse(&list(1, 0, &[long], &[s])), Err(Sense::invalid_param_field(16 + 7, None)));
    }

    proptest::proptest! {
        /// Arbitrary bytes and lengths never panic.
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600), len in 0u32..700) {
            let _ = parse_lid1(&data, len);
        }

        /// Random corruption of a valid list never panics and either parses
        /// or fails with an ILLEGAL REQUEST sense.
        #[test]
        fn corrupted_lists(pos in 0usize..108, val in proptest::num::u8::ANY) {
            let mut l = list(1, 0, &[cscd(0xE4, 0)], &[b2b(0, 0, 4, 0, 8), b2b(0, 0, 4, 8, 16)]);
            let n = l.len();
            l[pos % n] = val;
            if let Err(e) = parse(&l) {
                proptest::prop_assert_eq!(e.key, crate::sense::SenseKey::ILLEGAL_REQUEST);
            }
        }
    }
}
