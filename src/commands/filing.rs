//! Filing a report: what happens between "the child crashed" and "the
//! report is in the spool, queued for Sentry, and summarised on stderr".
//!
//! The order matters. The capture's files (or an `--oom-snapshot` dump's)
//! move into the report's directory first; the minidump is symbolicated there by a short-lived helper process
//! (`crashwatch symbolicate --json`), so that the memory symbolication takes
//! never stays in the supervisor; its stacks and diagnosis join the report;
//! only then is `report.json` written, so that it never names a missing file;
//! then the report is queued for Sentry and summarised.

use std::path::{Path, PathBuf};

use crate::capture::{CaptureError, CrashCapture, DumpFile};
use crate::commands::delivery::Delivery;
use crate::commands::health::Link;
use crate::commands::oom_snapshot::TakenSnapshot;
use crate::commands::symbolicate;
use crate::config::HelperLimits;
use crate::errors::Chain;
use crate::logs::Console;
use crate::logs::console::Priority;
use crate::process::ChildStatus;
use crate::report::{self, Crash, CrashReport, FileRef, Kind, MemorySnapshot, Preserved};
use crate::spool::{self, Spool, SpoolError};
use crate::symbolicate::Symbolicated;

/// How many of the last lines the summary on stderr repeats.
const SUMMARY_LINES: usize = 10;

/// How many frames of the crashing thread the summary shows.
const SUMMARY_FRAMES: usize = 6;

/// Files `report` (with the files of `capture`, if the crash was caught):
/// keeps, symbolicates, saves, queues and summarises it. Never fails: what
/// goes wrong is noted in the report or logged.
pub fn file(
    spool: Option<&Spool>,
    delivery: &Delivery,
    report: CrashReport,
    capture: Option<&CrashCapture>,
    limits: HelperLimits,
) {
    file_with_snapshot(spool, delivery, report, capture, None, None, limits);
}

/// [`file`], with the minidump an `--oom-snapshot` took while the child ran
/// (the caller passes it for an OOM kill only). A caught crash's own dump
/// wins over a snapshot's. The report's envelope carries what `link` says
/// of the run's session and check-in; returns whether it was queued.
pub fn file_with_snapshot(
    spool: Option<&Spool>,
    delivery: &Delivery,
    mut report: CrashReport,
    capture: Option<&CrashCapture>,
    snapshot: Option<TakenSnapshot>,
    link: Option<&Link>,
    limits: HelperLimits,
) -> bool {
    let Some(spool) = spool else {
        if let Some(snapshot) = snapshot {
            snapshot.discard("there is no usable spool to keep it in");
        }
        summarize(&report, None, None, None);
        return false;
    };
    let mut stacks = None;
    if let Some(capture) = capture {
        let mut crash = keep_crash(spool, &report.id, capture);
        stacks = symbolicate_kept(spool, &report.id, &mut crash, limits);
        report.crash = Some(crash);
        if let Some(snapshot) = snapshot {
            snapshot.discard("the child's crash has a minidump of its own");
        }
    } else if let Some(taken) = snapshot {
        let mut kept = keep_snapshot(spool, &report.id, &taken);
        if let Some(dump) = &kept.dumped.minidump {
            let (symbolicated, file, error) = symbolicate_dump(spool, &report.id, dump, &[], limits);
            kept.dumped.stacks = file;
            kept.dumped.stacks_error = error;
            stacks = symbolicated;
        }
        report.snapshot = Some(kept);
    }
    super::runtime_file::keep(spool, &mut report);
    let saved = spool.save(&report);
    let (kept_local, queued) = match &saved {
        Ok(dir) => {
            let kept_local = delivery.queue(&report, dir, stacks.as_ref(), link);
            let queued = kept_local.is_none();
            (kept_local, queued)
        }
        Err(_) => (delivery.kept_local_because(&report), false),
    };
    summarize(&report, Some(saved), stacks.as_ref(), kept_local.as_deref());
    queued
}

/// Symbolicates the kept minidump of `crash` into `stacks.json` beside it.
fn symbolicate_kept(spool: &Spool, id: &str, crash: &mut Crash, limits: HelperLimits) -> Option<Symbolicated> {
    let dir = spool.report_dir(id);
    // Deleted binaries are read from the copies kept at crash time.
    let replacements: Vec<(PathBuf, PathBuf)> =
        crash.preserved.iter().map(|p| (p.original.clone(), dir.join(&p.file))).collect();
    let (stacks, file, error) = symbolicate_dump(spool, id, crash.dumped.minidump.as_ref()?, &replacements, limits);
    crash.dumped.stacks = file;
    crash.dumped.stacks_error = error;
    if let Some(stacks) = &stacks {
        crash.diagnose(stacks.diagnosis.clone());
    }
    stacks
}

