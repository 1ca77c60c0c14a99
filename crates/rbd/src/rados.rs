//! Safe wrappers over [`crate::ffi`]: [`Cluster`] (a connected `rados_t`),
//! [`IoCtx`] (one pool), [`Image`] (an open image or snapshot) and the
//! asynchronous I/O engine ([`Image::aio`]).
//!
//! Ownership encodes the teardown order librados needs: an [`Image`] holds an
//! `Arc<IoCtx>`, an [`IoCtx`] holds an `Arc<Cluster>`, so `rbd_close` runs
//! before `rados_ioctx_destroy`, which runs before `rados_shutdown`, whoever
//! drops last.
//!
//! Every wait is bounded: synchronous librbd calls run on a helper thread via
//! [`bounded`] (the caller stops waiting after the timeout; the thread keeps
//! what it needs alive through `Arc`s and frees it when librbd returns), and
//! AIO waits give up after a stall of the timeout with no completion.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::Path;
use std::ptr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::cstr::{c_name, c_path, c_string};
use crate::error::{RbdError, RbdErrorKind};
use crate::ffi;

/// Longest image metadata value read or written, bytes.
pub const MAX_METADATA: usize = 64 << 10;

/// Extra time granted on top of the cluster-side timeouts before our own
/// waits give up: librados reports -ETIMEDOUT itself at the op timeout, this
/// only catches a wedged client.
pub const GRACE: Duration = Duration::from_secs(5);

/// Run the blocking `f` on a helper thread and wait at most `timeout` for it.
///
/// On timeout the caller gets [`RbdErrorKind::Timeout`]; the thread finishes
/// on its own and drops whatever it owned (closures capture `Arc`s of the
/// handles they use, so nothing is freed under librbd's feet).
pub fn bounded<T: Send + 'static>(
    what: &str,
    timeout: Duration,
    f: impl FnOnce() -> Result<T, RbdError> + Send + 'static,
) -> Result<T, RbdError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("oxcopy-rbd-op".into())
        .spawn(move || {
            // The receiver may be gone (timed out): the value is dropped here.
            let _ = tx.send(f());
        })
        .map_err(|e| RbdError::new(RbdErrorKind::Other, format!("{what}: cannot start a helper thread: {e}")))?;
    match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(RbdError {
            kind: RbdErrorKind::Timeout,
            errno: libc::ETIMEDOUT,
            message: format!("{what}: no answer from the cluster within {timeout:?}"),
        }),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Err(RbdError::new(RbdErrorKind::Other, format!("{what}: helper thread died")))
        }
    }
}

fn check(what: impl FnOnce() -> String, rc: c_int) -> Result<c_int, RbdError> {
    if rc < 0 {
        Err(RbdError::from_rc(what(), i64::from(rc)))
    } else {
        Ok(rc)
    }
}

/// A librados cluster handle, connected.
#[derive(Debug)]
pub struct Cluster {
    raw: ffi::rados_t,
}

// SAFETY: a rados_t is an opaque pointer to a librados RadosClient, which is
// internally synchronized and documented as usable from any thread.
unsafe impl Send for Cluster {}
// SAFETY: as above; all methods take &self and librados locks internally.
unsafe impl Sync for Cluster {}

impl Cluster {
    /// Create a handle for client `user` (the id, e.g. `admin`; a leading
    /// `client.` is dropped), read
    /// `ceph_conf`, apply `settings` (name, value) and connect, waiting at most
    /// `timeout` (set `client_mount_timeout` below it so librados gives up too).
    pub fn connect(
        ceph_conf: &Path,
        user: &str,
        settings: &[(&str, String)],
        timeout: Duration,
    ) -> Result<Arc<Cluster>, RbdError> {
        // Accept "client.admin" as well as "admin": rados_create wants the id.
        let user = user.strip_prefix("client.").unwrap_or(user);
        let id = c_name("client id", user)?;
        let conf = c_path("ceph.conf path", ceph_conf)?;
        let settings = settings
            .iter()
            .map(|(k, v)| Ok((c_string("option", k)?, c_string(k, v)?)))
            .collect::<Result<Vec<_>, RbdError>>()?;
        let mut raw: ffi::rados_t = ptr::null_mut();
        // SAFETY: `raw` is a valid out-pointer; `id` is a NUL-terminated string
        // that outlives the call (librados copies it).
        let rc = unsafe { ffi::rados_create(&mut raw, id.as_ptr()) };
        check(|| format!("rados_create for client.{user}"), rc)?;
        // From here on Drop calls rados_shutdown, which is valid on a handle that
        // never connected.
        let cluster = Cluster { raw };
        // SAFETY: `cluster.raw` is a live, unconnected handle; `conf` outlives the call.
        let rc = unsafe { ffi::rados_conf_read_file(cluster.raw, conf.as_ptr()) };
        check(|| format!("reading {}", ceph_conf.display()), rc)?;
        for (k, v) in &settings {
            // SAFETY: live unconnected handle; both strings are NUL-terminated
            // and outlive the call (librados copies them).
            let rc = unsafe { ffi::rados_conf_set(cluster.raw, k.as_ptr(), v.as_ptr()) };
            check(|| format!("setting {}={}", k.to_string_lossy(), v.to_string_lossy()), rc)?;
        }
        let what = format!("connecting to the cluster of {} as client.{user}", ceph_conf.display());
        let ctx = what.clone();
        bounded(&what, timeout, move || {
            // SAFETY: the handle is live (owned by this closure) and configured;
            // rados_connect is called once.
            let rc = unsafe { ffi::rados_connect(cluster.raw) };
            check(|| ctx, rc)?;
            Ok(Arc::new(cluster))
        })
    }
}

impl Cluster {
    /// The cluster's fsid (`rados_cluster_fsid`), 16 bytes.
    pub fn fsid(&self) -> Result<[u8; 16], RbdError> {
        let mut buf = [0u8; 64];
        // SAFETY: connected handle; `buf` has `buf.len()` writable bytes.
        let rc = unsafe { ffi::rados_cluster_fsid(self.raw, buf.as_mut_ptr().cast(), buf.len()) };
        let n = check(|| "reading the cluster fsid".to_owned(), rc)?;
        let text = &buf[..usize::try_from(n).unwrap_or(0).min(buf.len())];
        parse_fsid(text).ok_or_else(|| {
            RbdError::new(
                RbdErrorKind::Other,
                format!("cluster fsid {:?} is not a UUID", String::from_utf8_lossy(text)),
            )
        })
    }

