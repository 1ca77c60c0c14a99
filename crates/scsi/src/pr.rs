//! PERSISTENT RESERVE IN and OUT (SPC-4 §6.15, §6.16, §5.13): the service
//! actions over the state in [`crate::reservation`].
//!
//! Supported: READ KEYS, READ RESERVATION, REPORT CAPABILITIES, READ FULL
//! STATUS; REGISTER, RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT AND ABORT,
//! REGISTER AND IGNORE EXISTING KEY, with every reservation type, LU scope,
//! ALL_TG_PT (ATP_C=1) and APTPL when the LU has a store (PTPL_C). Not
//! supported: SPEC_I_PT (SIP_C=0) and REGISTER AND MOVE (not in the command
//! table). PREEMPT AND ABORT preempts like PREEMPT and also aborts the
//! commands of the preempted I_T nexuses that are running on this LU: they
//! end with TASK ABORTED at their next cancellation check (between I/O
//! chunks); commands that complete without one finish normally. Later
//! commands meet the new reservation.

use crate::cdb::{be, byte, ServiceAction, Template};
use crate::exec::{CmdResult, Ctx, Done, Fail};
use crate::inquiry::relative_port;
use crate::lu::LogicalUnit;
use crate::nexus::Nexus;
use crate::reservation::{Persistent, PrState, PrType, Registration, UaEffects, MAX_REGISTRATIONS};
use crate::result::ScsiStatus;
use crate::sense::{Asc, Sense};

/// PERSISTENT RESERVE OUT service actions.
const SA_REGISTER: u8 = ServiceAction::PR_REGISTER;
const SA_RESERVE: u8 = ServiceAction::PR_RESERVE;
const SA_RELEASE: u8 = ServiceAction::PR_RELEASE;
const SA_CLEAR: u8 = ServiceAction::PR_CLEAR;
const SA_PREEMPT: u8 = ServiceAction::PR_PREEMPT;
const SA_PREEMPT_AND_ABORT: u8 = ServiceAction::PR_PREEMPT_AND_ABORT;
const SA_REGISTER_AND_IGNORE: u8 = ServiceAction::PR_REGISTER_AND_IGNORE_EXISTING_KEY;

/// Basic PERSISTENT RESERVE OUT parameter list length (SPC-4 §6.16.3).
const PROUT_PARAM_LEN: usize = 24;
/// Byte 20 of the parameter list.
const SPEC_I_PT: u8 = 0x08;
const ALL_TG_PT: u8 = 0x04;
const APTPL: u8 = 0x01;
/// LU_SCOPE, the only scope SPC-4 keeps.
const LU_SCOPE: u8 = 0x0;

/// REPORT CAPABILITIES byte 2 and 3 bits.
const CAP_CRH: u8 = 0x10;
const CAP_ATP_C: u8 = 0x04;
const CAP_PTPL_C: u8 = 0x01;
const CAP_TMV: u8 = 0x80;
/// ALLOW COMMANDS 001b: TEST UNIT READY is allowed through Write Exclusive
/// and Exclusive Access; nothing is claimed about the other commands.
const CAP_ALLOW_COMMANDS: u8 = 0x1 << 4;
const CAP_PTPL_A: u8 = 0x01;

/// iSCSI TransportID, FORMAT CODE 01b (initiator port with ISID).
const TRANSPORT_ID_ISCSI_PORT: u8 = 0x40 | 0x05;

fn conflict() -> Fail {
    Fail::Status(ScsiStatus::RESERVATION_CONFLICT)
}

fn header(generation: u32, additional: usize) -> Vec<u8> {
    let mut d = Vec::with_capacity(8 + additional);
    d.extend_from_slice(&generation.to_be_bytes());
    d.extend_from_slice(&u32::try_from(additional).unwrap_or(u32::MAX).to_be_bytes());
    d
}

