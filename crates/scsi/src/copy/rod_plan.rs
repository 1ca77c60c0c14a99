//! WRITE USING TOKEN planning: the ROD is the token's source ranges laid
//! end to end (in the creator LU's blocks); OFFSET INTO ROD counts blocks of
//! the LU *written*; the destination ranges are filled from there in list
//! order. This maps that onto byte runs (source byte, destination byte,
//! length) for the executor, with the checks of the digest §3.3:
//! block lengths that do not divide evenly → INVALID FIELD IN PARAMETER
//! LIST (26h/00h); destination ranges needing more than the ROD holds past
//! the offset → COPY TARGET DEVICE DATA UNDERRUN (0Dh/04h).

use super::rod_params::BlockRange;
use crate::sense::{Asc, Sense};

/// One contiguous piece of a token copy, in bytes (source offset, destination
/// offset, length): the engine's run.
pub use oxcopy_copy::Run as ByteRun;

/// Byte offset of OFFSET INTO ROD in a WRITE USING TOKEN parameter list.
const OFFSET_INTO_ROD_AT: usize = 8;

fn underrun() -> Sense {
    Sense::illegal(Asc::COPY_TARGET_DEVICE_DATA_UNDERRUN)
}

/// Bytes a ROD of `ranges` in blocks of `block_size` represents.
pub fn rod_bytes(ranges: &[BlockRange], block_size: u32) -> Option<u64> {
    ranges.iter().try_fold(0u64, |acc, r| acc.checked_add(u64::from(r.blocks).checked_mul(u64::from(block_size))?))
}

