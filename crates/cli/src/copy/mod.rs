//! `oxcopy cp`: open both ends, size the copy, pick the engine, copy,
//! verify, report.

pub mod endpoint;
pub mod host;
pub mod local;
pub mod method;
pub mod nvme_copy;
pub mod offload;
pub mod token;
pub mod xcopy;

use crate::conn::{Connector, IscsiLun};
use crate::fail;
use crate::human;
use crate::nvme::{Controller, NvmeNs};
use crate::progress::Progress;
use crate::url::{parse_location, IscsiUrl, Location, NvmeUrl};
use endpoint::{Endpoint, LocalInfo, LocalKind, Side};
use local::LocalReport;
use method::{Fallback, Method, MethodArg, NvmeCopyView, OffloadView};
use offload::OffloadReport;
use serde::Serialize;
use std::time::Instant;

/// The `cp` options.
#[derive(Debug, Clone)]
pub struct CpOptions {
    pub src: String,
    pub dst: String,
    pub method: MethodArg,
    pub verify: bool,
    pub json: bool,
    pub queue_depth: usize,
    pub progress: bool,
    /// Testing hook: damage the destination after the copy, before verify.
    pub corrupt_destination: bool,
}

/// The `--json` summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub method: &'static str,
    pub bytes: u64,
    pub seconds: f64,
    pub bytes_per_second: f64,
    pub wire_bytes_sent: u64,
    pub wire_bytes_received: u64,
    pub fallback: Option<Fallback>,
    pub source: String,
    pub destination: String,
    /// Host copy: bytes per command and commands in flight.
    pub transfer_bytes: Option<u64>,
    pub queue_depth: Option<usize>,
    /// Local → local: bytes per kernel method.
    pub local: Option<LocalReport>,
    /// Token copy / EXTENDED COPY / NVMe Copy: commands, polls, tokens.
    pub offload: Option<OffloadReport>,
    pub verify: Option<host::VerifyReport>,
}

/// A byte range of one end, as the command line and the device define it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Start, in bytes.
    pub offset: u64,
    /// Bytes from `offset` to the end of the device (`u64::MAX` for a file
    /// that will be sized to fit).
    pub avail: u64,
    /// Bytes selected explicitly (`?blocks=`).
    pub explicit: Option<u64>,
    /// Addressable unit (block size; 1 for files).
    pub granularity: u64,
}

/// The range a URL selects on a LUN of `capacity` blocks of `bs` bytes.
pub fn lun_extent(url: &IscsiUrl, capacity: u64, bs: u32, role: &str) -> Result<Extent, String> {
    let bs64 = bs as u64;
    let lba = url.lba.unwrap_or(0);
    if lba > capacity {
        return Err(format!(
            "{role} range starts at LBA {lba}, past the end of {} (LUN {} has {capacity} blocks)",
            url.target, url.lun
        ));
    }
    if let Some(n) = url.blocks {
        if lba.checked_add(n).is_none_or(|end| end > capacity) {
            return Err(format!(
                "{role} range lba={lba} blocks={n} runs past the end of LUN {} of {} ({capacity} blocks of {bs} bytes)",
                url.lun, url.target
            ));
        }
    }
    Ok(Extent {
        offset: lba * bs64,
        avail: (capacity - lba) * bs64,
        explicit: url.blocks.map(|n| n * bs64),
        granularity: bs64,
    })
}

/// The range a URL selects on a namespace of `capacity` blocks of `bs` bytes.
pub fn ns_extent(url: &NvmeUrl, capacity: u64, bs: u32, role: &str) -> Result<Extent, String> {
    let bs64 = bs as u64;
    let lba = url.lba.unwrap_or(0);
    if lba > capacity {
        return Err(format!(
            "{role} range starts at LBA {lba}, past the end of namespace {} of {} ({capacity} blocks)",
            url.nsid, url.nqn
        ));
    }
    if let Some(n) = url.blocks {
        if lba.checked_add(n).is_none_or(|end| end > capacity) {
            return Err(format!(
                "{role} range lba={lba} blocks={n} runs past the end of namespace {} of {} ({capacity} blocks of \
                 {bs} bytes)",
                url.nsid, url.nqn
            ));
        }
    }
    Ok(Extent {
        offset: lba * bs64,
        avail: (capacity - lba) * bs64,
        explicit: url.blocks.map(|n| n * bs64),
        granularity: bs64,
    })
}

