//! Typed Basic Header Segments (RFC 7143 §11).
//!
//! Every PDU starts with a 48-byte BHS. [`Header::decode`] turns one into a
//! typed value and never fails for a well-sized buffer: unknown opcodes come
//! back as [`Header::Unknown`] so the caller can answer with a Reject.
//! [`Header::encode`] is the inverse. Lengths (TotalAHSLength and
//! DataSegmentLength) are not part of the typed headers: the framing layer
//! ([`crate::frame`]) fills and checks them.

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;

/// iSCSI opcode (6 bits). A newtype so that any received value is representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Opcode(pub u8);

impl Opcode {
    pub const NOP_OUT: Self = Self(0x00);
    pub const SCSI_COMMAND: Self = Self(0x01);
    pub const TASK_MGMT_REQUEST: Self = Self(0x02);
    pub const LOGIN_REQUEST: Self = Self(0x03);
    pub const TEXT_REQUEST: Self = Self(0x04);
    pub const DATA_OUT: Self = Self(0x05);
    pub const LOGOUT_REQUEST: Self = Self(0x06);
    pub const SNACK_REQUEST: Self = Self(0x10);
    pub const NOP_IN: Self = Self(0x20);
    pub const SCSI_RESPONSE: Self = Self(0x21);
    pub const TASK_MGMT_RESPONSE: Self = Self(0x22);
    pub const LOGIN_RESPONSE: Self = Self(0x23);
    pub const TEXT_RESPONSE: Self = Self(0x24);
    pub const DATA_IN: Self = Self(0x25);
    pub const LOGOUT_RESPONSE: Self = Self(0x26);
    pub const R2T: Self = Self(0x31);
    pub const ASYNC_MESSAGE: Self = Self(0x32);
    pub const REJECT: Self = Self(0x3f);
}

/// Reserved-tag value (RFC 7143 §11.1: 0xffffffff).
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// Task attribute of a SCSI command (byte 1 bits 2:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskAttr(pub u8);
impl TaskAttr {
    pub const UNTAGGED: Self = Self(0);
    pub const SIMPLE: Self = Self(1);
    pub const ORDERED: Self = Self(2);
    pub const HEAD_OF_QUEUE: Self = Self(3);
    pub const ACA: Self = Self(4);
}

/// Task management function code (byte 1 bits 6:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TmfFunction(pub u8);
impl TmfFunction {
    pub const ABORT_TASK: Self = Self(1);
    pub const ABORT_TASK_SET: Self = Self(2);
    pub const CLEAR_ACA: Self = Self(3);
    pub const CLEAR_TASK_SET: Self = Self(4);
    pub const LOGICAL_UNIT_RESET: Self = Self(5);
    pub const TARGET_WARM_RESET: Self = Self(6);
    pub const TARGET_COLD_RESET: Self = Self(7);
    pub const TASK_REASSIGN: Self = Self(8);
}

/// Task management response code (byte 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TmfResponse(pub u8);
impl TmfResponse {
    pub const COMPLETE: Self = Self(0);
    pub const TASK_DOES_NOT_EXIST: Self = Self(1);
    pub const LUN_DOES_NOT_EXIST: Self = Self(2);
    pub const TASK_STILL_ALLEGIANT: Self = Self(3);
    pub const REASSIGNMENT_NOT_SUPPORTED: Self = Self(4);
    pub const NOT_SUPPORTED: Self = Self(5);
    pub const AUTHORIZATION_FAILED: Self = Self(6);
    pub const REJECTED: Self = Self(255);
}

/// iSCSI service response in a SCSI Response (byte 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceResponse(pub u8);
impl ServiceResponse {
    pub const COMPLETED: Self = Self(0x00);
    pub const TARGET_FAILURE: Self = Self(0x01);
}

/// Logout reason code (byte 1 bits 6:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogoutReason(pub u8);
impl LogoutReason {
    pub const CLOSE_SESSION: Self = Self(0);
    pub const CLOSE_CONNECTION: Self = Self(1);
    pub const REMOVE_CONNECTION_FOR_RECOVERY: Self = Self(2);
}

/// Logout response code (byte 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogoutResponseCode(pub u8);
impl LogoutResponseCode {
    pub const SUCCESS: Self = Self(0);
    pub const CID_NOT_FOUND: Self = Self(1);
    pub const RECOVERY_NOT_SUPPORTED: Self = Self(2);
    pub const CLEANUP_FAILED: Self = Self(3);
}

