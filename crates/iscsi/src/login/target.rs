//! Target side of login.

use super::auth::{AuthContext, AuthProgress, Authenticator};
use super::{chunk, ISCSI_VERSION, MAX_LOGIN_PDUS};
use crate::frame::Pdu;
use crate::negotiate::{
    self, Answer, DigestPolicy, KeyDef, KeyId, KeyKind, KeyStage, LocalParams, Sender, LOGIN_MAX_SEGMENT,
    MAX_SEGMENT_LIMIT, MIN_SEGMENT_LIMIT, NONE,
};
use crate::params::{SessionParams, SessionType};
use crate::pdu::{bhs_itt, Header, LoginRequest, LoginResponse, LoginStatus, Stage};
use crate::text::{self, Pair, TextAccumulator, TextWriter, NOT_UNDERSTOOD, REJECT};
use crate::timeout::{deadline, due, Timeout};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// What the target offers and accepts. Built by the daemon per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetLoginConfig {
    /// What we declare as our MaxRecvDataSegmentLength (512..=2^24-1;
    /// typically 262144).
    pub max_recv_data_segment_length: u32,
    /// Our largest MaxBurstLength (the result is the minimum of both sides).
    pub max_burst_length: u32,
    /// Our largest FirstBurstLength.
    pub first_burst_length: u32,
    /// Our largest MaxOutstandingR2T.
    pub max_outstanding_r2t: u32,
    /// Whether we accept immediate data (result: AND).
    pub immediate_data: bool,
    /// Whether we want InitialR2T (result: OR).
    pub initial_r2t: bool,
    /// Header digests we accept.
    pub header_digest: DigestPolicy,
    /// Data digests we accept.
    pub data_digest: DigestPolicy,
    /// StatSN of the first Login Response.
    pub initial_stat_sn: u32,
    /// The TSIH the daemon assigned to the new session (non-zero; 0 is
    /// replaced by 1).
    pub tsih: u16,
    /// Command window: MaxCmdSN = ExpCmdSN + cmd_window - 1 (at least 1).
    pub cmd_window: u32,
}

impl Default for TargetLoginConfig {
    fn default() -> Self {
        TargetLoginConfig {
            max_recv_data_segment_length: 262_144,
            max_burst_length: 1 << 20,
            first_burst_length: 65_536,
            max_outstanding_r2t: 1,
            immediate_data: true,
            initial_r2t: false,
            header_digest: DigestPolicy::PreferNone,
            data_digest: DigestPolicy::PreferNone,
            initial_stat_sn: 1,
            tsih: 1,
            cmd_window: 32,
        }
    }
}

impl TargetLoginConfig {
    fn local(&self) -> LocalParams {
        let mrdsl = self.max_recv_data_segment_length.clamp(MIN_SEGMENT_LIMIT, MAX_SEGMENT_LIMIT);
        let mbl = self.max_burst_length.clamp(MIN_SEGMENT_LIMIT, MAX_SEGMENT_LIMIT);
        LocalParams {
            max_recv_data_segment_length: mrdsl,
            max_burst_length: mbl,
            first_burst_length: self.first_burst_length.clamp(MIN_SEGMENT_LIMIT, mbl),
            max_outstanding_r2t: self.max_outstanding_r2t.clamp(1, 65535),
            initial_r2t: self.initial_r2t,
            immediate_data: self.immediate_data,
            header_digest: self.header_digest,
            data_digest: self.data_digest,
            ..LocalParams::default()
        }
    }
}

/// What the policy knows about a target the initiator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    /// Target portal group tag of the portal the connection arrived on.
    pub tpgt: u16,
    /// TargetAlias to declare, if any.
    pub alias: Option<String>,
}

/// The daemon's access decisions, consulted once per login.
pub trait LoginPolicy {
    /// Is `target_name` known here, and may `initiator_name` log in to it?
    /// `Err(LoginStatus::NOT_FOUND)` / `Err(LoginStatus::AUTHORIZATION_FAILURE)`
    /// (or any other failure status) rejects the login.
    fn check_target(&self, target_name: &str, initiator_name: &str) -> Result<TargetInfo, LoginStatus>;
    /// May `initiator_name` open a discovery session?
    fn discovery_allowed(&self, initiator_name: &str) -> bool;
    /// The authenticator this initiator must pass, if any. `None` (the
    /// default) means `AuthMethod=None` is accepted.
    fn authenticator(&self, _initiator_name: &str, _target_name: Option<&str>) -> Option<Box<dyn Authenticator>> {
        None
    }
    /// Whether a session with this ISID and TSIH exists (a login with a
    /// non-zero TSIH adds a connection to it). Default: no session exists.
    fn session_exists(&self, _isid: [u8; 6], _tsih: u16) -> bool {
        false
    }
}

