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
//!   │    until no new task appears (a stop may reveal a signal the
//!   │    task had dequeued: remember it)
//!   │ 3. open deleted mappings (pins their inodes)
//!   │ 4. minidump-writer into memory, on this thread (the tracer):
//!   │    registers of the stopped tasks by PTRACE_GETREGSET, memory
//!   │    by process_vm_readv — no SIGSTOP, no detach, no attach
//!   │ 5. CONT(T, S), and every other task with the signal it had
//!   │    dequeued (0 after an interrupt-stop; LISTEN if it was in a
//!   │    group-stop): a handled one before T, one whose signal could
//!   │    end the process before S does only once the group exit has
//!   │    taken it out of its stop
//!   ▼ 6. write the dump file; copy the pinned deleted files (the
//!        process may be dead by now)
//!  T takes S with its default action; the tracer loop reaps every
//!  thread as usual, and the parent sees WIFSIGNALED(S)
//! ```
//!
//! Why this order:
//! - Every task is in a ptrace-stop of ours after step 2, which is as
//!   stopped as a task can be: minidump-writer is told so
//!   (`threads_stopped_by_caller`, our patch of it, see
//!   `vendor/minidump-writer/CRASHWATCH.md`) and reads each thread's
//!   registers from our stops. The kernel answers ptrace requests from the
//!   tracer thread only, which is why the dump is written here, inline in
//!   the tracer loop. The process is never untraced, and nothing but our
//!   `PTRACE_CONT`s lets it run again.
//! - T keeps its signal-delivery-stop until step 5, so S is handed back by
//!   the kernel itself, siginfo included: nothing is re-sent.
//! - Other threads' dequeued signals are handed back the same way, when they
//!   are resumed. A handled or ignored one goes before T: after T the group
//!   exit could take its thread out of the stop first and the signal would
//!   be lost for certain. A signal whose default action would end or stop
//!   the process (SIGTERM, another thread's SIGSEGV) could get there before
//!   S if its thread ran before T does, so such a thread is left in its
//!   stop until the group exit kills it out of it (bounded by the stop
//!   timeout, after which it is resumed with its signal anyway).
//!
//! Invariant: every task this path stops is resumed on every exit, including
//! panics — the [`Hold`] guard's `Drop` resumes whatever was not resumed yet.

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
    /// Signals other threads had dequeued when they were stopped, delivered
    /// to them when they were resumed.
    pub requeued: Vec<RequeuedSignal>,
    /// Problems that did not prevent the capture.
    pub soft_errors: Vec<CaptureError>,
    /// How long the process was held: from the fatal stop being handled to
    /// the dump taken (in memory) and every task resumed. The dump file is
    /// written afterwards (`phases.save`).
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

/// Durations of the capture's phases: the process is held for the first
/// four (`CrashCapture::elapsed`); `save` comes after.
#[derive(Clone, Copy, Debug, Default)]
pub struct CapturePhases {
    /// Reading T's state and ptrace-stopping every other thread.
    pub stop_threads: Duration,
    /// Opening the deleted files mapped executable (see `preserve`).
    pub pin: Duration,
    /// minidump-writer, into memory.
    pub dump: Duration,
    /// Resuming every task.
    pub resume: Duration,
    /// Writing the dump file, once the process was let go.
    pub save: Duration,
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

/// A signal another thread had dequeued when it was stopped, and that it
/// received afterwards: handed back by `PTRACE_CONT` (crash, and a snapshot's
/// signals that pass through), or sent again (a snapshot's crash-class
/// signals, which the tracer loop must see).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequeuedSignal {
    pub tid: i32,
    pub signal: i32,
    /// Delivered with its original siginfo: always when handed back; when
    /// sent again, only if `rt_tgsigqueueinfo` could forge it (not `tgkill`).
    pub verbatim: bool,
    /// Delivered only after T had been handed its crash signal and the group
    /// exit had had its chance to come first (a signal that could have ended
    /// the process before the crash signal did); the process was normally
    /// dying by then.
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

/// The capture, and what the tracer loop must know of it.
pub(crate) struct Outcome {
    pub capture: CrashCapture,
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
            return Outcome { capture };
        }
    };

    // The sender's name while it may still be there (a `kill` command is
    // gone in a moment).
    let sender = info.sender().map(|(pid, uid)| Sender { pid, uid, comm: procfs::comm(pid) });

    // 2–4. The dump window.
    let mut hold = Hold::new(tgid, tid, signal, req.masks, req.stop_timeout);
    let mut window = run_window(&req, &mut hold, ctx);

    // 5. Every task resumed, T with S.
    let resume_start = Instant::now();
    hold.release();
    window.phases.resume = resume_start.elapsed();
    let elapsed = req.started.elapsed();
    let mut soft_errors = std::mem::take(&mut hold.soft_errors);
    soft_errors.extend(window.soft_errors);

    // 6. The dump file, and the copies of the pinned files; the process may
    // already be gone.
    let save_start = Instant::now();
    let dump = window.dump.and_then(dump::TakenDump::save);
    window.phases.save = save_start.elapsed();
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
        dump,
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
    Outcome { capture }
}

/// What the dump window produced.
struct Window {
    phases: CapturePhases,
    threads: usize,
    dump: Result<dump::TakenDump, CaptureError>,
    opened: Vec<preserve::OpenDeleted>,
    soft_errors: Vec<CaptureError>,
}

/// Steps 2–4: everything that happens while the process is held.
fn run_window(req: &CaptureRequest<'_>, hold: &mut Hold, ctx: CrashContext) -> Window {
    let (tgid, tid) = (req.tgid, req.tid);
    let mut phases = CapturePhases::default();
    let mut soft_errors = Vec::new();

    // 2. Stop every other thread.
    let laggards = stop::stop_other_threads(hold, req.stop_timeout);
    let threads = 1 + hold.stopped.len() + hold.listening.len() + laggards.len();
    phases.stop_threads = req.started.elapsed();

    // 3. Pin deleted mappings while /proc/P/map_files still exists.
    let pin_start = Instant::now();
    let (opened, errors) = preserve::open_deleted(tgid, tid);
    soft_errors.extend(errors);
    phases.pin = pin_start.elapsed();

    // 4. The dump, from our own stops.
    let dump_start = Instant::now();
    let target = dump::DumpTarget::new("crash", tgid, tid, req.scratch_dir);
    let dump = dump::take_dump(&target, Some(ctx));
    phases.dump = dump_start.elapsed();

    Window { phases, threads, dump, opened, soft_errors }
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
