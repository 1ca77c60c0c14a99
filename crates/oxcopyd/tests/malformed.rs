//! Malformed and hostile input never panics or hangs the daemon.
//!
//! Each test opens a bystander session with the oxcopy initiator first
//! (and writes a known pattern through it), then logs in by hand with the
//! raw client and misbehaves; afterwards the bystander must still work
//! (TEST UNIT READY + read back), no code outside the tests may have
//! panicked, and the daemon must still shut down promptly.

mod common;

use bytes::Bytes;
use common::*;
use oxcopy_initiator::scsi::cdb;
use oxcopy_initiator::Session;
use oxcopy_iscsi::pdu::{
    Header, NopOut, Opcode, RejectReason, ScsiCommand, TaskAttr, TaskMgmtRequest, TmfFunction, TmfResponse, BHS_LEN,
    RESERVED_TAG,
};
use std::time::{Duration, Instant};

const ABORTED_COMMAND: u8 = 0x0b;

/// Daemon + bystander session with 64 KiB of known data at LBA 0 of LUN 0.
async fn setup(opts: Opts) -> (Daemon, Session, Bytes) {
    let d = Daemon::start_with(opts).await;
    let s = d.session().await;
    let data = pattern(0xb1, 64 * 1024);
    within(STEP, "bystander write", s.write16(LUN_512, 0, data.clone(), 512, false)).await.expect("bystander write");
    (d, s, data)
}

/// The end of every test: the bystander works, a new session works, no
/// panics, and shutdown is prompt (no connection task is stuck).
async fn finish(d: Daemon, s: Session, data: Bytes) {
    bystander_ok(&s, 0, &data).await;
    let fresh = d.session().await;
    within(STEP, "fresh TUR", fresh.test_unit_ready(LUN_4K)).await.expect("a new session works");
    within(STEP, "logout", fresh.logout()).await.expect("logout");
    within(STEP, "logout", s.logout()).await.expect("bystander logout");
    let took = d.shutdown().await;
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert_no_panics();
}

fn expect_reject(p: &oxcopy_iscsi::Pdu, reasons: &[u8], sent_bhs: &[u8]) -> u8 {
    let Header::Reject(r) = &p.header else { panic!("expected a Reject, got {:?}", p.header) };
    assert!(reasons.contains(&r.reason.0), "Reject reason {:#04x}, wanted one of {reasons:02x?}", r.reason.0);
    assert_eq!(&rejected_bhs(p)[..], &sent_bhs[..BHS_LEN], "the Reject must carry the rejected header");
    r.reason.0
}

fn write_opts() -> RawOpts {
    RawOpts {
        immediate_data: false,
        initial_r2t: true,
        max_burst: 64 * 1024,
        first_burst: 64 * 1024,
        ..RawOpts::default()
    }
}

/// Start a WRITE (16) of `blocks` blocks at `lba` with no immediate data and
/// wait for its first R2T; returns (itt, ttt).
async fn start_write(raw: &mut Raw, lba: u64, blocks: u32) -> (u32, u32) {
    let (h, itt) = raw.scsi_cmd(&cdb::write16(lba, blocks, false), false, true, blocks * 512, true);
    raw.send(&h, &[], &[]).await;
    loop {
        let p = raw.expect_pdu().await;
        if let Header::R2t(r) = &p.header {
            assert_eq!(r.itt, itt);
            assert_eq!(r.buffer_offset, 0);
            return (itt, r.ttt);
        }
    }
}

/// The command `itt` must end in CHECK CONDITION with this sense key/ASC.
async fn expect_check(raw: &mut Raw, itt: u32, key: u8, asc: u8) -> u8 {
    let (r, sense) = raw.response_for(itt).await.unwrap_or_else(|p| panic!("rejected instead: {:?}", p.header));
    assert_eq!(r.status, 2, "status of the violating command");
    let (k, a, q) = sense_triplet(sense.as_deref().expect("sense data"));
    assert_eq!((k, a), (key, asc), "sense {k:#x}/{a:#04x}/{q:#04x}");
    q
}

/// Blocks at `lba` of LUN 0 read through the bystander are still zero.
async fn still_zero(s: &Session, lba: u64, blocks: u32) {
    let got = within(STEP, "read", s.read16(LUN_512, lba, blocks, 512)).await.expect("read");
    assert!(got.iter().all(|&b| b == 0), "LBA {lba}: data of a failed write reached the disk");
}

