//! The Third-party Copy VPD page (8Fh): every third-party copy descriptor of
//! SPC-4 / SBC-3 that a disk target advertises (see the copy-offload digest
//! §6), decoded into named values; unknown descriptor types are kept as hex.
//!
//! Layout: `B0 qualifier|PDT, B1 8Fh, B2-3 PAGE LENGTH, B4..` descriptors,
//! each `B0-1 DESCRIPTOR TYPE, B2-3 DESCRIPTOR LENGTH (bytes after B3), body`.

use super::{code16, code32, code8, hex, page_body, Fields};
use oxcopy_scsi::wire::vpd::{
    BlockRodFeatures, BlockRodLimits, GeneralCopyOperations, ParameterData, RodTokenFeatures, RodTypeEntry,
    SupportedCommands, SupportedCscdIds, SupportedDescriptors, TpcDescriptor as TpcType,
};
use serde::Serialize;

/// The decoded page.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ThirdPartyCopy {
    pub descriptors: Vec<TpcDescriptor>,
    /// The page or a descriptor was cut short (what is missing is not shown).
    pub truncated: bool,
}

/// One third-party copy descriptor.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TpcDescriptor {
    /// `0000h`-style type code.
    #[serde(rename = "type")]
    pub type_code: String,
    pub name: &'static str,
    /// DESCRIPTOR LENGTH (bytes after byte 3).
    pub length: u16,
    #[serde(skip)]
    pub code: u16,
    #[serde(flatten)]
    pub body: TpcBody,
}

/// A code and its name (`{"code": "02h", "name": "block → block"}`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CodeName {
    pub code: String,
    pub name: &'static str,
    #[serde(skip)]
    pub value: u32,
}

/// One opcode of the Supported Commands descriptor.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SupportedCommand {
    pub opcode: String,
    pub name: &'static str,
    pub service_actions: Vec<CodeName>,
    #[serde(skip)]
    pub op: u8,
}

/// One entry of the Supported ROD Types descriptor.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RodType {
    pub rod_type: String,
    pub name: &'static str,
    /// Usable internally by EXTENDED COPY.
    pub ecpy_int: bool,
    /// Accepted by WRITE USING TOKEN / ROD CSCDs.
    pub token_in: bool,
    /// Can be produced by POPULATE TOKEN.
    pub token_out: bool,
    pub preference_indicator: u16,
    #[serde(skip)]
    pub value: u32,
}

/// A ROD device type specific features descriptor (inside 0106h).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum RodDeviceFeatures {
    /// Block devices (PDT 0), 48 bytes.
    Block {
        peripheral_device_type: u8,
        descriptor_format: u8,
        optimal_block_rod_length_granularity: u16,
        maximum_bytes_in_block_rod: u64,
        optimal_bytes_in_block_rod_transfer: u64,
        optimal_bytes_to_token_per_segment: u64,
        optimal_bytes_from_token_per_segment: u64,
    },
    /// Another device type, or cut short: raw bytes.
    Other { peripheral_device_type: u8, data: String },
}

/// Descriptor bodies. Values are as sent: 0 often means "not reported",
/// FFFFFFFFh "no limit" (see the summary in [`crate::offload`]).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum TpcBody {
    /// 0000h (SBC-3), lengths in logical blocks, timeouts in seconds.
    BlockDeviceRodLimits {
        maximum_range_descriptors: u16,
        maximum_inactivity_timeout: u32,
        default_inactivity_timeout: u32,
        maximum_token_transfer_size: u64,
        optimal_transfer_count: u64,
    },
    /// 0001h.
    SupportedCommands { commands: Vec<SupportedCommand> },
    /// 0004h.
    ParameterData {
        maximum_cscd_descriptor_count: u16,
        maximum_segment_descriptor_count: u16,
        maximum_descriptor_list_length: u32,
        maximum_inline_data_length: u32,
    },
    /// 0008h: segment and CSCD descriptor type codes.
    SupportedDescriptors { descriptors: Vec<CodeName> },
    /// 000Ch: CSCD IDs above 07FFh.
    SupportedCscdIds { cscd_ids: Vec<CodeName> },
    /// 0106h.
    RodTokenFeatures {
        remote_tokens: u8,
        remote_tokens_meaning: &'static str,
        minimum_token_lifetime: u32,
        maximum_token_lifetime: u32,
        maximum_token_inactivity_timeout: u32,
        device_type_features: Vec<RodDeviceFeatures>,
    },
    /// 0108h.
    SupportedRodTypes { rod_types: Vec<RodType> },
    /// 8001h.
    GeneralCopyOperations {
        total_concurrent_copies: u32,
        maximum_identified_concurrent_copies: u32,
        maximum_segment_length: u32,
        data_segment_granularity_log2: u8,
        inline_data_granularity_log2: u8,
    },
    /// 9101h.
    StreamCopyOperations { maximum_stream_device_transfer_size: u32 },
    /// C001h.
    HeldData { held_data_limit: u32, held_data_granularity_log2: u8 },
    /// A type we do not decode.
    Unknown { data: String },
    /// A known type whose body is shorter than its layout.
    Truncated { data: String, note: &'static str },
}