/// How many bytes to copy, or why the ranges do not fit.
pub fn copy_length(src: &Extent, dst: &Extent) -> Result<u64, String> {
    let bytes = match (src.explicit, dst.explicit) {
        (Some(s), Some(d)) if s != d => {
            return Err(format!("the source range is {s} bytes but the destination range is {d} bytes"))
        }
        (Some(s), _) => s,
        (None, Some(d)) if d > src.avail => {
            return Err(format!("the destination range is {d} bytes but the source has only {} bytes", src.avail))
        }
        (None, Some(d)) => d,
        (None, None) => src.avail,
    };
    if bytes > dst.avail {
        return Err(format!(
            "the source is {bytes} bytes ({}) but the destination has room for {} bytes ({})",
            human::bytes(bytes),
            dst.avail,
            human::bytes(dst.avail)
        ));
    }
    for (g, what) in [(src.granularity, "source"), (dst.granularity, "destination")] {
        if g > 1 && bytes % g != 0 {
            return Err(format!("{bytes} bytes is not a whole number of the {what}'s {g}-byte blocks"));
        }
    }
    Ok(bytes)
}

enum Opened {
    Iscsi(Box<IscsiLun>),
    Nvme(Box<NvmeNs>),
    Local(LocalInfo),
}

impl Opened {
    fn nvme(&self) -> Option<&NvmeNs> {
        match self {
            Opened::Nvme(n) => Some(n),
            _ => None,
        }
    }
}

/// Open one end; an NVMe namespace of the subsystem `reuse` is connected to
/// (same address) shares its controller.
async fn open(conn: &Connector, loc: &Location, role: &str, reuse: Option<&Controller>) -> anyhow::Result<Opened> {
    match loc {
        Location::Iscsi(u) => Ok(Opened::Iscsi(Box::new(conn.open_lun(u).await?))),
        Location::Nvme(u) => Ok(Opened::Nvme(Box::new(conn.open_namespace(u, reuse).await?))),
        Location::Local(p) => Ok(Opened::Local(endpoint::stat_local(p, role)?)),
    }
}

fn extent_of(o: &Opened, loc: &Location, role: &str) -> anyhow::Result<Extent> {
    match (o, loc) {
        (Opened::Iscsi(l), Location::Iscsi(u)) => lun_extent(u, l.blocks, l.block_size, role).map_err(fail::usage),
        (Opened::Nvme(n), Location::Nvme(u)) => {
            ns_extent(u, n.geometry.blocks, n.geometry.block_size, role).map_err(fail::usage)
        }
        (Opened::Local(i), _) => {
            let growable = role == "destination" && i.kind != Some(LocalKind::BlockDevice);
            Ok(Extent { offset: 0, avail: if growable { u64::MAX } else { i.size }, explicit: None, granularity: 1 })
        }
        _ => Err(anyhow::anyhow!("internal error: endpoint mismatch")),
    }
}

