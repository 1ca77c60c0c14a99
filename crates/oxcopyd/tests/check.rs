//! `oxcopyd --check CONFIG`, run as the real binary: a valid configuration
//! is reported OK, each kind of broken one is refused with exit code 2 and
//! a message naming the file and the key, and nothing is ever created.

use oxcopy_testkit::process::output_within;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Run `oxcopyd --check <config>` (cwd `dir`, bounded in time): exit code,
/// stdout, stderr.
fn check(dir: &Path, config: &Path, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oxcopyd"));
    cmd.arg("--check").arg(config).current_dir(dir).env_remove("OXCOPYD_LOG_FORMAT").env_remove("JOURNAL_STREAM");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = output_within(&mut cmd, Duration::from_secs(20))
        .expect("spawn oxcopyd")
        .unwrap_or_else(|| panic!("oxcopyd --check {} still running after 20 s", config.display()));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A scratch directory and the paths a config points into (none exist).
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch { dir: tempfile::tempdir().expect("tempdir") }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn state(&self) -> PathBuf {
        self.path("state")
    }
    fn luns(&self) -> PathBuf {
        self.path("luns")
    }
    /// A config of one target whose `[[target.lun]]` tables are `luns`.
    fn target(&self, extra: &str, luns: &str) -> String {
        format!(
            "[server]\nlisten = [\"127.0.0.1:3260\"]\ndata_dir = \"{}\"\n{extra}\n[[target]]\niqn = \"iqn.2026-11.dev.oxcopy:x\"\n{luns}\n",
            self.state().display()
        )
    }
    fn lun(&self, id: u16, path: &Path, size: &str) -> String {
        format!("[[target.lun]]\nid = {id}\npath = \"{}\"\nsize = \"{size}\"\n", path.display())
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write config");
        p
    }
    /// Nothing the daemon would create exists.
    fn assert_nothing_created(&self, what: &str) {
        assert!(!self.state().exists(), "{what}: data dir created");
        assert!(!self.luns().exists(), "{what}: LUN directory created");
        assert!(!self.path("oxcopy-data").exists(), "{what}: default data dir created");
    }
}

