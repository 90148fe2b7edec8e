//! `CrashReport`: what crashwatch knows about one abnormal end of the
//! child. It is the seam of the pipeline: the supervisor and capture stages
//! fill it, the spool stores it as JSON, and `list`, `show` and delivery
//! read it back. Fields are only ever added, so older records stay readable.

mod path;
mod render;

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::capture::{CaptureError, CrashCapture, RequeuedSignal, SnapshotCapture};
use crate::logs::{Line, Stream};
use crate::memory::kmsg::OomKill;
use crate::memory::notify::Mechanism;
use crate::memory::oom::Oom;
use crate::memory::sampler::{Crossing, Memory};
use crate::process::{ChildStatus, signals};

pub use render::*;

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
    /// When the process started; unknown for a descendant's crash, which
    /// crashwatch did not start.
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub started_at: Option<OffsetDateTime>,
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
    /// Other processes the OOM killer killed in the child's memory cgroup
    /// while it ran (its descendants, typically); never the child itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oom_victims: Vec<OomKill>,
    /// The crash as the child's runtime told it on stderr (a Rust panic, a Go
    /// panic, a Python traceback…), parsed from the log tail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic: Option<crate::story::Crash>,
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
    /// Files the child's runtime wrote about its crash (the JVM's
    /// `hs_err_pid*.log`), kept in the report's directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Non-fatal problems met while building the report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What makes two crashes "the same" (the program, how it ended, the
    /// top frames): set when the report is filed; retention keeps the
    /// newest report of each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The `hang` event of the run, when the program had hung before this
    /// end (a watchdog's SIGABRT, crashwatch's own stop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hang_event: Option<String>,
}

/// A file kept with a report and sent with it, scrubbed like the log tail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// Its name in the report's directory.
    pub file: String,
    /// The name it is sent under (the original file's name).
    pub name: String,
    pub size: u64,
    /// Where the runtime wrote it.
    #[serde(with = "path")]
    pub original: PathBuf,
    /// Whether only its first part was kept.
    pub truncated: bool,
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
    /// Who sent the signal, when it was sent rather than raised by a fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<crate::capture::Sender>,
    #[serde(with = "path")]
    pub exe: PathBuf,
    /// What rust-minidump saw in the crash: a null dereference, a stack
    /// overflow, a non-canonical address, a bad jump…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<String>,
    /// Deleted executables and libraries copied before the process died.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preserved: Vec<Preserved>,
    /// The process that crashed (the child, or a descendant with
    /// `--follow-forks`) and the thread that took the signal; the capture's
    /// time is from the fatal stop to the dump written.
    #[serde(flatten)]
    pub dumped: Dumped,
}

/// What a crash and a snapshot both record of the process they dumped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dumped {
    pub pid: i32,
    pub tid: i32,
    pub thread_name: String,
    /// Threads the process had when it was stopped.
    pub threads: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minidump: Option<FileRef>,
    /// Why there is no minidump.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minidump_error: Option<String>,
    /// The symbolicated stacks of every thread (`crashwatch symbolicate
    /// --json` of the minidump).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacks: Option<FileRef>,
    /// Why there are no symbolicated stacks though there is a minidump
    /// (symbolication failed, timed out, ran out of memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacks_error: Option<String>,
    /// How long the process was held for the dump, in milliseconds
    /// (unknown for a dump taken in after its crashwatch was killed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_ms: Option<f64>,
    /// Problems that did not prevent the dump.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Dumped {
    /// The record of a dump of thread `tid` (named `thread_name`) of process
    /// `pid`, which had `threads` threads and was held for `held`.
    fn new(
        (pid, tid, thread_name): (i32, i32, &str),
        threads: usize,
        minidump: Result<FileRef, String>,
        held: std::time::Duration,
        notes: Vec<String>,
    ) -> Dumped {
        let (minidump, minidump_error) = match minidump {
            Ok(file) => (Some(file), None),
            Err(e) => (None, Some(e)),
        };
        Dumped {
            pid,
            tid,
            thread_name: thread_name.to_owned(),
            threads,
            minidump,
            minidump_error,
            stacks: None,
            stacks_error: None,
            capture_ms: Some(held.as_secs_f64() * 1000.0),
            notes,
        }
    }
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
    /// What told crashwatch of the crossing: the kernel (cgroup v1's
    /// threshold notification, v2's memory.high event) or its periodic
    /// check. Absent from reports written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noticed_by: Option<Mechanism>,
    /// The child and the thread that took the request (the dump's
    /// requesting thread); the capture's time is from the request's stop
    /// to the child running again.
    #[serde(flatten)]
    pub dumped: Dumped,
}

