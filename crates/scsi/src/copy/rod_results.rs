//! Response bodies for token copy: RECEIVE ROD TOKEN INFORMATION (84h/07h,
//! digest §4.5, with the Windows rules), and the Third-party Copy VPD
//! descriptors token copy adds (0000h Block Device ROD Token Limits, 0106h
//! ROD Token Features, 0108h Supported ROD Types; digest §6). Pure byte
//! builders, used by `odx` (RRTI) and `vpd` (page 8Fh).

use super::rod_params::RodLimits;
use crate::wire::rod::CopyStatusHeader;
use crate::wire::sense::Sense;
use crate::wire::vpd::{BlockRodFeatures, BlockRodLimits, RodTokenFeatures, RodTypeEntry};
use oxcopy_copy::token::{RodType, TOKEN_LEN};

/// COPY OPERATION STATUS values an RRTI reports (the codes are
/// [`CopyOpStatus`]'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RodOpStatus {
    /// Completed, no errors (count == requested).
    Completed = CopyOpStatus::COMPLETED.0,
    /// Completed with errors.
    CompletedWithErrors = CopyOpStatus::COMPLETED_WITH_ERRORS.0,
    /// Completed without errors, residual data (count < requested).
    CompletedResidual = CopyOpStatus::COMPLETED_RESIDUAL.0,
    /// In progress, foreground.
    InProgressForeground = CopyOpStatus::IN_PROGRESS_FOREGROUND.0,
    /// In progress, background (IMMED=1).
    InProgressBackground = CopyOpStatus::IN_PROGRESS_BACKGROUND.0,
    /// Terminated (COPY OPERATION ABORT, task management).
    Terminated = CopyOpStatus::TERMINATED.0,
}

impl RodOpStatus {
    /// Whether the operation has ended.
    pub fn is_final(self) -> bool {
        !CopyOpStatus(self as u8).in_progress()
    }
}

pub use crate::wire::rod::{CopyOpStatus, ROD_TOKEN_DESCRIPTORS_LENGTH, RRTI_HEADER_LEN, UNITS_LOGICAL_BLOCKS};
/// Space reserved for sense data in an RRTI response.
pub const RRTI_SENSE_SPACE: u8 = 32;
/// ESTIMATED STATUS UPDATE DELAY once the status is final.
pub const DELAY_FINAL: u32 = 0xFFFF_FFFE;
/// ESTIMATED STATUS UPDATE DELAY while in progress with no estimate yet, ms.
pub const DELAY_POLL_MS: u32 = 100;
/// Longest ESTIMATED STATUS UPDATE DELAY while in progress, ms.
pub const DELAY_MAX_MS: u32 = 10_000;

/// ESTIMATED STATUS UPDATE DELAY of an operation in progress: the time
/// left at the rate seen so far (`done` of `total` bytes in `elapsed`),
/// 1 ms ..= [`DELAY_MAX_MS`]; before any progress, as long as the
/// operation has run so far (at least [`DELAY_POLL_MS`]), so a slow start
/// is polled at doubling intervals. An application client that waits this
/// long polls a few times per copy whatever its size and speed (bytes on
/// the initiator's wire stay small).
pub fn estimated_delay_ms(done: u64, total: u64, elapsed: std::time::Duration) -> u32 {
    let ms = elapsed.as_millis();
    if done == 0 || ms == 0 {
        return u32::try_from(ms).unwrap_or(u32::MAX).clamp(DELAY_POLL_MS, DELAY_MAX_MS);
    }
    let left = u128::from(total.saturating_sub(done));
    let est = left.saturating_mul(ms) / u128::from(done);
    u32::try_from(est).unwrap_or(u32::MAX).clamp(1, DELAY_MAX_MS)
}

/// What an RRTI reports about one operation.
#[derive(Debug, Clone)]
pub struct RrtiReport<'a> {
    /// SA of the originating command: 10h POPULATE TOKEN, 11h WRITE USING TOKEN.
    pub response_to_sa: u8,
    /// COPY OPERATION STATUS.
    pub status: RodOpStatus,
    /// Blocks done so far (PT: represented; WUT: contiguous blocks written from the start).
    pub transfer_count: u64,
    /// SCSI status the originating command got (00h GOOD, 02h CHECK CONDITION).
    pub completion_status: u8,
    /// Its sense data, if any.
    pub sense: Option<&'a Sense>,
    /// The token, after a successful POPULATE TOKEN only.
    pub token: Option<&'a [u8; TOKEN_LEN]>,
    /// ESTIMATED STATUS UPDATE DELAY while in progress ([`estimated_delay_ms`]).
    pub delay_ms: u32,
}

