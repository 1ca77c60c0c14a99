//! Time, passed in: the engine never reads the system clock itself, so token
//! expiry and record retention are tested on a virtual clock.

use parking_lot::Mutex;
use std::fmt;
use std::time::{Duration, Instant};

/// A time source.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// [`Clock`] over [`Instant::now`]: what a daemon passes in.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A virtual clock that only moves when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    base: Instant,
    offset: Mutex<Duration>,
}

impl ManualClock {
    /// A clock standing at "now".
    pub fn new() -> Self {
        ManualClock { base: Instant::now(), offset: Mutex::new(Duration::ZERO) }
    }

    /// Move the clock forward.
    pub fn advance(&self, by: Duration) {
        *self.offset.lock() += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + *self.offset.lock()
    }
}
