//! Mode parameters (SPC-4 §7.5, SBC-3 §6.4): Caching (08h), Control (0Ah)
//! and Informational Exceptions Control (1Ch) pages — the per-LU state and
//! the page layouts; MODE SENSE and MODE SELECT (6) and (10) are in
//! [`crate::mode_commands`].
//!
//! Changeable: WCE (writes then go through to stable storage on every
//! command), D_SENSE (descriptor-format sense), SWP (software write protect).
//! Nothing can be saved: PC=11b and SP=1 are refused.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Mode page codes.
pub struct ModePage;

impl ModePage {
    pub const CACHING: u8 = 0x08;
    pub const CONTROL: u8 = 0x0A;
    pub const INFORMATIONAL_EXCEPTIONS: u8 = 0x1C;
    pub const ALL: u8 = 0x3F;
}

/// Pages we implement, in the order MODE SENSE returns them.
pub(crate) const PAGES: [u8; 3] = [ModePage::CACHING, ModePage::CONTROL, ModePage::INFORMATIONAL_EXCEPTIONS];

/// PAGE CONTROL field values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageControl {
    Current,
    Changeable,
    Default,
}

/// Current values of the changeable mode parameters of one LU.
#[derive(Debug)]
pub(crate) struct ModeState {
    wce: AtomicBool,
    d_sense: AtomicBool,
    swp: AtomicBool,
    /// Serializes MODE SELECT and resets so a multi-page select applies as a unit.
    pub(crate) select: Mutex<()>,
}

impl Default for ModeState {
    fn default() -> Self {
        ModeState {
            wce: AtomicBool::new(true),
            d_sense: AtomicBool::new(false),
            swp: AtomicBool::new(false),
            select: Mutex::new(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Values {
    pub wce: bool,
    pub d_sense: bool,
    pub swp: bool,
}

impl ModeState {
    /// Write cache enabled (WCE): when false every write is flushed.
    pub(crate) fn wce(&self) -> bool {
        self.wce.load(Ordering::Relaxed)
    }
    /// Descriptor-format sense (D_SENSE).
    pub(crate) fn d_sense(&self) -> bool {
        self.d_sense.load(Ordering::Relaxed)
    }
    /// Software write protect (SWP).
    pub(crate) fn swp(&self) -> bool {
        self.swp.load(Ordering::Relaxed)
    }
    pub(crate) fn values(&self) -> Values {
        Values { wce: self.wce(), d_sense: self.d_sense(), swp: self.swp() }
    }
    pub(crate) fn store(&self, v: Values) {
        self.wce.store(v.wce, Ordering::Relaxed);
        self.d_sense.store(v.d_sense, Ordering::Relaxed);
        self.swp.store(v.swp, Ordering::Relaxed);
    }
    /// Back to defaults (LU reset: nothing is saved).
    pub(crate) fn reset(&self) {
        let _g = self.select.lock();
        self.store(ModeState::default().values());
    }
}

pub(crate) fn default_values() -> Values {
    ModeState::default().values()
}

/// The page body (header included), or `None` for an unknown page.
pub(crate) fn page(code: u8, pc: PageControl, v: Values) -> Option<Vec<u8>> {
    let cur = match pc {
        PageControl::Current => v,
        PageControl::Default => default_values(),
        PageControl::Changeable => Values { wce: true, d_sense: true, swp: true },
    };
    let changeable = pc == PageControl::Changeable;
    match code {
        ModePage::CACHING => {
            let mut p = vec![0u8; 20];
            p[0] = ModePage::CACHING;
            p[1] = 0x12;
            if cur.wce {
                p[2] |= 0x04;
            }
            Some(p)
        }
        ModePage::CONTROL => {
            let mut p = vec![0u8; 12];
            p[0] = ModePage::CONTROL;
            p[1] = 0x0A;
            if cur.d_sense {
                p[2] |= 0x04;
            }
            if !changeable {
                // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering.
                p[3] = 0x10;
            }
            if cur.swp {
                p[4] |= 0x08;
            }
            if !changeable {
                // BUSY TIMEOUT PERIOD: unlimited.
                p[8] = 0xFF;
                p[9] = 0xFF;
            }
            Some(p)
        }
        ModePage::INFORMATIONAL_EXCEPTIONS => {
            let mut p = vec![0u8; 12];
            p[0] = ModePage::INFORMATIONAL_EXCEPTIONS;
            p[1] = 0x0A;
            if !changeable {
                // DEXCPT: no informational exception reporting.
                p[2] = 0x08;
            }
            Some(p)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_bytes() {
        let v = default_values();
        assert_eq!(
            page(ModePage::CACHING, PageControl::Current, v),
            Some(vec![0x08, 0x12, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        );
        assert_eq!(
            page(ModePage::CONTROL, PageControl::Current, v),
            Some(vec![0x0A, 0x0A, 0, 0x10, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0])
        );
        assert_eq!(
            page(ModePage::CONTROL, PageControl::Changeable, v),
            Some(vec![0x0A, 0x0A, 0x04, 0, 0x08, 0, 0, 0, 0, 0, 0, 0])
        );
        assert_eq!(
            page(ModePage::INFORMATIONAL_EXCEPTIONS, PageControl::Default, v),
            Some(vec![0x1C, 0x0A, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        );
        assert_eq!(page(0x01, PageControl::Current, v), None);
    }
}
