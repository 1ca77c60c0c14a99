//! RBD LUNs for the process tests that run on files and on Ceph RBD images
//! alike (`crash`, `soak`): the cluster `OXCOPY_CEPH_CONF` names, and
//! uniquely named images in its pool `rbd`, made and removed with the `rbd`
//! CLI (what an admin would use), every call bounded.
//!
//! Without `OXCOPY_CEPH_CONF` (or without the `ceph` feature) an RBD variant
//! prints a loud SKIPPED line and passes, unless `OXCOPY_REQUIRE_CEPH=1`
//! (CI), which makes it fail instead.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The pool the images are made in (`scripts/ceph-cluster.sh` creates it).
pub const POOL: &str = "rbd";

/// Bound on one `rbd` CLI call.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// How long removing an image is retried: an image whose last user was
/// SIGKILLed keeps that client's watch (and its exclusive lock) until the
/// watch times out (`osd_client_watch_timeout`, 30 s): meanwhile `rbd snap
/// purge` waits for the lock and `rbd rm` refuses an image with watchers.
const REMOVE_FOR: Duration = Duration::from_secs(90);

/// Bound on one `rbd` call while removing: longer than a wait for a dead
/// client's lock, so that only a cluster that does not answer exceeds it.
const REMOVE_CALL: Duration = Duration::from_secs(45);

fn require() -> bool {
    std::env::var("OXCOPY_REQUIRE_CEPH").is_ok_and(|v| v == "1")
}

fn skipped(test: &str, why: &str) {
    // Straight to stderr: the harness does not capture it, so the skip shows
    // up even without --nocapture.
    let _ = writeln!(
        std::io::stderr(),
        "\n********************************************************************\n\
         SKIPPED {test}: {why}\n\
         ********************************************************************"
    );
}

/// The cluster to run `test` against (its ceph.conf), or `None` after a
/// loud SKIPPED line; panics instead of skipping under
/// `OXCOPY_REQUIRE_CEPH=1`, and whenever `OXCOPY_CEPH_CONF` names no file.
pub fn cluster(test: &str) -> Option<PathBuf> {
    if !cfg!(feature = "ceph") {
        assert!(
            !require(),
            "OXCOPY_REQUIRE_CEPH=1 but oxcopyd was built without the `ceph` feature \
             (cargo test -p oxcopyd --features ceph)"
        );
        skipped(test, "oxcopyd built without the `ceph` feature (cargo test -p oxcopyd --features ceph)");
        return None;
    }
    match std::env::var_os("OXCOPY_CEPH_CONF") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "OXCOPY_CEPH_CONF={} is not a file", p.display());
            Some(p)
        }
        _ => {
            assert!(!require(), "OXCOPY_REQUIRE_CEPH=1 but OXCOPY_CEPH_CONF is not set");
            skipped(test, "no OXCOPY_CEPH_CONF (scripts/ceph-cluster.sh start DIR prints one)");
            None
        }
    }
}

/// `rbd -c CONF ARGS…`, bounded by [`CLI_TIMEOUT`]; `None` if it had to be
/// killed.
pub fn rbd(conf: &Path, args: &[&str]) -> Option<Output> {
    rbd_within(conf, args, CLI_TIMEOUT)
}

fn rbd_within(conf: &Path, args: &[&str], timeout: Duration) -> Option<Output> {
    let mut cmd = Command::new("rbd");
    cmd.arg("-c").arg(conf).args(args);
    oxcopy_testkit::output_within(&mut cmd, timeout).unwrap_or_else(|e| panic!("run the rbd CLI: {e}"))
}

