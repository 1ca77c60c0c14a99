//! Sense data (SPC-4 §4.5): named sense keys and ASC/ASCQ pairs, and the
//! fixed (70h) and descriptor (72h) encodings.

use super::Fields;
use std::fmt;

/// SENSE KEY (SPC-4 table 27). A newtype so every 4-bit value is representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SenseKey(pub u8);

impl SenseKey {
    pub const NO_SENSE: Self = Self(0x0);
    pub const RECOVERED_ERROR: Self = Self(0x1);
    pub const NOT_READY: Self = Self(0x2);
    pub const MEDIUM_ERROR: Self = Self(0x3);
    pub const HARDWARE_ERROR: Self = Self(0x4);
    pub const ILLEGAL_REQUEST: Self = Self(0x5);
    pub const UNIT_ATTENTION: Self = Self(0x6);
    pub const DATA_PROTECT: Self = Self(0x7);
    pub const BLANK_CHECK: Self = Self(0x8);
    pub const COPY_ABORTED: Self = Self(0xA);
    pub const ABORTED_COMMAND: Self = Self(0xB);
    pub const VOLUME_OVERFLOW: Self = Self(0xD);
    pub const MISCOMPARE: Self = Self(0xE);

    /// The name SPC-4 gives the key (`"RESERVED"` for 0Ch, 0Fh).
    pub fn name(self) -> &'static str {
        match SenseKey(self.0 & 0x0F) {
            SenseKey::NO_SENSE => "NO SENSE",
            SenseKey::RECOVERED_ERROR => "RECOVERED ERROR",
            SenseKey::NOT_READY => "NOT READY",
            SenseKey::MEDIUM_ERROR => "MEDIUM ERROR",
            SenseKey::HARDWARE_ERROR => "HARDWARE ERROR",
            SenseKey::ILLEGAL_REQUEST => "ILLEGAL REQUEST",
            SenseKey::UNIT_ATTENTION => "UNIT ATTENTION",
            SenseKey::DATA_PROTECT => "DATA PROTECT",
            SenseKey::BLANK_CHECK => "BLANK CHECK",
            SenseKey(0x9) => "VENDOR SPECIFIC",
            SenseKey::COPY_ABORTED => "COPY ABORTED",
            SenseKey::ABORTED_COMMAND => "ABORTED COMMAND",
            SenseKey::VOLUME_OVERFLOW => "VOLUME OVERFLOW",
            SenseKey::MISCOMPARE => "MISCOMPARE",
            _ => "RESERVED",
        }
    }
}

/// An ADDITIONAL SENSE CODE / ADDITIONAL SENSE CODE QUALIFIER pair.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Asc(pub u8, pub u8);

