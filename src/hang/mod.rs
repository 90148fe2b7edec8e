//! Hangs: a program that still runs but no longer works. No signal says
//! so, so crashwatch looks from outside, in two ways:
//!
//! - [`health`]: `--health-url URL`, an HTTP GET every interval (the check
//!   Kubernetes liveness probes and uptime monitors do); N failures in a
//!   row are a hang;
//! - [`watchdog`]: under systemd with `WatchdogSec=`, crashwatch is the
//!   service's main process and proxies `NOTIFY_SOCKET` for the child, so
//!   it sees the child's `WATCHDOG=1` pings pass; when they stop for
//!   [`watchdog::CAPTURE_AT`] of the interval, that is a hang, caught
//!   before systemd's own timeout (and its SIGABRT) lands.
//!
//! This module only detects: each check runs on a thread of its own and
//! hands a [`Detected`] to the run's callback, once per hang. A check that
//! passes again ends the hang; the next failure streak is a new one. What
//! a hang leads to (a snapshot of the live child's stacks, a `hang` event,
//! the restart policy) is `commands::hang`.

pub mod health;
pub mod watchdog;

use std::time::{Duration, SystemTime};

/// The hang checks of `crashwatch run`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub health: Option<health::HealthCheck>,
}

impl Settings {
    /// From the `--health-*` options; `Err` is a usage error naming the
    /// option.
    pub fn new(args: &crate::cli::HangArgs) -> Result<Settings, String> {
        let Some(url) = &args.health_url else { return Ok(Settings::default()) };
        let check = health::HealthCheck {
            url: health::parse_url(url)?,
            interval: positive("--health-interval", args.health_interval)?,
            timeout: positive("--health-timeout", args.health_timeout)?,
            failures: match args.health_failures {
                0 => return Err("--health-failures must be at least 1".into()),
                n => n,
            },
            start_period: args.health_start_period.unwrap_or(args.health_interval),
        };
        Ok(Settings { health: Some(check) })
    }
}

fn positive(option: &str, d: Duration) -> Result<Duration, String> {
    if d.is_zero() { Err(format!("{option} must be longer than 0")) } else { Ok(d) }
}

/// Which check found the hang, with what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// `--health-url`.
    Health {
        url: String,
        /// Failures in a row (the configured N).
        failures: u32,
        /// What the last check got: `connection refused`, `timed out after
        /// 5s`, `HTTP 503`.
        last_error: String,
    },
    /// The systemd watchdog.
    Watchdog {
        /// `WatchdogSec=` as `WATCHDOG_USEC` told it (or the child's latest
        /// `WATCHDOG_USEC=` change).
        interval: Duration,
        /// How many pings the child had sent in this run.
        pings: u64,
    },
}

impl Check {
    /// The check's name in tags and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Check::Health { .. } => "health-url",
            Check::Watchdog { .. } => "watchdog",
        }
    }
}

/// A hang, as the check that found it saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub check: Check,
    /// When the program was last seen working: the last healthy check or
    /// ping (its start, if it never was).
    pub since: SystemTime,
    /// When the check gave up on it.
    pub at: SystemTime,
}

impl Detected {
    /// How long the program had not worked when the hang was declared.
    pub fn hung_for(&self) -> Duration {
        self.at.duration_since(self.since).unwrap_or_default()
    }

    /// One line for people: what failed, for how long.
    pub fn headline(&self) -> String {
        let secs = humantime::format_duration(Duration::from_millis(self.hung_for().as_millis() as u64));
        match &self.check {
            Check::Health { url, failures, last_error } => {
                format!("{url} failed {failures} health checks in a row for {secs} (last: {last_error})")
            }
            Check::Watchdog { interval, .. } => format!(
                "no systemd watchdog ping (WATCHDOG=1) for {secs}; WatchdogSec={}",
                humantime::format_duration(*interval)
            ),
        }
    }
}

/// Where a check hands its hangs: called on the check's thread, once per
/// hang; must not block for long.
pub type OnHang = std::sync::Arc<dyn Fn(Detected) + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: Option<&str>) -> crate::cli::HangArgs {
        crate::cli::HangArgs {
            health_url: url.map(str::to_owned),
            health_interval: Duration::from_secs(10),
            health_timeout: Duration::from_secs(5),
            health_failures: 3,
            health_start_period: None,
        }
    }

    #[test]
    fn no_url_no_check_and_bad_values_name_their_option() {
        assert_eq!(Settings::new(&args(None)), Ok(Settings::default()));
        let check = Settings::new(&args(Some("http://127.0.0.1:8080/healthz"))).unwrap().health.unwrap();
        assert_eq!(check.start_period, Duration::from_secs(10));
        let mut bad = args(Some("http://x/"));
        bad.health_failures = 0;
        assert!(Settings::new(&bad).unwrap_err().contains("--health-failures"));
        let mut bad = args(Some("http://x/"));
        bad.health_interval = Duration::ZERO;
        assert!(Settings::new(&bad).unwrap_err().contains("--health-interval"));
        assert!(Settings::new(&args(Some("ftp://x/"))).unwrap_err().contains("--health-url"));
        assert!(Settings::new(&args(Some("not a url"))).unwrap_err().contains("--health-url"));
    }

    #[test]
    fn the_headline_says_what_failed_for_how_long() {
        let since = SystemTime::UNIX_EPOCH;
        let d = Detected {
            check: Check::Health { url: "http://h/".into(), failures: 3, last_error: "HTTP 503".into() },
            since,
            at: since + Duration::from_secs(30),
        };
        assert_eq!(d.headline(), "http://h/ failed 3 health checks in a row for 30s (last: HTTP 503)");
    }
}
