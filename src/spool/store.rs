//! The report store: `SPOOL/reports/<id>/`, one directory per report, each
//! changed only by the process that holds its lock (see the parent module
//! for the files and their order).

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::OffsetDateTime;

use super::SpoolError;
use super::dir::{Missing, SpoolDir};
use crate::process::ChildStatus;
use crate::report::{CrashReport, Kind, Program};

/// The finished report; its presence is the commit point of filing.
pub const RECORD: &str = "report.json";
/// The report as known so far, while it is being filed.
pub const UNFINISHED: &str = "unfinished.json";
/// Present while a report meant for Sentry is not yet in the outbox (and
/// in the scratch directory of a crashwatch with a DSN).
pub const DELIVER: &str = "deliver.json";
const LOCK: &str = ".lock";
const DELETING: &str = ".deleting-";
const NEW: &str = ".new-";

/// A report id: 32 lowercase hex digits.
pub fn is_report_id(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What `list` and retention need of a report, read without its log tail
/// and stacks.
#[derive(Debug, Clone, Deserialize)]
pub struct ReportHead {
    pub id: String,
    pub kind: Kind,
    pub program: Program,
    pub status: ChildStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub ended_at: OffsetDateTime,
    /// What makes two crashes "the same" (absent in reports of older
    /// versions).
    #[serde(default)]
    pub signature: Option<String>,
}

impl ReportHead {
    pub fn short_id(&self) -> &str {
        crate::report::short_id(&self.id)
    }

    /// `SIGSEGV` or `exit 3`.
    pub fn cause(&self) -> String {
        match self.status {
            ChildStatus::Exited(code) => format!("exit {code}"),
            ChildStatus::Signaled { signal, .. } => crate::process::signals::name(signal),
        }
    }

    /// The signature, or for an older report the program and how it ended.
    pub fn signature_key(&self) -> String {
        self.signature.clone().unwrap_or_else(|| format!("{}|{}", self.program.exe.display(), self.cause()))
    }
}

/// `SPOOL/reports`.
#[derive(Debug, Clone)]
pub struct Store {
    dir: SpoolDir,
}

impl Store {
    pub fn new(dir: SpoolDir) -> Store {
        Store { dir }
    }

    pub fn dir(&self) -> &SpoolDir {
        &self.dir
    }

    /// The ids of every report directory, in name order.
    pub fn ids(&self) -> Result<Vec<String>, SpoolError> {
        let entries = self.dir.entries().map_err(SpoolError::io("list", self.dir.path().to_path_buf()))?;
        let mut ids: Vec<String> = entries.into_iter().map(|(n, _)| n).filter(|n| is_report_id(n)).collect();
        ids.sort();
        Ok(ids)
    }

    fn open(&self, id: &str) -> Result<Option<SpoolDir>, SpoolError> {
        self.dir.open_dir(id, Missing::Absent)
    }

    /// Report `id`'s file `name` parsed as JSON; `None` if either is missing.
    fn read_json<T: serde::de::DeserializeOwned>(&self, id: &str, name: &str) -> Result<Option<T>, SpoolError> {
        let Some(dir) = self.open(id)? else { return Ok(None) };
        read_json(&dir, name)
    }

    /// The finished report `id`, if there is one.
    pub fn load(&self, id: &str) -> Result<Option<CrashReport>, SpoolError> {
        self.read_json(id, RECORD)
    }

    /// The head of finished report `id`, if there is one.
    pub fn head(&self, id: &str) -> Result<Option<ReportHead>, SpoolError> {
        self.read_json(id, RECORD)
    }

    /// The heads of every finished report; unreadable ones are skipped
    /// with a warning.
    pub fn heads(&self) -> Result<Vec<ReportHead>, SpoolError> {
        let mut heads = Vec::new();
        for id in self.ids()? {
            match self.read_json::<ReportHead>(&id, RECORD) {
                Ok(Some(head)) => heads.push(head),
                Ok(None) => {}
                Err(e) => tracing::warn!("skipping a damaged report: {}", crate::errors::Chain(&e)),
            }
        }
        Ok(heads)
    }

    /// What is left to do for report `id`, judging by its files.
    pub fn state(&self, id: &str) -> Result<State, SpoolError> {
        let Some(dir) = self.open(id)? else { return Ok(State::Gone) };
        let has = |name| dir.exists(name).map_err(SpoolError::io("stat", dir.join(name)));
        Ok(state_of(has(RECORD)?, has(UNFINISHED)?, has(DELIVER)?))
    }

    /// Takes report `id` for changing it: its directory (created with
    /// [`Missing::Create`]) with its lock held. `None` when another process
    /// holds it, or it does not exist and is not to be created.
    ///
    /// A new directory is made under a dot-name, locked, and only then
    /// renamed to `id`: a report directory is never seen unlocked before its
    /// maker holds it (a recovery would take it for one whose maker died).
    pub fn hold(&self, id: &str, missing: Missing) -> Result<Option<Held>, SpoolError> {
        if let Some(dir) = self.dir.open_dir(id, Missing::Absent)? {
            let lock = dir.lock(LOCK, false).map_err(SpoolError::io("lock", dir.join(LOCK)))?;
            return Ok(lock.map(|lock| Held { id: id.to_owned(), dir, _lock: lock }));
        }
        if missing == Missing::Absent {
            return Ok(None);
        }
        let path = self.dir.join(id);
        let temp = format!("{NEW}{:016x}", rand::random::<u64>());
        let dir = self.dir.create_dir(&temp)?;
        let lock = dir.lock(LOCK, false).map_err(SpoolError::io("lock", dir.join(LOCK)))?;
        match self.dir.rename(&temp, &self.dir, id) {
            Ok(()) => {
                self.dir.sync().map_err(SpoolError::io("fsync", self.dir.path().to_path_buf()))?;
                Ok(lock.map(|lock| Held { id: id.to_owned(), dir: dir.renamed(path), _lock: lock }))
            }
            // Made meanwhile by another process (never empty: it holds its
            // lock file).
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => {
                drop(lock);
                self.dir.remove_all(&temp).map_err(SpoolError::io("remove", self.dir.join(&temp)))?;
                self.hold(id, Missing::Absent)
            }
            Err(e) => Err(SpoolError::io("create", path)(e)),
        }
    }

    /// Deletes a held report: renamed aside first, so that no reader sees
    /// it half-removed.
    pub fn delete(&self, held: Held) -> Result<(), SpoolError> {
        let aside = format!("{DELETING}{}-{:08x}", held.id, rand::random::<u32>());
        let path = self.dir.join(&held.id);
        self.dir.rename(&held.id, &self.dir, &aside).map_err(SpoolError::io("move aside", path.clone()))?;
        self.dir.sync().map_err(SpoolError::io("fsync", self.dir.path().to_path_buf()))?;
        drop(held);
        self.dir.remove_all(&aside).map_err(SpoolError::io("remove", path))
    }

    /// Removes what an interrupted [`Store::delete`] or [`Store::hold`]
    /// left (a directory being made is left to its maker while it lives).
    pub fn sweep_deleted(&self) -> Result<(), SpoolError> {
        let entries = self.dir.entries().map_err(SpoolError::io("list", self.dir.path().to_path_buf()))?;
        for (name, _) in entries {
            let _held = if name.starts_with(NEW) {
                let Some(dir) = self.dir.open_dir(&name, Missing::Absent)? else { continue };
                match dir.lock(LOCK, false).map_err(SpoolError::io("lock", dir.join(LOCK)))? {
                    Some(lock) => Some(lock),
                    None => continue,
                }
            } else if name.starts_with(DELETING) {
                None
            } else {
                continue;
            };
            self.dir.remove_all(&name).map_err(SpoolError::io("remove", self.dir.join(&name)))?;
        }
        Ok(())
    }
}

fn state_of(record: bool, unfinished: bool, deliver: bool) -> State {
    match (record, unfinished, deliver) {
        (true, true, _) => State::Committing,
        (true, false, true) => State::ToQueue,
        (true, false, false) => State::Done,
        (false, true, _) => State::Unfinished,
        (false, false, _) => State::Empty,
    }
}

/// Where a report stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Its directory is gone.
    Gone,
    /// A directory with no record: its filer was stopped right after
    /// making it.
    Empty,
    /// `unfinished.json` and no `report.json`: to be finished.
    Unfinished,
    /// `report.json` written, `unfinished.json` not yet removed.
    Committing,
    /// Finished, but meant for Sentry and not yet queued.
    ToQueue,
    /// Nothing left to do.
    Done,
}

