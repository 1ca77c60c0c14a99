//! Copies between stacked volumes on real filesystems: the acceptance test
//! of LUNs on `[[volume]]`s, through the real daemon (in process) and our
//! initiator.
//!
//! Three loop filesystems — XFS-1 and XFS-2 (reflink=1) and one ext4 —
//! carry the leaves of two volumes of 192 MiB each:
//!
//! | volume | kind | members (leaf file: bytes) |
//! |---|---|---|
//! | `lin` (LUN 0) | linear | XFS-1 `lin0.img`: 64 MiB, ext4 `lin1.img`: 48 MiB, XFS-2 `lin2.img`: 80 MiB |
//! | `str` (LUN 1) | striped, 64 KiB | XFS-1 `str0.img`, ext4 `str1.img`, XFS-2 `str2.img`, ext4 `str3.img`: 48 MiB each |
//!
//! so that a copy between the two LUNs is split into pieces of every kind of
//! leaf pair: XFS→XFS on one filesystem (reflink), ext4→ext4 on one
//! filesystem (copy_file_range), and across filesystems (read/write, or
//! copy_file_range where the kernel copies across filesystems).
//!
//! The copies, each with boundaries deliberately unaligned with the
//! segment and stripe boundaries and every one required to end GOOD:
//!
//! 1. EXTENDED COPY LUN 0 → LUN 1: 150000 blocks from LBA 12345, across the
//!    XFS-1 → ext4 segment boundary of `lin`, in three 02h segments;
//! 2. EXTENDED COPY LUN 1 → LUN 0: into `lin` across its ext4 → XFS-2
//!    boundary, plus a segment whose source and destination differ in
//!    alignment within a filesystem block (so no piece of it can reflink);
//! 3. ODX token copy LUN 1 → LUN 0: two source ranges, two destination
//!    ranges crossing both segment boundaries of `lin`;
//! 4. the point-in-time proof on a volume: POPULATE TOKEN, then overwrite
//!    (most of) the source range, then WRITE USING TOKEN: the destination
//!    gets the old data. `str` has ext4 legs, so the token cannot be a
//!    reflink snapshot: the old blocks are preserved by copy-on-write into a
//!    scratch file beside `str`'s first leg (on XFS-1). Then the same from
//!    `lin` to `str`, with source ranges of whole filesystem blocks on its
//!    two XFS leaves: that token holds a reflink snapshot of each leaf
//!    instead (and `oxcopy_rod_snapshot_bytes` grows by its size);
//! 5. within one volume: str → str, not overlapping (split into leg-to-leg
//!    pieces, reflink within one leaf file), and lin → lin overlapping across
//!    a segment boundary, both directions (read/write through the volume in
//!    the safe direction).
//!
//! Each destination is checked by READ through the initiator, by reading
//! the leaf files directly according to the layout (a model of both volumes
//! in this file), and by the guard bytes around it staying untouched.
//!
//! Metrics: for each copy the `oxcopy_copy_bytes_total{method}` deltas are
//! compared with what the model predicts from the leaf pairs of its pieces:
//! the methods sum to exactly the bytes copied (no holes: every source byte
//! was written), `reflink` is exactly the filesystem-block-aligned middles
//! of the XFS→XFS pieces on one filesystem with equal alignment (and > 0),
//! `read_write` happens only across filesystems. Making a point-in-time
//! token and preserving old blocks by copy-on-write count no copy bytes
//! (checked: their deltas are zero); only the WRITE USING TOKEN counts.
//!
//! Root only: skipped with a `skipped: …` line otherwise, unless
//! `OXCOPY_REQUIRE_XFS=1` (CI as root), which makes a missing loop
//! filesystem a failure.

mod common;
mod odx_support;
mod xcopy_support;

use odx_support::{populate, pt, range, rod_type, wut, wut_ok, Methods, PIT_DEFAULT};
use oxcopy_initiator::xcopy::{Cscd, ListIdUsage, ParamList, Segment};
use oxcopy_initiator::Session;
use oxcopy_testkit::{DaemonConfig, LoopFs, Lun, Target};
use oxcopyd::config::Config;
use oxcopyd::Running;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;
use xcopy_support::scenarios::{check_guard, copy_ok, guard};
use xcopy_support::{connect, designator, file_bytes, pattern, read, same, write, INITIATOR, KIB, MIB, STEP};

