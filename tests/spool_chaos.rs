//! Crash consistency of the spool: `crashwatch run` is SIGKILLed at points
//! from the child's fatal stop to the end of delivery, and the next
//! crashwatch (`send`, two `send`s at once, `list` then `send`, or the next
//! `run`) delivers every captured crash to the fake Relay exactly once under
//! one event id.
//!
//! The points are observed from outside, never guessed with a sleep: the
//! child's tracing stop in `/proc/PID/status`, files appearing in the spool
//! (inotify), a request arriving at the Relay or its 200. After the point
//! comes a random delay of up to 3 ms (0.5 ms in the dump window), so that
//! the kills spread over what happens next. The order of the points, the delays and the recoveries
//! come from a seed the test prints; `CRASHWATCH_CHAOS_SEED=N` replays it.
//!
//! "Captured" means a whole dump was on disk when crashwatch died: killed
//! inside the dump window, the crash may be lost, and must then not be
//! delivered at all. A report accepted by Relay before the kill may be sent
//! again (delivery is at least once), but only under the same event id.

#[path = "common/mod.rs"]
mod bin;
#[path = "sentry_common/mod.rs"]
mod sentry_common;

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use bin::{LIMIT, Lines, crashwatch, fixture, run_with_timeout, wait_output};
use sentry_common::relay::{FakeRelay, Outcome, Reply};

/// Where crashwatch is killed, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    /// The child is in its tracing stop or group-stop: the dump window.
    DumpWindow,
    /// The complete dump is in the scratch directory.
    DumpWritten,
    /// The report's directory exists.
    ReportDir,
    /// `unfinished.json`: the record made at the crash.
    Unfinished,
    /// The dump was moved into the report.
    DumpAdopted,
    /// `unfinished.json` holds the child's end (status, whole tail).
    FinalRecord,
    /// `stacks.json`: symbolication is done.
    Stacks,
    /// `report.json`: the commit point.
    Committed,
    /// The envelope is in the outbox.
    Queued,
    /// Relay has the request and holds its answer.
    AtRelay,
    /// Relay answered 200.
    Accepted,
}

const POINTS: [Point; 11] = [
    Point::DumpWindow,
    Point::DumpWritten,
    Point::ReportDir,
    Point::Unfinished,
    Point::DumpAdopted,
    Point::FinalRecord,
    Point::Stacks,
    Point::Committed,
    Point::Queued,
    Point::AtRelay,
    Point::Accepted,
];

/// Who picks up after the kill.
#[derive(Debug, Clone, Copy)]
enum Next {
    Send,
    TwoSends,
    ListThenSend,
    Run,
}

const NEXTS: [Next; 4] = [Next::Send, Next::TwoSends, Next::ListThenSend, Next::Run];

/// Four rounds of every point: 44 kills.
const ROUNDS: usize = 4;

/// splitmix64: the same seed gives the same kills.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn seed() -> u64 {
    match std::env::var("CRASHWATCH_CHAOS_SEED") {
        Ok(text) => text.parse().expect("CRASHWATCH_CHAOS_SEED is a number"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    }
}

/// Files under `dir` (one level of subdirectories), relative names.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            for inner in std::fs::read_dir(entry.path()).into_iter().flatten().flatten() {
                out.push(format!("{name}/{}", inner.file_name().to_string_lossy()));
            }
        }
        out.push(name);
    }
    out
}

