//! How a point-in-time token's RBD snapshot is found by another gateway of
//! the same cluster, without the gateway that made it.
//!
//! * The **locator** (32 bytes, carried in the ROD token under its MAC, see
//!   `oxcopy_storage::Storage::shared_locator`) names the cluster (first 7
//!   bytes of its fsid), the pool id, the snapshot id and the image id.
//! * The **snapshot record** (image metadata `oxcopy.snap.<snapshot name>`)
//!   says which ranges of the image the token covers, laid end to end, and
//!   which client made it (its global id, what `rbd status` lists as a
//!   watcher): a snapshot whose creator no longer watches the image died
//!   with its gateway and is removed by the next gateway that starts.
//!
//! Both come from the cluster or from a token and are parsed bounded: a
//! malformed one is an error, never a panic or an unbounded allocation.

/// First byte of an RBD snapshot locator (`'R'`).
pub const KIND_RBD: u8 = 0x52;
/// Ranges a snapshot record may hold at most (POPULATE TOKEN allows far fewer).
pub const MAX_RANGES: usize = 4096;
/// Prefix of the metadata keys of snapshot records.
pub const RECORD_PREFIX: &str = "oxcopy.snap.";

/// Where a token's snapshot lives. Layout (big-endian): byte 0 `'R'`,
/// 1..8 the first 7 bytes of the cluster fsid, 8..12 pool id, 12..16
/// snapshot id, 16..32 image id (ASCII, NUL padded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotLocator {
    /// First 7 bytes of the cluster's fsid.
    pub fsid_prefix: [u8; 7],
    /// Pool holding the image.
    pub pool_id: u32,
    /// RBD snapshot id.
    pub snap_id: u32,
    /// RBD image id (`rbd info` "id"), 1..=16 characters `[0-9a-z]`.
    pub image_id: String,
}

fn valid_image_id(id: &str) -> bool {
    (1..=16).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

impl SnapshotLocator {
    /// A locator, or `None` when a field does not fit (a pool or snapshot id
    /// beyond 32 bits, an image id longer than 16 characters): the token then
    /// has none and is read through its creator only.
    pub fn new(fsid: &[u8; 16], pool_id: i64, snap_id: u64, image_id: &str) -> Option<Self> {
        let mut fsid_prefix = [0u8; 7];
        fsid_prefix.copy_from_slice(&fsid[..7]);
        let l = SnapshotLocator {
            fsid_prefix,
            pool_id: u32::try_from(pool_id).ok()?,
            snap_id: u32::try_from(snap_id).ok()?,
            image_id: image_id.to_owned(),
        };
        valid_image_id(image_id).then_some(l)
    }

    /// The 32 bytes.
    pub fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0] = KIND_RBD;
        b[1..8].copy_from_slice(&self.fsid_prefix);
        b[8..12].copy_from_slice(&self.pool_id.to_be_bytes());
        b[12..16].copy_from_slice(&self.snap_id.to_be_bytes());
        b[16..16 + self.image_id.len()].copy_from_slice(self.image_id.as_bytes());
        b
    }

    /// Parse 32 bytes; `None` unless they are an RBD locator exactly as
    /// [`SnapshotLocator::encode`] writes one.
    pub fn decode(b: &[u8; 32]) -> Option<Self> {
        if b[0] != KIND_RBD {
            return None;
        }
        let id_bytes = &b[16..32];
        let end = id_bytes.iter().position(|&c| c == 0).unwrap_or(16);
        if id_bytes[end..].iter().any(|&c| c != 0) {
            return None;
        }
        let image_id = std::str::from_utf8(&id_bytes[..end]).ok()?;
        if !valid_image_id(image_id) {
            return None;
        }
        let mut fsid_prefix = [0u8; 7];
        fsid_prefix.copy_from_slice(&b[1..8]);
        Some(SnapshotLocator {
            fsid_prefix,
            pool_id: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            snap_id: u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
            image_id: image_id.to_owned(),
        })
    }

    /// Whether the locator names the cluster with this fsid.
    pub fn same_cluster(&self, fsid: &[u8; 16]) -> bool {
        self.fsid_prefix[..] == fsid[..7]
    }
}

