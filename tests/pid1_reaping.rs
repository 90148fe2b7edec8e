//! tini's reaping and process-group tests (krallin/tini `test/`), ported:
//! orphans re-parented to the supervisor and reaped, a zombie storm,
//! signals to the program's whole process group, and the warning when
//! nobody here can reap, on crashwatch and on tini side by side, as PID 1
//! of a PID namespace and as a subreaper.

mod common;
#[path = "supervisors/mod.rs"]
mod supervisors;

use std::process::Command;

use common::{LIMIT, fixture, run_with_timeout};
use supervisors::{BOTH, Setup, kill, status_code};

fn stdout_lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_hundred_orphans_are_re_parented_to_the_supervisor_and_reaped() {
    let spool = tempfile::tempdir().unwrap();
    let orphans = fixture("orphans");
    for setup in BOTH.map(Setup::new) {
        let out = run_with_timeout(setup.command(spool.path(), &[orphans.to_str().unwrap(), "100", "hold"]), LIMIT);
        assert_eq!(status_code(&out), 0, "{setup:?}: {:?} {}", stdout_lines(&out), stderr(&out));
        assert_eq!(stdout_lines(&out), ["100 orphans re-parented to the supervisor", "reaped 100"], "{setup:?}");
    }
}

#[test]
fn a_zombie_storm_leaves_no_zombie() {
    // 2000 processes exit as they are born while their parent exits too:
    // zombies of a dying parent and orphans, re-parented in a burst.
    let spool = tempfile::tempdir().unwrap();
    let orphans = fixture("orphans");
    for setup in BOTH.map(Setup::new) {
        let out = run_with_timeout(setup.command(spool.path(), &[orphans.to_str().unwrap(), "2000", "storm"]), LIMIT);
        assert_eq!(status_code(&out), 0, "{setup:?}: {:?} {}", stdout_lines(&out), stderr(&out));
        assert_eq!(stdout_lines(&out), ["reaped 2000"], "{setup:?}");
    }
}

#[test]
fn signal_group_reaches_a_grandchild_the_program_waits_for() {
    // tini's pgroup test: the program ignores SIGUSR1 and waits for a
    // child that does not; SIGUSR1 sent to the supervisor reaches the
    // whole group, the grandchild dies of it, and the program exits with
    // its status (128+10).
    let spool = tempfile::tempdir().unwrap();
    let script = "trap '' USR1; (trap - USR1; echo ready; exec sleep 1000) & wait $!";
    for setup in BOTH.map(|s| Setup { group: true, ..Setup::new(s) }) {
        let running = setup.start(spool.path(), &["sh", "-c", script]);
        running.signal(libc::SIGUSR1);
        let (out, _) = running.finish();
        assert_eq!(status_code(&out), 128 + libc::SIGUSR1, "{setup:?}: {}", stderr(&out));
    }
}

/// `sh -c SCRIPT` under `tini -s -- crashwatch run ARGS`: tini (a
/// subreaper) adopts what crashwatch's child leaves behind. Returns the
/// output and tini's pid.
fn under_tini(args: &[&str], script: &str) -> (std::process::Output, i32) {
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("tini");
    cmd.args(["-s", "--", env!("CARGO_BIN_EXE_crashwatch"), "run"]).args(args).args(["--", "sh", "-c", script]);
    cmd.env("CRASHWATCH_SPOOL_DIR", spool.path()).env_remove("CRASHWATCH_LOG");
    let child = cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped());
    let child = child.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let tini = child.id() as i32;
    (common::wait_output(child, LIMIT), tini)
}

/// The pids a script printed as `left PID`, each killed.
fn kill_left(out: &std::process::Output) -> Vec<i32> {
    let pids: Vec<i32> = stdout_lines(out).iter().filter_map(|l| l.strip_prefix("left ")?.parse().ok()).collect();
    for &pid in &pids {
        kill(pid, libc::SIGKILL);
    }
    pids
}

