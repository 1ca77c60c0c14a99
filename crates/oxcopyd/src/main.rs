//! `oxcopyd`: serve LUNs from files over iSCSI.

use anyhow::Result;
use clap::Parser;
use oxcopyd::config::{Config, ConfigError, DEFAULT_LISTEN};
use oxcopyd::logfmt::LogFormat;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// oxcopy iSCSI target daemon.
///
/// With no arguments, serves target iqn.2026-11.dev.oxcopy:default on
/// 127.0.0.1:3260 with LUN 0 and LUN 1, each a 1 GiB sparse file created
/// under ./oxcopy-data/ on first run, and prints the iSCSI URLs to use.
/// With --config, serves what the TOML file describes (see README.md for
/// every key). A config that does not validate is refused with exit code 2
/// before anything is created. --check FILE runs the same validation and
/// stops there: it prints "configuration OK: N targets, M LUNs" (exit 0)
/// or the problem (exit 2), and binds, creates and writes nothing.
///
/// Logging, on stderr: RUST_LOG (default "info"), e.g. RUST_LOG=oxcopyd=debug.
/// --log-format journal (or OXCOPYD_LOG_FORMAT=journal) writes one line per
/// event with a <N> priority prefix and no colours or timestamps, for
/// journald; it is the default when stderr is the journal (systemd sets
/// JOURNAL_STREAM), text otherwise.
/// Stop with SIGINT or SIGTERM: in-flight commands finish, LUNs are
/// flushed, the exit code is 0. SIGHUP re-reads the --config file and
/// applies it live (targets, LUNs, allow-lists, CHAP; LUNs grown); a file
/// that does not validate, or that changes what needs a restart (listen,
/// data_dir, metrics, write_buffer_limit, read_buffer_limit, write_behind,
/// [copy_domain]), is
/// refused as a whole with the reason logged, and the running configuration
/// stays. See README.md, "Reloading the configuration".
///
/// The daemon answers admin requests on DATA_DIR/admin.sock (mode 0600):
/// `oxcopyd admin volume list`, `... volume status NAME`,
/// `... volume move NAME SEGMENT PATH:SIZE` (move a segment of a linear
/// volume to another file while it is in use), `... volume abandon NAME`,
/// `... volume leg NAME INDEX fail|restore` (mirror legs). Layout changes
/// are journaled in DATA_DIR/volumes/ and survive a crash or a restart; see
/// `oxcopyd admin --help` and README.md, "Stacked volumes".
#[derive(Parser, Debug)]
#[command(version, about, long_about, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML configuration file.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Portal to listen on (repeatable); overrides [server] listen.
    #[arg(short, long, value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// NVMe/TCP listener (repeatable); overrides every [[subsystem]]'s
    /// listen (the embedded default's subsystem listens on 127.0.0.1:4420).
    #[arg(long, value_name = "ADDR")]
    nvme_listen: Vec<SocketAddr>,
    /// Data directory for the embedded default (LUN files, identities).
    #[arg(long, value_name = "DIR", default_value = "./oxcopy-data")]
    data_dir: PathBuf,
    /// Validate FILE (and the files, directories and addresses it names)
    /// without starting: exit 0 if the daemon would start on it, 2 if not.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check: Option<PathBuf>,
    /// Log format on stderr: text, or journal (<N> priority prefix, no
    /// colours or timestamps). Default: $OXCOPYD_LOG_FORMAT, else journal
    /// when stderr is the systemd journal ($JOURNAL_STREAM), else text.
    #[arg(long, value_name = "FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Send one request to a running daemon's admin socket and print the
    /// answer.
    ///
    /// Requests: `volume list`; `volume status NAME`; `volume move NAME
    /// SEGMENT PATH:SIZE` (copy segment SEGMENT, 0-based, of linear volume
    /// NAME to the first SIZE bytes of file PATH, absolute, created sparse
    /// if missing, while it is in use, then serve it from there); `volume
    /// abandon NAME` (drop a move not yet switched); `volume leg NAME INDEX
    /// fail` / `volume leg NAME INDEX restore` (take a mirror leg out /
    /// bring it back, resyncing it in the background).
    ///
    /// Exit code: 0 when the daemon answered ok, 1 when it answered an
    /// error (or a --wait ended in one), 2 when the socket cannot be
    /// reached.
    Admin(AdminArgs),
}

