//! What each kind of answer from Relay does to an outbox entry.

#[path = "sentry_common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Duration;

use common::relay::{self, FakeRelay, Limits, Outcome, Reply};
use common::{Harness, WAIT, flush_with};
use crashwatch::sentry::outbox::Backoff;
use crashwatch::sentry::{Category, Clock, DiscardReason, FlushSummary, OutboxConfig};

fn summary(f: impl FnOnce(&mut FlushSummary)) -> FlushSummary {
    let mut s = FlushSummary::default();
    f(&mut s);
    s
}

/// 429: nothing is sent before the limit is over, neither by this process nor
/// by a later one (in-process reopen, and a real separate process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_honoured_here_and_by_the_next_process() {
    let relay = FakeRelay::start().await;
    relay.script([Reply::RateLimited {
        retry_after: 60,
        limits: Some("60:error;attachment:organization:quota_exceeded".to_owned()),
    }]);
    let h = Harness::new(&relay.dsn());
    let id = h.enqueue_crash(2048);

    assert_eq!(h.flush().await, summary(|s| s.rate_limited = 1));
    assert_eq!(relay.with(|s| s.requests.len()), 1);

    // Same process, same instant: no request at all.
    assert_eq!(h.flush().await, summary(|s| s.rate_limited = 1));
    // A fresh process (no memory of the 429) half-way through the limit.
    h.clock.advance(Duration::from_secs(30));
    let (outbox, uploader) = h.reopen();
    assert_eq!(flush_with(&outbox, &uploader).await, summary(|s| s.rate_limited = 1));
    // A real separate process on the real clock, well within the 60 s.
    // `crashwatch send` on the spool whose outbox this is.
    let spool = h.outbox_dir().parent().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_crashwatch"))
        .args(["--spool-dir", spool.to_str().unwrap(), "send", "--json", "--dsn", &relay.dsn()])
        .output()
        .unwrap();
    // Something could not be sent: exit 1.
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["rate_limited"], 1);
    assert_eq!(printed["sent"], 0);
    assert_eq!(relay.with(|s| s.requests.len()), 1, "nobody sent during the limit");

    // Once the limit is over, the report goes out once.
    h.clock.advance(Duration::from_secs(31));
    let (outbox, uploader) = h.reopen();
    assert_eq!(flush_with(&outbox, &uploader).await, summary(|s| s.sent = 1));
    relay.with(|s| {
        assert_eq!(s.requests.len(), 2);
        assert_eq!(s.accepted_events().len(), 1);
        assert_eq!(s.accepted_events()[0].event_id(), Some(id.as_str()));
    });
}

/// A long limit on attachments only (an exhausted attachment quota) does not
/// hold the crash back: the event goes without them, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_attachment_limit_sends_the_event_without_attachments() {
    let relay = FakeRelay::start().await;
    relay.script([Reply::RateLimited {
        retry_after: 3600,
        limits: Some("86400:attachment:organization:quota_exceeded".to_owned()),
    }]);
    let h = Harness::new(&relay.dsn());
    let id = h.enqueue_crash(2048);

    assert_eq!(h.flush().await, summary(|s| s.rate_limited = 1));
    assert_eq!(h.flush().await, summary(|s| s.sent = 1));
    relay.with(|s| {
        let envelope = s.accepted_events()[0];
        assert_eq!(envelope.event_id(), Some(id.as_str()));
        assert_eq!(envelope.item_types(), ["event", "client_report"]);
        let event = envelope.event().unwrap();
        assert_eq!(event["tags"]["minidump_dropped"], "attachments rate limited");
        let report = envelope.client_report().unwrap();
        assert_eq!(
            report["discarded_events"],
            serde_json::json!([{
                "reason": "ratelimit_backoff",
                "category": "attachment",
                "quantity": 2048 + common::LOG_TAIL.len(),
            }])
        );
        // Reported once, inside the envelope: nothing left for later.
        assert_eq!(s.accepted.len(), 1);
    });
    assert!(h.outbox.discarded().unwrap().is_empty());
}

