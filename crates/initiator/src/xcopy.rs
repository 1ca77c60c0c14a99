//! The host side of EXTENDED COPY (LID1): parameter lists from VPD 83h
//! designators and the CDBs (the wire layer's, `oxcopy_scsi::wire`, shared
//! with the target's parser), and decoding RECEIVE COPY RESULTS.
//!
//! ```no_run
//! use oxcopy_initiator::xcopy::{self, Cscd, ListIdUsage, ParamList, Segment};
//! # async fn demo(s: &oxcopy_initiator::Session) -> oxcopy_initiator::Result<()> {
//! // Identify source (LUN 0) and destination (LUN 1) by their designators.
//! let src = s.lu_designator(0).await?;
//! let dst = s.lu_designator(1).await?;
//! let list = ParamList {
//!     list_id: 1,
//!     usage: ListIdUsage::Discard,
//!     cscds: vec![Cscd::new(src, 0), Cscd::new(dst, 0)],
//!     segments: vec![Segment::BlockToBlock { src: 0, dst: 1, dc: false, blocks: 2048, src_lba: 0, dst_lba: 0 }],
//! };
//! s.extended_copy(0, &list).await?.into_result()?;
//! # Ok(()) }
//! ```
//!
//! Copies longer than one segment allows (65535 blocks for 02h) or than one
//! list holds are split by [`crate::plan::plan_xcopy`].

use crate::command::{DataDir, ScsiOutcome};
use crate::error::{InitiatorError, Result};
use crate::session::Session;
use bytes::Bytes;

use oxcopy_scsi::wire::Fields;

pub use oxcopy_scsi::wire::cdb;
pub use oxcopy_scsi::wire::vpd::lu_designator;
pub use oxcopy_scsi::wire::xcopy::{
    Cscd, Designator, ListIdUsage, ParamList, Segment, CSCD_ID_THIS_LU as CSCD_THIS_LU, HEADER_LEN,
};

/// RECEIVE COPY RESULTS service actions (the values are
/// [`oxcopy_scsi::ServiceAction`]'s).
pub mod sa {
    use oxcopy_scsi::ServiceAction;

    /// COPY STATUS (LID1).
    pub const COPY_STATUS: u8 = ServiceAction::RECEIVE_COPY_STATUS_LID1;
    /// OPERATING PARAMETERS.
    pub const OPERATING_PARAMETERS: u8 = ServiceAction::RECEIVE_COPY_OPERATING_PARAMETERS;
    /// FAILED SEGMENT DETAILS (LID1).
    pub const FAILED_SEGMENT_DETAILS: u8 = ServiceAction::RECEIVE_COPY_FAILURE_DETAILS;
    /// RECEIVE COPY STATUS (LID4).
    pub const COPY_STATUS_LID4: u8 = ServiceAction::RECEIVE_COPY_STATUS_LID4;
}

/// COPY STATUS (LID1) data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyStatus {
    /// COPY MANAGER STATUS: 0 in progress, 1 completed OK, 2 completed with error.
    pub status: u8,
    /// HDD: held data discarded.
    pub held_data_discarded: bool,
    /// SEGMENTS PROCESSED.
    pub segments_processed: u16,
    /// TRANSFER COUNT UNITS (0 bytes, 1 KiB, 2 MiB, ...).
    pub units: u8,
    /// TRANSFER COUNT.
    pub count: u32,
}

impl CopyStatus {
    /// Parse the 12-byte response.
    pub fn parse(d: &[u8]) -> Option<CopyStatus> {
        let f = Fields(d);
        let b4 = f.u8(4)?;
        Some(CopyStatus {
            status: b4 & 0x7F,
            held_data_discarded: b4 & 0x80 != 0,
            segments_processed: f.u16(5)?,
            units: f.u8(7)?,
            count: f.u32(8)?,
        })
    }
    /// The transfer count in bytes (saturating).
    pub fn bytes(&self) -> u64 {
        u64::from(self.count).checked_shl(10 * u32::from(self.units)).unwrap_or(u64::MAX)
    }
}

