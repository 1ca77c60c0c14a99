//! `oxcopy ls PORTAL`: SendTargets discovery, then each target's LUNs with
//! capacity and block size (`nvme+tcp://` addresses: [`super::nvme::ls`]).

use crate::conn::{describe_login_error, resolve, retry_ua, with_md5_retry, Connector};
use crate::fail;
use crate::human;
use crate::sense;
use crate::url::parse_portal;
use crate::vpd;
use oxcopy_initiator::{Session, SessionConfig};
use serde::Serialize;

#[derive(Debug, Serialize)]
struct LunInfo {
    lun: u64,
    device_type: String,
    vendor: String,
    product: String,
    blocks: Option<u64>,
    block_size: Option<u32>,
    bytes: Option<u64>,
    /// Why capacity or identity could not be read.
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct TargetInfo {
    name: String,
    addresses: Vec<String>,
    luns: Vec<LunInfo>,
    /// Login or REPORT LUNS failure (the other targets are still listed).
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Listing {
    portal: String,
    targets: Vec<TargetInfo>,
}

async fn list_luns(s: &Session) -> Result<Vec<LunInfo>, String> {
    let luns = retry_ua(|| s.report_luns()).await.map_err(|e| format!("REPORT LUNS: {}", sense::describe_error(&e)))?;
    let mut out = Vec::new();
    for lun in luns {
        let mut info = LunInfo {
            lun,
            device_type: String::new(),
            vendor: String::new(),
            product: String::new(),
            blocks: None,
            block_size: None,
            bytes: None,
            error: None,
        };
        match retry_ua(|| s.inquiry(lun, false, 0, 96)).await {
            Ok(d) => {
                let inq = vpd::decode_standard_inquiry(&d);
                info.device_type = inq.peripheral_device_type.clone();
                info.vendor = inq.vendor;
                info.product = inq.product;
                if d.first().is_some_and(|b| b & 0x1f == 0) {
                    match retry_ua(|| s.read_capacity16(lun)).await {
                        Ok((blocks, bs)) => {
                            info.blocks = Some(blocks);
                            info.block_size = Some(bs);
                            info.bytes = Some(blocks.saturating_mul(bs as u64));
                        }
                        Err(e) => info.error = Some(format!("READ CAPACITY (16): {}", sense::describe_error(&e))),
                    }
                }
            }
            Err(e) => info.error = Some(format!("INQUIRY: {}", sense::describe_error(&e))),
        }
        out.push(info);
    }
    Ok(out)
}

/// Run `oxcopy ls`.
pub async fn ls(conn: &Connector, portal: &str, json: bool) -> anyhow::Result<()> {
    if super::nvme::is_nvme(portal) {
        return super::nvme::ls(conn, portal, json).await;
    }
    let (host, port) = parse_portal(portal).map_err(fail::usage)?;
    let addr = resolve(&host, port).await?;
    let cfg: SessionConfig = conn.config(None, None)?;
    let targets = with_md5_retry(cfg, |c| Session::discover(addr, c))
        .await
        .map_err(|e| fail::connection(format!("discovery at {addr}: {}", describe_login_error(&e))))?;
    let mut listing = Listing { portal: addr.to_string(), targets: Vec::new() };
    for t in targets {
        let mut info =
            TargetInfo { name: t.name.clone(), addresses: t.addresses.clone(), luns: Vec::new(), error: None };
        match conn.login(addr, &t.name, None).await {
            Ok(s) => {
                match list_luns(&s).await {
                    Ok(l) => info.luns = l,
                    Err(e) => info.error = Some(e),
                }
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.logout()).await;
            }
            Err(e) => info.error = Some(fail::one_line(&e)),
        }
        listing.targets.push(info);
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(());
    }
    if listing.targets.is_empty() {
        outln!("{}: no targets", listing.portal);
    }
    for t in &listing.targets {
        let addrs = if t.addresses.is_empty() { String::new() } else { format!("  ({})", t.addresses.join(", ")) };
        outln!("{}{addrs}", t.name);
        if let Some(e) = &t.error {
            outln!("  {e}");
        }
        for l in &t.luns {
            let what = match (l.blocks, l.block_size, l.bytes) {
                (Some(b), Some(bs), Some(n)) => format!("{:>10}  {b} × {bs} B", human::bytes(n)),
                _ => format!("{:>10}  {}", "-", l.device_type),
            };
            let id = format!("{} {}", l.vendor, l.product);
            let err = l.error.as_ref().map(|e| format!("  ({e})")).unwrap_or_default();
            outln!("  LUN {:<4} {what}  {}{err}", l.lun, id.trim());
        }
    }
    Ok(())
}
