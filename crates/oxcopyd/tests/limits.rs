//! Resource bounds over loopback: `server.max_sessions` (login refused with
//! Target Error / Out of resources), the data segment limit, the CmdSN window
//! (`max_commands_per_session`), `max_concurrent_copies` (INSUFFICIENT
//! RESOURCES), `write_buffer_limit` (TASK SET FULL, budget given back),
//! `write_buffer_per_session` (one session's waiting writes are bounded by
//! its share; another session still writes), `read_buffer_limit` /
//! `read_buffer_per_session` (READs whose Data-In the peer does not take
//! hold the session's share: TASK SET FULL for it, others served),
//! `write_data_timeout` (a write whose data trickles is ended with ABORTED
//! COMMAND / INITIATOR RESPONSE TIMEOUT; the session carries on),
//! `pdu_timeout` (a connection stalled mid-PDU, or not reading, is closed;
//! others are unaffected) and `login_timeout` for a stalled login.
//!
//! The data-segment limit (MaxRecvDataSegmentLength → Reject 04h, close) has
//! more cases in `malformed.rs::oversized_data_segment`; out-of-window CmdSN
//! in `malformed.rs::out_of_window_cmd_sn`.

mod common;
mod trust_support;

use bytes::Bytes;
use common::{sense_triplet, Raw, RawOpts, Recv};
use oxcopy_initiator::scsi::cdb;
use oxcopy_initiator::xcopy::{Cscd, ListIdUsage, ParamList, Segment};
use oxcopy_initiator::{InitiatorError, LoginError, STATUS_TASK_SET_FULL};
use oxcopy_iscsi::pdu::{Header, LoginStatus, NopOut, RejectReason, RESERVED_TAG};
use oxcopy_scsi::copy::{Completion, OpStatus, ScsiOutcome};
use oxcopy_scsi::Nexus;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use trust_support::*;

const T: &str = "iqn.2026-11.dev.oxcopy:limits";
const HOST: &str = "iqn.2026-11.dev.oxcopy:limits-host";

/// The target: two 64 MiB LUNs in `d`.
fn target(d: &Path) -> Target {
    Target::new(T).lun(Lun::new(0, d.join("lun0.img")).size("64MiB")).lun(Lun::new(1, d.join("lun1.img")).size("64MiB"))
}

fn raw_opts() -> RawOpts {
    RawOpts {
        initiator: HOST.into(),
        target: Some(T.into()),
        immediate_data: false,
        initial_r2t: true,
        max_burst: 256 * 1024,
        first_burst: 64 * 1024,
        ..RawOpts::default()
    }
}

