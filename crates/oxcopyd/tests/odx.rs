//! ODX token copy end to end, black box: the in-process daemon (LUN files in
//! a temp dir, 127.0.0.1 on a port it picks) driven over the wire by our
//! initiator — POPULATE TOKEN, RECEIVE ROD TOKEN INFORMATION, WRITE USING
//! TOKEN, REPORT ALL ROD TOKENS, COPY OPERATION ABORT; point-in-time,
//! change-vulnerable, access-upon-reference and zero tokens; IMMED with RRTI
//! polling; expiry, DEL_TKN, forgery; the Windows and ddpt expectations of
//! the digest (§4.5, §6, §10.1, §10.3); token scope.
//!
//! Every loop is bounded in count and time; the daemon is stopped by the
//! test that started it.

mod common;
mod odx_support;
mod xcopy_support;

use bytes::Bytes;
use odx_support::scenarios;
use odx_support::*;
use oxcopy_initiator::odx::{self, zero_token, BlockRange, PopulateToken, WriteUsingToken};
use oxcopy_initiator::{DataDir, InitiatorError, Session, STATUS_TASK_ABORTED};
use oxcopy_scsi::{Asc, SenseKey};
use std::time::{Duration, Instant};
use xcopy_support::scenarios::{LUN_4K, LUN_A, LUN_B};
use xcopy_support::{file_bytes, Sizes, OPEN, OTHER_INITIATOR, PRIVATE, SHARED, STEP};

