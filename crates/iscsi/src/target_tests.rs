//! Tests of the full-feature-phase state machine ([`crate::target`]).
//!
//! Every PDU goes through the real codec both ways: requests are built with
//! [`Header`] + [`encode_frame`] and decoded with [`decode_frame`] (under the
//! target's limits) before [`TargetConnection::on_pdu`] sees them, and every
//! [`Action::Send`] is decoded under the *initiator's* limits (its
//! MaxRecvDataSegmentLength, the negotiated digests) before the assertions
//! look at exact header fields.

use crate::frame::{decode_frame, encode_frame, extended_cdb_ahs, FrameLimits, Pdu};
use crate::params::{SessionParams, SessionType};
use crate::pdu::*;
use crate::target::*;
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};

const LUN0: [u8; 8] = [0; 8];
const LUN1: [u8; 8] = [0, 1, 0, 0, 0, 0, 0, 0];
const STAT0: u32 = 100;
const NO_TAG: u32 = RESERVED_TAG;

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

fn params() -> SessionParams {
    SessionParams {
        initiator_name: "iqn.2004-10.com.ubuntu:01:c0ffee".into(),
        target_name: Some("iqn.2024-01.org.oxcopy:disk1".into()),
        ..SessionParams::default()
    }
}

fn cfg(window: u32) -> TargetConnConfig {
    TargetConnConfig { cmd_window: window, max_write_buffer: 1 << 20, send_targets: Vec::new() }
}

/// What the state machine asked for, with every PDU decoded from its bytes.
#[derive(Debug)]
enum Out {
    Pdu(Pdu),
    Execute(ScsiTask),
    Cancel(Vec<u32>),
    Tmf(TaskManagement),
    Close,
}

fn initiator_limits(p: &SessionParams) -> FrameLimits {
    FrameLimits {
        header_digest: p.header_digest,
        data_digest: p.data_digest,
        max_data_segment: p.initiator_max_recv_data_segment_length,
    }
}

fn target_limits(p: &SessionParams) -> FrameLimits {
    FrameLimits {
        header_digest: p.header_digest,
        data_digest: p.data_digest,
        max_data_segment: p.target_max_recv_data_segment_length,
    }
}

/// Decode what the target sent, exactly as an initiator would receive it.
fn outs(p: &SessionParams, actions: Vec<Action>) -> Vec<Out> {
    actions
        .into_iter()
        .map(|a| match a {
            Action::Send(e) => {
                let bytes = e.to_vec();
                assert_eq!(bytes.len() % 4, 0, "PDU not padded to 4 bytes");
                let mut buf = BytesMut::from(&bytes[..]);
                let pdu = decode_frame(&mut buf, &initiator_limits(p))
                    .unwrap_or_else(|e| panic!("target sent an undecodable PDU: {e}"))
                    .expect("target sent a truncated PDU");
                assert!(buf.is_empty(), "bytes left after a PDU");
                Out::Pdu(pdu)
            }
            Action::Execute(t) => Out::Execute(t),
            Action::Cancel(v) => Out::Cancel(v),
            Action::TaskManagement(t) => Out::Tmf(t),
            Action::Close => Out::Close,
        })
        .collect()
}

/// A request as the target receives it: encoded, then decoded from bytes.
fn wire(p: &SessionParams, h: &Header, ahs: &[u8], data: &[u8]) -> Pdu {
    let enc = encode_frame(h, ahs, Bytes::copy_from_slice(data), p.header_digest, p.data_digest).to_vec();
    let mut buf = BytesMut::from(&enc[..]);
    let pdu = decode_frame(&mut buf, &target_limits(p)).expect("request does not frame").expect("truncated request");
    assert!(buf.is_empty());
    pdu
}

struct T {
    conn: TargetConnection,
    p: SessionParams,
}

impl T {
    fn new(p: SessionParams, c: TargetConnConfig) -> T {
        T { conn: TargetConnection::new(p.clone(), c, STAT0, 1), p }
    }
    fn with(f: impl FnOnce(&mut SessionParams)) -> T {
        let mut p = params();
        f(&mut p);
        T::new(p, cfg(16))
    }
    fn plain() -> T {
        T::new(params(), cfg(16))
    }
    fn send(&mut self, h: Header, data: &[u8]) -> Vec<Out> {
        let pdu = wire(&self.p, &h, &[], data);
        let a = self.conn.on_pdu(pdu);
        outs(&self.p, a)
    }
    fn complete(&mut self, itt: u32, o: TaskOutcome) -> Vec<Out> {
        let a = self.conn.complete(itt, o);
        outs(&self.p, a)
    }
    fn tmf_done(&mut self, itt: u32, r: TmfResponse) -> Vec<Out> {
        let a = self.conn.tmf_done(itt, r);
        outs(&self.p, a)
    }
    fn digest_error(&mut self, bhs: &[u8; BHS_LEN]) -> Vec<Out> {
        let a = self.conn.on_data_digest_error(bhs);
        outs(&self.p, a)
    }
    /// Send a run of data of `len` bytes at `offset` in Data-Out PDUs of at
    /// most `seg` bytes (DataSN from 0, F on the last one).
    fn data_burst(&mut self, itt: u32, ttt: u32, offset: u32, len: u32, seg: u32) -> Vec<Out> {
        let mut all = Vec::new();
        let mut sent = 0;
        let mut sn = 0;
        while sent < len {
            let n = seg.min(len - sent);
            let off = offset + sent;
            let last = sent + n == len;
            let o = self.send(dout(itt, ttt, sn, off, last), &pat(itt, off, n as usize));
            if !last {
                assert!(o.is_empty(), "mid-burst Data-Out produced {o:?}");
            }
            all.extend(o);
            sent += n;
            sn += 1;
        }
        all
    }
}

/// Deterministic, never-zero payload bytes: the same (itt, offset) always
/// gives the same byte, so reassembled buffers can be checked exactly.
fn pat(itt: u32, offset: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| (itt.wrapping_mul(31).wrapping_add(offset).wrapping_add(i as u32) % 251 + 1) as u8).collect()
}

fn good() -> TaskOutcome {
    TaskOutcome::default()
}

fn with_data(len: usize) -> TaskOutcome {
    TaskOutcome { data_in: Bytes::from(pat(0xdead, 0, len)), ..Default::default() }
}

// --- request builders ------------------------------------------------------

fn scsi(itt: u32, cmd_sn: u32) -> ScsiCommand {
    ScsiCommand {
        immediate: false,
        final_: true,
        read: false,
        write: false,
        attr: TaskAttr::SIMPLE,
        lun: LUN0,
        itt,
        expected_data_length: 0,
        cmd_sn,
        exp_stat_sn: STAT0,
        cdb: [0; 16],
    }
}

fn tur(itt: u32, cmd_sn: u32) -> Header {
    Header::ScsiCommand(scsi(itt, cmd_sn))
}

fn read(itt: u32, cmd_sn: u32, edtl: u32) -> Header {
    let mut c = scsi(itt, cmd_sn);
    c.read = true;
    c.expected_data_length = edtl;
    c.cdb[0] = 0x28;
    Header::ScsiCommand(c)
}

fn write(itt: u32, cmd_sn: u32, edtl: u32) -> Header {
    let mut c = scsi(itt, cmd_sn);
    c.write = true;
    c.expected_data_length = edtl;
    c.cdb[0] = 0x2a;
    Header::ScsiCommand(c)
}

fn as_immediate(mut h: Header) -> Header {
    match &mut h {
        Header::ScsiCommand(c) => c.immediate = true,
        Header::NopOut(c) => c.immediate = true,
        Header::TaskMgmtRequest(c) => c.immediate = true,
        Header::TextRequest(c) => c.immediate = true,
        Header::LogoutRequest(c) => c.immediate = true,
        _ => panic!("not a request that can be immediate"),
    }
    h
}

fn on_lun(mut h: Header, lun: [u8; 8]) -> Header {
    match &mut h {
        Header::ScsiCommand(c) => c.lun = lun,
        _ => panic!("not a SCSI command"),
    }
    h
}

fn dout(itt: u32, ttt: u32, data_sn: u32, offset: u32, final_: bool) -> Header {
    Header::DataOut(DataOut { final_, lun: LUN0, itt, ttt, exp_stat_sn: STAT0, data_sn, buffer_offset: offset })
}

fn nop_out(itt: u32, ttt: u32, cmd_sn: u32) -> Header {
    Header::NopOut(NopOut { immediate: false, lun: LUN1, itt, ttt, cmd_sn, exp_stat_sn: STAT0 })
}

fn tmf(itt: u32, cmd_sn: u32, function: TmfFunction, lun: [u8; 8], rtt: u32) -> Header {
    Header::TaskMgmtRequest(TaskMgmtRequest {
        immediate: true,
        function,
        lun,
        itt,
        referenced_task_tag: rtt,
        cmd_sn,
        exp_stat_sn: STAT0,
        ref_cmd_sn: 0,
        exp_data_sn: 0,
    })
}

fn text(itt: u32, ttt: u32, cmd_sn: u32) -> Header {
    Header::TextRequest(TextRequest {
        immediate: false,
        final_: true,
        continue_: false,
        lun: LUN0,
        itt,
        ttt,
        cmd_sn,
        exp_stat_sn: STAT0,
    })
}

fn logout(itt: u32, cmd_sn: u32, reason: LogoutReason) -> Header {
    Header::LogoutRequest(LogoutRequest { immediate: false, reason, itt, cid: 0, cmd_sn, exp_stat_sn: STAT0 })
}

fn login() -> Header {
    Header::LoginRequest(LoginRequest {
        transit: true,
        continue_: false,
        csg: Stage::OPERATIONAL_NEGOTIATION,
        nsg: Stage::FULL_FEATURE_PHASE,
        version_max: 0,
        version_min: 0,
        isid: [0x80, 0, 0, 0x02, 0x3d, 0],
        tsih: 1,
        itt: 9,
        cid: 0,
        cmd_sn: 1,
        exp_stat_sn: STAT0,
    })
}

fn bhs_of(h: &Header, data_len: u32) -> [u8; BHS_LEN] {
    h.encode(0, data_len)
}

// --- output extractors -----------------------------------------------------

fn hdr(o: &Out) -> &Header {
    match o {
        Out::Pdu(p) => &p.header,
        other => panic!("expected a PDU, got {other:?}"),
    }
}

fn body(o: &Out) -> &[u8] {
    match o {
        Out::Pdu(p) => &p.data,
        other => panic!("expected a PDU, got {other:?}"),
    }
}

macro_rules! get {
    ($o:expr, $v:ident) => {
        match hdr($o) {
            Header::$v(h) => h.clone(),
            other => panic!(concat!("expected ", stringify!($v), ", got {:?}"), other),
        }
    };
}

fn exec(o: &Out) -> &ScsiTask {
    match o {
        Out::Execute(t) => t,
        other => panic!("expected Execute, got {other:?}"),
    }
}

/// (sense key, ASC, ASCQ) of a SCSI Response carrying fixed-format sense,
/// checking the SenseLength prefix.
fn sense(o: &Out) -> (u8, u8, u8) {
    let d = body(o);
    assert!(d.len() >= 2, "no sense data");
    let n = u16::from_be_bytes([d[0], d[1]]) as usize;
    assert_eq!(n, d.len() - 2, "SenseLength does not match the data segment");
    let s = &d[2..];
    assert_eq!(s[0], 0x70, "not fixed-format current sense");
    (s[2] & 0x0f, s[12], s[13])
}

fn executes(o: &[Out]) -> Vec<u32> {
    o.iter().filter_map(|o| if let Out::Execute(t) = o { Some(t.itt) } else { None }).collect()
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v
}

/// Assert a CHECK CONDITION response for `itt` with the given sense.
fn assert_check_condition(o: &Out, itt: u32, key: u8, asc: u8, ascq: u8) {
    let r = get!(o, ScsiResponse);
    assert_eq!(r.itt, itt);
    assert_eq!(r.response, 0, "service response must be COMMAND COMPLETED AT TARGET");
    assert_eq!(r.status, 0x02, "status must be CHECK CONDITION");
    assert_eq!(sense(o), (key, asc, ascq));
}

// ---------------------------------------------------------------------------
// CmdSN window (RFC 7143 §4.2.2.1)
// ---------------------------------------------------------------------------

#[test]
fn in_order_commands_execute_and_advance_exp_cmd_sn() {
    let mut t = T::new(params(), cfg(8));
    assert_eq!((t.conn.exp_cmd_sn(), t.conn.max_cmd_sn()), (1, 8));
    for sn in 1..=3u32 {
        let o = t.send(read(sn, sn, 512), &[]);
        assert_eq!(o.len(), 1);
        let task = exec(&o[0]);
        assert_eq!((task.itt, task.expected_len, task.read, task.write), (sn, 512, true, false));
        assert_eq!(task.cdb[0], 0x28);
        assert_eq!(task.attr, TaskAttr::SIMPLE);
        assert_eq!(t.conn.exp_cmd_sn(), sn + 1);
        // Accepting a command moves the window's start, not its end.
        assert_eq!(t.conn.max_cmd_sn(), 8);
    }
    assert_eq!(t.conn.tasks_in_flight(), 3);
    assert_eq!(sorted(t.conn.task_itts()), vec![1, 2, 3]);
}

#[test]
fn early_commands_are_held_then_released_in_cmd_sn_order() {
    let mut t = T::new(params(), cfg(8));
    assert!(t.send(read(0x30, 3, 512), &[]).is_empty());
    assert!(t.send(read(0x20, 2, 512), &[]).is_empty());
    assert_eq!(t.conn.exp_cmd_sn(), 1);
    assert_eq!(t.conn.tasks_in_flight(), 0);
    let o = t.send(read(0x10, 1, 512), &[]);
    assert_eq!(executes(&o), vec![0x10, 0x20, 0x30]);
    assert_eq!(t.conn.exp_cmd_sn(), 4);
    assert_eq!(t.conn.max_cmd_sn(), 8);
}

#[test]
fn held_commands_do_not_shrink_the_advertised_window() {
    // MaxCmdSN 4 is advertised; the initiator may send 1..=4 in any order
    // and none may be lost (initiators never take a MaxCmdSN back).
    let mut t = T::new(params(), cfg(4));
    assert_eq!(t.conn.max_cmd_sn(), 4);
    assert!(t.send(read(3, 3, 512), &[]).is_empty());
    assert_eq!(t.conn.max_cmd_sn(), 4, "holding an early command must not pull MaxCmdSN back");
    assert!(t.send(read(4, 4, 512), &[]).is_empty());
    assert!(t.send(read(2, 2, 512), &[]).is_empty());
    assert_eq!(t.conn.max_cmd_sn(), 4);
    let o = t.send(read(1, 1, 512), &[]);
    assert_eq!(executes(&o), vec![1, 2, 3, 4]);
    assert_eq!((t.conn.exp_cmd_sn(), t.conn.max_cmd_sn()), (5, 4));
}

#[test]
fn duplicate_of_a_held_command_is_ignored() {
    let mut t = T::new(params(), cfg(8));
    assert!(t.send(read(0x20, 2, 512), &[]).is_empty());
    // Same CmdSN again (a retry or a confused initiator): the first copy wins.
    assert!(t.send(read(0x21, 2, 512), &[]).is_empty());
    let o = t.send(read(0x10, 1, 512), &[]);
    assert_eq!(executes(&o), vec![0x10, 0x20]);
    assert_eq!(t.conn.exp_cmd_sn(), 3);
}

#[test]
fn commands_outside_the_window_are_dropped_silently() {
    let mut t = T::new(params(), cfg(4));
    assert_eq!(executes(&t.send(read(1, 1, 512), &[])), vec![1]);
    // Below ExpCmdSN: an old duplicate.
    assert!(t.send(read(2, 1, 512), &[]).is_empty());
    assert!(t.send(nop_out(0x50, NO_TAG, 0), &[]).is_empty());
    // Above MaxCmdSN (4).
    assert!(t.send(read(3, 5, 512), &[]).is_empty());
    assert!(t.send(read(4, 0x8000_0002, 512), &[]).is_empty());
    assert!(t.send(text(0x60, NO_TAG, 9), b"SendTargets=All\0").is_empty());
    assert_eq!((t.conn.exp_cmd_sn(), t.conn.max_cmd_sn()), (2, 4));
    // Nothing was held: filling 2..=4 executes exactly those.
    let o = t.send(read(0x12, 2, 0), &[]);
    assert_eq!(executes(&o), vec![0x12]);
    assert_eq!(t.conn.tasks_in_flight(), 2);
    assert_eq!(t.conn.exp_cmd_sn(), 3);
}

#[test]
fn immediate_commands_do_not_advance_exp_cmd_sn() {
    let mut t = T::new(params(), cfg(4));
    // Immediate NOP-Out: answered at once, ExpCmdSN unchanged.
    let o = t.send(as_immediate(nop_out(0x40, NO_TAG, 1)), b"abc");
    assert_eq!(o.len(), 1);
    let n = get!(&o[0], NopIn);
    assert_eq!((n.exp_cmd_sn, n.max_cmd_sn), (1, 4));
    assert_eq!(t.conn.exp_cmd_sn(), 1);
    // Immediate SCSI command: executed at once, CmdSN not consumed.
    let o = t.send(as_immediate(read(7, 1, 512)), &[]);
    assert_eq!(executes(&o), vec![7]);
    assert_eq!(t.conn.exp_cmd_sn(), 1);
    // The non-immediate command carrying the same CmdSN is still expected.
    let o = t.send(read(8, 1, 512), &[]);
    assert_eq!(executes(&o), vec![8]);
    assert_eq!(t.conn.exp_cmd_sn(), 2);
    // An immediate TMF does not release anything or advance ExpCmdSN.
    let o = t.send(tmf(0x41, 2, TmfFunction::ABORT_TASK, LUN0, 0x999), &[]);
    assert_eq!(get!(&o[0], TaskMgmtResponse).exp_cmd_sn, 2);
    assert_eq!(t.conn.exp_cmd_sn(), 2);
}

