//! NVMe/TCP: our host NQN, connecting to a subsystem (one controller per
//! subsystem and address, shared by both ends of a copy), opening a
//! namespace, and NVMe errors in words. Every failure to connect or to find
//! the namespace is a connection or usage error (exit code 2) naming the
//! address, subsystem and namespace.

use crate::conn::{resolve, Connector};
use crate::fail;
use crate::url::{portal_text, NvmeUrl};
use oxcopy_initiator::nvme::{NamespaceGeometry, NvmeConfig, NvmeController, NvmeError};
use oxcopy_nvme::wire::command::Status;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// An NVMe error in words.
pub fn describe(e: &NvmeError) -> String {
    match e {
        NvmeError::Status { status, .. } => describe_status(*status),
        NvmeError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (nothing listening there?)".into()
        }
        other => other.to_string(),
    }
}

/// An NVMe status in words, with its name.
pub fn describe_status(s: Status) -> String {
    let words = if s.same_code(Status::INVALID_OPCODE) {
        "the controller does not support this command"
    } else if s.same_code(Status::INVALID_FIELD) {
        "invalid field in the command"
    } else if s.same_code(Status::COMMAND_SIZE_LIMIT_EXCEEDED) {
        "the command exceeds the namespace's copy limits"
    } else if s.same_code(Status::INVALID_NAMESPACE) {
        "no such namespace"
    } else if s.same_code(Status::LBA_OUT_OF_RANGE) {
        "LBA out of range"
    } else if s.same_code(Status::NAMESPACE_WRITE_PROTECTED) {
        "the namespace is write protected"
    } else if s.same_code(Status::INCOMPATIBLE_NAMESPACE_OR_FORMAT) {
        "the namespaces' formats are incompatible for this copy"
    } else if s.same_code(Status::CONNECT_INVALID_PARAMETERS) {
        "the subsystem refused the connection (no such subsystem there?)"
    } else if s.same_code(Status::CONNECT_INVALID_HOST) {
        "the subsystem does not allow this host NQN (see --hostnqn)"
    } else if s.same_code(Status::WRITE_FAULT) {
        "write fault"
    } else if s.same_code(Status::UNRECOVERED_READ_ERROR) {
        "unrecovered read error"
    } else {
        return format!("NVMe status {s}");
    };
    format!("{words} (NVMe status {s})")
}

/// A connected controller of one subsystem at one address.
#[derive(Clone)]
pub struct Controller {
    pub ctrl: Arc<NvmeController>,
    pub addr: SocketAddr,
    /// `host:port` as written.
    pub portal: String,
    pub nqn: String,
}

impl fmt::Debug for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Controller({} at {})", self.nqn, self.portal)
    }
}

impl Controller {
    /// Same subsystem at the same address (one controller serves both).
    pub fn same_subsystem(&self, addr: SocketAddr, nqn: &str) -> bool {
        self.addr == addr && self.nqn == nqn
    }

    /// Shut the controller down if this is its last handle (else just drop it).
    pub async fn close(self) {
        if let Ok(c) = Arc::try_unwrap(self.ctrl) {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), c.shutdown()).await;
        }
    }
}

/// An open namespace: its controller and geometry.
#[derive(Debug, Clone)]
pub struct NvmeNs {
    pub ctl: Controller,
    pub url: NvmeUrl,
    pub geometry: NamespaceGeometry,
}

impl NvmeNs {
    pub fn nsid(&self) -> u32 {
        self.url.nsid
    }

    pub fn block_size(&self) -> u32 {
        self.geometry.block_size
    }

    /// Largest data transfer of one command (MDTS, in 4 KiB pages), if limited.
    pub fn max_transfer_bytes(&self) -> Option<u64> {
        mdts_bytes(self.ctl.ctrl.identify.mdts)
    }

