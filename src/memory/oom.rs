//! Was it the OOM killer? A SIGKILL cannot be intercepted, so the answer is
//! pieced together afterwards from two witnesses:
//!
//! - the `oom_kill` counter of the child's memory cgroup, read when the
//!   child started and again when it died: it moved if the OOM killer acted
//!   in the cgroup meanwhile;
//! - the kernel log's `Killed process PID (name) …` line for the child's
//!   own pid, which is the kernel saying exactly whom it killed.
//!
//! Either is evidence; a SIGKILL with neither (`kill -9`, a supervisor's
//! timeout) is not called an OOM kill.

use serde::{Deserialize, Serialize};

use super::cgroup::MemoryCgroup;
use super::kmsg::KernelLog;

/// Why a SIGKILL is taken for an OOM kill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Oom {
    /// How many OOM kills the child's cgroup counted while it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_oom_kills: Option<u64>,
    /// The kernel's line about killing the child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_line: Option<String>,
}

/// The witnesses, set up before the child starts.
pub struct OomWatch {
    cgroup: Option<MemoryCgroup>,
    kills_before: Option<u64>,
    kernel_log: Option<KernelLog>,
}

impl OomWatch {
    pub fn start(cgroup: Option<MemoryCgroup>) -> OomWatch {
        let kills_before = cgroup.as_ref().and_then(MemoryCgroup::oom_kills);
        let kernel_log = KernelLog::open_at_end();
        if cgroup.is_none() && kernel_log.is_none() {
            tracing::debug!("neither a memory cgroup nor the kernel log is readable: OOM kills cannot be told apart");
        }
        OomWatch { cgroup, kills_before, kernel_log }
    }

    /// Called when process `pid` was killed by SIGKILL: the evidence that the
    /// OOM killer did it, if there is any.
    pub fn assess(mut self, pid: i32) -> Option<Oom> {
        let kills_after = self.cgroup.as_ref().and_then(MemoryCgroup::oom_kills);
        let cgroup_oom_kills = match (self.kills_before, kills_after) {
            (Some(before), Some(after)) if after > before => Some(after - before),
            _ => None,
        };
        let kernel_line = self.kernel_log.as_mut().and_then(|log| log.oom_kill_of(pid));
        (cgroup_oom_kills.is_some() || kernel_line.is_some()).then_some(Oom { cgroup_oom_kills, kernel_line })
    }
}
