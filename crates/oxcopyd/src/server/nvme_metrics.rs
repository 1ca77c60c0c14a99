//! Counters of the NVMe/TCP front end, per subsystem and namespace, for the
//! daemon's Prometheus endpoint (bytes moved by NVMe Copy are counted with
//! every other copy in `oxcopy_copy_bytes_total{method}`).
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `oxcopy_nvme_commands_total` | `subsystem`, `nsid`, `command` (`read`, `write`, `flush`, `write_zeroes`, `dsm`, `compare`, `verify`, `copy`, `other`), `result` (`ok`, `error`) | I/O commands completed |
//! | `oxcopy_nvme_read_bytes_total`, `oxcopy_nvme_write_bytes_total` | `subsystem`, `nsid` | data of Read and Write commands completed successfully |
//! | `oxcopy_nvme_copy_bytes_total` | `subsystem`, `nsid` | bytes written by successful Copy commands (to namespace `nsid`) |
//! | `oxcopy_nvme_connections` | `subsystem` | open queues (admin and I/O), the discovery subsystem included |
//! | `oxcopy_nvme_keep_alive_expired_total` | `subsystem` | controllers ended because the host sent no Keep Alive in time |

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// Resolved counters of one (subsystem, namespace, command).
#[derive(Debug, Clone)]
pub struct CommandCounters {
    ok: Counter,
    err: Counter,
    bytes: Option<Counter>,
}

impl CommandCounters {
    /// One command completed; `bytes` counted when it succeeded.
    pub fn done(&self, ok: bool, bytes: u64) {
        if ok {
            self.ok.inc();
            if let Some(b) = &self.bytes {
                b.inc_by(bytes);
            }
        } else {
            self.err.inc();
        }
    }
}

/// The NVMe front end's metric families (cheap to clone: clones share them).
#[derive(Debug, Clone, Default)]
pub struct NvmeMetrics {
    commands: Family<Labels, Counter>,
    read_bytes: Family<Labels, Counter>,
    write_bytes: Family<Labels, Counter>,
    copy_bytes: Family<Labels, Counter>,
    connections: Family<Labels, Gauge>,
    keep_alive_expired: Family<Labels, Counter>,
}

fn ns_labels(subsystem: &str, nsid: u32) -> Labels {
    vec![("subsystem".into(), subsystem.into()), ("nsid".into(), nsid.to_string())]
}

impl NvmeMetrics {
    /// Registers every family.
    pub fn register(&self, r: &mut Registry) {
        r.register("oxcopy_nvme_commands", "NVMe I/O commands completed, by command and result", self.commands.clone());
        r.register("oxcopy_nvme_read_bytes", "Data of NVMe Read commands completed", self.read_bytes.clone());
        r.register("oxcopy_nvme_write_bytes", "Data of NVMe Write commands completed", self.write_bytes.clone());
        r.register("oxcopy_nvme_copy_bytes", "Bytes written by NVMe Copy commands completed", self.copy_bytes.clone());
        r.register("oxcopy_nvme_connections", "Open NVMe/TCP queues", self.connections.clone());
        r.register(
            "oxcopy_nvme_keep_alive_expired",
            "NVMe controllers ended by keep-alive expiry",
            self.keep_alive_expired.clone(),
        );
    }

    /// The counters of one (subsystem, namespace, command), resolved once:
    /// a connection keeps them, so a completed command costs two atomic
    /// additions, not a label lookup.
    pub fn counters(&self, subsystem: &str, nsid: u32, command: &'static str) -> CommandCounters {
        let mut l = ns_labels(subsystem, nsid);
        l.push(("command".into(), command.into()));
        let mut ok = l.clone();
        ok.push(("result".into(), "ok".into()));
        let mut err = l;
        err.push(("result".into(), "error".into()));
        let bytes = match command {
            "read" => Some(&self.read_bytes),
            "write" => Some(&self.write_bytes),
            "copy" => Some(&self.copy_bytes),
            _ => None,
        }
        .map(|f| f.get_or_create(&ns_labels(subsystem, nsid)).clone());
        // One statement each: `get_or_create` returns a guard on the family,
        // which must be gone before the next call may insert.
        let ok = self.commands.get_or_create(&ok).clone();
        let err = self.commands.get_or_create(&err).clone();
        CommandCounters { ok, err, bytes }
    }

    /// A queue opened (+1) or closed (-1).
    pub fn connection(&self, subsystem: &str, delta: i64) {
        self.connections.get_or_create(&vec![("subsystem".into(), subsystem.into())]).inc_by(delta);
    }

    /// A controller's keep-alive timer expired.
    pub fn keep_alive_expired(&self, subsystem: &str) {
        self.keep_alive_expired.get_or_create(&vec![("subsystem".into(), subsystem.into())]).inc();
    }
}
