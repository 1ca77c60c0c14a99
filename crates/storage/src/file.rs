//! Sparse-file backend: a LUN is a regular file of fixed size, accessed with
//! positional I/O through the page cache (no O_DIRECT, on purpose).
//!
//! Capabilities (hole punching, reflink, allocation status, filesystem block
//! size) are probed once at open. `copy_range` between two files walks the
//! source's allocation map and, per extent, uses FICLONERANGE (block-aligned
//! middle), then copy_file_range(2), then a userspace buffer, falling back
//! whenever a faster method is unavailable; source holes are not read at all.

use crate::{
    check_range, generic_copy_range, generic_write_zeroes, AllocationRun, Capabilities, CopyMethod, CopyReport, Result,
    Storage, StorageError, StorageErrorKind, COPY_CHUNK,
};
use rustix::fs::{self as rfs, AtFlags, FallocateFlags, Mode, OFlags};
use rustix::io::Errno;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// How to open a file-backed LUN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// When the file is missing, create it sparse with this size. When it
    /// exists, its size must equal this value: an existing file is never
    /// resized (a mismatch is a [`StorageErrorKind::SizeMismatch`] error).
    pub create_size: Option<u64>,
    /// Open read-only: writes, discards and copies into the store fail with
    /// [`StorageErrorKind::ReadOnly`]; a missing file is never created.
    pub read_only: bool,
}

/// Source holes shorter than this are copied along with the data around them
/// (one bigger copy beats several tiny copies and hole punches).
const HOLE_SKIP_MIN: u64 = 64 * 1024;

/// Largest single FICLONERANGE call (bounds the time one ioctl holds locks).
const REFLINK_CHUNK: u64 = 1 << 30;

/// Largest single copy_file_range call.
const CFR_CHUNK: u64 = 64 << 20;

/// A LUN backed by a regular file, accessed with positional I/O.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    path: PathBuf,
    /// Size in bytes: grows (never shrinks) with [`Storage::grow`]; range
    /// checks read it, so I/O never sees a length it may not use.
    len: AtomicU64,
    read_only: bool,
    caps: Capabilities,
    /// (st_dev, st_ino): recognises the same file behind another descriptor.
    id: (u64, u64),
    /// FALLOC_FL_ZERO_RANGE still believed to work (cleared on EOPNOTSUPP).
    zero_range: AtomicBool,
    /// Start writeback every so many written bytes (off by default).
    write_behind: crate::write_behind::WriteBehind,
    /// `preadv2(RWF_NOWAIT)` still believed to work (cleared when the file
    /// system refuses it).
    nowait_reads: AtomicBool,
    /// Short writes done inline, and how quick they have been.
    inline_writes: InlineWrites,
}

/// How [`Storage::try_write_at`] decides that a write is quick.
///
/// Where the file system has non-blocking buffered writes
/// (`pwritev2(RWF_NOWAIT)`: XFS, btrfs), the kernel decides: a write that
/// would wait for I/O or a lock is declined. Elsewhere (ext4, tmpfs...) a
/// buffered write of a few pages normally only copies into the page cache,
/// so it is done, and timed: one that takes longer than [`SLOW_WRITE`]
/// (dirty-page throttling, a journal commit, another command holding the
/// inode) turns inline writes off for [`SLOW_WRITE_PAUSE`], doubled for
/// each further slow write within [`SLOW_WRITE_MEMORY`] of the last (at
/// most 64×): a file system that keeps struggling costs a receiving thread
/// fewer and fewer slow writes.
#[derive(Debug)]
struct InlineWrites {
    /// `pwritev2(RWF_NOWAIT)` still believed to work.
    nowait: AtomicBool,
    /// Inline writes are off until this many ns after `epoch`.
    paused_until: AtomicU64,
    /// When the last slow write ended (ns after `epoch`; 0: none yet).
    last_slow: AtomicU64,
    /// log2 of the current pause, in units of `SLOW_WRITE_PAUSE`.
    backoff: std::sync::atomic::AtomicU32,
    epoch: std::time::Instant,
}

/// An inline write slower than this pauses inline writes.
const SLOW_WRITE: std::time::Duration = std::time::Duration::from_micros(500);
/// For this long at first.
const SLOW_WRITE_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);
/// A slow write this long after the last one starts again from the first pause.
const SLOW_WRITE_MEMORY: std::time::Duration = std::time::Duration::from_secs(60);

impl Default for InlineWrites {
    fn default() -> Self {
        InlineWrites {
            nowait: AtomicBool::new(true),
            paused_until: AtomicU64::new(0),
            last_slow: AtomicU64::new(0),
            backoff: std::sync::atomic::AtomicU32::new(0),
            epoch: std::time::Instant::now(),
        }
    }
}

impl InlineWrites {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
    fn paused(&self) -> bool {
        self.now() < self.paused_until.load(Ordering::Relaxed)
    }
    /// A timed write started at `start` (ns) is over.
    fn took(&self, start: u64) {
        let end = self.now();
        let took = end.saturating_sub(start);
        if took <= SLOW_WRITE.as_nanos() as u64 {
            return;
        }
        let last = self.last_slow.swap(end, Ordering::Relaxed);
        let shift = if last != 0 && end.saturating_sub(last) < SLOW_WRITE_MEMORY.as_nanos() as u64 {
            (self.backoff.load(Ordering::Relaxed) + 1).min(6)
        } else {
            0
        };
        self.backoff.store(shift, Ordering::Relaxed);
        let pause = (SLOW_WRITE_PAUSE.as_nanos() as u64) << shift;
        tracing::debug!(
            took_us = took / 1000,
            pause_ms = pause / 1_000_000,
            "a short write was slow; inline writes paused"
        );
        self.paused_until.store(end.saturating_add(pause), Ordering::Relaxed);
    }
}

