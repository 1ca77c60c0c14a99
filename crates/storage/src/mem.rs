//! In-memory backend for tests and for the core's socket-free test suites.

use crate::{check_range, AllocationRun, Capabilities, Result, Storage};
use parking_lot::RwLock;
use std::sync::Arc;

/// A fixed-size store held in memory. Discard zeroes the range.
#[derive(Debug)]
pub struct MemStorage {
    data: RwLock<Vec<u8>>,
    len: u64,
}

impl MemStorage {
    /// A zero-filled store of `len` bytes.
    pub fn new(len: usize) -> Self {
        MemStorage { data: RwLock::new(vec![0; len]), len: len as u64 }
    }

    /// A store holding a copy of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        MemStorage { data: RwLock::new(bytes.to_vec()), len: bytes.len() as u64 }
    }

    /// A snapshot of the whole contents (tests).
    pub fn contents(&self) -> Vec<u8> {
        self.data.read().clone()
    }
}

impl Storage for MemStorage {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(self.len, offset, buf.len() as u64)?;
        let start = offset as usize;
        buf.copy_from_slice(&self.data.read()[start..start + buf.len()]);
        Ok(())
    }

    /// Memory never waits.
    fn try_read_at(&self, buf: &mut [u8], offset: u64) -> Result<bool> {
        self.read_at(buf, offset).map(|()| true)
    }

    /// Memory never waits.
    fn try_write_at(&self, buf: &[u8], offset: u64) -> Result<bool> {
        self.write_at(buf, offset).map(|()| true)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(self.len, offset, buf.len() as u64)?;
        let start = offset as usize;
        self.data.write()[start..start + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            discard: true,
            discard_zeroes: true,
            allocation_status: false,
            reflink: false,
            fs_block_size: 4096,
        }
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.write_zeroes(offset, len)
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        check_range(self.len, offset, len)?;
        let start = offset as usize;
        self.data.write()[start..start + len as usize].fill(0);
        Ok(())
    }

    fn allocation(&self, _offset: u64, len: u64) -> Result<AllocationRun> {
        Ok(AllocationRun { mapped: true, len })
    }

    /// Memory stores never snapshot cheaply: callers use copy-on-write.
    fn snapshot(&self, _ranges: &[(u64, u64)]) -> Result<Option<Arc<dyn Storage>>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_write_roundtrip_and_bounds() {
        let m = MemStorage::new(4096);
        m.write_at(&[1, 2, 3], 4093).unwrap();
        let mut b = [0u8; 3];
        m.read_at(&mut b, 4093).unwrap();
        assert_eq!(b, [1, 2, 3]);
        assert!(m.write_at(&[0; 4], 4093).is_err());
        assert!(m.read_at(&mut [0; 1], u64::MAX).is_err());
    }

    #[test]
    fn overlapping_self_copy_is_safe_both_directions() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(8192).collect();
        let m = MemStorage::from_bytes(&bytes);
        m.copy_range(100, &m, 0, 4000).unwrap();
        assert_eq!(&m.contents()[100..4100], &bytes[0..4000]);
        let m = MemStorage::from_bytes(&bytes);
        m.copy_range(0, &m, 100, 4000).unwrap();
        assert_eq!(&m.contents()[0..4000], &bytes[100..4100]);
    }
}
