//! The outbox: a durable on-disk spool of envelopes waiting for Relay.
//!
//! A crash report is written here, fsynced, *before* any network I/O, and
//! leaves only when Relay has answered for it. Each entry moves through:
//!
//! ```text
//!              enqueue (tmp + fsync + rename + dir fsync)
//!                   │
//!                   ▼
//!   ┌──────────► PENDING ◄──────────────┐
//!   │               │ claim (flock)     │ 5xx, timeout, refused:
//!   │               ▼                   │ attempts += 1, next_attempt_at
//!   │           IN FLIGHT ──────────────┤   = now + backoff (+ jitter)
//!   │               │                   │ 429 / active limit: untouched,
//!   │  413: rewrite │                   │   the limit is in rate_limits.json
//!   └── without the ┤                   │ process killed: the kernel drops
//!       minidump    │                   │   the flock, the entry is pending
//!                   │                   │   again
//!          2xx ─────┼───── other 4xx ───┘
//!           ▼               ▼
//!        deleted      rejected/ (+ Relay's detail), never retried
//!
//!   full (max_bytes): oldest rejected, then oldest pending entries are
//!   deleted, logged and counted as `cache_overflow` in discarded.json
//! ```
//!
//! Layout (directories 0700, files 0600):
//!
//! ```text
//! DIR/.lock                     flock for short directory-wide updates
//! DIR/rate_limits.json          limits Relay announced, as expiry times
//! DIR/discarded.json            losses not yet reported in a client_report
//! DIR/pending/ID.envelope       the envelope; its presence is the entry
//! DIR/pending/ID.json           attempts, next_attempt_at, last_error, summary
//! DIR/pending/ID.lock           flock held while an entry is in flight
//! DIR/rejected/ID.envelope      refused by Relay, kept for a human to inspect
//! DIR/rejected/ID.json          status, Relay's detail and causes
//! ```
//!
//! IDs start with the enqueue time in milliseconds, so name order is age
//! order. The envelope is the commit point: its state file is written first,
//! and an entry whose state is missing or unreadable is simply due now.
//!
//! Two processes never send one entry at once: a sender holds an exclusive
//! `flock` on `ID.lock` from claim to completion. The lock file is not the
//! envelope because a 413 rewrite replaces the envelope by rename, which would
//! move the lock to a dead inode. Because a finished sender unlinks the lock
//! file, a waiter could otherwise lock an unlinked inode; after taking the lock
//! a claimer therefore checks that the path still names the inode it locked
//! and that the envelope still exists. Only a lock holder unlinks a lock file.
//!
//! Delivery is at least once: a process killed after Relay's 2xx but before
//! the unlink sends the entry again; Sentry drops the duplicate by event id.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

mod claim;
mod files;
mod withdraw;

use claim::default_state;
pub use claim::{Claim, EnvelopeFile};
use files::{TempFile, list_ids, remove_if_exists};
pub use withdraw::Withdrawal;

use crate::sentry::client_report::{DiscardReason, Discarded, DiscardedCounts};
use crate::sentry::clock::{Clock, from_unix_millis, unix_millis};
use crate::sentry::dsn::Dsn;
use crate::sentry::envelope::{Envelope, EnvelopeError, Limits, Summary};
use crate::sentry::rate_limit::{PersistedRateLimits, RateLimits};
use crate::spool::{Missing, SpoolDir, SpoolError};

/// Errors of the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// A filesystem operation failed.
    #[error("failed to {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The envelope could not be built or written.
    #[error("failed to write envelope for event {event_id}")]
    Envelope {
        /// The event.
        event_id: String,
        /// What went wrong.
        #[source]
        source: EnvelopeError,
    },
    /// The outbox's directory is not safe to use.
    #[error(transparent)]
    Dir(#[from] SpoolError),
    /// Even without attachments the report exceeds the outbox bound.
    #[error("crash report of {size} bytes cannot fit an outbox of {max_bytes} bytes")]
    TooLarge {
        /// Size of the report without attachments.
        size: u64,
        /// The outbox bound.
        max_bytes: u64,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> OutboxError + 'a {
    move |source| OutboxError::Io { action, path: path.to_owned(), source }
}

/// Exponential backoff with jitter for retryable failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial: Duration::from_secs(10), max: Duration::from_secs(60 * 60) }
    }
}

