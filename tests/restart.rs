//! `--restart`, crash-loop grouping, the hourly budget and `--metrics-addr`
//! on the real binary. The backoff's timing is tested on a fake clock in
//! `src/restart.rs`; here every delay is 0 or so long that only a stop
//! signal can end it.

#[path = "common/mod.rs"]
mod bin;
#[path = "sentry_common/mod.rs"]
mod sentry_common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use bin::{LIMIT, Lines, crashwatch, fixture, reports, run_with_timeout, send_signal, wait_output};
use nix::sys::signal::Signal;
use sentry_common::WAIT;
use sentry_common::relay::FakeRelay;
use serde_json::Value;

/// A shell program that appends a line to `count` each run, then runs `then`.
fn counting(count: &Path, then: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), format!("echo run >> '{}'; {then}", count.display())]
}

fn runs(count: &Path) -> usize {
    std::fs::read_to_string(count).map(|s| s.lines().count()).unwrap_or(0)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn blocking(cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || run_with_timeout(cmd, LIMIT)).await.unwrap()
}

#[test]
fn without_restart_the_child_runs_once() {
    let spool = tempfile::tempdir().unwrap();
    let count = spool.path().join("count");
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--"]).args(counting(&count, "exit 3"));
    let out = run_with_timeout(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(runs(&count), 1);
}

#[test]
fn on_failure_restarts_until_max_restarts_then_exits_with_the_last_status() {
    let spool = tempfile::tempdir().unwrap();
    let count = spool.path().join("count");
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--restart", "on-failure", "--restart-delay", "0", "--max-restarts", "3", "--"]);
    cmd.args(counting(&count, "exit 3"));
    let out = run_with_timeout(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(runs(&count), 4, "the first run and 3 restarts");
    let err = stderr(&out);
    assert_eq!(err.matches("restarting the program in 0s (restart ").count(), 3, "{err}");
    assert!(err.contains("giving up after 3 restarts"), "{err}");
    // Every run's end is kept.
    assert_eq!(reports(spool.path()).len(), 4);
}

#[test]
fn on_failure_stops_at_a_clean_exit_and_always_does_not() {
    let spool = tempfile::tempdir().unwrap();
    let count = spool.path().join("count");
    // Fails twice, then exits 0.
    let script = format!("[ $(wc -l < '{}') -ge 3 ] && exit 0; exit 1", count.display());
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--restart", "on-failure", "--restart-delay", "0", "--"]).args(counting(&count, &script));
    let out = run_with_timeout(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(runs(&count), 3);

    let count = spool.path().join("count-always");
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--restart", "always", "--restart-delay", "0", "--max-restarts", "2", "--"]);
    cmd.args(counting(&count, "exit 0"));
    let out = run_with_timeout(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(runs(&count), 3);
}

#[test]
fn a_stop_signal_during_the_restart_delay_ends_the_loop_with_the_last_status() {
    let spool = tempfile::tempdir().unwrap();
    let count = spool.path().join("count");
    let mut cmd = crashwatch(spool.path());
    // Only the stop can end a delay of an hour within the test's limit.
    cmd.args(["run", "--restart", "on-failure", "--restart-delay", "1h", "--restart-max-delay", "2h", "--"]);
    cmd.args(counting(&count, "exit 7"));
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut err = Lines::new(child.stderr.take().unwrap());
    err.wait_for("restarting the program in 1h", LIMIT);
    send_signal(&child, Signal::SIGTERM);
    let out = wait_output(child, LIMIT);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(runs(&count), 1);
    let rest = err.rest().join("\n");
    assert!(rest.contains("stop requested while waiting to restart"), "{rest}");
}

#[test]
fn an_orderly_stop_is_never_restarted() {
    let spool = tempfile::tempdir().unwrap();
    let count = spool.path().join("count");
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--restart", "always", "--restart-delay", "0", "--"]);
    cmd.args(counting(&count, "trap 'exit 143' TERM; echo ready; while :; do sleep 0.1; done"));
    let (child, _lines) = bin::start_ready(&mut cmd);
    send_signal(&child, Signal::SIGTERM);
    let out = wait_output(child, LIMIT);
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert_eq!(runs(&count), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_identical_crashes_send_one_report_and_a_summary_of_99() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--dsn", &relay.dsn(), "--restart", "on-failure", "--restart-delay", "0"]);
    cmd.args(["--max-restarts", "99", "--"]).arg(fixture("segv_nested"));
    let out = blocking(cmd).await;
    assert_eq!(out.status.code(), Some(139), "{}", stderr(&out));
    let kept = reports(spool.path());
    assert_eq!(kept.len(), 100, "every crash is kept on the host");
    // The first report (the oldest) is the one sent in full.
    let first = kept.iter().min_by_key(|r| r["started_at"].as_str().unwrap().to_owned()).unwrap();
    let first_id = first["id"].as_str().unwrap();
    relay.wait_until("two events", WAIT, |s| s.accepted_events().len() >= 2).await;
    relay.with(|s| {
        assert!(s.invalid().is_empty(), "{:?}", s.invalid());
        let events: Vec<Value> = s.accepted_events().iter().map(|e| e.event().unwrap()).collect();
        assert_eq!(events.len(), 2, "{events:#?}");
        let full: Vec<&Value> = events.iter().filter(|e| e["level"] == "fatal").collect();
        assert_eq!(full.len(), 1);
        assert_eq!(full[0]["event_id"], first_id);
        let summary = events.iter().find(|e| e["tags"]["kind"] == "repeats").expect("a summary event");
        assert_eq!(summary["extra"]["repeats"], 99);
        assert_eq!(summary["extra"]["first_report"], first_id);
        let message = summary["logentry"]["formatted"].as_str().unwrap();
        assert!(message.contains("99 more times") && message.contains("SIGSEGV"), "{message}");
        // The signature names the crashing function, not an address.
        assert!(
            summary["extra"]["signature"].as_str().unwrap().ends_with("|signal SIGSEGV|level3|level2|level1"),
            "{summary:#}"
        );
    });
    let err = stderr(&out);
    assert!(err.contains("not sent: repeat 99 of report"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hourly_budget_is_shared_by_the_crashwatches_of_a_spool() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    // Three different crashes, each under its own crashwatch (as systemd
    // would start them); a budget of two.
    for signal in ["SEGV", "BUS", "ABRT"] {
        let mut cmd = crashwatch(spool.path());
        cmd.args(["run", "--dsn", &relay.dsn(), "--max-reports-per-hour", "2", "--"]);
        cmd.args(["sh", "-c", &format!("kill -{signal} $$")]);
        let out = blocking(cmd).await;
        assert!(out.status.signal_or_code() > 128, "{}", stderr(&out));
        if signal == "ABRT" {
            assert!(stderr(&out).contains("not sent: over the budget of 2 reports per hour"), "{}", stderr(&out));
        }
    }
    assert_eq!(reports(spool.path()).len(), 3);
    relay.with(|s| {
        let types: Vec<Value> =
            s.accepted_events().iter().map(|e| e.event().unwrap()["exception"]["values"][0]["type"].clone()).collect();
        assert_eq!(types, ["SIGSEGV", "SIGBUS"]);
    });
}

trait SignalOrCode {
    fn signal_or_code(&self) -> i32;
}

impl SignalOrCode for std::process::ExitStatus {
    fn signal_or_code(&self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        self.code().or(self.signal().map(|s| 128 + s)).unwrap_or(-1)
    }
}

/// `GET path` over plain HTTP/1.0; the status line and the body.
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_crashes_restarts_and_reports() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    let count = spool.path().join("count");
    // Crashes twice the same way, then serves.
    let script = format!("[ $(wc -l < '{}') -le 2 ] && kill -SEGV $$; echo ready; exec sleep 1000", count.display());
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--dsn", &relay.dsn(), "--metrics-addr", "127.0.0.1:0"]);
    cmd.args(["--restart", "on-failure", "--restart-delay", "0", "--"]).args(counting(&count, &script));
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut err = Lines::new(child.stderr.take().unwrap());
    let mut out = Lines::new(child.stdout.take().unwrap());
    let line = err.wait_for("metrics at http://", LIMIT);
    let addr = line.split("http://").nth(1).unwrap().trim_end_matches("/metrics").trim().to_owned();
    out.wait_for("ready", LIMIT);
    relay.wait_until("the first crash", WAIT, |s| !s.accepted_events().is_empty()).await;
    // The counters move as reports are sent beside the child: scrape until
    // the send is counted.
    let deadline = std::time::Instant::now() + LIMIT;
    let text = loop {
        let (status, body) = tokio::task::spawn_blocking({
            let addr = addr.clone();
            move || http_get(&addr, "/metrics")
        })
        .await
        .unwrap();
        assert!(status.contains("200"), "{status}");
        if metric(&body, "crashwatch_reports_sent_total") == Some(1.0) || std::time::Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(metric(&text, "crashwatch_child_up"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "crashwatch_child_starts_total"), Some(3.0), "{text}");
    assert_eq!(metric(&text, "crashwatch_restarts_total"), Some(2.0), "{text}");
    assert_eq!(metric(&text, "crashwatch_crashes_total{kind=\"signal\"}"), Some(2.0), "{text}");
    assert_eq!(metric(&text, "crashwatch_crashes_total{kind=\"oom\"}"), Some(0.0), "{text}");
    assert_eq!(metric(&text, "crashwatch_reports_sent_total"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "crashwatch_reports_suppressed_total{reason=\"repeat\"}"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "crashwatch_reports_pending"), Some(0.0), "{text}");
    let last = metric(&text, "crashwatch_last_crash_timestamp_seconds").unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(last > 0.0 && last <= now, "{last}");
    let (status, _) = tokio::task::spawn_blocking(move || http_get(&addr, "/nothing")).await.unwrap();
    assert!(status.contains("404"), "{status}");
    send_signal(&child, Signal::SIGTERM);
    let out = wait_output(child, LIMIT);
    assert_eq!(out.status.code(), Some(143));
}

#[test]
fn a_config_file_sits_beneath_the_environment_and_the_command_line() {
    let spool = tempfile::tempdir().unwrap();
    let file = spool.path().join("crashwatch.toml");
    std::fs::write(&file, "restart = \"on-failure\"\nrestart-delay = \"0\"\nmax-restarts = 2\n").unwrap();
    let attempt = |name: &str, env: Option<&str>, flag: Option<&str>| {
        let count = spool.path().join(name);
        let mut cmd = crashwatch(spool.path());
        // The file named by its variable, as a systemd unit would.
        cmd.env("CRASHWATCH_CONFIG", &file).arg("run");
        if let Some(n) = env {
            cmd.env("CRASHWATCH_MAX_RESTARTS", n);
        }
        if let Some(n) = flag {
            cmd.args(["--max-restarts", n]);
        }
        cmd.arg("--").args(counting(&count, "exit 4"));
        let out = run_with_timeout(cmd, LIMIT);
        assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
        runs(&count)
    };
    assert_eq!(attempt("file", None, None), 3, "the file's max-restarts");
    assert_eq!(attempt("env", Some("1"), None), 2, "the environment over the file");
    assert_eq!(attempt("flag", Some("1"), Some("0")), 1, "the command line over both");

    std::fs::write(&file, "max-restart = 2\n").unwrap();
    let mut cmd = crashwatch(spool.path());
    cmd.args(["--config"]).arg(&file).args(["run", "--", "true"]);
    let out = run_with_timeout(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("`max-restart` is not a setting") && err.contains("crashwatch.toml"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashwatch_send_sends_the_count_of_a_window_that_has_ended() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    // Two crashwatches, one crash each, as systemd would run them.
    for _ in 0..2 {
        let mut cmd = crashwatch(spool.path());
        cmd.args(["run", "--dsn", &relay.dsn(), "--"]).arg(fixture("segv_nested"));
        assert_eq!(blocking(cmd).await.status.code(), Some(139));
    }
    assert_eq!(relay.with(|s| s.accepted_events().len()), 1);
    // End the window as an hour passing would: the groups keep the window
    // they were opened with.
    let state_path = spool.path().join("throttle.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    for group in state["groups"].as_object_mut().unwrap().values_mut() {
        assert_eq!(group["repeats"], 1);
        group["window_ms"] = 1.into();
    }
    std::fs::write(&state_path, serde_json::to_vec(&state).unwrap()).unwrap();
    let mut cmd = crashwatch(spool.path());
    cmd.args(["send", "--dsn", &relay.dsn()]);
    let out = blocking(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    relay.with(|s| {
        let events: Vec<Value> = s.accepted_events().iter().map(|e| e.event().unwrap()).collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1]["extra"]["repeats"], 1);
        assert_eq!(events[1]["extra"]["first_report"], events[0]["event_id"]);
    });
}

#[test]
fn a_crash_after_a_reload_signal_is_still_restarted() {
    // SIGHUP is a reload for many servers: one that survives it and crashes
    // later must be restarted like any crash.
    let spool = tempfile::tempdir().unwrap();
    let count = spool.path().join("count");
    let script = format!(
        "[ $(wc -l < '{}') -ge 2 ] && exit 0; trap 'echo reloaded; kill -SEGV $$' HUP; echo ready; \
         while :; do sleep 0.1; done",
        count.display()
    );
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--restart", "on-failure", "--restart-delay", "0", "--"]).args(counting(&count, &script));
    let (child, mut lines) = bin::start_ready(&mut cmd);
    send_signal(&child, Signal::SIGHUP);
    lines.wait_for("reloaded", LIMIT);
    let out = wait_output(child, LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(runs(&count), 2);
}
