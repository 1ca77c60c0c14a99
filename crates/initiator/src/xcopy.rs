//! The host side of EXTENDED COPY (LID1): building parameter lists from
//! VPD 83h designators, the CDBs, and decoding RECEIVE COPY RESULTS.
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

/// CSCD ID meaning "the logical unit this command is sent to".
pub const CSCD_THIS_LU: u16 = 0xFFFF;
/// Size of the LID1 parameter list header.
pub const HEADER_LEN: usize = 16;

/// A VPD 83h designator (as an identification CSCD carries it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Designator {
    /// Byte 0 of the designation descriptor (protocol identifier | code set).
    pub code_set: u8,
    /// Byte 1 (PIV | association | designator type).
    pub assoc_type: u8,
    /// The designator, at most 20 bytes to fit a CSCD.
    pub value: Vec<u8>,
}

/// Pick the designator to name a logical unit by from a VPD 83h page
/// (with its 4-byte header): LU association only, preferring NAA, then
/// EUI-64, T10 vendor ID, vendor specific; at most 20 bytes long.
pub fn lu_designator(vpd83: &[u8]) -> Option<Designator> {
    let page_len = usize::from(u16::from_be_bytes([*vpd83.get(2)?, *vpd83.get(3)?]));
    let body = vpd83.get(4..)?;
    let body = &body[..page_len.min(body.len())];
    let mut best: Option<(u8, Designator)> = None;
    let mut i = 0usize;
    while i + 4 <= body.len() {
        let (b0, b1, len) = (body[i], body[i + 1], usize::from(body[i + 3]));
        let Some(value) = body.get(i + 4..i + 4 + len) else { break };
        i += 4 + len;
        let assoc = (b1 >> 4) & 0x03;
        let rank = match b1 & 0x0F {
            3 => 0, // NAA
            2 => 1, // EUI-64
            1 => 2, // T10 vendor ID
            0 => 3, // vendor specific
            _ => continue,
        };
        if assoc != 0 || len > 20 {
            continue;
        }
        if best.as_ref().is_none_or(|(r, _)| rank < *r) {
            best = Some((rank, Designator { code_set: b0, assoc_type: b1, value: value.to_vec() }));
        }
    }
    best.map(|(_, d)| d)
}

/// An identification (E4h) CSCD descriptor for a block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cscd {
    /// Which logical unit.
    pub designator: Designator,
    /// DISK BLOCK LENGTH; 0 = the logical unit's own.
    pub block_len: u32,
    /// PERIPHERAL DEVICE TYPE (0 = block device).
    pub pdt: u8,
    /// LU ID TYPE (0 = LUN; ignored by SPC-4 targets for E4h).
    pub lu_id_type: u8,
}

impl Cscd {
    /// A block-device CSCD for `designator` (block length 0: the LU's own).
    pub fn new(designator: Designator, block_len: u32) -> Self {
        Cscd { designator, block_len, pdt: 0, lu_id_type: 0 }
    }

    /// The 32 bytes of the descriptor.
    pub fn encode(&self) -> [u8; 32] {
        let mut d = [0u8; 32];
        d[0] = 0xE4;
        d[1] = (self.lu_id_type & 0x03) << 6 | (self.pdt & 0x1F);
        d[4] = self.designator.code_set & 0x0F;
        d[5] = self.designator.assoc_type & 0x3F;
        let n = self.designator.value.len().min(20);
        d[7] = n as u8;
        d[8..8 + n].copy_from_slice(&self.designator.value[..n]);
        d[29..32].copy_from_slice(&self.block_len.to_be_bytes()[1..]);
        d
    }
}

