//! Flags, environment and config file (merged by clap and [`file`], in that
//! order of precedence) → one validated [`RunConfig`]. Nothing downstream
//! reads the environment or argv itself.

pub mod file;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::RunArgs;
use crate::cli::{LogLevel, RetentionArgs, Share};
use crate::live::Level;
use crate::logs::RingLimits;
use crate::restart::Restart;
use crate::sentry::MinidumpProcessing;
use crate::sentry::check_in::{self, Monitor, MonitorConfig, Schedule};
use crate::spool::Spool;
use crate::spool::retention::{Limits, Size};

/// A single line longer than this is cut in a report.
const MAX_LINE_BYTES: usize = 16 << 10;

/// Everything `crashwatch run` needs to know.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub command: Vec<OsString>,
    pub spool_dir: PathBuf,
    pub ring: RingLimits,
    pub pty: bool,
    pub signal_group: bool,
    pub subreaper: bool,
    /// Trace the child to capture crashes as minidumps.
    pub ptrace: bool,
    pub follow_forks: bool,
    /// Put the child in a new memory cgroup with this limit, bytes.
    pub memory_limit: Option<u64>,
    /// `--oom-snapshot`: the share of the cgroup's limit, percent (1..=99),
    /// at which the live child is dumped once.
    pub oom_snapshot: Option<u8>,
    /// Send reports of plain non-zero exits too.
    pub report_exit_codes: bool,
    /// Secrets to remove from what is sent, beyond the built-in patterns.
    pub scrub: Vec<String>,
    /// Send minidumps with their reports, for Sentry to treat so.
    pub minidump_upload: Option<MinidumpProcessing>,
    pub dsn: Option<String>,
    /// How long to spend sending reports at the child's end.
    pub flush_timeout: std::time::Duration,
    /// Send reports from this process (`--delivery direct`); otherwise only
    /// queue them for `crashwatch send --watch`.
    pub send_directly: bool,
    /// Bound on the outbox.
    pub spool_max_bytes: Option<u64>,
    /// Bounds on the symbolication helper.
    pub symbolicate: HelperLimits,
    pub release: Option<String>,
    pub environment: Option<String>,
    /// Release Health sessions, unless `--no-sessions` (they need a release).
    pub sessions: bool,
    /// Runs an hour with sessions of their own.
    pub max_sessions_per_hour: u32,
    /// The cron monitor each run checks in with.
    pub monitor: Option<Monitor>,
    /// The child's environment.
    pub env: Vec<(OsString, OsString)>,
    /// `--health-url` and its settings.
    pub hang: crate::hang::Settings,
    /// `NOTIFY_SOCKET` and the watchdog, when systemd started crashwatch.
    pub systemd: Option<crate::hang::watchdog::Systemd>,
    pub restart: Restart,
    /// Repeats of a crash within this long of the first are counted, not sent.
    pub group_window: Duration,
    /// Reports and summaries sent per hour at most.
    pub max_reports_per_hour: Option<u32>,
    /// Report panics and exceptions the program survives.
    pub live_problems: bool,
    /// Lines at or above this level become events.
    pub events_from_logs: Option<Level>,
    /// Lines at or above this level are sent as Sentry logs.
    pub forward_logs: Option<Level>,
    /// Where to serve Prometheus metrics.
    pub metrics_addr: Option<String>,
    /// How much the spool keeps.
    pub retention: Limits,
}

/// Bounds on the helper process that symbolicates a crash's minidump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelperLimits {
    /// Killed after this long (`--symbolicate-timeout`); `None`: never.
    pub timeout: Option<Duration>,
    /// Its RLIMIT_DATA, bytes (`--symbolicate-memory`); `None`: none.
    pub memory: Option<u64>,
}

