//! Python: tracebacks (with chained exceptions and exception groups),
//! compile-time `SyntaxError`s, and faulthandler's `Fatal Python error`.
//!
//! Shapes (CPython 3.11; 3.8–3.13 print the same skeleton):
//!
//! ```text
//! Traceback (most recent call last):
//!   File "/srv/app.py", line 10, in start
//!     load(cfg)
//!     ~~~~^^^^^                        <- 3.11+ carets, any number of code lines
//!   [Previous line repeated 996 more times]
//! KeyError: 'port'                     <- may continue on following lines
//!
//! The above exception was the direct cause of the following exception:
//! During handling of the above exception, another exception occurred:
//!
//!   File "/srv/bad.py", line 1         <- SyntaxError: no header, no "in"
//!     def f(:
//!           ^
//! SyntaxError: invalid syntax
//!
//! Fatal Python error: Segmentation fault
//!
//! Current thread 0x00007f1d… (most recent call first):
//!   File "/srv/app.py", line 4 in f    <- note: no comma before "in"
//! ```

use std::sync::LazyLock;

use regex::Regex;

use super::{Crash, Ctx, Frame, Line, Runtime, Story, num, re};

pub(super) const TRACEBACK: &str = r"^Traceback \(most recent call last\):$";
pub(super) const GROUP: &str = r"^  \+ Exception Group Traceback \(most recent call last\):$";
pub(super) const FATAL: &str = r"^Fatal Python error: (?P<msg>.*)$";
pub(super) const FILE_LINE: &str = r#"^  File "(?P<file>[^"]*)", line (?P<line>\d+)(?:, in (?P<func>.+))?$"#;

struct Patterns {
    traceback: Regex,
    fatal: Regex,
    file: Regex,
    code: Regex,
    repeated: Regex,
    exception: Regex,
    syntax: Regex,
    separator: Regex,
    fh_thread: Regex,
    fh_file: Regex,
    fh_other: Regex,
}

