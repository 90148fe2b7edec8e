//! The guard that owns what a capture has done to the process and undoes it.
//! A crash capture hands the process back untraced, to die of its signal; a
//! snapshot (no crash signal) keeps every task it never detached traced.

use std::time::Duration;

use super::{CaptureError, RequeuedSignal};
use crate::process::procfs::SignalMasks;
use crate::process::siginfo::SigInfo;
use crate::sys::ptrace as sys;

/// The tasks a capture holds and the undo steps still owed to the process.
///
/// States, in order: `crashing_held` (T in its signal-delivery-stop, others
/// being stopped into `stopped`) → `sigstopped` → detached (`stopped` empty,
/// `crashing_held` false) → `signal_requeued` → released. [`Hold::release`]
/// completes whatever is left from any state; `Drop` calls it.
///
/// For a snapshot there is no crash signal: T's stop was for the snapshot
/// request, which is discarded, and `signal_requeued` has nothing to do.
pub(super) struct Hold {
    pub(super) tgid: i32,
    pub(super) tid: i32,
    /// The crash signal of T; `None` for a snapshot.
    signal: Option<i32>,
    crashing_held: bool,
    /// Other threads in a ptrace-stop under us, not yet detached.
    pub(super) stopped: Vec<i32>,
    pub(super) sigstopped: bool,
    signal_requeued: bool,
    masks: SignalMasks,
    /// Signals other threads had dequeued when they stopped: `(tid, signal, siginfo)`.
    pub(super) pending: Vec<(i32, i32, Option<SigInfo>)>,
    released: bool,
    pub(super) requeued: Vec<RequeuedSignal>,
    pub(super) soft_errors: Vec<CaptureError>,
}

impl Hold {
    pub(super) fn new(tgid: i32, tid: i32, signal: i32, masks: SignalMasks) -> Self {
        Self::holding(tgid, tid, Some(signal), masks)
    }

    /// A hold for a snapshot of a live process, T being stopped for the
    /// request.
    pub(super) fn for_snapshot(tgid: i32, tid: i32, masks: SignalMasks) -> Self {
        Self::holding(tgid, tid, None, masks)
    }

    fn holding(tgid: i32, tid: i32, signal: Option<i32>, masks: SignalMasks) -> Self {
        Hold {
            tgid,
            tid,
            signal,
            crashing_held: true,
            stopped: Vec::new(),
            sigstopped: false,
            signal_requeued: false,
            masks,
            pending: Vec::new(),
            released: false,
            requeued: Vec::new(),
            soft_errors: Vec::new(),
        }
    }

    fn detach(&mut self, tid: i32, signal: i32) {
        if let Err(source) = sys::detach(tid, signal)
            && !sys::is_esrch(&source)
        {
            self.soft_errors.push(CaptureError::Detach { pid: self.tgid, tid, source });
        }
    }

    /// The dump window's entry, shared by crash and snapshot: `SIGSTOP` to
    /// the process first, so that nothing runs once untraced; then every
    /// held task detached; then a wait until the group-stop is complete. A
    /// failed `SIGSTOP` detaches nothing and is the window's end; a thread
    /// late to stop is only noted (minidump-writer waits for it too).
    pub(super) fn settle(
        &mut self,
        timeout: Duration,
        soft_errors: &mut Vec<CaptureError>,
    ) -> Result<(), CaptureError> {
        sys::kill(self.tgid, libc::SIGSTOP).map_err(|source| CaptureError::Kill {
            pid: self.tgid,
            signal: libc::SIGSTOP,
            source,
        })?;
        self.sigstopped = true;
        let detached = self.detach_all();
        if let Err(e) = super::stop::wait_group_stopped(self.tgid, &detached, timeout) {
            soft_errors.push(e);
        }
        Ok(())
    }

    /// Detaches every held task with signal 0 and returns their ids.
    /// Callers must have sent SIGSTOP first (see the module docs).
    fn detach_all(&mut self) -> Vec<i32> {
        let mut detached = std::mem::take(&mut self.stopped);
        for &t in &detached {
            self.detach(t, 0);
        }
        if self.crashing_held {
            self.detach(self.tid, 0);
            self.crashing_held = false;
            detached.push(self.tid);
        }
        detached
    }

    pub(super) fn requeue_crash_signal(&mut self) {
        if self.signal_requeued {
            return;
        }
        self.signal_requeued = true;
        let Some(signal) = self.signal else { return };
        if let Err(source) = sys::tgkill(self.tgid, self.tid, signal)
            && !sys::is_esrch(&source)
        {
            self.soft_errors.push(CaptureError::Requeue { pid: self.tgid, tid: self.tid, signal, source });
        }
    }

