//! POPULATE TOKEN and WRITE USING TOKEN parameter lists (digest §3) →
//! typed values, validated against the addressed LU's capacity and the
//! advertised ROD limits. Nothing here touches an LU: a list that fails
//! validation changes nothing.
//!
//! Order of checks (each failure is ILLEGAL REQUEST):
//! 1. PARAMETER LIST LENGTH shorter than the header plus one range
//!    descriptor, or longer than a 16-bit range list can make it →
//!    INVALID FIELD IN CDB (24h/00h) at byte 10.
//! 2. Fewer bytes received than announced → PARAMETER LIST LENGTH ERROR (1Ah/00h).
//! 3. DATA LENGTH ≠ PARAMETER LIST LENGTH − 2 → 26h/00h at byte 0.
//! 4. BLOCK DEVICE RANGE DESCRIPTOR LIST LENGTH zero, not a multiple of 16
//!    or past the data → 26h/00h at that field.
//! 5. More descriptors than MAXIMUM RANGE DESCRIPTORS → TOO MANY SEGMENT DESCRIPTORS (26h/08h).
//! 6. POPULATE TOKEN: INACTIVITY TIMEOUT above the maximum → 26h/00h at byte 4;
//!    RTV=1 with a ROD type we do not create → 26h/00h at byte 8.
//! 7. A range past the capacity (or whose end overflows) → LOGICAL BLOCK
//!    ADDRESS OUT OF RANGE (21h/00h), INFORMATION = its LBA.
//! 8. Overlapping ranges → 26h/00h at the later descriptor.
//! 9. More blocks in total than MAXIMUM TOKEN TRANSFER SIZE → 26h/00h at the list length field.

use super::codec::Reader;
use crate::wire::sense::{Asc, Sense};
use oxcopy_copy::token::{RodType, TOKEN_LEN};

pub use crate::wire::rod::{BlockRange, PT_HEADER_LEN, RANGE_DESC_LEN, WUT_HEADER_LEN};

// The token layout (`oxcopy_copy::token`) and the wire lists agree on its length.
const _: () = assert!(TOKEN_LEN == crate::wire::rod::TOKEN_LEN);

/// Limits the parameter lists are checked against (the VPD 8Fh 0000h values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RodLimits {
    /// MAXIMUM RANGE DESCRIPTORS.
    pub max_ranges: u16,
    /// MAXIMUM INACTIVITY TIMEOUT, seconds.
    pub max_inactivity_timeout: u32,
    /// DEFAULT INACTIVITY TIMEOUT, seconds (used for 0).
    pub default_inactivity_timeout: u32,
    /// MAXIMUM TOKEN TRANSFER SIZE, blocks of the addressed LU.
    pub max_token_transfer_blocks: u64,
}

/// A validated POPULATE TOKEN parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PopulateParams {
    /// IMMED: return before the token is ready.
    pub immed: bool,
    /// The ROD type to create: RTV=0 and "PIT any" resolve to the point-in-time default.
    pub rod_type: u32,
    /// Inactivity timeout, seconds (0 resolved to the default).
    pub inactivity_timeout: u32,
    /// The gather list, in list order.
    pub ranges: Vec<BlockRange>,
    /// Sum of the ranges' blocks.
    pub total_blocks: u64,
}

/// A validated WRITE USING TOKEN parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteUsingTokenParams {
    /// IMMED: return before the write completes.
    pub immed: bool,
    /// DEL_TKN: discard the token once this command completes.
    pub del_tkn: bool,
    /// OFFSET INTO ROD, in blocks of the LU written.
    pub offset_into_rod: u64,
    /// The ROD token, opaque until verified.
    pub token: Box<[u8; TOKEN_LEN]>,
    /// The scatter list, in list order.
    pub ranges: Vec<BlockRange>,
    /// Sum of the ranges' blocks.
    pub total_blocks: u64,
}

/// ROD types POPULATE TOKEN creates when asked with RTV=1.
pub const CREATABLE_ROD_TYPES: [u32; 4] = [
    RodType::ACCESS_UPON_REFERENCE,
    RodType::POINT_IN_TIME_DEFAULT,
    RodType::POINT_IN_TIME_CHANGE_VULNERABLE,
    RodType::POINT_IN_TIME_PERSISTENT,
];

/// "Point in time, any flavour" (request only).
const ROD_TYPE_PIT_ANY: u32 = 0x0080_FFFF;

