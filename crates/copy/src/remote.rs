//! The copy domain as the engine sees it: other copy managers that share
//! the copy-domain key and hold RODs of their own.
//!
//! A token whose MAC verifies under the domain key but that another copy
//! manager issued is routed ([`crate::RodManager::acquire`]) to the
//! [`Domain`], which opens it at its creator and hands back a
//! [`RemoteRod`]; [`RemoteSource`] makes that a [`CopySource`], so the one
//! executor writes the destination exactly as for a local token (range
//! locks, chunks, cancellation, progress, per-method metrics: the bytes
//! count as [`oxcopy_storage::CopyMethod::Remote`]). The engine knows no
//! wire format: the daemon implements [`Domain`] over the node link.

use crate::error::CopyError;
use crate::source::{CopySource, From, Piece, RemoteInfo, RemoteRod};
use crate::token::{TokenHeader, TOKEN_LEN};
use crate::unit::Unit;
use std::fmt;
use std::sync::Arc;

/// Chunk of a remote copy: COPY OPERATION ABORT, ABORT TASK and LUN RESET
/// stop a pull within this many bytes (a fraction of a second on a storage
/// network), while each chunk is still one streamed READ.
pub const REMOTE_CHUNK: u64 = 16 << 20;

/// The other copy managers of the copy domain.
pub trait Domain: Send + Sync + fmt::Debug {
    /// Open the ROD of `token` — authentic under the domain key (checked
    /// before this is called) and issued by copy manager
    /// `header.manager_id` — at the node that made it. The error is what
    /// the using command reports: the creator's own refusal
    /// ([`CopyError::Token`]), or [`CopyError::Unreachable`].
    fn open(&self, token: &[u8; TOKEN_LEN], header: &TokenHeader) -> Result<Arc<dyn RemoteRod>, CopyError>;

    /// Whether tokens of other copy managers are accepted at all (the
    /// domain has other nodes): VPD 8Fh says REMOTE TOKENS from it.
    fn accepts_remote(&self) -> bool;
}

/// A remote ROD as a copy source: ROD byte offsets, nothing live here.
#[derive(Debug, Clone)]
pub struct RemoteSource {
    rod: Arc<dyn RemoteRod>,
    info: RemoteInfo,
}

impl RemoteSource {
    /// The source for `rod`.
    pub fn new(rod: Arc<dyn RemoteRod>) -> Self {
        let info = rod.info();
        RemoteSource { rod, info }
    }

    /// Size and kind of the ROD.
    pub fn info(&self) -> RemoteInfo {
        self.info
    }

    /// The opened ROD.
    pub fn rod(&self) -> &Arc<dyn RemoteRod> {
        &self.rod
    }
}

impl CopySource for RemoteSource {
    fn live(&self) -> Option<&dyn Unit> {
        None
    }

    fn len(&self) -> u64 {
        self.info.bytes
    }

    fn max_chunk(&self) -> Option<u64> {
        Some(REMOTE_CHUNK)
    }

