//! Initiator side of login.

use super::auth::{AuthContext, AuthProgress, Authenticator};
use super::{chunk, ISCSI_VERSION, MAX_LOGIN_PDUS};
use crate::frame::Pdu;
use crate::negotiate::{
    self, Answer, DigestPolicy, KeyId, KeyKind, LocalParams, LOGIN_MAX_SEGMENT, MAX_SEGMENT_LIMIT, MIN_SEGMENT_LIMIT,
    NONE,
};
use crate::params::{SessionParams, SessionType};
use crate::pdu::{Header, LoginRequest, LoginStatus, Stage};
use crate::text::{self, Pair, TextAccumulator, TextError, TextWriter, NOT_UNDERSTOOD};
use bytes::Bytes;

/// What the initiator offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitiatorLoginConfig {
    /// Our InitiatorName (iqn./eui./naa.).
    pub initiator_name: String,
    /// Our InitiatorAlias, if any.
    pub initiator_alias: Option<String>,
    /// The ISID of this session.
    pub isid: [u8; 6],
    /// The target to log in to; `None` opens a discovery session.
    pub target_name: Option<String>,
    /// Header digests we offer (in this order).
    pub header_digest: DigestPolicy,
    /// Data digests we offer (in this order).
    pub data_digest: DigestPolicy,
    /// What we declare as our MaxRecvDataSegmentLength.
    pub max_recv_data_segment_length: u32,
    /// MaxBurstLength we offer.
    pub max_burst_length: u32,
    /// FirstBurstLength we offer.
    pub first_burst_length: u32,
    /// InitialR2T we offer.
    pub initial_r2t: bool,
    /// ImmediateData we offer.
    pub immediate_data: bool,
    /// MaxOutstandingR2T we offer.
    pub max_outstanding_r2t: u32,
    /// CmdSN carried by every Login Request (login is immediate).
    pub initial_cmd_sn: u32,
}

/// What the initiator does next.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum InitiatorStep {
    /// Send this Login Request and wait for the response.
    Send(Pdu),
    /// Logged in: switch to the full feature phase (digests apply from the
    /// next PDU).
    Complete {
        /// The negotiated parameters.
        params: SessionParams,
        /// The last StatSN seen (the next expected is this + 1).
        stat_sn: u32,
        /// ExpCmdSN from the final response.
        exp_cmd_sn: u32,
        /// MaxCmdSN from the final response.
        max_cmd_sn: u32,
    },
}

/// Human-readable name of a login status (RFC 7143 §11.13.5).
pub fn login_status_name(s: LoginStatus) -> &'static str {
    match s {
        LoginStatus::SUCCESS => "success",
        LoginStatus::TARGET_MOVED_TEMPORARILY => "target moved temporarily",
        LoginStatus::TARGET_MOVED_PERMANENTLY => "target moved permanently",
        LoginStatus::INITIATOR_ERROR => "initiator error",
        LoginStatus::AUTHENTICATION_FAILURE => "authentication failure",
        LoginStatus::AUTHORIZATION_FAILURE => "authorization failure",
        LoginStatus::NOT_FOUND => "target not found",
        LoginStatus::TARGET_REMOVED => "target removed",
        LoginStatus::UNSUPPORTED_VERSION => "unsupported version",
        LoginStatus::TOO_MANY_CONNECTIONS => "too many connections",
        LoginStatus::MISSING_PARAMETER => "missing parameter",
        LoginStatus::CANT_INCLUDE_IN_SESSION => "can't include in session",
        LoginStatus::SESSION_TYPE_NOT_SUPPORTED => "session type not supported",
        LoginStatus::SESSION_DOES_NOT_EXIST => "session does not exist",
        LoginStatus::INVALID_DURING_LOGIN => "invalid during login",
        LoginStatus::TARGET_ERROR => "target error",
        LoginStatus::SERVICE_UNAVAILABLE => "service unavailable",
        LoginStatus::OUT_OF_RESOURCES => "out of resources",
        _ => "unknown status",
    }
}

