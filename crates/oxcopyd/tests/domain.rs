//! A copy domain of several real `oxcopyd` processes, end to end: node A
//! (127.0.0.2) makes a ROD token, node B (127.0.0.3) or C (127.0.0.4)
//! writes it and pulls the data from A's point-in-time snapshot over the
//! node link (docs/node-link.md). Everything is checked from outside: SCSI
//! status and sense through our initiator, the bytes in the LUN files,
//! the daemons' metrics, and a hand-driven node-link client.
//!
//! - the basic cross-node copy with LUN files on an XFS (reflink) and an
//!   ext4 loop filesystem: point in time, OFFSET INTO ROD, several ranges,
//!   bytes outside the ranges untouched, `method="remote"` bytes, a third
//!   node writing the same token;
//! - DEL_TKN on B deletes the token on A (A and C then refuse it 23h/09h);
//! - expiry (23h/07h) and revocation of a change-vulnerable token (23h/06h)
//!   on A, as B reports them;
//! - RRTI progress and COPY OPERATION ABORT of a remote copy on B;
//! - A killed mid-copy: COPY ABORTED, 0Dh/02h within 30 s, B keeps serving;
//! - a forged token refused by B (23h/05h) without contacting A; a node
//!   with another key cannot use A's token;
//! - the node link itself: a wrong-key handshake fails (AUTH_FAILED, no
//!   READY, counted), garbage and out-of-order frames close the link, and
//!   A still serves;
//! - VPD 8Fh descriptor 0106h: REMOTE TOKENS = 6.
//!
//! Loop filesystems need root (else the test says `skipped` and passes,
//! unless `OXCOPY_REQUIRE_XFS=1`, as in CI). Every loop is bounded in count
//! and time; every daemon is SIGKILLed by PID when its test ends.

mod domain_support;

use bytes::Bytes;
use domain_support::*;
use oxcopy_initiator::odx::{self, PopulateToken, WriteUsingToken};
use oxcopy_initiator::{DataDir, InitiatorError, STATUS_TASK_ABORTED};
use oxcopy_testkit::{assert_same as same, file_bytes, fnv, LoopFs};
use std::path::Path;
use std::time::{Duration, Instant};

/// LUN size for the functional tests.
const LUN: u64 = 64 * MIB;

