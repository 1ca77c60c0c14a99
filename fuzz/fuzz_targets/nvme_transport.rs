//! The NVMe/TCP target queue (`TargetQueue`) fed arbitrary bytes in arbitrary
//! pieces, with commands completed as they are executed and a virtual clock;
//! the write bytes it holds must stay bounded.
#![no_main]
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use oxcopy_nvme::transport::{Action, TargetQueue, TransportConfig};
use oxcopy_nvme::wire::command::{Cqe, Status};
use oxcopy_nvme::wire::pdu::{encode, IcReq, Pdu, TxParams};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let Some((&split, rest)) = rest.split_first() else { return };
    let cfg = TransportConfig {
        header_digest: flags & 2 != 0,
        data_digest: flags & 4 != 0,
        maxh2cdata: 4096,
        in_capsule_data: 1024,
        admin_in_capsule_data: 8192,
        max_data_transfer: 64 * 1024,
        max_write_bytes: 32 * 1024,
        max_c2h_data: 4096,
        pdu_timeout: Duration::from_secs(10),
        write_data_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(3),
    };
    let bound = cfg.max_write_bytes + 32 * 8192;
    let mut now = Instant::now();
    let mut q = TargetQueue::new(cfg, now);
    q.set_queue_size(31);
    let mut buf = BytesMut::new();
    if flags & 1 != 0 {
        // Start past ICReq so the fuzzer reaches the command states quickly.
        let ic = IcReq { pfv: 0, hpda: flags >> 5, hdgst: flags & 2 != 0, ddgst: flags & 4 != 0, maxr2t: 0 };
        buf.extend_from_slice(&encode(Pdu::IcReq(ic), &TxParams::default()).to_vec());
    }
    let piece = usize::from(split).max(1);
    for (i, chunk) in rest.chunks(piece).enumerate() {
        buf.extend_from_slice(chunk);
        q.on_bytes(&mut buf, now);
        while let Some(a) = q.poll_action() {
            match a {
                Action::Send(e) => assert!(!e.is_empty()),
                Action::Execute(c) => {
                    let cqe = Cqe::new(c.sqe.cid(), if i % 3 == 0 { Status::INTERNAL_ERROR } else { Status::SUCCESS });
                    let read = (c.read_len > 0).then(|| Bytes::from(vec![0xA5; c.read_len.min(70_000) as usize]));
                    // Complete every other command later (after a timeout).
                    if i % 2 == 0 {
                        let _ = q.complete(cqe, read, now);
                    }
                }
                Action::Close(_) => return,
            }
        }
        assert!(q.write_bytes_held() <= bound);
        assert!(buf.len() <= 8192 + 256 + piece);
        if chunk.first().is_some_and(|b| b & 0xF0 == 0xF0) {
            now += Duration::from_secs(u64::from(chunk[0] & 0x0F));
            q.handle_timeout(now);
        }
    }
});
