//! NVMe/TCP PDUs (NVMe/TCP Transport Specification 1.0 §3.6, Linux
//! `include/linux/nvme-tcp.h`): the 8-byte common header, the PSH of every
//! PDU type, header and data digests (CRC32C, little-endian) and the PDU data
//! offset padding (CPDA / HPDA).
//!
//! Decoding is incremental and bounded: [`decode`] looks at what has arrived,
//! returns `Ok(None)` until a whole PDU is there, validates the common header
//! as soon as its 8 bytes are in (so a `plen` above the limit is refused
//! *before* the payload is buffered) and the whole PDU header (and its digest)
//! before waiting for the data. Data is split off the buffer without copying.
//!
//! Encoding ([`encode`]) gives a small header buffer, the data `Bytes` as it
//! was passed and a tail with the data digest, so data is never copied.

use super::command::{Cqe, Sqe, CQE_LEN, SQE_LEN};
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// Length of the common header (CH).
pub const CH_LEN: usize = 8;
/// Length of a CRC32C digest on the wire.
pub const DIGEST_LEN: usize = 4;
/// Header length of ICReq and ICResp.
pub const IC_HLEN: usize = 128;
/// Header length of H2CTermReq and C2HTermReq.
pub const TERM_HLEN: usize = 24;
/// Header length of a command capsule (CH + SQE).
pub const CMD_HLEN: usize = CH_LEN + SQE_LEN;
/// Header length of a response capsule (CH + CQE).
pub const RSP_HLEN: usize = CH_LEN + CQE_LEN;
/// Header length of H2CData and C2HData.
pub const DATA_HLEN: usize = 24;
/// Header length of R2T.
pub const R2T_HLEN: usize = 24;
/// Largest TermReq PDU (header + the offending PDU header, at most 128
/// bytes): Linux `NVME_TCP_MAX_C2HTERM_PLEN`.
pub const MAX_TERM_PLEN: usize = 152;
/// Largest data carried by a TermReq.
pub const MAX_TERM_DATA: usize = MAX_TERM_PLEN - TERM_HLEN;
/// In-capsule data size of the admin queue (Linux `NVME_TCP_ADMIN_CCSZ`).
pub const ADMIN_IN_CAPSULE_DATA: u32 = 8192;
/// Smallest MAXH2CDATA the spec allows (Linux `NVME_TCP_MIN_MAXH2CDATA`).
pub const MIN_MAXH2CDATA: u32 = 4096;
/// Largest PDU data alignment value (CPDA / HPDA are 0..=31, 0's based
/// dwords).
pub const MAX_PDA: u8 = 31;

fn le16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}
fn le32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

/// PDU type (CH byte 0).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PduType(pub u8);

impl PduType {
    /// Initialize Connection Request (host → controller).
    pub const IC_REQ: Self = Self(0x00);
    /// Initialize Connection Response (controller → host).
    pub const IC_RESP: Self = Self(0x01);
    /// Host to controller termination request.
    pub const H2C_TERM_REQ: Self = Self(0x02);
    /// Controller to host termination request.
    pub const C2H_TERM_REQ: Self = Self(0x03);
    /// Command capsule.
    pub const CAPSULE_CMD: Self = Self(0x04);
    /// Response capsule.
    pub const CAPSULE_RESP: Self = Self(0x05);
    /// Host to controller data.
    pub const H2C_DATA: Self = Self(0x06);
    /// Controller to host data.
    pub const C2H_DATA: Self = Self(0x07);
    /// Ready to transfer.
    pub const R2T: Self = Self(0x09);

