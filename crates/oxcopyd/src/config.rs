//! Configuration: the TOML schema, the embedded default, and validation.
//!
//! Validation is complete before anything touches the disk: a config that
//! does not validate creates, truncates and opens nothing.

use oxcopy_iscsi::chap::{ChapSecret, TargetChapConfig};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use crate::size::{parse_size, SizeValue};

/// Name of the target served when no config file is given.
pub const DEFAULT_TARGET: &str = "iqn.2026-11.dev.oxcopy:default";
/// NVMe subsystem served when no config file is given (namespaces 1 and 2
/// are the default target's LUNs 0 and 1).
pub const DEFAULT_SUBSYSTEM: &str = "nqn.2026-11.dev.oxcopy:default";
/// Portal used when no config file is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3260";
/// Size of each default LUN.
pub const DEFAULT_LUN_SIZE: u64 = 1 << 30;
/// `server.max_sessions` default.
pub const DEFAULT_MAX_SESSIONS: u32 = 256;
/// `server.max_concurrent_copies` default.
pub const DEFAULT_MAX_CONCURRENT_COPIES: u32 = 64;
/// `server.write_behind` default (bytes): start writeback every 64 MiB written to a LUN.
pub const DEFAULT_WRITE_BEHIND: u64 = 64 << 20;
/// `server.write_buffer_limit` default (bytes).
pub const DEFAULT_WRITE_BUFFER_LIMIT: u64 = 1 << 30;
/// Smallest `server.write_buffer_limit`: one largest write must fit.
pub const MIN_WRITE_BUFFER_LIMIT: u64 = 16 << 20;
/// `server.read_buffer_limit` default (bytes).
pub const DEFAULT_READ_BUFFER_LIMIT: u64 = 1 << 30;
/// Smallest `server.read_buffer_limit` and `server.read_buffer_per_session`:
/// one largest read (MAXIMUM TRANSFER LENGTH) must fit.
pub const MIN_READ_BUFFER_LIMIT: u64 = 16 << 20;
/// `server.poll_before_sleep` default (microseconds).
pub const DEFAULT_POLL_BEFORE_SLEEP: u64 = 50;
/// `server.pdu_timeout` default (seconds).
pub const DEFAULT_PDU_TIMEOUT: u64 = 30;
/// `server.write_data_timeout` default (seconds; at least `pdu_timeout`).
pub const DEFAULT_WRITE_DATA_TIMEOUT: u64 = 60;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub target: Vec<RawTarget>,
    /// `[copy_domain]`: ROD token key, scope and limits.
    pub copy_domain: Option<crate::copy_domain::RawCopyDomain>,
    /// `[[volume]]`: stacked volumes LUNs may sit on.
    #[serde(default)]
    pub volume: Vec<crate::volumes::RawVolume>,
    /// `[[subsystem]]`: NVMe over TCP subsystems.
    #[serde(default)]
    pub subsystem: Vec<crate::subsystems::RawSubsystem>,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Vec<String>>,
    pub data_dir: Option<String>,
    /// Commands a session may have outstanding (the CmdSN window).
    pub max_commands_per_session: Option<u32>,
    /// Seconds of silence before a NOP-In keepalive; 0 disables.
    pub nop_interval: Option<u64>,
    /// Seconds a login may take before the connection is dropped.
    pub login_timeout: Option<u64>,
    /// `IP:port` serving Prometheus metrics at `/metrics`; absent = off.
    pub metrics: Option<String>,
    /// Normal sessions at once, daemon-wide; more logins are refused with
    /// Target Error / Out of resources (0302h).
    pub max_sessions: Option<u32>,
    /// Copy operations (EXTENDED COPY, token copies) running at once,
    /// daemon-wide; more fail with INSUFFICIENT RESOURCES.
    pub max_concurrent_copies: Option<u32>,
    /// Copy operations one session (I_T nexus) may run at once; more fail
    /// with INSUFFICIENT RESOURCES while other sessions still get theirs.
    pub max_concurrent_copies_per_session: Option<u32>,
    /// Bytes of write data buffered at once, daemon-wide; a write that does
    /// not fit gets TASK SET FULL.
    pub write_buffer_limit: Option<SizeValue>,
    /// Bytes of write data one session may have buffered at once (default:
    /// half of `write_buffer_limit`, at least one largest write).
    pub write_buffer_per_session: Option<SizeValue>,
    /// Bytes of read data (data-in not yet sent) held at once, daemon-wide;
    /// a read that does not fit gets TASK SET FULL.
    pub read_buffer_limit: Option<SizeValue>,
    /// Bytes of read data one session may hold at once (default: half of
    /// `read_buffer_limit`, at least one largest read).
    pub read_buffer_per_session: Option<SizeValue>,
    /// Write-behind per LUN: start writeback after this many bytes written
    /// (size or bytes; 0 = off, leave it to the kernel's flusher).
    pub write_behind: Option<SizeValue>,
    /// Seconds a connection may sit in the middle of a PDU before it is closed.
    pub pdu_timeout: Option<u64>,
    /// Microseconds a connection whose commands come one at a time polls
    /// for the next before sleeping (0: never).
    pub poll_before_sleep: Option<u64>,
    /// Seconds all the data of a write may take to arrive, from its command
    /// (at least `pdu_timeout`).
    pub write_data_timeout: Option<u64>,
}

/// `[[target]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub iqn: String,
    pub alias: Option<String>,
    pub initiators: Option<Vec<String>>,
    /// `[target.chap]`: CHAP required for normal sessions to this target.
    pub chap: Option<RawChap>,
    #[serde(default)]
    pub lun: Vec<RawLun>,
}

/// `[target.chap]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChap {
    /// The CHAP_N the initiator must answer with.
    pub user: String,
    /// File holding the initiator's secret.
    pub secret_file: String,
    /// Mutual CHAP: the CHAP_N the target answers with.
    pub mutual_user: Option<String>,
    /// Mutual CHAP: file holding the target's secret.
    pub mutual_secret_file: Option<String>,
}

/// `[[target.lun]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLun {
    pub id: i64,
    /// The backing file (or `volume`).
    pub path: Option<String>,
    /// The `[[volume]]` the LUN sits on (instead of `path`).
    pub volume: Option<String>,
    pub size: Option<SizeValue>,
    pub block_size: Option<i64>,
    pub read_only: Option<bool>,
    /// LUN masking: only these initiators see the LUN; absent = every
    /// initiator admitted to the target.
    pub initiators: Option<Vec<String>>,
    /// Advertise and run the copy manager (INQUIRY 3PC, VPD 8Fh); default true.
    pub third_party_copy: Option<bool>,
    /// A Ceph RBD image `pool/image` (instead of `path` or `volume`).
    pub rbd: Option<String>,
    /// The ceph.conf of the cluster (default `/etc/ceph/ceph.conf`).
    pub ceph_conf: Option<String>,
    /// The Ceph client id (default `admin`; its keyring from the ceph.conf).
    pub ceph_user: Option<String>,
    /// Seconds a cluster operation may take before the command fails
    /// (default 20).
    pub rbd_timeout: Option<u64>,
    /// Take the image over from the gateway holding its exclusive lock
    /// (break the lock, which blocklists that gateway) instead of refusing
    /// to start (default false).
    pub rbd_takeover: Option<bool>,
}

