//! What is captured of a dying child. This file is the crash path: from one
//! thread's fatal signal-delivery-stop to a minidump on disk and a process
//! that dies of its real signal. Beside it: [`procfs`] (the facts `/proc`
//! gives), [`cgroup`], [`memory`], [`kmsg`] and [`oom`] (how much memory the
//! child used, and whether the OOM killer ended it), and [`snapshot`] (a
//! minidump of the live child, which runs on: `--oom-snapshot`).
//!
//! ```text
//!  T in signal-delivery-stop for S (fatal, no handler)
//!   │ 1. GETSIGINFO / GETREGS / GETFPREGS on T ──────────── fails: CONT(T, S), done
//!   │ 2. PTRACE_INTERRUPT every other task in /proc/P/task,
//!   │    waitpid(tid, WNOHANG) each until stopped; re-list /proc
//!   │    until no new task appears (a stop may reveal a pending
//!   │    signal: remember it with its siginfo)
//!   │ 3. kill(P, SIGSTOP), then PTRACE_DETACH(tid, 0) for all
//!   │ 4. poll /proc/P/task/TID/stat until each is 'T' (or dead)
//!   │ 5. tgkill(P, T, S)            ← pending; T is stopped so it waits
//!   │    + re-queue remembered signals that are safe while stopped
//!   │ 6. open deleted mappings (pins their inodes)
//!   │ 7. minidump-writer: attaches, dumps, detaches, SIGCONT
//!   │ 8. kill(P, SIGCONT); re-queue the remaining remembered signals
//!   ▼ 9. copy the pinned deleted files (process may be dead by now)
//!  T takes S with its default action → parent sees WIFSIGNALED(S)
//! ```
//!
//! Why this order:
//! - minidump-writer attaches with `PTRACE_ATTACH` itself; while we are the
//!   tracer every attach fails with `EPERM` and it writes a dump with no
//!   threads. So we must detach, and to keep the process from running while
//!   nobody traces it, `SIGSTOP` goes out *before* the detaches: every
//!   detached thread finds it pending and joins the group-stop before it can
//!   return to user space.
//! - S is re-queued only once every thread is in the group-stop. Detaching T
//!   with signal 0 discarded the original S; a thread re-executing a faulting
//!   instruction would fault again, but `abort()` or `int3` would not, so S
//!   must be sent again. The crash signals are all "core" signals, for which
//!   the kernel does not start a group exit at send time: it stays pending on
//!   the stopped T until `SIGCONT`.
//! - Remembered signals of *other* threads are re-queued with S when that is
//!   harmless to a stopped process (handled, ignored, core or stop signals),
//!   so they are certain to be pending before the process resumes. The rest
//!   wait until after the dump: a signal whose default action kills without a
//!   core (SIGTERM, an RT signal without handler…) starts the group exit the
//!   moment it is sent, even to a stopped process, and SIGCONT would resume
//!   it; either would end the dump early. Those are re-queued at release,
//!   when S is already about to kill the process, and may find it gone.
//!
//! Invariant: every task this path stops is released on every exit, including
//! panics — the [`Hold`] guard detaches, re-queues and sends `SIGCONT` in its
//! `Drop` whatever was not done yet.

mod context;
mod dump;
mod error;
mod handled;
mod hold;
mod preserve;
pub mod snapshot;
mod stop;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use minidump_writer::crash_context::CrashContext;

pub use self::error::CaptureError;
use self::hold::Hold;
pub use self::snapshot::{SnapshotCapture, discard_snapshot};
use crate::process::procfs::{self, SignalMasks};
use crate::process::siginfo::SigInfo;
use crate::process::signals;
use crate::sys::ptrace as sys;

/// Everything known about one captured crash.
#[derive(Debug)]
pub struct CrashCapture {
    /// The crashed process (thread group id).
    pub pid: i32,
    /// The thread that took the fatal signal.
    pub tid: i32,
    /// The fatal signal.
    pub signal: i32,
    /// `si_code` of the original signal (e.g. `SEGV_MAPERR`, `SI_TKILL`).
    pub si_code: i32,
    /// The faulting address, for faults that have one.
    pub fault_addr: Option<u64>,
    /// Who sent the signal, when it was sent (`kill`, `tgkill`, `raise`…:
    /// `si_code <= 0`) rather than raised by a fault.
    pub sender: Option<Sender>,
    /// Facts worth a line in the report.
    pub notes: Vec<String>,
    /// Name of the crashing thread.
    pub thread_name: String,
    /// The process's executable (may end in ` (deleted)`).
    pub exe: PathBuf,
    /// The minidump, or why there is none.
    pub dump: Result<DumpFile, CaptureError>,
    /// Deleted executable mappings copied into the scratch directory.
    pub preserved: Vec<PreservedMapping>,
    /// Live threads of the process when it was stopped (crashing one included).
    pub threads: usize,
    /// Signals found pending on other threads and sent again.
    pub requeued: Vec<RequeuedSignal>,
    /// Problems that did not prevent the capture.
    pub soft_errors: Vec<CaptureError>,
    /// From the fatal stop being handled to the dump file being written.
    pub elapsed: Duration,
    /// Where `elapsed` went.
    pub phases: CapturePhases,
}

