//! Login tests: real initiator byte vectors (libiscsi, open-iscsi), in-memory
//! loopback of our two roles, every failure status, and property tests.

use super::*;
use crate::frame::{decode_frame, encode_frame, FrameLimits, Pdu};
use crate::negotiate::DigestPolicy;
use crate::params::{SessionParams, SessionType};
use crate::pdu::*;
use crate::text::{self, Pair};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

const TARGET: &str = "iqn.2024-01.org.oxcopy:disk1";
const INITIATOR: &str = "iqn.2004-10.com.ubuntu:01:c0ffee";

struct Policy {
    discovery: bool,
    allowed: bool,
    exists: bool,
    auth: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { discovery: true, allowed: true, exists: false, auth: false }
    }
}

impl LoginPolicy for Policy {
    fn check_target(&self, target: &str, _initiator: &str) -> Result<TargetInfo, LoginStatus> {
        if target != TARGET {
            return Err(LoginStatus::NOT_FOUND);
        }
        if !self.allowed {
            return Err(LoginStatus::AUTHORIZATION_FAILURE);
        }
        Ok(TargetInfo { tpgt: 7, alias: Some("oxcopy disk".into()) })
    }
    fn discovery_allowed(&self, _initiator: &str) -> bool {
        self.discovery
    }
    fn authenticator(&self, _i: &str, _t: Option<&str>) -> Option<Box<dyn Authenticator>> {
        self.auth.then(|| Box::new(FakeChap::target()) as Box<dyn Authenticator>)
    }
    fn session_exists(&self, _isid: [u8; 6], _tsih: u16) -> bool {
        self.exists
    }
}

/// A toy two-round method standing in for CHAP, to prove the trait fits:
/// initiator sends CHAP_A; target answers CHAP_C; initiator sends CHAP_R.
struct FakeChap {
    target: bool,
    round: u8,
}
impl FakeChap {
    fn target() -> Self {
        FakeChap { target: true, round: 0 }
    }
    fn initiator() -> Self {
        FakeChap { target: false, round: 0 }
    }
}
impl Authenticator for FakeChap {
    fn method(&self) -> &'static str {
        "CHAP"
    }
    fn owns_key(&self, key: &str) -> bool {
        key.starts_with("CHAP_")
    }
    fn step(&mut self, _ctx: &AuthContext<'_>, keys: &[Pair<'_>]) -> Result<AuthProgress, LoginStatus> {
        let get = |k: &str| keys.iter().find(|p| p.key == k).map(|p| p.value);
        self.round += 1;
        let kv = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        if self.target {
            if let Some(a) = get("CHAP_A") {
                if a != "5" {
                    return Err(LoginStatus::AUTHENTICATION_FAILURE);
                }
                return Ok(AuthProgress::Continue(kv("CHAP_C", "0x1234")));
            }
            if let Some(r) = get("CHAP_R") {
                return if r == "0xgood" {
                    Ok(AuthProgress::Done(vec![]))
                } else {
                    Err(LoginStatus::AUTHENTICATION_FAILURE)
                };
            }
            Ok(AuthProgress::Continue(vec![]))
        } else {
            if get("CHAP_C").is_some() {
                return Ok(AuthProgress::Done(kv("CHAP_R", "0xgood")));
            }
            Ok(AuthProgress::Continue(kv("CHAP_A", "5")))
        }
    }
}

fn target_cfg() -> TargetLoginConfig {
    TargetLoginConfig {
        max_recv_data_segment_length: 262_144,
        max_burst_length: 1 << 20,
        first_burst_length: 65_536,
        max_outstanding_r2t: 1,
        immediate_data: true,
        initial_r2t: false,
        header_digest: DigestPolicy::PreferNone,
        data_digest: DigestPolicy::PreferNone,
        initial_stat_sn: 100,
        tsih: 0x1234,
        cmd_window: 32,
    }
}

fn initiator_cfg(target: Option<&str>) -> InitiatorLoginConfig {
    InitiatorLoginConfig {
        initiator_name: INITIATOR.into(),
        initiator_alias: Some("host1".into()),
        isid: [0x80, 0x12, 0x34, 0x56, 0, 0],
        target_name: target.map(str::to_string),
        header_digest: DigestPolicy::PreferNone,
        data_digest: DigestPolicy::PreferNone,
        max_recv_data_segment_length: 65536,
        max_burst_length: 262_144,
        first_burst_length: 65_536,
        initial_r2t: false,
        immediate_data: true,
        max_outstanding_r2t: 1,
        initial_cmd_sn: 5,
    }
}

/// Raw Login Request bytes as an initiator puts them on the wire.
fn raw_login(flags: u8, isid: [u8; 6], itt: u32, cmd_sn: u32, exp_stat_sn: u32, text: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 48];
    b[0] = 0x43; // immediate | Login Request
    b[1] = flags;
    b[2] = 0; // version max
    b[3] = 0; // version min
    let dl = (text.len() as u32).to_be_bytes();
    b[5..8].copy_from_slice(&dl[1..]);
    b[8..14].copy_from_slice(&isid);
    b[16..20].copy_from_slice(&itt.to_be_bytes());
    b[24..28].copy_from_slice(&cmd_sn.to_be_bytes());
    b[28..32].copy_from_slice(&exp_stat_sn.to_be_bytes());
    b.extend_from_slice(text);
    b.resize(b.len() + (4 - text.len() % 4) % 4, 0);
    b
}

fn decode(raw: &[u8]) -> Pdu {
    let mut buf = BytesMut::from(raw);
    let pdu = decode_frame(&mut buf, &FrameLimits::LOGIN).unwrap().unwrap();
    assert!(buf.is_empty());
    pdu
}

fn wire(pdu: &Pdu) -> Vec<u8> {
    encode_frame(&pdu.header, &[], pdu.data.clone(), false, false).to_vec()
}

fn rsp_pairs(pdu: &Pdu) -> Vec<(String, String)> {
    text::parse(&pdu.data).unwrap().into_iter().map(|p| (p.key.to_string(), p.value.to_string())).collect()
}

fn get<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    pairs.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str())
}

fn rsp_header(pdu: &Pdu) -> &LoginResponse {
    match &pdu.header {
        Header::LoginResponse(h) => h,
        other => panic!("not a login response: {other:?}"),
    }
}

