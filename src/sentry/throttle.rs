//! Crash loops and the hourly budget: what keeps one host from flooding
//! Sentry.
//!
//! A server in a crash loop (restarted by systemd, by `--restart`, by
//! Kubernetes) crashes the same way again and again. Every report is kept in
//! the spool, but only the first of a *signature* — program, kind, signal,
//! the top frames of the crashing thread — is sent in full. Repeats within
//! the group window are counted; when the window ends (or the `--restart`
//! loop that produced them gives up) the count goes out as one summary
//! event. And whatever the signatures, at most `per_hour` reports and
//! summaries leave the host per hour.
//!
//! The state must outlive crashwatch, because in a systemd crash loop each
//! crash is a new crashwatch process: it is one small JSON file in the spool
//! (`SPOOL/throttle.json`), read and rewritten under an exclusive lock on
//! `SPOOL/throttle.lock`, so that several crashwatch processes sharing a
//! spool count together. Times are wall-clock through [`Clock`], so tests
//! cross windows and hours without sleeping.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::process::ChildStatus;
use crate::process::signals;
use crate::report::{CrashReport, Kind};
use crate::sentry::clock::{Clock, from_unix_millis, unix_millis};
use crate::spool::{SpoolDir, StateError, StateFile};
use crate::story;
use crate::symbolicate::Symbolicated;

/// Frames of the crashing thread that make up a signature.
const SIGNATURE_FRAMES: usize = 3;

/// The budget's period.
const HOUR: Duration = Duration::from_secs(3600);

/// What makes two crashes "the same".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// `server|signal SIGSEGV|crash_here|main` — also the state's key.
    pub key: String,
    /// For people: `SIGSEGV in crash_here`.
    pub title: String,
}

/// The signature of `report`: the program, how it ended, and the top frames
/// where they are known — the app's own frames when any are (a crash in
/// `memcpy` is about its caller), else the top frames, else the module and
/// offset. Nothing that differs between two runs of one bug (addresses,
/// pids, times, messages with ids in them) is part of it.
pub fn signature(report: &CrashReport, stacks: Option<&Symbolicated>) -> Signature {
    let how = match (report.kind, report.status) {
        (Kind::Signal, ChildStatus::Signaled { signal, .. }) => format!("signal {}", signals::name(signal)),
        (Kind::Exit, ChildStatus::Exited(code)) => format!("exit {code}"),
        (kind, _) => kind.name().to_owned(),
    };
    let mut what = how.clone();
    let mut frames = Vec::new();
    if let Some(panic) = &report.panic {
        what = if panic.kind.is_empty() { format!("{how} {:?}", panic.runtime) } else { panic.kind.clone() };
        frames = story_frames(panic);
    }
    if frames.is_empty()
        && let Some(stacks) = stacks
    {
        frames = native_frames(stacks);
    }
    let mut key = format!("{}|{how}", report.program.exe.display());
    if report.panic.is_some() {
        key.push('|');
        key.push_str(&what);
    }
    for frame in &frames {
        key.push('|');
        key.push_str(frame);
    }
    let title = match frames.first() {
        Some(top) => format!("{what} in {top}"),
        None => what,
    };
    Signature { key, title }
}

/// The innermost frames of a runtime's story, the app's own if any.
fn story_frames(story: &story::Crash) -> Vec<String> {
    let name = |f: &story::Frame| f.function.clone().or_else(|| f.filename.clone());
    let in_app: Vec<String> = story.frames.iter().rev().filter(|f| f.in_app).filter_map(name).collect();
    let all = if in_app.is_empty() { story.frames.iter().rev().filter_map(name).collect() } else { in_app };
    all.into_iter().take(SIGNATURE_FRAMES).collect()
}

/// The innermost frames of the crashing thread, the app's own if any.
fn native_frames(stacks: &Symbolicated) -> Vec<String> {
    let Some(thread) = stacks.crashing_thread.and_then(|i| stacks.threads.get(i)) else { return Vec::new() };
    let named = |f: &crate::symbolicate::Frame| match (&f.function, &f.module, f.module_base) {
        (Some(function), _, _) => function.clone(),
        (None, Some(module), Some(base)) => format!("{module}+{:#x}", f.instruction.saturating_sub(base)),
        _ => "?".to_owned(),
    };
    let module_is_app = |f: &&crate::symbolicate::Frame| {
        f.module.as_ref().is_some_and(|m| {
            stacks
                .modules
                .iter()
                .find(|module| module_name(&module.code_file) == m.as_str())
                .is_some_and(|module| super::event::is_in_app(&module.code_file))
        })
    };
    let in_app: Vec<String> = thread.frames.iter().filter(module_is_app).map(named).collect();
    let all = if in_app.is_empty() { thread.frames.iter().map(named).collect() } else { in_app };
    all.into_iter().take(SIGNATURE_FRAMES).collect()
}