#[derive(clap::Args, Debug)]
struct AdminArgs {
    /// The daemon's data directory (the socket is DIR/admin.sock).
    #[arg(long, value_name = "DIR", default_value = "./oxcopy-data")]
    data_dir: PathBuf,
    /// The admin socket itself (instead of --data-dir).
    #[arg(long, value_name = "PATH", conflicts_with = "data_dir")]
    socket: Option<PathBuf>,
    /// With `volume move` or `volume leg ... restore`: poll the status every
    /// 200 ms, printing the progress, until the move or resync is over
    /// (exit 0 when it succeeded, 1 when not).
    #[arg(long)]
    wait: bool,
    /// The request, e.g. `volume status all`.
    #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
    words: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Admin(a)) = &args.command {
        return admin_client(a);
    }
    match LogFormat::from_environment(args.log_format) {
        Ok(format) => oxcopyd::logfmt::init(format),
        Err(e) => {
            eprintln!("oxcopyd: {e}");
            return ExitCode::from(2);
        }
    }
    let cfg = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("oxcopyd: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check.is_some() {
        let (targets, luns) = oxcopyd::check::summary(&cfg);
        let (subsystems, namespaces) = oxcopyd::check::nvme_summary(&cfg);
        if subsystems == 0 {
            println!("configuration OK: {targets} targets, {luns} LUNs");
        } else {
            println!(
                "configuration OK: {targets} targets, {luns} LUNs, {subsystems} NVMe subsystems, {namespaces} namespaces"
            );
        }
        return ExitCode::SUCCESS;
    }
    tune_malloc();
    raise_nofile_limit();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().max_blocking_threads(64).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oxcopyd: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cfg, args.config.clone(), args.listen.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oxcopyd: {e:#}");
            // A backend the configuration names that cannot be had (an
            // unreachable cluster, an image another gateway holds): 2, as
            // for the configuration itself.
            if e.chain().any(|c| c.is::<oxcopyd::server::LunUnavailable>()) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Send one request line to the admin socket; the whole answer.
fn admin_request(socket: &std::path::Path, line: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(120)))?;
    s.set_write_timeout(Some(std::time::Duration::from_secs(10)))?;
    s.write_all(format!("{line}\n").as_bytes())?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// `oxcopyd admin ...`.
fn admin_client(a: &AdminArgs) -> ExitCode {
    let socket = a.socket.clone().unwrap_or_else(|| oxcopyd::server::admin::socket_path(&a.data_dir));
    let line = a.words.join(" ");
    let ask = |line: &str| match admin_request(&socket, line) {
        Ok(ans) => Ok(ans),
        Err(e) => {
            eprintln!("oxcopyd admin: cannot reach {}: {e}", socket.display());
            Err(ExitCode::from(2))
        }
    };
    let ans = match ask(&line) {
        Ok(a) => a,
        Err(code) => return code,
    };
    print!("{ans}");
    if ans.lines().next() != Some("ok") {
        return ExitCode::from(1);
    }
    let words: Vec<&str> = a.words.iter().map(String::as_str).collect();
    // What to wait for: a move of the volume, or the resync of one leg.
    let (name, leg) = match words.as_slice() {
        ["volume", "move", name, ..] if a.wait => (name.to_string(), None),
        ["volume", "leg", name, index, "restore"] if a.wait => (name.to_string(), Some(index.to_string())),
        _ => return ExitCode::SUCCESS,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(24 * 3600);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let st = match ask(&format!("volume status {name}")) {
            Ok(s) => s,
            Err(code) => return code,
        };
        if st.lines().next() != Some("ok") {
            print!("{st}");
            return ExitCode::from(1);
        }
        let running = match &leg {
            None => st.lines().find(|l| l.trim_start().starts_with("move:")),
            Some(i) => st.lines().find(|l| {
                let l = l.trim_start();
                l.starts_with(&format!("resync: leg {i},")) || l.starts_with(&format!("resync: leg {i} "))
            }),
        };
        match running {
            Some(l) if l.contains("FAILED") => {
                println!("{}", l.trim());
                return ExitCode::from(1);
            }
            Some(l) => {
                if l != last {
                    println!("{}", l.trim());
                    last = l.to_string();
                }
            }
            None => {
                let ok = match &leg {
                    None => true,
                    Some(i) => st.lines().any(|l| l.starts_with(&format!("  [{i}]")) && l.ends_with(" in sync")),
                };
                print!("{}", st.strip_prefix("ok\n").unwrap_or(&st));
                return if ok { ExitCode::SUCCESS } else { ExitCode::from(1) };
            }
        }
    }
    eprintln!("oxcopyd admin: still running after 24 h; stopped waiting");
    ExitCode::from(1)
}