impl FileStorage {
    /// Open the backing file at `path`, creating it sparse when it is missing
    /// and `opts.create_size` is given. An existing file is never resized.
    ///
    /// Creation is atomic: the file is built as an unnamed O_TMPFILE (or a
    /// hidden temporary name) and linked into place only once it has its
    /// size, so a failure never leaves a half-made file behind.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<FileStorage> {
        let file = match open_existing(path, opts.read_only) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => match opts.create_size {
                None => {
                    return Err(StorageError::io(
                        format!("open {}: file does not exist and no create size was given", path.display()),
                        err,
                    ))
                }
                Some(size) if opts.read_only => {
                    return Err(StorageError::io(
                        format!(
                            "open {}: file does not exist and is not created in read-only mode (size {size})",
                            path.display()
                        ),
                        err,
                    ))
                }
                Some(size) => match create_sparse(path, size) {
                    Ok(file) => file,
                    // Someone else created it between our open and our link:
                    // open theirs (the size check below still applies).
                    Err(err) if err.kind() == io::ErrorKind::AlreadyExists => open_existing(path, false)
                        .map_err(|e| StorageError::io(format!("open {} (created concurrently)", path.display()), e))?,
                    Err(err) => {
                        return Err(StorageError::io(format!("create {} with {size} bytes", path.display()), err))
                    }
                },
            },
            Err(err) if err.raw_os_error() == Some(Errno::ISDIR.raw_os_error()) => {
                return Err(StorageError::new(
                    StorageErrorKind::Unsupported,
                    format!("{}: not a regular file (a directory)", path.display()),
                ))
            }
            Err(err) => return Err(StorageError::io(format!("open {}", path.display()), err)),
        };
        Self::from_file(file, path.to_path_buf(), opts)
    }

    /// Wrap an open file, validating its type and size and probing capabilities.
    fn from_file(file: File, path: PathBuf, opts: &OpenOptions) -> Result<FileStorage> {
        let st = rfs::fstat(&file).map_err(|e| StorageError::errno(format!("fstat {}", path.display()), e))?;
        if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
            return Err(StorageError::new(
                StorageErrorKind::Unsupported,
                format!("{}: not a regular file", path.display()),
            ));
        }
        let len = st.st_size as u64;
        if let Some(want) = opts.create_size {
            if want != len {
                return Err(StorageError::new(
                    StorageErrorKind::SizeMismatch,
                    format!(
                        "{}: existing file is {len} bytes but {want} bytes are configured; \
                         refusing to resize it",
                        path.display()
                    ),
                ));
            }
        }
        let caps = probe_capabilities(&file, parent_dir(&path), len, opts.read_only);
        Ok(FileStorage {
            file,
            path,
            len: AtomicU64::new(len),
            read_only: opts.read_only,
            caps,
            id: (st.st_dev, st.st_ino),
            zero_range: AtomicBool::new(!opts.read_only),
            write_behind: Default::default(),
            nowait_reads: AtomicBool::new(true),
            inline_writes: InlineWrites::default(),
        })
    }

    /// Write-behind: start writeback of the written range after every
    /// `bytes` written (`None`: leave it to the kernel's flusher), so the
    /// file never holds much more dirty data than the disk lags behind.
    pub fn set_write_behind(&self, bytes: Option<u64>) {
        self.write_behind.set(bytes);
    }

    /// Writebacks write-behind has started on this file so far.
    pub fn writebacks_started(&self) -> u64 {
        self.write_behind.started()
    }

    /// The path this store was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Point-in-time copy of `offset..offset+len` into a new hidden file in
    /// the same directory (an unlinked O_TMPFILE: it disappears when the
    /// returned store is dropped). Shares extents with reflink where the
    /// filesystem supports it (then it costs metadata only; keep `offset`
    /// aligned to `capabilities().fs_block_size`), else it is a real copy.
    pub fn snapshot_range(&self, offset: u64, len: u64) -> Result<(FileStorage, CopyReport)> {
        check_range(self.size(), offset, len)?;
        let dir = parent_dir(&self.path);
        let ctx = || format!("snapshot {}+{len} of {}", offset, self.path.display());
        let file = create_anonymous(dir).map_err(|e| StorageError::io(ctx(), e))?;
        file.set_len(len).map_err(|e| StorageError::io(ctx(), e))?;
        let st = rfs::fstat(&file).map_err(|e| StorageError::errno(ctx(), e))?;
        let snap = FileStorage {
            file,
            path: dir.join(format!(
                "(snapshot of {} at {offset})",
                self.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
            )),
            len: AtomicU64::new(len),
            read_only: false,
            caps: self.caps,
            id: (st.st_dev, st.st_ino),
            zero_range: AtomicBool::new(true),
            write_behind: Default::default(),
            nowait_reads: AtomicBool::new(true),
            inline_writes: InlineWrites::default(),
        };
        let report = snap.copy_range(0, self, offset, len)?;
        Ok((snap, report))
    }

    /// A hidden (unlinked) sparse file of `len` bytes in this store's directory.
    fn anonymous_sibling(&self, len: u64, what: &str) -> Result<FileStorage> {
        let dir = parent_dir(&self.path);
        let ctx = || format!("{what} of {len} bytes beside {}", self.path.display());
        let file = create_anonymous(dir).map_err(|e| StorageError::io(ctx(), e))?;
        file.set_len(len).map_err(|e| StorageError::io(ctx(), e))?;
        let st = rfs::fstat(&file).map_err(|e| StorageError::errno(ctx(), e))?;
        Ok(FileStorage {
            file,
            path: dir.join(format!(
                "({what} of {})",
                self.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
            )),
            len: AtomicU64::new(len),
            read_only: false,
            caps: self.caps,
            id: (st.st_dev, st.st_ino),
            zero_range: AtomicBool::new(true),
            write_behind: Default::default(),
            nowait_reads: AtomicBool::new(true),
            inline_writes: InlineWrites::default(),
        })
    }

    /// A plain write, already counted by write-behind, that pauses inline
    /// writes if it was slow (see [`InlineWrites`]).
    fn timed_write(&self, buf: &[u8], offset: u64) -> Result<()> {
        let start = self.inline_writes.now();
        let r = self
            .file
            .write_all_at(buf, offset)
            .map_err(|e| StorageError::io(self.ctx(format_args!("write {} bytes at {offset}", buf.len())), e));
        self.inline_writes.took(start);
        r
    }

    /// `len` bytes at `offset` were written: write-behind's accounting.
    fn wrote(&self, offset: u64, len: u64) {
        if let Some((off, len)) = self.write_behind.wrote(offset, len) {
            crate::write_behind::start_writeback(self.file.as_fd(), off, len);
        }
    }

    /// The current size in bytes.
    fn size(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    fn ctx(&self, what: std::fmt::Arguments<'_>) -> String {
        format!("{}: {what}", self.path.display())
    }

    fn check_writable(&self, what: &str) -> Result<()> {
        if self.read_only {
            return Err(StorageError::new(
                StorageErrorKind::ReadOnly,
                format!("{}: {what} on a read-only store", self.path.display()),
            ));
        }
        Ok(())
    }

    fn punch_hole(&self, offset: u64, len: u64) -> std::result::Result<(), Errno> {
        retry_eintr(|| rfs::fallocate(&self.file, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, offset, len))
    }

    /// Make `offset..offset+len` read zeroes, deallocating when that is
    /// known to read back zero (used for source holes during copies).
    fn fill_hole(&self, offset: u64, len: u64) -> Result<()> {
        if self.caps.discard && self.caps.discard_zeroes {
            match self.punch_hole(offset, len) {
                Ok(()) => return Ok(()),
                Err(e) if is_fallback_errno(e) => {}
                Err(e) => return Err(StorageError::errno(self.ctx(format_args!("punch hole {offset}+{len}")), e)),
            }
        }
        self.write_zeroes(offset, len)
    }

    /// (st_dev, st_ino) of `fd` equals ours.
    fn is_same_file(&self, fd: BorrowedFd<'_>) -> Result<bool> {
        let st = rfs::fstat(fd).map_err(|e| StorageError::errno(self.ctx(format_args!("fstat copy source")), e))?;
        Ok((st.st_dev, st.st_ino) == self.id)
    }

    /// Copy one data extent from a file source: reflink for the block-aligned
    /// middle when possible, copy_file_range / read-write for the rest.
    #[allow(clippy::too_many_arguments)]
    fn copy_file_extent(
        &self,
        dst_offset: u64,
        src: &dyn Storage,
        src_fd: BorrowedFd<'_>,
        src_offset: u64,
        len: u64,
        st: &mut CopyState,
        report: &mut CopyReport,
    ) -> Result<()> {
        let bs = u64::from(self.caps.fs_block_size.max(1));
        if st.try_reflink && src_offset % bs == dst_offset % bs {
            let head = ((bs - src_offset % bs) % bs).min(len);
            let mid = (len - head) / bs * bs;
            if mid > 0 {
                self.copy_kernel(dst_offset, src, src_fd, src_offset, head, st, report)?;
                let mut done = 0;
                while done < mid && st.try_reflink {
                    let n = (mid - done).min(REFLINK_CHUNK);
                    let (s, d) = (src_offset + head + done, dst_offset + head + done);
                    match retry_eintr(|| ficlonerange(self.file.as_fd(), src_fd, s, n, d)) {
                        Ok(()) => {
                            report.add(CopyMethod::Reflink, n);
                            done += n;
                        }
                        Err(e) if is_fallback_errno(e) => st.try_reflink = false,
                        Err(e) => {
                            return Err(StorageError::errno(
                                self.ctx(format_args!("FICLONERANGE {n} bytes from {s} to {d}")),
                                e,
                            ))
                        }
                    }
                }
                let rest_off = head + done;
                return self.copy_kernel(
                    dst_offset + rest_off,
                    src,
                    src_fd,
                    src_offset + rest_off,
                    len - rest_off,
                    st,
                    report,
                );
            }
        }
        self.copy_kernel(dst_offset, src, src_fd, src_offset, len, st, report)
    }

    /// copy_file_range loop, finishing with read/write when it is unavailable.
    #[allow(clippy::too_many_arguments)]
    fn copy_kernel(
        &self,
        dst_offset: u64,
        src: &dyn Storage,
        src_fd: BorrowedFd<'_>,
        src_offset: u64,
        len: u64,
        st: &mut CopyState,
        report: &mut CopyReport,
    ) -> Result<()> {
        let mut done = 0u64;
        while done < len && st.try_cfr {
            let mut s = src_offset + done;
            let mut d = dst_offset + done;
            let want = (len - done).min(CFR_CHUNK) as usize;
            match rfs::copy_file_range(src_fd, Some(&mut s), &self.file, Some(&mut d), want) {
                // 0 means the source ended early: let read/write report it.
                Ok(0) => break,
                Ok(n) => {
                    report.add(CopyMethod::CopyFileRange, n as u64);
                    done += n as u64;
                }
                Err(Errno::INTR) => {}
                Err(e) if is_fallback_errno(e) => st.try_cfr = false,
                Err(e) => {
                    return Err(StorageError::errno(
                        self.ctx(format_args!(
                            "copy_file_range {want} bytes from {} to {}",
                            src_offset + done,
                            dst_offset + done
                        )),
                        e,
                    ))
                }
            }
        }
        self.copy_rw(dst_offset + done, src, src_offset + done, len - done, st, report)
    }

    /// Positional read/write through the call's reused buffer.
    fn copy_rw(
        &self,
        dst_offset: u64,
        src: &dyn Storage,
        src_offset: u64,
        len: u64,
        st: &mut CopyState,
        report: &mut CopyReport,
    ) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        if st.buf.is_empty() {
            st.buf = vec![0u8; COPY_CHUNK.min(usize::try_from(len).unwrap_or(COPY_CHUNK))];
        }
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(st.buf.len() as u64) as usize;
            let chunk = &mut st.buf[..n];
            src.read_at(chunk, src_offset + done)?;
            self.write_at(chunk, dst_offset + done)?;
            done += n as u64;
        }
        report.add(CopyMethod::ReadWrite, len);
        Ok(())
    }
}

