//! Human-readable sizes, rates and durations.

/// `1.50 GiB`, `512 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// `123.4 MiB/s`.
pub fn rate(bytes_per_second: f64) -> String {
    if !bytes_per_second.is_finite() || bytes_per_second <= 0.0 {
        return "—".into();
    }
    format!("{}/s", bytes(bytes_per_second as u64))
}

/// `45 s`, `3 min 20 s`, `2 h 5 min`, `3 d 4 h`: two units at most.
pub fn duration(seconds: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86400, "d"), (3600, "h"), (60, "min"), (1, "s")];
    for w in UNITS.windows(2) {
        let [(size, name), (next, next_name)] = [w[0], w[1]];
        if seconds >= size {
            let (hi, lo) = (seconds / size, seconds % size / next);
            return if lo > 0 { format!("{hi} {name} {lo} {next_name}") } else { format!("{hi} {name}") };
        }
    }
    format!("{seconds} s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1 KiB");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(128 << 20), "128 MiB");
        assert_eq!(rate(0.0), "—");
        assert_eq!(rate(2048.0), "2 KiB/s");
        assert_eq!(duration(0), "0 s");
        assert_eq!(duration(59), "59 s");
        assert_eq!(duration(200), "3 min 20 s");
        assert_eq!(duration(3600), "1 h");
        assert_eq!(duration(7500), "2 h 5 min");
        assert_eq!(duration(u64::from(u32::MAX)), "49710 d 6 h");
    }
}