    /// The fixed header length (`hlen`) of a known type.
    pub fn hlen(self) -> Option<usize> {
        Some(match self {
            Self::IC_REQ | Self::IC_RESP => IC_HLEN,
            Self::H2C_TERM_REQ | Self::C2H_TERM_REQ => TERM_HLEN,
            Self::CAPSULE_CMD => CMD_HLEN,
            Self::CAPSULE_RESP => RSP_HLEN,
            Self::H2C_DATA | Self::C2H_DATA => DATA_HLEN,
            Self::R2T => R2T_HLEN,
            _ => return None,
        })
    }
    /// Whether this type carries a header digest when one is negotiated
    /// (everything but ICReq, ICResp and the TermReqs).
    pub fn digestible(self) -> bool {
        matches!(self, Self::CAPSULE_CMD | Self::CAPSULE_RESP | Self::H2C_DATA | Self::C2H_DATA | Self::R2T)
    }
    /// Whether this type may carry data subject to PDO and the data digest.
    pub fn carries_data(self) -> bool {
        matches!(self, Self::CAPSULE_CMD | Self::H2C_DATA | Self::C2H_DATA)
    }
    /// Whether the receiver in `role` may receive this type.
    pub fn received_by(self, role: Role) -> bool {
        match role {
            Role::Target => matches!(self, Self::IC_REQ | Self::H2C_TERM_REQ | Self::CAPSULE_CMD | Self::H2C_DATA),
            Role::Host => {
                matches!(self, Self::IC_RESP | Self::C2H_TERM_REQ | Self::CAPSULE_RESP | Self::C2H_DATA | Self::R2T)
            }
        }
    }
}

impl fmt::Debug for PduType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = match *self {
            Self::IC_REQ => "ICReq",
            Self::IC_RESP => "ICResp",
            Self::H2C_TERM_REQ => "H2CTermReq",
            Self::C2H_TERM_REQ => "C2HTermReq",
            Self::CAPSULE_CMD => "CapsuleCmd",
            Self::CAPSULE_RESP => "CapsuleResp",
            Self::H2C_DATA => "H2CData",
            Self::C2H_DATA => "C2HData",
            Self::R2T => "R2T",
            _ => return write!(f, "PduType({:#04x})", self.0),
        };
        f.write_str(n)
    }
}

/// CH flags (byte 1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PduFlags(pub u8);

impl PduFlags {
    /// A header digest follows the PDU header.
    pub const HDGST: Self = Self(0x01);
    /// A data digest follows the PDU data.
    pub const DDGST: Self = Self(0x02);
    /// Last data PDU of a transfer (H2CData, C2HData).
    pub const DATA_LAST: Self = Self(0x04);
    /// C2HData only: the command succeeded, no CapsuleResp follows.
    pub const DATA_SUCCESS: Self = Self(0x08);

    /// Whether all bits of `other` are set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    /// `self` with the bits of `other` set when `on`.
    pub fn with(self, other: Self, on: bool) -> Self {
        if on {
            Self(self.0 | other.0)
        } else {
            Self(self.0 & !other.0)
        }
    }
}

impl fmt::Debug for PduFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PduFlags({:#04x})", self.0)
    }
}

/// Fatal Error Status of a H2CTermReq / C2HTermReq (Transport 1.0, Linux
/// `enum nvme_tcp_fatal_error_status`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TermReqFes(pub u16);

impl TermReqFes {
    /// Invalid PDU Header Field; FEI is the byte offset of the field.
    pub const INVALID_HEADER_FIELD: Self = Self(0x01);
    /// PDU Sequence Error.
    pub const PDU_SEQUENCE_ERROR: Self = Self(0x02);
    /// Header Digest Error.
    pub const HEADER_DIGEST_ERROR: Self = Self(0x03);
    /// Data Transfer Out of Range.
    pub const DATA_OUT_OF_RANGE: Self = Self(0x04);
    /// Data Transfer Limit Exceeded (formerly "R2T Limit Exceeded").
    pub const DATA_LIMIT_EXCEEDED: Self = Self(0x05);
    /// Unsupported Parameter; FEI is the byte offset of the parameter.
    pub const UNSUPPORTED_PARAMETER: Self = Self(0x06);
}