fn read_json<T: serde::de::DeserializeOwned>(dir: &SpoolDir, name: &str) -> Result<Option<T>, SpoolError> {
    let path = dir.join(name);
    let Some(bytes) = dir.read(name).map_err(SpoolError::io("read", path.clone()))? else { return Ok(None) };
    serde_json::from_slice(&bytes).map(Some).map_err(|source| SpoolError::Parse { path, source })
}

/// A report directory held by this process (its lock). Every change to a
/// report is made through one.
#[derive(Debug)]
pub struct Held {
    id: String,
    dir: SpoolDir,
    _lock: File,
}

impl Held {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The directory, for readers that take a path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn dir(&self) -> &SpoolDir {
        &self.dir
    }

    pub fn state(&self) -> Result<State, SpoolError> {
        let has = |name| self.dir.exists(name).map_err(SpoolError::io("stat", self.dir.join(name)));
        Ok(state_of(has(RECORD)?, has(UNFINISHED)?, has(DELIVER)?))
    }

    /// Removes an `unfinished.json` that a committed report still has (its
    /// filer was stopped between the two steps of [`Held::commit`]).
    pub fn forget_unfinished(&self) -> Result<(), SpoolError> {
        self.dir.remove(UNFINISHED).map_err(SpoolError::io("remove", self.dir.join(UNFINISHED)))?;
        self.dir.sync().map_err(SpoolError::io("fsync", self.dir.path().to_path_buf()))
    }