fn is_report_id(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a report directory in `spool` has `file`.
fn report_has(spool: &Path, file: &str) -> bool {
    files(&spool.join("reports")).iter().any(|f| f.split_once('/').is_some_and(|(id, f)| is_report_id(id) && f == file))
}

/// Whether `point` has been reached, judging by the spool.
fn reached(point: Point, spool: &Path, scratch: &Path, child_pid: i32) -> bool {
    let dump_in_scratch = files(scratch).iter().any(|f| f.starts_with("crash-") && f.ends_with(".dmp"));
    match point {
        Point::DumpWindow => {
            let status = std::fs::read_to_string(format!("/proc/{child_pid}/status")).unwrap_or_default();
            let state = status.lines().find_map(|l| l.strip_prefix("State:")).unwrap_or("").trim().to_owned();
            state.starts_with('t') || state.starts_with('T') || dump_in_scratch || report_has(spool, "minidump.dmp")
        }
        Point::DumpWritten => dump_in_scratch || report_has(spool, "minidump.dmp"),
        Point::ReportDir => files(&spool.join("reports")).iter().any(|f| is_report_id(f)),
        Point::Unfinished => report_has(spool, "unfinished.json") || report_has(spool, "report.json"),
        Point::DumpAdopted => report_has(spool, "minidump.dmp"),
        Point::FinalRecord => {
            report_has(spool, "report.json")
                || files(&spool.join("reports")).iter().any(|f| {
                    f.ends_with("/unfinished.json")
                        && std::fs::read_to_string(spool.join("reports").join(f))
                            .is_ok_and(|text| !text.is_empty() && !text.contains("recorded when the crash was caught"))
                })
        }
        Point::Stacks => report_has(spool, "stacks.json"),
        Point::Committed => report_has(spool, "report.json"),
        Point::Queued => files(&spool.join("outbox/pending")).iter().any(|f| f.ends_with(".envelope")),
        Point::AtRelay | Point::Accepted => unreachable!("observed at the relay"),
    }
}

/// Waits until `point` is reached in the spool: re-checked at every inotify
/// event in the directories where its files appear (the dump window, a
/// state of the child, is polled).
fn wait_for(point: Point, spool: &Path, scratch: &Path, child_pid: i32) {
    let dirs = || {
        let mut dirs = vec![scratch.to_path_buf(), spool.join("reports"), spool.join("outbox/pending")];
        dirs.extend(
            files(&spool.join("reports"))
                .into_iter()
                .filter(|f| is_report_id(f))
                .map(|f| spool.join("reports").join(f)),
        );
        dirs
    };
    let poll = point == Point::DumpWindow;
    watch_until(&format!("{point:?}"), &dirs, poll, || reached(point, spool, scratch, child_pid));
}

/// Waits until `done()` holds, re-checked at every inotify event in the
/// directories `dirs()` names (added as they appear), or continuously with
/// `poll`; fails the test after [`LIMIT`].
fn watch_until(what: &str, dirs: &dyn Fn() -> Vec<PathBuf>, poll_only: bool, done: impl Fn() -> bool) {
    let deadline = Instant::now() + LIMIT;
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).unwrap();
    let mask = AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE;
    let mut watched = BTreeSet::new();
    loop {
        // Watches first, then the check: nothing can happen unseen between.
        for dir in dirs() {
            if !watched.contains(&dir) && inotify.add_watch(&dir, mask).is_ok() {
                watched.insert(dir);
            }
        }
        if done() {
            return;
        }
        assert!(Instant::now() < deadline, "{what} did not happen within {LIMIT:?}");
        if poll_only {
            std::thread::yield_now();
            continue;
        }
        let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(&inotify), PollFlags::POLLIN)];
        // At most a second, so that directories made meanwhile are watched.
        let left = deadline.saturating_duration_since(Instant::now()).as_millis().min(1000) as u16;
        let _ = poll(&mut fds, PollTimeout::from(left));
        let _ = inotify.read_events();
    }
}

/// Accepted envelopes per event id.
fn accepted(relay: &FakeRelay) -> Vec<String> {
    relay.with(|s| s.accepted_events().iter().filter_map(|e| e.event_id().map(str::to_owned)).collect())
}

