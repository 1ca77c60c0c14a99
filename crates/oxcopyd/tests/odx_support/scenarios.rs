//! Token-copy scenarios shared by the plain end-to-end tests (temp dir) and
//! the XFS / ext4 loop-filesystem runs. Each checks the destination by
//! reading it back through the initiator, and the bytes around it.

use super::*;
use crate::xcopy_support::scenarios::{check_guard, guard, LUN_4K, LUN_A, LUN_B};
use crate::xcopy_support::SHARED;

/// POPULATE → RRTI → WRITE USING TOKEN between two LUs of one target, and
/// between two targets of one daemon (both directions), with the Windows
/// form of PT (RTV=0, IMMED=0, INACTIVITY TIMEOUT 0).
pub async fn across_luns_and_targets(d: &ODaemon, s: &Session) {
    let data = pattern(101, (2 * MIB) as usize);
    write(s, LUN_A, 1000, &data, 512).await;
    let blocks = (data.len() / 512) as u32;
    let t = populate(s, LUN_A, 257, &pt(None, vec![range(1000, blocks)])).await;

    // LUN A → LUN B.
    let g = guard(s, LUN_B, 50_000, data.len() as u64, 512, 102).await;
    wut_ok(s, LUN_B, 258, &wut(t, 0, vec![range(50_000, blocks)])).await;
    same(&read(s, LUN_B, 50_000, data.len() as u64, 512).await, &data, "A to B by token");
    check_guard(s, LUN_B, 50_000, data.len() as u64, 512, &g, "A to B by token").await;
    // Within LUN A, the same token again (it was not deleted).
    wut_ok(s, LUN_A, 259, &wut(t, 0, vec![range(200_000, blocks)])).await;
    same(&read(s, LUN_A, 200_000, data.len() as u64, 512).await, &data, "A to A by token");

    // OPEN/LUN A → SHARED/LUN 0: the token written over another target's session.
    let sh = d.session(SHARED).await;
    let g = guard(&sh, 0, 20_000, data.len() as u64, 512, 103).await;
    wut_ok(&sh, 0, 260, &wut(t, 0, vec![range(20_000, blocks)])).await;
    same(&read(&sh, 0, 20_000, data.len() as u64, 512).await, &data, "OPEN to SHARED by token");
    check_guard(&sh, 0, 20_000, data.len() as u64, 512, &g, "OPEN to SHARED").await;

    // SHARED/LUN 0 → OPEN/LUN B: populated on the other target.
    let back = pattern(104, MIB as usize);
    write(&sh, 0, 40_000, &back, 512).await;
    let t2 = populate(&sh, 0, 261, &pt(None, vec![range(40_000, 2048)])).await;
    wut_ok(s, LUN_B, 262, &wut(t2, 0, vec![range(300_000, 2048)])).await;
    same(&read(s, LUN_B, 300_000, MIB, 512).await, &back, "SHARED to OPEN by token");
    sh.logout().await.expect("logout");
}

/// Several source ranges and several destination ranges with OFFSET INTO
/// ROD, and one token used piecewise by several WRITE USING TOKENs.
pub async fn ranges_and_offsets(s: &Session) {
    // The ROD: three source ranges of LUN A, 16 + 40 + 8 = 64 blocks.
    let src = [(100u64, 16u32), (5000, 40), (9000, 8)];
    let mut rod = Vec::new();
    for (i, (lba, n)) in src.iter().enumerate() {
        let p = pattern(110 + i as u64, *n as usize * 512);
        write(s, LUN_A, *lba, &p, 512).await;
        rod.extend_from_slice(&p);
    }
    let t = populate(s, LUN_A, 300, &pt(None, src.iter().map(|&(l, n)| range(l, n)).collect())).await;

    // Two destination ranges (10 + 30 blocks) from 4 blocks into the ROD.
    let before = read(s, LUN_B, 190, 64 * 512, 512).await;
    let before2 = read(s, LUN_B, 6990, 64 * 512, 512).await;
    wut_ok(s, LUN_B, 301, &wut(t, 4, vec![range(200, 10), range(7000, 30)])).await;
    let mut m1 = before.clone();
    m1[10 * 512..20 * 512].copy_from_slice(&rod[4 * 512..14 * 512]);
    same(&read(s, LUN_B, 190, 64 * 512, 512).await, &m1, "first destination range");
    let mut m2 = before2.clone();
    m2[10 * 512..40 * 512].copy_from_slice(&rod[14 * 512..44 * 512]);
    same(&read(s, LUN_B, 6990, 64 * 512, 512).await, &m2, "second destination range");
    let i = rrti(s, LUN_B, 301).await;
    assert_eq!((i.response_to_sa, i.status, i.units, i.transfer_count), (0x11, ST_COMPLETED, 0xF1, 40), "{i:?}");
    assert_eq!(i.token_descriptors_length, 0, "no token after WUT: {i:?}");

    // The whole ROD in three pieces (20 + 20 + 24 blocks), each its own WUT,
    // out of order; a zero-length range in the middle of the last list.
    wut_ok(s, LUN_B, 302, &wut(t, 20, vec![range(20_020, 20)])).await;
    wut_ok(s, LUN_B, 303, &wut(t, 0, vec![range(20_000, 20)])).await;
    wut_ok(s, LUN_B, 304, &wut(t, 40, vec![range(20_040, 10), range(1, 0), range(20_050, 14)])).await;
    same(&read(s, LUN_B, 20_000, 64 * 512, 512).await, &rod, "a ROD copied piecewise");
    let i = rrti(s, LUN_B, 304).await;
    // Partial use of the ROD must not report 03h (Windows: not "complete").
    assert_eq!((i.status, i.transfer_count), (ST_COMPLETED, 24), "{i:?}");
}

