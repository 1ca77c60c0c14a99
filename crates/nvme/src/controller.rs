//! The controller model: Fabrics Connect validation, the controller
//! properties (CAP, VS, CC, CSTS), and the admin command set (Identify, Get
//! Log Page, Get / Set Features, Asynchronous Event Request, Keep Alive,
//! Abort) for an NVM subsystem or a discovery subsystem. No I/O commands, no
//! sockets, no clock: the caller passes `Instant`s in.
//!
//! How the daemon uses it:
//!
//! 1. A queue's first capsule must be a Connect: [`ConnectRequest::parse`].
//!    - Admin queue (QID 0): look the subsystem up by
//!      [`ConnectRequest::subnqn`], [`ConnectRequest::check_admin`], allocate
//!      a CNTLID, [`Controller::new`], reply [`connect_accepted`].
//!    - I/O queue: look the controller up by [`ConnectRequest::cntlid`]
//!      (none: [`ConnectReject::unknown_controller`]), then
//!      [`Controller::accept_io_queue`] under the controller's mutex, reply
//!      [`connect_accepted`]. When the queue goes away:
//!      [`Controller::io_queue_closed`].
//!    - Any rejection: [`ConnectReject::cqe`].
//! 2. Every later admin capsule: [`Controller::admin`] → [`AdminOutcome`].
//!    After each call (and after [`Controller::namespaces_changed`] /
//!    [`Controller::update_subsystem`]) send [`Controller::take_events`]
//!    (completions of held Asynchronous Event Requests).
//! 3. I/O commands: [`Controller::check_io_ready`] first.
//! 4. A timer at [`Controller::keep_alive_deadline`]; when
//!    [`Controller::keep_alive_expired`], tear the association down.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::NamespaceInfo;
use crate::wire::command::{Cqe, FabricsType, Opcode, Sqe, Status, StatusType};
use crate::wire::connect::{
    data_offset, invalid_parameter_result, sqe_offset, ConnectCommand, ConnectData, ConnectDataError, Disconnect,
    Property, PropertyGet, PropertySet, CNTLID_DYNAMIC, CONNECT_DATA_LEN, DISCOVERY_NQN,
};
use crate::wire::features::{
    FeatureId, GetFeatures, HostBehavior, Select, SetFeatures, Timestamp, CAP_CHANGEABLE, CAP_NS_SPECIFIC,
    HOST_BEHAVIOR_LEN, TIMESTAMP_LEN,
};
use crate::wire::field::window;
use crate::wire::identify::{
    build_ns_descriptors, build_ns_list, oncs, Cns, ControllerType, IdentifyCommand, IdentifyController,
    IdentifyControllerNvm, IdentifyNamespace, LbaFormat, Nidt, NsDescriptor, CSI_NVM, IDENTIFY_LEN,
    NSATTR_WRITE_PROTECTED, NSFEAT_OPTPERF, NSFEAT_THIN,
};
use crate::wire::log::{
    build_changed_ns, build_discovery_log, AsyncEvent, DiscoveryEntry, ErrorLogEntry, FirmwareSlotLog, GetLogPage,
    LogId, SmartLog, CHANGED_NS_ENTRIES, DISCOVERY_RECORD_LEN, ERROR_ENTRY_LEN,
};

/// The version this controller reports (VS property and Identify VER):
/// NVMe 2.0.0 — the revision that defines Copy, OCFS and Host Behavior
/// Support CDFE. A Linux host only compares against 1.1 / 1.2.1 / 1.3 (NSSRC,
/// SUBNQN, namespace descriptors), all of which 2.0 passes.
pub const VERSION: u32 = 0x0002_0000;
/// Keep-alive timeout a discovery controller uses when the host's Connect
/// says 0 (as Linux nvmet does, and TP 8013 allows): 2 minutes.
pub const DISCOVERY_DEFAULT_KATO_MS: u32 = 120_000;
/// Largest data an admin command returns (bounds allocation whatever the
/// host's NUMD or SGL length).
pub const MAX_ADMIN_DATA: usize = 1 << 20;
/// Error information log entries kept (ELPE + 1).
pub const ERROR_LOG_ENTRIES: usize = 16;
/// Abort command limit reported (ACL + 1).
pub const ABORT_LIMIT: u8 = 4;
/// Largest admin queue SQSIZE (0's based) a Connect may ask for (ASQS is 12
/// bits).
pub const MAX_ADMIN_SQSIZE: u16 = 4095;
/// Keep alive granularity reported (KAS, 100 ms units): 1 s, as nvmet.
pub const KAS: u16 = 10;

/// Status codes used here that `wire::command` does not name.
impl Status {
    /// Fabrics command specific 85h: Invalid Queue Type (a Disconnect on the
    /// admin queue).
    pub const INVALID_QUEUE_TYPE: Self = Self { sct: StatusType::COMMAND_SPECIFIC, sc: 0x85, dnr: true };
}

/// Whether a subsystem serves NVM namespaces or the discovery log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubsystemKind {
    /// An NVM subsystem: namespaces, I/O queues.
    Nvm,
    /// A discovery subsystem: admin queue only, log page 70h.
    Discovery,
}

/// Limits of a subsystem's controllers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// I/O queues a controller may have (0 for discovery).
    pub max_io_queues: u16,
    /// Entries per I/O queue (CAP.MQES + 1, MAXCMD), 2..=65535.
    pub queue_depth: u16,
    /// Maximum data transfer size, bytes (reported as MDTS in 4 KiB pages,
    /// rounded down to a power of two, at least 8 KiB; 0 = no limit).
    pub mdts_bytes: u32,
    /// In-capsule data an I/O queue command capsule may carry, bytes
    /// (IOCCSZ = (this + 64) / 16).
    pub in_capsule_data: u32,
    /// Asynchronous Event Requests held at once (AERL + 1), 1..=16.
    pub max_aer: u8,
    /// NN: the highest NSID the subsystem may ever use (raised to the
    /// highest configured NSID if lower).
    pub max_namespaces: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_io_queues: 8,
            queue_depth: 128,
            mdts_bytes: 1 << 20,
            in_capsule_data: 8192,
            max_aer: 4,
            max_namespaces: 1024,
        }
    }
}

/// What the controller knows of its subsystem: plain data, built by the
/// daemon from its configuration and replaced (via
/// [`Controller::update_subsystem`]) when that changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubsystemInfo {
    /// NVM or discovery.
    pub kind: SubsystemKind,
    /// Subsystem NQN.
    pub nqn: String,
    /// Serial number (20 ASCII).
    pub serial: String,
    /// Model number (40 ASCII).
    pub model: String,
    /// Firmware revision (8 ASCII).
    pub firmware: String,
    /// Namespaces (NVM subsystems).
    pub namespaces: Vec<NamespaceInfo>,
    /// Discovery log entries (discovery subsystems).
    pub discovery_entries: Vec<DiscoveryEntry>,
    /// Discovery log generation counter: bump it when the entries change.
    pub discovery_genctr: u64,
    /// Limits.
    pub limits: Limits,
    /// Host NQNs allowed to connect; empty = any host.
    pub allowed_hosts: Vec<String>,
    /// A volatile write cache is present (VWC, feature 06h).
    pub volatile_write_cache: bool,
}

