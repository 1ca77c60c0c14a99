//! The copy-domain key file: 32 random bytes that authenticate every ROD
//! token this daemon issues (HMAC-SHA256, see `oxcopy_copy::token`).
//!
//! By default `<data_dir>/copy-domain.key`, created at first start with mode
//! 0600; `[copy_domain] key_file` points several daemons at one shared key
//! (a later cross-node copy domain). Creation is race-free and crash-safe:
//! the key is written to a private temporary file, fsynced, then
//! hard-linked into place (which fails if another process won the race, in
//! which case its key is read), and the directory is fsynced. An existing
//! key that is not exactly 32 bytes, or that group or others may access,
//! is refused rather than silently replaced.

use oxcopy_copy::token::{CopyDomainKey, KeyError, KeySource, KEY_LEN};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File name of the default key under the data directory.
pub const DEFAULT_KEY_FILE: &str = "copy-domain.key";

/// A copy-domain key kept in a file.
#[derive(Debug, Clone)]
pub struct KeyFile {
    path: PathBuf,
}

impl KeyFile {
    /// The key at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KeyFile { path: path.into() }
    }

    /// `configured` if given (relative paths are taken from `data_dir`), else
    /// `<data_dir>/copy-domain.key`.
    pub fn resolve(data_dir: &Path, configured: Option<&Path>) -> Self {
        match configured {
            Some(p) => KeyFile::new(data_dir.join(p)),
            None => KeyFile::new(data_dir.join(DEFAULT_KEY_FILE)),
        }
    }

    /// Where the key lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: io::Error) -> KeyError {
        KeyError::Io { path: self.path.display().to_string(), source }
    }

    fn read(&self) -> Result<Option<CopyDomainKey>, KeyError> {
        let mut f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        let meta = f.metadata().map_err(|e| self.io(e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::InsecureMode { path: self.path.display().to_string(), mode });
        }
        if meta.len() != KEY_LEN as u64 {
            return Err(KeyError::BadLength { path: self.path.display().to_string(), len: meta.len() });
        }
        let mut k = [0u8; KEY_LEN];
        f.read_exact(&mut k).map_err(|e| self.io(e))?;
        Ok(Some(CopyDomainKey::from_bytes(k)))
    }

    fn create(&self) -> Result<(), KeyError> {
        let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let key = CopyDomainKey::random(&mut rand::rngs::OsRng);
        let result = (|| {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            // The mode above is filtered by the umask; make sure it is exactly 0600.
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
            f.write_all(key.as_bytes())?;
            f.sync_all()?;
            match fs::hard_link(&tmp, &self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            File::open(dir)?.sync_all()
        })();
        let _ = fs::remove_file(&tmp);
        result.map_err(|e| self.io(e))
    }
}

impl KeySource for KeyFile {
    fn load_or_create(&self) -> Result<CopyDomainKey, KeyError> {
        if let Some(k) = self.read()? {
            return Ok(k);
        }
        self.create()?;
        self.read()?.ok_or_else(|| self.io(io::Error::new(io::ErrorKind::NotFound, "key vanished after creation")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_mode_0600_and_stable() {
        let d = tempfile::tempdir().expect("tempdir");
        let kf = KeyFile::resolve(d.path(), None);
        assert_eq!(kf.path(), d.path().join(DEFAULT_KEY_FILE));
        let a = kf.load_or_create().expect("create");
        let meta = fs::metadata(kf.path()).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), KEY_LEN as u64);
        let b = kf.load_or_create().expect("load");
        assert_eq!(a.as_bytes(), b.as_bytes());
        // No temporary files left behind.
        assert_eq!(fs::read_dir(d.path()).expect("ls").count(), 1);
    }

    #[test]
    fn configured_key_file_is_shared() {
        let d = tempfile::tempdir().expect("tempdir");
        let shared = d.path().join("shared.key");
        let a = KeyFile::resolve(&d.path().join("a"), Some(&shared));
        let b = KeyFile::resolve(&d.path().join("b"), Some(&shared));
        assert_eq!(a.load_or_create().expect("a").as_bytes(), b.load_or_create().expect("b").as_bytes());
    }

    #[test]
    fn insecure_or_wrong_length_key_is_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("k");
        fs::write(&p, [1u8; KEY_LEN]).expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(KeyFile::new(&p).load_or_create(), Err(KeyError::InsecureMode { .. })));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(KeyFile::new(&p).load_or_create().expect("ok").as_bytes(), &[1u8; KEY_LEN]);
        fs::write(&p, [1u8; 5]).expect("write");
        assert!(matches!(KeyFile::new(&p).load_or_create(), Err(KeyError::BadLength { len: 5, .. })));
    }
}

