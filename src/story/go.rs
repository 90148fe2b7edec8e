//! Go: `panic:`, `fatal error:` and signal reports from the Go runtime.
//!
//! Shapes (go1.19; later versions add `gp=… m=…` to goroutine headers and
//! `in goroutine N` to `created by`, both accepted). Indented lines below
//! start with a tab in real output:
//!
//! ```text
//! panic: first failure [recovered]           <- re-panic chain, indented
//!     panic: cleanup failed after: first failure
//! [signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x48390b]
//!
//! goroutine 18 [running]:
//! main.(*Server).register(...)
//!     /src/main.go:15
//! main.indexInGoroutine.func1()
//!     /src/main.go:51 +0x3f
//! created by main.indexInGoroutine
//!     /src/main.go:50 +0xdd
//!
//! fatal error: all goroutines are asleep - deadlock!
//! runtime stack:                             <- system stack, before the goroutines
//! SIGABRT: abort                             <- signal not turned into a panic
//! PC=0x40268e m=0 sigcode=0
//! rax    0x0                                 <- register dump after the goroutines
//! ```
//!
//! The first goroutine printed is the one that crashed; its frames become the
//! crash's frames (the `created by` site as the oldest frame). Further
//! goroutines and the register dump are consumed as part of the story.

use std::sync::LazyLock;

use regex::Regex;

use super::{Crash, Ctx, Frame, Runtime, Story, num, re};

pub(super) const PANIC: &str = r"^panic: (?P<msg>.*?)(?P<rec> \[recovered(?:, repanicked)?\])?$";
pub(super) const FATAL: &str = r"^fatal error: (?P<msg>.*)$";
pub(super) const SIGNAL: &str = r"^(?P<sig>SIG[A-Z0-9]+): (?P<desc>.+)$";
pub(super) const GOROUTINE: &str = r"^goroutine (?P<id>\d+)(?: gp=\S+ m=\S+(?: mp=\S+)?)? \[(?P<state>[^\]]*)\]:$";

struct Patterns {
    panic: Regex,
    nested: Regex,
    fatal: Regex,
    signal: Regex,
    pc: Regex,
    signal_note: Regex,
    goroutine: Regex,
    runtime_stack: Regex,
    func: Regex,
    loc: Regex,
    created: Regex,
    skip: Regex,
    register: Regex,
    exit_status: Regex,
    goroot: Regex,
}

static RE: LazyLock<Patterns> = LazyLock::new(|| Patterns {
    panic: re(PANIC),
    nested: re(r"^\tpanic: (?P<msg>.*?)(?P<rec> \[recovered(?:, repanicked)?\])?$"),
    fatal: re(FATAL),
    signal: re(SIGNAL),
    pc: re(r"^PC=0x[0-9a-f]+ m=\d+ sigcode=\d+"),
    signal_note: re(r"^(?:\[signal .*\]|signal arrived during .*)$"),
    goroutine: re(GOROUTINE),
    runtime_stack: re(r"^runtime stack:$"),
    func: re(r"^(?P<func>[^\s(][^\s]*)\((?P<args>[^()]*)\)$"),
    loc: re(r"^\s+(?P<file>\S.*?):(?P<line>\d+)(?: \+0x[0-9a-f]+)?(?: fp=0x[0-9a-f]+ sp=0x[0-9a-f]+ pc=0x[0-9a-f]+)?$"),
    created: re(r"^created by (?P<func>\S+?)(?: in goroutine \d+)?$"),
    skip: re(r"^(?:\.\.\.additional frames elided\.\.\.|\s+goroutine running on other thread; stack unavailable)$"),
    register: re(r"^[a-z][a-z0-9]{1,5}\s+0x[0-9a-f]+$"),
    exit_status: re(r"^exit status \d+$"),
    // Where distributions and installers put GOROOT: `/usr/lib/go-1.19`,
    // `/usr/local/go`, Homebrew's `…/libexec`, `golang.org/dl`'s `~/sdk/go1.21.0`.
    goroot: re(
        r"^(?:/usr/lib/go(?:-[0-9.]+)?|/usr/local/go|/usr/share/go(?:-[0-9.]+)?|/opt/go|.*/sdk/go[0-9.]+|.*/libexec|.*/goroot)/src/",
    ),
});

#[cfg(test)]
pub(super) fn force_patterns() {
    LazyLock::force(&RE);
}

const MESSAGE_CAP: usize = 32;

