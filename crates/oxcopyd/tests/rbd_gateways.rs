//! Two gateways, one RBD image, the real `oxcopyd` binary (built with
//! `--features ceph`) against the cluster `OXCOPY_CEPH_CONF` names
//! (`scripts/ceph-cluster.sh start DIR` prints one):
//!
//! * persistent reservations made with APTPL=1 live in the image's metadata
//!   (`oxcopy.pr`), not in the gateway's data directory: a second gateway
//!   with its own (empty) data directory that opens the image after the
//!   first stopped enforces the same registrations and reservation;
//! * a gateway started with `rbd_takeover = true` while another serves the
//!   image breaks the lock: the old gateway's writes and reservation changes
//!   end in CHECK CONDITION and are not applied (read through the new one).
//!
//! Without `OXCOPY_CEPH_CONF` the tests print a loud SKIPPED line and pass,
//! unless `OXCOPY_REQUIRE_CEPH=1` (CI), which makes them fail.
#![cfg(feature = "ceph")]

mod common;

use common::{exec_past_ua, pr_keys, pr_reservation, prout, spawn_opts};
use oxcopy_initiator::{DataDir, Session, SessionConfig, STATUS_GOOD, STATUS_RESERVATION_CONFLICT};
use oxcopy_testkit::{output_within, pattern, Proc as Daemon};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const IQN: &str = "iqn.2026-12.dev.oxcopy:rbd-gateways";
const HOST_A: &str = "iqn.2026-12.test:rbd-host-a";
const HOST_B: &str = "iqn.2026-12.test:rbd-host-b";
const KEY_A: u64 = 0xA0A0_0000_0000_00AA;
const KEY_B: u64 = 0xB0B0_0000_0000_00BB;
const REGISTER: u8 = 0x00;
const RESERVE: u8 = 0x01;
const REGISTER_AND_IGNORE: u8 = 0x06;
const WRITE_EXCLUSIVE: u8 = 0x1;
const EXCLUSIVE_ACCESS: u8 = 0x3;
const APTPL: u8 = 0x01;
/// Sense keys.
const HARDWARE_ERROR: u8 = 0x4;
const DATA_PROTECT: u8 = 0x7;
/// Bound on a daemon's start or stop.
const STEP: Duration = Duration::from_secs(60);

fn require() -> bool {
    std::env::var("OXCOPY_REQUIRE_CEPH").is_ok_and(|v| v == "1")
}

fn conf() -> Option<PathBuf> {
    match std::env::var_os("OXCOPY_CEPH_CONF") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            assert!(!require(), "OXCOPY_REQUIRE_CEPH=1 but OXCOPY_CEPH_CONF is not set");
            let _ = writeln!(
                std::io::stderr(),
                "\n********************************************************************\n\
                 SKIPPED: no OXCOPY_CEPH_CONF (scripts/ceph-cluster.sh start DIR prints one)\n\
                 ********************************************************************"
            );
            None
        }
    }
}

