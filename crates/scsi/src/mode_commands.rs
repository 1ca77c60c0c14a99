//! MODE SENSE and MODE SELECT (6) and (10) over the per-LU mode state of
//! [`crate::mode`].

use crate::cdb::{be, byte, high_bit};
use crate::exec::{CmdResult, Ctx, Done, Fail};
use crate::lu::LogicalUnit;
use crate::mode::{page, ModePage, PageControl, PAGES};
use crate::sense::{Asc, Sense};

/// DEVICE-SPECIFIC PARAMETER: WP and DPOFUA (we honour FUA).
fn device_specific(lu: &LogicalUnit) -> u8 {
    let mut b = 0x10;
    if lu.write_protected() {
        b |= 0x80;
    }
    b
}

/// MODE SENSE (6) and (10).
pub(crate) fn mode_sense(ctx: &Ctx<'_>, ten: bool) -> CmdResult {
    let lu = ctx.lu()?;
    let cdb = ctx.cdb;
    let dbd = byte(cdb, 1) & 0x08 != 0;
    let llbaa = ten && !dbd && byte(cdb, 1) & 0x10 != 0;
    let pc = match byte(cdb, 2) >> 6 {
        0 => PageControl::Current,
        1 => PageControl::Changeable,
        2 => PageControl::Default,
        _ => return Err(Sense::illegal(Asc::SAVING_PARAMETERS_NOT_SUPPORTED).with_field(true, 2, Some(7)).into()),
    };
    let code = byte(cdb, 2) & 0x3F;
    let subpage = byte(cdb, 3);
    if subpage != 0 && subpage != 0xFF {
        return Err(Sense::invalid_cdb_field(3, Some(7)).into());
    }
    let values = lu.mode.values();
    let mut pages = Vec::new();
    if code == ModePage::ALL {
        for p in PAGES {
            pages.extend(page(p, pc, values).unwrap_or_default());
        }
    } else {
        match page(code, pc, values) {
            Some(p) => pages.extend(p),
            None => return Err(Sense::invalid_cdb_field(2, Some(5)).into()),
        }
    }

    let mut desc = Vec::new();
    if !dbd {
        let blocks = lu.num_blocks();
        let bs = lu.block_size();
        let zero = pc == PageControl::Changeable;
        if llbaa {
            desc.extend_from_slice(&if zero { 0 } else { blocks }.to_be_bytes());
            desc.extend_from_slice(&[0; 4]);
            desc.extend_from_slice(&if zero { 0 } else { bs }.to_be_bytes());
        } else {
            let short = u32::try_from(blocks).unwrap_or(u32::MAX);
            desc.extend_from_slice(&if zero { 0 } else { short }.to_be_bytes());
            let bs = if zero { 0 } else { bs };
            desc.extend_from_slice(&bs.to_be_bytes()); // byte 4 density = 0, 5-7 length
        }
    }

    let mut out = Vec::with_capacity(8 + desc.len() + pages.len());
    let alloc = if ten {
        let total = 8 + desc.len() + pages.len();
        out.extend_from_slice(&((total - 2) as u16).to_be_bytes());
        out.push(0); // medium type
        out.push(device_specific(lu));
        out.push(if llbaa { 0x01 } else { 0x00 });
        out.push(0);
        out.extend_from_slice(&(desc.len() as u16).to_be_bytes());
        be(cdb, 7, 2)
    } else {
        let total = 4 + desc.len() + pages.len();
        out.push(u8::try_from(total - 1).unwrap_or(u8::MAX));
        out.push(0);
        out.push(device_specific(lu));
        out.push(desc.len() as u8);
        be(cdb, 4, 1)
    };
    out.extend(desc);
    out.extend(pages);
    Ok(Done::data(out, alloc))
}

