//! The handshake (docs/node-link.md, "Handshake"): both ways, wrong keys,
//! reflection, order, and ERROR from the peer.

use hmac::{Hmac, Mac};
use oxcopy_link::*;
use sha2::Sha256;

const KEY: &[u8] = b"the copy-domain key of this test";
const OTHER_KEY: &[u8] = b"a key of some other copy domain!";
const ID_C: NodeId = [0xC1; 16];
const ID_S: NodeId = [0x5E; 16];
const N_C: Nonce = [0x0C; 32];
const N_S: Nonce = [0x05; 32];

/// The one message in a frame.
fn msg(frame: &[u8]) -> Message<'_> {
    let (m, n) = decode(frame).unwrap().unwrap();
    assert_eq!(n, frame.len());
    m
}

/// `HMAC(Kl, label ‖ id_c ‖ id_s ‖ n_c ‖ n_s)` written out independently.
fn proof(key: &[u8], label: &str) -> Proof {
    let mut kl = Hmac::<Sha256>::new_from_slice(key).unwrap();
    kl.update(b"oxcopy node link v1");
    let kl = kl.finalize().into_bytes();
    let mut m = Hmac::<Sha256>::new_from_slice(&kl).unwrap();
    for p in [label.as_bytes(), &ID_C, &ID_S, &N_C, &N_S] {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

#[test]
fn link_key_is_hmac_of_the_label() {
    let mut m = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
    m.update(b"oxcopy node link v1");
    assert_eq!(link_key(KEY), <[u8; 32]>::from(m.finalize().into_bytes()));
    assert_ne!(link_key(KEY), link_key(OTHER_KEY));
    // Any key length, none included.
    let _ = link_key(&[]);
    let _ = link_key(&[7; 1000]);
}

#[test]
fn handshake_succeeds_and_names_both_peers() {
    let mut c = ClientHandshake::new(KEY, ID_C, N_C);
    let mut s = ServerHandshake::new(KEY, ID_S, N_S);
    let hello = c.hello();
    assert_eq!(msg(&hello), Message::Hello { node: ID_C, nonce: N_C });
    let reply = s.on_hello(&msg(&hello)).unwrap();
    assert_eq!(msg(&reply), Message::HelloReply { node: ID_S, nonce: N_S, proof: proof(KEY, "server") });
    let (auth, server_id) = c.on_reply(&msg(&reply)).unwrap();
    assert_eq!(server_id, ID_S);
    assert_eq!(msg(&auth), Message::Auth { proof: proof(KEY, "client") });
    let (ready, client_id) = s.on_auth(&msg(&auth)).unwrap();
    assert_eq!(client_id, ID_C);
    assert_eq!(msg(&ready), Message::Ready);
    c.on_ready(&msg(&ready)).unwrap();

    // Done: nothing more is accepted, on either side.
    assert!(matches!(c.on_ready(&Message::Ready), Err(LinkError::Unexpected { .. })));
    assert!(matches!(s.on_auth(&msg(&auth)), Err(LinkError::Unexpected { .. })));
}

#[test]
fn fresh_nonces_give_fresh_proofs() {
    let mut s1 = ServerHandshake::new(KEY, ID_S, N_S);
    let mut s2 = ServerHandshake::new(KEY, ID_S, [0x06; 32]);
    let hello = Message::Hello { node: ID_C, nonce: N_C };
    assert_ne!(s1.on_hello(&hello).unwrap(), s2.on_hello(&hello).unwrap());
}

#[test]
fn client_refuses_a_server_without_the_key() {
    let mut c = ClientHandshake::new(KEY, ID_C, N_C);
    let mut s = ServerHandshake::new(OTHER_KEY, ID_S, N_S);
    let reply = s.on_hello(&msg(&c.hello())).unwrap();
    assert_eq!(c.on_reply(&msg(&reply)), Err(LinkError::AuthFailed));
    assert_eq!(LinkError::AuthFailed.code(), ErrorCode::AUTH_FAILED);
    // It stays failed, even when the right reply comes after.
    let mut good = ServerHandshake::new(KEY, ID_S, N_S);
    let reply = good.on_hello(&msg(&c.hello())).unwrap();
    assert_eq!(c.on_reply(&msg(&reply)), Err(LinkError::AuthFailed));
    assert_eq!(c.on_ready(&Message::Ready), Err(LinkError::AuthFailed));
}

#[test]
fn client_refuses_a_reply_for_other_ids_or_nonces() {
    // A genuine P_s, but presented with another server id or nonce.
    for m in [
        Message::HelloReply { node: [0x5F; 16], nonce: N_S, proof: proof(KEY, "server") },
        Message::HelloReply { node: ID_S, nonce: [0x06; 32], proof: proof(KEY, "server") },
        // The client's own proof label does not pass for the server's.
        Message::HelloReply { node: ID_S, nonce: N_S, proof: proof(KEY, "client") },
    ] {
        let mut c = ClientHandshake::new(KEY, ID_C, N_C);
        assert_eq!(c.on_reply(&m), Err(LinkError::AuthFailed));
    }
    let mut c = ClientHandshake::new(KEY, ID_C, N_C);
    let good = Message::HelloReply { node: ID_S, nonce: N_S, proof: proof(KEY, "server") };
    assert!(c.on_reply(&good).is_ok());
}

#[test]
fn server_refuses_a_client_without_the_key() {
    let mut s = ServerHandshake::new(KEY, ID_S, N_S);
    s.on_hello(&Message::Hello { node: ID_C, nonce: N_C }).unwrap();
    assert_eq!(s.on_auth(&Message::Auth { proof: proof(OTHER_KEY, "client") }), Err(LinkError::AuthFailed));
    // It stays failed, even when the right proof comes after.
    assert_eq!(s.on_auth(&Message::Auth { proof: proof(KEY, "client") }), Err(LinkError::AuthFailed));
    assert_eq!(s.on_hello(&Message::Hello { node: ID_C, nonce: N_C }), Err(LinkError::AuthFailed));

    // The real handshake: a client with the other key fails at the server's
    // proof already, so nothing of its own is ever sent.
    let mut c = ClientHandshake::new(OTHER_KEY, ID_C, N_C);
    let mut s = ServerHandshake::new(KEY, ID_S, N_S);
    let reply = s.on_hello(&msg(&c.hello())).unwrap();
    assert_eq!(c.on_reply(&msg(&reply)), Err(LinkError::AuthFailed));
}

#[test]
fn reflected_server_proof_does_not_authenticate_a_client() {
    let mut s = ServerHandshake::new(KEY, ID_S, N_S);
    let reply = s.on_hello(&Message::Hello { node: ID_C, nonce: N_C }).unwrap();
    let Message::HelloReply { proof: p_s, .. } = msg(&reply) else { panic!("not a HELLO_REPLY") };
    assert_eq!(s.on_auth(&Message::Auth { proof: p_s }), Err(LinkError::AuthFailed));

    // Nor does a proof the server made for another connection (replay).
    let mut s1 = ServerHandshake::new(KEY, ID_S, N_S);
    s1.on_hello(&Message::Hello { node: ID_C, nonce: N_C }).unwrap();
    let mut s2 = ServerHandshake::new(KEY, ID_S, [0x06; 32]);
    s2.on_hello(&Message::Hello { node: ID_C, nonce: N_C }).unwrap();
    assert!(s1.on_auth(&Message::Auth { proof: proof(KEY, "client") }).is_ok());
    assert_eq!(s2.on_auth(&Message::Auth { proof: proof(KEY, "client") }), Err(LinkError::AuthFailed));
}

#[test]
fn messages_out_of_order_are_unexpected() {
    let hello = Message::Hello { node: ID_C, nonce: N_C };
    let auth = Message::Auth { proof: proof(KEY, "client") };
    let reply = Message::HelloReply { node: ID_S, nonce: N_S, proof: proof(KEY, "server") };

    // Server: AUTH before HELLO, HELLO twice, the wrong kind, PING.
    let mut s = ServerHandshake::new(KEY, ID_S, N_S);
    let e = s.on_auth(&auth).unwrap_err();
    assert_eq!(e, LinkError::Unexpected { expected: "HELLO", got: MsgKind::AUTH });
    assert_eq!(e.code(), ErrorCode::PROTOCOL);
    assert_eq!(s.on_hello(&hello), Err(e), "a failed handshake stays failed");

    let mut s = ServerHandshake::new(KEY, ID_S, N_S);
    assert_eq!(s.on_hello(&Message::Ping(1)), Err(LinkError::Unexpected { expected: "HELLO", got: MsgKind::PING }));
    let mut s = ServerHandshake::new(KEY, ID_S, N_S);
    s.on_hello(&hello).unwrap();
    assert_eq!(s.on_hello(&hello), Err(LinkError::Unexpected { expected: "AUTH", got: MsgKind::HELLO }));
    let mut s = ServerHandshake::new(KEY, ID_S, N_S);
    s.on_hello(&hello).unwrap();
    assert_eq!(s.on_auth(&Message::Ready), Err(LinkError::Unexpected { expected: "AUTH", got: MsgKind::READY }));

    // Client: READY before HELLO_REPLY, HELLO_REPLY twice, the wrong kind.
    let mut c = ClientHandshake::new(KEY, ID_C, N_C);
    let e = c.on_ready(&Message::Ready).unwrap_err();
    assert_eq!(e, LinkError::Unexpected { expected: "HELLO_REPLY", got: MsgKind::READY });
    assert_eq!(c.on_reply(&reply), Err(e));

    let mut c = ClientHandshake::new(KEY, ID_C, N_C);
    assert_eq!(
        c.on_reply(&Message::Ready),
        Err(LinkError::Unexpected { expected: "HELLO_REPLY", got: MsgKind::READY })
    );
    let mut c = ClientHandshake::new(KEY, ID_C, N_C);
    c.on_reply(&reply).unwrap();
    assert_eq!(c.on_reply(&reply), Err(LinkError::Unexpected { expected: "READY", got: MsgKind::HELLO_REPLY }));
    let mut c = ClientHandshake::new(KEY, ID_C, N_C);
    c.on_reply(&reply).unwrap();
    assert_eq!(c.on_ready(&Message::Pong(3)), Err(LinkError::Unexpected { expected: "READY", got: MsgKind::PONG }));
    // A client handshake does not take the server's part.
    let mut c = ClientHandshake::new(KEY, ID_C, N_C);
    assert!(matches!(c.on_reply(&hello), Err(LinkError::Unexpected { got: MsgKind::HELLO, .. })));
}

#[test]
fn error_from_the_peer_at_any_step() {
    let err = Message::Error { code: ErrorCode::BUSY, message: "too many links" };
    let peer = LinkError::Peer { code: ErrorCode::BUSY, message: "too many links".into() };

    let mut c = ClientHandshake::new(KEY, ID_C, N_C);
    assert_eq!(c.on_reply(&err), Err(peer.clone()));
    assert_eq!(c.on_ready(&Message::Ready), Err(peer.clone()), "stays failed");

    let mut s = ServerHandshake::new(KEY, ID_S, N_S);
    let reply = s.on_hello(&msg(&c.hello())).unwrap();
    let mut c = ClientHandshake::new(KEY, ID_C, N_C);
    c.on_reply(&msg(&reply)).unwrap();
    let auth_failed = Message::Error { code: ErrorCode::AUTH_FAILED, message: "" };
    assert_eq!(c.on_ready(&auth_failed), Err(LinkError::Peer { code: ErrorCode::AUTH_FAILED, message: String::new() }));

    let mut s = ServerHandshake::new(KEY, ID_S, N_S);
    assert_eq!(s.on_hello(&err), Err(peer.clone()));
    let mut s = ServerHandshake::new(KEY, ID_S, N_S);
    s.on_hello(&Message::Hello { node: ID_C, nonce: N_C }).unwrap();
    assert_eq!(s.on_auth(&err), Err(peer.clone()));
    assert_eq!(peer.code(), ErrorCode::BUSY);
    // Even sent out of order, an ERROR is the peer's refusal.
    let mut s = ServerHandshake::new(KEY, ID_S, N_S);
    assert_eq!(s.on_auth(&err), Err(peer));
}

#[test]
fn version_other_than_1_is_refused_before_the_handshake_sees_it() {
    let mut hello = ClientHandshake::new(KEY, ID_C, N_C).hello();
    hello[HEADER_LEN + 1] = 2;
    let e = decode(&hello).unwrap_err();
    assert_eq!(e, LinkError::Version(2));
    assert_eq!(e.code(), ErrorCode::VERSION);
}
