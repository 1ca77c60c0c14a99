//! The host copy: read from the source and write to the destination with
//! several commands in flight, and the read-back verification.

use super::endpoint::Endpoint;
use crate::progress::Progress;
use anyhow::Context;
use oxcopy_initiator::plan::lcm;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

/// Transfer size when no target says otherwise.
pub const DEFAULT_TRANSFER: u64 = 1 << 20;
/// Never more than this per command.
pub const MAX_TRANSFER: u64 = 16 << 20;
/// Default number of chunks in flight.
pub const DEFAULT_QUEUE_DEPTH: usize = 8;

/// Inputs of the transfer-size choice, per iSCSI end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransferHints {
    /// Block size (bytes).
    pub block_size: u64,
    /// OPTIMAL TRANSFER LENGTH in bytes, if reported.
    pub optimal: Option<u64>,
    /// MAXIMUM TRANSFER LENGTH in bytes, if reported.
    pub maximum: Option<u64>,
    /// Negotiated MaxBurstLength.
    pub max_burst: u64,
}

/// Bytes per command: the smallest OPTIMAL TRANSFER LENGTH reported (else
/// 1 MiB), capped by every MAXIMUM TRANSFER LENGTH and MaxBurstLength (so a
/// write is one burst) and 16 MiB, rounded down to whole blocks of both ends
/// (at least one).
pub fn transfer_size(ends: &[TransferHints]) -> u64 {
    let unit = ends.iter().map(|h| h.block_size.max(1)).fold(1, lcm);
    let mut size = ends.iter().filter_map(|h| h.optimal).min().unwrap_or(DEFAULT_TRANSFER);
    for h in ends {
        if let Some(m) = h.maximum {
            size = size.min(m);
        }
        if h.max_burst > 0 {
            size = size.min(h.max_burst);
        }
    }
    size = size.min(MAX_TRANSFER);
    (size / unit).max(1) * unit
}

/// The hints of one end (local ends have none; an NVMe namespace has its
/// block size and the controller's MDTS).
pub fn hints(e: &Endpoint) -> Option<TransferHints> {
    if let Some(n) = e.nvme() {
        return Some(TransferHints {
            block_size: n.block_size() as u64,
            optimal: None,
            // NLB is 16 bits: at most 65536 blocks per command.
            maximum: Some(n.max_transfer_bytes().unwrap_or(u64::MAX).min(65536 * n.block_size() as u64)),
            max_burst: 0,
        });
    }
    let l = e.iscsi()?;
    Some(TransferHints {
        block_size: l.block_size as u64,
        optimal: l.optimal_transfer_bytes(),
        maximum: l.max_transfer_bytes(),
        max_burst: l.session.params().max_burst_length as u64,
    })
}

/// Copy `bytes` bytes, `chunk` bytes per command, `qd` chunks in flight
/// (each chunk is read, then written). Stops at the first error.
pub async fn copy(
    src: &Endpoint,
    dst: &Endpoint,
    bytes: u64,
    chunk: u64,
    qd: usize,
    progress: &Progress,
) -> anyhow::Result<()> {
    let mut set = JoinSet::new();
    let mut next = 0u64;
    loop {
        while set.len() < qd.max(1) && next < bytes {
            let n = chunk.min(bytes - next);
            let (s, d, off) = (src.clone(), dst.clone(), next);
            set.spawn(async move {
                let data = s.read(off, n).await?;
                d.write(off, data).await?;
                anyhow::Ok(n)
            });
            next += n;
        }
        match set.join_next().await {
            None => return Ok(()),
            Some(Ok(Ok(n))) => progress.inc(n),
            Some(Ok(Err(e))) => return Err(e),
            Some(Err(e)) => return Err(anyhow::anyhow!("copy task failed: {e}")),
        }
    }
}