/// The target with LUN 0 on `lin` and LUN 1 on `str`.
const TARGET: &str = "iqn.2026-11.dev.oxcopy:volumes";
const LIN: u64 = 0;
const STR: u64 = 1;
/// Logical block size of both LUNs.
const BS: u64 = 512;
/// Block size of the three filesystems: reflink moves whole blocks.
const FS_BLOCK: u64 = 4096;
const STRIPE: u64 = 64 * KIB;
/// Size of each loop filesystem image (sparse), MiB.
const FS_MIB: u64 = 1024;

/// Which filesystem a leaf file is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fs {
    Xfs1,
    Ext4,
    Xfs2,
}

impl Fs {
    fn reflinks(self) -> bool {
        self != Fs::Ext4
    }
}

/// A leaf file: where it is (`None`: an unlinked scratch file, which the
/// test cannot read) and on which filesystem.
#[derive(Debug, Clone)]
struct Leaf {
    path: Option<PathBuf>,
    fs: Fs,
}

/// A model of a volume's layout: which leaf holds which bytes.
#[derive(Debug, Clone)]
enum Layout {
    /// Members end to end: (leaf, bytes).
    Linear(Vec<(Leaf, u64)>),
    /// `stripe` bytes per leg in turn.
    Striped { stripe: u64, legs: Vec<Leaf> },
}

/// `len` bytes at `off` of one leaf.
#[derive(Debug, Clone)]
struct Run {
    leaf: Leaf,
    off: u64,
    len: u64,
}

impl Layout {
    fn len(&self) -> u64 {
        match self {
            Layout::Linear(m) => m.iter().map(|(_, n)| n).sum(),
            Layout::Striped { .. } => unreachable!("only the linear volumes' lengths are needed"),
        }
    }

    /// The leaf runs of `len` bytes at byte `off` of the volume, in order.
    fn runs(&self, off: u64, len: u64) -> Vec<Run> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < len {
            let pos = off + at;
            let (leaf, leaf_off, n) = match self {
                Layout::Linear(members) => {
                    let mut start = 0;
                    let (leaf, size) = members
                        .iter()
                        .find(|(_, size)| {
                            let hit = pos < start + size;
                            if !hit {
                                start += size;
                            }
                            hit
                        })
                        .unwrap_or_else(|| panic!("byte {pos} is beyond the linear volume"));
                    (leaf.clone(), pos - start, (start + size - pos).min(len - at))
                }
                Layout::Striped { stripe, legs } => {
                    let (k, within) = (pos / stripe, pos % stripe);
                    let legs_n = legs.len() as u64;
                    let leaf = legs[(k % legs_n) as usize].clone();
                    (leaf, (k / legs_n) * stripe + within, (stripe - within).min(len - at))
                }
            };
            out.push(Run { leaf, off: leaf_off, len: n });
            at += n;
        }
        out
    }

    /// `len` bytes at byte `off` of the volume, read from its leaf files.
    fn read_leaves(&self, off: u64, len: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len as usize);
        for r in self.runs(off, len) {
            let path = r.leaf.path.as_ref().expect("a leaf file the test can read");
            out.extend_from_slice(&file_bytes(path, r.off, r.len));
        }
        out
    }
}

/// Bytes of a copy by the kind of leaf pair their piece falls on, as the
/// model predicts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Pairs {
    /// XFS → XFS on one filesystem.
    same_xfs: u64,
    /// ... of which the filesystem-block-aligned middles of pieces whose
    /// source and destination offsets are equally aligned: reflink.
    reflinkable: u64,
    /// ext4 → ext4 (one filesystem): copy_file_range.
    same_ext4: u64,
    /// Across filesystems: read/write (or copy_file_range on kernels that
    /// copy across filesystems).
    cross: u64,
}

impl Pairs {
    fn total(self) -> u64 {
        self.same_xfs + self.same_ext4 + self.cross
    }

    fn add(&mut self, o: Pairs) {
        self.same_xfs += o.same_xfs;
        self.reflinkable += o.reflinkable;
        self.same_ext4 += o.same_ext4;
        self.cross += o.cross;
    }
}

