//! Which lines start a problem the program survives, and how its story is
//! read: each shape is handed to the runtime's own parser in
//! [`crate::story`], so frames come out exactly as for a crash.
//!
//! | trigger line                                   | read as                  |
//! |------------------------------------------------|--------------------------|
//! | `thread 'NAME' panicked at` (NAME not `main`)  | Rust panic               |
//! | `Exception in thread NAME:` then a traceback   | Python traceback         |
//! | `Exception in thread "NAME" …` (not `main`)    | Java exception           |
//! | `… http: panic serving ADDR: MSG`              | Go `panic: MSG` + trace  |
//! | `(node:PID) UnhandledPromiseRejectionWarning:` | Node error + frames      |
//! | sanitizer `==PID==ERROR:` / `runtime error:`   | sanitizer report         |

use std::sync::LazyLock;

use regex::{Regex, RegexSet};

use crate::story::{self, Crash, Frame, Runtime, TailLine};

/// The shapes, in the order of [`TRIGGERS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    RustPanic,
    PythonThread,
    JavaThread,
    GoHttp,
    NodeRejection,
    Sanitizer,
}

const TRIGGERS: &[(&str, Shape)] = &[
    (r"^thread '[^']*'(?: \(\d+\))? panicked at ", Shape::RustPanic),
    (r"^Exception in thread [^\x22].*:$", Shape::PythonThread),
    (r#"^Exception in thread "[^"]*" "#, Shape::JavaThread),
    (r"http: panic serving \S+: ", Shape::GoHttp),
    (r"^\(node:\d+\) (?:\[\S+\] )?UnhandledPromiseRejectionWarning: ", Shape::NodeRejection),
    (r"^==\d+==ERROR: \w*Sanitizer: |^\S+:\d+:\d+: runtime error: |^WARNING: ThreadSanitizer: ", Shape::Sanitizer),
];

static SET: LazyLock<RegexSet> =
    LazyLock::new(|| RegexSet::new(TRIGGERS.iter().map(|(p, _)| *p)).expect("constant trigger patterns compile"));

static GO_HTTP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"http: panic serving (?P<addr>\S+): (?P<msg>.*)$").expect("constant pattern"));
static NODE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\(node:\d+\) (?:\[\S+\] )?UnhandledPromiseRejectionWarning: (?P<type>[\w.$]+)(?:: (?P<msg>.*))?$")
        .expect("constant pattern")
});
static NODE_FRAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s{4,}at (?:(?P<func>.+?) \((?P<file>.+?):(?P<line>\d+):(?P<col>\d+)\)|(?P<bare>.+?):(?P<bline>\d+):(?P<bcol>\d+))$")
        .expect("constant pattern")
});

/// The shape `line` starts, if any: one set match per line.
pub fn trigger(line: &str) -> Option<Shape> {
    let shape = SET.matches(line).iter().next().and_then(|i| TRIGGERS.get(i)).map(|(_, s)| *s)?;
    // The main thread's panic or exception ends the program: a crash,
    // reported when the child ends.
    let main = line.starts_with("thread 'main'") || line.starts_with("Exception in thread \"main\" ");
    (!main).then_some(shape)
}

/// Reads the story of `shape` from `lines` (the trigger line first, then
/// what followed it on the same stream).
pub fn read(shape: Shape, lines: &[&str]) -> Option<Crash> {
    let first = *lines.first()?;
    let mut crash = match shape {
        Shape::GoHttp => {
            // net/http recovered the panic and logged it with the stack:
            // read it as the runtime's own `panic:`.
            let c = GO_HTTP.captures(first)?;
            let header = format!("panic: {}", &c["msg"]);
            let mut texts = vec![header.as_str(), ""];
            texts.extend(lines.iter().skip(1).copied());
            let mut crash = parse(&texts)?;
            crash.value = c["msg"].to_owned();
            crash
        }
        Shape::PythonThread => {
            let mut crash = parse(&lines[1..])?;
            let name = first.trim_start_matches("Exception in thread ").trim_end_matches(':');
            crash.thread = Some(name.to_owned());
            crash
        }
        Shape::NodeRejection => node(lines)?,
        _ => parse(lines)?,
    };
    let expected = match shape {
        Shape::RustPanic => crash.runtime == Runtime::Rust,
        Shape::PythonThread => crash.runtime == Runtime::Python,
        Shape::JavaThread => crash.runtime == Runtime::Java,
        Shape::GoHttp => crash.runtime == Runtime::Go,
        Shape::NodeRejection => crash.runtime == Runtime::Node,
        Shape::Sanitizer => crash.runtime.platform() == "native",
    };
    // Only the story that begins at the trigger counts.
    if !expected || crash.first_line > 2 {
        return None;
    }
    crash.first_line = 0;
    Some(crash)
}