/// A segment descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// 02h block → block: `blocks` source blocks (destination blocks with `dc`).
    BlockToBlock {
        /// Source CSCD ID (index into the CSCD list, or [`CSCD_THIS_LU`]).
        src: u16,
        /// Destination CSCD ID.
        dst: u16,
        /// DC: count in destination blocks.
        dc: bool,
        /// NUMBER OF BLOCKS.
        blocks: u16,
        /// SOURCE BLOCK DEVICE LBA.
        src_lba: u64,
        /// DESTINATION BLOCK DEVICE LBA.
        dst_lba: u64,
    },
    /// 0Ah block with byte offset → block with byte offset.
    BlockToBlockOffset {
        /// Source CSCD ID.
        src: u16,
        /// Destination CSCD ID.
        dst: u16,
        /// NUMBER OF BYTES.
        bytes: u32,
        /// SOURCE BLOCK DEVICE LBA.
        src_lba: u64,
        /// DESTINATION BLOCK DEVICE LBA.
        dst_lba: u64,
        /// SOURCE BYTE OFFSET into that block.
        src_offset: u16,
        /// DESTINATION BYTE OFFSET into that block.
        dst_offset: u16,
    },
    /// 07h verify CSCD (with TEST UNIT READY when `tur`).
    Verify {
        /// CSCD ID to verify.
        src: u16,
        /// TUR bit.
        tur: bool,
    },
    /// 14h register persistent reservation key: the copy manager's I_T
    /// nexus to `dst` is registered (PERSISTENT RESERVE OUT REGISTER).
    RegisterKey {
        /// Destination CSCD ID.
        dst: u16,
        /// RESERVATION KEY (the current key, 0 when not registered).
        key: u64,
        /// SERVICE ACTION RESERVATION KEY (the new key; 0 unregisters).
        sa_key: u64,
    },
}

impl Segment {
    /// The descriptor bytes.
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Segment::BlockToBlock { src, dst, dc, blocks, src_lba, dst_lba } => {
                let mut d = vec![0u8; 28];
                d[0] = 0x02;
                d[1] = if dc { 0x02 } else { 0 };
                d[2..4].copy_from_slice(&0x18u16.to_be_bytes());
                d[4..6].copy_from_slice(&src.to_be_bytes());
                d[6..8].copy_from_slice(&dst.to_be_bytes());
                d[10..12].copy_from_slice(&blocks.to_be_bytes());
                d[12..20].copy_from_slice(&src_lba.to_be_bytes());
                d[20..28].copy_from_slice(&dst_lba.to_be_bytes());
                d
            }
            Segment::BlockToBlockOffset { src, dst, bytes, src_lba, dst_lba, src_offset, dst_offset } => {
                let mut d = vec![0u8; 32];
                d[0] = 0x0A;
                d[2..4].copy_from_slice(&0x1Cu16.to_be_bytes());
                d[4..6].copy_from_slice(&src.to_be_bytes());
                d[6..8].copy_from_slice(&dst.to_be_bytes());
                d[8..12].copy_from_slice(&bytes.to_be_bytes());
                d[12..20].copy_from_slice(&src_lba.to_be_bytes());
                d[20..28].copy_from_slice(&dst_lba.to_be_bytes());
                d[28..30].copy_from_slice(&src_offset.to_be_bytes());
                d[30..32].copy_from_slice(&dst_offset.to_be_bytes());
                d
            }
            Segment::RegisterKey { dst, key, sa_key } => {
                let mut d = vec![0u8; 28];
                d[0] = 0x14;
                d[2..4].copy_from_slice(&0x18u16.to_be_bytes());
                d[6..8].copy_from_slice(&dst.to_be_bytes());
                d[8..16].copy_from_slice(&key.to_be_bytes());
                d[16..24].copy_from_slice(&sa_key.to_be_bytes());
                d
            }
            Segment::Verify { src, tur } => {
                let mut d = vec![0u8; 12];
                d[0] = 0x07;
                d[2..4].copy_from_slice(&8u16.to_be_bytes());
                d[4..6].copy_from_slice(&src.to_be_bytes());
                d[8] = u8::from(tur);
                d
            }
        }
    }
}

/// LIST ID USAGE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListIdUsage {
    /// 00b: status (and held data) kept for RECEIVE COPY RESULTS.
    Hold,
    /// 10b: status kept, no held data.
    Discard,
    /// 11b: no list identifier (send 0), no status.
    None,
}

impl ListIdUsage {
    fn bits(self) -> u8 {
        match self {
            ListIdUsage::Hold => 0b00,
            ListIdUsage::Discard => 0b10,
            ListIdUsage::None => 0b11,
        }
    }
}