impl Asc {
    pub const NO_ADDITIONAL_SENSE: Self = Self(0x00, 0x00);
    /// A copy operation with this list identifier is already running on this I_T nexus.
    pub const OPERATION_IN_PROGRESS: Self = Self(0x00, 0x16);
    /// EXTENDED COPY: a CSCD does not resolve to a logical unit this nexus may reach.
    pub const UNREACHABLE_COPY_TARGET: Self = Self(0x08, 0x04);
    /// EXTENDED COPY: reading or writing a copy source/destination failed.
    pub const THIRD_PARTY_DEVICE_FAILURE: Self = Self(0x0D, 0x01);
    /// EXTENDED COPY: a segment's range lies (partly) outside its copy source/destination.
    pub const COPY_TARGET_DEVICE_NOT_REACHABLE: Self = Self(0x0D, 0x02);
    /// EXTENDED COPY: the CSCD's peripheral device type does not match the logical unit.
    pub const INCORRECT_COPY_TARGET_DEVICE_TYPE: Self = Self(0x0D, 0x03);
    /// WRITE USING TOKEN: the destination ranges need more data than the ROD (after OFFSET INTO ROD) holds.
    pub const COPY_TARGET_DEVICE_DATA_UNDERRUN: Self = Self(0x0D, 0x04);
    pub const WRITE_ERROR: Self = Self(0x0C, 0x00);
    pub const INVALID_FIELD_IN_INFORMATION_UNIT: Self = Self(0x0E, 0x03);
    pub const UNRECOVERED_READ_ERROR: Self = Self(0x11, 0x00);
    pub const PARAMETER_LIST_LENGTH_ERROR: Self = Self(0x1A, 0x00);
    pub const MISCOMPARE_DURING_VERIFY: Self = Self(0x1D, 0x00);
    pub const INVALID_COMMAND_OPERATION_CODE: Self = Self(0x20, 0x00);
    pub const LBA_OUT_OF_RANGE: Self = Self(0x21, 0x00);
    pub const INVALID_FIELD_IN_CDB: Self = Self(0x24, 0x00);
    pub const LOGICAL_UNIT_NOT_SUPPORTED: Self = Self(0x25, 0x00);
    pub const INVALID_FIELD_IN_PARAMETER_LIST: Self = Self(0x26, 0x00);
    /// PERSISTENT RESERVE OUT RELEASE by the holder with the wrong TYPE or SCOPE.
    pub const INVALID_RELEASE_OF_PERSISTENT_RESERVATION: Self = Self(0x26, 0x04);
    /// More CSCD (target) descriptors than MAXIMUM CSCD DESCRIPTOR COUNT.
    pub const TOO_MANY_TARGET_DESCRIPTORS: Self = Self(0x26, 0x06);
    /// A CSCD descriptor type code the copy manager does not implement.
    pub const UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE: Self = Self(0x26, 0x07);
    /// More segment descriptors than MAXIMUM SEGMENT DESCRIPTOR COUNT.
    pub const TOO_MANY_SEGMENT_DESCRIPTORS: Self = Self(0x26, 0x08);
    /// A segment descriptor type code the copy manager does not implement.
    pub const UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE: Self = Self(0x26, 0x09);
    /// A segment's byte count is not a whole number of source and destination blocks.
    pub const UNEXPECTED_INEXACT_SEGMENT: Self = Self(0x26, 0x0A);
    /// A segment longer than the advertised MAXIMUM SEGMENT LENGTH.
    pub const COPY_SEGMENT_GRANULARITY_VIOLATION: Self = Self(0x26, 0x0D);
    pub const WRITE_PROTECTED: Self = Self(0x27, 0x00);
    pub const HARDWARE_WRITE_PROTECTED: Self = Self(0x27, 0x01);
    pub const SOFTWARE_WRITE_PROTECTED: Self = Self(0x27, 0x02);
    pub const SPACE_ALLOCATION_FAILED_WRITE_PROTECT: Self = Self(0x27, 0x07);
    pub const POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED: Self = Self(0x29, 0x00);
    pub const POWER_ON_OCCURRED: Self = Self(0x29, 0x01);
    pub const BUS_DEVICE_RESET_FUNCTION_OCCURRED: Self = Self(0x29, 0x03);
    pub const I_T_NEXUS_LOSS_OCCURRED: Self = Self(0x29, 0x07);
    pub const MODE_PARAMETERS_CHANGED: Self = Self(0x2A, 0x01);
    /// PERSISTENT RESERVE OUT PREEMPT/CLEAR took this nexus's reservation away.
    pub const RESERVATIONS_PREEMPTED: Self = Self(0x2A, 0x03);
    /// The persistent reservation this nexus shared was released or changed.
    pub const RESERVATIONS_RELEASED: Self = Self(0x2A, 0x04);
    /// PERSISTENT RESERVE OUT PREEMPT removed this nexus's registration.
    pub const REGISTRATIONS_PREEMPTED: Self = Self(0x2A, 0x05);
    pub const CAPACITY_DATA_HAS_CHANGED: Self = Self(0x2A, 0x09);
    pub const SAVING_PARAMETERS_NOT_SUPPORTED: Self = Self(0x39, 0x00);
    pub const REPORTED_LUNS_DATA_HAS_CHANGED: Self = Self(0x3F, 0x0E);
    pub const INTERNAL_TARGET_FAILURE: Self = Self(0x44, 0x00);
    /// PERSISTENT RESERVE OUT REGISTER beyond the registrations an LU keeps.
    pub const INSUFFICIENT_REGISTRATION_RESOURCES: Self = Self(0x55, 0x04);
    /// Resources for the command are exhausted (e.g. too many concurrent copies).
    pub const INSUFFICIENT_RESOURCES: Self = Self(0x55, 0x03);
    /// POPULATE TOKEN: no room for the ROD (e.g. snapshot space exhausted).
    pub const INSUFFICIENT_RESOURCES_TO_CREATE_ROD: Self = Self(0x55, 0x0C);
    /// POPULATE TOKEN: no room for another ROD token (live-token limit).
    pub const INSUFFICIENT_RESOURCES_TO_CREATE_ROD_TOKEN: Self = Self(0x55, 0x0D);
    /// A ROD token operation failed for a reason that cannot be reported.
    pub const INVALID_TOKEN_OPERATION_CAUSE_NOT_REPORTABLE: Self = Self(0x23, 0x00);
    /// The ROD token's type is not supported for this operation.
    pub const INVALID_TOKEN_OPERATION_UNSUPPORTED_TOKEN_TYPE: Self = Self(0x23, 0x01);
    /// The ROD token was created by another copy manager.
    pub const INVALID_TOKEN_OPERATION_REMOTE_TOKEN_USAGE_NOT_SUPPORTED: Self = Self(0x23, 0x02);
    /// The ROD token is authentic but not (or no longer) known to this copy manager.
    pub const INVALID_TOKEN_OPERATION_TOKEN_UNKNOWN: Self = Self(0x23, 0x04);
    /// The ROD token is malformed or its authentication code does not verify.
    pub const INVALID_TOKEN_OPERATION_TOKEN_CORRUPT: Self = Self(0x23, 0x05);
    /// The ROD token was revoked (its LU was deleted, resized or reconfigured).
    pub const INVALID_TOKEN_OPERATION_TOKEN_REVOKED: Self = Self(0x23, 0x06);
    /// The ROD token's inactivity timeout elapsed.
    pub const INVALID_TOKEN_OPERATION_TOKEN_EXPIRED: Self = Self(0x23, 0x07);
    /// The ROD token was cancelled (its POPULATE TOKEN was aborted).
    pub const INVALID_TOKEN_OPERATION_TOKEN_CANCELLED: Self = Self(0x23, 0x08);
    /// The ROD token was deleted (WRITE USING TOKEN with DEL_TKN=1).
    pub const INVALID_TOKEN_OPERATION_TOKEN_DELETED: Self = Self(0x23, 0x09);
    /// The ROD token field has the wrong length.
    pub const INVALID_TOKEN_OPERATION_INVALID_TOKEN_LENGTH: Self = Self(0x23, 0x0A);

