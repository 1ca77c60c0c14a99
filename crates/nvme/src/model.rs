//! What the controller model and the NVM command set know of a subsystem and
//! its namespaces: plain data, built by the daemon from its configuration.

/// Copy limits a namespace advertises (Identify Namespace MSSRL, MCL, MSRC)
/// and enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyLimits {
    /// Maximum single source range length, blocks (MSSRL, 1-based, ≥ 1).
    pub mssrl: u16,
    /// Maximum copy length, blocks: the sum over all ranges (MCL, 1-based).
    pub mcl: u32,
    /// Maximum source range count (MSRC as the number of ranges, 1..=256; on
    /// the wire it is 0's based).
    pub max_ranges: u16,
}

impl Default for CopyLimits {
    fn default() -> Self {
        // 65535 blocks per range (the NLB field's maximum), 128 ranges, and a
        // total bounded so one command moves at most 2^24 blocks.
        Self { mssrl: u16::MAX, mcl: 1 << 24, max_ranges: 128 }
    }
}

/// One namespace as the controller reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// Namespace ID (1-based).
    pub nsid: u32,
    /// Logical block size, bytes (512 or 4096).
    pub block_size: u32,
    /// Size in blocks (NSZE = NCAP = NUSE).
    pub blocks: u64,
    /// Namespace globally unique identifier: stable across restarts.
    pub nguid: [u8; 16],
    /// Namespace UUID (RFC 4122 variant): stable across restarts.
    pub uuid: [u8; 16],
    /// Writes refused (NAMESPACE_WRITE_PROTECTED).
    pub read_only: bool,
    /// Deallocate (DSM, Write Zeroes with DEAC) frees space and reads back
    /// zeros afterwards (thin provisioning: NSFEAT bit 0, DLFEAT = 1 with
    /// bit 3).
    pub deallocate: bool,
    /// Copy limits.
    pub copy: CopyLimits,
}