// ---------------------------------------------------------------------------

/// Truncated PDUs followed by close or half-close: the daemon drops those
/// connections (noticing EOF mid-PDU) and keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_pdu_then_close() {
    let (d, s, data) = setup(Opts::default()).await;
    type Make = Box<dyn Fn(&mut Raw) -> Vec<u8>>;
    let cases: Vec<(&str, Make)> = vec![
        (
            "half a BHS",
            Box::new(|r: &mut Raw| {
                let h = r.nop_out().0;
                r.encode(&h, &[], &[])[..20].to_vec()
            }),
        ),
        (
            "header announcing 1000 data bytes, 10 sent",
            Box::new(|r: &mut Raw| {
                let (h, _) = r.scsi_cmd(&cdb::write16(0, 2, false), false, true, 1024, true);
                r.encode(&h, &[], &[7u8; 1000])[..BHS_LEN + 10].to_vec()
            }),
        ),
        (
            "header announcing an AHS that never comes",
            Box::new(|r: &mut Raw| {
                let (h, _) = r.scsi_cmd(&[0u8; 6], false, false, 0, true);
                r.encode(&h, &[0u8; 32], &[])[..BHS_LEN].to_vec()
            }),
        ),
    ];
    for (what, make) in &cases {
        for half_close in [false, true] {
            let mut raw = Raw::login(d.addr, &RawOpts::default()).await;
            let bytes = make(&mut raw);
            raw.send_bytes(&bytes).await;
            if half_close {
                // Our side is done: the daemon must see EOF mid-PDU and close.
                use tokio::io::AsyncWriteExt;
                raw.stream.shutdown().await.expect("shutdown write side");
                let got = raw.expect_closed(STEP).await;
                assert!(got.is_empty(), "{what}: answered a truncated PDU: {got:?}");
            }
            drop(raw);
            bystander_ok(&s, 0, &data).await;
        }
    }
    finish(d, s, data).await;
}

/// A data segment longer than the target's MaxRecvDataSegmentLength
/// (256 KiB): Reject 04h (protocol error) carrying the header, then close.
/// Exactly 256 KiB is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_data_segment() {
    let (d, s, data) = setup(Opts::default()).await;
    let mut raw = Raw::login(d.addr, &RawOpts::default()).await;
    assert_eq!(raw.params.target_max_recv_data_segment_length, 256 * 1024);

    let ping = pattern(5, 256 * 1024);
    let (h, itt) = raw.nop_out();
    raw.send(&h, &[], &ping).await;
    let p = raw.expect_pdu().await;
    assert!(matches!(&p.header, Header::NopIn(n) if n.itt == itt), "{:?}", p.header);
    assert_same(&p.data, &ping, "256 KiB ping echoed");

    for (what, len) in [("NOP-Out", 256 * 1024 + 1), ("SCSI write", 0xff_ffff)] {
        let mut raw = Raw::login(d.addr, &RawOpts::default()).await;
        let h = if what == "NOP-Out" {
            raw.nop_out().0
        } else {
            raw.scsi_cmd(&cdb::write16(0, 32768, false), false, true, 16 << 20, true).0
        };
        let mut bhs = raw.encode(&h, &[], &[])[..BHS_LEN].to_vec();
        let l = (len as u32).to_be_bytes();
        bhs[5..8].copy_from_slice(&l[1..]);
        raw.send_bytes(&bhs).await;
        raw.send_bytes(&vec![0u8; 64 * 1024]).await;
        let got = raw.expect_closed(STEP).await;
        assert!(!got.is_empty(), "{what}: closed without a Reject");
        expect_reject(&got[0], &[RejectReason::PROTOCOL_ERROR.0], &bhs);
        assert_eq!(got.len(), 1, "{what}: nothing but the Reject: {got:?}");
    }
    raw.ping_ok().await;
    finish(d, s, data).await;
}

