//! `oxcopy ls nvme+tcp://host[:port][/nqn]` and `oxcopy inspect
//! nvme+tcp://host[:port]/nqn/nsid`: the discovery log, the namespaces of
//! each NVM subsystem, and what a controller and namespace can offload
//! (ONCS, OCFS, MSSRL / MCL / MSRC), in text or JSON.

use crate::conn::Connector;
use crate::fail;
use crate::human;
use crate::nvme::{describe, mdts_bytes, namespace_geometry, Controller};
use crate::url::{parse_nvme_target, portal_text, NvmeTarget};
use oxcopy_initiator::nvme::{NvmeController, DISCOVERY_NQN};
use oxcopy_nvme::wire::identify::{oncs, IdentifyController, IdentifyNamespace, NSFEAT_THIN};
use oxcopy_nvme::wire::log::{AdrFam, DiscoveryEntry, SubType};
use serde::Serialize;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};

/// Whether `s` names an NVMe/TCP address (for `ls` and `inspect` to hand
/// it here).
pub fn is_nvme(s: &str) -> bool {
    s.get(..9).is_some_and(|p| p.eq_ignore_ascii_case("nvme+tcp:"))
}

#[derive(Debug, Serialize)]
struct NamespaceInfo {
    nsid: u32,
    blocks: Option<u64>,
    block_size: Option<u32>,
    bytes: Option<u64>,
    nguid: Option<String>,
    /// Why Identify Namespace failed.
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct SubsystemInfo {
    nqn: String,
    /// "nvm" or "discovery".
    #[serde(rename = "type")]
    kind: &'static str,
    /// Transport address and service (port) from the discovery log.
    traddr: String,
    trsvcid: String,
    model: Option<String>,
    serial: Option<String>,
    namespaces: Vec<NamespaceInfo>,
    /// Connect or namespace-list failure (the others are still listed).
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Listing {
    address: String,
    subsystems: Vec<SubsystemInfo>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn subtype_name(t: SubType) -> &'static str {
    match t {
        SubType::NVME => "nvm",
        SubType::DISCOVERY | SubType::CURRENT_DISCOVERY => "discovery",
        _ => "other",
    }
}

/// Where to connect for a discovery entry: its own address when it gives a
/// usable one, else the address we asked.
fn entry_addr(e: &DiscoveryEntry, asked: SocketAddr) -> SocketAddr {
    let ip = e.traddr.trim().parse::<IpAddr>().ok().filter(|ip| !ip.is_unspecified());
    let port = e.trsvcid.trim().parse::<u16>().ok().filter(|p| *p > 0);
    match (ip, port, e.adrfam) {
        (Some(ip), Some(port), AdrFam::IPV4 | AdrFam::IPV6) => SocketAddr::new(ip, port),
        (None, Some(port), _) => SocketAddr::new(asked.ip(), port),
        _ => asked,
    }
}

async fn list_namespaces(c: &Controller) -> Result<Vec<NamespaceInfo>, String> {
    let ids = c.ctrl.namespaces().await.map_err(|e| format!("namespace list: {}", describe(&e)))?;
    let mut out = Vec::new();
    for nsid in ids {
        let mut info = NamespaceInfo { nsid, blocks: None, block_size: None, bytes: None, nguid: None, error: None };
        match c.ctrl.namespace(nsid).await {
            Ok(g) => {
                info.blocks = Some(g.blocks);
                info.block_size = Some(g.block_size);
                info.bytes = Some(g.blocks.saturating_mul(g.block_size as u64));
                info.nguid = (g.nguid != [0; 16]).then(|| hex(&g.nguid));
            }
            Err(e) => info.error = Some(format!("Identify Namespace: {}", describe(&e))),
        }
        out.push(info);
    }
    Ok(out)
}

/// Connect to one subsystem and list its namespaces (failures recorded).
async fn subsystem(conn: &Connector, addr: SocketAddr, nqn: &str, mut info: SubsystemInfo) -> SubsystemInfo {
    let host = addr.ip().to_string();
    match conn.nvme_controller(&host, addr.port(), nqn).await {
        Ok(c) => {
            info.model = Some(c.ctrl.identify.model.trim().to_string());
            info.serial = Some(c.ctrl.identify.serial.trim().to_string());
            match list_namespaces(&c).await {
                Ok(n) => info.namespaces = n,
                Err(e) => info.error = Some(e),
            }
            c.close().await;
        }
        Err(e) => info.error = Some(fail::one_line(&e)),
    }
    info
}

/// `oxcopy ls nvme+tcp://host[:port][/nqn]`.
pub async fn ls(conn: &Connector, target: &str, json_out: bool) -> anyhow::Result<()> {
    let t = parse_nvme_target(target).map_err(fail::usage)?;
    if t.nsid.is_some() {
        return Err(fail::usage(format!(
            "ls takes an address or a subsystem, not a namespace: {target:?} (see oxcopy inspect)"
        )));
    }
    let addr = crate::conn::resolve(&t.host, t.port).await?;
    let address = portal_text(&t.host, t.port);
    let mut listing = Listing { address: address.clone(), subsystems: Vec::new() };
    let blank = |nqn: &str, kind, traddr: String, trsvcid: String| SubsystemInfo {
        nqn: nqn.to_string(),
        kind,
        traddr,
        trsvcid,
        model: None,
        serial: None,
        namespaces: Vec::new(),
        error: None,
    };
    match &t.nqn {
        Some(nqn) => {
            let info = blank(nqn, "nvm", addr.ip().to_string(), addr.port().to_string());
            let info = subsystem(conn, addr, nqn, info).await;
            // Only subsystem asked for: failing to reach it is the command failing.
            if let (Some(e), true) = (&info.error, info.namespaces.is_empty()) {
                return Err(fail::connection(e.clone()));
            }
            listing.subsystems.push(info);
        }
        None => {
            let entries = NvmeController::discover(addr, &conn.nvme_config())
                .await
                .map_err(|e| fail::connection(format!("NVMe discovery at {address}: {}", describe(&e))))?;
            let mut seen = Vec::new();
            for e in entries {
                let kind = subtype_name(e.subtype);
                let at = entry_addr(&e, addr);
                if seen.contains(&(at, e.subnqn.clone())) {
                    continue;
                }
                seen.push((at, e.subnqn.clone()));
                let info = blank(&e.subnqn, kind, e.traddr.trim().to_string(), e.trsvcid.trim().to_string());
                let info = if kind == "nvm" && e.subnqn != DISCOVERY_NQN {
                    subsystem(conn, at, &e.subnqn, info).await
                } else {
                    info
                };
                listing.subsystems.push(info);
            }
        }
    }
    if json_out {
        outln!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(());
    }
    if listing.subsystems.is_empty() {
        outln!("{}: no subsystems", listing.address);
    }
    for s in &listing.subsystems {
        let mut about = vec![format!("{} {}:{}", s.kind, s.traddr, s.trsvcid)];
        if let Some(m) = s.model.as_ref().filter(|m| !m.is_empty()) {
            about.push(m.clone());
        }
        outln!("{}  ({})", s.nqn, about.join(", "));
        if let Some(e) = &s.error {
            outln!("  {e}");
        }
        for n in &s.namespaces {
            let what = match (n.blocks, n.block_size, n.bytes) {
                (Some(b), Some(bs), Some(total)) => format!("{:>10}  {b} × {bs} B", human::bytes(total)),
                _ => format!("{:>10}", "-"),
            };
            let id = n.nguid.as_ref().map(|g| format!("  NGUID {g}")).unwrap_or_default();
            let err = n.error.as_ref().map(|e| format!("  ({e})")).unwrap_or_default();
            outln!("  NS {:<5} {what}{id}{err}", n.nsid);
        }
    }
    Ok(())
}

/// ONCS bits worth naming, with their names.
const ONCS_NAMES: [(u16, &str); 5] = [
    (oncs::COMPARE, "Compare"),
    (oncs::DSM, "Dataset Management"),
    (oncs::WRITE_ZEROES, "Write Zeroes"),
    (oncs::VERIFY, "Verify"),
    (oncs::COPY, "Copy"),
];

/// The Copy descriptor formats OCFS lists ("0h", "2h", ...).
fn copy_formats(ocfs: u16) -> Vec<String> {
    (0..16).filter(|b| ocfs & (1 << b) != 0).map(|b| format!("{b:x}h")).collect()
}

/// Bytes of data a command capsule carries (IOCCSZ × 16 − 64).
fn in_capsule(id: &IdentifyController) -> u32 {
    id.ioccsz.saturating_mul(16).saturating_sub(64)
}

fn version(v: u32) -> String {
    format!("{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff)
}

/// What the deallocated blocks read as (DLFEAT bits 2:0).
fn dealloc_reads(dlfeat: u8) -> &'static str {
    match dlfeat & 0x7 {
        1 => "zeroes",
        2 => "all ones",
        _ => "not reported",
    }
}

/// One line on what the namespace can offload.
pub fn offload_summary(id: &IdentifyController, ns: &IdentifyNamespace) -> String {
    if id.oncs & oncs::COPY == 0 {
        return "no offload (the controller has no Copy command)".into();
    }
    let formats = copy_formats(id.ocfs);
    let fmts = if formats.is_empty() { "0h".to_string() } else { formats.join(", ") };
    let across =
        if id.ocfs & 0b1100 != 0 { "across namespaces of the subsystem too" } else { "within the namespace only" };
    format!(
        "NVMe Copy: formats {fmts} ({across}); max {} ranges of {} blocks, {} blocks per command",
        u32::from(ns.msrc) + 1,
        ns.mssrl,
        ns.mcl
    )
}

/// `oxcopy inspect nvme+tcp://host[:port]/nqn/nsid`.
pub async fn inspect(conn: &Connector, url: &str, json_out: bool) -> anyhow::Result<()> {
    let t: NvmeTarget = parse_nvme_target(url).map_err(fail::usage)?;
    let (Some(nqn), Some(nsid)) = (t.nqn.clone(), t.nsid) else {
        return Err(fail::usage(format!(
            "inspect needs a namespace: nvme+tcp://host[:port]/subsystem-nqn/nsid, not {url:?} (see oxcopy ls)"
        )));
    };
    let c = conn.nvme_controller(&t.host, t.port, &nqn).await?;
    let geometry = namespace_geometry(&c, nsid).await?;
    let ns = c.ctrl.identify_namespace(nsid).await.map_err(|e| {
        fail::connection(format!("Identify Namespace {nsid} of {nqn} at {}: {}", c.portal, describe(&e)))
    })?;
    let id = c.ctrl.identify.clone();
    let cntlid = c.ctrl.cntlid;
    let addr = c.addr;
    let name = format!("nvme+tcp://{}/{nqn}/{nsid}", c.portal);
    c.close().await;

    let bytes = geometry.blocks.saturating_mul(geometry.block_size as u64);
    let oncs_list: Vec<&str> = ONCS_NAMES.iter().filter(|(b, _)| id.oncs & b != 0).map(|(_, n)| *n).collect();
    let formats = copy_formats(id.ocfs);
    let summary = offload_summary(&id, &ns);
    let thin = ns.nsfeat & NSFEAT_THIN != 0;
    let nguid = (ns.nguid != [0; 16]).then(|| hex(&ns.nguid));
    let eui64 = (ns.eui64 != [0; 8]).then(|| hex(&ns.eui64));
    let mdts = mdts_bytes(id.mdts);

    if json_out {
        let out = json!({
            "url": name,
            "address": addr.to_string(),
            "controller": {
                "cntlid": cntlid,
                "model": id.model.trim(),
                "serial": id.serial.trim(),
                "firmware": id.firmware.trim(),
                "subnqn": id.subnqn,
                "version": version(id.ver),
                "mdts": id.mdts,
                "max_transfer_bytes": mdts,
                "in_capsule_data_bytes": in_capsule(&id),
                "volatile_write_cache": id.vwc & 1 != 0,
                "namespaces": id.nn,
                "oncs": id.oncs,
                "optional_commands": oncs_list,
                "ocfs": id.ocfs,
                "copy_formats": formats,
            },
            "namespace": {
                "nsid": nsid,
                "blocks": geometry.blocks,
                "block_size": geometry.block_size,
                "bytes": bytes,
                "capacity_blocks": ns.ncap,
                "utilization_blocks": ns.nuse,
                "nguid": nguid,
                "eui64": eui64,
                "thin_provisioned": thin,
                "deallocated_reads": dealloc_reads(ns.dlfeat),
                "write_zeroes_deallocates": ns.dlfeat & 0x8 != 0,
                "mssrl": ns.mssrl,
                "mcl": ns.mcl,
                "msrc": ns.msrc,
            },
            "offload": {
                "copy": id.oncs & oncs::COPY != 0,
                "copy_formats": copy_formats(id.ocfs),
                "cross_namespace": id.ocfs & 0b1100 != 0,
                "max_ranges": u32::from(ns.msrc) + 1,
                "max_range_blocks": ns.mssrl,
                "max_copy_blocks": ns.mcl,
                "summary": summary,
            },
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    outln!("{name}");
    outln!("  {} {} — NVM namespace {nsid}", id.model.trim(), id.firmware.trim());
    outln!("  capacity: {} ({} blocks of {} bytes)", human::bytes(bytes), geometry.blocks, geometry.block_size);
    outln!("  offload: {summary}");
    outln!("");
    outln!("Controller");
    outln!("  model: {}", id.model.trim());
    outln!("  serial: {}", id.serial.trim());
    outln!("  firmware: {}", id.firmware.trim());
    outln!("  subsystem NQN: {}", id.subnqn);
    outln!("  controller ID: {cntlid}");
    outln!("  NVMe version: {}", version(id.ver));
    let mdts_text = match mdts {
        Some(b) => format!("{} ({} per command)", id.mdts, human::bytes(b)),
        None => "0 (no limit)".into(),
    };
    outln!("  MDTS: {mdts_text}");
    outln!("  in-capsule data: {} bytes", in_capsule(&id));
    outln!("  volatile write cache: {}", yes(id.vwc & 1 != 0));
    outln!("  namespaces: up to {}", id.nn);
    outln!("  optional NVM commands (ONCS {:#06x}):", id.oncs);
    for (bit, n) in ONCS_NAMES {
        outln!("    {n}: {}", yes(id.oncs & bit != 0));
    }
    let f = if formats.is_empty() { "none".to_string() } else { formats.join(", ") };
    outln!("  Copy formats (OCFS {:#06x}): {f}", id.ocfs);
    outln!("");
    outln!("Namespace {nsid}");
    outln!("  size: {} blocks ({})", geometry.blocks, human::bytes(bytes));
    outln!("  block size: {} bytes", geometry.block_size);
    outln!("  capacity / utilization: {} / {} blocks", ns.ncap, ns.nuse);
    outln!("  NGUID: {}", nguid.as_deref().unwrap_or("none"));
    if let Some(e) = &eui64 {
        outln!("  EUI-64: {e}");
    }
    outln!("  thin provisioned: {}", yes(thin));
    outln!("  deallocated blocks read as: {}", dealloc_reads(ns.dlfeat));
    outln!("  Write Zeroes may deallocate: {}", yes(ns.dlfeat & 0x8 != 0));
    outln!(
        "  Copy limits: MSSRL {} blocks per range, MCL {} blocks per command, MSRC {} ({} ranges)",
        ns.mssrl,
        ns.mcl,
        ns.msrc,
        u32::from(ns.msrc) + 1
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_summaries() {
        assert_eq!(copy_formats(0b101), vec!["0h", "2h"]);
        assert!(copy_formats(0).is_empty());
        assert_eq!(version(0x0002_0000), "2.0.0");
        assert_eq!(dealloc_reads(0b1001), "zeroes");
        let mut id = IdentifyController { oncs: oncs::COPY, ocfs: 0b101, ..IdentifyController::default() };
        let ns = IdentifyNamespace { mssrl: 65535, mcl: 1 << 24, msrc: 127, ..IdentifyNamespace::default() };
        assert_eq!(
            offload_summary(&id, &ns),
            "NVMe Copy: formats 0h, 2h (across namespaces of the subsystem too); max 128 ranges of 65535 blocks, \
             16777216 blocks per command"
        );
        id.oncs = 0;
        assert_eq!(offload_summary(&id, &ns), "no offload (the controller has no Copy command)");
        assert!(is_nvme("NVME+TCP://h") && !is_nvme("iscsi://h") && !is_nvme("nvme"));
    }

    #[test]
    fn discovery_entry_addresses() {
        let asked: SocketAddr = "192.0.2.1:4420".parse().unwrap();
        let mut e = DiscoveryEntry {
            trtype: oxcopy_nvme::wire::log::TrType::TCP,
            adrfam: AdrFam::IPV4,
            subtype: SubType::NVME,
            treq: 0,
            portid: 1,
            cntlid: 0xffff,
            asqsz: 32,
            eflags: 0,
            trsvcid: "4421".into(),
            subnqn: "nqn.x".into(),
            traddr: "192.0.2.9".into(),
            sectype: oxcopy_nvme::wire::log::SecType::NONE,
        };
        assert_eq!(entry_addr(&e, asked), "192.0.2.9:4421".parse().unwrap());
        e.traddr = "0.0.0.0".into();
        assert_eq!(entry_addr(&e, asked), "192.0.2.1:4421".parse().unwrap());
        e.trsvcid = "x".into();
        assert_eq!(entry_addr(&e, asked), asked);
    }
}