/// A LUN on a Ceph RBD image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbdLunConfig {
    pub pool: String,
    pub image: String,
    pub ceph_conf: PathBuf,
    pub user: String,
    pub timeout_secs: u64,
    /// Break another gateway's exclusive lock at open (`rbd_takeover`).
    pub takeover: bool,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: String,
    pub listen: Vec<SocketAddr>,
    pub data_dir: PathBuf,
    pub max_commands_per_session: u32,
    pub nop_interval_secs: u64,
    pub login_timeout_secs: u64,
    /// Where to serve Prometheus metrics (`GET /metrics`); `None` = off.
    pub metrics: Option<SocketAddr>,
    /// Normal sessions at once (daemon-wide).
    pub max_sessions: u32,
    /// Copy operations running at once (daemon-wide).
    pub max_concurrent_copies: u32,
    /// Copy operations one session may run at once (default: half the daemon-wide bound).
    pub max_concurrent_copies_per_session: u32,
    /// Bytes of write data buffered at once (daemon-wide).
    pub write_buffer_limit: u64,
    /// Bytes of write data one session may have buffered at once.
    pub write_buffer_per_session: u64,
    /// Bytes of read data held until sent, at once (daemon-wide).
    pub read_buffer_limit: u64,
    /// Bytes of read data one session may hold at once.
    pub read_buffer_per_session: u64,
    /// Write-behind window per LUN, bytes (`None`: off).
    pub write_behind: Option<u64>,
    /// Seconds a connection may stall in the middle of a PDU.
    pub pdu_timeout_secs: u64,
    /// Microseconds a connection whose commands come one at a time polls for
    /// the next one before sleeping (0: never).
    pub poll_before_sleep_us: u64,
    /// Seconds all the data of a write may take to arrive (≥ `pdu_timeout_secs`).
    pub write_data_timeout_secs: u64,
    pub targets: Vec<TargetConfig>,
    /// `[copy_domain]`: ROD token key, scope and limits.
    pub copy_domain: crate::copy_domain::CopyDomainConfig,
    /// `[[volume]]`s, validated (built at start).
    pub volumes: Vec<crate::volumes::VolumeConfig>,
    /// NVMe over TCP subsystems (`[[subsystem]]`).
    pub subsystems: Vec<crate::subsystems::SubsystemConfig>,
}

/// One target.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub iqn: String,
    pub alias: Option<String>,
    /// `None`: any initiator may log in.
    pub initiators: Option<Vec<String>>,
    /// CHAP credentials (secrets loaded, redacted in `Debug`); `None`: no
    /// authentication.
    pub chap: Option<TargetChapConfig>,
    pub luns: Vec<LunConfig>,
}

/// One LUN.
#[derive(Debug, Clone)]
pub struct LunConfig {
    pub id: u16,
    /// The backing file (empty for a volume LUN).
    pub path: PathBuf,
    /// The volume the LUN sits on, instead of a file.
    pub volume: Option<String>,
    /// Size to create the file with when it is missing.
    pub size: Option<u64>,
    pub block_size: u32,
    pub read_only: bool,
    /// LUN masking: `None` = every initiator admitted to the target sees it.
    pub initiators: Option<Vec<String>>,
    /// Advertise the copy manager (3PC bit, VPD 8Fh); `false` = a plain disk.
    pub third_party_copy: bool,
    /// The RBD image the LUN sits on, instead of a file (`path` empty).
    pub rbd: Option<RbdLunConfig>,
}

/// A configuration problem: which file, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or `<embedded default>`).
    pub file: String,
    pub key: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.problem)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.problem)
        }
    }
}

fn err(source: &str, key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError { file: source.to_string(), key: key.into(), problem: problem.into() }
}

/// Shortest CHAP secret accepted (RFC 7143 §12.1.3: at least 96 bits).
pub const MIN_CHAP_SECRET: usize = 12;
/// Longest CHAP secret accepted.
pub const MAX_CHAP_SECRET: usize = 256;

/// Read a CHAP secret file: a regular file, not world-readable, holding
/// [`MIN_CHAP_SECRET`]..=[`MAX_CHAP_SECRET`] bytes (one trailing newline is
/// not part of the secret). Errors name the key and the file, never the
/// secret.
pub fn read_secret_file(path: &str, source: &str, key: &str) -> Result<ChapSecret, ConfigError> {
    use std::io::Read;
    let bad = |problem: String| err(source, key, format!("'{path}': {problem}"));
    let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(bad("is not a regular file".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o004 != 0 {
            return Err(bad("is world-readable; chmod o-r it (e.g. chmod 600)".into()));
        }
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CHAP_SECRET as u64 + 3).read_to_end(&mut bytes))
        .map_err(|e| bad(format!("cannot read: {e}")))?;
    if bytes.ends_with(b"\r\n") {
        bytes.truncate(bytes.len() - 2);
    } else if bytes.ends_with(b"\n") {
        bytes.pop();
    }
    if bytes.len() < MIN_CHAP_SECRET {
        return Err(bad(format!("the secret is {} bytes; at least {MIN_CHAP_SECRET} are required", bytes.len())));
    }
    if bytes.len() > MAX_CHAP_SECRET {
        return Err(bad(format!("the secret is longer than {MAX_CHAP_SECRET} bytes")));
    }
    Ok(ChapSecret::new(bytes))
}

fn chap_name(source: &str, key: String, name: &str) -> Result<String, ConfigError> {
    if name.is_empty() || name.len() > 255 || name.chars().any(|c| c.is_control()) {
        return Err(err(source, key, "must be 1..255 printable characters"));
    }
    Ok(name.to_string())
}

/// Validate `[target.chap]` and load its secrets.
fn chap_config(c: &RawChap, source: &str, key: &str) -> Result<TargetChapConfig, ConfigError> {
    let user = chap_name(source, format!("{key}.user"), &c.user)?;
    let secret = read_secret_file(&c.secret_file, source, &format!("{key}.secret_file"))?;
    let mut cfg = TargetChapConfig::one_way(user, secret.expose().to_vec());
    match (&c.mutual_user, &c.mutual_secret_file) {
        (None, None) => {}
        (Some(u), Some(f)) => {
            let mkey = format!("{key}.mutual_secret_file");
            let mutual = read_secret_file(f, source, &mkey)?;
            if mutual == secret {
                return Err(err(source, mkey, "the mutual secret must differ from the initiator secret"));
            }
            let u = chap_name(source, format!("{key}.mutual_user"), u)?;
            cfg = cfg.with_mutual(u, mutual.expose().to_vec());
        }
        (Some(_), None) => return Err(err(source, format!("{key}.mutual_secret_file"), "required with mutual_user")),
        (None, Some(_)) => return Err(err(source, format!("{key}.mutual_user"), "required with mutual_secret_file")),
    }
    Ok(cfg)
}

