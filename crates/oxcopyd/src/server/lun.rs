//! Opening a LUN from its configuration: the same at start and when a
//! reload adds one (used by `startup` and `reload`, which import neither
//! each other).

use crate::config::{Config, LunConfig, TargetConfig};
use crate::identity::{serial_from_naa, Identities};
use anyhow::{Context, Result};
use oxcopy_scsi::{LogicalUnit, LuConfig};
use oxcopy_storage::{FileStorage, OpenOptions, Storage};
use std::collections::HashMap;
use std::sync::Arc;

/// A LUN whose backend the configuration names cannot be had: a cluster
/// that does not answer, an image another gateway holds. `oxcopyd` exits 2
/// for it, as for a configuration that does not validate.
#[derive(Debug, thiserror::Error)]
#[error("cannot open {what}: {source}")]
pub struct LunUnavailable {
    what: String,
    source: oxcopy_storage::StorageError,
}

/// The volumes built at start, by name.
pub(crate) type Volumes = HashMap<String, Arc<oxcopy_volume::Volume>>;

/// Open LUN `l` of target `t` (creating its file when missing), with its
/// stable identity from `ids` (saved by the caller) and its persistent
/// reservations: the same at start and when a reload adds it.
pub(crate) fn open_lun(
    cfg: &Config,
    t: &TargetConfig,
    l: &LunConfig,
    volumes: &Volumes,
    ids: &mut Identities,
) -> Result<Arc<LogicalUnit>> {
    // A writable RBD LUN keeps its reservation state in the image's
    // metadata, so a gateway taking the image over finds it; other LUNs in
    // a file.
    let mut pr_in_image: Option<Arc<dyn crate::pr_store::ImageMetadata>> = None;
    let storage: Arc<dyn Storage> = match &l.volume {
        None if l.rbd.is_some() => {
            let r = l.rbd.as_ref().expect("checked");
            let mut o = oxcopy_rbd::RbdOptions::new(&r.ceph_conf, &r.pool, &r.image);
            o.user = r.user.clone();
            o.create_size = l.size;
            o.op_timeout = std::time::Duration::from_secs(r.timeout_secs);
            // The gateway serving an image holds its exclusive lock: a
            // second gateway asked to serve it refuses to start.
            o.exclusive = !l.read_only;
            // `rbd_takeover`: break another gateway's lock (it is
            // blocklisted: its writes are refused) instead of refusing.
            o.takeover = r.takeover;
            let s = oxcopy_rbd::RbdStorage::open(&o).map_err(|e| LunUnavailable {
                what: format!(
                    "LUN {} of {} on RBD image {}/{} ({})",
                    l.id,
                    t.iqn,
                    r.pool,
                    r.image,
                    r.ceph_conf.display()
                ),
                source: e,
            })?;
            if s.len() == 0 || s.len() % u64::from(l.block_size) != 0 {
                anyhow::bail!(
                    "LUN {} of {}: RBD image {}/{} holds {} bytes, not a positive multiple of the block size {}",
                    l.id,
                    t.iqn,
                    r.pool,
                    r.image,
                    s.len(),
                    l.block_size
                );
            }
            if l.size.is_some_and(|sz| sz != s.len()) {
                anyhow::bail!(
                    "LUN {} of {}: size {} disagrees with RBD image {}/{} of {} bytes",
                    l.id,
                    t.iqn,
                    l.size.unwrap_or(0),
                    r.pool,
                    r.image,
                    s.len()
                );
            }
            let s = Arc::new(s);
            crate::shared_storage::register(&s);
            // Only the lock holder writes the image's state: a read-only
            // LUN (no lock; the image may be served writable elsewhere)
            // keeps its own in the data directory.
            if !l.read_only {
                pr_in_image = rbd_metadata(&s);
            }
            s
        }
        Some(name) => {
            let v = volumes.get(name).with_context(|| format!("LUN {} of {}: no volume '{name}'", l.id, t.iqn))?;
            if v.len() % u64::from(l.block_size) != 0 {
                anyhow::bail!(
                    "LUN {} of {}: volume '{name}' holds {} bytes, not a multiple of the block size {}",
                    l.id,
                    t.iqn,
                    v.len(),
                    l.block_size
                );
            }
            v.clone()
        }
        None => {
            if let Some(dir) = l.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            let f = FileStorage::open(&l.path, &OpenOptions { create_size: l.size, read_only: l.read_only })
                .with_context(|| format!("opening LUN {} of {} at {}", l.id, t.iqn, l.path.display()))?;
            f.set_write_behind(cfg.write_behind);
            Arc::new(f)
        }
    };
    let naa = ids.naa(&t.iqn, l.id);
    let lu = Arc::new(LogicalUnit::new(
        LuConfig {
            block_size: l.block_size,
            read_only: l.read_only,
            serial: serial_from_naa(&naa),
            naa,
            vendor: "OXCOPY".into(),
            product: "oxcopy disk".into(),
            revision: "0001".into(),
        },
        storage,
    ));
    lu.set_third_party_copy(l.third_party_copy);
    match pr_in_image {
        Some(meta) => crate::pr_store::attach_rbd(&lu, meta, &cfg.data_dir, &t.iqn, l.id)?,
        None => crate::pr_store::attach(&lu, &cfg.data_dir, &t.iqn, l.id)?,
    }
    Ok(lu)
}

/// The image metadata of an opened RBD image, for its reservation state.
#[cfg(feature = "ceph")]
fn rbd_metadata(s: &Arc<oxcopy_rbd::RbdStorage>) -> Option<Arc<dyn crate::pr_store::ImageMetadata>> {
    Some(s.clone())
}

/// Without Ceph support no RBD image is ever opened.
#[cfg(not(feature = "ceph"))]
fn rbd_metadata(_: &Arc<oxcopy_rbd::RbdStorage>) -> Option<Arc<dyn crate::pr_store::ImageMetadata>> {
    None
}
