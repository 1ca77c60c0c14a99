//! Bounds-checked little-endian field access and padded-string helpers shared
//! by the data-structure layouts ([`super::connect`], [`super::identify`],
//! [`super::log`], [`super::features`]), and their one error type.
//!
//! Parsers check the whole structure's length once and then read fields with
//! these helpers, which never panic: a read past the end yields zero.

use thiserror::Error;

/// Why a data structure could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LayoutError {
    /// Fewer bytes than the structure needs.
    #[error("{what}: {got} bytes, need {need}")]
    Truncated {
        /// Which structure.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        got: usize,
    },
    /// A field holds a value the layout does not allow.
    #[error("{what}: {why}")]
    Invalid {
        /// Which structure or field.
        what: &'static str,
        /// What is wrong.
        why: &'static str,
    },
}

/// `Ok(())` when `b` holds at least `need` bytes.
pub(crate) fn need(b: &[u8], need: usize, what: &'static str) -> Result<(), LayoutError> {
    if b.len() < need {
        Err(LayoutError::Truncated { what, need, got: b.len() })
    } else {
        Ok(())
    }
}

/// Byte at `at`, zero past the end.
pub(crate) fn u8_at(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut x = [0u8; N];
    if let Some(s) = at.checked_add(N).and_then(|end| b.get(at..end)) {
        x.copy_from_slice(s);
    }
    x
}

/// Little-endian u16 at `at`, zero when out of bounds.
pub(crate) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(arr(b, at))
}
/// Little-endian u32 at `at`, zero when out of bounds.
pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(arr(b, at))
}
/// Little-endian u64 at `at`, zero when out of bounds.
pub(crate) fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(arr(b, at))
}
/// `N` bytes at `at`, zeros when out of bounds.
pub(crate) fn bytes<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    arr(b, at)
}

/// Writes `v` at `at` when it fits (builders size their buffers first).
pub(crate) fn put(b: &mut [u8], at: usize, v: &[u8]) {
    if let Some(s) = at.checked_add(v.len()).and_then(|end| b.get_mut(at..end)) {
        s.copy_from_slice(v);
    }
}
pub(crate) fn put8(b: &mut [u8], at: usize, v: u8) {
    put(b, at, &[v]);
}
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    put(b, at, &v.to_le_bytes());
}
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    put(b, at, &v.to_le_bytes());
}
pub(crate) fn put64(b: &mut [u8], at: usize, v: u64) {
    put(b, at, &v.to_le_bytes());
}

/// Writes `s` as a space-padded ASCII field of `len` bytes (SN, MN, FR):
/// characters outside printable ASCII become `?`, longer strings are cut.
pub(crate) fn put_ascii_padded(b: &mut [u8], at: usize, len: usize, s: &str) {
    let mut f = vec![b' '; len];
    for (d, c) in f.iter_mut().zip(s.bytes()) {
        *d = if (0x20..0x7F).contains(&c) { c } else { b'?' };
    }
    put(b, at, &f);
}

/// Reads a space- (or NUL-) padded ASCII field, trailing padding removed.
pub(crate) fn ascii_padded(b: &[u8], at: usize, len: usize) -> String {
    let f = at.checked_add(len).and_then(|end| b.get(at..end)).unwrap_or(&[]);
    let s: String = f.iter().map(|&c| if (0x20..0x7F).contains(&c) { c as char } else { '\0' }).collect();
    s.trim_end_matches([' ', '\0']).to_string()
}

/// Writes `s` as a NUL-terminated (NUL-padded) string field of `len` bytes:
/// at most `len - 1` bytes of it, so the terminator always fits.
pub(crate) fn put_cstr(b: &mut [u8], at: usize, len: usize, s: &str) {
    let mut f = vec![0u8; len];
    let n = s.len().min(len.saturating_sub(1));
    if let (Some(d), Some(src)) = (f.get_mut(..n), s.as_bytes().get(..n)) {
        d.copy_from_slice(src);
    }
    put(b, at, &f);
}

/// Reads a NUL-terminated (or full-length) string field of `len` bytes.
/// Non-UTF-8 bytes are an error: an NQN or address must be text.
pub(crate) fn cstr(b: &[u8], at: usize, len: usize, what: &'static str) -> Result<String, LayoutError> {
    let f = at.checked_add(len).and_then(|end| b.get(at..end)).unwrap_or(&[]);
    let end = f.iter().position(|&c| c == 0).unwrap_or(f.len());
    let s = f.get(..end).unwrap_or(&[]);
    String::from_utf8(s.to_vec()).map_err(|_| LayoutError::Invalid { what, why: "not UTF-8" })
}

/// Copies `len` bytes of `src` from `offset` into a new buffer, zero-filled
/// where `src` ends first: how a log page or identify structure is cut to the
/// host's requested window. `len` must already be bounded by the caller.
pub(crate) fn window(src: &[u8], offset: usize, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    if let Some(from) = src.get(offset..) {
        let n = from.len().min(len);
        if let (Some(d), Some(s)) = (out.get_mut(..n), from.get(..n)) {
            d.copy_from_slice(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_end_are_zero_and_writes_are_dropped() {
        let b = [1u8, 2, 3];
        assert_eq!(le16(&b, 2), 0);
        assert_eq!(le32(&b, usize::MAX - 1), 0);
        assert_eq!(u8_at(&b, 9), 0);
        let mut w = [0u8; 3];
        put32(&mut w, 1, 0xFFFF_FFFF);
        assert_eq!(w, [0, 0, 0]);
        put16(&mut w, 1, 0x0201);
        assert_eq!(w, [0, 1, 2]);
    }

    #[test]
    fn padded_strings() {
        let mut b = [0u8; 8];
        put_ascii_padded(&mut b, 0, 8, "ab\u{e9}c");
        assert_eq!(&b, b"ab??c   ");
        assert_eq!(ascii_padded(&b, 0, 8), "ab??c");
        let mut c = [0xAAu8; 6];
        put_cstr(&mut c, 0, 6, "abcdefgh");
        assert_eq!(&c, b"abcde\0");
        assert_eq!(cstr(&c, 0, 6, "x").unwrap(), "abcde");
        assert!(cstr(&[0xFF, 0], 0, 2, "x").is_err());
        assert_eq!(window(&[1, 2, 3], 1, 4), vec![2, 3, 0, 0]);
        assert_eq!(window(&[1, 2, 3], 7, 2), vec![0, 0]);
    }
}
