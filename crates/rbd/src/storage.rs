//! [`RbdStorage`]: an RBD image as an [`oxcopy_storage::Storage`], and
//! [`RbdSnapshot`], the read-only view returned by `snapshot`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oxcopy_storage::{
    check_range, generic_copy_range, AllocationRun, Capabilities, CopyMethod, CopyReport, Result, Storage,
    StorageError, StorageErrorKind,
};
use parking_lot::Mutex;

use crate::error::{RbdError, RbdErrorKind};
use crate::locator::{record_key, SnapRecord, SnapshotLocator};
use crate::rados::{bounded, AioOp, Cluster, Image, IoCtx, CREATE_FEATURES, FEATURE_EXCLUSIVE_LOCK, GRACE};
use crate::split::{scan_run, split_at_objects};
use crate::RbdOptions;

/// Most windows one `allocation` call scans (64 objects each).
const MAX_SCAN_WINDOWS: u32 = 16;

/// Snapshot names made by [`RbdStorage::snapshot`] start with this.
pub const SNAPSHOT_PREFIX: &str = "oxcopy.";

/// A Ceph RBD image as a logical unit's backing store.
///
/// Opened with [`RbdStorage::open`]; every call blocks the calling thread
/// (the SCSI layer calls from blocking workers) for at most about the
/// operation timeout without progress from the cluster.
#[derive(Debug)]
pub struct RbdStorage {
    image: Arc<Image>,
    /// Image name without pool (for opening snapshots).
    image_name: String,
    size: AtomicU64,
    obj_size: u64,
    op_timeout: Duration,
    exclusive: bool,
    resize: Mutex<()>,
    /// The cluster's fsid (locators name it).
    fsid: [u8; 16],
    /// RBD image id.
    image_id: String,
}

fn settings(op_timeout: Duration) -> Vec<(&'static str, String)> {
    let secs = format!("{}", op_timeout.as_secs_f64());
    vec![
        // Every OSD / monitor request fails with -ETIMEDOUT after this (0 = never).
        ("rados_osd_op_timeout", secs.clone()),
        ("rados_mon_op_timeout", secs.clone()),
        // rados_connect gives up after this (default 300 s).
        ("client_mount_timeout", secs),
        // The gateway queues itself; the cache slows reads (docs/ceph.md).
        ("rbd_cache", "false".into()),
        // 16.2 defaults to rbd_skip_partial_discard=true with a 64 KiB
        // rbd_discard_granularity_bytes: a discard not covering whole granules
        // is skipped and the old data stays (checked: 5000 bytes at offset 100
        // read back unchanged). Make every discard zero what it covers.
        ("rbd_skip_partial_discard", "false".into()),
    ]
}

impl RbdStorage {
    /// Connect, open (creating it when missing and `create_size` is given) and,
    /// with `exclusive`, take the image's exclusive lock.
    ///
    /// Every step is bounded by `op_timeout` (+ a few seconds of grace): an
    /// unreachable cluster fails with [`RbdErrorKind::Timeout`]. Another
    /// client owning the lock fails with [`RbdErrorKind::LockedByOther`].
    /// With the lock, leftover `oxcopy.*` snapshots of earlier runs (a crash,
    /// or a removal that failed while the cluster was down) are removed.
    pub fn open(opts: &RbdOptions) -> Result<RbdStorage> {
        Self::open_inner(opts).map_err(StorageError::from)
    }

