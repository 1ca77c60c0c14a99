//! ODX token copy on real filesystems made on loop devices: XFS with
//! reflink (a point-in-time token is a reflink snapshot, and the token copy
//! shares extents: `method="reflink"` in the metrics, no read/write) and
//! ext4 (no reflink: point-in-time by copy-on-write of the old blocks).
//!
//! Root only: skipped with a `skipped: …` line otherwise, unless
//! `OXCOPY_REQUIRE_XFS=1` (CI as root), which makes a missing loop
//! filesystem a failure.

mod common;
mod odx_support;
mod xcopy_support;

use odx_support::scenarios;
use odx_support::*;
use oxcopy_testkit::LoopFs;
use std::time::Instant;
use xcopy_support::scenarios::{LUN_A, LUN_B};
use xcopy_support::{Sizes, OPEN};

const SIZES: Sizes = Sizes { open: GIB + 256 * MIB, open_4k: 256 * MIB, small: 64 * MIB };

/// Every scenario on `fs`; returns the metrics of the 64 MiB point-in-time
/// token copy and of the 1 GiB token copy.
async fn run_all(fs: &LoopFs) -> (Methods, Methods) {
    let d = ODaemon::start_in(&fs.mnt, SIZES, Domain::default()).await;
    let s = d.session(OPEN).await;
    scenarios::across_luns_and_targets(&d, &s).await;
    scenarios::ranges_and_offsets(&s).await;
    scenarios::block_sizes(&s).await;
    scenarios::change_vulnerable(&s).await;
    scenarios::access_upon_reference(&s).await;
    let pit = scenarios::point_in_time(&d, &s, Some(PIT_DEFAULT), 64 * MIB).await;
    // 1 GiB, sparse except for four 4 MiB regions: PT of the whole GiB, then
    // overwrite one region, then the copy: the old data arrives.
    let len = GIB;
    let spots = [0, len / 3 / 4096 * 4096, len - 4 * MIB];
    for (i, off) in spots.iter().enumerate() {
        fill_file(&d.file("open0.img"), *off, &pattern(300 + i as u64, (4 * MIB) as usize));
    }
    let olds: Vec<Vec<u8>> =
        spots.iter().map(|off| xcopy_support::file_bytes(&d.file("open0.img"), *off, 4 * MIB)).collect();
    let t0 = Instant::now();
    let ranges = (0..4u64).map(|i| range(i * (len / 4 / 512), (len / 4 / 512) as u32)).collect();
    let t = populate(&s, LUN_A, 9000, &pt(Some(PIT_DEFAULT), ranges)).await;
    eprintln!("PT + RRTI of 1 GiB: {:?}", t0.elapsed());
    write(&s, LUN_A, spots[1] / 512, &pattern(310, (4 * MIB) as usize), 512).await;
    let before = d.methods().await;
    let t0 = Instant::now();
    let dst = (0..4u64).map(|i| range(i * (len / 4 / 512), (len / 4 / 512) as u32)).collect();
    wut_ok(&s, LUN_B, 9001, &wut(t, 0, dst)).await;
    eprintln!("WUT of 1 GiB: {:?}", t0.elapsed());
    let big = d.methods().await.since(before);
    for (off, old) in spots.iter().zip(&olds) {
        same(&read(&s, LUN_B, off / 512, 4 * MIB, 512).await, old, "1 GiB point-in-time copy, data region");
    }
    s.logout().await.expect("logout");
    d.shutdown().await;
    (pit, big)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xfs_reflink_token_copies() {
    let Some(fs) = LoopFs::xfs_reflink(4096) else {
        return;
    };
    let (pit, big) = run_all(&fs).await;
    eprintln!("XFS: 64 MiB PIT copy {pit:?}; 1 GiB PIT copy {big:?}");
    // The point-in-time copy shares extents with the snapshot: reflink, no read/write.
    assert!(pit.reflink >= 64 * MIB - 4096, "{pit:?}");
    assert_eq!((pit.rw, pit.cfr), (0, 0), "{pit:?}");
    assert!(big.reflink >= 12 * MIB, "{big:?}");
    assert_eq!((big.rw, big.cfr), (0, 0), "{big:?}");
    assert_eq!(big.reflink + big.hole, GIB, "{big:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext4_copy_on_write_token_copies() {
    let Some(fs) = LoopFs::ext4(4096) else {
        return;
    };
    let (pit, big) = run_all(&fs).await;
    eprintln!("ext4: 64 MiB PIT copy {pit:?}; 1 GiB PIT copy {big:?}");
    // No reflink on ext4; the data checks in run_all are the proof.
    assert_eq!(pit.reflink, 0, "{pit:?}");
    assert_eq!(big.reflink, 0, "{big:?}");
    assert!(big.total() <= GIB, "{big:?}");
}
