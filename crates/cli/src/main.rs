//! `oxcopy`: copy between iSCSI LUNs, NVMe/TCP namespaces, local files and
//! block devices — by copy offload where the storage can, by the host where
//! it cannot — and show what a target can offload. Talks iSCSI and NVMe/TCP
//! itself: no root, no kernel initiator, no SCSI generic or NVMe devices.

/// `println!` to standard output that stays quiet when the reader has gone
/// away (`oxcopy inspect … | head`).
macro_rules! outln {
    ($($t:tt)*) => { $crate::emit(&format!($($t)*), true) };
}

/// `eprintln!` that never panics (a full disk or closed pipe behind standard
/// error must not turn an error message into an abort).
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// `print!` counterpart of [`outln!`].
macro_rules! out {
    ($($t:tt)*) => { $crate::emit(&format!($($t)*), false) };
}

mod auth;
mod commands;
mod conn;
mod copy;
mod fail;
mod hostid;
mod human;
mod nvme;
mod offload;
mod progress;
mod sense;
mod url;
mod vpd;

use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const URL_HELP: &str = "\
iSCSI URLs follow libiscsi: iscsi://[user[%secret]@]host[:port]/target-iqn/lun
  - port defaults to 3260; IPv6 hosts go in brackets: iscsi://[::1]:3260/...
  - ?lba=N&blocks=M selects a range of the LUN (default: from LBA 0 to the end)
  - user%secret@ sets CHAP credentials for that URL only
NVMe/TCP URLs: nvme+tcp://host[:port]/subsystem-nqn/nsid
  - port defaults to 4420; IPv6 hosts go in brackets: nvme+tcp://[::1]:4420/...
  - ?lba=N&blocks=M selects a range of the namespace (default: from LBA 0 to the end)
  - our host NQN: --hostnqn NQN, else OXCOPY_HOSTNQN, else one derived from /etc/machine-id
Anything that does not start with iscsi:// or nvme+tcp:// is a local path (regular file or
block device).";

const CHAP_HELP: &str = "\
CHAP: --chap-user NAME, with the secret from the OXCOPY_CHAP_SECRET environment variable or
--chap-secret-file FILE (first line). Secrets are never accepted as plain options (they would
show in ps and shell history), except inside a URL as user%secret@host, as libiscsi users expect.
Mutual CHAP: --target-chap-user NAME, secret from OXCOPY_TARGET_CHAP_SECRET or
--target-chap-secret-file FILE.";

const EXIT_HELP: &str = "\
Exit codes: 0 done; 1 the copy (or its verification) failed; 2 usage error, or the portal,
login, target or LUN (NVMe: address, subsystem or namespace) could not be reached. Errors are
one line on standard error.";

const CP_EXAMPLES: &str = "\
Examples:
  # Copy LUN 0 to LUN 1 of the same target, letting oxcopy pick the method:
  oxcopy cp iscsi://10.0.0.5/iqn.2026-11.dev.oxcopy:default/0 \\
            iscsi://10.0.0.5/iqn.2026-11.dev.oxcopy:default/1

  # Copy 2048 blocks from LBA 4096 into a local file, then read both back and compare:
  oxcopy cp --verify 'iscsi://10.0.0.5/iqn.2026-11.dev.oxcopy:default/0?lba=4096&blocks=2048' part.img

  # Write a disk image to a LUN, forcing a host copy, with a JSON summary for scripts:
  oxcopy cp --method host --json disk.img iscsi://10.0.0.5/iqn.2026-11.dev.oxcopy:default/1

  # Local to local: reflink where the filesystem can, else copy_file_range, else read/write:
  oxcopy cp big.img copy.img

  # With CHAP (secret from the environment):
  OXCOPY_CHAP_SECRET=... oxcopy --chap-user alice cp iscsi://san/iqn.x:y/0 /dev/sdb

  # NVMe/TCP: namespace 1 to namespace 2 of one subsystem, by the NVMe Copy command:
  oxcopy cp nvme+tcp://10.0.0.5/nqn.2026-12.dev.oxcopy:nvme/1 nvme+tcp://10.0.0.5/nqn.2026-12.dev.oxcopy:nvme/2

  # An NVMe namespace range to an iSCSI LUN (host copy):
  oxcopy cp 'nvme+tcp://10.0.0.5:4420/nqn.2026-12.dev.oxcopy:nvme/1?lba=0&blocks=8192' \\
            iscsi://10.0.0.5/iqn.2026-11.dev.oxcopy:default/1

  # Force EXTENDED COPY (fails with the target's reason, in words, if it cannot):
  oxcopy cp --method xcopy iscsi://10.0.0.5/iqn.2026-11.dev.oxcopy:default/0 \\
            'iscsi://10.0.0.5/iqn.2026-11.dev.oxcopy:default/1?lba=8192'

