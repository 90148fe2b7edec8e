//! A minidump of the *live* child, which runs on afterwards: the
//! `--oom-snapshot` path. It is the crash path without a crash signal, plus
//! one step the crash path never needs: tracing every thread again.
//!
//! ```text
//!  T in signal-delivery-stop for the snapshot request (see ptrace::request)
//!   │ 0. may we attach again once we let go? (/proc/P/mem) ── no: CONT(T, 0), done
//!   │ 1. PTRACE_INTERRUPT every other task (as the crash path, step 2)
//!   │ 2. kill(P, SIGSTOP); PTRACE_DETACH(tid, 0) for all; T's request is dropped
//!   │ 3. poll /proc until each is 'T'
//!   │ 4. minidump-writer: attaches, dumps, detaches, SIGCONT
//!   │      ── the process runs, untraced ──
//!   │ 5. kill(P, SIGSTOP); fixpoint over /proc/P/task: wait until each
//!   │    listed task is 'T', PTRACE_SEIZE it; list again until no new task
//!   │ 6. kill(P, SIGCONT); re-queue the signals other threads had dequeued
//!   ▼    (they now pass through the tracer like any signal)
//!  the tracer loop: each re-seized task reports its group-stop
//!  (PTRACE_EVENT_STOP) → LISTEN → resumed by the SIGCONT; SIGCONT itself
//!  passes through as a signal
//! ```
//!
//! Why this order:
//! - minidump-writer cannot attach while we trace the process (see the crash
//!   path) and it always ends with `SIGCONT`, which nothing can defer. So
//!   between step 4 and the `SIGSTOP` of step 5 the process runs untraced: a
//!   crash there is not caught, a thread or child it creates there is not
//!   traced by the kernel for us. The window is as short as two syscalls; it
//!   is the price of not rewriting minidump-writer.
//! - Step 5 stops the process before re-seizing it because a stopped process
//!   cannot create threads: once every listed task is stopped, a new listing
//!   is complete (a thread created while its creator was being stopped is
//!   listed by then, and a new thread joins the group-stop). Seizing running
//!   threads instead would miss one created by a thread still inside
//!   `clone()` when it was seized (the kernel decides at the start of
//!   `clone()` whether to auto-attach the new thread).
//! - A seized task that was in a group-stop is made to re-trap into a
//!   ptrace-stop by the kernel; `SIGCONT` then only marks it for
//!   notification, and the tracer loop's usual handling of a group-stop
//!   (`PTRACE_LISTEN`, then continue) lets it run. Nothing runs untraced
//!   after step 5.
//! - Signals other threads had dequeued when they were interrupted are not
//!   re-queued while the process is untraced (the crash path does, for the
//!   harmless ones): sent after step 5, a crash signal among them goes
//!   through the tracer and its crash path, as it would have without us.
//!
//! What the child can notice: it is stopped for the dump (milliseconds), and
//! it receives `SIGCONT` twice (minidump-writer's and ours), which a program
//! with a `SIGCONT` handler sees. The request signal itself never reaches it.
//! Threads that did not stop within the timeout (laggards) stay our tracees
//! throughout; they are missing from the dump.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::dump::{self, DumpTarget};
use super::hold::Hold;
use super::{CaptureError, DumpFile, RequeuedSignal, stop};
use crate::process::procfs::{self, SignalMasks};
use crate::sys::ptrace as sys;

/// Everything known about one snapshot of a live process.
#[derive(Debug)]
pub struct SnapshotCapture {
    pub pid: i32,
    /// The thread that took the request; the dump's "requesting" thread.
    pub tid: i32,
    pub thread_name: String,
    /// When the dump was written.
    pub taken_at: SystemTime,
    /// The minidump, or why there is none.
    pub dump: Result<DumpFile, CaptureError>,
    /// Live threads when the process was stopped.
    pub threads: usize,
    /// Threads traced again after the dump (all of them, normally).
    pub retraced: usize,
    /// Signals found pending on other threads and sent again.
    pub requeued: Vec<RequeuedSignal>,
    /// Problems that did not prevent the snapshot.
    pub soft_errors: Vec<CaptureError>,
    /// From the request's stop to the process running again.
    pub elapsed: Duration,
}

/// Inputs of one snapshot.
pub(crate) struct SnapshotRequest<'a> {
    pub tgid: i32,
    /// The thread in its signal-delivery-stop for the request.
    pub tid: i32,
    pub masks: SignalMasks,
    pub scratch_dir: &'a Path,
    pub stop_timeout: Duration,
    /// The `PTRACE_O_*` options the process was seized with.
    pub seize_options: i32,
    /// When the request's stop was taken from `waitpid`.
    pub started: Instant,
}