/// Per-call copy state: which fast paths are still worth trying, and the
/// read/write buffer (allocated on first use, reused for every extent).
struct CopyState {
    try_reflink: bool,
    try_cfr: bool,
    buf: Vec<u8>,
}

impl Storage for FileStorage {
    fn len(&self) -> u64 {
        self.size()
    }

    /// Extend the file to `new_len` (sparse), then make the new bytes
    /// addressable. The length only ever grows, so a range check that passed
    /// against the old one stays true for I/O in flight.
    fn grow(&self, new_len: u64) -> Result<()> {
        self.check_writable("grow")?;
        let cur = self.size();
        if new_len < cur {
            return Err(StorageError::new(
                StorageErrorKind::Unsupported,
                self.ctx(format_args!("shrinking from {cur} to {new_len} bytes is not supported")),
            ));
        }
        if new_len == cur {
            return Ok(());
        }
        self.file
            .set_len(new_len)
            .map_err(|e| StorageError::io(self.ctx(format_args!("grow from {cur} to {new_len} bytes")), e))?;
        self.len.store(new_len, Ordering::Release);
        Ok(())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(self.size(), offset, buf.len() as u64)?;
        self.file.read_exact_at(buf, offset).map_err(|e| {
            let what = if e.kind() == io::ErrorKind::UnexpectedEof {
                " (file is shorter than the store size; truncated behind our back?)"
            } else {
                ""
            };
            StorageError::io(self.ctx(format_args!("read {} bytes at {offset}{what}", buf.len())), e)
        })
    }