fn module_name(code_file: &str) -> &str {
    code_file.rsplit('/').next().unwrap_or(code_file)
}

/// What to do with a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send it in full: the first of its signature in the window.
    Send,
    /// Keep it locally: it is repeat number `repeats` of `first_report`.
    Repeat { first_report: String, repeats: u64 },
    /// Keep it locally: the hour's budget is spent.
    OverBudget { per_hour: u32 },
}

/// Who sent a report, for the summary of its repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub program: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

/// A group whose repeats are to be sent as one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub key: String,
    pub title: String,
    pub origin: Origin,
    /// The report sent in full (its event id).
    pub first_report: String,
    pub repeats: u64,
    /// When the first report of the window was made.
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
}

/// Queues one summary for sending; false if it could not be queued (it then
/// stays in the state for a later attempt).
pub type QueueSummary<'a> = &'a mut dyn FnMut(&Summary) -> bool;

#[derive(Debug, thiserror::Error)]
pub enum ThrottleError {
    #[error("failed to use the crash-loop state {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The state's file in the spool, and its lock.
const STATE_FILE: StateFile = StateFile { name: "throttle.json", lock: "throttle.lock", what: "crash-loop counts" };

/// The persistent crash-loop and budget state of one spool.
#[derive(Debug, Clone)]
pub struct Throttle {
    spool: SpoolDir,
    window: Duration,
    /// `None`: the budget recorded by the last `crashwatch run` holds.
    per_hour: Option<Option<u32>>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    groups: BTreeMap<String, Group>,
    #[serde(default)]
    budget: Budget,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Group {
    title: String,
    #[serde(flatten)]
    origin: Origin,
    first_report: String,
    window_start_ms: u64,
    /// The group window of the crashwatch that opened it: `crashwatch send`
    /// closes groups too, and has no window of its own.
    window_ms: u64,
    last_seen_ms: u64,
    /// Repeats not yet summarised.
    repeats: u64,
}

impl Group {
    /// Whether its window is still open at `now`.
    fn open_at(&self, now: SystemTime) -> bool {
        unix_millis(now) < self.window_start_ms.saturating_add(self.window_ms)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Budget {
    /// The last `crashwatch run`'s `--max-reports-per-hour` (`None`: no
    /// cap), which `crashwatch send` keeps to.
    #[serde(default)]
    per_hour: Option<u32>,
    hour_start_ms: u64,
    sent: u32,
    /// Reports kept back this hour.
    over: u64,
}

impl Throttle {
    /// The state of the spool whose directory is `spool`, for `crashwatch
    /// run`. A zero `window` sends every report; `per_hour: None` sets no
    /// budget.
    pub fn new(spool: &SpoolDir, window: Duration, per_hour: Option<u32>, clock: Arc<dyn Clock>) -> Throttle {
        Throttle { spool: spool.clone(), window, per_hour: Some(per_hour), clock }
    }

    /// The state for `crashwatch send`, which only closes groups: each keeps
    /// the window it was opened with, and the budget is the last run's.
    pub fn for_send(spool: &SpoolDir, clock: Arc<dyn Clock>) -> Throttle {
        Throttle { per_hour: None, ..Throttle::new(spool, Duration::ZERO, None, clock) }
    }

    /// Decides what to do with a report of signature `signature` (event id
    /// `report_id`). The summaries that are due now are given to `queue`
    /// first, under the state's lock, and leave the state only if queued.
    pub fn admit(
        &self,
        signature: &Signature,
        report_id: &str,
        origin: &Origin,
        queue: QueueSummary<'_>,
    ) -> Result<Verdict, ThrottleError> {
        self.with_state(|state, now| {
            self.close(state, now, None, queue);
            let open = state.groups.get_mut(&signature.key).filter(|g| g.open_at(now));
            // The same report again (its filing was interrupted and redone):
            // it was the first of its group, and is not its own repeat.
            if open.as_ref().is_some_and(|g| g.first_report == report_id) {
                return Verdict::Send;
            }
            if let Some(group) = open {
                group.repeats += 1;
                group.last_seen_ms = unix_millis(now);
                return Verdict::Repeat { first_report: group.first_report.clone(), repeats: group.repeats };
            }
            if !self.spend(state, now) {
                state.budget.over += 1;
                return Verdict::OverBudget { per_hour: state.budget.per_hour.unwrap_or(0) };
            }
            if !self.window.is_zero() {
                let at = unix_millis(now);
                state.groups.insert(
                    signature.key.clone(),
                    Group {
                        title: signature.title.clone(),
                        origin: origin.clone(),
                        first_report: report_id.to_owned(),
                        window_start_ms: at,
                        window_ms: u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX),
                        last_seen_ms: at,
                        repeats: 0,
                    },
                );
            }
            Verdict::Send
        })
    }

    /// Takes back the [`Verdict::Send`] of `report_id`, which could not be
    /// queued after all: its group is not opened (its repeats would point
    /// at a report Sentry never got) and its share of the budget returns.
    pub fn withdraw(&self, signature: &Signature, report_id: &str) -> Result<(), ThrottleError> {
        self.with_state(|state, _| {
            if state.groups.get(&signature.key).is_some_and(|g| g.first_report == report_id && g.repeats == 0) {
                state.groups.remove(&signature.key);
            }
            state.budget.sent = state.budget.sent.saturating_sub(1);
        })
    }

    /// Counts `n` more repeats of the group of `key`, while its window is
    /// open (a live problem's repeats, counted in memory first); false when
    /// there is no open group to count them in.
    pub fn count_repeats(&self, key: &str, n: u64) -> Result<bool, ThrottleError> {
        self.with_state(|state, now| match state.groups.get_mut(key).filter(|g| g.open_at(now)) {
            Some(group) => {
                group.repeats = group.repeats.saturating_add(n);
                group.last_seen_ms = unix_millis(now);
                true
            }
            None => false,
        })
    }

    /// Gives `queue` the summaries that are due: of groups whose window has
    /// ended, and, with `ending`, of those keys whatever their window (a
    /// `--restart` loop that gave up will produce no more repeats). Each
    /// leaves the state once queued, so it is sent once.
    pub fn due(&self, ending: Option<&[String]>, queue: QueueSummary<'_>) -> Result<(), ThrottleError> {
        // No state, nothing due: and nothing is created (`send` on a spool
        // with nothing to send writes nothing).
        let exists = self
            .spool
            .exists(STATE_FILE.name)
            .map_err(|source| ThrottleError::Io { path: self.spool.join(STATE_FILE.name), source })?;
        if !exists {
            return Ok(());
        }
        self.with_state(|state, now| self.close(state, now, ending, queue))
    }

    /// Queues the due summaries of `state`, as far as the budget allows (the
    /// rest wait for the next hour); forgets ended groups.
    fn close(&self, state: &mut State, now: SystemTime, ending: Option<&[String]>, queue: QueueSummary<'_>) {
        let keys: Vec<String> = state.groups.keys().cloned().collect();
        for key in keys {
            let group = &state.groups[&key];
            let ended = !group.open_at(now);
            let forced = ending.is_some_and(|keys| keys.contains(&key));
            if !(ended || forced) {
                continue;
            }
            if group.repeats > 0 {
                if !self.spend(state, now) {
                    continue;
                }
                let group = &state.groups[&key];
                let summary = Summary {
                    key: key.clone(),
                    title: group.title.clone(),
                    origin: group.origin.clone(),
                    first_report: group.first_report.clone(),
                    repeats: group.repeats,
                    first_seen: from_unix_millis(group.window_start_ms),
                    last_seen: from_unix_millis(group.last_seen_ms),
                };
                if !queue(&summary) {
                    // Kept, with its budget, for the next attempt.
                    state.budget.sent = state.budget.sent.saturating_sub(1);
                    continue;
                }
            }
            if ended {
                state.groups.remove(&key);
            } else if let Some(group) = state.groups.get_mut(&key) {
                // Summarised early; later repeats in the window count anew.
                group.repeats = 0;
            }
        }
    }

    /// Takes one send from the hour's budget; false when it is spent.
    fn spend(&self, state: &mut State, now: SystemTime) -> bool {
        if let Some(per_hour) = self.per_hour {
            state.budget.per_hour = per_hour;
        }
        let Some(per_hour) = state.budget.per_hour else { return true };
        let budget = &mut state.budget;
        if now >= from_unix_millis(budget.hour_start_ms) + HOUR || now < from_unix_millis(budget.hour_start_ms) {
            if budget.over > 0 {
                tracing::warn!(
                    "{} report(s) of the last hour were kept locally, not sent: over --max-reports-per-hour {per_hour}",
                    budget.over
                );
            }
            *budget = Budget { per_hour: Some(per_hour), hour_start_ms: unix_millis(now), sent: 0, over: 0 };
        }
        if budget.sent >= per_hour {
            return false;
        }
        budget.sent += 1;
        true
    }

    /// Runs `f` on the state under the lock and saves it.
    fn with_state<T>(&self, f: impl FnOnce(&mut State, SystemTime) -> T) -> Result<T, ThrottleError> {
        // The time is read under the lock: the one who waited sees it later.
        STATE_FILE
            .update(&self.spool, |state| f(state, self.clock.now()))
            .map_err(|StateError { path, source }| ThrottleError::Io { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentry::ManualClock;

    fn sig(key: &str) -> Signature {
        Signature { key: key.into(), title: format!("title of {key}") }
    }

    fn admit(throttle: &Throttle, key: &str, id: &str) -> (Verdict, Vec<Summary>) {
        let mut queued = Vec::new();
        let origin = Origin { program: "server".into(), ..Origin::default() };
        let verdict = throttle
            .admit(&sig(key), id, &origin, &mut |s: &Summary| {
                queued.push(s.clone());
                true
            })
            .unwrap();
        (verdict, queued)
    }

    fn due_now(throttle: &Throttle, ending: Option<&[String]>) -> Vec<Summary> {
        let mut queued = Vec::new();
        throttle
            .due(ending, &mut |s: &Summary| {
                queued.push(s.clone());
                true
            })
            .unwrap();
        queued
    }

    fn spool(dir: &tempfile::TempDir) -> SpoolDir {
        SpoolDir::open_root(dir.path(), crate::spool::Missing::Create).unwrap().unwrap()
    }

    fn setup(window: u64, per_hour: Option<u32>) -> (tempfile::TempDir, Arc<ManualClock>, Throttle) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(from_unix_millis(1_700_000_000_000)));
        let throttle = Throttle::new(&spool(&dir), Duration::from_secs(window), per_hour, clock.clone());
        (dir, clock, throttle)
    }

    #[test]
    fn repeats_in_the_window_are_counted_and_summarised_once_it_ends() {
        let (_dir, clock, throttle) = setup(600, None);
        let (verdict, due) = admit(&throttle, "a", "r0");
        assert_eq!((verdict, due), (Verdict::Send, vec![]));
        for n in 1..=99 {
            clock.advance(Duration::from_secs(1));
            let (verdict, _) = admit(&throttle, "a", &format!("r{n}"));
            assert_eq!(verdict, Verdict::Repeat { first_report: "r0".into(), repeats: n });
        }
        // Another signature is not a repeat.
        assert_eq!(admit(&throttle, "b", "other").0, Verdict::Send);
        assert!(due_now(&throttle, None).is_empty(), "the window is still open");
        clock.advance(Duration::from_secs(600));
        let due = due_now(&throttle, None);
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!((due[0].repeats, due[0].first_report.as_str(), due[0].title.as_str()), (99, "r0", "title of a"));
        assert_eq!(due[0].last_seen.duration_since(due[0].first_seen).unwrap(), Duration::from_secs(99));
        assert!(due_now(&throttle, None).is_empty(), "a summary is given once");
        // After the window, the next crash is sent in full again.
        assert_eq!(admit(&throttle, "a", "r100").0, Verdict::Send);
    }

    #[test]
    fn an_ending_loop_summarises_its_groups_at_once() {
        let (_dir, clock, throttle) = setup(3600, None);
        admit(&throttle, "a", "r0");
        admit(&throttle, "b", "q0");
        for _ in 0..3 {
            clock.advance(Duration::from_secs(1));
            admit(&throttle, "a", "r");
            admit(&throttle, "b", "q");
        }
        let due = due_now(&throttle, Some(&["a".to_owned()]));
        assert_eq!(due.iter().map(|s| (s.key.as_str(), s.repeats)).collect::<Vec<_>>(), [("a", 3)]);
        // Still in the window: the next one is a repeat, counted anew.
        assert_eq!(admit(&throttle, "a", "r").0, Verdict::Repeat { first_report: "r0".into(), repeats: 1 });
    }

    #[test]
    fn the_hourly_budget_caps_reports_and_summaries() {
        let (_dir, clock, throttle) = setup(60, Some(3));
        for key in ["a", "b", "c"] {
            assert_eq!(admit(&throttle, key, key).0, Verdict::Send);
        }
        assert_eq!(admit(&throttle, "d", "d").0, Verdict::OverBudget { per_hour: 3 });
        // Repeats are never over budget: they are not sent.
        assert!(matches!(admit(&throttle, "a", "a2").0, Verdict::Repeat { .. }));
        // The window ends within the hour: its summary waits for budget.
        clock.advance(Duration::from_secs(120));
        assert!(due_now(&throttle, None).is_empty());
        clock.advance(Duration::from_secs(3600));
        let due = due_now(&throttle, None);
        assert_eq!(due.iter().map(|s| (s.key.as_str(), s.repeats)).collect::<Vec<_>>(), [("a", 1)]);
        assert_eq!(admit(&throttle, "d", "d").0, Verdict::Send);
    }

    #[test]
    fn a_zero_window_sends_everything_and_state_survives_processes() {
        let (dir, clock, throttle) = setup(0, None);
        for _ in 0..3 {
            assert_eq!(admit(&throttle, "a", "r").0, Verdict::Send);
        }
        // A second Throttle on the same spool (another crashwatch) shares
        // the counts.
        let first = Throttle::new(&spool(&dir), Duration::from_secs(60), None, clock.clone());
        let second = Throttle::new(&spool(&dir), Duration::from_secs(60), None, clock.clone());
        assert_eq!(admit(&first, "x", "x0").0, Verdict::Send);
        assert_eq!(admit(&second, "x", "x1").0, Verdict::Repeat { first_report: "x0".into(), repeats: 1 });
    }

    #[test]
    fn a_corrupt_state_file_starts_over() {
        let (dir, _clock, throttle) = setup(60, None);
        std::fs::write(dir.path().join("throttle.json"), b"{not json").unwrap();
        assert_eq!(admit(&throttle, "a", "r0").0, Verdict::Send);
        assert!(matches!(admit(&throttle, "a", "r1").0, Verdict::Repeat { .. }));
    }

    #[test]
    fn a_report_admitted_again_is_not_its_own_repeat() {
        // Its filing was interrupted after the admission and redone.
        let (_dir, _clock, throttle) = setup(60, None);
        assert_eq!(admit(&throttle, "a", "r0").0, Verdict::Send);
        assert_eq!(admit(&throttle, "a", "r0").0, Verdict::Send);
        assert_eq!(admit(&throttle, "a", "r1").0, Verdict::Repeat { first_report: "r0".into(), repeats: 1 });
    }

    #[test]
    fn a_summary_that_cannot_be_queued_stays_for_the_next_attempt() {
        let (_dir, clock, throttle) = setup(60, Some(10));
        admit(&throttle, "a", "r0");
        admit(&throttle, "a", "r1");
        clock.advance(Duration::from_secs(61));
        throttle.due(None, &mut |_: &Summary| false).unwrap();
        let due = due_now(&throttle, None);
        assert_eq!(due.iter().map(|s| s.repeats).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn a_withdrawn_first_report_opens_no_window_and_costs_no_budget() {
        let (_dir, _clock, throttle) = setup(60, Some(1));
        assert_eq!(admit(&throttle, "a", "r0").0, Verdict::Send);
        throttle.withdraw(&sig("a"), "r0").unwrap();
        // Not a repeat of a report Sentry never got, and the budget of one
        // is still there.
        assert_eq!(admit(&throttle, "a", "r1").0, Verdict::Send);
    }

    #[test]
    fn crashwatch_send_keeps_the_last_runs_budget() {
        let (dir, clock, throttle) = setup(60, Some(1));
        admit(&throttle, "a", "r0");
        admit(&throttle, "a", "r1");
        clock.advance(Duration::from_secs(61));
        let send = Throttle::for_send(&spool(&dir), clock.clone());
        assert!(due_now(&send, None).is_empty(), "the hour's budget of 1 is spent");
        clock.advance(Duration::from_secs(3600));
        assert_eq!(due_now(&send, None).len(), 1);
    }
}