#[test]
fn max_cmd_sn_closes_as_tasks_pile_up_and_reopens_on_completion() {
    let mut t = T::new(params(), cfg(3));
    assert_eq!(t.conn.max_cmd_sn(), 3);
    for sn in 1..=3 {
        assert_eq!(executes(&t.send(read(sn, sn, 0), &[])), vec![sn]);
    }
    // Window closed: MaxCmdSN = ExpCmdSN - 1.
    assert_eq!((t.conn.exp_cmd_sn(), t.conn.max_cmd_sn()), (4, 3));
    // The next command in order is outside the window and must be ignored,
    // or a misbehaving initiator could pile up unbounded work.
    assert!(t.send(read(4, 4, 0), &[]).is_empty());
    assert_eq!((t.conn.exp_cmd_sn(), t.conn.tasks_in_flight()), (4, 3));
    // A NOP answered meanwhile carries the closed window.
    let o = t.send(as_immediate(nop_out(0x40, NO_TAG, 4)), &[]);
    let n = get!(&o[0], NopIn);
    assert_eq!((n.exp_cmd_sn, n.max_cmd_sn), (4, 3));
    // One completion reopens one slot, and the response says so.
    let o = t.complete(1, good());
    let r = get!(&o[0], ScsiResponse);
    assert_eq!((r.exp_cmd_sn, r.max_cmd_sn), (4, 4));
    assert_eq!(executes(&t.send(read(4, 4, 0), &[])), vec![4]);
    assert_eq!((t.conn.exp_cmd_sn(), t.conn.max_cmd_sn()), (5, 4));
    for itt in 2..=4 {
        t.complete(itt, good());
    }
    assert_eq!((t.conn.exp_cmd_sn(), t.conn.max_cmd_sn()), (5, 7));
}

#[test]
fn immediate_scsi_commands_are_limited_and_do_not_shrink_the_window() {
    let mut t = T::new(params(), cfg(2));
    assert_eq!(t.conn.max_cmd_sn(), 2);
    assert_eq!(executes(&t.send(as_immediate(read(7, 1, 512)), &[])), vec![7]);
    // The window advertised (1..=2) is still entirely usable.
    assert_eq!(t.conn.max_cmd_sn(), 2);
    // A second immediate command while the first runs: Immediate Command Reject.
    let cmd = as_immediate(read(8, 1, 512));
    let o = t.send(cmd.clone(), &[]);
    assert_eq!(o.len(), 1);
    let rj = get!(&o[0], Reject);
    assert_eq!(rj.reason, RejectReason::IMMEDIATE_COMMAND_REJECT);
    assert_eq!(body(&o[0]), &bhs_of(&cmd, 0)[..]);
    assert_eq!(executes(&t.send(read(1, 1, 512), &[])), vec![1]);
    assert_eq!(executes(&t.send(read(2, 2, 512), &[])), vec![2]);
    assert!(t.conn.tasks_in_flight() <= 3);
    assert_eq!(t.conn.max_cmd_sn(), 2);
    // Once the immediate task is over another one is accepted.
    assert_eq!(t.complete(7, good()).len(), 1);
    assert_eq!(t.conn.max_cmd_sn(), 2);
    assert_eq!(executes(&t.send(as_immediate(read(8, 3, 512)), &[])), vec![8]);
    // Reusing the ITT of a finished immediate task for a normal command
    // makes it count in the window like any other.
    t.complete(8, good());
    t.complete(1, good());
    assert_eq!(t.conn.max_cmd_sn(), 3);
    assert_eq!(executes(&t.send(read(8, 3, 512), &[])), vec![8]);
    assert_eq!(t.conn.max_cmd_sn(), 3);
}

#[test]
fn cmd_sn_wraps_around() {
    let mut t = TargetConnection::new(params(), cfg(4), STAT0, 0xffff_fffe);
    let p = params();
    assert_eq!(t.max_cmd_sn(), 1);
    let mut all = Vec::new();
    for (itt, sn) in [(1, 0xffff_ffffu32), (2, 0), (3, 1)] {
        // Send them out of order across the wrap.
        all.extend(outs(&p, t.on_pdu(wire(&p, &tur(itt, sn), &[], &[]))));
    }
    assert!(all.is_empty());
    let o = outs(&p, t.on_pdu(wire(&p, &tur(0, 0xffff_fffe), &[], &[])));
    assert_eq!(executes(&o), vec![0, 1, 2, 3]);
    assert_eq!(t.exp_cmd_sn(), 2);
    assert_eq!(t.max_cmd_sn(), 1);
    assert!(sn_lt(0xffff_ffff, 0) && sn_lt(0xffff_fffe, 1) && !sn_lt(1, 0xffff_fffe) && !sn_lt(5, 5));
}

// ---------------------------------------------------------------------------
// StatSN
// ---------------------------------------------------------------------------

#[test]
fn stat_sn_advances_on_responses_only() {
    let mut t = T::with(|p| {
        p.immediate_data = false;
        p.initial_r2t = true;
    });
    t.conn = TargetConnection::new(
        t.p.clone(),
        TargetConnConfig { send_targets: b"TargetName=iqn.x\0".to_vec(), ..cfg(16) },
        STAT0,
        1,
    );
    // NOP-In answer: 100.
    let o = t.send(nop_out(0x40, NO_TAG, 1), &[]);
    assert_eq!(get!(&o[0], NopIn).stat_sn, 100);
    // R2T: carries the next StatSN (101) without taking it.
    let o = t.send(write(1, 2, 1024), &[]);
    let r2t = get!(&o[0], R2t);
    assert_eq!(r2t.stat_sn, 101);
    // Unsolicited NOP-In (ping): 101, not advanced.
    let ping = outs(&t.p, vec![t.conn.ping().unwrap()]);
    assert_eq!(get!(&ping[0], NopIn).stat_sn, 101);
    // Reject: 101, not advanced.
    let o = t.send(login(), &[]);
    assert_eq!(get!(&o[0], Reject).stat_sn, 101);
    // Text Response: 101.
    let o = t.send(text(0x41, NO_TAG, 3), b"SendTargets=All\0");
    assert_eq!(get!(&o[0], TextResponse).stat_sn, 101);
    // TMF Response: 102.
    let o = t.send(tmf(0x42, 4, TmfFunction::ABORT_TASK, LUN0, 0x77), &[]);
    assert_eq!(get!(&o[0], TaskMgmtResponse).stat_sn, 102);
    // Data-Out completes the write; the SCSI Response: 103.
    let o = t.data_burst(1, r2t.ttt, 0, 1024, 8192);
    assert_eq!(executes(&o), vec![1]);
    let o = t.complete(1, TaskOutcome { data_out_wanted: 1024, ..good() });
    assert_eq!(get!(&o[0], ScsiResponse).stat_sn, 103);
    // Read: Data-In without status carry 104 without taking it, the one
    // with status takes it.
    t.send(read(2, 4, 20000), &[]);
    let o = t.complete(2, with_data(20000));
    assert_eq!(o.len(), 3);
    for d in &o[..2] {
        let d = get!(d, DataIn);
        assert!(!d.has_status);
        assert_eq!(d.stat_sn, 104);
    }
    assert_eq!(get!(&o[2], DataIn).stat_sn, 104);
    // Logout Response: 105.
    let o = t.send(logout(0x43, 5, LogoutReason::CLOSE_SESSION), &[]);
    assert_eq!(get!(&o[0], LogoutResponse).stat_sn, 105);
}

// ---------------------------------------------------------------------------
// Write data transfer (RFC 7143 §11.7, §11.8)
// ---------------------------------------------------------------------------

#[test]
fn write_with_all_data_immediate_executes_at_once() {
    let mut t = T::plain();
    let data = pat(1, 0, 4096);
    let o = t.send(write(1, 1, 4096), &data);
    assert_eq!(o.len(), 1, "no R2T when all data came with the command");
    let task = exec(&o[0]);
    assert_eq!((task.write, task.read, task.expected_len), (true, false, 4096));
    assert_eq!(&task.data_out[..], &data[..]);
    let o = t.complete(1, TaskOutcome { data_out_wanted: 4096, ..good() });
    let r = get!(&o[0], ScsiResponse);
    assert_eq!((r.status, r.overflow, r.underflow, r.residual, r.exp_data_sn), (0, false, false, 0, 0));
    assert!(body(&o[0]).is_empty());
}

#[test]
fn immediate_plus_unsolicited_data_up_to_first_burst_then_r2t() {
    let mut t = T::with(|p| {
        p.initial_r2t = false;
        p.immediate_data = true;
        p.first_burst_length = 4096;
        p.max_burst_length = 8192;
    });
    let edtl = 10_000;
    let o = t.send(write(5, 1, edtl), &pat(5, 0, 1024));
    // The rest beyond FirstBurstLength is solicited right away.
    assert_eq!(o.len(), 1);
    let r2t = get!(&o[0], R2t);
    assert_eq!((r2t.itt, r2t.r2t_sn, r2t.buffer_offset, r2t.desired_length), (5, 0, 4096, 5904));
    assert_ne!(r2t.ttt, NO_TAG);
    assert_eq!(r2t.lun, LUN0);
    assert_eq!((r2t.exp_cmd_sn, r2t.max_cmd_sn), (2, 16));
    // Unsolicited Data-Out (TTT ffffffff), DataSN from 0, up to FirstBurstLength.
    assert!(t.send(dout(5, NO_TAG, 0, 1024, false), &pat(5, 1024, 1024)).is_empty());
    assert!(t.send(dout(5, NO_TAG, 1, 2048, true), &pat(5, 2048, 2048)).is_empty());
    // Solicited data, its own DataSN sequence.
    let o = t.data_burst(5, r2t.ttt, 4096, 5904, 4000);
    assert_eq!(o.len(), 1);
    let task = exec(&o[0]);
    assert_eq!(&task.data_out[..], &pat(5, 0, edtl as usize)[..]);
    let o = t.complete(5, TaskOutcome { data_out_wanted: edtl, ..good() });
    assert_eq!(get!(&o[0], ScsiResponse).exp_data_sn, 1, "ExpDataSN counts the R2Ts sent");
}

#[test]
fn unsolicited_data_only_when_edtl_fits_in_first_burst() {
    let mut t = T::with(|p| {
        p.initial_r2t = false;
        p.immediate_data = false;
        p.first_burst_length = 65536;
    });
    assert!(t.send(write(5, 1, 3000), &[]).is_empty(), "no R2T: all data is unsolicited");
    assert!(t.send(dout(5, NO_TAG, 0, 0, false), &pat(5, 0, 2000)).is_empty());
    let o = t.send(dout(5, NO_TAG, 1, 2000, true), &pat(5, 2000, 1000));
    assert_eq!(&exec(&o[0]).data_out[..], &pat(5, 0, 3000)[..]);
}

#[test]
fn initial_r2t_yes_solicits_all_data() {
    let mut t = T::with(|p| {
        p.initial_r2t = true;
        p.immediate_data = false;
    });
    let o = t.send(write(9, 1, 3000), &[]);
    assert_eq!(o.len(), 1);
    let r2t = get!(&o[0], R2t);
    assert_eq!((r2t.itt, r2t.r2t_sn, r2t.buffer_offset, r2t.desired_length), (9, 0, 0, 3000));
    assert_eq!(r2t.stat_sn, STAT0);
    let o = t.data_burst(9, r2t.ttt, 0, 3000, 1024);
    assert_eq!(&exec(&o[0]).data_out[..], &pat(9, 0, 3000)[..]);
}

#[test]
fn immediate_data_then_r2t_for_the_rest() {
    let mut t = T::with(|p| {
        p.initial_r2t = true;
        p.immediate_data = true;
    });
    let o = t.send(write(9, 1, 3000), &pat(9, 0, 1000));
    let r2t = get!(&o[0], R2t);
    assert_eq!((r2t.buffer_offset, r2t.desired_length), (1000, 2000));
    let o = t.data_burst(9, r2t.ttt, 1000, 2000, 8192);
    assert_eq!(&exec(&o[0]).data_out[..], &pat(9, 0, 3000)[..]);
}

#[test]
fn edtl_beyond_max_burst_is_solicited_in_several_r2ts() {
    let mut t = T::with(|p| {
        p.initial_r2t = true;
        p.immediate_data = false;
        p.max_burst_length = 4096;
        p.max_outstanding_r2t = 1;
    });
    let edtl = 10_000;
    let o = t.send(write(3, 1, edtl), &[]);
    assert_eq!(o.len(), 1);
    let mut ttts = HashSet::new();
    let mut r2t = get!(&o[0], R2t);
    let expect = [(0u32, 4096u32), (4096, 4096), (8192, 1808)];
    for (i, (off, len)) in expect.iter().enumerate() {
        assert_eq!((r2t.itt, r2t.r2t_sn, r2t.buffer_offset, r2t.desired_length), (3, i as u32, *off, *len));
        assert_eq!(r2t.stat_sn, STAT0);
        assert_ne!(r2t.ttt, NO_TAG);
        assert!(ttts.insert(r2t.ttt), "TTT reused");
        let o = t.data_burst(3, r2t.ttt, *off, *len, 1500);
        assert_eq!(o.len(), 1);
        if i + 1 < expect.len() {
            r2t = get!(&o[0], R2t);
        } else {
            assert_eq!(&exec(&o[0]).data_out[..], &pat(3, 0, edtl as usize)[..]);
        }
    }
    let o = t.complete(3, TaskOutcome { data_out_wanted: edtl, ..good() });
    assert_eq!(get!(&o[0], ScsiResponse).exp_data_sn, 3);
}

#[test]
fn max_outstanding_r2t_is_respected_and_refilled_per_burst() {
    let mut t = T::with(|p| {
        p.initial_r2t = true;
        p.immediate_data = false;
        p.max_burst_length = 1024;
        p.max_outstanding_r2t = 2;
    });
    let o = t.send(write(4, 1, 5000), &[]);
    assert_eq!(o.len(), 2, "exactly MaxOutstandingR2T R2Ts up front");
    let a = get!(&o[0], R2t);
    let b = get!(&o[1], R2t);
    assert_eq!((a.r2t_sn, a.buffer_offset, a.desired_length), (0, 0, 1024));
    assert_eq!((b.r2t_sn, b.buffer_offset, b.desired_length), (1, 1024, 1024));
    assert_ne!(a.ttt, b.ttt);
    // Half of the first burst: nothing new.
    assert!(t.send(dout(4, a.ttt, 0, 0, false), &pat(4, 0, 512)).is_empty());
    // The first burst completes: one new R2T.
    let o = t.send(dout(4, a.ttt, 1, 512, true), &pat(4, 512, 512));
    assert_eq!(o.len(), 1);
    let c = get!(&o[0], R2t);
    assert_eq!((c.r2t_sn, c.buffer_offset, c.desired_length), (2, 2048, 1024));
    let o = t.data_burst(4, b.ttt, 1024, 1024, 1024);
    let d = get!(&o[0], R2t);
    assert_eq!((d.r2t_sn, d.buffer_offset, d.desired_length), (3, 3072, 1024));
    let o = t.data_burst(4, c.ttt, 2048, 1024, 1024);
    let e = get!(&o[0], R2t);
    assert_eq!((e.r2t_sn, e.buffer_offset, e.desired_length), (4, 4096, 904));
    // The last two bursts in reverse order: done only when both are in.
    assert!(t.data_burst(4, e.ttt, 4096, 904, 1024).is_empty());
    let o = t.data_burst(4, d.ttt, 3072, 1024, 1024);
    assert_eq!(o.len(), 1);
    assert_eq!(&exec(&o[0]).data_out[..], &pat(4, 0, 5000)[..]);
    let o = t.complete(4, TaskOutcome { data_out_wanted: 5000, ..good() });
    assert_eq!(get!(&o[0], ScsiResponse).exp_data_sn, 5);
}

#[test]
fn write_with_extended_cdb_ahs() {
    let mut t = T::plain();
    let cdb: Vec<u8> = (0..32u8).map(|b| b ^ 0x7f).collect();
    let mut c = scsi(1, 1);
    c.cdb.copy_from_slice(&cdb[..16]);
    let pdu = wire(&t.p, &Header::ScsiCommand(c), &extended_cdb_ahs(&cdb), &[]);
    let o = outs(&t.p, t.conn.on_pdu(pdu));
    assert_eq!(exec(&o[0]).cdb, cdb);
}

// --- Data-Out violations ----------------------------------------------------

fn r2t_write(t: &mut T, itt: u32, sn: u32, edtl: u32) -> R2t {
    let o = t.send(write(itt, sn, edtl), &[]);
    assert_eq!(o.len(), 1);
    get!(&o[0], R2t)
}

fn solicit_only() -> T {
    T::with(|p| {
        p.initial_r2t = true;
        p.immediate_data = false;
    })
}

/// After a failed Data-Out the task is gone: more data for it is ignored,
/// and its ITT is free again.
fn assert_task_gone(t: &mut T, itt: u32, ttt: u32, next_sn: u32) {
    assert!(!t.conn.task_itts().contains(&itt));
    assert!(t.send(dout(itt, ttt, 1, 512, true), &pat(itt, 512, 512)).is_empty());
    assert!(t.send(dout(itt, NO_TAG, 0, 0, true), &pat(itt, 0, 512)).is_empty());
    assert!(t.complete(itt, good()).is_empty());
    let o = t.send(read(itt, next_sn, 0), &[]);
    assert_eq!(executes(&o), vec![itt]);
}

#[test]
fn data_out_with_wrong_data_sn_fails_the_task() {
    let mut t = solicit_only();
    let r2t = r2t_write(&mut t, 1, 1, 1024);
    let o = t.send(dout(1, r2t.ttt, 1, 0, false), &pat(1, 0, 512));
    assert_eq!(o.len(), 1);
    assert_check_condition(&o[0], 1, 0x0b, 0x4b, 0x00);
    let r = get!(&o[0], ScsiResponse);
    assert_eq!((r.overflow, r.underflow, r.residual, r.stat_sn), (false, false, 0, STAT0));
    assert_task_gone(&mut t, 1, r2t.ttt, 2);
}

#[test]
fn data_out_with_wrong_offset_fails_the_task() {
    let mut t = solicit_only();
    let r2t = r2t_write(&mut t, 1, 1, 1024);
    let o = t.send(dout(1, r2t.ttt, 0, 512, false), &pat(1, 512, 512));
    assert_check_condition(&o[0], 1, 0x0b, 0x4b, 0x05);
    assert_task_gone(&mut t, 1, r2t.ttt, 2);
}

#[test]
fn data_out_overrunning_its_r2t_fails_the_task() {
    let mut t = T::with(|p| {
        p.initial_r2t = true;
        p.immediate_data = false;
        p.max_burst_length = 1024;
    });
    let r2t = r2t_write(&mut t, 1, 1, 4096);
    let o = t.send(dout(1, r2t.ttt, 0, 0, true), &pat(1, 0, 1536));
    assert_check_condition(&o[0], 1, 0x0b, 0x4b, 0x05);
    assert_task_gone(&mut t, 1, r2t.ttt, 2);
}

