//! The child's life: start it, pass signals on to it, reap it and every
//! orphan handed to us, and say how it ended.
//!
//! Two threads share the work, each doing one duty, as in tini:
//!
//! - the *tracer* thread forks the child, seizes it with ptrace while it is
//!   held before exec (see [`spawn`]), releases it, then blocks in `waitpid`
//!   until the child is reaped, feeding every status to the [`Tracer`]. It is
//!   the only thread that ptraces, since the kernel takes the thread that
//!   attached as the tracer;
//! - the calling thread collects SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1,
//!   SIGUSR2 and SIGWINCH synchronously (signal-hook's self-pipe: the
//!   handlers only write a byte) and forwards each to the child. As PID 1 or
//!   a subreaper it also collects SIGCHLD and reaps orphans.
//!
//! Who waits for whom: both threads wait with `__WNOTHREAD`, so each sees
//! only the children it is the parent of. The child and its traced tasks
//! belong to the tracer thread, which forked and seized them. An orphan is
//! reparented by the kernel to the first live thread of the subreaper (or
//! PID 1), i.e. the main thread, which reaps it. Children that any other
//! thread starts (a symbolication helper) are left to that thread's own
//! `wait`, never stolen.
//!
//! The signal handlers are installed before the fork, so a SIGTERM that
//! arrives while the child starts is queued and forwarded once its pid is
//! known, never lost. When the tracer thread has reaped the child it closes
//! the signal iterator, which ends the forwarding loop.
//!
//! A stop signal (TERM, INT, HUP, QUIT) also sets an atomic from within its
//! handler, so whether a stop was requested before the child ended is known
//! exactly: the iterator drops signals still queued when it is closed, and
//! an orderly `docker stop` must not be mistaken for a crash.

pub mod spawn;

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::SystemTime;

use signal_hook::iterator::{Handle, Signals};

pub use crate::process::ChildStatus;
pub use spawn::{Prepared, SpawnError};

use crate::process::signals;
use crate::ptrace::{CrashCapture, Handled, SnapshotCapture, TraceOptions, Tracer};
use crate::sys;

/// The signals passed on to the child.
pub const FORWARDED: [i32; 7] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2, libc::SIGWINCH];

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
    /// Reap orphans handed to this (the calling) thread: crashwatch is PID 1
    /// or a subreaper.
    pub reap_orphans: bool,
    /// Trace the child to capture its crashes; `None` to only supervise.
    pub trace: Option<TraceOptions>,
    /// Called on the tracer thread while the child is held before exec: the
    /// last moment to put it in a cgroup. An error kills the held child and
    /// fails the start.
    pub before_exec: Option<BeforeExec>,
    /// Called on the calling thread once the child runs, with its pid.
    pub on_started: Option<Box<dyn FnOnce(libc::pid_t) + Send>>,
    /// Called on the tracer thread with the child's pid and every crash
    /// captured (of the child, or of a descendant with `follow_forks`), as
    /// soon as the crashed process has been released to die of its signal.
    pub on_crash: Box<dyn FnMut(libc::pid_t, Box<CrashCapture>) + Send>,
    /// Called on the tracer thread with the snapshot of the running child
    /// that a request (`ptrace::request_snapshot`) asked for. Without it, a
    /// snapshot's dump is deleted. Must return quickly: the child's threads
    /// wait for the tracer loop to resume them.
    pub on_snapshot: Option<OnSnapshot>,
}

/// See [`Spec::on_snapshot`].
pub type OnSnapshot = Box<dyn FnMut(libc::pid_t, Box<SnapshotCapture>) + Send>;

