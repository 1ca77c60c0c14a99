//! Pre-flight checks: what start-up would otherwise only find out by failing
//! part-way (after creating the data directory, some LUN files, …), checked
//! without side effects.
//!
//! [`Config`] validation (`Config::from_file`) already covers the file
//! itself: syntax, values, LUN ids, sizes against existing files, two LUNs
//! on one file, CHAP secret files, `[copy_domain]` addresses. [`preflight`]
//! adds what depends on the machine: that the data directory and every LUN
//! file can be written (or created), that an existing copy-domain key and
//! identities file are acceptable, and that no two listeners share an
//! address. Both `oxcopyd --check` and [`crate::start`] run it, so a
//! configuration `--check` accepts does not fail start-up on any of these.
//!
//! Nothing here creates, truncates, opens for writing or binds anything.
//! Write permission is asked of the kernel with `access(2)`, which also
//! reports a read-only mount (`EROFS`), e.g. a path missing from a systemd
//! unit's `ReadWritePaths=`.

use crate::config::{Config, ConfigError};
use rustix::fs::Access;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

fn problem(cfg: &Config, key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError { file: cfg.source.clone(), key: key.into(), problem: problem.into() }
}

/// Everything start-up needs of the machine, checked without side effects;
/// errors name the key (and the file or address) at fault.
pub fn preflight(cfg: &Config) -> Result<(), ConfigError> {
    check_addresses(cfg)?;
    check_dir(&cfg.data_dir, true).map_err(|p| problem(cfg, "server.data_dir", p))?;
    crate::identity::Identities::load(&cfg.data_dir).map_err(|e| problem(cfg, "server.data_dir", format!("{e:#}")))?;
    check_key(cfg)?;
    // Journaled volume changes must still fit the configured volumes.
    let plan = crate::volume_admin::plan(&cfg.data_dir, &cfg.volumes).map_err(|p| problem(cfg, "", p))?;
    crate::volume_admin::check_files(&plan, &crate::volume_admin::config_files(cfg))
        .map_err(|p| problem(cfg, "", p))?;
    for (ti, t) in cfg.targets.iter().enumerate() {
        for (li, l) in t.luns.iter().enumerate() {
            if let Some(r) = &l.rbd {
                if !oxcopy_rbd::CEPH_SUPPORT {
                    return Err(problem(
                        cfg,
                        format!("target[{ti}].lun[{li}].rbd"),
                        "this oxcopyd was built without Ceph support (cargo build --features ceph)",
                    ));
                }
                if !r.ceph_conf.is_file() {
                    return Err(problem(
                        cfg,
                        format!("target[{ti}].lun[{li}].ceph_conf"),
                        format!("'{}' is not a readable file", r.ceph_conf.display()),
                    ));
                }
                continue;
            }
            let key = format!("target[{ti}].lun[{li}].path");
            check_lun_file(&l.path, l.read_only).map_err(|p| problem(cfg, key, p))?;
        }
    }
    for (si, s) in cfg.subsystems.iter().enumerate() {
        for (ni, n) in s.namespaces.iter().enumerate().filter(|(_, n)| n.shares_lun.is_none()) {
            let key = format!("subsystem[{si}].namespace[{ni}].path");
            check_lun_file(&n.path, n.read_only).map_err(|p| problem(cfg, key, p))?;
        }
    }
    Ok(())
}

/// Number of targets and LUNs, for `--check`'s summary.
pub fn summary(cfg: &Config) -> (usize, usize) {
    (cfg.targets.len(), cfg.targets.iter().map(|t| t.luns.len()).sum())
}

/// Number of NVMe subsystems and namespaces, for `--check`'s summary.
pub fn nvme_summary(cfg: &Config) -> (usize, usize) {
    (cfg.subsystems.len(), cfg.subsystems.iter().map(|s| s.namespaces.len()).sum())
}

/// The copy-domain key: an existing key must be acceptable (exactly 32
/// bytes, owner-only); a missing one must be creatable.
fn check_key(cfg: &Config) -> Result<(), ConfigError> {
    use oxcopy_copy::token::KeySource;
    let kf = crate::copy_domain::KeyFile::resolve(&cfg.data_dir, cfg.copy_domain.key_file.as_deref());
    let key = "copy_domain.key_file";
    let path = kf.path();
    match path.try_exists() {
        // An existing key is only read: the same checks as at start-up.
        Ok(true) => kf.load_or_create().map(drop).map_err(|e| problem(cfg, key, e.to_string())),
        Ok(false) => {
            // Created at start-up in its directory; the data directory itself
            // is created first, anything else must exist already.
            let dir = parent_dir(path);
            let may_create = dir.starts_with(&cfg.data_dir);
            check_dir(&dir, may_create).map_err(|p| problem(cfg, key, format!("'{}': {p}", path.display())))
        }
        Err(e) => Err(problem(cfg, key, format!("'{}': {e}", path.display()))),
    }
}