/// The basic cross-node copy on LUN files in `a_dir` (A) and `b_dir` (B, C).
async fn basic_cross_node_copy(a_dir: &Path, b_dir: &Path) {
    let c = Cluster::abc(&[a_dir, b_dir, b_dir], LUN, None);
    let (a, b, cn) = (c.node("A"), c.node("B"), c.node("C"));
    let sa = a.session().await;
    let sb = b.session().await;
    let sc = cn.session().await;
    // Source on A: two ranges (0..8 MiB and 16..20 MiB of LUN 0).
    let old = pattern(1, 24 * MIB);
    write(&sa, SRC, 0, &old).await;
    let rod: Vec<u8> = [&old[..(8 * MIB) as usize], &old[(16 * MIB) as usize..(20 * MIB) as usize]].concat();
    let rod_blocks = rod.len() as u64 / u64::from(BS);
    // Destinations on B and C hold something known.
    let b_before = pattern(2, LUN);
    write(&sb, DST, 0, &b_before).await;
    let c_before = pattern(3, LUN);
    write(&sc, DST, 0, &c_before).await;
    let a_links = a.link_sessions().await;
    let b_remote = b.remote_bytes().await;

    let t = populate(&sa, SRC, 10, &pt(Some(PIT_DEFAULT), vec![range(0, 16384), range(32768, 8192)])).await;
    // Point in time: overwrite the whole source on A after PT.
    write(&sa, SRC, 0, &pattern(4, 24 * MIB)).await;

    // B: OFFSET INTO ROD 1024 blocks, two destination ranges.
    let ranges = vec![range(100, 2048), range(20_000, 8192)];
    let w = wut(t, 1024, ranges.clone());
    let o = wut_raw(&sb, DST, 11, &w).await;
    assert!(o.is_good(), "WUT on B with A's token: {}\n{}", describe(&o), c.logs());
    let mut model = b_before.clone();
    let mut off = 1024 * BS as usize;
    for r in &ranges {
        let n = r.blocks as usize * BS as usize;
        let at = r.lba as usize * BS as usize;
        model[at..at + n].copy_from_slice(&rod[off..off + n]);
        off += n;
    }
    same(
        &file_bytes(&b.lun_file(DST), 0, LUN),
        &model,
        "B's destination LUN (ranges from A's snapshot, rest untouched)",
    );
    same(&read(&sb, DST, 0, LUN).await, &model, "B's destination LUN read through B");
    let rrti_b = rrti(&sb, DST, 11).await;
    assert_eq!(
        (rrti_b.response_to_sa, rrti_b.status, rrti_b.transfer_count),
        (0x11, ST_COMPLETED, 10_240),
        "{rrti_b:?}"
    );
    let pulled = b.remote_bytes().await - b_remote;
    assert_eq!(
        pulled,
        10_240 * u64::from(BS),
        "B's oxcopy_copy_bytes_total{{method=\"remote\"}} counts the pulled bytes"
    );
    wait_metric(a, "oxcopy_link_sessions_total", "", |v| v > a_links, "A accepted a node-link session from B").await;

    // C writes the same token, the whole ROD at LBA 0.
    let o = wut_raw(&sc, DST, 12, &wut(t, 0, vec![range(0, rod_blocks as u32)])).await;
    assert!(o.is_good(), "WUT on C with A's token: {}\n{}", describe(&o), c.logs());
    let mut cm = c_before.clone();
    cm[..rod.len()].copy_from_slice(&rod);
    same(&file_bytes(&cn.lun_file(DST), 0, LUN), &cm, "C's destination LUN");
    // And A itself still writes its own token locally (nothing broke).
    let o = wut_raw(&sa, DST, 13, &wut(t, 0, vec![range(0, 2048)])).await;
    assert!(o.is_good(), "local WUT on A: {}", describe(&o));
    same(&file_bytes(&a.lun_file(DST), 0, MIB), &rod[..MIB as usize], "A's local copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_node_copy_xfs_reflink() {
    let Some(fs) = LoopFs::xfs_reflink(1024) else { return };
    basic_cross_node_copy(&fs.mnt, &fs.mnt).await;
}

/// A's LUN files on ext4 (no reflink: the point-in-time snapshot is a
/// copy-on-write store), B's and C's on XFS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_node_copy_ext4_source() {
    let Some(ext4) = LoopFs::ext4(512) else { return };
    let Some(xfs) = LoopFs::xfs_reflink(768) else { return };
    basic_cross_node_copy(&ext4.mnt, &xfs.mnt).await;
}

/// DEL_TKN on B deletes the token on A: afterwards A (locally) and C (who
/// asks A) refuse it with TOKEN DELETED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_tkn_on_b_deletes_the_token_on_a() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::abc(&[dir.path()], LUN, None);
    let (a, b, cn) = (c.node("A"), c.node("B"), c.node("C"));
    let (sa, sb, sc) = (a.session().await, b.session().await, cn.session().await);
    let data = pattern(20, MIB);
    write(&sa, SRC, 0, &data).await;
    let t = populate(&sa, SRC, 20, &pt(None, vec![range(0, 2048)])).await;
    let o = wut_raw(&sb, DST, 21, &WriteUsingToken { del_tkn: true, ..wut(t, 0, vec![range(0, 1024)]) }).await;
    assert!(o.is_good(), "DEL_TKN WUT on B: {}\n{}", describe(&o), c.logs());
    same(&file_bytes(&b.lun_file(DST), 0, 512 * KIB), &data[..(512 * KIB) as usize], "the DEL_TKN write on B");
    let canary = pattern(21, MIB);
    write(&sa, DST, 0, &canary).await;
    write(&sc, DST, 0, &canary).await;
    let o = wut_raw(&sa, DST, 22, &wut(t, 1024, vec![range(0, 1024)])).await;
    expect_token_error(&o, 0x09, "A's own token after DEL_TKN on B (TOKEN DELETED)");
    let o = wut_raw(&sc, DST, 23, &wut(t, 1024, vec![range(0, 1024)])).await;
    expect_token_error(&o, 0x09, "C with A's token deleted by B (C asks A)");
    let o = wut_raw(&sb, DST, 24, &wut(t, 1024, vec![range(0, 1024)])).await;
    expect_token_error(&o, 0x09, "B again with the token it deleted");
    same(&file_bytes(&a.lun_file(DST), 0, MIB), &canary, "A's destination unchanged by refused WUT");
    same(&file_bytes(&cn.lun_file(DST), 0, MIB), &canary, "C's destination unchanged by refused WUT");
}

