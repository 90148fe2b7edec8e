//! What a real Relay 26.9 does with `session`, `sessions` and `check_in`
//! items after it has answered 200: it parses and checks them on its own
//! time and drops, without telling the client, those it cannot use. The fake
//! records each drop with Relay's reason, so that a test can require none.
//!
//! Followed from Relay's source: `relay-event-schema` (`SessionUpdate`,
//! `SessionAggregates`: `started` and `attrs.release` required, `sid` a
//! UUID, `seq` a u64, `status` a known word), the session processor
//! (`relay-server/src/services/processor/session.rs`: timestamps no more
//! than 5 days old or 60 s ahead of the time received, after correcting a
//! client's clock by `sent_at`; `timestamp` not before `started`;
//! `validate_release` and `validate_environment`; a `u64::MAX` seq dropped),
//! and `relay-monitors` (`CheckIn`: `check_in_id` a UUID, a non-empty
//! `monitor_slug`, a known `status`, `monitor_config.schedule` of type
//! `crontab` (a string) or `interval` (a number and a unit), margins in
//! whole minutes). The size and count limits are checked with the envelope
//! (413), in `validate.rs`.

use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How old a session may be (Relay's `max_session_secs_in_past`).
const MAX_AGE_SECS: i64 = 5 * 24 * 3600;
/// How far ahead a timestamp may be (Relay's `max_secs_in_future`).
const MAX_FUTURE_SECS: i64 = 60;

#[derive(Deserialize)]
#[allow(dead_code)]
struct SessionUpdate {
    #[serde(default)]
    sid: Option<uuid::Uuid>,
    #[serde(default)]
    did: Option<String>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    init: bool,
    #[serde(default)]
    timestamp: Option<String>,
    started: String,
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    errors: u64,
    attrs: Attrs,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Attrs {
    release: String,
    #[serde(default)]
    environment: Option<String>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Aggregates {
    #[serde(default)]
    aggregates: Vec<Aggregate>,
    attrs: Attrs,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Aggregate {
    started: String,
    #[serde(default)]
    did: Option<String>,
    #[serde(default)]
    exited: u32,
    #[serde(default)]
    errored: u32,
    #[serde(default)]
    abnormal: u32,
    #[serde(default)]
    unhandled: u32,
    #[serde(default)]
    crashed: u32,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct CheckIn {
    check_in_id: uuid::Uuid,
    monitor_slug: String,
    status: CheckInStatus,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default)]
    monitor_config: Option<MonitorConfig>,
    #[serde(default)]
    contexts: Option<CheckInContexts>,
}

#[derive(Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
enum CheckInStatus {
    Ok,
    Error,
    InProgress,
    Missed,
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct MonitorConfig {
    schedule: Schedule,
    #[serde(default)]
    checkin_margin: Option<u64>,
    #[serde(default)]
    max_runtime: Option<u64>,
    #[serde(default)]
    timezone: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(dead_code)]
enum Schedule {
    Crontab { value: String },
    Interval { value: u64, unit: IntervalUnit },
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum IntervalUnit {
    Year,
    Month,
    Week,
    Day,
    Hour,
    Minute,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct CheckInContexts {
    #[serde(default)]
    trace: Option<Trace>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Trace {
    trace_id: uuid::Uuid,
}

/// Why Relay would drop `payload` of item type `ty`, received at
/// `received` in an envelope sent at `sent_at`; `None` when it keeps it.
pub(crate) fn dropped_because(
    ty: &str,
    payload: &[u8],
    sent_at: Option<&Value>,
    received: OffsetDateTime,
) -> Option<String> {
    // Relay corrects a client's clock by the difference between `sent_at`
    // and the time received, when it is more than a minute.
    let drift = sent_at
        .and_then(Value::as_str)
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        .map(|sent| received - sent)
        .filter(|d| d.whole_seconds().abs() > 60)
        .unwrap_or(time::Duration::ZERO);
    let in_range = |what: &str, at: &str| -> Result<OffsetDateTime, String> {
        let t =
            OffsetDateTime::parse(at, &Rfc3339).map_err(|e| format!("{what} {at:?} is not a timestamp: {e}"))? + drift;
        let age = (received - t).whole_seconds();
        if age > MAX_AGE_SECS {
            return Err(format!("{what} {at} is older than 5 days"));
        }
        if -age > MAX_FUTURE_SECS {
            return Err(format!("{what} {at} is more than 60 s in the future"));
        }
        Ok(t)
    };
    let result = match ty {
        "session" => serde_json::from_slice::<SessionUpdate>(payload)
            .map_err(|e| format!("invalid session payload: {e}"))
            .and_then(|s| {
                if s.seq == Some(u64::MAX) {
                    return Err("sequence overflow".into());
                }
                let started = in_range("started", &s.started)?;
                if let Some(timestamp) = &s.timestamp {
                    // Relay moves a timestamp before the start to the start.
                    let t = in_range("timestamp", timestamp)?;
                    if t < started {
                        return Err(format!("timestamp {timestamp} is before started {}", s.started));
                    }
                }
                match s.status.as_deref() {
                    None | Some("ok" | "exited" | "crashed" | "abnormal" | "errored" | "unhandled") => {}
                    Some(other) => return Err(format!("unknown session status {other:?}")),
                }
                attrs(&s.attrs)
            }),
        "sessions" => serde_json::from_slice::<Aggregates>(payload)
            .map_err(|e| format!("invalid sessions payload: {e}"))
            .and_then(|a| {
                if a.aggregates.is_empty() {
                    return Err("no aggregates".into());
                }
                for aggregate in &a.aggregates {
                    in_range("aggregate started", &aggregate.started)?;
                }
                attrs(&a.attrs)
            }),
        "check_in" => serde_json::from_slice::<CheckIn>(payload)
            .map_err(|e| format!("failed to deserialize check in: {e}"))
            .and_then(|c| {
                if c.monitor_slug.trim().is_empty() {
                    return Err("the monitor slug is empty or invalid".into());
                }
                if matches!(c.status, CheckInStatus::Missed | CheckInStatus::Unknown) {
                    return Err("a check-in status a client cannot send".into());
                }
                Ok(())
            }),
        _ => Ok(()),
    };
    result.err()
}

/// Relay's `validate_release` (a release it drops the session for) and
/// `validate_environment` (one it removes; a test wants none removed).
fn attrs(attrs: &Attrs) -> Result<(), String> {
    let bad = |s: &str| s.contains(['/', '\\', '\r', '\n', '\t', '\x0c']);
    let release = &attrs.release;
    if release.len() > 200
        || release == "."
        || release == ".."
        || release.eq_ignore_ascii_case("latest")
        || bad(release)
    {
        return Err(format!("invalid release {release:?}"));
    }
    if let Some(env) = &attrs.environment
        && (env.len() > 64 || bad(env))
    {
        return Err(format!("invalid environment {env:?}"));
    }
    Ok(())
}