/// PERSISTENT RESERVE IN / READ KEYS. ADDITIONAL LENGTH is not reduced by
/// the allocation length.
pub(crate) fn read_keys(ctx: &Ctx<'_>) -> CmdResult {
    let lu = ctx.lu()?;
    let st = lu.pr.snapshot();
    let mut d = header(st.generation, st.registrations.len() * 8);
    for r in &st.registrations {
        d.extend_from_slice(&r.key.to_be_bytes());
    }
    Ok(Done::data(d, be(ctx.cdb, 7, 2)))
}

/// PERSISTENT RESERVE IN / READ RESERVATION. The key is 0 for the
/// all-registrants types (SPC-4 §6.15.3.3).
pub(crate) fn read_reservation(ctx: &Ctx<'_>) -> CmdResult {
    let lu = ctx.lu()?;
    let st = lu.pr.snapshot();
    let d = match &st.reservation {
        None => header(st.generation, 0),
        Some(res) => {
            let mut d = header(st.generation, 16);
            let key = if res.pr_type.all_registrants() { 0 } else { st.holder_registration().map_or(0, |r| r.key) };
            d.extend_from_slice(&key.to_be_bytes());
            d.extend_from_slice(&[0; 4]); // obsolete
            d.push(0);
            d.push(LU_SCOPE << 4 | res.pr_type.code());
            d.extend_from_slice(&[0; 2]); // obsolete
            d
        }
    };
    Ok(Done::data(d, be(ctx.cdb, 7, 2)))
}

