//! Native code: C++ `std::terminate` messages and sanitizer reports.
//!
//! Shapes (GCC 12 / libstdc++ / compiler-rt as shipped with GCC; clang's
//! compiler-rt prints the same, plus `(BuildId: …)` after module offsets):
//!
//! ```text
//! terminate called after throwing an instance of 'std::runtime_error'
//!   what():  bad config
//! libc++abi: terminating due to uncaught exception of type std::runtime_error: bad config
//!
//! =================================================================
//! ==15352==ERROR: AddressSanitizer: heap-use-after-free on address 0x6020… at pc 0x… bp 0x… sp 0x…
//! READ of size 4 at 0x602000000014 thread T0
//!     #0 0x564a55a421cf in read_refs /src/uaf.c:5
//!     #4 0x564a55a420c0 in _start (/build/uaf+0x10c0)
//! freed by thread T0 here: …                 <- further stacks: consumed, not reported
//! SUMMARY: AddressSanitizer: heap-use-after-free /src/uaf.c:5 in read_refs
//! Shadow bytes around the buggy address: …
//! ==15352==ABORTING
//!
//! ==15381==ERROR: LeakSanitizer: detected memory leaks
//! Direct leak of 6 byte(s) in 1 object(s) allocated from: …
//! SUMMARY: AddressSanitizer: 6 byte(s) leaked in 1 allocation(s).
//!
//! WARNING: ThreadSanitizer: data race (pid=15388)
//!     #0 bump /src/race.c:7 (race+0x11d0)    <- TSan frames: no address, no "in"
//! SUMMARY: ThreadSanitizer: data race /src/race.c:7 in bump
//!
//! signed_overflow.c:4:65: runtime error: signed integer overflow: … <- UBSan
//!     #0 0x5604fe39b180 in add_credit /src/signed_overflow.c:4       <- print_stacktrace=1
//! ```
//!
//! The first stack of a report is the one that went wrong (the bad access,
//! the leaked allocation, the racing access); it becomes the crash's frames.

use std::sync::LazyLock;

use regex::{Captures, Regex};

use super::{Crash, Ctx, Frame, Runtime, Story, num, re};

pub(super) const CPP_GNU: &str = r"^terminate called after throwing an instance of '(?P<type>.*)'$";
pub(super) const CPP_GNU_OTHER: &str = r"^terminate called (?:without an active exception|recursively)$";
pub(super) const CPP_LIBCXX: &str =
    r"^libc\+\+abi(?:\.dylib)?: terminating(?: (?:due to|with) uncaught exception of type (?P<rest>.+))?$";
pub(super) const SAN_ERROR: &str = r"^==(?P<pid>\d+)==ERROR: (?P<san>AddressSanitizer|HWAddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|ThreadSanitizer): (?P<desc>.*)$";
pub(super) const SAN_DEADLY: &str =
    r"^(?:AddressSanitizer|HWAddressSanitizer|UndefinedBehaviorSanitizer|ThreadSanitizer|LeakSanitizer):DEADLYSIGNAL$";
pub(super) const TSAN_WARNING: &str = r"^WARNING: ThreadSanitizer: (?P<desc>.*?)(?: \(pid=\d+\))?$";
pub(super) const UBSAN: &str = r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?P<col>\d+): runtime error: (?P<msg>.*)$";

struct Patterns {
    gnu: Regex,
    gnu_other: Regex,
    libcxx: Regex,
    what: Regex,
    error: Regex,
    deadly: Regex,
    tsan: Regex,
    ubsan: Regex,
    separator: Regex,
    summary: Regex,
    aborting: Regex,
    asan_frame: Regex,
    tsan_frame: Regex,
    access_thread: Regex,
    pc_thread: Regex,
    tsan_thread: Regex,
    tsan_reported: Regex,
    leak: Regex,
}

