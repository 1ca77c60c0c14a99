//! The handshake: mutual challenge–response under the link key
//! `Kl = HMAC-SHA256(domain key, "oxcopy node link v1")`, fresh nonces from
//! both ends and distinct labels for the two directions (see
//! `docs/node-link.md`, "Handshake"):
//!
//! 1. client → HELLO(id_c, n_c)
//! 2. server → HELLO_REPLY(id_s, n_s, P_s), `P_s = HMAC(Kl, "server" ‖ id_c ‖ id_s ‖ n_c ‖ n_s)`
//! 3. client checks P_s → AUTH(P_c), `P_c = HMAC(Kl, "client" ‖ id_c ‖ id_s ‖ n_c ‖ n_s)`
//! 4. server checks P_c → READY
//!
//! Both sides are state machines without I/O, clock or randomness: the
//! caller passes fresh random nonces in, feeds decoded messages, writes the
//! frames returned, and on an error sends ERROR([`LinkError::code`]) (unless
//! the error is [`LinkError::Peer`]) and closes. A handshake that failed
//! stays failed: every later call returns the same error.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::LinkError;
use crate::frame::Message;
use crate::{NodeId, Nonce, Proof};

/// The label the link key is derived under.
const LINK_KEY_LABEL: &[u8] = b"oxcopy node link v1";

/// `HMAC-SHA256(key, parts...)`.
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail.
    let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// The link key `Kl = HMAC-SHA256(domain_key, "oxcopy node link v1")`: the
/// copy-domain key is never used directly on the link.
pub fn link_key(domain_key: &[u8]) -> [u8; 32] {
    hmac(domain_key, &[LINK_KEY_LABEL])
}

/// `HMAC(Kl, label ‖ id_c ‖ id_s ‖ n_c ‖ n_s)`.
fn proof(kl: &[u8; 32], label: &[u8], id_c: &NodeId, id_s: &NodeId, n_c: &Nonce, n_s: &Nonce) -> Proof {
    hmac(kl, &[label, id_c, id_s, n_c, n_s])
}

/// The error for an ERROR message from the peer.
fn peer_error(msg: &Message<'_>) -> Option<LinkError> {
    match msg {
        Message::Error { code, message } => Some(LinkError::Peer { code: *code, message: (*message).to_string() }),
        _ => None,
    }
}

/// Where a client handshake stands.
#[derive(Debug, Clone)]
enum ClientState {
    AwaitReply,
    AwaitReady,
    Done,
    Failed(LinkError),
}

/// The connecting end of the handshake: [`ClientHandshake::hello`], then
/// [`ClientHandshake::on_reply`] with the server's first message, then
/// [`ClientHandshake::on_ready`] with its second.
pub struct ClientHandshake {
    kl: [u8; 32],
    me: NodeId,
    nonce: Nonce,
    state: ClientState,
}

impl std::fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandshake").field("me", &self.me).field("state", &self.state).finish_non_exhaustive()
    }
}

impl ClientHandshake {
    /// A client handshake for node `me` under the copy-domain key, with a
    /// fresh random `nonce` (never reuse one).
    pub fn new(domain_key: &[u8], me: NodeId, nonce: Nonce) -> Self {
        ClientHandshake { kl: link_key(domain_key), me, nonce, state: ClientState::AwaitReply }
    }

    /// The encoded HELLO frame to send first.
    pub fn hello(&self) -> Vec<u8> {
        Message::Hello { node: self.me, nonce: self.nonce }.to_frame()
    }

    fn fail<T>(&mut self, e: LinkError) -> Result<T, LinkError> {
        self.state = ClientState::Failed(e.clone());
        Err(e)
    }

    /// What the current state accepts, for [`LinkError::Unexpected`].
    fn expected(&self) -> &'static str {
        match self.state {
            ClientState::AwaitReply => "HELLO_REPLY",
            ClientState::AwaitReady => "READY",
            ClientState::Done | ClientState::Failed(_) => "nothing (handshake over)",
        }
    }

    /// The server's first message: checks `P_s` (in constant time) and
    /// returns the encoded AUTH frame to send and the server's node id (the
    /// caller checks it is the node it meant to reach).
    pub fn on_reply(&mut self, msg: &Message<'_>) -> Result<(Vec<u8>, NodeId), LinkError> {
        if let ClientState::Failed(e) = &self.state {
            return Err(e.clone());
        }
        if let Some(e) = peer_error(msg) {
            return self.fail(e);
        }
        let (ClientState::AwaitReply, Message::HelloReply { node, nonce, proof: p_s }) = (&self.state, msg) else {
            let e = LinkError::Unexpected { expected: self.expected(), got: msg.kind() };
            return self.fail(e);
        };
        let want = proof(&self.kl, b"server", &self.me, node, &self.nonce, nonce);
        if !bool::from(want.ct_eq(p_s)) {
            return self.fail(LinkError::AuthFailed);
        }
        let p_c = proof(&self.kl, b"client", &self.me, node, &self.nonce, nonce);
        self.state = ClientState::AwaitReady;
        Ok((Message::Auth { proof: p_c }.to_frame(), *node))
    }

    /// The server's second message: READY ends the handshake.
    pub fn on_ready(&mut self, msg: &Message<'_>) -> Result<(), LinkError> {
        if let ClientState::Failed(e) = &self.state {
            return Err(e.clone());
        }
        if let Some(e) = peer_error(msg) {
            return self.fail(e);
        }
        let (ClientState::AwaitReady, Message::Ready) = (&self.state, msg) else {
            let e = LinkError::Unexpected { expected: self.expected(), got: msg.kind() };
            return self.fail(e);
        };
        self.state = ClientState::Done;
        Ok(())
    }
}