fn libiscsi_text(session: &str, target: Option<&str>) -> Vec<u8> {
    // lib/login.c iscsi_login_async(), no CHAP user: the first PDU is already
    // CSG=OpNeg, NSG=FullFeature, T=1 with every key in this order.
    let mut kv: Vec<(String, String)> =
        vec![("InitiatorName".into(), "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-inq".into())];
    if let Some(t) = target {
        kv.push(("TargetName".into(), t.into()));
    }
    for (k, v) in [
        ("SessionType", session),
        ("HeaderDigest", "None,CRC32C"),
        ("DataDigest", "None"),
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "262144"),
        ("FirstBurstLength", "262144"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "0"),
        ("MaxOutstandingR2T", "1"),
        ("ErrorRecoveryLevel", "0"),
        ("IFMarker", "No"),
        ("OFMarker", "No"),
        ("MaxConnections", "1"),
        ("MaxRecvDataSegmentLength", "262144"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
    ] {
        kv.push((k.into(), v.into()));
    }
    text::encode(kv.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

#[test]
fn libiscsi_normal_login_bytes() {
    let isid = [0x80, 0x00, 0x41, 0xa7, 0x00, 0x00];
    let raw = raw_login(0x87, isid, 0x6b8b4567, 0x327b23c6, 0, &libiscsi_text("Normal", Some(TARGET)));
    let mut t = TargetLogin::new(target_cfg());
    let step = t.on_pdu(&decode(&raw), &Policy::default());
    let LoginStep::Complete { response, params } = step else { panic!("{step:?}") };
    let bytes = wire(&response);
    assert_eq!(bytes[0], 0x23);
    assert_eq!(bytes[1], 0x87, "T=1 CSG=1 NSG=3");
    assert_eq!(&bytes[2..4], &[0, 0], "version max/active");
    assert_eq!(&bytes[8..14], &isid);
    assert_eq!(&bytes[14..16], &[0x12, 0x34], "TSIH only in the final response");
    assert_eq!(&bytes[16..20], &0x6b8b4567u32.to_be_bytes());
    assert_eq!(&bytes[24..28], &100u32.to_be_bytes(), "StatSN = initial_stat_sn");
    assert_eq!(&bytes[28..32], &0x327b23c6u32.to_be_bytes(), "ExpCmdSN = CmdSN");
    assert_eq!(&bytes[32..36], &(0x327b23c6u32 + 31).to_be_bytes(), "MaxCmdSN");
    assert_eq!(&bytes[36..38], &[0, 0]);
    let p = rsp_pairs(&response);
    assert_eq!(get(&p, "TargetPortalGroupTag"), Some("7"));
    assert_eq!(get(&p, "TargetAlias"), Some("oxcopy disk"));
    assert_eq!(get(&p, "HeaderDigest"), Some("None"));
    assert_eq!(get(&p, "DataDigest"), Some("None"));
    assert_eq!(get(&p, "InitialR2T"), Some("No"));
    assert_eq!(get(&p, "ImmediateData"), Some("Yes"));
    assert_eq!(get(&p, "MaxBurstLength"), Some("262144"));
    assert_eq!(get(&p, "FirstBurstLength"), Some("65536"));
    assert_eq!(get(&p, "DefaultTime2Wait"), Some("2"));
    assert_eq!(get(&p, "DefaultTime2Retain"), Some("0"));
    assert_eq!(get(&p, "MaxOutstandingR2T"), Some("1"));
    assert_eq!(get(&p, "ErrorRecoveryLevel"), Some("0"));
    assert_eq!(get(&p, "IFMarker"), Some("No"));
    assert_eq!(get(&p, "OFMarker"), Some("No"));
    assert_eq!(get(&p, "MaxConnections"), Some("1"));
    assert_eq!(get(&p, "MaxRecvDataSegmentLength"), Some("262144"));
    assert_eq!(get(&p, "DataPDUInOrder"), Some("Yes"));
    assert_eq!(get(&p, "DataSequenceInOrder"), Some("Yes"));
    assert_eq!(p.len(), 18, "every offered key answered, plus our declarations: {p:?}");
    assert_eq!(params.session_type, SessionType::Normal);
    assert_eq!(params.target_name.as_deref(), Some(TARGET));
    assert_eq!(params.target_portal_group_tag, 7);
    assert_eq!(params.tsih, 0x1234);
    assert_eq!(params.isid, isid);
    assert!(!params.header_digest && !params.data_digest);
    assert!(!params.initial_r2t && params.immediate_data);
    assert_eq!(params.initiator_max_recv_data_segment_length, 262_144);
    assert_eq!(params.target_max_recv_data_segment_length, 262_144);
    assert_eq!(params.max_burst_length, 262_144);
    assert_eq!(params.first_burst_length, 65_536);
    assert_eq!(params.default_time2retain, 0);
    assert_eq!(t.next_stat_sn(), 101);
    assert_eq!(t.exp_cmd_sn(), 0x327b23c6);
}

#[test]
fn libiscsi_discovery_login_bytes() {
    let raw = raw_login(0x87, [0x80, 1, 2, 3, 0, 0], 1, 2, 0, &libiscsi_text("Discovery", None));
    let mut t = TargetLogin::new(target_cfg());
    let LoginStep::Complete { response, params } = t.on_pdu(&decode(&raw), &Policy::default()) else { panic!() };
    let p = rsp_pairs(&response);
    for k in [
        "InitialR2T",
        "ImmediateData",
        "MaxBurstLength",
        "FirstBurstLength",
        "MaxOutstandingR2T",
        "MaxConnections",
        "DataPDUInOrder",
        "DataSequenceInOrder",
    ] {
        assert_eq!(get(&p, k), Some("Irrelevant"), "{k}");
    }
    // Relevant in discovery; libiscsi strtol()s MaxRecvDataSegmentLength.
    assert_eq!(get(&p, "MaxRecvDataSegmentLength"), Some("262144"));
    assert_eq!(get(&p, "HeaderDigest"), Some("None"));
    assert_eq!(get(&p, "TargetPortalGroupTag"), None);
    assert_eq!(params.session_type, SessionType::Discovery);
    assert_eq!(params.target_name, None);
}

/// Keys Linux open-iscsi (usr/login.c) accepts in a Login Response, per
/// stage; anything else makes it fail the login.
const OPEN_ISCSI_SECURITY_KEYS: &[&str] = &[
    "TargetAlias",
    "TargetAddress",
    "TargetPortalGroupTag",
    "AuthMethod",
    "CHAP_A",
    "CHAP_I",
    "CHAP_C",
    "CHAP_N",
    "CHAP_R",
];
const OPEN_ISCSI_OP_KEYS: &[&str] = &[
    "TargetAlias",
    "TargetAddress",
    "TargetPortalGroupTag",
    "InitialR2T",
    "ImmediateData",
    "MaxRecvDataSegmentLength",
    "FirstBurstLength",
    "MaxBurstLength",
    "HeaderDigest",
    "DataDigest",
    "DefaultTime2Wait",
    "DefaultTime2Retain",
    "OFMarker",
    "OFMarkInt",
    "IFMarker",
    "IFMarkInt",
    "DataPDUInOrder",
    "DataSequenceInOrder",
    "MaxOutstandingR2T",
    "MaxConnections",
    "ErrorRecoveryLevel",
];

fn open_iscsi_login(discovery: bool) -> (SessionParams, Vec<(String, String)>) {
    // usr/login.c iscsi_make_login_pdu(): with an auth buffer but no CHAP
    // configured, the first PDU is CSG=0 NSG=1 T=1 with the leading keys and
    // AuthMethod=None; then CSG=1 NSG=3 T=1 with the operational keys.
    let isid = [0x00, 0x02, 0x3d, 0x00, 0x00, 0x01];
    let mut first = vec![("InitiatorName", INITIATOR), ("InitiatorAlias", "host1")];
    if !discovery {
        first.push(("TargetName", TARGET));
    }
    first.push(("SessionType", if discovery { "Discovery" } else { "Normal" }));
    first.push(("AuthMethod", "None"));
    let raw = raw_login(0x81, isid, 0, 1, 0, &text::encode(first));
    let mut t = TargetLogin::new(target_cfg());
    let policy = Policy::default();
    let LoginStep::Respond(r1) = t.on_pdu(&decode(&raw), &policy) else { panic!() };
    let b = wire(&r1);
    assert_eq!(b[1], 0x81, "T=1 CSG=0 NSG=1");
    assert_eq!(&b[14..16], &[0, 0], "no TSIH before the final response");
    assert_eq!(&b[24..28], &100u32.to_be_bytes());
    let p1 = rsp_pairs(&r1);
    assert_eq!(get(&p1, "AuthMethod"), Some("None"));
    for (k, _) in &p1 {
        assert!(OPEN_ISCSI_SECURITY_KEYS.contains(&k.as_str()), "open-iscsi chokes on {k}");
    }
    let mut ops = vec![
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "0"),
        ("IFMarker", "No"),
        ("OFMarker", "No"),
        ("ErrorRecoveryLevel", "0"),
    ];
    if discovery {
        ops.push(("MaxRecvDataSegmentLength", "32768"));
    } else {
        ops.extend([
            ("InitialR2T", "No"),
            ("ImmediateData", "Yes"),
            ("MaxBurstLength", "16776192"),
            ("FirstBurstLength", "262144"),
            ("MaxOutstandingR2T", "1"),
            ("MaxConnections", "1"),
            ("DataPDUInOrder", "Yes"),
            ("DataSequenceInOrder", "Yes"),
            ("MaxRecvDataSegmentLength", "262144"),
        ]);
    }
    // ExpStatSN acknowledges the first response.
    let raw = raw_login(0x87, isid, 0, 1, 101, &text::encode(ops));
    let LoginStep::Complete { response, params } = t.on_pdu(&decode(&raw), &policy) else { panic!() };
    let b = wire(&response);
    assert_eq!(b[1], 0x87);
    assert_eq!(&b[24..28], &101u32.to_be_bytes(), "StatSN advances per response");
    assert_eq!(&b[14..16], &[0x12, 0x34]);
    let p2 = rsp_pairs(&response);
    for (k, _) in &p2 {
        assert!(OPEN_ISCSI_OP_KEYS.contains(&k.as_str()), "open-iscsi chokes on {k}");
    }
    // open-iscsi insists on exact values for these.
    assert_eq!(get(&p2, "HeaderDigest"), Some("None"));
    assert_eq!(get(&p2, "ErrorRecoveryLevel"), Some("0"));
    if !discovery {
        assert_eq!(get(&p2, "MaxConnections"), Some("1"));
        assert_eq!(get(&p2, "MaxBurstLength"), Some("1048576"));
    }
    assert_eq!(t.next_stat_sn(), 102);
    (params, p2)
}

#[test]
fn open_iscsi_normal_login_bytes() {
    let (params, _) = open_iscsi_login(false);
    assert_eq!(params.initiator_alias.as_deref(), Some("host1"));
    assert_eq!(params.max_burst_length, 1 << 20);
    assert_eq!(params.initiator_max_recv_data_segment_length, 262_144);
}

#[test]
fn open_iscsi_discovery_login_bytes() {
    let (params, p) = open_iscsi_login(true);
    assert_eq!(params.session_type, SessionType::Discovery);
    assert_eq!(params.initiator_max_recv_data_segment_length, 32768);
    assert_eq!(get(&p, "MaxRecvDataSegmentLength"), Some("262144"));
}

/// Run our initiator against our target; returns both outcomes and the
/// number of PDUs each way.
fn loopback(
    icfg: InitiatorLoginConfig,
    tcfg: TargetLoginConfig,
    policy: &Policy,
    seg: Option<usize>,
    auth: bool,
) -> (Result<SessionParams, LoginError>, Option<LoginStep>, usize, bool) {
    let mut i = InitiatorLogin::new(icfg);
    let mut t = TargetLogin::new(tcfg);
    if let Some(s) = seg {
        i.max_segment = s;
        t.max_segment = s;
    }
    if auth {
        i.set_authenticator(Box::new(FakeChap::initiator()));
    }
    let mut req = i.start();
    let mut saw_continue = false;
    for n in 0..200 {
        // Through the wire format both ways.
        let req_pdu = decode(&wire(&req));
        if let Header::LoginRequest(h) = &req_pdu.header {
            saw_continue |= h.continue_;
        }
        let step = t.on_pdu(&req_pdu, policy);
        let (rsp, last) = match &step {
            LoginStep::Respond(p) => (p.clone(), None),
            LoginStep::Complete { response, .. } | LoginStep::Fail { response } => {
                (response.clone(), Some(step.clone()))
            }
        };
        let rsp_pdu = decode(&wire(&rsp));
        if let Header::LoginResponse(h) = &rsp_pdu.header {
            saw_continue |= h.continue_;
        }
        match i.on_pdu(&rsp_pdu) {
            Ok(InitiatorStep::Send(p)) => {
                assert!(last.is_none(), "target finished but initiator continues");
                req = p;
            }
            Ok(InitiatorStep::Complete { params, stat_sn, exp_cmd_sn, max_cmd_sn }) => {
                let tgt_rsp = rsp_header(&rsp_pdu);
                assert_eq!(stat_sn, tgt_rsp.stat_sn);
                assert_eq!(exp_cmd_sn, 5);
                assert_eq!(max_cmd_sn, 5 + 31);
                assert_eq!(stat_sn.wrapping_add(1), t.next_stat_sn());
                return (Ok(params), last, n, saw_continue);
            }
            Err(e) => return (Err(e), last, n, saw_continue),
        }
    }
    panic!("login did not finish");
}

fn expected_digest(offer: DigestPolicy, accept: DigestPolicy) -> Option<bool> {
    text::parse_list(offer.offer()).find(|v| accept.accepts(v)).map(|v| v == "CRC32C")
}

const POLICIES: [DigestPolicy; 4] =
    [DigestPolicy::None, DigestPolicy::Crc32c, DigestPolicy::PreferCrc32c, DigestPolicy::PreferNone];

#[test]
fn loopback_every_digest_combination() {
    for discovery in [false, true] {
        for ih in POLICIES {
            for th in POLICIES {
                for (id, td) in [(ih, th), (th, ih)] {
                    let mut icfg = initiator_cfg((!discovery).then_some(TARGET));
                    icfg.header_digest = ih;
                    icfg.data_digest = id;
                    let mut tcfg = target_cfg();
                    tcfg.header_digest = th;
                    tcfg.data_digest = td;
                    let (res, last, _, _) = loopback(icfg, tcfg, &Policy::default(), None, false);
                    let eh = expected_digest(ih, th);
                    let ed = expected_digest(id, td);
                    match (eh, ed) {
                        (Some(h), Some(d)) => {
                            let p = res.unwrap_or_else(|e| panic!("{ih:?}/{th:?}: {e}"));
                            assert_eq!(p.header_digest, h);
                            assert_eq!(p.data_digest, d);
                            let Some(LoginStep::Complete { params, .. }) = last else { panic!() };
                            assert_eq!(params, p, "both sides agree");
                        }
                        _ => assert!(res.is_err(), "{ih:?}/{th:?} {id:?}/{td:?} must fail"),
                    }
                }
            }
        }
    }
}

#[test]
fn loopback_r2t_and_immediate_data_combinations() {
    for (ii, ir) in [(false, false), (false, true), (true, false), (true, true)] {
        for (ti, tr) in [(false, false), (false, true), (true, false), (true, true)] {
            let mut icfg = initiator_cfg(Some(TARGET));
            icfg.immediate_data = ii;
            icfg.initial_r2t = ir;
            let mut tcfg = target_cfg();
            tcfg.immediate_data = ti;
            tcfg.initial_r2t = tr;
            let (res, last, _, _) = loopback(icfg, tcfg, &Policy::default(), None, false);
            let p = res.unwrap();
            assert_eq!(p.immediate_data, ii && ti, "ImmediateData is AND");
            assert_eq!(p.initial_r2t, ir || tr, "InitialR2T is OR");
            let Some(LoginStep::Complete { params, .. }) = last else { panic!() };
            assert_eq!(params, p);
        }
    }
}

#[test]
fn loopback_normal_params() {
    let (res, _, _, saw_c) = loopback(initiator_cfg(Some(TARGET)), target_cfg(), &Policy::default(), None, false);
    assert!(!saw_c);
    let p = res.unwrap();
    assert_eq!(p.initiator_name, INITIATOR);
    assert_eq!(p.target_name.as_deref(), Some(TARGET));
    assert_eq!(p.tsih, 0x1234);
    assert_eq!(p.target_portal_group_tag, 7);
    assert_eq!(p.initiator_max_recv_data_segment_length, 65536);
    assert_eq!(p.target_max_recv_data_segment_length, 262_144);
    assert_eq!(p.max_burst_length, 262_144);
    assert_eq!(p.first_burst_length, 65_536);
}

#[test]
fn loopback_split_text_with_continue() {
    for discovery in [false, true] {
        for seg in [24, 48, 64, 100] {
            let icfg = initiator_cfg((!discovery).then_some(TARGET));
            let (res, last, n, saw_c) = loopback(icfg, target_cfg(), &Policy::default(), Some(seg), false);
            let p = res.unwrap_or_else(|e| panic!("seg {seg}: {e}"));
            assert!(saw_c);
            assert!(n >= 2);
            let Some(LoginStep::Complete { params, .. }) = last else { panic!() };
            assert_eq!(params, p);
        }
    }
}

#[test]
fn loopback_with_authenticator() {
    let policy = Policy { auth: true, ..Default::default() };
    let (res, last, _, _) = loopback(initiator_cfg(Some(TARGET)), target_cfg(), &policy, None, true);
    let p = res.unwrap();
    let Some(LoginStep::Complete { params, .. }) = last else { panic!() };
    assert_eq!(params, p);
    // Authentication required, initiator offers only None.
    let (res, last, _, _) = loopback(initiator_cfg(Some(TARGET)), target_cfg(), &policy, None, false);
    assert_eq!(res, Err(LoginError::Rejected { status: LoginStatus::AUTHENTICATION_FAILURE }));
    assert!(matches!(last, Some(LoginStep::Fail { .. })));
}

#[test]
fn loopback_rejections_surface_to_initiator() {
    let cases = [
        (Some("iqn.nope"), Policy::default(), LoginStatus::NOT_FOUND),
        (Some(TARGET), Policy { allowed: false, ..Default::default() }, LoginStatus::AUTHORIZATION_FAILURE),
        (None, Policy { discovery: false, ..Default::default() }, LoginStatus::AUTHORIZATION_FAILURE),
    ];
    for (target, policy, status) in cases {
        let (res, last, _, _) = loopback(initiator_cfg(target), target_cfg(), &policy, None, false);
        let err = res.unwrap_err();
        assert_eq!(err, LoginError::Rejected { status });
        assert!(err.to_string().contains(login_status_name(status)));
        let Some(LoginStep::Fail { response }) = last else { panic!() };
        assert_eq!(rsp_header(&response).status, status);
    }
}

// ---- target error paths, one per status ----

fn req(csg: Stage, nsg: Stage, transit: bool, cont: bool) -> LoginRequest {
    LoginRequest {
        transit,
        continue_: cont,
        csg,
        nsg,
        version_max: 0,
        version_min: 0,
        isid: [0x80, 0, 0, 1, 0, 0],
        tsih: 0,
        itt: 9,
        cid: 0,
        cmd_sn: 1,
        exp_stat_sn: 0,
    }
}

fn pdu(h: LoginRequest, kv: &[(&str, &str)]) -> Pdu {
    Pdu::new(Header::LoginRequest(h), Bytes::from(text::encode(kv.iter().copied())))
}

const OP: Stage = Stage::OPERATIONAL_NEGOTIATION;
const SEC: Stage = Stage::SECURITY_NEGOTIATION;
const FFP: Stage = Stage::FULL_FEATURE_PHASE;

fn leading() -> Vec<(&'static str, &'static str)> {
    vec![("InitiatorName", INITIATOR), ("TargetName", TARGET), ("SessionType", "Normal")]
}

fn status_of(step: &LoginStep) -> LoginStatus {
    match step {
        LoginStep::Fail { response } => rsp_header(response).status,
        other => panic!("expected Fail, got {other:?}"),
    }
}

fn first_fails(h: LoginRequest, kv: &[(&str, &str)], policy: &Policy) -> LoginStatus {
    let mut t = TargetLogin::new(target_cfg());
    let s = status_of(&t.on_pdu(&pdu(h, kv), policy));
    assert!(t.is_finished());
    s
}

#[test]
fn error_unsupported_version() {
    let mut h = req(OP, FFP, true, false);
    h.version_min = 1;
    h.version_max = 2;
    assert_eq!(first_fails(h, &leading(), &Policy::default()), LoginStatus::UNSUPPORTED_VERSION);
}

#[test]
fn error_tsih_nonzero() {
    let mut h = req(OP, FFP, true, false);
    h.tsih = 3;
    assert_eq!(first_fails(h.clone(), &leading(), &Policy::default()), LoginStatus::SESSION_DOES_NOT_EXIST);
    let p = Policy { exists: true, ..Default::default() };
    assert_eq!(first_fails(h, &leading(), &p), LoginStatus::CANT_INCLUDE_IN_SESSION);
}

#[test]
fn error_missing_parameters() {
    let h = req(OP, FFP, true, false);
    let p = Policy::default();
    assert_eq!(first_fails(h.clone(), &[("TargetName", TARGET)], &p), LoginStatus::MISSING_PARAMETER);
    assert_eq!(
        first_fails(h.clone(), &[("InitiatorName", INITIATOR), ("SessionType", "Normal")], &p),
        LoginStatus::MISSING_PARAMETER
    );
    assert_eq!(first_fails(h.clone(), &[("InitiatorName", "")], &p), LoginStatus::MISSING_PARAMETER);
    // We require CRC32C but the initiator never offers HeaderDigest.
    let mut cfg = target_cfg();
    cfg.header_digest = DigestPolicy::Crc32c;
    let mut t = TargetLogin::new(cfg);
    assert_eq!(status_of(&t.on_pdu(&pdu(h, &leading()), &p)), LoginStatus::MISSING_PARAMETER);
}

#[test]
fn error_not_found_and_authorization() {
    let h = req(OP, FFP, true, false);
    let kv = [("InitiatorName", INITIATOR), ("TargetName", "iqn.other")];
    assert_eq!(first_fails(h.clone(), &kv, &Policy::default()), LoginStatus::NOT_FOUND);
    let p = Policy { allowed: false, ..Default::default() };
    assert_eq!(first_fails(h.clone(), &leading(), &p), LoginStatus::AUTHORIZATION_FAILURE);
    let p = Policy { discovery: false, ..Default::default() };
    let kv = [("InitiatorName", INITIATOR), ("SessionType", "Discovery")];
    assert_eq!(first_fails(h, &kv, &p), LoginStatus::AUTHORIZATION_FAILURE);
}

#[test]
fn error_session_type() {
    let kv = [("InitiatorName", INITIATOR), ("SessionType", "Bogus")];
    assert_eq!(
        first_fails(req(OP, FFP, true, false), &kv, &Policy::default()),
        LoginStatus::SESSION_TYPE_NOT_SUPPORTED
    );
}

#[test]
fn error_authentication() {
    let mut kv = leading();
    kv.push(("AuthMethod", "CHAP"));
    assert_eq!(first_fails(req(SEC, OP, true, false), &kv, &Policy::default()), LoginStatus::AUTHENTICATION_FAILURE);
    // Authentication required but the security stage is skipped.
    let p = Policy { auth: true, ..Default::default() };
    assert_eq!(first_fails(req(OP, FFP, true, false), &leading(), &p), LoginStatus::AUTHENTICATION_FAILURE);
    // Required, and the initiator offers only None.
    let mut kv = leading();
    kv.push(("AuthMethod", "None"));
    assert_eq!(first_fails(req(SEC, OP, true, false), &kv, &p), LoginStatus::AUTHENTICATION_FAILURE);
}

#[test]
fn error_invalid_during_login() {
    let mut t = TargetLogin::new(target_cfg());
    let nop = Pdu::new(
        Header::NopOut(NopOut { immediate: true, lun: [0; 8], itt: 4, ttt: RESERVED_TAG, cmd_sn: 1, exp_stat_sn: 0 }),
        Bytes::new(),
    );
    let step = t.on_pdu(&nop, &Policy::default());
    assert_eq!(status_of(&step), LoginStatus::INVALID_DURING_LOGIN);
    let LoginStep::Fail { response } = step else { panic!() };
    assert_eq!(rsp_header(&response).itt, 4);

    // Also in the middle of a login.
    let mut t = TargetLogin::new(target_cfg());
    let mut kv = leading();
    kv.push(("AuthMethod", "None"));
    assert!(matches!(t.on_pdu(&pdu(req(SEC, OP, true, false), &kv), &Policy::default()), LoginStep::Respond(_)));
    assert_eq!(status_of(&t.on_pdu(&nop, &Policy::default())), LoginStatus::INVALID_DURING_LOGIN);
}

/// Two-PDU sequences whose second PDU is an initiator error.
#[test]
fn error_initiator_errors() {
    let p = Policy::default();
    let sec_first = {
        let mut kv = leading();
        kv.push(("AuthMethod", "None"));
        kv
    };
    type Case = (&'static str, LoginRequest, Vec<(&'static str, &'static str)>);
    let second_cases: Vec<Case> = vec![
        ("itt changes", LoginRequest { itt: 10, ..req(OP, FFP, true, false) }, vec![]),
        ("cid changes", LoginRequest { cid: 1, ..req(OP, FFP, true, false) }, vec![]),
        ("isid changes", LoginRequest { isid: [0; 6], ..req(OP, FFP, true, false) }, vec![]),
        ("csg mismatch", req(SEC, OP, true, false), vec![]),
        ("T and C", req(OP, FFP, true, true), vec![]),
        ("nsg 2", req(OP, Stage(2), true, false), vec![]),
        ("name again", req(OP, FFP, true, false), vec![("InitiatorName", INITIATOR)]),
        ("AuthMethod in op stage", req(OP, FFP, true, false), vec![("AuthMethod", "None")]),
        ("duplicate", req(OP, FFP, true, false), vec![("MaxBurstLength", "512"), ("MaxBurstLength", "512")]),
        ("bad text", req(OP, FFP, true, false), vec![("", "x")]),
        ("bad MRDSL", req(OP, FFP, true, false), vec![("MaxRecvDataSegmentLength", "100")]),
        ("CHAP without auth", req(OP, FFP, true, false), vec![("CHAP_A", "5")]),
    ];
    for (what, h, kv) in second_cases {
        let mut t = TargetLogin::new(target_cfg());
        assert!(matches!(t.on_pdu(&pdu(req(SEC, OP, true, false), &sec_first), &p), LoginStep::Respond(_)), "{what}");
        assert_eq!(status_of(&t.on_pdu(&pdu(h, &kv), &p)), LoginStatus::INITIATOR_ERROR, "{what}");
        // Anything after Fail fails again.
        assert!(matches!(t.on_pdu(&pdu(req(OP, FFP, true, false), &[]), &p), LoginStep::Fail { .. }));
    }
    // Renegotiating a key in a later sequence.
    let mut t = TargetLogin::new(target_cfg());
    let mut kv = leading();
    kv.push(("MaxBurstLength", "8192"));
    assert!(matches!(t.on_pdu(&pdu(req(OP, FFP, false, false), &kv), &p), LoginStep::Respond(_)));
    let step = t.on_pdu(&pdu(req(OP, FFP, true, false), &[("MaxBurstLength", "4096")]), &p);
    assert_eq!(status_of(&step), LoginStatus::INITIATOR_ERROR);
    // Too much text across Continue PDUs.
    let mut t = TargetLogin::new(target_cfg());
    let blob = vec![b'a'; 8192];
    let mut last = None;
    for _ in 0..9 {
        let step = t.on_pdu(&Pdu::new(Header::LoginRequest(req(OP, FFP, false, true)), Bytes::from(blob.clone())), &p);
        if let LoginStep::Fail { .. } = step {
            last = Some(step);
            break;
        }
    }
    assert_eq!(status_of(&last.unwrap()), LoginStatus::INITIATOR_ERROR);
    // A first PDU with CSG = FullFeature.
    assert_eq!(first_fails(req(FFP, FFP, false, false), &leading(), &p), LoginStatus::INITIATOR_ERROR);
}

#[test]
fn unknown_and_extension_keys_not_understood() {
    let mut t = TargetLogin::new(target_cfg());
    let mut kv = leading();
    kv.extend([("X-com.example.Foo", "1"), ("X#org.example.bar", "2"), ("Frobnicate", "Yes"), ("TargetAlias", "me")]);
    let LoginStep::Complete { response, .. } = t.on_pdu(&pdu(req(OP, FFP, true, false), &kv), &Policy::default())
    else {
        panic!()
    };
    let p = rsp_pairs(&response);
    assert_eq!(get(&p, "X-com.example.Foo"), Some("NotUnderstood"));
    assert_eq!(get(&p, "X#org.example.bar"), Some("NotUnderstood"));
    assert_eq!(get(&p, "Frobnicate"), Some("NotUnderstood"));
    // TargetAlias comes from us (declaration), the initiator's one is rejected.
    assert!(p.iter().any(|(k, v)| k == "TargetAlias" && v == "Reject"));
}

#[test]
fn step_by_step_and_stat_sn() {
    // The initiator negotiates in two op-stage sequences before transiting.
    let mut t = TargetLogin::new(target_cfg());
    let p = Policy::default();
    let mut kv = leading();
    kv.push(("HeaderDigest", "CRC32C,None"));
    let LoginStep::Respond(r) = t.on_pdu(&pdu(req(OP, FFP, false, false), &kv), &p) else { panic!() };
    let h = rsp_header(&r);
    assert!(!h.transit);
    assert_eq!(h.csg, OP);
    assert_eq!(h.stat_sn, 100);
    assert_eq!(h.tsih, 0);
    assert_eq!(get(&rsp_pairs(&r), "HeaderDigest"), Some("CRC32C"));
    let LoginStep::Complete { response, params } =
        t.on_pdu(&pdu(req(OP, FFP, true, false), &[("DataDigest", "CRC32C")]), &p)
    else {
        panic!()
    };
    assert_eq!(rsp_header(&response).stat_sn, 101);
    assert!(params.header_digest && params.data_digest);
    // MaxRecvDataSegmentLength declared once only.
    assert!(get(&rsp_pairs(&response), "MaxRecvDataSegmentLength").is_none());
    assert_eq!(params.target_max_recv_data_segment_length, 262_144);
}

#[test]
fn security_straight_to_full_feature() {
    // 0 -> 3 directly (open-iscsi discovery with default values).
    let mut t = TargetLogin::new(target_cfg());
    let kv = [("InitiatorName", INITIATOR), ("SessionType", "Discovery"), ("AuthMethod", "None")];
    let LoginStep::Complete { response, params } = t.on_pdu(&pdu(req(SEC, FFP, true, false), &kv), &Policy::default())
    else {
        panic!()
    };
    let h = rsp_header(&response);
    assert_eq!((h.csg, h.nsg, h.transit), (SEC, FFP, true));
    for (k, _) in rsp_pairs(&response) {
        assert!(OPEN_ISCSI_SECURITY_KEYS.contains(&k.as_str()), "{k}");
    }
    // Nothing declared: both sides use the 8192 default.
    assert_eq!(params.target_max_recv_data_segment_length, 8192);
    assert_eq!(params.initiator_max_recv_data_segment_length, 8192);
}

#[test]
fn continue_from_initiator_and_split_response() {
    // A request split over C PDUs, whose answer exceeds the 8192-byte login
    // segment and is split back.
    let mut kv: Vec<(String, String)> = leading().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for i in 0..200 {
        kv.push((format!("X-com.example.key-number-{i:04}-padding-padding-padding-xx"), "1".into()));
    }
    let data = text::encode(kv.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    assert!(data.len() > 8192);
    let mut t = TargetLogin::new(target_cfg());
    let p = Policy::default();
    let chunks: Vec<&[u8]> = data.chunks(4000).collect();
    for (stat_sn, (n, c)) in (100..).zip(chunks.iter().enumerate()) {
        let last = n == chunks.len() - 1;
        let h = req(OP, FFP, last, !last);
        let step = t.on_pdu(&Pdu::new(Header::LoginRequest(h), Bytes::copy_from_slice(c)), &p);
        let LoginStep::Respond(r) = step else { panic!("{step:?}") };
        let rh = rsp_header(&r);
        assert_eq!(rh.stat_sn, stat_sn);
        if !last {
            assert!(r.data.is_empty() && !rh.transit && !rh.continue_);
        } else {
            assert!(rh.continue_ && !rh.transit);
            assert_eq!(r.data.len(), 8192);
        }
    }
    // Empty requests fetch the rest.
    let mut text_back = Vec::new();
    let mut done = None;
    for _ in 0..10 {
        match t.on_pdu(&pdu(req(OP, FFP, true, false), &[]), &p) {
            LoginStep::Respond(r) => {
                assert!(rsp_header(&r).continue_);
                text_back.extend_from_slice(&r.data);
            }
            LoginStep::Complete { response, params } => {
                assert!(!rsp_header(&response).continue_ && rsp_header(&response).transit);
                text_back.extend_from_slice(&response.data);
                done = Some(params);
                break;
            }
            LoginStep::Fail { .. } => panic!(),
        }
    }
    assert!(done.is_some());
    // A non-empty request while we are still sending is an error.
    let mut t2 = TargetLogin::new(target_cfg());
    for (n, c) in chunks.iter().enumerate() {
        let last = n == chunks.len() - 1;
        t2.on_pdu(&Pdu::new(Header::LoginRequest(req(OP, FFP, last, !last)), Bytes::copy_from_slice(c)), &p);
    }
    let step = t2.on_pdu(&pdu(req(OP, FFP, true, false), &[("MaxBurstLength", "512")]), &p);
    assert_eq!(status_of(&step), LoginStatus::INITIATOR_ERROR);
}

#[test]
fn bounded_number_of_login_pdus() {
    let mut t = TargetLogin::new(target_cfg());
    let p = Policy::default();
    assert!(matches!(t.on_pdu(&pdu(req(OP, FFP, false, false), &leading()), &p), LoginStep::Respond(_)));
    let mut n = 1;
    loop {
        match t.on_pdu(&pdu(req(OP, FFP, false, false), &[]), &p) {
            LoginStep::Respond(_) => n += 1,
            LoginStep::Fail { response } => {
                assert_eq!(rsp_header(&response).status, LoginStatus::INITIATOR_ERROR);
                break;
            }
            LoginStep::Complete { .. } => panic!(),
        }
    }
    assert_eq!(n, MAX_LOGIN_PDUS);
}

#[test]
fn initiator_handles_target_quirks() {
    // A target that answers in separate steps, splits with C, declares
    // things in the security stage and offers a key of its own.
    let mut i = InitiatorLogin::new(initiator_cfg(Some(TARGET)));
    let first = i.start();
    let Header::LoginRequest(h) = &first.header else { panic!() };
    assert_eq!((h.csg, h.nsg, h.transit), (SEC, OP, true));
    let fp = text::parse(&first.data).unwrap();
    assert_eq!(fp.iter().find(|p| p.key == "AuthMethod").unwrap().value, "None");
    let rsp = |transit: bool, cont: bool, csg: Stage, nsg: Stage, sn: u32, tsih: u16, kv: &[(&str, &str)]| {
        Pdu::new(
            Header::LoginResponse(LoginResponse {
                transit,
                continue_: cont,
                csg,
                nsg,
                version_max: 0,
                version_active: 0,
                isid: [0x80, 0x12, 0x34, 0x56, 0, 0],
                tsih,
                itt: 0,
                stat_sn: sn,
                exp_cmd_sn: 5,
                max_cmd_sn: 20,
                status: LoginStatus::SUCCESS,
            }),
            Bytes::from(text::encode(kv.iter().copied())),
        )
    };
    // Security answer without transit (tgt-style), TPGT declared.
    let InitiatorStep::Send(r) = i
        .on_pdu(&rsp(false, false, SEC, Stage(0), 50, 0, &[("TargetPortalGroupTag", "3"), ("AuthMethod", "None")]))
        .unwrap()
    else {
        panic!()
    };
    let Header::LoginRequest(h) = &r.header else { panic!() };
    assert_eq!((h.csg, h.nsg, h.transit, h.exp_stat_sn), (SEC, OP, true, 51));
    assert!(r.data.is_empty());
    let InitiatorStep::Send(r) = i.on_pdu(&rsp(true, false, SEC, OP, 51, 0, &[])).unwrap() else { panic!() };
    let Header::LoginRequest(h) = &r.header else { panic!() };
    assert_eq!((h.csg, h.nsg, h.transit), (OP, FFP, true));
    let offers = text::parse(&r.data).unwrap();
    assert!(offers.iter().any(|p| p.key == "MaxRecvDataSegmentLength" && p.value == "65536"));
    // Answer split over two PDUs with C; target offers ErrorRecoveryLevel...
    // no: it offers an unknown X- key and TaskReporting.
    let InitiatorStep::Send(r) = i
        .on_pdu(&rsp(false, true, OP, Stage(0), 52, 0, &[("HeaderDigest", "None"), ("MaxBurstLength", "65536")]))
        .unwrap()
    else {
        panic!()
    };
    assert!(r.data.is_empty());
    let InitiatorStep::Send(r) = i
        .on_pdu(&rsp(
            false,
            false,
            OP,
            Stage(0),
            53,
            0,
            &[
                ("DataDigest", "None"),
                ("MaxRecvDataSegmentLength", "131072"),
                ("X-vendor.Thing", "7"),
                ("TaskReporting", "RFC3720"),
            ],
        ))
        .unwrap()
    else {
        panic!()
    };
    let answers = text::parse(&r.data).unwrap();
    assert!(answers.contains(&Pair { key: "X-vendor.Thing", value: "NotUnderstood" }));
    assert!(answers.contains(&Pair { key: "TaskReporting", value: "RFC3720" }));
    let Header::LoginRequest(h) = &r.header else { panic!() };
    assert!(h.transit);
    let step = i.on_pdu(&rsp(true, false, OP, FFP, 54, 0x99, &[])).unwrap();
    let InitiatorStep::Complete { params, stat_sn, exp_cmd_sn, max_cmd_sn } = step else { panic!() };
    assert_eq!((stat_sn, exp_cmd_sn, max_cmd_sn), (54, 5, 20));
    assert_eq!(params.tsih, 0x99);
    assert_eq!(params.target_portal_group_tag, 3);
    assert_eq!(params.max_burst_length, 65536);
    assert_eq!(params.target_max_recv_data_segment_length, 131072);
    assert_eq!(params.initiator_max_recv_data_segment_length, 65536);
    // Unanswered offers keep RFC defaults.
    assert_eq!(params.first_burst_length, 65536);
}

#[test]
fn initiator_errors() {
    let mut i = InitiatorLogin::new(initiator_cfg(Some(TARGET)));
    i.start();
    let mk = |status: LoginStatus, data: &[(&str, &str)]| {
        Pdu::new(
            Header::LoginResponse(LoginResponse {
                transit: false,
                continue_: false,
                csg: SEC,
                nsg: Stage(0),
                version_max: 0,
                version_active: 0,
                isid: [0; 6],
                tsih: 0,
                itt: 0,
                stat_sn: 0,
                exp_cmd_sn: 0,
                max_cmd_sn: 0,
                status,
            }),
            Bytes::from(text::encode(data.iter().copied())),
        )
    };
    let e = i.on_pdu(&mk(LoginStatus::NOT_FOUND, &[])).unwrap_err();
    assert_eq!(e.to_string(), "login rejected: target not found (0203h)");
    let mut i = InitiatorLogin::new(initiator_cfg(Some(TARGET)));
    i.start();
    let e = i.on_pdu(&mk(LoginStatus::TARGET_MOVED_TEMPORARILY, &[("TargetAddress", "10.1.1.1:3260,1")])).unwrap_err();
    assert_eq!(
        e,
        LoginError::Redirected {
            status: LoginStatus::TARGET_MOVED_TEMPORARILY,
            target_address: Some("10.1.1.1:3260,1".into())
        }
    );
    // Wrong stage, bad text, wrong opcode.
    let mut i = InitiatorLogin::new(initiator_cfg(Some(TARGET)));
    i.start();
    let mut bad = mk(LoginStatus::SUCCESS, &[]);
    if let Header::LoginResponse(h) = &mut bad.header {
        h.csg = OP;
    }
    assert!(matches!(i.on_pdu(&bad), Err(LoginError::Protocol(_))));
    let mut i = InitiatorLogin::new(initiator_cfg(Some(TARGET)));
    i.start();
    let mut bad = mk(LoginStatus::SUCCESS, &[]);
    bad.data = Bytes::from_static(b"novalue\0");
    assert!(matches!(i.on_pdu(&bad), Err(LoginError::Text(_))));
    let mut i = InitiatorLogin::new(initiator_cfg(Some(TARGET)));
    i.start();
    let nop = Pdu::new(
        Header::NopIn(NopIn { lun: [0; 8], itt: 0, ttt: 0, stat_sn: 0, exp_cmd_sn: 0, max_cmd_sn: 0 }),
        Bytes::new(),
    );
    assert!(matches!(i.on_pdu(&nop), Err(LoginError::Protocol(_))));
    // AuthMethod=CHAP when we offered None.
    let mut i = InitiatorLogin::new(initiator_cfg(Some(TARGET)));
    i.start();
    assert!(i.on_pdu(&mk(LoginStatus::SUCCESS, &[("AuthMethod", "CHAP")])).is_err());
}

// ---- properties ----

fn key_vocab() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(crate::negotiate::KEYS.iter().map(|d| d.name.to_string()).collect::<Vec<_>>()),
        "X-[a-z]{1,8}",
        "[A-Za-z]{1,10}",
    ]
}
fn value_vocab() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Yes".to_string()),
        Just("No".to_string()),
        Just("None".to_string()),
        Just("CRC32C,None".to_string()),
        Just("Irrelevant".to_string()),
        Just("Reject".to_string()),
        Just(TARGET.to_string()),
        Just("Discovery".to_string()),
        (0u64..20_000_000).prop_map(|n| n.to_string()),
        "[ -~]{0,12}",
    ]
}

