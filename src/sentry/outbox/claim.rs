//! Claiming an entry for sending, and what a sender does with it.
//!
//! See the parent module for the lock protocol this implements.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::SystemTime;

use super::files::{remove_if_exists, sync_dir};
use super::{EntryState, Outbox, OutboxError, Rejection, io_err};
use crate::sentry::clock::unix_millis;
use crate::sentry::envelope::Summary;

impl Outbox {
    /// Claims a pending entry for sending. `None` when another process holds
    /// it or it is gone.
    pub fn claim(&self, id: &str) -> Result<Option<Claim<'_>>, OutboxError> {
        self.claim_with(id, false)
    }

    /// [`Outbox::claim`]; with `wait`, waits for another process (or
    /// thread) that holds the entry to be done with it rather than giving up.
    pub(super) fn claim_with(&self, id: &str, wait: bool) -> Result<Option<Claim<'_>>, OutboxError> {
        let lock_path = self.pending.join(format!("{id}.lock"));
        let envelope_path = self.pending.join(format!("{id}.envelope"));
        if !envelope_path.exists() {
            return Ok(None);
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err("open lock", &lock_path))?;
        let locked = if wait { lock.lock().map_err(fs::TryLockError::Error) } else { lock.try_lock() };
        match locked {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &lock_path)(e)),
        }
        // See the module docs: the inode we locked must still be the lock file,
        // and the entry must not have been completed while we waited.
        let locked = lock.metadata().map_err(io_err("stat", &lock_path))?;
        let same_inode =
            fs::metadata(&lock_path).map(|m| m.ino() == locked.ino() && m.dev() == locked.dev()).unwrap_or(false);
        if !same_inode {
            return Ok(None);
        }
        if !envelope_path.exists() {
            // We hold the lock, so unlinking is safe; a crash here only
            // leaves a lock file that the stale sweep removes.
            let _ = fs::remove_file(&lock_path);
            return Ok(None);
        }
        let state = self.state(id)?;
        Ok(Some(Claim { outbox: self, id: id.to_owned(), _lock: lock, state }))
    }
}

/// An entry held for sending by this process (see [`Outbox::claim`]).
#[derive(Debug)]
pub struct Claim<'a> {
    outbox: &'a Outbox,
    id: String,
    _lock: File,
    state: EntryState,
}

impl Claim<'_> {
    /// The entry id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The entry's persisted state.
    pub fn state(&self) -> &EntryState {
        &self.state
    }

    /// Whether the backoff allows sending at `now`.
    pub fn is_due(&self, now: SystemTime) -> bool {
        self.state.next_attempt_at() <= now
    }

    /// Where the envelope is on disk.
    pub fn envelope_path(&self) -> PathBuf {
        self.outbox.pending.join(format!("{}.envelope", self.id))
    }

    fn state_path(&self) -> PathBuf {
        self.outbox.pending.join(format!("{}.json", self.id))
    }

    /// Reads the envelope bytes.
    pub fn read(&self) -> Result<Vec<u8>, OutboxError> {
        let path = self.envelope_path();
        let mut bytes = Vec::new();
        File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io_err("read", &path))?;
        Ok(bytes)
    }

    /// Atomically replaces the envelope (after dropping items from it).
    pub fn replace(&mut self, bytes: &[u8], summary: Summary) -> Result<(), OutboxError> {
        self.outbox.write_atomic(&self.envelope_path(), bytes)?;
        self.state.summary = summary;
        self.save_state()
    }

    /// Records a retryable failure: one more attempt, the next one after the
    /// backoff delay.
    pub fn retry_later(&mut self, error: &str) -> Result<SystemTime, OutboxError> {
        self.state.attempts = self.state.attempts.saturating_add(1);
        let next = self.outbox.clock.now() + self.outbox.config.backoff.delay(self.state.attempts);
        self.state.next_attempt_at_ms = unix_millis(next);
        self.state.last_error = Some(error.to_owned());
        self.save_state()?;
        Ok(next)
    }

    /// Notes why the entry waits (a rate limit) without counting an attempt.
    pub fn note(&mut self, error: &str) -> Result<(), OutboxError> {
        self.state.last_error = Some(error.to_owned());
        self.save_state()
    }

    fn save_state(&self) -> Result<(), OutboxError> {
        self.outbox.write_json(&self.state_path(), &self.state)
    }

    /// Relay accepted the envelope: the entry is deleted.
    pub fn complete(self) -> Result<(), OutboxError> {
        self.delete()
    }

    /// Relay refused the envelope for good (or it is corrupt): it moves to
    /// `rejected/` with the reason, and is never sent again. Returns where
    /// it went.
    pub fn reject(self, rejection: &Rejection) -> Result<PathBuf, OutboxError> {
        let rejected = &self.outbox.rejected;
        self.outbox.write_json(&rejected.join(format!("{}.json", self.id)), rejection)?;
        let target = rejected.join(format!("{}.envelope", self.id));
        let source = self.envelope_path();
        fs::rename(&source, &target).map_err(io_err("move to rejected/", &source))?;
        sync_dir(rejected)?;
        self.delete()?;
        Ok(target)
    }

    pub(super) fn delete(self) -> Result<(), OutboxError> {
        // The envelope goes first: it is the entry. The lock file goes last,
        // while still held (see the module docs).
        remove_if_exists(&self.envelope_path())?;
        remove_if_exists(&self.state_path())?;
        remove_if_exists(&self.outbox.pending.join(format!("{}.lock", self.id)))?;
        sync_dir(&self.outbox.pending)
    }
}

pub(super) fn default_state(id: &str) -> EntryState {
    EntryState {
        event_id: id.rsplit('-').next().unwrap_or(id).to_owned(),
        attempts: 0,
        next_attempt_at_ms: 0,
        last_error: None,
        summary: Summary { events: 1, ..Summary::default() },
    }
}