impl SubsystemInfo {
    /// An NVM subsystem with default limits.
    pub fn nvm(nqn: &str, serial: &str, model: &str, firmware: &str, namespaces: Vec<NamespaceInfo>) -> Self {
        Self {
            kind: SubsystemKind::Nvm,
            nqn: nqn.to_string(),
            serial: serial.to_string(),
            model: model.to_string(),
            firmware: firmware.to_string(),
            namespaces,
            discovery_entries: Vec::new(),
            discovery_genctr: 0,
            limits: Limits::default(),
            allowed_hosts: Vec::new(),
            volatile_write_cache: true,
        }
    }

    /// The discovery subsystem (well-known NQN, no I/O queues).
    pub fn discovery(serial: &str, model: &str, firmware: &str, entries: Vec<DiscoveryEntry>) -> Self {
        Self {
            kind: SubsystemKind::Discovery,
            nqn: DISCOVERY_NQN.to_string(),
            discovery_entries: entries,
            discovery_genctr: 1,
            limits: Limits { max_io_queues: 0, mdts_bytes: 0, ..Limits::default() },
            volatile_write_cache: false,
            ..Self::nvm(DISCOVERY_NQN, serial, model, firmware, Vec::new())
        }
    }

    /// Whether `hostnqn` may connect.
    pub fn host_allowed(&self, hostnqn: &str) -> bool {
        self.allowed_hosts.is_empty() || self.allowed_hosts.iter().any(|h| h == hostnqn)
    }

    /// The active namespace `nsid`.
    pub fn namespace(&self, nsid: u32) -> Option<&NamespaceInfo> {
        self.namespaces.iter().find(|n| n.nsid == nsid)
    }

    /// CAP.MQES: I/O queue entries, 0's based.
    pub fn mqes(&self) -> u16 {
        self.limits.queue_depth.max(2) - 1
    }

    /// NN: the highest valid NSID.
    pub fn nn(&self) -> u32 {
        let top = self.namespaces.iter().map(|n| n.nsid).max().unwrap_or(0);
        self.limits.max_namespaces.max(top).min(0xFFFF_FFFE)
    }

    /// AERL + 1, within 1..=16.
    fn max_aer(&self) -> u8 {
        self.limits.max_aer.clamp(1, 16)
    }

    /// The MDTS field for `mdts_bytes`.
    fn mdts(&self) -> u8 {
        let pages = self.limits.mdts_bytes / 4096;
        if self.limits.mdts_bytes == 0 {
            0
        } else {
            (31 - pages.max(2).leading_zeros()) as u8
        }
    }

    fn is_nvm(&self) -> bool {
        self.kind == SubsystemKind::Nvm
    }
}

/// A refused Connect: the status and DW0 (IPO / IATTR for Connect Invalid
/// Parameters and Connect Invalid Host, the CNTLID or 0 otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectReject {
    /// Status.
    pub status: Status,
    /// Completion DW0.
    pub result: u32,
}

impl ConnectReject {
    fn new(status: Status) -> Self {
        Self { status, result: 0 }
    }
    fn data(status: Status, offset: u16) -> Self {
        Self { status, result: invalid_parameter_result(true, offset) }
    }
    fn sqe(offset: u16) -> Self {
        Self { status: Status::CONNECT_INVALID_PARAMETERS, result: invalid_parameter_result(false, offset) }
    }
    /// No subsystem has the NQN of the connect data.
    pub fn unknown_subsystem() -> Self {
        Self::data(Status::CONNECT_INVALID_PARAMETERS, data_offset::SUBNQN)
    }
    /// No controller has the CNTLID of an I/O queue's connect data (or it
    /// belongs to another host): as nvmet, Invalid Parameters at CNTLID.
    pub fn unknown_controller() -> Self {
        Self::data(Status::CONNECT_INVALID_PARAMETERS, data_offset::CNTLID)
    }
    /// The completion for the Connect command `cid`.
    pub fn cqe(&self, cid: u16) -> Cqe {
        Cqe { result: u64::from(self.result), ..Cqe::new(cid, self.status) }
    }
}

/// The successful Connect completion: DW0 = CNTLID (no authentication
/// required).
pub fn connect_accepted(cid: u16, cntlid: u16) -> Cqe {
    Cqe { result: u64::from(cntlid), ..Cqe::new(cid, Status::SUCCESS) }
}

/// A parsed Connect command and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// Command identifier.
    pub cid: u16,
    /// Queue ID (0 = admin).
    pub qid: u16,
    /// Submission queue size, 0's based.
    pub sqsize: u16,
    /// Connect attributes.
    pub cattr: u8,
    /// Keep-alive timeout, ms (admin queue; 0 = disabled).
    pub kato_ms: u32,
    /// Host identifier.
    pub hostid: [u8; 16],
    /// Controller ID asked for (FFFFh on the admin queue).
    pub cntlid: u16,
    /// Subsystem NQN.
    pub subnqn: String,
    /// Host NQN.
    pub hostnqn: String,
}

impl ConnectRequest {
    /// Parses a Connect capsule: the SQE and its (in-capsule) data. Checks
    /// what needs no subsystem, in nvmet's order: a Connect at all (else
    /// Invalid Opcode), 1024 bytes of data (else Data SGL Length Invalid),
    /// RECFMT 0 (else Incompatible Format), NQNs as text, and on the admin
    /// queue CNTLID FFFFh (else Invalid Parameters at CNTLID).
    pub fn parse(sqe: &Sqe, data: &[u8]) -> Result<Self, ConnectReject> {
        if !sqe.is_fabrics() || sqe.fctype() != FabricsType::CONNECT {
            return Err(ConnectReject::new(Status::INVALID_OPCODE));
        }
        let c = ConnectCommand::from_sqe(sqe);
        if data.len() < CONNECT_DATA_LEN {
            return Err(ConnectReject::new(Status::DATA_SGL_LENGTH_INVALID));
        }
        if c.recfmt != 0 {
            return Err(ConnectReject::new(Status::CONNECT_INCOMPATIBLE_FORMAT));
        }
        let d = match ConnectData::parse(data) {
            Ok(d) => d,
            Err(ConnectDataError::Truncated(_)) => return Err(ConnectReject::new(Status::DATA_SGL_LENGTH_INVALID)),
            Err(ConnectDataError::BadSubnqn) => return Err(ConnectReject::unknown_subsystem()),
            Err(ConnectDataError::BadHostnqn) => {
                return Err(ConnectReject::data(Status::CONNECT_INVALID_HOST, data_offset::HOSTNQN))
            }
        };
        if c.qid == 0 && d.cntlid != CNTLID_DYNAMIC {
            return Err(ConnectReject::unknown_controller());
        }
        Ok(Self {
            cid: c.cid,
            qid: c.qid,
            sqsize: c.sqsize,
            cattr: c.cattr,
            kato_ms: c.kato,
            hostid: d.hostid,
            cntlid: d.cntlid,
            subnqn: d.subnqn,
            hostnqn: d.hostnqn,
        })
    }