fn length_error() -> Sense {
    Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR)
}

/// Steps 1–5: the list's framing. Returns the header reader (past DATA
/// LENGTH) and the range descriptor reader.
fn frame<'a>(
    data: &'a [u8],
    param_len: u32,
    header_len: usize,
    limits: &RodLimits,
) -> Result<(Reader<'a>, Reader<'a>), Sense> {
    let param_len = usize::try_from(param_len).unwrap_or(usize::MAX);
    // The list length field is 16 bits: nothing beyond header + 65520 bytes
    // can be a well-formed list. The advertised descriptor count is checked
    // on the list itself (26h/08h), as hosts expect.
    let max = header_len + (usize::from(u16::MAX) / RANGE_DESC_LEN) * RANGE_DESC_LEN;
    if param_len < header_len + RANGE_DESC_LEN || param_len > max {
        return Err(Sense::invalid_cdb_field(10, None));
    }
    if data.len() < param_len {
        return Err(length_error());
    }
    let mut r = Reader::new(&data[..param_len]);
    let mut hdr = r.sub(header_len).ok_or_else(length_error)?;
    let data_len = usize::from(hdr.u16().ok_or_else(length_error)?);
    if data_len != param_len - 2 {
        return Err(Sense::invalid_param_field(0, None));
    }
    let list_len_at = header_len - 2;
    let list_len = {
        let b = data.get(list_len_at..header_len).ok_or_else(length_error)?;
        usize::from(u16::from_be_bytes([b[0], b[1]]))
    };
    if list_len == 0 || list_len % RANGE_DESC_LEN != 0 || list_len > r.left() {
        return Err(Sense::invalid_param_field(list_len_at, None));
    }
    if list_len / RANGE_DESC_LEN > usize::from(limits.max_ranges) {
        return Err(Sense::illegal(Asc::TOO_MANY_SEGMENT_DESCRIPTORS));
    }
    let ranges = r.sub(list_len).ok_or_else(length_error)?;
    Ok((hdr, ranges))
}

/// Steps 7–9: the ranges against the capacity, each other and the transfer limit.
fn ranges(
    mut r: Reader<'_>,
    capacity: u64,
    list_len_at: usize,
    max_blocks: u64,
) -> Result<(Vec<BlockRange>, u64), Sense> {
    let mut out = Vec::with_capacity(r.left() / RANGE_DESC_LEN);
    while r.left() >= RANGE_DESC_LEN {
        let (lba, blocks) = match (r.u64(), r.u32(), r.skip(4)) {
            (Some(l), Some(b), Some(())) => (l, b),
            _ => return Err(length_error()),
        };
        match lba.checked_add(u64::from(blocks)) {
            Some(end) if end <= capacity => {}
            _ => return Err(Sense::lba_out_of_range().with_information(lba)),
        }
        out.push(BlockRange { lba, blocks });
    }
    let mut order: Vec<usize> = (0..out.len()).filter(|&i| out[i].blocks > 0).collect();
    order.sort_by_key(|&i| out[i].lba);
    for w in order.windows(2) {
        let (a, b) = (out[w[0]], out[w[1]]);
        if a.lba + u64::from(a.blocks) > b.lba {
            let later = w[0].max(w[1]);
            return Err(Sense::invalid_param_field(list_len_at + 2 + later * RANGE_DESC_LEN, None));
        }
    }
    let total: u64 = out.iter().map(|r| u64::from(r.blocks)).sum();
    if total > max_blocks {
        return Err(Sense::invalid_param_field(list_len_at, None));
    }
    Ok((out, total))
}