    /// The report as recorded so far: the finished one, else the
    /// unfinished one.
    pub fn record(&self) -> Result<Option<CrashReport>, SpoolError> {
        match read_json(&self.dir, RECORD)? {
            Some(report) => Ok(Some(report)),
            None => read_json(&self.dir, UNFINISHED),
        }
    }

    /// Records what is known of the report before it is finished.
    pub fn save_unfinished(&self, report: &CrashReport) -> Result<(), SpoolError> {
        self.write(UNFINISHED, &to_json(report))
    }

    /// Writes the finished report, then forgets the unfinished one.
    pub fn commit(&self, report: &CrashReport) -> Result<PathBuf, SpoolError> {
        self.write(RECORD, &to_json(report))?;
        self.dir.remove(UNFINISHED).map_err(SpoolError::io("remove", self.dir.join(UNFINISHED)))?;
        Ok(self.dir.path().to_path_buf())
    }

    /// How the report is to be sent, while it waits to be queued.
    pub fn delivery(&self) -> Result<Option<Vec<u8>>, SpoolError> {
        self.dir.read(DELIVER).map_err(SpoolError::io("read", self.dir.join(DELIVER)))
    }

    pub fn set_delivery(&self, bytes: &[u8]) -> Result<(), SpoolError> {
        self.write(DELIVER, bytes)
    }

    /// The report is in the outbox (or not to be sent after all).
    pub fn clear_delivery(&self) -> Result<(), SpoolError> {
        self.dir.remove(DELIVER).map_err(SpoolError::io("remove", self.dir.join(DELIVER)))?;
        self.dir.sync().map_err(SpoolError::io("fsync", self.dir.path().to_path_buf()))
    }

    /// The directory of `rel`'s parent, created, and `rel`'s last part.
    fn parent_of<'a>(&self, rel: &'a str) -> Result<(SpoolDir, &'a str), SpoolError> {
        let mut dir = self.dir.clone();
        let mut parts: Vec<&str> = rel.split('/').collect();
        let leaf = parts.pop().unwrap_or_default();
        for part in parts {
            dir = dir.create_dir(part)?;
        }
        Ok((dir, leaf))
    }

    /// Writes `rel` (`stacks.json`, `attachments/hs_err_pid1.log`) durably.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> Result<(), SpoolError> {
        let (dir, leaf) = self.parent_of(rel)?;
        dir.write_atomic(leaf, bytes).map_err(SpoolError::io("write", self.dir.join(rel)))
    }

    /// Whether `rel` (`minidump.dmp`, `preserved/app.12`) is there.
    pub fn has(&self, rel: &str) -> bool {
        let (parent, leaf) = match rel.rsplit_once('/') {
            Some((parent, leaf)) => (self.dir.open_dir(parent, Missing::Absent).ok().flatten(), leaf),
            None => (Some(self.dir.clone()), rel),
        };
        parent.is_some_and(|dir| dir.exists(leaf).unwrap_or(false))
    }

    /// Moves file `name` of `from` (a scratch directory) into the report as
    /// `rel`, private and on disk before it is named in a record; its size.
    pub fn adopt(&self, from: &SpoolDir, name: &str, rel: &str) -> Result<u64, SpoolError> {
        let path = self.dir.join(rel);
        let err = |action| SpoolError::io(action, path.clone());
        let file = from.open_read(name).map_err(err("read"))?;
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600)).map_err(err("set permissions of"))?;
        file.sync_all().map_err(err("fsync"))?;
        let size = file.metadata().map_err(err("stat"))?.len();
        let (dir, leaf) = self.parent_of(rel)?;
        from.rename(name, &dir, leaf).map_err(err("move into"))?;
        dir.sync().map_err(err("fsync the directory of"))?;
        from.sync().map_err(err("fsync the directory of"))?;
        Ok(size)
    }
}

fn to_json(report: &CrashReport) -> Vec<u8> {
    let mut json = serde_json::to_vec_pretty(report).expect("a report always serialises");
    json.push(b'\n');
    json
}