    /// Whether this connects an admin queue.
    pub fn is_admin(&self) -> bool {
        self.qid == 0
    }

    /// Checks an admin queue Connect against the subsystem the daemon found
    /// for [`ConnectRequest::subnqn`] (`None`: none), in nvmet's order:
    /// subsystem (Invalid Parameters at SUBNQN), host allowed (Invalid Host
    /// at HOSTNQN), SQSIZE not 0 and at most [`MAX_ADMIN_SQSIZE`] (Invalid
    /// Parameters at SQSIZE in the SQE).
    pub fn check_admin(&self, sub: Option<&SubsystemInfo>) -> Result<(), ConnectReject> {
        if !self.is_admin() {
            return Err(ConnectReject::sqe(sqe_offset::QID));
        }
        let sub = sub.filter(|s| s.nqn == self.subnqn).ok_or_else(ConnectReject::unknown_subsystem)?;
        if !sub.host_allowed(&self.hostnqn) {
            return Err(ConnectReject::data(Status::CONNECT_INVALID_HOST, data_offset::HOSTNQN));
        }
        if self.sqsize == 0 || self.sqsize > MAX_ADMIN_SQSIZE {
            return Err(ConnectReject::sqe(sqe_offset::SQSIZE));
        }
        Ok(())
    }
}

/// The reply to a Disconnect on an I/O queue (the daemon then closes that
/// queue after sending it): success, or Incompatible Format for RECFMT ≠ 0.
pub fn disconnect_reply(sqe: &Sqe) -> Cqe {
    let d = Disconnect::from_sqe(sqe);
    Cqe::new(d.cid, if d.recfmt == 0 { Status::SUCCESS } else { Status::CONNECT_INCOMPATIBLE_FORMAT })
}

/// The reply to an Abort command the daemon carried out: DW0 bit 0 set when
/// the command was not aborted.
pub fn abort_reply(abort_cid: u16, aborted: bool) -> Cqe {
    Cqe { result: u64::from(!aborted), ..Cqe::new(abort_cid, Status::SUCCESS) }
}

/// What became of an admin command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminOutcome {
    /// Complete now with `cqe` (CID, status, DW0 set; the transport fills SQ
    /// head and SQ ID), after sending `data` to the host (controller → host
    /// commands; already cut to the host's buffer).
    Reply {
        /// The completion.
        cqe: Cqe,
        /// Data for the host.
        data: Option<Vec<u8>>,
    },
    /// An Asynchronous Event Request held until an event: its completion
    /// comes out of [`Controller::take_events`].
    Held,
    /// An Abort for the daemon to carry out on queue `sqid`, command `cid`;
    /// it then replies with [`abort_reply`]`(abort_cid, aborted)`.
    Abort {
        /// Submission queue of the command to abort.
        sqid: u16,
        /// Its command identifier.
        cid: u16,
        /// The Abort command's own identifier.
        abort_cid: u16,
    },
}

impl AdminOutcome {
    fn status(cid: u16, status: Status) -> Self {
        Self::Reply { cqe: Cqe::new(cid, status), data: None }
    }
    fn result(cid: u16, result: u64) -> Self {
        Self::Reply { cqe: Cqe { result, ..Cqe::new(cid, Status::SUCCESS) }, data: None }
    }
    fn data(cid: u16, data: Vec<u8>) -> Self {
        Self::Reply { cqe: Cqe::new(cid, Status::SUCCESS), data: Some(data) }
    }
}

// CC fields.
const CC_EN: u32 = 1;
fn cc_css(cc: u32) -> u32 {
    (cc >> 4) & 0x7
}
fn cc_mps(cc: u32) -> u32 {
    (cc >> 7) & 0xF
}
fn cc_ams(cc: u32) -> u32 {
    (cc >> 11) & 0x7
}
fn cc_shn(cc: u32) -> u32 {
    (cc >> 14) & 0x3
}
fn cc_iosqes(cc: u32) -> u32 {
    (cc >> 16) & 0xF
}
fn cc_iocqes(cc: u32) -> u32 {
    (cc >> 20) & 0xF
}
// CSTS fields.
const CSTS_RDY: u32 = 1;
const CSTS_CFS: u32 = 1 << 1;
const CSTS_SHST_MASK: u32 = 0x3 << 2;
const CSTS_SHST_COMPLETE: u32 = 0x2 << 2;

// Asynchronous Event Configuration bits.
const AEC_SMART_MASK: u32 = 0xFF;
const AEC_NS_ATTR: u32 = 1 << 8;
const AEC_DISCOVERY: u32 = 1 << 31;

// Masks of events sent and not yet cleared by reading their log page.
const MASK_NS: u8 = 1;
const MASK_DISC: u8 = 2;

// Temperature threshold defaults (kelvin): over 343 K (70 °C), under 0.
const TEMP_OVER_DEFAULT: u16 = 343;

/// Current values of the features kept per controller.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Features {
    power: u32,
    temp_over: u16,
    temp_under: u16,
    error_recovery: u32,
    write_cache: bool,
    async_events: u32,
    host_behavior: HostBehavior,
    /// Host's timestamp and when it was set.
    timestamp: Option<(u64, Instant)>,
}

impl Features {
    fn defaults(sub: &SubsystemInfo) -> Self {
        Self {
            power: 0,
            temp_over: TEMP_OVER_DEFAULT,
            temp_under: 0,
            error_recovery: 0,
            write_cache: sub.volatile_write_cache,
            async_events: if sub.is_nvm() { AEC_NS_ATTR } else { AEC_DISCOVERY },
            host_behavior: HostBehavior::default(),
            timestamp: None,
        }
    }
}

