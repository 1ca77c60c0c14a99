//! The two ends of a copy: an iSCSI LUN range, an NVMe namespace range or a
//! local file / block device, with positional async reads and writes for
//! the host copy.

use crate::conn::{retry_ua, IscsiLun};
use crate::fail;
use crate::nvme::{self, NvmeNs};
use crate::sense;
use anyhow::Context;
use bytes::Bytes;
use std::fs::File;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a local path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalKind {
    Regular,
    BlockDevice,
}

/// A local path as found before the copy starts (nothing created yet).
#[derive(Debug, Clone)]
pub struct LocalInfo {
    pub path: PathBuf,
    /// `None` when the path does not exist (a destination to create).
    pub kind: Option<LocalKind>,
    pub size: u64,
    /// (st_dev, st_ino) of an existing path.
    pub id: Option<(u64, u64)>,
}

/// An open local file or block device.
#[derive(Debug, Clone)]
pub struct LocalFile {
    pub path: PathBuf,
    pub kind: LocalKind,
    pub file: Arc<File>,
}

/// Size of an open block device.
fn device_size(f: &File) -> std::io::Result<u64> {
    rustix::fs::seek(f, rustix::fs::SeekFrom::End(0)).map_err(std::io::Error::from)
}

/// Look at a local path (follows symlinks).
pub fn stat_local(path: &Path, role: &str) -> anyhow::Result<LocalInfo> {
    match std::fs::metadata(path) {
        Ok(m) => {
            let ft = m.file_type();
            let kind = if ft.is_file() {
                LocalKind::Regular
            } else if ft.is_block_device() {
                LocalKind::BlockDevice
            } else if ft.is_dir() {
                return Err(fail::usage(format!("{role} {} is a directory", path.display())));
            } else {
                return Err(fail::usage(format!("{role} {} is not a regular file or block device", path.display())));
            };
            let size = match kind {
                LocalKind::Regular => m.len(),
                LocalKind::BlockDevice => {
                    let f = File::open(path)
                        .map_err(|e| fail::usage(format!("cannot open {role} {}: {e}", path.display())))?;
                    device_size(&f).map_err(|e| fail::usage(format!("size of {}: {e}", path.display())))?
                }
            };
            Ok(LocalInfo { path: path.to_path_buf(), kind: Some(kind), size, id: Some((m.dev(), m.ino())) })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(LocalInfo { path: path.to_path_buf(), kind: None, size: 0, id: None })
        }
        Err(e) => Err(fail::usage(format!("{role} {}: {e}", path.display()))),
    }
}

/// Open a local source for reading.
pub fn open_local_source(info: &LocalInfo) -> anyhow::Result<LocalFile> {
    let Some(kind) = info.kind else {
        return Err(fail::usage(format!("source {} does not exist", info.path.display())));
    };
    let file =
        File::open(&info.path).map_err(|e| fail::usage(format!("cannot open source {}: {e}", info.path.display())))?;
    Ok(LocalFile { path: info.path.clone(), kind, file: Arc::new(file) })
}

/// Open (create, or truncate and resize) a local destination for `bytes`
/// bytes. A block device is opened as is (it must be large enough, which the
/// caller checked).
pub fn open_local_destination(info: &LocalInfo, bytes: u64) -> anyhow::Result<LocalFile> {
    let path = &info.path;
    match info.kind {
        Some(LocalKind::BlockDevice) => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .read(true)
                .open(path)
                .map_err(|e| fail::usage(format!("cannot open destination {}: {e}", path.display())))?;
            Ok(LocalFile { path: path.clone(), kind: LocalKind::BlockDevice, file: Arc::new(file) })
        }
        _ => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .read(true)
                .create(true)
                .truncate(true)
                .open(path)
                .map_err(|e| fail::usage(format!("cannot create destination {}: {e}", path.display())))?;
            file.set_len(bytes).with_context(|| format!("resizing {} to {bytes} bytes", path.display()))?;
            Ok(LocalFile { path: path.clone(), kind: LocalKind::Regular, file: Arc::new(file) })
        }
    }
}

/// One side of the copy, open.
#[derive(Debug, Clone)]
pub enum Side {
    Iscsi(Box<IscsiLun>),
    Nvme(Box<NvmeNs>),
    Local(LocalFile),
}

/// A side plus the byte range of it the copy covers.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub side: Side,
    /// Where the copy starts, in bytes from the start of the LUN / file.
    pub offset: u64,
    /// How it was named on the command line (secrets left out).
    pub name: String,
}