/// Run `oxcopy cp`.
pub async fn cp(conn: &Connector, o: &CpOptions) -> anyhow::Result<()> {
    let src_loc = parse_location(&o.src).map_err(|e| fail::usage(format!("source: {e}")))?;
    let dst_loc = parse_location(&o.dst).map_err(|e| fail::usage(format!("destination: {e}")))?;
    if let (Location::Local(_), Location::Local(_)) = (&src_loc, &dst_loc) {
        if matches!(o.method, MethodArg::Xcopy | MethodArg::Token | MethodArg::Copy) {
            let m = match o.method {
                MethodArg::Xcopy => Method::Xcopy,
                MethodArg::Copy => Method::Copy,
                _ => Method::Token,
            };
            return Err(fail::usage(format!(
                "--method {}: {}",
                m.name(),
                m.possible(&OffloadView::default()).err().unwrap_or_default()
            )));
        }
    }
    let src_o = open(conn, &src_loc, "source", None).await?;
    let dst_o = open(conn, &dst_loc, "destination", src_o.nvme().map(|n| &n.ctl)).await?;
    let src_x = extent_of(&src_o, &src_loc, "source")?;
    let dst_x = extent_of(&dst_o, &dst_loc, "destination")?;
    let bytes = copy_length(&src_x, &dst_x).map_err(fail::usage)?;

    // The same object on both sides.
    match (&src_o, &dst_o) {
        (Opened::Local(a), Opened::Local(b)) if a.id.is_some() && a.id == b.id => {
            return Err(fail::usage(format!("{} and {} are the same file", a.path.display(), b.path.display())));
        }
        (Opened::Iscsi(a), Opened::Iscsi(b)) if a.same_lun(b) => {
            let (s, d) = (src_x.offset, dst_x.offset);
            if bytes > 0 && s < d + bytes && d < s + bytes {
                return Err(fail::usage("the source and destination ranges overlap on the same LUN"));
            }
        }
        (Opened::Nvme(a), Opened::Nvme(b)) if a.same_namespace(b) => {
            let (s, d) = (src_x.offset, dst_x.offset);
            if bytes > 0 && s < d + bytes && d < s + bytes {
                return Err(fail::usage("the source and destination ranges overlap on the same namespace"));
            }
        }
        _ => {}
    }

    // Engine.
    let caps = |x: &Opened| match x {
        Opened::Iscsi(l) => Some(l.offload.clone()),
        _ => None,
    };
    let nvme_view = match (&src_o, &dst_o) {
        (Opened::Nvme(a), Opened::Nvme(b)) => {
            let id = &b.ctl.ctrl.identify;
            Some(NvmeCopyView {
                same_subsystem: a.ctl.same_subsystem(b.ctl.addr, &b.ctl.nqn),
                same_namespace: a.same_namespace(b),
                copy_command: id.oncs & oxcopy_nvme::wire::identify::oncs::COPY != 0,
                ocfs: id.ocfs,
                src_block_size: a.block_size(),
                dst_block_size: b.block_size(),
            })
        }
        _ => None,
    };
    let view = OffloadView { src: caps(&src_o), dst: caps(&dst_o), nvme: nvme_view };
    let plan = method::select(o.method, &view).map_err(fail::usage)?;
    // Two LUNs but no offload to try: say why once (a local end needs no explanation).
    let mut no_offload = None;
    if plan.may_fall_back && plan.methods == [Method::Host] && view.src.is_some() && view.dst.is_some() {
        let why: Vec<String> = [Method::Token, Method::Xcopy]
            .iter()
            .filter_map(|m| m.possible(&view).err().map(|e| format!("{}: {e}", m.name())))
            .collect();
        let reason = why.join("; ");
        errln!("oxcopy: note: no copy offload between these LUNs, using the host copy ({reason})");
        no_offload = Some(Fallback { from: Method::Token.name(), reason });
    }
    if plan.may_fall_back && plan.methods == [Method::Host] {
        if let Some(Err(reason)) = view.nvme.as_ref().map(|_| Method::Copy.possible(&view)) {
            errln!("oxcopy: note: no NVMe Copy between these namespaces, using the host copy ({reason})");
            no_offload = Some(Fallback { from: Method::Copy.name(), reason });
        }
    }

    // Open for I/O (this creates / truncates a local destination).
    let src = match src_o {
        Opened::Iscsi(l) => Side::Iscsi(l),
        Opened::Nvme(n) => Side::Nvme(n),
        Opened::Local(i) => Side::Local(endpoint::open_local_source(&i)?),
    };
    if let Side::Local(f) = &src {
        if f.kind == LocalKind::Regular {
            // The file may have changed size since we looked.
            let now = f.file.metadata().map(|m| m.len()).unwrap_or(0);
            if now < bytes {
                return Err(anyhow::anyhow!("{} shrank to {now} bytes while starting the copy", f.path.display()));
            }
        }
    }
    let dst = match dst_o {
        Opened::Iscsi(l) => Side::Iscsi(l),
        Opened::Nvme(n) => Side::Nvme(n),
        Opened::Local(i) => Side::Local(endpoint::open_local_destination(&i, bytes)?),
    };
    let src = Endpoint { side: src, offset: src_x.offset, name: src_loc.to_string() };
    let dst = Endpoint { side: dst, offset: dst_x.offset, name: dst_loc.to_string() };
    let stats0 = wire(&src, &dst);

    let t0 = Instant::now();
    let mut summary = Summary {
        method: plan.methods[0].name(),
        bytes,
        seconds: 0.0,
        bytes_per_second: 0.0,
        wire_bytes_sent: 0,
        wire_bytes_received: 0,
        fallback: no_offload,
        source: src.name.clone(),
        destination: dst.name.clone(),
        transfer_bytes: None,
        queue_depth: None,
        local: None,
        offload: None,
        verify: None,
    };
    let chunk = host::transfer_size(&[host::hints(&src), host::hints(&dst)].into_iter().flatten().collect::<Vec<_>>());
    for (i, &m) in plan.methods.iter().enumerate() {
        summary.method = m.name();
        let last = i + 1 == plan.methods.len();
        match m {
            Method::Host => {
                run_host(o, &src, &dst, bytes, chunk, &mut summary).await?;
                break;
            }
            Method::Xcopy | Method::Token | Method::Copy => {
                let progress = Progress::new(o.progress, bytes, m.name());
                let r = if m == Method::Copy {
                    let (Some(s), Some(d)) = (src.nvme(), dst.nvme()) else {
                        return Err(anyhow::anyhow!("internal error: NVMe Copy without two namespaces"));
                    };
                    nvme_copy::copy(s, src.offset, d, dst.offset, bytes, &progress).await
                } else {
                    let (Some(s), Some(d)) = (src.iscsi(), dst.iscsi()) else {
                        return Err(anyhow::anyhow!("internal error: offload without two LUNs"));
                    };
                    if m == Method::Xcopy {
                        xcopy::copy(s, src.offset, d, dst.offset, bytes, &progress).await
                    } else {
                        token::copy(s, src.offset, d, dst.offset, bytes, &progress).await
                    }
                };
                progress.finish();
                match r {
                    Ok(report) => {
                        // The copy manager wrote through its own cache: make it durable like a host copy.
                        dst.flush().await?;
                        summary.offload = Some(report);
                        break;
                    }
                    Err(e) if plan.may_fall_back && !last => {
                        let next = plan.methods[i + 1].name();
                        errln!("oxcopy: note: {} failed, falling back to {next}: {}", human_method(m), e.reason);
                        summary.fallback.get_or_insert(Fallback { from: m.name(), reason: e.reason });
                    }
                    Err(e) => {
                        let what = if plan.may_fall_back { "" } else { "--method " };
                        return Err(anyhow::anyhow!(
                            "{what}{}: {} ({} of {} copied before it stopped)",
                            m.name(),
                            e.reason,
                            human::bytes(e.done),
                            human::bytes(bytes)
                        ));
                    }
                }
            }
        }
    }
    summary.seconds = t0.elapsed().as_secs_f64();
    summary.bytes_per_second = if summary.seconds > 0.0 { bytes as f64 / summary.seconds } else { 0.0 };
    let stats1 = wire(&src, &dst);
    summary.wire_bytes_sent = stats1.0.saturating_sub(stats0.0);
    summary.wire_bytes_received = stats1.1.saturating_sub(stats0.1);

    if o.corrupt_destination {
        host::corrupt(&dst, bytes).await?;
    }
    let mut verify_failed = None;
    if o.verify {
        let progress = Progress::new(o.progress, bytes, "verify");
        let r = host::verify(&src, &dst, bytes, chunk, o.queue_depth, &progress).await?;
        progress.finish();
        if !r.ok {
            verify_failed = Some(format!(
                "verify failed: {} of {} chunks differ ({}-byte chunks, SHA-256); the first at byte {} of the copy \
                 ({})",
                r.mismatched_chunks,
                r.chunks,
                r.chunk_bytes,
                r.first_mismatch_offset.unwrap_or(0),
                dst.name
            ));
        }
        summary.verify = Some(r);
    }

    if o.json {
        outln!("{}", serde_json::to_string(&summary)?);
    } else {
        print_summary(&summary);
    }
    logout(src, dst).await;
    match verify_failed {
        Some(msg) => Err(anyhow::anyhow!(msg)),
        None => Ok(()),
    }
}