/// Default inactivity timeout of a ROD token, seconds.
pub const DEFAULT_INACTIVITY_TIMEOUT_SECS: u32 = 60;
/// Default maximum inactivity timeout a POPULATE TOKEN may ask for, seconds.
pub const DEFAULT_MAX_INACTIVITY_TIMEOUT_SECS: u32 = 3600;
/// Default limit on live ROD tokens.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;
/// Default bound on point-in-time snapshot space, bytes.
pub const DEFAULT_MAX_SNAPSHOT_BYTES: u64 = 64 << 30;

/// Who may use a token (`[copy_domain] token_scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// The token is the capability (SPC, Windows): any initiator that may
    /// write the destination may use it.
    #[default]
    Domain,
    /// The writing initiator must also be allowed on the source's target.
    Initiator,
}

/// `[copy_domain]` as written in the file.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCopyDomain {
    /// Key file; relative to `data_dir`. Default `copy-domain.key`.
    pub key_file: Option<String>,
    /// `"domain"` (default) or `"initiator"`.
    pub token_scope: Option<TokenScope>,
    /// Inactivity timeout when POPULATE TOKEN asks for 0, seconds.
    pub default_inactivity_timeout: Option<i64>,
    /// Largest inactivity timeout accepted, seconds.
    pub max_inactivity_timeout: Option<i64>,
    /// Live ROD tokens at most.
    pub max_tokens: Option<i64>,
    /// Live ROD tokens one initiator may hold at most.
    pub max_tokens_per_initiator: Option<i64>,
    /// Snapshot space the tokens of one initiator may hold at most.
    pub max_snapshot_bytes_per_initiator: Option<crate::size::SizeValue>,
    /// Snapshot space for point-in-time tokens at most (size string or bytes).
    pub max_snapshot_bytes: Option<crate::size::SizeValue>,
    /// Where this node serves the node link ("IP:port").
    pub node_listen: Option<String>,
    /// The node links of the domain ("IP:port"; may include this node's).
    pub nodes: Option<Vec<String>>,
    /// Bound on the bytes per second this node serves to others.
    pub link_max_bytes_per_second: Option<crate::size::SizeValue>,
    /// CRC32C on the DATA frames this node serves from a buffer.
    pub link_data_digest: Option<bool>,
}

/// Nodes of a copy domain at most.
pub const MAX_NODES: usize = 64;

/// Validated `[copy_domain]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyDomainConfig {
    /// Configured key file (`None`: `<data_dir>/copy-domain.key`).
    pub key_file: Option<PathBuf>,
    /// Who may use a token.
    pub token_scope: TokenScope,
    /// Inactivity timeout for INACTIVITY TIMEOUT 0, seconds.
    pub default_inactivity_timeout_secs: u32,
    /// Largest INACTIVITY TIMEOUT accepted, seconds.
    pub max_inactivity_timeout_secs: u32,
    /// Live ROD tokens at most.
    pub max_tokens: u32,
    /// Live ROD tokens one initiator may hold at most (default: half of `max_tokens`).
    pub max_tokens_per_initiator: u32,
    /// Snapshot space at most, bytes.
    pub max_snapshot_bytes: u64,
    /// Snapshot space one initiator's tokens may hold at most (default: half of `max_snapshot_bytes`).
    pub max_snapshot_bytes_per_initiator: u64,
    /// Where this node serves the node link (`None`: it only pulls).
    pub node_listen: Option<std::net::SocketAddr>,
    /// The node links of the domain (this node's own may be among them).
    pub nodes: Vec<std::net::SocketAddr>,
    /// Bound on what this node serves to others, bytes per second.
    pub link_max_bytes_per_second: Option<u64>,
    /// CRC32C on the DATA frames this node serves through a buffer (off by
    /// default, like iSCSI's and NVMe/TCP's data digests: TCP checks them).
    pub link_data_digest: bool,
}

