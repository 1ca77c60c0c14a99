//! Tests of the controller model, on a virtual clock (`Instant`s advanced by
//! hand, no sleeping).

use super::*;
use crate::model::CopyLimits;
use crate::wire::command::{Sgl, SglType};
use crate::wire::features::CAP_CHANGEABLE;
use crate::wire::identify::{parse_ns_descriptors, parse_ns_list};
use crate::wire::log::{parse_changed_ns, parse_discovery_log, AdrFam, SecType, SubType, TrType};
use proptest::prelude::*;

const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:0c6c5a3e-1111-2222-3333-444455556666";
const HOSTID: [u8; 16] = [0x0c; 16];
const SUBNQN: &str = "nqn.2024-01.io.oxcopy:vol";

fn ns(nsid: u32, block_size: u32, blocks: u64) -> NamespaceInfo {
    NamespaceInfo {
        nsid,
        block_size,
        blocks,
        nguid: [nsid as u8; 16],
        uuid: [0x40 | nsid as u8; 16],
        read_only: false,
        deallocate: true,
        copy: CopyLimits::default(),
    }
}

fn nvm_sub() -> Arc<SubsystemInfo> {
    Arc::new(SubsystemInfo::nvm(SUBNQN, "OX0001", "oxcopy", "0.1.0", vec![ns(1, 512, 1 << 21), ns(2, 4096, 1 << 18)]))
}

fn connect_sqe(cid: u16, qid: u16, sqsize: u16, kato: u32) -> Sqe {
    ConnectCommand { cid, recfmt: 0, qid, sqsize, cattr: 0, kato }.to_sqe()
}

fn connect_data(cntlid: u16, subnqn: &str, hostnqn: &str) -> Vec<u8> {
    ConnectData { hostid: HOSTID, cntlid, subnqn: subnqn.into(), hostnqn: hostnqn.into() }.build()
}

fn admin_connect(sub: &Arc<SubsystemInfo>, kato: u32, now: Instant) -> Controller {
    let req = ConnectRequest::parse(&connect_sqe(1, 0, 31, kato), &connect_data(0xFFFF, &sub.nqn, HOST)).unwrap();
    req.check_admin(Some(sub)).unwrap();
    Controller::new(sub.clone(), 1, &req, now)
}

fn io_req(qid: u16, sqsize: u16, cntlid: u16, host: &str) -> Result<ConnectRequest, ConnectReject> {
    ConnectRequest::parse(&connect_sqe(qid, qid, sqsize, 0), &connect_data(cntlid, SUBNQN, host))
}

