//! Cron monitors: the `check_in` items of a job run under `--monitor SLUG`.
//!
//! ```text
//! {"check_in_id": uuid, "monitor_slug": "nightly-backup",
//!  "status": in_progress | ok | error, "duration": seconds,
//!  "release": "…", "environment": "…",
//!  "monitor_config": {"schedule": {"type": "crontab", "value": "0 * * * *"}
//!                             or {"type": "interval", "value": 10, "unit": "minute"},
//!                     "checkin_margin": minutes, "max_runtime": minutes,
//!                     "timezone": "Europe/Vienna"},
//!  "contexts": {"trace": {"trace_id": …}}}
//! ```
//!
//! A run sends `in_progress` when the job starts and `ok` (exit 0) or
//! `error` (anything else) with its duration when it ends, both under one
//! `check_in_id`. With a `monitor_config` each check-in also creates or
//! updates the monitor. The trace id is the one the crash event of the run
//! carries, which is how Sentry links a failed check-in to its crash.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Relay truncates longer monitor slugs.
pub const MAX_SLUG_LENGTH: usize = 50;

/// A check-in's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    InProgress,
    Ok,
    Error,
}

/// A monitor's schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Schedule {
    /// A crontab line's five fields, or a nickname such as `@daily`.
    Crontab { value: String },
    /// Every `value` `unit`s.
    Interval { value: u64, unit: Unit },
}

/// The unit of an interval schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

const NICKNAMES: [&str; 7] = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];

impl Schedule {
    /// Parses `'0 * * * *'` (crontab), `@daily`, or `10m`, `2h`, `1d`,
    /// `1w`, `3 months`, `1y` (an interval).
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let s = s.trim();
        let fields: Vec<&str> = s.split_whitespace().collect();
        if fields.len() == 5 {
            let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '*' | ',' | '-' | '/');
            if let Some(bad) = fields.iter().find(|f| !f.chars().all(allowed)) {
                return Err(format!("'{bad}' is not a crontab field (digits, names, *, ',', '-', '/')"));
            }
            return Ok(Schedule::Crontab { value: fields.join(" ") });
        }
        if NICKNAMES.contains(&s) {
            return Ok(Schedule::Crontab { value: s.to_owned() });
        }
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let value: u64 = digits.parse().map_err(|_| not_a_schedule(s))?;
        let unit = match unit.trim().to_ascii_lowercase().as_str() {
            "m" | "min" | "mins" | "minute" | "minutes" => Unit::Minute,
            "h" | "hour" | "hours" => Unit::Hour,
            "d" | "day" | "days" => Unit::Day,
            "w" | "week" | "weeks" => Unit::Week,
            "month" | "months" => Unit::Month,
            "y" | "year" | "years" => Unit::Year,
            _ => return Err(not_a_schedule(s)),
        };
        if value == 0 {
            return Err(format!("'{s}' is no interval: it must be at least 1"));
        }
        Ok(Schedule::Interval { value, unit })
    }
}

fn not_a_schedule(s: &str) -> String {
    format!("'{s}' is not a schedule: use a crontab line ('0 * * * *'), @daily, or an interval (10m, 2h, 1d, 1w)")
}

/// `monitor_config`: what creates or updates the monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorConfig {
    pub schedule: Schedule,
    /// Minutes after the expected time before a check-in counts as missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkin_margin: Option<u64>,
    /// Minutes a run may stay in progress before it counts as failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_runtime: Option<u64>,
    /// The schedule's time zone (tz database name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// The trace context that links check-ins to the run's crash event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    pub trace_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contexts {
    pub trace: Trace,
}

/// One `check_in` item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckIn {
    pub check_in_id: String,
    pub monitor_slug: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_config: Option<MonitorConfig>,
    pub contexts: Contexts,
}

/// What every check-in of a `--monitor` says about the monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitor {
    pub slug: String,
    pub config: Option<MonitorConfig>,
    pub release: Option<String>,
    pub environment: Option<String>,
}

/// Checks a monitor slug as Sentry makes them: lowercase letters, digits,
/// `-` and `_`, at most [`MAX_SLUG_LENGTH`] characters.
pub fn parse_slug(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= MAX_SLUG_LENGTH
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("'{s}' is not a monitor slug: use 1 to {MAX_SLUG_LENGTH} lowercase letters, digits, '-' and '_'"))
    }
}

