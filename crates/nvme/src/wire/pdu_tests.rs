use super::*;
use crate::wire::command::{Opcode, Sgl, SglType, Status};
use proptest::prelude::*;

fn rx(role: Role, hdgst: bool, ddgst: bool) -> RxParams {
    RxParams { role, hdgst, ddgst, pda: 0, max_capsule_data: 8192, max_data: 65536 }
}

fn dec(bytes: &[u8], p: &RxParams) -> Result<Option<Pdu>, DecodeError> {
    let mut b = BytesMut::from(bytes);
    let r = decode(&mut b, p);
    if let Ok(Some(_)) = r {
        assert!(b.is_empty(), "one PDU consumes exactly its bytes");
    }
    r
}

fn fatal_of(r: Result<Option<Pdu>, DecodeError>) -> (TermReqFes, u32) {
    match r {
        Err(DecodeError::Fatal { fes, fei, .. }) => (fes, fei),
        other => panic!("expected a fatal error, got {other:?}"),
    }
}

#[test]
fn icreq_bytes_match_spec_layout() {
    let e = encode(Pdu::IcReq(IcReq { pfv: 0, hpda: 0, hdgst: true, ddgst: false, maxr2t: 0 }), &TxParams::default());
    let v = e.to_vec();
    assert_eq!(v.len(), 128);
    // type 00h, flags 0, hlen 128, pdo 0, plen 128 LE.
    assert_eq!(&v[..8], &[0x00, 0x00, 0x80, 0x00, 0x80, 0x00, 0x00, 0x00]);
    // pfv 0, hpda 0, dgst bit 0 (HDGST), maxr2t 0.
    assert_eq!(&v[8..16], &[0, 0, 0, 0x01, 0, 0, 0, 0]);
    assert!(v[16..].iter().all(|&b| b == 0));
    let got = dec(&v, &RxParams::initial(Role::Target)).unwrap().unwrap();
    assert_eq!(got, Pdu::IcReq(IcReq { pfv: 0, hpda: 0, hdgst: true, ddgst: false, maxr2t: 0 }));
}

#[test]
fn icresp_bytes_match_spec_layout() {
    let r = IcResp { pfv: 0, cpda: 0, hdgst: false, ddgst: true, maxh2cdata: 0x0002_0000 };
    let v = encode(Pdu::IcResp(r), &TxParams { hdgst: true, ddgst: true, pda: 3 }).to_vec();
    assert_eq!(v.len(), 128);
    assert_eq!(&v[..8], &[0x01, 0x00, 0x80, 0x00, 0x80, 0, 0, 0]);
    assert_eq!(&v[8..16], &[0, 0, 0, 0x02, 0x00, 0x00, 0x02, 0x00]);
    assert_eq!(dec(&v, &RxParams::initial(Role::Host)).unwrap().unwrap(), Pdu::IcResp(r));
}

#[test]
fn capsule_cmd_with_digests_and_data_layout() {
    let mut sqe = Sqe::new(Opcode::WRITE, 0x0102, 1);
    sqe.set_sgl(Sgl { addr: 0, len: 4, kind: SglType::DATA_BLOCK_OFFSET });
    let data = Bytes::from_static(&[0xAA, 0xBB, 0xCC, 0xDD]);
    let e = encode(Pdu::CapsuleCmd { sqe, data: data.clone() }, &TxParams { hdgst: true, ddgst: true, pda: 0 });
    let v = e.to_vec();
    // 72 header + 4 hdgst + 4 data + 4 ddgst.
    assert_eq!(v.len(), 84);
    assert_eq!(&v[..8], &[0x04, 0x03, 72, 76, 84, 0, 0, 0]);
    assert_eq!(&v[8..72], &sqe.0);
    assert_eq!(&v[72..76], &crc32c::crc32c(&v[..72]).to_le_bytes());
    assert_eq!(&v[76..80], &data[..]);
    assert_eq!(&v[80..84], &crc32c::crc32c(&data).to_le_bytes());
    // The data is the caller's buffer, not a copy.
    assert_eq!(e.data.as_ptr(), data.as_ptr());
    let got = dec(&v, &rx(Role::Target, true, true)).unwrap().unwrap();
    assert_eq!(got, Pdu::CapsuleCmd { sqe, data });
}

#[test]
fn known_crc32c_vector() {
    // CRC-32C check value (RFC 3720 B.4 / iSCSI): "123456789" → E3069283h.
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
}