fn parse(lines: &[&str]) -> Option<Crash> {
    let tail: Vec<TailLine<'_>> = lines.iter().map(|text| TailLine { stderr: true, text }).collect();
    let mut found = story::detect(&tail)?;
    // `detect` takes the last story; the first is wanted. Cut after it and
    // read again when a second one follows.
    if found.first_line > 2 {
        let first_end = lines.iter().skip(1).position(|l| trigger(l).is_some()).map(|p| p + 1)?;
        found = story::detect(&tail[..first_end])?;
    }
    Some(found)
}

fn node(lines: &[&str]) -> Option<Crash> {
    let c = NODE.captures(lines.first()?)?;
    let mut frames = Vec::new();
    let mut last = 0;
    for (i, line) in lines.iter().enumerate().skip(1) {
        let Some(f) = NODE_FRAME.captures(line) else { break };
        last = i;
        let (func, file, line, col) = match f.name("func") {
            Some(func) => (Some(func.as_str().to_owned()), &f["file"], &f["line"], &f["col"]),
            None => (None, &f["bare"], &f["bline"], &f["bcol"]),
        };
        let internal = file.starts_with("node:") || file.contains("/node_modules/");
        let mut frame = Frame {
            function: func,
            filename: Some(file.to_owned()),
            lineno: line.parse().ok(),
            colno: col.parse().ok(),
            in_app: !internal,
            ..Frame::default()
        };
        if file.starts_with('/') {
            frame.abs_path = Some(file.to_owned());
        }
        frames.push(frame);
    }
    frames.reverse();
    Some(Crash {
        runtime: Runtime::Node,
        kind: c["type"].to_owned(),
        value: c.name("msg").map_or(String::new(), |m| m.as_str().to_owned()),
        thread: None,
        frames,
        chained: Vec::new(),
        report_file: None,
        first_line: 0,
        last_line: last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_are_the_surviving_shapes_only() {
        assert_eq!(trigger("thread 'tokio-runtime-worker' panicked at src/h.rs:3:5:"), Some(Shape::RustPanic));
        assert_eq!(trigger("thread 'main' panicked at src/main.rs:3:5:"), None);
        assert_eq!(trigger("thread 'mainly' panicked at src/main.rs:3:5:"), Some(Shape::RustPanic));
        assert_eq!(trigger("Exception in thread Thread-1 (work):"), Some(Shape::PythonThread));
        assert_eq!(trigger("Exception in thread \"pool-1\" java.lang.X: y"), Some(Shape::JavaThread));
        assert_eq!(trigger("Exception in thread \"main\" java.lang.X: y"), None);
        assert_eq!(trigger("2026/01/01 10:00:00 http: panic serving 127.0.0.1:5: boom"), Some(Shape::GoHttp));
        assert_eq!(trigger("INFO user typed thread 'x' panicked at"), None);
    }

    #[test]
    fn a_go_http_panic_reads_as_a_go_panic() {
        let lines = [
            "2026/01/01 10:00:00 http: panic serving 127.0.0.1:40000: runtime error: index out of range [5] with length 1",
            "goroutine 7 [running]:",
            "net/http.(*conn).serve.func1()",
            "\t/usr/lib/go-1.19/src/net/http/server.go:1850 +0xbf",
            "panic({0x6283a0, 0xc0000a2018})",
            "\t/usr/lib/go-1.19/src/runtime/panic.go:890 +0x262",
            "main.handler({0x6e5b38, 0xc0000e0000}, 0x0?)",
            "\t/src/server.go:12 +0x1d",
            "created by net/http.(*Server).Serve",
            "\t/usr/lib/go-1.19/src/net/http/server.go:3102 +0x4db",
        ];
        let crash = read(Shape::GoHttp, &lines).unwrap();
        assert_eq!(crash.runtime, Runtime::Go);
        assert_eq!(crash.value, "runtime error: index out of range [5] with length 1");
        assert!(crash.frames.iter().any(|f| f.function.as_deref() == Some("handler")), "{:?}", crash.frames);
    }

    #[test]
    fn a_node_rejection_warning_gives_type_message_and_frames() {
        let lines = [
            "(node:123) UnhandledPromiseRejectionWarning: Error: lookup failed",
            "    at fetchUser (/srv/app.js:4:9)",
            "    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)",
            "(Use `node --trace-warnings ...` to show where the warning was created)",
        ];
        let crash = read(Shape::NodeRejection, &lines).unwrap();
        assert_eq!((crash.kind.as_str(), crash.value.as_str()), ("Error", "lookup failed"));
        assert_eq!(crash.frames.len(), 2);
        assert_eq!(crash.frames[1].function.as_deref(), Some("fetchUser"));
        assert!(crash.frames[1].in_app && !crash.frames[0].in_app);
    }
}
