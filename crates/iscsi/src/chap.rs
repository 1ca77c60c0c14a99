//! CHAP (RFC 7143 §12.1.3, RFC 1994): the digest algorithms and value
//! encodings both roles share, and the target-side [`TargetChap`]
//! authenticator.
//!
//! The target-side exchange:
//!
//! ```text
//! I→T  AuthMethod=CHAP,None
//! T→I  AuthMethod=CHAP
//! I→T  CHAP_A=7,5
//! T→I  CHAP_A=7 CHAP_I=<id> CHAP_C=<challenge>
//! I→T  CHAP_N=<user> CHAP_R=H(id ‖ secret ‖ challenge) [CHAP_I=<id'> CHAP_C=<challenge'>]
//! T→I  [CHAP_N=<mutual user> CHAP_R=H(id' ‖ mutual secret ‖ challenge')]
//! ```
//!
//! The bracketed keys are mutual CHAP, asked for by the initiator; a target
//! without mutual credentials refuses it. Binary values are accepted as
//! `0x`-hex or `0b`-base64 and sent as hex. Secrets are [`ChapSecret`]s, whose
//! `Debug` output is redacted; responses are compared in constant time.
//!
//! No I/O and no randomness here: the caller supplies the challenge
//! ([`TargetChap::new`]).

use crate::login::{AuthContext, AuthProgress, Authenticator};
use crate::pdu::LoginStatus;
use crate::text::Pair;
use md5::Md5;
use sha2::{Digest, Sha256};
use sha3::Sha3_256;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

/// Largest challenge accepted from a peer, in bytes.
pub const MAX_CHALLENGE: usize = 1024;

/// Shortest challenge the target sends (RFC 7143 asks for at least the
/// digest's length; 16 bytes covers MD5).
pub const MIN_OUR_CHALLENGE: usize = 16;

/// A CHAP digest algorithm (the `CHAP_A` values of RFC 7143 / IANA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChapAlgorithm {
    /// 5: MD5 (RFC 1994; the one every implementation speaks).
    Md5,
    /// 7: SHA-256.
    Sha256,
    /// 8: SHA3-256.
    Sha3_256,
}

impl ChapAlgorithm {
    /// The `CHAP_A` code.
    pub fn code(self) -> u8 {
        match self {
            ChapAlgorithm::Md5 => 5,
            ChapAlgorithm::Sha256 => 7,
            ChapAlgorithm::Sha3_256 => 8,
        }
    }

    /// The algorithm with this `CHAP_A` code, if implemented.
    pub fn from_code(code: u64) -> Option<ChapAlgorithm> {
        match code {
            5 => Some(ChapAlgorithm::Md5),
            7 => Some(ChapAlgorithm::Sha256),
            8 => Some(ChapAlgorithm::Sha3_256),
            _ => None,
        }
    }

    /// Name for messages ("MD5", "SHA-256", "SHA3-256").
    pub fn name(self) -> &'static str {
        match self {
            ChapAlgorithm::Md5 => "MD5",
            ChapAlgorithm::Sha256 => "SHA-256",
            ChapAlgorithm::Sha3_256 => "SHA3-256",
        }
    }

    /// `H(id ‖ secret ‖ challenge)`.
    pub fn response(self, id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
        fn h<D: Digest>(id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
            let mut d = D::new();
            d.update([id]);
            d.update(secret);
            d.update(challenge);
            d.finalize().to_vec()
        }
        match self {
            ChapAlgorithm::Md5 => h::<Md5>(id, secret, challenge),
            ChapAlgorithm::Sha256 => h::<Sha256>(id, secret, challenge),
            ChapAlgorithm::Sha3_256 => h::<Sha3_256>(id, secret, challenge),
        }
    }
}

/// A CHAP secret: opaque bytes that never appear in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct ChapSecret(Vec<u8>);