async fn daemon() -> (ODaemon, tempfile::TempDir) {
    ODaemon::start(Sizes::default(), Domain::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn populate_rrti_write_across_luns_and_targets() {
    let (d, _dir) = daemon().await;
    let s = d.session(OPEN).await;
    scenarios::across_luns_and_targets(&d, &s).await;
    s.logout().await.expect("logout");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_ranges_offset_into_rod_and_partial_use() {
    let (d, _dir) = daemon().await;
    let s = d.session(OPEN).await;
    scenarios::ranges_and_offsets(&s).await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_sizes_512_and_4096_both_directions() {
    let (d, _dir) = daemon().await;
    let s = d.session(OPEN).await;
    scenarios::block_sizes(&s).await;
    d.shutdown().await;
}

/// On whatever filesystem holds the temp dir (the loop-filesystem runs
/// are in odx_fs.rs): PIT default, persistent and the default type a
/// copy manager picks when asked for "any point in time" (0080FFFFh is a
/// request-only type, so the token must carry a concrete PIT type).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_in_time_token_copies_the_old_data() {
    let (d, _dir) = daemon().await;
    let s = d.session(OPEN).await;
    scenarios::point_in_time(&d, &s, Some(PIT_DEFAULT), 4 * MIB).await;
    let (d2, _dir2) = daemon().await;
    let s2 = d2.session(OPEN).await;
    scenarios::point_in_time(&d2, &s2, Some(PIT_PERSISTENT), MIB).await;
    d.shutdown().await;
    d2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_vulnerable_token_is_revoked_by_a_write() {
    let (d, _dir) = daemon().await;
    let s = d.session(OPEN).await;
    scenarios::change_vulnerable(&s).await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_upon_reference_token_sees_new_data() {
    let (d, _dir) = daemon().await;
    let s = d.session(OPEN).await;
    scenarios::access_upon_reference(&s).await;
    d.shutdown().await;
}

/// The block device zero ROD token zero-fills every range (both block
/// sizes, several ranges, an offset), touches nothing else, and cannot be
/// made by POPULATE TOKEN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_token_zero_fills() {
    let (d, _dir) = daemon().await;
    let s = d.session(OPEN).await;
    let junk = pattern(200, (4 * MIB) as usize);
    write(&s, LUN_B, 10_000, &junk, 512).await;
    wut_ok(&s, LUN_B, 800, &wut(zero_token(), 0, vec![range(10_100, 100), range(12_000, 2048)])).await;
    let mut model = junk.clone();
    model[100 * 512..200 * 512].fill(0);
    model[2000 * 512..4048 * 512].fill(0);
    same(&read(&s, LUN_B, 10_000, 4 * MIB, 512).await, &model, "zero token on 512-byte blocks");
    // OFFSET INTO ROD is meaningless for zeros but legal.
    wut_ok(&s, LUN_B, 801, &wut(zero_token(), 7, vec![range(14_000, 8)])).await;
    model[4000 * 512..4008 * 512].fill(0);
    same(&read(&s, LUN_B, 10_000, 4 * MIB, 512).await, &model, "zero token with an offset");
    let junk4 = pattern(201, MIB as usize);
    write(&s, LUN_4K, 300, &junk4, 4096).await;
    wut_ok(&s, LUN_4K, 802, &wut(zero_token(), 0, vec![range(301, 254)])).await;
    let mut m4 = junk4.clone();
    m4[4096..255 * 4096].fill(0);
    same(&read(&s, LUN_4K, 300, MIB, 4096).await, &m4, "zero token on 4096-byte blocks");
    // PT cannot produce a zero token.
    let o = s.populate_token(LUN_A, 803, &pt(Some(ZERO), vec![range(0, 8)])).await.expect("PT sent");
    assert!(o.is_check_condition(), "PT with ROD type FFFF0001h must fail: {:?}", o.sense_info());
    let sn = o.sense_info().expect("sense");
    assert!(
        (sn.key, sn.asc, sn.ascq) == (5, 0x26, 0) || (sn.key, sn.asc, sn.ascq) == (5, 0x23, 0x01),
        "PT of a zero token: {sn:?}"
    );
    d.shutdown().await;
}

/// Set up a slow token copy: an access-upon-reference token (made under
/// `list_id - 1`) over LUN A's 512 MiB from LBA 1, to be written to LBA 0
/// of LUN A. Overlapping ranges of one LU take the read/write path; with
/// 1 MiB chunks that takes long enough to be seen in progress and to be
/// stopped. Returns (token, blocks, the 4 MiB written at byte 512).
async fn start_slow_wut(d: &ODaemon, s: &Session, list_id: u32, seed: u64) -> (Token, u64, Vec<u8>) {
    d.running.as_ref().unwrap().registry.set_copy_chunk_bytes(MIB);
    let len = 512 * MIB;
    let head = pattern(seed, (4 * MIB) as usize);
    fill_file(&d.file("open0.img"), 512, &head);
    fill_file(&d.file("open0.img"), len - MIB, &pattern(seed + 1, MIB as usize));
    let mut ranges = Vec::new();
    let mut done = 0;
    while done < len {
        let n = (len - done).min(64 * MIB);
        ranges.push(range(1 + done / 512, (n / 512) as u32));
        done += n;
    }
    let t = populate(s, LUN_A, list_id - 1, &PopulateToken { rod_type: Some(AUR), ranges, ..Default::default() }).await;
    (t, len / 512, head)
}

/// IMMED=1: WRITE USING TOKEN returns at once; RRTI reports 11h/12h with a
/// growing count, then 01h with the whole count. IMMED=1 on POPULATE TOKEN:
/// RRTI ends with the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immed_with_rrti_polling() {
    let (d, _dir) = ODaemon::start(Sizes { open: 768 * MIB, ..Sizes::default() }, Domain::default()).await;
    let s = d.session(OPEN).await;
    let (t, blocks, head) = start_slow_wut(&d, &s, 901, 210).await;
    let w = WriteUsingToken { immed: true, ..wut(t, 0, split(0, blocks)) };
    let t0 = Instant::now();
    wut_ok(&s, LUN_A, 901, &w).await;
    let returned = t0.elapsed();
    let (fin, seen) = poll_rrti(&s, LUN_A, 901, Duration::from_secs(300)).await;
    eprintln!(
        "IMMED WUT returned after {returned:?}; {} in-progress reports; done after {:?}",
        seen.len(),
        t0.elapsed()
    );
    assert!(!seen.is_empty(), "an IMMED copy of 512 MiB in 1 MiB chunks was never seen in progress");
    for i in &seen {
        assert!([0x11, 0x12].contains(&i.status), "in progress: {i:?}");
        assert_eq!((i.response_to_sa, i.units), (0x11, 0xF1), "{i:?}");
        assert!(i.transfer_count <= blocks, "{i:?}");
        assert_ne!(i.delay_ms, 0xFFFF_FFFE, "not final yet: {i:?}");
    }
    assert!(seen.windows(2).all(|w| w[0].transfer_count <= w[1].transfer_count), "count never goes back");
    assert_eq!((fin.response_to_sa, fin.status, fin.completion_status), (0x11, ST_COMPLETED, 0), "{fin:?}");
    assert_eq!(fin.transfer_count, blocks, "{fin:?}");
    same(&file_bytes(&d.file("open0.img"), 0, 4 * MIB), &head, "IMMED copy result");

    // IMMED on POPULATE TOKEN.
    let p = PopulateToken { immed: true, ..pt(None, vec![range(0, 2048)]) };
    let o = s.populate_token(LUN_B, 910, &p).await.expect("PT sent");
    assert!(o.is_good(), "IMMED PT: {:?}", o.sense_info());
    let (fin, _) = poll_rrti(&s, LUN_B, 910, STEP).await;
    assert_eq!((fin.response_to_sa, fin.status, fin.transfer_count), (0x10, ST_COMPLETED, 2048), "{fin:?}");
    assert!(fin.token.is_some(), "IMMED PT: RRTI has the token");
    d.shutdown().await;
}

/// `blocks` blocks from `lba` as range descriptors of at most 2^20 blocks.
fn split(lba: u64, blocks: u64) -> Vec<BlockRange> {
    let mut v = Vec::new();
    let mut done = 0;
    while done < blocks {
        let n = (blocks - done).min(1 << 20);
        v.push(range(lba + done, n as u32));
        done += n;
    }
    v
}

/// COPY OPERATION ABORT stops a running WRITE USING TOKEN: IMMED (the
/// abort comes after GOOD) and synchronous (the abort overtakes the
/// command); RRTI then reports 60h with the blocks done, the bytes past
/// them are untouched, and the LU works. An unknown list id → 24h/00h.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_operation_abort_mid_copy() {
    let (d, _dir) = ODaemon::start(Sizes { open: 768 * MIB, ..Sizes::default() }, Domain::default()).await;
    let s = d.session(OPEN).await;
    let o = s.copy_operation_abort(LUN_A, 0xDEAD).await.expect("COA sent");
    expect_sense(&o, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB, "abort of an unknown list id");
    for (round, immed) in [true, false].into_iter().enumerate() {
        let list_id = 1001 + 10 * round as u32;
        let (t, blocks, head) = start_slow_wut(&d, &s, list_id, 220 + round as u64).await;
        let len = blocks * 512;
        let tail = file_bytes(&d.file("open0.img"), len - MIB, MIB);
        let w = WriteUsingToken { immed, ..wut(t, 0, split(0, blocks)) };
        let list = Bytes::from(w.encode());
        let pending = s
            .submit(
                LUN_A,
                &odx::cdb::token_out(odx::sa::WRITE_USING_TOKEN, list_id, list.len() as u32),
                DataDir::Write { data: list },
            )
            .await
            .expect("WUT submitted");
        let pending = if immed {
            let o = tokio::time::timeout(STEP, pending).await.expect("IMMED WUT answers").expect("WUT");
            assert!(o.is_good(), "IMMED WUT: {:?}", o.sense_info());
            None
        } else {
            Some(pending)
        };
        // Wait for progress (the RRTI may overtake the WUT: retry while unknown).
        let t0 = Instant::now();
        loop {
            match s.receive_rod_token_information(LUN_A, list_id).await {
                Ok(i) if i.in_progress() && i.transfer_count >= 16_384 => break,
                Ok(i) => assert!(i.in_progress(), "finished before it could be aborted: {i:?}"),
                Err(InitiatorError::ScsiStatus(_)) if t0.elapsed() < STEP => {}
                Err(e) => panic!("RRTI: {e}"),
            }
            assert!(t0.elapsed() < STEP, "no progress within {STEP:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if immed {
            // Another I_T nexus (same initiator, other ISID) cannot abort it.
            let other = d.session_with_isid(OPEN, [0x80, 0, 0, 0x0d, 0, 0x55]).await;
            let o = other.copy_operation_abort(LUN_A, list_id).await.expect("COA sent");
            expect_sense(&o, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB, "abort from another nexus");
            assert!(rrti(&s, LUN_A, list_id).await.in_progress(), "still running after a foreign abort");
            other.logout().await.expect("logout");
        }
        let o = s.copy_operation_abort(LUN_A, list_id).await.expect("COA sent");
        assert!(o.is_good(), "COPY OPERATION ABORT: {:?}", o.sense_info());
        if let Some(p) = pending {
            match tokio::time::timeout(STEP, p).await.expect("aborted WUT resolves") {
                Ok(o) => assert!(
                    o.status == STATUS_TASK_ABORTED || o.is_check_condition(),
                    "an aborted synchronous WUT must not be GOOD: status {:#x}",
                    o.status
                ),
                Err(InitiatorError::Aborted) => {}
                Err(e) => panic!("aborted WUT: {e}"),
            }
        }
        let (fin, _) = poll_rrti(&s, LUN_A, list_id, STEP).await;
        eprintln!("abort (immed={immed}): {fin:?}");
        assert_eq!((fin.response_to_sa, fin.status), (0x11, ST_TERMINATED), "{fin:?}");
        assert!(fin.transfer_count >= 16_384 && fin.transfer_count < blocks, "{fin:?}");
        assert!(fin.transfer_count * 512 + MIB <= len, "stopped too late to check the tail: {fin:?}");
        same(&file_bytes(&d.file("open0.img"), 0, 4 * MIB), &head, "the copied head");
        same(&file_bytes(&d.file("open0.img"), len - MIB, MIB), &tail, "the tail is untouched after the abort");
        let x = pattern(229, 4096);
        write(&s, LUN_A, 1_500_000, &x, 512).await;
        same(&read(&s, LUN_A, 1_500_000, 4096, 512).await, &x, "I/O after the abort");
    }
    d.shutdown().await;
}

/// A token with a 1 s inactivity timeout, unused, expires (23h/07h); an
/// INACTIVITY TIMEOUT above the maximum is refused (26h/00h).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token() {
    let (d, _dir) =
        ODaemon::start(Sizes::default(), Domain { max_inactivity_timeout: Some(600), ..Default::default() }).await;
    let s = d.session(OPEN).await;
    write(&s, LUN_A, 0, &pattern(230, 64 * 512), 512).await;
    let p = PopulateToken { inactivity_timeout: 1, ..pt(None, vec![range(0, 64)]) };
    let t = populate(&s, LUN_A, 1100, &p).await;
    let canary = pattern(231, 64 * 512);
    write(&s, LUN_B, 0, &canary, 512).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let o = wut_raw(&s, LUN_B, 1101, &wut(t, 0, vec![range(0, 64)])).await;
    expect_token_error(&o, 0x07, "a token unused beyond its inactivity timeout (TOKEN EXPIRED)");
    same(&read(&s, LUN_B, 0, 64 * 512, 512).await, &canary, "an expired token writes nothing");
    let p = PopulateToken { inactivity_timeout: 601, ..pt(None, vec![range(0, 64)]) };
    let o = s.populate_token(LUN_A, 1102, &p).await.expect("PT sent");
    expect_sense(&o, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_PARAMETER_LIST, "timeout above the maximum");
    d.shutdown().await;
}

/// DEL_TKN: the write succeeds, later uses of the token are 23h/09h.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_tkn_deletes_the_token() {
    let (d, _dir) = daemon().await;
    let s = d.session(OPEN).await;
    let data = pattern(240, 64 * 512);
    write(&s, LUN_A, 0, &data, 512).await;
    let t = populate(&s, LUN_A, 1200, &pt(None, vec![range(0, 64)])).await;
    wut_ok(&s, LUN_B, 1201, &WriteUsingToken { del_tkn: true, ..wut(t, 0, vec![range(0, 32)]) }).await;
    same(&read(&s, LUN_B, 0, 32 * 512, 512).await, &data[..32 * 512], "the DEL_TKN write");
    let o = wut_raw(&s, LUN_B, 1202, &wut(t, 32, vec![range(32, 32)])).await;
    expect_token_error(&o, 0x09, "a deleted token (TOKEN DELETED)");
    let o = wut_raw(&s, LUN_A, 1203, &wut(t, 0, vec![range(1000, 1)])).await;
    expect_token_error(&o, 0x09, "a deleted token on another LU");
    d.shutdown().await;
}

/// Destination ranges needing more than the ROD holds past OFFSET INTO ROD
/// → ILLEGAL REQUEST 0Dh/04h, nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_longer_than_the_rod() {
    let (d, _dir) = daemon().await;
    let s = d.session(OPEN).await;
    write(&s, LUN_A, 0, &pattern(250, 16 * 512), 512).await;
    let t = populate(&s, LUN_A, 1300, &pt(None, vec![range(0, 16)])).await;
    let canary = pattern(251, 64 * 512);
    write(&s, LUN_B, 100, &canary, 512).await;
    for (i, w) in [
        wut(t, 0, vec![range(100, 17)]),
        wut(t, 0, vec![range(100, 8), range(120, 9)]),
        wut(t, 10, vec![range(100, 7)]),
        wut(t, 16, vec![range(100, 1)]),
        wut(t, u64::MAX / 2, vec![range(100, 1)]),
    ]
    .iter()
    .enumerate()
    {
        let o = wut_raw(&s, LUN_B, 1301 + i as u32, w).await;
        let what = format!(
            "case {i}: {} dst blocks from offset {}",
            w.ranges.iter().map(|r| r.blocks).sum::<u32>(),
            w.offset_into_rod
        );
        if i == 4 {
            // An offset beyond any ROD: underrun or an invalid field.
            let sn = o.sense_info().unwrap_or_else(|| panic!("{what}: status {:#x}", o.status));
            assert!(
                (sn.key, sn.asc, sn.ascq) == (5, 0x0D, 0x04) || (sn.key, sn.asc, sn.ascq) == (5, 0x26, 0),
                "{what}: {sn:?}"
            );
        } else {
            expect_sense(&o, SenseKey::ILLEGAL_REQUEST, Asc::COPY_TARGET_DEVICE_DATA_UNDERRUN, &what);
        }
    }
    // 4096-byte destination blocks: 16 blocks of 512 = 2 of 4096; 3 is too many.
    let o = wut_raw(&s, LUN_4K, 1310, &wut(t, 0, vec![range(10, 3)])).await;
    expect_sense(&o, SenseKey::ILLEGAL_REQUEST, Asc::COPY_TARGET_DEVICE_DATA_UNDERRUN, "4096-byte destination");
    same(&read(&s, LUN_B, 100, 64 * 512, 512).await, &canary, "an underrun writes nothing");
    // Exactly the ROD is fine.
    wut_ok(&s, LUN_B, 1311, &wut(t, 8, vec![range(100, 8)])).await;
    d.shutdown().await;
}