fn secret(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).expect("secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Refused: exit code 2, the message names the config file and each of
/// `parts`, nothing created.
fn refused(s: &Scratch, name: &str, text: &str, parts: &[&str]) {
    let cfg = s.write(name, text);
    let (code, out, err) = check(s.dir.path(), &cfg, &[]);
    assert_eq!(code, Some(2), "{name}: exit status; stdout {out:?}; stderr:\n{err}");
    assert!(!out.contains("configuration OK"), "{name}: {out}");
    assert!(err.contains(&cfg.display().to_string()), "{name}: message must name the file:\n{err}");
    for p in parts {
        assert!(err.contains(p), "{name}: message must name {p:?}:\n{err}");
    }
    s.assert_nothing_created(name);
}

#[test]
fn valid_config_is_ok_and_nothing_is_created() {
    let s = Scratch::new();
    let existing = s.path("existing.img");
    std::fs::write(&existing, vec![0x5a; 1 << 20]).expect("existing LUN file");
    let before = std::fs::metadata(&existing).expect("meta").modified().expect("mtime");
    let sec = s.path("chap.secret");
    secret(&sec, "a-long-enough-secret\n", 0o600);
    let text = format!(
        "{}\n[target.chap]\nuser = \"host1\"\nsecret_file = \"{}\"\n\n[[target]]\niqn = \"iqn.2026-11.dev.oxcopy:y\"\n{}",
        s.target(
            "metrics = \"127.0.0.1:9100\"\n[copy_domain]\nnode_listen = \"127.0.0.1:3270\"\nnodes = [\"127.0.0.1:3270\", \"127.0.0.2:3270\"]\n",
            &format!("{}{}", s.lun(0, &s.luns().join("a/lun0.img"), "64MiB"), s.lun(1, &existing, "1MiB")),
        ),
        sec.display(),
        s.lun(0, &s.luns().join("lun2.img"), "1GiB"),
    );
    let cfg = s.write("ok.toml", &text);
    let (code, out, err) = check(s.dir.path(), &cfg, &[]);
    assert_eq!(code, Some(0), "stdout {out:?}; stderr:\n{err}");
    assert_eq!(out.trim(), "configuration OK: 2 targets, 3 LUNs");
    s.assert_nothing_created("valid config");
    assert_eq!(std::fs::read(&existing).expect("read"), vec![0x5a; 1 << 20], "existing LUN file modified");
    assert_eq!(std::fs::metadata(&existing).expect("meta").modified().expect("mtime"), before);
}

#[test]
fn broken_configs_exit_2_naming_the_problem() {
    let s = Scratch::new();
    let lun_ok = s.lun(0, &s.luns().join("lun0.img"), "64MiB");

    refused(&s, "toml.toml", "[server\nlisten = 1\n", &["line 1"]);
    refused(
        &s,
        "size.toml",
        &s.target("", &s.lun(0, &s.luns().join("lun0.img"), "lots")),
        &["target[0].lun[0].size", "not a size"],
    );

    let missing = s.path("no-such.secret");
    let chap = format!("{lun_ok}\n[target.chap]\nuser = \"host1\"\nsecret_file = \"{}\"\n", missing.display());
    refused(&s, "secret.toml", &s.target("", &chap), &["target[0].chap.secret_file", "no-such.secret"]);
    let short = s.path("short.secret");
    secret(&short, "short", 0o600);
    let chap = format!("{lun_ok}\n[target.chap]\nuser = \"host1\"\nsecret_file = \"{}\"\n", short.display());
    refused(&s, "short.toml", &s.target("", &chap), &["target[0].chap.secret_file", "at least 12"]);

    let existing = s.path("existing.img");
    std::fs::write(&existing, vec![0x5a; 8192]).expect("existing file");
    refused(
        &s,
        "disagree.toml",
        &s.target("", &s.lun(0, &existing, "1MiB")),
        &["target[0].lun[0].size", "disagrees", "existing.img"],
    );
    assert_eq!(std::fs::read(&existing).expect("read"), vec![0x5a; 8192], "existing file modified");

    let dup = format!("{lun_ok}{}", s.lun(1, &s.path("luns/../luns/lun0.img"), "64MiB"));
    refused(&s, "duplicate.toml", &s.target("", &dup), &["target[0].lun[1].path", "already used by target[0].lun[0]"]);

    refused(
        &s,
        "collide.toml",
        &s.target("metrics = \"127.0.0.1:3260\"", &lun_ok),
        &["server.metrics", "server.listen[0]"],
    );
    refused(&s, "node.toml", &s.target("[copy_domain]\nnodes = [\"somewhere\"]", &lun_ok), &["copy_domain.nodes"]);

    // A missing config file.
    let missing_cfg = s.path("missing.toml");
    let (code, _, err) = check(s.dir.path(), &missing_cfg, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&missing_cfg.display().to_string()), "{err}");
    s.assert_nothing_created("missing config");
}