#[test]
fn neither_pid_1_nor_a_subreaper_crashwatch_warns_once_when_orphans_are_left() {
    // Each run leaves a sleep in the child's process group; it goes to
    // tini, the nearest subreaper. Two runs, one warning, naming the first.
    let leave = "sleep 1000 </dev/null >/dev/null 2>&1 & echo \"left $!\"; exit 1";
    let restart = ["--restart", "on-failure", "--max-restarts", "1", "--restart-delay", "0"];
    let (out, tini) = under_tini(&restart, leave);
    let left = kill_left(&out);
    assert_eq!(left.len(), 2, "{:?}", stdout_lines(&out));
    assert_eq!(status_code(&out), 1);
    let expected = format!(
        "crashwatch: warning: the child left processes behind: {} (now a child of {tini} tini); crashwatch is \
         neither PID 1 nor a subreaper, so it cannot reap them when they exit (--subreaper adopts them)",
        left[0]
    );
    let err = stderr(&out);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("left processes behind")).collect();
    assert_eq!(warnings, [expected.as_str()]);

    // A subreaper adopts them itself: no warning.
    let (out, _) = under_tini(&["--subreaper"], leave);
    assert_eq!(kill_left(&out).len(), 1);
    assert!(!stderr(&out).contains("left processes behind"), "{}", stderr(&out));

    // Nothing left, nothing said; tini warns at its start all the same.
    let (out, _) = under_tini(&[], "exit 0");
    assert_eq!(status_code(&out), 0);
    assert_eq!(stderr(&out), "");
    let out = run_with_timeout(
        {
            let mut cmd = Command::new("tini");
            cmd.args(["-s", "--", "tini", "--", "true"]);
            cmd
        },
        LIMIT,
    );
    assert!(stderr(&out).contains("zombie reaping won't work"), "{}", stderr(&out));
}

// What stays: crashwatch is the child's tracer and the reader of its
// output, and neither outlives crashwatch.

/// `late_writer.py` under crashwatch with `args`, ready; returns the
/// running crashwatch, the writer's pid and the file it records in.
fn late_writer(args: &[&str], through_sh: bool, dir: &std::path::Path) -> (std::process::Child, common::Lines, i32) {
    let record = dir.join("record");
    let script = common::testdata("late_writer.py");
    let mut cmd = common::crashwatch(dir);
    cmd.arg("run").args(args).arg("--");
    if through_sh {
        // sh exits at once, leaving the writer in its process group.
        cmd.args(["sh", "-c", &format!("python3 {} {} &", script.display(), record.display())]);
    } else {
        cmd.arg("python3").arg(&script).arg(&record);
    }
    let (child, lines) = common::start_ready(cmd.stdin(std::process::Stdio::null()));
    let ready = lines.seen.last().unwrap().clone();
    let pid = ready.strip_prefix("ready ").unwrap().parse().unwrap();
    (child, lines, pid)
}

/// Tells the writer to write, and returns how its write went.
fn write_late(pid: i32, dir: &std::path::Path) -> String {
    kill(pid, libc::SIGUSR1);
    let record = dir.join("record");
    supervisors::wait_until("the writer's record", || record.exists());
    std::fs::read_to_string(record).unwrap()
}

#[test]
fn a_traced_child_dies_with_a_sigkilled_crashwatch_an_untraced_one_loses_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let (crashwatch, _lines, writer) = late_writer(&[], false, dir.path());
    kill(crashwatch.id() as i32, libc::SIGKILL);
    // PTRACE_O_EXITKILL: the tracer's death kills the tracee.
    supervisors::wait_until("the child's death", || matches!(supervisors::state(writer), None | Some('Z')));
    let out = common::wait_output(crashwatch, LIMIT);
    assert_eq!(status_code(&out), 128 + libc::SIGKILL);

    let dir = tempfile::tempdir().unwrap();
    let (crashwatch, _lines, writer) = late_writer(&["--no-ptrace"], false, dir.path());
    kill(crashwatch.id() as i32, libc::SIGKILL);
    // Reaped, so that its last thread has closed the pipes (its leader
    // shows as a zombie before that).
    let out = common::wait_output(crashwatch, LIMIT);
    assert_eq!(status_code(&out), 128 + libc::SIGKILL);
    // Untraced, it runs on, but nobody reads its output any more.
    assert_eq!(supervisors::state(writer), Some('S'));
    assert_eq!(write_late(writer, dir.path()), "EPIPE");
}

#[test]
fn a_grandchild_that_outlives_crashwatch_loses_its_later_output() {
    // crashwatch waits 2 s for the pipes after the child's end, then
    // exits; the grandchild still holding them writes into the void.
    let dir = tempfile::tempdir().unwrap();
    let (crashwatch, _lines, writer) = late_writer(&[], true, dir.path());
    let out = common::wait_output(crashwatch, LIMIT);
    assert_eq!(status_code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("a descendant of the child still holds its output open"), "{err}");
    assert!(err.contains(&format!("the child left processes behind: {writer} (now a child of ")), "{err}");
    assert_eq!(write_late(writer, dir.path()), "EPIPE");
}
