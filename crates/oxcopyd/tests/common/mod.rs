//! Shared fixtures for the end-to-end tests: an in-process daemon on
//! 127.0.0.1:0 with sparse LUN files in a temp dir, how to spawn this
//! package's `oxcopyd` binary, a panic watch for daemon-side code, and a raw
//! iSCSI client (hand-driven login, then arbitrary bytes) for the
//! malformed-input tests. Data patterns, byte helpers, the process fixture
//! and the config builder are `oxcopy_testkit`'s.
//!
//! Not every test binary uses every helper.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use oxcopy_initiator::{DataDir, DigestPolicy, ScsiOutcome, Session, SessionConfig, STATUS_GOOD};
use oxcopy_iscsi::frame::{decode_frame, encode_frame, FrameError, FrameLimits, Pdu};
use oxcopy_iscsi::login::{InitiatorLogin, InitiatorLoginConfig, InitiatorStep, LoginError};
use oxcopy_iscsi::pdu::{DataOut, Header, NopOut, ScsiCommand, ScsiResponse, TaskAttr, BHS_LEN, RESERVED_TAG};
use oxcopy_iscsi::SessionParams;
pub use oxcopy_testkit::{assert_same, file_bytes};
use oxcopy_testkit::{DaemonConfig, Lun, Spawn, Target};
use oxcopyd::config::Config;
use oxcopyd::Running;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The open target (no allow-list): LUN 0 with 512-byte blocks, LUN 1 with
/// 4096-byte blocks.
pub const TARGET: &str = "iqn.2026-11.dev.oxcopy:e2e";
/// A target only [`ALLOWED_INITIATOR`] may see and log in to.
pub const RESTRICTED: &str = "iqn.2026-11.dev.oxcopy:restricted";
/// The one initiator on [`RESTRICTED`]'s allow-list.
pub const ALLOWED_INITIATOR: &str = "iqn.2026-11.dev.oxcopy:allowed-host";
/// Initiator name used by tests that do not care.
pub const INITIATOR: &str = "iqn.2026-11.dev.oxcopy:e2e-host";
/// Size of each LUN of [`TARGET`] (sparse).
pub const LUN_SIZE: u64 = 128 << 20;
pub const LUN_512: u64 = 0;
pub const LUN_4K: u64 = 1;

/// Generous bound for one exchange that should take milliseconds.
pub const STEP: Duration = Duration::from_secs(10);

/// Server-side knobs a test may change.
#[derive(Debug, Clone)]
pub struct Opts {
    pub nop_interval: u64,
    pub login_timeout: u64,
    pub max_commands_per_session: u32,
}

impl Default for Opts {
    fn default() -> Self {
        // nop_interval 0: no keepalive traffic unless a test asks for it.
        Opts { nop_interval: 0, login_timeout: 30, max_commands_per_session: 128 }
    }
}

/// The standard test configuration (LUN files and state in `dir`).
pub fn config(dir: &Path, opts: &Opts) -> DaemonConfig {
    DaemonConfig::new(dir.join("state"))
        .server("max_commands_per_session", opts.max_commands_per_session)
        .server("nop_interval", opts.nop_interval)
        .server("login_timeout", opts.login_timeout)
        .target(
            Target::new(TARGET)
                .alias("oxcopy e2e")
                .lun(Lun::new(0, dir.join("lun0.img")).size(LUN_SIZE).block_size(512))
                .lun(Lun::new(1, dir.join("lun1.img")).size(LUN_SIZE).block_size(4096)),
        )
        .target(
            Target::new(RESTRICTED)
                .initiators(&[ALLOWED_INITIATOR])
                .lun(Lun::new(0, dir.join("restricted0.img")).size("64MiB")),
        )
}

/// How the tests spawn this package's `oxcopyd` binary (defaults of
/// [`Spawn::new`]).
pub fn spawn_opts() -> Spawn<'static> {
    Spawn::new(Path::new(env!("CARGO_BIN_EXE_oxcopyd")))
}