/// The process that sent a fatal signal.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sender {
    pub pid: i32,
    pub uid: u32,
    /// Its command name, if it was still running when the signal arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
}

/// Durations of the capture's phases (the dump window is their sum).
#[derive(Clone, Copy, Debug, Default)]
pub struct CapturePhases {
    /// Reading T's state and ptrace-stopping every other thread.
    pub stop_threads: Duration,
    /// SIGSTOP, detaching, and waiting for the group-stop.
    pub settle: Duration,
    /// minidump-writer.
    pub dump: Duration,
}

/// A minidump written into the scratch directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpFile {
    pub path: PathBuf,
    pub size: u64,
}

/// A deleted file that was mapped executable, copied before it vanished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreservedMapping {
    /// The path the file had when it was mapped.
    pub original_path: PathBuf,
    /// The copy in the scratch directory.
    pub preserved_path: PathBuf,
    pub size: u64,
    pub inode: u64,
    /// Lowest address the file was mapped at.
    pub base_address: u64,
}

/// A signal another thread was about to receive when it was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequeuedSignal {
    pub tid: i32,
    pub signal: i32,
    /// Sent with its original siginfo (`rt_tgsigqueueinfo`) rather than `tgkill`.
    pub verbatim: bool,
    /// Sent only once the process was released: delivering it while the
    /// process was stopped would have ended the dump window early. The
    /// process may already have been dying of the crash signal by then.
    pub after_release: bool,
}

/// Inputs of one capture.
pub(crate) struct CaptureRequest<'a> {
    pub tgid: i32,
    pub tid: i32,
    pub signal: i32,
    /// Signal dispositions read at the fatal stop.
    pub masks: SignalMasks,
    pub scratch_dir: &'a Path,
    pub stop_timeout: Duration,
    /// When the fatal stop was taken from `waitpid`.
    pub started: Instant,
}

/// The capture plus tasks that never reported their interrupt-stop: they are
/// still our tracees and must be detached when their stop finally arrives.
pub(crate) struct Outcome {
    pub capture: CrashCapture,
    pub laggards: Vec<i32>,
}

/// Runs the crash path for thread `req.tid`, which must be in its
/// signal-delivery-stop for `req.signal`.
pub(crate) fn capture(req: CaptureRequest<'_>) -> Outcome {
    let CaptureRequest { tgid, tid, signal, .. } = req;
    let thread_name = procfs::thread_name(tgid, tid).unwrap_or_default();
    let exe = procfs::exe(tid).unwrap_or_default();

    // 1. T's state at the fault. Nothing else has been touched yet, so on
    // failure the signal is simply handed back and the process dies as it
    // would have without us.
    let (ctx, info, handled) = match read_crash_state(tgid, tid) {
        Ok(state) => state,
        Err(err) => {
            if let Err(e) = sys::cont(tid, signal)
                && !sys::is_esrch(&e)
            {
                tracing::warn!(pid = tgid, tid, error = %e, "failed to pass the crash signal on");
            }
            let capture = CrashCapture {
                pid: tgid,
                tid,
                signal,
                si_code: 0,
                fault_addr: None,
                sender: None,
                notes: Vec::new(),
                thread_name,
                exe,
                dump: Err(err),
                preserved: Vec::new(),
                threads: 0,
                requeued: Vec::new(),
                soft_errors: Vec::new(),
                elapsed: req.started.elapsed(),
                phases: CapturePhases::default(),
            };
            return Outcome { capture, laggards: Vec::new() };
        }
    };

    // The sender's name while it may still be there (a `kill` command is
    // gone in a moment).
    let sender = info.sender().map(|(pid, uid)| Sender { pid, uid, comm: procfs::comm(pid) });

    // 2–7. The dump window.
    let mut hold = Hold::new(tgid, tid, signal, req.masks);
    let window = run_window(&req, &mut hold, ctx);
    let elapsed = req.started.elapsed();

    // 8. Release: whatever the window left undone (normally SIGCONT and the
    // signals that could not be re-queued while stopped).
    hold.release();
    let mut soft_errors = std::mem::take(&mut hold.soft_errors);
    soft_errors.extend(window.soft_errors);

    // 9. Copy the pinned files; the process may already be gone.
    let (preserved, errors) = preserve::copy_all(tgid, window.opened, req.scratch_dir);
    soft_errors.extend(errors);

    let capture = CrashCapture {
        pid: tgid,
        tid,
        signal,
        si_code: info.code(),
        fault_addr: info.fault_addr(),
        sender,
        notes: if handled {
            vec![format!(
                "the program's signal handler caught this {} on an alternate stack and raised it again; the \
                 minidump shows the code that faulted, not the handler",
                signals::name(signal)
            )]
        } else {
            Vec::new()
        },
        thread_name,
        exe,
        dump: window.dump,
        preserved,
        threads: window.threads,
        requeued: std::mem::take(&mut hold.requeued),
        soft_errors,
        elapsed,
        phases: window.phases,
    };
    tracing::debug!(
        pid = tgid,
        tid,
        signal,
        threads = capture.threads,
        elapsed_us = capture.elapsed.as_micros() as u64,
        ok = capture.dump.is_ok(),
        "crash captured"
    );
    Outcome { capture, laggards: window.laggards }
}

