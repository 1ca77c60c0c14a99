//! A typed builder for `oxcopyd` configuration files: the TOML text of a
//! `[server]` section, `[[volume]]`s, `[[target]]`s with their
//! `[target.chap]` and `[[target.lun]]`s, and `[copy_domain]`. Keys are
//! written in the order they are set; nothing is validated here (that is
//! the daemon's job).
//!
//! ```
//! use oxcopy_testkit::{DaemonConfig, Lun, Target};
//! let toml = DaemonConfig::new("/tmp/x/state")
//!     .server("nop_interval", 0)
//!     .target(Target::new("iqn.2026-11.dev.oxcopy:t").lun(Lun::new(0, "/tmp/x/lun0.img").size("16MiB")))
//!     .to_toml();
//! assert!(toml.contains("[[target.lun]]\nid = 0\npath = \"/tmp/x/lun0.img\"\nsize = \"16MiB\"\n"));
//! ```

use std::fmt::{self, Display, Write as _};
use std::path::{Path, PathBuf};

/// A TOML value: an integer, a boolean, a string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An integer.
    Int(i64),
    /// `true` or `false`.
    Bool(bool),
    /// A string (written quoted and escaped).
    Str(String),
    /// A list of strings.
    List(Vec<String>),
}

impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Int(v.into())
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(v.into())
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(i64::try_from(v).expect("TOML integers are i64"))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v)
    }
}

impl From<&Path> for Value {
    fn from(v: &Path) -> Value {
        Value::Str(v.to_string_lossy().into_owned())
    }
}

impl From<PathBuf> for Value {
    fn from(v: PathBuf) -> Value {
        Value::from(v.as_path())
    }
}

impl From<&[&str]> for Value {
    fn from(v: &[&str]) -> Value {
        Value::List(v.iter().map(|s| s.to_string()).collect())
    }
}

impl From<&[String]> for Value {
    fn from(v: &[String]) -> Value {
        Value::List(v.to_vec())
    }
}

impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Value {
        Value::List(v)
    }
}

/// A TOML basic string: quoted, with `"`, `\` and control characters escaped.
fn quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(q, "\\u{:04X}", u32::from(c));
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

impl Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Str(s) => f.write_str(&quoted(s)),
            Value::List(v) => {
                let items: Vec<String> = v.iter().map(|s| quoted(s)).collect();
                write!(f, "[{}]", items.join(", "))
            }
        }
    }
}

/// `key = value` lines in the order they were set.
#[derive(Debug, Clone, Default)]
struct Keys(Vec<(String, Value)>);

impl Keys {
    fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.0.push((key.to_string(), value.into()));
    }

    /// Set `key`, replacing its value in place if it is already set.
    fn replace(&mut self, key: &str, value: impl Into<Value>) {
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    fn write(&self, out: &mut String) {
        for (k, v) in &self.0 {
            let _ = writeln!(out, "{k} = {v}");
        }
    }
}

/// A whole configuration file.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    server: Keys,
    volumes: Vec<Keys>,
    targets: Vec<Target>,
    copy_domain: Keys,
}

impl DaemonConfig {
    /// `[server]` with `listen = ["127.0.0.1:0"]` (a free loopback port)
    /// and `data_dir`; no targets yet.
    pub fn new(data_dir: impl AsRef<Path>) -> DaemonConfig {
        let mut server = Keys::default();
        server.set("listen", &["127.0.0.1:0"][..]);
        server.set("data_dir", data_dir.as_ref());
        DaemonConfig { server, volumes: Vec::new(), targets: Vec::new(), copy_domain: Keys::default() }
    }

    /// Another `[server]` key (e.g. `nop_interval`, `max_sessions`,
    /// `metrics`, `write_buffer_limit`; not `listen` or `data_dir`, which
    /// [`DaemonConfig::new`] writes).
    pub fn server(mut self, key: &str, value: impl Into<Value>) -> DaemonConfig {
        self.server.set(key, value);
        self
    }

