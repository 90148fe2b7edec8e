//! The kernel tells the sampler when the child's memory nears the
//! `--oom-snapshot` point, instead of the sampler finding out on its next
//! look. A program can go from half its limit to an OOM kill in a few tens
//! of milliseconds (one request that allocates a gigabyte); a check every
//! 100 ms misses it, and the snapshot is never taken.
//!
//! - **cgroup v1**: a memory threshold notification (the kernel's
//!   `Documentation/admin-guide/cgroup-v1/memory.rst`, "Memory thresholds").
//!   An eventfd is registered by writing `"<eventfd> <fd of
//!   memory.usage_in_bytes> <bytes>"` to the cgroup's `cgroup.event_control`;
//!   the kernel signals it when the usage crosses that level, in either
//!   direction, checked every 128 page charges per CPU (about 512 KiB).
//!   Nothing about the cgroup changes; closing the eventfd unregisters it.
//! - **cgroup v2** has no threshold notification. crashwatch sets the
//!   cgroup's `memory.high` at the snapshot point: past it the kernel
//!   reclaims, then makes the allocating thread sleep a little on its way
//!   back to user space (longer the further it is over), and counts a
//!   "high" event in `memory.events`, which wakes a `poll` for `POLLPRI` on
//!   that open file (kernfs notifies pollers at once; inotify's `IN_MODIFY`
//!   comes later from a work queue, and would need a second descriptor).
//!   The throttle is what makes the snapshot land near the point even for
//!   a program that allocates faster than crashwatch can stop it. Once the
//!   snapshot is taken, `memory.high` gets its previous value back
//!   ([`HighGuard`]: on every path, also when dropped).
//!
//! `memory.high` is only ever set on a cgroup crashwatch created itself
//! (`--memory-limit`). In a cgroup someone else made (systemd's
//! `MemoryMax=`) it is left alone; if that cgroup's own `memory.high` is at
//! or below the point already, its events are watched as they are, and
//! otherwise the sampler polls. A `memory.high` lower than the point is
//! never raised, and one changed by someone else meanwhile is not
//! overwritten on restore. If crashwatch is killed (SIGKILL) before it
//! restores it, the child keeps running in crashwatch's cgroup with
//! `memory.high` at the point: it is throttled there rather than killed
//! at the limit, until it exits; the cgroup (`crashwatch-PID-N`) is left
//! behind as it always is when crashwatch dies before its child.
//!
//! Both watch a *usage* level, while the snapshot is for the working set
//! (usage less inactive page cache): the level is the threshold plus the
//! page cache reclaimable when armed ([`level_for`]), raised when the
//! kernel wakes the sampler for page cache ([`Notifier::raise`]). Where
//! neither mechanism is available, or the level would be the limit itself,
//! the sampler's periodic check (every 100 ms) is all there is; it also
//! runs alongside the kernel's notifications, as a backstop.

use std::fs::{self, File};
use std::io::{self, Read, Seek};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cgroup::{MemoryCgroup, Version, keyed_value};
use crate::sys::wakeup::{CHANGED, EventFd, READABLE};

/// How crashwatch learns that the child's memory reached the snapshot point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// cgroup v1's memory threshold notification on an eventfd.
    CgroupV1Threshold,
    /// cgroup v2's `memory.high` and the "high" events of `memory.events`.
    CgroupV2High,
    /// The sampler's own periodic check.
    Polling,
}

