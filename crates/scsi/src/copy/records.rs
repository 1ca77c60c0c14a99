//! The SCSI flavour of the engine's copy records: keyed by I_T nexus,
//! holding the SCSI status and sense each command ended with.

use crate::nexus::Nexus;
use crate::result::ScsiStatus;

/// What a copy record keeps of how its command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiOutcome {
    /// The status the originating command got (GOOD while running).
    pub scsi_status: ScsiStatus,
    /// Its sense data, encoded as the command returned it.
    pub sense: Option<Vec<u8>>,
}

impl Default for ScsiOutcome {
    fn default() -> Self {
        ScsiOutcome { scsi_status: ScsiStatus::GOOD, sense: None }
    }
}

/// The copy manager's records, keyed by I_T nexus.
pub type CopyManager = oxcopy_copy::CopyManager<Nexus, ScsiOutcome>;
/// One copy operation of a SCSI command.
pub type CopyOperation = oxcopy_copy::CopyOperation<Nexus, ScsiOutcome>;
/// A status command's view of a record.
pub type OpSnapshot = oxcopy_copy::OpSnapshot<ScsiOutcome>;
/// How a SCSI copy command ended.
pub type Completion = oxcopy_copy::Completion<ScsiOutcome>;