/// Reject reason (byte 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RejectReason(pub u8);
impl RejectReason {
    pub const DATA_DIGEST_ERROR: Self = Self(0x02);
    pub const SNACK_REJECT: Self = Self(0x03);
    pub const PROTOCOL_ERROR: Self = Self(0x04);
    pub const COMMAND_NOT_SUPPORTED: Self = Self(0x05);
    pub const IMMEDIATE_COMMAND_REJECT: Self = Self(0x06);
    pub const TASK_IN_PROGRESS: Self = Self(0x07);
    pub const INVALID_DATA_ACK: Self = Self(0x08);
    pub const INVALID_PDU_FIELD: Self = Self(0x09);
    pub const LONG_OPERATION_REJECT: Self = Self(0x0a);
    pub const NEGOTIATION_RESET: Self = Self(0x0b);
    pub const WAITING_FOR_LOGOUT: Self = Self(0x0c);
}

/// Login stage (CSG/NSG, 2 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stage(pub u8);
impl Stage {
    pub const SECURITY_NEGOTIATION: Self = Self(0);
    pub const OPERATIONAL_NEGOTIATION: Self = Self(1);
    pub const FULL_FEATURE_PHASE: Self = Self(3);
}

/// Login response status (class, detail), RFC 7143 §11.13.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoginStatus(pub u8, pub u8);
impl LoginStatus {
    pub const SUCCESS: Self = Self(0x00, 0x00);
    pub const TARGET_MOVED_TEMPORARILY: Self = Self(0x01, 0x01);
    pub const TARGET_MOVED_PERMANENTLY: Self = Self(0x01, 0x02);
    pub const INITIATOR_ERROR: Self = Self(0x02, 0x00);
    pub const AUTHENTICATION_FAILURE: Self = Self(0x02, 0x01);
    pub const AUTHORIZATION_FAILURE: Self = Self(0x02, 0x02);
    pub const NOT_FOUND: Self = Self(0x02, 0x03);
    pub const TARGET_REMOVED: Self = Self(0x02, 0x04);
    pub const UNSUPPORTED_VERSION: Self = Self(0x02, 0x05);
    pub const TOO_MANY_CONNECTIONS: Self = Self(0x02, 0x06);
    pub const MISSING_PARAMETER: Self = Self(0x02, 0x07);
    pub const CANT_INCLUDE_IN_SESSION: Self = Self(0x02, 0x08);
    pub const SESSION_TYPE_NOT_SUPPORTED: Self = Self(0x02, 0x09);
    pub const SESSION_DOES_NOT_EXIST: Self = Self(0x02, 0x0a);
    pub const INVALID_DURING_LOGIN: Self = Self(0x02, 0x0b);
    pub const TARGET_ERROR: Self = Self(0x03, 0x00);
    pub const SERVICE_UNAVAILABLE: Self = Self(0x03, 0x01);
    pub const OUT_OF_RESOURCES: Self = Self(0x03, 0x02);
}

/// SCSI Command (opcode 0x01), RFC 7143 §11.3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiCommand {
    pub immediate: bool,
    pub final_: bool,
    pub read: bool,
    pub write: bool,
    pub attr: TaskAttr,
    pub lun: [u8; 8],
    pub itt: u32,
    pub expected_data_length: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    /// The first 16 CDB bytes; longer CDBs continue in an Extended CDB AHS.
    pub cdb: [u8; 16],
}

/// SCSI Response (opcode 0x21), RFC 7143 §11.4.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScsiResponse {
    pub bidi_overflow: bool,
    pub bidi_underflow: bool,
    pub overflow: bool,
    pub underflow: bool,
    pub response: u8,
    pub status: u8,
    pub itt: u32,
    pub snack_tag: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub exp_data_sn: u32,
    pub bidi_residual: u32,
    pub residual: u32,
}

/// Task Management Function Request (opcode 0x02), RFC 7143 §11.5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMgmtRequest {
    pub immediate: bool,
    pub function: TmfFunction,
    pub lun: [u8; 8],
    pub itt: u32,
    pub referenced_task_tag: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub ref_cmd_sn: u32,
    pub exp_data_sn: u32,
}

/// Task Management Function Response (opcode 0x22), RFC 7143 §11.6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMgmtResponse {
    pub response: TmfResponse,
    pub itt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
}

