//! Filing a report: what happens between "the child crashed" and "the
//! report is in the spool, queued for Sentry, and summarised on stderr".
//!
//! The order matters, and every step is durable before the next (see
//! `crate::spool` for what survives a kill at each):
//! 1. [`Filer::begin`], at the crash: the report's directory is made and
//!    locked, `deliver.json` says how to send it, `unfinished.json` records
//!    what is known (the tail so far), and the capture's files are renamed
//!    in from the scratch directory.
//! 2. [`Filer::file`], at the child's end: the complete facts (status, the
//!    whole tail, memory) replace `unfinished.json`.
//! 3. [`finish`]: the minidump is symbolicated by a short-lived helper process
//!    (`crashwatch symbolicate --json`), so that the memory symbolication
//!    takes never stays in the supervisor; `report.json` is written (the
//!    commit point), then the report is queued for Sentry and `deliver.json`
//!    removed. A crashwatch that finds a report left at 1 or 2 by one that
//!    was killed runs [`finish`] on it (`recover.rs`).
//! 4. The spool is pruned to its retention limits, and the report summarised.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::capture::{CaptureError, CrashCapture, DumpFile};
use crate::commands::delivery::{Delivery, Intent, Queued};
use crate::commands::health::Link;
use crate::commands::oom_snapshot::TakenSnapshot;
use crate::commands::summary::summarize;
use crate::commands::symbolicate;
use crate::config::HelperLimits;
use crate::errors::Chain;
use crate::report::{self, Crash, CrashReport, FileRef, MemorySnapshot, Preserved};
use crate::sentry::throttle;
use crate::spool::retention::{self, Limits};
use crate::spool::{DELIVER, Held, Missing, Scratch, Spool, SpoolError, State, scratch_id};
use crate::symbolicate::Symbolicated;

/// What a `crashwatch run` files reports with.
pub struct Filer {
    spool: Option<Spool>,
    /// This crashwatch's scratch directory (with a spool only).
    scratch: Option<Scratch>,
    delivery: Arc<Delivery>,
    retention: Limits,
    /// Bounds on the symbolication helper.
    limits: HelperLimits,
}

/// A crash taken into its report's directory at the moment it was caught,
/// before its report is complete: the directory stays locked.
pub struct Begun {
    held: Held,
    crash: Crash,
}

impl Filer {
    /// A filer for `spool` (none: reports are only summarised).
    pub fn new(spool: Option<Spool>, delivery: Arc<Delivery>, retention: Limits, limits: HelperLimits) -> Filer {
        let scratch = spool.as_ref().and_then(Spool::dir).and_then(|dir| {
            let scratch = Scratch::new(dir).and_then(|scratch| {
                // For the reports a recovery makes of dumps this one leaves.
                if delivery.has_target() {
                    let intent = delivery.intent().to_json();
                    scratch.dir().write_atomic(DELIVER, &intent).map_err(|source| SpoolError::Io {
                        action: "write",
                        path: scratch.dir().join(DELIVER),
                        source,
                    })?;
                }
                Ok(scratch)
            });
            scratch.inspect_err(|e| tracing::warn!("{}; crashes will not be captured as minidumps", Chain(e))).ok()
        });
        Filer { spool, scratch, delivery, retention, limits }
    }

    pub fn spool(&self) -> Option<&Spool> {
        self.spool.as_ref()
    }

    pub fn delivery(&self) -> &Arc<Delivery> {
        &self.delivery
    }

    /// Where the tracer writes dumps; `None` without a usable spool.
    pub fn scratch_path(&self) -> Option<PathBuf> {
        self.scratch.as_ref().map(Scratch::tracer_path)
    }

    /// Step 1 (see the module docs): `capture`'s files into a report
    /// directory of their own at once, with `early` (what is known now) as
    /// its record. `None` (logged) when there is no spool or it fails: the
    /// dump then stays in the scratch directory.
    pub fn begin(&self, capture: &CrashCapture, early: &CrashReport) -> Option<Begun> {
        let (spool, scratch) = (self.spool.as_ref()?, self.scratch.as_ref()?);
        let begun = begin(spool, scratch, &self.delivery, capture, early);
        begun.inspect_err(|e| tracing::error!("failed to keep the crash of pid {}: {}", capture.pid, Chain(e))).ok()
    }