fn reply(out: AdminOutcome) -> (Cqe, Option<Vec<u8>>) {
    match out {
        AdminOutcome::Reply { cqe, data } => (cqe, data),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn run(c: &mut Controller, sqe: Sqe, data: &[u8], now: Instant) -> (Cqe, Option<Vec<u8>>) {
    let len = sqe.sgl().len as usize;
    reply(c.admin(&sqe, data, len, now))
}

fn status(c: &mut Controller, sqe: Sqe, now: Instant) -> Status {
    run(c, sqe, &[], now).0.status
}

const CC_CONFIG: u32 = (6 << 16) | (4 << 20);

fn prop_set(c: &mut Controller, cc: u32, now: Instant) -> Status {
    let s = PropertySet { cid: 2, eight: false, offset: Property::CC, value: u64::from(cc) }.to_sqe();
    status(c, s, now)
}

fn prop_get(c: &mut Controller, p: Property, eight: bool, now: Instant) -> Result<u64, Status> {
    let (cqe, _) = run(c, PropertyGet { cid: 3, eight, offset: p }.to_sqe(), &[], now);
    if cqe.status.is_success() {
        Ok(cqe.result)
    } else {
        Err(cqe.status)
    }
}

fn enable(c: &mut Controller, now: Instant) {
    assert_eq!(prop_set(c, CC_CONFIG, now), Status::SUCCESS);
    assert_eq!(prop_set(c, CC_CONFIG | 1, now), Status::SUCCESS);
    assert!(c.is_ready());
}

fn identify(cns: Cns, nsid: u32) -> Sqe {
    IdentifyCommand { cid: 10, nsid, cns, cntid: 0, csi: 0 }.to_sqe()
}

fn set_feature(fid: FeatureId, v: u32) -> Sqe {
    SetFeatures { cid: 11, nsid: 0, fid, save: false, cdw11: v }.to_sqe()
}

fn get_feature(fid: FeatureId, sel: Select, cdw11: u32) -> Sqe {
    GetFeatures { cid: 12, nsid: 0, fid, sel, cdw11 }.to_sqe()
}

fn get_log(lid: LogId, len: u32, offset: u64, rae: bool) -> Sqe {
    GetLogPage::new(13, u32::MAX, lid, len, offset, rae).to_sqe()
}

/// What a Linux 6.1 host does on `nvme connect`, in its order.
#[test]
fn linux_host_connect_sequence() {
    let t0 = Instant::now();
    let sub = nvm_sub();
    // Admin queue Connect: SQSIZE 31 (NVME_AQ_DEPTH - 1), KATO 5 s.
    let mut c = admin_connect(&sub, 5000, t0);
    let ok = connect_accepted(1, c.cntlid());
    assert_eq!(ok.result, 1);
    assert!(ok.status.is_success());

    // nvme_enable_ctrl: CAP, then CC without EN, read back, CC with EN, poll CSTS.
    let cap = prop_get(&mut c, Property::CAP, true, t0).unwrap();
    assert_eq!(cap & 0xFFFF, 127, "MQES");
    assert_ne!(cap & (1 << 16), 0, "CQR");
    assert_eq!((cap >> 24) & 0xFF, 15, "TO");
    assert_eq!((cap >> 37) & 0xFF, 1, "CSS: NVM only");
    assert_eq!((cap >> 48) & 0xF, 0, "MPSMIN 4 KiB");
    assert_eq!(prop_get(&mut c, Property::CSTS, false, t0), Ok(0));
    assert_eq!(prop_set(&mut c, CC_CONFIG, t0), Status::SUCCESS);
    assert_eq!(prop_get(&mut c, Property::CC, false, t0), Ok(u64::from(CC_CONFIG)));
    assert_eq!(prop_set(&mut c, CC_CONFIG | 1, t0), Status::SUCCESS);
    assert_eq!(prop_get(&mut c, Property::CSTS, false, t0), Ok(1));
    assert_eq!(prop_get(&mut c, Property::VS, false, t0), Ok(0x0002_0000));

    // nvme_init_identify.
    let (cqe, data) = run(&mut c, identify(Cns::CONTROLLER, 0), &[], t0);
    assert!(cqe.status.is_success());
    let id = IdentifyController::parse(&data.unwrap()).unwrap();
    assert_eq!(id.cntlid, 1, "the host checks CNTLID against Connect's");
    assert_ne!(id.kas, 0, "keep-alive support is mandatory for fabrics");
    assert_eq!(id.subnqn, SUBNQN);
    assert_eq!(id.ver, VERSION);
    assert_eq!(id.cntrltype, ControllerType::IO);
    assert_eq!(id.ioccsz, (8192 + 64) / 16);
    assert_eq!(id.iorcsz, 1);
    assert_eq!(id.mdts, 8, "1 MiB = 2^8 4 KiB pages");
    assert_eq!(id.lpa & 0b10, 0, "no commands effects log: the host would read it");
    assert_eq!(id.oncs, 0x01CD);
    assert_eq!(id.ocfs, 0b0101);
    assert_eq!(id.maxcmd, 128);
    assert_eq!(id.nn, 1024);
    assert_eq!(id.oaes, 1 << 8);
    assert_eq!(id.sgls, 1 | (1 << 20));
    assert_eq!(id.vwc, 0x05);
    assert_eq!(id.ofcs, 1);
    assert_eq!(id.serial, "OX0001");
    // nvme_init_non_mdts_limits: CNS 06h, CSI NVM.
    let (cqe, data) =
        run(&mut c, IdentifyCommand { cid: 1, nsid: 0, cns: Cns::CSI_CONTROLLER, cntid: 0, csi: 0 }.to_sqe(), &[], t0);
    assert!(cqe.status.is_success());
    assert_eq!(IdentifyControllerNvm::parse(&data.unwrap()).unwrap(), IdentifyControllerNvm::default());
    // hwmon: SMART log.
    let (cqe, data) = run(&mut c, get_log(LogId::SMART, 512, 0, false), &[], t0);
    assert!(cqe.status.is_success());
    assert_eq!(SmartLog::parse(&data.unwrap()).unwrap().avail_spare, 100);
    // nvme_configure_timestamp (ONCS bit 6).
    let (cqe, _) = run(
        &mut c,
        set_feature(FeatureId::TIMESTAMP, 0),
        &Timestamp { millis: 1_700_000_000_000, attributes: 0 }.build(),
        t0,
    );
    assert!(cqe.status.is_success());
    // nvme_set_queue_count: 4 queues.
    let (cqe, _) = run(&mut c, set_feature(FeatureId::NUMBER_OF_QUEUES, 3 | (3 << 16)), &[], t0);
    assert_eq!((cqe.status, cqe.result), (Status::SUCCESS, 0x0003_0003));
    // nvme_enable_aen: OAES & supported.
    let (cqe, _) = run(&mut c, set_feature(FeatureId::ASYNC_EVENT_CONFIG, id.oaes), &[], t0);
    assert_eq!((cqe.status, cqe.result), (Status::SUCCESS, u64::from(id.oaes)));
    // Async event request, held.
    assert_eq!(c.admin(&Sqe::new(Opcode::ASYNC_EVENT_REQUEST, 20, 0), &[], 0, t0), AdminOutcome::Held);

    // I/O queues: SQSIZE 127 (queue_size 128 - 1), CNTLID from the admin Connect.
    for qid in 1..=4 {
        c.accept_io_queue(&io_req(qid, 127, 1, HOST).unwrap()).unwrap();
    }
    assert_eq!(c.accept_io_queue(&io_req(5, 127, 1, HOST).unwrap()), Err(ConnectReject::sqe(sqe_offset::QID)));
    assert_eq!(
        c.accept_io_queue(&io_req(1, 127, 1, HOST).unwrap()),
        Err(ConnectReject { status: Status::COMMAND_SEQUENCE_ERROR, result: 0 })
    );
    assert!(c.check_io_ready().is_ok());

    // nvme_scan_work: active namespace list, then per namespace descriptors and identify.
    let (_, data) = run(&mut c, identify(Cns::ACTIVE_NS_LIST, 0), &[], t0);
    assert_eq!(parse_ns_list(&data.unwrap()).unwrap(), vec![1, 2]);
    let (cqe, data) = run(&mut c, identify(Cns::NS_DESCRIPTORS, 2), &[], t0);
    assert!(cqe.status.is_success());
    let d = parse_ns_descriptors(&data.unwrap()).unwrap();
    assert_eq!(d.len(), 3);
    assert_eq!((d[0].nidt, d[0].nid.clone()), (Nidt::NGUID, vec![2; 16]));
    assert_eq!((d[1].nidt, d[1].nid.clone()), (Nidt::UUID, vec![0x42; 16]));
    assert_eq!((d[2].nidt, d[2].nid.clone()), (Nidt::CSI, vec![0]));
    let (_, data) = run(&mut c, identify(Cns::NAMESPACE, 1), &[], t0);
    let n = IdentifyNamespace::parse(&data.unwrap()).unwrap();
    assert_eq!((n.nsze, n.ncap, n.nuse), (1 << 21, 1 << 21, 1 << 21));
    assert_eq!(n.block_size(), Some(512));
    assert_eq!(n.npwg, 7, "4 KiB physical blocks in 512-byte blocks");
    assert_eq!(n.nows, 255);
    assert_eq!(n.nsfeat, NSFEAT_THIN | NSFEAT_OPTPERF);
    assert_eq!(n.dlfeat, 0x09);
    assert_eq!((n.mssrl, n.mcl, n.msrc), (u16::MAX, 1 << 24, 127));
    assert_eq!(n.nguid, [1; 16]);
    let (_, data) = run(&mut c, identify(Cns::NAMESPACE, 2), &[], t0);
    assert_eq!(IdentifyNamespace::parse(&data.unwrap()).unwrap().block_size(), Some(4096));

    // Keep alive every KATO/2.
    let mut now = t0;
    for _ in 0..10 {
        now += Duration::from_millis(2500);
        assert!(!c.keep_alive_expired(now));
        assert_eq!(status(&mut c, Sqe::new(Opcode::KEEP_ALIVE, 30, 0), now), Status::SUCCESS);
        assert_eq!(c.keep_alive_deadline(), Some(now + Duration::from_secs(5)));
    }

    // Disconnect: shutdown, CSTS.SHST complete; the held AER is aborted.
    assert_eq!(prop_set(&mut c, CC_CONFIG | 1 | (1 << 14), now), Status::SUCCESS);
    assert!(c.is_shut_down());
    assert_eq!(prop_get(&mut c, Property::CSTS, false, now).unwrap() & 0xC, 0x8);
    assert_eq!(c.take_events(), vec![Cqe::new(20, Status::ABORTED_SQ_DELETION)]);
    assert_eq!(disconnect_reply(&Disconnect { cid: 5, recfmt: 0 }.to_sqe()), Cqe::new(5, Status::SUCCESS));
}

#[test]
fn keep_alive_expiry_on_virtual_clock() {
    let t0 = Instant::now();
    let sub = nvm_sub();
    let mut c = admin_connect(&sub, 5000, t0);
    assert_eq!(c.keep_alive_deadline(), Some(t0 + Duration::from_secs(5)));
    assert!(!c.keep_alive_expired(t0 + Duration::from_secs(5)));
    assert!(c.keep_alive_expired(t0 + Duration::from_millis(5001)));
    // Enabling restarts the timer (as nvmet).
    enable(&mut c, t0 + Duration::from_secs(4));
    assert!(!c.keep_alive_expired(t0 + Duration::from_millis(8999)));
    assert!(c.keep_alive_expired(t0 + Duration::from_millis(9001)));
    let t1 = t0 + Duration::from_secs(8);
    assert_eq!(status(&mut c, Sqe::new(Opcode::KEEP_ALIVE, 1, 0), t1), Status::SUCCESS);
    assert!(!c.keep_alive_expired(t1 + Duration::from_secs(5)));
    // KATO via Set Features.
    let (cqe, _) = run(&mut c, set_feature(FeatureId::KEEP_ALIVE_TIMER, 30_000), &[], t1);
    assert!(cqe.status.is_success());
    assert_eq!(run(&mut c, get_feature(FeatureId::KEEP_ALIVE_TIMER, Select::CURRENT, 0), &[], t1).0.result, 30_000);
    assert_eq!(c.keep_alive_deadline(), Some(t1 + Duration::from_secs(30)));

    // KATO 0: no deadline, Keep Alive refused.
    let mut c = admin_connect(&sub, 0, t0);
    enable(&mut c, t0);
    assert_eq!(c.keep_alive_deadline(), None);
    assert!(!c.keep_alive_expired(t0 + Duration::from_secs(1_000_000)));
    assert_eq!(status(&mut c, Sqe::new(Opcode::KEEP_ALIVE, 1, 0), t0), Status::KEEP_ALIVE_INVALID);

    // A discovery controller with KATO 0 uses 2 minutes.
    let d = Arc::new(SubsystemInfo::discovery("D1", "oxcopy", "0.1", vec![]));
    let c = admin_connect(&d, 0, t0);
    assert_eq!(c.keep_alive_deadline(), Some(t0 + Duration::from_secs(120)));
}

#[test]
fn aer_completed_on_namespace_change() {
    let t0 = Instant::now();
    let sub = nvm_sub();
    let mut c = admin_connect(&sub, 5000, t0);
    enable(&mut c, t0);
    let aer = |cid| Sqe::new(Opcode::ASYNC_EVENT_REQUEST, cid, 0);
    assert_eq!(c.admin(&aer(100), &[], 0, t0), AdminOutcome::Held);
    assert_eq!(c.admin(&aer(101), &[], 0, t0), AdminOutcome::Held);
    assert!(c.take_events().is_empty());

    // Namespace 3 added.
    let mut s2 = (*sub).clone();
    s2.namespaces.push(ns(3, 512, 1000));
    c.update_subsystem(Arc::new(s2.clone()));
    let ev = c.take_events();
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].cid, ev[0].status, ev[0].result), (100, Status::SUCCESS, 0x0004_0002));
    // Masked until the log is read: namespace 1 resized raises nothing.
    s2.namespaces[0].blocks += 8;
    c.update_subsystem(Arc::new(s2.clone()));
    assert!(c.take_events().is_empty());
    // Read with RAE: list kept, still masked.
    let (_, data) = run(&mut c, get_log(LogId::CHANGED_NS, 4096, 0, true), &[], t0);
    assert_eq!(parse_changed_ns(&data.unwrap()).unwrap(), Some(vec![3, 1]));
    c.namespaces_changed(&[2]);
    assert!(c.take_events().is_empty());
    // Read without RAE: cleared and unmasked.
    let (_, data) = run(&mut c, get_log(LogId::CHANGED_NS, 4096, 0, false), &[], t0);
    assert_eq!(parse_changed_ns(&data.unwrap()).unwrap(), Some(vec![3, 1, 2]));
    let (_, data) = run(&mut c, get_log(LogId::CHANGED_NS, 4096, 0, false), &[], t0);
    assert_eq!(parse_changed_ns(&data.unwrap()).unwrap(), Some(vec![]));
    // Namespace 3 removed: the other held AER completes.
    c.update_subsystem(sub.clone());
    let ev = c.take_events();
    assert_eq!((ev[0].cid, ev[0].result), (101, 0x0004_0002));
    // No AER held: the event waits for the next one.
    let (_, _) = run(&mut c, get_log(LogId::CHANGED_NS, 4096, 0, false), &[], t0);
    c.namespaces_changed(&[1]);
    assert!(c.take_events().is_empty());
    let (cqe, _) = reply(c.admin(&aer(102), &[], 0, t0));
    assert_eq!((cqe.cid, cqe.result), (102, 0x0004_0002));

    // Limit: AERL + 1 = 4 held.
    for cid in 110..114 {
        assert_eq!(c.admin(&aer(cid), &[], 0, t0), AdminOutcome::Held);
    }
    assert_eq!(reply(c.admin(&aer(114), &[], 0, t0)).0.status, Status::AER_LIMIT_EXCEEDED);

    // Abort of a held AER: it completes with Abort Requested, the Abort with DW0 bit 0 clear.
    let mut abort = Sqe::new(Opcode::ABORT, 120, 0);
    abort.set_cdw(10, 111 << 16);
    let (cqe, _) = reply(c.admin(&abort, &[], 0, t0));
    assert_eq!((cqe.cid, cqe.status, cqe.result), (120, Status::SUCCESS, 0));
    assert_eq!(c.take_events(), vec![Cqe::new(111, Status::ABORT_REQUESTED)]);
    // Abort of an I/O command: for the daemon.
    abort.set_cdw(10, 2 | (7 << 16));
    assert_eq!(c.admin(&abort, &[], 0, t0), AdminOutcome::Abort { sqid: 2, cid: 7, abort_cid: 120 });
    assert_eq!(abort_reply(120, false).result, 1);
    assert_eq!(abort_reply(120, true).result, 0);

    // Controller reset: held AERs aborted.
    assert_eq!(prop_set(&mut c, CC_CONFIG, t0), Status::SUCCESS);
    assert!(!c.is_ready());
    let ev = c.take_events();
    assert_eq!(ev.len(), 3);
    assert!(ev.iter().all(|e| e.status == Status::ABORTED_SQ_DELETION));

    // AEN disabled: nothing even with an AER held.
    enable(&mut c, t0);
    let (_, _) = run(&mut c, get_log(LogId::CHANGED_NS, 4096, 0, false), &[], t0);
    assert!(run(&mut c, set_feature(FeatureId::ASYNC_EVENT_CONFIG, 0), &[], t0).0.status.is_success());
    assert_eq!(c.admin(&aer(130), &[], 0, t0), AdminOutcome::Held);
    c.namespaces_changed(&[1]);
    assert!(c.take_events().is_empty());
}

