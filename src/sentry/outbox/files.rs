//! Durable file primitives: atomic replace, directory fsync, listing, and
//! the sweep of leftovers from interrupted processes.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Outbox, OutboxError, io_err};

impl Outbox {
    pub(super) fn temp_file(&self, dir: &Path) -> Result<tempfile::NamedTempFile, OutboxError> {
        // tempfile creates files with mode 0600.
        tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir).map_err(io_err("create temporary file in", dir))
    }

    /// Atomically replaces `path` with `bytes`: tmp, fsync, rename, dir fsync.
    pub(super) fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), OutboxError> {
        let dir = path.parent().unwrap_or(&self.root);
        let mut tmp = self.temp_file(dir)?;
        tmp.write_all(bytes).map_err(io_err("write", tmp.path()))?;
        tmp.as_file().sync_all().map_err(io_err("fsync", tmp.path()))?;
        tmp.persist(path).map_err(|e| OutboxError::Io {
            action: "rename into",
            path: path.to_owned(),
            source: e.error,
        })?;
        sync_dir(dir)
    }

    pub(super) fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), OutboxError> {
        let bytes = serde_json::to_vec(value).map_err(|e| io_err("serialize", path)(e.into()))?;
        self.write_atomic(path, &bytes)
    }

    /// Reads JSON; a missing or corrupt file is `None` (logged), because a
    /// half-written bookkeeping file must never stop crash reports.
    pub(super) fn read_json<T: DeserializeOwned>(&self, path: &Path) -> Result<Option<T>, OutboxError> {
        match fs::read(path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(value) => Ok(Some(value)),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "ignoring unreadable outbox file");
                    Ok(None)
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", path)(e)),
        }
    }

    /// Removes temporary files and orphaned state or lock files left by
    /// interrupted processes, once they are old enough that no live process
    /// can still be writing them.
    pub(super) fn remove_stale_leftovers(&self) -> Result<(), OutboxError> {
        let now = SystemTime::now();
        for dir in [&self.root, &self.pending, &self.rejected] {
            let entries = fs::read_dir(dir).map_err(io_err("list", dir))?;
            for entry in entries {
                let entry = entry.map_err(io_err("list", dir))?;
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let orphan = match name.rsplit_once('.') {
                    Some((id, "json" | "lock")) if dir != &self.root => !dir.join(format!("{id}.envelope")).exists(),
                    _ => name.starts_with(".tmp-"),
                };
                if !orphan {
                    continue;
                }
                let age = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .unwrap_or_default();
                if age < self.config.stale_after {
                    continue;
                }
                // Only a holder may unlink a lock file (see the module docs), so
                // the lock is taken and kept until the file is gone.
                let _held = if name.ends_with(".lock") {
                    match File::open(&path) {
                        Ok(file) if file.try_lock().is_ok() => Some(file),
                        _ => continue,
                    }
                } else {
                    None
                };
                remove_if_exists(&path)?;
            }
        }
        Ok(())
    }
}

pub(super) fn list_ids(dir: &Path) -> Result<Vec<String>, OutboxError> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let name = entry.map_err(io_err("list", dir))?.file_name();
        let name = name.to_string_lossy();
        if let Some(id) = name.strip_suffix(".envelope")
            && !id.starts_with('.')
        {
            ids.push(id.to_owned());
        }
    }
    ids.sort();
    Ok(ids)
}

pub(super) fn remove_if_exists(path: &Path) -> Result<(), OutboxError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

/// Makes a rename or unlink in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync directory", dir))
}