impl Backoff {
    /// The delay after `attempts` failures: `initial * 2^(attempts-1)` capped
    /// at `max`, then scaled by a random factor in [0.5, 1.0] so that many
    /// hosts that lost the same Relay do not come back in lockstep.
    pub fn delay(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let base = self.initial.checked_mul(1u32 << exp).unwrap_or(self.max).min(self.max);
        let factor: f64 = rand::random_range(0.5..=1.0);
        base.mul_f64(factor)
    }
}

/// Outbox settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxConfig {
    /// Upper bound of all envelopes on disk (pending and rejected).
    pub max_bytes: u64,
    /// Retry schedule for 5xx and network errors.
    pub backoff: Backoff,
    /// Relay's limits, applied before an envelope is written.
    pub limits: Limits,
    /// Leftovers of interrupted writes older than this are removed.
    pub stale_after: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_bytes: 512 * 1024 * 1024,
            backoff: Backoff::default(),
            limits: Limits::default(),
            stale_after: Duration::from_secs(60 * 60),
        }
    }
}

/// The persisted state of a pending entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryState {
    /// The event the envelope carries.
    pub event_id: String,
    /// Failed delivery attempts so far (429s are not failures).
    pub attempts: u32,
    /// Not to be sent before this time (ms since the epoch).
    pub next_attempt_at_ms: u64,
    /// The last failure, for a human reading the spool.
    pub last_error: Option<String>,
    /// What the envelope carries.
    pub summary: Summary,
}

impl EntryState {
    /// When the entry may be sent next.
    pub fn next_attempt_at(&self) -> SystemTime {
        from_unix_millis(self.next_attempt_at_ms)
    }
}

/// Why Relay refused an entry for good, stored next to it in `rejected/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The event.
    pub event_id: String,
    /// The HTTP status.
    pub status: u16,
    /// Relay's `detail`.
    pub detail: Option<String>,
    /// Relay's `causes`.
    #[serde(default)]
    pub causes: Vec<String>,
    /// When (ms since the epoch).
    pub rejected_at_ms: u64,
    /// Set aside by crashwatch, not refused by Relay: the stored file no
    /// longer parses (`detail` says why) and was never sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub corrupt: bool,
}

/// The durable spool; see the module docs. Every file is reached through
/// the held directories ([`SpoolDir`]: no symbolic link is followed).
#[derive(Debug, Clone)]
pub struct Outbox {
    root: SpoolDir,
    pending: SpoolDir,
    rejected: SpoolDir,
    config: OutboxConfig,
    clock: Arc<dyn Clock>,
}

impl Outbox {
    /// Opens (creating) the outbox in the directory at `dir` and removes
    /// stale leftovers.
    pub fn open(dir: impl Into<PathBuf>, config: OutboxConfig, clock: Arc<dyn Clock>) -> Result<Self, OutboxError> {
        let dir = dir.into();
        let root = SpoolDir::open_root(&dir, Missing::Create)?.ok_or_else(|| OutboxError::Io {
            action: "create",
            path: dir,
            source: io::ErrorKind::NotFound.into(),
        })?;
        Self::in_dir(root, config, clock)
    }

    /// Opens (creating) `SPOOL/outbox` in the spool's directory `spool`.
    pub fn open_in(spool: &SpoolDir, config: OutboxConfig, clock: Arc<dyn Clock>) -> Result<Self, OutboxError> {
        Self::in_dir(spool.create_dir("outbox")?, config, clock)
    }

