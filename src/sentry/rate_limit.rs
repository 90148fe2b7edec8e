//! Rate limits announced by Relay, per data category.
//!
//! Relay answers `429` with `Retry-After: SECS` and, more precisely,
//! `X-Sentry-Rate-Limits: SECS:CAT;CAT:SCOPE:REASON[, …]`. An empty category
//! list means every category. When `X-Sentry-Rate-Limits` is present it wins
//! over `Retry-After` (Sentry's SDK rule: it is the more precise of the two);
//! a `429` with neither limits everything for 60 seconds.
//!
//! Limits are kept as absolute wall-clock expiry times so that the outbox can
//! persist them and the *next* process, started after a crash, keeps honouring
//! a limit the previous one was told about.
//!
//! What a crash envelope needs, mapped to Relay's categories:
//! * the event: `error` (a crash event is an error event; `default` is
//!   honoured too because a limit on it would drop an event without exception);
//! * attachments: `attachment` (bytes) and `attachment_item` (count);
//! * Release Health session updates and aggregates: `session`;
//! * cron check-ins: `monitor`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::sentry::clock::{from_unix_millis, unix_millis};

/// What Sentry's SDKs assume when a 429 names no duration.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The part of an envelope a limit can hold back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitedPart {
    /// The event item (categories `error` and `default`).
    Event,
    /// Attachment items (categories `attachment` and `attachment_item`).
    Attachments,
    /// `session` and `sessions` items (category `session`).
    Sessions,
    /// `check_in` items (category `monitor`).
    CheckIns,
    /// `log` items (category `log_item`, and `log_byte`).
    Logs,
}

impl LimitedPart {
    fn categories(self) -> &'static [&'static str] {
        match self {
            Self::Event => &["error", "default"],
            Self::Attachments => &["attachment", "attachment_item"],
            Self::Sessions => &["session"],
            Self::CheckIns => &["monitor"],
            Self::Logs => &["log_item", "log_byte"],
        }
    }
}

/// Active rate limits: a global one and one per category, as expiry times.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimits {
    all: Option<SystemTime>,
    categories: BTreeMap<String, SystemTime>,
}

/// The persisted form: expiry times in milliseconds since the epoch.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct PersistedRateLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    all: Option<u64>,
    #[serde(default)]
    categories: BTreeMap<String, u64>,
}

impl RateLimits {
    /// No limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the limits of one HTTP response.
    ///
    /// `status` is the HTTP status; `retry_after` and `sentry_limits` the raw
    /// values of the `Retry-After` and `X-Sentry-Rate-Limits` headers.
    pub fn from_response(status: u16, retry_after: Option<&str>, sentry_limits: Option<&str>, now: SystemTime) -> Self {
        let mut limits = Self::new();
        match sentry_limits {
            Some(header) if !header.trim().is_empty() => {
                limits.update_from_sentry_header(header, now);
            }
            _ if status == 429 => limits.update_from_retry_after(retry_after, now),
            _ => {}
        }
        limits
    }

    /// Applies `X-Sentry-Rate-Limits`. Malformed groups are skipped, as Relay
    /// itself does when it parses this header from its upstream.
    pub fn update_from_sentry_header(&mut self, header: &str, now: SystemTime) {
        for group in header.split(',') {
            let group = group.trim();
            if group.is_empty() {
                continue;
            }
            let mut parts = group.split(':');
            let Some(secs) = parts.next().and_then(parse_seconds) else {
                continue;
            };
            let until = add_saturating(now, secs);
            let categories: Vec<&str> =
                parts.next().unwrap_or("").split(';').map(str::trim).filter(|c| !c.is_empty()).collect();
            // The scope (organization, project, key) does not matter here: a
            // crashwatch process reports with a single key to a single project.
            if categories.is_empty() {
                self.all = max_time(self.all, until);
            } else {
                for category in categories {
                    let slot = self.categories.entry(category.to_owned()).or_insert(until);
                    *slot = (*slot).max(until);
                }
            }
        }
    }

    /// Applies `Retry-After` to every category (seconds or an HTTP date).
    pub fn update_from_retry_after(&mut self, value: Option<&str>, now: SystemTime) {
        let until = value
            .map(str::trim)
            .and_then(|v| {
                parse_seconds(v).map(|secs| add_saturating(now, secs)).or_else(|| httpdate::parse_http_date(v).ok())
            })
            .unwrap_or_else(|| add_saturating(now, DEFAULT_RETRY_AFTER));
        self.all = max_time(self.all, until);
    }

    /// Keeps the later expiry of each limit.
    pub fn merge(&mut self, other: &RateLimits) {
        if let Some(all) = other.all {
            self.all = max_time(self.all, all);
        }
        for (category, &until) in &other.categories {
            let slot = self.categories.entry(category.clone()).or_insert(until);
            *slot = (*slot).max(until);
        }
    }

    /// Forgets limits that expired at `now`.
    pub fn prune(&mut self, now: SystemTime) {
        if self.all.is_some_and(|t| t <= now) {
            self.all = None;
        }
        self.categories.retain(|_, until| *until > now);
    }