    fn open_inner(opts: &RbdOptions) -> std::result::Result<RbdStorage, RbdError> {
        if opts.op_timeout < Duration::from_millis(100) {
            return Err(RbdError::new(
                RbdErrorKind::InvalidArgument,
                format!("op_timeout {:?} is too short (0 would mean: wait forever)", opts.op_timeout),
            ));
        }
        let wait = opts.op_timeout + GRACE;
        let label = format!("{}/{}", opts.pool, opts.image);
        let cluster = Cluster::connect(&opts.ceph_conf, &opts.user, &settings(opts.op_timeout), wait)?;
        let io = IoCtx::create(&cluster, &opts.pool, wait)?;
        let image = match open_image(&io, &opts.image, None, false, wait) {
            Err(e) if e.kind == RbdErrorKind::NotFound && opts.create_size.is_some() => {
                let size = opts.create_size.unwrap_or(0);
                let (io2, name) = (io.clone(), opts.image.clone());
                match bounded(&format!("creating image {label}"), wait, move || {
                    io2.create_image(&name, size, CREATE_FEATURES)
                }) {
                    Ok(()) => tracing::info!(image = %label, size, "created RBD image"),
                    // Someone else created it meanwhile: open theirs.
                    Err(e) if e.errno == libc::EEXIST => {}
                    Err(e) => return Err(e),
                }
                open_image(&io, &opts.image, None, false, wait)?
            }
            other => other?,
        };
        let img = image.clone();
        let info = bounded(&format!("rbd_stat {label}"), wait, move || img.stat())?;
        if opts.exclusive {
            let img = image.clone();
            let features = bounded(&format!("features of {label}"), wait, move || img.features())?;
            if features & FEATURE_EXCLUSIVE_LOCK == 0 {
                return Err(RbdError::new(
                    RbdErrorKind::Unsupported,
                    format!(
                        "image {label} lacks the exclusive-lock feature (rbd feature enable {label} exclusive-lock)"
                    ),
                ));
            }
            take_lock(&image, &label, opts.takeover, wait)?;
        }
        if opts.exclusive {
            remove_stale_snapshots(&image, wait);
        }
        let fsid = image.ioctx().cluster().fsid()?;
        let img = image.clone();
        let image_id = bounded(&format!("id of {label}"), wait, move || img.id())?;
        Ok(RbdStorage {
            image,
            image_name: opts.image.clone(),
            size: AtomicU64::new(info.size),
            obj_size: info.obj_size,
            op_timeout: opts.op_timeout,
            exclusive: opts.exclusive,
            resize: Mutex::new(()),
            fsid,
            image_id,
        })
    }

    /// `pool/image`.
    pub fn name(&self) -> &str {
        self.image.name()
    }

    /// RADOS object size of the image (bytes).
    pub fn object_size(&self) -> u64 {
        self.obj_size
    }

    /// Whether this handle was opened with (and holds) the exclusive lock.
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    /// Names of all snapshots of the image (`rbd_snap_list`).
    pub fn snapshot_names(&self) -> Result<Vec<String>> {
        let img = self.image.clone();
        Ok(bounded(&format!("listing snapshots of {}", self.name()), self.wait(), move || img.snap_list())?)
    }

    /// The cluster's fsid.
    pub fn cluster_fsid(&self) -> [u8; 16] {
        self.fsid
    }

    /// Open the snapshot a token's `locator` names, through this image's
    /// cluster connection, as a read-only store of the token's ranges laid
    /// end to end (read from the snapshot's record in the image metadata),
    /// which must add up to `bytes`. The snapshot is not removed when the
    /// store is dropped: it belongs to the token's creator.
    ///
    /// Errors: another cluster ([`RbdErrorKind::InvalidArgument`]), the
    /// snapshot or its record gone ([`RbdErrorKind::NotFound`]: the token
    /// ended), a record that does not match the token.
    pub fn open_located(&self, locator: &[u8; 32], bytes: u64) -> Result<Arc<dyn Storage>> {
        Ok(self.open_located_inner(locator, bytes)?)
    }

    fn open_located_inner(&self, locator: &[u8; 32], bytes: u64) -> std::result::Result<Arc<dyn Storage>, RbdError> {
        let bad = |m: String| RbdError::new(RbdErrorKind::InvalidArgument, m);
        let loc = SnapshotLocator::decode(locator).ok_or_else(|| bad("not an RBD snapshot locator".into()))?;
        if !loc.same_cluster(&self.fsid) {
            return Err(bad(format!("the token's snapshot is in another cluster than {}", self.name())));
        }
        let wait = self.wait();
        let io = if self.image.ioctx().id() == i64::from(loc.pool_id) {
            self.image.ioctx().clone()
        } else {
            IoCtx::create_by_id(self.image.ioctx().cluster(), i64::from(loc.pool_id), wait)?
        };
        let (io2, id) = (io.clone(), loc.image_id.clone());
        let head = bounded(&format!("opening image id {id}"), wait, move || {
            Image::open_by_id(io2, &id, None, true).map(Arc::new)
        })?;
        let h = head.clone();
        let snaps = bounded(&format!("snapshots of {}", head.name()), wait, move || h.snap_list_ids())?;
        let gone = || {
            RbdError::new(
                RbdErrorKind::NotFound,
                format!("snapshot #{} of {} is gone (token ended)", loc.snap_id, head.name()),
            )
        };
        let snap_name = snaps
            .into_iter()
            .find(|(sid, n)| *sid == u64::from(loc.snap_id) && n.starts_with(SNAPSHOT_PREFIX))
            .map(|(_, n)| n)
            .ok_or_else(gone)?;
        let (h, key) = (head.clone(), record_key(&snap_name));
        let record = bounded(&format!("record of {}@{snap_name}", head.name()), wait, move || h.metadata_get(&key))?
            .ok_or_else(gone)?;
        let (io2, id, sn) = (io.clone(), loc.image_id.clone(), snap_name.clone());
        let snap = bounded(&format!("opening {}@{snap_name}", head.name()), wait, move || {
            Image::open_by_id(io2, &id, Some(&sn), true).map(Arc::new)
        })?;
        let sp = snap.clone();
        let info = bounded(&format!("rbd_stat {}", snap.name()), wait, move || sp.stat())?;
        let record = SnapRecord::parse(&record, info.size)
            .map_err(|e| RbdError::new(RbdErrorKind::Other, format!("{}@{snap_name}: {e}", head.name())))?;
        if record.total() != bytes {
            return Err(RbdError::new(
                RbdErrorKind::Other,
                format!("{}@{snap_name} covers {} bytes, the token {bytes}", head.name(), record.total()),
            ));
        }
        let (segments, len) = segments_of(&record.ranges);
        Ok(Arc::new(RbdSnapshot {
            snap: Some(snap),
            head: None,
            snap_name,
            segments,
            len,
            obj_size: info.obj_size,
            wait,
            locator: Some(*locator),
        }))
    }