#[test]
fn changed_namespace_list_overflow() {
    let t0 = Instant::now();
    let mut c = admin_connect(&nvm_sub(), 5000, t0);
    enable(&mut c, t0);
    let ids: Vec<u32> = (1..=1025).collect();
    c.namespaces_changed(&ids);
    let (_, data) = run(&mut c, get_log(LogId::CHANGED_NS, 4096, 0, false), &[], t0);
    assert_eq!(parse_changed_ns(&data.unwrap()).unwrap(), None);
}

#[test]
fn connect_errors_exact_status_and_ipo() {
    let sub = nvm_sub();
    let t0 = Instant::now();
    let data = connect_data(0xFFFF, SUBNQN, HOST);
    let rej = |sqe: &Sqe, d: &[u8]| ConnectRequest::parse(sqe, d).unwrap_err();

    // Not a Connect.
    assert_eq!(rej(&Sqe::new(Opcode::IDENTIFY, 1, 0), &data).status, Status::INVALID_OPCODE);
    // Short data.
    assert_eq!(rej(&connect_sqe(1, 0, 31, 0), &data[..1023]).status, Status::DATA_SGL_LENGTH_INVALID);
    // RECFMT 1.
    let mut s = connect_sqe(1, 0, 31, 0);
    s.0[40] = 1;
    assert_eq!(rej(&s, &data), ConnectReject { status: Status::CONNECT_INCOMPATIBLE_FORMAT, result: 0 });
    // Admin Connect for a specific CNTLID.
    let r = rej(&connect_sqe(1, 0, 31, 0), &connect_data(5, SUBNQN, HOST));
    assert_eq!((r.status, r.result), (Status::CONNECT_INVALID_PARAMETERS, 0x0001_0010));
    // Unknown subsystem.
    let req = ConnectRequest::parse(&connect_sqe(1, 0, 31, 0), &connect_data(0xFFFF, "nqn.other", HOST)).unwrap();
    let r = req.check_admin(Some(&sub)).unwrap_err();
    assert_eq!((r.status, r.result), (Status::CONNECT_INVALID_PARAMETERS, 0x0001_0100));
    assert_eq!(req.check_admin(None).unwrap_err(), r);
    // Host not allowed.
    let mut restricted = (*sub).clone();
    restricted.allowed_hosts = vec!["nqn.someone-else".into()];
    let req = ConnectRequest::parse(&connect_sqe(1, 0, 31, 0), &data).unwrap();
    let r = req.check_admin(Some(&restricted)).unwrap_err();
    assert_eq!((r.status, r.result), (Status::CONNECT_INVALID_HOST, 0x0001_0200));
    restricted.allowed_hosts.push(HOST.into());
    assert!(req.check_admin(Some(&restricted)).is_ok());
    // SQSIZE 0.
    let req = ConnectRequest::parse(&connect_sqe(1, 0, 0, 0), &data).unwrap();
    let r = req.check_admin(Some(&sub)).unwrap_err();
    assert_eq!((r.status, r.result), (Status::CONNECT_INVALID_PARAMETERS, 44));
    // The CQE: status field and DW0.
    let cqe = r.cqe(77);
    let b = cqe.encode();
    assert_eq!(&b[0..4], &44u32.to_le_bytes());
    assert_eq!(&b[12..14], &77u16.to_le_bytes());
    assert_eq!(u16::from_le_bytes([b[14], b[15]]), 0x8000 | (1 << 9) | (0x82 << 1));

    // I/O queue Connects.
    let mut c = admin_connect(&sub, 5000, t0);
    enable(&mut c, t0);
    let r = c.accept_io_queue(&io_req(1, 127, 1, "nqn.intruder").unwrap()).unwrap_err();
    assert_eq!((r.status, r.result), (Status::CONNECT_INVALID_PARAMETERS, 0x0001_0010));
    let r = c.accept_io_queue(&io_req(1, 127, 2, HOST).unwrap()).unwrap_err();
    assert_eq!(r, ConnectReject::unknown_controller());
    let r = c.accept_io_queue(&io_req(9, 127, 1, HOST).unwrap()).unwrap_err();
    assert_eq!((r.status, r.result), (Status::CONNECT_INVALID_PARAMETERS, 42));
    let r = c.accept_io_queue(&io_req(1, 128, 1, HOST).unwrap()).unwrap_err();
    assert_eq!((r.status, r.result), (Status::CONNECT_INVALID_PARAMETERS, 44));
    let r = c.accept_io_queue(&io_req(1, 0, 1, HOST).unwrap()).unwrap_err();
    assert_eq!((r.status, r.result), (Status::CONNECT_INVALID_PARAMETERS, 44));
    let mut other_id = io_req(1, 127, 1, HOST).unwrap();
    other_id.hostid = [0; 16];
    assert_eq!(c.accept_io_queue(&other_id), Err(ConnectReject::unknown_controller()));
    c.accept_io_queue(&io_req(1, 127, 1, HOST).unwrap()).unwrap();
    c.io_queue_closed(1);
    c.accept_io_queue(&io_req(1, 127, 1, HOST).unwrap()).unwrap();
    // Number of Queues cannot change once I/O queues exist.
    assert_eq!(status(&mut c, set_feature(FeatureId::NUMBER_OF_QUEUES, 0), t0), Status::COMMAND_SEQUENCE_ERROR);
    // Discovery: no I/O queues at all.
    let d = Arc::new(SubsystemInfo::discovery("D1", "oxcopy", "0.1", vec![]));
    let mut dc = admin_connect(&d, 0, t0);
    let req = ConnectRequest::parse(&connect_sqe(1, 1, 31, 0), &connect_data(1, DISCOVERY_NQN, HOST)).unwrap();
    assert_eq!(dc.accept_io_queue(&req), Err(ConnectReject::sqe(sqe_offset::QID)));
    // Connect on an established admin queue.
    assert_eq!(status(&mut c, connect_sqe(3, 0, 31, 0), t0), Status::INVALID_OPCODE);
    assert_eq!(status(&mut c, Disconnect { cid: 1, recfmt: 0 }.to_sqe(), t0), Status::INVALID_QUEUE_TYPE);
    assert_eq!(
        disconnect_reply(&Disconnect { cid: 1, recfmt: 1 }.to_sqe()).status,
        Status::CONNECT_INCOMPATIBLE_FORMAT
    );
}

