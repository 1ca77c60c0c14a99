//! The host side of ODX token copy: POPULATE TOKEN, WRITE USING TOKEN,
//! RECEIVE ROD TOKEN INFORMATION, REPORT ALL ROD TOKENS and COPY OPERATION
//! ABORT (digest §1.2–1.4, §3, §4.5): typed [`Session`] calls for tests and
//! the CLI. The CDBs, parameter lists and the RRTI decoder are the wire
//! layer's (`oxcopy_scsi::wire`), shared with the target.
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

use oxcopy_scsi::wire::Fields;

pub use oxcopy_scsi::wire::cdb;
pub use oxcopy_scsi::wire::rod::{BlockRange, PopulateToken, RodTokenInfo, WriteUsingToken, TOKEN_LEN};

/// THIRD-PARTY COPY OUT / IN service actions of token copy (the values
/// are [`oxcopy_scsi::ServiceAction`]'s).
pub mod sa {
    use oxcopy_scsi::ServiceAction;

    /// POPULATE TOKEN.
    pub const POPULATE_TOKEN: u8 = ServiceAction::POPULATE_TOKEN;
    /// WRITE USING TOKEN.
    pub const WRITE_USING_TOKEN: u8 = ServiceAction::WRITE_USING_TOKEN;
    /// COPY OPERATION ABORT.
    pub const COPY_OPERATION_ABORT: u8 = ServiceAction::COPY_OPERATION_ABORT;
    /// RECEIVE ROD TOKEN INFORMATION (THIRD-PARTY COPY IN).
    pub const RECEIVE_ROD_TOKEN_INFORMATION: u8 = ServiceAction::RECEIVE_ROD_TOKEN_INFORMATION;
    /// REPORT ALL ROD TOKENS (THIRD-PARTY COPY IN).
    pub const REPORT_ALL_ROD_TOKENS: u8 = ServiceAction::REPORT_ALL_ROD_TOKENS;
}

/// The block device zero ROD token (ROD TYPE FFFF0001h, length 01F8h).
pub fn zero_token() -> [u8; TOKEN_LEN] {
    let mut t = [0u8; TOKEN_LEN];
    t[0..4].copy_from_slice(&0xFFFF_0001u32.to_be_bytes());
    t[6..8].copy_from_slice(&0x01F8u16.to_be_bytes());
    t
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
        let f = Fields(d);
        let available = f.u32(0)?;
        let tokens = f.tail(8).to_vec();
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
        let c = cdb::receive_copy_results(sa::REPORT_ALL_ROD_TOKENS, 9, 4096);
        assert_eq!(c[..10], [0x84, 0x08, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(c[10..14], 4096u32.to_be_bytes());
    }
}
