//! Counters the SCSI layer keeps for the daemon's Prometheus endpoint.
//!
//! The families live in a [`Metrics`] value (cheap to clone: clones share
//! the counters), owned by the [`crate::registry::LuRegistry`]; the daemon
//! registers them in a `prometheus_client` registry and serves the text
//! exposition. Nothing here does I/O, and there is no global state: several
//! daemons in one process (the end-to-end tests) keep separate figures.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `oxcopy_copy_bytes_total` | `method` = `reflink`, `copy_file_range`, `read_write`, `hole` | bytes moved by copy operations, by how the backend moved them; `hole` counts source holes, which are not read: the destination range is deallocated (or zeroed) instead |
//! | `oxcopy_copy_commands_total` | `command` = `extended_copy`, `populate_token`, `write_using_token`; `result` = `ok`, `error` | copy commands by outcome (GOOD or not; an IMMED command counts when its background copy ends) |
//! | `oxcopy_rod_tokens` | — | live ROD tokens |
//! | `oxcopy_rod_snapshot_bytes` | — | bytes charged to point-in-time tokens (reflink snapshots at their represented size, copy-on-write stores as preserved) |
//! | `oxcopy_lun_read_commands_total`, `oxcopy_lun_read_bytes_total` | `target`, `lun` | READ commands completed with GOOD and their data-in bytes |
//! | `oxcopy_lun_write_commands_total`, `oxcopy_lun_write_bytes_total` | `target`, `lun` | medium-changing commands completed with GOOD and their data-out bytes |
//! | `oxcopy_lun_inline_commands_total` | `target`, `lun` | READs and WRITEs done on the thread that received them, with no hand-off to an I/O thread (see `ScsiTarget::try_execute`) |

use oxcopy_storage::{CopyMethod, CopyReport};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// Copy commands counted in `oxcopy_copy_commands_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyCommand {
    /// EXTENDED COPY (LID1).
    ExtendedCopy,
    /// POPULATE TOKEN.
    PopulateToken,
    /// WRITE USING TOKEN.
    WriteUsingToken,
}

impl CopyCommand {
    /// The `command` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyCommand::ExtendedCopy => "extended_copy",
            CopyCommand::PopulateToken => "populate_token",
            CopyCommand::WriteUsingToken => "write_using_token",
        }
    }
}

/// The SCSI layer's metric families (see the module docs).
#[derive(Debug, Clone)]
pub struct Metrics {
    copy_bytes: Family<Labels, Counter>,
    copy_commands: Family<Labels, Counter>,
    lun_read_commands: Family<Labels, Counter>,
    lun_read_bytes: Family<Labels, Counter>,
    lun_write_commands: Family<Labels, Counter>,
    lun_inline_commands: Family<Labels, Counter>,
    lun_write_bytes: Family<Labels, Counter>,
    /// Handles per [`CopyMethod::ALL`] entry.
    by_method: Vec<(CopyMethod, Counter)>,
    rod_tokens: Gauge,
    rod_snapshot_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

impl Metrics {
    /// Fresh families; every copy method and command/result pair starts at
    /// zero so that the series exist before the first copy.
    pub fn new() -> Self {
        let copy_bytes = Family::<Labels, Counter>::default();
        let copy_commands = Family::<Labels, Counter>::default();
        let by_method = CopyMethod::ALL
            .iter()
            .map(|&m| (m, copy_bytes.get_or_create(&labels(&[("method", m.as_str())])).clone()))
            .collect();
        for c in [CopyCommand::ExtendedCopy, CopyCommand::PopulateToken, CopyCommand::WriteUsingToken] {
            for r in ["ok", "error"] {
                let _ = copy_commands.get_or_create(&labels(&[("command", c.as_str()), ("result", r)]));
            }
        }
        Metrics {
            copy_bytes,
            copy_commands,
            lun_read_commands: Family::default(),
            lun_read_bytes: Family::default(),
            lun_write_commands: Family::default(),
            lun_inline_commands: Family::default(),
            lun_write_bytes: Family::default(),
            by_method,
            rod_tokens: Gauge::default(),
            rod_snapshot_bytes: Gauge::default(),
        }
    }

    /// Set the live ROD token gauge.
    pub fn set_rod_tokens(&self, n: usize) {
        self.rod_tokens.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Set the snapshot-bytes gauge.
    pub fn set_rod_snapshot_bytes(&self, n: u64) {
        self.rod_snapshot_bytes.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// (live tokens, snapshot bytes) as last set (tests, diagnostics).
    pub fn rod_gauges(&self) -> (i64, i64) {
        (self.rod_tokens.get(), self.rod_snapshot_bytes.get())
    }

    /// Register every family in `registry` (names without the `_total`
    /// suffix, which the exposition adds to counters).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "oxcopy_copy_bytes",
            "Bytes moved by copy operations, by backend method",
            self.copy_bytes.clone(),
        );
        registry.register("oxcopy_copy_commands", "Copy commands by outcome", self.copy_commands.clone());
        registry.register("oxcopy_rod_tokens", "Live ROD tokens", self.rod_tokens.clone());
        registry.register(
            "oxcopy_rod_snapshot_bytes",
            "Bytes held for point-in-time ROD tokens",
            self.rod_snapshot_bytes.clone(),
        );
        registry.register(
            "oxcopy_lun_read_commands",
            "READ commands completed with GOOD",
            self.lun_read_commands.clone(),
        );
        registry.register("oxcopy_lun_read_bytes", "Data-in bytes of READ commands", self.lun_read_bytes.clone());
        registry.register(
            "oxcopy_lun_write_commands",
            "Medium-changing commands completed with GOOD",
            self.lun_write_commands.clone(),
        );
        registry.register("oxcopy_lun_write_bytes", "Data-out bytes of write commands", self.lun_write_bytes.clone());
        registry.register(
            "oxcopy_lun_inline_commands",
            "READs and WRITEs done on the receiving thread, without an I/O thread hand-off",
            self.lun_inline_commands.clone(),
        );
    }

