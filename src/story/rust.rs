//! Rust: the default panic hook's output, stack overflows and aborts.
//!
//! Shapes, as printed by std's default hook:
//!
//! ```text
//! thread 'worker-7' (7612) panicked at src/lib.rs:1:30:   <- 1.95+: OS thread id
//! thread 'main' panicked at src/main.rs:2:5:              <- 1.73+
//! index out of bounds: the len is 3 but the index is 10   <- message, may span lines
//! note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
//!
//! thread 'main' panicked at 'msg', src/main.rs:2:5        <- before 1.73
//!
//! stack backtrace:                                        <- RUST_BACKTRACE=1
//!    3: p::inner
//!              at ./p.rs:1:30
//!   15:     0x564c2fbf8fde - <p::main::D as core::ops::drop::Drop>::drop::he801f255e0a01a61
//!                                at /tmp/rp/p.rs:17:72    <- RUST_BACKTRACE=full
//! note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.
//!
//! thread 'main' (7627) has overflowed its stack
//! fatal runtime error: stack overflow, aborting
//! memory allocation of 1099511627776 bytes failed        <- default OOM handler, then abort
//! thread caused non-unwinding panic. aborting.            <- panic during unwinding (1.71+)
//! thread panicked while processing panic. aborting.       <- older
//! ```

use std::sync::LazyLock;

use regex::Regex;

use super::{Crash, Ctx, Frame, Runtime, Story, num, re};

pub(super) const HEADER_NEW: &str =
    r"^thread '(?P<name>.*)'(?: \((?P<tid>\d+)\))? panicked at (?P<file>.+):(?P<line>\d+):(?P<col>\d+):$";
pub(super) const HEADER_OLD: &str = r"^thread '(?P<name>.*?)'(?: \((?P<tid>\d+)\))? panicked at '(?P<rest>.*)$";
pub(super) const OVERFLOW: &str = r"^thread '(?P<name>.*)'(?: \((?P<tid>\d+)\))? has overflowed its stack$";
pub(super) const FATAL: &str = r"^fatal runtime error: (?P<msg>.*?)(?:, aborting)?$";
pub(super) const OOM: &str = r"^memory allocation of (?P<bytes>\d+) bytes failed$";
pub(super) const ABORT: &str =
    r"^thread (?:'.*' )?(?:caused non-unwinding panic|panicked while (?:processing panic|panicking))\. aborting\.$";

struct Patterns {
    header_new: Regex,
    header_old: Regex,
    /// End of an old-style quoted message: `…', src/main.rs:2:5`.
    old_tail: Regex,
    overflow: Regex,
    fatal: Regex,
    oom: Regex,
    abort: Regex,
    note: Regex,
    backtrace: Regex,
    frame: Regex,
    at: Regex,
    omitted: Regex,
    hash: Regex,
    disambiguator: Regex,
}

static RE: LazyLock<Patterns> = LazyLock::new(|| Patterns {
    header_new: re(HEADER_NEW),
    header_old: re(HEADER_OLD),
    old_tail: re(r"^(?P<msg>(?s:.*))', (?P<file>.+?):(?P<line>\d+)(?::(?P<col>\d+))?$"),
    overflow: re(OVERFLOW),
    fatal: re(FATAL),
    oom: re(OOM),
    abort: re(ABORT),
    note: re(r"^note: run with `RUST_BACKTRACE=1`"),
    backtrace: re(r"^stack backtrace:$"),
    frame: re(r"^\s*(?P<n>\d+):\s+(?:(?P<addr>0x[0-9a-fA-F]+) - )?(?P<func>\S.*?)\s*$"),
    at: re(r"^\s+at (?P<file>.+?):(?P<line>\d+)(?::(?P<col>\d+))?$"),
    omitted: re(r"^note: Some details are omitted"),
    hash: re(r"::h[0-9a-f]{16}$"),
    disambiguator: re(r"\[[0-9a-f]{16}\]"),
});

