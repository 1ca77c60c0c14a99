//! Opening sessions and LUNs: name resolution, login (with CHAP), LUN
//! checks, capacity and Block Limits. Every failure here is a connection or
//! usage error (exit code 2) with the portal/target/LUN in the message.

use crate::auth::ChapOptions;
use crate::fail;
use crate::sense;
use crate::url::IscsiUrl;
use crate::vpd::{self, BlockLimits};
use bytes::Bytes;
use oxcopy_initiator::{ChapAlgorithm, InitiatorError, LoginError, Session, SessionConfig};
use oxcopy_scsi::wire::vpd::VpdPage;
use oxcopy_scsi::SenseKey;
use std::net::SocketAddr;
use std::time::Duration;

/// How we connect: our name, timeouts, CHAP.
#[derive(Debug, Clone)]
pub struct Connector {
    pub initiator_name: String,
    pub chap: ChapOptions,
    pub command_timeout: Duration,
    /// NVMe/TCP: our host NQN and host ID.
    pub nvme_host: crate::hostid::HostIdentity,
}

/// Resolve `host:port` (IP literal or name) to one address.
pub async fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| fail::connection(format!("cannot resolve host {host:?}: {e}")))?;
    addrs.next().ok_or_else(|| fail::connection(format!("host {host:?} has no address")))
}

/// Run a login; when the target refuses it (status class 2) after we offered
/// SHA-256, try once more offering MD5 only: tgt (and IET) read CHAP_A=7 as
/// SHA-1 where IANA says SHA-256, and fail the login.
pub async fn with_md5_retry<T, F, Fut>(cfg: SessionConfig, f: F) -> Result<T, InitiatorError>
where
    F: Fn(SessionConfig) -> Fut,
    Fut: std::future::Future<Output = Result<T, InitiatorError>>,
{
    let retry = md5_retry(&cfg);
    match (f(cfg).await, retry) {
        (Err(InitiatorError::Login(LoginError::Rejected { status })), Some(cfg)) if status.0 == 0x02 => {
            tracing::debug!("CHAP login refused with SHA-256 offered; retrying with MD5 only");
            f(cfg).await
        }
        (r, _) => r,
    }
}

/// The same configuration offering only MD5, when it offered more.
fn md5_retry(cfg: &SessionConfig) -> Option<SessionConfig> {
    let chap = cfg.chap.as_ref()?;
    if chap.algorithms == [ChapAlgorithm::Md5] || !chap.algorithms.contains(&ChapAlgorithm::Md5) {
        return None;
    }
    let mut c = cfg.clone();
    c.chap.as_mut()?.algorithms = vec![ChapAlgorithm::Md5];
    Some(c)
}

/// A login error in words.
pub fn describe_login_error(e: &InitiatorError) -> String {
    match e {
        InitiatorError::Login(LoginError::Rejected { status }) if status.0 == 0x02 && status.1 == 0x01 => {
            format!("{e} — wrong CHAP user or secret, or the target requires CHAP (see --chap-user)")
        }
        InitiatorError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (nothing listening there?)".into()
        }
        other => other.to_string(),
    }
}

impl Connector {
    /// The session configuration for `target` (None = discovery) with the
    /// CHAP credentials of `url` (if any) merged in.
    pub fn config(&self, target: Option<&str>, url: Option<&IscsiUrl>) -> anyhow::Result<SessionConfig> {
        let chap = self.chap.resolve(url.and_then(|u| u.user.as_deref()), url.and_then(|u| u.secret.as_deref()))?;
        Ok(SessionConfig {
            initiator_name: self.initiator_name.clone(),
            target_name: target.map(str::to_string),
            command_timeout: self.command_timeout,
            connect_timeout: Duration::from_secs(10),
            login_timeout: Duration::from_secs(15),
            chap,
            ..SessionConfig::default()
        })
    }

    /// Log in to `target` at `addr`.
    pub async fn login(&self, addr: SocketAddr, target: &str, url: Option<&IscsiUrl>) -> anyhow::Result<Session> {
        let cfg = self.config(Some(target), url)?;
        let res = with_md5_retry(cfg, |c| Session::connect(addr, c)).await;
        res.map_err(|e| fail::connection(format!("cannot log in to {target} at {addr}: {}", describe_login_error(&e))))
    }

    /// Log in to the target named by `url` and check (REPORT LUNS) that its
    /// LUN exists, naming the LUNs there are when it does not. Returns the
    /// session and the portal address it reached.
    pub async fn login_to_lun(&self, url: &IscsiUrl) -> anyhow::Result<(Session, SocketAddr)> {
        let addr = resolve(&url.host, url.port).await?;
        let session = self.login(addr, &url.target, Some(url)).await?;
        let luns = retry_ua(|| session.report_luns())
            .await
            .map_err(|e| fail::connection(format!("REPORT LUNS on {}: {}", url.target, sense::describe_error(&e))))?;
        if !luns.contains(&url.lun) {
            let list: Vec<String> = luns.iter().map(u64::to_string).collect();
            return Err(fail::connection(format!(
                "no LUN {} on target {} (it has LUN {})",
                url.lun,
                url.target,
                if list.is_empty() { "none".to_string() } else { list.join(", ") }
            )));
        }
        Ok((session, addr))
    }