    /// Replace `[server] listen` (default `["127.0.0.1:0"]`), e.g. with
    /// `["127.0.0.3:0"]` for one node of a multi-daemon test.
    pub fn listen(mut self, addrs: &[&str]) -> DaemonConfig {
        self.server.replace("listen", addrs);
        self
    }

    /// Add a `[[volume]]` (written after `[server]`, before the targets):
    /// `kind` is `"linear"`, `"striped"` or `"mirror"`, `stripe_size` a
    /// size string such as `"64KiB"` (striped only), each member
    /// `"PATH:SIZE"` or `"volume:NAME"`. A LUN sits on it with
    /// [`Lun::volume`].
    pub fn volume(mut self, name: &str, kind: &str, stripe_size: Option<&str>, members: &[String]) -> DaemonConfig {
        let mut k = Keys::default();
        k.set("name", name);
        k.set("type", kind);
        if let Some(s) = stripe_size {
            k.set("stripe_size", s);
        }
        k.set("members", members);
        self.volumes.push(k);
        self
    }

    /// Add a `[[target]]`.
    pub fn target(mut self, t: Target) -> DaemonConfig {
        self.targets.push(t);
        self
    }

    /// A `[copy_domain]` key (e.g. `token_scope`, `max_inactivity_timeout`);
    /// the section is written only when it has keys.
    pub fn copy_domain(mut self, key: &str, value: impl Into<Value>) -> DaemonConfig {
        self.copy_domain.set(key, value);
        self
    }

    /// The `[copy_domain]` keys of one node of a multi-node copy domain:
    /// the shared `key_file`, where this node serves the node link
    /// (`node_listen`) and every node of the domain (`nodes`, `IP:port`).
    pub fn domain_node(self, key_file: impl AsRef<Path>, node_listen: &str, nodes: &[String]) -> DaemonConfig {
        self.copy_domain("key_file", key_file.as_ref())
            .copy_domain("node_listen", node_listen)
            .copy_domain("nodes", nodes)
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("[server]\n");
        self.server.write(&mut out);
        for v in &self.volumes {
            out.push_str("\n[[volume]]\n");
            v.write(&mut out);
        }
        for t in &self.targets {
            t.write(&mut out);
        }
        if !self.copy_domain.0.is_empty() {
            out.push_str("\n[copy_domain]\n");
            self.copy_domain.write(&mut out);
        }
        out
    }

    /// Write the TOML text to `path` (panics on failure) and return `path`.
    pub fn write(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        std::fs::write(path, self.to_toml()).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path.to_path_buf()
    }
}

/// A `[[target]]`.
#[derive(Debug, Clone)]
pub struct Target {
    keys: Keys,
    chap: Option<Chap>,
    luns: Vec<Lun>,
}

impl Target {
    /// A target named `iqn`, open to every initiator, without LUNs yet.
    pub fn new(iqn: &str) -> Target {
        let mut keys = Keys::default();
        keys.set("iqn", iqn);
        Target { keys, chap: None, luns: Vec::new() }
    }

    /// `alias`.
    pub fn alias(mut self, alias: &str) -> Target {
        self.keys.set("alias", alias);
        self
    }

    /// `initiators`: the allow-list.
    pub fn initiators(mut self, names: &[&str]) -> Target {
        self.keys.set("initiators", names);
        self
    }

    /// `[target.chap]`.
    pub fn chap(mut self, chap: Chap) -> Target {
        self.chap = Some(chap);
        self
    }

    /// Add a `[[target.lun]]`.
    pub fn lun(mut self, lun: Lun) -> Target {
        self.luns.push(lun);
        self
    }

