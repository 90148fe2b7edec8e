//! Durable file primitives of the outbox, all through the held directories
//! ([`SpoolDir`]): atomic replace, listing, and the sweep of leftovers from
//! interrupted processes.

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Outbox, OutboxError, io_err};
use crate::spool::SpoolDir;

/// A temporary file in a directory of the outbox, removed unless it is
/// given its name.
pub(super) struct TempFile<'a> {
    dir: &'a SpoolDir,
    name: Option<String>,
    file: File,
}

impl<'a> TempFile<'a> {
    pub(super) fn new(dir: &'a SpoolDir) -> Result<TempFile<'a>, OutboxError> {
        let (file, name) = dir.create_temp().map_err(io_err("create a temporary file in", dir.path()))?;
        Ok(TempFile { dir, name: Some(name), file })
    }

    pub(super) fn file(&mut self) -> &mut File {
        &mut self.file
    }

    pub(super) fn path(&self) -> PathBuf {
        self.dir.join(self.name.as_deref().unwrap_or_default())
    }

    /// Renames the (fsync'd) file to `name`, durably.
    pub(super) fn persist(mut self, name: &str) -> Result<(), OutboxError> {
        let temp = self.name.take().unwrap_or_default();
        let done = self.dir.persist(&temp, name);
        if done.is_err() {
            let _ = self.dir.remove(&temp);
        }
        done.map_err(io_err("rename into", &self.dir.join(name)))
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let _ = self.dir.remove(&name);
        }
    }
}

impl Outbox {
    pub(super) fn write_json<T: Serialize>(&self, dir: &SpoolDir, name: &str, value: &T) -> Result<(), OutboxError> {
        let path = dir.join(name);
        let bytes = serde_json::to_vec(value).map_err(|e| io_err("serialize", &path)(e.into()))?;
        dir.write_atomic(name, &bytes).map_err(io_err("write", &path))
    }

    /// Reads JSON; a missing or corrupt file is `None` (logged), because a
    /// half-written bookkeeping file must never stop crash reports.
    pub(super) fn read_json<T: DeserializeOwned>(&self, dir: &SpoolDir, name: &str) -> Result<Option<T>, OutboxError> {
        let path = dir.join(name);
        match dir.read(name).map_err(io_err("read", &path))? {
            Some(bytes) => match serde_json::from_slice(&bytes) {
                Ok(value) => Ok(Some(value)),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "ignoring unreadable outbox file");
                    Ok(None)
                }
            },
            None => Ok(None),
        }
    }

    /// Removes temporary files and orphaned state or lock files left by
    /// interrupted processes, once they are old enough that no live process
    /// can still be writing them.
    pub(super) fn remove_stale_leftovers(&self) -> Result<(), OutboxError> {
        let now = SystemTime::now();
        for dir in [&self.root, &self.pending, &self.rejected] {
            let is_root = std::ptr::eq(dir, &self.root);
            for (name, _) in dir.entries().map_err(io_err("list", dir.path()))? {
                let orphan = match name.rsplit_once('.') {
                    Some((id, "json" | "lock")) if !is_root => {
                        !dir.exists(&format!("{id}.envelope")).map_err(io_err("stat", &dir.join(&name)))?
                    }
                    _ => name.starts_with(".tmp-"),
                };
                if !orphan {
                    continue;
                }
                let Some(st) = dir.stat(&name).map_err(io_err("stat", &dir.join(&name)))? else { continue };
                let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(st.st_mtime.max(0) as u64);
                if now.duration_since(modified).unwrap_or_default() < self.config.stale_after {
                    continue;
                }
                // Only a holder may unlink a lock file (see the module docs), so
                // the lock is taken and kept until the file is gone.
                let _held = if name.ends_with(".lock") {
                    match dir.lock(&name, false) {
                        Ok(Some(file)) => Some(file),
                        _ => continue,
                    }
                } else {
                    None
                };
                remove_if_exists(dir, &name)?;
            }
        }
        Ok(())
    }
}

pub(super) fn list_ids(dir: &SpoolDir) -> Result<Vec<String>, OutboxError> {
    let mut ids = Vec::new();
    for (name, _) in dir.entries().map_err(io_err("list", dir.path()))? {
        if let Some(id) = name.strip_suffix(".envelope")
            && !id.starts_with('.')
        {
            ids.push(id.to_owned());
        }
    }
    ids.sort();
    Ok(ids)
}

pub(super) fn remove_if_exists(dir: &SpoolDir, name: &str) -> Result<(), OutboxError> {
    dir.remove(name).map(drop).map_err(io_err("remove", &dir.join(name)))
}

/// Makes a rename or unlink in `dir` durable.
pub(super) fn sync_dir(dir: &SpoolDir) -> Result<(), OutboxError> {
    dir.sync().map_err(io_err("fsync directory", dir.path()))
}
