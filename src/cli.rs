//! The command line, as clap definitions only; [`crate::config`] turns it
//! into validated settings.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::restart::Policy;

mod hang;
mod values;

pub use hang::HangArgs;
use values::parse_level;
pub use values::{LogLevel, Share, parse_bytes, parse_duration, parse_minutes, parse_percent, parse_share};

pub const EXIT_CODES: &str = "\
Exit codes of `crashwatch run`:
  the child's own code    when it exits
  128+N                   when signal N kills it (139 for SIGSEGV)
  125                     crashwatch itself failed before the child ran
  126                     PROGRAM exists but cannot be executed
  127                     PROGRAM was not found
  2                       the command line (or the --config file) is wrong
With --restart, the code of the last run.
Other commands exit 0 on success, 1 on failure, 2 for a wrong command line;
`send` exits 1 when reports still wait and 3 when it set reports aside in
the outbox's rejected/ (Relay refused them, or their file was corrupt).

Environment: CRASHWATCH_LOG sets crashwatch's own log level (error, warn,
info, debug, trace; default info). Every option names its variable.";

#[derive(Debug, Parser)]
#[command(
    name = "crashwatch",
    version,
    about = "Out-of-process crash supervisor: runs a program, keeps its last output, and reports how it died",
    after_long_help = EXIT_CODES,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Where reports are kept [default: /var/lib/crashwatch as root, else
    /// $XDG_STATE_HOME/crashwatch or ~/.local/state/crashwatch]
    #[arg(long, global = true, env = "CRASHWATCH_SPOOL_DIR", value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,

    /// A TOML file of settings: any long option of the command, without
    /// its dashes (`log-lines = 500`, `dsn = "…"`); options given on the
    /// command line or in the environment take precedence
    #[arg(long, global = true, env = "CRASHWATCH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

// Parsed once per process: the size of `run`'s variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run PROGRAM under supervision: pass its output through, forward
    /// signals to it, and keep a report when it ends abnormally
    Run(Box<RunArgs>),
    /// List the reports in the spool, newest first
    List(ListArgs),
    /// Print one report (the newest without ID)
    Show(ShowArgs),
    /// Check that crashwatch can do its job here: trace a child, keep and
    /// send reports, limit memory; exit 1 if anything failed
    Doctor(DoctorArgs),
    /// Deliver the reports waiting in the spool to Sentry (`--watch`: keep
    /// doing so as a service); exit 1 if some still wait, 3 if some were
    /// set aside for good
    Send(SendArgs),
    /// Send a test event to the DSN and report Relay's answer
    Test(TestArgs),
    /// Print a minidump's stacks, symbolicated from the binaries and debug
    /// files on this machine (exit 1 for an unusable dump)
    Symbolicate(SymbolicateArgs),

    // A report's minidump, handled as coredumpctl handles a core, and the
    // generated documentation of the package.
    /// Open a report's minidump in lldb (the newest report's without ID);
    /// exit 127 when the debugger is not installed
    Debug(DebugArgs),
    /// Copy a report's minidump (the newest report's without ID) to a file
    /// or to stdout
    Dump(DumpArgs),
    /// Write the man pages and shell completions generated from these
    /// definitions (used to build the package)
    #[command(hide = true)]
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Keep at most N of the child's last output lines for a report
    #[arg(long, value_name = "N", env = "CRASHWATCH_LOG_LINES", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub log_lines: u32,

    /// Keep at most this many bytes of the child's last output (suffixes
    /// K, M, G for KiB, MiB, GiB); longer lines are cut in the report, never
    /// in the pass-through
    #[arg(long, value_name = "BYTES", env = "CRASHWATCH_LOG_BYTES", default_value = "256K", value_parser = parse_bytes)]
    pub log_bytes: u64,

    /// Give the child a pseudo-terminal as stdout, so that C stdio
    /// line-buffers it and no line is lost in a buffer when it dies (the
    /// child then sees a terminal: some programs add colours)
    #[arg(long, env = "CRASHWATCH_PTY")]
    pub pty: bool,

    /// Forward signals to the child's whole process group instead of the
    /// child alone
    #[arg(long, env = "CRASHWATCH_SIGNAL_GROUP")]
    pub signal_group: bool,

    /// Adopt and reap orphaned descendants of the child
    /// (PR_SET_CHILD_SUBREAPER); implied when crashwatch is PID 1
    #[arg(long, env = "CRASHWATCH_SUBREAPER")]
    pub subreaper: bool,

    /// Do not trace the child: no minidumps, only exit statuses and logs
    /// (for hosts where ptrace is forbidden; `crashwatch doctor` tells)
    #[arg(long, env = "CRASHWATCH_NO_PTRACE")]
    pub no_ptrace: bool,

    /// Also capture crashes of the processes the child forks
    #[arg(long, env = "CRASHWATCH_FOLLOW_FORKS", conflicts_with = "no_ptrace")]
    pub follow_forks: bool,

    /// Run the child in a new memory cgroup with this limit (K, M, G
    /// suffixes), removed afterwards; its OOM kill is then reported with the
    /// limit and the peak
    #[arg(long, value_name = "BYTES", env = "CRASHWATCH_MEMORY_LIMIT", value_parser = parse_bytes)]
    pub memory_limit: Option<u64>,

    /// When the child's memory (its cgroup's usage less inactive page cache)
    /// first reaches PERCENT (1 to 99) of its cgroup's limit, write a
    /// minidump of the running child, which goes on running; if it then dies
    /// of an OOM kill, the report carries the stacks of that moment (else
    /// the dump is deleted). Needs a limit: --memory-limit, or a cgroup with
    /// one; without, crashwatch warns and runs the child without it
    #[arg(long, value_name = "PERCENT", env = "CRASHWATCH_OOM_SNAPSHOT", value_parser = parse_percent,
          conflicts_with = "no_ptrace")]
    pub oom_snapshot: Option<u8>,

    /// Set RUST_BACKTRACE=1 for the child (unless it is set), so a Rust
    /// panic's report has its frames
    #[arg(long, env = "CRASHWATCH_RUST_BACKTRACE")]
    pub rust_backtrace: bool,

    /// Also send reports of a plain non-zero exit (no signal, no OOM, no
    /// recognised panic) to Sentry; they are always kept locally
    #[arg(long, env = "CRASHWATCH_REPORT_EXIT_CODES")]
    pub report_exit_codes: bool,

    /// Sentry DSN that reports are sent to (without one, reports stay in the spool)
    #[arg(long, value_name = "DSN", env = "SENTRY_DSN", hide_env_values = true)]
    pub dsn: Option<String>,

    /// How reports leave: `direct` sends them from this crashwatch (at the
    /// child's end, within --flush-timeout; a restart waits for it), `spool`
    /// only queues them durably in the spool's outbox and exits at once, for
    /// a `crashwatch send --watch` service to deliver
    #[arg(long, value_name = "MODE", env = "CRASHWATCH_DELIVERY", default_value = "direct",
          value_parser = ["direct", "spool"])]
    pub delivery: String,

    /// Seconds to spend sending reports when the child has ended; what is
    /// not sent by then stays in the spool (the default fits the 10 s a
    /// container gets between SIGTERM and SIGKILL; `0` sends nothing, as
    /// --delivery spool)
    #[arg(long, value_name = "SECS", env = "CRASHWATCH_FLUSH_TIMEOUT", default_value_t = 8)]
    pub flush_timeout: u64,

    /// Kill the symbolication of a crash's minidump after this long (`0`:
    /// never); the report is then filed and sent with its dump but without
    /// symbolicated stacks, and says why
    #[arg(long, value_name = "DURATION", env = "CRASHWATCH_SYMBOLICATE_TIMEOUT", default_value = "30s",
          value_parser = parse_duration)]
    pub symbolicate_timeout: Duration,

    /// Limit the private memory of a crash's symbolication (heap and
    /// stacks, not the binaries it maps; K, M, G suffixes; `0`: no limit);
    /// past it, the report is filed without symbolicated stacks
    #[arg(long, value_name = "BYTES", env = "CRASHWATCH_SYMBOLICATE_MEMORY", default_value = "2G",
          value_parser = parse_bytes)]
    pub symbolicate_memory: u64,

    /// Bound on the reports waiting to be sent; the oldest are dropped first
    /// (K, M, G suffixes)
    #[arg(long, value_name = "BYTES", env = "CRASHWATCH_SPOOL_MAX_BYTES", value_parser = parse_bytes)]
    pub spool_max_bytes: Option<u64>,

    /// A regular expression for secrets to remove from what is sent (a
    /// `secret` group limits the removal to that part); repeatable, added to
    /// the built-in patterns for passwords, tokens, keys and auth headers
    #[arg(long, value_name = "REGEX")]
    pub scrub: Vec<String>,

    /// What to do with minidumps: `upload` them with the report, keep them
    /// `local` to the spool only, or `off` (no tracing: statuses and logs only)
    #[arg(long, value_name = "MODE", env = "CRASHWATCH_MINIDUMP", default_value = "upload",
          value_parser = ["upload", "local", "off"])]
    pub minidump: String,

    /// How Sentry treats an uploaded minidump: `host` sends it as a plain
    /// attachment beside the event, whose stacks crashwatch symbolicated on
    /// this host and Sentry keeps; `server` sends it for Sentry to walk
    /// again with the debug files uploaded to it, which replaces the
    /// event's stacks and exception
    #[arg(long, value_name = "WHERE", env = "CRASHWATCH_MINIDUMP_PROCESSING", default_value = "host",
          value_parser = ["host", "server"])]
    pub minidump_processing: String,

    /// Run PROGRAM again when it ends: `never` (systemd and orchestrators
    /// restart services themselves), `on-failure` (after a crash, an OOM
    /// kill, a non-zero exit or a hang), `on-hang` (only after a hang, which
    /// crashwatch ends: SIGTERM, then SIGKILL 10 s later) or `always` (after
    /// any end but an orderly stop)
    #[arg(long, value_name = "POLICY", env = "CRASHWATCH_RESTART", default_value = "never",
          value_parser = Policy::parse)]
    pub restart: Policy,

    /// Delay before the first restart after a quick failure, doubled for
    /// each further one (`500ms`, `2s`, `1m`; a bare number is seconds)
    #[arg(long, value_name = "DURATION", env = "CRASHWATCH_RESTART_DELAY", default_value = "1s",
          value_parser = parse_duration)]
    pub restart_delay: Duration,

    /// Longest delay between restarts
    #[arg(long, value_name = "DURATION", env = "CRASHWATCH_RESTART_MAX_DELAY", default_value = "1m",
          value_parser = parse_duration)]
    pub restart_max_delay: Duration,

    /// A run at least this long was healthy: the restart delay and the
    /// restart count start over after it
    #[arg(long, value_name = "DURATION", env = "CRASHWATCH_HEALTHY_AFTER", default_value = "1m",
          value_parser = parse_duration)]
    pub healthy_after: Duration,

    /// Give up after N restarts without a healthy run between them, and exit
    /// with the last status [default: never give up]
    #[arg(long, value_name = "N", env = "CRASHWATCH_MAX_RESTARTS")]
    pub max_restarts: Option<u32>,

    /// Repeats of a crash (same program, kind and top frames) within this
    /// long of the first one sent are kept locally and counted; the count is
    /// sent as one summary when the window ends or the restart loop gives
    /// up (`0` sends every report)
    #[arg(long, value_name = "DURATION", env = "CRASHWATCH_GROUP_WINDOW", default_value = "1h",
          value_parser = parse_duration)]
    pub group_window: Duration,

    /// Send at most N reports and summaries per hour from this spool (this
    /// host); the rest are kept locally (`0`: no limit)
    #[arg(long, value_name = "N", env = "CRASHWATCH_MAX_REPORTS_PER_HOUR", default_value_t = 60)]
    pub max_reports_per_hour: u32,

    /// Serve Prometheus metrics at http://HOST:PORT/metrics: crashes by
    /// kind, restarts, reports pending, sent and failed, the last crash's
    /// time, whether the child is up
    #[arg(long, value_name = "HOST:PORT", env = "CRASHWATCH_METRICS_ADDR")]
    pub metrics_addr: Option<String>,

    /// Do not report panics and uncaught exceptions the program survives (a
    /// worker thread's panic, Python's `Exception in thread`, Java's on a
    /// thread other than main, Go's `http: panic serving`, Node's unhandled
    /// rejection warnings, sanitizer reports that do not halt): by default
    /// each is sent at once as an error event, with its frames
    #[arg(long, env = "CRASHWATCH_NO_LIVE_PROBLEMS")]
    pub no_live_problems: bool,

    /// Send lines of the program's logs at or above LEVEL (error, critical)
    /// as error events: JSON lines (level/severity/lvl), logfmt
    /// (level=error), syslog `<N>` prefixes, `ERROR`/`CRITICAL` words. One
    /// event per signature (message without its numbers), the repeats
    /// counted under the --group-window and --max-reports-per-hour budget
    #[arg(long, value_name = "LEVEL", env = "CRASHWATCH_EVENTS_FROM_LOGS", value_parser = parse_level)]
    pub events_from_logs: Option<crate::cli::LogLevel>,

    /// Send the program's lines at or above LEVEL (debug, info, warning,
    /// error, critical; a line without a level is info) to Sentry as
    /// structured logs, in batches of up to 100 or once a second, scrubbed;
    /// never slows the program (a full queue drops lines, counted)
    #[arg(long, value_name = "LEVEL", env = "CRASHWATCH_FORWARD_LOGS", value_parser = parse_level)]
    pub forward_logs: Option<crate::cli::LogLevel>,

    #[command(flatten)]
    pub hang: HangArgs,

    /// Release recorded in reports; with a DSN, each run of PROGRAM is
    /// also a Release Health session of this release
    #[arg(long, value_name = "NAME", env = "SENTRY_RELEASE")]
    pub release: Option<String>,

    /// Send no Release Health sessions (sent by default when a release is
    /// known: a start update and how each run ended)
    #[arg(long, env = "CRASHWATCH_NO_SESSIONS")]
    pub no_sessions: bool,

    /// Sessions of their own for at most N runs an hour on this spool (this
    /// host); the runs of a crash loop beyond are sent as per-minute counts
    #[arg(long, value_name = "N", env = "CRASHWATCH_MAX_SESSIONS_PER_HOUR", default_value_t = 30)]
    pub max_sessions_per_hour: u32,

    /// Report each run of PROGRAM to this Sentry cron monitor: a check-in
    /// `in_progress` when it starts, `ok` (exit 0) or `error` when it ends;
    /// PROGRAM runs whatever Sentry does
    #[arg(long, value_name = "SLUG", env = "CRASHWATCH_MONITOR")]
    pub monitor: Option<String>,

    /// Create or update the monitor with this schedule: a crontab line
    /// ('0 * * * *'), @daily, or an interval (10m, 2h, 1d, 1w)
    #[arg(long, value_name = "SCHEDULE", env = "CRASHWATCH_MONITOR_SCHEDULE", requires = "monitor")]
    pub monitor_schedule: Option<String>,

    /// With --monitor-schedule: how late a run may start before it counts
    /// as missed (minutes, or 5m, 1h)
    #[arg(long, value_name = "MINUTES", env = "CRASHWATCH_MONITOR_CHECKIN_MARGIN",
          requires = "monitor_schedule", value_parser = parse_minutes)]
    pub monitor_checkin_margin: Option<u64>,

    /// With --monitor-schedule: how long a run may take before it counts as
    /// failed (minutes, or 30m, 2h)
    #[arg(long, value_name = "MINUTES", env = "CRASHWATCH_MONITOR_MAX_RUNTIME",
          requires = "monitor_schedule", value_parser = parse_minutes)]
    pub monitor_max_runtime: Option<u64>,

    /// With --monitor-schedule: the time zone of the schedule (a tz
    /// database name such as Europe/Vienna; Sentry's default is UTC)
    #[arg(long, value_name = "TZ", env = "CRASHWATCH_MONITOR_TIMEZONE", requires = "monitor_schedule")]
    pub monitor_timezone: Option<String>,

    /// Environment recorded in reports (production, staging…)
    #[arg(long, value_name = "NAME", env = "SENTRY_ENVIRONMENT")]
    pub environment: Option<String>,

    // Boxed: `Command`'s variants stay of a size.
    #[command(flatten)]
    pub retention: Box<RetentionArgs>,

    /// The program to supervise and its arguments: everything from PROGRAM
    /// on is the program's own (`run ls -la`). crashwatch's options come
    /// before it; `--` ends them (needed for a PROGRAM starting with `-`)
    // Not `allow_hyphen_values`: with it, a mistyped option before the
    // program (`--signal-grup prog`) was taken as the program to run.
    #[arg(value_name = "PROGRAM", required = true, num_args = 1.., trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// One JSON object per line instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Sentry DSN to send to
    #[arg(long, value_name = "DSN", env = "SENTRY_DSN", hide_env_values = true)]
    pub dsn: Option<String>,

    /// Give up after this many seconds; what is not sent by then stays in
    /// the spool
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,

    /// Also print what became of the reports as one JSON object on stdout
    #[arg(long)]
    pub json: bool,

    /// Keep running as a delivery service: send each report as soon as it
    /// is queued (inotify on the outbox), retry with backoff, honour Relay's
    /// rate limits; exit 0 on SIGTERM or SIGINT, leaving what is not sent
    /// in the outbox. Beside servers run with `--delivery spool`
    #[arg(long, conflicts_with = "json")]
    pub watch: bool,
    #[command(flatten)]
    pub retention: RetentionArgs,
}

