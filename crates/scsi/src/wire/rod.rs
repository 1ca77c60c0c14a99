//! Token copy (SBC-3 §5.20, §5.34; SPC-4 §6.18.4): the POPULATE TOKEN and
//! WRITE USING TOKEN parameter lists an initiator encodes (the device
//! server's bounded parser is `crate::copy::rod_params`), and the RECEIVE
//! ROD TOKEN INFORMATION response the device server encodes
//! (`crate::copy::rod_results`) and an initiator decodes here.
//!
//! ```text
//! POPULATE TOKEN     B0-1 DATA LENGTH  B2 RTV(1)|IMMED(0)  B4-7 INACTIVITY TIMEOUT
//!                    B8-11 ROD TYPE  B14-15 RANGE DESCRIPTOR LIST LENGTH  B16.. ranges
//! WRITE USING TOKEN  B0-1 DATA LENGTH  B2 DEL_TKN(1)|IMMED(0)  B8-15 OFFSET INTO ROD
//!                    B16-527 ROD TOKEN  B534-535 RANGE DESCRIPTOR LIST LENGTH  B536.. ranges
//! range              B0-7 LBA  B8-11 NUMBER OF LOGICAL BLOCKS  B12-15 reserved
//! ```

use super::{len16, Fields};

/// Length of a ROD token.
pub const TOKEN_LEN: usize = 512;
/// Length of the POPULATE TOKEN parameter list header.
pub const PT_HEADER_LEN: usize = 16;
/// Length of the WRITE USING TOKEN parameter list header.
pub const WUT_HEADER_LEN: usize = 536;
/// Length of a block device range descriptor.
pub const RANGE_DESC_LEN: usize = 16;
/// Length of the RECEIVE COPY STATUS (LID4) / RRTI header before the sense data.
pub const RRTI_HEADER_LEN: usize = 32;
/// TRANSFER COUNT UNITS: logical blocks of the LU (Windows requires it).
pub const UNITS_LOGICAL_BLOCKS: u8 = 0xF1;
/// ROD TOKEN DESCRIPTORS LENGTH for one token: 2 reserved bytes + 512.
pub const ROD_TOKEN_DESCRIPTORS_LENGTH: u32 = 2 + TOKEN_LEN as u32;

/// One block device range descriptor (LOGICAL BLOCK ADDRESS, NUMBER OF
/// LOGICAL BLOCKS; 0 = empty range), in blocks of the LU addressed: the
/// copy engine's block range.
pub use oxcopy_copy::BlockRange;

/// `header` followed by the range descriptors, with DATA LENGTH (bytes
/// 0..1) and the RANGE DESCRIPTOR LIST LENGTH (the header's last two
/// bytes) filled in.
fn with_ranges(mut v: Vec<u8>, ranges: &[BlockRange]) -> Vec<u8> {
    let at = v.len() - 2;
    v[at..].copy_from_slice(&len16(ranges.len() * RANGE_DESC_LEN));
    for r in ranges {
        v.extend_from_slice(&r.lba.to_be_bytes());
        v.extend_from_slice(&r.blocks.to_be_bytes());
        v.extend_from_slice(&[0; 4]);
    }
    let data_len = len16(v.len() - 2);
    v[0..2].copy_from_slice(&data_len);
    v
}

/// A POPULATE TOKEN parameter list, to encode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PopulateToken {
    /// IMMED: return before the token is ready.
    pub immed: bool,
    /// ROD TYPE with RTV=1; `None` sends RTV=0 (the copy manager chooses; Windows' form).
    pub rod_type: Option<u32>,
    /// INACTIVITY TIMEOUT, seconds (0 = the default).
    pub inactivity_timeout: u32,
    /// The gather list.
    pub ranges: Vec<BlockRange>,
}

impl PopulateToken {
    /// The parameter list bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![0u8; PT_HEADER_LEN];
        v[2] = (u8::from(self.rod_type.is_some()) << 1) | u8::from(self.immed);
        v[4..8].copy_from_slice(&self.inactivity_timeout.to_be_bytes());
        v[8..12].copy_from_slice(&self.rod_type.unwrap_or(0).to_be_bytes());
        with_ranges(v, &self.ranges)
    }
}

/// A WRITE USING TOKEN parameter list, to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteUsingToken {
    /// IMMED: return before the write completes.
    pub immed: bool,
    /// DEL_TKN: discard the token after this command.
    pub del_tkn: bool,
    /// OFFSET INTO ROD, in blocks of the LU written.
    pub offset_into_rod: u64,
    /// The token, verbatim.
    pub token: [u8; TOKEN_LEN],
    /// The scatter list.
    pub ranges: Vec<BlockRange>,
}