/// MODE SELECT (6) and (10). Every page is validated before any is applied;
/// a real change raises MODE PARAMETERS CHANGED for the other nexuses.
pub(crate) fn mode_select(ctx: &Ctx<'_>, ten: bool) -> CmdResult {
    let lu = ctx.lu()?;
    let cdb = ctx.cdb;
    if byte(cdb, 1) & 0x01 != 0 {
        return Err(Sense::invalid_cdb_field(1, Some(0)).into());
    }
    let len = if ten { be(cdb, 7, 2) } else { be(cdb, 4, 1) } as usize;
    if len == 0 {
        return Ok(Done::good());
    }
    if byte(cdb, 1) & 0x10 == 0 {
        return Err(Sense::invalid_cdb_field(1, Some(4)).into());
    }
    let Some(data) = ctx.req.data_out.get(..len) else {
        return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR).into());
    };
    let plle = || Fail::from(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
    let hdr = if ten { 8 } else { 4 };
    if data.len() < hdr {
        return Err(plle());
    }
    let medium_type_off = if ten { 2 } else { 1 };
    if data[medium_type_off] != 0 {
        return Err(Sense::invalid_param_field(medium_type_off, Some(7)).into());
    }
    let (bdl, long) = if ten { (be(data, 6, 2) as usize, data[4] & 0x01 != 0) } else { (usize::from(data[3]), false) };
    let bdl_off = if ten { 6 } else { 3 };
    let want_bdl = if long { 16 } else { 8 };
    if bdl != 0 && bdl != want_bdl {
        return Err(Sense::invalid_param_field(bdl_off, None).into());
    }
    let Some(desc) = data.get(hdr..hdr + bdl) else {
        return Err(plle());
    };
    if bdl != 0 {
        // The block descriptor may restate the geometry but not change it.
        let (nb, bl, nb_off, bl_off) =
            if long { (be(desc, 0, 8), be(desc, 12, 4), 0, 12) } else { (be(desc, 0, 4), be(desc, 5, 3), 0, 5) };
        let cur_nb = if long { lu.num_blocks() } else { u64::from(u32::try_from(lu.num_blocks()).unwrap_or(u32::MAX)) };
        if nb != 0 && nb != cur_nb {
            return Err(Sense::invalid_param_field(hdr + nb_off, None).into());
        }
        if bl != u64::from(lu.block_size()) {
            return Err(Sense::invalid_param_field(hdr + bl_off, None).into());
        }
    }

    let _g = lu.mode.select.lock();
    let old = lu.mode.values();
    let mut new = old;
    let mut off = hdr + bdl;
    while off < data.len() {
        let b0 = data[off];
        if b0 & 0x40 != 0 {
            // SPF: we have no subpages.
            return Err(Sense::invalid_param_field(off, Some(6)).into());
        }
        let code = b0 & 0x3F;
        let Some(&plen) = data.get(off + 1) else {
            return Err(plle());
        };
        let Some(body) = data.get(off..off + 2 + usize::from(plen)) else {
            return Err(plle());
        };
        let (Some(cur), Some(chg)) = (page(code, PageControl::Current, old), page(code, PageControl::Changeable, old))
        else {
            return Err(Sense::invalid_param_field(off, Some(5)).into());
        };
        if body.len() != cur.len() {
            return Err(Sense::invalid_param_field(off + 1, Some(7)).into());
        }
        for i in 2..body.len() {
            let bad = (body[i] ^ cur[i]) & !chg[i];
            if bad != 0 {
                return Err(Sense::invalid_param_field(off + i, Some(high_bit(bad))).into());
            }
        }
        match code {
            ModePage::CACHING => new.wce = body[2] & 0x04 != 0,
            ModePage::CONTROL => {
                new.d_sense = body[2] & 0x04 != 0;
                new.swp = body[4] & 0x08 != 0;
            }
            _ => {}
        }
        off += body.len();
    }
    if new != old {
        lu.mode.store(new);
        lu.ua.establish_all(Asc::MODE_PARAMETERS_CHANGED, Some(ctx.req.nexus));
    }
    Ok(Done::good())
}
