//! Which runs get a session of their own, and the counts of the others.
//!
//! A crash loop (under `--restart`, systemd or Kubernetes) must not send an
//! envelope per restart forever. The first `per_hour` runs that start within
//! an hour on this spool get sessions of their own (a start update and a
//! final one); the runs beyond are counted, by how they ended, in buckets
//! of the minute they started, and the counts go out as `sessions`
//! aggregates, at most one envelope a minute: when a run ends a minute or
//! more after the last aggregates were queued, when a `--restart` loop is
//! over, and at the next start of crashwatch on this spool. Relay adds
//! counts up, so a bucket sent in two parts counts the same.
//!
//! Like the crash-loop state of reports, this must outlive crashwatch (in a
//! systemd loop each run is a new process): one JSON file in the spool
//! (`SPOOL/sessions.json`), read and rewritten (durably, through the spool's
//! directory: see `crate::spool`) under an exclusive lock on
//! `SPOOL/sessions.lock`. Times come from a [`Clock`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::sentry::clock::{Clock, from_unix_millis, unix_millis};
use crate::sentry::envelope::format_timestamp;
use crate::sentry::session::{Aggregates, Attrs, Bucket, Outcome, minute_of};
use crate::spool::{SpoolDir, StateError, StateFile};

const HOUR: Duration = Duration::from_secs(3600);

/// Aggregates are queued at most this often, unless a loop is over.
pub const AGGREGATE_EVERY: Duration = Duration::from_secs(60);