/// The engine in words, for notes.
fn human_method(m: Method) -> &'static str {
    match m {
        Method::Token => "token copy (POPULATE TOKEN / WRITE USING TOKEN)",
        Method::Xcopy => "EXTENDED COPY",
        Method::Copy => "NVMe Copy",
        Method::Host => "host copy",
    }
}

/// The host copy (or a local → local copy between regular files).
async fn run_host(
    o: &CpOptions,
    src: &Endpoint,
    dst: &Endpoint,
    bytes: u64,
    chunk: u64,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let both_files = [src, dst].iter().all(|e| e.local().is_some_and(|f| f.kind == LocalKind::Regular));
    if both_files {
        let progress = Progress::new(o.progress, bytes, "local");
        let (s, d) = (src.local().map(|f| f.path.clone()), dst.local().map(|f| f.path.clone()));
        let p = progress.clone();
        let report = tokio::task::spawn_blocking(move || match (s, d) {
            (Some(s), Some(d)) => local::copy_files(&s, &d, bytes, &p),
            _ => Err(anyhow::anyhow!("internal error: local copy without files")),
        })
        .await??;
        progress.finish();
        summary.local = Some(report);
    } else {
        let progress = Progress::new(o.progress, bytes, "host");
        let qd = o.queue_depth;
        host::copy(src, dst, bytes, chunk, qd, &progress).await?;
        dst.flush().await?;
        progress.finish();
        summary.transfer_bytes = Some(chunk);
        summary.queue_depth = Some(qd);
    }
    Ok(())
}