    /// `preadv2(RWF_NOWAIT)`: succeeds only when every page is cached. A
    /// short read (part of the range cached) or EAGAIN is "would wait";
    /// a file system without NOWAIT support turns the attempt off for good.
    fn try_read_at(&self, buf: &mut [u8], offset: u64) -> Result<bool> {
        check_range(self.size(), offset, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(true);
        }
        if !self.nowait_reads.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let mut iov = [io::IoSliceMut::new(buf)];
        match rustix::io::preadv2(&self.file, &mut iov, offset, rustix::io::ReadWriteFlags::NOWAIT) {
            Ok(n) => Ok(n == iov[0].len()),
            Err(Errno::AGAIN | Errno::INTR) => Ok(false),
            Err(Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS) => {
                self.nowait_reads.store(false, Ordering::Relaxed);
                Ok(false)
            }
            Err(e) => Err(StorageError::errno(self.ctx(format_args!("read {} bytes at {offset}", buf.len())), e)),
        }
    }

    /// See [`InlineWrites`].
    fn try_write_at(&self, buf: &[u8], offset: u64) -> Result<bool> {
        check_range(self.size(), offset, buf.len() as u64)?;
        self.check_writable("write")?;
        let iw = &self.inline_writes;
        // Starting write-behind's writeback can take 100 ms (random
        // writes): the write that makes it due is done where waiting is
        // allowed.
        if iw.paused() || !self.write_behind.count_unless_due(offset, buf.len() as u64) {
            return Ok(false);
        }
        if iw.nowait.load(Ordering::Relaxed) {
            let iov = [io::IoSlice::new(buf)];
            match rustix::io::pwritev2(&self.file, &iov, offset, rustix::io::ReadWriteFlags::NOWAIT) {
                Ok(n) if n == buf.len() => return Ok(true),
                // Part written without waiting: the rest may wait (timed).
                Ok(n) => return self.timed_write(&buf[n..], offset + n as u64).map(|()| true),
                Err(Errno::AGAIN | Errno::INTR) => return Ok(false),
                Err(Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS) => iw.nowait.store(false, Ordering::Relaxed),
                Err(e) => {
                    return Err(StorageError::errno(self.ctx(format_args!("write {} bytes at {offset}", buf.len())), e))
                }
            }
        }
        self.timed_write(buf, offset).map(|()| true)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(self.size(), offset, buf.len() as u64)?;
        self.check_writable("write")?;
        self.file
            .write_all_at(buf, offset)
            .map_err(|e| StorageError::io(self.ctx(format_args!("write {} bytes at {offset}", buf.len())), e))?;
        self.wrote(offset, buf.len() as u64);
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        retry_eintr(|| rfs::fdatasync(&self.file))
            .map_err(|e| StorageError::errno(self.ctx(format_args!("fdatasync")), e))
    }

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        check_range(self.size(), offset, len)?;
        self.check_writable("discard")?;
        if len == 0 {
            return Ok(());
        }
        self.fill_hole(offset, len)
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        check_range(self.size(), offset, len)?;
        self.check_writable("write zeroes")?;
        if len == 0 {
            return Ok(());
        }
        if self.zero_range.load(Ordering::Relaxed) {
            let flags = FallocateFlags::ZERO_RANGE | FallocateFlags::KEEP_SIZE;
            match retry_eintr(|| rfs::fallocate(&self.file, flags, offset, len)) {
                Ok(()) => return Ok(()),
                Err(e) if is_fallback_errno(e) => self.zero_range.store(false, Ordering::Relaxed),
                Err(e) => return Err(StorageError::errno(self.ctx(format_args!("zero range {offset}+{len}")), e)),
            }
        }
        if self.caps.discard && self.caps.discard_zeroes {
            match self.punch_hole(offset, len) {
                Ok(()) => return Ok(()),
                Err(e) if is_fallback_errno(e) => {}
                Err(e) => return Err(StorageError::errno(self.ctx(format_args!("punch hole {offset}+{len}")), e)),
            }
        }
        generic_write_zeroes(self, offset, len)
    }

    fn allocation(&self, offset: u64, len: u64) -> Result<AllocationRun> {
        check_range(self.size(), offset, len)?;
        if len == 0 || !self.caps.allocation_status {
            return Ok(AllocationRun { mapped: true, len });
        }
        let seek = |pos| retry_eintr(|| rfs::seek(&self.file, pos));
        match seek(rfs::SeekFrom::Data(offset)) {
            Ok(data) if data <= offset => {
                // Data here: it runs to the next hole (EOF is always a hole).
                let hole = seek(rfs::SeekFrom::Hole(offset))
                    .map_err(|e| StorageError::errno(self.ctx(format_args!("SEEK_HOLE from {offset}")), e))?;
                Ok(AllocationRun { mapped: true, len: hole.saturating_sub(offset).clamp(1, len) })
            }
            Ok(data) => Ok(AllocationRun { mapped: false, len: (data - offset).min(len) }),
            // No data at or after `offset`: a hole to the end.
            Err(Errno::NXIO) => Ok(AllocationRun { mapped: false, len }),
            Err(e) if is_fallback_errno(e) => Ok(AllocationRun { mapped: true, len }),
            Err(e) => Err(StorageError::errno(self.ctx(format_args!("SEEK_DATA from {offset}")), e)),
        }
    }

    fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.file.as_fd())
    }

    /// Reflink every range into one unlinked file: only when the filesystem
    /// shares extents and every range is aligned to its block size, so the
    /// snapshot costs metadata alone.
    fn snapshot(&self, ranges: &[(u64, u64)]) -> Result<Option<Arc<dyn Storage>>> {
        let bs = u64::from(self.caps.fs_block_size.max(1));
        let aligned = ranges.iter().all(|&(off, len)| {
            off.checked_add(len).is_some_and(|end| end <= self.size()) && off % bs == 0 && len % bs == 0
        });
        if !self.caps.reflink || self.read_only || !aligned {
            return Ok(None);
        }
        let Some(total) = ranges.iter().try_fold(0u64, |a, &(_, l)| a.checked_add(l)) else { return Ok(None) };
        let snap = self.anonymous_sibling(total, "snapshot")?;
        let mut at = 0u64;
        for &(off, len) in ranges {
            let mut done = 0u64;
            while done < len {
                let n = (len - done).min(REFLINK_CHUNK);
                match retry_eintr(|| ficlonerange(snap.file.as_fd(), self.file.as_fd(), off + done, n, at + done)) {
                    Ok(()) => {}
                    Err(e) if is_fallback_errno(e) => return Ok(None),
                    Err(e) => {
                        return Err(StorageError::errno(self.ctx(format_args!("snapshot clone {}+{n}", off + done)), e))
                    }
                }
                done += n;
            }
            at += len;
        }
        Ok(Some(Arc::new(snap)))
    }

    fn scratch(&self, len: u64) -> Result<Option<Arc<dyn Storage>>> {
        Ok(Some(Arc::new(self.anonymous_sibling(len, "scratch")?)))
    }

    fn copy_range(&self, dst_offset: u64, src: &dyn Storage, src_offset: u64, len: u64) -> Result<CopyReport> {
        check_range(src.len(), src_offset, len)?;
        check_range(self.size(), dst_offset, len)?;
        self.check_writable("copy into")?;
        let mut report = CopyReport::default();
        if len == 0 {
            return Ok(report);
        }
        if src.read_map(src_offset, len)?.is_some() {
            // A volume: leaf by leaf.
            return crate::copy_mapped(self, dst_offset, src, src_offset, len);
        }
        let src_fd = src.as_fd();
        if let Some(fd) = src_fd {
            let overlap = src_offset < dst_offset + len && dst_offset < src_offset + len;
            if overlap && self.is_same_file(fd)? {
                // Kernel copies refuse overlapping ranges of one file; the
                // generic copy picks the safe direction.
                return generic_copy_range(self, dst_offset, src, src_offset, len);
            }
        }
        let mut st = CopyState { try_reflink: self.caps.reflink, try_cfr: true, buf: Vec::new() };
        let mut done = 0u64;
        while done < len {
            let run = next_run(src, src_offset + done, len - done)?;
            if !run.mapped && run.len >= HOLE_SKIP_MIN {
                self.fill_hole(dst_offset + done, run.len)?;
                report.add(CopyMethod::Hole, run.len);
                done += run.len;
                continue;
            }
            // A data extent, extended over further data and small holes.
            let mut end = done + run.len;
            while end < len {
                let next = next_run(src, src_offset + end, len - end)?;
                if !next.mapped && next.len >= HOLE_SKIP_MIN {
                    break;
                }
                end += next.len;
            }
            let (d, s, n) = (dst_offset + done, src_offset + done, end - done);
            match src_fd {
                Some(fd) => self.copy_file_extent(d, src, fd, s, n, &mut st, &mut report)?,
                None => self.copy_rw(d, src, s, n, &mut st, &mut report)?,
            }
            done = end;
        }
        Ok(report)
    }
}

