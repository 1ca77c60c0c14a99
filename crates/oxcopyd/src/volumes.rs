//! `[[volume]]`: stacked volumes in the configuration, checked, then built
//! (files opened or created sparse, volumes below before volumes above).
//!
//! ```toml
//! [[volume]]
//! name = "fast"
//! type = "striped"            # "linear" | "striped" | "mirror"
//! stripe_size = "64KiB"       # striped only: a power of two, 4KiB..1GiB
//! members = ["/srv/a.img:8GiB", "/srv/b.img:8GiB"]
//!
//! [[volume]]
//! name = "all"
//! type = "linear"
//! members = ["volume:fast", "/srv/c.img:4GiB"]
//!
//! [[target.lun]]
//! id = 0
//! volume = "all"
//! ```
//!
//! A member is `PATH:SIZE` (the first SIZE bytes of a file, created sparse
//! when missing) or `volume:NAME`. A volume is used once (by one LUN or as
//! one member), a file once (by one LUN or one member), and volumes do not
//! form cycles.

use crate::size::{parse_size, SizeValue};
use anyhow::{bail, Context, Result};
use oxcopy_storage::{FileStorage, OpenOptions, Storage};
use oxcopy_volume::{Member, Volume};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

/// `[[volume]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVolume {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub stripe_size: Option<SizeValue>,
    pub members: Vec<String>,
}

/// A validated volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeConfig {
    pub name: String,
    pub kind: VolumeKind,
    pub members: Vec<MemberConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    Linear,
    Striped { stripe: u64 },
    Mirror,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberConfig {
    /// The first `size` bytes of a file (created sparse if missing).
    File { path: PathBuf, size: u64 },
    /// Another volume.
    Volume(String),
}

/// A `[[volume]]` problem: the key and what is wrong (the configuration
/// loader adds the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub problem: String,
}

fn err(key: impl Into<String>, problem: impl Into<String>) -> Problem {
    Problem { key: key.into(), problem: problem.into() }
}

/// Longest volume name.
const MAX_NAME: usize = 64;
/// Most members of one volume.
const MAX_MEMBERS: usize = 64;
/// Deepest stack.
const MAX_DEPTH: usize = 8;

/// Check `[[volume]]`s: names, types, stripe sizes, members (each file
/// recorded in `files`, each volume used once), no cycles, bounded depth.
pub fn validate(
    raw: Vec<RawVolume>,
    files: &mut HashMap<PathBuf, String>,
    canonical: impl Fn(&std::path::Path) -> PathBuf,
) -> Result<Vec<VolumeConfig>, Problem> {
    let mut out: Vec<VolumeConfig> = Vec::new();
    let names: HashSet<String> = raw.iter().map(|v| v.name.clone()).collect();
    let mut used: HashMap<String, String> = HashMap::new();
    for (vi, v) in raw.into_iter().enumerate() {
        let key = format!("volume[{vi}]");
        let name_ok = !v.name.is_empty()
            && v.name.len() <= MAX_NAME
            && v.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            return Err(err(format!("{key}.name"), format!("'{}' is not 1..{MAX_NAME} of [A-Za-z0-9-_.]", v.name)));
        }
        if out.iter().any(|o| o.name == v.name) {
            return Err(err(format!("{key}.name"), format!("duplicate volume name '{}'", v.name)));
        }
        let kind = match (v.kind.as_str(), &v.stripe_size) {
            ("linear", None) => VolumeKind::Linear,
            ("mirror", None) => VolumeKind::Mirror,
            ("striped", Some(s)) => {
                let stripe = match s {
                    SizeValue::Int(n) if *n > 0 => *n as u64,
                    SizeValue::Str(s) => parse_size(s).unwrap_or(0),
                    _ => 0,
                };
                if !stripe.is_power_of_two() || !(4096..=1 << 30).contains(&stripe) {
                    return Err(err(format!("{key}.stripe_size"), "must be a power of two from 4KiB to 1GiB"));
                }
                VolumeKind::Striped { stripe }
            }
            ("striped", None) => return Err(err(format!("{key}.stripe_size"), "a striped volume needs one")),
            ("linear" | "mirror", Some(_)) => {
                return Err(err(format!("{key}.stripe_size"), "only a striped volume has a stripe size"))
            }
            (other, _) => {
                return Err(err(format!("{key}.type"), format!("'{other}' is not linear, striped or mirror")))
            }
        };
        let min = if kind == VolumeKind::Linear { 1 } else { 2 };
        if v.members.len() < min || v.members.len() > MAX_MEMBERS {
            return Err(err(format!("{key}.members"), format!("needs {min}..{MAX_MEMBERS} members")));
        }
        let mut members = Vec::new();
        for (mi, m) in v.members.iter().enumerate() {
            let mkey = format!("{key}.members[{mi}]");
            if let Some(name) = m.strip_prefix("volume:") {
                if !names.contains(name) {
                    return Err(err(mkey, format!("no [[volume]] named '{name}'")));
                }
                if name == v.name {
                    return Err(err(mkey, "a volume cannot contain itself"));
                }
                if let Some(other) = used.insert(name.to_string(), mkey.clone()) {
                    return Err(err(mkey, format!("volume '{name}' is already used by {other}")));
                }
                members.push(MemberConfig::Volume(name.to_string()));
                continue;
            }
            let Some((path, size)) = m.rsplit_once(':').filter(|(p, _)| !p.is_empty()) else {
                return Err(err(mkey, format!("'{m}' is neither PATH:SIZE nor volume:NAME")));
            };
            let size = parse_size(size)
                .filter(|s| *s > 0 && s % 4096 == 0)
                .ok_or_else(|| err(&mkey, format!("'{size}' is not a size that is a multiple of 4KiB")))?;
            let path = PathBuf::from(path);
            if let Some(other) = files.insert(canonical(&path), mkey.clone()) {
                return Err(err(mkey, format!("'{}' is already used by {other}", path.display())));
            }
            if let Ok(md) = std::fs::metadata(&path) {
                if !md.is_file() {
                    return Err(err(mkey, format!("'{}' is not a regular file", path.display())));
                }
                if md.len() < size {
                    return Err(err(
                        mkey,
                        format!("'{}' holds {} bytes, fewer than the {size} asked for", path.display(), md.len()),
                    ));
                }
            }
            members.push(MemberConfig::File { path, size });
        }
        out.push(VolumeConfig { name: v.name, kind, members });
    }
    // No cycles, bounded depth: every volume's depth is finite.
    for v in &out {
        if depth(&out, &v.name, 0).is_none() {
            return Err(err(
                "volume",
                format!(
                    "volume '{}' contains itself through other volumes, or is stacked deeper than {MAX_DEPTH}",
                    v.name
                ),
            ));
        }
    }
    Ok(out)
}

