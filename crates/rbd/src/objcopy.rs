//! Server-side copies between RBD images: whole RADOS objects copied by the
//! OSDs with `copy_from` (C++ shim `cpp/objcopy.cc`), the rest through
//! librbd. This is `RbdStorage::copy_range`.
//!
//! The fast path applies when the source is an `RbdStorage` (the head) or
//! an `RbdSnapshot` (read at its snapshot id) of the same cluster (fsid) as
//! the destination, both with the same object size and plain objects (no
//! striping v2 other than one stripe per object), the source without a
//! parent, the destination without journaling and opened `exclusive` (it
//! holds the lock now, so no other client writes its objects). Then every
//! destination object wholly inside the range whose source bytes are one
//! whole source object (source and destination offsets both on object
//! boundaries) is replaced by `copy_from`:
//!
//! * the I/O contexts are our own, made in the destination's connection by
//!   pool id (the data pool, `rbd_get_data_pool_id`): the source one reads at
//!   the snapshot id of a snapshot view; the destination one writes with the
//!   destination image's snap context (OSD class `rbd.get_snapcontext` on its
//!   header, refreshed per window of objects), so the destination's
//!   snapshots keep their data (docs/ceph.md, pitfall 2);
//! * with object-map, each destination object is first made to exist through
//!   librbd (a 1-byte write at its start), so librbd's object map does not
//!   hide the copied data (pitfall 1);
//! * a source object that does not exist (-ENOENT) is a hole: the destination
//!   object is discarded through librbd ([`CopyMethod::Hole`]);
//! * -ETIMEDOUT and -ESHUTDOWN (blocklisted: fenced) fail the copy; any
//!   other error sends that object through librbd.
//!
//! [`IN_FLIGHT`] objects are copied at once; each wait gives up after the
//! operation timeout + grace without a completion. Everything else — the
//! unaligned head and tail, other clusters, unsupported images, a
//! non-exclusive destination — is read and written through librbd in pieces
//! ([`CopyMethod::Rbd`]). A copy within one image between overlapping
//! ranges takes the generic (direction-safe) path, counted as `Rbd` too.
//!
//! Snapshots created on the destination *during* a copy (another client's
//! `rbd snap create` is carried out by us, the lock owner) may miss the
//! objects of the window in flight, which then show the copied data: the
//! snapshot behaves as if taken after that part of the command, as for any
//! write in flight.

use std::ffi::{c_int, c_void, CString};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxcopy_storage::{check_range, CopyMethod, CopyReport, Result, Storage};
use parking_lot::{Condvar, Mutex};

use crate::cstr::c_name;
use crate::error::{RbdError, RbdErrorKind};
use crate::ffi;
use crate::rados::{bounded, AioOp, Image, IoCtx, ObjectLayout, SnapContext};

/// What a copy needs of its destination image (`RbdStorage` implements it;
/// this module does not import the storage module, which calls it).
pub(crate) trait Dest: Storage {
    /// The open image handle.
    fn handle(&self) -> &Arc<Image>;
    /// How long one wait on the cluster may last.
    fn op_wait(&self) -> Duration;
    /// Whether the image was opened holding its exclusive lock.
    fn exclusive(&self) -> bool;
    /// `pool/image`.
    fn label(&self) -> &str;
}

/// `copy_from` operations in flight at once (one window of objects).
pub const IN_FLIGHT: usize = 16;

/// Largest piece the librbd path reads, then writes, at once.
const RBD_CHUNK: u64 = 8 << 20;

/// Completion state shared by the waiter and the callbacks of one batch.
struct CopyBatch {
    state: Mutex<CopyState>,
    cv: Condvar,
}

struct CopyState {
    pending: usize,
    results: Vec<Option<i32>>,
}

/// Owned by the shim between submission and the callback.
struct CopyInFlight {
    batch: Arc<CopyBatch>,
    idx: usize,
}

/// Callback of the shim: runs once per submitted copy on a librados
/// finisher thread; records the result and wakes the waiter.
unsafe extern "C" fn copy_done(rc: c_int, arg: *mut c_void) {
    // SAFETY: `arg` is the Box::into_raw pointer given for this submission;
    // the shim calls us exactly once, so we are its only owner now.
    let op = unsafe { Box::from_raw(arg.cast::<CopyInFlight>()) };
    let CopyInFlight { batch, idx } = *op;
    let mut st = batch.state.lock();
    if let Some(slot @ None) = st.results.get_mut(idx) {
        *slot = Some(rc);
        st.pending = st.pending.saturating_sub(1);
    }
    drop(st);
    batch.cv.notify_all();
}