impl Endpoint {
    /// Bytes per addressable unit: the LUN's block size, or 1 for files.
    pub fn granularity(&self) -> u64 {
        match &self.side {
            Side::Iscsi(l) => l.block_size as u64,
            Side::Nvme(n) => n.block_size() as u64,
            Side::Local(_) => 1,
        }
    }

    pub fn iscsi(&self) -> Option<&IscsiLun> {
        match &self.side {
            Side::Iscsi(l) => Some(l),
            _ => None,
        }
    }

    pub fn nvme(&self) -> Option<&NvmeNs> {
        match &self.side {
            Side::Nvme(n) => Some(n),
            _ => None,
        }
    }

    pub fn local(&self) -> Option<&LocalFile> {
        match &self.side {
            Side::Local(f) => Some(f),
            _ => None,
        }
    }

    /// Read `len` bytes at `rel` (relative to the copy's start).
    pub async fn read(&self, rel: u64, len: u64) -> anyhow::Result<Bytes> {
        let at = self.offset + rel;
        match &self.side {
            Side::Iscsi(l) => {
                let bs = l.block_size as u64;
                let blocks = u32::try_from(len / bs).context("transfer too large")?;
                retry_ua(|| l.session.read16(l.lun(), at / bs, blocks, l.block_size)).await.map_err(|e| {
                    anyhow::anyhow!("reading {} at LBA {}: {}", self.name, at / bs, sense::describe_error(&e))
                })
            }
            Side::Nvme(n) => {
                let bs = n.block_size() as u64;
                let blocks = u32::try_from(len / bs).context("transfer too large")?;
                n.ctl
                    .ctrl
                    .read(n.nsid(), at / bs, blocks)
                    .await
                    .map_err(|e| anyhow::anyhow!("reading {} at LBA {}: {}", self.name, at / bs, nvme::describe(&e)))
            }
            Side::Local(f) => {
                let file = f.file.clone();
                let path = f.path.clone();
                tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; len as usize];
                    file.read_exact_at(&mut buf, at)
                        .with_context(|| format!("reading {} at byte {at}", path.display()))?;
                    Ok(Bytes::from(buf))
                })
                .await?
            }
        }
    }

    /// Write `data` at `rel`.
    pub async fn write(&self, rel: u64, data: Bytes) -> anyhow::Result<()> {
        let at = self.offset + rel;
        match &self.side {
            Side::Iscsi(l) => {
                let bs = l.block_size as u64;
                retry_ua(|| l.session.write16(l.lun(), at / bs, data.clone(), l.block_size, false)).await.map_err(|e| {
                    anyhow::anyhow!("writing {} at LBA {}: {}", self.name, at / bs, sense::describe_error(&e))
                })
            }
            Side::Nvme(n) => {
                let bs = n.block_size() as u64;
                n.ctl
                    .ctrl
                    .write(n.nsid(), at / bs, data, false)
                    .await
                    .map_err(|e| anyhow::anyhow!("writing {} at LBA {}: {}", self.name, at / bs, nvme::describe(&e)))
            }
            Side::Local(f) => {
                let file = f.file.clone();
                let path = f.path.clone();
                tokio::task::spawn_blocking(move || {
                    file.write_all_at(&data, at).with_context(|| format!("writing {} at byte {at}", path.display()))
                })
                .await?
            }
        }
    }

    /// Make the written data durable (SYNCHRONIZE CACHE / NVMe Flush / fdatasync).
    pub async fn flush(&self) -> anyhow::Result<()> {
        match &self.side {
            Side::Iscsi(l) => match retry_ua(|| l.session.sync_cache16(l.lun(), 0, 0)).await {
                Ok(()) => Ok(()),
                // A target without SYNCHRONIZE CACHE (16) has no cache to flush
                // that it would tell us about.
                Err(e) if sense::sense_of(&e).is_some_and(|s| s.key == 0x5) => Ok(()),
                Err(e) => Err(anyhow::anyhow!("flushing {}: {}", self.name, sense::describe_error(&e))),
            },
            Side::Nvme(n) => match n.ctl.ctrl.flush(n.nsid()).await {
                Ok(()) => Ok(()),
                // No volatile write cache: nothing to flush.
                Err(oxcopy_initiator::nvme::NvmeError::Status { status, .. })
                    if status.same_code(oxcopy_nvme::wire::command::Status::INVALID_OPCODE) =>
                {
                    Ok(())
                }
                Err(e) => Err(anyhow::anyhow!("flushing {}: {}", self.name, nvme::describe(&e))),
            },
            Side::Local(f) => {
                let file = f.file.clone();
                let path = f.path.clone();
                tokio::task::spawn_blocking(move || {
                    file.sync_data().with_context(|| format!("flushing {}", path.display()))
                })
                .await?
            }
        }
    }
}
