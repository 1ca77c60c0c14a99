//! Initiator-side CHAP (RFC 7143 §12.1.3, RFC 1994) as an
//! [`oxcopy_iscsi::login::Authenticator`].
//!
//! The exchange, one-way (the target authenticates us):
//!
//! ```text
//! I→T  AuthMethod=CHAP,None
//! T→I  AuthMethod=CHAP
//! I→T  CHAP_A=7,5                        (SHA-256 preferred, then MD5)
//! T→I  CHAP_A=5 CHAP_I=<id> CHAP_C=<challenge>
//! I→T  CHAP_N=<user> CHAP_R=H(id ‖ secret ‖ challenge)
//! ```
//!
//! Mutual CHAP adds our own `CHAP_I`/`CHAP_C` to the last request; the target
//! then answers with its `CHAP_N`/`CHAP_R`, which must match the configured
//! target credentials. If the target transits without answering, the login
//! fails after the fact ([`ChapHandle::finish`]): a mutual-CHAP session never
//! silently runs unauthenticated.
//!
//! Binary values travel as `0x`-hex (we send hex; we accept hex and `0b`
//! base64). Secrets are opaque bytes and never appear in `Debug` output or
//! error messages.

use oxcopy_iscsi::chap::{constant_time_eq, parse_number};
pub use oxcopy_iscsi::chap::{decode_binary, encode_hex, ChapAlgorithm, MAX_CHALLENGE};
use oxcopy_iscsi::login::{AuthContext, AuthProgress, Authenticator, InitiatorLogin, LoginError};
use oxcopy_iscsi::pdu::LoginStatus;
use oxcopy_iscsi::text::Pair;
use std::sync::{Arc, Mutex};

/// Length of the challenge we send for mutual CHAP.
const OUR_CHALLENGE_LEN: usize = 32;

/// A CHAP name and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ChapCredentials {
    /// `CHAP_N`.
    pub username: String,
    /// The shared secret (opaque bytes).
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for ChapCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChapCredentials").field("username", &self.username).field("secret", &"<redacted>").finish()
    }
}

/// CHAP settings of a session ([`crate::SessionConfig::chap`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapConfig {
    /// What we answer the target's challenge with.
    pub initiator: ChapCredentials,
    /// Mutual CHAP: the credentials the target must prove (its `CHAP_N` and
    /// the secret behind its `CHAP_R`). `None` = one-way.
    pub target: Option<ChapCredentials>,
    /// Algorithms offered, in order of preference.
    pub algorithms: Vec<ChapAlgorithm>,
}

impl ChapConfig {
    /// One-way CHAP offering SHA-256 then MD5.
    pub fn one_way(username: impl Into<String>, secret: impl Into<Vec<u8>>) -> ChapConfig {
        ChapConfig {
            initiator: ChapCredentials { username: username.into(), secret: secret.into() },
            target: None,
            algorithms: vec![ChapAlgorithm::Sha256, ChapAlgorithm::Md5],
        }
    }

    /// Add mutual CHAP: the target must answer as `username` with `secret`.
    pub fn with_mutual(mut self, username: impl Into<String>, secret: impl Into<Vec<u8>>) -> ChapConfig {
        self.target = Some(ChapCredentials { username: username.into(), secret: secret.into() });
        self
    }
}

/// What happened during the exchange, shared between the authenticator (owned
/// by the login state machine) and the caller.
#[derive(Debug, Default)]
struct Status {
    /// The target selected AuthMethod=CHAP and we took part.
    started: bool,
    /// We sent CHAP_R.
    answered: bool,
    /// Mutual: the target's response checked out.
    target_verified: bool,
    /// Algorithm the target chose.
    algorithm: Option<ChapAlgorithm>,
    /// Why we refused (shown instead of the generic status).
    failure: Option<String>,
}

/// The caller's view of a CHAP exchange: explains failures and checks, after
/// login, that everything required happened.
#[derive(Debug, Clone)]
pub struct ChapHandle {
    status: Arc<Mutex<Status>>,
    mutual: bool,
}