    /// Connect to the LUN named by `url` and learn its geometry. The LUN
    /// must exist and be a disk.
    pub async fn open_lun(&self, url: &IscsiUrl) -> anyhow::Result<IscsiLun> {
        let (session, addr) = self.login_to_lun(url).await?;
        let where_ = || format!("{} LUN {}", url.target, url.lun);
        let std_inq = retry_ua(|| session.inquiry(url.lun, false, 0, 96))
            .await
            .map_err(|e| fail::connection(format!("INQUIRY of {}: {}", where_(), sense::describe_error(&e))))?;
        let inq = vpd::decode_standard_inquiry(&std_inq);
        let pdt = std_inq.first().copied().unwrap_or(0x1f);
        if pdt & 0x1f != 0 || pdt >> 5 != 0 {
            return Err(fail::usage(format!(
                "{} is not a disk (peripheral device type {})",
                where_(),
                inq.peripheral_device_type
            )));
        }
        let (blocks, block_size) = retry_ua(|| session.read_capacity16(url.lun)).await.map_err(|e| {
            fail::connection(format!("READ CAPACITY (16) of {}: {}", where_(), sense::describe_error(&e)))
        })?;
        if block_size == 0 || block_size % 512 != 0 || block_size > (1 << 20) {
            return Err(fail::connection(format!("{} reports an unusable block size of {block_size} bytes", where_())));
        }
        let pages = fetch_vpd(&session, url.lun, VpdPage::SUPPORTED_PAGES)
            .await
            .ok()
            .map(|d| vpd::decode_supported_pages(&d).codes);
        let has = |p: u8| pages.as_ref().is_some_and(|l| l.contains(&p));
        let limits = if has(VpdPage::BLOCK_LIMITS) {
            fetch_vpd(&session, url.lun, VpdPage::BLOCK_LIMITS).await.ok().map(|d| vpd::decode_block_limits(&d))
        } else {
            None
        };
        let tpc = if has(VpdPage::THIRD_PARTY_COPY) {
            fetch_vpd(&session, url.lun, VpdPage::THIRD_PARTY_COPY).await.ok().map(|d| vpd::decode_third_party_copy(&d))
        } else {
            None
        };
        let offload = crate::offload::OffloadCaps::from_vpd(inq.third_party_copy, tpc.as_ref());
        Ok(IscsiLun { session, addr, url: url.clone(), blocks, block_size, limits, offload })
    }
}

/// An open LUN: its session and what we learned at open.
#[derive(Debug, Clone)]
pub struct IscsiLun {
    pub session: Session,
    pub addr: SocketAddr,
    pub url: IscsiUrl,
    /// Capacity in logical blocks.
    pub blocks: u64,
    pub block_size: u32,
    pub limits: Option<BlockLimits>,
    pub offload: crate::offload::OffloadCaps,
}

impl IscsiLun {
    pub fn lun(&self) -> u64 {
        self.url.lun
    }

    /// Largest transfer the target accepts in one command, in bytes
    /// (MAXIMUM TRANSFER LENGTH), if it says.
    pub fn max_transfer_bytes(&self) -> Option<u64> {
        let l = self.limits.as_ref()?.page.maximum_transfer_length?;
        (l > 0).then(|| l as u64 * self.block_size as u64)
    }

    /// The transfer size it prefers (OPTIMAL TRANSFER LENGTH), if it says.
    pub fn optimal_transfer_bytes(&self) -> Option<u64> {
        let l = self.limits.as_ref()?.page.optimal_transfer_length?;
        (l > 0).then(|| l as u64 * self.block_size as u64)
    }

    /// Same target device and LUN (same portal, target name and LUN).
    pub fn same_lun(&self, other: &IscsiLun) -> bool {
        self.addr == other.addr && self.url.target == other.url.target && self.url.lun == other.url.lun
    }
}

/// INQUIRY of a VPD page, re-asked with the full PAGE LENGTH when the first
/// (255-byte) answer was cut.
pub async fn fetch_vpd(session: &Session, lun: u64, page: u8) -> Result<Bytes, InitiatorError> {
    let d = retry_ua(|| session.inquiry(lun, true, page, 255)).await?;
    if d.len() >= 4 {
        let want = 4 + u16::from_be_bytes([d[2], d[3]]) as usize;
        if want > d.len() && d.len() >= 255 {
            let alloc = want.min(u16::MAX as usize) as u16;
            return retry_ua(|| session.inquiry(lun, true, page, alloc)).await;
        }
    }
    Ok(d)
}

/// Run a command again (up to 3 times) when it fails with UNIT ATTENTION
/// (power on / reset / parameters changed are reported once per nexus).
pub async fn retry_ua<T, F, Fut>(mut f: F) -> Result<T, InitiatorError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, InitiatorError>>,
{
    let mut tries = 0;
    loop {
        match f().await {
            Err(e) if tries < 3 && sense::sense_of(&e).is_some_and(|s| s.sense_key() == SenseKey::UNIT_ATTENTION) => {
                tries += 1;
            }
            other => return other,
        }
    }
}
