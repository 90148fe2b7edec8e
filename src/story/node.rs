//! Node.js: uncaught exceptions and unhandled promise rejections (node
//! prints both the same way and exits 1), V8's fatal errors (the heap out
//! of memory), and the stacks node prints before it aborts.
//!
//! Shapes (node 20; 16–22 print the same skeleton):
//!
//! ```text
//! /srv/app/server.js:12                      <- where it was thrown
//!     throw new Error(`refused: ${host}`);
//!           ^
//!                                            <- (none for a thrown non-Error)
//! Error: refused: db.internal                <- may continue on following lines
//!     at connect (/srv/app/server.js:12:11)
//!     at async Promise.all (index 0)
//!     ... 5 lines matching cause stack trace ...
//!     at node:internal/main/run_main_module:28:49 {    <- own properties follow
//!   code: 'ECONNREFUSED',
//!   [cause]: SyntaxError: Unexpected token 'x'
//!       at JSON.parse (<anonymous>)
//! }
//!
//! Node.js v20.20.2
//!
//! FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory
//! ----- Native stack trace -----
//!
//!  1: 0xb78db3 node::OOMErrorHandler(char const*, v8::OOMDetails const&) [node]
//!  4: 0x10fb205  [node]
//!
//! ----- JavaScript stack trace -----         <- after process.abort() and checks
//!
//! 1: boom ([eval]:1:26)
//! ```

use std::sync::LazyLock;

use regex::{Captures, Regex};

use super::{Crash, Ctx, Frame, Runtime, Story, num, re};

/// `file:line` of the throw site: an absolute path, `file://`, `node:…`,
/// `[eval]`, `<anonymous_script>`.
pub(super) const THROW_SITE: &str = r"^(?P<file>(?:/|file://|node:|\[eval|<anonymous)\S*):(?P<line>\d+)$";
pub(super) const FATAL: &str = r"^FATAL ERROR: (?P<msg>.+)$";
pub(super) const NATIVE_STACK: &str = r"^----- Native stack trace -----$";

struct Patterns {
    throw_site: Regex,
    caret: Regex,
    error: Regex,
    frame: Regex,
    location: Regex,
    matching_cause: Regex,
    cause: Regex,
    version: Regex,
    fatal: Regex,
    native: Regex,
    js_header: Regex,
    js_frame: Regex,
}

static RE: LazyLock<Patterns> = LazyLock::new(|| Patterns {
    throw_site: re(THROW_SITE),
    caret: re(r"^\s*\^+\s*$"),
    // `TypeError: bad port`, `Error [ERR_X]: …`, `UnhandledPromiseRejection: …`
    error: re(r"^(?P<type>[\p{L}_$][\p{L}\p{N}_$.]*)(?: \[(?P<code>[A-Z0-9_]+)\])?(?:: (?P<msg>.*))?$"),
    frame: re(r"^(?P<indent> {4,})at (?:(?P<func>.+?) \((?P<loc>.*)\)|(?P<bare>.+?))(?P<props> \{)?$"),
    location: re(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+)$"),
    matching_cause: re(r"^\s+\.\.\. \d+ lines? matching cause stack trace \.\.\.$"),
    cause: re(r"^(?P<indent> +)\[cause\]: (?P<rest>.*)$"),
    version: re(r"^Node\.js v\d+\.\d+\.\d+\S*$"),
    fatal: re(FATAL),
    native: re(r"^\s*\d+: (?P<addr>0x[0-9a-fA-F]+) (?P<func>.*?) ?\[(?P<pkg>[^\]]*)\]$"),
    js_header: re(r"^----- JavaScript stack trace -----$"),
    js_frame: re(r"^\d+: (?:(?P<func>.+?) \((?P<loc>.*)\)|(?P<bare>.+))$"),
});

#[cfg(test)]
pub(super) fn force_patterns() {
    LazyLock::force(&RE);
}

