//! Identify (Base 2.0 §5.17, NVM Command Set 1.0 §4.1.5): the command fields
//! and the data structures — Identify Controller (CNS 01h), Identify
//! Namespace (CNS 00h), the active namespace ID list (CNS 02h), the
//! namespace identification descriptor list (CNS 03h) and the NVM command set
//! specific Identify Controller (CNS 06h, CSI 0). Builders for the target and
//! parsers for the host tool; offsets as in libnvme `struct nvme_id_ctrl` /
//! `struct nvme_id_ns`.

use std::fmt;

use super::command::{Opcode, Sgl, SglType, Sqe};
use super::field::{
    ascii_padded, bytes, cstr, le16, le32, le64, need, put, put16, put32, put64, put8, put_ascii_padded, put_cstr,
    u8_at, LayoutError,
};

/// Size of every Identify data structure.
pub const IDENTIFY_LEN: usize = 4096;
/// Entries in an active namespace ID list.
pub const NS_LIST_ENTRIES: usize = 1024;

/// Controller or Namespace Structure (CDW10 bits 7:0).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cns(pub u8);

impl Cns {
    /// Identify Namespace (NVM command set).
    pub const NAMESPACE: Self = Self(0x00);
    /// Identify Controller.
    pub const CONTROLLER: Self = Self(0x01);
    /// Active namespace ID list.
    pub const ACTIVE_NS_LIST: Self = Self(0x02);
    /// Namespace identification descriptor list.
    pub const NS_DESCRIPTORS: Self = Self(0x03);
    /// I/O command set specific Identify Namespace.
    pub const CSI_NAMESPACE: Self = Self(0x05);
    /// I/O command set specific Identify Controller.
    pub const CSI_CONTROLLER: Self = Self(0x06);
    /// I/O command set specific active namespace ID list.
    pub const CSI_ACTIVE_NS_LIST: Self = Self(0x07);
}

impl fmt::Debug for Cns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cns({:#04x})", self.0)
    }
}

/// Command set identifier of the NVM command set.
pub const CSI_NVM: u8 = 0;

/// The fields of an Identify command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentifyCommand {
    /// Command identifier.
    pub cid: u16,
    /// Namespace ID.
    pub nsid: u32,
    /// Which structure.
    pub cns: Cns,
    /// Controller ID (CDW10 bits 31:16).
    pub cntid: u16,
    /// Command set identifier (CDW11 bits 31:24).
    pub csi: u8,
}

impl IdentifyCommand {
    /// Reads the fields.
    pub fn from_sqe(sqe: &Sqe) -> Self {
        let c10 = sqe.cdw(10);
        Self {
            cid: sqe.cid(),
            nsid: sqe.nsid(),
            cns: Cns((c10 & 0xFF) as u8),
            cntid: (c10 >> 16) as u16,
            csi: (sqe.cdw(11) >> 24) as u8,
        }
    }
    /// Builds the SQE with a transport SGL of 4096 bytes.
    pub fn to_sqe(&self) -> Sqe {
        let mut s = Sqe::new(Opcode::IDENTIFY, self.cid, self.nsid);
        s.set_cdw(10, u32::from(self.cns.0) | (u32::from(self.cntid) << 16));
        s.set_cdw(11, u32::from(self.csi) << 24);
        s.set_sgl(Sgl { addr: 0, len: IDENTIFY_LEN as u32, kind: SglType::TRANSPORT_DATA_BLOCK });
        s
    }
}

/// Controller type (CNTRLTYPE, byte 111).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct ControllerType(pub u8);

impl ControllerType {
    /// I/O controller.
    pub const IO: Self = Self(1);
    /// Discovery controller.
    pub const DISCOVERY: Self = Self(2);
    /// Administrative controller.
    pub const ADMIN: Self = Self(3);
}

