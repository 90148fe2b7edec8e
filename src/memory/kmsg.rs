//! The kernel's own word on an OOM kill: `Killed process PID (name) …` in
//! the kernel log, read from `/dev/kmsg`.
//!
//! The log is opened when the child starts and positioned at its end, so
//! only records written while the child ran are read later. Reading needs
//! CAP_SYSLOG where `kernel.dmesg_restrict` is set; without it the log is
//! simply not available and the cgroup counter stands alone.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

/// The kernel log from a point in time on.
pub struct KernelLog {
    file: File,
}

impl KernelLog {
    /// Opens `/dev/kmsg` positioned after the last record; `None` when it
    /// cannot be read here.
    pub fn open_at_end() -> Option<KernelLog> {
        let mut file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open("/dev/kmsg").ok()?;
        file.seek(SeekFrom::End(0)).ok()?;
        Some(KernelLog { file })
    }

    /// The line in which the OOM killer reports killing `pid`, among the
    /// records written since the log was opened (or since the last call).
    pub fn oom_kill_of(&mut self, pid: i32) -> Option<String> {
        let needle = format!("Killed process {pid} (");
        let mut found = None;
        // One record per read; a record is at most a few KiB.
        let mut buf = vec![0u8; 16 << 10];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let record = String::from_utf8_lossy(&buf[..n]);
                    if let Some(line) = oom_line(&record, &needle) {
                        found = Some(line);
                    }
                }
                // EPIPE: records were overwritten before we read them; the
                // next read continues with the oldest one still there.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break, // EAGAIN: read everything there is
            }
        }
        found
    }
}

/// The message of a `/dev/kmsg` record (`prio,seq,usec,flags;message`) if it
/// contains `needle`.
fn oom_line(record: &str, needle: &str) -> Option<String> {
    let message = record.split_once(';').map_or(record, |(_, m)| m);
    let message = message.lines().next().unwrap_or_default();
    message.contains(needle).then(|| message.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_kill_of_one_pid_in_a_record() {
        let record = "3,473,1859741387,-;Memory cgroup out of memory: Killed process 7675 (python3) \
                      total-vm:78028kB, anon-rss:65280kB, file-rss:6692kB, shmem-rss:0kB, UID:0 pgtables:192kB \
                      oom_score_adj:0\n";
        let line = oom_line(record, "Killed process 7675 (").unwrap();
        assert!(line.starts_with("Memory cgroup out of memory: Killed process 7675 (python3) total-vm:78028kB"));
        assert_eq!(oom_line(record, "Killed process 767 ("), None);
        let global = "3,1,2,-;Out of memory: Killed process 42 (java) total-vm:1kB\n SUBSYSTEM=x\n";
        assert_eq!(
            oom_line(global, "Killed process 42 ("),
            Some("Out of memory: Killed process 42 (java) total-vm:1kB".into())
        );
    }
}
