//! RECEIVE COPY RESULTS (84h) data for EXTENDED COPY (LID1) (SPC-4
//! §6.18): COPY STATUS (00h), OPERATING PARAMETERS (03h) and FAILED
//! SEGMENT DETAILS (04h). The device server encodes them
//! (`crate::copy::results`), an initiator decodes them. RECEIVE COPY
//! STATUS (LID4) (05h) shares its header with RRTI:
//! [`super::rod::CopyStatusHeader`].
//!
//! ```text
//! COPY STATUS        B0-3 AVAILABLE DATA (8)  B4 HDD(7)|COPY MANAGER STATUS
//!                    B5-6 SEGMENTS PROCESSED  B7 TRANSFER COUNT UNITS  B8-11 TRANSFER COUNT
//! OPERATING PARAMS   B0-3 AVAILABLE DATA  B4 SNLID(0)  B8-9 MAX CSCD DESCRIPTORS
//!                    B10-11 MAX SEGMENT DESCRIPTORS  B12-15 MAX DESCRIPTOR LIST LENGTH
//!                    B16-19 MAX SEGMENT LENGTH  B20-23 MAX INLINE DATA LENGTH
//!                    B24-27 HELD DATA LIMIT  B28-31 MAX STREAM DEVICE TRANSFER SIZE
//!                    B34-35 TOTAL CONCURRENT COPIES  B36 MAX CONCURRENT COPIES
//!                    B37 DATA SEGMENT GRANULARITY  B38 INLINE DATA GRANULARITY
//!                    B39 HELD DATA GRANULARITY  B43 LIST LENGTH  B44.. type codes
//! FAILED SEGMENT     B0-3 AVAILABLE DATA  B56 COPY COMMAND STATUS
//!                    B58-59 SENSE DATA LENGTH  B60.. sense data
//! ```

use super::Fields;

/// Length of the COPY STATUS (LID1) data.
pub const COPY_STATUS_LEN: usize = 12;
/// Length of the OPERATING PARAMETERS data before the descriptor type codes.
pub const OPERATING_PARAMETERS_HEADER_LEN: usize = 44;
/// Length of the FAILED SEGMENT DETAILS data before the sense data.
pub const FAILED_SEGMENT_HEADER_LEN: usize = 60;

/// `d` with AVAILABLE DATA (bytes 0..3) set to its length after them.
fn with_available(mut d: Vec<u8>) -> Vec<u8> {
    let avail = u32::try_from(d.len().saturating_sub(4)).unwrap_or(u32::MAX);
    d[0..4].copy_from_slice(&avail.to_be_bytes());
    d
}

/// COPY MANAGER STATUS of COPY STATUS (LID1). A newtype: any 7-bit value
/// is representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CopyManagerStatus(pub u8);

impl CopyManagerStatus {
    /// Operation in progress.
    pub const IN_PROGRESS: Self = Self(0x00);
    /// Completed without errors.
    pub const COMPLETED: Self = Self(0x01);
    /// Completed with errors.
    pub const COMPLETED_WITH_ERRORS: Self = Self(0x02);
}

/// COPY STATUS (LID1) data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyStatus {
    /// COPY MANAGER STATUS ([`CopyManagerStatus`]): 0 in progress, 1 completed OK, 2 completed with error.
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
    /// Decode the 12-byte data (bounded: `None` when cut short).
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

    /// The 12-byte data.
    pub fn encode(&self) -> Vec<u8> {
        let mut d = vec![0u8; COPY_STATUS_LEN];
        d[4] = (u8::from(self.held_data_discarded) << 7) | (self.status & 0x7F);
        d[5..7].copy_from_slice(&self.segments_processed.to_be_bytes());
        d[7] = self.units;
        d[8..12].copy_from_slice(&self.count.to_be_bytes());
        with_available(d)
    }

    /// The transfer count in bytes (saturating).
    pub fn bytes(&self) -> u64 {
        u64::from(self.count).checked_shl(10 * u32::from(self.units)).unwrap_or(u64::MAX)
    }
}

/// RECEIVE COPY OPERATING PARAMETERS data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// MAXIMUM STREAM DEVICE TRANSFER SIZE.
    pub max_stream_transfer_size: u32,
    /// TOTAL CONCURRENT COPIES.
    pub total_concurrent_copies: u16,
    /// MAXIMUM CONCURRENT COPIES.
    pub max_concurrent_copies: u8,
    /// DATA SEGMENT GRANULARITY (log2).
    pub data_segment_granularity: u8,
    /// INLINE DATA GRANULARITY (log2).
    pub inline_data_granularity: u8,
    /// HELD DATA GRANULARITY (log2).
    pub held_data_granularity: u8,
    /// Implemented descriptor type codes.
    pub descriptor_types: Vec<u8>,
}