/// Message lines allowed between the error line and its first frame.
const MESSAGE_CAP: usize = 20;
/// Lines of an error's own properties (`{ code: …, [cause]: … }`).
const PROPS_CAP: usize = 200;

/// An uncaught exception or unhandled rejection, from its throw site.
pub(super) fn parse_uncaught(cx: &Ctx<'_, '_>, at: usize) -> Option<Story> {
    RE.throw_site.captures(cx.text(at)?)?;
    // The source line (may be blank), then the caret under the throw.
    if !cx.text(at + 2).is_some_and(|t| RE.caret.is_match(t)) {
        return None;
    }
    let mut i = at + 3;
    if cx.is_blank(i) {
        i += 1;
    }
    let head = cx.text(i)?;
    let (mut crash, mut next) = match RE.error.captures(head).filter(|_| !head.starts_with(['{', '['])) {
        Some(c) => {
            let mut value = c.name("msg").map_or(String::new(), |m| m.as_str().to_owned());
            let (more, after) = cx.continuation(i + 1, MESSAGE_CAP, |t| RE.frame.is_match(t) || RE.version.is_match(t));
            for m in more {
                value.push('\n');
                value.push_str(m);
            }
            (Crash::new(Runtime::Node, &c["type"], value), after)
        }
        None => {
            // A thrown value that is not an Error: node prints it as is.
            let (lines, after) = cx.continuation(i, MESSAGE_CAP, |t| t.trim().is_empty());
            let value = if lines.is_empty() { head.to_owned() } else { lines.join("\n") };
            (Crash::new(Runtime::Node, "Uncaught", value), after.max(i + 1))
        }
    };
    let (frames, after, props) = parse_frames(cx, next, 4);
    crash.frames = frames;
    next = after;
    if props {
        let (chained, after) = parse_props(cx, next);
        crash.chained = chained;
        next = after;
    }
    let k = cx.skip_blank(next);
    if cx.text(k).is_some_and(|t| RE.version.is_match(t)) {
        next = k + 1;
    }
    Some(Story { crash: crash.span(cx, at, next), next })
}

/// `    at …` frames at `indent` spaces from `start`, newest first as
/// printed; returned oldest first, with the index after them and whether
/// the last one opened a block of properties (` {`).
fn parse_frames(cx: &Ctx<'_, '_>, start: usize, indent: usize) -> (Vec<Frame>, usize, bool) {
    let mut frames = Vec::new();
    let mut i = start;
    let mut props = false;
    while let Some(t) = cx.text(i) {
        if RE.matching_cause.is_match(t) {
            i += 1;
            continue;
        }
        let Some(c) = RE.frame.captures(t).filter(|c| c["indent"].len() == indent) else { break };
        frames.push(js_frame(&c));
        i += 1;
        if c.name("props").is_some() {
            props = true;
            break;
        }
    }
    frames.reverse();
    (frames, i, props)
}

/// The `{ … }` after the last frame: own properties, of which the
/// `[cause]` chain is kept (nearest first). Returns the index after `}`.
fn parse_props(cx: &Ctx<'_, '_>, start: usize) -> (Vec<Crash>, usize) {
    let mut chained = Vec::new();
    let mut i = start;
    while let Some(t) = cx.text(i) {
        if t == "}" {
            return (chained, i + 1);
        }
        if i - start > PROPS_CAP {
            break;
        }
        if let Some(c) = RE.cause.captures(t) {
            let indent = c["indent"].len();
            let rest = &c["rest"];
            let mut cause = match RE.error.captures(rest) {
                Some(e) => Crash::new(Runtime::Node, &e["type"], e.name("msg").map_or("", |m| m.as_str())),
                None => Crash::new(Runtime::Node, "Uncaught", rest),
            };
            let (frames, after, _) = parse_frames(cx, i + 1, indent + 4);
            cause.frames = frames;
            cause = cause.span(cx, i, after);
            chained.push(cause);
            i = after.max(i + 1);
            continue;
        }
        i += 1;
    }
    (chained, start)
}