impl fmt::Debug for TermReqFes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = match *self {
            Self::INVALID_HEADER_FIELD => "INVALID_HEADER_FIELD",
            Self::PDU_SEQUENCE_ERROR => "PDU_SEQUENCE_ERROR",
            Self::HEADER_DIGEST_ERROR => "HEADER_DIGEST_ERROR",
            Self::DATA_OUT_OF_RANGE => "DATA_OUT_OF_RANGE",
            Self::DATA_LIMIT_EXCEEDED => "DATA_LIMIT_EXCEEDED",
            Self::UNSUPPORTED_PARAMETER => "UNSUPPORTED_PARAMETER",
            _ => return write!(f, "TermReqFes({:#06x})", self.0),
        };
        f.write_str(n)
    }
}

/// Byte offsets of header fields, used as FEI values.
pub mod field {
    /// CH `flags`.
    pub const FLAGS: u32 = 1;
    /// CH `hlen`.
    pub const HLEN: u32 = 2;
    /// CH `pdo`.
    pub const PDO: u32 = 3;
    /// CH `plen`.
    pub const PLEN: u32 = 4;
    /// ICReq `pfv`.
    pub const PFV: u32 = 8;
    /// ICReq `hpda`.
    pub const HPDA: u32 = 10;
    /// ICReq `dgst`.
    pub const DGST: u32 = 11;
    /// ICReq `maxr2t`.
    pub const MAXR2T: u32 = 12;
    /// Data PDU / R2T `cccid`.
    pub const CCCID: u32 = 8;
    /// Data PDU / R2T `ttag`.
    pub const TTAG: u32 = 10;
    /// Data PDU `datao`, R2T `r2to`.
    pub const DATAO: u32 = 12;
    /// Data PDU `datal`, R2T `r2tl`.
    pub const DATAL: u32 = 16;
}

/// The 8-byte common header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommonHeader {
    /// PDU type.
    pub pdu_type: PduType,
    /// Flags.
    pub flags: PduFlags,
    /// PDU header length.
    pub hlen: u8,
    /// PDU data offset (0 when there is no data).
    pub pdo: u8,
    /// Total PDU length.
    pub plen: u32,
}

impl CommonHeader {
    /// From the first 8 bytes of `b`; `None` when shorter.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b = b.get(..CH_LEN)?;
        Some(Self { pdu_type: PduType(b[0]), flags: PduFlags(b[1]), hlen: b[2], pdo: b[3], plen: le32(b, 4) })
    }
    /// The 8 bytes.
    pub fn encode(&self) -> [u8; CH_LEN] {
        let p = self.plen.to_le_bytes();
        [self.pdu_type.0, self.flags.0, self.hlen, self.pdo, p[0], p[1], p[2], p[3]]
    }
}

/// Which end of the connection a codec works for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The controller (receives ICReq, H2CTermReq, CapsuleCmd, H2CData).
    Target,
    /// The host (receives ICResp, C2HTermReq, CapsuleResp, C2HData, R2T).
    Host,
}

/// ICReq parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcReq {
    /// PDU format version (0 = 1.0).
    pub pfv: u16,
    /// Host PDU data alignment (0's based dwords) for controller → host data.
    pub hpda: u8,
    /// Header digest requested.
    pub hdgst: bool,
    /// Data digest requested.
    pub ddgst: bool,
    /// Maximum outstanding R2Ts per command, 0's based.
    pub maxr2t: u32,
}

/// ICResp parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcResp {
    /// PDU format version (0 = 1.0).
    pub pfv: u16,
    /// Controller PDU data alignment (0's based dwords) for host → controller
    /// data.
    pub cpda: u8,
    /// Header digest enabled.
    pub hdgst: bool,
    /// Data digest enabled.
    pub ddgst: bool,
    /// Largest H2CData data length the controller accepts.
    pub maxh2cdata: u32,
}

/// An H2CData or C2HData PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPdu {
    /// Command capsule CID.
    pub cid: u16,
    /// Transfer tag (H2CData: from the R2T; C2HData: reserved, 0).
    pub ttag: u16,
    /// Offset of this data in the command's data.
    pub offset: u32,
    /// The data.
    pub data: Bytes,
    /// DATA_LAST flag.
    pub last: bool,
    /// DATA_SUCCESS flag (C2HData only).
    pub success: bool,
}

