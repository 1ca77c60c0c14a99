//! The daemon-wide logical-unit registry (design note 2).
//!
//! Every target's logical units and allow-list live here, so that the copy
//! manager can find a copy source or destination named by a VPD 83h
//! designator anywhere in the daemon — and only where the asking I_T nexus
//! may reach. Lookups:
//! - by (target, LUN) for normal commands ([`LuRegistry::lookup`]);
//! - by designator for EXTENDED COPY CSCDs and ROD token sources
//!   ([`LuRegistry::resolve`]).
//!
//! Both are filtered through the nexus's access rights: a nexus reaches the
//! logical units of the target it is logged in to, and those of any other
//! target whose allow-list admits its initiator name. Anything else is
//! invisible — the rule whose absence was CVE-2020-28374 in Linux LIO.
//!
//! The registry also owns what is daemon-wide about copies: the
//! [`CopyManager`] (list-identifier records, concurrency), the
//! [`RodManager`] (ROD tokens) and the [`Metrics`]. Targets are added at start; the state is a snapshot behind a
//! lock so that reconfiguration can later swap it without stopping readers.

use crate::copy::limits;
use crate::copy::records::CopyManager;
use crate::lu::LogicalUnit;
use crate::lun::MAX_LUN;
use crate::metrics::Metrics;
use crate::nexus::Nexus;
use crate::wire::vpd::CopyDomainPage;
use oxcopy_copy::token::TokenRng;
use oxcopy_copy::{Clock, CopyMetrics, RodConfig, RodManager, DEFAULT_CHUNK_BYTES};
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Which initiators may log in to a target (and reach its LUs by copy).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AccessList {
    /// Any initiator.
    #[default]
    Any,
    /// Only these initiator names (compared ASCII case-insensitively).
    Only(Vec<String>),
}

impl AccessList {
    /// From the configuration's optional `initiators` list.
    pub fn from_config(initiators: Option<&[String]>) -> Self {
        match initiators {
            None => AccessList::Any,
            Some(list) => AccessList::Only(list.to_vec()),
        }
    }

    /// Whether `initiator` is admitted.
    pub fn admits(&self, initiator: &str) -> bool {
        match self {
            AccessList::Any => true,
            AccessList::Only(list) => list.iter().any(|i| i.eq_ignore_ascii_case(initiator)),
        }
    }
}

/// What the daemon knows of its copy domain, asked afresh each time VPD
/// page C0h is read (membership and node states change while it runs).
/// Called on the I/O pool with no registry lock held; it should answer from
/// memory, without waiting on the network.
pub trait DomainInfo: Send + Sync + std::fmt::Debug {
    /// The page's content (this node's id and listen address, the domain
    /// fingerprint, one entry per configured node).
    fn page(&self) -> CopyDomainPage;
}

/// Errors when building the registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Two targets with one name.
    #[error("target {0} is already registered")]
    DuplicateTarget(String),
}

/// A logical unit found for a nexus, with where it lives.
#[derive(Debug, Clone)]
pub struct ResolvedLu {
    /// The target it is reached through.
    pub target: Arc<str>,
    /// Its LUN there.
    pub lun: u16,
    /// The logical unit.
    pub lu: Arc<LogicalUnit>,
}

/// What a designator resolves to for a nexus.
///
/// Today only logical units of this daemon exist. A copy domain of several
/// daemons (design note 8) adds a variant for a logical unit on another
/// node, which the executor then reaches through that node; callers already
/// have to handle "not local".
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Resolution {
    /// A logical unit of this daemon the nexus may reach.
    Local(ResolvedLu),
    /// Nothing the nexus may reach carries this designator.
    Unreachable,
}

#[derive(Debug)]
struct TargetRecord {
    name: Arc<str>,
    access: AccessList,
    /// Sorted by LUN, unique.
    luns: Vec<(u16, Arc<LogicalUnit>)>,
    /// LUN masking: LUNs only some initiators may see (absent: every
    /// initiator admitted to the target sees the LUN).
    masks: HashMap<u16, AccessList>,
}

impl TargetRecord {
    /// Whether `initiator` sees LUN `lun` of this target (masking only; the
    /// target-level rule is [`LuRegistry::reachable`]).
    fn lun_visible(&self, lun: u16, initiator: &str) -> bool {
        self.masks.get(&lun).is_none_or(|a| a.admits(initiator))
    }
}

