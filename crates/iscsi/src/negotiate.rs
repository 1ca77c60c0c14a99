//! Login/text key negotiation rules (RFC 7143 §6.2, §13), one table shared
//! by the target and initiator roles.
//!
//! [`KEYS`] describes every key we know: its result function, range, who may
//! send it, and in which stage. [`respond`] computes the answer a responder
//! gives to an offer (both roles use it: the target for what the initiator
//! offers, the initiator for the rare key a target offers), and [`resolve`]
//! folds a responder's answer to one of our offers into the negotiated
//! [`SessionParams`].

use crate::params::{SessionParams, SessionType};
use crate::text::{self, IRRELEVANT, NOT_UNDERSTOOD, REJECT};

/// How a key's result is computed (RFC 7143 §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Boolean, result is the AND of both values.
    BoolAnd,
    /// Boolean, result is the OR of both values.
    BoolOr,
    /// Number, result is the smaller value.
    NumMin,
    /// Number, result is the larger value.
    NumMax,
    /// List: the responder picks the first offered value it supports.
    List,
    /// Declaration: each side states its own value; no answer.
    Declarative,
    /// Answered by the authenticator (CHAP_* keys).
    Auth,
    /// Only meaningful with iSER or markers: always answered `Irrelevant`.
    AlwaysIrrelevant,
}

/// Who may send a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// Only the initiator.
    Initiator,
    /// Only the target.
    Target,
    /// Either.
    Both,
}

/// In which login stage a key may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStage {
    /// Security negotiation only (AuthMethod, CHAP_*).
    Security,
    /// Security or operational (operational keys are tolerated in the
    /// security stage; declarations appear in either).
    Login,
    /// Full feature phase only (SendTargets).
    FullFeature,
}

/// Identifies a known key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub u8);

impl KeyId {
    pub const HEADER_DIGEST: Self = Self(0);
    pub const DATA_DIGEST: Self = Self(1);
    pub const MAX_CONNECTIONS: Self = Self(2);
    pub const SEND_TARGETS: Self = Self(3);
    pub const TARGET_NAME: Self = Self(4);
    pub const INITIATOR_NAME: Self = Self(5);
    pub const TARGET_ALIAS: Self = Self(6);
    pub const INITIATOR_ALIAS: Self = Self(7);
    pub const TARGET_ADDRESS: Self = Self(8);
    pub const TARGET_PORTAL_GROUP_TAG: Self = Self(9);
    pub const INITIAL_R2T: Self = Self(10);
    pub const IMMEDIATE_DATA: Self = Self(11);
    pub const MAX_RECV_DATA_SEGMENT_LENGTH: Self = Self(12);
    pub const MAX_BURST_LENGTH: Self = Self(13);
    pub const FIRST_BURST_LENGTH: Self = Self(14);
    pub const DEFAULT_TIME2WAIT: Self = Self(15);
    pub const DEFAULT_TIME2RETAIN: Self = Self(16);
    pub const MAX_OUTSTANDING_R2T: Self = Self(17);
    pub const DATA_PDU_IN_ORDER: Self = Self(18);
    pub const DATA_SEQUENCE_IN_ORDER: Self = Self(19);
    pub const ERROR_RECOVERY_LEVEL: Self = Self(20);
    pub const SESSION_TYPE: Self = Self(21);
    pub const AUTH_METHOD: Self = Self(22);
    pub const OF_MARKER: Self = Self(23);
    pub const IF_MARKER: Self = Self(24);
    pub const OF_MARK_INT: Self = Self(25);
    pub const IF_MARK_INT: Self = Self(26);
    pub const ISCSI_PROTOCOL_LEVEL: Self = Self(27);
    pub const TASK_REPORTING: Self = Self(28);
    pub const RDMA_EXTENSIONS: Self = Self(29);
    pub const INITIATOR_RECV_DATA_SEGMENT_LENGTH: Self = Self(30);
    pub const TARGET_RECV_DATA_SEGMENT_LENGTH: Self = Self(31);
    pub const CHAP_A: Self = Self(32);
    pub const CHAP_I: Self = Self(33);
    pub const CHAP_C: Self = Self(34);
    pub const CHAP_N: Self = Self(35);
    pub const CHAP_R: Self = Self(36);
}