/// What the daemon does after feeding one PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum LoginStep {
    /// Send this and keep reading Login Requests.
    Respond(Pdu),
    /// Send this; login succeeded. Switch to the full feature phase with
    /// these parameters: digests apply from the *next* PDU after this one.
    Complete {
        /// The final Login Response.
        response: Pdu,
        /// The negotiated parameters.
        params: SessionParams,
    },
    /// Send this (a Login Response with a failure status) and close.
    Fail {
        /// The failing Login Response.
        response: Pdu,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitFirst,
    Negotiating,
    Done,
}

/// A response being sent in several PDUs (C bit).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outbound {
    data: Bytes,
    offset: usize,
    /// NSG to announce with T=1 on the last chunk.
    transit: Option<Stage>,
}

/// Target-side login state machine for one connection.
pub struct TargetLogin {
    cfg: TargetLoginConfig,
    local: LocalParams,
    phase: Phase,
    stage: Stage,
    isid: [u8; 6],
    itt: u32,
    cid: u16,
    tsih_req: u16,
    stat_sn: u32,
    exp_cmd_sn: u32,
    pdus: u32,
    acc: TextAccumulator,
    out: Option<Outbound>,
    params: SessionParams,
    /// Keys already negotiated or declared (bit per [`KeyId`]).
    seen: u64,
    first_sequence_done: bool,
    session_type: SessionType,
    target_info: Option<TargetInfo>,
    authenticator: Option<Box<dyn Authenticator>>,
    auth_selected: bool,
    auth_done: bool,
    declared_mrdsl: bool,
    /// Largest data segment we put in one Login Response.
    pub(crate) max_segment: usize,
    /// The login timeout and when it expires; cleared when login succeeds.
    timer: Option<(Duration, Option<Instant>)>,
}

impl std::fmt::Debug for TargetLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetLogin")
            .field("phase", &self.phase)
            .field("stage", &self.stage)
            .field("itt", &self.itt)
            .field("stat_sn", &self.stat_sn)
            .finish_non_exhaustive()
    }
}

/// A failure with its status.
struct Failure(LoginStatus);

impl From<LoginStatus> for Failure {
    fn from(s: LoginStatus) -> Self {
        Failure(s)
    }
}

impl TargetLogin {
    /// A login state machine awaiting the first Login Request.
    pub fn new(cfg: TargetLoginConfig) -> Self {
        let local = cfg.local();
        TargetLogin {
            local,
            phase: Phase::AwaitFirst,
            stage: Stage::SECURITY_NEGOTIATION,
            isid: [0; 6],
            itt: 0,
            cid: 0,
            tsih_req: 0,
            stat_sn: cfg.initial_stat_sn,
            exp_cmd_sn: 0,
            pdus: 0,
            acc: TextAccumulator::default(),
            out: None,
            params: SessionParams::default(),
            seen: 0,
            first_sequence_done: false,
            session_type: SessionType::Normal,
            target_info: None,
            authenticator: None,
            auth_selected: false,
            auth_done: false,
            declared_mrdsl: false,
            max_segment: LOGIN_MAX_SEGMENT,
            timer: None,
            cfg,
        }
    }

    /// The login must succeed within `limit` of `now` (the connection was
    /// accepted): see [`poll_timeout`](Self::poll_timeout).
    pub fn start_timer(&mut self, limit: Duration, now: Instant) {
        self.timer = Some((limit, deadline(now, limit)));
    }