#[derive(Debug, Default)]
struct Snapshot {
    targets: BTreeMap<String, Arc<TargetRecord>>,
    /// Masked designator key → (target, LUN) carrying it.
    by_designator: HashMap<Vec<u8>, Vec<(Arc<str>, u16)>>,
}

impl Snapshot {
    /// A snapshot of `targets` with its designator index built.
    fn indexed(targets: BTreeMap<String, Arc<TargetRecord>>) -> Snapshot {
        let mut by_designator: HashMap<Vec<u8>, Vec<(Arc<str>, u16)>> = HashMap::new();
        for rec in targets.values() {
            for (id, lu) in &rec.luns {
                for (code_set, assoc_type, value) in lu.designators() {
                    let key = designator_key(code_set, assoc_type, &value);
                    by_designator.entry(key).or_default().push((rec.name.clone(), *id));
                }
            }
        }
        Snapshot { targets, by_designator }
    }
}

/// The comparison key of a designator: CODE SET (protocol identifier nibble
/// masked), ASSOCIATION and DESIGNATOR TYPE (PIV and the reserved bit
/// masked), length, value.
pub fn designator_key(code_set: u8, assoc_type: u8, value: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(3 + value.len());
    k.push(code_set & 0x0F);
    k.push(assoc_type & 0x3F);
    k.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
    k.extend_from_slice(value);
    k
}

/// The record of target `name`: its LUNs in number order with their
/// masks; LUN numbers above [`MAX_LUN`] and duplicates (the first wins)
/// are dropped with a warning.
fn target_record(name: &str, access: AccessList, luns: Vec<(u16, Arc<LogicalUnit>, AccessList)>) -> Arc<TargetRecord> {
    let mut v: Vec<(u16, Arc<LogicalUnit>)> = Vec::with_capacity(luns.len());
    let mut masks = HashMap::new();
    for (id, lu, mask) in luns {
        if id > MAX_LUN {
            tracing::warn!(target = name, lun = id, "LUN number not addressable, ignored");
        } else if v.iter().any(|(i, _)| *i == id) {
            tracing::warn!(target = name, lun = id, "duplicate LUN number, ignored");
        } else {
            v.push((id, lu));
            if mask != AccessList::Any {
                masks.insert(id, mask);
            }
        }
    }
    v.sort_by_key(|(id, _)| *id);
    Arc::new(TargetRecord { name: Arc::from(name), access, luns: v, masks })
}

/// All logical units of the daemon, their targets and access rules.
#[derive(Debug)]
pub struct LuRegistry {
    state: RwLock<Arc<Snapshot>>,
    copy: CopyManager,
    rod: RwLock<Arc<RodManager>>,
    metrics: Metrics,
    chunk_bytes: AtomicU64,
    domain: RwLock<Option<Arc<dyn DomainInfo>>>,
    refusals: crate::copy::limits::RefusalLog,
}

impl LuRegistry {
    /// An empty registry reporting into `metrics`, telling time by `clock`.
    /// Its token manager is ephemeral (key, copy-manager id and token bytes
    /// from `rng`) until the daemon installs its configured one
    /// ([`LuRegistry::set_rod`]).
    pub fn new(metrics: Metrics, clock: Arc<dyn Clock>, mut rng: TokenRng) -> Self {
        let rod_cfg = RodConfig::ephemeral(&mut rng);
        let copy_metrics: Arc<dyn CopyMetrics> = Arc::new(metrics.clone());
        let copy = CopyManager::new(clock.clone(), u32::from(limits::TOTAL_CONCURRENT_COPIES));
        let refusals = crate::copy::limits::RefusalLog::new(clock.clone());
        LuRegistry {
            state: RwLock::new(Arc::new(Snapshot::default())),
            copy,
            rod: RwLock::new(Arc::new(RodManager::new(rod_cfg, clock, rng, copy_metrics))),
            metrics,
            chunk_bytes: AtomicU64::new(DEFAULT_CHUNK_BYTES),
            domain: RwLock::new(None),
            refusals,
        }
    }

