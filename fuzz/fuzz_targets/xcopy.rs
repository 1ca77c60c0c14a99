//! EXTENDED COPY (LID1 and LID4) parameter lists, executed with opcode 83h
//! between two memory LUs; followed by RECEIVE COPY RESULTS.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sa, list)) = data.split_first() else { return };
    let (target, nexus) = oxcopy_fuzz::scsi_target();
    let len = (list.len() as u32).to_be_bytes();
    // 83h/00h EXTENDED COPY(LID1) or 83h/01h (LID4); list length in 10..13.
    let cdb = [0x83, sa & 1, 0, 0, 0, 0, 0, 0, 0, 0, len[0], len[1], len[2], len[3], 0, 0];
    oxcopy_fuzz::execute(&target, &nexus, 0, &cdb, list, list.len() as u32);
    // RECEIVE COPY RESULTS (84h): COPY STATUS and OPERATING PARAMETERS.
    for sa in [0u8, 3, 4, 5] {
        let rcr = [0x84, sa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0];
        oxcopy_fuzz::execute(&target, &nexus, 0, &rcr, &[], 4096);
    }
});