/// Forgery over the wire: 2 000 bit-flipped and 2 000 random tokens are
/// refused (23h/05h TOKEN CORRUPT or 23h/04h TOKEN UNKNOWN; a flip in the
/// 8-byte header may also read as an unsupported type or a bad length) and
/// write nothing; the genuine token still works afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_are_refused_and_the_real_one_works() {
    let (d, _dir) = daemon().await;
    let s = d.session(OPEN).await;
    let data = pattern(260, 8 * 512);
    write(&s, LUN_A, 0, &data, 512).await;
    let t = populate(&s, LUN_A, 1400, &pt(None, vec![range(0, 8)])).await;
    let canary = pattern(261, 8 * 512);
    write(&s, LUN_B, 0, &canary, 512).await;
    let mut rng = 0x1234_5678_9abc_def1u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut tally = std::collections::BTreeMap::<(u8, u8), u32>::new();
    let t0 = Instant::now();
    for k in 0..4000u32 {
        let mut f = t;
        let header_flip = if k < 2000 {
            let bit = (next() % (512 * 8)) as usize;
            f[bit / 8] ^= 1 << (bit % 8);
            bit / 8 < 8
        } else {
            // Random body behind a genuine-looking header (ROD type + length).
            for c in f[8..].chunks_mut(8) {
                let r = next().to_le_bytes();
                c.copy_from_slice(&r[..c.len()]);
            }
            false
        };
        let o = wut_raw(&s, LUN_B, 1401, &wut(f, 0, vec![range(0, 8)])).await;
        assert!(o.is_check_condition(), "forged token {k} was accepted (status {:#x})", o.status);
        let sn = o.sense_info().expect("sense");
        *tally.entry((sn.asc, sn.ascq)).or_default() += 1;
        let ok = sn.key == 5 && sn.asc == 0x23 && (header_flip || [0x04, 0x05].contains(&sn.ascq));
        assert!(ok, "forged token {k} (header flip: {header_flip}): {sn:?}");
    }
    eprintln!("4000 forged tokens in {:?}: {tally:?}", t0.elapsed());
    same(&read(&s, LUN_B, 0, 8 * 512, 512).await, &canary, "forged tokens wrote nothing");
    wut_ok(&s, LUN_B, 1402, &wut(t, 0, vec![range(0, 8)])).await;
    same(&read(&s, LUN_B, 0, 8 * 512, 512).await, &data, "the genuine token after the forgeries");
    d.shutdown().await;
}