/// What the verification found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VerifyReport {
    pub ok: bool,
    pub digest: &'static str,
    pub chunk_bytes: u64,
    pub chunks: u64,
    pub mismatched_chunks: u64,
    /// Byte offset (from the copy's start) of the first differing chunk.
    pub first_mismatch_offset: Option<u64>,
    pub seconds: f64,
}

/// Read both sides back, chunk by chunk, and compare SHA-256 digests.
pub async fn verify(
    src: &Endpoint,
    dst: &Endpoint,
    bytes: u64,
    chunk: u64,
    qd: usize,
    progress: &Progress,
) -> anyhow::Result<VerifyReport> {
    let t0 = std::time::Instant::now();
    let mut set = JoinSet::new();
    let mut next = 0u64;
    let (mut chunks, mut bad, mut first) = (0u64, 0u64, None::<u64>);
    loop {
        while set.len() < qd.max(1) && next < bytes {
            let n = chunk.min(bytes - next);
            let (s, d, off) = (src.clone(), dst.clone(), next);
            set.spawn(async move {
                let (a, b) = tokio::try_join!(s.read(off, n), d.read(off, n))?;
                let same = tokio::task::spawn_blocking(move || Sha256::digest(&a) == Sha256::digest(&b)).await?;
                anyhow::Ok((off, n, same))
            });
            next += n;
        }
        match set.join_next().await {
            None => break,
            Some(Ok(Ok((off, n, same)))) => {
                chunks += 1;
                if !same {
                    bad += 1;
                    first = Some(first.map_or(off, |f| f.min(off)));
                }
                progress.inc(n);
            }
            Some(Ok(Err(e))) => return Err(e.context("verify")),
            Some(Err(e)) => return Err(anyhow::anyhow!("verify task failed: {e}")),
        }
    }
    Ok(VerifyReport {
        ok: bad == 0,
        digest: "SHA-256",
        chunk_bytes: chunk,
        chunks,
        mismatched_chunks: bad,
        first_mismatch_offset: first,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Testing hook: flip the bits of one byte of the destination, in the
/// middle of the copied range (whole granule rewritten).
pub async fn corrupt(dst: &Endpoint, bytes: u64) -> anyhow::Result<()> {
    let g = dst.granularity();
    if bytes < g {
        return Ok(());
    }
    let at = bytes / 2 / g * g;
    let data = dst.read(at, g).await.context("test hook: reading the destination")?;
    let mut v = data.to_vec();
    v[0] ^= 0xff;
    dst.write(at, v.into()).await.context("test hook: corrupting the destination")?;
    dst.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(bs: u64, optimal: Option<u64>, maximum: Option<u64>, max_burst: u64) -> TransferHints {
        TransferHints { block_size: bs, optimal, maximum, max_burst }
    }

    #[test]
    fn transfer_size_rules() {
        // Nothing known (two local ends): 1 MiB.
        assert_eq!(transfer_size(&[]), 1 << 20);
        // oxcopyd: OTL 1 MiB, MTL 16 MiB, MaxBurstLength 16 MiB.
        assert_eq!(transfer_size(&[h(512, Some(1 << 20), Some(16 << 20), 16 << 20)]), 1 << 20);
        // No OTL, small burst (tgt-like 256 KiB): one burst per command.
        assert_eq!(transfer_size(&[h(512, None, None, 256 << 10)]), 256 << 10);
        // Smallest optimal of the two ends, capped by the other's maximum.
        assert_eq!(
            transfer_size(&[h(512, Some(4 << 20), None, 16 << 20), h(4096, Some(8 << 20), Some(2 << 20), 16 << 20)]),
            2 << 20
        );
        // Huge optimal: capped at 16 MiB.
        assert_eq!(transfer_size(&[h(512, Some(1 << 30), None, 0)]), 16 << 20);
        // Rounded to whole blocks of both ends, at least one.
        assert_eq!(transfer_size(&[h(512, Some(1000), None, 0), h(4096, None, None, 0)]), 4096);
        assert_eq!(transfer_size(&[h(4096, Some(10_000), None, 0)]), 8192);
    }
}