/// Why a login failed on the initiator side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// The target refused the login.
    #[error("login rejected: {} ({:02x}{:02x}h)", login_status_name(*status), status.0, status.1)]
    Rejected {
        /// The status the target sent.
        status: LoginStatus,
    },
    /// The target redirected us (status class 1).
    #[error("login redirected ({}) to {target_address:?}", login_status_name(*status))]
    Redirected {
        /// TARGET_MOVED_TEMPORARILY or TARGET_MOVED_PERMANENTLY.
        status: LoginStatus,
        /// The `TargetAddress` it sent, if any.
        target_address: Option<String>,
    },
    /// The target's text data could not be parsed.
    #[error("bad login text: {0}")]
    Text(#[from] TextError),
    /// The target broke the protocol or negotiation could not agree.
    #[error("login protocol error: {0}")]
    Protocol(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Outbound {
    data: Bytes,
    offset: usize,
    transit: Option<Stage>,
}

/// Initiator-side login state machine for one connection.
pub struct InitiatorLogin {
    cfg: InitiatorLoginConfig,
    local: LocalParams,
    session_type: SessionType,
    stage: Stage,
    started: bool,
    done: bool,
    itt: u32,
    cid: u16,
    exp_stat_sn: u32,
    last_stat_sn: u32,
    exp_cmd_sn: u32,
    max_cmd_sn: u32,
    pdus: u32,
    acc: TextAccumulator,
    out: Option<Outbound>,
    /// Our offers not yet answered.
    offers: Vec<(KeyId, String)>,
    /// Answers to keys the target offered, for the next request.
    pending: Vec<(String, String)>,
    resolved: u64,
    declared_mrdsl: bool,
    params: SessionParams,
    target_alias: Option<String>,
    authenticator: Option<Box<dyn Authenticator>>,
    auth_done: bool,
    auth_pending: Vec<(String, String)>,
    /// Largest data segment we put in one Login Request.
    pub(crate) max_segment: usize,
}

impl std::fmt::Debug for InitiatorLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitiatorLogin")
            .field("stage", &self.stage)
            .field("done", &self.done)
            .field("last_stat_sn", &self.last_stat_sn)
            .finish_non_exhaustive()
    }
}

fn proto(msg: impl Into<String>) -> LoginError {
    LoginError::Protocol(msg.into())
}

impl InitiatorLogin {
    /// A login for `cfg`; call [`InitiatorLogin::start`] for the first PDU.
    pub fn new(cfg: InitiatorLoginConfig) -> Self {
        let mbl = cfg.max_burst_length.clamp(MIN_SEGMENT_LIMIT, MAX_SEGMENT_LIMIT);
        let local = LocalParams {
            max_recv_data_segment_length: cfg.max_recv_data_segment_length.clamp(MIN_SEGMENT_LIMIT, MAX_SEGMENT_LIMIT),
            max_burst_length: mbl,
            first_burst_length: cfg.first_burst_length.clamp(MIN_SEGMENT_LIMIT, mbl),
            max_outstanding_r2t: cfg.max_outstanding_r2t.clamp(1, 65535),
            initial_r2t: cfg.initial_r2t,
            immediate_data: cfg.immediate_data,
            header_digest: cfg.header_digest,
            data_digest: cfg.data_digest,
            default_time2wait: 2,
            default_time2retain: 0,
            ..LocalParams::default()
        };
        let session_type = if cfg.target_name.is_some() { SessionType::Normal } else { SessionType::Discovery };
        let params = SessionParams {
            session_type,
            initiator_name: cfg.initiator_name.clone(),
            initiator_alias: cfg.initiator_alias.clone(),
            target_name: cfg.target_name.clone(),
            isid: cfg.isid,
            ..SessionParams::default()
        };
        InitiatorLogin {
            local,
            session_type,
            stage: Stage::SECURITY_NEGOTIATION,
            started: false,
            done: false,
            itt: 0,
            cid: 0,
            exp_stat_sn: 0,
            last_stat_sn: 0,
            exp_cmd_sn: cfg.initial_cmd_sn,
            max_cmd_sn: cfg.initial_cmd_sn,
            pdus: 0,
            acc: TextAccumulator::default(),
            out: None,
            offers: Vec::new(),
            pending: Vec::new(),
            resolved: 0,
            declared_mrdsl: false,
            params,
            target_alias: None,
            authenticator: None,
            auth_done: true,
            auth_pending: Vec::new(),
            max_segment: LOGIN_MAX_SEGMENT,
            cfg,
        }
    }

