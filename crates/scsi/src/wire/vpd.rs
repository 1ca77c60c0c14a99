//! VPD pages (SPC-4 §7.8): the page framing, designation descriptors (83h)
//! and the Third-party Copy page (8Fh) descriptor framing and the Block
//! Device ROD Token Limits descriptor (0000h), and the vendor-specific copy
//! domain page (C0h), encoded by the device server and decoded by initiators.
//!
//! ```text
//! page         B0 qualifier|PDT  B1 PAGE CODE  B2-3 PAGE LENGTH  B4.. body
//! designation  B0 PROTOCOL ID|CODE SET  B1 PIV|ASSOCIATION|TYPE  B3 length  B4.. designator
//! 8Fh desc.    B0-1 DESCRIPTOR TYPE  B2-3 DESCRIPTOR LENGTH (after B3)  B4.. body
//! ```

use super::xcopy::{Designator, MAX_DESIGNATOR_LEN};
use super::Fields;

/// VPD page codes.
pub struct VpdPage;

impl VpdPage {
    /// Supported VPD Pages.
    pub const SUPPORTED_PAGES: u8 = 0x00;
    /// Unit Serial Number.
    pub const UNIT_SERIAL_NUMBER: u8 = 0x80;
    /// Device Identification.
    pub const DEVICE_IDENTIFICATION: u8 = 0x83;
    /// Third-party Copy.
    pub const THIRD_PARTY_COPY: u8 = 0x8F;
    /// Block Limits (SBC-3).
    pub const BLOCK_LIMITS: u8 = 0xB0;
    /// Block Device Characteristics (SBC-3).
    pub const BLOCK_DEVICE_CHARACTERISTICS: u8 = 0xB1;
    /// Logical Block Provisioning (SBC-3).
    pub const LOGICAL_BLOCK_PROVISIONING: u8 = 0xB2;
    /// oxcopy copy domain (vendor specific, see [`CopyDomainPage`]).
    pub const COPY_DOMAIN: u8 = 0xC0;
    /// oxcopy volume layout (vendor specific, see [`volume_layout_page`]).
    pub const VOLUME_LAYOUT: u8 = 0xC1;
}

/// Longest layout text page C1h carries (the 2-byte PAGE LENGTH).
pub const MAX_LAYOUT_TEXT: usize = 0xFFFF;

/// Vendor page C1h: the layout of the volume under the LU as ASCII text,
/// one line per member (stacked volumes indented), each line ended by
/// LF; bytes outside printable ASCII become `?`; cut to
/// [`MAX_LAYOUT_TEXT`] at a line end.
pub fn volume_layout_page(b0: u8, text: &str) -> Vec<u8> {
    let mut body: Vec<u8> =
        text.bytes().map(|c| if c == b'\n' || (0x20..=0x7E).contains(&c) { c } else { b'?' }).collect();
    if body.len() > MAX_LAYOUT_TEXT {
        let cut = body[..MAX_LAYOUT_TEXT].iter().rposition(|&c| c == b'\n').map_or(MAX_LAYOUT_TEXT, |i| i + 1);
        body.truncate(cut);
    }
    page(b0, VpdPage::VOLUME_LAYOUT, body)
}

/// The text of a C1h page (bounded by PAGE LENGTH and what arrived; not
/// ASCII: `?`).
pub fn decode_volume_layout(d: &[u8]) -> String {
    page_body(d).0.iter().map(|&c| if c == b'\n' || (0x20..=0x7E).contains(&c) { c as char } else { '?' }).collect()
}

/// A VPD page: byte 0 (`b0`: qualifier and peripheral device type), the
/// page code, a 2-byte PAGE LENGTH (saturated) and `body`.
pub fn page(b0: u8, code: u8, body: Vec<u8>) -> Vec<u8> {
    let mut d = Vec::with_capacity(4 + body.len());
    d.extend_from_slice(&[b0, code]);
    d.extend_from_slice(&super::len16(body.len()));
    d.extend(body);
    d
}

/// The body of a VPD page (after its 4-byte header), cut to PAGE LENGTH
/// and to what arrived; the flag tells whether the page was cut short.
pub fn page_body(d: &[u8]) -> (&[u8], bool) {
    let f = Fields(d);
    let declared = usize::from(f.u16(2).unwrap_or(0));
    let body = f.tail(4);
    (&body[..declared.min(body.len())], d.len() < 4 || declared > body.len())
}

/// CODE SET values (designation descriptor byte 0 bits 3:0).
pub struct CodeSet;

impl CodeSet {
    /// Binary.
    pub const BINARY: u8 = 0x1;
    /// ASCII.
    pub const ASCII: u8 = 0x2;
    /// UTF-8.
    pub const UTF8: u8 = 0x3;
}

/// ASSOCIATION values (designation descriptor byte 1 bits 5:4).
pub struct Association;

impl Association {
    /// The addressed logical unit.
    pub const LOGICAL_UNIT: u8 = 0;
    /// The target port that received the command.
    pub const TARGET_PORT: u8 = 1;
    /// The SCSI target device.
    pub const TARGET_DEVICE: u8 = 2;
}

/// DESIGNATOR TYPE values (designation descriptor byte 1 bits 3:0).
pub struct DesignatorType;

impl DesignatorType {
    /// Vendor specific.
    pub const VENDOR_SPECIFIC: u8 = 0x0;
    /// T10 vendor ID based.
    pub const T10_VENDOR_ID: u8 = 0x1;
    /// EUI-64 based.
    pub const EUI64: u8 = 0x2;
    /// NAA.
    pub const NAA: u8 = 0x3;
    /// Relative target port identifier.
    pub const RELATIVE_TARGET_PORT: u8 = 0x4;
    /// SCSI name string.
    pub const SCSI_NAME: u8 = 0x8;
}

/// PROTOCOL IDENTIFIER of iSCSI (designation descriptor byte 0 bits 7:4, with PIV).
pub const PROTOCOL_ISCSI: u8 = 0x5;

/// One designation descriptor of page 83h, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Designation<'a> {
    /// Byte 0: PROTOCOL IDENTIFIER (7:4) and CODE SET (3:0).
    pub code_set: u8,
    /// Byte 1: PIV (7), ASSOCIATION (5:4) and DESIGNATOR TYPE (3:0).
    pub assoc_type: u8,
    /// The designator.
    pub value: &'a [u8],
}

impl<'a> Designation<'a> {
    /// A designator of `association` and `designator_type` in `code_set`,
    /// naming `protocol` (PIV=1) when given.
    pub fn new(protocol: Option<u8>, code_set: u8, association: u8, designator_type: u8, value: &'a [u8]) -> Self {
        let piv = if protocol.is_some() { 0x80 } else { 0 };
        Designation {
            code_set: (protocol.unwrap_or(0) << 4) | (code_set & 0x0F),
            assoc_type: piv | ((association & 0x03) << 4) | (designator_type & 0x0F),
            value,
        }
    }

    /// ASSOCIATION: see [`Association`].
    pub fn association(&self) -> u8 {
        (self.assoc_type >> 4) & 0x03
    }

    /// DESIGNATOR TYPE: see [`DesignatorType`].
    pub fn designator_type(&self) -> u8 {
        self.assoc_type & 0x0F
    }