/// A token that expired on A (2 s inactivity timeout) → 23h/07h on B; a
/// change-vulnerable token whose source was written on A → 23h/06h on B.
/// Neither writes anything on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_revoked_tokens_as_b_sees_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::abc(&[dir.path()], LUN, None);
    let (a, b) = (c.node("A"), c.node("B"));
    let (sa, sb) = (a.session().await, b.session().await);
    write(&sa, SRC, 0, &pattern(30, MIB)).await;
    let canary = pattern(31, MIB);
    write(&sb, DST, 0, &canary).await;

    let p = PopulateToken { inactivity_timeout: 2, ..pt(None, vec![range(0, 2048)]) };
    let expiring = populate(&sa, SRC, 30, &p).await;
    let cv = populate(&sa, SRC, 31, &pt(Some(PIT_CHANGE_VULNERABLE), vec![range(0, 2048)])).await;
    // Revoke the change-vulnerable one: write into its source range on A.
    write(&sa, SRC, 100, &pattern(32, 4 * KIB)).await;
    let o = wut_raw(&sb, DST, 32, &wut(cv, 0, vec![range(0, 2048)])).await;
    expect_token_error(&o, 0x06, "change-vulnerable token revoked on A, used on B (TOKEN REVOKED)");

    // The 2 s token, unused for 4 s.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let o = wut_raw(&sb, DST, 33, &wut(expiring, 0, vec![range(0, 2048)])).await;
    expect_token_error(&o, 0x07, "token expired on A, used on B (TOKEN EXPIRED)");
    same(&file_bytes(&b.lun_file(DST), 0, MIB), &canary, "refused tokens write nothing on B");
}

/// Source for the slow copies: A serves its link at 16 MiB/s, the token
/// covers 96 MiB (about 6 s to pull).
const SLOW_LUN: u64 = 128 * MIB;
const SLOW_BYTES: u64 = 96 * MIB;
const SLOW_RATE: &str = "16MiB";

/// A cluster whose A serves its link at `rate`, A's LUN 0 filled with
/// `bytes` of data, a token over them from A.
async fn slow_setup_with(
    dir: &Path,
    list_id: u32,
    lun: u64,
    bytes: u64,
    rate: &'static str,
) -> (Cluster, Vec<u8>, Token) {
    let c = Cluster::abc(&[dir], lun, Some(rate));
    let sa = c.node("A").session().await;
    let src = pattern(40 + u64::from(list_id), bytes);
    write(&sa, SRC, 0, &src).await;
    let t = populate(&sa, SRC, list_id, &pt(None, split(0, bytes / u64::from(BS)))).await;
    (c, src, t)
}

async fn slow_setup(dir: &Path, list_id: u32) -> (Cluster, Vec<u8>, Token) {
    slow_setup_with(dir, list_id, SLOW_LUN, SLOW_BYTES, SLOW_RATE).await
}

/// The copy executor checks for cancellation between chunks of
/// `oxcopy_copy::DEFAULT_CHUNK_BYTES` (64 MiB; the in-process odx tests
/// shrink it, a process cannot), and counts progress per chunk.
const CHUNK: u64 = oxcopy_copy::DEFAULT_CHUNK_BYTES;
/// The abort test: 224 MiB (three and a half chunks) at 48 MiB/s.
const ABORT_LUN: u64 = 256 * MIB;
const ABORT_BYTES: u64 = 224 * MIB;
const ABORT_RATE: &str = "48MiB";