/// Copy every `(destination oid, source oid)` pair with `copy_from`, all in
/// flight at once; waits until all completed or none completed for `stall`
/// ([`RbdErrorKind::Timeout`]). Returns each copy's return value (0 or a
/// negative errno, also for a failed submission); `Err` only for a stall.
fn copy_objects(
    dst: &IoCtx,
    src: &IoCtx,
    pairs: &[(CString, CString)],
    what: &str,
    stall: Duration,
) -> std::result::Result<Vec<i32>, RbdError> {
    let n = pairs.len();
    let batch =
        Arc::new(CopyBatch { state: Mutex::new(CopyState { pending: 0, results: vec![None; n] }), cv: Condvar::new() });
    for (idx, (dst_oid, src_oid)) in pairs.iter().enumerate() {
        let arg = Box::into_raw(Box::new(CopyInFlight { batch: batch.clone(), idx }));
        batch.state.lock().pending += 1;
        // SAFETY: both I/O contexts are live for the duration of the call
        // (borrowed), librados keeps its own references for the operation;
        // the oids are NUL-terminated and outlive the call (the shim copies
        // them); `copy_done` matches `ox_copy_done_t`; `arg` is a valid
        // pointer owned by the callback once submission succeeded.
        let rc = unsafe {
            ffi::ox_rados_aio_copy_from(
                dst.raw(),
                dst_oid.as_ptr(),
                src.raw(),
                src_oid.as_ptr(),
                Some(copy_done),
                arg.cast(),
            )
        };
        if rc < 0 {
            // Reported as this copy's result (the caller decides: librbd
            // fallback or failure). The shim promises no callback after a
            // failed submission, but leak `arg` rather than risk a double
            // free; the slot is marked done so a callback, if any, is ignored.
            let mut st = batch.state.lock();
            if let Some(slot @ None) = st.results.get_mut(idx) {
                *slot = Some(rc);
                st.pending = st.pending.saturating_sub(1);
            }
        }
    }
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
                    "{what}: {} of {n} object copies unanswered after {stall:?} without progress \
                     (they may still be applied)",
                    st.pending
                ),
            });
        }
    }
    Ok(st.results.iter().map(|r| r.unwrap_or(-libc::EIO)).collect())
}

/// The source as the fast path sees it.
pub(crate) struct Source {
    /// Handle reading the source bytes (the head, or opened at the snapshot).
    pub image: Arc<Image>,
    /// Snapshot name, for a snapshot view.
    pub snap_name: Option<String>,
    /// (image offset, position in the copy, length) pieces of the range.
    pub pieces: Vec<(u64, u64, u64)>,
}

/// What the fast path needs, prepared once per `copy_range` call.
struct FastPath {
    dst_layout: ObjectLayout,
    src_layout: ObjectLayout,
    src_io: IoCtx,
}

/// Why the fast path does not apply (logged at debug level), or a real error.
enum NoFastPath {
    Because(String),
    Error(RbdError),
}

impl From<RbdError> for NoFastPath {
    fn from(e: RbdError) -> Self {
        NoFastPath::Error(e)
    }
}

/// Must this error fail the copy rather than send it through librbd?
fn fatal(errno: i32) -> bool {
    matches!(errno.saturating_abs(), libc::ETIMEDOUT | libc::ESHUTDOWN)
}

fn prepare(dst: &dyn Dest, src: &Source) -> std::result::Result<FastPath, NoFastPath> {
    if !dst.exclusive() {
        return Err(NoFastPath::Because("destination not opened exclusive".into()));
    }
    let (dimg, simg, snap) = (dst.handle().clone(), src.image.clone(), src.snap_name.clone());
    let what = format!("preparing a RADOS copy into {}", dst.label());
    let ctx = what.clone();
    bounded(&what, dst.op_wait(), move || Ok(prepare_blocking(&dimg, &simg, snap.as_deref(), &ctx)))
        .map_err(NoFastPath::Error)?
}

/// The local librbd / librados calls of [`prepare`] (run on a helper thread).
fn prepare_blocking(
    dimg: &Image,
    simg: &Image,
    snap: Option<&str>,
    ctx: &str,
) -> std::result::Result<FastPath, NoFastPath> {
    {
        let fail = |e: RbdError| NoFastPath::Error(RbdError { message: format!("{ctx}: {}", e.message), ..e });
        if !dimg.is_lock_owner().map_err(fail)? {
            return Err(NoFastPath::Because("destination does not hold its exclusive lock".into()));
        }
        let dcl = dimg.ioctx().cluster();
        let scl = simg.ioctx().cluster();
        if !Arc::ptr_eq(dcl, scl) && dcl.fsid().map_err(fail)? != scl.fsid().map_err(fail)? {
            return Err(NoFastPath::Because("source in another cluster".into()));
        }
        let dst_layout = dimg.object_layout().map_err(fail)?;
        let src_layout = simg.object_layout().map_err(fail)?;
        if dst_layout.obj_size != src_layout.obj_size {
            return Err(NoFastPath::Because(format!(
                "object sizes differ ({} vs {})",
                src_layout.obj_size, dst_layout.obj_size
            )));
        }
        if !dst_layout.plain_objects() || !src_layout.plain_objects() {
            return Err(NoFastPath::Because("striping v2".into()));
        }
        if dst_layout.journaling() {
            return Err(NoFastPath::Because("destination has journaling".into()));
        }
        if src_layout.parent_overlap > 0 {
            return Err(NoFastPath::Because("source is a clone (has a parent)".into()));
        }
        let snap_id = snap.map(|s| simg.snap_id(s)).transpose().map_err(fail)?;
        let src_io = IoCtx::for_objects(dcl, src_layout.data_pool_id, snap_id, None).map_err(fail)?;
        Ok(FastPath { dst_layout, src_layout, src_io })
    }
}

