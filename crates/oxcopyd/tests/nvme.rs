//! NVMe/TCP end to end: an in-process daemon with an iSCSI LUN whose file is
//! also NVMe namespace 1, a 4 KiB-block namespace 2 and a 512-byte-block
//! namespace 3 of their own, driven by our NVMe/TCP host
//! (`oxcopy_initiator::nvme`): discovery, Identify, every I/O command, NVMe
//! Copy (format 0h with many ranges, format 2h across namespaces once the
//! host enables it, and the errors the specification names), digests,
//! several queues, Abort, keep-alive expiry, Connect refusals and malformed
//! PDUs on raw sockets.

use bytes::{Bytes, BytesMut};
use oxcopy_initiator::nvme::{NvmeConfig, NvmeController, NvmeError, DISCOVERY_NQN};
use oxcopy_initiator::{Session, SessionConfig};
use oxcopy_nvme::host::{HostConfig, HostEvent, HostQueue};
use oxcopy_nvme::wire::command::{Opcode, Sqe, Status};
use oxcopy_nvme::wire::connect::{ConnectCommand, ConnectData};
use oxcopy_nvme::wire::identify::oncs;
use oxcopy_nvme::wire::nvm::{CopyFormat, CopyRange};
use oxcopy_nvme::wire::pdu::PduType;
use oxcopy_testkit::pattern;
use oxcopyd::{Config, Running};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NQN: &str = "nqn.2026-12.dev.oxcopy:e2e";
const LOCKED: &str = "nqn.2026-12.dev.oxcopy:locked";
const IQN: &str = "iqn.2026-12.dev.oxcopy:nvme-e2e";
const STEP: Duration = Duration::from_secs(20);

async fn daemon(dir: &Path) -> Running {
    daemon_with(dir, "").await
}

/// The test daemon with extra `[server]` lines.
async fn daemon_with(dir: &Path, server: &str) -> Running {
    let text = format!(
        r#"[server]
listen = ["127.0.0.1:0"]
data_dir = "{d}/state"
nop_interval = 0
{server}

[[target]]
iqn = "{IQN}"
[[target.lun]]
id = 0
path = "{d}/lun0.img"
size = "64MiB"

[[subsystem]]
nqn = "{NQN}"
listen = ["127.0.0.1:0"]
[[subsystem.namespace]]
nsid = 1
path = "{d}/lun0.img"
[[subsystem.namespace]]
nsid = 2
path = "{d}/ns2.img"
size = "64MiB"
block_size = 4096
[[subsystem.namespace]]
nsid = 3
path = "{d}/ns3.img"
size = "32MiB"
[[subsystem.namespace]]
nsid = 4
path = "{d}/big.img"
size = "1GiB"

[[subsystem]]
nqn = "{LOCKED}"
listen = ["127.0.0.1:0"]
hosts = ["nqn.2026-12.dev.oxcopy:the-one-host"]
[[subsystem.namespace]]
nsid = 1
path = "{d}/locked.img"
size = "1MiB"
"#,
        d = dir.display()
    );
    let cfg = Config::from_toml(&text, "nvme-e2e.toml").expect("config");
    oxcopyd::start(cfg).await.expect("daemon starts")
}

fn addr(d: &Running) -> SocketAddr {
    *d.nvme_addrs.first().expect("an NVMe/TCP listener")
}

async fn connect(d: &Running, cfg: &NvmeConfig) -> NvmeController {
    tokio::time::timeout(STEP, NvmeController::connect(addr(d), NQN, cfg)).await.expect("in time").expect("connect")
}

