//! Text key=value data (RFC 7143 §6.1), as carried by Login and Text PDUs.
//!
//! A data segment is a sequence of `key=value` strings, each terminated by a
//! NUL byte. Parsing borrows from the received bytes and is bounded: key and
//! value lengths, the number of pairs and the total length are all checked
//! before anything is allocated. The parser tolerates a missing final NUL and
//! trailing padding NULs (empty strings are skipped), as real initiators
//! (Linux open-iscsi, libiscsi) never send them but some targets pad.
//!
//! Text that spans several PDUs (C bit) is joined with [`TextAccumulator`]
//! before parsing, since a pair may be split anywhere.

/// Longest key name (RFC 7143 §6.1: "maximum length of a key is 63 bytes").
pub const MAX_KEY_LEN: usize = 63;
/// Longest value of a standard key (RFC 7143 §6.1: 255 bytes unless the key
/// says otherwise).
pub const MAX_STANDARD_VALUE_LEN: usize = 255;
/// Longest value of any key (CHAP challenges/responses, SendTargets), and the
/// absolute bound the parser enforces.
pub const MAX_VALUE_LEN: usize = 8192;
/// At most this many pairs in one negotiation (one request or response
/// sequence).
pub const MAX_PAIRS: usize = 256;
/// Total text of one negotiation sequence, accumulated across Continue PDUs.
pub const MAX_TEXT_LEN: usize = 64 * 1024;

/// The special value `Reject` (RFC 7143 §6.2).
pub const REJECT: &str = "Reject";
/// The special value `Irrelevant` (RFC 7143 §6.2).
pub const IRRELEVANT: &str = "Irrelevant";
/// The special value `NotUnderstood` (RFC 7143 §6.2).
pub const NOT_UNDERSTOOD: &str = "NotUnderstood";
/// Boolean true on the wire.
pub const YES: &str = "Yes";
/// Boolean false on the wire.
pub const NO: &str = "No";

/// Why a text data segment (or value) could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// A string had no `=`.
    #[error("text pair at offset {offset} has no '='")]
    MissingEquals { offset: usize },
    /// The key before `=` was empty.
    #[error("empty key at offset {offset}")]
    EmptyKey { offset: usize },
    /// A key longer than [`MAX_KEY_LEN`].
    #[error("key of {len} bytes at offset {offset} exceeds 63")]
    KeyTooLong { offset: usize, len: usize },
    /// A key with characters outside RFC 7143 §6.1 (`a-zA-Z0-9.-+@_`).
    #[error("key at offset {offset} has an invalid character")]
    InvalidKey { offset: usize },
    /// A value longer than allowed for its key.
    #[error("value of key {key} is {len} bytes, over the limit {max}")]
    ValueTooLong { key: String, len: usize, max: usize },
    /// The bytes were not UTF-8.
    #[error("text at offset {offset} is not UTF-8")]
    InvalidUtf8 { offset: usize },
    /// More pairs than the limit.
    #[error("more than {max} key=value pairs")]
    TooManyPairs { max: usize },
    /// More text than the limit (across Continue PDUs).
    #[error("text of {len} bytes exceeds the limit {max}")]
    TooLong { len: usize, max: usize },
    /// A negotiated key appeared twice.
    #[error("key {0} appears more than once")]
    DuplicateKey(String),
    /// A value did not parse as the type its key requires.
    #[error("invalid value {value:?} for key {key}")]
    InvalidValue { key: String, value: String },
}

/// Bounds applied by [`parse_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextLimits {
    /// Maximum number of pairs.
    pub max_pairs: usize,
    /// Maximum total length in bytes.
    pub max_len: usize,
}

impl TextLimits {
    /// Limits for a login or text negotiation.
    pub const NEGOTIATION: TextLimits = TextLimits { max_pairs: MAX_PAIRS, max_len: MAX_TEXT_LEN };
    /// Limits for a SendTargets response (many targets, repeated keys).
    pub const SEND_TARGETS: TextLimits = TextLimits { max_pairs: 64 * 1024, max_len: 1024 * 1024 };
}

/// One borrowed `key=value` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair<'a> {
    /// The key name.
    pub key: &'a str,
    /// The value, verbatim.
    pub value: &'a str,
}