#[test]
fn capsule_without_data_has_pdo_zero_and_no_ddgst_flag() {
    let sqe = Sqe::new(Opcode::FLUSH, 7, 1);
    let v =
        encode(Pdu::CapsuleCmd { sqe, data: Bytes::new() }, &TxParams { hdgst: false, ddgst: true, pda: 0 }).to_vec();
    assert_eq!(&v[..8], &[0x04, 0x00, 72, 0, 72, 0, 0, 0]);
    assert_eq!(dec(&v, &rx(Role::Target, false, true)).unwrap().unwrap(), Pdu::CapsuleCmd { sqe, data: Bytes::new() });
}

#[test]
fn capsule_resp_layout() {
    let cqe = Cqe { result: 5, sqhd: 1, sqid: 2, cid: 0x0304, status: Status::INVALID_FIELD };
    let v = encode(Pdu::CapsuleResp { cqe }, &TxParams::default()).to_vec();
    assert_eq!(v.len(), 24);
    assert_eq!(&v[..8], &[0x05, 0, 24, 0, 24, 0, 0, 0]);
    assert_eq!(&v[8..24], &cqe.encode());
    assert_eq!(dec(&v, &rx(Role::Host, false, false)).unwrap().unwrap(), Pdu::CapsuleResp { cqe });
}

