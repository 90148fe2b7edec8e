//! Sentry envelopes, framed exactly as Relay parses them.
//!
//! ```text
//! {"event_id":"…","dsn":"…","sent_at":"…"}\n          envelope header, compact JSON
//! {"type":"event","length":N}\n<N bytes of JSON>\n     one item: header, payload
//! {"type":"attachment","length":M,"filename":…,"content_type":…,"attachment_type":…}\n<M bytes>\n
//! {"type":"client_report","length":K}\n<K bytes>\n
//! ```
//!
//! Relay reads each header as one JSON value and then requires a `\n` (or the
//! end of input) right after it; with `length` it takes exactly that many
//! payload bytes and again requires `\n` or the end. A `\r\n` or a wrong length
//! is a 400, so every item written here carries an explicit `length` and is
//! followed by a single `\n`, and payloads are never scanned for newlines.
//!
//! Two representations exist on purpose:
//! * [`Envelope`] is what the product hands over: the event as a JSON value and
//!   attachments that may be files of tens of MiB. It is written to the outbox
//!   by streaming, so a minidump is never held in memory twice.
//! * [`RawEnvelope`] is an envelope read back from the outbox, used only when
//!   it must be rewritten (drop the minidump after a 413, strip rate-limited
//!   attachments, refresh `sent_at`).
//!
//! Relay's limits (200 MiB per envelope and per attachment, 1 MiB per event,
//! 30 attachments) are enforced before anything is written: an oversized
//! attachment is dropped, the event says so (tag `minidump_dropped` and an
//! `extra` entry), and a `client_report` item counts the loss.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::SystemTime;

use sentry_types::protocol::v7::AttachmentType;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::sentry::client_report::{Category, DiscardReason, DiscardedCounts};
use crate::sentry::dsn::Dsn;

mod items;
mod limits;
mod raw;
mod rewrite;

pub use items::{Item, ItemType, MAX_CHECK_IN_BYTES, MAX_SESSIONS};
pub use limits::mark_dropped;
pub use raw::{RawEnvelope, RawItem, with_fresh_header};
pub use rewrite::Rewrite;

/// Relay's limits that decide what we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole envelope, uncompressed (Relay: 200 MiB).
    pub max_envelope_bytes: u64,
    /// One attachment (Relay: 200 MiB).
    pub max_attachment_bytes: u64,
    /// The event JSON (Relay: 1 MiB, a 413 otherwise).
    pub max_event_bytes: u64,
    /// Attachments per envelope (Relay: 30).
    pub max_attachments: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_envelope_bytes: 200 * 1024 * 1024,
            max_attachment_bytes: 200 * 1024 * 1024,
            max_event_bytes: 1024 * 1024,
            max_attachments: 30,
        }
    }
}

