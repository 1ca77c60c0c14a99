//! POPULATE TOKEN / WRITE USING TOKEN parameter-list validation.

use super::*;

const LIMITS: RodLimits = RodLimits {
    max_ranges: 8,
    max_inactivity_timeout: 3600,
    default_inactivity_timeout: 60,
    max_token_transfer_blocks: 1 << 20,
};
const CAP: u64 = 1000;

fn desc(lba: u64, blocks: u32) -> Vec<u8> {
    let mut d = lba.to_be_bytes().to_vec();
    d.extend_from_slice(&blocks.to_be_bytes());
    d.extend_from_slice(&[0; 4]);
    d
}

fn pt(flags: u8, timeout: u32, rod_type: u32, ranges: &[(u64, u32)]) -> Vec<u8> {
    let list: Vec<u8> = ranges.iter().flat_map(|&(l, b)| desc(l, b)).collect();
    let mut v = vec![0u8; PT_HEADER_LEN];
    v[0..2].copy_from_slice(&((PT_HEADER_LEN + list.len() - 2) as u16).to_be_bytes());
    v[2] = flags;
    v[4..8].copy_from_slice(&timeout.to_be_bytes());
    v[8..12].copy_from_slice(&rod_type.to_be_bytes());
    v[14..16].copy_from_slice(&(list.len() as u16).to_be_bytes());
    v.extend(list);
    v
}

fn wut(flags: u8, offset: u64, ranges: &[(u64, u32)]) -> Vec<u8> {
    let list: Vec<u8> = ranges.iter().flat_map(|&(l, b)| desc(l, b)).collect();
    let mut v = vec![0u8; WUT_HEADER_LEN];
    v[0..2].copy_from_slice(&((WUT_HEADER_LEN + list.len() - 2) as u16).to_be_bytes());
    v[2] = flags;
    v[8..16].copy_from_slice(&offset.to_be_bytes());
    v[16..528].fill(0xAB);
    v[534..536].copy_from_slice(&(list.len() as u16).to_be_bytes());
    v.extend(list);
    v
}

fn parse_pt(l: &[u8]) -> Result<PopulateParams, Sense> {
    parse_populate(l, l.len() as u32, CAP, &LIMITS)
}

#[test]
fn populate_token_parses() {
    let p = parse_pt(&pt(0x01, 0, 0, &[(0, 8), (100, 0), (8, 2)])).expect("ok");
    assert!(p.immed);
    assert_eq!(p.rod_type, RodType::POINT_IN_TIME_DEFAULT, "RTV=0 is point in time");
    assert_eq!(p.inactivity_timeout, 60, "0 → default");
    assert_eq!(
        p.ranges,
        vec![BlockRange { lba: 0, blocks: 8 }, BlockRange { lba: 100, blocks: 0 }, BlockRange { lba: 8, blocks: 2 }]
    );
    assert_eq!(p.total_blocks, 10);
    for t in CREATABLE_ROD_TYPES {
        assert_eq!(parse_pt(&pt(0x02, 3600, t, &[(0, 1)])).expect("type").rod_type, t);
    }
    assert_eq!(parse_pt(&pt(0x02, 5, 0x0080_FFFF, &[(0, 1)])).expect("any").rod_type, RodType::POINT_IN_TIME_DEFAULT);
    // ROD TYPE is ignored without RTV.
    assert_eq!(parse_pt(&pt(0, 5, 0x1234, &[(0, 1)])).expect("no rtv").rod_type, RodType::POINT_IN_TIME_DEFAULT);
}

#[test]
fn populate_token_rejections_and_their_codes() {
    // Timeout over the maximum.
    assert_eq!(parse_pt(&pt(0, 3601, 0, &[(0, 1)])), Err(Sense::invalid_param_field(4, None)));
    // Bad ROD types with RTV=1, among them the zero token and the internal type.
    for t in [0, 0x0080_0003, RodType::BLOCK_DEVICE_ZERO, 0xFFFF_FFFF] {
        assert_eq!(parse_pt(&pt(0x02, 0, t, &[(0, 1)])), Err(Sense::invalid_param_field(8, None)), "{t:x}");
    }
    // Out of range, with INFORMATION = the LBA; overflow too.
    assert_eq!(parse_pt(&pt(0, 0, 0, &[(0, 1), (999, 2)])), Err(Sense::lba_out_of_range().with_information(999)));
    assert_eq!(parse_pt(&pt(0, 0, 0, &[(u64::MAX, 2)])), Err(Sense::lba_out_of_range().with_information(u64::MAX)));
    assert!(parse_pt(&pt(0, 0, 0, &[(992, 8)])).is_ok(), "up to the last block");
    // Overlap (in any order), pointing at the later descriptor.
    assert_eq!(parse_pt(&pt(0, 0, 0, &[(10, 5), (0, 11)])), Err(Sense::invalid_param_field(14 + 2 + 16, None)));
    assert_eq!(parse_pt(&pt(0, 0, 0, &[(0, 4), (20, 1), (3, 1)])), Err(Sense::invalid_param_field(14 + 2 + 32, None)));
    // A list length field claiming more than arrived.
    let mut lie = pt(0, 0, 0, &[(0, 1)]);
    lie[14..16].copy_from_slice(&32u16.to_be_bytes());
    assert_eq!(parse_pt(&lie), Err(Sense::invalid_param_field(14, None)));
    // Total over the maximum token transfer size.
    let tiny = RodLimits { max_token_transfer_blocks: 4, ..LIMITS };
    assert_eq!(
        parse_populate(&pt(0, 0, 0, &[(0, 3), (3, 2)]), 48, CAP, &tiny),
        Err(Sense::invalid_param_field(14, None))
    );
}

