//! `--forward-logs LEVEL`: the child's lines at or above LEVEL, sent as
//! Sentry structured logs (`log` items, each a container of at most
//! [`MAX_BATCH`] logs, `application/vnd.sentry.items.log+json`).
//!
//! The worker [`Shipper::push`]es each line into a bounded queue and goes
//! on; a sender thread of its own takes batches of up to [`MAX_BATCH`], or
//! what is there once [`FLUSH_EVERY`] has passed since the oldest, scrubs
//! them as events are scrubbed, and sends them. Sentry being slow or down
//! costs the child nothing: a full queue drops the newest lines, a limited
//! category (`log_item`) or a failed request drops the batch, and every
//! loss is counted and sent in a `client_report` (`log_item`, `log_byte`).
//! Logs are not written to the outbox: they are many, and worth less than
//! the cost of making each durable.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::level::Level;
use crate::logs::Stream;
use crate::sentry::client_report::{Category, DiscardReason, DiscardedCounts};
use crate::sentry::clock::SystemClock;
use crate::sentry::envelope::format_timestamp;
use crate::sentry::rate_limit::LimitedPart;
use crate::sentry::scrub::Scrubber;
use crate::sentry::{Dsn, Uploader, UploaderConfig};

/// Logs in one `log` item, at most (Relay's limit).
pub const MAX_BATCH: usize = 100;
/// A batch is sent at the latest this long after its oldest line.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Lines waiting, at most; more are dropped and counted.
pub const MAX_QUEUED: usize = 10_000;
/// How long the last batches may take once the child has ended.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// What every log of a run carries.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub level: Level,
    pub release: Option<String>,
    pub environment: Option<String>,
    pub scrubber: Scrubber,
}

struct Record {
    at: SystemTime,
    level: Level,
    stream: Stream,
    body: String,
}

#[derive(Default)]
struct Queue {
    records: VecDeque<Record>,
    /// When the oldest waiting record came.
    since: Option<Instant>,
    lost: DiscardedCounts,
    closed: bool,
}

/// The worker's end.
pub struct Shipper {
    level: Level,
    shared: Arc<(Mutex<Queue>, Condvar)>,
    sender: Option<JoinHandle<()>>,
}

impl Shipper {
    /// Starts the sender thread for `dsn`.
    pub fn start(dsn: Dsn, settings: LogSettings) -> std::io::Result<Shipper> {
        let shared = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        let level = settings.level;
        let sender = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("forward-logs".into())
                .spawn(move || send_loop(&dsn, &settings, &shared))?
        };
        Ok(Shipper { level, shared, sender: Some(sender) })
    }

    /// The level lines must reach to be sent.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Queues one line; never waits for the network.
    pub fn push(&self, at: SystemTime, level: Level, stream: Stream, body: &str) {
        let (lock, wake) = &*self.shared;
        let mut queue = lock.lock().unwrap_or_else(|e| e.into_inner());
        if queue.records.len() >= MAX_QUEUED {
            queue.lost.add(DiscardReason::QueueOverflow, Category::LogItem, 1);
            queue.lost.add(DiscardReason::QueueOverflow, Category::LogByte, body.len() as u64);
            return;
        }
        queue.since.get_or_insert_with(Instant::now);
        queue.records.push_back(Record { at, level, stream, body: body.to_owned() });
        if queue.records.len() >= MAX_BATCH {
            wake.notify_one();
        }
    }
}

impl Drop for Shipper {
    /// Sends what is queued (within [`FINAL_FLUSH`]) and ends the sender.
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        wake.notify_one();
        if let Some(sender) = self.sender.take() {
            let _ = sender.join();
        }
    }
}