    /// Same namespace of the same subsystem at the same address.
    pub fn same_namespace(&self, other: &NvmeNs) -> bool {
        self.ctl.same_subsystem(other.ctl.addr, &other.ctl.nqn) && self.nsid() == other.nsid()
    }

    /// "namespace N of NQN", for messages.
    pub fn name(&self) -> String {
        format!("namespace {} of {}", self.nsid(), self.ctl.nqn)
    }
}

/// MDTS in bytes (2^MDTS minimum-size pages of 4 KiB; 0 = no limit).
pub fn mdts_bytes(mdts: u8) -> Option<u64> {
    match mdts {
        0 => None,
        1..=51 => Some(4096u64 << mdts),
        _ => Some(u64::MAX),
    }
}

impl Connector {
    /// The NVMe/TCP host configuration.
    pub fn nvme_config(&self) -> NvmeConfig {
        NvmeConfig {
            hostnqn: self.nvme_host.hostnqn.clone(),
            hostid: self.nvme_host.hostid,
            timeout: self.command_timeout,
            ..NvmeConfig::default()
        }
    }

    /// Connect to subsystem `nqn` at `host:port`.
    pub async fn nvme_controller(&self, host: &str, port: u16, nqn: &str) -> anyhow::Result<Controller> {
        let portal = portal_text(host, port);
        let addr = resolve(host, port).await?;
        let ctrl = NvmeController::connect(addr, nqn, &self.nvme_config()).await.map_err(|e| {
            fail::connection(format!("cannot connect to NVMe subsystem {nqn} at {portal}: {}", describe(&e)))
        })?;
        Ok(Controller { ctrl: Arc::new(ctrl), addr, portal, nqn: nqn.to_string() })
    }

    /// Open the namespace `url` names, on `reuse`'s controller when that is
    /// the same subsystem at the same address.
    pub async fn open_namespace(&self, url: &NvmeUrl, reuse: Option<&Controller>) -> anyhow::Result<NvmeNs> {
        let ctl = match reuse {
            Some(c) if c.nqn == url.nqn && resolve(&url.host, url.port).await.is_ok_and(|a| a == c.addr) => c.clone(),
            _ => self.nvme_controller(&url.host, url.port, &url.nqn).await?,
        };
        let geometry = namespace_geometry(&ctl, url.nsid).await?;
        Ok(NvmeNs { ctl, url: url.clone(), geometry })
    }
}

/// Identify Namespace of `nsid`, an inactive or unknown one in words.
pub async fn namespace_geometry(ctl: &Controller, nsid: u32) -> anyhow::Result<NamespaceGeometry> {
    match ctl.ctrl.namespace(nsid).await {
        Ok(g) => Ok(g),
        Err(e) => {
            // An inactive namespace ID answers with an error or a zeroed structure.
            let have = ctl.ctrl.namespaces().await.unwrap_or_default();
            if !have.contains(&nsid) {
                let list: Vec<String> = have.iter().map(u32::to_string).collect();
                return Err(fail::usage(format!(
                    "no namespace {nsid} in NVMe subsystem {} at {} (namespaces: {})",
                    ctl.nqn,
                    ctl.portal,
                    if list.is_empty() { "none".to_string() } else { list.join(", ") }
                )));
            }
            Err(fail::connection(format!(
                "Identify Namespace {nsid} of {} at {}: {}",
                ctl.nqn,
                ctl.portal,
                describe(&e)
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mdts() {
        assert_eq!(mdts_bytes(0), None);
        assert_eq!(mdts_bytes(5), Some(128 << 10));
        assert_eq!(mdts_bytes(255), Some(u64::MAX));
    }

    #[test]
    fn statuses_in_words() {
        assert_eq!(
            describe_status(Status::INVALID_OPCODE),
            "the controller does not support this command (NVMe status INVALID_OPCODE+DNR)"
        );
        assert!(describe_status(Status::ABORT_REQUESTED).starts_with("NVMe status ABORT_REQUESTED"));
    }
}
