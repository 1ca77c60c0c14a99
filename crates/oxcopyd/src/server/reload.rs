//! Applying a changed configuration to the running daemon (SIGHUP).
//!
//! The new configuration has passed the same validation as at start
//! (`Config::from_file_for_reload`, which also accepts a LUN `size` larger
//! than its file, and `check::preflight`). [`apply`] then compares it with
//! the running one, per target and per (target, LUN id):
//!
//! - `[server] listen`, `data_dir`, `metrics`, `write_buffer_limit`,
//!   `read_buffer_limit`, `write_behind` or `[copy_domain]` changed: refused
//!   ("needs a restart"); the per-session shares of those buffers apply to
//!   sessions from now on.
//!   The other `[server]` settings apply to logins and sessions from now on;
//!   `max_concurrent_copies*` at once.
//! - LUN added: opened exactly as at start (file created if missing, identity
//!   from `identities.toml`, a new one saved); REPORTED LUNS DATA HAS CHANGED
//!   (3Fh/0Eh) for every nexus on the target's other LUNs.
//! - LUN removed: gone from the registry and its target at once; commands
//!   already running keep their `Arc<LogicalUnit>` and finish, later ones get
//!   LOGICAL UNIT NOT SUPPORTED; ROD tokens made on it are revoked (23h/06h);
//!   3Fh/0Eh on the target's remaining LUNs.
//! - LUN whose `path`, `block_size` or `read_only` changed: removed and added
//!   (same identity, since identities are keyed by target and LUN id; its
//!   tokens revoked); the new LU also warns the nexuses that used the old one.
//! - LUN `size` larger than served: the file is extended (sparse), the
//!   capacity raised, CAPACITY DATA HAS CHANGED (2Ah/09h) for every nexus of
//!   the LU, its tokens revoked. Smaller: refused (shrinking is not supported).
//! - LUN `initiators` (masking) changed: applied, with 3Fh/0Eh;
//!   `third_party_copy`: applied in place.
//! - Target added: served; removed: its LUNs go as above and its sessions are
//!   closed (after their running commands, bounded); `initiators`, `chap`,
//!   `alias` changed: apply to logins from now on, and a session whose
//!   initiator the new allow-list no longer admits is closed the same way
//!   (sessions that authenticated with CHAP before a CHAP change stay).
//!
//! The fallible part (opening added LUNs, saving identities, extending files)
//! runs before anything visible changes; an error there refuses the reload
//! as a whole. Left behind then are at most LUN files created for LUNs that
//! are not served and files extended beyond the capacity served (a later
//! reload with the same sizes completes the grow).

use crate::config::{Config, LunConfig, TargetConfig};
use crate::identity::Identities;
use crate::server::lun::open_lun;
use crate::server::{Live, Shared, TargetEntry};
use crate::volumes::{MemberConfig, VolumeKind};
use anyhow::{Context, Result};
use oxcopy_scsi::{AccessList, Asc, LogicalUnit, LuRegistry, ScsiTarget};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use tracing::{error, info};

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub luns_added: usize,
    pub luns_removed: usize,
    /// Removed and added again (path, block size or read-only changed).
    pub luns_replaced: usize,
    pub luns_grown: usize,
    /// Masking or `third_party_copy` changed in place.
    pub luns_changed: usize,
    pub targets_added: usize,
    pub targets_removed: usize,
    /// Allow-list, CHAP or alias changed.
    pub targets_changed: usize,
    pub tokens_revoked: usize,
}

impl fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "+{}/-{} LUNs, {} replaced, {} grown, {} changed; +{}/-{} targets, {} changed; {} tokens revoked",
            self.luns_added,
            self.luns_removed,
            self.luns_replaced,
            self.luns_grown,
            self.luns_changed,
            self.targets_added,
            self.targets_removed,
            self.targets_changed,
            self.tokens_revoked
        )
    }
}

