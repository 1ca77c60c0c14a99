//! Access control end to end: per-LUN masking (`initiators` in
//! `[[target.lun]]`), target allow-lists and discovery. A LUN masked from an
//! initiator must be invisible to it by every route: REPORT LUNS, every
//! command addressed to it (LOGICAL UNIT NOT SUPPORTED), task management,
//! EXTENDED COPY CSCDs naming it (as source or destination, on its own
//! target or another one), and ROD tokens made from it (token_scope =
//! "initiator").

mod common;
mod trust_support;

use bytes::Bytes;
use oxcopy_initiator::odx::{BlockRange, PopulateToken, WriteUsingToken};
use oxcopy_initiator::xcopy::{Cscd, Designator, ListIdUsage, ParamList, Segment};
use oxcopy_initiator::{DataDir, InitiatorError, LoginError, Session, TmfResponse};
use oxcopy_iscsi::pdu::LoginStatus;
use std::path::Path;
use trust_support::*;

const A: &str = "iqn.2026-11.dev.oxcopy:access-a";
const B: &str = "iqn.2026-11.dev.oxcopy:access-b";
const C: &str = "iqn.2026-11.dev.oxcopy:access-c";
const TRUSTED: &str = "iqn.2026-11.dev.oxcopy:trusted";
const DENIED: &str = "iqn.2026-11.dev.oxcopy:denied";
const BS: u32 = 512;
/// Bytes of known data put at the start of every LUN.
const SEEDED: usize = 64 * 1024;

/// Targets A (LUN 1 masked to [`TRUSTED`]), B (LUN 0 masked) and C (only
/// [`TRUSTED`] may log in), 16 MiB LUNs in `d`; ROD tokens per initiator.
fn targets(d: &Path, c: DaemonConfig) -> DaemonConfig {
    let lun = |id: u32, name: &str| Lun::new(id, d.join(name)).size("16MiB");
    c.target(Target::new(A).lun(lun(0, "a0.img")).lun(lun(1, "a1.img").initiators(&[TRUSTED])))
        .target(Target::new(B).lun(lun(0, "b0.img").initiators(&[TRUSTED])).lun(lun(1, "b1.img")))
        .target(Target::new(C).initiators(&[TRUSTED]).lun(lun(0, "c0.img")))
        .copy_domain("token_scope", "initiator")
}

/// A daemon with every LUN's first [`SEEDED`] bytes written (by the trusted
/// initiator, which sees them all).
async fn seeded() -> TDaemon {
    let d = TDaemon::start(targets).await;
    for (target, lun, seed) in [(A, 0u64, 1u64), (A, 1, 2), (B, 0, 3), (B, 1, 4), (C, 0, 5)] {
        let s = d.session(target, TRUSTED).await;
        within(STEP, "seed write", s.write16(lun, 0, Bytes::from(pattern(seed, SEEDED)), BS, true))
            .await
            .expect("seed write");
        s.logout().await.expect("logout");
    }
    d
}

async fn designator(s: &Session, lun: u64) -> Designator {
    within(STEP, "VPD 83h", s.lu_designator(lun)).await.expect("designator")
}

fn b2b(src: Designator, dst: Designator, list_id: u8) -> ParamList {
    ParamList {
        list_id,
        usage: ListIdUsage::Discard,
        cscds: vec![Cscd::new(src, 0), Cscd::new(dst, 0)],
        segments: vec![Segment::BlockToBlock { src: 0, dst: 1, dc: false, blocks: 16, src_lba: 0, dst_lba: 64 }],
    }
}

fn cdb16(op: u8, b1: u8, lba: u64, len_field: u32) -> Vec<u8> {
    let mut c = vec![0u8; 16];
    c[0] = op;
    c[1] = b1;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&len_field.to_be_bytes());
    c
}

