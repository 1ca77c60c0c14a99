//! Test helpers.

use crate::metrics::Metrics;
use crate::registry::LuRegistry;
use oxcopy_copy::SystemClock;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::sync::Arc;

/// A registry with fresh metrics, the system clock and seeded randomness.
pub(crate) fn registry() -> LuRegistry {
    LuRegistry::new(Metrics::new(), Arc::new(SystemClock), Box::new(StdRng::seed_from_u64(0x0C0F)))
}
