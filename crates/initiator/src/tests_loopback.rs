//! Loopback TCP tests against a small RAM-disk target assembled from the
//! iscsi crate's own state machines (`TargetLogin` + `TargetConnection`):
//! login, discovery, reads and writes through R2T, concurrency, logout.

use crate::*;
use bytes::{Bytes, BytesMut};
use oxcopy_iscsi::frame::{decode_frame, FrameLimits};
use oxcopy_iscsi::login::{LoginPolicy, LoginStep, TargetInfo, TargetLogin, TargetLoginConfig};
use oxcopy_iscsi::pdu::LoginStatus;
use oxcopy_iscsi::target::{Action, TargetConnConfig, TargetConnection, TaskOutcome};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TARGET: &str = "iqn.2026-11.dev.oxcopy:ram";
const BS: u32 = 512;
const BLOCKS: u64 = 2048;

struct Policy;
impl LoginPolicy for Policy {
    fn check_target(&self, name: &str, _i: &str) -> Result<TargetInfo, LoginStatus> {
        if name == TARGET {
            Ok(TargetInfo { tpgt: 1, alias: None })
        } else {
            Err(LoginStatus::NOT_FOUND)
        }
    }
    fn discovery_allowed(&self, _i: &str) -> bool {
        true
    }
}

type Disk = Arc<Mutex<Vec<u8>>>;

fn sense(key: u8, asc: u8) -> Option<Vec<u8>> {
    let mut s = vec![0u8; 18];
    s[0] = 0x70;
    s[2] = key;
    s[7] = 10;
    s[12] = asc;
    Some(s)
}

/// Execute a CDB against the RAM disk (just enough SBC).
fn execute(disk: &Disk, cdb: &[u8], data_out: &[u8]) -> TaskOutcome {
    let good = |data: Vec<u8>| TaskOutcome { data_in: Bytes::from(data), ..Default::default() };
    let check = |key, asc| TaskOutcome { status: 2, sense: sense(key, asc), ..Default::default() };
    let be64 = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap());
    let be32 = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    match cdb[0] {
        0x00 | 0x91 => good(vec![]),
        0x12 => {
            let alloc = u16::from_be_bytes([cdb[3], cdb[4]]) as usize;
            let mut d = vec![0u8; 36];
            d[4] = 31;
            d[8..16].copy_from_slice(b"OXCOPY  ");
            d.truncate(alloc);
            good(d)
        }
        0x9e => {
            let mut d = vec![0u8; 32];
            d[..8].copy_from_slice(&(BLOCKS - 1).to_be_bytes());
            d[8..12].copy_from_slice(&BS.to_be_bytes());
            d.truncate(be32(&cdb[10..14]) as usize);
            good(d)
        }
        0xa0 => {
            let mut d = vec![0u8; 16];
            d[3] = 8;
            good(d)
        }
        0x88 | 0x8a => {
            let lba = be64(&cdb[2..10]);
            let n = be32(&cdb[10..14]) as u64;
            if lba + n > BLOCKS {
                return check(scsi::sense_key::ILLEGAL_REQUEST, 0x21);
            }
            let (a, b) = ((lba * BS as u64) as usize, ((lba + n) * BS as u64) as usize);
            let mut d = disk.lock().unwrap();
            if cdb[0] == 0x88 {
                good(d[a..b].to_vec())
            } else {
                d[a..b].copy_from_slice(&data_out[..b - a]);
                TaskOutcome { data_out_wanted: (b - a) as u32, ..Default::default() }
            }
        }
        _ => check(scsi::sense_key::ILLEGAL_REQUEST, 0x20),
    }
}

async fn serve_conn(mut sock: TcpStream, disk: Disk, tcfg: TargetLoginConfig) {
    let mut buf = BytesMut::new();
    let mut login = TargetLogin::new(tcfg);
    let params = loop {
        let pdu = loop {
            if let Some(p) = decode_frame(&mut buf, &FrameLimits::LOGIN).unwrap() {
                break p;
            }
            if sock.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
        };
        match login.on_pdu(&pdu, &Policy) {
            LoginStep::Respond(p) => write_pdu(&mut sock, &p).await,
            LoginStep::Complete { response, params } => {
                write_pdu(&mut sock, &response).await;
                break params;
            }
            LoginStep::Fail { response } => {
                write_pdu(&mut sock, &response).await;
                return;
            }
        }
    };
    let limits = FrameLimits {
        header_digest: params.header_digest,
        data_digest: params.data_digest,
        max_data_segment: params.target_max_recv_data_segment_length,
    };
    let cfg = TargetConnConfig {
        cmd_window: 16,
        max_write_buffer: 16 << 20,
        send_targets: format!("TargetName={TARGET}\0TargetAddress=127.0.0.1:3260,1\0").into_bytes(),
    };
    let mut conn = TargetConnection::new(params, cfg, login.next_stat_sn(), login.exp_cmd_sn());
    loop {
        let pdu = loop {
            match decode_frame(&mut buf, &limits) {
                Ok(Some(p)) => break p,
                Ok(None) => {}
                Err(_) => return,
            }
            if sock.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
        };
        let mut actions = conn.on_pdu(pdu);
        while !actions.is_empty() {
            let mut next = vec![];
            for a in actions {
                match a {
                    Action::Send(e) => {
                        if sock.write_all(&e.to_vec()).await.is_err() {
                            return;
                        }
                    }
                    Action::Execute(t) => {
                        let o = execute(&disk, &t.cdb, &t.data_out);
                        next.extend(conn.complete(t.itt, o));
                    }
                    Action::Cancel(_) => {}
                    Action::TaskManagement(m) => {
                        next.extend(conn.tmf_done(m.itt, oxcopy_iscsi::pdu::TmfResponse::COMPLETE))
                    }
                    Action::Close => return,
                }
            }
            actions = next;
        }
    }
}

