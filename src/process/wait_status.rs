//! Decoding of raw `waitpid` statuses, including ptrace stops.
//!
//! For a tracee seized with `PTRACE_SEIZE`, a stopped status has three shapes:
//!
//! ```text
//!  status >> 16   WSTOPSIG      meaning
//!  0              sig           signal-delivery-stop: `sig` is about to be delivered
//!  EVENT_STOP     STOP/TSTP/..  group-stop (the process was stopped by a stop signal)
//!  EVENT_STOP     SIGTRAP       interrupt-stop (PTRACE_INTERRUPT) or the first stop
//!                               of an auto-attached clone/fork child
//!  CLONE/EXEC/..  SIGTRAP       ptrace event stop (PTRACE_O_TRACE* options)
//! ```
//!
//! Real-time signals (32..=64) are ordinary signal numbers here, which is why
//! this module works on `i32` and not on an enum of named signals.

/// One `waitpid` status, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStatus {
    /// The task exited with this code.
    Exited(i32),
    /// The task was killed by this signal.
    Signaled { signal: i32, core_dumped: bool },
    /// Signal-delivery-stop: `signal` is about to be delivered to the task.
    SignalStop(i32),
    /// A ptrace event stop or a `PTRACE_EVENT_STOP` (group/interrupt stop).
    EventStop { event: i32, signal: i32 },
    /// Resumed by `SIGCONT` (only reported with `WCONTINUED`).
    Continued,
    /// Anything else; kept raw rather than guessed at.
    Unknown(i32),
}

impl WaitStatus {
    /// Decodes a raw status as returned by `waitpid`.
    pub fn decode(status: i32) -> Self {
        if libc::WIFEXITED(status) {
            WaitStatus::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            WaitStatus::Signaled { signal: libc::WTERMSIG(status), core_dumped: libc::WCOREDUMP(status) }
        } else if libc::WIFSTOPPED(status) {
            let signal = libc::WSTOPSIG(status);
            match (status >> 16) & 0xff {
                0 => WaitStatus::SignalStop(signal),
                event => WaitStatus::EventStop { event, signal },
            }
        } else if libc::WIFCONTINUED(status) {
            WaitStatus::Continued
        } else {
            WaitStatus::Unknown(status)
        }
    }

    /// True once the task no longer exists as far as `waitpid` is concerned.
    pub fn is_exit(&self) -> bool {
        matches!(self, WaitStatus::Exited(_) | WaitStatus::Signaled { .. })
    }
}

/// True for the signals whose default action stops the process: a
/// `PTRACE_EVENT_STOP` carrying one of them is a group-stop.
pub fn is_stop_signal(signal: i32) -> bool {
    matches!(signal, libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_and_signal() {
        assert_eq!(WaitStatus::decode(3 << 8), WaitStatus::Exited(3));
        assert_eq!(
            WaitStatus::decode(libc::SIGSEGV | 0x80),
            WaitStatus::Signaled { signal: libc::SIGSEGV, core_dumped: true }
        );
        assert!(WaitStatus::decode(libc::SIGKILL).is_exit());
    }

    #[test]
    fn signal_delivery_stop_including_rt() {
        let rt = libc::SIGRTMIN() + 5;
        assert_eq!(WaitStatus::decode((rt << 8) | 0x7f), WaitStatus::SignalStop(rt));
        assert_eq!(WaitStatus::decode((libc::SIGSEGV << 8) | 0x7f), WaitStatus::SignalStop(libc::SIGSEGV));
    }

    #[test]
    fn event_stops() {
        let clone = (libc::PTRACE_EVENT_CLONE << 16) | (libc::SIGTRAP << 8) | 0x7f;
        assert_eq!(
            WaitStatus::decode(clone),
            WaitStatus::EventStop { event: libc::PTRACE_EVENT_CLONE, signal: libc::SIGTRAP }
        );
        let group = (crate::sys::ptrace::PTRACE_EVENT_STOP << 16) | (libc::SIGTSTP << 8) | 0x7f;
        assert_eq!(
            WaitStatus::decode(group),
            WaitStatus::EventStop { event: crate::sys::ptrace::PTRACE_EVENT_STOP, signal: libc::SIGTSTP }
        );
        assert!(is_stop_signal(libc::SIGTSTP));
        assert!(!is_stop_signal(libc::SIGTRAP));
    }
}