    /// The PROTOCOL IDENTIFIER, when PIV is set for a port or target
    /// device association (otherwise the field is reserved).
    pub fn protocol(&self) -> Option<u8> {
        (self.assoc_type & 0x80 != 0 && matches!(self.association(), 1 | 2)).then_some(self.code_set >> 4)
    }

    /// Append the descriptor (a value over 255 bytes is cut).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let value = &self.value[..self.value.len().min(usize::from(u8::MAX))];
        out.extend_from_slice(&[self.code_set, self.assoc_type, 0, value.len() as u8]);
        out.extend_from_slice(value);
    }
}

/// A SCSI name string designator: UTF-8, null-terminated, padded to a
/// multiple of 4, at most 256 bytes (SPC-4 §7.8.6.11).
pub fn scsi_name(s: &str) -> Vec<u8> {
    let mut v: Vec<u8> = s.bytes().filter(|&b| b != 0).take(252).collect();
    v.push(0);
    v.resize(v.len().div_ceil(4) * 4, 0);
    v
}

/// The designation descriptors of a page 83h (header included), in order;
/// the walk ends at the first descriptor cut short.
pub fn designations(vpd83: &[u8]) -> impl Iterator<Item = Designation<'_>> {
    let (mut rest, _) = page_body(vpd83);
    std::iter::from_fn(move || {
        let [code_set, assoc_type, _, len, tail @ ..] = rest else { return None };
        let value = tail.get(..usize::from(*len))?;
        rest = &tail[value.len()..];
        Some(Designation { code_set: *code_set, assoc_type: *assoc_type, value })
    })
}

/// Pick the designator to name a logical unit by in a CSCD from its page
/// 83h (header included): LU association only, preferring NAA, then
/// EUI-64, T10 vendor ID, vendor specific; at most 20 bytes long.
pub fn lu_designator(vpd83: &[u8]) -> Option<Designator> {
    let rank = |t: u8| match t {
        DesignatorType::NAA => Some(0),
        DesignatorType::EUI64 => Some(1),
        DesignatorType::T10_VENDOR_ID => Some(2),
        DesignatorType::VENDOR_SPECIFIC => Some(3),
        _ => None,
    };
    designations(vpd83)
        .filter(|d| d.association() == 0 && d.value.len() <= MAX_DESIGNATOR_LEN)
        .filter_map(|d| Some((rank(d.designator_type())?, d)))
        .min_by_key(|(r, _)| *r)
        .map(|(_, d)| Designator { code_set: d.code_set, assoc_type: d.assoc_type, value: d.value.to_vec() })
}

/// Third-party copy descriptor type codes (page 8Fh).
pub struct TpcDescriptor;

impl TpcDescriptor {
    /// Block Device ROD Token Limits (SBC-3).
    pub const BLOCK_DEVICE_ROD_TOKEN_LIMITS: u16 = 0x0000;
    /// Supported Commands.
    pub const SUPPORTED_COMMANDS: u16 = 0x0001;
    /// Parameter Data (EXTENDED COPY limits).
    pub const PARAMETER_DATA: u16 = 0x0004;
    /// Supported Descriptors (segment and CSCD type codes).
    pub const SUPPORTED_DESCRIPTORS: u16 = 0x0008;
    /// Supported CSCD Descriptor IDs.
    pub const SUPPORTED_CSCD_IDS: u16 = 0x000C;
    /// ROD Token Features.
    pub const ROD_TOKEN_FEATURES: u16 = 0x0106;
    /// Supported ROD Types.
    pub const SUPPORTED_ROD_TYPES: u16 = 0x0108;
    /// General Copy Operations.
    pub const GENERAL_COPY_OPERATIONS: u16 = 0x8001;
    /// Stream Copy Operations.
    pub const STREAM_COPY_OPERATIONS: u16 = 0x9101;
    /// Held Data.
    pub const HELD_DATA: u16 = 0xC001;
}

/// Builds the body of page 8Fh (everything after the 4-byte page header).
#[derive(Debug, Default)]
pub struct TpcPage {
    body: Vec<u8>,
}

impl TpcPage {
    /// An empty page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a descriptor of `ty` whose bytes after the 4-byte header are
    /// `body` (zero-padded here to a multiple of 4).
    pub fn push(&mut self, ty: u16, body: &[u8]) -> &mut Self {
        let padded = body.len().div_ceil(4) * 4;
        self.body.extend_from_slice(&ty.to_be_bytes());
        self.body.extend_from_slice(&super::len16(padded));
        self.body.extend_from_slice(body);
        self.body.resize(self.body.len() + (padded - body.len()), 0);
        self
    }

    /// The assembled descriptors.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

/// The third-party copy descriptors of a page 8Fh (header included) as
/// `(DESCRIPTOR TYPE, bytes after the 4-byte descriptor header)`; the walk
/// ends at the first descriptor cut short.
pub fn tpc_descriptors(vpd8f: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let (mut rest, _) = page_body(vpd8f);
    std::iter::from_fn(move || {
        let [t0, t1, l0, l1, tail @ ..] = rest else { return None };
        let body = tail.get(..usize::from(u16::from_be_bytes([*l0, *l1])))?;
        rest = &tail[body.len()..];
        Some((u16::from_be_bytes([*t0, *t1]), body))
    })
}

/// Descriptor 0000h Block Device ROD Token Limits (SBC-3 §6.6.4), lengths in
/// logical blocks, timeouts in seconds; DESCRIPTOR LENGTH 0020h.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockRodLimits {
    /// MAXIMUM RANGE DESCRIPTORS.
    pub max_range_descriptors: u16,
    /// MAXIMUM INACTIVITY TIMEOUT.
    pub max_inactivity_timeout: u32,
    /// DEFAULT INACTIVITY TIMEOUT.
    pub default_inactivity_timeout: u32,
    /// MAXIMUM TOKEN TRANSFER SIZE (0: not reported).
    pub max_token_transfer_size: u64,
    /// OPTIMAL TRANSFER COUNT.
    pub optimal_transfer_count: u64,
}

impl BlockRodLimits {
    /// DESCRIPTOR LENGTH of 0000h.
    pub const LEN: usize = 0x20;

    /// The descriptor body (after its 4-byte header).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; Self::LEN];
        b[6..8].copy_from_slice(&self.max_range_descriptors.to_be_bytes());
        b[8..12].copy_from_slice(&self.max_inactivity_timeout.to_be_bytes());
        b[12..16].copy_from_slice(&self.default_inactivity_timeout.to_be_bytes());
        b[16..24].copy_from_slice(&self.max_token_transfer_size.to_be_bytes());
        b[24..32].copy_from_slice(&self.optimal_transfer_count.to_be_bytes());
        b
    }

    /// Decode a descriptor body (after its 4-byte header); `None` when it
    /// is shorter than the 32-byte layout.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let f = Fields(b.get(..Self::LEN)?);
        Some(BlockRodLimits {
            max_range_descriptors: f.u16(6)?,
            max_inactivity_timeout: f.u32(8)?,
            default_inactivity_timeout: f.u32(12)?,
            max_token_transfer_size: f.u64(16)?,
            optimal_transfer_count: f.u64(24)?,
        })
    }
}

