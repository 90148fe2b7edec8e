//! Java uncaught exceptions from a real JVM (testdata/programs/Crash.java,
//! compiled with javac at test time).

#[path = "story_common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use crashwatch::story::{Crash, Frame, Runtime};

fn classes() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        require("javac");
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("java-classes");
        let status = Command::new("javac")
            .arg("-d")
            .arg(&out)
            .arg(crate_path("testdata/programs/Crash.java"))
            .status()
            .expect("run javac");
        assert!(status.success(), "javac failed");
        out
    })
}

fn java(mode: &str) -> Tail {
    let dir = classes();
    require("java");
    let (stdout, stderr) = run_crashing(Command::new("java").arg("-cp").arg(dir).arg("Crash").arg(mode));
    Tail::streams(&stdout, &stderr)
}

fn java_crash(tail: &Tail) -> Crash {
    let c = tail.crash();
    assert_eq!(c.runtime, Runtime::Java);
    c
}

/// (class, method, line), oldest first.
fn calls(frames: &[Frame]) -> Vec<(&str, &str, Option<u32>)> {
    frames
        .iter()
        .map(|f| (f.module.as_deref().unwrap_or("?"), f.function.as_deref().unwrap_or("?"), f.lineno))
        .collect()
}

#[test]
fn caused_by_chain_with_shared_frames() {
    let tail = java("chain");
    let c = java_crash(&tail);
    assert_eq!(c.kind, "java.lang.RuntimeException");
    assert_eq!(c.value, "server failed to start");
    assert_eq!(c.thread.as_deref(), Some("main"));
    assert_eq!(calls(&c.frames), [("Crash", "main", Some(64)), ("Crash", "startServer", Some(33))]);
    assert!(c.frames.iter().all(|f| f.in_app && f.filename.as_deref() == Some("Crash.java") && f.abs_path.is_none()));

    // Causes, nearest first; `... N more` frames are restored from the
    // enclosing trace.
    assert_eq!(c.chained.len(), 2);
    let state = &c.chained[0];
    assert_eq!((state.kind.as_str(), state.value.as_str()), ("java.lang.IllegalStateException", "config broken"));
    assert_eq!(
        calls(&state.frames),
        [("Crash", "main", Some(64)), ("Crash", "startServer", Some(31)), ("Crash", "loadPort", Some(25))]
    );
    let missing = &c.chained[1];
    assert_eq!((missing.kind.as_str(), missing.value.as_str()), ("java.util.NoSuchElementException", "no key port"));
    assert_eq!(
        calls(&missing.frames),
        [
            ("Crash", "main", Some(64)),
            ("Crash", "startServer", Some(31)),
            ("Crash", "loadPort", Some(23)),
            ("Crash$Repo", "get", Some(15)),
        ]
    );
    assert!(tail.text(c.first_line).starts_with("Exception in thread \"main\""));
    assert_eq!(tail.text(c.last_line).trim(), "... 2 more");
    assert_eq!(tail.text(missing.first_line), "Caused by: java.util.NoSuchElementException: no key port");
    assert_interleaving_harmless(&tail);
}

#[test]
fn named_thread_with_jdk_frames() {
    let tail = java("thread");
    let c = java_crash(&tail);
    assert_eq!(c.kind, "java.lang.IndexOutOfBoundsException");
    assert_eq!(c.value, "Index 3 out of bounds for length 0");
    assert_eq!(c.thread.as_deref(), Some("worker-pool-1"));
    assert_eq!(c.frames.len(), 7);
    let oldest = &c.frames[0];
    assert_eq!(
        (oldest.module.as_deref(), oldest.function.as_deref(), oldest.filename.as_deref()),
        (Some("java.lang.Thread"), Some("run"), Some("Thread.java"))
    );
    assert!(!oldest.in_app);
    assert_eq!(calls(&c.frames[1..2]), [("Crash", "lambda$main$0", Some(51))]);
    assert!(c.frames[1].in_app);
    let newest = c.frames.last().unwrap();
    assert_eq!(
        (newest.module.as_deref(), newest.function.as_deref()),
        (Some("jdk.internal.util.Preconditions"), Some("outOfBounds"))
    );
    assert!(!newest.in_app);
    assert_interleaving_harmless(&tail);
}

#[test]
fn multiline_message() {
    let tail = java("multiline");
    let c = java_crash(&tail);
    assert_eq!(c.kind, "java.lang.IllegalArgumentException");
    assert_eq!(c.value, "bad request:\n  field 'name' is empty");
    assert_eq!(calls(&c.frames), [("Crash", "main", Some(58))]);
    assert_interleaving_harmless(&tail);
}

#[test]
fn suppressed_frames_are_not_the_throwables() {
    let tail = java("suppressed");
    let c = java_crash(&tail);
    assert_eq!((c.kind.as_str(), c.value.as_str()), ("java.lang.IllegalStateException", "body failed"));
    assert_eq!(calls(&c.frames), [("Crash", "main", Some(61))]);
    assert!(c.chained.is_empty());
    // The suppressed block is still part of the story.
    assert_eq!(c.last_line, tail.0.len() - 1);
}

#[test]
fn evicted_header_keeps_frames_and_causes() {
    let tail = java("chain");
    let full = java_crash(&tail);
    let header = tail.0.iter().position(|(_, t)| t.starts_with("Exception in thread")).unwrap();
    let c = java_crash(&tail.evict(header + 1));
    assert_eq!(c.kind, "");
    assert_eq!(c.thread, None);
    assert_eq!(c.frames, full.frames);
    assert_eq!(
        c.chained.iter().map(positionless).collect::<Vec<_>>(),
        full.chained.iter().map(positionless).collect::<Vec<_>>()
    );
}

#[test]
fn logged_trace_without_thread_prefix() {
    // printStackTrace() from a handler, as a logger would show it.
    let tail = Tail::stderr(
        "ERROR request failed\n\
         com.acme.billing.ChargeException: card declined\n\
         \tat com.acme.billing.Gateway.charge(Gateway.java:88)\n\
         \tat app//com.acme.api.Handler.post(Handler.java:41)\n\
         \tat java.base/java.lang.Thread.run(Thread.java:840)\n",
    );
    let c = java_crash(&tail);
    assert_eq!(
        (c.kind.as_str(), c.value.as_str(), c.thread.as_deref()),
        ("com.acme.billing.ChargeException", "card declined", None)
    );
    assert_eq!(
        calls(&c.frames),
        [
            ("java.lang.Thread", "run", Some(840)),
            ("com.acme.api.Handler", "post", Some(41)),
            ("com.acme.billing.Gateway", "charge", Some(88))
        ]
    );
    assert_eq!(c.first_line, 1);
    // A dotted name without frames is just a log line.
    assert_eq!(Tail::stderr("config.loaded: true\nserver.port: 8080\n").detect(), None);
}
