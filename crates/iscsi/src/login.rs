//! Login state machines (RFC 7143 §6, §11.12–11.13) for both roles.
//!
//! - [`TargetLogin`]: fed the Login Requests a target receives, returns what
//!   to send ([`LoginStep`]).
//! - [`InitiatorLogin`]: builds Login Requests and consumes Login Responses
//!   ([`InitiatorStep`]).
//!
//! Both are pure state machines: no I/O, no clock. The key table and the
//! negotiation rules they share live in [`crate::negotiate`]. Authentication
//! plugs in through the [`Authenticator`] trait (`AuthMethod=None` is built
//! in; target-side CHAP is [`crate::chap::TargetChap`]).

mod auth;
mod initiator;
mod target;

pub use crate::negotiate::DigestPolicy;
pub use auth::{AuthContext, AuthProgress, Authenticator};
pub use initiator::{login_status_name, InitiatorLogin, InitiatorLoginConfig, InitiatorStep, LoginError};
pub use target::{LoginPolicy, LoginStep, TargetInfo, TargetLogin, TargetLoginConfig};

/// Most Login PDUs accepted in one login before giving up (bounds the
/// exchange against a peer that never transits).
pub const MAX_LOGIN_PDUS: u32 = 64;

/// The only iSCSI version there is (RFC 7143 §11.12.4: 0x00).
pub const ISCSI_VERSION: u8 = 0x00;

/// Split `data` into the chunk starting at `offset` of at most `max` bytes.
fn chunk(data: &bytes::Bytes, offset: usize, max: usize) -> (bytes::Bytes, bool) {
    let end = offset.saturating_add(max).min(data.len());
    let start = offset.min(end);
    (data.slice(start..end), end < data.len())
}

#[cfg(test)]
mod tests;