/// IMMED WUT on B: RRTI on B shows the remote copy in progress with a
/// growing count, then completed. Then COPY OPERATION ABORT on B stops a
/// second one as a local copy is stopped (at the next chunk boundary):
/// RRTI reports 60h with the blocks done < total, the blocks done hold
/// the source's data, the bytes past them are untouched, and B's LU works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rrti_progress_and_copy_operation_abort_of_a_remote_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, src, t) = slow_setup_with(dir.path(), 40, ABORT_LUN, ABORT_BYTES, ABORT_RATE).await;
    let b = c.node("B");
    let sb = b.session().await;
    let blocks = ABORT_BYTES / u64::from(BS);

    let w = WriteUsingToken { immed: true, ..wut(t, 0, split(0, blocks)) };
    let o = wut_raw(&sb, DST, 41, &w).await;
    assert!(o.is_good(), "IMMED WUT on B: {}\n{}", describe(&o), c.logs());
    let (fin, seen) = poll_rrti(&sb, DST, 41, Duration::from_secs(120)).await;
    eprintln!("remote IMMED copy: {} in-progress reports, final {fin:?}", seen.len());
    assert!(!seen.is_empty(), "a 224 MiB remote copy at 48 MiB/s was never seen in progress");
    for i in &seen {
        assert!([0x11, 0x12].contains(&i.status) && i.response_to_sa == 0x11, "in progress: {i:?}");
        assert!(i.transfer_count <= blocks, "{i:?}");
    }
    assert!(seen.windows(2).all(|w| w[0].transfer_count <= w[1].transfer_count), "count never goes back");
    assert!(seen.iter().any(|i| i.transfer_count > 0 && i.transfer_count < blocks), "progress seen mid-way: {seen:?}");
    assert_eq!((fin.response_to_sa, fin.status, fin.transfer_count), (0x11, ST_COMPLETED, blocks), "{fin:?}");
    same(&file_bytes(&b.lun_file(DST), 0, ABORT_BYTES), &src, "the IMMED remote copy");

    // Abort: a fresh destination content, IMMED WUT, abort once the first
    // chunk is done (the abort lands in the second chunk).
    let before = pattern(49, ABORT_BYTES);
    write(&sb, DST, 0, &before).await;
    let w = WriteUsingToken { immed: true, ..wut(t, 0, split(0, blocks)) };
    let o = wut_raw(&sb, DST, 42, &w).await;
    assert!(o.is_good(), "IMMED WUT on B: {}", describe(&o));
    let t0 = Instant::now();
    loop {
        let i = rrti(&sb, DST, 42).await;
        assert!(i.in_progress(), "finished before it could be aborted: {i:?}");
        if i.transfer_count > 0 {
            break;
        }
        assert!(t0.elapsed() < STEP, "no progress within {STEP:?}: {i:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let aborted_at = Instant::now();
    let o = within(STEP, "COPY OPERATION ABORT", sb.copy_operation_abort(DST, 42)).await.expect("COA sent");
    assert!(o.is_good(), "COPY OPERATION ABORT on B: {}", describe(&o));
    let (fin, _) = poll_rrti(&sb, DST, 42, STEP).await;
    eprintln!("remote copy aborted, final status after {:?}: {fin:?}", aborted_at.elapsed());
    assert_eq!((fin.response_to_sa, fin.status), (0x11, ST_TERMINATED), "{fin:?}");
    assert!(fin.transfer_count > 0 && fin.transfer_count < blocks, "{fin:?}");
    let done = fin.transfer_count * u64::from(BS);
    assert!(done <= 2 * CHUNK, "the abort took effect at the next chunk boundary at the latest: {fin:?}");
    let now = file_bytes(&b.lun_file(DST), 0, ABORT_BYTES);
    same(&now[..done as usize], &src[..done as usize], "the blocks reported done");
    same(&now[done as usize..], &before[done as usize..], "the bytes past the blocks done are untouched");
    let x = pattern(48, 64 * KIB);
    write(&sb, OTHER, 0, &x).await;
    same(&read(&sb, OTHER, 0, 64 * KIB).await, &x, "I/O on B after the abort");
}

/// A SIGKILLed mid-copy: B's synchronous WUT ends with COPY ABORTED, COPY
/// TARGET DEVICE NOT REACHABLE (0Dh/02h) within 30 s; B serves another LUN
/// during and after; nothing of B's destination outside the ranges changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creator_killed_mid_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut c, _src, t) = slow_setup(dir.path(), 50).await;
    let blocks = SLOW_BYTES / u64::from(BS);
    let b = c.node("B");
    let sb = b.session().await;
    let io = b.session_isid(Some([0x80, 0, 0, 0x0d, 0, 0x51])).await;
    // B's destination: the copy goes to [4 MiB, 4 MiB + 96 MiB); around it
    // known data whose checksums must not change.
    let dst_off = 4 * MIB;
    write(&sb, DST, 0, &pattern(51, SLOW_LUN)).await;
    let head = fnv(&file_bytes(&b.lun_file(DST), 0, dst_off));
    let tail_at = dst_off + SLOW_BYTES;
    let tail = fnv(&file_bytes(&b.lun_file(DST), tail_at, SLOW_LUN - tail_at));
    let w = wut(t, 0, split(dst_off / u64::from(BS), blocks));
    let list = Bytes::from(w.encode());
    let pending = sb
        .submit(
            DST,
            &odx::cdb::token_out(odx::sa::WRITE_USING_TOKEN, 52, list.len() as u32),
            DataDir::Write { data: list },
        )
        .await
        .expect("WUT submitted");
    // Wait until B has pulled something (RRTI may overtake the WUT: retry).
    let t0 = Instant::now();
    loop {
        match sb.receive_rod_token_information(DST, 52).await {
            Ok(i) if i.in_progress() && i.transfer_count >= 4096 => break,
            Ok(i) => assert!(i.in_progress(), "finished before the kill: {i:?}"),
            Err(InitiatorError::ScsiStatus(_)) if t0.elapsed() < STEP => {}
            Err(e) => panic!("RRTI: {e}"),
        }
        assert!(t0.elapsed() < STEP, "no progress on B within {STEP:?}\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // I/O to another LUN of B while the copy runs.
    let x = pattern(52, 256 * KIB);
    write(&io, OTHER, 0, &x).await;
    same(&read(&io, OTHER, 0, 256 * KIB).await, &x, "I/O on B during the remote copy");
    let a_pid = c.node("A").proc_.as_ref().map(|p| p.pid()).expect("A runs");
    c.node_mut("A").kill();
    eprintln!("killed A (PID {a_pid})");
    let killed = Instant::now();
    let o = match tokio::time::timeout(Duration::from_secs(30), pending).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => panic!("WUT on B after A died: {e}"),
        Err(_) => panic!("WUT on B did not end within 30 s of A's death\n{}", c.logs()),
    };
    eprintln!("WUT on B ended {:?} after the kill: {}", killed.elapsed(), describe(&o));
    assert_ne!(o.status, STATUS_TASK_ABORTED, "not a task abort");
    let sense = expect_sense(&o, 0x0A, 0x0D, 0x02, "B's WUT when A dies (COPY TARGET DEVICE NOT REACHABLE)");
    eprintln!("sense: {sense:?}");
    let b = c.node("B");
    assert_eq!(fnv(&file_bytes(&b.lun_file(DST), 0, dst_off)), head, "B's destination before the range changed");
    assert_eq!(
        fnv(&file_bytes(&b.lun_file(DST), tail_at, SLOW_LUN - tail_at)),
        tail,
        "B's destination after the range changed"
    );
    let y = pattern(53, 256 * KIB);
    write(&io, OTHER, 512, &y).await;
    same(&read(&io, OTHER, 512, 256 * KIB).await, &y, "I/O on B after A died");
    same(&read(&sb, OTHER, 0, 256 * KIB).await, &x, "B's other LUN through the copy's session");
    // B's later remote copies from C still work (C makes a token now).
    let cn = c.node("C");
    let sc = cn.session().await;
    let z = pattern(54, MIB);
    write(&sc, SRC, 0, &z).await;
    let tc = populate(&sc, SRC, 55, &pt(None, vec![range(0, 2048)])).await;
    let o = wut_raw(&sb, OTHER, 56, &wut(tc, 0, vec![range(4096, 2048)])).await;
    assert!(o.is_good(), "B pulling from C after A's death: {}", describe(&o));
    same(&read(&sb, OTHER, 4096, MIB).await, &z, "B's copy from C");
}

/// A token with one byte flipped → B refuses it as corrupt (23h/05h)
/// without contacting A (A's link sessions unchanged); nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_token_refused_without_contacting_the_creator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::abc(&[dir.path()], LUN, None);
    let (a, b) = (c.node("A"), c.node("B"));
    let (sa, sb) = (a.session().await, b.session().await);
    write(&sa, SRC, 0, &pattern(60, MIB)).await;
    let canary = pattern(61, MIB);
    write(&sb, DST, 0, &canary).await;
    let t = populate(&sa, SRC, 60, &pt(None, vec![range(0, 2048)])).await;
    let links = a.link_sessions().await;
    let pulls = b.link_pulls().await;
    for (i, at) in [100usize, 300, 511].into_iter().enumerate() {
        let mut f = t;
        f[at] ^= 0x01;
        let o = wut_raw(&sb, DST, 61 + i as u32, &wut(f, 0, vec![range(0, 2048)])).await;
        expect_token_error(&o, 0x05, &format!("token with byte {at} flipped (TOKEN CORRUPT)"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // a link would be counted when it ends
    assert_eq!(a.link_sessions().await, links, "A was contacted for a forged token");
    assert_eq!(b.link_pulls().await, pulls, "B tried to open a forged token at its creator");
    same(&file_bytes(&b.lun_file(DST), 0, MIB), &canary, "forged tokens write nothing");
    // The genuine token still works (and does contact A).
    let o = wut_raw(&sb, DST, 65, &wut(t, 0, vec![range(0, 2048)])).await;
    assert!(o.is_good(), "the genuine token on B: {}\n{}", describe(&o), c.logs());
    wait_metric(a, "oxcopy_link_sessions_total", "", |v| v > links, "the genuine token contacted A").await;
}

/// A daemon D whose key file differs (but which lists A, B, C as its
/// nodes) cannot use A's token: 23h/05h, and A was never contacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_with_another_key_cannot_pull() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let c = Cluster::start(&[
        NodeSpec { name: "A", ip: "127.0.0.2", lun_dir: d.into(), lun_bytes: LUN, link_rate: None, key_seed: 1 },
        NodeSpec { name: "B", ip: "127.0.0.3", lun_dir: d.into(), lun_bytes: LUN, link_rate: None, key_seed: 1 },
        NodeSpec { name: "D", ip: "127.0.0.5", lun_dir: d.into(), lun_bytes: LUN, link_rate: None, key_seed: 2 },
    ]);
    let (a, dn) = (c.node("A"), c.node("D"));
    let sa = a.session().await;
    let sd = dn.session().await;
    write(&sa, SRC, 0, &pattern(70, MIB)).await;
    let canary = pattern(71, MIB);
    write(&sd, DST, 0, &canary).await;
    let t = populate(&sa, SRC, 70, &pt(None, vec![range(0, 2048)])).await;
    let links = a.link_sessions().await;
    let pulls = dn.link_pulls().await;
    let o = wut_raw(&sd, DST, 71, &wut(t, 0, vec![range(0, 2048)])).await;
    expect_token_error(&o, 0x05, "A's token on a node with another key");
    tokio::time::sleep(Duration::from_millis(500)).await; // a link would be counted when it ends
    assert_eq!(a.link_sessions().await, links, "the foreign-key node contacted A");
    assert_eq!(dn.link_pulls().await, pulls, "the foreign-key node tried to open A's token");
    same(&file_bytes(&dn.lun_file(DST), 0, MIB), &canary, "nothing written on D");
}