fn status_of<T: std::fmt::Debug>(r: Result<T, NvmeError>) -> Status {
    match r {
        Err(NvmeError::Status { status, .. }) => status,
        other => panic!("expected an NVMe status, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_identify_and_every_io_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path()).await;
    let cfg = NvmeConfig { io_queues: 2, ..NvmeConfig::default() };

    // Discovery lists both subsystems at this listener.
    let entries = NvmeController::discover(addr(&d), &cfg).await.expect("discover");
    let nqns: Vec<&str> = entries.iter().map(|e| e.subnqn.as_str()).collect();
    assert!(nqns.contains(&NQN) && nqns.contains(&LOCKED), "{nqns:?}");
    let e = entries.iter().find(|e| e.subnqn == NQN).unwrap();
    assert_eq!(e.trsvcid, addr(&d).port().to_string());
    assert_eq!(e.traddr, "127.0.0.1");

    let c = connect(&d, &cfg).await;
    assert_eq!(c.io_queues(), 2);
    assert_eq!(c.identify.subnqn, NQN);
    assert_ne!(c.identify.oncs & oncs::COPY, 0, "Copy advertised");
    assert_eq!(c.identify.ocfs & 0b0101, 0b0101, "formats 0h and 2h");
    assert_eq!(c.namespaces().await.unwrap(), vec![1, 2, 3, 4]);
    let g1 = c.namespace(1).await.unwrap();
    assert_eq!((g1.block_size, g1.blocks), (512, (64 << 20) / 512));
    assert!(g1.max_ranges > 1 && g1.mssrl > 0 && g1.mcl > 0);
    let g2 = c.namespace(2).await.unwrap();
    assert_eq!((g2.block_size, g2.blocks), (4096, (64 << 20) / 4096));
    // Stable identities: the NGUIDs differ.
    assert_ne!(g1.nguid, g2.nguid);

    // Write / read back on every queue, several sizes (in-capsule and R2T).
    for (i, blocks) in [1u32, 8, 64, 2048].into_iter().enumerate() {
        let data = Bytes::from(pattern(i as u64 + 1, blocks as usize * 512));
        let lba = 10_000 + i as u64 * 4096;
        c.write(1, lba, data.clone(), false).await.unwrap();
        assert_eq!(c.read(1, lba, blocks).await.unwrap(), data, "{blocks} blocks");
    }
    // Out of range and unknown namespace.
    assert_eq!(status_of(c.read(1, g1.blocks, 1).await), Status::LBA_OUT_OF_RANGE);
    let raw = c.io(Sqe::new(Opcode::FLUSH, 0, 9), None, 0).await.unwrap();
    assert!(raw.cqe.status.same_code(Status::INVALID_NAMESPACE), "{:?}", raw.cqe.status);

    // Namespace 1 is the iSCSI LUN: what NVMe wrote, iSCSI reads.
    let s = Session::connect(d.addrs[0], SessionConfig::for_target(IQN)).await.unwrap();
    let want = c.read(1, 10_000 + 4096, 8).await.unwrap();
    let got = s.read16(0, 10_000 + 4096, 8, 512).await.unwrap();
    assert_eq!(&got[..], &want[..]);

    // Compare: match, then mismatch.
    let data = c.read(1, 10_000, 1).await.unwrap();
    c.compare(1, 10_000, data.clone()).await.unwrap();
    let mut other = data.to_vec();
    other[7] ^= 0xFF;
    assert_eq!(status_of(c.compare(1, 10_000, Bytes::from(other)).await), Status::COMPARE_FAILURE);
    c.verify(1, 0, 1024).await.unwrap();
    c.flush(1).await.unwrap();

    // Write Zeroes and deallocate read back zeros; neighbours untouched.
    let pat = Bytes::from(pattern(77, 64 * 512));
    c.write(1, 20_000, pat.clone(), false).await.unwrap();
    c.write_zeroes(1, 20_008, 8, false).await.unwrap();
    c.deallocate(1, &[(20_032, 8)]).await.unwrap();
    let back = c.read(1, 20_000, 64).await.unwrap();
    assert_eq!(&back[..8 * 512], &pat[..8 * 512]);
    assert!(back[8 * 512..16 * 512].iter().all(|&b| b == 0));
    assert_eq!(&back[16 * 512..32 * 512], &pat[16 * 512..32 * 512]);
    assert!(back[32 * 512..40 * 512].iter().all(|&b| b == 0));
    assert_eq!(&back[40 * 512..], &pat[40 * 512..]);

    // Copy, format 0h, five ranges gathered into one destination run.
    let src = Bytes::from(pattern(5, 1024 * 512));
    c.write(1, 30_000, src.clone(), false).await.unwrap();
    let ranges = [(30_000u64, 3u32), (30_100, 50), (30_010, 1), (30_500, 200), (31_000, 24)];
    let done = c.copy(1, 40_000, &ranges).await.unwrap();
    assert!(done.cqe.status.is_success(), "{:?}", done.cqe.status);
    let mut expect = Vec::new();
    for (slba, n) in ranges {
        let off = (slba - 30_000) as usize * 512;
        expect.extend_from_slice(&src[off..off + n as usize * 512]);
    }
    let total: u32 = ranges.iter().map(|r| r.1).sum();
    assert_eq!(c.read(1, 40_000, total).await.unwrap(), Bytes::from(expect));

    // Copy errors: a range past the end (nothing copied, DW0 0), too many
    // ranges, a range longer than MSSRL, format 2h before CDFE enables it.
    let before = c.read(1, 50_000, 4).await.unwrap();
    let bad = c.copy(1, 50_000, &[(0, 4), (g1.blocks - 1, 2)]).await.unwrap();
    assert!(bad.cqe.status.same_code(Status::LBA_OUT_OF_RANGE), "{:?}", bad.cqe.status);
    assert_eq!(c.read(1, 50_000, 4).await.unwrap(), before, "nothing copied");
    let many: Vec<(u64, u32)> = (0..u64::from(g1.max_ranges) + 1).map(|i| (i, 1)).collect();
    let r = c.copy(1, 50_000, &many).await;
    match r {
        Ok(done) => assert!(done.cqe.status.same_code(Status::COMMAND_SIZE_LIMIT_EXCEEDED), "{:?}", done.cqe.status),
        Err(e) => panic!("{e}"),
    }
    if g1.mssrl < u16::MAX {
        let long = c.copy(1, 50_000, &[(0, u32::from(g1.mssrl) + 1)]).await.unwrap();
        assert!(long.cqe.status.same_code(Status::COMMAND_SIZE_LIMIT_EXCEEDED));
    }
    let cross = [CopyRange::new(1, 30_000, 16).unwrap()];
    let r = c.copy_ranges(3, 100, CopyFormat::F2, &cross).await.unwrap();
    assert!(r.cqe.status.same_code(Status::INVALID_FIELD), "format 2h before CDFE: {:?}", r.cqe.status);

    // Format 2h across namespaces once enabled; a block-size mismatch is
    // refused.
    c.enable_copy_formats(0b0100).await.unwrap();
    let r = c.copy_ranges(3, 100, CopyFormat::F2, &cross).await.unwrap();
    assert!(r.cqe.status.is_success(), "{:?}", r.cqe.status);
    assert_eq!(c.read(3, 100, 16).await.unwrap(), src.slice(..16 * 512));
    let r = c.copy_ranges(2, 0, CopyFormat::F2, &cross).await.unwrap();
    assert!(r.cqe.status.same_code(Status::INCOMPATIBLE_NAMESPACE_OR_FORMAT), "{:?}", r.cqe.status);

    c.shutdown().await;
    s.logout().await.ok();
    d.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_and_many_queues_carry_concurrent_io() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path()).await;
    let cfg = NvmeConfig { io_queues: 4, header_digest: true, data_digest: true, ..NvmeConfig::default() };
    let c = std::sync::Arc::new(connect(&d, &cfg).await);
    assert_eq!(c.io_queues(), 4);
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..8u64 {
                let data = Bytes::from(pattern(t * 100 + i, 16 * 4096));
                let lba = (t * 8 + i) * 16;
                c.write(2, lba, data.clone(), false).await.unwrap();
                assert_eq!(c.read(2, lba, 16).await.unwrap(), data);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (sent, received) = c.wire_bytes();
    assert!(sent > 16 * 8 * 16 * 4096 && received > 16 * 8 * 16 * 4096, "{sent} {received}");
    d.shutdown().await.unwrap();
}

/// A series' value in the exposition text (0 when absent).
fn series(text: &str, name_and_labels: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels).and_then(|v| v.trim().parse::<f64>().ok()))
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_moves_no_data_over_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon_with(dir.path(), "metrics = \"127.0.0.1:0\"").await;
    let c = connect(&d, &NvmeConfig::default()).await;
    c.write(1, 0, Bytes::from(pattern(9, 1 << 20)), false).await.unwrap();
    let (s0, r0) = c.wire_bytes();
    // 16 MiB in 8 ranges of 2 MiB (4096 blocks each).
    let ranges: Vec<(u64, u32)> = (0..8).map(|i| ((i % 2) * 2048, 4096)).collect();
    let done = c.copy(1, 65_536, &ranges).await.unwrap();
    assert!(done.cqe.status.is_success(), "{:?}", done.cqe.status);
    let (s1, r1) = c.wire_bytes();
    let wire = (s1 - s0) + (r1 - r0);
    assert!(wire < 4096, "a 16 MiB Copy took {wire} wire bytes");
    // Counted per subsystem and namespace, and with every other copy.
    let text = oxcopyd::metrics_http::scrape(d.metrics_addr.unwrap()).await.unwrap();
    let ns = format!("{{subsystem=\"{NQN}\",nsid=\"1\"");
    assert_eq!(series(&text, &format!("oxcopy_nvme_copy_bytes_total{ns}}}")), 16 << 20, "{text}");
    assert_eq!(series(&text, &format!("oxcopy_nvme_commands_total{ns},command=\"copy\",result=\"ok\"}}")), 1);
    assert_eq!(series(&text, &format!("oxcopy_nvme_write_bytes_total{ns}}}")), 1 << 20);
    let copied: u64 = ["reflink", "copy_file_range", "read_write", "hole"]
        .iter()
        .map(|m| series(&text, &format!("oxcopy_copy_bytes_total{{method=\"{m}\"}}")))
        .sum();
    assert_eq!(copied, 16 << 20, "{text}");
    d.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_expiry_ends_the_controller_and_its_queues() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path()).await;
    // A 1 s KATO and no Keep Alive sent: the controller expires.
    let cfg = NvmeConfig { kato_ms: 1000, keep_alive: false, timeout: Duration::from_secs(5), ..NvmeConfig::default() };
    let c = connect(&d, &cfg).await;
    c.read(1, 0, 1).await.expect("alive at first");
    let mut ended = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if matches!(c.read(1, 0, 1).await, Err(NvmeError::Closed(_))) {
            ended = true;
            break;
        }
    }
    assert!(ended, "the controller outlived its keep-alive timeout");
    // With Keep Alive sent, the same KATO keeps it.
    let cfg = NvmeConfig { kato_ms: 1000, keep_alive: true, ..NvmeConfig::default() };
    let c = connect(&d, &cfg).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    c.read(1, 0, 1).await.expect("kept alive");
    d.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_of_an_unknown_command_reports_not_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path()).await;
    let c = connect(&d, &NvmeConfig::default()).await;
    let mut abort = Sqe::new(Opcode::ABORT, 0, 0);
    abort.set_cdw(10, 1 | (0x7777 << 16)); // SQID 1, CID 7777h: not running
    let done = c.admin(abort, None, 0).await.unwrap();
    assert!(done.cqe.status.is_success());
    assert_eq!(done.cqe.result & 1, 1, "DW0 bit 0: not aborted");
    d.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_stops_a_running_copy_between_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path()).await;
    // 4 KiB chunks: a 1 GiB Copy is 262144 of them, each a point where
    // cancellation is seen.
    d.registry.set_copy_chunk_bytes(4096);
    let c = connect(&d, &NvmeConfig::default()).await;
    let g = c.namespace(4).await.unwrap();
    let half = g.blocks / 2;
    // 32 ranges of 32768 blocks (16 MiB): the first half to the second.
    let ranges: Vec<CopyRange> = (0..32u64).map(|i| CopyRange::new(0, i * 32_768, 32_768).unwrap()).collect();
    let data = oxcopy_nvme::wire::nvm::encode_copy_ranges(CopyFormat::F0, &ranges).unwrap();
    let sqe = oxcopy_nvme::wire::nvm::copy_sqe(0, 4, half, ranges.len(), CopyFormat::F0, false).unwrap();
    let pending = c.start_io(0, sqe, Some(Bytes::from(data)), 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let aborted = c.abort(pending.qid, pending.cid).await.unwrap();
    let done = pending.wait().await.unwrap();
    assert!(aborted, "the Copy was still running: the Abort reaches it (it ended {:?})", done.cqe.status);
    assert!(done.cqe.status.same_code(Status::ABORT_REQUESTED), "{:?}", done.cqe.status);
    assert!((done.cqe.result as u32) < 32, "DW0: the first range not copied, {}", done.cqe.result);
    // The queue still works.
    c.read(4, 0, 8).await.unwrap();
    d.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refusals_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path()).await;
    let err = NvmeController::connect(addr(&d), "nqn.2026-12.dev.oxcopy:nope", &NvmeConfig::default()).await;
    assert!(status_of(err.map(drop)).same_code(Status::CONNECT_INVALID_PARAMETERS));
    let err = NvmeController::connect(addr(&d), LOCKED, &NvmeConfig::default()).await;
    assert!(status_of(err.map(drop)).same_code(Status::CONNECT_INVALID_HOST));
    let ok = NvmeConfig { hostnqn: "nqn.2026-12.dev.oxcopy:the-one-host".into(), ..NvmeConfig::default() };
    let c = NvmeController::connect(addr(&d), LOCKED, &ok).await.expect("the allowed host");
    assert_eq!(c.namespaces().await.unwrap(), vec![1]);
    // An I/O command before any Connect: Command Sequence Error.
    let mut q = raw_queue(addr(&d)).await;
    let done = raw_call(&mut q, Sqe::new(Opcode::READ, 1, 1), None, 512).await;
    assert!(done.same_code(Status::COMMAND_SEQUENCE_ERROR), "{done:?}");
    // Connect to the discovery NQN works without a subsystem.
    let _ = DISCOVERY_NQN;
    d.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nvme_connections_are_bounded_by_max_sessions() {
    let dir = tempfile::tempdir().unwrap();
    // max_sessions = 1: at most 4 NVMe/TCP connections (queues) at once.
    let d = daemon_with(dir.path(), "max_sessions = 1").await;
    let c = connect(&d, &NvmeConfig { io_queues: 3, ..NvmeConfig::default() }).await;
    assert_eq!(c.io_queues(), 3);
    // A fifth connection is closed at once, before any PDU.
    let mut s = TcpStream::connect(addr(&d)).await.unwrap();
    assert!(read_to_close(&mut s).await.is_empty(), "refused without a word");
    // The four still work; when they go, new ones are accepted.
    c.read(1, 0, 8).await.unwrap();
    c.shutdown().await;
    let mut again = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(c) = NvmeController::connect(addr(&d), NQN, &NvmeConfig::default()).await {
            again = Some(c);
            break;
        }
    }
    again.expect("a connection once the others closed").read(1, 0, 1).await.unwrap();
    d.shutdown().await.unwrap();
}

