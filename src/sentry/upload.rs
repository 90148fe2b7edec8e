//! One HTTP request to Relay, and what its answer means.
//!
//! The body is the envelope compressed with gzip (`Content-Encoding: gzip`,
//! which every Relay accepts; a crash envelope is mostly minidump, which gzip
//! shrinks well). The answer is classified the way Relay classifies the
//! answers of its own upstream, so that only what can succeed later is retried:
//!
//! | answer                          | error                    | what flush does            |
//! |---------------------------------|--------------------------|----------------------------|
//! | 2xx                             | —                        | delete the entry           |
//! | 429                             | `RateLimited`            | persist limits, wait       |
//! | 413                             | `PayloadTooLarge`        | drop the minidump, resend  |
//! | other 4xx                       | `Rejected` (permanent)   | move to `rejected/`        |
//! | 5xx                             | `ServerError`            | backoff and retry          |
//! | refused, reset, DNS, timeout    | `Connect`/`Timeout`/`SendFailed` | backoff and retry  |
//!
//! `X-Sentry-Rate-Limits` is read from every answer, not only from 429s, and
//! kept in memory here; the flush also persists it in the outbox.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use hyper::body::{Bytes, Frame, SizeHint};
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use serde::Deserialize;

use crate::sentry::clock::Clock;
use crate::sentry::dsn::Dsn;
use crate::sentry::rate_limit::RateLimits;

/// Uploader settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploaderConfig {
    /// Time allowed to establish the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Time allowed for a small request, answer included.
    pub request_timeout: Duration,
    /// Bytes per second a large upload is assumed to reach at least; a 50 MiB
    /// minidump gets `request_timeout + size / min_throughput`.
    pub min_throughput: u64,
    /// gzip level, 0–9. 6 is zlib's default trade-off.
    pub compression_level: u32,
    /// An attachment-only rate limit shorter than this is waited out; a longer
    /// one (an exhausted attachment quota) sends the event without attachments
    /// rather than delaying the crash report for hours.
    pub attachment_limit_patience: Duration,
}

impl Default for UploaderConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            min_throughput: 256 * 1024,
            compression_level: 6,
            attachment_limit_patience: Duration::from_secs(15 * 60),
        }
    }
}

impl UploaderConfig {
    /// The timeout for a request with a body of `len` bytes.
    pub fn timeout_for(&self, len: usize) -> Duration {
        let transfer = Duration::from_secs(len as u64 / self.min_throughput.max(1));
        self.request_timeout.saturating_add(transfer)
    }
}

