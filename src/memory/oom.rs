//! Was it the OOM killer? A SIGKILL cannot be intercepted, so the answer is
//! pieced together afterwards from two witnesses:
//!
//! - the kernel log's lines about each OOM kill ([`super::kmsg`]): the
//!   kernel saying exactly whom it killed (pid, name, memory cgroup);
//! - the `oom_kill` counter of the child's memory cgroup, read when the
//!   child started and again when it ended: it moved if the OOM killer acted
//!   in the cgroup meanwhile, on the child or on any other process there.
//!
//! The child's SIGKILL is the OOM killer's when the kernel named the
//! child's pid, or when the counter rose by more kills than the kernel log
//! names other victims for (with the log unreadable: when it rose at all).
//! A descendant killed by the OOM killer, with the child killed by someone
//! else afterwards (`kill -9`, a supervisor's timeout), is therefore not an
//! OOM kill of the child; the descendant's kill is kept as a fact of the
//! report.

use serde::{Deserialize, Serialize};

use super::cgroup::MemoryCgroup;
use super::kmsg::{KernelLog, OomKill};

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

/// What the witnesses say about one end of the child.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Why the child's SIGKILL is the OOM killer's; `None` when it is not
    /// (or the child did not die of SIGKILL).
    pub child: Option<Oom>,
    /// Other processes the kernel says the OOM killer killed in the child's
    /// cgroup while it ran: its descendants, typically.
    pub others: Vec<OomKill>,
    /// What the verdict rests on when that is worth saying.
    pub notes: Vec<String>,
}

/// The witnesses, set up before the child starts.
pub struct OomWatch {
    cgroup: Option<MemoryCgroup>,
    /// The cgroup's path as the kernel log names it.
    cgroup_path: Option<String>,
    kills_before: Option<u64>,
    kernel_log: Option<KernelLog>,
}

impl OomWatch {
    pub fn start(cgroup: Option<MemoryCgroup>) -> OomWatch {
        let kills_before = cgroup.as_ref().and_then(MemoryCgroup::oom_kills);
        let cgroup_path = cgroup.as_ref().and_then(MemoryCgroup::hierarchy_path);
        let kernel_log = KernelLog::open_at_end();
        if cgroup.is_none() && kernel_log.is_none() {
            tracing::debug!("neither a memory cgroup nor the kernel log is readable: OOM kills cannot be told apart");
        }
        OomWatch { cgroup, cgroup_path, kills_before, kernel_log }
    }

    /// Called when process `pid` (the child) has ended, `sigkilled` when by
    /// SIGKILL: whether the OOM killer killed it, and whom else it killed
    /// in its cgroup.
    pub fn assess(mut self, pid: i32, sigkilled: bool) -> Verdict {
        let kills_after = self.cgroup.as_ref().and_then(MemoryCgroup::oom_kills);
        let counted = match (self.kills_before, kills_after) {
            (Some(before), Some(after)) if after > before => Some(after - before),
            _ => None,
        };
        let logged = self.kernel_log.as_mut().map(KernelLog::oom_kills);
        judge(pid, sigkilled, counted, logged, self.cgroup_path.as_deref())
    }
}

/// The verdict from the facts: `counted` kills in the child's cgroup (when
/// the counter moved), the kills the kernel `logged` (`None`: the log is
/// unreadable), and the cgroup's path in the hierarchy.
fn judge(pid: i32, sigkilled: bool, counted: Option<u64>, logged: Option<Vec<OomKill>>, path: Option<&str>) -> Verdict {
    let log_readable = logged.is_some();
    let mut others = Vec::new();
    // Victims the kernel named without their cgroup (its summary line was
    // rate-limited): they may or may not explain the counter.
    let mut unplaced = Vec::new();
    let mut own = None;
    for kill in logged.into_iter().flatten() {
        if kill.pid == pid {
            own = Some(kill);
            continue;
        }
        match (&kill.memcg, path) {
            (Some(memcg), Some(path)) if within(memcg, path) => others.push(kill),
            (Some(_), Some(_)) => {} // another cgroup's business
            _ => unplaced.push(kill),
        }
    }
    let mut notes = Vec::new();
    let explained = (others.len() + unplaced.len()) as u64;
    let child = match (sigkilled, own, counted) {
        (false, ..) => None,
        (true, Some(own), _) => Some(Oom { cgroup_oom_kills: counted, kernel_line: own.line }),
        (true, None, Some(n)) if n > explained => {
            if !log_readable {
                notes.push(
                    "the kernel log is not readable here: the OOM kill rests on the cgroup's counter alone".into(),
                );
            }
            Some(Oom { cgroup_oom_kills: Some(n), kernel_line: None })
        }
        (true, None, Some(n)) => {
            notes.push(format!(
                "the child's memory cgroup counted {n} OOM kill{} while it ran, but the kernel named other \
                 victims ({}), not the child: its SIGKILL came from elsewhere",
                if n == 1 { "" } else { "s" },
                others.iter().chain(&unplaced).map(victim).collect::<Vec<_>>().join(", ")
            ));
            None
        }
        (true, None, None) => None,
    };
    Verdict { child, others, notes }
}

