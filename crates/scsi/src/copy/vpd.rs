//! The Third-party Copy VPD page (8Fh).
//!
//! A page is a sequence of third-party copy descriptors, each `TYPE (2) |
//! LENGTH (2) | body padded to a multiple of 4`. [`TpcPage`] assembles them
//! in the order pushed; [`page_body`] pushes today's set:
//!
//! | type | descriptor |
//! |---|---|
//! | 0000h | Block Device ROD Token Limits — *first*: Windows reads only the first descriptor and requires 0000h, length 0020h |
//! | 0001h | Supported Commands — generated from the command table, so it always agrees with REPORT SUPPORTED OPERATION CODES |
//! | 0004h | Parameter Data — the EXTENDED COPY limits |
//! | 0008h | Supported Descriptors — segment and CSCD type codes |
//! | 000Ch | Supported CSCD Descriptor IDs — FFFFh |
//! | 0106h | ROD Token Features — REMOTE TOKENS 6 in a copy domain of several nodes (else 0: own tokens only), lifetimes from the configuration |
//! | 0108h | Supported ROD Types — exactly the types POPULATE TOKEN creates plus the zero token |
//! | 8001h | General Copy Operations |

use super::limits::{self, optimal_token_blocks, rod_limits, MAX_TOKEN_TRANSFER_BYTES};
use super::results::implemented_descriptors;
use super::rod_results::{block_rod_limits, rod_token_features, supported_rod_types, RemoteTokens};
use crate::exec::Command;
use crate::lu::LogicalUnit;
use crate::wire::cdb::Opcode;
use oxcopy_copy::RodManager;

use crate::wire::vpd::{
    GeneralCopyOperations, ParameterData, SupportedCommands, SupportedCscdIds, SupportedDescriptors,
};
pub use crate::wire::vpd::{TpcDescriptor, TpcPage};

/// 0001h: operation code, SA count, SAs — for 83h and 84h, from the table.
fn supported_commands(table: &[Command]) -> Vec<u8> {
    let commands: Vec<(u8, Vec<u8>)> = [Opcode::THIRD_PARTY_COPY_OUT, Opcode::THIRD_PARTY_COPY_IN]
        .into_iter()
        .map(|op| (op.0, table.iter().filter(|t| t.opcode == op).filter_map(|t| t.sa).collect::<Vec<u8>>()))
        .filter(|(_, sas)| !sas.is_empty())
        .collect();
    SupportedCommands::encode(&commands)
}

/// 0004h Parameter Data (length 001Ch).
fn parameter_data() -> Vec<u8> {
    ParameterData {
        max_cscd_descriptors: limits::MAX_CSCD_DESCRIPTORS,
        max_segment_descriptors: limits::MAX_SEGMENT_DESCRIPTORS,
        max_descriptor_list_length: limits::MAX_DESCRIPTOR_LIST_LENGTH,
        max_inline_data_length: limits::MAX_INLINE_DATA_LENGTH,
    }
    .encode()
}

/// 8001h General Copy Operations (length 0020h).
fn general_copy_operations() -> Vec<u8> {
    GeneralCopyOperations {
        total_concurrent_copies: u32::from(limits::TOTAL_CONCURRENT_COPIES),
        max_identified_concurrent_copies: u32::from(limits::TOTAL_CONCURRENT_COPIES),
        max_segment_length: limits::MAX_SEGMENT_LENGTH,
        data_segment_granularity_log2: limits::DATA_SEGMENT_GRANULARITY_LOG2,
        inline_data_granularity_log2: limits::INLINE_DATA_GRANULARITY_LOG2,
    }
    .encode()
}

