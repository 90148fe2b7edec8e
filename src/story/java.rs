//! Java (and other JVM languages): uncaught exceptions as printed by
//! `Throwable.printStackTrace`.
//!
//! Shapes (JDK 17; the indentation below is a tab in real output):
//!
//! ```text
//! Exception in thread "main" java.lang.IllegalStateException: config broken
//!     at Crash.loadPort(Crash.java:17)
//!     at java.base/java.util.ArrayList.get(ArrayList.java:427)   <- module prefix (9+)
//!     at app//com.acme.Foo.bar(Foo.java:3)                       <- class loader prefix
//!     Suppressed: java.io.IOException: close failed              <- skipped, with its frames
//!         at …
//! Caused by: java.util.NoSuchElementException: no key port
//!     at Crash$Repo.get(Crash.java:8)
//!     ... 1 more                                                <- shared with the enclosing trace
//! ```
//!
//! A message may span lines; everything between the header and the first
//! `at` line is message. A story without the `Exception in thread` prefix
//! (a logged `printStackTrace`) is accepted only when frames follow it.

use std::sync::LazyLock;

use regex::Regex;

use super::{Crash, Ctx, Frame, Runtime, Story, re};

pub(super) const THREAD_HEADER: &str = r#"^Exception in thread "(?P<thread>.*)" (?P<type>[^\s:]+)(?:: ?(?P<msg>.*))?$"#;
pub(super) const BARE_HEADER: &str =
    r"^(?P<type>[\p{L}_$][\p{L}\p{N}_$]*(?:\.[\p{L}_$][\p{L}\p{N}_$]*)+)(?:: ?(?P<msg>.*))?$";

struct Patterns {
    thread_header: Regex,
    bare_header: Regex,
    caused: Regex,
    frame: Regex,
    more: Regex,
    nested: Regex,
}

static RE: LazyLock<Patterns> = LazyLock::new(|| Patterns {
    thread_header: re(THREAD_HEADER),
    bare_header: re(BARE_HEADER),
    caused: re(r"^Caused by: (?P<type>[^\s:]+)(?:: ?(?P<msg>.*))?$"),
    // `(?:[\w.@-]*/){0,2}` eats `java.base/` and `app//` but not the `/` of a
    // hidden lambda class such as `Foo$$Lambda$14/0x0000000800c03000`.
    frame: re(
        r"^\s+at (?:[\w.@-]*/){0,2}(?P<class>[^\s()/][^\s()]*)\.(?P<method>[^\s().]+)\((?P<source>[^()]*)\)(?:\s.*)?$",
    ),
    more: re(r"^\s+\.\.\. (?P<n>\d+) (?:more|common frames omitted)$"),
    // Suppressed exceptions and their causes are printed one tab deeper.
    nested: re(r"^\t(?:\t|Suppressed: |Caused by: )"),
});

#[cfg(test)]
pub(super) fn force_patterns() {
    LazyLock::force(&RE);
}

/// Message lines allowed between a header and its first frame.
const MESSAGE_CAP: usize = 64;
/// Same, for a header without `Exception in thread`, which is weaker evidence.
const BARE_MESSAGE_CAP: usize = 8;

/// One printed throwable: newest-first frames as printed, plus the number of
/// frames `... N more` says it shares with its enclosing throwable.
struct Block {
    crash: Crash,
    omitted: usize,
    next: usize,
}

pub(super) fn parse(cx: &Ctx<'_, '_>, at: usize) -> Option<Story> {
    let text = cx.text(at)?;
    let (thread, c, cap) = if let Some(c) = RE.thread_header.captures(text) {
        (Some(c["thread"].to_owned()), c, MESSAGE_CAP)
    } else {
        (None, RE.bare_header.captures(text)?, BARE_MESSAGE_CAP)
    };
    let msg = c.name("msg").map_or("", |m| m.as_str());
    let top = parse_block(cx, at, &c["type"], msg, cap);
    if thread.is_none() && top.crash.frames.is_empty() {
        return None;
    }
    let mut story = causes(cx, top);
    story.crash.thread = thread;
    Some(story)
}

/// Parses the message continuation and frames of a throwable whose header
/// (`Exception in thread…`, bare, or `Caused by:`) is at `at`.
fn parse_block(cx: &Ctx<'_, '_>, at: usize, kind: &str, msg: &str, cap: usize) -> Block {
    let mut value = msg.to_owned();
    // Message lines only count if a frame follows them; otherwise the header
    // stands alone (e.g. a throwable without a stack trace).
    let mut i = at + 1;
    let mut j = i;
    while j < at + 1 + cap
        && cx.text(j).is_some_and(|t| !RE.frame.is_match(t) && !RE.caused.is_match(t) && !super::is_strong_start(t))
    {
        j += 1;
    }
    if j > i && cx.text(j).is_some_and(|t| RE.frame.is_match(t)) {
        for k in i..j {
            value.push('\n');
            value.push_str(cx.text(k).unwrap_or_default());
        }
        i = j;
    }
    let (frames, omitted, next) = parse_frames(cx, i);
    let mut crash = Crash::new(Runtime::Java, kind, value);
    crash.frames = frames;
    Block { crash: crash.span(cx, at, next), omitted, next }
}

