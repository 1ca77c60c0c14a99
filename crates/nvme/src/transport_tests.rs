use super::*;
use crate::wire::command::{Opcode, Sgl};
use crate::wire::pdu::{decode, encode, CommonHeader, PduFlags};
use proptest::prelude::*;

fn t0() -> Instant {
    // A fixed base; the tests only add durations to it.
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn cfg() -> TransportConfig {
    TransportConfig {
        maxh2cdata: 4096,
        in_capsule_data: 4096,
        max_data_transfer: 64 * 1024,
        max_write_bytes: 32 * 1024,
        max_c2h_data: 4096,
        ..TransportConfig::default()
    }
}

/// A scripted host: encodes with its negotiated settings, decodes what the
/// target sends.
struct Host {
    tx: TxParams,
    rx: RxParams,
    inbox: BytesMut,
}

impl Host {
    fn new() -> Self {
        Self { tx: TxParams::default(), rx: RxParams::initial(Role::Host), inbox: BytesMut::new() }
    }
    fn bytes(&self, p: Pdu) -> Vec<u8> {
        encode(p, &self.tx).to_vec()
    }
    /// Takes the target's actions: Sends are decoded into PDUs.
    fn collect(&mut self, q: &mut TargetQueue) -> (Vec<Pdu>, Vec<Capsule>, Option<CloseReason>) {
        let (mut pdus, mut exec, mut close) = (vec![], vec![], None);
        for a in q.drain_actions().collect::<Vec<_>>() {
            match a {
                Action::Send(e) => self.inbox.extend_from_slice(&e.to_vec()),
                Action::Execute(c) => exec.push(c),
                Action::Close(r) => close = Some(r),
            }
        }
        while let Some(p) = decode(&mut self.inbox, &self.rx).expect("target sends valid PDUs") {
            pdus.push(p);
        }
        (pdus, exec, close)
    }
}

fn feed(q: &mut TargetQueue, bytes: &[u8], now: Instant) {
    let mut b = BytesMut::from(bytes);
    q.on_bytes(&mut b, now);
}

/// A queue past ICReq with the given digests; the host is set up to match.
fn connected(hdgst: bool, ddgst: bool) -> (TargetQueue, Host) {
    let mut q = TargetQueue::new(cfg(), t0());
    let mut h = Host::new();
    let ic = h.bytes(Pdu::IcReq(IcReq { pfv: 0, hpda: 0, hdgst, ddgst, maxr2t: 0 }));
    feed(&mut q, &ic, t0());
    let (pdus, _, close) = h.collect(&mut q);
    assert_eq!(close, None);
    let Pdu::IcResp(r) = &pdus[0] else { panic!("{pdus:?}") };
    assert_eq!((r.pfv, r.cpda, r.hdgst, r.ddgst, r.maxh2cdata), (0, 0, hdgst, ddgst, 4096));
    h.tx = TxParams { hdgst, ddgst, pda: 0 };
    h.rx = RxParams { role: Role::Host, hdgst, ddgst, pda: 0, max_capsule_data: 0, max_data: 1 << 20 };
    (q, h)
}

fn write_sqe(cid: u16, len: u32, kind: SglType) -> Sqe {
    let mut s = Sqe::new(Opcode::WRITE, cid, 1);
    s.set_sgl(Sgl { addr: 0, len, kind });
    s
}

fn read_sqe(cid: u16, len: u32) -> Sqe {
    let mut s = Sqe::new(Opcode::READ, cid, 1);
    s.set_sgl(Sgl { addr: 0, len, kind: SglType::TRANSPORT_DATA_BLOCK });
    s
}

fn pattern(n: usize) -> Bytes {
    Bytes::from((0..n).map(|i| (i * 7 + 3) as u8).collect::<Vec<_>>())
}

fn term_of(pdus: &[Pdu]) -> (TermReqFes, u32) {
    match pdus.last() {
        Some(Pdu::C2HTermReq(t)) => (t.fes, t.fei),
        p => panic!("expected a C2HTermReq, got {p:?}"),
    }
}

fn status_of(pdus: &[Pdu]) -> Status {
    match pdus.last() {
        Some(Pdu::CapsuleResp { cqe }) => cqe.status,
        p => panic!("expected a CapsuleResp, got {p:?}"),
    }
}

#[test]
fn in_capsule_write_executes_with_its_data() {
    for (hd, dd) in [(false, false), (true, true), (true, false), (false, true)] {
        let (mut q, mut h) = connected(hd, dd);
        let data = pattern(4096);
        let sqe = write_sqe(5, 4096, SglType::DATA_BLOCK_OFFSET);
        feed(&mut q, &h.bytes(Pdu::CapsuleCmd { sqe, data: data.clone() }), t0());
        let (pdus, exec, _) = h.collect(&mut q);
        assert!(pdus.is_empty());
        assert_eq!(exec, vec![Capsule { sqe, data, read_len: 0 }]);
        assert_eq!(q.write_bytes_held(), 4096);
        q.complete(Cqe::new(5, Status::SUCCESS), None, t0()).unwrap();
        let (pdus, _, _) = h.collect(&mut q);
        assert_eq!(pdus, vec![Pdu::CapsuleResp { cqe: Cqe { sqhd: 1, ..Cqe::new(5, Status::SUCCESS) } }]);
        assert_eq!(q.write_bytes_held(), 0);
        assert_eq!(q.outstanding(), 0);
    }
}

#[test]
fn byte_at_a_time_and_every_split() {
    let (_, h) = connected(true, true);
    let data = pattern(1000);
    let sqe = write_sqe(1, 1000, SglType::DATA_BLOCK_OFFSET);
    let mut stream = h.bytes(Pdu::CapsuleCmd { sqe, data: data.clone() });
    stream.extend(h.bytes(Pdu::CapsuleCmd { sqe: Sqe::new(Opcode::FLUSH, 2, 1), data: Bytes::new() }));
    for split in 0..=stream.len() {
        let (mut q, _) = connected(true, true);
        let mut b = BytesMut::new();
        let mut exec = vec![];
        for part in [&stream[..split], &stream[split..]] {
            b.extend_from_slice(part);
            q.on_bytes(&mut b, t0());
            exec.extend(q.drain_actions().map(|a| match a {
                Action::Execute(c) => c.sqe.cid(),
                a => panic!("{a:?}"),
            }));
        }
        assert_eq!(exec, vec![1, 2], "split {split}");
        assert!(b.is_empty());
    }
    let (mut q, _) = connected(true, true);
    let mut b = BytesMut::new();
    let mut n = 0;
    for &byte in &stream {
        b.extend_from_slice(&[byte]);
        q.on_bytes(&mut b, t0());
        n += q.drain_actions().filter(|a| matches!(a, Action::Execute(_))).count();
    }
    assert_eq!(n, 2);
}

#[test]
fn r2t_flow_with_several_h2c_data() {
    for (hd, dd) in [(false, false), (true, true)] {
        let (mut q, mut h) = connected(hd, dd);
        let data = pattern(10_000);
        let sqe = write_sqe(9, 10_000, SglType::TRANSPORT_DATA_BLOCK);
        feed(&mut q, &h.bytes(Pdu::CapsuleCmd { sqe, data: Bytes::new() }), t0());
        let (pdus, exec, _) = h.collect(&mut q);
        assert!(exec.is_empty());
        let [Pdu::R2T(r)] = &pdus[..] else { panic!("{pdus:?}") };
        assert_eq!((r.cid, r.offset, r.len), (9, 0, 10_000));
        // The host splits into ≤ MAXH2CDATA pieces.
        let mut off = 0;
        let mut stream = vec![];
        while off < 10_000 {
            let n = 4096.min(10_000 - off);
            let d = DataPdu {
                cid: 9,
                ttag: r.ttag,
                offset: off as u32,
                data: data.slice(off..off + n),
                last: off + n == 10_000,
                success: false,
            };
            stream.extend(h.bytes(Pdu::H2CData(d)));
            off += n;
        }
        feed(&mut q, &stream, t0());
        let (pdus, exec, _) = h.collect(&mut q);
        assert!(pdus.is_empty());
        assert_eq!(exec, vec![Capsule { sqe, data, read_len: 0 }]);
        q.complete(Cqe::new(9, Status::SUCCESS), None, t0()).unwrap();
        assert_eq!(status_of(&h.collect(&mut q).0), Status::SUCCESS);
    }
}

#[test]
fn tiny_h2c_pieces_are_gathered_into_one_buffer() {
    let (mut q, mut h) = connected(true, true);
    let data = pattern(3000);
    let r = r2t_for(&mut q, &mut h, 1, 3000);
    let mut stream = vec![];
    for off in 0..3000usize {
        let d = DataPdu {
            cid: 1,
            ttag: r.ttag,
            offset: off as u32,
            data: data.slice(off..off + 1),
            last: off == 2999,
            success: false,
        };
        stream.extend(h.bytes(Pdu::H2CData(d)));
    }
    let mut b = BytesMut::new();
    for (i, c) in stream.chunks(97).enumerate() {
        b.extend_from_slice(c);
        q.on_bytes(&mut b, t0());
        if i == 100 {
            assert!(q.buffered_bytes() > 0 && q.buffered_bytes() < 3000);
        }
    }
    let (pdus, exec, _) = h.collect(&mut q);
    assert!(pdus.is_empty());
    assert_eq!(exec[0].data, data);
}

#[test]
fn read_is_split_into_c2h_data() {
    for (hd, dd) in [(false, false), (true, true)] {
        let (mut q, mut h) = connected(hd, dd);
        let sqe = read_sqe(3, 10_000);
        feed(&mut q, &h.bytes(Pdu::CapsuleCmd { sqe, data: Bytes::new() }), t0());
        let (_, exec, _) = h.collect(&mut q);
        assert_eq!(exec, vec![Capsule { sqe, data: Bytes::new(), read_len: 10_000 }]);
        let data = pattern(10_000);
        let cqe = Cqe { result: 0, sqhd: 1, sqid: 1, cid: 3, status: Status::SUCCESS };
        // More than the SGL length is cut.
        let mut long = data.to_vec();
        long.extend([0xEE; 100]);
        q.complete(cqe, Some(Bytes::from(long)), t0()).unwrap();
        let (pdus, _, _) = h.collect(&mut q);
        assert_eq!(pdus.len(), 4);
        let mut got = vec![];
        for (i, p) in pdus[..3].iter().enumerate() {
            let Pdu::C2HData(d) = p else { panic!("{p:?}") };
            assert_eq!(d.cid, 3);
            assert_eq!(d.offset as usize, got.len());
            assert!(d.data.len() <= 4096);
            assert_eq!(d.last, i == 2);
            assert!(!d.success);
            got.extend_from_slice(&d.data);
        }
        assert_eq!(got, data);
        assert_eq!(pdus[3], Pdu::CapsuleResp { cqe });
    }
}

#[test]
fn failed_read_sends_no_data() {
    let (mut q, mut h) = connected(false, false);
    feed(&mut q, &h.bytes(Pdu::CapsuleCmd { sqe: read_sqe(3, 512), data: Bytes::new() }), t0());
    h.collect(&mut q);
    q.complete(Cqe::new(3, Status::LBA_OUT_OF_RANGE), Some(pattern(512)), t0()).unwrap();
    let (pdus, _, _) = h.collect(&mut q);
    assert_eq!(pdus, vec![Pdu::CapsuleResp { cqe: Cqe { sqhd: 1, ..Cqe::new(3, Status::LBA_OUT_OF_RANGE) } }]);
    assert_eq!(q.complete(Cqe::new(3, Status::SUCCESS), None, t0()), Err(CompleteError::UnknownCid(3)));
}

#[test]
fn commands_refused_without_executing() {
    let cases: Vec<(Sqe, Bytes, Status)> = vec![
        (write_sqe(1, 512, SglType(0x00)), Bytes::new(), Status::SGL_DESCRIPTOR_TYPE_INVALID),
        (write_sqe(1, 512, SglType(0x02)), Bytes::new(), Status::SGL_DESCRIPTOR_TYPE_INVALID),
        (write_sqe(1, 512, SglType::DATA_BLOCK_OFFSET), pattern(256), Status::DATA_SGL_LENGTH_INVALID),
        (write_sqe(1, 256, SglType::TRANSPORT_DATA_BLOCK), pattern(256), Status::INVALID_FIELD),
        (write_sqe(1, 64 * 1024 + 1, SglType::TRANSPORT_DATA_BLOCK), Bytes::new(), Status::INVALID_FIELD),
        (read_sqe(1, 64 * 1024 + 1), Bytes::new(), Status::INVALID_FIELD),
        (Sqe::new(Opcode::FLUSH, 1, 1), pattern(16), Status::INVALID_FIELD),
        (Sqe::new(Opcode(0x03), 1, 1), Bytes::new(), Status::INVALID_FIELD),
        (
            {
                let mut s = read_sqe(1, 16);
                s.set_sgl(Sgl { addr: 0, len: 16, kind: SglType::DATA_BLOCK_OFFSET });
                s
            },
            pattern(16),
            Status::INVALID_FIELD,
        ),
        (
            {
                let mut s = write_sqe(1, 16, SglType::DATA_BLOCK_OFFSET);
                s.set_sgl(Sgl { addr: 4, len: 16, kind: SglType::DATA_BLOCK_OFFSET });
                s
            },
            pattern(16),
            Status::SGL_OFFSET_INVALID,
        ),
    ];
    for (sqe, data, want) in cases {
        let (mut q, mut h) = connected(false, false);
        feed(&mut q, &h.bytes(Pdu::CapsuleCmd { sqe, data }), t0());
        let (pdus, exec, close) = h.collect(&mut q);
        assert!(exec.is_empty() && close.is_none(), "{sqe:?}");
        assert_eq!(status_of(&pdus), want, "{sqe:?}");
        assert_eq!(q.outstanding(), 0);
        assert_eq!(q.stats().refused, 1);
    }
}

#[test]
fn zero_length_sgl_executes_without_data() {
    // Linux sends a null transport SGL for Set Features without a buffer.
    let (mut q, mut h) = connected(false, false);
    let mut sqe = Sqe::new(Opcode::SET_FEATURES, 4, 0);
    sqe.set_sgl(Sgl { addr: 0, len: 0, kind: SglType::TRANSPORT_DATA_BLOCK });
    feed(&mut q, &h.bytes(Pdu::CapsuleCmd { sqe, data: Bytes::new() }), t0());
    let (pdus, exec, _) = h.collect(&mut q);
    assert!(pdus.is_empty());
    assert_eq!(exec, vec![Capsule { sqe, data: Bytes::new(), read_len: 0 }]);
}

#[test]
fn cid_conflict() {
    let (mut q, mut h) = connected(false, false);
    let sqe = read_sqe(7, 512);
    feed(&mut q, &h.bytes(Pdu::CapsuleCmd { sqe, data: Bytes::new() }), t0());
    feed(&mut q, &h.bytes(Pdu::CapsuleCmd { sqe, data: Bytes::new() }), t0());
    let (pdus, exec, _) = h.collect(&mut q);
    assert_eq!(exec.len(), 1);
    assert_eq!(status_of(&pdus), Status::COMMAND_ID_CONFLICT);
    // The first one is still there.
    assert_eq!(q.outstanding(), 1);
    q.complete(Cqe::new(7, Status::SUCCESS), Some(pattern(512)), t0()).unwrap();
}

#[test]
fn queue_size_is_enforced() {
    let (mut q, mut h) = connected(false, false);
    q.set_queue_size(3);
    for cid in 0..4 {
        feed(&mut q, &h.bytes(Pdu::CapsuleCmd { sqe: read_sqe(cid, 512), data: Bytes::new() }), t0());
    }
    let (pdus, exec, close) = h.collect(&mut q);
    assert_eq!(exec.len(), 4);
    assert!(close.is_none());
    assert!(pdus.is_empty());
    feed(&mut q, &h.bytes(Pdu::CapsuleCmd { sqe: read_sqe(9, 512), data: Bytes::new() }), t0());
    let (pdus, _, close) = h.collect(&mut q);
    assert_eq!(term_of(&pdus), (TermReqFes::PDU_SEQUENCE_ERROR, 0));
    assert!(matches!(close, Some(CloseReason::Fatal { .. })));
    assert!(q.is_closed());
    assert_eq!(q.complete(Cqe::new(0, Status::SUCCESS), None, t0()), Err(CompleteError::Closed));
}

#[test]
fn connect_sets_qid_and_capsule_limit() {
    let mut c = TransportConfig { in_capsule_data: 1024, ..cfg() };
    c.admin_in_capsule_data = 8192;
    let mut q = TargetQueue::new(c, t0());
    let mut h = Host::new();
    feed(&mut q, &h.bytes(Pdu::IcReq(IcReq { pfv: 0, hpda: 0, hdgst: false, ddgst: false, maxr2t: 0 })), t0());
    h.collect(&mut q);
    let mut sqe = Sqe::fabrics(FabricsType::CONNECT, 1);
    sqe.set_cdw(10, 2 << 16);
    sqe.set_sgl(Sgl { addr: 0, len: 1024, kind: SglType::DATA_BLOCK_OFFSET });
    feed(&mut q, &h.bytes(Pdu::CapsuleCmd { sqe, data: pattern(1024) }), t0());
    let (_, exec, _) = h.collect(&mut q);
    assert_eq!(exec.len(), 1);
    assert_eq!(q.qid(), Some(2));
    // Now an I/O queue: 2048 bytes in a capsule is over the limit.
    let w = write_sqe(2, 2048, SglType::DATA_BLOCK_OFFSET);
    feed(&mut q, &h.bytes(Pdu::CapsuleCmd { sqe: w, data: pattern(2048) }), t0());
    let (pdus, _, _) = h.collect(&mut q);
    assert_eq!(term_of(&pdus), (TermReqFes::DATA_LIMIT_EXCEEDED, 0));
}

#[test]
fn sq_head_and_sqid_are_stamped() {
    let connect = |cattr: u32| {
        let mut q = TargetQueue::new(cfg(), t0());
        let mut h = Host::new();
        feed(&mut q, &h.bytes(Pdu::IcReq(IcReq { pfv: 0, hpda: 0, hdgst: false, ddgst: false, maxr2t: 0 })), t0());
        h.collect(&mut q);
        let mut sqe = Sqe::fabrics(FabricsType::CONNECT, 1);
        sqe.set_cdw(10, 3 << 16);
        sqe.set_cdw(11, 3 | (cattr << 16));
        sqe.set_sgl(Sgl { addr: 0, len: 1024, kind: SglType::DATA_BLOCK_OFFSET });
        feed(&mut q, &h.bytes(Pdu::CapsuleCmd { sqe, data: pattern(1024) }), t0());
        h.collect(&mut q);
        q.set_queue_size(3);
        q.complete(Cqe::new(1, Status::SUCCESS), None, t0()).unwrap();
        let mut heads = vec![];
        for cid in 2..7 {
            feed(&mut q, &h.bytes(Pdu::CapsuleCmd { sqe: Sqe::new(Opcode::FLUSH, cid, 1), data: Bytes::new() }), t0());
            q.complete(Cqe::new(cid, Status::SUCCESS), None, t0()).unwrap();
        }
        for p in h.collect(&mut q).0 {
            let Pdu::CapsuleResp { cqe } = p else { panic!() };
            assert_eq!(cqe.sqid, 3);
            heads.push(cqe.sqhd);
        }
        heads
    };
    // Queue of 4 entries: the head wraps.
    assert_eq!(connect(0), vec![1, 2, 3, 0, 1, 2]);
    // CATTR bit 2: SQ flow control disabled, sqhd 0.
    assert_eq!(connect(0x04), vec![0; 6]);
}

#[test]
fn write_budget_delays_r2t() {
    // Budget 32 KiB: two 16 KiB writes get R2Ts, the third waits.
    let (mut q, mut h) = connected(false, false);
    for cid in 0..3 {
        feed(
            &mut q,
            &h.bytes(Pdu::CapsuleCmd { sqe: write_sqe(cid, 16384, SglType::TRANSPORT_DATA_BLOCK), data: Bytes::new() }),
            t0(),
        );
    }
    let (pdus, _, _) = h.collect(&mut q);
    let r2ts: Vec<R2t> = pdus.iter().filter_map(|p| if let Pdu::R2T(r) = p { Some(*r) } else { None }).collect();
    assert_eq!(r2ts.iter().map(|r| r.cid).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(q.write_bytes_held(), 32768);
    // Send write 0's data, execute, complete: write 2 gets its R2T.
    let data = pattern(16384);
    let mut stream = vec![];
    for i in 0..4 {
        let d = DataPdu {
            cid: 0,
            ttag: r2ts[0].ttag,
            offset: i * 4096,
            data: data.slice(i as usize * 4096..(i as usize + 1) * 4096),
            last: i == 3,
            success: false,
        };
        stream.extend(h.bytes(Pdu::H2CData(d)));
    }
    feed(&mut q, &stream, t0());
    let (pdus, exec, _) = h.collect(&mut q);
    assert!(pdus.is_empty());
    assert_eq!(exec[0].data, data);
    q.complete(Cqe::new(0, Status::SUCCESS), None, t0()).unwrap();
    let (pdus, _, _) = h.collect(&mut q);
    assert_eq!(pdus.len(), 2);
    assert!(matches!(pdus[1], Pdu::R2T(R2t { cid: 2, len: 16384, .. })));
    assert_eq!(q.write_bytes_held(), 32768);
}

fn r2t_for(q: &mut TargetQueue, h: &mut Host, cid: u16, len: u32) -> R2t {
    feed(
        q,
        &h.bytes(Pdu::CapsuleCmd { sqe: write_sqe(cid, len, SglType::TRANSPORT_DATA_BLOCK), data: Bytes::new() }),
        t0(),
    );
    let (pdus, _, _) = h.collect(q);
    match pdus[..] {
        [Pdu::R2T(r)] => r,
        _ => panic!("{pdus:?}"),
    }
}

#[test]
fn malformed_h2c_data_is_fatal_with_the_field() {
    type Mk = fn(R2t) -> DataPdu;
    let d = |cid, ttag, offset, n: usize, last| DataPdu { cid, ttag, offset, data: pattern(n), last, success: false };
    let cases: Vec<(Mk, (TermReqFes, u32))> = vec![
        (
            |r| DataPdu { cid: r.cid + 1, ttag: r.ttag, offset: 0, data: pattern(100), last: false, success: false },
            (TermReqFes::INVALID_HEADER_FIELD, field::CCCID),
        ),
        (
            |r| DataPdu { cid: r.cid, ttag: r.ttag + 1, offset: 0, data: pattern(100), last: false, success: false },
            (TermReqFes::INVALID_HEADER_FIELD, field::TTAG),
        ),
        (
            |r| DataPdu { cid: r.cid, ttag: r.ttag, offset: 100, data: pattern(100), last: false, success: false },
            (TermReqFes::INVALID_HEADER_FIELD, field::DATAO),
        ),
        (
            |r| DataPdu { cid: r.cid, ttag: r.ttag, offset: 7000, data: pattern(1200), last: true, success: false },
            (TermReqFes::DATA_OUT_OF_RANGE, 0),
        ),
        (
            |r| DataPdu { cid: r.cid, ttag: r.ttag, offset: 0, data: pattern(100), last: true, success: false },
            (TermReqFes::INVALID_HEADER_FIELD, field::FLAGS),
        ),
        (
            |r| DataPdu { cid: r.cid, ttag: r.ttag, offset: 0, data: pattern(4000), last: false, success: false },
            (TermReqFes::INVALID_HEADER_FIELD, 0),
        ),
    ];
    let _ = d;
    for (i, (mk, want)) in cases.into_iter().enumerate() {
        let (mut q, mut h) = connected(false, false);
        let len = if i == 5 { 4000 } else { 8000 };
        let r = r2t_for(&mut q, &mut h, 1, len);
        let mut p = mk(r);
        if i == 5 {
            // Complete without DATA_LAST is a FLAGS error.
            p.last = false;
        }
        feed(&mut q, &h.bytes(Pdu::H2CData(p)), t0());
        let (pdus, exec, close) = h.collect(&mut q);
        assert!(exec.is_empty());
        let want = if i == 5 { (TermReqFes::INVALID_HEADER_FIELD, field::FLAGS) } else { want };
        assert_eq!(term_of(&pdus), want, "case {i}");
        assert_eq!(close, Some(CloseReason::Fatal { fes: want.0, fei: want.1 }));
        // The TermReq carries the offending header.
        let Some(Pdu::C2HTermReq(t)) = pdus.last() else { unreachable!() };
        assert_eq!(t.data.len(), 24);
        assert_eq!(t.data[0], PduType::H2C_DATA.0);
    }
    // H2CData over MAXH2CDATA: refused from its header.
    let (mut q, mut h) = connected(false, false);
    let r = r2t_for(&mut q, &mut h, 1, 8000);
    let ch = CommonHeader { pdu_type: PduType::H2C_DATA, flags: PduFlags(0), hlen: 24, pdo: 24, plen: 24 + 4097 };
    let _ = r;
    feed(&mut q, &ch.encode(), t0());
    assert_eq!(term_of(&h.collect(&mut q).0), (TermReqFes::DATA_LIMIT_EXCEEDED, 0));
    // H2CData for a read (no R2T).
    let (mut q, mut h) = connected(false, false);
    feed(&mut q, &h.bytes(Pdu::CapsuleCmd { sqe: read_sqe(4, 512), data: Bytes::new() }), t0());
    feed(&mut q, &h.bytes(Pdu::H2CData(d(4, 0, 0, 512, true))), t0());
    assert_eq!(term_of(&h.collect(&mut q).0), (TermReqFes::INVALID_HEADER_FIELD, field::CCCID));
}

#[test]
fn connection_establishment_errors() {
    // Something before ICReq.
    let mut q = TargetQueue::new(cfg(), t0());
    let mut h = Host::new();
    feed(&mut q, &h.bytes(Pdu::CapsuleCmd { sqe: read_sqe(1, 512), data: Bytes::new() })[..8], t0());
    let (pdus, _, close) = h.collect(&mut q);
    assert_eq!(term_of(&pdus), (TermReqFes::PDU_SEQUENCE_ERROR, 0));
    assert!(close.is_some());
    // A second ICReq.
    let (mut q, mut h) = connected(false, false);
    feed(&mut q, &h.bytes(Pdu::IcReq(IcReq { pfv: 0, hpda: 0, hdgst: false, ddgst: false, maxr2t: 0 })), t0());
    assert_eq!(term_of(&h.collect(&mut q).0), (TermReqFes::PDU_SEQUENCE_ERROR, 0));
    // Unsupported PFV and HPDA.
    for (ic, fei) in [
        (IcReq { pfv: 1, hpda: 0, hdgst: false, ddgst: false, maxr2t: 0 }, field::PFV),
        (IcReq { pfv: 0, hpda: 32, hdgst: false, ddgst: false, maxr2t: 0 }, field::HPDA),
    ] {
        let mut q = TargetQueue::new(cfg(), t0());
        let mut h = Host::new();
        feed(&mut q, &h.bytes(Pdu::IcReq(ic)), t0());
        assert_eq!(term_of(&h.collect(&mut q).0), (TermReqFes::UNSUPPORTED_PARAMETER, fei));
    }
    // Digests refused by config are answered off.
    let mut q = TargetQueue::new(TransportConfig { header_digest: false, data_digest: false, ..cfg() }, t0());
    let mut h = Host::new();
    feed(&mut q, &h.bytes(Pdu::IcReq(IcReq { pfv: 0, hpda: 2, hdgst: true, ddgst: true, maxr2t: 3 })), t0());
    let (pdus, _, _) = h.collect(&mut q);
    assert!(matches!(pdus[0], Pdu::IcResp(IcResp { hdgst: false, ddgst: false, .. })));
    assert_eq!(q.negotiated().map(|n| (n.hpda, n.maxr2t)), Some((2, 3)));
    // H2CTermReq: close, no answer.
    let (mut q, mut h) = connected(true, true);
    let t = TermReq { fes: TermReqFes::HEADER_DIGEST_ERROR, fei: 0, data: pattern(24) };
    feed(&mut q, &h.bytes(Pdu::H2CTermReq(t)), t0());
    let (pdus, _, close) = h.collect(&mut q);
    assert!(pdus.is_empty());
    assert_eq!(close, Some(CloseReason::HostTerminated { fes: TermReqFes::HEADER_DIGEST_ERROR, fei: 0 }));
}

#[test]
fn digest_errors() {
    // Header digest: fatal FES 3.
    let (mut q, mut h) = connected(true, true);
    let mut v = h.bytes(Pdu::CapsuleCmd { sqe: read_sqe(1, 512), data: Bytes::new() });
    v[72] ^= 1;
    feed(&mut q, &v, t0());
    assert_eq!(term_of(&h.collect(&mut q).0), (TermReqFes::HEADER_DIGEST_ERROR, 0));
    assert_eq!(q.stats().header_digest_errors, 1);
    // In-capsule data digest: Transient Transport Error, the queue goes on.
    let (mut q, mut h) = connected(true, true);
    let mut v = h.bytes(Pdu::CapsuleCmd { sqe: write_sqe(1, 512, SglType::DATA_BLOCK_OFFSET), data: pattern(512) });
    let n = v.len();
    v[n - 1] ^= 1;
    feed(&mut q, &v, t0());
    let (pdus, exec, close) = h.collect(&mut q);
    assert!(exec.is_empty() && close.is_none());
    assert_eq!(status_of(&pdus), Status::TRANSIENT_TRANSPORT_ERROR);
    assert_eq!(q.stats().data_digest_errors, 1);
    // H2CData digest: the rest of the data is taken, then the command fails.
    let r = r2t_for(&mut q, &mut h, 2, 8192);
    let mut a = h.bytes(Pdu::H2CData(DataPdu {
        cid: 2,
        ttag: r.ttag,
        offset: 0,
        data: pattern(4096),
        last: false,
        success: false,
    }));
    let n = a.len();
    a[n - 1] ^= 1;
    a.extend(h.bytes(Pdu::H2CData(DataPdu {
        cid: 2,
        ttag: r.ttag,
        offset: 4096,
        data: pattern(4096),
        last: true,
        success: false,
    })));
    feed(&mut q, &a, t0());
    let (pdus, exec, close) = h.collect(&mut q);
    assert!(exec.is_empty() && close.is_none());
    assert_eq!(status_of(&pdus), Status::TRANSIENT_TRANSPORT_ERROR);
    assert_eq!(q.write_bytes_held(), 0);
    assert_eq!(q.outstanding(), 0);
}

#[test]
fn timers_on_a_virtual_clock() {
    let c = cfg();
    // Connect timeout.
    let mut q = TargetQueue::new(c.clone(), t0());
    assert_eq!(q.poll_timeout(), Some(t0() + c.connect_timeout));
    q.handle_timeout(t0() + c.connect_timeout - Duration::from_millis(1));
    assert!(!q.is_closed());
    q.handle_timeout(t0() + c.connect_timeout);
    assert_eq!(q.poll_action(), Some(Action::Close(CloseReason::ConnectTimeout)));
    assert_eq!(q.poll_timeout(), None);
    // PDU timeout: half a capsule.
    let (mut q, h) = connected(false, false);
    assert_eq!(q.poll_timeout(), None);
    let v = h.bytes(Pdu::CapsuleCmd { sqe: read_sqe(1, 512), data: Bytes::new() });
    let mut b = BytesMut::from(&v[..30]);
    let t1 = t0() + Duration::from_secs(1);
    q.on_bytes(&mut b, t1);
    assert_eq!(q.poll_timeout(), Some(t1 + c.pdu_timeout));
    // More bytes of the same PDU do not restart it.
    b.extend_from_slice(&v[30..40]);
    q.on_bytes(&mut b, t1 + Duration::from_secs(5));
    assert_eq!(q.poll_timeout(), Some(t1 + c.pdu_timeout));
    q.handle_timeout(t1 + c.pdu_timeout);
    assert_eq!(q.poll_action(), Some(Action::Close(CloseReason::PduTimeout)));
    // Write data timeout.
    let (mut q, mut h) = connected(false, false);
    let t2 = t0() + Duration::from_secs(2);
    feed(
        &mut q,
        &h.bytes(Pdu::CapsuleCmd { sqe: write_sqe(6, 8192, SglType::TRANSPORT_DATA_BLOCK), data: Bytes::new() }),
        t2,
    );
    let (pdus, _, _) = h.collect(&mut q);
    let Pdu::R2T(r) = pdus[0] else { panic!() };
    feed(
        &mut q,
        &h.bytes(Pdu::H2CData(DataPdu {
            cid: 6,
            ttag: r.ttag,
            offset: 0,
            data: pattern(4096),
            last: false,
            success: false,
        })),
        t2,
    );
    assert_eq!(q.poll_timeout(), Some(t2 + c.write_data_timeout));
    assert_eq!(q.buffered_bytes(), 4096);
    q.handle_timeout(t2 + c.write_data_timeout);
    let (pdus, exec, close) = h.collect(&mut q);
    assert!(exec.is_empty() && close.is_none());
    assert_eq!(status_of(&pdus), Status::TRANSIENT_TRANSPORT_ERROR);
    assert_eq!(q.write_bytes_held(), 0);
    assert_eq!(q.buffered_bytes(), 0);
    assert_eq!(q.poll_timeout(), None);
}

#[test]
fn huge_timeouts_do_not_overflow() {
    let c = TransportConfig {
        connect_timeout: Duration::MAX,
        pdu_timeout: Duration::MAX,
        write_data_timeout: Duration::MAX,
        ..cfg()
    };
    let mut q = TargetQueue::new(c, t0());
    assert!(q.poll_timeout().is_some());
    q.handle_timeout(t0() + Duration::from_secs(3600));
    assert!(!q.is_closed());
    let ic = Host::new().bytes(Pdu::IcReq(IcReq { pfv: 0, hpda: 0, hdgst: false, ddgst: false, maxr2t: 0 }));
    let mut b = BytesMut::from(&ic[..10]);
    q.on_bytes(&mut b, t0());
    assert!(!q.is_closed());
    assert!(q.poll_timeout().is_some());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_pdu_sequences_never_panic(
        ops in proptest::collection::vec((0u8..8, any::<u16>(), 0u32..20_000, any::<bool>(), 0usize..5000, any::<u8>()), 0..40),
        chunk in 1usize..300,
    ) {
        let (mut q, h) = connected(false, false);
        q.set_queue_size(7);
        let mut stream = vec![];
        let mut ttags = vec![0u16];
        let mut t = t0();
        let mut b = BytesMut::new();
        for (kind, cid, len, flag, n, sgl) in ops {
            let cid = cid % 12;
            let p = match kind {
                0 => Pdu::CapsuleCmd { sqe: write_sqe(cid, len, SglType::TRANSPORT_DATA_BLOCK), data: Bytes::new() },
                1 => Pdu::CapsuleCmd { sqe: write_sqe(cid, n as u32, SglType::DATA_BLOCK_OFFSET), data: pattern(n.min(4096)) },
                2 => Pdu::CapsuleCmd { sqe: read_sqe(cid, len), data: Bytes::new() },
                3 => Pdu::CapsuleCmd { sqe: write_sqe(cid, len, SglType(sgl)), data: Bytes::new() },
                4 | 5 => Pdu::H2CData(DataPdu {
                    cid,
                    ttag: ttags[usize::from(sgl) % ttags.len()],
                    offset: len % 8192,
                    data: pattern(n.clamp(1, 4096)),
                    last: flag,
                    success: false,
                }),
                6 => {
                    let _ = q.complete(Cqe::new(cid, Status::SUCCESS), flag.then(|| pattern(n)), t);
                    continue;
                }
                _ => {
                    t += Duration::from_secs(u64::from(sgl));
                    q.handle_timeout(t);
                    continue;
                }
            };
            stream.extend(h.bytes(p));
            for c in stream.chunks(chunk) {
                b.extend_from_slice(c);
                q.on_bytes(&mut b, t);
            }
            stream.clear();
            for a in q.drain_actions().collect::<Vec<_>>() {
                if let Action::Send(e) = a {
                    let mut b = BytesMut::from(&e.to_vec()[..]);
                    if let Ok(Some(Pdu::R2T(r))) = decode(&mut b, &h.rx) {
                        ttags.push(r.ttag);
                    }
                }
            }
            prop_assert!(q.buffered_bytes() <= 32 * 1024);
            prop_assert!(q.write_bytes_held() <= 32 * 1024 + 8 * 4096);
            prop_assert!(q.outstanding() <= 8);
            if q.is_closed() {
                break;
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(
        v in proptest::collection::vec(any::<u8>(), 0..2000),
        prefix_ic in any::<bool>(),
        chunk in 1usize..200,
    ) {
        let mut q = TargetQueue::new(cfg(), t0());
        let h = Host::new();
        let mut b = BytesMut::new();
        if prefix_ic {
            b.extend_from_slice(&h.bytes(Pdu::IcReq(IcReq { pfv: 0, hpda: 0, hdgst: false, ddgst: false, maxr2t: 0 })));
        }
        for c in v.chunks(chunk) {
            b.extend_from_slice(c);
            q.on_bytes(&mut b, t0());
            let _ = q.drain_actions().count();
            prop_assert!(b.len() <= 8192 + 200 + 128);
            if q.is_closed() {
                break;
            }
        }
    }
}