/// Opcodes an initiator may not send in the full feature phase: reserved
/// 0x1c/0x1f → Reject 05h (COMMAND NOT SUPPORTED); SNACK (ERL 0) and
/// target-only opcodes → Reject; a Login Request → Reject 04h. The
/// connection carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_opcodes_are_rejected() {
    let (d, s, data) = setup(Opts::default()).await;
    let mut raw = Raw::login(d.addr, &RawOpts::default()).await;
    let cases: [(u8, &[u8]); 7] = [
        (0x1f, &[0x05]),
        (0x1c, &[0x05]),
        (Opcode::SNACK_REQUEST.0, &[0x03, 0x04, 0x05]),
        (Opcode::SCSI_RESPONSE.0, &[0x04, 0x05]),
        (Opcode::R2T.0, &[0x04, 0x05]),
        (Opcode::REJECT.0, &[0x04, 0x05]),
        (Opcode::LOGIN_REQUEST.0, &[0x04]),
    ];
    for (op, reasons) in cases {
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = 0x40 | op;
        bhs[1] = 0x80;
        let itt = raw.itt();
        bhs[16..20].copy_from_slice(&itt.to_be_bytes());
        bhs[24..28].copy_from_slice(&raw.cmd_sn.to_be_bytes());
        bhs[28..32].copy_from_slice(&raw.exp_stat_sn.to_be_bytes());
        raw.send_bytes(&bhs).await;
        let p = raw.expect_pdu().await;
        let reason = expect_reject(&p, reasons, &bhs);
        eprintln!("opcode {op:#04x} → Reject {reason:#04x}");
        raw.ping_ok().await;
    }
    raw.tur_good().await;
    finish(d, s, data).await;
}

/// A header digest error: the length fields cannot be trusted, so the
/// connection is closed; the corrupt PDU is not acted upon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_header_digest_closes_connection() {
    let (d, s, data) = setup(Opts::default()).await;
    for corrupt_at in [BHS_LEN + 1, 17] {
        let mut raw = Raw::login(d.addr, &RawOpts { header_digest: true, ..RawOpts::default() }).await;
        assert!(raw.params.header_digest);
        raw.ping_ok().await; // digests work when right
        let (h, _) = raw.nop_out();
        let mut v = raw.encode(&h, &[], &[]);
        v[corrupt_at] ^= 0x10;
        raw.send_bytes(&v).await;
        let got = raw.expect_closed(STEP).await;
        assert!(got.iter().all(|p| !matches!(p.header, Header::NopIn(_))), "acted on a corrupt header: {got:?}");
    }
    finish(d, s, data).await;
}

/// A data digest error on a solicited Data-Out: Reject 02h (DATA DIGEST
/// ERROR) and the write ends in CHECK CONDITION (ABORTED COMMAND, 47h/05h
/// PROTOCOL SERVICE CRC ERROR) rather than hanging; nothing is written;
/// the connection carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_digest_on_data_out() {
    let (d, s, data) = setup(Opts::default()).await;
    let mut raw = Raw::login(d.addr, &RawOpts { data_digest: true, ..write_opts() }).await;
    assert!(raw.params.data_digest && !raw.params.immediate_data);
    let (itt, ttt) = start_write(&mut raw, 5100, 8).await;
    let h = raw.data_out(itt, ttt, 0, 0, true);
    let mut v = raw.encode(&h, &[], &pattern(1, 4096));
    let n = v.len();
    v[n - 1] ^= 0xff;
    raw.send_bytes(&v).await;
    let p = raw.expect_pdu().await;
    expect_reject(&p, &[RejectReason::DATA_DIGEST_ERROR.0], &v);
    let q = expect_check(&mut raw, itt, ABORTED_COMMAND, 0x47).await;
    assert_eq!(q, 0x05);
    raw.tur_good().await;
    still_zero(&s, 5100, 8).await;
    // A correct retry of the same write goes through.
    let (itt, ttt) = start_write(&mut raw, 5100, 8).await;
    let h = raw.data_out(itt, ttt, 0, 0, true);
    raw.send(&h, &[], &pattern(2, 4096)).await;
    let (r, _) = raw.response_for(itt).await.expect("not rejected");
    assert_eq!(r.status, 0);
    let got = within(STEP, "read", s.read16(LUN_512, 5100, 8, 512)).await.expect("read");
    assert_same(&got, &pattern(2, 4096), "retried write");
    finish(d, s, data).await;
}