#[test]
fn too_many_range_descriptors_is_26_08() {
    let nine: Vec<(u64, u32)> = (0..9).map(|i| (i * 10, 1)).collect();
    let e = parse_pt(&pt(0, 0, 0, &nine)).expect_err("nine > eight");
    assert_eq!(e, Sense::illegal(Asc::TOO_MANY_SEGMENT_DESCRIPTORS));
    assert_eq!(e.asc, Asc(0x26, 0x08));
    let eight: Vec<(u64, u32)> = (0..8).map(|i| (i * 10, 1)).collect();
    assert!(parse_pt(&pt(0, 0, 0, &eight)).is_ok());
    let l = wut(0, 0, &nine);
    assert_eq!(
        parse_write_using_token(&l, l.len() as u32, CAP, &LIMITS),
        Err(Sense::illegal(Asc::TOO_MANY_SEGMENT_DESCRIPTORS))
    );
    // A CDB length no 16-bit list could fill.
    assert_eq!(parse_populate(&[], 16 + 65536, CAP, &LIMITS), Err(Sense::invalid_cdb_field(10, None)));
}

#[test]
fn lengths_that_lie() {
    let l = pt(0, 0, 0, &[(0, 1), (5, 1)]);
    // Fewer bytes than announced.
    assert_eq!(parse_populate(&l[..40], l.len() as u32, CAP, &LIMITS), Err(length_error()));
    // DATA LENGTH off by one either way.
    for d in [l.len() as u16 - 3, l.len() as u16 - 1] {
        let mut x = l.clone();
        x[0..2].copy_from_slice(&d.to_be_bytes());
        assert_eq!(parse_pt(&x), Err(Sense::invalid_param_field(0, None)));
    }
    // Range list length: zero, not a multiple of 16, past the data.
    for rl in [0u16, 17, 48] {
        let mut x = l.clone();
        x[14..16].copy_from_slice(&rl.to_be_bytes());
        assert_eq!(parse_pt(&x), Err(Sense::invalid_param_field(14, None)), "{rl}");
    }
    // CDB length shorter than header + one descriptor.
    assert_eq!(parse_populate(&l, 16, CAP, &LIMITS), Err(Sense::invalid_cdb_field(10, None)));
    assert_eq!(parse_populate(&l, 0, CAP, &LIMITS), Err(Sense::invalid_cdb_field(10, None)));
}

#[test]
fn write_using_token_parses_and_validates() {
    let l = wut(0x03, 7, &[(0, 4), (10, 4)]);
    let w = parse_write_using_token(&l, l.len() as u32, CAP, &LIMITS).expect("ok");
    assert!(w.immed && w.del_tkn);
    assert_eq!(w.offset_into_rod, 7);
    assert!(w.token.iter().all(|&b| b == 0xAB));
    assert_eq!(w.total_blocks, 8);
    let l = wut(0, 0, &[(0, 4), (2, 4)]);
    assert_eq!(
        parse_write_using_token(&l, l.len() as u32, CAP, &LIMITS),
        Err(Sense::invalid_param_field(534 + 2 + 16, None))
    );
    let l = wut(0, 0, &[(997, 4)]);
    assert_eq!(
        parse_write_using_token(&l, l.len() as u32, CAP, &LIMITS),
        Err(Sense::lba_out_of_range().with_information(997))
    );
    let mut l = wut(0, 0, &[(0, 4)]);
    l[534..536].copy_from_slice(&8u16.to_be_bytes());
    assert_eq!(parse_write_using_token(&l, l.len() as u32, CAP, &LIMITS), Err(Sense::invalid_param_field(534, None)));
    assert_eq!(parse_write_using_token(&l, 536, CAP, &LIMITS), Err(Sense::invalid_cdb_field(10, None)));
}

proptest::proptest! {
    #[test]
    fn arbitrary_lists_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..700), len in 0u32..800) {
        let _ = parse_populate(&data, len, CAP, &LIMITS);
        let _ = parse_write_using_token(&data, len, CAP, &LIMITS);
    }
}