/// Symbolicates minidump `dump` of report `id` into `stacks.json` beside
/// it: the stacks, the file kept, and what went wrong. The dump stays
/// whatever happens: `crashwatch symbolicate` can read it later.
fn symbolicate_dump(
    spool: &Spool,
    id: &str,
    dump: &FileRef,
    replacements: &[(PathBuf, PathBuf)],
    limits: HelperLimits,
) -> (Option<Symbolicated>, Option<FileRef>, Option<String>) {
    let dir = spool.report_dir(id);
    match symbolicate::in_helper(&dir.join(&dump.file), replacements, limits) {
        Ok(stacks) => {
            let json = serde_json::to_vec(&stacks).expect("stacks always serialise");
            match spool::write_atomic(&dir.join("stacks.json"), &json) {
                Ok(()) => (Some(stacks), Some(FileRef { file: "stacks.json".into(), size: json.len() as u64 }), None),
                Err(e) => (Some(stacks), None, Some(format!("failed to keep the symbolicated stacks: {}", Chain(&e)))),
            }
        }
        // The summary says it; the dump stays for `crashwatch symbolicate`.
        Err(e) => (None, None, Some(Chain(&e).to_string())),
    }
}

/// Moves a snapshot's dump from the scratch directory into report `id`.
fn keep_snapshot(spool: &Spool, id: &str, taken: &TakenSnapshot) -> MemorySnapshot {
    MemorySnapshot::new(&taken.crossing, &taken.capture, keep_dump(spool, id, &taken.capture.dump))
}