/// PERSISTENT RESERVE IN / REPORT CAPABILITIES.
pub(crate) fn report_capabilities(ctx: &Ctx<'_>) -> CmdResult {
    let lu = ctx.lu()?;
    let st = lu.pr.snapshot();
    let mut d = vec![0u8; 8];
    d[1] = 8; // LENGTH
    d[2] = CAP_CRH | CAP_ATP_C | if lu.pr.persist_capable() { CAP_PTPL_C } else { 0 };
    d[3] = CAP_TMV | CAP_ALLOW_COMMANDS | if st.aptpl { CAP_PTPL_A } else { 0 };
    // PERSISTENT RESERVATION TYPE MASK: every type.
    d[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02; // WR_EX_AR EX_AC_RO WR_EX_RO EX_AC WR_EX
    d[5] = 0x01; // EX_AC_AR
    Ok(Done::data(d, be(ctx.cdb, 7, 2)))
}

/// An iSCSI initiator port TransportID (SPC-4 §7.6.4.6): name ",i,0x" ISID,
/// NUL-terminated, padded to a multiple of four, at least 24 bytes.
fn transport_id(initiator: &str, isid: &[u8; 6]) -> Vec<u8> {
    let mut name: Vec<u8> = initiator.bytes().filter(|&b| b != 0).take(223).collect();
    name.extend_from_slice(b",i,0x");
    for b in isid {
        name.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    name.push(0);
    while name.len() % 4 != 0 || name.len() < 20 {
        name.push(0);
    }
    let mut t = vec![TRANSPORT_ID_ISCSI_PORT, 0];
    t.extend_from_slice(&(name.len() as u16).to_be_bytes());
    t.extend(name);
    t
}

/// PERSISTENT RESERVE IN / READ FULL STATUS: one descriptor per
/// registration, with R_HOLDER, ALL_TG_PT, the relative target port and
/// the TransportID.
pub(crate) fn read_full_status(ctx: &Ctx<'_>) -> CmdResult {
    let lu = ctx.lu()?;
    let st = lu.pr.snapshot();
    let mut body = Vec::new();
    for r in &st.registrations {
        let holder = st.reservation.as_ref().is_some_and(|res| match &res.holder {
            None => true,
            Some(h) => r.matches(h),
        });
        body.extend_from_slice(&r.key.to_be_bytes());
        body.extend_from_slice(&[0; 4]);
        body.push(if r.target.is_none() { 0x02 } else { 0 } | if holder { 0x01 } else { 0 });
        let scope_type = match &st.reservation {
            Some(res) if holder => LU_SCOPE << 4 | res.pr_type.code(),
            _ => 0,
        };
        body.push(scope_type);
        body.extend_from_slice(&[0; 4]);
        let rtpi = r.target.as_ref().map_or(0, |t| relative_port(t.tpgt));
        body.extend_from_slice(&rtpi.to_be_bytes());
        let tid = transport_id(&r.initiator, &r.isid);
        body.extend_from_slice(&(tid.len() as u32).to_be_bytes());
        body.extend(tid);
    }
    let mut d = header(st.generation, body.len());
    d.extend(body);
    Ok(Done::data(d, be(ctx.cdb, 7, 2)))
}

/// The decoded basic parameter list.
struct Params {
    key: u64,
    sa_key: u64,
    all_tg_pt: bool,
    aptpl: bool,
}

/// Validate the CDB's PARAMETER LIST LENGTH and the data-out against each
/// other and parse the 24-byte basic parameter list.
fn params(ctx: &Ctx<'_>, lu: &LogicalUnit, registering: bool) -> Result<Params, Fail> {
    let plle = || Fail::from(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
    if be(ctx.cdb, 5, 4) != PROUT_PARAM_LEN as u64 {
        return Err(plle());
    }
    let p = ctx.req.data_out.get(..PROUT_PARAM_LEN).ok_or_else(plle)?;
    let flags = p[20];
    if flags & SPEC_I_PT != 0 {
        return Err(Sense::invalid_param_field(20, Some(3)).into());
    }
    let aptpl = registering && flags & APTPL != 0;
    if aptpl && !lu.pr.persist_capable() {
        return Err(Sense::invalid_param_field(20, Some(0)).into());
    }
    Ok(Params { key: be(p, 0, 8), sa_key: be(p, 8, 8), all_tg_pt: registering && flags & ALL_TG_PT != 0, aptpl })
}

/// SCOPE and TYPE of the CDB, for the service actions that use them.
fn scope_type(cdb: &[u8]) -> Result<PrType, Fail> {
    if byte(cdb, 2) >> 4 != LU_SCOPE {
        return Err(Sense::invalid_cdb_field(2, Some(7)).into());
    }
    PrType::from_code(byte(cdb, 2) & 0x0F).ok_or_else(|| Sense::invalid_cdb_field(2, Some(3)).into())
}

/// The registration of `n`, if its reservation key matches.
fn registered_with(st: &PrState, n: &Nexus, key: u64) -> Result<usize, Fail> {
    match st.find(n) {
        Some(i) if st.registrations[i].key == key => Ok(i),
        _ => Err(conflict()),
    }
}

/// PERSISTENT RESERVE OUT, every supported service action.
pub(crate) fn persistent_reserve_out(ctx: &Ctx<'_>) -> CmdResult {
    let lu = ctx.lu()?;
    let sa = byte(ctx.cdb, 1) & 0x1F;
    let registering = matches!(sa, SA_REGISTER | SA_REGISTER_AND_IGNORE);
    let p = params(ctx, lu, registering)?;
    let n = ctx.req.nexus;
    let cdb = ctx.cdb;
    let ua: UaEffects = lu.pr.modify(|st| {
        let mut ua = UaEffects::new();
        match sa {
            SA_REGISTER | SA_REGISTER_AND_IGNORE => register(st, n, &p, sa == SA_REGISTER_AND_IGNORE, &mut ua)?,
            SA_RESERVE => reserve(st, n, &p, cdb)?,
            SA_RELEASE => release(st, n, &p, cdb, &mut ua)?,
            SA_CLEAR => {
                registered_with(st, n, p.key)?;
                for r in st.registrations.drain(..) {
                    ua.push((Asc::RESERVATIONS_PREEMPTED, r));
                }
                st.reservation = None;
                st.generation = st.generation.wrapping_add(1);
            }
            SA_PREEMPT | SA_PREEMPT_AND_ABORT => preempt(st, n, &p, cdb, &mut ua)?,
            // The command table holds no other service action.
            _ => return Err(Sense::invalid_cdb_field(1, Some(4)).into()),
        }
        Ok(ua)
    })?;
    if sa == SA_PREEMPT_AND_ABORT {
        let victims: Vec<Registration> =
            ua.iter().filter(|(asc, _)| *asc == Asc::REGISTRATIONS_PREEMPTED).map(|(_, r)| r.clone()).collect();
        lu.pr.abort_tasks_of(&victims);
    }
    for (asc, reg) in ua {
        lu.ua.establish_where(asc, |x| x != n && reg.matches(x));
    }
    Ok(Done::good())
}

/// REGISTER and REGISTER AND IGNORE EXISTING KEY.
fn register(st: &mut PrState, n: &Nexus, p: &Params, ignore: bool, ua: &mut UaEffects) -> Result<(), Fail> {
    match st.find(n) {
        None => {
            if !ignore && p.key != 0 {
                return Err(conflict());
            }
            if p.sa_key == 0 {
                return Ok(()); // nothing to unregister
            }
            // ALL_TG_PT may not overlap another registration of this port.
            if p.all_tg_pt && st.registrations.iter().any(|r| r.same_initiator_port(n)) {
                return Err(conflict());
            }
            if st.registrations.len() >= MAX_REGISTRATIONS {
                return Err(Sense::illegal(Asc::INSUFFICIENT_REGISTRATION_RESOURCES).into());
            }
            st.registrations.push(Registration::of(n, p.sa_key, p.all_tg_pt));
        }
        Some(i) => {
            if !ignore && p.key != st.registrations[i].key {
                return Err(conflict());
            }
            if p.sa_key == 0 {
                st.unregister(i, ua);
            } else {
                st.registrations[i].key = p.sa_key;
            }
        }
    }
    st.aptpl = p.aptpl;
    st.generation = st.generation.wrapping_add(1);
    Ok(())
}

/// RESERVE: create the reservation, or succeed when `n` already holds one
/// of the same type.
fn reserve(st: &mut PrState, n: &Nexus, p: &Params, cdb: &[u8]) -> Result<(), Fail> {
    registered_with(st, n, p.key)?;
    let t = scope_type(cdb)?;
    match &st.reservation {
        Some(res) if st.is_holder(res, n) && res.pr_type == t => Ok(()),
        Some(_) => Err(conflict()),
        None => {
            st.reservation = Some(Persistent { pr_type: t, holder: (!t.all_registrants()).then(|| n.clone()) });
            Ok(())
        }
    }
}

/// RELEASE: only the holder releases, and only with the reservation's own
/// scope and type; registrants of a shared type learn of it.
fn release(st: &mut PrState, n: &Nexus, p: &Params, cdb: &[u8], ua: &mut UaEffects) -> Result<(), Fail> {
    registered_with(st, n, p.key)?;
    let Some(res) = st.reservation.clone() else { return Ok(()) };
    if !st.is_holder(&res, n) {
        return Ok(());
    }
    let matches = byte(cdb, 2) >> 4 == LU_SCOPE && PrType::from_code(byte(cdb, 2) & 0x0F) == Some(res.pr_type);
    if !matches {
        return Err(Sense::illegal(Asc::INVALID_RELEASE_OF_PERSISTENT_RESERVATION).into());
    }
    st.reservation = None;
    if res.pr_type.registrants_only() || res.pr_type.all_registrants() {
        for r in &st.registrations {
            ua.push((Asc::RESERVATIONS_RELEASED, r.clone()));
        }
    }
    Ok(())
}

/// Remove every registration with `key` except `n`'s own; the removed ones
/// get REGISTRATIONS PREEMPTED.
fn remove_key(st: &mut PrState, n: &Nexus, key: u64, ua: &mut UaEffects) -> usize {
    let mut removed = 0;
    let mut i = 0;
    while i < st.registrations.len() {
        let r = &st.registrations[i];
        if r.key == key && !r.matches(n) {
            let r = st.unregister(i, ua);
            ua.push((Asc::REGISTRATIONS_PREEMPTED, r));
            removed += 1;
        } else {
            i += 1;
        }
    }
    removed
}

/// PREEMPT and PREEMPT AND ABORT (SPC-4 §5.13.11.2.4).
fn preempt(st: &mut PrState, n: &Nexus, p: &Params, cdb: &[u8], ua: &mut UaEffects) -> Result<(), Fail> {
    registered_with(st, n, p.key)?;
    let Some(res) = st.reservation.clone() else {
        // No reservation: remove the registrations with SARK.
        if p.sa_key == 0 {
            return Err(Sense::invalid_param_field(8, None).into());
        }
        if remove_key(st, n, p.sa_key, ua) == 0 {
            return Err(conflict());
        }
        st.generation = st.generation.wrapping_add(1);
        return Ok(());
    };
    let preempts_reservation = if res.pr_type.all_registrants() {
        p.sa_key == 0
    } else {
        st.holder_registration().is_some_and(|h| h.key == p.sa_key)
    };
    if !preempts_reservation {
        if p.sa_key == 0 {
            return Err(Sense::invalid_param_field(8, None).into());
        }
        if remove_key(st, n, p.sa_key, ua) == 0 {
            return Err(conflict());
        }
        st.generation = st.generation.wrapping_add(1);
        return Ok(());
    }
    let t = scope_type(cdb)?;
    // All registrants with SARK 0: every other registration goes.
    if res.pr_type.all_registrants() {
        let mut i = 0;
        while i < st.registrations.len() {
            if st.registrations[i].matches(n) {
                i += 1;
            } else {
                let r = st.registrations.remove(i);
                ua.push((Asc::REGISTRATIONS_PREEMPTED, r));
            }
        }
    } else {
        // Detach the old reservation first so removing the holder's
        // registration does not report a release as well.
        st.reservation = None;
        remove_key(st, n, p.sa_key, ua);
    }
    st.reservation = Some(Persistent { pr_type: t, holder: (!t.all_registrants()).then(|| n.clone()) });
    if t != res.pr_type {
        for r in &st.registrations {
            if !r.matches(n) {
                ua.push((Asc::RESERVATIONS_RELEASED, r.clone()));
            }
        }
    }
    st.generation = st.generation.wrapping_add(1);
    Ok(())
}

/// The hook [`crate::target`] calls before every command's handler.
pub(crate) fn check<H>(lu: &LogicalUnit, nexus: &Nexus, template: &Template<H>, cdb: &[u8]) -> Result<(), Fail> {
    lu.pr.check(nexus, template, cdb)
}

/// RESERVE (6) and (10) (SPC-2): an exclusive reservation of the whole LU
/// for this I_T nexus; re-reserving is allowed. Third-party reservations and
/// extents are refused by the usage masks.
pub(crate) fn reserve_spc2(ctx: &Ctx<'_>) -> CmdResult {
    let lu = ctx.lu()?;
    let n = ctx.req.nexus;
    lu.pr.modify(|st| {
        if !st.registrations.is_empty() || st.spc2.as_ref().is_some_and(|h| h != n) {
            return Err(conflict());
        }
        st.spc2 = Some(n.clone());
        Ok(())
    })?;
    Ok(Done::good())
}

/// RELEASE (6) and (10) (SPC-2): ends this nexus's reservation; from any
/// other nexus it is a no-op that succeeds.
pub(crate) fn release_spc2(ctx: &Ctx<'_>) -> CmdResult {
    let lu = ctx.lu()?;
    let n = ctx.req.nexus;
    lu.pr.modify(|st| {
        if !st.registrations.is_empty() {
            return Err(conflict());
        }
        if st.spc2.as_ref() == Some(n) {
            st.spc2 = None;
        }
        Ok(())
    })?;
    Ok(Done::good())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_id_layout() {
        let t = transport_id("iqn.x", &[0x80, 0, 0, 0x3d, 0, 1]);
        assert_eq!(&t[..4], &[0x45, 0, 0, (t.len() - 4) as u8]);
        assert_eq!(&t[4..], b"iqn.x,i,0x8000003d0001\0\0".as_slice());
        assert_eq!((t.len() - 4) % 4, 0);
        let short = transport_id("a", &[0; 6]);
        assert!(short.len() - 4 >= 20);
    }
}
