//! Hand-written declarations of exactly the librados / librbd C functions this
//! crate calls (Ceph 16.2 "pacific": `LIBRADOS_VER 3.0.0`, `LIBRBD_VER 1.16.0`).
//!
//! Signatures follow `/usr/include/rados/librados.h` and
//! `/usr/include/rbd/librbd.h`; the line numbers cited are those of Debian 12's
//! `librados-dev` / `librbd-dev` 16.2.15. Nothing here is safe to call
//! directly: the safe layer is [`crate::rados`].

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void};

/// `rados_t` (librados.h:184): an opaque cluster handle.
pub type rados_t = *mut c_void;
/// `rados_ioctx_t` (librados.h:220): an opaque per-pool I/O context.
pub type rados_ioctx_t = *mut c_void;
/// `rbd_image_t` (librbd.h:68): an opaque open-image handle.
pub type rbd_image_t = *mut c_void;
/// `rbd_image_options_t` (librbd.h:69).
pub type rbd_image_options_t = *mut c_void;
/// `rbd_completion_t` (librbd.h:72).
pub type rbd_completion_t = *mut c_void;
/// `rbd_callback_t` (librbd.h:73): called once per completion, on a librbd thread.
pub type rbd_callback_t = Option<unsafe extern "C" fn(c: rbd_completion_t, arg: *mut c_void)>;
/// Callback of `rbd_diff_iterate2` (librbd.h:1137): `(offset, len, exists, arg)`;
/// a negative return aborts the iteration with that value.
pub type rbd_diff_cb = Option<unsafe extern "C" fn(off: u64, len: usize, exists: c_int, arg: *mut c_void) -> c_int>;
/// `librbd_progress_fn_t` (librbd.h:75).
pub type librbd_progress_fn_t = Option<unsafe extern "C" fn(offset: u64, total: u64, arg: *mut c_void) -> c_int>;

/// `rbd_lock_mode_t` (librbd.h:278-281), a C enum (int-sized).
pub type rbd_lock_mode_t = c_int;
/// `RBD_LOCK_MODE_EXCLUSIVE`.
pub const RBD_LOCK_MODE_EXCLUSIVE: rbd_lock_mode_t = 0;

/// `RBD_IMAGE_OPTION_FEATURES` (librbd.h:288).
pub const RBD_IMAGE_OPTION_FEATURES: c_int = 1;

/// `rbd/features.h`.
pub const RBD_FEATURE_LAYERING: u64 = 1 << 0;
/// `rbd/features.h`.
pub const RBD_FEATURE_STRIPINGV2: u64 = 1 << 1;
/// `rbd/features.h`.
pub const RBD_FEATURE_EXCLUSIVE_LOCK: u64 = 1 << 2;
/// `rbd/features.h`.
pub const RBD_FEATURE_OBJECT_MAP: u64 = 1 << 3;
/// `rbd/features.h`.
pub const RBD_FEATURE_FAST_DIFF: u64 = 1 << 4;
/// `rbd/features.h`.
pub const RBD_FEATURE_DEEP_FLATTEN: u64 = 1 << 5;
/// `rbd/features.h`.
pub const RBD_FEATURE_JOURNALING: u64 = 1 << 6;

/// `rados_snap_t` (librados.h:266).
pub type rados_snap_t = u64;

/// `RBD_MAX_BLOCK_NAME_SIZE` (librbd.h).
const RBD_MAX_BLOCK_NAME_SIZE: usize = 24;
/// `RBD_MAX_IMAGE_NAME_SIZE` (librbd.h).
const RBD_MAX_IMAGE_NAME_SIZE: usize = 96;

/// `rbd_image_info_t` (librbd.h:138-146).
#[repr(C)]
pub struct rbd_image_info_t {
    pub size: u64,
    pub obj_size: u64,
    pub num_objs: u64,
    pub order: c_int,
    pub block_name_prefix: [c_char; RBD_MAX_BLOCK_NAME_SIZE],
    pub parent_pool: i64,
    pub parent_name: [c_char; RBD_MAX_IMAGE_NAME_SIZE],
}

/// `rbd_snap_info_t` (librbd.h:106-110).
#[repr(C)]
pub struct rbd_snap_info_t {
    pub id: u64,
    pub size: u64,
    pub name: *const c_char,
}

/// `rbd_image_watcher_t` (librbd.h:319-323).
#[repr(C)]
pub struct rbd_image_watcher_t {
    pub addr: *mut c_char,
    pub id: i64,
    pub cookie: u64,
}

/// `rbd_image_spec_t` (librbd.h:86-89).
#[repr(C)]
pub struct rbd_image_spec_t {
    pub id: *mut c_char,
    pub name: *mut c_char,
}