fn any_stage() -> impl Strategy<Value = Stage> {
    (0u8..4).prop_map(Stage)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random key sets in a login never panic and always produce a
    /// well-formed answer.
    #[test]
    fn random_key_sets_never_panic(
        kv in proptest::collection::vec((key_vocab(), value_vocab()), 0..40),
        csg in any_stage(), nsg in any_stage(), transit: bool, with_leading: bool,
    ) {
        let mut pairs: Vec<(String, String)> = Vec::new();
        if with_leading {
            pairs.push(("InitiatorName".into(), INITIATOR.into()));
            pairs.push(("TargetName".into(), TARGET.into()));
        }
        pairs.extend(kv);
        let data = text::encode(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut t = TargetLogin::new(target_cfg());
        let step = t.on_pdu(&Pdu::new(Header::LoginRequest(req(csg, nsg, transit, false)), Bytes::from(data)), &Policy::default());
        let response = match &step {
            LoginStep::Respond(r) | LoginStep::Complete { response: r, .. } | LoginStep::Fail { response: r } => r,
        };
        prop_assert!(response.data.len() <= 8192);
        prop_assert!(text::parse(&response.data).is_ok());
    }

    /// Random PDU sequences always reach Complete or Fail within a bounded
    /// number of steps, and never panic.
    #[test]
    fn random_pdu_sequences_terminate(
        pdus in proptest::collection::vec(
            (any::<u8>(), any::<bool>(), any::<bool>(), any_stage(), any_stage(), 0u32..3, 0u16..2,
             proptest::collection::vec((key_vocab(), value_vocab()), 0..6)),
            1..(MAX_LOGIN_PDUS as usize + 10)),
        raw in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut t = TargetLogin::new(target_cfg());
        let policy = Policy::default();
        let mut finished_at = None;
        for (n, (kind, transit, cont, csg, nsg, itt, tsih, kv)) in pdus.iter().enumerate() {
            let data = if kind % 7 == 0 {
                Bytes::from(raw.clone())
            } else {
                Bytes::from(text::encode(kv.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
            };
            let pdu = if kind % 11 == 0 {
                Pdu::new(Header::NopOut(NopOut { immediate: true, lun: [0; 8], itt: *itt, ttt: RESERVED_TAG, cmd_sn: 0, exp_stat_sn: 0 }), data)
            } else {
                let mut h = req(*csg, *nsg, *transit, *cont);
                h.itt = *itt;
                h.tsih = *tsih;
                Pdu::new(Header::LoginRequest(h), data)
            };
            match t.on_pdu(&pdu, &policy) {
                LoginStep::Respond(r) => {
                    prop_assert!(finished_at.is_none());
                    prop_assert!(r.data.len() <= 8192);
                }
                LoginStep::Complete { .. } | LoginStep::Fail { .. } => {
                    if finished_at.is_none() { finished_at = Some(n); }
                    prop_assert!(t.is_finished());
                }
            }
        }
        if pdus.len() > MAX_LOGIN_PDUS as usize {
            prop_assert!(finished_at.is_some());
            prop_assert!(finished_at.unwrap_or(usize::MAX) < MAX_LOGIN_PDUS as usize);
        }
    }

    /// The initiator never panics on arbitrary responses.
    #[test]
    fn initiator_random_responses(
        rsps in proptest::collection::vec(
            (any::<bool>(), any::<bool>(), any_stage(), any_stage(), any::<u8>(), proptest::collection::vec((key_vocab(), value_vocab()), 0..6)),
            1..20),
    ) {
        let mut i = InitiatorLogin::new(initiator_cfg(Some(TARGET)));
        i.start();
        for (transit, cont, csg, nsg, st, kv) in rsps {
            let r = Pdu::new(
                Header::LoginResponse(LoginResponse {
                    transit, continue_: cont, csg, nsg, version_max: 0, version_active: 0,
                    isid: [0; 6], tsih: 1, itt: 0, stat_sn: 1, exp_cmd_sn: 1, max_cmd_sn: 1,
                    status: LoginStatus(if st < 200 { 0 } else { st % 4 }, st % 3),
                }),
                Bytes::from(text::encode(kv.iter().map(|(k, v)| (k.as_str(), v.as_str())))),
            );
            match i.on_pdu(&r) {
                Ok(InitiatorStep::Send(_)) => {}
                _ => break,
            }
        }
    }
}

#[test]
fn operational_keys_in_security_stage_are_answered() {
    // Some initiators send operational keys alongside AuthMethod=None.
    let mut t = TargetLogin::new(target_cfg());
    let p = Policy::default();
    let mut kv = leading();
    kv.extend([
        ("AuthMethod", "None,CHAP"),
        ("HeaderDigest", "CRC32C,None"),
        ("MaxRecvDataSegmentLength", "131072"),
        ("ImmediateData", "No"),
    ]);
    let LoginStep::Respond(r) = t.on_pdu(&pdu(req(SEC, OP, true, false), &kv), &p) else { panic!() };
    let a = rsp_pairs(&r);
    assert_eq!(get(&a, "AuthMethod"), Some("None"));
    assert_eq!(get(&a, "HeaderDigest"), Some("CRC32C"));
    assert_eq!(get(&a, "ImmediateData"), Some("No"));
    assert_eq!(get(&a, "MaxRecvDataSegmentLength"), Some("262144"));
    let h = rsp_header(&r);
    assert_eq!((h.transit, h.csg, h.nsg), (true, SEC, OP));
    let LoginStep::Complete { response, params } =
        t.on_pdu(&pdu(req(OP, FFP, true, false), &[("DataDigest", "None")]), &p)
    else {
        panic!()
    };
    assert!(get(&rsp_pairs(&response), "MaxRecvDataSegmentLength").is_none());
    assert!(params.header_digest && !params.data_digest && !params.immediate_data);
    assert_eq!(params.initiator_max_recv_data_segment_length, 131072);
    // Offering one of them again in the operational stage is renegotiation.
    let mut t = TargetLogin::new(target_cfg());
    t.on_pdu(&pdu(req(SEC, OP, true, false), &kv), &p);
    let step = t.on_pdu(&pdu(req(OP, FFP, true, false), &[("ImmediateData", "Yes")]), &p);
    assert_eq!(status_of(&step), LoginStatus::INITIATOR_ERROR);
}

// ---- login timeout, on a virtual clock ----

const LOGIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

fn timed_login(t0: std::time::Instant) -> TargetLogin {
    let mut t = TargetLogin::new(target_cfg());
    assert_eq!(t.poll_timeout(), None, "no timer until started");
    t.start_timer(LOGIN_LIMIT, t0);
    t
}

#[test]
fn login_times_out_at_its_deadline_whatever_the_traffic() {
    use std::time::{Duration, Instant};
    let t0 = Instant::now();
    let mut t = timed_login(t0);
    assert_eq!(t.poll_timeout(), Some(t0 + LOGIN_LIMIT));
    // Requests that keep the login going do not move the deadline.
    let LoginStep::Respond(_) = t.on_pdu(&pdu(req(OP, FFP, false, false), &leading()), &Policy::default()) else {
        panic!("login should go on")
    };
    assert_eq!(t.poll_timeout(), Some(t0 + LOGIN_LIMIT));
    assert_eq!(t.handle_timeout(t0 + LOGIN_LIMIT - Duration::from_millis(1)), Ok(()));
    assert_eq!(t.handle_timeout(t0 + LOGIN_LIMIT), Err(crate::timeout::Timeout::Login(LOGIN_LIMIT)));
    assert_eq!(t.handle_timeout(t0 + LOGIN_LIMIT * 2), Err(crate::timeout::Timeout::Login(LOGIN_LIMIT)));
}

#[test]
fn completed_login_stops_its_timer() {
    use std::time::Instant;
    let t0 = Instant::now();
    let mut t = timed_login(t0);
    let LoginStep::Complete { .. } = t.on_pdu(&pdu(req(OP, FFP, true, false), &leading()), &Policy::default()) else {
        panic!("login should complete")
    };
    assert_eq!(t.poll_timeout(), None);
    assert_eq!(t.handle_timeout(t0 + LOGIN_LIMIT * 10), Ok(()));
}

#[test]
fn login_timer_far_beyond_the_clock_never_fires() {
    use std::time::{Duration, Instant};
    let t0 = Instant::now();
    let mut t = TargetLogin::new(target_cfg());
    t.start_timer(Duration::MAX, t0);
    assert_eq!(t.poll_timeout(), None);
    assert_eq!(t.handle_timeout(t0 + Duration::from_secs(1 << 40)), Ok(()));
}