impl Default for WriteUsingToken {
    fn default() -> Self {
        WriteUsingToken { immed: false, del_tkn: false, offset_into_rod: 0, token: [0; TOKEN_LEN], ranges: Vec::new() }
    }
}

impl WriteUsingToken {
    /// The parameter list bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![0u8; WUT_HEADER_LEN];
        v[2] = (u8::from(self.del_tkn) << 1) | u8::from(self.immed);
        v[8..16].copy_from_slice(&self.offset_into_rod.to_be_bytes());
        v[16..16 + TOKEN_LEN].copy_from_slice(&self.token);
        with_ranges(v, &self.ranges)
    }
}

/// COPY OPERATION STATUS of RECEIVE COPY STATUS (LID4) and RRTI
/// (SPC-4 table 149). A newtype: any 7-bit value is representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CopyOpStatus(pub u8);

impl CopyOpStatus {
    /// Completed, no errors.
    pub const COMPLETED: Self = Self(0x01);
    /// Completed with errors.
    pub const COMPLETED_WITH_ERRORS: Self = Self(0x02);
    /// Completed without errors, partial ROD token usage.
    pub const COMPLETED_PARTIAL_TOKEN_USAGE: Self = Self(0x03);
    /// Completed without errors, residual data.
    pub const COMPLETED_RESIDUAL: Self = Self(0x04);
    /// In progress, foreground, unknown completion.
    pub const IN_PROGRESS: Self = Self(0x10);
    /// In progress, foreground.
    pub const IN_PROGRESS_FOREGROUND: Self = Self(0x11);
    /// In progress, background (IMMED=1).
    pub const IN_PROGRESS_BACKGROUND: Self = Self(0x12);
    /// Terminated (COPY OPERATION ABORT, task management).
    pub const TERMINATED: Self = Self(0x60);

    /// Whether the operation is still running (10h–12h).
    pub fn in_progress(self) -> bool {
        (0x10..=0x12).contains(&self.0)
    }

    /// Whether it ended without errors (01h, 03h, 04h).
    pub fn is_success(self) -> bool {
        matches!(self, Self::COMPLETED | Self::COMPLETED_PARTIAL_TOKEN_USAGE | Self::COMPLETED_RESIDUAL)
    }

    /// The status in words.
    pub fn name(self) -> &'static str {
        match self {
            Self::COMPLETED => "completed without errors",
            Self::COMPLETED_WITH_ERRORS => "completed with errors",
            Self::COMPLETED_PARTIAL_TOKEN_USAGE => "completed without errors, partial ROD token usage",
            Self::COMPLETED_RESIDUAL => "completed without errors, residual data",
            s if s.in_progress() => "in progress",
            Self::TERMINATED => "terminated",
            _ => "unknown status",
        }
    }
}

/// The header RECEIVE COPY STATUS (LID4) and RECEIVE ROD TOKEN
/// INFORMATION share (SPC-4 §6.18.3, §6.18.4):
///
/// ```text
/// B0-3 AVAILABLE DATA  B4 RESPONSE TO SERVICE ACTION  B5 COPY OPERATION STATUS
/// B6-7 OPERATION COUNTER  B8-11 ESTIMATED STATUS UPDATE DELAY
/// B12 EXTENDED COPY COMPLETION STATUS  B13 SENSE DATA FIELD LENGTH
/// B14 SENSE DATA LENGTH  B15 TRANSFER COUNT UNITS  B16-23 TRANSFER COUNT
/// B24-25 SEGMENTS PROCESSED  B32.. sense data field
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyStatusHeader {
    /// RESPONSE TO SERVICE ACTION: the originating command's (00h/01h
    /// EXTENDED COPY, 10h POPULATE TOKEN, 11h WRITE USING TOKEN).
    pub service_action: u8,
    /// COPY OPERATION STATUS (01h OK, 02h error, 04h residual, 10h–12h in progress, 60h terminated).
    pub status: u8,
    /// OPERATION COUNTER.
    pub operation_counter: u16,
    /// ESTIMATED STATUS UPDATE DELAY, ms.
    pub estimated_delay: u32,
    /// EXTENDED COPY COMPLETION STATUS (the SCSI status of the command).
    pub completion_status: u8,
    /// SENSE DATA FIELD LENGTH: the space the sense data field takes.
    pub sense_space: u8,
    /// The sense data (SENSE DATA LENGTH bytes, at most the field's space).
    pub sense: Vec<u8>,
    /// TRANSFER COUNT UNITS (00h bytes, F1h logical blocks, ...).
    pub units: u8,
    /// TRANSFER COUNT.
    pub count: u64,
    /// SEGMENTS PROCESSED.
    pub segments_processed: u16,
}

