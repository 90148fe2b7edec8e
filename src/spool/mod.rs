//! The spool: crashwatch's directory of reports on disk.
//!
//! ```text
//! SPOOL/                        0700, the effective user's (see dir.rs)
//!   reports/<id>/               one per report
//!     .lock                     flock held by the process filing it
//!     unfinished.json           the report as known so far (until report.json)
//!     deliver.json              meant for Sentry, not yet queued: how to send it
//!     minidump.dmp stacks.json preserved/ attachments/
//!     report.json               the finished report: the commit point
//!   reports/.new-<nonce>/       a report directory being made: locked, then
//!                               renamed to <id>, so none is seen unlocked
//!   reports/.deleting-<id>-<n>/ a report being pruned (skipped by readers)
//!   tmp/<pid>.<nonce>/          scratch of one running crashwatch, flock'd
//!                               on the directory for as long as it runs;
//!                               its deliver.json (with a DSN) goes to the
//!                               reports a recovery makes of its dumps
//!   outbox/                     envelopes waiting for Relay (sentry::outbox)
//!   throttle.json throttle.lock crash-loop state (sentry::throttle)
//!   sessions.json sessions.lock Release Health counts (sentry::session_budget)
//! ```
//!
//! A report's life, and what survives a SIGKILL of crashwatch at any point:
//!
//! ```text
//!  dump written in tmp/<pid>.<nonce>/ ──► begin: reports/<id>/ locked,
//!   (owner dead: its directory's lock      unfinished.json, deliver.json,
//!    is free; the dump is taken into        dump renamed in
//!    reports/<id> by whoever finds it,          │
//!    <id> derived from its name)                ▼
//!                                        finish: symbolicate → stacks.json,
//!                                        report.json, unfinished.json removed
//!                                              │
//!                                              ▼
//!                                        queue (outbox, by event id = <id>),
//!                                        deliver.json removed
//! ```
//!
//! Every step is a durable rename or write under the spool's descriptor
//! ([`SpoolDir`]), and each is safe to redo: a process that finds a report
//! whose lock is free with `unfinished.json` or `deliver.json` (its filer was
//! killed) redoes what is left, under the report's lock, so two crashwatches
//! never finish one report twice. The id of a crash is derived from its dump's
//! scratch name, so a dump taken in by two paths is still one report and one
//! Sentry event.

mod dir;
pub mod retention;
mod scratch;
mod state;
mod store;

use std::io;
use std::path::{Path, PathBuf};

pub use dir::{Missing, SpoolDir};
pub use scratch::{Abandoned, Scratch, scratch_id};
pub use state::{StateError, StateFile};
pub use store::{DELIVER, Held, ReportHead, State, Store};

use crate::report::CrashReport;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("refusing the spool directory {path}: {why}")]
    Unsafe { path: PathBuf, why: String },
    #[error("failed to {action} {path}")]
    Io {
        action: &'static str,
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

impl SpoolError {
    pub(crate) fn io(action: &'static str, path: PathBuf) -> impl FnOnce(io::Error) -> SpoolError {
        move |source| SpoolError::Io { action, path, source }
    }
}

/// A spool directory, checked and held open; or, for a command that only
/// reads, one that does not exist (and then holds nothing).
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
    dir: Option<SpoolDir>,
}

impl Spool {
    /// The spool at `root`, created (with `reports/` and `tmp/`) if missing.
    pub fn create(root: impl Into<PathBuf>) -> Result<Spool, SpoolError> {
        let root = root.into();
        let dir = SpoolDir::open_root(&root, Missing::Create)?;
        let spool = Spool { root, dir };
        if let Some(dir) = &spool.dir {
            dir.create_dir("reports")?;
            dir.create_dir("tmp")?;
        }
        Ok(spool)
    }

    /// The spool at `root` for a command that may only read: nothing is
    /// created, and a missing spool is an empty one.
    pub fn open(root: impl Into<PathBuf>) -> Result<Spool, SpoolError> {
        let root = root.into();
        let dir = SpoolDir::open_root(&root, Missing::Absent)?;
        Ok(Spool { root, dir })
    }

