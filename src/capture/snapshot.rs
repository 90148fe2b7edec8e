//! A minidump of the *live* child, which runs on afterwards: the
//! `--oom-snapshot` path. It is the crash path without a crash signal.
//!
//! ```text
//!  T in signal-delivery-stop for the snapshot request (see ptrace::request)
//!   │ 1. PTRACE_INTERRUPT every other task (as the crash path, step 2)
//!   │ 2. minidump-writer into memory from our own stops (as the crash
//!   │    path, step 4)
//!   │ 3. CONT every task: T without its request (dropped); the others
//!   │    with the signal each had dequeued, except crash-class ones
//!   │    (resumed with 0 and the signal sent again)
//!   ▼ 4. write the dump file
//!  the tracer loop goes on: the process was never untraced
//! ```
//!
//! Why this order:
//! - Nothing is detached, so nothing has to be traced again: there is no
//!   moment in which a crash would not be caught or a fork not followed.
//! - A signal another thread had dequeued is normally handed back with
//!   `PTRACE_CONT`, as the tracer loop would have passed it on. A
//!   crash-class signal is not: the tracer loop must decide on it (crash
//!   path or pass through) and this stop cannot run the crash path, so it
//!   is sent again and comes back through the loop — a fault re-executed
//!   faults again anyway.
//!
//! What the child can notice: it is stopped for the dump (milliseconds). The
//! request signal itself never reaches it. Threads that did not stop within
//! the timeout (laggards) stay our tracees throughout, and the tracer loop
//! continues them when their interrupt-stop comes; they are missing from the
//! dump.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::dump::{self, DumpTarget};
use super::hold::Hold;
use super::{CaptureError, DumpFile, RequeuedSignal, stop};
use crate::process::procfs::{self, SignalMasks};

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
    /// Threads resumed under our trace after the dump (all the stopped ones:
    /// nothing is detached any more).
    pub retraced: usize,
    /// Signals other threads had dequeued when they were stopped, delivered
    /// to them afterwards.
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
    /// When the request's stop was taken from `waitpid`.
    pub started: Instant,
}

/// Takes a snapshot of process `req.tgid`, whose thread `req.tid` is in its
/// signal-delivery-stop for the request, and leaves it running and traced.
pub(crate) fn snapshot(req: SnapshotRequest<'_>) -> SnapshotCapture {
    let SnapshotRequest { tgid, tid, .. } = req;
    let thread_name = procfs::thread_name(tgid, tid).unwrap_or_default();
    let mut hold = Hold::for_snapshot(tgid, tid, req.masks);

    // 1. Every other thread in a ptrace-stop.
    let laggards = stop::stop_other_threads(&mut hold, req.stop_timeout);
    let threads = 1 + hold.stopped.len() + hold.listening.len() + laggards.len();
    let retraced = threads - laggards.len();

    // 2. No crash context: the dump says DUMP_REQUESTED, and T's registers
    // are read from its stop.
    let target = DumpTarget::new("snapshot", tgid, tid, req.scratch_dir);
    let dump = dump::take_dump(&target, None);
    let taken_at = SystemTime::now();

    // 3. Everyone runs on; then the dump is saved.
    hold.release();
    let elapsed = req.started.elapsed();
    let dump = dump.and_then(dump::TakenDump::save);
    let capture = SnapshotCapture {
        pid: tgid,
        tid,
        thread_name,
        taken_at,
        dump,
        threads,
        retraced,
        requeued: std::mem::take(&mut hold.requeued),
        soft_errors: std::mem::take(&mut hold.soft_errors),
        elapsed,
    };
    tracing::debug!(
        pid = tgid,
        tid,
        threads,
        elapsed_us = capture.elapsed.as_micros() as u64,
        ok = capture.dump.is_ok(),
        "snapshot taken"
    );
    capture
}

/// Deletes the dump of a snapshot nobody asked to keep.
pub fn discard_snapshot(capture: &SnapshotCapture) {
    if let Ok(dump) = &capture.dump
        && let Err(e) = std::fs::remove_file(&dump.path)
    {
        tracing::warn!("failed to delete the snapshot {}: {e}", dump.path.display());
    }
}