    /// This client's global id (`rados_get_instance_id`): what `rbd status`
    /// shows as the watcher `client.<id>`.
    pub fn instance_id(&self) -> u64 {
        // SAFETY: connected handle; the call only reads client state.
        unsafe { ffi::rados_get_instance_id(self.raw) }
    }
}

/// A UUID's 32 hex digits (dashes skipped, trailing NUL ignored) as bytes.
pub fn parse_fsid(text: &[u8]) -> Option<[u8; 16]> {
    let digits: Vec<u8> = text.iter().copied().take_while(|&b| b != 0).filter(|&b| b != b'-').collect();
    if digits.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in digits.chunks(2).enumerate() {
        let hex = |b: u8| (b as char).to_digit(16);
        out[i] = u8::try_from(hex(pair[0])? * 16 + hex(pair[1])?).ok()?;
    }
    Some(out)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: `raw` came from rados_create and is shut down exactly once;
        // every IoCtx holds an Arc<Cluster>, so none outlives this.
        unsafe { ffi::rados_shutdown(self.raw) }
    }
}

/// A librados I/O context for one pool.
#[derive(Debug)]
pub struct IoCtx {
    raw: ffi::rados_ioctx_t,
    pool: String,
    cluster: Arc<Cluster>,
}

// SAFETY: a rados_ioctx_t may be used from several threads at once for I/O
// (librados IoCtxImpl is internally locked); we never change its snap context
// or namespace after creation (`IoCtx::for_objects` sets them before the
// value exists).
unsafe impl Send for IoCtx {}
// SAFETY: as above.
unsafe impl Sync for IoCtx {}

impl IoCtx {
    /// Open pool `pool` (looks the pool up in the OSD map: bounded by `timeout`).
    pub fn create(cluster: &Arc<Cluster>, pool: &str, timeout: Duration) -> Result<Arc<IoCtx>, RbdError> {
        let name = c_name("pool", pool)?;
        let cluster = cluster.clone();
        let pool = pool.to_owned();
        bounded(&format!("opening pool {pool}"), timeout, move || {
            let mut raw: ffi::rados_ioctx_t = ptr::null_mut();
            // SAFETY: the cluster handle is connected and kept alive by the Arc
            // this closure owns; `raw` is a valid out-pointer; `name` outlives the call.
            let rc = unsafe { ffi::rados_ioctx_create(cluster.raw, name.as_ptr(), &mut raw) };
            check(|| format!("opening pool {pool}"), rc)?;
            Ok(Arc::new(IoCtx { raw, pool, cluster }))
        })
    }

    /// Open the pool with id `pool_id` (as found in a token's locator).
    pub fn create_by_id(cluster: &Arc<Cluster>, pool_id: i64, timeout: Duration) -> Result<Arc<IoCtx>, RbdError> {
        let cluster = cluster.clone();
        bounded(&format!("opening pool #{pool_id}"), timeout, move || {
            let mut raw: ffi::rados_ioctx_t = ptr::null_mut();
            // SAFETY: the cluster handle is connected and kept alive by the Arc
            // this closure owns; `raw` is a valid out-pointer.
            let rc = unsafe { ffi::rados_ioctx_create2(cluster.raw, pool_id, &mut raw) };
            check(|| format!("opening pool #{pool_id}"), rc)?;
            Ok(Arc::new(IoCtx { raw, pool: format!("#{pool_id}"), cluster }))
        })
    }

    /// The pool name (`#<id>` when opened by id).
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// The pool id (`rados_ioctx_get_id`).
    pub fn id(&self) -> i64 {
        // SAFETY: live ioctx; the call only reads it.
        unsafe { ffi::rados_ioctx_get_id(self.raw) }
    }

    /// The cluster connection this context belongs to.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Images of the pool as (id, name) (`rbd_list2`). Blocking: call
    /// through [`bounded`].
    pub fn list_images(&self) -> Result<Vec<(String, String)>, RbdError> {
        let mut cap = 64usize;
        for _ in 0..8 {
            let mut specs: Vec<ffi::rbd_image_spec_t> =
                (0..cap).map(|_| ffi::rbd_image_spec_t { id: ptr::null_mut(), name: ptr::null_mut() }).collect();
            let mut max = cap;
            // SAFETY: live ioctx; `specs` has room for `max` entries and `max`
            // is a valid in/out pointer.
            let rc = unsafe { ffi::rbd_list2(self.raw, specs.as_mut_ptr(), &mut max) };
            if rc == -libc::ERANGE {
                cap = max.max(cap * 2).min(1 << 20);
                continue;
            }
            check(|| format!("listing the images of pool {}", self.pool), rc)?;
            let n = max.min(cap);
            let out = specs[..n]
                .iter()
                .filter(|s| !s.id.is_null() && !s.name.is_null())
                // SAFETY: librbd filled the first `n` entries with NUL-terminated
                // strings it owns until rbd_image_spec_list_cleanup.
                .map(|s| unsafe {
                    (
                        CStr::from_ptr(s.id).to_string_lossy().into_owned(),
                        CStr::from_ptr(s.name).to_string_lossy().into_owned(),
                    )
                })
                .collect();
            // SAFETY: frees exactly the `n` entries librbd filled, once.
            unsafe { ffi::rbd_image_spec_list_cleanup(specs.as_mut_ptr(), n) };
            return Ok(out);
        }
        Err(RbdError::new(RbdErrorKind::Other, format!("the images of pool {} keep changing", self.pool)))
    }

    /// The raw handle, for the object-copy shim (`crate::objcopy`); valid
    /// as long as `self` is.
    pub(crate) fn raw(&self) -> ffi::rados_ioctx_t {
        self.raw
    }