/// Windows (digest §4.5): the RRTI layout after PT and after WUT, read
/// from the raw bytes with Windows' allocation length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_rrti_layout() {
    let (d, _dir) = daemon().await;
    let s = d.session(OPEN).await;
    write(&s, LUN_A, 0, &pattern(270, 2048 * 512), 512).await;
    // PT exactly as classpnp sends it: RTV=0, IMMED=0, TTL 0, list id 256+.
    let p = pt(None, vec![range(0, 1024), range(4096, 1024)]);
    let o = s.populate_token(LUN_A, 0x100, &p).await.expect("PT");
    assert!(o.is_good(), "{:?}", o.sense_info());
    let alloc = 32 + 255 + 4 + 514;
    let o = s.receive_copy_results(LUN_A, odx::sa::RECEIVE_ROD_TOKEN_INFORMATION, 0x100, alloc as u32).await;
    let r = o.expect("RRTI").into_result().expect("RRTI GOOD").data;
    assert!(r.len() >= 32, "{} bytes", r.len());
    assert_eq!(u32::from_be_bytes(r[0..4].try_into().unwrap()) as usize + 4, r.len(), "AVAILABLE DATA");
    assert_eq!(r[4] & 0x1F, 0x10, "RESPONSE TO SERVICE ACTION");
    assert_eq!(r[5] & 0x7F, 0x01, "COPY OPERATION STATUS");
    assert_eq!(r[12], 0, "completion status GOOD");
    assert_eq!(r[15], 0xF1, "units: logical blocks");
    assert_eq!(u64::from_be_bytes(r[16..24].try_into().unwrap()), 2048, "TRANSFER COUNT = blocks represented");
    assert_eq!(&r[24..26], &[0, 0], "SEGMENTS PROCESSED = 0");
    assert!(r[14] <= r[13], "sense length within its field");
    let at = 32 + usize::from(r[13]);
    assert_eq!(u32::from_be_bytes(r[at..at + 4].try_into().unwrap()), 514, "ROD TOKEN DESCRIPTORS LENGTH");
    assert_eq!(&r[at + 4..at + 6], &[0, 0], "the 2 reserved bytes");
    let mut t = [0u8; 512];
    t.copy_from_slice(&r[at + 6..at + 6 + 512]);
    assert_eq!(r.len(), at + 6 + 512);
    // A short allocation length truncates, never fails (a fresh PT: the
    // record above was consumed by reading it).
    let o = s.populate_token(LUN_A, 0x103, &pt(None, vec![range(0, 8)])).await.expect("PT");
    assert!(o.is_good(), "{:?}", o.sense_info());
    let o = s.receive_copy_results(LUN_A, odx::sa::RECEIVE_ROD_TOKEN_INFORMATION, 0x103, 16).await.expect("RRTI");
    let o = o.into_result().expect("short RRTI is GOOD");
    assert_eq!(o.data.len(), 16);
    assert_eq!((o.data[4] & 0x1F, o.data[5] & 0x7F, o.data[15]), (0x10, 0x01, 0xF1));
    // WUT as Windows sends it (IMMED=0, DEL_TKN=0, offset = blocks done), twice.
    wut_ok(&s, LUN_B, 0x101, &wut(t, 0, vec![range(0, 1024)])).await;
    wut_ok(&s, LUN_B, 0x102, &wut(t, 1024, vec![range(1024, 1024)])).await;
    let o = s.receive_copy_results(LUN_B, odx::sa::RECEIVE_ROD_TOKEN_INFORMATION, 0x102, alloc as u32).await;
    let r = o.expect("RRTI").into_result().expect("RRTI GOOD").data;
    assert_eq!(r[4] & 0x1F, 0x11, "RESPONSE TO SERVICE ACTION");
    assert_eq!(r[5] & 0x7F, 0x01, "01h, not 03h, for partial use of a ROD");
    assert_eq!(r[15], 0xF1, "units");
    assert_eq!(u64::from_be_bytes(r[16..24].try_into().unwrap()), 1024, "contiguous blocks written");
    let at = 32 + usize::from(r[13]);
    let tdl = r.get(at..at + 4).map(|b| u32::from_be_bytes(b.try_into().unwrap())).unwrap_or(0);
    assert_eq!(tdl, 0, "no token after WUT");
    same(
        &read(&s, LUN_B, 0, 2048 * 512, 512).await,
        &{
            let mut m = read(&s, LUN_A, 0, 1024 * 512, 512).await;
            m.extend(read(&s, LUN_A, 4096, 1024 * 512, 512).await);
            m
        },
        "the two-WUT copy",
    );
    // RRTI belongs to the nexus that populated: another ISID → 24h/00h.
    let other = d.session_with_isid(OPEN, [0x80, 0, 0, 0x0d, 0, 0x77]).await;
    let o = other.receive_copy_results(LUN_A, odx::sa::RECEIVE_ROD_TOKEN_INFORMATION, 0x100, 1024).await.unwrap();
    expect_sense(&o, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB, "RRTI from another I_T nexus");
    d.shutdown().await;
}

