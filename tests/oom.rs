//! OOM kills as reports, with real OOM kills: `--memory-limit` puts the
//! child in a fresh memory cgroup (this project's machines have a writable
//! cgroup v1 memory controller) and the child allocates past the limit.
//!
//! `--oom-snapshot` is driven step by step: `testdata/grow.c` grows and
//! shrinks its memory on commands from stdin, and each step waits for the
//! event it causes (the child's answer on stdout, crashwatch's log line on
//! stderr), never for time to pass.

mod common;
#[path = "sentry_common/mod.rs"]
mod sentry_common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};

use common::*;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const LIMIT_MIB: u64 = 64;

fn run_hog(spool: &Path, mib: u64, limit: bool) -> std::process::Output {
    let mut cmd = crashwatch(spool);
    cmd.arg("run");
    if limit {
        cmd.args(["--memory-limit", &format!("{LIMIT_MIB}M")]);
    }
    cmd.arg("--").arg(fixture("hog")).arg(mib.to_string());
    run_with_timeout(cmd, LIMIT)
}

#[test]
fn a_real_oom_kill_is_reported_with_the_limit_and_the_peak() {
    let spool = tempfile::tempdir().unwrap();
    let out = run_hog(spool.path(), 4 * LIMIT_MIB, true);
    assert_eq!(out.status.code(), Some(128 + 9), "{}", String::from_utf8_lossy(&out.stderr));
    let report = only_report(spool.path());
    assert_eq!(report["kind"], "oom");
    let pid = report["program"]["pid"].as_i64().unwrap();
    assert_eq!(report["oom"]["cgroup_oom_kills"], 1);
    let kernel = report["oom"]["kernel_line"].as_str().unwrap();
    assert!(kernel.contains(&format!("Killed process {pid} (hog")), "{kernel}");
    // The child was the only victim, and the kernel said so.
    assert_eq!(report.get("oom_victims"), None);
    assert_eq!(report.get("notes"), None);
    let cgroup = &report["memory"]["cgroup"];
    assert_eq!(cgroup["version"], "v1");
    assert_eq!(cgroup["limit"], LIMIT_MIB << 20);
    let peak = cgroup["peak"].as_u64().unwrap();
    assert!(peak <= LIMIT_MIB << 20 && peak > (LIMIT_MIB << 20) / 2, "peak {peak}");
    // The process's own peak is the kernel's count to its death, not the
    // last sample's (the hog lives well under the sampling interval). RSS
    // also counts shared library pages the cgroup was not charged for.
    let peak_rss = report["memory"]["peak_rss"].as_u64().unwrap();
    assert!(peak_rss > (LIMIT_MIB << 20) / 2 && peak_rss < 2 * (LIMIT_MIB << 20), "peak RSS {peak_rss}");
    // The last lines it printed before it died are there.
    let tail = tail_texts(&report);
    assert!(tail.last().unwrap().starts_with("allocated "), "{tail:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the kernel's OOM killer killed it: peak RSS "), "{stderr}");
    assert!(
        stderr.contains(&format!("cgroup peak {}", "64.0 MiB of a 64.0 MiB limit")) || stderr.contains("cgroup peak "),
        "{stderr}"
    );
    // The cgroup crashwatch made for the child is gone.
    let path = cgroup["path"].as_str().unwrap();
    assert!(path.contains("/crashwatch-"), "{path}");
    assert!(!Path::new(path).exists(), "{path} was left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_descendants_oom_kill_then_a_kill_of_the_child_is_no_oom_kill_of_the_child() {
    // The child (a shell) starts a hog that the OOM killer kills in the
    // child's cgroup; then the test kills the child with SIGKILL.
    let relay = sentry_common::relay::FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    let (spool_path, dsn) = (spool.path().to_path_buf(), relay.dsn());
    let (out, shell, hog) = tokio::task::spawn_blocking(move || {
        let mut cmd = crashwatch(&spool_path);
        cmd.args(["run", "--dsn", &dsn, "--memory-limit", &format!("{LIMIT_MIB}M"), "--", "sh", "-c"]);
        cmd.arg(r#"echo "shell $$"; "$0" 256 & echo "hog $!"; wait $!; echo "hog ended $?"; exec cat"#);
        cmd.arg(fixture("hog"));
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut lines = Lines::new(child.stdout.take().unwrap());
        let pid_after = |line: String, word: &str| line.strip_prefix(word).unwrap().trim().parse::<i32>().unwrap();
        let shell = pid_after(lines.wait_for("shell ", LIMIT), "shell ");
        let hog = pid_after(lines.wait_for("hog ", LIMIT), "hog ");
        assert_eq!(lines.wait_for("hog ended", LIMIT), "hog ended 137");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(shell), nix::sys::signal::Signal::SIGKILL).unwrap();
        (wait_output(child, LIMIT), shell, hog)
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + 9), "{stderr}");
    let report = only_report(spool.path());
    assert_eq!(report["program"]["pid"], shell);
    assert_eq!(report["kind"], "signal", "{report:#}");
    assert_eq!(report["oom"], Value::Null);
    // The hog's kill is a fact of the report: pid, name, cgroup, the line.
    let victims = report["oom_victims"].as_array().unwrap();
    assert_eq!(victims.len(), 1, "{victims:?}");
    assert_eq!(victims[0]["pid"], hog);
    let comm = victims[0]["comm"].as_str().unwrap();
    assert!(comm.starts_with("hog-") && comm.len() == 15, "{comm}");
    let cgroup = report["memory"]["cgroup"]["path"].as_str().unwrap();
    let memcg = victims[0]["memcg"].as_str().unwrap();
    assert!(cgroup.ends_with(memcg), "{cgroup} {memcg}");
    assert!(victims[0]["line"].as_str().unwrap().contains(&format!("Killed process {hog} ({comm})")));
    let named = format!("the OOM killer killed pid {hog} ({comm}) in the child's memory cgroup, not the child");
    assert!(stderr.contains(&format!("crashwatch: {named}\n")), "{stderr}");
    assert!(!stderr.contains("the kernel's OOM killer killed it"), "{stderr}");
    assert_eq!(
        report["notes"][0],
        format!(
            "the child's memory cgroup counted 1 OOM kill while it ran, but the kernel named other victims (pid {hog} \
         ({comm})), not the child: its SIGKILL came from elsewhere"
        )
    );
    // The event says the same: a SIGKILL, the hog's kill beside it.
    relay.with(|s| {
        let events = s.accepted_events();
        assert_eq!(events.len(), 1);
        let event = events[0].event().unwrap();
        let exception = &event["exception"]["values"][0];
        assert_eq!(exception["mechanism"]["type"], "signalhandler", "{exception}");
        assert_eq!(exception["mechanism"]["meta"]["signal"]["number"], 9);
        let context = &event["contexts"]["crashwatch"];
        assert_eq!(context["kind"], "signal");
        assert_eq!(context["oom_victims"][0]["pid"], hog);
        assert_eq!(context["oom_victims"][0]["comm"], comm);
        assert_eq!(context["notes"], report["notes"]);
    });
}