/// An R2T PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct R2t {
    /// Command capsule CID.
    pub cid: u16,
    /// Transfer tag the H2CData PDUs must carry.
    pub ttag: u16,
    /// Offset of the requested data.
    pub offset: u32,
    /// Length of the requested data.
    pub len: u32,
}

/// An H2CTermReq or C2HTermReq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermReq {
    /// Fatal error status.
    pub fes: TermReqFes,
    /// Fatal error information (field offset for FES 1 and 6).
    pub fei: u32,
    /// The header of the PDU in error (at most [`MAX_TERM_DATA`] bytes).
    pub data: Bytes,
}

/// A typed PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pdu {
    /// ICReq.
    IcReq(IcReq),
    /// ICResp.
    IcResp(IcResp),
    /// H2CTermReq.
    H2CTermReq(TermReq),
    /// C2HTermReq.
    C2HTermReq(TermReq),
    /// Command capsule with its in-capsule data (possibly empty).
    CapsuleCmd {
        /// The submission queue entry.
        sqe: Sqe,
        /// In-capsule data.
        data: Bytes,
    },
    /// Response capsule.
    CapsuleResp {
        /// The completion queue entry.
        cqe: Cqe,
    },
    /// H2CData.
    H2CData(DataPdu),
    /// C2HData.
    C2HData(DataPdu),
    /// R2T.
    R2T(R2t),
}

impl Pdu {
    /// The PDU type.
    pub fn pdu_type(&self) -> PduType {
        match self {
            Self::IcReq(_) => PduType::IC_REQ,
            Self::IcResp(_) => PduType::IC_RESP,
            Self::H2CTermReq(_) => PduType::H2C_TERM_REQ,
            Self::C2HTermReq(_) => PduType::C2H_TERM_REQ,
            Self::CapsuleCmd { .. } => PduType::CAPSULE_CMD,
            Self::CapsuleResp { .. } => PduType::CAPSULE_RESP,
            Self::H2CData(_) => PduType::H2C_DATA,
            Self::C2HData(_) => PduType::C2H_DATA,
            Self::R2T(_) => PduType::R2T,
        }
    }
}

/// What the receiver negotiated: digests, the data alignment it asked the
/// peer for, and the largest data it accepts per PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxParams {
    /// Which end is receiving (PDU types of the other direction are refused).
    pub role: Role,
    /// Header digests negotiated.
    pub hdgst: bool,
    /// Data digests negotiated.
    pub ddgst: bool,
    /// Data alignment the peer must use (our CPDA as a target, our HPDA as a
    /// host), 0's based dwords.
    pub pda: u8,
    /// Largest in-capsule data of a CapsuleCmd.
    pub max_capsule_data: u32,
    /// Largest data of an H2CData / C2HData PDU.
    pub max_data: u32,
}

impl RxParams {
    /// Before the connection is initialized: no digests, no data accepted.
    pub fn initial(role: Role) -> Self {
        Self { role, hdgst: false, ddgst: false, pda: 0, max_capsule_data: 0, max_data: 0 }
    }
}

/// What the sender negotiated: digests and the data alignment the peer asked
/// for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxParams {
    /// Header digests negotiated.
    pub hdgst: bool,
    /// Data digests negotiated.
    pub ddgst: bool,
    /// Data alignment the peer asked for (its HPDA / our CPDA), 0's based
    /// dwords.
    pub pda: u8,
}

/// Where the data of a PDU with header length `hlen` starts: after the header,
/// its digest and the padding to a multiple of `(pda + 1) * 4` bytes when
/// `pda` is not 0.
pub fn data_offset(hlen: usize, hdgst: bool, pda: u8) -> usize {
    let base = hlen + if hdgst { DIGEST_LEN } else { 0 };
    if pda == 0 {
        return base;
    }
    let align = (usize::from(pda.min(MAX_PDA)) + 1) * 4;
    base.div_ceil(align) * align
}