    /// A fresh context of pool `pool_id` for raw object I/O (blocking: call
    /// through [`bounded`]): reads at snapshot `read_snap` (`None`: the
    /// head), writes with the self-managed snap context `write_snapc`
    /// (`None`: librados' empty default). Set once here, never changed.
    pub fn for_objects(
        cluster: &Arc<Cluster>,
        pool_id: i64,
        read_snap: Option<u64>,
        write_snapc: Option<&SnapContext>,
    ) -> Result<IoCtx, RbdError> {
        let mut raw: ffi::rados_ioctx_t = ptr::null_mut();
        // SAFETY: connected handle kept alive by the Arc; `raw` is a valid out-pointer.
        let rc = unsafe { ffi::rados_ioctx_create2(cluster.raw, pool_id, &mut raw) };
        check(|| format!("opening pool id {pool_id}"), rc)?;
        // From here on Drop destroys `raw`.
        let io = IoCtx { raw, pool: format!("#{pool_id}"), cluster: cluster.clone() };
        if let Some(snap) = read_snap {
            // SAFETY: `io.raw` is live and not shared with anyone yet.
            unsafe { ffi::rados_ioctx_snap_set_read(io.raw, snap) };
        }
        if let Some(snapc) = write_snapc {
            let mut snaps = snapc.snaps.clone();
            let n = c_int::try_from(snaps.len()).map_err(|_| {
                RbdError::new(RbdErrorKind::InvalidArgument, format!("{} snapshots in a snap context", snaps.len()))
            })?;
            // SAFETY: `io.raw` is live and not shared yet; `snaps` holds `n`
            // ids (librados copies them) and outlives the call.
            let rc =
                unsafe { ffi::rados_ioctx_selfmanaged_snap_set_write_ctx(io.raw, snapc.seq, snaps.as_mut_ptr(), n) };
            check(|| format!("setting the snap context {snapc:?} on pool id {pool_id}"), rc)?;
        }
        Ok(io)
    }

    /// The snap context of the RBD image whose header object is `header_oid`
    /// in this pool, as the OSD class `rbd.get_snapcontext` returns it: every
    /// snapshot of the image (user, trash, group and mirror namespaces alike,
    /// unlike `rbd_snap_list`) and the image's snap sequence. One round trip
    /// (blocking: call through [`bounded`]).
    pub fn rbd_snap_context(&self, header_oid: &str) -> Result<SnapContext, RbdError> {
        let oid = c_name("object", header_oid)?;
        let mut cap = 64usize << 10;
        for _ in 0..3 {
            let mut out = vec![0u8; cap];
            // SAFETY: live ioctx; all strings are NUL-terminated and outlive
            // the call; no input; `out` has `cap` writable bytes.
            let rc = unsafe {
                ffi::rados_exec(
                    self.raw,
                    oid.as_ptr(),
                    c"rbd".as_ptr(),
                    c"get_snapcontext".as_ptr(),
                    ptr::null(),
                    0,
                    out.as_mut_ptr().cast(),
                    cap,
                )
            };
            if rc == -libc::ERANGE {
                cap *= 8;
                continue;
            }
            let n = check(|| format!("rbd.get_snapcontext on {}/{header_oid}", self.pool), rc)?;
            out.truncate(usize::try_from(n).unwrap_or(0).min(cap));
            return SnapContext::decode(&out).ok_or_else(|| {
                RbdError::new(RbdErrorKind::Other, format!("{}/{header_oid}: undecodable snap context", self.pool))
            });
        }
        Err(RbdError::new(RbdErrorKind::Other, format!("{}/{header_oid}: snap context too large", self.pool)))
    }

    /// Create image `name` of `size` bytes with `features` (blocking; call
    /// through [`bounded`]). -EEXIST is returned as is.
    pub fn create_image(&self, name: &str, size: u64, features: u64) -> Result<(), RbdError> {
        let cname = c_name("image", name)?;
        let mut opts: ffi::rbd_image_options_t = ptr::null_mut();
        // SAFETY: `opts` is a valid out-pointer; destroyed below on every path.
        unsafe { ffi::rbd_image_options_create(&mut opts) };
        // SAFETY: `opts` is the live options object created above.
        let rc = unsafe { ffi::rbd_image_options_set_uint64(opts, ffi::RBD_IMAGE_OPTION_FEATURES, features) };
        let rc = if rc < 0 {
            rc
        } else {
            // SAFETY: the ioctx is live (&self), `cname` and `opts` outlive the call.
            unsafe { ffi::rbd_create4(self.raw, cname.as_ptr(), size, opts) }
        };
        // SAFETY: `opts` was created above and is destroyed exactly once.
        unsafe { ffi::rbd_image_options_destroy(opts) };
        check(|| format!("creating image {}/{name} of {size} bytes", self.pool), rc).map(drop)
    }
}

impl Drop for IoCtx {
    fn drop(&mut self) {
        // SAFETY: `raw` came from rados_ioctx_create and is destroyed once; every
        // Image holds an Arc<IoCtx>, so all images using it are closed already.
        unsafe { ffi::rados_ioctx_destroy(self.raw) }
    }
}

/// A RADOS self-managed snap context: `seq` and the snapshot ids, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapContext {
    /// The image's snapshot sequence (≥ every id in `snaps`).
    pub seq: u64,
    /// Snapshot ids, descending.
    pub snaps: Vec<u64>,
}

impl SnapContext {
    /// Decode Ceph's encoding (`SnapContext::encode`: seq as u64 LE, then a
    /// u32 LE count and that many u64 LE ids); `None` when malformed. The
    /// ids are sorted descending and `seq` raised to the newest one, as
    /// librados requires.
    pub fn decode(b: &[u8]) -> Option<SnapContext> {
        let seq = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
        let n = u32::from_le_bytes(b.get(8..12)?.try_into().ok()?) as usize;
        let body = b.get(12..)?;
        if body.len() != n.checked_mul(8)? {
            return None;
        }
        let mut snaps: Vec<u64> =
            body.chunks_exact(8).map(|c| c.try_into().map(u64::from_le_bytes)).collect::<Result<_, _>>().ok()?;
        snaps.sort_unstable_by(|a, b| b.cmp(a));
        snaps.dedup();
        let seq = seq.max(snaps.first().copied().unwrap_or(0));
        Some(SnapContext { seq, snaps })
    }
}

