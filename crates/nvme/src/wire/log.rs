//! Get Log Page (Base 2.0 §5.16): the command fields, log page identifiers,
//! and the layouts of the error information log (01h), SMART / health log
//! (02h), firmware slot log (03h), changed namespace list (04h) and the
//! discovery log page (70h, NVMe over Fabrics 1.1 §5.3), plus the
//! Asynchronous Event Request completion's DW0 encoding. Builders and
//! parsers; offsets as in libnvme `struct nvme_error_log_page`, `struct
//! nvme_smart_log`, `struct nvmf_discovery_log` and `struct
//! nvmf_disc_log_entry`.

use std::fmt;

use super::command::{Opcode, Sgl, SglType, Sqe};
use super::field::{cstr, le16, le32, le64, need, put16, put32, put64, put8, put_cstr, u8_at, LayoutError};

/// A log page identifier (CDW10 bits 7:0).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogId(pub u8);

impl LogId {
    /// Error information.
    pub const ERROR: Self = Self(0x01);
    /// SMART / health information.
    pub const SMART: Self = Self(0x02);
    /// Firmware slot information.
    pub const FIRMWARE_SLOT: Self = Self(0x03);
    /// Changed namespace list.
    pub const CHANGED_NS: Self = Self(0x04);
    /// Commands supported and effects.
    pub const CMD_EFFECTS: Self = Self(0x05);
    /// Discovery log page (discovery controllers).
    pub const DISCOVERY: Self = Self(0x70);
}

impl fmt::Debug for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogId({:#04x})", self.0)
    }
}

/// The fields of a Get Log Page command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetLogPage {
    /// Command identifier.
    pub cid: u16,
    /// Namespace ID.
    pub nsid: u32,
    /// Log page.
    pub lid: LogId,
    /// Log specific field (CDW10 bits 14:8).
    pub lsp: u8,
    /// Retain Asynchronous Event (CDW10 bit 15).
    pub rae: bool,
    /// Number of dwords, 0's based (NUMDU:NUMDL).
    pub numd: u32,
    /// Log specific identifier (CDW11 bits 31:16).
    pub lsi: u16,
    /// Offset in bytes (LPOU:LPOL).
    pub offset: u64,
    /// Command set identifier (CDW14 bits 31:24).
    pub csi: u8,
}

impl GetLogPage {
    /// Reads the fields.
    pub fn from_sqe(sqe: &Sqe) -> Self {
        let c10 = sqe.cdw(10);
        let c11 = sqe.cdw(11);
        Self {
            cid: sqe.cid(),
            nsid: sqe.nsid(),
            lid: LogId((c10 & 0xFF) as u8),
            lsp: ((c10 >> 8) & 0x7F) as u8,
            rae: c10 & (1 << 15) != 0,
            numd: (c10 >> 16) | ((c11 & 0xFFFF) << 16),
            lsi: (c11 >> 16) as u16,
            offset: u64::from(sqe.cdw(12)) | (u64::from(sqe.cdw(13)) << 32),
            csi: (sqe.cdw(14) >> 24) as u8,
        }
    }

    /// Length asked for, bytes: (NUMD + 1) × 4.
    pub fn byte_len(&self) -> u64 {
        (u64::from(self.numd) + 1) * 4
    }

    /// A command for `len` bytes (rounded up to dwords, at least 4) at
    /// `offset`, with a transport SGL of that length.
    pub fn new(cid: u16, nsid: u32, lid: LogId, len: u32, offset: u64, rae: bool) -> Self {
        let numd = len.div_ceil(4).saturating_sub(1);
        Self { cid, nsid, lid, lsp: 0, rae, numd, lsi: 0, offset, csi: 0 }
    }

    /// Builds the SQE (SGL length = the requested length, capped at 4 GiB-1).
    pub fn to_sqe(&self) -> Sqe {
        let mut s = Sqe::new(Opcode::GET_LOG_PAGE, self.cid, self.nsid);
        s.set_cdw(
            10,
            u32::from(self.lid.0)
                | (u32::from(self.lsp & 0x7F) << 8)
                | (u32::from(self.rae) << 15)
                | ((self.numd & 0xFFFF) << 16),
        );
        s.set_cdw(11, (self.numd >> 16) | (u32::from(self.lsi) << 16));
        s.set_cdw(12, self.offset as u32);
        s.set_cdw(13, (self.offset >> 32) as u32);
        s.set_cdw(14, u32::from(self.csi) << 24);
        let len = u32::try_from(self.byte_len()).unwrap_or(u32::MAX);
        s.set_sgl(Sgl { addr: 0, len, kind: SglType::TRANSPORT_DATA_BLOCK });
        s
    }
}