#[test]
fn properties_and_enable_rules() {
    let t0 = Instant::now();
    let mut c = admin_connect(&nvm_sub(), 5000, t0);
    // Commands before CC.EN: Command Sequence Error (as nvmet).
    assert_eq!(status(&mut c, identify(Cns::CONTROLLER, 0), t0), Status::COMMAND_SEQUENCE_ERROR);
    assert_eq!(c.check_io_ready(), Err(Status::COMMAND_SEQUENCE_ERROR));
    // Sizes must match the property.
    assert_eq!(prop_get(&mut c, Property::CAP, false, t0), Err(Status::INVALID_FIELD));
    assert_eq!(prop_get(&mut c, Property::VS, true, t0), Err(Status::INVALID_FIELD));
    assert_eq!(prop_get(&mut c, Property(0x40), false, t0), Err(Status::INVALID_FIELD));
    assert_eq!(prop_get(&mut c, Property::NSSR, false, t0), Err(Status::INVALID_FIELD));
    let mut bad = PropertyGet { cid: 1, eight: false, offset: Property::VS }.to_sqe();
    bad.0[40] = 2;
    assert_eq!(status(&mut c, bad, t0), Status::INVALID_FIELD);
    // Read-only properties.
    let s = PropertySet { cid: 2, eight: false, offset: Property::VS, value: 0 }.to_sqe();
    assert_eq!(status(&mut c, s, t0), Status::INVALID_FIELD);
    let s = PropertySet { cid: 2, eight: true, offset: Property::CC, value: 1 }.to_sqe();
    assert_eq!(status(&mut c, s, t0), Status::INVALID_FIELD);
    // Bad entry sizes: CSTS.CFS, not ready.
    assert_eq!(prop_set(&mut c, (7 << 16) | (4 << 20) | 1, t0), Status::SUCCESS);
    assert_eq!(prop_get(&mut c, Property::CSTS, false, t0), Ok(2));
    assert!(!c.is_ready());
    assert_eq!(prop_set(&mut c, 0, t0), Status::SUCCESS);
    assert_eq!(prop_get(&mut c, Property::CSTS, false, t0), Ok(0));
    enable(&mut c, t0);
    // Shutdown then clear SHN.
    assert_eq!(prop_set(&mut c, CC_CONFIG | 1 | (1 << 14), t0), Status::SUCCESS);
    assert!(c.is_shut_down());
    assert_eq!(prop_set(&mut c, CC_CONFIG, t0), Status::SUCCESS);
    assert!(!c.is_shut_down());
    enable(&mut c, t0);
    // Unknown opcode, Fabrics type.
    assert_eq!(status(&mut c, Sqe::new(Opcode(0xC1), 1, 0), t0), Status::INVALID_OPCODE);
    assert_eq!(status(&mut c, Sqe::new(Opcode::CREATE_SQ, 1, 0), t0), Status::INVALID_OPCODE);
    assert_eq!(status(&mut c, Sqe::fabrics(FabricsType::AUTH_SEND, 1), t0), Status::INVALID_OPCODE);
}