/// Largest data segment / burst length (2^24 - 1).
pub const MAX_SEGMENT_LIMIT: u32 = 0x00ff_ffff;
/// Smallest data segment / burst length.
pub const MIN_SEGMENT_LIMIT: u32 = 512;
/// The login-phase data segment limit (RFC 7143 §13.12 default, in force
/// until the full feature phase).
pub const LOGIN_MAX_SEGMENT: usize = 8192;

/// One row of the key table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDef {
    /// The key name as on the wire.
    pub name: &'static str,
    /// Identifier.
    pub id: KeyId,
    /// Result function.
    pub kind: KeyKind,
    /// Smallest valid value (numbers).
    pub min: u32,
    /// Largest valid value (numbers).
    pub max: u32,
    /// Who may send it.
    pub sender: Sender,
    /// When it may appear.
    pub stage: KeyStage,
    /// Leading-only / session-wide: may be sent once per login.
    pub leading_only: bool,
    /// Answered `Irrelevant` in a discovery session (RFC 7143 §13
    /// "Irrelevant when: SessionType=Discovery").
    pub irrelevant_in_discovery: bool,
}

#[allow(clippy::too_many_arguments)]
const fn k(
    name: &'static str,
    id: KeyId,
    kind: KeyKind,
    min: u32,
    max: u32,
    sender: Sender,
    stage: KeyStage,
    leading_only: bool,
    irrelevant_in_discovery: bool,
) -> KeyDef {
    KeyDef { name, id, kind, min, max, sender, stage, leading_only, irrelevant_in_discovery }
}

use KeyKind::*;
use KeyStage::{FullFeature, Login, Security};
use Sender::{Both, Initiator, Target};

