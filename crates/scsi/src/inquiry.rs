//! INQUIRY (SPC-4 §6.6): standard data and the VPD pages 00h, 80h, 83h,
//! B0h, B1h and B2h (8Fh joins the list when the copy manager is enabled,
//! and the vendor-specific C0h copy domain page when, in addition, the
//! daemon has installed a copy-domain provider in the registry).

use crate::cdb::{be, byte};
use crate::copy;
use crate::exec::{CmdResult, Ctx, Done};
use crate::lu::{LogicalUnit, MAX_TRANSFER_BYTES, OPTIMAL_TRANSFER_BYTES};
use crate::registry::DomainInfo;
use crate::sense::Sense;
use crate::wire::inquiry::{
    BlockDeviceCharacteristics, BlockLimits, LogicalBlockProvisioning, ProvisioningType, StandardInquiry, NON_ROTATING,
};
use crate::wire::vpd::{self, scsi_name, Association, CodeSet, Designation, DesignatorType, PROTOCOL_ISCSI};
use std::sync::Arc;

pub use crate::wire::vpd::VpdPage;

/// Version descriptors claimed: SAM-5, SPC-4, SBC-3, iSCSI.
/// (libiscsi enables its SBC-3 checks on 04C0h.)
const VERSION_DESCRIPTORS: [u16; 4] = [0x00A0, 0x0460, 0x04C0, 0x0960];

/// Byte 0 for a LUN with no logical unit: qualifier 011b, type 1Fh.
const NO_LU: u8 = 0x7F;
/// Byte 0 for our LUs: qualifier 000b, direct-access block device.
const DISK: u8 = 0x00;

/// VERSION: SPC-4.
const SPC4: u8 = 0x06;

/// Standard INQUIRY data for `lu`, or for an absent LU: SPC-4, HISUP,
/// RESPONSE DATA FORMAT 2, CMDQUE, 3PC with the copy manager.
pub(crate) fn standard(lu: Option<&LogicalUnit>) -> Vec<u8> {
    let default_cfg = crate::lu::LuConfig::default();
    let cfg = lu.map(|l| l.config()).unwrap_or(&default_cfg);
    StandardInquiry {
        peripheral: if lu.is_some() { DISK } else { NO_LU },
        version: SPC4,
        hisup: true,
        response_data_format: 2,
        third_party_copy: lu.is_some_and(|l| l.third_party_copy()),
        cmdque: true,
        vendor: cfg.vendor.as_bytes().to_vec(),
        product: cfg.product.as_bytes().to_vec(),
        revision: cfg.revision.as_bytes().to_vec(),
        version_descriptors: VERSION_DESCRIPTORS.to_vec(),
        ..StandardInquiry::default()
    }
    .encode()
}

/// INQUIRY.
pub(crate) fn inquiry(ctx: &Ctx<'_>) -> CmdResult {
    let cdb = ctx.cdb;
    let evpd = byte(cdb, 1) & 0x01 != 0;
    let page = byte(cdb, 2);
    let alloc = be(cdb, 3, 2);
    if !evpd {
        if page != 0 {
            return Err(Sense::invalid_cdb_field(2, Some(7)).into());
        }
        return Ok(Done::data(standard(ctx.lu), alloc));
    }
    let data = match ctx.lu {
        None if page == VpdPage::SUPPORTED_PAGES => vpd::page(NO_LU, page, vec![0x00]),
        None => return Err(Sense::invalid_cdb_field(2, Some(7)).into()),
        Some(lu) => match page {
            VpdPage::SUPPORTED_PAGES => vpd::page(
                DISK,
                page,
                supported_pages(lu, domain_info(ctx, lu).is_some(), lu.storage().layout().is_some()),
            ),
            VpdPage::UNIT_SERIAL_NUMBER => vpd::page(DISK, page, serial(lu)),
            VpdPage::DEVICE_IDENTIFICATION => vpd::page(DISK, page, device_id(ctx, lu)),
            VpdPage::BLOCK_LIMITS => vpd::page(DISK, page, block_limits(lu)),
            VpdPage::BLOCK_DEVICE_CHARACTERISTICS => vpd::page(DISK, page, bdc()),
            VpdPage::LOGICAL_BLOCK_PROVISIONING => vpd::page(DISK, page, lbp(lu)),
            VpdPage::THIRD_PARTY_COPY if lu.third_party_copy() => {
                match copy::vpd_third_party_copy(lu, &ctx.target.registry().rod(), ctx.target.commands()) {
                    Some(body) => vpd::page(DISK, page, body),
                    None => return Err(Sense::invalid_cdb_field(2, Some(7)).into()),
                }
            }
            VpdPage::COPY_DOMAIN => match domain_info(ctx, lu) {
                Some(info) => info.page().encode(DISK),
                None => return Err(Sense::invalid_cdb_field(2, Some(7)).into()),
            },
            VpdPage::VOLUME_LAYOUT => match lu.storage().layout() {
                Some(text) => vpd::volume_layout_page(DISK, &text),
                None => return Err(Sense::invalid_cdb_field(2, Some(7)).into()),
            },
            _ => return Err(Sense::invalid_cdb_field(2, Some(7)).into()),
        },
    };
    Ok(Done::data(data, alloc))
}

