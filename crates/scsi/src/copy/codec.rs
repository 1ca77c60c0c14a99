//! A bounded big-endian reader over a borrowed byte slice.
//!
//! Every read either returns the bytes asked for or `None`, never panics and
//! never reads past its bound. [`Reader::sub`] carves a child reader over
//! the next `len` bytes (a descriptor, a list), so a length field can only
//! ever widen what the *parent* already holds, never what was received.
//! Each reader knows its absolute offset in the outermost buffer, which is
//! what sense-data field pointers need.

/// Reads big-endian fields from `buf[off..]`.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    off: usize,
    /// Absolute offset of `buf[0]` in the outermost buffer.
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over all of `buf`, at absolute offset 0.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, off: 0, base: 0 }
    }

    /// Absolute offset of the next byte.
    pub(crate) fn pos(&self) -> usize {
        self.base + self.off
    }

    /// Bytes not yet consumed.
    pub(crate) fn left(&self) -> usize {
        self.buf.len() - self.off
    }

    /// The next `n` bytes, consumed.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.off.checked_add(n)?;
        let s = self.buf.get(self.off..end)?;
        self.off = end;
        Some(s)
    }

    /// The next `n` bytes, not consumed.
    pub(crate) fn peek(&self, n: usize) -> Option<&'a [u8]> {
        self.buf.get(self.off..self.off.checked_add(n)?)
    }

    /// Skip `n` bytes.
    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    /// A child reader over the next `len` bytes (consumed from `self`).
    pub(crate) fn sub(&mut self, len: usize) -> Option<Reader<'a>> {
        let base = self.pos();
        let buf = self.take(len)?;
        Some(Reader { buf, off: 0, base })
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u24(&mut self) -> Option<u32> {
        self.take(3).map(|b| u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_be_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded_and_positions_absolute() {
        let data = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        let mut r = Reader::new(&data);
        assert_eq!(r.u16(), Some(0x0102));
        let mut s = r.sub(6).unwrap();
        assert_eq!(s.pos(), 2);
        assert_eq!(s.u24(), Some(0x030405));
        assert_eq!(s.pos(), 5);
        assert_eq!(s.u32(), None, "only 3 bytes left in the child");
        assert_eq!(s.left(), 3);
        assert_eq!(s.peek(3), Some(&[6u8, 7, 8][..]));
        assert_eq!(r.pos(), 8);
        assert_eq!(r.u32(), Some(0x090A0B0C));
        assert_eq!(r.u8(), None);
        assert!(r.sub(1).is_none());
        assert!(r.take(usize::MAX).is_none());
        assert_eq!(r.sub(0).map(|c| c.left()), Some(0));
        let mut r = Reader::new(&data);
        assert_eq!(r.u64(), Some(0x0102030405060708));
        assert!(r.skip(5).is_none());
        assert!(r.skip(4).is_some());
    }
}