/// `rbd -c CONF ARGS` (bounded): (success, stdout).
fn rbd(conf: &Path, args: &[&str]) -> (bool, String) {
    let out = output_within(Command::new("rbd").arg("-c").arg(conf).args(args), STEP)
        .expect("run the rbd CLI")
        .expect("the rbd CLI ends");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A uniquely named image in pool `rbd` (created by the first gateway),
/// removed when dropped.
struct Image {
    conf: PathBuf,
    spec: String,
}

impl Image {
    fn new(conf: &Path, what: &str) -> Image {
        Image { conf: conf.into(), spec: format!("rbd/oxcopy-gw-{what}-{:08x}", rand::random::<u32>()) }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        rbd(&self.conf, &["snap", "purge", &self.spec]);
        rbd(&self.conf, &["rm", "--no-progress", &self.spec]);
    }
}

/// A gateway config: LUN 0 on `image`, its own data directory `dir/NAME`.
fn config(dir: &Path, name: &str, image: &Image, takeover: bool) -> PathBuf {
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\ndata_dir = \"{data}\"\nnop_interval = 0\n\
         [[target]]\niqn = \"{IQN}\"\n\
         [[target.lun]]\nid = 0\nrbd = \"{rbd}\"\nsize = \"16MiB\"\nceph_conf = \"{conf}\"\nrbd_timeout = 10\n\
         rbd_takeover = {takeover}\n",
        data = dir.join(name).display(),
        rbd = image.spec,
        conf = image.conf.display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

fn spawn(config: &Path) -> Daemon {
    let mut o = spawn_opts();
    o.url_timeout = STEP;
    Daemon::spawn(config, &o)
}

/// SIGTERM and wait for a clean exit.
fn stop(mut d: Daemon) {
    d.sigterm().expect("sigterm");
    let st = d.wait_exit(STEP, Duration::from_millis(50)).expect("the gateway stops");
    assert!(st.success(), "gateway exit {st:?}; stderr:\n{}", d.stderr());
}

async fn session(d: &Daemon, initiator: &str, isid: u8) -> Session {
    let cfg = SessionConfig {
        initiator_name: initiator.to_string(),
        // The same I_T nexus on every gateway: same initiator, ISID, target.
        isid: Some([0x80, 0, 0, 0x3d, 0, isid]),
        command_timeout: Duration::from_secs(60),
        ..SessionConfig::for_target(IQN)
    };
    tokio::time::timeout(STEP, Session::connect(d.addr(), cfg)).await.expect("login in time").expect("login")
}

/// READ(10) of `blocks` 512-byte blocks at 0: (status, sense key, data).
async fn read(s: &Session, blocks: u8) -> (u8, Option<u8>, Vec<u8>) {
    let cdb = [0x28, 0, 0, 0, 0, 0, 0, 0, blocks, 0];
    let o = exec_past_ua(s, 0, &cdb, DataDir::Read { len: u32::from(blocks) * 512 }).await.expect("READ delivered");
    (o.status, o.sense_info().map(|x| x.key), o.data.to_vec())
}

/// WRITE(10) of `data` at 0: (status, sense key).
async fn write(s: &Session, data: &[u8]) -> (u8, Option<u8>) {
    let blocks = u8::try_from(data.len() / 512).expect("small write");
    let cdb = [0x2A, 0, 0, 0, 0, 0, 0, 0, blocks, 0];
    let o = exec_past_ua(s, 0, &cdb, DataDir::Write { data: bytes::Bytes::copy_from_slice(data) })
        .await
        .expect("WRITE delivered");
    (o.status, o.sense_info().map(|x| x.key))
}

/// PR OUT, returning (status, sense key).
async fn prout_sense(s: &Session, sa: u8, pr_type: u8, key: u64, sa_key: u64, flags: u8) -> (u8, Option<u8>) {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[20] = flags;
    let cdb = [0x5F, sa, pr_type, 0, 0, 0, 0, 0, 24, 0];
    let o = exec_past_ua(s, 0, &cdb, DataDir::Write { data: bytes::Bytes::from(p) }).await.expect("PR OUT delivered");
    (o.status, o.sense_info().map(|x| x.key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aptpl_state_follows_the_image_to_another_gateway() {
    let Some(conf) = conf() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let image = Image::new(&conf, "pr");

    // Gateway 1: B registers, A registers with APTPL=1 (the whole state
    // persists) and reserves Exclusive Access.
    let g1 = spawn(&config(dir.path(), "g1", &image, false));
    let (a, b) = (session(&g1, HOST_A, 1).await, session(&g1, HOST_B, 2).await);
    assert_eq!(prout(&b, 0, REGISTER_AND_IGNORE, 0, 0, KEY_B, 0).await, STATUS_GOOD);
    assert_eq!(prout(&a, 0, REGISTER_AND_IGNORE, 0, 0, KEY_A, APTPL).await, STATUS_GOOD);
    assert_eq!(prout(&a, 0, RESERVE, EXCLUSIVE_ACCESS, KEY_A, 0, 0).await, STATUS_GOOD);
    assert_eq!(read(&b, 1).await.0, STATUS_RESERVATION_CONFLICT);
    // In the cluster, not in the data directory.
    let (ok, value) = rbd(&conf, &["image-meta", "get", &image.spec, "oxcopy.pr"]);
    assert!(ok && value.starts_with("oxpr-b64:"), "image metadata oxcopy.pr: {value:?}");
    let files: Vec<_> = std::fs::read_dir(dir.path().join("g1"))
        .expect("data dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("pr-"))
        .collect();
    assert!(files.is_empty(), "reservation state files in the data directory: {files:?}");
    drop((a, b));
    stop(g1);

    // Gateway 2, another data directory: the same keys and reservation, enforced.
    let g2 = spawn(&config(dir.path(), "g2", &image, false));
    let (a, b) = (session(&g2, HOST_A, 1).await, session(&g2, HOST_B, 2).await);
    assert_eq!(pr_keys(&a, 0).await, vec![KEY_B, KEY_A]);
    assert_eq!(pr_reservation(&b, 0).await, Some((KEY_A, EXCLUSIVE_ACCESS)));
    assert_eq!(read(&a, 1).await.0, STATUS_GOOD);
    assert_eq!(read(&b, 1).await.0, STATUS_RESERVATION_CONFLICT);
    // A registration with APTPL=0 stops persisting, in the image too.
    assert_eq!(prout(&a, 0, REGISTER, 0, KEY_A, KEY_A + 1, 0).await, STATUS_GOOD);
    drop((a, b));
    stop(g2);
    let g3 = spawn(&config(dir.path(), "g3", &image, false));
    let a = session(&g3, HOST_A, 1).await;
    assert_eq!(pr_keys(&a, 0).await, Vec::<u64>::new());
    assert_eq!(pr_reservation(&a, 0).await, None);
    drop(a);
    stop(g3);

    // Metadata that is not a state refuses the start, saying what to do.
    let (ok, _) = rbd(&conf, &["image-meta", "set", &image.spec, "oxcopy.pr", "garbage"]);
    assert!(ok, "rbd image-meta set");
    let out = output_within(
        Command::new(env!("CARGO_BIN_EXE_oxcopyd")).arg("--config").arg(config(dir.path(), "g4", &image, false)),
        STEP,
    )
    .expect("run oxcopyd")
    .expect("oxcopyd exits");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("oxcopy.pr") && err.contains("rbd image-meta remove"), "stderr: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_fences_the_old_gateway() {
    let Some(conf) = conf() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let image = Image::new(&conf, "takeover");
    let (p1, p2, p3) = (pattern(1, 4096), pattern(2, 4096), pattern(3, 4096));

    // Gateway 1 serves: A registers (APTPL), reserves Write Exclusive, writes P1.
    let g1 = spawn(&config(dir.path(), "g1", &image, false));
    let a1 = session(&g1, HOST_A, 1).await;
    assert_eq!(prout(&a1, 0, REGISTER_AND_IGNORE, 0, 0, KEY_A, APTPL).await, STATUS_GOOD);
    assert_eq!(prout(&a1, 0, RESERVE, WRITE_EXCLUSIVE, KEY_A, 0, 0).await, STATUS_GOOD);
    assert_eq!(write(&a1, &p1).await, (STATUS_GOOD, None));

    // Gateway 2 takes the image over while gateway 1 still serves.
    let t = Instant::now();
    let g2 = spawn(&config(dir.path(), "g2", &image, true));
    let took = t.elapsed();
    eprintln!("takeover: gateway 2 serving after {took:?}");

    // Gateway 1's writes fail (DATA PROTECT) and its reservation changes
    // fail (the save to the image metadata is refused): never applied.
    let t = Instant::now();
    let (st, key) = write(&a1, &p2).await;
    assert_eq!((st, key), (0x02, Some(DATA_PROTECT)), "write through the fenced gateway");
    eprintln!("fenced write: CHECK CONDITION, sense key {key:?}, after {:?}", t.elapsed());
    let (st, key) = prout_sense(&a1, REGISTER, 0, KEY_A, KEY_A + 7, APTPL).await;
    assert_eq!((st, key), (0x02, Some(HARDWARE_ERROR)), "PR OUT through the fenced gateway");

    // Gateway 2 has gateway 1's last good state: P1, the key, the reservation.
    let a2 = session(&g2, HOST_A, 1).await;
    assert_eq!(pr_keys(&a2, 0).await, vec![KEY_A]);
    assert_eq!(pr_reservation(&a2, 0).await, Some((KEY_A, WRITE_EXCLUSIVE)));
    let (st, _, data) = read(&a2, 8).await;
    assert_eq!(st, STATUS_GOOD);
    assert!(data == p1, "gateway 2 does not read P1 (gateway 1's refused write applied?)");
    assert_eq!(write(&a2, &p3).await, (STATUS_GOOD, None));
    assert!(read(&a2, 8).await.2 == p3, "gateway 2 reads back its write");
    let b2 = session(&g2, HOST_B, 2).await;
    assert_eq!(write(&b2, &p2).await.0, STATUS_RESERVATION_CONFLICT, "the reservation is enforced on gateway 2");
    drop((a1, a2, b2));

    // The fenced gateway still stops (its flush fails, logged).
    stop(g1);
    stop(g2);
}