/// Every key we know (RFC 7143 §12–13, RFC 7144 iSCSIProtocolLevel, RFC 7145
/// iSER keys which are irrelevant on TCP).
pub const KEYS: &[KeyDef] = &[
    k("HeaderDigest", KeyId::HEADER_DIGEST, List, 0, 0, Both, Login, false, false),
    k("DataDigest", KeyId::DATA_DIGEST, List, 0, 0, Both, Login, false, false),
    k("MaxConnections", KeyId::MAX_CONNECTIONS, NumMin, 1, 65535, Both, Login, true, true),
    k("SendTargets", KeyId::SEND_TARGETS, Declarative, 0, 0, Initiator, FullFeature, false, false),
    k("TargetName", KeyId::TARGET_NAME, Declarative, 0, 0, Initiator, Login, true, false),
    k("InitiatorName", KeyId::INITIATOR_NAME, Declarative, 0, 0, Initiator, Login, true, false),
    k("TargetAlias", KeyId::TARGET_ALIAS, Declarative, 0, 0, Target, Login, false, false),
    k("InitiatorAlias", KeyId::INITIATOR_ALIAS, Declarative, 0, 0, Initiator, Login, false, false),
    k("TargetAddress", KeyId::TARGET_ADDRESS, Declarative, 0, 0, Target, Login, false, false),
    k("TargetPortalGroupTag", KeyId::TARGET_PORTAL_GROUP_TAG, Declarative, 0, 65535, Target, Login, false, false),
    k("InitialR2T", KeyId::INITIAL_R2T, BoolOr, 0, 0, Both, Login, true, true),
    k("ImmediateData", KeyId::IMMEDIATE_DATA, BoolAnd, 0, 0, Both, Login, true, true),
    k(
        "MaxRecvDataSegmentLength",
        KeyId::MAX_RECV_DATA_SEGMENT_LENGTH,
        Declarative,
        MIN_SEGMENT_LIMIT,
        MAX_SEGMENT_LIMIT,
        Both,
        Login,
        false,
        false,
    ),
    k("MaxBurstLength", KeyId::MAX_BURST_LENGTH, NumMin, MIN_SEGMENT_LIMIT, MAX_SEGMENT_LIMIT, Both, Login, true, true),
    k(
        "FirstBurstLength",
        KeyId::FIRST_BURST_LENGTH,
        NumMin,
        MIN_SEGMENT_LIMIT,
        MAX_SEGMENT_LIMIT,
        Both,
        Login,
        true,
        true,
    ),
    k("DefaultTime2Wait", KeyId::DEFAULT_TIME2WAIT, NumMax, 0, 3600, Both, Login, true, false),
    k("DefaultTime2Retain", KeyId::DEFAULT_TIME2RETAIN, NumMin, 0, 3600, Both, Login, true, false),
    k("MaxOutstandingR2T", KeyId::MAX_OUTSTANDING_R2T, NumMin, 1, 65535, Both, Login, true, true),
    k("DataPDUInOrder", KeyId::DATA_PDU_IN_ORDER, BoolOr, 0, 0, Both, Login, true, true),
    k("DataSequenceInOrder", KeyId::DATA_SEQUENCE_IN_ORDER, BoolOr, 0, 0, Both, Login, true, true),
    k("ErrorRecoveryLevel", KeyId::ERROR_RECOVERY_LEVEL, NumMin, 0, 2, Both, Login, true, false),
    k("SessionType", KeyId::SESSION_TYPE, Declarative, 0, 0, Initiator, Login, true, false),
    k("AuthMethod", KeyId::AUTH_METHOD, List, 0, 0, Both, Security, false, false),
    k("OFMarker", KeyId::OF_MARKER, BoolAnd, 0, 0, Both, Login, false, false),
    k("IFMarker", KeyId::IF_MARKER, BoolAnd, 0, 0, Both, Login, false, false),
    k("OFMarkInt", KeyId::OF_MARK_INT, AlwaysIrrelevant, 0, 0, Both, Login, false, false),
    k("IFMarkInt", KeyId::IF_MARK_INT, AlwaysIrrelevant, 0, 0, Both, Login, false, false),
    k("iSCSIProtocolLevel", KeyId::ISCSI_PROTOCOL_LEVEL, NumMin, 0, 31, Both, Login, true, false),
    k("TaskReporting", KeyId::TASK_REPORTING, List, 0, 0, Both, Login, true, false),
    k("RDMAExtensions", KeyId::RDMA_EXTENSIONS, BoolAnd, 0, 0, Both, Login, true, false),
    k(
        "InitiatorRecvDataSegmentLength",
        KeyId::INITIATOR_RECV_DATA_SEGMENT_LENGTH,
        AlwaysIrrelevant,
        0,
        0,
        Both,
        Login,
        false,
        false,
    ),
    k(
        "TargetRecvDataSegmentLength",
        KeyId::TARGET_RECV_DATA_SEGMENT_LENGTH,
        AlwaysIrrelevant,
        0,
        0,
        Both,
        Login,
        false,
        false,
    ),
    k("CHAP_A", KeyId::CHAP_A, Auth, 0, 0, Both, Security, false, false),
    k("CHAP_I", KeyId::CHAP_I, Auth, 0, 0, Both, Security, false, false),
    k("CHAP_C", KeyId::CHAP_C, Auth, 0, 0, Both, Security, false, false),
    k("CHAP_N", KeyId::CHAP_N, Auth, 0, 0, Both, Security, false, false),
    k("CHAP_R", KeyId::CHAP_R, Auth, 0, 0, Both, Security, false, false),
];

/// Look a key up by its wire name (case-sensitive). `X-` and `X#` extension
/// keys and anything unknown give `None` (answered `NotUnderstood`).
pub fn lookup(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|d| d.name == name)
}

/// The definition of a known id (ids index [`KEYS`]).
pub fn def(id: KeyId) -> Option<&'static KeyDef> {
    KEYS.get(id.0 as usize)
}

/// The wire name of a known id (empty for an unknown id).
pub fn key_name(id: KeyId) -> &'static str {
    def(id).map_or("", |d| d.name)
}

