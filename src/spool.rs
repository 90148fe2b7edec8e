//! The spool: crashwatch's directory of reports on disk.
//!
//! ```text
//! SPOOL/                       0700
//!   reports/                   0700
//!     <id>/                    0700, one per report
//!       report.json            0600, the CrashReport
//! ```
//!
//! Every file is written to a temporary name in its final directory,
//! fsync'd, renamed into place and the directory fsync'd: a reader sees the
//! old state or the new one, never a torn file, even across a power cut.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::errors::Chain;
use crate::report::CrashReport;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("failed to create the spool directory {path} (choose another with --spool-dir)")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a crashwatch report")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("no report matches '{prefix}' in {spool}; `crashwatch list` shows the reports there")]
    NotFound { prefix: String, spool: PathBuf },
    #[error("'{prefix}' matches {count} reports in {spool}; give more of the id")]
    Ambiguous { prefix: String, count: usize, spool: PathBuf },
    #[error("no reports in {spool}")]
    Empty { spool: PathBuf },
}

/// A spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    /// The spool at `root`, which may not exist yet.
    pub fn at(root: impl Into<PathBuf>) -> Spool {
        Spool { root: root.into() }
    }

    /// `/var/lib/crashwatch` for root when it can be used, else
    /// `$XDG_STATE_HOME/crashwatch`, else `~/.local/state/crashwatch`.
    pub fn default_root() -> PathBuf {
        let system = Path::new("/var/lib/crashwatch");
        if nix::unistd::geteuid().is_root() && create_private_dir(system).is_ok() && writable(system) {
            return system.to_path_buf();
        }
        let state = std::env::var_os("XDG_STATE_HOME")
            .filter(|v| Path::new(v).is_absolute())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/state")));
        match state {
            Some(dir) => dir.join("crashwatch"),
            // No home: a per-user directory that still survives the run.
            None => std::env::temp_dir().join(format!("crashwatch-{}", nix::unistd::geteuid())),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn reports_dir(&self) -> PathBuf {
        self.root.join("reports")
    }

    /// Creates the spool's directories (0700) if they are missing.
    pub fn create(&self) -> Result<(), SpoolError> {
        for dir in [self.root.clone(), self.reports_dir(), self.scratch_dir()] {
            create_private_dir(&dir).map_err(|source| SpoolError::Create { path: dir.clone(), source })?;
        }
        Ok(())
    }

    /// The directory of report `id`.
    pub fn report_dir(&self, id: &str) -> PathBuf {
        self.reports_dir().join(id)
    }

    /// Where the tracer writes dumps before they belong to a report: inside
    /// the spool, so that adopting them is a rename.
    pub fn scratch_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Removes scratch files older than `age`: dumps of a crashwatch that was
    /// killed while it captured. Younger ones may belong to another
    /// crashwatch sharing the spool, writing right now.
    pub fn clean_scratch(&self, age: std::time::Duration) {
        let Ok(entries) = fs::read_dir(self.scratch_dir()) else { return };
        for entry in entries.flatten() {
            let old = entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|e| e > age));
            if old && fs::remove_file(entry.path()).is_ok() {
                tracing::info!("removed {}, left by an interrupted capture", entry.path().display());
            }
        }
    }

    /// Moves `file` (from the scratch directory) into report `id`'s
    /// directory as `name`; returns its size. The report itself is saved
    /// after its files, so a `report.json` never names a missing file.
    pub fn adopt(&self, id: &str, file: &Path, name: &str) -> Result<u64, SpoolError> {
        let dest = self.report_dir(id).join(name);
        let dir = dest.parent().expect("a file in a directory").to_path_buf();
        create_private_dir(&dir).map_err(|source| SpoolError::Create { path: dir.clone(), source })?;
        let write_err = |source| SpoolError::Write { path: dest.clone(), source };
        // Private and on disk before it is named in a report.
        let f = fs::File::open(file).map_err(write_err)?;
        f.set_permissions(fs::Permissions::from_mode(0o600)).map_err(write_err)?;
        f.sync_all().map_err(write_err)?;
        let size = f.metadata().map_err(write_err)?.len();
        fs::rename(file, &dest).map_err(write_err)?;
        fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(write_err)?;
        Ok(size)
    }

    /// Stores `report` durably; returns the directory it is in.
    pub fn save(&self, report: &CrashReport) -> Result<PathBuf, SpoolError> {
        let dir = self.report_dir(&report.id);
        create_private_dir(&dir).map_err(|source| SpoolError::Create { path: dir.clone(), source })?;
        let mut json = serde_json::to_vec_pretty(report).expect("a report always serialises");
        json.push(b'\n');
        write_atomic(&dir.join("report.json"), &json)?;
        Ok(dir)
    }

    /// Every report, newest first. Unreadable entries are skipped with a
    /// warning, so one damaged report never hides the others.
    pub fn reports(&self) -> Result<Vec<CrashReport>, SpoolError> {
        let dir = self.reports_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(SpoolError::Read { path: dir, source }),
        };
        let mut reports = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| SpoolError::Read { path: dir.clone(), source })?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            match load(&entry.path().join("report.json")) {
                Ok(report) => reports.push(report),
                Err(e) => tracing::warn!("skipping a damaged report: {}", Chain(&e)),
            }
        }
        reports.sort_by(|a, b| b.ended_at.cmp(&a.ended_at).then_with(|| a.id.cmp(&b.id)));
        Ok(reports)
    }

    /// The report whose id starts with `prefix`.
    pub fn find(&self, prefix: &str) -> Result<CrashReport, SpoolError> {
        let prefix = prefix.to_ascii_lowercase();
        let mut found: Vec<CrashReport> = self.reports()?.into_iter().filter(|r| r.id.starts_with(&prefix)).collect();
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(SpoolError::NotFound { prefix, spool: self.root.clone() }),
            count => Err(SpoolError::Ambiguous { prefix, count, spool: self.root.clone() }),
        }
    }

    /// The report whose id starts with `prefix`, or the newest without one
    /// (what `show`, `debug`, `dump` and `symbolicate` take).
    pub fn pick(&self, prefix: Option<&str>) -> Result<CrashReport, SpoolError> {
        match prefix {
            Some(prefix) => self.find(prefix),
            None => self.reports()?.into_iter().next().ok_or_else(|| SpoolError::Empty { spool: self.root.clone() }),
        }
    }

    /// The path of `file`, a name recorded in report `id` (`minidump.dmp`,
    /// `preserved/…`); `None` for a name that would lead out of the report's
    /// directory.
    pub fn report_file(&self, id: &str, file: &str) -> Option<PathBuf> {
        let name = Path::new(file);
        let inside = !file.is_empty() && name.components().all(|c| matches!(c, std::path::Component::Normal(_)));
        inside.then(|| self.report_dir(id).join(name))
    }
}