/// A raw host queue after ICReq/ICResp.
struct RawQueue {
    s: TcpStream,
    hq: HostQueue,
    buf: BytesMut,
}

async fn raw_queue(a: SocketAddr) -> RawQueue {
    let s = TcpStream::connect(a).await.unwrap();
    let mut q = RawQueue { s, hq: HostQueue::new(HostConfig::default()), buf: BytesMut::new() };
    pump_until(&mut q, |hq| hq.is_ready()).await;
    q
}

async fn pump_until(q: &mut RawQueue, done: impl Fn(&HostQueue) -> bool) -> Vec<HostEvent> {
    let mut out = Vec::new();
    for _ in 0..1000 {
        for e in q.hq.drain_events().collect::<Vec<_>>() {
            match e {
                HostEvent::Send(p) => {
                    q.s.write_all(&p.head).await.unwrap();
                    q.s.write_all(&p.data).await.unwrap();
                    q.s.write_all(&p.tail).await.unwrap();
                }
                other => out.push(other),
            }
        }
        if done(&q.hq) || !out.is_empty() {
            return out;
        }
        let n = tokio::time::timeout(STEP, q.s.read_buf(&mut q.buf)).await.expect("answer in time").unwrap();
        assert!(n > 0, "closed");
        q.hq.on_bytes(&mut q.buf);
    }
    panic!("no progress");
}