/// The node link by hand: a client that cannot prove the key gets no
/// READY (ERROR AUTH_FAILED or a close) and nothing about any token; A
/// counts it as `result="auth_failed"`. A frame before the handshake and
/// garbage bytes close the link. Afterwards A still serves B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_link_refuses_wrong_key_and_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::abc(&[dir.path()], LUN, None);
    let (a, b) = (c.node("A"), c.node("B"));
    let sa = a.session().await;
    let data = pattern(80, MIB);
    write(&sa, SRC, 0, &data).await;
    let t = populate(&sa, SRC, 80, &pt(None, vec![range(0, 2048)])).await;
    let failed0 = a.metric("oxcopy_link_sessions_total", "result=\"auth_failed\"").await;

    // Wrong key: HELLO, then an AUTH proof that is not HMAC under the
    // domain's link key (what any other key yields, as far as A can tell).
    let mut s = link::connect(a.link).await;
    assert!(link::send(&mut s, &link::hello([0x42; 16], [0x17; 32])).await, "send HELLO");
    let reply = link::recv(&mut s, Duration::from_secs(10)).await;
    match &reply {
        link::Got::Frame { kind: link::HELLO_REPLY, payload } => assert_eq!(payload.len(), 80, "HELLO_REPLY length"),
        other => panic!("A's answer to HELLO: {other:?}"),
    }
    assert!(link::send(&mut s, &link::frame(link::AUTH, &oxcopy_testkit::pattern(81, 32))).await, "send AUTH");
    // Whatever the client sends next (an OPEN with a genuine token) must
    // get nothing but an error and a close.
    let _ = link::send(&mut s, &link::frame(link::OPEN, &t)).await;
    let _ = link::send(&mut s, &link::frame(link::READ, &[0u8; 16])).await;
    let got = link::drain_until_closed(&mut s, Duration::from_secs(15)).await;
    let got = got.unwrap_or_else(|g| panic!("A kept a wrong-key link open; received {g:?}"));
    assert!(got.len() <= 1, "at most one ERROR frame after a failed AUTH: {got:?}");
    if let Some(f) = got.first() {
        assert_eq!(f.error_code(), Some(link::AUTH_FAILED), "A's answer to a wrong proof: {f:?}");
    }
    wait_metric(a, "oxcopy_link_sessions_total", "result=\"auth_failed\"", |v| v == failed0 + 1, "auth_failed counted")
        .await;

    // OPEN before any handshake: no OPENED, closed.
    let mut s = link::connect(a.link).await;
    let _ = link::send(&mut s, &link::frame(link::OPEN, &t)).await;
    let got = link::drain_until_closed(&mut s, Duration::from_secs(15)).await;
    let got = got.unwrap_or_else(|g| panic!("A kept a link open after OPEN before HELLO; received {g:?}"));
    assert!(
        got.iter().all(|f| f.error_code().is_some()),
        "only an ERROR may answer an OPEN before the handshake: {got:?}"
    );

    // Garbage bytes (no OXNL magic), and a header announcing a huge length.
    for junk in [oxcopy_testkit::pattern(82, 64), {
        let mut h = link::frame(link::HELLO, &[]);
        h[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        h
    }] {
        let mut s = link::connect(a.link).await;
        let _ = link::send(&mut s, &junk).await;
        let got = link::drain_until_closed(&mut s, Duration::from_secs(15)).await;
        let got = got.unwrap_or_else(|g| panic!("A kept a link open after garbage {junk:02x?}; received {g:?}"));
        assert!(got.iter().all(|f| f.error_code().is_some()), "garbage answered with non-errors: {got:?}");
    }

    // A still serves: B pulls the token.
    let sb = b.session().await;
    let o = wut_raw(&sb, DST, 81, &wut(t, 0, vec![range(0, 2048)])).await;
    assert!(o.is_good(), "B pulling from A after the bad links: {}\n{}", describe(&o), c.logs());
    same(&file_bytes(&b.lun_file(DST), 0, MIB), &data, "B's copy after the bad links");
}