impl ChapSecret {
    /// Wrap secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> ChapSecret {
        ChapSecret(bytes.into())
    }

    /// The secret bytes (for hashing only).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for ChapSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A decimal or `0x`-hex number.
pub fn parse_number(s: &str) -> Option<u64> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if h.is_empty() || h.len() > 16 {
            return None;
        }
        return u64::from_str_radix(h, 16).ok();
    }
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `0x`-hex (odd digit counts padded with a leading zero) or `0b`-base64.
pub fn decode_binary(s: &str) -> Option<Vec<u8>> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        let digits: Vec<u8> = h.bytes().map(hex_val).collect::<Option<_>>()?;
        let mut out = Vec::with_capacity(digits.len().div_ceil(2));
        let mut it = digits.iter();
        if digits.len() % 2 == 1 {
            out.push(*it.next()?);
        }
        while let (Some(a), Some(b)) = (it.next(), it.next()) {
            out.push(a << 4 | b);
        }
        return Some(out);
    }
    if let Some(b) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        return decode_base64(b);
    }
    None
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let body = s.trim_end_matches('=');
    if s.len() - body.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in body.bytes() {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return None; // a lone leftover character carries no whole byte
    }
    Some(out)
}

/// `0x` + lower-case hex.
pub fn encode_hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + 2 * b.len());
    s.push_str("0x");
    for x in b {
        s.push(DIGITS[(x >> 4) as usize] as char);
        s.push(DIGITS[(x & 15) as usize] as char);
    }
    s
}

/// Constant-time equality of two byte strings (the length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// A CHAP name and secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapUser {
    /// `CHAP_N`.
    pub name: String,
    /// The shared secret.
    pub secret: ChapSecret,
}

/// A target's CHAP settings: who the initiator must prove to be, and
/// optionally who the target proves to be (mutual CHAP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetChapConfig {
    /// The initiator must answer as this user with this secret.
    pub initiator: ChapUser,
    /// Mutual CHAP: the target answers the initiator's challenge as this
    /// user. `None`: an initiator asking for mutual CHAP is refused.
    pub mutual: Option<ChapUser>,
    /// Algorithms accepted, in order of preference.
    pub algorithms: Vec<ChapAlgorithm>,
}

impl TargetChapConfig {
    /// One-way CHAP accepting SHA3-256, SHA-256 and MD5.
    pub fn one_way(name: impl Into<String>, secret: impl Into<Vec<u8>>) -> TargetChapConfig {
        TargetChapConfig {
            initiator: ChapUser { name: name.into(), secret: ChapSecret::new(secret) },
            mutual: None,
            algorithms: vec![ChapAlgorithm::Sha3_256, ChapAlgorithm::Sha256, ChapAlgorithm::Md5],
        }
    }

    /// Add mutual credentials.
    pub fn with_mutual(mut self, name: impl Into<String>, secret: impl Into<Vec<u8>>) -> TargetChapConfig {
        self.mutual = Some(ChapUser { name: name.into(), secret: ChapSecret::new(secret) });
        self
    }
}

/// Why a CHAP exchange failed (for the log; never contains a secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChapFailure {
    /// The initiator offered no algorithm we accept.
    #[error("no acceptable CHAP_A offered")]
    NoAlgorithm,
    /// Keys missing or out of order.
    #[error("CHAP keys missing or out of order")]
    Protocol,
    /// A value was malformed (bad number, encoding or length).
    #[error("malformed CHAP value")]
    Malformed,
    /// The CHAP_N is not the configured user.
    #[error("unknown CHAP user")]
    UnknownUser,
    /// The CHAP_R does not match (wrong secret).
    #[error("wrong CHAP response (secret mismatch)")]
    WrongSecret,
    /// The initiator sent our own challenge back.
    #[error("reflected CHAP challenge")]
    Reflected,
    /// The initiator asked for mutual CHAP but the target has no mutual
    /// credentials.
    #[error("mutual CHAP requested but not configured")]
    MutualNotConfigured,
}