/// RECEIVE COPY OPERATING PARAMETERS data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatingParameters {
    /// SNLID: LIST ID USAGE 11b supported.
    pub snlid: bool,
    /// MAXIMUM CSCD DESCRIPTOR COUNT.
    pub max_cscd_descriptors: u16,
    /// MAXIMUM SEGMENT DESCRIPTOR COUNT.
    pub max_segment_descriptors: u16,
    /// MAXIMUM DESCRIPTOR LIST LENGTH.
    pub max_descriptor_list_length: u32,
    /// MAXIMUM SEGMENT LENGTH (0 = no limit).
    pub max_segment_length: u32,
    /// MAXIMUM INLINE DATA LENGTH.
    pub max_inline_data_length: u32,
    /// HELD DATA LIMIT.
    pub held_data_limit: u32,
    /// TOTAL CONCURRENT COPIES.
    pub total_concurrent_copies: u16,
    /// MAXIMUM CONCURRENT COPIES.
    pub max_concurrent_copies: u8,
    /// DATA SEGMENT GRANULARITY (log2).
    pub data_segment_granularity: u8,
    /// Implemented descriptor type codes.
    pub descriptor_types: Vec<u8>,
}

impl OperatingParameters {
    /// Parse the response.
    pub fn parse(d: &[u8]) -> Option<OperatingParameters> {
        let f = Fields(d);
        let n = usize::from(f.u8(43)?);
        Some(OperatingParameters {
            snlid: f.u8(4)? & 0x01 != 0,
            max_cscd_descriptors: f.u16(8)?,
            max_segment_descriptors: f.u16(10)?,
            max_descriptor_list_length: f.u32(12)?,
            max_segment_length: f.u32(16)?,
            max_inline_data_length: f.u32(20)?,
            held_data_limit: f.u32(24)?,
            total_concurrent_copies: f.u16(34)?,
            max_concurrent_copies: f.u8(36)?,
            data_segment_granularity: f.u8(37)?,
            descriptor_types: f.slice(44, n)?.to_vec(),
        })
    }
}

/// FAILED SEGMENT DETAILS (LID1) data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureDetails {
    /// AVAILABLE DATA (0 when the copy did not fail).
    pub available: u32,
    /// COPY COMMAND STATUS.
    pub status: u8,
    /// The failed command's sense data.
    pub sense: Vec<u8>,
}

impl FailureDetails {
    /// Parse the response.
    pub fn parse(d: &[u8]) -> Option<FailureDetails> {
        let f = Fields(d);
        let available = f.u32(0)?;
        if available == 0 {
            return Some(FailureDetails { available, status: 0, sense: Vec::new() });
        }
        let n = usize::from(f.u16(58)?);
        Some(FailureDetails { available, status: f.u8(56)?, sense: f.slice(60, n)?.to_vec() })
    }
}

/// RECEIVE COPY STATUS (LID4) data: the header it shares with RECEIVE ROD
/// TOKEN INFORMATION.
pub use oxcopy_scsi::wire::rod::CopyStatusHeader as CopyStatusLid4;

fn short(what: &str) -> InitiatorError {
    InitiatorError::Protocol(format!("{what}: response too short"))
}

impl Session {
    /// The designator naming LUN `lun` in CSCDs (from its VPD 83h page).
    pub async fn lu_designator(&self, lun: u64) -> Result<Designator> {
        let page = self.inquiry(lun, true, 0x83, 1024).await?;
        lu_designator(&page).ok_or_else(|| InitiatorError::Protocol("VPD 83h has no usable LU designator".into()))
    }

    /// Send EXTENDED COPY (LID1) with `list` to `lun`. CHECK CONDITION is
    /// returned as a value (use `into_result()` to turn it into an error).
    pub async fn extended_copy(&self, lun: u64, list: &ParamList) -> Result<ScsiOutcome> {
        self.extended_copy_raw(lun, Bytes::from(list.encode())).await
    }

