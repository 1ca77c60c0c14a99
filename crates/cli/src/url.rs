//! Copy endpoints: iSCSI URLs in the libiscsi convention
//! `iscsi://[user[%secret]@]host[:port]/target-iqn/lun[?lba=N&blocks=M]`,
//! NVMe/TCP URLs `nvme+tcp://host[:port]/subsystem-nqn/nsid[?lba=N&blocks=M]`,
//! or local paths.

use std::fmt;
use std::path::PathBuf;

/// Default iSCSI port.
pub const DEFAULT_PORT: u16 = 3260;
/// Default NVMe/TCP port.
pub const DEFAULT_NVME_PORT: u16 = 4420;

/// Where a copy reads or writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A LUN (or a block range of one) behind an iSCSI target.
    Iscsi(IscsiUrl),
    /// A namespace (or a block range of one) of an NVMe/TCP subsystem.
    Nvme(NvmeUrl),
    /// A regular file or block device on this machine.
    Local(PathBuf),
}

/// A parsed `iscsi://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct IscsiUrl {
    /// CHAP user name from the URL, if any.
    pub user: Option<String>,
    /// CHAP secret from the URL, if any (never displayed).
    pub secret: Option<String>,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Target name (iqn./eui./naa.).
    pub target: String,
    /// LUN number.
    pub lun: u64,
    /// `?lba=`: first block of the range (default 0).
    pub lba: Option<u64>,
    /// `?blocks=`: number of blocks (default: to the end of the LUN).
    pub blocks: Option<u64>,
}

impl fmt::Debug for IscsiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IscsiUrl({self})")
    }
}

impl IscsiUrl {
    /// `host:port` as written (IPv6 in brackets), for connecting and messages.
    pub fn portal(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The URL with the secret left out (safe for messages, logs and JSON).
impl fmt::Display for IscsiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "iscsi://")?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        write!(f, "{}/{}/{}", self.portal(), self.target, self.lun)?;
        let mut sep = '?';
        if let Some(l) = self.lba {
            write!(f, "{sep}lba={l}")?;
            sep = '&';
        }
        if let Some(b) = self.blocks {
            write!(f, "{sep}blocks={b}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Iscsi(u) => u.fmt(f),
            Location::Nvme(u) => u.fmt(f),
            Location::Local(p) => write!(f, "{}", p.display()),
        }
    }
}

const FORM: &str = "expected iscsi://[user[%secret]@]host[:port]/target-iqn/lun[?lba=N&blocks=M]";

/// Parse a copy endpoint: `iscsi://...` or a local path.
pub fn parse_location(s: &str) -> Result<Location, String> {
    if s.is_empty() {
        return Err("empty path".into());
    }
    if s == "-" {
        return Err("'-' (standard input/output) is not supported: give a file, block device or iscsi:// URL".into());
    }
    if let Some(scheme_end) = s.find("://") {
        let scheme = &s[..scheme_end];
        if scheme.eq_ignore_ascii_case("iscsi") {
            return parse_iscsi_url(s).map(Location::Iscsi);
        }
        if scheme.eq_ignore_ascii_case("nvme+tcp") {
            return parse_nvme_url(s).map(Location::Nvme);
        }
        if scheme.eq_ignore_ascii_case("nvme") || scheme.eq_ignore_ascii_case("nvme-tcp") {
            return Err(format!("unsupported URL scheme {scheme:?}: NVMe/TCP URLs start with nvme+tcp://"));
        }
        if !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-') {
            return Err(format!(
                "unsupported URL scheme {scheme:?}: only iscsi:// and nvme+tcp:// URLs and local paths are accepted"
            ));
        }
    }
    if s.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("iscsi:")) {
        return parse_iscsi_url(s).map(Location::Iscsi);
    }
    if s.get(..9).is_some_and(|p| p.eq_ignore_ascii_case("nvme+tcp:")) {
        return parse_nvme_url(s).map(Location::Nvme);
    }
    Ok(Location::Local(PathBuf::from(s)))
}