/// ONCS bits (Optional NVM Command Support, bytes 520..522).
pub mod oncs {
    /// Compare.
    pub const COMPARE: u16 = 1 << 0;
    /// Write Uncorrectable.
    pub const WRITE_UNCORRECTABLE: u16 = 1 << 1;
    /// Dataset Management.
    pub const DSM: u16 = 1 << 2;
    /// Write Zeroes.
    pub const WRITE_ZEROES: u16 = 1 << 3;
    /// Save field in Set Features / Select field in Get Features.
    pub const SAVE_SELECT: u16 = 1 << 4;
    /// Reservations.
    pub const RESERVATIONS: u16 = 1 << 5;
    /// Timestamp feature.
    pub const TIMESTAMP: u16 = 1 << 6;
    /// Verify.
    pub const VERIFY: u16 = 1 << 7;
    /// Copy.
    pub const COPY: u16 = 1 << 8;
}

/// Identify Controller, the fields this project sets or reads. Everything
/// else is zero on build and ignored on parse.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentifyController {
    /// PCI vendor ID (0).
    pub vid: u16,
    /// PCI subsystem vendor ID (0).
    pub ssvid: u16,
    /// Serial number (20 ASCII, space padded).
    pub serial: String,
    /// Model number (40 ASCII).
    pub model: String,
    /// Firmware revision (8 ASCII).
    pub firmware: String,
    /// Recommended arbitration burst.
    pub rab: u8,
    /// IEEE OUI.
    pub ieee: [u8; 3],
    /// Multi-path I/O and namespace sharing capabilities.
    pub cmic: u8,
    /// Maximum data transfer size: 2^MDTS pages of CAP.MPSMIN (0 = no limit).
    pub mdts: u8,
    /// Controller ID.
    pub cntlid: u16,
    /// Version (same encoding as the VS property).
    pub ver: u32,
    /// Optional asynchronous events supported.
    pub oaes: u32,
    /// Controller attributes.
    pub ctratt: u32,
    /// Controller type.
    pub cntrltype: ControllerType,
    /// Optional admin command support.
    pub oacs: u16,
    /// Abort command limit (0's based).
    pub acl: u8,
    /// Asynchronous event request limit (0's based).
    pub aerl: u8,
    /// Firmware updates.
    pub frmw: u8,
    /// Log page attributes.
    pub lpa: u8,
    /// Error log page entries (0's based).
    pub elpe: u8,
    /// Number of power states supported (0's based).
    pub npss: u8,
    /// Warning composite temperature threshold, kelvin (0 = not reported).
    pub wctemp: u16,
    /// Critical composite temperature threshold, kelvin.
    pub cctemp: u16,
    /// Keep alive support: granularity in 100 ms units (0 = not supported).
    pub kas: u16,
    /// Submission queue entry size (required 3:0, maximum 7:4, log2).
    pub sqes: u8,
    /// Completion queue entry size.
    pub cqes: u8,
    /// Maximum outstanding commands.
    pub maxcmd: u16,
    /// Number of namespaces (highest valid NSID).
    pub nn: u32,
    /// Optional NVM command support (see [`oncs`]).
    pub oncs: u16,
    /// Fused operation support.
    pub fuses: u16,
    /// Format NVM attributes.
    pub fna: u8,
    /// Volatile write cache: bit 0 present, bits 2:1 broadcast flush support.
    pub vwc: u8,
    /// Atomic write unit normal.
    pub awun: u16,
    /// Atomic write unit power fail.
    pub awupf: u16,
    /// Namespace write protection capabilities.
    pub nwpc: u8,
    /// Optional copy formats supported: bit n = Copy descriptor format n.
    pub ocfs: u16,
    /// SGL support.
    pub sgls: u32,
    /// Maximum number of allowed namespaces.
    pub mnan: u32,
    /// NVM subsystem NQN.
    pub subnqn: String,
    /// I/O queue command capsule supported size, 16-byte units.
    pub ioccsz: u32,
    /// I/O queue response capsule supported size, 16-byte units.
    pub iorcsz: u32,
    /// In-capsule data offset, 16-byte units.
    pub icdoff: u16,
    /// Fabrics controller attributes (bit 0: static controller model).
    pub fcatt: u8,
    /// Maximum SGL data block descriptors.
    pub msdbd: u8,
    /// Optional fabrics commands support.
    pub ofcs: u16,
}