    /// The ADDITIONAL SENSE CODE byte.
    pub fn asc(self) -> u8 {
        self.0
    }
    /// The ADDITIONAL SENSE CODE QUALIFIER byte.
    pub fn ascq(self) -> u8 {
        self.1
    }

    /// The name SPC-4 gives the pair, for the ones a disk, a copy manager
    /// or a transport commonly reports; `None` for the rest.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Asc::NO_ADDITIONAL_SENSE => "NO ADDITIONAL SENSE INFORMATION",
            Asc::OPERATION_IN_PROGRESS => "OPERATION IN PROGRESS",
            Asc(0x00, 0x20) => "EXTENDED COPY INFORMATION AVAILABLE",
            Asc(0x04, 0x00) => "LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE",
            Asc(0x04, 0x01) => "LOGICAL UNIT IS IN PROCESS OF BECOMING READY",
            Asc(0x04, 0x02) => "LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED",
            Asc(0x04, 0x03) => "LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED",
            Asc::UNREACHABLE_COPY_TARGET => "UNREACHABLE COPY TARGET",
            Asc::WRITE_ERROR => "WRITE ERROR",
            Asc(0x0D, 0x00) => "ERROR DETECTED BY THIRD PARTY TEMPORARY INITIATOR",
            Asc::THIRD_PARTY_DEVICE_FAILURE => "THIRD PARTY DEVICE FAILURE",
            Asc::COPY_TARGET_DEVICE_NOT_REACHABLE => "COPY TARGET DEVICE NOT REACHABLE",
            Asc::INCORRECT_COPY_TARGET_DEVICE_TYPE => "INCORRECT COPY TARGET DEVICE TYPE",
            Asc::COPY_TARGET_DEVICE_DATA_UNDERRUN => "COPY TARGET DEVICE DATA UNDERRUN",
            Asc(0x0D, 0x05) => "COPY TARGET DEVICE DATA OVERRUN",
            Asc::UNRECOVERED_READ_ERROR => "UNRECOVERED READ ERROR",
            Asc::PARAMETER_LIST_LENGTH_ERROR => "PARAMETER LIST LENGTH ERROR",
            Asc::MISCOMPARE_DURING_VERIFY => "MISCOMPARE DURING VERIFY OPERATION",
            Asc::INVALID_COMMAND_OPERATION_CODE => "INVALID COMMAND OPERATION CODE",
            Asc::LBA_OUT_OF_RANGE => "LOGICAL BLOCK ADDRESS OUT OF RANGE",
            Asc::INVALID_TOKEN_OPERATION_CAUSE_NOT_REPORTABLE => "INVALID TOKEN OPERATION, CAUSE NOT REPORTABLE",
            Asc::INVALID_TOKEN_OPERATION_UNSUPPORTED_TOKEN_TYPE => "INVALID TOKEN OPERATION, UNSUPPORTED TOKEN TYPE",
            Asc::INVALID_TOKEN_OPERATION_REMOTE_TOKEN_USAGE_NOT_SUPPORTED => {
                "INVALID TOKEN OPERATION, REMOTE TOKEN USAGE NOT SUPPORTED"
            }
            Asc(0x23, 0x03) => "INVALID TOKEN OPERATION, REMOTE ROD TOKEN CREATION NOT SUPPORTED",
            Asc::INVALID_TOKEN_OPERATION_TOKEN_UNKNOWN => "INVALID TOKEN OPERATION, TOKEN UNKNOWN",
            Asc::INVALID_TOKEN_OPERATION_TOKEN_CORRUPT => "INVALID TOKEN OPERATION, TOKEN CORRUPT",
            Asc::INVALID_TOKEN_OPERATION_TOKEN_REVOKED => "INVALID TOKEN OPERATION, TOKEN REVOKED",
            Asc::INVALID_TOKEN_OPERATION_TOKEN_EXPIRED => "INVALID TOKEN OPERATION, TOKEN EXPIRED",
            Asc::INVALID_TOKEN_OPERATION_TOKEN_CANCELLED => "INVALID TOKEN OPERATION, TOKEN CANCELLED",
            Asc::INVALID_TOKEN_OPERATION_TOKEN_DELETED => "INVALID TOKEN OPERATION, TOKEN DELETED",
            Asc::INVALID_TOKEN_OPERATION_INVALID_TOKEN_LENGTH => "INVALID TOKEN OPERATION, INVALID TOKEN LENGTH",
            Asc::INVALID_FIELD_IN_CDB => "INVALID FIELD IN CDB",
            Asc::LOGICAL_UNIT_NOT_SUPPORTED => "LOGICAL UNIT NOT SUPPORTED",
            Asc::INVALID_FIELD_IN_PARAMETER_LIST => "INVALID FIELD IN PARAMETER LIST",
            Asc::TOO_MANY_TARGET_DESCRIPTORS => "TOO MANY TARGET DESCRIPTORS",
            Asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE => "UNSUPPORTED TARGET DESCRIPTOR TYPE CODE",
            Asc::TOO_MANY_SEGMENT_DESCRIPTORS => "TOO MANY SEGMENT DESCRIPTORS",
            Asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE => "UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE",
            Asc::UNEXPECTED_INEXACT_SEGMENT => "UNEXPECTED INEXACT SEGMENT",
            Asc(0x26, 0x0B) => "INLINE DATA LENGTH EXCEEDED",
            Asc(0x26, 0x0C) => "INVALID OPERATION FOR COPY SOURCE OR DESTINATION",
            Asc::COPY_SEGMENT_GRANULARITY_VIOLATION => "COPY SEGMENT GRANULARITY VIOLATION",
            Asc(0x26, 0x15) => "COPY SOURCE OR COPY DESTINATION NOT AUTHORIZED",
            Asc(0x26, 0x16) => "FAST COPY NOT POSSIBLE",
            Asc::WRITE_PROTECTED => "WRITE PROTECTED",
            Asc(0x28, 0x00) => "NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED",
            Asc::POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED => "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED",
            Asc::I_T_NEXUS_LOSS_OCCURRED => "I_T NEXUS LOSS OCCURRED",
            Asc::MODE_PARAMETERS_CHANGED => "MODE PARAMETERS CHANGED",
            Asc::CAPACITY_DATA_HAS_CHANGED => "CAPACITY DATA HAS CHANGED",
            Asc(0x2F, 0x00) => "COMMANDS CLEARED BY ANOTHER INITIATOR",
            Asc(0x2F, 0x02) => "COMMANDS CLEARED BY DEVICE SERVER",
            Asc(0x3A, 0x00) => "MEDIUM NOT PRESENT",
            Asc::REPORTED_LUNS_DATA_HAS_CHANGED => "REPORTED LUNS DATA HAS CHANGED",
            Asc::INTERNAL_TARGET_FAILURE => "INTERNAL TARGET FAILURE",
            Asc(0x47, 0x00) => "SCSI PARITY ERROR",
            Asc(0x47, 0x05) => "PROTOCOL SERVICE CRC ERROR",
            Asc(0x4B, 0x00) => "DATA PHASE ERROR",
            Asc::INSUFFICIENT_RESOURCES => "INSUFFICIENT RESOURCES",
            Asc::INSUFFICIENT_RESOURCES_TO_CREATE_ROD => "INSUFFICIENT RESOURCES TO CREATE ROD",
            Asc::INSUFFICIENT_RESOURCES_TO_CREATE_ROD_TOKEN => "INSUFFICIENT RESOURCES TO CREATE ROD TOKEN",
            _ => return None,
        })
    }
}

