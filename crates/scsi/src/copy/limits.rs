//! The copy manager's advertised limits: RECEIVE COPY OPERATING
//! PARAMETERS, VPD 8Fh and the parameter-list validation all read these,
//! so what is advertised is exactly what is enforced.

use crate::lu::LogicalUnit;
use oxcopy_copy::RodManager;

/// MAXIMUM CSCD DESCRIPTOR COUNT.
pub const MAX_CSCD_DESCRIPTORS: u16 = 64;
/// MAXIMUM SEGMENT DESCRIPTOR COUNT.
pub const MAX_SEGMENT_DESCRIPTORS: u16 = 64;
/// MAXIMUM DESCRIPTOR LIST LENGTH (CSCD + segment lists), bytes.
pub const MAX_DESCRIPTOR_LIST_LENGTH: u32 = 8192;
/// MAXIMUM SEGMENT LENGTH, bytes. The largest value the field holds:
/// an 0Ah segment (32-bit byte count) can never exceed it and an 02h
/// segment only with a CSCD block length of 64 KiB or more. (Zero would
/// also mean "no limit", but hosts — libiscsi's ExtendedCopy.Large among
/// them — read 0 as "no 0Ah support worth testing".)
pub const MAX_SEGMENT_LENGTH: u32 = u32::MAX;
/// MAXIMUM INLINE DATA LENGTH: inline data (04h segments) is not supported.
pub const MAX_INLINE_DATA_LENGTH: u32 = 0;
/// HELD DATA LIMIT: no held data (no 0Bh..0Fh segments, no RECEIVE COPY DATA).
pub const HELD_DATA_LIMIT: u32 = 0;
/// TOTAL CONCURRENT COPIES (and MAXIMUM IDENTIFIED CONCURRENT COPIES), per LU.
pub const TOTAL_CONCURRENT_COPIES: u16 = 255;
/// DATA SEGMENT GRANULARITY (log2 bytes): any byte count.
pub const DATA_SEGMENT_GRANULARITY_LOG2: u8 = 0;
/// INLINE DATA GRANULARITY (log2 bytes).
pub const INLINE_DATA_GRANULARITY_LOG2: u8 = 0;
/// Implemented descriptor type codes, ascending: segments 02h, 07h, 0Ah,
/// 14h and the identification CSCD E4h.
pub const IMPLEMENTED_DESCRIPTOR_TYPES: [u8; 5] = [0x02, 0x07, 0x0A, 0x14, 0xE4];
/// CSCD IDs above 07FFh we accept: FFFFh, "the LU that got the command".
pub const SUPPORTED_CSCD_IDS: [u16; 1] = [0xFFFF];
/// MAXIMUM TOKEN TRANSFER SIZE, bytes (advertised in blocks of each LU).
pub const MAX_TOKEN_TRANSFER_BYTES: u64 = 4 << 30;
/// OPTIMAL TRANSFER COUNT of token copy, bytes: Windows sizes each PT/WUT by it.
pub const OPTIMAL_TOKEN_TRANSFER_BYTES: u64 = 256 << 20;
/// MAXIMUM RANGE DESCRIPTORS (Windows sends at most 64).
pub const MAX_RANGE_DESCRIPTORS: u16 = 64;

/// The ROD limits in blocks of `lu` (VPD 8Fh 0000h and validation).
pub(crate) fn rod_limits(rod: &RodManager, lu: &LogicalUnit) -> super::rod_params::RodLimits {
    let bs = u64::from(lu.block_size().max(1));
    let cfg = rod.config();
    super::rod_params::RodLimits {
        max_ranges: MAX_RANGE_DESCRIPTORS,
        max_inactivity_timeout: cfg.max_inactivity_timeout,
        default_inactivity_timeout: cfg.default_inactivity_timeout,
        max_token_transfer_blocks: MAX_TOKEN_TRANSFER_BYTES / bs,
    }
}

/// OPTIMAL TRANSFER COUNT of token copy in blocks of `lu`.
pub(crate) fn optimal_token_blocks(lu: &LogicalUnit) -> u64 {
    OPTIMAL_TOKEN_TRANSFER_BYTES / u64::from(lu.block_size().max(1))
}

