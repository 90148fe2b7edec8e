//! Delivery that never delays a restart: `crashwatch run --delivery spool`
//! files the report and exits without sending, and `crashwatch send
//! --watch` delivers it; SIGTERM ends the watcher with 0, and whatever it
//! was sending stays in the outbox.

#[path = "common/mod.rs"]
mod bin;
#[path = "sentry_common/mod.rs"]
mod sentry_common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use bin::{LIMIT, Lines, crashwatch, fixture, only_report, run_with_timeout, wait_output};
use sentry_common::WAIT;
use sentry_common::relay::{FakeRelay, Outcome, Reply};

async fn blocking(cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || run_with_timeout(cmd, LIMIT)).await.unwrap()
}

fn crash_spool_only(spool: &Path, dsn: &str) -> Command {
    let mut cmd = crashwatch(spool);
    // Every crash is sent: the same crash again is not a repeat to count.
    cmd.args(["run", "--delivery", "spool", "--group-window", "0", "--dsn", dsn, "--"]).arg(fixture("segv_nested"));
    cmd
}

fn pending_envelopes(spool: &Path) -> usize {
    std::fs::read_dir(spool.join("outbox/pending"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".envelope"))
        .count()
}

/// Starts `send --watch` and waits until it says it is watching.
fn start_watcher(spool: &Path, dsn: &str) -> (Child, Lines) {
    let mut child = crashwatch(spool)
        .args(["send", "--watch", "--dsn", dsn])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Lines::new(child.stderr.take().unwrap());
    lines.wait_for("as they come", LIMIT);
    (child, lines)
}

fn sigterm(child: &Child) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_delivery_sends_nothing_itself_and_the_watcher_delivers() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();

    // Without a watcher: filed, queued, not sent.
    let out = blocking(crash_spool_only(spool.path(), &relay.dsn())).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + 11), "{stderr}");
    let first = only_report(spool.path())["id"].as_str().unwrap().to_owned();
    assert!(
        stderr.contains(&format!(
            "queued in {} for `crashwatch send --watch` (--delivery spool)",
            spool.path().join("outbox").display()
        )),
        "{stderr}"
    );
    assert_eq!(relay.with(|s| s.requests.len()), 0);
    assert_eq!(pending_envelopes(spool.path()), 1);

    // The watcher sends what is waiting, then each new report as it comes.
    let (path, dsn) = (spool.path().to_path_buf(), relay.dsn());
    let (watcher, mut lines) = tokio::task::spawn_blocking(move || start_watcher(&path, &dsn)).await.unwrap();
    relay.wait_until("the waiting report", WAIT, |s| s.accepted_events().len() == 1).await;
    let out = blocking(crash_spool_only(spool.path(), &relay.dsn())).await;
    assert_eq!(out.status.code(), Some(128 + 11));
    relay.wait_until("the new report", WAIT, |s| s.accepted_events().len() == 2).await;
    // Relay's answer reached the watcher, which took the entry out (a stop
    // before that would leave it pending, to be sent again: at least once).
    let newest = bin::reports(spool.path())[0]["id"].as_str().unwrap().to_owned();
    let lines = tokio::task::spawn_blocking(move || {
        lines.wait_for(&format!("event_id=\"{newest}\""), LIMIT);
        lines
    })
    .await
    .unwrap();

    sigterm(&watcher);
    let out = tokio::task::spawn_blocking(move || wait_output(watcher, LIMIT)).await.unwrap();
    let said = lines.rest().join("\n");
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("stopped; 0 reports waiting in "), "{said}");
    let reports = bin::reports(spool.path());
    let mut ids: Vec<&str> = reports.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort();
    relay.with(|s| {
        assert!(s.invalid().is_empty(), "{:?}", s.invalid());
        let mut sent: Vec<&str> = s.accepted_events().iter().map(|e| e.event_id().unwrap()).collect();
        sent.sort();
        assert_eq!(sent, ids);
        assert!(sent.contains(&first.as_str()));
    });
    assert_eq!(pending_envelopes(spool.path()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_upload_ends_the_watcher_with_0_and_loses_nothing() {
    let relay = FakeRelay::start().await;
    relay.script([Reply::Hold]);
    let spool = tempfile::tempdir().unwrap();
    let (path, dsn) = (spool.path().to_path_buf(), relay.dsn());
    let (watcher, lines) = tokio::task::spawn_blocking(move || start_watcher(&path, &dsn)).await.unwrap();
    let out = blocking(crash_spool_only(spool.path(), &relay.dsn())).await;
    assert_eq!(out.status.code(), Some(128 + 11));
    let id = only_report(spool.path())["id"].as_str().unwrap().to_owned();
    relay
        .wait_until("the watcher's upload to be in flight", WAIT, |s| {
            s.requests.iter().any(|r| r.outcome == Outcome::Holding)
        })
        .await;

    // Relay holds its answer; the watcher is told to stop.
    sigterm(&watcher);
    let out = tokio::task::spawn_blocking(move || wait_output(watcher, LIMIT)).await.unwrap();
    let said = lines.rest().join("\n");
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("stopped; 1 report waiting in "), "{said}");
    relay.wait_until("the cut upload to be abandoned", WAIT, |s| s.requests[0].outcome == Outcome::Abandoned).await;
    assert_eq!(pending_envelopes(spool.path()), 1);

    // Nothing lost: the next send delivers it, once.
    let mut send = crashwatch(spool.path());
    send.args(["send", "--dsn", &relay.dsn()]);
    let out = blocking(send).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    relay.with(|s| {
        let outcomes: Vec<_> = s.requests.iter().map(|r| r.outcome.clone()).collect();
        assert_eq!(outcomes, [Outcome::Abandoned, Outcome::Accepted]);
        assert_eq!(s.accepted_events()[0].event_id(), Some(id.as_str()));
    });
}

#[test]
fn a_flush_timeout_of_0_is_spool_delivery() {
    // Nothing listens at the DSN: a direct send would say it failed.
    let spool = tempfile::tempdir().unwrap();
    let dsn = sentry_common::relay::dsn_for(sentry_common::relay::unused_port());
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--flush-timeout", "0", "--dsn", &dsn, "--"]).arg(fixture("segv_nested"));
    let out = run_with_timeout(cmd, LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + 11), "{stderr}");
    assert!(stderr.contains("for `crashwatch send --watch` (--delivery spool)"), "{stderr}");
    assert!(!stderr.contains("waiting") && !stderr.contains("failed to connect"), "{stderr}");
    assert_eq!(pending_envelopes(spool.path()), 1);
}
