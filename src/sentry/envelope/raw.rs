//! Envelopes read back from the outbox, for rewriting.
//!
//! The parser follows Relay's own (`relay-server/src/envelope.rs`): a header
//! is one JSON value followed by `\n` or the end of input; with `length`,
//! exactly that many payload bytes follow, then `\n` or the end; without it,
//! the payload runs to the next `\n`. Rewriting always writes `length`.

use std::time::SystemTime;

use serde_json::{Map, Value};

use super::{
    EnvelopeError, ItemType, Summary, format_timestamp, mark_dropped, simple_item_header, write_item, write_json_line,
};
use crate::sentry::client_report::{Category, DiscardReason, DiscardedCounts};
use crate::sentry::dsn::Dsn;

/// One item of a [`RawEnvelope`].
#[derive(Debug, Clone, PartialEq)]
pub struct RawItem {
    /// The item header.
    pub header: Map<String, Value>,
    /// The payload.
    pub payload: Vec<u8>,
}

impl RawItem {
    /// The item `type`.
    pub fn ty(&self) -> &str {
        self.header.get("type").and_then(Value::as_str).unwrap_or("")
    }

    /// The `attachment_type` of an attachment item.
    pub fn attachment_type(&self) -> Option<&str> {
        self.header.get("attachment_type").and_then(Value::as_str)
    }

    /// True for the minidump, whichever its attachment type.
    pub fn is_minidump(&self) -> bool {
        let content_type = self.header.get("content_type").and_then(Value::as_str).unwrap_or("");
        self.ty() == "attachment" && super::is_minidump(self.attachment_type().unwrap_or(""), content_type)
    }
}

/// An envelope read back from bytes, for rewriting.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEnvelope {
    /// The envelope header.
    pub header: Map<String, Value>,
    /// The items, in order.
    pub items: Vec<RawItem>,
}

