//! Splitting one copy into commands within a copy manager's limits: blocks
//! per EXTENDED COPY segment, segments per parameter list (VPD 8Fh 0004h /
//! 8001h or RECEIVE COPY OPERATING PARAMETERS), ranges and blocks per ROD
//! token (VPD 8Fh 0000h). Pure functions, so the arithmetic is tested
//! without a target; the `oxcopy` CLI, the benchmarks and the tests share
//! them.
//!
//! ```
//! use oxcopy_initiator::plan::{plan_xcopy, XcopyLimits};
//! // 1 GiB between two 512-byte-block LUNs, at most 64 segments per list.
//! let lists = plan_xcopy(0, 0, 1 << 30, 512, 512, XcopyLimits { max_segment_descriptors: 64, ..Default::default() })
//!     .unwrap();
//! assert_eq!(lists.len(), 1);
//! assert_eq!(lists[0].len(), 37); // 28 MiB segments: 65535 blocks rounded down to 4 MiB
//! ```

use crate::odx::BlockRange;
use thiserror::Error;

/// Bytes of one E4h identification CSCD descriptor.
pub const CSCD_LEN: u32 = 32;
/// Bytes of one 02h block → block segment descriptor.
pub const SEGMENT_02_LEN: u32 = 28;
/// NUMBER OF BLOCKS of a 02h segment is 16 bits.
pub const SEGMENT_MAX_BLOCKS: u64 = 0xffff;
/// Segments of at least twice this are cut at multiples of it, so that
/// segment boundaries fall on the boundaries storage works in (an RBD
/// object, a reflink extent, a stripe): 65535 512-byte blocks become 28 MiB,
/// not 32 MiB − 512 B, and a copy between RBD images stays inside the
/// cluster for every whole object.
pub const SEGMENT_ALIGN: u64 = 4 << 20;
/// Segments per list when the copy manager reports no limit.
pub const DEFAULT_SEGMENTS_PER_LIST: u64 = 1024;

/// Why a copy cannot be split within the limits.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    /// A block size of 0.
    #[error("block size 0")]
    ZeroBlockSize,
    /// The length is not a whole number of both ends' blocks.
    #[error("{bytes} bytes is not a whole number of {src_bs}- and {dst_bs}-byte blocks")]
    NotWholeBlocks {
        /// Bytes to copy.
        bytes: u64,
        /// Source block size.
        src_bs: u32,
        /// Destination block size.
        dst_bs: u32,
    },
    /// MAXIMUM SEGMENT LENGTH is below one common block.
    #[error("the copy manager's maximum segment length ({max} bytes) is below one {unit}-byte block")]
    SegmentTooShort {
        /// MAXIMUM SEGMENT LENGTH.
        max: u32,
        /// The least common multiple of both block sizes.
        unit: u64,
    },
    /// MAXIMUM DESCRIPTOR LIST LENGTH leaves no room for a segment.
    #[error("the copy manager's descriptor list length ({0} bytes) leaves no room for a segment")]
    ListTooShort(u32),
    /// The token limits allow less than one common block per token.
    #[error("the ROD token limits allow less than one {0}-byte block per token")]
    TokenTooSmall(u64),
}

/// One 02h block → block segment (DC=0: `blocks` counts source blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// SOURCE BLOCK DEVICE LBA.
    pub src_lba: u64,
    /// DESTINATION BLOCK DEVICE LBA.
    pub dst_lba: u64,
    /// NUMBER OF BLOCKS (source blocks).
    pub blocks: u16,
}

impl Segment {
    /// The 02h descriptor between CSCD `src` and CSCD `dst`.
    pub fn descriptor(&self, src: u16, dst: u16) -> crate::xcopy::Segment {
        crate::xcopy::Segment::BlockToBlock {
            src,
            dst,
            dc: false,
            blocks: self.blocks,
            src_lba: self.src_lba,
            dst_lba: self.dst_lba,
        }
    }
}

