//! Items other than the event and its attachments: Release Health sessions
//! (`session`, `sessions`) and cron check-ins (`check_in`), each a JSON
//! payload under a header of its type and length, as Sentry's envelope docs
//! define them.
//!
//! Relay's limits for them: at most 100 `session` items in one envelope and
//! one `check_in` of at most 100 KiB. An envelope may carry them beside an
//! event (a crash's `crashed` session update travels with the crash) or
//! alone, in which case its header names no event.

use serde::Serialize;

use super::{Envelope, EnvelopeError};
use crate::sentry::client_report::Category;

/// Session updates Relay takes in one envelope.
pub const MAX_SESSIONS: usize = 100;

/// Bytes of one check-in Relay takes.
pub const MAX_CHECK_IN_BYTES: usize = 100 * 1024;

/// The type of a JSON item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemType {
    /// One session update.
    Session,
    /// Session aggregates (counts per minute).
    Sessions,
    /// A cron monitor check-in.
    CheckIn,
}

impl ItemType {
    /// The item `type` in its header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Sessions => "sessions",
            Self::CheckIn => "check_in",
        }
    }

    /// The item type named `ty`, if it is one of these.
    pub fn parse(ty: &str) -> Option<Self> {
        [Self::Session, Self::Sessions, Self::CheckIn].into_iter().find(|t| t.as_str() == ty)
    }

    /// The data category Relay rate-limits (and counts losses of) it under.
    pub fn category(self) -> Category {
        match self {
            Self::Session | Self::Sessions => Category::Session,
            Self::CheckIn => Category::Monitor,
        }
    }
}

/// A JSON item and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Its type.
    pub ty: ItemType,
    /// The serialized JSON.
    pub payload: Vec<u8>,
}

impl Item {
    /// An item of type `ty` carrying `value` as JSON.
    pub fn json(ty: ItemType, value: &impl Serialize) -> Result<Self, EnvelopeError> {
        let payload = serde_json::to_vec(value).map_err(|e| EnvelopeError::Write(e.into()))?;
        Ok(Self { ty, payload })
    }
}

impl Envelope {
    /// Adds a session update, session aggregates or a check-in, within
    /// Relay's limits for them.
    pub fn add_item(&mut self, item: Item) -> Result<(), EnvelopeError> {
        let count = |ty: ItemType| self.items.iter().filter(|i| i.ty == ty).count();
        match item.ty {
            ItemType::Session | ItemType::Sessions
                if count(ItemType::Session) + count(ItemType::Sessions) >= MAX_SESSIONS =>
            {
                return Err(EnvelopeError::TooManyItems { ty: item.ty.as_str(), limit: MAX_SESSIONS });
            }
            ItemType::CheckIn if count(ItemType::CheckIn) >= 1 => {
                return Err(EnvelopeError::TooManyItems { ty: item.ty.as_str(), limit: 1 });
            }
            ItemType::CheckIn if item.payload.len() > MAX_CHECK_IN_BYTES => {
                return Err(EnvelopeError::ItemTooLarge {
                    ty: item.ty.as_str(),
                    size: item.payload.len() as u64,
                    limit: MAX_CHECK_IN_BYTES as u64,
                });
            }
            _ => {}
        }
        self.items.push(item);
        Ok(())
    }

    /// The session and check-in items.
    pub fn items(&self) -> &[Item] {
        &self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentry::envelope::RawEnvelope;
    use crate::sentry::envelope::tests::{EVENT_ID, at, crash_envelope, dsn};
    use serde_json::json;

    #[test]
    fn items_alone_make_an_envelope_without_an_event() {
        let mut envelope = Envelope::without_event();
        envelope.add_item(Item::json(ItemType::Session, &json!({"sid": "x"})).unwrap()).unwrap();
        let bytes = envelope.to_vec(&dsn(), at(1_700_000_000)).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"dsn":"http://0123456789abcdef0123456789abcdef@127.0.0.1:1/42","sent_at":"2023-11-14T22:13:20Z"}"#,
                "\n",
                r#"{"type":"session","length":11}"#,
                "\n",
                r#"{"sid":"x"}"#,
                "\n"
            )
        );
        let summary = envelope.summary().unwrap();
        assert_eq!((summary.events, summary.sessions, summary.check_ins), (0, 1, 0));
        assert_eq!(RawEnvelope::parse(&bytes).unwrap().summary(), summary);
    }

    #[test]
    fn a_session_update_rides_with_its_crash() {
        let mut envelope = crash_envelope();
        envelope.add_item(Item::json(ItemType::Session, &json!({"status": "crashed"})).unwrap()).unwrap();
        let raw = RawEnvelope::parse(&envelope.to_vec(&dsn(), at(1)).unwrap()).unwrap();
        let types: Vec<&str> = raw.items.iter().map(|i| i.ty()).collect();
        assert_eq!(types, ["event", "session", "attachment", "attachment"]);
        assert_eq!(raw.header["event_id"], EVENT_ID);
        assert_eq!(raw.summary().sessions, 1);
    }

    #[test]
    fn relays_item_limits_hold() {
        let mut envelope = Envelope::without_event();
        for _ in 0..MAX_SESSIONS {
            envelope.add_item(Item::json(ItemType::Session, &json!({})).unwrap()).unwrap();
        }
        let more = envelope.add_item(Item::json(ItemType::Sessions, &json!({})).unwrap());
        assert!(matches!(more, Err(EnvelopeError::TooManyItems { limit: 100, .. })));

        let mut envelope = Envelope::without_event();
        envelope.add_item(Item::json(ItemType::CheckIn, &json!({})).unwrap()).unwrap();
        let second = envelope.add_item(Item::json(ItemType::CheckIn, &json!({})).unwrap());
        assert!(matches!(second, Err(EnvelopeError::TooManyItems { limit: 1, .. })));
        let big = Item::json(ItemType::CheckIn, &json!({"x": "y".repeat(MAX_CHECK_IN_BYTES)})).unwrap();
        assert!(matches!(Envelope::without_event().add_item(big), Err(EnvelopeError::ItemTooLarge { .. })));
    }
}
