//! Log output: the usual `tracing_subscriber` text format on a terminal, or
//! a format for the systemd journal.
//!
//! The journal format is one line per event, no ANSI colours and no
//! timestamp (journald stamps each line itself), prefixed with the
//! syslog-style priority journald reads from a stream (`sd-daemon(3)`):
//! `<3>` error, `<4>` warning, `<6>` info, `<7>` debug and trace. So
//! `journalctl -p warning -u oxcopyd` shows warnings and errors only. A
//! line is `<N>target: span{fields}: message key=value`; newlines inside a
//! message are written as `\n` so an event never spans two journal entries.

use std::fmt::{self, Write as _};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Environment variable naming the log format (`text` or `journal`).
pub const LOG_FORMAT_ENV: &str = "OXCOPYD_LOG_FORMAT";

/// How log events are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Timestamp, coloured level, target, message (tracing-subscriber's default).
    Text,
    /// Priority prefix for journald (3 error .. 7 debug), no colours, no timestamp.
    Journal,
}

impl LogFormat {
    /// Parse `text` or `journal` (as in `OXCOPYD_LOG_FORMAT`).
    pub fn parse(s: &str) -> Option<LogFormat> {
        match s.trim() {
            "text" => Some(LogFormat::Text),
            "journal" => Some(LogFormat::Journal),
            _ => None,
        }
    }

    /// The format to use: `--log-format` if given, else `OXCOPYD_LOG_FORMAT`
    /// (`env_value`), else `journal` when stderr is the journal stream systemd
    /// announced in `JOURNAL_STREAM` (`"dev:ino"`, compared with stderr's
    /// `stderr_id`, as systemd recommends: a child whose stderr was redirected
    /// keeps the variable), else `text`. `Err` names a bad environment value.
    pub fn choose(
        flag: Option<LogFormat>,
        env_value: Option<&str>,
        journal_stream: Option<&str>,
        stderr_id: Option<(u64, u64)>,
    ) -> Result<LogFormat, String> {
        if let Some(f) = flag {
            return Ok(f);
        }
        if let Some(v) = env_value {
            return LogFormat::parse(v)
                .ok_or_else(|| format!("{LOG_FORMAT_ENV}: '{v}' is not a log format (text or journal)"));
        }
        let on_journal = journal_stream.zip(stderr_id).is_some_and(|(js, (dev, ino))| {
            js.trim().split_once(':').is_some_and(|(d, i)| d.parse() == Ok(dev) && i.parse() == Ok(ino))
        });
        Ok(if on_journal { LogFormat::Journal } else { LogFormat::Text })
    }

    /// [`LogFormat::choose`] from this process's flag, environment and stderr.
    pub fn from_environment(flag: Option<LogFormat>) -> Result<LogFormat, String> {
        let env_value = std::env::var(LOG_FORMAT_ENV).ok();
        let journal_stream = std::env::var("JOURNAL_STREAM").ok();
        let stderr_id = journal_stream
            .as_ref()
            .and_then(|_| rustix::fs::fstat(std::io::stderr()).ok())
            .map(|st| (st.st_dev, st.st_ino));
        LogFormat::choose(flag, env_value.as_deref(), journal_stream.as_deref(), stderr_id)
    }
}

/// Install the global subscriber: `RUST_LOG` filter (default `info`), to stderr.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Journal => builder.with_ansi(false).event_format(JournalFormat).init(),
    }
}

/// The syslog priority journald understands for a level.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// The journal event format (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct JournalFormat;

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut line = String::new();
        write!(line, "<{}>{}: ", priority(*meta.level()), meta.target())?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                line.push_str(span.name());
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>().filter(|f| !f.is_empty()) {
                    write!(line, "{{{fields}}}")?;
                }
                line.push_str(": ");
            }
        }
        ctx.field_format().format_fields(Writer::new(&mut line), event)?;
        let line = line.trim_end().replace('\r', "\\r").replace('\n', "\\n");
        writeln!(writer, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn journal_lines(emit: impl FnOnce()) -> Vec<String> {
        let cap = Capture::default();
        let w = cap.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .with_ansi(false)
            .event_format(JournalFormat)
            .with_writer(move || w.clone())
            .finish();
        tracing::subscriber::with_default(sub, emit);
        let bytes = cap.0.lock().expect("lock").clone();
        String::from_utf8(bytes).expect("utf-8").lines().map(str::to_string).collect()
    }

    #[test]
    fn each_level_gets_its_priority_and_nothing_else() {
        let lines = journal_lines(|| {
            tracing::error!(target: "oxcopyd::t", "disk on fire");
            tracing::warn!(target: "oxcopyd::t", lun = 3, "slow");
            tracing::info!(target: "oxcopyd::t", "listening on 127.0.0.1:3260");
            tracing::debug!(target: "oxcopyd::t", "detail");
            tracing::trace!(target: "oxcopyd::t", "finer");
        });
        assert_eq!(
            lines,
            [
                "<3>oxcopyd::t: disk on fire",
                "<4>oxcopyd::t: slow lun=3",
                "<6>oxcopyd::t: listening on 127.0.0.1:3260",
                "<7>oxcopyd::t: detail",
                "<7>oxcopyd::t: finer",
            ]
        );
    }

    #[test]
    fn one_line_per_event_with_spans_and_no_escapes() {
        let lines = journal_lines(|| {
            let span = tracing::info_span!("conn", peer = "10.0.0.1:5000");
            let _g = span.enter();
            tracing::warn!(target: "t", "first\nsecond");
        });
        assert_eq!(lines, [r#"<4>t: conn{peer="10.0.0.1:5000"}: first\nsecond"#]);
        assert!(!lines[0].contains('\x1b'));
    }

    #[test]
    fn choice_of_format() {
        use LogFormat::*;
        let js = Some("8:1234");
        let on = Some((8, 1234));
        assert_eq!(LogFormat::choose(None, None, None, None), Ok(Text));
        assert_eq!(LogFormat::choose(None, None, js, on), Ok(Journal));
        // JOURNAL_STREAM inherited, but stderr is elsewhere.
        assert_eq!(LogFormat::choose(None, None, js, Some((8, 99))), Ok(Text));
        assert_eq!(LogFormat::choose(None, None, Some("junk"), on), Ok(Text));
        assert_eq!(LogFormat::choose(None, Some("journal"), None, None), Ok(Journal));
        assert_eq!(LogFormat::choose(None, Some("text"), js, on), Ok(Text));
        assert_eq!(LogFormat::choose(Some(Text), Some("journal"), js, on), Ok(Text));
        assert_eq!(LogFormat::choose(Some(Journal), None, None, None), Ok(Journal));
        let e = LogFormat::choose(None, Some("json"), None, None).expect_err("bad value");
        assert!(e.contains(LOG_FORMAT_ENV) && e.contains("json"), "{e}");
    }
}
