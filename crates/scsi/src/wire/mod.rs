//! SCSI wire layouts, one definition for both sides: the device server in
//! this crate decodes what the initiator, the CLI and the benchmarks
//! encode with the same constants and builders, and the other way round.
//!
//! No I/O, no state: nothing here imports the rest of the crate (logical
//! units, the registry and the copy manager import this module).
//!
//! - [`capacity`]: READ CAPACITY (16) and REPORT LUNS parameter data.
//! - [`cdb`]: operation codes, service actions, bounds-safe CDB field
//!   access and the CDB builders an initiator sends.
//! - [`sense`]: sense keys and ASC/ASCQ (codes and names), sense data
//!   encode ([`sense::Sense`]) and decode ([`sense::SenseData`]).
//! - [`xcopy`]: the EXTENDED COPY (LID1) parameter list: descriptor type
//!   codes, lengths, and the list encoder.
//! - [`results`]: the RECEIVE COPY RESULTS data of EXTENDED COPY (LID1):
//!   COPY STATUS, OPERATING PARAMETERS, FAILED SEGMENT DETAILS.
//! - [`inquiry`]: the block device VPD pages B0h, B1h and B2h.
//! - [`rod`]: POPULATE TOKEN / WRITE USING TOKEN parameter lists and the
//!   RECEIVE ROD TOKEN INFORMATION response.
//! - [`vpd`]: VPD page framing, designation descriptors and the Third-party
//!   Copy (8Fh) descriptors.
//! - [`Fields`]: the bounds-checked reader every decoder here uses.

pub mod capacity;
pub mod cdb;
pub mod inquiry;
pub mod results;
pub mod rod;
pub mod sense;
pub mod vpd;
pub mod xcopy;

/// Bounds-checked big-endian field access for decoders of untrusted bytes:
/// every read past the end is `None` (or empty), never a panic.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a>(pub &'a [u8]);

impl<'a> Fields<'a> {
    /// The byte at `i`.
    pub fn u8(&self, i: usize) -> Option<u8> {
        self.0.get(i).copied()
    }
    /// The big-endian 16-bit field at `i`.
    pub fn u16(&self, i: usize) -> Option<u16> {
        Some(u16::from_be_bytes(self.array(i)?))
    }
    /// The big-endian 32-bit field at `i`.
    pub fn u32(&self, i: usize) -> Option<u32> {
        Some(u32::from_be_bytes(self.array(i)?))
    }
    /// The big-endian 64-bit field at `i`.
    pub fn u64(&self, i: usize) -> Option<u64> {
        Some(u64::from_be_bytes(self.array(i)?))
    }
    /// Bit `bit` of the byte at `i`.
    pub fn bit(&self, i: usize, bit: u8) -> Option<bool> {
        self.u8(i).map(|b| b & (1 << (bit & 7)) != 0)
    }
    /// `n` bytes from `i`.
    pub fn slice(&self, i: usize, n: usize) -> Option<&'a [u8]> {
        self.0.get(i..i.checked_add(n)?)
    }
    /// `N` bytes from `i`, as an array.
    pub fn array<const N: usize>(&self, i: usize) -> Option<[u8; N]> {
        self.slice(i, N)?.try_into().ok()
    }
    /// From `i` to the end (empty when past it).
    pub fn tail(&self, i: usize) -> &'a [u8] {
        self.0.get(i..).unwrap_or(&[])
    }
}

/// `n` as a 16-bit length field, saturated.
pub(crate) fn len16(n: usize) -> [u8; 2] {
    u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_bounded() {
        let f = Fields(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(
            (f.u8(0), f.u16(1), f.u32(2), f.u64(1)),
            (Some(1), Some(0x0203), Some(0x0304_0506), Some(0x0203_0405_0607_0809))
        );
        assert_eq!((f.u8(9), f.u16(8), f.u32(6), f.u64(2)), (None, None, None, None));
        assert_eq!((f.bit(0, 0), f.bit(0, 1), f.bit(9, 0)), (Some(true), Some(false), None));
        assert_eq!((f.slice(7, 2), f.slice(8, 2), f.slice(usize::MAX, 2)), (Some(&[8, 9][..]), None, None));
        assert_eq!((f.tail(7), f.tail(20)), (&[8, 9][..], &[][..]));
        assert_eq!(f.array::<3>(6), Some([7, 8, 9]));
    }
}