    /// Where resource refusals are logged (rate-limited).
    pub fn refusals(&self) -> &crate::copy::limits::RefusalLog {
        &self.refusals
    }

    /// Log `e` if it is a resource refusal of `initiator` on `lu`, naming the limit.
    pub fn note_refusal(&self, initiator: &str, lu: &str, command: &str, e: &oxcopy_copy::CopyError) {
        if let Some(limit) = crate::copy::limits::refusal_limit(e) {
            self.refusals.refused(initiator, lu, limit, command);
        }
    }

    /// Add a target with its LUNs. LUN numbers above [`MAX_LUN`] and
    /// duplicates (the first wins) are dropped with a warning.
    pub fn add_target(
        &self,
        name: &str,
        access: AccessList,
        luns: Vec<(u16, Arc<LogicalUnit>)>,
    ) -> Result<(), RegistryError> {
        let rec = target_record(name, access, luns.into_iter().map(|(id, lu)| (id, lu, AccessList::Any)).collect());
        let mut st = self.state.write();
        if st.targets.contains_key(name) {
            return Err(RegistryError::DuplicateTarget(name.to_owned()));
        }
        let mut targets = st.targets.clone();
        targets.insert(name.to_owned(), rec);
        *st = Arc::new(Snapshot::indexed(targets));
        Ok(())
    }

    /// Add or replace target `name`: its allow-list, and its LUNs with
    /// their masking rules (reconfiguration). Commands already running keep
    /// the logical units they found; lookups from now on see the new set.
    /// LUN numbers above [`MAX_LUN`] and duplicates are dropped (logged).
    /// Targets built on it see the change after [`crate::ScsiTarget::refresh`].
    pub fn set_target(&self, name: &str, access: AccessList, luns: Vec<(u16, Arc<LogicalUnit>, AccessList)>) {
        let rec = target_record(name, access, luns);
        let mut st = self.state.write();
        let mut targets = st.targets.clone();
        targets.insert(name.to_owned(), rec);
        *st = Arc::new(Snapshot::indexed(targets));
    }

    /// Remove target `name` and its LUNs (reconfiguration); false when it
    /// is unknown. Commands already running keep their logical units.
    pub fn remove_target(&self, name: &str) -> bool {
        let mut st = self.state.write();
        if !st.targets.contains_key(name) {
            return false;
        }
        let mut targets = st.targets.clone();
        targets.remove(name);
        *st = Arc::new(Snapshot::indexed(targets));
        true
    }

    /// Mask LUN `lun` of `target`: only initiators `access` admits see it
    /// (REPORT LUNS, commands, designator resolution). Returns false when
    /// the target or LUN is unknown. Call before building the target's
    /// [`crate::ScsiTarget`] (it copies the masks out).
    pub fn set_lun_access(&self, target: &str, lun: u16, access: AccessList) -> bool {
        let mut st = self.state.write();
        let Some(rec) = st.targets.get(target) else { return false };
        if rec.luns.binary_search_by_key(&lun, |(i, _)| *i).is_err() {
            return false;
        }
        let mut masks = rec.masks.clone();
        match access {
            AccessList::Any => masks.remove(&lun),
            a => masks.insert(lun, a),
        };
        let rec = Arc::new(TargetRecord {
            name: rec.name.clone(),
            access: rec.access.clone(),
            luns: rec.luns.clone(),
            masks,
        });
        let mut next = Snapshot { targets: st.targets.clone(), by_designator: st.by_designator.clone() };
        next.targets.insert(target.to_owned(), rec);
        *st = Arc::new(next);
        true
    }

    /// The masking rule of LUN `lun` of `target` ([`AccessList::Any`] when
    /// unmasked or unknown).
    pub fn lun_access(&self, target: &str, lun: u16) -> AccessList {
        self.snapshot().targets.get(target).and_then(|t| t.masks.get(&lun).cloned()).unwrap_or_default()
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.state.read().clone()
    }

    /// Target names, sorted.
    pub fn target_names(&self) -> Vec<String> {
        self.snapshot().targets.keys().cloned().collect()
    }

    /// A target's LUNs, ascending (empty for an unknown target).
    pub fn target_luns(&self, target: &str) -> Vec<(u16, Arc<LogicalUnit>)> {
        self.snapshot().targets.get(target).map(|t| t.luns.clone()).unwrap_or_default()
    }