impl IdentifyController {
    /// Builds the 4096 bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut b = vec![0u8; IDENTIFY_LEN];
        put16(&mut b, 0, self.vid);
        put16(&mut b, 2, self.ssvid);
        put_ascii_padded(&mut b, 4, 20, &self.serial);
        put_ascii_padded(&mut b, 24, 40, &self.model);
        put_ascii_padded(&mut b, 64, 8, &self.firmware);
        put8(&mut b, 72, self.rab);
        put(&mut b, 73, &self.ieee);
        put8(&mut b, 76, self.cmic);
        put8(&mut b, 77, self.mdts);
        put16(&mut b, 78, self.cntlid);
        put32(&mut b, 80, self.ver);
        put32(&mut b, 92, self.oaes);
        put32(&mut b, 96, self.ctratt);
        put8(&mut b, 111, self.cntrltype.0);
        put16(&mut b, 256, self.oacs);
        put8(&mut b, 258, self.acl);
        put8(&mut b, 259, self.aerl);
        put8(&mut b, 260, self.frmw);
        put8(&mut b, 261, self.lpa);
        put8(&mut b, 262, self.elpe);
        put8(&mut b, 263, self.npss);
        put16(&mut b, 266, self.wctemp);
        put16(&mut b, 268, self.cctemp);
        put16(&mut b, 320, self.kas);
        put8(&mut b, 512, self.sqes);
        put8(&mut b, 513, self.cqes);
        put16(&mut b, 514, self.maxcmd);
        put32(&mut b, 516, self.nn);
        put16(&mut b, 520, self.oncs);
        put16(&mut b, 522, self.fuses);
        put8(&mut b, 524, self.fna);
        put8(&mut b, 525, self.vwc);
        put16(&mut b, 526, self.awun);
        put16(&mut b, 528, self.awupf);
        put8(&mut b, 531, self.nwpc);
        put16(&mut b, 534, self.ocfs);
        put32(&mut b, 536, self.sgls);
        put32(&mut b, 540, self.mnan);
        put_cstr(&mut b, 768, 256, &self.subnqn);
        put32(&mut b, 1792, self.ioccsz);
        put32(&mut b, 1796, self.iorcsz);
        put16(&mut b, 1800, self.icdoff);
        put8(&mut b, 1802, self.fcatt);
        put8(&mut b, 1803, self.msdbd);
        put16(&mut b, 1804, self.ofcs);
        b
    }

    /// Parses the 4096 bytes.
    pub fn parse(b: &[u8]) -> Result<Self, LayoutError> {
        need(b, IDENTIFY_LEN, "identify controller")?;
        Ok(Self {
            vid: le16(b, 0),
            ssvid: le16(b, 2),
            serial: ascii_padded(b, 4, 20),
            model: ascii_padded(b, 24, 40),
            firmware: ascii_padded(b, 64, 8),
            rab: u8_at(b, 72),
            ieee: bytes(b, 73),
            cmic: u8_at(b, 76),
            mdts: u8_at(b, 77),
            cntlid: le16(b, 78),
            ver: le32(b, 80),
            oaes: le32(b, 92),
            ctratt: le32(b, 96),
            cntrltype: ControllerType(u8_at(b, 111)),
            oacs: le16(b, 256),
            acl: u8_at(b, 258),
            aerl: u8_at(b, 259),
            frmw: u8_at(b, 260),
            lpa: u8_at(b, 261),
            elpe: u8_at(b, 262),
            npss: u8_at(b, 263),
            wctemp: le16(b, 266),
            cctemp: le16(b, 268),
            kas: le16(b, 320),
            sqes: u8_at(b, 512),
            cqes: u8_at(b, 513),
            maxcmd: le16(b, 514),
            nn: le32(b, 516),
            oncs: le16(b, 520),
            fuses: le16(b, 522),
            fna: u8_at(b, 524),
            vwc: u8_at(b, 525),
            awun: le16(b, 526),
            awupf: le16(b, 528),
            nwpc: u8_at(b, 531),
            ocfs: le16(b, 534),
            sgls: le32(b, 536),
            mnan: le32(b, 540),
            subnqn: cstr(b, 768, 256, "subnqn")?,
            ioccsz: le32(b, 1792),
            iorcsz: le32(b, 1796),
            icdoff: le16(b, 1800),
            fcatt: u8_at(b, 1802),
            msdbd: u8_at(b, 1803),
            ofcs: le16(b, 1804),
        })
    }
}