/// An in-process `oxcopyd` on 127.0.0.1 with its files in a temp dir.
pub struct Daemon {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Daemon {
    pub async fn start() -> Daemon {
        Daemon::start_with(Opts::default()).await
    }

    pub async fn start_with(opts: Opts) -> Daemon {
        install_panic_watch();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = config(dir.path(), &opts).write(dir.path().join("oxcopyd.toml"));
        let cfg = Config::from_file(&path).expect("test config validates");
        let running = within(STEP, "daemon start", oxcopyd::start(cfg)).await.expect("daemon starts");
        let addr = running.addrs[0];
        assert!(addr.ip().is_loopback() && addr.port() != 0, "bound to {addr}");
        Daemon { running: Some(running), addr, dir }
    }

    /// Backing file of a LUN of [`TARGET`].
    pub fn lun_path(&self, lun: u64) -> PathBuf {
        self.dir.path().join(format!("lun{lun}.img"))
    }

    /// A session configuration for [`TARGET`] with bounded timeouts and no
    /// initiator keepalive.
    pub fn cfg(&self) -> SessionConfig {
        session_cfg(TARGET)
    }

    pub async fn session(&self) -> Session {
        self.session_with(self.cfg()).await
    }

    pub async fn session_with(&self, cfg: SessionConfig) -> Session {
        tokio::time::timeout(STEP, Session::connect(self.addr, cfg))
            .await
            .expect("login timed out")
            .expect("login succeeds")
    }

    /// Graceful shutdown; returns how long it took.
    pub async fn shutdown(mut self) -> Duration {
        let r = self.running.take().expect("running");
        let t = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(30), r.shutdown())
            .await
            .expect("shutdown hung")
            .expect("shutdown succeeds");
        t.elapsed()
    }
}

/// Defaults for a normal session to `target`: fixed initiator name, short
/// timeouts, no keepalive (so that idle-time behaviour is the target's).
pub fn session_cfg(target: &str) -> SessionConfig {
    SessionConfig {
        initiator_name: INITIATOR.into(),
        command_timeout: Duration::from_secs(30),
        management_timeout: Duration::from_secs(10),
        login_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        keepalive_interval: None,
        ..SessionConfig::for_target(target)
    }
}

/// Bound any future by `d`, with a message naming what hung.
pub async fn within<F: std::future::Future>(d: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(d, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {d:?}"),
    }
}

/// [`oxcopy_testkit::pattern`] as `Bytes`, what the initiator writes.
pub fn pattern(seed: u64, len: usize) -> Bytes {
    Bytes::from(oxcopy_testkit::pattern(seed, len))
}

// ---------------------------------------------------------------------------
// Commands across a restart of the daemon, persistent reservations.

/// Run a command on `lun`; a unit attention (the standard allows one after
/// a restart) is answered by running it again, a few times at most.
pub async fn exec_past_ua(s: &Session, lun: u64, cdb: &[u8], dir: DataDir) -> oxcopy_initiator::Result<ScsiOutcome> {
    for _ in 0..4 {
        let o = s.execute(lun, cdb, dir.clone()).await?;
        let ua = o.is_check_condition() && o.sense_info().is_some_and(|x| x.key == 6);
        if !ua {
            return Ok(o);
        }
    }
    panic!("unit attentions do not stop");
}

/// PERSISTENT RESERVE OUT on `lun`: service action `sa`, `pr_type`, the
/// reservation key and service action key, and `flags` (byte 20, e.g.
/// APTPL); returns the status.
pub async fn prout(s: &Session, lun: u64, sa: u8, pr_type: u8, key: u64, sa_key: u64, flags: u8) -> u8 {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[20] = flags;
    let cdb = [0x5F, sa, pr_type, 0, 0, 0, 0, 0, 24, 0];
    exec_past_ua(s, lun, &cdb, DataDir::Write { data: Bytes::from(p) }).await.expect("PR OUT delivered").status
}

