//! A progress bar on standard error — only when it is a terminal (and not
//! turned off): bytes, rate, ETA and the method in use.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Cheap to clone; every clone drives the same bar. A no-op when hidden.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A hidden bar.
    pub fn hidden() -> Progress {
        Progress { bar: None }
    }

    /// A bar for `total` bytes labelled `label`, shown when `wanted` and
    /// standard error is a terminal.
    pub fn new(wanted: bool, total: u64, label: &str) -> Progress {
        if !wanted || !std::io::stderr().is_terminal() {
            return Progress::hidden();
        }
        let style =
            ProgressStyle::with_template("{msg:>15} [{bar:32}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()).with_style(style);
        bar.set_message(label.to_string());
        Progress { bar: Some(bar) }
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// Jump to `pos` bytes (offload engines learn progress from status polls;
    /// never moves backwards).
    pub fn set_position(&self, pos: u64) {
        if let Some(b) = &self.bar {
            if pos > b.position() {
                b.set_position(pos);
            }
        }
    }

    pub fn set_label(&self, label: &str) {
        if let Some(b) = &self.bar {
            b.set_message(label.to_string());
        }
    }

    /// Remove the bar (the summary line follows).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