/// `pid 42 (hog)`
pub fn victim(kill: &OomKill) -> String {
    match &kill.comm {
        Some(comm) => format!("pid {} ({comm})", kill.pid),
        None => format!("pid {}", kill.pid),
    }
}

/// Whether the kernel's cgroup path `memcg` (from the hierarchy's root) is
/// `ours` or below it. `ours` is relative to crashwatch's cgroup namespace,
/// which may start deeper than the hierarchy's root: it is looked for as a
/// run of whole components anywhere in `memcg`.
fn within(memcg: &str, ours: &str) -> bool {
    let theirs: Vec<&str> = memcg.split('/').filter(|c| !c.is_empty()).collect();
    let ours: Vec<&str> = ours.split('/').filter(|c| !c.is_empty()).collect();
    ours.is_empty() || theirs.windows(ours.len()).any(|w| w == ours.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "/process_api/15b8/crashwatch-9-0";

    fn kill(pid: i32, memcg: Option<&str>) -> OomKill {
        OomKill {
            pid,
            comm: Some("hog".into()),
            memcg: memcg.map(str::to_owned),
            line: Some(format!("Memory cgroup out of memory: Killed process {pid} (hog)")),
        }
    }

    #[test]
    fn the_child_named_by_the_kernel_is_its_victim() {
        let v = judge(10, true, Some(1), Some(vec![kill(10, Some(OURS))]), Some(OURS));
        assert_eq!(v.child.unwrap().kernel_line.unwrap(), "Memory cgroup out of memory: Killed process 10 (hog)");
        assert!(v.others.is_empty() && v.notes.is_empty());
    }

    #[test]
    fn a_descendant_killed_then_the_child_sigkilled_is_no_oom_kill_of_the_child() {
        let v = judge(10, true, Some(1), Some(vec![kill(11, Some(OURS))]), Some(OURS));
        assert_eq!(v.child, None);
        assert_eq!(v.others, [kill(11, Some(OURS))]);
        assert_eq!(v.notes.len(), 1);
        assert!(v.notes[0].contains("named other victims (pid 11 (hog)), not the child"), "{:?}", v.notes);
        // The same when the kernel's summary line was rate-limited away.
        let v = judge(10, true, Some(1), Some(vec![kill(11, None)]), Some(OURS));
        assert_eq!((v.child, v.others.len()), (None, 0));
    }

    #[test]
    fn the_counter_alone_convicts_only_what_nothing_else_explains() {
        // The log is unreadable: the counter is all there is.
        let v = judge(10, true, Some(1), None, Some(OURS));
        assert_eq!(v.child, Some(Oom { cgroup_oom_kills: Some(1), kernel_line: None }));
        assert!(v.notes[0].contains("counter alone"));
        // Two kills counted, one named (a descendant): the other is the child's.
        let v = judge(10, true, Some(2), Some(vec![kill(11, Some(OURS))]), Some(OURS));
        assert_eq!(v.child, Some(Oom { cgroup_oom_kills: Some(2), kernel_line: None }));
        // Kills in other cgroups explain nothing here.
        let v = judge(10, true, Some(1), Some(vec![kill(12, Some("/elsewhere/crashwatch-9-0"))]), Some(OURS));
        assert!(v.child.is_some() && v.others.is_empty());
        // No SIGKILL, no OOM kill of the child, whatever was counted.
        let v = judge(10, false, Some(1), Some(vec![kill(11, Some(OURS))]), Some(OURS));
        assert_eq!((v.child, v.others.len()), (None, 1));
        assert_eq!(judge(10, true, None, Some(vec![]), Some(OURS)), Verdict::default());
    }

    #[test]
    fn cgroup_paths_match_whole_components_and_namespaces() {
        assert!(within(OURS, OURS));
        assert!(within("/process_api/15b8/crashwatch-9-0/sub", OURS));
        assert!(within("/kubepods/pod1/process_api/15b8/crashwatch-9-0", OURS));
        assert!(!within("/process_api/15b8/crashwatch-9-01", OURS));
        assert!(!within("/process_api/15b8", OURS));
        assert!(within("/anything", "/"));
    }
}