/// Shared view of a [`TargetChap`]'s outcome, for the caller's log line and
/// failure accounting.
#[derive(Debug, Clone, Default)]
pub struct TargetChapHandle(Arc<Mutex<Option<ChapFailure>>>);

impl TargetChapHandle {
    /// Why the exchange failed, if it did.
    pub fn failure(&self) -> Option<ChapFailure> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for CHAP_A.
    WantAlgorithm,
    /// Challenge sent; waiting for CHAP_N/CHAP_R.
    Challenged(ChapAlgorithm),
    /// Finished (successfully or not).
    Done,
}

/// Target-side CHAP for [`crate::login::LoginPolicy::authenticator`].
pub struct TargetChap {
    cfg: TargetChapConfig,
    id: u8,
    challenge: Vec<u8>,
    phase: Phase,
    handle: TargetChapHandle,
}

impl std::fmt::Debug for TargetChap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetChap").field("cfg", &self.cfg).field("id", &self.id).field("phase", &self.phase).finish()
    }
}

impl TargetChap {
    /// A new exchange with our `CHAP_I` and `CHAP_C` (the caller draws them
    /// from a CSPRNG; a challenge shorter than [`MIN_OUR_CHALLENGE`] is
    /// refused by failing every exchange).
    pub fn new(cfg: TargetChapConfig, id: u8, challenge: Vec<u8>) -> (TargetChap, TargetChapHandle) {
        let handle = TargetChapHandle::default();
        (TargetChap { cfg, id, challenge, phase: Phase::WantAlgorithm, handle: handle.clone() }, handle)
    }

    fn fail(&mut self, why: ChapFailure) -> LoginStatus {
        self.phase = Phase::Done;
        *self.handle.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        LoginStatus::AUTHENTICATION_FAILURE
    }

    fn on_algorithms(&mut self, list: &str) -> Result<AuthProgress, LoginStatus> {
        if self.challenge.len() < MIN_OUR_CHALLENGE || self.challenge.len() > MAX_CHALLENGE {
            return Err(self.fail(ChapFailure::Malformed));
        }
        // The initiator's order of preference, among what we accept.
        let chosen = crate::text::parse_list(list)
            .take(64)
            .filter_map(|v| parse_number(v).and_then(ChapAlgorithm::from_code))
            .find(|a| self.cfg.algorithms.contains(a));
        let Some(alg) = chosen else { return Err(self.fail(ChapFailure::NoAlgorithm)) };
        self.phase = Phase::Challenged(alg);
        Ok(AuthProgress::Continue(vec![
            ("CHAP_A".to_string(), alg.code().to_string()),
            ("CHAP_I".to_string(), self.id.to_string()),
            ("CHAP_C".to_string(), encode_hex(&self.challenge)),
        ]))
    }