#[link(name = "rados")]
extern "C" {
    pub fn rados_get_instance_id(cluster: rados_t) -> u64;
    pub fn rados_ioctx_get_id(io: rados_ioctx_t) -> i64;
    pub fn rados_create(cluster: *mut rados_t, id: *const c_char) -> c_int;
    pub fn rados_conf_read_file(cluster: rados_t, path: *const c_char) -> c_int;
    pub fn rados_conf_set(cluster: rados_t, option: *const c_char, value: *const c_char) -> c_int;
    pub fn rados_connect(cluster: rados_t) -> c_int;
    pub fn rados_shutdown(cluster: rados_t);
    pub fn rados_ioctx_create(cluster: rados_t, pool_name: *const c_char, ioctx: *mut rados_ioctx_t) -> c_int;
    pub fn rados_ioctx_destroy(io: rados_ioctx_t);
    /// librados.h:663; -ERANGE if `buf` is too short (an fsid is 36 chars + NUL).
    pub fn rados_cluster_fsid(cluster: rados_t, buf: *mut c_char, len: usize) -> c_int;
    /// librados.h:781.
    pub fn rados_ioctx_create2(cluster: rados_t, pool_id: i64, ioctx: *mut rados_ioctx_t) -> c_int;
    /// librados.h:1357.
    pub fn rados_ioctx_snap_set_read(io: rados_ioctx_t, snap: rados_snap_t);
    /// librados.h:1422: `snaps` sorted descending, `seq` ≥ the newest.
    pub fn rados_ioctx_selfmanaged_snap_set_write_ctx(
        io: rados_ioctx_t,
        seq: rados_snap_t,
        snaps: *mut rados_snap_t,
        num_snaps: c_int,
    ) -> c_int;
    /// librados.h:1850: returns the output length, -ERANGE when `out_len` is too small.
    pub fn rados_exec(
        io: rados_ioctx_t,
        oid: *const c_char,
        cls: *const c_char,
        method: *const c_char,
        in_buf: *const c_char,
        in_len: usize,
        buf: *mut c_char,
        out_len: usize,
    ) -> c_int;
}