impl KeyId {
    /// This key's bit in a 64-bit "already negotiated" set.
    pub fn bit(self) -> u64 {
        1u64.checked_shl(self.0 as u32).unwrap_or(0)
    }
}

/// Which digest(s) a side accepts, and in which order it offers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DigestPolicy {
    /// Only `None`.
    #[default]
    None,
    /// Only `CRC32C`.
    Crc32c,
    /// Both, offered as `CRC32C,None`.
    PreferCrc32c,
    /// Both, offered as `None,CRC32C`.
    PreferNone,
}

/// `CRC32C` on the wire.
pub const CRC32C: &str = "CRC32C";
/// `None` on the wire (digests, AuthMethod).
pub const NONE: &str = "None";

impl DigestPolicy {
    /// The list value offered for this policy.
    pub fn offer(self) -> &'static str {
        match self {
            DigestPolicy::None => NONE,
            DigestPolicy::Crc32c => CRC32C,
            DigestPolicy::PreferCrc32c => "CRC32C,None",
            DigestPolicy::PreferNone => "None,CRC32C",
        }
    }
    /// Whether `value` (`None`/`CRC32C`) is acceptable.
    pub fn accepts(self, value: &str) -> bool {
        match value {
            NONE => self != DigestPolicy::Crc32c,
            CRC32C => self != DigestPolicy::None,
            _ => false,
        }
    }
    /// Whether the RFC default (no digest) is acceptable.
    pub fn accepts_none(self) -> bool {
        self.accepts(NONE)
    }
}

/// One side's own values for the negotiable keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalParams {
    /// What we declare as MaxRecvDataSegmentLength.
    pub max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub max_outstanding_r2t: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub header_digest: DigestPolicy,
    pub data_digest: DigestPolicy,
    pub default_time2wait: u16,
    pub default_time2retain: u16,
    pub error_recovery_level: u8,
    pub max_connections: u16,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
}

impl Default for LocalParams {
    fn default() -> Self {
        LocalParams {
            max_recv_data_segment_length: 8192,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            max_outstanding_r2t: 1,
            initial_r2t: true,
            immediate_data: true,
            header_digest: DigestPolicy::None,
            data_digest: DigestPolicy::None,
            default_time2wait: 2,
            default_time2retain: 20,
            error_recovery_level: 0,
            max_connections: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
        }
    }
}

/// What a responder does with one offered key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Send `key=value` back.
    Reply(String),
    /// Nothing to send (declarations, or the offer was itself a special value).
    Nothing,
}

fn clamp_u16(v: u64) -> u16 {
    v.min(u16::MAX as u64) as u16
}

