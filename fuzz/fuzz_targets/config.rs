//! The configuration parser and validator (`Config::from_toml`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = oxcopyd::config::Config::from_toml(text, "fuzz.toml");
    }
});
