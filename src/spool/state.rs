//! Small JSON states that must outlive each crashwatch (in a systemd loop
//! every run is a new process): the crash-loop counts of
//! `sentry::throttle` and the session counts of `sentry::session_budget`.
//! Each is one file in the spool, read and rewritten durably (see
//! [`SpoolDir::write_atomic`]) under an exclusive lock on a file of its own.

use std::io;
use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::SpoolDir;

/// One state file and its lock.
#[derive(Debug, Clone, Copy)]
pub struct StateFile {
    /// The state, e.g. `throttle.json`.
    pub name: &'static str,
    /// Its lock, e.g. `throttle.lock`.
    pub lock: &'static str,
    /// What it holds, for the warning when it is unreadable ("crash-loop counts").
    pub what: &'static str,
}

/// A state file or its lock could not be used.
#[derive(Debug)]
pub struct StateError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl StateFile {
    /// Reads the state in `spool` (its default when the file is missing,
    /// or unreadable: losing the counts costs a few extra envelopes, no
    /// more, and is said in a warning), lets `change` change it, and writes
    /// it back; all under the lock.
    pub fn update<S, T>(&self, spool: &SpoolDir, change: impl FnOnce(&mut S) -> T) -> Result<T, StateError>
    where
        S: Default + Serialize + DeserializeOwned,
    {
        let io = |name: &str| {
            let path = spool.join(name);
            move |source| StateError { path, source }
        };
        let lock = spool.lock(self.lock, true).map_err(io(self.lock))?;
        let mut state = match spool.read(self.name).map_err(io(self.name))? {
            Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(
                    "{} is unreadable ({e}); starting the {} over",
                    spool.join(self.name).display(),
                    self.what
                );
                S::default()
            }),
            None => S::default(),
        };
        let out = change(&mut state);
        let json = serde_json::to_vec_pretty(&state).map_err(|e| io(self.name)(io::Error::other(e)))?;
        spool.write_atomic(self.name, &json).map_err(io(self.name))?;
        drop(lock);
        Ok(out)
    }
}
