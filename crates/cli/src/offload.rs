//! What a logical unit can offload, derived from its standard INQUIRY 3PC bit
//! and Third-party Copy VPD page, as typed capabilities (for method
//! selection and for splitting copies) and as one plain sentence.

use crate::vpd::tpc::TpcBody;
use crate::vpd::{code8, ThirdPartyCopy};
use oxcopy_scsi::wire::vpd::TpcDescriptor as TpcType;
use oxcopy_scsi::{Opcode, ServiceAction};
use serde::Serialize;

/// EXTENDED COPY as advertised.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct XcopyCaps {
    pub lid1: bool,
    pub lid4: bool,
    /// RECEIVE COPY STATUS (LID1) — needed to poll an IMMED copy.
    pub receive_copy_status: bool,
    /// Segment descriptor type codes (00h–BFh).
    pub segment_types: Vec<u8>,
    /// CSCD descriptor type codes (E0h–FFh).
    pub cscd_types: Vec<u8>,
    /// CSCD IDs above 07FFh (e.g. FFFFh).
    pub cscd_ids: Vec<u16>,
    pub max_cscd_descriptors: u16,
    pub max_segment_descriptors: u16,
    pub max_descriptor_list_length: u32,
    pub max_inline_data_length: u32,
    /// Bytes per segment; 0 = not reported.
    pub max_segment_length: u32,
    pub total_concurrent_copies: u32,
}

impl XcopyCaps {
    /// Block → block copies by E4h-identified LUNs: what a disk copy needs.
    pub fn can_copy_blocks(&self) -> bool {
        self.lid1 && self.segment_types.contains(&0x02) && self.cscd_types.contains(&0xe4)
    }
}

/// One ROD type: (type, accepted by WRITE USING TOKEN, produced by POPULATE TOKEN).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct RodTypeCap {
    pub rod_type: u32,
    pub token_in: bool,
    pub token_out: bool,
}

/// Token copy (POPULATE TOKEN / WRITE USING TOKEN) as advertised.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TokenCaps {
    pub populate_token: bool,
    pub write_using_token: bool,
    pub receive_rod_token_information: bool,
    pub rod_types: Vec<RodTypeCap>,
    /// Range descriptors per command; 0 = not reported.
    pub max_range_descriptors: u16,
    pub max_inactivity_timeout: u32,
    pub default_inactivity_timeout: u32,
    /// Logical blocks per token; 0 = not reported.
    pub max_token_transfer_size: u64,
    pub optimal_transfer_count: u64,
    /// 0 = own tokens only, 4 = same target device, 6 = any target device.
    pub remote_tokens: u8,
    pub min_token_lifetime: u32,
    pub max_token_lifetime: u32,
}

impl TokenCaps {
    /// Can create tokens (some ROD type with TOKEN_OUT).
    pub fn can_create(&self) -> bool {
        self.populate_token && self.rod_types.iter().any(|r| r.token_out)
    }

    /// Accepts a token of `rod_type` in WRITE USING TOKEN.
    pub fn accepts(&self, rod_type: u32) -> bool {
        self.write_using_token && self.rod_types.iter().any(|r| r.token_in && r.rod_type == rod_type)
    }
}

/// Everything a LUN says about copy offload.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct OffloadCaps {
    /// The standard INQUIRY 3PC bit.
    pub third_party_copy_bit: bool,
    /// A Third-party Copy VPD page was served.
    pub vpd_page: bool,
    pub extended_copy: Option<XcopyCaps>,
    pub token: Option<TokenCaps>,
}

