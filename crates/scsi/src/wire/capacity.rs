//! READ CAPACITY (16) parameter data (SBC-3 §5.16.2) and REPORT LUNS
//! parameter data (SPC-4 §6.33): the device server encodes them
//! (`crate::sbc`, `crate::spc`), an initiator decodes them.
//!
//! ```text
//! READ CAPACITY (16)  B0-7 RETURNED LOGICAL BLOCK ADDRESS  B8-11 LOGICAL BLOCK LENGTH
//!                     B12 P_TYPE(3:1)|PROT_EN(0)  B13 P_I_EXPONENT(7:4)|LBPPBE(3:0)
//!                     B14 LBPME(7)|LBPRZ(6)|LOWEST ALIGNED LBA(5:0)  B15 LOWEST ALIGNED LBA
//! REPORT LUNS         B0-3 LUN LIST LENGTH  B8.. 8-byte LUNs
//! ```

use super::Fields;

/// Length of the READ CAPACITY (16) parameter data.
pub const READ_CAPACITY16_LEN: usize = 32;
/// Shortest READ CAPACITY (16) data an initiator accepts: through the
/// LOGICAL BLOCK LENGTH (the rest reads as 0 when cut off).
pub const READ_CAPACITY16_MIN_LEN: usize = 12;
/// Length of the REPORT LUNS header.
pub const REPORT_LUNS_HEADER_LEN: usize = 8;

/// READ CAPACITY (16) parameter data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCapacity16 {
    /// RETURNED LOGICAL BLOCK ADDRESS: the last LBA.
    pub last_lba: u64,
    /// LOGICAL BLOCK LENGTH IN BYTES.
    pub block_len: u32,
    /// Byte 12: P_TYPE and PROT_EN.
    pub protection: u8,
    /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT.
    pub lbppbe: u8,
    /// LBPME: logical block provisioning management enabled.
    pub lbpme: bool,
    /// LBPRZ: unmapped blocks read as zeroes.
    pub lbprz: bool,
    /// LOWEST ALIGNED LOGICAL BLOCK ADDRESS (14 bits).
    pub lowest_aligned_lba: u16,
}

impl ReadCapacity16 {
    /// Decode (bounded: `None` under [`READ_CAPACITY16_MIN_LEN`] bytes;
    /// fields past a shorter allocation length read as 0).
    pub fn parse(d: &[u8]) -> Option<ReadCapacity16> {
        let f = Fields(d);
        let b13 = f.u8(13).unwrap_or(0);
        let b14 = f.u8(14).unwrap_or(0);
        Some(ReadCapacity16 {
            last_lba: f.u64(0)?,
            block_len: f.u32(8)?,
            protection: f.u8(12).unwrap_or(0) & 0x0F,
            lbppbe: b13 & 0x0F,
            lbpme: b14 & 0x80 != 0,
            lbprz: b14 & 0x40 != 0,
            lowest_aligned_lba: f.u16(14).unwrap_or(0) & 0x3FFF,
        })
    }

    /// The 32-byte data.
    pub fn encode(&self) -> Vec<u8> {
        let mut d = vec![0u8; READ_CAPACITY16_LEN];
        d[0..8].copy_from_slice(&self.last_lba.to_be_bytes());
        d[8..12].copy_from_slice(&self.block_len.to_be_bytes());
        d[12] = self.protection & 0x0F;
        d[13] = self.lbppbe & 0x0F;
        d[14..16].copy_from_slice(&(self.lowest_aligned_lba & 0x3FFF).to_be_bytes());
        d[14] |= (u8::from(self.lbpme) << 7) | (u8::from(self.lbprz) << 6);
        d
    }

    /// The number of logical blocks (last LBA + 1, wrapping).
    pub fn blocks(&self) -> u64 {
        self.last_lba.wrapping_add(1)
    }
}

/// REPORT LUNS parameter data: the 8-byte LUN structures, as sent (the
/// LUN addressing itself is `crate::lun`'s).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportLuns {
    /// LUN LIST LENGTH as sent: 8 × the LUNs the device server has, which
    /// may be more than the allocation length let through.
    pub list_length: u32,
    /// The whole LUN entries received (at most `list_length / 8`).
    pub luns: Vec<[u8; 8]>,
}

impl ReportLuns {
    /// The data listing `luns`.
    pub fn new(luns: Vec<[u8; 8]>) -> ReportLuns {
        ReportLuns { list_length: u32::try_from(luns.len() * 8).unwrap_or(u32::MAX), luns }
    }

    /// Decode (bounded: `None` without the 8-byte header; a partial last
    /// entry is dropped, entries past LUN LIST LENGTH are ignored).
    pub fn parse(d: &[u8]) -> Option<ReportLuns> {
        let f = Fields(d);
        let list_length = f.u32(0)?;
        f.slice(0, REPORT_LUNS_HEADER_LEN)?;
        let body = f.tail(REPORT_LUNS_HEADER_LEN);
        let body = &body[..body.len().min(usize::try_from(list_length).unwrap_or(usize::MAX))];
        let luns = body.chunks_exact(8).filter_map(|c| c.try_into().ok()).collect();
        Some(ReportLuns { list_length, luns })
    }

    /// The data: header and every LUN (LUN LIST LENGTH is `list_length`).
    pub fn encode(&self) -> Vec<u8> {
        let mut d = Vec::with_capacity(REPORT_LUNS_HEADER_LEN + self.luns.len() * 8);
        d.extend_from_slice(&self.list_length.to_be_bytes());
        d.extend_from_slice(&[0; 4]);
        for l in &self.luns {
            d.extend_from_slice(l);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_capacity16_bytes_and_prefixes() {
        let rc = ReadCapacity16 {
            last_lba: 63,
            block_len: 512,
            protection: 0x03,
            lbppbe: 3,
            lbpme: true,
            lbprz: true,
            lowest_aligned_lba: 0x0102,
        };
        let d = rc.encode();
        let mut want = vec![0u8; 32];
        want[7] = 63;
        want[10] = 2;
        want[12..16].copy_from_slice(&[0x03, 0x03, 0xC1, 0x02]);
        assert_eq!(d, want);
        assert_eq!(ReadCapacity16::parse(&d), Some(rc));
        assert_eq!(rc.blocks(), 64);
        for n in 0..d.len() {
            assert_eq!(ReadCapacity16::parse(&d[..n]).is_some(), n >= READ_CAPACITY16_MIN_LEN, "prefix {n}");
        }
        let short = ReadCapacity16::parse(&d[..12]).unwrap();
        assert_eq!(short, ReadCapacity16 { last_lba: 63, block_len: 512, ..Default::default() });
    }

    #[test]
    fn report_luns_bytes_and_prefixes() {
        let r = ReportLuns::new(vec![[0, 1, 0, 0, 0, 0, 0, 0], [0x41, 0x23, 0, 0, 0, 0, 0, 0]]);
        let d = r.encode();
        assert_eq!(&d[..10], &[0, 0, 0, 16, 0, 0, 0, 0, 0, 1]);
        assert_eq!(d.len(), 24);
        assert_eq!(ReportLuns::parse(&d), Some(r.clone()));
        for n in 0..d.len() {
            let p = ReportLuns::parse(&d[..n]);
            assert_eq!(p.as_ref().map(|p| p.luns.len()), n.checked_sub(8).map(|b| b / 8), "prefix {n}");
        }
        // Entries past LUN LIST LENGTH are not LUNs.
        let mut d = d;
        d[3] = 8;
        assert_eq!(ReportLuns::parse(&d).unwrap().luns, vec![r.luns[0]]);
    }
}
