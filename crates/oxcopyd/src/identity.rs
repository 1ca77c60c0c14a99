//! Stable LUN identities, kept in the data directory.
//!
//! Initiators (and the copy manager) match LUNs by their VPD 83h NAA
//! designator, so it must never change across restarts or depend on start
//! order. Each (target, LUN id) gets 100 random bits the first time it is
//! seen; they are stored in `<data_dir>/identities.toml`, written atomically.

use anyhow::{Context, Result};
use rand::RngCore;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// IEEE company ID placed in our NAA 6 designators (AC-DE-48 is listed by
/// the IEEE as a private OUI).
const COMPANY_ID: u32 = 0xACDE48;

/// Key of the copy-manager identifier in the identities file (no target
/// name starts with '@', so it never collides with a "target/lun" key).
const COPY_MANAGER_KEY: &str = "@copy-manager";

/// The identities file of a data directory.
#[derive(Debug)]
pub struct Identities {
    path: PathBuf,
    map: BTreeMap<String, String>,
    dirty: bool,
}

impl Identities {
    /// Load (or start) `<data_dir>/identities.toml`.
    pub fn load(data_dir: &Path) -> Result<Identities> {
        let path = data_dir.join("identities.toml");
        let map = match std::fs::read_to_string(&path) {
            Ok(text) => {
                toml::from_str(&text).with_context(|| format!("{}: not a valid identities file", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Identities { path, map, dirty: false })
    }

    /// The 16-byte NAA 6 designator of a LUN, created on first use.
    pub fn naa(&mut self, target: &str, lun: u16) -> [u8; 16] {
        let key = format!("{target}/{lun}");
        let hex = self.map.entry(key).or_insert_with(|| {
            self.dirty = true;
            let mut r = [0u8; 13];
            rand::thread_rng().fill_bytes(&mut r);
            r.iter().map(|b| format!("{b:02x}")).collect()
        });
        let mut rnd = [0u8; 13];
        for (i, b) in rnd.iter_mut().enumerate() {
            *b = hex.get(i * 2..i * 2 + 2).and_then(|s| u8::from_str_radix(s, 16).ok()).unwrap_or(0);
        }
        naa6(COMPANY_ID, &rnd)
    }

    /// This daemon's copy-manager identifier (every ROD token it issues
    /// carries it), created on first use and kept beside the LUN identities,
    /// so it is stable per data directory.
    pub fn copy_manager_id(&mut self) -> [u8; 16] {
        let hex = self.map.entry(COPY_MANAGER_KEY.to_owned()).or_insert_with(|| {
            self.dirty = true;
            let mut r = [0u8; 16];
            rand::thread_rng().fill_bytes(&mut r);
            r.iter().map(|b| format!("{b:02x}")).collect()
        });
        let mut id = [0u8; 16];
        for (i, b) in id.iter_mut().enumerate() {
            *b = hex.get(i * 2..i * 2 + 2).and_then(|s| u8::from_str_radix(s, 16).ok()).unwrap_or(0);
        }
        id
    }

    /// Write the file if anything was added (temp file, fsync, rename).
    pub fn save(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let text = toml::to_string(&self.map)?;
        let tmp = self.path.with_extension("toml.tmp");
        {
            let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            f.write_all(b"# Stable LUN identities (VPD 83h NAA designators). Do not edit.\n")?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path).with_context(|| format!("renaming to {}", self.path.display()))?;
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.dirty = false;
        Ok(())
    }
}

/// NAA 6 (IEEE Registered Extended): 4-bit NAA, 24-bit company ID, then 100
/// vendor-specific bits taken from `rnd`.
pub fn naa6(company_id: u32, rnd: &[u8; 13]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let c = company_id & 0x00ff_ffff;
    out[0] = 0x60 | ((c >> 20) & 0x0f) as u8;
    out[1] = (c >> 12) as u8;
    out[2] = (c >> 4) as u8;
    out[3] = ((c & 0x0f) << 4) as u8 | (rnd[0] & 0x0f);
    out[4..16].copy_from_slice(&rnd[1..13]);
    out
}

/// The unit serial number (VPD 80h) derived from the designator.
pub fn serial_from_naa(naa: &[u8; 16]) -> String {
    naa[3..16].iter().map(|b| format!("{b:02x}")).collect::<String>()[1..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naa6_layout() {
        let n = naa6(0xACDE48, &[0xff; 13]);
        assert_eq!(n[0] >> 4, 6);
        assert_eq!(&n[..4], &[0x6A, 0xCD, 0xE4, 0x8F]);
    }

    #[test]
    fn copy_manager_id_is_stable_per_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Identities::load(dir.path()).unwrap();
        let id = a.copy_manager_id();
        assert_eq!(a.copy_manager_id(), id);
        a.save().unwrap();
        assert_eq!(Identities::load(dir.path()).unwrap().copy_manager_id(), id);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(Identities::load(other.path()).unwrap().copy_manager_id(), id);
    }

    #[test]
    fn stable_across_reload_and_unique() {
        let dir = tempfile::tempdir().unwrap();
        let mut ids = Identities::load(dir.path()).unwrap();
        let a = ids.naa("iqn.2026-11.a.b", 0);
        let b = ids.naa("iqn.2026-11.a.b", 1);
        assert_ne!(a, b);
        ids.save().unwrap();
        let mut again = Identities::load(dir.path()).unwrap();
        assert_eq!(again.naa("iqn.2026-11.a.b", 0), a);
        assert_eq!(again.naa("iqn.2026-11.a.b", 1), b);
        assert_eq!(serial_from_naa(&a).len(), 25);
    }
}
