//! How a report reads to a person: `crashwatch show`, the summary on
//! stderr, and the small formatters (sizes, durations, times, argv) they
//! and the Sentry event share.

use std::fmt::Write as _;

use time::OffsetDateTime;

use super::CrashReport;
use crate::logs::Stream;
use crate::memory::sampler::Memory;
use crate::process::signals;

impl CrashReport {
    /// The human-readable report of `crashwatch show`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Report      {}", self.id);
        let _ = writeln!(out, "Program     {} (pid {})", shell_words(&self.program.argv), self.program.pid);
        let _ = writeln!(out, "Executable  {}", self.program.exe.display());
        let _ = writeln!(out, "Host        {}", self.hostname);
        match (self.started_at, self.duration()) {
            (Some(started), Some(ran)) => {
                let _ = writeln!(out, "Started     {}", timestamp(started));
                let _ = writeln!(out, "Ended       {} (ran {})", timestamp(self.ended_at), human_duration(ran));
            }
            _ => {
                let _ = writeln!(out, "Started     unknown (not started by crashwatch)");
                let _ = writeln!(out, "Ended       {}", timestamp(self.ended_at));
            }
        }
        let _ = writeln!(out, "Status      {} → crashwatch exit code {}", self.status, self.exit_code);
        if let Some(signal) = self.stop_requested {
            let _ = writeln!(out, "Stop        requested: crashwatch received and forwarded {}", signals::name(signal));
        }
        for (label, value) in [("Release", &self.release), ("Environment", &self.environment)] {
            if let Some(value) = value {
                let _ = writeln!(out, "{label:<11} {value}");
            }
        }
        if let Some(crash) = &self.crash {
            let _ = writeln!(out, "Crash       {}", crash.headline());
            if crash.dumped.pid != self.program.pid {
                let _ = writeln!(
                    out,
                    "Process     {} (pid {}), a descendant of the child",
                    crash.exe.display(),
                    crash.dumped.pid
                );
            }
            let _ = writeln!(out, "Threads     {}", crash.dumped.threads);
            match (&crash.dumped.minidump, &crash.dumped.minidump_error) {
                (Some(dump), _) => {
                    let written = crash.dumped.capture_ms.map(|ms| format!(", written in {ms:.1} ms"));
                    let written = written.unwrap_or_default();
                    let _ = writeln!(out, "Minidump    {} ({}{written})", dump.file, human_bytes(dump.size));
                }
                (None, Some(e)) => {
                    let _ = writeln!(out, "Minidump    none: {e}");
                }
                (None, None) => {}
            }
            if let Some(e) = &crash.dumped.stacks_error {
                let _ = writeln!(out, "Stacks      none: {e}");
            }
            for p in &crash.preserved {
                let _ = writeln!(out, "Preserved   {} → {} ({})", p.original.display(), p.file, human_bytes(p.size));
            }
            for note in &crash.dumped.notes {
                let _ = writeln!(out, "Note        {note}");
            }
        }
        if let Some(oom) = &self.oom {
            if let Some(n) = oom.cgroup_oom_kills {
                let _ = writeln!(
                    out,
                    "OOM         the child's cgroup counted {n} OOM kill{}",
                    if n == 1 { "" } else { "s" }
                );
            }
            if let Some(line) = &oom.kernel_line {
                let _ = writeln!(out, "Kernel      {line}");
            }
        }
        for kill in &self.oom_victims {
            let _ = writeln!(out, "OOM         {}", oom_victim_line(kill));
        }
        if let Some(panic) = &self.panic {
            let _ = writeln!(out, "Panic       {}", panic_headline(panic));
            for frame in panic.frames.iter().rev().take(PANIC_FRAMES) {
                let _ = writeln!(out, "              at {}", frame_line(frame));
            }
            if panic.frames.len() > PANIC_FRAMES {
                let _ = writeln!(out, "              … {} more frames", panic.frames.len() - PANIC_FRAMES);
            }
        }
        if let Some(memory) = &self.memory {
            let _ = writeln!(out, "Memory      {}", memory_line(memory));
        }
        if let Some(snapshot) = &self.snapshot {
            let _ = writeln!(out, "Snapshot    {}", snapshot.headline(self.ended_at));
            if let Some(mechanism) = snapshot.noticed_by {
                let _ = writeln!(out, "Noticed by  {}", mechanism.describe());
            }
            let _ = writeln!(
                out,
                "Threads     {}, stacks as of the snapshot ('{}', tid {} took it)",
                snapshot.dumped.threads, snapshot.dumped.thread_name, snapshot.dumped.tid
            );
            match (&snapshot.dumped.minidump, &snapshot.dumped.minidump_error) {
                (Some(dump), _) => {
                    let held = snapshot.dumped.capture_ms.map(|ms| format!(", the child held for {ms:.1} ms"));
                    let held = held.unwrap_or_default();
                    let _ = writeln!(out, "Minidump    {} ({}{held})", dump.file, human_bytes(dump.size));
                }
                (None, Some(e)) => {
                    let _ = writeln!(out, "Minidump    none: {e}");
                }
                (None, None) => {}
            }
            if let Some(e) = &snapshot.dumped.stacks_error {
                let _ = writeln!(out, "Stacks      none: {e}");
            }
            for note in &snapshot.dumped.notes {
                let _ = writeln!(out, "Note        {note}");
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "Note        {note}");
        }
        let _ = writeln!(out);
        let complete = if self.log_tail_complete { "" } else { ", output still open when taken" };
        if self.log_tail.is_empty() {
            let _ = writeln!(out, "No output{complete}.");
        } else {
            let _ = writeln!(out, "Last {} lines of output{complete}:", self.log_tail.len());
        }
        out.push_str(&self.render_log_tail(usize::MAX));
        out
    }

    /// The last `max` lines of the tail, one per line, tagged by stream.
    pub fn render_log_tail(&self, max: usize) -> String {
        let mut out = String::new();
        let skip = self.log_tail.len().saturating_sub(max);
        for line in &self.log_tail[skip..] {
            let tag = match line.stream {
                Stream::Stdout => "out",
                Stream::Stderr => "err",
            };
            let _ = write!(out, "  {tag}| {}", line.text.escape_debug_controls());
            if line.omitted > 0 {
                let _ = write!(out, " […{} bytes not kept]", line.omitted);
            }
            if !line.newline {
                out.push_str(" [no newline]");
            }
            out.push('\n');
        }
        out
    }
}