fn cdb10(op: u8, lba: u32, blocks: u16) -> Vec<u8> {
    let mut c = vec![0u8; 10];
    c[0] = op;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn write(len: usize) -> DataDir {
    DataDir::Write { data: Bytes::from(pattern(99, len)) }
}

/// Every command an initiator might use to read, change or learn about a
/// LUN, with a plausible data phase.
fn battery(xcopy_self: Vec<u8>) -> Vec<(&'static str, Vec<u8>, DataDir)> {
    let rd = |len: u32| DataDir::Read { len };
    let mut unmap = vec![0u8; 24];
    unmap[1] = 22;
    unmap[3] = 16;
    unmap[8..16].copy_from_slice(&0u64.to_be_bytes());
    unmap[16..20].copy_from_slice(&8u32.to_be_bytes());
    let mut xcopy_cdb = vec![0u8; 16];
    xcopy_cdb[0] = 0x83;
    xcopy_cdb[10..14].copy_from_slice(&(xcopy_self.len() as u32).to_be_bytes());
    let pt = PopulateToken { ranges: vec![BlockRange { lba: 0, blocks: 8 }], ..Default::default() }.encode();
    let wut = WriteUsingToken { ranges: vec![BlockRange { lba: 0, blocks: 8 }], ..Default::default() }.encode();
    let token_out = |sa: u8, len: usize| {
        let mut c = vec![0u8; 16];
        c[0] = 0x83;
        c[1] = sa;
        c[6..10].copy_from_slice(&1u32.to_be_bytes());
        c[10..14].copy_from_slice(&(len as u32).to_be_bytes());
        c
    };
    let copy_in = |sa: u8| {
        let mut c = vec![0u8; 16];
        c[0] = 0x84;
        c[1] = sa;
        c[10..14].copy_from_slice(&1024u32.to_be_bytes());
        c
    };
    let mut pr_out = vec![0u8; 10];
    pr_out[0] = 0x5F;
    pr_out[8] = 24;
    let mut pr_in = vec![0u8; 10];
    pr_in[0] = 0x5E;
    pr_in[8] = 0x20;
    let mut reg = vec![0u8; 24];
    reg[8..16].copy_from_slice(&0x1234u64.to_be_bytes());
    let mut mode_sense = vec![0u8; 10];
    mode_sense[0] = 0x5A;
    mode_sense[2] = 0x3F;
    mode_sense[8] = 0xFF;
    let mut caw = vec![0u8; 16];
    caw[0] = 0x89;
    caw[13] = 1;
    let mut ws = cdb16(0x93, 0, 0, 4);
    ws[1] = 0;
    vec![
        ("TEST UNIT READY", vec![0u8; 6], DataDir::None),
        ("READ (6)", vec![0x08, 0, 0, 0, 1, 0], rd(512)),
        ("READ (10)", cdb10(0x28, 0, 1), rd(512)),
        ("READ (16)", cdb16(0x88, 0, 0, 1), rd(512)),
        ("READ CAPACITY (10)", vec![0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], rd(8)),
        ("READ CAPACITY (16)", cdb16(0x9E, 0x10, 0, 32), rd(32)),
        ("GET LBA STATUS", cdb16(0x9E, 0x12, 0, 64), rd(64)),
        ("WRITE (6)", vec![0x0A, 0, 0, 0, 1, 0], write(512)),
        ("WRITE (10)", cdb10(0x2A, 0, 1), write(512)),
        ("WRITE (16)", cdb16(0x8A, 0, 0, 1), write(512)),
        ("WRITE (16) FUA", cdb16(0x8A, 0x08, 0, 8), write(4096)),
        ("WRITE AND VERIFY (16)", cdb16(0x8E, 0, 0, 1), write(512)),
        ("VERIFY (16) BYTCHK", cdb16(0x8F, 0x02, 0, 1), write(512)),
        ("WRITE SAME (16)", ws, write(512)),
        ("WRITE SAME (16) UNMAP", cdb16(0x93, 0x08, 0, 8), write(512)),
        ("UNMAP", vec![0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], DataDir::Write { data: Bytes::from(unmap) }),
        ("COMPARE AND WRITE", caw, write(1024)),
        ("ORWRITE (16)", cdb16(0x8B, 0, 0, 1), write(512)),
        ("SYNCHRONIZE CACHE (16)", cdb16(0x91, 0, 0, 0), DataDir::None),
        ("PERSISTENT RESERVE OUT", pr_out, DataDir::Write { data: Bytes::from(reg) }),
        ("PERSISTENT RESERVE IN", pr_in, rd(32)),
        ("RESERVE (6)", vec![0x16, 0, 0, 0, 0, 0], DataDir::None),
        ("MODE SENSE (10)", mode_sense, rd(255)),
        ("START STOP UNIT", vec![0x1B, 0, 0, 0, 1, 0], DataDir::None),
        ("EXTENDED COPY", xcopy_cdb, DataDir::Write { data: Bytes::from(xcopy_self) }),
        ("POPULATE TOKEN", token_out(0x10, pt.len()), DataDir::Write { data: Bytes::from(pt) }),
        ("WRITE USING TOKEN", token_out(0x11, wut.len()), DataDir::Write { data: Bytes::from(wut) }),
        ("RECEIVE COPY RESULTS: OPERATING PARAMETERS", copy_in(0x03), rd(1024)),
        ("RECEIVE ROD TOKEN INFORMATION", copy_in(0x07), rd(1024)),
        ("REPORT ALL ROD TOKENS", copy_in(0x08), rd(1024)),
    ]
}

/// A masked LUN does not exist for the initiators it is masked from: not in
/// REPORT LUNS, INQUIRY says "no LU here", every other command (reads,
/// writes, UNMAP, WRITE SAME, COMPARE AND WRITE, reservations, copies,
/// tokens) ends LOGICAL UNIT NOT SUPPORTED, LUN RESET says the LUN does not
/// exist — and its data never changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_lun_is_invisible_to_other_initiators() {
    let d = seeded().await;
    let trusted = d.session(A, TRUSTED).await;
    let denied = d.session(A, DENIED).await;
    assert_eq!(within(STEP, "REPORT LUNS", trusted.report_luns()).await.unwrap(), vec![0, 1]);
    assert_eq!(within(STEP, "REPORT LUNS", denied.report_luns()).await.unwrap(), vec![0], "LUN 1 is masked");
    let inq = within(STEP, "INQUIRY", denied.inquiry(1, false, 0, 96)).await.expect("INQUIRY is answered");
    assert_eq!(inq[0], 0x7F, "peripheral qualifier 011b: no logical unit");
    let inq = within(STEP, "INQUIRY", trusted.inquiry(1, false, 0, 96)).await.unwrap();
    assert_eq!(inq[0] & 0xE0, 0, "the trusted initiator sees a connected LU");

    let before = fingerprint(&d.file("a1.img"));
    // An EXTENDED COPY within the masked LU (CSCD FFFFh = this LU).
    let self_copy = ParamList {
        list_id: 1,
        usage: ListIdUsage::Discard,
        cscds: vec![],
        segments: vec![Segment::BlockToBlock {
            src: 0xFFFF,
            dst: 0xFFFF,
            dc: false,
            blocks: 8,
            src_lba: 0,
            dst_lba: 64,
        }],
    }
    .encode();
    let mut checked = 0;
    for (name, cdb, dir) in battery(self_copy) {
        let o = within(STEP, name, denied.execute(1, &cdb, dir)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(o.is_check_condition(), "{name} to a masked LUN: status {:#04x}", o.status);
        assert_eq!(sense3(&o), LU_NOT_SUPPORTED, "{name} to a masked LUN");
        checked += 1;
    }
    assert!(checked >= 30);
    let r = within(STEP, "LUN RESET", denied.lun_reset(1)).await.expect("TMF answered");
    assert_eq!(r, TmfResponse::LUN_DOES_NOT_EXIST, "LUN RESET of a masked LUN");
    // The session is still fine, and LUN 0 works for it.
    within(STEP, "TUR LUN 0", denied.test_unit_ready(0)).await.expect("LUN 0 is visible");
    assert_eq!(fingerprint(&d.file("a1.img")), before, "the masked LUN's data never changed");
    same(
        &within(STEP, "read", trusted.read16(1, 0, (SEEDED / 512) as u32, BS)).await.unwrap(),
        &pattern(2, SEEDED),
        "masked LUN read by the trusted initiator",
    );
    // No unit attention or reservation leaked onto the LU either.
    within(STEP, "TUR", trusted.test_unit_ready(1)).await.expect("no unit attention for the trusted initiator");
    d.shutdown().await;
}

/// EXTENDED COPY sent to a LUN the initiator sees must not reach a masked
/// LUN through a CSCD designator: on the same target or another one, as
/// source or destination. The same lists succeed for an initiator that
/// sees both LUNs, and for an unmasked LUN of the other target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_copy_cannot_name_masked_luns() {
    let d = seeded().await;
    let trusted_a = d.session(A, TRUSTED).await;
    let trusted_b = d.session(B, TRUSTED).await;
    let a0 = designator(&trusted_a, 0).await;
    let a1 = designator(&trusted_a, 1).await;
    let b0 = designator(&trusted_b, 0).await;
    let b1 = designator(&trusted_b, 1).await;
    let denied = d.session(A, DENIED).await;
    let prints = |d: &TDaemon| ["a0.img", "a1.img", "b0.img", "b1.img"].map(|f| fingerprint(&d.file(f)));
    let before = prints(&d);
    let cases = [
        ("masked LUN of this target as source", a1.clone(), a0.clone()),
        ("masked LUN of this target as destination", a0.clone(), a1.clone()),
        ("masked LUN of another target as source", b0.clone(), a0.clone()),
        ("masked LUN of another target as destination", a0.clone(), b0.clone()),
    ];
    for (i, (what, src, dst)) in cases.into_iter().enumerate() {
        let o = within(STEP, what, denied.extended_copy(0, &b2b(src, dst, i as u8))).await.expect(what);
        assert!(o.is_check_condition(), "{what}: status {:#04x}", o.status);
        assert_eq!(sense3(&o), (0x0A, 0x08, 0x04), "{what}: COPY ABORTED / UNREACHABLE COPY TARGET");
    }
    assert_eq!(prints(&d), before, "nothing was read into or written to any LUN");
    // Controls: the same kind of list works where the LUNs are visible.
    let o = within(STEP, "a0 -> b1", denied.extended_copy(0, &b2b(a0.clone(), b1, 10))).await.unwrap();
    assert!(o.is_good(), "an unmasked LUN of another open target is reachable: {:?}", o.sense_info());
    let o = within(STEP, "a0 -> a1", trusted_a.extended_copy(0, &b2b(a0, a1, 11))).await.unwrap();
    assert!(o.is_good(), "the trusted initiator may copy into a1: {:?}", o.sense_info());
    same(&file_bytes(&d.file("a1.img"), 64 * 512, 16 * 512), &pattern(1, 16 * 512), "a0 -> a1 by the trusted host");
    d.shutdown().await;
}