/// The metadata key of snapshot `snap_name`'s record.
pub fn record_key(snap_name: &str) -> String {
    format!("{RECORD_PREFIX}{snap_name}")
}

/// What the cluster keeps about a token's snapshot (image metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapRecord {
    /// Global id of the client (gateway connection) that made it.
    pub creator: u64,
    /// Image byte ranges (offset, length) the token covers, in token order.
    pub ranges: Vec<(u64, u64)>,
}

impl SnapRecord {
    /// `v1 creator=<id> ranges=<offset>+<len>,...`
    pub fn encode(&self) -> String {
        let ranges: Vec<String> = self.ranges.iter().map(|(o, l)| format!("{o}+{l}")).collect();
        format!("v1 creator={} ranges={}", self.creator, ranges.join(","))
    }

    /// Parse a record read from the cluster; every range must lie inside an
    /// image of `image_size` bytes, at most [`MAX_RANGES`] of them.
    pub fn parse(text: &str, image_size: u64) -> Result<SnapRecord, String> {
        let mut parts = text.split(' ');
        if parts.next() != Some("v1") {
            return Err(format!("unknown snapshot record {:?}", text.chars().take(40).collect::<String>()));
        }
        let creator = parts
            .next()
            .and_then(|p| p.strip_prefix("creator="))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or("snapshot record without a creator")?;
        let list = parts.next().and_then(|p| p.strip_prefix("ranges=")).ok_or("snapshot record without ranges")?;
        if parts.next().is_some() {
            return Err("snapshot record has trailing fields".into());
        }
        let mut ranges = Vec::new();
        for item in list.split(',').filter(|s| !s.is_empty()) {
            if ranges.len() == MAX_RANGES {
                return Err(format!("snapshot record has more than {MAX_RANGES} ranges"));
            }
            let (o, l) = item.split_once('+').ok_or_else(|| format!("bad range {item:?}"))?;
            let (o, l) = (
                o.parse::<u64>().map_err(|_| format!("bad offset {o:?}"))?,
                l.parse::<u64>().map_err(|_| format!("bad length {l:?}"))?,
            );
            if l == 0 || o.checked_add(l).is_none_or(|e| e > image_size) {
                return Err(format!("range {o}+{l} outside the image of {image_size} bytes"));
            }
            ranges.push((o, l));
        }
        if ranges.is_empty() {
            return Err("snapshot record has no ranges".into());
        }
        Ok(SnapRecord { creator, ranges })
    }