/// PERSISTENT RESERVE IN READ KEYS on `lun`: the registered keys.
pub async fn pr_keys(s: &Session, lun: u64) -> Vec<u64> {
    let cdb = [0x5E, 0x00, 0, 0, 0, 0, 0, 0x10, 0, 0];
    let out = exec_past_ua(s, lun, &cdb, DataDir::Read { len: 4096 }).await.expect("PR IN delivered");
    assert_eq!(out.status, STATUS_GOOD);
    out.data.get(8..).unwrap_or(&[]).chunks(8).map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes"))).collect()
}

/// PERSISTENT RESERVE IN READ RESERVATION on `lun`: (key, type) of the
/// reservation, if any.
pub async fn pr_reservation(s: &Session, lun: u64) -> Option<(u64, u8)> {
    let cdb = [0x5E, 0x01, 0, 0, 0, 0, 0, 0x10, 0, 0];
    let out = exec_past_ua(s, lun, &cdb, DataDir::Read { len: 4096 }).await.expect("PR IN delivered");
    assert_eq!(out.status, STATUS_GOOD);
    let d = &out.data;
    (d.len() >= 24).then(|| (u64::from_be_bytes(d[8..16].try_into().expect("8 bytes")), d[21] & 0x0F))
}

// ---------------------------------------------------------------------------
// Panic watch: a panic anywhere outside test code (daemon, state machines,
// initiator) is recorded, because tokio turns a panicking connection task
// into a silently closed connection that the tests might otherwise accept.

static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static HOOK: Once = Once::new();

pub fn install_panic_watch() {
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_tests = info.location().is_some_and(|l| l.file().contains("tests/"));
            if !in_tests {
                let loc = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
                PANICS.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{loc}: {info}"));
            }
            prev(info)
        }));
    });
}

#[track_caller]
pub fn assert_no_panics() {
    let p = PANICS.lock().unwrap_or_else(|p| p.into_inner());
    assert!(p.is_empty(), "panics outside test code: {p:#?}");
}

// ---------------------------------------------------------------------------
// A raw iSCSI client: login with the iscsi crate's initiator state machine,
// then every PDU by hand.

/// Login offers of a raw client.
#[derive(Debug, Clone)]
pub struct RawOpts {
    pub initiator: String,
    pub target: Option<String>,
    pub header_digest: bool,
    pub data_digest: bool,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    pub max_burst: u32,
    pub first_burst: u32,
    pub max_recv_data_segment: u32,
    /// The ISID to log in with; `None`: a fixed prefix and a random last
    /// byte.
    pub isid: Option<[u8; 6]>,
}

impl Default for RawOpts {
    fn default() -> Self {
        RawOpts {
            initiator: INITIATOR.into(),
            target: Some(TARGET.into()),
            header_digest: false,
            data_digest: false,
            immediate_data: true,
            initial_r2t: true,
            max_burst: 256 * 1024,
            first_burst: 64 * 1024,
            max_recv_data_segment: 256 * 1024,
            isid: None,
        }
    }
}

/// What a read from the target produced.
#[derive(Debug)]
pub enum Recv {
    Pdu(Pdu),
    Closed,
    Timeout,
    /// The target sent something our framing refuses (a target bug).
    Frame(FrameError),
}

pub struct Raw {
    pub stream: TcpStream,
    buf: BytesMut,
    pub params: SessionParams,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    next_itt: u32,
}

fn digest_policy(on: bool) -> DigestPolicy {
    if on {
        DigestPolicy::Crc32c
    } else {
        DigestPolicy::None
    }
}

impl Raw {
    /// TCP connect only (no login).
    pub async fn tcp(addr: SocketAddr) -> TcpStream {
        let s = within(STEP, "TCP connect", TcpStream::connect(addr)).await.expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s
    }

    /// Connect and log in; `Err` carries the target's refusal.
    pub async fn try_login(addr: SocketAddr, o: &RawOpts) -> Result<Raw, LoginError> {
        Raw::try_login_on(Raw::tcp(addr).await, o).await
    }

