//! The `crashwatch` binary: parses the command line, sets up crashwatch's
//! own logging and maps the outcome of the subcommand to an exit code.
//! Everything else is in the library (`src/lib.rs`).
#![deny(unsafe_code)]

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;

use crashwatch::logs::console::{LogWriter, Priority};
use crashwatch::{commands, config};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

fn main() {
    // Usage errors exit 2, --help and --version exit 0 (clap's convention);
    // so do mistakes in a --config file.
    let (cli, warnings) = config::file::parse(std::env::args_os().collect()).unwrap_or_else(|e| e.exit());
    init_logging();
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let code = match commands::dispatch(cli) {
        Ok(code) => code,
        Err(failure) => {
            tracing::error!("{:#}", failure.error);
            failure.code
        }
    };
    std::process::exit(code);
}

/// crashwatch's own log lines go to stderr as `crashwatch: …`, through the
/// console that keeps them from splitting a line of the child's (and gives
/// them journald priorities).
fn init_logging() {
    // Libraries' own warnings (minidump's about stream quirks) are noise to
    // an operator; CRASHWATCH_LOG shows them when asked.
    let filter = EnvFilter::try_from_env("CRASHWATCH_LOG").unwrap_or_else(|_| EnvFilter::new("error,crashwatch=info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(ByLevel).event_format(Prefixed).init();
}

/// A writer per event, carrying the event's priority.
struct ByLevel;

impl<'a> MakeWriter<'a> for ByLevel {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter::new(Priority::Info)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LogWriter {
        LogWriter::new(match *meta.level() {
            Level::ERROR => Priority::Error,
            Level::WARN => Priority::Warning,
            Level::INFO => Priority::Info,
            Level::DEBUG | Level::TRACE => Priority::Debug,
        })
    }
}

/// `warning: message key=value` (the console adds `crashwatch: `).
struct Prefixed;

impl<S, N> FormatEvent<S, N> for Prefixed
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "error: ",
            Level::WARN => "warning: ",
            Level::INFO => "",
            Level::DEBUG | Level::TRACE => "debug: ",
        };
        write!(writer, "{level}")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
