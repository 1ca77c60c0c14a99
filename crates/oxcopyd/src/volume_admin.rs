//! Layout changes of running volumes (segment moves, mirror legs out and
//! back), made crash-safe by a journal, and the background jobs that carry
//! them out. The admin socket (`server::admin`) is the way in.
//!
//! **Journal**: one TOML file per volume with a change in flight or in
//! effect, `DATA_DIR/volumes/NAME.toml`, replaced atomically (temporary
//! file, fsync, rename, fsync of the directory) and removed when nothing is
//! left in it:
//!
//! ```toml
//! version = 1
//!
//! [[move]]                     # in order; at most one (the last) copying
//! segment = 0
//! from = "/srv/a.img:201326592"  # the segment before the move: PATH:BYTES or volume:NAME
//! to_path = "/srv/new.img"
//! to_size = 201326592
//! done_bytes = 67108864        # copied and flushed so far
//! state = "copying"            # or "switched": the segment lives in to_path
//!
//! [[leg]]                      # mirror legs out of sync
//! index = 1
//! member = "/srv/m1.img:1073741824"
//! state = "failed"             # or "resyncing"
//! ```
//!
//! **At start** ([`plan`], run by the pre-flight checks and again by
//! start-up, before anything is served):
//!
//! - a `switched` move whose segment the configuration still names as
//!   `from` is applied (the segment is served from `to_path`; a warning says
//!   the configuration names the old file); one whose segment the
//!   configuration already names as `to_path:to_size` is obsolete and
//!   dropped from the journal; a `to_path` that is missing refuses the start
//!   (the segment's newest bytes are there).
//! - a `copying` move resumes from `done_bytes` (writes go to both places
//!   during a move, so the copied prefix stays valid across a crash); a
//!   `to_path` that is missing rolls the move back (the old place has every
//!   byte) with a warning.
//! - a `failed` leg stays out; a `resyncing` leg is taken out and resynced
//!   again from the start.
//! - anything else refuses the start like a configuration error (exit 2):
//!   a journal of a volume the configuration does not have, of a segment or
//!   leg it does not have, or whose `from` / `member` is not what the
//!   configuration (after the earlier moves) names. Fix the configuration,
//!   or remove the journal file if its changes are to be forgotten.

use crate::size::parse_size;
use crate::volumes::{MemberConfig, VolumeConfig, VolumeKind};
use anyhow::{anyhow, bail, Context, Result};
use oxcopy_storage::{FileStorage, OpenOptions, Storage, StorageError};
use oxcopy_volume::{Kind, LegState, Member, Volume};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where a move stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MoveState {
    /// Being copied: writes go to both places, reads to `from`.
    Copying,
    /// Copied and flushed: the segment lives at `to`.
    Switched,
}

/// A segment move in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveEntry {
    pub segment: usize,
    /// The segment before the move (`PATH:BYTES` or `volume:NAME`).
    pub from: String,
    pub to_path: PathBuf,
    pub to_size: u64,
    pub done_bytes: u64,
    pub state: MoveState,
}

impl MoveEntry {
    fn to_desc(&self) -> String {
        format!("{}:{}", self.to_path.display(), self.to_size)
    }
}

/// A mirror leg's state in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LegJournalState {
    Failed,
    Resyncing,
}

/// A mirror leg out of sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegEntry {
    pub index: usize,
    /// The leg as configured (`PATH:BYTES` or `volume:NAME`).
    pub member: String,
    pub state: LegJournalState,
}

/// One volume's journal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    #[serde(default = "one")]
    pub version: u32,
    #[serde(default, rename = "move", skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<MoveEntry>,
    #[serde(default, rename = "leg", skip_serializing_if = "Vec::is_empty")]
    pub legs: Vec<LegEntry>,
}

fn one() -> u32 {
    1
}

impl Journal {
    fn is_empty(&self) -> bool {
        self.moves.is_empty() && self.legs.is_empty()
    }

    fn copying(&self) -> Option<&MoveEntry> {
        self.moves.last().filter(|m| m.state == MoveState::Copying)
    }

    fn copying_mut(&mut self) -> Option<&mut MoveEntry> {
        self.moves.last_mut().filter(|m| m.state == MoveState::Copying)
    }

    fn set_leg(&mut self, index: usize, member: String, state: LegJournalState) {
        match self.legs.iter_mut().find(|l| l.index == index) {
            Some(l) => l.state = state,
            None => self.legs.push(LegEntry { index, member, state }),
        }
    }

    fn leg(&self, index: usize) -> Option<LegJournalState> {
        self.legs.iter().find(|l| l.index == index).map(|l| l.state)
    }
}

/// `DATA_DIR/volumes`.
pub fn journal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("volumes")
}

/// The journal file of volume `name` (names are `[A-Za-z0-9-_.]`).
pub fn journal_path(data_dir: &Path, name: &str) -> PathBuf {
    journal_dir(data_dir).join(format!("{name}.toml"))
}

