//! SCSI status and sense data in words, for error messages.

use oxcopy_initiator::{InitiatorError, ScsiOutcome, Sense};
use oxcopy_scsi::ScsiStatus;

/// `ILLEGAL REQUEST: LOGICAL BLOCK ADDRESS OUT OF RANGE (21h/00h)`.
pub fn describe(s: &Sense) -> String {
    let asc = match s.asc_ascq().name() {
        Some(n) => format!("{n} ({:02X}h/{:02X}h)", s.asc, s.ascq),
        None => format!("ASC/ASCQ {:02X}h/{:02X}h", s.asc, s.ascq),
    };
    format!("{}: {asc}", s.sense_key().name())
}

/// A command outcome in words: `CHECK CONDITION, ILLEGAL REQUEST: …`.
pub fn describe_outcome(o: &ScsiOutcome) -> String {
    match o.sense_info() {
        Some(s) => describe(&s),
        None => format!("SCSI status {} ({:02X}h)", ScsiStatus(o.status).name(), o.status),
    }
}

/// An initiator error in words (sense decoded when there is one).
pub fn describe_error(e: &InitiatorError) -> String {
    match e.scsi_outcome() {
        Some(o) => describe_outcome(o),
        None => e.to_string(),
    }
}

/// The sense of an initiator error, if it carries one.
pub fn sense_of(e: &InitiatorError) -> Option<Sense> {
    e.scsi_outcome().and_then(|o| o.sense_info())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        let s = Sense { key: 5, asc: 0x21, ascq: 0, ..Default::default() };
        assert_eq!(describe(&s), "ILLEGAL REQUEST: LOGICAL BLOCK ADDRESS OUT OF RANGE (21h/00h)");
        let s = Sense { key: 0xa, asc: 0x99, ascq: 1, ..Default::default() };
        assert_eq!(describe(&s), "COPY ABORTED: ASC/ASCQ 99h/01h");
        let o = ScsiOutcome { status: 0x08, ..Default::default() };
        assert_eq!(describe_outcome(&o), "SCSI status BUSY (08h)");
    }
}