/// A data digest error on immediate data: Reject 02h, and the command does
/// not hang — it ends in CHECK CONDITION (ABORTED COMMAND) — and the
/// commands after it (next CmdSN) still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_digest_on_immediate_data() {
    let (d, s, data) = setup(Opts::default()).await;
    let mut raw = Raw::login(
        d.addr,
        &RawOpts { data_digest: true, immediate_data: true, initial_r2t: true, ..RawOpts::default() },
    )
    .await;
    assert!(raw.params.data_digest && raw.params.immediate_data);
    let (h, itt) = raw.scsi_cmd(&cdb::write16(5200, 8, false), false, true, 4096, true);
    let mut v = raw.encode(&h, &[], &pattern(3, 4096));
    let n = v.len();
    v[n - 2] ^= 0x01;
    raw.send_bytes(&v).await;
    let p = raw.expect_pdu().await;
    expect_reject(&p, &[RejectReason::DATA_DIGEST_ERROR.0], &v);
    match raw.recv_within(Duration::from_secs(3)).await {
        Recv::Pdu(p) => match &p.header {
            Header::ScsiResponse(r) if r.itt == itt => {
                assert_eq!(r.status, 2, "status of the command whose immediate data was corrupt");
                let n = u16::from_be_bytes([p.data[0], p.data[1]]) as usize;
                let (k, a, q) = sense_triplet(&p.data[2..2 + n]);
                assert_eq!((k, a, q), (ABORTED_COMMAND, 0x47, 0x05), "PROTOCOL SERVICE CRC ERROR");
            }
            other => panic!("expected the SCSI Response of ITT {itt:#x}, got {other:?}"),
        },
        other => {
            // Show what the initiator is left with: the command never ends
            // and, its CmdSN never consumed, every later command is held.
            let (h, titt) = raw.scsi_cmd(&[0u8; 6], false, false, 0, true);
            raw.send(&h, &[], &[]).await;
            let later = raw.recv_within(Duration::from_secs(2)).await;
            panic!(
                "after the Reject the command got no status ({other:?}); \
                 a TEST UNIT READY with the next CmdSN (ITT {titt:#x}) got {later:?}"
            );
        }
    }
    raw.tur_good().await;
    still_zero(&s, 5200, 8).await;
    finish(d, s, data).await;
}

/// CmdSNs outside the window (too old, too far ahead) are dropped without
/// an answer and do not advance ExpCmdSN; an early CmdSN inside the window
/// is held until the gap is filled, then both run in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_window_cmd_sn() {
    let (d, s, data) = setup(Opts::default()).await;
    let mut raw = Raw::login(d.addr, &RawOpts::default()).await;
    raw.tur_good().await;
    let exp = raw.cmd_sn;
    let tur = |raw: &mut Raw, cmd_sn: u32| {
        let itt = raw.itt();
        let h = Header::ScsiCommand(ScsiCommand {
            immediate: false,
            final_: true,
            read: false,
            write: false,
            attr: TaskAttr::SIMPLE,
            lun: [0; 8],
            itt,
            expected_data_length: 0,
            cmd_sn,
            exp_stat_sn: raw.exp_stat_sn,
            cdb: [0; 16],
        });
        (h, itt)
    };
    for bad in [exp.wrapping_add(200), exp.wrapping_add(0x8000_0000), exp.wrapping_sub(1), exp.wrapping_sub(1000)] {
        let (h, _) = tur(&mut raw, bad);
        raw.send(&h, &[], &[]).await;
    }
    raw.expect_silence(Duration::from_millis(500)).await;

    // Early but in the window: held.
    let (h1, itt1) = tur(&mut raw, exp.wrapping_add(1));
    raw.send(&h1, &[], &[]).await;
    raw.expect_silence(Duration::from_millis(300)).await;
    let (h0, itt0) = tur(&mut raw, exp);
    raw.send(&h0, &[], &[]).await;
    let mut order = Vec::new();
    for _ in 0..2 {
        let p = raw.expect_pdu().await;
        let Header::ScsiResponse(r) = &p.header else { panic!("{:?}", p.header) };
        assert_eq!(r.status, 0);
        order.push((r.itt, r.exp_cmd_sn));
    }
    assert_eq!(order[0].0, itt0, "the in-order command runs first");
    assert_eq!(order[1], (itt1, exp.wrapping_add(2)), "the held command follows; nothing else was counted");
    raw.cmd_sn = exp.wrapping_add(2);
    raw.tur_good().await;
    finish(d, s, data).await;
}