/// How deep `name` stacks (`None`: a cycle, or deeper than [`MAX_DEPTH`]).
fn depth(all: &[VolumeConfig], name: &str, level: usize) -> Option<usize> {
    if level > MAX_DEPTH {
        return None;
    }
    let v = all.iter().find(|v| v.name == name)?;
    let mut d = 1;
    for m in &v.members {
        if let MemberConfig::Volume(n) = m {
            d = d.max(1 + depth(all, n, level + 1)?);
        }
    }
    Some(d)
}

/// Open (or create) every volume's files and build the volumes, those
/// below first. `write_behind` is set on every file.
pub fn build(cfgs: &[VolumeConfig], write_behind: Option<u64>) -> Result<HashMap<String, Arc<Volume>>> {
    let mut built: HashMap<String, Arc<Volume>> = HashMap::new();
    // Each pass builds the volumes whose members are built: at most one
    // pass per level (validation bounded the depth).
    for _ in 0..=MAX_DEPTH + 1 {
        for v in cfgs {
            if built.contains_key(&v.name) {
                continue;
            }
            let ready = v.members.iter().all(|m| match m {
                MemberConfig::Volume(n) => built.contains_key(n),
                MemberConfig::File { .. } => true,
            });
            if ready {
                let vol = build_one(v, &built, write_behind).with_context(|| format!("volume '{}'", v.name))?;
                built.insert(v.name.clone(), Arc::new(vol));
            }
        }
    }
    if let Some(v) = cfgs.iter().find(|v| !built.contains_key(&v.name)) {
        bail!("volume '{}' could not be built (a cycle?)", v.name);
    }
    Ok(built)
}

fn build_one(v: &VolumeConfig, built: &HashMap<String, Arc<Volume>>, write_behind: Option<u64>) -> Result<Volume> {
    let mut members = Vec::new();
    for m in &v.members {
        members.push(match m {
            MemberConfig::Volume(n) => {
                let sub = built.get(n).with_context(|| format!("member volume '{n}' missing"))?;
                Member::whole(sub.clone() as Arc<dyn Storage>, format!("volume:{n}"))
            }
            file => open_member(file, write_behind)?,
        });
    }
    let vol = match v.kind {
        VolumeKind::Linear => Volume::linear(&v.name, members),
        VolumeKind::Striped { stripe } => Volume::striped(&v.name, stripe, members),
        VolumeKind::Mirror => Volume::mirror(&v.name, members),
    };
    Ok(vol?)
}

