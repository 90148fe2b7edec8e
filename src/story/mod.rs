//! Recognise the crash story in the last lines a child process printed.
//!
//! crashwatch keeps a ring of the child's last output lines (both streams,
//! interleaved, oldest first). When the child dies abnormally, [`detect`]
//! looks for the text the dying runtime printed — a Rust panic, a Go panic or
//! `fatal error`, a Python traceback or faulthandler report, a Java uncaught
//! exception or JVM fatal error, a Node.js uncaught exception, unhandled
//! rejection or V8 fatal error, a C++ `terminate called…`, or a sanitizer
//! report — and turns the *last* such
//! story into a [`Crash`] shaped like a Sentry exception: type (`kind`),
//! message (`value`), thread, frames oldest first, and chained causes.
//!
//! # Approach
//!
//! * **One stream at a time.** A runtime writes its whole crash report to one
//!   file descriptor (almost always stderr), while other threads may keep
//!   logging to the other one. The tail is therefore split into a stderr view
//!   and a stdout view and each view is scanned on its own, so stdout lines
//!   interleaved with a stderr traceback never break it. The story that ends
//!   last (by index in the caller's tail) wins.
//! * **Anchored headers, then a strict grammar.** A story may only start on a
//!   line that *begins* with a runtime's header (`thread '…' panicked at`,
//!   `Traceback (most recent call last):`, `==123==ERROR: AddressSanitizer:`,
//!   …), so `INFO user said "panic: at the disco"` never matches. All header
//!   patterns are compiled once into a [`regex::RegexSet`] so each line costs
//!   one set match; only lines that hit a header run the runtime's own parser,
//!   which then walks the following lines with that runtime's grammar and
//!   rejects the candidate if the shape does not fit.
//! * **Forward scan, last story wins.** Each view is scanned front to back; a
//!   parsed story consumes its lines and scanning resumes after it. A
//!   supervisor that restarts a crashing loop can leave several stories in the
//!   tail; the last one is the crash that killed the child.
//! * **Headless recovery.** The ring may have evicted the head of a long
//!   report (a 1000-frame Java `StackOverflowError`, a deep Python recursion).
//!   At the first line of each view only, the parsers also accept a story
//!   that starts in the middle — frames without their header — and return
//!   what survives: the frames, and the type where the runtime prints it at
//!   the end (Python, sanitizer `SUMMARY`). `kind`/`value` are empty strings
//!   when the runtime printed them only in the evicted head.
//! * **Free-form messages are bounded.** Panic and exception messages may span
//!   lines, and nothing but the next recognisable line marks their end. Such
//!   messages stop at the runtime's own terminator, at any strong header, and
//!   after a small cap; past the cap only the first line is kept, so a
//!   restarted program's log is not swallowed into the message.
//!
//! Nothing here panics on any input: regexes are built from constant
//! patterns (checked by a unit test), numbers are parsed with `.ok()`, line
//! access goes through `get`, and the few slices are bounded by construction.
//! The work is linear in the tail apart from small per-header caps; a full
//! 1000-line ring takes well under a millisecond in a release build.
//!
//! # Conventions of the output
//!
//! * `frames` are oldest first (Sentry's order); runtimes that print newest
//!   first (Rust, Go, Java, sanitizers, faulthandler) are reversed.
//! * `chained` holds the causes, nearest first: `chained[0]` is what the
//!   top-level exception was raised from or while handling (Python's
//!   `__cause__`/`__context__`, Java's first `Caused by:`), the last entry is
//!   the root cause. For a Rust double panic, the earlier panics of the same
//!   thread are chained the same way; for a Go `[recovered]` re-panic, the
//!   recovered panics are.
//! * `Frame::filename` is the path exactly as printed; `abs_path` repeats it
//!   when it is absolute. `in_app` is a guess from well-known library paths and
//!   package prefixes of each runtime.
//!
//! # Limits
//!
//! * A story is whatever the runtime printed last; a handled exception that
//!   the program *logged* with its traceback is a story too. The caller knows
//!   the exit status and how far `last_line` is from the end of the tail, and
//!   should judge relevance with them.
//! * Reports written through a custom panic hook, logging framework or
//!   structured (JSON) logger are not recognised unless they keep the
//!   runtime's own layout line for line.
//! * If both streams are merged into one (a pty), another thread's output
//!   landing inside a report breaks it at that line.
//! * Each runtime's file lists the shapes it reads; anything else is not
//!   read.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

