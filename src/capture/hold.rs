//! The guard that owns the tasks a capture holds in ptrace-stops and resumes
//! them. Nothing is ever detached: the process stays our tracee throughout,
//! a crashed one dying of its signal, a snapshotted one running on.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{CaptureError, RequeuedSignal};
use crate::process::procfs::{self, SignalMasks};
use crate::process::siginfo::SigInfo;
use crate::process::signals;
use crate::sys::ptrace as sys;

/// The tasks a capture holds stopped, and how each is to be resumed.
///
/// T (the crashing thread, or the one that took the snapshot request) is held
/// from the start; [`super::stop`] adds every other task it stops.
/// [`Hold::release`] resumes them all, from any state; `Drop` calls it, so
/// that a panic in the dump leaves no task stopped.
pub(super) struct Hold {
    pub(super) tgid: i32,
    pub(super) tid: i32,
    /// The crash signal of T; `None` for a snapshot.
    signal: Option<i32>,
    crashing_held: bool,
    /// Other tasks in a ptrace-stop under us.
    pub(super) stopped: Vec<i32>,
    /// Other tasks that were in a group-stop (`PTRACE_EVENT_STOP` with a stop
    /// signal): resumed with `PTRACE_LISTEN`, as the tracer loop does, so
    /// that they stay stopped with their process.
    pub(super) listening: Vec<i32>,
    masks: SignalMasks,
    /// The signal-delivery-stops among `stopped`: `(tid, signal, siginfo)`.
    /// The signal was dequeued and waits for our decision.
    pub(super) pending: Vec<(i32, i32, Option<SigInfo>)>,
    /// How long a crash waits for the group exit to take the tasks whose
    /// signal could beat T's (see [`Hold::release`]).
    exit_wait: Duration,
    released: bool,
    pub(super) requeued: Vec<RequeuedSignal>,
    pub(super) soft_errors: Vec<CaptureError>,
}

impl Hold {
    pub(super) fn new(tgid: i32, tid: i32, signal: i32, masks: SignalMasks, exit_wait: Duration) -> Self {
        Self::holding(tgid, tid, Some(signal), masks, exit_wait)
    }

    /// A hold for a snapshot of a live process, T being stopped for the
    /// request.
    pub(super) fn for_snapshot(tgid: i32, tid: i32, masks: SignalMasks) -> Self {
        Self::holding(tgid, tid, None, masks, Duration::ZERO)
    }

    fn holding(tgid: i32, tid: i32, signal: Option<i32>, masks: SignalMasks, exit_wait: Duration) -> Self {
        Hold {
            tgid,
            tid,
            signal,
            crashing_held: true,
            stopped: Vec::new(),
            listening: Vec::new(),
            masks,
            pending: Vec::new(),
            exit_wait,
            released: false,
            requeued: Vec::new(),
            soft_errors: Vec::new(),
        }
    }

    /// Resumes every held task: a crash hands T its signal first, a snapshot
    /// drops T's request. Idempotent.
    pub(super) fn release(&mut self) {
        if self.released {
            return;
        }
        self.released = true;
        let mut pending: HashMap<i32, (i32, Option<SigInfo>)> =
            std::mem::take(&mut self.pending).into_iter().map(|(t, s, i)| (t, (s, i))).collect();
        let stopped = std::mem::take(&mut self.stopped);
        for t in std::mem::take(&mut self.listening) {
            if let Err(e) = sys::listen(t)
                && !sys::is_esrch(&e)
            {
                // Not a group-stop after all: let it run rather than hang.
                self.resume(t, 0);
            }
        }
        match self.signal {
            Some(signal) => self.release_crash(signal, stopped, &mut pending),
            None => self.release_snapshot(stopped, &mut pending),
        }
    }

    /// T with S, the kernel keeping its siginfo: S kills the process as it
    /// would have without us. Around it, the others with the signal each had
    /// dequeued (none for an interrupt-stop):
    /// - a signal that cannot end the process (handled or ignored) first, so
    ///   that it is delivered for certain rather than racing the group exit
    ///   that would take its thread out of the stop;
    /// - a signal whose default action would end or stop the process
    ///   (SIGTERM, another thread's SIGSEGV…) last, and only once its thread
    ///   has left its stop by itself (the group exit kills it out of it), or
    ///   after `exit_wait` if that never comes: delivered before T starts the
    ///   group exit, it could beat S and the process would die of it.
    fn release_crash(&mut self, signal: i32, stopped: Vec<i32>, pending: &mut HashMap<i32, (i32, Option<SigInfo>)>) {
        let mut deferred = Vec::new();
        let mut quiet = Vec::new();
        for t in stopped {
            match pending.remove(&t) {
                None => quiet.push(t),
                Some((sig, _)) if cannot_end_process(sig, &self.masks) => self.hand_back(t, sig, false),
                Some((sig, _)) => deferred.push((t, sig)),
            }
        }
        if std::mem::take(&mut self.crashing_held) {
            self.resume(self.tid, signal);
        }
        for t in quiet {
            self.resume(t, 0);
        }
        if deferred.is_empty() {
            return;
        }
        let tgid = self.tgid;
        let mut waiting: Vec<i32> = deferred.iter().map(|&(t, _)| t).collect();
        super::stop::poll_in_order(&mut waiting, Instant::now() + self.exit_wait, |t| {
            !procfs::task_state(tgid, t).is_ok_and(|s| s.is_traced_stop())
        });
        for (t, sig) in deferred {
            // Gone or dying: the resume fails with ESRCH and nothing is noted.
            self.hand_back(t, sig, true);
        }
    }