/// VPD 8Fh, descriptor 0106h (ROD token features): REMOTE TOKENS = 6 on
/// every node of a domain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpd_8f_reports_remote_tokens_6() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::abc(&[dir.path()], LUN, None);
    for n in &c.nodes {
        let s = n.session().await;
        let p = within(STEP, "INQUIRY VPD 8Fh", s.inquiry(SRC, true, 0x8F, 4096)).await.expect("VPD 8Fh");
        assert_eq!(p[1], 0x8F);
        let page_len = usize::from(u16::from_be_bytes([p[2], p[3]]));
        let mut b = &p[4..(4 + page_len).min(p.len())];
        let mut remote = None;
        for _ in 0..64 {
            if b.len() < 4 {
                break;
            }
            let ty = u16::from_be_bytes([b[0], b[1]]);
            let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
            if ty == 0x0106 {
                assert!(len >= 1, "0106h descriptor length {len}");
                remote = Some(b[4] & 0x0F);
            }
            b = &b[(4 + len).min(b.len())..];
        }
        assert_eq!(remote, Some(6), "node {}: 0106h REMOTE TOKENS", n.name);
    }
}

/// Receive one frame and decode it with oxcopy-link (panics on anything
/// but a frame).
async fn recv_msg(s: &mut tokio::net::TcpStream, what: &str) -> Vec<u8> {
    match link::recv(s, Duration::from_secs(15)).await {
        link::Got::Frame { kind, payload } => link::frame(kind, &payload),
        other => panic!("{what}: {other:?}"),
    }
}

