//! Get / Set Features: feature identifiers, the command fields, the Host
//! Behavior Support (16h) and Timestamp (0Eh) data layouts (Base 2.0 §5.27).

use std::fmt;

use super::command::{Opcode, Sqe};
use super::field::{le16, le64, need, put16, put64, put8, u8_at, LayoutError};

/// A feature identifier (CDW10 bits 7:0).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FeatureId(pub u8);

impl FeatureId {
    /// Arbitration.
    pub const ARBITRATION: Self = Self(0x01);
    /// Power Management.
    pub const POWER_MANAGEMENT: Self = Self(0x02);
    /// Temperature Threshold.
    pub const TEMPERATURE_THRESHOLD: Self = Self(0x04);
    /// Error Recovery.
    pub const ERROR_RECOVERY: Self = Self(0x05);
    /// Volatile Write Cache.
    pub const VOLATILE_WRITE_CACHE: Self = Self(0x06);
    /// Number of Queues.
    pub const NUMBER_OF_QUEUES: Self = Self(0x07);
    /// Interrupt Coalescing (PCIe only).
    pub const INTERRUPT_COALESCING: Self = Self(0x08);
    /// Asynchronous Event Configuration.
    pub const ASYNC_EVENT_CONFIG: Self = Self(0x0B);
    /// Timestamp.
    pub const TIMESTAMP: Self = Self(0x0E);
    /// Keep Alive Timer.
    pub const KEEP_ALIVE_TIMER: Self = Self(0x0F);
    /// Host Behavior Support.
    pub const HOST_BEHAVIOR: Self = Self(0x16);
}

impl fmt::Debug for FeatureId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FeatureId({:#04x})", self.0)
    }
}

/// Get Features SEL (CDW10 bits 10:8).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Select(pub u8);

impl Select {
    /// Current value.
    pub const CURRENT: Self = Self(0);
    /// Default value.
    pub const DEFAULT: Self = Self(1);
    /// Saved value.
    pub const SAVED: Self = Self(2);
    /// Supported capabilities (DW0: bit 0 saveable, bit 1 namespace
    /// specific, bit 2 changeable).
    pub const SUPPORTED: Self = Self(3);
}

/// Supported-capabilities bit: the feature is changeable.
pub const CAP_CHANGEABLE: u32 = 1 << 2;
/// Supported-capabilities bit: the feature is namespace specific.
pub const CAP_NS_SPECIFIC: u32 = 1 << 1;
/// Supported-capabilities bit: the feature is saveable.
pub const CAP_SAVEABLE: u32 = 1 << 0;

/// The fields of a Get Features command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetFeatures {
    /// Command identifier.
    pub cid: u16,
    /// Namespace (for namespace-specific features).
    pub nsid: u32,
    /// Feature.
    pub fid: FeatureId,
    /// Which value.
    pub sel: Select,
    /// CDW11 (feature specific, e.g. TMPSEL/THSEL).
    pub cdw11: u32,
}

impl GetFeatures {
    /// Reads the fields.
    pub fn from_sqe(sqe: &Sqe) -> Self {
        let c10 = sqe.cdw(10);
        Self {
            cid: sqe.cid(),
            nsid: sqe.nsid(),
            fid: FeatureId((c10 & 0xFF) as u8),
            sel: Select(((c10 >> 8) & 0x7) as u8),
            cdw11: sqe.cdw(11),
        }
    }
    /// Builds the SQE (the caller adds an SGL for features that return data).
    pub fn to_sqe(&self) -> Sqe {
        let mut s = Sqe::new(Opcode::GET_FEATURES, self.cid, self.nsid);
        s.set_cdw(10, u32::from(self.fid.0) | (u32::from(self.sel.0 & 0x7) << 8));
        s.set_cdw(11, self.cdw11);
        s
    }
}

/// The fields of a Set Features command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetFeatures {
    /// Command identifier.
    pub cid: u16,
    /// Namespace (for namespace-specific features).
    pub nsid: u32,
    /// Feature.
    pub fid: FeatureId,
    /// Save (CDW10 bit 31).
    pub save: bool,
    /// CDW11 (the value for most features).
    pub cdw11: u32,
}

impl SetFeatures {
    /// Reads the fields.
    pub fn from_sqe(sqe: &Sqe) -> Self {
        let c10 = sqe.cdw(10);
        Self {
            cid: sqe.cid(),
            nsid: sqe.nsid(),
            fid: FeatureId((c10 & 0xFF) as u8),
            save: c10 & (1 << 31) != 0,
            cdw11: sqe.cdw(11),
        }
    }
    /// Builds the SQE (the caller adds an SGL for features that take data).
    pub fn to_sqe(&self) -> Sqe {
        let mut s = Sqe::new(Opcode::SET_FEATURES, self.cid, self.nsid);
        s.set_cdw(10, u32::from(self.fid.0) | (u32::from(self.save) << 31));
        s.set_cdw(11, self.cdw11);
        s
    }
}