    fn on_response(&mut self, alg: ChapAlgorithm, keys: &[Pair<'_>]) -> Result<AuthProgress, LoginStatus> {
        let get = |k: &str| keys.iter().find(|p| p.key == k).map(|p| p.value);
        let (Some(n), Some(r)) = (get("CHAP_N"), get("CHAP_R")) else {
            return Err(self.fail(ChapFailure::Protocol));
        };
        let Some(got) = decode_binary(r) else { return Err(self.fail(ChapFailure::Malformed)) };
        let expected = alg.response(self.id, self.cfg.initiator.secret.expose(), &self.challenge);
        // Check the response before the name, both in constant time, so a
        // wrong user and a wrong secret take the same path.
        let secret_ok = constant_time_eq(&got, &expected);
        let user_ok = constant_time_eq(n.as_bytes(), self.cfg.initiator.name.as_bytes());
        if !user_ok {
            return Err(self.fail(ChapFailure::UnknownUser));
        }
        if !secret_ok {
            return Err(self.fail(ChapFailure::WrongSecret));
        }
        // Mutual CHAP, if the initiator asks.
        let (ci, cc) = (get("CHAP_I"), get("CHAP_C"));
        let out = match (ci, cc) {
            (None, None) => Vec::new(),
            (Some(i), Some(c)) => {
                let id = match parse_number(i) {
                    Some(v) if v <= 255 => v as u8,
                    _ => return Err(self.fail(ChapFailure::Malformed)),
                };
                let challenge = match decode_binary(c) {
                    Some(v) if !v.is_empty() && v.len() <= MAX_CHALLENGE => v,
                    _ => return Err(self.fail(ChapFailure::Malformed)),
                };
                if constant_time_eq(&challenge, &self.challenge) {
                    return Err(self.fail(ChapFailure::Reflected));
                }
                let Some(m) = self.cfg.mutual.clone() else {
                    return Err(self.fail(ChapFailure::MutualNotConfigured));
                };
                let resp = alg.response(id, m.secret.expose(), &challenge);
                vec![("CHAP_N".to_string(), m.name), ("CHAP_R".to_string(), encode_hex(&resp))]
            }
            _ => return Err(self.fail(ChapFailure::Protocol)),
        };
        self.phase = Phase::Done;
        Ok(AuthProgress::Done(out))
    }
}

impl Authenticator for TargetChap {
    fn method(&self) -> &'static str {
        "CHAP"
    }

    fn owns_key(&self, key: &str) -> bool {
        key.starts_with("CHAP_")
    }