/// Size of one error information log entry.
pub const ERROR_ENTRY_LEN: usize = 64;

/// One error information log entry (64 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ErrorLogEntry {
    /// Error count: unique, incrementing (0 = entry unused).
    pub error_count: u64,
    /// Submission queue ID.
    pub sqid: u16,
    /// Command ID.
    pub cid: u16,
    /// Status field (bit 0 = phase tag, as in a CQE's upper half).
    pub status_field: u16,
    /// Parameter error location (FFFFh = not applicable).
    pub param_error_location: u16,
    /// LBA.
    pub lba: u64,
    /// Namespace.
    pub nsid: u32,
    /// Vendor specific information available (log page id, 0 = none).
    pub vs: u8,
    /// Transport type (TRTYPE, 3 = TCP).
    pub trtype: u8,
    /// Command specific information.
    pub cs: u64,
    /// Transport type specific information.
    pub trtype_spec_info: u16,
}

impl ErrorLogEntry {
    /// Writes the entry into `b` (64 bytes at `at`).
    pub fn write(&self, b: &mut [u8], at: usize) {
        put64(b, at, self.error_count);
        put16(b, at + 8, self.sqid);
        put16(b, at + 10, self.cid);
        put16(b, at + 12, self.status_field);
        put16(b, at + 14, self.param_error_location);
        put64(b, at + 16, self.lba);
        put32(b, at + 24, self.nsid);
        put8(b, at + 28, self.vs);
        put8(b, at + 29, self.trtype);
        put64(b, at + 32, self.cs);
        put16(b, at + 40, self.trtype_spec_info);
    }
    /// Builds the 64 bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut b = vec![0u8; ERROR_ENTRY_LEN];
        self.write(&mut b, 0);
        b
    }
    /// Parses 64 bytes.
    pub fn parse(b: &[u8]) -> Result<Self, LayoutError> {
        need(b, ERROR_ENTRY_LEN, "error log entry")?;
        Ok(Self {
            error_count: le64(b, 0),
            sqid: le16(b, 8),
            cid: le16(b, 10),
            status_field: le16(b, 12),
            param_error_location: le16(b, 14),
            lba: le64(b, 16),
            nsid: le32(b, 24),
            vs: u8_at(b, 28),
            trtype: u8_at(b, 29),
            cs: le64(b, 32),
            trtype_spec_info: le16(b, 40),
        })
    }
    /// Parses a whole error log: as many 64-byte entries as `b` holds.
    pub fn parse_all(b: &[u8]) -> Vec<Self> {
        b.chunks_exact(ERROR_ENTRY_LEN).filter_map(|c| Self::parse(c).ok()).collect()
    }
}

/// Size of the SMART / health information log.
pub const SMART_LEN: usize = 512;

/// SMART / health information (512 bytes). 128-bit counters are kept as
/// u128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SmartLog {
    /// Critical warning bits.
    pub critical_warning: u8,
    /// Composite temperature, kelvin (0 = not reported).
    pub temperature: u16,
    /// Available spare, percent.
    pub avail_spare: u8,
    /// Available spare threshold, percent.
    pub spare_thresh: u8,
    /// Percentage used.
    pub percent_used: u8,
    /// Data units read (thousands of 512-byte units).
    pub data_units_read: u128,
    /// Data units written.
    pub data_units_written: u128,
    /// Host read commands.
    pub host_reads: u128,
    /// Host write commands.
    pub host_writes: u128,
    /// Controller busy time, minutes.
    pub ctrl_busy_time: u128,
    /// Power cycles.
    pub power_cycles: u128,
    /// Power on hours.
    pub power_on_hours: u128,
    /// Unsafe shutdowns.
    pub unsafe_shutdowns: u128,
    /// Media and data integrity errors.
    pub media_errors: u128,
    /// Number of error information log entries over the life.
    pub num_err_log_entries: u128,
}