    fn pieces(&self, offset: u64, len: u64) -> Vec<Piece> {
        if let Some(store) = self.rod.store() {
            return vec![Piece { from: From::Store(store, offset), len }];
        }
        self.rod.prefetch(offset, len);
        vec![Piece { from: From::Remote(self.rod.clone(), offset), len }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{execute, ExecControl, Progress, Run};
    use crate::testing::mem_unit;
    use crate::unit::NoMetrics;
    use crate::CancelToken;
    use oxcopy_storage::Storage;
    use parking_lot::Mutex;

    /// A ROD in memory that can be told to fail after some bytes.
    #[derive(Debug)]
    struct MemRod {
        data: Vec<u8>,
        fail_after: Option<u64>,
        served: Mutex<u64>,
        prefetched: Mutex<Vec<(u64, u64)>>,
    }

    impl RemoteRod for MemRod {
        fn info(&self) -> RemoteInfo {
            RemoteInfo { bytes: self.data.len() as u64, block_size: 512, rod_type: 0x0080_0000 }
        }
        fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), CopyError> {
            let mut served = self.served.lock();
            if self.fail_after.is_some_and(|f| *served + buf.len() as u64 > f) {
                return Err(CopyError::Unreachable("link lost".into()));
            }
            let o = offset as usize;
            buf.copy_from_slice(&self.data[o..o + buf.len()]);
            *served += buf.len() as u64;
            Ok(())
        }
        fn prefetch(&self, offset: u64, len: u64) {
            self.prefetched.lock().push((offset, len));
        }
        fn delete(&self) -> Result<(), CopyError> {
            Ok(())
        }
    }

    fn rod(len: usize, fail_after: Option<u64>) -> Arc<MemRod> {
        let data = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        Arc::new(MemRod { data, fail_after, served: Mutex::new(0), prefetched: Mutex::new(Vec::new()) })
    }

    #[test]
    fn pulled_bytes_land_in_place_and_count_as_remote() {
        let r = rod(1 << 20, None);
        let src = RemoteSource::new(r.clone());
        let (b, mb) = mem_unit(1 << 21, 512, 2);
        let before = mb.contents();
        let p = Progress::default();
        let c = CancelToken::new();
        let ctl = ExecControl { cancel: &[&c], stop: None, progress: &p, metrics: &NoMetrics, chunk_bytes: 256 << 10 };
        let runs = [Run { src: 4096, dst: 8192, len: 600_000 }, Run { src: 700_000, dst: 1 << 20, len: 1024 }];
        let report = execute(&src, b.as_ref(), &runs, &ctl).unwrap();
        assert_eq!(report.remote, 601_024);
        assert_eq!(report.total(), 601_024);
        let after = mb.contents();
        assert_eq!(&after[8192..608_192], &r.data[4096..604_096]);
        assert_eq!(&after[1 << 20..(1 << 20) + 1024], &r.data[700_000..701_024]);
        assert_eq!(&after[..8192], &before[..8192]);
        assert_eq!(&after[608_192..1 << 20], &before[608_192..1 << 20]);
        // Each chunk was announced before it was read.
        let pre = r.prefetched.lock().clone();
        assert_eq!(pre.first(), Some(&(4096, 256 << 10)));
        assert_eq!(pre.last(), Some(&(700_000, 1024)));
    }

    #[test]
    fn a_lost_creator_stops_the_copy_with_unreachable_and_progress_says_how_far() {
        let r = rod(1 << 20, Some(300_000));
        let src = RemoteSource::new(r);
        let (b, mb) = mem_unit(1 << 20, 512, 2);
        let before = mb.contents();
        let p = Progress::default();
        let c = CancelToken::new();
        let ctl = ExecControl { cancel: &[&c], stop: None, progress: &p, metrics: &NoMetrics, chunk_bytes: 128 << 10 };
        let e = execute(&src, b.as_ref(), &[Run { src: 0, dst: 0, len: 1 << 20 }], &ctl).unwrap_err();
        assert!(matches!(e, CopyError::Unreachable(_)), "{e:?}");
        assert_eq!(p.bytes(), 256 << 10, "two whole chunks done before the failure");
        // Nothing beyond the failing chunk was touched.
        assert_eq!(&mb.contents()[384 << 10..], &before[384 << 10..]);
    }

    /// Cancellation acts between chunks: a remote source's are small
    /// whatever the executor's chunk size.
    #[test]
    fn remote_chunks_are_small_so_an_abort_acts_soon() {
        let r = rod(40 << 20, None);
        let src = RemoteSource::new(r.clone());
        let (b, _) = mem_unit(40 << 20, 512, 2);
        let p = Progress::default();
        let c = CancelToken::new();
        let ctl = ExecControl { cancel: &[&c], stop: None, progress: &p, metrics: &NoMetrics, chunk_bytes: 64 << 20 };
        execute(&src, b.as_ref(), &[Run { src: 0, dst: 0, len: 40 << 20 }], &ctl).unwrap();
        let pre = r.prefetched.lock().clone();
        assert_eq!(pre, vec![(0, REMOTE_CHUNK), (REMOTE_CHUNK, REMOTE_CHUNK), (2 * REMOTE_CHUNK, 8 << 20)]);
    }

    /// A ROD this node reads itself (shared storage): no byte through `read`.
    #[derive(Debug)]
    struct StoreRod(Arc<dyn Storage>);

    impl RemoteRod for StoreRod {
        fn info(&self) -> RemoteInfo {
            RemoteInfo { bytes: self.0.len(), block_size: 512, rod_type: 0x0080_0000 }
        }
        fn read(&self, _offset: u64, _buf: &mut [u8]) -> Result<(), CopyError> {
            Err(CopyError::Unreachable("the creator is gone".into()))
        }
        fn delete(&self) -> Result<(), CopyError> {
            Ok(())
        }
        fn store(&self) -> Option<Arc<dyn Storage>> {
            Some(self.0.clone())
        }
    }

    #[test]
    fn a_rod_in_shared_storage_is_copied_from_the_store_not_the_creator() {
        let data: Vec<u8> = (0..1u32 << 20).map(|i| (i * 13 % 251) as u8).collect();
        let store = oxcopy_storage::MemStorage::new(data.len());
        store.write_at(&data, 0).unwrap();
        let src = RemoteSource::new(Arc::new(StoreRod(Arc::new(store))));
        let (b, mb) = mem_unit(1 << 20, 512, 2);
        let p = Progress::default();
        let c = CancelToken::new();
        let ctl = ExecControl { cancel: &[&c], stop: None, progress: &p, metrics: &NoMetrics, chunk_bytes: 256 << 10 };
        let report = execute(&src, b.as_ref(), &[Run { src: 4096, dst: 0, len: 500_000 }], &ctl).unwrap();
        assert_eq!(report.remote, 0, "no byte through the creator");
        assert_eq!(report.total(), 500_000);
        assert_eq!(&mb.contents()[..500_000], &data[4096..504_096]);
    }

    #[test]
    fn runs_beyond_the_rod_are_refused_before_any_read() {
        let r = rod(4096, None);
        let src = RemoteSource::new(r.clone());
        let (b, _) = mem_unit(1 << 16, 512, 2);
        let p = Progress::default();
        let c = CancelToken::new();
        let ctl = ExecControl { cancel: &[&c], stop: None, progress: &p, metrics: &NoMetrics, chunk_bytes: 4096 };
        let e = execute(&src, b.as_ref(), &[Run { src: 512, dst: 0, len: 4096 }], &ctl).unwrap_err();
        assert!(matches!(e, CopyError::OutOfRange));
        assert_eq!(*r.served.lock(), 0);
    }
}