/// SCSI Data-Out (opcode 0x05), RFC 7143 §11.7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataOut {
    pub final_: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub exp_stat_sn: u32,
    pub data_sn: u32,
    pub buffer_offset: u32,
}

/// SCSI Data-In (opcode 0x25), RFC 7143 §11.7.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataIn {
    pub final_: bool,
    pub ack: bool,
    pub overflow: bool,
    pub underflow: bool,
    /// Status is carried in this PDU (only with `final_`).
    pub has_status: bool,
    pub status: u8,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub data_sn: u32,
    pub buffer_offset: u32,
    pub residual: u32,
}

/// Ready To Transfer (opcode 0x31), RFC 7143 §11.8.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct R2t {
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub r2t_sn: u32,
    pub buffer_offset: u32,
    pub desired_length: u32,
}

/// Asynchronous Message (opcode 0x32), RFC 7143 §11.9.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AsyncMessage {
    pub lun: [u8; 8],
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub event: u8,
    pub vcode: u8,
    pub param1: u16,
    pub param2: u16,
    pub param3: u16,
}

/// Text Request (opcode 0x04), RFC 7143 §11.10.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRequest {
    pub immediate: bool,
    pub final_: bool,
    pub continue_: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

/// Text Response (opcode 0x24), RFC 7143 §11.11.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextResponse {
    pub final_: bool,
    pub continue_: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
}

/// Login Request (opcode 0x03, always immediate), RFC 7143 §11.12.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest {
    pub transit: bool,
    pub continue_: bool,
    pub csg: Stage,
    pub nsg: Stage,
    pub version_max: u8,
    pub version_min: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

/// Login Response (opcode 0x23), RFC 7143 §11.13.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginResponse {
    pub transit: bool,
    pub continue_: bool,
    pub csg: Stage,
    pub nsg: Stage,
    pub version_max: u8,
    pub version_active: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub status: LoginStatus,
}

/// Logout Request (opcode 0x06), RFC 7143 §11.14.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    pub immediate: bool,
    pub reason: LogoutReason,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

/// Logout Response (opcode 0x26), RFC 7143 §11.15.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutResponse {
    pub response: LogoutResponseCode,
    pub itt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub time2wait: u16,
    pub time2retain: u16,
}

/// Reject (opcode 0x3f), RFC 7143 §11.17. The data segment carries the
/// rejected PDU's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub reason: RejectReason,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub data_sn: u32,
}

/// NOP-Out (opcode 0x00), RFC 7143 §11.18.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NopOut {
    pub immediate: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

/// NOP-In (opcode 0x20), RFC 7143 §11.19.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NopIn {
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
}

/// A typed Basic Header Segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    NopOut(NopOut),
    ScsiCommand(ScsiCommand),
    TaskMgmtRequest(TaskMgmtRequest),
    LoginRequest(LoginRequest),
    TextRequest(TextRequest),
    DataOut(DataOut),
    LogoutRequest(LogoutRequest),
    NopIn(NopIn),
    ScsiResponse(ScsiResponse),
    TaskMgmtResponse(TaskMgmtResponse),
    LoginResponse(LoginResponse),
    TextResponse(TextResponse),
    DataIn(DataIn),
    LogoutResponse(LogoutResponse),
    R2t(R2t),
    AsyncMessage(AsyncMessage),
    Reject(Reject),
    /// Any other opcode (SNACK included: we run at ErrorRecoveryLevel 0);
    /// kept raw so it can be echoed in a Reject.
    Unknown {
        opcode: Opcode,
        raw: Box<[u8; BHS_LEN]>,
    },
}

