//! `CrashReport`: what crashwatch knows about one abnormal end of the
//! child. It is the seam of the pipeline: the supervisor and capture stages
//! fill it, the spool stores it as JSON, and `list`, `show` and delivery
//! read it back. Fields are only ever added, so older records stay readable.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::capture::memory::{Crossing, Memory};
use crate::capture::oom::Oom;
use crate::capture::{CrashCapture, SnapshotCapture};
use crate::logs::{Line, Stream};
use crate::signals;
use crate::supervise::{ChildStatus, Finished};

/// The version of the record's layout.
pub const FORMAT: u32 = 1;

/// What kind of end the report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Exited with a non-zero code.
    Exit,
    /// Killed by a signal.
    Signal,
    /// Killed by the kernel's OOM killer.
    Oom,
    /// Exited after its runtime reported a crash on stderr: a panic, an
    /// uncaught exception, a sanitizer's error.
    Panic,
    /// Ended after crashwatch was asked to stop it (a stop signal was
    /// forwarded), other than by a crash signal: an orderly shutdown, kept
    /// locally but not a crash.
    Stopped,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Exit => "exit",
            Kind::Signal => "signal",
            Kind::Oom => "oom",
            Kind::Panic => "panic",
            Kind::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrashReport {
    pub format: u32,
    /// 32 lowercase hex digits; also the Sentry event id.
    pub id: String,
    pub kind: Kind,
    pub program: Program,
    pub status: ChildStatus,
    /// The exit status a shell would show for this end: the code, or
    /// 128+N for signal N (what `crashwatch run` exits with when the report
    /// is about its child).
    pub exit_code: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ended_at: OffsetDateTime,
    pub hostname: String,
    /// The stop signal crashwatch received (and forwarded) before the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_requested: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// What the tracer saw of the crash: present when the process was
    /// caught about to die of a crash signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash: Option<Crash>,
    /// Why a SIGKILL is taken for the OOM killer's (kind `oom`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom: Option<Oom>,
    /// The crash as the child's runtime told it on stderr (a Rust panic, a Go
    /// panic, a Python traceback…), parsed from the log tail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic: Option<crate::capture::crash_story::Crash>,
    /// The child's memory while it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// The minidump taken while the child ran, when its memory crossed the
    /// `--oom-snapshot` threshold (kept in a report of kind `oom` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<MemorySnapshot>,
    /// The child's last lines, oldest first.
    pub log_tail: Vec<LogLine>,
    /// False when a descendant kept the child's pipes open and the tail was
    /// taken without waiting for their end.
    pub log_tail_complete: bool,
    /// Non-fatal problems met while building the report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A crash caught by the tracer, with the files kept of it. File names are
/// relative to the report's directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Crash {
    pub signal: i32,
    pub signal_name: String,
    /// `si_code`: why the kernel sent the signal.
    pub code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_name: Option<String>,
    /// The faulting address, `0x…`, for faults that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_address: Option<String>,
    /// The process that crashed (the child, or a descendant with
    /// `--follow-forks`).
    pub pid: i32,
    /// The thread that took the signal.
    pub tid: i32,
    pub thread_name: String,
    pub exe: PathBuf,
    /// Threads the process had when it was stopped.
    pub threads: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minidump: Option<FileRef>,
    /// Why there is no minidump.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minidump_error: Option<String>,
    /// What rust-minidump saw in the crash: a null dereference, a stack
    /// overflow, a non-canonical address, a bad jump…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<String>,
    /// The symbolicated stacks of every thread (`crashwatch symbolicate
    /// --json` of the minidump).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacks: Option<FileRef>,
    /// Deleted executables and libraries copied before the process died.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preserved: Vec<Preserved>,
    /// From the fatal stop to the dump written, in milliseconds.
    pub capture_ms: f64,
    /// Problems that did not prevent the capture.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A minidump of the live child, taken when its memory first crossed the
/// `--oom-snapshot` share of its cgroup's limit: the stacks an OOM kill
/// leaves no chance to take. File names are relative to the report's
/// directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemorySnapshot {
    /// When the child's memory was seen at the threshold.
    #[serde(with = "time::serde::rfc3339")]
    pub crossed_at: OffsetDateTime,
    /// When the dump was written.
    #[serde(with = "time::serde::rfc3339")]
    pub taken_at: OffsetDateTime,
    /// The cgroup's working set (usage less inactive page cache) that
    /// crossed the threshold, bytes.
    pub usage: u64,
    /// The cgroup's limit, bytes.
    pub limit: u64,
    /// `--oom-snapshot PERCENT`.
    pub threshold_percent: u8,
    pub pid: i32,
    /// The thread that took the request: the dump's requesting thread.
    pub tid: i32,
    pub thread_name: String,
    /// Threads the process had when it was stopped.
    pub threads: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minidump: Option<FileRef>,
    /// Why there is no minidump.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minidump_error: Option<String>,
    /// The symbolicated stacks of every thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacks: Option<FileRef>,
    /// From the request's stop to the child running again, milliseconds.
    pub capture_ms: f64,
    /// Problems that did not prevent the snapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl MemorySnapshot {
    /// The record of `capture`, taken on `crossing`; `minidump` is the file
    /// as kept in the report's directory (or why keeping it failed).
    pub fn new(crossing: &Crossing, capture: &SnapshotCapture, minidump: Result<FileRef, String>) -> MemorySnapshot {
        let mut notes: Vec<String> = capture.soft_errors.iter().map(|e| crate::errors::Chain(e).to_string()).collect();
        notes.extend(capture.requeued.iter().map(|r| {
            format!("{} pending on thread {} was delivered again after the snapshot", signals::name(r.signal), r.tid)
        }));
        let (minidump, minidump_error) = match minidump {
            Ok(file) => (Some(file), None),
            Err(e) => (None, Some(e)),
        };
        MemorySnapshot {
            crossed_at: crossing.at,
            taken_at: capture.taken_at.into(),
            usage: crossing.usage,
            limit: crossing.threshold.limit,
            threshold_percent: crossing.threshold.percent,
            pid: capture.pid,
            tid: capture.tid,
            thread_name: capture.thread_name.clone(),
            threads: capture.threads,
            minidump,
            minidump_error,
            stacks: None,
            capture_ms: capture.elapsed.as_secs_f64() * 1000.0,
            notes,
        }
    }

    /// The working set that crossed, as a share of the limit, in percent.
    pub fn percent(&self) -> f64 {
        if self.limit == 0 { 0.0 } else { self.usage as f64 * 100.0 / self.limit as f64 }
    }

    /// `at 52% of the memory limit (33.3 MiB of 64.0 MiB), taken 2026-11-22
    /// 03:15:02 UTC, 1.20s before the end`
    pub fn headline(&self, ended_at: OffsetDateTime) -> String {
        format!(
            "at {:.0}% of the memory limit ({} of {}), taken {}, {} before the end",
            self.percent(),
            human_bytes(self.usage),
            human_bytes(self.limit),
            timestamp(self.taken_at),
            human_duration(ended_at - self.taken_at)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub file: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preserved {
    /// The path the file had when it was mapped.
    pub original: PathBuf,
    pub file: String,
    pub size: u64,
    /// Lowest address it was mapped at, `0x…`.
    pub base_address: String,
}

impl Crash {
    /// The record of `capture`; `minidump` and `preserved` are the files as
    /// kept in the report's directory (or why keeping one failed).
    pub fn new(capture: &CrashCapture, minidump: Result<FileRef, String>, preserved: Vec<Preserved>) -> Crash {
        let mut notes: Vec<String> = capture.soft_errors.iter().map(|e| crate::errors::Chain(e).to_string()).collect();
        notes.extend(capture.requeued.iter().map(|r| {
            format!("{} pending on thread {} was delivered again after the capture", signals::name(r.signal), r.tid)
        }));
        let (minidump, minidump_error) = match minidump {
            Ok(file) => (Some(file), None),
            Err(e) => (None, Some(e)),
        };
        Crash {
            signal: capture.signal,
            signal_name: signals::name(capture.signal),
            code: capture.si_code,
            code_name: signals::code_name(capture.signal, capture.si_code).map(str::to_owned),
            fault_address: capture.fault_addr.map(hex),
            pid: capture.pid,
            tid: capture.tid,
            thread_name: capture.thread_name.clone(),
            exe: capture.exe.clone(),
            threads: capture.threads,
            minidump,
            minidump_error,
            diagnosis: None,
            stacks: None,
            preserved,
            capture_ms: capture.elapsed.as_secs_f64() * 1000.0,
            notes,
        }
    }

    /// `SIGSEGV (SEGV_MAPERR) at 0x0 in thread 'main' (tid 42)`
    pub fn headline(&self) -> String {
        crash_headline(self.signal, self.code, self.fault_address_value(), &self.thread_name, self.tid)
    }

    fn fault_address_value(&self) -> Option<u64> {
        self.fault_address.as_deref().and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
    }
}

/// `SIGSEGV (SEGV_MAPERR) at 0x0 in thread 'main' (tid 42)`
pub fn crash_headline(signal: i32, code: i32, fault_addr: Option<u64>, thread: &str, tid: i32) -> String {
    let mut s = signals::name(signal);
    if let Some(code) = signals::code_name(signal, code) {
        let _ = write!(s, " ({code})");
    }
    if let Some(addr) = fault_addr {
        let _ = write!(s, " at {}", hex(addr));
    }
    let _ = write!(s, " in thread '{thread}' (tid {tid})");
    s
}

/// `0x7f…` — addresses are strings in JSON, where numbers past 2^53 lose bits.
pub fn hex(addr: u64) -> String {
    format!("{addr:#x}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub argv: Vec<String>,
    /// The file that was executed.
    pub exe: PathBuf,
    pub pid: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub stream: Stream,
    /// The line as UTF-8; invalid bytes are replaced by U+FFFD (`lossy`).
    pub text: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub lossy: bool,
    /// Bytes of the line that were cut for length or lost from the ring.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub omitted: usize,
    /// False for a last line that had no newline.
    #[serde(default = "yes", skip_serializing_if = "Clone::clone")]
    pub newline: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}
fn is_zero(n: &usize) -> bool {
    *n == 0
}
fn yes() -> bool {
    true
}

impl From<&Line> for LogLine {
    fn from(line: &Line) -> LogLine {
        let text = String::from_utf8_lossy(&line.bytes);
        LogLine {
            at: line.at.into(),
            stream: line.stream,
            lossy: matches!(text, std::borrow::Cow::Owned(_)),
            text: text.into_owned(),
            omitted: line.omitted,
            newline: line.newline,
        }
    }
}

/// What the run stage knows when the child has ended.
pub struct Ending<'a> {
    pub argv: &'a [String],
    pub exe: PathBuf,
    pub finished: Finished,
    pub log_tail: &'a [Line],
    pub log_tail_complete: bool,
    pub release: Option<String>,
    pub environment: Option<String>,
}

impl CrashReport {
    /// A new report about `ending`, with a fresh id.
    pub fn new(ending: Ending<'_>) -> CrashReport {
        let Finished { pid, status, started_at, ended_at, stop_requested } = ending.finished;
        let kind = match status {
            ChildStatus::Signaled { signal, .. } if signals::CRASH.contains(&signal) => Kind::Signal,
            _ if stop_requested.is_some() => Kind::Stopped,
            ChildStatus::Exited(_) => Kind::Exit,
            ChildStatus::Signaled { .. } => Kind::Signal,
        };
        CrashReport {
            format: FORMAT,
            id: uuid::Uuid::new_v4().simple().to_string(),
            kind,
            program: Program { argv: ending.argv.to_vec(), exe: ending.exe, pid },
            status,
            exit_code: status.exit_code(),
            started_at: started_at.into(),
            ended_at: ended_at.into(),
            stop_requested,
            hostname: nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
            release: ending.release,
            environment: ending.environment,
            crash: None,
            oom: None,
            panic: None,
            memory: None,
            snapshot: None,
            log_tail: ending.log_tail.iter().map(LogLine::from).collect(),
            log_tail_complete: ending.log_tail_complete,
            notes: Vec::new(),
        }
    }

    /// The minidump kept with the report: the crash's, or else the memory
    /// snapshot's.
    pub fn minidump_file(&self) -> Option<&FileRef> {
        let crash = self.crash.as_ref().and_then(|c| c.minidump.as_ref());
        crash.or_else(|| self.snapshot.as_ref().and_then(|s| s.minidump.as_ref()))
    }

    /// The symbolicated stacks of [`CrashReport::minidump_file`].
    pub fn stacks_file(&self) -> Option<&FileRef> {
        match &self.crash {
            Some(crash) => crash.stacks.as_ref(),
            None => self.snapshot.as_ref().and_then(|s| s.stacks.as_ref()),
        }
    }

    /// The short form of the id shown in listings.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }

    /// The program's name as a person calls it.
    pub fn program_name(&self) -> String {
        let exe = self.program.exe.file_name().map(|n| n.to_string_lossy().into_owned());
        exe.unwrap_or_else(|| self.program.argv.first().cloned().unwrap_or_default())
    }

    /// How long the child ran.
    pub fn duration(&self) -> time::Duration {
        self.ended_at - self.started_at
    }

    /// `SIGSEGV` or `exit 3`: the column of `crashwatch list`.
    pub fn cause(&self) -> String {
        match self.status {
            ChildStatus::Exited(code) => format!("exit {code}"),
            ChildStatus::Signaled { signal, .. } => signals::name(signal),
        }
    }

    /// The human-readable report of `crashwatch show`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Report      {}", self.id);
        let _ = writeln!(out, "Program     {} (pid {})", shell_words(&self.program.argv), self.program.pid);
        let _ = writeln!(out, "Executable  {}", self.program.exe.display());
        let _ = writeln!(out, "Host        {}", self.hostname);
        let _ = writeln!(out, "Started     {}", timestamp(self.started_at));
        let _ = writeln!(out, "Ended       {} (ran {})", timestamp(self.ended_at), human_duration(self.duration()));
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
            if crash.pid != self.program.pid {
                let _ =
                    writeln!(out, "Process     {} (pid {}), a descendant of the child", crash.exe.display(), crash.pid);
            }
            let _ = writeln!(out, "Threads     {}", crash.threads);
            match (&crash.minidump, &crash.minidump_error) {
                (Some(dump), _) => {
                    let _ = writeln!(
                        out,
                        "Minidump    {} ({}, written in {:.1} ms)",
                        dump.file,
                        human_bytes(dump.size),
                        crash.capture_ms
                    );
                }
                (None, Some(e)) => {
                    let _ = writeln!(out, "Minidump    none: {e}");
                }
                (None, None) => {}
            }
            for p in &crash.preserved {
                let _ = writeln!(out, "Preserved   {} → {} ({})", p.original.display(), p.file, human_bytes(p.size));
            }
            for note in &crash.notes {
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
            let _ = writeln!(
                out,
                "Threads     {}, stacks as of the snapshot ('{}', tid {} took it)",
                snapshot.threads, snapshot.thread_name, snapshot.tid
            );
            match (&snapshot.minidump, &snapshot.minidump_error) {
                (Some(dump), _) => {
                    let _ = writeln!(
                        out,
                        "Minidump    {} ({}, the child held for {:.1} ms)",
                        dump.file,
                        human_bytes(dump.size),
                        snapshot.capture_ms
                    );
                }
                (None, Some(e)) => {
                    let _ = writeln!(out, "Minidump    none: {e}");
                }
                (None, None) => {}
            }
            for note in &snapshot.notes {
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
pub fn panic_headline(panic: &crate::capture::crash_story::Crash) -> String {
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
fn frame_line(frame: &crate::capture::crash_story::Frame) -> String {
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
    fn a_snapshot_says_when_and_at_what_share_of_the_limit() {
        let taken_at = time::macros::datetime!(2026-11-22 03:15:02 UTC);
        let snapshot = MemorySnapshot {
            crossed_at: taken_at - time::Duration::milliseconds(40),
            taken_at,
            usage: 34_000_000,
            limit: 64 << 20,
            threshold_percent: 50,
            pid: 7,
            tid: 7,
            thread_name: "server".into(),
            threads: 3,
            minidump: None,
            minidump_error: None,
            stacks: None,
            capture_ms: 1.5,
            notes: Vec::new(),
        };
        assert_eq!(
            snapshot.headline(taken_at + time::Duration::milliseconds(1250)),
            "at 51% of the memory limit (32.4 MiB of 64.0 MiB), taken 2026-11-22 03:15:02 UTC, 1.25s before the end"
        );
        assert_eq!(MemorySnapshot { limit: 0, ..snapshot }.percent(), 0.0);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!("red \u{1b}[31m\ttab".escape_debug_controls(), "red \\u{1b}[31m\ttab");
    }
}