/// Why [`decode`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A fatal transport error: answer a TermReq with `fes`, `fei` and
    /// `header` (the PDU header in error, as much as had arrived, at most
    /// [`MAX_TERM_DATA`] bytes), then close. The buffer is left as it was.
    #[error("fatal transport error {fes:?}, field {fei}")]
    Fatal {
        /// Fatal error status.
        fes: TermReqFes,
        /// Fatal error information.
        fei: u32,
        /// The offending header bytes.
        header: Bytes,
    },
    /// The PDU (consumed from the buffer, returned here) had a wrong data
    /// digest. Not fatal: the command it belongs to completes with Transient
    /// Transport Error (Transport 1.0 §7.4.6.2 / "Data Digest Error").
    #[error("data digest mismatch")]
    DataDigest(Box<Pdu>),
}

/// Where the parts of a PDU are, from a validated header.
#[derive(Debug, Clone, Copy)]
struct Layout {
    hlen: usize,
    hdgst: bool,
    /// Data start and length (length 0: no data).
    pdo: usize,
    data_len: usize,
    ddgst: bool,
    plen: usize,
}

fn fatal(buf: &[u8], hlen: usize, fes: TermReqFes, fei: u32) -> DecodeError {
    let n = buf.len().min(hlen.max(CH_LEN)).min(MAX_TERM_DATA);
    DecodeError::Fatal { fes, fei, header: Bytes::copy_from_slice(&buf[..n]) }
}

fn invalid(fei: u32) -> (TermReqFes, u32) {
    (TermReqFes::INVALID_HEADER_FIELD, fei)
}

/// Validates the common header against the receiver's parameters.
fn layout(ch: &CommonHeader, p: &RxParams) -> Result<Layout, (TermReqFes, u32)> {
    let t = ch.pdu_type;
    let Some(hlen) = t.hlen().filter(|_| t.received_by(p.role)) else { return Err(invalid(0)) };
    if usize::from(ch.hlen) != hlen {
        return Err(invalid(field::HLEN));
    }
    let plen = usize::try_from(ch.plen).map_err(|_| invalid(field::PLEN))?;
    match t {
        PduType::IC_REQ | PduType::IC_RESP => {
            if ch.flags.0 != 0 {
                return Err(invalid(field::FLAGS));
            }
            if ch.pdo != 0 {
                return Err(invalid(field::PDO));
            }
            if plen != hlen {
                return Err(invalid(field::PLEN));
            }
            return Ok(Layout { hlen, hdgst: false, pdo: hlen, data_len: 0, ddgst: false, plen });
        }
        PduType::H2C_TERM_REQ | PduType::C2H_TERM_REQ => {
            // Flags and PDO are reserved; no digests on TermReqs.
            if !(TERM_HLEN..=MAX_TERM_PLEN).contains(&plen) {
                return Err(invalid(field::PLEN));
            }
            return Ok(Layout { hlen, hdgst: false, pdo: hlen, data_len: plen - hlen, ddgst: false, plen });
        }
        _ => {}
    }
    if ch.flags.contains(PduFlags::HDGST) != p.hdgst {
        return Err(invalid(field::FLAGS));
    }
    let hd = if p.hdgst { DIGEST_LEN } else { 0 };
    let bare = hlen + hd;
    if plen == bare {
        // No data: PDO is 0 (or, tolerated, where data would start) and no
        // data digest. A data PDU without data is refused (as Linux nvmet).
        if t == PduType::H2C_DATA || t == PduType::C2H_DATA {
            return Err(invalid(field::DATAL));
        }
        if ch.flags.contains(PduFlags::DDGST) {
            return Err(invalid(field::FLAGS));
        }
        if t.carries_data() && ch.pdo != 0 && usize::from(ch.pdo) != data_offset(hlen, p.hdgst, p.pda) {
            return Err(invalid(field::PDO));
        }
        return Ok(Layout { hlen, hdgst: p.hdgst, pdo: bare, data_len: 0, ddgst: false, plen });
    }
    if plen < bare || !t.carries_data() {
        return Err(invalid(field::PLEN));
    }
    let pdo = data_offset(hlen, p.hdgst, p.pda);
    if usize::from(ch.pdo) != pdo {
        return Err(invalid(field::PDO));
    }
    if ch.flags.contains(PduFlags::DDGST) != p.ddgst {
        return Err(invalid(field::FLAGS));
    }
    let dd = if p.ddgst { DIGEST_LEN } else { 0 };
    let data_len = match plen.checked_sub(pdo + dd) {
        Some(n) if n > 0 => n,
        _ => return Err(invalid(field::PLEN)),
    };
    let limit = if t == PduType::CAPSULE_CMD { p.max_capsule_data } else { p.max_data };
    if u64::try_from(data_len).unwrap_or(u64::MAX) > u64::from(limit) {
        return Err((TermReqFes::DATA_LIMIT_EXCEEDED, 0));
    }
    Ok(Layout { hlen, hdgst: p.hdgst, pdo, data_len, ddgst: p.ddgst, plen })
}