/// The reason a reload was refused: a change that only a restart applies.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {keys} changed, which needs a restart; nothing was applied")]
pub struct NeedsRestart {
    pub file: String,
    pub keys: String,
}

fn needs_restart(old: &Config, new: &Config) -> Result<(), NeedsRestart> {
    let mut keys = Vec::new();
    if old.listen != new.listen {
        keys.push("server.listen");
    }
    if old.data_dir != new.data_dir {
        keys.push("server.data_dir");
    }
    if old.metrics != new.metrics {
        keys.push("server.metrics");
    }
    if old.write_buffer_limit != new.write_buffer_limit {
        keys.push("server.write_buffer_limit");
    }
    if old.read_buffer_limit != new.read_buffer_limit {
        keys.push("server.read_buffer_limit");
    }
    if old.write_behind != new.write_behind {
        keys.push("server.write_behind");
    }
    if old.copy_domain != new.copy_domain {
        keys.push("[copy_domain]");
    }
    if !volumes_only_grow(old, new) {
        keys.push("[[volume]]");
    }
    if old.subsystems != new.subsystems {
        keys.push("[[subsystem]]");
    }
    if keys.is_empty() {
        Ok(())
    } else {
        Err(NeedsRestart { file: new.source.clone(), keys: keys.join(", ") })
    }
}

/// A linear volume gaining segments: the volume, its new members, the LU
/// on it, and the LU in words.
type Append = (Arc<oxcopy_volume::Volume>, Vec<oxcopy_volume::Member>, Arc<LogicalUnit>, String);

/// Whether every `[[volume]]` of `new` is the one of `old`, or a linear
/// volume right under a LUN with file segments appended at its end (which
/// a reload applies: the LUN grows).
fn volumes_only_grow(old: &Config, new: &Config) -> bool {
    if old.volumes.len() != new.volumes.len() {
        return false;
    }
    old.volumes.iter().all(|o| {
        let Some(n) = new.volumes.iter().find(|n| n.name == o.name) else { return false };
        if n == o {
            return true;
        }
        let under_lun =
            |c: &Config| c.targets.iter().flat_map(|t| &t.luns).any(|l| l.volume.as_deref() == Some(&*o.name));
        o.kind == VolumeKind::Linear
            && n.kind == VolumeKind::Linear
            && n.members.len() > o.members.len()
            && n.members[..o.members.len()] == o.members[..]
            && n.members[o.members.len()..].iter().all(|m| matches!(m, MemberConfig::File { .. }))
            && under_lun(old)
            && under_lun(new)
    })
}

/// Whether `new` describes the same medium as `old` (else the LU is
/// replaced): same file, block size and access mode.
fn same_medium(old: &LunConfig, new: &LunConfig) -> bool {
    old.path == new.path
        && old.volume == new.volume
        && old.block_size == new.block_size
        && old.read_only == new.read_only
}

fn find_lun(t: Option<&TargetConfig>, id: u16) -> Option<&LunConfig> {
    t.and_then(|t| t.luns.iter().find(|l| l.id == id))
}

