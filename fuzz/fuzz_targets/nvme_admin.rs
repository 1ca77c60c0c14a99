//! The NVMe controller model on arbitrary Connect capsules, then arbitrary
//! admin commands (with data and host buffer sizes), on a virtual clock:
//! never a panic, reply data never longer than the host's buffer.
//! Input: `[connect sqe (64), connect data (1024)]` then records of
//! `[sqe (64), data_len (x16), buffer (u16 LE), data...]`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oxcopy_nvme::controller::{AdminOutcome, ConnectRequest, Controller, SubsystemInfo};
use oxcopy_nvme::model::{CopyLimits, NamespaceInfo};
use oxcopy_nvme::Sqe;
use std::sync::Arc;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let Some((connect, rest)) = data.split_at_checked(64 + 1024) else { return };
    let Some(sqe) = Sqe::from_slice(connect) else { return };
    let ns = NamespaceInfo {
        nsid: 1,
        block_size: 512,
        blocks: 2048,
        nguid: [1; 16],
        uuid: [2; 16],
        read_only: false,
        deallocate: true,
        copy: CopyLimits::default(),
    };
    let sub = if connect[0] & 1 == 0 {
        SubsystemInfo::nvm("nqn.2026-12.dev.oxcopy:fuzz", "SN", "MN", "FR", vec![ns])
    } else {
        SubsystemInfo::discovery("SN", "MN", "FR", Vec::new())
    };
    let sub = Arc::new(sub);
    // The Connect as sent, or forced onto the admin queue of this subsystem.
    let req = match ConnectRequest::parse(&sqe, &connect[64..]) {
        Ok(r) => r,
        Err(_) => return,
    };
    if req.check_admin(Some(&sub)).is_err() {
        return;
    }
    let t0 = Instant::now();
    let mut c = Controller::new(sub, 1, &req, t0);
    let mut rest = rest;
    for step in 0..16u64 {
        let Some(sqe) = Sqe::from_slice(rest) else { return };
        let Some(&[dlen, b0, b1]) = rest.get(64..67) else { return };
        let buffer = usize::from(u16::from_le_bytes([b0, b1]));
        let tail = &rest[67..];
        let n = (usize::from(dlen) * 16).min(tail.len());
        let now = t0 + Duration::from_millis(step * 700);
        match c.admin(&sqe, &tail[..n], buffer, now) {
            AdminOutcome::Reply { data: Some(d), .. } => assert!(d.len() <= buffer, "{} > {buffer}", d.len()),
            _ => {}
        }
        let _ = c.take_events();
        let _ = c.keep_alive_expired(now);
        rest = &tail[n..];
    }
});