/// Parse an `iscsi://` URL (the LUN is required).
pub fn parse_iscsi_url(s: &str) -> Result<IscsiUrl, String> {
    let bad = |why: &str| format!("bad iSCSI URL {:?}: {why} ({FORM})", redact(s));
    let rest = match s.get(..8) {
        Some(p) if p.eq_ignore_ascii_case("iscsi://") => &s[8..],
        _ => return Err(bad("must start with iscsi://")),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = rest.split_once('/').ok_or_else(|| bad("missing /target-iqn/lun"))?;
    // Credentials: everything before the last '@' of the authority.
    let (creds, hostport) = match authority.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, authority),
    };
    let (user, secret) = match creds {
        None => (None, None),
        Some(c) => {
            let (u, p) = match c.split_once('%') {
                Some((u, p)) => (u, Some(p)),
                None => (c, None),
            };
            if u.is_empty() {
                return Err(bad("empty user name before '@'"));
            }
            if p == Some("") {
                return Err(bad("empty secret after '%'"));
            }
            (Some(u.to_string()), p.map(str::to_string))
        }
    };
    let (host, port) = parse_host_port(hostport).map_err(|e| bad(&e))?;
    let path = path.strip_suffix('/').unwrap_or(path);
    let mut parts = path.split('/');
    let target = parts.next().unwrap_or("");
    let lun = parts.next();
    if parts.next().is_some() {
        return Err(bad("too many path components"));
    }
    if target.is_empty() {
        return Err(bad("missing target name"));
    }
    let lower = target.to_ascii_lowercase();
    if !(lower.starts_with("iqn.") || lower.starts_with("eui.") || lower.starts_with("naa.")) {
        return Err(bad(&format!("target name {target:?} must start with iqn., eui. or naa.")));
    }
    if target.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(bad("target name contains whitespace"));
    }
    let lun = match lun {
        None | Some("") => return Err(bad("missing LUN")),
        Some(l) => parse_u64(l).ok_or_else(|| bad(&format!("LUN {l:?} is not a number")))?,
    };
    let (mut lba, mut blocks) = (None, None);
    if let Some(q) = query {
        if q.is_empty() {
            return Err(bad("empty query after '?'"));
        }
        for kv in q.split('&') {
            let (k, v) = kv.split_once('=').ok_or_else(|| bad(&format!("query item {kv:?} is not key=value")))?;
            let n = parse_u64(v).ok_or_else(|| bad(&format!("{k}={v:?} is not a number")))?;
            let slot = match k {
                "lba" => &mut lba,
                "blocks" => &mut blocks,
                _ => return Err(bad(&format!("unknown query key {k:?} (known: lba, blocks)"))),
            };
            if slot.replace(n).is_some() {
                return Err(bad(&format!("{k} given twice")));
            }
        }
    }
    if blocks == Some(0) {
        return Err(bad("blocks=0 selects nothing"));
    }
    Ok(IscsiUrl { user, secret, host, port, target: target.to_string(), lun, lba, blocks })
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` (iSCSI: port 3260 by default).
pub fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    parse_host_port_default(s, DEFAULT_PORT)
}

/// [`parse_host_port`] with another default port.
pub fn parse_host_port_default(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(r) = s.strip_prefix('[') {
        let (h, after) = r.split_once(']').ok_or("unclosed '[' in host")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after ']'")?),
        };
        if h.is_empty() || !h.contains(':') {
            return Err("bracketed host must be an IPv6 address".into());
        }
        (h, port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => {
                if p.contains(':') {
                    return Err("IPv6 addresses must be in brackets, e.g. [::1]:3260".into());
                }
                (h, Some(p))
            }
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    if host.bytes().any(|b| b.is_ascii_whitespace() || b"/?#@%".contains(&b)) {
        return Err(format!("invalid host {host:?}"));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(format!("invalid port {p:?} (1..65535)")),
        },
    };
    Ok((host.to_string(), port))
}

/// A portal for `ls`: `host[:port]` or `iscsi://host[:port][/]`.
pub fn parse_portal(s: &str) -> Result<(String, u16), String> {
    let rest = match s.get(..8) {
        Some(p) if p.eq_ignore_ascii_case("iscsi://") => &s[8..],
        _ => s,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('@') || rest.contains('?') {
        return Err(format!("bad portal {s:?}: expected host[:port] (e.g. 192.0.2.7:3260 or [::1]:3260)"));
    }
    parse_host_port(rest).map_err(|e| format!("bad portal {s:?}: {e}"))
}

/// A parsed `nvme+tcp://host[:port]/subsystem-nqn/nsid[?lba=N&blocks=M]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (default 4420).
    pub port: u16,
    /// Subsystem NQN.
    pub nqn: String,
    /// Namespace ID (1..=0xFFFFFFFE).
    pub nsid: u32,
    /// `?lba=`: first block of the range (default 0).
    pub lba: Option<u64>,
    /// `?blocks=`: number of blocks (default: to the end of the namespace).
    pub blocks: Option<u64>,
}

