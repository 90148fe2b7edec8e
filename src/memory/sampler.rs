//! How much memory the child used while it ran: a sampler thread reads its
//! RSS and high-water mark (`/proc/PID/status`) and its cgroup's usage once
//! per interval and keeps the last few samples. Reading `/proc/PID/status`
//! costs a few microseconds; at the default interval of one second the
//! sampler is invisible.
//!
//! An OOM kill gives no warning, so the samples are what a report can say
//! about the memory the child had just before: the last ones, the highest
//! RSS seen, and the cgroup's own peak, which the kernel keeps exactly.
//!
//! With `--oom-snapshot` the sampler also watches the cgroup's working set
//! (usage less inactive page cache, see [`MemoryCgroup::working_set`])
//! against a share of its limit. The kernel wakes it when the usage nears
//! that point ([`super::notify`]: a cgroup v1 threshold notification, or
//! cgroup v2's `memory.high`), and it checks every [`CHECK_INTERVAL`] as
//! well, the only way where neither works: a program can go from the
//! threshold to the limit in a few milliseconds. The first time the working
//! set reaches the threshold it fires its [`SnapshotTrigger`], once; later
//! crossings are only logged. A `memory.high` set for it is restored once
//! the snapshot is taken ([`Sampler::snapshot_taken`]), or after
//! [`HOLD_LIMIT`] if none comes.
//!
//! One `poll` waits for everything: the kernel's notification, the next
//! periodic check, and the sampler's stop (an eventfd), so that stopping
//! is immediate.

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::cgroup::{MemoryCgroup, Version};
use super::notify::{HighGuard, Mechanism, Notifier, level_for};
use crate::errors::Chain;
use crate::sys::wakeup::{self, EventFd, READABLE};

/// Samples kept for a report.
const KEEP: usize = 10;

/// How often the working set is compared with an `--oom-snapshot` threshold.
/// Two small reads of the cgroup's files: about 0.01% of a CPU.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// How long a `memory.high` set for the snapshot stays after the trigger
/// fired when no snapshot is reported (the request was lost, or failed):
/// the child is not left throttled.
pub const HOLD_LIMIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The child's resident set, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss: Option<u64>,
    /// Memory charged to the child's cgroup, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_usage: Option<u64>,
}

/// What is known of the child's memory when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// The last samples, oldest first.
    pub samples: Vec<Sample>,
    /// The highest resident set of the child seen (its VmHWM), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<CgroupMemory>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupMemory {
    pub version: Version,
    pub path: std::path::PathBuf,
    /// The cgroup's limit, bytes; absent when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The most memory ever charged to the cgroup, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak: Option<u64>,
}

/// A share of a memory limit: `--oom-snapshot PERCENT` of the cgroup's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    /// 1..=99.
    pub percent: u8,
    /// The cgroup's limit, bytes.
    pub limit: u64,
}

impl Threshold {
    /// The threshold in bytes (rounded down).
    pub fn bytes(self) -> u64 {
        (u128::from(self.limit) * u128::from(self.percent) / 100) as u64
    }
}

/// The moment the working set first reached the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crossing {
    pub at: OffsetDateTime,
    /// The working set that reached it, bytes.
    pub usage: u64,
    pub threshold: Threshold,
    /// What told crashwatch.
    pub noticed_by: Mechanism,
}

/// What to do when the child's memory first reaches a threshold.
pub struct SnapshotTrigger {
    pub threshold: Threshold,
    /// Called once, on the sampler thread; must not block for long.
    pub fire: Box<dyn FnOnce(Crossing) + Send>,
}

/// The watch over one threshold: it fires on the first rise and only
/// reports the later ones, so a child that breathes around the threshold
/// gets one snapshot, not one per breath.
#[derive(Debug)]
struct ThresholdWatch {
    bytes: u64,
    above: bool,
    fired: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    None,
    /// Reached the threshold; `first` only the first time.
    Rose {
        first: bool,
    },
    Fell,
}

impl ThresholdWatch {
    fn new(threshold: Threshold) -> Self {
        ThresholdWatch { bytes: threshold.bytes(), above: false, fired: false }
    }