static RE: LazyLock<Patterns> = LazyLock::new(|| Patterns {
    gnu: re(CPP_GNU),
    gnu_other: re(CPP_GNU_OTHER),
    libcxx: re(CPP_LIBCXX),
    what: re(r"^  what\(\):  (?P<msg>.*)$"),
    error: re(SAN_ERROR),
    deadly: re(SAN_DEADLY),
    tsan: re(TSAN_WARNING),
    ubsan: re(UBSAN),
    separator: re(r"^={10,}$"),
    summary: re(r"^SUMMARY: (?P<san>\w+): (?P<desc>.*)$"),
    aborting: re(r"^==\d+==ABORTING$"),
    // `#3 0x55… in _start (/build/uaf+0x10c0)`, `#1 0x7f… (/lib/libc.so.6+0x271ca) (BuildId: …)`,
    // `#0 0x7f… in operator delete[](void*) ../../src/asan_new_delete.cpp:155`.
    // The function is lazy so it stops before the trailing location.
    asan_frame: re(
        r"^\s*#(?P<n>\d+) (?P<addr>0x[0-9a-fA-F]+)(?: in (?P<func>.+?))?(?: (?P<file>[^\s()][^\s]*?):(?P<line>\d+)(?::(?P<col>\d+))?| \((?P<pkg>[^()]+?)\+(?P<off>0x[0-9a-fA-F]+)\))?(?: \(BuildId: [0-9a-fA-F]+\))?\s*$",
    ),
    // `#0 bump /src/race.c:7 (race+0x11d0)`, `#1 <null> <null> (libc.so.6+0x…)`.
    tsan_frame: re(
        r"^\s*#(?P<n>\d+) (?P<func>.+?) (?:(?P<file>[^\s()][^\s]*?):(?P<line>\d+)(?::(?P<col>\d+))?|<null>) \((?P<pkg>[^()]+?)\+(?P<off>0x[0-9a-fA-F]+)\)(?: \(BuildId: [0-9a-fA-F]+\))?\s*$",
    ),
    access_thread: re(r"^(?:READ|WRITE) of size \d+ at 0x[0-9a-fA-F]+ thread (?P<t>T\d+)"),
    pc_thread: re(r"\(pc 0x[0-9a-fA-F]+ bp 0x[0-9a-fA-F]+ sp 0x[0-9a-fA-F]+ (?P<t>T\d+)\)$"),
    tsan_thread: re(r"^\s+\S.* of size \d+ at 0x[0-9a-fA-F]+ by (?:thread (?P<t>T\d+)|(?P<main>main thread))"),
    tsan_reported: re(r"^ThreadSanitizer: reported \d+ warnings?$"),
    leak: re(r"^(?P<what>(?:Direct|Indirect) leak of .*) allocated from:$"),
});

#[cfg(test)]
pub(super) fn force_patterns() {
    LazyLock::force(&RE);
}

/// `terminate called…` (libstdc++) or `libc++abi: terminating…` (libc++).
pub(super) fn parse_cpp(cx: &Ctx<'_, '_>, at: usize) -> Option<Story> {
    let text = cx.text(at)?;
    let (kind, value, next) = if let Some(c) = RE.gnu.captures(text) {
        // `what():` is printed only for std::exception subclasses.
        match cx.text(at + 1).and_then(|t| RE.what.captures(t)) {
            Some(w) => (c["type"].to_owned(), w["msg"].to_owned(), at + 2),
            None => (c["type"].to_owned(), String::new(), at + 1),
        }
    } else if RE.gnu_other.is_match(text) {
        ("std::terminate".to_owned(), text.to_owned(), at + 1)
    } else {
        let c = RE.libcxx.captures(text)?;
        match c.name("rest").map(|m| m.as_str()) {
            // The type may contain `::` but not `: `, which separates the message.
            Some(rest) => match rest.split_once(": ") {
                Some((ty, msg)) => (ty.to_owned(), msg.to_owned(), at + 1),
                None => (rest.to_owned(), String::new(), at + 1),
            },
            None => ("std::terminate".to_owned(), text.to_owned(), at + 1),
        }
    };
    let crash = Crash::new(Runtime::Cpp, kind, value);
    Some(Story { crash: crash.span(cx, at, next), next })
}

/// Longest sanitizer report body we read looking for its `SUMMARY:` line.
const REPORT_CAP: usize = 600;
/// Lines after `SUMMARY:` (the shadow-byte map) we read looking for `ABORTING`.
const TRAILER_CAP: usize = 60;

