//! Fabrics Connect (command fields and the 1024-byte connect data), Property
//! Get / Property Set fields and the controller properties' offsets, and
//! Disconnect (NVMe over Fabrics 1.1 §3.3, Base 2.0 §3.1.4 / §6).
//!
//! Layouts follow Linux `struct nvmf_connect_command`, `struct
//! nvmf_connect_data` and `struct nvmf_property_{get,set}_command`.

use std::fmt;

use super::command::{FabricsType, Sgl, SglType, Sqe};
use super::field::{bytes, cstr, le16, le32, need, put, put16, put_cstr, LayoutError};

/// Size of the Connect command's data.
pub const CONNECT_DATA_LEN: usize = 1024;
/// Size of an NQN field (NUL-terminated, at most 223 bytes of text by spec).
pub const NQN_FIELD_LEN: usize = 256;
/// The controller ID a host asks for when it wants a new dynamic controller
/// (admin queue Connect), and that discovery log entries report.
pub const CNTLID_DYNAMIC: u16 = 0xFFFF;
/// The well-known discovery subsystem NQN.
pub const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";

/// Byte offsets in the Connect SQE (for the IPO of a Connect error).
pub mod sqe_offset {
    /// RECFMT (u16).
    pub const RECFMT: u16 = 40;
    /// QID (u16).
    pub const QID: u16 = 42;
    /// SQSIZE (u16, 0's based).
    pub const SQSIZE: u16 = 44;
    /// CATTR (u8).
    pub const CATTR: u16 = 46;
    /// KATO (u32, milliseconds).
    pub const KATO: u16 = 48;
}

/// Byte offsets in the connect data (for the IPO of a Connect error).
pub mod data_offset {
    /// Host identifier (16 bytes).
    pub const HOSTID: u16 = 0;
    /// Controller ID (u16).
    pub const CNTLID: u16 = 16;
    /// Subsystem NQN (256 bytes).
    pub const SUBNQN: u16 = 256;
    /// Host NQN (256 bytes).
    pub const HOSTNQN: u16 = 512;
}

/// Connect attributes (CATTR) bit: the host disables SQ flow control (SQHD
/// in completions is then reserved, NVMe/TCP `treq` bit 2).
pub const CATTR_DISABLE_SQFLOW: u8 = 1 << 2;

/// The Connect command's own fields (the SQE part).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectCommand {
    /// Command identifier.
    pub cid: u16,
    /// Record format (0 is the only one defined).
    pub recfmt: u16,
    /// Queue ID: 0 = admin queue.
    pub qid: u16,
    /// Submission queue size, 0's based.
    pub sqsize: u16,
    /// Connect attributes (bit 2: disable SQ flow control).
    pub cattr: u8,
    /// Keep-alive timeout, milliseconds (admin queue only; 0 = disabled).
    pub kato: u32,
}

impl ConnectCommand {
    /// Reads the fields of a Connect SQE (the caller checked the Fabrics
    /// command type).
    pub fn from_sqe(sqe: &Sqe) -> Self {
        Self {
            cid: sqe.cid(),
            recfmt: le16(&sqe.0, 40),
            qid: le16(&sqe.0, 42),
            sqsize: le16(&sqe.0, 44),
            cattr: sqe.0[46],
            kato: le32(&sqe.0, 48),
        }
    }

    /// Builds the SQE, with an in-capsule SGL of [`CONNECT_DATA_LEN`] bytes.
    pub fn to_sqe(&self) -> Sqe {
        let mut s = Sqe::fabrics(FabricsType::CONNECT, self.cid);
        s.set_sgl(Sgl { addr: 0, len: CONNECT_DATA_LEN as u32, kind: SglType::DATA_BLOCK_OFFSET });
        put16(&mut s.0, 40, self.recfmt);
        put16(&mut s.0, 42, self.qid);
        put16(&mut s.0, 44, self.sqsize);
        s.0[46] = self.cattr;
        s.0[48..52].copy_from_slice(&self.kato.to_le_bytes());
        s
    }
}

/// The 1024-byte Connect data.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ConnectData {
    /// Host identifier (a UUID for the Linux host).
    pub hostid: [u8; 16],
    /// Controller ID: FFFFh for a new dynamic controller (admin queue), the
    /// returned CNTLID for an I/O queue.
    pub cntlid: u16,
    /// Subsystem NQN.
    pub subnqn: String,
    /// Host NQN.
    pub hostnqn: String,
}

impl fmt::Debug for ConnectData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectData")
            .field("hostid", &format_args!("{:02x?}", self.hostid))
            .field("cntlid", &self.cntlid)
            .field("subnqn", &self.subnqn)
            .field("hostnqn", &self.hostnqn)
            .finish()
    }
}

/// Which NQN field of the connect data could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectDataError {
    /// Fewer than 1024 bytes.
    Truncated(LayoutError),
    /// The subsystem NQN is not text.
    BadSubnqn,
    /// The host NQN is not text.
    BadHostnqn,
}

