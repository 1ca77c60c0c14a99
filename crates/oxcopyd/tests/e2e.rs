//! End-to-end tests: the in-process daemon (`oxcopyd::start`, 127.0.0.1:0,
//! sparse LUN files in a temp dir) driven over loopback TCP by the oxcopy
//! initiator: login with and without digests, discovery and allow-lists,
//! data integrity across sizes/offsets/block sizes, R2T-heavy writes,
//! concurrency, keepalive in both directions, task management, logout and
//! graceful shutdown with I/O in flight.

mod common;

use bytes::Bytes;
use common::*;
use oxcopy_initiator::scsi::{cdb, sense_key};
use oxcopy_initiator::{DataDir, DigestPolicy, InitiatorError, LoginError, Session, SessionConfig, TmfResponse};
use oxcopy_iscsi::pdu::{Header, LoginStatus, RESERVED_TAG};
use std::time::{Duration, Instant};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn policy(on: bool) -> DigestPolicy {
    if on {
        DigestPolicy::Crc32c
    } else {
        DigestPolicy::None
    }
}

/// Write `data` at `lba`, read it back, and check the backing file too.
async fn write_read_verify(d: &Daemon, s: &Session, lun: u64, bs: u32, lba: u64, data: &Bytes, what: &str) {
    within(STEP, what, s.write16(lun, lba, data.clone(), bs, false))
        .await
        .unwrap_or_else(|e| panic!("{what}: write: {e}"));
    let blocks = (data.len() / bs as usize) as u32;
    let got = within(STEP, what, s.read16(lun, lba, blocks, bs)).await.unwrap_or_else(|e| panic!("{what}: read: {e}"));
    assert_same(&got, data, what);
    assert_same(&file_bytes(&d.lun_path(lun), lba * bs as u64, data.len()), data, &format!("{what} (file)"));
}

// ---------------------------------------------------------------------------
// Login and discovery.

/// Every digest combination logs in, is negotiated as asked, and is really
/// on the wire (the byte counts of a NOP and of a one-PDU read prove the
/// target appends a header and a data digest exactly when negotiated); data
/// survives the trip both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_and_without_digests() {
    let d = Daemon::start().await;
    for (i, (hd, dd)) in [(false, false), (true, false), (false, true), (true, true)].into_iter().enumerate() {
        let what = format!("HeaderDigest={hd} DataDigest={dd}");
        let cfg = SessionConfig {
            header_digest: policy(hd),
            data_digest: policy(dd),
            // Small segments and bursts: many digested PDUs per command.
            max_recv_data_segment_length: 16 * KIB as u32,
            max_burst_length: 64 * KIB as u32,
            first_burst_length: 32 * KIB as u32,
            ..d.cfg()
        };
        let s = d.session_with(cfg).await;
        assert_eq!(s.params().header_digest, hd, "{what}");
        assert_eq!(s.params().data_digest, dd, "{what}");

        let before = s.wire_stats();
        within(STEP, "nop", s.nop()).await.expect("NOP");
        let after = s.wire_stats();
        let hd_len = if hd { 4 } else { 0 };
        let dd_len = if dd { 4 } else { 0 };
        assert_eq!(after.bytes_received - before.bytes_received, 48 + hd_len, "{what}: NOP-In size");

        let data = pattern(100 + i as u64, MIB + 3 * 512);
        write_read_verify(&d, &s, LUN_512, 512, 4096 * i as u64 + 1, &data, &what).await;

        // One 4 KiB read = one Data-In PDU with status folded in.
        let before = s.wire_stats();
        let got = within(STEP, "read", s.read16(LUN_512, 4096 * i as u64 + 1, 8, 512)).await.expect("read");
        assert_same(&got, &data[..4096], &what);
        let after = s.wire_stats();
        assert_eq!(after.pdus_received - before.pdus_received, 1, "{what}");
        assert_eq!(after.bytes_received - before.bytes_received, 48 + hd_len + 4096 + dd_len, "{what}: Data-In size");

        let inq = within(STEP, "inquiry", s.inquiry(LUN_512, false, 0, 96)).await.expect("INQUIRY");
        assert_eq!(&inq[8..14], b"OXCOPY", "{what}");
        within(STEP, "logout", s.logout()).await.expect("logout");
    }
    // An initiator that prefers digests but accepts none gets them.
    let s = d
        .session_with(SessionConfig {
            header_digest: DigestPolicy::PreferCrc32c,
            data_digest: DigestPolicy::PreferCrc32c,
            ..d.cfg()
        })
        .await;
    assert!(s.params().header_digest && s.params().data_digest);
    within(STEP, "TUR", s.test_unit_ready(LUN_4K)).await.expect("TUR");
    within(STEP, "logout", s.logout()).await.expect("logout");
    d.shutdown().await;
    assert_no_panics();
}