/// Data-Out that breaks the R2T contract — wrong DataSN, wrong offset,
/// unknown TTT, unsolicited data under InitialR2T=Yes, more data than
/// expected, a repeated PDU — ends the command in CHECK CONDITION /
/// ABORTED COMMAND with ASC 4Bh, writes nothing, and the connection
/// carries on. Data-Out for an ITT nobody knows is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_out_violations() {
    let (d, s, data) = setup(Opts::default()).await;
    let mut raw = Raw::login(d.addr, &write_opts()).await;
    // (what, ttt override, DataSN, offset, length)
    type Case = (&'static str, Option<u32>, u32, u32, usize);
    let cases: [Case; 5] = [
        ("wrong DataSN", None, 1, 0, 8192),
        ("wrong offset", None, 0, 512, 4096),
        ("unknown TTT", Some(0x0bad_0bad), 0, 0, 8192),
        ("unsolicited under InitialR2T=Yes", Some(RESERVED_TAG), 0, 0, 8192),
        ("too much data", None, 0, 0, 8192 + 512),
    ];
    for (i, (what, ttt_override, data_sn, offset, len)) in cases.into_iter().enumerate() {
        let lba = 1000 + 100 * i as u64;
        let (itt, ttt) = start_write(&mut raw, lba, 16).await;
        let h = raw.data_out(itt, ttt_override.unwrap_or(ttt), data_sn, offset, true);
        raw.send(&h, &[], &pattern(i as u64, len)).await;
        let q = expect_check(&mut raw, itt, ABORTED_COMMAND, 0x4b).await;
        eprintln!("{what}: 4Bh/{q:02x}h");
        raw.tur_good().await;
        still_zero(&s, lba, 16).await;
    }
    // A good first PDU, then the same DataSN again.
    let (itt, ttt) = start_write(&mut raw, 2000, 16).await;
    let h = raw.data_out(itt, ttt, 0, 0, false);
    raw.send(&h, &[], &pattern(9, 4096)).await;
    raw.send(&h, &[], &pattern(9, 4096)).await;
    expect_check(&mut raw, itt, ABORTED_COMMAND, 0x4b).await;
    raw.tur_good().await;
    still_zero(&s, 2000, 16).await;

    // Data-Out for a task that does not exist: no answer at all.
    let h = raw.data_out(0x00ee_0001, 0x1234, 0, 0, true);
    raw.send(&h, &[], &[1u8; 512]).await;
    raw.expect_silence(Duration::from_millis(300)).await;

    // And a well-behaved write in two PDUs still works.
    let (itt, ttt) = start_write(&mut raw, 3000, 16).await;
    let payload = pattern(10, 8192);
    let h = raw.data_out(itt, ttt, 0, 0, false);
    raw.send(&h, &[], &payload[..4096]).await;
    let h = raw.data_out(itt, ttt, 1, 4096, true);
    raw.send(&h, &[], &payload[4096..]).await;
    let (r, _) = raw.response_for(itt).await.expect("not rejected");
    assert_eq!(r.status, 0);
    let got = within(STEP, "read", s.read16(LUN_512, 3000, 16, 512)).await.expect("read");
    assert_same(&got, &payload, "good write after violations");
    finish(d, s, data).await;
}