/// The copy-domain provider, for a LU that advertises a copy manager (a
/// LU without one is a plain disk: no C0h either).
fn domain_info(ctx: &Ctx<'_>, lu: &LogicalUnit) -> Option<Arc<dyn DomainInfo>> {
    if lu.third_party_copy() {
        ctx.target.registry().domain_info()
    } else {
        None
    }
}

/// Page list, strictly ascending (Windows rejects anything else); C0h
/// when `domain`, C1h when the LU sits on a volume (`layout`).
fn supported_pages(lu: &LogicalUnit, domain: bool, layout: bool) -> Vec<u8> {
    let mut p = vec![VpdPage::SUPPORTED_PAGES, VpdPage::UNIT_SERIAL_NUMBER, VpdPage::DEVICE_IDENTIFICATION];
    if lu.third_party_copy() {
        p.push(VpdPage::THIRD_PARTY_COPY);
    }
    p.extend_from_slice(&[
        VpdPage::BLOCK_LIMITS,
        VpdPage::BLOCK_DEVICE_CHARACTERISTICS,
        VpdPage::LOGICAL_BLOCK_PROVISIONING,
    ]);
    if domain {
        p.push(VpdPage::COPY_DOMAIN);
    }
    if layout {
        p.push(VpdPage::VOLUME_LAYOUT);
    }
    p
}

fn serial(lu: &LogicalUnit) -> Vec<u8> {
    lu.config().serial.bytes().take(252).map(|c| if (0x20..=0x7E).contains(&c) { c } else { b' ' }).collect()
}

/// Relative target port identifier: the portal group tag (0 is reserved,
/// so TPGT 0 is reported as port 1).
pub(crate) fn relative_port(tpgt: u16) -> u16 {
    tpgt.max(1)
}

fn device_id(ctx: &Ctx<'_>, lu: &LogicalUnit) -> Vec<u8> {
    let mut d = Vec::new();
    for (code_set, assoc_type, value) in lu.designators() {
        Designation { code_set, assoc_type, value: &value }.encode_into(&mut d);
    }
    let tpgt = ctx.req.nexus.tpgt;
    let [hi, lo] = relative_port(tpgt).to_be_bytes();
    let name = ctx.target.name();
    let iscsi = |code_set, association, ty, value: &[u8], out: &mut Vec<u8>| {
        Designation::new(Some(PROTOCOL_ISCSI), code_set, association, ty, value).encode_into(out)
    };
    iscsi(CodeSet::BINARY, Association::TARGET_PORT, DesignatorType::RELATIVE_TARGET_PORT, &[0, 0, hi, lo], &mut d);
    let port_name = scsi_name(&format!("{name},t,0x{tpgt:04x}"));
    iscsi(CodeSet::UTF8, Association::TARGET_PORT, DesignatorType::SCSI_NAME, &port_name, &mut d);
    iscsi(CodeSet::UTF8, Association::TARGET_DEVICE, DesignatorType::SCSI_NAME, &scsi_name(name), &mut d);
    d
}

/// Block Limits (page length 3Ch, SBC-3). WSNZ=0: WRITE SAME with 0
/// blocks means "to the last block"; no atomic writes.
fn block_limits(lu: &LogicalUnit) -> Vec<u8> {
    let bs = lu.block_size();
    let fs = lu.storage().capabilities().fs_block_size;
    let max = MAX_TRANSFER_BYTES / bs;
    let mut l = BlockLimits {
        write_same_non_zero: Some(false),
        maximum_compare_and_write_length: Some(crate::caw::MAX_CAW_BLOCKS),
        optimal_transfer_length_granularity: Some(u16::try_from((fs / bs).max(1)).unwrap_or(1)),
        maximum_transfer_length: Some(max),
        optimal_transfer_length: Some(OPTIMAL_TRANSFER_BYTES / bs),
        maximum_prefetch_length: Some(max),
        ..BlockLimits::default()
    };
    crate::provisioning::block_limits(lu, &mut l); // UNMAP, WRITE SAME
    l.encode()
}

/// Block Device Characteristics: non-rotating medium.
fn bdc() -> Vec<u8> {
    BlockDeviceCharacteristics { medium_rotation_rate: Some(NON_ROTATING), ..Default::default() }.encode()
}

