//! The copy engine beneath every protocol: moves data between block units
//! below SCSI, NVMe or any other front end, and keeps the state copy offload
//! needs (copy operations, ROD tokens, point-in-time sources).
//!
//! It knows no protocol and starts no threads; time comes from a [`Clock`],
//! randomness from the caller. Front ends (the SCSI copy commands today, NVMe
//! Copy next) parse their wire formats, build a [`CopySource`] and a list of
//! [`Run`]s, call [`execute`], and turn [`CopyError`] into their own status
//! codes in one table each.
//!
//! | module | role |
//! |---|---|
//! | [`unit`] | [`Unit`]: what the engine needs of a block device (storage, range locks, write hook) |
//! | [`lock`] | per-unit block-range locks ([`RangeLocks`]) |
//! | [`source`] | [`CopySource`]: where copied bytes come from — a live unit, zeros, a ROD token's snapshot or copy-on-write store, another node's ROD ([`RemoteRod`]); later an RBD snapshot |
//! | [`exec`] | the one executor ([`execute`]) and the one function that moves bytes ([`transfer`]) |
//! | [`ops`] | copy operations (progress, cancel, result) and their per-(requester, unit, list id) records |
//! | [`token`] | the 512-byte ROD token: layout, HMAC under the copy-domain key, the [`TokenStore`] |
//! | [`remote`] | the copy domain: [`Domain`] opens other nodes' tokens, [`RemoteSource`] reads them |
//! | [`rod`] | the [`RodManager`]: tokens, point-in-time sources, snapshot-space account, background spawner |
//! | [`clock`] | [`Clock`], [`SystemClock`] and the virtual [`ManualClock`] |
//!
//! Imports go one way: `clock`, `cancel`, `error`, `lock` ← `unit` ← `source` ←
//! `exec` ← `ops`, `token` ← `remote` ← `rod`.

pub mod cancel;
pub mod clock;
pub mod error;
pub mod exec;
pub mod lock;
pub mod ops;
pub mod remote;
pub mod rod;
pub mod source;
pub mod token;
pub mod unit;

#[cfg(test)]
mod testing;

pub use cancel::CancelToken;
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{CopyError, Refusal};
pub use exec::{execute, transfer, ExecControl, Progress, Run, DEFAULT_CHUNK_BYTES};
pub use lock::{LockMode, RangeGuard, RangeLocks};
pub use ops::{Completion, Consume, CopyManager, CopyOperation, ListKey, OpSnapshot, OpStatus, RodInfo};
pub use remote::{Domain, RemoteSource};
pub use rod::{BlockRange, DeviceInfo, Held, HeldToken, RodConfig, RodManager, RodSource, Spawner, TokenScope};
pub use source::{CopySource, From, LiveSource, Piece, RemoteInfo, RemoteRod, Zeros};
pub use token::{CopyDomainKey, TokenError, TokenStore};
pub use unit::{CopyMetrics, NoMetrics, Unit, UnitId, WriteHook};