impl CopyDomainConfig {
    /// The other nodes of the domain (the configured ones but this node's own link).
    pub fn peers(&self) -> Vec<std::net::SocketAddr> {
        self.nodes.iter().copied().filter(|a| Some(*a) != self.node_listen).collect()
    }
}

impl Default for CopyDomainConfig {
    fn default() -> Self {
        CopyDomainConfig {
            key_file: None,
            token_scope: TokenScope::Domain,
            default_inactivity_timeout_secs: DEFAULT_INACTIVITY_TIMEOUT_SECS,
            max_inactivity_timeout_secs: DEFAULT_MAX_INACTIVITY_TIMEOUT_SECS,
            max_tokens: DEFAULT_MAX_TOKENS,
            max_tokens_per_initiator: DEFAULT_MAX_TOKENS.div_ceil(2),
            max_snapshot_bytes: DEFAULT_MAX_SNAPSHOT_BYTES,
            max_snapshot_bytes_per_initiator: DEFAULT_MAX_SNAPSHOT_BYTES / 2,
            node_listen: None,
            nodes: Vec::new(),
            link_max_bytes_per_second: None,
            link_data_digest: false,
        }
    }
}

impl CopyDomainConfig {
    /// Validate `[copy_domain]`; on error, `(key, problem)`.
    pub fn from_raw(raw: Option<RawCopyDomain>) -> Result<Self, (String, String)> {
        let d = CopyDomainConfig::default();
        let Some(raw) = raw else { return Ok(d) };
        let secs = |key: &str, v: Option<i64>, default: u32| -> Result<u32, (String, String)> {
            match v {
                None => Ok(default),
                Some(v) => u32::try_from(v)
                    .ok()
                    .filter(|&v| v > 0)
                    .ok_or_else(|| (format!("copy_domain.{key}"), "must be 1..4294967295 seconds".to_string())),
            }
        };
        let default_t =
            secs("default_inactivity_timeout", raw.default_inactivity_timeout, d.default_inactivity_timeout_secs)?;
        let max_t = secs("max_inactivity_timeout", raw.max_inactivity_timeout, d.max_inactivity_timeout_secs)?;
        if default_t > max_t {
            return Err((
                "copy_domain.default_inactivity_timeout".into(),
                format!("{default_t} s exceeds max_inactivity_timeout ({max_t} s)"),
            ));
        }
        let max_tokens = match raw.max_tokens {
            None => d.max_tokens,
            Some(v) => u32::try_from(v)
                .ok()
                .filter(|&v| (1..=1 << 20).contains(&v))
                .ok_or_else(|| ("copy_domain.max_tokens".to_string(), "must be 1..1048576".to_string()))?,
        };
        let max_snapshot_bytes = match raw.max_snapshot_bytes {
            None => d.max_snapshot_bytes,
            Some(crate::size::SizeValue::Int(v)) => u64::try_from(v)
                .map_err(|_| ("copy_domain.max_snapshot_bytes".to_string(), "must not be negative".to_string()))?,
            Some(crate::size::SizeValue::Str(s)) => crate::size::parse_size(&s).ok_or_else(|| {
                ("copy_domain.max_snapshot_bytes".to_string(), format!("{s:?} is not a size like \"64GiB\""))
            })?,
        };
        let max_tokens_per_initiator = match raw.max_tokens_per_initiator {
            None => max_tokens.div_ceil(2),
            Some(v) => u32::try_from(v).ok().filter(|&v| (1..=max_tokens).contains(&v)).ok_or_else(|| {
                ("copy_domain.max_tokens_per_initiator".to_string(), format!("must be 1..{max_tokens} (max_tokens)"))
            })?,
        };
        let max_snapshot_bytes_per_initiator = match raw.max_snapshot_bytes_per_initiator {
            None => max_snapshot_bytes / 2,
            Some(v) => {
                let key = "copy_domain.max_snapshot_bytes_per_initiator";
                let b = match v {
                    crate::size::SizeValue::Int(v) => {
                        u64::try_from(v).map_err(|_| (key.to_string(), "must not be negative".to_string()))?
                    }
                    crate::size::SizeValue::Str(s) => crate::size::parse_size(&s)
                        .ok_or_else(|| (key.to_string(), format!("{s:?} is not a size like \"16GiB\"")))?,
                };
                if b > max_snapshot_bytes {
                    return Err((key.to_string(), "must not exceed max_snapshot_bytes".to_string()));
                }
                b
            }
        };
        let key_file = match raw.key_file {
            None => None,
            Some(s) if s.is_empty() => {
                return Err(("copy_domain.key_file".into(), "must not be empty".into()));
            }
            Some(s) => Some(PathBuf::from(s)),
        };
        let addr = |key: &str, v: &str| -> Result<std::net::SocketAddr, (String, String)> {
            v.parse()
                .map_err(|_| (format!("copy_domain.{key}"), format!("{v:?} is not an address like \"10.0.0.1:3270\"")))
        };
        let node_listen = raw.node_listen.as_deref().map(|v| addr("node_listen", v)).transpose()?;
        let mut nodes = Vec::new();
        for v in raw.nodes.unwrap_or_default() {
            let a = addr("nodes", &v)?;
            if nodes.contains(&a) {
                return Err(("copy_domain.nodes".into(), format!("{a} is listed twice")));
            }
            nodes.push(a);
        }
        if nodes.len() > MAX_NODES {
            return Err(("copy_domain.nodes".into(), format!("{} nodes; at most {MAX_NODES}", nodes.len())));
        }
        let link_max_bytes_per_second = match raw.link_max_bytes_per_second {
            None => None,
            Some(crate::size::SizeValue::Int(v)) => {
                Some(u64::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| {
                    ("copy_domain.link_max_bytes_per_second".to_string(), "must be a positive number".to_string())
                })?)
            }
            Some(crate::size::SizeValue::Str(s)) => Some(crate::size::parse_size(&s).ok_or_else(|| {
                ("copy_domain.link_max_bytes_per_second".to_string(), format!("{s:?} is not a size like \"200MiB\""))
            })?),
        };
        Ok(CopyDomainConfig {
            link_data_digest: raw.link_data_digest.unwrap_or(false),
            node_listen,
            nodes,
            link_max_bytes_per_second,
            key_file,
            token_scope: raw.token_scope.unwrap_or_default(),
            default_inactivity_timeout_secs: default_t,
            max_inactivity_timeout_secs: max_t,
            max_tokens,
            max_tokens_per_initiator,
            max_snapshot_bytes,
            max_snapshot_bytes_per_initiator,
        })
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    fn parse(text: &str) -> Result<CopyDomainConfig, (String, String)> {
        #[derive(serde::Deserialize)]
        struct Wrap {
            copy_domain: Option<RawCopyDomain>,
        }
        let w: Wrap = toml::from_str(text).map_err(|e| ("toml".to_string(), e.to_string()))?;
        CopyDomainConfig::from_raw(w.copy_domain)
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(parse("").expect("empty"), CopyDomainConfig::default());
        let c = parse(
            "[copy_domain]\nkey_file = \"/etc/oxcopy/domain.key\"\ntoken_scope = \"initiator\"\n\
             default_inactivity_timeout = 30\nmax_inactivity_timeout = 600\nmax_tokens = 10\nmax_snapshot_bytes = \"1GiB\"\n",
        )
        .expect("full");
        assert_eq!(c.key_file, Some(PathBuf::from("/etc/oxcopy/domain.key")));
        assert_eq!(c.token_scope, TokenScope::Initiator);
        assert_eq!((c.default_inactivity_timeout_secs, c.max_inactivity_timeout_secs), (30, 600));
        assert_eq!((c.max_tokens, c.max_snapshot_bytes), (10, 1 << 30));
        assert_eq!((c.max_tokens_per_initiator, c.max_snapshot_bytes_per_initiator), (5, 1 << 29), "half by default");
        let c = parse("[copy_domain]\nmax_tokens_per_initiator = 7\nmax_snapshot_bytes_per_initiator = \"1GiB\"\n")
            .expect("shares");
        assert_eq!((c.max_tokens_per_initiator, c.max_snapshot_bytes_per_initiator), (7, 1 << 30));
        assert_eq!((c.node_listen, c.nodes.len(), c.link_max_bytes_per_second), (None, 0, None));
    }