fn discovery_cfg(initiator: &str) -> SessionConfig {
    SessionConfig { initiator_name: initiator.into(), target_name: None, ..session_cfg("unused") }
}

/// SendTargets lists what an initiator may use, with this portal's address;
/// the allow-list hides the restricted target from others and refuses
/// their login with AUTHORIZATION FAILURE (0202h); unknown targets are
/// NOT FOUND (0203h); a discovery session carries no SCSI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_and_allow_list() {
    let d = Daemon::start().await;
    let portal = format!("{}:{},1", d.addr.ip(), d.addr.port());

    let seen = within(STEP, "discovery", Session::discover(d.addr, discovery_cfg(INITIATOR))).await.expect("discover");
    let names: Vec<&str> = seen.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec![TARGET], "an outsider sees only the open target");
    assert_eq!(seen[0].addresses, vec![portal.clone()]);

    let seen =
        within(STEP, "discovery", Session::discover(d.addr, discovery_cfg(ALLOWED_INITIATOR))).await.expect("discover");
    let mut names: Vec<&str> = seen.iter().map(|t| t.name.as_str()).collect();
    names.sort();
    assert_eq!(names, vec![TARGET, RESTRICTED], "the allowed initiator sees both");
    assert!(seen.iter().all(|t| t.addresses == vec![portal.clone()]), "{seen:?}");

    // Login as an outsider: refused with 0202h.
    let r = Session::connect(d.addr, session_cfg(RESTRICTED)).await;
    match r {
        Err(InitiatorError::Login(LoginError::Rejected { status })) => {
            assert_eq!(status, LoginStatus::AUTHORIZATION_FAILURE, "status {:02x}{:02x}", status.0, status.1)
        }
        other => panic!("outsider login to the restricted target: {other:?}"),
    }
    // Same through the raw client (the refusal is a Login Response, then close).
    let raw = Raw::try_login(d.addr, &RawOpts { target: Some(RESTRICTED.into()), ..RawOpts::default() }).await;
    assert!(
        matches!(raw, Err(LoginError::Rejected { status }) if status == LoginStatus::AUTHORIZATION_FAILURE),
        "{:?}",
        raw.err()
    );
    // Unknown target.
    match Session::connect(d.addr, session_cfg("iqn.2026-11.dev.oxcopy:nope")).await {
        Err(InitiatorError::Login(LoginError::Rejected { status })) => assert_eq!(status, LoginStatus::NOT_FOUND),
        other => panic!("login to an unknown target: {other:?}"),
    }

    // The allowed initiator logs in and uses it.
    let s = d.session_with(SessionConfig { initiator_name: ALLOWED_INITIATOR.into(), ..session_cfg(RESTRICTED) }).await;
    within(STEP, "TUR", s.test_unit_ready(0)).await.expect("TUR");
    assert_eq!(within(STEP, "REPORT LUNS", s.report_luns()).await.expect("REPORT LUNS"), vec![0]);
    let data = pattern(7, 64 * KIB);
    within(STEP, "write", s.write16(0, 10, data.clone(), 512, false)).await.expect("write");
    assert_same(&within(STEP, "read", s.read16(0, 10, 128, 512)).await.expect("read"), &data, "restricted LUN");
    within(STEP, "logout", s.logout()).await.expect("logout");

    // A discovery session refuses SCSI commands.
    let ds = d.session_with(discovery_cfg(INITIATOR)).await;
    match within(STEP, "SCSI on discovery", ds.execute(0, &cdb::test_unit_ready(), DataDir::None)).await {
        Err(InitiatorError::Rejected { .. }) => {}
        other => panic!("SCSI command on a discovery session: {other:?}"),
    }
    within(STEP, "discovery still answers", ds.send_targets()).await.expect("SendTargets after the reject");
    within(STEP, "logout", ds.logout()).await.expect("logout");
    d.shutdown().await;
    assert_no_panics();
}

// ---------------------------------------------------------------------------
// Data integrity.