/// Name of a descriptor type.
pub fn descriptor_name(t: u16) -> &'static str {
    match t {
        TpcType::BLOCK_DEVICE_ROD_TOKEN_LIMITS => "Block Device ROD Token Limits",
        TpcType::SUPPORTED_COMMANDS => "Supported Commands",
        TpcType::PARAMETER_DATA => "Parameter Data",
        TpcType::SUPPORTED_DESCRIPTORS => "Supported Descriptors",
        TpcType::SUPPORTED_CSCD_IDS => "Supported CSCD Descriptor IDs",
        0x000D => "Copy Group Identifier",
        TpcType::ROD_TOKEN_FEATURES => "ROD Token Features",
        TpcType::SUPPORTED_ROD_TYPES => "Supported ROD Types",
        TpcType::GENERAL_COPY_OPERATIONS => "General Copy Operations",
        TpcType::STREAM_COPY_OPERATIONS => "Stream Copy Operations",
        TpcType::HELD_DATA => "Held Data",
        _ => "unknown",
    }
}

/// Name of a third-party copy command (opcode 83h/84h + service action).
pub fn command_name(op: u8, sa: u8) -> &'static str {
    match (op, sa) {
        (0x83, 0x00) => "EXTENDED COPY (LID1)",
        (0x83, 0x01) => "EXTENDED COPY (LID4)",
        (0x83, 0x10) => "POPULATE TOKEN",
        (0x83, 0x11) => "WRITE USING TOKEN",
        (0x83, 0x16) => "SET TAPE STREAM MIRRORING",
        (0x83, 0x1c) => "COPY OPERATION ABORT",
        (0x83, 0x1d) => "COPY OPERATION CLOSE",
        (0x84, 0x00) => "RECEIVE COPY STATUS (LID1)",
        (0x84, 0x01) => "RECEIVE COPY DATA (LID1)",
        (0x84, 0x03) => "RECEIVE COPY OPERATING PARAMETERS",
        (0x84, 0x04) => "RECEIVE COPY FAILURE DETAILS (LID1)",
        (0x84, 0x05) => "RECEIVE COPY STATUS (LID4)",
        (0x84, 0x06) => "RECEIVE COPY DATA (LID4)",
        (0x84, 0x07) => "RECEIVE ROD TOKEN INFORMATION",
        (0x84, 0x08) => "REPORT ALL ROD TOKENS",
        _ => "unknown",
    }
}

fn opcode_name(op: u8) -> &'static str {
    match op {
        0x83 => "THIRD-PARTY COPY OUT",
        0x84 => "THIRD-PARTY COPY IN",
        _ => "unknown",
    }
}

