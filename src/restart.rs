//! `--restart`: running the child again when it ends, with exponential
//! backoff.
//!
//! By default crashwatch runs the child once: systemd and container
//! orchestrators restart services themselves, and a supervisor that also
//! restarts would hide the loop from them. Where nothing else restarts the
//! program (a plain container, a developer's terminal), `--restart
//! on-failure|always` does, like systemd's `Restart=`:
//!
//! - the delay before restart *n* of a run of quick failures is
//!   `initial × 2ⁿ⁻¹`, capped at `max`;
//! - a run that lasted `healthy_after` or longer was healthy: the next
//!   failure starts the backoff over (and the restart count with it);
//! - after `max_restarts` restarts without a healthy run in between,
//!   crashwatch gives up and exits with the child's last status;
//! - an orderly stop (a SIGTERM forwarded from systemd, docker, Ctrl-C) is
//!   never restarted, and one that arrives during the delay ends the wait;
//! - a hang (`--health-url`, the systemd watchdog; see `crate::hang`) is a
//!   failure: `on-hang` restarts only a run crashwatch ended for a hang,
//!   `on-failure` and `always` restart it as they restart a crash.
//!
//! The policy is pure ([`Backoff`]); the waiting is behind [`Wait`], so the
//! whole loop runs in tests on a fake clock without sleeping.

use std::sync::mpsc;
use std::time::Duration;

/// When to run the child again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Run once (the default).
    #[default]
    Never,
    /// Again after a crash, an OOM kill or a non-zero exit.
    OnFailure,
    /// Again after any end but an orderly stop.
    Always,
    /// Again only after crashwatch ended a hung run (a crash is not
    /// restarted: systemd or the orchestrator decides about those).
    OnHang,
}

impl Policy {
    /// Whether crashwatch ends a hung child (to restart it); with `never`
    /// it is left as it is, for systemd's watchdog or the orchestrator.
    pub fn ends_hangs(self) -> bool {
        self != Policy::Never
    }

    pub fn parse(s: &str) -> Result<Policy, String> {
        match s {
            "never" | "no" => Ok(Policy::Never),
            "on-failure" => Ok(Policy::OnFailure),
            "always" => Ok(Policy::Always),
            "on-hang" => Ok(Policy::OnHang),
            other => Err(format!("'{other}' is not a restart policy: use never, on-failure, on-hang or always")),
        }
    }
}

/// The `--restart*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    pub policy: Policy,
    /// Delay before the first restart of a run of quick failures.
    pub initial_delay: Duration,
    /// Cap on the delay.
    pub max_delay: Duration,
    /// A run at least this long resets the backoff and the restart count.
    pub healthy_after: Duration,
    /// Give up after this many restarts without a healthy run between them.
    pub max_restarts: Option<u32>,
}

impl Default for Restart {
    fn default() -> Self {
        Restart {
            policy: Policy::Never,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            healthy_after: Duration::from_secs(60),
            max_restarts: None,
        }
    }
}

/// How one run of the child ended, as far as restarting is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// A crash, an OOM kill, a non-zero exit.
    pub failed: bool,
    /// It ended after crashwatch forwarded it a stop signal (not SIGHUP).
    pub stop_requested: bool,
    /// How long it ran.
    pub ran_for: Duration,
    /// crashwatch ended it because it hung (a failure too).
    pub hung: bool,
}

/// What to do after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Run the child again after this delay; it is restart number `restart`
    /// since the last healthy run.
    RestartAfter { delay: Duration, restart: u32 },
    /// Stop, and exit with the child's status.
    Stop(Why),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The policy does not restart this kind of end.
    Policy,
    /// The end was an orderly stop.
    StopRequested,
    /// `--max-restarts` restarts in a row failed.
    GaveUp { restarts: u32 },
}

/// The restart policy with its memory of recent quick failures.
#[derive(Debug, Clone)]
pub struct Backoff {
    restart: Restart,
    /// Restarts since the last healthy run.
    restarts: u32,
}

impl Backoff {
    pub fn new(restart: Restart) -> Backoff {
        Backoff { restart, restarts: 0 }
    }

    /// Decides what follows a run that ended as `ended`.
    pub fn next(&mut self, ended: Ended) -> Next {
        if ended.stop_requested {
            return Next::Stop(Why::StopRequested);
        }
        let wanted = match self.restart.policy {
            Policy::Never => false,
            Policy::OnFailure => ended.failed || ended.hung,
            Policy::Always => true,
            Policy::OnHang => ended.hung,
        };
        if !wanted {
            return Next::Stop(Why::Policy);
        }
        if ended.ran_for >= self.restart.healthy_after {
            self.restarts = 0;
        }
        if self.restart.max_restarts.is_some_and(|max| self.restarts >= max) {
            return Next::Stop(Why::GaveUp { restarts: self.restarts });
        }
        let delay = self.delay(self.restarts);
        self.restarts += 1;
        Next::RestartAfter { delay, restart: self.restarts }
    }