/// 413 from Relay's attachment limit: resent once without the minidump, the
/// event marked, the loss reported; nothing sent a third time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_is_resent_without_the_minidump() {
    let relay = FakeRelay::start().await;
    relay.set_limits(Limits { max_attachment: 64 * 1024, ..Limits::default() });
    let h = Harness::new(&relay.dsn());
    let id = h.enqueue_crash(256 * 1024);

    assert_eq!(h.flush().await, summary(|s| s.sent = 1));
    relay.with(|s| {
        assert_eq!(s.requests.len(), 2);
        assert_eq!(
            s.requests[0].outcome,
            Outcome::Invalid { status: 413, detail: "attachment exceeded size limits".to_owned() }
        );
        let envelope = s.accepted_events()[0];
        assert_eq!(envelope.event_id(), Some(id.as_str()));
        assert_eq!(envelope.item_types(), ["event", "attachment:event.attachment", "client_report"]);
        let event = envelope.event().unwrap();
        assert_eq!(event["tags"]["minidump_dropped"], "too large for relay (413)");
        assert_eq!(event["extra"]["dropped_attachments"][0]["size"], 256 * 1024);
        let report = envelope.client_report().unwrap();
        assert_eq!(
            report["discarded_events"],
            serde_json::json!([{"reason": "send_error", "category": "attachment", "quantity": 256 * 1024}])
        );
    });
    assert!(h.outbox.pending().unwrap().is_empty());
}

/// 400: moved to rejected/ with Relay's detail, never retried; the loss is
/// reported in a client report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_request_is_rejected_with_the_detail_and_never_retried() {
    let relay = FakeRelay::start().await;
    relay.script([Reply::Error { status: 400, detail: "invalid event envelope".to_owned() }]);
    let h = Harness::new(&relay.dsn());
    let id = h.enqueue_crash(2048);

    assert_eq!(h.flush().await, summary(|s| s.rejected = 1));
    let rejected = h.outbox.rejected().unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].1.event_id, id.as_str());
    assert_eq!(rejected[0].1.status, 400);
    assert_eq!(rejected[0].1.detail.as_deref(), Some("invalid event envelope"));
    assert!(h.outbox.pending().unwrap().is_empty());

    h.clock.advance(Duration::from_secs(7 * 24 * 3600));
    assert_eq!(h.flush().await, FlushSummary::default());
    relay.with(|s| {
        let with_event: Vec<_> = s.requests.iter().filter(|r| r.event_id.is_some()).collect();
        assert_eq!(with_event.len(), 1, "the rejected envelope was sent once");
        // The loss went out as a standalone client report.
        let report = s.accepted.iter().find_map(|e| e.client_report()).unwrap();
        let entries = report["discarded_events"].as_array().unwrap();
        assert!(entries.contains(&serde_json::json!({"reason": "send_error", "category": "error", "quantity": 1})));
    });
    assert!(h.outbox.discarded().unwrap().is_empty());
}

/// 500 then 200: one retry after the backoff, one delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_is_retried_after_backoff_and_delivered_once() {
    let relay = FakeRelay::start().await;
    relay.script([Reply::Error { status: 500, detail: "internal error".to_owned() }]);
    let h = Harness::new(&relay.dsn());
    let id = h.enqueue_crash(2048);
    let before = h.clock.now();

    assert_eq!(h.flush().await, summary(|s| s.retry_later = 1));
    let entry = &h.outbox.pending().unwrap()[0];
    let state = h.outbox.state(entry).unwrap();
    assert_eq!(state.attempts, 1);
    assert_eq!(state.last_error.as_deref(), Some("relay answered with status 500: internal error"));
    let backoff = Backoff::default();
    let wait = state.next_attempt_at().duration_since(before).unwrap();
    assert!(wait >= backoff.initial / 2 && wait <= backoff.initial, "{wait:?}");

    // Not due yet: no request.
    assert_eq!(h.flush().await, summary(|s| s.retry_later = 1));
    assert_eq!(relay.with(|s| s.requests.len()), 1);

    h.clock.advance(backoff.initial);
    assert_eq!(h.flush().await, summary(|s| s.sent = 1));
    relay.with(|s| {
        assert_eq!(s.requests.len(), 2);
        assert_eq!(s.accepted_events().len(), 1);
        assert_eq!(s.accepted_events()[0].event_id(), Some(id.as_str()));
    });
}

