//! The checks a real Relay 26.9 makes on `POST /api/{project}/envelope/`,
//! and Relay's envelope parser.

use std::io::Read;

use serde_json::{Map, Value};

use super::{Envelope, HttpRequest, Item, KEY, Limits, PROJECT};

pub(crate) type Invalid = (u16, String, Vec<String>);

fn invalid(status: u16, detail: &str) -> Invalid {
    (status, detail.to_owned(), Vec::new())
}

fn bad_envelope(cause: &str) -> Invalid {
    (400, "invalid event envelope".to_owned(), vec![cause.to_owned()])
}

pub(crate) fn validate(request: &HttpRequest, limits: &Limits) -> Result<Envelope, Invalid> {
    if request.method != "POST" {
        return Err(invalid(405, "method not allowed"));
    }
    let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
    let project = path
        .strip_prefix("/api/")
        .and_then(|rest| rest.strip_suffix("/envelope/"))
        .ok_or_else(|| invalid(404, "not found"))?;
    let project: u64 = project.parse().map_err(|_| invalid(400, "bad project path parameter"))?;
    if project != PROJECT {
        return Err(invalid(400, "project id does not match the dsn"));
    }

    // Auth: exactly one form, Relay refuses two at once.
    let sentry_auth = request.headers("x-sentry-auth");
    let authorization =
        request.headers("authorization").into_iter().filter(|v| v.to_ascii_lowercase().starts_with("sentry ")).count();
    let forms = sentry_auth.len() + authorization + usize::from(query.contains("sentry_"));
    if forms == 0 {
        return Err(invalid(401, "missing authorization information"));
    }
    if forms > 1 {
        return Err(invalid(401, "multiple authorization payloads detected"));
    }
    let auth: sentry_types::Auth = sentry_auth[0].parse().map_err(|_| invalid(401, "bad x-sentry-auth header"))?;
    if auth.public_key() != KEY {
        return Err(invalid(401, "unknown public key"));
    }
    if auth.version() != 7 {
        return Err(invalid(400, "unsupported protocol version"));
    }
    if !auth.client_agent().unwrap_or("").starts_with("crashwatch/") {
        return Err(invalid(400, "stricter than relay: sentry_client is not crashwatch/…"));
    }
    if request.header("content-type") != Some("application/x-sentry-envelope") {
        return Err(invalid(415, "stricter than relay: content type is not application/x-sentry-envelope"));
    }

    let encoding = request.header("content-encoding").map(str::to_owned);
    let body = decode(encoding.as_deref(), &request.body, limits.max_envelope)?;
    if body.len() > limits.max_envelope {
        return Err(invalid(413, "envelope exceeded size limits"));
    }
    let (header, items) = parse(&body)?;

    if let Some(id) = header.get("event_id") {
        let id = id.as_str().unwrap_or("");
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad_envelope("invalid envelope header"));
        }
    }
    if let Some(dsn) = header.get("dsn") {
        let dsn: sentry_types::Dsn =
            dsn.as_str().unwrap_or("").parse().map_err(|_| bad_envelope("invalid envelope header"))?;
        if dsn.public_key() != KEY || dsn.project_id().value() != PROJECT.to_string() {
            return Err(bad_envelope("dsn header mismatch between envelope and request"));
        }
    }
    if let Some(sent_at) = header.get("sent_at") {
        let ok = sent_at
            .as_str()
            .is_some_and(|s| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok());
        if !ok {
            return Err(bad_envelope("invalid envelope header"));
        }
    }

    if items.len() > limits.max_items {
        return Err(invalid(400, "envelope exceeded item count limit"));
    }
    let mut attachments = 0;
    let mut sessions = 0;
    let mut check_ins = 0;
    for item in &items {
        if !item.header.contains_key("length") {
            return Err(bad_envelope("stricter than relay: item without length"));
        }
        match item.ty() {
            "event" => {
                if item.payload.len() > limits.max_event {
                    return Err(invalid(413, "event exceeded size limits"));
                }
                let event: Value =
                    serde_json::from_slice(&item.payload).map_err(|_| invalid(400, "invalid event json"))?;
                let Some(event) = event.as_object() else {
                    return Err(invalid(400, "event is not an object"));
                };
                if let (Some(a), Some(b)) = (event.get("event_id"), header.get("event_id"))
                    && a != b
                {
                    return Err(invalid(400, "event_id mismatch between event and envelope"));
                }
            }
            "attachment" => {
                attachments += 1;
                if item.payload.len() > limits.max_attachment {
                    return Err(invalid(413, "attachment exceeded size limits"));
                }
                if item.header.get("filename").and_then(Value::as_str).is_none() {
                    return Err(bad_envelope("attachment without filename"));
                }
                match item.attachment_type() {
                    Some("event.minidump") => {
                        if !item.payload.starts_with(b"MDMP") {
                            return Err(invalid(400, "invalid minidump file"));
                        }
                    }
                    Some("event.attachment") | None => {}
                    Some(other) => {
                        return Err(invalid(400, &format!("unexpected attachment type {other}")));
                    }
                }
            }
            "client_report" => {
                let report: Value =
                    serde_json::from_slice(&item.payload).map_err(|_| invalid(400, "invalid client report"))?;
                let entries = report["discarded_events"]
                    .as_array()
                    .ok_or_else(|| invalid(400, "client report without discarded_events"))?;
                for entry in entries {
                    let ok = entry["reason"].is_string() && entry["category"].is_string() && entry["quantity"].is_u64();
                    if !ok {
                        return Err(invalid(400, "invalid client report entry"));
                    }
                }
            }
            // Checked after the answer (see items.rs); here only their
            // limits: 100 session items, one check-in of 100 KiB.
            "session" | "sessions" => sessions += 1,
            "check_in" => {
                check_ins += 1;
                if item.payload.len() > limits.max_check_in {
                    return Err(invalid(413, "envelope exceeded size limits"));
                }
            }
            // Sentry Logs: a container of at most 100 logs, each with the
            // fields Relay's log processing requires.
            "log" => {
                if item.header.get("content_type").and_then(Value::as_str)
                    != Some("application/vnd.sentry.items.log+json")
                {
                    return Err(invalid(400, "log item without its content type"));
                }
                let container: Value =
                    serde_json::from_slice(&item.payload).map_err(|_| invalid(400, "invalid log container"))?;
                let logs = container["items"].as_array().ok_or_else(|| invalid(400, "log container without items"))?;
                if item.header.get("item_count").and_then(Value::as_u64) != Some(logs.len() as u64) {
                    return Err(invalid(400, "item_count does not match the logs"));
                }
                if logs.len() > 100 {
                    return Err(invalid(400, "more than 100 logs in one item"));
                }
                for log in logs {
                    let trace = log["trace_id"]
                        .as_str()
                        .is_some_and(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()));
                    let level = ["trace", "debug", "info", "warn", "error", "fatal"]
                        .contains(&log["level"].as_str().unwrap_or(""));
                    if !(log["timestamp"].is_number() && trace && level && log["body"].is_string()) {
                        return Err(invalid(400, "invalid log"));
                    }
                }
            }
            other => {
                return Err(bad_envelope(&format!("stricter than relay: unexpected item type {other}")));
            }
        }
    }
    if attachments > limits.max_attachments {
        return Err(invalid(400, "too many attachments"));
    }
    if sessions > limits.max_sessions {
        return Err(invalid(413, "envelope exceeded size limits"));
    }
    if check_ins > 1 {
        return Err(bad_envelope("stricter than relay: more than one check-in in an envelope"));
    }
    Ok(Envelope {
        header,
        items,
        content_encoding: encoding,
        compressed_len: request.body.len(),
        decompressed_len: body.len(),
        body,
    })
}