/// Answer one offered operational key as a responder with `local` values,
/// updating `params` with the result. `session_type` decides `Irrelevant`.
///
/// Declarative, security and session-identity keys are not handled here
/// (the role code owns them); for those this returns `Answer::Nothing`.
pub fn respond(
    def: &KeyDef,
    offered: &str,
    local: &LocalParams,
    session_type: SessionType,
    params: &mut SessionParams,
) -> Answer {
    if text::is_special(offered) {
        // The other side answering our offer (or echoing Irrelevant): nothing
        // to negotiate.
        return Answer::Nothing;
    }
    if def.kind == AlwaysIrrelevant || (def.irrelevant_in_discovery && session_type == SessionType::Discovery) {
        return Answer::Reply(IRRELEVANT.into());
    }
    let reject = || Answer::Reply(REJECT.into());
    match def.kind {
        BoolAnd | BoolOr => {
            let Some(theirs) = text::parse_bool(offered) else {
                return reject();
            };
            let ours = match def.id {
                KeyId::IMMEDIATE_DATA => local.immediate_data,
                KeyId::INITIAL_R2T => local.initial_r2t,
                KeyId::DATA_PDU_IN_ORDER => local.data_pdu_in_order,
                KeyId::DATA_SEQUENCE_IN_ORDER => local.data_sequence_in_order,
                // Markers and RDMAExtensions: we never do them.
                _ => false,
            };
            let result = if def.kind == BoolAnd { ours && theirs } else { ours || theirs };
            apply_bool(def.id, result, params);
            Answer::Reply(text::bool_str(result).into())
        }
        NumMin | NumMax => {
            let Some(theirs) = text::parse_number_in(offered, def.min as u64, def.max as u64) else {
                return reject();
            };
            let ours: u64 = match def.id {
                KeyId::MAX_CONNECTIONS => local.max_connections as u64,
                KeyId::MAX_BURST_LENGTH => local.max_burst_length as u64,
                KeyId::FIRST_BURST_LENGTH => {
                    // Never answer a FirstBurstLength above the (already
                    // negotiated) MaxBurstLength.
                    (local.first_burst_length as u64).min(params.max_burst_length as u64)
                }
                KeyId::DEFAULT_TIME2WAIT => local.default_time2wait as u64,
                KeyId::DEFAULT_TIME2RETAIN => local.default_time2retain as u64,
                KeyId::MAX_OUTSTANDING_R2T => local.max_outstanding_r2t as u64,
                KeyId::ERROR_RECOVERY_LEVEL => local.error_recovery_level as u64,
                KeyId::ISCSI_PROTOCOL_LEVEL => 1,
                _ => return reject(),
            };
            let ours = ours.clamp(def.min as u64, def.max as u64);
            let result = if def.kind == NumMin { ours.min(theirs) } else { ours.max(theirs) };
            apply_num(def.id, result, params);
            Answer::Reply(result.to_string())
        }
        List => {
            let accept = |v: &str| match def.id {
                KeyId::HEADER_DIGEST => local.header_digest.accepts(v),
                KeyId::DATA_DIGEST => local.data_digest.accepts(v),
                KeyId::TASK_REPORTING => v == "RFC3720",
                _ => false,
            };
            match text::parse_list(offered).find(|v| accept(v)) {
                Some(v) => {
                    apply_list(def.id, v, params);
                    Answer::Reply(v.to_string())
                }
                None => reject(),
            }
        }
        Declarative | Auth | AlwaysIrrelevant => Answer::Nothing,
    }
}

fn apply_bool(id: KeyId, v: bool, p: &mut SessionParams) {
    match id {
        KeyId::IMMEDIATE_DATA => p.immediate_data = v,
        KeyId::INITIAL_R2T => p.initial_r2t = v,
        KeyId::DATA_PDU_IN_ORDER => p.data_pdu_in_order = v,
        KeyId::DATA_SEQUENCE_IN_ORDER => p.data_sequence_in_order = v,
        _ => {}
    }
}

fn apply_num(id: KeyId, v: u64, p: &mut SessionParams) {
    match id {
        KeyId::MAX_CONNECTIONS => p.max_connections = clamp_u16(v),
        KeyId::MAX_BURST_LENGTH => {
            p.max_burst_length = v as u32;
            p.first_burst_length = p.first_burst_length.min(p.max_burst_length);
        }
        KeyId::FIRST_BURST_LENGTH => p.first_burst_length = (v as u32).min(p.max_burst_length),
        KeyId::DEFAULT_TIME2WAIT => p.default_time2wait = clamp_u16(v),
        KeyId::DEFAULT_TIME2RETAIN => p.default_time2retain = clamp_u16(v),
        KeyId::MAX_OUTSTANDING_R2T => p.max_outstanding_r2t = v as u32,
        KeyId::ERROR_RECOVERY_LEVEL => p.error_recovery_level = v.min(2) as u8,
        _ => {}
    }
}

fn apply_list(id: KeyId, v: &str, p: &mut SessionParams) {
    match id {
        KeyId::HEADER_DIGEST => p.header_digest = v == CRC32C,
        KeyId::DATA_DIGEST => p.data_digest = v == CRC32C,
        _ => {}
    }
}

/// Why a responder's answer to one of our offers is unacceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unacceptable answer {key}={value}")]
pub struct ResolveError {
    /// The key.
    pub key: String,
    /// What the peer answered.
    pub value: String,
}