/// Name of a segment (00h–BFh) or CSCD (E0h–FFh) descriptor type code.
pub fn descriptor_code_name(c: u8) -> &'static str {
    match c {
        0x00 => "segment: block → stream",
        0x01 => "segment: stream → block",
        0x02 => "segment: block → block",
        0x03 => "segment: stream → stream",
        0x04 => "segment: inline → stream",
        0x05 => "segment: embedded → stream",
        0x06 => "segment: stream → discard",
        0x07 => "segment: verify CSCD",
        0x08 => "segment: block<o> → stream",
        0x09 => "segment: stream → block<o>",
        0x0a => "segment: block<o> → block<o>",
        0x0b => "segment: block → stream, hold data",
        0x0c => "segment: stream → block, hold data",
        0x0d => "segment: block → block, hold data",
        0x0e => "segment: stream → stream, hold data",
        0x0f => "segment: stream → discard, hold data",
        0x10 => "segment: write filemarks",
        0x11 => "segment: space",
        0x12 => "segment: locate",
        0x13 => "segment: tape image copy",
        0x14 => "segment: register persistent reservation key",
        0x15 => "segment: third-party persistent reservation source",
        0x16 => "segment: block image copy",
        0xbe => "segment: populate ROD from block ranges",
        0xbf => "segment: populate ROD from one block range",
        0xe0 => "CSCD: Fibre Channel N_Port_Name",
        0xe1 => "CSCD: Fibre Channel N_Port_ID",
        0xe2 => "CSCD: Fibre Channel N_Port_ID with N_Port_Name checking",
        0xe3 => "CSCD: parallel interface T_L",
        0xe4 => "CSCD: identification descriptor",
        0xe5 => "CSCD: IPv4",
        0xe6 => "CSCD: alias",
        0xe7 => "CSCD: RDMA",
        0xe8 => "CSCD: IEEE 1394 EUI-64",
        0xe9 => "CSCD: SAS serial SCSI protocol",
        0xea => "CSCD: IPv6",
        0xeb => "CSCD: IP copy service",
        0xfe => "CSCD: ROD",
        0xff => "CSCD: descriptor extension",
        _ => "reserved",
    }
}

/// Name of a CSCD descriptor ID above 07FFh.
pub fn cscd_id_name(id: u16) -> &'static str {
    match id {
        0xc000 => "null logical unit (block)",
        0xc001 => "null logical unit (stream)",
        0xf800 => "logical unit identified by the ROD token",
        0xffff => "the logical unit that received the command",
        _ => "reserved",
    }
}

/// Name of a ROD type.
pub fn rod_type_name(t: u32) -> &'static str {
    match t {
        0x0000_0000 => "copy manager internal",
        0x0001_0000 => "access upon reference",
        0x0080_0000 => "point-in-time (default)",
        0x0080_0001 => "point-in-time, change vulnerable",
        0x0080_0002 => "point-in-time, persistent",
        0x0080_0003 => "point-in-time, copy on write",
        0x0080_ffff => "point-in-time, any",
        0xffff_0001 => "block device zero",
        0xff00_0000..=0xffff_ffef => "device type specific",
        0xffff_fff0..=0xffff_ffff => "vendor specific",
        _ => "reserved",
    }
}

fn remote_tokens_meaning(v: u8) -> &'static str {
    match v {
        0 => "only tokens created by this copy manager",
        4 => "tokens of other copy managers in the same SCSI target device",
        6 => "tokens of copy managers in any SCSI target device",
        _ => "reserved",
    }
}

/// Decode VPD 8Fh (header included).
pub fn decode_third_party_copy(d: &[u8]) -> ThirdPartyCopy {
    let (body, mut truncated) = page_body(d);
    let mut descriptors = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let b = Fields(rest);
        let (Some(code), Some(len)) = (b.u16(0), b.u16(2)) else {
            truncated = true;
            break;
        };
        let Some(desc) = b.slice(0, 4 + len as usize) else {
            // Keep what there is of the last descriptor.
            truncated = true;
            descriptors.push(TpcDescriptor {
                type_code: code16(code),
                name: descriptor_name(code),
                length: len,
                code,
                body: TpcBody::Truncated { data: hex(b.tail(4)), note: "descriptor cut short by the page length" },
            });
            break;
        };
        let body = decode_descriptor(code, desc, &mut truncated);
        descriptors.push(TpcDescriptor {
            type_code: code16(code),
            name: descriptor_name(code),
            length: len,
            code,
            body,
        });
        rest = &rest[desc.len()..];
    }
    ThirdPartyCopy { descriptors, truncated }
}