    /// Use this Initiator Task Tag for the Login PDUs (default 0).
    pub fn set_itt(&mut self, itt: u32) {
        self.itt = itt;
    }

    /// Use this connection ID (default 0).
    pub fn set_cid(&mut self, cid: u16) {
        self.cid = cid;
    }

    /// Authenticate with `auth` (offered as `AuthMethod=<method>,None`).
    pub fn set_authenticator(&mut self, auth: Box<dyn Authenticator>) {
        self.authenticator = Some(auth);
        self.auth_done = false;
    }

    /// The TargetAlias the target declared, if any.
    pub fn target_alias(&self) -> Option<&str> {
        self.target_alias.as_deref()
    }

    /// The first Login Request. Starts in the security stage with
    /// `AuthMethod=None` and asks to transit to the operational stage (as
    /// Linux open-iscsi does; accepted by LIO, tgt and every target).
    pub fn start(&mut self) -> Pdu {
        self.started = true;
        self.stage = Stage::SECURITY_NEGOTIATION;
        let mut w = TextWriter::new();
        w.push("InitiatorName", &self.cfg.initiator_name);
        if let Some(a) = &self.cfg.initiator_alias {
            w.push("InitiatorAlias", a);
        }
        if let Some(t) = &self.cfg.target_name {
            w.push("TargetName", t);
        }
        w.push("SessionType", if self.session_type == SessionType::Discovery { "Discovery" } else { "Normal" });
        match &self.authenticator {
            Some(a) => w.push("AuthMethod", &format!("{},{}", a.method(), NONE)),
            None => w.push("AuthMethod", NONE),
        };
        let transit = if self.authenticator.is_some() { None } else { Some(Stage::OPERATIONAL_NEGOTIATION) };
        self.out = Some(Outbound { data: Bytes::from(w.into_bytes()), offset: 0, transit });
        self.next_chunk()
    }

    fn next_chunk(&mut self) -> Pdu {
        let Some(mut out) = self.out.take() else {
            return self.request(false, false, Stage(0), Bytes::new());
        };
        let (data, more) = chunk(&out.data, out.offset, self.max_segment.max(1));
        out.offset += data.len();
        if more {
            self.out = Some(out);
            return self.request(false, true, Stage(0), data);
        }
        match out.transit {
            Some(nsg) => self.request(true, false, nsg, data),
            None => self.request(false, false, Stage(0), data),
        }
    }