/// `rbd …` that must succeed; returns its stdout.
fn rbd_ok(conf: &Path, args: &[&str]) -> String {
    match rbd(conf, args) {
        Some(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Some(o) => panic!("rbd {}: {}: {}", args.join(" "), o.status, String::from_utf8_lossy(&o.stderr).trim()),
        None => panic!("rbd {}: no answer within {CLI_TIMEOUT:?}", args.join(" ")),
    }
}

/// The images of one test run, `rbd/oxcopy-TEST-TAG-WHAT`, removed (with
/// their snapshots) when dropped. Stop the daemons using them first —
/// gracefully if possible: after a SIGKILL the removal has to wait for the
/// dead client's watch to time out.
pub struct Images {
    conf: PathBuf,
    prefix: String,
    specs: Vec<String>,
}

impl Images {
    /// No images yet; their names will start with `oxcopy-TEST-` and a
    /// random tag.
    pub fn new(conf: &Path, test: &str) -> Images {
        Images {
            conf: conf.to_path_buf(),
            prefix: format!("oxcopy-{test}-{:08x}", rand::random::<u32>()),
            specs: Vec::new(),
        }
    }

    /// The cluster's ceph.conf.
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// `pool/image` of a new image named after `what` (made by the daemon
    /// with its LUN's `size`, or by [`Images::import`]); removed at the end.
    pub fn spec(&mut self, what: &str) -> String {
        let spec = format!("{POOL}/{}-{what}", self.prefix);
        self.specs.push(spec.clone());
        spec
    }

    /// A new image named after `what` holding the bytes of `file` (`rbd
    /// import`: the image is as large as the file; zero runs stay
    /// unallocated).
    pub fn import(&mut self, what: &str, file: &Path) -> String {
        let spec = self.spec(what);
        let f = file.to_string_lossy();
        rbd_ok(&self.conf, &["import", "--no-progress", &f, &spec]);
        spec
    }

    /// Every image made so far.
    pub fn specs(&self) -> &[String] {
        &self.specs
    }

    /// Names of the snapshots of `spec` that oxcopyd made (`oxcopy.*`:
    /// point-in-time tokens); `[]` if the image does not exist (yet).
    pub fn oxcopy_snapshots(&self, spec: &str) -> Vec<String> {
        match rbd(&self.conf, &["snap", "ls", "--format", "json", spec]) {
            Some(o) if o.status.success() => {
                // [{"id":4,"name":"oxcopy.…","size":…,…}, …]: the names are all
                // that is needed, no JSON parser for that.
                let text = String::from_utf8_lossy(&o.stdout).into_owned();
                text.split("\"name\":\"")
                    .skip(1)
                    .filter_map(|r| r.split('"').next())
                    .filter(|n| n.starts_with("oxcopy."))
                    .map(str::to_owned)
                    .collect()
            }
            Some(o) if String::from_utf8_lossy(&o.stderr).contains("No such file") => Vec::new(),
            Some(o) => panic!("rbd snap ls {spec}: {}: {}", o.status, String::from_utf8_lossy(&o.stderr).trim()),
            None => panic!("rbd snap ls {spec}: no answer within {CLI_TIMEOUT:?}"),
        }
    }

    /// Remove every image (snapshots first), retrying for a while an image
    /// a killed client still watches, giving up at once on a cluster that
    /// does not answer; the images that could not be removed.
    pub fn remove_all(&mut self) -> Vec<String> {
        let deadline = Instant::now() + REMOVE_FOR;
        let bound = REMOVE_CALL;
        let mut answers = true;
        let mut left = Vec::new();
        for spec in std::mem::take(&mut self.specs) {
            while answers {
                if rbd_within(&self.conf, &["snap", "purge", "--no-progress", &spec], bound).is_none() {
                    answers = false;
                    break;
                }
                match rbd_within(&self.conf, &["rm", "--no-progress", &spec], bound) {
                    Some(o) if o.status.success() => break,
                    Some(o) if String::from_utf8_lossy(&o.stderr).contains("No such file") => break,
                    Some(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_secs(2)),
                    Some(o) => {
                        left.push(format!("{spec}: {}", String::from_utf8_lossy(&o.stderr).trim()));
                        break;
                    }
                    None => answers = false,
                }
            }
            if !answers {
                left.push(format!("{spec}: the cluster does not answer"));
            }
        }
        left
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        let left = self.remove_all();
        if !left.is_empty() {
            eprintln!("note: RBD images left behind (remove with rbd -c {} rm): {left:?}", self.conf.display());
        }
    }
}
