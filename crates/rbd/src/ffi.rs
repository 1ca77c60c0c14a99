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
pub const RBD_FEATURE_EXCLUSIVE_LOCK: u64 = 1 << 2;
/// `rbd/features.h`.
pub const RBD_FEATURE_OBJECT_MAP: u64 = 1 << 3;
/// `rbd/features.h`.
pub const RBD_FEATURE_FAST_DIFF: u64 = 1 << 4;
/// `rbd/features.h`.
pub const RBD_FEATURE_DEEP_FLATTEN: u64 = 1 << 5;

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

#[link(name = "rados")]
extern "C" {
    pub fn rados_create(cluster: *mut rados_t, id: *const c_char) -> c_int;
    pub fn rados_conf_read_file(cluster: rados_t, path: *const c_char) -> c_int;
    pub fn rados_conf_set(cluster: rados_t, option: *const c_char, value: *const c_char) -> c_int;
    pub fn rados_connect(cluster: rados_t) -> c_int;
    pub fn rados_shutdown(cluster: rados_t);
    pub fn rados_ioctx_create(cluster: rados_t, pool_name: *const c_char, ioctx: *mut rados_ioctx_t) -> c_int;
    pub fn rados_ioctx_destroy(io: rados_ioctx_t);
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
    pub fn rbd_close(image: rbd_image_t) -> c_int;
    pub fn rbd_stat(image: rbd_image_t, info: *mut rbd_image_info_t, infosize: usize) -> c_int;
    pub fn rbd_get_features(image: rbd_image_t, features: *mut u64) -> c_int;
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