fn load(path: &Path) -> Result<CrashReport, SpoolError> {
    let bytes = fs::read(path).map_err(|source| SpoolError::Read { path: path.to_path_buf(), source })?;
    serde_json::from_slice(&bytes).map_err(|source| SpoolError::Parse { path: path.to_path_buf(), source })
}

/// Creates `dir` and its parents; `dir` itself gets mode 0700 (parents that
/// have to be created too get the usual 0755 less umask, like `mkdir -p`).
fn create_private_dir(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

fn writable(dir: &Path) -> bool {
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
}

/// Writes `bytes` to `path` atomically and durably, mode 0600.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let dir = path.parent().expect("a file in a directory");
    let err = |source| SpoolError::Write { path: path.to_path_buf(), source };
    // NamedTempFile is created 0600 in the target directory, so the rename
    // below stays within one filesystem.
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir).map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().set_permissions(fs::Permissions::from_mode(0o600)).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn creates_private_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::at(tmp.path().join("a/b/spool"));
        spool.create().unwrap();
        assert_eq!(fs::metadata(spool.root()).unwrap().mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(spool.reports_dir()).unwrap().mode() & 0o777, 0o700);
        // Idempotent.
        spool.create().unwrap();
    }

    #[test]
    fn atomic_write_replaces_and_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let leftovers: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, ["f.json"]);
    }

    #[test]
    fn clean_scratch_removes_only_old_files() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::at(tmp.path());
        spool.create().unwrap();
        let (old, new) = (spool.scratch_dir().join("old.dmp"), spool.scratch_dir().join("new.dmp"));
        fs::write(&old, b"x").unwrap();
        fs::write(&new, b"x").unwrap();
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        fs::File::options().write(true).open(&old).unwrap().set_modified(two_hours_ago).unwrap();
        spool.clean_scratch(std::time::Duration::from_secs(3600));
        assert!(!old.exists());
        assert!(new.exists());
    }

    #[test]
    fn missing_spool_lists_nothing() {
        let spool = Spool::at("/nonexistent/crashwatch-spool");
        assert!(spool.reports().unwrap().is_empty());
        assert!(matches!(spool.find("abcd"), Err(SpoolError::NotFound { .. })));
        assert!(matches!(spool.pick(None), Err(SpoolError::Empty { .. })));
    }

    #[test]
    fn report_files_stay_inside_their_report() {
        let spool = Spool::at("/s");
        assert_eq!(spool.report_file("ab", "minidump.dmp"), Some(PathBuf::from("/s/reports/ab/minidump.dmp")));
        assert_eq!(spool.report_file("ab", "preserved/1/app"), Some(PathBuf::from("/s/reports/ab/preserved/1/app")));
        for outside in ["", "../cd/minidump.dmp", "/etc/shadow", "preserved/../../x", "./x"] {
            assert_eq!(spool.report_file("ab", outside), None, "{outside}");
        }
    }
}