impl ConnectData {
    /// Parses the connect data. Each NQN field is read up to its first NUL
    /// (or all 256 bytes, as nvmet forces a terminator in the last byte, the
    /// text is cut to 255 bytes).
    pub fn parse(b: &[u8]) -> Result<Self, ConnectDataError> {
        need(b, CONNECT_DATA_LEN, "connect data").map_err(ConnectDataError::Truncated)?;
        let subnqn = cstr(b, 256, NQN_FIELD_LEN - 1, "subnqn").map_err(|_| ConnectDataError::BadSubnqn)?;
        let hostnqn = cstr(b, 512, NQN_FIELD_LEN - 1, "hostnqn").map_err(|_| ConnectDataError::BadHostnqn)?;
        Ok(Self { hostid: bytes(b, 0), cntlid: le16(b, 16), subnqn, hostnqn })
    }

    /// Builds the 1024 bytes (NQNs longer than 255 bytes are cut).
    pub fn build(&self) -> Vec<u8> {
        let mut b = vec![0u8; CONNECT_DATA_LEN];
        put(&mut b, 0, &self.hostid);
        put16(&mut b, 16, self.cntlid);
        put_cstr(&mut b, 256, NQN_FIELD_LEN, &self.subnqn);
        put_cstr(&mut b, 512, NQN_FIELD_LEN, &self.hostnqn);
        b
    }
}

/// The Connect response's DW0 for a Connect Invalid Parameters (or Invalid
/// Host) status: IPO in bits 15:0, IATTR bit 16 set when the parameter is in
/// the connect data (clear: in the SQE).
pub fn invalid_parameter_result(in_data: bool, offset: u16) -> u32 {
    (u32::from(in_data) << 16) | u32::from(offset)
}

/// A controller property (register) offset for Property Get / Set.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Property(pub u32);

impl Property {
    /// Controller Capabilities (8 bytes).
    pub const CAP: Self = Self(0x00);
    /// Version (4 bytes).
    pub const VS: Self = Self(0x08);
    /// Controller Configuration (4 bytes).
    pub const CC: Self = Self(0x14);
    /// Controller Status (4 bytes).
    pub const CSTS: Self = Self(0x1C);
    /// NVM Subsystem Reset (4 bytes, optional: not supported here).
    pub const NSSR: Self = Self(0x20);
}

impl fmt::Debug for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Property({:#x})", self.0)
    }
}

/// Property Get fields (ATTRIB byte 40, OFST bytes 44..48).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropertyGet {
    /// Command identifier.
    pub cid: u16,
    /// 8-byte access (ATTRIB bits 2:0 = 1); else 4-byte (0).
    pub eight: bool,
    /// Property offset.
    pub offset: Property,
}

impl PropertyGet {
    /// Reads the fields. ATTRIB values other than 0 and 1 read as 4-byte
    /// with `eight` false — see [`PropertyGet::size_valid`].
    pub fn from_sqe(sqe: &Sqe) -> Self {
        Self { cid: sqe.cid(), eight: sqe.0[40] & 0x7 == 1, offset: Property(le32(&sqe.0, 44)) }
    }
    /// Whether ATTRIB's size field is 0 (4 bytes) or 1 (8 bytes).
    pub fn size_valid(sqe: &Sqe) -> bool {
        sqe.0[40] & 0x7 <= 1
    }
    /// Builds the SQE.
    pub fn to_sqe(&self) -> Sqe {
        let mut s = Sqe::fabrics(FabricsType::PROPERTY_GET, self.cid);
        s.0[40] = u8::from(self.eight);
        s.0[44..48].copy_from_slice(&self.offset.0.to_le_bytes());
        s
    }
}

/// Property Set fields (ATTRIB byte 40, OFST bytes 44..48, VALUE 48..56).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropertySet {
    /// Command identifier.
    pub cid: u16,
    /// 8-byte access.
    pub eight: bool,
    /// Property offset.
    pub offset: Property,
    /// Value (only the low 32 bits for a 4-byte access).
    pub value: u64,
}

impl PropertySet {
    /// Reads the fields.
    pub fn from_sqe(sqe: &Sqe) -> Self {
        Self {
            cid: sqe.cid(),
            eight: sqe.0[40] & 0x7 == 1,
            offset: Property(le32(&sqe.0, 44)),
            value: super::field::le64(&sqe.0, 48),
        }
    }
    /// Builds the SQE.
    pub fn to_sqe(&self) -> Sqe {
        let mut s = Sqe::fabrics(FabricsType::PROPERTY_SET, self.cid);
        s.0[40] = u8::from(self.eight);
        s.0[44..48].copy_from_slice(&self.offset.0.to_le_bytes());
        s.0[48..56].copy_from_slice(&self.value.to_le_bytes());
        s
    }
}