#[test]
fn features() {
    let t0 = Instant::now();
    let mut c = admin_connect(&nvm_sub(), 5000, t0);
    enable(&mut c, t0);
    let mut save = set_feature(FeatureId::VOLATILE_WRITE_CACHE, 0);
    save.set_cdw(10, save.cdw(10) | (1 << 31));
    assert_eq!(status(&mut c, save, t0), Status::FEATURE_NOT_SAVEABLE);
    assert_eq!(status(&mut c, set_feature(FeatureId(0x7E), 0), t0), Status::INVALID_FIELD);
    assert_eq!(status(&mut c, get_feature(FeatureId(0x7E), Select::CURRENT, 0), t0), Status::INVALID_FIELD);
    assert_eq!(status(&mut c, set_feature(FeatureId::INTERRUPT_COALESCING, 0), t0), Status::INVALID_FIELD);
    assert_eq!(status(&mut c, set_feature(FeatureId::ARBITRATION, 3), t0), Status::FEATURE_NOT_CHANGEABLE);
    assert_eq!(run(&mut c, get_feature(FeatureId::ARBITRATION, Select::SUPPORTED, 0), &[], t0).0.result, 0);
    assert_eq!(
        run(&mut c, get_feature(FeatureId::VOLATILE_WRITE_CACHE, Select::SUPPORTED, 0), &[], t0).0.result,
        u64::from(CAP_CHANGEABLE)
    );
    assert_eq!(status(&mut c, get_feature(FeatureId::ARBITRATION, Select(4), 0), t0), Status::INVALID_FIELD);

    // Volatile write cache.
    assert!(c.write_cache_enabled());
    assert!(run(&mut c, set_feature(FeatureId::VOLATILE_WRITE_CACHE, 0), &[], t0).0.status.is_success());
    assert!(!c.write_cache_enabled());
    assert_eq!(run(&mut c, get_feature(FeatureId::VOLATILE_WRITE_CACHE, Select::CURRENT, 0), &[], t0).0.result, 0);
    assert_eq!(run(&mut c, get_feature(FeatureId::VOLATILE_WRITE_CACHE, Select::DEFAULT, 0), &[], t0).0.result, 1);

    // Number of queues: granted min(requested, configured).
    let (cqe, _) = run(&mut c, set_feature(FeatureId::NUMBER_OF_QUEUES, 63 | (63 << 16)), &[], t0);
    assert_eq!(cqe.result, 0x0007_0007);
    assert_eq!(c.io_queues(), 8);
    assert_eq!(
        run(&mut c, get_feature(FeatureId::NUMBER_OF_QUEUES, Select::CURRENT, 0), &[], t0).0.result,
        0x0007_0007
    );
    assert_eq!(status(&mut c, set_feature(FeatureId::NUMBER_OF_QUEUES, 0xFFFF), t0), Status::INVALID_FIELD);
    let (cqe, _) = run(&mut c, set_feature(FeatureId::NUMBER_OF_QUEUES, 1 | (1 << 16)), &[], t0);
    assert_eq!(cqe.result, 0x0001_0001);
    assert_eq!(c.io_queues(), 2);

    // Power management: state 0 only. Temperature threshold. Error recovery.
    assert_eq!(status(&mut c, set_feature(FeatureId::POWER_MANAGEMENT, 1), t0), Status::INVALID_FIELD);
    assert_eq!(status(&mut c, set_feature(FeatureId::POWER_MANAGEMENT, 0), t0), Status::SUCCESS);
    assert_eq!(run(&mut c, get_feature(FeatureId::TEMPERATURE_THRESHOLD, Select::CURRENT, 0), &[], t0).0.result, 343);
    assert_eq!(status(&mut c, set_feature(FeatureId::TEMPERATURE_THRESHOLD, 350), t0), Status::SUCCESS);
    assert_eq!(status(&mut c, set_feature(FeatureId::TEMPERATURE_THRESHOLD, 260 | (1 << 20)), t0), Status::SUCCESS);
    assert_eq!(run(&mut c, get_feature(FeatureId::TEMPERATURE_THRESHOLD, Select::CURRENT, 0), &[], t0).0.result, 350);
    assert_eq!(
        run(&mut c, get_feature(FeatureId::TEMPERATURE_THRESHOLD, Select::CURRENT, 1 << 20), &[], t0).0.result,
        260
    );
    assert_eq!(status(&mut c, set_feature(FeatureId::TEMPERATURE_THRESHOLD, 1 << 16), t0), Status::INVALID_FIELD);
    assert_eq!(
        status(&mut c, get_feature(FeatureId::TEMPERATURE_THRESHOLD, Select::CURRENT, 2 << 20), t0),
        Status::INVALID_FIELD
    );
    assert_eq!(status(&mut c, set_feature(FeatureId::ERROR_RECOVERY, 1 << 16), t0), Status::INVALID_FIELD);
    assert_eq!(status(&mut c, set_feature(FeatureId::ERROR_RECOVERY, 100), t0), Status::SUCCESS);
    assert_eq!(run(&mut c, get_feature(FeatureId::ERROR_RECOVERY, Select::CURRENT, 0), &[], t0).0.result, 100);
    // Async event configuration: only supported bits.
    assert_eq!(status(&mut c, set_feature(FeatureId::ASYNC_EVENT_CONFIG, 1 << 9), t0), Status::INVALID_FIELD);
    // A namespace-qualified feature for a namespace that does not exist.
    let mut g = get_feature(FeatureId::ERROR_RECOVERY, Select::CURRENT, 0);
    g.0[4..8].copy_from_slice(&9u32.to_le_bytes());
    assert_eq!(status(&mut c, g, t0), Status::INVALID_NAMESPACE);

    // Host Behavior Support: CDFE enables Copy format 2h.
    assert_eq!(c.copy_formats_enabled(), 0b0001);
    assert!(!c.cross_namespace_copy_enabled());
    let hb = |cdfe| HostBehavior { acre: 1, cdfe, ..HostBehavior::default() }.build();
    let (cqe, _) = run(&mut c, set_feature(FeatureId::HOST_BEHAVIOR, 0), &hb(0b0100), t0);
    assert!(cqe.status.is_success());
    assert_eq!(c.copy_formats_enabled(), 0b0101);
    assert!(c.cross_namespace_copy_enabled());
    let mut get = get_feature(FeatureId::HOST_BEHAVIOR, Select::CURRENT, 0);
    get.set_sgl(Sgl { addr: 0, len: 512, kind: SglType::TRANSPORT_DATA_BLOCK });
    let (_, data) = run(&mut c, get, &[], t0);
    assert_eq!(HostBehavior::parse(&data.unwrap()).unwrap().cdfe, 0b0100);
    assert_eq!(status(&mut c, set_feature(FeatureId::HOST_BEHAVIOR, 0), t0), Status::DATA_SGL_LENGTH_INVALID);
    let (cqe, _) = run(&mut c, set_feature(FeatureId::HOST_BEHAVIOR, 0), &hb(0b1000), t0);
    assert_eq!(cqe.status, Status::INVALID_FIELD, "format 3h is not in OCFS");
    let (cqe, _) = run(&mut c, set_feature(FeatureId::HOST_BEHAVIOR, 0), &hb(0b0001), t0);
    assert_eq!(cqe.status, Status::INVALID_FIELD);
    assert!(c.cross_namespace_copy_enabled());

    // Timestamp: counts on from the host's value.
    let (cqe, _) =
        run(&mut c, set_feature(FeatureId::TIMESTAMP, 0), &Timestamp { millis: 5_000, attributes: 0 }.build(), t0);
    assert!(cqe.status.is_success());
    let mut get = get_feature(FeatureId::TIMESTAMP, Select::CURRENT, 0);
    get.set_sgl(Sgl { addr: 0, len: 8, kind: SglType::TRANSPORT_DATA_BLOCK });
    let (_, data) = run(&mut c, get, &[], t0 + Duration::from_millis(1234));
    let t = Timestamp::parse(&data.unwrap()).unwrap();
    assert_eq!(t.millis, 6_234);
    assert_eq!(t.attributes, Timestamp::ORIGIN_SET_FEATURES);

    // A controller reset restores defaults.
    assert_eq!(prop_set(&mut c, CC_CONFIG, t0), Status::SUCCESS);
    enable(&mut c, t0);
    assert!(c.write_cache_enabled());
    assert!(!c.cross_namespace_copy_enabled());
}