/// The full RRTI parameter data (before truncation to the allocation length).
pub fn rrti_body(r: &RrtiReport<'_>) -> Vec<u8> {
    let delay = if r.status.is_final() { DELAY_FINAL } else { r.delay_ms };
    let mut d = CopyStatusHeader {
        service_action: r.response_to_sa,
        status: r.status as u8,
        operation_counter: 0,
        estimated_delay: delay,
        completion_status: r.completion_status,
        sense_space: RRTI_SENSE_SPACE,
        sense: r.sense.map(|s| s.to_fixed()).unwrap_or_default(),
        units: UNITS_LOGICAL_BLOCKS,
        count: r.transfer_count,
        segments_processed: 0,
    }
    .encode();
    // ROD TOKEN DESCRIPTORS LENGTH, then the token (2 reserved bytes first).
    let at = d.len();
    d.extend_from_slice(&[0; 4]);
    if let Some(t) = r.token {
        d[at..at + 4].copy_from_slice(&ROD_TOKEN_DESCRIPTORS_LENGTH.to_be_bytes());
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(&t[..]);
    }
    let avail = u32::try_from(d.len() - 4).unwrap_or(u32::MAX);
    d[0..4].copy_from_slice(&avail.to_be_bytes());
    d
}

/// The final status of an operation that ended normally: 01h when every
/// requested block was done, else 04h (never 03h, which Windows does not
/// treat as complete).
pub fn final_status(done: u64, requested: u64) -> RodOpStatus {
    if done >= requested {
        RodOpStatus::Completed
    } else {
        RodOpStatus::CompletedResidual
    }
}

/// Body (after the 4-byte header) of VPD 8Fh descriptor 0000h Block
/// Device ROD Token Limits: DESCRIPTOR LENGTH 0020h.
pub fn block_rod_limits(l: &RodLimits, optimal_transfer_blocks: u64) -> Vec<u8> {
    BlockRodLimits {
        max_range_descriptors: l.max_ranges,
        max_inactivity_timeout: l.max_inactivity_timeout,
        default_inactivity_timeout: l.default_inactivity_timeout,
        max_token_transfer_size: l.max_token_transfer_blocks,
        optimal_transfer_count: optimal_transfer_blocks,
    }
    .encode()
}

/// Body of descriptor 0106h ROD Token Features: own tokens only (REMOTE
/// TOKENS 0), lifetimes from the limits, one block-device features descriptor.
/// REMOTE TOKENS field values of descriptor 0106h (SPC-4 §7.8.17.7; the
/// copy-offload digest's VPD 8Fh notes list 0, 4 and 6 as the legal levels).
pub struct RemoteTokens;

impl RemoteTokens {
    /// Only tokens this copy manager created.
    pub const NONE: u8 = 0x0;
    /// Tokens of other copy managers in the same SCSI target device.
    pub const SAME_TARGET: u8 = 0x4;
    /// Tokens of copy managers in other SCSI target devices (a copy domain of nodes).
    pub const ANY_TARGET: u8 = 0x6;
}

/// Descriptor 0106h ROD Token Features; `remote_tokens` from [`RemoteTokens`].
pub fn rod_token_features(
    l: &RodLimits,
    remote_tokens: u8,
    max_bytes_in_rod: u64,
    optimal_bytes_from_token: u64,
) -> Vec<u8> {
    let block = BlockRodFeatures {
        max_bytes_in_block_rod: max_bytes_in_rod,
        optimal_bytes_in_block_rod_transfer: max_bytes_in_rod,
        optimal_bytes_to_token_per_segment: u64::MAX,
        optimal_bytes_from_token_per_segment: optimal_bytes_from_token,
        ..Default::default()
    };
    RodTokenFeatures {
        remote_tokens,
        min_token_lifetime: 1,
        max_token_lifetime: u32::MAX,
        max_token_inactivity_timeout: l.max_inactivity_timeout,
    }
    .encode(&block.encode())
}

