//! The kernel's own word on OOM kills, read from `/dev/kmsg`. Each kill
//! leaves two records (kernel ≥ 4.19):
//!
//! ```text
//! oom-kill:constraint=CONSTRAINT_MEMCG,…,oom_memcg=/a/b,task_memcg=/a/b,task=hog,pid=31280,uid=0
//! Memory cgroup out of memory: Killed process 31280 (hog) total-vm:68044kB, …
//! ```
//!
//! The first names the victim's memory cgroup; the kernel prints it before
//! the kill but rate-limits it (10 in 5 s), so a burst of kills may leave
//! only the second, which is never rate-limited and names pid and `comm`.
//!
//! The log is opened when the child starts and positioned at its end, so
//! only records written while the child ran are read later. Reading needs
//! CAP_SYSLOG where `kernel.dmesg_restrict` is set; without it the log is
//! simply not available and the cgroup counter stands alone.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

use serde::{Deserialize, Serialize};

/// The kernel log from a point in time on.
pub struct KernelLog {
    file: File,
}

/// One process the OOM killer killed, as the kernel log tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OomKill {
    pub pid: i32,
    /// The process's name (`comm`, at most 15 bytes) as the kernel printed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    /// Its memory cgroup, as a path from the root of the hierarchy
    /// (`task_memcg=`); unknown when the kernel's summary line was
    /// rate-limited away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memcg: Option<String>,
    /// The `Killed process PID (comm) …` line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
}

impl KernelLog {
    /// Opens `/dev/kmsg` positioned after the last record; `None` when it
    /// cannot be read here.
    pub fn open_at_end() -> Option<KernelLog> {
        let mut file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open("/dev/kmsg").ok()?;
        file.seek(SeekFrom::End(0)).ok()?;
        Some(KernelLog { file })
    }

    /// Every OOM kill the kernel logged since the log was opened (or since
    /// the last call), oldest first.
    pub fn oom_kills(&mut self) -> Vec<OomKill> {
        let mut kills = Vec::new();
        // One record per read; a record is at most a few KiB.
        let mut buf = vec![0u8; 16 << 10];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => add_record(&mut kills, &String::from_utf8_lossy(&buf[..n])),
                // EPIPE: records were overwritten before we read them; the
                // next read continues with the oldest one still there.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break, // EAGAIN: read everything there is
            }
        }
        kills
    }
}

/// Adds what a `/dev/kmsg` record (`prio,seq,usec,flags;message`) says
/// about an OOM kill to `kills`: the two lines of one kill become one entry.
fn add_record(kills: &mut Vec<OomKill>, record: &str) {
    let message = record.split_once(';').map_or(record, |(_, m)| m);
    let message = message.lines().next().unwrap_or_default().trim_end();
    let (pid, comm, memcg, line) = if let Some(summary) = message.strip_prefix("oom-kill:") {
        let Some((pid, comm, memcg)) = parse_summary(summary) else { return };
        (pid, Some(comm), Some(memcg), None)
    } else if let Some((pid, comm)) = parse_killed(message) {
        (pid, Some(comm), None, Some(message.to_string()))
    } else {
        return;
    };
    // The summary comes first; its `Killed process` line completes it.
    match kills.iter_mut().rev().find(|k| k.pid == pid && (k.line.is_none() || line.is_none())) {
        Some(kill) => {
            kill.comm = kill.comm.take().or(comm);
            kill.memcg = kill.memcg.take().or(memcg);
            kill.line = kill.line.take().or(line);
        }
        None => kills.push(OomKill { pid, comm, memcg, line }),
    }
}

/// `constraint=…,task_memcg=PATH,task=COMM,pid=PID,uid=UID` → (pid, comm,
/// path). Parsed from the right: a path or a name may hold a comma.
fn parse_summary(summary: &str) -> Option<(i32, String, String)> {
    let (rest, _uid) = summary.rsplit_once(",uid=")?;
    let (rest, pid) = rest.rsplit_once(",pid=")?;
    let (rest, comm) = rest.rsplit_once(",task=")?;
    let (_, memcg) = rest.rsplit_once("task_memcg=")?;
    Some((pid.parse().ok()?, comm.to_string(), memcg.to_string()))
}

/// `… Killed process PID (COMM) total-vm:…` → (pid, comm).
fn parse_killed(message: &str) -> Option<(i32, String)> {
    let (_, rest) = message.split_once("Killed process ")?;
    let (pid, rest) = rest.split_once(" (")?;
    // A name may hold `) `; the kernel's next field follows the last one.
    let comm = match rest.rfind(") total-vm") {
        Some(end) => &rest[..end],
        None => &rest[..rest.rfind(')')?],
    };
    Some((pid.parse().ok()?, comm.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Read off this project's machines (a memory cgroup OOM kill).
    const SUMMARY: &str = "6,2572,11443111270,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,\
                           mems_allowed=0,oom_memcg=/process_api/15b8/crashwatch-31271-0,task_memcg=/process_api/\
                           15b8/crashwatch-31271-0,task=grow-O0gWallWer,pid=31280,uid=0\n";
    const KILLED: &str = "3,2573,11443111282,-;Memory cgroup out of memory: Killed process 31280 \
                          (grow-O0gWallWer) total-vm:68044kB, anon-rss:65280kB, file-rss:1368kB, shmem-rss:0kB, \
                          UID:0 pgtables:172kB oom_score_adj:0\n";

    #[test]
    fn the_two_lines_of_a_kill_become_one() {
        let mut kills = Vec::new();
        add_record(&mut kills, "6,2571,11443111267,-;[  31280]     0 31280    17011    16662 grow-O0gWallWer\n");
        add_record(&mut kills, SUMMARY);
        add_record(&mut kills, KILLED);
        assert_eq!(kills.len(), 1, "{kills:?}");
        let kill = &kills[0];
        assert_eq!(kill.pid, 31280);
        assert_eq!(kill.comm.as_deref(), Some("grow-O0gWallWer"));
        assert_eq!(kill.memcg.as_deref(), Some("/process_api/15b8/crashwatch-31271-0"));
        assert!(kill.line.as_deref().unwrap().starts_with("Memory cgroup out of memory: Killed process 31280 (grow-"));
    }

    #[test]
    fn a_kill_without_its_rate_limited_summary_keeps_pid_and_name() {
        let mut kills = Vec::new();
        add_record(
            &mut kills,
            "3,1,2,-;Out of memory: Killed process 42 (we) ird) total-vm:1kB, UID:0\n SUBSYSTEM=x\n",
        );
        assert_eq!(
            kills,
            [OomKill {
                pid: 42,
                comm: Some("we) ird".into()),
                memcg: None,
                line: Some("Out of memory: Killed process 42 (we) ird) total-vm:1kB, UID:0".into()),
            }]
        );
    }

    #[test]
    fn two_kills_stay_apart() {
        let mut kills = Vec::new();
        for pid in [7, 8] {
            add_record(
                &mut kills,
                &format!("6,1,2,-;oom-kill:constraint=CONSTRAINT_MEMCG,task_memcg=/x,y,task=a,b,pid={pid},uid=0\n"),
            );
            add_record(
                &mut kills,
                &format!("3,1,2,-;Memory cgroup out of memory: Killed process {pid} (a,b) total-vm:1kB\n"),
            );
        }
        let facts: Vec<_> =
            kills.iter().map(|k| (k.pid, k.comm.as_deref(), k.memcg.as_deref(), k.line.is_some())).collect();
        assert_eq!(facts, [(7, Some("a,b"), Some("/x,y"), true), (8, Some("a,b"), Some("/x,y"), true)]);
    }
}