/// Where and how an image keeps its data objects (for raw object copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLayout {
    /// Image id (`rbd_get_id`); the header object is `rbd_header.<id>`.
    pub id: String,
    /// Data objects are `<prefix>.<object number as %016x>`.
    pub block_name_prefix: String,
    /// Pool holding the data objects (`rbd_get_data_pool_id`).
    pub data_pool_id: i64,
    /// Object size, bytes.
    pub obj_size: u64,
    /// `rbd_get_stripe_unit` / `rbd_get_stripe_count`.
    pub stripe_unit: u64,
    /// See `stripe_unit`.
    pub stripe_count: u64,
    /// Feature bits.
    pub features: u64,
    /// Bytes shared with a parent image (0: no parent), at the handle's snapshot.
    pub parent_overlap: u64,
}

impl ObjectLayout {
    /// Objects map 1:1 onto image ranges (no fancy striping).
    pub fn plain_objects(&self) -> bool {
        self.obj_size > 0
            && (self.features & ffi::RBD_FEATURE_STRIPINGV2 == 0
                || (self.stripe_unit == self.obj_size && self.stripe_count == 1))
    }

    /// Writes go to a journal first (raw object writes would bypass it).
    pub fn journaling(&self) -> bool {
        self.features & ffi::RBD_FEATURE_JOURNALING != 0
    }

    /// The image has an object map (raw writes do not update it).
    pub fn object_map(&self) -> bool {
        self.features & ffi::RBD_FEATURE_OBJECT_MAP != 0
    }

    /// Name of data object `object_no`.
    pub fn object_name(&self, object_no: u64) -> String {
        format!("{}.{object_no:016x}", self.block_name_prefix)
    }
}

/// Geometry from `rbd_stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    /// Image size in bytes.
    pub size: u64,
    /// RADOS object size in bytes (1 << order).
    pub obj_size: u64,
}

/// An open librbd image (the head, or a snapshot when opened with one).
#[derive(Debug)]
pub struct Image {
    raw: ffi::rbd_image_t,
    name: String,
    io: Arc<IoCtx>,
}

// SAFETY: librbd image handles are thread-safe: ImageCtx guards its state with
// its own locks, and concurrent AIO from several threads is the normal use.
unsafe impl Send for Image {}
// SAFETY: as above.
unsafe impl Sync for Image {}

/// One asynchronous operation for [`Image::aio`].
#[derive(Debug)]
pub enum AioOp {
    /// Read `len` bytes at `offset` into a fresh buffer.
    Read {
        /// Image offset.
        offset: u64,
        /// Bytes.
        len: usize,
    },
    /// Write `data` at `offset`.
    Write {
        /// Image offset.
        offset: u64,
        /// Bytes to write (owned, so a wait that gives up cannot free them
        /// while librbd still reads them).
        data: Vec<u8>,
    },
    /// `rbd_aio_discard`.
    Discard {
        /// Image offset.
        offset: u64,
        /// Bytes.
        len: u64,
    },
    /// `rbd_aio_write_zeroes` (flags 0: may deallocate).
    WriteZeroes {
        /// Image offset.
        offset: u64,
        /// Bytes.
        len: usize,
    },
    /// `rbd_aio_flush`.
    Flush,
}

/// Completion state shared by the waiter and the callbacks of one batch.
struct Batch {
    state: Mutex<BatchState>,
    cv: Condvar,
}

struct BatchState {
    /// Operations submitted and not yet completed.
    pending: usize,
    /// Per operation: return value and its buffer, once complete.
    results: Vec<Option<(isize, Vec<u8>)>>,
}

/// Owned by librbd between submission and the completion callback.
struct InFlight {
    batch: Arc<Batch>,
    idx: usize,
    buf: Vec<u8>,
}

/// Completion callback: runs once per completion on a librbd thread
/// (`io_context_pool`); records the result and wakes the waiter, never blocks
/// beyond the batch mutex.
unsafe extern "C" fn aio_done(c: ffi::rbd_completion_t, arg: *mut c_void) {
    // SAFETY: `arg` is the pointer produced by Box::into_raw in Image::aio for
    // this completion, and librbd calls the callback exactly once, so we are
    // its only owner now. librbd is done with `buf` once the completion fires.
    let op = unsafe { Box::from_raw(arg.cast::<InFlight>()) };
    // SAFETY: `c` is the completion this callback belongs to; it is still
    // valid (we release it just below, and nothing else does).
    let rc = unsafe { ffi::rbd_aio_get_return_value(c) };
    // SAFETY: the caller must release every completion, also from its callback
    // (docs/ceph.md); nothing touches `c` afterwards.
    unsafe { ffi::rbd_aio_release(c) };
    let InFlight { batch, idx, buf } = *op;
    let mut st = batch.state.lock();
    if let Some(slot @ None) = st.results.get_mut(idx) {
        *slot = Some((rc, buf));
        st.pending = st.pending.saturating_sub(1);
    }
    drop(st);
    batch.cv.notify_all();
}

/// No-op progress callback (librbd 16.2 crashes on some NULL progress callbacks).
unsafe extern "C" fn no_progress(_offset: u64, _total: u64, _arg: *mut c_void) -> c_int {
    0
}

/// `rbd_diff_iterate2` callback: appends `(offset, len, exists)` to the Vec at `arg`.
unsafe extern "C" fn diff_cb(off: u64, len: usize, exists: c_int, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `&mut Vec` passed by Image::diff_iterate, which
    // outlives the synchronous rbd_diff_iterate2 call that invokes us, and
    // librbd calls the callback from one thread at a time for one iteration.
    let out = unsafe { &mut *arg.cast::<Vec<(u64, u64, bool)>>() };
    out.push((off, len as u64, exists != 0));
    0
}