static RE: LazyLock<Patterns> = LazyLock::new(|| Patterns {
    traceback: re(TRACEBACK),
    fatal: re(FATAL),
    file: re(FILE_LINE),
    // Source and caret lines under a frame are indented by four spaces.
    code: re(r"^    "),
    repeated: re(r"^  \[Previous line repeated \d+ more times?\]$"),
    exception: re(r"^(?P<type>[^\W\d][\w.]*)(?:: ?(?P<msg>.*))?$"),
    syntax: re(r"^(?P<type>(?:[^\W\d]\w*\.)*(?:SyntaxError|IndentationError|TabError))(?:: ?(?P<msg>.*))?$"),
    separator: re(
        r"^(?:The above exception was the direct cause of the following exception:|During handling of the above exception, another exception occurred:)$",
    ),
    fh_thread: re(r"^(?:(?:Current thread|Thread) (?P<tid>0x[0-9a-fA-F]+) |Stack )\(most recent call first\):$"),
    fh_file: re(r#"^  File "(?P<file>[^"]*)", line (?P<line>\d+) in (?P<func>.+)$"#),
    fh_other: re(
        r"^(?:  <no Python frame>|Python runtime state: .*|Extension modules: .*|Garbage-collecting|  \.\.\.)$",
    ),
});

#[cfg(test)]
pub(super) fn force_patterns() {
    LazyLock::force(&RE);
}

const MESSAGE_CAP: usize = 20;

/// `Traceback (most recent call last):` and any chained tracebacks after it.
pub(super) fn parse_traceback(cx: &Ctx<'_, '_>, at: usize) -> Option<Story> {
    let first = parse_block(cx, at + 1, at);
    Some(chain(cx, first))
}

/// One traceback block: frames from `frames_at`, then the exception line.
/// `first` is where the block's story starts (its header, or its first frame
/// when headless). Never fails: a block cut short keeps what it has.
fn parse_block(cx: &Ctx<'_, '_>, frames_at: usize, first: usize) -> Story {
    let (frames, i) = parse_frames(cx, frames_at);
    let (mut crash, next) = match cx.text(i).and_then(|t| RE.exception.captures(t)) {
        Some(c) => {
            let mut value = c.name("msg").map_or(String::new(), |m| m.as_str().to_owned());
            let (more, mut next) =
                cx.continuation(i + 1, MESSAGE_CAP, |t| t.trim().is_empty() || RE.separator.is_match(t));
            // Lines running straight into another story's header are more
            // likely a restarted program's output than the message: Python
            // exits right after printing the traceback.
            if cx.text(next).is_some_and(super::is_strong_start) {
                next = i + 1;
            } else {
                for m in more {
                    value.push('\n');
                    value.push_str(m);
                }
            }
            (Crash::new(Runtime::Python, &c["type"], value), next.max(i + 1))
        }
        None => (Crash::new(Runtime::Python, "", ""), i),
    };
    crash.frames = frames;
    Story { crash: crash.span(cx, first, next), next }
}

/// Frames, oldest first as Python prints them, from `start`.
fn parse_frames(cx: &Ctx<'_, '_>, start: usize) -> (Vec<Frame>, usize) {
    let mut frames = Vec::new();
    let mut i = start;
    while let Some(t) = cx.text(i) {
        if let Some(c) = RE.file.captures(t) {
            frames.push(frame(&c["file"], num(c.name("line")), c.name("func").map(|m| m.as_str())));
        } else if !(RE.repeated.is_match(t) || (!frames.is_empty() && RE.code.is_match(t))) {
            break;
        }
        i += 1;
    }
    (frames, i)
}

fn frame(file: &str, line: Option<u32>, func: Option<&str>) -> Frame {
    let mut f = Frame { function: func.map(str::to_owned), lineno: line, ..Frame::default() }.with_path(file);
    f.in_app = in_app(file);
    f
}

fn in_app(file: &str) -> bool {
    let lib = file.contains("/site-packages/")
        || file.contains("/dist-packages/")
        || file.starts_with("<frozen ")
        || file.split('/').any(|part| {
            // `/usr/lib/python3.11/…`, `~/.pyenv/versions/3.11.7/lib/python3.11/…`
            part.strip_prefix("python").is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
                && file.contains("/lib/")
        });
    !lib
}

/// Follows `The above exception…`/`During handling…` separators after
/// `first` and folds the blocks: the last printed is the top-level crash, the
/// earlier ones become its `chained` causes, nearest first.
fn chain(cx: &Ctx<'_, '_>, first: Story) -> Story {
    let mut blocks = vec![first];
    while let Some(prev) = blocks.last() {
        let k = cx.skip_blank(prev.next);
        if !cx.text(k).is_some_and(|t| RE.separator.is_match(t)) {
            break;
        }
        let h = cx.skip_blank(k + 1);
        if !cx.text(h).is_some_and(|t| RE.traceback.is_match(t)) {
            break;
        }
        blocks.push(parse_block(cx, h + 1, h));
    }
    let Some(last) = blocks.pop() else {
        // Unreachable: `blocks` starts non-empty. Kept total for safety.
        return Story { crash: Crash::new(Runtime::Python, "", ""), next: 0 };
    };
    let mut top = last.crash;
    if let Some(root) = blocks.first() {
        top.first_line = root.crash.first_line;
    }
    top.chained = blocks.into_iter().rev().map(|b| b.crash).collect();
    Story { crash: top, next: last.next }
}

/// A `SyntaxError` raised while compiling the main script has no
/// `Traceback` header: just the location, the source, a caret and the error.
pub(super) fn parse_syntax_error(cx: &Ctx<'_, '_>, at: usize) -> Option<Story> {
    let c = RE.file.captures(cx.text(at)?)?;
    if c.name("func").is_some() {
        return None;
    }
    let mut i = at + 1;
    while i <= at + 4 && cx.text(i).is_some_and(|t| RE.code.is_match(t)) {
        i += 1;
    }
    let e = RE.syntax.captures(cx.text(i)?)?;
    let mut crash = Crash::new(Runtime::Python, &e["type"], e.name("msg").map_or("", |m| m.as_str()));
    crash.frames.push(frame(&c["file"], num(c.name("line")), None));
    let next = i + 1;
    Some(Story { crash: crash.span(cx, at, next), next })
}

/// Python 3.11+ exception groups: the outer traceback is printed with a
/// `  | ` margin, then each sub-exception in nested boxes. Only the outer
/// group is reported; the boxes are consumed.
pub(super) fn parse_group(cx: &Ctx<'_, '_>, at: usize) -> Option<Story> {
    let mut inner: Vec<Line<'_>> = Vec::new();
    let mut i = at + 1;
    while let Some(l) = cx.lines.get(i) {
        match l.text.strip_prefix("  | ") {
            Some(t) => inner.push(Line { idx: l.idx, text: t }),
            None => break,
        }
        i += 1;
    }
    let sub = Ctx { lines: &inner, stderr: cx.stderr, floor: 0 };
    let block = parse_block(&sub, 0, 0);
    if block.crash.kind.is_empty() {
        return None;
    }
    while cx.text(i).is_some_and(|t| t.starts_with("  +") || t.starts_with("    ")) {
        i += 1;
    }
    let mut crash = block.crash;
    crash.first_line = cx.idx(at);
    crash.last_line = cx.idx(i.saturating_sub(1));
    Some(Story { crash, next: i })
}

/// faulthandler's report: `Fatal Python error: Segmentation fault`, then one
/// block per thread, the crashing one first, most recent call first.
pub(super) fn parse_fatal(cx: &Ctx<'_, '_>, at: usize) -> Option<Story> {
    let c = RE.fatal.captures(cx.text(at)?)?;
    let mut crash = Crash::new(Runtime::Python, "Fatal Python error", &c["msg"]);
    let mut seen_thread = false;
    let mut i = at + 1;
    let mut end = at + 1;
    loop {
        let k = cx.skip_blank(i);
        let Some(t) = cx.text(k) else { break };
        if let Some(h) = RE.fh_thread.captures(t) {
            let mut frames = Vec::new();
            let mut j = k + 1;
            while let Some(f) = cx.text(j).and_then(|t| RE.fh_file.captures(t)) {
                frames.push(frame(&f["file"], num(f.name("line")), Some(&f["func"])));
                j += 1;
            }
            if !seen_thread {
                seen_thread = true;
                frames.reverse();
                crash.frames = frames;
                crash.thread = h.name("tid").map(|m| m.as_str().to_owned());
            }
            end = j;
        } else if RE.fh_other.is_match(t) {
            end = k + 1;
        } else {
            break;
        }
        i = end;
    }
    Some(Story { crash: crash.span(cx, at, end), next: end })
}

/// A traceback whose head was evicted: frames (possibly starting on a code
/// line) at the very start of the stream, ending in an exception line.
pub(super) fn parse_headless(cx: &Ctx<'_, '_>) -> Option<Story> {
    let mut start = 0;
    while start < 3 && cx.text(start).is_some_and(|t| RE.code.is_match(t) || RE.repeated.is_match(t)) {
        start += 1;
    }
    let c = RE.file.captures(cx.text(start)?)?;
    c.name("func")?;
    let block = parse_block(cx, start, start);
    if block.crash.kind.is_empty() {
        return None;
    }
    Some(chain(cx, block))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines<'s>(texts: &[&'s str]) -> Vec<Line<'s>> {
        texts.iter().enumerate().map(|(idx, text)| Line { idx, text }).collect()
    }

    #[test]
    fn message_does_not_run_into_the_next_story() {
        let ls = lines(&[
            "Traceback (most recent call last):",
            "  File \"/srv/a.py\", line 1, in <module>",
            "ValueError: bad",
            "worker booting",
            "Traceback (most recent call last):",
        ]);
        let cx = Ctx { lines: &ls, stderr: true, floor: 0 };
        let story = parse_traceback(&cx, 0).unwrap();
        assert_eq!(story.crash.value, "bad");
        assert_eq!((story.crash.last_line, story.next), (2, 3));

        let ls = lines(&[
            "Traceback (most recent call last):",
            "  File \"/srv/a.py\", line 1, in <module>",
            "ValueError: bad",
            "row 2",
            "",
            "During handling of the above exception, another exception occurred:",
            "",
            "Traceback (most recent call last):",
            "  File \"/srv/a.py\", line 3, in <module>",
            "KeyError: 'k'",
        ]);
        let cx = Ctx { lines: &ls, stderr: true, floor: 0 };
        let story = parse_traceback(&cx, 0).unwrap();
        assert_eq!(story.crash.chained[0].value, "bad\nrow 2");
        assert_eq!(story.crash.value, "'k'");
    }

    #[test]
    fn in_app_guesses() {
        assert!(in_app("/srv/app/main.py"));
        assert!(in_app("<string>"));
        assert!(!in_app("/usr/lib/python3.11/json/decoder.py"));
        assert!(!in_app("/root/.pyenv/versions/3.11.7/lib/python3.11/ctypes/__init__.py"));
        assert!(!in_app("/srv/venv/lib/python3.12/site-packages/requests/api.py"));
        assert!(!in_app("<frozen importlib._bootstrap>"));
    }
}