impl Mechanism {
    pub fn describe(self) -> &'static str {
        match self {
            Mechanism::CgroupV1Threshold => "cgroup v1 memory threshold notification",
            Mechanism::CgroupV2High => "cgroup v2 memory.high event",
            Mechanism::Polling => "periodic check",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("failed to open {path}")]
    Open {
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
    #[error("{path} holds {text:?}, which is neither a byte count nor \"max\"")]
    Unreadable { path: PathBuf, text: String },
    #[error("failed to create an eventfd")]
    EventFd(#[source] io::Error),
    #[error("failed to register a memory threshold of {level} bytes with {path}")]
    Register {
        path: PathBuf,
        level: u64,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is {present}, above the snapshot point ({level} bytes), and crashwatch did not create that cgroup, \
         so it does not change it"
    )]
    NotOurs { path: PathBuf, present: String, level: u64 },
    #[error("failed to set {path} to {level} bytes")]
    SetHigh {
        path: PathBuf,
        level: u64,
        #[source]
        source: io::Error,
    },
    #[error("failed to give {path} back its value {previous}")]
    Restore {
        path: PathBuf,
        previous: String,
        #[source]
        source: io::Error,
    },
}

/// The usage at which the kernel should wake the sampler: where the working
/// set reaches `threshold` if the `reclaimable` page cache stays as it is.
/// `None` when that is at or past `limit`: the kernel would wake it only
/// when it is too late.
pub fn level_for(threshold: u64, reclaimable: u64, limit: u64) -> Option<u64> {
    let level = threshold.checked_add(reclaimable)?;
    (level < limit).then_some(level)
}

/// What to do with a v2 cgroup's `memory.high` for a snapshot at `level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HighPlan {
    /// It is at or below the level already: its events are watched as they
    /// are, and it is never raised.
    Keep,
    /// Set it to the level (a cgroup crashwatch created).
    Set,
}

/// `present` is the cgroup's `memory.high` (`None`: "max").
fn plan_high(present: Option<u64>, level: u64, created: bool) -> Option<HighPlan> {
    match present {
        Some(high) if high <= level => Some(HighPlan::Keep),
        _ if created => Some(HighPlan::Set),
        _ => None,
    }
}

/// `memory.high`'s text: `Some(None)` for "max", `Some(Some(bytes))`.
fn parse_high(text: &str) -> Option<Option<u64>> {
    match text.trim() {
        "max" => Some(None),
        number => number.parse().ok().map(Some),
    }
}

/// An armed kernel notification for one cgroup.
#[derive(Debug)]
pub struct Notifier {
    source: Source,
    /// The usage it fires at, bytes.
    level: u64,
}

#[derive(Debug)]
enum Source {
    V1 {
        event: EventFd,
        /// Kept open: the registration refers to it.
        _usage: File,
        dir: PathBuf,
    },
    V2 {
        events: File,
        path: PathBuf,
        /// The "high" counter last read.
        seen: u64,
        /// Set when crashwatch moved memory.high; `None` when the cgroup's
        /// own was low enough.
        guard: Option<HighGuard>,
    },
}

impl Notifier {
    /// Asks the kernel to wake a `poll` on [`Notifier::interest`] when the
    /// usage of `cgroup` reaches `level` bytes. `created`: crashwatch made
    /// the cgroup, so it may set its `memory.high` (v2).
    pub fn arm(cgroup: &MemoryCgroup, level: u64, created: bool) -> Result<Notifier, NotifyError> {
        let source = match cgroup.version {
            Version::V1 => arm_v1(&cgroup.dir, level)?,
            Version::V2 => arm_v2(&cgroup.dir, level, created)?,
        };
        Ok(Notifier { source, level })
    }

    pub fn mechanism(&self) -> Mechanism {
        match self.source {
            Source::V1 { .. } => Mechanism::CgroupV1Threshold,
            Source::V2 { .. } => Mechanism::CgroupV2High,
        }
    }

    pub fn level(&self) -> u64 {
        self.level
    }

    /// The descriptor to poll and for what.
    pub fn interest(&self) -> (BorrowedFd<'_>, i16) {
        match &self.source {
            Source::V1 { event, .. } => (event.as_fd(), READABLE),
            Source::V2 { events, .. } => (events.as_fd(), CHANGED),
        }
    }

    /// After `poll` reported the descriptor: consumes the notification and
    /// says whether the kernel saw the level crossed (v1: either way; v2:
    /// the "high" counter moved). An error means the notification can no
    /// longer be read (the cgroup is going away): stop polling it.
    pub fn acknowledge(&mut self) -> Result<bool, NotifyError> {
        match &mut self.source {
            Source::V1 { event, dir, .. } => event
                .take()
                .map(|count| count > 0)
                .map_err(|source| NotifyError::Read { path: dir.join("cgroup.event_control"), source }),
            Source::V2 { events, path, seen, .. } => {
                let count = read_high_count(events, path)?;
                Ok(std::mem::replace(seen, count) != count)
            }
        }
    }