impl fmt::Debug for Asc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Asc({:02X}h/{:02X}h)", self.0, self.1)
    }
}

/// The SENSE KEY SPECIFIC field (SPC-4 §4.5.2.4). Only the field-pointer
/// form is produced today; `Raw` keeps room for progress indication and
/// segment pointers (EXTENDED COPY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenseKeySpecific {
    /// Points at the offending field: `cdb` true for the CDB (C/D=1), false
    /// for the parameter list; `byte` is the byte offset; `bit` the most
    /// significant bit of the field when known (BPV=1).
    Field { cdb: bool, byte: u16, bit: Option<u8> },
    /// Three raw bytes, SKSV already included by the caller.
    Raw([u8; 3]),
}

impl SenseKeySpecific {
    /// The segment-pointer form used with COPY ABORTED (SPC-4 §4.5.2.4.6):
    /// `relative_to_segment` sets SD (the pointer is relative to the start of
    /// the segment descriptor being processed, else to the parameter list);
    /// `byte` is the byte offset, `bit` the bit when known (BPV=1).
    pub fn segment_pointer(relative_to_segment: bool, byte: u16, bit: Option<u8>) -> Self {
        SenseKeySpecific::Raw(pointer(if relative_to_segment { 0x20 } else { 0 }, byte, bit))
    }

