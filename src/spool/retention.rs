//! Retention: what keeps the report store from filling the disk, in the
//! spirit of systemd-coredump's `MaxUse=`/`KeepFree=`.
//!
//! Reports filed longer ago than the maximum age go first (the age counts
//! from when a report's record was written, so that the common case reads
//! only `stat`s); then, oldest first, reports
//! until the store uses at most `max_use` and the file system has `keep_free`
//! left. Never deleted: a report not yet finished or not yet queued, one
//! waiting in the outbox (the caller says which), and — for the size limits —
//! the newest report of each crash signature, so that a crash loop cannot
//! push out the one report of a rarer crash.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;

use super::SpoolError;
use super::dir::Missing;
use super::store::{RECORD, State, Store};

/// The caps of the defaults: a share of the file system, at most this much.
pub const DEFAULT_CAP: u64 = 4 << 30;
/// `--spool-max-use` by default: this share of the file system (percent).
pub const DEFAULT_MAX_USE_PERCENT: u8 = 10;
/// `--spool-keep-free` by default (percent).
pub const DEFAULT_KEEP_FREE_PERCENT: u8 = 15;
/// `--spool-max-age` by default.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// A size given as bytes or as a share of the spool's file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Bytes(u64),
    Percent(u8),
}

impl Size {
    fn of(self, filesystem: u64) -> u64 {
        match self {
            Size::Bytes(n) => n,
            Size::Percent(p) => filesystem / 100 * u64::from(p),
        }
    }
}

/// The limits as configured; `None` is the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_use: Option<Size>,
    pub keep_free: Option<Size>,
    pub max_age: Option<Duration>,
}

/// The limits in bytes for one file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub max_use: u64,
    pub keep_free: u64,
    pub max_age: Duration,
}

impl Limits {
    pub fn resolve(&self, filesystem: u64) -> Resolved {
        let default = |percent| Size::Percent(percent).of(filesystem).min(DEFAULT_CAP);
        Resolved {
            max_use: self.max_use.map_or_else(|| default(DEFAULT_MAX_USE_PERCENT), |s| s.of(filesystem)),
            keep_free: self.keep_free.map_or_else(|| default(DEFAULT_KEEP_FREE_PERCENT), |s| s.of(filesystem)),
            max_age: self.max_age.unwrap_or(DEFAULT_MAX_AGE),
        }
    }
}

/// One report as retention sees it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub ended_at: OffsetDateTime,
    /// When its record was written: its age counts from then.
    pub written: OffsetDateTime,
    pub bytes: u64,
    pub signature: String,
    /// Not to be deleted (unfinished, unqueued, or waiting in the outbox).
    pub protected: bool,
}

/// Why a report is to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Age,
    Size,
}

/// Which reports to delete, oldest first: see the module docs. `used` is
/// the store's size, `free` the file system's free space.
pub fn plan(entries: &[Entry], limits: &Resolved, used: u64, free: u64, now: OffsetDateTime) -> Vec<(String, Why)> {
    let mut order: Vec<&Entry> = entries.iter().collect();
    order.sort_by(|a, b| a.ended_at.cmp(&b.ended_at).then_with(|| a.id.cmp(&b.id)));
    let mut newest: HashMap<&str, &str> = HashMap::new();
    for entry in &order {
        newest.insert(&entry.signature, &entry.id);
    }
    let newest: HashSet<&str> = newest.into_values().collect();
    let (mut used, mut free) = (used, free);
    let mut out = Vec::new();
    for entry in order.iter().filter(|e| !e.protected) {
        let age = now - entry.written;
        let why = if age > limits.max_age {
            Why::Age
        } else if (used > limits.max_use || free < limits.keep_free) && !newest.contains(entry.id.as_str()) {
            Why::Size
        } else {
            continue;
        };
        used = used.saturating_sub(entry.bytes);
        free = free.saturating_add(entry.bytes);
        out.push((entry.id.clone(), why));
    }
    out
}

