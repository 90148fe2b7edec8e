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
//! against a share of its limit, every [`CHECK_INTERVAL`] rather than every
//! sampling interval: a program can go from the threshold to the limit in
//! well under a second. The first time the working set reaches the threshold
//! it fires its [`SnapshotTrigger`], once; later crossings are only logged.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::cgroup::{MemoryCgroup, Version};

/// Samples kept for a report.
const KEEP: usize = 10;

/// How often the working set is compared with an `--oom-snapshot` threshold.
/// Two small reads of the cgroup's files: about 0.01% of a CPU.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(100);

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
    cgroup: MemoryCgroup,
}

impl Armed {
    fn check(&mut self, pid: i32) {
        let Some(usage) = self.cgroup.working_set() else { return };
        let threshold = self.watch.bytes;
        match self.watch.observe(usage) {
            Change::None => {}
            Change::Rose { first: true } => {
                if let Some(trigger) = self.trigger.take() {
                    let crossing = Crossing { at: OffsetDateTime::now_utc(), usage, threshold: trigger.threshold };
                    (trigger.fire)(crossing);
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
    }
}

/// The running sampler.
pub struct Sampler {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<(VecDeque<Sample>, Option<u64>)>,
    cgroup: Option<MemoryCgroup>,
}

impl Sampler {
    /// Samples process `pid` (and `cgroup`) now, then every `interval`;
    /// with a `trigger` (which needs the cgroup), also watches its threshold.
    pub fn start(
        pid: i32,
        cgroup: Option<MemoryCgroup>,
        interval: Duration,
        trigger: Option<SnapshotTrigger>,
    ) -> std::io::Result<Sampler> {
        let (stop, stopped) = mpsc::channel::<()>();
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
            (Some(trigger), Some(cgroup)) => Some(Armed {
                watch: ThresholdWatch::new(trigger.threshold),
                trigger: Some(trigger),
                cgroup: cgroup.clone(),
            }),
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
                armed.check(pid);
            }
            let mut ticks = 0u128;
            while stopped.recv_timeout(tick) == Err(mpsc::RecvTimeoutError::Timeout) {
                if let Some(armed) = armed.as_mut() {
                    armed.check(pid);
                }
                ticks += 1;
                if ticks.is_multiple_of(per_sample) {
                    take(&mut samples, &mut peak_rss);
                }
            }
            (samples, peak_rss)
        })?;
        Ok(Sampler { stop, thread, cgroup })
    }

    /// Stops sampling and returns what was seen, with the cgroup's peak and
    /// limit read now.
    pub fn finish(self) -> Memory {
        let _ = self.stop.send(());
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
mod tests {
    use super::*;

    #[test]
    fn reads_kib_fields() {
        let status = "Name:\tpython3\nVmHWM:\t   71972 kB\nVmRSS:\t   71960 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(71960 * 1024));
        assert_eq!(status_kib(status, "VmHWM:"), Some(71972 * 1024));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn thresholds_are_a_share_of_the_limit() {
        assert_eq!(Threshold { percent: 50, limit: 64 << 20 }.bytes(), 32 << 20);
        assert_eq!(Threshold { percent: 99, limit: 1000 }.bytes(), 990);
        assert_eq!(Threshold { percent: 1, limit: 150 }.bytes(), 1);
        // No overflow near the top of the range.
        assert_eq!(Threshold { percent: 99, limit: u64::MAX }.bytes(), (u128::from(u64::MAX) * 99 / 100) as u64);
    }

    #[test]
    fn the_watch_fires_on_the_first_rise_only() {
        let mut watch = ThresholdWatch::new(Threshold { percent: 50, limit: 100 });
        assert_eq!(watch.observe(10), Change::None);
        assert_eq!(watch.observe(49), Change::None);
        // Reaching the threshold exactly counts.
        assert_eq!(watch.observe(50), Change::Rose { first: true });
        assert_eq!(watch.observe(90), Change::None);
        assert_eq!(watch.observe(20), Change::Fell);
        assert_eq!(watch.observe(20), Change::None);
        assert_eq!(watch.observe(75), Change::Rose { first: false });
        assert_eq!(watch.observe(5), Change::Fell);
        assert_eq!(watch.observe(100), Change::Rose { first: false });
    }

    #[test]
    fn a_child_above_the_threshold_from_the_start_fires_at_once() {
        let mut watch = ThresholdWatch::new(Threshold { percent: 10, limit: 100 });
        assert_eq!(watch.observe(40), Change::Rose { first: true });
    }

    #[test]
    fn the_sampler_fires_when_the_working_set_reaches_the_threshold() {
        // A cgroup v1 directory as the kernel shows it, written by the test.
        let dir = tempfile::tempdir().unwrap();
        let cgroup = MemoryCgroup { version: Version::V1, dir: dir.path().to_path_buf() };
        // Usage first: the sampler may read between the two writes, and the
        // states in between must stay below the threshold.
        let set = |usage: u64, inactive_file: u64| {
            std::fs::write(dir.path().join("memory.usage_in_bytes"), format!("{usage}\n")).unwrap();
            std::fs::write(dir.path().join("memory.stat"), format!("total_inactive_file {inactive_file}\n")).unwrap();
        };
        // Usage over the threshold, but mostly reclaimable page cache.
        set(900, 600);
        let (fired_tx, fired) = mpsc::channel();
        let threshold = Threshold { percent: 50, limit: 1000 };
        let trigger = SnapshotTrigger { threshold, fire: Box::new(move |crossing| fired_tx.send(crossing).unwrap()) };
        let sampler =
            Sampler::start(std::process::id() as i32, Some(cgroup), Duration::from_secs(3600), Some(trigger)).unwrap();
        set(700, 100);
        let crossing = fired.recv_timeout(Duration::from_secs(60)).expect("the trigger fired");
        assert_eq!(crossing.usage, 600);
        assert_eq!(crossing.threshold, threshold);
        sampler.finish();
        // The trigger was consumed: a second call was impossible by type.
        assert!(fired.recv_timeout(Duration::ZERO).is_err());
    }

    #[test]
    fn samples_a_live_process_and_stops_at_once() {
        // The first sample is taken at start; finishing must not wait out
        // the (hour-long) interval.
        let sampler = Sampler::start(std::process::id() as i32, None, Duration::from_secs(3600), None).unwrap();
        let memory = sampler.finish();
        assert_eq!(memory.samples.len(), 1);
        assert!(memory.samples[0].rss.unwrap() > 0);
        assert!(memory.peak_rss.unwrap() >= memory.samples[0].rss.unwrap());
    }
}