/// Every journal under `data_dir` (read only), by volume name.
pub fn load_all(data_dir: &Path) -> Result<BTreeMap<String, Journal>> {
    let dir = journal_dir(data_dir);
    let mut out = BTreeMap::new();
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(anyhow!(e).context(format!("reading {}", dir.display()))),
    };
    for e in rd {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        let fname = e.file_name().to_string_lossy().into_owned();
        let Some(name) = fname.strip_suffix(".toml").filter(|n| !n.starts_with('.') || *n == "..") else {
            continue; // temporaries (".NAME.toml.tmp") and strangers
        };
        let path = e.path();
        let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let j: Journal = toml::from_str(&text).with_context(|| format!("{}: not a volume journal", path.display()))?;
        if j.version != 1 {
            bail!("{}: journal version {} is not 1", path.display(), j.version);
        }
        out.insert(name.to_string(), j);
    }
    Ok(out)
}

/// Replace volume `name`'s journal atomically (or remove it when empty).
pub fn save(data_dir: &Path, name: &str, j: &Journal) -> io::Result<()> {
    let dir = journal_dir(data_dir);
    let path = journal_path(data_dir, name);
    if j.is_empty() {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
    } else {
        fs::create_dir_all(&dir)?;
        let text = toml::to_string(j).map_err(io::Error::other)?;
        let tmp = dir.join(format!(".{name}.toml.tmp"));
        {
            let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
    }
    File::open(&dir)?.sync_all()
}

/// A configured member as the journal names it.
pub fn member_desc(m: &MemberConfig) -> String {
    match m {
        MemberConfig::File { path, size } => format!("{}:{size}", path.display()),
        MemberConfig::Volume(n) => format!("volume:{n}"),
    }
}

/// A running member as the journal names it.
fn running_desc(m: &Member) -> String {
    if m.label.starts_with("volume:") {
        m.label.clone()
    } else {
        format!("{}:{}", m.label, m.len)
    }
}

/// What start-up does with the journals.
#[derive(Debug, Default)]
pub struct Plan {
    /// Per volume: the journal to keep (entries dropped as obsolete or
    /// rolled back are gone) and the steps, in order.
    pub volumes: BTreeMap<String, (Journal, Vec<Step>)>,
    /// Things to tell the operator.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Serve the segment from `to` (a switched move).
    Switch { segment: usize, to_path: PathBuf, to_size: u64 },
    /// Start the move again and copy from `done` on.
    Resume { segment: usize, to_path: PathBuf, to_size: u64, done: u64 },
    /// Take the leg out.
    FailLeg(usize),
    /// Take the leg out and resync it.
    ResyncLeg(usize),
}

/// Check the journals under `data_dir` against the configured volumes and
/// work out what start-up does (see the module docs); reads only. An error
/// refuses the start.
pub fn plan(data_dir: &Path, cfgs: &[VolumeConfig]) -> Result<Plan, String> {
    let journals = load_all(data_dir).map_err(|e| format!("{e:#}"))?;
    let mut out = Plan::default();
    for (name, j) in journals {
        let path = journal_path(data_dir, &name);
        let shown = path.display();
        let fix = "fix the configuration, or remove the journal file to forget the change";
        let Some(cfg) = cfgs.iter().find(|c| c.name == name) else {
            return Err(format!("{shown}: journal of volume '{name}', which the configuration does not have; {fix}"));
        };
        let mut cur: Vec<String> = cfg.members.iter().map(member_desc).collect();
        let mut keep = Journal { version: 1, ..Journal::default() };
        let mut steps = Vec::new();
        let n = j.moves.len();
        for (i, m) in j.moves.into_iter().enumerate() {
            if cfg.kind != VolumeKind::Linear {
                return Err(format!("{shown}: a segment move of volume '{name}', which is not linear; {fix}"));
            }
            let Some(now) = cur.get(m.segment).cloned() else {
                return Err(format!(
                    "{shown}: a move of segment {} of volume '{name}', which has {} segments; {fix}",
                    m.segment,
                    cur.len()
                ));
            };
            let to_exists = m.to_path.exists();
            match m.state {
                MoveState::Switched if now == m.to_desc() => {
                    out.warnings.push(format!(
                        "volume '{name}': the configuration names {} for segment {}: the move journaled in {shown} is done",
                        m.to_path.display(),
                        m.segment
                    ));
                }
                MoveState::Switched if now == m.from => {
                    if !to_exists {
                        return Err(format!(
                            "{shown}: segment {} of volume '{name}' was moved to {}, which is missing",
                            m.segment,
                            m.to_path.display()
                        ));
                    }
                    out.warnings.push(format!(
                        "volume '{name}': segment {} is served from {} (moved there); the configuration still names {}: \
                         update it to \"{}\"",
                        m.segment,
                        m.to_path.display(),
                        m.from,
                        m.to_desc()
                    ));
                    cur[m.segment] = m.to_desc();
                    steps.push(Step::Switch { segment: m.segment, to_path: m.to_path.clone(), to_size: m.to_size });
                    keep.moves.push(m);
                }
                MoveState::Copying if i + 1 != n => {
                    return Err(format!("{shown}: a copying move that is not the last one; {fix}"));
                }
                MoveState::Copying if now == m.from => {
                    if !to_exists {
                        out.warnings.push(format!(
                            "volume '{name}': the move of segment {} to {} is rolled back (the file is missing); \
                             the segment stays at {}",
                            m.segment,
                            m.to_path.display(),
                            m.from
                        ));
                        continue;
                    }
                    steps.push(Step::Resume {
                        segment: m.segment,
                        to_path: m.to_path.clone(),
                        to_size: m.to_size,
                        done: m.done_bytes.min(m.to_size),
                    });
                    keep.moves.push(m);
                }
                _ => {
                    return Err(format!(
                        "{shown}: segment {} of volume '{name}' was {} from {} to {}, but the configuration names {now}; {fix}",
                        m.segment,
                        if m.state == MoveState::Switched { "moved" } else { "being moved" },
                        m.from,
                        m.to_desc()
                    ))
                }
            }
        }
        for l in j.legs {
            if cfg.kind != VolumeKind::Mirror {
                return Err(format!("{shown}: a leg of volume '{name}', which is not a mirror; {fix}"));
            }
            match cfg.members.get(l.index) {
                Some(m) if member_desc(m) == l.member => {}
                _ => {
                    return Err(format!(
                        "{shown}: leg {} of volume '{name}' ({}) is not what the configuration names; {fix}",
                        l.index, l.member
                    ))
                }
            }
            steps.push(match l.state {
                LegJournalState::Failed => Step::FailLeg(l.index),
                LegJournalState::Resyncing => Step::ResyncLeg(l.index),
            });
            keep.legs.push(l);
        }
        out.volumes.insert(name, (keep, steps));
    }
    Ok(out)
}

/// The files the journaled moves put segments in must not be given to
/// anything else (than that very segment) by the configuration (`files`: see [`config_files`]), at
/// start or by a reload.
pub fn check_files(p: &Plan, files: &HashMap<PathBuf, String>) -> Result<(), String> {
    for (name, (j, _)) in &p.volumes {
        for m in &j.moves {
            // Back to the segment's own configured file: no one else's.
            let own = format!("member {} of volume '{name}'", m.segment);
            if let Some(who) = files.get(&canonical(&m.to_path)).filter(|who| **who != own) {
                return Err(format!(
                    "segment {} of volume '{name}' is {} {} (journaled in volumes/{name}.toml), which the configuration gives to {who}",
                    m.segment,
                    if m.state == MoveState::Switched { "at" } else { "being moved to" },
                    m.to_path.display(),
                ));
            }
        }
    }
    Ok(())
}

/// Open (or create, sparse) the first `size` bytes of `path` as a member.
fn open_target(path: &Path, size: u64, write_behind: Option<u64>) -> Result<Member> {
    let existing = path.exists();
    let opts = OpenOptions { create_size: (!existing).then_some(size), read_only: false };
    let f = FileStorage::open(path, &opts).with_context(|| format!("opening {}", path.display()))?;
    if f.len() < size {
        bail!("{} holds {} bytes, fewer than {size}", path.display(), f.len());
    }
    f.set_write_behind(write_behind);
    Ok(Member { store: Arc::new(f), offset: 0, len: size, label: path.display().to_string() })
}

/// A path made absolute and canonical as far as it exists.
pub fn canonical(path: &Path) -> PathBuf {
    if let Ok(c) = fs::canonicalize(path) {
        return c;
    }
    match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => fs::canonicalize(if p.as_os_str().is_empty() { Path::new(".") } else { p })
            .map(|p| p.join(n))
            .unwrap_or_else(|_| path.to_path_buf()),
        _ => path.to_path_buf(),
    }
}