fn put128(b: &mut [u8], at: usize, v: u128) {
    super::field::put(b, at, &v.to_le_bytes());
}
fn le128(b: &[u8], at: usize) -> u128 {
    u128::from_le_bytes(super::field::bytes(b, at))
}

impl SmartLog {
    /// Builds the 512 bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut b = vec![0u8; SMART_LEN];
        put8(&mut b, 0, self.critical_warning);
        put16(&mut b, 1, self.temperature);
        put8(&mut b, 3, self.avail_spare);
        put8(&mut b, 4, self.spare_thresh);
        put8(&mut b, 5, self.percent_used);
        put128(&mut b, 32, self.data_units_read);
        put128(&mut b, 48, self.data_units_written);
        put128(&mut b, 64, self.host_reads);
        put128(&mut b, 80, self.host_writes);
        put128(&mut b, 96, self.ctrl_busy_time);
        put128(&mut b, 112, self.power_cycles);
        put128(&mut b, 128, self.power_on_hours);
        put128(&mut b, 144, self.unsafe_shutdowns);
        put128(&mut b, 160, self.media_errors);
        put128(&mut b, 176, self.num_err_log_entries);
        b
    }
    /// Parses the 512 bytes.
    pub fn parse(b: &[u8]) -> Result<Self, LayoutError> {
        need(b, SMART_LEN, "smart log")?;
        Ok(Self {
            critical_warning: u8_at(b, 0),
            temperature: le16(b, 1),
            avail_spare: u8_at(b, 3),
            spare_thresh: u8_at(b, 4),
            percent_used: u8_at(b, 5),
            data_units_read: le128(b, 32),
            data_units_written: le128(b, 48),
            host_reads: le128(b, 64),
            host_writes: le128(b, 80),
            ctrl_busy_time: le128(b, 96),
            power_cycles: le128(b, 112),
            power_on_hours: le128(b, 128),
            unsafe_shutdowns: le128(b, 144),
            media_errors: le128(b, 160),
            num_err_log_entries: le128(b, 176),
        })
    }
}

/// Size of the firmware slot information log.
pub const FIRMWARE_SLOT_LEN: usize = 512;

/// Firmware slot information (512 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FirmwareSlotLog {
    /// Active firmware info: bits 2:0 the active slot.
    pub afi: u8,
    /// Revisions in slots 1..=7 (8 ASCII each, empty = none).
    pub frs: [String; 7],
}

impl FirmwareSlotLog {
    /// Builds the 512 bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut b = vec![0u8; FIRMWARE_SLOT_LEN];
        put8(&mut b, 0, self.afi);
        for (i, s) in self.frs.iter().enumerate() {
            if !s.is_empty() {
                super::field::put_ascii_padded(&mut b, 8 + 8 * i, 8, s);
            }
        }
        b
    }
    /// Parses the 512 bytes.
    pub fn parse(b: &[u8]) -> Result<Self, LayoutError> {
        need(b, FIRMWARE_SLOT_LEN, "firmware slot log")?;
        Ok(Self { afi: u8_at(b, 0), frs: std::array::from_fn(|i| super::field::ascii_padded(b, 8 + 8 * i, 8)) })
    }
}

/// Size of the changed namespace list log.
pub const CHANGED_NS_LEN: usize = 4096;
/// Entries in the changed namespace list.
pub const CHANGED_NS_ENTRIES: usize = 1024;

/// The changed namespace list: `None` = more than 1024 changed (the log's
/// first entry is FFFFFFFFh), else up to 1024 NSIDs.
pub fn build_changed_ns(list: Option<&[u32]>) -> Vec<u8> {
    let mut b = vec![0u8; CHANGED_NS_LEN];
    match list {
        None => put32(&mut b, 0, u32::MAX),
        Some(ids) => {
            for (i, id) in ids.iter().take(CHANGED_NS_ENTRIES).enumerate() {
                put32(&mut b, 4 * i, *id);
            }
        }
    }
    b
}

