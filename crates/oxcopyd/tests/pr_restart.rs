//! Persistent reservations made with APTPL=1 survive a restart of the real
//! `oxcopyd` binary. The daemon is killed with SIGKILL, not stopped: the
//! state must be on disk before the command that changed it completed.

mod common;

use common::{exec_past_ua, pr_keys, pr_reservation, prout, spawn_opts};
use oxcopy_initiator::{DataDir, Session, SessionConfig, STATUS_GOOD, STATUS_RESERVATION_CONFLICT};
use oxcopy_testkit::{output_within, DaemonConfig, Lun, Proc as Daemon, Target};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const IQN: &str = "iqn.2026-11.dev.oxcopy:pr-restart";
const HOST_A: &str = "iqn.2026-11.test:pr-host-a";
const HOST_B: &str = "iqn.2026-11.test:pr-host-b";
const KEY_A: u64 = 0xA0A0_0000_0000_00AA;
const KEY_B: u64 = 0xB0B0_0000_0000_00BB;

/// PERSISTENT RESERVE OUT service actions and types, APTPL flag.
const REGISTER: u8 = 0x00;
const RESERVE: u8 = 0x01;
const REGISTER_AND_IGNORE: u8 = 0x06;
const EXCLUSIVE_ACCESS: u8 = 0x3;
const APTPL: u8 = 0x01;
/// Bound on a start that is refused.
const STEP: Duration = Duration::from_secs(30);

/// The daemon on `config` (stderr collected for a failure message).
fn spawn(config: &Path) -> Daemon {
    Daemon::spawn(config, &spawn_opts())
}

/// What the test does with the daemon: log in; crash it.
trait PrDaemon {
    async fn session(&self, initiator: &str, isid: u8) -> Session;
    fn crash(self);
}

impl PrDaemon for Daemon {
    async fn session(&self, initiator: &str, isid: u8) -> Session {
        let cfg = SessionConfig {
            initiator_name: initiator.to_string(),
            // The I_T nexus (and so the reservation holder) includes the ISID:
            // the same one after the restart.
            isid: Some([0x80, 0, 0, 0x3d, 0, isid]),
            ..SessionConfig::for_target(IQN)
        };
        Session::connect(self.addr(), cfg).await.expect("login")
    }

    /// Kill without any chance to flush or save.
    fn crash(self) {
        self.kill();
    }
}

/// One LUN of `size` at `dir/lun0.img`, state in `data`.
fn config(dir: &Path, data: &Path, size: &str) -> std::path::PathBuf {
    DaemonConfig::new(data)
        .target(Target::new(IQN).lun(Lun::new(0, dir.join("lun0.img")).size(size)))
        .write(dir.join("oxcopyd.toml"))
}

async fn read1(s: &Session) -> u8 {
    let cdb = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    exec_past_ua(s, 0, &cdb, DataDir::Read { len: 512 }).await.expect("command delivered").status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aptpl_registrations_and_reservation_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &dir.path().join("data"), "8MiB");

    // B registers without APTPL, A with APTPL=1 (which makes the whole
    // state persistent) and takes an Exclusive Access reservation.
    let d = spawn(&config);
    let (a, b) = (d.session(HOST_A, 1).await, d.session(HOST_B, 2).await);
    assert_eq!(prout(&b, 0, REGISTER_AND_IGNORE, 0, 0, KEY_B, 0).await, STATUS_GOOD);
    assert_eq!(prout(&a, 0, REGISTER_AND_IGNORE, 0, 0, KEY_A, APTPL).await, STATUS_GOOD);
    assert_eq!(prout(&a, 0, RESERVE, EXCLUSIVE_ACCESS, KEY_A, 0, 0).await, STATUS_GOOD);
    assert_eq!(read1(&b).await, STATUS_RESERVATION_CONFLICT);
    let state = dir.path().join("data").join(format!("pr-{IQN}-0.state"));
    assert!(state.exists(), "no state file at {}", state.display());
    drop((a, b));
    d.crash();

    // After the restart the keys and the reservation are back and enforced.
    let d = spawn(&config);
    let (a, b) = (d.session(HOST_A, 1).await, d.session(HOST_B, 2).await);
    assert_eq!(pr_keys(&a, 0).await, vec![KEY_B, KEY_A]);
    assert_eq!(pr_reservation(&b, 0).await, Some((KEY_A, EXCLUSIVE_ACCESS)));
    assert_eq!(read1(&a).await, STATUS_GOOD);
    assert_eq!(read1(&b).await, STATUS_RESERVATION_CONFLICT);
    let c = d.session("iqn.2026-11.test:pr-host-c", 3).await;
    assert_eq!(read1(&c).await, STATUS_RESERVATION_CONFLICT);

    // A later registration with APTPL=0 stops persisting: after the next
    // restart nothing is left.
    assert_eq!(prout(&a, 0, REGISTER, 0, KEY_A, KEY_A + 1, 0).await, STATUS_GOOD);
    drop((a, b, c));
    d.crash();
    let d = spawn(&config);
    let a = d.session(HOST_A, 1).await;
    assert_eq!(pr_keys(&a, 0).await, Vec::<u64>::new());
    assert_eq!(pr_reservation(&a, 0).await, None);
    assert_eq!(read1(&a).await, STATUS_GOOD);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_state_file_refuses_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(data.join(format!("pr-{IQN}-0.state")), b"OXPR\x01not a state").expect("write state");
    let config = config(dir.path(), &data, "1MiB");
    let out = output_within(Command::new(env!("CARGO_BIN_EXE_oxcopyd")).arg("--config").arg(&config), STEP)
        .expect("run oxcopyd")
        .expect("oxcopyd exits");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pr-") && err.contains(".state"), "stderr names the file: {err}");
}