/// Apply `new` to the running daemon (blocking: opens and extends files).
/// On error nothing visible changed.
pub(super) fn apply(shared: &Shared, registry: &Arc<LuRegistry>, new: Config) -> Result<ReloadSummary> {
    let old = shared.live();
    needs_restart(&old.cfg, &new)?;

    // Everything that can fail, before anything is visible.
    let mut ids = Identities::load(&new.data_dir)?;
    let mut opened: BTreeMap<(String, u16), Arc<LogicalUnit>> = BTreeMap::new();
    let mut grows: Vec<(Arc<LogicalUnit>, u64, String)> = Vec::new();
    for t in &new.targets {
        let old_t = old.cfg.targets.iter().find(|o| o.iqn == t.iqn);
        for l in &t.luns {
            let key = (t.iqn.clone(), l.id);
            match find_lun(old_t, l.id).zip(old.luns.get(&key)) {
                Some((ol, lu)) if same_medium(ol, l) => {
                    let Some(want) = l.size else { continue };
                    let served = lu.num_blocks() * u64::from(lu.block_size());
                    let what = format!("LUN {} of {}", l.id, t.iqn);
                    if want < served {
                        anyhow::bail!(
                            "{}: {what}: size {want} bytes is smaller than the {served} bytes served: \
                             shrinking a LUN is not supported; nothing was applied",
                            new.source
                        );
                    }
                    if want > served {
                        if l.read_only {
                            anyhow::bail!(
                                "{}: {what}: a read-only LUN cannot be grown; nothing was applied",
                                new.source
                            );
                        }
                        grows.push((lu.clone(), want, what));
                    }
                }
                _ => {
                    let lu = open_lun(&new, t, l, &old.volumes, &mut ids)
                        .with_context(|| format!("{}: nothing was applied", new.source))?;
                    opened.insert(key, lu);
                }
            }
        }
    }
    // Linear volumes under a LUN that gained segments: their files opened
    // (created) now, the segments added and the LUN grown below.
    let mut appends: Vec<Append> = Vec::new();
    for t in &new.targets {
        for l in &t.luns {
            let Some(name) = &l.volume else { continue };
            let (Some(vol), Some(cfg), Some(lu)) = (
                old.volumes.get(name),
                new.volumes.iter().find(|v| &v.name == name),
                old.luns.get(&(t.iqn.clone(), l.id)),
            ) else {
                continue;
            };
            // Members beyond those the volume has now (a reload applied
            // twice adds nothing twice).
            let have = vol.members().len();
            let mut extra = Vec::new();
            for m in cfg.members.iter().skip(have) {
                extra.push(
                    crate::volumes::open_member(m, new.write_behind)
                        .with_context(|| format!("{}: volume '{name}': nothing was applied", new.source))?,
                );
            }
            if !extra.is_empty() {
                appends.push((vol.clone(), extra, lu.clone(), format!("LUN {} of {} (volume '{name}')", l.id, t.iqn)));
            }
        }
    }
    ids.save()?;
    for (lu, want, what) in &grows {
        // The file only: the capacity initiators see is raised below.
        lu.storage().grow(*want).with_context(|| format!("growing {what}; nothing was applied"))?;
    }
    for (vol, extra, lu, what) in appends {
        let mut len = oxcopy_storage::Storage::len(&*vol);
        for m in extra {
            len = vol.add_segment(m).with_context(|| format!("growing {what}; nothing was applied"))?;
        }
        // The capacity initiators see is raised below, like a file's.
        grows.push((lu, len, what));
    }

    // Commit: nothing below fails.
    let mut sum = ReloadSummary::default();
    let mut revoke: Vec<[u8; 16]> = Vec::new();
    let mut targets = HashMap::new();
    let mut luns = BTreeMap::new();
    for t in &new.targets {
        let old_t = old.cfg.targets.iter().find(|o| o.iqn == t.iqn);
        let old_entry = old.targets.get(&t.iqn);
        let mut list = Vec::with_capacity(t.luns.len());
        let mut reported_luns_changed = false;
        for l in &t.luns {
            let key = (t.iqn.clone(), l.id);
            let prev = old.luns.get(&key);
            let lu = match (opened.remove(&key), prev) {
                (Some(lu), Some(prev)) => {
                    info!(target = %t.iqn, lun = l.id, path = %l.path.display(), "reload: LUN replaced");
                    lu.adopt_nexuses(prev);
                    if lu.num_blocks() * u64::from(lu.block_size()) != prev.num_blocks() * u64::from(prev.block_size())
                        || lu.block_size() != prev.block_size()
                    {
                        lu.establish_unit_attention(Asc::CAPACITY_DATA_HAS_CHANGED);
                    }
                    revoke.push(prev.naa());
                    sum.luns_replaced += 1;
                    reported_luns_changed = true;
                    lu
                }
                (Some(lu), None) => {
                    info!(target = %t.iqn, lun = l.id, path = %l.path.display(), "reload: LUN added");
                    sum.luns_added += 1;
                    reported_luns_changed = true;
                    lu
                }
                (None, Some(prev)) => {
                    let mut changed = false;
                    if prev.third_party_copy() != l.third_party_copy {
                        prev.set_third_party_copy(l.third_party_copy);
                        changed = true;
                    }
                    if find_lun(old_t, l.id).is_some_and(|ol| ol.initiators != l.initiators) {
                        reported_luns_changed = true;
                        changed = true;
                    }
                    if changed {
                        info!(target = %t.iqn, lun = l.id, "reload: LUN settings changed");
                        sum.luns_changed += 1;
                    }
                    prev.clone()
                }
                // Neither opened nor served: cannot happen (every LUN of the
                // new configuration is one or the other).
                (None, None) => continue,
            };
            list.push((l.id, lu.clone(), AccessList::from_config(l.initiators.as_deref())));
            luns.insert(key, lu);
        }
        for ol in old_t.map(|o| o.luns.as_slice()).unwrap_or_default() {
            if t.luns.iter().all(|l| l.id != ol.id) {
                info!(target = %t.iqn, lun = ol.id, "reload: LUN removed");
                if let Some(prev) = old.luns.get(&(t.iqn.clone(), ol.id)) {
                    revoke.push(prev.naa());
                }
                sum.luns_removed += 1;
                reported_luns_changed = true;
            }
        }
        registry.set_target(&t.iqn, AccessList::from_config(t.initiators.as_deref()), list);
        let scsi = match old_entry {
            Some(e) => {
                e.scsi.refresh();
                e.scsi.clone()
            }
            None => {
                info!(target = %t.iqn, "reload: target added");
                sum.targets_added += 1;
                Arc::new(ScsiTarget::in_registry(&t.iqn, 1, registry.clone()))
            }
        };
        if let Some(o) = old_t {
            if o.initiators != t.initiators || o.alias != t.alias || o.chap != t.chap {
                info!(target = %t.iqn, "reload: target settings changed");
                sum.targets_changed += 1;
            }
        }
        // After the refresh: an initiator told of the change sees it.
        if reported_luns_changed && old_entry.is_some() {
            for (_, lu) in registry.target_luns(&t.iqn) {
                lu.establish_unit_attention(Asc::REPORTED_LUNS_DATA_HAS_CHANGED);
            }
        }
        targets.insert(t.iqn.clone(), TargetEntry::new(t, scsi));
    }
    for (iqn, entry) in &old.targets {
        if targets.contains_key(iqn) {
            continue;
        }
        info!(target = %iqn, "reload: target removed; its sessions are closed");
        registry.remove_target(iqn);
        entry.scsi.refresh();
        sum.targets_removed += 1;
        for ((_, _), lu) in old.luns.range((iqn.clone(), 0)..=(iqn.clone(), u16::MAX)) {
            revoke.push(lu.naa());
            sum.luns_removed += 1;
        }
    }
    for (lu, want, what) in &grows {
        match lu.grow(*want) {
            Ok(blocks) => {
                info!(lun = %what, blocks, "reload: LUN grown");
                revoke.push(lu.naa());
                sum.luns_grown += 1;
            }
            // The file has its size already (above); only a failing backend
            // gets here.
            Err(e) => error!(lun = %what, "reload: growing failed after the file was extended: {e}"),
        }
    }
    let rod = registry.rod();
    for naa in &revoke {
        sum.tokens_revoked += rod.store().revoke_creator(naa);
    }
    registry.copy_manager().set_max_concurrent(new.max_concurrent_copies);
    registry.copy_manager().set_max_per_requester(new.max_concurrent_copies_per_session);
    *shared.live.write() = Arc::new(Live { targets, luns, volumes: old.volumes.clone(), cfg: new });
    shared.reconfigured.send_modify(|g| *g = g.wrapping_add(1));
    Ok(sum)
}