    fn bytes(self) -> [u8; 3] {
        match self {
            SenseKeySpecific::Field { cdb, byte, bit } => pointer(if cdb { 0x40 } else { 0 }, byte, bit),
            SenseKeySpecific::Raw(b) => b,
        }
    }
}

/// A field or segment pointer: SKSV, the form's `flag` bit (C/D or SD),
/// BPV and BIT POINTER when `bit` is known, and the byte offset.
fn pointer(flag: u8, byte: u16, bit: Option<u8>) -> [u8; 3] {
    let bpv = bit.map_or(0, |bit| 0x08 | (bit & 0x07));
    let [hi, lo] = byte.to_be_bytes();
    [0x80 | flag | bpv, hi, lo]
}

/// One sense condition, independent of its wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sense {
    /// SENSE KEY.
    pub key: SenseKey,
    /// ADDITIONAL SENSE CODE and QUALIFIER.
    pub asc: Asc,
    /// INFORMATION field (VALID=1 when present).
    pub information: Option<u64>,
    /// COMMAND-SPECIFIC INFORMATION field.
    pub command_specific: Option<u64>,
    /// SENSE KEY SPECIFIC field (SKSV=1 when present).
    pub sks: Option<SenseKeySpecific>,
}

/// Length of the fixed-format sense data we produce.
pub const FIXED_SENSE_LEN: usize = 18;

impl Sense {
    /// A sense condition with no INFORMATION or sense-key-specific data.
    pub fn new(key: SenseKey, asc: Asc) -> Self {
        Sense { key, asc, information: None, command_specific: None, sks: None }
    }

    /// ILLEGAL REQUEST with the given ASC and no field pointer.
    pub fn illegal(asc: Asc) -> Self {
        Sense::new(SenseKey::ILLEGAL_REQUEST, asc)
    }

    /// ILLEGAL REQUEST / INVALID FIELD IN CDB pointing at `byte`, `bit`.
    pub fn invalid_cdb_field(byte: usize, bit: Option<u8>) -> Self {
        Sense::illegal(Asc::INVALID_FIELD_IN_CDB).with_field(true, byte, bit)
    }

    /// ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST pointing at `byte`, `bit`.
    pub fn invalid_param_field(byte: usize, bit: Option<u8>) -> Self {
        Sense::illegal(Asc::INVALID_FIELD_IN_PARAMETER_LIST).with_field(false, byte, bit)
    }