/// SCSI commands carrying garbage Additional Header Segments (32 bytes and
/// more): malformed AHS lists are rejected (09h INVALID PDU FIELD), odd but
/// well-formed ones end in a SCSI status; either way the command is
/// answered and the CmdSN it used is consumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_extended_cdb_ahs() {
    let (d, s, data) = setup(Opts::default()).await;
    let mut raw = Raw::login(d.addr, &RawOpts::default()).await;
    let junk = |seed: u64, n: usize| pattern(seed, n).to_vec();
    let mut cases: Vec<(&str, [u8; 16], Vec<u8>)> = Vec::new();
    let mut ahs = junk(1, 32);
    ahs[0..2].copy_from_slice(&0xffffu16.to_be_bytes());
    cases.push(("AHSLength past the end", [0; 16], ahs));
    let mut ahs = junk(2, 32);
    ahs[0..3].copy_from_slice(&[0, 0, 1]);
    cases.push(("AHSLength 0", [0; 16], ahs));
    let mut ahs = junk(3, 32);
    ahs[0..4].copy_from_slice(&[0, 29, 1, 0]);
    let mut c = [0u8; 16];
    c.copy_from_slice(&junk(4, 16));
    cases.push(("extended CDB of garbage", c, ahs.clone()));
    cases.push(("extended CDB on a TEST UNIT READY", [0; 16], ahs));
    let mut ahs = junk(5, 32);
    ahs[0..4].copy_from_slice(&[0, 5, 2, 0]);
    cases.push(("bidirectional read length AHS", [0; 16], ahs));
    let mut ahs = junk(6, 32);
    ahs[0..4].copy_from_slice(&[0, 0x1d, 0x7f, 0]);
    cases.push(("unknown AHS type", [0; 16], ahs));
    let mut ahs = junk(7, 1020);
    ahs[0..4].copy_from_slice(&[0x03, 0xf9, 1, 0]); // 1017: a 1016-byte CDB continuation
    cases.push(("1 KiB AHS, CDB far over 260 bytes", [0x7f; 16], ahs));
    cases.push(("1 KiB of pure junk", [0xa5; 16], junk(8, 1020)));
    let mut ahs = vec![0u8; 32];
    ahs[0..4].copy_from_slice(&[0, 0x11, 1, 0]);
    cases.push((
        "32-byte variable-length CDB (7Fh) with zeroes",
        [0x7f, 0, 0, 0, 0, 0, 0, 0x18, 0, 0, 0, 0, 0, 0, 0, 0],
        ahs,
    ));

    for (what, c, ahs) in cases {
        let (h, itt) = raw.scsi_cmd(&c, true, false, 512, true);
        raw.send(&h, &ahs, &[]).await;
        match raw.response_for(itt).await {
            Ok((r, sense)) => {
                eprintln!("{what}: status {:#04x} sense {:?}", r.status, sense.map(|s| sense_triplet(&s)))
            }
            Err(p) => {
                let Header::Reject(r) = &p.header else { unreachable!() };
                assert_eq!(bytes_itt(&rejected_bhs(&p)), itt, "{what}");
                eprintln!("{what}: Reject {:#04x}", r.reason.0);
            }
        }
        raw.tur_good().await;
    }
    finish(d, s, data).await;
}

fn bytes_itt(bhs: &[u8; BHS_LEN]) -> u32 {
    u32::from_be_bytes([bhs[16], bhs[17], bhs[18], bhs[19]])
}

/// Garbage instead of a login: random bytes, HTTP, a SCSI command before
/// login, an over-long login segment, a login whose text is garbage, a
/// login request cut short, silence. Every such connection is closed
/// (within the login timeout at worst) and nothing panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_garbage() {
    let (d, s, data) = setup(Opts { login_timeout: 2, ..Opts::default() }).await;
    let login_bhs = |data_len: u32| {
        let mut b = [0u8; BHS_LEN];
        b[0] = 0x43; // immediate Login Request
        b[1] = 0x81; // T, CSG 0, NSG 1
        b[5..8].copy_from_slice(&data_len.to_be_bytes()[1..]);
        b[8..14].copy_from_slice(&[0x80, 1, 2, 3, 4, 5]);
        b
    };
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", pattern(42, 1000).to_vec()),
        ("HTTP", b"GET / HTTP/1.1\r\nHost: oxcopy\r\n\r\n".iter().copied().chain([b' '; 64]).collect()),
        ("SCSI command before login", {
            let mut b = [0u8; BHS_LEN];
            b[0] = 0x01;
            b[1] = 0x80;
            b.to_vec()
        }),
        ("login segment over 8 KiB", {
            let mut v = login_bhs(65536).to_vec();
            v.extend_from_slice(&[b'A'; 4096]);
            v
        }),
        ("login text garbage", {
            let junk = pattern(43, 200);
            let mut v = login_bhs(200).to_vec();
            v.extend_from_slice(&junk);
            v
        }),
        ("login text without NULs or '='", {
            let mut v = login_bhs(400).to_vec();
            v.extend_from_slice(&[b'x'; 400]);
            v
        }),
    ];
    for seed in 0..6u64 {
        let mut b = pattern(1000 + seed, BHS_LEN).to_vec();
        b[0] = 0x43;
        b[4] = 0;
        b[5] = 0; // keep the declared data length under 64 KiB
        cases.push(("random Login Request header", b));
    }
    for (what, bytes) in &cases {
        let mut conn = Raw::tcp(d.addr).await;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = conn.write_all(bytes).await;
        let t = Instant::now();
        let mut sink = vec![0u8; 64 * 1024];
        loop {
            match within(Duration::from_secs(6), what, conn.read(&mut sink)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{what}: took {:?} to close", t.elapsed());
    }
    // Silence: dropped at the login timeout.
    let mut conn = Raw::tcp(d.addr).await;
    let t = Instant::now();
    let mut b = [0u8; 16];
    use tokio::io::AsyncReadExt;
    let n = within(Duration::from_secs(6), "silent login", conn.read(&mut b)).await.unwrap_or(0);
    assert_eq!(n, 0);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(4),
        "silent login dropped after {took:?}"
    );
    finish(d, s, data).await;
}