#[cfg(test)]
pub(super) fn force_patterns() {
    LazyLock::force(&RE);
}

/// Longest panic message we attribute to a panic without a terminator.
const MESSAGE_CAP: usize = 64;
/// Most panics folded into one double-panic story. Real runs are two or
/// three long; the cap keeps a tail full of same-thread panics linear.
const RUN_CAP: usize = 8;

/// A single parsed panic, before double-panic folding.
struct Panic {
    crash: Crash,
    tid: Option<String>,
    /// Ended with `thread caused non-unwinding panic. aborting.` or similar.
    aborted: bool,
    next: usize,
}

/// Parses the panic at `at` and, when it is the start of a double panic (the
/// same thread panicking again while unwinding, ending in an abort), folds the
/// run into one story whose top-level crash is the last panic and whose
/// `chained` holds the earlier ones, nearest first.
pub(super) fn parse_panic_run(cx: &Ctx<'_, '_>, at: usize) -> Option<Story> {
    let first = parse_panic(cx, at)?;
    if first.aborted {
        return Some(Story { next: first.next, crash: first.crash });
    }
    let mut run = vec![first];
    while run.len() < RUN_CAP {
        let Some(prev) = run.last() else { break };
        let k = cx.skip_blank(prev.next);
        let Some(p) = parse_panic(cx, k) else { break };
        let same_thread = p.crash.thread == prev.crash.thread
            && match (&p.tid, &prev.tid) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
        if !same_thread {
            break;
        }
        let aborted = p.aborted;
        run.push(p);
        if aborted {
            break;
        }
    }
    if run.len() < 2 || !run.last().is_some_and(|p| p.aborted) {
        // Not a double panic: report only the first; the scan will pick up
        // the others as stories of their own.
        let first = run.swap_remove(0);
        return Some(Story { next: first.next, crash: first.crash });
    }
    let last = run.pop()?;
    let mut top = last.crash;
    top.chained = run.into_iter().rev().map(|p| p.crash).collect();
    top.first_line = top.chained.last().map_or(top.first_line, |c| c.first_line);
    Some(Story { crash: top, next: last.next })
}

fn parse_panic(cx: &Ctx<'_, '_>, at: usize) -> Option<Panic> {
    let text = cx.text(at)?;
    let (name, tid, value, location, mut i) = if let Some(c) = RE.header_new.captures(text) {
        let loc = location_frame(&c["file"], num(c.name("line")), num(c.name("col")));
        let is_terminator = |t: &str| RE.note.is_match(t) || RE.backtrace.is_match(t) || RE.abort.is_match(t);
        let (msg, mut next) = cx.continuation(at + 1, MESSAGE_CAP, is_terminator);
        let value = if !msg.is_empty() {
            msg.join("\n")
        } else if let Some(t) = cx.text(at + 1).filter(|t| !t.trim().is_empty() && !is_terminator(t)) {
            // No terminator within the cap, or the message itself looks like
            // another header: keep the first line only.
            next = at + 2;
            t.to_owned()
        } else {
            String::new()
        };
        (c["name"].to_owned(), c.name("tid").map(|m| m.as_str().to_owned()), value, loc, next)
    } else {
        let c = RE.header_old.captures(text)?;
        // The quoted message may span lines; it ends on the line that closes
        // the quote with `', file:line[:col]`.
        let mut joined = c["rest"].to_owned();
        let mut j = at + 1;
        let tail = loop {
            if let Some(t) = RE.old_tail.captures(&joined) {
                let loc = location_frame(&t["file"], num(t.name("line")), num(t.name("col")));
                break Some((t["msg"].to_owned(), loc));
            }
            match cx.text(j) {
                Some(t) if j - at <= MESSAGE_CAP && !super::is_strong_start(t) => {
                    joined.push('\n');
                    joined.push_str(t);
                    j += 1;
                }
                _ => break None,
            }
        };
        let (value, loc) = tail?;
        (c["name"].to_owned(), c.name("tid").map(|m| m.as_str().to_owned()), value, loc, j)
    };

    let mut crash = Crash::new(Runtime::Rust, "panic", value);
    crash.thread = Some(name);
    if cx.text(i).is_some_and(|t| RE.note.is_match(t)) {
        i += 1;
    } else if cx.text(i).is_some_and(|t| RE.backtrace.is_match(t)) {
        let (frames, next) = parse_backtrace(cx, i + 1);
        crash.frames = frames;
        i = next;
    }
    if crash.frames.is_empty() {
        // Without a backtrace the header's location is the best frame there is.
        crash.frames.push(location);
    }
    let aborted = cx.text(i).is_some_and(|t| RE.abort.is_match(t));
    if aborted {
        i += 1;
    }
    Some(Panic { crash: crash.span(cx, at, i), tid, aborted, next: i })
}

