//! SCSI commands (every CDB family) through `ScsiTarget::execute` on two
//! memory LUs. Input: a sequence of `[lun, cdb_len, expected_len (2 bytes,
//! x16), data_len, cdb..., data...]` records.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (target, nexus) = oxcopy_fuzz::scsi_target();
    let mut rest = data;
    for _ in 0..16 {
        let [lun, cdb_len, e0, e1, dlen, tail @ ..] = rest else { return };
        let cdb_len = usize::from(*cdb_len).clamp(6, 32);
        let expected = u32::from(u16::from_be_bytes([*e0, *e1])) * 16;
        let dlen = usize::from(*dlen) * 16;
        if tail.len() < cdb_len {
            return;
        }
        let (cdb, tail) = tail.split_at(cdb_len);
        let dlen = dlen.min(tail.len()).min(expected as usize);
        let (dout, tail) = tail.split_at(dlen);
        oxcopy_fuzz::execute(&target, &nexus, *lun, cdb, dout, expected);
        rest = tail;
    }
});
