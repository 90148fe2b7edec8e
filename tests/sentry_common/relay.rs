//! A fake Relay on 127.0.0.1 that checks what a real Relay 26.9 checks.
//!
//! It is a small HTTP/1.1 server on a raw `TcpStream` rather than hyper so that
//! it can notice a client hanging up while a scripted slow answer is pending:
//! an envelope counts as delivered only if the fake actually answered 2xx to a
//! client that was still there, which is what "exactly once" tests need.
//!
//! Validation (see DESIGN.md, "Sentry") runs before any scripted answer, in
//! Relay's order: route and project id, auth, encoding, envelope framing, item
//! rules, size limits. Where our client must be stricter than Relay requires
//! (an explicit `length` on every item, known item types, our content type),
//! the fake is stricter too and says so in the detail.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

mod items;
mod validate;

use validate::validate;

pub const KEY: &str = "e12d836b15bb49d7bbf99e64295d995b";
pub const PROJECT: u64 = 42;

/// A scripted answer, used once, in order; when the script is empty the
/// fake answers 200.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with `{"id": …}`.
    Ok,
    /// 429 with `Retry-After` and, if given, `X-Sentry-Rate-Limits`.
    RateLimited { retry_after: u64, limits: Option<String> },
    /// Any status with `{"detail": …}`.
    Error { status: u16, detail: String },
    /// Waits this long, then 200, unless the client hung up first.
    Slow(Duration),
    /// Holds the answer until [`FakeRelay::release`], then 200, unless the
    /// client hung up first.
    Hold,
}

/// Relay's size limits; tests lower them to provoke a real 413.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_envelope: usize,
    pub max_attachment: usize,
    pub max_event: usize,
    pub max_items: usize,
    pub max_attachments: usize,
    pub max_sessions: usize,
    pub max_check_in: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_envelope: 200 * 1024 * 1024,
            max_attachment: 200 * 1024 * 1024,
            max_event: 1024 * 1024,
            max_items: 500,
            max_attachments: 30,
            max_sessions: 100,
            max_check_in: 100 * 1024,
        }
    }
}

/// One envelope item as received.
#[derive(Debug, Clone)]
pub struct Item {
    pub header: Map<String, Value>,
    pub payload: Vec<u8>,
}

impl Item {
    pub fn ty(&self) -> &str {
        self.header["type"].as_str().unwrap_or("")
    }

    pub fn attachment_type(&self) -> Option<&str> {
        self.header.get("attachment_type").and_then(Value::as_str)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).expect("item payload is json")
    }

    fn json_or_null(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }
}

/// A valid envelope the fake received.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub header: Map<String, Value>,
    pub items: Vec<Item>,
    pub content_encoding: Option<String>,
    pub compressed_len: usize,
    pub decompressed_len: usize,
    /// Every byte of the envelope as received, decompressed.
    pub body: Vec<u8>,
}

impl Envelope {
    pub fn event_id(&self) -> Option<&str> {
        self.header.get("event_id").and_then(Value::as_str)
    }

    pub fn item_types(&self) -> Vec<String> {
        self.items
            .iter()
            .map(|i| match i.attachment_type() {
                Some(t) => format!("attachment:{t}"),
                None => i.ty().to_owned(),
            })
            .collect()
    }

    pub fn event(&self) -> Option<Value> {
        self.items.iter().find(|i| i.ty() == "event").map(Item::json)
    }

    pub fn client_report(&self) -> Option<Value> {
        self.items.iter().find(|i| i.ty() == "client_report").map(Item::json)
    }

    /// The payloads of the items of type `ty`.
    pub fn items_of(&self, ty: &str) -> Vec<Value> {
        self.items.iter().filter(|i| i.ty() == ty).map(Item::json).collect()
    }
}

/// An item Relay accepted with its envelope and dropped afterwards.
#[derive(Debug, Clone)]
pub struct Dropped {
    pub ty: String,
    pub reason: String,
    pub payload: Value,
}

/// What became of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Valid and answered 2xx: delivered.
    Accepted,
    /// Valid, answered with a scripted non-2xx status.
    Scripted(u16),
    /// Failed validation; the fake answered like Relay would.
    Invalid { status: u16, detail: String },
    /// Valid, but the client hung up before the scripted slow answer.
    Abandoned,
    /// Body fully received; the answer is being held back (slow reply).
    Holding,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub event_id: Option<String>,
    pub outcome: Outcome,
    pub at: Instant,
}

#[derive(Debug, Default)]
pub struct State {
    /// Client connections open now.
    pub connections: usize,
    pub requests: Vec<Request>,
    pub accepted: Vec<Envelope>,
    /// Items of accepted envelopes that Relay's processing would drop.
    pub dropped: Vec<Dropped>,
    /// Items removed by an active quota, by category.
    pub rate_limited: Vec<(String, Value)>,
    script: VecDeque<Reply>,
    limits: Limits,
    /// Active quotas: data category and the seconds announced.
    quotas: Vec<(String, u64)>,
}

