//! The frame codec against hand-written byte vectors, every prefix of every
//! frame, and hostile headers and payloads (docs/node-link.md, "Frames").

use oxcopy_link::*;

/// Bytes from hex with any whitespace between.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len() % 2 == 0, "odd hex: {s}");
    digits.chunks(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap()).collect()
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn rep(b: u8, n: usize) -> Vec<u8> {
    vec![b; n]
}

static TOKEN: [u8; TOKEN_LEN] = [0x5A; TOKEN_LEN];

/// Every kind once: the message and its frame written out by hand.
fn vectors() -> Vec<(Message<'static>, Vec<u8>)> {
    vec![
        (
            Message::Hello { node: [0x11; 16], nonce: [0x22; 32] },
            cat(&[hex("4F584E4C 01 01 0000 00000034  0001 0000"), rep(0x11, 16), rep(0x22, 32)]),
        ),
        (
            Message::HelloReply { node: [0x33; 16], nonce: [0x44; 32], proof: [0x55; 32] },
            cat(&[hex("4F584E4C 01 02 0000 00000050"), rep(0x33, 16), rep(0x44, 32), rep(0x55, 32)]),
        ),
        (Message::Auth { proof: [0x66; 32] }, cat(&[hex("4F584E4C 01 03 0000 00000020"), rep(0x66, 32)])),
        (Message::Ready, hex("4F584E4C 01 04 0000 00000000")),
        (Message::Open { token: &TOKEN }, cat(&[hex("4F584E4C 01 10 0000 00000200"), rep(0x5A, 512)])),
        (
            Message::Opened(OpenedInfo {
                bytes: 0x1_0000_0000,
                block_size: 512,
                rod_type: 0xFFFF_0001,
                inactivity_timeout_secs: 60,
            }),
            hex("4F584E4C 01 11 0000 00000018  0000000100000000 00000200 FFFF0001 0000003C 00000000"),
        ),
        (
            Message::Read { offset: 0x1000, len: 0x10_0000 },
            hex("4F584E4C 01 12 0000 00000010  0000000000001000 0000000000100000"),
        ),
        (
            // CRC32C("123456789") = E3069283h, the standard check value.
            Message::Data { offset: 0x0102_0304_0506_0708, data: b"123456789", crc: true },
            hex("4F584E4C 01 13 0000 00000019  0102030405060708 E3069283 00000001  313233343536373839"),
        ),
        (
            // Sent from a file by the kernel: no CRC, flags 0.
            Message::Data { offset: 7, data: b"abc", crc: false },
            hex("4F584E4C 01 13 0000 00000013  0000000000000007 00000000 00000000  616263"),
        ),
        (Message::Delete, hex("4F584E4C 01 14 0000 00000000")),
        (Message::Deleted, hex("4F584E4C 01 15 0000 00000000")),
        (Message::Ping(0x0102_0304_0506_0708), hex("4F584E4C 01 16 0000 00000008  0102030405060708")),
        (Message::Pong(0xFFEE_DDCC_BBAA_9988), hex("4F584E4C 01 17 0000 00000008  FFEEDDCCBBAA9988")),
        (
            Message::Error { code: ErrorCode::TOKEN_REVOKED, message: "revoked" },
            hex("4F584E4C 01 7F 0000 0000000D  0105 0000 0007 7265766F6B6564"),
        ),
        (Message::Error { code: ErrorCode::BUSY, message: "" }, hex("4F584E4C 01 7F 0000 00000006  0004 0000 0000")),
    ]
}

fn header(kind: u8, len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&MAGIC);
    h[4] = VERSION;
    h[5] = kind;
    h[8..].copy_from_slice(&len.to_be_bytes());
    h
}

const ALL_KINDS: [MsgKind; 13] = [
    MsgKind::HELLO,
    MsgKind::HELLO_REPLY,
    MsgKind::AUTH,
    MsgKind::READY,
    MsgKind::OPEN,
    MsgKind::OPENED,
    MsgKind::READ,
    MsgKind::DATA,
    MsgKind::DELETE,
    MsgKind::DELETED,
    MsgKind::PING,
    MsgKind::PONG,
    MsgKind::ERROR,
];

