//! Whether a stopped thread's process handles a crash signal, answered in
//! two system calls at a stop that repeats (the JVM's or Go's recovered
//! faults), where reading `/proc/TID/status` anew took thirteen.
//!
//! What is kept is only the way to the answer, never the answer: which
//! process a thread belongs to, and that process's open
//! [`DispositionsFile`]. A thread's first crash-class stop, and any stop
//! this check cannot answer, read `/proc/TID/status` as before
//! ([`HandlerCheck::learn`] then records the thread's process).
//!
//! Thread ids are reused, so a recorded membership is confirmed at every
//! stop with `tgkill(tgid, tid, 0)`, which fails with `ESRCH` unless `tid`
//! is a thread of `tgid` now. The tracer also forgets a thread when it ends
//! and a whole process at exec (the exec'ing thread takes the leader's id),
//! at a capture (the process is about to die) or a snapshot, and when its
//! leader's end is reported (the last of the group).

use std::collections::HashMap;

use crate::process::dispositions::DispositionsFile;
use crate::sys::ptrace as sys;

use super::Pid;

/// Processes and threads seen at crash-class stops.
#[derive(Debug, Default)]
pub(super) struct HandlerCheck {
    /// Thread → its process (thread group id).
    group_of: HashMap<Pid, Pid>,
    /// Process → its leader's stat file, kept open.
    files: HashMap<Pid, DispositionsFile>,
}

impl HandlerCheck {
    /// True if `tid`'s process has a handler for `signal`, or ignores it,
    /// right now. False means "default action", or that this check could not
    /// tell: the caller then reads `/proc/TID/status`.
    pub(super) fn handles(&mut self, tid: Pid, signal: i32) -> bool {
        let Some(&tgid) = self.group_of.get(&tid) else {
            return false;
        };
        match sys::tgkill(tgid, tid, 0) {
            // EPERM: the thread is there, only not ours to signal (setuid).
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            Err(_) => {
                self.group_of.remove(&tid);
                return false;
            }
        }
        let Some(file) = self.files.get(&tgid) else {
            return false;
        };
        match file.read() {
            Ok(dispositions) => dispositions.handled_or_ignored(signal) == Some(true),
            Err(e) => {
                tracing::debug!(tid, tgid, error = %e, "cannot read the dispositions of a traced process");
                self.files.remove(&tgid);
                false
            }
        }
    }

    /// Records that `tid` belongs to process `tgid` (read from its status).
    pub(super) fn learn(&mut self, tid: Pid, tgid: Pid) {
        self.group_of.insert(tid, tgid);
        if let std::collections::hash_map::Entry::Vacant(slot) = self.files.entry(tgid) {
            match DispositionsFile::open(tgid) {
                Ok(file) => {
                    slot.insert(file);
                }
                Err(e) => tracing::debug!(tgid, error = %e, "cannot open the dispositions of a traced process"),
            }
        }
    }

    /// A task ended, or is no longer traced.
    pub(super) fn forget_task(&mut self, tid: Pid) {
        self.group_of.remove(&tid);
        // The report of a leader's end comes after all its threads'.
        self.files.remove(&tid);
    }

    /// Process `tgid` exec'd, was captured, or was snapshotted.
    pub(super) fn forget_group(&mut self, tgid: Pid) {
        self.files.remove(&tgid);
        self.group_of.retain(|_, group| *group != tgid);
    }

    #[cfg(test)]
    pub(super) fn open_files(&self) -> usize {
        self.files.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_ids() -> (Pid, Pid) {
        (std::process::id() as Pid, nix::unistd::gettid().as_raw())
    }

    #[test]
    fn handled_and_default_signals_of_a_live_process() {
        // Rust's runtime handles SIGSEGV in this test process (stack
        // overflow detection); nothing here handles SIGABRT.
        let (pid, tid) = own_ids();
        let mut check = HandlerCheck::default();
        assert!(!check.handles(tid, libc::SIGSEGV), "unknown until learnt");
        check.learn(tid, pid);
        assert!(check.handles(tid, libc::SIGSEGV));
        assert!(!check.handles(tid, libc::SIGABRT));
        assert_eq!(check.open_files(), 1);
        check.forget_group(pid);
        assert_eq!(check.open_files(), 0);
        assert!(!check.handles(tid, libc::SIGSEGV));
    }

    #[test]
    fn a_thread_recorded_under_another_process_is_not_believed() {
        // A child's id recorded as a thread of this process (as a reused id
        // would be): reading this process's handlers would say "handled".
        let (pid, _) = own_ids();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let stranger = child.id() as Pid;
        let mut check = HandlerCheck::default();
        check.learn(stranger, pid);
        assert!(!check.handles(stranger, libc::SIGSEGV));
        // And the wrong record is gone.
        assert!(check.group_of.is_empty());
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_process_file_is_closed_when_its_leader_ends() {
        let (pid, tid) = own_ids();
        let mut check = HandlerCheck::default();
        check.learn(tid, pid);
        check.forget_task(pid);
        assert_eq!(check.open_files(), 0);
    }
}