/// A file member opened (created sparse when missing), with write-behind.
pub fn open_member(m: &MemberConfig, write_behind: Option<u64>) -> Result<Member> {
    let MemberConfig::File { path, size } = m else {
        bail!("{m:?} is not a file member");
    };
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let f = FileStorage::open(path, &OpenOptions { create_size: Some(*size), read_only: false })
        .with_context(|| format!("opening member {}", path.display()))?;
    if f.len() < *size {
        bail!("member {} holds {} bytes, fewer than the {size} asked for", path.display(), f.len());
    }
    f.set_write_behind(write_behind);
    Ok(Member { store: Arc::new(f), offset: 0, len: *size, label: path.display().to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str, kind: &str, stripe: Option<&str>, members: &[&str]) -> RawVolume {
        RawVolume {
            name: name.into(),
            kind: kind.into(),
            stripe_size: stripe.map(|s| SizeValue::Str(s.into())),
            members: members.iter().map(|m| m.to_string()).collect(),
        }
    }

    fn check(vs: Vec<RawVolume>) -> Result<Vec<VolumeConfig>, Problem> {
        validate(vs, &mut HashMap::new(), |p| p.to_path_buf())
    }

    #[test]
    fn good_stacks_validate_and_build() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| format!("{}:1MiB", dir.path().join(n).display());
        let vs = check(vec![
            raw("top", "linear", None, &["volume:s", &p("c"), "volume:m"]),
            raw("s", "striped", Some("64KiB"), &[&p("a"), &p("b")]),
            raw("m", "mirror", None, &[&p("d"), &p("e")]),
        ])
        .unwrap();
        assert_eq!(vs[1].kind, VolumeKind::Striped { stripe: 65536 });
        let built = build(&vs, None).unwrap();
        assert_eq!(built["top"].len(), (2 + 1 + 1) << 20);
        assert!(dir.path().join("a").exists(), "members are created sparse");
        assert!(built["top"].describe().contains("volume s (striped"));
    }

    #[test]
    fn bad_stacks_are_refused_naming_the_key() {
        let cases: Vec<(Vec<RawVolume>, &str, &str)> = vec![
            (vec![raw("a b", "linear", None, &["/x:4KiB"])], "volume[0].name", "not 1..64"),
            (vec![raw("a", "raid5", None, &["/x:4KiB"])], "volume[0].type", "not linear"),
            (vec![raw("a", "striped", None, &["/x:4KiB", "/y:4KiB"])], "volume[0].stripe_size", "needs one"),
            (vec![raw("a", "striped", Some("3KiB"), &["/x:4KiB", "/y:4KiB"])], "volume[0].stripe_size", "power of two"),
            (vec![raw("a", "linear", Some("4KiB"), &["/x:4KiB"])], "volume[0].stripe_size", "only a striped"),
            (vec![raw("a", "mirror", None, &["/x:4KiB"])], "volume[0].members", "needs 2"),
            (vec![raw("a", "linear", None, &["/x:1000"])], "volume[0].members[0]", "multiple of 4KiB"),
            (vec![raw("a", "linear", None, &["nosize"])], "volume[0].members[0]", "neither PATH:SIZE"),
            (vec![raw("a", "linear", None, &["volume:zz"])], "volume[0].members[0]", "no [[volume]] named"),
            (vec![raw("a", "linear", None, &["volume:a"])], "volume[0].members[0]", "contain itself"),
            (vec![raw("a", "linear", None, &["/x:4KiB", "/x:4KiB"])], "volume[0].members[1]", "already used"),
            (
                vec![raw("a", "linear", None, &["volume:b"]), raw("b", "linear", None, &["volume:a"])],
                "volume",
                "contains itself",
            ),
            (
                vec![
                    raw("a", "linear", None, &["volume:c"]),
                    raw("b", "linear", None, &["volume:c"]),
                    raw("c", "linear", None, &["/x:4KiB"]),
                ],
                "volume[1].members[0]",
                "already used",
            ),
            (
                vec![raw("a", "linear", None, &["/x:4KiB"]), raw("a", "linear", None, &["/y:4KiB"])],
                "volume[1].name",
                "duplicate",
            ),
        ];
        for (vs, key, words) in cases {
            let e = check(vs).unwrap_err();
            assert!(e.key == key && e.problem.contains(words), "{key} / {words}: got {e:?}");
        }
    }
}
