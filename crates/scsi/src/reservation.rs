//! Persistent reservations (SPC-4 §5.13): the check every command passes
//! before its handler runs. Today nothing is ever reserved, so every command
//! is allowed; the PERSISTENT RESERVE IN/OUT issue keeps per-LU registration
//! state next to the unit attentions and fills this in (conflicts depend on
//! the nexus, the reservation type and the command's [`Template::writes`]).

use crate::cdb::Template;
use crate::exec::Fail;
use crate::lu::LogicalUnit;
use crate::nexus::Nexus;

/// `Err(Fail::Status(RESERVATION_CONFLICT))` when `nexus` may not run the
/// command on `lu`.
pub(crate) fn check(lu: &LogicalUnit, nexus: &Nexus, template: &Template) -> Result<(), Fail> {
    let _ = (lu, nexus, template.writes);
    Ok(())
}