/// Writes of 1 block to several MiB, sizes on and off every burst and
/// segment boundary, at odd offsets and flush against the end of the LUN,
/// on 512- and 4096-byte-block LUNs; everything written first, then read
/// back (so a misplaced write shows up as corruption of a neighbour) and
/// checked in the backing file. Two sessions with different segment/burst
/// sizes alternate. Out-of-range I/O is refused with LBA OUT OF RANGE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_read_many_sizes_and_offsets() {
    let d = Daemon::start().await;
    let big = d.session().await;
    let small = d
        .session_with(SessionConfig {
            max_recv_data_segment_length: 8 * KIB as u32,
            max_burst_length: 96 * KIB as u32,
            first_burst_length: 24 * KIB as u32,
            ..d.cfg()
        })
        .await;
    for (lun, bs) in [(LUN_512, 512u32), (LUN_4K, 4096u32)] {
        let (blocks, got_bs) = within(STEP, "capacity", big.read_capacity16(lun)).await.expect("READ CAPACITY");
        assert_eq!((blocks, got_bs), (LUN_SIZE / bs as u64, bs), "LUN {lun}");
        let b = bs as usize;
        let sizes = [
            b,
            2 * b,
            3 * b,
            7 * b,
            8 * KIB - b,
            8 * KIB + b,
            24 * KIB + b,
            64 * KIB - b,
            64 * KIB,
            64 * KIB + b,
            96 * KIB + 3 * b,
            256 * KIB - b,
            256 * KIB,
            256 * KIB + b,
            MIB - b,
            MIB + 3 * b,
            3 * MIB + 5 * b,
            6 * MIB - b,
        ];
        let mut regions: Vec<(u64, Bytes)> = Vec::new();
        let mut lba = 1u64;
        for (i, &len) in sizes.iter().enumerate() {
            regions.push((lba, pattern(lun * 1000 + i as u64, len)));
            lba += (len / b) as u64 + 1 + i as u64 % 3;
        }
        // Against the end of the LUN.
        let end = LUN_SIZE / bs as u64;
        for (i, (len, gap)) in [(b, 0), (17 * b, 3), (MIB + b, 40)].into_iter().enumerate() {
            let at = end - (len / b) as u64 - gap;
            regions.push((at, pattern(lun * 1000 + 500 + i as u64, len)));
        }
        // Sort and check they are disjoint (the test's own sanity).
        let mut sorted = regions.iter().map(|(l, d)| (*l, *l + (d.len() / b) as u64)).collect::<Vec<_>>();
        sorted.sort();
        assert!(sorted.windows(2).all(|w| w[0].1 <= w[1].0), "test regions overlap: {sorted:?}");

        for (i, (lba, data)) in regions.iter().enumerate() {
            let s = if i % 2 == 0 { &big } else { &small };
            within(STEP, "write", s.write16(lun, *lba, data.clone(), bs, i % 5 == 0))
                .await
                .unwrap_or_else(|e| panic!("LUN {lun} write {} bytes at {lba}: {e}", data.len()));
        }
        for (i, (lba, data)) in regions.iter().enumerate() {
            let s = if i % 2 == 1 { &big } else { &small };
            let nb = (data.len() / b) as u32;
            let got = within(STEP, "read", s.read16(lun, *lba, nb, bs))
                .await
                .unwrap_or_else(|e| panic!("LUN {lun} read {} bytes at {lba}: {e}", data.len()));
            assert_same(&got, data, &format!("LUN {lun}, {} bytes at LBA {lba}", data.len()));
            assert_same(
                &file_bytes(&d.lun_path(lun), lba * bs as u64, data.len()),
                data,
                &format!("LUN {lun} file, {} bytes at LBA {lba}", data.len()),
            );
        }
        // The gaps between regions were never written: still zero.
        for w in sorted.windows(2) {
            if w[1].0 > w[0].1 {
                let gap = within(STEP, "read gap", big.read16(lun, w[0].1, 1, bs)).await.expect("read gap");
                assert!(gap.iter().all(|&x| x == 0), "LUN {lun}: block {} was written", w[0].1);
            }
        }
        // Past the end: LBA OUT OF RANGE, for reads and writes.
        let o = within(
            STEP,
            "write past end",
            big.execute(lun, &cdb::write16(end - 1, 2, false), DataDir::Write { data: pattern(1, 2 * b) }),
        )
        .await
        .expect("write past end completes");
        assert!(o.is_check_condition(), "write past the end: {o:?}");
        assert_eq!(sense_triplet(o.sense.as_deref().unwrap()), (sense_key::ILLEGAL_REQUEST, 0x21, 0));
        let o = within(STEP, "read past end", big.execute(lun, &cdb::read16(end, 1, false), DataDir::Read { len: bs }))
            .await
            .expect("read past end completes");
        assert_eq!(sense_triplet(o.sense.as_deref().unwrap()).1, 0x21, "read past the end: {o:?}");
    }
    within(STEP, "logout", big.logout()).await.expect("logout");
    within(STEP, "logout", small.logout()).await.expect("logout");
    d.shutdown().await;
    assert_no_panics();
}