fn send_loop(dsn: &Dsn, settings: &LogSettings, shared: &(Mutex<Queue>, Condvar)) {
    let uploader = match Uploader::new(dsn.clone(), UploaderConfig::default(), Arc::new(SystemClock)) {
        Ok(uploader) => uploader,
        Err(e) => {
            tracing::warn!("failed to set up sending logs to {dsn}: {e}; --forward-logs sends nothing");
            return;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::warn!("failed to set up sending logs to {dsn}: {e}; --forward-logs sends nothing");
            return;
        }
    };
    // One trace per run: Sentry shows a run's logs together.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let server = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let (lock, wake) = shared;
    let mut closing_at: Option<Instant> = None;
    loop {
        let (batch, lost, closed) = {
            let mut queue = lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let full = queue.records.len() >= MAX_BATCH;
                let due = queue.since.is_some_and(|s| s.elapsed() >= FLUSH_EVERY);
                if full || due || queue.closed {
                    break;
                }
                let wait = queue.since.map_or(FLUSH_EVERY, |s| FLUSH_EVERY.saturating_sub(s.elapsed()));
                queue = wake.wait_timeout(queue, wait).unwrap_or_else(|e| e.into_inner()).0;
            }
            let n = queue.records.len().min(MAX_BATCH);
            let batch: Vec<Record> = queue.records.drain(..n).collect();
            queue.since = if queue.records.is_empty() { None } else { Some(Instant::now()) };
            (batch, std::mem::take(&mut queue.lost), queue.closed)
        };
        let closing = *closing_at.get_or_insert_with(|| Instant::now() + FINAL_FLUSH);
        if closed && Instant::now() > closing {
            // Out of time: what is left is lost, and said so.
            tracing::warn!("{} forwarded log line(s) were not sent before crashwatch's end", batch.len());
            return;
        }
        if !closed {
            closing_at = None;
        }
        if batch.is_empty() && lost.is_empty() {
            if closed {
                return;
            }
            continue;
        }
        let mut lost = lost;
        let logs: Vec<Value> = batch.iter().map(|r| log(r, settings, &trace_id, &server)).collect();
        let bytes: u64 = batch.iter().map(|r| r.body.len() as u64).sum();
        let now = SystemTime::now();
        let limited = uploader.rate_limits().limited_until(LimitedPart::Logs, now).is_some();
        let mut body = Vec::new();
        if limited && !logs.is_empty() {
            lost.add(DiscardReason::RatelimitBackoff, Category::LogItem, logs.len() as u64);
            lost.add(DiscardReason::RatelimitBackoff, Category::LogByte, bytes);
            envelope(&mut body, dsn, now, &[], &lost);
        } else {
            envelope(&mut body, dsn, now, &logs, &lost);
        }
        let sent = runtime.block_on(uploader.send(body, uploader.config().timeout_for(0)));
        match sent {
            Ok(_) => {}
            // Relay counts what it rate limits itself.
            Err(crate::sentry::UploadError::RateLimited { .. }) => {}
            Err(e) => {
                tracing::debug!("failed to send {} forwarded log line(s): {e}", logs.len());
                let (lock, _) = shared;
                let mut queue = lock.lock().unwrap_or_else(|e| e.into_inner());
                // The client report rides with the next batch.
                queue.lost.merge(&lost);
                if !limited {
                    queue.lost.add(DiscardReason::NetworkError, Category::LogItem, logs.len() as u64);
                    queue.lost.add(DiscardReason::NetworkError, Category::LogByte, bytes);
                }
                if closed {
                    return;
                }
            }
        }
    }
}

/// One log as Sentry Logs define it.
fn log(record: &Record, settings: &LogSettings, trace_id: &str, server: &str) -> Value {
    let level = match record.level {
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warning => "warn",
        Level::Error => "error",
        Level::Critical => "fatal",
    };
    let string = |v: &str| json!({"value": v, "type": "string"});
    let mut attributes = serde_json::Map::new();
    if let Some(release) = &settings.release {
        attributes.insert("sentry.release".into(), string(release));
    }
    if let Some(environment) = &settings.environment {
        attributes.insert("sentry.environment".into(), string(environment));
    }
    attributes.insert("server.address".into(), string(server));
    attributes.insert("crashwatch.stream".into(), string(record.stream.name()));
    attributes.insert("sentry.origin".into(), string("auto.log.crashwatch"));
    let timestamp = record.at.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    json!({
        "timestamp": timestamp,
        "trace_id": trace_id,
        "level": level,
        "body": settings.scrubber.scrub(&record.body),
        "attributes": attributes,
    })
}

/// The envelope of `logs` (none: a client report alone).
fn envelope(out: &mut Vec<u8>, dsn: &Dsn, now: SystemTime, logs: &[Value], lost: &DiscardedCounts) {
    let header = json!({"dsn": dsn.to_envelope_header(), "sent_at": format_timestamp(now)});
    out.extend_from_slice(header.to_string().as_bytes());
    out.push(b'\n');
    if !logs.is_empty() {
        let payload = json!({"items": logs}).to_string();
        let item = json!({
            "type": "log",
            "length": payload.len(),
            "item_count": logs.len(),
            "content_type": "application/vnd.sentry.items.log+json",
        });
        out.extend_from_slice(item.to_string().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(payload.as_bytes());
        out.push(b'\n');
    }
    if !lost.is_empty() {
        let payload = lost.to_payload(now);
        let item = json!({"type": "client_report", "length": payload.len()});
        out.extend_from_slice(item.to_string().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&payload);
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_of_logs_is_framed_as_relay_reads_it() {
        let dsn: Dsn = "http://0123456789abcdef0123456789abcdef@127.0.0.1:1/42".parse().unwrap();
        let settings = LogSettings {
            level: Level::Info,
            release: Some("r@1".into()),
            environment: None,
            scrubber: Scrubber::new(&[]).unwrap(),
        };
        let record = Record {
            at: SystemTime::now(),
            level: Level::Error,
            stream: Stream::Stderr,
            body: "password=hunter2".into(),
        };
        let logs = vec![log(&record, &settings, &"a".repeat(32), "host")];
        let mut lost = DiscardedCounts::default();
        lost.add(DiscardReason::QueueOverflow, Category::LogItem, 3);
        let mut out = Vec::new();
        envelope(&mut out, &dsn, SystemTime::now(), &logs, &lost);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let item: Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(item["item_count"], 1);
        assert_eq!(item["length"].as_u64(), Some(lines[2].len() as u64));
        let payload: Value = serde_json::from_str(lines[2]).unwrap();
        let log = &payload["items"][0];
        assert_eq!(log["body"], "password=[Filtered]");
        assert_eq!(log["level"], "error");
        assert_eq!(log["attributes"]["sentry.release"]["value"], "r@1");
        assert_eq!(log["attributes"]["crashwatch.stream"]["value"], "stderr");
        let report: Value = serde_json::from_str(lines[4]).unwrap();
        assert_eq!(report["discarded_events"][0]["category"], "log_item");
        assert_eq!(report["discarded_events"][0]["reason"], "queue_overflow");
    }
}