    fn step(&mut self, _ctx: &AuthContext<'_>, keys: &[Pair<'_>]) -> Result<AuthProgress, LoginStatus> {
        const KNOWN: [&str; 5] = ["CHAP_A", "CHAP_I", "CHAP_C", "CHAP_N", "CHAP_R"];
        if keys.iter().any(|p| !KNOWN.contains(&p.key)) {
            return Err(self.fail(ChapFailure::Protocol));
        }
        let has = |k: &str| keys.iter().any(|p| p.key == k);
        match self.phase {
            Phase::WantAlgorithm => {
                if keys.is_empty() {
                    // AuthMethod agreed; CHAP_A comes next.
                    return Ok(AuthProgress::Continue(Vec::new()));
                }
                match keys {
                    [p] if p.key == "CHAP_A" => self.on_algorithms(p.value),
                    _ => Err(self.fail(ChapFailure::Protocol)),
                }
            }
            Phase::Challenged(alg) => {
                if has("CHAP_A") {
                    return Err(self.fail(ChapFailure::Protocol));
                }
                self.on_response(alg, keys)
            }
            Phase::Done => Err(self.fail(ChapFailure::Protocol)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::SessionType;

    const CTX: AuthContext<'static> = AuthContext {
        initiator_name: "iqn.2026-11.dev.oxcopy:host",
        target_name: Some("iqn.2026-11.dev.oxcopy:t"),
        session_type: SessionType::Normal,
    };
    const SECRET: &str = "password123456";
    const CHALLENGE: [u8; 16] =
        [0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];

    fn pairs<'a>(kv: &'a [(&'a str, &'a str)]) -> Vec<Pair<'a>> {
        kv.iter().map(|(k, v)| Pair { key: k, value: v }).collect()
    }

    fn hex(s: &str) -> Vec<u8> {
        decode_binary(&format!("0x{s}")).unwrap()
    }

    fn target(cfg: TargetChapConfig) -> (TargetChap, TargetChapHandle) {
        TargetChap::new(cfg, 1, CHALLENGE.to_vec())
    }

    /// Runs AuthMethod + CHAP_A; returns the authenticator and the algorithm
    /// code it chose.
    fn challenged(cfg: TargetChapConfig, offer: &str) -> (TargetChap, TargetChapHandle, String) {
        let (mut a, h) = target(cfg);
        assert_eq!(a.step(&CTX, &[]).unwrap(), AuthProgress::Continue(vec![]));
        let AuthProgress::Continue(out) = a.step(&CTX, &pairs(&[("CHAP_A", offer)])).unwrap() else { panic!() };
        assert_eq!(out[1], ("CHAP_I".into(), "1".into()));
        assert_eq!(out[2], ("CHAP_C".into(), "0x00112233445566778899aabbccddeeff".into()));
        let code = out[0].1.clone();
        (a, h, code)
    }

    #[test]
    fn digests_match_the_standard_vectors() {
        // RFC 1321 / FIPS 180-2 / FIPS 202 "abc" vectors through the CHAP
        // framing (id 'a', secret "b", challenge "c").
        assert_eq!(ChapAlgorithm::Md5.response(b'a', b"b", b"c"), hex("900150983cd24fb0d6963f7d28e17f72"));
        assert_eq!(
            ChapAlgorithm::Sha256.response(b'a', b"b", b"c"),
            hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            ChapAlgorithm::Sha3_256.response(b'a', b"b", b"c"),
            hex("3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532")
        );
    }

    #[test]
    fn md5_one_way_accepts_the_right_secret() {
        let (mut a, h, code) = challenged(TargetChapConfig::one_way("alice", SECRET), "5");
        assert_eq!(code, "5");
        // Known value (Python hashlib): MD5(01 ‖ secret ‖ challenge).
        let keys = [("CHAP_N", "alice"), ("CHAP_R", "0xd8d4d7e22b90e6bfec29669685fb2632")];
        assert_eq!(a.step(&CTX, &pairs(&keys)).unwrap(), AuthProgress::Done(vec![]));
        assert_eq!(h.failure(), None);
    }

    #[test]
    fn algorithm_follows_the_initiator_preference() {
        let (_, _, code) = challenged(TargetChapConfig::one_way("alice", SECRET), "8,7,5");
        assert_eq!(code, "8");
        let (_, _, code) = challenged(TargetChapConfig::one_way("alice", SECRET), "99,7,5");
        assert_eq!(code, "7");
        let mut cfg = TargetChapConfig::one_way("alice", SECRET);
        cfg.algorithms = vec![ChapAlgorithm::Md5];
        let (_, _, code) = challenged(cfg, "7,5");
        assert_eq!(code, "5");
        // Nothing acceptable.
        let (mut a, h) = target(TargetChapConfig::one_way("alice", SECRET));
        a.step(&CTX, &[]).unwrap();
        assert_eq!(a.step(&CTX, &pairs(&[("CHAP_A", "6,99")])), Err(LoginStatus::AUTHENTICATION_FAILURE));
        assert_eq!(h.failure(), Some(ChapFailure::NoAlgorithm));
    }

    #[test]
    fn sha256_response_in_base64_is_accepted() {
        let (mut a, _, code) = challenged(TargetChapConfig::one_way("alice", SECRET), "7");
        assert_eq!(code, "7");
        let r = ChapAlgorithm::Sha256.response(1, SECRET.as_bytes(), &CHALLENGE);
        assert_eq!(r, hex("1f2f73033f742159b9bfa8c6f4dea888dd77cd8f7cc2c318fd21c560b58bf2c6"));
        let b64 = "0bHy9zAz90IVm5v6jG9N6oiN13zY98wsMY/SHFYLWL8sY=";
        assert_eq!(decode_binary(b64).unwrap(), r);
        assert!(matches!(a.step(&CTX, &pairs(&[("CHAP_N", "alice"), ("CHAP_R", b64)])), Ok(AuthProgress::Done(_))));
    }

    #[test]
    fn wrong_secret_or_user_fails_with_authentication_failure() {
        let (mut a, h, _) = challenged(TargetChapConfig::one_way("alice", SECRET), "5");
        let r = encode_hex(&ChapAlgorithm::Md5.response(1, b"wrong-secret-123", &CHALLENGE));
        assert_eq!(
            a.step(&CTX, &pairs(&[("CHAP_N", "alice"), ("CHAP_R", &r)])),
            Err(LoginStatus::AUTHENTICATION_FAILURE)
        );
        assert_eq!(h.failure(), Some(ChapFailure::WrongSecret));
        // No second chance.
        assert!(a.step(&CTX, &pairs(&[("CHAP_N", "alice"), ("CHAP_R", &r)])).is_err());

        let (mut a, h, _) = challenged(TargetChapConfig::one_way("alice", SECRET), "5");
        let r = encode_hex(&ChapAlgorithm::Md5.response(1, SECRET.as_bytes(), &CHALLENGE));
        assert!(a.step(&CTX, &pairs(&[("CHAP_N", "mallory"), ("CHAP_R", &r)])).is_err());
        assert_eq!(h.failure(), Some(ChapFailure::UnknownUser));
    }

    #[test]
    fn mutual_chap_answers_the_initiator_challenge() {
        let cfg = TargetChapConfig::one_way("alice", SECRET).with_mutual("oxcopy", "target-secret-1");
        let (mut a, _, _) = challenged(cfg, "5");
        let r = encode_hex(&ChapAlgorithm::Md5.response(1, SECRET.as_bytes(), &CHALLENGE));
        let c: Vec<u8> = (0..32).collect();
        let keys = [("CHAP_N", "alice"), ("CHAP_R", &r), ("CHAP_I", "167"), ("CHAP_C", &encode_hex(&c))];
        let AuthProgress::Done(out) = a.step(&CTX, &pairs(&keys)).unwrap() else { panic!() };
        // Known value: MD5(a7 ‖ "target-secret-1" ‖ 00..1f).
        assert_eq!(
            out,
            vec![("CHAP_N".into(), "oxcopy".into()), ("CHAP_R".into(), "0xf7fc2604cd5bbce87bef994f22135163".into())]
        );
        // Mutual requested of a one-way target: refused.
        let (mut a, h, _) = challenged(TargetChapConfig::one_way("alice", SECRET), "5");
        assert!(a.step(&CTX, &pairs(&keys)).is_err());
        assert_eq!(h.failure(), Some(ChapFailure::MutualNotConfigured));
        // CHAP_I without CHAP_C.
        let cfg = TargetChapConfig::one_way("alice", SECRET).with_mutual("oxcopy", "target-secret-1");
        let (mut a, h, _) = challenged(cfg, "5");
        assert!(a.step(&CTX, &pairs(&[("CHAP_N", "alice"), ("CHAP_R", &r), ("CHAP_I", "1")])).is_err());
        assert_eq!(h.failure(), Some(ChapFailure::Protocol));
    }

    #[test]
    fn reflected_challenge_is_refused() {
        let cfg = TargetChapConfig::one_way("alice", SECRET).with_mutual("oxcopy", "target-secret-1");
        let (mut a, h, _) = challenged(cfg, "5");
        let r = encode_hex(&ChapAlgorithm::Md5.response(1, SECRET.as_bytes(), &CHALLENGE));
        let ours = encode_hex(&CHALLENGE);
        let keys = [("CHAP_N", "alice"), ("CHAP_R", &r), ("CHAP_I", "1"), ("CHAP_C", &ours)];
        assert_eq!(a.step(&CTX, &pairs(&keys)), Err(LoginStatus::AUTHENTICATION_FAILURE));
        assert_eq!(h.failure(), Some(ChapFailure::Reflected));
    }

    #[test]
    fn garbage_values_and_lengths_fail_cleanly() {
        let good_r = encode_hex(&ChapAlgorithm::Md5.response(1, SECRET.as_bytes(), &CHALLENGE));
        let long_c = format!("0x{}", "ab".repeat(MAX_CHALLENGE + 1));
        let cases: Vec<Vec<(&str, &str)>> = vec![
            vec![("CHAP_N", "alice"), ("CHAP_R", "nothex")],
            vec![("CHAP_N", "alice"), ("CHAP_R", "0xzz")],
            vec![("CHAP_N", "alice"), ("CHAP_R", "0b*")],
            vec![("CHAP_N", "alice"), ("CHAP_R", "0x")],
            vec![("CHAP_N", "alice"), ("CHAP_R", "0xd8d4")],
            vec![("CHAP_N", "alice")],
            vec![("CHAP_R", &good_r)],
            vec![("CHAP_N", "alice"), ("CHAP_R", &good_r), ("CHAP_X", "1")],
            vec![("CHAP_N", "alice"), ("CHAP_R", &good_r), ("CHAP_A", "5")],
            vec![("CHAP_N", "alice"), ("CHAP_R", &good_r), ("CHAP_I", "256"), ("CHAP_C", "0x0102")],
            vec![("CHAP_N", "alice"), ("CHAP_R", &good_r), ("CHAP_I", "-1"), ("CHAP_C", "0x0102")],
            vec![("CHAP_N", "alice"), ("CHAP_R", &good_r), ("CHAP_I", "1"), ("CHAP_C", "0x")],
            vec![("CHAP_N", "alice"), ("CHAP_R", &good_r), ("CHAP_I", "1"), ("CHAP_C", &long_c)],
        ];
        for keys in &cases {
            let cfg = TargetChapConfig::one_way("alice", SECRET).with_mutual("oxcopy", "target-secret-1");
            let (mut a, h, _) = challenged(cfg, "5");
            assert_eq!(a.step(&CTX, &pairs(keys)), Err(LoginStatus::AUTHENTICATION_FAILURE), "{keys:?}");
            assert!(h.failure().is_some());
        }
        // Before the challenge: anything but a lone CHAP_A.
        for keys in [vec![("CHAP_N", "alice")], vec![("CHAP_A", "5"), ("CHAP_R", "0x00")], vec![("CHAP_A", "")]] {
            let (mut a, _) = target(TargetChapConfig::one_way("alice", SECRET));
            assert!(a.step(&CTX, &pairs(&keys)).is_err(), "{keys:?}");
        }
        // A too-short challenge from the caller is never sent.
        let (mut a, _) = TargetChap::new(TargetChapConfig::one_way("alice", SECRET), 1, vec![1; 8]);
        assert!(a.step(&CTX, &pairs(&[("CHAP_A", "5")])).is_err());
    }

    #[test]
    fn encodings() {
        assert_eq!(decode_binary("0x0a0B"), Some(vec![0x0a, 0x0b]));
        assert_eq!(decode_binary("0Xabc"), Some(vec![0x0a, 0xbc]));
        assert_eq!(decode_binary("0bABEiM0RVZneImaq7zN3u/w=="), Some(CHALLENGE.to_vec()));
        assert_eq!(decode_binary("0BAAE="), Some(vec![0, 1]));
        assert_eq!(decode_binary("0bA"), None);
        assert_eq!(decode_binary("0bAA==="), None);
        assert_eq!(decode_binary("1234"), None);
        assert_eq!(encode_hex(&[0, 0xff, 0x10]), "0x00ff10");
        assert_eq!(parse_number("0x10"), Some(16));
        assert_eq!(parse_number("200"), Some(200));
        assert_eq!(parse_number("99999999999999999999999"), None);
        assert_eq!(parse_number("+1"), None);
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let cfg = TargetChapConfig::one_way("alice", "hunter2-secret").with_mutual("oxcopy", "other-secret");
        let (a, _) = TargetChap::new(cfg.clone(), 1, CHALLENGE.to_vec());
        for s in [format!("{cfg:?}"), format!("{a:?}")] {
            assert!(!s.contains("hunter2") && !s.contains("other-secret"), "{s}");
            assert!(s.contains("alice") && s.contains("redacted"), "{s}");
        }
    }
}