/// Decode one descriptor (`d` = the whole descriptor, header included).
fn decode_descriptor(code: u16, d: &[u8], truncated: &mut bool) -> TpcBody {
    let b = Fields(d);
    let short = |need: usize, truncated: &mut bool| {
        *truncated = true;
        TpcBody::Truncated {
            data: hex(b.tail(4)),
            note: if need == 36 { "shorter than the 36-byte layout" } else { "shorter than its layout" },
        }
    };
    match code {
        TpcType::BLOCK_DEVICE_ROD_TOKEN_LIMITS => {
            let Some(l) = BlockRodLimits::decode(b.tail(4)) else {
                return short(36, truncated);
            };
            TpcBody::BlockDeviceRodLimits {
                maximum_range_descriptors: l.max_range_descriptors,
                maximum_inactivity_timeout: l.max_inactivity_timeout,
                default_inactivity_timeout: l.default_inactivity_timeout,
                maximum_token_transfer_size: l.max_token_transfer_size,
                optimal_transfer_count: l.optimal_transfer_count,
            }
        }
        TpcType::SUPPORTED_COMMANDS => {
            let Some((list, cut)) = SupportedCommands::decode(b.tail(4)) else { return short(5, truncated) };
            *truncated |= cut;
            let commands = list
                .into_iter()
                .map(|(op, sas)| SupportedCommand {
                    opcode: code8(op),
                    name: opcode_name(op),
                    service_actions: sas
                        .iter()
                        .map(|&sa| CodeName { code: code8(sa), name: command_name(op, sa), value: sa as u32 })
                        .collect(),
                    op,
                })
                .collect();
            TpcBody::SupportedCommands { commands }
        }
        TpcType::PARAMETER_DATA => {
            let Some(p) = ParameterData::decode(b.tail(4)) else {
                return short(20, truncated);
            };
            TpcBody::ParameterData {
                maximum_cscd_descriptor_count: p.max_cscd_descriptors,
                maximum_segment_descriptor_count: p.max_segment_descriptors,
                maximum_descriptor_list_length: p.max_descriptor_list_length,
                maximum_inline_data_length: p.max_inline_data_length,
            }
        }
        TpcType::SUPPORTED_DESCRIPTORS => {
            let Some((codes, cut)) = SupportedDescriptors::decode(b.tail(4)) else { return short(5, truncated) };
            *truncated |= cut;
            let descriptors = codes
                .iter()
                .map(|&c| CodeName { code: code8(c), name: descriptor_code_name(c), value: c as u32 })
                .collect();
            TpcBody::SupportedDescriptors { descriptors }
        }
        TpcType::SUPPORTED_CSCD_IDS => {
            let Some((ids, cut)) = SupportedCscdIds::decode(b.tail(4)) else { return short(6, truncated) };
            *truncated |= cut;
            let cscd_ids = ids
                .into_iter()
                .map(|id| CodeName { code: code16(id), name: cscd_id_name(id), value: id as u32 })
                .collect();
            TpcBody::SupportedCscdIds { cscd_ids }
        }
        TpcType::ROD_TOKEN_FEATURES => {
            let Some((t, mut list, cut)) = RodTokenFeatures::decode(b.tail(4)) else {
                return short(48, truncated);
            };
            *truncated |= cut;
            let mut device_type_features = Vec::new();
            while list.len() >= 4 {
                let pdt = list[0] & 0x1f;
                let dlen = Fields(list).u16(2).unwrap_or(0) as usize;
                let whole = (4 + dlen).min(list.len());
                if 4 + dlen > list.len() {
                    *truncated = true;
                }
                let block = BlockRodFeatures::decode(&list[..whole]).map(|f| RodDeviceFeatures::Block {
                    peripheral_device_type: pdt,
                    descriptor_format: list[0] >> 5,
                    optimal_block_rod_length_granularity: f.optimal_block_rod_length_granularity,
                    maximum_bytes_in_block_rod: f.max_bytes_in_block_rod,
                    optimal_bytes_in_block_rod_transfer: f.optimal_bytes_in_block_rod_transfer,
                    optimal_bytes_to_token_per_segment: f.optimal_bytes_to_token_per_segment,
                    optimal_bytes_from_token_per_segment: f.optimal_bytes_from_token_per_segment,
                });
                device_type_features.push(block.unwrap_or_else(|| RodDeviceFeatures::Other {
                    peripheral_device_type: pdt,
                    data: hex(&list[4.min(whole)..whole]),
                }));
                list = &list[whole..];
            }
            if !list.is_empty() {
                *truncated = true;
            }
            TpcBody::RodTokenFeatures {
                remote_tokens: t.remote_tokens,
                remote_tokens_meaning: remote_tokens_meaning(t.remote_tokens),
                minimum_token_lifetime: t.min_token_lifetime,
                maximum_token_lifetime: t.max_token_lifetime,
                maximum_token_inactivity_timeout: t.max_token_inactivity_timeout,
                device_type_features,
            }
        }
        TpcType::SUPPORTED_ROD_TYPES => {
            let Some(n) = b.u16(6) else { return short(8, truncated) };
            let avail = b.tail(8);
            if n as usize > avail.len() || n % 64 != 0 {
                *truncated = true;
            }
            let rod_types = avail[..(n as usize).min(avail.len())]
                .chunks_exact(RodTypeEntry::LEN)
                .filter_map(RodTypeEntry::decode)
                .map(|e| RodType {
                    rod_type: code32(e.rod_type),
                    name: rod_type_name(e.rod_type),
                    ecpy_int: e.ecpy_int,
                    token_in: e.token_in,
                    token_out: e.token_out,
                    preference_indicator: e.preference_indicator,
                    value: e.rod_type,
                })
                .collect();
            TpcBody::SupportedRodTypes { rod_types }
        }
        TpcType::GENERAL_COPY_OPERATIONS => {
            let Some(g) = GeneralCopyOperations::decode(b.tail(4)) else {
                return short(18, truncated);
            };
            TpcBody::GeneralCopyOperations {
                total_concurrent_copies: g.total_concurrent_copies,
                maximum_identified_concurrent_copies: g.max_identified_concurrent_copies,
                maximum_segment_length: g.max_segment_length,
                data_segment_granularity_log2: g.data_segment_granularity_log2,
                inline_data_granularity_log2: g.inline_data_granularity_log2,
            }
        }
        TpcType::STREAM_COPY_OPERATIONS => match b.u32(4) {
            Some(v) => TpcBody::StreamCopyOperations { maximum_stream_device_transfer_size: v },
            None => short(8, truncated),
        },
        TpcType::HELD_DATA => match (b.u32(4), b.u8(8)) {
            (Some(l), Some(g)) => TpcBody::HeldData { held_data_limit: l, held_data_granularity_log2: g },
            _ => short(9, truncated),
        },
        _ => TpcBody::Unknown { data: hex(b.tail(4)) },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn desc(code: u16, body: &[u8]) -> Vec<u8> {
        let mut v = code.to_be_bytes().to_vec();
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    /// The page FreeBSD CTL serves (digest §6), plus a vendor descriptor.
    pub(crate) fn ctl_page() -> Vec<u8> {
        let mut descs = Vec::new();
        // 0000h: 64 ranges, max 600 s, default 60 s, transfer 0, optimal 0.
        let mut b = vec![0u8; 32];
        b[6..8].copy_from_slice(&64u16.to_be_bytes());
        b[8..12].copy_from_slice(&600u32.to_be_bytes());
        b[12..16].copy_from_slice(&60u32.to_be_bytes());
        descs.extend(desc(0x0000, &b));
        // 0001h: 83h {00,01,10,11,1C}, 84h {00,04,05,03,07,08}.
        let mut b = vec![15u8, 0x83, 5, 0x00, 0x01, 0x10, 0x11, 0x1c, 0x84, 6, 0x00, 0x04, 0x05, 0x03, 0x07, 0x08];
        b.resize(16, 0);
        descs.extend(desc(0x0001, &b));
        // 0004h: 64/64/8192/0.
        let mut b = vec![0u8; 28];
        b[4..6].copy_from_slice(&64u16.to_be_bytes());
        b[6..8].copy_from_slice(&64u16.to_be_bytes());
        b[8..12].copy_from_slice(&8192u32.to_be_bytes());
        descs.extend(desc(0x0004, &b));
        // 0008h: 02 07 14 E4.
        descs.extend(desc(0x0008, &[4, 0x02, 0x07, 0x14, 0xe4, 0, 0, 0]));
        // 000Ch: FFFFh.
        descs.extend(desc(0x000c, &[0, 2, 0xff, 0xff]));
        // 0106h: remote 0, min 1, max FFFFFFFFh, inactivity 600, one block features descriptor.
        let mut b = vec![0u8; 44];
        b[12..16].copy_from_slice(&1u32.to_be_bytes());
        b[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        b[20..24].copy_from_slice(&600u32.to_be_bytes());
        b[42..44].copy_from_slice(&48u16.to_be_bytes());
        let mut f = vec![0u8; 48];
        f[2..4].copy_from_slice(&0x2cu16.to_be_bytes());
        f[24..32].copy_from_slice(&u64::MAX.to_be_bytes());
        f[32..40].copy_from_slice(&(16u64 << 20).to_be_bytes());
        b.extend(f);
        descs.extend(desc(0x0106, &b));
        // 0108h: {00010000h IN+OUT}, {FFFF0001h IN}.
        let mut b = vec![0u8, 0, 0, 128];
        let mut e = vec![0u8; 64];
        e[0..4].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        e[4] = 0x03;
        b.extend(&e);
        let mut e = vec![0u8; 64];
        e[0..4].copy_from_slice(&0xffff_0001u32.to_be_bytes());
        e[4] = 0x02;
        b.extend(&e);
        descs.extend(desc(0x0108, &b));
        // 8001h: 255/255/0/0/0.
        let mut b = vec![0u8; 32];
        b[0..4].copy_from_slice(&255u32.to_be_bytes());
        b[4..8].copy_from_slice(&255u32.to_be_bytes());
        descs.extend(desc(0x8001, &b));
        // C001h held data, 9101h stream, and a vendor type.
        descs.extend(desc(0xc001, &[0, 0, 0x10, 0, 9, 0, 0, 0]));
        descs.extend(desc(0x9101, &[0, 1, 0, 0]));
        descs.extend(desc(0xabcd, &[0xde, 0xad, 0xbe, 0xef]));
        let mut page = vec![0x00, 0x8f];
        page.extend_from_slice(&(descs.len() as u16).to_be_bytes());
        page.extend(descs);
        page
    }

    #[test]
    fn decodes_every_descriptor_type() {
        let p = decode_third_party_copy(&ctl_page());
        assert!(!p.truncated);
        let types: Vec<&str> = p.descriptors.iter().map(|d| d.type_code.as_str()).collect();
        assert_eq!(
            types,
            ["0000h", "0001h", "0004h", "0008h", "000Ch", "0106h", "0108h", "8001h", "C001h", "9101h", "ABCDh"]
        );
        assert_eq!(p.descriptors[0].length, 32);
        assert_eq!(
            p.descriptors[0].body,
            TpcBody::BlockDeviceRodLimits {
                maximum_range_descriptors: 64,
                maximum_inactivity_timeout: 600,
                default_inactivity_timeout: 60,
                maximum_token_transfer_size: 0,
                optimal_transfer_count: 0,
            }
        );
        let TpcBody::SupportedCommands { commands } = &p.descriptors[1].body else { panic!() };
        assert_eq!(commands.len(), 2);
        assert_eq!(commands[0].opcode, "83h");
        let sas: Vec<&str> = commands[0].service_actions.iter().map(|s| s.name).collect();
        assert_eq!(
            sas,
            [
                "EXTENDED COPY (LID1)",
                "EXTENDED COPY (LID4)",
                "POPULATE TOKEN",
                "WRITE USING TOKEN",
                "COPY OPERATION ABORT"
            ]
        );
        assert_eq!(commands[1].service_actions.len(), 6);
        assert_eq!(
            p.descriptors[2].body,
            TpcBody::ParameterData {
                maximum_cscd_descriptor_count: 64,
                maximum_segment_descriptor_count: 64,
                maximum_descriptor_list_length: 8192,
                maximum_inline_data_length: 0,
            }
        );
        let TpcBody::SupportedDescriptors { descriptors } = &p.descriptors[3].body else { panic!() };
        let codes: Vec<&str> = descriptors.iter().map(|d| d.code.as_str()).collect();
        assert_eq!(codes, ["02h", "07h", "14h", "E4h"]);
        assert_eq!(descriptors[0].name, "segment: block → block");
        assert_eq!(descriptors[3].name, "CSCD: identification descriptor");
        let TpcBody::SupportedCscdIds { cscd_ids } = &p.descriptors[4].body else { panic!() };
        assert_eq!(cscd_ids[0].code, "FFFFh");
        let TpcBody::RodTokenFeatures {
            remote_tokens,
            minimum_token_lifetime,
            maximum_token_lifetime,
            maximum_token_inactivity_timeout,
            device_type_features,
            ..
        } = &p.descriptors[5].body
        else {
            panic!()
        };
        assert_eq!(
            (*remote_tokens, *minimum_token_lifetime, *maximum_token_lifetime, *maximum_token_inactivity_timeout),
            (0, 1, u32::MAX, 600)
        );
        assert_eq!(
            device_type_features,
            &[RodDeviceFeatures::Block {
                peripheral_device_type: 0,
                descriptor_format: 0,
                optimal_block_rod_length_granularity: 0,
                maximum_bytes_in_block_rod: 0,
                optimal_bytes_in_block_rod_transfer: 0,
                optimal_bytes_to_token_per_segment: u64::MAX,
                optimal_bytes_from_token_per_segment: 16 << 20,
            }]
        );
        let TpcBody::SupportedRodTypes { rod_types } = &p.descriptors[6].body else { panic!() };
        assert_eq!(rod_types.len(), 2);
        assert_eq!(
            (rod_types[0].name, rod_types[0].token_in, rod_types[0].token_out),
            ("access upon reference", true, true)
        );
        assert_eq!(
            (rod_types[1].name, rod_types[1].token_in, rod_types[1].token_out),
            ("block device zero", true, false)
        );
        assert_eq!(
            p.descriptors[7].body,
            TpcBody::GeneralCopyOperations {
                total_concurrent_copies: 255,
                maximum_identified_concurrent_copies: 255,
                maximum_segment_length: 0,
                data_segment_granularity_log2: 0,
                inline_data_granularity_log2: 0,
            }
        );
        assert_eq!(p.descriptors[8].body, TpcBody::HeldData { held_data_limit: 0x1000, held_data_granularity_log2: 9 });
        assert_eq!(
            p.descriptors[9].body,
            TpcBody::StreamCopyOperations { maximum_stream_device_transfer_size: 0x10000 }
        );
        assert_eq!(p.descriptors[10].body, TpcBody::Unknown { data: "deadbeef".into() });
        assert_eq!(p.descriptors[10].name, "unknown");
    }

    #[test]
    fn json_lists_names_and_values() {
        let p = decode_third_party_copy(&ctl_page());
        let j = serde_json::to_value(&p).unwrap();
        let d0 = &j["descriptors"][0];
        assert_eq!(d0["type"], "0000h");
        assert_eq!(d0["name"], "Block Device ROD Token Limits");
        assert_eq!(d0["maximum_range_descriptors"], 64);
        assert_eq!(d0["default_inactivity_timeout"], 60);
        assert_eq!(j["descriptors"][6]["rod_types"][1]["rod_type"], "FFFF0001h");
        assert_eq!(j["descriptors"][10]["data"], "deadbeef");
    }

    #[test]
    fn every_prefix_and_corruption_decodes_without_panic() {
        let page = ctl_page();
        for n in 0..=page.len() {
            let p = decode_third_party_copy(&page[..n]);
            if n < page.len() {
                assert!(p.truncated, "prefix {n} not flagged");
            }
            let _ = serde_json::to_string(&p).unwrap();
        }
        // Each descriptor on its own, cut at every length (the page length
        // adjusted so only the descriptor is short).
        let full = decode_third_party_copy(&page);
        let mut off = 4;
        for d in &full.descriptors {
            let len = 4 + d.length as usize;
            for cut in 0..len {
                let mut p = vec![0, 0x8f];
                p.extend_from_slice(&(cut as u16).to_be_bytes());
                p.extend_from_slice(&page[off..off + cut]);
                let _ = decode_third_party_copy(&p);
                // And with a lying DESCRIPTOR LENGTH that fits the page.
                if cut >= 4 {
                    let mut q = p.clone();
                    q[6..8].copy_from_slice(&((cut - 4) as u16).to_be_bytes());
                    let r = decode_third_party_copy(&q);
                    assert_eq!(r.descriptors.len(), 1);
                }
            }
            off += len;
        }
        // Inner lengths that lie.
        for bad in [
            desc(0x0001, &[200, 0x83, 9, 0]),
            desc(0x0001, &[2, 0x83, 0xff]),
            desc(0x0008, &[99, 2]),
            desc(0x000c, &[0xff, 0xff, 0xff]),
            desc(0x0108, &[0, 0, 0xff, 0xff, 0, 0]),
            {
                let mut b = vec![0u8; 44];
                b[42..44].copy_from_slice(&0xffffu16.to_be_bytes());
                b.extend([0, 0, 0xff, 0xff, 1]);
                desc(0x0106, &b)
            },
        ] {
            let mut p = vec![0, 0x8f];
            p.extend_from_slice(&(bad.len() as u16).to_be_bytes());
            p.extend(bad);
            assert!(decode_third_party_copy(&p).truncated);
        }
        // Pseudo-random garbage.
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..2000 {
            let mut p = vec![0, 0x8f];
            let n = (x % 300) as usize;
            for _ in 0..n + 2 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                p.push(x as u8);
            }
            let _ = decode_third_party_copy(&p);
        }
    }
}
