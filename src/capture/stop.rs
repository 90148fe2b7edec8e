//! Stopping every thread of the process under our ptrace (step 2 of the
//! crash path, step 1 of a snapshot).
//!
//! Stopping is a fixpoint over `/proc/P/task`: interrupt every task not seen
//! yet, reap each one's stop, list again. A thread that was inside `clone()`
//! when the first listing was taken shows up in a later one, and once every
//! listed thread is stopped nobody is left to create more, so the loop ends.
//!
//! Stops are reaped with `waitpid(tid, WNOHANG)` per task rather than
//! `waitpid(-1)`: the crash path must not consume statuses of unrelated
//! processes (other tracees, other children) that the caller's loop owns.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::CaptureError;
use super::hold::Hold;
use crate::process::procfs;
use crate::process::siginfo::SigInfo;
use crate::process::wait_status::{WaitStatus, is_stop_signal};
use crate::sys::ptrace as sys;

/// Ptrace-stops every thread of the process except T (already in a stop).
/// Returns the threads that did not report a stop before `deadline`.
pub(super) fn stop_other_threads(hold: &mut Hold, timeout: Duration) -> Vec<i32> {
    let deadline = Instant::now() + timeout;
    let tgid = hold.tgid;
    let mut seen: HashSet<i32> = HashSet::from([hold.tid]);
    let mut waiting: Vec<i32> = Vec::new();
    loop {
        // Re-list every round: a thread that was in clone() when we started
        // appears only after its parent stopped.
        let tids = match procfs::task_ids(tgid) {
            Ok(tids) => tids,
            Err(source) => {
                hold.soft_errors.push(CaptureError::ListThreads { pid: tgid, source });
                return waiting;
            }
        };
        let mut new_tasks = false;
        for t in tids {
            if !seen.insert(t) {
                continue;
            }
            // A zombie leader stays listed but can never stop, and waitpid on
            // it reports nothing until the whole group is gone. Other zombies
            // report their exit to the waitpid below and drop out there.
            if t == tgid && procfs::task_state(tgid, t).map(|s| s.is_dead()).unwrap_or(false) {
                continue;
            }
            match sys::interrupt(t) {
                Ok(()) => {
                    waiting.push(t);
                    new_tasks = true;
                }
                Err(e) if sys::is_esrch(&e) => {}
                Err(source) => hold.soft_errors.push(CaptureError::Interrupt { pid: tgid, tid: t, source }),
            }
        }
        if !new_tasks {
            return waiting;
        }
        collect_stops(hold, &mut waiting, deadline);
        if !waiting.is_empty() {
            hold.soft_errors.push(CaptureError::NotStopped { pid: tgid, tids: waiting.clone(), timeout });
            return waiting;
        }
    }
}

/// Reaps the stop of every task in `waiting`, polling until `deadline`;
/// leaves in `waiting` the tasks that never stopped.
fn collect_stops(hold: &mut Hold, waiting: &mut Vec<i32>, deadline: Instant) {
    poll_in_order(waiting, deadline, |t| reap_stop(hold, t));
}

/// Checks once whether task `t` has stopped (recording its stop in `hold`)
/// or is gone. True if there is nothing more to wait for.
fn reap_stop(hold: &mut Hold, t: i32) -> bool {
    match sys::try_wait_task(t) {
        Ok(None) => false,
        Ok(Some((_, status))) => match WaitStatus::decode(status) {
            WaitStatus::SignalStop(sig) => {
                // The task had already dequeued `sig` and was waiting for us
                // to decide; resuming it with 0 would drop it.
                let info = sys::get_siginfo(t).ok().map(SigInfo::new);
                hold.pending.push((t, sig, info));
                hold.stopped.push(t);
                true
            }
            WaitStatus::EventStop { event, signal } if event == sys::PTRACE_EVENT_STOP && is_stop_signal(signal) => {
                // In a group-stop: it must stay stopped afterwards.
                hold.listening.push(t);
                true
            }
            WaitStatus::EventStop { .. } => {
                hold.stopped.push(t);
                true
            }
            s if s.is_exit() => true,
            // Not a stop of ours (cannot happen without WCONTINUED): keep waiting.
            _ => false,
        },
        Err(e) if sys::is_echild(&e) => true,
        Err(source) => {
            hold.soft_errors.push(CaptureError::Wait { pid: hold.tgid, tid: t, source });
            true
        }
    }
}

/// Calls `done(task)` on `tasks` in order until it returns false, then waits
/// a little and resumes from that task; until all are done or `deadline`.
/// What is left in `tasks` afterwards was not done.
///
/// The threads were all asked to stop at the same moment and stop in
/// parallel, so waiting on the first straggler while the others catch up
/// costs about one check per task, where re-checking every task each round
/// would cost one per task per round (500 threads: milliseconds).
pub(super) fn poll_in_order(tasks: &mut Vec<i32>, deadline: Instant, mut done: impl FnMut(i32) -> bool) {
    tasks.reverse(); // so that pop() takes them in the original order
    let mut backoff = Backoff::new();
    loop {
        let before = tasks.len();
        while let Some(&t) = tasks.last() {
            if !done(t) {
                break;
            }
            tasks.pop();
        }
        if tasks.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            // One full pass so only the tasks really not done remain.
            tasks.retain(|&t| !done(t));
            tasks.reverse();
            return;
        }
        if tasks.len() < before {
            backoff = Backoff::new();
        }
        backoff.wait();
    }
}

/// Short waits that grow: most threads stop within microseconds, a few
/// (preempted on a busy machine) take a scheduler tick.
struct Backoff(Duration);

impl Backoff {
    const MAX: Duration = Duration::from_micros(500);

    fn new() -> Self {
        Backoff(Duration::from_micros(5))
    }

    fn wait(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(Self::MAX);
    }
}
