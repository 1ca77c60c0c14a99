//! Tokens whose ROD lives in storage this node shares with their creator:
//! an RBD snapshot of a cluster this node also serves images of. The bytes
//! are read straight from the cluster (or copied inside it, where the
//! destination's `copy_range` can), never through the creator.
//!
//! While the creator answers, its node-link OPEN still holds the token
//! there (so it is not deleted or expired under the copy) and DEL_TKN goes
//! to it; when it does not (killed after POPULATE TOKEN), the snapshot
//! alone serves the copy — its record in the image metadata says which
//! ranges the token covers — until the next gateway start sweeps it away
//! (`shared_storage::spawn_orphan_sweep`).

use oxcopy_copy::source::RemoteInfo;
use oxcopy_copy::{CopyError, RemoteRod};
use oxcopy_storage::{check_range, Storage};
use std::sync::Arc;

/// A ROD read from shared storage (see the module docs).
#[derive(Debug)]
pub struct DirectRod {
    store: Arc<dyn Storage>,
    info: RemoteInfo,
    /// The creator's open of the token, while it answers.
    link: Option<Arc<dyn RemoteRod>>,
}

impl DirectRod {
    /// The ROD in `store`, described by `info`; `link`: the creator's open.
    pub fn new(store: Arc<dyn Storage>, info: RemoteInfo, link: Option<Arc<dyn RemoteRod>>) -> Self {
        DirectRod { store, info, link }
    }

    /// Whether the creator answered (and holds the token for us).
    pub fn creator_holds(&self) -> bool {
        self.link.is_some()
    }
}

impl RemoteRod for DirectRod {
    fn info(&self) -> RemoteInfo {
        self.info
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), CopyError> {
        check_range(self.store.len(), offset, buf.len() as u64)?;
        Ok(self.store.read_at(buf, offset)?)
    }

    /// DEL_TKN: at the creator when it answers; otherwise the token dies
    /// with it and its snapshot goes at the next sweep.
    fn delete(&self) -> Result<(), CopyError> {
        match &self.link {
            Some(l) => l.delete(),
            None => Ok(()),
        }
    }

    fn store(&self) -> Option<Arc<dyn Storage>> {
        Some(self.store.clone())
    }
}