/// The configuration to serve (or check): the file given with --config or
/// --check, else the embedded default; --listen overrides its portals. It
/// has passed validation and the pre-flight checks, which create nothing.
fn config(args: &Args) -> Result<Config, ConfigError> {
    let cfg = match args.check.as_ref().or(args.config.as_ref()) {
        Some(path) => {
            let mut c = Config::from_file(path)?;
            if !args.listen.is_empty() {
                c.listen = args.listen.clone();
            }
            c
        }
        None => {
            let listen = if args.listen.is_empty() {
                vec![DEFAULT_LISTEN.parse().expect("constant address parses")]
            } else {
                args.listen.clone()
            };
            Config::embedded_default(listen, args.data_dir.clone())
        }
    };
    let mut cfg = cfg;
    if !args.nvme_listen.is_empty() {
        for s in &mut cfg.subsystems {
            s.listen = args.nvme_listen.clone();
        }
    }
    oxcopyd::check::preflight(&cfg)?;
    Ok(cfg)
}

/// Raise the soft open-file limit to the hard one: every point-in-time ROD
/// token on a reflink filesystem holds its snapshot open (an unlinked file),
/// on top of the LUN files and sockets; the usual soft limit of 1024 is
/// below `copy_domain.max_tokens`' default.
fn raise_nofile_limit() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit only read/write the rlimit we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    }
}

/// Keep glibc from handing the I/O buffers of ordinary commands back to the
/// kernel on every free. With its defaults, a buffer of more than 128 KiB is
/// mmap'd, and once the (self-raising) threshold has grown past it, freed
/// buffers are trimmed off the top of the heap as soon as 2 MiB are free
/// there; either way the next command faults its pages in again, which cost
/// about a fifth of the CPU of 1 MiB reads and writes. Buffers up to 4 MiB
/// now come from the heap and a heap keeps up to 32 MiB free at its top;
/// larger transfers (up to 16 MiB) are still mmap'd, so a burst of them does
/// not pin memory. `GLIBC_TUNABLES=glibc.malloc.…` settings take precedence.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var("GLIBC_TUNABLES").is_ok_and(|v| v.contains("glibc.malloc.")) {
            return;
        }
        // SAFETY: mallopt takes no pointers and only changes allocator
        // parameters (under the allocator's own locks).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
        }
    }
}

async fn run(cfg: Config, path: Option<PathBuf>, listen: Vec<SocketAddr>) -> Result<()> {
    // The handlers first: once the URLs are printed (or a session is
    // served) a SIGHUP reloads and a SIGTERM or SIGINT shuts down cleanly;
    // before their handlers, any of them would kill the process (a reload
    // test once lost its daemon that way under load).
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let running = oxcopyd::start(cfg).await?;
    for a in &running.addrs {
        tracing::info!("listening on {a}");
    }
    println!("oxcopyd is serving; iSCSI URLs:");
    for u in running.urls() {
        println!("  {u}");
    }
    let nvme = running.nvme_urls();
    if !nvme.is_empty() {
        println!("NVMe/TCP namespaces:");
        for u in nvme {
            println!("  {u}");
        }
    }
    if let Some(a) = running.node_link_addr {
        println!("node link (copy domain) on {a}");
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    loop {
        tokio::select! {
            _ = int.recv() => {
                tracing::info!("SIGINT: shutting down");
                break;
            }
            _ = term.recv() => {
                tracing::info!("SIGTERM: shutting down");
                break;
            }
            _ = hup.recv() => match &path {
                None => tracing::warn!("SIGHUP: no configuration file (--config) to re-read; nothing changed"),
                Some(p) => {
                    tracing::info!(file = %p.display(), "SIGHUP: reloading the configuration");
                    match running.reload(p, &listen).await {
                        Ok(summary) => tracing::info!("configuration reloaded: {summary}"),
                        Err(e) => tracing::error!("configuration reload refused, still serving the previous one: {e:#}"),
                    }
                }
            },
        }
    }
    running.shutdown().await?;
    tracing::info!("shut down cleanly");
    Ok(())
}