    /// `initial × 2^n`, capped.
    fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n).unwrap_or(u32::MAX);
        self.restart.initial_delay.checked_mul(factor).map_or(self.restart.max_delay, |d| d.min(self.restart.max_delay))
    }
}

/// The pause between runs: a clock that can be interrupted.
pub trait Wait {
    /// Waits `delay`; false if an orderly stop was requested first (or
    /// already had been).
    fn wait(&mut self, delay: Duration) -> bool;
}

/// Runs the child (`run_once`, given the restart number, 0 for the first
/// run) until the policy says stop; returns the last run's outcome and why
/// it was the last. `run_once` returns `Err` for a run that could not start
/// at all, which ends the loop at once: a missing program does not appear
/// by retrying.
pub fn run_loop<T, E>(
    restart: &Restart,
    wait: &mut dyn Wait,
    mut run_once: impl FnMut(u32) -> Result<(T, Ended), E>,
) -> Result<(T, Why), E> {
    let mut backoff = Backoff::new(restart.clone());
    let mut number = 0;
    loop {
        let (outcome, ended) = run_once(number)?;
        match backoff.next(ended) {
            Next::Stop(why) => return Ok((outcome, why)),
            Next::RestartAfter { delay, restart: n } => {
                let of = restart.max_restarts.map(|max| format!(" of {max}")).unwrap_or_default();
                tracing::warn!(
                    "restarting the program in {} (restart {n}{of} since it last ran {} or longer)",
                    humantime::format_duration(delay),
                    humantime::format_duration(restart.healthy_after)
                );
                if !wait.wait(delay) {
                    tracing::info!("stop requested while waiting to restart; not restarting");
                    return Ok((outcome, Why::StopRequested));
                }
                number += 1;
            }
        }
    }
}

/// The real pause: sleeps, but wakes at once for a stop signal (TERM, INT,
/// QUIT; not HUP, a reload for many servers) among the signals crashwatch
/// receives, which arrive on `signals`. It listens for the whole run, so a
/// stop between two runs (while a report is filed, or during the delay) is
/// never missed, nor one forwarded to a child that then crashed on its way
/// out.
pub struct StopSignals {
    signals: mpsc::Receiver<i32>,
}

impl StopSignals {
    /// `signals`: every signal crashwatch receives from now on.
    pub fn new(signals: mpsc::Receiver<i32>) -> StopSignals {
        StopSignals { signals }
    }

    /// Whether a stop signal arrived since the last call (consuming it).
    fn arrived(&mut self) -> bool {
        let mut any = false;
        while let Ok(signal) = self.signals.try_recv() {
            any |= crate::process::signals::END_RESTARTS.contains(&signal);
        }
        any
    }
}