    /// Whether `initiator` may log in to `target` (false when unknown).
    pub fn admits(&self, target: &str, initiator: &str) -> bool {
        self.snapshot().targets.get(target).is_some_and(|t| t.access.admits(initiator))
    }

    /// Whether `nexus` may reach the logical units of `target`: its own
    /// target, or one whose allow-list admits its initiator.
    pub fn reachable(&self, nexus: &Nexus, target: &str) -> bool {
        let snap = self.snapshot();
        Self::reachable_in(&snap, nexus, target)
    }

    fn reachable_in(snap: &Snapshot, nexus: &Nexus, target: &str) -> bool {
        match snap.targets.get(target) {
            None => false,
            Some(t) => &*nexus.target_name == target || t.access.admits(&nexus.initiator_name),
        }
    }

    /// The logical unit at (`target`, `lun`), if `nexus` may reach it (and
    /// the LUN is not masked from its initiator).
    pub fn lookup(&self, nexus: &Nexus, target: &str, lun: u16) -> Option<Arc<LogicalUnit>> {
        let snap = self.snapshot();
        if !Self::reachable_in(&snap, nexus, target) {
            return None;
        }
        let t = snap.targets.get(target)?;
        if !t.lun_visible(lun, &nexus.initiator_name) {
            return None;
        }
        t.luns.binary_search_by_key(&lun, |(i, _)| *i).ok().map(|i| t.luns[i].1.clone())
    }

    /// Find the logical unit carrying a VPD 83h designator (see
    /// [`designator_key`] for how they compare) that `nexus` may reach, at a
    /// LUN not masked from its initiator. The nexus's own target is
    /// preferred when several carry it.
    pub fn resolve(&self, nexus: &Nexus, code_set: u8, assoc_type: u8, value: &[u8]) -> Resolution {
        let snap = self.snapshot();
        let Some(hits) = snap.by_designator.get(&designator_key(code_set, assoc_type, value)) else {
            return Resolution::Unreachable;
        };
        let visible =
            |t: &str, lun: u16| snap.targets.get(t).is_some_and(|rec| rec.lun_visible(lun, &nexus.initiator_name));
        let own = hits.iter().find(|(t, l)| **t == *nexus.target_name && visible(t, *l));
        let any = || hits.iter().find(|(t, l)| Self::reachable_in(&snap, nexus, t) && visible(t, *l));
        let Some((target, lun)) = own.or_else(any) else {
            return Resolution::Unreachable;
        };
        match snap.targets.get(&**target).and_then(|t| t.luns.iter().find(|(i, _)| i == lun)) {
            Some((_, lu)) => Resolution::Local(ResolvedLu { target: target.clone(), lun: *lun, lu: lu.clone() }),
            None => Resolution::Unreachable,
        }
    }

    /// Every logical unit once (an LU behind several targets counts once).
    pub fn all_lus(&self) -> Vec<Arc<LogicalUnit>> {
        let snap = self.snapshot();
        let mut out: Vec<Arc<LogicalUnit>> = Vec::new();
        for t in snap.targets.values() {
            for (_, lu) in &t.luns {
                if !out.iter().any(|o| Arc::ptr_eq(o, lu)) {
                    out.push(lu.clone());
                }
            }
        }
        out
    }

    /// The copy manager's records and concurrency bookkeeping.
    pub fn copy_manager(&self) -> &CopyManager {
        &self.copy
    }

    /// The token side of the copy manager (ROD tokens, snapshots).
    pub fn rod(&self) -> Arc<RodManager> {
        self.rod.read().clone()
    }

    /// Replace the token manager (the daemon does this at start, before any
    /// command, with its key, copy-manager id and limits; tokens of the
    /// previous one become unknown).
    pub fn set_rod(&self, rod: Arc<RodManager>) {
        *self.rod.write() = rod;
    }

    /// Install (or remove, with `None`) the copy-domain provider: while one
    /// is set, logical units with a copy manager list and serve VPD page
    /// C0h from it. The daemon sets it at start when `[copy_domain]` lists
    /// nodes.
    pub fn set_domain_info(&self, info: Option<Arc<dyn DomainInfo>>) {
        *self.domain.write() = info;
    }