    /// Files `report` (steps 2 to 4): with the crash [`Filer::begin`] took
    /// in, if the crash was caught, or else with the minidump an
    /// `--oom-snapshot` took (the caller passes it for an OOM kill only).
    /// The report's envelope carries what `link` says of the run's session
    /// and check-in; returns whether it was queued. Never fails: what goes
    /// wrong is noted in the report or logged.
    pub fn file(
        &self,
        mut report: CrashReport,
        begun: Option<Begun>,
        snapshot: Option<TakenSnapshot>,
        link: Option<&Link>,
    ) -> bool {
        let Some(spool) = &self.spool else {
            if let Some(snapshot) = snapshot {
                snapshot.discard("there is no usable spool to keep it in");
            }
            summarize(&report, None, None, None);
            return false;
        };
        let held = match begun {
            Some(Begun { held, crash }) => {
                report.id = held.id().to_owned();
                report.crash = Some(crash);
                if let Some(snapshot) = snapshot {
                    snapshot.discard("the child's crash has a minidump of its own");
                }
                Ok(held)
            }
            None => {
                let held = hold_new(spool, &report.id, &self.delivery);
                if let (Ok(held), Some(taken), Some(scratch)) = (&held, snapshot, &self.scratch) {
                    report.snapshot = Some(keep_snapshot(held, scratch, &taken));
                }
                held
            }
        };
        let held = match held {
            Ok(held) => held,
            Err(e) => {
                summarize(&report, Some(Err(e)), None, None);
                return false;
            }
        };
        super::runtime_file::keep(&held, &mut report);
        // The complete facts are on disk before the slow part.
        if let Err(e) = held.save_unfinished(&report) {
            if !matches!(held.record(), Ok(Some(_))) {
                // Nothing of it is kept: its directory goes too.
                let kept_local = self.delivery.kept_local_because(&report);
                summarize(&report, Some(Err(e)), None, kept_local.as_deref());
                if let Ok(store) = spool.create_store() {
                    let _ = store.delete(held);
                }
                return false;
            }
            // What was recorded at the crash is finished instead.
            tracing::warn!("{}", Chain(&e));
        }
        let Some(done) = finish(held, Some(&self.delivery), None, link, self.limits) else { return false };
        let queued = matches!(done.queued, Some(Queued::Yes));
        let kept_local = match &done.queued {
            Some(queued) => queued.why_not(),
            None => self.delivery.kept_local_because(&done.report),
        };
        summarize(&done.report, Some(done.saved), done.stacks.as_ref(), kept_local.as_deref());
        prune(spool, &self.retention, &self.delivery);
        queued
    }

    /// Files `report` of a crash that was caught: with what
    /// [`Filer::begin`] took in, or, if that failed, tries again now.
    pub fn file_caught(
        &self,
        mut report: CrashReport,
        capture: &CrashCapture,
        begun: Option<Begun>,
        link: Option<&Link>,
    ) -> bool {
        let begun = begun.or_else(|| self.begin(capture, &report));
        if begun.is_none() {
            let why = "not kept: the spool is unusable".to_string();
            report.crash = Some(Crash::new(capture, Err(why), Vec::new()));
        }
        self.file(report, begun, None, link)
    }

    /// A crash filed at once, from capture to queue (a descendant's: the
    /// child runs on).
    pub fn file_crash(&self, report: CrashReport, capture: &CrashCapture) {
        let begun = self.begin(capture, &report);
        self.file_caught(report, capture, begun, None);
    }
}

/// A new report directory for `id`, held, with how to send it.
fn hold_new(spool: &Spool, id: &str, delivery: &Delivery) -> Result<Held, SpoolError> {
    let store = spool.create_store()?;
    let held = store.hold(id, Missing::Create)?.ok_or_else(|| SpoolError::Io {
        action: "lock",
        path: spool.report_dir(id),
        source: std::io::ErrorKind::WouldBlock.into(),
    })?;
    if delivery.has_target() {
        held.set_delivery(&delivery.intent().to_json())?;
    }
    Ok(held)
}

