//! Typed SCSI helpers on top of [`Session::execute`], CDB builders and a
//! sense-data parser.
//!
//! The helpers turn any status other than GOOD into
//! [`InitiatorError::ScsiStatus`] (which keeps the whole outcome, sense
//! included), so callers can use `?`; use [`Session::execute`] directly to
//! treat CHECK CONDITION as a value.

use crate::command::DataDir;
use crate::error::{InitiatorError, Result};
use crate::lun::decode_lun;
use crate::session::Session;
use bytes::Bytes;

/// Sense keys (SPC-4 table 28).
pub mod sense_key {
    /// NO SENSE.
    pub const NO_SENSE: u8 = 0x0;
    /// RECOVERED ERROR.
    pub const RECOVERED_ERROR: u8 = 0x1;
    /// NOT READY.
    pub const NOT_READY: u8 = 0x2;
    /// MEDIUM ERROR.
    pub const MEDIUM_ERROR: u8 = 0x3;
    /// HARDWARE ERROR.
    pub const HARDWARE_ERROR: u8 = 0x4;
    /// ILLEGAL REQUEST.
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    /// UNIT ATTENTION.
    pub const UNIT_ATTENTION: u8 = 0x6;
    /// DATA PROTECT.
    pub const DATA_PROTECT: u8 = 0x7;
    /// BLANK CHECK.
    pub const BLANK_CHECK: u8 = 0x8;
    /// COPY ABORTED.
    pub const COPY_ABORTED: u8 = 0xa;
    /// ABORTED COMMAND.
    pub const ABORTED_COMMAND: u8 = 0xb;
    /// MISCOMPARE.
    pub const MISCOMPARE: u8 = 0xe;
}

/// Parsed sense data (fixed 70h/71h or descriptor 72h/73h format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sense {
    /// Response code (0x70 current fixed, 0x71 deferred fixed, 0x72/0x73
    /// descriptor).
    pub response_code: u8,
    /// Sense key (see [`sense_key`]).
    pub key: u8,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
    /// INFORMATION field, when valid.
    pub information: Option<u64>,
    /// COMMAND-SPECIFIC INFORMATION field (fixed format, or descriptor 01h).
    pub command_specific: Option<u64>,
    /// SENSE KEY SPECIFIC bytes, when SKSV is set.
    pub sense_key_specific: Option<[u8; 3]>,
}