    /// Resumes a held task that was never detached: a crash lets it go
    /// untraced, a snapshot keeps tracing it.
    fn let_go(&mut self, tid: i32, signal: i32) {
        if self.signal.is_some() {
            self.detach(tid, signal);
        } else if let Err(source) = sys::cont(tid, signal)
            && !sys::is_esrch(&source)
        {
            // Not resumable as a tracee: detaching is the one way left not to
            // leave it stopped.
            self.soft_errors.push(CaptureError::Resume { pid: self.tgid, tid, source });
            self.detach(tid, signal);
        }
    }

    /// Leaves the process running (towards its death by S, or on, after a
    /// snapshot) from any state.
    pub(super) fn release(&mut self) {
        if self.released {
            return;
        }
        self.released = true;
        if self.sigstopped {
            self.detach_all();
            self.requeue_crash_signal();
            if let Err(source) = sys::kill(self.tgid, libc::SIGCONT)
                && !sys::is_esrch(&source)
            {
                self.soft_errors.push(CaptureError::Kill { pid: self.tgid, signal: libc::SIGCONT, source });
            }
        } else {
            // Never stopped as a group: let everyone go, T with its signal
            // delivered directly by the detach (a snapshot request: none).
            for t in std::mem::take(&mut self.stopped) {
                self.let_go(t, 0);
            }
            if self.crashing_held {
                self.crashing_held = false;
                self.signal_requeued = true;
                self.let_go(self.tid, self.signal.unwrap_or(0));
            }
        }
        self.requeue_pending(true);
    }

    /// Re-queues remembered signals of other threads: only those that are
    /// safe for a stopped process unless `all`.
    pub(super) fn requeue_pending(&mut self, all: bool) {
        let pending = std::mem::take(&mut self.pending);
        for (tid, signal, info) in pending {
            if all || safe_while_stopped(signal, &self.masks) {
                self.requeue_other(tid, signal, info, all);
            } else {
                self.pending.push((tid, signal, info));
            }
        }
    }

    fn requeue_other(&mut self, tid: i32, signal: i32, info: Option<SigInfo>, after_release: bool) {
        let verbatim = info.as_ref().is_some_and(|i| i.can_requeue_verbatim());
        let result = match info {
            Some(info) if verbatim => sys::tgsigqueueinfo(self.tgid, tid, signal, info.raw()),
            _ => sys::tgkill(self.tgid, tid, signal),
        };
        match result {
            Ok(()) => self.requeued.push(RequeuedSignal { tid, signal, verbatim, after_release }),
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

/// Whether sending `signal` to a stopped, untraced process leaves it stopped.
///
/// The kernel acts on some signals at *send* time: `SIGCONT` resumes the
/// process, and a signal whose default action terminates without a core
/// starts the group exit at once. Handled and ignored signals, core-dumping
/// signals (the kernel defers those to the dequeuing thread) and stop signals
/// just stay pending.
fn safe_while_stopped(signal: i32, masks: &SignalMasks) -> bool {
    const CORE: [i32; 10] = [
        libc::SIGQUIT,
        libc::SIGILL,
        libc::SIGTRAP,
        libc::SIGABRT,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGSEGV,
        libc::SIGXCPU,
        libc::SIGXFSZ,
        libc::SIGSYS,
    ];
    const STOP_OR_DEFAULT_IGNORED: [i32; 7] =
        [libc::SIGSTOP, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU, libc::SIGCHLD, libc::SIGURG, libc::SIGWINCH];
    if signal == libc::SIGCONT || signal == libc::SIGKILL {
        return false;
    }
    !masks.is_default(signal) || CORE.contains(&signal) || STOP_OR_DEFAULT_IGNORED.contains(&signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_signals_may_be_requeued_while_stopped() {
        let usr1_handled = SignalMasks { caught: 1 << (libc::SIGUSR1 - 1), ..Default::default() };
        assert!(safe_while_stopped(libc::SIGUSR1, &usr1_handled));
        // Default action "terminate": the group exit would start at send time.
        assert!(!safe_while_stopped(libc::SIGUSR2, &usr1_handled));
        assert!(!safe_while_stopped(libc::SIGTERM, &SignalMasks::default()));
        assert!(!safe_while_stopped(libc::SIGRTMIN() + 1, &SignalMasks::default()));
        // SIGCONT resumes a stopped process even when handled.
        let cont_handled = SignalMasks { caught: 1 << (libc::SIGCONT - 1), ..Default::default() };
        assert!(!safe_while_stopped(libc::SIGCONT, &cont_handled));
        assert!(safe_while_stopped(libc::SIGSEGV, &SignalMasks::default()));
        assert!(safe_while_stopped(libc::SIGCHLD, &SignalMasks::default()));
        let term_ignored = SignalMasks { ignored: 1 << (libc::SIGTERM - 1), ..Default::default() };
        assert!(safe_while_stopped(libc::SIGTERM, &term_ignored));
    }
}