/// The session limit counts normal sessions daemon-wide; one over it is
/// refused with status 0302h (Target Error / Out of resources) and the slot
/// comes back when a session ends. Discovery sessions are not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_sessions_refuses_with_out_of_resources() {
    let d = TDaemon::start(|d, c| c.server("max_sessions", 2).target(target(d))).await;
    let s1 = d.session(T, HOST).await;
    let s2 = d.session(T, HOST).await;
    match d.try_session(T, HOST).await {
        Err(InitiatorError::Login(LoginError::Rejected { status })) => {
            assert_eq!(status, LoginStatus::OUT_OF_RESOURCES, "status class 03h, detail 02h");
        }
        Err(e) => panic!("third login: unexpected error {e}"),
        Ok(_) => panic!("third login admitted over max_sessions = 2"),
    }
    assert_eq!(d.discover(HOST).await, vec![T.to_string()], "discovery still works at the limit");
    within(STEP, "TUR", s2.test_unit_ready(0)).await.expect("existing sessions are unaffected");
    within(STEP, "logout", s1.logout()).await.expect("logout");
    // The slot is given back when the connection task ends (bounded wait).
    let mut again = None;
    for _ in 0..100 {
        match d.try_session(T, HOST).await {
            Ok(s) => {
                again = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let s3 = again.expect("a login succeeds once a session has ended");
    within(STEP, "TUR", s3.test_unit_ready(0)).await.expect("TUR");
    d.shutdown().await;
}

/// A login in progress holds no session slot: with `max_sessions = 1`, a
/// connection that sent its first Login Request (target named, answered)
/// and then stopped does not keep another initiator from logging in; the
/// limit still holds once that one is logged in, and the half-finished
/// login is refused when it tries to complete over the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_in_progress_hold_no_session_slot() {
    use bytes::BytesMut;
    use oxcopy_iscsi::frame::{decode_frame, encode_frame, FrameLimits};
    use oxcopy_iscsi::login::{DigestPolicy, InitiatorLogin, InitiatorLoginConfig, InitiatorStep};
    use tokio::io::AsyncReadExt;

    let d = TDaemon::start(|d, c| c.server("max_sessions", 1).server("login_timeout", 30).target(target(d))).await;
    // Half a login: the first request (security stage, TargetName sent) is
    // answered, then nothing more.
    let mut half = Raw::tcp(d.addr).await;
    let mut lg = InitiatorLogin::new(InitiatorLoginConfig {
        initiator_name: "iqn.2026-11.dev.oxcopy:half-done".into(),
        initiator_alias: None,
        isid: [0x80, 0x12, 0x34, 0x56, 0x78, 0x9a],
        target_name: Some(T.into()),
        header_digest: DigestPolicy::None,
        data_digest: DigestPolicy::None,
        max_recv_data_segment_length: 8192,
        max_burst_length: 256 * 1024,
        first_burst_length: 64 * 1024,
        initial_r2t: true,
        immediate_data: false,
        max_outstanding_r2t: 1,
        initial_cmd_sn: 1,
    });
    let first = lg.start();
    half.write_all(&encode_frame(&first.header, &first.ahs, first.data.clone(), false, false).to_vec()).await.unwrap();
    let mut buf = BytesMut::with_capacity(8192);
    let resp = loop {
        if let Some(p) = decode_frame(&mut buf, &FrameLimits::LOGIN).expect("login framing") {
            break p;
        }
        let n = within(STEP, "first login response", half.read_buf(&mut buf)).await.expect("read");
        assert!(n > 0, "closed during login");
    };
    let next = match lg.on_pdu(&resp).expect("first login step accepted") {
        InitiatorStep::Send(p) => p,
        InitiatorStep::Complete { .. } => panic!("login completed in one step; nothing is half-done"),
    };

    // Another initiator logs in meanwhile.
    let s = match d.try_session(T, HOST).await {
        Ok(s) => s,
        Err(e) => panic!("a half-finished login kept the only session slot: {e}"),
    };
    within(STEP, "TUR", s.test_unit_ready(0)).await.expect("TUR");

    // The half-done login now completes, over the limit: refused.
    half.write_all(&encode_frame(&next.header, &next.ahs, next.data.clone(), false, false).to_vec()).await.unwrap();
    let resp = loop {
        if let Some(p) = decode_frame(&mut buf, &FrameLimits::LOGIN).expect("login framing") {
            break p;
        }
        let n = within(STEP, "last login response", half.read_buf(&mut buf)).await.expect("read");
        assert!(n > 0, "closed without a login response");
    };
    match &resp.header {
        Header::LoginResponse(r) => assert_eq!(r.status, LoginStatus::OUT_OF_RESOURCES, "{r:?}"),
        other => panic!("expected a Login Response, got {other:?}"),
    }
    within(STEP, "TUR", s.test_unit_ready(0)).await.expect("the session is unaffected");
    d.shutdown().await;
}

/// The CmdSN window: MaxCmdSN - ExpCmdSN + 1 equals the configured
/// window, and a command beyond MaxCmdSN is silently ignored (RFC 7143
/// §4.2.2.1) while the session carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmdsn_window_is_the_configured_size() {
    let d = TDaemon::start(|d, c| c.server("max_commands_per_session", 4).target(target(d))).await;
    let mut raw = Raw::login(d.addr, &raw_opts()).await;
    let itt = raw.itt();
    let nop = Header::NopOut(NopOut {
        immediate: false,
        lun: [0; 8],
        itt,
        ttt: RESERVED_TAG,
        cmd_sn: raw.cmd_sn,
        exp_stat_sn: raw.exp_stat_sn,
    });
    raw.cmd_sn = raw.cmd_sn.wrapping_add(1);
    raw.send(&nop, &[], &[]).await;
    let p = raw.expect_pdu().await;
    let Header::NopIn(n) = &p.header else { panic!("{:?}", p.header) };
    assert_eq!(n.max_cmd_sn.wrapping_sub(n.exp_cmd_sn).wrapping_add(1), 4, "window of 4");
    let beyond = n.max_cmd_sn.wrapping_add(1);
    let (mut h, _) = raw.scsi_cmd(&[0u8; 6], false, false, 0, true);
    if let Header::ScsiCommand(c) = &mut h {
        c.cmd_sn = beyond;
    }
    raw.send(&h, &[], &[]).await;
    raw.expect_silence(Duration::from_millis(300)).await;
    raw.cmd_sn = n.exp_cmd_sn;
    raw.tur_good().await;
    d.shutdown().await;
}