impl Default for HelperLimits {
    /// `--symbolicate-timeout` and `--symbolicate-memory`'s defaults: what a
    /// command without those options (a recovery by `send` or `list`) uses.
    fn default() -> HelperLimits {
        HelperLimits { timeout: Some(Duration::from_secs(30)), memory: Some(2 << 30) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--log-bytes must be at least 1K, got {0}")]
    LogBytesTooSmall(u64),
    #[error("--restart-max-delay ({max:?}) is shorter than --restart-delay ({initial:?})")]
    RestartDelays { initial: Duration, max: Duration },
    #[error("--metrics-addr '{0}' is not HOST:PORT (e.g. 127.0.0.1:9464, [::]:9464, localhost:0)")]
    MetricsAddr(String),
    #[error("--oom-snapshot writes a minidump, which --minidump off forbids; use --minidump local to keep it unsent")]
    SnapshotWithoutMinidumps,
    #[error("{0}")]
    Hang(String),
    #[error("--monitor: {0}")]
    MonitorSlug(String),
    #[error("--monitor-schedule: {0}")]
    MonitorSchedule(String),
    #[error("--monitor-timezone '{0}' is not a time zone name (e.g. UTC, Europe/Vienna, America/New_York)")]
    MonitorTimezone(String),
}

fn level(level: LogLevel) -> Level {
    match level {
        LogLevel::Debug => Level::Debug,
        LogLevel::Info => Level::Info,
        LogLevel::Warning => Level::Warning,
        LogLevel::Error => Level::Error,
        LogLevel::Critical => Level::Critical,
    }
}

impl RunConfig {
    pub fn new(args: RunArgs, spool_dir: Option<PathBuf>) -> Result<RunConfig, ConfigError> {
        if args.log_bytes < 1024 {
            return Err(ConfigError::LogBytesTooSmall(args.log_bytes));
        }
        if args.restart_max_delay < args.restart_delay {
            return Err(ConfigError::RestartDelays { initial: args.restart_delay, max: args.restart_max_delay });
        }
        if let Some(addr) = args.metrics_addr.as_deref().filter(|a| !a.is_empty())
            && !addr.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        {
            return Err(ConfigError::MetricsAddr(addr.to_owned()));
        }
        if args.oom_snapshot.is_some() && args.minidump == "off" {
            return Err(ConfigError::SnapshotWithoutMinidumps);
        }
        let monitor = monitor(&args)?;
        let hang = crate::hang::Settings::new(&args.hang).map_err(ConfigError::Hang)?;
        let max_bytes = usize::try_from(args.log_bytes).unwrap_or(usize::MAX);
        Ok(RunConfig {
            command: args.command,
            spool_dir: spool_dir.unwrap_or_else(Spool::default_root),
            ring: RingLimits {
                max_lines: args.log_lines as usize,
                max_bytes,
                max_line_bytes: MAX_LINE_BYTES.min(max_bytes),
            },
            pty: args.pty,
            signal_group: args.signal_group,
            subreaper: args.subreaper,
            ptrace: !args.no_ptrace && args.minidump != "off",
            follow_forks: args.follow_forks,
            memory_limit: args.memory_limit,
            oom_snapshot: args.oom_snapshot,
            report_exit_codes: args.report_exit_codes,
            scrub: args.scrub,
            minidump_upload: (args.minidump == "upload").then_some(match args.minidump_processing.as_str() {
                "server" => MinidumpProcessing::Server,
                _ => MinidumpProcessing::Host,
            }),
            dsn: args.dsn.filter(|d| !d.is_empty()),
            flush_timeout: std::time::Duration::from_secs(args.flush_timeout),
            send_directly: args.delivery == "direct" && args.flush_timeout > 0,
            spool_max_bytes: args.spool_max_bytes,
            symbolicate: HelperLimits {
                timeout: Some(args.symbolicate_timeout).filter(|t| !t.is_zero()),
                memory: Some(args.symbolicate_memory).filter(|b| *b > 0),
            },
            release: args.release.filter(|r| !r.is_empty()),
            environment: args.environment.filter(|e| !e.is_empty()),
            sessions: !args.no_sessions,
            max_sessions_per_hour: args.max_sessions_per_hour,
            monitor,
            env: child_env(std::env::vars_os(), args.rust_backtrace),
            hang,
            systemd: crate::hang::watchdog::Systemd::from_env(&std::env::vars_os().collect::<Vec<_>>()),
            restart: Restart {
                policy: args.restart,
                initial_delay: args.restart_delay,
                max_delay: args.restart_max_delay,
                healthy_after: args.healthy_after,
                max_restarts: args.max_restarts,
            },
            live_problems: !args.no_live_problems,
            events_from_logs: args.events_from_logs.map(level),
            forward_logs: args.forward_logs.map(level),
            group_window: args.group_window,
            max_reports_per_hour: Some(args.max_reports_per_hour).filter(|n| *n > 0),
            metrics_addr: args.metrics_addr.filter(|a| !a.is_empty()),
            retention: retention(&args.retention),
        })
    }
}

/// `--monitor` and its `--monitor-*` settings.
fn monitor(args: &RunArgs) -> Result<Option<Monitor>, ConfigError> {
    let Some(slug) = args.monitor.as_deref().filter(|s| !s.is_empty()) else { return Ok(None) };
    let slug = check_in::parse_slug(slug).map_err(ConfigError::MonitorSlug)?;
    let config = match args.monitor_schedule.as_deref() {
        Some(schedule) => Some(MonitorConfig {
            schedule: Schedule::parse(schedule).map_err(ConfigError::MonitorSchedule)?,
            checkin_margin: args.monitor_checkin_margin,
            max_runtime: args.monitor_max_runtime,
            timezone: match args.monitor_timezone.as_deref() {
                // tz database names: Region/City, UTC, Etc/GMT+5.
                Some(tz)
                    if tz.is_empty()
                        || !tz.chars().all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c))
                        || tz.starts_with('/') =>
                {
                    return Err(ConfigError::MonitorTimezone(tz.to_owned()));
                }
                tz => tz.map(str::to_owned),
            },
        }),
        None => None,
    };
    Ok(Some(Monitor {
        slug,
        config,
        release: args.release.clone().filter(|r| !r.is_empty()),
        environment: args.environment.clone().filter(|e| !e.is_empty()),
    }))
}

