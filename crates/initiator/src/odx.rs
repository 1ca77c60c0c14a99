//! The host side of ODX token copy: POPULATE TOKEN, WRITE USING TOKEN,
//! RECEIVE ROD TOKEN INFORMATION, REPORT ALL ROD TOKENS and COPY OPERATION
//! ABORT — CDBs, parameter lists and the RRTI decoder (digest §1.2–1.4, §3,
//! §4.5), plus typed [`Session`] calls for tests and the CLI.
//!
//! ```no_run
//! use oxcopy_initiator::odx::{BlockRange, PopulateToken, WriteUsingToken};
//! # async fn demo(s: &oxcopy_initiator::Session) -> oxcopy_initiator::Result<()> {
//! let pt = PopulateToken { ranges: vec![BlockRange { lba: 0, blocks: 2048 }], ..Default::default() };
//! s.populate_token(0, 257, &pt).await?.into_result()?;
//! let info = s.receive_rod_token_information(0, 257).await?;
//! let token = info.token.expect("a token");
//! let wut = WriteUsingToken { token, ranges: vec![BlockRange { lba: 0, blocks: 2048 }], ..Default::default() };
//! s.write_using_token(1, 258, &wut).await?.into_result()?;
//! # Ok(()) }
//! ```

use crate::command::{DataDir, ScsiOutcome};
use crate::error::{InitiatorError, Result};
use crate::session::Session;
use bytes::Bytes;

/// Length of a ROD token.
pub const TOKEN_LEN: usize = 512;
/// THIRD-PARTY COPY OUT service actions.
pub mod sa {
    /// POPULATE TOKEN.
    pub const POPULATE_TOKEN: u8 = 0x10;
    /// WRITE USING TOKEN.
    pub const WRITE_USING_TOKEN: u8 = 0x11;
    /// COPY OPERATION ABORT.
    pub const COPY_OPERATION_ABORT: u8 = 0x1C;
    /// RECEIVE ROD TOKEN INFORMATION (THIRD-PARTY COPY IN).
    pub const RECEIVE_ROD_TOKEN_INFORMATION: u8 = 0x07;
    /// REPORT ALL ROD TOKENS (THIRD-PARTY COPY IN).
    pub const REPORT_ALL_ROD_TOKENS: u8 = 0x08;
}

/// The block device zero ROD token (ROD TYPE FFFF0001h, length 01F8h).
pub fn zero_token() -> [u8; TOKEN_LEN] {
    let mut t = [0u8; TOKEN_LEN];
    t[0..4].copy_from_slice(&0xFFFF_0001u32.to_be_bytes());
    t[6..8].copy_from_slice(&0x01F8u16.to_be_bytes());
    t
}

/// A block device range descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockRange {
    /// First block.
    pub lba: u64,
    /// Number of blocks.
    pub blocks: u32,
}

fn ranges_bytes(r: &[BlockRange]) -> Vec<u8> {
    let mut v = Vec::with_capacity(r.len() * 16);
    for x in r {
        v.extend_from_slice(&x.lba.to_be_bytes());
        v.extend_from_slice(&x.blocks.to_be_bytes());
        v.extend_from_slice(&[0; 4]);
    }
    v
}

fn len16(n: usize) -> [u8; 2] {
    u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes()
}

/// A POPULATE TOKEN parameter list.
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
        let list = ranges_bytes(&self.ranges);
        let mut v = vec![0u8; 16];
        v[0..2].copy_from_slice(&len16(16 + list.len() - 2));
        v[2] = (u8::from(self.rod_type.is_some()) << 1) | u8::from(self.immed);
        v[4..8].copy_from_slice(&self.inactivity_timeout.to_be_bytes());
        v[8..12].copy_from_slice(&self.rod_type.unwrap_or(0).to_be_bytes());
        v[14..16].copy_from_slice(&len16(list.len()));
        v.extend(list);
        v
    }
}

/// A WRITE USING TOKEN parameter list.
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
        let list = ranges_bytes(&self.ranges);
        let mut v = vec![0u8; 536];
        v[0..2].copy_from_slice(&len16(536 + list.len() - 2));
        v[2] = (u8::from(self.del_tkn) << 1) | u8::from(self.immed);
        v[8..16].copy_from_slice(&self.offset_into_rod.to_be_bytes());
        v[16..528].copy_from_slice(&self.token);
        v[534..536].copy_from_slice(&len16(list.len()));
        v.extend(list);
        v
    }
}