/// `max_concurrent_copies` bounds copies daemon-wide: with the one slot
/// taken, EXTENDED COPY fails with INSUFFICIENT RESOURCES (55h/03h) and
/// moves nothing; once the slot is free the same list succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copy_limit() {
    let d = TDaemon::start(|d, c| c.server("max_concurrent_copies", 1).target(target(d))).await;
    let s = d.session(T, HOST).await;
    within(STEP, "write", s.write16(0, 0, Bytes::from(pattern(7, 8192)), 512, false)).await.expect("write");
    let src = within(STEP, "VPD", s.lu_designator(0)).await.unwrap();
    let dst = within(STEP, "VPD", s.lu_designator(1)).await.unwrap();
    let list = ParamList {
        list_id: 1,
        usage: ListIdUsage::Discard,
        cscds: vec![Cscd::new(src, 0), Cscd::new(dst, 0)],
        segments: vec![Segment::BlockToBlock { src: 0, dst: 1, dc: false, blocks: 16, src_lba: 0, dst_lba: 0 }],
    };
    // Take the one slot as another copy would.
    let registry = d.registry().clone();
    let lu = registry.target_luns(T)[0].1.clone();
    let nexus = Nexus {
        initiator_name: Arc::from("iqn.2026-11.dev.oxcopy:other"),
        isid: [1; 6],
        target_name: Arc::from(T),
        tpgt: 1,
    };
    let op = registry.copy_manager().begin(&nexus, lu.naa(), None, 0).expect("the first copy starts");
    let o = within(STEP, "EXTENDED COPY", s.extended_copy(0, &list)).await.unwrap();
    assert!(o.is_check_condition(), "status {:#04x}", o.status);
    assert_eq!(sense3(&o), (0x05, 0x55, 0x03), "ILLEGAL REQUEST / INSUFFICIENT RESOURCES");
    assert!(file_bytes(&d.file("lun1.img"), 0, 8192).iter().all(|&b| b == 0), "nothing copied");
    registry.copy_manager().finish(&op, Completion { status: OpStatus::Succeeded, outcome: ScsiOutcome::default() });
    let o = within(STEP, "EXTENDED COPY", s.extended_copy(0, &list)).await.unwrap();
    assert!(o.is_good(), "{:?}", o.sense_info());
    same(&file_bytes(&d.file("lun1.img"), 0, 8192), &pattern(7, 8192), "copied once the slot is free");
    d.shutdown().await;
}

/// A data segment longer than our MaxRecvDataSegmentLength (256 KiB) is
/// answered with Reject 04h (Protocol Error, RFC 7143 §11.17.1) carrying
/// the header, and the connection closes before the data is buffered;
/// exactly 256 KiB is fine; other sessions are unaffected. (More cases:
/// `malformed.rs::oversized_data_segment`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_segment_over_max_recv_is_rejected() {
    let d = TDaemon::start(|d, c| c.target(target(d))).await;
    let bystander = d.session(T, HOST).await;
    let mut raw = Raw::login(d.addr, &raw_opts()).await;
    assert_eq!(raw.params.target_max_recv_data_segment_length, 256 * 1024);
    let (h, itt) = raw.nop_out();
    raw.send(&h, &[], &vec![1u8; 256 * 1024]).await;
    let p = raw.expect_pdu().await;
    assert!(matches!(&p.header, Header::NopIn(n) if n.itt == itt), "256 KiB is within the limit: {:?}", p.header);
    let (h, _) = raw.nop_out();
    let mut bhs = raw.encode(&h, &[], &[])[..48].to_vec();
    bhs[5..8].copy_from_slice(&(256u32 * 1024 + 4).to_be_bytes()[1..]);
    raw.send_bytes(&bhs).await;
    let got = raw.expect_closed(STEP).await;
    let Some(Header::Reject(r)) = got.first().map(|p| &p.header) else { panic!("expected a Reject, got {got:?}") };
    assert_eq!(r.reason, RejectReason::PROTOCOL_ERROR);
    assert_eq!(&got[0].data[..48], &bhs[..], "the Reject carries the offending header");
    within(STEP, "bystander", bystander.test_unit_ready(0)).await.expect("bystander unaffected");
    d.shutdown().await;
}

