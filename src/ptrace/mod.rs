//! The tracer: decides what to do with every stop of the traced child.
//!
//! The supervisor's tracer thread forks the child, calls [`Tracer::seize`]
//! before releasing it from its sync pipe, then loops on
//! [`crate::sys::ptrace::wait_any`] and feeds each `(pid, status)` to
//! [`Tracer::handle`]. All ptrace requests, including the whole crash path and
//! minidump-writer's register reads, run on that thread: the kernel records
//! the tracer as a thread, and requests from any other thread fail with
//! `ESRCH`.
//!
//! Per-stop decisions (a seized tracee, see `wait_status` for the encoding):
//!
//! ```text
//!  exit / killed                       → Handled::Ended (caller checks the pid)
//!  event stop: clone/fork/vfork/exec   → PTRACE_CONT(0)
//!  PTRACE_EVENT_STOP + stop signal     → PTRACE_LISTEN (stay in group-stop,
//!                                        but keep reporting, e.g. SIGCONT)
//!  PTRACE_EVENT_STOP + SIGTRAP         → PTRACE_CONT(0) (new task / interrupt)
//!  signal-delivery-stop for S:
//!     S ∈ {SEGV BUS ILL FPE ABRT SYS TRAP}
//!     and S has no handler and is not ignored → crash path (capture)
//!     S is our snapshot request (see `request`) → snapshot of the child,
//!                                        once per tracer; S is discarded
//!     otherwise                        → PTRACE_CONT(S): passes through
//! ```
//!
//! The handler check reads the process's dispositions at every such stop:
//! the JVM, Go and Rust install SIGSEGV handlers and recover from (or
//! report) faults themselves; those signals must pass untouched, and a
//! handler may give up and set `SIG_DFL` between two faults. A stop that
//! repeats costs one `pread` of a file kept open (`handlers`); a signal with
//! its default action is confirmed from `/proc/TID/status`, whose masks the
//! capture takes. A fault that arrives while its signal is blocked has
//! already had its handler reset to `SIG_DFL` by the kernel at send time, so
//! the masks read here are the ones that decide the process's fate.
//!
//! Contract with the caller: every status `waitpid` returns for our tracees
//! must be fed to `handle`, in order, before the next `waitpid`. The crash
//! path waits for specific tasks' stops; a stop the caller reaped but did not
//! feed would be waited for in vain until `stop_timeout`.

mod handlers;
pub mod request;

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::capture::snapshot::SnapshotRequest;
use crate::capture::{self, CaptureRequest};
use crate::process::procfs;
use crate::process::siginfo::SigInfo;
use crate::process::signals;
use crate::process::wait_status::{WaitStatus, is_stop_signal};
use crate::ptrace::handlers::HandlerCheck;
use crate::sys::ptrace as sys;

pub use crate::capture::{CrashCapture, SnapshotCapture};
pub use request::request_snapshot;

/// A process or thread id as the kernel uses it (`pid_t`).
pub type Pid = i32;

/// How the child is traced.
#[derive(Clone, Debug)]
pub struct TraceOptions {
    /// Also trace processes the child forks (and capture their crashes).
    pub follow_forks: bool,
    /// Where dumps (and preserved deleted files) are written as new files.
    pub scratch_dir: PathBuf,
    /// Bound on each wait for threads to stop during a capture (and on
    /// minidump-writer's own stop wait). Threads that miss it are captured
    /// running or not at all; the capture itself proceeds.
    pub stop_timeout: Duration,
}

/// Errors from setting up tracing.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("failed to seize process {pid} with ptrace")]
    Seize {
        pid: i32,
        #[source]
        source: io::Error,
    },
    #[error("scratch directory {path} is not usable")]
    ScratchDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What one `waitpid` status meant for the caller.