async fn write_pdu(sock: &mut TcpStream, p: &oxcopy_iscsi::Pdu) {
    let e = oxcopy_iscsi::frame::encode_frame(&p.header, &p.ahs, p.data.clone(), false, false);
    sock.write_all(&e.to_vec()).await.unwrap();
}

async fn start_target(tcfg: TargetLoginConfig) -> (SocketAddr, Disk) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let disk: Disk = Arc::new(Mutex::new(vec![0u8; (BLOCKS * BS as u64) as usize]));
    let d2 = disk.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_conn(s, d2.clone(), tcfg.clone()));
        }
    });
    (addr, disk)
}

fn cfg() -> SessionConfig {
    SessionConfig {
        command_timeout: Duration::from_secs(5),
        management_timeout: Duration::from_secs(5),
        ..SessionConfig::for_target(TARGET)
    }
}

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(20), f).await.expect("test timed out");
}

#[tokio::test]
async fn discovery_login_io_logout() {
    bounded(async {
        let (addr, disk) = start_target(TargetLoginConfig::default()).await;
        let found = Session::discover(addr, SessionConfig::discovery()).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, TARGET);

        let s = Session::connect(addr, cfg()).await.unwrap();
        assert_eq!(s.params().target_name.as_deref(), Some(TARGET));
        s.test_unit_ready(0).await.unwrap();
        assert_eq!(s.read_capacity16(0).await.unwrap(), (BLOCKS, BS));
        let inq = s.inquiry(0, false, 0, 36).await.unwrap();
        assert_eq!(&inq[8..14], b"OXCOPY");
        assert_eq!(s.report_luns().await.unwrap(), vec![0]);
        s.nop().await.unwrap();

        // 600 KiB write: immediate + unsolicited + several R2Ts.
        let data = Bytes::from(oxcopy_testkit::pattern(2, 1200 * 512));
        s.write16(0, 10, data.clone(), BS, false).await.unwrap();
        assert_eq!(&disk.lock().unwrap()[10 * 512..1210 * 512], &data[..]);
        let back = s.read16(0, 10, 1200, BS).await.unwrap();
        assert_eq!(back, data);
        s.sync_cache16(0, 0, 0).await.unwrap();

        // Out of range: CHECK CONDITION as a value.
        let o = s.execute(0, &scsi::cdb::read16(BLOCKS, 1, false), DataDir::Read { len: 512 }).await.unwrap();
        assert!(o.is_check_condition());
        assert_eq!(o.sense_info().unwrap().asc, 0x21);

        let st = s.wire_stats();
        assert!(st.bytes_sent > data.len() as u64 && st.bytes_received > data.len() as u64);
        s.logout().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn concurrent_io_with_small_segments_and_digests() {
    bounded(async {
        let tcfg = TargetLoginConfig {
            max_recv_data_segment_length: 4096,
            first_burst_length: 8192,
            max_burst_length: 16384,
            max_outstanding_r2t: 4,
            header_digest: DigestPolicy::PreferCrc32c,
            data_digest: DigestPolicy::PreferCrc32c,
            cmd_window: 4,
            ..TargetLoginConfig::default()
        };
        let (addr, _disk) = start_target(tcfg).await;
        let c = SessionConfig {
            max_recv_data_segment_length: 8192,
            header_digest: DigestPolicy::PreferCrc32c,
            data_digest: DigestPolicy::PreferCrc32c,
            ..cfg()
        };
        let s = Session::connect(addr, c).await.unwrap();
        assert!(s.params().header_digest && s.params().data_digest);
        assert_eq!(s.params().target_max_recv_data_segment_length, 4096);
        let mut hs = vec![];
        for i in 0..16u64 {
            let s = s.clone();
            hs.push(tokio::spawn(async move {
                let data: Bytes = vec![i as u8 + 1; 64 * 512].into();
                s.write16(0, i * 64, data.clone(), BS, false).await?;
                let back = s.read16(0, i * 64, 64, BS).await?;
                assert_eq!(back, data);
                Ok::<_, InitiatorError>(())
            }));
        }
        for h in hs {
            h.await.unwrap().unwrap();
        }
        s.logout().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn login_to_unknown_target_fails() {
    bounded(async {
        let (addr, _) = start_target(TargetLoginConfig::default()).await;
        let r = Session::connect(addr, SessionConfig::for_target("iqn.2026-11.dev.oxcopy:nope")).await;
        assert!(
            matches!(r, Err(InitiatorError::Login(oxcopy_iscsi::login::LoginError::Rejected { status }))
                if status == LoginStatus::NOT_FOUND),
            "{r:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn connect_timeout_and_refused() {
    bounded(async {
        // Nothing listens on a freshly closed port.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(matches!(Session::connect(addr, cfg()).await, Err(InitiatorError::Io(_))));
        // A listener that never answers the login.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let c = SessionConfig { login_timeout: Duration::from_millis(200), ..cfg() };
        assert!(matches!(Session::connect(addr, c).await, Err(InitiatorError::Timeout(_))));
        drop(l);
    })
    .await;
}