/// Start a WRITE (16) of `blocks` blocks with no immediate data; returns
/// its ITT and what came first: an R2T (data solicited) or a response.
async fn start_write(raw: &mut Raw, lba: u64, blocks: u32) -> (u32, Header) {
    let (h, itt) = raw.scsi_cmd(&cdb::write16(lba, blocks, false), false, true, blocks * 512, true);
    raw.send(&h, &[], &[]).await;
    loop {
        let p = raw.expect_pdu().await;
        match &p.header {
            Header::R2t(r) if r.itt == itt => return (itt, p.header),
            Header::ScsiResponse(r) if r.itt == itt => return (itt, p.header),
            _ => {}
        }
    }
}

/// A write of `blocks` blocks answering every R2T; returns the status.
async fn full_write(raw: &mut Raw, lba: u64, blocks: u32, seed: u64) -> u8 {
    let data = pattern(seed, blocks as usize * 512);
    let (itt, first) = start_write(raw, lba, blocks).await;
    finish_write(raw, itt, first, &data).await
}

/// Answer the R2Ts of the write `itt` with `data` (64 KiB Data-Out PDUs)
/// until its response; `first` is what [`start_write`] returned. Returns
/// the status.
async fn finish_write(raw: &mut Raw, itt: u32, first: Header, data: &[u8]) -> u8 {
    let mut next = Some(first);
    loop {
        let h = match next.take() {
            Some(h) => h,
            None => raw.expect_pdu().await.header,
        };
        match h {
            Header::R2t(r) if r.itt == itt => {
                let mut off = r.buffer_offset;
                let end = r.buffer_offset + r.desired_length;
                let mut sn = 0;
                while off < end {
                    let n = (end - off).min(64 * 1024);
                    let last = off + n == end;
                    let dout = raw.data_out(itt, r.ttt, sn, off, last);
                    raw.send(&dout, &[], &data[off as usize..(off + n) as usize]).await;
                    off += n;
                    sn += 1;
                }
            }
            Header::ScsiResponse(r) if r.itt == itt => return r.status,
            _ => {}
        }
    }
}

/// Buffered write data is bounded daemon-wide: while one 16 MiB write
/// collects its data, any other write (same session or another) that does
/// not fit gets TASK SET FULL without any data being solicited; reads go
/// on; the budget comes back when the write's connection goes away and
/// after writes complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_buffer_limit_answers_task_set_full() {
    let d = TDaemon::start(|d, c| c.server("write_buffer_limit", "16MiB").target(target(d))).await;
    let mut hog = Raw::login(d.addr, &raw_opts()).await;
    let (_, first) = start_write(&mut hog, 0, 32768).await;
    assert!(matches!(first, Header::R2t(_)), "the 16 MiB write is admitted: {first:?}");
    let (_, h) = start_write(&mut hog, 40000, 8).await;
    let Header::ScsiResponse(r) = h else { panic!("expected TASK SET FULL, got {h:?}") };
    assert_eq!(r.status, STATUS_TASK_SET_FULL, "same session, over budget");
    let mut other = Raw::login(d.addr, &raw_opts()).await;
    let (_, h) = start_write(&mut other, 50000, 8).await;
    let Header::ScsiResponse(r) = h else { panic!("expected TASK SET FULL, got {h:?}") };
    assert_eq!(r.status, STATUS_TASK_SET_FULL, "another session, over the daemon-wide budget");
    other.tur_good().await;
    let s = d.session(T, HOST).await;
    within(STEP, "read", s.read16(0, 0, 8, 512)).await.expect("reads are not budgeted");
    // The hog goes away: its reservation is returned.
    drop(hog);
    let mut status = STATUS_TASK_SET_FULL;
    for k in 0..100 {
        status = full_write(&mut other, 50000, 8, k).await;
        if status != STATUS_TASK_SET_FULL {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 0, "a write fits again once the hog's connection is gone");
    // Full-size writes one after another: each gives its budget back.
    for k in 0..3u64 {
        let data = Bytes::from(pattern(100 + k, 16 << 20));
        within(STEP, "16 MiB write", s.write16(0, 0, data.clone(), 512, false)).await.expect("16 MiB write fits");
    }
    d.shutdown().await;
}