    /// ILLEGAL REQUEST / LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub fn lba_out_of_range() -> Self {
        Sense::illegal(Asc::LBA_OUT_OF_RANGE)
    }

    /// Attach a field pointer (byte offsets beyond 65535 saturate).
    pub fn with_field(mut self, cdb: bool, byte: usize, bit: Option<u8>) -> Self {
        let byte = u16::try_from(byte).unwrap_or(u16::MAX);
        self.sks = Some(SenseKeySpecific::Field { cdb, byte, bit });
        self
    }

    /// Attach the INFORMATION field.
    pub fn with_information(mut self, info: u64) -> Self {
        self.information = Some(info);
        self
    }

    /// Attach the COMMAND-SPECIFIC INFORMATION field.
    pub fn with_command_specific(mut self, csi: u64) -> Self {
        self.command_specific = Some(csi);
        self
    }

    /// Encode as fixed format (70h, 18 bytes). 64-bit values that do not fit
    /// the 4-byte fields are reported with VALID=0 (SPC-4 §4.5.3).
    pub fn to_fixed(&self) -> Vec<u8> {
        let mut b = vec![0u8; FIXED_SENSE_LEN];
        b[0] = 0x70;
        b[2] = self.key.0 & 0x0F;
        if let Some(info) = self.information.and_then(|i| u32::try_from(i).ok()) {
            b[0] |= 0x80;
            b[3..7].copy_from_slice(&info.to_be_bytes());
        }
        b[7] = (FIXED_SENSE_LEN - 8) as u8;
        if let Some(csi) = self.command_specific.and_then(|i| u32::try_from(i).ok()) {
            b[8..12].copy_from_slice(&csi.to_be_bytes());
        }
        b[12] = self.asc.0;
        b[13] = self.asc.1;
        if let Some(sks) = self.sks {
            b[15..18].copy_from_slice(&sks.bytes());
        }
        b
    }

    /// Encode as descriptor format (72h) with information (00h),
    /// command-specific information (01h) and sense key specific (02h)
    /// descriptors as present.
    pub fn to_descriptor(&self) -> Vec<u8> {
        let mut b = vec![0x72, self.key.0 & 0x0F, self.asc.0, self.asc.1, 0, 0, 0, 0];
        if let Some(info) = self.information {
            b.extend_from_slice(&[0x00, 0x0A, 0x80, 0x00]);
            b.extend_from_slice(&info.to_be_bytes());
        }
        if let Some(csi) = self.command_specific {
            b.extend_from_slice(&[0x01, 0x0A, 0x00, 0x00]);
            b.extend_from_slice(&csi.to_be_bytes());
        }
        if let Some(sks) = self.sks {
            b.extend_from_slice(&[0x02, 0x06, 0x00, 0x00]);
            b.extend_from_slice(&sks.bytes());
            b.push(0);
        }
        b[7] = (b.len() - 8) as u8;
        b
    }

    /// Encode in the format the LU's D_SENSE bit selects.
    pub fn encode(&self, descriptor: bool) -> Vec<u8> {
        if descriptor {
            self.to_descriptor()
        } else {
            self.to_fixed()
        }
    }

    /// Parse fixed or descriptor sense data (bounds-checked; unknown
    /// descriptors are skipped). Returns `None` for anything malformed.
    pub fn decode(b: &[u8]) -> Option<Sense> {
        SenseData::parse(b).map(Sense::from)
    }
}

impl From<SenseData> for Sense {
    fn from(d: SenseData) -> Self {
        let key = d.sense_key();
        Sense {
            key,
            asc: d.asc_ascq(),
            information: d.information,
            // Fixed format has no "absent": a zero field is none.
            command_specific: d.command_specific.filter(|v| *v != 0 || d.response_code >= 0x72),
            sks: d.sense_key_specific.map(|b| decode_sks(key, b)),
        }
    }
}

/// Sense data as it stands on the wire, decoded without interpretation:
/// what an initiator receives and shows. [`Sense`] is the typed form the
/// device server builds; [`SenseData::parse`] is the one decoder of both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenseData {
    /// RESPONSE CODE without the VALID bit: 70h/71h fixed (current,
    /// deferred), 72h/73h descriptor.
    pub response_code: u8,
    /// SENSE KEY (4 bits; see [`SenseKey`]).
    pub key: u8,
    /// ADDITIONAL SENSE CODE.
    pub asc: u8,
    /// ADDITIONAL SENSE CODE QUALIFIER.
    pub ascq: u8,
    /// INFORMATION, when VALID is set.
    pub information: Option<u64>,
    /// COMMAND-SPECIFIC INFORMATION (fixed format: present whenever the data
    /// reaches byte 11, zero included — e.g. EXTENDED COPY's segment 0).
    pub command_specific: Option<u64>,
    /// The three SENSE KEY SPECIFIC bytes, when SKSV is set.
    pub sense_key_specific: Option<[u8; 3]>,
}

impl SenseData {
    /// The SENSE KEY as its newtype.
    pub fn sense_key(&self) -> SenseKey {
        SenseKey(self.key)
    }

    /// The ASC/ASCQ pair as its newtype.
    pub fn asc_ascq(&self) -> Asc {
        Asc(self.asc, self.ascq)
    }