/// The type-specific header fields, parsed once the whole header is in.
enum Head {
    IcReq(IcReq),
    IcResp(IcResp),
    Term(TermReqFes, u32),
    Cmd(Sqe),
    Resp(Cqe),
    Data { cid: u16, ttag: u16, offset: u32, last: bool, success: bool },
    R2t(R2t),
}

fn parse_head(ch: &CommonHeader, l: &Layout, h: &[u8]) -> Result<Head, (TermReqFes, u32)> {
    Ok(match ch.pdu_type {
        PduType::IC_REQ => Head::IcReq(IcReq {
            pfv: le16(h, 8),
            hpda: h.get(10).copied().unwrap_or(0),
            hdgst: h.get(11).is_some_and(|d| d & 1 != 0),
            ddgst: h.get(11).is_some_and(|d| d & 2 != 0),
            maxr2t: le32(h, 12),
        }),
        PduType::IC_RESP => Head::IcResp(IcResp {
            pfv: le16(h, 8),
            cpda: h.get(10).copied().unwrap_or(0),
            hdgst: h.get(11).is_some_and(|d| d & 1 != 0),
            ddgst: h.get(11).is_some_and(|d| d & 2 != 0),
            maxh2cdata: le32(h, 12),
        }),
        PduType::H2C_TERM_REQ | PduType::C2H_TERM_REQ => Head::Term(TermReqFes(le16(h, 8)), le32(h, 10)),
        PduType::CAPSULE_CMD => Head::Cmd(Sqe::from_slice(h.get(CH_LEN..).unwrap_or(&[])).ok_or(invalid(0))?),
        PduType::CAPSULE_RESP => Head::Resp(Cqe::decode(h.get(CH_LEN..).unwrap_or(&[])).ok_or(invalid(0))?),
        PduType::H2C_DATA | PduType::C2H_DATA => {
            let datal = le32(h, 16);
            if u64::from(datal) != l.data_len as u64 {
                return Err(invalid(field::DATAL));
            }
            let last = ch.flags.contains(PduFlags::DATA_LAST);
            let success = ch.flags.contains(PduFlags::DATA_SUCCESS);
            // SUCCESS only on a C2HData that is also LAST.
            if success && (ch.pdu_type == PduType::H2C_DATA || !last) {
                return Err(invalid(field::FLAGS));
            }
            Head::Data { cid: le16(h, 8), ttag: le16(h, 10), offset: le32(h, 12), last, success }
        }
        PduType::R2T => Head::R2t(R2t { cid: le16(h, 8), ttag: le16(h, 10), offset: le32(h, 12), len: le32(h, 16) }),
        _ => return Err(invalid(0)),
    })
}

