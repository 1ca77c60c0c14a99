//! Splitting one copy into commands within a copy manager's limits: blocks
//! per EXTENDED COPY segment, segments per parameter list, ranges per token,
//! blocks per token. Pure functions, so the limits arithmetic is tested
//! without a target.
//!
//! Used by the EXTENDED COPY and token engines (issues 4 and 5); until they
//! land only the tests call these.
#![allow(dead_code)]

/// Bytes of one E4h identification CSCD descriptor.
pub const CSCD_LEN: u32 = 32;
/// Bytes of one 02h block → block segment descriptor.
pub const SEGMENT_02_LEN: u32 = 28;
/// NUMBER OF BLOCKS of a 02h segment is 16 bits.
pub const SEGMENT_MAX_BLOCKS: u64 = 0xffff;

/// One 02h block → block segment (DC=0: `blocks` counts source blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub src_lba: u64,
    pub dst_lba: u64,
    pub blocks: u16,
}

/// The copy manager's limits (VPD 8Fh 0004h / 8001h); 0 = not reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XcopyLimits {
    pub max_segment_descriptors: u16,
    pub max_descriptor_list_length: u32,
    /// MAXIMUM SEGMENT LENGTH in bytes.
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
) -> Result<Vec<Vec<Segment>>, String> {
    let (sbs, dbs) = (src_bs as u64, dst_bs as u64);
    if sbs == 0 || dbs == 0 {
        return Err("block size 0".into());
    }
    let unit = lcm(sbs, dbs);
    if bytes % unit != 0 {
        return Err(format!("{bytes} bytes is not a whole number of {src_bs}- and {dst_bs}-byte blocks"));
    }
    let mut seg_bytes = SEGMENT_MAX_BLOCKS * sbs;
    if limits.max_segment_length > 0 {
        seg_bytes = seg_bytes.min(limits.max_segment_length as u64);
    }
    seg_bytes = seg_bytes / unit * unit;
    if seg_bytes == 0 {
        return Err(format!(
            "the copy manager's maximum segment length ({} bytes) is below one {unit}-byte block",
            limits.max_segment_length
        ));
    }
    let mut per_list = if limits.max_segment_descriptors > 0 { limits.max_segment_descriptors as u64 } else { 1024 };
    if limits.max_descriptor_list_length > 0 {
        let room = (limits.max_descriptor_list_length as u64).saturating_sub(2 * CSCD_LEN as u64);
        per_list = per_list.min(room / SEGMENT_02_LEN as u64);
    }
    if per_list == 0 {
        return Err("the copy manager's descriptor list length leaves no room for a segment".into());
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

/// One block device range descriptor (LBA, 32-bit block count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub lba: u64,
    pub blocks: u32,
}

/// Token limits (VPD 8Fh 0000h); 0 = not reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenLimits {
    pub max_range_descriptors: u16,
    /// Logical blocks one token may represent.
    pub max_token_transfer_size: u64,
}

/// Split `blocks` blocks from `lba` into tokens (each ≤ the transfer size,
/// with ≤ max ranges of ≤ 2³²−1 blocks).
pub fn plan_tokens(lba: u64, blocks: u64, limits: TokenLimits) -> Vec<Vec<Range>> {
    let max_ranges = if limits.max_range_descriptors > 0 { limits.max_range_descriptors as u64 } else { 1 };
    let range_max = u32::MAX as u64;
    let mut per_token = max_ranges.saturating_mul(range_max);
    if limits.max_token_transfer_size > 0 {
        per_token = per_token.min(limits.max_token_transfer_size);
    }
    let mut out = Vec::new();
    let mut done = 0u64;
    while done < blocks {
        let t = per_token.min(blocks - done);
        let mut ranges = Vec::new();
        let mut r = 0u64;
        while r < t {
            let n = range_max.min(t - r);
            ranges.push(Range { lba: lba + done + r, blocks: n as u32 });
            r += n;
        }
        out.push(ranges);
        done += t;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xcopy_segments_respect_every_limit() {
        // 1 GiB of 512-byte blocks, CTL-like limits: 65535-block segments.
        let lists = plan_xcopy(
            0,
            100,
            1 << 30,
            512,
            512,
            XcopyLimits { max_segment_descriptors: 64, max_descriptor_list_length: 8192, max_segment_length: 0 },
        )
        .unwrap();
        let segs: Vec<Segment> = lists.iter().flatten().copied().collect();
        assert_eq!(segs.iter().map(|s| s.blocks as u64).sum::<u64>(), (1 << 30) / 512);
        assert!(segs.iter().all(|s| s.blocks as u64 <= SEGMENT_MAX_BLOCKS));
        assert_eq!(segs[1].src_lba, 65535);
        assert_eq!(segs[1].dst_lba, 100 + 65535);
        assert_eq!(lists.len(), 1); // 33 segments fit in one list of 64
                                    // A short descriptor list: (1024 - 64) / 28 = 34 segments per list.
        let lists = plan_xcopy(
            0,
            0,
            1 << 32,
            512,
            512,
            XcopyLimits { max_segment_descriptors: 0, max_descriptor_list_length: 1024, max_segment_length: 0 },
        )
        .unwrap();
        assert!(lists.iter().all(|l| l.len() <= 34));
        assert_eq!(lists[0].len(), 34);
        // Mixed block sizes: segments are whole 4 KiB units; dst LBAs in 4 KiB blocks.
        let lists = plan_xcopy(
            8,
            1,
            64 << 20,
            512,
            4096,
            XcopyLimits { max_segment_descriptors: 64, max_descriptor_list_length: 0, max_segment_length: 1 << 20 },
        )
        .unwrap();
        let segs: Vec<Segment> = lists.into_iter().flatten().collect();
        assert_eq!(segs.len(), 64);
        assert!(segs.iter().all(|s| s.blocks == 2048));
        assert_eq!((segs[1].src_lba, segs[1].dst_lba), (8 + 2048, 1 + 256));
        // Errors.
        assert!(plan_xcopy(0, 0, 1000, 512, 512, XcopyLimits::default()).is_err());
        assert!(
            plan_xcopy(0, 0, 4096, 512, 4096, XcopyLimits { max_segment_length: 1024, ..Default::default() }).is_err()
        );
        assert!(plan_xcopy(0, 0, 4096, 512, 512, XcopyLimits { max_descriptor_list_length: 64, ..Default::default() })
            .is_err());
        assert_eq!(plan_xcopy(0, 0, 0, 512, 512, XcopyLimits::default()).unwrap(), Vec::<Vec<Segment>>::new());
    }

    #[test]
    fn tokens_respect_ranges_and_transfer_size() {
        let t = plan_tokens(10, 1000, TokenLimits { max_range_descriptors: 64, max_token_transfer_size: 300 });
        assert_eq!(t.len(), 4);
        assert_eq!(t[0], vec![Range { lba: 10, blocks: 300 }]);
        assert_eq!(t[3], vec![Range { lba: 910, blocks: 100 }]);
        // More than 2^32-1 blocks: several ranges in one token.
        let big = 3 * u32::MAX as u64 + 5;
        let t = plan_tokens(0, big, TokenLimits { max_range_descriptors: 2, max_token_transfer_size: 0 });
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].len(), 2);
        assert_eq!(t[1].len(), 2);
        assert_eq!(t.iter().flatten().map(|r| r.blocks as u64).sum::<u64>(), big);
        assert_eq!(t[1][0].lba, 2 * u32::MAX as u64);
        assert!(plan_tokens(0, 0, TokenLimits::default()).is_empty());
    }
}