/// 512 → 4096 and 4096 → 512, OFFSET INTO ROD in blocks of the LU written.
pub async fn block_sizes(s: &Session) {
    // 512 → 4096: 64 blocks of 512 = 8 of 4096.
    let data = pattern(120, 64 * 512);
    write(s, LUN_A, 8000, &data, 512).await;
    let t = populate(s, LUN_A, 400, &pt(None, vec![range(8000, 64)])).await;
    let g = guard(s, LUN_4K, 100, 8 * 4096, 4096, 121).await;
    wut_ok(s, LUN_4K, 401, &wut(t, 0, vec![range(100, 8)])).await;
    same(&read(s, LUN_4K, 100, 8 * 4096, 4096).await, &data, "512 to 4096");
    check_guard(s, LUN_4K, 100, 8 * 4096, 4096, &g, "512 to 4096").await;
    // Offset 1 (a 4096-byte block of the LU written = 8 source blocks), 7 blocks.
    wut_ok(s, LUN_4K, 402, &wut(t, 1, vec![range(500, 3), range(600, 4)])).await;
    same(&read(s, LUN_4K, 500, 3 * 4096, 4096).await, &data[4096..4 * 4096], "512 to 4096 with offset, range 1");
    same(&read(s, LUN_4K, 600, 4 * 4096, 4096).await, &data[4 * 4096..], "512 to 4096 with offset, range 2");

    // 4096 → 512: 4 blocks of 4096 = 32 of 512; offset 3 (512-byte blocks).
    let data = pattern(122, 4 * 4096);
    write(s, LUN_4K, 1000, &data, 4096).await;
    let t = populate(s, LUN_4K, 403, &pt(None, vec![range(1000, 4)])).await;
    let g = guard(s, LUN_A, 70_000, 32 * 512, 512, 123).await;
    wut_ok(s, LUN_A, 404, &wut(t, 0, vec![range(70_000, 32)])).await;
    same(&read(s, LUN_A, 70_000, 32 * 512, 512).await, &data, "4096 to 512");
    check_guard(s, LUN_A, 70_000, 32 * 512, 512, &g, "4096 to 512").await;
    wut_ok(s, LUN_A, 405, &wut(t, 3, vec![range(80_000, 29)])).await;
    same(&read(s, LUN_A, 80_000, 29 * 512, 512).await, &data[3 * 512..], "4096 to 512 with offset");
}

