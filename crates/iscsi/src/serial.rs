//! 32-bit serial number arithmetic (RFC 1982 §3.2) for CmdSN, StatSN,
//! ExpCmdSN, MaxCmdSN and DataSN, used by the target and the initiator.
//!
//! Two numbers exactly 2³¹ apart are incomparable: neither is less than
//! the other (RFC 1982 leaves the result undefined; both functions answer
//! `false` so that such a pair never passes a window check).

/// `a < b` in serial number arithmetic: `b` is 1..2³¹−1 steps after `a`.
pub fn lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// `a <= b` in serial number arithmetic.
pub fn le(a: u32, b: u32) -> bool {
    a == b || lt(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_order() {
        assert!(lt(1, 2));
        assert!(!lt(2, 1));
        assert!(!lt(5, 5));
        assert!(le(5, 5));
        assert!(le(4, 5));
        assert!(!le(6, 5));
    }

    #[test]
    fn wraps_around() {
        assert!(lt(u32::MAX, 0));
        assert!(lt(0xFFFF_FFF0, 0x10));
        assert!(!lt(0x10, 0xFFFF_FFF0));
        assert!(le(u32::MAX, 0));
    }

    #[test]
    fn half_range_apart_is_incomparable() {
        for a in [0u32, 1, 0x7FFF_FFFF, 0x8000_0000, u32::MAX] {
            let b = a.wrapping_add(0x8000_0000);
            assert!(!lt(a, b) && !lt(b, a), "{a:#x} vs {b:#x}");
            assert!(lt(a, b.wrapping_sub(1)), "{a:#x} is before {b:#x} - 1");
        }
    }

    #[test]
    fn exactly_one_of_lt_eq_gt_when_comparable() {
        for (a, b) in [(0u32, 7u32), (u32::MAX - 3, 2), (0x8000_0000, 0x8000_0001), (9, 9)] {
            let n = [lt(a, b), a == b, lt(b, a)].iter().filter(|x| **x).count();
            assert_eq!(n, 1, "{a:#x} vs {b:#x}");
        }
    }
}