/// Writes bigger than MaxBurstLength under every InitialR2T/ImmediateData
/// combination: the target must solicit exactly the non-unsolicited part
/// in R2Ts of at most MaxBurstLength (counted on the wire: a write gets
/// only R2Ts and one SCSI Response back), and the data must land intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_needing_many_r2ts() {
    let d = Daemon::start().await;
    let k64 = 64 * KIB as u32;
    // (immediate_data, initial_r2t, max_burst, first_burst, max_outstanding_r2t)
    let variants = [
        (true, false, k64, k64, 1),
        (false, true, k64, k64, 1),
        (true, true, k64, k64, 4),
        (false, false, k64, k64, 2),
        (true, false, MIB as u32, 256 * KIB as u32, 1),
    ];
    for (v, &(imm, r2t, burst, first, outstanding)) in variants.iter().enumerate() {
        let what = format!("ImmediateData={imm} InitialR2T={r2t} MaxBurst={burst} FirstBurst={first}");
        let s = d
            .session_with(SessionConfig {
                immediate_data: imm,
                initial_r2t: r2t,
                max_burst_length: burst,
                first_burst_length: first,
                max_outstanding_r2t: outstanding,
                ..d.cfg()
            })
            .await;
        let p = s.params().clone();
        assert_eq!(
            (p.immediate_data, p.initial_r2t, p.max_burst_length, p.first_burst_length),
            (imm, r2t, burst, first),
            "{what}: negotiated"
        );
        let mrdsl = p.target_max_recv_data_segment_length as usize;
        for (j, len) in [4 * MIB, 4 * MIB + 3 * 512, 100 * KIB + 512, 512].into_iter().enumerate() {
            let lba = (v * 40_000 + j * 10_000) as u64;
            let data = pattern((v * 10 + j) as u64, len);
            let imm_len = if imm { len.min(first as usize).min(mrdsl) } else { 0 };
            let unsolicited = if r2t { imm_len } else { len.min(first as usize) };
            let r2ts = (len - unsolicited).div_ceil(burst as usize);
            let unsolicited_pdus = (unsolicited - imm_len).div_ceil(mrdsl);
            let solicited_pdus: usize = (0..r2ts)
                .map(|k| {
                    let start = unsolicited + k * burst as usize;
                    (len - start).min(burst as usize).div_ceil(mrdsl)
                })
                .sum();
            let before = s.wire_stats();
            within(STEP, &what, s.write16(LUN_512, lba, data.clone(), 512, false))
                .await
                .unwrap_or_else(|e| panic!("{what}: {len}-byte write: {e}"));
            let after = s.wire_stats();
            assert_eq!(
                after.pdus_received - before.pdus_received,
                r2ts as u64 + 1,
                "{what}: {len}-byte write should take {r2ts} R2Ts"
            );
            let want_sent = (1 + unsolicited_pdus + solicited_pdus) as u64;
            assert_eq!(
                sent_settled(&s, before.pdus_sent, want_sent).await,
                want_sent,
                "{what}: {len}-byte write: command + Data-Out PDUs"
            );
            let got = within(STEP, &what, s.read16(LUN_512, lba, (len / 512) as u32, 512)).await.expect("read");
            assert_same(&got, &data, &what);
            assert_same(&file_bytes(&d.lun_path(LUN_512), lba * 512, len), &data, &what);
        }
        if v == 0 {
            assert!(r2t_count_sanity(&s, &d).await >= 63, "a 4 MiB write with 64 KiB bursts needs >= 63 R2Ts");
        }
        within(STEP, "logout", s.logout()).await.expect("logout");
    }
    d.shutdown().await;
    assert_no_panics();
}