    fn observe(&mut self, usage: u64) -> Change {
        let above = usage >= self.bytes;
        if above == self.above {
            return Change::None;
        }
        self.above = above;
        if !above {
            return Change::Fell;
        }
        let first = !self.fired;
        self.fired = true;
        Change::Rose { first }
    }
}

/// The trigger with its watch, on the sampler thread.
struct Armed {
    watch: ThresholdWatch,
    trigger: Option<SnapshotTrigger>,
    threshold: Threshold,
    cgroup: MemoryCgroup,
    /// The kernel's notification; `None`: the periodic check only.
    notifier: Option<Notifier>,
    /// A `memory.high` kept at the point until the snapshot is taken, and
    /// when it is given back at the latest.
    held: Option<(HighGuard, Instant)>,
}

impl Armed {
    /// `created`: crashwatch made `cgroup`, so it may set its memory.high.
    fn new(pid: i32, trigger: SnapshotTrigger, cgroup: MemoryCgroup, created: bool) -> Armed {
        let threshold = trigger.threshold;
        let reclaimable = reclaimable(&cgroup).unwrap_or(0);
        let notifier = match level_for(threshold.bytes(), reclaimable, threshold.limit) {
            None => Err(format!(
                "the threshold plus the page cache it may reclaim ({reclaimable} bytes) is the limit itself"
            )),
            Some(level) => Notifier::arm(&cgroup, level, created).map_err(|e| Chain(&e).to_string()),
        };
        let notifier = match notifier {
            Ok(notifier) => {
                tracing::debug!(
                    pid,
                    threshold = threshold.bytes(),
                    level = notifier.level(),
                    "--oom-snapshot: the kernel wakes crashwatch at the threshold ({}), checked every {} ms as well",
                    notifier.mechanism().describe(),
                    CHECK_INTERVAL.as_millis()
                );
                Some(notifier)
            }
            Err(why) => {
                tracing::debug!(
                    pid,
                    threshold = threshold.bytes(),
                    "--oom-snapshot: the memory is checked every {} ms, with no notification from the kernel: {why}",
                    CHECK_INTERVAL.as_millis()
                );
                None
            }
        };
        Armed { watch: ThresholdWatch::new(threshold), trigger: Some(trigger), threshold, cgroup, notifier, held: None }
    }

    /// What the sampler's `poll` waits on for the kernel.
    fn interest(&self) -> Option<(std::os::fd::BorrowedFd<'_>, i16)> {
        self.notifier.as_ref().map(Notifier::interest)
    }

    /// Whether the kernel's notification is waiting to be read.
    fn pending(&self) -> bool {
        let Some((fd, events)) = self.interest() else { return false };
        wakeup::poll(&[(fd, events)], Duration::ZERO).is_ok_and(|r| r.first().is_some_and(|r| *r != 0))
    }