#[test]
fn a_plain_sigkill_is_not_called_an_oom_kill() {
    for limit in [false, true] {
        let spool = tempfile::tempdir().unwrap();
        let mut cmd = crashwatch(spool.path());
        cmd.arg("run");
        if limit {
            cmd.args(["--memory-limit", "64M"]);
        }
        cmd.args(["--", "sh", "-c", "kill -9 $$"]);
        let out = run_with_timeout(cmd, LIMIT);
        assert_eq!(out.status.code(), Some(128 + 9));
        let report = only_report(spool.path());
        assert_eq!(report["kind"], "signal", "limit={limit}");
        assert_eq!(report["oom"], Value::Null);
    }
}

#[test]
fn a_child_within_its_limit_runs_normally() {
    let spool = tempfile::tempdir().unwrap();
    let out = run_hog(spool.path(), LIMIT_MIB / 2, true);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("done\n"));
    assert!(reports(spool.path()).is_empty());
}

#[test]
fn memory_is_recorded_in_any_report() {
    // The child waits for the test, so it is surely alive when crashwatch
    // takes its first sample.
    let spool = tempfile::tempdir().unwrap();
    let (mut child, _lines) = start_ready(
        crashwatch(spool.path())
            .args(["run", "--memory-limit", "64M", "--", "python3", "-c"])
            .arg("import sys; print('ready', flush=True); sys.stdin.read(); sys.exit(3)")
            .stdin(std::process::Stdio::piped()),
    );
    drop(child.stdin.take());
    let out = wait_output(child, LIMIT);
    assert_eq!(out.status.code(), Some(3));
    let report = only_report(spool.path());
    let samples = report["memory"]["samples"].as_array().unwrap();
    assert!(samples[0]["rss"].as_u64().unwrap() > 0, "{samples:#?}");
    assert!(report["memory"]["peak_rss"].as_u64().unwrap() >= samples[0]["rss"].as_u64().unwrap());
    let cgroup = &report["memory"]["cgroup"];
    assert_eq!(cgroup["limit"], 64 << 20);
    // A limited cgroup of the child's own, removed once it ended.
    assert!(!Path::new(cgroup["path"].as_str().unwrap()).exists());
}

