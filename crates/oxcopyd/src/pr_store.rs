//! Persistent-reservation state (APTPL) of one LUN. The SCSI layer decides
//! what to save and when; this module only moves bytes, to one of:
//!
//! * a file `<data_dir>/pr-<target>-<lun>.state` (LUNs on files and
//!   volumes), written atomically (temporary file, fsync, rename, fsync of
//!   the directory) so a crash leaves the old or the new state, never a
//!   torn one;
//! * the image metadata key [`RBD_PR_KEY`] of a Ceph RBD image (LUNs on
//!   RBD), so that the state lives in the cluster with the data and a second
//!   gateway that takes the image over finds the registrations and the
//!   reservation. The value is one key set whole (`rbd_metadata_set`, as
//!   atomic as a single OSD write to the image header), text
//!   `oxpr-b64:<base64 of the state>`, at most 64 KiB.

use anyhow::{Context, Result};
use oxcopy_scsi::{LogicalUnit, PrStore};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The state file of one LUN.
#[derive(Debug)]
pub struct FilePrStore {
    path: PathBuf,
    tmp: PathBuf,
}

/// `pr-<target>-<lun>.state`, with anything but `[A-Za-z0-9.:_-]` in the
/// target name replaced (names are validated at start; this keeps the path
/// inside the data directory whatever happens).
pub fn file_name(target: &str, lun: u16) -> String {
    let safe: String = target
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '_' | '-') { c } else { '_' })
        .collect();
    format!("pr-{safe}-{lun}.state")
}

impl FilePrStore {
    /// The store of LUN `lun` of `target` under `data_dir`.
    pub fn new(data_dir: &Path, target: &str, lun: u16) -> FilePrStore {
        let name = file_name(target, lun);
        FilePrStore { path: data_dir.join(&name), tmp: data_dir.join(format!(".{name}.tmp")) }
    }

    /// Where the state lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl PrStore for FilePrStore {
    fn load(&self) -> io::Result<Option<Vec<u8>>> {
        match fs::read(&self.path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn save(&self, bytes: &[u8]) -> io::Result<()> {
        // Saves of one LU are serialized by the SCSI layer, so one fixed
        // temporary name per LU suffices.
        {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&self.tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        fs::rename(&self.tmp, &self.path)?;
        let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        File::open(dir)?.sync_all()
    }
}

/// Give `lu` its state file and restore the registrations it holds. A file
/// that cannot be read or is not a valid state refuses the start (dropping
/// a reservation silently could let two cluster nodes write at once).
pub fn attach(lu: &LogicalUnit, data_dir: &Path, target: &str, lun: u16) -> Result<()> {
    let store = Arc::new(FilePrStore::new(data_dir, target, lun));
    let path = store.path().to_path_buf();
    let restored = lu.attach_pr_store(store).with_context(|| {
        format!("LUN {lun} of {target}: {} (fix or remove the file to start without it)", path.display())
    })?;
    if restored {
        tracing::info!(target, lun, "restored persistent reservations (APTPL) from {}", path.display());
    }
    Ok(())
}

/// The image metadata key holding an RBD LUN's reservation state.
pub const RBD_PR_KEY: &str = "oxcopy.pr";
/// What the metadata value starts with (the encoding, for a human reading
/// `rbd image-meta get`; the state itself carries a version and checksum).
const VALUE_PREFIX: &str = "oxpr-b64:";
/// Longest metadata value written or accepted (the RBD layer's bound).
pub const MAX_VALUE: usize = 64 << 10;

/// The image metadata the RBD store needs (get and set one key), so the
/// store is tested without a cluster.
pub trait ImageMetadata: Send + Sync + fmt::Debug {
    /// `pool/image`, for messages.
    fn image(&self) -> String;
    /// The value of `key`, `None` when absent.
    fn get(&self, key: &str) -> io::Result<Option<String>>;
    /// Replace the value of `key` whole.
    fn set(&self, key: &str, value: &str) -> io::Result<()>;
}

#[cfg(feature = "ceph")]
impl ImageMetadata for oxcopy_rbd::RbdStorage {
    fn image(&self) -> String {
        self.name().to_owned()
    }
    fn get(&self, key: &str) -> io::Result<Option<String>> {
        self.metadata_get(key).map_err(io::Error::other)
    }
    fn set(&self, key: &str, value: &str) -> io::Result<()> {
        self.metadata_set(key, value).map_err(io::Error::other)
    }
}

/// The reservation state of an RBD LUN, in its image's metadata
/// ([`RBD_PR_KEY`]). Saves are serialized by the SCSI layer and only the
/// gateway holding the image's exclusive lock makes them: one whose lock was
/// broken is blocklisted, its save fails and so does the PERSISTENT RESERVE
/// OUT that asked for it.
#[derive(Debug)]
pub struct RbdPrStore {
    meta: Arc<dyn ImageMetadata>,
}

impl RbdPrStore {
    /// The store of the image behind `meta`.
    pub fn new(meta: Arc<dyn ImageMetadata>) -> RbdPrStore {
        RbdPrStore { meta }
    }
}

impl PrStore for RbdPrStore {
    fn load(&self) -> io::Result<Option<Vec<u8>>> {
        let Some(v) = self.meta.get(RBD_PR_KEY)? else { return Ok(None) };
        decode_value(&v).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("image metadata {RBD_PR_KEY} of {} is not a reservation state: {e}", self.meta.image()),
            )
        })
    }