#[derive(Debug)]
pub enum Handled {
    /// A ptrace stop was handled; nothing for the caller to do.
    Event,
    /// A fatal signal was captured; the process has been released and will
    /// die of `capture.signal` (its exit arrives as a later status).
    Crash(Box<CrashCapture>),
    /// A snapshot of the child was taken on request; it runs on, traced.
    Snapshot(Box<SnapshotCapture>),
    /// A task or untraced child ended: the status is the caller's to
    /// interpret (it checks whether it was the main child).
    Ended,
}

/// True if `signal` is a crash signal and the process neither handles nor
/// ignores it, so delivering it will kill the process.
pub fn is_fatal(signal: i32, masks: &procfs::SignalMasks) -> bool {
    signals::CRASH.contains(&signal) && masks.is_default(signal)
}

/// The ptrace state of one supervised child and its descendants.
#[derive(Debug)]
pub struct Tracer {
    opts: TraceOptions,
    /// The process seized first; the only one a snapshot is taken of.
    child: Pid,
    /// The child's executable after its last exec: the program that really
    /// ran, where the path started was a script or a shim.
    exe: Option<PathBuf>,
    /// How to tell, at a crash-class stop, whether the process handles it.
    handlers: HandlerCheck,
}

impl Tracer {
    /// Called on the tracer thread after fork, before the sync byte is
    /// written: the child is blocked in `read` and is not stopped by this.
    pub fn seize(child: Pid, opts: TraceOptions) -> Result<Tracer, TraceError> {
        let meta = std::fs::metadata(&opts.scratch_dir)
            .and_then(|m| if m.is_dir() { Ok(m) } else { Err(io::Error::from(io::ErrorKind::NotADirectory)) });
        if let Err(source) = meta {
            return Err(TraceError::ScratchDir { path: opts.scratch_dir.clone(), source });
        }
        let mut options = libc::PTRACE_O_TRACECLONE | libc::PTRACE_O_TRACEEXEC | libc::PTRACE_O_EXITKILL;
        if opts.follow_forks {
            options |= libc::PTRACE_O_TRACEFORK | libc::PTRACE_O_TRACEVFORK;
        }
        sys::seize(child, options).map_err(|source| TraceError::Seize { pid: child, source })?;
        tracing::debug!(pid = child, follow_forks = opts.follow_forks, "seized child");
        Ok(Tracer { opts, child, handlers: HandlerCheck::default(), exe: None })
    }

    /// The child's executable after its last exec, if it was read.
    pub fn exe(&self) -> Option<&std::path::Path> {
        self.exe.as_deref()
    }

    /// Handles one `(pid, status)` from `waitpid(-1, __WALL)`.
    ///
    /// Continues, listens or passes signals on as needed, and runs the crash
    /// path inline when a fatal signal would kill the process. No error path
    /// leaves a task stopped: a ptrace request that fails with anything but
    /// `ESRCH` (task gone) is retried as a detach.
    pub fn handle(&mut self, pid: i32, status: i32) -> Handled {
        let decoded = WaitStatus::decode(status);
        if decoded.is_exit() {
            self.handlers.forget_task(pid);
            return Handled::Ended;
        }
        match decoded {
            WaitStatus::EventStop { event, signal } => {
                if event == sys::PTRACE_EVENT_STOP && is_stop_signal(signal) {
                    resume(pid, ResumeHow::Listen);
                } else {
                    if matches!(event, libc::PTRACE_EVENT_CLONE | libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK)
                        && let Ok(new) = sys::get_event_msg(pid)
                    {
                        tracing::trace!(pid, new_task = new, event, "task created");
                    }
                    if event == libc::PTRACE_EVENT_EXEC {
                        // The exec'ing thread took the leader's id; the
                        // other threads are gone.
                        self.handlers.forget_group(pid);
                        // The exec is done and the new program not yet started.
                        if pid == self.child {
                            self.exe = procfs::executable(pid);
                        }
                    }
                    resume(pid, ResumeHow::Cont(0));
                }
                Handled::Event
            }
            WaitStatus::SignalStop(signal) => self.signal_stop(pid, signal),
            // Not requested (no WCONTINUED) or not decodable: nothing is stopped.
            WaitStatus::Continued | WaitStatus::Unknown(_) => Handled::Event,
            WaitStatus::Exited(_) | WaitStatus::Signaled { .. } => Handled::Ended,
        }
    }