#[test]
fn r2t_and_data_layout() {
    let r = R2t { cid: 0x1122, ttag: 0x3344, offset: 0x10, len: 0x2000 };
    let v = encode(Pdu::R2T(r), &TxParams::default()).to_vec();
    assert_eq!(v, [9, 0, 24, 0, 24, 0, 0, 0, 0x22, 0x11, 0x44, 0x33, 0x10, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0]);
    let d = DataPdu { cid: 1, ttag: 2, offset: 8, data: Bytes::from_static(b"abcd"), last: true, success: false };
    let v = encode(Pdu::H2CData(d.clone()), &TxParams::default()).to_vec();
    assert_eq!(&v[..24], &[6, 0x04, 24, 24, 28, 0, 0, 0, 1, 0, 2, 0, 8, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&v[24..], b"abcd");
    assert_eq!(dec(&v, &rx(Role::Target, false, false)).unwrap().unwrap(), Pdu::H2CData(d));
}

#[test]
fn c2h_data_padding_follows_hpda() {
    // HPDA 7: 32-byte alignment; header 24 + hdgst 4 = 28 → PDO 32.
    let d = DataPdu { cid: 1, ttag: 0, offset: 0, data: Bytes::from_static(b"xy"), last: true, success: true };
    let e = encode(Pdu::C2HData(d.clone()), &TxParams { hdgst: true, ddgst: false, pda: 7 });
    assert_eq!(e.head.len(), 32);
    let v = e.to_vec();
    assert_eq!(v[3], 32);
    assert_eq!(v[1], 0x01 | 0x04 | 0x08);
    assert_eq!(&v[28..32], &[0, 0, 0, 0]);
    let p = RxParams { pda: 7, ..rx(Role::Host, true, false) };
    assert_eq!(dec(&v, &p).unwrap().unwrap(), Pdu::C2HData(d));
    // Without the alignment the receiver expects PDO 28.
    assert_eq!(fatal_of(dec(&v, &rx(Role::Host, true, false))), (TermReqFes::INVALID_HEADER_FIELD, field::PDO));
}

#[test]
fn term_req_layout_and_cut() {
    let t = TermReq { fes: TermReqFes::PDU_SEQUENCE_ERROR, fei: 0x0102_0304, data: Bytes::from(vec![0x55; 200]) };
    let v = encode(Pdu::C2HTermReq(t), &TxParams { hdgst: true, ddgst: true, pda: 0 }).to_vec();
    assert_eq!(v.len(), 152);
    assert_eq!(&v[..8], &[3, 0, 24, 0, 152, 0, 0, 0]);
    assert_eq!(&v[8..14], &[2, 0, 4, 3, 2, 1]);
    match dec(&v, &rx(Role::Host, true, true)).unwrap().unwrap() {
        Pdu::C2HTermReq(t) => {
            assert_eq!(t.fes, TermReqFes::PDU_SEQUENCE_ERROR);
            assert_eq!(t.fei, 0x0102_0304);
            assert_eq!(t.data.len(), 128);
        }
        p => panic!("{p:?}"),
    }
}

#[test]
fn fes_values() {
    assert_eq!(TermReqFes::INVALID_HEADER_FIELD.0, 1);
    assert_eq!(TermReqFes::PDU_SEQUENCE_ERROR.0, 2);
    assert_eq!(TermReqFes::HEADER_DIGEST_ERROR.0, 3);
    assert_eq!(TermReqFes::DATA_OUT_OF_RANGE.0, 4);
    assert_eq!(TermReqFes::DATA_LIMIT_EXCEEDED.0, 5);
    assert_eq!(TermReqFes::UNSUPPORTED_PARAMETER.0, 6);
}

#[test]
fn bad_headers_give_the_field() {
    let p = rx(Role::Target, false, false);
    let sqe = Sqe::new(Opcode::READ, 1, 1);
    let good = encode(Pdu::CapsuleCmd { sqe, data: Bytes::new() }, &TxParams::default()).to_vec();
    // Unknown type and wrong direction.
    let mut v = good.clone();
    v[0] = 0x08;
    assert_eq!(fatal_of(dec(&v, &p)), (TermReqFes::INVALID_HEADER_FIELD, 0));
    v[0] = PduType::CAPSULE_RESP.0;
    assert_eq!(fatal_of(dec(&v, &p)), (TermReqFes::INVALID_HEADER_FIELD, 0));
    // Wrong hlen.
    let mut v = good.clone();
    v[2] = 24;
    assert_eq!(fatal_of(dec(&v, &p)), (TermReqFes::INVALID_HEADER_FIELD, field::HLEN));
    // plen < hlen.
    let mut v = good.clone();
    v[4] = 70;
    assert_eq!(fatal_of(dec(&v[..8], &p)), (TermReqFes::INVALID_HEADER_FIELD, field::PLEN));
    // Header digest flag not negotiated.
    let mut v = good.clone();
    v[1] = 1;
    assert_eq!(fatal_of(dec(&v[..8], &p)), (TermReqFes::INVALID_HEADER_FIELD, field::FLAGS));
    // Missing while negotiated.
    assert_eq!(fatal_of(dec(&good[..8], &rx(Role::Target, true, false))), (TermReqFes::INVALID_HEADER_FIELD, 1));
    // Data with a wrong PDO.
    let mut w = Sqe::new(Opcode::WRITE, 1, 1);
    w.set_sgl(Sgl { addr: 0, len: 8, kind: SglType::DATA_BLOCK_OFFSET });
    let good = encode(Pdu::CapsuleCmd { sqe: w, data: Bytes::from_static(&[1; 8]) }, &TxParams::default()).to_vec();
    let mut v = good.clone();
    v[3] = 76;
    assert_eq!(fatal_of(dec(&v[..8], &p)), (TermReqFes::INVALID_HEADER_FIELD, field::PDO));
    // DDGST flag without data digests.
    let mut v = good.clone();
    v[1] = 2;
    assert_eq!(fatal_of(dec(&v[..8], &p)), (TermReqFes::INVALID_HEADER_FIELD, field::FLAGS));
    // ICReq with a wrong plen.
    let mut ic =
        encode(Pdu::IcReq(IcReq { pfv: 0, hpda: 0, hdgst: false, ddgst: false, maxr2t: 0 }), &TxParams::default())
            .to_vec();
    ic[4] = 200;
    assert_eq!(fatal_of(dec(&ic[..8], &p)), (TermReqFes::INVALID_HEADER_FIELD, field::PLEN));
    // H2CData whose DATAL does not match plen.
    let d = DataPdu { cid: 1, ttag: 2, offset: 0, data: Bytes::from_static(b"abcd"), last: true, success: false };
    let mut v = encode(Pdu::H2CData(d), &TxParams::default()).to_vec();
    v[16] = 5;
    assert_eq!(fatal_of(dec(&v[..24], &p)), (TermReqFes::INVALID_HEADER_FIELD, field::DATAL));
    // SUCCESS on H2CData.
    v[16] = 4;
    v[1] |= 0x08;
    assert_eq!(fatal_of(dec(&v[..24], &p)), (TermReqFes::INVALID_HEADER_FIELD, field::FLAGS));
}

#[test]
fn data_pdu_without_data_is_refused() {
    let ch = CommonHeader { pdu_type: PduType::H2C_DATA, flags: PduFlags(0x04), hlen: 24, pdo: 0, plen: 24 };
    assert_eq!(
        fatal_of(dec(&ch.encode(), &rx(Role::Target, false, false))),
        (TermReqFes::INVALID_HEADER_FIELD, field::DATAL)
    );
}

#[test]
fn plen_over_the_limit_is_refused_from_the_common_header() {
    let p = RxParams { max_capsule_data: 4096, max_data: 8192, ..rx(Role::Target, false, false) };
    // A capsule announcing 1 GiB: refused with just 8 bytes in.
    let mut ch = CommonHeader { pdu_type: PduType::CAPSULE_CMD, flags: PduFlags(0), hlen: 72, pdo: 72, plen: 1 << 30 };
    assert_eq!(fatal_of(dec(&ch.encode(), &p)), (TermReqFes::DATA_LIMIT_EXCEEDED, 0));
    ch.plen = 72 + 4096;
    assert_eq!(dec(&ch.encode(), &p), Ok(None));
    ch.plen = 72 + 4097;
    assert_eq!(fatal_of(dec(&ch.encode(), &p)), (TermReqFes::DATA_LIMIT_EXCEEDED, 0));
    let ch = CommonHeader { pdu_type: PduType::H2C_DATA, flags: PduFlags(0), hlen: 24, pdo: 24, plen: 24 + 8193 };
    assert_eq!(fatal_of(dec(&ch.encode(), &p)), (TermReqFes::DATA_LIMIT_EXCEEDED, 0));
    // plen = u32::MAX on a TermReq.
    let ch = CommonHeader { pdu_type: PduType::H2C_TERM_REQ, flags: PduFlags(0), hlen: 24, pdo: 0, plen: u32::MAX };
    assert_eq!(fatal_of(dec(&ch.encode(), &p)), (TermReqFes::INVALID_HEADER_FIELD, field::PLEN));
}

#[test]
fn corrupt_digests() {
    let p = rx(Role::Target, true, true);
    let tx = TxParams { hdgst: true, ddgst: true, pda: 0 };
    let d =
        DataPdu { cid: 9, ttag: 1, offset: 0, data: Bytes::from_static(b"hello world!"), last: true, success: false };
    let good = encode(Pdu::H2CData(d.clone()), &tx).to_vec();
    // Header digest: fatal, detected before the data arrives.
    let mut v = good.clone();
    v[24] ^= 1;
    match dec(&v[..28], &p) {
        Err(DecodeError::Fatal { fes, header, .. }) => {
            assert_eq!(fes, TermReqFes::HEADER_DIGEST_ERROR);
            assert_eq!(&header[..], &v[..24]);
        }
        r => panic!("{r:?}"),
    }
    // A flipped header bit is caught by the header digest too.
    let mut v = good.clone();
    v[12] ^= 0x80;
    assert_eq!(fatal_of(dec(&v, &p)).0, TermReqFes::HEADER_DIGEST_ERROR);
    // Data digest: the PDU is consumed and handed back.
    let mut v = good.clone();
    let n = v.len();
    v[n - 1] ^= 0xFF;
    let mut b = BytesMut::from(&v[..]);
    assert_eq!(decode(&mut b, &p), Err(DecodeError::DataDigest(Box::new(Pdu::H2CData(d.clone())))));
    assert!(b.is_empty());
    // Corrupt data, intact digest.
    let mut v = good;
    v[30] ^= 1;
    assert!(matches!(dec(&v, &p), Err(DecodeError::DataDigest(_))));
}

#[test]
fn two_pdus_back_to_back() {
    let p = rx(Role::Host, false, false);
    let mut b = BytesMut::new();
    let r = R2t { cid: 1, ttag: 2, offset: 0, len: 4096 };
    let c = Cqe::new(1, Status::SUCCESS);
    b.extend_from_slice(&encode(Pdu::R2T(r), &TxParams::default()).to_vec());
    b.extend_from_slice(&encode(Pdu::CapsuleResp { cqe: c }, &TxParams::default()).to_vec());
    b.extend_from_slice(&[5, 0]);
    assert_eq!(decode(&mut b, &p), Ok(Some(Pdu::R2T(r))));
    assert_eq!(decode(&mut b, &p), Ok(Some(Pdu::CapsuleResp { cqe: c })));
    assert_eq!(decode(&mut b, &p), Ok(None));
    assert_eq!(b.len(), 2);
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn arb_nonempty(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 1..max).prop_map(Bytes::from)
}

fn arb_sqe() -> impl Strategy<Value = Sqe> {
    proptest::collection::vec(any::<u8>(), 64).prop_map(|v| Sqe::from_slice(&v).unwrap_or_default())
}

fn arb_cqe() -> impl Strategy<Value = Cqe> {
    (any::<u64>(), any::<u16>(), any::<u16>(), any::<u16>(), any::<u16>())
        .prop_map(|(result, sqhd, sqid, cid, st)| Cqe { result, sqhd, sqid, cid, status: Status::from_field(st & !1) })
}

/// A PDU and the role that receives it.
fn arb_pdu() -> impl Strategy<Value = (Pdu, Role)> {
    let data = |last: bool, success: bool| {
        (any::<u16>(), any::<u16>(), any::<u32>(), arb_nonempty(300))
            .prop_map(move |(cid, ttag, offset, data)| DataPdu { cid, ttag, offset, data, last, success })
    };
    prop_oneof![
        (any::<u16>(), 0u8..=31, any::<bool>(), any::<bool>(), any::<u32>()).prop_map(
            |(pfv, hpda, hdgst, ddgst, maxr2t)| (Pdu::IcReq(IcReq { pfv, hpda, hdgst, ddgst, maxr2t }), Role::Target)
        ),
        (any::<u16>(), 0u8..=31, any::<bool>(), any::<bool>(), any::<u32>()).prop_map(
            |(pfv, cpda, hdgst, ddgst, maxh2cdata)| {
                (Pdu::IcResp(IcResp { pfv, cpda, hdgst, ddgst, maxh2cdata }), Role::Host)
            }
        ),
        (any::<u16>(), any::<u32>(), arb_bytes(129)).prop_map(|(fes, fei, data)| {
            (Pdu::H2CTermReq(TermReq { fes: TermReqFes(fes), fei, data }), Role::Target)
        }),
        (any::<u16>(), any::<u32>(), arb_bytes(129)).prop_map(|(fes, fei, data)| {
            (Pdu::C2HTermReq(TermReq { fes: TermReqFes(fes), fei, data }), Role::Host)
        }),
        (arb_sqe(), arb_bytes(300)).prop_map(|(sqe, data)| (Pdu::CapsuleCmd { sqe, data }, Role::Target)),
        arb_cqe().prop_map(|cqe| (Pdu::CapsuleResp { cqe }, Role::Host)),
        (any::<bool>()).prop_flat_map(move |last| data(last, false)).prop_map(|d| (Pdu::H2CData(d), Role::Target)),
        (any::<bool>(), any::<bool>())
            .prop_flat_map(move |(last, s)| data(last || s, s))
            .prop_map(|d| (Pdu::C2HData(d), Role::Host)),
        (any::<u16>(), any::<u16>(), any::<u32>(), any::<u32>())
            .prop_map(|(cid, ttag, offset, len)| (Pdu::R2T(R2t { cid, ttag, offset, len }), Role::Host)),
    ]
}

proptest! {
    #[test]
    fn round_trip_every_kind(
        (pdu, role) in arb_pdu(),
        hdgst in any::<bool>(),
        ddgst in any::<bool>(),
        pda in prop_oneof![Just(0u8), 0u8..=31],
    ) {
        let tx = TxParams { hdgst, ddgst, pda };
        let p = RxParams { role, hdgst, ddgst, pda, max_capsule_data: 300, max_data: 300 };
        let e = encode(pdu.clone(), &tx);
        let v = e.to_vec();
        // Every strict prefix is incomplete, never an error.
        for n in 0..v.len() {
            let mut b = BytesMut::from(&v[..n]);
            prop_assert_eq!(decode(&mut b, &p), Ok(None), "prefix {}", n);
            prop_assert_eq!(b.len(), n);
        }
        let mut b = BytesMut::from(&v[..]);
        let mut want = pdu;
        if let Pdu::H2CTermReq(t) | Pdu::C2HTermReq(t) = &mut want {
            t.data = t.data.slice(..t.data.len().min(MAX_TERM_DATA));
        }
        prop_assert_eq!(decode(&mut b, &p), Ok(Some(want)));
        prop_assert!(b.is_empty());
    }

    #[test]
    fn random_bytes_never_panic(
        v in proptest::collection::vec(any::<u8>(), 0..400),
        hdgst in any::<bool>(),
        ddgst in any::<bool>(),
        host in any::<bool>(),
        pda in 0u8..=255,
    ) {
        let role = if host { Role::Host } else { Role::Target };
        let p = RxParams { role, hdgst, ddgst, pda, max_capsule_data: 256, max_data: 256 };
        let mut b = BytesMut::from(&v[..]);
        for _ in 0..8 {
            match decode(&mut b, &p) {
                Ok(Some(_)) | Err(DecodeError::DataDigest(_)) => {}
                Ok(None) => break,
                Err(DecodeError::Fatal { header, .. }) => {
                    prop_assert!(header.len() <= MAX_TERM_DATA);
                    break;
                }
            }
        }
    }
}
