//! The 64-byte submission queue entry (SQE), the 16-byte completion queue
//! entry (CQE), opcodes and status codes (NVMe Base 2.0, NVM Command Set 1.0,
//! NVMe over Fabrics 1.1). Everything little-endian.
//!
//! Wire enums are newtypes with named constants: an unknown opcode or status
//! is a value, never a parse failure.

use std::fmt;

/// Size of a submission queue entry.
pub const SQE_LEN: usize = 64;
/// Size of a completion queue entry.
pub const CQE_LEN: usize = 16;

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// An opcode (admin or I/O command set: the queue says which).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Opcode(pub u8);

impl Opcode {
    // Admin command set.
    pub const DELETE_SQ: Self = Self(0x00);
    pub const CREATE_SQ: Self = Self(0x01);
    pub const GET_LOG_PAGE: Self = Self(0x02);
    pub const DELETE_CQ: Self = Self(0x04);
    pub const CREATE_CQ: Self = Self(0x05);
    pub const IDENTIFY: Self = Self(0x06);
    pub const ABORT: Self = Self(0x08);
    pub const SET_FEATURES: Self = Self(0x09);
    pub const GET_FEATURES: Self = Self(0x0A);
    pub const ASYNC_EVENT_REQUEST: Self = Self(0x0C);
    pub const KEEP_ALIVE: Self = Self(0x18);
    /// Fabrics commands (both queues): the command type is [`FabricsType`].
    pub const FABRICS: Self = Self(0x7F);

    // NVM command set (I/O queues).
    pub const FLUSH: Self = Self(0x00);
    pub const WRITE: Self = Self(0x01);
    pub const READ: Self = Self(0x02);
    pub const WRITE_UNCORRECTABLE: Self = Self(0x04);
    pub const COMPARE: Self = Self(0x05);
    pub const WRITE_ZEROES: Self = Self(0x08);
    pub const DATASET_MANAGEMENT: Self = Self(0x09);
    pub const VERIFY: Self = Self(0x0C);
    pub const RESERVATION_REGISTER: Self = Self(0x0D);
    pub const RESERVATION_REPORT: Self = Self(0x0E);
    pub const RESERVATION_ACQUIRE: Self = Self(0x11);
    pub const RESERVATION_RELEASE: Self = Self(0x15);
    pub const COPY: Self = Self(0x19);

    /// Data transfer direction from the opcode's two low bits (Base 2.0 §5,
    /// "Opcodes for Admin Commands"): 01b host → controller, 10b controller →
    /// host, 11b bidirectional, 00b none.
    pub fn direction(self) -> Direction {
        Direction::from_bits(self.0)
    }
}

impl fmt::Debug for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Opcode({:#04x})", self.0)
    }
}

/// The Fabrics command type (SQE byte 4 when the opcode is 7Fh).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FabricsType(pub u8);

impl FabricsType {
    pub const PROPERTY_SET: Self = Self(0x00);
    pub const CONNECT: Self = Self(0x01);
    pub const PROPERTY_GET: Self = Self(0x04);
    pub const AUTH_SEND: Self = Self(0x05);
    pub const AUTH_RECEIVE: Self = Self(0x06);
    pub const DISCONNECT: Self = Self(0x08);

    /// Data transfer direction, from the two low bits as for opcodes.
    pub fn direction(self) -> Direction {
        Direction::from_bits(self.0)
    }
}

impl fmt::Debug for FabricsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FabricsType({:#04x})", self.0)
    }
}

/// Which way a command's data moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// No data.
    None,
    /// Host to controller (a write: in-capsule data or R2T + H2CData).
    HostToController,
    /// Controller to host (a read: C2HData).
    ControllerToHost,
    /// Both (not used by any command served here: refused).
    Bidirectional,
}

impl Direction {
    fn from_bits(b: u8) -> Self {
        match b & 0b11 {
            0b00 => Self::None,
            0b01 => Self::HostToController,
            0b10 => Self::ControllerToHost,
            _ => Self::Bidirectional,
        }
    }
}