/// Takes a snapshot of process `req.tgid`, whose thread `req.tid` is in its
/// signal-delivery-stop for the request, and leaves it running and traced.
pub(crate) fn snapshot(req: SnapshotRequest<'_>) -> SnapshotCapture {
    let SnapshotRequest { tgid, tid, .. } = req;
    let thread_name = procfs::thread_name(tgid, tid).unwrap_or_default();
    let mut hold = Hold::for_snapshot(tgid, tid, req.masks);

    // 0. Letting go of a process we could not trace again would lose every
    // later crash: not worth a snapshot.
    if let Err(source) = procfs::may_attach(tid) {
        hold.release();
        return SnapshotCapture {
            pid: tgid,
            tid,
            thread_name,
            taken_at: SystemTime::now(),
            dump: Err(CaptureError::NotAttachable { pid: tgid, source }),
            threads: 0,
            retraced: 0,
            requeued: Vec::new(),
            soft_errors: std::mem::take(&mut hold.soft_errors),
            elapsed: req.started.elapsed(),
        };
    }

    // 1. Every other thread in a ptrace-stop.
    let laggards = stop::stop_other_threads(&mut hold, req.stop_timeout);
    let threads = 1 + hold.stopped.len() + laggards.len();
    let mut soft_errors = Vec::new();
    let mut retraced = 0;

    // 2–4. The same window as a crash's.
    let dump = match hold.settle(req.stop_timeout, &mut soft_errors) {
        // Nothing was detached: Hold::release continues every held task.
        Err(e) => Err(e),
        Ok(()) => {
            let target = DumpTarget::new("snapshot", tgid, tid, req.scratch_dir, req.stop_timeout);
            // No crash context: the dump says DUMP_REQUESTED, and T's
            // registers are read from the thread itself.
            let dump = dump::write_dump(&target, None);
            // 5. minidump-writer has sent SIGCONT: trace everything again.
            retraced = retrace(tgid, &laggards, req.seize_options, req.stop_timeout, &mut soft_errors);
            dump
        }
    };

    // 6. SIGCONT, and the other threads' signals back.
    hold.release();
    let taken_at = SystemTime::now();
    soft_errors.extend(std::mem::take(&mut hold.soft_errors));
    let capture = SnapshotCapture {
        pid: tgid,
        tid,
        thread_name,
        taken_at,
        dump,
        threads,
        retraced,
        requeued: std::mem::take(&mut hold.requeued),
        soft_errors,
        elapsed: req.started.elapsed(),
    };
    tracing::debug!(
        pid = tgid,
        tid,
        threads,
        retraced,
        elapsed_us = capture.elapsed.as_micros() as u64,
        ok = capture.dump.is_ok(),
        "snapshot taken"
    );
    capture
}

/// Step 5: stops process `tgid` and seizes every thread of it again, except
/// `still_traced` (threads that never left us). Returns how many were seized.
fn retrace(
    tgid: i32,
    still_traced: &[i32],
    options: i32,
    timeout: Duration,
    soft_errors: &mut Vec<CaptureError>,
) -> usize {
    if let Err(source) = sys::kill(tgid, libc::SIGSTOP) {
        if !sys::is_esrch(&source) {
            soft_errors.push(CaptureError::Kill { pid: tgid, signal: libc::SIGSTOP, source });
        }
        return 0;
    }
    let mut seen: HashSet<i32> = still_traced.iter().copied().collect();
    let mut seized = 0;
    loop {
        let tids = match procfs::task_ids(tgid) {
            Ok(tids) => tids,
            Err(e) if e.is_gone() => return seized,
            Err(source) => {
                soft_errors.push(CaptureError::ListThreads { pid: tgid, source });
                return seized;
            }
        };
        let new: Vec<i32> = tids.into_iter().filter(|&t| seen.insert(t)).collect();
        if new.is_empty() {
            return seized;
        }
        if let Err(e) = stop::wait_group_stopped(tgid, &new, timeout) {
            // Seize it anyway: a running thread can be seized too, it is only
            // the completeness of the next listing that is less certain.
            soft_errors.push(e);
        }
        for t in new {
            // A zombie (a leader that called pthread_exit) cannot be traced
            // and reports nothing more but its process's end.
            if procfs::task_state(tgid, t).is_ok_and(|s| s.is_dead()) {
                continue;
            }
            match sys::seize(t, options) {
                Ok(()) => seized += 1,
                Err(e) if sys::is_esrch(&e) => {}
                Err(source) => soft_errors.push(CaptureError::Retrace { pid: tgid, tid: t, source }),
            }
        }
    }
}

/// Deletes the dump of a snapshot nobody asked to keep.
pub fn discard_snapshot(capture: &SnapshotCapture) {
    if let Ok(dump) = &capture.dump
        && let Err(e) = std::fs::remove_file(&dump.path)
    {
        tracing::warn!("failed to delete the snapshot {}: {e}", dump.path.display());
    }
}