/// What went wrong building, writing or reading an envelope.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Sentry event ids are 32 hex digits.
    #[error("event id {0:?} is not 32 hexadecimal digits")]
    InvalidEventId(String),
    /// The event must be a JSON object.
    #[error("event is not a json object")]
    EventNotObject,
    /// The event JSON names another event id than the envelope.
    #[error("event json has event_id {found:?} but the envelope is for {expected}")]
    EventIdMismatch {
        /// The envelope's event id.
        expected: EventId,
        /// What the event JSON said.
        found: String,
    },
    /// Relay answers 413 to an event over 1 MiB; the product must trim it.
    #[error("event json is {size} bytes, over the {limit}-byte limit")]
    EventTooLarge {
        /// Serialized size.
        size: u64,
        /// The limit in force.
        limit: u64,
    },
    /// More attachments than Relay accepts in one envelope.
    #[error("envelope already has {limit} attachments, the most relay accepts")]
    TooManyAttachments {
        /// The limit in force.
        limit: usize,
    },
    /// More items of a type than Relay takes in one envelope.
    #[error("envelope already has {limit} {ty} item(s), the most relay accepts")]
    TooManyItems {
        /// The item type.
        ty: &'static str,
        /// The limit in force.
        limit: usize,
    },
    /// An item over Relay's size limit for its type.
    #[error("{ty} item is {size} bytes, over the {limit}-byte limit")]
    ItemTooLarge {
        /// The item type.
        ty: &'static str,
        /// Serialized size.
        size: u64,
        /// The limit in force.
        limit: u64,
    },
    /// Even without attachments the envelope does not fit.
    #[error("envelope is {size} bytes without attachments, over the {limit}-byte limit")]
    TooLarge {
        /// Size without attachments.
        size: u64,
        /// The limit in force.
        limit: u64,
    },
    /// An attachment file could not be inspected or read.
    #[error("failed to read attachment {path}")]
    ReadAttachment {
        /// The attachment's file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// An attachment file changed size while it was being copied.
    #[error("attachment {path} changed size while being written ({expected} bytes expected)")]
    AttachmentChanged {
        /// The attachment's file.
        path: PathBuf,
        /// The size seen before copying.
        expected: u64,
    },
    /// Writing the envelope failed.
    #[error("failed to write envelope")]
    Write(#[source] io::Error),
    /// A stored envelope does not parse (see the message for where).
    #[error("stored envelope is malformed: {0}")]
    Malformed(&'static str),
    /// A stored envelope has a header that is not JSON.
    #[error("stored envelope has an invalid header")]
    MalformedHeader(#[source] serde_json::Error),
}

/// A Sentry event id: 32 lowercase hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(String);

impl EventId {
    /// A new random (v4) id.
    pub fn new_v4() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The id as 32 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for EventId {
    type Err = EnvelopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(EnvelopeError::InvalidEventId(s.to_owned()))
        }
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an attachment's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentSource {
    /// In memory (a log tail).
    Bytes(Vec<u8>),
    /// In a file, copied by streaming (a minidump).
    File(PathBuf),
    /// In a file, copied by streaming with some of its bytes replaced and
    /// more appended (a minidump scrubbed of secrets); the file itself is
    /// not changed.
    Rewritten(PathBuf, Rewrite),
}

/// The content type of a minidump, in either attachment type.
pub const MINIDUMP_CONTENT_TYPE: &str = "application/x-dmp";

/// How Sentry is to treat a minidump sent with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinidumpProcessing {
    /// A plain attachment (`event.attachment`): Sentry stores it and keeps
    /// the event's host-symbolicated stacks.
    Host,
    /// `event.minidump`: Sentry re-stackwalks the dump with the debug files
    /// uploaded to it, replacing the event's stacks and exception.
    Server,
}

/// One attachment of a crash report.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// The name Sentry shows.
    pub filename: String,
    /// The MIME type.
    pub content_type: String,
    /// `event.minidump`, `event.attachment`, …
    pub attachment_type: AttachmentType,
    /// The bytes.
    pub source: AttachmentSource,
}

impl Attachment {
    /// A minidump for Sentry to treat as `processing` says, with the
    /// content type `application/x-dmp` either way.
    pub fn minidump(filename: impl Into<String>, source: AttachmentSource, processing: MinidumpProcessing) -> Self {
        Self {
            filename: filename.into(),
            content_type: MINIDUMP_CONTENT_TYPE.to_owned(),
            attachment_type: match processing {
                MinidumpProcessing::Host => AttachmentType::Attachment,
                MinidumpProcessing::Server => AttachmentType::Minidump,
            },
            source,
        }
    }

    /// A plain-text attachment such as the log tail (`event.attachment`, `text/plain`).
    pub fn text(filename: impl Into<String>, source: AttachmentSource) -> Self {
        Self {
            filename: filename.into(),
            content_type: "text/plain".to_owned(),
            attachment_type: AttachmentType::Attachment,
            source,
        }
    }

    /// True for the minidump, whichever its attachment type.
    pub fn is_minidump(&self) -> bool {
        is_minidump(self.attachment_type.as_str(), &self.content_type)
    }

    /// The payload size in bytes.
    pub fn len(&self) -> Result<u64, EnvelopeError> {
        let file_len = |path: &PathBuf| {
            std::fs::metadata(path)
                .map(|m| m.len())
                .map_err(|source| EnvelopeError::ReadAttachment { path: path.clone(), source })
        };
        match &self.source {
            AttachmentSource::Bytes(bytes) => Ok(bytes.len() as u64),
            AttachmentSource::File(path) => file_len(path),
            AttachmentSource::Rewritten(path, rewrite) => Ok(file_len(path)? + rewrite.appended.len() as u64),
        }
    }

    /// True when the payload is empty.
    pub fn is_empty(&self) -> Result<bool, EnvelopeError> {
        Ok(self.len()? == 0)
    }
}

/// Whether an attachment of this type and content type is a minidump:
/// `event.minidump`, or a plain attachment of a minidump's content type.
pub(crate) fn is_minidump(attachment_type: &str, content_type: &str) -> bool {
    attachment_type == AttachmentType::Minidump.as_str() || content_type == MINIDUMP_CONTENT_TYPE
}

/// What an envelope carries, for rate limiting and for counting losses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Summary {
    /// Event items (0 or 1).
    pub events: u32,
    /// Attachment items.
    pub attachments: u32,
    /// Attachment payload bytes.
    pub attachment_bytes: u64,
    /// Whether one attachment is the minidump.
    pub has_minidump: bool,
    /// `session` and `sessions` items.
    #[serde(default)]
    pub sessions: u32,
    /// `check_in` items.
    #[serde(default)]
    pub check_ins: u32,
}