/// Is this a valid iSCSI name (RFC 7143 §4.2.7): `iqn.yyyy-mm.reversed.domain[:anything]`,
/// `eui.` + 16 hex digits, or `naa.` + 16 or 32 hex digits; at most 223 bytes,
/// lower-case, no whitespace.
pub fn valid_iscsi_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 223 || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    if let Some(rest) = name.strip_prefix("iqn.") {
        let b = rest.as_bytes();
        let date_ok = b.len() >= 8
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'-'
            && b[5..7].iter().all(u8::is_ascii_digit)
            && b[7] == b'.';
        let month_ok = date_ok
            && matches!(&rest[5..7], "01" | "02" | "03" | "04" | "05" | "06" | "07" | "08" | "09" | "10" | "11" | "12");
        if !month_ok {
            return false;
        }
        let authority = rest[8..].split(':').next().unwrap_or("");
        !authority.is_empty()
            && authority.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
            && !name.chars().any(|c| c.is_ascii_uppercase())
    } else if let Some(hex) = name.strip_prefix("eui.") {
        hex.len() == 16 && hex.chars().all(|c| c.is_ascii_hexdigit())
    } else if let Some(hex) = name.strip_prefix("naa.") {
        (hex.len() == 16 || hex.len() == 32) && hex.chars().all(|c| c.is_ascii_hexdigit())
    } else {
        false
    }
}

impl Config {
    /// The embedded default: one target, two 1 GiB sparse LUNs under `data_dir`.
    pub fn embedded_default(listen: Vec<SocketAddr>, data_dir: PathBuf) -> Config {
        let luns = (0..2u16)
            .map(|id| LunConfig {
                id,
                path: data_dir.join(format!("lun{id}.img")),
                volume: None,
                size: Some(DEFAULT_LUN_SIZE),
                block_size: 512,
                read_only: false,
                initiators: None,
                third_party_copy: true,
                rbd: None,
            })
            .collect();
        Config {
            source: "<embedded default>".into(),
            listen,
            data_dir: data_dir.clone(),
            max_commands_per_session: 128,
            nop_interval_secs: 30,
            login_timeout_secs: 30,
            metrics: None,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_concurrent_copies: DEFAULT_MAX_CONCURRENT_COPIES,
            max_concurrent_copies_per_session: DEFAULT_MAX_CONCURRENT_COPIES.div_ceil(2),
            write_buffer_limit: DEFAULT_WRITE_BUFFER_LIMIT,
            write_buffer_per_session: DEFAULT_WRITE_BUFFER_LIMIT / 2,
            read_buffer_limit: DEFAULT_READ_BUFFER_LIMIT,
            read_buffer_per_session: DEFAULT_READ_BUFFER_LIMIT / 2,
            write_behind: Some(DEFAULT_WRITE_BEHIND),
            pdu_timeout_secs: DEFAULT_PDU_TIMEOUT,
            poll_before_sleep_us: DEFAULT_POLL_BEFORE_SLEEP,
            write_data_timeout_secs: DEFAULT_WRITE_DATA_TIMEOUT,
            copy_domain: crate::copy_domain::CopyDomainConfig::default(),
            volumes: Vec::new(),
            // NVMe/TCP on the same two files: namespaces 1 and 2 are LUNs 0
            // and 1 (shared range locks, tokens stay point in time).
            subsystems: vec![crate::subsystems::SubsystemConfig {
                nqn: DEFAULT_SUBSYSTEM.into(),
                listen: vec![crate::subsystems::DEFAULT_NVME_LISTEN.parse().expect("constant address parses")],
                hosts: None,
                namespaces: (0..2u16)
                    .map(|id| crate::subsystems::NamespaceConfig {
                        nsid: u32::from(id) + 1,
                        path: data_dir.join(format!("lun{id}.img")),
                        size: None,
                        block_size: 512,
                        read_only: false,
                        shares_lun: Some((DEFAULT_TARGET.into(), id)),
                    })
                    .collect(),
            }],
            targets: vec![TargetConfig {
                iqn: DEFAULT_TARGET.into(),
                alias: Some("oxcopy default".into()),
                initiators: None,
                chap: None,
                luns,
            }],
        }
    }