/// Fold the peer's `answer` to our `offered` value into `params`.
/// `Reject`/`Irrelevant`/`NotUnderstood` leave the default in place.
pub fn resolve(def: &KeyDef, offered: &str, answer: &str, params: &mut SessionParams) -> Result<(), ResolveError> {
    let bad = || ResolveError { key: def.name.to_string(), value: answer.to_string() };
    if text::is_special(answer) {
        return Ok(());
    }
    match def.kind {
        BoolAnd | BoolOr => {
            let (Some(ours), Some(theirs)) = (text::parse_bool(offered), text::parse_bool(answer)) else {
                return Err(bad());
            };
            let result = if def.kind == BoolAnd { ours && theirs } else { ours || theirs };
            apply_bool(def.id, result, params);
        }
        NumMin | NumMax => {
            let ours = text::parse_number(offered).ok_or_else(bad)?;
            let theirs = text::parse_number_in(answer, def.min as u64, def.max as u64).ok_or_else(bad)?;
            // A conforming answer never goes past our offer; be lenient and
            // apply the result function anyway.
            let result = if def.kind == NumMin { ours.min(theirs) } else { ours.max(theirs) };
            apply_num(def.id, result, params);
        }
        List => {
            if !text::parse_list(offered).any(|v| v == answer) {
                return Err(bad());
            }
            apply_list(def.id, answer, params);
        }
        Declarative | Auth | AlwaysIrrelevant => {}
    }
    Ok(())
}

/// The operational keys an initiator offers, in the order open-iscsi sends
/// them. Discovery sessions offer only the keys relevant to them.
pub fn initiator_offers(local: &LocalParams, session_type: SessionType) -> Vec<(KeyId, String)> {
    let mut v = vec![
        (KeyId::HEADER_DIGEST, local.header_digest.offer().to_string()),
        (KeyId::DATA_DIGEST, local.data_digest.offer().to_string()),
        (KeyId::DEFAULT_TIME2WAIT, local.default_time2wait.to_string()),
        (KeyId::DEFAULT_TIME2RETAIN, local.default_time2retain.to_string()),
        (KeyId::IF_MARKER, text::NO.to_string()),
        (KeyId::OF_MARKER, text::NO.to_string()),
        (KeyId::ERROR_RECOVERY_LEVEL, local.error_recovery_level.to_string()),
    ];
    if session_type == SessionType::Normal {
        v.extend([
            (KeyId::INITIAL_R2T, text::bool_str(local.initial_r2t).to_string()),
            (KeyId::IMMEDIATE_DATA, text::bool_str(local.immediate_data).to_string()),
            (KeyId::MAX_BURST_LENGTH, local.max_burst_length.to_string()),
            (KeyId::FIRST_BURST_LENGTH, local.first_burst_length.min(local.max_burst_length).to_string()),
            (KeyId::MAX_OUTSTANDING_R2T, local.max_outstanding_r2t.to_string()),
            (KeyId::MAX_CONNECTIONS, local.max_connections.to_string()),
            (KeyId::DATA_PDU_IN_ORDER, text::bool_str(local.data_pdu_in_order).to_string()),
            (KeyId::DATA_SEQUENCE_IN_ORDER, text::bool_str(local.data_sequence_in_order).to_string()),
        ]);
    }
    v.push((KeyId::MAX_RECV_DATA_SEGMENT_LENGTH, local.max_recv_data_segment_length.to_string()));
    v
}