/// A running segment move.
struct MoveJob {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
    /// Why the copy stopped, when it failed.
    error: Option<String>,
}

/// A running (or failed) resync.
struct LegJob {
    stop: Arc<AtomicBool>,
    started: Instant,
    thread: Option<JoinHandle<()>>,
    error: Option<String>,
    /// Bytes resynced so far, of how many.
    done: Arc<AtomicU64>,
    all: Arc<AtomicU64>,
}

struct Inner {
    journal: Journal,
    mv: Option<MoveJob>,
    legs: BTreeMap<usize, LegJob>,
}

/// One volume's changes.
struct VolState {
    name: String,
    data_dir: PathBuf,
    volume: Arc<Volume>,
    inner: Mutex<Inner>,
    shutdown: Arc<AtomicBool>,
}

impl VolState {
    fn persist(&self, j: &Journal) -> io::Result<()> {
        save(&self.data_dir, &self.name, j)
    }

    /// The volume took mirror leg `leg` out after an I/O error: journal it.
    fn journal_failed_leg(&self, leg: usize) {
        let Some((m, _)) = self.volume.members().get(leg).cloned() else { return };
        let mut g = self.inner.lock();
        if let Some(j) = g.legs.get(&leg) {
            j.stop.store(true, Ordering::SeqCst);
        }
        g.journal.set_leg(leg, running_desc(&m), LegJournalState::Failed);
        if let Err(e) = self.persist(&g.journal) {
            tracing::error!(volume = %self.name, leg, "cannot journal the failed mirror leg: {e}");
        }
    }
}

/// Every volume's changes, and their background jobs.
pub struct VolumeAdmin {
    data_dir: PathBuf,
    write_behind: Option<u64>,
    volumes: BTreeMap<String, Arc<VolState>>,
    shutdown: Arc<AtomicBool>,
}