/// PDUs sent since `before`, once the writer task has counted what it
/// wrote (it counts after the write, so a fast response can beat it).
async fn sent_settled(s: &Session, before: u64, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(2);
    while s.wire_stats().pdus_sent - before < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    s.wire_stats().pdus_sent - before
}

/// R2Ts seen for one 4 MiB write on the 4096-byte LUN (sanity of the
/// counting approach, independent of the formula above).
async fn r2t_count_sanity(s: &Session, d: &Daemon) -> u64 {
    let data = pattern(4242, 4 * MIB);
    let before = s.wire_stats();
    within(STEP, "4 MiB write", s.write16(LUN_4K, 1000, data.clone(), 4096, false)).await.expect("write");
    let n = s.wire_stats().pdus_received - before.pdus_received - 1;
    assert_same(&file_bytes(&d.lun_path(LUN_4K), 1000 * 4096, data.len()), &data, "4 MiB on LUN 1");
    n
}

/// 8 sessions × 16 concurrent commands on disjoint regions of both LUNs
/// (mixed sizes, mixed session parameters), then concurrent read-back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_many_commands() {
    let d = Daemon::start().await;
    const SESSIONS: u64 = 8;
    const PER: u64 = 16;
    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        let cfg = if i % 3 == 0 {
            SessionConfig {
                max_burst_length: 64 * KIB as u32,
                first_burst_length: 16 * KIB as u32,
                max_recv_data_segment_length: 32 * KIB as u32,
                ..d.cfg()
            }
        } else {
            d.cfg()
        };
        sessions.push(d.session_with(cfg).await);
    }
    // Region of command k of session i: 1 MiB slots, each holding one write.
    let region = |i: u64, k: u64| -> (u64, u32, u64, Bytes) {
        let lun = i % 2;
        let bs = if lun == 0 { 512u32 } else { 4096 };
        let len = ((k % 4 + 1) as usize * 96 * KIB + k as usize * bs as usize).min(MIB);
        let lba = (i / 2 * PER + k) * (MIB as u64 / bs as u64);
        (lun, bs, lba, pattern(i * 100 + k, len))
    };
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (i, s) in sessions.iter().enumerate() {
        for k in 0..PER {
            let s = s.clone();
            let (lun, bs, lba, data) = region(i as u64, k);
            set.spawn(async move { s.write16(lun, lba, data, bs, false).await.map(|_| (i, k)) });
        }
    }
    let mut n = 0;
    while let Some(r) = within(Duration::from_secs(60), "concurrent writes", set.join_next()).await {
        r.expect("task").expect("write");
        n += 1;
    }
    assert_eq!(n, SESSIONS * PER);
    for (i, s) in sessions.iter().enumerate() {
        for k in 0..PER {
            let s = s.clone();
            let (lun, bs, lba, data) = region(i as u64, k);
            set.spawn(async move {
                let got = s.read16(lun, lba, (data.len() / bs as usize) as u32, bs).await?;
                assert_same(&got, &data, &format!("session {i} command {k}"));
                Ok::<_, InitiatorError>((i, k))
            });
        }
    }
    while let Some(r) = within(Duration::from_secs(60), "concurrent reads", set.join_next()).await {
        r.expect("task").expect("read");
    }
    eprintln!("8 sessions x 16 commands written and verified in {:?}", start.elapsed());
    for s in sessions {
        within(STEP, "logout", s.logout()).await.expect("logout");
    }
    d.shutdown().await;
    assert_no_panics();
}

/// With a CmdSN window of 4, a session with 48 commands queued at once
/// is throttled by MaxCmdSN, never loses or reorders data, and the target
/// never buffers more than the window allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_cmdsn_window_throttles_without_loss() {
    let d = Daemon::start_with(Opts { max_commands_per_session: 4, ..Opts::default() }).await;
    let s = d.session().await;
    let mut set = tokio::task::JoinSet::new();
    for k in 0..48u64 {
        let s = s.clone();
        set.spawn(async move {
            let data = pattern(9000 + k, 64 * KIB);
            s.write16(LUN_512, k * 256, data.clone(), 512, false).await?;
            let got = s.read16(LUN_512, k * 256, 128, 512).await?;
            assert_same(&got, &data, &format!("command {k}"));
            Ok::<_, InitiatorError>(())
        });
    }
    while let Some(r) = within(Duration::from_secs(60), "windowed commands", set.join_next()).await {
        r.expect("task").expect("command");
    }
    within(STEP, "logout", s.logout()).await.expect("logout");
    d.shutdown().await;
    assert_no_panics();
}