impl ChapHandle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replace a login error with our own reason when we caused it.
    pub fn explain(&self, e: LoginError) -> LoginError {
        match self.lock().failure.clone() {
            Some(reason) => LoginError::Protocol(format!("CHAP: {reason}")),
            None => e,
        }
    }

    /// Called once the login completed: with mutual CHAP the target must have
    /// proven itself.
    pub fn finish(&self) -> Result<(), LoginError> {
        let st = self.lock();
        if self.mutual && !st.target_verified {
            let why = if st.started {
                "the target did not answer our mutual CHAP challenge"
            } else {
                "mutual CHAP is configured but the target chose AuthMethod=None"
            };
            return Err(LoginError::Protocol(format!("CHAP: {why}")));
        }
        Ok(())
    }

    /// The algorithm the target chose, once it has.
    pub fn algorithm(&self) -> Option<ChapAlgorithm> {
        self.lock().algorithm
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the target to select CHAP.
    Start,
    /// CHAP_A sent; waiting for CHAP_A/CHAP_I/CHAP_C.
    SentAlgorithms,
    /// CHAP_R (and our challenge, if mutual) sent.
    SentResponse,
    /// Finished.
    Done,
}

/// Initiator-side CHAP for [`InitiatorLogin::set_authenticator`].
pub struct ChapAuthenticator {
    cfg: ChapConfig,
    phase: Phase,
    /// Mutual: our CHAP_I and CHAP_C, and the algorithm in use.
    ours: Option<(u8, Vec<u8>, ChapAlgorithm)>,
    status: Arc<Mutex<Status>>,
}

impl std::fmt::Debug for ChapAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChapAuthenticator").field("cfg", &self.cfg).field("phase", &self.phase).finish()
    }
}

impl ChapAuthenticator {
    /// A new authenticator and the handle that observes it.
    pub fn new(cfg: ChapConfig) -> (ChapAuthenticator, ChapHandle) {
        let status = Arc::new(Mutex::new(Status::default()));
        let handle = ChapHandle { status: status.clone(), mutual: cfg.target.is_some() };
        (ChapAuthenticator { cfg, phase: Phase::Start, ours: None, status }, handle)
    }

