// Server-side RADOS object copy for oxcopy-rbd (built only with the cargo
// feature `ceph`, see build.rs).
//
// librados exposes `copy_from` (the OSD reads the source object and writes
// the destination object itself: no data through the client) only in its
// C++ API (`ObjectWriteOperation::copy_from`, librados.hpp), not in the C
// API, so this file wraps it in one `extern "C"` function. Ceph 16.2.
//
// Rules: no exception crosses the C boundary (every entry point catches
// everything and returns -EIO or -ENOMEM); the caller's callback is called
// exactly once per successful submission, on a librados finisher thread,
// and never when the submission fails.

#include <rados/librados.hpp>

#include <cerrno>
#include <new>
#include <string>

extern "C" {
// Called once with the operation's return value (0, or a negative errno:
// -ENOENT when the source object does not exist, -ETIMEDOUT at the
// rados_osd_op_timeout, -ESHUTDOWN when this client is blocklisted) and the
// `arg` given at submission.
typedef void (*ox_copy_done_t)(int rc, void *arg);
}

namespace {

struct Pending {
  librados::AioCompletion *completion = nullptr;
  ox_copy_done_t done = nullptr;
  void *arg = nullptr;
};

// Runs on a librados finisher thread, once. librados holds its own reference
// on the completion while calling us, so releasing it here is allowed.
void on_complete(librados::completion_t, void *p) {
  Pending *pending = static_cast<Pending *>(p);
  int rc = -EIO;
  try {
    rc = pending->completion->get_return_value();
  } catch (...) {
    rc = -EIO;
  }
  pending->completion->release();
  ox_copy_done_t done = pending->done;
  void *arg = pending->arg;
  delete pending;
  done(rc, arg);
}

}  // namespace

extern "C" {

// Replace object `dst_oid` of `dst_io` with a copy of object `src_oid` of
// `src_io`, made by the OSDs (ObjectWriteOperation::copy_from, any source
// version, FADVISE_DONTNEED on the source read). The source is read at
// `src_io`'s read snapshot (rados_ioctx_snap_set_read); the write carries
// `dst_io`'s self-managed snap context, so the destination's snapshots keep
// their data. Asynchronous: returns 0 once submitted (then `done(rc, arg)`
// runs exactly once), or a negative errno, in which case `done` never runs.
// Both I/O contexts must stay alive until submission returns; librados keeps
// its own references for the operation afterwards.
int ox_rados_aio_copy_from(rados_ioctx_t dst_io, const char *dst_oid, rados_ioctx_t src_io, const char *src_oid,
                           ox_copy_done_t done, void *arg) noexcept {
  if (dst_io == nullptr || src_io == nullptr || dst_oid == nullptr || src_oid == nullptr || done == nullptr) {
    return -EINVAL;
  }
  Pending *pending = nullptr;
  try {
    librados::IoCtx dst;
    librados::IoCtx src;
    librados::IoCtx::from_rados_ioctx_t(dst_io, dst);
    librados::IoCtx::from_rados_ioctx_t(src_io, src);
    librados::ObjectWriteOperation op;
    op.copy_from(std::string(src_oid), src, 0, LIBRADOS_OP_FLAG_FADVISE_DONTNEED);
    pending = new Pending;
    pending->done = done;
    pending->arg = arg;
    pending->completion = librados::Rados::aio_create_completion(pending, on_complete);
    if (pending->completion == nullptr) {
      delete pending;
      return -ENOMEM;
    }
    int rc = dst.aio_operate(std::string(dst_oid), pending->completion, &op);
    if (rc < 0) {
      // Not queued: the callback will not run.
      pending->completion->release();
      delete pending;
      return rc;
    }
    return 0;
  } catch (const std::bad_alloc &) {
    // Only before aio_operate queued anything (allocations above); `pending`
    // is leaked rather than risk freeing it under a queued operation.
    return -ENOMEM;
  } catch (...) {
    return -EIO;
  }
}

}  // extern "C"