/// crashwatch running `grow`, with every pipe in the test's hands.
struct Grow {
    child: Child,
    stdin: ChildStdin,
    out: Lines,
    err: Lines,
}

impl Grow {
    fn start(cmd: &mut Command) -> Grow {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = Lines::new(child.stdout.take().unwrap());
        let err = Lines::new(child.stderr.take().unwrap());
        Grow { child, stdin, out, err }
    }

    /// Sends one command line to the child.
    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Sends `command` and waits for the child's answer on stdout.
    fn ask(&mut self, command: &str, answer: &str) {
        self.send(command);
        self.out.wait_for(answer, LIMIT);
    }

    /// Closes the child's stdin (it exits at EOF, unless dead already) and
    /// returns crashwatch's status with every line of its stdout and stderr.
    fn finish(self) -> (ExitStatus, Vec<String>, Vec<String>) {
        let Grow { child, stdin, out, err } = self;
        drop(stdin);
        let status = wait_output(child, LIMIT).status;
        (status, out.rest(), err.rest())
    }
}

fn grow_under(spool: &Path, flags: &[&str]) -> Command {
    let mut cmd = crashwatch(spool);
    cmd.arg("run").args(flags).arg("--").arg(fixture("grow"));
    cmd
}

fn count_containing(lines: &[String], what: &str) -> usize {
    lines.iter().filter(|l| l.contains(what)).count()
}

fn time_of(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().unwrap(), &Rfc3339).unwrap()
}

/// Files crashwatch writes dumps into before they belong to a report.
fn scratch_files(spool: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(spool.join("tmp")).unwrap().map(|e| e.unwrap().path()).collect()
}