// ---------------------------------------------------------------------------
// Keepalive.

/// Initiator NOP-Out pings are answered, also while a large write is in
/// flight on the same session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nop_out_ping() {
    let d = Daemon::start().await;
    let s = d
        .session_with(SessionConfig {
            max_burst_length: 64 * KIB as u32,
            first_burst_length: 64 * KIB as u32,
            ..d.cfg()
        })
        .await;
    for _ in 0..5 {
        let rtt = within(STEP, "nop", s.nop()).await.expect("NOP");
        assert!(rtt < STEP);
    }
    let data = pattern(77, 8 * MIB);
    let c = cdb::write16(0, (8 * MIB / 512) as u32, false);
    let pending =
        within(STEP, "submit", s.submit(LUN_512, &c, DataDir::Write { data: data.clone() })).await.expect("submit");
    for _ in 0..3 {
        within(STEP, "nop during write", s.nop()).await.expect("NOP during a write");
    }
    let o = within(STEP, "write", pending).await.expect("write");
    assert!(o.is_good(), "{o:?}");
    assert_same(&file_bytes(&d.lun_path(LUN_512), 0, data.len()), &data, "8 MiB write");
    within(STEP, "logout", s.logout()).await.expect("logout");
    d.shutdown().await;
    assert_no_panics();
}

/// `nop_interval = 1`: the target pings idle connections. Our initiator
/// answers, so its session survives several intervals (and the pings are
/// seen on the wire); a raw client that logs in and never answers is
/// disconnected after about two intervals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_nop_in_keepalive() {
    let d = Daemon::start_with(Opts { nop_interval: 1, ..Opts::default() }).await;
    let s = d.session().await;
    let mut raw = Raw::login(d.addr, &RawOpts::default()).await;

    let answered = async {
        let before = s.wire_stats();
        tokio::time::sleep(Duration::from_millis(4500)).await;
        let after = s.wire_stats();
        assert!(!s.is_closed(), "session closed: {:?}", s.close_reason());
        let pings = after.pdus_received - before.pdus_received;
        assert!((3..=6).contains(&pings), "expected about 4 NOP-In pings in 4.5 s, saw {pings} PDUs");
        let answers = after.pdus_sent - before.pdus_sent;
        assert!(answers + 1 >= pings && answers <= pings, "{pings} pings, {answers} answers");
        within(STEP, "TUR after idling", s.test_unit_ready(LUN_512)).await.expect("TUR");
    };
    let silent = async {
        let t = Instant::now();
        let got = raw.expect_closed(Duration::from_secs(6)).await;
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(1500) && took <= Duration::from_millis(4000),
            "unanswered keepalive closed the connection after {took:?}"
        );
        assert!(!got.is_empty(), "closed without pinging first");
        for p in &got {
            match &p.header {
                Header::NopIn(n) => {
                    assert_eq!(n.itt, RESERVED_TAG, "a target ping has ITT ffffffff");
                    assert_ne!(n.ttt, RESERVED_TAG, "a target ping wants an answer (TTT set)");
                }
                other => panic!("unexpected {other:?} on an idle connection"),
            }
        }
    };
    tokio::join!(answered, silent);
    within(STEP, "logout", s.logout()).await.expect("logout");
    d.shutdown().await;
    assert_no_panics();
}

// ---------------------------------------------------------------------------
// Task management.