/// SGL descriptor type byte (DPTR byte 15): descriptor type in bits 7:4,
/// subtype in bits 3:0.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SglType(pub u8);

impl SglType {
    /// Data block descriptor, subtype offset: data is in the capsule at
    /// `addr` bytes past the in-capsule data offset.
    pub const DATA_BLOCK_OFFSET: Self = Self(0x01);
    /// Transport SGL data block descriptor, transport-specific subtype Ah:
    /// data moves by R2T/H2CData or C2HData (NVMe/TCP 1.0 §3.3).
    pub const TRANSPORT_DATA_BLOCK: Self = Self(0x5A);
}

impl fmt::Debug for SglType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SglType({:#04x})", self.0)
    }
}

/// The SGL descriptor in DPTR (bytes 24..40).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sgl {
    /// Address (for in-capsule data: offset into the in-capsule data).
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Descriptor type and subtype.
    pub kind: SglType,
}

/// A submission queue entry: 64 bytes, fields read by accessors.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sqe(pub [u8; SQE_LEN]);

impl Default for Sqe {
    fn default() -> Self {
        Self([0; SQE_LEN])
    }
}

impl fmt::Debug for Sqe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sqe")
            .field("opcode", &self.opcode())
            .field("cid", &self.cid())
            .field("nsid", &self.nsid())
            .field("cdw10", &format_args!("{:#x}", self.cdw(10)))
            .field("cdw11", &format_args!("{:#x}", self.cdw(11)))
            .field("cdw12", &format_args!("{:#x}", self.cdw(12)))
            .finish_non_exhaustive()
    }
}

impl Sqe {
    /// From the first 64 bytes of `b`; `None` when shorter.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        let mut s = [0u8; SQE_LEN];
        s.copy_from_slice(b.get(..SQE_LEN)?);
        Some(Self(s))
    }
    /// Opcode (byte 0).
    pub fn opcode(&self) -> Opcode {
        Opcode(self.0[0])
    }
    /// Flags (byte 1): FUSE bits 1:0, PSDT bits 7:6.
    pub fn flags(&self) -> u8 {
        self.0[1]
    }
    /// Command identifier (bytes 2..4).
    pub fn cid(&self) -> u16 {
        le16(&self.0, 2)
    }
    /// Namespace identifier (bytes 4..8). For Fabrics commands byte 4 is the
    /// command type instead: see [`Sqe::fctype`].
    pub fn nsid(&self) -> u32 {
        le32(&self.0, 4)
    }
    /// Fabrics command type (byte 4), meaningful when the opcode is 7Fh.
    pub fn fctype(&self) -> FabricsType {
        FabricsType(self.0[4])
    }
    /// Whether this is a Fabrics command.
    pub fn is_fabrics(&self) -> bool {
        self.opcode() == Opcode::FABRICS
    }
    /// Data direction: from the Fabrics command type for Fabrics commands,
    /// else from the opcode.
    pub fn direction(&self) -> Direction {
        if self.is_fabrics() {
            self.fctype().direction()
        } else {
            self.opcode().direction()
        }
    }
    /// The SGL descriptor of DPTR (bytes 24..40).
    pub fn sgl(&self) -> Sgl {
        Sgl { addr: le64(&self.0, 24), len: le32(&self.0, 32), kind: SglType(self.0[39]) }
    }
    /// Command dword `n` (0..=15) as a little-endian u32.
    pub fn cdw(&self, n: usize) -> u32 {
        le32(&self.0, n * 4)
    }
    /// CDW10 and CDW11 as one 64-bit value (SLBA and similar).
    pub fn cdw10_11(&self) -> u64 {
        le64(&self.0, 40)
    }

    // Builders (host side and tests).

    /// A new entry with opcode, CID and NSID set, everything else zero.
    pub fn new(opcode: Opcode, cid: u16, nsid: u32) -> Self {
        let mut s = Self::default();
        s.0[0] = opcode.0;
        s.set_cid(cid);
        s.0[4..8].copy_from_slice(&nsid.to_le_bytes());
        s
    }
    /// A Fabrics command of type `fctype`.
    pub fn fabrics(fctype: FabricsType, cid: u16) -> Self {
        let mut s = Self::default();
        s.0[0] = Opcode::FABRICS.0;
        s.set_cid(cid);
        s.0[4] = fctype.0;
        s
    }
    /// Sets the command identifier.
    pub fn set_cid(&mut self, cid: u16) {
        self.0[2..4].copy_from_slice(&cid.to_le_bytes());
    }
    /// Sets command dword `n`.
    pub fn set_cdw(&mut self, n: usize, v: u32) {
        self.0[n * 4..n * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    /// Sets CDW10..11 as one 64-bit value.
    pub fn set_cdw10_11(&mut self, v: u64) {
        self.0[40..48].copy_from_slice(&v.to_le_bytes());
    }
    /// Sets the SGL descriptor (and PSDT = SGL for data, 01b, in the flags).
    pub fn set_sgl(&mut self, sgl: Sgl) {
        self.0[1] = (self.0[1] & 0x3F) | 0x40;
        self.0[24..32].copy_from_slice(&sgl.addr.to_le_bytes());
        self.0[32..36].copy_from_slice(&sgl.len.to_le_bytes());
        self.0[36..39].fill(0);
        self.0[39] = sgl.kind.0;
    }
}

/// Status code type (SCT, bits 11:9 of the status field).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusType(pub u8);

impl StatusType {
    pub const GENERIC: Self = Self(0);
    pub const COMMAND_SPECIFIC: Self = Self(1);
    pub const MEDIA: Self = Self(2);
    pub const PATH: Self = Self(3);
}

impl fmt::Debug for StatusType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SCT({})", self.0)
    }
}

