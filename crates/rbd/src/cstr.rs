//! C strings for librados / librbd arguments: built with [`CString`], an
//! interior NUL is an [`RbdErrorKind::InvalidArgument`] error, never a panic.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{RbdError, RbdErrorKind};

/// `s` as a C string; `what` names the argument in the error.
pub fn c_string(what: &str, s: &str) -> Result<CString, RbdError> {
    CString::new(s).map_err(|e| {
        RbdError::new(
            RbdErrorKind::InvalidArgument,
            format!("{what} {s:?} contains a NUL byte at {}", e.nul_position()),
        )
    })
}

/// A path as a C string (its raw bytes; non-UTF-8 is fine, NUL is not).
pub fn c_path(what: &str, p: &Path) -> Result<CString, RbdError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|e| {
        RbdError::new(
            RbdErrorKind::InvalidArgument,
            format!("{what} {} contains a NUL byte at {}", p.display(), e.nul_position()),
        )
    })
}

/// A non-empty name (pool, image, client id) as a C string.
pub fn c_name(what: &str, s: &str) -> Result<CString, RbdError> {
    if s.is_empty() {
        return Err(RbdError::new(RbdErrorKind::InvalidArgument, format!("{what} is empty")));
    }
    c_string(what, s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nul_is_an_error() {
        let e = c_string("image", "a\0b").expect_err("interior NUL");
        assert_eq!(e.kind, RbdErrorKind::InvalidArgument);
        assert!(e.message.contains("NUL byte at 1"), "{}", e.message);
        assert!(c_path("ceph.conf", Path::new("/tmp/x\0y")).is_err());
        assert_eq!(c_name("pool", "").expect_err("empty").kind, RbdErrorKind::InvalidArgument);
        assert_eq!(c_name("pool", "rbd").expect("ok").as_bytes(), b"rbd");
        let p = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/\xff.conf"));
        assert_eq!(c_path("conf", p).expect("non-UTF-8 ok").as_bytes(), b"/tmp/\xff.conf");
    }

    proptest! {
        #[test]
        fn never_panics(s in ".*") {
            match c_string("x", &s) {
                Ok(c) => prop_assert_eq!(c.as_bytes(), s.as_bytes()),
                Err(e) => prop_assert!(s.contains('\0') && e.kind == RbdErrorKind::InvalidArgument),
            }
        }
    }
}