/// One controller: created by an admin queue Connect, shared by that
/// association's I/O queues (the daemon wraps it in a mutex).
#[derive(Debug)]
pub struct Controller {
    sub: Arc<SubsystemInfo>,
    cntlid: u16,
    hostnqn: String,
    hostid: [u8; 16],
    cc: u32,
    csts: u32,
    kato_ms: u32,
    last_keep_alive: Instant,
    created: Instant,
    /// I/O queues granted by Number of Queues (the configured maximum until
    /// the host asks).
    io_queues: u16,
    io_connected: BTreeSet<u16>,
    features: Features,
    held_aers: VecDeque<u16>,
    pending_events: VecDeque<AsyncEvent>,
    done: Vec<Cqe>,
    /// `None` = more than 1024 changed since last read.
    changed_ns: Option<Vec<u32>>,
    masked: u8,
    errors: VecDeque<ErrorLogEntry>,
    error_count: u64,
    health: SmartLog,
}

impl Controller {
    /// A new controller for an admin queue Connect that passed
    /// [`ConnectRequest::check_admin`], with the CNTLID the daemon allocated
    /// (1..=FFEFh). The keep-alive timer starts now.
    pub fn new(sub: Arc<SubsystemInfo>, cntlid: u16, req: &ConnectRequest, now: Instant) -> Self {
        let kato_ms = if req.kato_ms == 0 && !sub.is_nvm() { DISCOVERY_DEFAULT_KATO_MS } else { req.kato_ms };
        Self {
            features: Features::defaults(&sub),
            io_queues: sub.limits.max_io_queues,
            health: SmartLog { avail_spare: 100, spare_thresh: 10, ..SmartLog::default() },
            sub,
            cntlid,
            hostnqn: req.hostnqn.clone(),
            hostid: req.hostid,
            cc: 0,
            csts: 0,
            kato_ms,
            last_keep_alive: now,
            created: now,
            io_connected: BTreeSet::new(),
            held_aers: VecDeque::new(),
            pending_events: VecDeque::new(),
            done: Vec::new(),
            changed_ns: Some(Vec::new()),
            masked: 0,
            errors: VecDeque::new(),
            error_count: 0,
        }
    }

    /// Controller ID.
    pub fn cntlid(&self) -> u16 {
        self.cntlid
    }
    /// Host NQN of the association.
    pub fn hostnqn(&self) -> &str {
        &self.hostnqn
    }
    /// Host identifier of the association.
    pub fn hostid(&self) -> [u8; 16] {
        self.hostid
    }
    /// The subsystem as the controller currently sees it.
    pub fn subsystem(&self) -> &Arc<SubsystemInfo> {
        &self.sub
    }
    /// Number of I/O queues granted (Number of Queues feature).
    pub fn io_queues(&self) -> u16 {
        self.io_queues
    }
    /// Whether CC.EN = 1 and CSTS.RDY = 1.
    pub fn is_ready(&self) -> bool {
        self.cc & CC_EN != 0 && self.csts & CSTS_RDY != 0
    }
    /// Whether a shutdown completed (CSTS.SHST = 10b).
    pub fn is_shut_down(&self) -> bool {
        self.csts & CSTS_SHST_MASK == CSTS_SHST_COMPLETE
    }
    /// For I/O commands: Command Sequence Error unless the controller is
    /// enabled and ready.
    pub fn check_io_ready(&self) -> Result<(), Status> {
        if self.is_ready() {
            Ok(())
        } else {
            Err(Status::COMMAND_SEQUENCE_ERROR)
        }
    }
    /// Whether the host left the volatile write cache enabled (feature 06h).
    pub fn write_cache_enabled(&self) -> bool {
        self.sub.volatile_write_cache && self.features.write_cache
    }
    /// Copy descriptor formats the NVM layer may accept: bit n = format n.
    /// Format 0h is always on; 2h only once the host enabled it through Host
    /// Behavior Support CDFE (and a controller reset turns it off again).
    pub fn copy_formats_enabled(&self) -> u16 {
        let ocfs = ocfs(&self.sub);
        (ocfs & 0b0011) | (ocfs & self.features.host_behavior.cdfe & 0b1100)
    }
    /// Whether a cross-namespace Copy (format 2h or 3h) is enabled.
    pub fn cross_namespace_copy_enabled(&self) -> bool {
        self.copy_formats_enabled() & 0b1100 != 0
    }
    /// The SMART / health counters the daemon may update (data units, host
    /// commands, media errors).
    pub fn health_mut(&mut self) -> &mut SmartLog {
        &mut self.health
    }

    /// Checks an I/O queue Connect for this controller (the daemon found it
    /// by [`ConnectRequest::cntlid`]) and records the queue as connected.
    /// Order as nvmet: subsystem NQN, host NQN and host ID (else Invalid
    /// Parameters at CNTLID), QID within the granted queues (at QID in the
    /// SQE), SQSIZE not 0, QID not already connected (Command Sequence
    /// Error), SQSIZE ≤ MQES (at SQSIZE).
    pub fn accept_io_queue(&mut self, req: &ConnectRequest) -> Result<(), ConnectReject> {
        if req.subnqn != self.sub.nqn {
            return Err(ConnectReject::unknown_subsystem());
        }
        if req.cntlid != self.cntlid || req.hostnqn != self.hostnqn || req.hostid != self.hostid {
            return Err(ConnectReject::unknown_controller());
        }
        if req.qid == 0 || req.qid > self.io_queues {
            return Err(ConnectReject::sqe(sqe_offset::QID));
        }
        if req.sqsize == 0 {
            return Err(ConnectReject::sqe(sqe_offset::SQSIZE));
        }
        if self.io_connected.contains(&req.qid) {
            return Err(ConnectReject::new(Status::COMMAND_SEQUENCE_ERROR));
        }
        if req.sqsize > self.sub.mqes() {
            return Err(ConnectReject::sqe(sqe_offset::SQSIZE));
        }
        self.io_connected.insert(req.qid);
        Ok(())
    }

    /// An I/O queue went away (Disconnect or its connection closed).
    pub fn io_queue_closed(&mut self, qid: u16) {
        self.io_connected.remove(&qid);
    }

    /// CAP: MQES, CQR, TO = 7.5 s, CSS = NVM, MPSMIN = MPSMAX = 4 KiB.
    pub fn cap(&self) -> u64 {
        u64::from(self.sub.mqes()) | (1 << 16) | (15 << 24) | (1 << 37)
    }

    /// The keep-alive timeout in force, ms (0 = disabled).
    pub fn kato_ms(&self) -> u32 {
        self.kato_ms
    }
    /// When the association expires without a Keep Alive (`None`: KATO 0).
    pub fn keep_alive_deadline(&self) -> Option<Instant> {
        if self.kato_ms == 0 {
            return None;
        }
        self.last_keep_alive.checked_add(Duration::from_millis(u64::from(self.kato_ms)))
    }
    /// Whether the keep-alive timeout passed at `now`.
    pub fn keep_alive_expired(&self, now: Instant) -> bool {
        self.keep_alive_deadline().is_some_and(|d| now > d)
    }

