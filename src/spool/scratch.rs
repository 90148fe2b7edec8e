//! `SPOOL/tmp/<pid>.<nonce>/`: where one running crashwatch's tracer writes
//! dumps (and copies of deleted binaries) before they belong to a report.
//!
//! The directory is `flock`ed for as long as its crashwatch runs; the kernel
//! drops the lock when the process dies, however it dies. A directory whose
//! lock can be taken is therefore [`Abandoned`]: whatever is in it was left
//! by a crashwatch that is gone, and is taken into the report store (a
//! complete dump) or removed (anything else) by whoever finds it.

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::SpoolError;
use super::dir::{Missing, SpoolDir};
use super::store::DELIVER;

/// Loose files directly in `tmp/` (left by versions before the per-process
/// directories) older than this are removed.
const LOOSE_MAX_AGE: Duration = Duration::from_secs(3600);

/// This process's scratch directory, locked while it lives; removed when
/// dropped if nothing is left in it.
#[derive(Debug)]
pub struct Scratch {
    tmp: SpoolDir,
    dir: SpoolDir,
    name: String,
    _lock: File,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Left (for a recovery) while a dump is still in it.
        let others = self.dir.entries().map(|e| e.iter().any(|(name, _)| name != DELIVER));
        if others.is_ok_and(|others| !others) {
            let _ = self.dir.remove(DELIVER);
            let _ = self.tmp.remove_dir(&self.name);
        }
    }
}

impl Scratch {
    /// Makes a new scratch directory in `spool`'s `tmp/`.
    pub fn new(spool: &SpoolDir) -> Result<Scratch, SpoolError> {
        let tmp = spool.create_dir("tmp")?;
        let name = format!("{}.{:08x}", std::process::id(), rand::random::<u32>());
        let dir = tmp.create_dir(&name)?;
        let lock = dir.try_lock_self().map_err(SpoolError::io("lock", dir.path().to_path_buf()))?;
        let lock = lock.ok_or_else(|| SpoolError::Io {
            action: "lock",
            path: dir.path().to_path_buf(),
            source: std::io::ErrorKind::WouldBlock.into(),
        })?;
        Ok(Scratch { tmp, dir, name, _lock: lock })
    }

    pub fn dir(&self) -> &SpoolDir {
        &self.dir
    }

    /// `<pid>.<nonce>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path the tracer writes into: the held directory itself, however
    /// the spool's path may change meanwhile.
    pub fn tracer_path(&self) -> PathBuf {
        self.dir.fd_path()
    }
}

/// The report id of a crash whose dump was written as `file` in scratch
/// directory `scratch`: the same whichever process takes the dump in, so
/// that one crash is one report and one Sentry event. (FNV-1a, 128 bits.)
pub fn scratch_id(scratch: &str, file: &str) -> String {
    let mut hash: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for byte in scratch.bytes().chain([b'/']).chain(file.bytes()) {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    format!("{hash:032x}")
}

/// The scratch directory of a crashwatch that is gone, held (locked) by
/// this process.
#[derive(Debug)]
pub struct Abandoned {
    tmp: SpoolDir,
    dir: SpoolDir,
    name: String,
    _lock: File,
}

impl Abandoned {
    /// Every scratch directory in `spool` whose owner is gone. Loose files
    /// of older versions, once old, are removed on the way.
    pub fn find(spool: &SpoolDir) -> Result<Vec<Abandoned>, SpoolError> {
        let Some(tmp) = spool.open_dir("tmp", Missing::Absent)? else { return Ok(Vec::new()) };
        let entries = tmp.entries().map_err(SpoolError::io("list", tmp.path().to_path_buf()))?;
        let mut found = Vec::new();
        for (name, is_dir) in entries {
            if is_dir == Some(false) {
                remove_if_old(&tmp, &name);
                continue;
            }
            let dir = match tmp.open_dir(&name, Missing::Absent) {
                Ok(Some(dir)) => dir,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!("{}", crate::errors::Chain(&e));
                    continue;
                }
            };
            match dir.try_lock_self() {
                Ok(Some(lock)) => found.push(Abandoned { tmp: tmp.clone(), dir, name, _lock: lock }),
                Ok(None) => {}
                Err(e) => tracing::warn!("failed to lock {}: {e}", dir.path().display()),
            }
        }
        Ok(found)
    }

    pub fn dir(&self) -> &SpoolDir {
        &self.dir
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The files in it, in name order.
    pub fn files(&self) -> Result<Vec<String>, SpoolError> {
        let entries = self.dir.entries().map_err(SpoolError::io("list", self.dir.path().to_path_buf()))?;
        let mut names: Vec<String> = entries.into_iter().map(|(n, _)| n).collect();
        names.sort();
        Ok(names)
    }

    /// Removes it and what is left in it.
    pub fn remove(self) -> Result<(), SpoolError> {
        let path = self.dir.path().to_path_buf();
        self.tmp.remove_all(&self.name).map_err(SpoolError::io("remove", path))
    }
}

fn remove_if_old(tmp: &SpoolDir, name: &str) {
    let Ok(Some(st)) = tmp.stat(name) else { return };
    let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(st.st_mtime.max(0) as u64);
    if modified.elapsed().is_ok_and(|age| age > LOOSE_MAX_AGE) && tmp.remove(name).is_ok() {
        tracing::info!("removed {}, left by an interrupted capture", tmp.join(name).display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_scratch_directory_is_not_abandoned_a_dead_ones_is() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = SpoolDir::open_root(&tmp.path().join("spool"), Missing::Create).unwrap().unwrap();
        let live = Scratch::new(&spool).unwrap();
        assert!(Abandoned::find(&spool).unwrap().is_empty());
        let name = live.name().to_owned();
        live.dir().write_atomic("crash-1-1-1.dmp", b"MDMP").unwrap();
        drop(live);
        let found = Abandoned::find(&spool).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name(), name);
        assert_eq!(found[0].files().unwrap(), ["crash-1-1-1.dmp"]);
        // Held: nobody else takes it meanwhile.
        assert!(Abandoned::find(&spool).unwrap().is_empty());
        found.into_iter().next().unwrap().remove().unwrap();
        assert!(Abandoned::find(&spool).unwrap().is_empty());
        assert!(!tmp.path().join("spool/tmp").join(name).exists());
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(scratch_id("1.a", "crash-1-1-5.dmp"), scratch_id("1.a", "crash-1-1-5.dmp"));
        assert_ne!(scratch_id("1.a", "crash-1-1-5.dmp"), scratch_id("1.b", "crash-1-1-5.dmp"));
        assert_eq!(scratch_id("x", "y").len(), 32);
        assert!(super::super::store::is_report_id(&scratch_id("x", "y")));
    }
}
