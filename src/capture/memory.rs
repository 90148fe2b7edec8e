//! How much memory the child used while it ran: a sampler thread reads its
//! RSS and high-water mark (`/proc/PID/status`) and its cgroup's usage once
//! per interval and keeps the last few samples. Reading `/proc/PID/status`
//! costs a few microseconds; at the default interval of one second the
//! sampler is invisible.
//!
//! An OOM kill gives no warning, so the samples are what a report can say
//! about the memory the child had just before: the last ones, the highest
//! RSS seen, and the cgroup's own peak, which the kernel keeps exactly.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::cgroup::{MemoryCgroup, Version};

/// Samples kept for a report.
const KEEP: usize = 10;

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

/// The running sampler.
pub struct Sampler {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<(VecDeque<Sample>, Option<u64>)>,
    cgroup: Option<MemoryCgroup>,
}

impl Sampler {
    /// Samples process `pid` (and `cgroup`) now, then every `interval`.
    pub fn start(pid: i32, cgroup: Option<MemoryCgroup>, interval: Duration) -> std::io::Result<Sampler> {
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
        // The first sample is taken here, not on the thread, so that even a
        // child that dies at once has one.
        let mut samples = VecDeque::with_capacity(KEEP);
        let mut peak_rss = None;
        take(&mut samples, &mut peak_rss);
        let thread = std::thread::Builder::new().name("memory".into()).spawn(move || {
            while stopped.recv_timeout(interval) == Err(mpsc::RecvTimeoutError::Timeout) {
                take(&mut samples, &mut peak_rss);
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
    fn samples_a_live_process_and_stops_at_once() {
        // The first sample is taken at start; finishing must not wait out
        // the (hour-long) interval.
        let sampler = Sampler::start(std::process::id() as i32, None, Duration::from_secs(3600)).unwrap();
        let memory = sampler.finish();
        assert_eq!(memory.samples.len(), 1);
        assert!(memory.samples[0].rss.unwrap() > 0);
        assert!(memory.peak_rss.unwrap() >= memory.samples[0].rss.unwrap());
    }
}