mod go;
mod java;
mod jvm;
mod native;
mod node;
mod python;
mod rust;

/// One line of the child's output as crashwatch kept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailLine<'a> {
    /// `true` if the line came from the child's stderr, `false` for stdout.
    pub stderr: bool,
    /// The line without its terminating newline.
    pub text: &'a str,
}

/// The runtime (or sanitizer) that printed the crash story.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Runtime {
    Rust,
    Go,
    Python,
    Java,
    Node,
    /// `terminate called after throwing…` (libstdc++) or `libc++abi: terminating…`.
    Cpp,
    AddressSanitizer,
    UndefinedBehaviorSanitizer,
    LeakSanitizer,
    ThreadSanitizer,
}

impl Runtime {
    /// The Sentry `platform` an event carrying this crash should use.
    pub fn platform(self) -> &'static str {
        match self {
            Runtime::Go => "go",
            Runtime::Python => "python",
            Runtime::Java => "java",
            Runtime::Node => "node",
            Runtime::Rust
            | Runtime::Cpp
            | Runtime::AddressSanitizer
            | Runtime::UndefinedBehaviorSanitizer
            | Runtime::LeakSanitizer
            | Runtime::ThreadSanitizer => "native",
        }
    }
}

/// One stack frame, in Sentry's vocabulary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// Function or method name as printed (Rust hashes and crate
    /// disambiguators stripped; Go/Java split off the package/class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Go package path, Java class, when the runtime prints one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Native object file (executable or shared library) the frame is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Source path exactly as printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Same as `filename` when that is an absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abs_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineno: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colno: Option<u32>,
    /// Instruction address as printed (`0x…`), for native frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction_addr: Option<String>,
    /// Guess: `false` for the runtime's standard library and third-party
    /// dependencies, `true` otherwise.
    #[serde(default)]
    pub in_app: bool,
}

/// A recognised crash story.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Crash {
    pub runtime: Runtime,
    /// The exception type as Sentry would show it: `panic`,
    /// `ZeroDivisionError`, `java.lang.IllegalStateException`,
    /// `std::runtime_error`, `heap-use-after-free`, `fatal error` (Go), …
    /// Empty when only the headless remains of a story (see module docs).
    pub kind: String,
    /// The message. May span lines.
    pub value: String,
    /// Rust thread name, Go `goroutine N [state]`, Java thread name,
    /// sanitizer thread (`T0`), faulthandler thread id.
    pub thread: Option<String>,
    /// Oldest first.
    pub frames: Vec<Frame>,
    /// Causes, nearest first (see module docs).
    pub chained: Vec<Crash>,
    /// A file the runtime says it wrote its full crash report to (the
    /// JVM's `hs_err_pid*.log`), as printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_file: Option<String>,
    /// Index into the caller's tail of the story's first line.
    pub first_line: usize,
    /// Index into the caller's tail of the story's last line.
    pub last_line: usize,
}