/// A completion status: type, code and the Do Not Retry bit. The phase tag
/// and More bits are not kept (the transport has no phase; More is unused).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status {
    /// Status code type.
    pub sct: StatusType,
    /// Status code.
    pub sc: u8,
    /// Do Not Retry.
    pub dnr: bool,
}

macro_rules! statuses {
    ($($(#[$m:meta])* $name:ident = ($sct:expr, $sc:expr, $dnr:expr);)*) => {
        impl Status {
            $($(#[$m])* pub const $name: Self = Self { sct: StatusType($sct), sc: $sc, dnr: $dnr };)*

            /// The name of a known status (without DNR), for logs.
            pub fn name(self) -> Option<&'static str> {
                $(if self.sct.0 == $sct && self.sc == $sc { return Some(stringify!($name)); })*
                None
            }
        }
    };
}

statuses! {
    SUCCESS = (0, 0x00, false);
    // Generic command status (SCT 0).
    INVALID_OPCODE = (0, 0x01, true);
    INVALID_FIELD = (0, 0x02, true);
    COMMAND_ID_CONFLICT = (0, 0x03, true);
    DATA_TRANSFER_ERROR = (0, 0x04, false);
    INTERNAL_ERROR = (0, 0x06, false);
    ABORT_REQUESTED = (0, 0x07, false);
    ABORTED_SQ_DELETION = (0, 0x08, false);
    INVALID_NAMESPACE = (0, 0x0B, true);
    COMMAND_SEQUENCE_ERROR = (0, 0x0C, true);
    INVALID_SGL_SEGMENT_DESCRIPTOR = (0, 0x0D, true);
    DATA_SGL_LENGTH_INVALID = (0, 0x0F, true);
    SGL_DESCRIPTOR_TYPE_INVALID = (0, 0x11, true);
    SGL_OFFSET_INVALID = (0, 0x16, true);
    KEEP_ALIVE_EXPIRED = (0, 0x19, true);
    KEEP_ALIVE_INVALID = (0, 0x1A, true);
    NAMESPACE_WRITE_PROTECTED = (0, 0x20, true);
    TRANSIENT_TRANSPORT_ERROR = (0, 0x22, false);
    LBA_OUT_OF_RANGE = (0, 0x80, true);
    CAPACITY_EXCEEDED = (0, 0x81, true);
    NAMESPACE_NOT_READY = (0, 0x82, false);
    RESERVATION_CONFLICT = (0, 0x83, true);
    // Command specific (SCT 1): admin.
    INVALID_QUEUE_IDENTIFIER = (1, 0x01, true);
    INVALID_QUEUE_SIZE = (1, 0x02, true);
    ABORT_LIMIT_EXCEEDED = (1, 0x03, true);
    AER_LIMIT_EXCEEDED = (1, 0x05, true);
    INVALID_LOG_PAGE = (1, 0x09, true);
    FEATURE_NOT_SAVEABLE = (1, 0x0D, true);
    FEATURE_NOT_CHANGEABLE = (1, 0x0E, true);
    // Command specific (SCT 1): Fabrics Connect.
    CONNECT_INCOMPATIBLE_FORMAT = (1, 0x80, true);
    CONNECT_CONTROLLER_BUSY = (1, 0x81, false);
    CONNECT_INVALID_PARAMETERS = (1, 0x82, true);
    CONNECT_RESTART_DISCOVERY = (1, 0x83, true);
    CONNECT_INVALID_HOST = (1, 0x84, true);
    // Command specific (SCT 1): NVM command set.
    CONFLICTING_ATTRIBUTES = (1, 0x80, true);
    WRITE_TO_READ_ONLY_RANGE = (1, 0x82, true);
    COMMAND_SIZE_LIMIT_EXCEEDED = (1, 0x83, true);
    INCOMPATIBLE_NAMESPACE_OR_FORMAT = (1, 0x85, true);
    FAST_COPY_NOT_POSSIBLE = (1, 0x86, true);
    OVERLAPPING_IO_RANGE = (1, 0x87, true);
    INSUFFICIENT_RESOURCES = (1, 0x89, false);
    // Media and data integrity errors (SCT 2).
    WRITE_FAULT = (2, 0x80, false);
    UNRECOVERED_READ_ERROR = (2, 0x81, false);
    COMPARE_FAILURE = (2, 0x85, true);
    ACCESS_DENIED = (2, 0x86, true);
}

impl Status {
    /// The 15-bit status field of a CQE (bits 15:1 of DW3's upper half; the
    /// phase tag bit 0 is left zero).
    pub fn to_field(self) -> u16 {
        (u16::from(self.sc) << 1) | (u16::from(self.sct.0 & 0x7) << 9) | (u16::from(self.dnr) << 15)
    }
    /// From the 16-bit status field of a CQE.
    pub fn from_field(f: u16) -> Self {
        Self { sct: StatusType(((f >> 9) & 0x7) as u8), sc: ((f >> 1) & 0xFF) as u8, dnr: f & 0x8000 != 0 }
    }
    /// Whether this is success.
    pub fn is_success(self) -> bool {
        self.sct == StatusType::GENERIC && self.sc == 0
    }
    /// The same status with DNR cleared (a retry may succeed).
    pub fn retryable(self) -> Self {
        Self { dnr: false, ..self }
    }
    /// Same type and code (DNR ignored).
    pub fn same_code(self, other: Self) -> bool {
        self.sct == other.sct && self.sc == other.sc
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}")?,
            None => write!(f, "Status(sct={}, sc={:#04x})", self.sct.0, self.sc)?,
        }
        if self.dnr {
            write!(f, "+DNR")?;
        }
        Ok(())
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A completion queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cqe {
    /// Command-specific result, DW0 (and DW1 for 64-bit results such as
    /// Property Get of an 8-byte property).
    pub result: u64,
    /// Submission queue head pointer.
    pub sqhd: u16,
    /// Submission queue identifier.
    pub sqid: u16,
    /// Command identifier.
    pub cid: u16,
    /// Status.
    pub status: Status,
}

impl Default for Status {
    fn default() -> Self {
        Self::SUCCESS
    }
}

impl Cqe {
    /// A completion for `cid` with `status` and result 0.
    pub fn new(cid: u16, status: Status) -> Self {
        Self { cid, status, ..Self::default() }
    }
    /// Encodes the 16 bytes.
    pub fn encode(&self) -> [u8; CQE_LEN] {
        let mut b = [0u8; CQE_LEN];
        b[0..8].copy_from_slice(&self.result.to_le_bytes());
        b[8..10].copy_from_slice(&self.sqhd.to_le_bytes());
        b[10..12].copy_from_slice(&self.sqid.to_le_bytes());
        b[12..14].copy_from_slice(&self.cid.to_le_bytes());
        b[14..16].copy_from_slice(&self.status.to_field().to_le_bytes());
        b
    }
    /// Decodes the first 16 bytes of `b`; `None` when shorter.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let b = b.get(..CQE_LEN)?;
        Some(Self {
            result: le64(b, 0),
            sqhd: le16(b, 8),
            sqid: le16(b, 10),
            cid: le16(b, 12),
            status: Status::from_field(le16(b, 14)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_field_round_trip_and_bits() {
        // LBA Out of Range with DNR: SC 80h at bits 8:1, SCT 0, DNR bit 15.
        assert_eq!(Status::LBA_OUT_OF_RANGE.to_field(), 0x8100);
        // Command Size Limit Exceeded: SCT 1 → bit 9.
        assert_eq!(Status::COMMAND_SIZE_LIMIT_EXCEEDED.to_field(), 0x8000 | 0x0200 | (0x83 << 1));
        for s in [Status::SUCCESS, Status::INVALID_FIELD, Status::COMPARE_FAILURE, Status::INSUFFICIENT_RESOURCES] {
            assert_eq!(Status::from_field(s.to_field()), s);
        }
        // The phase tag bit is ignored on decode.
        assert_eq!(Status::from_field(Status::INVALID_FIELD.to_field() | 1), Status::INVALID_FIELD);
    }

    #[test]
    fn cqe_round_trip() {
        let c = Cqe { result: 0x1122_3344_5566_7788, sqhd: 7, sqid: 2, cid: 0xBEEF, status: Status::COMPARE_FAILURE };
        let b = c.encode();
        assert_eq!(&b[12..14], &[0xEF, 0xBE]);
        assert_eq!(Cqe::decode(&b), Some(c));
        for n in 0..CQE_LEN {
            assert_eq!(Cqe::decode(&b[..n]), None);
        }
    }

    #[test]
    fn sqe_fields() {
        let mut s = Sqe::new(Opcode::WRITE, 0x1234, 1);
        s.set_cdw10_11(0x0102_0304_0506_0708);
        s.set_cdw(12, 7);
        s.set_sgl(Sgl { addr: 0, len: 4096, kind: SglType::DATA_BLOCK_OFFSET });
        assert_eq!(s.opcode(), Opcode::WRITE);
        assert_eq!(s.cid(), 0x1234);
        assert_eq!(s.nsid(), 1);
        assert_eq!(s.cdw10_11(), 0x0102_0304_0506_0708);
        assert_eq!(s.cdw(10), 0x0506_0708);
        assert_eq!(s.cdw(12), 7);
        assert_eq!(s.sgl(), Sgl { addr: 0, len: 4096, kind: SglType::DATA_BLOCK_OFFSET });
        assert_eq!(s.flags() & 0xC0, 0x40);
        assert_eq!(s.direction(), Direction::HostToController);
        assert_eq!(Sqe::new(Opcode::READ, 0, 1).direction(), Direction::ControllerToHost);
        assert_eq!(Sqe::new(Opcode::FLUSH, 0, 1).direction(), Direction::None);
        assert_eq!(Sqe::new(Opcode::COPY, 0, 1).direction(), Direction::HostToController);
        assert_eq!(Sqe::fabrics(FabricsType::CONNECT, 0).direction(), Direction::HostToController);
        assert_eq!(Sqe::fabrics(FabricsType::PROPERTY_GET, 0).direction(), Direction::None);
        assert!(Sqe::from_slice(&[0u8; 63]).is_none());
    }
}