async fn raw_call(q: &mut RawQueue, sqe: Sqe, data: Option<Bytes>, read_len: u32) -> Status {
    q.hq.submit(sqe, data, read_len).unwrap();
    for e in pump_until(q, |_| false).await {
        if let HostEvent::Completed { cqe, .. } = e {
            return cqe.status;
        }
    }
    panic!("no completion")
}

/// Read whatever the target sends until it closes (bounded).
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        match tokio::time::timeout(STEP, s.read(&mut b)).await.expect("the target closes in time") {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&b[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_pdus_end_in_a_termination_request() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path()).await;
    // 1. A command capsule before ICReq: C2HTermReq, PDU sequence error.
    let mut s = TcpStream::connect(addr(&d)).await.unwrap();
    let mut capsule = vec![0x04u8, 0, 72, 0];
    capsule.extend_from_slice(&72u32.to_le_bytes());
    capsule.extend_from_slice(&[0u8; 64]);
    s.write_all(&capsule).await.unwrap();
    let got = read_to_close(&mut s).await;
    assert_eq!(got.first().copied(), Some(PduType::C2H_TERM_REQ.0), "{got:02x?}");
    assert_eq!(u16::from_le_bytes([got[8], got[9]]), 2, "FES: PDU sequence error");

    // 2. An ICReq with a wrong header length: invalid header field.
    let mut s = TcpStream::connect(addr(&d)).await.unwrap();
    let mut ic = vec![0x00u8, 0, 120, 0];
    ic.extend_from_slice(&128u32.to_le_bytes());
    ic.extend_from_slice(&[0u8; 120]);
    s.write_all(&ic).await.unwrap();
    let got = read_to_close(&mut s).await;
    assert_eq!(got.first().copied(), Some(PduType::C2H_TERM_REQ.0), "{got:02x?}");
    assert_eq!(u16::from_le_bytes([got[8], got[9]]), 1, "FES: invalid header field");

    // 3. After a good ICReq, a PDU longer than any limit: refused before
    // its payload is buffered.
    let mut q = raw_queue(addr(&d)).await;
    let mut huge = vec![0x04u8, 0, 72, 72];
    huge.extend_from_slice(&(1u32 << 30).to_le_bytes());
    huge.extend_from_slice(&[0u8; 64]);
    q.s.write_all(&huge).await.unwrap();
    let got = read_to_close(&mut q.s).await;
    assert_eq!(got.first().copied(), Some(PduType::C2H_TERM_REQ.0), "{got:02x?}");
    assert_eq!(u16::from_le_bytes([got[8], got[9]]), 5, "FES: data transfer limit exceeded");

    // 4. A Connect with 512 bytes of data: the data length is wrong.
    let mut q = raw_queue(addr(&d)).await;
    let cmd = ConnectCommand { cid: 1, recfmt: 0, qid: 0, sqsize: 31, cattr: 0, kato: 0 };
    let data = ConnectData { hostid: [1; 16], cntlid: 0xFFFF, subnqn: NQN.into(), hostnqn: "nqn.2026-12.x:h".into() };
    let mut short = data.build();
    short.truncate(512);
    let st = raw_call(&mut q, cmd.to_sqe(), Some(Bytes::from(short)), 0).await;
    assert!(!st.is_success(), "{st:?}");

    // The daemon still serves.
    let c = connect(&d, &NvmeConfig::default()).await;
    c.read(1, 0, 1).await.unwrap();
    d.shutdown().await.unwrap();
}
