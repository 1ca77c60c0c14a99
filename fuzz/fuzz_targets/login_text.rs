//! Login/Text key=value parsing.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(pairs) = oxcopy_iscsi::text::parse(data) {
        for p in pairs {
            let _ = oxcopy_iscsi::text::parse_list(p.value).count();
            let _ = oxcopy_iscsi::chap::decode_binary(p.value);
            let _ = oxcopy_iscsi::chap::parse_number(p.value);
        }
    }
});