    fn save(&self, bytes: &[u8]) -> io::Result<()> {
        let v = encode_value(bytes).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "reservation state of {} bytes does not fit the {MAX_VALUE}-byte image metadata of {}",
                    bytes.len(),
                    self.meta.image()
                ),
            )
        })?;
        self.meta.set(RBD_PR_KEY, &v)
    }
}

/// `oxpr-b64:` + base64 of `bytes`, `None` when longer than [`MAX_VALUE`].
pub fn encode_value(bytes: &[u8]) -> Option<String> {
    let len = VALUE_PREFIX.len() + bytes.len().div_ceil(3) * 4;
    if len > MAX_VALUE {
        return None;
    }
    let mut out = String::with_capacity(len);
    out.push_str(VALUE_PREFIX);
    base64_encode(bytes, &mut out);
    Some(out)
}

/// What [`encode_value`] wrote, or why `v` is not that.
pub fn decode_value(v: &str) -> Result<Vec<u8>, &'static str> {
    if v.len() > MAX_VALUE {
        return Err("longer than 64 KiB");
    }
    let b64 = v.strip_prefix(VALUE_PREFIX).ok_or("does not start with oxpr-b64:")?;
    base64_decode(b64)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (RFC 4648 §4) with padding.
fn base64_encode(bytes: &[u8], out: &mut String) {
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(c.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(c.get(2).copied().unwrap_or(0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(B64[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
}

/// Strict inverse of [`base64_encode`]: a length that is a multiple of 4,
/// padding only at the end, no other characters, unused bits zero.
fn base64_decode(s: &str) -> Result<Vec<u8>, &'static str> {
    let s = s.as_bytes();
    if s.len() % 4 != 0 {
        return Err("base64 length is not a multiple of 4");
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let quads = s.len() / 4;
    for (qi, q) in s.chunks(4).enumerate() {
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && qi + 1 != quads) {
            return Err("misplaced base64 padding");
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            let d = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return Err("not base64"),
            };
            n = (n << 6) | u32::from(d);
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        if bytes[3 - pad..].iter().any(|&b| b != 0) {
            return Err("base64 has stray bits before its padding");
        }
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Ok(out)
}

/// Give the RBD LUN `lu` its state in the image metadata behind `meta` and
/// restore the registrations it holds. Metadata that cannot be read (the
/// cluster) or is not a valid state refuses the start, as a damaged file does.
pub fn attach_rbd(
    lu: &LogicalUnit,
    meta: Arc<dyn ImageMetadata>,
    data_dir: &Path,
    target: &str,
    lun: u16,
) -> Result<()> {
    let image = meta.image();
    let old_file = data_dir.join(file_name(target, lun));
    if old_file.exists() {
        tracing::warn!(
            target,
            lun,
            "{} is ignored: the reservations of a LUN on RBD image {image} live in its metadata ({RBD_PR_KEY})",
            old_file.display()
        );
    }
    let restored = lu.attach_pr_store(Arc::new(RbdPrStore::new(meta))).with_context(|| {
        format!(
            "LUN {lun} of {target}: reservation state in image metadata {RBD_PR_KEY} of {image} \
             (fix or remove it to start without it: rbd image-meta remove {image} {RBD_PR_KEY})"
        )
    })?;
    if restored {
        tracing::info!(
            target,
            lun,
            "restored persistent reservations (APTPL) from image metadata {RBD_PR_KEY} of {image}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::collections::HashMap;

    /// Image metadata in memory; `fail` makes every call fail (a cluster
    /// that is down).
    #[derive(Debug, Default)]
    struct MemMeta {
        map: Mutex<HashMap<String, String>>,
        fail: std::sync::atomic::AtomicBool,
    }

    impl ImageMetadata for MemMeta {
        fn image(&self) -> String {
            "rbd/test".into()
        }
        fn get(&self, key: &str) -> io::Result<Option<String>> {
            if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "cluster down"));
            }
            Ok(self.map.lock().get(key).cloned())
        }
        fn set(&self, key: &str, value: &str) -> io::Result<()> {
            if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "cluster down"));
            }
            assert!(value.len() <= MAX_VALUE, "a value over the bound reached the cluster");
            self.map.lock().insert(key.into(), value.into());
            Ok(())
        }
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut s = String::new();
            base64_encode(raw.as_bytes(), &mut s);
            assert_eq!(s, enc);
            assert_eq!(base64_decode(enc).unwrap(), raw.as_bytes());
        }
    }

    #[test]
    fn values_round_trip_every_byte_and_length() {
        let all: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for n in 0..all.len() {
            let v = encode_value(&all[..n]).unwrap();
            assert!(v.is_ascii() && !v.contains('\0'));
            assert_eq!(decode_value(&v).unwrap(), &all[..n]);
        }
    }

    #[test]
    fn values_are_bounded_by_the_metadata_limit() {
        // The largest state that fits: 3 bytes per 4 characters after the prefix.
        let max = (MAX_VALUE - VALUE_PREFIX.len()) / 4 * 3;
        let v = encode_value(&vec![7u8; max]).unwrap();
        assert!(v.len() <= MAX_VALUE);
        assert_eq!(encode_value(&vec![7u8; max + 1]), None);
        // Saving too much fails (and never reaches the cluster).
        let s = RbdPrStore::new(Arc::new(MemMeta::default()));
        let e = s.save(&vec![0u8; MAX_VALUE]).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        assert_eq!(s.load().unwrap(), None);
    }

    #[test]
    fn malformed_values_are_clear_errors() {
        for bad in [
            "",
            "OXPR",
            "oxpr-b64",
            "oxpr-hex:00",
            "oxpr-b64:A",
            "oxpr-b64:AB=C",
            "oxpr-b64:A===",
            "oxpr-b64:AA==AA==",
            "oxpr-b64:Zh==", // stray bits
            "oxpr-b64:Zm9v\u{fffd}===",
            "oxpr-b64:Zm 9",
            "oxpr-b64:Zm9v\n",
        ] {
            assert!(decode_value(bad).is_err(), "{bad:?} decoded");
        }
        assert!(decode_value(&format!("{VALUE_PREFIX}{}", "A".repeat(MAX_VALUE))).is_err());
        let meta = Arc::new(MemMeta::default());
        meta.map.lock().insert(RBD_PR_KEY.into(), "garbage".into());
        let e = RbdPrStore::new(meta).load().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let msg = e.to_string();
        assert!(msg.contains(RBD_PR_KEY) && msg.contains("rbd/test") && msg.contains("oxpr-b64"), "{msg}");
    }

    #[test]
    fn rbd_store_saves_one_key_whole_and_reports_a_cluster_failure() {
        let meta = Arc::new(MemMeta::default());
        let s = RbdPrStore::new(meta.clone());
        assert_eq!(s.load().unwrap(), None);
        s.save(b"one").unwrap();
        s.save(b"\x00\xffbinary\x00").unwrap();
        assert_eq!(s.load().unwrap().as_deref(), Some(&b"\x00\xffbinary\x00"[..]));
        assert_eq!(meta.map.lock().keys().collect::<Vec<_>>(), vec![RBD_PR_KEY]);
        meta.fail.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(s.save(b"two").is_err());
        assert!(s.load().is_err());
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(v in ".{0,300}") {
            let _ = decode_value(&v);
            let _ = decode_value(&format!("{VALUE_PREFIX}{v}"));
        }

        #[test]
        fn round_trip(b in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
            proptest::prop_assert_eq!(decode_value(&encode_value(&b).unwrap()).unwrap(), b);
        }
    }

    #[test]
    fn names_stay_inside_the_directory() {
        assert_eq!(file_name("iqn.2026-11.dev.oxcopy:default", 3), "pr-iqn.2026-11.dev.oxcopy:default-3.state");
        assert_eq!(file_name("../x/y", 0), "pr-.._x_y-0.state");
    }

    #[test]
    fn save_then_load_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let s = FilePrStore::new(dir.path(), "iqn.2026-11.a:b", 1);
        assert_eq!(s.load().unwrap(), None);
        s.save(b"one").unwrap();
        s.save(b"two").unwrap();
        assert_eq!(s.load().unwrap().as_deref(), Some(&b"two"[..]));
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("pr-iqn.2026-11.a:b-1.state")]);
    }
}