/// The spool's retention limits from `--spool-max-use`, `--spool-keep-free`
/// and `--spool-max-age` (`0`: no age limit).
pub fn retention(args: &RetentionArgs) -> Limits {
    let size = |share: Share| match share {
        Share::Bytes(n) => Size::Bytes(n),
        Share::Percent(p) => Size::Percent(p),
    };
    Limits {
        max_use: args.spool_max_use.map(size),
        keep_free: args.spool_keep_free.map(size),
        max_age: args.spool_max_age.map(|age| if age.is_zero() { Duration::MAX } else { age }),
    }
}

/// The child's environment: ours, plus `PYTHONUNBUFFERED=1` unless the user
/// chose otherwise, so that a Python program's last lines are not lost in
/// its buffer when it dies; and `RUST_BACKTRACE=1` if asked for and unset.
fn child_env(ours: impl Iterator<Item = (OsString, OsString)>, rust_backtrace: bool) -> Vec<(OsString, OsString)> {
    let mut env: Vec<_> = ours.collect();
    let mut default = |key: &str, value: &str| {
        if !env.iter().any(|(k, _)| k == key) {
            env.push((key.into(), value.into()));
        }
    };
    default("PYTHONUNBUFFERED", "1");
    if rust_backtrace {
        default("RUST_BACKTRACE", "1");
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<RunConfig, ConfigError> {
        use clap::Parser;
        let argv = ["crashwatch", "run"].iter().chain(args).chain(&["--", "prog"]);
        let crate::cli::Command::Run(run) = crate::cli::Cli::try_parse_from(argv).unwrap().command else {
            panic!("not run")
        };
        RunConfig::new(*run, Some("/tmp".into()))
    }

    #[test]
    fn contradictions_are_usage_errors() {
        for addr in ["nonsense", ":80", "host:99999"] {
            let e = config(&["--metrics-addr", addr]).unwrap_err();
            assert!(e.to_string().contains("is not HOST:PORT"), "{addr}: {e}");
        }
        assert!(config(&["--metrics-addr", "[::1]:9464"]).is_ok());
        let e = config(&["--restart-delay", "2m", "--restart-max-delay", "1m"]).unwrap_err();
        assert!(e.to_string().contains("shorter than --restart-delay"), "{e}");
    }

    #[test]
    fn the_minidump_goes_as_an_attachment_unless_sentry_is_to_process_it() {
        assert_eq!(config(&[]).unwrap().minidump_upload, Some(MinidumpProcessing::Host));
        let server = config(&["--minidump-processing", "server"]).unwrap();
        assert_eq!(server.minidump_upload, Some(MinidumpProcessing::Server));
        assert_eq!(config(&["--minidump", "local"]).unwrap().minidump_upload, None);
    }

    #[test]
    fn a_monitor_is_checked_and_carries_its_schedule() {
        assert_eq!(config(&[]).unwrap().monitor, None);
        let monitor = config(&[
            "--monitor",
            "nightly",
            "--monitor-schedule",
            "30 3 * * *",
            "--monitor-max-runtime",
            "1h",
            "--monitor-timezone",
            "Europe/Vienna",
            "--environment",
            "prod",
        ])
        .unwrap()
        .monitor
        .unwrap();
        assert_eq!(monitor.slug, "nightly");
        assert_eq!(monitor.environment.as_deref(), Some("prod"));
        let config_of = monitor.config.unwrap();
        assert_eq!(config_of.schedule, Schedule::Crontab { value: "30 3 * * *".into() });
        assert_eq!((config_of.max_runtime, config_of.checkin_margin), (Some(60), None));
        assert_eq!(config_of.timezone.as_deref(), Some("Europe/Vienna"));
        let e = config(&["--monitor", "Nightly Backup"]).unwrap_err();
        assert!(e.to_string().contains("not a monitor slug"), "{e}");
        let e = config(&["--monitor", "x", "--monitor-schedule", "often"]).unwrap_err();
        assert!(e.to_string().contains("not a schedule"), "{e}");
        let e = config(&["--monitor", "x", "--monitor-schedule", "1h", "--monitor-timezone", "../etc"]).unwrap_err();
        assert!(e.to_string().contains("not a time zone"), "{e}");
    }

    #[test]
    fn python_is_unbuffered_unless_the_user_says_otherwise() {
        let env = child_env([("PATH".into(), "/bin".into())].into_iter(), false);
        assert!(env.contains(&("PYTHONUNBUFFERED".into(), "1".into())));
        assert!(!env.iter().any(|(k, _)| k == "RUST_BACKTRACE"));
        let env = child_env([("PYTHONUNBUFFERED".into(), "".into())].into_iter(), false);
        assert_eq!(env, [("PYTHONUNBUFFERED".into(), "".into())]);
        let env = child_env([("RUST_BACKTRACE".into(), "full".into())].into_iter(), true);
        assert!(env.contains(&("RUST_BACKTRACE".into(), "full".into())));
        let env = child_env(std::iter::empty(), true);
        assert!(env.contains(&("RUST_BACKTRACE".into(), "1".into())));
    }
}