/// ABORT TASK of a write still collecting data: FUNCTION COMPLETE, the
/// write never gets a status, its late Data-Out is ignored, nothing is
/// written; ABORT TASK of a finished command: TASK DOES NOT EXIST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_task_while_collecting_data() {
    let (d, s, data) = setup(Opts::default()).await;
    let mut raw = Raw::login(d.addr, &write_opts()).await;
    let tmf = |raw: &mut Raw, referenced: u32, ref_cmd_sn: u32| {
        let itt = raw.itt();
        let h = Header::TaskMgmtRequest(TaskMgmtRequest {
            immediate: true,
            function: TmfFunction::ABORT_TASK,
            lun: [0; 8],
            itt,
            referenced_task_tag: referenced,
            cmd_sn: raw.cmd_sn,
            exp_stat_sn: raw.exp_stat_sn,
            ref_cmd_sn,
            exp_data_sn: 0,
        });
        (h, itt)
    };
    let cmd_sn = raw.cmd_sn;
    let (witt, ttt) = start_write(&mut raw, 5500, 16).await;
    let (h, titt) = tmf(&mut raw, witt, cmd_sn);
    raw.send(&h, &[], &[]).await;
    let p = raw.expect_pdu().await;
    match &p.header {
        Header::TaskMgmtResponse(r) => {
            assert_eq!(r.itt, titt);
            assert_eq!(r.response, TmfResponse::COMPLETE);
        }
        other => panic!("expected the TMF response, got {other:?}"),
    }
    let h = raw.data_out(witt, ttt, 0, 0, true);
    raw.send(&h, &[], &pattern(77, 8192)).await;
    raw.expect_silence(Duration::from_millis(300)).await;
    still_zero(&s, 5500, 16).await;
    raw.tur_good().await;

    let cmd_sn = raw.cmd_sn;
    let done = raw.tur_good().await;
    let (h, titt) = tmf(&mut raw, done, cmd_sn);
    raw.send(&h, &[], &[]).await;
    let p = raw.expect_pdu().await;
    assert!(
        matches!(&p.header, Header::TaskMgmtResponse(r) if r.itt == titt && r.response == TmfResponse::TASK_DOES_NOT_EXIST),
        "{:?}",
        p.header
    );
    raw.tur_good().await;
    finish(d, s, data).await;
}

/// The target never sends a segment longer than the initiator's
/// MaxRecvDataSegmentLength, even when echoing NOP-Out ping data that is
/// longer (allowed: the target accepts up to 256 KiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nop_echo_respects_initiator_max_recv_data_segment() {
    let (d, s, data) = setup(Opts::default()).await;
    let mut raw = Raw::login(d.addr, &RawOpts { max_recv_data_segment: 8192, ..RawOpts::default() }).await;
    assert_eq!(raw.params.initiator_max_recv_data_segment_length, 8192);
    let (h, itt) = raw.nop_out();
    raw.send(&h, &[], &pattern(8, 16 * 1024)).await;
    match raw.recv_within(STEP).await {
        Recv::Pdu(p) => match &p.header {
            Header::NopIn(n) => {
                assert_eq!(n.itt, itt);
                assert!(p.data.len() <= 8192);
                eprintln!("NOP-In echoed {} bytes", p.data.len());
            }
            Header::Reject(r) => eprintln!("Reject {:#04x}", r.reason.0),
            other => panic!("{other:?}"),
        },
        other => panic!("answer to a 16 KiB ping with MaxRecvDataSegmentLength=8192: {other:?}"),
    }
    raw.ping_ok().await;
    finish(d, s, data).await;
}