/// The body of VPD page 8Fh for `lu`, with the token limits of `rod`.
pub(crate) fn page_body(lu: &LogicalUnit, rod: &RodManager, table: &[Command]) -> Vec<u8> {
    let limits = rod_limits(rod, lu);
    let optimal_bytes = optimal_token_blocks(lu) * u64::from(lu.block_size());
    // A node of a copy domain writes the tokens of the other nodes.
    let remote_tokens = if rod.accepts_remote() { RemoteTokens::ANY_TARGET } else { RemoteTokens::NONE };
    let mut page = TpcPage::new();
    page.push(TpcDescriptor::BLOCK_DEVICE_ROD_TOKEN_LIMITS, &block_rod_limits(&limits, optimal_token_blocks(lu)))
        .push(TpcDescriptor::SUPPORTED_COMMANDS, &supported_commands(table))
        .push(TpcDescriptor::PARAMETER_DATA, &parameter_data())
        .push(TpcDescriptor::SUPPORTED_DESCRIPTORS, &SupportedDescriptors::encode(implemented_descriptors()))
        .push(TpcDescriptor::SUPPORTED_CSCD_IDS, &SupportedCscdIds::encode(&limits::SUPPORTED_CSCD_IDS))
        .push(
            TpcDescriptor::ROD_TOKEN_FEATURES,
            &rod_token_features(&limits, remote_tokens, MAX_TOKEN_TRANSFER_BYTES, optimal_bytes),
        )
        .push(TpcDescriptor::SUPPORTED_ROD_TYPES, &supported_rod_types())
        .push(TpcDescriptor::GENERAL_COPY_OPERATIONS, &general_copy_operations());
    page.into_body()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lu::LuConfig;
    use oxcopy_storage::MemStorage;
    use std::sync::Arc;

    /// Walk the descriptors: (type, body).
    fn descriptors(mut b: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        while b.len() >= 4 {
            let ty = u16::from_be_bytes([b[0], b[1]]);
            let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
            assert_eq!(len % 4, 0, "descriptor {ty:#06x} not padded");
            out.push((ty, b[4..4 + len].to_vec()));
            b = &b[4 + len..];
        }
        assert!(b.is_empty());
        out
    }

    #[test]
    fn page_layout() {
        let lu = LogicalUnit::new(LuConfig::default(), Arc::new(MemStorage::new(4096)));
        let registry = crate::testing::registry();
        let d = descriptors(&page_body(&lu, &registry.rod(), crate::commands::COMMANDS));
        let types: Vec<u16> = d.iter().map(|(t, _)| *t).collect();
        // Windows reads only the first descriptor: 0000h, length 0020h.
        assert_eq!(types, vec![0x0000, 0x0001, 0x0004, 0x0008, 0x000C, 0x0106, 0x0108, 0x8001]);
        assert!(types.windows(2).all(|w| w[0] < w[1]), "ascending");
        assert_eq!(d[0].1.len(), 0x20);
        // 0000h: 64 ranges, max 3600 s, default 60 s, 4 GiB / 256 MiB in 512-byte blocks.
        assert_eq!(&d[0].1[6..8], &64u16.to_be_bytes());
        assert_eq!(&d[0].1[8..12], &3600u32.to_be_bytes());
        assert_eq!(&d[0].1[12..16], &60u32.to_be_bytes());
        assert_eq!(&d[0].1[16..24], &(8u64 << 20).to_be_bytes());
        assert_eq!(&d[0].1[24..32], &(512u64 << 10).to_be_bytes());
        // 0001h: 83h {00h, 10h, 11h, 1Ch}, 84h {00h, 03h, 04h, 05h, 07h, 08h}.
        assert_eq!(&d[1].1[..15], &[14, 0x83, 4, 0x00, 0x10, 0x11, 0x1C, 0x84, 6, 0x00, 0x03, 0x04, 0x05, 0x07, 0x08]);
        assert_eq!(d[1].1.len(), 16);
        // 0004h: 64 CSCDs, 64 segments, 8192 bytes, no inline data.
        assert_eq!(d[2].1.len(), 0x1C);
        assert_eq!(&d[2].1[4..16], &[0, 64, 0, 64, 0, 0, 0x20, 0, 0, 0, 0, 0]);
        // 0008h: 02h, 07h, 0Ah, 14h, E4h.
        assert_eq!(d[3].1, vec![5, 0x02, 0x07, 0x0A, 0x14, 0xE4, 0, 0]);
        // 000Ch: FFFFh.
        assert_eq!(d[4].1, vec![0, 2, 0xFF, 0xFF]);
        // 0106h: own tokens only, max inactivity 3600 s.
        assert_eq!(d[5].1[0] & 0x0F, 0);
        assert_eq!(&d[5].1[20..24], &3600u32.to_be_bytes());
        // 0108h: exactly the supported ROD types.
        let rod_types: Vec<u32> =
            d[6].1[4..].chunks(64).map(|e| u32::from_be_bytes([e[0], e[1], e[2], e[3]])).collect();
        assert_eq!(rod_types, vec![0x0001_0000, 0x0080_0000, 0x0080_0001, 0x0080_0002, 0xFFFF_0001]);
        // 8001h: 255 / 255 / FFFFFFFFh / byte granularity.
        assert_eq!(d[7].1.len(), 0x20);
        assert_eq!(&d[7].1[..14], &[0, 0, 0, 255, 0, 0, 0, 255, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]);
    }
}