#[test]
fn data_out_with_unknown_ttt_fails_the_task() {
    let mut t = solicit_only();
    let r2t = r2t_write(&mut t, 1, 1, 1024);
    let o = t.send(dout(1, r2t.ttt.wrapping_add(1000), 0, 0, true), &pat(1, 0, 1024));
    assert_check_condition(&o[0], 1, 0x0b, 0x4b, 0x01);
    assert_task_gone(&mut t, 1, r2t.ttt, 2);
}

#[test]
fn data_out_beyond_edtl_fails_the_task() {
    let mut t = solicit_only();
    let r2t = r2t_write(&mut t, 1, 1, 1024);
    let o = t.send(dout(1, r2t.ttt, 0, 512, true), &pat(1, 512, 1024));
    assert_check_condition(&o[0], 1, 0x0b, 0x4b, 0x02);
    assert_task_gone(&mut t, 1, r2t.ttt, 2);
    // Offset + length wrapping around 2^32 is "beyond EDTL" too.
    let r2t = r2t_write(&mut t, 3, 3, 1024);
    let o = t.send(dout(3, r2t.ttt, 0, u32::MAX - 10, true), &pat(3, 0, 512));
    assert_check_condition(&o[0], 3, 0x0b, 0x4b, 0x02);
}

#[test]
fn unsolicited_data_beyond_first_burst_fails_the_task() {
    let mut t = T::with(|p| {
        p.initial_r2t = false;
        p.immediate_data = true;
        p.first_burst_length = 2048;
    });
    let o = t.send(write(1, 1, 8192), &pat(1, 0, 1024));
    let r2t = get!(&o[0], R2t);
    assert_eq!((r2t.buffer_offset, r2t.desired_length), (2048, 6144));
    let o = t.send(dout(1, NO_TAG, 0, 1024, true), &pat(1, 1024, 2048));
    assert_check_condition(&o[0], 1, 0x0b, 0x4b, 0x05);
    assert_task_gone(&mut t, 1, r2t.ttt, 2);
}

#[test]
fn unsolicited_data_with_initial_r2t_yes_fails_the_task() {
    let mut t = solicit_only();
    let r2t = r2t_write(&mut t, 1, 1, 1024);
    let o = t.send(dout(1, NO_TAG, 0, 0, true), &pat(1, 0, 1024));
    assert_check_condition(&o[0], 1, 0x0b, 0x4b, 0x05);
    assert_task_gone(&mut t, 1, r2t.ttt, 2);
}

#[test]
fn unsolicited_data_with_wrong_data_sn_fails_the_task() {
    let mut t = T::with(|p| {
        p.initial_r2t = false;
        p.immediate_data = false;
    });
    assert!(t.send(write(1, 1, 2048), &[]).is_empty());
    let o = t.send(dout(1, NO_TAG, 5, 0, false), &pat(1, 0, 1024));
    assert_check_condition(&o[0], 1, 0x0b, 0x4b, 0x00);
}

#[test]
fn solicited_data_before_the_unsolicited_burst_fails_the_task() {
    // DataSequenceInOrder=Yes: the unsolicited sequence (offset 0) comes
    // before the solicited one (offset FirstBurstLength). Accepting the R2T
    // data first used to "complete" the write with a zero-filled hole.
    let mut t = T::with(|p| {
        p.initial_r2t = false;
        p.immediate_data = false;
        p.first_burst_length = 1024;
    });
    let o = t.send(write(1, 1, 2048), &[]);
    let r2t = get!(&o[0], R2t);
    assert_eq!((r2t.buffer_offset, r2t.desired_length), (1024, 1024));
    let o = t.send(dout(1, r2t.ttt, 0, 1024, true), &pat(1, 1024, 1024));
    assert_eq!(o.len(), 1, "{o:?}");
    assert_check_condition(&o[0], 1, 0x0b, 0x4b, 0x05);
    assert!(t.send(dout(1, NO_TAG, 0, 0, true), &pat(1, 0, 1024)).is_empty());
}

#[test]
fn data_out_for_an_unknown_task_is_ignored() {
    let mut t = T::plain();
    assert!(t.send(dout(77, NO_TAG, 0, 0, true), &pat(77, 0, 512)).is_empty());
    assert!(t.send(dout(77, 5, 0, 0, true), &pat(77, 0, 512)).is_empty());
    // Nor does Data-Out for a running (all data received) task do anything.
    t.send(read(1, 1, 512), &[]);
    assert!(t.send(dout(1, NO_TAG, 0, 0, true), &pat(1, 0, 512)).is_empty());
    assert_eq!(t.conn.tasks_in_flight(), 1);
}

#[test]
fn immediate_data_with_immediate_data_no_is_rejected() {
    let mut t = T::with(|p| p.immediate_data = false);
    let cmd = write(1, 1, 1024);
    let o = t.send(cmd.clone(), &pat(1, 0, 512));
    assert_eq!(o.len(), 1);
    let rj = get!(&o[0], Reject);
    assert_eq!(rj.reason, RejectReason::PROTOCOL_ERROR);
    assert_eq!(rj.stat_sn, STAT0);
    assert_eq!((rj.exp_cmd_sn, rj.max_cmd_sn, rj.data_sn), (2, 17, 0));
    // The data segment is the rejected header, byte for byte.
    assert_eq!(body(&o[0]), &bhs_of(&cmd, 512)[..]);
    assert_eq!(t.conn.tasks_in_flight(), 0);
}

#[test]
fn immediate_data_on_a_read_or_beyond_first_burst_is_rejected() {
    let mut t = T::with(|p| p.first_burst_length = 1024);
    let o = t.send(read(1, 1, 4096), &pat(1, 0, 512));
    assert_eq!(get!(&o[0], Reject).reason, RejectReason::PROTOCOL_ERROR);
    let o = t.send(write(2, 2, 4096), &pat(2, 0, 2048));
    assert_eq!(get!(&o[0], Reject).reason, RejectReason::PROTOCOL_ERROR);
    let o = t.send(write(3, 3, 256), &pat(3, 0, 512));
    assert_eq!(get!(&o[0], Reject).reason, RejectReason::PROTOCOL_ERROR);
    assert_eq!(t.conn.tasks_in_flight(), 0);
}

#[test]
fn duplicate_itt_is_rejected_task_in_progress() {
    let mut t = T::plain();
    t.send(read(1, 1, 512), &[]);
    let dup = read(1, 2, 512);
    let o = t.send(dup.clone(), &[]);
    assert_eq!(o.len(), 1);
    assert_eq!(get!(&o[0], Reject).reason, RejectReason::TASK_IN_PROGRESS);
    assert_eq!(body(&o[0]), &bhs_of(&dup, 0)[..]);
    // The original task is untouched.
    let o = t.complete(1, with_data(512));
    assert!(get!(&o[0], DataIn).has_status);
}

#[test]
fn write_larger_than_the_write_buffer_fails_without_r2t() {
    let mut t = T::new(
        SessionParams { initial_r2t: false, ..params() },
        TargetConnConfig { max_write_buffer: 4096, ..cfg(16) },
    );
    let o = t.send(write(1, 1, 8192), &pat(1, 0, 512));
    assert_eq!(o.len(), 1, "no R2T, just the response: {o:?}");
    assert_check_condition(&o[0], 1, 0x05, 0x0e, 0x03);
    let r = get!(&o[0], ScsiResponse);
    assert_eq!((r.overflow, r.underflow, r.residual), (false, false, 0));
    // The unsolicited data that follows is dropped.
    assert!(t.send(dout(1, NO_TAG, 0, 512, true), &pat(1, 512, 512)).is_empty());
    assert_eq!(t.conn.tasks_in_flight(), 0);
}

/// With a write budget, a write whose data must be collected reserves its
/// EDTL; one that does not fit gets TASK SET FULL (no sense, no R2T, its
/// unsolicited data ignored); the reservation travels with the data handed
/// to the daemon and ends when that is dropped.
#[test]
fn write_budget_answers_task_set_full_and_travels_with_the_data() {
    let budget = crate::budget::WriteBudget::new(8192);
    let mut t = T::new(SessionParams { initial_r2t: false, first_burst_length: 65536, ..params() }, cfg(16));
    t.conn.set_write_budget(budget.clone());
    assert!(t.send(write(1, 1, 8192), &pat(1, 0, 512)).is_empty(), "waiting for unsolicited data");
    assert_eq!(budget.used(), 8192);
    let o = t.send(write(2, 2, 512), &[]);
    assert_eq!(o.len(), 1, "just the response: {o:?}");
    let r = get!(&o[0], ScsiResponse);
    assert_eq!((r.itt, r.status, r.residual), (2, 0x28, 0), "TASK SET FULL");
    assert!(body(&o[0]).is_empty(), "no sense data");
    assert!(t.send(dout(2, NO_TAG, 0, 0, true), &pat(2, 0, 512)).is_empty(), "its data is ignored");
    // All-immediate writes need no collecting and are not charged.
    let o = t.send(write(3, 3, 512), &pat(3, 0, 512));
    assert_eq!(exec(&o[0]).itt, 3);
    let o = t.send(dout(1, NO_TAG, 0, 512, true), &pat(1, 512, 7680));
    let task = exec(&o[0]).clone();
    assert_eq!(&task.data_out[..], &pat(1, 0, 8192)[..]);
    drop(o);
    assert_eq!(budget.used(), 8192, "held while the data is");
    let copy = task.data_out.clone();
    drop(task);
    assert_eq!(budget.used(), 8192, "a clone of the data still holds it");
    drop(copy);
    assert_eq!(budget.used(), 0, "released with the data");
    // Room again.
    assert!(t.send(write(4, 4, 4096), &pat(4, 0, 512)).is_empty());
    assert_eq!(budget.used(), 4096);
    drop(t);
    assert_eq!(budget.used(), 0, "a dropped connection gives its reservations back");
}

/// Two sessions (connections) whose budgets are shares of one daemon-wide
/// budget, as the daemon sets them up.
fn two_sessions(daemon: &std::sync::Arc<crate::budget::WriteBudget>, share: u64, read: bool) -> (T, T) {
    let mut a = solicit_only();
    let mut b = solicit_only();
    for t in [&mut a, &mut b] {
        let s = daemon.share(share, "session");
        if read {
            t.conn.set_read_budget(s);
        } else {
            t.conn.set_write_budget(s);
        }
    }
    (a, b)
}

/// A TASK SET FULL answer to `itt` (no sense, nothing else), and the one
/// refusal the connection reports for it, naming the budget.
fn assert_task_set_full(t: &mut T, o: &[Out], itt: u32, write: bool, limit: &str) {
    assert_eq!(o.len(), 1, "just the response: {o:?}");
    let r = get!(&o[0], ScsiResponse);
    assert_eq!((r.itt, r.status), (itt, 0x28), "TASK SET FULL");
    assert!(body(&o[0]).is_empty(), "no sense data");
    let refusals = t.conn.take_refusals();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!((refusals[0].itt, refusals[0].write, refusals[0].limit), (itt, write, limit));
    assert!(t.conn.take_refusals().is_empty(), "taken");
}

/// One session cannot take the whole write budget: past its share its
/// writes get TASK SET FULL while another session's are still accepted;
/// the daemon-wide bound holds over all the shares.
#[test]
fn a_sessions_write_share_leaves_the_rest_of_the_budget_to_other_sessions() {
    let daemon = crate::budget::WriteBudget::named(12288, "daemon");
    let (mut a, mut b) = two_sessions(&daemon, 8192, false);
    let ra = r2t_write(&mut a, 1, 1, 8192);
    assert_eq!(daemon.used(), 8192);
    let o = a.send(write(2, 2, 512), &[]);
    assert_task_set_full(&mut a, &o, 2, true, "session");
    assert_eq!(a.conn.refusals_total(), 1);
    // The other session still gets its writes, up to what is left daemon-wide.
    r2t_write(&mut b, 1, 1, 4096);
    assert_eq!(daemon.used(), 12288);
    let o = b.send(write(2, 2, 512), &[]);
    assert_task_set_full(&mut b, &o, 2, true, "daemon");
    // a's write completes and runs: its share and the daemon's come back
    // with its data.
    let o = a.data_burst(1, ra.ttt, 0, 8192, 4096);
    let task = exec(&o[0]).clone();
    drop(o);
    assert_eq!(daemon.used(), 12288);
    drop(task);
    assert_eq!(daemon.used(), 4096);
    r2t_write(&mut b, 3, 3, 4096);
    assert_eq!(daemon.used(), 8192);
    drop((a, b));
    assert_eq!(daemon.used(), 0);
}

/// Reads hold their Expected Data Transfer Length of the read budget from
/// before they execute until their Data-In is gone; one session's share
/// leaves room for another's, the daemon-wide bound holds, and a read that
/// does not fit gets TASK SET FULL without executing.
#[test]
fn reads_are_charged_to_a_session_share_of_the_read_budget_until_their_data_in_is_sent() {
    let daemon = crate::budget::WriteBudget::named(12288, "daemon");
    let (mut a, mut b) = two_sessions(&daemon, 8192, true);
    assert_eq!(executes(&a.send(read(1, 1, 8192), &[])), vec![1]);
    assert_eq!(daemon.used(), 8192);
    let o = a.send(read(2, 2, 512), &[]);
    assert_task_set_full(&mut a, &o, 2, false, "session");
    assert_eq!(a.conn.tasks_in_flight(), 1, "the refused read does not run");
    // Commands without data-in are not charged.
    assert_eq!(executes(&a.send(tur(3, 3), &[])), vec![3]);
    assert_eq!(executes(&a.send(read(4, 4, 0), &[])), vec![4]);
    assert_eq!(executes(&b.send(read(1, 1, 4096), &[])), vec![1]);
    assert_eq!(daemon.used(), 12288);
    let o = b.send(read(2, 2, 512), &[]);
    assert_task_set_full(&mut b, &o, 2, false, "daemon");
    // a's read completes: the reservation lives as long as its Data-In PDUs.
    let data = a.conn.complete(1, with_data(8192));
    assert!(!data.is_empty());
    assert_eq!(daemon.used(), 12288, "held until the Data-In is sent");
    drop(data);
    assert_eq!(daemon.used(), 4096, "given back once it has been");
    // An error without data gives it back at once; so does an abort.
    assert_eq!(executes(&a.send(read(5, 5, 8192), &[])), vec![5]);
    let o = a.complete(5, TaskOutcome { status: 0x02, sense: Some(vec![0x70, 0, 5]), ..good() });
    assert_eq!(get!(&o[0], ScsiResponse).status, 0x02);
    assert_eq!(daemon.used(), 4096);
    assert_eq!(executes(&a.send(read(6, 6, 8192), &[])), vec![6]);
    assert_eq!(daemon.used(), 12288);
    let o = a.send(tmf(0x100, 7, TmfFunction::ABORT_TASK, LUN0, 6), &[]);
    assert!(matches!(&o[0], Out::Cancel(v) if v == &[6]), "{o:?}");
    assert_eq!(daemon.used(), 4096, "an aborted read gives its share back");
    drop(b);
    assert_eq!(daemon.used(), 0, "a dropped connection gives its reservations back");
}

#[test]
fn bidirectional_commands_fail_with_check_condition() {
    let mut t = T::plain();
    let mut c = scsi(1, 1);
    c.read = true;
    c.write = true;
    c.expected_data_length = 512;
    let o = t.send(Header::ScsiCommand(c), &[]);
    assert_eq!(o.len(), 1);
    assert_check_condition(&o[0], 1, 0x05, 0x24, 0x00);
    assert_eq!(t.conn.tasks_in_flight(), 0);
}

// ---------------------------------------------------------------------------
// Data-In (RFC 7143 §11.7) and residuals (§11.4.5)
// ---------------------------------------------------------------------------

/// (offset, length, F, S) of each Data-In, checking ITT, TTT and DataSN.
fn data_ins(o: &[Out], itt: u32) -> Vec<(u32, usize, bool, bool)> {
    o.iter()
        .filter(|o| matches!(hdr(o), Header::DataIn(_)))
        .enumerate()
        .map(|(i, o)| {
            let d = get!(o, DataIn);
            assert_eq!((d.itt, d.ttt, d.data_sn), (itt, NO_TAG, i as u32));
            assert!(!d.ack);
            assert!(!d.has_status || d.final_, "S without F");
            (d.buffer_offset, body(o).len(), d.final_, d.has_status)
        })
        .collect()
}

fn read_payload(o: &[Out]) -> Vec<u8> {
    let mut v = Vec::new();
    for o in o.iter().filter(|o| matches!(hdr(o), Header::DataIn(_))) {
        assert_eq!(get!(o, DataIn).buffer_offset as usize, v.len());
        v.extend_from_slice(body(o));
    }
    v
}

#[test]
fn data_in_is_split_by_mrdsl_with_status_collapsed_into_the_last() {
    let mut t = T::with(|p| p.initiator_max_recv_data_segment_length = 1024);
    t.send(read(1, 1, 2500), &[]);
    let out = with_data(2500);
    let o = t.complete(1, out.clone());
    assert_eq!(o.len(), 3, "no separate SCSI Response");
    assert_eq!(data_ins(&o, 1), vec![(0, 1024, false, false), (1024, 1024, false, false), (2048, 452, true, true)]);
    assert_eq!(read_payload(&o), &out.data_in[..]);
    let last = get!(&o[2], DataIn);
    assert_eq!((last.status, last.overflow, last.underflow, last.residual), (0, false, false, 0));
    assert_eq!((last.stat_sn, last.exp_cmd_sn, last.max_cmd_sn), (STAT0, 2, 17));
    assert_eq!(t.conn.tasks_in_flight(), 0);
}

#[test]
fn data_in_f_bit_at_each_max_burst_boundary() {
    let mut t = T::with(|p| {
        p.initiator_max_recv_data_segment_length = 1024;
        p.max_burst_length = 2048;
    });
    t.send(read(1, 1, 5000), &[]);
    let o = t.complete(1, with_data(5000));
    assert_eq!(
        data_ins(&o, 1),
        vec![
            (0, 1024, false, false),
            (1024, 1024, true, false),
            (2048, 1024, false, false),
            (3072, 1024, true, false),
            (4096, 904, true, true),
        ]
    );
}