/// See [`Spec::before_exec`].
pub type BeforeExec = Box<dyn FnOnce(libc::pid_t) -> Result<(), Box<dyn std::error::Error + Send + Sync>> + Send>;

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
    pub ran_for: std::time::Duration,
    /// The child's executable after its last exec (see
    /// [`crate::process::procfs::executable`]); `None` when it was not traced.
    pub exe: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("failed to install the signal handlers that forward signals to the child")]
    Signals(#[source] io::Error),
    #[error("failed to start the tracer thread")]
    Thread(#[source] io::Error),
    #[error("failed to wait for child {pid}")]
    Wait {
        pid: libc::pid_t,
        #[source]
        source: io::Error,
    },
    #[error("failed to prepare child {pid} before it ran")]
    BeforeExec {
        pid: libc::pid_t,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the tracer thread of child {pid} panicked; the child may still be running")]
    TracerPanicked { pid: libc::pid_t },
}

/// Makes crashwatch a child subreaper, so orphaned descendants of the child
/// are reparented to it (to its main thread, which reaps them).
pub fn become_subreaper() -> io::Result<()> {
    sys::set_child_subreaper()
}

/// Runs the child described by `spec` to its end.
pub fn supervise(mut spec: Spec) -> Result<Finished, SuperviseError> {
    let on_started = spec.on_started.take();
    let mut signals = Signals::new(FORWARDED).map_err(SuperviseError::Signals)?;
    let stop = Arc::new(AtomicUsize::new(0));
    // Unregistered when this run ends, so a --restart loop does not pile
    // up one more action per signal for every run.
    let mut stop_flags = StopFlags(Vec::new());
    for signal in signals::STOP {
        stop_flags.0.push(
            signal_hook::flag::register_usize(signal, Arc::clone(&stop), signal as usize)
                .map_err(SuperviseError::Signals)?,
        );
    }
    let close = CloseOnDrop(signals.handle());
    let signal_group = spec.signal_group;
    let reap = spec.reap_orphans;
    if reap {
        signals.add_signal(libc::SIGCHLD).map_err(SuperviseError::Signals)?;
    }
    let (started_tx, started_rx) = mpsc::channel();
    let tracer = thread::Builder::new()
        .name("tracer".into())
        .spawn(move || {
            let _close = close;
            start_and_wait(spec, started_tx, &stop)
        })
        .map_err(SuperviseError::Thread)?;

    let Ok((pid, started_at)) = started_rx.recv() else {
        // The tracer ended without starting the child: it says why.
        return match tracer.join() {
            Ok(Err(e)) => Err(e),
            _ => Err(SuperviseError::TracerPanicked { pid: 0 }),
        };
    };
    tracing::debug!(pid, "child started");
    if let Some(on_started) = on_started {
        on_started(pid);
    }
    for signal in signals.forever() {
        if signal == libc::SIGCHLD {
            reap_orphans();
        } else {
            forward(pid, signal, signal_group);
        }
    }
    if reap {
        // Orphans that died alongside the child: reap them now rather than
        // leave zombies for as long as crashwatch still runs.
        reap_orphans();
    }
    let TracerEnd { status, peak_rss, ran_for, ended_at, stop_requested, exe } =
        tracer.join().map_err(|_| SuperviseError::TracerPanicked { pid })??;
    Ok(Finished { pid, status, started_at, ended_at, stop_requested, peak_rss, ran_for, exe })
}

/// The stop-signal flags of one run, unregistered when it ends.
struct StopFlags(Vec<signal_hook::SigId>);

impl Drop for StopFlags {
    fn drop(&mut self) {
        for id in self.0.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Closes the signal iterator when the tracer thread ends, however it ends.
struct CloseOnDrop(Handle);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// What the tracer thread knows when the child has ended.
struct TracerEnd {
    status: ChildStatus,
    peak_rss: Option<u64>,
    ran_for: std::time::Duration,
    ended_at: SystemTime,
    stop_requested: Option<i32>,
    exe: Option<std::path::PathBuf>,
}

/// The tracer thread's body.
fn start_and_wait(
    spec: Spec,
    started: mpsc::Sender<(libc::pid_t, SystemTime)>,
    stop: &AtomicUsize,
) -> Result<TracerEnd, SuperviseError> {
    let Spec { prepared, stdout, stderr, take_terminal, trace, mut on_crash, mut on_snapshot, before_exec, .. } = spec;
    let held = spawn::fork(&prepared, &stdout, &stderr, take_terminal)?;
    // Our copies of the child's ends must go, or the pumps never see EOF.
    drop(stdout);
    drop(stderr);
    let pid = held.pid;
    if let Some(before_exec) = before_exec
        && let Err(source) = before_exec(pid)
    {
        // Never run the program other than as asked (a memory limit).
        let _ = sys::ptrace::kill(pid, libc::SIGKILL);
        let _ = sys::ptrace::waitpid(pid, libc::__WALL);
        return Err(SuperviseError::BeforeExec { pid, source });
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
    let clock = std::time::Instant::now();
    if let Err(e) = held.release() {
        // The child has exited 127 after reporting the errno; reap it.
        let _ = sys::ptrace::waitpid(pid, libc::__WALL);
        return Err(e.into());
    }
    let _ = started.send((pid, started_at));
    let (status, peak_rss) = wait_for(pid, tracer.as_mut(), &mut *on_crash, &mut on_snapshot)?;
    let stop_requested = match stop.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal as i32),
    };
    let exe = tracer.as_ref().and_then(|t| t.exe()).map(std::path::Path::to_owned);
    Ok(TracerEnd { status, peak_rss, ran_for: clock.elapsed(), ended_at: SystemTime::now(), stop_requested, exe })
}

/// Waits until `child` ends, handling the stops of its traced tasks and
/// reaping every other process that ends on the way: orphans reparented to
/// us as PID 1 or subreaper. Returns its status and its peak resident set.
fn wait_for(
    child: libc::pid_t,
    mut tracer: Option<&mut Tracer>,
    on_crash: &mut dyn FnMut(libc::pid_t, Box<CrashCapture>),
    on_snapshot: &mut Option<OnSnapshot>,
) -> Result<(ChildStatus, Option<u64>), SuperviseError> {
    let status = loop {
        let (pid, raw, peak) = sys::ptrace::wait_any().map_err(|source| SuperviseError::Wait { pid: child, source })?;
        if let Some(tracer) = tracer.as_deref_mut() {
            match tracer.handle(pid, raw) {
                Handled::Event => continue,
                Handled::Crash(capture) => {
                    on_crash(child, capture);
                    continue;
                }
                Handled::Snapshot(snapshot) => {
                    match on_snapshot {
                        Some(on_snapshot) => on_snapshot(child, snapshot),
                        None => {
                            if let Ok(dump) = &snapshot.dump {
                                let _ = std::fs::remove_file(&dump.path);
                            }
                        }
                    }
                    continue;
                }
                Handled::Ended => {}
            }
        }
        if pid != child {
            tracing::trace!(pid, status = raw, "a task, descendant or orphan ended");
            continue;
        }
        if let Some(status) = ChildStatus::from_raw(raw) {
            break (status, Some(peak).filter(|p| *p > 0));
        }
    };
    Ok(status)
}

/// Reaps every finished child of the calling thread (orphans reparented to
/// it) without blocking.
fn reap_orphans() {
    while let Ok(Some((pid, status))) = sys::ptrace::waitpid(-1, libc::__WALL | libc::__WNOTHREAD | libc::WNOHANG) {
        tracing::debug!(pid, status, "reaped an orphaned descendant");
    }
}

fn forward(pid: libc::pid_t, signal: i32, group: bool) {
    let target = if group { -pid } else { pid };
    tracing::debug!(pid, signal = %signals::name(signal), group, "forwarding signal");
    // Every forwarded signal is a standard one, which nix can represent.
    let Ok(sig) = nix::sys::signal::Signal::try_from(signal) else { return };
    // ESRCH only means the child is already gone.
    if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(target), sig)
        && e != nix::errno::Errno::ESRCH
    {
        tracing::warn!(pid, "failed to forward {} to the child: {e}", signals::name(signal));
    }
}
