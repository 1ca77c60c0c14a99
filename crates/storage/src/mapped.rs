//! Copies between stores built from other stores (volumes): split into
//! leaf-to-leaf pieces at every boundary of both sides, each piece done by
//! the cheapest method its pair of leaves allows (reflink between two files
//! of one reflink file system, copy_file_range within one file system,
//! read/write across), pieces of different leaf pairs in parallel.
//!
//! A copy is never refused because it must be split: whatever the two
//! layouts, the pieces cover the range exactly (and every leg of a mirror
//! destination). The split is made from the layouts as they are when the
//! copy (one chunk of it, for the copy engine) starts; the caller holds the
//! range locks that keep them still.

use crate::{check_range, generic_copy_range, CopyReport, Result, Storage};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// `len` bytes at `offset` of the leaf store `store`, standing for the
/// bytes at `at` of the range that was mapped (relative to its start).
#[derive(Clone, Debug)]
pub struct Extent {
    pub store: Arc<dyn Storage>,
    pub offset: u64,
    pub len: u64,
    pub at: u64,
}

/// At most this many leaf pairs copy at once.
const PARALLEL: usize = 4;

/// One leaf-to-leaf piece.
#[derive(Clone, Copy)]
struct Piece<'a> {
    dst: &'a dyn Storage,
    dst_off: u64,
    src: &'a dyn Storage,
    src_off: u64,
    len: u64,
}

fn key(s: &dyn Storage) -> usize {
    s as *const dyn Storage as *const () as usize
}

/// Copy `len` bytes from `src` at `src_offset` into `dst` at `dst_offset`,
/// splitting at every boundary of both sides when either is built from
/// other stores (see the module docs); a plain [`Storage::copy_range`]
/// when neither is. `src` may be `dst` with overlapping ranges (the copy
/// then goes through the volume in the safe direction).
pub fn copy_mapped(
    dst: &dyn Storage,
    dst_offset: u64,
    src: &dyn Storage,
    src_offset: u64,
    len: u64,
) -> Result<CopyReport> {
    check_range(src.len(), src_offset, len)?;
    check_range(dst.len(), dst_offset, len)?;
    if len == 0 {
        return Ok(CopyReport::default());
    }
    let dmap = dst.write_map(dst_offset, len)?;
    let smap = src.read_map(src_offset, len)?;
    if dmap.is_none() && smap.is_none() {
        return dst.copy_range(dst_offset, src, src_offset, len);
    }
    let overlap = src_offset < dst_offset + len && dst_offset < src_offset + len;
    if overlap && key(dst) == key(src) {
        return generic_copy_range(dst, dst_offset, src, src_offset, len);
    }
    // Each side as (extent index, offset, len, at), ordered by `at`; a
    // leaf side is one extent: itself (index usize::MAX).
    let side = |map: &Option<Vec<Extent>>, off: u64| -> Vec<(usize, u64, u64, u64)> {
        let mut v: Vec<_> = match map {
            Some(m) => {
                m.iter().enumerate().filter(|(_, e)| e.len > 0).map(|(i, e)| (i, e.offset, e.len, e.at)).collect()
            }
            None => vec![(usize::MAX, off, len, 0)],
        };
        v.sort_by_key(|e| e.3);
        v
    };
    let d = side(&dmap, dst_offset);
    let s = side(&smap, src_offset);
    let dst_of = |i: usize| -> &dyn Storage {
        match &dmap {
            Some(m) if i != usize::MAX => &*m[i].store,
            _ => dst,
        }
    };
    let src_of = |i: usize| -> &dyn Storage {
        match &smap {
            Some(m) if i != usize::MAX => &*m[i].store,
            _ => src,
        }
    };
    // Intersect: every destination extent (mirror legs cover the range
    // again) with the source extents (which cover it once, in order).
    let mut pieces: Vec<Piece<'_>> = Vec::with_capacity(d.len().max(s.len()));
    for &(di, doff, dlen, dat) in &d {
        let dend = dat + dlen;
        let mut k = s.partition_point(|e| e.3 + e.2 <= dat);
        while k < s.len() && s[k].3 < dend {
            let (si, soff, slen, sat) = s[k];
            let lo = dat.max(sat);
            let hi = dend.min(sat + slen);
            if hi > lo {
                pieces.push(Piece {
                    dst: dst_of(di),
                    dst_off: doff + (lo - dat),
                    src: src_of(si),
                    src_off: soff + (lo - sat),
                    len: hi - lo,
                });
            }
            k += 1;
        }
    }
    let covered: u64 = pieces.iter().map(|p| p.len).sum();
    let dst_covered: u64 = d.iter().map(|e| e.2).sum();
    if covered != dst_covered {
        return Err(crate::StorageError::new(
            crate::StorageErrorKind::SizeMismatch,
            format!("volume maps cover {covered} of {dst_covered} bytes to copy"),
        ));
    }
    // Merge runs that continue on both sides within one leaf pair, so a
    // copy between two volumes of the same geometry is one call per leg.
    pieces.sort_by_key(|p| (key(p.dst), key(p.src), p.dst_off));
    let mut merged: Vec<Piece<'_>> = Vec::with_capacity(pieces.len());
    for p in pieces {
        match merged.last_mut() {
            Some(m)
                if key(m.dst) == key(p.dst)
                    && key(m.src) == key(p.src)
                    && m.dst_off + m.len == p.dst_off
                    && m.src_off + m.len == p.src_off =>
            {
                m.len += p.len
            }
            _ => merged.push(p),
        }
    }
    run_pieces(&merged)
}

/// Copy every piece; pieces of different leaf pairs run in parallel (at
/// most [`PARALLEL`] at once), those of one pair in order.
fn run_pieces(pieces: &[Piece<'_>]) -> Result<CopyReport> {
    // Groups: runs of one leaf pair (the pieces are sorted by pair).
    let mut groups: Vec<&[Piece<'_>]> = Vec::new();
    let mut start = 0;
    for i in 1..=pieces.len() {
        if i == pieces.len()
            || key(pieces[i].dst) != key(pieces[start].dst)
            || key(pieces[i].src) != key(pieces[start].src)
        {
            groups.push(&pieces[start..i]);
            start = i;
        }
    }
    let one = |g: &[Piece<'_>]| -> Result<CopyReport> {
        let mut r = CopyReport::default();
        for p in g {
            r.merge(&p.dst.copy_range(p.dst_off, p.src, p.src_off, p.len)?);
        }
        Ok(r)
    };
    if groups.len() <= 1 {
        return groups.first().map_or(Ok(CopyReport::default()), |g| one(g));
    }
    let next = AtomicUsize::new(0);
    let results: Vec<Result<CopyReport>> = std::thread::scope(|sc| {
        let workers: Vec<_> = (0..PARALLEL.min(groups.len()))
            .map(|_| {
                sc.spawn(|| {
                    let mut r = CopyReport::default();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(g) = groups.get(i) else { return Ok(r) };
                        r.merge(&one(g)?);
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(crate::StorageError::new(crate::StorageErrorKind::Io, "a copy thread panicked"))
                })
            })
            .collect()
    });
    let mut total = CopyReport::default();
    for r in results {
        total.merge(&r?);
    }
    Ok(total)
}