/// A LUN's file: an existing one must be readable (and writable unless the
/// LUN is read-only); a missing one's directory must be creatable.
fn check_lun_file(path: &Path, read_only: bool) -> Result<(), String> {
    let shown = path.display();
    if path.exists() {
        let mode = if read_only { Access::READ_OK } else { Access::READ_OK | Access::WRITE_OK };
        let what = if read_only { "cannot be read" } else { "cannot be read and written" };
        rustix::fs::access(path, mode).map_err(|e| format!("'{shown}' {what}: {e}"))
    } else {
        check_dir(&parent_dir(path), true).map_err(|p| format!("'{shown}' cannot be created: {p}"))
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `dir` is a directory files can be created in, or (`may_create`) it is
/// missing and its nearest existing ancestor is such a directory.
fn check_dir(dir: &Path, may_create: bool) -> Result<(), String> {
    let mut at = dir.to_path_buf();
    loop {
        match std::fs::metadata(&at) {
            Ok(md) if md.is_dir() => break,
            Ok(_) => return Err(format!("'{}' is not a directory", at.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && may_create => match at.parent() {
                Some(p) if !p.as_os_str().is_empty() => at = p.to_path_buf(),
                _ => at = PathBuf::from("."),
            },
            Err(e) => return Err(format!("'{}': {e}", at.display())),
        }
    }
    rustix::fs::access(&at, Access::WRITE_OK | Access::EXEC_OK).map_err(|e| {
        if at == dir {
            format!("'{}' is not writable: {e}", at.display())
        } else {
            format!("'{}' cannot be created ('{}' is not writable: {e})", dir.display(), at.display())
        }
    })
}

/// No two listeners (iSCSI portals, metrics, node link) on one address;
/// port 0 (any free port) never collides.
fn check_addresses(cfg: &Config) -> Result<(), ConfigError> {
    let mut seen: Vec<(SocketAddr, String)> = Vec::new();
    let mut all: Vec<(SocketAddr, String)> =
        cfg.listen.iter().enumerate().map(|(i, a)| (*a, format!("server.listen[{i}]"))).collect();
    all.extend(cfg.metrics.map(|a| (a, "server.metrics".to_string())));
    all.extend(cfg.copy_domain.node_listen.map(|a| (a, "copy_domain.node_listen".to_string())));
    // NVMe/TCP listeners: subsystems may share one (the Connect names the
    // subsystem), so each address counts once.
    let mut nvme: Vec<SocketAddr> = Vec::new();
    for (si, s) in cfg.subsystems.iter().enumerate() {
        for (li, a) in s.listen.iter().enumerate() {
            if !nvme.contains(a) {
                nvme.push(*a);
                all.push((*a, format!("subsystem[{si}].listen[{li}]")));
            }
        }
    }
    for (a, key) in all {
        if a.port() == 0 {
            continue;
        }
        if let Some((_, other)) = seen.iter().find(|(b, _)| *b == a) {
            return Err(problem(cfg, key, format!("{a} is also {other}")));
        }
        seen.push((a, key));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn cfg(dir: &Path, extra_server: &str, lun_path: &Path) -> Config {
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:3260\"]\ndata_dir = \"{}\"\n{extra_server}\n[[target]]\niqn = \"iqn.2026-11.a.b\"\n[[target.lun]]\nid = 0\npath = \"{}\"\nsize = \"1MiB\"\n",
            dir.join("state").display(),
            lun_path.display()
        );
        Config::from_toml(&text, "t.toml").expect("valid")
    }

    #[test]
    fn a_fresh_config_passes_and_nothing_is_created() {
        let d = tempfile::tempdir().expect("tempdir");
        let c = cfg(d.path(), "", &d.path().join("luns/deeper/lun0.img"));
        preflight(&c).expect("preflight");
        assert_eq!(std::fs::read_dir(d.path()).expect("ls").count(), 0, "preflight created something");
        assert_eq!(summary(&c), (1, 1));
    }

    #[test]
    fn listeners_on_one_address_are_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let lun = d.path().join("lun0.img");
        let e = preflight(&cfg(d.path(), "metrics = \"127.0.0.1:3260\"", &lun)).expect_err("collision");
        assert_eq!(e.key, "server.metrics");
        assert!(e.problem.contains("server.listen[0]"), "{e}");
        preflight(&cfg(d.path(), "metrics = \"127.0.0.1:9100\"", &lun)).expect("distinct addresses");
    }

    #[test]
    fn data_dir_that_is_a_file_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(d.path().join("state"), b"x").expect("write");
        let e = preflight(&cfg(d.path(), "", &d.path().join("lun0.img"))).expect_err("file as data dir");
        assert_eq!(e.key, "server.data_dir");
        assert!(e.problem.contains("not a directory"), "{e}");
    }

    #[test]
    fn insecure_key_and_bad_identities_are_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let state = d.path().join("state");
        std::fs::create_dir(&state).expect("mkdir");
        let key = state.join(crate::copy_domain::DEFAULT_KEY_FILE);
        std::fs::write(&key, [7u8; 32]).expect("key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let c = cfg(d.path(), "", &d.path().join("lun0.img"));
        let e = preflight(&c).expect_err("insecure key");
        assert_eq!(e.key, "copy_domain.key_file");
        assert!(e.problem.contains("copy-domain.key") && e.problem.contains("mode"), "{e}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        preflight(&c).expect("secure key");
        assert_eq!(std::fs::read(&key).expect("read"), [7u8; 32], "key left alone");
        std::fs::write(state.join("identities.toml"), "not = [toml").expect("write");
        let e = preflight(&c).expect_err("bad identities");
        assert!(e.key == "server.data_dir" && e.problem.contains("identities"), "{e}");
    }
}
