//! `--oom-snapshot PERCENT` in `crashwatch run`: the glue between the memory
//! sampler, which sees the child's memory reach PERCENT of its cgroup's
//! limit, the tracer thread, which takes the snapshot, and the report.
//!
//! ```text
//!  sampler thread          tracer thread                 run, at the end
//!  working set ≥ share ──► request (SIGURG, queued) ──►  snapshot taken,
//!  (once) records the      discarded by the tracer,      kept here
//!  crossing                the child dumped, runs on ──► OOM kill: into the
//!                                                        report; otherwise
//!                                                        the dump is deleted
//! ```
//!
//! A snapshot alone is no report: the child was alive and well when it was
//! taken. Kept only for an OOM kill, it is what that report lacked, the
//! stacks of a process that got no warning.

use std::sync::{Arc, Mutex, PoisonError};

use crate::capture::SnapshotCapture;
use crate::errors::Chain;
use crate::memory::cgroup::MemoryCgroup;
use crate::memory::sampler::{Crossing, SnapshotTrigger, Threshold};
use crate::ptrace;
use crate::report::human_bytes;

/// An armed `--oom-snapshot` for one child. Clones share the snapshot.
#[derive(Clone)]
pub struct OomSnapshot {
    threshold: Threshold,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    crossing: Option<Crossing>,
    capture: Option<Box<SnapshotCapture>>,
}

/// A snapshot that was taken, with the crossing that asked for it.
pub struct TakenSnapshot {
    pub crossing: Crossing,
    pub capture: Box<SnapshotCapture>,
}

impl OomSnapshot {
    /// `--oom-snapshot PERCENT` for a child in `cgroup`; `None`, with a
    /// warning that says why, when it cannot work here. The program runs
    /// either way: a snapshot is a diagnostic, not a condition of running.
    pub fn arm(percent: Option<u8>, cgroup: Option<&MemoryCgroup>, traced: bool) -> Option<OomSnapshot> {
        let percent = percent?;
        if !traced {
            tracing::warn!("--oom-snapshot is ignored: the child is not traced, since the spool is not usable");
            return None;
        }
        let Some(limit) = cgroup.and_then(MemoryCgroup::limit) else {
            let place = cgroup.map_or_else(|| "no memory cgroup".to_string(), |cg| cg.dir.display().to_string());
            tracing::warn!(
                "--oom-snapshot is ignored: the child's memory cgroup ({place}) has no limit to take {percent}% of; \
                 give --memory-limit, or run crashwatch in a cgroup with a limit (systemd MemoryMax=, docker --memory)"
            );
            return None;
        };
        let threshold = Threshold { percent, limit };
        tracing::debug!(percent, limit, threshold = threshold.bytes(), "--oom-snapshot armed");
        Some(OomSnapshot { threshold, state: Arc::default() })
    }

    /// The sampler's trigger for child `pid`: records the crossing and asks
    /// the tracer for the snapshot.
    pub fn trigger(&self, pid: i32) -> SnapshotTrigger {
        let state = Arc::clone(&self.state);
        SnapshotTrigger {
            threshold: self.threshold,
            fire: Box::new(move |crossing: Crossing| {
                tracing::info!(
                    pid,
                    "the child's memory reached {} of its {} limit ({:.0}%, --oom-snapshot {}%; by {}): taking a \
                     snapshot of its stacks",
                    human_bytes(crossing.usage),
                    human_bytes(crossing.threshold.limit),
                    crossing.usage as f64 * 100.0 / crossing.threshold.limit.max(1) as f64,
                    crossing.threshold.percent,
                    crossing.noticed_by.describe()
                );
                state.lock().unwrap_or_else(PoisonError::into_inner).crossing = Some(crossing);
                if let Err(e) = ptrace::request_snapshot(pid) {
                    tracing::warn!(pid, "no memory snapshot: {}", Chain(&e));
                }
            }),
        }
    }

    /// Keeps the snapshot the tracer took for the end of the run.
    pub fn keep(&self, capture: Box<SnapshotCapture>) {
        {
            match &capture.dump {
                Ok(dump) => tracing::info!(
                    pid = capture.pid,
                    "snapshot of pid {} written: {} thread{}, {}, the child held for {:.1} ms",
                    capture.pid,
                    capture.threads,
                    if capture.threads == 1 { "" } else { "s" },
                    human_bytes(dump.size),
                    capture.elapsed.as_secs_f64() * 1000.0
                ),
                Err(e) => tracing::warn!(pid = capture.pid, "snapshot of pid {} failed: {}", capture.pid, Chain(e)),
            }
            for e in &capture.soft_errors {
                tracing::debug!(pid = capture.pid, "snapshot: {}", Chain(e));
            }
            self.state.lock().unwrap_or_else(PoisonError::into_inner).capture = Some(capture);
        }
    }

    /// The snapshot, if one was taken, once the child has ended.
    pub fn take(self) -> Option<TakenSnapshot> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let capture = state.capture.take()?;
        let crossing = state.crossing.take()?;
        Some(TakenSnapshot { crossing, capture })
    }
}

impl TakenSnapshot {
    /// Deletes the dump of a snapshot no report needs.
    pub fn discard(self, why: &str) {
        if let Ok(dump) = &self.capture.dump {
            if let Err(e) = std::fs::remove_file(&dump.path) {
                tracing::warn!("failed to delete the memory snapshot {}: {e}", dump.path.display());
                return;
            }
            tracing::info!("the memory snapshot was discarded: {why}");
        }
    }
}
