//! Live reconfiguration of the real `oxcopyd` binary: the config file is
//! rewritten and the daemon sent SIGHUP (by PID) while initiators are logged
//! in. Added LUNs appear after REPORTED LUNS DATA HAS CHANGED, removed ones
//! end their I/O cleanly, grown ones report CAPACITY DATA HAS CHANGED and
//! revoke their tokens, broken configurations change nothing, and allow-list
//! changes close the sessions no longer admitted.

mod common;

use common::{pattern, session_cfg, spawn_opts, within, STEP};
use oxcopy_initiator::odx::{BlockRange, PopulateToken, WriteUsingToken};
use oxcopy_initiator::scsi::cdb;
use oxcopy_initiator::{DataDir, ScsiOutcome, Session, SessionConfig};
use oxcopy_testkit::{output_within, DaemonConfig, Lun, Proc, Spawn, Target};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const IQN: &str = "iqn.2026-11.dev.oxcopy:reload";
const OTHER: &str = "iqn.2026-11.dev.oxcopy:reload-other";
const HOST_A: &str = "iqn.2026-11.test:reload-a";
const HOST_B: &str = "iqn.2026-11.test:reload-b";
const MIB: u64 = 1 << 20;
const BS: u32 = 512;

/// (UNIT ATTENTION, REPORTED LUNS DATA HAS CHANGED)
const REPORTED_LUNS_CHANGED: (u8, u8, u8) = (0x06, 0x3F, 0x0E);
/// (UNIT ATTENTION, CAPACITY DATA HAS CHANGED)
const CAPACITY_CHANGED: (u8, u8, u8) = (0x06, 0x2A, 0x09);
/// (ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED)
const LUN_NOT_SUPPORTED: (u8, u8, u8) = (0x05, 0x25, 0x00);
/// (ILLEGAL REQUEST, INVALID TOKEN OPERATION, TOKEN REVOKED)
const TOKEN_REVOKED: (u8, u8, u8) = (0x05, 0x23, 0x06);

/// A LUN of the test target: id, file name, size in bytes.
type LunSpec<'a> = (u32, &'a str, u64);

/// The daemon and the directory holding its config, state and LUN files.
struct Live {
    p: Proc,
    dir: tempfile::TempDir,
    cfg: PathBuf,
    /// Reload outcomes logged so far (applied or refused).
    reloads: usize,
}