/// Copy `len` bytes through librbd: read from `src` (any store), write to
/// `dst`, at most [`RBD_CHUNK`] at a time.
fn rbd_copy(dst: &dyn Dest, dst_off: u64, src: &dyn Storage, src_off: u64, len: u64) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    let mut buf = vec![0u8; RBD_CHUNK.min(len) as usize];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64);
        let chunk = &mut buf[..n as usize];
        src.read_at(chunk, src_off + done)?;
        dst.write_at(chunk, dst_off + done)?;
        done += n;
    }
    Ok(())
}

/// `RbdStorage::copy_range` from an RBD `source` (head or snapshot, found
/// by the caller): see the module docs.
pub(crate) fn copy_range(
    dst: &dyn Dest,
    dst_offset: u64,
    src: &dyn Storage,
    src_offset: u64,
    len: u64,
    source: Source,
) -> Result<CopyReport> {
    check_range(src.len(), src_offset, len)?;
    check_range(dst.len(), dst_offset, len)?;
    let mut report = CopyReport::default();
    if len == 0 {
        return Ok(report);
    }
    let fast = match prepare(dst, &source) {
        Ok(f) => f,
        Err(NoFastPath::Error(e)) if fatal(e.errno) || e.kind == RbdErrorKind::Timeout => return Err(e.into()),
        Err(NoFastPath::Error(e)) => {
            tracing::warn!(dst = %dst.label(), "RADOS copy not possible, copying through librbd: {e}");
            rbd_copy(dst, dst_offset, src, src_offset, len)?;
            report.add(CopyMethod::Rbd, len);
            return Ok(report);
        }
        Err(NoFastPath::Because(why)) => {
            tracing::debug!(dst = %dst.label(), src = %source.image.name(), "copy through librbd: {why}");
            rbd_copy(dst, dst_offset, src, src_offset, len)?;
            report.add(CopyMethod::Rbd, len);
            return Ok(report);
        }
    };
    let obj = fast.dst_layout.obj_size;
    let mut objects: Vec<(u64, u64)> = Vec::new(); // (dst object no, src object no)
    for &(img_off, pos, plen) in &source.pieces {
        let d = dst_offset + pos;
        let (first, last) =
            if d % obj == img_off % obj { (d.div_ceil(obj) * obj, (d + plen) / obj * obj) } else { (d, d) };
        if first >= last {
            rbd_copy(dst, d, src, src_offset + pos, plen)?;
            report.add(CopyMethod::Rbd, plen);
            continue;
        }
        rbd_copy(dst, d, src, src_offset + pos, first - d)?;
        report.add(CopyMethod::Rbd, first - d);
        let s_first = img_off + (first - d);
        objects.extend((0..(last - first) / obj).map(|k| (first / obj + k, s_first / obj + k)));
        let tail = d + plen - last;
        rbd_copy(dst, last, src, src_offset + pos + (last - d), tail)?;
        report.add(CopyMethod::Rbd, tail);
    }
    copy_whole_objects(dst, src, &fast, &objects, src_offset, &source, &mut report)?;
    Ok(report)
}

/// Store offset of source image offset `img_off` (inverse of the source's pieces).
fn source_store_offset(source: &Source, src_offset: u64, img_off: u64, len: u64) -> Option<u64> {
    source
        .pieces
        .iter()
        .find(|&&(o, _, l)| img_off >= o && img_off + len <= o + l)
        .map(|&(o, pos, _)| src_offset + pos + (img_off - o))
}