/// Wire bytes (sent, received) over both sessions (an NVMe controller that
/// serves both ends counted once).
fn wire(src: &Endpoint, dst: &Endpoint) -> (u64, u64) {
    let mut t = (0, 0);
    for e in [src, dst] {
        if let Some(l) = e.iscsi() {
            let s = l.session.wire_stats();
            t.0 += s.bytes_sent;
            t.1 += s.bytes_received;
        }
    }
    let (a, b) = (src.nvme(), dst.nvme());
    let shared = matches!((a, b), (Some(a), Some(b)) if std::sync::Arc::ptr_eq(&a.ctl.ctrl, &b.ctl.ctrl));
    for n in [a, if shared { None } else { b }].into_iter().flatten() {
        let (s, r) = n.ctl.ctrl.wire_bytes();
        t.0 += s;
        t.1 += r;
    }
    t
}

/// Log out of the iSCSI sessions and shut the NVMe controllers down.
async fn logout(src: Endpoint, dst: Endpoint) {
    for e in [&src, &dst] {
        if let Some(l) = e.iscsi() {
            let s = l.session.clone();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.logout()).await;
        }
    }
    let ctls: Vec<Controller> = [&src, &dst].iter().filter_map(|e| e.nvme().map(|n| n.ctl.clone())).collect();
    drop((src, dst));
    for c in ctls {
        c.close().await;
    }
}