    /// Parse fixed (70h/71h) or descriptor (72h/73h) sense data, without
    /// the iSCSI SenseLength prefix. Bounds-checked: fields past the end of
    /// `b` are absent (ASC/ASCQ read as zero), unknown descriptors are
    /// skipped and a descriptor running past the data ends the walk.
    /// `None` for an unknown response code or data too short to hold the
    /// sense key.
    pub fn parse(b: &[u8]) -> Option<SenseData> {
        let f = Fields(b);
        let response_code = f.u8(0)? & 0x7F;
        let at = |i: usize| f.u8(i).unwrap_or(0);
        match response_code {
            0x70 | 0x71 => {
                let valid = at(0) & 0x80 != 0;
                Some(SenseData {
                    response_code,
                    key: f.u8(2)? & 0x0F,
                    asc: at(12),
                    ascq: at(13),
                    information: f.u32(3).filter(|_| valid).map(u64::from),
                    command_specific: f.u32(8).map(u64::from),
                    sense_key_specific: f.array(15).filter(|s: &[u8; 3]| s[0] & 0x80 != 0),
                })
            }
            0x72 | 0x73 => {
                let mut s =
                    SenseData { response_code, key: f.u8(1)? & 0x0F, asc: at(2), ascq: at(3), ..Default::default() };
                let body = f.tail(8);
                let mut body = &body[..usize::from(at(7)).min(body.len())];
                // Each descriptor: type, ADDITIONAL LENGTH, then that many bytes.
                while let [ty, len, rest @ ..] = body {
                    let Some(d) = rest.get(..usize::from(*len)) else { break };
                    let d8 = Fields(d);
                    match *ty {
                        0x00 if d8.bit(0, 7) == Some(true) => s.information = d8.u64(2).or(s.information),
                        0x01 => s.command_specific = d8.u64(2).or(s.command_specific),
                        0x02 if d8.bit(2, 7) == Some(true) => s.sense_key_specific = d8.array(2),
                        _ => {}
                    }
                    body = &rest[d.len()..];
                }
                Some(s)
            }
            _ => None,
        }
    }
}

impl fmt::Display for SenseData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sense key {:#x}, ASC/ASCQ {:#04x}/{:#04x}", self.key, self.asc, self.ascq)
    }
}

