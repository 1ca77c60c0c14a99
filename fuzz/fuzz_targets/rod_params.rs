//! POPULATE TOKEN / WRITE USING TOKEN parameter lists
//! (`rod_params::parse_populate`, `parse_write_using_token`) and, when both
//! parse, the WRITE USING TOKEN plan (`rod_plan::plan_write`).
//!
//! Input: `sel` (bit 0..1: source block size, 2..3: destination block size,
//! bit 7: take the parameter list lengths from the input instead of the
//! lists' lengths), capacity (u32, blocks), PT list length (u16), the two
//! lengths as the CDB would claim them (u16 each, with bit 7), then the PT
//! list and the WUT list.
//!
//! Properties: nothing panics; parsed ranges respect the capacity and the
//! transfer limit; a plan moves exactly the bytes the destination ranges
//! hold, each run inside its destination range list and the ROD.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oxcopy_scsi::copy::rod_params::{parse_populate, parse_write_using_token, RodLimits};
use oxcopy_scsi::copy::rod_plan::{plan_write, rod_bytes};

const LIMITS: RodLimits = RodLimits {
    max_ranges: 8,
    max_inactivity_timeout: 3600,
    default_inactivity_timeout: 60,
    max_token_transfer_blocks: 1 << 20,
};

fn bs(bits: u8) -> u32 {
    [512, 4096, 520, 0][usize::from(bits & 3)]
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 11 {
        return;
    }
    let sel = data[0];
    let capacity = u64::from(u32::from_be_bytes([data[1], data[2], data[3], data[4]]));
    let pt_len = usize::from(u16::from_be_bytes([data[5], data[6]]));
    let claimed = [u16::from_be_bytes([data[7], data[8]]), u16::from_be_bytes([data[9], data[10]])];
    let body = &data[11..];
    let (pt, wut) = body.split_at(pt_len.min(body.len()));
    let (src_bs, dst_bs) = (bs(sel), bs(sel >> 2));
    let lens = if sel & 0x80 != 0 {
        [u32::from(claimed[0]), u32::from(claimed[1])]
    } else {
        [pt.len() as u32, wut.len() as u32]
    };
    let p = parse_populate(pt, lens[0], capacity, &LIMITS);
    let w = parse_write_using_token(wut, lens[1], capacity, &LIMITS);
    for r in p.iter().flat_map(|p| &p.ranges).chain(w.iter().flat_map(|w| &w.ranges)) {
        assert!(r.lba.checked_add(u64::from(r.blocks)).is_some_and(|end| end <= capacity), "range past capacity");
    }
    if let Ok(p) = &p {
        assert!(p.total_blocks <= LIMITS.max_token_transfer_blocks);
        assert!(p.inactivity_timeout <= LIMITS.max_inactivity_timeout);
    }
    let (Ok(p), Ok(w)) = (p, w) else { return };
    let Ok(runs) = plan_write(&p.ranges, src_bs, w.offset_into_rod, &w.ranges, dst_bs) else { return };
    let need = rod_bytes(&w.ranges, dst_bs).expect("a plan exists, so the destination size fits");
    let rod = rod_bytes(&p.ranges, src_bs).expect("a plan exists, so the ROD size fits");
    assert_eq!(runs.iter().map(|r| r.len).sum::<u64>(), need, "the plan moves what the destination holds");
    assert!(runs.len() <= p.ranges.len() + w.ranges.len());
    assert!(need <= rod);
    for r in &runs {
        assert!(r.len > 0);
        let in_src = p.ranges.iter().any(|s| {
            let a = s.lba * u64::from(src_bs);
            r.src >= a && r.src + r.len <= a + u64::from(s.blocks) * u64::from(src_bs)
        });
        let in_dst = w.ranges.iter().any(|d| {
            let a = d.lba * u64::from(dst_bs);
            r.dst >= a && r.dst + r.len <= a + u64::from(d.blocks) * u64::from(dst_bs)
        });
        assert!(in_src && in_dst, "run {r:?} outside its ranges");
    }
});