/// `write_buffer_per_session`: the writes one session has waiting for
/// their data are bounded by its share of `write_buffer_limit`, so it
/// cannot take the whole daemon-wide budget. Session A (64 MiB daemon-wide,
/// 32 MiB per session) opens 4 MiB writes without sending their data: 8
/// are admitted (R2T), then even a 4 KiB write is TASK SET FULL. Session B
/// (another ISID) can still write 16 MiB, read back intact. Once A sends
/// its data the writes complete and its whole share is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_buffer_per_session_leaves_room_for_others() {
    const W: u32 = 8192; // blocks: 4 MiB per write
    let d = TDaemon::start(|d, c| {
        c.server("write_buffer_limit", "64MiB").server("write_buffer_per_session", "32MiB").target(target(d))
    })
    .await;
    // Distinct ISIDs: two sessions of one initiator (a random ISID could
    // collide and reinstate A's session instead).
    let mut a = Raw::login(d.addr, &RawOpts { isid: Some([0x80, 0, 0, 0, 0xa, 0xa]), ..raw_opts() }).await;
    let mut b = Raw::login(d.addr, &RawOpts { isid: Some([0x80, 0, 0, 0, 0xb, 0xb]), ..raw_opts() }).await;

    // A fills its share: 8 × 4 MiB = 32 MiB waiting for data.
    let mut open = Vec::new();
    for k in 0..8u64 {
        let (itt, first) = start_write(&mut a, k * u64::from(W), W).await;
        assert!(matches!(first, Header::R2t(_)), "write {k} of A fits its share: {first:?}");
        open.push((k, itt, first));
    }
    let (_, h) = start_write(&mut a, 120_000, 8).await;
    let Header::ScsiResponse(r) = h else { panic!("expected TASK SET FULL, got {h:?}") };
    assert_eq!(r.status, STATUS_TASK_SET_FULL, "A is over its 32 MiB share (the daemon has 32 MiB left)");
    a.tur_good().await;

    // B is not held back by A: a 16 MiB write goes through and reads back.
    assert_eq!(full_write(&mut b, 65536, 32768, 77).await, 0, "B's 16 MiB write while A holds its share");
    b.tur_good().await;
    let s = d.session(T, HOST).await;
    let got = within(STEP, "read back B's write", s.read16(0, 65536, 32768, 512)).await.expect("read");
    same(&got, &pattern(77, 16 << 20), "B's data");

    // A sends its data: every write completes and gives its share back.
    for (k, itt, first) in open {
        let status = finish_write(&mut a, itt, first, &pattern(k + 1, W as usize * 512)).await;
        assert_eq!(status, 0, "A's write {k} completes once its data is sent");
    }
    for k in 0..8u64 {
        let got = file_bytes(&d.file("lun0.img"), k * u64::from(W) * 512, W as usize * 512);
        same(&got, &pattern(k + 1, W as usize * 512), &format!("A's write {k}"));
    }
    // The whole share is A's again, and still enforced.
    for k in 0..8u64 {
        let (_, first) = start_write(&mut a, k * u64::from(W), W).await;
        assert!(matches!(first, Header::R2t(_)), "write {k} of A fits its share again: {first:?}");
    }
    let (_, h) = start_write(&mut a, 120_000, 8).await;
    let Header::ScsiResponse(r) = h else { panic!("expected TASK SET FULL, got {h:?}") };
    assert_eq!(r.status, STATUS_TASK_SET_FULL, "A over its share again");
    // Its connection goes away with those writes open (their reservations
    // go with it, as `write_buffer_limit_answers_task_set_full` checks).
    drop(a);
    within(STEP, "TUR", s.test_unit_ready(0)).await.expect("TUR");
    d.shutdown().await;
}

/// The READ(16) of `blocks` blocks at `lba`, encoded; returns its bytes and ITT.
fn read_cmd(raw: &mut Raw, lba: u64, blocks: u32) -> (Vec<u8>, u32) {
    let (h, itt) = raw.scsi_cmd(&cdb::read16(lba, blocks, false), true, false, blocks * 512, true);
    (raw.encode(&h, &[], &[]), itt)
}

