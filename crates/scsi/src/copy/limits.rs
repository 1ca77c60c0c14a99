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