/// Plan a WRITE USING TOKEN of `dst` ranges (blocks of `dst_bs`) from the
/// ROD `src` (blocks of `src_bs`) starting `offset_into_rod` destination
/// blocks in. At most `src.len() + dst.len()` runs.
pub fn plan_write(
    src: &[BlockRange],
    src_bs: u32,
    offset_into_rod: u64,
    dst: &[BlockRange],
    dst_bs: u32,
) -> Result<Vec<ByteRun>, Sense> {
    let (lo, hi) = (src_bs.min(dst_bs), src_bs.max(dst_bs));
    if lo == 0 || hi % lo != 0 {
        return Err(Sense::invalid_param_field(0, None));
    }
    let rod = rod_bytes(src, src_bs).ok_or_else(underrun)?;
    let skip = offset_into_rod
        .checked_mul(u64::from(dst_bs))
        .ok_or_else(|| Sense::invalid_param_field(OFFSET_INTO_ROD_AT, None))?;
    let need = rod_bytes(dst, dst_bs).ok_or_else(underrun)?;
    match rod.checked_sub(skip) {
        Some(avail) if avail >= need => {}
        _ => return Err(underrun()),
    }
    let mut runs = Vec::with_capacity(src.len() + dst.len());
    // Source cursor: which range, and how many bytes into it.
    let mut si = 0usize;
    let mut s_off = skip;
    // Skip whole source ranges the offset passes.
    while let Some(r) = src.get(si) {
        let len = u64::from(r.blocks) * u64::from(src_bs);
        if s_off < len {
            break;
        }
        s_off -= len;
        si += 1;
    }
    for d in dst {
        let mut d_pos = d.lba.checked_mul(u64::from(dst_bs)).ok_or_else(Sense::lba_out_of_range)?;
        let mut d_left = u64::from(d.blocks) * u64::from(dst_bs);
        while d_left > 0 {
            // `need <= avail` guarantees a source range remains.
            let Some(r) = src.get(si) else { return Err(underrun()) };
            let s_len = u64::from(r.blocks) * u64::from(src_bs);
            let take = (s_len - s_off).min(d_left);
            if take > 0 {
                let at = r.lba.checked_mul(u64::from(src_bs)).and_then(|b| b.checked_add(s_off));
                runs.push(ByteRun { src: at.ok_or_else(Sense::lba_out_of_range)?, dst: d_pos, len: take });
            }
            s_off += take;
            d_pos += take;
            d_left -= take;
            if s_off == s_len {
                si += 1;
                s_off = 0;
            }
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(lba: u64, blocks: u32) -> BlockRange {
        BlockRange { lba, blocks }
    }

    #[test]
    fn several_ranges_both_sides_with_offset() {
        // ROD: blocks 10..14 and 100..102 of a 512-byte LU (6 blocks, 3072 bytes).
        let src = [r(10, 4), r(100, 2)];
        let runs = plan_write(&src, 512, 1, &[r(0, 2), r(50, 3)], 512).expect("plan");
        assert_eq!(
            runs,
            vec![
                ByteRun { src: 11 * 512, dst: 0, len: 1024 },
                ByteRun { src: 13 * 512, dst: 50 * 512, len: 512 },
                ByteRun { src: 100 * 512, dst: 51 * 512, len: 1024 },
            ]
        );
        // Exactly the rest of the ROD; one block more underruns.
        assert!(plan_write(&src, 512, 1, &[r(0, 5)], 512).is_ok());
        let e = plan_write(&src, 512, 1, &[r(0, 6)], 512).expect_err("underrun");
        assert_eq!(e, Sense::illegal(Asc(0x0D, 0x04)));
        assert!(plan_write(&src, 512, 7, &[r(0, 1)], 512).is_err(), "offset past the ROD");
        assert!(plan_write(&src, 512, u64::MAX, &[r(0, 1)], 512).is_err(), "offset overflow");
    }

    #[test]
    fn mixed_block_sizes_use_destination_blocks_for_the_offset() {
        // 512 → 4096: ROD of 16 × 512 = 8 KiB = 2 destination blocks.
        let runs = plan_write(&[r(0, 8), r(64, 8)], 512, 1, &[r(3, 1)], 4096).expect("plan");
        assert_eq!(runs, vec![ByteRun { src: 64 * 512, dst: 3 * 4096, len: 4096 }]);
        // 4096 → 512: offset 3 × 512 into a 1-block ROD.
        let runs = plan_write(&[r(2, 1)], 4096, 3, &[r(0, 5)], 512).expect("plan");
        assert_eq!(runs, vec![ByteRun { src: 2 * 4096 + 1536, dst: 0, len: 2560 }]);
        assert!(plan_write(&[r(2, 1)], 4096, 3, &[r(0, 6)], 512).is_err());
        // Sizes that do not divide evenly.
        assert_eq!(plan_write(&[r(0, 1)], 4096, 0, &[r(0, 1)], 1536), Err(Sense::invalid_param_field(0, None)));
    }

    #[test]
    fn empty_ranges_and_partial_use_by_several_writes() {
        let src = [r(0, 0), r(8, 4), r(0, 0)];
        let a = plan_write(&src, 512, 0, &[r(0, 2), r(9, 0)], 512).expect("first half");
        let b = plan_write(&src, 512, 2, &[r(2, 2)], 512).expect("second half");
        assert_eq!(a, vec![ByteRun { src: 8 * 512, dst: 0, len: 1024 }]);
        assert_eq!(b, vec![ByteRun { src: 10 * 512, dst: 1024, len: 1024 }]);
    }

    proptest::proptest! {
        #[test]
        fn runs_cover_the_destination_exactly(
            src in proptest::collection::vec((0u64..1000, 0u32..50), 1..6),
            dst in proptest::collection::vec((0u64..1000, 0u32..50), 1..6),
            off in 0u64..100,
            bs in proptest::sample::select(vec![(512u32, 512u32), (512, 4096), (4096, 512), (4096, 4096)]),
        ) {
            let src: Vec<BlockRange> = src.into_iter().map(|(l, b)| r(l, b)).collect();
            let dst: Vec<BlockRange> = dst.into_iter().map(|(l, b)| r(l, b)).collect();
            if let Ok(runs) = plan_write(&src, bs.0, off, &dst, bs.1) {
                let total: u64 = runs.iter().map(|x| x.len).sum();
                proptest::prop_assert_eq!(total, rod_bytes(&dst, bs.1).unwrap_or(0));
                proptest::prop_assert!(runs.len() <= src.len() + dst.len());
            }
        }
    }
}