/// Relay down: the report waits on disk and goes out once Relay is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_down_keeps_the_report_until_it_comes_up() {
    let addr = relay::unused_port();
    let h = Harness::new(&relay::dsn_for(addr));
    let first = h.enqueue_crash(2048);
    h.clock.advance(Duration::from_millis(5));
    let second = h.enqueue_crash(2048);

    // Connection refused: retried later, and the second entry is not even
    // tried (Relay is unreachable, it would fail the same way).
    assert_eq!(
        h.flush().await,
        summary(|s| {
            s.retry_later = 1;
            s.not_attempted = 1;
        })
    );
    let state = h.outbox.state(&h.outbox.pending().unwrap()[0]).unwrap();
    assert!(state.last_error.as_deref().unwrap().starts_with("failed to connect to relay"), "{state:?}");

    let relay = FakeRelay::start_on(addr).await;
    h.clock.advance(Backoff::default().initial);
    assert_eq!(h.flush().await, summary(|s| s.sent = 2));
    relay.with(|s| {
        let ids: Vec<_> = s.accepted_events().iter().map(|e| e.event_id().unwrap().to_owned()).collect();
        assert_eq!(ids, [first.to_string(), second.to_string()], "oldest first");
    });
}

/// Relay slower than the client timeout: the request is abandoned, the entry
/// stays pending, and is delivered by the next flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_relay_times_out_and_the_report_stays_pending() {
    let relay = FakeRelay::start().await;
    relay.script([Reply::Slow(Duration::from_secs(600))]);
    let h = Harness::new(&relay.dsn());
    let id = h.enqueue_crash(2048);

    // Relay had the envelope: it is unanswered, not failed, and waits out
    // a backoff all the same.
    let first = h.flush().await;
    assert_eq!(
        first,
        summary(|s| {
            s.unanswered = 1;
            s.unanswered_within_ms = 2000;
        })
    );
    assert_eq!(first.describe(), "0 sent, 1 waiting (sent, no answer within 2.0s; will retry)");
    let state = h.outbox.state(&h.outbox.pending().unwrap()[0]).unwrap();
    let error = state.last_error.as_deref().unwrap();
    assert!(
        error.starts_with("request to relay timed out after the envelope was sent, without an answer: "),
        "{error}"
    );
    assert_eq!(state.attempts, 1);
    relay
        .wait_until("the abandoned request", WAIT, |s| s.requests.iter().any(|r| r.outcome == Outcome::Abandoned))
        .await;

    h.clock.advance(Backoff::default().initial);
    assert_eq!(h.flush().await, summary(|s| s.sent = 1));
    relay.with(|s| {
        assert_eq!(s.accepted_events().len(), 1);
        assert_eq!(s.accepted_events()[0].event_id(), Some(id.as_str()));
    });
}

/// A deadline already passed sends nothing and keeps everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_deadline_sends_nothing_and_keeps_everything() {
    let relay = FakeRelay::start().await;
    let h = Harness::new(&relay.dsn());
    h.enqueue_crash(2048);
    h.enqueue_crash(2048);
    let summary = crashwatch::sentry::flush(&h.outbox, &h.uploader, tokio::time::Instant::now()).await.unwrap();
    assert_eq!(summary, FlushSummary { not_attempted: 2, deadline_reached: true, ..FlushSummary::default() });
    assert_eq!(h.outbox.pending().unwrap().len(), 2);
    assert_eq!(relay.with(|s| s.requests.len()), 0);
}

