//! Tests of the tracer on a child started by `spawn`, with control the
//! binary does not give: holding off `waitpid` so that two threads sit in
//! ptrace-stops at once.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::spawn::{Prepared, fork};
use crate::capture::CrashCapture;
use crate::process::procfs;
use crate::ptrace::{Handled, TraceOptions, Tracer};
use crate::sys;

fn compile(name: &str, dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(format!("{name}.c"));
    let exe = dir.join(name);
    let status = std::process::Command::new("gcc")
        .args(["-O0", "-g", "-Wall", "-Werror", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("gcc is needed to build the test fixtures");
    assert!(status.success(), "gcc failed on {}", src.display());
    exe
}

fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    cond()
}

fn all_threads_in_state(pid: i32, count: usize, state: char) -> bool {
    let tids = procfs::task_ids(pid).unwrap_or_default();
    tids.len() == count && tids.iter().all(|&t| procfs::task_state(pid, t).map(|s| s.0 == state).unwrap_or(false))
}

struct PendingRun {
    pid: i32,
    status: i32,
    captures: Vec<CrashCapture>,
    stdout: String,
    /// Whether the crash stop was the first status fed once both threads stopped.
    crash_first: bool,
}

impl PendingRun {
    fn printed(&self, key: &str) -> i32 {
        self.stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key}= in {:?}", self.stdout))
    }
}

/// Runs `pending_signal MODE FIFO` as crashwatch does (forked, held, seized,
/// released), but holds off `waitpid` until both of its threads are in a
/// ptrace-stop: the main thread's SIGSEGV and the other thread's signal.
fn run_pending_signal(exe: &Path, mode: &str, dir: &Path) -> PendingRun {
    let fifo = dir.join(format!("go-{}", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let argv: Vec<OsString> = vec![exe.into(), mode.into(), fifo.clone().into()];
    let prepared = Prepared::new(&argv, &[]).unwrap();
    let (out_read, out_write) = sys::pipe_cloexec().unwrap();
    let (_err_read, err_write) = sys::pipe_cloexec().unwrap();
    let held = fork(&prepared, &out_write, &err_write, false).unwrap();
    drop((out_write, err_write));
    let pid = held.pid;
    let scratch = tempfile::tempdir_in(dir).unwrap();
    let opts = TraceOptions {
        follow_forks: false,
        scratch_dir: scratch.path().to_path_buf(),
        stop_timeout: Duration::from_secs(2),
    };
    let mut tracer = Tracer::seize(pid, opts).unwrap();
    held.release().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::fs::File::from(out_read).read_to_string(&mut s).unwrap();
        s
    });

    // Handle the exec and clone events until both threads block in read().
    let ready = wait_until(Duration::from_secs(10), || {
        while let Ok(Some((task, status))) = sys::ptrace::waitpid(-1, libc::__WALL | libc::__WNOTHREAD | libc::WNOHANG)
        {
            assert!(matches!(tracer.handle(task, status), Handled::Event));
        }
        all_threads_in_state(pid, 2, 'S')
    });
    assert!(ready, "the fixture never reached its reads");
    std::fs::OpenOptions::new().write(true).open(&fifo).unwrap().write_all(b"g").unwrap();
    // Do not reap until both threads are in a ptrace-stop ('t').
    assert!(wait_until(Duration::from_secs(10), || all_threads_in_state(pid, 2, 't')), "threads did not both stop");

    let mut run = PendingRun { pid, status: -1, captures: Vec::new(), stdout: String::new(), crash_first: false };
    let mut first = true;
    loop {
        let (task, status, _) = sys::ptrace::wait_any().expect("wait4");
        if first {
            run.crash_first = task == pid;
            first = false;
        }
        match tracer.handle(task, status) {
            Handled::Crash(capture) => run.captures.push(*capture),
            Handled::Ended if task == pid => {
                run.status = status;
                break;
            }
            Handled::Snapshot(_) => panic!("no snapshot was requested"),
            Handled::Ended | Handled::Event => {}
        }
    }
    run.stdout = reader.join().unwrap();
    run
}

fn check_pending_signal(mode: &str, signal: i32) {
    let dir = tempfile::tempdir().unwrap();
    let exe = compile("pending_signal", dir.path());
    // waitpid reports the leader's stop first, so the crash is fed first in
    // practice; the loop only guards against a kernel that orders otherwise.
    for _ in 0..10 {
        let run = run_pending_signal(&exe, mode, dir.path());
        assert!(libc::WIFSIGNALED(run.status) && libc::WTERMSIG(run.status) == libc::SIGSEGV, "{:#x}", run.status);
        assert_eq!(run.captures.len(), 1);
        let capture = &run.captures[0];
        assert_eq!((capture.tid, capture.threads), (run.pid, 2));
        if !run.crash_first {
            assert!(capture.requeued.is_empty());
            continue;
        }
        assert_eq!(capture.requeued.len(), 1, "{capture:#?}");
        let requeued = capture.requeued[0];
        assert_eq!((requeued.tid, requeued.signal), (run.printed("signal_tid"), signal));
        // Handed back by PTRACE_CONT from its own signal-delivery-stop: the
        // kernel keeps its siginfo, whoever sent it.
        assert!(requeued.verbatim);
        // A handled signal cannot end the process before the crash signal
        // does, so it is handed back at once, not after the group exit.
        assert!(!requeued.after_release);
        return;
    }
    panic!("the kernel never reported the crash before the pending signal");
}

#[test]
fn a_signal_pending_on_another_thread_is_handed_back_not_dropped() {
    // raise() uses tgkill: an SI_TKILL siginfo, which no other process
    // could forge; it is never re-sent.
    check_pending_signal("usr1", libc::SIGUSR1);
}

#[test]
fn a_queued_realtime_signal_is_handed_back_with_its_siginfo() {
    check_pending_signal("rt", libc::SIGRTMIN() + 3);
}

/// Another thread had dequeued a SIGTERM without handler when the crash
/// stopped the process: handed back at once, it could end the process
/// before SIGSEGV does. The process must die of SIGSEGV every time.
#[test]
fn a_pending_terminating_signal_does_not_beat_the_crash_signal() {
    let dir = tempfile::tempdir().unwrap();
    let exe = compile("pending_signal", dir.path());
    let mut crash_first = 0;
    for _ in 0..10 {
        let run = run_pending_signal(&exe, "term", dir.path());
        if !run.crash_first {
            // SIGTERM was fed to the tracer first and passed on: it rightly
            // ends the process before the crash is even seen.
            continue;
        }
        crash_first += 1;
        assert!(libc::WIFSIGNALED(run.status) && libc::WTERMSIG(run.status) == libc::SIGSEGV, "{:#x}", run.status);
        assert_eq!(run.captures.len(), 1);
        let capture = &run.captures[0];
        assert_eq!((capture.tid, capture.threads), (run.pid, 2));
        // Either the group exit took the thread out of its stop (nothing
        // delivered), or it was resumed after waiting for it.
        assert!(capture.requeued.iter().all(|r| r.after_release), "{capture:#?}");
    }
    assert!(crash_first > 0, "the kernel never reported the crash before the pending signal");
}