/// `NotUnderstood` for a key we do not know.
pub fn not_understood() -> Answer {
    Answer::Reply(NOT_UNDERSTOOD.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_index_table() {
        for (i, d) in KEYS.iter().enumerate() {
            assert_eq!(d.id.0 as usize, i, "{}", d.name);
            assert_eq!(lookup(d.name), Some(d));
        }
        assert!(lookup("X-com.example.foo").is_none());
        assert!(lookup("headerdigest").is_none());
    }

    fn answer(name: &str, offered: &str, local: &LocalParams, st: SessionType) -> String {
        let mut p = SessionParams::default();
        match respond(lookup(name).unwrap(), offered, local, st, &mut p) {
            Answer::Reply(s) => s,
            Answer::Nothing => String::new(),
        }
    }

    #[test]
    fn result_functions() {
        let l = LocalParams {
            initial_r2t: false,
            immediate_data: true,
            max_burst_length: 1 << 20,
            first_burst_length: 65536,
            header_digest: DigestPolicy::PreferCrc32c,
            ..Default::default()
        };
        let n = SessionType::Normal;
        // InitialR2T is OR, ImmediateData is AND.
        assert_eq!(answer("InitialR2T", "No", &l, n), "No");
        assert_eq!(answer("InitialR2T", "Yes", &l, n), "Yes");
        assert_eq!(answer("ImmediateData", "No", &l, n), "No");
        assert_eq!(answer("ImmediateData", "Yes", &l, n), "Yes");
        // DataPDUInOrder / DataSequenceInOrder are OR (RFC 7143 §13.18/13.19).
        assert_eq!(answer("DataPDUInOrder", "No", &l, n), "Yes");
        assert_eq!(answer("MaxBurstLength", "16776192", &l, n), "1048576");
        assert_eq!(answer("MaxBurstLength", "4096", &l, n), "4096");
        assert_eq!(answer("MaxBurstLength", "511", &l, n), "Reject");
        assert_eq!(answer("MaxBurstLength", "16777216", &l, n), "Reject");
        assert_eq!(answer("DefaultTime2Wait", "0", &l, n), "2");
        assert_eq!(answer("DefaultTime2Retain", "0", &l, n), "0");
        assert_eq!(answer("ErrorRecoveryLevel", "2", &l, n), "0");
        assert_eq!(answer("MaxConnections", "8", &l, n), "1");
        assert_eq!(answer("HeaderDigest", "None,CRC32C", &l, n), "None");
        assert_eq!(answer("HeaderDigest", "CRC32C,None", &l, n), "CRC32C");
        assert_eq!(answer("DataDigest", "CRC32C", &l, n), "Reject");
        assert_eq!(answer("IFMarker", "Yes", &l, n), "No");
        assert_eq!(answer("OFMarkInt", "2048~8192", &l, n), "Irrelevant");
        assert_eq!(answer("MaxBurstLength", "Irrelevant", &l, n), "");
        assert_eq!(answer("ImmediateData", "maybe", &l, n), "Reject");
        assert_eq!(answer("MaxBurstLength", "262144", &l, SessionType::Discovery), "Irrelevant");
        assert_eq!(answer("TaskReporting", "ResponseFence,RFC3720", &l, n), "RFC3720");
    }

    #[test]
    fn first_burst_never_exceeds_max_burst() {
        let l = LocalParams { max_burst_length: 1 << 20, first_burst_length: 1 << 20, ..Default::default() };
        let mut p = SessionParams::default();
        let mb = lookup("MaxBurstLength").unwrap();
        let fb = lookup("FirstBurstLength").unwrap();
        respond(mb, "8192", &l, SessionType::Normal, &mut p);
        assert_eq!(respond(fb, "262144", &l, SessionType::Normal, &mut p), Answer::Reply("8192".into()));
        assert_eq!(p.first_burst_length, 8192);
    }

    #[test]
    fn resolve_answers() {
        let mut p = SessionParams::default();
        let hd = lookup("HeaderDigest").unwrap();
        resolve(hd, "CRC32C,None", "CRC32C", &mut p).unwrap();
        assert!(p.header_digest);
        assert!(resolve(hd, "None", "CRC32C", &mut p).is_err());
        let id = lookup("ImmediateData").unwrap();
        resolve(id, "Yes", "No", &mut p).unwrap();
        assert!(!p.immediate_data);
        let mb = lookup("MaxBurstLength").unwrap();
        resolve(mb, "1048576", "262144", &mut p).unwrap();
        assert_eq!(p.max_burst_length, 262144);
        assert!(resolve(mb, "1048576", "banana", &mut p).is_err());
        resolve(mb, "1048576", "Irrelevant", &mut p).unwrap();
    }
}