/// Copy whole objects `(destination object no, source object no)` with
/// `copy_from`, [`IN_FLIGHT`] at a time (see the module docs).
fn copy_whole_objects(
    dst: &dyn Dest,
    src: &dyn Storage,
    fast: &FastPath,
    objects: &[(u64, u64)],
    src_offset: u64,
    source: &Source,
    report: &mut CopyReport,
) -> Result<()> {
    let obj = fast.dst_layout.obj_size;
    let header = format!("rbd_header.{}", fast.dst_layout.id);
    let mut ctx: Option<(SnapContext, IoCtx)> = None;
    let mut warned = false;
    for window in objects.chunks(IN_FLIGHT) {
        // The destination's snap context now (a snapshot may have been taken
        // since the last window): reuse the I/O context while it is unchanged.
        let (img, h) = (dst.handle().clone(), header.clone());
        let snapc = bounded(&format!("snap context of {}", dst.label()), dst.op_wait(), move || {
            img.ioctx().rbd_snap_context(&h)
        })?;
        if ctx.as_ref().is_none_or(|(c, _)| *c != snapc) {
            let cluster = dst.handle().ioctx().cluster().clone();
            let (pool, sc) = (fast.dst_layout.data_pool_id, snapc.clone());
            let io = bounded(&format!("I/O context for {}", dst.label()), dst.op_wait(), move || {
                IoCtx::for_objects(&cluster, pool, None, Some(&sc))
            })?;
            ctx = Some((snapc, io));
        }
        let Some((_, dst_io)) = ctx.as_ref() else { continue };
        let what = format!(
            "RADOS copy of {} objects from {} into {} (objects {:#x}..)",
            window.len(),
            source.image.name(),
            dst.label(),
            window[0].0
        );
        if fast.dst_layout.object_map() {
            // Pitfall 1: make each object exist in librbd's object map first.
            let ops = window.iter().map(|&(d, _)| AioOp::Write { offset: d * obj, data: vec![0u8] }).collect();
            let results = dst.handle().aio(&what, ops, dst.op_wait())?;
            if let Some((rc, _)) = results.iter().find(|(rc, _)| *rc < 0) {
                return Err(RbdError::from_rc(format!("{what}: marking objects in the object map"), *rc as i64).into());
            }
        }
        let pairs = window
            .iter()
            .map(|&(d, s)| {
                Ok((
                    c_name("object", &fast.dst_layout.object_name(d))?,
                    c_name("object", &fast.src_layout.object_name(s))?,
                ))
            })
            .collect::<std::result::Result<Vec<_>, RbdError>>()?;
        let rcs = copy_objects(dst_io, &fast.src_io, &pairs, &what, dst.op_wait())?;
        let mut holes = Vec::new();
        for (&(d, s), &rc) in window.iter().zip(&rcs) {
            if rc == 0 {
                report.add(CopyMethod::Rados, obj);
            } else if rc == -libc::ENOENT {
                holes.push(AioOp::Discard { offset: d * obj, len: obj });
            } else if fatal(rc) {
                return Err(RbdError::from_rc(format!("{what}: copy_from {:#x}", d), i64::from(rc)).into());
            } else {
                if !warned {
                    warned = true;
                    tracing::warn!(
                        dst = %dst.label(),
                        "{}; copying the object through librbd",
                        RbdError::from_rc(format!("{what}: copy_from of object {d:#x}"), i64::from(rc))
                    );
                }
                let Some(from) = source_store_offset(source, src_offset, s * obj, obj) else {
                    return Err(RbdError::new(RbdErrorKind::Other, format!("{what}: lost object {s:#x}")).into());
                };
                rbd_copy(dst, d * obj, src, from, obj)?;
                report.add(CopyMethod::Rbd, obj);
            }
        }
        if !holes.is_empty() {
            let n = holes.len() as u64;
            let results = dst.handle().aio(&what, holes, dst.op_wait())?;
            if let Some((rc, _)) = results.iter().find(|(rc, _)| *rc < 0) {
                return Err(RbdError::from_rc(format!("{what}: discarding holes"), *rc as i64).into());
            }
            report.add(CopyMethod::Hole, n * obj);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snap_context_decoding() {
        let mut b = Vec::new();
        b.extend_from_slice(&7u64.to_le_bytes());
        b.extend_from_slice(&3u32.to_le_bytes());
        for id in [4u64, 9, 2] {
            b.extend_from_slice(&id.to_le_bytes());
        }
        assert_eq!(SnapContext::decode(&b), Some(SnapContext { seq: 9, snaps: vec![9, 4, 2] }));
        assert_eq!(SnapContext::decode(&b[..b.len() - 1]), None);
        let mut empty = 5u64.to_le_bytes().to_vec();
        empty.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(SnapContext::decode(&empty), Some(SnapContext { seq: 5, snaps: vec![] }));
        let mut huge = 1u64.to_le_bytes().to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(SnapContext::decode(&huge), None);
        assert_eq!(SnapContext::decode(&[]), None);
    }

    #[test]
    fn fatal_errors() {
        assert!(fatal(-libc::ETIMEDOUT));
        assert!(fatal(-libc::ESHUTDOWN));
        assert!(!fatal(-libc::ENOENT));
        assert!(!fatal(-libc::EOVERFLOW));
    }
}