/// Moves a written minidump into report `id` as `minidump.dmp`; the file
/// kept, or why there is none (it was never written, or could not be kept).
fn keep_dump(spool: &Spool, id: &str, dump: &Result<DumpFile, CaptureError>) -> Result<FileRef, String> {
    match dump {
        Ok(dump) => spool
            .adopt(id, &dump.path, "minidump.dmp")
            .map(|size| FileRef { file: "minidump.dmp".into(), size })
            .map_err(|e| Chain(&e).to_string()),
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

/// Moves a capture's files from the scratch directory into report `id` and
/// describes them. A file that cannot be kept is noted, not fatal.
fn keep_crash(spool: &Spool, id: &str, capture: &CrashCapture) -> Crash {
    let minidump = keep_dump(spool, id, &capture.dump);
    let mut preserved = Vec::new();
    let mut notes = Vec::new();
    for p in &capture.preserved {
        let base = p.original_path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
        let name = format!("preserved/{base}.{}", p.inode);
        match spool.adopt(id, &p.preserved_path, &name) {
            Ok(size) => preserved.push(Preserved {
                original: p.original_path.clone(),
                file: name,
                size,
                base_address: report::hex(p.base_address),
            }),
            Err(e) => {
                notes.push(format!("failed to keep the deleted file {}: {}", p.original_path.display(), Chain(&e)))
            }
        }
    }
    let mut crash = Crash::new(capture, minidump, preserved);
    crash.dumped.notes.extend(notes);
    crash
}

/// One line at the moment of a crash, before the process is even gone.
pub fn announce(capture: &CrashCapture) {
    let what =
        report::crash_headline(capture.signal, capture.si_code, capture.fault_addr, &capture.thread_name, capture.tid);
    let ms = capture.elapsed.as_secs_f64() * 1000.0;
    let phases = capture.phases;
    tracing::debug!(
        stop_threads_ms = phases.stop_threads.as_secs_f64() * 1000.0,
        settle_ms = phases.settle.as_secs_f64() * 1000.0,
        dump_ms = phases.dump.as_secs_f64() * 1000.0,
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

/// The few lines a person at the terminal (or in the journal) needs.
fn summarize(
    report: &CrashReport,
    saved: Option<Result<PathBuf, SpoolError>>,
    stacks: Option<&Symbolicated>,
    kept_local: Option<&str>,
) {
    let verb = if matches!(report.status, ChildStatus::Signaled { .. }) { "was " } else { "" };
    let mut text = format!("{} (pid {}) {verb}{}", report.program_name(), report.program.pid, report.status);
    if let Some(ran) = report.duration() {
        text.push_str(&format!(" after {}", report::human_duration(ran)));
    }
    // An orderly stop needs one line; a crash gets the last lines and where
    // its report is.
    let stopped = report.kind == Kind::Stopped;
    if let Some(signal) = report.stop_requested.filter(|_| stopped) {
        text.push_str(&format!(" (stop requested by {})", crate::process::signals::name(signal)));
    }
    text.push('\n');
    if let Some(crash) = &report.crash {
        text.push_str(&format!("crash: {}\n", crash.headline()));
        if let Some(diagnosis) = &crash.diagnosis {
            text.push_str(&format!("diagnosis: {diagnosis}\n"));
        }
        if let Some(e) = &crash.dumped.stacks_error {
            text.push_str(&format!("stacks: none: {e}\n"));
        }
    }
    if report.crash.is_some()
        && let Some(frames) = stacks.and_then(top_frames)
    {
        text.push_str(&frames);
    }
    if let Some(panic) = &report.panic {
        text.push_str(&format!("panic: {}\n", report::panic_headline(panic)));
    }
    if report.kind == Kind::Oom {
        let memory = report.memory.as_ref().map(report::memory_line).unwrap_or_default();
        text.push_str(&format!("the kernel's OOM killer killed it: {memory}\n"));
        if let Some(snapshot) = &report.snapshot {
            text.push_str(&format!("stacks from a snapshot {}\n", snapshot.headline(report.ended_at)));
            if let Some(e) = &snapshot.dumped.minidump_error {
                text.push_str(&format!("snapshot: no minidump: {e}\n"));
            }
            if let Some(e) = &snapshot.dumped.stacks_error {
                text.push_str(&format!("snapshot: no stacks: {e}\n"));
            }
            if let Some(frames) = stacks.and_then(top_frames) {
                text.push_str(&frames);
            }
        }
    }
    for kill in &report.oom_victims {
        text.push_str(&report::oom_victim_line(kill));
        text.push('\n');
    }
    if !report.log_tail.is_empty() && !stopped {
        let shown = report.log_tail.len().min(SUMMARY_LINES);
        text.push_str(&format!("last {shown} lines of output:\n"));
        text.push_str(&report.render_log_tail(SUMMARY_LINES));
    }
    match saved {
        Some(Ok(_)) if stopped => {}
        Some(Ok(dir)) => {
            if let Some(dump) = report.minidump_file() {
                text.push_str(&format!("minidump: {}\n", dir.join(&dump.file).display()));
            }
            text.push_str(&format!(
                "report {} saved in {}; `crashwatch show {}` prints it\n",
                report.short_id(),
                dir.display(),
                report.short_id()
            ));
            if let Some(why) = kept_local {
                text.push_str(why);
                text.push('\n');
            }
        }
        Some(Err(e)) => text.push_str(&format!("error: the report could not be saved: {}\n", Chain(&e))),
        None => text.push_str("the report was not saved: the spool directory is unusable\n"),
    }
    // A crash is worth a warning in the journal; an orderly stop is news.
    let priority = if stopped { Priority::Info } else { Priority::Warning };
    Console::get().say(priority, &text);
}

/// `  #0 server!handle (server.c:42)` for the first frames of the crashing
/// thread.
fn top_frames(stacks: &Symbolicated) -> Option<String> {
    let thread = stacks.threads.get(stacks.crashing_thread?)?;
    let mut out = String::new();
    for (i, frame) in thread.frames.iter().take(SUMMARY_FRAMES).enumerate() {
        let module = frame.module.as_deref().unwrap_or("?");
        // Without a name, the offset in the module (as `show` prints it):
        // stable across runs, where the address is not.
        match (&frame.function, frame.module_base) {
            (Some(function), _) => out.push_str(&format!("  #{i} {module}!{function}")),
            (None, Some(base)) => {
                out.push_str(&format!("  #{i} {module} + {:#x}", frame.instruction.saturating_sub(base)))
            }
            (None, None) => out.push_str(&format!("  #{i} {}", report::hex(frame.instruction))),
        }
        if let (Some(file), Some(line)) = (&frame.file, frame.line) {
            let name = Path::new(file).file_name().map_or(file.as_str(), |n| n.to_str().unwrap_or(file));
            out.push_str(&format!(" ({name}:{line})"));
        }
        if frame.inlined {
            out.push_str(" [inlined]");
        }
        out.push('\n');
    }
    Some(out)
}
