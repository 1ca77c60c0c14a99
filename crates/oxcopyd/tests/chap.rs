//! CHAP end to end: the `oxcopyd` binary with a `[target.chap]` target,
//! logged in to by our initiator (one-way, mutual, wrong secrets) and by
//! libiscsi's `iscsi-inq` and `iscsi-test-cu` (iSCSI.iSCSICHAP), plus the
//! start-up refusal of weak or world-readable secret files.

mod common;

use common::{install_panic_watch, session_cfg, spawn_opts, STEP};
use oxcopy_initiator::{ChapConfig, InitiatorError, LoginError, Session};
use oxcopy_iscsi::pdu::LoginStatus;
use oxcopy_testkit::{output_within, Chap, DaemonConfig, Lun, Proc, Spawn, Target};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const CHAP_TARGET: &str = "iqn.2026-11.dev.oxcopy:chap";
const MUTUAL_TARGET: &str = "iqn.2026-11.dev.oxcopy:chap-mutual";
const OPEN_TARGET: &str = "iqn.2026-11.dev.oxcopy:open";
const USER: &str = "alice";
const SECRET: &str = "alice-secret-123";
const TARGET_USER: &str = "oxcopy";
const TARGET_SECRET: &str = "target-secret-456";

/// How the tests run `oxcopyd`: in `cwd`, logging at info, stderr collected.
fn opts(cwd: &Path) -> Spawn<'_> {
    Spawn { rust_log: "info", cwd: Some(cwd), url_timeout: Duration::from_secs(20), ..spawn_opts() }
}

