//! Shared by the copy benchmark binaries (`oxcopy-copy-bench`,
//! `oxcopy-odx-bench`): login from an `iscsi://host:port/target-iqn` URL.

use anyhow::{anyhow, Context, Result};
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