/// Split `len` bytes from `src` at `src_off` to `dst` at `dst_off` into
/// leaf-to-leaf pieces (at every boundary of both sides) and classify them.
fn pairs(dst: &Layout, dst_off: u64, src: &Layout, src_off: u64, len: u64) -> Pairs {
    let d = dst.runs(dst_off, len);
    let s = src.runs(src_off, len);
    let mut p = Pairs::default();
    let (mut i, mut j, mut di, mut si) = (0, 0, 0u64, 0u64);
    while i < d.len() && j < s.len() {
        let n = (d[i].len - di).min(s[j].len - si);
        let (dl, sl) = (&d[i].leaf, &s[j].leaf);
        let (doff, soff) = (d[i].off + di, s[j].off + si);
        if dl.fs != sl.fs {
            p.cross += n;
        } else if dl.fs.reflinks() {
            p.same_xfs += n;
            if doff % FS_BLOCK == soff % FS_BLOCK {
                let head = ((FS_BLOCK - soff % FS_BLOCK) % FS_BLOCK).min(n);
                p.reflinkable += (n - head) / FS_BLOCK * FS_BLOCK;
            }
        } else {
            p.same_ext4 += n;
        }
        di += n;
        si += n;
        if di == d[i].len {
            (i, di) = (i + 1, 0);
        }
        if si == s[j].len {
            (j, si) = (j + 1, 0);
        }
    }
    assert_eq!(p.total(), len, "the model's pieces cover the copy");
    p
}

/// Check the metrics deltas `m` of one copy of `bytes` bytes against the
/// model's leaf pairs `p` (see the module docs).
#[track_caller]
fn check_methods(what: &str, m: Methods, p: Pairs, bytes: u64) {
    eprintln!("{what}: {bytes} bytes; metrics {m:?}; model {p:?}");
    assert_eq!(p.total(), bytes, "{what}: model");
    assert_eq!(m.hole, 0, "{what}: every source byte was written, no holes: {m:?}");
    assert_eq!(m.total(), bytes, "{what}: the methods sum to the bytes copied: {m:?}");
    assert_eq!(m.reflink, p.reflinkable, "{what}: reflink = the aligned XFS→XFS pieces on one fs: {m:?} {p:?}");
    assert!(m.reflink > 0, "{what}: some pieces reflink: {m:?}");
    assert!(m.cfr + m.rw > 0, "{what}: the others are copied: {m:?}");
    assert!(m.rw <= p.cross, "{what}: read/write only across filesystems: {m:?} {p:?}");
    assert!(m.cfr >= p.same_ext4 + p.same_xfs - p.reflinkable, "{what}: copy_file_range within one fs: {m:?} {p:?}");
}

/// The three filesystems, the daemon, its leaves' layouts.
struct Rig {
    running: Option<Running>,
    addr: SocketAddr,
    metrics: SocketAddr,
    lin: Layout,
    str_: Layout,
    _state: tempfile::TempDir,
}

impl Rig {
    async fn start(xfs1: &Path, ext4: &Path, xfs2: &Path) -> Rig {
        let leaf = |dir: &Path, name: &str, fs: Fs| Leaf { path: Some(dir.join(name)), fs };
        let lin = Layout::Linear(vec![
            (leaf(xfs1, "lin0.img", Fs::Xfs1), 64 * MIB),
            (leaf(ext4, "lin1.img", Fs::Ext4), 48 * MIB),
            (leaf(xfs2, "lin2.img", Fs::Xfs2), 80 * MIB),
        ]);
        let legs = vec![
            leaf(xfs1, "str0.img", Fs::Xfs1),
            leaf(ext4, "str1.img", Fs::Ext4),
            leaf(xfs2, "str2.img", Fs::Xfs2),
            leaf(ext4, "str3.img", Fs::Ext4),
        ];
        let member = |l: &Leaf, size: u64| format!("{}:{}MiB", l.path.as_ref().unwrap().display(), size / MIB);
        let lin_members: Vec<String> = match &lin {
            Layout::Linear(m) => m.iter().map(|(l, n)| member(l, *n)).collect(),
            Layout::Striped { .. } => unreachable!(),
        };
        let str_members: Vec<String> = legs.iter().map(|l| member(l, 48 * MIB)).collect();
        let state = tempfile::tempdir().expect("tempdir");
        let cfg = DaemonConfig::new(state.path().join("state"))
            .server("metrics", "127.0.0.1:0")
            .server("nop_interval", 0)
            .volume("lin", "linear", None, &lin_members)
            .volume("str", "striped", Some("64KiB"), &str_members)
            .target(Target::new(TARGET).lun(Lun::volume(0, "lin")).lun(Lun::volume(1, "str")));
        let path = cfg.write(state.path().join("oxcopyd.toml"));
        let cfg = Config::from_file(&path).expect("config validates");
        let running =
            tokio::time::timeout(STEP, oxcopyd::start(cfg)).await.expect("start hung").expect("daemon starts");
        let addr = running.addrs[0];
        let metrics = running.metrics_addr.expect("metrics endpoint configured");
        Rig {
            running: Some(running),
            addr,
            metrics,
            lin,
            str_: Layout::Striped { stripe: STRIPE, legs },
            _state: state,
        }
    }