/// An EXTENDED COPY (LID1) parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamList {
    /// LIST IDENTIFIER.
    pub list_id: u8,
    /// LIST ID USAGE.
    pub usage: ListIdUsage,
    /// CSCD descriptors (segments refer to them by index).
    pub cscds: Vec<Cscd>,
    /// Segment descriptors, processed in order.
    pub segments: Vec<Segment>,
}

impl ParamList {
    /// The parameter list bytes: header, CSCDs, segments (no inline data).
    pub fn encode(&self) -> Vec<u8> {
        let cscds: Vec<u8> = self.cscds.iter().flat_map(|c| c.encode()).collect();
        let segs: Vec<u8> = self.segments.iter().flat_map(|s| s.encode()).collect();
        let mut l = vec![0u8; HEADER_LEN];
        l[0] = self.list_id;
        l[1] = self.usage.bits() << 3;
        l[2..4].copy_from_slice(&u16::try_from(cscds.len()).unwrap_or(u16::MAX).to_be_bytes());
        l[8..12].copy_from_slice(&u32::try_from(segs.len()).unwrap_or(u32::MAX).to_be_bytes());
        l.extend(cscds);
        l.extend(segs);
        l
    }
}

/// CDB builders.
pub mod cdb {
    /// EXTENDED COPY (LID1) with `param_len` bytes of parameter list.
    pub fn extended_copy(param_len: u32) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[0] = 0x83;
        c[10..14].copy_from_slice(&param_len.to_be_bytes());
        c
    }

    /// RECEIVE COPY RESULTS / THIRD-PARTY COPY IN service action `sa` for
    /// `list_id` (8-bit in byte 2 for the LID1 forms 00h/01h/04h, 32-bit in
    /// bytes 2..5 for 05h..07h) with `alloc` bytes of allocation length.
    pub fn receive_copy_results(sa: u8, list_id: u32, alloc: u32) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[0] = 0x84;
        c[1] = sa & 0x1F;
        match sa {
            0x00 | 0x01 | 0x04 => c[2] = list_id as u8,
            0x05..=0x07 => c[2..6].copy_from_slice(&list_id.to_be_bytes()),
            _ => {}
        }
        c[10..14].copy_from_slice(&alloc.to_be_bytes());
        c
    }
}

/// RECEIVE COPY RESULTS service actions.
pub mod sa {
    /// COPY STATUS (LID1).
    pub const COPY_STATUS: u8 = 0x00;
    /// OPERATING PARAMETERS.
    pub const OPERATING_PARAMETERS: u8 = 0x03;
    /// FAILED SEGMENT DETAILS (LID1).
    pub const FAILED_SEGMENT_DETAILS: u8 = 0x04;
    /// RECEIVE COPY STATUS (LID4).
    pub const COPY_STATUS_LID4: u8 = 0x05;
}