    /// Completions of held Asynchronous Event Requests (events, or aborts
    /// on reset / Abort), to send on the admin queue.
    pub fn take_events(&mut self) -> Vec<Cqe> {
        std::mem::take(&mut self.done)
    }

    /// Namespaces `nsids` were added, removed or resized (the daemon updates
    /// the subsystem first with [`Controller::update_subsystem`], which calls
    /// this itself). Records them in the changed namespace list and raises a
    /// Namespace Attribute Changed notice when enabled and not masked.
    pub fn namespaces_changed(&mut self, nsids: &[u32]) {
        if !self.sub.is_nvm() || nsids.is_empty() {
            return;
        }
        for &id in nsids {
            if let Some(list) = &mut self.changed_ns {
                if list.contains(&id) {
                    continue;
                }
                if list.len() >= CHANGED_NS_ENTRIES {
                    self.changed_ns = None;
                } else {
                    list.push(id);
                }
            }
        }
        self.raise(AsyncEvent::NS_CHANGED, AEC_NS_ATTR, MASK_NS);
    }

    /// Replaces the subsystem data. For an NVM subsystem, namespaces added,
    /// removed or changed are reported as by
    /// [`Controller::namespaces_changed`]; for discovery, a new
    /// `discovery_genctr` raises a Discovery Log Page Change notice.
    pub fn update_subsystem(&mut self, sub: Arc<SubsystemInfo>) {
        let old = std::mem::replace(&mut self.sub, sub);
        if self.sub.is_nvm() {
            let mut changed: Vec<u32> = old
                .namespaces
                .iter()
                .filter(|o| self.sub.namespace(o.nsid) != Some(*o))
                .map(|o| o.nsid)
                .chain(self.sub.namespaces.iter().filter(|n| old.namespace(n.nsid).is_none()).map(|n| n.nsid))
                .collect();
            changed.sort_unstable();
            changed.dedup();
            self.namespaces_changed(&changed);
        } else if old.discovery_genctr != self.sub.discovery_genctr {
            self.raise(AsyncEvent::DISCOVERY_CHANGED, AEC_DISCOVERY, MASK_DISC);
        }
        self.io_queues = self.io_queues.min(self.sub.limits.max_io_queues);
    }

    fn raise(&mut self, ev: AsyncEvent, enable: u32, mask: u8) {
        if self.features.async_events & enable == 0 || self.masked & mask != 0 {
            return;
        }
        self.masked |= mask;
        match self.held_aers.pop_front() {
            Some(cid) => self.done.push(Cqe { result: u64::from(ev.to_dw0()), ..Cqe::new(cid, Status::SUCCESS) }),
            None => {
                if self.pending_events.len() < 8 {
                    self.pending_events.push_back(ev);
                }
            }
        }
    }

    /// Handles one admin queue command: `data` is what the host sent with it
    /// (Set Features data), `data_len` the size of the host's buffer for
    /// data to it (the SGL length; replies are cut to it).
    pub fn admin(&mut self, sqe: &Sqe, data: &[u8], data_len: usize, now: Instant) -> AdminOutcome {
        let out = self.dispatch(sqe, data, data_len.min(MAX_ADMIN_DATA), now);
        if let AdminOutcome::Reply { cqe, .. } = &out {
            if !cqe.status.is_success() {
                self.record_error(sqe, cqe.status);
            }
        }
        out
    }

    fn record_error(&mut self, sqe: &Sqe, status: Status) {
        self.error_count = self.error_count.wrapping_add(1);
        let nsid = if sqe.is_fabrics() { 0 } else { sqe.nsid() };
        let e = ErrorLogEntry {
            error_count: self.error_count,
            sqid: 0,
            cid: sqe.cid(),
            status_field: status.to_field(),
            param_error_location: 0xFFFF,
            nsid,
            trtype: 3,
            ..ErrorLogEntry::default()
        };
        if self.errors.len() >= ERROR_LOG_ENTRIES {
            self.errors.pop_back();
        }
        self.errors.push_front(e);
    }

    fn dispatch(&mut self, sqe: &Sqe, data: &[u8], data_len: usize, now: Instant) -> AdminOutcome {
        let cid = sqe.cid();
        if sqe.is_fabrics() {
            return self.fabrics(sqe, now);
        }
        if !self.is_ready() {
            return AdminOutcome::status(cid, Status::COMMAND_SEQUENCE_ERROR);
        }
        let op = sqe.opcode();
        let nvm = self.sub.is_nvm();
        let r = match op {
            Opcode::IDENTIFY => self.identify(sqe, data_len),
            Opcode::GET_LOG_PAGE => self.get_log_page(sqe, data_len, now),
            Opcode::GET_FEATURES => self.get_features(sqe, data_len, now),
            Opcode::SET_FEATURES => self.set_features(sqe, data, now),
            Opcode::ASYNC_EVENT_REQUEST => return self.async_event_request(cid),
            Opcode::KEEP_ALIVE => {
                if self.kato_ms == 0 {
                    Err(Status::KEEP_ALIVE_INVALID)
                } else {
                    self.last_keep_alive = now;
                    Ok(AdminOutcome::status(cid, Status::SUCCESS))
                }
            }
            Opcode::ABORT if nvm => return self.abort(sqe),
            _ => Err(Status::INVALID_OPCODE),
        };
        r.unwrap_or_else(|s| AdminOutcome::status(cid, s))
    }

    fn fabrics(&mut self, sqe: &Sqe, now: Instant) -> AdminOutcome {
        let cid = sqe.cid();
        let r = match sqe.fctype() {
            FabricsType::PROPERTY_GET => self.property_get(sqe).map(|v| AdminOutcome::result(cid, v)),
            FabricsType::PROPERTY_SET => {
                self.property_set(sqe, now).map(|()| AdminOutcome::status(cid, Status::SUCCESS))
            }
            FabricsType::DISCONNECT => Err(Status::INVALID_QUEUE_TYPE),
            _ => Err(Status::INVALID_OPCODE),
        };
        r.unwrap_or_else(|s| AdminOutcome::status(cid, s))
    }

    fn property_get(&self, sqe: &Sqe) -> Result<u64, Status> {
        if !PropertyGet::size_valid(sqe) {
            return Err(Status::INVALID_FIELD);
        }
        let p = PropertyGet::from_sqe(sqe);
        match (p.offset, p.eight) {
            (Property::CAP, true) => Ok(self.cap()),
            (Property::VS, false) => Ok(u64::from(VERSION)),
            (Property::CC, false) => Ok(u64::from(self.cc)),
            (Property::CSTS, false) => Ok(u64::from(self.csts)),
            _ => Err(Status::INVALID_FIELD),
        }
    }