/// Parses the changed namespace list: `None` for the overflow marker.
pub fn parse_changed_ns(b: &[u8]) -> Result<Option<Vec<u32>>, LayoutError> {
    need(b, CHANGED_NS_LEN, "changed namespace list")?;
    if le32(b, 0) == u32::MAX {
        return Ok(None);
    }
    Ok(Some((0..CHANGED_NS_ENTRIES).map(|i| le32(b, 4 * i)).take_while(|&id| id != 0).collect()))
}

/// Size of the discovery log page header, and of each entry.
pub const DISCOVERY_RECORD_LEN: usize = 1024;

/// Discovery log page header (the first 1024 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiscoveryHeader {
    /// Generation counter: changes whenever the entries change.
    pub genctr: u64,
    /// Number of records.
    pub numrec: u64,
    /// Record format (0).
    pub recfmt: u16,
}

impl DiscoveryHeader {
    /// Builds the 1024 bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut b = vec![0u8; DISCOVERY_RECORD_LEN];
        put64(&mut b, 0, self.genctr);
        put64(&mut b, 8, self.numrec);
        put16(&mut b, 16, self.recfmt);
        b
    }
    /// Parses the header (only its first 18 bytes are needed, so a host may
    /// read just those; the rest is reserved).
    pub fn parse(b: &[u8]) -> Result<Self, LayoutError> {
        need(b, 18, "discovery log header")?;
        Ok(Self { genctr: le64(b, 0), numrec: le64(b, 8), recfmt: le16(b, 16) })
    }
}

/// Transport type (TRTYPE).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct TrType(pub u8);
impl TrType {
    /// TCP.
    pub const TCP: Self = Self(3);
}

/// Address family (ADRFAM).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct AdrFam(pub u8);
impl AdrFam {
    /// IPv4.
    pub const IPV4: Self = Self(1);
    /// IPv6.
    pub const IPV6: Self = Self(2);
}

/// Subsystem type (SUBTYPE).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct SubType(pub u8);
impl SubType {
    /// A referral to another discovery service.
    pub const DISCOVERY: Self = Self(1);
    /// An NVM subsystem.
    pub const NVME: Self = Self(2);
    /// The current discovery subsystem.
    pub const CURRENT_DISCOVERY: Self = Self(3);
}

/// TCP security type (TSAS byte 0 for TCP).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct SecType(pub u8);
impl SecType {
    /// No security.
    pub const NONE: Self = Self(0);
}

/// One discovery log page entry (1024 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscoveryEntry {
    /// Transport type.
    pub trtype: TrType,
    /// Address family.
    pub adrfam: AdrFam,
    /// Subsystem type.
    pub subtype: SubType,
    /// Transport requirements (bits 1:0 secure channel, bit 2 SQ flow
    /// control disable supported).
    pub treq: u8,
    /// Port ID.
    pub portid: u16,
    /// Controller ID (FFFFh: dynamic).
    pub cntlid: u16,
    /// Admin max submission queue size.
    pub asqsz: u16,
    /// Entry flags.
    pub eflags: u16,
    /// Transport service ID (TCP port, as text).
    pub trsvcid: String,
    /// Subsystem NQN.
    pub subnqn: String,
    /// Transport address (IP address, as text).
    pub traddr: String,
    /// Security type (TCP TSAS byte 0).
    pub sectype: SecType,
}

impl DiscoveryEntry {
    /// Writes the entry (1024 bytes at `at`).
    pub fn write(&self, b: &mut [u8], at: usize) {
        put8(b, at, self.trtype.0);
        put8(b, at + 1, self.adrfam.0);
        put8(b, at + 2, self.subtype.0);
        put8(b, at + 3, self.treq);
        put16(b, at + 4, self.portid);
        put16(b, at + 6, self.cntlid);
        put16(b, at + 8, self.asqsz);
        put16(b, at + 10, self.eflags);
        put_cstr(b, at + 32, 32, &self.trsvcid);
        put_cstr(b, at + 256, 256, &self.subnqn);
        put_cstr(b, at + 512, 256, &self.traddr);
        put8(b, at + 768, self.sectype.0);
    }
    /// Builds the 1024 bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut b = vec![0u8; DISCOVERY_RECORD_LEN];
        self.write(&mut b, 0);
        b
    }
    /// Parses 1024 bytes.
    pub fn parse(b: &[u8]) -> Result<Self, LayoutError> {
        need(b, DISCOVERY_RECORD_LEN, "discovery log entry")?;
        Ok(Self {
            trtype: TrType(u8_at(b, 0)),
            adrfam: AdrFam(u8_at(b, 1)),
            subtype: SubType(u8_at(b, 2)),
            treq: u8_at(b, 3),
            portid: le16(b, 4),
            cntlid: le16(b, 6),
            asqsz: le16(b, 8),
            eflags: le16(b, 10),
            trsvcid: cstr(b, 32, 32, "trsvcid")?,
            subnqn: cstr(b, 256, 256, "subnqn")?,
            traddr: cstr(b, 512, 256, "traddr")?,
            sectype: SecType(u8_at(b, 768)),
        })
    }
}