    /// When the login times out, until it has succeeded.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer.and_then(|(_, at)| at)
    }

    /// `Err` once the login has run out of time at `now`: the connection
    /// closes without a response.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Timeout> {
        match self.timer {
            Some((limit, at)) if due(at, now) => Err(Timeout::Login(limit)),
            _ => Ok(()),
        }
    }

    /// The StatSN the next response on this connection carries (after
    /// [`LoginStep::Complete`]: the first full-feature StatSN).
    pub fn next_stat_sn(&self) -> u32 {
        self.stat_sn
    }

    /// ExpCmdSN as of the last request (login is immediate: the CmdSN of the
    /// Login Requests, which the first full-feature command carries).
    pub fn exp_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn
    }

    /// MaxCmdSN as announced in the last response.
    pub fn max_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn.wrapping_add(self.cfg.cmd_window.max(1)).wrapping_sub(1)
    }

    /// True once Complete or Fail was returned.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Feed one received PDU. Anything but a Login Request fails the login
    /// (Invalid During Login, 0x020b).
    pub fn on_pdu(&mut self, pdu: &Pdu, policy: &dyn LoginPolicy) -> LoginStep {
        if self.phase == Phase::Done {
            return self.fail(LoginStatus::INITIATOR_ERROR, bhs_itt(&pdu.bhs));
        }
        let Header::LoginRequest(req) = &pdu.header else {
            return self.fail(LoginStatus::INVALID_DURING_LOGIN, bhs_itt(&pdu.bhs));
        };
        self.pdus += 1;
        if self.pdus > MAX_LOGIN_PDUS {
            return self.fail(LoginStatus::INITIATOR_ERROR, req.itt);
        }
        match self.handle(req, &pdu.data, policy) {
            Ok(step) => step,
            Err(Failure(status)) => self.fail(status, req.itt),
        }
    }

    fn handle(&mut self, req: &LoginRequest, data: &[u8], policy: &dyn LoginPolicy) -> Result<LoginStep, Failure> {
        self.exp_cmd_sn = req.cmd_sn;
        if self.phase == Phase::AwaitFirst {
            self.isid = req.isid;
            self.itt = req.itt;
            self.cid = req.cid;
            self.tsih_req = req.tsih;
            // Version 0 is the only one (version_max >= 0 always holds).
            if req.version_min > ISCSI_VERSION {
                return Err(LoginStatus::UNSUPPORTED_VERSION.into());
            }
            if req.tsih != 0 {
                // Adding a connection to an existing session: we run one
                // connection per session.
                return Err(if policy.session_exists(req.isid, req.tsih) {
                    LoginStatus::CANT_INCLUDE_IN_SESSION
                } else {
                    LoginStatus::SESSION_DOES_NOT_EXIST
                }
                .into());
            }
            self.stage = req.csg;
            self.phase = Phase::Negotiating;
        } else if req.itt != self.itt || req.cid != self.cid || req.isid != self.isid || req.tsih != self.tsih_req {
            return Err(LoginStatus::INITIATOR_ERROR.into());
        }
        // Stage sanity.
        if req.csg != self.stage
            || !(req.csg == Stage::SECURITY_NEGOTIATION || req.csg == Stage::OPERATIONAL_NEGOTIATION)
        {
            return Err(LoginStatus::INITIATOR_ERROR.into());
        }
        if req.transit
            && (req.continue_
                || req.nsg.0 <= req.csg.0
                || !(req.nsg == Stage::OPERATIONAL_NEGOTIATION || req.nsg == Stage::FULL_FEATURE_PHASE))
        {
            return Err(LoginStatus::INITIATOR_ERROR.into());
        }

        // A response of ours still being sent in pieces: the initiator
        // answers each piece with an empty request.
        if self.out.is_some() {
            if !data.is_empty() || req.continue_ {
                return Err(LoginStatus::INITIATOR_ERROR.into());
            }
            return Ok(self.send_next_chunk());
        }

        self.acc.push(data).map_err(|_| LoginStatus::INITIATOR_ERROR)?;
        if req.continue_ {
            // More text follows: acknowledge with an empty response.
            let pdu = self.response(false, false, Stage(0), Bytes::new(), false);
            return Ok(LoginStep::Respond(pdu));
        }
        let text_bytes = self.acc.take();
        let (response_text, transit) = self.negotiate(req, &text_bytes, policy)?;
        self.out = Some(Outbound { data: Bytes::from(response_text), offset: 0, transit });
        Ok(self.send_next_chunk())
    }

    fn send_next_chunk(&mut self) -> LoginStep {
        let Some(mut out) = self.out.take() else {
            // Unreachable by construction; answer with an empty response.
            return LoginStep::Respond(self.response(false, false, Stage(0), Bytes::new(), false));
        };
        let (data, more) = chunk(&out.data, out.offset, self.max_segment.max(1));
        out.offset += data.len();
        if more {
            let pdu = self.response(false, true, Stage(0), data, false);
            self.out = Some(out);
            return LoginStep::Respond(pdu);
        }
        match out.transit {
            Some(nsg) if nsg == Stage::FULL_FEATURE_PHASE => {
                let response = self.response(true, false, nsg, data, true);
                self.phase = Phase::Done;
                self.timer = None;
                let mut params = self.params.clone();
                params.tsih = self.final_tsih();
                LoginStep::Complete { response, params }
            }
            Some(nsg) => {
                let pdu = self.response(true, false, nsg, data, false);
                self.stage = nsg;
                LoginStep::Respond(pdu)
            }
            None => LoginStep::Respond(self.response(false, false, Stage(0), data, false)),
        }
    }

    fn final_tsih(&self) -> u16 {
        self.cfg.tsih.max(1)
    }

    fn response(&mut self, transit: bool, cont: bool, nsg: Stage, data: Bytes, last: bool) -> Pdu {
        let stat_sn = self.stat_sn;
        self.stat_sn = self.stat_sn.wrapping_add(1);
        let h = LoginResponse {
            transit,
            continue_: cont,
            csg: self.stage,
            nsg: if transit { nsg } else { Stage(0) },
            version_max: ISCSI_VERSION,
            version_active: ISCSI_VERSION,
            isid: self.isid,
            tsih: if last { self.final_tsih() } else { self.tsih_req },
            itt: self.itt,
            stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            status: LoginStatus::SUCCESS,
        };
        Pdu::new(Header::LoginResponse(h), data)
    }

    fn fail(&mut self, status: LoginStatus, itt: u32) -> LoginStep {
        let stat_sn = self.stat_sn;
        self.stat_sn = self.stat_sn.wrapping_add(1);
        let stage = if self.stage == Stage::SECURITY_NEGOTIATION || self.stage == Stage::OPERATIONAL_NEGOTIATION {
            self.stage
        } else {
            Stage::SECURITY_NEGOTIATION
        };
        let h = LoginResponse {
            transit: false,
            continue_: false,
            csg: stage,
            nsg: Stage(0),
            version_max: ISCSI_VERSION,
            version_active: ISCSI_VERSION,
            isid: self.isid,
            tsih: self.tsih_req,
            itt,
            stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            status,
        };
        self.phase = Phase::Done;
        self.out = None;
        LoginStep::Fail { response: Pdu::new(Header::LoginResponse(h), Bytes::new()) }
    }

    fn seen(&self, id: KeyId) -> bool {
        self.seen & id.bit() != 0
    }
    fn mark(&mut self, id: KeyId) {
        self.seen |= id.bit();
    }

    /// Process one complete text sequence; returns the response text and
    /// the stage to transit to (if we agree to).
    fn negotiate(
        &mut self,
        req: &LoginRequest,
        data: &[u8],
        policy: &dyn LoginPolicy,
    ) -> Result<(Vec<u8>, Option<Stage>), Failure> {
        let pairs = text::parse(data).map_err(|_| LoginStatus::INITIATOR_ERROR)?;
        text::check_no_duplicates(&pairs).map_err(|_| LoginStatus::INITIATOR_ERROR)?;
        let first = !self.first_sequence_done;
        let mut w = TextWriter::new();

        if first {
            self.first_sequence_done = true;
            self.leading(&pairs, policy)?;
            if let Some(info) = &self.target_info {
                // Declarations for a normal session, in the first response
                // (open-iscsi accepts these in either stage).
                w.push_num("TargetPortalGroupTag", info.tpgt as u64);
                if let Some(alias) = &info.alias {
                    w.push("TargetAlias", alias);
                }
            }
        }
        let in_security = self.stage == Stage::SECURITY_NEGOTIATION;
        if !in_security && self.authenticator.is_some() && !self.auth_done {
            // Security stage skipped but authentication is required.
            return Err(LoginStatus::AUTHENTICATION_FAILURE.into());
        }

        // MaxBurstLength before FirstBurstLength, whatever the order on the
        // wire, so that FirstBurstLength is answered within it.
        let mut order: Vec<&Pair<'_>> = pairs.iter().collect();
        order.sort_by_key(|p| p.key != "MaxBurstLength");

        let mut auth_keys: Vec<Pair<'_>> = Vec::new();
        let mut auth_method: Option<&str> = None;
        let mut saw_mrdsl = false;
        let mut answers: Vec<(usize, String, String)> = Vec::new();

        for p in order {
            let idx = pairs.iter().position(|q| std::ptr::eq(q, p)).unwrap_or(0);
            if let Some(a) = &self.authenticator {
                if a.owns_key(p.key) {
                    if !in_security {
                        return Err(LoginStatus::INITIATOR_ERROR.into());
                    }
                    auth_keys.push(*p);
                    continue;
                }
            }
            let Some(def) = negotiate::lookup(p.key) else {
                if !text::is_special(p.value) {
                    answers.push((idx, p.key.to_string(), NOT_UNDERSTOOD.to_string()));
                }
                continue;
            };
            match self.one_key(def, p, in_security, first)? {
                KeyAction::Answer(v) => answers.push((idx, p.key.to_string(), v)),
                KeyAction::AuthMethod => auth_method = Some(p.value),
                KeyAction::Mrdsl => saw_mrdsl = true,
                KeyAction::None => {}
            }
        }
        answers.sort_by_key(|a| a.0);
        for (_, k, v) in &answers {
            w.push(k, v);
        }

        // Security: select the method, run the authenticator.
        if in_security {
            self.security(auth_method, &auth_keys, &mut w)?;
        }

        // Our own MaxRecvDataSegmentLength declaration, once, in the
        // operational stage (or when the initiator declared its own).
        if !self.declared_mrdsl && (!in_security || saw_mrdsl) {
            self.declared_mrdsl = true;
            self.params.target_max_recv_data_segment_length = self.local.max_recv_data_segment_length;
            w.push_num("MaxRecvDataSegmentLength", self.local.max_recv_data_segment_length as u64);
        }

        // Transit?
        let mut transit = None;
        if req.transit {
            let ready = !in_security || self.auth_done;
            if ready {
                if req.nsg == Stage::FULL_FEATURE_PHASE {
                    self.check_final()?;
                }
                transit = Some(req.nsg);
            }
        }
        Ok((w.into_bytes(), transit))
    }

    /// The leading (first) sequence: who is logging in to what.
    fn leading(&mut self, pairs: &[Pair<'_>], policy: &dyn LoginPolicy) -> Result<(), Failure> {
        let get = |k: &str| pairs.iter().find(|p| p.key == k).map(|p| p.value);
        let Some(initiator) = get("InitiatorName").filter(|v| !v.is_empty()) else {
            return Err(LoginStatus::MISSING_PARAMETER.into());
        };
        let session_type = match get("SessionType") {
            None | Some("Normal") => SessionType::Normal,
            Some("Discovery") => SessionType::Discovery,
            Some(_) => return Err(LoginStatus::SESSION_TYPE_NOT_SUPPORTED.into()),
        };
        self.session_type = session_type;
        self.params.session_type = session_type;
        self.params.initiator_name = initiator.to_string();
        self.params.initiator_alias = get("InitiatorAlias").map(str::to_string);
        self.params.isid = self.isid;
        self.params.tsih = self.final_tsih();
        match session_type {
            SessionType::Discovery => {
                if !policy.discovery_allowed(initiator) {
                    return Err(LoginStatus::AUTHORIZATION_FAILURE.into());
                }
                self.params.target_name = None;
            }
            SessionType::Normal => {
                let Some(target) = get("TargetName").filter(|v| !v.is_empty()) else {
                    return Err(LoginStatus::MISSING_PARAMETER.into());
                };
                let info = policy.check_target(target, initiator).map_err(Failure)?;
                self.params.target_name = Some(target.to_string());
                self.params.target_portal_group_tag = info.tpgt;
                self.target_info = Some(info);
            }
        }
        self.authenticator = policy.authenticator(initiator, self.params.target_name.as_deref());
        for id in [KeyId::INITIATOR_NAME, KeyId::SESSION_TYPE, KeyId::TARGET_NAME, KeyId::INITIATOR_ALIAS] {
            if get(negotiate::key_name(id)).is_some() {
                self.mark(id);
            }
        }
        Ok(())
    }

    fn one_key(&mut self, def: &KeyDef, p: &Pair<'_>, in_security: bool, first: bool) -> Result<KeyAction, Failure> {
        let special = text::is_special(p.value);
        match def.id {
            KeyId::INITIATOR_NAME | KeyId::TARGET_NAME | KeyId::SESSION_TYPE | KeyId::INITIATOR_ALIAS => {
                // Handled in `leading`; only allowed in the first sequence.
                return if first { Ok(KeyAction::None) } else { Err(LoginStatus::INITIATOR_ERROR.into()) };
            }
            _ => {}
        }
        if def.stage == KeyStage::Security && !in_security {
            return Err(LoginStatus::INITIATOR_ERROR.into());
        }
        if def.sender == Sender::Target || def.stage == KeyStage::FullFeature {
            return Ok(if special { KeyAction::None } else { KeyAction::Answer(REJECT.into()) });
        }
        if def.id == KeyId::AUTH_METHOD {
            if !in_security || self.auth_selected {
                return Err(LoginStatus::INITIATOR_ERROR.into());
            }
            return Ok(KeyAction::AuthMethod);
        }
        if def.kind == KeyKind::Auth {
            // CHAP keys without an authenticator configured.
            return Err(LoginStatus::INITIATOR_ERROR.into());
        }
        if special {
            return Ok(KeyAction::None);
        }
        // Negotiate or declare each key once per login (RFC 7143 §6.2).
        if self.seen(def.id) {
            return Err(LoginStatus::INITIATOR_ERROR.into());
        }
        self.mark(def.id);
        if def.id == KeyId::MAX_RECV_DATA_SEGMENT_LENGTH {
            let v =
                text::parse_number_in(p.value, def.min as u64, def.max as u64).ok_or(LoginStatus::INITIATOR_ERROR)?;
            self.params.initiator_max_recv_data_segment_length = v as u32;
            return Ok(KeyAction::Mrdsl);
        }
        match negotiate::respond(def, p.value, &self.local, self.session_type, &mut self.params) {
            Answer::Reply(v) => Ok(KeyAction::Answer(v)),
            Answer::Nothing => Ok(KeyAction::None),
        }
    }

    fn security(
        &mut self,
        auth_method: Option<&str>,
        auth_keys: &[Pair<'_>],
        w: &mut TextWriter,
    ) -> Result<(), Failure> {
        if let Some(list) = auth_method {
            self.auth_selected = true;
            match &self.authenticator {
                Some(a) => {
                    let m = a.method();
                    if !text::parse_list(list).any(|v| v == m) {
                        return Err(LoginStatus::AUTHENTICATION_FAILURE.into());
                    }
                    w.push("AuthMethod", m);
                }
                None => {
                    if !text::parse_list(list).any(|v| v == NONE) {
                        return Err(LoginStatus::AUTHENTICATION_FAILURE.into());
                    }
                    w.push("AuthMethod", NONE);
                    self.auth_done = true;
                }
            }
        }
        match self.authenticator.as_mut() {
            None => {
                // No AuthMethod offered and none required: tolerate.
                self.auth_done = true;
            }
            Some(a) => {
                if !self.auth_selected {
                    if !auth_keys.is_empty() {
                        return Err(LoginStatus::INITIATOR_ERROR.into());
                    }
                    return Ok(());
                }
                if self.auth_done {
                    if !auth_keys.is_empty() {
                        return Err(LoginStatus::INITIATOR_ERROR.into());
                    }
                    return Ok(());
                }
                let ctx = AuthContext {
                    initiator_name: &self.params.initiator_name,
                    target_name: self.params.target_name.as_deref(),
                    session_type: self.session_type,
                };
                let (keys, done) = match a.step(&ctx, auth_keys).map_err(Failure)? {
                    AuthProgress::Continue(k) => (k, false),
                    AuthProgress::Done(k) => (k, true),
                };
                for (k, v) in &keys {
                    w.push(k, v);
                }
                self.auth_done = done;
            }
        }
        Ok(())
    }

    /// Before entering the full feature phase: digests we require were
    /// negotiated.
    fn check_final(&self) -> Result<(), Failure> {
        if !self.params.header_digest && !self.local.header_digest.accepts_none() {
            return Err(LoginStatus::MISSING_PARAMETER.into());
        }
        if !self.params.data_digest && !self.local.data_digest.accepts_none() {
            return Err(LoginStatus::MISSING_PARAMETER.into());
        }
        Ok(())
    }
}

enum KeyAction {
    Answer(String),
    AuthMethod,
    Mrdsl,
    None,
}
