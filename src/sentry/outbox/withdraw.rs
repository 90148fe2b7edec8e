//! Taking back an entry that a later one supersedes: a session's start
//! update, or a job's `in_progress` check-in, not yet sent when the run's
//! final update is queued.
//!
//! The answer must be exact, because what is sent next depends on it (a
//! session's final update says `init` only when Relay never saw the start),
//! so a withdrawal waits for a sender that holds the entry in flight, and
//! then either removes it or finds it gone.

use super::{Outbox, OutboxError};

/// What became of a withdrawn entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawal {
    /// It was still pending, never delivered; it is deleted now.
    Withdrawn,
    /// It had already left the outbox: delivered (or, rarely, evicted from a
    /// full outbox or refused by Relay).
    Gone,
}

impl Outbox {
    /// Deletes pending entry `id` unless it has already left the outbox,
    /// waiting for an attempt in flight to end. Not a loss: the caller
    /// queues what replaces it.
    pub fn withdraw(&self, id: &str) -> Result<Withdrawal, OutboxError> {
        match self.claim_with(id, true)? {
            Some(claim) => {
                claim.delete()?;
                tracing::debug!(entry = id, "withdrew a superseded entry");
                Ok(Withdrawal::Withdrawn)
            }
            None => Ok(Withdrawal::Gone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentry::envelope::tests::dsn;
    use crate::sentry::envelope::{Envelope, Item, ItemType};
    use crate::sentry::{ManualClock, OutboxConfig};
    use std::sync::Arc;
    use std::time::SystemTime;

    fn check_in() -> Envelope {
        let mut envelope = Envelope::without_event();
        envelope
            .add_item(Item::json(ItemType::CheckIn, &serde_json::json!({"status": "in_progress"})).unwrap())
            .unwrap();
        envelope
    }

    #[test]
    fn a_pending_entry_is_withdrawn_and_a_delivered_one_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(SystemTime::now()));
        let outbox = Outbox::open(dir.path(), OutboxConfig::default(), clock).unwrap();
        let first = outbox.enqueue(&dsn(), check_in()).unwrap();
        let second = outbox.enqueue(&dsn(), check_in()).unwrap();
        assert_eq!(outbox.withdraw(&first).unwrap(), Withdrawal::Withdrawn);
        assert_eq!(outbox.pending().unwrap(), std::slice::from_ref(&second));
        outbox.claim(&second).unwrap().unwrap().complete().unwrap();
        assert_eq!(outbox.withdraw(&second).unwrap(), Withdrawal::Gone);
    }

    #[test]
    fn a_withdrawal_waits_for_the_attempt_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(SystemTime::now()));
        let outbox = Outbox::open(dir.path(), OutboxConfig::default(), clock).unwrap();
        let id = outbox.enqueue(&dsn(), check_in()).unwrap();
        let claim = outbox.claim(&id).unwrap().unwrap();
        let (claimed_tx, claimed_rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| {
                claimed_tx.send(()).unwrap();
                outbox.withdraw(&id).unwrap()
            });
            claimed_rx.recv().unwrap();
            // Whether the waiter is already blocked on the entry or not, it
            // cannot take it before the sender is done: delivered, so gone.
            claim.complete().unwrap();
            assert_eq!(waiter.join().unwrap(), Withdrawal::Gone);
        });
    }
}