fn be32(d: &[u8], off: usize) -> Option<u32> {
    d.get(off..off + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn be16(d: &[u8], off: usize) -> Option<u16> {
    d.get(off..off + 2).map(|b| u16::from_be_bytes([b[0], b[1]]))
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
        let b4 = *d.get(4)?;
        Some(CopyStatus {
            status: b4 & 0x7F,
            held_data_discarded: b4 & 0x80 != 0,
            segments_processed: be16(d, 5)?,
            units: *d.get(7)?,
            count: be32(d, 8)?,
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
        let n = usize::from(*d.get(43)?);
        Some(OperatingParameters {
            snlid: d.get(4)? & 0x01 != 0,
            max_cscd_descriptors: be16(d, 8)?,
            max_segment_descriptors: be16(d, 10)?,
            max_descriptor_list_length: be32(d, 12)?,
            max_segment_length: be32(d, 16)?,
            max_inline_data_length: be32(d, 20)?,
            held_data_limit: be32(d, 24)?,
            total_concurrent_copies: be16(d, 34)?,
            max_concurrent_copies: *d.get(36)?,
            data_segment_granularity: *d.get(37)?,
            descriptor_types: d.get(44..44 + n)?.to_vec(),
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
        let available = be32(d, 0)?;
        if available == 0 {
            return Some(FailureDetails { available, status: 0, sense: Vec::new() });
        }
        let n = usize::from(be16(d, 58)?);
        Some(FailureDetails { available, status: *d.get(56)?, sense: d.get(60..60 + n)?.to_vec() })
    }
}

/// RECEIVE COPY STATUS (LID4) data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyStatusLid4 {
    /// RESPONSE TO SERVICE ACTION.
    pub service_action: u8,
    /// COPY OPERATION STATUS (01h OK, 02h error, 11h in progress, 60h terminated, ...).
    pub status: u8,
    /// OPERATION COUNTER.
    pub operation_counter: u16,
    /// ESTIMATED STATUS UPDATE DELAY (ms).
    pub estimated_delay: u32,
    /// EXTENDED COPY COMPLETION STATUS (the SCSI status of the command).
    pub completion_status: u8,
    /// TRANSFER COUNT UNITS.
    pub units: u8,
    /// TRANSFER COUNT.
    pub count: u64,
    /// SEGMENTS PROCESSED.
    pub segments_processed: u16,
    /// Sense data of the command.
    pub sense: Vec<u8>,
}

impl CopyStatusLid4 {
    /// Parse the response.
    pub fn parse(d: &[u8]) -> Option<CopyStatusLid4> {
        let sense_len = usize::from(*d.get(14)?);
        let mut c = [0u8; 8];
        c.copy_from_slice(d.get(16..24)?);
        Some(CopyStatusLid4 {
            service_action: d.get(4)? & 0x1F,
            status: d.get(5)? & 0x7F,
            operation_counter: be16(d, 6)?,
            estimated_delay: be32(d, 8)?,
            completion_status: *d.get(12)?,
            units: *d.get(15)?,
            count: u64::from_be_bytes(c),
            segments_processed: be16(d, 24)?,
            sense: d.get(32..32 + sense_len).unwrap_or_default().to_vec(),
        })
    }
}

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
    fn designator_choice_and_encoding() {
        // Port designator, then T10, then NAA: NAA wins; PIV/protocol masked on encode.
        let mut page = vec![0, 0x83, 0, 0];
        page.extend_from_slice(&[0x51, 0x94, 0, 4, 0, 0, 0, 1]);
        page.extend_from_slice(&[0x02, 0x01, 0, 8]);
        page.extend_from_slice(b"OXCOPY  ");
        page.extend_from_slice(&[0x01, 0x03, 0, 16]);
        page.extend_from_slice(&[0x60; 16]);
        let n = (page.len() - 4) as u16;
        page[2..4].copy_from_slice(&n.to_be_bytes());
        let d = lu_designator(&page).unwrap();
        assert_eq!((d.code_set, d.assoc_type, d.value.len()), (0x01, 0x03, 16));
        let c = Cscd::new(d, 512).encode();
        assert_eq!(&c[..8], &[0xE4, 0, 0, 0, 0x01, 0x03, 0, 16]);
        assert_eq!(&c[29..], &[0, 2, 0]);
        // Truncated pages never panic.
        for i in 0..page.len() {
            let _ = lu_designator(&page[..i]);
        }
    }

    #[test]
    fn list_layout_and_planning() {
        let d = Designator { code_set: 1, assoc_type: 3, value: vec![0x60; 16] };
        let l = ParamList {
            list_id: 5,
            usage: ListIdUsage::Discard,
            cscds: vec![Cscd::new(d, 0)],
            segments: vec![
                Segment::BlockToBlock { src: 0, dst: CSCD_THIS_LU, dc: true, blocks: 3, src_lba: 1, dst_lba: 2 },
                Segment::Verify { src: 0, tur: true },
            ],
        };
        let b = l.encode();
        assert_eq!(b.len(), 16 + 32 + 28 + 12);
        assert_eq!(&b[..4], &[5, 0x10, 0, 32]);
        assert_eq!(&b[8..12], &[0, 0, 0, 40]);
        assert_eq!(&b[48..56], &[0x02, 0x02, 0, 0x18, 0, 0, 0xFF, 0xFF]);
    }

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