fn write_secret(path: &Path, secret: &str, mode: u32) {
    std::fs::write(path, format!("{secret}\n")).expect("secret file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Config with a one-way CHAP target, a mutual CHAP target and an open one.
fn config(dir: &Path) -> std::path::PathBuf {
    write_secret(&dir.join("alice.secret"), SECRET, 0o600);
    write_secret(&dir.join("target.secret"), TARGET_SECRET, 0o640);
    let lun = |name: &str| Lun::new(0, dir.join(name)).size("16MiB");
    DaemonConfig::new(dir.join("state"))
        .server("login_timeout", 30)
        .target(Target::new(CHAP_TARGET).chap(Chap::new(USER, dir.join("alice.secret"))).lun(lun("chap0.img")))
        .target(
            Target::new(MUTUAL_TARGET)
                .chap(Chap::new(USER, dir.join("alice.secret")).mutual(TARGET_USER, dir.join("target.secret")))
                .lun(lun("mutual0.img")),
        )
        .target(Target::new(OPEN_TARGET).lun(lun("open0.img")))
        .write(dir.join("oxcopyd.toml"))
}

fn start(dir: &Path) -> (Proc, SocketAddr) {
    install_panic_watch();
    let p = Proc::spawn(&config(dir), &opts(dir));
    let addr = p.addr();
    (p, addr)
}

async fn login(addr: SocketAddr, target: &str, chap: Option<ChapConfig>) -> Result<Session, InitiatorError> {
    let mut cfg = session_cfg(target);
    cfg.chap = chap;
    tokio::time::timeout(STEP, Session::connect(addr, cfg)).await.expect("login hung")
}

fn is_auth_failure(e: &InitiatorError) -> bool {
    matches!(e, InitiatorError::Login(LoginError::Rejected { status }) if *status == LoginStatus::AUTHENTICATION_FAILURE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chap_with_our_initiator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (p, addr) = start(dir.path());

    // Right secret, MD5 and SHA-256.
    let s = login(addr, CHAP_TARGET, Some(ChapConfig::one_way(USER, SECRET))).await.expect("right secret");
    s.test_unit_ready(0).await.expect("TUR");
    let mut md5 = ChapConfig::one_way(USER, SECRET);
    md5.algorithms = vec![oxcopy_initiator::ChapAlgorithm::Md5];
    login(addr, CHAP_TARGET, Some(md5)).await.expect("MD5 login");

    // Wrong secret, wrong user, no CHAP at all: Authentication Failure.
    let e = login(addr, CHAP_TARGET, Some(ChapConfig::one_way(USER, "wrong-secret-789"))).await.unwrap_err();
    assert!(is_auth_failure(&e), "{e}");
    let e = login(addr, CHAP_TARGET, Some(ChapConfig::one_way("mallory", SECRET))).await.unwrap_err();
    assert!(is_auth_failure(&e), "{e}");
    let e = login(addr, CHAP_TARGET, None).await.unwrap_err();
    assert!(is_auth_failure(&e), "{e}");

    // The open target still needs nothing; discovery is not authenticated.
    login(addr, OPEN_TARGET, None).await.expect("open target");

    // Mutual: the target proves itself.
    let m = ChapConfig::one_way(USER, SECRET).with_mutual(TARGET_USER, TARGET_SECRET);
    let s = login(addr, MUTUAL_TARGET, Some(m)).await.expect("mutual login");
    s.test_unit_ready(0).await.expect("TUR");
    // We expect a different target secret: our side refuses the login.
    let m = ChapConfig::one_way(USER, SECRET).with_mutual(TARGET_USER, "not-the-target-secret");
    let e = login(addr, MUTUAL_TARGET, Some(m)).await.unwrap_err();
    assert!(e.to_string().contains("target secret mismatch"), "{e}");
    // Mutual asked of a one-way target: refused by the target.
    let m = ChapConfig::one_way(USER, SECRET).with_mutual(TARGET_USER, TARGET_SECRET);
    let e = login(addr, CHAP_TARGET, Some(m)).await.unwrap_err();
    assert!(is_auth_failure(&e), "{e}");

    let err = p.stderr();
    assert!(err.contains("authentication failed: wrong CHAP response"), "stderr:\n{err}");
    assert!(!err.contains(SECRET) && !err.contains(TARGET_SECRET), "a secret was logged:\n{err}");
    assert!(!err.contains("panicked"), "stderr:\n{err}");
}

/// Repeated failures from one address are answered later and later, while
/// a right login from the same address goes through at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_are_slowed_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_p, addr) = start(dir.path());
    let bad = || login(addr, CHAP_TARGET, Some(ChapConfig::one_way(USER, "wrong-secret-789")));
    let mut took = Vec::new();
    for _ in 0..4 {
        let t = Instant::now();
        assert!(is_auth_failure(&bad().await.unwrap_err()));
        took.push(t.elapsed());
    }
    assert!(took[0] < Duration::from_millis(150), "{took:?}");
    assert!(took[3] >= Duration::from_millis(750), "4th failure delayed 800 ms: {took:?}");
    // A slowed-down failure does not hold up other logins.
    let slow = tokio::spawn(bad());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    login(addr, CHAP_TARGET, Some(ChapConfig::one_way(USER, SECRET))).await.expect("right secret");
    assert!(t.elapsed() < Duration::from_millis(500), "right login waited {:?}", t.elapsed());
    assert!(is_auth_failure(&slow.await.expect("join").unwrap_err()));
}

/// Run a libiscsi tool to completion (killed by PID after 5 minutes).
fn run(cmd: &mut Command) -> Output {
    output_within(cmd, Duration::from_secs(300)).expect("run libiscsi tool").expect("libiscsi tool exits in time")
}

fn have(tool: &str) -> bool {
    output_within(Command::new(tool).arg("--help"), Duration::from_secs(20)).is_ok()
}

/// libiscsi's `iscsi-inq` with CHAP in the URL.
#[test]
fn libiscsi_iscsi_inq_chap() {
    if !have("iscsi-inq") {
        eprintln!("skipping: iscsi-inq (libiscsi-bin) is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (p, addr) = start(dir.path());
    let inq = |user: &str, secret: &str, target: &str| {
        let url = format!("iscsi://{user}%{secret}@{addr}/{target}/0");
        run(Command::new("iscsi-inq").arg(&url))
    };
    let ok = inq(USER, SECRET, CHAP_TARGET);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "iscsi-inq failed: {out}\n{}", String::from_utf8_lossy(&ok.stderr));
    assert!(out.contains("OXCOPY"), "{out}");
    let bad = inq(USER, "wrong-secret-789", CHAP_TARGET);
    assert!(!bad.status.success(), "wrong secret logged in");
    let none = run(Command::new("iscsi-inq").arg(format!("iscsi://{addr}/{CHAP_TARGET}/0")));
    assert!(!none.status.success(), "no CHAP logged in");
    assert!(p.stderr().contains("authentication failed"), "{}", p.stderr());
}

/// libiscsi's iSCSI.iSCSICHAP suite (Simple, Invalid, hex/base64 variants).
#[test]
fn libiscsi_chap_suite() {
    if !have("iscsi-test-cu") {
        eprintln!("skipping: iscsi-test-cu (libiscsi-bin) is not installed");
        return;
    }
    let list = run(Command::new("iscsi-test-cu").arg("--list"));
    if !String::from_utf8_lossy(&list.stdout).contains("iSCSI.iSCSICHAP") {
        // libiscsi 1.19 (Debian/Ubuntu) predates the suite (added in 1.20).
        eprintln!("skipping: this iscsi-test-cu has no iSCSI.iSCSICHAP suite (libiscsi >= 1.20 needed)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (p, addr) = start(dir.path());
    let url = format!("iscsi://{USER}%{SECRET}@{addr}/{CHAP_TARGET}/0");
    let out = run(Command::new("iscsi-test-cu").args(["--fail", "--test=iSCSI.iSCSICHAP", &url]));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "iSCSICHAP suite failed:\n{text}\noxcopyd:\n{}", p.stderr());
    assert!(!text.contains("FAILED"), "{text}");
    assert!(!text.contains("tests      0      0"), "no test ran:\n{text}");
    eprintln!("{text}");
}

/// Secrets that are too short, world-readable or missing stop the daemon at
/// start with exit code 2 and a message naming the file and key.
#[test]
fn weak_secret_files_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write_secret(&d.join("short.secret"), "short", 0o600);
    write_secret(&d.join("open.secret"), SECRET, 0o644);
    let cases = [("short.secret", "at least 12"), ("open.secret", "world-readable"), ("missing.secret", "cannot read")];
    for (file, problem) in cases {
        let cfg = DaemonConfig::new(d.join("state"))
            .target(
                Target::new(CHAP_TARGET)
                    .chap(Chap::new("u", d.join(file)))
                    .lun(Lun::new(0, d.join("l.img")).size("1MiB")),
            )
            .write(d.join("bad.toml"));
        let mut p = Proc::launch(&cfg, &opts(d));
        let st = p.wait_exit(Duration::from_secs(20), Duration::from_millis(20)).expect("exits");
        let err = p.stderr();
        assert_eq!(st.code(), Some(2), "{file}: {err}");
        assert!(err.contains("target[0].chap.secret_file") && err.contains(file) && err.contains(problem), "{err}");
        assert!(!d.join("l.img").exists(), "{file}: created a LUN");
    }
}

/// `[target.chap]` validation in-process: the mutual keys come in pairs, the
/// mutual secret must differ, and `Debug` of the whole config shows no secret.
#[test]
fn chap_config_validation_and_redaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write_secret(&d.join("a.secret"), SECRET, 0o600);
    write_secret(&d.join("b.secret"), SECRET, 0o600);
    write_secret(&d.join("t.secret"), TARGET_SECRET, 0o600);
    let cfg = |chap: &str| {
        format!(
            "[[target]]\niqn = \"{CHAP_TARGET}\"\n\n[target.chap]\n{chap}\n\n[[target.lun]]\nid = 0\npath = \"{dd}/l.img\"\nsize = \"1MiB\"\n",
            dd = d.display()
        )
    };
    let a = format!("user = \"{USER}\"\nsecret_file = \"{}/a.secret\"", d.display());
    let ok = oxcopyd::config::Config::from_toml(
        &cfg(&format!("{a}\nmutual_user = \"{TARGET_USER}\"\nmutual_secret_file = \"{}/t.secret\"", d.display())),
        "t.toml",
    )
    .expect("valid");
    let shown = format!("{ok:?}");
    assert!(shown.contains(USER) && !shown.contains(SECRET) && !shown.contains(TARGET_SECRET), "{shown}");
    let cases = [
        (format!("{a}\nmutual_user = \"x\""), "target[0].chap.mutual_secret_file"),
        (format!("{a}\nmutual_secret_file = \"{}/t.secret\"", d.display()), "target[0].chap.mutual_user"),
        (
            format!("{a}\nmutual_user = \"x\"\nmutual_secret_file = \"{}/b.secret\"", d.display()),
            "target[0].chap.mutual_secret_file",
        ),
        (format!("user = \"\"\nsecret_file = \"{}/a.secret\"", d.display()), "target[0].chap.user"),
        (format!("{a}\nsecret = \"inline\""), ""),
    ];
    for (chap, key) in cases {
        let e = oxcopyd::config::Config::from_toml(&cfg(&chap), "t.toml").unwrap_err();
        assert!(e.key.contains(key) || key.is_empty(), "{chap}: {e}");
        assert!(!e.to_string().contains(SECRET), "{e}");
    }
}