/// Windows (digest §6, §10.1): page 8Fh's FIRST descriptor is 0000h with
/// length 0020h and the page is ≥ 36 bytes with a 255-byte allocation; the
/// token descriptors 0106h / 0108h are there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_vpd_8f_first_descriptor_is_rod_token_limits() {
    let (d, _dir) = daemon().await;
    let s = d.session(OPEN).await;
    for lun in [LUN_A, LUN_4K] {
        let p = s.inquiry(lun, true, 0x8F, 255).await.expect("VPD 8Fh");
        assert_eq!(p[1], 0x8F);
        let page_len = usize::from(u16::from_be_bytes([p[2], p[3]]));
        assert!(page_len >= 36, "PAGE LENGTH {page_len}");
        assert_eq!(&p[4..8], &[0x00, 0x00, 0x00, 0x20], "first descriptor 0000h, length 0020h");
        let max_ranges = u16::from_be_bytes([p[14], p[15]]);
        let max_ito = u32::from_be_bytes(p[16..20].try_into().unwrap());
        let def_ito = u32::from_be_bytes(p[20..24].try_into().unwrap());
        assert!(max_ranges <= 64, "MAXIMUM RANGE DESCRIPTORS {max_ranges}");
        assert!(def_ito >= 1 && def_ito <= max_ito, "default {def_ito} s, max {max_ito} s");
        let full = s.inquiry(lun, true, 0x8F, 4096).await.expect("VPD 8Fh");
        let mut types = Vec::new();
        let mut b = &full[4..];
        while b.len() >= 4 {
            let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
            let ty = u16::from_be_bytes([b[0], b[1]]);
            assert_eq!(len % 4, 0, "descriptor {ty:04x}h length");
            if ty == 0x0108 {
                let n = usize::from(u16::from_be_bytes([b[6], b[7]]));
                let entries: Vec<(u32, u8)> =
                    b[8..8 + n].chunks(64).map(|e| (u32::from_be_bytes(e[0..4].try_into().unwrap()), e[4])).collect();
                let get = |t: u32| entries.iter().find(|e| e.0 == t).map(|e| e.1 & 0x03);
                assert_eq!(get(ZERO), Some(0x02), "zero token: TOKEN_IN only: {entries:x?}");
                assert_eq!(get(AUR), Some(0x03), "AUR in and out: {entries:x?}");
                assert_eq!(get(PIT_CHANGE_VULNERABLE), Some(0x03), "{entries:x?}");
            }
            types.push(ty);
            b = &b[4 + len.min(b.len() - 4)..];
        }
        assert_eq!(types.first(), Some(&0x0000));
        for want in [0x0001, 0x0106, 0x0108, 0x8001] {
            assert!(types.contains(&want), "descriptor {want:04x}h in {types:04x?}");
        }
    }
    d.shutdown().await;
}