fn print_summary(s: &Summary) {
    let how = match (&s.local, s.transfer_bytes) {
        (Some(l), _) => format!("locally ({})", l.describe()),
        (None, None) if s.offload.is_some() => {
            let r = s.offload.as_ref().map(|r| (r.commands, r.copy_manager.as_str())).unwrap_or_default();
            let (what, format) = match s.method {
                "token" => ("token copy", String::new()),
                "copy" => {
                    let f = s.offload.as_ref().and_then(|r| r.copy_format.clone()).unwrap_or_default();
                    ("NVMe Copy", format!("format {f}, "))
                }
                _ => ("EXTENDED COPY", String::new()),
            };
            format!(
                "by {what} ({format}{} commands, {}; {} sent, {} received on the wire)",
                r.0,
                r.1,
                human::bytes(s.wire_bytes_sent),
                human::bytes(s.wire_bytes_received)
            )
        }
        (None, Some(t)) => format!(
            "by host copy ({} per command, {} in flight; {} sent, {} received on the wire)",
            human::bytes(t),
            s.queue_depth.unwrap_or(1),
            human::bytes(s.wire_bytes_sent),
            human::bytes(s.wire_bytes_received)
        ),
        _ => format!("by {}", s.method),
    };
    outln!("copied {} in {:.2} s ({}) {how}", human::bytes(s.bytes), s.seconds, human::rate(s.bytes_per_second));
    if let Some(v) = &s.verify {
        if v.ok {
            outln!("verified: {} chunks match ({})", v.chunks, v.digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::parse_iscsi_url;

    fn url(q: &str) -> IscsiUrl {
        parse_iscsi_url(&format!("iscsi://h/iqn.a:b/0{q}")).unwrap()
    }

    fn file(size: u64) -> Extent {
        Extent { offset: 0, avail: size, explicit: None, granularity: 1 }
    }

    #[test]
    fn lun_ranges() {
        let x = lun_extent(&url(""), 1000, 512, "source").unwrap();
        assert_eq!(x, Extent { offset: 0, avail: 512_000, explicit: None, granularity: 512 });
        let x = lun_extent(&url("?lba=10&blocks=5"), 1000, 512, "source").unwrap();
        assert_eq!(x, Extent { offset: 5120, avail: 990 * 512, explicit: Some(2560), granularity: 512 });
        let x = lun_extent(&url("?lba=1000"), 1000, 512, "source").unwrap();
        assert_eq!(x.avail, 0);
        let e = lun_extent(&url("?lba=1001"), 1000, 512, "source").unwrap_err();
        assert!(e.contains("past the end"), "{e}");
        let e = lun_extent(&url("?lba=999&blocks=2"), 1000, 512, "source").unwrap_err();
        assert!(e.contains("runs past the end"), "{e}");
        assert!(lun_extent(&url(&format!("?lba=1&blocks={}", u64::MAX)), 1000, 512, "source").is_err());
    }

    #[test]
    fn namespace_ranges() {
        let u = |q: &str| crate::url::parse_nvme_url(&format!("nvme+tcp://h/nqn.a:b/2{q}")).unwrap();
        let x = ns_extent(&u(""), 2048, 4096, "source").unwrap();
        assert_eq!(x, Extent { offset: 0, avail: 2048 * 4096, explicit: None, granularity: 4096 });
        let x = ns_extent(&u("?lba=8&blocks=2"), 2048, 4096, "destination").unwrap();
        assert_eq!(x, Extent { offset: 8 * 4096, avail: 2040 * 4096, explicit: Some(8192), granularity: 4096 });
        assert_eq!(
            ns_extent(&u("?lba=2049"), 2048, 512, "source").unwrap_err(),
            "source range starts at LBA 2049, past the end of namespace 2 of nqn.a:b (2048 blocks)"
        );
        assert_eq!(
            ns_extent(&u("?lba=2047&blocks=2"), 2048, 512, "destination").unwrap_err(),
            "destination range lba=2047 blocks=2 runs past the end of namespace 2 of nqn.a:b (2048 blocks of 512 bytes)"
        );
        assert!(ns_extent(&u(&format!("?lba=1&blocks={}", u64::MAX)), 2048, 512, "source").is_err());
    }

    #[test]
    fn copy_lengths() {
        let lun = |avail, explicit, g| Extent { offset: 0, avail, explicit, granularity: g };
        let grow = Extent { offset: 0, avail: u64::MAX, explicit: None, granularity: 1 };
        assert_eq!(copy_length(&lun(4096, None, 512), &grow), Ok(4096));
        assert!(copy_length(&lun(4096, Some(1024), 512), &lun(8192, None, 4096)).unwrap_err().contains("4096-byte"));
        assert_eq!(copy_length(&lun(8192, None, 512), &lun(8192, Some(4096), 4096)), Ok(4096));
        assert!(copy_length(&lun(1024, None, 512), &lun(8192, Some(4096), 4096)).unwrap_err().contains("only"));
        assert!(copy_length(&lun(8192, Some(512), 512), &lun(8192, Some(1024), 512)).unwrap_err().contains("but"));
        assert!(copy_length(&lun(8192, None, 512), &lun(4096, None, 512)).unwrap_err().contains("room for"));
        // A local file of odd size to a LUN.
        assert!(copy_length(&file(1000), &lun(1 << 20, None, 512)).unwrap_err().contains("512-byte"));
        assert_eq!(copy_length(&file(1024), &lun(1 << 20, None, 512)), Ok(1024));
        assert_eq!(copy_length(&file(0), &grow), Ok(0));
    }
}