/// Finds the last crash story in `tail` (oldest line first).
///
/// Returns `None` when no line starts a story the parsers accept.
pub fn detect(tail: &[TailLine<'_>]) -> Option<Crash> {
    // Normalise once: drop a trailing CR (CRLF output) and ANSI colour
    // sequences (Python 3.13+ and some loggers colour tracebacks when forced).
    let texts: Vec<Cow<'_, str>> = tail.iter().map(|l| normalise(l.text)).collect();
    let mut best: Option<Crash> = None;
    for stderr in [true, false] {
        let lines: Vec<Line<'_>> = tail
            .iter()
            .zip(&texts)
            .enumerate()
            .filter(|(_, (l, _))| l.stderr == stderr)
            .map(|(idx, (_, t))| Line { idx, text: t.as_ref() })
            .collect();
        if let Some(c) = scan(&lines, stderr) {
            let later = best.as_ref().is_none_or(|b| (c.last_line, c.first_line) > (b.last_line, b.first_line));
            if later {
                best = Some(c);
            }
        }
    }
    best
}

/// Scans one stream's lines front to back and returns the last story.
fn scan(lines: &[Line<'_>], stderr: bool) -> Option<Crash> {
    let mut last = None;
    let mut i = 0;
    let mut floor = 0;
    while i < lines.len() {
        let cx = Ctx { lines, stderr, floor };
        let mut story = parse_at(&cx, i);
        if story.is_none() && i == 0 {
            // A headless story may skip a few leading lines; if one of those
            // starts a real story, the real one wins and the scan reaches it.
            story = headless(&cx).filter(|s| {
                let start = lines.iter().position(|l| l.idx >= s.crash.first_line).unwrap_or(0);
                (1..start).all(|k| parse_at(&cx, k).is_none())
            });
        }
        match story {
            // `max(i + 1)` guarantees progress even if a parser misreports.
            Some(s) => {
                i = s.next.max(i + 1);
                floor = i;
                last = Some(s.crash);
            }
            None => i += 1,
        }
    }
    last
}

/// Tries every parser whose header matches line `at`.
fn parse_at(cx: &Ctx<'_, '_>, at: usize) -> Option<Story> {
    let text = cx.text(at)?;
    let table = &*STARTS;
    for idx in table.set.matches(text).iter() {
        let Some(start) = table.kinds.get(idx).and_then(|k| k.start) else { continue };
        let story = match start {
            Start::RustPanic => rust::parse_panic_run(cx, at),
            Start::RustOverflow => rust::parse_overflow(cx, at),
            Start::RustFatal => rust::parse_fatal(cx, at),
            Start::RustAbort => rust::parse_lone_abort(cx, at),
            Start::GoPanic | Start::GoFatal | Start::GoSignal => go::parse(cx, at),
            Start::PyTraceback => python::parse_traceback(cx, at),
            Start::PyGroup => python::parse_group(cx, at),
            Start::PyFatal => python::parse_fatal(cx, at),
            Start::PyFileLine => python::parse_syntax_error(cx, at),
            Start::JavaThread | Start::JavaBare => java::parse(cx, at),
            Start::JvmFatal => jvm::parse(cx, at),
            Start::NodeThrowSite => node::parse_uncaught(cx, at),
            Start::NodeFatal => node::parse_fatal(cx, at),
            Start::NodeAbort => node::parse_abort(cx, at),
            Start::Cpp => native::parse_cpp(cx, at),
            Start::Sanitizer => native::parse_sanitizer(cx, at),
            Start::Ubsan => native::parse_ubsan(cx, at),
        };
        if story.is_some() {
            return story;
        }
    }
    None
}

/// Stories whose head was evicted from the ring; only tried at a stream's
/// first line. Python first: its frames are the most distinctive and it keeps
/// the exception type at the end.
fn headless(cx: &Ctx<'_, '_>) -> Option<Story> {
    python::parse_headless(cx)
        .or_else(|| java::parse_headless(cx))
        .or_else(|| native::parse_headless_sanitizer(cx))
        .or_else(|| go::parse_headless(cx))
        .or_else(|| rust::parse_headless(cx))
}

/// Which parser a header pattern belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    RustPanic,
    RustOverflow,
    RustFatal,
    RustAbort,
    GoPanic,
    GoFatal,
    GoSignal,
    PyTraceback,
    PyGroup,
    PyFatal,
    PyFileLine,
    JavaThread,
    JavaBare,
    JvmFatal,
    NodeThrowSite,
    NodeFatal,
    NodeAbort,
    Cpp,
    Sanitizer,
    Ubsan,
}

#[derive(Debug, Clone, Copy)]
struct StartKind {
    /// The parser to run, or `None` for patterns that only terminate
    /// free-form messages.
    start: Option<Start>,
    /// Whether the pattern is distinctive enough to end another story's
    /// free-form message (a Python exception line or a dotted Java class
    /// name is not: messages contain such text).
    strong: bool,
}

struct StartTable {
    set: RegexSet,
    kinds: Vec<StartKind>,
}

static STARTS: LazyLock<StartTable> = LazyLock::new(|| {
    let strong = |start| StartKind { start: Some(start), strong: true };
    let weak = |start| StartKind { start: Some(start), strong: false };
    let table: Vec<(&str, StartKind)> = vec![
        (rust::HEADER_NEW, strong(Start::RustPanic)),
        (rust::HEADER_OLD, strong(Start::RustPanic)),
        (rust::OVERFLOW, strong(Start::RustOverflow)),
        (rust::FATAL, strong(Start::RustFatal)),
        (rust::OOM, strong(Start::RustFatal)),
        (rust::ABORT, strong(Start::RustAbort)),
        (go::PANIC, strong(Start::GoPanic)),
        (go::FATAL, strong(Start::GoFatal)),
        (go::SIGNAL, strong(Start::GoSignal)),
        (go::GOROUTINE, StartKind { start: None, strong: true }),
        (python::TRACEBACK, strong(Start::PyTraceback)),
        (python::GROUP, strong(Start::PyGroup)),
        (python::FATAL, strong(Start::PyFatal)),
        (python::FILE_LINE, weak(Start::PyFileLine)),
        (java::THREAD_HEADER, strong(Start::JavaThread)),
        (java::BARE_HEADER, weak(Start::JavaBare)),
        (jvm::HEADER, strong(Start::JvmFatal)),
        (node::THROW_SITE, weak(Start::NodeThrowSite)),
        (node::FATAL, strong(Start::NodeFatal)),
        (node::NATIVE_STACK, strong(Start::NodeAbort)),
        (native::CPP_GNU, strong(Start::Cpp)),
        (native::CPP_GNU_OTHER, strong(Start::Cpp)),
        (native::CPP_LIBCXX, strong(Start::Cpp)),
        (native::SAN_ERROR, strong(Start::Sanitizer)),
        (native::SAN_DEADLY, strong(Start::Sanitizer)),
        (native::TSAN_WARNING, strong(Start::Sanitizer)),
        (native::UBSAN, strong(Start::Ubsan)),
    ];
    let set = RegexSet::new(table.iter().map(|(p, _)| *p)).expect("constant header patterns compile");
    StartTable { set, kinds: table.into_iter().map(|(_, k)| k).collect() }
});

/// True if `text` starts a story distinctive enough to end a free-form
/// message of another story.
fn is_strong_start(text: &str) -> bool {
    let table = &*STARTS;
    table.set.matches(text).iter().any(|i| table.kinds.get(i).is_some_and(|k| k.strong))
}

/// Compiles a constant pattern. Patterns are literals in this module and a
/// unit test compiles every one of them, so the `expect` cannot fire at run
/// time on any input.
fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("constant pattern compiles")
}

