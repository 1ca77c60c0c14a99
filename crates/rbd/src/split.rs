//! Cutting byte ranges at RBD object boundaries (pure arithmetic, no Ceph).

/// One piece of a request: `len` bytes at image offset `offset`, which are
/// bytes `pos..pos+len` of the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Image offset.
    pub offset: u64,
    /// Offset in the request (the caller's buffer).
    pub pos: u64,
    /// Length in bytes (> 0).
    pub len: u64,
}

/// Cut `offset..offset+len` where it crosses a multiple of `obj_size`, so each
/// piece lies inside one RADOS object. `obj_size == 0` (unknown) gives one
/// piece. A range that would overflow `u64` is clipped at `u64::MAX` (callers
/// check ranges first). Empty ranges give no pieces.
pub fn split_at_objects(offset: u64, len: u64, obj_size: u64) -> impl Iterator<Item = Piece> {
    let end = offset.saturating_add(len);
    let mut at = offset;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let next = match obj_size {
            0 => end,
            n => (at - at % n).checked_add(n).map_or(end, |b| b.min(end)),
        };
        let piece = Piece { offset: at, pos: at - offset, len: next - at };
        at = next;
        Some(piece)
    })
}

/// Index of the object holding image byte `offset` (`obj_size` 0 → 0).
pub fn object_of(offset: u64, obj_size: u64) -> u64 {
    offset.checked_div(obj_size).unwrap_or(0)
}

/// Objects scanned per `rbd_diff_iterate2` call by [`scan_run`].
pub const SCAN_WINDOW_OBJECTS: u64 = 64;