/// One job run's check-ins.
#[derive(Debug, Clone)]
pub struct Run {
    check_in_id: uuid::Uuid,
    trace_id: String,
}

impl Run {
    /// A new run, with its own check-in id and trace id.
    pub fn new() -> Run {
        Run { check_in_id: uuid::Uuid::new_v4(), trace_id: uuid::Uuid::new_v4().simple().to_string() }
    }

    /// The check-in id (32 hex digits).
    pub fn check_in_id(&self) -> String {
        self.check_in_id.simple().to_string()
    }

    /// The trace id the run's check-ins and crash event share.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// The check-in that says the job started.
    pub fn started(&self, monitor: &Monitor) -> CheckIn {
        self.check_in(monitor, Status::InProgress, None)
    }

    /// The check-in that says how the job ended, after `ran_for`.
    pub fn ended(&self, monitor: &Monitor, ok: bool, ran_for: Duration) -> CheckIn {
        self.check_in(monitor, if ok { Status::Ok } else { Status::Error }, Some(ran_for.as_secs_f64()))
    }

    fn check_in(&self, monitor: &Monitor, status: Status, duration: Option<f64>) -> CheckIn {
        CheckIn {
            check_in_id: self.check_in_id(),
            monitor_slug: monitor.slug.clone(),
            status,
            duration,
            release: monitor.release.clone(),
            environment: monitor.environment.clone(),
            monitor_config: monitor.config.clone(),
            contexts: Contexts { trace: Trace { trace_id: self.trace_id.clone() } },
        }
    }
}

impl Default for Run {
    fn default() -> Self {
        Run::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schedules_parse_into_sentrys_two_kinds() {
        assert_eq!(Schedule::parse("0 * * * *"), Ok(Schedule::Crontab { value: "0 * * * *".into() }));
        assert_eq!(Schedule::parse(" */5  1-3 * * mon "), Ok(Schedule::Crontab { value: "*/5 1-3 * * mon".into() }));
        assert_eq!(Schedule::parse("@daily"), Ok(Schedule::Crontab { value: "@daily".into() }));
        assert_eq!(Schedule::parse("10m"), Ok(Schedule::Interval { value: 10, unit: Unit::Minute }));
        assert_eq!(Schedule::parse("2 hours"), Ok(Schedule::Interval { value: 2, unit: Unit::Hour }));
        assert_eq!(Schedule::parse("3months"), Ok(Schedule::Interval { value: 3, unit: Unit::Month }));
        for bad in ["", "10", "0m", "10 parsecs", "* * * *", "0 * * * ; rm", "@sometimes"] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            serde_json::to_value(Schedule::parse("1w").unwrap()).unwrap(),
            json!({"type": "interval", "value": 1, "unit": "week"})
        );
    }

    #[test]
    fn slugs_are_sentrys() {
        assert_eq!(parse_slug("nightly-backup_2"), Ok("nightly-backup_2".into()));
        for bad in ["", "Nightly", "a b", "x/y", &"a".repeat(51)] {
            assert!(parse_slug(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_runs_check_ins_share_their_ids() {
        let monitor = Monitor {
            slug: "backup".into(),
            config: Some(MonitorConfig {
                schedule: Schedule::parse("0 3 * * *").unwrap(),
                checkin_margin: Some(5),
                max_runtime: Some(30),
                timezone: Some("Europe/Vienna".into()),
            }),
            release: None,
            environment: Some("prod".into()),
        };
        let run = Run::new();
        let started = serde_json::to_value(run.started(&monitor)).unwrap();
        let ended = serde_json::to_value(run.ended(&monitor, false, Duration::from_millis(2500))).unwrap();
        assert_eq!(
            ended,
            json!({
                "check_in_id": run.check_in_id(), "monitor_slug": "backup", "status": "error", "duration": 2.5,
                "environment": "prod",
                "monitor_config": {"schedule": {"type": "crontab", "value": "0 3 * * *"},
                                   "checkin_margin": 5, "max_runtime": 30, "timezone": "Europe/Vienna"},
                "contexts": {"trace": {"trace_id": run.trace_id()}}
            })
        );
        assert_eq!(started["status"], "in_progress");
        assert_eq!(started["check_in_id"], ended["check_in_id"]);
        assert!(started.get("duration").is_none());
    }
}
