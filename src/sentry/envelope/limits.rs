//! Fitting an envelope into Relay's limits and the outbox bound.
//!
//! What goes first when something must go: the minidump. The event already
//! carries the symbolicated stack, which is what a Sentry issue is built from;
//! the minidump is the raw material for re-processing. Then the largest other
//! attachment. The event itself is never trimmed here: only the product knows
//! which of its parts matter.

use serde_json::{Map, Value};

use super::{Attachment, Envelope, EnvelopeError, Limits};
use crate::sentry::client_report::{Category, DiscardReason};

impl Envelope {
    /// Removes the minidump, marks the event and counts the loss.
    ///
    /// Returns the dropped size, or `None` when there was no minidump.
    pub fn drop_minidump(&mut self, reason: DiscardReason, why: &str) -> Result<Option<u64>, EnvelopeError> {
        let Some(index) = self.attachments.iter().position(Attachment::is_minidump) else {
            return Ok(None);
        };
        Ok(Some(self.drop_attachment(index, reason, why)?))
    }

    fn drop_attachment(&mut self, index: usize, reason: DiscardReason, why: &str) -> Result<u64, EnvelopeError> {
        let size = self.attachments[index].len()?;
        let attachment = self.attachments.remove(index);
        let minidump = attachment.is_minidump();
        if let Some(event) = self.event.as_mut() {
            mark_dropped(event, &attachment.filename, attachment.attachment_type.as_str(), minidump, size, why);
        }
        self.discarded.add(reason, Category::Attachment, size);
        tracing::warn!(
            event_id = %self.event_id,
            filename = %attachment.filename,
            size,
            why,
            "dropped attachment from crash report"
        );
        Ok(size)
    }

    /// Fits the envelope into `limits`, dropping attachments if needed.
    ///
    /// An event over the limit is an error: it cannot be trimmed here without
    /// knowing what matters in it, and Relay would refuse it.
    pub fn enforce_limits(&mut self, limits: &Limits) -> Result<(), EnvelopeError> {
        let event_size = self.event.as_ref().map_or(0, |e| serde_json::to_vec(e).map_or(u64::MAX, |v| v.len() as u64));
        if event_size > limits.max_event_bytes {
            return Err(EnvelopeError::EventTooLarge { size: event_size, limit: limits.max_event_bytes });
        }
        // Oversized attachments first: each would be refused on its own.
        let mut index = 0;
        while index < self.attachments.len() {
            if self.attachments[index].len()? > limits.max_attachment_bytes {
                self.drop_attachment(index, DiscardReason::SendError, "larger than relay's attachment limit")?;
            } else {
                index += 1;
            }
        }
        self.fit_total(limits.max_envelope_bytes, DiscardReason::SendError, "envelope over relay's size limit")
    }

    /// Drops attachments until the written envelope fits `max_bytes`: the
    /// minidump first (the event already carries the symbolicated stack), then
    /// the largest remaining ones.
    pub fn fit_total(&mut self, max_bytes: u64, reason: DiscardReason, why: &str) -> Result<(), EnvelopeError> {
        loop {
            let size = self.estimated_size()?;
            if size <= max_bytes {
                return Ok(());
            }
            let victim = match self.attachments.iter().position(Attachment::is_minidump) {
                Some(index) => Some(index),
                None => {
                    let mut largest: Option<(usize, u64)> = None;
                    for (index, attachment) in self.attachments.iter().enumerate() {
                        let len = attachment.len()?;
                        if largest.is_none_or(|(_, l)| len > l) {
                            largest = Some((index, len));
                        }
                    }
                    largest.map(|(index, _)| index)
                }
            };
            match victim {
                Some(index) => {
                    self.drop_attachment(index, reason, why)?;
                }
                None => {
                    return Err(EnvelopeError::TooLarge { size, limit: max_bytes });
                }
            }
        }
    }

    /// The size [`Envelope::write_to`] will produce, within a few bytes
    /// (the `sent_at` string and header digits may differ slightly).
    pub fn estimated_size(&self) -> Result<u64, EnvelopeError> {
        // Header, item headers and the client report are small and bounded;
        // 1 KiB per item over-estimates them safely.
        let event = self.event.as_ref().and_then(|e| serde_json::to_vec(e).ok()).map_or(0, |v| v.len() as u64);
        let items: u64 = self.items.iter().map(|i| i.payload.len() as u64 + 1024).sum();
        let mut size = 1024 + event + 1024 + items;
        for attachment in &self.attachments {
            size += attachment.len()? + 1024;
        }
        Ok(size)
    }
}

/// Records in the event that an attachment was dropped, so that whoever reads
/// the issue in Sentry knows why the minidump is missing.
pub fn mark_dropped(event: &mut Value, filename: &str, attachment_type: &str, minidump: bool, size: u64, why: &str) {
    let Some(object) = event.as_object_mut() else {
        return;
    };
    if minidump {
        let value = Value::from(why);
        match object.get_mut("tags") {
            Some(Value::Object(tags)) => {
                tags.insert("minidump_dropped".to_owned(), value);
            }
            // Sentry also accepts tags as a list of [key, value] pairs.
            Some(Value::Array(pairs)) => {
                pairs.push(Value::Array(vec![Value::from("minidump_dropped"), value]));
            }
            _ => {
                let mut tags = Map::new();
                tags.insert("minidump_dropped".to_owned(), value);
                object.insert("tags".to_owned(), Value::Object(tags));
            }
        }
    }
    let extra = object.entry("extra").or_insert_with(|| Value::Object(Map::new()));
    if !extra.is_object() {
        *extra = Value::Object(Map::new());
    }
    if let Some(extra) = extra.as_object_mut() {
        let list = extra.entry("dropped_attachments").or_insert_with(|| Value::Array(Vec::new()));
        if !list.is_array() {
            *list = Value::Array(Vec::new());
        }
        if let Some(list) = list.as_array_mut() {
            list.push(serde_json::json!({
                "filename": filename,
                "attachment_type": attachment_type,
                "size": size,
                "reason": why,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentry::envelope::tests::{EVENT_ID, crash_envelope};

    #[test]
    fn oversized_attachment_is_dropped_alone() {
        let mut envelope = crash_envelope();
        let limits = Limits { max_attachment_bytes: 12, ..Limits::default() };
        envelope.enforce_limits(&limits).unwrap();
        let names: Vec<&str> = envelope.attachments().iter().map(|a| a.filename.as_str()).collect();
        assert_eq!(names, ["crash.dmp"], "only the 14-byte log is over 12 bytes");
        assert_eq!(envelope.discarded().get(DiscardReason::SendError, Category::Attachment), 14);
    }

    #[test]
    fn fitting_the_total_drops_the_minidump_first() {
        let mut envelope = crash_envelope();
        // Room for the marks the drop adds to the event, not for the minidump.
        let without_minidump = envelope.estimated_size().unwrap() - 9 - 1024 + 500;
        envelope.fit_total(without_minidump, DiscardReason::CacheOverflow, "spool full").unwrap();
        let names: Vec<&str> = envelope.attachments().iter().map(|a| a.filename.as_str()).collect();
        assert_eq!(names, ["log.txt"]);
        assert_eq!(envelope.event().unwrap()["tags"]["minidump_dropped"], "spool full");
    }

    #[test]
    fn event_over_a_mebibyte_is_refused() {
        let big = "x".repeat(1024 * 1024);
        let mut envelope = Envelope::new(EVENT_ID.parse().unwrap(), serde_json::json!({"message": big})).unwrap();
        assert!(matches!(envelope.enforce_limits(&Limits::default()), Err(EnvelopeError::EventTooLarge { .. })));
    }
}