    /// Remove the `oxcopy.*` snapshots of the images of this image's pool
    /// whose tokens died with their gateway: the client that made one (its
    /// record) no longer watches the image, or — no record — nobody watches
    /// it. Returns how many were removed. Run at a gateway's start; a copy
    /// that another gateway is running from such a snapshot after its
    /// creator died fails (its token died with the creator).
    ///
    /// `stop` is asked between images: true ends the sweep early (shutdown).
    pub fn remove_orphan_snapshots(&self, stop: &dyn Fn() -> bool) -> Result<usize> {
        let wait = self.wait();
        let io = self.image.ioctx().clone();
        let io2 = io.clone();
        let images = bounded(&format!("listing pool {}", io.pool()), wait, move || io2.list_images())?;
        let mut removed = 0;
        for (id, name) in images {
            if stop() {
                break;
            }
            if id == self.image_id {
                continue; // ours: cleaned at open, and its live tokens are ours
            }
            match orphans_of(&io, &id, wait) {
                Ok(orphans) if orphans.is_empty() => {}
                Ok(orphans) => {
                    let (io2, id2) = (io.clone(), id.clone());
                    let head = match bounded(&format!("opening {}/{name}", io.pool()), wait, move || {
                        Image::open_by_id(io2, &id2, None, false).map(Arc::new)
                    }) {
                        Ok(h) => h,
                        Err(e) => {
                            tracing::warn!(image = %name, "cannot open to remove orphan snapshots: {e}");
                            continue;
                        }
                    };
                    for snap in orphans {
                        tracing::info!(image = %name, snapshot = %snap, "removing the snapshot of a token whose gateway is gone");
                        if remove_snapshot(&head, &snap, wait) {
                            removed += 1;
                        }
                    }
                }
                Err(e) => tracing::warn!(image = %name, "cannot look for orphan snapshots: {e}"),
            }
        }
        Ok(removed)
    }

    /// Image metadata `key` (`rbd_metadata_get`), `None` when absent; values
    /// are bounded by 64 KiB.
    pub fn metadata_get(&self, key: &str) -> Result<Option<String>> {
        let (img, k) = (self.image.clone(), key.to_owned());
        Ok(bounded(&format!("reading metadata {key} of {}", self.name()), self.wait(), move || img.metadata_get(&k))?)
    }

    /// Set image metadata `key` (`rbd_metadata_set`; at most 64 KiB).
    pub fn metadata_set(&self, key: &str, value: &str) -> Result<()> {
        let (img, k, v) = (self.image.clone(), key.to_owned(), value.to_owned());
        Ok(bounded(&format!("setting metadata {key} of {}", self.name()), self.wait(), move || {
            img.metadata_set(&k, &v)
        })?)
    }

    /// Remove image metadata `key` (absent is fine).
    pub fn metadata_remove(&self, key: &str) -> Result<()> {
        let (img, k) = (self.image.clone(), key.to_owned());
        Ok(bounded(&format!("removing metadata {key} of {}", self.name()), self.wait(), move || {
            img.metadata_remove(&k)
        })?)
    }

    fn wait(&self) -> Duration {
        self.op_timeout + GRACE
    }