    /// True when no limit is recorded (expired ones included).
    pub fn is_empty(&self) -> bool {
        self.all.is_none() && self.categories.is_empty()
    }

    /// Until when `part` may not be sent, if it is limited at `now`.
    pub fn limited_until(&self, part: LimitedPart, now: SystemTime) -> Option<SystemTime> {
        let mut until = self.all.filter(|t| *t > now);
        for category in part.categories() {
            if let Some(&t) = self.categories.get(*category)
                && t > now
            {
                until = max_time(until, t);
            }
        }
        until
    }

    /// Until when everything is limited, if a global limit is active.
    pub fn all_limited_until(&self, now: SystemTime) -> Option<SystemTime> {
        self.all.filter(|t| *t > now)
    }

    pub(crate) fn to_persisted(&self) -> PersistedRateLimits {
        PersistedRateLimits {
            all: self.all.map(unix_millis),
            categories: self.categories.iter().map(|(c, t)| (c.clone(), unix_millis(*t))).collect(),
        }
    }

    pub(crate) fn from_persisted(p: &PersistedRateLimits) -> Self {
        Self {
            all: p.all.map(from_unix_millis),
            categories: p.categories.iter().map(|(c, ms)| (c.clone(), from_unix_millis(*ms))).collect(),
        }
    }
}

fn parse_seconds(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    // Sentry's SDKs round up: a limit of 0.5 s still holds for a full second.
    Some(Duration::from_secs(secs.ceil().min(u32::MAX as f64) as u64))
}

fn add_saturating(now: SystemTime, by: Duration) -> SystemTime {
    now.checked_add(by).unwrap_or_else(|| now + Duration::from_secs(u64::from(u32::MAX)))
}

fn max_time(a: Option<SystemTime>, b: SystemTime) -> Option<SystemTime> {
    Some(a.map_or(b, |a| a.max(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn sentry_header_with_several_groups() {
        let limits = RateLimits::from_response(
            429,
            Some("999"),
            Some("60:error;transaction:organization:quota_exceeded, 2700:attachment:key"),
            t0(),
        );
        assert_eq!(limits.limited_until(LimitedPart::Event, t0()), Some(t0() + secs(60)));
        assert_eq!(limits.limited_until(LimitedPart::Attachments, t0()), Some(t0() + secs(2700)));
        assert_eq!(limits.all_limited_until(t0()), None, "retry-after is ignored");
    }

    #[test]
    fn empty_categories_mean_everything() {
        let limits = RateLimits::from_response(429, None, Some("30::organization"), t0());
        assert_eq!(limits.all_limited_until(t0()), Some(t0() + secs(30)));
        assert_eq!(limits.limited_until(LimitedPart::Attachments, t0()), Some(t0() + secs(30)));
    }

    #[test]
    fn retry_after_alone_limits_everything_and_defaults_to_60() {
        let limits = RateLimits::from_response(429, Some("120"), None, t0());
        assert_eq!(limits.all_limited_until(t0()), Some(t0() + secs(120)));
        let limits = RateLimits::from_response(429, Some("soon"), None, t0());
        assert_eq!(limits.all_limited_until(t0()), Some(t0() + secs(60)));
        let limits = RateLimits::from_response(429, Some("Wed, 15 Nov 2023 00:00:00 GMT"), None, t0());
        assert_eq!(limits.all_limited_until(t0()), Some(SystemTime::UNIX_EPOCH + secs(1_700_006_400)));
    }

    #[test]
    fn unrelated_categories_and_garbage_do_not_limit_crashes() {
        let limits =
            RateLimits::from_response(429, None, Some("abc:error:key, 60:transaction;span:project, :::"), t0());
        assert_eq!(limits.limited_until(LimitedPart::Event, t0()), None);
        assert_eq!(limits.limited_until(LimitedPart::Attachments, t0()), None);
        assert!(!limits.is_empty());
    }

    #[test]
    fn sessions_and_check_ins_have_their_own_categories() {
        let limits = RateLimits::from_response(429, None, Some("60:session:key, 120:monitor:organization"), t0());
        assert_eq!(limits.limited_until(LimitedPart::Sessions, t0()), Some(t0() + secs(60)));
        assert_eq!(limits.limited_until(LimitedPart::CheckIns, t0()), Some(t0() + secs(120)));
        assert_eq!(limits.limited_until(LimitedPart::Event, t0()), None);
        let all = RateLimits::from_response(429, Some("30"), None, t0());
        assert_eq!(all.limited_until(LimitedPart::Sessions, t0()), Some(t0() + secs(30)));
    }

    #[test]
    fn limits_expire_and_persist() {
        let mut limits = RateLimits::from_response(200, None, Some("10:error:key"), t0());
        let restored = RateLimits::from_persisted(&limits.to_persisted());
        assert_eq!(restored, limits);
        assert_eq!(limits.limited_until(LimitedPart::Event, t0() + secs(10)), None);
        limits.prune(t0() + secs(10));
        assert!(limits.is_empty());
    }
}