/// Where a server handshake stands.
#[derive(Debug, Clone)]
enum ServerState {
    AwaitHello,
    AwaitAuth { peer: NodeId, n_c: Nonce },
    Done,
    Failed(LinkError),
}

/// The accepting end of the handshake: [`ServerHandshake::on_hello`] with
/// the client's first message, then [`ServerHandshake::on_auth`] with its
/// second. The server sends nothing about a ROD before `on_auth` succeeded.
pub struct ServerHandshake {
    kl: [u8; 32],
    me: NodeId,
    nonce: Nonce,
    state: ServerState,
}

impl std::fmt::Debug for ServerHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandshake").field("me", &self.me).field("state", &self.state).finish_non_exhaustive()
    }
}

impl ServerHandshake {
    /// A server handshake for node `me` under the copy-domain key, with a
    /// fresh random `nonce` (never reuse one).
    pub fn new(domain_key: &[u8], me: NodeId, nonce: Nonce) -> Self {
        ServerHandshake { kl: link_key(domain_key), me, nonce, state: ServerState::AwaitHello }
    }

    fn fail<T>(&mut self, e: LinkError) -> Result<T, LinkError> {
        self.state = ServerState::Failed(e.clone());
        Err(e)
    }

    /// What the current state accepts, for [`LinkError::Unexpected`].
    fn expected(&self) -> &'static str {
        match self.state {
            ServerState::AwaitHello => "HELLO",
            ServerState::AwaitAuth { .. } => "AUTH",
            ServerState::Done | ServerState::Failed(_) => "nothing (handshake over)",
        }
    }

    /// The client's first message (HELLO): returns the encoded HELLO_REPLY
    /// frame, with `P_s`, to send. A HELLO asking for a protocol version
    /// other than 1 never gets here: [`crate::parse_payload`] refuses it with
    /// [`LinkError::Version`] (send ERROR VERSION and close).
    pub fn on_hello(&mut self, msg: &Message<'_>) -> Result<Vec<u8>, LinkError> {
        if let ServerState::Failed(e) = &self.state {
            return Err(e.clone());
        }
        if let Some(e) = peer_error(msg) {
            return self.fail(e);
        }
        let (ServerState::AwaitHello, Message::Hello { node, nonce }) = (&self.state, msg) else {
            let e = LinkError::Unexpected { expected: self.expected(), got: msg.kind() };
            return self.fail(e);
        };
        let p_s = proof(&self.kl, b"server", node, &self.me, nonce, &self.nonce);
        self.state = ServerState::AwaitAuth { peer: *node, n_c: *nonce };
        Ok(Message::HelloReply { node: self.me, nonce: self.nonce, proof: p_s }.to_frame())
    }

    /// The client's second message (AUTH): checks `P_c` (in constant time)
    /// and returns the encoded READY frame to send and the client's
    /// authenticated node id.
    pub fn on_auth(&mut self, msg: &Message<'_>) -> Result<(Vec<u8>, NodeId), LinkError> {
        if let ServerState::Failed(e) = &self.state {
            return Err(e.clone());
        }
        if let Some(e) = peer_error(msg) {
            return self.fail(e);
        }
        let (ServerState::AwaitAuth { peer, n_c }, Message::Auth { proof: p_c }) = (&self.state, msg) else {
            let e = LinkError::Unexpected { expected: self.expected(), got: msg.kind() };
            return self.fail(e);
        };
        let (peer, n_c) = (*peer, *n_c);
        let want = proof(&self.kl, b"client", &peer, &self.me, &n_c, &self.nonce);
        if !bool::from(want.ct_eq(p_c)) {
            return self.fail(LinkError::AuthFailed);
        }
        self.state = ServerState::Done;
        Ok((Message::Ready.to_frame(), peer))
    }
}