/// Resource refusals, logged at warn level with the initiator, LU and limit
/// that refused — at most once per [`RefusalLog::WINDOW`] for each
/// (initiator, limit), with the number suppressed meanwhile, so a host
/// looping on a refused command cannot flood the log. Time comes from the
/// registry's clock.
#[derive(Debug)]
pub struct RefusalLog {
    clock: std::sync::Arc<dyn oxcopy_copy::Clock>,
    seen: parking_lot::Mutex<std::collections::HashMap<RefusalKey, (std::time::Instant, u64)>>,
}

/// (initiator, limit) of a logged refusal.
type RefusalKey = (String, &'static str);

impl RefusalLog {
    /// One line per (initiator, limit) per this long at most.
    pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
    /// (initiator, limit) pairs remembered at most (the oldest are forgotten).
    const MAX_KEYS: usize = 1024;

    /// A log telling time by `clock`.
    pub fn new(clock: std::sync::Arc<dyn oxcopy_copy::Clock>) -> Self {
        RefusalLog { clock, seen: parking_lot::Mutex::new(std::collections::HashMap::new()) }
    }

    /// `initiator` was refused on `lu` by `limit` (a configuration key or a
    /// named bound); returns whether a line was written.
    pub fn refused(&self, initiator: &str, lu: &str, limit: &'static str, what: &str) -> bool {
        let now = self.clock.now();
        let mut seen = self.seen.lock();
        let key = (initiator.to_owned(), limit);
        let suppressed = match seen.get_mut(&key) {
            Some((at, n)) if now.saturating_duration_since(*at) < Self::WINDOW => {
                *n += 1;
                return false;
            }
            Some((_, n)) => std::mem::take(n),
            None => 0,
        };
        if seen.len() >= Self::MAX_KEYS && !seen.contains_key(&key) {
            if let Some(oldest) = seen.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone()) {
                seen.remove(&oldest);
            }
        }
        seen.insert(key, (now, 0));
        drop(seen);
        tracing::warn!(initiator, lu, limit, suppressed, "{what} refused: resource limit reached");
        true
    }
}

/// The configuration key (or bound) behind a resource refusal, if `e` is one.
pub fn refusal_limit(e: &oxcopy_copy::CopyError) -> Option<&'static str> {
    use oxcopy_copy::{CopyError, TokenError};
    Some(match e {
        CopyError::Token(TokenError::TooMany) => "copy_domain.max_tokens",
        CopyError::Token(TokenError::InitiatorShare) => "copy_domain.max_tokens_per_initiator",
        CopyError::NoSnapshotSpace => "copy_domain.max_snapshot_bytes(_per_initiator)",
        CopyError::InsufficientResources => "server.max_concurrent_copies (or 255 per LU)",
        CopyError::RequesterShare => "server.max_concurrent_copies_per_session",
        _ => return None,
    })
}

#[cfg(test)]
mod refusal_tests {
    use super::*;
    use oxcopy_copy::ManualClock;
    use std::sync::Arc;

    #[test]
    fn one_line_per_initiator_and_limit_per_window() {
        let clock = Arc::new(ManualClock::new());
        let log = RefusalLog::new(clock.clone());
        assert!(log.refused("iqn.a", "lu0", "x", "POPULATE TOKEN"));
        assert!(!log.refused("iqn.a", "lu0", "x", "POPULATE TOKEN"), "suppressed within the window");
        assert!(log.refused("iqn.b", "lu0", "x", "POPULATE TOKEN"), "another initiator has its own line");
        assert!(log.refused("iqn.a", "lu0", "y", "POPULATE TOKEN"), "another limit too");
        clock.advance(RefusalLog::WINDOW);
        assert!(log.refused("iqn.a", "lu0", "x", "POPULATE TOKEN"), "again after the window");
    }

    #[test]
    fn remembered_pairs_are_bounded() {
        let log = RefusalLog::new(Arc::new(ManualClock::new()));
        for i in 0..RefusalLog::MAX_KEYS + 10 {
            log.refused(&format!("iqn.{i}"), "lu", "x", "c");
        }
        assert!(log.seen.lock().len() <= RefusalLog::MAX_KEYS);
    }
}