/// Parses a `panic:`, `fatal error:` or `SIGxxx:` story at `at`.
pub(super) fn parse(cx: &Ctx<'_, '_>, at: usize) -> Option<Story> {
    let text = cx.text(at)?;
    // Each printed panic's message, oldest first.
    let mut panics: Vec<String> = Vec::new();
    let kind;
    let mut i = at + 1;
    if let Some(c) = RE.panic.captures(text) {
        kind = "panic";
        panics.push(c["msg"].to_owned());
        let mut recovered = c.name("rec").is_some();
        loop {
            // Message continuation lines, then a nested re-panic if the last
            // one was recovered.
            let (more, next) = cx.continuation(i, MESSAGE_CAP, |t| {
                t.trim().is_empty() || RE.nested.is_match(t) || RE.signal_note.is_match(t) || RE.goroutine.is_match(t)
            });
            if !more.is_empty()
                && let Some(last) = panics.last_mut()
            {
                for m in more {
                    last.push('\n');
                    last.push_str(m);
                }
                i = next;
            }
            match cx.text(i).and_then(|t| RE.nested.captures(t)) {
                Some(c) if recovered => {
                    panics.push(c["msg"].to_owned());
                    recovered = c.name("rec").is_some();
                    i += 1;
                }
                _ => break,
            }
        }
    } else if let Some(c) = RE.fatal.captures(text) {
        kind = "fatal error";
        panics.push(c["msg"].to_owned());
    } else {
        let c = RE.signal.captures(text)?;
        // `SIGQUIT: quit` alone is too common a phrase; the runtime always
        // follows it with the PC line.
        if !cx.text(i).is_some_and(|t| RE.pc.is_match(t)) {
            return None;
        }
        i += 1;
        let mut crash = Crash::new(Runtime::Go, &c["sig"], &c["desc"]);
        while cx.text(i).is_some_and(|t| RE.signal_note.is_match(t)) {
            i += 1;
        }
        let (thread, frames, next) = parse_blocks(cx, i);
        // No goroutine dump: not the Go runtime's report.
        crash.thread = Some(thread?);
        crash.frames = frames;
        return Some(Story { crash: crash.span(cx, at, next), next });
    }
    while cx.text(i).is_some_and(|t| RE.signal_note.is_match(t)) {
        i += 1;
    }
    let (thread, frames, next) = parse_blocks(cx, i);
    let end = if thread.is_some() || !frames.is_empty() {
        next
    } else {
        // No goroutine trace (GOTRACEBACK=none, or not Go at all): believe
        // only a header on stderr that carries Go's `[signal …]` line or ends
        // the stream, and take no continuation lines on trust.
        let mut j = at + 1;
        while cx.text(j).is_some_and(|t| RE.signal_note.is_match(t)) {
            j += 1;
        }
        if !(cx.stderr && (j > at + 1 || cx.skip_blank(j) >= cx.lines.len())) {
            return None;
        }
        panics.truncate(1);
        if let Some(first) = panics.first_mut() {
            first.truncate(first.find('\n').unwrap_or(first.len()));
        }
        j
    };
    let value = panics.pop().unwrap_or_default();
    let mut crash = Crash::new(Runtime::Go, kind, value);
    crash.thread = thread;
    crash.frames = frames;
    // Earlier, recovered panics: nearest first. They share the goroutine's
    // trace, so they carry no frames of their own.
    crash.chained = panics
        .into_iter()
        .rev()
        .map(|m| {
            let mut c = Crash::new(Runtime::Go, "panic", m);
            c.first_line = cx.idx(at);
            c.last_line = cx.idx(at);
            c
        })
        .collect();
    Some(Story { crash: crash.span(cx, at, end), next: end })
}

/// Parses `runtime stack:` and `goroutine N [...]:` blocks and a trailing
/// register dump from `start`. Returns the first goroutine's name and the
/// crash frames (the first goroutine's, else the runtime stack's), oldest
/// first, and the index after the last consumed line.
fn parse_blocks(cx: &Ctx<'_, '_>, start: usize) -> (Option<String>, Vec<Frame>, usize) {
    let mut thread = None;
    let mut frames: Vec<Frame> = Vec::new();
    let mut runtime_frames: Vec<Frame> = Vec::new();
    let mut end = start;
    let mut i = start;
    loop {
        let k = cx.skip_blank(i);
        let Some(t) = cx.text(k) else { break };
        if let Some(c) = RE.goroutine.captures(t) {
            let (fs, next) = parse_frames(cx, k + 1);
            if thread.is_none() {
                thread = Some(format!("goroutine {} [{}]", &c["id"], &c["state"]));
                frames = fs;
            }
            end = next;
        } else if RE.runtime_stack.is_match(t) {
            let (fs, next) = parse_frames(cx, k + 1);
            if runtime_frames.is_empty() {
                runtime_frames = fs;
            }
            end = next;
        } else if RE.register.is_match(t) {
            end = k + 1;
        } else if RE.exit_status.is_match(t) && end > start {
            // `go run` reports the child's exit right after the trace.
            end = k + 1;
            break;
        } else {
            break;
        }
        i = end;
    }
    if frames.is_empty() {
        frames = runtime_frames;
    }
    (thread, frames, end)
}