impl OffloadCaps {
    /// Derive the capabilities from the 3PC bit and the decoded 8Fh page.
    pub fn from_vpd(third_party_copy_bit: bool, page: Option<&ThirdPartyCopy>) -> OffloadCaps {
        let mut caps = OffloadCaps { third_party_copy_bit, vpd_page: page.is_some(), ..Default::default() };
        let Some(page) = page else { return caps };
        let mut x = XcopyCaps::default();
        let mut t = TokenCaps::default();
        let mut any_token_desc = false;
        for d in &page.descriptors {
            match &d.body {
                TpcBody::SupportedCommands { commands } => {
                    for c in commands {
                        for sa in &c.service_actions {
                            const OUT: u8 = Opcode::THIRD_PARTY_COPY_OUT.0;
                            const IN: u8 = Opcode::THIRD_PARTY_COPY_IN.0;
                            match (c.op, sa.value as u8) {
                                (OUT, ServiceAction::EXTENDED_COPY_LID1) => x.lid1 = true,
                                (OUT, ServiceAction::EXTENDED_COPY_LID4) => x.lid4 = true,
                                (OUT, ServiceAction::POPULATE_TOKEN) => t.populate_token = true,
                                (OUT, ServiceAction::WRITE_USING_TOKEN) => t.write_using_token = true,
                                (IN, ServiceAction::RECEIVE_COPY_STATUS_LID1) => x.receive_copy_status = true,
                                (IN, ServiceAction::RECEIVE_ROD_TOKEN_INFORMATION) => {
                                    t.receive_rod_token_information = true
                                }
                                _ => {}
                            }
                        }
                    }
                }
                TpcBody::ParameterData {
                    maximum_cscd_descriptor_count,
                    maximum_segment_descriptor_count,
                    maximum_descriptor_list_length,
                    maximum_inline_data_length,
                } => {
                    x.max_cscd_descriptors = *maximum_cscd_descriptor_count;
                    x.max_segment_descriptors = *maximum_segment_descriptor_count;
                    x.max_descriptor_list_length = *maximum_descriptor_list_length;
                    x.max_inline_data_length = *maximum_inline_data_length;
                }
                TpcBody::SupportedDescriptors { descriptors } => {
                    for c in descriptors {
                        let v = c.value as u8;
                        if v >= 0xe0 {
                            x.cscd_types.push(v);
                        } else {
                            x.segment_types.push(v);
                        }
                    }
                }
                TpcBody::SupportedCscdIds { cscd_ids } => {
                    x.cscd_ids = cscd_ids.iter().map(|c| c.value as u16).collect()
                }
                TpcBody::GeneralCopyOperations { total_concurrent_copies, maximum_segment_length, .. } => {
                    x.total_concurrent_copies = *total_concurrent_copies;
                    x.max_segment_length = *maximum_segment_length;
                }
                TpcBody::BlockDeviceRodLimits {
                    maximum_range_descriptors,
                    maximum_inactivity_timeout,
                    default_inactivity_timeout,
                    maximum_token_transfer_size,
                    optimal_transfer_count,
                } if d.code == TpcType::BLOCK_DEVICE_ROD_TOKEN_LIMITS => {
                    any_token_desc = true;
                    t.max_range_descriptors = *maximum_range_descriptors;
                    t.max_inactivity_timeout = *maximum_inactivity_timeout;
                    t.default_inactivity_timeout = *default_inactivity_timeout;
                    t.max_token_transfer_size = *maximum_token_transfer_size;
                    t.optimal_transfer_count = *optimal_transfer_count;
                }
                TpcBody::RodTokenFeatures { remote_tokens, minimum_token_lifetime, maximum_token_lifetime, .. } => {
                    any_token_desc = true;
                    t.remote_tokens = *remote_tokens;
                    t.min_token_lifetime = *minimum_token_lifetime;
                    t.max_token_lifetime = *maximum_token_lifetime;
                }
                TpcBody::SupportedRodTypes { rod_types } => {
                    any_token_desc = true;
                    t.rod_types = rod_types
                        .iter()
                        .map(|r| RodTypeCap { rod_type: r.value, token_in: r.token_in, token_out: r.token_out })
                        .collect();
                }
                _ => {}
            }
        }
        if x.lid1 || x.lid4 {
            caps.extended_copy = Some(x);
        }
        if t.populate_token || t.write_using_token || (any_token_desc && !t.rod_types.is_empty()) {
            caps.token = Some(t);
        }
        caps
    }

