//! Every shape of event crashwatch sends, built by the real binary from real
//! programs, caught by the fake Relay, then put through Relay's own event
//! normalizer (`sentry_relay.processing.StoreNormalizer` from the
//! `sentry-relay` wheel, which `.ci/test` installs): none comes back with
//! `errors`, and everything crashwatch said is still there as it said it.
//!
//! "Still there" is checked leaf by leaf: every value of the event sent is
//! in the normalized one, under the same path, equal. The only differences
//! allowed are the forms Relay writes the same fact in: a timestamp as a
//! number of seconds, tags as a list of pairs.

mod common;
#[path = "sentry_common/mod.rs"]
mod sentry_common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{LIMIT, Lines, crashwatch, fixture, run_with_timeout, testdata, wait_output};
use sentry_common::WAIT;
use sentry_common::normalize::{changed, normalize};
use sentry_common::relay::FakeRelay;
use serde_json::Value;

const RELEASE: &str = "server@1.4.2";
const ENVIRONMENT: &str = "staging";

/// Frames in `event` (exception and threads) with function, file and line.
fn named_frames(event: &Value) -> usize {
    let stacks = event["exception"]["values"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(event["threads"]["values"].as_array().into_iter().flatten())
        .filter_map(|holder| holder["stacktrace"]["frames"].as_array());
    stacks.flatten().filter(|f| f["function"].is_string() && f["filename"].is_string() && f["lineno"].is_u64()).count()
}

struct Shape {
    name: &'static str,
    /// The last exception's mechanism, or `None` for an event without one.
    mechanism: Option<&'static str>,
    /// Whether the event carries a minidump's stacks and images.
    native_stacks: bool,
    event: Value,
}

/// Runs `cmd` (crashwatch, already pointed at the relay) and returns the
/// events the relay accepted because of it.
async fn events_of(relay: &FakeRelay, cmd: Command, expected: usize) -> Vec<Value> {
    let before = accepted(relay);
    let out = tokio::task::spawn_blocking(move || run_with_timeout(cmd, LIMIT)).await.unwrap();
    events_since(relay, before, expected, &String::from_utf8_lossy(&out.stderr)).await
}

fn accepted(relay: &FakeRelay) -> usize {
    relay.with(|s| s.accepted_events().len())
}

/// The `expected` events accepted after the first `before`, once they are in.
async fn events_since(relay: &FakeRelay, before: usize, expected: usize, why: &str) -> Vec<Value> {
    let what = format!("{expected} more event(s); crashwatch said {why}");
    relay.wait_until(&what, WAIT, |s| s.accepted_events().len() >= before + expected).await;
    relay.with(|s| {
        assert!(s.invalid().is_empty(), "{:?}", s.invalid());
        s.accepted_events()[before..].iter().map(|e| e.event().unwrap()).collect()
    })
}

fn run(spool: &Path, dsn: &str, flags: &[&str], program: &[&str]) -> Command {
    let mut cmd = crashwatch(spool);
    cmd.args(["run", "--dsn", dsn, "--release", RELEASE, "--environment", ENVIRONMENT]).args(flags).arg("--");
    cmd.args(program);
    cmd
}

/// `text` printed on stderr by a program that then exits with `code`: a
/// runtime's recorded crash output (testdata/go, testdata/sanitizers).
fn printing(path: &Path, code: i32) -> Vec<String> {
    let script = format!("cat \"$0\" >&2; exit {code}");
    vec!["sh".into(), "-c".into(), script, path.to_str().unwrap().into()]
}

fn build(what: &str, cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed");
}

/// The OOM kill of `grow` under a 64 MiB limit, after `--oom-snapshot 50`
/// dumped it at 48 MiB (it pauses there until the snapshot is taken).
fn oom_with_snapshot(spool: &Path, dsn: &str) -> Command {
    let mut cmd = run(spool, dsn, &["--memory-limit", "64M", "--oom-snapshot", "50"], &[]);
    cmd.arg(fixture("grow"));
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_crashwatch_sends_passes_relays_normalizer_intact() {
    let relay = FakeRelay::start().await;
    let dsn = relay.dsn();
    let work = tempfile::tempdir().unwrap();
    let spool = |name: &str| work.path().join(name);
    let mut shapes = Vec::new();
    let mut add = |name, mechanism, native_stacks, events: Vec<Value>| {
        for event in events {
            shapes.push(Shape { name, mechanism, native_stacks, event });
        }
    };

    // A signal: SIGSEGV in thread 5 of 6, every thread symbolicated.
    let crasher = fixture("thread5_of_6");
    let cmd = run(&spool("signal"), &dsn, &[], &[crasher.to_str().unwrap()]);
    add("signal", Some("signalhandler"), true, events_of(&relay, cmd, 1).await);

    // A plain OOM kill, and one with the stacks of an --oom-snapshot.
    let hog = fixture("hog");
    let cmd = run(&spool("oom"), &dsn, &["--memory-limit", "64M"], &[hog.to_str().unwrap(), "256"]);
    add("oom", Some("oom"), false, events_of(&relay, cmd, 1).await);
    let (snapshot_spool, snapshot_dsn, before) = (spool("snapshot"), dsn.clone(), accepted(&relay));
    let snapshot = tokio::task::spawn_blocking(move || {
        let mut child = oom_with_snapshot(&snapshot_spool, &snapshot_dsn)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut out = Lines::new(child.stdout.take().unwrap());
        let mut err = Lines::new(child.stderr.take().unwrap());
        writeln!(stdin, "up 256 48").unwrap();
        out.wait_for("paused at 48 MiB", LIMIT);
        err.wait_for("snapshot of pid", LIMIT);
        writeln!(stdin).unwrap();
        drop(stdin);
        wait_output(child, LIMIT).status
    });
    assert_eq!(snapshot.await.unwrap().code(), Some(128 + 9));
    add("oom with snapshot", Some("oom"), true, events_since(&relay, before, 1, "an OOM kill").await);

    // Each runtime's own crash story.
    let dir = work.path();
    let rust_src = dir.join("main_panic.rs");
    std::fs::write(
        &rust_src,
        "fn parse(s: &str) -> u32 { s.parse().expect(\"config value\") }\nfn main() { parse(\"x\"); }\n",
    )
    .unwrap();
    let rust_exe = dir.join("main_panic");
    build("rustc", Command::new("rustc").args(["-g", "-o"]).arg(&rust_exe).arg(&rust_src));
    let cmd = run(&spool("rust"), &dsn, &["--rust-backtrace"], &[rust_exe.to_str().unwrap()]);
    add("rust panic", Some("panic"), false, events_of(&relay, cmd, 1).await);

    let go = printing(&testdata("go/nil_pointer.txt"), 2);
    let cmd = run(&spool("go"), &dsn, &[], &go.iter().map(String::as_str).collect::<Vec<_>>());
    add("go panic", Some("panic"), false, events_of(&relay, cmd, 1).await);

    let python = testdata("programs/python/chained.py");
    let cmd = run(&spool("python"), &dsn, &[], &["python3", python.to_str().unwrap()]);
    add("python traceback", Some("panic"), false, events_of(&relay, cmd, 1).await);

    let classes = dir.join("classes");
    build("javac", Command::new("javac").arg("-d").arg(&classes).arg(testdata("programs/Crash.java")));
    let cmd = run(&spool("java"), &dsn, &[], &["java", "-cp", classes.to_str().unwrap(), "Crash", "chain"]);
    add("java exception", Some("panic"), false, events_of(&relay, cmd, 1).await);

    let node = testdata("programs/node/uncaught.js");
    let cmd = run(&spool("node"), &dsn, &[], &["node", node.to_str().unwrap()]);
    add("node uncaught exception", Some("panic"), false, events_of(&relay, cmd, 1).await);
    // process.abort(): the dump's native stack and node's JavaScript one.
    let node = testdata("programs/node/abort.js");
    let cmd = run(&spool("node-abort"), &dsn, &[], &["node", node.to_str().unwrap()]);
    add("node abort", Some("panic"), true, events_of(&relay, cmd, 1).await);

    // The JVM handles a SIGSEGV and aborts: the real signal, hs_err attached.
    let hard = dir.join("hard");
    build("javac", Command::new("javac").arg("-d").arg(&hard).arg(testdata("programs/HardCrash.java")));
    // Its hs_err file goes to the work dir, not the test's current one.
    let error_file = format!("-XX:ErrorFile={}", dir.join("hs_err_pid%p.log").display());
    let cmd = run(&spool("jvm"), &dsn, &[], &["java", &error_file, "-cp", hard.to_str().unwrap(), "HardCrash"]);
    add("jvm hard crash", Some("panic"), true, events_of(&relay, cmd, 1).await);

    let cpp = dir.join("terminate");
    build("g++", Command::new("g++").args(["-g", "-O0", "-o"]).arg(&cpp).arg(testdata("programs/terminate.cpp")));
    let cmd = run(&spool("cpp"), &dsn, &[], &[cpp.to_str().unwrap(), "runtime_error"]);
    add("c++ terminate", Some("panic"), true, events_of(&relay, cmd, 1).await);

    let asan = printing(&testdata("sanitizers/heap_use_after_free.txt"), 1);
    let cmd = run(&spool("asan"), &dsn, &[], &asan.iter().map(String::as_str).collect::<Vec<_>>());
    add("sanitizer report", Some("panic"), false, events_of(&relay, cmd, 1).await);

    // A plain non-zero exit, sent because it was asked for.
    let cmd = run(&spool("exit"), &dsn, &["--report-exit-codes"], &["sh", "-c", "echo bye; exit 3"]);
    add("exit code", Some("exit"), false, events_of(&relay, cmd, 1).await);

    // A crash loop: the first crash in full, then the summary of its repeat.
    let segv = fixture("segv_nested");
    let flags = ["--restart", "on-failure", "--restart-delay", "0", "--max-restarts", "1"];
    let cmd = run(&spool("loop"), &dsn, &flags, &[segv.to_str().unwrap()]);
    let mut looped = events_of(&relay, cmd, 2).await;
    let summary = looped.iter().position(|e| e["tags"]["kind"] == "repeats").expect("a crash-loop summary");
    add("crash-loop summary", None, false, vec![looped.remove(summary)]);
    add("crash-loop first crash", Some("signalhandler"), true, looped);

    // `crashwatch test`.
    let mut cmd = crashwatch(&spool("test"));
    cmd.args(["test", "--dsn", &dsn]);
    add("test event", None, false, events_of(&relay, cmd, 1).await);

    let sent: Vec<Value> = shapes.iter().map(|s| s.event.clone()).collect();
    let normalized = normalize(&sent);
    assert_eq!(normalized.len(), shapes.len());
    let mut problems = Vec::new();
    for (shape, normalized) in shapes.iter().zip(&normalized) {
        let name = shape.name;
        problems.extend(changed(&shape.event, normalized).into_iter().map(|p| format!("{name}: {p}")));

        // The shape is the one named, so that the check above covered it.
        let exceptions = shape.event["exception"]["values"].as_array();
        let mechanism = exceptions.and_then(|v| v.last()).map(|e| e["mechanism"]["type"].clone());
        assert_eq!(mechanism, shape.mechanism.map(Value::from), "{name}: {:#}", shape.event);
        if shape.mechanism.is_some() {
            assert_eq!(
                (shape.event["release"].as_str(), shape.event["environment"].as_str()),
                (Some(RELEASE), Some(ENVIRONMENT)),
                "{name}"
            );
        }
        if shape.native_stacks {
            assert!(named_frames(&shape.event) > 0, "{name}: no frame with function, file and line");
            assert!(shape.event["debug_meta"]["images"].as_array().is_some_and(|i| !i.is_empty()), "{name}");
        }
    }
    let with_breadcrumbs = shapes.iter().filter(|s| s.event["breadcrumbs"]["values"][0].is_object()).count();
    assert!(with_breadcrumbs >= 8, "only {with_breadcrumbs} events with breadcrumbs");
    assert!(problems.is_empty(), "what Relay's normalizer changed:\n{}", problems.join("\n"));
}
