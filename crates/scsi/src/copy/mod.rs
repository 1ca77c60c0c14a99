//! The SCSI copy commands: EXTENDED COPY (LID1), RECEIVE COPY RESULTS and
//! token copy (POPULATE TOKEN / WRITE USING TOKEN / RECEIVE ROD TOKEN
//! INFORMATION / REPORT ALL ROD TOKENS / COPY OPERATION ABORT). They are
//! parsers and encoders around the copy engine ([`oxcopy_copy`]): each parses
//! its parameter list, plans byte runs, builds an engine source and calls
//! [`oxcopy_copy::execute`]; the engine's errors become sense in one table
//! ([`edge`]).
//!
//! | module | role |
//! |---|---|
//! | `codec` | a bounded big-endian `Reader` with `sub(len)` over untrusted bytes (rustls `codec.rs` style) |
//! | [`params`] | the LID1 parameter list → typed header, CSCDs and segments, in the validation order of the digest §2.3 |
//! | [`edge`] | the engine's errors as sense (one table), and its records keyed by I_T nexus with SCSI status and sense ([`CopyManager`], [`CopyOperation`]) |
//! | `xcopy` | the EXTENDED COPY command: parse, plan every segment (resolving CSCDs through the [`LuRegistry`](crate::registry::LuRegistry) with the nexus's access rights), execute |
//! | `results` | RECEIVE COPY RESULTS service actions 00h, 03h, 04h, 05h |
//! | `vpd` | the Third-party Copy VPD page (8Fh) |
//! | [`rod_params`] | POPULATE TOKEN / WRITE USING TOKEN parameter lists → typed values, in the validation order of the digest §3 |
//! | [`rod_plan`] | WRITE USING TOKEN planning: ROD + OFFSET INTO ROD + scatter list → byte runs (block sizes, underrun 0Dh/04h) |
//! | [`rod_results`] | RECEIVE ROD TOKEN INFORMATION body (Windows rules) and the 8Fh descriptors 0000h/0106h/0108h |
//! | `odx` | the token copy commands: POPULATE TOKEN, WRITE USING TOKEN, COPY OPERATION ABORT, RECEIVE ROD TOKEN INFORMATION, REPORT ALL ROD TOKENS |
//!
//! Every advertised number is a constant in [`limits`], read by the VPD
//! page, OPERATING PARAMETERS and the validation alike.
//!
//! Token copy: POPULATE TOKEN and WRITE USING TOKEN are [`CopyOperation`]s
//! begun with their own service action (same list-identifier namespace, so
//! RECEIVE COPY STATUS (LID4) and RRTI find them); background (IMMED) runs
//! keep the `Arc` and update its progress; COPY OPERATION ABORT finds them
//! and cancels their token. The tokens themselves live in the registry's
//! [`RodManager`] (in the engine crate).

mod codec;
pub mod edge;
pub mod limits;
mod odx;
pub mod params;
pub mod records;
mod results;
pub mod rod_params;
pub mod rod_plan;
pub mod rod_results;
pub mod vpd;
mod xcopy;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub use edge::{token_asc, token_sense, SenseRefusal};
pub use odx::CopyOutServiceAction;
pub use oxcopy_copy::{Consume, OpStatus, RodConfig, RodInfo, RodManager, Spawner, TokenScope};
pub use records::{Completion, CopyManager, CopyOperation, OpSnapshot, ScsiOutcome};

use crate::exec::{CmdResult, Command, Ctx};
use crate::lu::LogicalUnit;

/// Service action of EXTENDED COPY (LID1), as RECEIVE COPY STATUS (LID4)
/// reports it in RESPONSE TO SERVICE ACTION.
pub const SA_EXTENDED_COPY_LID1: u8 = 0x00;

/// Service actions of THIRD-PARTY COPY IN (84h) we implement.
pub struct CopyInServiceAction;

impl CopyInServiceAction {
    pub const COPY_STATUS: u8 = 0x00;
    pub const OPERATING_PARAMETERS: u8 = 0x03;
    pub const FAILED_SEGMENT_DETAILS: u8 = 0x04;
    pub const COPY_STATUS_LID4: u8 = 0x05;
    pub const RECEIVE_ROD_TOKEN_INFORMATION: u8 = 0x07;
    pub const REPORT_ALL_ROD_TOKENS: u8 = 0x08;
}

/// Body of the Third-party Copy VPD page (8Fh) for `lu`, or `None` when
/// the LU does not advertise a copy manager.
pub(crate) fn vpd_third_party_copy(lu: &LogicalUnit, rod: &RodManager, table: &[Command]) -> Option<Vec<u8>> {
    lu.third_party_copy().then(|| vpd::page_body(lu, rod, table))
}

// Command-table entry points.

/// 83h/00h EXTENDED COPY (LID1).
pub(crate) fn extended_copy(ctx: &Ctx<'_>) -> CmdResult {
    xcopy::extended_copy(ctx)
}

/// 84h/00h RECEIVE COPY STATUS (LID1).
pub(crate) fn receive_copy_status(ctx: &Ctx<'_>) -> CmdResult {
    results::copy_status(ctx)
}

/// 84h/03h RECEIVE COPY OPERATING PARAMETERS.
pub(crate) fn receive_copy_operating_parameters(ctx: &Ctx<'_>) -> CmdResult {
    results::operating_parameters(ctx)
}

/// 84h/04h RECEIVE COPY FAILURE DETAILS (LID1).
pub(crate) fn receive_copy_failure_details(ctx: &Ctx<'_>) -> CmdResult {
    results::failure_details(ctx)
}

/// 84h/05h RECEIVE COPY STATUS (LID4).
pub(crate) fn receive_copy_status_lid4(ctx: &Ctx<'_>) -> CmdResult {
    results::copy_status_lid4(ctx)
}

/// 83h/10h POPULATE TOKEN.
pub(crate) fn populate_token(ctx: &Ctx<'_>) -> CmdResult {
    odx::populate_token(ctx)
}

/// 83h/11h WRITE USING TOKEN.
pub(crate) fn write_using_token(ctx: &Ctx<'_>) -> CmdResult {
    odx::write_using_token(ctx)
}

/// 83h/1Ch COPY OPERATION ABORT.
pub(crate) fn copy_operation_abort(ctx: &Ctx<'_>) -> CmdResult {
    odx::copy_operation_abort(ctx)
}

/// 84h/07h RECEIVE ROD TOKEN INFORMATION.
pub(crate) fn receive_rod_token_information(ctx: &Ctx<'_>) -> CmdResult {
    odx::receive_rod_token_information(ctx)
}

/// 84h/08h REPORT ALL ROD TOKENS.
pub(crate) fn report_all_rod_tokens(ctx: &Ctx<'_>) -> CmdResult {
    odx::report_all_rod_tokens(ctx)
}