    #[test]
    fn domain_nodes() {
        let c = parse(
            "[copy_domain]\nnode_listen = \"127.0.0.2:7001\"\n\
             nodes = [\"127.0.0.2:7001\", \"127.0.0.3:7001\", \"[::1]:7001\"]\nlink_max_bytes_per_second = \"50MiB\"\n",
        )
        .expect("domain");
        assert_eq!(c.node_listen, Some("127.0.0.2:7001".parse().unwrap()));
        assert_eq!(c.nodes.len(), 3);
        assert_eq!(c.peers(), vec!["127.0.0.3:7001".parse().unwrap(), "[::1]:7001".parse().unwrap()]);
        assert_eq!(c.link_max_bytes_per_second, Some(50 << 20));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("[copy_domain]\ntoken_scope = \"world\"\n", "toml"),
            ("[copy_domain]\nmax_tokens = 0\n", "copy_domain.max_tokens"),
            ("[copy_domain]\ndefault_inactivity_timeout = -1\n", "copy_domain.default_inactivity_timeout"),
            (
                "[copy_domain]\ndefault_inactivity_timeout = 100\nmax_inactivity_timeout = 10\n",
                "copy_domain.default_inactivity_timeout",
            ),
            ("[copy_domain]\nmax_snapshot_bytes = \"lots\"\n", "copy_domain.max_snapshot_bytes"),
            ("[copy_domain]\nkey_file = \"\"\n", "copy_domain.key_file"),
            ("[copy_domain]\nbogus = 1\n", "toml"),
            ("[copy_domain]\nmax_tokens = 4\nmax_tokens_per_initiator = 5\n", "copy_domain.max_tokens_per_initiator"),
            ("[copy_domain]\nmax_tokens_per_initiator = 0\n", "copy_domain.max_tokens_per_initiator"),
            (
                "[copy_domain]\nmax_snapshot_bytes = \"1GiB\"\nmax_snapshot_bytes_per_initiator = \"2GiB\"\n",
                "copy_domain.max_snapshot_bytes_per_initiator",
            ),
            ("[copy_domain]\nnode_listen = \"nowhere\"\n", "copy_domain.node_listen"),
            ("[copy_domain]\nnodes = [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n", "copy_domain.nodes"),
            ("[copy_domain]\nnodes = [\"127.0.0.1\"]\n", "copy_domain.nodes"),
            ("[copy_domain]\nlink_max_bytes_per_second = 0\n", "copy_domain.link_max_bytes_per_second"),
        ] {
            assert_eq!(parse(text).err().map(|e| e.0).as_deref(), Some(key), "{text}");
        }
    }
}