/// One LBA format (4 bytes: MS, LBADS, RP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LbaFormat {
    /// Metadata size per block, bytes.
    pub ms: u16,
    /// Block size as a power of two (9 = 512, 12 = 4096).
    pub lbads: u8,
    /// Relative performance (bits 1:0).
    pub rp: u8,
}

/// NSFEAT bit: thin provisioning.
pub const NSFEAT_THIN: u8 = 1 << 0;
/// NSFEAT bit: NPWG, NPWA, NPDG, NPDA and NOWS are valid.
pub const NSFEAT_OPTPERF: u8 = 1 << 4;
/// NSATTR bit: the namespace is write protected.
pub const NSATTR_WRITE_PROTECTED: u8 = 1 << 0;

/// Identify Namespace (NVM command set), the fields this project uses.
/// LBA formats: only those up to NLBAF are kept (at most 64).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentifyNamespace {
    /// Namespace size, blocks.
    pub nsze: u64,
    /// Namespace capacity, blocks.
    pub ncap: u64,
    /// Namespace utilisation, blocks.
    pub nuse: u64,
    /// Namespace features.
    pub nsfeat: u8,
    /// Formatted LBA size: index of the LBA format in use (bits 3:0).
    pub flbas: u8,
    /// Multi-path I/O and namespace sharing capabilities.
    pub nmic: u8,
    /// Deallocate logical block features.
    pub dlfeat: u8,
    /// Namespace preferred write granularity, blocks (0's based).
    pub npwg: u16,
    /// Namespace preferred write alignment, blocks (0's based).
    pub npwa: u16,
    /// Namespace preferred deallocate granularity, blocks (0's based).
    pub npdg: u16,
    /// Namespace preferred deallocate alignment, blocks (0's based).
    pub npda: u16,
    /// Namespace optimal write size, blocks (0's based).
    pub nows: u16,
    /// Maximum single source range length (Copy), blocks.
    pub mssrl: u16,
    /// Maximum copy length, blocks.
    pub mcl: u32,
    /// Maximum source range count (0's based).
    pub msrc: u8,
    /// Namespace attributes.
    pub nsattr: u8,
    /// Namespace globally unique identifier.
    pub nguid: [u8; 16],
    /// IEEE extended unique identifier.
    pub eui64: [u8; 8],
    /// LBA formats 0..=NLBAF (NLBAF = len - 1 on the wire; empty = NLBAF 0
    /// with a zero format, as in a zero-filled structure).
    pub lbaf: Vec<LbaFormat>,
}