/// Decodes one PDU from the front of `buf`.
///
/// `Ok(None)`: not all of it is there yet (nothing consumed). `Ok(Some)`: the
/// PDU, its bytes split off `buf` (data not copied). Errors: see
/// [`DecodeError`]; a fatal error leaves `buf` untouched.
pub fn decode(buf: &mut BytesMut, p: &RxParams) -> Result<Option<Pdu>, DecodeError> {
    let Some(ch) = CommonHeader::parse(buf) else { return Ok(None) };
    let hlen_hint = ch.pdu_type.hlen().unwrap_or(CH_LEN);
    let l = layout(&ch, p).map_err(|(fes, fei)| fatal(buf, hlen_hint, fes, fei))?;
    let hd = if l.hdgst { DIGEST_LEN } else { 0 };
    if buf.len() < l.hlen + hd {
        return Ok(None);
    }
    if l.hdgst {
        let want = crc32c::crc32c(&buf[..l.hlen]);
        if le32(buf, l.hlen) != want {
            return Err(fatal(buf, l.hlen, TermReqFes::HEADER_DIGEST_ERROR, 0));
        }
    }
    let head = parse_head(&ch, &l, &buf[..l.hlen]).map_err(|(fes, fei)| fatal(buf, l.hlen, fes, fei))?;
    if buf.len() < l.plen {
        return Ok(None);
    }
    let whole = buf.split_to(l.plen).freeze();
    let data = whole.slice(l.pdo..l.pdo + l.data_len);
    let digest_ok = !l.ddgst || le32(&whole, l.pdo + l.data_len) == crc32c::crc32c(&data);
    let pdu = match head {
        Head::IcReq(r) => Pdu::IcReq(r),
        Head::IcResp(r) => Pdu::IcResp(r),
        Head::Term(fes, fei) => {
            let t = TermReq { fes, fei, data };
            if ch.pdu_type == PduType::H2C_TERM_REQ {
                Pdu::H2CTermReq(t)
            } else {
                Pdu::C2HTermReq(t)
            }
        }
        Head::Cmd(sqe) => Pdu::CapsuleCmd { sqe, data },
        Head::Resp(cqe) => Pdu::CapsuleResp { cqe },
        Head::Data { cid, ttag, offset, last, success } => {
            let d = DataPdu { cid, ttag, offset, data, last, success };
            if ch.pdu_type == PduType::H2C_DATA {
                Pdu::H2CData(d)
            } else {
                Pdu::C2HData(d)
            }
        }
        Head::R2t(r) => Pdu::R2T(r),
    };
    if digest_ok {
        Ok(Some(pdu))
    } else {
        Err(DecodeError::DataDigest(Box::new(pdu)))
    }
}

/// The length of the PDU at the front of `buf` once its common header is
/// there (not validated): for timers and diagnostics.
pub fn peek_header(buf: &[u8]) -> Option<CommonHeader> {
    CommonHeader::parse(buf)
}

/// A PDU ready to send: header (with header digest and padding), the data as
/// given (not copied) and the data digest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EncodedPdu {
    /// Common header, PSH, header digest, padding.
    pub head: Bytes,
    /// Data.
    pub data: Bytes,
    /// Data digest (or empty).
    pub tail: Bytes,
}

impl EncodedPdu {
    /// Total bytes on the wire.
    pub fn len(&self) -> usize {
        self.head.len() + self.data.len() + self.tail.len()
    }
    /// True when there is nothing to send (never for a real PDU).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The three parts concatenated (tests, small PDUs).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        v.extend_from_slice(&self.head);
        v.extend_from_slice(&self.data);
        v.extend_from_slice(&self.tail);
        v
    }
}