    fn signal_stop(&mut self, tid: i32, signal: i32) -> Handled {
        let started = Instant::now();
        if signal == request::SIGNAL && sys::get_siginfo(tid).is_ok_and(|raw| request::is_request(&SigInfo::new(raw))) {
            return self.snapshot(tid, started);
        }
        if signals::CRASH.contains(&signal) {
            if self.handlers.handles(tid, signal) {
                resume(tid, ResumeHow::Cont(signal));
                return Handled::Event;
            }
            match procfs::task_status(tid) {
                Ok(status) if is_fatal(signal, &status.masks) => {
                    // The process is about to die of the signal.
                    self.handlers.forget_group(status.tgid);
                    let outcome = capture::capture(CaptureRequest {
                        tgid: status.tgid,
                        tid,
                        signal,
                        masks: status.masks,
                        scratch_dir: &self.opts.scratch_dir,
                        stop_timeout: self.opts.stop_timeout,
                        started,
                    });
                    return Handled::Crash(Box::new(outcome.capture));
                }
                Ok(status) => self.handlers.learn(tid, status.tgid),
                // Most likely the task is being killed (SIGKILL) right now;
                // delivering the signal is the only sensible thing left.
                Err(e) => tracing::debug!(tid, signal, error = %e, "cannot read task status"),
            }
        }
        resume(tid, ResumeHow::Cont(signal));
        Handled::Event
    }

    /// Thread `tid` stopped for a snapshot request: takes a snapshot of the
    /// child, one per request (an OOM snapshot, then each hang), or discards
    /// a request that reached another process (a forked one) or a thread
    /// already gone.
    fn snapshot(&mut self, tid: i32, started: Instant) -> Handled {
        let status = match procfs::task_status(tid) {
            Ok(status) if status.tgid == self.child => status,
            other => {
                tracing::debug!(tid, ok = other.is_ok(), "snapshot request discarded");
                // The request is ours: the child never sees it.
                resume(tid, ResumeHow::Cont(0));
                return Handled::Event;
            }
        };
        // Its threads are stopped and resumed; what they handle may differ
        // afterwards.
        self.handlers.forget_group(status.tgid);
        let capture = capture::snapshot::snapshot(SnapshotRequest {
            tgid: status.tgid,
            tid,
            masks: status.masks,
            scratch_dir: &self.opts.scratch_dir,
            stop_timeout: self.opts.stop_timeout,
            started,
        });
        Handled::Snapshot(Box::new(capture))
    }
}

#[derive(Clone, Copy, Debug)]
enum ResumeHow {
    Cont(i32),
    Listen,
}

/// Resumes a stopped tracee. `ESRCH` means it is gone (e.g. SIGKILLed while
/// stopped). A failed `PTRACE_LISTEN` (the stop was not a real group-stop)
/// falls back to `PTRACE_CONT`; any other failure to a detach, so the task
/// never stays stopped because of us (at the price of no longer tracing it).
fn resume(tid: i32, how: ResumeHow) {
    let result = match how {
        ResumeHow::Cont(sig) => sys::cont(tid, sig),
        ResumeHow::Listen => sys::listen(tid),
    };
    let err = match result {
        Ok(()) => return,
        Err(e) if sys::is_esrch(&e) => return,
        Err(e) => e,
    };
    tracing::warn!(tid, ?how, error = %err, "ptrace resume failed");
    let sig = match how {
        ResumeHow::Listen => match sys::cont(tid, 0) {
            Ok(()) => return,
            Err(e) if sys::is_esrch(&e) => return,
            Err(_) => 0,
        },
        ResumeHow::Cont(sig) => sig,
    };
    if let Err(e) = sys::detach(tid, sig)
        && !sys::is_esrch(&e)
    {
        tracing::error!(tid, error = %e, "cannot detach; task may stay stopped");
    }
}
