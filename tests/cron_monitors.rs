//! Cron monitors from the real binary: `crashwatch run --monitor SLUG`
//! checks a job in at its start and at its end, at a fake Relay that checks
//! check-ins as Relay does; the job runs, gets its signals and keeps its
//! exit code whatever Relay does.

#[path = "common/mod.rs"]
mod bin;
#[path = "health_common/mod.rs"]
mod health;
#[path = "sentry_common/mod.rs"]
mod sentry_common;

use std::time::SystemTime;

use bin::{LIMIT, crashwatch, run_with_timeout};
use health::{Driven, all_valid, run_cmd, sh, through_the_wheel};
use sentry_common::WAIT;
use sentry_common::relay::{FakeRelay, dsn_for, unused_port};
use serde_json::{Value, json};

const SCHEDULE: [&str; 10] = [
    "--monitor",
    "nightly-backup",
    "--monitor-schedule",
    "30 3 * * *",
    "--monitor-checkin-margin",
    "5",
    "--monitor-max-runtime",
    "1h",
    "--monitor-timezone",
    "Europe/Vienna",
];

fn check_ins(relay: &FakeRelay) -> Vec<Value> {
    relay.with(|s| s.items_of("check_in"))
}

/// Runs `script` as a monitored job that reads a line first; sends the line
/// once the `in_progress` check-in is in. The check-ins, the span of the
/// run and crashwatch's exit code.
async fn job(relay: &FakeRelay, script: &str) -> (Vec<Value>, (SystemTime, SystemTime), Option<i32>) {
    let spool = tempfile::tempdir().unwrap();
    let mut run = Driven::start(run_cmd(spool.path(), &relay.dsn(), &SCHEDULE, &sh(script)));
    relay.wait_until("the in_progress check-in", WAIT, |s| !s.items_of("check_in").is_empty()).await;
    run.say("go");
    let (out, before, after) = run.finish().await;
    (check_ins(relay), (before, after), out.status.code())
}

