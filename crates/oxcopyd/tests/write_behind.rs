//! Write-behind (`[server] write_behind`, on by default): a LUN never holds
//! much more dirty data than its disk lags behind, so a point-in-time
//! POPULATE TOKEN right after gigabytes of buffered writes — whose reflink
//! must wait for the source range to be written back — answers quickly.
//!
//! Root only (an XFS loop filesystem): skipped with a `skipped: …` line
//! otherwise, unless `OXCOPY_REQUIRE_XFS=1` (CI as root).

mod common;
mod odx_support;
mod xcopy_support;

use bytes::Bytes;
use odx_support::*;
use oxcopy_testkit::LoopFs;
use std::time::{Duration, Instant};
use xcopy_support::scenarios::LUN_A;
use xcopy_support::{Sizes, OPEN};

/// The LUN written and then tokenised.
const LEN: u64 = 4 * GIB;
const SIZES: Sizes = Sizes { open: LEN, open_4k: 16 * MIB, small: 16 * MIB };

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn populate_token_right_after_4_gib_of_writes_is_quick() {
    let Some(fs) = LoopFs::xfs_reflink(6 * 1024) else {
        return;
    };
    let d = ODaemon::start_in(&fs.mnt, SIZES, Domain::default()).await;
    let s = d.session(OPEN).await;
    // 4 GiB of buffered writes through the target, 8 MiB commands, 4 in flight.
    let chunk = Bytes::from(pattern(77, (8 * MIB) as usize));
    let t0 = Instant::now();
    let per = 8 * MIB / 512;
    let mut lba = 0u64;
    while lba < LEN / 512 {
        let w = |l: u64| s.write16(LUN_A, l, chunk.clone(), 512, false);
        let (a, b, c, e) = tokio::join!(w(lba), w(lba + per), w(lba + 2 * per), w(lba + 3 * per));
        for r in [a, b, c, e] {
            r.expect("WRITE (16)");
        }
        lba += 4 * per;
    }
    let wrote = t0.elapsed();
    // Right away: a point-in-time token over all of it.
    let t0 = Instant::now();
    let ranges = (0..4u64).map(|i| range(i * (GIB / 512), (GIB / 512) as u32)).collect();
    let token = populate(&s, LUN_A, 1, &pt(Some(PIT_DEFAULT), ranges)).await;
    let took = t0.elapsed();
    eprintln!("wrote 4 GiB in {wrote:?}; POPULATE TOKEN + RRTI of it right after: {took:?}");
    assert_eq!(rod_type(&token), PIT_DEFAULT);
    assert!(took < Duration::from_millis(500), "POPULATE TOKEN waited {took:?} for writeback");
    s.logout().await.expect("logout");
    d.shutdown().await;
}