/// A key file others may read, under an existing data directory: refused,
/// left as it was, nothing else created there.
#[test]
fn insecure_key_file_is_refused() {
    let s = Scratch::new();
    std::fs::create_dir(s.state()).expect("data dir");
    let key = s.state().join("copy-domain.key");
    std::fs::write(&key, [7u8; 32]).expect("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let cfg = s.write("key.toml", &s.target("", &s.lun(0, &s.luns().join("lun0.img"), "64MiB")));
    let (code, out, err) = check(s.dir.path(), &cfg, &[]);
    assert_eq!(code, Some(2), "stdout {out:?}; stderr:\n{err}");
    assert!(err.contains("copy_domain.key_file") && err.contains("copy-domain.key"), "{err}");
    assert!(err.contains("want 0600"), "{err}");
    assert_eq!(std::fs::read(&key).expect("read"), [7u8; 32]);
    assert_eq!(std::fs::read_dir(s.state()).expect("ls").count(), 1, "something created in the data dir");
    assert!(!s.luns().exists());

    // Once private, the same configuration passes, still creating nothing.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (code, out, err) = check(s.dir.path(), &cfg, &[]);
    assert_eq!(code, Some(0), "stdout {out:?}; stderr:\n{err}");
    assert_eq!(out.trim(), "configuration OK: 1 targets, 1 LUNs");
    assert_eq!(std::fs::read_dir(s.state()).expect("ls").count(), 1);
    assert!(!s.luns().exists());
}

/// A bad OXCOPYD_LOG_FORMAT is refused up front, naming the variable; a
/// good one does not change --check's verdict.
#[test]
fn log_format_from_the_environment() {
    let s = Scratch::new();
    let cfg = s.write("ok.toml", &s.target("", &s.lun(0, &s.luns().join("lun0.img"), "64MiB")));
    let (code, _, err) = check(s.dir.path(), &cfg, &[("OXCOPYD_LOG_FORMAT", "json")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("OXCOPYD_LOG_FORMAT") && err.contains("json"), "{err}");
    let (code, out, err) = check(s.dir.path(), &cfg, &[("OXCOPYD_LOG_FORMAT", "journal")]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "configuration OK: 1 targets, 1 LUNs");
    s.assert_nothing_created("log format");
}

/// The systemd unit in packaging/: the sandboxing directives are there with
/// their values, --check runs before the start, ExecReload is enabled
/// exactly when the daemon handles SIGHUP, and `systemd-analyze verify`
/// (where installed) accepts it.
#[test]
fn systemd_unit_is_sandboxed() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/oxcopyd.service");
    let text = std::fs::read_to_string(&path).expect("packaging/oxcopyd.service");
    let mut section = String::new();
    let mut service: Vec<(String, String)> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';')) {
        if line.starts_with('[') {
            section = line.to_string();
        } else if section == "[Service]" {
            let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not a key=value line: {line}"));
            service.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let get = |k: &str| service.iter().filter(|(key, _)| key == k).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
    for (k, v) in [
        ("Type", "simple"),
        ("User", "oxcopy"),
        ("DynamicUser", "no"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictRealtime", "yes"),
        ("SystemCallArchitectures", "native"),
        ("CapabilityBoundingSet", ""),
        ("Restart", "on-failure"),
        ("ExecStartPre", "/usr/local/bin/oxcopyd --check /etc/oxcopy/oxcopyd.toml"),
        ("ExecStart", "/usr/local/bin/oxcopyd --config /etc/oxcopy/oxcopyd.toml"),
    ] {
        assert_eq!(get(k), [v], "{k}= in {}", path.display());
    }
    let rw = get("ReadWritePaths");
    assert_eq!(rw.len(), 1, "ReadWritePaths=");
    assert!(rw[0].contains("/var/lib/oxcopy") && rw[0].contains("/srv/oxcopy"), "ReadWritePaths={}", rw[0]);
    let handles_hup = include_str!("../src/main.rs").contains("SignalKind::hangup()");
    assert!(handles_hup && get("ExecReload") == ["/bin/kill -HUP $MAINPID"], "SIGHUP reloads: ExecReload= sends it");
    assert_eq!(
        !get("ExecReload").is_empty(),
        handles_hup,
        "ExecReload= must be enabled exactly when oxcopyd handles SIGHUP (otherwise SIGHUP kills it)"
    );

    // systemd's own check, on a copy pointing at the binary just built.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("oxcopyd.service");
    std::fs::write(&copy, text.replace("/usr/local/bin/oxcopyd", env!("CARGO_BIN_EXE_oxcopyd"))).expect("copy");
    match output_within(Command::new("systemd-analyze").arg("verify").arg(&copy), Duration::from_secs(60)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => eprintln!("systemd-analyze not installed: not verified"),
        Err(e) => panic!("systemd-analyze: {e}"),
        Ok(None) => panic!("systemd-analyze verify still running after 60 s"),
        Ok(Some(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && !err.contains("oxcopyd.service"), "systemd-analyze verify:\n{err}");
        }
    }
}