Methods:
  auto   between two NVMe namespaces of one subsystem: NVMe Copy, else a host copy; between
         LUNs: token copy if the source creates tokens the destination accepts, else EXTENDED COPY
         if one copy manager reaches both LUNs, else a host copy. An offload the target refuses
         or that fails is retried with the next method: oxcopy says so on stderr, and --json
         reports the first failure as \"fallback\": {\"from\", \"reason\"}
  copy   the NVMe Copy command, sent to the destination namespace's controller: within one
         namespace with format 0h descriptors, between namespaces of one subsystem (same address,
         same block size) with format 2h if the controller supports it (OCFS bit 2); split into
         commands within the namespace's MSSRL / MCL / MSRC limits
  token  POPULATE TOKEN on the source + WRITE USING TOKEN on the destination (IMMED, progress
         from RECEIVE ROD TOKEN INFORMATION); one token per 8Fh-limit-sized piece
  xcopy  EXTENDED COPY (LID1, 02h segments, E4h CSCDs naming both LUNs by their VPD 83h NAA),
         sent to the destination's copy manager (else the source's); progress from COPY STATUS
  host   read and write through this machine: several commands in flight (--queue-depth),
         transfer size from the target's Block Limits VPD and the negotiated MaxBurstLength;
         between two local files: FICLONERANGE, then copy_file_range, then read/write per extent

