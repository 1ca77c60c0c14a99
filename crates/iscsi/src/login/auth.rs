//! The pluggable security stage: an [`Authenticator`] runs one AuthMethod
//! (e.g. [`crate::chap::TargetChap`]) inside the login state machines.

use crate::params::SessionType;
use crate::pdu::LoginStatus;
use crate::text::Pair;

/// Who is being authenticated, for the authenticator's lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthContext<'a> {
    /// The initiator's InitiatorName.
    pub initiator_name: &'a str,
    /// The TargetName (None for discovery).
    pub target_name: Option<&'a str>,
    /// Normal or discovery.
    pub session_type: SessionType,
}

/// What an authenticator wants after one exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthProgress {
    /// Send these keys and keep exchanging in the security stage.
    Continue(Vec<(String, String)>),
    /// Send these keys; authentication succeeded, the stage may transit.
    Done(Vec<(String, String)>),
}

/// One authentication method (e.g. CHAP with MD5/SHA-256: the keys
/// `CHAP_A`, `CHAP_I`, `CHAP_C`, `CHAP_N`, `CHAP_R`).
///
/// The state machine selects the method through `AuthMethod`, then calls
/// [`Authenticator::step`] once with the method-specific keys of the PDU
/// sequence that agreed on the method (possibly none), and once per later
/// security-stage sequence. The same trait serves the target role (verify the
/// initiator, optionally answer mutual CHAP) and the initiator role (answer
/// the challenge).
pub trait Authenticator: Send {
    /// The `AuthMethod` value this implements, e.g. `"CHAP"`.
    fn method(&self) -> &'static str;
    /// Whether `key` belongs to this method (e.g. starts with `CHAP_`).
    fn owns_key(&self, key: &str) -> bool;
    /// Consume the method's keys of one sequence; `Err` fails the login with
    /// that status (normally [`LoginStatus::AUTHENTICATION_FAILURE`]).
    fn step(&mut self, ctx: &AuthContext<'_>, keys: &[Pair<'_>]) -> Result<AuthProgress, LoginStatus>;
}