/// Windows: VPD 00h is strictly ascending from 00h and lists 8Fh; the
/// Supported Commands descriptor lists the token service actions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_vpd_00_lists_pages_in_ascending_order() {
    let (d, _dir) = daemon().await;
    let s = d.session(OPEN).await;
    let p = s.inquiry(LUN_A, true, 0x00, 255).await.expect("VPD 00h");
    let n = usize::from(u16::from_be_bytes([p[2], p[3]]));
    let pages = &p[4..4 + n];
    assert_eq!(pages.first(), Some(&0x00));
    assert!(pages.windows(2).all(|w| w[0] < w[1]), "ascending: {pages:02x?}");
    assert!(pages.contains(&0x8F) && pages.contains(&0x83));
    let tpc = s.inquiry(LUN_A, true, 0x8F, 4096).await.expect("VPD 8Fh");
    let mut b = &tpc[4..];
    let mut cmds = None;
    while b.len() >= 4 {
        let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if u16::from_be_bytes([b[0], b[1]]) == 0x0001 {
            cmds = Some(b[4..4 + len].to_vec());
        }
        b = &b[4 + len.min(b.len() - 4)..];
    }
    let cmds = cmds.expect("Supported Commands descriptor");
    let mut i = 1;
    let mut found = std::collections::BTreeMap::new();
    while i + 1 < cmds.len() && i <= usize::from(cmds[0]) {
        let (op, n) = (cmds[i], usize::from(cmds[i + 1]));
        found.insert(op, cmds[i + 2..i + 2 + n].to_vec());
        i += 2 + n;
    }
    for sa in [0x10, 0x11, 0x1C] {
        assert!(found.get(&0x83).is_some_and(|v| v.contains(&sa)), "83h/{sa:02x}h listed: {found:02x?}");
    }
    for sa in [0x07, 0x08] {
        assert!(found.get(&0x84).is_some_and(|v| v.contains(&sa)), "84h/{sa:02x}h listed: {found:02x?}");
    }
    d.shutdown().await;
}