/// Point-in-time proof: overwrite the source between POPULATE TOKEN and
/// WRITE USING TOKEN; the destination gets the old data, the source keeps
/// the new. `len` bytes at LBA 2048 of LUN A → LBA 2048 of LUN B. Returns
/// the copy-method metrics of the WRITE USING TOKEN.
pub async fn point_in_time(d: &ODaemon, s: &Session, want_type: Option<u32>, len: u64) -> Methods {
    let old = pattern(130, len as usize);
    write(s, LUN_A, 2048, &old, 512).await;
    let blocks = (len / 512) as u32;
    let held0 = d.snapshot_bytes().await;
    let t = populate(s, LUN_A, 500, &pt(want_type, vec![range(2048, blocks)])).await;
    let ty = rod_type(&t);
    assert!((0x0080_0000..=0x0080_0003).contains(&ty), "a point-in-time token, got ROD type {ty:#010x}");
    // Overwrite: the whole range, then once more a single block in the middle.
    let new = pattern(131, len as usize);
    write(s, LUN_A, 2048, &new, 512).await;
    let mut newer = new.clone();
    let mid = (len / 2 / 512 * 512) as usize;
    newer[mid..mid + 4096].copy_from_slice(&pattern(132, 4096));
    write(s, LUN_A, 2048 + mid as u64 / 512, &newer[mid..mid + 4096], 512).await;
    // The old data is held for the token: a reflink snapshot is charged
    // in full when made; copy-on-write charges each preserved block, and
    // every block was overwritten.
    let held = d.snapshot_bytes().await;
    assert!(held >= held0 + len, "snapshot bytes held: {held0} before PT, {held} after the overwrite");
    let before = d.methods().await;
    wut_ok(s, LUN_B, 501, &wut(t, 0, vec![range(2048, blocks)])).await;
    let m = d.methods().await.since(before);
    same(&read(s, LUN_B, 2048, len, 512).await, &old, "point-in-time token: destination has the OLD data");
    same(&read(s, LUN_A, 2048, len, 512).await, &newer, "point-in-time token: source has the new data");
    // Used again after more writes: still the old data.
    write(s, LUN_A, 2048, &pattern(133, 4096), 512).await;
    let again = 2048 + u64::from(blocks);
    wut_ok(s, LUN_B, 502, &wut(t, 0, vec![range(again, blocks)])).await;
    same(&read(s, LUN_B, again, len, 512).await, &old, "point-in-time token used twice");
    m
}

/// Change-vulnerable: a write to the source range before the copy revokes
/// the token (23h/06h) and the destination is untouched; a write outside
/// the source ranges does not.
pub async fn change_vulnerable(s: &Session) {
    let data = pattern(140, (256 * KIB) as usize);
    write(s, LUN_A, 30_000, &data, 512).await;
    let t = populate(s, LUN_A, 600, &pt(Some(PIT_CHANGE_VULNERABLE), vec![range(30_000, 512)])).await;
    // Outside the range (just before and just after): the token stays valid.
    write(s, LUN_A, 29_999, &pattern(141, 512), 512).await;
    write(s, LUN_A, 30_512, &pattern(142, 512), 512).await;
    wut_ok(s, LUN_B, 601, &wut(t, 0, vec![range(30_000, 512)])).await;
    same(&read(s, LUN_B, 30_000, 256 * KIB, 512).await, &data, "change-vulnerable token before any change");
    // One block inside the range.
    write(s, LUN_A, 30_300, &pattern(143, 512), 512).await;
    let canary = pattern(144, (256 * KIB) as usize);
    write(s, LUN_B, 40_000, &canary, 512).await;
    let o = wut_raw(s, LUN_B, 602, &wut(t, 0, vec![range(40_000, 512)])).await;
    expect_token_error(&o, 0x06, "change-vulnerable token after a write to its source (TOKEN REVOKED)");
    same(&read(s, LUN_B, 40_000, 256 * KIB, 512).await, &canary, "a revoked token writes nothing");
    // RRTI of the failed WUT: either no record (Windows assumes none after
    // 23h/xx and does not ask: 24h/00h) or a final one carrying the sense.
    match s.receive_rod_token_information(LUN_B, 602).await {
        Ok(i) => {
            assert_eq!((i.response_to_sa, i.completion_status), (0x11, 0x02), "{i:?}");
            assert!([0x02, 0x60].contains(&i.status), "final status of a failed WUT: {i:?}");
        }
        Err(InitiatorError::ScsiStatus(o)) => {
            let sn = o.sense_info().expect("sense");
            assert_eq!((sn.key, sn.asc, sn.ascq), (5, 0x24, 0), "RRTI of a refused WUT: {sn:?}");
        }
        Err(e) => panic!("RRTI: {e}"),
    }
}

/// Access upon reference: the copy reads the source when the token is used.
pub async fn access_upon_reference(s: &Session) {
    let old = pattern(150, (512 * KIB) as usize);
    write(s, LUN_A, 50_000, &old, 512).await;
    let t = populate(s, LUN_A, 700, &pt(Some(AUR), vec![range(50_000, 1024)])).await;
    let new = pattern(151, (512 * KIB) as usize);
    write(s, LUN_A, 50_000, &new, 512).await;
    wut_ok(s, LUN_B, 701, &wut(t, 0, vec![range(50_000, 1024)])).await;
    same(&read(s, LUN_B, 50_000, 512 * KIB, 512).await, &new, "access-upon-reference token sees the new data");
}