    /// `/var/lib/crashwatch` for root when it can be used, else
    /// `$XDG_STATE_HOME/crashwatch`, else `~/.local/state/crashwatch`.
    /// Creates nothing.
    pub fn default_root() -> PathBuf {
        let system = Path::new("/var/lib/crashwatch");
        let usable = |dir: &Path| nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok();
        if nix::unistd::geteuid().is_root() && (system.is_dir() || usable(Path::new("/var/lib"))) {
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

    /// The spool's directory; `None` for a spool that does not exist.
    pub fn dir(&self) -> Option<&SpoolDir> {
        self.dir.as_ref()
    }

    /// The report store; `None` when there is none yet.
    pub fn store(&self) -> Result<Option<Store>, SpoolError> {
        let Some(dir) = &self.dir else { return Ok(None) };
        Ok(dir.open_dir("reports", Missing::Absent)?.map(Store::new))
    }

    /// The report store, created if missing.
    pub fn create_store(&self) -> Result<Store, SpoolError> {
        let dir = self.dir.as_ref().ok_or_else(|| SpoolError::Io {
            action: "open",
            path: self.root.clone(),
            source: io::ErrorKind::NotFound.into(),
        })?;
        Ok(Store::new(dir.create_dir("reports")?))
    }

    /// The directory of report `id` (for reading by path).
    pub fn report_dir(&self, id: &str) -> PathBuf {
        self.root.join("reports").join(id)
    }

    /// Every finished report, newest first. Unreadable entries are skipped
    /// with a warning, so one damaged report never hides the others.
    pub fn reports(&self) -> Result<Vec<CrashReport>, SpoolError> {
        let Some(store) = self.store()? else { return Ok(Vec::new()) };
        let mut reports = Vec::new();
        for id in store.ids()? {
            match store.load(&id) {
                Ok(Some(report)) => reports.push(report),
                Ok(None) => {}
                Err(e) => tracing::warn!("skipping a damaged report: {}", crate::errors::Chain(&e)),
            }
        }
        reports.sort_by(|a, b| b.ended_at.cmp(&a.ended_at).then_with(|| a.id.cmp(&b.id)));
        Ok(reports)
    }

    /// The heads of every finished report (what `list` shows), newest first.
    pub fn heads(&self) -> Result<Vec<ReportHead>, SpoolError> {
        let Some(store) = self.store()? else { return Ok(Vec::new()) };
        let mut heads = store.heads()?;
        heads.sort_by(|a, b| b.ended_at.cmp(&a.ended_at).then_with(|| a.id.cmp(&b.id)));
        Ok(heads)
    }

    /// The report whose id starts with `prefix`.
    pub fn find(&self, prefix: &str) -> Result<CrashReport, SpoolError> {
        let prefix = prefix.to_ascii_lowercase();
        let not_found = || SpoolError::NotFound { prefix: prefix.clone(), spool: self.root.clone() };
        let Some(store) = self.store()? else { return Err(not_found()) };
        let mut found = Vec::new();
        for id in store.ids()?.into_iter().filter(|id| id.starts_with(&prefix)) {
            if let Some(report) = store.load(&id)? {
                found.push(report);
            }
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(not_found()),
            count => Err(SpoolError::Ambiguous { prefix, count, spool: self.root.clone() }),
        }
    }

    /// The report whose id starts with `prefix`, or the newest without one
    /// (what `show`, `debug`, `dump` and `symbolicate` take).
    pub fn pick(&self, prefix: Option<&str>) -> Result<CrashReport, SpoolError> {
        match prefix {
            Some(prefix) => self.find(prefix),
            None => {
                let newest = self.heads()?.into_iter().next();
                let empty = || SpoolError::Empty { spool: self.root.clone() };
                let id = newest.ok_or_else(empty)?.id;
                self.find(&id)
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn creates_private_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::create(tmp.path().join("a/b/spool")).unwrap();
        assert_eq!(fs::metadata(spool.root()).unwrap().mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(spool.root().join("reports")).unwrap().mode() & 0o777, 0o700);
        // Idempotent.
        Spool::create(spool.root()).unwrap();
    }

    #[test]
    fn missing_spool_lists_nothing_and_creates_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path().join("spool")).unwrap();
        assert!(spool.reports().unwrap().is_empty());
        assert!(matches!(spool.find("abcd"), Err(SpoolError::NotFound { .. })));
        assert!(matches!(spool.pick(None), Err(SpoolError::Empty { .. })));
        assert!(fs::read_dir(tmp.path()).unwrap().next().is_none());
    }

    #[test]
    fn report_files_stay_inside_their_report() {
        let spool = Spool { root: "/s".into(), dir: None };
        assert_eq!(spool.report_file("ab", "minidump.dmp"), Some(PathBuf::from("/s/reports/ab/minidump.dmp")));
        assert_eq!(spool.report_file("ab", "preserved/1/app"), Some(PathBuf::from("/s/reports/ab/preserved/1/app")));
        for outside in ["", "../cd/minidump.dmp", "/etc/shadow", "preserved/../../x", "./x"] {
            assert_eq!(spool.report_file("ab", outside), None, "{outside}");
        }
    }
}
