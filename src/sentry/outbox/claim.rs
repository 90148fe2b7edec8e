//! Claiming an entry for sending, and what a sender does with it.
//!
//! See the parent module for the lock protocol this implements.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::SystemTime;

use super::files::{remove_if_exists, sync_dir};
use super::{EntryState, Outbox, OutboxError, Rejection, io_err};
use crate::sentry::clock::unix_millis;
use crate::sentry::envelope::Summary;
use crate::spool::SpoolDir;

impl Outbox {
    /// Claims a pending entry for sending. `None` when another process holds
    /// it or it is gone.
    pub fn claim(&self, id: &str) -> Result<Option<Claim<'_>>, OutboxError> {
        self.claim_with(id, false)
    }

    /// [`Outbox::claim`]; with `wait`, waits for another process (or
    /// thread) that holds the entry to be done with it rather than giving up.
    pub(super) fn claim_with(&self, id: &str, wait: bool) -> Result<Option<Claim<'_>>, OutboxError> {
        let lock_name = format!("{id}.lock");
        let envelope_name = format!("{id}.envelope");
        let lock_path = self.pending.join(&lock_name);
        let exists = |name: &str| self.pending.exists(name).map_err(io_err("stat", &self.pending.join(name)));
        if !exists(&envelope_name)? {
            return Ok(None);
        }
        let Some(lock) = self.pending.lock(&lock_name, wait).map_err(io_err("lock", &lock_path))? else {
            return Ok(None);
        };
        // See the module docs: the inode we locked must still be the lock file,
        // and the entry must not have been completed while we waited.
        let locked = lock.metadata().map_err(io_err("stat", &lock_path))?;
        let current = self.pending.stat(&lock_name).map_err(io_err("stat", &lock_path))?;
        let same_inode = current.is_some_and(|st| st.st_ino == locked.ino() && st.st_dev == locked.dev());
        if !same_inode {
            return Ok(None);
        }
        if !exists(&envelope_name)? {
            // We hold the lock, so unlinking is safe; a crash here only
            // leaves a lock file that the stale sweep removes.
            let _ = self.pending.remove(&lock_name);
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

/// Where a claimed envelope is, to be read off the async threads.
#[derive(Debug, Clone)]
pub struct EnvelopeFile {
    dir: SpoolDir,
    name: String,
}

impl EnvelopeFile {
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    pub fn read(&self) -> Result<Vec<u8>, OutboxError> {
        let path = self.path();
        match self.dir.read(&self.name) {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(io_err("read", &path)(std::io::ErrorKind::NotFound.into())),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }
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

    fn envelope_name(&self) -> String {
        format!("{}.envelope", self.id)
    }

    fn state_name(&self) -> String {
        format!("{}.json", self.id)
    }

    /// Where the envelope is on disk.
    pub fn envelope_path(&self) -> PathBuf {
        self.outbox.pending.join(&self.envelope_name())
    }

    /// The envelope's file, to read on another thread.
    pub fn envelope_file(&self) -> EnvelopeFile {
        EnvelopeFile { dir: self.outbox.pending.clone(), name: self.envelope_name() }
    }

    /// Reads the envelope bytes.
    pub fn read(&self) -> Result<Vec<u8>, OutboxError> {
        self.envelope_file().read()
    }

    /// Atomically replaces the envelope (after dropping items from it).
    pub fn replace(&mut self, bytes: &[u8], summary: Summary) -> Result<(), OutboxError> {
        let path = self.envelope_path();
        self.outbox.pending.write_atomic(&self.envelope_name(), bytes).map_err(io_err("write", &path))?;
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
        self.outbox.write_json(&self.outbox.pending, &self.state_name(), &self.state)
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
        self.outbox.write_json(rejected, &format!("{}.json", self.id), rejection)?;
        let name = self.envelope_name();
        self.outbox
            .pending
            .rename(&name, rejected, &name)
            .map_err(io_err("move to rejected/", &self.envelope_path()))?;
        sync_dir(rejected)?;
        let moved = rejected.join(&name);
        self.delete()?;
        Ok(moved)
    }

    pub(super) fn delete(self) -> Result<(), OutboxError> {
        // The envelope goes first: it is the entry. The lock file goes last,
        // while still held (see the module docs).
        let pending = &self.outbox.pending;
        remove_if_exists(pending, &self.envelope_name())?;
        remove_if_exists(pending, &self.state_name())?;
        remove_if_exists(pending, &format!("{}.lock", self.id))?;
        sync_dir(pending)
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