impl State {
    /// The payloads of the items of type `ty` in accepted envelopes, in the
    /// order they arrived.
    pub fn items_of(&self, ty: &str) -> Vec<Value> {
        self.accepted.iter().flat_map(|e| e.items_of(ty)).collect()
    }

    /// Envelopes carrying an event (client-report-only ones excluded).
    pub fn accepted_events(&self) -> Vec<&Envelope> {
        self.accepted.iter().filter(|e| e.event_id().is_some()).collect()
    }

    pub fn invalid(&self) -> Vec<&Request> {
        self.requests.iter().filter(|r| matches!(r.outcome, Outcome::Invalid { .. })).collect()
    }
}

struct Shared {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    release: tokio::sync::Notify,
}

impl Shared {
    fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.state.lock().unwrap());
        self.changed.send_modify(|n| *n += 1);
        r
    }
}

pub struct FakeRelay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback port with nothing listening on it (connections are refused).
pub fn unused_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

pub fn dsn_for(addr: SocketAddr) -> String {
    format!("http://{KEY}@{addr}/{PROJECT}")
}

impl FakeRelay {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind fake relay");
        let addr = listener.local_addr().unwrap();
        let (changed, _) = watch::channel(0);
        let shared =
            Arc::new(Shared { state: Mutex::new(State::default()), changed, release: tokio::sync::Notify::new() });
        let task = tokio::spawn({
            let shared = shared.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    tokio::spawn(serve_connection(stream, shared.clone()));
                }
            }
        });
        Self { addr, shared, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn dsn(&self) -> String {
        dsn_for(self.addr)
    }

    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.update(|s| s.script.extend(replies));
    }

    /// Lets every held answer go (see [`Reply::Hold`]).
    pub fn release(&self) {
        self.shared.release.notify_waiters();
    }

    pub fn set_limits(&self, limits: Limits) {
        self.shared.update(|s| s.limits = limits);
    }

    /// A quota of `category` (`error`, `session`, `monitor`…) is exhausted
    /// for `secs`: as Relay does, its items are removed from envelopes, and
    /// an envelope left empty is answered 429 with `X-Sentry-Rate-Limits`.
    pub fn exhaust_quota(&self, category: &str, secs: u64) {
        self.shared.update(|s| s.quotas.push((category.to_owned(), secs)));
    }

    pub fn with<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.shared.state.lock().unwrap())
    }

    /// Waits until `cond` holds, failing the test after `timeout`.
    pub async fn wait_until(&self, what: &str, timeout: Duration, cond: impl Fn(&State) -> bool) {
        let mut rx = self.shared.changed.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            if self.with(&cond) {
                return;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => panic!(
                    "fake relay: timed out waiting for {what}; requests: {:?}",
                    self.with(|s| s.requests.clone())
                ),
            }
        }
    }
}

pub(crate) struct HttpRequest {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) close: bool,
}

impl HttpRequest {
    pub(crate) fn headers(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers(name).first().copied()
    }
}

/// Counts a connection as open while it lives.
struct Open(Arc<Shared>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.update(|s| s.connections -= 1);
    }
}

async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    shared.update(|s| s.connections += 1);
    let _open = Open(shared.clone());
    let mut buf = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let (status, headers, body) = handle(&request, &mut stream, &shared).await;
        if status == 0 {
            return; // the client hung up
        }
        let mut response =
            format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n", body.len());
        for (name, value) in headers {
            response.push_str(&format!("{name}: {value}\r\n"));
        }
        response.push_str("\r\n");
        let mut bytes = response.into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        if stream.write_all(&bytes).await.is_err() || request.close {
            return;
        }
    }
}