/// Seeded random PDUs after login (framed correctly, fields random, CmdSN
/// mostly in sequence so they reach the command handlers), 24 connections
/// × 300 PDUs, answers drained concurrently. The daemon may answer or
/// close; it may not panic or stop serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_pdus_after_login() {
    let (d, s, data) = setup(Opts::default()).await;
    let ops = [0x00u8, 0x01, 0x02, 0x04, 0x05, 0x06, 0x10, 0x1f, 0x03, 0x01, 0x05, 0x01];
    for conn in 0..24u64 {
        let raw = Raw::login(d.addr, &RawOpts { initial_r2t: conn % 2 == 0, ..RawOpts::default() }).await;
        let mut cmd_sn = raw.cmd_sn;
        let (mut rd, mut wr) = raw.stream.into_split();
        let drain = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut b = vec![0u8; 256 * 1024];
            while let Ok(n) = rd.read(&mut b).await {
                if n == 0 {
                    break;
                }
            }
        });
        let rng = pattern(0xf00d + conn, 300 * 64);
        use tokio::io::AsyncWriteExt;
        for k in 0..300usize {
            let r = &rng[k * 64..k * 64 + 64];
            let mut bhs = [0u8; BHS_LEN];
            bhs.copy_from_slice(&r[..BHS_LEN]);
            let op = ops[r[48] as usize % ops.len()];
            bhs[0] = (bhs[0] & 0x40) | op;
            let ahs_words = if r[49] % 4 == 0 { r[50] as usize % 9 } else { 0 };
            let data_len = match r[51] % 4 {
                0 => 0,
                1 => r[52] as usize,
                2 => u16::from_be_bytes([r[52], r[53]]) as usize % 4096,
                _ => 512,
            };
            bhs[4] = ahs_words as u8;
            bhs[5..8].copy_from_slice(&(data_len as u32).to_be_bytes()[1..]);
            if r[54] % 4 != 0 {
                bhs[24..28].copy_from_slice(&cmd_sn.to_be_bytes());
                if bhs[0] & 0x40 == 0 {
                    cmd_sn = cmd_sn.wrapping_add(1);
                }
            }
            if op == 0x01 && r[55] % 2 == 0 {
                // Keep write sizes modest (the window × buffer stays small).
                bhs[20..24].copy_from_slice(&(u32::from(r[56]) * 512).to_be_bytes());
            }
            if op == 0x06 && r[57] % 8 != 0 {
                continue; // fewer logouts: let more PDUs through
            }
            if op == 0x02 && matches!(bhs[1] & 0x7f, 6 | 7) {
                // A target reset would (rightly) raise a unit attention on
                // the bystander's LUNs; abort a task instead.
                bhs[1] = 0x81;
            }
            let mut v = bhs.to_vec();
            v.extend_from_slice(&pattern(k as u64, ahs_words * 4 + data_len));
            v.resize(v.len() + (4 - data_len % 4) % 4, 0);
            if within(STEP, "daemon to take a PDU", wr.write_all(&v)).await.is_err() {
                break; // the daemon closed this connection
            }
        }
        drop(wr);
        within(STEP, "daemon to close a fuzzed connection", drain).await.expect("drain task");
    }
    finish(d, s, data).await;
}

/// A NOP-Out with ITT ffffffff (a ping answer nobody asked for) is
/// accepted silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsolicited_nop_out_answer_is_silent() {
    let (d, s, data) = setup(Opts::default()).await;
    let mut raw = Raw::login(d.addr, &RawOpts::default()).await;
    let h = Header::NopOut(NopOut {
        immediate: true,
        lun: [0; 8],
        itt: RESERVED_TAG,
        ttt: 0x4242,
        cmd_sn: raw.cmd_sn,
        exp_stat_sn: raw.exp_stat_sn,
    });
    raw.send(&h, &[], &[]).await;
    raw.expect_silence(Duration::from_millis(300)).await;
    raw.ping_ok().await;
    finish(d, s, data).await;
}