/// Builds a whole discovery log page (header + entries).
pub fn build_discovery_log(genctr: u64, entries: &[DiscoveryEntry]) -> Vec<u8> {
    let mut b = DiscoveryHeader { genctr, numrec: entries.len() as u64, recfmt: 0 }.build();
    b.resize(DISCOVERY_RECORD_LEN * (entries.len() + 1), 0);
    for (i, e) in entries.iter().enumerate() {
        e.write(&mut b, DISCOVERY_RECORD_LEN * (i + 1));
    }
    b
}

/// Parses a whole discovery log page: the header, then as many of its
/// `numrec` entries as `b` holds (a host reads the header first and then
/// asks for exactly the entries).
pub fn parse_discovery_log(b: &[u8]) -> Result<(DiscoveryHeader, Vec<DiscoveryEntry>), LayoutError> {
    let h = DiscoveryHeader::parse(b)?;
    let have = b.len().saturating_sub(DISCOVERY_RECORD_LEN) / DISCOVERY_RECORD_LEN;
    let n = usize::try_from(h.numrec).unwrap_or(usize::MAX).min(have);
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let at = DISCOVERY_RECORD_LEN * (i + 1);
        v.push(DiscoveryEntry::parse(b.get(at..).unwrap_or(&[]))?);
    }
    Ok((h, v))
}

/// Asynchronous event type (AER completion DW0 bits 2:0).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct AsyncEventType(pub u8);
impl AsyncEventType {
    /// Error status.
    pub const ERROR: Self = Self(0);
    /// SMART / health status.
    pub const SMART: Self = Self(1);
    /// Notice.
    pub const NOTICE: Self = Self(2);
}

/// An asynchronous event as reported in an AER completion's DW0: type bits
/// 2:0, information bits 15:8, log page bits 23:16.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct AsyncEvent {
    /// Event type.
    pub kind: AsyncEventType,
    /// Event information.
    pub info: u8,
    /// The log page to read to clear the event.
    pub log: LogId,
}

impl AsyncEvent {
    /// Notice: namespace attribute changed (read log 04h).
    pub const NS_CHANGED: Self = Self { kind: AsyncEventType::NOTICE, info: 0x00, log: LogId::CHANGED_NS };
    /// Notice: discovery log page changed (read log 70h).
    pub const DISCOVERY_CHANGED: Self = Self { kind: AsyncEventType::NOTICE, info: 0xF0, log: LogId::DISCOVERY };