impl NvmeUrl {
    /// `host:port` as written (IPv6 in brackets), for connecting and messages.
    pub fn portal(&self) -> String {
        portal_text(&self.host, self.port)
    }
}

impl fmt::Display for NvmeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nvme+tcp://{}/{}/{}", self.portal(), self.nqn, self.nsid)?;
        let mut sep = '?';
        if let Some(l) = self.lba {
            write!(f, "{sep}lba={l}")?;
            sep = '&';
        }
        if let Some(b) = self.blocks {
            write!(f, "{sep}blocks={b}")?;
        }
        Ok(())
    }
}

/// `host:port`, IPv6 in brackets.
pub fn portal_text(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

const NVME_FORM: &str = "expected nvme+tcp://host[:port]/subsystem-nqn/nsid[?lba=N&blocks=M]";

/// What `ls` / `inspect` may name on an NVMe/TCP address: the address
/// alone, a subsystem, or one namespace of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeTarget {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (default 4420).
    pub port: u16,
    /// Subsystem NQN, if given.
    pub nqn: Option<String>,
    /// Namespace ID, if given.
    pub nsid: Option<u32>,
}

/// Parse `nvme+tcp://host[:port][/nqn[/nsid]][/]` (no query).
pub fn parse_nvme_target(s: &str) -> Result<NvmeTarget, String> {
    let bad = |why: &str| {
        format!("bad NVMe/TCP address {s:?}: {why} (expected nvme+tcp://host[:port][/subsystem-nqn[/nsid]])")
    };
    let rest = match s.get(..11) {
        Some(p) if p.eq_ignore_ascii_case("nvme+tcp://") => &s[11..],
        _ => return Err(bad("must start with nvme+tcp://")),
    };
    if rest.contains('?') {
        return Err(bad("no ?query here"));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (rest, None),
    };
    if authority.contains('@') {
        return Err(bad("NVMe/TCP URLs take no user@"));
    }
    let (host, port) = parse_host_port_default(authority, DEFAULT_NVME_PORT).map_err(|e| bad(&e))?;
    let (mut nqn, mut nsid) = (None, None);
    if let Some(p) = path {
        let mut parts = p.split('/');
        let n = parts.next().unwrap_or("");
        check_nqn(n).map_err(|e| bad(&e))?;
        nqn = Some(n.to_string());
        if let Some(id) = parts.next() {
            nsid = Some(parse_nsid(id).map_err(|e| bad(&e))?);
        }
        if parts.next().is_some() {
            return Err(bad("too many path components"));
        }
    }
    Ok(NvmeTarget { host, port, nqn, nsid })
}