impl IdentifyNamespace {
    /// Builds the 4096 bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut b = vec![0u8; IDENTIFY_LEN];
        put64(&mut b, 0, self.nsze);
        put64(&mut b, 8, self.ncap);
        put64(&mut b, 16, self.nuse);
        put8(&mut b, 24, self.nsfeat);
        let n = self.lbaf.len().clamp(1, 64);
        put8(&mut b, 25, (n - 1) as u8);
        put8(&mut b, 26, self.flbas);
        put8(&mut b, 30, self.nmic);
        put8(&mut b, 33, self.dlfeat);
        put16(&mut b, 64, self.npwg);
        put16(&mut b, 66, self.npwa);
        put16(&mut b, 68, self.npdg);
        put16(&mut b, 70, self.npda);
        put16(&mut b, 72, self.nows);
        put16(&mut b, 74, self.mssrl);
        put32(&mut b, 76, self.mcl);
        put8(&mut b, 80, self.msrc);
        put8(&mut b, 99, self.nsattr);
        put(&mut b, 104, &self.nguid);
        put(&mut b, 120, &self.eui64);
        for (i, f) in self.lbaf.iter().take(64).enumerate() {
            let at = 128 + 4 * i;
            put16(&mut b, at, f.ms);
            put8(&mut b, at + 2, f.lbads);
            put8(&mut b, at + 3, f.rp & 0x3);
        }
        b
    }

    /// Parses the 4096 bytes.
    pub fn parse(b: &[u8]) -> Result<Self, LayoutError> {
        need(b, IDENTIFY_LEN, "identify namespace")?;
        let n = usize::from(u8_at(b, 25)).min(63) + 1;
        let lbaf = (0..n)
            .map(|i| {
                let at = 128 + 4 * i;
                LbaFormat { ms: le16(b, at), lbads: u8_at(b, at + 2), rp: u8_at(b, at + 3) & 0x3 }
            })
            .collect();
        Ok(Self {
            nsze: le64(b, 0),
            ncap: le64(b, 8),
            nuse: le64(b, 16),
            nsfeat: u8_at(b, 24),
            flbas: u8_at(b, 26),
            nmic: u8_at(b, 30),
            dlfeat: u8_at(b, 33),
            npwg: le16(b, 64),
            npwa: le16(b, 66),
            npdg: le16(b, 68),
            npda: le16(b, 70),
            nows: le16(b, 72),
            mssrl: le16(b, 74),
            mcl: le32(b, 76),
            msrc: u8_at(b, 80),
            nsattr: u8_at(b, 99),
            nguid: bytes(b, 104),
            eui64: bytes(b, 120),
            lbaf,
        })
    }

    /// The block size of the format in use, bytes (`None` when its LBADS is
    /// outside 9..=31, e.g. a zero-filled inactive namespace).
    pub fn block_size(&self) -> Option<u32> {
        let f = self.lbaf.get(usize::from(self.flbas & 0xF))?;
        (9..32).contains(&f.lbads).then(|| 1u32 << f.lbads)
    }
}

/// Builds an active namespace ID list: the IDs in `ids` greater than
/// `after`, ascending, at most 1024, zero-terminated in 4096 bytes.
pub fn build_ns_list(ids: impl IntoIterator<Item = u32>, after: u32) -> Vec<u8> {
    let mut v: Vec<u32> = ids.into_iter().filter(|&id| id > after && id != 0).collect();
    v.sort_unstable();
    v.dedup();
    let mut b = vec![0u8; IDENTIFY_LEN];
    for (i, id) in v.into_iter().take(NS_LIST_ENTRIES).enumerate() {
        put32(&mut b, 4 * i, id);
    }
    b
}

/// Parses an active namespace ID list (up to the first zero entry).
pub fn parse_ns_list(b: &[u8]) -> Result<Vec<u32>, LayoutError> {
    need(b, IDENTIFY_LEN, "namespace list")?;
    Ok((0..NS_LIST_ENTRIES).map(|i| le32(b, 4 * i)).take_while(|&id| id != 0).collect())
}

/// Namespace identifier type (NIDT) of a namespace identification
/// descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Nidt(pub u8);

impl Nidt {
    /// IEEE EUI-64 (8 bytes).
    pub const EUI64: Self = Self(1);
    /// NGUID (16 bytes).
    pub const NGUID: Self = Self(2);
    /// UUID (16 bytes).
    pub const UUID: Self = Self(3);
    /// Command set identifier (1 byte).
    pub const CSI: Self = Self(4);

    /// The length the type requires.
    pub fn nid_len(self) -> Option<usize> {
        match self {
            Self::EUI64 => Some(8),
            Self::NGUID | Self::UUID => Some(16),
            Self::CSI => Some(1),
            _ => None,
        }
    }
}