    /// Moves the level up to `level` (page cache the kernel woke the sampler
    /// for). v1 registers anew; v2 moves a `memory.high` crashwatch set, and
    /// leaves the cgroup's own alone. Returns whether the level moved.
    pub fn raise(&mut self, cgroup: &MemoryCgroup, level: u64) -> Result<bool, NotifyError> {
        match &mut self.source {
            // The old eventfd, closed when replaced, unregisters itself.
            Source::V1 { .. } => self.source = arm_v1(&cgroup.dir, level)?,
            Source::V2 { guard: Some(guard), .. } => guard.move_to(level)?,
            Source::V2 { guard: None, .. } => return Ok(false),
        }
        self.level = level;
        Ok(true)
    }

    /// Stops watching; returns what keeps `memory.high` where crashwatch
    /// set it, if anything, to be restored once the snapshot is taken.
    pub fn disarm(self) -> Option<HighGuard> {
        match self.source {
            Source::V1 { .. } => None,
            Source::V2 { guard, .. } => guard,
        }
    }
}

fn open(path: &Path) -> Result<File, NotifyError> {
    File::open(path).map_err(|source| NotifyError::Open { path: path.to_path_buf(), source })
}

/// Writes a control file that must exist already: a directory that is no
/// cgroup gets no stray file.
fn write_existing(path: &Path, text: &str) -> io::Result<()> {
    use std::io::Write as _;
    fs::OpenOptions::new().write(true).truncate(true).open(path)?.write_all(text.as_bytes())
}

fn arm_v1(dir: &Path, level: u64) -> Result<Source, NotifyError> {
    let usage = open(&dir.join("memory.usage_in_bytes"))?;
    let event = EventFd::new().map_err(NotifyError::EventFd)?;
    let control = dir.join("cgroup.event_control");
    let registration = format!("{} {} {level}", event.as_fd().as_raw_fd(), usage.as_raw_fd());
    write_existing(&control, &registration).map_err(|source| NotifyError::Register { path: control, level, source })?;
    Ok(Source::V1 { event, _usage: usage, dir: dir.to_path_buf() })
}

fn arm_v2(dir: &Path, level: u64, created: bool) -> Result<Source, NotifyError> {
    let high = dir.join("memory.high");
    let present = fs::read_to_string(&high).map_err(|source| NotifyError::Read { path: high.clone(), source })?;
    let present = present.trim().to_string();
    let parsed =
        parse_high(&present).ok_or_else(|| NotifyError::Unreadable { path: high.clone(), text: present.clone() })?;
    let plan = plan_high(parsed, level, created).ok_or_else(|| NotifyError::NotOurs {
        path: high.clone(),
        present: present.clone(),
        level,
    })?;
    // Read before memory.high moves: an event from the move is not missed.
    let path = dir.join("memory.events");
    let mut events = open(&path)?;
    let seen = read_high_count(&mut events, &path)?;
    let guard = match plan {
        HighPlan::Keep => None,
        HighPlan::Set => Some(HighGuard::set(high, present, level)?),
    };
    Ok(Source::V2 { events, path, seen, guard })
}

/// The "high" counter of an open `memory.events`, read from its start
/// (which also clears kernfs's "changed" state for `poll`).
fn read_high_count(events: &mut File, path: &Path) -> Result<u64, NotifyError> {
    let failed = |source| NotifyError::Read { path: path.to_path_buf(), source };
    events.rewind().map_err(failed)?;
    let mut text = String::new();
    events.read_to_string(&mut text).map_err(failed)?;
    keyed_value(&text, "high").ok_or_else(|| NotifyError::Unreadable { path: path.to_path_buf(), text })
}

/// A `memory.high` crashwatch set, with the value it had before. Restored
/// by [`HighGuard::restore`] or when dropped, unless someone else changed
/// it in between (theirs stays).
#[derive(Debug)]
pub struct HighGuard {
    path: PathBuf,
    previous: String,
    /// What the file read back after crashwatch's write (the kernel rounds
    /// down to pages).
    set: Option<u64>,
    restored: bool,
}

impl HighGuard {
    fn set(path: PathBuf, previous: String, level: u64) -> Result<HighGuard, NotifyError> {
        let mut guard = HighGuard { path, previous, set: None, restored: true };
        guard.move_to(level)?;
        Ok(guard)
    }