    /// EXTENDED COPY (LID1) with an arbitrary parameter list (announced
    /// with its own length).
    pub async fn extended_copy_raw(&self, lun: u64, list: Bytes) -> Result<ScsiOutcome> {
        let len = u32::try_from(list.len()).map_err(|_| InitiatorError::InvalidArgument("list too long".into()))?;
        let dir = if list.is_empty() { DataDir::None } else { DataDir::Write { data: list } };
        self.execute(lun, &cdb::extended_copy(len), dir).await
    }

    /// RECEIVE COPY RESULTS: the raw outcome of service action `sa`.
    pub async fn receive_copy_results(&self, lun: u64, sa: u8, list_id: u32, alloc: u32) -> Result<ScsiOutcome> {
        self.execute(lun, &cdb::receive_copy_results(sa, list_id, alloc), DataDir::Read { len: alloc }).await
    }

    /// COPY STATUS (LID1) of `list_id`.
    pub async fn copy_status(&self, lun: u64, list_id: u8) -> Result<CopyStatus> {
        let o = self.receive_copy_results(lun, sa::COPY_STATUS, u32::from(list_id), 12).await?.into_result()?;
        CopyStatus::parse(&o.data).ok_or_else(|| short("COPY STATUS"))
    }

    /// RECEIVE COPY OPERATING PARAMETERS.
    pub async fn copy_operating_parameters(&self, lun: u64) -> Result<OperatingParameters> {
        let o = self.receive_copy_results(lun, sa::OPERATING_PARAMETERS, 0, 1024).await?.into_result()?;
        OperatingParameters::parse(&o.data).ok_or_else(|| short("OPERATING PARAMETERS"))
    }

    /// FAILED SEGMENT DETAILS of `list_id`.
    pub async fn copy_failure_details(&self, lun: u64, list_id: u8) -> Result<FailureDetails> {
        let o = self.receive_copy_results(lun, sa::FAILED_SEGMENT_DETAILS, u32::from(list_id), 1024).await?;
        let o = o.into_result()?;
        FailureDetails::parse(&o.data).ok_or_else(|| short("FAILED SEGMENT DETAILS"))
    }

    /// RECEIVE COPY STATUS (LID4) of `list_id`.
    pub async fn copy_status_lid4(&self, lun: u64, list_id: u32) -> Result<CopyStatusLid4> {
        let o = self.receive_copy_results(lun, sa::COPY_STATUS_LID4, list_id, 1024).await?.into_result()?;
        CopyStatusLid4::parse(&o.data).ok_or_else(|| short("RECEIVE COPY STATUS (LID4)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_decoding() {
        let s = CopyStatus::parse(&[0, 0, 0, 8, 0x01, 0, 2, 2, 0, 0, 0, 5]).unwrap();
        assert_eq!((s.status, s.segments_processed, s.bytes()), (1, 2, 5 << 20));
        assert!(CopyStatus::parse(&[0; 11]).is_none());
        let mut op = vec![0u8; 48];
        op[43] = 4;
        op[44..48].copy_from_slice(&[2, 7, 0x0A, 0xE4]);
        op[9] = 64;
        assert_eq!(OperatingParameters::parse(&op).unwrap().descriptor_types, vec![2, 7, 0x0A, 0xE4]);
        let mut fd = vec![0u8; 62];
        fd[3] = 58;
        fd[56] = 2;
        fd[59] = 2;
        fd[60] = 0x70;
        assert_eq!(FailureDetails::parse(&fd).unwrap().sense, vec![0x70, 0]);
        let mut l4 = vec![0u8; 32];
        l4[5] = 0x60;
        l4[23] = 9;
        let p = CopyStatusLid4::parse(&l4).unwrap();
        assert_eq!((p.status, p.count), (0x60, 9));
    }
}