    /// Log in on a connection the caller opened (say, with socket options
    /// of its own); `Err` carries the target's refusal.
    pub async fn try_login_on(mut stream: TcpStream, o: &RawOpts) -> Result<Raw, LoginError> {
        let mut lg = InitiatorLogin::new(InitiatorLoginConfig {
            initiator_name: o.initiator.clone(),
            initiator_alias: None,
            isid: o.isid.unwrap_or([0x80, 0x12, 0x34, 0x56, (std::process::id() & 0xff) as u8, rand_byte()]),
            target_name: o.target.clone(),
            header_digest: digest_policy(o.header_digest),
            data_digest: digest_policy(o.data_digest),
            max_recv_data_segment_length: o.max_recv_data_segment,
            max_burst_length: o.max_burst,
            first_burst_length: o.first_burst,
            initial_r2t: o.initial_r2t,
            immediate_data: o.immediate_data,
            max_outstanding_r2t: 1,
            initial_cmd_sn: 1,
        });
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut req = lg.start();
        loop {
            let enc = encode_frame(&req.header, &req.ahs, req.data.clone(), false, false).to_vec();
            stream.write_all(&enc).await.expect("send login");
            let resp = loop {
                match decode_frame(&mut buf, &FrameLimits::LOGIN) {
                    Ok(Some(p)) => break p,
                    Ok(None) => {}
                    Err(e) => panic!("login framing: {e}"),
                }
                let n = within(STEP, "login response", stream.read_buf(&mut buf)).await.expect("read");
                assert!(n > 0, "connection closed during login");
            };
            match lg.on_pdu(&resp)? {
                InitiatorStep::Send(p) => req = p,
                InitiatorStep::Complete { params, stat_sn, exp_cmd_sn, .. } => {
                    return Ok(Raw {
                        stream,
                        buf,
                        params,
                        cmd_sn: exp_cmd_sn,
                        exp_stat_sn: stat_sn.wrapping_add(1),
                        next_itt: 0x1000,
                    });
                }
            }
        }
    }

    pub async fn login(addr: SocketAddr, o: &RawOpts) -> Raw {
        Raw::try_login(addr, o).await.expect("raw login")
    }

    pub fn itt(&mut self) -> u32 {
        self.next_itt += 1;
        self.next_itt
    }

    fn rx_limits(&self) -> FrameLimits {
        FrameLimits {
            header_digest: self.params.header_digest,
            data_digest: self.params.data_digest,
            max_data_segment: self.params.initiator_max_recv_data_segment_length,
        }
    }

    /// Encode with the negotiated digests.
    pub fn encode(&self, h: &Header, ahs: &[u8], data: &[u8]) -> Vec<u8> {
        encode_frame(h, ahs, Bytes::copy_from_slice(data), self.params.header_digest, self.params.data_digest).to_vec()
    }

    pub async fn send(&mut self, h: &Header, ahs: &[u8], data: &[u8]) {
        let v = self.encode(h, ahs, data);
        self.send_bytes(&v).await;
    }

    pub async fn send_bytes(&mut self, b: &[u8]) {
        within(STEP, "send", self.stream.write_all(b)).await.expect("send to target");
    }