/// Descriptor 0004h Parameter Data (SPC-4 §7.8.17.4): the EXTENDED COPY
/// limits; DESCRIPTOR LENGTH 001Ch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParameterData {
    /// MAXIMUM CSCD DESCRIPTOR COUNT.
    pub max_cscd_descriptors: u16,
    /// MAXIMUM SEGMENT DESCRIPTOR COUNT.
    pub max_segment_descriptors: u16,
    /// MAXIMUM DESCRIPTOR LIST LENGTH.
    pub max_descriptor_list_length: u32,
    /// MAXIMUM INLINE DATA LENGTH.
    pub max_inline_data_length: u32,
}

impl ParameterData {
    /// DESCRIPTOR LENGTH of 0004h.
    pub const LEN: usize = 0x1C;

    /// The descriptor body (after its 4-byte header).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; Self::LEN];
        b[4..6].copy_from_slice(&self.max_cscd_descriptors.to_be_bytes());
        b[6..8].copy_from_slice(&self.max_segment_descriptors.to_be_bytes());
        b[8..12].copy_from_slice(&self.max_descriptor_list_length.to_be_bytes());
        b[12..16].copy_from_slice(&self.max_inline_data_length.to_be_bytes());
        b
    }

    /// Decode a descriptor body; `None` when it ends before the last field.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let f = Fields(b);
        Some(ParameterData {
            max_cscd_descriptors: f.u16(4)?,
            max_segment_descriptors: f.u16(6)?,
            max_descriptor_list_length: f.u32(8)?,
            max_inline_data_length: f.u32(12)?,
        })
    }
}

/// Descriptor 8001h General Copy Operations (SPC-4 §7.8.17.10);
/// DESCRIPTOR LENGTH 0020h.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GeneralCopyOperations {
    /// TOTAL CONCURRENT COPIES.
    pub total_concurrent_copies: u32,
    /// MAXIMUM IDENTIFIED CONCURRENT COPIES.
    pub max_identified_concurrent_copies: u32,
    /// MAXIMUM SEGMENT LENGTH (bytes).
    pub max_segment_length: u32,
    /// DATA SEGMENT GRANULARITY (log2 bytes).
    pub data_segment_granularity_log2: u8,
    /// INLINE DATA GRANULARITY (log2 bytes).
    pub inline_data_granularity_log2: u8,
}

impl GeneralCopyOperations {
    /// DESCRIPTOR LENGTH of 8001h.
    pub const LEN: usize = 0x20;

    /// The descriptor body (after its 4-byte header).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; Self::LEN];
        b[0..4].copy_from_slice(&self.total_concurrent_copies.to_be_bytes());
        b[4..8].copy_from_slice(&self.max_identified_concurrent_copies.to_be_bytes());
        b[8..12].copy_from_slice(&self.max_segment_length.to_be_bytes());
        b[12] = self.data_segment_granularity_log2;
        b[13] = self.inline_data_granularity_log2;
        b
    }

    /// Decode a descriptor body; `None` when it ends before the last field.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let f = Fields(b);
        Some(GeneralCopyOperations {
            total_concurrent_copies: f.u32(0)?,
            max_identified_concurrent_copies: f.u32(4)?,
            max_segment_length: f.u32(8)?,
            data_segment_granularity_log2: f.u8(12)?,
            inline_data_granularity_log2: f.u8(13)?,
        })
    }
}

/// One ROD type descriptor of 0108h Supported ROD Types (SPC-4 §7.8.17.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RodTypeEntry {
    /// ROD TYPE.
    pub rod_type: u32,
    /// ECPY_INT: usable internally by EXTENDED COPY.
    pub ecpy_int: bool,
    /// TOKEN_IN: accepted by WRITE USING TOKEN.
    pub token_in: bool,
    /// TOKEN_OUT: created by POPULATE TOKEN.
    pub token_out: bool,
    /// PREFERENCE INDICATOR.
    pub preference_indicator: u16,
}

impl RodTypeEntry {
    /// Length of one ROD type descriptor.
    pub const LEN: usize = 64;

    /// The 64 bytes of the entry.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut e = [0u8; Self::LEN];
        e[0..4].copy_from_slice(&self.rod_type.to_be_bytes());
        e[4] = (u8::from(self.ecpy_int) << 7) | (u8::from(self.token_in) << 1) | u8::from(self.token_out);
        e[6..8].copy_from_slice(&self.preference_indicator.to_be_bytes());
        e
    }

    /// Decode one entry; `None` when shorter than 64 bytes.
    pub fn decode(e: &[u8]) -> Option<Self> {
        let f = Fields(e.get(..Self::LEN)?);
        let flags = f.u8(4)?;
        Some(RodTypeEntry {
            rod_type: f.u32(0)?,
            ecpy_int: flags & 0x80 != 0,
            token_in: flags & 0x02 != 0,
            token_out: flags & 0x01 != 0,
            preference_indicator: f.u16(6)?,
        })
    }

    /// The 0108h descriptor body for `entries`: 2 reserved bytes, the
    /// 2-byte ROD TYPE DESCRIPTORS LENGTH, the entries.
    pub fn list(entries: &[RodTypeEntry]) -> Vec<u8> {
        let mut b = vec![0u8; 2];
        b.extend_from_slice(&super::len16(entries.len() * Self::LEN));
        for e in entries {
            b.extend_from_slice(&e.encode());
        }
        b
    }
}

/// Descriptor 0106h ROD Token Features (SPC-4 §7.8.17.7), without its ROD
/// device type specific features descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RodTokenFeatures {
    /// REMOTE TOKENS (0: only tokens this copy manager created).
    pub remote_tokens: u8,
    /// MINIMUM TOKEN LIFETIME, seconds.
    pub min_token_lifetime: u32,
    /// MAXIMUM TOKEN LIFETIME, seconds.
    pub max_token_lifetime: u32,
    /// MAXIMUM TOKEN INACTIVITY TIMEOUT, seconds.
    pub max_token_inactivity_timeout: u32,
}

impl RodTokenFeatures {
    /// Bytes of the body before the device type specific features descriptors.
    pub const HEADER_LEN: usize = 44;

    /// The descriptor body: these fields, then `features` (the ROD device
    /// type specific features descriptors, e.g. [`BlockRodFeatures::encode`]).
    pub fn encode(&self, features: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; Self::HEADER_LEN];
        b[0] = self.remote_tokens & 0x0F;
        b[12..16].copy_from_slice(&self.min_token_lifetime.to_be_bytes());
        b[16..20].copy_from_slice(&self.max_token_lifetime.to_be_bytes());
        b[20..24].copy_from_slice(&self.max_token_inactivity_timeout.to_be_bytes());
        b[42..44].copy_from_slice(&super::len16(features.len()));
        b.extend_from_slice(features);
        b
    }

    /// Decode a descriptor body: the fields and the features descriptors
    /// (cut to what arrived; the flag tells whether they were cut short).
    /// `None` when the body ends before the features list length.
    pub fn decode(b: &[u8]) -> Option<(Self, &[u8], bool)> {
        let f = Fields(b);
        let declared = usize::from(f.u16(42)?);
        let features = f.tail(Self::HEADER_LEN);
        let fields = RodTokenFeatures {
            remote_tokens: f.u8(0)? & 0x0F,
            min_token_lifetime: f.u32(12)?,
            max_token_lifetime: f.u32(16)?,
            max_token_inactivity_timeout: f.u32(20)?,
        };
        Some((fields, &features[..declared.min(features.len())], declared > features.len()))
    }
}