/// Logical Block Provisioning, truthful to [`LogicalUnit::provisioning`].
fn lbp(lu: &LogicalUnit) -> Vec<u8> {
    let p = lu.provisioning();
    LogicalBlockProvisioning {
        lbpu: Some(p.lbpu),
        lbpws: Some(p.lbpws),
        lbpws10: Some(p.lbpws10),
        lbprz: Some(u8::from(p.lbprz)),
        provisioning_type: Some(if p.lbpme { ProvisioningType::THIN } else { ProvisioningType::FULL }),
        ..Default::default()
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the device server encodes for standard INQUIRY data, B0h, B1h
    /// and B2h, the wire layer decodes.
    #[test]
    fn block_pages_round_trip_through_the_wire_decoders() {
        use crate::lu::LuConfig;
        use oxcopy_storage::{MemStorage, Storage};
        use std::sync::Arc;

        let st = Arc::new(MemStorage::new(1 << 20)) as Arc<dyn Storage>;
        let lu = LogicalUnit::new(LuConfig { block_size: 512, ..LuConfig::default() }, st);
        let s = StandardInquiry::decode(&standard(Some(&lu)));
        assert_eq!((s.peripheral, s.version, s.response_data_format), (DISK, SPC4, 2));
        assert!(s.hisup && s.cmdque && s.third_party_copy);
        assert_eq!(s.version_descriptors, VERSION_DESCRIPTORS);
        assert_eq!(s.encode(), standard(Some(&lu)));
        assert_eq!(StandardInquiry::decode(&standard(None)).peripheral, NO_LU);
        let l = BlockLimits::decode(&block_limits(&lu));
        assert_eq!((l.maximum_transfer_length, l.optimal_transfer_length), (Some(32768), Some(2048)));
        assert_eq!((l.maximum_compare_and_write_length, l.write_same_non_zero), (Some(255), Some(false)));
        assert_eq!(l.maximum_write_same_length, Some(crate::provisioning::MAX_WRITE_SAME_BLOCKS));
        assert_eq!(l.encode(), block_limits(&lu));
        let c = BlockDeviceCharacteristics::decode(&bdc());
        assert_eq!((c.medium_rotation_rate, c.nominal_form_factor), (Some(NON_ROTATING), Some(0)));
        let p = LogicalBlockProvisioning::decode(&lbp(&lu));
        let want = lu.provisioning();
        assert_eq!((p.lbpu, p.lbpws, p.lbprz), (Some(want.lbpu), Some(want.lbpws), Some(u8::from(want.lbprz))));
        assert_eq!(p.encode(), lbp(&lu));
    }

    /// A fixed copy-domain provider.
    #[derive(Debug)]
    struct Domain(crate::wire::vpd::CopyDomainPage);

    impl DomainInfo for Domain {
        fn page(&self) -> crate::wire::vpd::CopyDomainPage {
            self.0.clone()
        }
    }

    /// VPD 00h lists C0h (last, ascending) only while a provider is set and
    /// the LU advertises a copy manager; C0h is served from the provider
    /// and refused like any unsupported page otherwise.
    #[test]
    fn copy_domain_page_follows_the_provider() {
        use crate::lu::LuConfig;
        use crate::nexus::{CancelToken, Nexus};
        use crate::wire::vpd::{CopyDomainPage, DomainNode, NodeState};
        use crate::{encode_lun, Request, ScsiStatus, ScsiTarget, SenseData};
        use oxcopy_storage::MemStorage;

        let lu = Arc::new(LogicalUnit::new(LuConfig::default(), Arc::new(MemStorage::new(1 << 20))));
        let target = ScsiTarget::new("iqn.2026-11.dev.oxcopy:t", 1, vec![(0, lu.clone())], crate::testing::registry());
        let nexus = Nexus {
            initiator_name: Arc::from("iqn.2026-11.dev.oxcopy:host"),
            isid: [0x80, 0, 0, 0, 0, 1],
            target_name: Arc::from("iqn.2026-11.dev.oxcopy:t"),
            tpgt: 1,
        };
        let cancel = CancelToken::new();
        let vpd = |page: u8| {
            let cdb = [0x12, 0x01, page, 0x10, 0x00, 0];
            let req = Request {
                nexus: &nexus,
                lun: encode_lun(0),
                cdb: &cdb,
                data_out: &[],
                expected_len: 0,
                cancel: &cancel,
            };
            let r = target.execute(&req);
            match r.status {
                ScsiStatus::GOOD => Ok(r.data_in),
                _ => Err(SenseData::parse(r.sense.as_deref().unwrap_or(&[])).map(|s| (s.key, s.asc, s.ascq))),
            }
        };
        let without = [0x00, 0x80, 0x83, 0x8F, 0xB0, 0xB1, 0xB2];
        let invalid_field = Err(Some((0x05, 0x24, 0x00)));
        assert_eq!(vpd(0x00).map(|d| d[4..].to_vec()), Ok(without.to_vec()));
        assert_eq!(vpd(0xC0), invalid_field);

        let page = CopyDomainPage {
            fingerprint: [9; 8],
            manager_id: [1; 16],
            remote_tokens: true,
            listen: "192.0.2.1:3270".into(),
            nodes: vec![
                DomainNode {
                    address: "192.0.2.1:3270".into(),
                    manager_id: Some([1; 16]),
                    state: NodeState::SELF,
                    seconds: 0,
                },
                DomainNode {
                    address: "192.0.2.2:3270".into(),
                    manager_id: None,
                    state: NodeState::UNKNOWN,
                    seconds: 3,
                },
            ],
        };
        target.registry().set_domain_info(Some(Arc::new(Domain(page.clone()))));
        let mut with = without.to_vec();
        with.push(0xC0);
        assert_eq!(vpd(0x00).map(|d| d[4..].to_vec()), Ok(with));
        let d = vpd(0xC0).unwrap();
        assert_eq!(d, page.encode(DISK));
        assert_eq!(CopyDomainPage::decode(&d), Ok(page));

        // A LU without a copy manager is a plain disk: no C0h.
        lu.set_third_party_copy(false);
        assert_eq!(vpd(0x00).map(|d| d[4..].to_vec()), Ok(vec![0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2]));
        assert_eq!(vpd(0xC0), invalid_field);
        lu.set_third_party_copy(true);

        target.registry().set_domain_info(None);
        assert_eq!(vpd(0x00).map(|d| d[4..].to_vec()), Ok(without.to_vec()));
        assert_eq!(vpd(0xC0), invalid_field);
    }

    #[test]
    fn relative_port_is_never_zero() {
        assert_eq!(relative_port(0), 1);
        assert_eq!(relative_port(7), 7);
    }

    use crate::wire::inquiry::ascii_field;

    #[test]
    fn ascii_field_sanitizes() {
        let mut f = [0u8; 8];
        ascii_field(&mut f, "AB\u{e9}\n".as_bytes());
        assert_eq!(&f, b"AB      ");
    }

    /// Memory with a layout: what a volume looks like to the LU.
    #[derive(Debug)]
    struct Laid(oxcopy_storage::MemStorage, &'static str);

    impl oxcopy_storage::Storage for Laid {
        fn len(&self) -> u64 {
            self.0.len()
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> oxcopy_storage::Result<()> {
            self.0.read_at(buf, offset)
        }
        fn write_at(&self, buf: &[u8], offset: u64) -> oxcopy_storage::Result<()> {
            self.0.write_at(buf, offset)
        }
        fn flush(&self) -> oxcopy_storage::Result<()> {
            Ok(())
        }
        fn capabilities(&self) -> oxcopy_storage::Capabilities {
            self.0.capabilities()
        }
        fn layout(&self) -> Option<String> {
            Some(self.1.to_string())
        }
    }

    /// VPD 00h lists C1h (last) for a LU on a volume, and C1h carries the
    /// layout text; a LU on a plain store has neither.
    #[test]
    fn volume_layout_page_follows_the_storage() {
        use crate::lu::LuConfig;
        use crate::wire::vpd::{decode_volume_layout, volume_layout_page};
        use oxcopy_storage::MemStorage;
        let text = "volume v (linear), 8192 bytes\n  [0] at 0: 8192 bytes at 0 of /a.img\n";
        let on_volume = LogicalUnit::new(LuConfig::default(), Arc::new(Laid(MemStorage::new(8192), text)));
        let plain = LogicalUnit::new(LuConfig::default(), Arc::new(MemStorage::new(8192)));
        assert_eq!(supported_pages(&on_volume, false, on_volume.storage().layout().is_some()).last(), Some(&0xC1));
        assert!(!supported_pages(&plain, true, plain.storage().layout().is_some()).contains(&0xC1));
        let page = volume_layout_page(0, text);
        assert_eq!(&page[..4], &[0, 0xC1, 0, text.len() as u8]);
        assert_eq!(decode_volume_layout(&page), text);
        // Not ASCII: '?'; too long: cut at a line end; truncated: what arrived.
        assert_eq!(decode_volume_layout(&volume_layout_page(0, "é\n")), "??\n");
        let long = "x".repeat(100) + "\n";
        let big = volume_layout_page(0, &long.repeat(1000));
        assert_eq!(big.len() - 4, 101 * 648, "cut after the last whole line that fits");
        assert_eq!(decode_volume_layout(&page[..10]), &text[..6]);
        assert_eq!(decode_volume_layout(&[]), "");
    }
}