#[test]
fn data_in_sequences_never_exceed_max_burst_when_it_is_not_a_multiple_of_mrdsl() {
    let mut t = T::with(|p| {
        p.initiator_max_recv_data_segment_length = 4096;
        p.max_burst_length = 6144;
    });
    t.send(read(1, 1, 12288), &[]);
    let out = with_data(12288);
    let o = t.complete(1, out.clone());
    assert_eq!(
        data_ins(&o, 1),
        vec![(0, 4096, false, false), (4096, 2048, true, false), (6144, 4096, false, false), (10240, 2048, true, true)]
    );
    assert_eq!(read_payload(&o), &out.data_in[..]);
}

#[test]
fn data_in_sequences_never_exceed_max_burst_smaller_than_mrdsl() {
    let mut t = T::with(|p| {
        p.initiator_max_recv_data_segment_length = 8192;
        p.max_burst_length = 2048;
    });
    t.send(read(1, 1, 5000), &[]);
    let o = t.complete(1, with_data(5000));
    assert_eq!(data_ins(&o, 1), vec![(0, 2048, true, false), (2048, 2048, true, false), (4096, 904, true, true)]);
}

#[test]
fn check_condition_after_data_goes_in_a_separate_response_with_sense() {
    let mut t = T::with(|p| p.initiator_max_recv_data_segment_length = 1024);
    t.send(read(1, 1, 2048), &[]);
    let s = transport_sense(0x03, 0x11, 0x00);
    let o = t.complete(1, TaskOutcome { status: 0x02, sense: Some(s.clone()), ..with_data(1500) });
    assert_eq!(o.len(), 3);
    assert_eq!(data_ins(&o, 1), vec![(0, 1024, false, false), (1024, 476, true, false)]);
    for d in &o[..2] {
        assert_eq!(get!(d, DataIn).stat_sn, STAT0, "Data-In without status does not take a StatSN");
    }
    let r = get!(&o[2], ScsiResponse);
    assert_eq!((r.itt, r.status, r.response, r.stat_sn), (1, 0x02, 0, STAT0));
    assert_eq!((r.underflow, r.overflow, r.residual), (true, false, 548));
    assert_eq!(r.exp_data_sn, 2, "ExpDataSN = number of Data-In sent");
    let mut want = vec![0, 18];
    want.extend_from_slice(&s);
    assert_eq!(body(&o[2]), &want[..]);
    assert_eq!(sense(&o[2]), (0x03, 0x11, 0x00));
}

#[test]
fn good_status_with_sense_is_not_collapsed() {
    let mut t = T::plain();
    t.send(read(1, 1, 512), &[]);
    let o = t.complete(1, TaskOutcome { sense: Some(transport_sense(0x01, 0x5d, 0x00)), ..with_data(512) });
    assert_eq!(o.len(), 2);
    assert_eq!(data_ins(&o, 1), vec![(0, 512, true, false)]);
    let r = get!(&o[1], ScsiResponse);
    assert_eq!((r.status, r.exp_data_sn), (0, 1));
    assert_eq!(sense(&o[1]), (0x01, 0x5d, 0x00));
}

#[test]
fn condition_met_is_collapsed_and_busy_is_not() {
    let mut t = T::plain();
    t.send(read(1, 1, 512), &[]);
    let o = t.complete(1, TaskOutcome { status: 0x04, ..with_data(512) });
    assert_eq!(o.len(), 1);
    assert_eq!(get!(&o[0], DataIn).status, 0x04);
    t.send(read(2, 2, 512), &[]);
    let o = t.complete(2, TaskOutcome { status: 0x08, ..with_data(512) });
    assert_eq!(o.len(), 2);
    assert_eq!(get!(&o[1], ScsiResponse).status, 0x08);
    assert!(body(&o[1]).is_empty(), "no sense, no data segment");
}

#[test]
fn long_sense_is_cut_to_fit_mrdsl() {
    let mut t = T::with(|p| p.initiator_max_recv_data_segment_length = 512);
    t.send(tur(1, 1), &[]);
    let o = t.complete(1, TaskOutcome { status: 0x02, sense: Some(vec![0x70; 2000]), ..good() });
    assert_eq!(body(&o[0]).len(), 512);
    assert_eq!(&body(&o[0])[..2], &[0x01, 0xfe]);
}

#[test]
fn command_without_data_gets_a_plain_scsi_response() {
    let mut t = T::plain();
    t.send(tur(1, 1), &[]);
    let o = t.complete(1, good());
    assert_eq!(o.len(), 1);
    let r = get!(&o[0], ScsiResponse);
    assert_eq!(r, ScsiResponse { itt: 1, stat_sn: STAT0, exp_cmd_sn: 2, max_cmd_sn: 17, ..ScsiResponse::default() });
}

#[test]
fn read_overflow_truncates_to_edtl() {
    let mut t = T::plain();
    t.send(read(1, 1, 1000), &[]);
    let out = with_data(1500);
    let o = t.complete(1, out.clone());
    assert_eq!(read_payload(&o), &out.data_in[..1000]);
    let d = get!(o.last().unwrap(), DataIn);
    assert!(d.has_status);
    assert_eq!((d.overflow, d.underflow, d.residual), (true, false, 500));
}

#[test]
fn read_underflow() {
    let mut t = T::plain();
    t.send(read(1, 1, 4096), &[]);
    let o = t.complete(1, with_data(1000));
    assert_eq!(read_payload(&o).len(), 1000);
    let d = get!(o.last().unwrap(), DataIn);
    assert_eq!((d.overflow, d.underflow, d.residual), (false, true, 3096));
    // With no data at all, the residual is in the SCSI Response.
    t.send(read(2, 2, 4096), &[]);
    let o = t.complete(2, good());
    let r = get!(&o[0], ScsiResponse);
    assert_eq!((r.overflow, r.underflow, r.residual, r.exp_data_sn), (false, true, 4096, 0));
}

#[test]
fn write_residuals_compare_data_out_wanted_with_edtl() {
    let mut t = T::plain();
    for (itt, edtl, wanted, o_bit, u_bit, residual) in [
        (1u32, 1024u32, 512u32, false, true, 512u32),
        (2, 512, 1024, true, false, 512),
        (3, 1024, 1024, false, false, 0),
    ] {
        let o = t.send(write(itt, itt, edtl), &pat(itt, 0, edtl as usize));
        assert_eq!(executes(&o), vec![itt]);
        let o = t.complete(itt, TaskOutcome { data_out_wanted: wanted, ..good() });
        assert_eq!(o.len(), 1);
        let r = get!(&o[0], ScsiResponse);
        assert_eq!((r.overflow, r.underflow, r.residual), (o_bit, u_bit, residual), "itt {itt}");
    }
    // A CDB transferring nothing under a non-zero EDTL: all of it is residual.
    t.send(write(4, 4, 512), &pat(4, 0, 512));
    let r = get!(&t.complete(4, good())[0], ScsiResponse);
    assert_eq!((r.overflow, r.underflow, r.residual), (false, true, 512));
}

#[test]
fn data_from_a_command_without_the_r_bit_is_overflow() {
    let mut t = T::plain();
    t.send(tur(1, 1), &[]);
    let o = t.complete(1, with_data(36));
    assert_eq!(o.len(), 1, "no Data-In without the R bit");
    let r = get!(&o[0], ScsiResponse);
    assert_eq!((r.status, r.overflow, r.underflow, r.residual), (0, true, false, 36));
}

// ---------------------------------------------------------------------------
// Task management (RFC 7143 §11.5, §11.6)
// ---------------------------------------------------------------------------

#[test]
fn abort_task_on_a_running_task() {
    let mut t = T::new(params(), cfg(2));
    t.send(read(1, 1, 512), &[]);
    t.send(read(2, 2, 512), &[]);
    assert_eq!(t.conn.max_cmd_sn(), 2);
    let o = t.send(tmf(0x100, 3, TmfFunction::ABORT_TASK, LUN0, 1), &[]);
    assert_eq!(o.len(), 2, "{o:?}");
    assert!(matches!(&o[0], Out::Cancel(v) if v == &[1]));
    match &o[1] {
        Out::Tmf(tm) => assert_eq!(
            tm,
            &TaskManagement { itt: 0x100, function: TmfFunction::ABORT_TASK, lun: LUN0, aborted: vec![1] }
        ),
        other => panic!("{other:?}"),
    }
    // The aborted task's slot is free; its result, when it comes, is dropped.
    assert_eq!(t.conn.max_cmd_sn(), 3);
    assert!(t.complete(1, with_data(512)).is_empty());
    // The TMF response goes out only when the daemon is done.
    let o = t.tmf_done(0x100, TmfResponse::COMPLETE);
    assert_eq!(o.len(), 1);
    let r = get!(&o[0], TaskMgmtResponse);
    assert_eq!(
        r,
        TaskMgmtResponse { response: TmfResponse::COMPLETE, itt: 0x100, stat_sn: STAT0, exp_cmd_sn: 3, max_cmd_sn: 3 }
    );
    // The other task is untouched.
    assert_eq!(get!(&t.complete(2, good())[0], ScsiResponse).stat_sn, STAT0 + 1);
}

#[test]
fn abort_task_on_an_unknown_itt_answers_at_once() {
    let mut t = T::plain();
    let o = t.send(tmf(0x100, 1, TmfFunction::ABORT_TASK, LUN0, 42), &[]);
    assert_eq!(o.len(), 1);
    let r = get!(&o[0], TaskMgmtResponse);
    assert_eq!((r.response, r.itt, r.stat_sn), (TmfResponse::TASK_DOES_NOT_EXIST, 0x100, STAT0));
}

/// ABORT TASK naming RefCmdSN `ref_cmd_sn` (RFC 7143 §11.5.1).
fn abort_ref(itt: u32, cmd_sn: u32, rtt: u32, ref_cmd_sn: u32) -> Header {
    let mut h = tmf(itt, cmd_sn, TmfFunction::ABORT_TASK, LUN0, rtt);
    if let Header::TaskMgmtRequest(r) = &mut h {
        r.ref_cmd_sn = ref_cmd_sn;
    }
    h
}

fn tmf_answer(o: &[Out]) -> (TmfResponse, u32) {
    assert_eq!(o.len(), 1, "expected only the TMF response, got {o:?}");
    let r = get!(&o[0], TaskMgmtResponse);
    (r.response, r.itt)
}

#[test]
fn abort_task_for_a_command_not_yet_received_completes_and_drops_it() {
    // RFC 7143 §11.6.1 b): the Referenced Task Tag names no task but
    // RefCmdSN is inside the CmdSN window and before the TMF's own CmdSN:
    // the CmdSN counts as received, the answer is Function Complete, and the
    // command, should it arrive after all, is not executed.
    let mut t = T::plain();
    // The very next CmdSN (1) is the one aborted: ExpCmdSN moves past it.
    let o = t.send(abort_ref(0x100, 2, 7, 1), &[]);
    assert_eq!(tmf_answer(&o), (TmfResponse::COMPLETE, 0x100));
    assert_eq!(t.conn.exp_cmd_sn(), 2, "CmdSN 1 counts as received");
    assert!(t.send(read(7, 1, 512), &[]).is_empty(), "the aborted command arrives late: dropped");
    assert_eq!(executes(&t.send(read(8, 2, 512), &[])), vec![8]);
    assert!(t.complete(7, with_data(512)).is_empty());

    // A CmdSN inside the window, after a gap: it is skipped in its turn and
    // a late copy of it is never held or run.
    let o = t.send(abort_ref(0x101, 5, 9, 4), &[]);
    assert_eq!(tmf_answer(&o), (TmfResponse::COMPLETE, 0x101));
    assert_eq!(t.conn.exp_cmd_sn(), 3);
    assert!(t.send(read(9, 4, 512), &[]).is_empty(), "aborted: not held for execution");
    let o = t.send(read(10, 3, 512), &[]);
    assert_eq!(executes(&o), vec![10], "CmdSN 4 was skipped, not run");
    assert_eq!(t.conn.exp_cmd_sn(), 5);
    assert_eq!(executes(&t.send(read(11, 5, 512), &[])), vec![11]);

    // A command that arrived early (held) and is aborted before its turn.
    assert!(t.send(read(12, 7, 512), &[]).is_empty());
    let o = t.send(abort_ref(0x102, 8, 12, 7), &[]);
    assert_eq!(tmf_answer(&o), (TmfResponse::COMPLETE, 0x102));
    assert_eq!(executes(&t.send(read(13, 6, 512), &[])), vec![13]);
    assert_eq!(t.conn.exp_cmd_sn(), 8, "the held, aborted CmdSN 7 is consumed without running");

    // Outside the window (already received, or beyond MaxCmdSN), or not
    // before the TMF's own CmdSN: Task Does Not Exist, nothing skipped.
    let o = t.send(abort_ref(0x103, 8, 50, 3), &[]);
    assert_eq!(tmf_answer(&o), (TmfResponse::TASK_DOES_NOT_EXIST, 0x103));
    let max = t.conn.max_cmd_sn();
    let o = t.send(abort_ref(0x104, max.wrapping_add(2), 51, max.wrapping_add(1)), &[]);
    assert_eq!(tmf_answer(&o), (TmfResponse::TASK_DOES_NOT_EXIST, 0x104));
    let o = t.send(abort_ref(0x105, 8, 52, 8), &[]);
    assert_eq!(tmf_answer(&o), (TmfResponse::TASK_DOES_NOT_EXIST, 0x105));
    assert_eq!(t.conn.exp_cmd_sn(), 8);
    assert_eq!(executes(&t.send(read(14, 8, 512), &[])), vec![14]);
}

#[test]
fn abort_task_on_a_collecting_write_drops_later_data() {
    let mut t = solicit_only();
    let r2t = r2t_write(&mut t, 1, 1, 1024);
    let o = t.send(tmf(0x100, 2, TmfFunction::ABORT_TASK, LUN0, 1), &[]);
    assert!(matches!(&o[0], Out::Cancel(v) if v == &[1]));
    assert!(matches!(&o[1], Out::Tmf(tm) if tm.aborted == [1]));
    assert!(t.send(dout(1, r2t.ttt, 0, 0, true), &pat(1, 0, 1024)).is_empty());
    assert_eq!(t.conn.tasks_in_flight(), 0);
}

