//! A filesystem on a loop device for integration tests, torn down by `Drop`
//! (unmount, then detach exactly the loop device we attached) even when the
//! test panics.
//!
//! Needs root, `losetup`, `mount` and the filesystem's `mkfs`. When those are
//! missing the test prints `skipped: …` and passes, unless the environment
//! variable `OXCOPY_REQUIRE_XFS=1` is set, which turns the skip into a failure.

use crate::process::output_within;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Bound on each tool run (losetup, mkfs, mount, umount).
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// A mounted loop filesystem; `mnt` is its mount point.
pub struct LoopFs {
    /// The mount point.
    pub mnt: PathBuf,
    dev: Option<String>,
    mounted: bool,
    // Holds the backing image and mount point; removed last.
    _dir: tempfile::TempDir,
}

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = output_within(Command::new(cmd).args(args), TOOL_TIMEOUT)
        .map_err(|e| format!("{cmd}: {e}"))?
        .ok_or_else(|| format!("{cmd} {}: killed after {TOOL_TIMEOUT:?}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!("{cmd} {}: {} {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

fn is_root() -> bool {
    run("id", &["-u"]).map(|u| u == "0").unwrap_or(false)
}

/// Skip (print and return None) or, with OXCOPY_REQUIRE_XFS=1, fail.
fn skip(why: &str) -> Option<LoopFs> {
    if std::env::var("OXCOPY_REQUIRE_XFS").as_deref() == Ok("1") {
        panic!("OXCOPY_REQUIRE_XFS=1 but the loop-filesystem test cannot run: {why}");
    }
    println!("skipped: {why}");
    eprintln!("skipped: {why}");
    None
}

impl LoopFs {
    /// A `size_mib` MiB XFS with reflink (`mkfs.xfs -m reflink=1`).
    pub fn xfs_reflink(size_mib: u64) -> Option<LoopFs> {
        LoopFs::new("xfs", "mkfs.xfs", &["-q", "-f", "-m", "reflink=1"], size_mib)
    }

    /// A `size_mib` MiB ext4 (no reflink).
    pub fn ext4(size_mib: u64) -> Option<LoopFs> {
        LoopFs::new("ext4", "mkfs.ext4", &["-q", "-F"], size_mib)
    }

    /// Make and mount a `size_mib` MiB filesystem: `mkfs` is the mkfs program
    /// (`mkfs.xfs`, `mkfs.ext4`), `mkfs_args` come before the device.
    pub fn new(fstype: &str, mkfs: &str, mkfs_args: &[&str], size_mib: u64) -> Option<LoopFs> {
        if !is_root() {
            return skip(&format!("{fstype} loop test needs root"));
        }
        let Some(mkfs_path) = find_tool(mkfs) else {
            return skip(&format!("{mkfs} not installed (apt-get install -y xfsprogs / e2fsprogs)"));
        };
        if find_tool("losetup").is_none() {
            return skip("losetup not installed");
        }
        let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
        if !filesystems.split_whitespace().any(|f| f == fstype) {
            return skip(&format!("kernel has no {fstype} support"));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let img = dir.path().join(format!("{fstype}.img"));
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir mnt");
        std::fs::File::create(&img).and_then(|f| f.set_len(size_mib << 20)).expect("create image");
        let img_s = img.to_string_lossy().into_owned();
        let mut fs = LoopFs { mnt, dev: None, mounted: false, _dir: dir };
        match run("losetup", &["-f", "--show", &img_s]) {
            Ok(dev) => fs.dev = Some(dev),
            // e.g. a container without loop devices: environment, not a bug.
            Err(e) => return skip(&format!("cannot attach a loop device: {e}")),
        }
        let dev = fs.dev.clone().unwrap_or_default();
        let mut args: Vec<&str> = mkfs_args.to_vec();
        args.push(&dev);
        if let Err(e) = run(&mkfs_path.to_string_lossy(), &args) {
            panic!("{mkfs} failed: {e}");
        }
        let mnt_s = fs.mnt.to_string_lossy().into_owned();
        if let Err(e) = run("mount", &["-t", fstype, &dev, &mnt_s]) {
            panic!("mount {dev} on {mnt_s} failed: {e}");
        }
        fs.mounted = true;
        eprintln!("{fstype} on {dev} mounted at {mnt_s}");
        Some(fs)
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let mnt = self.mnt.to_string_lossy().into_owned();
        if self.mounted {
            if let Err(e) = run("umount", &[&mnt]) {
                eprintln!("umount {mnt}: {e}; retrying lazily");
                if let Err(e) = run("umount", &["-l", &mnt]) {
                    eprintln!("umount -l {mnt}: {e}");
                }
            }
        }
        if let Some(dev) = self.dev.take() {
            if let Err(e) = run("losetup", &["-d", &dev]) {
                eprintln!("losetup -d {dev}: {e}");
            }
        }
    }
}