/// What a pruning did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    pub deleted: usize,
    pub bytes: u64,
    /// The store's size afterwards.
    pub used: u64,
    pub free: u64,
    pub limits: Option<Resolved>,
}

/// One report as measured without reading it.
struct Measured {
    id: String,
    bytes: u64,
    /// When `report.json` was written (`None`: not finished).
    written: Option<SystemTime>,
}

/// The store's size, and each report's, from `stat` alone.
fn measure(store: &Store) -> Result<(u64, Vec<Measured>), SpoolError> {
    let mut used = 0u64;
    let mut measured = Vec::new();
    for id in store.ids()? {
        let Some(dir) = store.dir().open_dir(&id, Missing::Absent)? else { continue };
        let measure = SpoolError::io("measure", dir.path().to_path_buf());
        // The directory's own blocks too, as `du` counts them.
        let own = store.dir().stat(&id).ok().flatten().map_or(0, |st| st.st_blocks as u64 * 512);
        let bytes = own + dir.disk_usage().map_err(measure)?;
        used = used.saturating_add(bytes);
        let written = dir
            .stat(RECORD)
            .ok()
            .flatten()
            .map(|st| SystemTime::UNIX_EPOCH + Duration::from_secs(st.st_mtime.max(0) as u64));
        measured.push(Measured { id, bytes, written });
    }
    Ok((used, measured))
}

/// The entries retention weighs: of every report when the size limits are
/// exceeded (signatures matter then), else only of those written before the
/// maximum age (the rest cannot go), so that the common case reads no
/// report. `waiting(id)` says whether a report waits in the outbox.
fn survey(
    store: &Store,
    measured: &[Measured],
    pressed: bool,
    max_age: Duration,
    waiting: &dyn Fn(&str) -> bool,
) -> Result<Vec<Entry>, SpoolError> {
    let now = SystemTime::now();
    let old = |m: &Measured| m.written.is_some_and(|w| now.duration_since(w).is_ok_and(|age| age > max_age));
    let mut entries = Vec::new();
    for m in measured.iter().filter(|m| m.written.is_some() && (pressed || old(m))) {
        let written = m.written.map_or(OffsetDateTime::UNIX_EPOCH, OffsetDateTime::from);
        let head = match store.head(&m.id) {
            Ok(Some(head)) => head,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!("{}", crate::errors::Chain(&e));
                continue;
            }
        };
        let protected = waiting(&m.id) || store.state(&m.id)? != State::Done;
        let signature = head.signature_key();
        let (id, bytes) = (m.id.clone(), m.bytes);
        entries.push(Entry { id, ended_at: head.ended_at, written, bytes, signature, protected });
    }
    Ok(entries)
}

/// How many reports `spool` holds and the bytes they use.
pub fn survey_usage(spool: &super::Spool) -> Result<(usize, u64), SpoolError> {
    let Some(store) = spool.store()? else { return Ok((0, 0)) };
    let used = store.dir().disk_usage().map_err(SpoolError::io("measure", store.dir().path().to_path_buf()))?;
    Ok((store.ids()?.len(), used))
}