impl OperatingParameters {
    /// Decode (bounded: `None` when the header or the announced type codes are cut short).
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
            max_stream_transfer_size: f.u32(28)?,
            total_concurrent_copies: f.u16(34)?,
            max_concurrent_copies: f.u8(36)?,
            data_segment_granularity: f.u8(37)?,
            inline_data_granularity: f.u8(38)?,
            held_data_granularity: f.u8(39)?,
            descriptor_types: f.slice(OPERATING_PARAMETERS_HEADER_LEN, n)?.to_vec(),
        })
    }

    /// The data (at most 255 type codes are listed).
    pub fn encode(&self) -> Vec<u8> {
        let types = &self.descriptor_types[..self.descriptor_types.len().min(usize::from(u8::MAX))];
        let mut d = vec![0u8; OPERATING_PARAMETERS_HEADER_LEN];
        d[4] = u8::from(self.snlid);
        d[8..10].copy_from_slice(&self.max_cscd_descriptors.to_be_bytes());
        d[10..12].copy_from_slice(&self.max_segment_descriptors.to_be_bytes());
        d[12..16].copy_from_slice(&self.max_descriptor_list_length.to_be_bytes());
        d[16..20].copy_from_slice(&self.max_segment_length.to_be_bytes());
        d[20..24].copy_from_slice(&self.max_inline_data_length.to_be_bytes());
        d[24..28].copy_from_slice(&self.held_data_limit.to_be_bytes());
        d[28..32].copy_from_slice(&self.max_stream_transfer_size.to_be_bytes());
        d[34..36].copy_from_slice(&self.total_concurrent_copies.to_be_bytes());
        d[36] = self.max_concurrent_copies;
        d[37] = self.data_segment_granularity;
        d[38] = self.inline_data_granularity;
        d[39] = self.held_data_granularity;
        d[43] = u8::try_from(types.len()).unwrap_or(u8::MAX);
        d.extend_from_slice(types);
        with_available(d)
    }
}

/// FAILED SEGMENT DETAILS (LID1) data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureDetails {
    /// AVAILABLE DATA: 0 when the copy did not fail (then nothing else is
    /// sent); the encoder writes 56 + the sense data length otherwise.
    pub available: u32,
    /// COPY COMMAND STATUS.
    pub status: u8,
    /// The failed command's sense data.
    pub sense: Vec<u8>,
}

impl FailureDetails {
    /// The details of a copy that ended with `status` and `sense`.
    pub fn failed(status: u8, sense: Vec<u8>) -> FailureDetails {
        let sense_len = sense.len().min(usize::from(u16::MAX));
        let available = u32::try_from(FAILED_SEGMENT_HEADER_LEN - 4 + sense_len).unwrap_or(u32::MAX);
        FailureDetails { available, status, sense }
    }

    /// Decode (bounded: `None` when the header or the sense data is cut short).
    pub fn parse(d: &[u8]) -> Option<FailureDetails> {
        let f = Fields(d);
        let available = f.u32(0)?;
        if available == 0 {
            return Some(FailureDetails { available, status: 0, sense: Vec::new() });
        }
        let n = usize::from(f.u16(58)?);
        Some(FailureDetails { available, status: f.u8(56)?, sense: f.slice(FAILED_SEGMENT_HEADER_LEN, n)?.to_vec() })
    }

    /// The data: 60 zero bytes when AVAILABLE DATA is 0 (at most 65535 sense bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut d = vec![0u8; FAILED_SEGMENT_HEADER_LEN];
        if self.available == 0 {
            return d;
        }
        let sense = &self.sense[..self.sense.len().min(usize::from(u16::MAX))];
        d[56] = self.status;
        d[58..60].copy_from_slice(&u16::try_from(sense.len()).unwrap_or(u16::MAX).to_be_bytes());
        d.extend_from_slice(sense);
        with_available(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_status_bytes_and_prefixes() {
        let s = CopyStatus { status: 1, held_data_discarded: true, segments_processed: 2, units: 2, count: 5 };
        let d = s.encode();
        assert_eq!(d, [0, 0, 0, 8, 0x81, 0, 2, 2, 0, 0, 0, 5]);
        assert_eq!(CopyStatus::parse(&d), Some(s));
        assert_eq!(s.bytes(), 5 << 20);
        for n in 0..d.len() {
            assert!(CopyStatus::parse(&d[..n]).is_none(), "prefix {n}");
        }
        assert_eq!(CopyStatus { units: 9, count: 1, ..s }.bytes(), u64::MAX);
    }

    #[test]
    fn operating_parameters_bytes_and_prefixes() {
        let p = OperatingParameters {
            snlid: true,
            max_cscd_descriptors: 0x0102,
            max_segment_descriptors: 0x0304,
            max_descriptor_list_length: 0x0506_0708,
            max_segment_length: 9,
            max_inline_data_length: 10,
            held_data_limit: 11,
            max_stream_transfer_size: 12,
            total_concurrent_copies: 0x0D0E,
            max_concurrent_copies: 15,
            data_segment_granularity: 16,
            inline_data_granularity: 17,
            held_data_granularity: 18,
            descriptor_types: vec![0x02, 0xE4],
        };
        let d = p.encode();
        assert_eq!(d.len(), 46);
        assert_eq!(&d[..16], &[0, 0, 0, 42, 1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&d[16..32], &[0, 0, 0, 9, 0, 0, 0, 10, 0, 0, 0, 11, 0, 0, 0, 12]);
        assert_eq!(&d[32..46], &[0, 0, 0x0D, 0x0E, 15, 16, 17, 18, 0, 0, 0, 2, 0x02, 0xE4]);
        assert_eq!(OperatingParameters::parse(&d), Some(p));
        for n in 0..d.len() {
            assert!(OperatingParameters::parse(&d[..n]).is_none(), "prefix {n}");
        }
    }

    #[test]
    fn failure_details_bytes_and_prefixes() {
        let none = FailureDetails::default();
        assert_eq!(none.encode(), vec![0u8; 60]);
        assert_eq!(FailureDetails::parse(&none.encode()), Some(none));
        let f = FailureDetails::failed(2, vec![0x70, 0, 5]);
        let d = f.encode();
        assert_eq!(d.len(), 63);
        assert_eq!((&d[..4], d[56], &d[57..]), (&[0, 0, 0, 59][..], 2, &[0, 0, 3, 0x70, 0, 5][..]));
        assert_eq!(FailureDetails::parse(&d), Some(f));
        for n in 0..d.len() {
            assert!(FailureDetails::parse(&d[..n]).is_none(), "prefix {n}");
        }
    }
}
