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

/// COPY STATUS (LID1), OPERATING PARAMETERS and FAILED SEGMENT DETAILS
/// data: the wire layer's, which the target encodes.
pub use oxcopy_scsi::wire::results::{CopyStatus, FailureDetails, OperatingParameters};

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
