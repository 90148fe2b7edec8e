//! Shared test fixtures: a fake Relay, crash envelopes, an outbox on a
//! temporary directory with a manual clock.
#![allow(dead_code)] // each test binary uses a different subset

pub mod normalize;
pub mod relay;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crashwatch::sentry::{
    Attachment, AttachmentSource, Dsn, Envelope, EventId, FlushSummary, ManualClock, MinidumpProcessing, Outbox,
    OutboxConfig, Uploader, UploaderConfig, flush,
};
use serde_json::{Value, json};

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("crashwatch=debug").try_init();
}

pub fn random_event_id() -> EventId {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    hex.parse().unwrap()
}

pub fn crash_event() -> Value {
    json!({
        "platform": "native",
        "level": "fatal",
        "exception": {"values": [{
            "type": "SIGSEGV",
            "mechanism": {"type": "signalhandler", "handled": false,
                          "meta": {"signal": {"number": 11, "name": "SIGSEGV"}}}
        }]}
    })
}

/// A minidump-shaped payload: the `MDMP` magic, then bytes that compress the
/// way a dump does (runs of zeros between varied words).
pub fn fake_minidump(len: usize) -> Vec<u8> {
    let mut out = b"MDMP\x93\xa7\x00\x00".to_vec();
    let mut x: u32 = 0x1234_5678;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if x.is_multiple_of(3) {
            out.extend_from_slice(&[0; 16]);
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

pub const LOG_TAIL: &[u8] = b"starting server\nlistening on :8080\nthread 'main' got SIGSEGV\n";

pub fn crash_envelope(event_id: &EventId, minidump: AttachmentSource) -> Envelope {
    let mut envelope = Envelope::new(event_id.clone(), crash_event()).unwrap();
    envelope.add_attachment(Attachment::minidump("crash.dmp", minidump, MinidumpProcessing::Server)).unwrap();
    envelope.add_attachment(Attachment::text("log-tail.txt", AttachmentSource::Bytes(LOG_TAIL.to_vec()))).unwrap();
    envelope
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub outbox: Outbox,
    pub uploader: Uploader,
    pub dsn: Dsn,
}

pub fn test_uploader_config() -> UploaderConfig {
    UploaderConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        ..UploaderConfig::default()
    }
}

impl Harness {
    pub fn new(dsn: &str) -> Self {
        Self::with_config(dsn, OutboxConfig::default())
    }

    pub fn with_config(dsn: &str, config: OutboxConfig) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().unwrap();
        // Real "now", so that a helper process on the real clock agrees with
        // what this one persisted.
        let clock = Arc::new(ManualClock::new(SystemTime::now()));
        let outbox = Outbox::open(dir.path().join("outbox"), config, clock.clone()).unwrap();
        let dsn: Dsn = dsn.parse().unwrap();
        let uploader = Uploader::new(dsn.clone(), test_uploader_config(), clock.clone()).unwrap();
        Self { dir, clock, outbox, uploader, dsn }
    }

    /// A second "process" on the same outbox directory: fresh in-memory state.
    pub fn reopen(&self) -> (Outbox, Uploader) {
        let outbox = Outbox::open(self.outbox.dir(), *self.outbox.config(), self.clock.clone()).unwrap();
        let uploader = Uploader::new(self.dsn.clone(), test_uploader_config(), self.clock.clone()).unwrap();
        (outbox, uploader)
    }

    pub fn outbox_dir(&self) -> &Path {
        self.outbox.dir()
    }

    pub fn enqueue_crash(&self, minidump_len: usize) -> EventId {
        let id = random_event_id();
        let envelope = crash_envelope(&id, AttachmentSource::Bytes(fake_minidump(minidump_len)));
        self.outbox.enqueue(&self.dsn, envelope).unwrap();
        id
    }

    pub async fn flush(&self) -> FlushSummary {
        flush_with(&self.outbox, &self.uploader).await
    }
}

pub async fn flush_with(outbox: &Outbox, uploader: &Uploader) -> FlushSummary {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    flush(outbox, uploader, deadline).await.unwrap()
}

pub const WAIT: Duration = Duration::from_secs(20);