fn decode(frame: &[u8]) -> oxcopy_link::Message<'_> {
    match oxcopy_link::decode(frame) {
        Ok(Some((m, n))) if n == frame.len() => m,
        other => panic!("frame from A does not decode: {other:?}"),
    }
}

/// The node link with oxcopy-link's `ClientHandshake`: with the domain's
/// key the handshake reaches READY and the genuine token opens and reads
/// (the positive control for the refusals); with another key the client
/// finds that A's proof does not verify (A proves nothing to an outsider),
/// says AUTH_FAILED, and A closes the link and keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_link_client_handshake_right_and_wrong_key() {
    use oxcopy_link::{ClientHandshake, ErrorCode, LinkError, Message};
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Cluster::abc(&[dir.path()], LUN, None);
    let a = c.node("A");
    let sa = a.session().await;
    let data = pattern(90, MIB);
    write(&sa, SRC, 0, &data).await;
    let t = populate(&sa, SRC, 90, &pt(None, vec![range(0, 2048)])).await;
    let key = std::fs::read(c.dir.path().join("domain-1.key")).expect("the domain key");

    // The right key.
    let mut s = link::connect(a.link).await;
    let mut hs = ClientHandshake::new(&key, [0x11; 16], oxcopy_testkit::pattern(91, 32).try_into().unwrap());
    assert!(link::send(&mut s, &hs.hello()).await);
    let f = recv_msg(&mut s, "HELLO_REPLY").await;
    let (auth, server_id) = hs.on_reply(&decode(&f)).expect("A's proof verifies under the domain key");
    eprintln!("A's node id: {server_id:02x?}");
    assert!(link::send(&mut s, &auth).await);
    let f = recv_msg(&mut s, "READY").await;
    hs.on_ready(&decode(&f)).expect("READY");
    assert!(link::send(&mut s, &Message::Open { token: &t }.to_frame()).await);
    let f = recv_msg(&mut s, "OPENED").await;
    match decode(&f) {
        Message::Opened(info) => assert_eq!(info.bytes, MIB, "bytes represented: {info:?}"),
        other => panic!("OPEN of the genuine token: {other:?}"),
    }
    assert!(link::send(&mut s, &Message::Read { offset: 4096, len: 256 * KIB }.to_frame()).await);
    let mut got = Vec::new();
    for _ in 0..16 {
        let f = recv_msg(&mut s, "DATA").await;
        match decode(&f) {
            Message::Data { offset, data: d, .. } => {
                assert_eq!(offset, 4096 + got.len() as u64, "DATA in order");
                got.extend_from_slice(d);
            }
            other => panic!("READ: {other:?}"),
        }
        if got.len() as u64 >= 256 * KIB {
            break;
        }
    }
    same(&got, &data[4096..4096 + (256 * KIB) as usize], "DATA frames of a READ");
    drop(s);

    // Another key.
    let failed0 = a.metric("oxcopy_link_sessions_total", "result=\"auth_failed\"").await;
    let mut s = link::connect(a.link).await;
    let other = oxcopy_testkit::pattern(92, 32);
    let mut hs = ClientHandshake::new(&other, [0x12; 16], oxcopy_testkit::pattern(93, 32).try_into().unwrap());
    assert!(link::send(&mut s, &hs.hello()).await);
    let f = recv_msg(&mut s, "HELLO_REPLY").await;
    match hs.on_reply(&decode(&f)) {
        Err(LinkError::AuthFailed) => {}
        other => panic!("a wrong-key client must not accept A's proof: {other:?}"),
    }
    let _ = link::send(&mut s, &Message::Error { code: ErrorCode::AUTH_FAILED, message: "wrong key" }.to_frame()).await;
    let _ = link::send(&mut s, &Message::Open { token: &t }.to_frame()).await;
    let got = link::drain_until_closed(&mut s, Duration::from_secs(15)).await;
    let got = got.unwrap_or_else(|g| panic!("A kept the link of a wrong-key client open; received {g:?}"));
    assert!(got.iter().all(|f| f.error_code().is_some()), "only errors after a failed handshake: {got:?}");
    eprintln!(
        "auth_failed after a client-side AUTH_FAILED: {} -> {}",
        failed0,
        a.metric("oxcopy_link_sessions_total", "result=\"auth_failed\"").await
    );
    // A still serves B.
    let (b, sb) = (c.node("B"), c.node("B").session().await);
    let o = wut_raw(&sb, DST, 91, &wut(t, 0, vec![range(0, 2048)])).await;
    assert!(o.is_good(), "B pulling from A after the handshakes: {}\n{}", describe(&o), c.logs());
    same(&file_bytes(&b.lun_file(DST), 0, MIB), &data, "B's copy after the handshakes");
}
