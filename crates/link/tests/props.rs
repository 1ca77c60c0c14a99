//! Property tests: encode → decode is the identity; decode of arbitrary
//! bytes never panics and never consumes more than it was given.

use oxcopy_link::*;
use proptest::prelude::*;

/// An owned [`Message`], for generating.
#[derive(Debug, Clone)]
enum Owned {
    Hello(NodeId, Nonce),
    HelloReply(NodeId, Nonce, Proof),
    Auth(Proof),
    Ready,
    Open(Box<[u8; TOKEN_LEN]>),
    Opened(u64, u32, u32, u32),
    Read(u64, u64),
    Data(u64, Vec<u8>, bool),
    Delete,
    Deleted,
    Ping(u64),
    Pong(u64),
    Error(u16, String),
}

impl Owned {
    fn msg(&self) -> Message<'_> {
        match self {
            Owned::Hello(node, nonce) => Message::Hello { node: *node, nonce: *nonce },
            Owned::HelloReply(node, nonce, proof) => Message::HelloReply { node: *node, nonce: *nonce, proof: *proof },
            Owned::Auth(proof) => Message::Auth { proof: *proof },
            Owned::Ready => Message::Ready,
            Owned::Open(token) => Message::Open { token },
            Owned::Opened(bytes, block_size, rod_type, inactivity_timeout_secs) => Message::Opened(OpenedInfo {
                bytes: *bytes,
                block_size: *block_size,
                rod_type: *rod_type,
                inactivity_timeout_secs: *inactivity_timeout_secs,
            }),
            Owned::Read(offset, len) => Message::Read { offset: *offset, len: *len },
            Owned::Data(offset, data, crc) => Message::Data { offset: *offset, data, crc: *crc },
            Owned::Delete => Message::Delete,
            Owned::Deleted => Message::Deleted,
            Owned::Ping(c) => Message::Ping(*c),
            Owned::Pong(c) => Message::Pong(*c),
            Owned::Error(code, message) => Message::Error { code: ErrorCode(*code), message },
        }
    }
}

fn owned() -> impl Strategy<Value = Owned> {
    let token = prop::collection::vec(any::<u8>(), TOKEN_LEN)
        .prop_map(|v| Box::new(<[u8; TOKEN_LEN]>::try_from(v.as_slice()).unwrap()));
    let data = prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 1..=600),
        1 => (any::<u8>(), MAX_DATA - 3..=MAX_DATA).prop_map(|(b, n)| vec![b; n]),
    ];
    prop_oneof![
        (any::<NodeId>(), any::<Nonce>()).prop_map(|(n, c)| Owned::Hello(n, c)),
        (any::<NodeId>(), any::<Nonce>(), any::<Proof>()).prop_map(|(n, c, p)| Owned::HelloReply(n, c, p)),
        any::<Proof>().prop_map(Owned::Auth),
        Just(Owned::Ready),
        token.prop_map(Owned::Open),
        any::<(u64, u32, u32, u32)>().prop_map(|(a, b, c, d)| Owned::Opened(a, b, c, d)),
        any::<(u64, u64)>().prop_map(|(o, l)| Owned::Read(o, l)),
        (any::<u64>(), data, any::<bool>()).prop_map(|(o, d, c)| Owned::Data(o, d, c)),
        Just(Owned::Delete),
        Just(Owned::Deleted),
        any::<u64>().prop_map(Owned::Ping),
        any::<u64>().prop_map(Owned::Pong),
        (any::<u16>(), "\\PC{0,80}").prop_map(|(c, m)| Owned::Error(c, m)),
    ]
}

/// What a message decodes back to: itself, with an ERROR message cut to
/// [`MAX_ERROR_MESSAGE`] bytes at a char boundary.
fn expected<'a>(m: &Message<'a>) -> Message<'a> {
    match *m {
        Message::Error { code, message } => {
            let mut end = message.len().min(MAX_ERROR_MESSAGE);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            Message::Error { code, message: &message[..end] }
        }
        ref other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_is_identity(a in owned(), b in owned()) {
        let (a, b) = (a.msg(), b.msg());
        let mut buf = Vec::new();
        a.encode(&mut buf);
        let first = buf.len();
        b.encode(&mut buf);
        let (got, n) = decode(&buf).unwrap().unwrap();
        prop_assert_eq!(n, first);
        prop_assert_eq!(got.kind(), a.kind());
        prop_assert_eq!(got, expected(&a));
        let (got, n) = decode(&buf[first..]).unwrap().unwrap();
        prop_assert_eq!(n, buf.len() - first);
        prop_assert_eq!(got, expected(&b));
        // Re-encoding what was decoded gives the same bytes.
        prop_assert_eq!(expected(&b).to_frame(), buf[first..].to_vec());
    }

    #[test]
    fn decode_of_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
        if let Ok(Some((_, n))) = decode(&bytes) {
            prop_assert!(n <= bytes.len());
        }
    }

    #[test]
    fn decode_after_a_valid_header_never_panics(
        kind in prop_oneof![Just(1u8), Just(2), Just(3), Just(4), 0x10u8..=0x17, Just(0x7F), any::<u8>()],
        len in prop_oneof![0u32..600, any::<u32>()],
        body in prop::collection::vec(any::<u8>(), 0..700),
    ) {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[VERSION, kind, 0, 0]);
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(&body);
        match decode(&bytes) {
            Ok(Some((m, n))) => {
                prop_assert_eq!(n, HEADER_LEN + len as usize);
                prop_assert!(n <= bytes.len());
                prop_assert_eq!(m.kind(), MsgKind(kind));
                // Whatever decodes re-encodes to the same bytes.
                prop_assert_eq!(m.to_frame(), bytes[..n].to_vec());
            }
            Ok(None) => prop_assert!(bytes.len() < HEADER_LEN + len as usize),
            Err(_) => {}
        }
    }

    #[test]
    fn a_frame_with_one_byte_changed_never_panics(a in owned(), at in any::<prop::sample::Index>(), x in 1u8..) {
        let mut frame = a.msg().to_frame();
        let i = at.index(frame.len());
        frame[i] ^= x;
        if let Ok(Some((_, n))) = decode(&frame) {
            prop_assert!(n <= frame.len());
        }
    }
}