/// ROD types this copy manager supports, with TOKEN_IN / TOKEN_OUT.
pub const SUPPORTED_ROD_TYPES: [(u32, bool, bool); 5] = [
    (RodType::ACCESS_UPON_REFERENCE, true, true),
    (RodType::POINT_IN_TIME_DEFAULT, true, true),
    (RodType::POINT_IN_TIME_CHANGE_VULNERABLE, true, true),
    (RodType::POINT_IN_TIME_PERSISTENT, true, true),
    (RodType::BLOCK_DEVICE_ZERO, true, false),
];

/// Body of descriptor 0108h Supported ROD Types.
pub fn supported_rod_types() -> Vec<u8> {
    let entries = SUPPORTED_ROD_TYPES.map(|(rod_type, token_in, token_out)| RodTypeEntry {
        rod_type,
        token_in,
        token_out,
        ..Default::default()
    });
    RodTypeEntry::list(&entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::vpd::TpcPage;
    use crate::sense::Asc;

    const L: RodLimits = RodLimits {
        max_ranges: 64,
        max_inactivity_timeout: 3600,
        default_inactivity_timeout: 60,
        max_token_transfer_blocks: 1 << 24,
    };

    #[test]
    fn rrti_after_populate_token_follows_the_windows_rules() {
        let token = [0x5A; TOKEN_LEN];
        let d = rrti_body(&RrtiReport {
            response_to_sa: 0x10,
            status: final_status(2048, 2048),
            transfer_count: 2048,
            completion_status: 0,
            sense: None,
            token: Some(&token),
            delay_ms: DELAY_POLL_MS,
        });
        assert_eq!(d[4], 0x10);
        assert_eq!(d[5], 0x01);
        assert_eq!(&d[8..12], &DELAY_FINAL.to_be_bytes());
        assert_eq!(d[15], 0xF1, "units: logical blocks");
        assert_eq!(u64::from_be_bytes(d[16..24].try_into().unwrap()), 2048);
        assert_eq!(&d[24..26], &[0, 0], "segments processed 0");
        let at = 32 + usize::from(d[13]);
        assert_eq!(u32::from_be_bytes(d[at..at + 4].try_into().unwrap()), 514);
        assert_eq!(&d[at + 4..at + 6], &[0, 0]);
        assert_eq!(&d[at + 6..at + 6 + 512], &token[..]);
        assert_eq!(d.len(), at + 6 + 512);
        assert_eq!(u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize, d.len() - 4);
        // ddpt asks with a 1024-byte buffer: everything fits.
        assert!(d.len() <= 1024);
    }

    #[test]
    fn rrti_after_write_using_token_has_no_token_and_final_statuses_are_windows_safe() {
        let s = Sense::illegal(Asc::INVALID_TOKEN_OPERATION_TOKEN_EXPIRED);
        let d = rrti_body(&RrtiReport {
            response_to_sa: 0x11,
            status: RodOpStatus::CompletedWithErrors,
            transfer_count: 0,
            completion_status: 0x02,
            sense: Some(&s),
            token: None,
            delay_ms: DELAY_POLL_MS,
        });
        assert_eq!((d[4], d[5], d[12], d[15]), (0x11, 0x02, 0x02, 0xF1));
        assert_eq!(usize::from(d[14]), s.to_fixed().len());
        assert_eq!(Sense::decode(&d[32..32 + usize::from(d[14])]), Some(s));
        let at = 32 + usize::from(d[13]);
        assert_eq!(&d[at..at + 4], &[0, 0, 0, 0]);
        // Count < requested comes with 04h; == with 01h; never 03h.
        assert_eq!(final_status(5, 8), RodOpStatus::CompletedResidual);
        assert_eq!(final_status(8, 8), RodOpStatus::Completed);
        for st in [
            RodOpStatus::Completed,
            RodOpStatus::CompletedWithErrors,
            RodOpStatus::CompletedResidual,
            RodOpStatus::Terminated,
        ] {
            assert!(st.is_final() && [0x01, 0x02, 0x04, 0x60].contains(&(st as u8)));
        }
        let p = rrti_body(&RrtiReport {
            response_to_sa: 0x11,
            status: RodOpStatus::InProgressBackground,
            transfer_count: 7,
            completion_status: 0,
            sense: None,
            token: None,
            delay_ms: DELAY_POLL_MS,
        });
        assert_eq!((p[5], &p[8..12]), (0x12, &DELAY_POLL_MS.to_be_bytes()[..]));
    }

    /// What the device server encodes is what the initiator's decoder
    /// ([`crate::wire::rod::RodTokenInfo`]) reads back.
    #[test]
    fn rrti_round_trips_through_the_wire_decoder() {
        use crate::wire::rod::RodTokenInfo;
        let token = [0x5A; TOKEN_LEN];
        let s = Sense::illegal(Asc::INVALID_TOKEN_OPERATION_TOKEN_EXPIRED);
        for (status, sense, token) in [
            (RodOpStatus::Completed, None, Some(&token)),
            (RodOpStatus::CompletedWithErrors, Some(&s), None),
            (RodOpStatus::InProgressBackground, None, None),
        ] {
            let r = RrtiReport {
                response_to_sa: 0x10,
                status,
                transfer_count: 77,
                completion_status: 2,
                sense,
                token,
                delay_ms: DELAY_POLL_MS,
            };
            let i = RodTokenInfo::parse(&rrti_body(&r)).expect("decodes");
            assert_eq!((i.response_to_sa, i.status, i.completion_status), (0x10, status as u8, 2));
            assert_eq!((i.units, i.transfer_count, i.in_progress()), (UNITS_LOGICAL_BLOCKS, 77, !status.is_final()));
            assert_eq!(i.delay_ms, if status.is_final() { DELAY_FINAL } else { DELAY_POLL_MS });
            assert_eq!(i.token.as_ref(), token);
            assert_eq!(Sense::decode(&i.sense), sense.cloned());
        }
    }

    #[test]
    fn vpd_descriptors_for_token_copy() {
        let mut page = TpcPage::new();
        page.push(0x0000, &block_rod_limits(&L, 1 << 11));
        page.push(0x0106, &rod_token_features(&L, RemoteTokens::NONE, 0, 16 << 20));
        page.push(0x0108, &supported_rod_types());
        let b = page.into_body();
        // Windows: the first descriptor is 0000h with length 0020h.
        assert_eq!(&b[0..4], &[0x00, 0x00, 0x00, 0x20]);
        assert_eq!(&b[10..12], &64u16.to_be_bytes());
        assert_eq!(&b[12..16], &3600u32.to_be_bytes());
        assert_eq!(&b[16..20], &60u32.to_be_bytes());
        assert_eq!(&b[20..28], &(1u64 << 24).to_be_bytes());
        let f = &b[36..];
        assert_eq!(&f[0..4], &[0x01, 0x06, 0x00, 92]);
        assert_eq!(f[4] & 0x0F, 0, "own tokens only");
        assert_eq!(&f[24..28], &3600u32.to_be_bytes());
        assert_eq!(&f[46..48], &48u16.to_be_bytes());
        assert_eq!(&f[50..52], &0x2Cu16.to_be_bytes());
        let t = &f[96..];
        assert_eq!(&t[0..2], &[0x01, 0x08]);
        assert_eq!(usize::from(u16::from_be_bytes([t[2], t[3]])), 4 + 5 * 64);
        assert_eq!(usize::from(u16::from_be_bytes([t[6], t[7]])), 5 * 64);
        let types: Vec<(u32, u8)> =
            t[8..].chunks(64).map(|e| (u32::from_be_bytes(e[0..4].try_into().unwrap()), e[4])).collect();
        assert_eq!(
            types,
            vec![(0x0001_0000, 3), (0x0080_0000, 3), (0x0080_0001, 3), (0x0080_0002, 3), (0xFFFF_0001, 2)]
        );
    }

    #[test]
    fn the_delay_estimate_is_the_time_left_at_the_rate_seen() {
        use std::time::Duration;
        assert_eq!(estimated_delay_ms(0, 100, Duration::from_millis(20)), DELAY_POLL_MS);
        assert_eq!(estimated_delay_ms(0, 100, Duration::from_secs(1)), 1000, "no progress yet: as long as it ran");
        assert_eq!(estimated_delay_ms(0, 100, Duration::from_secs(60)), DELAY_MAX_MS);
        assert_eq!(estimated_delay_ms(10, 100, Duration::ZERO), DELAY_POLL_MS);
        assert_eq!(estimated_delay_ms(25, 100, Duration::from_millis(1000)), 3000);
        assert_eq!(estimated_delay_ms(1, 1000, Duration::from_secs(1)), DELAY_MAX_MS);
        assert_eq!(estimated_delay_ms(100, 100, Duration::from_secs(1)), 1);
        assert_eq!(estimated_delay_ms(u64::MAX / 2, u64::MAX, Duration::from_secs(u64::MAX / 4)), DELAY_MAX_MS);
    }
}
