//! Typed SCSI helpers on top of [`Session::execute`]. The CDB builders
//! ([`cdb`]) and the sense decoder ([`Sense`]) are the wire layer's
//! (`oxcopy_scsi::wire`), shared with the target.
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

pub use oxcopy_scsi::wire::capacity::{ReadCapacity16, ReportLuns};
pub use oxcopy_scsi::wire::cdb;
pub use oxcopy_scsi::wire::sense::{Asc, SenseData as Sense, SenseKey};

/// Sense keys as the bytes [`Sense::key`] holds, for comparisons (the
/// values are [`SenseKey`]'s; use [`Sense::sense_key`] for the rest).
pub mod sense_key {
    use oxcopy_scsi::wire::sense::SenseKey;

    /// ILLEGAL REQUEST.
    pub const ILLEGAL_REQUEST: u8 = SenseKey::ILLEGAL_REQUEST.0;
    /// UNIT ATTENTION.
    pub const UNIT_ATTENTION: u8 = SenseKey::UNIT_ATTENTION.0;
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
        let rc = ReadCapacity16::parse(&o.data)
            .ok_or_else(|| InitiatorError::Protocol(format!("READ CAPACITY (16) returned {} bytes", o.data.len())))?;
        Ok((rc.blocks(), rc.block_len))
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
            let r = ReportLuns::parse(&o.data)
                .ok_or_else(|| InitiatorError::Protocol("REPORT LUNS data under 8 bytes".into()))?;
            let need = r.list_length.saturating_add(8);
            if need > alloc && alloc < (1 << 20) {
                alloc = need.min(1 << 20);
                continue;
            }
            return Ok(r.luns.into_iter().map(decode_lun).collect());
        }
    }
}
