//! Our NVMe host NQN and host identifier: given (`--hostnqn`, or the
//! `OXCOPY_HOSTNQN` environment variable), else derived from
//! `/etc/machine-id` (stable on this machine), else random.

use oxcopy_initiator::nvme::NvmeConfig;
use sha2::{Digest, Sha256};

/// Environment variable with our host NQN (`--hostnqn` wins).
pub const ENV_HOSTNQN: &str = "OXCOPY_HOSTNQN";

/// Where the stable default host NQN comes from.
const MACHINE_ID: &str = "/etc/machine-id";

/// Our host NQN and host identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    pub hostnqn: String,
    pub hostid: [u8; 16],
}

/// 16 bytes shaped as an RFC 4122 version 4 UUID, from a hash of `seed`.
fn uuid_from(seed: &[u8]) -> [u8; 16] {
    let d = Sha256::digest(seed);
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

fn uuid_text(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The host identity: `explicit` (from `--hostnqn` or `OXCOPY_HOSTNQN`) with
/// a host ID derived from it; else one derived from the machine ID (the
/// same on every run on this machine); else a random one.
pub fn host_identity(explicit: Option<&str>, machine_id: Option<&str>) -> HostIdentity {
    if let Some(n) = explicit {
        return HostIdentity { hostnqn: n.to_string(), hostid: uuid_from(n.as_bytes()) };
    }
    if let Some(m) = machine_id.map(str::trim).filter(|m| !m.is_empty()) {
        let id = uuid_from(format!("oxcopy-hostnqn:{m}").as_bytes());
        return HostIdentity { hostnqn: format!("nqn.2014-08.org.nvmexpress:uuid:{}", uuid_text(&id)), hostid: id };
    }
    let d = NvmeConfig::default();
    HostIdentity { hostnqn: d.hostnqn, hostid: d.hostid }
}

/// [`host_identity`] with this machine's `/etc/machine-id`.
pub fn default_host_identity(explicit: Option<&str>) -> HostIdentity {
    let m = std::fs::read_to_string(MACHINE_ID).ok();
    host_identity(explicit, m.as_deref())
}

/// Check a `--hostnqn` value.
pub fn check_hostnqn(n: &str) -> Result<(), String> {
    if !n.starts_with("nqn.") || n.len() > 223 || n.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(format!("host NQN {n:?} must start with nqn., be at most 223 bytes and contain no whitespace"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_identities() {
        let a = host_identity(None, Some("0123456789abcdef0123456789abcdef\n"));
        let b = host_identity(None, Some("0123456789abcdef0123456789abcdef"));
        assert_eq!(a, b, "stable across runs");
        assert!(a.hostnqn.starts_with("nqn.2014-08.org.nvmexpress:uuid:"), "{}", a.hostnqn);
        assert_eq!(a.hostnqn.len(), "nqn.2014-08.org.nvmexpress:uuid:".len() + 36);
        assert_eq!(a.hostid[6] >> 4, 4, "version 4 layout");
        assert_ne!(host_identity(None, Some("other")).hostnqn, a.hostnqn);
        let e = host_identity(Some("nqn.2026-12.x:me"), Some("ignored"));
        assert_eq!(e.hostnqn, "nqn.2026-12.x:me");
        assert_eq!(e.hostid, host_identity(Some("nqn.2026-12.x:me"), None).hostid);
        // No machine ID: random, different each time.
        assert_ne!(host_identity(None, None).hostid, host_identity(None, Some("")).hostid);
        assert!(check_hostnqn("nqn.x").is_ok());
        assert!(check_hostnqn("iqn.x").is_err() && check_hostnqn("nqn.a b").is_err());
    }
}