/// The function names of the frames of the thread a symbolicated dump
/// blames (the crashing one, or the one that took a snapshot).
fn blamed_functions(stacks: &Value) -> Vec<String> {
    let index = stacks["crashing_thread"].as_u64().unwrap() as usize;
    stacks["threads"][index]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["function"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_report_carries_the_stacks_of_the_snapshot() {
    let relay = sentry_common::relay::FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    let (spool_path, dsn) = (spool.path().to_path_buf(), relay.dsn());
    let (status, stdout, stderr) = tokio::task::spawn_blocking(move || {
        let mut grow = Grow::start(&mut grow_under(
            &spool_path,
            &["--dsn", &dsn, "--memory-limit", &format!("{LIMIT_MIB}M"), "--oom-snapshot", "50"],
        ));
        // It grows towards 4 times its limit, pausing at 3/4 of it inside
        // its allocating function until the snapshot has been taken.
        grow.send(&format!("up {} {}", 4 * LIMIT_MIB, LIMIT_MIB * 3 / 4));
        grow.out.wait_for("paused at 48 MiB", LIMIT);
        grow.err.wait_for("snapshot of pid", LIMIT);
        grow.send("");
        grow.finish()
    })
    .await
    .unwrap();
    // The child's real death passes through.
    assert_eq!(status.code(), Some(128 + 9), "{stderr:#?}");
    assert_eq!(stdout, ["paused at 48 MiB"]);

    let report = only_report(spool.path());
    assert_eq!(report["kind"], "oom");
    assert_eq!(report["oom"]["cgroup_oom_kills"], 1);
    let pid = report["program"]["pid"].as_i64().unwrap();
    let snapshot = &report["snapshot"];
    assert_eq!(snapshot["threshold_percent"], 50);
    assert_eq!(snapshot["limit"], LIMIT_MIB << 20);
    let usage = snapshot["usage"].as_u64().unwrap();
    assert!(((LIMIT_MIB << 20) / 2..=LIMIT_MIB << 20).contains(&usage), "usage {usage}");
    // One thread, which took the request: the main one.
    assert_eq!((snapshot["pid"].as_i64(), snapshot["tid"].as_i64()), (Some(pid), Some(pid)));
    assert_eq!(snapshot["threads"], 1);
    assert_eq!(snapshot.get("minidump_error"), None);
    let (crossed, taken, ended) =
        (time_of(&snapshot["crossed_at"]), time_of(&snapshot["taken_at"]), time_of(&report["ended_at"]));
    assert!(crossed <= taken && taken <= ended, "{crossed} {taken} {ended}");

    // The dump is of the live process: "dump requested", not a crash.
    let dir = spool.path().join("reports").join(report["id"].as_str().unwrap());
    let dump = read_dump(&dir.join(snapshot["minidump"]["file"].as_str().unwrap()));
    assert_eq!(dump.exception_code, 0xffff_ffff, "DUMP_REQUESTED");
    assert_eq!(dump.crashing_tid as i64, pid);
    assert_eq!(dump.thread_ids, [pid as u32]);
    // Its stacks, symbolicated: the child was in its allocating function.
    let stacks: Value =
        serde_json::from_slice(&std::fs::read(dir.join(snapshot["stacks"]["file"].as_str().unwrap())).unwrap())
            .unwrap();
    let functions = blamed_functions(&stacks);
    let grow_to = functions.iter().position(|f| f == "grow_to").unwrap_or_else(|| panic!("{functions:?}"));
    assert_eq!(functions[grow_to + 1], "main", "{functions:?}");

    // The summary says where the stacks come from, then shows them. (On a
    // busy machine the sampler may see the threshold before the pause, with
    // the child in memset below grow_to: the stacks differ, not the facts.)
    let summary = stderr.join("\n");
    assert!(summary.contains("the kernel's OOM killer killed it"), "{summary}");
    let percent = usage as f64 * 100.0 / (LIMIT_MIB << 20) as f64;
    assert!(summary.contains(&format!("stacks from a snapshot at {percent:.0}")), "{summary}");
    let snapshot_line = stderr.iter().position(|l| l.contains("stacks from a snapshot at ")).unwrap();
    assert!(stderr[snapshot_line + 1].starts_with("crashwatch:   #0 "), "{summary}");

    relay.with(|s| {
        assert!(s.invalid().is_empty(), "{:?}", s.invalid());
        let events = s.accepted_events();
        assert_eq!(events.len(), 1);
        let envelope = events[0];
        assert_eq!(envelope.item_types(), ["event", "attachment:event.attachment", "attachment:event.attachment"]);
        let minidump = &envelope.items[1];
        assert_eq!(minidump.header["content_type"], "application/x-dmp");
        // The scrubbed environment and command line are appended to it.
        assert!(minidump.payload.len() as u64 > snapshot["minidump"]["size"].as_u64().unwrap());
        let event = envelope.event().unwrap();
        let exception = &event["exception"]["values"][0];
        assert_eq!(exception["type"], "OOM");
        assert_eq!(exception["mechanism"]["type"], "oom");
        assert!(exception["value"].as_str().unwrap().contains("; stacks from a snapshot at "), "{exception}");
        assert_eq!(exception["thread_id"], pid);
        // Frames oldest first: main called grow_to.
        let frames: Vec<&str> = exception["stacktrace"]["frames"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["function"].as_str())
            .collect();
        let grow_to = frames.iter().position(|f| *f == "grow_to").unwrap_or_else(|| panic!("{frames:?}"));
        assert_eq!(frames[grow_to - 1], "main");
        assert_eq!(event["contexts"]["crashwatch"]["snapshot"]["threshold_percent"], 50);
        assert_eq!(event["threads"]["values"].as_array().unwrap().len(), 1);
    });
}

/// A sudden spike: `testdata/spike.c` allocates 96 MiB in 4 pieces, malloc
/// and memset with nothing in between (about 50 ms on a quiet machine),
/// into a 96M limit. With `--oom-snapshot 70` the working set is past the
/// threshold for only the last ~15 ms of its life: a check every 100 ms
/// misses it nearly always. The kernel's threshold notification (cgroup
/// v1 here) wakes crashwatch at the crossing, and the snapshot is taken
/// before the OOM kill.
#[test]
fn a_sudden_spike_past_the_limit_gets_its_snapshot() {
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = crashwatch(spool.path());
    cmd.env("CRASHWATCH_LOG", "crashwatch=debug");
    cmd.args(["run", "--memory-limit", "96M", "--oom-snapshot", "70", "--"]).arg(fixture("spike")).arg("96");
    let out = run_with_timeout(cmd, LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + 9), "{stderr}");
    let report = only_report(spool.path());
    assert_eq!(report["kind"], "oom", "{report:#}");
    let snapshot = &report["snapshot"];
    assert!(snapshot.is_object(), "no snapshot: {report:#}\n{stderr}");
    assert!(
        stderr.contains(
            "--oom-snapshot: the kernel wakes crashwatch at the threshold (cgroup v1 memory threshold notification)"
        ),
        "{stderr}"
    );
    assert_eq!(snapshot["noticed_by"], "cgroup-v1-threshold", "{report:#}\n{stderr}");
    assert_eq!(snapshot["threshold_percent"], 70);
    let usage = snapshot["usage"].as_u64().unwrap();
    assert!((96 * (70 << 20) / 100..=96 << 20).contains(&usage), "usage {usage}");
    assert_eq!(snapshot.get("minidump_error"), None, "{snapshot:#}");
    assert!(
        stderr.contains("--oom-snapshot 70%; by cgroup v1 memory threshold notification): taking a snapshot"),
        "{stderr}"
    );
    // Its stacks: the child was stopped inside its allocating function.
    let dir = spool.path().join("reports").join(report["id"].as_str().unwrap());
    let stacks: Value =
        serde_json::from_slice(&std::fs::read(dir.join(snapshot["stacks"]["file"].as_str().unwrap())).unwrap())
            .unwrap();
    let functions = blamed_functions(&stacks);
    let allocate = functions.iter().position(|f| f == "allocate").unwrap_or_else(|| panic!("{functions:?}"));
    assert_eq!(functions[allocate + 1], "main", "{functions:?}");
    // The cgroup is gone with the child.
    assert!(!Path::new(report["memory"]["cgroup"]["path"].as_str().unwrap()).exists());
    // `show` says what noticed the crossing.
    let show = crashwatch(spool.path()).args(["show", report["id"].as_str().unwrap()]).output().unwrap();
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(shown.lines().any(|l| l == "Noticed by  cgroup v1 memory threshold notification"), "{shown}");
}

/// Page cache is usage but not working set: a child that writes a file
/// crosses the kernel's level with reclaimable pages, and the level moves
/// up after them (until it would be the limit, where only the 100 ms check
/// is left), rather than a snapshot being taken for page cache. (The 100 ms
/// check may still see the working set cross, as it always could: pages
/// under writeback are not inactive.)
#[test]
fn page_cache_moves_the_kernels_level_up() {
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = crashwatch(spool.path());
    cmd.env("CRASHWATCH_LOG", "crashwatch=debug");
    // On the target directory's disk, not a tmpfs: real page cache.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let file = dir.path().join("written");
    cmd.args(["run", "--memory-limit", "96M", "--oom-snapshot", "50", "--", "sh", "-c"]);
    cmd.arg(r#"dd if=/dev/zero of="$0" bs=1M count=150 2>/dev/null && echo written"#).arg(&file);
    let out = run_with_timeout(cmd, LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "written\n");
    let armed = stderr
        .lines()
        .position(|l| l.contains("--oom-snapshot: the kernel wakes crashwatch at the threshold (cgroup v1"))
        .unwrap_or_else(|| panic!("{stderr}"));
    // The sampler woke for page cache: the level moved up after it, or
    // (when the sampler ran only once the file was nearly written) it would
    // be the limit, and the 100 ms check is left.
    let followed = stderr
        .lines()
        .position(|l| {
            l.contains("--oom-snapshot: the kernel's level moved up with the page cache")
                || l.contains("--oom-snapshot: the memory is checked every 100 ms only: with its page cache the level")
        })
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(armed < followed, "{stderr}");
    // Page cache never fired the snapshot from the kernel's wake.
    assert!(!stderr.contains("by cgroup v1 memory threshold notification): taking a snapshot"), "{stderr}");
}

#[test]
fn a_child_that_recovers_is_snapshotted_once_and_runs_on_undisturbed() {
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = grow_under(spool.path(), &["--memory-limit", &format!("{LIMIT_MIB}M"), "--oom-snapshot", "50"]);
    // Debug lines say when crashwatch saw the memory fall and rise again.
    cmd.env("CRASHWATCH_LOG", "crashwatch=debug");
    let mut grow = Grow::start(&mut cmd);
    grow.ask("up 48", "at 48 MiB");
    grow.err.wait_for("snapshot of pid", LIMIT);
    grow.ask("down 8", "at 8 MiB");
    grow.err.wait_for("memory fell below the --oom-snapshot threshold", LIMIT);
    grow.ask("up 48", "at 48 MiB");
    grow.err.wait_for("memory is above the --oom-snapshot threshold again", LIMIT);
    // The child checks its own state: every page as it wrote it, and no
    // SIGURG (the request) ever reached it.
    grow.ask("check", "verified 48 MiB");
    grow.ask("urg", "sigurg=");
    let (status, stdout, stderr) = grow.finish();

    assert_eq!(status.code(), Some(0), "{stderr:#?}");
    assert_eq!(stdout, ["at 48 MiB", "at 8 MiB", "at 48 MiB", "verified 48 MiB", "sigurg=0"]);
    assert_eq!(count_containing(&stderr, "taking a snapshot of its stacks"), 1, "{stderr:#?}");
    assert_eq!(count_containing(&stderr, "snapshot of pid"), 1, "{stderr:#?}");
    assert_eq!(count_containing(&stderr, "snapshot taken"), 1, "{stderr:#?}");
    assert_eq!(count_containing(&stderr, "the memory snapshot was discarded: the child did not die of an OOM kill"), 1);
    // No report, and the dump is gone.
    assert!(reports(spool.path()).is_empty());
    assert_eq!(scratch_files(spool.path()), Vec::<PathBuf>::new());
}

#[test]
fn crashes_after_a_snapshot_are_still_caught() {
    // The snapshot never lets the child go: its threads, and the threads
    // created after it, stay traced.
    let spool = tempfile::tempdir().unwrap();
    let mut grow = Grow::start(&mut grow_under(spool.path(), &["--memory-limit", "64M", "--oom-snapshot", "50"]));
    grow.ask("threads 3", "threads started: 3");
    grow.ask("up 48", "at 48 MiB");
    grow.err.wait_for("snapshot of pid", LIMIT);
    grow.ask("down 0", "at 0 MiB");
    // A thread created after the snapshot crashes.
    grow.send("crash-thread");
    let (status, _, stderr) = grow.finish();

    assert_eq!(status.code(), Some(128 + 11), "{stderr:#?}");
    let report = only_report(spool.path());
    assert_eq!(report["kind"], "signal");
    let crash = &report["crash"];
    assert_eq!(crash["signal"], 11);
    assert_eq!(crash["threads"], 5);
    assert_ne!(crash["tid"], report["program"]["pid"]);
    // The crash has its own dump; the snapshot is not in the report.
    assert!(crash["minidump"]["size"].as_u64().unwrap() > 0);
    assert_eq!(report.get("snapshot"), None);
    // The snapshot saw the 4 threads of the time.
    assert_eq!(count_containing(&stderr, "written: 4 threads,"), 1, "{stderr:#?}");
    assert_eq!(count_containing(&stderr, "the memory snapshot was discarded"), 1, "{stderr:#?}");
    assert_eq!(scratch_files(spool.path()), Vec::<PathBuf>::new());
}

#[test]
fn a_crash_right_after_a_snapshot_taken_during_thread_churn_is_caught() {
    // Threads are created and joined without end before, during and after
    // the snapshot; the crash comes from a thread created as soon as the
    // snapshot is announced. No moment after the snapshot is untraced.
    for _ in 0..3 {
        let spool = tempfile::tempdir().unwrap();
        let mut grow = Grow::start(&mut grow_under(spool.path(), &["--memory-limit", "64M", "--oom-snapshot", "50"]));
        grow.ask("churn", "churning in 1 thread");
        grow.send("up 48");
        grow.err.wait_for("snapshot of pid", LIMIT);
        grow.send("crash-thread");
        let (status, _, stderr) = grow.finish();

        assert_eq!(status.code(), Some(128 + 11), "{stderr:#?}");
        let report = only_report(spool.path());
        assert_eq!(report["kind"], "signal");
        let crash = &report["crash"];
        assert_eq!(crash["signal"], 11);
        assert_eq!(crash["fault_address"], "0x10");
        assert_ne!(crash["tid"], report["program"]["pid"]);
        assert!(crash["minidump"]["size"].as_u64().unwrap() > 0, "{report:#}");
        assert_eq!(count_containing(&stderr, "snapshot of pid"), 1, "{stderr:#?}");
        assert_eq!(count_containing(&stderr, "the memory snapshot was discarded"), 1, "{stderr:#?}");
        assert_eq!(scratch_files(spool.path()), Vec::<PathBuf>::new());
    }
}

#[test]
fn a_bad_oom_snapshot_is_a_usage_error() {
    /// Flags, environment, what the error says.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 6] = [
        (&["--oom-snapshot", "0"], &[], &["0 is out of range: use a percentage of the memory limit from 1 to 99"]),
        (&["--oom-snapshot", "150"], &[], &["150 is out of range: use a percentage of the memory limit from 1 to 99"]),
        (&["--oom-snapshot", "abc"], &[], &["'abc' is not a percentage: use a whole number from 1 to 99"]),
        (&["--oom-snapshot", "50", "--no-ptrace"], &[], &["--oom-snapshot", "cannot be used with", "--no-ptrace"]),
        // The same conflict, through the environment.
        (
            &[],
            &[("CRASHWATCH_OOM_SNAPSHOT", "50"), ("CRASHWATCH_NO_PTRACE", "true")],
            &["--oom-snapshot", "cannot be used with", "--no-ptrace"],
        ),
        (
            &["--oom-snapshot", "50", "--minidump", "off"],
            &[],
            &["--oom-snapshot writes a minidump, which --minidump off forbids; use --minidump local"],
        ),
    ];
    for (flags, env, messages) in cases {
        let spool = tempfile::tempdir().unwrap();
        let mut cmd = crashwatch(spool.path());
        cmd.arg("run").args(flags).envs(env.iter().copied()).args(["--", "sh", "-c", "echo ran"]);
        let out = run_with_timeout(cmd, LIMIT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?} {env:?}: {stderr}");
        for message in messages {
            assert!(stderr.contains(message), "{flags:?} {env:?}: {stderr}");
        }
        // The child never ran.
        assert!(out.stdout.is_empty(), "{flags:?} {env:?}");
    }
}

/// A memory cgroup of the test's own, below the one it runs in, removed
/// when dropped; crashwatch is started inside it (by a shell that moves
/// itself in, then execs crashwatch).
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn new(name: &str, limit: Option<u64>) -> TestCgroup {
        let own = crashwatch::memory::cgroup::MemoryCgroup::of_process(0).unwrap();
        let dir = own.dir.join(format!("crashwatch-test-{name}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        if let Some(limit) = limit {
            std::fs::write(dir.join("memory.limit_in_bytes"), limit.to_string()).unwrap();
        }
        TestCgroup(dir)
    }

    fn run_inside(&self, spool: &Path, flags: &[&str]) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("echo $$ > \"$0/cgroup.procs\" && exec \"$@\"").arg(&self.0);
        cmd.arg(env!("CARGO_BIN_EXE_crashwatch")).arg("run").args(flags).arg("--").arg(fixture("grow"));
        cmd.env("CRASHWATCH_SPOOL_DIR", spool).env_remove("CRASHWATCH_LOG").env_remove("SENTRY_DSN");
        cmd
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn the_limit_is_the_cgroups_own_and_without_one_the_child_runs_without_snapshot() {
    // No limit anywhere: a warning that says what to do, and a normal run.
    let unlimited = TestCgroup::new("unlimited", None);
    let spool = tempfile::tempdir().unwrap();
    let mut grow = Grow::start(&mut unlimited.run_inside(spool.path(), &["--oom-snapshot", "50"]));
    grow.ask("up 8", "at 8 MiB");
    grow.ask("check", "verified 8 MiB");
    let (status, _, stderr) = grow.finish();
    assert_eq!(status.code(), Some(0), "{stderr:#?}");
    let warning = format!(
        "warning: --oom-snapshot is ignored: the child's memory cgroup ({}) has no limit to take 50% of; give \
         --memory-limit",
        unlimited.0.display()
    );
    assert_eq!(count_containing(&stderr, &warning), 1, "{stderr:#?}");
    assert_eq!(count_containing(&stderr, "snapshot of pid"), 0, "{stderr:#?}");

    // The limit of the cgroup crashwatch runs in (crashwatch's own memory
    // counts towards it too, as it does for the OOM killer).
    let limited = TestCgroup::new("limited", Some(256 << 20));
    let spool = tempfile::tempdir().unwrap();
    let mut grow = Grow::start(&mut limited.run_inside(spool.path(), &["--oom-snapshot", "40"]));
    grow.ask("up 120", "at 120 MiB");
    let line = grow.err.wait_for("taking a snapshot of its stacks", LIMIT);
    assert!(line.contains("of its 256.0 MiB limit"), "{line}");
    grow.err.wait_for("snapshot of pid", LIMIT);
    grow.ask("check", "verified 120 MiB");
    let (status, _, stderr) = grow.finish();
    assert_eq!(status.code(), Some(0), "{stderr:#?}");
    assert!(reports(spool.path()).is_empty());
    assert_eq!(scratch_files(spool.path()), Vec::<PathBuf>::new());
}

#[test]
fn doctor_says_what_wakes_oom_snapshots() {
    // Here (cgroup v1): the kernel's threshold notification, for the cgroup
    // --memory-limit makes and for a cgroup with a limit of its own.
    let limited = TestCgroup::new("doctor", Some(256 << 20));
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg("echo $$ > \"$0/cgroup.procs\" && exec \"$@\"").arg(&limited.0);
    cmd.arg(env!("CARGO_BIN_EXE_crashwatch")).arg("doctor");
    cmd.env("CRASHWATCH_SPOOL_DIR", spool.path()).env_remove("CRASHWATCH_LOG").env_remove("SENTRY_DSN");
    let out = run_with_timeout(cmd, LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected = format!(
        "OK    oomsnap --oom-snapshot with --memory-limit is woken by the kernel: cgroup v1 memory threshold \
         notification; in {}, with its own limit: cgroup v1 memory threshold notification",
        limited.0.display()
    );
    assert!(stdout.lines().any(|l| l == expected), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // The probe cgroup doctor made is gone.
    let probes = std::fs::read_dir(&limited.0).unwrap().filter_map(Result::ok).filter(|e| e.path().is_dir()).count();
    assert_eq!(probes, 0);
}