fn location_frame(file: &str, line: Option<u32>, col: Option<u32>) -> Frame {
    let mut f = Frame { lineno: line, colno: col, ..Frame::default() }.with_path(file);
    f.in_app = !library_path(file);
    f
}

/// Parses `stack backtrace:` frames from `start`; returns them oldest first
/// and the index after the backtrace.
fn parse_backtrace(cx: &Ctx<'_, '_>, start: usize) -> (Vec<Frame>, usize) {
    let mut frames: Vec<Frame> = Vec::new();
    let mut i = start;
    while let Some(t) = cx.text(i) {
        if let Some(c) = RE.at.captures(t) {
            // `at` belongs to the frame above it; a stray one is skipped.
            if let Some(f) = frames.last_mut().filter(|f| f.filename.is_none()) {
                let func = f.function.clone().unwrap_or_default();
                *f = Frame {
                    lineno: num(c.name("line")),
                    colno: num(c.name("col")),
                    in_app: in_app(&func, Some(&c["file"])),
                    ..f.clone()
                }
                .with_path(&c["file"]);
            }
        } else if let Some(c) = RE.frame.captures(t) {
            let func = clean_function(&c["func"]);
            frames.push(Frame {
                in_app: in_app(&func, None),
                function: Some(func),
                instruction_addr: c.name("addr").map(|m| m.as_str().to_owned()),
                ..Frame::default()
            });
        } else if RE.omitted.is_match(t) {
            i += 1;
            break;
        } else {
            break;
        }
        i += 1;
    }
    frames.reverse();
    (frames, i)
}

/// Strips the legacy-mangling hash (`::h0123…`) and v0 crate disambiguators
/// (`std[e28293b1aa0f68bd]`) so frames group the same across builds.
fn clean_function(func: &str) -> String {
    let func = RE.hash.replace(func, "");
    RE.disambiguator.replace_all(&func, "").into_owned()
}

fn library_path(file: &str) -> bool {
    ["/rustc/", "/.cargo/registry/", "/.cargo/git/", "/.rustup/", "/sysdeps/", "../csu/", "/library/std/src/"]
        .iter()
        .any(|p| file.contains(p))
}

/// Frames of std and the C runtime are not the application's. `<T as Trait>`
/// impls are judged by the type they are for.
fn in_app(func: &str, file: Option<&str>) -> bool {
    if file.is_some_and(library_path) {
        return false;
    }
    let inner = func.trim_start_matches(['<', '&']);
    let inner = inner.strip_prefix("dyn ").unwrap_or(inner);
    let inner = inner.strip_prefix("mut ").unwrap_or(inner);
    const LIB: [&str; 9] = [
        "std::",
        "core::",
        "alloc::",
        "__rustc::",
        "backtrace::",
        "panic_unwind::",
        "rust_begin_unwind",
        "__libc_",
        "_start",
    ];
    if LIB.iter().any(|p| inner.starts_with(p))
        || matches!(func, "main" | "<unknown>" | "start_thread" | "clone" | "clone3")
    {
        return false;
    }
    true
}