/// Parse a POPULATE TOKEN parameter list for an LU of `capacity` blocks.
pub fn parse_populate(data: &[u8], param_len: u32, capacity: u64, limits: &RodLimits) -> Result<PopulateParams, Sense> {
    let (mut hdr, descs) = frame(data, param_len, PT_HEADER_LEN, limits)?;
    let flags = hdr.u8().ok_or_else(length_error)?;
    hdr.skip(1).ok_or_else(length_error)?;
    let timeout = hdr.u32().ok_or_else(length_error)?;
    let rod_type = hdr.u32().ok_or_else(length_error)?;
    let rtv = flags & 0x02 != 0;
    if timeout > limits.max_inactivity_timeout {
        return Err(Sense::invalid_param_field(4, None));
    }
    let rod_type = if !rtv || rod_type == ROD_TYPE_PIT_ANY {
        RodType::POINT_IN_TIME_DEFAULT
    } else if CREATABLE_ROD_TYPES.contains(&rod_type) {
        rod_type
    } else {
        return Err(Sense::invalid_param_field(8, None));
    };
    let (ranges, total_blocks) = ranges(descs, capacity, PT_HEADER_LEN - 2, limits.max_token_transfer_blocks)?;
    Ok(PopulateParams {
        immed: flags & 0x01 != 0,
        rod_type,
        inactivity_timeout: if timeout == 0 { limits.default_inactivity_timeout } else { timeout },
        ranges,
        total_blocks,
    })
}

/// Parse a WRITE USING TOKEN parameter list for an LU of `capacity` blocks.
pub fn parse_write_using_token(
    data: &[u8],
    param_len: u32,
    capacity: u64,
    limits: &RodLimits,
) -> Result<WriteUsingTokenParams, Sense> {
    let (mut hdr, descs) = frame(data, param_len, WUT_HEADER_LEN, limits)?;
    let flags = hdr.u8().ok_or_else(length_error)?;
    hdr.skip(5).ok_or_else(length_error)?;
    let offset_into_rod = hdr.u64().ok_or_else(length_error)?;
    let tok = hdr.take(TOKEN_LEN).ok_or_else(length_error)?;
    let mut token = Box::new([0u8; TOKEN_LEN]);
    token.copy_from_slice(tok);
    let (ranges, total_blocks) = ranges(descs, capacity, WUT_HEADER_LEN - 2, limits.max_token_transfer_blocks)?;
    Ok(WriteUsingTokenParams {
        immed: flags & 0x01 != 0,
        del_tkn: flags & 0x02 != 0,
        offset_into_rod,
        token,
        ranges,
        total_blocks,
    })
}

#[cfg(test)]
#[path = "rod_params_tests.rs"]
mod tests;

/// What the initiator encodes ([`crate::wire::rod`]) is what the copy
/// manager parses.
#[cfg(test)]
mod wire_round_trip {
    use super::*;
    use crate::wire::rod::{PopulateToken, WriteUsingToken};

    const L: RodLimits = RodLimits {
        max_ranges: 8,
        max_inactivity_timeout: 3600,
        default_inactivity_timeout: 60,
        max_token_transfer_blocks: 1 << 20,
    };

    #[test]
    fn populate_token() {
        let ranges = vec![BlockRange { lba: 10, blocks: 5 }, BlockRange { lba: 0, blocks: 3 }];
        let pt = PopulateToken {
            immed: true,
            rod_type: Some(RodType::POINT_IN_TIME_PERSISTENT),
            inactivity_timeout: 30,
            ranges: ranges.clone(),
        };
        let b = pt.encode();
        let p = parse_populate(&b, b.len() as u32, 100, &L).unwrap();
        assert_eq!(
            p,
            PopulateParams {
                immed: true,
                rod_type: RodType::POINT_IN_TIME_PERSISTENT,
                inactivity_timeout: 30,
                ranges: ranges.clone(),
                total_blocks: 8
            }
        );
        // RTV=0 and timeout 0: the copy manager's defaults.
        let b = PopulateToken { ranges, ..Default::default() }.encode();
        let p = parse_populate(&b, b.len() as u32, 100, &L).unwrap();
        assert_eq!((p.immed, p.rod_type, p.inactivity_timeout), (false, RodType::POINT_IN_TIME_DEFAULT, 60));
    }

    #[test]
    fn write_using_token() {
        let mut token = [0u8; TOKEN_LEN];
        token[0] = 0xAA;
        token[TOKEN_LEN - 1] = 0x55;
        let ranges = vec![BlockRange { lba: 4, blocks: 4 }, BlockRange { lba: 50, blocks: 0 }];
        let w = WriteUsingToken { immed: false, del_tkn: true, offset_into_rod: 7, token, ranges: ranges.clone() };
        let b = w.encode();
        let p = parse_write_using_token(&b, b.len() as u32, 100, &L).unwrap();
        assert_eq!((p.immed, p.del_tkn, p.offset_into_rod, p.total_blocks), (false, true, 7, 4));
        assert_eq!((*p.token, p.ranges), (token, ranges));
    }
}