fn begin(
    spool: &Spool,
    scratch: &Scratch,
    delivery: &Delivery,
    capture: &CrashCapture,
    early: &CrashReport,
) -> Result<Begun, SpoolError> {
    // The id follows from the dump's scratch name: a process that finds the
    // dump still there after this one was killed files it under the same id.
    let dump_name = capture.dump.as_ref().ok().and_then(|d| file_name(&d.path));
    let id = dump_name.as_deref().map_or_else(|| early.id.clone(), |name| scratch_id(scratch.name(), name));
    let held = hold_new(spool, &id, delivery)?;
    let minidump = match &capture.dump {
        Ok(dump) => Ok(FileRef { file: "minidump.dmp".into(), size: dump.size }),
        Err(e) => Err(Chain(e).to_string()),
    };
    let planned: Vec<(String, Preserved)> = capture
        .preserved
        .iter()
        .filter_map(|p| {
            let scratch_name = file_name(&p.preserved_path)?;
            let base = p.original_path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
            let file = format!("preserved/{base}.{}", p.inode);
            let kept = Preserved {
                original: p.original_path.clone(),
                file,
                size: p.size,
                base_address: report::hex(p.base_address),
            };
            Some((scratch_name, kept))
        })
        .collect();
    let mut crash = Crash::new(capture, minidump, planned.iter().map(|(_, p)| p.clone()).collect());
    let mut record = early.clone();
    record.id = id;
    record.crash = Some(crash.clone());
    // The record first, naming the files; then the files. A process that
    // finds it with a file missing takes the file in from the scratch
    // directory (recover.rs).
    held.save_unfinished(&record)?;
    let mut changed = false;
    if let Some(name) = &dump_name
        && let Err(e) = held.adopt(scratch.dir(), name, "minidump.dmp")
    {
        crash.dumped.minidump = None;
        crash.dumped.minidump_error = Some(Chain(&e).to_string());
        changed = true;
    }
    for (scratch_name, kept) in planned {
        if let Err(e) = held.adopt(scratch.dir(), &scratch_name, &kept.file) {
            crash.preserved.retain(|p| p.file != kept.file);
            crash.dumped.notes.push(format!(
                "failed to keep the deleted file {}: {}",
                kept.original.display(),
                Chain(&e)
            ));
            changed = true;
        }
    }
    if changed {
        record.crash = Some(crash.clone());
        held.save_unfinished(&record)?;
    }
    Ok(Begun { held, crash })
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name().and_then(|n| n.to_str()).map(str::to_owned)
}

/// What [`finish`] made of a report.
pub struct Finished {
    pub report: CrashReport,
    pub saved: Result<PathBuf, SpoolError>,
    pub stacks: Option<Symbolicated>,
    /// What became of it if it was to be queued.
    pub queued: Option<Queued>,
}

/// Step 3 (see the module docs) for held report `held`, from wherever it
/// stands: symbolicated and committed if unfinished, then queued with
/// `delivery` if it waits for that. `recovered_by` names the command
/// finishing a report another crashwatch left; `link` ties the report to
/// its run's session and check-in. `None`: there is no record.
pub fn finish(
    held: Held,
    delivery: Option<&Delivery>,
    recovered_by: Option<&str>,
    link: Option<&Link>,
    limits: HelperLimits,
) -> Option<Finished> {
    if held.state().is_ok_and(|s| s == State::Committing)
        && let Err(e) = held.forget_unfinished()
    {
        tracing::warn!("{}", Chain(&e));
    }
    let record = held.state().and_then(|state| Ok((state, held.record()?)));
    let (state, mut report) = match record {
        Ok((state, Some(report))) => (state, report),
        Ok((_, None)) => return None,
        Err(e) => {
            tracing::warn!("report {}: {}", report::short_id(held.id()), Chain(&e));
            return None;
        }
    };
    let (stacks, saved) = if state == State::Unfinished {
        if let Some(by) = recovered_by {
            report.notes.push(format!(
                "the crashwatch that caught this stopped before it finished the report (it was killed, or the \
                 machine went down); {by} finished it"
            ));
        }
        let stacks = symbolicate_report(&held, &mut report, limits);
        report.signature = Some(throttle::signature(&report, stacks.as_ref()).key);
        (stacks, held.commit(&report))
    } else {
        (read_stacks(&held, &report), Ok(held.path().to_path_buf()))
    };
    let queued = match held.state() {
        Ok(State::ToQueue) => Some(match delivery.filter(|d| d.has_target()) {
            Some(delivery) => {
                let intent: Intent = held
                    .delivery()
                    .ok()
                    .flatten()
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                    .unwrap_or_else(|| delivery.intent().clone());
                let queued = delivery.queue_as(&report, held.path(), stacks.as_ref(), &intent, link);
                if !matches!(queued, Queued::Failed(_))
                    && let Err(e) = held.clear_delivery()
                {
                    tracing::warn!("{}", Chain(&e));
                }
                queued
            }
            None => Queued::Failed("not sent yet: `crashwatch send` (or the next run) with a DSN sends it".into()),
        }),
        _ => None,
    };
    Some(Finished { report, saved, stacks, queued })
}