impl VolumeAdmin {
    /// Apply the journals to the volumes just built (see the module docs)
    /// and start the resumed copies and resyncs.
    pub fn recover(
        data_dir: &Path,
        cfgs: &[VolumeConfig],
        volumes: &HashMap<String, Arc<Volume>>,
        write_behind: Option<u64>,
    ) -> Result<VolumeAdmin> {
        let plan = plan(data_dir, cfgs).map_err(|e| anyhow!(e))?;
        for w in &plan.warnings {
            tracing::warn!("{w}");
        }
        let shutdown = Arc::new(AtomicBool::new(false));
        let mut me = VolumeAdmin {
            data_dir: data_dir.to_path_buf(),
            write_behind,
            volumes: BTreeMap::new(),
            shutdown: shutdown.clone(),
        };
        for (name, v) in volumes {
            me.volumes.insert(
                name.clone(),
                Arc::new(VolState {
                    name: name.clone(),
                    data_dir: data_dir.to_path_buf(),
                    volume: v.clone(),
                    inner: Mutex::new(Inner {
                        journal: Journal { version: 1, ..Default::default() },
                        mv: None,
                        legs: BTreeMap::new(),
                    }),
                    shutdown: shutdown.clone(),
                }),
            );
        }
        // A mirror leg the volume takes out for an I/O error is journaled
        // before that I/O returns: a restart keeps it out.
        for vs in me.volumes.values() {
            if vs.volume.kind() == Kind::Mirror {
                let weak = Arc::downgrade(vs);
                vs.volume.on_leg_failure(Arc::new(move |leg| {
                    if let Some(vs) = weak.upgrade() {
                        vs.journal_failed_leg(leg);
                    }
                }));
            }
        }
        for (name, (journal, steps)) in plan.volumes {
            let vs = me.volumes.get(&name).with_context(|| format!("volume '{name}' was not built"))?.clone();
            let v = &vs.volume;
            let mut g = vs.inner.lock();
            g.journal = journal;
            vs.persist(&g.journal).with_context(|| format!("writing the journal of volume '{name}'"))?;
            for s in steps {
                match s {
                    Step::Switch { segment, to_path, to_size } => {
                        let to = open_target(&to_path, to_size, write_behind)?;
                        v.begin_move(segment, to).with_context(|| format!("volume '{name}'"))?;
                        v.finish_move().with_context(|| format!("volume '{name}'"))?;
                    }
                    Step::Resume { segment, to_path, to_size, done } => {
                        let to = open_target(&to_path, to_size, write_behind)?;
                        v.begin_move(segment, to).with_context(|| format!("volume '{name}'"))?;
                        tracing::info!(volume = %name, segment, to = %to_path.display(), done, "resuming a segment move");
                        g.mv = Some(spawn_move(&vs, done));
                    }
                    Step::FailLeg(leg) => v.fail_leg(leg).with_context(|| format!("volume '{name}' leg {leg}"))?,
                    Step::ResyncLeg(leg) => {
                        v.fail_leg(leg).with_context(|| format!("volume '{name}' leg {leg}"))?;
                        tracing::info!(volume = %name, leg, "resuming the resync of a mirror leg");
                        g.legs.insert(leg, spawn_resync(&vs, leg));
                    }
                }
            }
        }
        Ok(me)
    }

    fn get(&self, name: &str) -> Result<&Arc<VolState>> {
        self.volumes.get(name).ok_or_else(|| anyhow!("no volume '{name}'"))
    }

    /// The files the running volumes use now (members and move targets).
    fn files_in_use(&self) -> HashMap<PathBuf, String> {
        let mut out = HashMap::new();
        for (name, vs) in &self.volumes {
            for (i, (m, _)) in vs.volume.members().iter().enumerate() {
                if !m.label.starts_with("volume:") {
                    out.insert(canonical(Path::new(&m.label)), format!("segment/leg {i} of volume '{name}'"));
                }
            }
            if let Some((seg, to, _)) = vs.volume.moving() {
                out.insert(canonical(Path::new(&to.label)), format!("the move of segment {seg} of volume '{name}'"));
            }
        }
        out
    }