/// The copy manager's EXTENDED COPY limits; 0 = not reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XcopyLimits {
    /// MAXIMUM SEGMENT DESCRIPTOR COUNT.
    pub max_segment_descriptors: u16,
    /// MAXIMUM DESCRIPTOR LIST LENGTH, bytes.
    pub max_descriptor_list_length: u32,
    /// MAXIMUM SEGMENT LENGTH, bytes.
    pub max_segment_length: u32,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Least common multiple (both > 0).
pub fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b) * b
}

fn unit_of(bytes: u64, src_bs: u32, dst_bs: u32) -> Result<u64, PlanError> {
    if src_bs == 0 || dst_bs == 0 {
        return Err(PlanError::ZeroBlockSize);
    }
    let unit = lcm(u64::from(src_bs), u64::from(dst_bs));
    if bytes % unit != 0 {
        return Err(PlanError::NotWholeBlocks { bytes, src_bs, dst_bs });
    }
    Ok(unit)
}

/// Split `bytes` from `src_lba` (blocks of `src_bs`) to `dst_lba` (blocks of
/// `dst_bs`) into EXTENDED COPY parameter lists of 02h segments, two CSCDs
/// per list. `bytes` must be a multiple of both block sizes.
pub fn plan_xcopy(
    src_lba: u64,
    dst_lba: u64,
    bytes: u64,
    src_bs: u32,
    dst_bs: u32,
    limits: XcopyLimits,
) -> Result<Vec<Vec<Segment>>, PlanError> {
    let unit = unit_of(bytes, src_bs, dst_bs)?;
    let (sbs, dbs) = (u64::from(src_bs), u64::from(dst_bs));
    let mut seg_bytes = SEGMENT_MAX_BLOCKS * sbs;
    if limits.max_segment_length > 0 {
        seg_bytes = seg_bytes.min(u64::from(limits.max_segment_length));
    }
    let align = lcm(SEGMENT_ALIGN, unit);
    seg_bytes = if seg_bytes >= 2 * align { seg_bytes / align * align } else { seg_bytes / unit * unit };
    if seg_bytes == 0 {
        return Err(PlanError::SegmentTooShort { max: limits.max_segment_length, unit });
    }
    let mut per_list = if limits.max_segment_descriptors > 0 {
        u64::from(limits.max_segment_descriptors)
    } else {
        DEFAULT_SEGMENTS_PER_LIST
    };
    if limits.max_descriptor_list_length > 0 {
        let room = u64::from(limits.max_descriptor_list_length).saturating_sub(2 * u64::from(CSCD_LEN));
        per_list = per_list.min(room / u64::from(SEGMENT_02_LEN));
    }
    if per_list == 0 {
        return Err(PlanError::ListTooShort(limits.max_descriptor_list_length));
    }
    let mut lists = Vec::new();
    let mut list = Vec::new();
    let mut done = 0u64;
    while done < bytes {
        let n = seg_bytes.min(bytes - done);
        list.push(Segment { src_lba: src_lba + done / sbs, dst_lba: dst_lba + done / dbs, blocks: (n / sbs) as u16 });
        done += n;
        if list.len() as u64 == per_list {
            lists.push(std::mem::take(&mut list));
        }
    }
    if !list.is_empty() {
        lists.push(list);
    }
    Ok(lists)
}

/// One side's ROD token limits (VPD 8Fh 0000h); 0 = not reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenLimits {
    /// MAXIMUM RANGE DESCRIPTORS per POPULATE TOKEN / WRITE USING TOKEN.
    pub max_range_descriptors: u16,
    /// MAXIMUM TOKEN TRANSFER SIZE, in this LU's logical blocks.
    pub max_token_transfer_size: u64,
}

/// One token's worth of a copy: the POPULATE TOKEN ranges (source blocks)
/// and the WRITE USING TOKEN ranges (destination blocks), same byte count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenChunk {
    /// Byte offset of this chunk from the start of the copy.
    pub offset: u64,
    /// Bytes the token represents.
    pub bytes: u64,
    /// Gather list on the source.
    pub src: Vec<BlockRange>,
    /// Scatter list on the destination.
    pub dst: Vec<BlockRange>,
}