#[test]
fn identify_edges() {
    let t0 = Instant::now();
    let mut c = admin_connect(&nvm_sub(), 5000, t0);
    enable(&mut c, t0);
    assert_eq!(status(&mut c, identify(Cns(0x10), 0), t0), Status::INVALID_FIELD);
    assert_eq!(status(&mut c, identify(Cns::CSI_NAMESPACE, 1), t0), Status::INVALID_FIELD);
    let csi1 = IdentifyCommand { cid: 1, nsid: 0, cns: Cns::CSI_CONTROLLER, cntid: 0, csi: 2 }.to_sqe();
    assert_eq!(status(&mut c, csi1, t0), Status::INVALID_FIELD);
    assert_eq!(status(&mut c, identify(Cns::NAMESPACE, 0), t0), Status::INVALID_NAMESPACE);
    assert_eq!(status(&mut c, identify(Cns::NAMESPACE, u32::MAX), t0), Status::INVALID_NAMESPACE);
    assert_eq!(status(&mut c, identify(Cns::NAMESPACE, 1025), t0), Status::INVALID_NAMESPACE);
    // Inactive but valid: zero-filled (NCAP 0, the host drops it).
    let (cqe, data) = run(&mut c, identify(Cns::NAMESPACE, 5), &[], t0);
    assert!(cqe.status.is_success());
    assert_eq!(data.unwrap(), vec![0u8; 4096]);
    assert_eq!(status(&mut c, identify(Cns::NS_DESCRIPTORS, 5), t0), Status::INVALID_NAMESPACE);
    assert_eq!(status(&mut c, identify(Cns::ACTIVE_NS_LIST, 0xFFFF_FFFE), t0), Status::INVALID_NAMESPACE);
    let (_, data) = run(&mut c, identify(Cns::ACTIVE_NS_LIST, 1), &[], t0);
    assert_eq!(parse_ns_list(&data.unwrap()).unwrap(), vec![2]);
    // The host's buffer bounds the data.
    let (_, data) = reply(c.admin(&identify(Cns::CONTROLLER, 0), &[], 100, t0));
    assert_eq!(data.unwrap().len(), 100);
    let (_, data) = reply(c.admin(&identify(Cns::CONTROLLER, 0), &[], 1 << 30, t0));
    assert_eq!(data.unwrap().len(), 4096);
    // Read-only namespace: write protected.
    let mut s = (*nvm_sub()).clone();
    s.namespaces[0].read_only = true;
    s.namespaces[0].deallocate = false;
    let n = identify_namespace(&s.namespaces[0]);
    assert_eq!(n.nsattr, NSATTR_WRITE_PROTECTED);
    assert_eq!((n.nsfeat, n.dlfeat), (NSFEAT_OPTPERF, 0));
    // MDTS rounding.
    for (bytes, mdts) in [(0, 0), (4096, 1), (8192, 1), (65536, 4), (100_000, 4), (1 << 20, 8)] {
        s.limits.mdts_bytes = bytes;
        assert_eq!(s.mdts(), mdts, "{bytes}");
    }
}