/// The allocation run starting at `offset` (at most `len` bytes, `len > 0`),
/// at whole-object granularity: an object is mapped when `query` reports any
/// existing extent in it; a run ends at the first object whose state differs.
///
/// `query(start, len)` returns `(offset, len, exists)` extents of an
/// object-aligned window (what `rbd_diff_iterate2` reports); extents with
/// `exists == false` are holes. At most `max_windows` windows are scanned, so
/// a long run may be reported shorter than it is (callers continue from its
/// end). Returns `(mapped, run_len)` with `1 <= run_len <= len`.
pub fn scan_run<E>(
    offset: u64,
    len: u64,
    obj_size: u64,
    max_windows: u32,
    mut query: impl FnMut(u64, u64) -> Result<Vec<(u64, u64, bool)>, E>,
) -> Result<(bool, u64), E> {
    let obj = if obj_size == 0 { 4 << 20 } else { obj_size };
    let end = offset.saturating_add(len);
    let mut state: Option<bool> = None;
    let mut win_start = offset - offset % obj;
    let mut run_end = offset;
    for _ in 0..max_windows.max(1) {
        if win_start >= end {
            break;
        }
        let win_end = win_start.saturating_add(obj.saturating_mul(SCAN_WINDOW_OBJECTS)).min(end);
        let first = win_start / obj;
        let count = usize::try_from(object_of(win_end - 1, obj) - first + 1).unwrap_or(0);
        let mut mapped = vec![false; count];
        for (e_off, e_len, exists) in query(win_start, win_end - win_start)? {
            if !exists || e_len == 0 {
                continue;
            }
            let lo = e_off.max(win_start);
            let hi = e_off.saturating_add(e_len).min(win_end);
            if lo >= hi {
                continue;
            }
            for k in object_of(lo, obj)..=object_of(hi - 1, obj) {
                if let Some(m) = usize::try_from(k - first).ok().and_then(|i| mapped.get_mut(i)) {
                    *m = true;
                }
            }
        }
        for (i, &m) in mapped.iter().enumerate() {
            let o_start = (first + i as u64).saturating_mul(obj);
            let o_end = o_start.saturating_add(obj).min(win_end);
            if o_end <= offset {
                continue;
            }
            match state {
                None => state = Some(m),
                Some(s) if s != m => return Ok((s, run_end.max(offset + 1).min(end) - offset)),
                Some(_) => {}
            }
            run_end = o_end;
        }
        win_start = win_end;
    }
    // Unknown (nothing scanned) counts as mapped.
    Ok((state.unwrap_or(true), run_end.max(offset + 1).min(end) - offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A fake image: object k has data when `objs[k]`.
    fn fake(objs: &[bool], obj: u64) -> impl FnMut(u64, u64) -> Result<Vec<(u64, u64, bool)>, ()> + '_ {
        move |start, len| {
            assert_eq!(start % obj, 0, "windows are object-aligned");
            Ok((start / obj..(start + len).div_ceil(obj))
                .filter(|&k| objs.get(k as usize).copied().unwrap_or(false))
                .map(|k| (k * obj, 10, true))
                .collect())
        }
    }

    #[test]
    fn runs() {
        let objs = [true, true, false, false, false, true];
        let obj = 1024;
        assert_eq!(scan_run(0, 6 * obj, obj, 4, fake(&objs, obj)), Ok((true, 2 * obj)));
        assert_eq!(scan_run(5, 100, obj, 4, fake(&objs, obj)), Ok((true, 100)));
        assert_eq!(scan_run(obj + 7, 6 * obj - obj - 7, obj, 4, fake(&objs, obj)), Ok((true, obj - 7)));
        assert_eq!(scan_run(2 * obj + 1, 4 * obj - 1, obj, 4, fake(&objs, obj)), Ok((false, 3 * obj - 1)));
        assert_eq!(scan_run(5 * obj, obj, obj, 4, fake(&objs, obj)), Ok((true, obj)));
        assert_eq!(scan_run(0, 6 * obj, obj, 4, |_, _| Err::<Vec<_>, _>("down")), Err("down"));
    }

    #[test]
    fn long_runs_stop_after_max_windows() {
        let objs = vec![false; 1000];
        let obj = 512;
        let (m, l) = scan_run(0, 1000 * obj, obj, 2, fake(&objs, obj)).expect("scan");
        assert!(!m);
        assert_eq!(l, 2 * SCAN_WINDOW_OBJECTS * obj);
    }

    proptest! {
        #[test]
        fn run_matches_a_naive_walk(
            objs in proptest::collection::vec(any::<bool>(), 1..300),
            a in any::<u64>(), b in any::<u64>(), order in 9u32..13,
        ) {
            let obj = 1u64 << order;
            let size = objs.len() as u64 * obj;
            let offset = a % size;
            let len = 1 + b % (size - offset);
            let (m, l) = scan_run(offset, len, obj, 1000, fake(&objs, obj)).expect("scan");
            prop_assert!(l >= 1 && l <= len);
            for at in [offset, offset + l - 1] {
                prop_assert_eq!(objs[(at / obj) as usize], m);
            }
            if offset + l < offset + len {
                prop_assert_ne!(objs[((offset + l) / obj) as usize], m, "run ends at a change");
            }
        }
    }

    #[test]
    fn examples() {
        let v: Vec<_> = split_at_objects(4096, 8 << 20, 4 << 20).collect();
        assert_eq!(
            v,
            vec![
                Piece { offset: 4096, pos: 0, len: (4 << 20) - 4096 },
                Piece { offset: 4 << 20, pos: (4 << 20) - 4096, len: 4 << 20 },
                Piece { offset: 8 << 20, pos: (8 << 20) - 4096, len: 4096 },
            ]
        );
        assert_eq!(split_at_objects(10, 0, 4).count(), 0);
        assert_eq!(split_at_objects(10, 7, 0).collect::<Vec<_>>(), vec![Piece { offset: 10, pos: 0, len: 7 }]);
        assert_eq!(split_at_objects(u64::MAX - 3, 100, 1 << 22).map(|p| p.len).sum::<u64>(), 3);
        assert_eq!(object_of(5, 0), 0);
        assert_eq!(object_of(9 << 20, 4 << 20), 2);
    }

    proptest! {
        #[test]
        fn pieces_tile_the_range_inside_objects(
            offset in 0u64..(1 << 40),
            len in 0u64..(64 << 20),
            order in 9u32..26,
        ) {
            let obj = 1u64 << order;
            let pieces: Vec<_> = split_at_objects(offset, len, obj).collect();
            let mut at = offset;
            for p in &pieces {
                prop_assert!(p.len > 0);
                prop_assert_eq!(p.offset, at);
                prop_assert_eq!(p.pos, at - offset);
                prop_assert_eq!(object_of(p.offset, obj), object_of(p.offset + p.len - 1, obj));
                at += p.len;
            }
            prop_assert_eq!(at, offset + len);
            // only the first and last pieces may be partial objects
            for p in pieces.iter().skip(1).take(pieces.len().saturating_sub(2)) {
                prop_assert_eq!(p.len, obj);
                prop_assert_eq!(p.offset % obj, 0);
            }
            let expect = if len == 0 { 0 } else { object_of(offset + len - 1, obj) - object_of(offset, obj) + 1 };
            prop_assert_eq!(pieces.len() as u64, expect);
        }

        #[test]
        fn any_input_terminates(offset: u64, len: u64, obj in 0u64..(1 << 30)) {
            let n = split_at_objects(offset, len, obj.max(1 << 20)).take(1 << 16).count();
            prop_assert!(n <= 1 << 16);
        }
    }
}