The --json summary is one object:
  {\"method\", \"bytes\", \"seconds\", \"bytes_per_second\", \"wire_bytes_sent\", \"wire_bytes_received\",
   \"fallback\": null | {\"from\", \"reason\"}, \"source\", \"destination\", \"transfer_bytes\",
   \"queue_depth\", \"local\": null | {\"reflink\", \"copy_file_range\", \"read_write\", \"hole\"},
   \"offload\": null | {\"copy_manager\", \"commands\", \"status_polls\", \"early_polls\", \"tokens\"
               [, \"copy_format\" (NVMe Copy: \"0h\" or \"2h\")]},
   \"verify\": null | {\"ok\", \"digest\", \"chunk_bytes\", \"chunks\", \"mismatched_chunks\", ...}}
Wire bytes count the copy itself (not login, inspection or verification).";

const LS_EXAMPLES: &str = "\
Examples:
  oxcopy ls 10.0.0.5
  oxcopy ls iscsi://[fd00::5]:3261 --json
  oxcopy ls nvme+tcp://10.0.0.5                      # NVMe/TCP, port 4420
  oxcopy ls nvme+tcp://10.0.0.5:4420/nqn.2026-12.dev.oxcopy:nvme

Logs in to every target the portal reports (SendTargets) and lists its LUNs with capacity,
block size and identity. A target that refuses the login is listed with the reason.
For nvme+tcp:// it reads the discovery log and lists every subsystem there, and for each
NVM subsystem its namespaces with size, block size and NGUID; with /nqn only that subsystem.";

const INSPECT_EXAMPLES: &str = "\
Examples:
  oxcopy inspect iscsi://10.0.0.5/iqn.2026-11.dev.oxcopy:default/0
  oxcopy inspect --json iscsi://10.0.0.5/iqn.2026-11.dev.oxcopy:default/0 | jq .vpd.\\\"8Fh\\\"
  oxcopy inspect nvme+tcp://10.0.0.5:4420/nqn.2026-12.dev.oxcopy:nvme/1

Shows the standard INQUIRY data, the VPD pages 00h, 80h, 83h, B0h, B1h, B2h and 8Fh (every
Third-party Copy descriptor decoded), oxcopyd's copy domain page C0h when the LUN lists it
(domain fingerprint, this node's copy-manager id and node-link address, each node's state),
the layout of the volume under the LUN (page C1h: members, stripe size, mirror legs' states,
stacked volumes indented) when the LUN sits on one, and one line on what the LUN can offload, e.g.
  offload: EXTENDED COPY LID1: segments 02h; CSCD E4h; max 64 segments; tokens: access upon
           reference, zero; max 64 ranges; default inactivity 60 s
or \"no offload\" for targets without copy offload.

For an NVMe/TCP namespace: the controller (model, serial, firmware, subsystem NQN, MDTS,
in-capsule data size, the optional commands Compare / Dataset Management / Write Zeroes /
Verify / Copy, the Copy formats), the namespace (size, block size, NGUID, thin provisioning,
deallocation, the Copy limits MSSRL / MCL / MSRC) and one offload line, e.g.
  offload: NVMe Copy: formats 0h, 2h (across namespaces of the subsystem too); max 128 ranges
           of 65535 blocks, 16777216 blocks per command";

const TOKEN_EXAMPLES: &str = "\
Examples:
  # Machine A: a token for the first 1 GiB of LUN 0, kept 10 minutes when unused:
  oxcopy token create --ttl 600 -o lun0.tok 'iscsi://10.0.0.5/iqn.2026-11.dev.oxcopy:default/0?blocks=2097152'
  scp lun0.tok machine-b:            # the file is a capability: keep it private (it is created mode 0600)

  # Machine B (another host, another session): write the data to LUN 1, then delete the token:
  oxcopy token write --delete lun0.tok iscsi://10.0.0.5/iqn.2026-11.dev.oxcopy:default/1

  # What is in a token (no network):
  oxcopy token info lun0.tok

The token stays valid until it is deleted (--delete) or unused for its inactivity timeout (--ttl). It is
point in time (the target's default ROD type): writes to the source range after `create` do not change
what it represents. The target that accepts it must share the creator's copy domain (oxcopyd: the same
daemon, or a node of its copy domain; `oxcopy inspect` shows the domain). `oxcopy cp --method token` does
both steps at once.";

#[derive(Debug, Parser)]
#[command(
    name = "oxcopy",
    version,
    about = "Copy between iSCSI LUNs, NVMe/TCP namespaces, files and block devices, by copy offload where the storage can",
    long_about = "oxcopy copies data between iSCSI LUNs, NVMe/TCP namespaces, local files and block devices. \
                  Between LUNs it asks the storage to move the data itself (token copy or EXTENDED COPY) when \
                  it can, between namespaces of one NVMe subsystem it sends NVMe Copy commands, and otherwise \
                  it copies through this machine with several commands in flight. It speaks iSCSI and NVMe/TCP \
                  itself: no root, no kernel initiator, no /dev/sg or /dev/nvme devices.",
    after_long_help = format!("{URL_HELP}\n\n{CHAP_HELP}\n\n{EXIT_HELP}")
)]
struct Cli {
    #[command(flatten)]
    global: GlobalOpts,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Connection options (any subcommand)")]
struct GlobalOpts {
    /// CHAP user name (secret: OXCOPY_CHAP_SECRET or --chap-secret-file)
    #[arg(long, global = true, value_name = "NAME")]
    chap_user: Option<String>,
    /// File whose first line is the CHAP secret
    #[arg(long, global = true, value_name = "FILE")]
    chap_secret_file: Option<PathBuf>,
    /// Mutual CHAP: the name the target must answer with
    #[arg(long, global = true, value_name = "NAME")]
    target_chap_user: Option<String>,
    /// Mutual CHAP: file whose first line is the target's secret
    #[arg(long, global = true, value_name = "FILE")]
    target_chap_secret_file: Option<PathBuf>,
    /// Our iSCSI initiator name [default: iqn.2026-11.dev.oxcopy:initiator-<hostname>]
    #[arg(long, global = true, value_name = "IQN")]
    initiator_name: Option<String>,
    /// Our NVMe host NQN (else OXCOPY_HOSTNQN) [default: nqn.2014-08.org.nvmexpress:uuid:<from /etc/machine-id>]
    #[arg(long, global = true, value_name = "NQN")]
    hostnqn: Option<String>,
    /// Time limit for one SCSI or NVMe command, in seconds
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    timeout: u64,
    /// Log protocol details to standard error (RUST_LOG overrides)
    #[arg(short, long, global = true)]
    verbose: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Copy SRC to DST (iSCSI LUNs, NVMe namespaces, ranges of them, local files or block devices)
    #[command(after_long_help = format!("{CP_EXAMPLES}\n\n{URL_HELP}\n\n{EXIT_HELP}"))]
    Cp(CpArgs),
    /// List the targets behind a portal (or the NVMe subsystems at an address) and their LUNs / namespaces
    #[command(after_long_help = LS_EXAMPLES)]
    Ls {
        /// host[:port], iscsi://host[:port] or nvme+tcp://host[:port][/subsystem-nqn]
        portal: String,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Show a LUN's or NVMe namespace's identity, limits and copy-offload capabilities
    #[command(after_long_help = INSPECT_EXAMPLES)]
    Inspect {
        /// iscsi://[user[%secret]@]host[:port]/target-iqn/lun or nvme+tcp://host[:port]/subsystem-nqn/nsid
        url: String,
        /// Print every decoded field as JSON
        #[arg(long)]
        json: bool,
    },
    /// Token copy in two steps (possibly on two machines): create a ROD token file, write with it, decode one
    #[command(subcommand, after_long_help = TOKEN_EXAMPLES)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// POPULATE TOKEN: save a 512-byte ROD token for SRC (a LUN or a range of one) to FILE (mode 0600)
    #[command(after_long_help = TOKEN_EXAMPLES)]
    Create {
        /// iscsi://host[:port]/target-iqn/lun[?lba=N&blocks=M]
        src: String,
        /// Seconds the token may stay unused before the target discards it [default: the target's]
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        ttl: u32,
        /// Token file to create (must not exist)
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Print a one-object JSON summary
        #[arg(long)]
        json: bool,
    },
    /// WRITE USING TOKEN: write the data a token file represents to DST
    #[command(after_long_help = TOKEN_EXAMPLES)]
    Write {
        /// Token file made by `oxcopy token create`
        file: PathBuf,
        /// iscsi://host[:port]/target-iqn/lun[?lba=N&blocks=M] (default: as many blocks as the token holds)
        dst: String,
        /// Skip this many blocks (of DST) of the token's data
        #[arg(long, value_name = "BLOCKS", default_value_t = 0)]
        offset_into_rod: u64,
        /// Ask the target to delete the token after this write (DEL_TKN)
        #[arg(long)]
        delete: bool,
        /// Print a one-object JSON summary
        #[arg(long)]
        json: bool,
        /// Never show a progress bar
        #[arg(long)]
        no_progress: bool,
    },
    /// Decode a token file offline: ROD type, creator LU, bytes represented, block size
    Info {
        /// Token file
        file: PathBuf,
        /// Print the decoded fields as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct CpArgs {
    /// Source: iscsi:// or nvme+tcp:// URL (optionally ?lba=N&blocks=M) or local path
    src: String,
    /// Destination: iscsi:// or nvme+tcp:// URL (optionally ?lba=N) or local path (created or truncated)
    dst: String,
    /// How to copy
    #[arg(long, value_enum, default_value_t = copy::method::MethodArg::Auto)]
    method: copy::method::MethodArg,
    /// Read both sides back afterwards and compare (SHA-256 per chunk)
    #[arg(long)]
    verify: bool,
    /// Print a one-object JSON summary on standard output
    #[arg(long)]
    json: bool,
    /// Host copy: commands in flight
    #[arg(long, value_name = "N", default_value_t = copy::host::DEFAULT_QUEUE_DEPTH as u16,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    queue_depth: u16,
    /// Never show a progress bar (it is shown only when standard error is a terminal)
    #[arg(long)]
    no_progress: bool,
    /// Testing only: damage one byte of the destination between the copy and --verify
    #[arg(long, hide = true)]
    test_corrupt_destination: bool,
}

/// Write to standard output; a closed pipe is not an error worth reporting.
fn emit(text: &str, newline: bool) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes()).and_then(|_| if newline { o.write_all(b"\n") } else { Ok(()) });
}

fn init_logging(verbose: bool) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => f,
        _ if verbose => "debug".to_string(),
        _ => "off".to_string(),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

/// A clap error on one line (help and version are printed as they are).
fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(fail::EXIT_USAGE)
        } else {
            ExitCode::SUCCESS
        };
    }
    let text = e.render().to_string();
    let msg = text.split("\n\nUsage:").next().unwrap_or(&text);
    let msg = msg.split("\n\nFor more information").next().unwrap_or(msg);
    let msg = msg.trim().trim_start_matches("error: ");
    let msg: Vec<&str> = msg.split_whitespace().collect();
    errln!("oxcopy: {} (see oxcopy --help)", msg.join(" "));
    ExitCode::from(fail::EXIT_USAGE)
}