#[test]
fn every_kind_encodes_to_its_hand_written_frame_and_parses_back() {
    let vs = vectors();
    let mut kinds: Vec<MsgKind> = vs.iter().map(|(m, _)| m.kind()).collect();
    kinds.dedup();
    assert_eq!(kinds, ALL_KINDS, "a vector for every kind");
    for (msg, frame) in vs {
        let mut out = vec![0xEE]; // encode appends
        msg.encode(&mut out);
        assert_eq!(out[0], 0xEE);
        assert_eq!(&out[1..], &frame[..], "{}", msg.kind().name());
        assert_eq!(decode(&frame), Ok(Some((msg.clone(), frame.len()))), "{}", msg.kind().name());
        let h = parse_header(frame[..HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!(h, Header { kind: msg.kind(), len: (frame.len() - HEADER_LEN) as u32 });
        assert_eq!(parse_payload(h, &frame[HEADER_LEN..]), Ok(msg.clone()));
        // Trailing bytes (the next frame) are left alone.
        let mut two = frame.clone();
        two.extend_from_slice(&frame);
        assert_eq!(decode(&two), Ok(Some((msg, frame.len()))));
    }
}

#[test]
fn data_prefix_is_the_front_of_the_encoded_frame() {
    for data in [&b"x"[..], b"123456789", &[7u8; MAX_DATA][..]] {
        let frame = Message::Data { offset: 42, data, crc: true }.to_frame();
        let prefix = data_prefix(42, data);
        assert_eq!(&frame[..HEADER_LEN + DATA_PREFIX], &prefix[..]);
        assert_eq!(&frame[HEADER_LEN + DATA_PREFIX..], data);
    }
}

#[test]
fn every_prefix_of_every_frame_asks_for_more() {
    let big = vec![0xA5u8; MAX_DATA];
    let long = "x".repeat(MAX_ERROR_MESSAGE);
    let mut frames: Vec<Vec<u8>> = vectors().into_iter().map(|(_, f)| f).collect();
    frames.push(Message::Data { offset: u64::MAX, data: &big, crc: true }.to_frame());
    frames.push(Message::Data { offset: 0, data: &[1], crc: false }.to_frame());
    frames.push(Message::Error { code: ErrorCode(0xFFFF), message: &long }.to_frame());
    for frame in &frames {
        for n in 0..frame.len() {
            assert_eq!(decode(&frame[..n]), Ok(None), "prefix {n} of {} bytes", frame.len());
        }
        assert!(matches!(decode(frame), Ok(Some((_, n))) if n == frame.len()));
    }
}

#[test]
fn bad_headers_are_refused_from_the_12_header_bytes_alone() {
    let good = header(MsgKind::PING.0, 8);
    assert_eq!(parse_header(&good), Ok(Header { kind: MsgKind::PING, len: 8 }));
    assert_eq!(decode(&good), Ok(None));

    let check = |h: [u8; HEADER_LEN], want: LinkError| {
        assert_eq!(parse_header(&h), Err(want.clone()), "{h:02X?}");
        assert_eq!(decode(&h), Err(want.clone()), "{h:02X?}");
        for n in 0..HEADER_LEN {
            assert_eq!(decode(&h[..n]), Ok(None));
        }
    };
    for i in 0..4 {
        let mut h = good;
        h[i] ^= 0x20;
        check(h, LinkError::BadMagic);
    }
    for v in [0u8, 2, 0xFF] {
        let mut h = good;
        h[4] = v;
        check(h, LinkError::BadVersion(v));
    }
    for i in [6, 7] {
        let mut h = good;
        h[i] = 1;
        check(h, LinkError::Reserved);
    }
    for k in (0u8..=0xFF).filter(|k| !ALL_KINDS.contains(&MsgKind(*k))) {
        check(header(k, 0), LinkError::UnknownKind(k));
        assert_eq!(MsgKind(k).name(), "unknown");
    }
    for kind in ALL_KINDS {
        let max = match kind {
            MsgKind::DATA => (DATA_PREFIX + MAX_DATA) as u32,
            MsgKind::ERROR => 6 + MAX_ERROR_MESSAGE as u32,
            _ => vectors().iter().find(|(m, _)| m.kind() == kind).map(|(_, f)| (f.len() - HEADER_LEN) as u32).unwrap(),
        };
        for len in [u32::MAX, 0x8000_0000, max + 1] {
            check(header(kind.0, len), LinkError::TooLong { kind, len, max });
        }
        assert!(parse_header(&header(kind.0, max)).is_ok());
    }
}

#[test]
fn wrong_exact_lengths_are_refused() {
    for (msg, frame) in vectors() {
        let kind = msg.kind();
        if kind == MsgKind::DATA || kind == MsgKind::ERROR {
            continue;
        }
        let exact = (frame.len() - HEADER_LEN) as u32;
        if exact > 0 {
            for len in [0, exact - 1] {
                assert_eq!(parse_header(&header(kind.0, len)), Err(LinkError::BadLength { kind, len }));
            }
        }
        assert_eq!(
            parse_header(&header(kind.0, exact + 1)),
            Err(LinkError::TooLong { kind, len: exact + 1, max: exact })
        );
        // A hand-made header or a payload of the wrong size is refused too.
        let h = Header { kind, len: exact };
        let mut longer = frame[HEADER_LEN..].to_vec();
        longer.push(0);
        assert_eq!(parse_payload(h, &longer), Err(LinkError::BadLength { kind, len: exact + 1 }));
        assert!(matches!(parse_payload(Header { kind, len: exact + 1 }, &longer), Err(LinkError::TooLong { .. })));
    }
    // DATA with no data, ERROR shorter than its fixed part.
    let kind = MsgKind::DATA;
    assert_eq!(parse_header(&header(kind.0, DATA_PREFIX as u32)), Err(LinkError::BadLength { kind, len: 16 }));
    let empty = hex("0000000000000000 00000000 00000000");
    assert_eq!(parse_payload(Header { kind, len: 16 }, &empty), Err(LinkError::BadLength { kind, len: 16 }));
    let kind = MsgKind::ERROR;
    assert_eq!(parse_header(&header(kind.0, 5)), Err(LinkError::BadLength { kind, len: 5 }));
    assert_eq!(parse_payload(Header { kind: MsgKind(0x42), len: 0 }, &[]), Err(LinkError::UnknownKind(0x42)));
}

#[test]
fn hostile_payloads_are_refused() {
    // DATA whose CRC does not match (data flipped, then CRC flipped).
    let good = Message::Data { offset: 9, data: b"123456789", crc: true }.to_frame();
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(decode(&bad), Err(LinkError::Checksum));
    let mut bad = good.clone();
    bad[HEADER_LEN + 8] ^= 0x80;
    assert_eq!(decode(&bad), Err(LinkError::Checksum));
    // DATA's flags: unknown bits; a CRC without its flag.
    let mut bad = good.clone();
    bad[HEADER_LEN + 15] = 3;
    assert_eq!(decode(&bad), Err(LinkError::Reserved));
    let mut bad = good.clone();
    bad[HEADER_LEN + 12] = 0x80;
    assert_eq!(decode(&bad), Err(LinkError::Reserved));
    let mut bad = good.clone();
    bad[HEADER_LEN + 15] = 0;
    assert_eq!(decode(&bad), Err(LinkError::Reserved));
    // Without the flag and with a zero CRC field, any data is taken as is.
    let mut plain = good.clone();
    plain[HEADER_LEN + 8..HEADER_LEN + 16].fill(0);
    *plain.last_mut().unwrap() ^= 1;
    assert!(matches!(decode(&plain), Ok(Some((Message::Data { crc: false, .. }, _)))));

    // ERROR: invalid UTF-8, a message length that disagrees, reserved.
    let bad = hex("4F584E4C 01 7F 0000 00000008  0001 0000 0002 C328");
    assert_eq!(decode(&bad), Err(LinkError::Utf8));
    let bad = hex("4F584E4C 01 7F 0000 00000007  0001 0000 0002 41");
    assert_eq!(decode(&bad), Err(LinkError::BadLength { kind: MsgKind::ERROR, len: 7 }));
    let bad = hex("4F584E4C 01 7F 0000 00000007  0001 0000 0000 41");
    assert_eq!(decode(&bad), Err(LinkError::BadLength { kind: MsgKind::ERROR, len: 7 }));
    let bad = hex("4F584E4C 01 7F 0000 00000007  0001 0100 0001 41");
    assert_eq!(decode(&bad), Err(LinkError::Reserved));

    // HELLO: another protocol version, reserved.
    let hello = Message::Hello { node: [1; 16], nonce: [2; 32] }.to_frame();
    let mut bad = hello.clone();
    bad[HEADER_LEN + 1] = 2;
    assert_eq!(decode(&bad), Err(LinkError::Version(2)));
    assert_eq!(LinkError::Version(2).code(), ErrorCode::VERSION);
    let mut bad = hello.clone();
    bad[HEADER_LEN] = 1;
    assert_eq!(decode(&bad), Err(LinkError::Version(0x0101)));
    let mut bad = hello;
    bad[HEADER_LEN + 3] = 1;
    assert_eq!(decode(&bad), Err(LinkError::Reserved));

    // OPENED: reserved.
    let mut bad =
        Message::Opened(OpenedInfo { bytes: 1, block_size: 2, rod_type: 3, inactivity_timeout_secs: 4 }).to_frame();
    *bad.last_mut().unwrap() = 1;
    assert_eq!(decode(&bad), Err(LinkError::Reserved));
}

#[test]
fn long_error_messages_are_cut_at_a_char_boundary() {
    let ascii = "a".repeat(300);
    let frame = Message::Error { code: ErrorCode::PROTOCOL, message: &ascii }.to_frame();
    assert_eq!(frame.len(), HEADER_LEN + 6 + MAX_ERROR_MESSAGE);
    assert_eq!(
        decode(&frame).unwrap().unwrap().0,
        Message::Error { code: ErrorCode::PROTOCOL, message: &ascii[..256] }
    );

    // "a" then two-byte chars: byte 256 falls inside a char, so 255 are kept.
    let odd = format!("a{}", "é".repeat(200));
    let frame = Message::Error { code: ErrorCode::PROTOCOL, message: &odd }.to_frame();
    let Some((Message::Error { message, .. }, _)) = decode(&frame).unwrap() else { panic!("not an ERROR") };
    assert_eq!(message.len(), 255);
    assert!(odd.starts_with(message));

    // Four-byte chars: 256 is a boundary (64 chars).
    let wide = "😀".repeat(100);
    let frame = Message::Error { code: ErrorCode::PROTOCOL, message: &wide }.to_frame();
    let Some((Message::Error { message, .. }, _)) = decode(&frame).unwrap() else { panic!("not an ERROR") };
    assert_eq!(message, "😀".repeat(64));
}

#[test]
fn names_and_codes() {
    assert_eq!(MsgKind::HELLO_REPLY.name(), "HELLO_REPLY");
    assert_eq!(MsgKind::ERROR.name(), "ERROR");
    assert_eq!(ErrorCode::TOKEN_UNSUPPORTED_TYPE.name(), "TOKEN_UNSUPPORTED_TYPE");
    assert_eq!(ErrorCode::SHUTTING_DOWN.name(), "SHUTTING_DOWN");
    assert_eq!(ErrorCode(0x0200).name(), "unknown");
    let named = (0..=0xFFFFu16).filter(|c| ErrorCode(*c).name() != "unknown").count();
    assert_eq!(named, 8 + 9);
    for k in ALL_KINDS {
        assert_ne!(k.name(), "unknown");
    }
    let cases = [
        (LinkError::BadMagic, ErrorCode::PROTOCOL),
        (LinkError::BadVersion(2), ErrorCode::VERSION),
        (LinkError::Reserved, ErrorCode::PROTOCOL),
        (LinkError::UnknownKind(9), ErrorCode::PROTOCOL),
        (LinkError::TooLong { kind: MsgKind::DATA, len: 1, max: 0 }, ErrorCode::PROTOCOL),
        (LinkError::BadLength { kind: MsgKind::DATA, len: 1 }, ErrorCode::PROTOCOL),
        (LinkError::Checksum, ErrorCode::PROTOCOL),
        (LinkError::Utf8, ErrorCode::PROTOCOL),
        (LinkError::Version(2), ErrorCode::VERSION),
        (LinkError::Unexpected { expected: "HELLO", got: MsgKind::PING }, ErrorCode::PROTOCOL),
        (LinkError::AuthFailed, ErrorCode::AUTH_FAILED),
        (LinkError::Peer { code: ErrorCode::BUSY, message: "full".into() }, ErrorCode::BUSY),
    ];
    for (e, code) in cases {
        assert_eq!(e.code(), code, "{e}");
    }
    assert_eq!(
        LinkError::Unexpected { expected: "HELLO", got: MsgKind::PING }.to_string(),
        "node link: expected HELLO, got PING (16h)"
    );
}
