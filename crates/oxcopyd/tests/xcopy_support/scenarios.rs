//! Copy scenarios shared by the plain end-to-end tests and the XFS / ext4
//! runs. Each one checks the destination by reading it back through the
//! initiator and checks that the bytes around the destination range are
//! untouched.

use super::*;
use oxcopy_initiator::xcopy::{ListIdUsage, ParamList, Segment, CSCD_THIS_LU};

/// LUNs of [`OPEN`].
pub const LUN_A: u64 = 0;
pub const LUN_B: u64 = 1;
pub const LUN_4K: u64 = 2;

/// Send a list and require GOOD.
pub async fn copy_ok(s: &Session, lun: u64, list: &ParamList, what: &str) {
    let o = tokio::time::timeout(STEP, s.extended_copy(lun, list)).await.expect("EXTENDED COPY hung").expect(what);
    assert!(o.is_good(), "{what}: status {:#x} sense {:?}", o.status, o.sense_info());
}

/// A guard pattern around `[lba, lba + len)`, returned as (before, after)
/// to compare later.
pub async fn guard(s: &Session, lun: u64, lba: u64, len: u64, bs: u32, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let g = 64 * KIB;
    let before = pattern(seed, g as usize);
    let after = pattern(seed + 1, g as usize);
    write(s, lun, lba - g / u64::from(bs), &before, bs).await;
    write(s, lun, lba + len / u64::from(bs), &after, bs).await;
    (before, after)
}

/// Check the guard of [`guard`].
pub async fn check_guard(s: &Session, lun: u64, lba: u64, len: u64, bs: u32, g: &(Vec<u8>, Vec<u8>), what: &str) {
    let n = g.0.len() as u64;
    same(&read(s, lun, lba - n / u64::from(bs), n, bs).await, &g.0, &format!("{what}: bytes before the destination"));
    same(&read(s, lun, lba + len / u64::from(bs), n, bs).await, &g.1, &format!("{what}: bytes after the destination"));
}

/// Within one LU (CSCD FFFFh and an E4h naming the same LU), and between
/// two LUs of one target.
pub async fn within_and_between_lus(s: &Session) {
    let data = pattern(11, (2 * MIB) as usize);
    write(s, LUN_A, 1000, &data, 512).await;
    let blocks = (data.len() / 512) as u16;

    // Within LUN A, by FFFFh.
    let dst = 200_000;
    let g = guard(s, LUN_A, dst, data.len() as u64, 512, 12).await;
    let list = ParamList {
        list_id: 1,
        usage: ListIdUsage::Discard,
        cscds: vec![],
        segments: vec![Segment::BlockToBlock {
            src: CSCD_THIS_LU,
            dst: CSCD_THIS_LU,
            dc: false,
            blocks,
            src_lba: 1000,
            dst_lba: dst,
        }],
    };
    copy_ok(s, LUN_A, &list, "copy within a LU (FFFFh)").await;
    same(&read(s, LUN_A, dst, data.len() as u64, 512).await, &data, "within a LU");
    check_guard(s, LUN_A, dst, data.len() as u64, 512, &g, "within a LU").await;

    // Within LUN A, by designator, one block.
    let a = designator(s, LUN_A).await;
    let one = 300_000;
    let g = guard(s, LUN_A, one, 512, 512, 13).await;
    copy_ok(s, LUN_A, &b2b_list(2, a.clone(), a.clone(), 1, 1000, one), "one block").await;
    same(&read(s, LUN_A, one, 512, 512).await, &data[..512], "one block");
    check_guard(s, LUN_A, one, 512, 512, &g, "one block").await;

    // LUN A → LUN B, sent to LUN B.
    let b = designator(s, LUN_B).await;
    let dst = 50_000;
    let g = guard(s, LUN_B, dst, data.len() as u64, 512, 14).await;
    copy_ok(s, LUN_B, &b2b_list(3, a.clone(), b.clone(), blocks, 1000, dst), "LUN A to LUN B").await;
    same(&read(s, LUN_B, dst, data.len() as u64, 512).await, &data, "between LUs");
    check_guard(s, LUN_B, dst, data.len() as u64, 512, &g, "between LUs").await;

    // The largest 02h segment: 65535 blocks, A → B.
    let big = pattern(15, 65535 * 512);
    write(s, LUN_A, 400_000, &big, 512).await;
    let dst = 100_000;
    let g = guard(s, LUN_B, dst, big.len() as u64, 512, 16).await;
    copy_ok(s, LUN_A, &b2b_list(4, a, b, 65535, 400_000, dst), "65535 blocks").await;
    same(&read(s, LUN_B, dst, big.len() as u64, 512).await, &big, "65535 blocks");
    check_guard(s, LUN_B, dst, big.len() as u64, 512, &g, "65535 blocks").await;
}

/// Overlapping ranges inside one LU, both directions, against a model.
pub async fn overlapping(s: &Session) {
    let a = designator(s, LUN_A).await;
    for (i, (src, dst)) in [(10_000u64, 10_003u64), (20_003, 20_000), (30_000, 30_000 + 2048)].into_iter().enumerate() {
        let len = 4096u64; // blocks
        let lo = src.min(dst);
        let span = len + src.abs_diff(dst);
        let data = pattern(20 + i as u64, (span * 512) as usize);
        write(s, LUN_A, lo, &data, 512).await;
        let mut model = data.clone();
        let (so, d_o) = (((src - lo) * 512) as usize, ((dst - lo) * 512) as usize);
        model.copy_within(so..so + (len * 512) as usize, d_o);
        let g = guard(s, LUN_A, lo, span * 512, 512, 30 + i as u64).await;
        copy_ok(s, LUN_A, &b2b_list(5, a.clone(), a.clone(), len as u16, src, dst), "overlapping").await;
        same(&read(s, LUN_A, lo, span * 512, 512).await, &model, &format!("overlap {src} -> {dst}"));
        check_guard(s, LUN_A, lo, span * 512, 512, &g, "overlapping").await;
    }
}