impl RawEnvelope {
    /// Parses bytes with Relay's algorithm (see the module docs).
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let (header, mut offset) = parse_json_line(bytes, 0)?;
        let mut items = Vec::new();
        while offset < bytes.len() {
            let (header, payload_start) = parse_json_line(bytes, offset)?;
            let payload_start = payload_start.min(bytes.len());
            let payload_end = match header.get("length") {
                Some(length) => {
                    let length = length.as_u64().ok_or(EnvelopeError::Malformed("item length is not a number"))?;
                    let end = usize::try_from(length)
                        .ok()
                        .and_then(|l| payload_start.checked_add(l))
                        .filter(|&end| end <= bytes.len())
                        .ok_or(EnvelopeError::Malformed("item payload is truncated"))?;
                    require_newline(bytes, end)?;
                    end
                }
                None => {
                    bytes[payload_start..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |p| payload_start + p)
                }
            };
            items.push(RawItem { header, payload: bytes[payload_start..payload_end].to_vec() });
            offset = payload_end + 1;
        }
        Ok(Self { header, items })
    }

    /// Serializes with an explicit `length` on every item.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = write_json_line(&mut out, &self.header);
        for item in &self.items {
            let mut header = item.header.clone();
            header.insert("length".to_owned(), Value::from(item.payload.len() as u64));
            let _ = write_item(&mut out, &header, &item.payload);
        }
        out
    }

    /// Sets `sent_at` and `dsn` in the header (see [`with_fresh_header`]).
    pub fn refresh_header(&mut self, sent_at: SystemTime, dsn: &Dsn) {
        set_header(&mut self.header, sent_at, dsn);
    }

    /// Counts what the envelope carries.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        for item in &self.items {
            summary.count(item.ty(), item.payload.len() as u64, item.is_minidump());
        }
        summary
    }

    /// Removes attachments matching `pred`, marks the event for each one, and
    /// counts the losses into a `client_report` item appended to this envelope.
    ///
    /// Returns the number of bytes dropped.
    pub fn drop_attachments(
        &mut self,
        pred: impl Fn(&RawItem) -> bool,
        reason: DiscardReason,
        why: &str,
        now: SystemTime,
    ) -> u64 {
        let (dropped, kept): (Vec<RawItem>, Vec<RawItem>) =
            std::mem::take(&mut self.items).into_iter().partition(|item| item.ty() == "attachment" && pred(item));
        self.items = kept;
        if dropped.is_empty() {
            return 0;
        }
        let mut counts = DiscardedCounts::default();
        let mut total = 0;
        for item in &dropped {
            let size = item.payload.len() as u64;
            total += size;
            counts.add(reason, Category::Attachment, size);
            let filename = item.header.get("filename").and_then(Value::as_str).unwrap_or("");
            let attachment_type = item.attachment_type().unwrap_or("event.attachment");
            let minidump = item.is_minidump();
            self.mark_event(|event| mark_dropped(event, filename, attachment_type, minidump, size, why));
        }
        self.add_client_report(&counts, now);
        total
    }

    /// Removes the session and check-in items of the types in `types`,
    /// counting each as a loss of its category into the envelope's
    /// `client_report` item. Returns how many were removed.
    pub fn drop_items(&mut self, types: &[ItemType], reason: DiscardReason, now: SystemTime) -> usize {
        let doomed = |item: &RawItem| ItemType::parse(item.ty()).is_some_and(|t| types.contains(&t));
        let mut counts = DiscardedCounts::default();
        let before = self.items.len();
        self.items.retain(|item| {
            if doomed(item) {
                if let Some(ty) = ItemType::parse(item.ty()) {
                    counts.add(reason, ty.category(), 1);
                }
                false
            } else {
                true
            }
        });
        self.add_client_report(&counts, now);
        before - self.items.len()
    }

    /// Adds the counts to the envelope's `client_report` item, creating it.
    pub fn add_client_report(&mut self, counts: &DiscardedCounts, now: SystemTime) {
        if counts.is_empty() {
            return;
        }
        let mut merged = counts.clone();
        if let Some(index) = self.items.iter().position(|i| i.ty() == "client_report") {
            let existing = self.items.remove(index);
            if let Ok(old) = serde_json::from_slice::<ClientReportIn>(&existing.payload) {
                merged.merge(&DiscardedCounts::from_entries(&old.discarded_events));
            }
        }
        let payload = merged.to_payload(now);
        self.items.push(RawItem { header: simple_item_header("client_report", payload.len() as u64), payload });
    }

    fn mark_event(&mut self, mark: impl FnOnce(&mut Value)) {
        let Some(item) = self.items.iter_mut().find(|i| i.ty() == "event") else {
            return;
        };
        // A stored event that no longer parses is left alone: the drop is
        // still counted in the client report.
        if let Ok(mut event) = serde_json::from_slice::<Value>(&item.payload) {
            mark(&mut event);
            if let Ok(payload) = serde_json::to_vec(&event) {
                item.payload = payload;
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct ClientReportIn {
    #[serde(default)]
    discarded_events: Vec<crate::sentry::client_report::Discarded>,
}

/// Replaces the header line of `bytes` by one with a fresh `sent_at` and the
/// DSN the envelope is about to be sent with, without touching (or copying
/// twice) the items. Used on every send.
///
/// The DSN is refreshed because Relay answers 400 when the envelope's `dsn`
/// disagrees with the request's auth: without this, changing crashwatch's DSN
/// would get every report already in the outbox rejected.
pub fn with_fresh_header(bytes: &[u8], sent_at: SystemTime, dsn: &Dsn) -> Result<Vec<u8>, EnvelopeError> {
    let (mut header, rest) = parse_json_line(bytes, 0)?;
    set_header(&mut header, sent_at, dsn);
    let mut out = Vec::with_capacity(bytes.len() + 16);
    write_json_line(&mut out, &header)?;
    out.extend_from_slice(&bytes[rest.min(bytes.len())..]);
    Ok(out)
}

fn set_header(header: &mut Map<String, Value>, sent_at: SystemTime, dsn: &Dsn) {
    header.insert("dsn".to_owned(), Value::from(dsn.to_envelope_header()));
    header.insert("sent_at".to_owned(), Value::from(format_timestamp(sent_at)));
}

/// Parses one JSON object at `offset` and requires `\n` or the end after it.
/// Returns the object and the offset just past the newline.
fn parse_json_line(bytes: &[u8], offset: usize) -> Result<(Map<String, Value>, usize), EnvelopeError> {
    let slice = &bytes[offset..];
    let mut stream = serde_json::Deserializer::from_slice(slice).into_iter::<Map<String, Value>>();
    let header = match stream.next() {
        None => return Err(EnvelopeError::Malformed("missing header")),
        Some(Err(e)) => return Err(EnvelopeError::MalformedHeader(e)),
        Some(Ok(header)) => header,
    };
    let end = offset + stream.byte_offset();
    require_newline(bytes, end)?;
    Ok((header, end + 1))
}

fn require_newline(bytes: &[u8], at: usize) -> Result<(), EnvelopeError> {
    match bytes.get(at) {
        None | Some(b'\n') => Ok(()),
        Some(_) => Err(EnvelopeError::Malformed("missing newline after header or payload")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentry::envelope::tests::{at, crash_envelope, dsn};

    #[test]
    fn raw_roundtrip_and_relay_rules() {
        let bytes = crash_envelope().to_vec(&dsn(), at(1)).unwrap();
        let raw = RawEnvelope::parse(&bytes).unwrap();
        assert_eq!(raw.items.len(), 3);
        assert_eq!(raw.items[1].payload, b"MDMP\n\r\nxx");
        assert_eq!(raw.to_vec(), bytes);

        let crlf = String::from_utf8(bytes.clone()).unwrap().replacen("}\n", "}\r\n", 1);
        assert!(matches!(
            RawEnvelope::parse(crlf.as_bytes()),
            Err(EnvelopeError::Malformed("missing newline after header or payload"))
        ));
        let wrong_length = String::from_utf8(bytes).unwrap().replace(r#""length":14"#, r#""length":13"#);
        assert!(RawEnvelope::parse(wrong_length.as_bytes()).is_err());
    }

    #[test]
    fn dropping_the_minidump_marks_the_event_and_reports_it() {
        let bytes = crash_envelope().to_vec(&dsn(), at(1)).unwrap();
        let mut raw = RawEnvelope::parse(&bytes).unwrap();
        let dropped = raw.drop_attachments(RawItem::is_minidump, DiscardReason::SendError, "too large", at(2));
        assert_eq!(dropped, 9);
        let types: Vec<&str> = raw.items.iter().map(RawItem::ty).collect();
        assert_eq!(types, ["event", "attachment", "client_report"]);
        let event: Value = serde_json::from_slice(&raw.items[0].payload).unwrap();
        assert_eq!(event["tags"]["minidump_dropped"], "too large");
        assert_eq!(event["extra"]["dropped_attachments"][0]["size"], 9);
        let report: Value = serde_json::from_slice(&raw.items[2].payload).unwrap();
        assert_eq!(
            report["discarded_events"],
            serde_json::json!([{"reason": "send_error", "category": "attachment", "quantity": 9}])
        );
    }

    #[test]
    fn fresh_header_only_touches_the_header() {
        let bytes = crash_envelope().to_vec(&dsn(), at(1)).unwrap();
        let other: Dsn = "https://ffffffffffffffffffffffffffffffff@relay.example/7".parse().unwrap();
        let fresh = with_fresh_header(&bytes, at(1_700_000_000), &other).unwrap();
        let raw = RawEnvelope::parse(&fresh).unwrap();
        assert_eq!(raw.header["sent_at"], "2023-11-14T22:13:20Z");
        assert_eq!(raw.header["dsn"], "https://ffffffffffffffffffffffffffffffff@relay.example/7");
        assert_eq!(raw.header["event_id"], crate::sentry::envelope::tests::EVENT_ID);
        assert_eq!(raw.items, RawEnvelope::parse(&bytes).unwrap().items);
    }
}