/// Kills the crasher if it is still there (stopped in the dump window when
/// crashwatch died there).
fn kill_crasher(pid: i32) {
    let comm = std::fs::read(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.starts_with(b"crash_on_line") {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
}

/// Whether a crash was captured: a whole dump or a report record is there.
fn captured(spool: &Path) -> bool {
    let dump = |dir: PathBuf| files(&dir).iter().any(|f| f.contains("crash-") && f.ends_with(".dmp"));
    dump(spool.join("tmp"))
        || report_has(spool, "minidump.dmp")
        || report_has(spool, "unfinished.json")
        || report_has(spool, "report.json")
}

fn recover_with(next: Next, spool: &Path, dsn: &str) {
    let send = || {
        let mut cmd = crashwatch(spool);
        cmd.args(["send", "--dsn", dsn]);
        cmd
    };
    match next {
        Next::Send => {
            let out = run_with_timeout(send(), LIMIT);
            assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        }
        Next::TwoSends => {
            // Both at once: each report is finished, queued and sent once;
            // one of them may find an entry busy (exit 1).
            let spawn = || send().stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
            let (a, b) = (spawn(), spawn());
            for out in [wait_output(a, LIMIT), wait_output(b, LIMIT)] {
                assert!(out.status.code().is_some_and(|c| c <= 1), "{}", String::from_utf8_lossy(&out.stderr));
            }
            // What one of them found busy is sent now.
            let out = run_with_timeout(send(), LIMIT);
            assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        }
        Next::ListThenSend => {
            let mut list = crashwatch(spool);
            list.args(["list"]);
            assert!(run_with_timeout(list, LIMIT).status.success());
            let out = run_with_timeout(send(), LIMIT);
            assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        }
        Next::Run => {
            let mut run = crashwatch(spool);
            run.args(["run", "--dsn", dsn, "--", "true"]);
            let out = run_with_timeout(run, LIMIT);
            assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

#[test]
fn killed_anywhere_every_captured_crash_is_delivered_once() {
    let seed = seed();
    eprintln!("spool_chaos: seed {seed} (CRASHWATCH_CHAOS_SEED={seed} replays these kills)");
    let mut rng = Rng(seed);
    let mut order: Vec<Point> = (0..ROUNDS).flat_map(|_| POINTS).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let relay = runtime.block_on(FakeRelay::start());
    let crasher = fixture("crash_on_line");
    let (mut resent, mut lost_in_window) = (0, 0);
    for (round, point) in order.into_iter().enumerate() {
        // Inside the dump window (a few ms) the spread is finer.
        let spread = if point == Point::DumpWindow { 500 } else { 3000 };
        let delay = Duration::from_micros(rng.next() % spread);
        let next = NEXTS[rng.below(NEXTS.len())];
        let context = format!("kill {round} (seed {seed}): at {point:?} + {delay:?}, then {next:?}");
        let spool = tempfile::tempdir().unwrap();
        let before = accepted(&relay).len();
        if point == Point::AtRelay {
            relay.script([Reply::Hold]);
        }
        let mut cmd = crashwatch(spool.path());
        cmd.args(["run", "--dsn", &relay.dsn(), "--group-window", "0", "--flush-timeout", "30", "--"]).arg(&crasher);
        let mut child: Child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut lines = Lines::new(child.stdout.take().unwrap());
        let ready = lines.wait_for("ready pid=", LIMIT);
        let child_pid: i32 = ready.trim_start_matches("ready pid=").trim().parse().unwrap();
        let scratch = std::fs::read_dir(spool.path().join("tmp"))
            .unwrap()
            .flatten()
            .find(|e| e.file_name().as_bytes().starts_with(format!("{}.", child.id()).as_bytes()))
            .unwrap_or_else(|| panic!("{context}: no scratch directory"))
            .path();
        child.stdin.as_mut().unwrap().write_all(b"crash\n").unwrap();
        match point {
            Point::AtRelay => {
                runtime.block_on(relay.wait_until("the held request", LIMIT, |s| {
                    s.requests.iter().any(|r| r.outcome == Outcome::Holding)
                }))
            }
            Point::Accepted => {
                runtime.block_on(relay.wait_until("an acceptance", LIMIT, |s| s.accepted_events().len() > before))
            }
            _ => wait_for(point, spool.path(), &scratch, child_pid),
        }
        // The spread: a kill a little after the point seen.
        std::thread::sleep(delay);
        child.kill().unwrap();
        let killed = wait_output(child, LIMIT);
        kill_crasher(child_pid);
        // What the killed crashwatch had sent is all read (its connections
        // are closed) before the tally: a request on its way at the kill
        // counts as accepted before it.
        runtime
            .block_on(relay.wait_until("the killed crashwatch's connections to close", LIMIT, |s| s.connections == 0));
        let accepted_at_kill = accepted(&relay)[before..].to_vec();
        let was_captured = captured(spool.path());
        if !was_captured {
            lost_in_window += 1;
            assert_eq!(point, Point::DumpWindow, "{context}: nothing captured");
        }

        recover_with(next, spool.path(), &relay.dsn());

        let stderr = String::from_utf8_lossy(&killed.stderr).into_owned();
        let sent: Vec<String> = accepted(&relay)[before..].to_vec();
        let ids: BTreeSet<&String> = sent.iter().collect();
        assert_eq!(ids.len(), usize::from(was_captured), "{context}: event ids {sent:?}; {stderr}");
        // Sent twice only when Relay had it before the kill, and then under
        // the same id.
        match accepted_at_kill.len() {
            0 => assert!(sent.len() <= 1, "{context}: {sent:?}"),
            _ => assert!(sent.len() <= 2, "{context}: {sent:?}"),
        }
        resent += sent.len().saturating_sub(1);
        let reports = bin::reports(spool.path());
        assert_eq!(reports.len(), usize::from(was_captured), "{context}: {reports:#?}");
        if let Some(report) = reports.first() {
            assert_eq!(Some(report["id"].as_str().unwrap()), ids.first().map(|s| s.as_str()), "{context}");
            assert_eq!(report["crash"]["signal"], libc::SIGSEGV, "{context}");
            assert_eq!(report["program"]["pid"], child_pid, "{context}");
        }
        // Nothing is left half-done.
        let left: Vec<String> = files(&spool.path().join("reports"))
            .into_iter()
            .filter(|f| f.ends_with("unfinished.json") || f.ends_with("deliver.json") || f.starts_with('.'))
            .chain(files(&spool.path().join("tmp")))
            // (An entry's state or lock file left by a kill after its
            // envelope was deleted is swept by the outbox after an hour.)
            .chain(files(&spool.path().join("outbox/pending")).into_iter().filter(|f| f.ends_with(".envelope")))
            .collect();
        assert!(left.is_empty(), "{context}: left behind: {left:?}");
        let mut doctor = crashwatch(spool.path());
        doctor.args(["doctor"]);
        let out = run_with_timeout(doctor, LIMIT);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("was killed while filing"), "{context}: {text}");
    }
    eprintln!(
        "spool_chaos: {} kills; {lost_in_window} inside the dump window lost the crash before a dump existed; \
         {resent} report(s) sent again under the same id after Relay had accepted them",
        ROUNDS * POINTS.len()
    );
}

#[test]
fn points_are_observed_in_the_order_they_happen() {
    // The points as `reached` judges them on a finished spool: all but the
    // dump window (gone) and the outbox (sent) are reached.
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--"]).arg(fixture("crash_on_line"));
    let child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut child = child;
    let mut lines = Lines::new(child.stdout.take().unwrap());
    lines.wait_for("ready pid=", LIMIT);
    child.stdin.as_mut().unwrap().write_all(b"crash\n").unwrap();
    let out = wait_output(child, LIMIT);
    assert_eq!(out.status.code(), Some(128 + libc::SIGSEGV));
    let scratch = spool.path().join("tmp");
    for point in [Point::ReportDir, Point::DumpAdopted, Point::FinalRecord, Point::Stacks, Point::Committed] {
        assert!(reached(point, spool.path(), &scratch, 0), "{point:?}");
    }
    assert!(!report_has(spool.path(), "unfinished.json"));
    // Its scratch directory went with it.
    assert!(files(&scratch).is_empty(), "{:?}", files(&scratch));
}

#[test]
fn doctor_says_what_a_killed_crashwatch_left_and_finishes_it() {
    // Stopped the moment the dump is in its report, then killed: the report
    // is unfinished (symbolication, at the child's end, takes far longer
    // than the stop); tried again in the rare case it was not.
    for _ in 0..5 {
        let spool = tempfile::tempdir().unwrap();
        let mut cmd = crashwatch(spool.path());
        cmd.args(["run", "--"]).arg(fixture("crash_on_line"));
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut lines = Lines::new(child.stdout.take().unwrap());
        let ready = lines.wait_for("ready pid=", LIMIT);
        let child_pid: i32 = ready.trim_start_matches("ready pid=").trim().parse().unwrap();
        let scratch = std::fs::read_dir(spool.path().join("tmp")).unwrap().flatten().next().unwrap().path();
        child.stdin.as_mut().unwrap().write_all(b"crash\n").unwrap();
        wait_for(Point::DumpAdopted, spool.path(), &scratch, child_pid);
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::SIGSTOP).unwrap();
        let unfinished = report_has(spool.path(), "unfinished.json") && !report_has(spool.path(), "report.json");
        child.kill().unwrap();
        wait_output(child, LIMIT);
        kill_crasher(child_pid);
        if !unfinished {
            continue;
        }
        let mut doctor = crashwatch(spool.path());
        doctor.args(["doctor"]);
        let out = run_with_timeout(doctor, LIMIT);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(
                "WARN  spool   a crashwatch was killed while filing: 1 report(s) unfinished; finished 1 of them now"
            ),
            "{text}"
        );
        let report = bin::only_report(spool.path());
        assert_eq!(report["crash"]["signal"], libc::SIGSEGV);
        assert_eq!(report["program"]["pid"], child_pid);
        assert!(report["crash"]["stacks"]["file"] == "stacks.json", "symbolicated: {report:#}");
        assert!(report["notes"].to_string().contains("stopped before it finished the report"), "{report:#}");
        // Said once: now there is nothing left.
        let mut doctor = crashwatch(spool.path());
        doctor.args(["doctor"]);
        let text = String::from_utf8_lossy(&run_with_timeout(doctor, LIMIT).stdout).into_owned();
        assert!(!text.contains("killed while filing"), "{text}");
        assert!(files(&spool.path().join("tmp")).is_empty());
        return;
    }
    panic!("crashwatch was never stopped before it finished the report");
}

#[test]
fn a_dump_left_without_a_report_becomes_one_with_its_deleted_binary() {
    // The report store is replaced by a file while the child runs, so that
    // crashwatch cannot begin the crash's report: the dump and the copy of
    // the deleted executable stay in its scratch directory when it exits,
    // as when it is killed before the report is begun. The next `list`
    // makes the report of the dump, with the copy, whose names the stacks
    // then have.
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim-bin");
    std::fs::copy(fixture("crash_on_line"), &victim).unwrap();
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--"]).arg(&victim).arg("delete-self");
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = Lines::new(child.stdout.take().unwrap());
    let ready = lines.wait_for("ready pid=", LIMIT);
    let child_pid: i64 = ready.trim_start_matches("ready pid=").trim().parse().unwrap();
    let reports = spool.path().join("reports");
    std::fs::remove_dir(&reports).unwrap();
    std::fs::write(&reports, b"not a directory").unwrap();
    child.stdin.as_mut().unwrap().write_all(b"crash\n").unwrap();
    let out = wait_output(child, LIMIT);
    assert_eq!(out.status.code(), Some(128 + libc::SIGSEGV));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a directory"), "{stderr}");
    let left = files(&spool.path().join("tmp"));
    assert_eq!(left.iter().filter(|f| f.contains("/crash-") || f.ends_with("-victim-bin")).count(), 2, "{left:?}");

    std::fs::remove_file(&reports).unwrap();
    let report = bin::only_report(spool.path());
    let crash = &report["crash"];
    assert_eq!(crash["signal"], libc::SIGSEGV);
    assert_eq!(report["program"]["pid"], child_pid);
    assert_eq!(report["program"]["argv"], serde_json::json!([victim.display().to_string(), "delete-self"]));
    let preserved = crash["preserved"].as_array().unwrap();
    assert_eq!(preserved.len(), 1, "{report:#}");
    assert_eq!(preserved[0]["original"], victim.display().to_string());
    assert!(report["notes"].to_string().contains("made from the minidump alone"), "{report:#}");
    assert!(files(&spool.path().join("tmp")).is_empty());
    let mut show = crashwatch(spool.path());
    show.arg("show");
    let text = String::from_utf8_lossy(&run_with_timeout(show, LIMIT).stdout).into_owned();
    let top = text.lines().find(|l| l.trim_start().starts_with("#0")).unwrap_or_default();
    assert!(top.contains("victim-bin!main (") && top.contains("crash_on_line.c:"), "the copy was used: {text}");
}
