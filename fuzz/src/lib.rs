//! Shared fixtures of the oxcopy fuzz targets: a login policy, a SCSI
//! target on memory-backed LUs, and a byte-stream splitter.

use bytes::BytesMut;
use oxcopy_iscsi::chap::{TargetChap, TargetChapConfig};
use oxcopy_iscsi::frame::{decode_frame, FrameLimits, Pdu};
use oxcopy_iscsi::login::{Authenticator, LoginPolicy, TargetInfo};
use oxcopy_iscsi::pdu::LoginStatus;
use oxcopy_scsi::{AccessList, CancelToken, LogicalUnit, LuConfig, LuRegistry, Nexus, Request, ScsiTarget};
use oxcopy_storage::{MemStorage, Storage};
use std::sync::Arc;

/// Target name the fixtures serve.
pub const TARGET: &str = "iqn.2026-11.dev.oxcopy:fuzz";
/// A target requiring CHAP (user "alice", secret "alice-secret-123").
pub const CHAP_TARGET: &str = "iqn.2026-11.dev.oxcopy:fuzz-chap";

/// Admits [`TARGET`] and [`CHAP_TARGET`] (the latter with mutual CHAP).
pub struct Policy;

impl LoginPolicy for Policy {
    fn check_target(&self, target_name: &str, _initiator_name: &str) -> Result<TargetInfo, LoginStatus> {
        if target_name == TARGET || target_name == CHAP_TARGET {
            Ok(TargetInfo { tpgt: 1, alias: None })
        } else {
            Err(LoginStatus::NOT_FOUND)
        }
    }

    fn discovery_allowed(&self, _initiator_name: &str) -> bool {
        true
    }

    fn authenticator(&self, _initiator_name: &str, target_name: Option<&str>) -> Option<Box<dyn Authenticator>> {
        if target_name != Some(CHAP_TARGET) {
            return None;
        }
        let cfg = TargetChapConfig::one_way("alice", "alice-secret-123").with_mutual("oxcopy", "target-secret-456");
        Some(Box::new(TargetChap::new(cfg, 1, (0..32).collect()).0))
    }
}

/// Split a byte stream into PDUs (at most `max` of them), as a connection
/// would; stops at the first framing error.
pub fn pdus(data: &[u8], limits: &FrameLimits, max: usize) -> Vec<Pdu> {
    let mut buf = BytesMut::from(data);
    let mut out = Vec::new();
    while out.len() < max {
        match decode_frame(&mut buf, limits) {
            Ok(Some(p)) => out.push(p),
            Ok(None) | Err(_) => break,
        }
    }
    out
}

/// The NAA designator of LU `i` (EXTENDED COPY CSCDs name LUs by it).
pub fn naa(i: u8) -> [u8; 16] {
    [0x60, 0x01, 0x40, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, i]
}

/// A SCSI target with two 64 KiB memory LUs (LUN 0: 512-byte blocks,
/// LUN 1: 4096-byte blocks), fresh for every input.
pub fn scsi_target() -> (ScsiTarget, Nexus) {
    let registry = Arc::new(LuRegistry::new(
        oxcopy_scsi::Metrics::new(),
        Arc::new(oxcopy_copy::SystemClock),
        Box::new(<rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0xF022)),
    ));
    let lu = |i: u8, bs: u32| {
        Arc::new(LogicalUnit::new(
            LuConfig {
                block_size: bs,
                read_only: false,
                serial: format!("FUZZ{i}"),
                naa: naa(i),
                vendor: "OXCOPY".into(),
                product: "oxcopy fuzz".into(),
                revision: "0001".into(),
            },
            Arc::new(MemStorage::new(64 * 1024)) as Arc<dyn Storage>,
        ))
    };
    // Cannot fail: a fresh registry has no duplicate target.
    let _ = registry.add_target(TARGET, AccessList::from_config(None), vec![(0, lu(0, 512)), (1, lu(1, 4096))]);
    let target = ScsiTarget::in_registry(TARGET, 1, registry);
    let nexus = Nexus {
        initiator_name: Arc::from("iqn.2026-11.dev.oxcopy:fuzz-host"),
        isid: [0x80, 0, 0, 0, 0, 1],
        target_name: Arc::from(TARGET),
        tpgt: 1,
    };
    (target, nexus)
}

/// Run one command: `lun` 0 or 1, `cdb` padded to at least 6 bytes.
pub fn execute(target: &ScsiTarget, nexus: &Nexus, lun: u8, cdb: &[u8], data_out: &[u8], expected_len: u32) {
    let mut c = cdb.to_vec();
    if c.len() < 6 {
        c.resize(6, 0);
    }
    c.truncate(260);
    let cancel = CancelToken::new();
    let req = Request {
        nexus,
        lun: oxcopy_scsi::encode_lun(u16::from(lun & 1)),
        cdb: &c,
        data_out,
        expected_len,
        cancel: &cancel,
    };
    let _ = target.execute(&req);
}