impl Image {
    /// Open image `name` (at snapshot `snap` if given); `read_only` opens
    /// without a header watch (`rbd_open_read_only`). Blocking: call through
    /// [`bounded`].
    pub fn open(io: Arc<IoCtx>, name: &str, snap: Option<&str>, read_only: bool) -> Result<Image, RbdError> {
        let cname = c_name("image", name)?;
        let csnap = snap.map(|s| c_name("snapshot", s)).transpose()?;
        let snap_ptr = csnap.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        let mut raw: ffi::rbd_image_t = ptr::null_mut();
        // SAFETY: the ioctx is live (we hold an Arc), `raw` is a valid
        // out-pointer, the name strings outlive the call, NULL snap = head.
        let rc = unsafe {
            if read_only {
                ffi::rbd_open_read_only(io.raw, cname.as_ptr(), &mut raw, snap_ptr)
            } else {
                ffi::rbd_open(io.raw, cname.as_ptr(), &mut raw, snap_ptr)
            }
        };
        let label = match snap {
            Some(s) => format!("{}/{name}@{s}", io.pool),
            None => format!("{}/{name}", io.pool),
        };
        check(|| format!("opening image {label}"), rc)?;
        Ok(Image { raw, name: label, io })
    }

    /// Open the image with id `id` (at snapshot `snap` if given), like
    /// [`Image::open`]. Blocking: call through [`bounded`].
    pub fn open_by_id(io: Arc<IoCtx>, id: &str, snap: Option<&str>, read_only: bool) -> Result<Image, RbdError> {
        let cid = c_name("image id", id)?;
        let csnap = snap.map(|s| c_name("snapshot", s)).transpose()?;
        let snap_ptr = csnap.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        let mut raw: ffi::rbd_image_t = ptr::null_mut();
        // SAFETY: the ioctx is live (we hold an Arc), `raw` is a valid
        // out-pointer, the strings outlive the call, NULL snap = head.
        let rc = unsafe {
            if read_only {
                ffi::rbd_open_by_id_read_only(io.raw, cid.as_ptr(), &mut raw, snap_ptr)
            } else {
                ffi::rbd_open_by_id(io.raw, cid.as_ptr(), &mut raw, snap_ptr)
            }
        };
        let label = match snap {
            Some(s) => format!("{}/id:{id}@{s}", io.pool),
            None => format!("{}/id:{id}", io.pool),
        };
        check(|| format!("opening image {label}"), rc)?;
        Ok(Image { raw, name: label, io })
    }

    /// The image id (`rbd_get_id`).
    pub fn id(&self) -> Result<String, RbdError> {
        let mut buf = [0u8; 128];
        // SAFETY: live handle; `buf` has `buf.len()` writable bytes.
        let rc = unsafe { ffi::rbd_get_id(self.raw, buf.as_mut_ptr().cast(), buf.len()) };
        check(|| format!("reading the id of {}", self.name), rc)?;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
    }

    /// Global ids of the clients watching the image header
    /// (`rbd_watchers_list`): the clients that have it open read-write.
    pub fn watchers(&self) -> Result<Vec<i64>, RbdError> {
        let mut cap = 16usize;
        for _ in 0..8 {
            let mut ws: Vec<ffi::rbd_image_watcher_t> =
                (0..cap).map(|_| ffi::rbd_image_watcher_t { addr: ptr::null_mut(), id: 0, cookie: 0 }).collect();
            let mut max = cap;
            // SAFETY: live handle; `ws` has room for `max` entries and `max`
            // is a valid in/out pointer.
            let rc = unsafe { ffi::rbd_watchers_list(self.raw, ws.as_mut_ptr(), &mut max) };
            if rc == -libc::ERANGE {
                cap = max.max(cap * 2).min(4096);
                continue;
            }
            check(|| format!("listing the watchers of {}", self.name), rc)?;
            let n = max.min(cap);
            let ids = ws[..n].iter().map(|w| w.id).collect();
            // SAFETY: frees the `n` entries librbd filled (their addr strings), once.
            unsafe { ffi::rbd_watchers_list_cleanup(ws.as_mut_ptr(), n) };
            return Ok(ids);
        }
        Err(RbdError::new(RbdErrorKind::Other, format!("the watchers of {} keep changing", self.name)))
    }

    /// `pool/image[@snap]`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pool's I/O context.
    pub fn ioctx(&self) -> &Arc<IoCtx> {
        &self.io
    }

    /// Size and object size (`rbd_stat`).
    pub fn stat(&self) -> Result<ImageInfo, RbdError> {
        // SAFETY: rbd_image_info_t is plain data (integers and char arrays):
        // all-zero is a valid value.
        let mut info: ffi::rbd_image_info_t = unsafe { std::mem::zeroed() };
        // SAFETY: live handle; `info` is writable and we pass its exact size.
        let rc = unsafe { ffi::rbd_stat(self.raw, &mut info, std::mem::size_of::<ffi::rbd_image_info_t>()) };
        check(|| format!("rbd_stat {}", self.name), rc)?;
        Ok(ImageInfo { size: info.size, obj_size: info.obj_size })
    }

    /// Feature bits (`rbd_get_features`).
    pub fn features(&self) -> Result<u64, RbdError> {
        let mut f = 0u64;
        // SAFETY: live handle; `f` is a valid out-pointer.
        let rc = unsafe { ffi::rbd_get_features(self.raw, &mut f) };
        check(|| format!("rbd_get_features {}", self.name), rc)?;
        Ok(f)
    }

