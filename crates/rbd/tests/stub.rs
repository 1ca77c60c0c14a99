//! Without the `ceph` feature there is nothing to test against a cluster:
//! opening fails clearly, and CI asking for Ceph tests (OXCOPY_REQUIRE_CEPH=1)
//! fails rather than silently skipping them.
#![cfg(not(feature = "ceph"))]

use std::io::Write;

use oxcopy_rbd::{rbd_error_kind, RbdErrorKind, RbdOptions, RbdStorage};

#[test]
fn built_without_ceph() {
    assert!(
        std::env::var("OXCOPY_REQUIRE_CEPH").map_or(true, |v| v != "1"),
        "OXCOPY_REQUIRE_CEPH=1 but oxcopy-rbd was built without the `ceph` feature: \
         run cargo test -p oxcopy-rbd --features ceph"
    );
    let _ =
        writeln!(std::io::stderr(), "SKIPPED: oxcopy-rbd built without the `ceph` feature; cluster tests not compiled");
    let e = RbdStorage::open(&RbdOptions::new("/nonexistent/ceph.conf", "rbd", "x")).expect_err("stub");
    assert_eq!(rbd_error_kind(&e), Some(RbdErrorKind::NoCephSupport));
    const { assert!(!oxcopy_rbd::CEPH_SUPPORT) };
}
