//! The EXTENDED COPY scenarios on real filesystems made on loop devices:
//! XFS with reflink (copies must share extents: the metrics endpoint shows
//! `method="reflink"` bytes) and ext4 (no reflink: copy_file_range).
//!
//! Root only: skipped with a `skipped: …` line otherwise, unless
//! `OXCOPY_REQUIRE_XFS=1` (CI as root), which makes a missing loop
//! filesystem a failure.

mod common;
mod xcopy_support;

use oxcopy_testkit::LoopFs;
use xcopy_support::scenarios;
use xcopy_support::*;

const SIZES: Sizes = Sizes { open: GIB + 256 * MIB, open_4k: 256 * MIB, small: 64 * MIB };

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bytes {
    reflink: u64,
    cfr: u64,
    rw: u64,
    hole: u64,
}

async fn counters(d: &XDaemon) -> Bytes {
    let text = d.scrape().await;
    let m = |k: &str| oxcopyd::metrics_http::sample(&text, "oxcopy_copy_bytes_total", &format!("method=\"{k}\""));
    Bytes { reflink: m("reflink"), cfr: m("copy_file_range"), rw: m("read_write"), hole: m("hole") }
}

fn delta(a: Bytes, b: Bytes) -> Bytes {
    Bytes { reflink: b.reflink - a.reflink, cfr: b.cfr - a.cfr, rw: b.rw - a.rw, hole: b.hole - a.hole }
}

/// Every scenario on `fs`; returns the metrics deltas of (the non-overlapping
/// copies, the 1 GiB sparse copy).
async fn run_all(fs: &LoopFs) -> (Bytes, Bytes) {
    let d = XDaemon::start_in(&fs.mnt, SIZES).await;
    let s = d.session(OPEN).await;
    let c0 = counters(&d).await;
    scenarios::within_and_between_lus(&s).await;
    let c1 = counters(&d).await;
    scenarios::overlapping(&s).await;
    scenarios::block_sizes(&s).await;
    let c2 = counters(&d).await;
    scenarios::large(&d, &s, GIB).await;
    let c3 = counters(&d).await;
    s.logout().await.expect("logout");
    d.shutdown().await;
    (delta(c0, c1), delta(c2, c3))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xfs_reflink_copies() {
    let Some(fs) = LoopFs::xfs_reflink(4096) else {
        return;
    };
    let (small, large) = run_all(&fs).await;
    eprintln!("XFS: LU copies {small:?}; 1 GiB sparse copy {large:?}");
    // Block-aligned copies between and within LUs share extents.
    assert!(small.reflink >= 2 * MIB + 65535 * 512 - 4096, "{small:?}");
    assert_eq!(small.rw, 0, "{small:?}");
    // The sparse GiB: its 16 MiB of data by reflink, the rest as holes.
    assert!(large.reflink >= 16 * MIB, "{large:?}");
    assert_eq!((large.cfr, large.rw), (0, 0), "{large:?}");
    assert_eq!(large.reflink + large.hole, GIB, "{large:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext4_copy_file_range_copies() {
    let Some(fs) = LoopFs::ext4(4096) else {
        return;
    };
    let (small, large) = run_all(&fs).await;
    eprintln!("ext4: LU copies {small:?}; 1 GiB sparse copy {large:?}");
    assert_eq!(small.reflink, 0, "{small:?}");
    assert!(small.cfr >= 2 * MIB + 65535 * 512, "{small:?}");
    assert_eq!(small.rw, 0, "{small:?}");
    assert_eq!((large.reflink, large.rw), (0, 0), "{large:?}");
    assert!(large.cfr >= 16 * MIB, "{large:?}");
    assert_eq!(large.cfr + large.hole, GIB, "{large:?}");
}