impl Summary {
    /// Counts a loss of everything in this envelope for `reason`.
    pub fn discard_all(&self, reason: DiscardReason, counts: &mut DiscardedCounts) {
        counts.add(reason, Category::Error, u64::from(self.events));
        counts.add(reason, Category::Attachment, self.attachment_bytes);
        counts.add(reason, Category::Session, u64::from(self.sessions));
        counts.add(reason, Category::Monitor, u64::from(self.check_ins));
    }

    /// Counts an item of type `ty` (an event, attachment, session or check-in).
    pub(crate) fn count(&mut self, ty: &str, payload_len: u64, minidump: bool) {
        match ty {
            "event" => self.events += 1,
            "attachment" => {
                self.attachments += 1;
                self.attachment_bytes += payload_len;
                self.has_minidump |= minidump;
            }
            "session" | "sessions" => self.sessions += 1,
            "check_in" => self.check_ins += 1,
            _ => {}
        }
    }
}

/// What is ready to be written: a crash report (event JSON plus
/// attachments), with or without session and check-in items, or such items
/// alone.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The event's id, or for an envelope without an event a fresh id that
    /// names its outbox entry (and is not written in its header).
    event_id: EventId,
    event: Option<Value>,
    items: Vec<Item>,
    attachments: Vec<Attachment>,
    discarded: DiscardedCounts,
}

#[derive(Serialize)]
struct EnvelopeHeader<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
    dsn: &'a str,
    sent_at: String,
}

#[derive(Serialize)]
struct AttachmentHeader<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    length: u64,
    filename: &'a str,
    content_type: &'a str,
    attachment_type: &'a str,
}

impl Envelope {
    /// An envelope for `event`; sets the event's `event_id` if it has none.
    pub fn new(event_id: EventId, mut event: Value) -> Result<Self, EnvelopeError> {
        let object = event.as_object_mut().ok_or(EnvelopeError::EventNotObject)?;
        match object.get("event_id") {
            None | Some(Value::Null) => {
                object.insert("event_id".to_owned(), Value::from(event_id.as_str()));
            }
            Some(Value::String(found)) if found.eq_ignore_ascii_case(event_id.as_str()) => {}
            Some(found) => {
                return Err(EnvelopeError::EventIdMismatch { expected: event_id, found: found.to_string() });
            }
        }
        Ok(Self {
            event_id,
            event: Some(event),
            items: Vec::new(),
            attachments: Vec::new(),
            discarded: DiscardedCounts::default(),
        })
    }

    /// An envelope for session or check-in items alone (see [`Envelope::add_item`]).
    pub fn without_event() -> Self {
        Self {
            event_id: EventId::new_v4(),
            event: None,
            items: Vec::new(),
            attachments: Vec::new(),
            discarded: DiscardedCounts::default(),
        }
    }

    /// Adds an attachment; Relay accepts at most 30.
    pub fn add_attachment(&mut self, attachment: Attachment) -> Result<(), EnvelopeError> {
        let limit = Limits::default().max_attachments;
        if self.attachments.len() >= limit {
            return Err(EnvelopeError::TooManyAttachments { limit });
        }
        self.attachments.push(attachment);
        Ok(())
    }

    /// The event id (for an envelope without an event, its entry's id).
    pub fn event_id(&self) -> &EventId {
        &self.event_id
    }

    /// The event JSON, including any marks about dropped attachments.
    pub fn event(&self) -> Option<&Value> {
        self.event.as_ref()
    }

    /// The event JSON, to add to it.
    pub fn event_mut(&mut self) -> Option<&mut Value> {
        self.event.as_mut()
    }

    /// The attachments still in the envelope.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Losses recorded while fitting the envelope into limits.
    pub fn discarded(&self) -> &DiscardedCounts {
        &self.discarded
    }

    /// Counts what this envelope carries.
    pub fn summary(&self) -> Result<Summary, EnvelopeError> {
        let mut summary = Summary { events: u32::from(self.event.is_some()), ..Summary::default() };
        for item in &self.items {
            summary.count(item.ty.as_str(), item.payload.len() as u64, false);
        }
        for attachment in &self.attachments {
            summary.count("attachment", attachment.len()?, attachment.is_minidump());
        }
        Ok(summary)
    }

