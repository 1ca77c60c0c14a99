//! The node link (crates/link, docs/node-link.md): frames decoded in a loop
//! from arbitrary bytes, each fed to a server and a client handshake.
//! Input: one mode byte, then the byte stream.
//!
//! - mode bit 0: first run the genuine HELLO / HELLO_REPLY exchange, so the
//!   fuzzed messages reach the server's AUTH step and the client's READY step;
//! - mode bit 1: feed each message to the handshake method its position
//!   picks (alternating), not the one its kind names — out-of-order calls;
//! - mode bit 2: after a decode error skip one byte and go on (a receiver
//!   would close; this reaches more frames from the same input).
//!
//! Properties: nothing panics; `decode` consumes a whole frame within what
//! it was given; whatever decodes re-encodes to the same bytes (the codec
//! is canonical); a HELLO_REPLY the server makes passes a genuine client;
//! a handshake succeeds only with the proof a genuine peer would send; a
//! failed handshake stays failed; ERROR from the peer is `LinkError::Peer`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oxcopy_link::{decode, ClientHandshake, LinkError, Message, MsgKind, ServerHandshake, HEADER_LEN};

const KEY: &[u8] = b"the copy-domain key of the fuzzer";
const ID_C: [u8; 16] = [0xC1; 16];
const ID_S: [u8; 16] = [0x5E; 16];
const N_C: [u8; 32] = [0x0C; 32];
const N_S: [u8; 32] = [0x05; 32];

fn one(frame: &[u8]) -> Message<'_> {
    match decode(frame) {
        Ok(Some((m, n))) if n == frame.len() => m,
        other => panic!("an encoded frame does not decode: {other:?}"),
    }
}

struct Side {
    failed: Option<LinkError>,
    done: bool,
}

impl Side {
    /// Records a step's outcome and checks that a failed handshake stays failed.
    fn step<T>(&mut self, r: &Result<T, LinkError>, msg: &Message<'_>) {
        if let Some(first) = &self.failed {
            assert_eq!(r.as_ref().err(), Some(first), "a failed handshake stays failed");
        }
        if let Err(e) = r {
            if let Message::Error { code, .. } = msg {
                if self.failed.is_none() {
                    assert!(matches!(e, LinkError::Peer { code: c, .. } if c == code), "ERROR → Peer: {e:?}");
                }
            }
            self.failed.get_or_insert_with(|| e.clone());
        } else {
            assert!(!self.done, "a finished handshake accepted {}", msg.kind().name());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let mut server = ServerHandshake::new(KEY, ID_S, N_S);
    let mut client = ClientHandshake::new(KEY, ID_C, N_C);
    let (mut s, mut c) = (Side { failed: None, done: false }, Side { failed: None, done: false });
    // The AUTH frame that would authenticate the client the server heard from.
    let mut want_auth: Option<Vec<u8>> = None;
    let mut got_reply = false;

    if mode & 1 != 0 {
        let reply = server.on_hello(&one(&client.hello())).expect("genuine HELLO");
        let (auth, peer) = client.on_reply(&one(&reply)).expect("genuine HELLO_REPLY");
        assert_eq!(peer, ID_S);
        want_auth = Some(auth);
        got_reply = true;
    }

    for i in 0..64usize {
        let (msg, n) = match decode(rest) {
            Ok(Some(x)) => x,
            Ok(None) => break,
            Err(_) if mode & 4 != 0 && !rest.is_empty() => {
                rest = &rest[1..];
                continue;
            }
            Err(_) => break,
        };
        assert!(n >= HEADER_LEN && n <= rest.len(), "consumed {n} of {}", rest.len());
        assert_eq!(msg.to_frame(), &rest[..n], "decode → encode is the identity");

        // Server side.
        let to_hello = if mode & 2 != 0 { i % 2 == 0 } else { msg.kind() == MsgKind::HELLO };
        if to_hello {
            let r = server.on_hello(&msg);
            s.step(&r, &msg);
            if let (Ok(reply), Message::Hello { node, nonce }) = (&r, &msg) {
                // What the server sent passes a genuine client with that id and nonce.
                let (auth, peer) = ClientHandshake::new(KEY, *node, *nonce).on_reply(&one(reply)).expect("genuine P_s");
                assert_eq!(peer, ID_S);
                want_auth = Some(auth);
            }
        } else {
            let r = server.on_auth(&msg);
            s.step(&r, &msg);
            if r.is_ok() {
                assert_eq!(want_auth.as_deref(), Some(&rest[..n]), "AUTH accepted with another proof");
                s.done = true;
            }
        }

        // Client side.
        let to_reply = if mode & 2 != 0 { i % 2 == 1 } else { msg.kind() == MsgKind::HELLO_REPLY };
        if to_reply {
            let r = client.on_reply(&msg);
            c.step(&r, &msg);
            if let (Ok(_), Message::HelloReply { node, nonce, .. }) = (&r, &msg) {
                let genuine = ServerHandshake::new(KEY, *node, *nonce)
                    .on_hello(&Message::Hello { node: ID_C, nonce: N_C })
                    .expect("genuine HELLO");
                assert_eq!(genuine, &rest[..n], "HELLO_REPLY accepted with another proof");
                got_reply = true;
            }
        } else {
            let r = client.on_ready(&msg);
            c.step(&r, &msg);
            if r.is_ok() {
                assert!(got_reply && matches!(msg, Message::Ready));
                c.done = true;
            }
        }
        rest = &rest[n..];
    }
});