/// What the dump window produced.
struct Window {
    phases: CapturePhases,
    threads: usize,
    dump: Result<DumpFile, CaptureError>,
    opened: Vec<preserve::OpenDeleted>,
    laggards: Vec<i32>,
    soft_errors: Vec<CaptureError>,
}

/// Steps 2–7: everything that happens while the process is held.
fn run_window(req: &CaptureRequest<'_>, hold: &mut Hold, ctx: CrashContext) -> Window {
    let (tgid, tid) = (req.tgid, req.tid);
    let mut phases = CapturePhases::default();
    let mut soft_errors = Vec::new();

    // 2. Stop every other thread.
    let laggards = stop::stop_other_threads(hold, req.stop_timeout);
    let threads = 1 + hold.stopped.len() + laggards.len();
    phases.stop_threads = req.started.elapsed();

    // 3–4. SIGSTOP, detach, wait for the group-stop.
    let settle_start = Instant::now();
    if let Err(e) = hold.settle(req.stop_timeout, &mut soft_errors) {
        // Without a pending SIGSTOP, detaching would let the process run
        // during the dump: give up, and Hold::release hands S back.
        return Window { phases, threads, dump: Err(e), opened: Vec::new(), laggards, soft_errors };
    }
    // 5. S goes back to T now that it cannot run, with the other threads'
    // signals that cannot disturb a stopped process.
    hold.requeue_crash_signal();
    hold.requeue_pending(false);
    phases.settle = settle_start.elapsed();

    // 6. Pin deleted mappings while /proc/P/map_files still exists.
    let (opened, errors) = preserve::open_deleted(tgid, tid);
    soft_errors.extend(errors);

    // 7. The dump.
    let dump_start = Instant::now();
    let target = dump::DumpTarget::new("crash", tgid, tid, req.scratch_dir, req.stop_timeout);
    let dump = dump::write_dump(&target, Some(ctx));
    phases.dump = dump_start.elapsed();

    Window { phases, threads, dump, opened, laggards, soft_errors }
}

/// Reads the crash context (registers, FP state, siginfo) of thread `tid`.
/// T's crash context and siginfo; `true` when they are those of a fault
/// the program's handler caught on an alternate stack and raised again
/// (see `handled.rs`).
fn read_crash_state(tgid: i32, tid: i32) -> Result<(CrashContext, SigInfo, bool), CaptureError> {
    let state_err = |what| move |source| CaptureError::CrashState { tid, what, source };
    let info = SigInfo::new(sys::get_siginfo(tid).map_err(state_err("siginfo"))?);
    let regs = sys::get_regs(tid).map_err(state_err("registers"))?;
    let fpregs = sys::get_fpregs(tid).map_err(state_err("floating-point registers"))?;
    let (regs, info, handled) = match handled::find(tgid, info.signo(), &regs) {
        Some(handled) => (handled.regs, handled.info, true),
        None => (regs, info, false),
    };
    let ctx = context::build(tgid, tid, &regs, &fpregs, &info).ok_or(CaptureError::ContextLayout { tid })?;
    Ok((ctx, info, handled))
}