/// How much the spool keeps (`run` prunes after each report, `send` after
/// sending, `doctor` shows the limits).
#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// Delete the oldest reports once the spool's reports use more than
    /// SIZE (K, M, G suffixes, or a percentage of its file system); a report
    /// waiting to be sent and the newest of each kind of crash are kept
    /// [default: 10% of the file system, at most 4G]
    #[arg(long, value_name = "SIZE", env = "CRASHWATCH_SPOOL_MAX_USE", value_parser = parse_share)]
    pub spool_max_use: Option<Share>,

    /// Delete the oldest reports (as --spool-max-use does) while the spool's
    /// file system has less than SIZE free [default: 15% of the file
    /// system, at most 4G]
    #[arg(long, value_name = "SIZE", env = "CRASHWATCH_SPOOL_KEEP_FREE", value_parser = parse_share)]
    pub spool_keep_free: Option<Share>,

    /// Delete reports older than this, except one waiting to be sent (`0`:
    /// no age limit) [default: 30d]
    #[arg(long, value_name = "DURATION", env = "CRASHWATCH_SPOOL_MAX_AGE", value_parser = parse_duration)]
    pub spool_max_age: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct SymbolicateArgs {
    /// A minidump file, or the id of a report in the spool (enough of its
    /// start to be unique) [default: the newest report's minidump]
    #[arg(value_name = "DUMP|ID")]
    pub dump: Option<OsString>,

    /// Print the stacks as JSON
    #[arg(long)]
    pub json: bool,

    /// A Breakpad symbol directory (DIR/MODULE/DEBUGID/MODULE.sym); repeatable
    #[arg(long, value_name = "DIR")]
    pub symbols: Vec<PathBuf>,

    /// A Breakpad symbol server (same layout under the URL); repeatable
    #[arg(long, value_name = "URL")]
    pub symbol_url: Vec<String>,

    /// Keep .sym files downloaded from symbol servers here
    #[arg(long, value_name = "DIR")]
    pub symbol_cache: Option<PathBuf>,

    /// A directory holding .build-id/xx/rest.debug files, searched before
    /// /usr/lib/debug; repeatable
    #[arg(long, value_name = "DIR")]
    pub debug_dir: Vec<PathBuf>,

    /// Use COPY for the module recorded as RECORDED (a binary replaced on
    /// disk since the crash); its build-id is checked. Two arguments, so
    /// that either path may hold any byte, `=` included; repeatable
    #[arg(long, value_names = ["RECORDED", "COPY"], num_args = 2, requires = "dump")]
    pub replace: Vec<PathBuf>,

    /// Limit symbolication's private memory (heap and stacks, not the files
    /// it maps) to BYTES (K, M, G suffixes); past it, it fails
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub max_memory: Option<u64>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Also check this DSN: valid, and its Relay reachable
    #[arg(long, value_name = "DSN", env = "SENTRY_DSN", hide_env_values = true)]
    pub dsn: Option<String>,

    /// The release `crashwatch run` would report: with a DSN, doctor says
    /// whether runs are sent as Release Health sessions
    #[arg(long, value_name = "NAME", env = "SENTRY_RELEASE")]
    pub release: Option<String>,

    /// As `crashwatch run --no-sessions`
    #[arg(long, env = "CRASHWATCH_NO_SESSIONS")]
    pub no_sessions: bool,

    /// Also check that this program (a path, or a name in PATH) has debug
    /// information, so that its crashes get function names and lines
    #[arg(value_name = "PROGRAM")]
    pub program: Option<std::ffi::OsString>,

    #[command(flatten)]
    pub retention: RetentionArgs,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Sentry DSN to test
    #[arg(long, value_name = "DSN", env = "SENTRY_DSN", hide_env_values = true)]
    pub dsn: Option<String>,

    /// Give up after this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The report's id, or enough of its start to be unique [default: the newest]
    pub id: Option<String>,

    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

// The coredumpctl-like verbs and the generated documentation.

#[derive(Debug, Args)]
pub struct DebugArgs {
    /// The report's id, or enough of its start to be unique [default: the newest]
    pub id: Option<String>,

    /// The debugger to start as `DEBUGGER EXE --core DUMP`
    #[arg(long, value_name = "PATH", env = "CRASHWATCH_DEBUGGER", default_value = "lldb")]
    pub debugger: OsString,

    /// More arguments for the debugger, after `--` (`-- --batch -o bt`)
    #[arg(last = true, value_name = "DEBUGGER_ARGS")]
    pub debugger_args: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The report's id, or enough of its start to be unique [default: the newest]
    pub id: Option<String>,

    /// Write the minidump to FILE (created 0600) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct GenerateArgs {
    /// Write crashwatch.1 and a page per subcommand (crashwatch-run.1, …)
    /// to this directory
    #[arg(long, value_name = "DIR")]
    pub man: Option<PathBuf>,

    /// Write the completions for bash (crashwatch.bash), zsh (_crashwatch)
    /// and fish (crashwatch.fish) to this directory
    #[arg(long, value_name = "DIR")]
    pub completions: Option<PathBuf>,
}

#[cfg(test)]
mod tests;
