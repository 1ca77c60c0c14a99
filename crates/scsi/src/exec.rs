//! The command context: what a handler sees of the target, the addressed LU
//! and the request. The layer between LU state (below: `lu`, `registry`,
//! reservations, mode and unit-attention state) and the command families
//! (above: `sbc`, `spc`, `pr`, `copy`, ...); the target and its command table
//! sit on top and reach handlers only through [`Ctx`].

use crate::cdb::Template;
use crate::lu::LogicalUnit;
use crate::nexus::{CancelToken, Nexus};
use crate::registry::LuRegistry;
use crate::sense::{Asc, Sense};
use std::sync::Arc;

pub(crate) use crate::result::{CmdResult, Done, Fail};

/// One command as the transport delivers it.
///
/// Short data-out: when `data_out` holds fewer bytes than the CDB implies,
/// write-type commands process only the whole logical blocks that arrived and
/// refuse a trailing partial block with INVALID FIELD IN INFORMATION UNIT;
/// see [`crate::sbc`] for the rule and the libiscsi tests behind it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub nexus: &'a Nexus,
    /// Raw SAM LUN from the PDU.
    pub lun: [u8; 8],
    /// The CDB: 6..=260 bytes, possibly longer than the command needs.
    pub cdb: &'a [u8],
    /// Data-out actually received, at most `expected_len` bytes.
    pub data_out: &'a [u8],
    /// The transport's expected data transfer length.
    pub expected_len: u32,
    pub cancel: &'a CancelToken,
}

/// What a handler may ask of the target it runs in (implemented by
/// [`crate::target::ScsiTarget`]; handlers never see the target type, so the
/// command families do not depend on the dispatcher above them).
pub(crate) trait TargetView {
    /// The target name (SCSI name string, iSCSI IQN).
    fn name(&self) -> &str;
    /// The daemon-wide registry (copy CSCDs, copy records, tokens, metrics).
    fn registry(&self) -> &Arc<LuRegistry>;
    /// The LU at LUN `id` of this target.
    fn lu(&self, id: u16) -> Option<&Arc<LogicalUnit>>;
    /// The LUN numbers `initiator` may see (REPORT LUNS).
    fn lun_ids_for(&self, initiator: &str) -> Vec<u16>;
    /// The command table (REPORT SUPPORTED OPERATION CODES, VPD 8Fh).
    fn commands(&self) -> &'static [Command];
}

/// What a handler sees: the target, the addressed LU (absent only for the
/// LU-optional commands on a LUN that does not exist), the request, and the
/// CDB cut to the template's length.
pub(crate) struct Ctx<'a> {
    pub target: &'a dyn TargetView,
    pub lu: Option<&'a LogicalUnit>,
    pub req: &'a Request<'a>,
    pub cdb: &'a [u8],
    /// The LU's PREEMPT AND ABORT epoch when the command started: a long
    /// command stops at its next cancellation check once its I_T nexus has
    /// been preempted with abort since (see [`crate::reservation`]).
    pub pr_epoch: u64,
}

impl<'a> Ctx<'a> {
    /// The LU, or LOGICAL UNIT NOT SUPPORTED (the dispatcher already
    /// guarantees presence for LU-bound commands; this keeps handlers total).
    pub(crate) fn lu(&self) -> Result<&'a LogicalUnit, Fail> {
        self.lu.ok_or_else(|| Fail::Check(Sense::illegal(Asc::LOGICAL_UNIT_NOT_SUPPORTED)))
    }
}

/// A command handler.
pub(crate) type Handler = fn(&Ctx<'_>) -> CmdResult;

/// A command table entry.
pub(crate) type Command = Template<Handler>;

/// Whether `t` is a third-party copy command (83h/84h): served and listed
/// only by LUs whose copy manager is enabled (`third_party_copy`), so an LU
/// that does not advertise offload does not perform it either.
pub(crate) fn is_third_party_copy<H>(t: &Template<H>) -> bool {
    matches!(t.opcode.0, 0x83 | 0x84)
}

/// Whether `lu` (if any) serves `t`.
pub(crate) fn served_by<H>(t: &Template<H>, lu: Option<&LogicalUnit>) -> bool {
    !is_third_party_copy(t) || lu.is_none_or(|l| l.third_party_copy())
}
