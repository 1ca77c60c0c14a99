//! The target full-feature state machine (`TargetConnection::on_pdu`) fed a
//! stream of PDUs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oxcopy_iscsi::frame::FrameLimits;
use oxcopy_iscsi::params::SessionParams;
use oxcopy_iscsi::target::{TargetConnConfig, TargetConnection};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let params =
        SessionParams { immediate_data: flags & 1 != 0, initial_r2t: flags & 2 != 0, ..SessionParams::default() };
    let cfg = TargetConnConfig {
        cmd_window: 1 + u32::from(flags >> 4),
        max_write_buffer: 1 << 20,
        send_targets: b"TargetName=iqn.2026-11.dev.oxcopy:fuzz\0".to_vec(),
    };
    let mut conn = TargetConnection::new(params, cfg, 1, 1);
    let limits = FrameLimits { header_digest: false, data_digest: false, max_data_segment: 256 * 1024 };
    for pdu in oxcopy_fuzz::pdus(rest, &limits, 128) {
        let _ = conn.on_pdu(pdu);
    }
});