    /// Account one backend copy.
    pub fn copy_report(&self, r: &CopyReport) {
        for (m, c) in &self.by_method {
            let n = r.get(*m);
            if n > 0 {
                c.inc_by(n);
            }
        }
    }

    /// Bytes moved so far by `method` (tests, diagnostics).
    pub fn copy_bytes(&self, method: CopyMethod) -> u64 {
        self.by_method.iter().find(|(m, _)| *m == method).map_or(0, |(_, c)| c.get())
    }

    /// Count one copy command.
    pub fn copy_command(&self, command: CopyCommand, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.copy_commands.get_or_create(&labels(&[("command", command.as_str()), ("result", result)])).inc();
    }

    /// Copy commands counted so far (tests, diagnostics).
    pub fn copy_commands(&self, command: CopyCommand, ok: bool) -> u64 {
        let result = if ok { "ok" } else { "error" };
        self.copy_commands.get_or_create(&labels(&[("command", command.as_str()), ("result", result)])).get()
    }

    /// Counter handles for one LUN of one target.
    pub fn lun(&self, target: &str, lun: u16) -> LunCounters {
        let l = labels(&[("target", target), ("lun", &lun.to_string())]);
        LunCounters {
            read_commands: self.lun_read_commands.get_or_create(&l).clone(),
            read_bytes: self.lun_read_bytes.get_or_create(&l).clone(),
            write_commands: self.lun_write_commands.get_or_create(&l).clone(),
            write_bytes: self.lun_write_bytes.get_or_create(&l).clone(),
            inline_commands: self.lun_inline_commands.get_or_create(&l).clone(),
        }
    }
}

/// Per-LUN counter handles (one atomic add per update).
#[derive(Debug, Clone, Default)]
pub struct LunCounters {
    read_commands: Counter,
    read_bytes: Counter,
    write_commands: Counter,
    write_bytes: Counter,
    inline_commands: Counter,
}

impl LunCounters {
    /// A READ completed with GOOD, returning `bytes` of data-in.
    pub fn read(&self, bytes: u64) {
        self.read_commands.inc();
        self.read_bytes.inc_by(bytes);
    }
    /// A medium-changing command completed with GOOD, carrying `bytes` of data-out.
    pub fn write(&self, bytes: u64) {
        self.write_commands.inc();
        self.write_bytes.inc_by(bytes);
    }
    /// A READ or WRITE was done on the receiving thread (no hand-off).
    pub fn inline(&self) {
        self.inline_commands.inc();
    }
    /// READs and WRITEs done inline so far.
    pub fn inline_commands(&self) -> u64 {
        self.inline_commands.get()
    }
    /// (read commands, read bytes, write commands, write bytes) so far.
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (self.read_commands.get(), self.read_bytes.get(), self.write_commands.get(), self.write_bytes.get())
    }
}

/// The copy engine reports into the same families.
impl oxcopy_copy::CopyMetrics for Metrics {
    fn copied(&self, report: &CopyReport) {
        self.copy_report(report);
    }
    fn rod_tokens(&self, live: usize) {
        self.set_rod_tokens(live);
    }
    fn rod_snapshot_bytes(&self, bytes: u64) {
        self.set_rod_snapshot_bytes(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_documented_series() {
        let m = Metrics::new();
        let mut r = CopyReport::default();
        r.add(CopyMethod::Reflink, 4096);
        r.add(CopyMethod::Hole, 100);
        m.copy_report(&r);
        m.copy_command(CopyCommand::ExtendedCopy, true);
        m.lun("iqn.x", 3).read(512);
        let clone = m.clone();
        clone.copy_report(&r);
        let mut reg = Registry::default();
        m.register(&mut reg);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(text.contains("oxcopy_copy_bytes_total{method=\"reflink\"} 8192"), "{text}");
        assert!(text.contains("oxcopy_copy_bytes_total{method=\"hole\"} 200"), "{text}");
        assert!(text.contains("oxcopy_copy_bytes_total{method=\"copy_file_range\"} 0"), "{text}");
        assert!(text.contains("oxcopy_copy_bytes_total{method=\"read_write\"} 0"), "{text}");
        assert!(text.contains("oxcopy_copy_commands_total{command=\"extended_copy\",result=\"ok\"} 1"), "{text}");
        assert!(text.contains("oxcopy_copy_commands_total{command=\"extended_copy\",result=\"error\"} 0"), "{text}");
        assert!(text.contains("oxcopy_lun_read_bytes_total{target=\"iqn.x\",lun=\"3\"} 512"), "{text}");
        assert_eq!(m.copy_bytes(CopyMethod::Reflink), 8192);
        for c in ["populate_token", "write_using_token"] {
            assert!(text.contains(&format!("oxcopy_copy_commands_total{{command=\"{c}\",result=\"ok\"}} 0")), "{text}");
        }
        m.copy_command(CopyCommand::WriteUsingToken, false);
        m.set_rod_tokens(3);
        m.set_rod_snapshot_bytes(4096);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(
            text.contains("oxcopy_copy_commands_total{command=\"write_using_token\",result=\"error\"} 1"),
            "{text}"
        );
        assert!(text.contains("oxcopy_rod_tokens 3"), "{text}");
        assert!(text.contains("oxcopy_rod_snapshot_bytes 4096"), "{text}");
    }
}