    fn write(&self, out: &mut String) {
        out.push_str("\n[[target]]\n");
        self.keys.write(out);
        if let Some(c) = &self.chap {
            out.push_str("\n[target.chap]\n");
            c.0.write(out);
        }
        for l in &self.luns {
            out.push_str("\n[[target.lun]]\n");
            l.0.write(out);
        }
    }
}

/// A `[target.chap]` section.
#[derive(Debug, Clone)]
pub struct Chap(Keys);

impl Chap {
    /// One-way CHAP: the initiator's `user` and the file with its secret.
    pub fn new(user: &str, secret_file: impl AsRef<Path>) -> Chap {
        let mut k = Keys::default();
        k.set("user", user);
        k.set("secret_file", secret_file.as_ref());
        Chap(k)
    }

    /// Mutual CHAP: the target's `mutual_user` and its secret file.
    pub fn mutual(mut self, user: &str, secret_file: impl AsRef<Path>) -> Chap {
        self.0.set("mutual_user", user);
        self.0.set("mutual_secret_file", secret_file.as_ref());
        self
    }
}

/// A `[[target.lun]]`.
#[derive(Debug, Clone)]
pub struct Lun(Keys);

impl Lun {
    /// LUN `id` backed by the file at `path`.
    pub fn new(id: u32, path: impl AsRef<Path>) -> Lun {
        let mut k = Keys::default();
        k.set("id", id);
        k.set("path", path.as_ref());
        Lun(k)
    }

    /// LUN `id` on the `[[volume]]` named `name` (no `path`; a volume LUN
    /// has no `size` either: it is as large as its volume).
    pub fn volume(id: u32, name: &str) -> Lun {
        let mut k = Keys::default();
        k.set("id", id);
        k.set("volume", name);
        Lun(k)
    }

    /// LUN `id` on the Ceph RBD image `spec` (`"pool/image"`) of the
    /// cluster `ceph_conf` names (the daemon needs `--features ceph`; with
    /// [`Lun::size`] a missing image is created).
    pub fn rbd(id: u32, spec: &str, ceph_conf: impl AsRef<Path>) -> Lun {
        let mut k = Keys::default();
        k.set("id", id);
        k.set("rbd", spec);
        k.set("ceph_conf", ceph_conf.as_ref());
        Lun(k)
    }

    /// `rbd_timeout`: seconds a cluster operation of an RBD LUN may take.
    pub fn rbd_timeout(mut self, secs: u64) -> Lun {
        self.0.set("rbd_timeout", secs);
        self
    }

    /// `size`: bytes (an integer) or a size string such as `"16MiB"`.
    pub fn size(mut self, size: impl Into<Value>) -> Lun {
        self.0.set("size", size);
        self
    }

    /// `block_size` in bytes.
    pub fn block_size(mut self, bytes: u32) -> Lun {
        self.0.set("block_size", bytes);
        self
    }

    /// `read_only`.
    pub fn read_only(mut self, ro: bool) -> Lun {
        self.0.set("read_only", ro);
        self
    }

    /// `initiators`: the initiators this LUN is visible to.
    pub fn initiators(mut self, names: &[&str]) -> Lun {
        self.0.set("initiators", names);
        self
    }

