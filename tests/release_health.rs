//! Release Health from the real binary: every run of a real program is a
//! session whose updates reach a fake Relay that checks them as Relay does
//! (tests/sentry_common/relay/items.rs), and whose release and environment
//! pass the `sentry-relay` wheel's own checks.
//!
//! A child that waits for a line on stdin lets each test see the start
//! update arrive before the end comes, so the exact sequence is known:
//! `{init, ok}` then the final update.

#[path = "common/mod.rs"]
mod bin;
#[path = "health_common/mod.rs"]
mod health;
#[path = "sentry_common/mod.rs"]
mod sentry_common;

use std::time::SystemTime;

use bin::{fixture, send_signal, testdata};
use health::{Driven, all_valid, of_sid, one_run, run_cmd, sessions, sh, through_the_wheel, wait_sessions};
use sentry_common::WAIT;
use sentry_common::relay::FakeRelay;
use serde_json::Value;

/// Runs `program` (which reads one line before it ends as it will), sends
/// that line once the start update is in, and returns the run's updates and
/// the span of the run.
async fn driven(
    relay: &FakeRelay,
    flags: &[&str],
    program: &[String],
    line: &str,
) -> (Vec<Value>, (SystemTime, SystemTime), i32) {
    let spool = tempfile::tempdir().unwrap();
    let mut run = Driven::start(run_cmd(spool.path(), &relay.dsn(), flags, program));
    wait_sessions(relay, 1).await;
    run.say(line);
    let (out, before, after) = run.finish().await;
    let updates = sessions(relay);
    assert_eq!(updates.len(), 2, "{updates:#?}\n{}", String::from_utf8_lossy(&out.stderr));
    (updates, (before, after), out.status.code().unwrap_or(-1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_run_starts_ok_and_ends_exited() {
    let relay = FakeRelay::start().await;
    let (updates, span, code) = driven(&relay, &[], &sh("read x; exit 0"), "done").await;
    assert_eq!(code, 0);
    one_run(&updates, "exited", 0, span);
    relay.with(|s| {
        all_valid(s);
        assert!(s.accepted_events().is_empty(), "a clean run sends no event");
        // Each update went alone: no event to ride with.
        assert!(s.accepted.iter().all(|e| e.event_id().is_none() && e.items.len() == 1));
    });
    through_the_wheel(&updates);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orderly_stop_is_exited_not_crashed() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    let run = Driven::start(run_cmd(spool.path(), &relay.dsn(), &[], &["sleep".into(), "600".into()]));
    wait_sessions(&relay, 1).await;
    send_signal(&run.child, nix::sys::signal::Signal::SIGTERM);
    let (out, before, after) = run.finish().await;
    assert_eq!(out.status.code(), Some(128 + 15), "{}", String::from_utf8_lossy(&out.stderr));
    let updates = sessions(&relay);
    one_run(&updates, "exited", 0, (before, after));
    relay.with(|s| {
        all_valid(s);
        assert!(s.accepted_events().is_empty(), "an orderly stop is no crash");
    });
}

/// The final update of a run whose report was sent: in the same envelope
/// as the crash's event.
fn final_rides_with_the_event(relay: &FakeRelay, last: &Value) -> Value {
    relay.with(|s| {
        all_valid(s);
        let events = s.accepted_events();
        assert_eq!(events.len(), 1, "one crash report");
        assert_eq!(
            events[0].items_of("session"),
            std::slice::from_ref(last),
            "the crashed update is in the crash's envelope"
        );
        assert_eq!(events[0].item_types()[..2], ["event".to_owned(), "session".to_owned()]);
        events[0].event().unwrap()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_and_its_crashed_update_share_one_envelope() {
    let relay = FakeRelay::start().await;
    let (updates, span, code) = driven(&relay, &[], &sh("read x; kill -SEGV $$"), "crash").await;
    assert_eq!(code, 128 + 11);
    let last = one_run(&updates, "crashed", 1, span);
    let event = final_rides_with_the_event(&relay, &last);
    assert_eq!(event["exception"]["values"][0]["mechanism"]["type"], "signalhandler");
    assert_eq!(
        (event["release"].as_str(), event["environment"].as_str()),
        (Some(health::RELEASE), Some(health::ENVIRONMENT))
    );
    through_the_wheel(&updates);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_is_crashed() {
    let relay = FakeRelay::start().await;
    let grow = fixture("grow");
    let program = [grow.to_str().unwrap().to_owned()];
    let (updates, span, code) = driven(&relay, &["--memory-limit", "64M"], &program, "up 256").await;
    assert_eq!(code, 128 + 9);
    let last = one_run(&updates, "crashed", 1, span);
    let event = final_rides_with_the_event(&relay, &last);
    assert_eq!(event["exception"]["values"][0]["mechanism"]["type"], "oom");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_crashed() {
    let relay = FakeRelay::start().await;
    let story = testdata("go/nil_pointer.txt");
    let script = format!("read x; cat '{}' >&2; exit 2", story.display());
    let (updates, span, code) = driven(&relay, &[], &sh(&script), "go").await;
    assert_eq!(code, 2);
    let last = one_run(&updates, "crashed", 1, span);
    let event = final_rides_with_the_event(&relay, &last);
    assert_eq!(event["exception"]["values"].as_array().unwrap().last().unwrap()["mechanism"]["type"], "panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_exit_is_errored_and_a_foreign_kill_abnormal() {
    let relay = FakeRelay::start().await;
    let (updates, span, code) = driven(&relay, &[], &sh("read x; exit 3"), "fail").await;
    assert_eq!(code, 3);
    one_run(&updates, "exited", 1, span);
    relay.with(|s| assert!(s.accepted_events().is_empty(), "a plain exit is not reported by default"));

    let relay = FakeRelay::start().await;
    let (updates, span, code) = driven(&relay, &[], &sh("read x; kill -KILL $$"), "die").await;
    assert_eq!(code, 128 + 9);
    one_run(&updates, "abnormal", 1, span);
    relay.with(all_valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_release_or_with_no_sessions_there_are_none() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = bin::crashwatch(spool.path());
    cmd.args(["run", "--dsn", &relay.dsn(), "--", "sh", "-c", "kill -SEGV $$"]);
    let run = Driven::start(cmd);
    let (out, ..) = run.finish().await;
    assert_eq!(out.status.code(), Some(128 + 11));
    let mut cmd = run_cmd(spool.path(), &relay.dsn(), &["--no-sessions"], &sh("exit 0"));
    cmd.stdin(std::process::Stdio::null());
    let out = bin::run_with_timeout(cmd, bin::LIMIT);
    assert!(out.status.success());
    relay.with(|s| {
        all_valid(s);
        assert_eq!(s.accepted_events().len(), 1, "the crash is still reported");
        assert!(s.items_of("session").is_empty() && s.items_of("sessions").is_empty());
    });
}

/// A crash loop: the first runs of the hour get sessions of their own, the
/// rest are counted per minute of their start, and the counts arrive in
/// fewer envelopes than runs (at most one a minute, and one when the loop
/// ends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_is_counted_in_aggregates_past_the_hourly_share() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    let flags = [
        "--restart",
        "on-failure",
        "--restart-delay",
        "0",
        "--max-restarts",
        "7",
        "--max-sessions-per-hour",
        "2",
        "--minidump",
        "off",
    ];
    let run = Driven::start(run_cmd(spool.path(), &relay.dsn(), &flags, &sh("kill -SEGV $$")));
    let (out, before, after) = run.finish().await;
    assert_eq!(out.status.code(), Some(128 + 11), "{}", String::from_utf8_lossy(&out.stderr));
    relay.wait_until("the crash-loop summary", WAIT, |s| s.accepted_events().len() >= 2).await;

    let updates = sessions(&relay);
    let mut sids: Vec<Value> = Vec::new();
    for update in &updates {
        if !sids.contains(&update["sid"]) {
            sids.push(update["sid"].clone());
        }
    }
    assert_eq!(sids.len(), 2, "two runs with sessions of their own: {updates:#?}");
    for sid in &sids {
        // A quick run may end before its start update went out: then its
        // final update is its first, and says init (checked in one_run).
        one_run(&of_sid(&updates, sid), "crashed", 1, (before, after));
    }
    relay.with(|s| {
        all_valid(s);
        // The first crash was sent in full, with its crashed update.
        let first = s.accepted_events().into_iter().find(|e| e.items_of("session").len() == 1);
        assert!(first.is_some(), "the first crash carries its session's final update");

        let aggregates = s.items_of("sessions");
        let minutes = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() / 60;
        let span_minutes = minutes(after) - minutes(before) + 1;
        assert!(
            !aggregates.is_empty() && aggregates.len() as u64 <= span_minutes + 1,
            "{} aggregate envelopes for a loop of {span_minutes} minute(s)",
            aggregates.len()
        );
        let mut crashed = 0;
        for item in &aggregates {
            assert_eq!(
                item["attrs"],
                serde_json::json!({"release": health::RELEASE, "environment": health::ENVIRONMENT})
            );
            for bucket in item["aggregates"].as_array().unwrap() {
                let started = health::time_of(&bucket["started"]);
                let secs = started.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
                assert_eq!(secs % 60, 0, "buckets are minutes: {bucket}");
                assert!(minutes(before) <= secs / 60 && secs / 60 <= minutes(after), "{bucket} outside the loop");
                assert_eq!(bucket["did"], crashwatch::sentry::session::host_id().as_str());
                assert!(bucket.get("exited").is_none() && bucket.get("abnormal").is_none(), "{bucket}");
                crashed += bucket["crashed"].as_u64().unwrap();
            }
        }
        assert_eq!(crashed, 6, "8 runs, 2 with sessions of their own: {aggregates:#?}");
    });
}

/// Under a `session` quota, Relay drops the updates and answers 429 when
/// nothing else is left; crashwatch then drops the updates it holds while
/// the limit lasts, counts them in a client report, and still sends the
/// crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_rate_limit_is_honoured_and_counted() {
    let relay = FakeRelay::start().await;
    relay.exhaust_quota("session", 600);
    let spool = tempfile::tempdir().unwrap();
    let mut run = Driven::start(run_cmd(spool.path(), &relay.dsn(), &[], &sh("read x; kill -SEGV $$")));
    // The start update alone: 429 with the session category.
    relay
        .wait_until("the 429 of the start update", WAIT, |s| {
            s.requests.iter().any(|r| r.outcome == sentry_common::relay::Outcome::Scripted(429))
        })
        .await;
    run.say("crash");
    let (out, ..) = run.finish().await;
    assert_eq!(out.status.code(), Some(128 + 11));
    relay.with(|s| {
        all_valid(s);
        assert!(s.items_of("session").is_empty(), "no update got past the quota");
        let events = s.accepted_events();
        assert_eq!(events.len(), 1);
        // The crashed update was taken out before sending, and counted.
        assert_eq!(events[0].items_of("session").len(), 0);
        let report = events[0].client_report().expect("a client report in the crash's envelope");
        assert_eq!(
            report["discarded_events"],
            serde_json::json!([{"reason": "ratelimit_backoff", "category": "session", "quantity": 1}])
        );
        // Relay removed the start update itself: the one in the 429.
        assert_eq!(s.rate_limited.len(), 1);
        assert_eq!(s.rate_limited[0].0, "session");
    });
}