    /// `volume list` / `volume status NAME`.
    pub fn status(&self, name: Option<&str>) -> Result<String> {
        let mut out = String::new();
        let list: Vec<(&String, &Arc<VolState>)> = match name {
            Some(n) => vec![self.volumes.get_key_value(n).ok_or_else(|| anyhow!("no volume '{n}'"))?],
            None => self.volumes.iter().collect(),
        };
        for (n, vs) in list {
            out.push_str(&vs.volume.describe());
            let g = vs.inner.lock();
            if let (Some((seg, to, len)), Some(e)) = (vs.volume.moving(), g.journal.copying()) {
                let done = g.mv.as_ref().map_or(e.done_bytes, |j| j.done.load(Ordering::Relaxed)).min(len);
                let pct = if len == 0 { 100.0 } else { done as f64 * 100.0 / len as f64 };
                let _ = write!(out, "  move: segment {seg} → {}, {done} of {len} bytes ({pct:.1}%)", to.label);
                match g.mv.as_ref().and_then(|j| j.error.as_ref()) {
                    Some(err) => {
                        let _ = writeln!(out, ", FAILED: {err} (volume abandon {n}, or restart the daemon to retry)");
                    }
                    None => out.push('\n'),
                }
            }
            for m in g.journal.moves.iter().filter(|m| m.state == MoveState::Switched) {
                let _ = writeln!(
                    out,
                    "  moved: segment {} from {} to {} (journaled until the configuration names \"{}\")",
                    m.segment,
                    m.from,
                    m.to_path.display(),
                    m.to_desc()
                );
            }
            for (leg, j) in &g.legs {
                match &j.error {
                    Some(e) => {
                        let _ = writeln!(out, "  resync: leg {leg} FAILED: {e}");
                    }
                    None => {
                        let (done, all) = (j.done.load(Ordering::Relaxed), j.all.load(Ordering::Relaxed));
                        let pct = if all == 0 { 100.0 } else { done as f64 * 100.0 / all as f64 };
                        let _ = writeln!(
                            out,
                            "  resync: leg {leg}, {done} of {all} bytes ({pct:.1}%), running for {} s",
                            j.started.elapsed().as_secs()
                        );
                    }
                }
            }
        }
        Ok(out)
    }

    /// `volume move NAME SEGMENT PATH:SIZE`: journal, begin, copy in the
    /// background. `config_files`: every file the running configuration
    /// names (LUNs and volume members), canonical, with who uses it.
    pub fn start_move(
        &self,
        name: &str,
        segment: usize,
        to_path: &Path,
        to_size: u64,
        config_files: &HashMap<PathBuf, String>,
    ) -> Result<String> {
        let vs = self.get(name)?;
        let v = &vs.volume;
        if v.kind() != Kind::Linear {
            bail!("volume '{name}' is {}, not linear: only segments of linear volumes move", v.kind());
        }
        let members = v.members();
        let Some((seg, _)) = members.get(segment) else {
            bail!("volume '{name}' has no segment {segment} (it has {}: 0..{})", members.len(), members.len() - 1);
        };
        if to_size != seg.len {
            bail!("segment {segment} of volume '{name}' holds {} bytes, not {to_size}", seg.len);
        }
        if !to_path.is_absolute() {
            bail!("{}: the new place must be an absolute path", to_path.display());
        }
        let c = canonical(to_path);
        if !seg.label.starts_with("volume:") && canonical(Path::new(&seg.label)) == c {
            bail!("{} is segment {segment}'s own file", to_path.display());
        }
        // The configured file of this very segment, which the segment was
        // moved away from, may take it back (the journal entry then goes).
        let own_configured = format!("member {segment} of volume '{name}'");
        if let Some(who) = config_files.get(&c).filter(|who| **who != own_configured) {
            bail!("{} is used by {who}", to_path.display());
        }
        if let Some(who) = self.files_in_use().get(&c) {
            bail!("{} is used by {who}", to_path.display());
        }
        if c.is_dir() {
            bail!("{} is a directory", to_path.display());
        }
        let mut g = vs.inner.lock();
        if let Some((s, to, _)) = v.moving() {
            bail!(
                "a segment move is already running on volume '{name}' (segment {s} → {}); wait for it or abandon it",
                to.label
            );
        }
        if let Some(m) = g.journal.copying() {
            bail!("a segment move is already running on volume '{name}' (segment {})", m.segment);
        }
        let to = open_target(to_path, to_size, self.write_behind)?;
        let entry = MoveEntry {
            segment,
            from: running_desc(seg),
            to_path: to_path.to_path_buf(),
            to_size,
            done_bytes: 0,
            state: MoveState::Copying,
        };
        g.journal.moves.push(entry);
        if let Err(e) = vs.persist(&g.journal) {
            g.journal.moves.pop();
            bail!("writing the journal of volume '{name}': {e}");
        }
        if let Err(e) = v.begin_move(segment, to) {
            g.journal.moves.pop();
            let _ = vs.persist(&g.journal);
            bail!("volume '{name}': {e}");
        }
        g.mv = Some(spawn_move(vs, 0));
        Ok(format!("moving segment {segment} of volume '{name}' to {} ({to_size} bytes)\n", to_path.display()))
    }

    /// `volume abandon NAME`: stop a move not yet switched.
    pub fn abandon(&self, name: &str) -> Result<String> {
        let vs = self.get(name)?;
        let job = {
            let mut g = vs.inner.lock();
            if g.journal.copying().is_none() {
                if g.journal.moves.last().is_some_and(|m| m.state == MoveState::Switched)
                    && vs.volume.moving().is_some()
                {
                    bail!("the move on volume '{name}' has already switched to its new place");
                }
                bail!("no segment move is running on volume '{name}'");
            }
            let job = g.mv.take();
            if let Some(j) = &job {
                j.stop.store(true, Ordering::SeqCst);
            }
            job
        };
        if let Some(t) = job.and_then(|j| j.thread) {
            let _ = t.join();
        }
        let mut g = vs.inner.lock();
        let _ = vs.volume.abandon_move();
        let m = if g.journal.copying().is_some() { g.journal.moves.pop() } else { None };
        vs.persist(&g.journal).with_context(|| format!("writing the journal of volume '{name}'"))?;
        Ok(match m {
            Some(m) => {
                format!("abandoned the move of segment {} of volume '{name}' to {}\n", m.segment, m.to_path.display())
            }
            None => format!("no move left on volume '{name}'\n"),
        })
    }

