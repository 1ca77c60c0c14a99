//! `oxcopyd`, the oxcopy iSCSI target daemon, as a library: configuration,
//! stable LUN identities, and the tokio server (used by the binary and by
//! the end-to-end tests).

pub mod check;
pub mod config;
pub mod copy_domain;
pub mod domain;
pub mod identity;
pub mod logfmt;
pub mod metrics_http;
pub mod odx;
pub mod pr_store;
pub mod server;
pub mod shared_storage;
pub mod size;
pub mod subsystems;
pub mod volume_admin;
pub mod volumes;

pub use config::{Config, ConfigError};
pub use server::{start, Running};
