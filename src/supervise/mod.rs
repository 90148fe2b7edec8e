//! The child's life: start it, trace it, pass signals on to it, reap it and
//! every orphan handed to us. [`start`] returns a [`Supervisor`] whose
//! [`Supervisor::next_event`] yields every input of that life as one typed
//! [`Event`]; the caller's loop (`commands::run`) handles them in one place.
//!
//! Three threads, each with one duty, as in tini:
//! - the *tracer* thread forks the child, seizes it with ptrace while it is
//!   held before exec (see [`spawn`]), releases it, then blocks in `waitpid`
//!   until the child is reaped, feeding every status to the [`Tracer`] and
//!   sending what comes of it (started, crash, snapshot, ended). It is the
//!   only thread that ptraces: the kernel takes the thread that attached as
//!   the tracer;
//! - the *signals* thread ([`signals`]) takes every signal crashwatch
//!   receives with `sigwaitinfo` and sends each as [`Event::Signal`];
//! - the calling thread runs the loop: it forwards signals, and as PID 1 or
//!   a subreaper reaps orphans ([`Supervisor::forward`] on SIGCHLD).
//!
//! Who waits for whom: the tracer and the calling thread wait with
//! `__WNOTHREAD`, so each sees only the children it is the parent of. The
//! child and its traced tasks belong to the tracer thread, which forked and
//! seized them. An orphan is reparented by the kernel to the first live
//! thread of the subreaper (or PID 1), the main thread, which reaps it.
//! Children that any other thread starts (a symbolication helper) are left
//! to that thread's own `wait`, never stolen.
//!
//! The signals are blocked from crashwatch's start, so a SIGTERM that
//! arrives while the child starts is queued and forwarded once its pid is
//! known, never lost. A stop signal (TERM, INT, HUP, QUIT) also sets an
//! atomic on the signals thread as it is taken, so whether a stop was
//! requested before the child ended is known exactly even if the event is
//! still queued: an orderly `docker stop` must not be mistaken for a crash.
//!
//! Not PID 1 and not a subreaper, crashwatch cannot reap what the child
//! leaves behind; it says so once, when the child has ended and processes
//! of its process group are still there ([`orphans`]).

mod orphans;
pub mod signals;
pub mod spawn;
#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

pub use signals::Hub;
pub use spawn::{Prepared, SpawnError};

use crate::capture::{CrashCapture, SnapshotCapture};
use crate::exit;
use crate::memory::cgroup::{CgroupError, MemoryCgroup};
use crate::process::{ChildStatus, signals as names};
use crate::ptrace::{Handled, TraceOptions, Tracer};
use crate::sys;

/// What to start and how to treat it.
pub struct Spec {
    pub prepared: Prepared,
    /// Becomes the child's stdout (a pipe's write end or a terminal).
    pub stdout: OwnedFd,
    /// Becomes the child's stderr.
    pub stderr: OwnedFd,
    /// Hand the terminal's foreground to the child when stdin is a terminal.
    pub take_terminal: bool,
    /// Forward signals to the child's process group rather than the child.
    pub signal_group: bool,
    /// Reap orphans handed to the calling thread: crashwatch is PID 1 or a
    /// subreaper.
    pub reap_orphans: bool,
    /// Trace the child to capture its crashes; `None` to only supervise.
    pub trace: Option<TraceOptions>,
    /// The memory cgroup the child joins while it is held before exec (its
    /// `--memory-limit`). Failing to join kills the held child and fails the
    /// start: the program never runs other than as asked.
    pub cgroup: Option<MemoryCgroup>,
    /// Where crashwatch's signals are collected ([`signals::take_over`]).
    pub signals: &'static Hub,
}

/// One input of the child's life, in the order it happened.
#[derive(Debug)]
pub enum Event {
    /// The child was released from its hold and runs the program.
    Started { pid: libc::pid_t },
    /// crashwatch received `signal` (one to forward, see
    /// [`crate::process::signals::is_forwarded`], or SIGCHLD when reaping
    /// orphans): hand it to [`Supervisor::forward`].
    Signal(i32),
    /// The tracer caught a process (the child, or a descendant with
    /// `follow_forks`) about to die of a crash signal and dumped it; the
    /// process has been released to die of it.
    Crash(Box<CrashCapture>),
    /// A snapshot of the running child that `ptrace::request_snapshot`
    /// asked for; the child runs on.
    Snapshot(Box<SnapshotCapture>),
    /// The child has been reaped, or could not be started: the last event.
    Ended(Result<Finished, SuperviseError>),
}

