use super::*;
use crate::transport::{Action, TargetQueue, TransportConfig};
use crate::wire::command::Opcode;
use std::collections::HashMap;
use std::time::Instant;

/// A host queue wired to a target queue in memory, with a fake controller
/// that stores written data by LBA (cdw10) and reads it back.
struct Pair {
    host: HostQueue,
    target: TargetQueue,
    h2t: BytesMut,
    t2h: BytesMut,
    store: HashMap<u32, Bytes>,
    done: Vec<(Cqe, Bytes)>,
    now: Instant,
    /// Split deliveries into pieces of this size.
    chunk: usize,
}

impl Pair {
    fn new(hcfg: HostConfig, tcfg: TransportConfig, chunk: usize) -> Self {
        let now = Instant::now();
        let mut p = Self {
            host: HostQueue::new(hcfg),
            target: TargetQueue::new(tcfg, now),
            h2t: BytesMut::new(),
            t2h: BytesMut::new(),
            store: HashMap::new(),
            done: vec![],
            now,
            chunk,
        };
        p.run();
        assert!(p.host.is_ready());
        p
    }

    fn run(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            let mut to_target = vec![];
            for e in self.host.drain_events() {
                match e {
                    HostEvent::Send(e) => to_target.extend(e.to_vec()),
                    HostEvent::Completed { cqe, data } => self.done.push((cqe, data)),
                    HostEvent::Close(r) => panic!("host closed: {r:?}"),
                }
            }
            for c in to_target.chunks(self.chunk) {
                moved = true;
                self.h2t.extend_from_slice(c);
                self.target.on_bytes(&mut self.h2t, self.now);
            }
            let mut to_host = vec![];
            while let Some(a) = self.target.poll_action() {
                moved = true;
                match a {
                    Action::Send(e) => to_host.extend(e.to_vec()),
                    Action::Execute(c) => {
                        let lba = c.sqe.cdw(10);
                        let cid = c.sqe.cid();
                        let (cqe, data) = if c.sqe.opcode() == Opcode::WRITE {
                            self.store.insert(lba, c.data);
                            (Cqe::new(cid, Status::SUCCESS), None)
                        } else {
                            let d = self.store.get(&lba).cloned().unwrap_or_default();
                            (Cqe::new(cid, Status::SUCCESS), Some(d))
                        };
                        self.target.complete(cqe, data, self.now).unwrap();
                    }
                    Action::Close(r) => panic!("target closed: {r:?}"),
                }
            }
            for c in to_host.chunks(self.chunk) {
                self.t2h.extend_from_slice(c);
                self.host.on_bytes(&mut self.t2h);
            }
            if !moved {
                return;
            }
        }
        panic!("no quiescence");
    }

    fn write(&mut self, cid: u16, lba: u32, data: Bytes) {
        let mut s = Sqe::new(Opcode::WRITE, cid, 1);
        s.set_cdw(10, lba);
        self.host.submit(s, Some(data), 0).unwrap();
    }
    fn read(&mut self, cid: u16, lba: u32, len: u32) {
        let mut s = Sqe::new(Opcode::READ, cid, 1);
        s.set_cdw(10, lba);
        self.host.submit(s, None, len).unwrap();
    }
}