fn decode(encoding: Option<&str>, body: &[u8], max: usize) -> Result<Vec<u8>, Invalid> {
    let mut out = Vec::new();
    let result = match encoding {
        None | Some("identity") => return Ok(body.to_vec()),
        Some("gzip") => flate2::read::GzDecoder::new(body).take(max as u64 + 1).read_to_end(&mut out),
        Some("deflate") => flate2::read::ZlibDecoder::new(body).take(max as u64 + 1).read_to_end(&mut out),
        Some(other) => {
            return Err(invalid(415, &format!("unsupported content encoding {other}")));
        }
    };
    result.map_err(|_| invalid(400, "failed to decode request body"))?;
    Ok(out)
}

/// Relay's parser: each header is one JSON value followed by `\n` or the end;
/// with `length` exactly that many payload bytes follow, then `\n` or the end.
fn parse(bytes: &[u8]) -> Result<(Map<String, Value>, Vec<Item>), Invalid> {
    let (header, mut offset) = parse_header(bytes, 0)?;
    let mut items = Vec::new();
    while offset < bytes.len() {
        let (header, payload_start) = parse_header(bytes, offset)?;
        let payload_start = payload_start.min(bytes.len());
        let payload_end = match header.get("length") {
            Some(len) => {
                let len = len.as_u64().ok_or_else(|| bad_envelope("invalid item header"))? as usize;
                let end = payload_start + len;
                if end > bytes.len() {
                    return Err(bad_envelope("unexpected end of file"));
                }
                require_newline(bytes, end)?;
                end
            }
            None => bytes[payload_start..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |p| payload_start + p),
        };
        items.push(Item { header, payload: bytes[payload_start..payload_end].to_vec() });
        offset = payload_end + 1;
    }
    Ok((header, items))
}

fn parse_header(bytes: &[u8], offset: usize) -> Result<(Map<String, Value>, usize), Invalid> {
    let mut stream = serde_json::Deserializer::from_slice(&bytes[offset..]).into_iter::<Map<String, Value>>();
    let header = match stream.next() {
        Some(Ok(header)) => header,
        Some(Err(_)) => return Err(bad_envelope("invalid envelope header")),
        None => return Err(bad_envelope("missing envelope header")),
    };
    let end = offset + stream.byte_offset();
    require_newline(bytes, end)?;
    Ok((header, end + 1))
}

fn require_newline(bytes: &[u8], at: usize) -> Result<(), Invalid> {
    match bytes.get(at) {
        None | Some(b'\n') => Ok(()),
        Some(_) => Err(bad_envelope("missing newline after header or payload")),
    }
}