    fn layout(&self, lun: u64) -> &Layout {
        if lun == LIN {
            &self.lin
        } else {
            &self.str_
        }
    }

    /// `oxcopy_rod_snapshot_bytes`: bytes held for point-in-time tokens.
    async fn snapshot_bytes(&self) -> u64 {
        let text = oxcopyd::metrics_http::scrape(self.metrics).await.expect("scrape /metrics");
        oxcopyd::metrics_http::sample(&text, "oxcopy_rod_snapshot_bytes", "")
    }

    async fn methods(&self) -> Methods {
        let text = oxcopyd::metrics_http::scrape(self.metrics).await.expect("scrape /metrics");
        let m = |k: &str| oxcopyd::metrics_http::sample(&text, "oxcopy_copy_bytes_total", &format!("method=\"{k}\""));
        Methods { reflink: m("reflink"), cfr: m("copy_file_range"), rw: m("read_write"), hole: m("hole") }
    }

    /// The destination holds `want` at `lba` of `lun`: by READ through the
    /// initiator and in the leaf files.
    async fn check_dst(&self, s: &Session, lun: u64, lba: u64, want: &[u8], what: &str) {
        let len = want.len() as u64;
        same(&read(s, lun, lba, len, BS as u32).await, want, &format!("{what}: READ"));
        same(&self.layout(lun).read_leaves(lba * BS, len), want, &format!("{what}: leaf files"));
    }

    async fn shutdown(mut self) {
        xcopy_support::shutdown(self.running.take()).await;
    }
}

/// A source pattern of `blocks` blocks written at `lba` of `lun` through the
/// initiator (and checked in the leaf files: the model is right).
async fn fill(rig: &Rig, s: &Session, lun: u64, lba: u64, blocks: u64, seed: u64) -> Vec<u8> {
    let data = pattern(seed, (blocks * BS) as usize);
    write(s, lun, lba, &data, BS as u32).await;
    same(&rig.layout(lun).read_leaves(lba * BS, blocks * BS), &data, "source written, in the leaf files");
    data
}

/// `(src_lba, dst_lba, blocks)` as a 02h block-to-block segment from CSCD
/// 0 to CSCD 1.
fn seg(src_lba: u64, dst_lba: u64, blocks: u64) -> Segment {
    let blocks = u16::try_from(blocks).expect("an 02h segment holds at most 65535 blocks");
    Segment::BlockToBlock { src: 0, dst: 1, dc: false, blocks, src_lba, dst_lba }
}

