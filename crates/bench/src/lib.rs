//! Shared by the benchmark binaries: login from an
//! `iscsi://host:port/target-iqn` URL (`oxcopy-copy-bench`,
//! `oxcopy-odx-bench`), and `nvme+tcp://host[:port]/nqn[/nsid]` URLs
//! (`oxcopy-io-bench`, `oxcopy-nvme-copy-bench`).

use anyhow::{anyhow, bail, Context, Result};
use oxcopy_initiator::{Session, SessionConfig};
use std::net::ToSocketAddrs;
use std::time::Duration;

/// Log in as `initiator` to the target named by `url`
/// (`iscsi://host:port/target-iqn`), with a one-hour command timeout and no
/// keepalive.
pub async fn connect(url: &str, initiator: &str) -> Result<Session> {
    let rest = url.strip_prefix("iscsi://").ok_or_else(|| anyhow!("URL must start with iscsi://"))?;
    let (hostport, target) = rest.split_once('/').ok_or_else(|| anyhow!("URL needs /target-iqn"))?;
    let target = target.trim_end_matches('/');
    let addr = hostport.to_socket_addrs()?.next().ok_or_else(|| anyhow!("cannot resolve {hostport}"))?;
    let cfg = SessionConfig {
        initiator_name: initiator.to_string(),
        command_timeout: Duration::from_secs(3600),
        keepalive_interval: None,
        ..SessionConfig::for_target(target)
    };
    Session::connect(addr, cfg).await.with_context(|| format!("login to {target} at {addr}"))
}

/// The default NVMe/TCP port.
pub const NVME_TCP_PORT: u16 = 4420;

/// The parts of an `nvme+tcp://host[:port]/subsystem-nqn[/nsid]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeUrl {
    /// Host name or address (without the brackets of an IPv6 address).
    pub host: String,
    /// TCP port (4420 when not given).
    pub port: u16,
    /// Subsystem NQN.
    pub nqn: String,
    /// Namespace ID, when the URL names one.
    pub nsid: Option<u32>,
}

/// Split `host[:port]` or `[v6][:port]` (port `default` when absent).
pub fn split_authority(authority: &str, default: u16, url: &str) -> Result<(String, u16)> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| anyhow!("unterminated [IPv6] host: {url}"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().with_context(|| format!("bad port in {url}"))?,
            None if after.is_empty() => default,
            None => bail!("junk after the [IPv6] host: {url}"),
        };
        Ok((h.to_string(), port))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => Ok((h.to_string(), p.parse().with_context(|| format!("bad port in {url}"))?)),
            None => Ok((authority.to_string(), default)),
        }
    }
}

/// Parse `nvme+tcp://host[:port]/subsystem-nqn[/nsid]` (an NQN has no `/`).
pub fn parse_nvme_url(url: &str) -> Result<NvmeUrl> {
    let rest = url.strip_prefix("nvme+tcp://").ok_or_else(|| anyhow!("URL must start with nvme+tcp://: {url}"))?;
    let (authority, path) = rest.split_once('/').ok_or_else(|| anyhow!("URL has no subsystem NQN: {url}"))?;
    let (host, port) = split_authority(authority, NVME_TCP_PORT, url)?;
    let (nqn, nsid) = match path.split_once('/') {
        Some((nqn, "")) => (nqn, None),
        Some((nqn, ns)) => {
            let nsid: u32 = ns.parse().with_context(|| format!("bad namespace ID in {url}"))?;
            if nsid == 0 || nsid == u32::MAX {
                bail!("namespace ID {nsid} is not a namespace: {url}");
            }
            (nqn, Some(nsid))
        }
        None => (path, None),
    };
    if host.is_empty() || nqn.is_empty() {
        bail!("URL needs a host and a subsystem NQN: {url}");
    }
    Ok(NvmeUrl { host, port, nqn: nqn.to_string(), nsid })
}

/// Resolve `host:port` to its first address.
pub fn resolve(host: &str, port: u16) -> Result<std::net::SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .ok_or_else(|| anyhow!("{host} resolves to no address"))
}