/// Frames newest first (reversed later), the `... N more` count, and the
/// index after the block.
fn parse_frames(cx: &Ctx<'_, '_>, start: usize) -> (Vec<Frame>, usize, usize) {
    let mut frames = Vec::new();
    let mut omitted = 0;
    let mut i = start;
    while let Some(t) = cx.text(i) {
        if RE.nested.is_match(t) {
            // A `Suppressed:` block (and its causes) printed one tab deeper:
            // part of the story, but not this throwable's frames.
        } else if let Some(c) = RE.frame.captures(t) {
            frames.push(frame(&c["class"], &c["method"], &c["source"]));
        } else if let Some(c) = RE.more.captures(t) {
            omitted = c["n"].parse().unwrap_or(0);
        } else {
            break;
        }
        i += 1;
    }
    (frames, omitted, i)
}

fn frame(class: &str, method: &str, source: &str) -> Frame {
    // `Crash.java:17`, `Crash.java`, `Unknown Source`, `Native Method`.
    let (file, line) = match source.rsplit_once(':') {
        Some((f, l)) => (Some(f), l.parse().ok()),
        None if source.contains('.') && !source.contains(' ') => (Some(source), None),
        None => (None, None),
    };
    let mut f = Frame {
        function: Some(method.to_owned()),
        module: Some(class.to_owned()),
        lineno: line,
        in_app: in_app(class),
        ..Frame::default()
    };
    if let Some(file) = file {
        f = f.with_path(file);
    }
    f
}

fn in_app(class: &str) -> bool {
    const LIB: [&str; 10] =
        ["java.", "javax.", "jdk.", "sun.", "com.sun.", "kotlin.", "kotlinx.", "scala.", "org.junit.", "groovy."];
    !LIB.iter().any(|p| class.starts_with(p))
}

/// Follows `Caused by:` blocks after `top`, completes each cause's frames
/// that `... N more` elided from its enclosing throwable, and returns the
/// story with causes nearest first in `chained`.
fn causes(cx: &Ctx<'_, '_>, top: Block) -> Story {
    let mut blocks = vec![top];
    while let Some(prev) = blocks.last() {
        let k = prev.next;
        let Some(c) = cx.text(k).and_then(|t| RE.caused.captures(t)) else { break };
        let msg = c.name("msg").map_or("", |m| m.as_str());
        let block = parse_block(cx, k, &c["type"], msg, MESSAGE_CAP);
        blocks.push(block);
    }
    // Frames are still newest first here: the elided frames are the oldest
    // `omitted` frames of the enclosing throwable, appended at the end.
    for n in 1..blocks.len() {
        let (done, rest) = blocks.split_at_mut(n);
        let (Some(outer), Some(inner)) = (done.last(), rest.first_mut()) else { continue };
        let shared = inner.omitted.min(outer.crash.frames.len());
        let from = outer.crash.frames.len() - shared;
        inner.crash.frames.extend_from_slice(&outer.crash.frames[from..]);
    }
    let next = blocks.last().map_or(0, |b| b.next);
    let mut crashes: Vec<Crash> = blocks
        .into_iter()
        .map(|b| {
            let mut c = b.crash;
            c.frames.reverse();
            c
        })
        .collect();
    let mut top = crashes.remove(0);
    top.last_line = crashes.last().map_or(top.last_line, |c| c.last_line);
    top.chained = crashes;
    Story { crash: top, next }
}

/// A trace whose header was evicted: `at` lines at the very start of the
/// stream (possibly after a few message lines), then any `Caused by:`.
pub(super) fn parse_headless(cx: &Ctx<'_, '_>) -> Option<Story> {
    let start = (0..3.min(cx.lines.len()))
        .find(|&i| cx.text(i).is_some_and(|t| RE.frame.is_match(t) || RE.caused.is_match(t)))?;
    // Starting on `Caused by:` leaves the top-level throwable with no frames.
    let (frames, omitted, next) = parse_frames(cx, start);
    let mut crash = Crash::new(Runtime::Java, "", "");
    crash.frames = frames;
    let top = Block { crash: crash.span(cx, start, next), omitted, next };
    Some(causes(cx, top))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sources() {
        let f = frame("Crash$Repo", "get", "Crash.java:8");
        assert_eq!((f.filename.as_deref(), f.lineno, f.in_app), (Some("Crash.java"), Some(8), true));
        let f = frame("java.lang.Thread", "run", "Native Method");
        assert_eq!((f.filename, f.lineno, f.in_app), (None, None, false));
        let f = frame("Foo", "bar", "Unknown Source");
        assert_eq!(f.filename, None);
    }

    #[test]
    fn frame_prefixes() {
        let c = RE.frame.captures("\tat java.base/java.util.ArrayList.get(ArrayList.java:427)").unwrap();
        assert_eq!((&c["class"], &c["method"]), ("java.util.ArrayList", "get"));
        let c = RE.frame.captures("\tat app//com.acme.Foo.bar(Foo.java:3)").unwrap();
        assert_eq!(&c["class"], "com.acme.Foo");
        let c = RE.frame.captures("\tat Crash$$Lambda$14/0x0000000800c03000.run(Unknown Source)").unwrap();
        assert_eq!(&c["class"], "Crash$$Lambda$14/0x0000000800c03000");
        let c = RE.frame.captures("\tat com.acme.Foo.<init>(Foo.java:3) ~[app.jar:1.0]").unwrap();
        assert_eq!(&c["method"], "<init>");
    }
}