impl CopyStatusHeader {
    /// Decode (bounded: `None` when the header or the sense data is cut short).
    pub fn parse(d: &[u8]) -> Option<Self> {
        let f = Fields(d);
        let sense_space = f.u8(13)?;
        let sense_len = f.u8(14)?.min(sense_space);
        Some(CopyStatusHeader {
            service_action: f.u8(4)? & 0x1F,
            status: f.u8(5)? & 0x7F,
            operation_counter: f.u16(6)?,
            estimated_delay: f.u32(8)?,
            completion_status: f.u8(12)?,
            sense_space,
            units: f.u8(15)?,
            count: f.u64(16)?,
            segments_processed: f.u16(24)?,
            sense: f.slice(RRTI_HEADER_LEN, usize::from(sense_len))?.to_vec(),
        })
    }

    /// The header and the sense data field (SENSE DATA FIELD LENGTH bytes,
    /// the sense data zero-padded or cut to it), AVAILABLE DATA counting
    /// them; a caller appending more (RRTI's token area) rewrites it.
    pub fn encode(&self) -> Vec<u8> {
        let space = usize::from(self.sense_space);
        let sense = &self.sense[..self.sense.len().min(space)];
        let mut d = vec![0u8; RRTI_HEADER_LEN + space];
        d[4] = self.service_action & 0x1F;
        d[5] = self.status & 0x7F;
        d[6..8].copy_from_slice(&self.operation_counter.to_be_bytes());
        d[8..12].copy_from_slice(&self.estimated_delay.to_be_bytes());
        d[12] = self.completion_status;
        d[13] = self.sense_space;
        d[14] = u8::try_from(sense.len()).unwrap_or(u8::MAX);
        d[15] = self.units;
        d[16..24].copy_from_slice(&self.count.to_be_bytes());
        d[24..26].copy_from_slice(&self.segments_processed.to_be_bytes());
        d[RRTI_HEADER_LEN..RRTI_HEADER_LEN + sense.len()].copy_from_slice(sense);
        let avail = u32::try_from(d.len() - 4).unwrap_or(u32::MAX);
        d[0..4].copy_from_slice(&avail.to_be_bytes());
        d
    }

    /// Whether the operation is still running (status 10h–12h).
    pub fn in_progress(&self) -> bool {
        CopyOpStatus(self.status).in_progress()
    }
}

/// A decoded RECEIVE ROD TOKEN INFORMATION response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RodTokenInfo {
    /// RESPONSE TO SERVICE ACTION (10h PT, 11h WUT).
    pub response_to_sa: u8,
    /// COPY OPERATION STATUS (01h, 02h, 04h, 60h final; 10h–12h in progress).
    pub status: u8,
    /// ESTIMATED STATUS UPDATE DELAY, ms.
    pub delay_ms: u32,
    /// Status of the originating command.
    pub completion_status: u8,
    /// Sense data of the originating command, if any.
    pub sense: Vec<u8>,
    /// TRANSFER COUNT UNITS (F1h: logical blocks).
    pub units: u8,
    /// TRANSFER COUNT.
    pub transfer_count: u64,
    /// SEGMENTS PROCESSED.
    pub segments_processed: u16,
    /// ROD TOKEN DESCRIPTORS LENGTH as sent.
    pub token_descriptors_length: u32,
    /// The token, when the descriptors length is exactly 514 (Windows' rule).
    pub token: Option<[u8; TOKEN_LEN]>,
}

impl RodTokenInfo {
    /// Whether the operation is still running (status 10h–12h).
    pub fn in_progress(&self) -> bool {
        CopyOpStatus(self.status).in_progress()
    }