    /// `volume leg NAME INDEX fail`.
    pub fn fail_leg(&self, name: &str, leg: usize) -> Result<String> {
        let (vs, member) = self.mirror_leg(name, leg)?;
        let mut g = vs.inner.lock();
        let st = vs.volume.members()[leg].1;
        if st == LegState::Failed {
            bail!("leg {leg} of volume '{name}' is already out");
        }
        if let Some(j) = g.legs.get(&leg) {
            j.stop.store(true, Ordering::SeqCst);
        }
        let before = g.journal.clone();
        g.journal.set_leg(leg, member, LegJournalState::Failed);
        vs.persist(&g.journal).with_context(|| format!("writing the journal of volume '{name}'"))?;
        if let Err(e) = vs.volume.fail_leg(leg) {
            g.journal = before;
            let _ = vs.persist(&g.journal);
            bail!("volume '{name}': {e}");
        }
        Ok(format!("leg {leg} of volume '{name}' is out\n"))
    }

    /// `volume leg NAME INDEX restore`.
    pub fn restore_leg(&self, name: &str, leg: usize) -> Result<String> {
        let (vs, member) = self.mirror_leg(name, leg)?;
        let mut g = vs.inner.lock();
        match vs.volume.members()[leg].1 {
            LegState::InSync => bail!("leg {leg} of volume '{name}' is in sync"),
            LegState::Resyncing => bail!("leg {leg} of volume '{name}' is already resyncing"),
            LegState::Failed => {}
        }
        if g.legs.get(&leg).is_some_and(|j| j.thread.as_ref().is_some_and(|t| !t.is_finished())) {
            bail!("the last resync of leg {leg} of volume '{name}' is still stopping; try again");
        }
        g.journal.set_leg(leg, member, LegJournalState::Resyncing);
        vs.persist(&g.journal).with_context(|| format!("writing the journal of volume '{name}'"))?;
        g.legs.insert(leg, spawn_resync(vs, leg));
        Ok(format!("resyncing leg {leg} of volume '{name}'\n"))
    }

    fn mirror_leg(&self, name: &str, leg: usize) -> Result<(&Arc<VolState>, String)> {
        let vs = self.get(name)?;
        if vs.volume.kind() != Kind::Mirror {
            bail!("volume '{name}' is {}, not a mirror", vs.volume.kind());
        }
        let members = vs.volume.members();
        let Some((m, _)) = members.get(leg) else {
            bail!("volume '{name}' has no leg {leg} (it has {})", members.len());
        };
        Ok((vs, running_desc(m)))
    }

    /// Stop every background job (their journals stay, so the next start
    /// resumes them); waits for them at most `grace`.
    pub fn shutdown(&self, grace: Duration) {
        self.shutdown.store(true, Ordering::SeqCst);
        let mut threads = Vec::new();
        for vs in self.volumes.values() {
            let mut g = vs.inner.lock();
            if let Some(j) = g.mv.as_mut() {
                j.stop.store(true, Ordering::SeqCst);
                threads.extend(j.thread.take());
            }
            for j in g.legs.values_mut() {
                j.stop.store(true, Ordering::SeqCst);
                threads.extend(j.thread.take());
            }
        }
        let deadline = Instant::now() + grace;
        for t in threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }

    /// The data directory the journals live in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

/// Start the background copy of `vs`'s move from byte `from`.
fn spawn_move(vs: &Arc<VolState>, from: u64) -> MoveJob {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(from));
    let (vs2, stop2, done2) = (vs.clone(), stop.clone(), done.clone());
    let thread = std::thread::Builder::new()
        .name(format!("move-{}", vs.name))
        .spawn(move || run_move(&vs2, from, &stop2, &done2))
        .expect("spawn a thread");
    MoveJob { stop, done, thread: Some(thread), error: None }
}