/// Deletes reports past the retention limits, keeping those waiting in
/// `delivery`'s outbox.
pub fn prune(spool: &Spool, limits: &Limits, delivery: &Delivery) {
    let waiting: HashSet<String> = delivery
        .outbox()
        .and_then(|outbox| outbox.pending().ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|entry| entry.rsplit('-').next().map(str::to_owned))
        .collect();
    prune_keeping(spool, limits, &waiting);
}

/// [`prune`], keeping the reports whose ids are in `waiting`.
pub fn prune_keeping(spool: &Spool, limits: &Limits, waiting: &HashSet<String>) {
    let store = match spool.store() {
        Ok(Some(store)) => store,
        Ok(None) => return,
        Err(e) => return tracing::warn!("{}", Chain(&e)),
    };
    match retention::prune(&store, limits, &|id| waiting.contains(id)) {
        Ok(pruned) => {
            if let Some(limits) = pruned.limits
                && (pruned.used > limits.max_use || pruned.free < limits.keep_free)
            {
                tracing::warn!(
                    "the spool's reports use {} (limit {}, {} free, to keep free {}); what is left is waiting to be \
                     sent or is the newest of its kind",
                    report::human_bytes(pruned.used),
                    report::human_bytes(limits.max_use),
                    report::human_bytes(pruned.free),
                    report::human_bytes(limits.keep_free)
                );
            }
        }
        Err(e) => tracing::warn!("failed to prune the spool: {}", Chain(&e)),
    }
}

/// Symbolicates the report's minidump (the crash's, else a snapshot's) into
/// `stacks.json` unless that was done; the stacks.
fn symbolicate_report(held: &Held, report: &mut CrashReport, limits: HelperLimits) -> Option<Symbolicated> {
    if let Some(crash) = report.crash.as_mut() {
        return symbolicate_crash(held, crash, limits);
    }
    let snapshot = report.snapshot.as_mut()?;
    let dump = snapshot.dumped.minidump.clone()?;
    if snapshot.dumped.stacks.is_some() {
        return None;
    }
    let (stacks, file, error) = symbolicate_dump(held, &dump, &[], limits);
    snapshot.dumped.stacks = file;
    snapshot.dumped.stacks_error = error;
    stacks
}

/// Symbolicates the kept minidump of `crash` into `stacks.json` beside it.
fn symbolicate_crash(held: &Held, crash: &mut Crash, limits: HelperLimits) -> Option<Symbolicated> {
    let dump = crash.dumped.minidump.clone()?;
    if !held.has(&dump.file) {
        crash.dumped.minidump = None;
        crash.dumped.minidump_error = Some("the minidump was lost: crashwatch was stopped before it kept it".into());
        return None;
    }
    // Deleted binaries are read from the copies kept at crash time.
    let replacements: Vec<(PathBuf, PathBuf)> =
        crash.preserved.iter().map(|p| (p.original.clone(), held.path().join(&p.file))).collect();
    let (stacks, file, error) = symbolicate_dump(held, &dump, &replacements, limits);
    crash.dumped.stacks = file;
    crash.dumped.stacks_error = error;
    if let Some(stacks) = &stacks {
        crash.diagnose(stacks.diagnosis.clone());
    }
    stacks
}

