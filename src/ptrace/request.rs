//! The snapshot request: how another thread of crashwatch (the memory
//! sampler) gets the tracer thread to take a snapshot of the child.
//!
//! Only the tracer thread may ptrace the child, and it spends its life
//! blocked in `waitpid`. A signal to the child wakes it at exactly the right
//! place: the thread that takes the signal enters a signal-delivery-stop,
//! which `waitpid` reports to the tracer with that thread already stopped.
//! So the request is a signal that the tracer recognises and discards,
//! never delivers:
//!
//! - `SIGURG`, whose default action is to ignore it. Should the child ever
//!   receive one (it is not traced after all), nothing happens unless it
//!   handles SIGURG, and Go's runtime, which does (for preemption),
//!   tolerates spurious ones by design;
//! - queued with `sigqueue`: `si_code` is `SI_QUEUE`, the sender our pid,
//!   and the value a random token of this crashwatch process. A SIGURG of
//!   the child's own (out-of-band data on a socket) or one another process
//!   sends, even with a forged sender, is not taken for a request, and so is
//!   never swallowed;
//! - sent only while `/proc` says crashwatch traces the child.
//!
//! A child that blocks SIGURG in every thread keeps the request pending
//! until a thread unblocks it: the snapshot waits, the child is not
//! disturbed.

use std::io;
use std::sync::OnceLock;

use crate::process::SigInfo;
use crate::process::procfs::{self, ProcError};
use crate::sys::ptrace as sys;

/// The signal that carries a request.
pub const SIGNAL: i32 = libc::SIGURG;

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("process {pid} is not traced by crashwatch (tracing failed at its start, or it is being released)")]
    NotTraced { pid: i32 },
    #[error("failed to find out who traces process {pid}")]
    Tracer {
        pid: i32,
        #[source]
        source: ProcError,
    },
    #[error("failed to send the snapshot request to process {pid}")]
    Send {
        pid: i32,
        #[source]
        source: io::Error,
    },
}

/// This crashwatch's token: random, so a request cannot be forged by another
/// process, nor mistaken for the child's own SIGURG.
fn token() -> u64 {
    static TOKEN: OnceLock<u64> = OnceLock::new();
    *TOKEN.get_or_init(rand::random)
}

fn our_pid() -> i32 {
    std::process::id() as i32
}

/// Asks the tracer thread to take a snapshot of process `pid`, the traced
/// child. Returns once the request is queued; the snapshot follows as soon
/// as a thread of the child takes it.
pub fn request_snapshot(pid: i32) -> Result<(), RequestError> {
    // TracerPid is the tracer's thread id: ours if it is one of our threads.
    let tracer = procfs::tracer_pid(pid).map_err(|source| RequestError::Tracer { pid, source })?;
    if tracer == 0 || !std::path::Path::new(&format!("/proc/self/task/{tracer}")).exists() {
        return Err(RequestError::NotTraced { pid });
    }
    sys::sigqueue(pid, SIGNAL, token()).map_err(|source| RequestError::Send { pid, source })
}

/// Whether a signal-delivery-stop's siginfo is a request of ours.
pub fn is_request(info: &SigInfo) -> bool {
    is_request_from(info, our_pid(), token())
}

fn is_request_from(info: &SigInfo, pid: i32, token: u64) -> bool {
    info.signo() == SIGNAL
        && info.code() == libc::SI_QUEUE
        && info.sender().is_some_and(|(sender, _)| sender == pid)
        && info.value() == Some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::ptrace::RawSigInfo;

    /// A siginfo as the kernel builds it for `sigqueue`: signo, errno, code,
    /// then pid and uid, then the value.
    fn queued(signo: i32, code: i32, pid: i32, value: u64) -> SigInfo {
        let mut words = [0u64; 16];
        words[0] = signo as u32 as u64;
        words[1] = code as u32 as u64;
        words[2] = (1000u64 << 32) | pid as u32 as u64;
        words[3] = value;
        SigInfo::new(RawSigInfo { words })
    }

    #[test]
    fn only_our_queued_sigurg_with_our_token_is_a_request() {
        let (pid, token) = (4242, 0x1234_5678_9abc_def0);
        assert!(is_request_from(&queued(libc::SIGURG, libc::SI_QUEUE, pid, token), pid, token));
        // Another token, another sender, another way of sending, another signal.
        assert!(!is_request_from(&queued(libc::SIGURG, libc::SI_QUEUE, pid, token + 1), pid, token));
        assert!(!is_request_from(&queued(libc::SIGURG, libc::SI_QUEUE, 99, token), pid, token));
        assert!(!is_request_from(&queued(libc::SIGURG, libc::SI_USER, pid, token), pid, token));
        assert!(!is_request_from(&queued(libc::SIGURG, libc::SI_TKILL, pid, token), pid, token));
        assert!(!is_request_from(&queued(libc::SIGUSR1, libc::SI_QUEUE, pid, token), pid, token));
        // The kernel's own SIGURG (out-of-band data) says SI_KERNEL, no sender.
        assert!(!is_request_from(&queued(libc::SIGURG, 0x80, pid, token), pid, token));
    }

    #[test]
    fn the_token_is_stable_within_a_process() {
        assert_eq!(token(), token());
        assert!(is_request(&queued(libc::SIGURG, libc::SI_QUEUE, our_pid(), token())));
    }

    #[test]
    fn a_process_we_do_not_trace_gets_no_request() {
        // This test process is not our tracee: nothing may be sent to it.
        let err = request_snapshot(our_pid()).unwrap_err();
        assert!(matches!(err, RequestError::NotTraced { .. }), "{err}");
    }
}
