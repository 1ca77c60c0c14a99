//! Sizes as the configuration writes them: "4GiB", "512M", 1048576.

use serde::Deserialize;

/// A size given as a string ("4GiB", "512M", "1048576") or an integer.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    /// A number of bytes.
    Int(i64),
    /// Bytes with an optional binary unit (see [`parse_size`]).
    Str(String),
}

/// Parse "4GiB", "512MiB", "1G", "4096", "2T" (binary multiples). `None` on
/// anything else, including overflow and zero.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult).filter(|v| *v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4GiB"), Some(4 << 30));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1 TiB"), Some(1 << 40));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("GiB"), None);
        assert_eq!(parse_size("4XB"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
        assert_eq!(parse_size("18446744073709551615G"), None);
    }
}