/// The block device (PDT 0) ROD device type specific features descriptor
/// inside 0106h (SBC-3 §6.6.4): 48 bytes, DESCRIPTOR LENGTH 002Ch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockRodFeatures {
    /// OPTIMAL BLOCK ROD LENGTH GRANULARITY (blocks).
    pub optimal_block_rod_length_granularity: u16,
    /// MAXIMUM BYTES IN BLOCK ROD.
    pub max_bytes_in_block_rod: u64,
    /// OPTIMAL BYTES IN BLOCK ROD TRANSFER.
    pub optimal_bytes_in_block_rod_transfer: u64,
    /// OPTIMAL BYTES TO TOKEN PER SEGMENT.
    pub optimal_bytes_to_token_per_segment: u64,
    /// OPTIMAL BYTES FROM TOKEN PER SEGMENT.
    pub optimal_bytes_from_token_per_segment: u64,
}

impl BlockRodFeatures {
    /// Length of the descriptor, header included.
    pub const LEN: usize = 48;

    /// The whole descriptor.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut d = [0u8; Self::LEN];
        d[2..4].copy_from_slice(&super::len16(Self::LEN - 4));
        d[6..8].copy_from_slice(&self.optimal_block_rod_length_granularity.to_be_bytes());
        d[8..16].copy_from_slice(&self.max_bytes_in_block_rod.to_be_bytes());
        d[16..24].copy_from_slice(&self.optimal_bytes_in_block_rod_transfer.to_be_bytes());
        d[24..32].copy_from_slice(&self.optimal_bytes_to_token_per_segment.to_be_bytes());
        d[32..40].copy_from_slice(&self.optimal_bytes_from_token_per_segment.to_be_bytes());
        d
    }

    /// Decode a whole descriptor (header included); `None` for another
    /// device type or one that ends before the last field.
    pub fn decode(d: &[u8]) -> Option<Self> {
        let f = Fields(d);
        if f.u8(0)? & 0x1F != 0 {
            return None;
        }
        Some(BlockRodFeatures {
            optimal_block_rod_length_granularity: f.u16(6)?,
            max_bytes_in_block_rod: f.u64(8)?,
            optimal_bytes_in_block_rod_transfer: f.u64(16)?,
            optimal_bytes_to_token_per_segment: f.u64(24)?,
            optimal_bytes_from_token_per_segment: f.u64(32)?,
        })
    }
}

/// One entry of 0001h Supported Commands: an operation code and its service actions.
pub type CommandEntry<'a> = (u8, &'a [u8]);

/// Descriptor 0001h Supported Commands: a 1-byte COMMANDS SUPPORTED LIST
/// LENGTH, then per operation code the code, a 1-byte count and that many
/// service actions.
pub struct SupportedCommands;

impl SupportedCommands {
    /// The descriptor body for `(operation code, service actions)` pairs
    /// (lists saturate at 255 bytes).
    pub fn encode(commands: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut list = Vec::new();
        for (op, sas) in commands {
            let sas = &sas[..sas.len().min(usize::from(u8::MAX))];
            list.push(*op);
            list.push(sas.len() as u8);
            list.extend_from_slice(sas);
        }
        list.truncate(usize::from(u8::MAX));
        let mut b = vec![list.len() as u8];
        b.extend(list);
        b
    }

    /// The `(operation code, service actions)` entries (cut to what
    /// arrived; the flag tells whether the list or an entry was cut
    /// short); `None` for an empty body.
    pub fn decode(b: &[u8]) -> Option<(Vec<CommandEntry<'_>>, bool)> {
        let (n, rest) = b.split_first()?;
        let n = usize::from(*n);
        let mut cut = n > rest.len();
        let mut list = &rest[..n.min(rest.len())];
        let mut commands = Vec::new();
        while let [op, count, tail @ ..] = list {
            let take = usize::from(*count).min(tail.len());
            cut |= take < usize::from(*count);
            commands.push((*op, &tail[..take]));
            list = &tail[take..];
        }
        Some((commands, cut || !list.is_empty()))
    }
}

/// Descriptor 0008h Supported Descriptors: a 1-byte count, then the
/// implemented segment and CSCD descriptor type codes.
pub struct SupportedDescriptors;

impl SupportedDescriptors {
    /// The descriptor body for `codes` (at most 255).
    pub fn encode(codes: &[u8]) -> Vec<u8> {
        let codes = &codes[..codes.len().min(usize::from(u8::MAX))];
        let mut b = vec![codes.len() as u8];
        b.extend_from_slice(codes);
        b
    }

    /// The codes (cut to what arrived; the flag tells whether they were
    /// cut short); `None` for an empty body.
    pub fn decode(b: &[u8]) -> Option<(&[u8], bool)> {
        let (n, codes) = b.split_first()?;
        let n = usize::from(*n);
        Some((&codes[..n.min(codes.len())], n > codes.len()))
    }
}

/// Descriptor 000Ch Supported CSCD Descriptor IDs: a 2-byte list length,
/// then the 2-byte CSCD IDs above 07FFh the copy manager accepts.
pub struct SupportedCscdIds;

impl SupportedCscdIds {
    /// The descriptor body for `ids`.
    pub fn encode(ids: &[u16]) -> Vec<u8> {
        let mut b = super::len16(ids.len() * 2).to_vec();
        for id in ids {
            b.extend_from_slice(&id.to_be_bytes());
        }
        b
    }

    /// The IDs (cut to what arrived; the flag tells whether the list was
    /// cut short or has an odd length); `None` when the body ends before
    /// the list length.
    pub fn decode(b: &[u8]) -> Option<(Vec<u16>, bool)> {
        let f = Fields(b);
        let n = usize::from(f.u16(0)?);
        let list = f.tail(2);
        let ids = list[..n.min(list.len())].chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        Some((ids, n > list.len() || n % 2 == 1))
    }
}

/// The state of a node of the copy domain, as this node last established it
/// (node descriptor byte 0 of page C0h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NodeState(pub u8);

impl NodeState {
    /// Not yet contacted (or no node link to it has been tried).
    pub const UNKNOWN: NodeState = NodeState(0);
    /// Its node link answered and authenticated.
    pub const UP: NodeState = NodeState(1);
    /// Its node link could not be reached or did not authenticate.
    pub const DOWN: NodeState = NodeState(2);
    /// The entry is this node itself.
    pub const SELF: NodeState = NodeState(3);

    /// Lower-case name (`"reserved"` for codes without one).
    pub fn name(self) -> &'static str {
        match self {
            NodeState::UNKNOWN => "unknown",
            NodeState::UP => "up",
            NodeState::DOWN => "down",
            NodeState::SELF => "self",
            _ => "reserved",
        }
    }
}

/// One node of the copy domain (a node descriptor of page C0h).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DomainNode {
    /// Its node-link address as configured (`IP:port`); printable ASCII, at
    /// most [`CopyDomainPage::MAX_ADDRESS_LEN`] bytes on the wire.
    pub address: String,
    /// Its copy-manager id, once a handshake told it (`None` is sent as 16
    /// zero bytes, and 16 zero bytes read back as `None`).
    pub manager_id: Option<[u8; 16]>,
    /// What this node last established about it.
    pub state: NodeState,
    /// Seconds since `state` was last established.
    pub seconds: u32,
}