/// ddpt --odx as the digest §10.3 describes it, with our initiator: read
/// the 8Fh limits, PT with list id 257 (walking +1 on 00h/16h up to 10
/// times), RRTI with a 1024-byte buffer (polling while 10h–12h), WUTs with
/// OFFSET INTO ROD of at most the per-WUT size, DEL_TKN on the last, RRTI
/// after each WUT. Then the token is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddpt_odx_flow() {
    let (d, _dir) = daemon().await;
    let s = d.session(OPEN).await;
    let total: u64 = 16 * MIB / 512;
    let data = pattern(280, (16 * MIB) as usize);
    write(&s, LUN_A, 0, &data, 512).await;
    // Keep list id 257 of LUN A busy with an IMMED zero-token WUT over its
    // upper part, so the walk is exercised if the copy manager is still on it.
    let busy = WriteUsingToken { immed: true, ..wut(zero_token(), 0, split(200_000, 300_000)) };
    let o = wut_raw(&s, LUN_A, 257, &busy).await;
    assert!(o.is_good(), "{:?}", o.sense_info());
    let vpd = s.inquiry(LUN_A, true, 0x8F, 255).await.expect("VPD 8Fh");
    assert_eq!(&vpd[4..8], &[0, 0, 0, 0x20]);
    let max_ranges = u16::from_be_bytes([vpd[14], vpd[15]]);
    let mtts = u64::from_be_bytes(vpd[24..32].try_into().unwrap());
    let otc = u64::from_be_bytes(vpd[32..40].try_into().unwrap());
    eprintln!("8Fh/0000h: max ranges {max_ranges}, max token transfer {mtts}, optimal {otc}");
    assert!(mtts == 0 || mtts >= total, "16 MiB fits in one token");

    let mut list_id = 257u32;
    let mut walked = 0;
    loop {
        let o = s.populate_token(LUN_A, list_id, &pt(None, vec![range(0, total as u32)])).await.expect("PT");
        if o.is_good() {
            break;
        }
        let sn = o.sense_info().expect("sense");
        assert_eq!((sn.key, sn.asc, sn.ascq), (5, 0x00, 0x16), "PT: only OPERATION IN PROGRESS may make ddpt walk");
        walked += 1;
        assert!(walked <= 10, "ddpt gives up after 10 list ids");
        list_id += 1;
    }
    eprintln!("PT with list id {list_id} after {walked} step(s)");
    let mut polls = 0;
    let info = loop {
        let i = rrti(&s, LUN_A, list_id).await;
        if !i.in_progress() {
            break i;
        }
        polls += 1;
        assert!(polls < 100, "RRTI polling");
        let ms = if i.delay_ms > 0 && i.delay_ms < 0xFFFF_FFFE { i.delay_ms.min(500) } else { 500 };
        tokio::time::sleep(Duration::from_millis(ms.into())).await;
    };
    assert_eq!((info.status, info.transfer_count), (ST_COMPLETED, total), "{info:?}");
    let t = info.token.expect("token at 32 + B13 + 6");
    // ddpt's bpt: 4 MiB per WUT here (never more than the optimal count when reported).
    let per = if otc > 0 { otc.min(8192) } else { 8192 };
    let mut off = 0;
    let mut wid = list_id + 1;
    while off < total {
        let n = (total - off).min(per);
        let last = off + n == total;
        let w = WriteUsingToken { del_tkn: last, ..wut(t, off, vec![range(100_000 + off, n as u32)]) };
        let o = wut_raw(&s, LUN_B, wid, &w).await;
        if !o.is_good() {
            let sn = o.sense_info().expect("sense");
            assert_eq!((sn.asc, sn.ascq), (0x00, 0x16), "WUT {wid}: {sn:?}");
            wid += 1;
            continue;
        }
        let i = rrti(&s, LUN_B, wid).await;
        assert_eq!((i.response_to_sa, i.status, i.transfer_count), (0x11, ST_COMPLETED, n), "{i:?}");
        off += n;
        wid += 1;
    }
    same(&read(&s, LUN_B, 100_000, 16 * MIB, 512).await, &data, "ddpt-style copy");
    let o = wut_raw(&s, LUN_B, wid, &wut(t, 0, vec![range(100_000, 1)])).await;
    expect_token_error(&o, 0x09, "the token after ddpt's DEL_TKN");
    if walked > 0 {
        // The zero-fill that held 257 finishes normally.
        let (fin, _) = poll_rrti(&s, LUN_A, 257, Duration::from_secs(120)).await;
        assert_eq!((fin.response_to_sa, fin.status), (0x11, ST_COMPLETED), "{fin:?}");
    }
    d.shutdown().await;
}

