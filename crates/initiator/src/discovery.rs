//! SendTargets discovery results (parsing lives in `oxcopy_iscsi::discovery`).

use crate::error::{InitiatorError, Result};

pub use oxcopy_iscsi::discovery::DiscoveredTarget;

/// Parse SendTargets text data (`TargetName=...\0TargetAddress=...\0`).
pub fn parse_send_targets(data: &[u8]) -> Result<Vec<DiscoveredTarget>> {
    oxcopy_iscsi::discovery::parse_send_targets(data)
        .map_err(|e| InitiatorError::Protocol(format!("SendTargets response: {e}")))
}