    /// DW0 of the completion.
    pub fn to_dw0(self) -> u32 {
        u32::from(self.kind.0 & 0x7) | (u32::from(self.info) << 8) | (u32::from(self.log.0) << 16)
    }
    /// From DW0.
    pub fn from_dw0(dw0: u32) -> Self {
        Self {
            kind: AsyncEventType((dw0 & 0x7) as u8),
            info: ((dw0 >> 8) & 0xFF) as u8,
            log: LogId(((dw0 >> 16) & 0xFF) as u8),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry() -> DiscoveryEntry {
        DiscoveryEntry {
            trtype: TrType::TCP,
            adrfam: AdrFam::IPV4,
            subtype: SubType::NVME,
            treq: 0,
            portid: 1,
            cntlid: 0xFFFF,
            asqsz: 32,
            eflags: 0,
            trsvcid: "4420".into(),
            subnqn: "nqn.2024-01.io.oxcopy:a".into(),
            traddr: "10.0.0.1".into(),
            sectype: SecType::NONE,
        }
    }

    #[test]
    fn discovery_offsets() {
        let b = build_discovery_log(7, &[entry(), entry()]);
        assert_eq!(b.len(), 3 * 1024);
        assert_eq!(&b[0..8], &7u64.to_le_bytes());
        assert_eq!(&b[8..16], &2u64.to_le_bytes());
        let e = &b[1024..2048];
        assert_eq!(e[0], 3);
        assert_eq!(e[1], 1);
        assert_eq!(e[2], 2);
        assert_eq!(&e[6..8], &[0xFF, 0xFF]);
        assert_eq!(&e[32..36], b"4420");
        assert_eq!(&e[256..259], b"nqn");
        assert_eq!(&e[512..520], b"10.0.0.1");
        let (h, v) = parse_discovery_log(&b).unwrap();
        assert_eq!(h.numrec, 2);
        assert_eq!(v, vec![entry(), entry()]);
        // Header only: no entries, no error.
        assert_eq!(parse_discovery_log(&b[..1024]).unwrap().1, vec![]);
    }

    #[test]
    fn smart_and_error_offsets() {
        let s =
            SmartLog { temperature: 0x0143, avail_spare: 100, host_reads: 5, power_on_hours: 9, ..SmartLog::default() };
        let b = s.build();
        assert_eq!(&b[1..3], &[0x43, 0x01]);
        assert_eq!(b[3], 100);
        assert_eq!(b[64], 5);
        assert_eq!(b[128], 9);
        assert_eq!(SmartLog::parse(&b).unwrap(), s);
        let e = ErrorLogEntry {
            error_count: 1,
            sqid: 0,
            cid: 9,
            status_field: 0x4004,
            nsid: 1,
            trtype: 3,
            ..Default::default()
        };
        let b = e.build();
        assert_eq!(&b[10..12], &[9, 0]);
        assert_eq!(b[29], 3);
        assert_eq!(ErrorLogEntry::parse_all(&b), vec![e]);
        let f =
            FirmwareSlotLog { afi: 1, frs: std::array::from_fn(|i| if i == 0 { "0.1".into() } else { String::new() }) };
        let b = f.build();
        assert_eq!(&b[8..16], b"0.1     ");
        assert_eq!(FirmwareSlotLog::parse(&b).unwrap(), f);
    }

    #[test]
    fn changed_ns_and_aen() {
        assert_eq!(parse_changed_ns(&build_changed_ns(Some(&[1, 4]))).unwrap(), Some(vec![1, 4]));
        assert_eq!(parse_changed_ns(&build_changed_ns(None)).unwrap(), None);
        assert_eq!(AsyncEvent::NS_CHANGED.to_dw0(), 0x0004_0002);
        assert_eq!(AsyncEvent::DISCOVERY_CHANGED.to_dw0(), 0x0070_F002);
        assert_eq!(AsyncEvent::from_dw0(0x0004_0002), AsyncEvent::NS_CHANGED);
    }

    #[test]
    fn get_log_page_fields() {
        let g = GetLogPage::new(3, 0xFFFF_FFFF, LogId::SMART, 512, 0x1_0000_0004, true);
        assert_eq!(g.numd, 127);
        assert_eq!(g.byte_len(), 512);
        let s = g.to_sqe();
        assert_eq!(s.cdw(10), (127 << 16) | (1 << 15) | 2);
        assert_eq!(s.cdw(12), 4);
        assert_eq!(s.cdw(13), 1);
        assert_eq!(GetLogPage::from_sqe(&s), g);
        let big = GetLogPage::new(1, 0, LogId::DISCOVERY, 0x40_0000, 0, false);
        assert_eq!(GetLogPage::from_sqe(&big.to_sqe()).numd, 0xF_FFFF);
    }

    #[test]
    fn every_prefix_is_an_error() {
        let d = build_discovery_log(1, &[entry()]);
        let smart = SmartLog::default().build();
        let changed = build_changed_ns(None);
        for n in 0..4096 {
            if n < DISCOVERY_RECORD_LEN {
                assert!(DiscoveryEntry::parse(&d[1024..][..n]).is_err(), "{n}");
            }
            if n < 18 {
                assert!(DiscoveryHeader::parse(&d[..n]).is_err(), "{n}");
                assert!(parse_discovery_log(&d[..n]).is_err(), "{n}");
            } else if n <= d.len() {
                // A discovery log cut anywhere yields the whole entries it holds.
                assert_eq!(parse_discovery_log(&d[..n]).unwrap().1.len(), usize::from(n >= 2048), "{n}");
            }
            if n < SMART_LEN {
                assert!(SmartLog::parse(&smart[..n]).is_err(), "{n}");
                assert!(FirmwareSlotLog::parse(&smart[..n]).is_err(), "{n}");
            }
            if n < ERROR_ENTRY_LEN {
                assert!(ErrorLogEntry::parse(&smart[..n]).is_err(), "{n}");
            }
            assert!(parse_changed_ns(&changed[..n]).is_err(), "{n}");
        }
    }

    proptest! {
        #[test]
        fn discovery_entry_round_trip(portid in any::<u16>(), asqsz in any::<u16>(), treq in any::<u8>(),
                                      svc in "[0-9]{0,31}", addr in "[0-9a-f.:]{0,255}", nqn in "[a-z0-9.:-]{0,255}") {
            let e = DiscoveryEntry { portid, asqsz, treq, trsvcid: svc, traddr: addr, subnqn: nqn, ..entry() };
            prop_assert_eq!(DiscoveryEntry::parse(&e.build()).unwrap(), e);
        }

        #[test]
        fn smart_round_trip(t in any::<u16>(), r in any::<u128>(), w in any::<u128>(), h in any::<u128>()) {
            let s = SmartLog { temperature: t, data_units_read: r, data_units_written: w, power_on_hours: h, ..SmartLog::default() };
            prop_assert_eq!(SmartLog::parse(&s.build()).unwrap(), s);
        }

        #[test]
        fn error_entry_round_trip(c in any::<u64>(), cid in any::<u16>(), st in any::<u16>(), lba in any::<u64>()) {
            let e = ErrorLogEntry { error_count: c, cid, status_field: st, lba, ..ErrorLogEntry::default() };
            prop_assert_eq!(ErrorLogEntry::parse(&e.build()).unwrap(), e);
        }

        #[test]
        fn changed_ns_round_trip(ids in proptest::collection::vec(1u32..u32::MAX - 1, 0..1024)) {
            let b = build_changed_ns(Some(&ids));
            prop_assert_eq!(parse_changed_ns(&b).unwrap(), Some(ids));
        }

        #[test]
        fn discovery_log_round_trip(genctr in any::<u64>(), n in 0usize..8, port in any::<u16>()) {
            let entries: Vec<DiscoveryEntry> = (0..n).map(|i| DiscoveryEntry { portid: port.wrapping_add(i as u16), ..entry() }).collect();
            let (h, v) = parse_discovery_log(&build_discovery_log(genctr, &entries)).unwrap();
            prop_assert_eq!(h, DiscoveryHeader { genctr, numrec: n as u64, recfmt: 0 });
            prop_assert_eq!(v, entries);
        }

        #[test]
        fn firmware_slot_round_trip(afi in any::<u8>(), fr in "[A-Za-z0-9.]{0,8}") {
            let f = FirmwareSlotLog { afi, frs: std::array::from_fn(|i| if i == 3 { fr.clone() } else { String::new() }) };
            prop_assert_eq!(FirmwareSlotLog::parse(&f.build()).unwrap(), f);
        }

        #[test]
        fn get_log_page_round_trip(cid in any::<u16>(), nsid in any::<u32>(), lid in any::<u8>(), lsp in 0u8..0x80,
                                   rae in any::<bool>(), numd in any::<u32>(), lsi in any::<u16>(), offset in any::<u64>(),
                                   csi in any::<u8>()) {
            let g = GetLogPage { cid, nsid, lid: LogId(lid), lsp, rae, numd, lsi, offset, csi };
            prop_assert_eq!(GetLogPage::from_sqe(&g.to_sqe()), g);
        }

        #[test]
        fn parsers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let _ = parse_discovery_log(&b);
            let _ = DiscoveryEntry::parse(&b);
            let _ = SmartLog::parse(&b);
            let _ = ErrorLogEntry::parse_all(&b);
            let _ = FirmwareSlotLog::parse(&b);
        }
    }
}