/// Parses one block of `func(args)` / `\tfile:line +0x…` pairs from `start`.
/// Returns the frames oldest first and the index after the block.
fn parse_frames(cx: &Ctx<'_, '_>, start: usize) -> (Vec<Frame>, usize) {
    let mut frames = Vec::new();
    let mut i = start;
    while let Some(t) = cx.text(i) {
        let func = if let Some(c) = RE.func.captures(t) {
            c["func"].to_owned()
        } else if let Some(c) = RE.created.captures(t) {
            c["func"].to_owned()
        } else if RE.skip.is_match(t) {
            i += 1;
            continue;
        } else {
            break;
        };
        i += 1;
        let mut frame = split_function(&func);
        if let Some(c) = cx.text(i).and_then(|t| RE.loc.captures(t)) {
            frame = Frame { lineno: num(c.name("line")), ..frame }.with_path(&c["file"]);
            i += 1;
        }
        frame.in_app = in_app(frame.module.as_deref().unwrap_or(""), frame.filename.as_deref());
        frames.push(frame);
    }
    frames.reverse();
    (frames, i)
}

/// Splits `github.com/x/y.(*T).M` into module `github.com/x/y` and function
/// `(*T).M`, the way sentry-go does: the package ends at the first dot after
/// the last slash.
fn split_function(name: &str) -> Frame {
    let slash = name.rfind('/').map_or(0, |p| p + 1);
    let (module, function) = match name.get(slash..).and_then(|rest| rest.find('.')) {
        Some(dot) => (Some(name[..slash + dot].to_owned()), name[slash + dot + 1..].to_owned()),
        None => (None, name.to_owned()),
    };
    Frame { function: Some(function), module, ..Frame::default() }
}

fn in_app(module: &str, file: Option<&str>) -> bool {
    if let Some(f) = file
        && (f.contains("/pkg/mod/") || f.contains("/vendor/") || RE.goroot.is_match(f))
    {
        return false;
    }
    // A standard-library package (no dot in its first path element) whose
    // file lives at `…/src/<package>/` is in GOROOT wherever that is.
    let stdlib = module != "main" && module.split('/').next().is_some_and(|first| !first.contains('.'));
    if let Some(f) = file {
        return !(stdlib && !module.is_empty() && f.contains(&format!("/src/{module}/")));
    }
    if module == "main" {
        return true;
    }
    // No file: judge by the package path; the standard library's first
    // element has no dot.
    module.split('/').next().is_some_and(|first| first.contains('.'))
}

/// Goroutine frames at the very start of the stream whose `panic:` or
/// `fatal error:` header was evicted. The type is lost with the header.
pub(super) fn parse_headless(cx: &Ctx<'_, '_>) -> Option<Story> {
    let start = (0..3.min(cx.lines.len())).find(|&i| {
        cx.text(i).is_some_and(|t| {
            RE.goroutine.is_match(t)
                || ((RE.func.is_match(t) || RE.created.is_match(t))
                    && cx.text(i + 1).is_some_and(|n| RE.loc.is_match(n)))
        })
    })?;
    let (thread, frames, next) = if cx.text(start).is_some_and(|t| RE.goroutine.is_match(t)) {
        parse_blocks(cx, start)
    } else {
        // The crashing goroutine is the one whose header was evicted; later
        // goroutine blocks are only consumed.
        let (frames, first_end) = parse_frames(cx, start);
        let (_, _, next) = parse_blocks(cx, first_end);
        (None, frames, next.max(first_end))
    };
    // Require real Go locations so an unrelated `f(x)` line does not qualify.
    if !frames.iter().any(|f| f.filename.as_deref().is_some_and(|p| p.ends_with(".go") || p.ends_with(".s"))) {
        return None;
    }
    let mut crash = Crash::new(Runtime::Go, "", "");
    crash.thread = thread;
    crash.frames = frames;
    Some(Story { crash: crash.span(cx, start, next), next })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_sentry_go() {
        let f = split_function("github.com/acme/app/internal/db.(*Pool).Get");
        assert_eq!(f.module.as_deref(), Some("github.com/acme/app/internal/db"));
        assert_eq!(f.function.as_deref(), Some("(*Pool).Get"));
        let f = split_function("main.main.func1");
        assert_eq!(f.module.as_deref(), Some("main"));
        assert_eq!(f.function.as_deref(), Some("main.func1"));
        let f = split_function("nodots");
        assert_eq!(f.module, None);
    }

    #[test]
    fn in_app_guesses() {
        assert!(!in_app("runtime", Some("/usr/lib/go-1.19/src/runtime/panic.go")));
        assert!(!in_app("sync", Some("/usr/local/go/src/sync/waitgroup.go")));
        assert!(in_app("github.com/me/app", Some("/home/me/go/src/github.com/me/app/main.go")));
        assert!(!in_app("github.com/lib/pq", Some("/home/me/go/pkg/mod/github.com/lib/pq@v1.0.0/conn.go")));
        assert!(in_app("main", Some("_cgo_gotypes.go")));
        assert!(in_app("main", Some("/home/me/go/src/crashy/main.go")));
        assert!(!in_app("runtime/internal/syscall", Some("/opt/custom-go/src/runtime/internal/syscall/asm.s")));
        assert!(in_app("myapp/internal/db", Some("/srv/myapp/internal/db/pool.go")));
    }
}