/// Encodes `pdu` with the sender's negotiated parameters. TermReq data is cut
/// to [`MAX_TERM_DATA`]; ICReq, ICResp and TermReqs never carry digests.
pub fn encode(pdu: Pdu, p: &TxParams) -> EncodedPdu {
    let t = pdu.pdu_type();
    let hlen = t.hlen().unwrap_or(CH_LEN);
    let mut psh = [0u8; IC_HLEN];
    let mut flags = PduFlags::default();
    let mut data = Bytes::new();
    match pdu {
        Pdu::IcReq(r) => {
            psh[8..10].copy_from_slice(&r.pfv.to_le_bytes());
            psh[10] = r.hpda;
            psh[11] = u8::from(r.hdgst) | (u8::from(r.ddgst) << 1);
            psh[12..16].copy_from_slice(&r.maxr2t.to_le_bytes());
        }
        Pdu::IcResp(r) => {
            psh[8..10].copy_from_slice(&r.pfv.to_le_bytes());
            psh[10] = r.cpda;
            psh[11] = u8::from(r.hdgst) | (u8::from(r.ddgst) << 1);
            psh[12..16].copy_from_slice(&r.maxh2cdata.to_le_bytes());
        }
        Pdu::H2CTermReq(r) | Pdu::C2HTermReq(r) => {
            psh[8..10].copy_from_slice(&r.fes.0.to_le_bytes());
            psh[10..14].copy_from_slice(&r.fei.to_le_bytes());
            data = r.data.slice(..r.data.len().min(MAX_TERM_DATA));
        }
        Pdu::CapsuleCmd { sqe, data: d } => {
            psh[8..CMD_HLEN].copy_from_slice(&sqe.0);
            data = d;
        }
        Pdu::CapsuleResp { cqe } => psh[8..RSP_HLEN].copy_from_slice(&cqe.encode()),
        Pdu::H2CData(d) | Pdu::C2HData(d) => {
            psh[8..10].copy_from_slice(&d.cid.to_le_bytes());
            psh[10..12].copy_from_slice(&d.ttag.to_le_bytes());
            psh[12..16].copy_from_slice(&d.offset.to_le_bytes());
            let datal = u32::try_from(d.data.len()).unwrap_or(u32::MAX);
            psh[16..20].copy_from_slice(&datal.to_le_bytes());
            flags = flags.with(PduFlags::DATA_LAST, d.last).with(PduFlags::DATA_SUCCESS, d.success);
            data = d.data;
        }
        Pdu::R2T(r) => {
            psh[8..10].copy_from_slice(&r.cid.to_le_bytes());
            psh[10..12].copy_from_slice(&r.ttag.to_le_bytes());
            psh[12..16].copy_from_slice(&r.offset.to_le_bytes());
            psh[16..20].copy_from_slice(&r.len.to_le_bytes());
        }
    }
    let digests = t.digestible();
    let hdgst = digests && p.hdgst;
    let ddgst = digests && p.ddgst && !data.is_empty();
    flags = flags.with(PduFlags::HDGST, hdgst).with(PduFlags::DDGST, ddgst);
    let hd = if hdgst { DIGEST_LEN } else { 0 };
    let (pdo, head_len) = if data.is_empty() {
        (0, hlen + hd)
    } else if digests {
        let o = data_offset(hlen, hdgst, p.pda);
        (o, o)
    } else {
        // TermReq: data right after the header, PDO reserved.
        (0, hlen)
    };
    let dd = if ddgst { DIGEST_LEN } else { 0 };
    let plen = head_len + data.len() + dd;
    let ch = CommonHeader {
        pdu_type: t,
        flags,
        hlen: u8::try_from(hlen).unwrap_or(u8::MAX),
        pdo: u8::try_from(pdo).unwrap_or(u8::MAX),
        plen: u32::try_from(plen).unwrap_or(u32::MAX),
    };
    psh[..CH_LEN].copy_from_slice(&ch.encode());
    let mut head = BytesMut::with_capacity(head_len);
    head.extend_from_slice(&psh[..hlen]);
    if hdgst {
        head.put_u32_le(crc32c::crc32c(&psh[..hlen]));
    }
    head.resize(head_len, 0);
    let tail = if ddgst { Bytes::copy_from_slice(&crc32c::crc32c(&data).to_le_bytes()) } else { Bytes::new() };
    EncodedPdu { head: head.freeze(), data, tail }
}

#[cfg(test)]
#[path = "pdu_tests.rs"]
mod tests;