/// EXTENDED COPY of `segs` = `(src_lba, dst_lba, blocks)` from `src` to
/// `dst` (sent to `dst`), which must end GOOD with COPY STATUS reporting
/// every byte; returns the metrics deltas and the model's leaf pairs.
async fn xcopy(rig: &Rig, s: &Session, id: u8, src: u64, dst: u64, segs: &[(u64, u64, u64)]) -> (Methods, Pairs) {
    let list = ParamList {
        list_id: id,
        usage: ListIdUsage::Hold,
        cscds: vec![Cscd::new(designator(s, src).await, 0), Cscd::new(designator(s, dst).await, 0)],
        segments: segs.iter().map(|&(a, b, n)| seg(a, b, n)).collect(),
    };
    let mut p = Pairs::default();
    for &(a, b, n) in segs {
        p.add(pairs(rig.layout(dst), b * BS, rig.layout(src), a * BS, n * BS));
    }
    let before = rig.methods().await;
    let t = Instant::now();
    copy_ok(s, dst, &list, &format!("EXTENDED COPY {id}")).await;
    eprintln!("EXTENDED COPY {id}: {} blocks in {:?}", p.total() / BS, t.elapsed());
    let m = rig.methods().await.since(before);
    let st = s.copy_status(dst, id).await.expect("COPY STATUS");
    assert_eq!((st.status, st.bytes()), (1, p.total()), "COPY STATUS of list {id}: {st:?}");
    (m, p)
}