/// 512 ↔ 4096: counts in source blocks, in destination blocks (DC), the
/// byte-offset segment, and the refusal of an inexact segment.
pub async fn block_sizes(s: &Session) {
    let a = designator(s, LUN_A).await;
    let k = designator(s, LUN_4K).await;
    let data = pattern(40, (256 * KIB) as usize);
    write(s, LUN_A, 8000, &data, 512).await;

    // 512 → 4096, counted in 512-byte source blocks.
    let g = guard(s, LUN_4K, 100, data.len() as u64, 4096, 41).await;
    copy_ok(s, LUN_A, &b2b_list(6, a.clone(), k.clone(), 512, 8000, 100), "512 to 4096").await;
    same(&read(s, LUN_4K, 100, data.len() as u64, 4096).await, &data, "512 to 4096");
    check_guard(s, LUN_4K, 100, data.len() as u64, 4096, &g, "512 to 4096").await;

    // 4096 → 512 with DC: 64 destination blocks of 512 = 8 source blocks.
    let mut list = b2b_list(7, k.clone(), a.clone(), 64, 100, 60_000);
    if let Segment::BlockToBlock { dc, .. } = &mut list.segments[0] {
        *dc = true;
    }
    let g = guard(s, LUN_A, 60_000, 32 * KIB, 512, 42).await;
    copy_ok(s, LUN_4K, &list, "4096 to 512 (DC)").await;
    same(&read(s, LUN_A, 60_000, 32 * KIB, 512).await, &data[..(32 * KIB) as usize], "4096 to 512");
    check_guard(s, LUN_A, 60_000, 32 * KIB, 512, &g, "4096 to 512").await;

    // Byte offsets (0Ah): 1000 bytes from LUN A (LBA 8001 + 17) to LUN 4K (LBA 300 + 100).
    let before = read(s, LUN_4K, 300, 8192, 4096).await;
    let list = ParamList {
        list_id: 8,
        usage: ListIdUsage::Discard,
        cscds: vec![Cscd::new(a.clone(), 0), Cscd::new(k.clone(), 0)],
        segments: vec![Segment::BlockToBlockOffset {
            src: 0,
            dst: 1,
            bytes: 1000,
            src_lba: 8001,
            dst_lba: 300,
            src_offset: 17,
            dst_offset: 100,
        }],
    };
    copy_ok(s, LUN_A, &list, "0Ah byte offsets").await;
    let mut model = before.clone();
    model[100..1100].copy_from_slice(&data[512 + 17..512 + 17 + 1000]);
    same(&read(s, LUN_4K, 300, 8192, 4096).await, &model, "0Ah byte offsets");

    // Inexact: 7 source blocks of 512 are not whole 4096-byte blocks.
    let before = read(s, LUN_4K, 400, 8192, 4096).await;
    let o = s.extended_copy(LUN_A, &b2b_list(9, a, k, 7, 8000, 400)).await.expect("EXTENDED COPY");
    let sense = expect_sense(&o, SenseKey::COPY_ABORTED, Asc::UNEXPECTED_INEXACT_SEGMENT, "inexact segment");
    assert_eq!(sense.command_specific, Some(0), "segment index");
    same(&read(s, LUN_4K, 400, 8192, 4096).await, &before, "inexact segment changes nothing");
}

/// Copy `len` bytes (a multiple of 256 MiB or less) of LUN A to LUN B with
/// 0Ah segments after writing real data at a few places; the rest stays
/// sparse. Verified by reading the data regions back through the initiator
/// and comparing the whole ranges in the backing files.
pub async fn large(d: &XDaemon, s: &Session, len: u64) {
    let a = designator(s, LUN_A).await;
    let b = designator(s, LUN_B).await;
    let spots: Vec<u64> =
        [0, len / 3, len / 2 + 4096 * 7, len - 4 * MIB].into_iter().map(|o| o / 4096 * 4096).collect();
    for (i, off) in spots.iter().enumerate() {
        fill_file(&d.file("open0.img"), *off, &pattern(50 + i as u64, (4 * MIB) as usize));
    }
    let per = 256 * MIB;
    let mut segments = Vec::new();
    let mut done = 0;
    while done < len {
        let n = (len - done).min(per);
        segments.push(Segment::BlockToBlockOffset {
            src: 0,
            dst: 1,
            bytes: n as u32,
            src_lba: done / 512,
            dst_lba: done / 512,
            src_offset: 0,
            dst_offset: 0,
        });
        done += n;
    }
    let list =
        ParamList { list_id: 10, usage: ListIdUsage::Hold, cscds: vec![Cscd::new(a, 0), Cscd::new(b, 0)], segments };
    let t = std::time::Instant::now();
    copy_ok(s, LUN_A, &list, "large copy").await;
    eprintln!("copied {} MiB in {:?}", len / MIB, t.elapsed());
    let st = s.copy_status(LUN_A, 10).await.expect("COPY STATUS");
    assert_eq!((st.status, st.bytes()), (1, len), "{st:?}");
    for off in &spots {
        let want = file_bytes(&d.file("open0.img"), *off, 4 * MIB);
        same(&read(s, LUN_B, off / 512, 4 * MIB, 512).await, &want, "large copy data region");
    }
    same_files(&d.file("open0.img"), 0, &d.file("open1.img"), 0, len, "large copy");
}