/// The two check-ins of one run: in_progress, then `status` with a
/// duration within the run, the same id, slug, schedule and trace.
fn one_job(check_ins: &[Value], status: &str, span: (SystemTime, SystemTime)) {
    assert_eq!(check_ins.len(), 2, "{check_ins:#?}");
    let (start, end) = (&check_ins[0], &check_ins[1]);
    assert_eq!(start["status"], "in_progress");
    assert!(start.get("duration").is_none());
    assert_eq!(end["status"], status);
    let config = json!({
        "schedule": {"type": "crontab", "value": "30 3 * * *"},
        "checkin_margin": 5, "max_runtime": 60, "timezone": "Europe/Vienna"
    });
    for check_in in check_ins {
        assert_eq!(check_in["check_in_id"], start["check_in_id"]);
        assert_eq!(check_in["monitor_slug"], "nightly-backup");
        assert_eq!(check_in["monitor_config"], config);
        assert_eq!(
            (check_in["release"].as_str(), check_in["environment"].as_str()),
            (Some(health::RELEASE), Some(health::ENVIRONMENT))
        );
        assert_eq!(check_in["contexts"]["trace"]["trace_id"], start["contexts"]["trace"]["trace_id"]);
    }
    assert_eq!(start["check_in_id"].as_str().map(str::len), Some(32));
    let duration = end["duration"].as_f64().unwrap();
    let wall = span.1.duration_since(span.0).unwrap().as_secs_f64();
    assert!(duration > 0.0 && duration <= wall, "duration {duration} s, the run took {wall} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ok_job_checks_in_in_progress_then_ok() {
    let relay = FakeRelay::start().await;
    let (check_ins, span, code) = job(&relay, "read x; echo backed up; exit 0").await;
    assert_eq!(code, Some(0));
    one_job(&check_ins, "ok", span);
    relay.with(|s| {
        all_valid(s);
        // Each check-in in an envelope of its own, as Relay wants them.
        let alone = s.accepted.iter().filter(|e| !e.items_of("check_in").is_empty());
        assert!(alone.clone().count() == 2 && alone.into_iter().all(|e| e.items.len() == 1));
    });
    through_the_wheel(&check_ins);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_checks_in_error_and_keeps_its_code() {
    let relay = FakeRelay::start().await;
    let (check_ins, span, code) = job(&relay, "read x; exit 4").await;
    assert_eq!(code, Some(4));
    one_job(&check_ins, "error", span);
    relay.with(all_valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_jobs_check_in_is_linked_to_its_crash() {
    let relay = FakeRelay::start().await;
    let (check_ins, span, code) = job(&relay, "read x; kill -SEGV $$").await;
    assert_eq!(code, Some(128 + 11));
    one_job(&check_ins, "error", span);
    relay.with(|s| {
        all_valid(s);
        let events = s.accepted_events();
        assert_eq!(events.len(), 1);
        let event = events[0].event().unwrap();
        let contexts = &event["contexts"];
        assert_eq!(contexts["trace"]["trace_id"], check_ins[1]["contexts"]["trace"]["trace_id"]);
        assert_eq!(contexts["trace"]["span_id"].as_str().map(str::len), Some(16));
        assert_eq!(contexts["monitor"]["slug"], "nightly-backup");
        assert_eq!(contexts["monitor"]["check_in_id"], check_ins[1]["check_in_id"]);
    });
}

/// Relay is down for the whole run: the job runs and exits as it would,
/// the check-ins wait in the outbox, the `in_progress` replaced by the
/// final one, and `crashwatch send` delivers them once Relay is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_run_while_relay_is_down_is_checked_in_later() {
    let addr = unused_port();
    let spool = tempfile::tempdir().unwrap();
    let run = Driven::start(run_cmd(spool.path(), &dsn_for(addr), &SCHEDULE, &sh("echo ran; exit 0")));
    let (out, before, after) = run.finish().await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
    let pending = std::fs::read_dir(spool.path().join("outbox/pending"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "envelope"))
        .count();
    // The final check-in and the session's final update (with init: the
    // start never reached Relay).
    assert_eq!(pending, 2);

    let relay = FakeRelay::start_on(addr).await;
    let mut send = crashwatch(spool.path());
    send.args(["send", "--dsn", &relay.dsn()]);
    let sent = tokio::task::spawn_blocking(move || run_with_timeout(send, LIMIT)).await.unwrap();
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let check_ins = check_ins(&relay);
    assert_eq!(check_ins.len(), 1, "only the final check-in: {check_ins:#?}");
    assert_eq!(check_ins[0]["status"], "ok");
    let duration = check_ins[0]["duration"].as_f64().unwrap();
    assert!(duration > 0.0 && duration <= after.duration_since(before).unwrap().as_secs_f64());
    let updates = health::sessions(&relay);
    health::one_run(&updates, "exited", 0, (before, after));
    assert_eq!(updates.len(), 1, "the final update alone, with init");
    relay.with(all_valid);
}

/// Under a `monitor` quota Relay answers 429 to a check-in alone; it is
/// dropped (Relay counted it), and the next one, while the limit lasts,
/// is dropped here and counted in a client report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_rate_limit_is_honoured() {
    let relay = FakeRelay::start().await;
    relay.exhaust_quota("monitor", 600);
    let spool = tempfile::tempdir().unwrap();
    let mut run =
        Driven::start(run_cmd(spool.path(), &relay.dsn(), &["--no-sessions", "--monitor", "job"], &sh("read x")));
    relay
        .wait_until("the 429 of the in_progress check-in", WAIT, |s| {
            s.requests.iter().any(|r| r.outcome == sentry_common::relay::Outcome::Scripted(429))
        })
        .await;
    run.say("go");
    let (out, ..) = run.finish().await;
    assert_eq!(out.status.code(), Some(0));
    relay.with(|s| {
        all_valid(s);
        assert!(s.items_of("check_in").is_empty());
        assert_eq!(s.rate_limited.len(), 1, "only the in_progress reached Relay: {:?}", s.rate_limited);
        let reports: Vec<Value> = s.accepted.iter().filter_map(|e| e.client_report()).collect();
        assert_eq!(reports.len(), 1, "{reports:#?}");
        assert_eq!(
            reports[0]["discarded_events"],
            json!([{"reason": "ratelimit_backoff", "category": "monitor", "quantity": 1}])
        );
    });
    assert!(spool.path().join("outbox/pending").read_dir().unwrap().next().is_none(), "nothing left waiting");
}
