//! What the child leaves behind: orphans crashwatch reaps as PID 1 or a
//! subreaper, and, when it is neither, a warning that it cannot.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::process::procfs;
use crate::sys;

/// Reaps every finished child of the calling thread (orphans reparented to
/// it) without blocking.
pub(super) fn reap() {
    while let Ok(Some((pid, status))) = sys::ptrace::waitpid(-1, libc::__WALL | libc::__WNOTHREAD | libc::WNOHANG) {
        tracing::debug!(pid, status, "reaped an orphaned descendant");
    }
}

/// How many of the processes left behind the warning names.
const NAMED: usize = 10;

/// Says once per crashwatch that processes the child started outlived it,
/// and which parent they went to (the nearest subreaper, or PID 1 of the
/// namespace), since crashwatch cannot reap them; tini warns of the same at
/// its start, whether or not the child ever leaves an orphan. Only
/// processes still in the child's process group are seen: a daemon that
/// left it (`setsid`) is not, nor an orphan that exits before the child.
pub(super) fn warn_left_behind(child: libc::pid_t) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if WARNED.load(Ordering::Relaxed) {
        return;
    }
    let left = procfs::process_group(child);
    if left.is_empty() || WARNED.swap(true, Ordering::Relaxed) {
        return;
    }
    let mut named: Vec<String> = left
        .iter()
        .take(NAMED)
        .map(|kin| match procfs::comm(kin.ppid) {
            Some(parent) => format!("{} (now a child of {} {parent})", kin.pid, kin.ppid),
            None => format!("{} (now a child of {})", kin.pid, kin.ppid),
        })
        .collect();
    if left.len() > NAMED {
        named.push(format!("and {} more", left.len() - NAMED));
    }
    tracing::warn!(
        "the child left processes behind: {}; crashwatch is neither PID 1 nor a subreaper, so it cannot reap them \
         when they exit (--subreaper adopts them)",
        named.join(", ")
    );
}