impl Wait for StopSignals {
    fn wait(&mut self, delay: Duration) -> bool {
        if self.arrived() {
            return false;
        }
        let deadline = std::time::Instant::now() + delay;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.signals.recv_timeout(left) {
                Ok(signal) if crate::process::signals::END_RESTARTS.contains(&signal) => return false,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => return true,
                // Nobody collects signals any more: only the delay is left.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(left);
                    return true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn failed(ran_for: Duration) -> Ended {
        Ended { failed: true, stop_requested: false, ran_for, hung: false }
    }

    fn policy(policy: Policy) -> Restart {
        Restart { policy, ..Restart::default() }
    }

    /// A clock that only moves when waited on, recording every wait; stops
    /// being "interrupted" after `stop_after` waits.
    struct FakeClock {
        waits: Vec<Duration>,
        stop_after: Option<usize>,
    }

    impl Wait for FakeClock {
        fn wait(&mut self, delay: Duration) -> bool {
            if self.stop_after.is_some_and(|n| self.waits.len() >= n) {
                return false;
            }
            self.waits.push(delay);
            true
        }
    }

    #[test]
    fn policies_choose_which_ends_restart() {
        let clean = Ended { failed: false, stop_requested: false, ran_for: secs(1), hung: false };
        let stopped = Ended { failed: true, stop_requested: true, ran_for: secs(1), hung: false };
        assert_eq!(Backoff::new(policy(Policy::Never)).next(failed(secs(1))), Next::Stop(Why::Policy));
        assert_eq!(Backoff::new(policy(Policy::OnFailure)).next(clean), Next::Stop(Why::Policy));
        assert!(matches!(Backoff::new(policy(Policy::OnFailure)).next(failed(secs(1))), Next::RestartAfter { .. }));
        assert!(matches!(Backoff::new(policy(Policy::Always)).next(clean), Next::RestartAfter { .. }));
        for p in [Policy::OnFailure, Policy::Always] {
            assert_eq!(Backoff::new(policy(p)).next(stopped), Next::Stop(Why::StopRequested));
        }
    }

    #[test]
    fn a_hang_is_a_failure_and_on_hang_restarts_only_hangs() {
        let hung = Ended { failed: false, stop_requested: false, ran_for: secs(1), hung: true };
        for p in [Policy::OnHang, Policy::OnFailure, Policy::Always] {
            assert!(matches!(Backoff::new(policy(p)).next(hung), Next::RestartAfter { .. }), "{p:?}");
        }
        assert_eq!(Backoff::new(policy(Policy::OnHang)).next(failed(secs(1))), Next::Stop(Why::Policy));
        assert_eq!(Backoff::new(policy(Policy::Never)).next(hung), Next::Stop(Why::Policy));
        assert!(!Policy::Never.ends_hangs() && Policy::OnHang.ends_hangs() && Policy::OnFailure.ends_hangs());
    }

    #[test]
    fn policy_names_parse() {
        assert_eq!(Policy::parse("never"), Ok(Policy::Never));
        assert_eq!(Policy::parse("on-failure"), Ok(Policy::OnFailure));
        assert_eq!(Policy::parse("always"), Ok(Policy::Always));
        assert!(Policy::parse("sometimes").unwrap_err().contains("on-failure"));
    }

    #[test]
    fn quick_failures_back_off_exponentially_up_to_the_cap() {
        let restart = Restart {
            policy: Policy::OnFailure,
            initial_delay: secs(1),
            max_delay: secs(30),
            healthy_after: secs(60),
            max_restarts: None,
        };
        let mut clock = FakeClock { waits: Vec::new(), stop_after: Some(8) };
        let mut runs = 0;
        let (_, why) = run_loop(&restart, &mut clock, |n| {
            assert_eq!(n, runs);
            runs += 1;
            Ok::<_, ()>(((), failed(Duration::from_millis(200))))
        })
        .unwrap();
        assert_eq!(clock.waits, [1, 2, 4, 8, 16, 30, 30, 30].map(secs));
        // The stop during the ninth wait ends the loop after nine runs.
        assert_eq!((runs, why), (9, Why::StopRequested));
    }

    #[test]
    fn a_healthy_run_resets_the_backoff() {
        let restart = Restart { policy: Policy::Always, ..Restart::default() };
        // Three quick failures, one healthy hour, two quick failures.
        let ran = [1, 1, 1, 3600, 1, 1].map(secs);
        let mut clock = FakeClock { waits: Vec::new(), stop_after: Some(ran.len() - 1) };
        let mut runs = ran.iter();
        run_loop(&restart, &mut clock, |_| Ok::<_, ()>(((), failed(*runs.next().unwrap())))).unwrap();
        assert_eq!(clock.waits, [1, 2, 4, 1, 2].map(secs));
    }

    #[test]
    fn max_restarts_gives_up_with_the_last_status() {
        let restart = Restart { policy: Policy::OnFailure, max_restarts: Some(3), ..Restart::default() };
        let mut clock = FakeClock { waits: Vec::new(), stop_after: None };
        let mut statuses = [11, 12, 13, 14, 15].into_iter();
        let (last, why) = run_loop(&restart, &mut clock, |_| {
            Ok::<_, ()>((statuses.next().unwrap(), failed(Duration::from_millis(10))))
        })
        .unwrap();
        assert_eq!((last, why), (14, Why::GaveUp { restarts: 3 }));
        assert_eq!(clock.waits, [1, 2, 4].map(secs));
    }

    #[test]
    fn max_restarts_counts_only_since_the_last_healthy_run() {
        let restart = Restart { policy: Policy::OnFailure, max_restarts: Some(2), ..Restart::default() };
        let ran = [1, 1, 600, 1, 1].map(secs);
        let mut clock = FakeClock { waits: Vec::new(), stop_after: None };
        let mut runs = ran.iter().enumerate();
        let (last, why) = run_loop(&restart, &mut clock, |_| {
            let (i, ran_for) = runs.next().unwrap();
            Ok::<_, ()>((i, failed(*ran_for)))
        })
        .unwrap();
        assert_eq!((last, why), (4, Why::GaveUp { restarts: 2 }));
        assert_eq!(clock.waits, [1, 2, 1, 2].map(secs));
    }

    #[test]
    fn a_zero_delay_never_waits_long_and_huge_counts_do_not_overflow() {
        let zero = Restart { policy: Policy::Always, initial_delay: Duration::ZERO, ..Restart::default() };
        let mut backoff = Backoff::new(zero);
        for _ in 0..100 {
            assert!(matches!(backoff.next(failed(Duration::ZERO)), Next::RestartAfter { delay: Duration::ZERO, .. }));
        }
        let mut backoff = Backoff::new(policy(Policy::Always));
        let mut last = Duration::ZERO;
        for _ in 0..100 {
            if let Next::RestartAfter { delay, .. } = backoff.next(failed(Duration::ZERO)) {
                last = delay;
            }
        }
        assert_eq!(last, secs(60));
    }

    #[test]
    fn a_run_that_cannot_start_ends_the_loop() {
        let restart = policy(Policy::Always);
        let mut clock = FakeClock { waits: Vec::new(), stop_after: None };
        let result = run_loop(&restart, &mut clock, |_| Err::<((), Ended), _>("no such program"));
        assert_eq!(result.unwrap_err(), "no such program");
        assert!(clock.waits.is_empty());
    }
}