/// `at func (file:line:col)`, `at file:line:col`, `at JSON.parse (<anonymous>)`.
fn js_frame(c: &Captures<'_>) -> Frame {
    let function = c.name("func").map(|m| m.as_str().to_owned());
    let location = c.name("loc").or_else(|| c.name("bare")).map_or("", |m| m.as_str());
    js_location(function, location)
}

fn js_location(function: Option<String>, location: &str) -> Frame {
    let mut frame = Frame { function, ..Frame::default() };
    match RE.location.captures(location) {
        Some(l) => {
            let file = &l["file"];
            let file = file.strip_prefix("file://").unwrap_or(file);
            frame = frame.with_path(file);
            frame.lineno = num(l.name("line"));
            frame.colno = num(l.name("col"));
            frame.in_app = in_app(file);
        }
        // `<anonymous>`, `native`, `index 0`: no file.
        None => frame.in_app = false,
    }
    frame
}

/// node's own modules and dependencies are not the application's code.
fn in_app(file: &str) -> bool {
    !(file.starts_with("node:") || file.contains("/node_modules/") || file.starts_with("internal/"))
}

/// `FATAL ERROR: …` (V8: out of memory, a failed check), with the native
/// stack node prints after it.
pub(super) fn parse_fatal(cx: &Ctx<'_, '_>, at: usize) -> Option<Story> {
    let c = RE.fatal.captures(cx.text(at)?)?;
    let mut crash = Crash::new(Runtime::Node, "FATAL ERROR", &c["msg"]);
    let (native, js, next) = parse_stacks(cx, at + 1);
    crash.frames = if js.is_empty() { native } else { js };
    Some(Story { crash: crash.span(cx, at, next), next })
}

/// The native (and JavaScript) stacks node prints when it aborts: after
/// `process.abort()`, or a failed internal check.
pub(super) fn parse_abort(cx: &Ctx<'_, '_>, at: usize) -> Option<Story> {
    let (native, js, next) = parse_stacks(cx, at);
    if native.is_empty() {
        return None;
    }
    let mut crash = Crash::new(Runtime::Node, "Abort", "node printed its stacks and aborted");
    crash.frames = if js.is_empty() { native } else { js };
    Some(Story { crash: crash.span(cx, at, next), next })
}

/// `----- Native stack trace -----` and `----- JavaScript stack trace -----`
/// sections from `start` (blank lines around them allowed): both oldest
/// first, and the index after them.
fn parse_stacks(cx: &Ctx<'_, '_>, start: usize) -> (Vec<Frame>, Vec<Frame>, usize) {
    let (mut native, mut js) = (Vec::new(), Vec::new());
    let mut next = start;
    let mut i = cx.skip_blank(start);
    if cx.text(i).is_some_and(|t| t == "----- Native stack trace -----") {
        i = cx.skip_blank(i + 1);
        while let Some(c) = cx.text(i).and_then(|t| RE.native.captures(t)) {
            let function = Some(c["func"].trim()).filter(|f| !f.is_empty()).map(str::to_owned);
            native.push(Frame {
                function,
                package: Some(c["pkg"].to_owned()).filter(|p| !p.is_empty()),
                instruction_addr: Some(c["addr"].to_owned()),
                in_app: false,
                ..Frame::default()
            });
            i += 1;
        }
        next = i;
    }
    let k = cx.skip_blank(next);
    if cx.text(k).is_some_and(|t| RE.js_header.is_match(t)) {
        let mut i = cx.skip_blank(k + 1);
        while let Some(c) = cx.text(i).and_then(|t| RE.js_frame.captures(t)) {
            let location = c.name("loc").or_else(|| c.name("bare")).map_or("", |m| m.as_str());
            js.push(js_location(c.name("func").map(|m| m.as_str().to_owned()), location));
            i += 1;
        }
        next = i;
    }
    native.reverse();
    js.reverse();
    (native, js, next)
}
