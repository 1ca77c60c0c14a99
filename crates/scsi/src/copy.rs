//! Copy manager (EXTENDED COPY, POPULATE TOKEN / WRITE USING TOKEN, RECEIVE
//! COPY RESULTS): placeholder for the copy-offload issues.
//!
//! Today THIRD-PARTY COPY OUT (83h) and THIRD-PARTY COPY IN (84h) are not in
//! the command table, so they fail with INVALID COMMAND OPERATION CODE, the
//! INQUIRY 3PC bit is 0 and VPD 8Fh is not listed. When this module grows:
//! - its command templates join `commands::COMMANDS` (both opcodes
//!   carry service actions, so RSOC reports them with SERVACTV=1);
//! - `vpd_third_party_copy` returns the 8Fh body, Block Device ROD Token
//!   Limits descriptor first (Windows reads only the first descriptor);
//! - source/destination LUs are found by their VPD 83h NAA designator in the
//!   daemon's registry, filtered by the asking nexus's access rights;
//! - chunks take [`crate::range_lock::RangeLocks`] on both LUs, and tokens
//!   install a [`crate::lu::WriteHook`] for copy-on-write of protected ranges.

use crate::lu::LogicalUnit;

/// Body of the Third-party Copy VPD page (8Fh) for `lu`, or `None` while no
/// copy manager exists (the page is then neither listed nor served).
pub(crate) fn vpd_third_party_copy(lu: &LogicalUnit) -> Option<Vec<u8>> {
    let _ = lu;
    None
}