    /// Bytes covered.
    pub fn total(&self) -> u64 {
        self.ranges.iter().map(|r| r.1).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FSID: [u8; 16] = [0xAB, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

    #[test]
    fn locator_layout() {
        let l = SnapshotLocator::new(&FSID, 2, 9, "104243c9ff4e").expect("fits");
        let b = l.encode();
        assert_eq!(b[0], b'R');
        assert_eq!(&b[1..8], &FSID[..7]);
        assert_eq!(&b[8..12], &[0, 0, 0, 2]);
        assert_eq!(&b[12..16], &[0, 0, 0, 9]);
        assert_eq!(&b[16..28], b"104243c9ff4e");
        assert_eq!(&b[28..32], &[0; 4]);
        assert_eq!(SnapshotLocator::decode(&b), Some(l.clone()));
        assert!(l.same_cluster(&FSID));
        let mut other = FSID;
        other[3] ^= 1;
        assert!(!l.same_cluster(&other));
    }

    #[test]
    fn what_does_not_fit_gets_no_locator() {
        assert!(SnapshotLocator::new(&FSID, 1 << 32, 1, "abc").is_none());
        assert!(SnapshotLocator::new(&FSID, -1, 1, "abc").is_none());
        assert!(SnapshotLocator::new(&FSID, 1, 1 << 32, "abc").is_none());
        assert!(SnapshotLocator::new(&FSID, 1, 1, "").is_none());
        assert!(SnapshotLocator::new(&FSID, 1, 1, "0123456789abcdef0").is_none());
        assert!(SnapshotLocator::new(&FSID, 1, 1, "ABC").is_none());
        assert!(SnapshotLocator::new(&FSID, 1, 1, "0123456789abcdef").is_some());
    }

    #[test]
    fn malformed_locators_are_refused() {
        let good = SnapshotLocator::new(&FSID, 2, 9, "abc").expect("fits").encode();
        assert!(SnapshotLocator::decode(&[0u8; 32]).is_none());
        let mut b = good;
        b[0] = 0x53;
        assert!(SnapshotLocator::decode(&b).is_none());
        let mut b = good;
        b[30] = b'x'; // not NUL padded after the id
        assert!(SnapshotLocator::decode(&b).is_none());
        let mut b = good;
        b[16] = 0; // empty id
        assert!(SnapshotLocator::decode(&b).is_none());
        let mut b = good;
        b[17] = b'/';
        assert!(SnapshotLocator::decode(&b).is_none());
    }

    #[test]
    fn records_round_trip_and_are_checked() {
        let r = SnapRecord { creator: 4123, ranges: vec![(0, 4096), (1 << 20, 8192)] };
        let t = r.encode();
        assert_eq!(t, "v1 creator=4123 ranges=0+4096,1048576+8192");
        assert_eq!(SnapRecord::parse(&t, 2 << 20), Ok(r.clone()));
        assert_eq!(r.total(), 12288);
        for bad in [
            "",
            "v2 creator=1 ranges=0+1",
            "v1 ranges=0+1",
            "v1 creator=x ranges=0+1",
            "v1 creator=1",
            "v1 creator=1 ranges=",
            "v1 creator=1 ranges=0+0",
            "v1 creator=1 ranges=0-1",
            "v1 creator=1 ranges=18446744073709551615+2",
            "v1 creator=1 ranges=0+1 extra",
            "v1 creator=1 ranges=2097152+1",
        ] {
            assert!(SnapRecord::parse(bad, 2 << 20).is_err(), "{bad:?}");
        }
        // Every prefix of a good record is refused or is a valid shorter record.
        for n in 0..t.len() {
            if let Ok(p) = SnapRecord::parse(&t[..n], 2 << 20) {
                assert!(p.total() <= r.total(), "{:?}", &t[..n]);
            }
        }
        let many = format!("v1 creator=1 ranges={}", vec!["0+1"; MAX_RANGES + 1].join(","));
        assert!(SnapRecord::parse(&many, 10).is_err());
    }

    proptest! {
        #[test]
        fn locator_round_trips(pool in any::<u32>(), snap in any::<u32>(), id in "[0-9a-z]{1,16}") {
            let l = SnapshotLocator::new(&FSID, i64::from(pool), u64::from(snap), &id).expect("fits");
            prop_assert_eq!(SnapshotLocator::decode(&l.encode()), Some(l));
        }

        #[test]
        fn decode_never_panics(b in proptest::array::uniform32(any::<u8>())) {
            if let Some(l) = SnapshotLocator::decode(&b) {
                prop_assert_eq!(l.encode(), b);
            }
        }

        #[test]
        fn parse_never_panics(s in ".{0,200}") {
            let _ = SnapRecord::parse(&s, 1 << 30);
        }

        #[test]
        fn records_round_trip(creator in any::<u64>(), ranges in proptest::collection::vec((0u64..1 << 30, 1u64..1 << 20), 1..20)) {
            let r = SnapRecord { creator, ranges };
            prop_assert_eq!(SnapRecord::parse(&r.encode(), 1 << 31), Ok(r));
        }
    }
}