    /// Object naming, pool, striping, features and parent of the image at
    /// the handle's snapshot (all local to the open handle).
    pub fn object_layout(&self) -> Result<ObjectLayout, RbdError> {
        let info = self.stat()?;
        let features = self.features()?;
        let (mut unit, mut count) = (0u64, 0u64);
        // SAFETY: live handle; `unit` is a valid out-pointer.
        let rc = unsafe { ffi::rbd_get_stripe_unit(self.raw, &mut unit) };
        check(|| format!("rbd_get_stripe_unit {}", self.name), rc)?;
        // SAFETY: live handle; `count` is a valid out-pointer.
        let rc = unsafe { ffi::rbd_get_stripe_count(self.raw, &mut count) };
        check(|| format!("rbd_get_stripe_count {}", self.name), rc)?;
        let mut overlap = 0u64;
        // SAFETY: live handle; `overlap` is a valid out-pointer.
        let rc = unsafe { ffi::rbd_get_overlap(self.raw, &mut overlap) };
        if rc == -libc::ENOENT {
            overlap = 0;
        } else {
            check(|| format!("rbd_get_overlap {}", self.name), rc)?;
        }
        // SAFETY: live handle (no arguments besides it).
        let data_pool_id = unsafe { ffi::rbd_get_data_pool_id(self.raw) };
        if data_pool_id < 0 {
            return Err(RbdError::from_rc(format!("rbd_get_data_pool_id {}", self.name), data_pool_id));
        }
        let mut id = [0u8; 128];
        // SAFETY: live handle; `id` has `id.len()` writable bytes.
        let rc = unsafe { ffi::rbd_get_id(self.raw, id.as_mut_ptr().cast(), id.len()) };
        check(|| format!("rbd_get_id {}", self.name), rc)?;
        let mut prefix = [0u8; 128];
        // SAFETY: live handle; `prefix` has `prefix.len()` writable bytes.
        let rc = unsafe { ffi::rbd_get_block_name_prefix(self.raw, prefix.as_mut_ptr().cast(), prefix.len()) };
        check(|| format!("rbd_get_block_name_prefix {}", self.name), rc)?;
        let text = |b: &[u8]| {
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            String::from_utf8_lossy(&b[..end]).into_owned()
        };
        Ok(ObjectLayout {
            id: text(&id),
            block_name_prefix: text(&prefix),
            data_pool_id,
            obj_size: info.obj_size,
            stripe_unit: unit,
            stripe_count: count,
            features,
            parent_overlap: overlap,
        })
    }

    /// Whether this client holds the image's exclusive lock now
    /// (`rbd_is_exclusive_lock_owner`, local).
    pub fn is_lock_owner(&self) -> Result<bool, RbdError> {
        let mut owner: c_int = 0;
        // SAFETY: live handle; `owner` is a valid out-pointer.
        let rc = unsafe { ffi::rbd_is_exclusive_lock_owner(self.raw, &mut owner) };
        check(|| format!("rbd_is_exclusive_lock_owner {}", self.name), rc)?;
        Ok(owner != 0)
    }

    /// Id of snapshot `snap` (`rbd_snap_get_id`).
    pub fn snap_id(&self, snap: &str) -> Result<u64, RbdError> {
        let c = c_name("snapshot", snap)?;
        let mut id = 0u64;
        // SAFETY: live handle; `c` outlives the call; `id` is a valid out-pointer.
        let rc = unsafe { ffi::rbd_snap_get_id(self.raw, c.as_ptr(), &mut id) };
        check(|| format!("rbd_snap_get_id {}@{snap}", self.name), rc)?;
        Ok(id)
    }

    /// Take the exclusive lock in managed mode (`rbd_lock_acquire`).
    pub fn lock_exclusive(&self) -> Result<(), RbdError> {
        // SAFETY: live handle; the mode is a valid rbd_lock_mode_t.
        let rc = unsafe { ffi::rbd_lock_acquire(self.raw, ffi::RBD_LOCK_MODE_EXCLUSIVE) };
        check(|| format!("taking the exclusive lock of {}", self.name), rc).map(drop)
    }