    /// The kernel's notification came: checks now.
    fn woken(&mut self, pid: i32) {
        let Some(notifier) = self.notifier.as_mut() else { return };
        match notifier.acknowledge() {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::debug!(pid, "--oom-snapshot: no more notifications from the kernel: {}", Chain(&e));
                self.notifier = None;
                return;
            }
        }
        let mechanism = notifier.mechanism();
        if self.check(pid, mechanism) || self.watch.above {
            return;
        }
        // Woken, yet the working set is below the threshold: the page cache
        // grew. The level follows it, up to the limit.
        let Some(notifier) = self.notifier.as_mut() else { return };
        let reclaimable = reclaimable(&self.cgroup).unwrap_or(0);
        match level_for(self.threshold.bytes(), reclaimable, self.threshold.limit) {
            Some(level) if level > notifier.level() => {
                match notifier.raise(&self.cgroup, level) {
                    Ok(true) => tracing::debug!(
                        pid,
                        level,
                        reclaimable,
                        "--oom-snapshot: the kernel's level moved up with the page cache"
                    ),
                    // The cgroup's own memory.high, which is not moved.
                    Ok(false) => {}
                    Err(e) => {
                        tracing::debug!(
                            pid,
                            "--oom-snapshot: the memory is checked every {} ms only: {}",
                            CHECK_INTERVAL.as_millis(),
                            Chain(&e)
                        );
                        self.notifier = None;
                    }
                }
            }
            Some(_) => {}
            None => {
                tracing::debug!(
                    pid,
                    reclaimable,
                    "--oom-snapshot: the memory is checked every {} ms only: with its page cache the level would be the limit",
                    CHECK_INTERVAL.as_millis()
                );
                self.notifier = None;
            }
        }
    }

    /// Compares the working set with the threshold; true when it fired the
    /// trigger.
    fn check(&mut self, pid: i32, noticed_by: Mechanism) -> bool {
        let Some(usage) = self.cgroup.working_set() else { return false };
        let threshold = self.watch.bytes;
        match self.watch.observe(usage) {
            Change::None => {}
            Change::Rose { first: true } => {
                if let Some(trigger) = self.trigger.take() {
                    let crossing =
                        Crossing { at: OffsetDateTime::now_utc(), usage, threshold: trigger.threshold, noticed_by };
                    (trigger.fire)(crossing);
                    // Nothing more to be woken for; a memory.high stays
                    // until the snapshot is taken.
                    if let Some(guard) = self.notifier.take().and_then(Notifier::disarm) {
                        self.held = Some((guard, Instant::now() + HOLD_LIMIT));
                    }
                    return true;
                }
            }
            Change::Rose { first: false } => tracing::debug!(
                pid,
                usage,
                threshold,
                "memory is above the --oom-snapshot threshold again; its one snapshot was already taken"
            ),
            Change::Fell => tracing::debug!(pid, usage, threshold, "memory fell below the --oom-snapshot threshold"),
        }
        false
    }

    /// Gives back a memory.high held for the snapshot: now, or (`overdue`
    /// only) when its hold is over.
    fn release(&mut self, overdue_only: bool) {
        let due = self.held.as_ref().is_some_and(|(_, until)| !overdue_only || Instant::now() >= *until);
        if !due {
            return;
        }
        let Some((guard, _)) = self.held.take() else { return };
        let (path, previous) = (guard.path().to_path_buf(), guard.previous().to_string());
        match guard.restore() {
            Ok(()) => tracing::debug!(
                "{} given back its value {previous}{}",
                path.display(),
                if overdue_only { ": no snapshot came" } else { " after the snapshot" }
            ),
            Err(e) => tracing::warn!("{}", Chain(&e)),
        }
    }

    fn hold_until(&self) -> Option<Instant> {
        self.held.as_ref().map(|(_, until)| *until)
    }
}

/// The page cache the kernel would reclaim before an OOM kill, bytes.
fn reclaimable(cgroup: &MemoryCgroup) -> Option<u64> {
    Some(cgroup.usage()?.saturating_sub(cgroup.working_set()?))
}

enum Message {
    Stop,
    SnapshotTaken,
}

/// The running sampler.
pub struct Sampler {
    control: mpsc::Sender<Message>,
    wake: Arc<EventFd>,
    thread: JoinHandle<(VecDeque<Sample>, Option<u64>)>,
    cgroup: Option<MemoryCgroup>,
}