async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<HttpRequest> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head_len)) = req.parse(buf) {
            let method = req.method?.to_owned();
            let path = req.path?.to_owned();
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < head_len + len {
                let mut chunk = [0u8; 64 * 1024];
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[head_len..head_len + len].to_vec();
            buf.drain(..head_len + len);
            let close =
                headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
            return Some(HttpRequest { method, path, headers, body, close });
        }
        let mut chunk = [0u8; 64 * 1024];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

type Response = (u16, Vec<(String, String)>, String);

fn error(status: u16, detail: impl Into<String>, causes: &[&str]) -> Response {
    let body = json!({"detail": detail.into(), "causes": causes}).to_string();
    (status, Vec::new(), body)
}

async fn handle(request: &HttpRequest, stream: &mut TcpStream, shared: &Shared) -> Response {
    let limits = shared.state.lock().unwrap().limits;
    let envelope = match validate(request, &limits) {
        Ok(envelope) => envelope,
        Err((status, detail, causes)) => {
            let causes: Vec<&str> = causes.iter().map(String::as_str).collect();
            shared.update(|s| {
                s.requests.push(Request {
                    event_id: None,
                    outcome: Outcome::Invalid { status, detail: detail.clone() },
                    at: Instant::now(),
                })
            });
            return error(status, detail, &causes);
        }
    };
    let mut envelope = envelope;
    let limited = apply_quotas(&mut envelope, shared);
    if let Some(header) = limited {
        shared.update(|s| {
            s.requests.push(Request {
                event_id: envelope.event_id().map(str::to_owned),
                outcome: Outcome::Scripted(429),
                at: Instant::now(),
            })
        });
        let headers = vec![("Retry-After".to_owned(), "60".to_owned()), ("X-Sentry-Rate-Limits".to_owned(), header)];
        return (429, headers, json!({"detail": "event submission rejected with_reason: RateLimited"}).to_string());
    }
    let event_id = envelope.event_id().map(str::to_owned);
    let reply = shared.update(|s| s.script.pop_front()).unwrap_or(Reply::Ok);
    let record = |outcome: Outcome| {
        shared.update(|s| {
            if outcome == Outcome::Accepted {
                s.accepted.push(envelope.clone());
                s.dropped.extend(dropped_items(&envelope));
            }
            s.requests.push(Request { event_id: event_id.clone(), outcome, at: Instant::now() });
        })
    };
    let ok_body = json!({"id": event_id}).to_string();
    match reply {
        Reply::Ok => {
            record(Outcome::Accepted);
            (200, Vec::new(), ok_body)
        }
        Reply::RateLimited { retry_after, limits } => {
            record(Outcome::Scripted(429));
            let mut headers = vec![("Retry-After".to_owned(), retry_after.to_string())];
            if let Some(limits) = limits {
                headers.push(("X-Sentry-Rate-Limits".to_owned(), limits));
            }
            (429, headers, json!({"detail": "event submission rejected with_reason: RateLimited"}).to_string())
        }
        Reply::Error { status, detail } => {
            record(Outcome::Scripted(status));
            error(status, detail, &[])
        }
        reply @ (Reply::Slow(_) | Reply::Hold) => {
            // Created before `Holding` is visible, so that a release sent as
            // soon as a test sees `Holding` cannot be missed.
            let released = shared.release.notified();
            let index = shared.update(|s| {
                s.requests.push(Request { event_id: event_id.clone(), outcome: Outcome::Holding, at: Instant::now() });
                s.requests.len() - 1
            });
            let mut probe = [0u8; 1];
            let wait = async {
                match reply {
                    Reply::Slow(delay) => tokio::time::sleep(delay).await,
                    _ => released.await,
                }
            };
            let hung_up = tokio::select! {
                _ = wait => false,
                // The client sent its whole request; a read returning now
                // means it closed the connection (timeout, or killed).
                _ = stream.read(&mut probe) => true,
            };
            shared.update(|s| {
                s.requests[index].outcome = if hung_up {
                    Outcome::Abandoned
                } else {
                    s.accepted.push(envelope.clone());
                    s.dropped.extend(dropped_items(&envelope));
                    Outcome::Accepted
                };
            });
            if hung_up { (0, Vec::new(), String::new()) } else { (200, Vec::new(), ok_body) }
        }
    }
}

/// The data category Relay counts an item under.
fn category(item: &Item) -> Option<&'static str> {
    match item.ty() {
        "event" => Some("error"),
        "attachment" => Some("attachment"),
        "session" | "sessions" => Some("session"),
        "check_in" => Some("monitor"),
        "log" => Some("log_item"),
        _ => None, // client reports are never rate limited
    }
}

/// Removes the items whose category's quota is exhausted (the attachments
/// of a limited event go with it); returns the `X-Sentry-Rate-Limits` of a
/// 429 when nothing is left.
fn apply_quotas(envelope: &mut Envelope, shared: &Shared) -> Option<String> {
    let quotas = shared.state.lock().unwrap().quotas.clone();
    if quotas.is_empty() {
        return None;
    }
    let limited = |category: &str| quotas.iter().find(|(c, _)| c == category);
    let event_limited = limited("error").is_some() && envelope.items.iter().any(|i| i.ty() == "event");
    let mut removed = Vec::new();
    let mut headers = Vec::new();
    envelope.items.retain(|item| {
        let category = category(item);
        let quota = category.and_then(limited);
        let gone = quota.is_some() || (event_limited && item.ty() == "attachment");
        if gone {
            removed.push((category.unwrap_or("").to_owned(), item.json_or_null()));
            if let Some((c, secs)) = quota {
                let header = format!("{secs}:{c}:key");
                if !headers.contains(&header) {
                    headers.push(header);
                }
            }
        }
        !gone
    });
    let empty = envelope.items.is_empty();
    shared.update(|s| s.rate_limited.extend(removed));
    empty.then(|| headers.join(", "))
}

fn dropped_items(envelope: &Envelope) -> Vec<Dropped> {
    let received = time::OffsetDateTime::now_utc();
    envelope
        .items
        .iter()
        .filter_map(|item| {
            let reason = items::dropped_because(item.ty(), &item.payload, envelope.header.get("sent_at"), received)?;
            Some(Dropped { ty: item.ty().to_owned(), reason, payload: item.json_or_null() })
        })
        .collect()
}
