//! The happy path and its duplicates: one crash, one delivery.

#[path = "sentry_common/mod.rs"]
mod common;

use std::sync::Arc;

use common::relay::{FakeRelay, Reply};
use common::{Harness, LOG_TAIL, WAIT, fake_minidump, flush_with};
use crashwatch::sentry::{AttachmentSource, FlushSummary, Outbox, Uploader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_crash_arrives_once_with_event_minidump_and_log() {
    let relay = FakeRelay::start().await;
    let h = Harness::new(&relay.dsn());
    let dump_dir = tempfile::tempdir().unwrap();
    let dump_path = dump_dir.path().join("crash.dmp");
    let dump = fake_minidump(300 * 1024);
    std::fs::write(&dump_path, &dump).unwrap();
    let id = common::random_event_id();
    h.outbox.enqueue(&h.dsn, common::crash_envelope(&id, AttachmentSource::File(dump_path))).unwrap();

    let summary = h.flush().await;
    assert_eq!(summary, FlushSummary { sent: 1, ..FlushSummary::default() });
    // A second flush finds nothing to send.
    assert_eq!(h.flush().await, FlushSummary::default());

    relay.with(|s| {
        assert_eq!(s.invalid().len(), 0, "{:?}", s.invalid());
        assert_eq!(s.requests.len(), 1);
        let events = s.accepted_events();
        assert_eq!(events.len(), 1);
        let envelope = events[0];
        assert_eq!(envelope.event_id(), Some(id.as_str()));
        assert_eq!(envelope.content_encoding.as_deref(), Some("gzip"));
        assert_eq!(envelope.item_types(), ["event", "attachment:event.minidump", "attachment:event.attachment"]);
        let event = envelope.event().unwrap();
        assert_eq!(event["event_id"], id.as_str());
        assert_eq!(event["level"], "fatal");
        assert_eq!(envelope.items[1].payload, dump);
        assert_eq!(envelope.items[1].header["filename"], "crash.dmp");
        assert_eq!(envelope.items[2].payload, LOG_TAIL);
        assert_eq!(envelope.items[2].header["content_type"], "text/plain");
    });
    assert!(h.outbox.pending().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueueing_the_same_event_twice_stores_it_once() {
    let relay = FakeRelay::start().await;
    let h = Harness::new(&relay.dsn());
    let id = common::random_event_id();
    let first =
        h.outbox.enqueue(&h.dsn, common::crash_envelope(&id, AttachmentSource::Bytes(fake_minidump(1024)))).unwrap();
    let second =
        h.outbox.enqueue(&h.dsn, common::crash_envelope(&id, AttachmentSource::Bytes(fake_minidump(1024)))).unwrap();
    assert_eq!(first, second);
    assert_eq!(h.flush().await.sent, 1);
    relay.with(|s| assert_eq!(s.accepted_events().len(), 1));
}

/// Two crashwatch processes on one spool: while one holds an entry in flight,
/// the other skips it instead of sending it a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sender_skips_an_entry_in_flight() {
    let relay = FakeRelay::start().await;
    relay.script([Reply::Hold]);
    let h = Harness::new(&relay.dsn());
    let id = h.enqueue_crash(4096);

    let (outbox_a, uploader_a) = h.reopen();
    let (outbox_a, uploader_a): (Arc<Outbox>, Arc<Uploader>) = (Arc::new(outbox_a), Arc::new(uploader_a));
    let sender_a = tokio::spawn({
        let (outbox, uploader) = (outbox_a.clone(), uploader_a.clone());
        async move { flush_with(&outbox, &uploader).await }
    });
    relay
        .wait_until("the first sender's request", WAIT, |s| {
            s.requests.iter().any(|r| r.outcome == common::relay::Outcome::Holding)
        })
        .await;

    let summary_b = h.flush().await;
    assert_eq!(summary_b, FlushSummary { busy: 1, ..FlushSummary::default() });

    relay.release();
    let summary_a = sender_a.await.unwrap();
    assert_eq!(summary_a.sent, 1);
    relay.with(|s| {
        assert_eq!(s.requests.len(), 1);
        assert_eq!(s.accepted_events()[0].event_id(), Some(id.as_str()));
    });
}