    /// Current lock owners (client addresses), `rbd_lock_get_owners`.
    pub fn lock_owners(&self) -> Result<Vec<String>, RbdError> {
        let mut cap = 4usize;
        for _ in 0..4 {
            let mut owners: Vec<*mut c_char> = vec![ptr::null_mut(); cap];
            let mut n = cap;
            let mut mode: ffi::rbd_lock_mode_t = 0;
            // SAFETY: live handle; `owners` has room for `n` pointers; `mode`
            // and `n` are valid out-pointers.
            let rc = unsafe { ffi::rbd_lock_get_owners(self.raw, &mut mode, owners.as_mut_ptr(), &mut n) };
            if rc == -libc::ERANGE && n > cap {
                cap = n;
                continue;
            }
            check(|| format!("listing lock owners of {}", self.name), rc)?;
            let n = n.min(cap);
            let names = owners[..n]
                .iter()
                .filter(|p| !p.is_null())
                // SAFETY: librbd filled the first `n` entries with strdup'ed
                // NUL-terminated strings, freed only by the cleanup call below.
                .map(|&p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
                .collect();
            // SAFETY: releases exactly the `n` strings librbd allocated above.
            unsafe { ffi::rbd_lock_get_owners_cleanup(owners.as_mut_ptr(), n) };
            return Ok(names);
        }
        Err(RbdError::new(RbdErrorKind::Other, format!("lock owners of {} keep changing", self.name)))
    }

    /// Break `owner`'s exclusive lock (`rbd_lock_break`; `owner` as
    /// [`Image::lock_owners`] names it). librbd blocklists the old owner
    /// (`rbd_blocklist_on_break_lock`): its later I/O fails with -ESHUTDOWN.
    pub fn lock_break(&self, owner: &str) -> Result<(), RbdError> {
        let c = c_name("lock owner", owner)?;
        // SAFETY: live handle; the mode is a valid rbd_lock_mode_t; `c`
        // outlives the call.
        let rc = unsafe { ffi::rbd_lock_break(self.raw, ffi::RBD_LOCK_MODE_EXCLUSIVE, c.as_ptr()) };
        check(|| format!("breaking the lock of {owner} on {}", self.name), rc).map(drop)
    }

    /// `rbd_snap_create`.
    pub fn snap_create(&self, snap: &str) -> Result<(), RbdError> {
        let c = c_name("snapshot", snap)?;
        // SAFETY: live handle; `c` outlives the call.
        let rc = unsafe { ffi::rbd_snap_create(self.raw, c.as_ptr()) };
        check(|| format!("creating snapshot {}@{snap}", self.name), rc).map(drop)
    }

    /// `rbd_snap_remove`.
    pub fn snap_remove(&self, snap: &str) -> Result<(), RbdError> {
        let c = c_name("snapshot", snap)?;
        // SAFETY: live handle; `c` outlives the call.
        let rc = unsafe { ffi::rbd_snap_remove(self.raw, c.as_ptr()) };
        check(|| format!("removing snapshot {}@{snap}", self.name), rc).map(drop)
    }

    /// Names of the image's snapshots (`rbd_snap_list`).
    pub fn snap_list(&self) -> Result<Vec<String>, RbdError> {
        Ok(self.snap_list_ids()?.into_iter().map(|(_, n)| n).collect())
    }

    /// The image's snapshots as (id, name) (`rbd_snap_list`).
    pub fn snap_list_ids(&self) -> Result<Vec<(u64, String)>, RbdError> {
        let mut cap: c_int = 16;
        for _ in 0..8 {
            let len = usize::try_from(cap).unwrap_or(16).max(1);
            // SAFETY: rbd_snap_info_t is integers and a pointer: all-zero (NULL
            // name) is a valid value.
            let mut snaps: Vec<ffi::rbd_snap_info_t> = (0..len).map(|_| unsafe { std::mem::zeroed() }).collect();
            let mut max = c_int::try_from(len).unwrap_or(c_int::MAX);
            // SAFETY: live handle; `snaps` has room for `max` entries; `max` is
            // a valid in/out pointer.
            let rc = unsafe { ffi::rbd_snap_list(self.raw, snaps.as_mut_ptr(), &mut max) };
            if rc == -libc::ERANGE {
                cap = max.max(cap.saturating_mul(2));
                continue;
            }
            let n = check(|| format!("listing snapshots of {}", self.name), rc)?;
            let n = usize::try_from(n).unwrap_or(0).min(len);
            let names = snaps[..n]
                .iter()
                .filter(|s| !s.name.is_null())
                // SAFETY: librbd set `name` of the first `n` entries to
                // NUL-terminated strings it owns until rbd_snap_list_end.
                .map(|s| (s.id, unsafe { CStr::from_ptr(s.name) }.to_string_lossy().into_owned()))
                .collect();
            // SAFETY: frees the names librbd allocated into `snaps` above, once.
            unsafe { ffi::rbd_snap_list_end(snaps.as_mut_ptr()) };
            return Ok(names);
        }
        Err(RbdError::new(RbdErrorKind::Other, format!("snapshots of {} keep changing", self.name)))
    }

    /// Image metadata `key` (`rbd_metadata_get`); `Ok(None)` when absent.
    /// Values longer than [`MAX_METADATA`] are refused (the cluster is not
    /// trusted to bound them).
    pub fn metadata_get(&self, key: &str) -> Result<Option<String>, RbdError> {
        let k = c_name("metadata key", key)?;
        let mut cap = 256usize;
        for _ in 0..4 {
            let mut buf = vec![0u8; cap];
            let mut len = cap;
            // SAFETY: live handle; `k` outlives the call; `buf` has `len`
            // writable bytes and `len` is a valid in/out pointer.
            let rc = unsafe { ffi::rbd_metadata_get(self.raw, k.as_ptr(), buf.as_mut_ptr().cast(), &mut len) };
            if rc == -libc::ENOENT {
                return Ok(None);
            }
            if rc == -libc::ERANGE {
                if len > MAX_METADATA + 1 {
                    return Err(RbdError::new(
                        RbdErrorKind::Other,
                        format!("metadata {key} of {} is {len} bytes, more than {MAX_METADATA}", self.name),
                    ));
                }
                cap = len.max(cap * 2).min(MAX_METADATA + 1);
                continue;
            }
            check(|| format!("reading metadata {key} of {}", self.name), rc)?;
            // librbd NUL-terminates the value and may leave `len` unchanged (docs/ceph.md).
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            buf.truncate(end);
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        Err(RbdError::new(RbdErrorKind::Other, format!("metadata {key} of {} keeps growing", self.name)))
    }

    /// Set image metadata `key` to `value` (`rbd_metadata_set`).
    pub fn metadata_set(&self, key: &str, value: &str) -> Result<(), RbdError> {
        if value.len() > MAX_METADATA {
            return Err(RbdError::new(RbdErrorKind::Other, format!("metadata {key}: value of {} bytes", value.len())));
        }
        let k = c_name("metadata key", key)?;
        let v = crate::cstr::c_string("metadata value", value)?;
        // SAFETY: live handle; `k` and `v` outlive the call.
        let rc = unsafe { ffi::rbd_metadata_set(self.raw, k.as_ptr(), v.as_ptr()) };
        check(|| format!("setting metadata {key} of {}", self.name), rc).map(drop)
    }

    /// Remove image metadata `key`; an absent key is not an error.
    pub fn metadata_remove(&self, key: &str) -> Result<(), RbdError> {
        let k = c_name("metadata key", key)?;
        // SAFETY: live handle; `k` outlives the call.
        let rc = unsafe { ffi::rbd_metadata_remove(self.raw, k.as_ptr()) };
        if rc == -libc::ENOENT {
            return Ok(());
        }
        check(|| format!("removing metadata {key} of {}", self.name), rc).map(drop)
    }

    /// Grow to `size` bytes; never shrinks (`rbd_resize2`, allow_shrink false).
    pub fn grow(&self, size: u64) -> Result<(), RbdError> {
        // SAFETY: live handle; allow_shrink=false; the progress callback is a
        // valid no-op function and its data pointer is never dereferenced.
        let rc = unsafe { ffi::rbd_resize2(self.raw, size, false, Some(no_progress), ptr::null_mut()) };
        check(|| format!("growing {} to {size} bytes", self.name), rc).map(drop)
    }

    /// Extents with data in `offset..offset+len` since the image's creation
    /// (`rbd_diff_iterate2`, no from-snapshot, parent included, whole_object 0):
    /// `(offset, len, exists)`.
    pub fn diff_iterate(&self, offset: u64, len: u64) -> Result<Vec<(u64, u64, bool)>, RbdError> {
        let mut out: Vec<(u64, u64, bool)> = Vec::new();
        // SAFETY: live handle; NULL from-snapshot = since creation; `diff_cb`
        // matches the declared callback type and `arg` points to `out`, which
        // outlives this synchronous call and is touched by nobody else meanwhile.
        let rc = unsafe {
            ffi::rbd_diff_iterate2(
                self.raw,
                ptr::null(),
                offset,
                len,
                1,
                0,
                Some(diff_cb),
                (&mut out as *mut Vec<(u64, u64, bool)>).cast(),
            )
        };
        check(|| format!("rbd_diff_iterate2 {} at {offset}+{len}", self.name), rc)?;
        Ok(out)
    }

    /// Submit every op at once and wait until all completed, or until no op
    /// completed for `stall` (then [`RbdErrorKind::Timeout`]; unfinished ops
    /// keep their buffers and free them when they complete). Returns, per op,
    /// librbd's return value (≥ 0: bytes read, or 0) and its buffer (the read
    /// data for reads). Errors of single ops are returned in the vector, not as
    /// `Err`; `Err` is for submission failures and the stall timeout.
    pub fn aio(&self, what: &str, ops: Vec<AioOp>, stall: Duration) -> Result<Vec<(isize, Vec<u8>)>, RbdError> {
        let n = ops.len();
        let batch = Arc::new(Batch {
            state: Mutex::new(BatchState { pending: 0, results: (0..n).map(|_| None).collect() }),
            cv: Condvar::new(),
        });
        let mut submit_error = None;
        for (idx, op) in ops.into_iter().enumerate() {
            // The buffer moves into the InFlight box, which librbd owns until completion.
            let (buf, op) = match op {
                AioOp::Read { offset, len } => (vec![0u8; len], AioOp::Read { offset, len }),
                AioOp::Write { offset, data } => (data, AioOp::Write { offset, data: Vec::new() }),
                other => (Vec::new(), other),
            };
            let inflight = Box::into_raw(Box::new(InFlight { batch: batch.clone(), idx, buf }));
            let mut c: ffi::rbd_completion_t = ptr::null_mut();
            // SAFETY: `inflight` is a valid pointer handed to librbd as the
            // callback argument; `aio_done` has the rbd_callback_t signature;
            // `c` is a valid out-pointer.
            let rc = unsafe { ffi::rbd_aio_create_completion(inflight.cast(), Some(aio_done), &mut c) };
            if rc < 0 {
                // SAFETY: no completion exists, so nobody else will ever see
                // `inflight`: reclaim it.
                drop(unsafe { Box::from_raw(inflight) });
                submit_error = Some(RbdError::from_rc(format!("{what}: rbd_aio_create_completion"), i64::from(rc)));
                break;
            }
            // SAFETY: `inflight` is live until the callback runs, which cannot
            // happen before the submit call below; we only take the buffer's
            // address (stable: a Vec's heap block does not move with the Box).
            let (ptr, blen) = unsafe { ((*inflight).buf.as_mut_ptr(), (*inflight).buf.len()) };
            batch.state.lock().pending += 1;
            // SAFETY: live image handle; `ptr`/`blen` describe a heap buffer
            // owned by `inflight`, which librbd's callback frees only after
            // the operation is complete; `c` is a fresh completion used once.
            let rc = unsafe {
                match op {
                    AioOp::Read { offset, .. } => ffi::rbd_aio_read(self.raw, offset, blen, ptr.cast(), c),
                    AioOp::Write { offset, .. } => {
                        ffi::rbd_aio_write(self.raw, offset, blen, ptr.cast_const().cast(), c)
                    }
                    AioOp::Discard { offset, len } => ffi::rbd_aio_discard(self.raw, offset, len, c),
                    AioOp::WriteZeroes { offset, len } => ffi::rbd_aio_write_zeroes(self.raw, offset, len, c, 0, 0),
                    AioOp::Flush => ffi::rbd_aio_flush(self.raw, c),
                }
            };
            if rc < 0 {
                // Whether librbd will still fire the completion is not
                // specified; mark the slot done so a late callback is ignored,
                // and leak `inflight` and `c` rather than risk a double free.
                // (16.2 queues every valid request and reports errors through
                // the completion, so this path is not expected.)
                let mut st = batch.state.lock();
                if let Some(slot @ None) = st.results.get_mut(idx) {
                    *slot = Some((rc as isize, Vec::new()));
                    st.pending = st.pending.saturating_sub(1);
                }
                drop(st);
                submit_error = Some(RbdError::from_rc(format!("{what}: submitting"), i64::from(rc)));
                break;
            }
        }
        // Wait for everything submitted, even after a submit error: read
        // buffers are ours again only when their completions fired.
        let mut st = batch.state.lock();
        let mut last = st.pending;
        let mut deadline = Instant::now() + stall;
        while st.pending > 0 {
            let timed_out = batch.cv.wait_until(&mut st, deadline).timed_out();
            if st.pending < last {
                last = st.pending;
                deadline = Instant::now() + stall;
            } else if timed_out {
                return Err(RbdError {
                    kind: RbdErrorKind::Timeout,
                    errno: libc::ETIMEDOUT,
                    message: format!(
                        "{what}: {} of {n} operations unanswered after {stall:?} without progress \
                         (writes among them may still be applied)",
                        st.pending
                    ),
                });
            }
        }
        if let Some(e) = submit_error {
            return Err(e);
        }
        Ok(std::mem::take(&mut st.results)
            .into_iter()
            .map(|r| r.unwrap_or((-(libc::EIO as isize), Vec::new())))
            .collect())
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: `raw` came from rbd_open* and is closed exactly once; the
        // IoCtx it uses is kept alive by our Arc until after this returns.
        // rbd_close waits for in-flight AIO, whose buffers are owned by their
        // callbacks, not by us.
        let rc = unsafe { ffi::rbd_close(self.raw) };
        if rc < 0 {
            tracing::warn!(image = %self.name, "rbd_close: {}", RbdError::from_rc("close", i64::from(rc)));
        }
    }
}

/// Feature bits for new images: layering (clones later), exclusive-lock
/// (single-writer fencing), object-map + fast-diff (cheap allocation status
/// and snapshot diffs), deep-flatten — `RBD_FEATURES_DEFAULT` of 16.2. No
/// journaling (halves write throughput), no striping v2 (object = stripe).
pub const CREATE_FEATURES: u64 = ffi::RBD_FEATURE_LAYERING
    | ffi::RBD_FEATURE_EXCLUSIVE_LOCK
    | ffi::RBD_FEATURE_OBJECT_MAP
    | ffi::RBD_FEATURE_FAST_DIFF
    | ffi::RBD_FEATURE_DEEP_FLATTEN;

/// `RBD_FEATURE_EXCLUSIVE_LOCK`, for checking an opened image.
pub const FEATURE_EXCLUSIVE_LOCK: u64 = ffi::RBD_FEATURE_EXCLUSIVE_LOCK;