/// Deletes what [`plan`] says, each report under its lock (one being
/// changed elsewhere is skipped).
pub fn prune(store: &Store, limits: &Limits, waiting: &dyn Fn(&str) -> bool) -> Result<Pruned, SpoolError> {
    store.sweep_deleted()?;
    let fs = |e| SpoolError::io("measure the file system of", store.dir().path().to_path_buf())(e);
    let (size, free) = store.dir().filesystem().map_err(fs)?;
    let limits = limits.resolve(size);
    let (used, measured) = measure(store)?;
    let pressed = used > limits.max_use || free < limits.keep_free;
    let entries = survey(store, &measured, pressed, limits.max_age, waiting)?;
    let mut pruned = Pruned { used, free, limits: Some(limits), ..Pruned::default() };
    let sizes: HashMap<&str, u64> = entries.iter().map(|e| (e.id.as_str(), e.bytes)).collect();
    for (id, why) in plan(&entries, &limits, used, free, OffsetDateTime::now_utc()) {
        let Some(held) = store.hold(&id, Missing::Absent)? else { continue };
        // Queued or reopened since the survey: kept.
        if held.state()? != State::Done || waiting(&id) {
            continue;
        }
        store.delete(held)?;
        let bytes = sizes.get(id.as_str()).copied().unwrap_or(0);
        pruned.deleted += 1;
        pruned.bytes += bytes;
        pruned.used = pruned.used.saturating_sub(bytes);
        pruned.free = pruned.free.saturating_add(bytes);
        let why = match why {
            Why::Age => format!("older than {}", humantime::format_duration(limits.max_age)),
            Why::Size => "the spool is over its limits".to_string(),
        };
        tracing::info!(report = crate::report::short_id(&id), "deleted report {}: {why}", crate::report::short_id(&id));
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, minutes_ago: i64, bytes: u64, signature: &str, protected: bool) -> Entry {
        let at = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1000) - time::Duration::minutes(minutes_ago);
        Entry { id: id.into(), ended_at: at, written: at, bytes, signature: signature.into(), protected }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::days(1000)
    }

    fn limits(max_use: u64, keep_free: u64) -> Resolved {
        Resolved { max_use, keep_free, max_age: Duration::from_secs(3600) }
    }

    #[test]
    fn oldest_go_first_and_the_newest_of_each_signature_stays() {
        let entries = [
            entry("a", 50, 10, "loop", false),
            entry("b", 40, 10, "rare", false),
            entry("c", 30, 10, "loop", false),
            entry("d", 20, 10, "loop", false),
        ];
        // 40 bytes used, 15 allowed: a, then c (b is the only "rare"; d
        // the newest "loop").
        let plan = plan(&entries, &limits(15, 0), 40, 1000, now());
        assert_eq!(plan, [("a".into(), Why::Size), ("c".into(), Why::Size)]);
    }

    #[test]
    fn protected_reports_stay_whatever_the_limits() {
        let entries = [entry("a", 50, 10, "x", true), entry("b", 40, 10, "x", false), entry("c", 30, 10, "x", false)];
        assert_eq!(plan(&entries, &limits(0, 0), 30, 0, now()), [("b".into(), Why::Size)]);
    }

    #[test]
    fn keep_free_counts_what_deleting_gives_back() {
        let entries = [entry("a", 50, 10, "x", false), entry("b", 40, 10, "x", false), entry("c", 30, 10, "x", false)];
        assert_eq!(plan(&entries, &limits(u64::MAX, 105), 30, 100, now()), [("a".into(), Why::Size)]);
        assert!(plan(&entries, &limits(u64::MAX, 100), 30, 100, now()).is_empty());
    }

    #[test]
    fn age_removes_even_the_newest_of_a_signature_but_not_a_protected_one() {
        let entries = [entry("old", 120, 10, "x", false), entry("kept", 90, 10, "y", true)];
        assert_eq!(plan(&entries, &limits(u64::MAX, 0), 20, 1000, now()), [("old".into(), Why::Age)]);
    }

    #[test]
    fn defaults_are_a_capped_share_of_the_file_system() {
        let small = Limits::default().resolve(10 << 30);
        assert_eq!((small.max_use, small.keep_free), (10 * ((10 << 30) / 100), 15 * ((10 << 30) / 100)));
        let large = Limits::default().resolve(1 << 40);
        assert_eq!((large.max_use, large.keep_free), (DEFAULT_CAP, DEFAULT_CAP));
        let given = Limits { max_use: Some(Size::Bytes(5)), keep_free: Some(Size::Percent(1)), max_age: None };
        assert_eq!(given.resolve(1000).max_use, 5);
        assert_eq!(given.resolve(1000).keep_free, 10);
    }
}