/// Read `raw`'s socket until every command in `itts` has its status;
/// returns (status, Data-In received) of each, in the order of `itts`.
async fn collect_reads(raw: &mut Raw, itts: &[u32]) -> Vec<(u8, Vec<u8>)> {
    let mut got: Vec<(Option<u8>, Vec<u8>)> = itts.iter().map(|_| (None, Vec::new())).collect();
    within(STEP, "the reads' answers", async {
        while got.iter().any(|(s, _)| s.is_none()) {
            let p = raw.expect_pdu().await;
            let (itt, status) = match &p.header {
                Header::DataIn(di) => (di.itt, di.has_status.then_some(di.status)),
                Header::ScsiResponse(r) => (r.itt, Some(r.status)),
                other => panic!("unexpected {other:?}"),
            };
            let k = itts.iter().position(|&i| i == itt).unwrap_or_else(|| panic!("unknown ITT {itt:#x}"));
            if let Header::DataIn(di) = &p.header {
                assert_eq!(di.buffer_offset as usize, got[k].1.len(), "Data-In in order");
                got[k].1.extend_from_slice(&p.data);
            }
            if let Some(s) = status {
                assert!(got[k].0.replace(s).is_none(), "two statuses for ITT {itt:#x}");
            }
        }
    })
    .await;
    got.into_iter().map(|(s, d)| (s.expect("status"), d)).collect()
}

/// `read_buffer_per_session`: a READ holds its Expected Data Transfer
/// Length of the read budget from its command until its Data-In has been
/// written out. A session that sends 16 MiB READs (the largest, Block
/// Limits VPD) and does not read its socket holds them: with a 32 MiB
/// share, two are admitted and every further READ of it is TASK SET FULL,
/// while another session's 16 MiB READ is served (64 MiB daemon-wide).
/// Once it reads its socket, the held reads complete and the share is free.
///
/// Why this does not depend on socket buffer sizes: a read's reservation
/// is returned only when all of its 16 MiB has been written into the
/// socket. The hog's receive buffer is set small (64 KiB, doubled by the
/// kernel) before connecting, which also turns receive autotuning off, and
/// the daemon's send buffer is at most `net.ipv4.tcp_wmem[2]` (4 MiB by
/// default), so no more than about 4 MiB of the first read can leave the
/// daemon while the hog does not read: both reservations stay (observed:
/// reads 1 and 2 GOOD, reads 3–9 TASK SET FULL, every run). The burst of 8
/// goes out in one segment, so reads 3–8 are refused as they are decoded,
/// before the first read's data exists at all; the 9th, sent 500 ms later,
/// shows the reservations are still held once the socket has taken what it
/// will.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_buffer_per_session_answers_task_set_full() {
    const R: u32 = 32768; // blocks: 16 MiB, MAXIMUM TRANSFER LENGTH
    let d = TDaemon::start(|d, c| {
        c.server("read_buffer_limit", "64MiB")
            .server("read_buffer_per_session", "32MiB")
            // The daemon gives up on a peer that takes no bytes for this
            // long; the hog reads again well before.
            .server("pdu_timeout", 30)
            .target(target(d))
    })
    .await;
    let s = d.session(T, HOST).await;
    let want = Bytes::from(pattern(9, 16 << 20));
    within(STEP, "write", s.write16(0, 0, want.clone(), 512, false)).await.expect("16 MiB write");

    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(64 * 1024).expect("SO_RCVBUF");
    let stream = within(STEP, "connect", sock.connect(d.addr)).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut hog = Raw::try_login_on(stream, &raw_opts()).await.expect("login");
    let mut burst = Vec::new();
    let mut itts = Vec::new();
    for _ in 0..8 {
        let (bytes, itt) = read_cmd(&mut hog, 0, R);
        burst.extend(bytes);
        itts.push(itt);
    }
    hog.send_bytes(&burst).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (bytes, itt) = read_cmd(&mut hog, 0, R);
    hog.send_bytes(&bytes).await;
    itts.push(itt);

    // Another session is served meanwhile (the daemon has 32 MiB left).
    let got = within(STEP, "another session's read", s.read16(0, 0, R, 512)).await.expect("read");
    same(&got, &want, "another session's 16 MiB read");

    // The hog reads at last: its first two reads, then TASK SET FULL.
    let answers = collect_reads(&mut hog, &itts).await;
    let statuses: Vec<u8> = answers.iter().map(|(s, _)| *s).collect();
    let mut expected = vec![0u8; 2];
    expected.resize(9, STATUS_TASK_SET_FULL);
    assert_eq!(statuses, expected, "two 16 MiB reads fill the 32 MiB share; the rest are refused");
    for (k, (_, data)) in answers.iter().enumerate() {
        if k < 2 {
            same(data, &want, &format!("read {k} of the hog"));
        } else {
            assert!(data.is_empty(), "no data for refused read {k}");
        }
    }

    // Its data sent, the share is free: two at once fit again.
    let mut burst = Vec::new();
    let mut itts = Vec::new();
    for _ in 0..2 {
        let (bytes, itt) = read_cmd(&mut hog, 0, R);
        burst.extend(bytes);
        itts.push(itt);
    }
    hog.send_bytes(&burst).await;
    for (k, (status, data)) in collect_reads(&mut hog, &itts).await.into_iter().enumerate() {
        assert_eq!(status, 0, "read {k} after the share was given back");
        same(&data, &want, "read data");
    }
    hog.tur_good().await;
    d.shutdown().await;
}