    /// `SPOOL/outbox` if it exists (for commands that create nothing).
    pub fn existing(
        spool: &SpoolDir,
        config: OutboxConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Self>, OutboxError> {
        let Some(root) = spool.open_dir("outbox", Missing::Absent)? else { return Ok(None) };
        let Some(pending) = root.open_dir("pending", Missing::Absent)? else { return Ok(None) };
        // Entries waiting are never passed over for want of `rejected/`
        // (a crashwatch killed while making the outbox, or one made by
        // hand): it is made, the one thing such a command creates.
        let rejected = root.create_dir("rejected")?;
        let outbox = Self { root, pending, rejected, config, clock };
        outbox.remove_stale_leftovers()?;
        Ok(Some(outbox))
    }

    fn in_dir(root: SpoolDir, config: OutboxConfig, clock: Arc<dyn Clock>) -> Result<Self, OutboxError> {
        let pending = root.create_dir("pending")?;
        let rejected = root.create_dir("rejected")?;
        // The directories may predate us with a laxer mode; crash reports
        // hold memory of the crashed process and must not be readable by
        // others. Changed through the held descriptors, never a link.
        for dir in [&root, &pending, &rejected] {
            dir.make_private()?;
        }
        let outbox = Self { root, pending, rejected, config, clock };
        outbox.remove_stale_leftovers()?;
        Ok(outbox)
    }

    /// The outbox directory.
    pub fn dir(&self) -> &Path {
        self.root.path()
    }

    /// The settings.
    pub fn config(&self) -> &OutboxConfig {
        &self.config
    }

    /// The clock used for everything persisted.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Writes `envelope` durably and returns its entry id.
    ///
    /// The envelope is fitted into Relay's limits and into the outbox bound
    /// (dropping the minidump first), written to a temporary file, fsynced,
    /// and renamed into place after older entries were evicted if needed. An
    /// envelope for an event id already pending is not written twice.
    pub fn enqueue(&self, dsn: &Dsn, mut envelope: Envelope) -> Result<String, OutboxError> {
        let event_id = envelope.event_id().to_string();
        let envelope_err = |source| OutboxError::Envelope { event_id: event_id.clone(), source };
        if let Some(existing) = self.find_pending(&event_id)? {
            tracing::info!(event_id, entry = existing, "crash report already in the outbox");
            return Ok(existing);
        }
        envelope.enforce_limits(&self.config.limits).map_err(envelope_err)?;
        match envelope.fit_total(self.config.max_bytes, DiscardReason::CacheOverflow, "larger than the outbox") {
            Ok(()) => {}
            Err(EnvelopeError::TooLarge { size, .. }) => {
                return Err(OutboxError::TooLarge { size, max_bytes: self.config.max_bytes });
            }
            Err(e) => return Err(envelope_err(e)),
        }
        let summary = envelope.summary().map_err(envelope_err)?;

        // Written outside the directory lock: a minidump of tens of MiB must
        // not hold up other processes' bookkeeping.
        let now = self.clock.now();
        let mut tmp = TempFile::new(&self.pending)?;
        let size = envelope.write_to(dsn, now, io::BufWriter::new(tmp.file())).map_err(envelope_err)?;
        tmp.file().sync_all().map_err(io_err("fsync", &tmp.path()))?;

        let _dir_lock = self.lock_dir()?;
        self.make_room(size)?;
        let id = format!("{:013}-{}", unix_millis(now), event_id);
        let state =
            EntryState { event_id: event_id.clone(), attempts: 0, next_attempt_at_ms: 0, last_error: None, summary };
        self.write_json(&self.pending, &format!("{id}.json"), &state)?;
        tmp.persist(&format!("{id}.envelope"))?;
        tracing::info!(event_id, entry = id, size, "crash report stored in the outbox");
        Ok(id)
    }

    /// Pending entry ids, oldest first.
    pub fn pending(&self) -> Result<Vec<String>, OutboxError> {
        list_ids(&self.pending)
    }

    /// Rejected entries with Relay's reasons, oldest first.
    pub fn rejected(&self) -> Result<Vec<(String, Rejection)>, OutboxError> {
        let mut out = Vec::new();
        for id in list_ids(&self.rejected)? {
            if let Some(rejection) = self.read_json(&self.rejected, &format!("{id}.json"))? {
                out.push((id, rejection));
            }
        }
        Ok(out)
    }

    /// The state of a pending entry (defaults when unreadable).
    pub fn state(&self, id: &str) -> Result<EntryState, OutboxError> {
        Ok(self.read_json(&self.pending, &format!("{id}.json"))?.unwrap_or_else(|| default_state(id)))
    }

    /// Bytes of all envelopes on disk, pending and rejected.
    pub fn total_bytes(&self) -> Result<u64, OutboxError> {
        Ok(self
            .sized_entries(&self.rejected)?
            .into_iter()
            .chain(self.sized_entries(&self.pending)?)
            .map(|(_, size)| size)
            .sum())
    }

    /// The rate limits persisted by any process, expired ones pruned.
    pub fn rate_limits(&self) -> Result<RateLimits, OutboxError> {
        let persisted: Option<PersistedRateLimits> = self.read_json(&self.root, "rate_limits.json")?;
        let mut limits = persisted.map(|p| RateLimits::from_persisted(&p)).unwrap_or_default();
        limits.prune(self.clock.now());
        Ok(limits)
    }

    /// Merges `limits` into the persisted ones and returns the result.
    pub fn record_rate_limits(&self, limits: &RateLimits) -> Result<RateLimits, OutboxError> {
        let _dir_lock = self.lock_dir()?;
        let mut merged = self.rate_limits()?;
        merged.merge(limits);
        merged.prune(self.clock.now());
        self.write_json(&self.root, "rate_limits.json", &merged.to_persisted())?;
        Ok(merged)
    }

    /// Losses not yet reported to Sentry.
    pub fn discarded(&self) -> Result<DiscardedCounts, OutboxError> {
        let entries: Option<Vec<Discarded>> = self.read_json(&self.root, "discarded.json")?;
        Ok(DiscardedCounts::from_entries(&entries.unwrap_or_default()))
    }

    /// Adds losses to be reported.
    pub fn record_discarded(&self, counts: &DiscardedCounts) -> Result<(), OutboxError> {
        if counts.is_empty() {
            return Ok(());
        }
        let _dir_lock = self.lock_dir()?;
        self.update_discarded(|all| all.merge(counts))
    }

    /// Removes losses that a client report delivered.
    pub fn forget_discarded(&self, reported: &DiscardedCounts) -> Result<(), OutboxError> {
        let _dir_lock = self.lock_dir()?;
        self.update_discarded(|all| all.subtract(reported))
    }

    fn update_discarded(&self, f: impl FnOnce(&mut DiscardedCounts)) -> Result<(), OutboxError> {
        let mut all = self.discarded()?;
        f(&mut all);
        self.write_json(&self.root, "discarded.json", &all.entries())
    }

    /// The entry of `event_id`, pending or already rejected: an event is
    /// queued once (a report finished again after an interruption must not
    /// be sent twice).
    fn find_pending(&self, event_id: &str) -> Result<Option<String>, OutboxError> {
        let suffix = format!("-{event_id}");
        let mut entries = self.pending()?.into_iter().chain(list_ids(&self.rejected)?);
        Ok(entries.find(|id| id.ends_with(&suffix)))
    }

    /// Whether an envelope for `event_id` is waiting to be sent.
    pub fn is_pending(&self, event_id: &str) -> Result<bool, OutboxError> {
        let suffix = format!("-{event_id}");
        Ok(self.pending()?.iter().any(|id| id.ends_with(&suffix)))
    }

    /// Evicts rejected, then pending entries, oldest first, until `incoming`
    /// more bytes fit. Entries in flight elsewhere are skipped. Caller holds
    /// the directory lock.
    fn make_room(&self, incoming: u64) -> Result<(), OutboxError> {
        let mut total = self.total_bytes()?;
        if total + incoming <= self.config.max_bytes {
            return Ok(());
        }
        let mut lost = DiscardedCounts::default();
        for (id, size) in self.sized_entries(&self.rejected)? {
            if total + incoming <= self.config.max_bytes {
                break;
            }
            remove_if_exists(&self.rejected, &format!("{id}.envelope"))?;
            remove_if_exists(&self.rejected, &format!("{id}.json"))?;
            total = total.saturating_sub(size);
            tracing::warn!(entry = id, size, "outbox full: deleted a rejected crash report");
        }
        for (id, size) in self.sized_entries(&self.pending)? {
            if total + incoming <= self.config.max_bytes {
                break;
            }
            let Some(claim) = self.claim(&id)? else {
                continue;
            };
            claim.state().summary.discard_all(DiscardReason::CacheOverflow, &mut lost);
            tracing::warn!(
                entry = id,
                event_id = claim.state().event_id,
                size,
                "outbox full: dropped the oldest pending crash report"
            );
            claim.delete()?;
            total = total.saturating_sub(size);
        }
        if !lost.is_empty() {
            self.update_discarded(|all| all.merge(&lost))?;
        }
        Ok(())
    }

    fn sized_entries(&self, dir: &SpoolDir) -> Result<Vec<(String, u64)>, OutboxError> {
        let mut out = Vec::new();
        for id in list_ids(dir)? {
            let name = format!("{id}.envelope");
            match dir.stat(&name) {
                Ok(Some(st)) => out.push((id, st.st_size as u64)),
                Ok(None) => {}
                Err(e) => return Err(io_err("stat", &dir.join(&name))(e)),
            }
        }
        Ok(out)
    }

    fn lock_dir(&self) -> Result<File, OutboxError> {
        let path = self.root.join(".lock");
        let lock = self.root.lock(".lock", true).map_err(io_err("lock", &path))?;
        lock.ok_or_else(|| io_err("lock", &path)(io::ErrorKind::WouldBlock.into()))
    }
}