    /// Next PDU, EOF, a framing error, or nothing within `d`.
    pub async fn recv_within(&mut self, d: Duration) -> Recv {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let lim = self.rx_limits();
            match decode_frame(&mut self.buf, &lim) {
                Ok(Some(p)) => {
                    self.track(&p.header);
                    return Recv::Pdu(p);
                }
                Ok(None) => {}
                Err(e) => return Recv::Frame(e),
            }
            self.buf.reserve(64 * 1024);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Recv::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => return Recv::Closed,
                Ok(Ok(_)) => {}
            }
        }
    }

    fn track(&mut self, h: &Header) {
        let s = match h {
            Header::ScsiResponse(r) => r.stat_sn,
            Header::DataIn(d) if d.has_status => d.stat_sn,
            Header::TaskMgmtResponse(r) => r.stat_sn,
            Header::TextResponse(r) => r.stat_sn,
            Header::LogoutResponse(r) => r.stat_sn,
            Header::NopIn(n) if n.itt != RESERVED_TAG => n.stat_sn,
            _ => return,
        };
        self.exp_stat_sn = s.wrapping_add(1);
    }

    /// The next PDU, which must arrive within [`STEP`].
    #[track_caller]
    pub fn expect_pdu(&mut self) -> impl std::future::Future<Output = Pdu> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            match self.recv_within(STEP).await {
                Recv::Pdu(p) => p,
                other => panic!("{caller}: expected a PDU, got {other:?}"),
            }
        }
    }

    /// The target must close the connection within `d`; returns the PDUs
    /// it sent before closing.
    pub async fn expect_closed(&mut self, d: Duration) -> Vec<Pdu> {
        let deadline = tokio::time::Instant::now() + d;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_within(left).await {
                Recv::Pdu(p) => got.push(p),
                Recv::Closed => return got,
                // Garbage after a protocol error is the target's business;
                // what matters is that it closes.
                Recv::Frame(_) => {
                    self.buf.clear();
                }
                Recv::Timeout => panic!(
                    "connection still open after {d:?}; received {:?}",
                    got.iter().map(|p| p.header.opcode()).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Nothing at all may arrive for `d` (and the connection stays open).
    pub async fn expect_silence(&mut self, d: Duration) {
        match self.recv_within(d).await {
            Recv::Timeout => {}
            other => panic!("expected silence for {d:?}, got {other:?}"),
        }
    }

    /// A non-immediate SCSI Command header; advances CmdSN.
    pub fn scsi_cmd(&mut self, cdb: &[u8], read: bool, write: bool, edtl: u32, final_: bool) -> (Header, u32) {
        let itt = self.itt();
        let mut c = [0u8; 16];
        c[..cdb.len().min(16)].copy_from_slice(&cdb[..cdb.len().min(16)]);
        let h = Header::ScsiCommand(ScsiCommand {
            immediate: false,
            final_,
            read,
            write,
            attr: TaskAttr::SIMPLE,
            lun: [0; 8],
            itt,
            expected_data_length: edtl,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb: c,
        });
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        (h, itt)
    }

    pub fn data_out(&self, itt: u32, ttt: u32, data_sn: u32, offset: u32, final_: bool) -> Header {
        Header::DataOut(DataOut {
            final_,
            lun: [0; 8],
            itt,
            ttt,
            exp_stat_sn: self.exp_stat_sn,
            data_sn,
            buffer_offset: offset,
        })
    }

    /// An immediate NOP-Out ping (ITT set: the target must answer).
    pub fn nop_out(&mut self) -> (Header, u32) {
        let itt = self.itt();
        let h = Header::NopOut(NopOut {
            immediate: true,
            lun: [0; 8],
            itt,
            ttt: RESERVED_TAG,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        });
        (h, itt)
    }

    /// Wait for the SCSI Response of `itt` (Data-In with status counts too),
    /// skipping other traffic except Rejects, which are returned as an Err.
    pub async fn response_for(&mut self, itt: u32) -> Result<(ScsiResponse, Option<Vec<u8>>), Pdu> {
        loop {
            let p = self.expect_pdu().await;
            match &p.header {
                Header::ScsiResponse(r) if r.itt == itt => {
                    let sense = (p.data.len() >= 2).then(|| {
                        let n = u16::from_be_bytes([p.data[0], p.data[1]]) as usize;
                        p.data[2..2 + n.min(p.data.len() - 2)].to_vec()
                    });
                    return Ok((r.clone(), sense));
                }
                Header::DataIn(d) if d.itt == itt && d.has_status => {
                    let r = ScsiResponse { status: d.status, itt, stat_sn: d.stat_sn, ..Default::default() };
                    return Ok((r, None));
                }
                Header::Reject(_) => return Err(p),
                _ => {}
            }
        }
    }

    /// TEST UNIT READY must come back GOOD; returns its ITT.
    pub async fn tur_good(&mut self) -> u32 {
        let (h, itt) = self.scsi_cmd(&[0u8; 6], false, false, 0, true);
        self.send(&h, &[], &[]).await;
        let (r, sense) = self.response_for(itt).await.expect("TUR not rejected");
        assert_eq!(r.status, 0, "TUR status, sense {sense:?}");
        itt
    }

    /// NOP-Out/NOP-In round trip works.
    pub async fn ping_ok(&mut self) {
        let (h, itt) = self.nop_out();
        self.send(&h, &[], &[]).await;
        loop {
            let p = self.expect_pdu().await;
            if let Header::NopIn(n) = &p.header {
                if n.itt == itt {
                    return;
                }
            }
        }
    }
}

fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish() as u8
}

/// Sense key and ASC/ASCQ of fixed or descriptor sense bytes.
pub fn sense_triplet(s: &[u8]) -> (u8, u8, u8) {
    let p = oxcopy_initiator::Sense::parse(s).unwrap_or_else(|| panic!("unparseable sense {s:02x?}"));
    (p.key, p.asc, p.ascq)
}

/// The raw BHS bytes a Reject carries back.
pub fn rejected_bhs(p: &Pdu) -> [u8; BHS_LEN] {
    assert!(p.data.len() >= BHS_LEN, "Reject without the rejected header");
    let mut b = [0u8; BHS_LEN];
    b.copy_from_slice(&p.data[..BHS_LEN]);
    b
}

/// A session that was opened before some abuse must still work: TEST UNIT
/// READY and a read of data it wrote earlier.
pub async fn bystander_ok(s: &Session, lba: u64, want: &[u8]) {
    within(STEP, "bystander TUR", s.test_unit_ready(LUN_512)).await.expect("bystander TUR");
    let blocks = (want.len() / 512) as u32;
    let got = within(STEP, "bystander read", s.read16(LUN_512, lba, blocks, 512)).await.expect("bystander read");
    assert_same(&got, want, "bystander data");
}

// ---------------------------------------------------------------------------
// Writers for the shutdown tests.

/// What one writer session did: the writes acknowledged GOOD, in order,
/// and the error that stopped it (if one did).
pub type WriterLog = (Vec<(u64, Bytes)>, Option<String>);

/// `n` sessions to [`TARGET`] at `addr`, each writing 32 KiB blocks of
/// distinct data sequentially into its own region of LUN 0 until the
/// connection goes away (at most 1000 writes each).
pub struct Writers {
    set: tokio::task::JoinSet<WriterLog>,
    progress: std::sync::Arc<Vec<std::sync::atomic::AtomicUsize>>,
}

impl Writers {
    pub async fn start(addr: SocketAddr, n: u64) -> Writers {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let progress = std::sync::Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>());
        let mut set = tokio::task::JoinSet::new();
        for i in 0..n {
            let s = within(STEP, "login", Session::connect(addr, session_cfg(TARGET))).await.expect("login");
            let progress = progress.clone();
            set.spawn(async move {
                let mut acked = Vec::new();
                for k in 0..1000u64 {
                    let lba = (i * 1000 + k) * 64;
                    let data = pattern(i << 32 | k, 32 * 1024);
                    match s.write16(LUN_512, lba, data.clone(), 512, false).await {
                        Ok(()) => {
                            acked.push((lba, data));
                            progress[i as usize].fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => return (acked, Some(e.to_string())),
                    }
                }
                (acked, None)
            });
        }
        Writers { set, progress }
    }

    /// Wait until every writer has had `each` writes acknowledged.
    pub async fn wait_progress(&self, each: usize) {
        use std::sync::atomic::Ordering;
        within(STEP, "writers to get going", async {
            while self.progress.iter().any(|p| p.load(Ordering::Relaxed) < each) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }

    /// Wait for every writer to stop (bounded), check that each write
    /// acknowledged GOOD is in `lun_file`; returns (acknowledged writes,
    /// writers stopped by an error).
    pub async fn verify(mut self, lun_file: &std::path::Path) -> (usize, usize) {
        let mut total = 0;
        let mut cut_short = 0;
        while let Some(r) = within(STEP, "writers to see the connection close", self.set.join_next()).await {
            let (acked, err) = r.expect("writer task");
            cut_short += err.is_some() as usize;
            for (lba, data) in &acked {
                assert_same(&file_bytes(lun_file, lba * 512, data.len()), data, &format!("acked write at LBA {lba}"));
            }
            total += acked.len();
        }
        (total, cut_short)
    }
}