#[inline]
fn be32(b: &[u8; BHS_LEN], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
#[inline]
fn be16(b: &[u8; BHS_LEN], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
#[inline]
fn put32(b: &mut [u8; BHS_LEN], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
#[inline]
fn put16(b: &mut [u8; BHS_LEN], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
#[inline]
fn arr<const N: usize>(b: &[u8; BHS_LEN], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}
#[inline]
fn bit(v: u8, n: u8) -> bool {
    v & (1 << n) != 0
}
#[inline]
fn flag(on: bool, n: u8) -> u8 {
    (on as u8) << n
}

/// Opcode of a raw BHS (bits 5:0 of byte 0).
pub fn bhs_opcode(b: &[u8; BHS_LEN]) -> Opcode {
    Opcode(b[0] & 0x3f)
}
/// TotalAHSLength in bytes (the field counts 4-byte words).
pub fn bhs_ahs_len(b: &[u8; BHS_LEN]) -> usize {
    b[4] as usize * 4
}
/// DataSegmentLength (24 bits), excluding padding.
pub fn bhs_data_len(b: &[u8; BHS_LEN]) -> u32 {
    u32::from_be_bytes([0, b[5], b[6], b[7]])
}
/// Initiator Task Tag field (bytes 16..20) of any BHS.
pub fn bhs_itt(b: &[u8; BHS_LEN]) -> u32 {
    be32(b, 16)
}

impl Header {
    /// The opcode this header encodes with.
    pub fn opcode(&self) -> Opcode {
        match self {
            Header::NopOut(_) => Opcode::NOP_OUT,
            Header::ScsiCommand(_) => Opcode::SCSI_COMMAND,
            Header::TaskMgmtRequest(_) => Opcode::TASK_MGMT_REQUEST,
            Header::LoginRequest(_) => Opcode::LOGIN_REQUEST,
            Header::TextRequest(_) => Opcode::TEXT_REQUEST,
            Header::DataOut(_) => Opcode::DATA_OUT,
            Header::LogoutRequest(_) => Opcode::LOGOUT_REQUEST,
            Header::NopIn(_) => Opcode::NOP_IN,
            Header::ScsiResponse(_) => Opcode::SCSI_RESPONSE,
            Header::TaskMgmtResponse(_) => Opcode::TASK_MGMT_RESPONSE,
            Header::LoginResponse(_) => Opcode::LOGIN_RESPONSE,
            Header::TextResponse(_) => Opcode::TEXT_RESPONSE,
            Header::DataIn(_) => Opcode::DATA_IN,
            Header::LogoutResponse(_) => Opcode::LOGOUT_RESPONSE,
            Header::R2t(_) => Opcode::R2T,
            Header::AsyncMessage(_) => Opcode::ASYNC_MESSAGE,
            Header::Reject(_) => Opcode::REJECT,
            Header::Unknown { opcode, .. } => *opcode,
        }
    }

    /// Decode a BHS. Total for any 48 bytes: reserved fields are ignored,
    /// unknown opcodes are returned raw.
    pub fn decode(b: &[u8; BHS_LEN]) -> Header {
        let op = bhs_opcode(b);
        let imm = bit(b[0], 6);
        let f = b[1];
        let lun = arr::<8>(b, 8);
        let itt = be32(b, 16);
        match op {
            Opcode::NOP_OUT => Header::NopOut(NopOut {
                immediate: imm,
                lun,
                itt,
                ttt: be32(b, 20),
                cmd_sn: be32(b, 24),
                exp_stat_sn: be32(b, 28),
            }),
            Opcode::SCSI_COMMAND => Header::ScsiCommand(ScsiCommand {
                immediate: imm,
                final_: bit(f, 7),
                read: bit(f, 6),
                write: bit(f, 5),
                attr: TaskAttr(f & 0x07),
                lun,
                itt,
                expected_data_length: be32(b, 20),
                cmd_sn: be32(b, 24),
                exp_stat_sn: be32(b, 28),
                cdb: arr::<16>(b, 32),
            }),
            Opcode::TASK_MGMT_REQUEST => Header::TaskMgmtRequest(TaskMgmtRequest {
                immediate: imm,
                function: TmfFunction(f & 0x7f),
                lun,
                itt,
                referenced_task_tag: be32(b, 20),
                cmd_sn: be32(b, 24),
                exp_stat_sn: be32(b, 28),
                ref_cmd_sn: be32(b, 32),
                exp_data_sn: be32(b, 36),
            }),
            Opcode::LOGIN_REQUEST => Header::LoginRequest(LoginRequest {
                transit: bit(f, 7),
                continue_: bit(f, 6),
                csg: Stage((f >> 2) & 3),
                nsg: Stage(f & 3),
                version_max: b[2],
                version_min: b[3],
                isid: arr::<6>(b, 8),
                tsih: be16(b, 14),
                itt,
                cid: be16(b, 20),
                cmd_sn: be32(b, 24),
                exp_stat_sn: be32(b, 28),
            }),
            Opcode::TEXT_REQUEST => Header::TextRequest(TextRequest {
                immediate: imm,
                final_: bit(f, 7),
                continue_: bit(f, 6),
                lun,
                itt,
                ttt: be32(b, 20),
                cmd_sn: be32(b, 24),
                exp_stat_sn: be32(b, 28),
            }),
            Opcode::DATA_OUT => Header::DataOut(DataOut {
                final_: bit(f, 7),
                lun,
                itt,
                ttt: be32(b, 20),
                exp_stat_sn: be32(b, 28),
                data_sn: be32(b, 36),
                buffer_offset: be32(b, 40),
            }),
            Opcode::LOGOUT_REQUEST => Header::LogoutRequest(LogoutRequest {
                immediate: imm,
                reason: LogoutReason(f & 0x7f),
                itt,
                cid: be16(b, 20),
                cmd_sn: be32(b, 24),
                exp_stat_sn: be32(b, 28),
            }),
            Opcode::NOP_IN => Header::NopIn(NopIn {
                lun,
                itt,
                ttt: be32(b, 20),
                stat_sn: be32(b, 24),
                exp_cmd_sn: be32(b, 28),
                max_cmd_sn: be32(b, 32),
            }),
            Opcode::SCSI_RESPONSE => Header::ScsiResponse(ScsiResponse {
                bidi_overflow: bit(f, 4),
                bidi_underflow: bit(f, 3),
                overflow: bit(f, 2),
                underflow: bit(f, 1),
                response: b[2],
                status: b[3],
                itt,
                snack_tag: be32(b, 20),
                stat_sn: be32(b, 24),
                exp_cmd_sn: be32(b, 28),
                max_cmd_sn: be32(b, 32),
                exp_data_sn: be32(b, 36),
                bidi_residual: be32(b, 40),
                residual: be32(b, 44),
            }),
            Opcode::TASK_MGMT_RESPONSE => Header::TaskMgmtResponse(TaskMgmtResponse {
                response: TmfResponse(b[2]),
                itt,
                stat_sn: be32(b, 24),
                exp_cmd_sn: be32(b, 28),
                max_cmd_sn: be32(b, 32),
            }),
            Opcode::LOGIN_RESPONSE => Header::LoginResponse(LoginResponse {
                transit: bit(f, 7),
                continue_: bit(f, 6),
                csg: Stage((f >> 2) & 3),
                nsg: Stage(f & 3),
                version_max: b[2],
                version_active: b[3],
                isid: arr::<6>(b, 8),
                tsih: be16(b, 14),
                itt,
                stat_sn: be32(b, 24),
                exp_cmd_sn: be32(b, 28),
                max_cmd_sn: be32(b, 32),
                status: LoginStatus(b[36], b[37]),
            }),
            Opcode::TEXT_RESPONSE => Header::TextResponse(TextResponse {
                final_: bit(f, 7),
                continue_: bit(f, 6),
                lun,
                itt,
                ttt: be32(b, 20),
                stat_sn: be32(b, 24),
                exp_cmd_sn: be32(b, 28),
                max_cmd_sn: be32(b, 32),
            }),
            Opcode::DATA_IN => Header::DataIn(DataIn {
                final_: bit(f, 7),
                ack: bit(f, 6),
                overflow: bit(f, 2),
                underflow: bit(f, 1),
                has_status: bit(f, 0),
                status: if bit(f, 0) { b[3] } else { 0 },
                lun,
                itt,
                ttt: be32(b, 20),
                stat_sn: be32(b, 24),
                exp_cmd_sn: be32(b, 28),
                max_cmd_sn: be32(b, 32),
                data_sn: be32(b, 36),
                buffer_offset: be32(b, 40),
                residual: be32(b, 44),
            }),
            Opcode::LOGOUT_RESPONSE => Header::LogoutResponse(LogoutResponse {
                response: LogoutResponseCode(b[2]),
                itt,
                stat_sn: be32(b, 24),
                exp_cmd_sn: be32(b, 28),
                max_cmd_sn: be32(b, 32),
                time2wait: be16(b, 40),
                time2retain: be16(b, 42),
            }),
            Opcode::R2T => Header::R2t(R2t {
                lun,
                itt,
                ttt: be32(b, 20),
                stat_sn: be32(b, 24),
                exp_cmd_sn: be32(b, 28),
                max_cmd_sn: be32(b, 32),
                r2t_sn: be32(b, 36),
                buffer_offset: be32(b, 40),
                desired_length: be32(b, 44),
            }),
            Opcode::ASYNC_MESSAGE => Header::AsyncMessage(AsyncMessage {
                lun,
                stat_sn: be32(b, 24),
                exp_cmd_sn: be32(b, 28),
                max_cmd_sn: be32(b, 32),
                event: b[36],
                vcode: b[37],
                param1: be16(b, 38),
                param2: be16(b, 40),
                param3: be16(b, 42),
            }),
            Opcode::REJECT => Header::Reject(Reject {
                reason: RejectReason(b[2]),
                stat_sn: be32(b, 24),
                exp_cmd_sn: be32(b, 28),
                max_cmd_sn: be32(b, 32),
                data_sn: be32(b, 36),
            }),
            _ => Header::Unknown { opcode: op, raw: Box::new(*b) },
        }
    }

    /// Encode into a BHS with the given AHS length (bytes, a multiple of 4)
    /// and data segment length.
    pub fn encode(&self, ahs_len: usize, data_len: u32) -> [u8; BHS_LEN] {
        let mut b = [0u8; BHS_LEN];
        if let Header::Unknown { raw, .. } = self {
            b = **raw;
        } else {
            b[0] = self.opcode().0 & 0x3f;
        }
        match self {
            Header::NopOut(h) => {
                b[0] |= flag(h.immediate, 6);
                b[1] = 0x80;
                b[8..16].copy_from_slice(&h.lun);
                put32(&mut b, 16, h.itt);
                put32(&mut b, 20, h.ttt);
                put32(&mut b, 24, h.cmd_sn);
                put32(&mut b, 28, h.exp_stat_sn);
            }
            Header::ScsiCommand(h) => {
                b[0] |= flag(h.immediate, 6);
                b[1] = flag(h.final_, 7) | flag(h.read, 6) | flag(h.write, 5) | (h.attr.0 & 7);
                b[8..16].copy_from_slice(&h.lun);
                put32(&mut b, 16, h.itt);
                put32(&mut b, 20, h.expected_data_length);
                put32(&mut b, 24, h.cmd_sn);
                put32(&mut b, 28, h.exp_stat_sn);
                b[32..48].copy_from_slice(&h.cdb);
            }
            Header::TaskMgmtRequest(h) => {
                b[0] |= flag(h.immediate, 6);
                b[1] = 0x80 | (h.function.0 & 0x7f);
                b[8..16].copy_from_slice(&h.lun);
                put32(&mut b, 16, h.itt);
                put32(&mut b, 20, h.referenced_task_tag);
                put32(&mut b, 24, h.cmd_sn);
                put32(&mut b, 28, h.exp_stat_sn);
                put32(&mut b, 32, h.ref_cmd_sn);
                put32(&mut b, 36, h.exp_data_sn);
            }
            Header::LoginRequest(h) => {
                b[0] |= 0x40; // login requests are always immediate
                b[1] = flag(h.transit, 7) | flag(h.continue_, 6) | ((h.csg.0 & 3) << 2) | (h.nsg.0 & 3);
                b[2] = h.version_max;
                b[3] = h.version_min;
                b[8..14].copy_from_slice(&h.isid);
                put16(&mut b, 14, h.tsih);
                put32(&mut b, 16, h.itt);
                put16(&mut b, 20, h.cid);
                put32(&mut b, 24, h.cmd_sn);
                put32(&mut b, 28, h.exp_stat_sn);
            }
            Header::TextRequest(h) => {
                b[0] |= flag(h.immediate, 6);
                b[1] = flag(h.final_, 7) | flag(h.continue_, 6);
                b[8..16].copy_from_slice(&h.lun);
                put32(&mut b, 16, h.itt);
                put32(&mut b, 20, h.ttt);
                put32(&mut b, 24, h.cmd_sn);
                put32(&mut b, 28, h.exp_stat_sn);
            }
            Header::DataOut(h) => {
                b[1] = flag(h.final_, 7);
                b[8..16].copy_from_slice(&h.lun);
                put32(&mut b, 16, h.itt);
                put32(&mut b, 20, h.ttt);
                put32(&mut b, 28, h.exp_stat_sn);
                put32(&mut b, 36, h.data_sn);
                put32(&mut b, 40, h.buffer_offset);
            }
            Header::LogoutRequest(h) => {
                b[0] |= flag(h.immediate, 6);
                b[1] = 0x80 | (h.reason.0 & 0x7f);
                put32(&mut b, 16, h.itt);
                put16(&mut b, 20, h.cid);
                put32(&mut b, 24, h.cmd_sn);
                put32(&mut b, 28, h.exp_stat_sn);
            }
            Header::NopIn(h) => {
                b[1] = 0x80;
                b[8..16].copy_from_slice(&h.lun);
                put32(&mut b, 16, h.itt);
                put32(&mut b, 20, h.ttt);
                put32(&mut b, 24, h.stat_sn);
                put32(&mut b, 28, h.exp_cmd_sn);
                put32(&mut b, 32, h.max_cmd_sn);
            }
            Header::ScsiResponse(h) => {
                b[1] = 0x80
                    | flag(h.bidi_overflow, 4)
                    | flag(h.bidi_underflow, 3)
                    | flag(h.overflow, 2)
                    | flag(h.underflow, 1);
                b[2] = h.response;
                b[3] = h.status;
                put32(&mut b, 16, h.itt);
                put32(&mut b, 20, h.snack_tag);
                put32(&mut b, 24, h.stat_sn);
                put32(&mut b, 28, h.exp_cmd_sn);
                put32(&mut b, 32, h.max_cmd_sn);
                put32(&mut b, 36, h.exp_data_sn);
                put32(&mut b, 40, h.bidi_residual);
                put32(&mut b, 44, h.residual);
            }
            Header::TaskMgmtResponse(h) => {
                b[1] = 0x80;
                b[2] = h.response.0;
                put32(&mut b, 16, h.itt);
                put32(&mut b, 24, h.stat_sn);
                put32(&mut b, 28, h.exp_cmd_sn);
                put32(&mut b, 32, h.max_cmd_sn);
            }
            Header::LoginResponse(h) => {
                b[1] = flag(h.transit, 7) | flag(h.continue_, 6) | ((h.csg.0 & 3) << 2) | (h.nsg.0 & 3);
                b[2] = h.version_max;
                b[3] = h.version_active;
                b[8..14].copy_from_slice(&h.isid);
                put16(&mut b, 14, h.tsih);
                put32(&mut b, 16, h.itt);
                put32(&mut b, 24, h.stat_sn);
                put32(&mut b, 28, h.exp_cmd_sn);
                put32(&mut b, 32, h.max_cmd_sn);
                b[36] = h.status.0;
                b[37] = h.status.1;
            }
            Header::TextResponse(h) => {
                b[1] = flag(h.final_, 7) | flag(h.continue_, 6);
                b[8..16].copy_from_slice(&h.lun);
                put32(&mut b, 16, h.itt);
                put32(&mut b, 20, h.ttt);
                put32(&mut b, 24, h.stat_sn);
                put32(&mut b, 28, h.exp_cmd_sn);
                put32(&mut b, 32, h.max_cmd_sn);
            }
            Header::DataIn(h) => {
                b[1] = flag(h.final_, 7)
                    | flag(h.ack, 6)
                    | flag(h.overflow, 2)
                    | flag(h.underflow, 1)
                    | flag(h.has_status, 0);
                b[3] = if h.has_status { h.status } else { 0 };
                b[8..16].copy_from_slice(&h.lun);
                put32(&mut b, 16, h.itt);
                put32(&mut b, 20, h.ttt);
                put32(&mut b, 24, h.stat_sn);
                put32(&mut b, 28, h.exp_cmd_sn);
                put32(&mut b, 32, h.max_cmd_sn);
                put32(&mut b, 36, h.data_sn);
                put32(&mut b, 40, h.buffer_offset);
                put32(&mut b, 44, h.residual);
            }
            Header::LogoutResponse(h) => {
                b[1] = 0x80;
                b[2] = h.response.0;
                put32(&mut b, 16, h.itt);
                put32(&mut b, 24, h.stat_sn);
                put32(&mut b, 28, h.exp_cmd_sn);
                put32(&mut b, 32, h.max_cmd_sn);
                put16(&mut b, 40, h.time2wait);
                put16(&mut b, 42, h.time2retain);
            }
            Header::R2t(h) => {
                b[1] = 0x80;
                b[8..16].copy_from_slice(&h.lun);
                put32(&mut b, 16, h.itt);
                put32(&mut b, 20, h.ttt);
                put32(&mut b, 24, h.stat_sn);
                put32(&mut b, 28, h.exp_cmd_sn);
                put32(&mut b, 32, h.max_cmd_sn);
                put32(&mut b, 36, h.r2t_sn);
                put32(&mut b, 40, h.buffer_offset);
                put32(&mut b, 44, h.desired_length);
            }
            Header::AsyncMessage(h) => {
                b[1] = 0x80;
                b[8..16].copy_from_slice(&h.lun);
                put32(&mut b, 16, RESERVED_TAG);
                put32(&mut b, 24, h.stat_sn);
                put32(&mut b, 28, h.exp_cmd_sn);
                put32(&mut b, 32, h.max_cmd_sn);
                b[36] = h.event;
                b[37] = h.vcode;
                put16(&mut b, 38, h.param1);
                put16(&mut b, 40, h.param2);
                put16(&mut b, 42, h.param3);
            }
            Header::Reject(h) => {
                b[1] = 0x80;
                b[2] = h.reason.0;
                put32(&mut b, 16, RESERVED_TAG);
                put32(&mut b, 24, h.stat_sn);
                put32(&mut b, 28, h.exp_cmd_sn);
                put32(&mut b, 32, h.max_cmd_sn);
                put32(&mut b, 36, h.data_sn);
            }
            Header::Unknown { .. } => {}
        }
        debug_assert!(ahs_len % 4 == 0 && ahs_len / 4 <= 255);
        b[4] = (ahs_len / 4).min(255) as u8;
        let dl = data_len.min(0x00ff_ffff).to_be_bytes();
        b[5..8].copy_from_slice(&dl[1..4]);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn scsi_command_bytes() {
        let h = Header::ScsiCommand(ScsiCommand {
            immediate: false,
            final_: true,
            read: true,
            write: false,
            attr: TaskAttr::SIMPLE,
            lun: [0, 1, 0, 0, 0, 0, 0, 0],
            itt: 0x11223344,
            expected_data_length: 512,
            cmd_sn: 7,
            exp_stat_sn: 9,
            cdb: [0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
        });
        let b = h.encode(0, 0);
        assert_eq!(b[0], 0x01);
        assert_eq!(b[1], 0xc1);
        assert_eq!(&b[4..8], &[0, 0, 0, 0]);
        assert_eq!(&b[8..10], &[0, 1]);
        assert_eq!(&b[16..20], &[0x11, 0x22, 0x33, 0x44]);
        assert_eq!(&b[20..24], &[0, 0, 2, 0]);
        assert_eq!(b[32], 0x28);
        assert_eq!(Header::decode(&b), h);
    }

    #[test]
    fn login_request_bytes() {
        let h = Header::LoginRequest(LoginRequest {
            transit: true,
            continue_: false,
            csg: Stage::OPERATIONAL_NEGOTIATION,
            nsg: Stage::FULL_FEATURE_PHASE,
            version_max: 0,
            version_min: 0,
            isid: [0x80, 0, 0, 0x02, 0x3d, 0],
            tsih: 0,
            itt: 0,
            cid: 0,
            cmd_sn: 1,
            exp_stat_sn: 0,
        });
        let b = h.encode(0, 300);
        assert_eq!(b[0], 0x43);
        assert_eq!(b[1], 0x87);
        assert_eq!(&b[5..8], &[0, 1, 44]);
        assert_eq!(bhs_data_len(&b), 300);
        assert_eq!(Header::decode(&b), h);
    }

    #[test]
    fn data_in_with_status() {
        let h = Header::DataIn(DataIn {
            final_: true,
            has_status: true,
            underflow: true,
            status: 0,
            itt: 5,
            ttt: RESERVED_TAG,
            residual: 12,
            ..Default::default()
        });
        let b = h.encode(0, 4);
        assert_eq!(b[0], 0x25);
        assert_eq!(b[1], 0x83);
        assert_eq!(&b[44..48], &[0, 0, 0, 12]);
        assert_eq!(Header::decode(&b), h);
    }

    #[test]
    fn unknown_opcode_is_kept_raw() {
        let mut raw = [0u8; BHS_LEN];
        raw[0] = 0x10; // SNACK: not supported at ERL 0
        raw[16] = 0xab;
        match Header::decode(&raw) {
            Header::Unknown { opcode, raw: r } => {
                assert_eq!(opcode, Opcode::SNACK_REQUEST);
                assert_eq!(r[16], 0xab);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    proptest! {
        /// decode is total, and decode(encode(decode(x))) == decode(x).
        #[test]
        fn decode_encode_roundtrip(bytes in proptest::collection::vec(any::<u8>(), BHS_LEN)) {
            let mut raw = [0u8; BHS_LEN];
            raw.copy_from_slice(&bytes);
            let h = Header::decode(&raw);
            let again = Header::decode(&h.encode(bhs_ahs_len(&raw), bhs_data_len(&raw)));
            prop_assert_eq!(h, again);
        }
    }
}
