//! Persistent-reservation state files (APTPL): one per LUN,
//! `<data_dir>/pr-<target>-<lun>.state`, written atomically (temporary file,
//! fsync, rename, fsync of the directory) so a crash leaves the old or the
//! new state, never a torn one. The SCSI layer decides what to save and
//! when; this module only moves bytes.

use anyhow::{Context, Result};
use oxcopy_scsi::{LogicalUnit, PrStore};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The state file of one LUN.
#[derive(Debug)]
pub struct FilePrStore {
    path: PathBuf,
    tmp: PathBuf,
}

/// `pr-<target>-<lun>.state`, with anything but `[A-Za-z0-9.:_-]` in the
/// target name replaced (names are validated at start; this keeps the path
/// inside the data directory whatever happens).
pub fn file_name(target: &str, lun: u16) -> String {
    let safe: String = target
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '_' | '-') { c } else { '_' })
        .collect();
    format!("pr-{safe}-{lun}.state")
}

impl FilePrStore {
    /// The store of LUN `lun` of `target` under `data_dir`.
    pub fn new(data_dir: &Path, target: &str, lun: u16) -> FilePrStore {
        let name = file_name(target, lun);
        FilePrStore { path: data_dir.join(&name), tmp: data_dir.join(format!(".{name}.tmp")) }
    }

    /// Where the state lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl PrStore for FilePrStore {
    fn load(&self) -> io::Result<Option<Vec<u8>>> {
        match fs::read(&self.path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn save(&self, bytes: &[u8]) -> io::Result<()> {
        // Saves of one LU are serialized by the SCSI layer, so one fixed
        // temporary name per LU suffices.
        {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&self.tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        fs::rename(&self.tmp, &self.path)?;
        let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        File::open(dir)?.sync_all()
    }
}

/// Give `lu` its state file and restore the registrations it holds. A file
/// that cannot be read or is not a valid state refuses the start (dropping
/// a reservation silently could let two cluster nodes write at once).
pub fn attach(lu: &LogicalUnit, data_dir: &Path, target: &str, lun: u16) -> Result<()> {
    let store = Arc::new(FilePrStore::new(data_dir, target, lun));
    let path = store.path().to_path_buf();
    let restored = lu.attach_pr_store(store).with_context(|| {
        format!("LUN {lun} of {target}: {} (fix or remove the file to start without it)", path.display())
    })?;
    if restored {
        tracing::info!(target, lun, "restored persistent reservations (APTPL) from {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_directory() {
        assert_eq!(file_name("iqn.2026-11.dev.oxcopy:default", 3), "pr-iqn.2026-11.dev.oxcopy:default-3.state");
        assert_eq!(file_name("../x/y", 0), "pr-.._x_y-0.state");
    }

    #[test]
    fn save_then_load_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let s = FilePrStore::new(dir.path(), "iqn.2026-11.a:b", 1);
        assert_eq!(s.load().unwrap(), None);
        s.save(b"one").unwrap();
        s.save(b"two").unwrap();
        assert_eq!(s.load().unwrap().as_deref(), Some(&b"two"[..]));
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("pr-iqn.2026-11.a:b-1.state")]);
    }
}
