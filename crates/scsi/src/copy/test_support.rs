//! Fixture pieces shared by the EXTENDED COPY (`tests.rs`) and token copy
//! (`odx_tests.rs`) unit tests: LU designators and contents, nexus, and
//! running one command through `ScsiTarget::execute`.

use crate::*;
use std::sync::Arc;

/// The NAA designator of test LU `last`: 60ACDE48 00…00 `last`.
pub fn naa(last: u8) -> [u8; 16] {
    let mut naa = [0x60, 0xAC, 0xDE, 0x48, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    naa[15] = last;
    naa
}

/// `bytes` of initial LU content, distinct per LU (`last`, spread by `mul`)
/// and per 512-byte sector.
pub fn contents(last: u8, mul: u8, bytes: usize) -> Vec<u8> {
    (0..bytes).map(|i| (i as u8) ^ last.wrapping_mul(mul) ^ (i >> 9) as u8).collect()
}

pub fn nexus(initiator: &str, target: &str) -> Nexus {
    Nexus { initiator_name: Arc::from(initiator), isid: [0x80, 0, 0, 0, 0, 1], target_name: Arc::from(target), tpgt: 1 }
}

/// Run one command on `t` for `nx`, with `data` as its Data-Out.
pub fn run(t: &ScsiTarget, nx: &Nexus, lun: u16, cdb: &[u8], data: &[u8], cancel: &CancelToken) -> CommandResult {
    let req = Request { nexus: nx, lun: encode_lun(lun), cdb, data_out: data, expected_len: data.len() as u32, cancel };
    t.execute(&req)
}