fn decode_sks(key: SenseKey, b: [u8; 3]) -> SenseKeySpecific {
    if key == SenseKey::ILLEGAL_REQUEST {
        SenseKeySpecific::Field {
            cdb: b[0] & 0x40 != 0,
            byte: u16::from_be_bytes([b[1], b[2]]),
            bit: (b[0] & 0x08 != 0).then_some(b[0] & 0x07),
        }
    } else {
        SenseKeySpecific::Raw(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format_invalid_field_in_cdb() {
        let s = Sense::invalid_cdb_field(1, Some(4));
        assert_eq!(s.to_fixed(), vec![0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0x00, 0, 0xCC, 0x00, 0x01]);
    }

    #[test]
    fn fixed_format_information_and_csi() {
        let s = Sense::new(SenseKey::MISCOMPARE, Asc::MISCOMPARE_DURING_VERIFY)
            .with_information(0x1234)
            .with_command_specific(7);
        assert_eq!(s.to_fixed(), vec![0xF0, 0, 0x0E, 0, 0, 0x12, 0x34, 10, 0, 0, 0, 7, 0x1D, 0x00, 0, 0, 0, 0]);
        // A 64-bit INFORMATION value does not fit: VALID=0.
        let big = Sense::lba_out_of_range().with_information(1 << 40).to_fixed();
        assert_eq!(big[0], 0x70);
        assert_eq!(&big[3..7], &[0, 0, 0, 0]);
    }

    #[test]
    fn descriptor_format_all_descriptors() {
        let s = Sense::new(SenseKey::MISCOMPARE, Asc::MISCOMPARE_DURING_VERIFY)
            .with_information(0x0102_0304_0506_0708)
            .with_command_specific(9)
            .with_field(false, 0x0203, None);
        let b = s.to_descriptor();
        assert_eq!(&b[..8], &[0x72, 0x0E, 0x1D, 0x00, 0, 0, 0, 32]);
        assert_eq!(&b[8..20], &[0, 0x0A, 0x80, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[20..32], &[1, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(&b[32..40], &[2, 6, 0, 0, 0x80, 0x02, 0x03, 0]);
        assert_eq!(b.len(), 40);
    }

    #[test]
    fn descriptor_format_minimal() {
        let b = Sense::new(SenseKey::UNIT_ATTENTION, Asc::MODE_PARAMETERS_CHANGED).to_descriptor();
        assert_eq!(b, vec![0x72, 0x06, 0x2A, 0x01, 0, 0, 0, 0]);
    }

    #[test]
    fn decode_roundtrips_both_formats() {
        let s = Sense::invalid_cdb_field(9, Some(7)).with_information(5);
        assert_eq!(Sense::decode(&s.to_fixed()), Some(s.clone()));
        assert_eq!(Sense::decode(&s.to_descriptor()), Some(s));
        assert_eq!(Sense::decode(&[]), None);
        assert_eq!(Sense::decode(&[0x72]), None);
        assert_eq!(Sense::decode(&[0x12]), None);
    }

    #[test]
    fn segment_pointer_bytes() {
        assert_eq!(SenseKeySpecific::segment_pointer(true, 0x0102, Some(3)).bytes(), [0xAB, 1, 2]);
        assert_eq!(SenseKeySpecific::segment_pointer(false, 4, None).bytes(), [0x80, 0, 4]);
        assert_eq!(SenseKeySpecific::Field { cdb: false, byte: 9, bit: Some(7) }.bytes(), [0x8F, 0, 9]);
    }

    #[test]
    fn names() {
        assert_eq!(SenseKey::ILLEGAL_REQUEST.name(), "ILLEGAL REQUEST");
        assert_eq!(SenseKey(0xC).name(), "RESERVED");
        assert_eq!(Asc::LBA_OUT_OF_RANGE.name(), Some("LOGICAL BLOCK ADDRESS OUT OF RANGE"));
        assert_eq!(Asc(0x04, 0x01).name(), Some("LOGICAL UNIT IS IN PROCESS OF BECOMING READY"));
        assert_eq!(Asc(0x99, 0x01).name(), None);
    }

    #[test]
    fn raw_fixed_sense() {
        let mut s = [0u8; 18];
        s[0] = 0xf0;
        s[2] = 0x05;
        s[3..7].copy_from_slice(&7u32.to_be_bytes());
        s[7] = 10;
        s[12] = 0x24;
        s[15] = 0xc0;
        s[17] = 2;
        let p = SenseData::parse(&s).unwrap();
        assert_eq!(
            (p.response_code, p.sense_key(), p.asc_ascq()),
            (0x70, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB)
        );
        assert_eq!(p.information, Some(7));
        assert_eq!(p.command_specific, Some(0));
        assert_eq!(Sense::from(p).command_specific, None, "a zero fixed-format CSI is none");
        assert_eq!(p.sense_key_specific, Some([0xc0, 0, 2]));
        assert_eq!(p.to_string(), "sense key 0x5, ASC/ASCQ 0x24/0x00");
        // Every prefix: the key needs byte 2; later fields drop out one by one.
        for n in 0..s.len() {
            let q = SenseData::parse(&s[..n]);
            assert_eq!(q.is_some(), n >= 3, "prefix {n}");
            if let Some(q) = q {
                assert_eq!(q.information.is_some(), n >= 7, "prefix {n}");
                assert_eq!(q.command_specific.is_some(), n >= 12, "prefix {n}");
                assert_eq!(q.asc, if n > 12 { 0x24 } else { 0 }, "prefix {n}");
                assert_eq!(q.sense_key_specific.is_some(), n >= 18, "prefix {n}");
            }
        }
    }

    #[test]
    fn raw_descriptor_sense() {
        let full = Sense::new(SenseKey::MISCOMPARE, Asc::MISCOMPARE_DURING_VERIFY)
            .with_information(0x1000)
            .with_command_specific(3)
            .with_field(false, 2, None)
            .to_descriptor();
        let p = SenseData::parse(&full).unwrap();
        assert_eq!((p.response_code, p.key, p.asc, p.ascq), (0x72, 0x0E, 0x1D, 0));
        assert_eq!(
            (p.information, p.command_specific, p.sense_key_specific),
            (Some(0x1000), Some(3), Some([0x80, 0, 2]))
        );
        // Every prefix: descriptors cut short are dropped, never a panic.
        for n in 0..full.len() {
            let q = SenseData::parse(&full[..n]);
            assert_eq!(q.is_some(), n >= 2, "prefix {n}");
            if let Some(q) = q {
                assert_eq!(q.information.is_some(), n >= 20, "prefix {n}");
                assert_eq!(q.command_specific.is_some(), n >= 32, "prefix {n}");
                assert_eq!(q.sense_key_specific.is_some(), n >= 40, "prefix {n}");
            }
        }
        // A descriptor that claims more than the additional length ends the walk.
        let mut lying = full.clone();
        lying[9] = 0xF0;
        let q = SenseData::parse(&lying).unwrap();
        assert_eq!((q.information, q.sense_key_specific), (None, None));
        assert_eq!(SenseData::parse(&[0x10, 0, 0]), None);
    }
}