    /// `third_party_copy` (`false`: no copy manager on this LUN).
    pub fn third_party_copy(mut self, on: bool) -> Lun {
        self.0.set("third_party_copy", on);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_config() {
        let t = DaemonConfig::new("/d/state")
            .server("nop_interval", 0)
            .server("metrics", "127.0.0.1:0")
            .target(
                Target::new("iqn.2026-11.x:a")
                    .alias("a \"b\"")
                    .initiators(&["iqn.2026-11.x:h"])
                    .chap(Chap::new("u", "/d/u.secret").mutual("t", Path::new("/d/t.secret")))
                    .lun(Lun::new(0, "/d/l0.img").size(16u64 << 20).block_size(4096).read_only(true))
                    .lun(
                        Lun::new(1, "/d/l1.img").size("1MiB").initiators(&["iqn.2026-11.x:h"]).third_party_copy(false),
                    ),
            )
            .copy_domain("token_scope", "initiator")
            .to_toml();
        let want = "[server]\nlisten = [\"127.0.0.1:0\"]\ndata_dir = \"/d/state\"\nnop_interval = 0\n\
                    metrics = \"127.0.0.1:0\"\n\n[[target]]\niqn = \"iqn.2026-11.x:a\"\nalias = \"a \\\"b\\\"\"\n\
                    initiators = [\"iqn.2026-11.x:h\"]\n\n[target.chap]\nuser = \"u\"\nsecret_file = \"/d/u.secret\"\n\
                    mutual_user = \"t\"\nmutual_secret_file = \"/d/t.secret\"\n\n[[target.lun]]\nid = 0\n\
                    path = \"/d/l0.img\"\nsize = 16777216\nblock_size = 4096\nread_only = true\n\n[[target.lun]]\n\
                    id = 1\npath = \"/d/l1.img\"\nsize = \"1MiB\"\ninitiators = [\"iqn.2026-11.x:h\"]\n\
                    third_party_copy = false\n\n[copy_domain]\ntoken_scope = \"initiator\"\n";
        assert_eq!(t, want);
    }

    #[test]
    fn rbd_lun() {
        let t = DaemonConfig::new("/d")
            .target(
                Target::new("iqn.2026-11.x:a").lun(Lun::rbd(0, "rbd/img", "/c/ceph.conf").size("8MiB").rbd_timeout(10)),
            )
            .to_toml();
        assert!(
            t.contains("[[target.lun]]\nid = 0\nrbd = \"rbd/img\"\nceph_conf = \"/c/ceph.conf\"\nsize = \"8MiB\"\nrbd_timeout = 10\n"),
            "{t}"
        );
    }

    #[test]
    fn listen_replaced_and_domain_node() {
        let nodes = vec!["127.0.0.2:7001".to_string(), "127.0.0.3:7001".to_string()];
        let t = DaemonConfig::new("/d")
            .listen(&["127.0.0.2:0"])
            .domain_node("/d/k", "127.0.0.2:7001", &nodes)
            .copy_domain("link_max_bytes_per_second", "50MiB")
            .to_toml();
        let want = "[server]\nlisten = [\"127.0.0.2:0\"]\ndata_dir = \"/d\"\n\n[copy_domain]\nkey_file = \"/d/k\"\n\
                    node_listen = \"127.0.0.2:7001\"\nnodes = [\"127.0.0.2:7001\", \"127.0.0.3:7001\"]\n\
                    link_max_bytes_per_second = \"50MiB\"\n";
        assert_eq!(t, want);
    }

    #[test]
    fn volumes_and_a_lun_on_one() {
        let t = DaemonConfig::new("/d")
            .volume("s", "striped", Some("64KiB"), &["/a:1MiB".to_string(), "/b:1MiB".to_string()])
            .volume("top", "linear", None, &["volume:s".to_string()])
            .target(Target::new("iqn.2026-11.x:a").lun(Lun::volume(0, "top").block_size(512)))
            .to_toml();
        let want = "[server]\nlisten = [\"127.0.0.1:0\"]\ndata_dir = \"/d\"\n\n[[volume]]\nname = \"s\"\n\
                    type = \"striped\"\nstripe_size = \"64KiB\"\nmembers = [\"/a:1MiB\", \"/b:1MiB\"]\n\n\
                    [[volume]]\nname = \"top\"\ntype = \"linear\"\nmembers = [\"volume:s\"]\n\n[[target]]\n\
                    iqn = \"iqn.2026-11.x:a\"\n\n[[target.lun]]\nid = 0\nvolume = \"top\"\nblock_size = 512\n";
        assert_eq!(t, want);
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(Value::from("a\\b\n\u{1}").to_string(), "\"a\\\\b\\n\\u0001\"");
    }
}