    /// One plain sentence, e.g. "EXTENDED COPY LID1: segments 02h 07h 14h;
    /// CSCD E4h; max 64 segments …; tokens: access upon reference, zero; max
    /// 64 ranges; default inactivity 60 s", or "no offload (…)".
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(x) = &self.extended_copy {
            let lids = match (x.lid1, x.lid4) {
                (true, true) => "LID1 and LID4",
                (true, false) => "LID1",
                _ => "LID4",
            };
            let mut s = format!("EXTENDED COPY {lids}: segments {}", codes(&x.segment_types));
            if !x.cscd_types.is_empty() {
                s.push_str(&format!("; CSCD {}", codes(&x.cscd_types)));
            }
            let mut limits = Vec::new();
            if x.max_segment_descriptors > 0 {
                limits.push(format!("{} segments", x.max_segment_descriptors));
            }
            if x.max_cscd_descriptors > 0 {
                limits.push(format!("{} CSCDs", x.max_cscd_descriptors));
            }
            if x.max_descriptor_list_length > 0 {
                limits.push(format!("list {} bytes", x.max_descriptor_list_length));
            }
            if x.max_segment_length > 0 && x.max_segment_length != u32::MAX {
                limits.push(format!("segment {}", crate::human::bytes(x.max_segment_length as u64)));
            }
            if !limits.is_empty() {
                s.push_str(&format!("; max {}", limits.join(", ")));
            }
            parts.push(s);
        }
        if let Some(t) = &self.token {
            let mut names: Vec<&str> = Vec::new();
            for r in &t.rod_types {
                let n = short_rod_name(r.rod_type);
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            let mut s =
                format!("tokens: {}", if names.is_empty() { "no ROD types listed".into() } else { names.join(", ") });
            if !(t.populate_token && t.write_using_token) {
                let which = match (t.populate_token, t.write_using_token) {
                    (true, false) => "POPULATE TOKEN only",
                    (false, true) => "WRITE USING TOKEN only",
                    _ => "neither POPULATE TOKEN nor WRITE USING TOKEN listed",
                };
                s.push_str(&format!(" ({which})"));
            }
            if t.max_range_descriptors > 0 {
                s.push_str(&format!("; max {} ranges", t.max_range_descriptors));
            }
            if t.max_token_transfer_size > 0 {
                s.push_str(&format!("; max {} blocks per token", t.max_token_transfer_size));
            }
            if t.default_inactivity_timeout > 0 {
                s.push_str(&format!("; default inactivity {} s", t.default_inactivity_timeout));
            }
            if t.remote_tokens != 0 {
                s.push_str(&format!("; remote tokens level {}", t.remote_tokens));
            }
            parts.push(s);
        }
        if parts.is_empty() {
            return match (self.third_party_copy_bit, self.vpd_page) {
                (false, false) => "no offload".into(),
                (true, false) => "no offload (3PC set but no Third-party Copy VPD page)".into(),
                (_, true) => "no offload (Third-party Copy VPD page lists no copy commands)".into(),
            };
        }
        parts.join("; ")
    }
}

fn codes(c: &[u8]) -> String {
    if c.is_empty() {
        return "none listed".into();
    }
    c.iter().map(|&v| code8(v)).collect::<Vec<_>>().join(" ")
}

/// Short ROD type names for the summary.
pub fn short_rod_name(t: u32) -> &'static str {
    match t {
        0x0001_0000 => "access upon reference",
        0x0080_0000..=0x0080_ffff => "point-in-time",
        0xffff_0001 => "zero",
        0 => "copy manager internal",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vpd::decode_third_party_copy;

    #[test]
    fn ctl_page_summary() {
        let page = decode_third_party_copy(&crate::vpd::tpc::tests::ctl_page());
        let caps = OffloadCaps::from_vpd(true, Some(&page));
        let x = caps.extended_copy.as_ref().unwrap();
        assert!(x.lid1 && x.lid4 && x.can_copy_blocks());
        assert_eq!(x.segment_types, vec![0x02, 0x07, 0x14]);
        assert_eq!(x.cscd_ids, vec![0xffff]);
        let t = caps.token.as_ref().unwrap();
        assert!(t.can_create() && t.accepts(0x0001_0000) && t.accepts(0xffff_0001));
        assert!(!t.accepts(0x0080_0000));
        assert_eq!(
            caps.summary(),
            "EXTENDED COPY LID1 and LID4: segments 02h 07h 14h; CSCD E4h; max 64 segments, 64 CSCDs, list 8192 \
             bytes; tokens: access upon reference, zero; max 64 ranges; default inactivity 60 s"
        );
    }

    #[test]
    fn no_offload() {
        assert_eq!(OffloadCaps::from_vpd(false, None).summary(), "no offload");
        assert!(OffloadCaps::from_vpd(false, None).extended_copy.is_none());
        assert!(OffloadCaps::from_vpd(true, None).summary().contains("3PC set"));
        let empty = decode_third_party_copy(&[0, 0x8f, 0, 0]);
        assert!(OffloadCaps::from_vpd(true, Some(&empty)).summary().contains("lists no copy commands"));
    }
}