    /// Write the record of token snapshot `snap_name` and return its
    /// locator; `None` (logged) when either fails: the token is then read
    /// through this gateway only.
    fn record_snapshot(&self, snap_name: &str, ranges: Vec<(u64, u64)>) -> Option<[u8; 32]> {
        let wait = self.wait();
        let img = self.image.clone();
        let snap_id = match bounded(&format!("snapshots of {}", self.name()), wait, move || img.snap_list_ids()) {
            Ok(list) => list.into_iter().find(|(_, n)| n == snap_name).map(|(id, _)| id)?,
            Err(e) => {
                tracing::warn!(image = %self.name(), "no snapshot id for {snap_name}: {e}");
                return None;
            }
        };
        let loc = SnapshotLocator::new(&self.fsid, self.image.ioctx().id(), snap_id, &self.image_id)?;
        let record = SnapRecord { creator: self.image.ioctx().cluster().instance_id(), ranges };
        match self.metadata_set(&record_key(snap_name), &record.encode()) {
            Ok(()) => Some(loc.encode()),
            Err(e) => {
                tracing::warn!(image = %self.name(), "cannot record snapshot {snap_name}: {e}");
                None
            }
        }
    }
}

/// Lay `ranges` end to end: the segments and their total.
fn segments_of(ranges: &[(u64, u64)]) -> (Vec<Segment>, u64) {
    let mut total = 0u64;
    let segments = ranges
        .iter()
        .map(|&(offset, len)| {
            let s = Segment { at: total, offset, len };
            total = total.saturating_add(len);
            s
        })
        .collect();
    (segments, total)
}

/// The `oxcopy.*` snapshots of image `id` whose creator is gone (see
/// [`RbdStorage::remove_orphan_snapshots`]); read-only, no watch of ours.
fn orphans_of(io: &Arc<IoCtx>, id: &str, wait: Duration) -> std::result::Result<Vec<String>, RbdError> {
    let (io2, id2) = (io.clone(), id.to_owned());
    bounded(&format!("orphan snapshots of image id {id}"), wait, move || {
        let img = Image::open_by_id(io2, &id2, None, true)?;
        let snaps: Vec<String> = img.snap_list()?.into_iter().filter(|n| n.starts_with(SNAPSHOT_PREFIX)).collect();
        if snaps.is_empty() {
            return Ok(Vec::new());
        }
        let watchers = img.watchers()?;
        let mut out = Vec::new();
        for n in snaps {
            let creator = img
                .metadata_get(&record_key(&n))?
                .and_then(|r| r.split(' ').nth(1)?.strip_prefix("creator=")?.parse::<i64>().ok());
            let orphan = match creator {
                Some(c) => !watchers.contains(&c),
                None => watchers.is_empty(),
            };
            if orphan {
                out.push(n);
            }
        }
        Ok(out)
    })
}

/// Longest wait for the exclusive lock at open. A gateway that died holding
/// it keeps it until the OSDs drop its watch (`osd_client_watch_timeout`,
/// 30 s by default); librbd then breaks it and `rbd_lock_acquire` returns.
/// So a restart after a crash waits ~30 s instead of failing.
const LOCK_WAIT: Duration = Duration::from_secs(45);