/// How a supervised child ended.
#[derive(Debug, Clone)]
pub struct Finished {
    pub pid: libc::pid_t,
    pub status: ChildStatus,
    pub started_at: SystemTime,
    pub ended_at: SystemTime,
    /// The last stop signal (TERM, INT, HUP, QUIT) crashwatch received
    /// before the child ended, if any: the child was asked to stop.
    pub stop_requested: Option<i32>,
    /// The child's peak resident set, bytes, as the kernel counted it to
    /// the end (`wait4`'s `ru_maxrss`).
    pub peak_rss: Option<u64>,
    /// How long it ran, on the monotonic clock (a wall-clock step during
    /// the run does not change it).
    pub ran_for: Duration,
    /// The child's executable after its last exec (see
    /// [`crate::process::procfs::executable`]); `None` when it was not traced.
    pub exe: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("failed to start the {0} thread")]
    Thread(&'static str, #[source] io::Error),
    #[error("failed to wait for child {pid}")]
    Wait {
        pid: libc::pid_t,
        #[source]
        source: io::Error,
    },
    #[error("the child was not started")]
    JoinCgroup(#[source] CgroupError),
    #[error("the tracer thread panicked; {}", match .pid {
        Some(pid) => format!("child {pid} may still be running"),
        None => "the child was not started".to_string(),
    })]
    TracerPanicked { pid: Option<libc::pid_t> },
}

impl SuperviseError {
    /// The code crashwatch exits with when a run fails this way.
    pub fn exit_code(&self) -> i32 {
        match self {
            SuperviseError::Spawn(e) => e.exit_code(),
            _ => exit::CANNOT_SUPERVISE,
        }
    }
}

/// Makes crashwatch a child subreaper, so orphaned descendants of the child
/// are reparented to it (to its main thread, which reaps them).
pub fn become_subreaper() -> io::Result<()> {
    sys::set_child_subreaper()
}

/// A child being supervised: the source of its [`Event`]s.
pub struct Supervisor {
    events: mpsc::Receiver<Event>,
    pid: Option<libc::pid_t>,
    /// Signals that arrived before the child's pid was known.
    early: Vec<i32>,
    signal_group: bool,
    reap: bool,
    ended: bool,
    /// Ended when the run ends: signals after it are not this child's.
    signals: Option<signals::Subscription>,
    tracer: Option<JoinHandle<()>>,
}

/// Starts the child described by `spec`; its life arrives as events.
pub fn start(spec: Spec) -> Result<Supervisor, SuperviseError> {
    let stop = Arc::new(AtomicUsize::new(0));
    let (tx, events) = mpsc::channel();
    let (to_loop, stop_flag, reap) = (tx.clone(), Arc::clone(&stop), spec.reap_orphans);
    let subscription = spec.signals.forward_to(Box::new(move |signal| {
        if signal == libc::SIGCHLD && !reap {
            return true;
        }
        if names::STOP.contains(&signal) {
            stop_flag.store(signal as usize, Ordering::SeqCst);
        }
        to_loop.send(Event::Signal(signal)).is_ok()
    }));
    let mut supervisor = Supervisor {
        events,
        pid: None,
        early: Vec::new(),
        signal_group: spec.signal_group,
        reap: spec.reap_orphans,
        ended: false,
        signals: Some(subscription),
        tracer: None,
    };
    let tracer = thread::Builder::new().name("tracer".into()).spawn(move || {
        let end = trace_to_end(spec, &tx, &stop);
        let _ = tx.send(Event::Ended(end));
    });
    supervisor.tracer = Some(tracer.map_err(|e| SuperviseError::Thread("tracer", e))?);
    Ok(supervisor)
}

impl Supervisor {
    /// The next input of the child's life; blocks until there is one. After
    /// [`Event::Ended`] the run is over and this is not to be called again.
    pub fn next_event(&mut self) -> Event {
        let event = match self.events.recv() {
            Ok(event) => event,
            // Only the tracer thread can end without sending Ended: a panic.
            Err(mpsc::RecvError) => Event::Ended(Err(SuperviseError::TracerPanicked { pid: self.pid })),
        };
        match &event {
            Event::Started { pid } => {
                tracing::debug!(pid, "child started");
                self.pid = Some(*pid);
                for signal in std::mem::take(&mut self.early) {
                    forward(*pid, signal, self.signal_group);
                }
            }
            Event::Ended(_) => self.finish(),
            _ => {}
        }
        event
    }

    /// The child's pid, once it has started.
    pub fn pid(&self) -> Option<libc::pid_t> {
        self.pid
    }