/// VPD page C0h "oxcopy copy domain" (vendor specific): which copy domain
/// this node belongs to and what it knows of the domain's nodes. Served
/// only while the daemon has installed a provider
/// (`LuRegistry::set_domain_info`). All integers are big-endian, reserved
/// bytes and bits are 0, addresses are printable ASCII padded with NULs.
///
/// ```text
/// byte       field
/// 0          PERIPHERAL QUALIFIER (7:5) | PERIPHERAL DEVICE TYPE (4:0)
/// 1          PAGE CODE = C0h
/// 2..4       PAGE LENGTH (bytes after byte 3)
/// 4          VERSION = 01h
/// 5          FLAGS: bit 0 RMT (remote tokens accepted: the domain lists other nodes); 7:1 reserved
/// 6..8       reserved
/// 8..16      DOMAIN FINGERPRINT (identifies the domain key without revealing it)
/// 16..32     COPY MANAGER ID of this node (the id its ROD tokens carry)
/// 32..35     reserved
/// 35         LISTEN ADDRESS LENGTH n (0..=64, a multiple of 4)
/// 36..36+n   LISTEN ADDRESS: where this node serves the node link (empty: it serves none)
/// 36+n..     node descriptors (0..=64), to the end of the page
///
/// node descriptor, 28 + m bytes
/// 0          NODE STATE: 00h unknown, 01h up, 02h down, 03h self
/// 1          reserved
/// 2..4       DESCRIPTOR LENGTH (bytes after byte 3) = 24 + m
/// 4..8       SECONDS since the state was last established
/// 8..24      COPY MANAGER ID of the node (all zero: not known yet)
/// 24..27     reserved
/// 27         ADDRESS LENGTH m (0..=64, a multiple of 4)
/// 28..28+m   ADDRESS: the node's node-link address as configured
/// ```
///
/// The largest page (64 nodes, every address 64 bytes) is 5988 bytes, well
/// within the 2-byte PAGE LENGTH and INQUIRY's 2-byte ALLOCATION LENGTH
/// (which cuts the page like any other). A decoder reads the descriptors up
/// to PAGE LENGTH and skips bytes a longer DESCRIPTOR LENGTH announces.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyDomainPage {
    /// DOMAIN FINGERPRINT.
    pub fingerprint: [u8; 8],
    /// This node's copy-manager id.
    pub manager_id: [u8; 16],
    /// RMT: tokens made by other nodes of the domain are accepted.
    pub remote_tokens: bool,
    /// This node's node-link listen address (empty: none).
    pub listen: String,
    /// The configured nodes, this one included when listed.
    pub nodes: Vec<DomainNode>,
}

/// Why a page C0h does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CopyDomainPageError {
    /// Fewer bytes arrived than PAGE LENGTH announces.
    #[error("page C0h cut short: {declared} bytes announced, {got} arrived")]
    Truncated {
        /// 4 + PAGE LENGTH.
        declared: usize,
        /// Bytes received.
        got: usize,
    },
    /// Another page.
    #[error("page code {0:02X}h where C0h was expected")]
    PageCode(u8),
    /// A VERSION this decoder does not know.
    #[error("copy domain page version {0} is not supported (1 is)")]
    Version(u8),
    /// PAGE LENGTH ends inside the fixed fields or the listen address.
    #[error("page C0h too short for its fixed fields")]
    Short,
    /// The listen address: a length over 64 or not a multiple of 4, or
    /// bytes that are not printable ASCII.
    #[error("malformed listen address")]
    ListenAddress,
    /// The address of node descriptor `.0` (counted from 0), malformed
    /// like [`CopyDomainPageError::ListenAddress`].
    #[error("malformed address in node descriptor {0}")]
    NodeAddress(usize),
    /// A node descriptor cut short by PAGE LENGTH, or whose DESCRIPTOR
    /// LENGTH does not cover its fields.
    #[error("node descriptor {0} is malformed or cut short")]
    Node(usize),
    /// More than [`CopyDomainPage::MAX_NODES`] node descriptors.
    #[error("more than 64 node descriptors")]
    TooManyNodes,
}

impl CopyDomainPage {
    /// VERSION of this layout.
    pub const VERSION: u8 = 1;
    /// Node descriptors at most (further nodes are not reported).
    pub const MAX_NODES: usize = 64;
    /// Address bytes at most (longer addresses are cut).
    pub const MAX_ADDRESS_LEN: usize = 64;
    /// Bytes before the listen address, page header included.
    pub const FIXED_LEN: usize = 36;
    /// Bytes of a node descriptor before its address.
    pub const NODE_FIXED_LEN: usize = 28;
    /// The largest page, header included.
    pub const MAX_PAGE_LEN: usize =
        Self::FIXED_LEN + Self::MAX_ADDRESS_LEN + Self::MAX_NODES * (Self::NODE_FIXED_LEN + Self::MAX_ADDRESS_LEN);

    /// The whole page, header included, with `pdt` as byte 0 (peripheral
    /// qualifier and device type). Addresses are cut to 64 bytes (other
    /// characters than printable ASCII become `?`), nodes to the first 64.
    pub fn encode(&self, pdt: u8) -> Vec<u8> {
        let listen = address_field(&self.listen);
        let mut b = vec![0u8; Self::FIXED_LEN];
        b[4] = Self::VERSION;
        b[5] = u8::from(self.remote_tokens);
        b[8..16].copy_from_slice(&self.fingerprint);
        b[16..32].copy_from_slice(&self.manager_id);
        b[35] = listen.len() as u8;
        b.extend_from_slice(&listen);
        for n in self.nodes.iter().take(Self::MAX_NODES) {
            let addr = address_field(&n.address);
            let mut d = [0u8; Self::NODE_FIXED_LEN];
            d[0] = n.state.0;
            d[2..4].copy_from_slice(&super::len16(Self::NODE_FIXED_LEN - 4 + addr.len()));
            d[4..8].copy_from_slice(&n.seconds.to_be_bytes());
            d[8..24].copy_from_slice(&n.manager_id.unwrap_or_default());
            d[27] = addr.len() as u8;
            b.extend_from_slice(&d);
            b.extend_from_slice(&addr);
        }
        let body_len = b.len() - 4;
        b[0] = pdt;
        b[1] = VpdPage::COPY_DOMAIN;
        b[2..4].copy_from_slice(&super::len16(body_len));
        b
    }