/// The whole scenario on the three filesystems.
async fn run(xfs1: &Path, ext4: &Path, xfs2: &Path) {
    common::install_panic_watch();
    let rig = Rig::start(xfs1, ext4, xfs2).await;
    assert_eq!(rig.lin.len(), 192 * MIB);
    let s = connect(rig.addr, TARGET, INITIATOR, None).await;
    for lun in [LIN, STR] {
        let (blocks, block_len) = s.read_capacity16(lun).await.expect("READ CAPACITY (16)");
        assert_eq!((blocks, block_len), (192 * MIB / BS, BS as u32), "LUN {lun}: READ CAPACITY (16)");
    }
    // lin: XFS-1 [0, 131072), ext4 [131072, 229376), XFS-2 [229376, 393216) in LBAs.
    let seg1 = 64 * MIB / BS;
    let seg2 = 112 * MIB / BS;

    // 1. EXTENDED COPY lin → str: 150000 blocks from LBA 12345 (57 blocks
    // into a stripe; across the XFS-1 → ext4 boundary of lin at 131072) to
    // LBA 20345 (same alignment within a 4 KiB block, so XFS-1 → XFS-1
    // pieces can reflink), in three segments.
    let (src, dst, n) = (12_345u64, 20_345u64, 150_000u64);
    assert!(src < seg1 && src + n > seg1);
    let data = fill(&rig, &s, LIN, src, n, 1).await;
    let g = guard(&s, STR, dst, n * BS, BS as u32, 2).await;
    let segs = [(src, dst, 65_535), (src + 65_535, dst + 65_535, 65_535), (src + 131_070, dst + 131_070, n - 131_070)];
    let (m, p) = xcopy(&rig, &s, 1, LIN, STR, &segs).await;
    rig.check_dst(&s, STR, dst, &data, "EXTENDED COPY lin → str").await;
    check_guard(&s, STR, dst, n * BS, BS as u32, &g, "EXTENDED COPY lin → str").await;
    check_methods("EXTENDED COPY lin → str", m, p, n * BS);

    // 2. EXTENDED COPY str → lin: 60000 blocks from LBA 300001 of str into
    // lin at 200001 (across its ext4 → XFS-2 boundary at 229376), and 3000
    // blocks from str 5 to lin 140003 (4 KiB alignments differ: no reflink).
    let (src, dst, n) = (300_001u64, 200_001u64, 60_000u64);
    assert!(dst < seg2 && dst + n > seg2);
    let data = fill(&rig, &s, STR, src, n, 3).await;
    let (src_b, dst_b, n_b) = (5u64, 140_003u64, 3000u64);
    let data_b = fill(&rig, &s, STR, src_b, n_b, 4).await;
    let g = guard(&s, LIN, dst, n * BS, BS as u32, 5).await;
    let g_b = guard(&s, LIN, dst_b, n_b * BS, BS as u32, 7).await;
    let (m, p) = xcopy(&rig, &s, 2, STR, LIN, &[(src, dst, 60_000), (src_b, dst_b, n_b)]).await;
    rig.check_dst(&s, LIN, dst, &data, "EXTENDED COPY str → lin").await;
    rig.check_dst(&s, LIN, dst_b, &data_b, "EXTENDED COPY str → lin, misaligned segment").await;
    check_guard(&s, LIN, dst, n * BS, BS as u32, &g, "EXTENDED COPY str → lin").await;
    check_guard(&s, LIN, dst_b, n_b * BS, BS as u32, &g_b, "EXTENDED COPY str → lin, misaligned").await;
    check_methods("EXTENDED COPY str → lin", m, p, (n + n_b) * BS);

    // 3. ODX str → lin: the ROD is str [100003, +30000) and [140007,
    // +10000); written to lin [120003, +25000) (across XFS-1 → ext4) and
    // [225003, +15000) (across ext4 → XFS-2).
    let src_ranges = [(100_003u64, 30_000u64), (140_007, 10_000)];
    let dst_ranges = [(120_003u64, 25_000u64), (225_003, 15_000)];
    assert!(dst_ranges[0].0 < seg1 && dst_ranges[0].0 + dst_ranges[0].1 > seg1);
    assert!(dst_ranges[1].0 < seg2 && dst_ranges[1].0 + dst_ranges[1].1 > seg2);
    let mut rod = Vec::new();
    for (i, &(lba, n)) in src_ranges.iter().enumerate() {
        rod.extend(fill(&rig, &s, STR, lba, n, 10 + i as u64).await);
    }
    let mut guards = Vec::new();
    for (i, &(lba, n)) in dst_ranges.iter().enumerate() {
        guards.push(guard(&s, LIN, lba, n * BS, BS as u32, 20 + 2 * i as u64).await);
    }
    // The model: ROD bytes in order against the destination ranges in order.
    let rod_src: Vec<(u64, u64)> = src_ranges.iter().map(|&(l, n)| (l * BS, n * BS)).collect();
    let mut p = Pairs::default();
    let mut at = 0u64;
    for &(dlba, dn) in &dst_ranges {
        let mut done = 0;
        while done < dn * BS {
            let rod_pos = at + done;
            let (mut base, mut k) = (0, 0);
            while rod_pos >= base + rod_src[k].1 {
                base += rod_src[k].1;
                k += 1;
            }
            let take = (rod_src[k].1 - (rod_pos - base)).min(dn * BS - done);
            p.add(pairs(&rig.lin, dlba * BS + done, &rig.str_, rod_src[k].0 + rod_pos - base, take));
            done += take;
        }
        at += dn * BS;
    }
    let ranges = src_ranges.iter().map(|&(l, n)| range(l, n as u32)).collect();
    let t = populate(&s, STR, 3000, &pt(None, ranges)).await;
    let before = rig.methods().await;
    let t0 = Instant::now();
    wut_ok(&s, LIN, 3001, &wut(t, 0, dst_ranges.iter().map(|&(l, n)| range(l, n as u32)).collect())).await;
    eprintln!("WRITE USING TOKEN str → lin: {:?}", t0.elapsed());
    let m = rig.methods().await.since(before);
    let mut at = 0usize;
    for (i, &(lba, n)) in dst_ranges.iter().enumerate() {
        let len = (n * BS) as usize;
        rig.check_dst(&s, LIN, lba, &rod[at..at + len], &format!("token copy str → lin, range {i}")).await;
        check_guard(&s, LIN, lba, n * BS, BS as u32, &guards[i], "token copy str → lin").await;
        at += len;
    }
    check_methods("token copy str → lin", m, p, rod.len() as u64);

    // 4. Point in time on a volume: PT of str [250001, +30000), then
    // overwrite its first 20000 blocks and one 4 KiB piece further on, then
    // WUT to lin [125001, +30000) (across XFS-1 → ext4): the old data.
    let (src, dst, n) = (250_001u64, 125_001u64, 30_000u64);
    let old = fill(&rig, &s, STR, src, n, 30).await;
    let g = guard(&s, LIN, dst, n * BS, BS as u32, 31).await;
    let m0 = rig.methods().await;
    let t = populate(&s, STR, 4000, &pt(Some(PIT_DEFAULT), vec![range(src, n as u32)])).await;
    assert_eq!(rod_type(&t), PIT_DEFAULT);
    let m1 = rig.methods().await;
    let overwrite = 20_000u64;
    let mut new = old.clone();
    new[..(overwrite * BS) as usize].copy_from_slice(&pattern(32, (overwrite * BS) as usize));
    let spot = ((25_000 - 3) * BS) as usize;
    new[spot..spot + 4096].copy_from_slice(&pattern(33, 4096));
    write(&s, STR, src, &new[..(overwrite * BS) as usize], BS as u32).await;
    write(&s, STR, src + spot as u64 / BS, &new[spot..spot + 4096], BS as u32).await;
    let m2 = rig.methods().await;
    // Preserved (copy-on-write) blocks come from the scratch file beside
    // str's first leg, on XFS-1, at their offsets in str; the rest from str.
    let scratch = Layout::Linear(vec![(Leaf { path: None, fs: Fs::Xfs1 }, 192 * MIB)]);
    let preserved = [(0, overwrite), (spot as u64 / BS, spot as u64 / BS + 8)];
    let mut p = Pairs::default();
    let mut b = 0u64;
    while b < n {
        let hit = preserved.iter().find(|(lo, hi)| (*lo..*hi).contains(&b));
        let next = match hit {
            Some(&(_, hi)) => hi,
            None => preserved.iter().map(|&(lo, _)| lo).filter(|&lo| lo > b).min().unwrap_or(n),
        };
        let from = if hit.is_some() { &scratch } else { &rig.str_ };
        p.add(pairs(&rig.lin, (dst + b) * BS, from, (src + b) * BS, (next - b) * BS));
        b = next;
    }
    wut_ok(&s, LIN, 4001, &wut(t, 0, vec![range(dst, n as u32)])).await;
    let m3 = rig.methods().await;
    rig.check_dst(&s, LIN, dst, &old, "point-in-time token copy: the OLD data").await;
    check_guard(&s, LIN, dst, n * BS, BS as u32, &g, "point-in-time token copy").await;
    rig.check_dst(&s, STR, src, &new, "point-in-time token copy: the source has the new data").await;
    eprintln!("POPULATE TOKEN (point in time): {:?}; overwrite: {:?}", m1.since(m0), m2.since(m1));
    assert_eq!(m1.since(m0), Methods::default(), "making a point-in-time token counts no copy bytes");
    assert_eq!(m2.since(m1), Methods::default(), "preserving old blocks (copy-on-write) counts no copy bytes");
    check_methods("point-in-time token copy str → lin", m3.since(m2), p, n * BS);

    // 4b. Point in time by reflink snapshot: both source ranges of lin are
    // whole filesystem blocks on XFS leaves (XFS-1 at 12 MiB, XFS-2 at 148
    // MiB), so the token holds a snapshot of each leaf (a linear volume over
    // the two) instead of copy-on-write. Overwrite both, then WUT into str
    // at LBA 65536: the old data, reflinked from the snapshots wherever a
    // piece lands on a leg of the same filesystem.
    let src_ranges = [(24_576u64, 8192u64), (303_104, 8192)];
    let dst = 65_536u64;
    let mut old = Vec::new();
    for (i, &(lba, n)) in src_ranges.iter().enumerate() {
        old.extend(fill(&rig, &s, LIN, lba, n, 70 + i as u64).await);
    }
    let len = old.len() as u64;
    let g = guard(&s, STR, dst, len, BS as u32, 72).await;
    let held0 = rig.snapshot_bytes().await;
    let m0 = rig.methods().await;
    let ranges = src_ranges.iter().map(|&(l, n)| range(l, n as u32)).collect();
    let t = populate(&s, LIN, 4100, &pt(Some(PIT_DEFAULT), ranges)).await;
    let held = rig.snapshot_bytes().await;
    assert!(held >= held0 + len, "a reflink snapshot is charged in full when made: {held0} → {held}");
    let mut new = Vec::new();
    for (i, &(lba, n)) in src_ranges.iter().enumerate() {
        new.extend(fill(&rig, &s, LIN, lba, n, 73 + i as u64).await);
    }
    let m1 = rig.methods().await;
    assert_eq!(m1.since(m0), Methods::default(), "a reflink snapshot counts no copy bytes");
    // The snapshot: the first range's blocks in a file on XFS-1, the
    // second's in one on XFS-2, each from offset 0.
    let snap = Layout::Linear(vec![
        (Leaf { path: None, fs: Fs::Xfs1 }, src_ranges[0].1 * BS),
        (Leaf { path: None, fs: Fs::Xfs2 }, src_ranges[1].1 * BS),
    ]);
    let p = pairs(&rig.str_, dst * BS, &snap, 0, len);
    wut_ok(&s, STR, 4101, &wut(t, 0, vec![range(dst, (len / BS) as u32)])).await;
    let m = rig.methods().await.since(m1);
    rig.check_dst(&s, STR, dst, &old, "point-in-time token by snapshot: the OLD data").await;
    check_guard(&s, STR, dst, len, BS as u32, &g, "point-in-time token by snapshot").await;
    let mut at = 0usize;
    for &(lba, n) in &src_ranges {
        let n = (n * BS) as usize;
        rig.check_dst(&s, LIN, lba, &new[at..at + n], "snapshot source has the new data").await;
        at += n;
    }
    check_methods("point-in-time token copy (snapshot) lin → str", m, p, len);

    // 5. Within one volume. Non-overlapping, str → str, shifted by 40 whole
    // rows of stripes plus 8 blocks: leg i → leg i mostly (XFS-1 legs
    // reflink within one file), leg i → leg i+1 for the last 8 blocks of
    // each stripe.
    let (src, dst, n) = (330_001u64, 350_489u64, 20_000u64);
    assert_eq!(dst - src, 4 * (STRIPE / BS) * 40 + 8);
    let data = fill(&rig, &s, STR, src, n, 40).await;
    let g = guard(&s, STR, dst, n * BS, BS as u32, 41).await;
    let (m, p) = xcopy(&rig, &s, 5, STR, STR, &[(src, dst, n)]).await;
    rig.check_dst(&s, STR, dst, &data, "EXTENDED COPY within str").await;
    check_guard(&s, STR, dst, n * BS, BS as u32, &g, "EXTENDED COPY within str").await;
    check_methods("EXTENDED COPY within str", m, p, n * BS);
    // Overlapping, within lin, across its XFS-1 → ext4 boundary, both
    // directions: through the volume in the safe direction (read/write).
    for (i, (src, dst)) in [(129_001u64, 129_501u64), (130_501, 130_001)].into_iter().enumerate() {
        let n = 4000u64;
        let lo = src.min(dst);
        let span = n + src.abs_diff(dst);
        let data = fill(&rig, &s, LIN, lo, span, 50 + i as u64).await;
        let mut model = data.clone();
        let (so, d_o) = (((src - lo) * BS) as usize, ((dst - lo) * BS) as usize);
        model.copy_within(so..so + (n * BS) as usize, d_o);
        let g = guard(&s, LIN, lo, span * BS, BS as u32, 60 + 2 * i as u64).await;
        let before = rig.methods().await;
        let list = ParamList {
            list_id: 6,
            usage: ListIdUsage::Discard,
            cscds: vec![Cscd::new(designator(&s, LIN).await, 0)],
            segments: vec![Segment::BlockToBlock {
                src: 0,
                dst: 0,
                dc: false,
                blocks: n as u16,
                src_lba: src,
                dst_lba: dst,
            }],
        };
        copy_ok(&s, LIN, &list, "overlapping EXTENDED COPY within lin").await;
        let m = rig.methods().await.since(before);
        let what = format!("overlapping copy within lin, {src} → {dst}");
        rig.check_dst(&s, LIN, lo, &model, &what).await;
        check_guard(&s, LIN, lo, span * BS, BS as u32, &g, &what).await;
        eprintln!("{what}: metrics {m:?}");
        assert_eq!(m, Methods { rw: n * BS, ..Methods::default() }, "{what}");
    }

    s.logout().await.expect("logout");
    rig.shutdown().await;
    common::assert_no_panics();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_between_volumes_on_xfs_and_ext4() {
    let t = Instant::now();
    let Some(xfs1) = LoopFs::xfs_reflink(FS_MIB) else {
        return;
    };
    let Some(ext4) = LoopFs::ext4(FS_MIB) else {
        return;
    };
    let Some(xfs2) = LoopFs::xfs_reflink(FS_MIB) else {
        return;
    };
    run(&xfs1.mnt, &ext4.mnt, &xfs2.mnt).await;
    eprintln!("volumes_fs: {:?} in all", t.elapsed());
}