fn main() -> ExitCode {
    // No panic may print a backtrace: report one line and fail.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        let msg: String = msg.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        // Never panic here (a full disk behind stderr would abort the process).
        errln!("oxcopy: internal error: {msg}");
        std::process::exit(fail::EXIT_FAILED as i32);
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return clap_error(e),
    };
    init_logging(cli.global.verbose);
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            errln!("oxcopy: cannot start the async runtime: {e}");
            return ExitCode::from(fail::EXIT_FAILED);
        }
    };
    let result = rt.block_on(async {
        tokio::select! {
            r = run(cli) => r,
            _ = tokio::signal::ctrl_c() => {
                // A token operation runs on in the target (IMMED): stop it.
                Err(match copy::offload::abort_active().await {
                    Some(id) => anyhow::anyhow!("interrupted (COPY OPERATION ABORT sent for list identifier {id})"),
                    None => anyhow::anyhow!("interrupted"),
                })
            }
        }
    });
    // Do not wait for stray blocking tasks (a hung local read) at exit.
    rt.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("oxcopy: {}", fail::one_line(&e));
            ExitCode::from(fail::exit_code(&e))
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global;
    let hostnqn = g.hostnqn.or_else(|| std::env::var(hostid::ENV_HOSTNQN).ok().filter(|s| !s.is_empty()));
    if let Some(n) = &hostnqn {
        hostid::check_hostnqn(n).map_err(fail::usage)?;
    }
    let conn = conn::Connector {
        nvme_host: hostid::default_host_identity(hostnqn.as_deref()),
        initiator_name: g.initiator_name.unwrap_or_else(oxcopy_initiator::default_initiator_name),
        chap: auth::ChapOptions {
            user: g.chap_user,
            secret_file: g.chap_secret_file,
            target_user: g.target_chap_user,
            target_secret_file: g.target_chap_secret_file,
            env_secret: std::env::var(auth::ENV_SECRET).ok().filter(|s| !s.is_empty()),
            env_target_secret: std::env::var(auth::ENV_TARGET_SECRET).ok().filter(|s| !s.is_empty()),
        },
        command_timeout: Duration::from_secs(g.timeout),
    };
    match cli.command {
        Command::Cp(a) => {
            let o = copy::CpOptions {
                src: a.src,
                dst: a.dst,
                method: a.method,
                verify: a.verify,
                json: a.json,
                queue_depth: a.queue_depth as usize,
                progress: !a.no_progress,
                corrupt_destination: a.test_corrupt_destination,
            };
            copy::cp(&conn, &o).await
        }
        Command::Ls { portal, json } => commands::ls::ls(&conn, &portal, json).await,
        Command::Inspect { url, json } => commands::inspect::inspect(&conn, &url, json).await,
        Command::Token(TokenCommand::Create { src, ttl, output, json }) => {
            commands::token::create(&conn, &src, ttl, &output, json).await
        }
        Command::Token(TokenCommand::Write { file, dst, offset_into_rod, delete, json, no_progress }) => {
            commands::token::write(&conn, &file, &dst, offset_into_rod, delete, json, !no_progress).await
        }
        Command::Token(TokenCommand::Info { file, json }) => commands::token::info(&file, json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn method_and_flags_parse() {
        let c = Cli::try_parse_from(["oxcopy", "cp", "a", "b", "--method", "xcopy", "--verify", "--chap-user", "u"])
            .unwrap();
        let Command::Cp(a) = c.command else { panic!() };
        assert_eq!(a.method, copy::method::MethodArg::Xcopy);
        assert!(a.verify && !a.json);
        assert_eq!(a.queue_depth, 8);
        assert_eq!(c.global.chap_user.as_deref(), Some("u"));
        assert!(Cli::try_parse_from(["oxcopy", "cp", "a", "b", "--method", "fast"]).is_err());
        assert!(Cli::try_parse_from(["oxcopy", "cp", "a", "b", "--queue-depth", "0"]).is_err());
        let c = Cli::try_parse_from(["oxcopy", "cp", "a", "b", "--method", "copy", "--hostnqn", "nqn.x:y"]).unwrap();
        let Command::Cp(a) = c.command else { panic!() };
        assert_eq!(a.method, copy::method::MethodArg::Copy);
        assert_eq!(c.global.hostnqn.as_deref(), Some("nqn.x:y"));
        // No option takes a secret.
        assert!(Cli::try_parse_from(["oxcopy", "cp", "a", "b", "--chap-secret", "x"]).is_err());
    }
}
