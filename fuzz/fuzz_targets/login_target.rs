//! The target login state machine fed a stream of PDUs (open and CHAP
//! targets, discovery).
#![no_main]
use libfuzzer_sys::fuzz_target;
use oxcopy_iscsi::frame::FrameLimits;
use oxcopy_iscsi::login::{LoginStep, TargetLogin, TargetLoginConfig};

fuzz_target!(|data: &[u8]| {
    let mut login = TargetLogin::new(TargetLoginConfig::default());
    for pdu in oxcopy_fuzz::pdus(data, &FrameLimits::LOGIN, 80) {
        match login.on_pdu(&pdu, &oxcopy_fuzz::Policy) {
            LoginStep::Respond(_) => {}
            LoginStep::Complete { .. } | LoginStep::Fail { .. } => break,
        }
    }
});