impl Sense {
    /// Parse sense bytes (without the iSCSI SenseLength prefix). `None` for
    /// an unknown response code or data too short to hold the sense key.
    pub fn parse(b: &[u8]) -> Option<Sense> {
        let rc = *b.first()? & 0x7f;
        match rc {
            0x70 | 0x71 => {
                let g = |i: usize| b.get(i).copied().unwrap_or(0);
                let be32 = |i: usize| u32::from_be_bytes([g(i), g(i + 1), g(i + 2), g(i + 3)]);
                let mut s = Sense { response_code: rc, key: *b.get(2)? & 0x0f, ..Default::default() };
                s.asc = g(12);
                s.ascq = g(13);
                if b[0] & 0x80 != 0 && b.len() >= 7 {
                    s.information = Some(be32(3) as u64);
                }
                if b.len() >= 12 {
                    s.command_specific = Some(be32(8) as u64);
                }
                if b.len() >= 18 && g(15) & 0x80 != 0 {
                    s.sense_key_specific = Some([g(15), g(16), g(17)]);
                }
                Some(s)
            }
            0x72 | 0x73 => {
                let mut s = Sense {
                    response_code: rc,
                    key: *b.get(1)? & 0x0f,
                    asc: b.get(2).copied().unwrap_or(0),
                    ascq: b.get(3).copied().unwrap_or(0),
                    ..Default::default()
                };
                let add = b.get(7).copied().unwrap_or(0) as usize;
                let mut d = b.get(8..(8 + add).min(b.len())).unwrap_or(&[]);
                while d.len() >= 2 {
                    let len = 2 + d[1] as usize;
                    let Some(desc) = d.get(..len) else { break };
                    let u64_at = |i: usize| {
                        desc.get(i..i + 8).map(|x| {
                            let mut a = [0u8; 8];
                            a.copy_from_slice(x);
                            u64::from_be_bytes(a)
                        })
                    };
                    match desc[0] {
                        0x00 if desc.get(2).is_some_and(|v| v & 0x80 != 0) => s.information = u64_at(4),
                        0x01 => s.command_specific = u64_at(4),
                        0x02 if desc.get(4).is_some_and(|v| v & 0x80 != 0) && desc.len() >= 7 => {
                            s.sense_key_specific = Some([desc[4], desc[5], desc[6]])
                        }
                        _ => {}
                    }
                    d = &d[len..];
                }
                Some(s)
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for Sense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sense key {:#x}, ASC/ASCQ {:#04x}/{:#04x}", self.key, self.asc, self.ascq)
    }
}

/// CDB builders.
pub mod cdb {
    /// TEST UNIT READY (6).
    pub fn test_unit_ready() -> [u8; 6] {
        [0; 6]
    }

    /// INQUIRY (6).
    pub fn inquiry(evpd: bool, page: u8, alloc: u16) -> [u8; 6] {
        let a = alloc.to_be_bytes();
        [0x12, evpd as u8, page, a[0], a[1], 0]
    }

    /// READ CAPACITY (16) (SERVICE ACTION IN 16, 10h).
    pub fn read_capacity16(alloc: u32) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[0] = 0x9e;
        c[1] = 0x10;
        c[10..14].copy_from_slice(&alloc.to_be_bytes());
        c
    }

    fn rw16(op: u8, lba: u64, blocks: u32, fua: bool) -> [u8; 16] {
        let mut c = [0u8; 16];
        c[0] = op;
        c[1] = if fua { 0x08 } else { 0 };
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[10..14].copy_from_slice(&blocks.to_be_bytes());
        c
    }

    /// READ (16).
    pub fn read16(lba: u64, blocks: u32, fua: bool) -> [u8; 16] {
        rw16(0x88, lba, blocks, fua)
    }

    /// WRITE (16).
    pub fn write16(lba: u64, blocks: u32, fua: bool) -> [u8; 16] {
        rw16(0x8a, lba, blocks, fua)
    }

    /// SYNCHRONIZE CACHE (16); `blocks == 0` means to the end of the LUN.
    pub fn sync_cache16(lba: u64, blocks: u32, immed: bool) -> [u8; 16] {
        let mut c = rw16(0x91, lba, blocks, false);
        c[1] = if immed { 0x02 } else { 0 };
        c
    }

    /// REPORT LUNS (12).
    pub fn report_luns(select: u8, alloc: u32) -> [u8; 12] {
        let mut c = [0u8; 12];
        c[0] = 0xa0;
        c[2] = select;
        c[6..10].copy_from_slice(&alloc.to_be_bytes());
        c
    }
}

impl Session {
    /// TEST UNIT READY.
    pub async fn test_unit_ready(&self, lun: u64) -> Result<()> {
        self.execute(lun, &cdb::test_unit_ready(), DataDir::None).await?.into_result()?;
        Ok(())
    }

    /// INQUIRY (standard data, or VPD page `page` when `evpd`); returns the
    /// bytes received (at most `alloc`).
    pub async fn inquiry(&self, lun: u64, evpd: bool, page: u8, alloc: u16) -> Result<Bytes> {
        let o = self
            .execute(lun, &cdb::inquiry(evpd, page, alloc), DataDir::Read { len: alloc as u32 })
            .await?
            .into_result()?;
        Ok(o.data)
    }

    /// READ CAPACITY (16): `(number of logical blocks, logical block length)`.
    pub async fn read_capacity16(&self, lun: u64) -> Result<(u64, u32)> {
        let o = self.execute(lun, &cdb::read_capacity16(32), DataDir::Read { len: 32 }).await?.into_result()?;
        let d = &o.data;
        if d.len() < 12 {
            return Err(InitiatorError::Protocol(format!("READ CAPACITY (16) returned {} bytes", d.len())));
        }
        let mut last = [0u8; 8];
        last.copy_from_slice(&d[..8]);
        let bs = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
        Ok((u64::from_be_bytes(last).wrapping_add(1), bs))
    }

    /// READ (16) of `blocks` blocks of `block_size` bytes. A short transfer
    /// with GOOD status is a protocol error.
    pub async fn read16(&self, lun: u64, lba: u64, blocks: u32, block_size: u32) -> Result<Bytes> {
        let len = blocks
            .checked_mul(block_size)
            .ok_or_else(|| InitiatorError::InvalidArgument("read of 4 GiB or more".into()))?;
        let o = self.execute(lun, &cdb::read16(lba, blocks, false), DataDir::Read { len }).await?.into_result()?;
        if o.data.len() != len as usize {
            return Err(InitiatorError::Protocol(format!("READ (16) returned {} of {len} bytes", o.data.len())));
        }
        Ok(o.data)
    }

    /// WRITE (16) of `data` (a whole number of `block_size` blocks).
    pub async fn write16(&self, lun: u64, lba: u64, data: Bytes, block_size: u32, fua: bool) -> Result<()> {
        if block_size == 0 || data.len() % block_size as usize != 0 {
            return Err(InitiatorError::InvalidArgument(format!(
                "{} bytes is not a whole number of {block_size}-byte blocks",
                data.len()
            )));
        }
        let blocks = u32::try_from(data.len() / block_size as usize)
            .map_err(|_| InitiatorError::InvalidArgument("too many blocks".into()))?;
        self.execute(lun, &cdb::write16(lba, blocks, fua), DataDir::Write { data }).await?.into_result()?;
        Ok(())
    }

    /// SYNCHRONIZE CACHE (16) of a range (`blocks == 0`: to the end).
    pub async fn sync_cache16(&self, lun: u64, lba: u64, blocks: u32) -> Result<()> {
        self.execute(lun, &cdb::sync_cache16(lba, blocks, false), DataDir::None).await?.into_result()?;
        Ok(())
    }

    /// REPORT LUNS (select report 0) sent to LUN 0: the LUN numbers
    /// (decoded with [`crate::lun::decode_lun`]).
    pub async fn report_luns(&self) -> Result<Vec<u64>> {
        let mut alloc: u32 = 8 + 8 * 256;
        loop {
            let o = self.execute(0, &cdb::report_luns(0, alloc), DataDir::Read { len: alloc }).await?.into_result()?;
            let d = &o.data;
            if d.len() < 8 {
                return Err(InitiatorError::Protocol("REPORT LUNS data under 8 bytes".into()));
            }
            let list_len = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
            let need = list_len.saturating_add(8);
            if need > alloc && alloc < (1 << 20) {
                alloc = need.min(1 << 20);
                continue;
            }
            let avail = (d.len() - 8).min(list_len as usize);
            return Ok(d[8..8 + avail]
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    decode_lun(b)
                })
                .collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_sense() {
        let mut s = [0u8; 18];
        s[0] = 0xf0;
        s[2] = 0x05;
        s[3..7].copy_from_slice(&7u32.to_be_bytes());
        s[7] = 10;
        s[12] = 0x24;
        s[15] = 0xc0;
        s[17] = 2;
        let p = Sense::parse(&s).unwrap();
        assert_eq!(p.key, sense_key::ILLEGAL_REQUEST);
        assert_eq!((p.asc, p.ascq), (0x24, 0));
        assert_eq!(p.information, Some(7));
        assert_eq!(p.sense_key_specific, Some([0xc0, 0, 2]));
    }

    #[test]
    fn descriptor_sense() {
        let mut s = vec![0x72, 0x0e, 0x1d, 0x00, 0, 0, 0, 12];
        s.extend_from_slice(&[0x00, 0x0a, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x00]);
        let p = Sense::parse(&s).unwrap();
        assert_eq!(p.key, sense_key::MISCOMPARE);
        assert_eq!(p.asc, 0x1d);
        assert_eq!(p.information, Some(0x1000));
        // Truncated / garbage never panics.
        for n in 0..s.len() {
            let _ = Sense::parse(&s[..n]);
        }
        assert_eq!(Sense::parse(&[0x10, 0, 0]), None);
    }
}