/// Disconnect fields (RECFMT bytes 40..42): sent on an I/O queue to tear it
/// down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnect {
    /// Command identifier.
    pub cid: u16,
    /// Record format (must be 0).
    pub recfmt: u16,
}

impl Disconnect {
    /// Reads the fields.
    pub fn from_sqe(sqe: &Sqe) -> Self {
        Self { cid: sqe.cid(), recfmt: le16(&sqe.0, 40) }
    }
    /// Builds the SQE.
    pub fn to_sqe(&self) -> Sqe {
        let mut s = Sqe::fabrics(FabricsType::DISCONNECT, self.cid);
        put16(&mut s.0, 40, self.recfmt);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn connect_offsets_match_linux_structs() {
        let c = ConnectCommand { cid: 7, recfmt: 0, qid: 3, sqsize: 127, cattr: 4, kato: 5000 };
        let s = c.to_sqe();
        assert_eq!(s.0[0], 0x7F);
        assert_eq!(s.0[4], 0x01);
        assert_eq!(&s.0[42..44], &3u16.to_le_bytes());
        assert_eq!(&s.0[44..46], &127u16.to_le_bytes());
        assert_eq!(s.0[46], 4);
        assert_eq!(&s.0[48..52], &5000u32.to_le_bytes());
        assert_eq!(s.sgl().len, 1024);
        assert_eq!(ConnectCommand::from_sqe(&s), c);

        let d = ConnectData { hostid: [9; 16], cntlid: 0xFFFF, subnqn: "nqn.a".into(), hostnqn: "nqn.h".into() };
        let b = d.build();
        assert_eq!(b.len(), 1024);
        assert_eq!(&b[16..18], &[0xFF, 0xFF]);
        assert_eq!(&b[256..261], b"nqn.a");
        assert_eq!(&b[512..517], b"nqn.h");
        assert_eq!(ConnectData::parse(&b).unwrap(), d);
        assert_eq!(invalid_parameter_result(true, data_offset::HOSTNQN), 0x0001_0200);
        assert_eq!(invalid_parameter_result(false, sqe_offset::SQSIZE), 44);
    }

    #[test]
    fn unterminated_nqn_is_cut_at_255() {
        let mut b = vec![b'a'; CONNECT_DATA_LEN];
        b[16] = 0;
        let d = ConnectData::parse(&b).unwrap();
        assert_eq!(d.subnqn.len(), 255);
        b[300] = 0xFF;
        assert_eq!(ConnectData::parse(&b), Err(ConnectDataError::BadSubnqn));
    }

    #[test]
    fn property_commands() {
        let g = PropertyGet { cid: 1, eight: true, offset: Property::CAP };
        assert_eq!(PropertyGet::from_sqe(&g.to_sqe()), g);
        let s = PropertySet { cid: 2, eight: false, offset: Property::CC, value: 0x46_0001 };
        let sq = s.to_sqe();
        assert_eq!(&sq.0[44..48], &0x14u32.to_le_bytes());
        assert_eq!(PropertySet::from_sqe(&sq), s);
        let d = Disconnect { cid: 3, recfmt: 0 };
        assert_eq!(Disconnect::from_sqe(&d.to_sqe()), d);
    }

    #[test]
    fn every_prefix_is_an_error() {
        let d = ConnectData { subnqn: "x".into(), ..ConnectData::default() }.build();
        for n in 0..CONNECT_DATA_LEN {
            assert!(matches!(ConnectData::parse(&d[..n]), Err(ConnectDataError::Truncated(_))), "{n}");
        }
    }

    proptest! {
        #[test]
        fn connect_data_round_trip(hostid in any::<[u8; 16]>(), cntlid in any::<u16>(),
                                   sub in "[a-z0-9.:-]{0,255}", host in "[a-z0-9.:-]{0,255}") {
            let d = ConnectData { hostid, cntlid, subnqn: sub, hostnqn: host };
            prop_assert_eq!(ConnectData::parse(&d.build()).unwrap(), d);
        }

        #[test]
        fn property_and_connect_commands_round_trip(cid in any::<u16>(), eight in any::<bool>(), off in any::<u32>(),
                                                    value in any::<u64>(), qid in any::<u16>(), sqsize in any::<u16>(),
                                                    cattr in any::<u8>(), kato in any::<u32>()) {
            let g = PropertyGet { cid, eight, offset: Property(off) };
            prop_assert_eq!(PropertyGet::from_sqe(&g.to_sqe()), g);
            let s = PropertySet { cid, eight, offset: Property(off), value };
            prop_assert_eq!(PropertySet::from_sqe(&s.to_sqe()), s);
            let c = ConnectCommand { cid, recfmt: 0, qid, sqsize, cattr, kato };
            prop_assert_eq!(ConnectCommand::from_sqe(&c.to_sqe()), c);
        }
    }
}