fn pattern(n: usize, seed: u8) -> Bytes {
    Bytes::from((0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<_>>())
}

fn tcfg() -> TransportConfig {
    TransportConfig {
        maxh2cdata: 4096,
        in_capsule_data: 4096,
        max_c2h_data: 4096,
        max_write_bytes: 64 * 1024,
        ..TransportConfig::default()
    }
}

#[test]
fn writes_and_reads_against_the_target() {
    for (hd, dd) in [(false, false), (true, false), (false, true), (true, true)] {
        for chunk in [1usize, 7, 100_000] {
            let hcfg =
                HostConfig { header_digest: hd, data_digest: dd, in_capsule_data: 4096, ..HostConfig::default() };
            let mut p = Pair::new(hcfg, tcfg(), chunk);
            assert_eq!(p.host.icresp().map(|r| (r.hdgst, r.ddgst, r.maxh2cdata)), Some((hd, dd, 4096)));
            // In-capsule write.
            let small = pattern(3000, 1);
            p.write(1, 10, small.clone());
            // R2T write, split into 4 KiB H2CData.
            let big = pattern(20_000, 2);
            p.write(2, 20, big.clone());
            p.run();
            assert_eq!(p.done.len(), 2);
            assert!(p.done.iter().all(|(c, d)| c.status.is_success() && d.is_empty()));
            assert_eq!(p.store[&10], small);
            assert_eq!(p.store[&20], big);
            // Reads: split into C2HData by the target, gathered by the host.
            p.done.clear();
            p.read(3, 20, 20_000);
            p.read(4, 10, 3000);
            p.run();
            let got: HashMap<u16, Bytes> = p.done.iter().map(|(c, d)| (c.cid, d.clone())).collect();
            assert_eq!(got[&3], big);
            assert_eq!(got[&4], small);
            assert_eq!(p.host.outstanding(), 0);
            assert_eq!(p.target.outstanding(), 0);
            assert_eq!(p.target.write_bytes_held(), 0);
        }
    }
}

#[test]
fn submit_errors() {
    let mut h = HostQueue::new(HostConfig { queue_size: 1, ..HostConfig::default() });
    assert_eq!(h.submit(Sqe::new(Opcode::FLUSH, 1, 1), None, 0), Err(SubmitError::NotReady));
    let mut p = Pair::new(HostConfig { queue_size: 1, ..HostConfig::default() }, tcfg(), 1000);
    p.read(1, 0, 512);
    assert_eq!(p.host.submit(Sqe::new(Opcode::READ, 1, 1), None, 512), Err(SubmitError::CidInUse(1)));
    assert_eq!(p.host.submit(Sqe::new(Opcode::READ, 2, 1), None, 512), Err(SubmitError::QueueFull));
    p.run();
    assert_eq!(p.host.submit(Sqe::new(Opcode::WRITE, 2, 1), Some(pattern(8, 0)), 8), Err(SubmitError::Bidirectional));
}

#[test]
fn icresp_checks() {
    let ic = |r: IcResp| {
        let mut h = HostQueue::new(HostConfig::default());
        let _ = h.drain_events().count();
        let mut b = BytesMut::from(&pdu::encode(Pdu::IcResp(r), &TxParams::default()).to_vec()[..]);
        h.on_bytes(&mut b);
        (h.is_ready(), h.drain_events().collect::<Vec<_>>())
    };
    let good = IcResp { pfv: 0, cpda: 0, hdgst: false, ddgst: false, maxh2cdata: 8192 };
    assert!(ic(good).0);
    for bad in [
        IcResp { pfv: 1, ..good },
        IcResp { hdgst: true, ..good },
        IcResp { ddgst: true, ..good },
        IcResp { maxh2cdata: 1024, ..good },
        IcResp { cpda: 32, ..good },
    ] {
        let (ready, ev) = ic(bad);
        assert!(!ready);
        assert_eq!(ev, vec![HostEvent::Close(HostCloseReason::BadIcResp)]);
    }
}

#[test]
fn controller_violations_are_fatal() {
    let mut p = Pair::new(HostConfig::default(), tcfg(), 1000);
    p.read(1, 0, 100);
    let _ = p.host.drain_events().count();
    // C2HData beyond read_len.
    let d = DataPdu { cid: 1, ttag: 0, offset: 0, data: pattern(200, 0), last: true, success: false };
    let mut b = BytesMut::from(&pdu::encode(Pdu::C2HData(d), &TxParams::default()).to_vec()[..]);
    p.host.on_bytes(&mut b);
    let ev: Vec<_> = p.host.drain_events().collect();
    assert!(matches!(&ev[0], HostEvent::Send(_)));
    assert_eq!(ev[1], HostEvent::Close(HostCloseReason::Fatal { fes: TermReqFes::DATA_OUT_OF_RANGE, fei: 0 }));
    // Response for an unknown command; C2HTermReq closes.
    let mut p = Pair::new(HostConfig::default(), tcfg(), 1000);
    let mut b = BytesMut::from(
        &pdu::encode(Pdu::CapsuleResp { cqe: Cqe::new(9, Status::SUCCESS) }, &TxParams::default()).to_vec()[..],
    );
    p.host.on_bytes(&mut b);
    assert!(p.host.is_closed());
    let mut h = Pair::new(HostConfig::default(), tcfg(), 1000).host;
    let t = TermReq { fes: TermReqFes::PDU_SEQUENCE_ERROR, fei: 0, data: Bytes::new() };
    let mut b = BytesMut::from(&pdu::encode(Pdu::C2HTermReq(t), &TxParams::default()).to_vec()[..]);
    h.on_bytes(&mut b);
    assert_eq!(
        h.drain_events().last(),
        Some(HostEvent::Close(HostCloseReason::ControllerTerminated { fes: TermReqFes::PDU_SEQUENCE_ERROR, fei: 0 }))
    );
}

#[test]
fn data_success_completes_without_resp_and_digest_error_fails() {
    let hcfg = HostConfig { data_digest: true, ..HostConfig::default() };
    let mut h = HostQueue::new(hcfg);
    let _ = h.drain_events().count();
    let tx = TxParams { hdgst: false, ddgst: true, pda: 0 };
    let r = IcResp { pfv: 0, cpda: 0, hdgst: false, ddgst: true, maxh2cdata: 4096 };
    let mut b = BytesMut::from(&pdu::encode(Pdu::IcResp(r), &tx).to_vec()[..]);
    h.on_bytes(&mut b);
    h.submit(Sqe::new(Opcode::READ, 1, 1), None, 8).unwrap();
    h.submit(Sqe::new(Opcode::READ, 2, 1), None, 8).unwrap();
    let _ = h.drain_events().count();
    let d = DataPdu { cid: 1, ttag: 0, offset: 0, data: pattern(8, 0), last: true, success: true };
    b.extend_from_slice(&pdu::encode(Pdu::C2HData(d), &tx).to_vec());
    let d = DataPdu { cid: 2, ttag: 0, offset: 0, data: pattern(8, 0), last: true, success: false };
    let mut v = pdu::encode(Pdu::C2HData(d), &tx).to_vec();
    let n = v.len();
    v[n - 1] ^= 1;
    b.extend_from_slice(&v);
    b.extend_from_slice(&pdu::encode(Pdu::CapsuleResp { cqe: Cqe::new(2, Status::SUCCESS) }, &tx).to_vec());
    h.on_bytes(&mut b);
    let ev: Vec<_> = h.drain_events().collect();
    assert_eq!(
        ev,
        vec![
            HostEvent::Completed { cqe: Cqe::new(1, Status::SUCCESS), data: pattern(8, 0) },
            HostEvent::Completed { cqe: Cqe::new(2, Status::TRANSIENT_TRANSPORT_ERROR), data: Bytes::new() },
        ]
    );
}

#[test]
fn r2ts_must_come_in_order() {
    let mut p = Pair::new(HostConfig { in_capsule_data: 0, ..HostConfig::default() }, tcfg(), 1000);
    p.write(1, 0, pattern(8192, 0));
    let _ = p.host.drain_events().count();
    let r2t = |offset, len| {
        let r = pdu::R2t { cid: 1, ttag: 5, offset, len };
        BytesMut::from(&pdu::encode(Pdu::R2T(r), &TxParams::default()).to_vec()[..])
    };
    // Two R2Ts of 4 KiB in order: 2 H2CData (maxh2cdata 4096), each LAST.
    p.host.on_bytes(&mut r2t(0, 4096));
    p.host.on_bytes(&mut r2t(4096, 4096));
    let ev: Vec<_> = p.host.drain_events().collect();
    assert_eq!(ev.len(), 2);
    // Repeating one is refused.
    p.host.on_bytes(&mut r2t(0, 4096));
    let ev: Vec<_> = p.host.drain_events().collect();
    assert_eq!(
        ev.last(),
        Some(&HostEvent::Close(HostCloseReason::Fatal { fes: TermReqFes::INVALID_HEADER_FIELD, fei: field::DATAO }))
    );
}