#[link(name = "rbd")]
extern "C" {
    pub fn rbd_image_options_create(opts: *mut rbd_image_options_t);
    pub fn rbd_image_options_destroy(opts: rbd_image_options_t);
    pub fn rbd_image_options_set_uint64(opts: rbd_image_options_t, optname: c_int, optval: u64) -> c_int;
    pub fn rbd_create4(io: rados_ioctx_t, name: *const c_char, size: u64, opts: rbd_image_options_t) -> c_int;

    pub fn rbd_open(io: rados_ioctx_t, name: *const c_char, image: *mut rbd_image_t, snap_name: *const c_char)
        -> c_int;
    pub fn rbd_open_read_only(
        io: rados_ioctx_t,
        name: *const c_char,
        image: *mut rbd_image_t,
        snap_name: *const c_char,
    ) -> c_int;
    pub fn rbd_open_by_id(
        io: rados_ioctx_t,
        id: *const c_char,
        image: *mut rbd_image_t,
        snap_name: *const c_char,
    ) -> c_int;
    pub fn rbd_open_by_id_read_only(
        io: rados_ioctx_t,
        id: *const c_char,
        image: *mut rbd_image_t,
        snap_name: *const c_char,
    ) -> c_int;
    pub fn rbd_close(image: rbd_image_t) -> c_int;
    pub fn rbd_get_id(image: rbd_image_t, id: *mut c_char, id_len: usize) -> c_int;
    pub fn rbd_list2(io: rados_ioctx_t, images: *mut rbd_image_spec_t, max_images: *mut usize) -> c_int;
    pub fn rbd_image_spec_list_cleanup(images: *mut rbd_image_spec_t, num_images: usize);
    pub fn rbd_watchers_list(image: rbd_image_t, watchers: *mut rbd_image_watcher_t, max: *mut usize) -> c_int;
    pub fn rbd_watchers_list_cleanup(watchers: *mut rbd_image_watcher_t, num_watchers: usize);
    pub fn rbd_stat(image: rbd_image_t, info: *mut rbd_image_info_t, infosize: usize) -> c_int;
    pub fn rbd_get_features(image: rbd_image_t, features: *mut u64) -> c_int;
    pub fn rbd_get_stripe_unit(image: rbd_image_t, stripe_unit: *mut u64) -> c_int;
    pub fn rbd_get_stripe_count(image: rbd_image_t, stripe_count: *mut u64) -> c_int;
    /// -ENOENT when the image (at the handle's snapshot) has no parent.
    pub fn rbd_get_overlap(image: rbd_image_t, overlap: *mut u64) -> c_int;
    /// -ERANGE when `prefix_len` is too small.
    pub fn rbd_get_block_name_prefix(image: rbd_image_t, prefix: *mut c_char, prefix_len: usize) -> c_int;
    /// The pool holding the data objects (the image's pool unless it has a data pool).
    pub fn rbd_get_data_pool_id(image: rbd_image_t) -> i64;
    pub fn rbd_is_exclusive_lock_owner(image: rbd_image_t, is_owner: *mut c_int) -> c_int;
    pub fn rbd_snap_get_id(image: rbd_image_t, snapname: *const c_char, snap_id: *mut u64) -> c_int;
    pub fn rbd_resize2(
        image: rbd_image_t,
        size: u64,
        allow_shrink: bool,
        cb: librbd_progress_fn_t,
        cbdata: *mut c_void,
    ) -> c_int;

    pub fn rbd_lock_acquire(image: rbd_image_t, lock_mode: rbd_lock_mode_t) -> c_int;
    pub fn rbd_lock_get_owners(
        image: rbd_image_t,
        lock_mode: *mut rbd_lock_mode_t,
        lock_owners: *mut *mut c_char,
        max_lock_owners: *mut usize,
    ) -> c_int;
    pub fn rbd_lock_get_owners_cleanup(lock_owners: *mut *mut c_char, lock_owner_count: usize);
    pub fn rbd_lock_break(image: rbd_image_t, lock_mode: rbd_lock_mode_t, lock_owner: *const c_char) -> c_int;

    pub fn rbd_snap_create(image: rbd_image_t, snapname: *const c_char) -> c_int;
    pub fn rbd_snap_remove(image: rbd_image_t, snapname: *const c_char) -> c_int;
    pub fn rbd_snap_list(image: rbd_image_t, snaps: *mut rbd_snap_info_t, max_snaps: *mut c_int) -> c_int;
    pub fn rbd_snap_list_end(snaps: *mut rbd_snap_info_t);

    pub fn rbd_metadata_get(image: rbd_image_t, key: *const c_char, value: *mut c_char, val_len: *mut usize) -> c_int;
    pub fn rbd_metadata_set(image: rbd_image_t, key: *const c_char, value: *const c_char) -> c_int;
    pub fn rbd_metadata_remove(image: rbd_image_t, key: *const c_char) -> c_int;

    pub fn rbd_diff_iterate2(
        image: rbd_image_t,
        fromsnapname: *const c_char,
        ofs: u64,
        len: u64,
        include_parent: u8,
        whole_object: u8,
        cb: rbd_diff_cb,
        arg: *mut c_void,
    ) -> c_int;

    pub fn rbd_aio_create_completion(
        cb_arg: *mut c_void,
        complete_cb: rbd_callback_t,
        c: *mut rbd_completion_t,
    ) -> c_int;
    pub fn rbd_aio_get_return_value(c: rbd_completion_t) -> isize;
    pub fn rbd_aio_release(c: rbd_completion_t);
    pub fn rbd_aio_read(image: rbd_image_t, off: u64, len: usize, buf: *mut c_char, c: rbd_completion_t) -> c_int;
    pub fn rbd_aio_write(image: rbd_image_t, off: u64, len: usize, buf: *const c_char, c: rbd_completion_t) -> c_int;
    pub fn rbd_aio_discard(image: rbd_image_t, off: u64, len: u64, c: rbd_completion_t) -> c_int;
    pub fn rbd_aio_write_zeroes(
        image: rbd_image_t,
        off: u64,
        len: usize,
        c: rbd_completion_t,
        zero_flags: c_int,
        op_flags: c_int,
    ) -> c_int;
    pub fn rbd_aio_flush(image: rbd_image_t, c: rbd_completion_t) -> c_int;
}

/// Completion callback of [`ox_rados_aio_copy_from`]: `(return value, arg)`,
/// called once on a librados finisher thread.
pub type ox_copy_done_t = Option<unsafe extern "C" fn(rc: c_int, arg: *mut c_void)>;

// The C++ shim `cpp/objcopy.cc` (compiled by build.rs, linked statically).
extern "C" {
    /// Replace object `dst_oid` of `dst_io` by a copy of `src_oid` of `src_io`
    /// made by the OSDs (`ObjectWriteOperation::copy_from`), read at
    /// `src_io`'s read snapshot and written with `dst_io`'s snap context.
    /// 0: submitted, `done(rc, arg)` will run exactly once; < 0: not
    /// submitted (`done` should not run). Never throws.
    pub fn ox_rados_aio_copy_from(
        dst_io: rados_ioctx_t,
        dst_oid: *const c_char,
        src_io: rados_ioctx_t,
        src_oid: *const c_char,
        done: ox_copy_done_t,
        arg: *mut c_void,
    ) -> c_int;
}