/// ABORT TASK on a large write in flight: either the write had finished
/// (TASK DOES NOT EXIST, write GOOD) or it is aborted (FUNCTION COMPLETE,
/// the write never reports status); the session works afterwards, and an
/// unknown ITT is TASK DOES NOT EXIST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_task() {
    let d = Daemon::start().await;
    let s = d
        .session_with(SessionConfig {
            max_burst_length: 64 * KIB as u32,
            first_burst_length: 64 * KIB as u32,
            max_outstanding_r2t: 1,
            ..d.cfg()
        })
        .await;
    let mut outcomes = Vec::new();
    for round in 0..6u64 {
        let data = pattern(round, 8 * MIB);
        let pending = within(
            STEP,
            "submit",
            s.submit(LUN_512, &cdb::write16(round * 20_000, (8 * MIB / 512) as u32, false), DataDir::Write { data }),
        )
        .await
        .expect("submit");
        let itt = pending.itt();
        if round % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let resp = within(STEP, "abort", s.abort_task(itt)).await.expect("ABORT TASK");
        let r = within(STEP, "aborted write", pending).await;
        match resp {
            TmfResponse::TASK_DOES_NOT_EXIST => {
                let o = r.expect("a write that finished before the abort completed");
                assert!(o.is_good(), "{o:?}");
            }
            TmfResponse::COMPLETE => {
                assert!(matches!(r, Err(InitiatorError::Aborted)), "aborted write resolved as {r:?}")
            }
            other => panic!("ABORT TASK answered {other:?}"),
        }
        outcomes.push(resp.0);
        // The session still works.
        let probe = pattern(500 + round, 4096);
        write_read_verify(&d, &s, LUN_4K, 4096, round, &probe, "after abort").await;
    }
    eprintln!("ABORT TASK responses: {outcomes:?}");
    // A write that has completed can no longer be aborted.
    let data = pattern(99, 256 * KIB);
    let pending = within(STEP, "submit", s.submit(LUN_512, &cdb::write16(7, 512, false), DataDir::Write { data }))
        .await
        .expect("submit");
    let itt = pending.itt();
    assert!(within(STEP, "write", pending).await.expect("write").is_good());
    let r = within(STEP, "abort finished", s.abort_task(itt)).await.expect("ABORT TASK");
    assert_eq!(r, TmfResponse::TASK_DOES_NOT_EXIST, "ABORT TASK of a finished write");
    let r = within(STEP, "abort unknown", s.abort_task(0x7777_1234)).await.expect("ABORT TASK");
    assert_eq!(r, TmfResponse::TASK_DOES_NOT_EXIST);
    within(STEP, "TUR", s.test_unit_ready(LUN_512)).await.expect("TUR after aborts");
    within(STEP, "logout", s.logout()).await.expect("logout");
    d.shutdown().await;
    assert_no_panics();
}

/// LUN RESET answers FUNCTION COMPLETE; then the next command of every
/// nexus that used the LU (the requester included) gets UNIT ATTENTION
/// 29h/xx exactly once; other LUs are untouched; commands in flight at the
/// reset either completed or resolve as aborted; unknown LUN → LUN DOES
/// NOT EXIST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lun_reset_then_unit_attention() {
    let d = Daemon::start().await;
    let s = d.session().await;
    let other = d.session().await;
    within(STEP, "TUR", s.test_unit_ready(LUN_512)).await.expect("TUR");
    within(STEP, "TUR", s.test_unit_ready(LUN_4K)).await.expect("TUR");
    within(STEP, "TUR", other.test_unit_ready(LUN_512)).await.expect("TUR");

    let mut inflight = Vec::new();
    for k in 0..4u64 {
        let data = pattern(k, 2 * MIB);
        let c = cdb::write16(k * 8192, (2 * MIB / 512) as u32, false);
        inflight.push(within(STEP, "submit", s.submit(LUN_512, &c, DataDir::Write { data })).await.expect("submit"));
    }
    let r = within(STEP, "LUN RESET", s.lun_reset(LUN_512)).await.expect("LUN RESET");
    assert_eq!(r, TmfResponse::COMPLETE);
    for p in inflight {
        match within(STEP, "write in flight at reset", p).await {
            Ok(o) => assert!(o.is_good(), "a write that beat the reset: {o:?}"),
            Err(InitiatorError::Aborted) => {}
            Err(e) => panic!("write in flight at the reset: {e}"),
        }
    }
    for (who, sess) in [("requester", &s), ("other nexus", &other)] {
        let o = within(STEP, "TUR", sess.execute(LUN_512, &cdb::test_unit_ready(), DataDir::None)).await.expect("TUR");
        assert!(o.is_check_condition(), "{who}: first command after the reset: {o:?}");
        let (key, asc, _) = sense_triplet(o.sense.as_deref().expect("sense"));
        assert_eq!((key, asc), (sense_key::UNIT_ATTENTION, 0x29), "{who}");
        within(STEP, "TUR", sess.test_unit_ready(LUN_512)).await.unwrap_or_else(|e| panic!("{who}: UA repeated: {e}"));
    }
    within(STEP, "TUR", s.test_unit_ready(LUN_4K)).await.expect("LUN 1 was not reset");
    let r = within(STEP, "LUN RESET", s.lun_reset(7)).await.expect("LUN RESET of LUN 7");
    assert_eq!(r, TmfResponse::LUN_DOES_NOT_EXIST);
    let data = pattern(31337, 64 * KIB);
    write_read_verify(&d, &s, LUN_512, 512, 100_000, &data, "after LUN RESET").await;
    within(STEP, "logout", s.logout()).await.expect("logout");
    within(STEP, "logout", other.logout()).await.expect("logout");
    d.shutdown().await;
    assert_no_panics();
}