    fn property_set(&mut self, sqe: &Sqe, now: Instant) -> Result<(), Status> {
        if !PropertyGet::size_valid(sqe) {
            return Err(Status::INVALID_FIELD);
        }
        let p = PropertySet::from_sqe(sqe);
        match (p.offset, p.eight) {
            (Property::CC, false) => {
                self.update_cc(p.value as u32, now);
                Ok(())
            }
            _ => Err(Status::INVALID_FIELD),
        }
    }

    /// CC written: EN 0→1 starts the controller (CSTS.RDY, or CSTS.CFS for
    /// an unsupported configuration, as nvmet); EN 1→0 resets it; SHN set
    /// shuts it down (reset, then CSTS.SHST = complete).
    fn update_cc(&mut self, new: u32, now: Instant) {
        let old = self.cc;
        self.cc = new;
        if new & CC_EN != 0 && old & CC_EN == 0 {
            let queue_sizes_ok = !self.sub.is_nvm() || (cc_iosqes(new) == 6 && cc_iocqes(new) == 4);
            self.csts = if queue_sizes_ok && cc_mps(new) == 0 && cc_ams(new) == 0 && cc_css(new) == 0 {
                CSTS_RDY
            } else {
                CSTS_CFS
            };
            self.last_keep_alive = now;
        }
        if new & CC_EN == 0 && old & CC_EN != 0 {
            self.reset();
        }
        if cc_shn(new) != 0 && cc_shn(old) == 0 {
            self.reset();
            self.csts |= CSTS_SHST_COMPLETE;
        }
        if cc_shn(new) == 0 && cc_shn(old) != 0 {
            self.csts &= !CSTS_SHST_MASK;
        }
    }

    /// Controller level reset: not ready, held AERs completed with Aborted
    /// SQ Deletion, queued events and masks dropped, features back to their
    /// defaults (the keep-alive timeout and granted queue count stay: they
    /// belong to the association).
    fn reset(&mut self) {
        self.csts &= !(CSTS_RDY | CSTS_CFS);
        for cid in self.held_aers.drain(..) {
            self.done.push(Cqe::new(cid, Status::ABORTED_SQ_DELETION));
        }
        self.pending_events.clear();
        self.masked = 0;
        self.features = Features::defaults(&self.sub);
    }

    fn async_event_request(&mut self, cid: u16) -> AdminOutcome {
        // Completions not yet taken by the daemon still count as outstanding:
        // this also bounds `done`.
        if self.held_aers.len() + self.done.len() >= usize::from(self.sub.max_aer()) {
            return AdminOutcome::status(cid, Status::AER_LIMIT_EXCEEDED);
        }
        if let Some(ev) = self.pending_events.pop_front() {
            return AdminOutcome::result(cid, u64::from(ev.to_dw0()));
        }
        self.held_aers.push_back(cid);
        AdminOutcome::Held
    }

    fn abort(&mut self, sqe: &Sqe) -> AdminOutcome {
        let c10 = sqe.cdw(10);
        let (sqid, acid) = ((c10 & 0xFFFF) as u16, (c10 >> 16) as u16);
        if sqid == 0 {
            if let Some(i) = self.held_aers.iter().position(|&c| c == acid) {
                self.held_aers.remove(i);
                self.done.push(Cqe::new(acid, Status::ABORT_REQUESTED));
                return AdminOutcome::Reply { cqe: abort_reply(sqe.cid(), true), data: None };
            }
        }
        AdminOutcome::Abort { sqid, cid: acid, abort_cid: sqe.cid() }
    }

    // ---- Identify ----

    fn identify(&self, sqe: &Sqe, data_len: usize) -> Result<AdminOutcome, Status> {
        let c = IdentifyCommand::from_sqe(sqe);
        let nvm = self.sub.is_nvm();
        let buf = match c.cns {
            Cns::CONTROLLER => self.identify_controller().build(),
            Cns::NAMESPACE if nvm => self.identify_namespace(c.nsid)?,
            Cns::ACTIVE_NS_LIST if nvm => {
                if c.nsid >= 0xFFFF_FFFE {
                    return Err(Status::INVALID_NAMESPACE);
                }
                build_ns_list(self.sub.namespaces.iter().map(|n| n.nsid), c.nsid)
            }
            Cns::NS_DESCRIPTORS if nvm => {
                let ns = self.sub.namespace(c.nsid).ok_or(Status::INVALID_NAMESPACE)?;
                build_ns_descriptors(&[
                    NsDescriptor { nidt: Nidt::NGUID, nid: ns.nguid.to_vec() },
                    NsDescriptor { nidt: Nidt::UUID, nid: ns.uuid.to_vec() },
                    NsDescriptor { nidt: Nidt::CSI, nid: vec![CSI_NVM] },
                ])
            }
            Cns::CSI_CONTROLLER if nvm && c.csi == CSI_NVM => IdentifyControllerNvm::default().build(),
            _ => return Err(Status::INVALID_FIELD),
        };
        Ok(AdminOutcome::data(c.cid, window(&buf, 0, IDENTIFY_LEN.min(data_len))))
    }

    /// The Identify Controller structure this controller reports.
    pub fn identify_controller(&self) -> IdentifyController {
        let s = &self.sub;
        let l = &s.limits;
        let common = IdentifyController {
            serial: s.serial.clone(),
            model: s.model.clone(),
            firmware: s.firmware.clone(),
            cntlid: self.cntlid,
            ver: VERSION,
            ctratt: 1, // 128-bit host identifier
            acl: ABORT_LIMIT - 1,
            aerl: s.max_aer() - 1,
            lpa: 1 << 2, // extended data for Get Log Page (NUMDU, LPOL/LPOU)
            elpe: (ERROR_LOG_ENTRIES - 1) as u8,
            kas: KAS,
            maxcmd: l.queue_depth.max(2),
            sgls: 1 | if l.in_capsule_data > 0 { 1 << 20 } else { 0 },
            subnqn: s.nqn.clone(),
            iorcsz: 1,
            msdbd: 1,
            ..IdentifyController::default()
        };
        match s.kind {
            SubsystemKind::Discovery => {
                IdentifyController { oaes: AEC_DISCOVERY, cntrltype: ControllerType::DISCOVERY, ..common }
            }
            SubsystemKind::Nvm => IdentifyController {
                rab: 6,
                mdts: s.mdts(),
                oaes: AEC_NS_ATTR,
                cntrltype: ControllerType::IO,
                frmw: 0x03, // one slot, read-only
                sqes: 0x66,
                cqes: 0x44,
                nn: s.nn(),
                oncs: oncs::COMPARE | oncs::DSM | oncs::WRITE_ZEROES | oncs::TIMESTAMP | oncs::VERIFY | oncs::COPY,
                vwc: if s.volatile_write_cache { 0x01 | (0b10 << 1) } else { 0 },
                ocfs: ocfs(s),
                ioccsz: (l.in_capsule_data.min(u32::MAX - 64) + 64) / 16,
                ofcs: 1, // Disconnect on I/O queues: see `disconnect_reply`
                ..common
            },
        }
    }

