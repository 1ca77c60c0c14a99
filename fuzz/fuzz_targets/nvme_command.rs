//! NVMe I/O commands (every NVM opcode served, Copy formats 0h and 2h
//! across namespaces) through `parse_io` and `execute` on three memory
//! namespaces (512-byte and 4096-byte blocks). Input: a sequence of
//! `[sqe (64 bytes), data_len (x8), data...]` records; SQE byte 1 bit 0
//! folds the SLBA into the namespaces (so commands reach the backend),
//! byte 2 is the host's CDFE (enabled copy formats).
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use oxcopy_copy::{CancelToken, NoMetrics};
use oxcopy_nvme::model::{CopyLimits, NamespaceInfo};
use oxcopy_nvme::nvm::{execute, parse_io, IoContext};
use oxcopy_nvme::{Namespace, NsUnit, Sqe};
use oxcopy_storage::MemStorage;
use std::sync::Arc;

fn namespace(nsid: u32, block_size: u32, blocks: u64) -> Arc<Namespace> {
    let bytes = vec![nsid as u8; (u64::from(block_size) * blocks) as usize];
    let unit = Arc::new(NsUnit::new([nsid as u8; 16], block_size, Arc::new(MemStorage::from_bytes(&bytes))));
    let info = NamespaceInfo {
        nsid,
        block_size,
        blocks,
        nguid: [nsid as u8; 16],
        uuid: [nsid as u8; 16],
        read_only: nsid == 2,
        deallocate: nsid != 3,
        copy: CopyLimits { mssrl: 64, mcl: 256, max_ranges: 16 },
    };
    Arc::new(Namespace::new(info, unit).expect("valid namespace"))
}

fuzz_target!(|data: &[u8]| {
    let namespaces = [namespace(1, 512, 256), namespace(2, 512, 64), namespace(3, 4096, 16)];
    let lookup = |id: u32| namespaces.iter().find(|n| n.nsid() == id).cloned();
    let cancel = CancelToken::new();
    let mut rest = data;
    for _ in 0..8 {
        let Some(mut sqe) = Sqe::from_slice(rest) else { return };
        let [dlen, tail @ ..] = &rest[64..] else { return };
        let n = (usize::from(*dlen) * 8).min(tail.len());
        let (payload, tail) = tail.split_at(n);
        if sqe.0[1] & 0x01 != 0 {
            sqe.set_cdw10_11(sqe.cdw10_11() % 300);
        }
        let ns = lookup(sqe.nsid());
        if let Ok(cmd) = parse_io(&sqe, ns.as_ref().map(|n| n.info())) {
            let ns = ns.expect("parse_io accepted a command for no namespace");
            let ctx = IoContext {
                cancel: &cancel,
                lookup: &lookup,
                max_nsid: 4,
                copy_formats_enabled: u16::from(sqe.0[2]),
                metrics: &NoMetrics,
                chunk_bytes: 4096,
            };
            let out = execute(&ns, &cmd, Bytes::copy_from_slice(payload), &ctx);
            if let Some(d) = &out.data {
                assert_eq!(d.len() as u64, cmd.data_in_len(ns.block_size()));
            }
            // Namespace 2 is read-only: nothing that writes succeeds there.
            assert!(!(ns.write_protected() && cmd.writes() && out.status.is_success()));
        }
        rest = tail;
    }
});