#[test]
fn log_pages() {
    let t0 = Instant::now();
    let mut c = admin_connect(&nvm_sub(), 5000, t0);
    enable(&mut c, t0);
    assert_eq!(status(&mut c, get_log(LogId(0xC0), 512, 0, false), t0), Status::INVALID_LOG_PAGE);
    assert_eq!(status(&mut c, get_log(LogId::DISCOVERY, 1024, 0, false), t0), Status::INVALID_LOG_PAGE);
    assert_eq!(status(&mut c, get_log(LogId::CMD_EFFECTS, 4096, 0, false), t0), Status::INVALID_LOG_PAGE);
    assert_eq!(status(&mut c, get_log(LogId::SMART, 512, 2, false), t0), Status::INVALID_FIELD);
    assert_eq!(status(&mut c, get_log(LogId::SMART, 512, 516, false), t0), Status::INVALID_FIELD);
    assert_eq!(status(&mut c, get_log(LogId::SMART, 512, u64::MAX - 3, false), t0), Status::INVALID_FIELD);
    // The error log has the failures above, newest first.
    let (_, data) = run(&mut c, get_log(LogId::ERROR, 1024, 0, false), &[], t0);
    let e = ErrorLogEntry::parse_all(&data.unwrap());
    assert_eq!(e.len(), 16);
    assert_eq!(e[0].error_count, 6);
    assert_eq!(e[0].status_field, Status::INVALID_FIELD.to_field());
    assert_eq!(e[5].status_field, Status::INVALID_LOG_PAGE.to_field());
    assert_eq!(e[6].error_count, 0);
    // SMART: power-on hours from the virtual clock, error count; partial read at an offset.
    let later = t0 + Duration::from_secs(7200);
    let (_, data) = run(&mut c, get_log(LogId::SMART, 512, 0, false), &[], later);
    let s = SmartLog::parse(&data.unwrap()).unwrap();
    assert_eq!((s.power_on_hours, s.num_err_log_entries), (2, 6));
    let (_, data) = run(&mut c, get_log(LogId::SMART, 16, 128, false), &[], later);
    assert_eq!(data.unwrap(), 2u128.to_le_bytes().to_vec());
    // More than the log: zero-filled up to the request.
    let (_, data) = run(&mut c, get_log(LogId::SMART, 1024, 0, false), &[], later);
    assert_eq!(data.unwrap().len(), 1024);
    // Firmware slot.
    let (_, data) = run(&mut c, get_log(LogId::FIRMWARE_SLOT, 512, 0, false), &[], t0);
    let f = FirmwareSlotLog::parse(&data.unwrap()).unwrap();
    assert_eq!((f.afi, f.frs[0].as_str()), (1, "0.1.0"));
    // A huge NUMD is bounded by the host's buffer and MAX_ADMIN_DATA.
    let mut big = get_log(LogId::ERROR, 4, 0, false);
    big.set_cdw(10, big.cdw(10) | 0xFFFF_0000);
    big.set_cdw(11, 0xFFFF);
    let (_, data) = reply(c.admin(&big, &[], usize::MAX, t0));
    assert_eq!(data.unwrap().len(), MAX_ADMIN_DATA);
}

fn entry(port: &str, nqn: &str, subtype: SubType) -> DiscoveryEntry {
    DiscoveryEntry {
        trtype: TrType::TCP,
        adrfam: AdrFam::IPV4,
        subtype,
        treq: 0,
        portid: 1,
        cntlid: CNTLID_DYNAMIC,
        asqsz: 32,
        eflags: 0,
        trsvcid: port.into(),
        subnqn: nqn.into(),
        traddr: "192.0.2.1".into(),
        sectype: SecType::NONE,
    }
}