/// Whether a run gets a session of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Start and final updates of its own.
    Individual,
    /// Counted in the aggregates of its minute.
    Aggregated,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionBudgetError {
    #[error("failed to use the session state {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The state's file in the spool, and its lock.
const STATE_FILE: StateFile = StateFile { name: "sessions.json", lock: "sessions.lock", what: "session counts" };

/// The session state of one spool.
#[derive(Debug, Clone)]
pub struct SessionBudget {
    spool: SpoolDir,
    per_hour: u32,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Start times (ms) of the runs with sessions of their own in the last hour.
    #[serde(default)]
    individual_ms: Vec<u64>,
    /// Counts not yet queued.
    #[serde(default)]
    pending: Vec<Pending>,
    #[serde(default)]
    last_aggregate_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    #[serde(flatten)]
    attrs: Attrs,
    did: String,
    minute_ms: u64,
    #[serde(flatten)]
    counts: Bucket,
}

impl SessionBudget {
    /// The state of the spool whose directory is `spool`; `per_hour` runs
    /// an hour get sessions of their own.
    pub fn new(spool: &SpoolDir, per_hour: u32, clock: Arc<dyn Clock>) -> SessionBudget {
        SessionBudget { spool: spool.clone(), per_hour, clock }
    }

    /// Decides whether a run starting now gets a session of its own.
    pub fn admit(&self) -> Result<Admission, SessionBudgetError> {
        self.with_state(|state, now| {
            let hour_ago = unix_millis(now).saturating_sub(HOUR.as_millis() as u64);
            state.individual_ms.retain(|&ms| ms > hour_ago);
            if state.individual_ms.len() < self.per_hour as usize {
                state.individual_ms.push(unix_millis(now));
                Admission::Individual
            } else {
                Admission::Aggregated
            }
        })
    }

    /// Counts an aggregated run that started at `started` and ended with `outcome`.
    pub fn count(
        &self,
        attrs: &Attrs,
        did: &str,
        started: SystemTime,
        outcome: Outcome,
    ) -> Result<(), SessionBudgetError> {
        let minute_ms = unix_millis(minute_of(started));
        self.with_state(|state, _| {
            let slot = state.pending.iter_mut().find(|p| p.attrs == *attrs && p.did == did && p.minute_ms == minute_ms);
            match slot {
                Some(pending) => pending.counts.add(outcome, 1),
                None => {
                    let mut counts = Bucket::default();
                    counts.add(outcome, 1);
                    state.pending.push(Pending { attrs: attrs.clone(), did: did.to_owned(), minute_ms, counts });
                }
            }
        })
    }

    /// Gives `queue` the pending counts, one `sessions` item per release and
    /// environment, if the last were queued a minute ago or more, or
    /// whenever with `now`. Counts leave the state only once queued.
    pub fn due(&self, now: bool, queue: &mut dyn FnMut(&Aggregates) -> bool) -> Result<usize, SessionBudgetError> {
        self.with_state(|state, at| {
            let recent = at < from_unix_millis(state.last_aggregate_ms) + AGGREGATE_EVERY;
            if state.pending.is_empty() || (recent && !now) {
                return 0;
            }
            let mut groups: BTreeMap<(String, Option<String>), Vec<Pending>> = BTreeMap::new();
            for pending in state.pending.drain(..) {
                groups
                    .entry((pending.attrs.release.clone(), pending.attrs.environment.clone()))
                    .or_default()
                    .push(pending);
            }
            let mut queued = 0;
            for (_, group) in groups {
                let aggregates = Aggregates {
                    attrs: group[0].attrs.clone(),
                    aggregates: group
                        .iter()
                        .map(|p| Bucket {
                            started: format_timestamp(from_unix_millis(p.minute_ms)),
                            did: Some(p.did.clone()),
                            ..p.counts.clone()
                        })
                        .collect(),
                };
                if queue(&aggregates) {
                    queued += 1;
                } else {
                    state.pending.extend(group);
                }
            }
            if queued > 0 {
                state.last_aggregate_ms = unix_millis(at);
            }
            queued
        })
    }

    /// Runs `f` on the state under the lock and saves it.
    fn with_state<T>(&self, f: impl FnOnce(&mut State, SystemTime) -> T) -> Result<T, SessionBudgetError> {
        // The time is read under the lock: the one who waited sees it later.
        STATE_FILE
            .update(&self.spool, |state| f(state, self.clock.now()))
            .map_err(|StateError { path, source }| SessionBudgetError::Io { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentry::ManualClock;

    fn spool(dir: &tempfile::TempDir) -> SpoolDir {
        SpoolDir::open_root(dir.path(), crate::spool::Missing::Create).unwrap().unwrap()
    }

    fn attrs() -> Attrs {
        Attrs { release: "server@1".into(), environment: Some("prod".into()) }
    }

    fn due(budget: &SessionBudget, now: bool) -> Vec<Aggregates> {
        let mut out = Vec::new();
        budget
            .due(now, &mut |a: &Aggregates| {
                out.push(a.clone());
                true
            })
            .unwrap();
        out
    }

    #[test]
    fn runs_past_the_hourly_share_are_counted_per_minute() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000); // 22:13:20
        let clock = Arc::new(ManualClock::new(t0));
        let budget = SessionBudget::new(&spool(&dir), 2, clock.clone());
        assert_eq!(budget.admit().unwrap(), Admission::Individual);
        assert_eq!(budget.admit().unwrap(), Admission::Individual);
        assert_eq!(budget.admit().unwrap(), Admission::Aggregated);
        budget.count(&attrs(), "host", t0, Outcome::Crashed).unwrap();
        budget.count(&attrs(), "host", t0 + Duration::from_secs(30), Outcome::Crashed).unwrap();
        budget.count(&attrs(), "host", t0 + Duration::from_secs(45), Outcome::Abnormal).unwrap();

        // Nothing was ever queued: the first counts go at once.
        let sent = due(&budget, false);
        assert_eq!(sent.len(), 1);
        let buckets: Vec<(String, u32, u32)> =
            sent[0].aggregates.iter().map(|b| (b.started.clone(), b.crashed, b.abnormal)).collect();
        assert_eq!(buckets, [("2023-11-14T22:13:00Z".into(), 2, 0), ("2023-11-14T22:14:00Z".into(), 0, 1)]);
        assert_eq!(sent[0].attrs, attrs());

        // More within the minute wait, unless the loop is over.
        budget.count(&attrs(), "host", t0 + Duration::from_secs(50), Outcome::Exited).unwrap();
        assert!(due(&budget, false).is_empty());
        clock.advance(AGGREGATE_EVERY);
        assert_eq!(due(&budget, false)[0].aggregates[0].exited, 1);
        budget.count(&attrs(), "host", t0 + Duration::from_secs(70), Outcome::Errored).unwrap();
        assert_eq!(due(&budget, true)[0].aggregates[0].errored, 1);
        assert!(due(&budget, true).is_empty());

        // An hour after the first runs, runs get sessions of their own again.
        clock.advance(HOUR);
        assert_eq!(budget.admit().unwrap(), Admission::Individual);
    }

    #[test]
    fn counts_not_queued_stay() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(SystemTime::now()));
        let budget = SessionBudget::new(&spool(&dir), 0, clock);
        budget.count(&attrs(), "host", SystemTime::now(), Outcome::Crashed).unwrap();
        assert_eq!(budget.due(true, &mut |_| false).unwrap(), 0);
        assert_eq!(due(&budget, true)[0].aggregates[0].crashed, 1);
    }
}