static ANSI: LazyLock<Regex> = LazyLock::new(|| re(r"\x1b\[[0-9;?]*[ -/]*[@-~]"));

fn normalise(text: &str) -> Cow<'_, str> {
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.contains('\x1b') { Cow::Owned(ANSI.replace_all(text, "").into_owned()) } else { Cow::Borrowed(text) }
}

/// One line of a single stream, with its index in the caller's tail.
#[derive(Debug, Clone, Copy)]
struct Line<'s> {
    idx: usize,
    text: &'s str,
}

/// A parser's view: one stream's lines, which stream it is, and the first
/// line not consumed by an earlier story.
struct Ctx<'c, 's> {
    lines: &'c [Line<'s>],
    stderr: bool,
    floor: usize,
}

impl<'c, 's> Ctx<'c, 's> {
    fn text(&self, i: usize) -> Option<&'s str> {
        self.lines.get(i).map(|l| l.text)
    }

    /// Tail index of stream line `i` (clamped, for end-of-story bookkeeping).
    fn idx(&self, i: usize) -> usize {
        self.lines.get(i).or_else(|| self.lines.last()).map_or(0, |l| l.idx)
    }

    fn is_blank(&self, i: usize) -> bool {
        self.text(i).is_some_and(|t| t.trim().is_empty())
    }

    /// First index at or after `i` that is not a blank line.
    fn skip_blank(&self, mut i: usize) -> usize {
        while self.is_blank(i) {
            i += 1;
        }
        i
    }

    /// Collects the continuation lines of a free-form message starting at
    /// `start`, stopping before a line for which `stop` is true, before any
    /// strong header, or at the end of the stream. Trailing blank lines are
    /// not part of the message. Past `cap` lines nothing is collected: the
    /// message then has no visible end and the caller keeps only its first
    /// line rather than swallowing unrelated output.
    ///
    /// Returns the lines and the index just after the last one collected.
    fn continuation(&self, start: usize, cap: usize, stop: impl Fn(&str) -> bool) -> (Vec<&'s str>, usize) {
        let mut i = start;
        while let Some(t) = self.text(i) {
            if stop(t) || is_strong_start(t) {
                break;
            }
            if i - start >= cap {
                return (Vec::new(), start);
            }
            i += 1;
        }
        let mut end = i;
        while end > start && self.is_blank(end - 1) {
            end -= 1;
        }
        let got = self.lines.get(start..end).map(|ls| ls.iter().map(|l| l.text).collect()).unwrap_or_default();
        (got, end)
    }
}