/// A `==PID==ERROR: XSanitizer:` report (with the `===…` rule and
/// `DEADLYSIGNAL` lines before it) or a ThreadSanitizer `WARNING:`.
pub(super) fn parse_sanitizer(cx: &Ctx<'_, '_>, at: usize) -> Option<Story> {
    // `DEADLYSIGNAL` lines (one per thread that caught the signal) come
    // before the `=====` rule and the `ERROR:` line.
    let mut head = at;
    while cx.text(head).is_some_and(|t| RE.deadly.is_match(t)) {
        head += 1;
    }
    if head > at && cx.text(head).is_some_and(|t| RE.separator.is_match(t)) {
        head += 1;
    }
    let text = cx.text(head)?;
    let (runtime, desc) = if let Some(c) = RE.error.captures(text) {
        (runtime_of(&c["san"]), c["desc"].to_owned())
    } else {
        let c = RE.tsan.captures(text)?;
        (Runtime::ThreadSanitizer, c["desc"].to_owned())
    };
    // Include the `=====` rule printed just before, unless an earlier story
    // already owns it.
    let mut first = at;
    if first > cx.floor && cx.text(first - 1).is_some_and(|t| RE.separator.is_match(t)) {
        first -= 1;
    }

    let body = scan_body(cx, head + 1);
    let summary = body.summary.as_ref();
    let mut kind = match (runtime, summary) {
        (Runtime::LeakSanitizer, _) => "detected memory leaks".to_owned(),
        (Runtime::ThreadSanitizer, _) => desc.clone(),
        (_, Some((_, s))) if !s.starts_with(|c: char| c.is_ascii_digit()) => first_word(s),
        _ => first_word(&desc),
    };
    if kind.is_empty() {
        kind = first_word(&desc);
    }
    let value = match (runtime, summary) {
        (Runtime::LeakSanitizer, Some((_, s))) => s.clone(),
        (Runtime::LeakSanitizer, None) => body.leak.clone().unwrap_or(desc),
        (Runtime::ThreadSanitizer, Some((_, s))) => s.clone(),
        _ => desc,
    };
    let thread = body.thread.clone().or_else(|| RE.pc_thread.captures(text).map(|c| c["t"].to_owned()));
    let mut crash = Crash::new(runtime, kind, value);
    crash.thread = thread;
    crash.frames = body.frames;
    Some(Story { crash: crash.span(cx, first, body.next), next: body.next })
}

/// What a report body yielded.
struct Body {
    frames: Vec<Frame>,
    thread: Option<String>,
    /// `(sanitizer, description)` from the `SUMMARY:` line.
    summary: Option<(String, String)>,
    leak: Option<String>,
    next: usize,
}

/// Reads a report body from `start`: the first stack, the thread, the
/// `SUMMARY:` line and what follows it up to `==PID==ABORTING`.
fn scan_body(cx: &Ctx<'_, '_>, start: usize) -> Body {
    let mut body = Body { frames: Vec::new(), thread: None, summary: None, leak: None, next: start };
    let mut in_first_stack = false;
    let mut first_stack_done = false;
    let mut last_useful = start;
    let mut i = start;
    while let Some(t) = cx.text(i) {
        if i - start > REPORT_CAP || (i > start && (RE.error.is_match(t) || RE.tsan.is_match(t))) {
            break;
        }
        if let Some(c) = RE.summary.captures(t) {
            body.summary = Some((c["san"].to_owned(), c["desc"].to_owned()));
            last_useful = i + 1;
            break;
        }
        if let Some(f) = parse_frame(t) {
            if !first_stack_done {
                in_first_stack = true;
                body.frames.push(f);
            }
            last_useful = i + 1;
        } else {
            if in_first_stack {
                in_first_stack = false;
                first_stack_done = true;
            }
            if body.thread.is_none() {
                if let Some(c) = RE.access_thread.captures(t) {
                    body.thread = Some(c["t"].to_owned());
                } else if let Some(c) = RE.tsan_thread.captures(t) {
                    body.thread = Some(c.name("t").map_or("main thread".to_owned(), |m| m.as_str().to_owned()));
                }
            }
            if body.leak.is_none()
                && let Some(c) = RE.leak.captures(t)
            {
                body.leak = Some(c["what"].to_owned());
            }
            if super::is_strong_start(t) {
                break;
            }
        }
        i += 1;
    }
    body.next = last_useful;
    if body.summary.is_some() {
        body.next = trailer_end(cx, last_useful);
    }
    body.frames.reverse();
    body
}

