//! Local → local between regular files: a small `cp --reflink=auto` that
//! reports what it did. Per extent of the source (holes are not read):
//! FICLONERANGE where the filesystem shares extents, else copy_file_range(2),
//! else read/write — `oxcopy_storage::FileStorage::copy_range` does the
//! per-extent choice and counts bytes per method.

use crate::progress::Progress;
use anyhow::Context;
use oxcopy_storage::{CopyReport, FileStorage, OpenOptions, Storage};
use serde::Serialize;
use std::path::Path;

/// Bytes per `copy_range` call: bounds the time between progress updates.
const STEP: u64 = 256 << 20;

/// Bytes moved by each method.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct LocalReport {
    pub reflink: u64,
    pub copy_file_range: u64,
    pub read_write: u64,
    /// Source holes left as holes (not read, not written).
    pub hole: u64,
}

impl From<CopyReport> for LocalReport {
    fn from(r: CopyReport) -> Self {
        LocalReport { reflink: r.reflink, copy_file_range: r.copy_file_range, read_write: r.read_write, hole: r.hole }
    }
}

impl LocalReport {
    /// `reflink 10 MiB, copy_file_range 54 MiB` (methods that moved bytes).
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            ("reflink", self.reflink),
            ("copy_file_range", self.copy_file_range),
            ("read/write", self.read_write),
            ("holes", self.hole),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(m, n)| format!("{m} {}", crate::human::bytes(*n)))
        .collect();
        if parts.is_empty() {
            "nothing to copy".into()
        } else {
            parts.join(", ")
        }
    }

    /// The method that moved most bytes (for the progress label).
    pub fn main_method(&self) -> &'static str {
        let mut best = ("read/write", self.read_write);
        for (m, n) in [("reflink", self.reflink), ("copy_file_range", self.copy_file_range)] {
            if n > best.1 {
                best = (m, n);
            }
        }
        best.0
    }
}

/// Copy `bytes` bytes from `src` to `dst` (which already exists with at
/// least that size), both regular files. Blocking: run it off the reactor.
pub fn copy_files(src: &Path, dst: &Path, bytes: u64, progress: &Progress) -> anyhow::Result<LocalReport> {
    let s = FileStorage::open(src, &OpenOptions { create_size: None, read_only: true })
        .with_context(|| format!("opening {}", src.display()))?;
    let d = FileStorage::open(dst, &OpenOptions { create_size: None, read_only: false })
        .with_context(|| format!("opening {}", dst.display()))?;
    let mut total = CopyReport::default();
    let mut done = 0u64;
    while done < bytes {
        let n = STEP.min(bytes - done);
        let r = d
            .copy_range(done, &s, done, n)
            .with_context(|| format!("copying {} to {} at byte {done}", src.display(), dst.display()))?;
        total.merge(&r);
        done += n;
        progress.set_label(LocalReport::from(total).main_method());
        progress.inc(n);
    }
    d.flush().with_context(|| format!("flushing {}", dst.display()))?;
    Ok(total.into())
}