// ---------------------------------------------------------------------------
// Logout and shutdown.

/// Logout succeeds, closes the session for every clone, and the target
/// closes the TCP connection (checked with the raw client); new sessions
/// are welcome afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_closes_session() {
    let d = Daemon::start().await;
    let s = d.session().await;
    let clone = s.clone();
    within(STEP, "TUR", s.test_unit_ready(LUN_512)).await.expect("TUR");
    within(STEP, "logout", s.logout()).await.expect("logout");
    assert!(clone.is_closed());
    assert!(matches!(clone.test_unit_ready(LUN_512).await, Err(InitiatorError::ConnectionClosed)));

    let mut raw = Raw::login(d.addr, &RawOpts::default()).await;
    raw.tur_good().await;
    let itt = raw.itt();
    let h = Header::LogoutRequest(oxcopy_iscsi::pdu::LogoutRequest {
        immediate: true,
        reason: oxcopy_iscsi::pdu::LogoutReason::CLOSE_SESSION,
        itt,
        cid: 0,
        cmd_sn: raw.cmd_sn,
        exp_stat_sn: raw.exp_stat_sn,
    });
    raw.send(&h, &[], &[]).await;
    let got = raw.expect_closed(STEP).await;
    assert_eq!(got.len(), 1, "exactly the Logout Response before closing");
    match &got[0].header {
        Header::LogoutResponse(r) => {
            assert_eq!(r.itt, itt);
            assert_eq!(r.response, oxcopy_iscsi::pdu::LogoutResponseCode::SUCCESS);
        }
        other => panic!("expected a Logout Response, got {other:?}"),
    }
    let s = d.session().await;
    within(STEP, "TUR", s.test_unit_ready(LUN_4K)).await.expect("a new session works");
    within(STEP, "logout", s.logout()).await.expect("logout");
    d.shutdown().await;
    assert_no_panics();
}

/// `Running::shutdown` with writes in flight from several sessions: it
/// returns promptly, every write acknowledged GOOD is in the file, the
/// sessions see the connection close (no hang), and the listener is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_shutdown_with_io_in_flight() {
    let d = Daemon::start().await;
    let addr = d.addr;
    let lun_path = d.lun_path(LUN_512);
    let writers = Writers::start(addr, 4).await;
    writers.wait_progress(3).await;
    // Keep the temp dir alive past shutdown.
    let Daemon { running, dir, .. } = d;
    let t = Instant::now();
    within(Duration::from_secs(15), "shutdown", running.expect("running").shutdown()).await.expect("shutdown");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    let (total, cut_short) = writers.verify(&lun_path).await;
    assert!(cut_short > 0, "shutdown came after every writer had finished: no I/O was in flight");
    eprintln!("{total} acknowledged writes verified after shutdown ({took:?})");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(_) => break,
            Ok(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            Ok(_) => panic!("listener still accepting after shutdown"),
        }
    }
    drop(dir);
    assert_no_panics();
}

/// Connections that have not finished logging in have nothing in flight:
/// shutdown must not wait for them (default login_timeout = 30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_not_delayed_by_unfinished_logins() {
    let d = Daemon::start().await;
    let s = d.session().await;
    within(STEP, "TUR", s.test_unit_ready(LUN_512)).await.expect("TUR");
    // One connection says nothing; one sends half a Login Request.
    let mut silent = Raw::tcp(d.addr).await;
    let mut half = Raw::tcp(d.addr).await;
    {
        use tokio::io::AsyncWriteExt;
        half.write_all(&[0x43, 0x81, 0, 0, 0, 0, 0x01, 0x00]).await.expect("send");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let took = d.shutdown().await;
    assert!(took < Duration::from_secs(3), "shutdown waited {took:?} for connections that never logged in");
    let mut b = [0u8; 64];
    use tokio::io::AsyncReadExt;
    for c in [&mut silent, &mut half] {
        let n = within(STEP, "close after shutdown", c.read(&mut b)).await.unwrap_or(0);
        assert_eq!(n, 0, "still talking after shutdown");
    }
    within(STEP, "session closed by the shutdown", s.closed()).await;
    assert_no_panics();
}