/// The source's next allocation run, never empty (guards against a backend
/// reporting a zero-length run, which would loop forever).
fn next_run(src: &dyn Storage, offset: u64, len: u64) -> Result<AllocationRun> {
    let run = src.allocation(offset, len)?;
    Ok(AllocationRun { mapped: run.mapped || run.len == 0, len: run.len.clamp(1, len) })
}

/// Errors meaning "this method is not available here": fall back to a slower one.
fn is_fallback_errno(e: Errno) -> bool {
    matches!(e, Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::TXTBSY)
}

fn retry_eintr<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}

fn open_existing(path: &Path, read_only: bool) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(!read_only)
        // std already sets O_CLOEXEC; spelled out because it matters here.
        .custom_flags(OFlags::CLOEXEC.bits() as i32)
        .open(path)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// An unnamed O_TMPFILE in `dir`; `Ok(None)` when the filesystem or kernel
/// does not support O_TMPFILE.
fn open_tmpfile(dir: &Path) -> io::Result<Option<OwnedFd>> {
    match rfs::openat(rfs::CWD, dir, OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC, Mode::from_raw_mode(0o600)) {
        Ok(fd) => Ok(Some(fd)),
        // EISDIR: kernel without O_TMPFILE (treated as O_DIRECTORY);
        // EOPNOTSUPP/EINVAL: filesystem without it.
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A hidden, uniquely named temporary file next to `path`.
fn named_temp(dir: &Path, stem: &str) -> io::Result<(File, PathBuf)> {
    loop {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{stem}.oxcopy-tmp.{}.{n}", std::process::id()));
        match std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&tmp) {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Removes a temporary name unless disarmed.
struct RemoveOnDrop<'a>(Option<&'a Path>);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Create `path` as a sparse file of `size` bytes, atomically: the file only
/// appears under its name once complete. `AlreadyExists` if it appeared meanwhile.
fn create_sparse(path: &Path, size: u64) -> io::Result<File> {
    let dir = parent_dir(path);
    if let Some(fd) = open_tmpfile(dir)? {
        let file = File::from(fd);
        file.set_len(size)?;
        file.sync_all()?;
        link_tmpfile(&file, path)?;
        sync_dir(dir)?;
        return Ok(file);
    }
    let stem = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (file, tmp) = named_temp(dir, &stem)?;
    let _cleanup = RemoveOnDrop(Some(&tmp));
    file.set_len(size)?;
    file.sync_all()?;
    // link(2) never replaces an existing name (unlike rename).
    std::fs::hard_link(&tmp, path)?;
    drop(_cleanup);
    sync_dir(dir)?;
    Ok(file)
}

/// Give an O_TMPFILE a name. AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the
/// /proc/self/fd route works without it.
fn link_tmpfile(file: &File, path: &Path) -> io::Result<()> {
    match rfs::linkat(file, c"", rfs::CWD, path, AtFlags::EMPTY_PATH) {
        Ok(()) => Ok(()),
        Err(Errno::NOENT | Errno::PERM | Errno::INVAL) => {
            let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
            rfs::linkat(rfs::CWD, proc_path.as_str(), rfs::CWD, path, AtFlags::SYMLINK_FOLLOW).map_err(io::Error::from)
        }
        Err(e) => Err(e.into()),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    let fd = rfs::openat(rfs::CWD, dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    retry_eintr(|| rfs::fsync(&fd)).map_err(io::Error::from)
}

/// Remove what a crashed process left of our temporary files in `dir`:
/// hidden `.<stem>.oxcopy-tmp.<pid>.<n>` names (the fallback where O_TMPFILE
/// is unsupported: a LUN being created, a snapshot or scratch file between
/// creation and unlink) whose process no longer runs. Returns what was
/// removed. Call at start, before serving.
pub fn remove_stale_temporaries(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let me = std::process::id();
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(tail) = name.strip_prefix('.').and_then(|n| n.split_once(".oxcopy-tmp.")).map(|(_, t)| t) else {
            continue;
        };
        let Some(pid) = tail.split_once('.').and_then(|(p, n)| n.parse::<u64>().ok().and(p.parse::<u32>().ok())) else {
            continue;
        };
        if pid == me || Path::new(&format!("/proc/{pid}")).exists() || !entry.file_type()?.is_file() {
            continue;
        }
        std::fs::remove_file(entry.path())?;
        removed.push(entry.path());
    }
    Ok(removed)
}

/// An unlinked file in `dir` (O_TMPFILE, or a temporary name removed at once).
fn create_anonymous(dir: &Path) -> io::Result<File> {
    if let Some(fd) = open_tmpfile(dir)? {
        return Ok(File::from(fd));
    }
    let (file, tmp) = named_temp(dir, "snapshot")?;
    std::fs::remove_file(&tmp)?;
    Ok(file)
}

/// Filesystem block size (reflink alignment): statfs f_bsize, else st_blksize, else 4096.
fn fs_block_size(file: &File) -> u32 {
    let sane = |v: u64| (512..=(1 << 20)).contains(&v) && v.is_power_of_two();
    if let Ok(sfs) = rfs::fstatfs(file) {
        let bs = sfs.f_bsize as u64;
        if sane(bs) {
            return bs as u32;
        }
    }
    if let Ok(st) = rfs::fstat(file) {
        let bs = st.st_blksize as u64;
        if sane(bs) {
            return bs as u32;
        }
    }
    4096
}

fn probe_capabilities(file: &File, dir: &Path, len: u64, read_only: bool) -> Capabilities {
    let fs_block_size = fs_block_size(file);
    let bs = u64::from(fs_block_size);
    // Punch a block-sized hole just past EOF with KEEP_SIZE: changes nothing,
    // but fails with EOPNOTSUPP where punching is unsupported.
    let discard = !read_only && {
        let past_eof = len.div_ceil(bs).saturating_add(1).saturating_mul(bs);
        retry_eintr(|| rfs::fallocate(file, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, past_eof, bs))
            .is_ok()
    };
    let allocation_status = matches!(retry_eintr(|| rfs::seek(file, rfs::SeekFrom::Data(0))), Ok(_) | Err(Errno::NXIO));
    Capabilities { discard, discard_zeroes: discard, allocation_status, reflink: probe_reflink(dir, bs), fs_block_size }
}

/// Clone one block between two unnamed temporary files in `dir` (same
/// filesystem as the LUN, and the LUN itself is never touched). False when
/// the probe cannot run (no O_TMPFILE, read-only directory) or fails.
fn probe_reflink(dir: &Path, bs: u64) -> bool {
    let probe = || -> io::Result<bool> {
        let (Some(a), Some(b)) = (open_tmpfile(dir)?, open_tmpfile(dir)?) else {
            return Ok(false);
        };
        let a = File::from(a);
        a.write_all_at(&vec![0x5a; bs as usize], 0)?;
        Ok(ficlonerange(b.as_fd(), a.as_fd(), 0, bs, 0).is_ok())
    };
    probe().unwrap_or(false)
}

/// `struct file_clone_range` from <linux/fs.h>.
#[repr(C)]
struct FileCloneRange {
    src_fd: i64,
    src_offset: u64,
    src_length: u64,
    dest_offset: u64,
}

/// FICLONERANGE = _IOW(0x94, 13, struct file_clone_range).
const FICLONERANGE: rustix::ioctl::Opcode = rustix::ioctl::opcode::write::<FileCloneRange>(0x94, 13);
const _: () = assert!(FICLONERANGE as u64 == 0x4020_940d);

/// Share `len` bytes of `src` at `src_offset` into `dst` at `dst_offset`.
fn ficlonerange(
    dst: BorrowedFd<'_>,
    src: BorrowedFd<'_>,
    src_offset: u64,
    len: u64,
    dst_offset: u64,
) -> rustix::io::Result<()> {
    let arg =
        FileCloneRange { src_fd: i64::from(src.as_raw_fd()), src_offset, src_length: len, dest_offset: dst_offset };
    // SAFETY: FICLONERANGE only reads a `struct file_clone_range` (the
    // #[repr(C)] layout above, 32 bytes, matching the opcode's size field) and
    // writes nothing back; `src` is a borrowed, open descriptor for the whole call.
    unsafe { rustix::ioctl::ioctl(dst, rustix::ioctl::Setter::<FICLONERANGE, FileCloneRange>::new(arg)) }
}

#[cfg(test)]
mod grow_tests {
    use super::*;

    #[test]
    fn grow_extends_sparse_and_never_shrinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lun.img");
        let s = FileStorage::open(&path, &OpenOptions { create_size: Some(8192), read_only: false }).expect("open");
        s.write_at(&[7u8; 512], 7680).expect("write at the end");
        assert_eq!(s.write_at(&[1u8; 512], 8192).expect_err("past the end").kind, StorageErrorKind::OutOfRange);
        s.grow(16384).expect("grow");
        assert_eq!(s.len(), 16384);
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 16384);
        s.write_at(&[1u8; 512], 15872).expect("write at the new end");
        let mut buf = [9u8; 512];
        s.read_at(&mut buf, 8192).expect("read the grown part");
        assert_eq!(buf, [0u8; 512], "grown bytes read as zeroes");
        s.read_at(&mut buf, 7680).expect("read old data");
        assert_eq!(buf, [7u8; 512]);
        assert_eq!(s.grow(4096).expect_err("shrink").kind, StorageErrorKind::Unsupported);
        assert_eq!(s.len(), 16384);
        s.grow(16384).expect("same size is a no-op");
        drop(s);
        let ro = FileStorage::open(&path, &OpenOptions { create_size: None, read_only: true }).expect("open ro");
        assert_eq!(ro.grow(32768).expect_err("read-only").kind, StorageErrorKind::ReadOnly);
    }
}

#[cfg(test)]
mod nowait_tests {
    use super::*;

    /// A cached range is read without waiting; a range evicted from the page
    /// cache is "would wait" (on file systems with NOWAIT reads) and never
    /// returns wrong bytes; out-of-range is refused like `read_at`.
    #[test]
    fn try_read_at_reads_cached_bytes_and_declines_evicted_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lun.img");
        let s = FileStorage::open(&path, &OpenOptions { create_size: Some(1 << 20), read_only: false }).expect("open");
        let data: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        s.write_at(&data, 4096).expect("write");
        let mut buf = vec![0u8; data.len()];
        assert!(s.try_read_at(&mut buf, 4096).expect("try read"), "bytes just written are cached");
        assert_eq!(buf, data);
        assert!(s.try_read_at(&mut [], 0).expect("empty"));
        let mut past = [0u8; 512];
        assert_eq!(s.try_read_at(&mut past, 1 << 20).expect_err("past the end").kind, StorageErrorKind::OutOfRange);

        s.flush().expect("flush");
        rfs::fadvise(&s.file, 0, None, rfs::Advice::DontNeed).expect("evict");
        let mut buf = vec![0u8; data.len()];
        match s.try_read_at(&mut buf, 4096).expect("try read after eviction") {
            // tmpfs and the like keep every page in memory.
            true => assert_eq!(buf, data, "a successful nowait read returns the data"),
            false => {
                s.read_at(&mut buf, 4096).expect("read");
                assert_eq!(buf, data);
            }
        }
    }
}

#[cfg(test)]
mod inline_write_tests {
    use super::*;

    #[test]
    fn try_write_at_writes_until_writeback_is_due_and_pauses_after_a_slow_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lun.img");
        let s = FileStorage::open(&path, &OpenOptions { create_size: Some(1 << 20), read_only: false }).expect("open");
        s.set_write_behind(Some(16384));
        let data = vec![0x5Au8; 4096];
        for i in 0..3u64 {
            assert!(s.try_write_at(&data, i * 4096).expect("write"), "write {i} is quick");
        }
        assert!(!s.try_write_at(&data, 3 * 4096).expect("write"), "the 4th makes writeback due: declined");
        let mut buf = vec![0u8; 4 * 4096];
        s.read_at(&mut buf, 0).expect("read");
        assert_eq!(&buf[..3 * 4096], &vec![0x5Au8; 3 * 4096][..]);
        assert_eq!(&buf[3 * 4096..], &[0u8; 4096][..], "nothing written by the declined write");
        s.write_at(&data, 3 * 4096).expect("written where waiting is allowed");
        assert_eq!(s.writebacks_started(), 1);
        assert!(s.try_write_at(&data, 0).expect("write"), "counting starts again");
        assert_eq!(s.try_write_at(&data, 1 << 20).expect_err("past the end").kind, StorageErrorKind::OutOfRange);

        // A slow write (as if it took 1 ms) pauses inline writes for 1 s;
        // another one soon after, for 2 s.
        let iw = &s.inline_writes;
        std::thread::sleep(std::time::Duration::from_millis(2));
        iw.took(iw.now() - 1_000_000);
        assert!(!s.try_write_at(&data, 0).expect("paused"), "paused after a slow write");
        let pause = |iw: &InlineWrites| iw.paused_until.load(Ordering::Relaxed).saturating_sub(iw.now());
        assert!((900_000_000..=1_000_000_000).contains(&pause(iw)), "{}", pause(iw));
        iw.took(iw.now() - 1_000_000);
        assert!((1_900_000_000..=2_000_000_000).contains(&pause(iw)), "{}", pause(iw));
        iw.took(iw.now() + 1);
        assert!(pause(iw) > 1_900_000_000, "a quick write changes nothing");
    }

    #[test]
    fn try_write_at_refuses_a_read_only_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lun.img");
        drop(FileStorage::open(&path, &OpenOptions { create_size: Some(8192), read_only: false }).expect("create"));
        let ro = FileStorage::open(&path, &OpenOptions { create_size: None, read_only: true }).expect("open ro");
        assert_eq!(ro.try_write_at(&[1u8; 512], 0).expect_err("read-only").kind, StorageErrorKind::ReadOnly);
    }
}
