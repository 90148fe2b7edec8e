//! Problems a program survives, reported while it runs: real programs
//! under the real binary, events at the fake Relay, each shape through
//! Relay's normalizer. Each program stays up (reading its stdin) until the
//! test has seen its event, then ends with status 0: what was sent came
//! from a living program, and its session ends `errored`.

mod common;
#[path = "sentry_common/mod.rs"]
mod sentry_common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{LIMIT, crashwatch, wait_output};
use sentry_common::WAIT;
use sentry_common::normalize::assert_normalized_as_sent;
use sentry_common::relay::FakeRelay;
use serde_json::Value;

const RELEASE: &str = "server@2.0.0";

/// crashwatch running `program` against `dsn`, stdin piped to the program.
fn start(spool: &Path, dsn: &str, flags: &[&str], program: &[&str]) -> Child {
    let mut cmd = start_env(spool, dsn, flags, program);
    // Nobody reads its stdout while it runs: a storm must not fill the pipe.
    cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Waits for `n` more events, then lets the program end (its stdin
/// closes) and returns the events, crashwatch's status and its stderr.
/// The command of [`start`], not started yet.
fn start_env(spool: &Path, dsn: &str, flags: &[&str], program: &[&str]) -> Command {
    let mut cmd = crashwatch(spool);
    cmd.args(["run", "--dsn", dsn, "--release", RELEASE, "--environment", "test"]).args(flags).arg("--");
    cmd.args(program);
    cmd
}

async fn events_while_alive(relay: &FakeRelay, mut child: Child, n: usize) -> (Vec<Value>, i32, String) {
    let before = relay.with(|s| s.accepted_events().len());
    relay.wait_until(&format!("{n} live event(s)"), WAIT, |s| s.accepted_events().len() >= before + n).await;
    // Still running: the event came from a living program.
    assert!(child.try_wait().unwrap().is_none(), "the program ended before its event was in");
    drop(child.stdin.take());
    let out = tokio::task::spawn_blocking(move || wait_output(child, LIMIT)).await.unwrap();
    let events = relay.with(|s| s.accepted_events()[before..].iter().map(|e| e.event().unwrap()).collect());
    (events, out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn build(what: &str, cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed");
}

fn live_exception(event: &Value) -> &Value {
    assert_eq!(event["level"], "error", "{event:#}");
    assert_eq!(event["tags"]["crashwatch.live"], "true", "{event:#}");
    assert_eq!(event["extra"]["crashwatch.live"], true, "{event:#}");
    let exception = event["exception"]["values"].as_array().and_then(|v| v.last()).expect("an exception");
    assert_eq!(exception["mechanism"]["handled"], false, "{event:#}");
    exception
}

fn functions(exception: &Value) -> Vec<String> {
    exception["stacktrace"]["frames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["function"].as_str().map(str::to_owned))
        .collect()
}

/// The final session update of the run: exited, with errors (errored).
async fn assert_errored_session(relay: &FakeRelay) {
    relay
        .wait_until("the run's final session update", WAIT, |s| {
            s.items_of("session").iter().any(|u| u["status"] == "exited")
        })
        .await;
    let updates = relay.with(|s| s.items_of("session"));
    let last = updates.iter().rfind(|u| u["status"] == "exited").unwrap();
    assert!(last["errors"].as_u64() >= Some(1), "not errored: {updates:#?}");
    // The running session said so at once, beside the event.
    let running = updates.iter().find(|u| u["status"] == "ok" && u["errors"] == 1 && u["sid"] == last["sid"]);
    assert!(running.is_some(), "no errored update while it ran: {updates:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_runtimes_surviving_problem_is_an_event_while_it_runs() {
    let relay = FakeRelay::start().await;
    let dsn = relay.dsn();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let mut all = Vec::new();

    // Rust: a worker thread panics, the server goes on.
    let src = dir.join("worker.rs");
    std::fs::write(
        &src,
        r#"use std::io::Read;
fn handle(request: &str) -> u32 { request.parse().expect("request id") }
fn main() {
    println!("serving");
    let worker = std::thread::Builder::new().name("worker-1".into()).spawn(|| handle("x")).unwrap();
    let _ = worker.join();
    println!("still serving");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
"#,
    )
    .unwrap();
    let exe = dir.join("worker");
    build("rustc", Command::new("rustc").args(["-g", "-o"]).arg(&exe).arg(&src));
    let child = start(&dir.join("rust"), &dsn, &["--rust-backtrace"], &[exe.to_str().unwrap()]);
    let (events, code, err) = events_while_alive(&relay, child, 1).await;
    assert_eq!(code, 0, "{err}");
    let exception = live_exception(&events[0]);
    assert!(exception["value"].as_str().unwrap().contains("request id"), "{exception:#}");
    assert!(functions(exception).iter().any(|f| f.contains("handle")), "{exception:#}");
    assert_eq!(events[0]["tags"]["thread"], "worker-1");
    assert!(
        events[0]["breadcrumbs"]["values"].as_array().unwrap().iter().any(|b| b["message"] == "serving"),
        "{:#}",
        events[0]
    );
    assert_errored_session(&relay).await;
    all.extend(events);

    // Python: an exception ends a thread, not the program.
    let script = "import sys, threading\n\
                  def work():\n    {}['port']\n\
                  t = threading.Thread(target=work, name='poller'); t.start(); t.join()\n\
                  print('still up', flush=True)\nsys.stdin.read()\n";
    let child = start(&dir.join("python"), &dsn, &[], &["python3", "-c", script]);
    let (events, code, err) = events_while_alive(&relay, child, 1).await;
    assert_eq!(code, 0, "{err}");
    let exception = live_exception(&events[0]);
    assert_eq!(exception["type"], "KeyError");
    assert_eq!(functions(exception).last().map(String::as_str), Some("work"));
    assert!(events[0]["tags"]["thread"].as_str().unwrap().starts_with("poller"));
    all.extend(events);

    // Java: an uncaught exception on a pool thread.
    let java = dir.join("Pool.java");
    std::fs::write(
        &java,
        "public class Pool {\n\
           static int parse(String s) { return Integer.parseInt(s); }\n\
           public static void main(String[] a) throws Exception {\n\
             Thread t = new Thread(() -> parse(\"x\"), \"pool-1\"); t.start(); t.join();\n\
             System.out.println(\"still up\");\n\
             System.in.read();\n\
           }\n\
         }\n",
    )
    .unwrap();
    build("javac", Command::new("javac").arg("-d").arg(dir).arg(&java));
    let child = start(&dir.join("java"), &dsn, &[], &["java", "-cp", dir.to_str().unwrap(), "Pool"]);
    let (events, code, err) = events_while_alive(&relay, child, 1).await;
    assert_eq!(code, 0, "{err}");
    let exception = live_exception(&events[0]);
    assert_eq!(exception["type"], "java.lang.NumberFormatException");
    assert!(functions(exception).iter().any(|f| f == "parse"), "{exception:#}");
    all.extend(events);

    // Go: net/http recovers a handler's panic and logs it.
    let go = dir.join("server.go");
    std::fs::write(
        &go,
        r#"package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
)

func handler(w http.ResponseWriter, r *http.Request) {
	var ids []int
	fmt.Fprint(w, ids[len(r.URL.Path)])
}

func main() {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go http.Serve(l, http.HandlerFunc(handler))
	http.Get("http://" + l.Addr().String() + "/x")
	fmt.Println("still serving")
	io.ReadAll(os.Stdin)
}
"#,
    )
    .unwrap();
    let go_exe = dir.join("goserver");
    build(
        "go build",
        Command::new("go")
            .args(["build", "-o"])
            .arg(&go_exe)
            .arg(&go)
            .env("GOCACHE", dir.join("gocache"))
            .env("GO111MODULE", "off"),
    );
    let child = start(&dir.join("go"), &dsn, &[], &[go_exe.to_str().unwrap()]);
    let (events, code, err) = events_while_alive(&relay, child, 1).await;
    assert_eq!(code, 0, "{err}");
    let exception = live_exception(&events[0]);
    assert!(exception["value"].as_str().unwrap().contains("index out of range"), "{exception:#}");
    assert!(functions(exception).iter().any(|f| f == "handler"), "{exception:#}");
    all.extend(events);

    // Node: a promise rejection nobody handles, with --unhandled-rejections=warn.
    let script = "async function fetchUser() { throw new Error('lookup failed'); }\n\
                  fetchUser();\n\
                  process.stdin.resume();\n";
    let child = start(&dir.join("node"), &dsn, &[], &["node", "--unhandled-rejections=warn", "-e", script]);
    let (events, code, err) = events_while_alive(&relay, child, 1).await;
    assert_eq!(code, 0, "{err}");
    let exception = live_exception(&events[0]);
    assert_eq!((exception["type"].as_str(), exception["value"].as_str()), (Some("Error"), Some("lookup failed")));
    assert_eq!(functions(exception).last().map(String::as_str), Some("fetchUser"));
    all.extend(events);

    // UBSan reports and goes on (its default).
    let c = dir.join("overflow.c");
    std::fs::write(
        &c,
        "#include <limits.h>\n#include <stdio.h>\n\
         int add_credit(int a, int b) { return a + b; }\n\
         int main(int argc, char **argv) {\n\
           volatile int x = INT_MAX; printf(\"%d\\n\", add_credit(x, argc)); fflush(stdout);\n\
           getchar(); return 0;\n\
         }\n",
    )
    .unwrap();
    let ubsan = dir.join("overflow");
    build("gcc", Command::new("gcc").args(["-g", "-fsanitize=undefined", "-o"]).arg(&ubsan).arg(&c));
    let mut cmd = start_env(&dir.join("ubsan"), &dsn, &[], &[ubsan.to_str().unwrap()]);
    cmd.env("UBSAN_OPTIONS", "print_stacktrace=1");
    let child = cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let (events, code, err) = events_while_alive(&relay, child, 1).await;
    assert_eq!(code, 0, "{err}");
    let exception = live_exception(&events[0]);
    assert!(exception["value"].as_str().unwrap().contains("signed integer overflow"), "{exception:#}");
    assert!(functions(exception).iter().any(|f| f == "add_credit"), "{exception:#}");
    all.extend(events);

    // Every shape passes Relay's normalizer as sent.
    assert_normalized_as_sent(&all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_lines_are_one_event_per_signature_and_counts() {
    let relay = FakeRelay::start().await;
    let dsn = relay.dsn();
    let work = tempfile::tempdir().unwrap();
    let script = r#"import sys
for i in range(3):
    print('{"level":"error","msg":"user %d not found","logger":"auth"}' % i)
    print('level=info msg="request %d"' % i)
for i in range(2):
    print('ts=%d level=error msg="payment %d declined"' % (i, i))
print('{"level":"warning","msg":"slow"}', flush=True)
sys.stdin.read()
"#;
    let child = start(work.path(), &dsn, &["--events-from-logs", "error"], &["python3", "-c", script]);
    let (mut events, code, err) = events_while_alive(&relay, child, 2).await;
    assert_eq!(code, 0, "{err}");
    // At the run's end, the repeats go out as counts.
    let before = relay.with(|s| s.accepted_events().len()) - events.len();
    relay.wait_until("the two counts", WAIT, |s| s.accepted_events().len() >= before + 4).await;
    let all: Vec<Value> = relay.with(|s| s.accepted_events()[before..].iter().map(|e| e.event().unwrap()).collect());
    events = all.iter().filter(|e| e["tags"]["crashwatch.live"] == "true").cloned().collect();
    let mut messages: Vec<&str> = events.iter().map(|e| e["logentry"]["formatted"].as_str().unwrap()).collect();
    messages.sort();
    assert_eq!(messages, ["payment 0 declined", "user 0 not found"], "{all:#?}");
    let mut counts: Vec<u64> = all
        .iter()
        .filter(|e| e["tags"]["kind"] == "repeats")
        .map(|e| e["extra"]["repeats"].as_u64().unwrap())
        .collect();
    counts.sort();
    assert_eq!(counts, [1, 2], "{all:#?}");
    let auth = events.iter().find(|e| e["logger"] == "auth").unwrap();
    assert_eq!(auth["level"], "error");
    assert_eq!(auth["fingerprint"][0], "crashwatch-log");
    assert_errored_session(&relay).await;

    assert_normalized_as_sent(&all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_100000_error_lines_is_one_event_and_one_count() {
    let relay = FakeRelay::start().await;
    let dsn = relay.dsn();
    let work = tempfile::tempdir().unwrap();
    let script = "import sys\n\
                  sys.stdout.write(''.join('ERROR: connection %d refused by 10.0.0.%d\\n' % (i, i % 250) for i in range(100000)))\n\
                  sys.stdout.flush()\nsys.stdin.read()\n";
    let child = start(work.path(), &dsn, &["--events-from-logs", "error"], &["python3", "-c", script]);
    let (_, code, err) = events_while_alive(&relay, child, 1).await;
    assert_eq!(code, 0, "{err}");
    relay.wait_until("the storm's count", WAIT, |s| s.accepted_events().len() >= 2).await;
    let all: Vec<Value> = relay.with(|s| s.accepted_events().iter().map(|e| e.event().unwrap()).collect());
    assert_eq!(all.len(), 2, "{all:#?}");
    let count = all.iter().find(|e| e["tags"]["kind"] == "repeats").expect("a count");
    assert_eq!(count["extra"]["repeats"], 99_999);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_live_problems_sends_no_event_for_a_thread_exception() {
    let relay = FakeRelay::start().await;
    let work = tempfile::tempdir().unwrap();
    // The thread's exception, then (well after a story's settling time)
    // an error line: its event is the sign the exception was looked at.
    let script = "import sys, threading, time\n\
                  def work():\n    raise ValueError('bad')\n\
                  t = threading.Thread(target=work); t.start(); t.join()\n\
                  time.sleep(1.5)\n\
                  print('ERROR: marker', flush=True)\nsys.stdin.read()\n";
    let flags = ["--no-live-problems", "--events-from-logs", "error"];
    let child = start(work.path(), &relay.dsn(), &flags, &["python3", "-c", script]);
    let (_, code, err) = events_while_alive(&relay, child, 1).await;
    assert_eq!(code, 0, "{err}");
    // crashwatch has ended: everything it would send was sent.
    let events: Vec<Value> = relay.with(|s| s.accepted_events().iter().map(|e| e.event().unwrap()).collect());
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["logentry"]["formatted"], "marker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_exception_just_before_a_clean_exit_is_still_an_event() {
    // The program ends with status 0 at once after its thread's exception,
    // well inside the time a story waits for its frames: no report is made
    // of a clean exit, so the story is a problem the program survived.
    let relay = FakeRelay::start().await;
    let work = tempfile::tempdir().unwrap();
    let script = "import threading\n\
                  def work():\n    raise ValueError('late')\n\
                  t = threading.Thread(target=work, name='closer'); t.start(); t.join()\n";
    let child = start(work.path(), &relay.dsn(), &[], &["python3", "-c", script]);
    let out = tokio::task::spawn_blocking(move || wait_output(child, LIMIT)).await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    relay.wait_until("the live event", WAIT, |s| !s.accepted_events().is_empty()).await;
    let events: Vec<Value> = relay.with(|s| s.accepted_events().iter().map(|e| e.event().unwrap()).collect());
    assert_eq!(events.len(), 1, "{events:#?}");
    let exception = live_exception(&events[0]);
    assert_eq!(exception["type"], "ValueError");
    assert_errored_session(&relay).await;
}