/// `write_data_timeout`: all of a write's data must arrive within it, even
/// if every Data-Out PDU comes well within `pdu_timeout`. A write whose
/// data trickles (512 bytes every 750 ms, `pdu_timeout` 2 s) is ended after
/// `write_data_timeout` (3 s) with CHECK CONDITION, ABORTED COMMAND,
/// INITIATOR RESPONSE TIMEOUT (0Bh/4Bh/06h); nothing of it is written; the
/// Data-Out still coming for it is ignored, and the session carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_write_data_times_out() {
    let d = TDaemon::start(|d, c| c.server("pdu_timeout", 2).server("write_data_timeout", 3).target(target(d))).await;
    let mut raw = Raw::login(d.addr, &raw_opts()).await;
    raw.tur_good().await;
    let t0 = std::time::Instant::now();
    let (itt, first) = start_write(&mut raw, 0, 64).await;
    let Header::R2t(r2t) = first else { panic!("expected an R2T, got {first:?}") };
    assert_eq!((r2t.buffer_offset, r2t.desired_length), (0, 32 * 1024), "one R2T for the 32 KiB");
    let (mut off, mut sn) = (0u32, 0u32);
    let (resp, sense) = loop {
        // 64 × 750 ms would be needed for all of it; never the last piece.
        assert!(
            off + 512 < r2t.desired_length && t0.elapsed() < Duration::from_millis(5500),
            "the write was not ended in time ({:?})",
            t0.elapsed()
        );
        let h = raw.data_out(itt, r2t.ttt, sn, off, false);
        raw.send(&h, &[], &[0xA5; 512]).await;
        off += 512;
        sn += 1;
        match raw.recv_within(Duration::from_millis(750)).await {
            Recv::Timeout => {}
            Recv::Pdu(p) => match &p.header {
                Header::ScsiResponse(r) if r.itt == itt => {
                    assert!(p.data.len() >= 2, "CHECK CONDITION without sense");
                    let n = u16::from_be_bytes([p.data[0], p.data[1]]) as usize;
                    break (r.clone(), p.data[2..2 + n].to_vec());
                }
                other => panic!("unexpected {other:?}"),
            },
            other => panic!("while trickling: {other:?}"),
        }
    };
    let took = t0.elapsed();
    assert_eq!(resp.status, 0x02, "CHECK CONDITION");
    assert_eq!(sense_triplet(&sense), (0x0B, 0x4B, 0x06), "ABORTED COMMAND / INITIATOR RESPONSE TIMEOUT");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_millis(5500),
        "ended after {took:?}, write_data_timeout is 3 s"
    );
    assert!(sn >= 4, "the data was trickling ({sn} Data-Out PDUs)");
    // The next piece of the trickle arrives for a task that is over:
    // ignored, no answer, the connection stays.
    let h = raw.data_out(itt, r2t.ttt, sn, off, false);
    raw.send(&h, &[], &[0xA5; 512]).await;
    raw.expect_silence(Duration::from_millis(500)).await;
    raw.tur_good().await;
    assert_eq!(full_write(&mut raw, 1000, 8, 5).await, 0, "a write on the same session");
    same(&file_bytes(&d.file("lun0.img"), 1000 * 512, 4096), &pattern(5, 4096), "that write's data");
    assert!(file_bytes(&d.file("lun0.img"), 0, 32 * 1024).iter().all(|&b| b == 0), "nothing of the timed-out write");
    d.shutdown().await;
}

