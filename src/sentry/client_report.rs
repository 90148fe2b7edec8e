//! Counts of what we discarded, reported to Sentry as `client_report` items.
//!
//! Sentry's rule is that whoever drops data reports it: when Relay answers 429
//! it records the loss itself, but when *we* drop something (the spool was
//! full, the minidump did not fit, Relay refused the envelope for good) nobody
//! else will. The counts are kept per `(reason, category)` pair, persisted by
//! the outbox between processes, and sent as a `client_report` item whose
//! payload is `{"timestamp": …, "discarded_events": [{"reason", "category",
//! "quantity"}]}`.
//!
//! `sentry_types::protocol::v7::ClientReport` is not used because its reason
//! enum lacks `cache_overflow`, the reason Sentry defines for an offline cache
//! that overflowed, which is exactly what the outbox is.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Why data was discarded, as Sentry's client-report spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscardReason {
    /// The outbox reached its size bound and dropped its oldest entry.
    CacheOverflow,
    /// Relay refused the data (4xx other than 429), or it exceeded a size limit.
    SendError,
    /// An active rate limit told us not to send this data.
    RatelimitBackoff,
    /// The data could not be read back from disk.
    InternalSdkError,
    /// An in-memory queue was full (forwarded logs while Relay is slow).
    QueueOverflow,
    /// The request failed (refused, timed out); what is not kept is lost.
    NetworkError,
}

/// Sentry's data category of the discarded data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// An error event (a crash report); quantity counts events.
    Error,
    /// Attachment payloads; quantity counts bytes.
    Attachment,
    /// Release Health: quantity counts `session` and `sessions` items.
    Session,
    /// Cron check-ins; quantity counts `check_in` items.
    Monitor,
    /// Sentry Logs; quantity counts logs.
    LogItem,
    /// Sentry Logs; quantity counts bytes.
    LogByte,
}

/// One `discarded_events` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discarded {
    /// Why.
    pub reason: DiscardReason,
    /// What kind of data.
    pub category: Category,
    /// How many events, or how many bytes for attachments.
    pub quantity: u64,
}

/// Aggregated discard counts, keyed by `(reason, category)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscardedCounts {
    counts: BTreeMap<(DiscardReason, Category), u64>,
}

#[derive(Serialize)]
struct ClientReportPayload<'a> {
    timestamp: f64,
    discarded_events: &'a [Discarded],
}

impl DiscardedCounts {
    /// Adds `quantity` to the `(reason, category)` counter.
    pub fn add(&mut self, reason: DiscardReason, category: Category, quantity: u64) {
        if quantity == 0 {
            return;
        }
        let slot = self.counts.entry((reason, category)).or_insert(0);
        *slot = slot.saturating_add(quantity);
    }

    /// Adds every counter of `other`.
    pub fn merge(&mut self, other: &DiscardedCounts) {
        for (&(reason, category), &quantity) in &other.counts {
            self.add(reason, category, quantity);
        }
    }

    /// Subtracts what was reported, keeping what was counted meanwhile.
    pub fn subtract(&mut self, reported: &DiscardedCounts) {
        for (key, &quantity) in &reported.counts {
            if let Some(slot) = self.counts.get_mut(key) {
                *slot = slot.saturating_sub(quantity);
                if *slot == 0 {
                    self.counts.remove(key);
                }
            }
        }
    }

    /// True when nothing was discarded.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The counter for `(reason, category)`, 0 when absent.
    pub fn get(&self, reason: DiscardReason, category: Category) -> u64 {
        self.counts.get(&(reason, category)).copied().unwrap_or(0)
    }

    /// The counters as `discarded_events` entries.
    pub fn entries(&self) -> Vec<Discarded> {
        self.counts.iter().map(|(&(reason, category), &quantity)| Discarded { reason, category, quantity }).collect()
    }

    /// Rebuilds counts from `discarded_events` entries (the persisted form).
    pub fn from_entries(entries: &[Discarded]) -> Self {
        let mut counts = Self::default();
        for entry in entries {
            counts.add(entry.reason, entry.category, entry.quantity);
        }
        counts
    }

    /// The JSON payload of a `client_report` item created at `now`.
    pub fn to_payload(&self, now: SystemTime) -> Vec<u8> {
        let timestamp = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let entries = self.entries();
        let payload = ClientReportPayload { timestamp, discarded_events: &entries };
        // Serializing plain structs of numbers and enum names cannot fail.
        serde_json::to_vec(&payload).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_matches_sentry_wire_format() {
        let mut counts = DiscardedCounts::default();
        counts.add(DiscardReason::CacheOverflow, Category::Error, 1);
        counts.add(DiscardReason::CacheOverflow, Category::Attachment, 2048);
        counts.add(DiscardReason::CacheOverflow, Category::Error, 1);
        let payload: serde_json::Value =
            serde_json::from_slice(&counts.to_payload(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(10)))
                .unwrap();
        assert_eq!(
            payload,
            serde_json::json!({
                "timestamp": 10.0,
                "discarded_events": [
                    {"reason": "cache_overflow", "category": "error", "quantity": 2},
                    {"reason": "cache_overflow", "category": "attachment", "quantity": 2048},
                ]
            })
        );
    }

    #[test]
    fn subtract_keeps_counts_added_meanwhile() {
        let mut pending = DiscardedCounts::default();
        pending.add(DiscardReason::SendError, Category::Error, 3);
        let reported = pending.clone();
        pending.add(DiscardReason::SendError, Category::Error, 2);
        pending.subtract(&reported);
        assert_eq!(pending.get(DiscardReason::SendError, Category::Error), 2);
        pending.subtract(&pending.clone());
        assert!(pending.is_empty());
    }
}