/// REPORT ALL ROD TOKENS: GOOD, AVAILABLE DATA consistent, live tokens
/// mentioned by their identifier, a deleted one not, short allocation
/// lengths truncate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_all_rod_tokens() {
    let (d, _dir) = daemon().await;
    let s = d.session(OPEN).await;
    let r = s.report_all_rod_tokens(LUN_A, 64 * 1024).await.expect("RART with no tokens");
    assert_eq!(r.tokens.len() + 4, r.available as usize, "AVAILABLE DATA: {r:?}");
    let t1 = populate(&s, LUN_A, 1500, &pt(None, vec![range(0, 8)])).await;
    let t2 = populate(&s, LUN_B, 1501, &pt(Some(AUR), vec![range(0, 8)])).await;
    let o = s.report_all_rod_tokens_raw(LUN_A, 64 * 1024).await.expect("RART").into_result().expect("GOOD");
    let avail = u32::from_be_bytes(o.data[0..4].try_into().unwrap()) as usize;
    assert_eq!(avail + 4, o.data.len(), "AVAILABLE DATA with a big buffer");
    let r = odx::RodTokenReport::parse(&o.data).unwrap();
    assert!(r.mentions(&t1[8..16]), "token 1 listed on its LU");
    // Tokens are reported by the LU that made them (as FreeBSD CTL does).
    let rb = s.report_all_rod_tokens(LUN_B, 64 * 1024).await.expect("RART on LUN B");
    assert!(rb.mentions(&t2[8..16]), "token 2 listed on its LU");
    eprintln!("RART: {} bytes for LUN A, {} for LUN B", r.tokens.len(), rb.tokens.len());
    // No secret material: the MAC half of the token is not reported.
    assert!(!r.mentions(&t1[480..512]), "the report must not hand out whole tokens");
    let o = s.report_all_rod_tokens_raw(LUN_A, 4).await.expect("RART").into_result().expect("short GOOD");
    assert_eq!(o.data.len(), 4);
    wut_ok(&s, LUN_B, 1502, &WriteUsingToken { del_tkn: true, ..wut(t1, 0, vec![range(100, 8)]) }).await;
    let r = s.report_all_rod_tokens(LUN_A, 64 * 1024).await.expect("RART");
    assert!(!r.mentions(&t1[8..16]), "a deleted token is not listed");
    let rb = s.report_all_rod_tokens(LUN_B, 64 * 1024).await.expect("RART on LUN B");
    assert!(rb.mentions(&t2[8..16]), "token 2 still listed");
    assert!(!rb.mentions(&t2[480..512]), "the report must not hand out whole tokens");
    d.shutdown().await;
}

/// `[copy_domain] token_scope`: with the default "domain" the token is the
/// capability (a token made by another initiator on a target we may not
/// log in to can be written by us); with "initiator" the writer must also
/// be admitted to the source's target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_scope_initiator_vs_domain() {
    for scope in [None, Some("domain"), Some("initiator")] {
        let (d, _dir) = ODaemon::start(Sizes::default(), Domain { token_scope: scope, ..Default::default() }).await;
        let victim = d.session_as(PRIVATE, OTHER_INITIATOR).await;
        let secret = pattern(290, (64 * KIB) as usize);
        write(&victim, 0, 0, &secret, 512).await;
        let vt = populate(&victim, 0, 1600, &pt(None, vec![range(0, 128)])).await;
        let s = d.session(OPEN).await;
        let canary = pattern(291, (64 * KIB) as usize);
        write(&s, LUN_B, 0, &canary, 512).await;
        let o = wut_raw(&s, LUN_B, 1601, &wut(vt, 0, vec![range(0, 128)])).await;
        if scope == Some("initiator") {
            assert!(o.is_check_condition(), "scope initiator: a token of a target we are not admitted to was used");
            let sn = o.sense_info().expect("sense");
            eprintln!("token_scope=initiator denial: {sn:?}");
            assert!(
                sn.key == 5 && (sn.asc == 0x23 || (sn.asc, sn.ascq) == (0x26, 0x15))
                    || (sn.key, sn.asc, sn.ascq) == (0x0A, 0x08, 0x04),
                "denial sense {sn:?}"
            );
            same(&read(&s, LUN_B, 0, 64 * KIB, 512).await, &canary, "a denied token writes nothing");
            // A token of a target that admits us still works.
            let sh = d.session(SHARED).await;
            let ok = pattern(292, (64 * KIB) as usize);
            write(&sh, 0, 0, &ok, 512).await;
            let st = populate(&sh, 0, 1602, &pt(None, vec![range(0, 128)])).await;
            wut_ok(&s, LUN_B, 1603, &wut(st, 0, vec![range(0, 128)])).await;
            same(&read(&s, LUN_B, 0, 64 * KIB, 512).await, &ok, "scope initiator, admitted source");
            // And the creator may write it where it may write.
            let vo = d.session_as(OPEN, OTHER_INITIATOR).await;
            wut_ok(&vo, LUN_A, 1604, &wut(vt, 0, vec![range(0, 128)])).await;
        } else {
            assert!(o.is_good(), "scope {scope:?}: the token is the capability: {:?}", o.sense_info());
            same(&read(&s, LUN_B, 0, 64 * KIB, 512).await, &secret, "scope domain");
        }
        d.shutdown().await;
    }
}