/// CDB builders.
pub mod cdb {
    /// POPULATE TOKEN (`sa` 10h) or WRITE USING TOKEN (11h) for `list_id` with `param_len` bytes.
    pub fn token_out(sa: u8, list_id: u32, param_len: u32) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[0] = 0x83;
        c[1] = sa & 0x1F;
        c[6..10].copy_from_slice(&list_id.to_be_bytes());
        c[10..14].copy_from_slice(&param_len.to_be_bytes());
        c
    }

    /// COPY OPERATION ABORT of `list_id`.
    pub fn copy_operation_abort(list_id: u32) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[0] = 0x83;
        c[1] = super::sa::COPY_OPERATION_ABORT;
        c[2..6].copy_from_slice(&list_id.to_be_bytes());
        c
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
        (0x10..=0x12).contains(&self.status)
    }

    /// Decode an RRTI response (bounded: `None` when truncated).
    pub fn parse(d: &[u8]) -> Option<RodTokenInfo> {
        let hdr = d.get(..32)?;
        let sense_space = usize::from(hdr[13]);
        let sense_len = usize::from(hdr[14]).min(sense_space);
        let sense = d.get(32..32 + sense_len)?.to_vec();
        let at = 32 + sense_space;
        let tdl = d.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
        let token = if tdl == 514 {
            let b = d.get(at + 6..at + 6 + TOKEN_LEN)?;
            let mut t = [0u8; TOKEN_LEN];
            t.copy_from_slice(b);
            Some(t)
        } else {
            None
        };
        Some(RodTokenInfo {
            response_to_sa: hdr[4] & 0x1F,
            status: hdr[5] & 0x7F,
            delay_ms: u32::from_be_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]),
            completion_status: hdr[12],
            sense,
            units: hdr[15],
            transfer_count: u64::from_be_bytes([
                hdr[16], hdr[17], hdr[18], hdr[19], hdr[20], hdr[21], hdr[22], hdr[23],
            ]),
            segments_processed: u16::from_be_bytes([hdr[24], hdr[25]]),
            token_descriptors_length: tdl,
            token,
        })
    }
}

/// Allocation length ddpt uses for RRTI.
pub const RRTI_ALLOC: u32 = 1024;

impl Session {
    /// POPULATE TOKEN with `pt` to `lun` under `list_id`.
    pub async fn populate_token(&self, lun: u64, list_id: u32, pt: &PopulateToken) -> Result<ScsiOutcome> {
        self.token_out_raw(lun, sa::POPULATE_TOKEN, list_id, Bytes::from(pt.encode())).await
    }

    /// WRITE USING TOKEN with `wut` to `lun` under `list_id`.
    pub async fn write_using_token(&self, lun: u64, list_id: u32, wut: &WriteUsingToken) -> Result<ScsiOutcome> {
        self.token_out_raw(lun, sa::WRITE_USING_TOKEN, list_id, Bytes::from(wut.encode())).await
    }

    /// POPULATE TOKEN / WRITE USING TOKEN with an arbitrary parameter list.
    pub async fn token_out_raw(&self, lun: u64, service_action: u8, list_id: u32, list: Bytes) -> Result<ScsiOutcome> {
        let len = u32::try_from(list.len()).map_err(|_| InitiatorError::InvalidArgument("list too long".into()))?;
        let dir = if list.is_empty() { DataDir::None } else { DataDir::Write { data: list } };
        self.execute(lun, &cdb::token_out(service_action, list_id, len), dir).await
    }

    /// RECEIVE ROD TOKEN INFORMATION for `list_id` (1024-byte buffer, as ddpt).
    pub async fn receive_rod_token_information(&self, lun: u64, list_id: u32) -> Result<RodTokenInfo> {
        let o = self
            .receive_copy_results(lun, sa::RECEIVE_ROD_TOKEN_INFORMATION, list_id, RRTI_ALLOC)
            .await?
            .into_result()?;
        RodTokenInfo::parse(&o.data)
            .ok_or_else(|| InitiatorError::Protocol("RECEIVE ROD TOKEN INFORMATION data too short".into()))
    }

    /// COPY OPERATION ABORT of `list_id`.
    pub async fn copy_operation_abort(&self, lun: u64, list_id: u32) -> Result<ScsiOutcome> {
        self.execute(lun, &cdb::copy_operation_abort(list_id), DataDir::None).await
    }

    /// REPORT ALL ROD TOKENS with an `alloc`-byte buffer (digest §4.6), raw.
    pub async fn report_all_rod_tokens_raw(&self, lun: u64, alloc: u32) -> Result<ScsiOutcome> {
        self.receive_copy_results(lun, sa::REPORT_ALL_ROD_TOKENS, 0, alloc).await
    }

    /// REPORT ALL ROD TOKENS, decoded.
    pub async fn report_all_rod_tokens(&self, lun: u64, alloc: u32) -> Result<RodTokenReport> {
        let o = self.report_all_rod_tokens_raw(lun, alloc).await?.into_result()?;
        RodTokenReport::parse(&o.data)
            .ok_or_else(|| InitiatorError::Protocol("REPORT ALL ROD TOKENS data too short".into()))
    }
}