/// The value-length limit for `key`: 8192 for CHAP keys and SendTargets
/// material, 255 for the rest.
pub fn max_value_len(key: &str) -> usize {
    if key.starts_with("CHAP_")
        || key == "SendTargets"
        || key == "TargetAddress"
        || key.starts_with("X-")
        || key.starts_with("X#")
    {
        MAX_VALUE_LEN
    } else {
        MAX_STANDARD_VALUE_LEN
    }
}

fn valid_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'@' | b'_' | b'#')
}

/// Parse text data with the negotiation limits. Duplicates are allowed here
/// (SendTargets repeats keys); see [`check_no_duplicates`].
pub fn parse(data: &[u8]) -> Result<Vec<Pair<'_>>, TextError> {
    parse_with(data, TextLimits::NEGOTIATION)
}

/// Parse text data with explicit limits.
pub fn parse_with(data: &[u8], limits: TextLimits) -> Result<Vec<Pair<'_>>, TextError> {
    if data.len() > limits.max_len {
        return Err(TextError::TooLong { len: data.len(), max: limits.max_len });
    }
    let mut out = Vec::new();
    let mut offset = 0usize;
    for chunk in data.split(|&b| b == 0) {
        let start = offset;
        offset += chunk.len() + 1;
        if chunk.is_empty() {
            // Padding NULs, or the empty string after the final NUL.
            continue;
        }
        if out.len() >= limits.max_pairs {
            return Err(TextError::TooManyPairs { max: limits.max_pairs });
        }
        let eq = chunk.iter().position(|&b| b == b'=').ok_or(TextError::MissingEquals { offset: start })?;
        let (kb, vb) = (&chunk[..eq], &chunk[eq + 1..]);
        if kb.is_empty() {
            return Err(TextError::EmptyKey { offset: start });
        }
        if kb.len() > MAX_KEY_LEN {
            return Err(TextError::KeyTooLong { offset: start, len: kb.len() });
        }
        if !kb.iter().all(|&b| valid_key_byte(b)) {
            return Err(TextError::InvalidKey { offset: start });
        }
        // Keys are ASCII (checked above), so this cannot fail.
        let key = std::str::from_utf8(kb).map_err(|_| TextError::InvalidKey { offset: start })?;
        let max = max_value_len(key);
        if vb.len() > max {
            return Err(TextError::ValueTooLong { key: key.to_string(), len: vb.len(), max });
        }
        let value =
            std::str::from_utf8(vb).map_err(|e| TextError::InvalidUtf8 { offset: start + eq + 1 + e.valid_up_to() })?;
        out.push(Pair { key, value });
    }
    Ok(out)
}

/// Fail with [`TextError::DuplicateKey`] if any key appears twice.
pub fn check_no_duplicates(pairs: &[Pair<'_>]) -> Result<(), TextError> {
    for (i, p) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|q| q.key == p.key) {
            return Err(TextError::DuplicateKey(p.key.to_string()));
        }
    }
    Ok(())
}

/// Builds text data: `key=value\0` strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextWriter {
    buf: Vec<u8>,
}

impl TextWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }
    /// Append `key=value\0`.
    pub fn push(&mut self, key: &str, value: &str) -> &mut Self {
        self.buf.reserve(key.len() + value.len() + 2);
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.push(b'=');
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
        self
    }
    /// Append a numeric value in decimal.
    pub fn push_num(&mut self, key: &str, value: u64) -> &mut Self {
        self.push(key, &value.to_string())
    }
    /// Append a boolean as `Yes`/`No`.
    pub fn push_bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.push(key, bool_str(value))
    }
    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
    /// The encoded bytes, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Encode pairs into text data.
pub fn encode<'a, I>(pairs: I) -> Vec<u8>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut w = TextWriter::new();
    for (k, v) in pairs {
        w.push(k, v);
    }
    w.into_bytes()
}

/// `Yes` or `No`.
pub fn bool_str(v: bool) -> &'static str {
    if v {
        YES
    } else {
        NO
    }
}

/// Parse a boolean value (`Yes`/`No`, case-sensitive per RFC 7143 §6.1).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        YES => Some(true),
        NO => Some(false),
        _ => None,
    }
}

