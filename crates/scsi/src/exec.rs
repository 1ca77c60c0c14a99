//! The execution context handed to command handlers and their outcome type.

use crate::lu::LogicalUnit;
use crate::result::ScsiStatus;
use crate::sense::{Asc, Sense};
use crate::target::{Request, ScsiTarget};

/// What a handler sees: the target, the addressed LU (absent only for the
/// LU-optional commands on a LUN that does not exist), the request, and the
/// CDB cut to the template's length.
pub(crate) struct Ctx<'a> {
    pub target: &'a ScsiTarget,
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

/// A successful outcome: GOOD or CONDITION MET, with data-in already clipped
/// to the CDB's allocation length.
#[derive(Debug)]
pub(crate) struct Done {
    pub status: ScsiStatus,
    pub data_in: Vec<u8>,
}

impl Done {
    pub(crate) fn good() -> Self {
        Done { status: ScsiStatus::GOOD, data_in: Vec::new() }
    }
    pub(crate) fn data(mut data: Vec<u8>, alloc_len: u64) -> Self {
        data.truncate(usize::try_from(alloc_len).unwrap_or(usize::MAX));
        Done { status: ScsiStatus::GOOD, data_in: data }
    }
}

/// A failed outcome: CHECK CONDITION with sense, or a bare status
/// (RESERVATION CONFLICT, TASK ABORTED, BUSY).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fail {
    Check(Sense),
    Status(ScsiStatus),
}

impl From<Sense> for Fail {
    fn from(s: Sense) -> Self {
        Fail::Check(s)
    }
}

pub(crate) type CmdResult = Result<Done, Fail>;

/// A command handler.
pub(crate) type Handler = fn(&Ctx<'_>) -> CmdResult;
