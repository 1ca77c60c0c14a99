//! `[[subsystem]]`: NVMe over TCP subsystems in the configuration, checked
//! before anything is opened.
//!
//! ```toml
//! [[subsystem]]
//! nqn = "nqn.2026-12.dev.oxcopy:nvme"
//! listen = ["127.0.0.1:4420"]          # the default
//! hosts = ["nqn.2014-08.org.nvmexpress:uuid:…"]   # optional allow-list
//!
//! [[subsystem.namespace]]
//! nsid = 1
//! path = "/srv/oxcopy/lun0.img"       # the file of an iSCSI LUN: shared
//!
//! [[subsystem.namespace]]
//! nsid = 2
//! path = "/srv/oxcopy/ns2.img"
//! size = "8GiB"                        # created sparse when missing
//! block_size = 4096
//! ```
//!
//! A namespace whose file is also an iSCSI LUN's serves that LUN's logical
//! unit: both protocols share its range locks, its write hook (point-in-time
//! ROD tokens stay point in time under NVMe writes) and its data; its size and
//! block size are the LUN's. Any other file is used by one namespace only.

use crate::size::{parse_size, SizeValue};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Default NVMe/TCP listener.
pub const DEFAULT_NVME_LISTEN: &str = "127.0.0.1:4420";
/// The well-known discovery subsystem NQN.
pub const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";
/// Largest namespace ID accepted in the configuration.
pub const MAX_NSID: u32 = 1024;

/// `[[subsystem]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubsystem {
    pub nqn: String,
    pub listen: Option<Vec<String>>,
    pub hosts: Option<Vec<String>>,
    #[serde(default)]
    pub namespace: Vec<RawNamespace>,
}

/// `[[subsystem.namespace]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNamespace {
    pub nsid: i64,
    pub path: String,
    pub size: Option<SizeValue>,
    pub block_size: Option<i64>,
    pub read_only: Option<bool>,
}

/// A validated subsystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubsystemConfig {
    pub nqn: String,
    pub listen: Vec<SocketAddr>,
    /// Host NQNs admitted; `None` admits every host.
    pub hosts: Option<Vec<String>>,
    pub namespaces: Vec<NamespaceConfig>,
}

/// A validated namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceConfig {
    pub nsid: u32,
    pub path: PathBuf,
    /// Size to create the file with when missing (`None`: the file exists,
    /// or the namespace shares a LUN).
    pub size: Option<u64>,
    pub block_size: u32,
    pub read_only: bool,
    /// The iSCSI LUN (target IQN, LUN id) whose file this is: the namespace
    /// serves that logical unit.
    pub shares_lun: Option<(String, u16)>,
}

/// A LUN file, as the subsystems may share it.
#[derive(Debug, Clone)]
pub struct LunFile {
    pub iqn: String,
    pub id: u16,
    pub block_size: u32,
    pub read_only: bool,
}

/// A `[[subsystem]]` problem: the key and what is wrong (the configuration
/// loader adds the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub problem: String,
}

fn err(key: impl Into<String>, problem: impl Into<String>) -> Problem {
    Problem { key: key.into(), problem: problem.into() }
}

/// Whether `nqn` is an NVMe Qualified Name we accept: `nqn.` then printable
/// ASCII without spaces, at most 223 bytes (NVMe Base 2.0 §4.5).
pub fn valid_nqn(nqn: &str) -> bool {
    nqn.starts_with("nqn.") && (5..=223).contains(&nqn.len()) && nqn.bytes().all(|b| b.is_ascii_graphic())
}