    fn request(&self, transit: bool, cont: bool, nsg: Stage, data: Bytes) -> Pdu {
        let h = LoginRequest {
            transit,
            continue_: cont,
            csg: self.stage,
            nsg: if transit { nsg } else { Stage(0) },
            version_max: ISCSI_VERSION,
            version_min: ISCSI_VERSION,
            isid: self.cfg.isid,
            tsih: 0,
            itt: self.itt,
            cid: self.cid,
            cmd_sn: self.cfg.initial_cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        Pdu::new(Header::LoginRequest(h), data)
    }

    /// Consume one Login Response.
    pub fn on_pdu(&mut self, pdu: &Pdu) -> Result<InitiatorStep, LoginError> {
        if self.done || !self.started {
            return Err(proto("login response outside a login"));
        }
        let Header::LoginResponse(rsp) = &pdu.header else {
            return Err(proto(format!("expected a Login Response, got opcode {:?}", pdu.header.opcode())));
        };
        self.pdus += 1;
        if self.pdus > MAX_LOGIN_PDUS {
            return Err(proto("login did not finish"));
        }
        if rsp.itt != self.itt {
            return Err(proto("Login Response with a foreign ITT"));
        }
        if rsp.status != LoginStatus::SUCCESS {
            self.done = true;
            if rsp.status.0 == 0x01 {
                let target_address = text::parse(&pdu.data)
                    .ok()
                    .and_then(|p| p.iter().find(|q| q.key == "TargetAddress").map(|q| q.value.to_string()));
                return Err(LoginError::Redirected { status: rsp.status, target_address });
            }
            return Err(LoginError::Rejected { status: rsp.status });
        }
        if rsp.version_active != ISCSI_VERSION {
            return Err(proto(format!("unsupported active version {}", rsp.version_active)));
        }
        if rsp.csg != self.stage {
            return Err(proto(format!("response for stage {} while in stage {}", rsp.csg.0, self.stage.0)));
        }
        if rsp.transit && (rsp.continue_ || rsp.nsg.0 <= rsp.csg.0 || rsp.nsg.0 == 2) {
            return Err(proto("invalid T/C/NSG combination"));
        }
        self.last_stat_sn = rsp.stat_sn;
        self.exp_stat_sn = rsp.stat_sn.wrapping_add(1);
        self.exp_cmd_sn = rsp.exp_cmd_sn;
        self.max_cmd_sn = rsp.max_cmd_sn;

        // Our request still going out in pieces: the target acknowledges
        // each piece with an empty response.
        if self.out.is_some() {
            if rsp.transit || rsp.continue_ || !pdu.data.is_empty() {
                return Err(proto("target answered a partial request"));
            }
            return Ok(InitiatorStep::Send(self.next_chunk()));
        }

        self.acc.push(&pdu.data)?;
        if rsp.continue_ {
            return Ok(InitiatorStep::Send(self.request(false, false, Stage(0), Bytes::new())));
        }
        let data = self.acc.take();
        self.absorb(&data)?;

        if rsp.transit {
            self.params.tsih = rsp.tsih;
            self.stage = rsp.nsg;
            if rsp.nsg == Stage::FULL_FEATURE_PHASE {
                return self.complete();
            }
            // Entering the operational stage: offer everything.
            let mut w = TextWriter::new();
            for (k, v) in std::mem::take(&mut self.pending) {
                w.push(&k, &v);
            }
            for (id, v) in negotiate::initiator_offers(&self.local, self.session_type) {
                if self.resolved & (id.bit()) != 0 {
                    continue;
                }
                w.push(negotiate::key_name(id), &v);
                if id == KeyId::MAX_RECV_DATA_SEGMENT_LENGTH {
                    self.declared_mrdsl = true;
                    self.params.initiator_max_recv_data_segment_length = self.local.max_recv_data_segment_length;
                } else {
                    self.offers.push((id, v));
                }
            }
            self.out = Some(Outbound {
                data: Bytes::from(w.into_bytes()),
                offset: 0,
                transit: Some(Stage::FULL_FEATURE_PHASE),
            });
            return Ok(InitiatorStep::Send(self.next_chunk()));
        }

        // Same stage again: answer what the target offered, and ask to move on.
        let mut w = TextWriter::new();
        for (k, v) in std::mem::take(&mut self.pending) {
            w.push(&k, &v);
        }
        for (k, v) in std::mem::take(&mut self.auth_pending) {
            w.push(&k, &v);
        }
        let transit = if self.stage == Stage::SECURITY_NEGOTIATION {
            self.auth_done.then_some(Stage::OPERATIONAL_NEGOTIATION)
        } else {
            Some(Stage::FULL_FEATURE_PHASE)
        };
        self.out = Some(Outbound { data: Bytes::from(w.into_bytes()), offset: 0, transit });
        Ok(InitiatorStep::Send(self.next_chunk()))
    }

    fn absorb(&mut self, data: &[u8]) -> Result<(), LoginError> {
        let pairs = text::parse(data)?;
        text::check_no_duplicates(&pairs)?;
        let in_security = self.stage == Stage::SECURITY_NEGOTIATION;
        let mut auth_keys: Vec<Pair<'_>> = Vec::new();
        let mut auth_selected = false;
        for p in &pairs {
            if let Some(a) = &self.authenticator {
                if a.owns_key(p.key) {
                    auth_keys.push(*p);
                    continue;
                }
            }
            // An answer to one of our offers?
            if let Some(i) = self.offers.iter().position(|(id, _)| negotiate::key_name(*id) == p.key) {
                let (id, offered) = self.offers.swap_remove(i);
                let Some(def) = negotiate::def(id) else {
                    continue;
                };
                negotiate::resolve(def, &offered, p.value, &mut self.params).map_err(|e| proto(e.to_string()))?;
                self.resolved |= id.bit();
                continue;
            }
            let Some(def) = negotiate::lookup(p.key) else {
                if !text::is_special(p.value) {
                    self.pending.push((p.key.to_string(), NOT_UNDERSTOOD.to_string()));
                }
                continue;
            };
            match def.id {
                KeyId::MAX_RECV_DATA_SEGMENT_LENGTH => {
                    let v = text::parse_number_in(p.value, def.min as u64, def.max as u64)
                        .ok_or_else(|| proto(format!("bad MaxRecvDataSegmentLength={}", p.value)))?;
                    self.params.target_max_recv_data_segment_length = v as u32;
                }
                KeyId::TARGET_ALIAS => self.target_alias = Some(p.value.to_string()),
                KeyId::TARGET_PORTAL_GROUP_TAG => {
                    let v = text::parse_number_in(p.value, 0, 65535)
                        .ok_or_else(|| proto(format!("bad TargetPortalGroupTag={}", p.value)))?;
                    self.params.target_portal_group_tag = v as u16;
                }
                KeyId::TARGET_ADDRESS => {}
                KeyId::AUTH_METHOD => {
                    if !in_security {
                        return Err(proto("AuthMethod outside the security stage"));
                    }
                    match (&self.authenticator, p.value) {
                        (_, NONE) => {
                            self.authenticator = None;
                            self.auth_done = true;
                        }
                        (Some(a), m) if m == a.method() => auth_selected = true,
                        (_, v) => return Err(proto(format!("cannot use AuthMethod={v}"))),
                    }
                }
                _ if def.kind == KeyKind::Auth => {
                    return Err(proto(format!("unexpected {}", p.key)));
                }
                _ => {
                    // The target offers a key of its own: answer it.
                    if self.resolved & (def.id.bit()) != 0 && !text::is_special(p.value) {
                        return Err(proto(format!("{} negotiated twice", p.key)));
                    }
                    self.resolved |= def.id.bit();
                    if let Answer::Reply(v) =
                        negotiate::respond(def, p.value, &self.local, self.session_type, &mut self.params)
                    {
                        self.pending.push((p.key.to_string(), v));
                    }
                }
            }
        }
        if let Some(a) = self.authenticator.as_mut() {
            if auth_selected || !auth_keys.is_empty() {
                let ctx = AuthContext {
                    initiator_name: &self.cfg.initiator_name,
                    target_name: self.cfg.target_name.as_deref(),
                    session_type: self.session_type,
                };
                match a.step(&ctx, &auth_keys) {
                    Ok(AuthProgress::Continue(k)) => self.auth_pending = k,
                    Ok(AuthProgress::Done(k)) => {
                        self.auth_pending = k;
                        self.auth_done = true;
                    }
                    Err(status) => return Err(LoginError::Rejected { status }),
                }
            }
        }
        Ok(())
    }

    fn complete(&mut self) -> Result<InitiatorStep, LoginError> {
        self.done = true;
        if !self.declared_mrdsl {
            self.params.initiator_max_recv_data_segment_length = 8192;
        }
        if !self.params.header_digest && !self.local.header_digest.accepts_none() {
            return Err(proto("target did not agree to HeaderDigest=CRC32C"));
        }
        if !self.params.data_digest && !self.local.data_digest.accepts_none() {
            return Err(proto("target did not agree to DataDigest=CRC32C"));
        }
        if self.params.tsih == 0 {
            return Err(proto("final Login Response without a TSIH"));
        }
        Ok(InitiatorStep::Complete {
            params: self.params.clone(),
            stat_sn: self.last_stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn,
        })
    }
}