/// A deadline that cuts an upload short counts no failed attempt: the entry
/// stays due for the next process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_cutting_an_upload_counts_no_attempt() {
    let relay = FakeRelay::start().await;
    relay.script([Reply::Hold]);
    let h = Harness::new(&relay.dsn());
    h.enqueue_crash(2048);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    let summary = crashwatch::sentry::flush(&h.outbox, &h.uploader, deadline).await.unwrap();
    // Relay holds the whole body: sent, without an answer before the
    // deadline (what was left of the 300 ms).
    let waited = summary.unanswered_within_ms;
    assert!(waited > 0 && waited <= 300, "{summary:?}");
    assert_eq!(
        summary,
        FlushSummary { unanswered: 1, unanswered_within_ms: waited, deadline_reached: true, ..FlushSummary::default() }
    );
    let state = h.outbox.state(&h.outbox.pending().unwrap()[0]).unwrap();
    assert_eq!(state.attempts, 0);
    assert!(state.next_attempt_at() <= h.clock.now());
    let seconds = crashwatch::sentry::flush::seconds(waited);
    assert_eq!(state.last_error, Some(format!("sent, no answer within {seconds} (the flush deadline)")));

    relay.release();
    assert_eq!(h.flush().await.sent, 1);
}

/// The outbox bound drops the oldest report, logs it, and reports the loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_outbox_drops_the_oldest_and_reports_it() {
    let relay = FakeRelay::start().await;
    let h = Harness::with_config(&relay.dsn(), OutboxConfig { max_bytes: 100 * 1024, ..OutboxConfig::default() });
    let oldest = h.enqueue_crash(40 * 1024);
    h.clock.advance(Duration::from_millis(5));
    let middle = h.enqueue_crash(40 * 1024);
    h.clock.advance(Duration::from_millis(5));
    let newest = h.enqueue_crash(40 * 1024);

    let pending = h.outbox.pending().unwrap();
    assert_eq!(pending.len(), 2);
    assert!(pending[0].ends_with(middle.as_str()));
    assert!(pending[1].ends_with(newest.as_str()));
    assert!(h.outbox.total_bytes().unwrap() <= 100 * 1024);
    let lost = h.outbox.discarded().unwrap();
    assert_eq!(lost.get(DiscardReason::CacheOverflow, Category::Error), 1);
    assert_eq!(lost.get(DiscardReason::CacheOverflow, Category::Attachment), 40 * 1024 + common::LOG_TAIL.len() as u64);

    assert_eq!(h.flush().await, summary(|s| s.sent = 2));
    relay.with(|s| {
        let ids: Vec<_> = s.accepted_events().iter().map(|e| e.event_id().unwrap().to_owned()).collect();
        assert!(!ids.contains(&oldest.to_string()));
        let report = s
            .accepted
            .iter()
            .filter(|e| e.event_id().is_none())
            .find_map(|e| e.client_report())
            .expect("a standalone client report");
        let entries = report["discarded_events"].as_array().unwrap();
        assert!(entries.contains(&serde_json::json!({"reason": "cache_overflow", "category": "error", "quantity": 1})));
    });
    assert!(h.outbox.discarded().unwrap().is_empty());
}

/// A report larger than the whole outbox keeps its event and log, loses its
/// minidump, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_larger_than_the_outbox_loses_only_its_minidump() {
    let relay = FakeRelay::start().await;
    let h = Harness::with_config(&relay.dsn(), OutboxConfig { max_bytes: 32 * 1024, ..OutboxConfig::default() });
    h.enqueue_crash(64 * 1024);
    assert_eq!(h.flush().await, summary(|s| s.sent = 1));
    relay.with(|s| {
        let envelope = s.accepted_events()[0];
        assert_eq!(envelope.item_types(), ["event", "attachment:event.attachment", "client_report"]);
        assert_eq!(envelope.event().unwrap()["tags"]["minidump_dropped"], "larger than the outbox");
    });
}