    /// Acts on a signal crashwatch received: SIGCHLD reaps orphans, any
    /// other is passed on to the child (or its process group). A signal
    /// that arrives before the child started waits for its pid.
    pub fn forward(&mut self, signal: i32) {
        if signal == libc::SIGCHLD {
            orphans::reap();
            return;
        }
        match self.pid {
            Some(pid) => forward(pid, signal, self.signal_group),
            // Forwarded when the child's pid is known (Event::Started).
            None => self.early.push(signal),
        }
    }

    /// The run is over: stop collecting signals and reap what is left.
    fn finish(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.signals = None;
        if let Some(thread) = self.tracer.take() {
            let _ = thread.join();
        }
        if self.reap {
            // Orphans that died alongside the child: reap them now rather
            // than leave zombies for as long as crashwatch still runs.
            orphans::reap();
        } else if let Some(pid) = self.pid {
            orphans::warn_left_behind(pid);
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // An early return from the caller's loop must not leave signals
        // going to a channel nobody reads. The tracer thread ends with the
        // child (EXITKILL ties the child to crashwatch).
        self.signals = None;
    }
}

/// The tracer thread's body: start the child, then feed every wait status
/// to the tracer until the child is reaped.
fn trace_to_end(spec: Spec, events: &mpsc::Sender<Event>, stop: &AtomicUsize) -> Result<Finished, SuperviseError> {
    let Spec { prepared, stdout, stderr, take_terminal, trace, cgroup, .. } = spec;
    let held = spawn::fork(&prepared, &stdout, &stderr, take_terminal)?;
    // Our copies of the child's ends must go, or the pumps never see EOF.
    drop(stdout);
    drop(stderr);
    let pid = held.pid;
    if let Some(cgroup) = cgroup
        && let Err(e) = cgroup.add(pid)
    {
        let _ = sys::ptrace::kill(pid, libc::SIGKILL);
        let _ = sys::ptrace::waitpid(pid, libc::__WALL);
        return Err(SuperviseError::JoinCgroup(e));
    }
    // Seize before the release, so the tracer sees the first instruction.
    let mut tracer = trace.and_then(|opts| match Tracer::seize(pid, opts) {
        Ok(tracer) => Some(tracer),
        Err(e) => {
            // The program must run even when it cannot be traced.
            tracing::warn!(
                "{}; crashes of this run are recorded without a minidump (`crashwatch doctor` says why)",
                crate::errors::Chain(&e)
            );
            None
        }
    });
    let started_at = SystemTime::now();
    let clock = Instant::now();
    if let Err(e) = held.release() {
        // The child has exited 127 after reporting the errno; reap it.
        let _ = sys::ptrace::waitpid(pid, libc::__WALL);
        return Err(e.into());
    }
    let _ = events.send(Event::Started { pid });
    let (status, peak_rss) = loop {
        let (task, raw, peak) = sys::ptrace::wait_any().map_err(|source| SuperviseError::Wait { pid, source })?;
        if let Some(tracer) = tracer.as_mut() {
            match tracer.handle(task, raw) {
                Handled::Event => continue,
                Handled::Crash(capture) => {
                    let _ = events.send(Event::Crash(capture));
                    continue;
                }
                Handled::Snapshot(snapshot) => {
                    let _ = events.send(Event::Snapshot(snapshot));
                    continue;
                }
                Handled::Ended => {}
            }
        }
        if task != pid {
            tracing::trace!(pid = task, status = raw, "a task, descendant or orphan ended");
            continue;
        }
        if let Some(status) = ChildStatus::from_raw(raw) {
            break (status, Some(peak).filter(|p| *p > 0));
        }
    };
    let stop_requested = match stop.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal as i32),
    };
    Ok(Finished {
        pid,
        status,
        started_at,
        ended_at: SystemTime::now(),
        stop_requested,
        peak_rss,
        ran_for: clock.elapsed(),
        exe: tracer.as_ref().and_then(|t| t.exe()).map(std::path::Path::to_owned),
    })
}

/// Sends `signal` to the child `pid`, or to its process group with `group`
/// (`--signal-group`); a child already gone is not an error.
pub fn forward(pid: libc::pid_t, signal: i32, group: bool) {
    let target = if group { -pid } else { pid };
    tracing::debug!(pid, signal = %names::name(signal), group, "forwarding signal");
    // ESRCH only means the child is already gone.
    if let Err(e) = sys::ptrace::kill(target, signal)
        && !sys::ptrace::is_esrch(&e)
    {
        tracing::warn!(pid, "failed to forward {} to the child: {e}", names::name(signal));
    }
}