/// Whether this build serves POPULATE TOKEN.
async fn odx_served(s: &Session) -> bool {
    let pt = PopulateToken { ranges: vec![BlockRange { lba: 0, blocks: 8 }], ..Default::default() };
    match s.populate_token(0, 0x4000, &pt).await {
        Ok(o) => o.is_good(),
        Err(_) => false,
    }
}

/// ROD tokens with token_scope = "initiator": a token made from a LUN the
/// writing initiator may not see (masked on its own target or on another
/// one) must not move data, and the destination stays unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_masked_luns_are_refused() {
    let d = seeded().await;
    let trusted_a = d.session(A, TRUSTED).await;
    assert!(odx_served(&trusted_a).await, "POPULATE TOKEN is served");
    let trusted_b = d.session(B, TRUSTED).await;
    let denied = d.session(A, DENIED).await;
    let ranges = vec![BlockRange { lba: 0, blocks: 16 }];
    let mut tokens = Vec::new();
    for (s, lun, list_id, what) in
        [(&trusted_a, 1u64, 21u32, "a1 (masked, same target)"), (&trusted_b, 0, 22, "b0 (masked, other target)")]
    {
        let pt = PopulateToken { ranges: ranges.clone(), ..Default::default() };
        let o = within(STEP, "POPULATE TOKEN", s.populate_token(lun, list_id, &pt)).await.unwrap();
        assert!(o.is_good(), "POPULATE TOKEN of {what}: {:?}", o.sense_info());
        let info = within(STEP, "RRTI", s.receive_rod_token_information(lun, list_id)).await.expect("RRTI");
        tokens.push((what, info.token.expect("a token")));
    }
    let before = fingerprint(&d.file("a0.img"));
    for (i, (what, token)) in tokens.iter().enumerate() {
        let wut =
            WriteUsingToken { token: *token, ranges: vec![BlockRange { lba: 256, blocks: 16 }], ..Default::default() };
        let o = within(STEP, "WRITE USING TOKEN", denied.write_using_token(0, 30 + i as u32, &wut)).await;
        let o = o.unwrap_or_else(|e| panic!("WRITE USING TOKEN: {e}"));
        assert!(o.is_check_condition(), "WRITE USING TOKEN with a token of {what} must fail for {DENIED}");
        assert_eq!(sense3(&o), (0x05, 0x23, 0x00), "{what}: INVALID TOKEN OPERATION, CAUSE NOT REPORTABLE");
    }
    assert_eq!(fingerprint(&d.file("a0.img")), before, "no data moved into a0");
    // Control: the trusted initiator may use the same token.
    let wut =
        WriteUsingToken { token: tokens[0].1, ranges: vec![BlockRange { lba: 256, blocks: 16 }], ..Default::default() };
    let o = within(STEP, "WRITE USING TOKEN", trusted_a.write_using_token(0, 40, &wut)).await.unwrap();
    assert!(o.is_good(), "trusted WRITE USING TOKEN: {:?}", o.sense_info());
    same(&file_bytes(&d.file("a0.img"), 256 * 512, 16 * 512), &pattern(2, 16 * 512), "token copy a1 -> a0");
    d.shutdown().await;
}

/// SendTargets lists only the targets an initiator may log in to, and a
/// login to another one is refused with AUTHORIZATION FAILURE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_lists_only_admitted_targets() {
    let d = TDaemon::start(targets).await;
    assert_eq!(d.discover(TRUSTED).await, vec![A.to_string(), B.to_string(), C.to_string()]);
    assert_eq!(d.discover(DENIED).await, vec![A.to_string(), B.to_string()], "C's allow-list excludes {DENIED}");
    match d.try_session(C, DENIED).await {
        Err(InitiatorError::Login(LoginError::Rejected { status })) => {
            assert_eq!(status, LoginStatus::AUTHORIZATION_FAILURE)
        }
        Err(e) => panic!("unexpected login error {e}"),
        Ok(_) => panic!("{DENIED} logged in to {C}"),
    }
    // Case-insensitive match of the allow-list, as for targets.
    let s = d.session(C, &TRUSTED.to_uppercase()).await;
    assert_eq!(within(STEP, "REPORT LUNS", s.report_luns()).await.unwrap(), vec![0]);
    d.shutdown().await;
}