#[test]
fn discovery_controller() {
    let t0 = Instant::now();
    let entries = vec![entry("8009", DISCOVERY_NQN, SubType::CURRENT_DISCOVERY), entry("4420", SUBNQN, SubType::NVME)];
    let d = Arc::new(SubsystemInfo::discovery("D1", "oxcopy", "0.1", entries.clone()));
    let mut c = admin_connect(&d, 0, t0);
    enable(&mut c, t0);
    let (_, data) = run(&mut c, identify(Cns::CONTROLLER, 0), &[], t0);
    let id = IdentifyController::parse(&data.unwrap()).unwrap();
    assert_eq!(id.cntrltype, ControllerType::DISCOVERY);
    assert_eq!((id.oncs, id.ocfs, id.nn, id.mdts, id.ioccsz), (0, 0, 0, 0, 0));
    assert_eq!(id.subnqn, DISCOVERY_NQN);
    assert_eq!(id.oaes, 1 << 31);
    // NVM-only commands.
    assert_eq!(status(&mut c, identify(Cns::NAMESPACE, 1), t0), Status::INVALID_FIELD);
    assert_eq!(status(&mut c, identify(Cns::ACTIVE_NS_LIST, 0), t0), Status::INVALID_FIELD);
    assert_eq!(status(&mut c, Sqe::new(Opcode::ABORT, 1, 0), t0), Status::INVALID_OPCODE);
    assert_eq!(status(&mut c, set_feature(FeatureId::NUMBER_OF_QUEUES, 0), t0), Status::INVALID_FIELD);
    assert_eq!(status(&mut c, get_log(LogId::SMART, 512, 0, false), t0), Status::INVALID_LOG_PAGE);
    assert_eq!(status(&mut c, Sqe::new(Opcode::KEEP_ALIVE, 1, 0), t0), Status::SUCCESS);

    // libnvme: header first, then the entries at offset 1024.
    let (_, data) = run(&mut c, get_log(LogId::DISCOVERY, 1024, 0, true), &[], t0);
    let (h, v) = parse_discovery_log(&data.unwrap()).unwrap();
    assert_eq!((h.genctr, h.numrec, v.len()), (1, 2, 0));
    let (_, data) = run(&mut c, get_log(LogId::DISCOVERY, 2048, 1024, true), &[], t0);
    let data = data.unwrap();
    assert_eq!(DiscoveryEntry::parse(&data[..1024]).unwrap(), entries[0]);
    assert_eq!(DiscoveryEntry::parse(&data[1024..]).unwrap(), entries[1]);
    let (_, data) = run(&mut c, get_log(LogId::DISCOVERY, 3072, 0, false), &[], t0);
    assert_eq!(parse_discovery_log(&data.unwrap()).unwrap().1, entries);

    // A change of the discovery log: AEN 70h.
    assert_eq!(c.admin(&Sqe::new(Opcode::ASYNC_EVENT_REQUEST, 50, 0), &[], 0, t0), AdminOutcome::Held);
    let mut d2 = (*d).clone();
    d2.discovery_entries.pop();
    d2.discovery_genctr += 1;
    c.update_subsystem(Arc::new(d2));
    let ev = c.take_events();
    assert_eq!((ev[0].cid, ev[0].result), (50, 0x0070_F002));
    let (_, data) = run(&mut c, get_log(LogId::DISCOVERY, 1024, 0, false), &[], t0);
    let (h, _) = parse_discovery_log(&data.unwrap()).unwrap();
    assert_eq!((h.genctr, h.numrec), (2, 1));
    // Namespace changes mean nothing here.
    c.namespaces_changed(&[1]);
    assert!(c.take_events().is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any admin capsule on an enabled NVM or discovery controller gets an
    /// answer without panicking, and data never exceeds the host's buffer.
    #[test]
    fn admin_never_panics(sqe in any::<[u8; 64]>(), data in proptest::collection::vec(any::<u8>(), 0..600),
                          data_len in 0usize..10_000, op in prop_oneof![Just(0x02u8), Just(0x06), Just(0x08),
                          Just(0x09), Just(0x0A), Just(0x0C), Just(0x18), Just(0x7F), any::<u8>()],
                          discovery in any::<bool>()) {
        let t0 = Instant::now();
        let sub = if discovery {
            Arc::new(SubsystemInfo::discovery("D", "m", "f", vec![entry("4420", SUBNQN, SubType::NVME)]))
        } else {
            nvm_sub()
        };
        let mut c = admin_connect(&sub, 5000, t0);
        enable(&mut c, t0);
        let mut s = Sqe(sqe);
        s.0[0] = op;
        if let AdminOutcome::Reply { data: Some(d), .. } = c.admin(&s, &data, data_len, t0) {
            prop_assert!(d.len() <= data_len);
        }
        let _ = c.take_events();
    }

    /// Connect parsing never panics, whatever the bytes.
    #[test]
    fn connect_parse_never_panics(sqe in any::<[u8; 64]>(), data in proptest::collection::vec(any::<u8>(), 0..1100)) {
        let mut s = Sqe(sqe);
        s.0[0] = 0x7F;
        s.0[4] = 0x01;
        if let Ok(req) = ConnectRequest::parse(&s, &data) {
            let _ = req.check_admin(Some(&nvm_sub()));
        }
    }
}

#[test]
fn untaken_aer_completions_count_against_the_limit() {
    let t0 = Instant::now();
    let mut s = (*nvm_sub()).clone();
    s.limits.max_aer = 1;
    let mut c = admin_connect(&Arc::new(s), 5000, t0);
    enable(&mut c, t0);
    let aer = |cid| Sqe::new(Opcode::ASYNC_EVENT_REQUEST, cid, 0);
    assert_eq!(c.admin(&aer(1), &[], 0, t0), AdminOutcome::Held);
    c.namespaces_changed(&[1]);
    assert_eq!(reply(c.admin(&aer(2), &[], 0, t0)).0.status, Status::AER_LIMIT_EXCEEDED);
    assert_eq!(c.take_events().len(), 1);
    assert_eq!(c.admin(&aer(3), &[], 0, t0), AdminOutcome::Held);
    let id = IdentifyController::parse(&c.identify_controller().build()).unwrap();
    assert_eq!(id.aerl, 0);
}