/// Symbolicates minidump `dump` of the held report into `stacks.json`
/// beside it: the stacks, the file kept, and what went wrong. The dump
/// stays whatever happens: `crashwatch symbolicate` can read it later.
fn symbolicate_dump(
    held: &Held,
    dump: &FileRef,
    replacements: &[(PathBuf, PathBuf)],
    limits: HelperLimits,
) -> (Option<Symbolicated>, Option<FileRef>, Option<String>) {
    match symbolicate::in_helper(&held.path().join(&dump.file), replacements, limits) {
        Ok(stacks) => {
            let json = serde_json::to_vec(&stacks).expect("stacks always serialise");
            match held.write("stacks.json", &json) {
                Ok(()) => (Some(stacks), Some(FileRef { file: "stacks.json".into(), size: json.len() as u64 }), None),
                Err(e) => (Some(stacks), None, Some(format!("failed to keep the symbolicated stacks: {}", Chain(&e)))),
            }
        }
        // The summary says it; the dump stays for `crashwatch symbolicate`.
        Err(e) => (None, None, Some(Chain(&e).to_string())),
    }
}

/// The stacks kept with a finished report.
fn read_stacks(held: &Held, report: &CrashReport) -> Option<Symbolicated> {
    let file = report.stacks_file()?;
    let (dir, leaf) = (held.dir(), file.file.as_str());
    let bytes = dir.read(leaf).ok().flatten()?;
    serde_json::from_slice(&bytes).ok()
}

/// Moves a snapshot's dump from the scratch directory into the report.
fn keep_snapshot(held: &Held, scratch: &Scratch, taken: &TakenSnapshot) -> MemorySnapshot {
    MemorySnapshot::new(&taken.crossing, &taken.capture, keep_dump(held, scratch, &taken.capture.dump))
}

/// Moves a written minidump into the report as `minidump.dmp`; the file
/// kept, or why there is none (it was never written, or could not be kept).
fn keep_dump(held: &Held, scratch: &Scratch, dump: &Result<DumpFile, CaptureError>) -> Result<FileRef, String> {
    match dump {
        Ok(dump) => {
            let name = file_name(&dump.path).ok_or_else(|| format!("{} has no file name", dump.path.display()))?;
            held.adopt(scratch.dir(), &name, "minidump.dmp")
                .map(|size| FileRef { file: "minidump.dmp".into(), size })
                .map_err(|e| Chain(&e).to_string())
        }
        Err(e) => Err(Chain(e).to_string()),
    }
}

/// How many lines may follow a crash story in the tail for it to count as
/// how the child died (a shutdown message or two); a story further back was
/// logged and survived.
const STORY_TRAILING_LINES: usize = 20;

/// The crash the child's runtime reported on its way out, if any.
pub fn runtime_crash(report: &CrashReport) -> Option<crate::story::Crash> {
    use crate::story::{TailLine, detect};
    let tail: Vec<TailLine<'_>> = report
        .log_tail
        .iter()
        .map(|l| TailLine { stderr: l.stream == crate::logs::Stream::Stderr, text: &l.text })
        .collect();
    detect(&tail).filter(|story| tail.len().saturating_sub(story.last_line + 1) <= STORY_TRAILING_LINES)
}

/// One line at the moment of a crash, before the process is even gone.
pub fn announce(capture: &CrashCapture) {
    let what =
        report::crash_headline(capture.signal, capture.si_code, capture.fault_addr, &capture.thread_name, capture.tid);
    let ms = capture.elapsed.as_secs_f64() * 1000.0;
    let phases = capture.phases;
    tracing::debug!(
        stop_threads_ms = phases.stop_threads.as_secs_f64() * 1000.0,
        pin_ms = phases.pin.as_secs_f64() * 1000.0,
        dump_ms = phases.dump.as_secs_f64() * 1000.0,
        resume_ms = phases.resume.as_secs_f64() * 1000.0,
        save_ms = phases.save.as_secs_f64() * 1000.0,
        "capture phases"
    );
    match &capture.dump {
        Ok(dump) => tracing::info!(
            "caught {what} of pid {}; minidump of {} thread{} written in {ms:.1} ms ({})",
            capture.pid,
            capture.threads,
            if capture.threads == 1 { "" } else { "s" },
            report::human_bytes(dump.size)
        ),
        Err(e) => tracing::warn!("caught {what} of pid {}; no minidump: {}", capture.pid, Chain(e)),
    }
}