/// One namespace identification descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsDescriptor {
    /// Identifier type.
    pub nidt: Nidt,
    /// Identifier (length per type).
    pub nid: Vec<u8>,
}

/// Builds a namespace identification descriptor list (4096 bytes; entries
/// that do not fit are left out).
pub fn build_ns_descriptors(descs: &[NsDescriptor]) -> Vec<u8> {
    let mut b = vec![0u8; IDENTIFY_LEN];
    let mut at = 0usize;
    for d in descs {
        let len = d.nid.len().min(255);
        if at + 4 + len > IDENTIFY_LEN || len == 0 {
            continue;
        }
        put8(&mut b, at, d.nidt.0);
        put8(&mut b, at + 1, len as u8);
        put(&mut b, at + 4, d.nid.get(..len).unwrap_or(&[]));
        at += 4 + len;
    }
    b
}

/// Parses a namespace identification descriptor list, up to the first
/// descriptor with NIDL 0. A known type with the wrong length is an error.
pub fn parse_ns_descriptors(b: &[u8]) -> Result<Vec<NsDescriptor>, LayoutError> {
    need(b, IDENTIFY_LEN, "namespace descriptors")?;
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 4 <= IDENTIFY_LEN {
        let nidt = Nidt(u8_at(b, at));
        let len = usize::from(u8_at(b, at + 1));
        if len == 0 {
            break;
        }
        if nidt.nid_len().is_some_and(|l| l != len) {
            return Err(LayoutError::Invalid { what: "namespace descriptor", why: "length does not match type" });
        }
        let nid = b
            .get(at + 4..at + 4 + len)
            .ok_or(LayoutError::Invalid { what: "namespace descriptor", why: "runs past the end" })?;
        out.push(NsDescriptor { nidt, nid: nid.to_vec() });
        at += 4 + len;
    }
    Ok(out)
}

/// NVM command set specific Identify Controller (CNS 06h, CSI 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdentifyControllerNvm {
    /// Verify size limit (log2 of CAP.MPSMIN units, 0 = none).
    pub vsl: u8,
    /// Write Zeroes size limit.
    pub wzsl: u8,
    /// Write Uncorrectable size limit.
    pub wusl: u8,
    /// Dataset Management ranges limit (0 = none reported).
    pub dmrl: u8,
    /// Dataset Management range size limit, blocks.
    pub dmrsl: u32,
    /// Dataset Management size limit, blocks.
    pub dmsl: u64,
}

