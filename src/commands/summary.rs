//! The few lines on stderr (and in the journal) that say how the child
//! ended and where its report is: what a person at the terminal needs.

use std::path::{Path, PathBuf};

use crate::errors::Chain;
use crate::logs::Console;
use crate::logs::console::Priority;
use crate::process::ChildStatus;
use crate::report::{self, CrashReport, Kind};
use crate::spool::SpoolError;
use crate::symbolicate::Symbolicated;

/// How many of the last lines the summary on stderr repeats.
const SUMMARY_LINES: usize = 10;

/// How many frames of the crashing thread the summary shows.
const SUMMARY_FRAMES: usize = 6;

/// The few lines a person at the terminal (or in the journal) needs.
pub fn summarize(
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