/// Parse a numerical value: decimal, or hexadecimal with a `0x`/`0X`
/// prefix (RFC 7143 §6.1). At most 64 bits.
pub fn parse_number(v: &str) -> Option<u64> {
    if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(hex, 16).ok()
    } else {
        if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        v.parse().ok()
    }
}

/// Parse a numerical value and check `min..=max`.
pub fn parse_number_in(v: &str, min: u64, max: u64) -> Option<u64> {
    parse_number(v).filter(|n| (min..=max).contains(n))
}

/// The items of a list value (comma separated), at most [`MAX_PAIRS`].
pub fn parse_list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').take(MAX_PAIRS)
}

/// True for the special values that are not a real answer
/// (`Reject`, `Irrelevant`, `NotUnderstood`).
pub fn is_special(v: &str) -> bool {
    matches!(v, REJECT | IRRELEVANT | NOT_UNDERSTOOD)
}

/// Joins text that arrives over several PDUs (C bit), bounded by
/// [`MAX_TEXT_LEN`] (or a limit of the caller's choice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextAccumulator {
    buf: Vec<u8>,
    max: usize,
}

impl Default for TextAccumulator {
    fn default() -> Self {
        Self::new(MAX_TEXT_LEN)
    }
}

impl TextAccumulator {
    /// An empty accumulator refusing more than `max` bytes in total.
    pub fn new(max: usize) -> Self {
        TextAccumulator { buf: Vec::new(), max }
    }
    /// Append one PDU's data segment.
    pub fn push(&mut self, data: &[u8]) -> Result<(), TextError> {
        let len = self.buf.len().saturating_add(data.len());
        if len > self.max {
            return Err(TextError::TooLong { len, max: self.max });
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }
    /// Bytes gathered so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
    /// True when nothing was gathered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// Take the gathered bytes, leaving the accumulator empty.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
    /// Drop what was gathered.
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn basic_parse() {
        let p = parse(b"InitiatorName=iqn.x\0SessionType=Normal\0").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].key, "InitiatorName");
        assert_eq!(p[0].value, "iqn.x");
        assert_eq!(p[1].value, "Normal");
    }

    #[test]
    fn missing_final_nul_and_padding() {
        assert_eq!(parse(b"A=1").unwrap(), vec![Pair { key: "A", value: "1" }]);
        assert_eq!(parse(b"A=1\0\0\0\0").unwrap().len(), 1);
        assert_eq!(parse(b"").unwrap().len(), 0);
        assert_eq!(parse(b"\0\0").unwrap().len(), 0);
        assert_eq!(parse(b"A=\0").unwrap(), vec![Pair { key: "A", value: "" }]);
    }

    #[test]
    fn errors() {
        assert_eq!(parse(b"A1\0"), Err(TextError::MissingEquals { offset: 0 }));
        assert_eq!(parse(b"B=2\0=1\0"), Err(TextError::EmptyKey { offset: 4 }));
        let long = format!("{}=1", "K".repeat(64));
        assert!(matches!(parse(long.as_bytes()), Err(TextError::KeyTooLong { len: 64, .. })));
        let ok = format!("{}=1", "K".repeat(63));
        assert!(parse(ok.as_bytes()).is_ok());
        let v = format!("A={}", "v".repeat(256));
        assert!(matches!(parse(v.as_bytes()), Err(TextError::ValueTooLong { .. })));
        let v = format!("CHAP_C=0x{}", "a".repeat(1000));
        assert!(parse(v.as_bytes()).is_ok());
        assert!(matches!(parse(b"A=\xff\xfe"), Err(TextError::InvalidUtf8 { offset: 2 })));
        assert!(matches!(parse(b"A B=1"), Err(TextError::InvalidKey { .. })));
        let many: Vec<u8> = (0..257).flat_map(|i| format!("K{i}=1\0").into_bytes()).collect();
        assert_eq!(parse(&many), Err(TextError::TooManyPairs { max: 256 }));
        let huge = vec![b'a'; MAX_TEXT_LEN + 1];
        assert!(matches!(parse(&huge), Err(TextError::TooLong { .. })));
    }

    #[test]
    fn duplicates() {
        let p = parse(b"A=1\0B=2\0A=3\0").unwrap();
        assert_eq!(check_no_duplicates(&p), Err(TextError::DuplicateKey("A".into())));
        assert!(check_no_duplicates(&p[..2]).is_ok());
    }

    #[test]
    fn values() {
        assert_eq!(parse_number("8192"), Some(8192));
        assert_eq!(parse_number("0x2000"), Some(8192));
        assert_eq!(parse_number("0X2000"), Some(8192));
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("-1"), None);
        assert_eq!(parse_number("+1"), None);
        assert_eq!(parse_number("12a"), None);
        assert_eq!(parse_number("99999999999999999999999"), None);
        assert_eq!(parse_number_in("511", 512, 1 << 24), None);
        assert_eq!(parse_number_in("512", 512, 1 << 24), Some(512));
        assert_eq!(parse_bool("Yes"), Some(true));
        assert_eq!(parse_bool("No"), Some(false));
        assert_eq!(parse_bool("yes"), None);
        assert_eq!(parse_list("CRC32C,None").collect::<Vec<_>>(), vec!["CRC32C", "None"]);
        assert!(is_special("Irrelevant") && is_special("Reject") && is_special("NotUnderstood"));
        assert!(!is_special("None"));
    }

    #[test]
    fn writer_and_accumulator() {
        let mut w = TextWriter::new();
        w.push("A", "1").push_bool("B", true).push_num("C", 7);
        assert_eq!(w.as_bytes(), b"A=1\0B=Yes\0C=7\0");
        assert_eq!(encode([("X", "y")]), b"X=y\0");
        let mut acc = TextAccumulator::new(10);
        acc.push(b"A=1").unwrap();
        acc.push(b"23\0").unwrap();
        assert_eq!(parse(acc.as_bytes()).unwrap()[0].value, "123");
        assert!(acc.push(&[0; 5]).is_err());
        assert_eq!(acc.take().len(), 6);
        assert!(acc.is_empty());
    }

    /// Every prefix of valid text either parses (to a prefix of the pairs,
    /// the last possibly truncated) or fails cleanly; never panics.
    #[test]
    fn every_prefix_truncation() {
        let full = encode([
            ("InitiatorName", "iqn.2004-10.com.ubuntu:01:abcdef"),
            ("SessionType", "Normal"),
            ("HeaderDigest", "CRC32C,None"),
            ("MaxRecvDataSegmentLength", "262144"),
            ("TargetAlias", "dév"),
        ]);
        let all = parse(&full).unwrap();
        for n in 0..=full.len() {
            match parse(&full[..n]) {
                Ok(p) => {
                    assert!(p.len() <= all.len());
                    for (i, q) in p.iter().enumerate() {
                        assert_eq!(q.key, all[i].key, "prefix {n}");
                        assert!(all[i].value.starts_with(q.value), "prefix {n}");
                    }
                }
                Err(e) => assert!(
                    matches!(e, TextError::MissingEquals { .. } | TextError::InvalidUtf8 { .. }),
                    "prefix {n}: {e}"
                ),
            }
        }
    }

    fn key_strategy() -> impl Strategy<Value = String> {
        "[A-Za-z][A-Za-z0-9.+@_-]{0,62}"
    }
    fn value_strategy() -> impl Strategy<Value = String> {
        "[^\u{0}]{0,40}".prop_filter("len", |s| s.len() <= MAX_STANDARD_VALUE_LEN)
    }

    proptest! {
        #[test]
        fn roundtrip(pairs in proptest::collection::vec((key_strategy(), value_strategy()), 0..40)) {
            let data = encode(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let parsed = parse(&data).unwrap();
            prop_assert_eq!(parsed.len(), pairs.len());
            for (p, (k, v)) in parsed.iter().zip(pairs.iter()) {
                prop_assert_eq!(p.key, k.as_str());
                prop_assert_eq!(p.value, v.as_str());
            }
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            if let Ok(p) = parse(&data) {
                let _ = check_no_duplicates(&p);
                for q in p {
                    let _ = parse_number(q.value);
                    let _ = parse_list(q.value).count();
                }
            }
        }
    }
}