/// A decoded REPORT ALL ROD TOKENS response: `B0-3 AVAILABLE DATA`,
/// `B4-7 reserved`, then the ROD management tokens (format chosen by the
/// copy manager; FreeBSD sends the first 96 bytes of each live token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RodTokenReport {
    /// AVAILABLE DATA as sent (bytes after byte 3, before truncation).
    pub available: u32,
    /// The ROD management token bytes received (possibly truncated).
    pub tokens: Vec<u8>,
}

impl RodTokenReport {
    /// Decode (bounded: `None` when shorter than the 4-byte length).
    pub fn parse(d: &[u8]) -> Option<RodTokenReport> {
        let available = u32::from_be_bytes(d.get(..4)?.try_into().ok()?);
        let tokens = d.get(8..).map(<[u8]>::to_vec).unwrap_or_default();
        Some(RodTokenReport { available, tokens })
    }

    /// Whether the report mentions `needle` (e.g. a token's identifier, bytes 8..16).
    pub fn mentions(&self, needle: &[u8]) -> bool {
        !needle.is_empty() && self.tokens.windows(needle.len()).any(|w| w == needle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_cdbs_encode_per_sbc3() {
        let pt = PopulateToken {
            immed: true,
            rod_type: Some(0x0080_0001),
            inactivity_timeout: 30,
            ranges: vec![BlockRange { lba: 5, blocks: 7 }],
        };
        let l = pt.encode();
        assert_eq!(l.len(), 32);
        assert_eq!(&l[0..4], &[0, 30, 0x03, 0]);
        assert_eq!(&l[4..8], &30u32.to_be_bytes());
        assert_eq!(&l[8..12], &0x0080_0001u32.to_be_bytes());
        assert_eq!(&l[14..16], &16u16.to_be_bytes());
        assert_eq!(&l[16..24], &5u64.to_be_bytes());
        assert_eq!(&l[24..28], &7u32.to_be_bytes());
        let w = WriteUsingToken {
            del_tkn: true,
            offset_into_rod: 9,
            token: zero_token(),
            ranges: vec![BlockRange { lba: 1, blocks: 2 }, BlockRange { lba: 10, blocks: 2 }],
            ..Default::default()
        };
        let l = w.encode();
        assert_eq!(l.len(), 536 + 32);
        assert_eq!(u16::from_be_bytes([l[0], l[1]]) as usize, l.len() - 2);
        assert_eq!(l[2], 0x02);
        assert_eq!(&l[8..16], &9u64.to_be_bytes());
        assert_eq!(&l[16..20], &[0xFF, 0xFF, 0, 1]);
        assert_eq!(&l[534..536], &32u16.to_be_bytes());
        assert_eq!(cdb::token_out(0x10, 257, 32), [0x83, 0x10, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 32, 0, 0]);
        assert_eq!(cdb::copy_operation_abort(257)[..6], [0x83, 0x1C, 0, 0, 1, 1]);
    }

    #[test]
    fn rrti_decodes_and_is_bounded() {
        let mut d = vec![0u8; 32 + 32 + 4];
        d[4] = 0x10;
        d[5] = 0x01;
        d[13] = 32;
        d[15] = 0xF1;
        d[16..24].copy_from_slice(&2048u64.to_be_bytes());
        d[64..68].copy_from_slice(&514u32.to_be_bytes());
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(&[0x77; TOKEN_LEN]);
        let i = RodTokenInfo::parse(&d).expect("parse");
        assert_eq!((i.response_to_sa, i.status, i.units, i.transfer_count), (0x10, 1, 0xF1, 2048));
        assert_eq!(i.token, Some([0x77; TOKEN_LEN]));
        assert!(!i.in_progress());
        for n in 0..d.len() {
            let _ = RodTokenInfo::parse(&d[..n]);
        }
        assert!(RodTokenInfo::parse(&d[..d.len() - 1]).is_none(), "truncated token");
    }

    #[test]
    fn report_all_rod_tokens_decodes_and_is_bounded() {
        let mut d = vec![0u8; 8];
        d[0..4].copy_from_slice(&(4u32 + 96).to_be_bytes());
        let mut t = [0u8; 96];
        t[8..16].copy_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        d.extend_from_slice(&t);
        let r = RodTokenReport::parse(&d).expect("parse");
        assert_eq!((r.available, r.tokens.len()), (100, 96));
        assert!(r.mentions(&[1, 2, 3, 4, 5, 6, 7, 8]));
        assert!(!r.mentions(&[8, 7]) && !r.mentions(&[]));
        assert_eq!(RodTokenReport::parse(&d[..4]).map(|r| r.tokens.len()), Some(0));
        assert!(RodTokenReport::parse(&d[..3]).is_none());
        // The CDB: 84h/08h, no list id, allocation length at B10-13.
        let c = crate::xcopy::cdb::receive_copy_results(sa::REPORT_ALL_ROD_TOKENS, 9, 4096);
        assert_eq!(c[..10], [0x84, 0x08, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(c[10..14], 4096u32.to_be_bytes());
    }
}