    /// Read and validate a TOML file. Paths in it are relative to the
    /// current directory (as the user typed them).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| err(&source, "", format!("cannot read: {e}")))?;
        Config::from_toml(&text, &source)
    }

    /// [`Config::from_file`] for a reload: a LUN `size` larger than its
    /// existing file is accepted (the reload grows the file of a LUN it
    /// serves); a smaller one is refused as a shrink.
    pub fn from_file_for_reload(path: &Path) -> Result<Config, ConfigError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| err(&source, "", format!("cannot read: {e}")))?;
        Config::parse(&text, &source, true)
    }

    /// Parse and validate TOML text; `source` names it in errors.
    pub fn from_toml(text: &str, source: &str) -> Result<Config, ConfigError> {
        Config::parse(text, source, false)
    }

    fn parse(text: &str, source: &str, allow_grow: bool) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            // toml's message names the key and line; keep it on one line.
            let msg = e.message().to_string();
            let loc = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}")
                })
                .unwrap_or_default();
            err(source, loc, msg)
        })?;
        Config::validate(raw, source, allow_grow)
    }

    fn validate(raw: RawConfig, source: &str, allow_grow: bool) -> Result<Config, ConfigError> {
        let listen_strs = raw.server.listen.unwrap_or_else(|| vec![DEFAULT_LISTEN.to_string()]);
        if listen_strs.is_empty() {
            return Err(err(source, "server.listen", "needs at least one address"));
        }
        let mut listen = Vec::new();
        for (i, l) in listen_strs.iter().enumerate() {
            let addr: SocketAddr = l
                .parse()
                .map_err(|_| err(source, format!("server.listen[{i}]"), format!("'{l}' is not an IP:port address")))?;
            listen.push(addr);
        }
        let data_dir = PathBuf::from(raw.server.data_dir.unwrap_or_else(|| "./oxcopy-data".into()));
        let metrics = match &raw.server.metrics {
            None => None,
            Some(m) => Some(
                m.parse::<SocketAddr>()
                    .map_err(|_| err(source, "server.metrics", format!("'{m}' is not an IP:port address")))?,
            ),
        };
        let max_commands_per_session = raw.server.max_commands_per_session.unwrap_or(128);
        if !(1..=4096).contains(&max_commands_per_session) {
            return Err(err(source, "server.max_commands_per_session", "must be between 1 and 4096"));
        }
        let max_sessions = raw.server.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS);
        if !(1..=65535).contains(&max_sessions) {
            return Err(err(source, "server.max_sessions", "must be between 1 and 65535"));
        }
        let max_concurrent_copies = raw.server.max_concurrent_copies.unwrap_or(DEFAULT_MAX_CONCURRENT_COPIES);
        if !(1..=65535).contains(&max_concurrent_copies) {
            return Err(err(source, "server.max_concurrent_copies", "must be between 1 and 65535"));
        }
        let max_concurrent_copies_per_session =
            raw.server.max_concurrent_copies_per_session.unwrap_or(max_concurrent_copies.div_ceil(2));
        if !(1..=max_concurrent_copies).contains(&max_concurrent_copies_per_session) {
            return Err(err(
                source,
                "server.max_concurrent_copies_per_session",
                "must be between 1 and max_concurrent_copies",
            ));
        }
        let size = |v: &Option<SizeValue>, default: u64, key: &str| -> Result<u64, ConfigError> {
            Ok(match v {
                None => default,
                Some(SizeValue::Int(n)) => u64::try_from(*n).unwrap_or(0),
                Some(SizeValue::Str(s)) => {
                    parse_size(s).ok_or_else(|| err(source, key, format!("'{s}' is not a size (e.g. \"1GiB\")")))?
                }
            })
        };
        let write_buffer_limit =
            size(&raw.server.write_buffer_limit, DEFAULT_WRITE_BUFFER_LIMIT, "server.write_buffer_limit")?;
        if !(MIN_WRITE_BUFFER_LIMIT..=1 << 40).contains(&write_buffer_limit) {
            return Err(err(source, "server.write_buffer_limit", "must be between 16MiB (one largest write) and 1TiB"));
        }
        // A session's share: half the daemon-wide bound by default, never
        // less than one largest write.
        let write_buffer_per_session = size(
            &raw.server.write_buffer_per_session,
            (write_buffer_limit / 2).max(MIN_WRITE_BUFFER_LIMIT),
            "server.write_buffer_per_session",
        )?;
        if !(MIN_WRITE_BUFFER_LIMIT..=write_buffer_limit).contains(&write_buffer_per_session) {
            return Err(err(
                source,
                "server.write_buffer_per_session",
                "must be between 16MiB (one largest write) and write_buffer_limit",
            ));
        }
        let read_buffer_limit =
            size(&raw.server.read_buffer_limit, DEFAULT_READ_BUFFER_LIMIT, "server.read_buffer_limit")?;
        if !(MIN_READ_BUFFER_LIMIT..=1 << 40).contains(&read_buffer_limit) {
            return Err(err(source, "server.read_buffer_limit", "must be between 16MiB (one largest read) and 1TiB"));
        }
        let read_buffer_per_session = size(
            &raw.server.read_buffer_per_session,
            (read_buffer_limit / 2).max(MIN_READ_BUFFER_LIMIT),
            "server.read_buffer_per_session",
        )?;
        if !(MIN_READ_BUFFER_LIMIT..=read_buffer_limit).contains(&read_buffer_per_session) {
            return Err(err(
                source,
                "server.read_buffer_per_session",
                "must be between 16MiB (one largest read) and read_buffer_limit",
            ));
        }
        let write_behind = match &raw.server.write_behind {
            None => Some(DEFAULT_WRITE_BEHIND),
            Some(SizeValue::Int(0)) => None,
            Some(SizeValue::Int(n)) => Some(
                u64::try_from(*n)
                    .map_err(|_| err(source, "server.write_behind", "must be a size (e.g. \"64MiB\"), or 0 for off"))?,
            ),
            Some(SizeValue::Str(s)) if s.trim() == "0" => None,
            Some(SizeValue::Str(s)) => Some(parse_size(s).ok_or_else(|| {
                err(source, "server.write_behind", format!("'{s}' is not a size (e.g. \"64MiB\"), or 0 for off"))
            })?),
        };
        if write_behind.is_some_and(|w| w < 1 << 20) {
            return Err(err(source, "server.write_behind", "must be at least 1MiB, or 0 for off"));
        }
        let poll_before_sleep_us = raw.server.poll_before_sleep.unwrap_or(DEFAULT_POLL_BEFORE_SLEEP);
        if poll_before_sleep_us > 1000 {
            return Err(err(source, "server.poll_before_sleep", "must be between 0 (off) and 1000 microseconds"));
        }
        let pdu_timeout_secs = raw.server.pdu_timeout.unwrap_or(DEFAULT_PDU_TIMEOUT);
        if !(1..=3600).contains(&pdu_timeout_secs) {
            return Err(err(source, "server.pdu_timeout", "must be between 1 and 3600 seconds"));
        }
        // A write's data takes at least one PDU; by default a longer
        // pdu_timeout raises it.
        let write_data_timeout_secs =
            raw.server.write_data_timeout.unwrap_or(DEFAULT_WRITE_DATA_TIMEOUT.max(pdu_timeout_secs));
        if !(pdu_timeout_secs..=86400).contains(&write_data_timeout_secs) {
            return Err(err(
                source,
                "server.write_data_timeout",
                "must be between pdu_timeout and 86400 seconds (a write's data takes at least one PDU)",
            ));
        }
        if raw.target.is_empty() && raw.subsystem.is_empty() {
            return Err(err(source, "target", "at least one [[target]] or [[subsystem]] is required"));
        }
        let mut names = HashSet::new();
        let mut files: HashMap<PathBuf, String> = HashMap::new();
        let volumes = crate::volumes::validate(raw.volume, &mut files, canonical_target)
            .map_err(|p| err(source, p.key, p.problem))?;
        // Volumes used as members; each other volume may back one LUN.
        let mut volume_users: HashMap<String, String> = volumes
            .iter()
            .flat_map(|v| v.members.iter().map(move |m| (m, &v.name)))
            .filter_map(|(m, owner)| match m {
                crate::volumes::MemberConfig::Volume(n) => Some((n.clone(), format!("volume '{owner}'"))),
                _ => None,
            })
            .collect();
        let mut targets = Vec::new();
        for (ti, t) in raw.target.into_iter().enumerate() {
            let tkey = format!("target[{ti}]");
            if !valid_iscsi_name(&t.iqn) {
                return Err(err(
                    source,
                    format!("{tkey}.iqn"),
                    format!(
                        "'{}' is not a valid iSCSI name (iqn.yyyy-mm.domain[:id], eui.<16 hex>, naa.<16|32 hex>)",
                        t.iqn
                    ),
                ));
            }
            if !names.insert(t.iqn.clone()) {
                return Err(err(source, format!("{tkey}.iqn"), format!("duplicate target name '{}'", t.iqn)));
            }
            if let Some(inits) = &t.initiators {
                for (ii, i) in inits.iter().enumerate() {
                    if !valid_iscsi_name(i) {
                        return Err(err(
                            source,
                            format!("{tkey}.initiators[{ii}]"),
                            format!("'{i}' is not a valid iSCSI name"),
                        ));
                    }
                }
            }
            if t.lun.is_empty() {
                return Err(err(source, format!("{tkey}.lun"), "a target needs at least one [[target.lun]]"));
            }
            let mut ids = HashSet::new();
            let mut luns = Vec::new();
            for (li, l) in t.lun.into_iter().enumerate() {
                let lkey = format!("{tkey}.lun[{li}]");
                if !(0..16384).contains(&l.id) {
                    return Err(err(source, format!("{lkey}.id"), format!("{} is outside 0..16383", l.id)));
                }
                let id = l.id as u16;
                if !ids.insert(id) {
                    return Err(err(
                        source,
                        format!("{lkey}.id"),
                        format!("duplicate LUN id {id} in target '{}'", t.iqn),
                    ));
                }
                let block_size = match l.block_size.unwrap_or(512) {
                    512 => 512,
                    4096 => 4096,
                    other => {
                        return Err(err(source, format!("{lkey}.block_size"), format!("{other} is not 512 or 4096")))
                    }
                };
                let size = match &l.size {
                    None => None,
                    Some(SizeValue::Int(n)) if *n > 0 => Some(*n as u64),
                    Some(SizeValue::Int(n)) => {
                        return Err(err(source, format!("{lkey}.size"), format!("{n} is not a positive size")))
                    }
                    Some(SizeValue::Str(s)) => Some(parse_size(s).ok_or_else(|| {
                        err(source, format!("{lkey}.size"), format!("'{s}' is not a size (e.g. \"4GiB\", \"512MiB\")"))
                    })?),
                };
                if let Some(sz) = size {
                    if sz % block_size as u64 != 0 {
                        return Err(err(
                            source,
                            format!("{lkey}.size"),
                            format!("{sz} bytes is not a multiple of the block size {block_size}"),
                        ));
                    }
                }
                if l.rbd.is_none() {
                    for (k, set) in [
                        ("ceph_conf", l.ceph_conf.is_some()),
                        ("ceph_user", l.ceph_user.is_some()),
                        ("rbd_timeout", l.rbd_timeout.is_some()),
                        ("rbd_takeover", l.rbd_takeover.is_some()),
                    ] {
                        if set {
                            return Err(err(source, format!("{lkey}.{k}"), "only for a LUN on an RBD image (`rbd`)"));
                        }
                    }
                }
                if let Some(spec) = &l.rbd {
                    if l.path.is_some() || l.volume.is_some() {
                        return Err(err(source, lkey, "has rbd and a path or volume; a LUN sits on one of them"));
                    }
                    let (pool, image) = parse_rbd_spec(spec)
                        .ok_or_else(|| err(source, format!("{lkey}.rbd"), format!("'{spec}' is not pool/image")))?;
                    let timeout_secs = l.rbd_timeout.unwrap_or(20);
                    if !(1..=3600).contains(&timeout_secs) {
                        return Err(err(source, format!("{lkey}.rbd_timeout"), "must be between 1 and 3600 seconds"));
                    }
                    let takeover = l.rbd_takeover.unwrap_or(false);
                    if takeover && l.read_only.unwrap_or(false) {
                        return Err(err(
                            source,
                            format!("{lkey}.rbd_takeover"),
                            "a read-only LUN takes no exclusive lock, so there is nothing to take over",
                        ));
                    }
                    if let Some(sz) = size {
                        if sz % u64::from(block_size) != 0 {
                            return Err(err(
                                source,
                                format!("{lkey}.size"),
                                format!("{sz} bytes is not a multiple of the block size {block_size}"),
                            ));
                        }
                    }
                    let ceph_conf = PathBuf::from(l.ceph_conf.clone().unwrap_or_else(|| "/etc/ceph/ceph.conf".into()));
                    let key = PathBuf::from(format!("\0rbd:{}:{pool}/{image}", canonical_target(&ceph_conf).display()));
                    if let Some(other) = files.insert(key, lkey.clone()) {
                        return Err(err(source, format!("{lkey}.rbd"), format!("'{spec}' is already used by {other}")));
                    }
                    check_initiators(l.initiators.as_deref(), source, &lkey)?;
                    luns.push(LunConfig {
                        id,
                        path: PathBuf::new(),
                        volume: None,
                        size,
                        block_size,
                        read_only: l.read_only.unwrap_or(false),
                        initiators: l.initiators,
                        third_party_copy: l.third_party_copy.unwrap_or(true),
                        rbd: Some(RbdLunConfig {
                            pool,
                            image,
                            ceph_conf,
                            user: l.ceph_user.clone().unwrap_or_else(|| "admin".into()),
                            timeout_secs,
                            takeover,
                        }),
                    });
                    continue;
                }
                let lpath = match (&l.path, &l.volume) {
                    (Some(_), Some(_)) => {
                        return Err(err(source, lkey, "has both path and volume; a LUN sits on one of them"))
                    }
                    (None, None) => return Err(err(source, format!("{lkey}.path"), "a LUN needs a path or a volume")),
                    (None, Some(v)) => {
                        if !volumes.iter().any(|c| &c.name == v) {
                            return Err(err(source, format!("{lkey}.volume"), format!("no [[volume]] named '{v}'")));
                        }
                        if size.is_some() {
                            return Err(err(source, format!("{lkey}.size"), "a volume LUN is as large as its volume"));
                        }
                        if let Some(other) = volume_users.insert(v.clone(), lkey.clone()) {
                            return Err(err(
                                source,
                                format!("{lkey}.volume"),
                                format!("volume '{v}' is already used by {other}"),
                            ));
                        }
                        check_initiators(l.initiators.as_deref(), source, &lkey)?;
                        luns.push(LunConfig {
                            id,
                            path: PathBuf::new(),
                            volume: Some(v.clone()),
                            size: None,
                            block_size,
                            read_only: l.read_only.unwrap_or(false),
                            initiators: l.initiators,
                            third_party_copy: l.third_party_copy.unwrap_or(true),
                            rbd: None,
                        });
                        continue;
                    }
                    (Some(p), None) => p.clone(),
                };
                if lpath.is_empty() {
                    return Err(err(source, format!("{lkey}.path"), "is empty"));
                }
                let path = PathBuf::from(&lpath);
                let canon = canonical_target(&path);
                if let Some(other) = files.insert(canon, lkey.clone()) {
                    return Err(err(source, format!("{lkey}.path"), format!("'{}' is already used by {other}", lpath)));
                }
                match std::fs::metadata(&path) {
                    Ok(md) => {
                        if !md.is_file() {
                            return Err(err(
                                source,
                                format!("{lkey}.path"),
                                format!("'{}' is not a regular file", lpath),
                            ));
                        }
                        if let Some(sz) = size {
                            if allow_grow && sz < md.len() {
                                return Err(err(
                                    source,
                                    format!("{lkey}.size"),
                                    format!(
                                        "{sz} bytes is smaller than existing file '{}' of {} bytes: \
                                         shrinking a LUN is not supported",
                                        lpath,
                                        md.len()
                                    ),
                                ));
                            }
                            if md.len() != sz && !(allow_grow && sz > md.len()) {
                                return Err(err(
                                    source,
                                    format!("{lkey}.size"),
                                    format!(
                                        "{sz} bytes disagrees with existing file '{}' of {} bytes",
                                        lpath,
                                        md.len()
                                    ),
                                ));
                            }
                        }
                        if md.len() == 0 || md.len() % block_size as u64 != 0 {
                            return Err(err(
                                source,
                                format!("{lkey}.path"),
                                format!(
                                    "existing file of {} bytes is not a positive multiple of {block_size}",
                                    md.len()
                                ),
                            ));
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        if size.is_none() {
                            return Err(err(
                                source,
                                format!("{lkey}.size"),
                                format!("'{}' does not exist, so a size is needed to create it", lpath),
                            ));
                        }
                    }
                    Err(e) => return Err(err(source, format!("{lkey}.path"), format!("'{}': {e}", lpath))),
                }
                check_initiators(l.initiators.as_deref(), source, &lkey)?;
                luns.push(LunConfig {
                    id,
                    path,
                    volume: None,
                    size,
                    block_size,
                    read_only: l.read_only.unwrap_or(false),
                    initiators: l.initiators,
                    third_party_copy: l.third_party_copy.unwrap_or(true),
                    rbd: None,
                });
            }
            let chap = match &t.chap {
                None => None,
                Some(c) => Some(chap_config(c, source, &format!("{tkey}.chap"))?),
            };
            targets.push(TargetConfig { iqn: t.iqn, alias: t.alias, initiators: t.initiators, chap, luns });
        }
        // NVMe subsystems: a namespace on a LUN's file serves that LUN.
        let lun_files: HashMap<PathBuf, crate::subsystems::LunFile> = targets
            .iter()
            .flat_map(|t: &TargetConfig| t.luns.iter().map(move |l| (t, l)))
            .filter(|(_, l)| l.volume.is_none() && l.rbd.is_none())
            .map(|(t, l)| {
                (
                    canonical_target(&l.path),
                    crate::subsystems::LunFile {
                        iqn: t.iqn.clone(),
                        id: l.id,
                        block_size: l.block_size,
                        read_only: l.read_only,
                    },
                )
            })
            .collect();
        let subsystems = crate::subsystems::validate(raw.subsystem, &mut files, &lun_files, canonical_target)
            .map_err(|p| err(source, p.key, p.problem))?;
        let copy_domain = crate::copy_domain::CopyDomainConfig::from_raw(raw.copy_domain)
            .map_err(|(key, problem)| err(source, key, problem))?;
        Ok(Config {
            source: source.to_string(),
            listen,
            data_dir,
            max_commands_per_session,
            nop_interval_secs: raw.server.nop_interval.unwrap_or(30),
            login_timeout_secs: raw.server.login_timeout.unwrap_or(30),
            metrics,
            max_sessions,
            max_concurrent_copies,
            max_concurrent_copies_per_session,
            write_buffer_limit,
            write_buffer_per_session,
            read_buffer_limit,
            read_buffer_per_session,
            write_behind,
            pdu_timeout_secs,
            poll_before_sleep_us,
            write_data_timeout_secs,
            targets,
            copy_domain,
            volumes,
            subsystems,
        })
    }
}