/// Size of the Host Behavior Support data.
pub const HOST_BEHAVIOR_LEN: usize = 512;

/// Host Behavior Support (feature 16h) data: 512 bytes, four fields used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostBehavior {
    /// Advanced Command Retry Enable (byte 0).
    pub acre: u8,
    /// Extended Telemetry Data Area 4 Supported (byte 1).
    pub etdas: u8,
    /// LBA Format Extension Enable (byte 2).
    pub lbafee: u8,
    /// Host Dispersed Namespace Support (byte 3).
    pub hdisns: u8,
    /// Copy Descriptor Formats Enable (bytes 4..6): bit n enables Copy
    /// descriptor format n (only formats 2h and 3h need enabling).
    pub cdfe: u16,
}

impl HostBehavior {
    /// Parses the 512 bytes.
    pub fn parse(b: &[u8]) -> Result<Self, LayoutError> {
        need(b, HOST_BEHAVIOR_LEN, "host behavior support")?;
        Ok(Self { acre: u8_at(b, 0), etdas: u8_at(b, 1), lbafee: u8_at(b, 2), hdisns: u8_at(b, 3), cdfe: le16(b, 4) })
    }
    /// Builds the 512 bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut b = vec![0u8; HOST_BEHAVIOR_LEN];
        put8(&mut b, 0, self.acre);
        put8(&mut b, 1, self.etdas);
        put8(&mut b, 2, self.lbafee);
        put8(&mut b, 3, self.hdisns);
        put16(&mut b, 4, self.cdfe);
        b
    }
}

/// Size of the Timestamp feature data.
pub const TIMESTAMP_LEN: usize = 8;

/// Timestamp (feature 0Eh) data: milliseconds since the Unix epoch in bytes
/// 0..6, attributes in byte 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timestamp {
    /// Milliseconds since 1970-01-01 UTC (48 bits).
    pub millis: u64,
    /// Byte 6: bit 0 Synch (the count may have stopped), bits 3:1 origin
    /// (0 = since reset, 1 = set by Set Features).
    pub attributes: u8,
}

impl Timestamp {
    /// Origin bits for "set by a Set Features command".
    pub const ORIGIN_SET_FEATURES: u8 = 1 << 1;

    /// Parses the 8 bytes.
    pub fn parse(b: &[u8]) -> Result<Self, LayoutError> {
        need(b, TIMESTAMP_LEN, "timestamp")?;
        Ok(Self { millis: le64(b, 0) & 0xFFFF_FFFF_FFFF, attributes: u8_at(b, 6) })
    }
    /// Builds the 8 bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut b = vec![0u8; TIMESTAMP_LEN];
        put64(&mut b, 0, self.millis & 0xFFFF_FFFF_FFFF);
        put8(&mut b, 6, self.attributes);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn host_behavior_offsets() {
        let h = HostBehavior { acre: 1, cdfe: 0b1100, ..HostBehavior::default() };
        let b = h.build();
        assert_eq!(b.len(), 512);
        assert_eq!(b[0], 1);
        assert_eq!(&b[4..6], &[0x0C, 0]);
        assert_eq!(HostBehavior::parse(&b).unwrap(), h);
    }

    #[test]
    fn feature_commands_round_trip() {
        let g =
            GetFeatures { cid: 1, nsid: 0, fid: FeatureId::TEMPERATURE_THRESHOLD, sel: Select::SUPPORTED, cdw11: 3 };
        assert_eq!(GetFeatures::from_sqe(&g.to_sqe()), g);
        let s = SetFeatures { cid: 2, nsid: 1, fid: FeatureId::NUMBER_OF_QUEUES, save: true, cdw11: 0x0003_0003 };
        let sq = s.to_sqe();
        assert_eq!(sq.cdw(10), 0x8000_0007);
        assert_eq!(SetFeatures::from_sqe(&sq), s);
    }

    #[test]
    fn every_prefix_is_an_error() {
        let b = HostBehavior::default().build();
        for n in 0..HOST_BEHAVIOR_LEN {
            assert!(HostBehavior::parse(&b[..n]).is_err(), "{n}");
        }
        for n in 0..TIMESTAMP_LEN {
            assert!(Timestamp::parse(&b[..n]).is_err(), "{n}");
        }
    }

    proptest! {
        #[test]
        fn host_behavior_round_trip(acre in any::<u8>(), etdas in any::<u8>(), lbafee in any::<u8>(),
                                    hdisns in any::<u8>(), cdfe in any::<u16>()) {
            let h = HostBehavior { acre, etdas, lbafee, hdisns, cdfe };
            prop_assert_eq!(HostBehavior::parse(&h.build()).unwrap(), h);
        }

        #[test]
        fn timestamp_round_trip(millis in 0u64..(1 << 48), attributes in any::<u8>()) {
            let t = Timestamp { millis, attributes };
            prop_assert_eq!(Timestamp::parse(&t.build()).unwrap(), t);
        }
    }
}