/// Checks the subsystems. `files` holds every file already used (LUNs and
/// volume members, canonical path → key) and gets the namespaces' own files;
/// `lun_files` says which of those are LUN files a namespace may share;
/// `canonical` resolves a path as the rest of the configuration does.
pub fn validate(
    raw: Vec<RawSubsystem>,
    files: &mut HashMap<PathBuf, String>,
    lun_files: &HashMap<PathBuf, LunFile>,
    canonical: fn(&Path) -> PathBuf,
) -> Result<Vec<SubsystemConfig>, Problem> {
    let mut out = Vec::new();
    let mut nqns = HashSet::new();
    // LUNs shared by a namespace (one namespace each).
    let mut shared: HashMap<String, String> = HashMap::new();
    for (si, s) in raw.into_iter().enumerate() {
        let skey = format!("subsystem[{si}]");
        if !valid_nqn(&s.nqn) {
            return Err(err(
                format!("{skey}.nqn"),
                format!("'{}' is not an NVMe qualified name (nqn.yyyy-mm.domain:name, at most 223 bytes)", s.nqn),
            ));
        }
        if s.nqn == DISCOVERY_NQN {
            return Err(err(format!("{skey}.nqn"), "is the discovery subsystem's NQN, which every listener serves"));
        }
        if !nqns.insert(s.nqn.clone()) {
            return Err(err(format!("{skey}.nqn"), format!("duplicate subsystem '{}'", s.nqn)));
        }
        let listen_strs = s.listen.unwrap_or_else(|| vec![DEFAULT_NVME_LISTEN.to_string()]);
        if listen_strs.is_empty() {
            return Err(err(format!("{skey}.listen"), "needs at least one address"));
        }
        let mut listen = Vec::new();
        for (i, l) in listen_strs.iter().enumerate() {
            let a: SocketAddr = l
                .parse()
                .map_err(|_| err(format!("{skey}.listen[{i}]"), format!("'{l}' is not an IP:port address")))?;
            if !listen.contains(&a) {
                listen.push(a);
            }
        }
        if let Some(hosts) = &s.hosts {
            for (i, h) in hosts.iter().enumerate() {
                if !valid_nqn(h) {
                    return Err(err(format!("{skey}.hosts[{i}]"), format!("'{h}' is not an NVMe qualified name")));
                }
            }
        }
        if s.namespace.is_empty() {
            return Err(err(format!("{skey}.namespace"), "a subsystem needs at least one [[subsystem.namespace]]"));
        }
        let mut ids = HashSet::new();
        let mut namespaces = Vec::new();
        for (ni, n) in s.namespace.into_iter().enumerate() {
            let nkey = format!("{skey}.namespace[{ni}]");
            if !(1..=i64::from(MAX_NSID)).contains(&n.nsid) {
                return Err(err(format!("{nkey}.nsid"), format!("{} is outside 1..{MAX_NSID}", n.nsid)));
            }
            let nsid = n.nsid as u32;
            if !ids.insert(nsid) {
                return Err(err(format!("{nkey}.nsid"), format!("duplicate namespace id {nsid} in '{}'", s.nqn)));
            }
            if n.path.is_empty() {
                return Err(err(format!("{nkey}.path"), "is empty"));
            }
            let block_size = match n.block_size {
                None => None,
                Some(512) => Some(512),
                Some(4096) => Some(4096),
                Some(other) => return Err(err(format!("{nkey}.block_size"), format!("{other} is not 512 or 4096"))),
            };
            let size = match &n.size {
                None => None,
                Some(SizeValue::Int(v)) if *v > 0 => Some(*v as u64),
                Some(SizeValue::Int(v)) => {
                    return Err(err(format!("{nkey}.size"), format!("{v} is not a positive size")))
                }
                Some(SizeValue::Str(t)) => Some(
                    parse_size(t)
                        .ok_or_else(|| err(format!("{nkey}.size"), format!("'{t}' is not a size (e.g. \"4GiB\")")))?,
                ),
            };
            let path = PathBuf::from(&n.path);
            let canon = canonical(&path);
            if let Some(lun) = lun_files.get(&canon) {
                // Shared with an iSCSI LUN: its geometry is the LUN's.
                if block_size.is_some_and(|b| b != lun.block_size) {
                    return Err(err(
                        format!("{nkey}.block_size"),
                        format!("the file is LUN {} of {}, whose block size is {}", lun.id, lun.iqn, lun.block_size),
                    ));
                }
                if size.is_some() {
                    return Err(err(
                        format!("{nkey}.size"),
                        format!("the file is LUN {} of {}: the namespace is as large as the LUN", lun.id, lun.iqn),
                    ));
                }
                let key = format!("{}/{}", lun.iqn, lun.id);
                if let Some(other) = shared.insert(key.clone(), nkey.clone()) {
                    return Err(err(format!("{nkey}.path"), format!("LUN {key} is already shared by {other}")));
                }
                namespaces.push(NamespaceConfig {
                    nsid,
                    path,
                    size: None,
                    block_size: lun.block_size,
                    read_only: n.read_only.unwrap_or(false) || lun.read_only,
                    shares_lun: Some((lun.iqn.clone(), lun.id)),
                });
                continue;
            }
            if let Some(other) = files.insert(canon, nkey.clone()) {
                return Err(err(format!("{nkey}.path"), format!("'{}' is already used by {other}", n.path)));
            }
            let block_size = block_size.unwrap_or(512);
            if let Some(sz) = size {
                if sz % u64::from(block_size) != 0 {
                    return Err(err(
                        format!("{nkey}.size"),
                        format!("{sz} bytes is not a multiple of the block size {block_size}"),
                    ));
                }
            }
            match std::fs::metadata(&path) {
                Ok(md) => {
                    if !md.is_file() {
                        return Err(err(format!("{nkey}.path"), format!("'{}' is not a regular file", n.path)));
                    }
                    if size.is_some_and(|sz| sz != md.len()) {
                        return Err(err(
                            format!("{nkey}.size"),
                            format!("disagrees with existing file '{}' of {} bytes", n.path, md.len()),
                        ));
                    }
                    if md.len() == 0 || md.len() % u64::from(block_size) != 0 {
                        return Err(err(
                            format!("{nkey}.path"),
                            format!("existing file of {} bytes is not a positive multiple of {block_size}", md.len()),
                        ));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if size.is_none() {
                        return Err(err(
                            format!("{nkey}.size"),
                            format!("'{}' does not exist, so a size is needed to create it", n.path),
                        ));
                    }
                }
                Err(e) => return Err(err(format!("{nkey}.path"), format!("'{}': {e}", n.path))),
            }
            namespaces.push(NamespaceConfig {
                nsid,
                path,
                size,
                block_size,
                read_only: n.read_only.unwrap_or(false),
                shares_lun: None,
            });
        }
        namespaces.sort_by_key(|n| n.nsid);
        out.push(SubsystemConfig { nqn: s.nqn, listen, hosts: s.hosts, namespaces });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(p: &Path) -> PathBuf {
        p.to_path_buf()
    }

    fn check(text: &str, luns: &[(&str, &str, u16)]) -> Result<Vec<SubsystemConfig>, Problem> {
        #[derive(Deserialize)]
        struct W {
            subsystem: Vec<RawSubsystem>,
        }
        let w: W = toml::from_str(text).expect("toml");
        let mut files = HashMap::new();
        let mut lun_files = HashMap::new();
        for (path, iqn, id) in luns {
            files.insert(PathBuf::from(path), format!("{iqn}/{id}"));
            lun_files.insert(
                PathBuf::from(path),
                LunFile { iqn: iqn.to_string(), id: *id, block_size: 512, read_only: false },
            );
        }
        validate(w.subsystem, &mut files, &lun_files, canon)
    }

    #[test]
    fn a_namespace_shares_a_lun_file_and_takes_its_geometry() {
        let s = check(
            r#"[[subsystem]]
nqn = "nqn.2026-12.dev.oxcopy:a"
[[subsystem.namespace]]
nsid = 3
path = "/x/lun0.img"
[[subsystem.namespace]]
nsid = 1
path = "/nonexistent-oxcopy-test/ns1.img"
size = "1MiB"
block_size = 4096
"#,
            &[("/x/lun0.img", "iqn.2026-11.dev.oxcopy:t", 0)],
        )
        .expect("valid");
        assert_eq!(s[0].listen, vec![DEFAULT_NVME_LISTEN.parse::<SocketAddr>().unwrap()]);
        assert_eq!(s[0].namespaces[0].nsid, 1, "sorted by nsid");
        assert_eq!(s[0].namespaces[0].block_size, 4096);
        assert_eq!(s[0].namespaces[1].shares_lun, Some(("iqn.2026-11.dev.oxcopy:t".into(), 0)));
        assert_eq!(s[0].namespaces[1].block_size, 512);
    }

    #[test]
    fn bad_subsystems_name_the_key() {
        let lun = [("/x/lun0.img", "iqn.2026-11.dev.oxcopy:t", 0)];
        let cases = [
            ("nqn = \"iqn.bad\"\n[[subsystem.namespace]]\nnsid = 1\npath = \"/x/lun0.img\"", "subsystem[0].nqn"),
            (
                "nqn = \"nqn.2014-08.org.nvmexpress.discovery\"\n[[subsystem.namespace]]\nnsid = 1\npath = \"/x/lun0.img\"",
                "subsystem[0].nqn",
            ),
            ("nqn = \"nqn.2026-12.a:b\"", "subsystem[0].namespace"),
            ("nqn = \"nqn.2026-12.a:b\"\n[[subsystem.namespace]]\nnsid = 0\npath = \"/x/lun0.img\"", "subsystem[0].namespace[0].nsid"),
            (
                "nqn = \"nqn.2026-12.a:b\"\nlisten = [\"nowhere\"]\n[[subsystem.namespace]]\nnsid = 1\npath = \"/x/lun0.img\"",
                "subsystem[0].listen[0]",
            ),
            (
                "nqn = \"nqn.2026-12.a:b\"\nhosts = [\"host\"]\n[[subsystem.namespace]]\nnsid = 1\npath = \"/x/lun0.img\"",
                "subsystem[0].hosts[0]",
            ),
            (
                "nqn = \"nqn.2026-12.a:b\"\n[[subsystem.namespace]]\nnsid = 1\npath = \"/x/lun0.img\"\nblock_size = 4096",
                "subsystem[0].namespace[0].block_size",
            ),
            (
                "nqn = \"nqn.2026-12.a:b\"\n[[subsystem.namespace]]\nnsid = 1\npath = \"/x/lun0.img\"\nsize = \"1MiB\"",
                "subsystem[0].namespace[0].size",
            ),
            (
                "nqn = \"nqn.2026-12.a:b\"\n[[subsystem.namespace]]\nnsid = 1\npath = \"/x/lun0.img\"\n[[subsystem.namespace]]\nnsid = 1\npath = \"/nonexistent-oxcopy-test/b\"\nsize = 4096",
                "subsystem[0].namespace[1].nsid",
            ),
            (
                "nqn = \"nqn.2026-12.a:b\"\n[[subsystem.namespace]]\nnsid = 1\npath = \"/x/lun0.img\"\n[[subsystem.namespace]]\nnsid = 2\npath = \"/x/lun0.img\"",
                "subsystem[0].namespace[1].path",
            ),
            (
                "nqn = \"nqn.2026-12.a:b\"\n[[subsystem.namespace]]\nnsid = 1\npath = \"/nonexistent-oxcopy-test/b\"",
                "subsystem[0].namespace[0].size",
            ),
            (
                "nqn = \"nqn.2026-12.a:b\"\n[[subsystem.namespace]]\nnsid = 1\npath = \"/nonexistent-oxcopy-test/b\"\nsize = 1000",
                "subsystem[0].namespace[0].size",
            ),
        ];
        for (body, key) in cases {
            let e = check(&format!("[[subsystem]]\n{body}\n"), &lun).expect_err(body);
            assert_eq!(e.key, key, "{body}: {}", e.problem);
        }
        // Two subsystems with one NQN.
        let two = "[[subsystem]]\nnqn = \"nqn.2026-12.a:b\"\n[[subsystem.namespace]]\nnsid = 1\npath = \"/x/lun0.img\"\n\
                   [[subsystem]]\nnqn = \"nqn.2026-12.a:b\"\n[[subsystem.namespace]]\nnsid = 1\npath = \"/nonexistent-oxcopy-test/c\"\nsize = 4096\n";
        assert_eq!(check(two, &lun).unwrap_err().key, "subsystem[1].nqn");
    }

    #[test]
    fn nqn_rules() {
        assert!(valid_nqn("nqn.2014-08.org.nvmexpress:uuid:0c9a1f4e-7bd2-4a3f-9d61-7d7f4f2d3c11"));
        assert!(!valid_nqn("nqn."));
        assert!(!valid_nqn("nqn.has space"));
        assert!(!valid_nqn(&format!("nqn.{}", "a".repeat(220))));
    }
}