/// `thread 'main' has overflowed its stack`, usually followed by
/// `fatal runtime error: stack overflow, aborting`.
pub(super) fn parse_overflow(cx: &Ctx<'_, '_>, at: usize) -> Option<Story> {
    let c = RE.overflow.captures(cx.text(at)?)?;
    let name = c["name"].to_owned();
    let mut crash = Crash::new(Runtime::Rust, "stack overflow", format!("thread '{name}' has overflowed its stack"));
    crash.thread = Some(name);
    let mut next = at + 1;
    if cx.text(next).is_some_and(|t| RE.fatal.is_match(t)) {
        next += 1;
    }
    Some(Story { crash: crash.span(cx, at, next), next })
}

/// A `fatal runtime error:` on its own (e.g. `Rust cannot catch foreign
/// exceptions`, or a stack overflow whose first line was evicted), or the
/// default allocation-error handler's `memory allocation of N bytes failed`.
pub(super) fn parse_fatal(cx: &Ctx<'_, '_>, at: usize) -> Option<Story> {
    let text = cx.text(at)?;
    let crash = match RE.fatal.captures(text) {
        Some(c) => Crash::new(Runtime::Rust, "fatal runtime error", &c["msg"]),
        None => {
            RE.oom.captures(text)?;
            Crash::new(Runtime::Rust, "out of memory", text)
        }
    };
    Some(Story { crash: crash.span(cx, at, at + 1), next: at + 1 })
}

/// An abort line whose panic was evicted from the ring.
pub(super) fn parse_lone_abort(cx: &Ctx<'_, '_>, at: usize) -> Option<Story> {
    let text = cx.text(at)?;
    let crash = Crash::new(Runtime::Rust, "panic", text);
    Some(Story { crash: crash.span(cx, at, at + 1), next: at + 1 })
}

/// A backtrace whose `thread '…' panicked at` header was evicted: frames at
/// the very start of the stream. Needs at least one numbered frame and one
/// `at` line (or the closing note) so a numbered list in a log is not taken
/// for a backtrace.
pub(super) fn parse_headless(cx: &Ctx<'_, '_>) -> Option<Story> {
    let start =
        (0..3.min(cx.lines.len())).find(|&i| cx.text(i).is_some_and(|t| RE.frame.is_match(t) || RE.at.is_match(t)))?;
    let (frames, next) = parse_backtrace(cx, start);
    let closed = cx.text(next.checked_sub(1)?).is_some_and(|t| RE.omitted.is_match(t));
    if frames.is_empty() || !(closed || frames.iter().any(|f| f.lineno.is_some())) {
        return None;
    }
    let mut crash = Crash::new(Runtime::Rust, "panic", "");
    crash.frames = frames;
    let mut end = next;
    if cx.text(end).is_some_and(|t| RE.abort.is_match(t)) {
        end += 1;
    }
    Some(Story { crash: crash.span(cx, start, end), next: end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_cleanup() {
        assert_eq!(clean_function("p::main::h5c88a7e8304aa465"), "p::main");
        assert_eq!(
            clean_function("std[e28293b1aa0f68bd]::panicking::begin_panic::<&str>"),
            "std::panicking::begin_panic::<&str>"
        );
    }

    #[test]
    fn in_app_guesses() {
        assert!(in_app("p::main", Some("./p.rs")));
        assert!(!in_app("core::panicking::panic_fmt", None));
        assert!(!in_app("<&dyn core::ops::function::Fn<()> as core::ops::function::FnOnce<()>>::call_once", None));
        assert!(in_app("<p::main::D as core::ops::drop::Drop>::drop", None));
        assert!(!in_app("p::main", Some("/rustc/abc/library/core/src/ops/function.rs")));
    }
}