fn check_nqn(n: &str) -> Result<(), String> {
    if n.is_empty() {
        return Err("missing subsystem NQN".into());
    }
    if !n.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("nqn.")) {
        return Err(format!("subsystem NQN {n:?} must start with nqn."));
    }
    if n.len() > 223 {
        return Err(format!("subsystem NQN is {} bytes long (at most 223)", n.len()));
    }
    if n.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'?' || b == b'#') {
        return Err("subsystem NQN contains whitespace or a reserved character".into());
    }
    Ok(())
}

fn parse_nsid(s: &str) -> Result<u32, String> {
    match parse_u64(s) {
        None if s.is_empty() => Err("missing namespace ID".into()),
        None => Err(format!("namespace ID {s:?} is not a number")),
        Some(0) => Err("namespace ID 0 is not a namespace (IDs start at 1)".into()),
        Some(n) if n >= 0xFFFF_FFFF => Err(format!("namespace ID {n} is out of range (1..4294967294)")),
        Some(n) => Ok(n as u32),
    }
}

/// Parse an `nvme+tcp://` URL (the namespace ID is required).
pub fn parse_nvme_url(s: &str) -> Result<NvmeUrl, String> {
    let bad = |why: &str| format!("bad NVMe/TCP URL {s:?}: {why} ({NVME_FORM})");
    let rest = match s.get(..11) {
        Some(p) if p.eq_ignore_ascii_case("nvme+tcp://") => &s[11..],
        _ => return Err(bad("must start with nvme+tcp://")),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = rest.split_once('/').ok_or_else(|| bad("missing /subsystem-nqn/nsid"))?;
    if authority.contains('@') {
        return Err(bad("NVMe/TCP URLs take no user@ (see --hostnqn)"));
    }
    let (host, port) = parse_host_port_default(authority, DEFAULT_NVME_PORT).map_err(|e| bad(&e))?;
    let path = path.strip_suffix('/').unwrap_or(path);
    let mut parts = path.split('/');
    let nqn = parts.next().unwrap_or("");
    let nsid = parts.next();
    if parts.next().is_some() {
        return Err(bad("too many path components"));
    }
    check_nqn(nqn).map_err(|e| bad(&e))?;
    let nsid = parse_nsid(nsid.unwrap_or("")).map_err(|e| bad(&e))?;
    let (lba, blocks) = parse_range_query(query).map_err(|e| bad(&e))?;
    Ok(NvmeUrl { host, port, nqn: nqn.to_string(), nsid, lba, blocks })
}

/// `?lba=N&blocks=M` (both optional; blocks=0 refused).
fn parse_range_query(query: Option<&str>) -> Result<(Option<u64>, Option<u64>), String> {
    let (mut lba, mut blocks) = (None, None);
    if let Some(q) = query {
        if q.is_empty() {
            return Err("empty query after '?'".into());
        }
        for kv in q.split('&') {
            let (k, v) = kv.split_once('=').ok_or_else(|| format!("query item {kv:?} is not key=value"))?;
            let n = parse_u64(v).ok_or_else(|| format!("{k}={v:?} is not a number"))?;
            let slot = match k {
                "lba" => &mut lba,
                "blocks" => &mut blocks,
                _ => return Err(format!("unknown query key {k:?} (known: lba, blocks)")),
            };
            if slot.replace(n).is_some() {
                return Err(format!("{k} given twice"));
            }
        }
    }
    if blocks == Some(0) {
        return Err("blocks=0 selects nothing".into());
    }
    Ok((lba, blocks))
}

/// Decimal digits only (no sign, no spaces); `0x` hex is accepted too.
fn parse_u64(s: &str) -> Option<u64> {
    if let Some(h) = s.strip_prefix("0x") {
        return (!h.is_empty()).then(|| u64::from_str_radix(h, 16).ok()).flatten();
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The URL text with any `%secret` replaced, for error messages.
fn redact(s: &str) -> String {
    let Some(rest) = s.get(8..) else { return s.to_string() };
    let end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..end];
    match authority.rsplit_once('@') {
        Some((creds, host)) => match creds.split_once('%') {
            Some((u, _)) => format!("{}{u}%***@{host}{}", &s[..8], &rest[end..]),
            None => s.to_string(),
        },
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> IscsiUrl {
        match parse_location(s) {
            Ok(Location::Iscsi(u)) => u,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn good_urls() {
        let u = ok("iscsi://127.0.0.1/iqn.2026-11.dev.oxcopy:default/0");
        assert_eq!((u.host.as_str(), u.port, u.lun), ("127.0.0.1", 3260, 0));
        assert_eq!(u.target, "iqn.2026-11.dev.oxcopy:default");
        assert_eq!((u.user, u.secret, u.lba, u.blocks), (None, None, None, None));

        let u = ok("iscsi://alice%s3cr%t@host.example:3261/iqn.2000-01.x:y/17?lba=100&blocks=8");
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.secret.as_deref(), Some("s3cr%t"));
        assert_eq!((u.host.as_str(), u.port, u.lun, u.lba, u.blocks), ("host.example", 3261, 17, Some(100), Some(8)));
        assert_eq!(u.to_string(), "iscsi://alice@host.example:3261/iqn.2000-01.x:y/17?lba=100&blocks=8");
        assert!(!format!("{u:?}").contains("s3cr"));

        let u = ok("ISCSI://[::1]:3262/eui.0123456789abcdef/1/?blocks=4");
        assert_eq!((u.host.as_str(), u.port, u.blocks, u.lba), ("::1", 3262, Some(4), None));
        assert_eq!(u.portal(), "[::1]:3262");
        let u = ok("iscsi://bob@[fe80::1]/naa.600140512345678901234567890abcde/0?lba=0x10");
        assert_eq!((u.user.as_deref(), u.secret, u.lba), (Some("bob"), None, Some(16)));

        assert_eq!(parse_location("/dev/sdb").unwrap(), Location::Local("/dev/sdb".into()));
        assert_eq!(parse_location("./a:b").unwrap(), Location::Local("./a:b".into()));
        assert_eq!(parse_location("file.img").unwrap(), Location::Local("file.img".into()));
    }

    #[test]
    fn malformed_urls_give_one_line_errors() {
        let cases = [
            ("", "empty"),
            ("-", "not supported"),
            ("http://x/y", "unsupported URL scheme"),
            ("iscsi:/127.0.0.1/iqn.a:b/0", "must start with iscsi://"),
            ("iscsi:", "expected iscsi://"),
            ("iscsi://", "missing /target-iqn/lun"),
            ("iscsi://127.0.0.1", "missing /target-iqn/lun"),
            ("iscsi://127.0.0.1/", "missing target name"),
            ("iscsi://127.0.0.1/iqn.a:b", "missing LUN"),
            ("iscsi://127.0.0.1/iqn.a:b/", "missing LUN"),
            ("iscsi://127.0.0.1/iqn.a:b/x", "is not a number"),
            ("iscsi://127.0.0.1/iqn.a:b/-1", "is not a number"),
            ("iscsi://127.0.0.1/iqn.a:b/0/extra", "too many path components"),
            ("iscsi://127.0.0.1/disk/0", "must start with iqn."),
            ("iscsi:///iqn.a:b/0", "missing host"),
            ("iscsi://:3260/iqn.a:b/0", "missing host"),
            ("iscsi://h:0/iqn.a:b/0", "invalid port"),
            ("iscsi://h:65536/iqn.a:b/0", "invalid port"),
            ("iscsi://h:x/iqn.a:b/0", "invalid port"),
            ("iscsi://h:/iqn.a:b/0", "invalid port"),
            ("iscsi://::1/iqn.a:b/0", "IPv6 addresses must be in brackets"),
            ("iscsi://[::1/iqn.a:b/0", "unclosed"),
            ("iscsi://[host]/iqn.a:b/0", "IPv6"),
            ("iscsi://[::1]x/iqn.a:b/0", "junk"),
            ("iscsi://@h/iqn.a:b/0", "empty user"),
            ("iscsi://u%@h/iqn.a:b/0", "empty secret"),
            ("iscsi://h/iqn.a:b/0?", "empty query"),
            ("iscsi://h/iqn.a:b/0?lba", "not key=value"),
            ("iscsi://h/iqn.a:b/0?lba=x", "not a number"),
            ("iscsi://h/iqn.a:b/0?lba=-5", "not a number"),
            ("iscsi://h/iqn.a:b/0?lba=1&lba=2", "given twice"),
            ("iscsi://h/iqn.a:b/0?offset=1", "unknown query key"),
            ("iscsi://h/iqn.a:b/0?blocks=0", "selects nothing"),
            ("iscsi://h/iqn.a:b/0?blocks=99999999999999999999", "not a number"),
        ];
        for (s, want) in cases {
            let e = parse_location(s).expect_err(s);
            assert!(e.contains(want), "{s:?}: {e}");
            assert!(!e.contains('\n'), "{s:?}: multi-line error");
        }
        // Secrets never leak into errors.
        let e = parse_location("iscsi://u%topsecret@h/iqn.a:b/x").unwrap_err();
        assert!(!e.contains("topsecret") && e.contains("u%***@h"), "{e}");
    }

    #[test]
    fn portals() {
        assert_eq!(parse_portal("127.0.0.1").unwrap(), ("127.0.0.1".into(), 3260));
        assert_eq!(parse_portal("iscsi://h:3270/").unwrap(), ("h".into(), 3270));
        assert_eq!(parse_portal("[::1]:99").unwrap(), ("::1".into(), 99));
        assert!(parse_portal("h/iqn.x/0").is_err());
        assert!(parse_portal("").is_err());
        assert!(parse_portal("h:99999").is_err());
    }

    fn nvme(s: &str) -> NvmeUrl {
        match parse_location(s) {
            Ok(Location::Nvme(u)) => u,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn good_nvme_urls() {
        let u = nvme("nvme+tcp://127.0.0.1/nqn.2026-12.dev.oxcopy:nvme/1");
        assert_eq!(
            u,
            NvmeUrl {
                host: "127.0.0.1".into(),
                port: 4420,
                nqn: "nqn.2026-12.dev.oxcopy:nvme".into(),
                nsid: 1,
                lba: None,
                blocks: None
            }
        );
        assert_eq!(u.to_string(), "nvme+tcp://127.0.0.1:4420/nqn.2026-12.dev.oxcopy:nvme/1");
        let u = nvme("NVME+TCP://[fd00::5]:4421/nqn.2014-08.org.nvmexpress:uuid:1234/0x10/?lba=8&blocks=0x20");
        assert_eq!((u.host.as_str(), u.port, u.nsid, u.lba, u.blocks), ("fd00::5", 4421, 16, Some(8), Some(32)));
        assert_eq!(u.portal(), "[fd00::5]:4421");
        assert_eq!(u.to_string(), "nvme+tcp://[fd00::5]:4421/nqn.2014-08.org.nvmexpress:uuid:1234/16?lba=8&blocks=32");
        let u = nvme("nvme+tcp://san.example:4420/nqn.x/4294967294?blocks=1");
        assert_eq!((u.nsid, u.lba, u.blocks), (0xFFFF_FFFE, None, Some(1)));
    }

    #[test]
    fn bad_nvme_urls_exact_messages() {
        const F: &str = "(expected nvme+tcp://host[:port]/subsystem-nqn/nsid[?lba=N&blocks=M])";
        let cases = [
            ("nvme+tcp://h", "missing /subsystem-nqn/nsid"),
            ("nvme+tcp://h/", "missing subsystem NQN"),
            ("nvme+tcp://h/nqn.a", "missing namespace ID"),
            ("nvme+tcp://h/nqn.a/", "missing namespace ID"),
            ("nvme+tcp://h/nqn.a/0", "namespace ID 0 is not a namespace (IDs start at 1)"),
            ("nvme+tcp://h/nqn.a/4294967295", "namespace ID 4294967295 is out of range (1..4294967294)"),
            ("nvme+tcp://h/nqn.a/x", "namespace ID \"x\" is not a number"),
            ("nvme+tcp://h/nqn.a/1/2", "too many path components"),
            ("nvme+tcp://h/iqn.a:b/1", "subsystem NQN \"iqn.a:b\" must start with nqn."),
            ("nvme+tcp://u@h/nqn.a/1", "NVMe/TCP URLs take no user@ (see --hostnqn)"),
            ("nvme+tcp://:4420/nqn.a/1", "missing host"),
            ("nvme+tcp://h:0/nqn.a/1", "invalid port \"0\" (1..65535)"),
            ("nvme+tcp://::1/nqn.a/1", "IPv6 addresses must be in brackets, e.g. [::1]:3260"),
            ("nvme+tcp://[::1/nqn.a/1", "unclosed '[' in host"),
            ("nvme+tcp://h/nqn.a/1?", "empty query after '?'"),
            ("nvme+tcp://h/nqn.a/1?lba=x", "lba=\"x\" is not a number"),
            ("nvme+tcp://h/nqn.a/1?lba=1&lba=2", "lba given twice"),
            ("nvme+tcp://h/nqn.a/1?offset=1", "unknown query key \"offset\" (known: lba, blocks)"),
            ("nvme+tcp://h/nqn.a/1?blocks=0", "blocks=0 selects nothing"),
            ("nvme+tcp:h/nqn.a/1", "must start with nvme+tcp://"),
        ];
        for (s, why) in cases {
            let e = parse_location(s).expect_err(s);
            assert_eq!(e, format!("bad NVMe/TCP URL {s:?}: {why} {F}"), "{s}");
        }
        assert_eq!(
            parse_location("nvme://h/nqn.a/1").unwrap_err(),
            "unsupported URL scheme \"nvme\": NVMe/TCP URLs start with nvme+tcp://"
        );
        assert_eq!(
            parse_location("nvme+rdma://h/nqn.a/1").unwrap_err(),
            "unsupported URL scheme \"nvme+rdma\": only iscsi:// and nvme+tcp:// URLs and local paths are accepted"
        );
        // A long NQN.
        let long = format!("nvme+tcp://h/nqn.{}/1", "a".repeat(220));
        assert!(parse_location(&long).unwrap_err().contains("(at most 223)"));
    }

    #[test]
    fn nvme_targets() {
        let t = parse_nvme_target("nvme+tcp://127.0.0.1").unwrap();
        assert_eq!(t, NvmeTarget { host: "127.0.0.1".into(), port: 4420, nqn: None, nsid: None });
        let t = parse_nvme_target("nvme+tcp://[::1]:4421/nqn.a:b/").unwrap();
        assert_eq!(t, NvmeTarget { host: "::1".into(), port: 4421, nqn: Some("nqn.a:b".into()), nsid: None });
        let t = parse_nvme_target("nvme+tcp://h:1/nqn.a:b/3").unwrap();
        assert_eq!((t.nqn.as_deref(), t.nsid), (Some("nqn.a:b"), Some(3)));
        assert_eq!(
            parse_nvme_target("nvme+tcp://h/nqn.a/1?lba=1").unwrap_err(),
            "bad NVMe/TCP address \"nvme+tcp://h/nqn.a/1?lba=1\": no ?query here \
             (expected nvme+tcp://host[:port][/subsystem-nqn[/nsid]])"
        );
        assert!(parse_nvme_target("nvme+tcp://h/x").unwrap_err().contains("must start with nqn."));
        assert!(parse_nvme_target("h:4420").unwrap_err().contains("must start with nvme+tcp://"));
    }
}
