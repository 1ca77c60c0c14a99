//! `oxcopy inspect URL`: standard INQUIRY and the VPD pages that matter for
//! copies, decoded, plus what the LUN can offload in one sentence, and the
//! copy domain of the node (oxcopyd's vendor page C0h) and the layout of
//! the volume under the LUN (C1h) when it lists them. `nvme+tcp://`
//! namespaces: [`super::nvme::inspect`].

use crate::conn::{fetch_vpd, retry_ua, Connector};
use crate::fail;
use crate::human;
use crate::offload::OffloadCaps;
use crate::sense;
use crate::url::parse_iscsi_url;
use crate::vpd::{self, render::render, vpd_page_name};
use oxcopy_scsi::wire::vpd::VpdPage;
use serde_json::{json, Map, Value};

/// Pages decoded, in display order (all of them if listed by page 00h).
const PAGES: [u8; 8] = [
    VpdPage::UNIT_SERIAL_NUMBER,
    VpdPage::DEVICE_IDENTIFICATION,
    VpdPage::BLOCK_LIMITS,
    VpdPage::BLOCK_DEVICE_CHARACTERISTICS,
    VpdPage::LOGICAL_BLOCK_PROVISIONING,
    VpdPage::THIRD_PARTY_COPY,
    VpdPage::COPY_DOMAIN,
    VpdPage::VOLUME_LAYOUT,
];

fn decode(page: u8, d: &[u8]) -> anyhow::Result<Value> {
    Ok(match page {
        VpdPage::SUPPORTED_PAGES => serde_json::to_value(vpd::decode_supported_pages(d))?,
        VpdPage::UNIT_SERIAL_NUMBER => serde_json::to_value(vpd::decode_unit_serial_number(d))?,
        VpdPage::DEVICE_IDENTIFICATION => serde_json::to_value(vpd::decode_device_identification(d))?,
        VpdPage::BLOCK_LIMITS => serde_json::to_value(vpd::decode_block_limits(d))?,
        VpdPage::BLOCK_DEVICE_CHARACTERISTICS => serde_json::to_value(vpd::decode_block_device_characteristics(d))?,
        VpdPage::LOGICAL_BLOCK_PROVISIONING => serde_json::to_value(vpd::decode_logical_block_provisioning(d))?,
        VpdPage::THIRD_PARTY_COPY => serde_json::to_value(vpd::decode_third_party_copy(d))?,
        // Another vendor's C0h (or a newer layout): the reason and the bytes.
        VpdPage::COPY_DOMAIN => match vpd::decode_copy_domain(d) {
            Ok(c) => serde_json::to_value(c)?,
            Err(e) => json!({ "error": e.to_string(), "data": vpd::hex(d) }),
        },
        VpdPage::VOLUME_LAYOUT => json!({ "layout": oxcopy_scsi::wire::vpd::decode_volume_layout(d) }),
        _ => json!({ "data": vpd::hex(d) }),
    })
}

/// Run `oxcopy inspect`.
pub async fn inspect(conn: &Connector, url: &str, json_out: bool) -> anyhow::Result<()> {
    if super::nvme::is_nvme(url) {
        return super::nvme::inspect(conn, url, json_out).await;
    }
    let url = parse_iscsi_url(url).map_err(fail::usage)?;
    let (s, addr) = conn.login_to_lun(&url).await?;
    let lun = url.lun;
    let std_data = retry_ua(|| s.inquiry(lun, false, 0, 255))
        .await
        .map_err(|e| fail::connection(format!("INQUIRY: {}", sense::describe_error(&e))))?;
    let inq = vpd::decode_standard_inquiry(&std_data);
    let is_disk = std_data.first().is_some_and(|b| b & 0x1f == 0 && b >> 5 == 0);

    let mut pages = Map::new();
    let mut tpc = None;
    let mut domain = None;
    let listed = match fetch_vpd(&s, lun, VpdPage::SUPPORTED_PAGES).await {
        Ok(d) => {
            let p = vpd::decode_supported_pages(&d);
            pages.insert("00h".into(), serde_json::to_value(&p)?);
            p.codes
        }
        Err(e) => {
            pages.insert("00h".into(), json!({ "error": sense::describe_error(&e) }));
            Vec::new()
        }
    };
    for page in PAGES {
        if !listed.contains(&page) {
            continue;
        }
        let v = match fetch_vpd(&s, lun, page).await {
            Ok(d) => {
                if page == VpdPage::THIRD_PARTY_COPY {
                    tpc = Some(vpd::decode_third_party_copy(&d));
                }
                if page == VpdPage::COPY_DOMAIN {
                    domain = vpd::decode_copy_domain(&d).ok();
                }
                decode(page, &d)?
            }
            Err(e) => json!({ "error": sense::describe_error(&e) }),
        };
        pages.insert(vpd::code8(page), v);
    }
    let capacity = if is_disk {
        match retry_ua(|| s.read_capacity16(lun)).await {
            Ok((blocks, bs)) => {
                json!({ "blocks": blocks, "block_size": bs, "bytes": blocks.saturating_mul(bs as u64) })
            }
            Err(e) => json!({ "error": sense::describe_error(&e) }),
        }
    } else {
        Value::Null
    };
    let offload = OffloadCaps::from_vpd(inq.third_party_copy, tpc.as_ref());
    let mut off = serde_json::to_value(&offload)?;
    if let Value::Object(m) = &mut off {
        m.insert("summary".into(), Value::String(offload.summary()));
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.logout()).await;

    if json_out {
        let out = json!({
            "url": url.to_string(),
            "portal": addr.to_string(),
            "capacity": capacity,
            "inquiry": serde_json::to_value(&inq)?,
            "vpd": Value::Object(pages),
            "offload": off,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    outln!("{url}");
    outln!("  {} {} {} — {}", inq.vendor, inq.product, inq.revision, inq.peripheral_device_type);
    if let Some(b) = capacity.get("bytes").and_then(Value::as_u64) {
        outln!("  capacity: {} ({} blocks of {} bytes)", human::bytes(b), capacity["blocks"], capacity["block_size"]);
    }
    outln!("  offload: {}", offload.summary());
    if let Some(d) = &domain {
        outln!("  copy domain: {}", d.summary());
    }
    outln!("");
    outln!("Standard INQUIRY");
    out!("{}", render(&serde_json::to_value(&inq)?, 2));
    for (code, v) in &pages {
        let n = u8::from_str_radix(code.trim_end_matches('h'), 16).unwrap_or(0xff);
        if let (VpdPage::COPY_DOMAIN, Some(d)) = (n, &domain) {
            outln!("Copy domain (VPD {code})");
            out!("{}", d.render(2));
            continue;
        }
        if let (VpdPage::VOLUME_LAYOUT, Some(text)) = (n, v.get("layout").and_then(Value::as_str)) {
            outln!("Volume layout (VPD {code})");
            for line in text.lines() {
                outln!("  {line}");
            }
            continue;
        }
        outln!("VPD {code} {}", vpd_page_name(n));
        out!("{}", render(v, 2));
    }
    Ok(())
}
