//! SCSI status and sense data in words, for error messages.

use oxcopy_initiator::{InitiatorError, ScsiOutcome, Sense};

/// Name of a sense key.
pub fn key_name(k: u8) -> &'static str {
    match k {
        0x0 => "NO SENSE",
        0x1 => "RECOVERED ERROR",
        0x2 => "NOT READY",
        0x3 => "MEDIUM ERROR",
        0x4 => "HARDWARE ERROR",
        0x5 => "ILLEGAL REQUEST",
        0x6 => "UNIT ATTENTION",
        0x7 => "DATA PROTECT",
        0x8 => "BLANK CHECK",
        0x9 => "VENDOR SPECIFIC",
        0xa => "COPY ABORTED",
        0xb => "ABORTED COMMAND",
        0xd => "VOLUME OVERFLOW",
        0xe => "MISCOMPARE",
        _ => "RESERVED",
    }
}

/// Name of an ASC/ASCQ pair (the ones a disk, a copy manager or a transport
/// commonly reports), or `None`.
pub fn asc_name(asc: u8, ascq: u8) -> Option<&'static str> {
    Some(match (asc, ascq) {
        (0x00, 0x00) => "NO ADDITIONAL SENSE INFORMATION",
        (0x00, 0x16) => "OPERATION IN PROGRESS",
        (0x00, 0x20) => "EXTENDED COPY INFORMATION AVAILABLE",
        (0x04, 0x00) => "LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE",
        (0x04, 0x01) => "LOGICAL UNIT IS IN PROCESS OF BECOMING READY",
        (0x04, 0x02) => "LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED",
        (0x04, 0x03) => "LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED",
        (0x08, 0x04) => "UNREACHABLE COPY TARGET",
        (0x0c, 0x00) => "WRITE ERROR",
        (0x0d, 0x00) => "ERROR DETECTED BY THIRD PARTY TEMPORARY INITIATOR",
        (0x0d, 0x01) => "THIRD PARTY DEVICE FAILURE",
        (0x0d, 0x02) => "COPY TARGET DEVICE NOT REACHABLE",
        (0x0d, 0x03) => "INCORRECT COPY TARGET DEVICE TYPE",
        (0x0d, 0x04) => "COPY TARGET DEVICE DATA UNDERRUN",
        (0x0d, 0x05) => "COPY TARGET DEVICE DATA OVERRUN",
        (0x11, 0x00) => "UNRECOVERED READ ERROR",
        (0x1a, 0x00) => "PARAMETER LIST LENGTH ERROR",
        (0x1d, 0x00) => "MISCOMPARE DURING VERIFY OPERATION",
        (0x20, 0x00) => "INVALID COMMAND OPERATION CODE",
        (0x21, 0x00) => "LOGICAL BLOCK ADDRESS OUT OF RANGE",
        (0x23, 0x00) => "INVALID TOKEN OPERATION, CAUSE NOT REPORTABLE",
        (0x23, 0x01) => "INVALID TOKEN OPERATION, UNSUPPORTED TOKEN TYPE",
        (0x23, 0x02) => "INVALID TOKEN OPERATION, REMOTE TOKEN USAGE NOT SUPPORTED",
        (0x23, 0x03) => "INVALID TOKEN OPERATION, REMOTE ROD TOKEN CREATION NOT SUPPORTED",
        (0x23, 0x04) => "INVALID TOKEN OPERATION, TOKEN UNKNOWN",
        (0x23, 0x05) => "INVALID TOKEN OPERATION, TOKEN CORRUPT",
        (0x23, 0x06) => "INVALID TOKEN OPERATION, TOKEN REVOKED",
        (0x23, 0x07) => "INVALID TOKEN OPERATION, TOKEN EXPIRED",
        (0x23, 0x08) => "INVALID TOKEN OPERATION, TOKEN CANCELLED",
        (0x23, 0x09) => "INVALID TOKEN OPERATION, TOKEN DELETED",
        (0x23, 0x0a) => "INVALID TOKEN OPERATION, INVALID TOKEN LENGTH",
        (0x24, 0x00) => "INVALID FIELD IN CDB",
        (0x25, 0x00) => "LOGICAL UNIT NOT SUPPORTED",
        (0x26, 0x00) => "INVALID FIELD IN PARAMETER LIST",
        (0x26, 0x06) => "TOO MANY TARGET DESCRIPTORS",
        (0x26, 0x07) => "UNSUPPORTED TARGET DESCRIPTOR TYPE CODE",
        (0x26, 0x08) => "TOO MANY SEGMENT DESCRIPTORS",
        (0x26, 0x09) => "UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE",
        (0x26, 0x0a) => "UNEXPECTED INEXACT SEGMENT",
        (0x26, 0x0b) => "INLINE DATA LENGTH EXCEEDED",
        (0x26, 0x0c) => "INVALID OPERATION FOR COPY SOURCE OR DESTINATION",
        (0x26, 0x0d) => "COPY SEGMENT GRANULARITY VIOLATION",
        (0x26, 0x15) => "COPY SOURCE OR COPY DESTINATION NOT AUTHORIZED",
        (0x26, 0x16) => "FAST COPY NOT POSSIBLE",
        (0x27, 0x00) => "WRITE PROTECTED",
        (0x28, 0x00) => "NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED",
        (0x29, 0x00) => "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED",
        (0x29, 0x07) => "I_T NEXUS LOSS OCCURRED",
        (0x2a, 0x01) => "MODE PARAMETERS CHANGED",
        (0x2a, 0x09) => "CAPACITY DATA HAS CHANGED",
        (0x2f, 0x00) => "COMMANDS CLEARED BY ANOTHER INITIATOR",
        (0x2f, 0x02) => "COMMANDS CLEARED BY DEVICE SERVER",
        (0x3a, 0x00) => "MEDIUM NOT PRESENT",
        (0x3f, 0x0e) => "REPORTED LUNS DATA HAS CHANGED",
        (0x44, 0x00) => "INTERNAL TARGET FAILURE",
        (0x47, 0x00) => "SCSI PARITY ERROR",
        (0x47, 0x05) => "PROTOCOL SERVICE CRC ERROR",
        (0x4b, 0x00) => "DATA PHASE ERROR",
        (0x55, 0x03) => "INSUFFICIENT RESOURCES",
        (0x55, 0x0c) => "INSUFFICIENT RESOURCES TO CREATE ROD",
        (0x55, 0x0d) => "INSUFFICIENT RESOURCES TO CREATE ROD TOKEN",
        _ => return None,
    })
}