    /// Install CHAP on `login`; returns the handle for
    /// [`ChapHandle::explain`] / [`ChapHandle::finish`].
    pub fn install(login: &mut InitiatorLogin, cfg: ChapConfig) -> ChapHandle {
        let (auth, handle) = ChapAuthenticator::new(cfg);
        login.set_authenticator(Box::new(auth));
        handle
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fail(&mut self, reason: impl Into<String>) -> LoginStatus {
        self.phase = Phase::Done;
        self.status().failure = Some(reason.into());
        LoginStatus::AUTHENTICATION_FAILURE
    }

    fn on_challenge(&mut self, keys: &[Pair<'_>]) -> Result<AuthProgress, LoginStatus> {
        let get = |k: &str| keys.iter().find(|p| p.key == k).map(|p| p.value);
        let (Some(a), Some(i), Some(c)) = (get("CHAP_A"), get("CHAP_I"), get("CHAP_C")) else {
            // Some targets send CHAP_A alone first; wait for the rest.
            if keys.is_empty() || (get("CHAP_A").is_some() && get("CHAP_C").is_none() && get("CHAP_I").is_none()) {
                if let Some(a) = get("CHAP_A") {
                    self.check_algorithm(a)?;
                }
                return Ok(AuthProgress::Continue(Vec::new()));
            }
            return Err(self.fail("the target's challenge lacks CHAP_A, CHAP_I or CHAP_C"));
        };
        let alg = self.check_algorithm(a)?;
        let id = match parse_number(i) {
            Some(v) if v <= 255 => v as u8,
            _ => return Err(self.fail(format!("invalid CHAP_I={i}"))),
        };
        let challenge = match decode_binary(c) {
            Some(v) if !v.is_empty() && v.len() <= MAX_CHALLENGE => v,
            _ => return Err(self.fail("invalid CHAP_C (not 1..=1024 bytes of 0x-hex or 0b-base64)")),
        };
        let r = alg.response(id, &self.cfg.initiator.secret, &challenge);
        let mut out =
            vec![("CHAP_N".to_string(), self.cfg.initiator.username.clone()), ("CHAP_R".to_string(), encode_hex(&r))];
        self.status().answered = true;
        match &self.cfg.target {
            None => {
                self.phase = Phase::Done;
                Ok(AuthProgress::Done(out))
            }
            Some(t) => {
                if t.secret == self.cfg.initiator.secret {
                    return Err(self.fail("the mutual CHAP secret must differ from the initiator secret"));
                }
                let mut our_c = random_bytes(OUR_CHALLENGE_LEN);
                // Never hand the target its own challenge back (reflection).
                while our_c == challenge {
                    our_c = random_bytes(OUR_CHALLENGE_LEN);
                }
                let our_i = random_bytes(1)[0];
                out.push(("CHAP_I".to_string(), our_i.to_string()));
                out.push(("CHAP_C".to_string(), encode_hex(&our_c)));
                self.ours = Some((our_i, our_c, alg));
                self.phase = Phase::SentResponse;
                // Done: we may transit; the target answers in its response,
                // checked in `on_target_response` (or by `ChapHandle::finish`).
                Ok(AuthProgress::Done(out))
            }
        }
    }

    fn check_algorithm(&mut self, a: &str) -> Result<ChapAlgorithm, LoginStatus> {
        match parse_number(a).and_then(ChapAlgorithm::from_code) {
            Some(alg) if self.cfg.algorithms.contains(&alg) => {
                self.status().algorithm = Some(alg);
                Ok(alg)
            }
            _ => Err(self.fail(format!("the target chose CHAP_A={a}, which we did not offer"))),
        }
    }

    fn on_target_response(&mut self, keys: &[Pair<'_>]) -> Result<AuthProgress, LoginStatus> {
        let get = |k: &str| keys.iter().find(|p| p.key == k).map(|p| p.value);
        let (Some(target), Some((id, challenge, alg))) = (self.cfg.target.clone(), self.ours.clone()) else {
            return Err(self.fail("unexpected CHAP keys after our response"));
        };
        let (Some(n), Some(r)) = (get("CHAP_N"), get("CHAP_R")) else {
            return Err(self.fail("the target did not answer our mutual CHAP challenge"));
        };
        if n != target.username {
            return Err(self.fail(format!("the target answered as {n:?}, expected {:?}", target.username)));
        }
        let expected = alg.response(id, &target.secret, &challenge);
        match decode_binary(r) {
            Some(got) if constant_time_eq(&got, &expected) => {
                self.phase = Phase::Done;
                self.status().target_verified = true;
                Ok(AuthProgress::Done(Vec::new()))
            }
            _ => Err(self.fail("the target's mutual CHAP response is wrong (target secret mismatch)")),
        }
    }
}

impl Authenticator for ChapAuthenticator {
    fn method(&self) -> &'static str {
        "CHAP"
    }

    fn owns_key(&self, key: &str) -> bool {
        key.starts_with("CHAP_")
    }

    fn step(&mut self, _ctx: &AuthContext<'_>, keys: &[Pair<'_>]) -> Result<AuthProgress, LoginStatus> {
        if keys.iter().any(|p| p.value == "Reject" || p.value == "NotUnderstood" || p.value == "Irrelevant") {
            return Err(self.fail("the target rejected a CHAP key"));
        }
        match self.phase {
            Phase::Start => {
                self.status().started = true;
                if keys.iter().any(|p| p.key == "CHAP_C") {
                    // A target that challenges straight away.
                    self.phase = Phase::SentAlgorithms;
                    return self.on_challenge(keys);
                }
                self.phase = Phase::SentAlgorithms;
                let list: Vec<String> = self.cfg.algorithms.iter().map(|a| a.code().to_string()).collect();
                if list.is_empty() {
                    return Err(self.fail("no CHAP algorithm configured"));
                }
                Ok(AuthProgress::Continue(vec![("CHAP_A".to_string(), list.join(","))]))
            }
            Phase::SentAlgorithms => self.on_challenge(keys),
            Phase::SentResponse => self.on_target_response(keys),
            Phase::Done if keys.is_empty() => Ok(AuthProgress::Done(Vec::new())),
            Phase::Done => Err(self.fail("unexpected CHAP keys after authentication")),
        }
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut v = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxcopy_iscsi::params::SessionType;

    const CTX: AuthContext<'static> = AuthContext {
        initiator_name: "iqn.2026-11.dev.oxcopy:host",
        target_name: Some("iqn.2026-11.dev.oxcopy:t"),
        session_type: SessionType::Normal,
    };

    fn pairs<'a>(kv: &'a [(&'a str, &'a str)]) -> Vec<Pair<'a>> {
        kv.iter().map(|(k, v)| Pair { key: k, value: v }).collect()
    }

    fn hex(s: &str) -> Vec<u8> {
        decode_binary(&format!("0x{s}")).unwrap()
    }

    #[test]
    fn digests_match_the_standard_vectors() {
        // RFC 1321 and FIPS 180-2 "abc" vectors, through the CHAP framing
        // (id 0x61 = 'a', secret "b", challenge "c").
        assert_eq!(ChapAlgorithm::Md5.response(b'a', b"b", b"c"), hex("900150983cd24fb0d6963f7d28e17f72"));
        assert_eq!(
            ChapAlgorithm::Sha256.response(b'a', b"b", b"c"),
            hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }

    #[test]
    fn chap_responses_match_known_values() {
        // Computed independently (Python hashlib): H(id ‖ secret ‖ challenge).
        let c = hex("00112233445566778899aabbccddeeff");
        assert_eq!(ChapAlgorithm::Md5.response(1, b"password123456", &c), hex("d8d4d7e22b90e6bfec29669685fb2632"));
        assert_eq!(
            ChapAlgorithm::Sha256.response(1, b"password123456", &c),
            hex("1f2f73033f742159b9bfa8c6f4dea888dd77cd8f7cc2c318fd21c560b58bf2c6")
        );
        let c: Vec<u8> = (0..32).collect();
        assert_eq!(ChapAlgorithm::Md5.response(0xa7, b"target-secret-1", &c), hex("f7fc2604cd5bbce87bef994f22135163"));
    }

    #[test]
    fn binary_encodings() {
        assert_eq!(decode_binary("0x0a0B"), Some(vec![0x0a, 0x0b]));
        assert_eq!(decode_binary("0xabc"), Some(vec![0x0a, 0xbc]));
        assert_eq!(decode_binary("0bABEiM0RVZneImaq7zN3u/w=="), Some(hex("00112233445566778899aabbccddeeff")));
        assert_eq!(decode_binary("0bAAE="), Some(vec![0, 1]));
        assert_eq!(decode_binary("0xzz"), None);
        assert_eq!(decode_binary("1234"), None);
        assert_eq!(decode_binary("0bA"), None);
        assert_eq!(decode_binary("0b*"), None);
        assert_eq!(encode_hex(&[0, 0xff, 0x10]), "0x00ff10");
        assert_eq!(parse_number("0x10"), Some(16));
        assert_eq!(parse_number("200"), Some(200));
        assert_eq!(parse_number("-1"), None);
        assert_eq!(parse_number(""), None);
    }

    #[test]
    fn one_way_exchange() {
        let (mut a, h) = ChapAuthenticator::new(ChapConfig::one_way("alice", "password123456"));
        assert_eq!(a.step(&CTX, &[]).unwrap(), AuthProgress::Continue(vec![("CHAP_A".into(), "7,5".into())]));
        let keys = [("CHAP_A", "5"), ("CHAP_I", "1"), ("CHAP_C", "0x00112233445566778899aabbccddeeff")];
        let AuthProgress::Done(out) = a.step(&CTX, &pairs(&keys)).unwrap() else { panic!("one-way ends here") };
        assert_eq!(
            out,
            vec![("CHAP_N".into(), "alice".into()), ("CHAP_R".into(), "0xd8d4d7e22b90e6bfec29669685fb2632".into())]
        );
        assert_eq!(h.algorithm(), Some(ChapAlgorithm::Md5));
        h.finish().unwrap();
        // The SHA-256 answer to the same challenge.
        let (mut a, _) = ChapAuthenticator::new(ChapConfig::one_way("alice", "password123456"));
        a.step(&CTX, &[]).unwrap();
        let keys = [("CHAP_A", "7"), ("CHAP_I", "0x01"), ("CHAP_C", "0bABEiM0RVZneImaq7zN3u/w==")];
        let AuthProgress::Done(out) = a.step(&CTX, &pairs(&keys)).unwrap() else { panic!() };
        assert_eq!(out[1].1, "0x1f2f73033f742159b9bfa8c6f4dea888dd77cd8f7cc2c318fd21c560b58bf2c6");
        // A target that sends CHAP_A first and the challenge later.
        let (mut a, _) = ChapAuthenticator::new(ChapConfig::one_way("alice", "password123456"));
        a.step(&CTX, &[]).unwrap();
        assert_eq!(a.step(&CTX, &pairs(&[("CHAP_A", "5")])).unwrap(), AuthProgress::Continue(vec![]));
        let keys = [("CHAP_A", "5"), ("CHAP_I", "1"), ("CHAP_C", "0x00112233445566778899aabbccddeeff")];
        assert!(matches!(a.step(&CTX, &pairs(&keys)).unwrap(), AuthProgress::Done(_)));
    }

    #[test]
    fn bad_challenges_fail_with_a_reason() {
        let cases: &[&[(&str, &str)]] = &[
            &[("CHAP_A", "6"), ("CHAP_I", "1"), ("CHAP_C", "0x00")],
            &[("CHAP_A", "5"), ("CHAP_I", "256"), ("CHAP_C", "0x00")],
            &[("CHAP_A", "5"), ("CHAP_I", "1"), ("CHAP_C", "0x")],
            &[("CHAP_A", "5"), ("CHAP_I", "1"), ("CHAP_C", "nothex")],
            &[("CHAP_I", "1"), ("CHAP_C", "0x00")],
            &[("CHAP_A", "Reject")],
        ];
        for keys in cases {
            let (mut a, h) = ChapAuthenticator::new(ChapConfig::one_way("u", "s"));
            a.step(&CTX, &[]).unwrap();
            assert_eq!(a.step(&CTX, &pairs(keys)), Err(LoginStatus::AUTHENTICATION_FAILURE), "{keys:?}");
            let e = h.explain(LoginError::Rejected { status: LoginStatus::AUTHENTICATION_FAILURE });
            assert!(e.to_string().starts_with("login protocol error: CHAP: "), "{e}");
        }
        // Only MD5 offered: SHA-256 chosen by the target is refused.
        let mut cfg = ChapConfig::one_way("u", "s");
        cfg.algorithms = vec![ChapAlgorithm::Md5];
        let (mut a, _) = ChapAuthenticator::new(cfg);
        assert_eq!(a.step(&CTX, &[]).unwrap(), AuthProgress::Continue(vec![("CHAP_A".into(), "5".into())]));
        let keys = [("CHAP_A", "7"), ("CHAP_I", "1"), ("CHAP_C", "0x00")];
        assert!(a.step(&CTX, &pairs(&keys)).is_err());
    }

    /// Plays the target side of mutual CHAP against our authenticator.
    fn mutual(target_user: &str, target_secret: &[u8], answer: bool) -> (Result<(), LoginStatus>, ChapHandle) {
        let cfg = ChapConfig::one_way("alice", "initiator-secret").with_mutual("tgt", "target-secret-1");
        let (mut a, h) = ChapAuthenticator::new(cfg);
        a.step(&CTX, &[]).unwrap();
        let keys = [("CHAP_A", "7"), ("CHAP_I", "9"), ("CHAP_C", "0x0102030405060708")];
        let AuthProgress::Done(out) = a.step(&CTX, &pairs(&keys)).unwrap() else { panic!() };
        let get = |k: &str| out.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone()).unwrap();
        // Our response is right...
        let r = ChapAlgorithm::Sha256.response(9, b"initiator-secret", &hex("0102030405060708"));
        assert_eq!(get("CHAP_R"), encode_hex(&r));
        // ...and the target answers our challenge.
        let i: u8 = get("CHAP_I").parse().unwrap();
        let c = decode_binary(&get("CHAP_C")).unwrap();
        assert_eq!(c.len(), OUR_CHALLENGE_LEN);
        if !answer {
            return (Ok(()), h);
        }
        let tr = encode_hex(&ChapAlgorithm::Sha256.response(i, target_secret, &c));
        let res = a.step(&CTX, &pairs(&[("CHAP_N", target_user), ("CHAP_R", &tr)])).map(|_| ());
        (res, h)
    }

    #[test]
    fn mutual_exchange() {
        let (r, h) = mutual("tgt", b"target-secret-1", true);
        r.unwrap();
        h.finish().unwrap();
        let (r, h) = mutual("tgt", b"wrong", true);
        assert!(r.is_err());
        assert!(h.explain(LoginError::Protocol(String::new())).to_string().contains("target secret mismatch"));
        let (r, _) = mutual("impostor", b"target-secret-1", true);
        assert!(r.is_err());
        // The target transits without answering: the login must not succeed.
        let (_, h) = mutual("tgt", b"target-secret-1", false);
        assert!(h.finish().unwrap_err().to_string().contains("did not answer"));
        // Target picks AuthMethod=None: the authenticator is never called.
        let (_, h) = ChapAuthenticator::new(ChapConfig::one_way("a", "b").with_mutual("t", "c"));
        assert!(h.finish().unwrap_err().to_string().contains("AuthMethod=None"));
        let (_, h) = ChapAuthenticator::new(ChapConfig::one_way("a", "b"));
        h.finish().unwrap();
        // Same secret both ways is refused.
        let (mut a, _) = ChapAuthenticator::new(ChapConfig::one_way("a", "same").with_mutual("t", "same"));
        a.step(&CTX, &[]).unwrap();
        let keys = [("CHAP_A", "5"), ("CHAP_I", "1"), ("CHAP_C", "0x00")];
        assert!(a.step(&CTX, &pairs(&keys)).is_err());
    }

    /// Through the login state machine: a scripted target (as tgt answers)
    /// selects CHAP, challenges with MD5, checks CHAP_R and lets us through.
    #[test]
    fn drives_the_initiator_login_state_machine() {
        use bytes::Bytes;
        use oxcopy_iscsi::frame::Pdu;
        use oxcopy_iscsi::login::{InitiatorLogin, InitiatorLoginConfig, InitiatorStep};
        use oxcopy_iscsi::pdu::{Header, LoginResponse, Stage};

        let mut lg = InitiatorLogin::new(InitiatorLoginConfig {
            initiator_name: "iqn.2026-11.dev.oxcopy:host".into(),
            initiator_alias: None,
            isid: [0x80, 1, 2, 3, 4, 5],
            target_name: Some("iqn.2026-11.dev.oxcopy:t".into()),
            header_digest: crate::DigestPolicy::None,
            data_digest: crate::DigestPolicy::None,
            max_recv_data_segment_length: 262_144,
            max_burst_length: 1 << 20,
            first_burst_length: 65_536,
            initial_r2t: false,
            immediate_data: true,
            max_outstanding_r2t: 1,
            initial_cmd_sn: 1,
        });
        let handle = ChapAuthenticator::install(&mut lg, ChapConfig::one_way("alice", "password123456"));
        let keys = |p: &Pdu| -> Vec<(String, String)> {
            oxcopy_iscsi::text::parse(&p.data)
                .unwrap()
                .iter()
                .map(|q| (q.key.to_string(), q.value.to_string()))
                .collect()
        };
        let get = |k: &[(String, String)], key: &str| k.iter().find(|(a, _)| a == key).map(|(_, v)| v.clone());
        let mut stat_sn = 10;
        let mut respond = |transit: bool, csg: Stage, nsg: Stage, text: &str| {
            stat_sn += 1;
            let h = LoginResponse {
                transit,
                continue_: false,
                csg,
                nsg,
                version_max: 0,
                version_active: 0,
                isid: [0x80, 1, 2, 3, 4, 5],
                tsih: if transit && nsg == Stage::FULL_FEATURE_PHASE { 7 } else { 0 },
                itt: 0,
                stat_sn,
                exp_cmd_sn: 1,
                max_cmd_sn: 32,
                status: LoginStatus::SUCCESS,
            };
            Pdu::new(Header::LoginResponse(h), Bytes::from(text.replace(' ', "\0") + "\0"))
        };
        let sec = Stage::SECURITY_NEGOTIATION;
        let op = Stage::OPERATIONAL_NEGOTIATION;

        let first = lg.start();
        assert_eq!(get(&keys(&first), "AuthMethod").as_deref(), Some("CHAP,None"));
        let InitiatorStep::Send(p) = lg.on_pdu(&respond(false, sec, sec, "AuthMethod=CHAP")).unwrap() else { panic!() };
        assert_eq!(get(&keys(&p), "CHAP_A").as_deref(), Some("7,5"));
        let challenge = "CHAP_A=5 CHAP_I=1 CHAP_C=0x00112233445566778899aabbccddeeff";
        let InitiatorStep::Send(p) = lg.on_pdu(&respond(false, sec, sec, challenge)).unwrap() else { panic!() };
        let k = keys(&p);
        assert_eq!(get(&k, "CHAP_N").as_deref(), Some("alice"));
        assert_eq!(get(&k, "CHAP_R").as_deref(), Some("0xd8d4d7e22b90e6bfec29669685fb2632"));
        let Header::LoginRequest(h) = &p.header else { panic!() };
        assert!(h.transit && h.nsg == op, "one-way CHAP done: ask to move on");
        // The target moves to the operational stage; negotiation continues.
        let InitiatorStep::Send(p) = lg.on_pdu(&respond(true, sec, op, "")).unwrap() else { panic!() };
        assert!(get(&keys(&p), "MaxBurstLength").is_some());
        handle.finish().unwrap();
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let cfg = ChapConfig::one_way("alice", "hunter2-secret").with_mutual("t", "other-secret");
        let (a, _) = ChapAuthenticator::new(cfg.clone());
        for s in [format!("{cfg:?}"), format!("{a:?}")] {
            assert!(!s.contains("hunter2") && !s.contains("other-secret"), "{s}");
            assert!(s.contains("alice"));
        }
    }
}