/// After `SUMMARY:`: ASan prints the shadow map and `==PID==ABORTING`; TSan a
/// closing rule and, at exit, `ThreadSanitizer: reported N warnings`.
fn trailer_end(cx: &Ctx<'_, '_>, from: usize) -> usize {
    for k in from..from + TRAILER_CAP {
        match cx.text(k) {
            Some(t) if RE.aborting.is_match(t) => return k + 1,
            Some(t) if super::is_strong_start(t) => break,
            Some(_) => {}
            None => break,
        }
    }
    let mut end = from;
    if cx.text(end).is_some_and(|t| RE.separator.is_match(t)) {
        end += 1;
    }
    if cx.text(end).is_some_and(|t| RE.tsan_reported.is_match(t)) {
        end += 1;
    }
    end
}

fn runtime_of(san: &str) -> Runtime {
    match san {
        "LeakSanitizer" => Runtime::LeakSanitizer,
        "UndefinedBehaviorSanitizer" => Runtime::UndefinedBehaviorSanitizer,
        "ThreadSanitizer" => Runtime::ThreadSanitizer,
        _ => Runtime::AddressSanitizer,
    }
}

/// The report's kind from a description: `heap-use-after-free on address…`
/// → `heap-use-after-free`; `attempting double-free on…` → `double-free`.
fn first_word(desc: &str) -> String {
    let mut words = desc.split_whitespace();
    match words.next() {
        Some("attempting") => words.next().unwrap_or("attempting").to_owned(),
        Some(w) => w.trim_end_matches(':').to_owned(),
        None => String::new(),
    }
}

/// Parses a sanitizer stack frame in either the ASan/LSan/UBSan layout or
/// the TSan layout.
fn parse_frame(text: &str) -> Option<Frame> {
    if let Some(c) = RE.asan_frame.captures(text) {
        return Some(build_frame(&c, c.name("addr").map(|m| m.as_str().to_owned())));
    }
    RE.tsan_frame.captures(text).map(|c| build_frame(&c, None))
}

fn build_frame(c: &Captures<'_>, addr: Option<String>) -> Frame {
    let func = c.name("func").map(|m| m.as_str()).filter(|f| *f != "<null>");
    let mut f = Frame {
        function: func.map(str::to_owned),
        package: c.name("pkg").map(|m| m.as_str().to_owned()),
        lineno: num(c.name("line")),
        colno: num(c.name("col")),
        instruction_addr: addr,
        ..Frame::default()
    };
    if let Some(file) = c.name("file") {
        f = f.with_path(file.as_str());
    }
    f.in_app = in_app(&f);
    f
}

/// Sanitizer runtime, libc start-up and system libraries are not the app.
fn in_app(f: &Frame) -> bool {
    const FUNCS: [&str; 10] = [
        "__interceptor_",
        "__asan",
        "__lsan",
        "__ubsan",
        "__tsan",
        "__sanitizer",
        "__libc_start",
        "_start",
        "operator new",
        "operator delete",
    ];
    if f.function.as_deref().is_some_and(|func| FUNCS.iter().any(|p| func.starts_with(p)) || func == "pthread_create") {
        return false;
    }
    if f.filename.as_deref().is_some_and(|p| {
        p.contains("/libsanitizer/") || p.contains("compiler-rt/") || p.contains("../sysdeps/") || p.contains("../csu/")
    }) {
        return false;
    }
    if f.filename.is_none()
        && f.package.as_deref().is_some_and(|p| p.starts_with("/lib") || p.starts_with("/usr/lib") || p.contains(".so"))
    {
        return false;
    }
    true
}