    fn identify_namespace(&self, nsid: u32) -> Result<Vec<u8>, Status> {
        if nsid == 0 || nsid == u32::MAX || nsid > self.sub.nn() {
            return Err(Status::INVALID_NAMESPACE);
        }
        Ok(match self.sub.namespace(nsid) {
            Some(ns) => identify_namespace(ns).build(),
            None => vec![0u8; IDENTIFY_LEN],
        })
    }

    // ---- Get Log Page ----

    fn get_log_page(&mut self, sqe: &Sqe, data_len: usize, now: Instant) -> Result<AdminOutcome, Status> {
        let g = GetLogPage::from_sqe(sqe);
        if g.offset % 4 != 0 {
            return Err(Status::INVALID_FIELD);
        }
        let nvm = self.sub.is_nvm();
        let page = match g.lid {
            LogId::ERROR => {
                let mut b = vec![0u8; ERROR_LOG_ENTRIES * ERROR_ENTRY_LEN];
                for (i, e) in self.errors.iter().enumerate() {
                    e.write(&mut b, i * ERROR_ENTRY_LEN);
                }
                b
            }
            LogId::SMART if nvm => {
                let hours = now.saturating_duration_since(self.created).as_secs() / 3600;
                SmartLog {
                    power_on_hours: self.health.power_on_hours.max(u128::from(hours)),
                    num_err_log_entries: u128::from(self.error_count),
                    ..self.health
                }
                .build()
            }
            LogId::FIRMWARE_SLOT if nvm => {
                let mut f = FirmwareSlotLog { afi: 1, ..FirmwareSlotLog::default() };
                f.frs[0] = self.sub.firmware.clone();
                f.build()
            }
            LogId::CHANGED_NS if nvm => {
                let b = build_changed_ns(self.changed_ns.as_deref());
                if !g.rae {
                    self.changed_ns = Some(Vec::new());
                    self.masked &= !MASK_NS;
                }
                b
            }
            LogId::DISCOVERY if !nvm => {
                let max = MAX_ADMIN_DATA / DISCOVERY_RECORD_LEN - 1;
                let entries = self.sub.discovery_entries.get(..max).unwrap_or(&self.sub.discovery_entries);
                if !g.rae {
                    self.masked &= !MASK_DISC;
                }
                build_discovery_log(self.sub.discovery_genctr, entries)
            }
            _ => return Err(Status::INVALID_LOG_PAGE),
        };
        let offset = usize::try_from(g.offset).map_err(|_| Status::INVALID_FIELD)?;
        if offset > page.len() {
            return Err(Status::INVALID_FIELD);
        }
        let want = usize::try_from(g.byte_len()).unwrap_or(usize::MAX).min(data_len);
        Ok(AdminOutcome::data(g.cid, window(&page, offset, want)))
    }

    // ---- Features ----

    /// Whether this controller knows feature `fid`, and if the host may
    /// change it.
    fn feature_known(&self, fid: FeatureId) -> Option<bool> {
        let nvm = self.sub.is_nvm();
        match fid {
            FeatureId::KEEP_ALIVE_TIMER | FeatureId::ASYNC_EVENT_CONFIG => Some(true),
            // Queues are served independently: there is no arbitration to tune.
            FeatureId::ARBITRATION if nvm => Some(false),
            FeatureId::POWER_MANAGEMENT
            | FeatureId::TEMPERATURE_THRESHOLD
            | FeatureId::ERROR_RECOVERY
            | FeatureId::NUMBER_OF_QUEUES
            | FeatureId::TIMESTAMP
            | FeatureId::HOST_BEHAVIOR
                if nvm =>
            {
                Some(true)
            }
            FeatureId::VOLATILE_WRITE_CACHE if nvm && self.sub.volatile_write_cache => Some(true),
            _ => None,
        }
    }

    fn check_feature_nsid(&self, nsid: u32) -> Result<(), Status> {
        if nsid == 0 || nsid == u32::MAX || self.sub.namespace(nsid).is_some() {
            Ok(())
        } else {
            Err(Status::INVALID_NAMESPACE)
        }
    }

    fn get_features(&self, sqe: &Sqe, data_len: usize, now: Instant) -> Result<AdminOutcome, Status> {
        let g = GetFeatures::from_sqe(sqe);
        let changeable = self.feature_known(g.fid).ok_or(Status::INVALID_FIELD)?;
        self.check_feature_nsid(g.nsid)?;
        let cid = g.cid;
        if g.sel == Select::SUPPORTED {
            let ns = if g.fid == FeatureId::ERROR_RECOVERY { CAP_NS_SPECIFIC } else { 0 };
            return Ok(AdminOutcome::result(cid, u64::from(if changeable { CAP_CHANGEABLE } else { 0 } | ns)));
        }
        if g.sel.0 > Select::SUPPORTED.0 {
            return Err(Status::INVALID_FIELD);
        }
        // Nothing is saveable: the saved value is the default.
        let dflt;
        let f = if g.sel == Select::CURRENT {
            &self.features
        } else {
            dflt = Features::defaults(&self.sub);
            &dflt
        };
        let dw0: u32 = match g.fid {
            FeatureId::ARBITRATION => 0,
            FeatureId::POWER_MANAGEMENT => f.power,
            FeatureId::TEMPERATURE_THRESHOLD => {
                let (tmpsel, thsel) = ((g.cdw11 >> 16) & 0xF, (g.cdw11 >> 20) & 0x3);
                match (tmpsel, thsel) {
                    (0, 0) => u32::from(f.temp_over),
                    (0, 1) => u32::from(f.temp_under),
                    _ => return Err(Status::INVALID_FIELD),
                }
            }
            FeatureId::ERROR_RECOVERY => f.error_recovery,
            FeatureId::VOLATILE_WRITE_CACHE => u32::from(f.write_cache),
            FeatureId::NUMBER_OF_QUEUES => {
                let n = if g.sel == Select::CURRENT { self.io_queues } else { self.sub.limits.max_io_queues };
                let n = u32::from(n.max(1) - 1);
                n | (n << 16)
            }
            FeatureId::ASYNC_EVENT_CONFIG => f.async_events,
            FeatureId::KEEP_ALIVE_TIMER => self.kato_ms,
            FeatureId::TIMESTAMP => {
                let t = match f.timestamp {
                    Some((ms, at)) => Timestamp {
                        millis: ms.saturating_add(now.saturating_duration_since(at).as_millis() as u64),
                        attributes: Timestamp::ORIGIN_SET_FEATURES,
                    },
                    None => Timestamp {
                        millis: now.saturating_duration_since(self.created).as_millis() as u64,
                        attributes: 0,
                    },
                };
                return Ok(AdminOutcome::data(cid, window(&t.build(), 0, TIMESTAMP_LEN.min(data_len))));
            }
            FeatureId::HOST_BEHAVIOR => {
                let b = f.host_behavior.build();
                return Ok(AdminOutcome::data(cid, window(&b, 0, HOST_BEHAVIOR_LEN.min(data_len))));
            }
            _ => return Err(Status::INVALID_FIELD),
        };
        Ok(AdminOutcome::result(cid, u64::from(dw0)))
    }