#[test]
fn lun_reset_aborts_only_that_luns_tasks() {
    let mut t = T::plain();
    t.send(on_lun(read(1, 1, 512), LUN0), &[]);
    t.send(on_lun(read(2, 2, 512), LUN1), &[]);
    t.send(on_lun(tur(3, 3), LUN1), &[]);
    let o = t.send(on_lun(write(4, 4, 4096), LUN1), &[]);
    assert!(matches!(hdr(&o[0]), Header::R2t(r) if r.lun == LUN1));
    t.send(on_lun(tur(5, 5), LUN0), &[]);
    let o = t.send(tmf(0x100, 6, TmfFunction::LOGICAL_UNIT_RESET, LUN1, NO_TAG), &[]);
    assert_eq!(o.len(), 2);
    match (&o[0], &o[1]) {
        (Out::Cancel(c), Out::Tmf(tm)) => {
            assert_eq!(sorted(c.clone()), vec![2, 3, 4]);
            assert_eq!((tm.itt, tm.function, tm.lun), (0x100, TmfFunction::LOGICAL_UNIT_RESET, LUN1));
            assert_eq!(sorted(tm.aborted.clone()), vec![2, 3, 4]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sorted(t.conn.task_itts()), vec![1, 5]);
    for itt in [2, 3, 4] {
        assert!(t.complete(itt, good()).is_empty());
    }
    assert_eq!(t.complete(1, good()).len(), 1);
    assert_eq!(t.complete(5, good()).len(), 1);
    let r = get!(&t.tmf_done(0x100, TmfResponse::COMPLETE)[0], TaskMgmtResponse);
    assert_eq!((r.itt, r.response, r.stat_sn), (0x100, TmfResponse::COMPLETE, STAT0 + 2));
}

#[test]
fn lun_reset_with_no_tasks_still_goes_to_the_daemon() {
    let mut t = T::plain();
    let o = t.send(tmf(0x100, 1, TmfFunction::LOGICAL_UNIT_RESET, LUN1, NO_TAG), &[]);
    assert_eq!(o.len(), 1);
    assert!(matches!(&o[0], Out::Tmf(tm) if tm.aborted.is_empty() && tm.lun == LUN1));
}

#[test]
fn other_task_management_functions() {
    let mut t = T::plain();
    t.send(on_lun(read(1, 1, 512), LUN0), &[]);
    t.send(on_lun(read(2, 2, 512), LUN1), &[]);
    // CLEAR ACA: nothing to do.
    let o = t.send(tmf(0x100, 3, TmfFunction::CLEAR_ACA, LUN0, NO_TAG), &[]);
    assert_eq!(get!(&o[0], TaskMgmtResponse).response, TmfResponse::COMPLETE);
    // TASK REASSIGN (and unknown functions): not supported at ERL 0.
    let o = t.send(tmf(0x101, 3, TmfFunction::TASK_REASSIGN, LUN0, 1), &[]);
    assert_eq!(get!(&o[0], TaskMgmtResponse).response, TmfResponse::NOT_SUPPORTED);
    let o = t.send(tmf(0x102, 3, TmfFunction(0x55), LUN0, 1), &[]);
    assert_eq!(get!(&o[0], TaskMgmtResponse).response, TmfResponse::NOT_SUPPORTED);
    assert_eq!(t.conn.tasks_in_flight(), 2);
    // ABORT TASK SET: that LUN only.
    let o = t.send(tmf(0x103, 3, TmfFunction::ABORT_TASK_SET, LUN1, NO_TAG), &[]);
    assert!(matches!(&o[0], Out::Cancel(v) if v == &[2]));
    // TARGET WARM RESET: everything.
    t.send(on_lun(read(3, 3, 512), LUN1), &[]);
    let o = t.send(tmf(0x104, 4, TmfFunction::TARGET_WARM_RESET, LUN0, NO_TAG), &[]);
    assert!(matches!(&o[0], Out::Cancel(v) if sorted(v.clone()) == [1, 3]));
    assert_eq!(t.conn.tasks_in_flight(), 0);
}

#[test]
fn completion_of_a_task_that_is_not_running_is_ignored() {
    // A stale completion (say, of an aborted task whose ITT the initiator has
    // reused for a new write) must not destroy the task collecting data.
    let mut t = solicit_only();
    let r2t = r2t_write(&mut t, 1, 1, 1024);
    assert!(t.complete(1, good()).is_empty());
    assert_eq!(t.conn.tasks_in_flight(), 1);
    let o = t.data_burst(1, r2t.ttt, 0, 1024, 1024);
    assert_eq!(executes(&o), vec![1]);
    assert!(t.complete(99, good()).is_empty());
}

// ---------------------------------------------------------------------------
// NOP (RFC 7143 §11.18, §11.19)
// ---------------------------------------------------------------------------

#[test]
fn nop_out_with_itt_is_answered_with_its_data() {
    let mut t = T::plain();
    let o = t.send(nop_out(0x40, NO_TAG, 1), b"ping data");
    assert_eq!(o.len(), 1);
    let n = get!(&o[0], NopIn);
    assert_eq!(n, NopIn { lun: LUN1, itt: 0x40, ttt: NO_TAG, stat_sn: STAT0, exp_cmd_sn: 2, max_cmd_sn: 17 });
    assert_eq!(body(&o[0]), b"ping data");
    assert_eq!(t.conn.exp_cmd_sn(), 2, "a non-immediate NOP-Out takes a CmdSN");
}

#[test]
fn nop_in_echo_is_limited_to_the_initiators_mrdsl() {
    let mut t = T::with(|p| {
        p.initiator_max_recv_data_segment_length = 512;
        p.target_max_recv_data_segment_length = 8192;
    });
    let data = pat(0x40, 0, 3000);
    let o = t.send(as_immediate(nop_out(0x40, NO_TAG, 1)), &data);
    assert_eq!(body(&o[0]), &data[..512]);
}

#[test]
fn ping_and_pong() {
    let mut t = T::plain();
    assert!(!t.conn.ping_outstanding());
    let o = outs(&t.p, vec![t.conn.ping().expect("a ping")]);
    let n = get!(&o[0], NopIn);
    assert_eq!((n.itt, n.lun, n.stat_sn, n.exp_cmd_sn, n.max_cmd_sn), (NO_TAG, LUN0, STAT0, 1, 16));
    assert_ne!(n.ttt, NO_TAG);
    assert!(body(&o[0]).is_empty());
    assert!(t.conn.ping_outstanding());
    assert!(t.conn.ping().is_none(), "one ping at a time");
    // A NOP-Out with another TTT is not the answer.
    assert!(t.send(as_immediate(nop_out(NO_TAG, n.ttt ^ 1, 1)), &[]).is_empty());
    assert!(t.conn.ping_outstanding());
    // The answer: ITT ffffffff, our TTT. No reply, no CmdSN.
    assert!(t.send(as_immediate(nop_out(NO_TAG, n.ttt, 1)), &[]).is_empty());
    assert!(!t.conn.ping_outstanding());
    assert_eq!(t.conn.exp_cmd_sn(), 1);
    let o = outs(&t.p, vec![t.conn.ping().expect("a new ping")]);
    assert_ne!(get!(&o[0], NopIn).ttt, n.ttt);
}

// ---------------------------------------------------------------------------
// Text (RFC 7143 §11.10, §11.11)
// ---------------------------------------------------------------------------

fn send_targets_text(n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    let mut i = 0;
    while v.len() < n {
        v.extend_from_slice(format!("TargetName=iqn.2024-01.org.oxcopy:disk{i}\0").as_bytes());
        v.extend_from_slice(format!("TargetAddress=192.0.2.{}:3260,1\0", i % 250).as_bytes());
        i += 1;
    }
    v.truncate(n);
    v
}

#[test]
fn send_targets_longer_than_mrdsl_is_continued() {
    let st = send_targets_text(3000);
    let p = SessionParams {
        initiator_max_recv_data_segment_length: 1024,
        session_type: SessionType::Discovery,
        target_name: None,
        ..params()
    };
    let mut t = T::new(p, TargetConnConfig { send_targets: st.clone(), ..cfg(16) });
    let mut got = Vec::new();
    let mut ttt = NO_TAG;
    let mut seen = HashSet::new();
    for (i, (len, more)) in [(1024usize, true), (1024, true), (952, false)].into_iter().enumerate() {
        let req = if i == 0 { b"SendTargets=All\0".to_vec() } else { Vec::new() };
        let o = t.send(text(0x77, ttt, 1 + i as u32), &req);
        assert_eq!(o.len(), 1);
        let r = get!(&o[0], TextResponse);
        assert_eq!((r.itt, r.lun, r.final_, r.continue_), (0x77, LUN0, !more, more));
        assert_eq!((r.stat_sn, r.exp_cmd_sn, r.max_cmd_sn), (STAT0 + i as u32, 2 + i as u32, 17 + i as u32));
        assert_eq!(body(&o[0]).len(), len);
        if more {
            assert_ne!(r.ttt, NO_TAG);
            assert!(seen.insert(r.ttt));
        } else {
            assert_eq!(r.ttt, NO_TAG);
        }
        ttt = r.ttt;
        got.extend_from_slice(body(&o[0]));
    }
    assert_eq!(got, st);
}

#[test]
fn text_continuation_with_a_stale_ttt_is_rejected() {
    let st = send_targets_text(3000);
    let p = SessionParams { initiator_max_recv_data_segment_length: 1024, ..params() };
    let mut t = T::new(p, TargetConnConfig { send_targets: st, ..cfg(16) });
    let o = t.send(text(0x77, NO_TAG, 1), b"SendTargets=All\0");
    let ttt = get!(&o[0], TextResponse).ttt;
    let bad = text(0x77, ttt ^ 0x100, 2);
    let o = t.send(bad.clone(), &[]);
    assert_eq!(get!(&o[0], Reject).reason, RejectReason::PROTOCOL_ERROR);
    assert_eq!(body(&o[0]), &bhs_of(&bad, 0)[..]);
    // A new request (TTT ffffffff) starts over.
    let o = t.send(text(0x78, NO_TAG, 3), b"SendTargets=All\0");
    assert!(get!(&o[0], TextResponse).continue_);
}

#[test]
fn unknown_text_keys_are_not_understood() {
    let st = b"TargetName=iqn.x\0".to_vec();
    let mut t = T::new(params(), TargetConnConfig { send_targets: st.clone(), ..cfg(16) });
    let o = t.send(text(0x77, NO_TAG, 1), b"Foo=Bar\0X-com.example.thing=1\0SendTargets=All\0junk\0");
    let r = get!(&o[0], TextResponse);
    assert!(r.final_ && !r.continue_);
    let mut want = b"Foo=NotUnderstood\0X-com.example.thing=NotUnderstood\0".to_vec();
    want.extend_from_slice(&st);
    assert_eq!(body(&o[0]), &want[..]);
    // Nothing discoverable: an empty final response.
    let mut t = T::plain();
    let o = t.send(text(0x77, NO_TAG, 1), b"SendTargets=All\0");
    assert!(body(&o[0]).is_empty());
    assert!(get!(&o[0], TextResponse).final_);
}

// ---------------------------------------------------------------------------
// Logout, Reject, discovery, digests
// ---------------------------------------------------------------------------

#[test]
fn logout_cancels_in_flight_tasks_answers_and_closes() {
    let mut t = solicit_only();
    t.send(read(1, 1, 512), &[]);
    let r2t = r2t_write(&mut t, 2, 2, 1024);
    assert!(t.send(read(3, 4, 512), &[]).is_empty(), "held");
    let o = t.send(logout(0x50, 3, LogoutReason::CLOSE_SESSION), &[]);
    assert_eq!(o.len(), 3, "{o:?}");
    assert!(matches!(&o[0], Out::Cancel(v) if sorted(v.clone()) == [1, 2]));
    let r = get!(&o[1], LogoutResponse);
    assert_eq!(
        r,
        LogoutResponse {
            response: LogoutResponseCode::SUCCESS,
            itt: 0x50,
            stat_sn: STAT0,
            exp_cmd_sn: 4,
            max_cmd_sn: 19,
            time2wait: 0,
            time2retain: 0
        }
    );
    assert!(matches!(o[2], Out::Close));
    assert_eq!(t.conn.tasks_in_flight(), 0);
    // Nothing more happens on this connection.
    assert!(t.complete(1, with_data(512)).is_empty());
    assert!(t.send(dout(2, r2t.ttt, 0, 0, true), &pat(2, 0, 1024)).is_empty());
    assert!(t.send(read(4, 4, 512), &[]).is_empty());
    assert!(t.send(nop_out(0x51, NO_TAG, 5), &[]).is_empty());
}

#[test]
fn logout_for_recovery_is_not_supported() {
    let mut t = T::plain();
    let o = t.send(as_immediate(logout(0x50, 1, LogoutReason::REMOVE_CONNECTION_FOR_RECOVERY)), &[]);
    assert_eq!(get!(&o[0], LogoutResponse).response, LogoutResponseCode::RECOVERY_NOT_SUPPORTED);
    assert!(matches!(o.last(), Some(Out::Close)));
}

#[test]
fn login_request_in_full_feature_phase_is_rejected() {
    let mut t = T::plain();
    let o = t.send(login(), b"InitiatorName=x\0");
    assert_eq!(o.len(), 1);
    let rj = get!(&o[0], Reject);
    assert_eq!((rj.reason, rj.stat_sn, rj.exp_cmd_sn, rj.max_cmd_sn), (RejectReason::PROTOCOL_ERROR, STAT0, 1, 16));
    assert_eq!(body(&o[0]), &bhs_of(&login(), 16)[..]);
    assert_eq!(t.conn.exp_cmd_sn(), 1);
}

#[test]
fn unsupported_opcodes_are_rejected() {
    let mut t = T::plain();
    // SNACK at ErrorRecoveryLevel 0, and a target-only opcode.
    let mut raw = [0u8; BHS_LEN];
    raw[0] = 0x10;
    raw[1] = 0x80;
    raw[16..20].copy_from_slice(&5u32.to_be_bytes());
    let snack = Header::decode(&raw);
    let nop_in = Header::NopIn(NopIn { lun: LUN0, itt: 1, ttt: NO_TAG, stat_sn: 0, exp_cmd_sn: 0, max_cmd_sn: 0 });
    for h in [snack, nop_in] {
        let o = t.send(h.clone(), &[]);
        assert_eq!(o.len(), 1);
        assert_eq!(get!(&o[0], Reject).reason, RejectReason::COMMAND_NOT_SUPPORTED);
        assert_eq!(body(&o[0]), &bhs_of(&h, 0)[..]);
    }
}

#[test]
fn scsi_command_in_a_discovery_session_is_rejected() {
    let p = SessionParams { session_type: SessionType::Discovery, target_name: None, ..params() };
    let mut t = T::new(p, TargetConnConfig { send_targets: b"TargetName=iqn.x\0".to_vec(), ..cfg(16) });
    let cmd = read(1, 1, 512);
    let o = t.send(cmd.clone(), &[]);
    assert_eq!(o.len(), 1);
    assert_eq!(get!(&o[0], Reject).reason, RejectReason::PROTOCOL_ERROR);
    assert_eq!(body(&o[0]), &bhs_of(&cmd, 0)[..]);
    assert_eq!(t.conn.tasks_in_flight(), 0);
    // Text, NOP and Logout work.
    assert!(get!(&t.send(text(2, NO_TAG, 2), b"SendTargets=All\0")[0], TextResponse).final_);
    assert_eq!(get!(&t.send(nop_out(3, NO_TAG, 3), &[])[0], NopIn).itt, 3);
    assert!(matches!(t.send(logout(4, 4, LogoutReason::CLOSE_SESSION), &[]).last(), Some(Out::Close)));
}

/// RFC 7143 §7.8 a): a Data-Out whose data digest fails is discarded
/// (Reject, reason 02h). At ErrorRecoveryLevel 0 (all this target
/// negotiates) there is no recovery R2T, so the task ends with CHECK
/// CONDITION, "protocol service CRC error" (0Bh 47h/05h) — but only once all
/// of its data has arrived: the Final bit for every outstanding R2T. No new
/// R2T is issued meanwhile.
#[test]
fn data_digest_error_waits_for_the_outstanding_bursts_then_ends_the_task() {
    let mut t = T::with(|p| {
        p.initial_r2t = true;
        p.immediate_data = false;
        p.header_digest = true;
        p.data_digest = true;
        p.max_burst_length = 1024;
        p.max_outstanding_r2t = 2;
    });
    let o = t.send(write(1, 1, 4096), &[]);
    assert_eq!(o.len(), 2, "two bursts solicited: {o:?}");
    let (a, b) = (get!(&o[0], R2t), get!(&o[1], R2t));
    assert_eq!((a.buffer_offset, b.buffer_offset), (0, 1024));
    let bad = bhs_of(&dout(1, a.ttt, 0, 0, false), 512);
    let o = t.digest_error(&bad);
    assert_eq!(o.len(), 1, "only the Reject while the bursts are under way: {o:?}");
    let rj = get!(&o[0], Reject);
    assert_eq!((rj.reason, rj.stat_sn), (RejectReason::DATA_DIGEST_ERROR, STAT0));
    assert_eq!(body(&o[0]), &bad[..]);
    // The rest of the first burst: no new R2T, no response yet.
    assert!(t.send(dout(1, a.ttt, 1, 512, true), &pat(1, 512, 512)).is_empty());
    assert_eq!(t.conn.tasks_in_flight(), 1);
    assert!(t.conn.awaiting_data_out());
    // The second burst ends: now the task ends, without executing.
    let o = t.data_burst(1, b.ttt, 1024, 1024, 512);
    assert_eq!(o.len(), 1, "{o:?}");
    assert!(executes(&o).is_empty());
    assert_check_condition(&o[0], 1, 0x0b, 0x47, 0x05);
    assert_eq!(get!(&o[0], ScsiResponse).stat_sn, STAT0);
    assert_eq!(t.conn.tasks_in_flight(), 0);
    // Anything more for it is ignored; the ITT is free again.
    assert!(t.send(dout(1, b.ttt, 2, 2048, true), &pat(1, 2048, 512)).is_empty());
    assert_eq!(get!(&t.send(write(1, 2, 512), &[])[0], R2t).itt, 1);
}

/// The same in unsolicited data (InitialR2T=No): the burst ends with its
/// Final bit, and the R2T already sent for the rest must be answered too.
#[test]
fn data_digest_error_in_unsolicited_data_waits_for_the_whole_transfer() {
    let mut t = T::with(|p| {
        p.initial_r2t = false;
        p.immediate_data = false;
        p.data_digest = true;
        p.first_burst_length = 1024;
        p.max_burst_length = 1024;
    });
    let o = t.send(write(1, 1, 2048), &[]);
    let r2t = get!(&o[0], R2t);
    assert_eq!(r2t.buffer_offset, 1024);
    let bad = bhs_of(&dout(1, NO_TAG, 0, 0, false), 512);
    assert_eq!(t.digest_error(&bad).len(), 1);
    assert!(t.send(dout(1, NO_TAG, 1, 512, true), &pat(1, 512, 512)).is_empty(), "R2T still outstanding");
    let o = t.data_burst(1, r2t.ttt, 1024, 1024, 1024);
    assert_eq!(o.len(), 1, "{o:?}");
    assert_check_condition(&o[0], 1, 0x0b, 0x47, 0x05);
    assert_eq!(t.conn.tasks_in_flight(), 0);
}

#[test]
fn data_digest_error_on_other_pdus_is_only_rejected() {
    let mut t = T::plain();
    t.send(read(1, 1, 512), &[]);
    // A running task is not disturbed by a bad Data-Out naming it.
    for h in [nop_out(5, NO_TAG, 2), dout(1, NO_TAG, 0, 0, true), dout(9, NO_TAG, 0, 0, true)] {
        let bhs = bhs_of(&h, 4);
        let o = t.digest_error(&bhs);
        assert_eq!(o.len(), 1);
        assert_eq!(get!(&o[0], Reject).reason, RejectReason::DATA_DIGEST_ERROR);
        assert_eq!(body(&o[0]), &bhs[..]);
    }
    assert_eq!(t.conn.tasks_in_flight(), 1);
}

#[test]
fn full_exchange_with_digests() {
    let mut t = T::with(|p| {
        p.header_digest = true;
        p.data_digest = true;
        p.initiator_max_recv_data_segment_length = 1000;
    });
    let o = t.send(write(1, 1, 1001), &pat(1, 0, 1001));
    assert_eq!(&exec(&o[0]).data_out[..], &pat(1, 0, 1001)[..]);
    t.complete(1, TaskOutcome { data_out_wanted: 1001, ..good() });
    t.send(read(2, 2, 2001), &[]);
    let out = with_data(2001);
    let o = t.complete(2, out.clone());
    assert_eq!(read_payload(&o), &out.data_in[..]);
    assert_eq!(data_ins(&o, 2), vec![(0, 1000, false, false), (1000, 1000, false, false), (2000, 1, true, true)]);
}

// ---------------------------------------------------------------------------
// Property test: random traffic
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Sn {
    /// ExpCmdSN + offset (may be below it or beyond MaxCmdSN).
    Rel(i8),
    Raw(u32),
}

#[derive(Debug, Clone)]
enum Op {
    Cmd {
        itt: u8,
        sn: Sn,
        immediate: bool,
        kind: u8,
        lun: u8,
        edtl: u32,
        imm: u32,
    },
    /// The next unsolicited Data-Out of a write we sent (valid-looking).
    Unsolicited {
        pick: u8,
        chunk: u16,
    },
    /// The next Data-Out answering an R2T we received (valid-looking).
    Solicited {
        pick: u8,
        chunk: u16,
    },
    /// Data-Out with arbitrary fields.
    WildData {
        itt: u8,
        ttt: u8,
        data_sn: u8,
        offset: u32,
        len: u16,
        known_ttt: bool,
    },
    Nop {
        itt: Option<u8>,
        sn: Sn,
        immediate: bool,
        len: u16,
    },
    Pong {
        right: bool,
    },
    Ping,
    Tmf {
        function: u8,
        rtt: u8,
        lun: u8,
        sn: Sn,
        immediate: bool,
    },
    Text {
        continued: bool,
        sn: Sn,
        immediate: bool,
        which: u8,
    },
    Logout {
        reason: u8,
        sn: Sn,
        immediate: bool,
    },
    Garbage {
        bhs: Vec<u8>,
        opcode: Option<u8>,
        len: u16,
    },
    DigestError {
        which: u8,
        itt: u8,
    },
    Complete {
        pick: u8,
        status: u8,
        sense: bool,
        len: u32,
        wanted: u32,
    },
    StrayComplete {
        itt: u8,
    },
    TmfDone {
        pick: u8,
        response: u8,
    },
}

fn sn_strategy() -> impl Strategy<Value = Sn> {
    prop_oneof![8 => Just(Sn::Rel(0)), 4 => (-2i8..9).prop_map(Sn::Rel), 1 => any::<u32>().prop_map(Sn::Raw)]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let edtl = prop_oneof![Just(0u32), Just(512), Just(1000), Just(4096), Just(9000), Just(70_000), 0u32..20_000];
    prop_oneof![
        10 => (0u8..8, sn_strategy(), prop::bool::weighted(0.15), 0u8..10, 0u8..2, edtl, prop_oneof![Just(0u32), 0u32..10_000])
            .prop_map(|(itt, sn, immediate, kind, lun, edtl, imm)| Op::Cmd { itt, sn, immediate, kind, lun, edtl, imm }),
        10 => (any::<u8>(), 1u16..5000).prop_map(|(pick, chunk)| Op::Unsolicited { pick, chunk }),
        14 => (any::<u8>(), 1u16..5000).prop_map(|(pick, chunk)| Op::Solicited { pick, chunk }),
        2 => (0u8..8, any::<u8>(), 0u8..3, 0u32..12_000, 0u16..3000, any::<bool>())
            .prop_map(|(itt, ttt, data_sn, offset, len, known_ttt)| Op::WildData { itt, ttt, data_sn, offset, len, known_ttt }),
        2 => (prop::option::of(0u8..4), sn_strategy(), any::<bool>(), 0u16..3000)
            .prop_map(|(itt, sn, immediate, len)| Op::Nop { itt, sn, immediate, len }),
        1 => any::<bool>().prop_map(|right| Op::Pong { right }),
        1 => Just(Op::Ping),
        2 => (0u8..10, 0u8..8, 0u8..2, sn_strategy(), prop::bool::weighted(0.8))
            .prop_map(|(function, rtt, lun, sn, immediate)| Op::Tmf { function, rtt, lun, sn, immediate }),
        2 => (any::<bool>(), sn_strategy(), any::<bool>(), 0u8..4)
            .prop_map(|(continued, sn, immediate, which)| Op::Text { continued, sn, immediate, which }),
        // Mostly out of the window: a logout ends the run.
        1 => (0u8..4, prop_oneof![1 => Just(Sn::Rel(0)), 3 => sn_strategy()], prop::bool::weighted(0.1))
            .prop_map(|(reason, sn, immediate)| Op::Logout { reason, sn, immediate }),
        3 => (prop::collection::vec(any::<u8>(), BHS_LEN), prop::option::of(prop_oneof![0u8..8, Just(0x10), Just(0x20), 0u8..64]), 0u16..600)
            .prop_map(|(bhs, opcode, len)| Op::Garbage { bhs, opcode, len }),
        1 => (0u8..4, 0u8..8).prop_map(|(which, itt)| Op::DigestError { which, itt }),
        8 => (any::<u8>(), prop_oneof![Just(0u8), Just(0), Just(2), Just(4), Just(8)], any::<bool>(), 0u32..20_000, 0u32..20_000)
            .prop_map(|(pick, status, sense, len, wanted)| Op::Complete { pick, status, sense, len, wanted }),
        1 => (0u8..16).prop_map(|itt| Op::StrayComplete { itt }),
        2 => (any::<u8>(), 0u8..6).prop_map(|(pick, response)| Op::TmfDone { pick, response }),
    ]
}

#[derive(Debug, Clone)]
struct Setup {
    window: u32,
    mrdsl: u32,
    target_mrdsl: u32,
    max_burst: u32,
    first_burst: u32,
    initial_r2t: bool,
    immediate_data: bool,
    max_r2t: u32,
    digests: (bool, bool),
    discovery: bool,
    max_write_buffer: u32,
    send_targets: usize,
    stat_sn: u32,
    exp_cmd_sn: u32,
}

fn setup_strategy() -> impl Strategy<Value = Setup> {
    (
        (
            1u32..7,
            prop_oneof![Just(512u32), Just(1024), Just(3000), Just(8192)],
            prop_oneof![Just(512u32), Just(4096), Just(8192)],
        ),
        (
            prop_oneof![Just(512u32), Just(1000), Just(2048), Just(6144), Just(262_144)],
            prop_oneof![Just(512u32), Just(1024), Just(4096), Just(65_536)],
        ),
        (any::<bool>(), any::<bool>(), 1u32..4, any::<(bool, bool)>(), prop::bool::weighted(0.1)),
        (prop_oneof![Just(4096u32), Just(65_536)], 0usize..3000),
        (any::<u32>(), prop_oneof![Just(1u32), Just(0xffff_fff0), any::<u32>()]),
    )
        .prop_map(
            |(
                (window, mrdsl, target_mrdsl),
                (max_burst, fb),
                (ir2t, id, max_r2t, digests, discovery),
                (mwb, st),
                (ss, es),
            )| Setup {
                window,
                mrdsl,
                target_mrdsl,
                max_burst,
                first_burst: fb.min(max_burst),
                initial_r2t: ir2t,
                immediate_data: id,
                max_r2t,
                digests,
                discovery,
                max_write_buffer: mwb,
                send_targets: st,
                stat_sn: ss,
                exp_cmd_sn: es,
            },
        )
}

#[derive(Debug, Clone)]
struct R2tTrack {
    itt: u32,
    ttt: u32,
    offset: u32,
    len: u32,
    sent: u32,
    data_sn: u32,
}

#[derive(Debug, Clone)]
struct UnsolTrack {
    itt: u32,
    next: u32,
    end: u32,
    data_sn: u32,
}

/// The initiator and daemon around a [`TargetConnection`], checking every
/// invariant after every step.
struct Model {
    conn: TargetConnection,
    p: SessionParams,
    window: u32,
    /// StatSN the next response must carry.
    stat_sn: u32,
    exp_seen: u32,
    max_seen: u32,
    /// Tasks the daemon is executing: ITT -> (EDTL, read).
    executed: HashMap<u32, (u32, bool)>,
    pending_tmf: Vec<u32>,
    r2ts: Vec<R2tTrack>,
    unsol: Vec<UnsolTrack>,
    /// Per ITT: end of the last R2T issued and the next R2TSN.
    r2t_next: HashMap<u32, (u32, u32)>,
    /// Per ITT: Data-In seen so far (next offset, next DataSN, burst bytes).
    data_in: HashMap<u32, (u32, u32, u32)>,
    text_ttt: Option<u32>,
    ping_ttt: Option<u32>,
    sent_bhs: HashSet<[u8; BHS_LEN]>,
    closed: bool,
    steps: usize,
}

const ITT_BASE: u32 = 0x0100_0000;

impl Model {
    fn new(s: &Setup) -> Model {
        let p = SessionParams {
            session_type: if s.discovery { SessionType::Discovery } else { SessionType::Normal },
            initiator_max_recv_data_segment_length: s.mrdsl,
            target_max_recv_data_segment_length: s.target_mrdsl,
            max_burst_length: s.max_burst,
            first_burst_length: s.first_burst,
            initial_r2t: s.initial_r2t,
            immediate_data: s.immediate_data,
            max_outstanding_r2t: s.max_r2t,
            header_digest: s.digests.0,
            data_digest: s.digests.1,
            ..params()
        };
        let c = TargetConnConfig {
            cmd_window: s.window,
            max_write_buffer: s.max_write_buffer,
            send_targets: send_targets_text(s.send_targets),
        };
        let conn = TargetConnection::new(p.clone(), c, s.stat_sn, s.exp_cmd_sn);
        let max = conn.max_cmd_sn();
        assert_eq!(max, s.exp_cmd_sn.wrapping_add(s.window - 1));
        Model {
            conn,
            p,
            window: s.window,
            stat_sn: s.stat_sn,
            exp_seen: s.exp_cmd_sn,
            max_seen: max,
            executed: HashMap::new(),
            pending_tmf: Vec::new(),
            r2ts: Vec::new(),
            unsol: Vec::new(),
            r2t_next: HashMap::new(),
            data_in: HashMap::new(),
            text_ttt: None,
            ping_ttt: None,
            sent_bhs: HashSet::new(),
            closed: false,
            steps: 0,
        }
    }

    fn sn(&self, s: &Sn) -> u32 {
        match s {
            Sn::Rel(d) => self.conn.exp_cmd_sn().wrapping_add(*d as i32 as u32),
            Sn::Raw(v) => *v,
        }
    }

    fn forget(&mut self, itt: u32) {
        self.r2ts.retain(|r| r.itt != itt);
        self.unsol.retain(|u| u.itt != itt);
        self.r2t_next.remove(&itt);
        self.data_in.remove(&itt);
    }

    /// Feed one request through the codec, check the window rules that
    /// apply to it, and absorb the result.
    fn request(&mut self, h: Header, data: &[u8]) -> Vec<Out> {
        let pdu = wire(&self.p, &h, &[], data);
        self.sent_bhs.insert(pdu.bhs);
        let (exp, max) = (self.conn.exp_cmd_sn(), self.conn.max_cmd_sn());
        let cmd_sn = match &h {
            Header::ScsiCommand(c) => Some((c.immediate, c.cmd_sn)),
            Header::NopOut(c) if c.itt != NO_TAG => Some((c.immediate, c.cmd_sn)),
            Header::TaskMgmtRequest(c) => Some((c.immediate, c.cmd_sn)),
            Header::TextRequest(c) => Some((c.immediate, c.cmd_sn)),
            Header::LogoutRequest(c) => Some((c.immediate, c.cmd_sn)),
            _ => None,
        };
        let actions = self.conn.on_pdu(pdu);
        let n_actions = actions.len();
        let o = outs(&self.p, actions);
        let bound = (self.window as usize + 2) * (self.p.max_outstanding_r2t as usize + 2) + 2;
        assert!(n_actions <= bound, "{n_actions} actions for one PDU");
        let now = self.conn.exp_cmd_sn();
        match cmd_sn {
            Some((true, _)) => assert_eq!(now, exp, "an immediate command moved ExpCmdSN"),
            Some((false, sn)) if sn_lt(sn, exp) || sn_lt(max, sn) => {
                assert!(o.is_empty(), "out-of-window CmdSN {sn} (window {exp}..={max}) answered: {o:?}");
                assert_eq!(now, exp);
            }
            Some((false, sn)) if sn == exp => assert!(sn_lt(exp, now), "in-window command not taken"),
            Some((false, _)) => {
                assert!(o.is_empty(), "early command answered before its turn: {o:?}");
                assert_eq!(now, exp);
            }
            None => {}
        }
        self.absorb(&o);
        o
    }

    fn absorb(&mut self, o: &[Out]) {
        self.steps += 1;
        // A chain of released commands can end a task and start another one
        // with the same ITT in one call; checks against the connection's
        // state after the call only hold for ITTs not taken up again.
        let reused = |i: usize, itt: u32| {
            o[i + 1..].iter().any(|x| match x {
                Out::Execute(t) => t.itt == itt,
                Out::Pdu(p) => matches!(&p.header, Header::R2t(r) if r.itt == itt),
                _ => false,
            })
        };
        for (i, out) in o.iter().enumerate() {
            assert!(!self.closed, "output after Close: {out:?}");
            match out {
                Out::Pdu(pdu) => {
                    self.check_pdu(pdu);
                    let ended = match &pdu.header {
                        Header::ScsiResponse(r) => Some(r.itt),
                        Header::DataIn(d) if d.has_status => Some(d.itt),
                        _ => None,
                    };
                    if let Some(itt) = ended {
                        self.forget(itt);
                    }
                }
                Out::Execute(task) => {
                    assert!(
                        self.executed.insert(task.itt, (task.expected_len, task.read)).is_none(),
                        "two tasks with ITT {:#x} executing at once",
                        task.itt
                    );
                    if task.write && !task.read && task.expected_len > 0 {
                        assert_eq!(task.data_out.len(), task.expected_len as usize);
                        assert!(
                            task.data_out[..] == pat(task.itt, 0, task.expected_len as usize)[..],
                            "reassembled write data differs from what was sent (ITT {:#x})",
                            task.itt
                        );
                    } else {
                        assert!(task.data_out.is_empty());
                    }
                    self.forget(task.itt);
                }
                Out::Cancel(itts) => {
                    for &itt in itts {
                        if reused(i, itt) {
                            self.executed.remove(&itt);
                            continue;
                        }
                        assert!(!self.conn.task_itts().contains(&itt), "cancelled task still in flight");
                        if self.executed.remove(&itt).is_some() {
                            // The daemon reports the cancelled task's end; it is dropped.
                            let stale = self.conn.complete(itt, with_data(100));
                            assert!(stale.is_empty(), "result of a cancelled task sent");
                        }
                        self.forget(itt);
                    }
                }
                Out::Tmf(tm) => {
                    for &itt in &tm.aborted {
                        assert!(!self.executed.contains_key(&itt), "aborted but not cancelled");
                        assert!(reused(i, itt) || !self.conn.task_itts().contains(&itt));
                    }
                    self.pending_tmf.push(tm.itt);
                }
                Out::Close => self.closed = true,
            }
        }
        assert!(
            self.conn.tasks_in_flight() as u32 <= self.window + 1,
            "{} tasks in flight for a window of {}",
            self.conn.tasks_in_flight(),
            self.window
        );
        let (exp, max) = (self.conn.exp_cmd_sn(), self.conn.max_cmd_sn());
        assert!(!sn_lt(exp, self.exp_seen), "ExpCmdSN went back");
        assert!(!sn_lt(max, self.max_seen), "MaxCmdSN went back from {} to {max}", self.max_seen);
        assert!(!sn_lt(max, exp.wrapping_sub(1)), "MaxCmdSN < ExpCmdSN - 1");
        self.exp_seen = exp;
        self.max_seen = max;
    }

    fn check_pdu(&mut self, pdu: &Pdu) {
        // (StatSN, ExpCmdSN, MaxCmdSN, takes a StatSN)
        let seq = match &pdu.header {
            Header::ScsiResponse(r) => Some((r.stat_sn, r.exp_cmd_sn, r.max_cmd_sn, true)),
            Header::DataIn(d) => Some((d.stat_sn, d.exp_cmd_sn, d.max_cmd_sn, d.has_status)),
            Header::R2t(r) => Some((r.stat_sn, r.exp_cmd_sn, r.max_cmd_sn, false)),
            Header::NopIn(n) => Some((n.stat_sn, n.exp_cmd_sn, n.max_cmd_sn, n.itt != NO_TAG)),
            Header::TaskMgmtResponse(r) => Some((r.stat_sn, r.exp_cmd_sn, r.max_cmd_sn, true)),
            Header::TextResponse(r) => Some((r.stat_sn, r.exp_cmd_sn, r.max_cmd_sn, true)),
            Header::LogoutResponse(r) => Some((r.stat_sn, r.exp_cmd_sn, r.max_cmd_sn, true)),
            Header::Reject(r) => Some((r.stat_sn, r.exp_cmd_sn, r.max_cmd_sn, false)),
            other => panic!("target sent {other:?}"),
        };
        let (stat_sn, exp, max, takes) = seq.unwrap();
        assert_eq!(stat_sn, self.stat_sn, "StatSN out of sequence in {:?}", pdu.header);
        if takes {
            self.stat_sn = self.stat_sn.wrapping_add(1);
        }
        assert!(!sn_lt(exp, self.exp_seen) && !sn_lt(max, self.max_seen), "sequence numbers went back");
        assert!(!sn_lt(max, exp.wrapping_sub(1)));
        self.exp_seen = exp;
        self.max_seen = max;
        match &pdu.header {
            Header::R2t(r) => {
                assert_ne!(r.ttt, NO_TAG);
                assert!(r.desired_length > 0 && r.desired_length <= self.p.max_burst_length.max(512));
                let (end, sn) = self.r2t_next.get(&r.itt).copied().unwrap_or((r.buffer_offset, 0));
                assert_eq!((r.buffer_offset, r.r2t_sn), (end, sn), "R2Ts out of order");
                self.r2t_next.insert(r.itt, (r.buffer_offset + r.desired_length, sn + 1));
                let open = self.r2ts.iter().filter(|t| t.itt == r.itt).count();
                assert!(open < self.p.max_outstanding_r2t as usize, "more than MaxOutstandingR2T");
                self.r2ts.push(R2tTrack {
                    itt: r.itt,
                    ttt: r.ttt,
                    offset: r.buffer_offset,
                    len: r.desired_length,
                    sent: 0,
                    data_sn: 0,
                });
            }
            Header::DataIn(d) => {
                let (off, sn, burst) = self.data_in.get(&d.itt).copied().unwrap_or((0, 0, 0));
                assert_eq!((d.buffer_offset, d.data_sn), (off, sn), "Data-In out of order");
                let burst = burst + pdu.data.len() as u32;
                assert!(burst <= self.p.max_burst_length, "Data-In sequence of {burst} > MaxBurstLength");
                let (edtl, read) = *self.executed.get(&d.itt).expect("Data-In for a task not executing");
                assert!(read);
                assert!(off + pdu.data.len() as u32 <= edtl, "Data-In beyond EDTL");
                self.data_in.insert(d.itt, (off + pdu.data.len() as u32, sn + 1, if d.final_ { 0 } else { burst }));
            }
            Header::TextResponse(r) => {
                assert!(!(r.final_ && r.continue_));
                assert_eq!(r.final_, r.ttt == NO_TAG);
                self.text_ttt = if r.continue_ { Some(r.ttt) } else { None };
            }
            Header::NopIn(n) if n.itt == NO_TAG => {
                assert_ne!(n.ttt, NO_TAG);
                self.ping_ttt = Some(n.ttt);
            }
            Header::Reject(_) => {
                let mut b = [0u8; BHS_LEN];
                assert_eq!(pdu.data.len(), BHS_LEN, "Reject without the rejected header");
                b.copy_from_slice(&pdu.data);
                assert!(self.sent_bhs.contains(&b), "Reject of a header never sent");
            }
            _ => {}
        }
    }

    /// Complete a task the daemon executed: exactly one status for it.
    fn finish(&mut self, itt: u32, outcome: TaskOutcome) {
        let (edtl, read) = *self.executed.get(&itt).expect("finishing a task not executing");
        let before = self.conn.tasks_in_flight();
        let a = self.conn.complete(itt, outcome.clone());
        let o = outs(&self.p, a);
        // Still "executing" while absorbing, for the Data-In checks.
        self.absorb(&o);
        self.executed.remove(&itt);
        self.data_in.remove(&itt);
        let statuses = o
            .iter()
            .filter(|o| match hdr(o) {
                Header::ScsiResponse(r) => r.itt == itt,
                Header::DataIn(d) => d.itt == itt && d.has_status,
                other => panic!("completion sent {other:?}"),
            })
            .count();
        assert_eq!(statuses, 1, "one status per completed task: {o:?}");
        assert_eq!(self.conn.tasks_in_flight(), before - 1);
        let sent: usize = o.iter().filter(|o| matches!(hdr(o), Header::DataIn(_))).map(|o| body(o).len()).sum();
        let want = if read { outcome.data_in.len().min(edtl as usize) } else { 0 };
        assert_eq!(sent, want, "Data-In bytes");
    }

    fn step(&mut self, op: &Op) {
        let p = self.p.clone();
        match op {
            Op::Cmd { itt, sn, immediate, kind, lun, edtl, imm } => {
                let itt = ITT_BASE + *itt as u32;
                let mut c = scsi(itt, self.sn(sn));
                c.immediate = *immediate;
                c.lun = if *lun == 0 { LUN0 } else { LUN1 };
                c.expected_data_length = *edtl;
                match kind {
                    0..=3 => c.read = true,
                    4..=7 => c.write = true,
                    8 => {
                        c.read = true;
                        c.write = true;
                    }
                    _ => {}
                }
                let imm = match kind {
                    4..=8 => (*imm).min(*edtl).min(p.target_max_recv_data_segment_length),
                    // Immediate data where none is allowed.
                    9 => (*imm).min(p.target_max_recv_data_segment_length),
                    _ => 0,
                };
                if c.write {
                    let end = if p.initial_r2t { imm } else { p.first_burst_length.min(*edtl).max(imm) };
                    self.unsol.push(UnsolTrack { itt, next: imm, end, data_sn: 0 });
                }
                self.request(Header::ScsiCommand(c), &pat(itt, 0, imm as usize));
            }
            Op::Unsolicited { pick, chunk } => {
                // Prefer transfers of tasks that exist.
                let itts = self.conn.task_itts();
                let mut open: Vec<usize> = (0..self.unsol.len())
                    .filter(|i| self.unsol[*i].next < self.unsol[*i].end && itts.contains(&self.unsol[*i].itt))
                    .collect();
                if open.is_empty() {
                    open = (0..self.unsol.len()).filter(|i| self.unsol[*i].next < self.unsol[*i].end).collect();
                }
                if open.is_empty() {
                    return;
                }
                let i = open[*pick as usize % open.len()];
                let u = self.unsol[i].clone();
                let n = (*chunk as u32).min(u.end - u.next).min(p.target_max_recv_data_segment_length);
                let last = u.next + n == u.end;
                self.unsol[i].next += n;
                self.unsol[i].data_sn += 1;
                self.request(dout(u.itt, NO_TAG, u.data_sn, u.next, last), &pat(u.itt, u.next, n as usize));
            }
            Op::Solicited { pick, chunk } => {
                if self.r2ts.is_empty() {
                    return;
                }
                let i = *pick as usize % self.r2ts.len();
                let r = self.r2ts[i].clone();
                let n = (*chunk as u32).min(r.len - r.sent).min(p.target_max_recv_data_segment_length);
                let last = r.sent + n == r.len;
                if last {
                    self.r2ts.remove(i);
                } else {
                    self.r2ts[i].sent += n;
                    self.r2ts[i].data_sn += 1;
                }
                let off = r.offset + r.sent;
                self.request(dout(r.itt, r.ttt, r.data_sn, off, last), &pat(r.itt, off, n as usize));
            }
            Op::WildData { itt, ttt, data_sn, offset, len, known_ttt } => {
                let itt = ITT_BASE + *itt as u32;
                let ttt = match (*known_ttt, self.r2ts.is_empty()) {
                    (true, false) => self.r2ts[*ttt as usize % self.r2ts.len()].ttt,
                    _ if *ttt < 128 => NO_TAG,
                    _ => *ttt as u32,
                };
                // This might move the burst on: stop tracking it, so as
                // never to count an R2T the target considers done.
                self.r2ts.retain(|r| r.ttt != ttt);
                let len = (*len as u32).min(p.target_max_recv_data_segment_length);
                self.request(dout(itt, ttt, *data_sn as u32, *offset, true), &pat(itt, *offset, len as usize));
            }
            Op::Nop { itt, sn, immediate, len } => {
                let itt = itt.map_or(NO_TAG, |i| 0x3000 + i as u32);
                let mut h = nop_out(itt, NO_TAG, self.sn(sn));
                if *immediate || itt == NO_TAG {
                    h = as_immediate(h);
                }
                let len = (*len as u32).min(p.target_max_recv_data_segment_length) as usize;
                self.request(h, &pat(itt, 0, len));
            }
            Op::Pong { right } => {
                let ttt = match (right, self.ping_ttt) {
                    (true, Some(t)) => t,
                    _ => 0x7777_0000,
                };
                let was = self.conn.ping_outstanding();
                self.request(as_immediate(nop_out(NO_TAG, ttt, self.conn.exp_cmd_sn())), &[]);
                if *right && self.ping_ttt.is_some() {
                    assert!(!self.conn.ping_outstanding());
                    self.ping_ttt = None;
                } else {
                    assert_eq!(self.conn.ping_outstanding(), was);
                }
            }
            Op::Ping => {
                let was = self.conn.ping_outstanding();
                match self.conn.ping() {
                    Some(a) => {
                        assert!(!was);
                        let o = outs(&p, vec![a]);
                        self.absorb(&o);
                        assert!(self.conn.ping_outstanding());
                    }
                    None => assert!(was),
                }
            }
            Op::Tmf { function, rtt, lun, sn, immediate } => {
                let f = match function {
                    0 => TmfFunction::ABORT_TASK,
                    1 => TmfFunction::ABORT_TASK,
                    2 => TmfFunction::ABORT_TASK_SET,
                    3 => TmfFunction::CLEAR_ACA,
                    4 => TmfFunction::CLEAR_TASK_SET,
                    5 => TmfFunction::LOGICAL_UNIT_RESET,
                    6 => TmfFunction::TARGET_WARM_RESET,
                    7 => TmfFunction::TARGET_COLD_RESET,
                    8 => TmfFunction::TASK_REASSIGN,
                    _ => TmfFunction(0x33),
                };
                let itt = 0x1000 + self.steps as u32;
                let mut h = tmf(itt, self.sn(sn), f, if *lun == 0 { LUN0 } else { LUN1 }, ITT_BASE + *rtt as u32);
                if let Header::TaskMgmtRequest(t) = &mut h {
                    t.immediate = *immediate;
                }
                self.request(h, &[]);
            }
            Op::Text { continued, sn, immediate, which } => {
                let ttt = if *continued { self.text_ttt.unwrap_or(0x4242) } else { NO_TAG };
                let mut h = text(0x2000 + self.steps as u32, ttt, self.sn(sn));
                if *immediate {
                    h = as_immediate(h);
                }
                let data: &[u8] = match (continued, which) {
                    (true, _) => b"",
                    (_, 0) => b"SendTargets=All\0",
                    (_, 1) => b"Foo=Bar\0SendTargets=\0",
                    (_, 2) => b"\0\0=\0noequals\0",
                    _ => b"MaxRecvDataSegmentLength=65536\0",
                };
                self.request(h, data);
            }
            Op::Logout { reason, sn, immediate } => {
                let mut h = logout(0x5000, self.sn(sn), LogoutReason(*reason));
                if *immediate {
                    h = as_immediate(h);
                }
                let in_flight = self.conn.task_itts();
                let (exp, max) = (self.conn.exp_cmd_sn(), self.conn.max_cmd_sn());
                let direct = *immediate || (self.sn(sn) == exp && !sn_lt(max, exp));
                let o = self.request(h, &[]);
                if self.closed && direct {
                    assert_eq!(self.conn.tasks_in_flight(), 0);
                    let cancelled: Vec<u32> = o
                        .iter()
                        .filter_map(|o| if let Out::Cancel(v) = o { Some(v.clone()) } else { None })
                        .flatten()
                        .collect();
                    assert_eq!(sorted(cancelled), sorted(in_flight));
                }
            }
            Op::Garbage { bhs, opcode, len } => {
                let mut raw = [0u8; BHS_LEN];
                raw.copy_from_slice(bhs);
                if let Some(op) = opcode {
                    raw[0] = (raw[0] & 0xc0) | (op & 0x3f);
                }
                if bhs_opcode(&raw) == Opcode::LOGOUT_REQUEST {
                    // Non-immediate, so that its random CmdSN mostly keeps
                    // it from ending the run.
                    raw[0] &= !0x40;
                }
                let h = Header::decode(&raw);
                let itt = bhs_itt(&raw);
                let off = if bhs_opcode(&raw) == Opcode::DATA_OUT {
                    u32::from_be_bytes([raw[40], raw[41], raw[42], raw[43]])
                } else {
                    0
                };
                let len = (*len as u32).min(p.target_max_recv_data_segment_length) as usize;
                self.request(h, &pat(itt, off, len));
            }
            Op::DigestError { which, itt } => {
                let itt = ITT_BASE + *itt as u32;
                let ttt = self.r2ts.iter().find(|r| r.itt == itt).map_or(NO_TAG, |r| r.ttt);
                let h = match which {
                    0 => dout(itt, ttt, 0, 0, true),
                    1 => dout(itt, NO_TAG, 0, 0, true),
                    2 => write(itt, self.conn.exp_cmd_sn(), 4096),
                    _ => nop_out(0x3100, NO_TAG, self.conn.exp_cmd_sn()),
                };
                let bhs = bhs_of(&h, 512);
                self.sent_bhs.insert(bhs);
                let (exp, before) = (self.conn.exp_cmd_sn(), self.conn.tasks_in_flight());
                let a = self.conn.on_data_digest_error(&bhs);
                let o = outs(&p, a);
                assert!(matches!(hdr(&o[0]), Header::Reject(r) if r.reason == RejectReason::DATA_DIGEST_ERROR));
                // A command whose immediate data failed its digest still takes
                // its CmdSN turn (and then ends in CHECK CONDITION 47h/05h); that
                // may also release held commands, so ExpCmdSN can advance, but
                // it never goes backwards.
                let adv = self.conn.exp_cmd_sn().wrapping_sub(exp);
                assert!(adv < 0x8000_0000, "ExpCmdSN went backwards by {}", adv.wrapping_neg());
                // At most the failed task ends — unless taking its CmdSN turn
                // released a held Logout, which ends every task.
                let logged_out =
                    o.iter().any(|p| matches!(p, Out::Pdu(p) if matches!(p.header, Header::LogoutResponse(_))));
                assert!(logged_out || self.conn.tasks_in_flight() + 1 >= before);
                self.absorb(&o);
            }
            Op::Complete { pick, status, sense, len, wanted } => {
                if self.executed.is_empty() {
                    return;
                }
                let mut itts: Vec<u32> = self.executed.keys().copied().collect();
                itts.sort_unstable();
                let itt = itts[*pick as usize % itts.len()];
                let outcome = TaskOutcome {
                    status: *status,
                    sense: sense.then(|| transport_sense(0x05, 0x24, 0x00)),
                    data_in: Bytes::from(pat(itt, 0, *len as usize)),
                    data_out_wanted: *wanted,
                };
                self.finish(itt, outcome);
            }
            Op::StrayComplete { itt } => {
                let itt = ITT_BASE + *itt as u32;
                if self.executed.contains_key(&itt) {
                    return;
                }
                let before = self.conn.task_itts();
                let a = self.conn.complete(itt, with_data(64));
                assert!(a.is_empty(), "completion of a task not executing answered");
                assert_eq!(sorted(self.conn.task_itts()), sorted(before), "stray completion changed the tasks");
                self.absorb(&[]);
            }
            Op::TmfDone { pick, response } => {
                if self.pending_tmf.is_empty() {
                    return;
                }
                let itt = self.pending_tmf.remove(*pick as usize % self.pending_tmf.len());
                let a = self.conn.tmf_done(itt, TmfResponse(*response));
                let o = outs(&p, a);
                assert_eq!(o.len(), 1);
                let r = get!(&o[0], TaskMgmtResponse);
                assert_eq!((r.itt, r.response), (itt, TmfResponse(*response)));
                self.absorb(&o);
            }
        }
    }

    /// Bring the connection back to idle: finish what runs, answer pending
    /// task management, abort what still collects data. Returns the number
    /// of steps it took.
    fn drain(&mut self) -> usize {
        let start = self.steps;
        let bound = self.executed.len() + self.pending_tmf.len() + 2 * self.conn.tasks_in_flight();
        let mut itts: Vec<u32> = self.executed.keys().copied().collect();
        itts.sort_unstable();
        for itt in itts {
            self.finish(itt, good());
        }
        for itt in std::mem::take(&mut self.pending_tmf) {
            let o = outs(&self.p, self.conn.tmf_done(itt, TmfResponse::COMPLETE));
            self.absorb(&o);
        }
        let mut left = self.conn.task_itts();
        left.sort_unstable();
        for (i, itt) in left.into_iter().enumerate() {
            let h = tmf(0x6000 + i as u32, self.conn.exp_cmd_sn(), TmfFunction::ABORT_TASK, LUN0, itt);
            self.request(h, &[]);
            for itt in std::mem::take(&mut self.pending_tmf) {
                let o = outs(&self.p, self.conn.tmf_done(itt, TmfResponse::COMPLETE));
                self.absorb(&o);
            }
        }
        assert_eq!(self.conn.tasks_in_flight(), 0, "tasks left after draining: {:?}", self.conn.task_itts());
        assert!(self.executed.is_empty());
        assert!(self.steps - start <= bound, "draining took {} steps", self.steps - start);
        self.steps - start
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Random traffic, half plausible and half garbage, with random
    /// completions: nothing panics, every PDU sent decodes under the
    /// initiator's limits, StatSN/ExpCmdSN/MaxCmdSN never go back, memory
    /// stays bounded by the window, and a bounded drain always returns the
    /// connection to idle with the whole window open.
    #[test]
    fn random_traffic_keeps_the_invariants(setup in setup_strategy(), ops in prop::collection::vec(op_strategy(), 1..150)) {
        let mut m = Model::new(&setup);
        for op in &ops {
            m.step(op);
            if m.closed {
                break;
            }
        }
        if !m.closed {
            let n = m.drain();
            prop_assert!(n <= 2 * (setup.window as usize + 1) + ops.len() + 1, "drain took {} steps", n);
            let exp = m.conn.exp_cmd_sn();
            prop_assert_eq!(m.conn.max_cmd_sn(), exp.wrapping_add(setup.window - 1));
            // A well-behaved command is now taken at once.
            m.request(tur(ITT_BASE + 0xff, exp), &[]);
            prop_assert!(sn_lt(exp, m.conn.exp_cmd_sn()));
        }
    }
}

// ---------------------------------------------------------------------------
// Timers, on a virtual clock: NOP-In keepalive and the PDU stall timeout
// ---------------------------------------------------------------------------

const NOP_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
const PDU_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const ABORT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
const WRITE_DATA_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn secs(n: u64) -> std::time::Duration {
    std::time::Duration::from_secs(n)
}

impl T {
    /// A connection whose timers started at `t0`.
    fn timed(t0: std::time::Instant, nop_interval: Option<std::time::Duration>) -> T {
        let mut t = T::plain();
        assert_eq!(t.conn.poll_timeout(), None, "no timers until started");
        t.conn.start_timers(
            crate::timeout::ConnTimeouts {
                nop_interval,
                pdu_timeout: PDU_TIMEOUT,
                write_data_timeout: WRITE_DATA_TIMEOUT,
                abort_wait: ABORT_WAIT,
            },
            t0,
        );
        t
    }
    /// A whole PDU arrives at `now`.
    fn recv_at(&mut self, now: std::time::Instant, h: Header, data: &[u8]) -> Vec<Out> {
        let o = self.send(h, data);
        self.conn.bytes_received(now, 0);
        o
    }
    /// The timers at `now`.
    fn timeout_at(&mut self, now: std::time::Instant) -> Result<Vec<Out>, crate::timeout::Timeout> {
        self.conn.handle_timeout(now).map(|a| outs(&self.p, a))
    }
}

/// The keepalive NOP-In among `o` (the only output), with its TTT.
fn the_ping(o: &[Out]) -> u32 {
    assert_eq!(o.len(), 1, "expected one NOP-In, got {o:?}");
    let n = get!(&o[0], NopIn);
    assert_eq!((n.itt, n.lun), (NO_TAG, LUN0));
    assert_ne!(n.ttt, NO_TAG, "a keepalive asks for an answer");
    assert!(body(&o[0]).is_empty());
    n.ttt
}

#[test]
fn keepalive_nop_in_after_an_interval_of_silence() {
    let t0 = std::time::Instant::now();
    let mut t = T::timed(t0, Some(NOP_EVERY));
    assert_eq!(t.conn.poll_timeout(), Some(t0 + NOP_EVERY));
    assert!(t.timeout_at(t0 + NOP_EVERY - secs(1)).unwrap().is_empty(), "early: nothing");
    let o = t.timeout_at(t0 + NOP_EVERY).unwrap();
    the_ping(&o);
    assert_eq!(get!(&o[0], NopIn).stat_sn, STAT0, "a keepalive does not take a StatSN");
    assert!(t.conn.ping_outstanding());
    // The next deadline is one interval after the ping; a spurious wake-up
    // before it neither pings again nor closes.
    assert_eq!(t.conn.poll_timeout(), Some(t0 + NOP_EVERY * 2));
    assert!(t.timeout_at(t0 + NOP_EVERY + secs(1)).unwrap().is_empty());
}

#[test]
fn no_keepalive_while_traffic_flows() {
    let t0 = std::time::Instant::now();
    let mut t = T::timed(t0, Some(NOP_EVERY));
    for i in 1..=10u32 {
        let now = t0 + secs(20) * i;
        assert!(t.timeout_at(now - secs(1)).unwrap().is_empty(), "pinged at {i}");
        let o = t.recv_at(now, as_immediate(nop_out(0x100 + i, NO_TAG, 1)), &[]);
        assert_eq!(get!(&o[0], NopIn).itt, 0x100 + i, "the initiator's ping is answered");
        assert_eq!(t.conn.poll_timeout(), Some(now + NOP_EVERY));
    }
    assert!(!t.conn.ping_outstanding());
}

#[test]
fn unanswered_keepalive_closes_after_another_interval() {
    let t0 = std::time::Instant::now();
    let mut t = T::timed(t0, Some(NOP_EVERY));
    let ping = the_ping(&t.timeout_at(t0 + NOP_EVERY).unwrap());
    // Traffic that is not the answer restarts the interval but does not
    // settle the ping.
    let at = t0 + NOP_EVERY + secs(5);
    t.recv_at(at, as_immediate(nop_out(NO_TAG, ping ^ 1, 1)), &[]);
    assert!(t.conn.ping_outstanding());
    assert_eq!(t.conn.poll_timeout(), Some(at + NOP_EVERY));
    assert!(t.timeout_at(at + NOP_EVERY - secs(1)).unwrap().is_empty());
    assert_eq!(t.timeout_at(at + NOP_EVERY).unwrap_err(), crate::timeout::Timeout::Keepalive(NOP_EVERY));
}

#[test]
fn answered_keepalive_resets_the_timer() {
    let t0 = std::time::Instant::now();
    let mut t = T::timed(t0, Some(NOP_EVERY));
    let first = the_ping(&t.timeout_at(t0 + NOP_EVERY).unwrap());
    let answered = t0 + NOP_EVERY + secs(2);
    assert!(t.recv_at(answered, as_immediate(nop_out(NO_TAG, first, 1)), &[]).is_empty(), "an answer is not answered");
    assert!(!t.conn.ping_outstanding());
    assert_eq!(t.conn.poll_timeout(), Some(answered + NOP_EVERY));
    // Silence again: another ping (a new TTT), not a close.
    let second = the_ping(&t.timeout_at(answered + NOP_EVERY).unwrap());
    assert_ne!(second, first);
}

#[test]
fn stall_in_the_middle_of_a_pdu_closes_after_pdu_timeout() {
    let t0 = std::time::Instant::now();
    let mut t = T::timed(t0, Some(NOP_EVERY));
    // 20 bytes of a header arrived at t0 + 1 s, then nothing.
    let at = t0 + secs(1);
    t.conn.bytes_received(at, 20);
    assert_eq!(t.conn.poll_timeout(), Some(at + PDU_TIMEOUT));
    assert!(t.timeout_at(at + PDU_TIMEOUT - secs(1)).unwrap().is_empty());
    assert_eq!(t.timeout_at(at + PDU_TIMEOUT).unwrap_err(), crate::timeout::Timeout::PduStall(PDU_TIMEOUT));
    // More bytes of it do not move the deadline (the PDU's, from its first
    // byte); the PDU completing ends the stall watch.
    let later = at + secs(5);
    t.conn.bytes_received(later, 30);
    assert_eq!(t.conn.poll_timeout(), Some(at + PDU_TIMEOUT));
    assert_eq!(t.timeout_at(at + PDU_TIMEOUT).unwrap_err(), crate::timeout::Timeout::PduStall(PDU_TIMEOUT));
    let done = t0 + secs(10);
    t.recv_at(done, tur(1, 1), &[]);
    assert_eq!(t.conn.poll_timeout(), Some(done + NOP_EVERY));
}

#[test]
fn stall_while_a_write_waits_for_data_out_closes_after_pdu_timeout() {
    let t0 = std::time::Instant::now();
    let mut t = T::timed(t0, None);
    let at = t0 + secs(3);
    let o = t.recv_at(at, write(1, 1, 4096), &[]);
    let r2t = get!(&o[0], R2t);
    assert!(t.conn.awaiting_data_out());
    assert_eq!(t.conn.poll_timeout(), Some(at + PDU_TIMEOUT));
    // Half the data, then silence: the deadline counts from the last bytes.
    let half = at + secs(4);
    let o = t.send(dout(1, r2t.ttt, 0, 0, false), &pat(1, 0, 2048));
    assert!(o.is_empty());
    t.conn.bytes_received(half, 0);
    assert!(t.timeout_at(half + PDU_TIMEOUT - secs(1)).unwrap().is_empty());
    assert_eq!(t.timeout_at(half + PDU_TIMEOUT).unwrap_err(), crate::timeout::Timeout::PduStall(PDU_TIMEOUT));
    // The rest arrives in time instead: the write runs, no timer is left.
    let o = t.send(dout(1, r2t.ttt, 1, 2048, true), &pat(1, 2048, 2048));
    t.conn.bytes_received(half + secs(1), 0);
    assert_eq!(executes(&o), vec![1]);
    assert_eq!(t.conn.poll_timeout(), None);
}

#[test]
fn idle_between_pdus_is_not_a_stall() {
    let t0 = std::time::Instant::now();
    let mut t = T::timed(t0, None);
    assert_eq!(t.conn.poll_timeout(), None);
    // A read that runs for an hour is not a stall either: it waits for us.
    let o = t.recv_at(t0 + secs(1), read(1, 1, 512), &[]);
    assert_eq!(executes(&o), vec![1]);
    assert_eq!(t.conn.poll_timeout(), None);
    assert!(t.timeout_at(t0 + secs(3600)).unwrap().is_empty());
    let o = t.complete(1, with_data(512));
    assert_eq!(get!(&o[0], DataIn).itt, 1);
}

#[test]
fn timers_beyond_the_clock_never_fire() {
    let t0 = std::time::Instant::now();
    let mut t = T::timed(t0, Some(std::time::Duration::MAX));
    assert_eq!(t.conn.poll_timeout(), None);
    assert!(t.timeout_at(t0 + secs(1 << 40)).unwrap().is_empty());
}

// ---------------------------------------------------------------------------
// The driver's per-task handles: one table of tasks, in the core
// ---------------------------------------------------------------------------

#[test]
fn execution_handles_outlive_an_abort_until_complete() {
    let p = params();
    let mut conn: TargetConnection<&str> = TargetConnection::with_handles(p.clone(), cfg(16), STAT0, 1);
    let send = |conn: &mut TargetConnection<&str>, h: Header| outs(&p, conn.on_pdu(wire(&p, &h, &[], &[])));
    assert_eq!(executes(&send(&mut conn, read(1, 1, 512))), vec![1]);
    assert_eq!(executes(&send(&mut conn, read(2, 2, 512))), vec![2]);
    conn.executing(1, "one");
    conn.executing(2, "two");
    conn.executing(9, "no such task");
    assert_eq!(conn.handle_mut(9), None);
    let mut all: Vec<&str> = conn.handles().copied().collect();
    all.sort();
    assert_eq!(all, ["one", "two"]);
    // ABORT TASK forgets task 1, but its execution is still stopping: the
    // driver can still reach its handle, and its ITT is not free yet.
    let o = send(&mut conn, tmf(0x100, 3, TmfFunction::ABORT_TASK, LUN0, 1));
    assert!(matches!(&o[0], Out::Cancel(v) if v == &[1]));
    assert_eq!(conn.tasks_in_flight(), 1);
    assert_eq!(conn.handle_mut(1).map(|h| *h), Some("one"));
    let o = send(&mut conn, read(1, 3, 512));
    assert_eq!(get!(&o[0], Reject).reason, RejectReason::TASK_IN_PROGRESS);
    // The TMF waits for it: its result ends it (dropped, handle and ITT
    // released) and lets the TMF be carried out.
    let o = outs(&p, conn.complete(1, with_data(512)));
    assert!(matches!(&o[..], [Out::Tmf(tm)] if tm.itt == 0x100 && tm.aborted == [1]), "{o:?}");
    assert_eq!(conn.handle_mut(1), None);
    assert_eq!(executes(&send(&mut conn, read(1, 4, 512))), vec![1]);
    // A normal completion answers and drops the handle.
    let o = outs(&p, conn.complete(2, with_data(512)));
    assert_eq!(get!(&o[0], DataIn).itt, 2);
    assert_eq!(conn.handles().count(), 0);
}

/// The 30 s wait of a task management function for the commands it aborts,
/// on the virtual clock: when it gives up, the TMF is carried out and
/// answered, the initiator may reuse the ITT, and the old execution's late
/// result is matched to its own task instance, never to the new task.
#[test]
fn a_late_completion_after_the_tmf_wait_does_not_answer_a_reused_itt() {
    let p = params();
    let t0 = std::time::Instant::now();
    let mut conn: TargetConnection<&str> = TargetConnection::with_handles(p.clone(), cfg(16), STAT0, 1);
    let timers = crate::timeout::ConnTimeouts {
        nop_interval: None,
        pdu_timeout: PDU_TIMEOUT,
        write_data_timeout: WRITE_DATA_TIMEOUT,
        abort_wait: ABORT_WAIT,
    };
    conn.start_timers(timers, t0);
    let send = |conn: &mut TargetConnection<&str>, now: std::time::Instant, h: Header| {
        let a = conn.on_pdu(wire(&p, &h, &[], &[]));
        conn.bytes_received(now, 0);
        outs(&p, a)
    };
    let o = send(&mut conn, t0, read(1, 1, 512));
    let old = exec(&o[0]).id;
    conn.executing(1, "old");
    // ABORT TASK: cancelled at once, carried out once the task has stopped.
    let at = t0 + secs(1);
    let o = send(&mut conn, at, tmf(0x100, 2, TmfFunction::ABORT_TASK, LUN0, 1));
    assert!(matches!(&o[..], [Out::Cancel(v)] if v == &[1]), "{o:?}");
    assert_eq!(conn.poll_timeout(), Some(at + ABORT_WAIT));
    assert!(conn.handle_timeout(at + ABORT_WAIT - secs(1)).unwrap().is_empty());
    let o = send(&mut conn, at + secs(2), read(1, 2, 512));
    assert_eq!(get!(&o[0], Reject).reason, RejectReason::TASK_IN_PROGRESS, "not free while the TMF waits");
    // It never stops: after the wait the TMF is carried out anyway.
    let o = outs(&p, conn.handle_timeout(at + ABORT_WAIT).unwrap());
    assert!(matches!(&o[..], [Out::Tmf(tm)] if tm.itt == 0x100 && tm.aborted == [1]), "{o:?}");
    assert_eq!(conn.poll_timeout(), None);
    let o = outs(&p, conn.tmf_done(0x100, TmfResponse::COMPLETE));
    assert_eq!(get!(&o[0], TaskMgmtResponse).response, TmfResponse::COMPLETE);
    // The initiator, told the task is gone, reuses ITT 1.
    let o = send(&mut conn, at + ABORT_WAIT + secs(1), read(1, 3, 512));
    let new = exec(&o[0]).id;
    assert_ne!(new, old);
    conn.executing(1, "new");
    assert_eq!(conn.handle_mut(1).map(|h| *h), Some("new"));
    assert_eq!(conn.handles().count(), 2, "the old execution is still stopping");
    // The old execution finally ends: its result is dropped, the new task
    // is untouched.
    assert!(outs(&p, conn.complete_task(old, with_data(100))).is_empty());
    assert_eq!(conn.handles().count(), 1);
    assert_eq!(conn.tasks_in_flight(), 1);
    let o = outs(&p, conn.complete_task(new, with_data(512)));
    let d = get!(&o[0], DataIn);
    assert_eq!((d.itt, body(&o[0]).len(), d.has_status), (1, 512, true));
    assert_eq!(conn.handles().count(), 0);
}

/// A peer trickling one byte of a PDU every 29 s, under a 30 s
/// `pdu_timeout`, never leaves a 30 s gap: the deadline is the PDU's, from
/// its first byte, not the last byte's. Driven as the daemon does: wait
/// until `poll_timeout` or the next byte, whichever comes first.
#[test]
fn a_pdu_trickled_byte_by_byte_ends_within_pdu_timeout_of_its_start() {
    let t0 = std::time::Instant::now();
    let pdu_timeout = secs(30);
    let mut t = T::plain();
    t.conn.start_timers(
        crate::timeout::ConnTimeouts {
            nop_interval: None,
            pdu_timeout,
            write_data_timeout: WRITE_DATA_TIMEOUT,
            abort_wait: ABORT_WAIT,
        },
        t0,
    );
    // A whole PDU first: the stall watch starts with the next one.
    t.recv_at(t0, tur(1, 1), &[]);
    let start = t0 + secs(5);
    let mut buffered = 0usize;
    let mut now = start;
    let mut closed_at = None;
    while now <= start + secs(300) {
        buffered += 1;
        t.conn.bytes_received(now, buffered);
        let next_byte = now + secs(29);
        if let Some(wake) = t.conn.poll_timeout().filter(|w| *w <= next_byte) {
            if let Err(e) = t.timeout_at(wake) {
                assert_eq!(e, crate::timeout::Timeout::PduStall(pdu_timeout));
                closed_at = Some(wake);
                break;
            }
        }
        now = next_byte;
    }
    let closed_at = closed_at.expect("the trickle kept the connection open for 5 minutes");
    assert!(closed_at <= start + pdu_timeout, "closed {:?} after the PDU began", closed_at - start);

    // A PDU that completes, and another that begins in the same read, gets
    // a deadline of its own.
    let mut t = T::plain();
    t.conn.start_timers(
        crate::timeout::ConnTimeouts {
            nop_interval: None,
            pdu_timeout,
            write_data_timeout: WRITE_DATA_TIMEOUT,
            abort_wait: ABORT_WAIT,
        },
        t0,
    );
    t.conn.bytes_received(t0, 20);
    assert_eq!(t.conn.poll_timeout(), Some(t0 + pdu_timeout));
    t.conn.bytes_received(t0 + secs(20), 30);
    assert_eq!(t.conn.poll_timeout(), Some(t0 + pdu_timeout), "more bytes of the same PDU: same deadline");
    let later = t0 + secs(25);
    t.send(tur(1, 1), &[]);
    t.conn.bytes_received(later, 7);
    assert_eq!(t.conn.poll_timeout(), Some(later + pdu_timeout), "the next PDU began at {later:?}");
}

/// A write whose data trickles in, one small Data-Out every 29 s under a
/// 30 s `pdu_timeout`, never stalls; `write_data_timeout` bounds it from its
/// command instead: it ends with CHECK CONDITION, ABORTED COMMAND,
/// INITIATOR RESPONSE TIMEOUT, its reservation is given back, and the
/// Data-Out still coming is ignored on a connection that stays. A write
/// whose data comes in time is not touched. Driven as the daemon does: wait
/// until `poll_timeout` or the next PDU, whichever comes first.
#[test]
fn a_write_whose_data_trickles_ends_within_write_data_timeout_of_its_command() {
    let t0 = std::time::Instant::now();
    let pdu_timeout = secs(30);
    let write_data_timeout = secs(60);
    let mut t = solicit_only();
    let budget = crate::budget::WriteBudget::new(1 << 20);
    t.conn.set_write_budget(budget.clone());
    let timers =
        crate::timeout::ConnTimeouts { nop_interval: None, pdu_timeout, write_data_timeout, abort_wait: ABORT_WAIT };
    t.conn.start_timers(timers, t0);
    let start = t0 + secs(5);
    let o = t.recv_at(start, write(1, 1, 8192), &[]);
    let r2t = get!(&o[0], R2t);
    assert_eq!(budget.used(), 8192);
    let mut now = start;
    let mut sn = 0;
    let mut ended = None;
    while now <= start + secs(600) {
        let next_pdu = now + secs(29);
        if let Some(wake) = t.conn.poll_timeout().filter(|w| *w <= next_pdu) {
            let o = t.timeout_at(wake).expect("a trickle under pdu_timeout is not a stall");
            if !o.is_empty() {
                assert_eq!(o.len(), 1, "{o:?}");
                assert_check_condition(&o[0], 1, 0x0b, 0x4b, 0x06);
                ended = Some(wake);
                break;
            }
        }
        now = next_pdu;
        let o = t.recv_at(now, dout(1, r2t.ttt, sn, sn * 16, false), &pat(1, sn * 16, 16));
        assert!(o.is_empty(), "{o:?}");
        sn += 1;
    }
    let ended = ended.expect("the trickle kept the write open for 10 minutes");
    assert!(ended <= start + write_data_timeout + secs(1), "ended {:?} after the command", ended - start);
    assert!(ended >= start + write_data_timeout, "ended early: {:?}", ended - start);
    assert_eq!(budget.used(), 0, "its buffer and reservation are given back");
    assert_eq!(t.conn.tasks_in_flight(), 0);
    assert!(!t.conn.awaiting_data_out());
    assert_eq!(t.conn.poll_timeout(), None, "no timer left for it");
    // The rest of its data is ignored; the connection stays.
    let o = t.recv_at(ended + secs(1), dout(1, r2t.ttt, sn, sn * 16, false), &pat(1, sn * 16, 16));
    assert!(o.is_empty(), "{o:?}");
    assert!(t.timeout_at(ended + secs(3600)).unwrap().is_empty());

    // A write whose data arrives within the limit, though slowly, runs.
    let at = ended + secs(2);
    let r2t = get!(&t.recv_at(at, write(2, 2, 1024), &[])[0], R2t);
    assert_eq!(t.conn.poll_timeout(), Some(at + pdu_timeout), "the stall watch comes first");
    assert!(t.recv_at(at + secs(20), dout(2, r2t.ttt, 0, 0, false), &pat(2, 0, 256)).is_empty());
    assert_eq!(t.conn.poll_timeout(), Some(at + secs(50)));
    assert!(t.recv_at(at + secs(40), dout(2, r2t.ttt, 1, 256, false), &pat(2, 256, 256)).is_empty());
    assert_eq!(t.conn.poll_timeout(), Some(at + write_data_timeout), "then the write's own deadline");
    assert!(t.timeout_at(at + secs(58)).unwrap().is_empty());
    let o = t.recv_at(at + secs(58), dout(2, r2t.ttt, 2, 512, true), &pat(2, 512, 512));
    assert_eq!(executes(&o), vec![2]);
    assert_eq!(&exec(&o[0]).data_out[..], &pat(2, 0, 1024)[..]);
    assert_eq!(t.conn.poll_timeout(), None);
    assert!(t.timeout_at(at + secs(3600)).unwrap().is_empty(), "nothing fires for a write that ran");
    let o = t.complete(2, good());
    assert_eq!(get!(&o[0], ScsiResponse).status, 0);
}