/// UBSan: `file:line:col: runtime error: message`, optionally followed by a
/// stack (`UBSAN_OPTIONS=print_stacktrace=1`) and a `SUMMARY:` line.
pub(super) fn parse_ubsan(cx: &Ctx<'_, '_>, at: usize) -> Option<Story> {
    let c = RE.ubsan.captures(cx.text(at)?)?;
    let mut i = at + 1;
    let mut frames = Vec::new();
    while let Some(f) = cx.text(i).and_then(parse_frame) {
        frames.push(f);
        i += 1;
    }
    frames.reverse();
    let mut kind = "undefined-behavior".to_owned();
    let k = cx.skip_blank(i);
    if let Some(s) =
        cx.text(k).and_then(|t| RE.summary.captures(t)).filter(|s| &s["san"] == "UndefinedBehaviorSanitizer")
    {
        kind = first_word(&s["desc"]);
        i = k + 1;
    }
    if frames.is_empty() {
        let mut f =
            Frame { lineno: num(c.name("line")), colno: num(c.name("col")), ..Frame::default() }.with_path(&c["file"]);
        f.in_app = true;
        frames.push(f);
    }
    let mut crash = Crash::new(Runtime::UndefinedBehaviorSanitizer, kind, &c["msg"]);
    crash.frames = frames;
    Some(Story { crash: crash.span(cx, at, i), next: i })
}

/// A report whose `ERROR:` head was evicted: stack frames at the very start
/// of the stream, and a `SUMMARY:` line to tell which sanitizer and what.
pub(super) fn parse_headless_sanitizer(cx: &Ctx<'_, '_>) -> Option<Story> {
    let start = (0..3.min(cx.lines.len())).find(|&i| cx.text(i).and_then(parse_frame).is_some())?;
    let body = scan_body(cx, start);
    let (san, desc) = body.summary.clone()?;
    let (runtime, kind, value) = if desc.contains("leaked in") {
        (Runtime::LeakSanitizer, "detected memory leaks".to_owned(), desc)
    } else {
        let runtime = runtime_of(&san);
        let kind = match runtime {
            Runtime::ThreadSanitizer => desc.split(" /").next().unwrap_or_default().to_owned(),
            _ => first_word(&desc),
        };
        (runtime, kind, String::new())
    };
    let mut crash = Crash::new(runtime, kind, value);
    crash.thread = body.thread;
    crash.frames = body.frames;
    Some(Story { crash: crash.span(cx, start, body.next), next: body.next })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asan_frames() {
        let f = parse_frame("    #0 0x7f32828b76a8 in operator delete[](void*) ../../../../src/libsanitizer/asan/asan_new_delete.cpp:155").unwrap();
        assert_eq!(f.function.as_deref(), Some("operator delete[](void*)"));
        assert_eq!(f.lineno, Some(155));
        assert!(!f.in_app);
        let f = parse_frame("    #4 0x564a55a420c0 in _start (/tmp/sanbuild/uaf+0x10c0)").unwrap();
        assert_eq!((f.function.as_deref(), f.package.as_deref()), (Some("_start"), Some("/tmp/sanbuild/uaf")));
        let f = parse_frame("    #1 0x7f0 (/lib/x86_64-linux-gnu/libc.so.6+0x271ca) (BuildId: abcdef)").unwrap();
        assert_eq!((f.function, f.package.as_deref()), (None, Some("/lib/x86_64-linux-gnu/libc.so.6")));
        let f = parse_frame(
            "    #2 0x55 in (anonymous namespace)::run(std::vector<int, std::allocator<int> > const&) /src/a.cc:9:3",
        )
        .unwrap();
        assert_eq!(
            f.function.as_deref(),
            Some("(anonymous namespace)::run(std::vector<int, std::allocator<int> > const&)")
        );
        assert_eq!((f.filename.as_deref(), f.lineno, f.colno), (Some("/src/a.cc"), Some(9), Some(3)));
    }

    #[test]
    fn tsan_frames() {
        let f = parse_frame("    #0 bump /src/race.c:7 (race+0x11d0)").unwrap();
        assert_eq!((f.function.as_deref(), f.lineno, f.package.as_deref()), (Some("bump"), Some(7), Some("race")));
        let f = parse_frame("    #1 <null> <null> (libc.so.6+0x8b0a3)").unwrap();
        assert_eq!(f.function, None);
    }

    #[test]
    fn kinds() {
        assert_eq!(first_word("attempting double-free on 0x6020 in thread T0:"), "double-free");
        assert_eq!(first_word("SEGV on unknown address 0x000000000000"), "SEGV");
    }
}
