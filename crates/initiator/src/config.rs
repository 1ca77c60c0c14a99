//! Session configuration: what we offer at login, and our timeouts.

use std::time::Duration;

pub use oxcopy_iscsi::login::DigestPolicy;

/// Everything needed to open a session: login offers and timeouts.
///
/// `SessionConfig::default()` (= [`SessionConfig::discovery`]) has no target
/// name and so opens a discovery session; use [`SessionConfig::for_target`]
/// for a normal session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our iSCSI name (default `iqn.2026-11.dev.oxcopy:initiator-<host>`).
    pub initiator_name: String,
    /// Optional InitiatorAlias.
    pub initiator_alias: Option<String>,
    /// Target to log into; `None` opens a discovery session.
    pub target_name: Option<String>,
    /// ISID (initiator port qualifier). `None` picks a random-format ISID
    /// (type 0x80) per session.
    pub isid: Option<[u8; 6]>,
    /// HeaderDigest offer.
    pub header_digest: DigestPolicy,
    /// DataDigest offer.
    pub data_digest: DigestPolicy,
    /// Our MaxRecvDataSegmentLength (largest Data-In/Text segment we accept).
    pub max_recv_data_segment_length: u32,
    /// MaxBurstLength offer.
    pub max_burst_length: u32,
    /// FirstBurstLength offer.
    pub first_burst_length: u32,
    /// InitialR2T offer (`false` = we want to send unsolicited Data-Out).
    pub initial_r2t: bool,
    /// ImmediateData offer.
    pub immediate_data: bool,
    /// MaxOutstandingR2T offer.
    pub max_outstanding_r2t: u32,
    /// CmdSN of the login request (and of the first command).
    pub initial_cmd_sn: u32,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Whole-login timeout.
    pub login_timeout: Duration,
    /// Default time limit of a SCSI command (including waiting for the
    /// CmdSN window); see [`crate::PendingCommand::with_timeout`].
    pub command_timeout: Duration,
    /// Time limit for TMF, NOP, Text and Logout exchanges.
    pub management_timeout: Duration,
    /// Send a NOP-Out ping this often when set; a ping unanswered within
    /// `management_timeout` closes the connection.
    pub keepalive_interval: Option<Duration>,
    /// CHAP credentials (`AuthMethod=CHAP,None` is offered when set; the
    /// target may still choose None unless mutual CHAP is configured).
    pub chap: Option<crate::chap::ChapConfig>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            initiator_name: default_initiator_name(),
            initiator_alias: None,
            target_name: None,
            isid: None,
            header_digest: DigestPolicy::None,
            data_digest: DigestPolicy::None,
            max_recv_data_segment_length: 256 * 1024,
            max_burst_length: 16 * 1024 * 1024 - 512,
            first_burst_length: 256 * 1024,
            initial_r2t: false,
            immediate_data: true,
            max_outstanding_r2t: 8,
            initial_cmd_sn: 1,
            connect_timeout: Duration::from_secs(10),
            login_timeout: Duration::from_secs(15),
            command_timeout: Duration::from_secs(60),
            management_timeout: Duration::from_secs(15),
            keepalive_interval: Some(Duration::from_secs(30)),
            chap: None,
        }
    }
}

impl SessionConfig {
    /// Defaults for a normal session to `target_name`.
    pub fn for_target(target_name: impl Into<String>) -> Self {
        SessionConfig { target_name: Some(target_name.into()), ..Default::default() }
    }

    /// Defaults for a discovery session.
    pub fn discovery() -> Self {
        SessionConfig::default()
    }

    /// The ISID to use: the configured one, or a fresh random-format one.
    pub(crate) fn isid_or_random(&self) -> [u8; 6] {
        self.isid.unwrap_or_else(|| {
            let r = random_u64().to_be_bytes();
            // T=10b (random), A/B/C random, D (qualifier) random.
            [0x80, r[0], r[1], r[2], r[3], r[4]]
        })
    }
}

/// A random 64-bit value from the std hasher seed (no extra dependency).
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.write_u32(std::process::id());
    h.finish()
}

/// `iqn.2026-11.dev.oxcopy:initiator-<host>` with the host name reduced to
/// the characters an iSCSI name allows.
pub fn default_initiator_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = raw
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    let host = if host.is_empty() { "localhost".to_string() } else { host };
    format!("iqn.2026-11.dev.oxcopy:initiator-{host}")
}