/// A connection that stops in the middle of a PDU (header or data segment),
/// or never sends the data of a write it started, is closed after
/// `pdu_timeout`; one that stops during login after
/// `login_timeout`. A session opened before keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_closed() {
    let d = TDaemon::start(|d, c| c.server("pdu_timeout", 1).server("login_timeout", 2).target(target(d))).await;
    let bystander = d.session(T, HOST).await;
    within(STEP, "write", bystander.write16(0, 0, Bytes::from(pattern(3, 4096)), 512, false)).await.unwrap();

    // Half a header.
    let mut raw = Raw::login(d.addr, &raw_opts()).await;
    let (h, _) = raw.nop_out();
    let bytes = raw.encode(&h, &[], &[]);
    raw.send_bytes(&bytes[..20]).await;
    raw.expect_closed(STEP).await;

    // A whole header announcing 1000 bytes of data, then 10 of them.
    let mut raw = Raw::login(d.addr, &raw_opts()).await;
    let (h, _) = raw.nop_out();
    let bytes = raw.encode(&h, &[], &[7u8; 1000]);
    raw.send_bytes(&bytes[..48 + 10]).await;
    raw.expect_closed(STEP).await;

    // A write whose data was solicited (R2T) and never sent.
    let mut raw = Raw::login(d.addr, &raw_opts()).await;
    let (_, first) = start_write(&mut raw, 1000, 64).await;
    assert!(matches!(first, Header::R2t(_)), "{first:?}");
    raw.expect_closed(STEP).await;

    // Mid-login: a few bytes of a Login Request, then nothing.
    let mut tcp = Raw::tcp(d.addr).await;
    tcp.write_all(&[0x43, 0x87, 0, 0, 0, 0, 0x10]).await.unwrap();
    let mut buf = [0u8; 64];
    let r = within(STEP, "login stall to be cut off", tokio::io::AsyncReadExt::read(&mut tcp, &mut buf)).await;
    assert!(matches!(r, Ok(0) | Err(_)), "closed without a response: {r:?}");

    within(STEP, "bystander TUR", bystander.test_unit_ready(0)).await.expect("bystander unaffected");
    same(&within(STEP, "read", bystander.read16(0, 0, 8, 512)).await.unwrap(), &pattern(3, 4096), "bystander data");
    // An idle connection between PDUs is not "stalled".
    let mut idle = Raw::login(d.addr, &raw_opts()).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    idle.tur_good().await;
    d.shutdown().await;
}

/// A peer that sends READs but never reads the answers cannot make the
/// daemon queue their data without bound: once the socket stops taking
/// bytes for `pdu_timeout`, the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_that_does_not_read_is_dropped() {
    let d = TDaemon::start(|d, c| c.server("pdu_timeout", 1).target(target(d))).await;
    let bystander = d.session(T, HOST).await;
    let mut raw = Raw::login(d.addr, &RawOpts { max_recv_data_segment: 256 * 1024, ..raw_opts() }).await;
    for k in 0..16u64 {
        let (h, _) = raw.scsi_cmd(&cdb::read16(k * 32768 % 131072, 32768, false), true, false, 16 << 20, true);
        raw.send(&h, &[], &[]).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Drain what the socket holds; the target must have closed by now or
    // close soon after (never keep the connection open with data queued).
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        match raw.recv_within(Duration::from_secs(5)).await {
            Recv::Closed => break,
            Recv::Pdu(_) | Recv::Frame(_) => {}
            Recv::Timeout => panic!("connection still open with nothing arriving"),
        }
        assert!(tokio::time::Instant::now() < deadline, "still receiving after {STEP:?}");
    }
    within(STEP, "bystander TUR", bystander.test_unit_ready(0)).await.expect("bystander unaffected");
    d.shutdown().await;
}
