//! The NVMe/TCP PDU decoder on arbitrary bytes with arbitrary negotiated
//! parameters; every decoded PDU must re-encode and decode to itself.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use oxcopy_nvme::wire::pdu::{decode, encode, DecodeError, Role, RxParams, TxParams, MAX_TERM_DATA};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let Some((&pda, rest)) = rest.split_first() else { return };
    let p = RxParams {
        role: if flags & 1 != 0 { Role::Host } else { Role::Target },
        hdgst: flags & 2 != 0,
        ddgst: flags & 4 != 0,
        pda: pda & 0x1F,
        max_capsule_data: 512 << (flags >> 6),
        max_data: 512 << ((flags >> 4) & 3),
    };
    let tx = TxParams { hdgst: p.hdgst, ddgst: p.ddgst, pda: p.pda };
    let mut buf = BytesMut::from(rest);
    for _ in 0..64 {
        let before = buf.len();
        let pdu = match decode(&mut buf, &p) {
            Ok(Some(pdu)) => pdu,
            Err(DecodeError::DataDigest(pdu)) => *pdu,
            Ok(None) => {
                assert_eq!(buf.len(), before, "an incomplete PDU consumes nothing");
                break;
            }
            Err(DecodeError::Fatal { header, .. }) => {
                assert!(header.len() <= MAX_TERM_DATA);
                assert_eq!(buf.len(), before, "a fatal error consumes nothing");
                break;
            }
        };
        assert!(buf.len() < before);
        let again = encode(pdu.clone(), &tx).to_vec();
        let mut b = BytesMut::from(&again[..]);
        assert_eq!(decode(&mut b, &p), Ok(Some(pdu)), "re-encoded PDU decodes to itself");
        assert!(b.is_empty());
    }
});