/// Take the exclusive lock of `image` (managed mode). A live owner fails it
/// with [`RbdErrorKind::LockedByOther`] at once; one that died is waited for
/// (see [`LOCK_WAIT`]). With `takeover`, whoever holds the lock has it
/// broken first (librbd blocklists that client: its I/O is refused from then
/// on), dead or alive, and we take it without waiting.
fn take_lock(image: &Arc<Image>, label: &str, takeover: bool, wait: Duration) -> std::result::Result<(), RbdError> {
    let acquire = || {
        let img = image.clone();
        bounded(&format!("taking the exclusive lock of {label}"), wait.max(LOCK_WAIT), move || img.lock_exclusive())
    };
    let owners = || {
        let img = image.clone();
        bounded(&format!("lock owners of {label}"), wait, move || img.lock_owners())
    };
    let held = |e: &RbdError| matches!(e.errno, libc::EROFS | libc::EBUSY | libc::EEXIST);
    let describe = |o: std::result::Result<Vec<String>, RbdError>| match o {
        Ok(o) if o.is_empty() => "unknown".to_owned(),
        Ok(o) => o.join(", "),
        Err(e) => format!("unknown: {e}"),
    };
    if takeover {
        // The owner may change between the calls (another takeover, a
        // release): a few rounds, then give up.
        let mut last = None;
        for _ in 0..3 {
            let list = owners()?;
            for o in &list {
                tracing::warn!(image = %label, owner = %o, "taking over: breaking the exclusive lock (the owner is blocklisted)");
                let (img, owner) = (image.clone(), o.clone());
                match bounded(&format!("breaking the lock of {o} on {label}"), wait, move || img.lock_break(&owner)) {
                    // Released or broken by someone else meanwhile.
                    Err(e) if matches!(e.errno, libc::ENOENT | libc::EBUSY) => {}
                    other => other?,
                }
            }
            match acquire() {
                Ok(()) => {
                    if !list.is_empty() {
                        tracing::warn!(image = %label, previous = %list.join(", "), "took over the exclusive lock");
                    }
                    return Ok(());
                }
                Err(e) if held(&e) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        let errno = last.as_ref().map_or(libc::EBUSY, |e| e.errno);
        return Err(RbdError {
            kind: RbdErrorKind::LockedByOther,
            errno,
            message: format!("image {label}: the exclusive lock could not be taken over ({})", describe(owners())),
        });
    }
    match acquire() {
        Ok(()) => Ok(()),
        Err(e) if held(&e) => Err(RbdError {
            kind: RbdErrorKind::LockedByOther,
            errno: e.errno,
            message: format!("image {label} is locked exclusively by another client ({})", describe(owners())),
        }),
        // The cluster answered everything before: most likely a holder
        // that died and whose watch has not expired yet.
        Err(e) if e.kind == RbdErrorKind::Timeout => Err(RbdError {
            kind: e.kind,
            errno: e.errno,
            message: format!(
                "image {label}: the exclusive lock (held by {}) was not handed over within {}s: a gateway \
                 that died keeps it until its watch expires (osd_client_watch_timeout), or the cluster stopped \
                 answering; start again, or take the image over with rbd_takeover = true",
                describe(owners()),
                wait.max(LOCK_WAIT).as_secs()
            ),
        }),
        Err(e) => Err(e),
    }
}

fn open_image(
    io: &Arc<IoCtx>,
    name: &str,
    snap: Option<&str>,
    read_only: bool,
    wait: Duration,
) -> std::result::Result<Arc<Image>, RbdError> {
    let (io, n, s) = (io.clone(), name.to_owned(), snap.map(str::to_owned));
    let what = format!("opening image {}/{name}", io.pool());
    bounded(&what, wait, move || Image::open(io, &n, s.as_deref(), read_only).map(Arc::new))
}

/// The first failing op's error, in op order.
fn first_error(what: &str, results: &[(isize, Vec<u8>)]) -> std::result::Result<(), RbdError> {
    match results.iter().find(|(rc, _)| *rc < 0) {
        Some((rc, _)) => Err(RbdError::from_rc(what, *rc as i64)),
        None => Ok(()),
    }
}

/// Read `buf` from the image at the given (image offset, buffer position,
/// length) pieces, all submitted at once.
fn read_pieces(
    image: &Image,
    what: &str,
    buf: &mut [u8],
    pieces: &[(u64, usize, usize)],
    stall: Duration,
) -> std::result::Result<(), RbdError> {
    let ops = pieces.iter().map(|&(offset, _, len)| AioOp::Read { offset, len }).collect();
    let results = image.aio(what, ops, stall)?;
    first_error(what, &results)?;
    for (&(offset, pos, len), (rc, data)) in pieces.iter().zip(&results) {
        let got = usize::try_from(*rc).unwrap_or(0);
        let (Some(dst), Some(src)) = (buf.get_mut(pos..pos + len), data.get(..len)) else {
            return Err(RbdError::new(RbdErrorKind::Other, format!("{what}: internal buffer mismatch")));
        };
        if got != len {
            return Err(RbdError::new(
                RbdErrorKind::Other,
                format!("{what}: short read at {offset}: {got} of {len} bytes (image shrunk behind our back?)"),
            ));
        }
        dst.copy_from_slice(src);
    }
    Ok(())
}

fn to_usize(what: &str, v: u64) -> std::result::Result<usize, RbdError> {
    usize::try_from(v).map_err(|_| RbdError::new(RbdErrorKind::InvalidArgument, format!("{what}: {v} too large")))
}

fn allocation_run(
    image: &Arc<Image>,
    obj_size: u64,
    offset: u64,
    len: u64,
    wait: Duration,
) -> std::result::Result<AllocationRun, RbdError> {
    // One bounded rbd_diff_iterate2 call per window of objects.
    let (mapped, len) = scan_run(offset, len, obj_size, MAX_SCAN_WINDOWS, |o, l| {
        let img = image.clone();
        bounded(&format!("allocation of {} at {o}+{l}", image.name()), wait, move || img.diff_iterate(o, l))
    })?;
    Ok(AllocationRun { mapped, len })
}

impl Storage for RbdStorage {
    fn len(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// `rbd_resize2` with shrinking disallowed.
    fn grow(&self, new_len: u64) -> Result<()> {
        let _g = self.resize.lock();
        let cur = self.len();
        if new_len < cur {
            return Err(StorageError::new(
                StorageErrorKind::Unsupported,
                format!("{}: shrinking from {cur} to {new_len} bytes is not supported", self.name()),
            ));
        }
        if new_len == cur {
            return Ok(());
        }
        let img = self.image.clone();
        bounded(&format!("growing {} to {new_len} bytes", self.name()), self.wait(), move || img.grow(new_len))?;
        self.size.store(new_len, Ordering::Release);
        Ok(())
    }

    /// One `rbd_aio_read` per object touched, all in flight at once.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(self.len(), offset, buf.len() as u64)?;
        let pieces = split_at_objects(offset, buf.len() as u64, self.obj_size)
            .map(|p| (p.offset, p.pos as usize, p.len as usize))
            .collect::<Vec<_>>();
        let what = format!("read {}+{} of {}", offset, buf.len(), self.name());
        Ok(read_pieces(&self.image, &what, buf, &pieces, self.wait())?)
    }

    /// One `rbd_aio_write` per object touched, all in flight at once.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(self.len(), offset, buf.len() as u64)?;
        let what = format!("write {}+{} to {}", offset, buf.len(), self.name());
        let ops = split_at_objects(offset, buf.len() as u64, self.obj_size)
            .map(|p| AioOp::Write { offset: p.offset, data: buf[p.pos as usize..(p.pos + p.len) as usize].to_vec() })
            .collect();
        let results = self.image.aio(&what, ops, self.wait())?;
        Ok(first_error(&what, &results)?)
    }

    /// `rbd_aio_flush` (writes complete only once on the OSDs anyway: the
    /// librbd cache is off).
    fn flush(&self) -> Result<()> {
        let what = format!("flush {}", self.name());
        let results = self.image.aio(&what, vec![AioOp::Flush], self.wait())?;
        Ok(first_error(&what, &results)?)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            discard: true,
            discard_zeroes: true,
            allocation_status: true,
            reflink: false,
            fs_block_size: 512,
        }
    }

    /// `rbd_aio_discard` (whole objects are removed; partial ones zeroed,
    /// since `rbd_skip_partial_discard` is off).
    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        check_range(self.len(), offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let what = format!("discard {offset}+{len} of {}", self.name());
        let results = self.image.aio(&what, vec![AioOp::Discard { offset, len }], self.wait())?;
        Ok(first_error(&what, &results)?)
    }

    /// `rbd_aio_write_zeroes` without THICK_PROVISION: may deallocate.
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        check_range(self.len(), offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let what = format!("write zeroes {offset}+{len} to {}", self.name());
        let ops = split_at_objects(offset, len, 1 << 30)
            .map(|p| Ok(AioOp::WriteZeroes { offset: p.offset, len: to_usize(&what, p.len)? }))
            .collect::<std::result::Result<Vec<_>, RbdError>>()?;
        let results = self.image.aio(&what, ops, self.wait())?;
        Ok(first_error(&what, &results)?)
    }

    /// `rbd_diff_iterate2` at whole-object granularity: an object with any
    /// data is mapped as a whole (data in the parent of a clone counts).
    fn allocation(&self, offset: u64, len: u64) -> Result<AllocationRun> {
        check_range(self.len(), offset, len)?;
        if len == 0 {
            return Ok(AllocationRun { mapped: true, len });
        }
        Ok(allocation_run(&self.image, self.obj_size, offset, len, self.wait())?)
    }

    /// An RBD snapshot `oxcopy.<random hex>` of the whole image (metadata
    /// only, crash-consistent over the image), shown as the `ranges` laid end
    /// to end, read-only. The snapshot is removed when the returned store is
    /// dropped. `Ok(None)` when a range lies outside the image or the cluster
    /// does not support snapshots.
    fn snapshot(&self, ranges: &[(u64, u64)]) -> Result<Option<Arc<dyn Storage>>> {
        let size = self.len();
        if !ranges.iter().all(|&(o, l)| o.checked_add(l).is_some_and(|e| e <= size)) {
            return Ok(None);
        }
        let ranges: Vec<(u64, u64)> = ranges.iter().copied().filter(|r| r.1 > 0).collect();
        if ranges.iter().try_fold(0u64, |t, r| t.checked_add(r.1)).is_none() {
            return Ok(None);
        }
        let (segments, total) = segments_of(&ranges);
        let snap_name = format!("{SNAPSHOT_PREFIX}{:016x}", rand::random::<u64>());
        let img = self.image.clone();
        let n = snap_name.clone();
        match bounded(&format!("snapshot {}@{snap_name}", self.name()), self.wait(), move || img.snap_create(&n)) {
            Ok(()) => {}
            Err(e) if e.kind == RbdErrorKind::Unsupported => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let snap = match open_image(self.image.ioctx(), &self.image_name, Some(&snap_name), true, self.wait()) {
            Ok(s) => s,
            Err(e) => {
                let _ = remove_snapshot(&self.image, &snap_name, self.wait());
                return Err(e.into());
            }
        };
        let locator = self.record_snapshot(&snap_name, ranges);
        Ok(Some(Arc::new(RbdSnapshot {
            snap: Some(snap),
            head: Some(self.image.clone()),
            snap_name,
            segments,
            len: total,
            obj_size: self.obj_size,
            wait: self.wait(),
            locator,
        })))
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    /// From another RBD image (head or [`RbdSnapshot`]) of the same cluster:
    /// whole objects copied by the OSDs (RADOS `copy_from`,
    /// [`oxcopy_storage::CopyMethod::Rados`]), the rest read and written
    /// through librbd ([`oxcopy_storage::CopyMethod::Rbd`]); see
    /// `crate::objcopy` for the conditions. Other sources: the generic path.
    fn copy_range(&self, dst_offset: u64, src: &dyn Storage, src_offset: u64, len: u64) -> Result<CopyReport> {
        let any = src.as_any();
        let source = if let Some(s) = any.and_then(|a| a.downcast_ref::<RbdStorage>()) {
            let overlap = src_offset < dst_offset.saturating_add(len) && dst_offset < src_offset.saturating_add(len);
            if overlap && s.name() == self.name() {
                // Same image, overlapping ranges: the generic copy runs in
                // the safe direction (through librbd).
                let r = generic_copy_range(self, dst_offset, src, src_offset, len)?;
                let mut report = CopyReport::default();
                report.add(CopyMethod::Rbd, r.total());
                return Ok(report);
            }
            crate::objcopy::Source { image: s.image.clone(), snap_name: None, pieces: vec![(src_offset, 0, len)] }
        } else if let Some(s) = any.and_then(|a| a.downcast_ref::<RbdSnapshot>()) {
            s.copy_source(src_offset, len)?
        } else {
            return generic_copy_range(self, dst_offset, src, src_offset, len);
        };
        crate::objcopy::copy_range(self, dst_offset, src, src_offset, len, source)
    }
}

impl crate::objcopy::Dest for RbdStorage {
    fn handle(&self) -> &Arc<Image> {
        &self.image
    }

    fn op_wait(&self) -> Duration {
        self.wait()
    }

    fn exclusive(&self) -> bool {
        self.exclusive
    }

    fn label(&self) -> &str {
        self.image.name()
    }
}

/// With the exclusive lock held at open, no other oxcopy instance can be
/// using this image's `oxcopy.*` snapshots: they are leftovers of a crash or
/// of a removal that failed (cluster down). Remove them, logging failures.
fn remove_stale_snapshots(image: &Arc<Image>, wait: Duration) {
    let img = image.clone();
    match bounded(&format!("listing snapshots of {}", image.name()), wait, move || img.snap_list()) {
        Ok(names) => {
            for n in names.iter().filter(|n| n.starts_with(SNAPSHOT_PREFIX)) {
                tracing::info!(image = %image.name(), snapshot = %n, "removing stale oxcopy snapshot");
                let _ = remove_snapshot(image, n, wait);
            }
        }
        Err(e) => tracing::warn!(image = %image.name(), "cannot look for stale snapshots: {e}"),
    }
}

/// Remove snapshot `name` and its record through `head`, logging (never
/// panicking) on failure. The record goes first: a crash in between leaves
/// a snapshot without a record, which the image's next exclusive opener (or
/// an orphan sweep, when nobody watches the image) removes.
fn remove_snapshot(head: &Arc<Image>, name: &str, wait: Duration) -> bool {
    let img = head.clone();
    let n = name.to_owned();
    let what = format!("removing snapshot {}@{name}", head.name());
    match bounded(&what, wait, move || {
        img.metadata_remove(&record_key(&n))?;
        match img.snap_remove(&n) {
            Err(e) if e.errno == libc::ENOENT => Ok(()),
            other => other,
        }
    }) {
        Ok(()) => {
            tracing::debug!(image = %head.name(), snapshot = name, "removed snapshot");
            true
        }
        Err(e) => {
            tracing::warn!(image = %head.name(), snapshot = name, "cannot remove snapshot: {e}");
            false
        }
    }
}

/// One snapshot range: bytes `at..at+len` of the snapshot store are image
/// bytes `offset..offset+len` at the snapshot.
#[derive(Debug, Clone, Copy)]
struct Segment {
    at: u64,
    offset: u64,
    len: u64,
}

/// A read-only view of an RBD snapshot made by [`RbdStorage`]'s `snapshot`:
/// the requested ranges of the image at snapshot time, laid end to end.
/// Dropping it closes its handle and removes the snapshot.
#[derive(Debug)]
pub struct RbdSnapshot {
    /// Handle opened at the snapshot (Option: closed before the removal).
    snap: Option<Arc<Image>>,
    /// The head image, through which the snapshot is removed on drop;
    /// `None` for a snapshot another gateway made (opened by locator).
    head: Option<Arc<Image>>,
    snap_name: String,
    segments: Vec<Segment>,
    len: u64,
    obj_size: u64,
    wait: Duration,
    /// Where another gateway finds it (None: no record could be written).
    locator: Option<[u8; 32]>,
}

impl RbdSnapshot {
    /// The RBD snapshot's name (`oxcopy.<hex>`).
    pub fn snapshot_name(&self) -> &str {
        &self.snap_name
    }

    fn image(&self) -> std::result::Result<&Arc<Image>, RbdError> {
        self.snap
            .as_ref()
            .ok_or_else(|| RbdError::new(RbdErrorKind::Other, format!("snapshot {} is closed", self.snap_name)))
    }

    /// Map `offset..offset+len` of this store to (image offset, position, length) pieces.
    fn map(&self, offset: u64, len: u64) -> Vec<(u64, u64, u64)> {
        let end = offset.saturating_add(len);
        let mut out = Vec::new();
        for s in &self.segments {
            let (lo, hi) = (offset.max(s.at), end.min(s.at + s.len));
            if lo < hi {
                out.push((s.offset + (lo - s.at), lo - offset, hi - lo));
            }
        }
        out
    }

    /// For a copy from this view (`crate::objcopy`): the handle opened at the
    /// snapshot, the snapshot's name, and `offset..offset+len` of this store
    /// as image pieces.
    pub(crate) fn copy_source(&self, offset: u64, len: u64) -> Result<crate::objcopy::Source> {
        check_range(self.len, offset, len)?;
        Ok(crate::objcopy::Source {
            image: self.image()?.clone(),
            snap_name: Some(self.snap_name.clone()),
            pieces: self.map(offset, len),
        })
    }

    fn read_only(&self, what: &str) -> StorageError {
        RbdError::new(RbdErrorKind::NotWritable, format!("{what}: snapshot {} is read-only", self.snap_name)).into()
    }
}

impl Storage for RbdSnapshot {
    fn len(&self) -> u64 {
        self.len
    }

    fn shared_locator(&self) -> Option<[u8; 32]> {
        self.locator
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(self.len, offset, buf.len() as u64)?;
        let image = self.image()?;
        let pieces = self
            .map(offset, buf.len() as u64)
            .into_iter()
            .flat_map(|(img_off, pos, len)| {
                split_at_objects(img_off, len, self.obj_size)
                    .map(move |p| (p.offset, (pos + p.pos) as usize, p.len as usize))
            })
            .collect::<Vec<_>>();
        let what = format!("read {}+{} of {}", offset, buf.len(), image.name());
        Ok(read_pieces(image, &what, buf, &pieces, self.wait)?)
    }

    fn write_at(&self, _buf: &[u8], offset: u64) -> Result<()> {
        Err(self.read_only(&format!("write at {offset}")))
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            discard: false,
            discard_zeroes: false,
            allocation_status: true,
            reflink: false,
            fs_block_size: 512,
        }
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        Err(self.read_only(&format!("discard {offset}+{len}")))
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        Err(self.read_only(&format!("write zeroes {offset}+{len}")))
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    /// As for the image, clipped to the range the offset falls in.
    fn allocation(&self, offset: u64, len: u64) -> Result<AllocationRun> {
        check_range(self.len, offset, len)?;
        let Some(&(img_off, _, seg_len)) = self.map(offset, len).first() else {
            return Ok(AllocationRun { mapped: true, len });
        };
        Ok(allocation_run(self.image()?, self.obj_size, img_off, seg_len, self.wait)?)
    }
}

impl Drop for RbdSnapshot {
    fn drop(&mut self) {
        // Close our handle on the snapshot first, then remove it via the head.
        drop(self.snap.take());
        if let Some(head) = &self.head {
            let _ = remove_snapshot(head, &self.snap_name, self.wait);
        }
    }
}