    /// Decode a page as received (header included). Bounded: every field is
    /// read through [`Fields`], at most 64 descriptors are accepted, and
    /// every length is checked against PAGE LENGTH and what arrived.
    pub fn decode(page: &[u8]) -> Result<CopyDomainPage, CopyDomainPageError> {
        let (body, cut) = page_body(page);
        if cut {
            let declared = 4 + usize::from(Fields(page).u16(2).unwrap_or(0));
            return Err(CopyDomainPageError::Truncated { declared, got: page.len() });
        }
        let end = 4 + body.len();
        let f = Fields(&page[..end]);
        let code = f.u8(1).unwrap_or(0);
        if code != VpdPage::COPY_DOMAIN {
            return Err(CopyDomainPageError::PageCode(code));
        }
        let version = f.u8(4).ok_or(CopyDomainPageError::Short)?;
        if version != Self::VERSION {
            return Err(CopyDomainPageError::Version(version));
        }
        let flags = f.u8(5).ok_or(CopyDomainPageError::Short)?;
        let fingerprint = f.array(8).ok_or(CopyDomainPageError::Short)?;
        let manager_id = f.array(16).ok_or(CopyDomainPageError::Short)?;
        let n = usize::from(f.u8(35).ok_or(CopyDomainPageError::Short)?);
        let listen = f.slice(Self::FIXED_LEN, n).ok_or(CopyDomainPageError::Short)?;
        let listen = address_text(listen).ok_or(CopyDomainPageError::ListenAddress)?;
        let mut at = Self::FIXED_LEN + n;
        let mut nodes = Vec::new();
        while at < end {
            let i = nodes.len();
            if i == Self::MAX_NODES {
                return Err(CopyDomainPageError::TooManyNodes);
            }
            let bad = CopyDomainPageError::Node(i);
            let len = usize::from(f.u16(at + 2).ok_or(bad)?);
            let d = Fields(f.slice(at, 4 + len).ok_or(bad)?);
            if len < Self::NODE_FIXED_LEN - 4 {
                return Err(bad);
            }
            let m = usize::from(d.u8(27).ok_or(bad)?);
            let addr = d.slice(Self::NODE_FIXED_LEN, m).ok_or(bad)?;
            let id: [u8; 16] = d.array(8).ok_or(bad)?;
            nodes.push(DomainNode {
                address: address_text(addr).ok_or(CopyDomainPageError::NodeAddress(i))?,
                manager_id: (id != [0; 16]).then_some(id),
                state: NodeState(d.u8(0).ok_or(bad)?),
                seconds: d.u32(4).ok_or(bad)?,
            });
            at += 4 + len;
        }
        Ok(CopyDomainPage { fingerprint, manager_id, remote_tokens: flags & 0x01 != 0, listen, nodes })
    }
}

/// An address as sent: printable ASCII (anything else becomes `?`), cut to
/// 64 bytes, NUL-padded to a multiple of 4.
fn address_field(s: &str) -> Vec<u8> {
    let mut v: Vec<u8> = s
        .chars()
        .map(|c| if c == ' ' || c.is_ascii_graphic() { c as u8 } else { b'?' })
        .take(CopyDomainPage::MAX_ADDRESS_LEN)
        .collect();
    v.resize(v.len().div_ceil(4) * 4, 0);
    v
}