    /// Writes the envelope; returns the number of bytes written.
    pub fn write_to<W: Write>(&self, dsn: &Dsn, sent_at: SystemTime, mut out: W) -> Result<u64, EnvelopeError> {
        let mut counter = CountingWriter { inner: &mut out, written: 0 };
        let w = &mut counter;
        let dsn_header = dsn.to_envelope_header();
        let header = EnvelopeHeader {
            event_id: self.event.as_ref().map(|_| self.event_id.as_str()),
            dsn: &dsn_header,
            sent_at: format_timestamp(sent_at),
        };
        write_json_line(w, &header)?;

        if let Some(event) = &self.event {
            let event = serde_json::to_vec(event).map_err(|e| EnvelopeError::Write(e.into()))?;
            write_item(w, &simple_item_header("event", event.len() as u64), &event)?;
        }
        for item in &self.items {
            write_item(w, &simple_item_header(item.ty.as_str(), item.payload.len() as u64), &item.payload)?;
        }

        for attachment in &self.attachments {
            let length = attachment.len()?;
            let header = AttachmentHeader {
                ty: "attachment",
                length,
                filename: &attachment.filename,
                content_type: &attachment.content_type,
                attachment_type: attachment.attachment_type.as_str(),
            };
            write_json_line(w, &header)?;
            match &attachment.source {
                AttachmentSource::Bytes(bytes) => w.write_all(bytes).map_err(EnvelopeError::Write)?,
                AttachmentSource::File(path) => copy_exact(path, length, w)?,
                AttachmentSource::Rewritten(path, rewrite) => {
                    let file_len = length - rewrite.appended.len() as u64;
                    copy_exact(path, file_len, &mut rewrite.patching(&mut *w))?;
                    w.write_all(&rewrite.appended).map_err(EnvelopeError::Write)?;
                }
            }
            w.write_all(b"\n").map_err(EnvelopeError::Write)?;
        }

        if !self.discarded.is_empty() {
            let payload = self.discarded.to_payload(sent_at);
            write_item(w, &simple_item_header("client_report", payload.len() as u64), &payload)?;
        }
        w.flush().map_err(EnvelopeError::Write)?;
        Ok(counter.written)
    }

    /// Writes the envelope into memory.
    pub fn to_vec(&self, dsn: &Dsn, sent_at: SystemTime) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = Vec::new();
        self.write_to(dsn, sent_at, &mut out)?;
        Ok(out)
    }
}

/// A client report on its own, for losses not tied to an envelope being sent
/// (an evicted outbox entry, a permanently rejected one).
pub fn client_report_envelope(dsn: &Dsn, counts: &DiscardedCounts, sent_at: SystemTime) -> Vec<u8> {
    #[derive(Serialize)]
    struct Header<'a> {
        dsn: &'a str,
        sent_at: String,
    }
    let mut out = Vec::new();
    let dsn_header = dsn.to_envelope_header();
    let payload = counts.to_payload(sent_at);
    // Writing into a Vec cannot fail.
    let _ = write_json_line(&mut out, &Header { dsn: &dsn_header, sent_at: format_timestamp(sent_at) });
    let _ = write_item(&mut out, &simple_item_header("client_report", payload.len() as u64), &payload);
    out
}

/// Formats a wall-clock time as RFC 3339 in UTC, as `sent_at` expects.
pub fn format_timestamp(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

fn simple_item_header(ty: &str, length: u64) -> Map<String, Value> {
    let mut header = Map::new();
    header.insert("type".to_owned(), Value::from(ty));
    header.insert("length".to_owned(), Value::from(length));
    header
}

fn write_json_line<W: Write, T: Serialize>(w: &mut W, value: &T) -> Result<(), EnvelopeError> {
    serde_json::to_writer(&mut *w, value).map_err(|e| EnvelopeError::Write(e.into()))?;
    w.write_all(b"\n").map_err(EnvelopeError::Write)
}

fn write_item<W: Write>(w: &mut W, header: &Map<String, Value>, payload: &[u8]) -> Result<(), EnvelopeError> {
    write_json_line(w, header)?;
    w.write_all(payload).map_err(EnvelopeError::Write)?;
    w.write_all(b"\n").map_err(EnvelopeError::Write)
}

fn copy_exact<W: Write>(path: &PathBuf, length: u64, w: &mut W) -> Result<(), EnvelopeError> {
    let read_err = |source| EnvelopeError::ReadAttachment { path: path.clone(), source };
    let file = File::open(path).map_err(read_err)?;
    let copied = io::copy(&mut file.take(length), w).map_err(|e| {
        // `io::copy` does not say which side failed; the writer is the outbox
        // file or memory, so a read failure is by far the likelier one, and the
        // path is what a user needs to see either way.
        read_err(e)
    })?;
    if copied != length {
        return Err(EnvelopeError::AttachmentChanged { path: path.clone(), expected: length });
    }
    Ok(())
}

struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    written: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
pub(crate) mod tests;