    fn move_to(&mut self, level: u64) -> Result<(), NotifyError> {
        let failed = |source| NotifyError::SetHigh { path: self.path.clone(), level, source };
        write_existing(&self.path, &level.to_string()).map_err(failed)?;
        self.restored = false;
        self.set = fs::read_to_string(&self.path).ok().as_deref().and_then(parse_high).flatten();
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn previous(&self) -> &str {
        &self.previous
    }

    /// Gives `memory.high` its previous value back.
    pub fn restore(mut self) -> Result<(), NotifyError> {
        self.put_back()
    }

    fn put_back(&mut self) -> Result<(), NotifyError> {
        if std::mem::replace(&mut self.restored, true) {
            return Ok(());
        }
        let present = fs::read_to_string(&self.path).ok();
        if present.as_deref().and_then(parse_high).flatten() != self.set {
            tracing::debug!(
                "{} was changed by someone else since crashwatch set it ({:?}): left as it is",
                self.path.display(),
                present.as_deref().map(str::trim)
            );
            return Ok(());
        }
        write_existing(&self.path, &self.previous).map_err(|source| NotifyError::Restore {
            path: self.path.clone(),
            previous: self.previous.clone(),
            source,
        })
    }
}

impl Drop for HighGuard {
    fn drop(&mut self) {
        if let Err(e) = self.put_back() {
            tracing::warn!("{}", crate::errors::Chain(&e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_is_the_threshold_plus_reclaimable_cache_below_the_limit() {
        assert_eq!(level_for(70, 0, 100), Some(70));
        assert_eq!(level_for(70, 20, 100), Some(90));
        // At the limit the kernel would wake crashwatch too late.
        assert_eq!(level_for(70, 30, 100), None);
        assert_eq!(level_for(u64::MAX - 1, 5, u64::MAX), None);
    }

    #[test]
    fn memory_high_is_set_only_in_a_cgroup_crashwatch_made_and_never_raised() {
        // "max": set in ours, refused in someone else's.
        assert_eq!(plan_high(None, 1000, true), Some(HighPlan::Set));
        assert_eq!(plan_high(None, 1000, false), None);
        // Lower than the point, or at it: kept, in either.
        assert_eq!(plan_high(Some(500), 1000, true), Some(HighPlan::Keep));
        assert_eq!(plan_high(Some(1000), 1000, false), Some(HighPlan::Keep));
        // Higher: lowered in ours only.
        assert_eq!(plan_high(Some(2000), 1000, true), Some(HighPlan::Set));
        assert_eq!(plan_high(Some(2000), 1000, false), None);
    }

    #[test]
    fn memory_high_parses() {
        assert_eq!(parse_high("max\n"), Some(None));
        assert_eq!(parse_high("70459392\n"), Some(Some(70459392)));
        assert_eq!(parse_high("lots"), None);
        assert_eq!(parse_high(""), None);
    }

    #[test]
    fn the_high_counter_is_read_from_the_start_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.events");
        fs::write(&path, "low 0\nhigh 3\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n").unwrap();
        let mut file = File::open(&path).unwrap();
        assert_eq!(read_high_count(&mut file, &path).unwrap(), 3);
        assert_eq!(read_high_count(&mut file, &path).unwrap(), 3);
        fs::write(&path, "low 0\nhigh 11\n").unwrap();
        assert_eq!(read_high_count(&mut file, &path).unwrap(), 11);
        fs::write(&path, "low 0\n").unwrap();
        let error = read_high_count(&mut file, &path).unwrap_err().to_string();
        assert!(error.contains("is neither a byte count"), "{error}");
    }

    #[test]
    fn a_guard_restores_what_it_found_unless_someone_else_moved_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.high");
        fs::write(&path, "max\n").unwrap();
        let guard = HighGuard::set(path.clone(), "max".into(), 4096).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "4096");
        drop(guard);
        assert_eq!(fs::read_to_string(&path).unwrap(), "max");

        let mut guard = HighGuard::set(path.clone(), "max".into(), 8192).unwrap();
        guard.move_to(12288).unwrap();
        guard.restore().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "max");

        let guard = HighGuard::set(path.clone(), "max".into(), 4096).unwrap();
        fs::write(&path, "1000000").unwrap();
        guard.restore().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "1000000", "an operator's value stays");
    }
}