fn run_move(vs: &Arc<VolState>, from: u64, stop: &AtomicBool, done: &AtomicU64) {
    let Some((segment, to, _)) = vs.volume.moving() else { return };
    let stopped = || stop.load(Ordering::SeqCst) || vs.shutdown.load(Ordering::SeqCst);
    let mut progress = |n: u64| -> oxcopy_storage::Result<()> {
        // What the journal says is copied must be on disk at the new place.
        to.store.flush()?;
        let mut g = vs.inner.lock();
        if let Some(m) = g.journal.copying_mut() {
            m.done_bytes = n;
        }
        vs.persist(&g.journal).map_err(|e| StorageError::io("writing the volume journal", e))?;
        drop(g);
        done.store(n, Ordering::Relaxed);
        if let Some(d) = test_chunk_delay() {
            let until = Instant::now() + d;
            while Instant::now() < until && !stopped() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    };
    let fail = |e: String| {
        tracing::error!(volume = %vs.name, segment, "segment move failed: {e}");
        if let Some(j) = vs.inner.lock().mv.as_mut() {
            j.error = Some(e);
        }
    };
    match vs.volume.copy_move(from, &mut progress, &stopped) {
        Err(_) if stopped() => {
            tracing::info!(volume = %vs.name, segment, "segment move stopped");
            return;
        }
        Err(e) => return fail(e.to_string()),
        Ok(_) => {}
    }
    if let Err(e) = to.store.flush() {
        return fail(e.to_string());
    }
    {
        let mut g = vs.inner.lock();
        if stopped() {
            return;
        }
        let Some(m) = g.journal.copying_mut() else { return };
        m.state = MoveState::Switched;
        m.done_bytes = m.to_size;
        if let Err(e) = vs.persist(&g.journal) {
            if let Some(m) = g.journal.moves.last_mut() {
                m.state = MoveState::Copying;
            }
            drop(g);
            return fail(format!("writing the volume journal: {e}"));
        }
    }
    if let Err(e) = vs.volume.finish_move() {
        return fail(e.to_string());
    }
    let mut g = vs.inner.lock();
    // An earlier move of the same segment and this one are one move from
    // the configured place to the newest one (none if that is back where
    // it started).
    let last = g.journal.moves.pop().expect("the switched move");
    if let Some(i) = g.journal.moves.iter().position(|m| m.segment == last.segment) {
        let first = &mut g.journal.moves[i];
        first.to_path = last.to_path.clone();
        first.to_size = last.to_size;
        if first.from == first.to_desc() {
            g.journal.moves.remove(i);
        }
    } else {
        g.journal.moves.push(last.clone());
    }
    if let Err(e) = vs.persist(&g.journal) {
        tracing::error!(volume = %vs.name, "writing the volume journal: {e}");
    }
    g.mv = None;
    tracing::info!(
        volume = %vs.name,
        segment,
        to = %last.to_path.display(),
        "segment move switched; update the configuration to name \"{}\"",
        last.to_desc()
    );
}

/// For tests that act in the middle of a move: a pause after each copied
/// chunk (milliseconds in `OXCOPYD_TEST_MOVE_CHUNK_DELAY_MS`).
fn test_chunk_delay() -> Option<Duration> {
    std::env::var("OXCOPYD_TEST_MOVE_CHUNK_DELAY_MS").ok()?.parse().ok().map(Duration::from_millis)
}

/// Start resyncing leg `leg` of `vs` in the background.
fn spawn_resync(vs: &Arc<VolState>, leg: usize) -> LegJob {
    let stop = Arc::new(AtomicBool::new(false));
    let (done, all) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(vs.volume.len())));
    let (vs2, stop2, done2, all2) = (vs.clone(), stop.clone(), done.clone(), all.clone());
    let thread = std::thread::Builder::new()
        .name(format!("resync-{}-{leg}", vs.name))
        .spawn(move || {
            let stopped = || stop2.load(Ordering::SeqCst) || vs2.shutdown.load(Ordering::SeqCst);
            let r = vs2.volume.resync_leg_with_progress(leg, &stopped, &mut |done, all| {
                done2.store(done, Ordering::Relaxed);
                all2.store(all, Ordering::Relaxed);
            });
            let mut g = vs2.inner.lock();
            match r {
                Ok(rep) => {
                    tracing::info!(volume = %vs2.name, leg, bytes = rep.total(), "mirror leg resynced");
                    if g.journal.leg(leg) == Some(LegJournalState::Resyncing) {
                        g.journal.legs.retain(|l| l.index != leg);
                        if let Err(e) = vs2.persist(&g.journal) {
                            tracing::error!(volume = %vs2.name, "writing the volume journal: {e}");
                        }
                    }
                    g.legs.remove(&leg);
                }
                // Shutting down: the journal says resyncing, the next
                // start resyncs again. Failed by an admin: journaled so.
                Err(_) if stopped() => {
                    if !vs2.shutdown.load(Ordering::SeqCst) {
                        g.legs.remove(&leg);
                    }
                }
                Err(e) => {
                    tracing::error!(volume = %vs2.name, leg, "mirror leg resync failed: {e}");
                    if g.journal.leg(leg) == Some(LegJournalState::Resyncing) {
                        if let Some(l) = g.journal.legs.iter_mut().find(|l| l.index == leg) {
                            l.state = LegJournalState::Failed;
                        }
                        let _ = vs2.persist(&g.journal);
                    }
                    if let Some(j) = g.legs.get_mut(&leg) {
                        j.error = Some(e.to_string());
                    }
                }
            }
        })
        .expect("spawn a thread");
    LegJob { stop, started: Instant::now(), thread: Some(thread), error: None, done, all }
}

/// `PATH:SIZE` of a request.
pub fn parse_place(s: &str) -> Result<(PathBuf, u64)> {
    let (p, size) =
        s.rsplit_once(':').filter(|(p, _)| !p.is_empty()).ok_or_else(|| anyhow!("'{s}' is not PATH:SIZE"))?;
    let size = parse_size(size).filter(|s| *s > 0).ok_or_else(|| anyhow!("'{size}' is not a size"))?;
    Ok((PathBuf::from(p), size))
}