impl MemorySnapshot {
    /// The record of `capture`, taken on `crossing`; `minidump` is the file
    /// as kept in the report's directory (or why keeping it failed).
    pub fn new(crossing: &Crossing, capture: &SnapshotCapture, minidump: Result<FileRef, String>) -> MemorySnapshot {
        let notes = capture_notes(&capture.soft_errors, &capture.requeued, "snapshot");
        MemorySnapshot {
            crossed_at: crossing.at,
            taken_at: capture.taken_at.into(),
            usage: crossing.usage,
            limit: crossing.threshold.limit,
            threshold_percent: crossing.threshold.percent,
            noticed_by: Some(crossing.noticed_by),
            dumped: Dumped::new(
                (capture.pid, capture.tid, &capture.thread_name),
                capture.threads,
                minidump,
                capture.elapsed,
                notes,
            ),
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

/// The notes of a capture (`what`: "capture" or "snapshot"): the problems
/// that did not prevent it, and the signals other threads had pending,
/// delivered again afterwards.
fn capture_notes(soft_errors: &[CaptureError], requeued: &[RequeuedSignal], what: &str) -> Vec<String> {
    let mut notes: Vec<String> = soft_errors.iter().map(|e| crate::errors::Chain(e).to_string()).collect();
    notes.extend(requeued.iter().map(|r| {
        format!("{} pending on thread {} was delivered again after the {what}", signals::name(r.signal), r.tid)
    }));
    notes
}

/// The first 12 characters of a report id, as `crashwatch list` shows it
/// (by characters: ids read back from files are not trusted to be hex).
pub fn short_id(id: &str) -> &str {
    id.char_indices().nth(12).map_or(id, |(end, _)| &id[..end])
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub file: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preserved {
    /// The path the file had when it was mapped.
    #[serde(with = "path")]
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
        let mut notes = capture.notes.clone();
        notes.extend(capture_notes(&capture.soft_errors, &capture.requeued, "capture"));
        Crash {
            signal: capture.signal,
            signal_name: signals::name(capture.signal),
            code: capture.si_code,
            code_name: signals::code_name(capture.signal, capture.si_code).map(str::to_owned),
            fault_address: capture.fault_addr.map(hex),
            sender: capture.sender.clone(),
            exe: capture.exe.clone(),
            diagnosis: sent_by(capture),
            preserved,
            dumped: Dumped::new(
                (capture.pid, capture.tid, &capture.thread_name),
                capture.threads,
                minidump,
                capture.elapsed,
                notes,
            ),
        }
    }

    /// What the minidump's analysis says, unless the signal was sent: then
    /// who sent it is the diagnosis (a `kill -SEGV` is not a null pointer).
    pub fn diagnose(&mut self, from_dump: Option<String>) {
        if self.sender.is_none() {
            self.diagnosis = from_dump;
        }
    }

    /// `SIGSEGV (SEGV_MAPERR) at 0x0 in thread 'main' (tid 42)`
    pub fn headline(&self) -> String {
        crash_headline(self.signal, self.code, self.fault_address_value(), &self.dumped.thread_name, self.dumped.tid)
    }

    fn fault_address_value(&self) -> Option<u64> {
        self.fault_address.as_deref().and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
    }
}

/// The diagnosis of a signal that was sent, not raised by a fault: `sent by
/// pid 4242 (bash)`, or for a fault signal the process sent itself
/// (`raise(SIGSEGV)`), `raised by the process itself (SI_TKILL)`.
fn sent_by(capture: &CrashCapture) -> Option<String> {
    let sender = capture.sender.as_ref()?;
    let code = signals::code_name(capture.signal, capture.si_code).unwrap_or("si_code <= 0");
    Some(if sender.pid == capture.pid {
        // `abort` raising SIGABRT is how SIGABRT always comes; a fault
        // signal a process sends itself is worth saying.
        if !matches!(capture.signal, libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE) {
            return None;
        }
        format!("raised by the process itself ({code}), not by a fault")
    } else {
        match &sender.comm {
            Some(comm) => format!("sent by pid {} ({comm}) with {code}, not raised by a fault", sender.pid),
            None => format!("sent by pid {} (gone) with {code}, not raised by a fault", sender.pid),
        }
    })
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
    #[serde(with = "path")]
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

/// What the run stage knows when a process has ended (or, for a
/// descendant's crash, is about to).
pub struct Ending<'a> {
    pub argv: &'a [String],
    pub exe: PathBuf,
    pub pid: i32,
    pub status: ChildStatus,
    /// `None` when crashwatch did not start the process.
    pub started_at: Option<std::time::SystemTime>,
    pub ended_at: std::time::SystemTime,
    /// The stop signal crashwatch received (and forwarded) before the end.
    pub stop_requested: Option<i32>,
    pub log_tail: &'a [Line],
    pub log_tail_complete: bool,
    pub release: Option<String>,
    pub environment: Option<String>,
}

impl CrashReport {
    /// A new report about `ending`, with a fresh id.
    pub fn new(ending: Ending<'_>) -> CrashReport {
        let Ending { pid, status, started_at, ended_at, stop_requested, .. } = ending;
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
            started_at: started_at.map(Into::into),
            ended_at: ended_at.into(),
            stop_requested,
            hostname: nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
            release: ending.release,
            environment: ending.environment,
            crash: None,
            oom: None,
            oom_victims: Vec::new(),
            panic: None,
            memory: None,
            snapshot: None,
            log_tail: ending.log_tail.iter().map(LogLine::from).collect(),
            log_tail_complete: ending.log_tail_complete,
            attachments: Vec::new(),
            notes: Vec::new(),
            signature: None,
            hang_event: None,
        }
    }

    /// The minidump kept with the report: the crash's, or else the memory
    /// snapshot's.
    pub fn minidump_file(&self) -> Option<&FileRef> {
        let crash = self.crash.as_ref().and_then(|c| c.dumped.minidump.as_ref());
        crash.or_else(|| self.snapshot.as_ref().and_then(|s| s.dumped.minidump.as_ref()))
    }

    /// The symbolicated stacks of [`CrashReport::minidump_file`].
    pub fn stacks_file(&self) -> Option<&FileRef> {
        match &self.crash {
            Some(crash) => crash.dumped.stacks.as_ref(),
            None => self.snapshot.as_ref().and_then(|s| s.dumped.stacks.as_ref()),
        }
    }

    /// The short form of the id shown in listings.
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }

    /// The program's name as a person calls it.
    pub fn program_name(&self) -> String {
        let exe = self.program.exe.file_name().map(|n| n.to_string_lossy().into_owned());
        exe.unwrap_or_else(|| self.program.argv.first().cloned().unwrap_or_default())
    }

    /// How long the process ran, when its start is known.
    pub fn duration(&self) -> Option<time::Duration> {
        self.started_at.map(|started| self.ended_at - started)
    }

    /// `SIGSEGV` or `exit 3`: the column of `crashwatch list`.
    pub fn cause(&self) -> String {
        match self.status {
            ChildStatus::Exited(code) => format!("exit {code}"),
            ChildStatus::Signaled { signal, .. } => signals::name(signal),
        }
    }
}

#[cfg(test)]
mod tests;