/// Escapes control characters (other than tab) so a report never moves a
/// terminal's cursor or changes its colours.
trait EscapeControls {
    fn escape_debug_controls(&self) -> String;
}

impl EscapeControls for str {
    fn escape_debug_controls(&self) -> String {
        let mut out = String::with_capacity(self.len());
        for c in self.chars() {
            if c.is_control() && c != '\t' {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// `2026-11-22 03:15:02 UTC`
pub fn timestamp(t: OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.to_offset(time::UtcOffset::UTC).format(&format).unwrap_or_else(|_| t.to_string())
}

/// How many frames of a parsed panic `crashwatch show` prints.
const PANIC_FRAMES: usize = 12;

/// `Rust panic in thread 'worker': the answer was 42`
pub fn panic_headline(panic: &crate::story::Crash) -> String {
    let mut s = format!("{:?}", panic.runtime);
    if !panic.kind.is_empty() {
        let _ = write!(s, " {}", panic.kind);
    }
    if let Some(thread) = &panic.thread {
        let _ = write!(s, " in thread '{thread}'");
    }
    let first_line = panic.value.lines().next().unwrap_or_default();
    if !first_line.is_empty() {
        let _ = write!(s, ": {first_line}");
    }
    s
}

/// `function (file:line:col)`, innermost frames first in `show`.
fn frame_line(frame: &crate::story::Frame) -> String {
    let function = frame.function.as_deref().unwrap_or("?");
    let file = frame.filename.as_deref().or(frame.abs_path.as_deref());
    match (file, frame.lineno, frame.colno) {
        (Some(file), Some(line), Some(col)) => format!("{function} ({file}:{line}:{col})"),
        (Some(file), Some(line), None) => format!("{function} ({file}:{line})"),
        (Some(file), None, _) => format!("{function} ({file})"),
        (None, ..) => function.to_string(),
    }
}

/// `peak RSS 12.0 MiB, cgroup peak 63.9 MiB of a 64.0 MiB limit (/sys/fs/…)`.
/// A cgroup's peak is shown only when the cgroup has a limit: without one
/// the cgroup may be shared (a whole session's), and its peak is not the
/// child's.
pub fn memory_line(memory: &Memory) -> String {
    let mut parts = vec![format!("peak RSS {}", memory.peak_rss.map_or_else(|| "unknown".into(), human_bytes))];
    if let Some(cg) = &memory.cgroup
        && let Some(limit) = cg.limit
    {
        let peak = cg.peak.map_or_else(|| "unknown".into(), human_bytes);
        parts.push(format!("cgroup peak {peak} of a {} limit ({})", human_bytes(limit), cg.path.display()));
    }
    if let Some(rss) = memory.samples.iter().rev().find_map(|s| s.rss) {
        parts.push(format!("last RSS {}", human_bytes(rss)));
    }
    parts.join(", ")
}

/// `812 B`, `19.6 KiB`, `4.7 MiB`, `2.0 GiB`.
pub fn human_bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", n as f64 / 1_048_576.0),
        _ => format!("{:.1} GiB", n as f64 / 1_073_741_824.0),
    }
}

/// `1.25s`, `3m07s`, `2h04m`, `3d05h`.
pub fn human_duration(d: time::Duration) -> String {
    let secs = d.as_seconds_f64().max(0.0);
    let whole = secs as u64;
    match whole {
        0..=59 => format!("{secs:.2}s"),
        60..=3599 => format!("{}m{:02}s", whole / 60, whole % 60),
        3600..=86399 => format!("{}h{:02}m", whole / 3600, whole % 3600 / 60),
        _ => format!("{}d{:02}h", whole / 86400, whole % 86400 / 3600),
    }
}

/// The argv as a person would type it (quoted where needed).
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `the OOM killer killed pid 42 (hog) in the child's cgroup, not the child`
pub fn oom_victim_line(kill: &crate::memory::kmsg::OomKill) -> String {
    format!("the OOM killer killed {} in the child's memory cgroup, not the child", crate::memory::oom::victim(kill))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(time::Duration::milliseconds(1250)), "1.25s");
        assert_eq!(human_duration(time::Duration::seconds(187)), "3m07s");
        assert_eq!(human_duration(time::Duration::seconds(7440)), "2h04m");
        assert_eq!(human_duration(time::Duration::seconds(3 * 86400 + 5 * 3600)), "3d05h");
    }

    #[test]
    fn argv_is_quoted_only_where_needed() {
        let argv = ["python3", "-c", "print('hi there')", "--x=1"].map(String::from);
        assert_eq!(shell_words(&argv), r"python3 -c 'print('\''hi there'\'')' --x=1");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!("red \u{1b}[31m\ttab".escape_debug_controls(), "red \\u{1b}[31m\ttab");
    }
}