/// `ILLEGAL REQUEST: LOGICAL BLOCK ADDRESS OUT OF RANGE (21h/00h)`.
pub fn describe(s: &Sense) -> String {
    let asc = match asc_name(s.asc, s.ascq) {
        Some(n) => format!("{n} ({:02X}h/{:02X}h)", s.asc, s.ascq),
        None => format!("ASC/ASCQ {:02X}h/{:02X}h", s.asc, s.ascq),
    };
    format!("{}: {asc}", key_name(s.key))
}

/// Name of a SCSI status byte.
pub fn status_name(status: u8) -> &'static str {
    match status {
        0x00 => "GOOD",
        0x02 => "CHECK CONDITION",
        0x04 => "CONDITION MET",
        0x08 => "BUSY",
        0x18 => "RESERVATION CONFLICT",
        0x28 => "TASK SET FULL",
        0x30 => "ACA ACTIVE",
        0x40 => "TASK ABORTED",
        _ => "unknown status",
    }
}

/// A command outcome in words: `CHECK CONDITION, ILLEGAL REQUEST: …`.
pub fn describe_outcome(o: &ScsiOutcome) -> String {
    match o.sense_info() {
        Some(s) => describe(&s),
        None => format!("SCSI status {} ({:02X}h)", status_name(o.status), o.status),
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