fn config(dir: &Path, luns: &[LunSpec<'_>], initiators: Option<&[&str]>) -> DaemonConfig {
    let mut t = Target::new(IQN);
    if let Some(list) = initiators {
        t = t.initiators(list);
    }
    for (id, file, size) in luns {
        t = t.lun(Lun::new(*id, dir.join(file)).size(*size).block_size(BS));
    }
    DaemonConfig::new(dir.join("state")).server("nop_interval", 0u64).target(t)
}

impl Live {
    /// The daemon on `luns` of [`IQN`] (and `extra` targets), logging at info.
    fn start(luns: &[LunSpec<'_>], initiators: Option<&[&str]>) -> Live {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), luns, initiators).write(dir.path().join("oxcopyd.toml"));
        let p = Proc::spawn(&cfg, &Spawn { rust_log: "info", url_timeout: STEP, ..spawn_opts() });
        Live { p, dir, cfg, reloads: 0 }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Rewrite the config file with `text` and send SIGHUP; wait (bounded)
    /// until the daemon logged the outcome, and return what it logged since
    /// the signal.
    async fn reload_text(&mut self, text: &str) -> String {
        std::fs::write(&self.cfg, text).expect("rewrite config");
        let from = self.p.stderr().len();
        let out = output_within(Command::new("kill").arg("-HUP").arg(self.p.pid().to_string()), STEP)
            .expect("run kill")
            .expect("kill in time");
        assert!(out.status.success(), "kill -HUP: {}", String::from_utf8_lossy(&out.stderr));
        self.reloads += 1;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let err = self.p.stderr();
            let done =
                err.matches("configuration reloaded").count() + err.matches("configuration reload refused").count();
            if done >= self.reloads {
                return err.get(from..).unwrap_or_default().to_string();
            }
            assert!(Instant::now() < deadline, "no reload outcome logged within 20 s; stderr:\n{err}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn reload(&mut self, cfg: &DaemonConfig) -> String {
        self.reload_text(&cfg.to_toml()).await
    }

    async fn session_as(&self, initiator: &str) -> Session {
        let cfg = SessionConfig { initiator_name: initiator.into(), ..session_cfg(IQN) };
        within(STEP, "login", Session::connect(self.p.addr(), cfg)).await.expect("login")
    }

    async fn try_login(&self, target: &str, initiator: &str) -> oxcopy_initiator::Result<Session> {
        let cfg = SessionConfig { initiator_name: initiator.into(), ..session_cfg(target) };
        within(STEP, "login", Session::connect(self.p.addr(), cfg)).await
    }

    /// Still running, nothing panicked.
    fn healthy(&mut self) {
        assert!(self.p.wait_exit(Duration::ZERO, Duration::from_millis(1)).is_none(), "daemon exited");
        let err = self.p.stderr();
        assert!(!err.contains("panicked"), "stderr:\n{err}");
    }
}

/// Whether `s` gets closed within [`STEP`] (commands answered meanwhile: the
/// daemon closes it once it has seen the reload).
async fn closed(s: &Session) -> bool {
    let t = Instant::now();
    while t.elapsed() < STEP {
        match tokio::time::timeout(STEP, s.execute(0, &cdb::test_unit_ready(), DataDir::None)).await {
            Err(_) => return false,
            Ok(Err(_)) => return true,
            Ok(Ok(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    false
}

fn triplet(o: &ScsiOutcome) -> Option<(u8, u8, u8)> {
    o.sense_info().map(|s| (s.key, s.asc, s.ascq))
}

/// TEST UNIT READY on `lun`: None when GOOD, else the sense triplet.
async fn tur(s: &Session, lun: u64) -> Option<(u8, u8, u8)> {
    let o = within(STEP, "TEST UNIT READY", s.execute(lun, &cdb::test_unit_ready(), DataDir::None))
        .await
        .expect("TEST UNIT READY answered");
    if o.is_good() {
        None
    } else {
        Some(triplet(&o).unwrap_or((0xFF, 0xFF, 0xFF)))
    }
}

async fn report_luns(s: &Session) -> Vec<u64> {
    within(STEP, "REPORT LUNS", s.report_luns()).await.expect("REPORT LUNS")
}

async fn write_read(s: &Session, lun: u64, lba: u64, seed: u64) {
    let data = pattern(seed, 8 * BS as usize);
    within(STEP, "WRITE", s.write16(lun, lba, data.clone(), BS, false)).await.expect("WRITE (16)");
    let back = within(STEP, "READ", s.read16(lun, lba, 8, BS)).await.expect("READ (16)");
    assert!(back == data, "LUN {lun} LBA {lba}: read back differs");
}

/// (a) A LUN added by SIGHUP: the logged-in session gets REPORTED LUNS DATA
/// HAS CHANGED, REPORT LUNS then lists it, it reads and writes, and it got
/// a stable identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_a_lun_seen_after_the_unit_attention() {
    let mut d = Live::start(&[(0, "lun0.img", 4 * MIB)], None);
    let s = d.session_as(HOST_A).await;
    assert_eq!(tur(&s, 0).await, None);
    assert_eq!(report_luns(&s).await, vec![0]);

    let err = d.reload(&config(d.dir.path(), &[(0, "lun0.img", 4 * MIB), (1, "lun1.img", 8 * MIB)], None)).await;
    assert!(err.contains("configuration reloaded: +1/-0 LUNs"), "stderr:\n{err}");
    assert_eq!(std::fs::metadata(d.file("lun1.img")).expect("LUN 1 created").len(), 8 * MIB);

    assert_eq!(tur(&s, 0).await, Some(REPORTED_LUNS_CHANGED), "the change is announced");
    assert_eq!(tur(&s, 0).await, None, "once");
    assert_eq!(report_luns(&s).await, vec![0, 1]);
    let (blocks, bs) = within(STEP, "READ CAPACITY", s.read_capacity16(1)).await.expect("READ CAPACITY");
    assert_eq!((blocks, bs), (8 * MIB / u64::from(BS), BS));
    write_read(&s, 1, 100, 1).await;
    write_read(&s, 0, 100, 2).await;
    let ids = std::fs::read_to_string(d.file("state/identities.toml")).expect("identities");
    assert!(ids.contains(&format!("{IQN}/1")), "LUN 1's identity saved:\n{ids}");
    d.healthy();
}

/// (b) A LUN removed while writes run on it: every write ends GOOD or with
/// LOGICAL UNIT NOT SUPPORTED, none hangs, the connection stays, and the
/// other LUN keeps working (after REPORTED LUNS DATA HAS CHANGED).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_removes_a_lun_under_io() {
    let mut d = Live::start(&[(0, "lun0.img", 4 * MIB), (1, "lun1.img", 4 * MIB)], None);
    let s = d.session_as(HOST_A).await;
    assert_eq!(tur(&s, 0).await, None);
    let good = Arc::new(AtomicU64::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..4u64 {
        let (s, good) = (s.clone(), good.clone());
        writers.spawn(async move {
            for i in 0u64.. {
                let lba = (w * 1024 + (i % 128) * 8) % 8192;
                let c = cdb::write16(lba, 8, false);
                let data = DataDir::Write { data: pattern(w << 32 | i, 8 * BS as usize) };
                let o = match tokio::time::timeout(STEP, s.execute(1, &c, data)).await {
                    Err(_) => return Err(format!("writer {w}: write {i} hung")),
                    Ok(Err(e)) => return Err(format!("writer {w}: write {i}: {e}")),
                    Ok(Ok(o)) => o,
                };
                if o.is_good() {
                    good.fetch_add(1, Ordering::Relaxed);
                } else if triplet(&o) == Some(LUN_NOT_SUPPORTED) {
                    return Ok(i);
                } else {
                    return Err(format!("writer {w}: write {i}: status {:#x} {:?}", o.status, triplet(&o)));
                }
            }
            Err("unreachable".into())
        });
    }
    let t = Instant::now();
    while good.load(Ordering::Relaxed) < 40 {
        assert!(t.elapsed() < STEP, "writes make no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let err = d.reload(&config(d.dir.path(), &[(0, "lun0.img", 4 * MIB)], None)).await;
    assert!(err.contains("configuration reloaded: +0/-1 LUNs"), "stderr:\n{err}");
    let before = good.load(Ordering::Relaxed);
    while let Some(r) = within(STEP, "writers end", writers.join_next()).await {
        r.expect("writer task").unwrap_or_else(|e| panic!("{e}"));
    }
    eprintln!("{before} writes GOOD before the reload was logged, {} in all", good.load(Ordering::Relaxed));
    assert_eq!(tur(&s, 0).await, Some(REPORTED_LUNS_CHANGED));
    assert_eq!(report_luns(&s).await, vec![0]);
    assert_eq!(tur(&s, 1).await, Some(LUN_NOT_SUPPORTED));
    write_read(&s, 0, 64, 3).await;
    assert!(d.file("lun1.img").exists(), "a removed LUN's file is left alone");
    d.healthy();
}

/// (c) A LUN grown by SIGHUP: CAPACITY DATA HAS CHANGED, READ CAPACITY shows
/// the new size, the new end is writable, and a token made before is
/// revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_grows_a_lun_and_revokes_its_tokens() {
    let mut d = Live::start(&[(0, "lun0.img", 4 * MIB), (1, "lun1.img", 4 * MIB)], None);
    let s = d.session_as(HOST_A).await;
    assert_eq!(tur(&s, 0).await, None);
    assert_eq!(tur(&s, 1).await, None);
    let old_blocks = 4 * MIB / u64::from(BS);
    assert_eq!(within(STEP, "READ CAPACITY", s.read_capacity16(0)).await.expect("READ CAPACITY"), (old_blocks, BS));
    write_read(&s, 0, 0, 4).await;
    let pt = PopulateToken { ranges: vec![BlockRange { lba: 0, blocks: 8 }], ..Default::default() };
    let o = within(STEP, "POPULATE TOKEN", s.populate_token(0, 7, &pt)).await.expect("POPULATE TOKEN");
    assert!(o.is_good(), "POPULATE TOKEN: {:?}", triplet(&o));
    let info = within(STEP, "RRTI", s.receive_rod_token_information(0, 7)).await.expect("RRTI");
    let token = info.token.expect("a token");

    let err = d.reload(&config(d.dir.path(), &[(0, "lun0.img", 8 * MIB), (1, "lun1.img", 4 * MIB)], None)).await;
    assert!(err.contains("1 grown"), "stderr:\n{err}");
    assert_eq!(std::fs::metadata(d.file("lun0.img")).expect("stat").len(), 8 * MIB);

    assert_eq!(tur(&s, 0).await, Some(CAPACITY_CHANGED));
    assert_eq!(tur(&s, 0).await, None);
    assert_eq!(tur(&s, 1).await, None, "the other LUN is not concerned");
    let new_blocks = 8 * MIB / u64::from(BS);
    assert_eq!(within(STEP, "READ CAPACITY", s.read_capacity16(0)).await.expect("READ CAPACITY"), (new_blocks, BS));
    write_read(&s, 0, new_blocks - 8, 5).await;
    let wut = WriteUsingToken { token, ranges: vec![BlockRange { lba: 0, blocks: 8 }], ..Default::default() };
    let o = within(STEP, "WRITE USING TOKEN", s.write_using_token(1, 8, &wut)).await.expect("WRITE USING TOKEN");
    assert_eq!(triplet(&o), Some(TOKEN_REVOKED), "a token of the grown LUN is revoked (status {:#x})", o.status);
    d.healthy();
}

/// (d) Broken configurations sent with SIGHUP change nothing: bad TOML, an
/// invalid size (with a LUN added beside it), a shrink, and a change that
/// needs a restart; the reason is logged, the LUNs, their contents and the
/// sessions are as before, no unit attention is raised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_configs_are_refused_without_any_change() {
    let luns = [(0, "lun0.img", 4 * MIB), (1, "lun1.img", 4 * MIB)];
    let mut d = Live::start(&luns, None);
    let s = d.session_as(HOST_A).await;
    assert_eq!(tur(&s, 0).await, None);
    assert_eq!(tur(&s, 1).await, None);
    write_read(&s, 1, 8, 6).await;
    let luns_before = report_luns(&s).await;
    let good = config(d.dir.path(), &luns, None).to_toml();
    let cfg_name = d.cfg.display().to_string();

    let bad_size = good.replace(&format!("size = {}", 4 * MIB), "size = \"lots\"")
        + &format!("\n[[target.lun]]\nid = 2\npath = \"{}\"\nsize = 1048576\n", d.file("lun2.img").display());
    assert!(bad_size.contains("\"lots\""), "{bad_size}");
    let shrink = good.replacen(&format!("size = {}", 4 * MIB), &format!("size = {}", 2 * MIB), 1);
    let restart = good.replace(
        &format!("data_dir = \"{}\"", d.file("state").display()),
        &format!("data_dir = \"{}\"", d.file("elsewhere").display()),
    );
    assert_ne!(restart, good);
    let cases = [
        ("bad TOML", "[server\nlisten = [".to_string(), ": line ".to_string()),
        ("invalid size", bad_size, "lun[0].size".to_string()),
        ("shrink", shrink, "shrinking a LUN is not supported".to_string()),
        ("data_dir", restart, "server.data_dir changed, which needs a restart".to_string()),
    ];
    for (what, text, reason) in cases {
        let err = d.reload_text(&text).await;
        let last = err.rsplit("configuration reload refused").next().unwrap_or_default();
        let line = last.lines().next().unwrap_or_default();
        assert!(line.contains(&cfg_name) && line.contains(&reason), "{what}: refusal must name {reason}:\n{err}");
        assert!(!err.contains("configuration reloaded"), "{what}: applied:\n{err}");
        assert_eq!(tur(&s, 0).await, None, "{what}: no unit attention");
        assert_eq!(tur(&s, 1).await, None, "{what}: no unit attention");
        assert_eq!(report_luns(&s).await, luns_before, "{what}");
        assert!(!d.file("lun2.img").exists(), "{what}: a LUN file was created");
        assert!(!d.file("elsewhere").exists(), "{what}: a data directory was created");
        for f in ["lun0.img", "lun1.img"] {
            assert_eq!(std::fs::metadata(d.file(f)).expect("stat").len(), 4 * MIB, "{what}: {f} resized");
        }
        d.healthy();
    }
    let o = within(STEP, "READ", s.read16(1, 8, 8, BS)).await.expect("READ");
    assert!(o == pattern(6, 8 * BS as usize), "data unchanged");
    write_read(&s, 0, 16, 7).await;
    // The good configuration again: applies, and changes nothing.
    let err = d.reload_text(&good).await;
    assert!(err.contains("configuration reloaded: +0/-0 LUNs"), "stderr:\n{err}");
    assert_eq!(tur(&s, 0).await, None);
}

/// (e) An initiator taken off a target's allow-list cannot log in any more
/// and its session is closed; another initiator's session goes on
/// untouched. A removed target's sessions are closed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_change_and_removed_target_close_sessions() {
    let luns = [(0, "lun0.img", 4 * MIB)];
    let mut d = Live::start(&luns, Some(&[HOST_A, HOST_B]));
    let a = d.session_as(HOST_A).await;
    let b = d.session_as(HOST_B).await;
    assert_eq!(tur(&a, 0).await, None);
    assert_eq!(tur(&b, 0).await, None);

    // HOST_B only, and a second target.
    let cfg = config(d.dir.path(), &luns, Some(&[HOST_B]))
        .target(Target::new(OTHER).lun(Lun::new(0, d.file("other0.img")).size(MIB)));
    let err = d.reload(&cfg).await;
    assert!(err.contains("+1/-0 targets, 1 changed"), "stderr:\n{err}");
    assert!(closed(&a).await, "HOST_A's session must be closed");
    assert!(d.try_login(IQN, HOST_A).await.is_err(), "HOST_A may not log in any more");
    assert_eq!(tur(&b, 0).await, None, "HOST_B's session is untouched");
    write_read(&b, 0, 0, 8).await;
    let o = d.try_login(OTHER, HOST_A).await.expect("the added target admits anyone");
    assert_eq!(tur(&o, 0).await, None);

    // The second target removed: its session is closed, logins refused.
    let err = d.reload(&config(d.dir.path(), &luns, Some(&[HOST_B]))).await;
    assert!(err.contains("+0/-1 LUNs") && err.contains("+0/-1 targets"), "stderr:\n{err}");
    assert!(closed(&o).await, "a removed target's session must be closed");
    assert!(d.try_login(OTHER, HOST_A).await.is_err(), "the removed target is gone");
    assert_eq!(tur(&b, 0).await, None);
    d.healthy();
}

/// A LUN whose `read_only` changed is removed and added again: the sessions
/// that used it are told (3Fh/0Eh), it keeps its identity and data, and it
/// refuses writes from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_replaces_a_lun_whose_access_mode_changed() {
    let mut d = Live::start(&[(0, "lun0.img", 4 * MIB)], None);
    let s = d.session_as(HOST_A).await;
    assert_eq!(tur(&s, 0).await, None);
    write_read(&s, 0, 24, 9).await;
    let id = within(STEP, "designator", s.lu_designator(0)).await.expect("VPD 83h");
    let cfg = DaemonConfig::new(d.file("state"))
        .server("nop_interval", 0u64)
        .target(Target::new(IQN).lun(Lun::new(0, d.file("lun0.img")).size(4 * MIB).block_size(BS).read_only(true)));
    let err = d.reload(&cfg).await;
    assert!(err.contains("1 replaced"), "stderr:\n{err}");
    assert_eq!(tur(&s, 0).await, Some(REPORTED_LUNS_CHANGED));
    assert_eq!(within(STEP, "designator", s.lu_designator(0)).await.expect("VPD 83h"), id, "same identity");
    let back = within(STEP, "READ", s.read16(0, 24, 8, BS)).await.expect("READ");
    assert!(back == pattern(9, 8 * BS as usize), "same data");
    let c = cdb::write16(24, 8, false);
    let o = within(STEP, "WRITE", s.execute(0, &c, DataDir::Write { data: pattern(10, 8 * BS as usize) }))
        .await
        .expect("WRITE answered");
    assert_eq!(triplet(&o), Some((0x07, 0x27, 0x00)), "DATA PROTECT, WRITE PROTECTED");
    d.healthy();
}

/// The config of a LUN 0 on linear volume `lin` over `segments` (file name,
/// bytes) in `dir`.
fn volume_config(dir: &Path, segments: &[(&str, u64)]) -> String {
    let base = DaemonConfig::new(dir.join("state")).server("nop_interval", 0u64).target(Target::new(IQN)).to_toml();
    let members: Vec<String> = segments.iter().map(|(f, n)| format!("\"{}:{n}\"", dir.join(f).display())).collect();
    format!(
        "{base}\n[[target.lun]]\nid = 0\nvolume = \"lin\"\nblock_size = {BS}\n\n\
         [[volume]]\nname = \"lin\"\ntype = \"linear\"\nmembers = [{}]\n",
        members.join(", ")
    )
}

/// (g) A linear volume under a LUN grows by a segment appended in the
/// config: CAPACITY DATA HAS CHANGED, READ CAPACITY shows the new size, the
/// old data stays and the new blocks land in the new file. Any other volume
/// change (here: a segment replaced) needs a restart and is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_grows_a_linear_volume_by_a_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("oxcopyd.toml");
    std::fs::write(&cfg, volume_config(dir.path(), &[("a.img", 4 * MIB)])).expect("config");
    let p = Proc::spawn(&cfg, &Spawn { rust_log: "info", url_timeout: STEP, ..spawn_opts() });
    let mut d = Live { p, dir, cfg, reloads: 0 };
    let s = d.session_as(HOST_A).await;
    assert_eq!(tur(&s, 0).await, None);
    let old_blocks = 4 * MIB / u64::from(BS);
    assert_eq!(within(STEP, "READ CAPACITY", s.read_capacity16(0)).await.expect("READ CAPACITY"), (old_blocks, BS));
    write_read(&s, 0, old_blocks - 8, 9).await;

    let replaced = volume_config(d.dir.path(), &[("other.img", 4 * MIB)]);
    let err = d.reload_text(&replaced).await;
    assert!(err.contains("[[volume]] changed, which needs a restart"), "stderr:\n{err}");
    assert!(!d.file("other.img").exists());

    let grown = volume_config(d.dir.path(), &[("a.img", 4 * MIB), ("b.img", 2 * MIB)]);
    let err = d.reload_text(&grown).await;
    assert!(err.contains("1 grown"), "stderr:\n{err}");
    assert_eq!(tur(&s, 0).await, Some(CAPACITY_CHANGED));
    assert_eq!(tur(&s, 0).await, None);
    let new_blocks = 6 * MIB / u64::from(BS);
    assert_eq!(within(STEP, "READ CAPACITY", s.read_capacity16(0)).await.expect("READ CAPACITY"), (new_blocks, BS));
    let o = within(STEP, "READ", s.read16(0, old_blocks - 8, 8, BS)).await.expect("READ");
    assert!(o == pattern(9, 8 * BS as usize), "old data stays");
    write_read(&s, 0, new_blocks - 8, 10).await;
    let tail = std::fs::read(d.file("b.img")).expect("read b.img");
    assert_eq!(tail.len() as u64, 2 * MIB);
    assert!(tail[(2 * MIB - 8 * u64::from(BS)) as usize..] == pattern(10, 8 * BS as usize), "in the new segment");
    // The same config again adds nothing twice.
    let err = d.reload_text(&grown).await;
    assert!(err.contains("configuration reloaded") && !err.contains("1 grown"), "stderr:\n{err}");
    assert_eq!(tur(&s, 0).await, None);
    d.healthy();
}