/// A path's identity for duplicate detection, also for files (and
/// directories) not yet created: the nearest existing ancestor,
/// canonicalized, joined with the rest of the path resolved lexically (a
/// missing component cannot be a symbolic link, so `..` after it is its
/// parent).
/// `pool/image` of an RBD LUN: both non-empty, printable, no `/` or `@` in
/// the image (no snapshot: a LUN is writable).
fn parse_rbd_spec(spec: &str) -> Option<(String, String)> {
    let (pool, image) = spec.split_once('/')?;
    let ok =
        |s: &str| !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b'@');
    (ok(pool) && ok(image)).then(|| (pool.to_string(), image.to_string()))
}

/// A LUN's `initiators` (LUN masking) must be valid iSCSI names.
fn check_initiators(inits: Option<&[String]>, source: &str, lkey: &str) -> Result<(), ConfigError> {
    for (ii, i) in inits.unwrap_or_default().iter().enumerate() {
        if !valid_iscsi_name(i) {
            return Err(err(source, format!("{lkey}.initiators[{ii}]"), format!("'{i}' is not a valid iSCSI name")));
        }
    }
    Ok(())
}

fn canonical_target(path: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(path) {
        return c;
    }
    let absolute = match std::env::current_dir() {
        Ok(cwd) if path.is_relative() => cwd.join(path),
        _ => path.to_path_buf(),
    };
    for ancestor in absolute.ancestors().skip(1) {
        let Ok(mut base) = std::fs::canonicalize(ancestor) else { continue };
        let rest = absolute.strip_prefix(ancestor).unwrap_or(Path::new(""));
        for c in rest.components() {
            match c {
                std::path::Component::ParentDir => {
                    base.pop();
                }
                std::path::Component::Normal(n) => base.push(n),
                _ => {}
            }
        }
        return base;
    }
    absolute
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, "test.toml")
    }

    #[test]
    fn names() {
        assert!(valid_iscsi_name("iqn.2026-11.dev.oxcopy:disk1"));
        assert!(valid_iscsi_name("iqn.1994-05.com.example:host1"));
        assert!(valid_iscsi_name("eui.02004567A425678D"));
        assert!(valid_iscsi_name("naa.52004567BA64678D"));
        assert!(!valid_iscsi_name("iqn.2026-13.dev.x"));
        assert!(!valid_iscsi_name("iqn.26-11.dev.x"));
        assert!(!valid_iscsi_name("disk1"));
        assert!(!valid_iscsi_name("iqn.2026-11.dev.x:has space"));
        assert!(!valid_iscsi_name("eui.123"));
    }

    #[test]
    fn the_issue_schema_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lun0.img");
        let text = format!(
            r#"
[server]
listen = ["127.0.0.1:3260"]
data_dir = "./oxcopy-data"

[[target]]
iqn = "iqn.2026-11.dev.oxcopy:disk1"
initiators = ["iqn.1994-05.com.example:host1"]

[[target.lun]]
id = 0
path = "{}"
size = "4GiB"
block_size = 512
"#,
            p.display()
        );
        let c = cfg(&text).unwrap();
        assert_eq!(c.targets[0].luns[0].size, Some(4 << 30));
        assert!(!p.exists(), "validation must not create files");
    }

    fn expect_err(text: &str, key_part: &str, problem_part: &str) {
        let e = cfg(text).unwrap_err();
        assert!(e.key.contains(key_part), "key {:?} lacks {key_part:?} ({e})", e.key);
        assert!(e.problem.contains(problem_part), "problem {:?} lacks {problem_part:?}", e.problem);
        assert!(e.to_string().starts_with("test.toml: "));
    }

    #[test]
    fn bad_configs_name_key_and_problem() {
        expect_err("[server]\nlisten=[\"x\"]\n[[target]]\niqn=\"iqn.2026-11.a.b\"\n[[target.lun]]\nid=0\npath=\"/tmp/oxcopy-none-a\"\nsize=\"1M\"", "server.listen[0]", "not an IP");
        expect_err("[server]\nbogus=1\n", "line", "unknown field");
        expect_err("[server]\nmetrics=\"localhost\"\n[[target]]\niqn=\"iqn.2026-11.a.b\"\n[[target.lun]]\nid=0\npath=\"/tmp/oxcopy-none-a\"\nsize=\"1M\"", "server.metrics", "not an IP");
        expect_err(
            "[[target]]\niqn=\"disk\"\n[[target.lun]]\nid=0\npath=\"/tmp/x\"\nsize=\"1M\"",
            "target[0].iqn",
            "not a valid iSCSI name",
        );
        expect_err(
            "[[target]]\niqn=\"iqn.2026-11.a.b\"\n[[target.lun]]\nid=0\npath=\"/tmp/oxcopy-none-a\"\nsize=\"1M\"\n[[target]]\niqn=\"iqn.2026-11.a.b\"\n[[target.lun]]\nid=0\npath=\"/tmp/oxcopy-none-b\"\nsize=\"1M\"",
            "target[1].iqn",
            "duplicate target",
        );
        expect_err(
            "[[target]]\niqn=\"iqn.2026-11.a.b\"\n[[target.lun]]\nid=0\npath=\"/tmp/oxcopy-none-a\"\nsize=\"1M\"\n[[target.lun]]\nid=0\npath=\"/tmp/oxcopy-none-b\"\nsize=\"1M\"",
            "target[0].lun[1].id",
            "duplicate LUN id",
        );
        expect_err(
            "[[target]]\niqn=\"iqn.2026-11.a.b\"\n[[target.lun]]\nid=0\npath=\"/tmp/oxcopy-none-a\"\nsize=\"lots\"",
            "lun[0].size",
            "not a size",
        );
        expect_err(
            "[[target]]\niqn=\"iqn.2026-11.a.b\"\n[[target.lun]]\nid=0\npath=\"/tmp/oxcopy-none-a\"\nsize=\"1M\"\n[[target.lun]]\nid=1\npath=\"/tmp/../tmp/oxcopy-none-a\"\nsize=\"1M\"",
            "lun[1].path",
            "already used",
        );
        expect_err("[[target]]\niqn=\"iqn.2026-11.a.b\"\n[[target.lun]]\nid=0\npath=\"/tmp/oxcopy-none-a\"\nsize=\"1M\"\nblock_size=1000", "block_size", "not 512 or 4096");
        let lun = "[[target]]\niqn=\"iqn.2026-11.a.b\"\n[[target.lun]]\nid=0\npath=\"/tmp/oxcopy-none-a\"\nsize=\"1M\"";
        expect_err(&format!("[server]\nmax_sessions=0\n{lun}"), "server.max_sessions", "between 1 and 65535");
        expect_err(&format!("[server]\nmax_concurrent_copies=70000\n{lun}"), "server.max_concurrent_copies", "between");
        expect_err(&format!("[server]\nwrite_buffer_limit=\"1MiB\"\n{lun}"), "server.write_buffer_limit", "16MiB");
        expect_err(&format!("[server]\nwrite_buffer_limit=\"lots\"\n{lun}"), "server.write_buffer_limit", "not a size");
        expect_err(&format!("[server]\nwrite_buffer_limit=-5\n{lun}"), "server.write_buffer_limit", "16MiB");
        expect_err(&format!("[server]\npdu_timeout=0\n{lun}"), "server.pdu_timeout", "between 1 and 3600");
        expect_err(&format!("[server]\nmax_sessions=-1\n{lun}"), "line", "");
        expect_err(
            &format!("{lun}\ninitiators=[\"bogus name\"]"),
            "target[0].lun[0].initiators[0]",
            "not a valid iSCSI name",
        );
        let c = cfg(&format!(
            "[server]\nmax_sessions=3\nmax_concurrent_copies=2\nwrite_buffer_limit=\"32MiB\"\npdu_timeout=5\n{lun}\ninitiators=[\"iqn.2026-11.a.host\"]"
        ))
        .unwrap();
        assert_eq!(
            (c.max_sessions, c.max_concurrent_copies, c.write_buffer_limit, c.pdu_timeout_secs),
            (3, 2, 32 << 20, 5)
        );
        assert_eq!(c.max_concurrent_copies_per_session, 1, "half of the daemon-wide bound by default");
        assert_eq!(c.write_behind, Some(DEFAULT_WRITE_BEHIND));
        assert_eq!(cfg(&format!("[server]\nwrite_behind = 0\n{lun}")).unwrap().write_behind, None);
        assert_eq!(cfg(&format!("[server]\nwrite_behind = \"256MiB\"\n{lun}")).unwrap().write_behind, Some(256 << 20));
        expect_err(&format!("[server]\nwrite_behind = \"4KiB\"\n{lun}"), "server.write_behind", "at least");
        expect_err(
            &format!("[server]\nmax_concurrent_copies=4\nmax_concurrent_copies_per_session=5\n{lun}"),
            "server.max_concurrent_copies_per_session",
            "between",
        );
        assert_eq!(c.targets[0].luns[0].initiators.as_deref(), Some(&["iqn.2026-11.a.host".to_string()][..]));
    }

    /// `write_buffer_per_session`, `read_buffer_limit`,
    /// `read_buffer_per_session`: defaults, values, and refusals naming the
    /// key.
    #[test]
    fn per_session_buffer_shares_and_the_read_buffer() {
        let lun = "[[target]]\niqn=\"iqn.2026-11.a.b\"\n[[target.lun]]\nid=0\npath=\"/tmp/oxcopy-none-a\"\nsize=\"1M\"";
        let c = cfg(lun).unwrap();
        assert_eq!(
            (c.write_buffer_per_session, c.read_buffer_limit, c.read_buffer_per_session),
            (512 << 20, 1 << 30, 512 << 20),
            "half of the daemon-wide bounds by default"
        );
        let d = Config::embedded_default(vec![], "/tmp/x".into());
        assert_eq!(
            (d.write_buffer_per_session, d.read_buffer_per_session),
            (c.write_buffer_per_session, c.read_buffer_per_session)
        );
        // Half of a small bound would be less than one largest write: the
        // share is one largest write then.
        let c = cfg(&format!("[server]\nwrite_buffer_limit=\"20MiB\"\nread_buffer_limit=\"24MiB\"\n{lun}")).unwrap();
        assert_eq!((c.write_buffer_per_session, c.read_buffer_per_session), (16 << 20, 16 << 20));
        let c = cfg(&format!(
            "[server]\nwrite_buffer_per_session=\"64MiB\"\nread_buffer_limit=\"2GiB\"\nread_buffer_per_session=33554432\n{lun}"
        ))
        .unwrap();
        assert_eq!(
            (c.write_buffer_per_session, c.read_buffer_limit, c.read_buffer_per_session),
            (64 << 20, 2 << 30, 32 << 20)
        );
        let key = "server.write_buffer_per_session";
        expect_err(&format!("[server]\nwrite_buffer_per_session=\"1MiB\"\n{lun}"), key, "16MiB (one largest write)");
        expect_err(&format!("[server]\nwrite_buffer_per_session=\"2GiB\"\n{lun}"), key, "write_buffer_limit");
        expect_err(&format!("[server]\nwrite_buffer_per_session=\"lots\"\n{lun}"), key, "not a size");
        expect_err(&format!("[server]\nread_buffer_limit=\"1MiB\"\n{lun}"), "server.read_buffer_limit", "16MiB");
        expect_err(&format!("[server]\nread_buffer_limit=-1\n{lun}"), "server.read_buffer_limit", "16MiB");
        expect_err(&format!("[server]\nread_buffer_limit=\"2TiB\"\n{lun}"), "server.read_buffer_limit", "1TiB");
        let key = "server.read_buffer_per_session";
        expect_err(&format!("[server]\nread_buffer_per_session=\"8MiB\"\n{lun}"), key, "16MiB (one largest read)");
        expect_err(
            &format!("[server]\nread_buffer_limit=\"32MiB\"\nread_buffer_per_session=\"64MiB\"\n{lun}"),
            key,
            "read_buffer_limit",
        );
    }

    /// `write_data_timeout`: 60 s by default (or `pdu_timeout` if longer),
    /// never shorter than `pdu_timeout`.
    #[test]
    fn write_data_timeout_defaults_and_bounds() {
        let lun = "[[target]]\niqn=\"iqn.2026-11.a.b\"\n[[target.lun]]\nid=0\npath=\"/tmp/oxcopy-none-a\"\nsize=\"1M\"";
        assert_eq!(cfg(lun).unwrap().write_data_timeout_secs, 60);
        assert_eq!(Config::embedded_default(vec![], "/tmp/x".into()).write_data_timeout_secs, 60);
        assert_eq!(cfg(&format!("[server]\nwrite_data_timeout=120\n{lun}")).unwrap().write_data_timeout_secs, 120);
        assert_eq!(cfg(&format!("[server]\npdu_timeout=90\n{lun}")).unwrap().write_data_timeout_secs, 90);
        assert_eq!(
            cfg(&format!("[server]\npdu_timeout=5\nwrite_data_timeout=5\n{lun}")).unwrap().write_data_timeout_secs,
            5
        );
        let key = "server.write_data_timeout";
        expect_err(&format!("[server]\nwrite_data_timeout=20\n{lun}"), key, "between pdu_timeout and 86400");
        expect_err(&format!("[server]\npdu_timeout=100\nwrite_data_timeout=60\n{lun}"), key, "pdu_timeout");
        expect_err(&format!("[server]\nwrite_data_timeout=0\n{lun}"), key, "pdu_timeout");
        expect_err(&format!("[server]\nwrite_data_timeout=100000\n{lun}"), key, "86400");
        expect_err(&format!("[server]\nwrite_data_timeout=-1\n{lun}"), "line", "");
    }

    #[test]
    fn one_file_named_twice_under_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("new/lun0.img");
        let b = dir.path().join("new/sub/../lun0.img");
        let text = format!(
            "[[target]]\niqn=\"iqn.2026-11.a.b\"\n[[target.lun]]\nid=0\npath=\"{}\"\nsize=\"1M\"\n[[target.lun]]\nid=1\npath=\"{}\"\nsize=\"1M\"",
            a.display(),
            b.display()
        );
        let e = cfg(&text).unwrap_err();
        assert!(e.key == "target[0].lun[1].path" && e.problem.contains("already used"), "{e}");
        let c = dir.path().join("new/other/lun0.img");
        assert_ne!(canonical_target(&a), canonical_target(&c));
        assert!(!dir.path().join("new").exists());
    }

    #[test]
    fn size_disagreeing_with_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.img");
        std::fs::write(&p, vec![0u8; 8192]).unwrap();
        let text = format!(
            "[[target]]\niqn=\"iqn.2026-11.a.b\"\n[[target.lun]]\nid=0\npath=\"{}\"\nsize=\"16KiB\"",
            p.display()
        );
        let e = cfg(&text).unwrap_err();
        assert!(e.key.ends_with("size") && e.problem.contains("disagrees"), "{e}");
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 8192);
    }

    #[test]
    fn reload_validation_accepts_a_grow_and_refuses_a_shrink() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.img");
        std::fs::write(&p, vec![0u8; 8192]).unwrap();
        let file = dir.path().join("c.toml");
        let write = |size: &str| {
            let text = format!(
                "[[target]]\niqn=\"iqn.2026-11.a.b\"\n[[target.lun]]\nid=0\npath=\"{}\"\nsize=\"{size}\"",
                p.display()
            );
            std::fs::write(&file, text).unwrap();
        };
        write("16KiB");
        assert_eq!(Config::from_file_for_reload(&file).unwrap().targets[0].luns[0].size, Some(16384));
        assert!(Config::from_file(&file).is_err(), "at start a size must match the file");
        write("4KiB");
        let e = Config::from_file_for_reload(&file).unwrap_err();
        assert!(e.key.ends_with("size") && e.problem.contains("shrinking a LUN is not supported"), "{e}");
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 8192, "validation changes nothing");
    }

    #[test]
    fn luns_on_volumes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let base = format!(
            r#"
[[volume]]
name = "s"
type = "striped"
stripe_size = "64KiB"
members = ["{d}/a.img:1MiB", "{d}/b.img:1MiB"]

[[volume]]
name = "top"
type = "linear"
members = ["volume:s", "{d}/c.img:1MiB"]

[[target]]
iqn = "iqn.2026-11.dev.oxcopy:v"
"#
        );
        let c = cfg(&format!("{base}[[target.lun]]\nid = 0\nvolume = \"top\"\n")).unwrap();
        let l = &c.targets[0].luns[0];
        assert_eq!((l.volume.as_deref(), l.path.as_os_str().is_empty(), l.size), (Some("top"), true, None));
        assert_eq!(c.volumes.len(), 2);
        for (lun, key, words) in [
            ("volume = \"s\"", "target[0].lun[0].volume", "already used by volume 'top'"),
            ("volume = \"nope\"", "target[0].lun[0].volume", "no [[volume]] named"),
            ("volume = \"top\"\nsize = \"1MiB\"", "target[0].lun[0].size", "as large as its volume"),
            ("volume = \"top\"\npath = \"/x.img\"", "target[0].lun[0]", "both path and volume"),
            ("block_size = 512", "target[0].lun[0].path", "a path or a volume"),
            (&format!("path = \"{d}/a.img\""), "target[0].lun[0].path", "already used by volume[0].members[0]"),
        ] {
            let e = cfg(&format!("{base}[[target.lun]]\nid = 0\n{lun}\n")).unwrap_err();
            assert!(e.key == key && e.problem.contains(words), "{lun}: {e}");
        }
        let two = format!("{base}[[target.lun]]\nid = 0\nvolume = \"top\"\n[[target.lun]]\nid = 1\nvolume = \"top\"\n");
        let e = cfg(&two).unwrap_err();
        assert!(e.key == "target[0].lun[1].volume" && e.problem.contains("already used by target[0].lun[0]"), "{e}");
    }

    #[test]
    fn rbd_takeover_only_on_a_writable_rbd_lun() {
        let base = "[server]\nlisten=[\"127.0.0.1:3260\"]\n[[target]]\niqn=\"iqn.2026-12.a.b\"\n[[target.lun]]\nid=0\n";
        let c = cfg(&format!("{base}rbd=\"rbd/x\"\nrbd_takeover=true")).unwrap();
        assert!(c.targets[0].luns[0].rbd.as_ref().unwrap().takeover);
        let c = cfg(&format!("{base}rbd=\"rbd/x\"")).unwrap();
        assert!(!c.targets[0].luns[0].rbd.as_ref().unwrap().takeover, "off by default");
        expect_err(
            &format!("{base}path=\"/tmp/oxcopy-none-t\"\nsize=\"1M\"\nrbd_takeover=true"),
            "rbd_takeover",
            "only for a LUN on an RBD image",
        );
        expect_err(&format!("{base}rbd=\"rbd/x\"\nread_only=true\nrbd_takeover=true"), "rbd_takeover", "read-only");
    }
}