/// A parsed story: the crash and the stream index just after its last line.
struct Story {
    crash: Crash,
    next: usize,
}

impl Crash {
    fn new(runtime: Runtime, kind: impl Into<String>, value: impl Into<String>) -> Self {
        Crash {
            runtime,
            kind: kind.into(),
            value: value.into(),
            thread: None,
            frames: Vec::new(),
            chained: Vec::new(),
            report_file: None,
            first_line: 0,
            last_line: 0,
        }
    }

    /// Sets `first_line`/`last_line` from stream indices `first..next`.
    fn span(mut self, cx: &Ctx<'_, '_>, first: usize, next: usize) -> Self {
        self.first_line = cx.idx(first);
        self.last_line = cx.idx(next.saturating_sub(1).max(first));
        self
    }
}

fn is_absolute(path: &str) -> bool {
    path.starts_with('/')
        || path.starts_with('\\')
        || (path.len() > 2 && path.as_bytes().get(1) == Some(&b':') && path.as_bytes()[0].is_ascii_alphabetic())
}

impl Frame {
    fn with_path(mut self, path: &str) -> Self {
        if !path.is_empty() {
            self.filename = Some(path.to_owned());
            if is_absolute(path) {
                self.abs_path = Some(path.to_owned());
            }
        }
        self
    }
}

/// Parses a captured decimal number; absent or out-of-range yields `None`.
fn num(m: Option<regex::Match<'_>>) -> Option<u32> {
    m.and_then(|m| m.as_str().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_patterns_compile() {
        // Forces every lazily compiled pattern so a typo fails here, not in
        // production.
        LazyLock::force(&STARTS);
        LazyLock::force(&ANSI);
        rust::force_patterns();
        go::force_patterns();
        python::force_patterns();
        java::force_patterns();
        jvm::force_patterns();
        node::force_patterns();
        native::force_patterns();
    }

    #[test]
    fn normalise_strips_cr_and_colour() {
        assert_eq!(normalise("abc\r"), "abc");
        assert_eq!(normalise("\x1b[1;31mValueError\x1b[0m: x"), "ValueError: x");
    }

    #[test]
    fn continuation_caps() {
        let texts: Vec<String> = (0..10).map(|i| format!("l{i}")).collect();
        let lines: Vec<Line<'_>> = texts.iter().enumerate().map(|(idx, t)| Line { idx, text: t }).collect();
        let cx = Ctx { lines: &lines, stderr: true, floor: 0 };
        let (got, next) = cx.continuation(1, 3, |_| false);
        assert!(got.is_empty());
        assert_eq!(next, 1);
        let (got, next) = cx.continuation(1, 20, |t| t == "l4");
        assert_eq!(got, ["l1", "l2", "l3"]);
        assert_eq!(next, 4);
    }
}