    fn set_features(&mut self, sqe: &Sqe, data: &[u8], now: Instant) -> Result<AdminOutcome, Status> {
        let s = SetFeatures::from_sqe(sqe);
        let changeable = self.feature_known(s.fid).ok_or(Status::INVALID_FIELD)?;
        self.check_feature_nsid(s.nsid)?;
        if s.save {
            return Err(Status::FEATURE_NOT_SAVEABLE);
        }
        if !changeable {
            return Err(Status::FEATURE_NOT_CHANGEABLE);
        }
        let v = s.cdw11;
        let mut dw0 = 0u32;
        match s.fid {
            FeatureId::POWER_MANAGEMENT => {
                // NPSS = 0: power state 0 only.
                if v & 0x1F != 0 {
                    return Err(Status::INVALID_FIELD);
                }
                self.features.power = v & 0xFF;
            }
            FeatureId::TEMPERATURE_THRESHOLD => {
                let (th, tmpsel, thsel) = ((v & 0xFFFF) as u16, (v >> 16) & 0xF, (v >> 20) & 0x3);
                if tmpsel != 0 && tmpsel != 0xF {
                    return Err(Status::INVALID_FIELD);
                }
                match thsel {
                    0 => self.features.temp_over = th,
                    1 => self.features.temp_under = th,
                    _ => return Err(Status::INVALID_FIELD),
                }
            }
            FeatureId::ERROR_RECOVERY => {
                // DULBE needs NSFEAT bit 2, which no namespace reports.
                if v & (1 << 16) != 0 {
                    return Err(Status::INVALID_FIELD);
                }
                self.features.error_recovery = v & 0xFFFF;
            }
            FeatureId::VOLATILE_WRITE_CACHE => self.features.write_cache = v & 1 != 0,
            FeatureId::NUMBER_OF_QUEUES => {
                let (nsqr, ncqr) = (v & 0xFFFF, v >> 16);
                if nsqr == 0xFFFF || ncqr == 0xFFFF {
                    return Err(Status::INVALID_FIELD);
                }
                if !self.io_connected.is_empty() {
                    return Err(Status::COMMAND_SEQUENCE_ERROR);
                }
                let want = nsqr.max(ncqr) + 1;
                let n = want.min(u32::from(self.sub.limits.max_io_queues)) as u16;
                self.io_queues = n;
                let z = u32::from(n.max(1) - 1);
                dw0 = z | (z << 16);
            }
            FeatureId::ASYNC_EVENT_CONFIG => {
                let allowed = if self.sub.is_nvm() { AEC_SMART_MASK | AEC_NS_ATTR } else { AEC_DISCOVERY };
                if v & !allowed != 0 {
                    return Err(Status::INVALID_FIELD);
                }
                self.features.async_events = v;
                dw0 = v;
            }
            FeatureId::KEEP_ALIVE_TIMER => {
                self.kato_ms = if v == 0 && !self.sub.is_nvm() { DISCOVERY_DEFAULT_KATO_MS } else { v };
                self.last_keep_alive = now;
            }
            FeatureId::TIMESTAMP => {
                let t = Timestamp::parse(data).map_err(|_| Status::DATA_SGL_LENGTH_INVALID)?;
                self.features.timestamp = Some((t.millis, now));
            }
            FeatureId::HOST_BEHAVIOR => {
                let h = HostBehavior::parse(data).map_err(|_| Status::DATA_SGL_LENGTH_INVALID)?;
                let cdfe_allowed = ocfs(&self.sub) & 0b1100;
                if h.acre > 1 || h.etdas > 1 || h.lbafee != 0 || h.hdisns != 0 || h.cdfe & !cdfe_allowed != 0 {
                    return Err(Status::INVALID_FIELD);
                }
                self.features.host_behavior = h;
            }
            _ => return Err(Status::INVALID_FIELD),
        }
        Ok(AdminOutcome::result(s.cid, u64::from(dw0)))
    }
}

/// OCFS: Copy descriptor formats 0h (single namespace) and 2h (cross
/// namespace) for an NVM subsystem.
fn ocfs(sub: &SubsystemInfo) -> u16 {
    if sub.is_nvm() {
        0b0101
    } else {
        0
    }
}

/// The Identify Namespace structure reported for `ns`: one LBA format of
/// its block size without metadata; NSZE = NCAP = NUSE; thin provisioning,
/// DLFEAT (reads of deallocated blocks return zeros, Write Zeroes may
/// deallocate) when `deallocate`; NPWG / NPWA / NPDG / NPDA = 4 KiB and NOWS
/// = 128 KiB (in blocks); the Copy limits; NGUID; EUI-64 zero; write
/// protected when read-only.
pub fn identify_namespace(ns: &NamespaceInfo) -> IdentifyNamespace {
    let bs = ns.block_size.max(1);
    let lbads = if bs.is_power_of_two() { bs.trailing_zeros() as u8 } else { 9 };
    let blocks_in = |bytes: u32| -> u16 { u16::try_from((bytes / bs).max(1) - 1).unwrap_or(u16::MAX) };
    let gran = blocks_in(4096);
    IdentifyNamespace {
        nsze: ns.blocks,
        ncap: ns.blocks,
        nuse: ns.blocks,
        nsfeat: NSFEAT_OPTPERF | if ns.deallocate { NSFEAT_THIN } else { 0 },
        flbas: 0,
        nmic: 0,
        dlfeat: if ns.deallocate { 0x09 } else { 0 },
        npwg: gran,
        npwa: gran,
        npdg: gran,
        npda: gran,
        nows: blocks_in(128 * 1024),
        mssrl: ns.copy.mssrl,
        mcl: ns.copy.mcl,
        msrc: (ns.copy.max_ranges.clamp(1, 256) - 1) as u8,
        nsattr: if ns.read_only { NSATTR_WRITE_PROTECTED } else { 0 },
        nguid: ns.nguid,
        eui64: [0; 8],
        lbaf: vec![LbaFormat { ms: 0, lbads, rp: 0 }],
    }
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