    /// Decode an RRTI response (bounded: `None` when the header, the sense
    /// data or an announced token is cut short).
    pub fn parse(d: &[u8]) -> Option<RodTokenInfo> {
        let h = CopyStatusHeader::parse(d)?;
        let f = Fields(d);
        let at = RRTI_HEADER_LEN + usize::from(h.sense_space);
        let tdl = f.u32(at).unwrap_or(0);
        Some(RodTokenInfo {
            response_to_sa: h.service_action,
            status: h.status,
            delay_ms: h.estimated_delay,
            completion_status: h.completion_status,
            sense: h.sense,
            units: h.units,
            transfer_count: h.count,
            segments_processed: h.segments_processed,
            token_descriptors_length: tdl,
            token: if tdl == ROD_TOKEN_DESCRIPTORS_LENGTH { Some(f.array(at + 6)?) } else { None },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_encode_per_sbc3() {
        let pt = PopulateToken {
            immed: true,
            rod_type: Some(0x0080_0001),
            inactivity_timeout: 30,
            ranges: vec![BlockRange { lba: 5, blocks: 7 }],
        };
        let l = pt.encode();
        assert_eq!(l.len(), 32);
        assert_eq!(&l[0..16], &[0, 30, 0x03, 0, 0, 0, 0, 30, 0, 0x80, 0, 1, 0, 0, 0, 16]);
        assert_eq!(&l[16..32], &[0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 7, 0, 0, 0, 0]);
        assert_eq!(PopulateToken::default().encode(), [0, 14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let w = WriteUsingToken {
            del_tkn: true,
            offset_into_rod: 9,
            token: [0xAB; TOKEN_LEN],
            ranges: vec![BlockRange { lba: 1, blocks: 2 }, BlockRange { lba: 10, blocks: 2 }],
            ..Default::default()
        };
        let l = w.encode();
        assert_eq!(l.len(), 536 + 32);
        assert_eq!(&l[0..4], &[0x02, 0x36, 0x02, 0]);
        assert_eq!(&l[8..16], &9u64.to_be_bytes());
        assert!(l[16..528].iter().all(|b| *b == 0xAB));
        assert_eq!(&l[528..536], &[0, 0, 0, 0, 0, 0, 0, 32]);
        assert_eq!(&l[536 + 16..536 + 28], &[0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 2]);
    }

    fn rrti(token: bool) -> Vec<u8> {
        let mut d = vec![0u8; 32 + 32 + 4];
        d[4] = 0x10;
        d[5] = 0x01;
        d[8..12].copy_from_slice(&100u32.to_be_bytes());
        d[12] = 2;
        d[13] = 32;
        d[14] = 3;
        d[15] = 0xF1;
        d[16..24].copy_from_slice(&2048u64.to_be_bytes());
        d[24..26].copy_from_slice(&1u16.to_be_bytes());
        d[32..35].copy_from_slice(&[0x70, 0, 5]);
        if token {
            d[64..68].copy_from_slice(&514u32.to_be_bytes());
            d.extend_from_slice(&[0, 0]);
            d.extend_from_slice(&[0x77; TOKEN_LEN]);
        }
        d
    }

    #[test]
    fn copy_operation_status() {
        let running =
            [CopyOpStatus::IN_PROGRESS, CopyOpStatus::IN_PROGRESS_FOREGROUND, CopyOpStatus::IN_PROGRESS_BACKGROUND];
        assert!(running.iter().all(|s| s.in_progress() && !s.is_success() && s.name() == "in progress"));
        assert!(CopyOpStatus::COMPLETED_RESIDUAL.is_success() && !CopyOpStatus::COMPLETED_WITH_ERRORS.is_success());
        assert_eq!(CopyOpStatus::TERMINATED.name(), "terminated");
        assert_eq!(CopyOpStatus(0x7F).name(), "unknown status");
    }

    #[test]
    fn copy_status_header_decodes_and_is_bounded() {
        let mut d = rrti(false);
        d[6..8].copy_from_slice(&3u16.to_be_bytes());
        let h = CopyStatusHeader::parse(&d).unwrap();
        assert_eq!((h.service_action, h.status, h.operation_counter, h.estimated_delay), (0x10, 1, 3, 100));
        assert_eq!((h.completion_status, h.sense_space, &h.sense[..]), (2, 32, &[0x70, 0, 5][..]));
        assert_eq!((h.units, h.count, h.segments_processed, h.in_progress()), (0xF1, 2048, 1, false));
        for n in 0..d.len() {
            assert_eq!(CopyStatusHeader::parse(&d[..n]).is_some(), n >= 35, "prefix {n}");
        }
        // The encoder writes the same bytes back.
        let e = h.encode();
        assert_eq!((&e[..4], &e[4..]), (&[0, 0, 0, 60][..], &d[4..64]));
        // SENSE DATA LENGTH beyond the field's space is clipped to it.
        d[13] = 2;
        assert_eq!(CopyStatusHeader::parse(&d).unwrap().sense, vec![0x70, 0]);
    }

    #[test]
    fn rrti_decodes_and_is_bounded() {
        let d = rrti(true);
        let i = RodTokenInfo::parse(&d).expect("parse");
        assert_eq!((i.response_to_sa, i.status, i.delay_ms, i.completion_status), (0x10, 1, 100, 2));
        assert_eq!((i.units, i.transfer_count, i.segments_processed), (0xF1, 2048, 1));
        assert_eq!((&i.sense[..], i.token_descriptors_length), (&[0x70, 0, 5][..], 514));
        assert_eq!(i.token, Some([0x77; TOKEN_LEN]));
        assert!(!i.in_progress());
        // Every prefix: the header and sense must be whole, an announced token too.
        for n in 0..d.len() {
            let p = RodTokenInfo::parse(&d[..n]);
            assert_eq!(p.is_some(), (35..68).contains(&n), "prefix {n}");
            assert!(p.is_none_or(|p| p.token.is_none()));
        }
        let plain = rrti(false);
        assert_eq!(RodTokenInfo::parse(&plain).unwrap().token, None);
    }
}
