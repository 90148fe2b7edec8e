//! `--forward-logs`: the child's lines as Sentry structured logs at the
//! fake Relay (which checks the `log` item as Relay does): batched by 100,
//! below the level left out, scrubbed, and under a `log_item` rate limit
//! dropped on the host and counted in a client report.

mod common;
#[path = "sentry_common/mod.rs"]
mod sentry_common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{LIMIT, crashwatch, run_with_timeout};
use sentry_common::WAIT;
use sentry_common::relay::FakeRelay;
use serde_json::Value;

fn run(spool: &Path, dsn: &str, script: &str) -> Command {
    let mut cmd = crashwatch(spool);
    cmd.args(["run", "--dsn", dsn, "--release", "api@3", "--environment", "prod", "--no-live-problems"]);
    cmd.args(["--forward-logs", "info", "--", "python3", "-c", script]);
    cmd.stdin(Stdio::null());
    cmd
}

/// The logs of every accepted `log` item, and the item counts.
fn logs(relay: &FakeRelay) -> (Vec<Value>, Vec<usize>) {
    relay.with(|s| {
        let containers = s.items_of("log");
        let sizes = containers.iter().map(|c| c["items"].as_array().unwrap().len()).collect();
        (containers.iter().flat_map(|c| c["items"].as_array().unwrap().clone()).collect(), sizes)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_at_or_above_the_level_arrive_batched_and_scrubbed() {
    let relay = FakeRelay::start().await;
    let work = tempfile::tempdir().unwrap();
    let script = "import sys\n\
                  for i in range(250):\n    print('level=info msg=\"request %d\"' % i)\n\
                  print('{\"level\":\"debug\",\"msg\":\"noise\"}')\n\
                  print('ERROR: login failed password=hunter2', file=sys.stderr)\n";
    let cmd = run(work.path(), &relay.dsn(), script);
    let out = tokio::task::spawn_blocking(move || run_with_timeout(cmd, LIMIT)).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    relay
        .wait_until("251 logs", WAIT, |s| {
            s.items_of("log").iter().map(|c| c["items"].as_array().unwrap().len()).sum::<usize>() >= 251
        })
        .await;
    let (logs, sizes) = logs(&relay);
    assert_eq!(logs.len(), 251, "{sizes:?}");
    assert!(sizes.iter().all(|n| *n <= 100) && sizes.len() >= 3, "{sizes:?}");
    assert!(relay.with(|s| s.invalid().is_empty()));
    assert!(logs.iter().all(|l| l["body"] != "{\"level\":\"debug\",\"msg\":\"noise\"}"));
    let error = logs.iter().find(|l| l["level"] == "error").expect("the error line");
    assert_eq!(error["body"], "ERROR: login failed password=[Filtered]");
    assert_eq!(error["attributes"]["crashwatch.stream"]["value"], "stderr");
    assert_eq!(error["attributes"]["sentry.release"]["value"], "api@3");
    assert_eq!(error["attributes"]["sentry.environment"]["value"], "prod");
    assert!(error["attributes"]["server.address"]["value"].is_string());
    // Python's stdout to a pipe is flushed at exit, its stderr at once: the
    // two streams interleave as they will, but each keeps its order.
    let stdout: Vec<&str> = logs
        .iter()
        .filter(|l| l["attributes"]["crashwatch.stream"]["value"] == "stdout")
        .map(|l| l["body"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..250).map(|i| format!("level=info msg=\"request {i}\"")).collect();
    assert_eq!(stdout, expected);
    let first = &logs[0];
    assert!(logs.iter().filter(|l| l["body"] != error["body"]).all(|l| l["level"] == "info"));
    // One trace for the run.
    assert!(logs.iter().all(|l| l["trace_id"] == first["trace_id"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_item_rate_limit_drops_on_the_host_and_is_counted() {
    let relay = FakeRelay::start().await;
    relay.exhaust_quota("log_item", 60);
    let work = tempfile::tempdir().unwrap();
    let script = "import sys, time\n\
                  for i in range(100):\n    print('level=info msg=\"a %d\"' % i)\n\
                  sys.stdout.flush(); time.sleep(1.5)\n\
                  for i in range(100):\n    print('level=info msg=\"b %d\"' % i)\n";
    let cmd = run(work.path(), &relay.dsn(), script);
    let out = tokio::task::spawn_blocking(move || run_with_timeout(cmd, LIMIT)).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    relay
        .wait_until("a client report of dropped logs", WAIT, |s| {
            s.items_of("client_report").iter().any(|r| {
                r["discarded_events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|d| d["reason"] == "ratelimit_backoff" && d["category"] == "log_item" && d["quantity"] == 100)
            })
        })
        .await;
    // Relay removed the first batch itself; nothing got through.
    assert!(logs(&relay).0.is_empty());
    assert_eq!(relay.with(|s| s.rate_limited.iter().filter(|(c, _)| c == "log_item").count()), 1);
}