/// The text of an address field: its bytes up to the first NUL, which must
/// be printable ASCII; `None` for a field over 64 bytes, of a length that is
/// not a multiple of 4, or with other bytes.
fn address_text(field: &[u8]) -> Option<String> {
    if field.len() > CopyDomainPage::MAX_ADDRESS_LEN || field.len() % 4 != 0 {
        return None;
    }
    let text = field.split(|&b| b == 0).next().unwrap_or_default();
    text.iter().all(|&b| (0x20..=0x7E).contains(&b)).then(|| text.iter().map(|&b| char::from(b)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_framing() {
        assert_eq!(page_body(&[0, 0x80, 0, 2, b'A', b'B', b'C']), (&b"AB"[..], false));
        assert_eq!(page_body(&[0, 0x80, 0, 4, b'A']), (&b"A"[..], true));
        assert_eq!(page_body(&[0, 0x80]), (&[][..], true));
    }

    #[test]
    fn designation_encoding() {
        let mut out = Vec::new();
        Designation::new(None, CodeSet::BINARY, Association::LOGICAL_UNIT, DesignatorType::NAA, &[0x60, 1])
            .encode_into(&mut out);
        let port = Designation::new(
            Some(PROTOCOL_ISCSI),
            CodeSet::BINARY,
            Association::TARGET_PORT,
            DesignatorType::RELATIVE_TARGET_PORT,
            &[0, 0, 0, 1],
        );
        port.encode_into(&mut out);
        assert_eq!(out, [0x01, 0x03, 0, 2, 0x60, 1, 0x51, 0x94, 0, 4, 0, 0, 0, 1]);
        let p = page(0, VpdPage::DEVICE_IDENTIFICATION, out);
        assert_eq!(&p[..4], &[0, 0x83, 0, 14]);
        let d: Vec<_> = designations(&p).collect();
        assert_eq!((d[0].protocol(), d[1].protocol()), (None, Some(PROTOCOL_ISCSI)));
        assert_eq!(d[1], port);
        assert_eq!(scsi_name("iqn"), b"iqn\0".to_vec());
        assert_eq!(scsi_name("iqn.x"), b"iqn.x\0\0\0".to_vec());
        assert_eq!(scsi_name(&"a".repeat(400)).len(), 256);
    }

    #[test]
    fn designator_choice_and_walk() {
        // Port designator, then T10, then NAA: NAA wins.
        let mut body = vec![0x51, 0x94, 0, 4, 0, 0, 0, 1];
        body.extend_from_slice(&[0x02, 0x01, 0, 8]);
        body.extend_from_slice(b"OXCOPY  ");
        body.extend_from_slice(&[0x01, 0x03, 0, 16]);
        body.extend_from_slice(&[0x60; 16]);
        let p = page(0, 0x83, body.clone());
        let all: Vec<_> = designations(&p).map(|d| (d.association(), d.designator_type(), d.value.len())).collect();
        assert_eq!(all, vec![(1, 4, 4), (0, 1, 8), (0, 3, 16)]);
        let d = lu_designator(&p).unwrap();
        assert_eq!((d.code_set, d.assoc_type, d.value), (0x01, 0x03, vec![0x60; 16]));
        // Every prefix: a descriptor cut short ends the walk, never a panic.
        for n in 0..p.len() {
            let mut cut = p[..n].to_vec();
            if n >= 4 {
                cut[2..4].copy_from_slice(&((n - 4) as u16).to_be_bytes());
            }
            let want = [8usize, 20, 40].iter().filter(|end| 4 + **end <= n).count();
            assert_eq!(designations(&cut).count(), want, "prefix {n}");
            assert_eq!(lu_designator(&cut).is_some(), n >= 24, "prefix {n}");
        }
        // Too long for a CSCD: skipped.
        let mut long = vec![0x01, 0x03, 0, 21];
        long.extend_from_slice(&[0x60; 21]);
        assert_eq!(lu_designator(&page(0, 0x83, long)), None);
    }

    #[test]
    fn tpc_descriptors_walk_and_rod_limits_round_trip() {
        let l = BlockRodLimits {
            max_range_descriptors: 64,
            max_inactivity_timeout: 3600,
            default_inactivity_timeout: 60,
            max_token_transfer_size: 1 << 24,
            optimal_transfer_count: 2048,
        };
        let mut tpc = TpcPage::new();
        tpc.push(TpcDescriptor::BLOCK_DEVICE_ROD_TOKEN_LIMITS, &l.encode());
        tpc.push(TpcDescriptor::SUPPORTED_CSCD_IDS, &[0, 2, 0xFF, 0xFF, 0xAA]);
        let p = page(0, 0x8F, tpc.into_body());
        assert_eq!(&p[4..8], &[0, 0, 0, 0x20]);
        assert_eq!(&p[12..16], &[0, 0, 0, 64]);
        let d: Vec<_> = tpc_descriptors(&p).collect();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0], (0x0000, &p[8..40]));
        assert_eq!(d[1], (0x000C, &[0, 2, 0xFF, 0xFF, 0xAA, 0, 0, 0][..]));
        assert_eq!(BlockRodLimits::decode(d[0].1), Some(l));
        for n in 0..p.len() {
            let mut cut = p[..n].to_vec();
            if n >= 4 {
                cut[2..4].copy_from_slice(&((n - 4) as u16).to_be_bytes());
            }
            let want = [36usize, 48].iter().filter(|end| 4 + **end <= n).count();
            assert_eq!(tpc_descriptors(&cut).count(), want, "prefix {n}");
        }
        for n in 0..BlockRodLimits::LEN {
            assert_eq!(BlockRodLimits::decode(&l.encode()[..n]), None);
        }
    }

    #[test]
    fn supported_commands_round_trip() {
        let b = SupportedCommands::encode(&[(0x83, vec![0x00, 0x10]), (0x84, vec![0x07])]);
        assert_eq!(b, [7, 0x83, 2, 0x00, 0x10, 0x84, 1, 0x07]);
        let (cmds, cut) = SupportedCommands::decode(&b).unwrap();
        assert_eq!((cmds, cut), (vec![(0x83, &[0x00, 0x10][..]), (0x84, &[0x07][..])], false));
        // Every prefix: what arrived, flagged as cut short; never a panic.
        for n in 1..b.len() {
            let (cmds, cut) = SupportedCommands::decode(&b[..n]).unwrap();
            assert!(cut, "prefix {n}");
            assert_eq!(cmds.len(), [0, 0, 1, 1, 1, 1, 2][n - 1], "prefix {n}");
        }
        assert_eq!(SupportedCommands::decode(&[]), None);
    }

    #[test]
    fn code_lists_round_trip() {
        let b = SupportedDescriptors::encode(&[0x02, 0x07, 0xE4]);
        assert_eq!(b, [3, 0x02, 0x07, 0xE4]);
        assert_eq!(SupportedDescriptors::decode(&b), Some((&b[1..], false)));
        assert_eq!(SupportedDescriptors::decode(&b[..2]), Some((&b[1..2], true)));
        assert_eq!(SupportedDescriptors::decode(&[]), None);
        let b = SupportedCscdIds::encode(&[0xFFFF, 0xC000]);
        assert_eq!(b, [0, 4, 0xFF, 0xFF, 0xC0, 0]);
        assert_eq!(SupportedCscdIds::decode(&b), Some((vec![0xFFFF, 0xC000], false)));
        for n in 0..b.len() {
            let got = SupportedCscdIds::decode(&b[..n]);
            assert_eq!(got.map(|(ids, cut)| (ids.len(), cut)), (n >= 2).then(|| ((n - 2) / 2, true)), "prefix {n}");
        }
        assert_eq!(SupportedCscdIds::decode(&[0, 3, 0xFF, 0xFF, 0]), Some((vec![0xFFFF], true)), "odd length");
    }

    #[test]
    fn rod_token_features_round_trip() {
        let t = RodTokenFeatures {
            remote_tokens: 0,
            min_token_lifetime: 1,
            max_token_lifetime: u32::MAX,
            max_token_inactivity_timeout: 3600,
        };
        let f = BlockRodFeatures {
            optimal_block_rod_length_granularity: 8,
            max_bytes_in_block_rod: 1 << 30,
            optimal_bytes_in_block_rod_transfer: 1 << 30,
            optimal_bytes_to_token_per_segment: u64::MAX,
            optimal_bytes_from_token_per_segment: 16 << 20,
        };
        let fb = f.encode();
        assert_eq!(&fb[..8], &[0, 0, 0, 0x2C, 0, 0, 0, 8]);
        let b = t.encode(&fb);
        assert_eq!(b.len(), 44 + 48);
        assert_eq!(&b[12..24], &[0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x0E, 0x10]);
        assert_eq!(&b[42..44], &[0, 48]);
        assert_eq!(RodTokenFeatures::decode(&b), Some((t, &fb[..], false)));
        assert_eq!(BlockRodFeatures::decode(&fb), Some(f));
        assert_eq!(RodTokenFeatures::decode(&b[..60]), Some((t, &fb[..16], true)));
        assert!((0..44).all(|n| RodTokenFeatures::decode(&b[..n]).is_none()));
        assert!((0..40).all(|n| BlockRodFeatures::decode(&fb[..n]).is_none()));
        let mut other = fb;
        other[0] = 0x01;
        assert_eq!(BlockRodFeatures::decode(&other), None);
    }

    #[test]
    fn copy_descriptors_round_trip() {
        let p = ParameterData {
            max_cscd_descriptors: 0x0102,
            max_segment_descriptors: 0x0304,
            max_descriptor_list_length: 0x0506_0708,
            max_inline_data_length: 9,
        };
        let b = p.encode();
        assert_eq!(b.len(), 0x1C);
        assert_eq!(&b[..16], &[0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 9]);
        assert_eq!(ParameterData::decode(&b), Some(p));
        assert!((0..16).all(|n| ParameterData::decode(&b[..n]).is_none()));
        let g = GeneralCopyOperations {
            total_concurrent_copies: 1,
            max_identified_concurrent_copies: 2,
            max_segment_length: 3,
            data_segment_granularity_log2: 4,
            inline_data_granularity_log2: 5,
        };
        let b = g.encode();
        assert_eq!(b.len(), 0x20);
        assert_eq!(&b[..14], &[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 4, 5]);
        assert_eq!(GeneralCopyOperations::decode(&b), Some(g));
        assert!((0..14).all(|n| GeneralCopyOperations::decode(&b[..n]).is_none()));
        let t = RodTypeEntry {
            rod_type: 0xFFFF_0001,
            ecpy_int: true,
            token_in: true,
            token_out: false,
            preference_indicator: 7,
        };
        let l = RodTypeEntry::list(&[t, RodTypeEntry::default()]);
        assert_eq!(&l[..12], &[0, 0, 0, 128, 0xFF, 0xFF, 0, 1, 0x82, 0, 0, 7]);
        assert_eq!(l.len(), 4 + 128);
        assert_eq!(RodTypeEntry::decode(&l[4..]), Some(t));
        assert!((0..64).all(|n| RodTypeEntry::decode(&l[4..4 + n]).is_none()));
    }

    fn domain_page() -> CopyDomainPage {
        let own: [u8; 16] = std::array::from_fn(|i| 0x10 + i as u8);
        CopyDomainPage {
            fingerprint: [1, 2, 3, 4, 5, 6, 7, 8],
            manager_id: own,
            remote_tokens: true,
            listen: "10.0.0.1:3270".into(),
            nodes: vec![
                DomainNode {
                    address: "10.0.0.1:3270".into(),
                    manager_id: Some(own),
                    state: NodeState::SELF,
                    seconds: 0,
                },
                DomainNode {
                    address: "10.0.0.2:3270".into(),
                    manager_id: Some([0xAA; 16]),
                    state: NodeState::UP,
                    seconds: 0x0102_0304,
                },
                DomainNode { address: "[fd00::3]:3270".into(), manager_id: None, state: NodeState::DOWN, seconds: 7 },
            ],
        }
    }

    #[test]
    fn copy_domain_page_bytes() {
        let p = domain_page();
        let b = p.encode(0x00);
        let mut want = vec![0x00, 0xC0, 0x00, 0xB4, 0x01, 0x01, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        want.extend(0x10..0x20u8);
        want.extend_from_slice(&[0, 0, 0, 16]);
        want.extend_from_slice(b"10.0.0.1:3270\0\0\0");
        // Node 0: self.
        want.extend_from_slice(&[0x03, 0, 0, 40, 0, 0, 0, 0]);
        want.extend(0x10..0x20u8);
        want.extend_from_slice(&[0, 0, 0, 16]);
        want.extend_from_slice(b"10.0.0.1:3270\0\0\0");
        // Node 1: up for 0x01020304 s.
        want.extend_from_slice(&[0x01, 0, 0, 40, 1, 2, 3, 4]);
        want.extend_from_slice(&[0xAA; 16]);
        want.extend_from_slice(&[0, 0, 0, 16]);
        want.extend_from_slice(b"10.0.0.2:3270\0\0\0");
        // Node 2: down for 7 s, id unknown.
        want.extend_from_slice(&[0x02, 0, 0, 40, 0, 0, 0, 7]);
        want.extend_from_slice(&[0; 16]);
        want.extend_from_slice(&[0, 0, 0, 16]);
        want.extend_from_slice(b"[fd00::3]:3270\0\0");
        assert_eq!(b, want);
        assert_eq!(b.len(), 4 + 0xB4);
        assert_eq!(CopyDomainPage::decode(&b), Ok(p));
        assert_eq!(page_body(&b), (&b[4..], false));
        // No listen address, no nodes: the fixed part alone.
        let empty = CopyDomainPage::default().encode(0x00);
        assert_eq!(&empty[..8], &[0, 0xC0, 0, 32, 1, 0, 0, 0]);
        assert_eq!(empty.len(), CopyDomainPage::FIXED_LEN);
        assert_eq!(CopyDomainPage::decode(&empty), Ok(CopyDomainPage::default()));
        assert_eq!(NodeState::default(), NodeState::UNKNOWN);
        let names: Vec<_> = (0..5).map(|c| NodeState(c).name()).collect();
        assert_eq!(names, ["unknown", "up", "down", "self", "reserved"]);
    }

    #[test]
    fn copy_domain_page_bounds() {
        // 65 nodes with 100-byte, partly non-ASCII addresses: 64 nodes of 64 bytes.
        let long = format!("é{}", "x".repeat(99));
        let node = DomainNode { address: long.clone(), manager_id: None, state: NodeState::UP, seconds: 1 };
        let p = CopyDomainPage { listen: long, nodes: vec![node; 65], ..CopyDomainPage::default() };
        let b = p.encode(0);
        assert_eq!(b.len(), CopyDomainPage::MAX_PAGE_LEN);
        assert_eq!(b.len(), 5988);
        let d = CopyDomainPage::decode(&b).unwrap();
        assert_eq!(d.nodes.len(), 64);
        assert_eq!(d.listen, format!("?{}", "x".repeat(63)));
        assert!(d.nodes.iter().all(|n| n.address == d.listen));
        // A 65th descriptor is refused.
        let mut more = b.clone();
        more.extend_from_slice(&b[CopyDomainPage::FIXED_LEN + 64..][..92]);
        let n = (more.len() - 4) as u16;
        more[2..4].copy_from_slice(&n.to_be_bytes());
        assert_eq!(CopyDomainPage::decode(&more), Err(CopyDomainPageError::TooManyNodes));
    }

    #[test]
    fn copy_domain_page_malformed() {
        let b = domain_page().encode(0);
        let with = |at: usize, v: u8| {
            let mut c = b.clone();
            c[at] = v;
            CopyDomainPage::decode(&c)
        };
        assert_eq!(with(1, 0xC1), Err(CopyDomainPageError::PageCode(0xC1)));
        assert_eq!(with(4, 2), Err(CopyDomainPageError::Version(2)));
        assert_eq!(with(35, 15), Err(CopyDomainPageError::ListenAddress), "not a multiple of 4");
        assert_eq!(with(36, 0x7F), Err(CopyDomainPageError::ListenAddress), "not printable");
        // Node 1 (at 96): DESCRIPTOR LENGTH too small for its fields, then
        // an ADDRESS LENGTH past the descriptor, then a bad address byte.
        assert_eq!(with(99, 20), Err(CopyDomainPageError::Node(1)));
        assert_eq!(with(96 + 27, 20), Err(CopyDomainPageError::Node(1)));
        assert_eq!(with(96 + 28, 0x80), Err(CopyDomainPageError::NodeAddress(1)));
        // A longer DESCRIPTOR LENGTH: the extra bytes are skipped.
        let mut node0 = b[52..96].to_vec();
        node0[3] = 44;
        node0.extend_from_slice(&[0; 4]);
        let mut l = b[..52].to_vec();
        l.extend_from_slice(&node0);
        let len = (l.len() - 4) as u16;
        l[2..4].copy_from_slice(&len.to_be_bytes());
        let got = CopyDomainPage::decode(&l).unwrap();
        assert_eq!(got.nodes, domain_page().nodes[..1]);
    }

    #[test]
    fn copy_domain_page_every_prefix() {
        let b = domain_page().encode(0);
        for n in 0..b.len() {
            // As received: PAGE LENGTH promises more than arrived.
            let declared = if n < 4 { 4 } else { b.len() };
            let got = CopyDomainPage::decode(&b[..n]);
            assert_eq!(got, Err(CopyDomainPageError::Truncated { declared, got: n }), "prefix {n}");
            // Cut by the sender: PAGE LENGTH matches, so only whole
            // descriptors decode; anything else is an error, never a panic.
            if n >= 4 {
                let mut c = b[..n].to_vec();
                c[2..4].copy_from_slice(&((n - 4) as u16).to_be_bytes());
                match CopyDomainPage::decode(&c) {
                    Ok(p) => {
                        let nodes = [52, 96, 140].iter().position(|&e| e == n).expect("a descriptor boundary");
                        assert_eq!(p.nodes, domain_page().nodes[..nodes], "prefix {n}");
                    }
                    Err(e) => assert!(![52, 96, 140].contains(&n), "prefix {n}: {e}"),
                }
            }
        }
    }

    mod domain_props {
        use super::super::*;
        use proptest::prelude::*;

        fn node() -> impl Strategy<Value = DomainNode> {
            ("[ -~]{0,64}", proptest::option::of(any::<[u8; 16]>()), any::<u8>(), any::<u32>()).prop_map(
                |(address, id, state, seconds)| DomainNode {
                    address,
                    manager_id: id.filter(|id| *id != [0; 16]),
                    state: NodeState(state),
                    seconds,
                },
            )
        }

        fn page() -> impl Strategy<Value = CopyDomainPage> {
            (
                any::<[u8; 8]>(),
                any::<[u8; 16]>(),
                any::<bool>(),
                "[ -~]{0,64}",
                proptest::collection::vec(node(), 0..=CopyDomainPage::MAX_NODES),
            )
                .prop_map(|(fingerprint, manager_id, remote_tokens, listen, nodes)| CopyDomainPage {
                    fingerprint,
                    manager_id,
                    remote_tokens,
                    listen,
                    nodes,
                })
        }

        proptest! {
            #[test]
            fn decode_inverts_encode(p in page(), pdt in any::<u8>()) {
                let b = p.encode(pdt);
                prop_assert!(b.len() <= CopyDomainPage::MAX_PAGE_LEN);
                prop_assert_eq!(b[0], pdt);
                prop_assert_eq!(CopyDomainPage::decode(&b), Ok(p));
            }

            #[test]
            fn decode_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
                if bytes.len() >= 5 {
                    bytes[1] = VpdPage::COPY_DOMAIN;
                    bytes[4] = CopyDomainPage::VERSION;
                }
                let _ = CopyDomainPage::decode(&bytes);
            }
        }
    }
}