    /// Everyone resumes as the tracer loop would have resumed them, except
    /// that the crash-class signals other threads had dequeued are sent again
    /// (as before the interrupt): the tracer loop must see them to run the
    /// crash path, which this stop cannot. T's request signal is dropped.
    fn release_snapshot(&mut self, stopped: Vec<i32>, pending: &mut HashMap<i32, (i32, Option<SigInfo>)>) {
        for t in stopped {
            match pending.remove(&t) {
                None => {
                    self.resume(t, 0);
                }
                Some((sig, info)) if signals::CRASH.contains(&sig) => {
                    self.resume(t, 0);
                    self.requeue(t, sig, info);
                }
                Some((sig, _)) => self.hand_back(t, sig, false),
            }
        }
        if std::mem::take(&mut self.crashing_held) {
            self.resume(self.tid, 0);
        }
    }

    /// Resumes `t` with the signal it had dequeued, noting it when delivered.
    fn hand_back(&mut self, t: i32, signal: i32, after_release: bool) {
        if self.resume(t, signal) {
            // The kernel delivers it with its original siginfo.
            self.requeued.push(RequeuedSignal { tid: t, signal, verbatim: true, after_release });
        }
    }

    /// `PTRACE_CONT` with `signal`; true if the task was resumed. A task that
    /// cannot be continued is detached, the one way left not to leave it
    /// stopped.
    fn resume(&mut self, tid: i32, signal: i32) -> bool {
        match sys::cont(tid, signal) {
            Ok(()) => true,
            Err(e) if sys::is_esrch(&e) => false,
            Err(source) => {
                self.soft_errors.push(CaptureError::Resume { pid: self.tgid, tid, source });
                if let Err(source) = sys::detach(tid, signal)
                    && !sys::is_esrch(&source)
                {
                    self.soft_errors.push(CaptureError::Detach { pid: self.tgid, tid, source });
                }
                false
            }
        }
    }

    /// Sends `signal` to `tid` again, with its siginfo when the kernel lets
    /// another process forge it.
    fn requeue(&mut self, tid: i32, signal: i32, info: Option<SigInfo>) {
        let verbatim = info.as_ref().is_some_and(|i| i.can_requeue_verbatim());
        let result = match info {
            Some(info) if verbatim => sys::tgsigqueueinfo(self.tgid, tid, signal, info.raw()),
            _ => sys::tgkill(self.tgid, tid, signal),
        };
        match result {
            Ok(()) => self.requeued.push(RequeuedSignal { tid, signal, verbatim, after_release: false }),
            // The thread is already gone with its process: nothing to deliver to.
            Err(e) if sys::is_esrch(&e) => {}
            Err(source) => self.soft_errors.push(CaptureError::Requeue { pid: self.tgid, tid, signal, source }),
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.release();
    }
}

/// Whether delivering `signal` can neither end nor stop the process: it is
/// handled or ignored, or its default action is to ignore it.
fn cannot_end_process(signal: i32, masks: &SignalMasks) -> bool {
    const DEFAULT_IGNORED: [i32; 4] = [libc::SIGCHLD, libc::SIGURG, libc::SIGWINCH, libc::SIGCONT];
    signal != libc::SIGKILL
        && signal != libc::SIGSTOP
        && (!masks.is_default(signal) || DEFAULT_IGNORED.contains(&signal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_signals_are_handed_back_before_the_group_exit() {
        let usr1_handled = SignalMasks { caught: 1 << (libc::SIGUSR1 - 1), ..Default::default() };
        assert!(cannot_end_process(libc::SIGUSR1, &usr1_handled));
        // Default action "terminate", "core" or "stop": it could beat S.
        assert!(!cannot_end_process(libc::SIGUSR2, &usr1_handled));
        assert!(!cannot_end_process(libc::SIGTERM, &SignalMasks::default()));
        assert!(!cannot_end_process(libc::SIGRTMIN() + 1, &SignalMasks::default()));
        assert!(!cannot_end_process(libc::SIGSEGV, &SignalMasks::default()));
        assert!(!cannot_end_process(libc::SIGTSTP, &SignalMasks::default()));
        assert!(cannot_end_process(libc::SIGCHLD, &SignalMasks::default()));
        assert!(cannot_end_process(libc::SIGCONT, &SignalMasks::default()));
        let term_ignored = SignalMasks { ignored: 1 << (libc::SIGTERM - 1), ..Default::default() };
        assert!(cannot_end_process(libc::SIGTERM, &term_ignored));
    }
}