/// Why a request did not deliver the envelope.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The HTTP client could not be built (TLS setup).
    #[error("failed to build the http client")]
    Client(#[source] reqwest::Error),
    /// Compressing the body failed.
    #[error("failed to compress the envelope")]
    Compress(#[source] std::io::Error),
    /// No connection: refused, unreachable, DNS, TLS handshake.
    #[error("failed to connect to relay")]
    Connect(#[source] reqwest::Error),
    /// The request or the answer took longer than allowed. `body_sent`:
    /// the whole envelope had been handed to the connection, so Relay has
    /// most likely received it and only its answer is missing.
    #[error("request to relay timed out{}", if *.body_sent { " after the envelope was sent, without an answer" } else { "" })]
    Timeout {
        #[source]
        source: reqwest::Error,
        body_sent: bool,
    },
    /// The connection broke while sending or receiving.
    #[error("failed to send the envelope to relay")]
    SendFailed(#[source] reqwest::Error),
    /// 429: Relay (or Sentry behind it) rate limited the envelope.
    #[error("relay rate limited the envelope")]
    RateLimited {
        /// The limits the answer announced.
        limits: RateLimits,
    },
    /// 413: the envelope or one of its items is over a size limit.
    #[error("relay refused the envelope as too large{}", detail_suffix(.detail))]
    PayloadTooLarge {
        /// Relay's `detail`.
        detail: Option<String>,
    },
    /// Any other 4xx: Relay will never accept this envelope.
    #[error("relay rejected the envelope with status {status}{}", detail_suffix(.detail))]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// Relay's `detail`.
        detail: Option<String>,
        /// Relay's `causes`.
        causes: Vec<String>,
    },
    /// 5xx: Relay or something in front of it failed; may work later.
    #[error("relay answered with status {status}{}", detail_suffix(.detail))]
    ServerError {
        /// The HTTP status.
        status: u16,
        /// Relay's `detail`, when the body had one.
        detail: Option<String>,
    },
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
}

impl UploadError {
    /// Relay's `is_network_error`: the request did not reach a working Relay,
    /// so every other envelope would fail the same way right now.
    pub fn is_network_error(&self) -> bool {
        match self {
            Self::Connect(_) | Self::Timeout { .. } | Self::SendFailed(_) => true,
            Self::ServerError { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }

    /// Relay answered and will never accept this envelope.
    pub fn is_permanent_rejection(&self) -> bool {
        matches!(self, Self::Rejected { .. })
    }

    /// Sending the same envelope later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.is_network_error() || matches!(self, Self::ServerError { .. })
    }
}

/// A 2xx answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The HTTP status.
    pub status: u16,
    /// Limits announced along with the success (Relay does not do this today,
    /// but the SDK protocol allows it).
    pub rate_limits: RateLimits,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    detail: Option<String>,
    #[serde(default)]
    causes: Vec<String>,
}

/// Sends envelopes to the Relay named by a DSN.
#[derive(Debug)]
pub struct Uploader {
    client: reqwest::Client,
    dsn: Dsn,
    url: reqwest::Url,
    auth: String,
    config: UploaderConfig,
    clock: Arc<dyn Clock>,
    limits: Mutex<RateLimits>,
}

impl Uploader {
    /// An uploader for `dsn`.
    pub fn new(dsn: Dsn, config: UploaderConfig, clock: Arc<dyn Clock>) -> Result<Self, UploadError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .user_agent(crate::sentry::CLIENT_NAME)
            .build()
            .map_err(UploadError::Client)?;
        Ok(Self {
            client,
            url: dsn.envelope_url(),
            auth: dsn.auth_header(),
            dsn,
            config,
            clock,
            limits: Mutex::new(RateLimits::new()),
        })
    }

    /// The DSN.
    pub fn dsn(&self) -> &Dsn {
        &self.dsn
    }

    /// The settings.
    pub fn config(&self) -> &UploaderConfig {
        &self.config
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The limits known to this process, expired ones pruned.
    pub fn rate_limits(&self) -> RateLimits {
        let mut limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        limits.prune(self.clock.now());
        limits.clone()
    }

    /// Adds limits learnt elsewhere (the outbox's persisted ones).
    pub fn merge_rate_limits(&self, other: &RateLimits) {
        let mut limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        limits.merge(other);
    }

    /// Compresses and POSTs one envelope, allowing it `timeout` in total.
    pub async fn send(&self, envelope: Vec<u8>, timeout: Duration) -> Result<Accepted, UploadError> {
        let level = self.config.compression_level.min(9);
        let body = tokio::task::spawn_blocking(move || gzip(&envelope, level))
            .await
            .map_err(|e| UploadError::Compress(std::io::Error::other(e)))?
            .map_err(UploadError::Compress)?;

        let body_sent = Arc::new(AtomicBool::new(false));
        let response = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/x-sentry-envelope")
            .header(CONTENT_ENCODING, "gzip")
            .header("X-Sentry-Auth", &self.auth)
            .timeout(timeout)
            .body(reqwest::Body::wrap(Tracked::new(body, Arc::clone(&body_sent))))
            .send()
            .await
            .map_err(|e| classify_reqwest(e, body_sent.load(Ordering::SeqCst)))?;

        let status = response.status().as_u16();
        let limits = self.limits_from(status, response.headers());
        if !limits.is_empty() {
            self.merge_rate_limits(&limits);
        }
        if (200..300).contains(&status) {
            return Ok(Accepted { status, rate_limits: limits });
        }
        if status == 429 {
            return Err(UploadError::RateLimited { limits });
        }
        // Relay's error bodies are small JSON; anything larger is not Relay
        // speaking and is not worth buffering.
        let body = read_limited(response, 64 * 1024).await;
        let parsed: Option<ApiErrorBody> = serde_json::from_slice(&body).ok();
        let (detail, causes) = match parsed {
            Some(b) => (b.detail, b.causes),
            None if body.is_empty() => (None, Vec::new()),
            None => (Some(String::from_utf8_lossy(&body).into_owned()), Vec::new()),
        };
        Err(match status {
            413 => UploadError::PayloadTooLarge { detail },
            // 408 is the server giving up on a slow request: a network problem.
            400..=499 if status != 408 => UploadError::Rejected { status, detail, causes },
            _ => UploadError::ServerError { status, detail },
        })
    }

    fn limits_from(&self, status: u16, headers: &HeaderMap) -> RateLimits {
        let retry_after = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok());
        let sentry = headers.get("X-Sentry-Rate-Limits").and_then(|v| v.to_str().ok());
        RateLimits::from_response(status, retry_after, sentry, self.clock.now())
    }
}

fn classify_reqwest(error: reqwest::Error, body_sent: bool) -> UploadError {
    if error.is_timeout() {
        UploadError::Timeout { source: error, body_sent }
    } else if error.is_connect() {
        UploadError::Connect(error)
    } else {
        UploadError::SendFailed(error)
    }
}

async fn read_limited(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    // A body that breaks off mid-way still tells us the status; what was read
    // is good enough for a log line.
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    body
}

/// A request body handed to the connection in chunks, which notes when the
/// last one has been taken: the connection asks for the next chunk only once
/// it has room for it, so by then everything before it is on its way.
struct Tracked {
    body: Bytes,
    taken: usize,
    sent: Arc<AtomicBool>,
}

impl Tracked {
    const CHUNK: usize = 64 << 10;

    fn new(body: Vec<u8>, sent: Arc<AtomicBool>) -> Tracked {
        Tracked { body: Bytes::from(body), taken: 0, sent }
    }
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let start = self.taken;
        if start >= self.body.len() {
            self.sent.store(true, Ordering::SeqCst);
            return std::task::Poll::Ready(None);
        }
        let end = (start + Self::CHUNK).min(self.body.len());
        self.taken = end;
        if end == self.body.len() {
            self.sent.store(true, Ordering::SeqCst);
        }
        std::task::Poll::Ready(Some(Ok(Frame::data(self.body.slice(start..end)))))
    }

    fn is_end_stream(&self) -> bool {
        self.taken >= self.body.len()
    }

    fn size_hint(&self) -> SizeHint {
        // Exact: the request carries a Content-Length, as Relay expects.
        SizeHint::with_exact((self.body.len() - self.taken) as u64)
    }
}

/// gzip-compresses `data`.
pub fn gzip(data: &[u8], level: u32) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 2), Compression::new(level));
    encoder.write_all(data)?;
    encoder.finish()
}
