//! SCSI wire layouts, one definition for both sides: the device server in
//! this crate decodes what the initiator, the CLI and the benchmarks
//! encode with the same constants and builders, and the other way round.
//!
//! No I/O, no state: nothing here imports the rest of the crate (logical
//! units, the registry and the copy manager import this module).
//!
//! - [`cdb`]: operation codes, service actions, bounds-safe CDB field
//!   access and the CDB builders an initiator sends.
//! - [`sense`]: sense keys, ASC/ASCQ, sense data encode and decode.
//! - [`xcopy`]: the EXTENDED COPY (LID1) parameter list: descriptor type
//!   codes, lengths, and the list encoder.
//! - [`rod`]: POPULATE TOKEN / WRITE USING TOKEN parameter lists.
//! - [`vpd`]: VPD page framing, designation descriptors and the Third-party
//!   Copy (8Fh) descriptors.

pub mod cdb;
pub mod rod;
pub mod sense;
pub mod vpd;
pub mod xcopy;

/// `n` as a 16-bit length field, saturated.
pub(crate) fn len16(n: usize) -> [u8; 2] {
    u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes()
}