impl Sampler {
    /// Samples process `pid` (and `cgroup`) now, then every `interval`;
    /// with a `trigger` (which needs the cgroup), also watches its threshold.
    /// `created`: crashwatch made `cgroup` for the child (`--memory-limit`),
    /// so the trigger may set its `memory.high` (cgroup v2).
    pub fn start(
        pid: i32,
        cgroup: Option<MemoryCgroup>,
        created: bool,
        interval: Duration,
        trigger: Option<SnapshotTrigger>,
    ) -> std::io::Result<Sampler> {
        let (control, messages) = mpsc::channel::<Message>();
        let wake = Arc::new(EventFd::new()?);
        let woken = Arc::clone(&wake);
        let sampled = cgroup.clone();
        let take = move |samples: &mut VecDeque<Sample>, peak_rss: &mut Option<u64>| {
            let (rss, hwm) = process_memory(pid);
            *peak_rss = (*peak_rss).max(hwm);
            if samples.len() == KEEP {
                samples.pop_front();
            }
            let cgroup_usage = sampled.as_ref().and_then(MemoryCgroup::usage);
            samples.push_back(Sample { at: OffsetDateTime::now_utc(), rss, cgroup_usage });
        };
        let mut armed = match (trigger, &cgroup) {
            (Some(trigger), Some(cgroup)) => Some(Armed::new(pid, trigger, cgroup.clone(), created)),
            _ => None,
        };
        // Checking the threshold more often than sampling: a sample is kept
        // every `per_sample` ticks.
        let tick = if armed.is_some() { interval.min(CHECK_INTERVAL) } else { interval };
        let per_sample = (interval.as_nanos() / tick.as_nanos().max(1)).max(1);
        // The first sample is taken here, not on the thread, so that even a
        // child that dies at once has one.
        let mut samples = VecDeque::with_capacity(KEEP);
        let mut peak_rss = None;
        take(&mut samples, &mut peak_rss);
        let thread = std::thread::Builder::new().name("memory".into()).spawn(move || {
            if let Some(armed) = armed.as_mut() {
                armed.check(pid, Mechanism::Polling);
            }
            let mut ticks = 0u128;
            let mut next_tick = Instant::now() + tick;
            loop {
                let deadline = armed.as_ref().and_then(Armed::hold_until).map_or(next_tick, |t| t.min(next_tick));
                let mut fds = vec![(woken.as_fd(), READABLE)];
                fds.extend(armed.as_ref().and_then(Armed::interest));
                let revents = wakeup::poll(&fds, deadline.saturating_duration_since(Instant::now()));
                drop(fds);
                let revents = revents.unwrap_or_else(|e| {
                    // Never seen; without this the loop would spin.
                    tracing::warn!("the memory sampler cannot wait with poll: {e}");
                    std::thread::sleep(tick);
                    Vec::new()
                });
                if revents.first().is_some_and(|r| *r != 0) {
                    let _ = woken.take();
                }
                loop {
                    match messages.try_recv() {
                        Ok(Message::SnapshotTaken) => {
                            if let Some(armed) = armed.as_mut() {
                                armed.release(false);
                            }
                        }
                        Err(mpsc::TryRecvError::Empty) => break,
                        Ok(Message::Stop) | Err(mpsc::TryRecvError::Disconnected) => return (samples, peak_rss),
                    }
                }
                if let Some(armed) = armed.as_mut() {
                    if revents.get(1).is_some_and(|r| *r != 0) {
                        armed.woken(pid);
                    }
                    armed.release(true);
                }
                let now = Instant::now();
                if now >= next_tick {
                    // A late wake-up (a suspended machine) does not make up
                    // for the ticks it missed.
                    next_tick += tick;
                    if next_tick <= now {
                        next_tick = now + tick;
                    }
                    if let Some(armed) = armed.as_mut() {
                        // A notification that came while this thread waited
                        // for a CPU, after its poll returned, is what told.
                        if armed.pending() {
                            armed.woken(pid);
                        }
                        armed.check(pid, Mechanism::Polling);
                    }
                    ticks += 1;
                    if ticks.is_multiple_of(per_sample) {
                        take(&mut samples, &mut peak_rss);
                    }
                }
            }
        })?;
        Ok(Sampler { control, wake, thread, cgroup })
    }

    /// The snapshot the trigger asked for was taken (or failed): a
    /// `memory.high` held for it is given back now.
    pub fn snapshot_taken(&self) {
        if self.control.send(Message::SnapshotTaken).is_ok() {
            let _ = self.wake.notify();
        }
    }

    /// Stops sampling and returns what was seen, with the cgroup's peak and
    /// limit read now.
    pub fn finish(self) -> Memory {
        let _ = self.control.send(Message::Stop);
        let _ = self.wake.notify();
        let (samples, peak_rss) = self.thread.join().unwrap_or_default();
        // A sample taken after the child died has nothing in it.
        let samples = samples.into_iter().filter(|s| s.rss.is_some() || s.cgroup_usage.is_some()).collect();
        let cgroup = self.cgroup.map(|cg| CgroupMemory {
            version: cg.version,
            limit: cg.limit(),
            peak: cg.peak(),
            path: cg.dir,
        });
        Memory { samples, peak_rss, cgroup }
    }
}

/// `(VmRSS, VmHWM)` of a process, bytes; `None`s once it is gone.
fn process_memory(pid: i32) -> (Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return (None, None) };
    (status_kib(&status, "VmRSS:"), status_kib(&status, "VmHWM:"))
}

/// A `Field:   1234 kB` line of `/proc/PID/status`, in bytes.
fn status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line[field.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests;
