//! `--health-url`: an HTTP GET of the program's health endpoint every
//! interval, from a thread of its own, as a Kubernetes liveness probe or
//! an uptime monitor does.
//!
//! - The client is the one crashwatch sends to Sentry with (reqwest on
//!   rustls), so `http` and `https` both work; redirects are not followed
//!   (a 3xx answer is an answer: healthy, as for Kubernetes), proxies from
//!   the environment are not used (the program is local; its check must
//!   not depend on a proxy), and no body is read past the headers.
//! - A check fails on no answer within `--health-timeout`, a connection
//!   refused or reset, or a status outside 200..=399.
//! - The first check is `--health-start-period` after the program
//!   started; then one every `--health-interval`, counted from the start of
//!   the previous one (a check that times out does not push the next one
//!   back by its timeout).
//! - `--health-failures` failures in a row are a hang ([`Streak`]): handed
//!   on once. Checks go on; the first healthy answer ends the hang, and the
//!   next streak is a new hang.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use super::{Check, Detected, OnHang};
use crate::errors::Chain;

/// A validated `--health-url` check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub failures: u32,
    pub start_period: Duration,
}

/// `--health-url`'s value, checked: an absolute http or https URL.
pub fn parse_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s)
        .map_err(|e| format!("--health-url '{s}' is not a URL ({e}): use e.g. http://127.0.0.1:8080/healthz"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("--health-url '{s}' is not an http:// or https:// URL with a host"));
    }
    Ok(url.to_string())
}

/// Failures in a row, and whether this streak was handed on already.
#[derive(Debug)]
pub struct Streak {
    need: u32,
    failures: u32,
    fired: bool,
    /// The last healthy answer, or the program's start.
    last_ok: SystemTime,
}

impl Streak {
    pub fn new(need: u32, started: SystemTime) -> Streak {
        Streak { need, failures: 0, fired: false, last_ok: started }
    }

    /// One check's result at `now`: the hang's start and the failures in a
    /// row when this one makes the hang (once per streak).
    pub fn observe(&mut self, healthy: bool, now: SystemTime) -> Option<(SystemTime, u32)> {
        if healthy {
            if self.fired {
                tracing::info!("the program answers its health check again after {} failures", self.failures);
            }
            *self = Streak::new(self.need, now);
            return None;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.need && !self.fired {
            self.fired = true;
            return Some((self.last_ok, self.failures));
        }
        None
    }
}

/// The checks of one run; they end when this is dropped (a check in flight
/// finishes first, within its timeout, on its own thread).
pub struct Running {
    _stop: mpsc::Sender<()>,
}

/// Starts checking `check` for a program started at `started`.
pub fn start(check: HealthCheck, started: SystemTime, on_hang: OnHang) -> std::io::Result<Running> {
    let (stop, stopped) = mpsc::channel();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = reqwest::Client::builder()
        .timeout(check.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("crashwatch-health/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(std::io::Error::other)?;
    std::thread::Builder::new().name("health-check".into()).spawn(move || {
        let mut streak = Streak::new(check.failures, started);
        let mut wait = check.start_period;
        loop {
            match stopped.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            let begun = Instant::now();
            let result = runtime.block_on(probe(&client, &check));
            if let Err(e) = &result {
                tracing::debug!(url = %check.url, "health check failed: {e}");
            }
            if let Some((since, failures)) = streak.observe(result.is_ok(), SystemTime::now()) {
                let last_error = result.err().unwrap_or_default();
                tracing::warn!(url = %check.url, "{failures} health checks in a row failed (last: {last_error})");
                let check = Check::Health { url: check.url.clone(), failures, last_error };
                on_hang(Detected { check, since, at: SystemTime::now() });
            }
            wait = check.interval.saturating_sub(begun.elapsed());
        }
    })?;
    Ok(Running { _stop: stop })
}

/// One GET: `Ok` for a 2xx or 3xx answer, else what went wrong.
async fn probe(client: &reqwest::Client, check: &HealthCheck) -> Result<(), String> {
    match client.get(&check.url).send().await {
        Ok(response) if response.status().is_success() || response.status().is_redirection() => Ok(()),
        Ok(response) => Err(format!("HTTP {}", response.status())),
        Err(e) if e.is_timeout() => Err(format!("no answer within {}", humantime::format_duration(check.timeout))),
        Err(e) => Err(Chain(&e).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streak_fires_once_at_n_and_a_healthy_answer_ends_it() {
        let t0 = SystemTime::UNIX_EPOCH;
        let at = |s| t0 + Duration::from_secs(s);
        let mut streak = Streak::new(3, t0);
        assert_eq!(streak.observe(true, at(10)), None);
        assert_eq!(streak.observe(false, at(20)), None);
        assert_eq!(streak.observe(false, at(30)), None);
        // Hung since the last healthy answer.
        assert_eq!(streak.observe(false, at(40)), Some((at(10), 3)));
        assert_eq!(streak.observe(false, at(50)), None);
        assert_eq!(streak.observe(true, at(60)), None);
        assert_eq!(streak.observe(false, at(70)), None);
        assert_eq!(streak.observe(false, at(80)), None);
        assert_eq!(streak.observe(false, at(90)), Some((at(60), 3)));
    }

    #[test]
    fn never_healthy_is_hung_since_the_start() {
        let t0 = SystemTime::UNIX_EPOCH;
        let mut streak = Streak::new(1, t0);
        assert_eq!(streak.observe(false, t0 + Duration::from_secs(5)), Some((t0, 1)));
    }
}