/// Contiguous `bytes` from `lba` as ranges of ≤ 2³²−1 blocks of `bs`.
pub fn ranges(lba: u64, bytes: u64, bs: u32) -> Vec<BlockRange> {
    let blocks = bytes / u64::from(bs.max(1));
    let mut out = Vec::new();
    let mut r = 0u64;
    while r < blocks {
        let n = u64::from(u32::MAX).min(blocks - r);
        out.push(BlockRange { lba: lba + r, blocks: n as u32 });
        r += n;
    }
    out
}

/// Bytes one token may cover under `l` for blocks of `bs`.
fn token_bytes(l: TokenLimits, bs: u64) -> u64 {
    let max_ranges = if l.max_range_descriptors > 0 { u64::from(l.max_range_descriptors) } else { 1 };
    let mut blocks = max_ranges.saturating_mul(u64::from(u32::MAX));
    if l.max_token_transfer_size > 0 {
        blocks = blocks.min(l.max_token_transfer_size);
    }
    blocks.saturating_mul(bs)
}

/// Split a token copy of `bytes` from `src_lba` (blocks of `src_bs`) to
/// `dst_lba` (blocks of `dst_bs`) into tokens each within both ends' limits.
pub fn plan_tokens(
    src_lba: u64,
    dst_lba: u64,
    bytes: u64,
    src_bs: u32,
    dst_bs: u32,
    src_limits: TokenLimits,
    dst_limits: TokenLimits,
) -> Result<Vec<TokenChunk>, PlanError> {
    let unit = unit_of(bytes, src_bs, dst_bs)?;
    let (sbs, dbs) = (u64::from(src_bs), u64::from(dst_bs));
    let per = token_bytes(src_limits, sbs).min(token_bytes(dst_limits, dbs)) / unit * unit;
    if per == 0 {
        return Err(PlanError::TokenTooSmall(unit));
    }
    let mut out = Vec::new();
    let mut done = 0u64;
    while done < bytes {
        let n = per.min(bytes - done);
        out.push(TokenChunk {
            offset: done,
            bytes: n,
            src: ranges(src_lba + done / sbs, n, src_bs),
            dst: ranges(dst_lba + done / dbs, n, dst_bs),
        });
        done += n;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xcopy_segments_respect_every_limit() {
        // 1 GiB of 512-byte blocks, CTL-like limits: 65535-block segments,
        // cut at 4 MiB multiples (28 MiB).
        let l = XcopyLimits { max_segment_descriptors: 64, max_descriptor_list_length: 8192, max_segment_length: 0 };
        let lists = plan_xcopy(0, 100, 1 << 30, 512, 512, l).unwrap();
        let segs: Vec<Segment> = lists.iter().flatten().copied().collect();
        assert_eq!(segs.iter().map(|s| s.blocks as u64).sum::<u64>(), (1 << 30) / 512);
        assert!(segs.iter().all(|s| s.blocks as u64 <= SEGMENT_MAX_BLOCKS));
        assert_eq!((segs[1].src_lba, segs[1].dst_lba), (57344, 100 + 57344));
        assert!(segs.iter().all(|s| (s.src_lba * 512) % SEGMENT_ALIGN == 0), "every segment starts on 4 MiB");
        // 4 KiB blocks: 65535 blocks = 256 MiB - 4 KiB, cut to 252 MiB.
        let big = plan_xcopy(0, 0, 1 << 30, 4096, 4096, l).unwrap().concat();
        assert_eq!(big[0].blocks as u64 * 4096, 252 << 20);
        // Below twice the alignment, segments are only whole units.
        let small = XcopyLimits { max_segment_length: 6 << 20, ..l };
        assert_eq!(plan_xcopy(0, 0, 12 << 20, 512, 512, small).unwrap().concat()[0].blocks as u64 * 512, 6 << 20);
        assert_eq!(lists.len(), 1);
        // A short descriptor list: (1024 - 64) / 28 = 34 segments per list.
        let l = XcopyLimits { max_segment_descriptors: 0, max_descriptor_list_length: 1024, max_segment_length: 0 };
        let lists = plan_xcopy(0, 0, 1 << 32, 512, 512, l).unwrap();
        assert!(lists.iter().all(|l| l.len() <= 34));
        assert_eq!(lists[0].len(), 34);
        // Mixed block sizes: segments are whole 4 KiB units; dst LBAs in 4 KiB blocks.
        let l = XcopyLimits { max_segment_descriptors: 64, max_descriptor_list_length: 0, max_segment_length: 1 << 20 };
        let segs: Vec<Segment> = plan_xcopy(8, 1, 64 << 20, 512, 4096, l).unwrap().into_iter().flatten().collect();
        assert_eq!(segs.len(), 64);
        assert!(segs.iter().all(|s| s.blocks == 2048));
        assert_eq!((segs[1].src_lba, segs[1].dst_lba), (8 + 2048, 1 + 256));
        // Descriptor form.
        assert_eq!(
            segs[1].descriptor(0, 1),
            crate::xcopy::Segment::BlockToBlock {
                src: 0,
                dst: 1,
                dc: false,
                blocks: 2048,
                src_lba: 2056,
                dst_lba: 257
            }
        );
        // Errors.
        let d = XcopyLimits::default();
        assert!(matches!(plan_xcopy(0, 0, 1000, 512, 512, d), Err(PlanError::NotWholeBlocks { .. })));
        let short = XcopyLimits { max_segment_length: 1024, ..d };
        assert!(matches!(plan_xcopy(0, 0, 4096, 512, 4096, short), Err(PlanError::SegmentTooShort { .. })));
        let tiny = XcopyLimits { max_descriptor_list_length: 64, ..d };
        assert_eq!(plan_xcopy(0, 0, 4096, 512, 512, tiny), Err(PlanError::ListTooShort(64)));
        assert_eq!(plan_xcopy(0, 0, 4096, 0, 512, d), Err(PlanError::ZeroBlockSize));
        assert_eq!(plan_xcopy(0, 0, 0, 512, 512, d).unwrap(), Vec::<Vec<Segment>>::new());
    }

    #[test]
    fn tokens_respect_ranges_and_transfer_size() {
        let l = TokenLimits { max_range_descriptors: 64, max_token_transfer_size: 300 };
        let t = plan_tokens(10, 20, 1000 * 512, 512, 512, l, TokenLimits::default()).unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t[0].src, vec![BlockRange { lba: 10, blocks: 300 }]);
        assert_eq!(t[0].dst, vec![BlockRange { lba: 20, blocks: 300 }]);
        assert_eq!(t[3].src, vec![BlockRange { lba: 910, blocks: 100 }]);
        assert_eq!(t[3].offset, 900 * 512);
        // More than 2^32-1 blocks: several ranges in one token.
        let big = (3 * u32::MAX as u64 + 5) * 512;
        let two = TokenLimits { max_range_descriptors: 2, max_token_transfer_size: 0 };
        let t = plan_tokens(0, 0, big, 512, 512, two, two).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].src.len(), t[1].src.len()), (2, 2));
        assert_eq!(t.iter().flat_map(|c| &c.src).map(|r| r.blocks as u64).sum::<u64>(), big / 512);
        assert_eq!(t[1].src[0].lba, 2 * u32::MAX as u64);
        // The destination's limits count too, in its own blocks.
        let dst = TokenLimits { max_range_descriptors: 1, max_token_transfer_size: 16 };
        let t = plan_tokens(0, 5, 1 << 20, 512, 4096, TokenLimits::default(), dst).unwrap();
        assert_eq!(t.len(), 16);
        assert_eq!(t[1].src, vec![BlockRange { lba: 128, blocks: 128 }]);
        assert_eq!(t[1].dst, vec![BlockRange { lba: 21, blocks: 16 }]);
        assert!(plan_tokens(0, 0, 0, 512, 512, l, l).unwrap().is_empty());
        let tiny = TokenLimits { max_range_descriptors: 1, max_token_transfer_size: 1 };
        assert_eq!(plan_tokens(0, 0, 4096, 512, 4096, tiny, l), Err(PlanError::TokenTooSmall(4096)));
    }
}