impl IdentifyControllerNvm {
    /// Builds the 4096 bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut b = vec![0u8; IDENTIFY_LEN];
        put8(&mut b, 0, self.vsl);
        put8(&mut b, 1, self.wzsl);
        put8(&mut b, 2, self.wusl);
        put8(&mut b, 3, self.dmrl);
        put32(&mut b, 4, self.dmrsl);
        put64(&mut b, 8, self.dmsl);
        b
    }
    /// Parses the 4096 bytes.
    pub fn parse(b: &[u8]) -> Result<Self, LayoutError> {
        need(b, IDENTIFY_LEN, "identify controller nvm")?;
        Ok(Self {
            vsl: u8_at(b, 0),
            wzsl: u8_at(b, 1),
            wusl: u8_at(b, 2),
            dmrl: u8_at(b, 3),
            dmrsl: le32(b, 4),
            dmsl: le64(b, 8),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_ctrl() -> IdentifyController {
        IdentifyController {
            serial: "SN1".into(),
            model: "oxcopy".into(),
            firmware: "0.1".into(),
            cntlid: 0x1234,
            ver: 0x0002_0000,
            oncs: 0x01AD,
            ocfs: 0x0005,
            subnqn: "nqn.2024-01.io.oxcopy:a".into(),
            ioccsz: 260,
            iorcsz: 1,
            msdbd: 1,
            sqes: 0x66,
            cqes: 0x44,
            kas: 10,
            ..IdentifyController::default()
        }
    }

    #[test]
    fn identify_controller_offsets() {
        let b = sample_ctrl().build();
        assert_eq!(b.len(), 4096);
        assert_eq!(&b[4..24], b"SN1                 ");
        assert_eq!(&b[64..72], b"0.1     ");
        assert_eq!(&b[78..80], &[0x34, 0x12]);
        assert_eq!(&b[80..84], &[0, 0, 2, 0]);
        assert_eq!(&b[520..522], &[0xAD, 0x01]);
        assert_eq!(&b[534..536], &[0x05, 0x00]);
        assert_eq!(b[512], 0x66);
        assert_eq!(b[513], 0x44);
        assert_eq!(&b[320..322], &[10, 0]);
        assert_eq!(&b[768..791], b"nqn.2024-01.io.oxcopy:a");
        assert_eq!(b[791], 0);
        assert_eq!(&b[1792..1796], &260u32.to_le_bytes());
        assert_eq!(&b[1796..1800], &1u32.to_le_bytes());
        assert_eq!(b[1803], 1);
        assert_eq!(IdentifyController::parse(&b).unwrap(), sample_ctrl());
    }

    #[test]
    fn identify_namespace_offsets() {
        let ns = IdentifyNamespace {
            nsze: 0x1000,
            ncap: 0x1000,
            nuse: 0x1000,
            mssrl: 0xABCD,
            mcl: 0x0102_0304,
            msrc: 127,
            nguid: [7; 16],
            lbaf: vec![LbaFormat { ms: 0, lbads: 12, rp: 0 }],
            ..IdentifyNamespace::default()
        };
        let b = ns.build();
        assert_eq!(&b[74..76], &[0xCD, 0xAB]);
        assert_eq!(&b[76..80], &[4, 3, 2, 1]);
        assert_eq!(b[80], 127);
        assert_eq!(&b[104..120], &[7; 16]);
        assert_eq!(b[25], 0);
        assert_eq!(b[128 + 2], 12);
        let p = IdentifyNamespace::parse(&b).unwrap();
        assert_eq!(p, ns);
        assert_eq!(p.block_size(), Some(4096));
        assert_eq!(IdentifyNamespace::parse(&[0u8; 4096]).unwrap().block_size(), None);
    }

    #[test]
    fn ns_list_and_descriptors() {
        let b = build_ns_list([5, 1, 3, 3, 0], 1);
        assert_eq!(parse_ns_list(&b).unwrap(), vec![3, 5]);
        let d = vec![
            NsDescriptor { nidt: Nidt::NGUID, nid: vec![1; 16] },
            NsDescriptor { nidt: Nidt::UUID, nid: vec![2; 16] },
            NsDescriptor { nidt: Nidt::CSI, nid: vec![0] },
        ];
        let b = build_ns_descriptors(&d);
        assert_eq!(&b[0..4], &[2, 16, 0, 0]);
        assert_eq!(&b[20..24], &[3, 16, 0, 0]);
        assert_eq!(&b[40..45], &[4, 1, 0, 0, 0]);
        assert_eq!(parse_ns_descriptors(&b).unwrap(), d);
        let mut bad = b.clone();
        bad[1] = 15;
        assert!(parse_ns_descriptors(&bad).is_err());
        // Unknown types are skipped by their length; one that runs past the
        // end is an error.
        let mut tail = vec![0u8; 4096];
        let mut at = 0;
        while at + 4 + 255 <= 4096 {
            tail[at] = 9;
            tail[at + 1] = 255;
            at += 259;
        }
        tail[at] = 9;
        tail[at + 1] = 250;
        assert!(parse_ns_descriptors(&tail).is_err());
    }

    #[test]
    fn identify_command_fields() {
        let c = IdentifyCommand { cid: 9, nsid: 1, cns: Cns::CSI_CONTROLLER, cntid: 0xFFFF, csi: 0 };
        let s = c.to_sqe();
        assert_eq!(s.cdw(10), 0xFFFF_0006);
        assert_eq!(IdentifyCommand::from_sqe(&s), c);
    }

    #[test]
    fn every_prefix_is_an_error() {
        let c = sample_ctrl().build();
        for n in 0..IDENTIFY_LEN {
            let p = &c[..n];
            assert!(IdentifyController::parse(p).is_err(), "{n}");
            assert!(IdentifyNamespace::parse(p).is_err(), "{n}");
            assert!(parse_ns_list(p).is_err(), "{n}");
            assert!(parse_ns_descriptors(p).is_err(), "{n}");
            assert!(IdentifyControllerNvm::parse(p).is_err(), "{n}");
        }
    }

    fn ascii(max: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(&format!("[A-Za-z0-9._-]{{0,{max}}}")).unwrap()
    }

    proptest! {
        #[test]
        fn identify_controller_round_trip(serial in ascii(20), model in ascii(40), fr in ascii(8),
                                          cntlid in any::<u16>(), ver in any::<u32>(), oncs in any::<u16>(),
                                          mdts in any::<u8>(), nn in any::<u32>(), subnqn in ascii(255),
                                          ioccsz in any::<u32>(), sgls in any::<u32>(), kas in any::<u16>()) {
            let c = IdentifyController { serial, model, firmware: fr, cntlid, ver, oncs, mdts, nn, subnqn,
                                         ioccsz, sgls, kas, ..IdentifyController::default() };
            prop_assert_eq!(IdentifyController::parse(&c.build()).unwrap(), c);
        }

        #[test]
        fn identify_namespace_round_trip(nsze in any::<u64>(), mssrl in any::<u16>(), mcl in any::<u32>(),
                                         msrc in any::<u8>(), nguid in any::<[u8; 16]>(),
                                         formats in proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..4), 1..64)) {
            let n = IdentifyNamespace { nsze, ncap: nsze, nuse: nsze / 2, mssrl, mcl, msrc, nguid,
                lbaf: formats.into_iter().map(|(ms, lbads, rp)| LbaFormat { ms, lbads, rp }).collect(),
                ..IdentifyNamespace::default() };
            prop_assert_eq!(IdentifyNamespace::parse(&n.build()).unwrap(), n);
        }

        #[test]
        fn ns_list_round_trip(mut ids in proptest::collection::btree_set(1u32..u32::MAX, 0..1100)) {
            let b = build_ns_list(ids.iter().copied(), 0);
            let want: Vec<u32> = std::mem::take(&mut ids).into_iter().take(NS_LIST_ENTRIES).collect();
            prop_assert_eq!(parse_ns_list(&b).unwrap(), want);
        }

        #[test]
        fn ns_descriptors_round_trip(nguid in any::<[u8; 16]>(), uuid in any::<[u8; 16]>(),
                                     eui in any::<[u8; 8]>(), csi in any::<u8>()) {
            let d = vec![
                NsDescriptor { nidt: Nidt::EUI64, nid: eui.to_vec() },
                NsDescriptor { nidt: Nidt::NGUID, nid: nguid.to_vec() },
                NsDescriptor { nidt: Nidt::UUID, nid: uuid.to_vec() },
                NsDescriptor { nidt: Nidt::CSI, nid: vec![csi] },
            ];
            prop_assert_eq!(parse_ns_descriptors(&build_ns_descriptors(&d)).unwrap(), d);
        }

        #[test]
        fn nvm_controller_round_trip(vsl in any::<u8>(), wzsl in any::<u8>(), dmrl in any::<u8>(),
                                     dmrsl in any::<u32>(), dmsl in any::<u64>()) {
            let c = IdentifyControllerNvm { vsl, wzsl, wusl: 0, dmrl, dmrsl, dmsl };
            prop_assert_eq!(IdentifyControllerNvm::parse(&c.build()).unwrap(), c);
        }

        #[test]
        fn descriptor_parser_never_panics(b in proptest::collection::vec(any::<u8>(), IDENTIFY_LEN)) {
            let _ = parse_ns_descriptors(&b);
            let _ = IdentifyController::parse(&b);
            let _ = IdentifyNamespace::parse(&b);
        }
    }
}