    /// The copy-domain provider, if one is installed.
    pub fn domain_info(&self) -> Option<Arc<dyn DomainInfo>> {
        self.domain.read().clone()
    }

    /// The metric families.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Largest chunk a copy moves under one set of range locks (bytes).
    pub fn copy_chunk_bytes(&self) -> u64 {
        self.chunk_bytes.load(Ordering::Relaxed)
    }

    /// Change the copy chunk size (at least 4 KiB; tests use small chunks
    /// to observe cancellation between them).
    pub fn set_copy_chunk_bytes(&self, bytes: u64) {
        self.chunk_bytes.store(bytes.max(4096), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lu::LuConfig;
    use oxcopy_storage::MemStorage;

    fn lu(last: u8) -> Arc<LogicalUnit> {
        let mut naa = [0x60; 16];
        naa[15] = last;
        Arc::new(LogicalUnit::new(LuConfig { naa, ..LuConfig::default() }, Arc::new(MemStorage::new(4096))))
    }

    fn nx(initiator: &str, target: &str) -> Nexus {
        Nexus { initiator_name: Arc::from(initiator), isid: [0; 6], target_name: Arc::from(target), tpgt: 1 }
    }

    fn naa(last: u8) -> Vec<u8> {
        let mut n = vec![0x60; 16];
        n[15] = last;
        n
    }

    #[test]
    fn access_rules() {
        let r = crate::testing::registry();
        r.add_target("iqn.a", AccessList::Any, vec![(0, lu(1))]).unwrap();
        r.add_target("iqn.b", AccessList::Only(vec!["iqn.host-b".into()]), vec![(0, lu(2)), (5, lu(3))]).unwrap();
        assert_eq!(r.add_target("iqn.a", AccessList::Any, vec![]), Err(RegistryError::DuplicateTarget("iqn.a".into())));
        let host_a = nx("iqn.host-a", "iqn.a");
        let host_b = nx("IQN.HOST-B", "iqn.a");
        // Own target, an open target, a restricted one.
        assert!(r.lookup(&host_a, "iqn.a", 0).is_some());
        assert!(r.lookup(&host_a, "iqn.b", 0).is_none(), "not on b's allow-list");
        assert!(r.lookup(&host_b, "iqn.b", 5).is_some(), "allow-list match ignores case");
        assert!(r.lookup(&host_b, "iqn.b", 4).is_none());
        assert!(r.lookup(&host_b, "iqn.c", 0).is_none());
        // By designator (protocol nibble and PIV masked).
        assert!(
            matches!(r.resolve(&host_a, 0x51, 0x83, &naa(1)), Resolution::Local(x) if x.lun == 0 && &*x.target == "iqn.a")
        );
        assert!(matches!(r.resolve(&host_a, 0x01, 0x03, &naa(2)), Resolution::Unreachable));
        assert!(matches!(r.resolve(&host_b, 0x01, 0x03, &naa(3)), Resolution::Local(x) if x.lun == 5));
        assert!(matches!(r.resolve(&host_b, 0x01, 0x03, &naa(9)), Resolution::Unreachable));
        // Wrong code set / association / type / length never match.
        assert!(matches!(r.resolve(&host_a, 0x02, 0x03, &naa(1)), Resolution::Unreachable));
        assert!(matches!(r.resolve(&host_a, 0x01, 0x13, &naa(1)), Resolution::Unreachable));
        assert!(matches!(r.resolve(&host_a, 0x01, 0x02, &naa(1)), Resolution::Unreachable));
        assert!(matches!(r.resolve(&host_a, 0x01, 0x03, &naa(1)[..15]), Resolution::Unreachable));
        // A nexus on the restricted target itself always reaches it.
        let on_b = nx("iqn.someone", "iqn.b");
        assert!(r.reachable(&on_b, "iqn.b"));
        assert!(r.admits("iqn.b", "iqn.host-b") && !r.admits("iqn.b", "iqn.someone"));
        assert_eq!(r.all_lus().len(), 3);
        assert_eq!(r.target_names(), vec!["iqn.a".to_string(), "iqn.b".to_string()]);
    }

    #[test]
    fn masked_luns_are_invisible() {
        let r = crate::testing::registry();
        r.add_target("iqn.a", AccessList::Any, vec![(0, lu(1)), (1, lu(2))]).unwrap();
        r.add_target("iqn.b", AccessList::Any, vec![(0, lu(3))]).unwrap();
        assert!(r.set_lun_access("iqn.a", 1, AccessList::Only(vec!["iqn.host-ok".into()])));
        assert!(r.set_lun_access("iqn.b", 0, AccessList::Only(vec!["iqn.host-ok".into()])));
        assert!(!r.set_lun_access("iqn.a", 9, AccessList::Any), "unknown LUN");
        assert!(!r.set_lun_access("iqn.c", 0, AccessList::Any), "unknown target");
        let ok = nx("IQN.HOST-OK", "iqn.a");
        let denied = nx("iqn.host-no", "iqn.a");
        assert!(r.lookup(&ok, "iqn.a", 1).is_some());
        assert!(r.lookup(&denied, "iqn.a", 1).is_none(), "masked on its own target");
        assert!(r.lookup(&denied, "iqn.a", 0).is_some());
        assert!(matches!(r.resolve(&ok, 1, 3, &naa(2)), Resolution::Local(x) if x.lun == 1));
        assert!(matches!(r.resolve(&denied, 1, 3, &naa(2)), Resolution::Unreachable));
        assert!(matches!(r.resolve(&denied, 1, 3, &naa(3)), Resolution::Unreachable), "masked on another target");
        assert!(matches!(r.resolve(&ok, 1, 3, &naa(3)), Resolution::Local(x) if &*x.target == "iqn.b"));
        assert_eq!(r.lun_access("iqn.a", 0), AccessList::Any);
        assert!(r.set_lun_access("iqn.a", 1, AccessList::Any));
        assert!(r.lookup(&denied, "iqn.a", 1).is_some(), "unmasked again");
    }

    #[test]
    fn targets_are_replaced_and_removed() {
        let r = crate::testing::registry();
        r.add_target("iqn.a", AccessList::Any, vec![(0, lu(1))]).unwrap();
        let h = nx("iqn.h", "iqn.a");
        r.set_target(
            "iqn.a",
            AccessList::Only(vec!["iqn.h".into()]),
            vec![
                (0, lu(1), AccessList::Any),
                (4, lu(4), AccessList::Only(vec!["iqn.other".into()])),
                (2, lu(2), AccessList::Any),
            ],
        );
        assert_eq!(r.target_luns("iqn.a").iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 2, 4]);
        assert!(r.lookup(&h, "iqn.a", 2).is_some());
        assert!(r.lookup(&h, "iqn.a", 4).is_none(), "masked");
        assert!(matches!(r.resolve(&h, 1, 3, &naa(2)), Resolution::Local(x) if x.lun == 2));
        assert!(!r.admits("iqn.a", "iqn.x") && r.admits("iqn.a", "iqn.h"));
        r.set_target("iqn.a", AccessList::Any, vec![(0, lu(1), AccessList::Any)]);
        assert!(r.lookup(&h, "iqn.a", 2).is_none(), "removed LUN");
        assert!(matches!(r.resolve(&h, 1, 3, &naa(2)), Resolution::Unreachable), "its designator is gone");
        assert!(r.remove_target("iqn.a"));
        assert!(!r.remove_target("iqn.a"));
        assert!(r.lookup(&h, "iqn.a", 0).is_none());
        assert!(matches!(r.resolve(&h, 1, 3, &naa(1)), Resolution::Unreachable));
        assert!(r.target_names().is_empty());
    }

    #[test]
    fn shared_lu_prefers_own_target() {
        let r = crate::testing::registry();
        let shared = lu(7);
        r.add_target("iqn.a", AccessList::Any, vec![(3, shared.clone())]).unwrap();
        r.add_target("iqn.b", AccessList::Any, vec![(9, shared.clone()), (MAX_LUN + 1, lu(8)), (9, lu(9))]).unwrap();
        assert_eq!(r.target_luns("iqn.b").len(), 1);
        let on_b = nx("iqn.h", "iqn.b");
        assert!(matches!(r.resolve(&on_b, 1, 3, &naa(7)), Resolution::Local(x) if x.lun == 9 && &*x.target == "iqn.b"));
        assert_eq!(r.all_lus().len(), 1);
    }
}
