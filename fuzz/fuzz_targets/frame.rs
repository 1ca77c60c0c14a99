//! The PDU frame decoder on arbitrary bytes with arbitrary limits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oxcopy_iscsi::frame::FrameLimits;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let limits = FrameLimits {
        header_digest: flags & 1 != 0,
        data_digest: flags & 2 != 0,
        max_data_segment: 512u32 << (flags >> 4),
    };
    for p in oxcopy_fuzz::pdus(rest, &limits, 64) {
        // Re-encoding a decoded PDU must not panic either.
        let _ = oxcopy_iscsi::frame::encode_frame(&p.header, &p.ahs, p.data, limits.header_digest, limits.data_digest);
    }
});
