//! Ceph RBD images as oxcopy storage backends.
//!
//! [`RbdStorage`] implements [`oxcopy_storage::Storage`] over librbd's C API
//! (Ceph 16.2 "pacific" as shipped by Debian 12; see `docs/ceph.md`), through
//! hand-written declarations (`ffi`) and a small safe layer (`rados`):
//!
//! * reads and writes are cut at RADOS object boundaries and all pieces are
//!   submitted at once with `rbd_aio_read` / `rbd_aio_write`;
//! * flush, discard and write-zeroes use the matching `rbd_aio_*` calls;
//! * allocation status comes from `rbd_diff_iterate2` at object granularity;
//! * `snapshot` takes an RBD snapshot and returns a read-only view of it that
//!   removes the snapshot when dropped;
//! * `copy_range` from another image (or a snapshot view) of the same
//!   cluster has the OSDs copy whole objects (RADOS `copy_from`, through the
//!   C++ shim `cpp/objcopy.cc`) and reads/writes only the unaligned ends
//!   through librbd (module `objcopy`);
//! * every wait on the cluster is bounded by [`RbdOptions::op_timeout`]
//!   (librados' own `rados_osd_op_timeout` / `rados_mon_op_timeout` /
//!   `client_mount_timeout` are set to it, and our waits add a few seconds of
//!   grace on top).
//!
//! ## Design notes
//!
//! * **Completions**: callback + condvar. Each AIO gets a completion whose
//!   callback (run on librbd's `io_context_pool` thread) releases it, stores
//!   the return value in the batch and notifies the waiting caller; the caller
//!   waits with a deadline that restarts whenever an op completes, so a batch
//!   fails with [`RbdErrorKind::Timeout`] after `op_timeout` + 5 s *without
//!   progress*. `rbd_aio_wait_for_complete` was not used: it cannot time out.
//! * **Buffers**: every op owns its buffer (reads land in a fresh buffer and
//!   are copied out; writes copy the caller's bytes in) and the callback frees
//!   it. That costs a memcpy, but a wait that gives up can return while librbd
//!   still holds the op without any dangling pointer into the caller's memory.
//! * **Synchronous calls** (connect, open, stat, lock, snapshots, resize,
//!   diff) run on a short-lived helper thread that owns `Arc`s of the handles
//!   it uses; the caller waits `op_timeout` + 5 s at most.
//! * **Not bounded by us**: `rbd_close` / `rados_shutdown` in `Drop` (librados'
//!   own op timeouts still apply to what they send).
//! * **Lock modes**: `exclusive` takes the lock in *managed* mode (other
//!   clients' writes get -EROFS, [`RbdErrorKind::NotWritable`]). Without it
//!   librbd's automatic mode hands the lock to whichever client writes, so
//!   two non-exclusive openers both write (the lock ping-pongs). A client
//!   whose lock is broken by another (`rbd lock rm`, `rbd_lock_break`) is
//!   blocklisted: its writes fail with [`RbdErrorKind::Fenced`] until it
//!   reopens with a new connection.
//! * **One connection per open**: each [`RbdStorage`] has its own `rados_t`.
//!
//! Errors are [`oxcopy_storage::StorageError`]s carrying an [`RbdError`]
//! (see [`rbd_error_kind`] and the mapping table in the `error` module).
//!
//! The real backend needs librbd/librados at build time and is behind the
//! cargo feature `ceph` (off by default). Without it the crate still builds
//! and [`RbdStorage::open`] fails with [`RbdErrorKind::NoCephSupport`].

#![deny(clippy::undocumented_unsafe_blocks)]

// Without `ceph`, only the error mapping and the stub use these.
#[cfg_attr(not(feature = "ceph"), allow(dead_code))]
mod cstr;
mod error;
pub mod locator;
#[cfg_attr(not(feature = "ceph"), allow(dead_code))]
mod split;

#[cfg(feature = "ceph")]
mod ffi;
#[cfg(feature = "ceph")]
mod objcopy;
#[cfg(feature = "ceph")]
mod rados;
#[cfg(feature = "ceph")]
mod storage;

#[cfg(not(feature = "ceph"))]
mod stub;

use std::path::PathBuf;
use std::time::Duration;

pub use error::{rbd_error, rbd_error_kind, RbdError, RbdErrorKind};
pub use split::{split_at_objects, Piece};

#[cfg(feature = "ceph")]
pub use rados::CREATE_FEATURES;
#[cfg(feature = "ceph")]
pub use storage::{RbdSnapshot, RbdStorage, SNAPSHOT_PREFIX};
#[cfg(not(feature = "ceph"))]
pub use stub::RbdStorage;

/// Whether this build links librbd (cargo feature `ceph`).
pub const CEPH_SUPPORT: bool = cfg!(feature = "ceph");

/// Default for [`RbdOptions::op_timeout`]: below a typical initiator's SCSI
/// command timeout (30–60 s), long enough for an OSD failover.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(20);

/// Where and how to open an RBD image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbdOptions {
    /// ceph.conf of the cluster (monitors, keyring path).
    pub ceph_conf: PathBuf,
    /// cephx client id, e.g. `admin` (a leading `client.` is accepted and dropped).
    pub user: String,
    /// Pool holding the image.
    pub pool: String,
    /// Image name.
    pub image: String,
    /// Create the image with this size (bytes) if it does not exist; `None`:
    /// a missing image is an error ([`RbdErrorKind::NotFound`]). An existing
    /// image is opened with its own size.
    pub create_size: Option<u64>,
    /// Bound on every cluster operation: set as `rados_osd_op_timeout`,
    /// `rados_mon_op_timeout` and `client_mount_timeout`; must be ≥ 100 ms.
    pub op_timeout: Duration,
    /// Take the image's exclusive lock at open (managed mode): other clients'
    /// writes then fail with -EROFS, and opening fails with
    /// [`RbdErrorKind::LockedByOther`] when another client holds it.
    pub exclusive: bool,
    /// With `exclusive`: when another client holds the lock, break it
    /// (`rbd_lock_break`, which blocklists that client so its writes are
    /// refused from then on) and take it, instead of failing with
    /// [`RbdErrorKind::LockedByOther`]. For a planned or forced failover.
    pub takeover: bool,
}

impl RbdOptions {
    /// Options for `pool/image` of the cluster in `ceph_conf`, as
    /// `client.admin`, no creation, [`DEFAULT_OP_TIMEOUT`], not exclusive, no
    /// takeover.
    pub fn new(ceph_conf: impl Into<PathBuf>, pool: impl Into<String>, image: impl Into<String>) -> Self {
        RbdOptions {
            ceph_conf: ceph_conf.into(),
            user: "admin".into(),
            pool: pool.into(),
            image: image.into(),
            create_size: None,
            op_timeout: DEFAULT_OP_TIMEOUT,
            exclusive: false,
            takeover: false,
        }
    }
}