/// Every file the configuration names (LUN files and volume members),
/// canonical, with who uses it.
pub fn config_files(cfg: &crate::config::Config) -> HashMap<PathBuf, String> {
    let mut out = HashMap::new();
    for t in &cfg.targets {
        for l in t.luns.iter().filter(|l| l.volume.is_none()) {
            out.insert(canonical(&l.path), format!("LUN {} of {}", l.id, t.iqn));
        }
    }
    for v in &cfg.volumes {
        for (i, m) in v.members.iter().enumerate() {
            if let MemberConfig::File { path, .. } = m {
                out.insert(canonical(path), format!("member {i} of volume '{}'", v.name));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path) -> Vec<VolumeConfig> {
        vec![VolumeConfig {
            name: "lin".into(),
            kind: VolumeKind::Linear,
            members: vec![
                MemberConfig::File { path: dir.join("a.img"), size: 1 << 20 },
                MemberConfig::File { path: dir.join("b.img"), size: 1 << 20 },
            ],
        }]
    }

    fn mv(dir: &Path, from: &str, to: &str, state: MoveState) -> MoveEntry {
        MoveEntry {
            segment: 0,
            from: format!("{}:{}", dir.join(from).display(), 1 << 20),
            to_path: dir.join(to),
            to_size: 1 << 20,
            done_bytes: 0,
            state,
        }
    }

    #[test]
    fn journal_round_trips_and_empty_removes() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal {
            version: 1,
            moves: vec![mv(dir.path(), "a.img", "c.img", MoveState::Copying)],
            legs: vec![LegEntry { index: 1, member: "/x:4096".into(), state: LegJournalState::Resyncing }],
        };
        save(dir.path(), "lin", &j).unwrap();
        let text = fs::read_to_string(journal_path(dir.path(), "lin")).unwrap();
        assert!(
            text.contains("[[move]]") && text.contains("state = \"copying\"") && text.contains("[[leg]]"),
            "{text}"
        );
        assert_eq!(load_all(dir.path()).unwrap()["lin"], j);
        save(dir.path(), "lin", &Journal::default()).unwrap();
        assert!(load_all(dir.path()).unwrap().is_empty());
        assert!(fs::read_dir(journal_dir(dir.path())).unwrap().next().is_none(), "no temporaries left");
    }

    #[test]
    fn plan_applies_drops_rolls_back_or_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("c.img"), b"").unwrap();
        let put = |m: Vec<MoveEntry>| {
            save(d, "lin", &Journal { version: 1, moves: m, legs: vec![] }).unwrap();
        };
        // Switched, config still names from: applied.
        put(vec![mv(d, "a.img", "c.img", MoveState::Switched)]);
        let p = plan(d, &cfg(d)).unwrap();
        assert_eq!(p.volumes["lin"].1.len(), 1);
        assert!(matches!(p.volumes["lin"].1[0], Step::Switch { segment: 0, .. }));
        // Switched, config names to: obsolete.
        let mut c2 = cfg(d);
        c2[0].members[0] = MemberConfig::File { path: d.join("c.img"), size: 1 << 20 };
        let p = plan(d, &c2).unwrap();
        assert!(p.volumes["lin"].0.is_empty() && p.volumes["lin"].1.is_empty());
        // Copying, to missing: rolled back.
        put(vec![mv(d, "a.img", "zz.img", MoveState::Copying)]);
        let p = plan(d, &cfg(d)).unwrap();
        assert!(p.volumes["lin"].0.is_empty() && !p.warnings.is_empty());
        // Copying, to present: resumed.
        let mut m = mv(d, "a.img", "c.img", MoveState::Copying);
        m.done_bytes = 4096;
        put(vec![m]);
        let p = plan(d, &cfg(d)).unwrap();
        assert!(matches!(p.volumes["lin"].1[0], Step::Resume { done: 4096, .. }));
        let files = HashMap::from([(canonical(&d.join("c.img")), "LUN 3 of iqn.x".to_string())]);
        assert!(check_files(&p, &files).unwrap_err().contains("gives to LUN 3"));
        assert!(check_files(&p, &HashMap::new()).is_ok());
        // Mismatches refuse.
        put(vec![mv(d, "q.img", "c.img", MoveState::Copying)]);
        assert!(plan(d, &cfg(d)).unwrap_err().contains("configuration names"));
        let mut m = mv(d, "a.img", "c.img", MoveState::Switched);
        m.segment = 5;
        put(vec![m]);
        assert!(plan(d, &cfg(d)).unwrap_err().contains("has 2 segments"));
        put(vec![]);
        save(
            d,
            "other",
            &Journal { version: 1, moves: vec![mv(d, "a.img", "c.img", MoveState::Switched)], legs: vec![] },
        )
        .unwrap();
        assert!(plan(d, &cfg(d)).unwrap_err().contains("does not have"));
    }

    #[test]
    fn places_parse() {
        assert_eq!(parse_place("/a/b:1MiB").unwrap(), (PathBuf::from("/a/b"), 1 << 20));
        assert!(parse_place("/a/b").is_err() && parse_place(":1MiB").is_err() && parse_place("/a:x").is_err());
    }
}
