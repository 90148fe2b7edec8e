//! C++ `std::terminate` output from a real program (testdata/programs/terminate.cpp,
//! built with g++ at test time).

#[path = "story_common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use crashwatch::story::{Crash, Runtime};

fn binary() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        require("g++");
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("terminate");
        let status = Command::new("g++")
            .args(["-g", "-O0", "-o"])
            .arg(&out)
            .arg(crate_path("testdata/programs/terminate.cpp"))
            .status()
            .expect("run g++");
        assert!(status.success(), "g++ failed");
        out
    })
}

fn run(mode: &str) -> (Tail, Crash) {
    let (stdout, stderr) = run_crashing(Command::new(binary()).arg(mode));
    let tail = Tail::streams(&stdout, &stderr);
    let c = tail.crash();
    assert_eq!(c.runtime, Runtime::Cpp);
    assert!(c.frames.is_empty(), "libstdc++ prints no stack");
    assert!(c.chained.is_empty());
    (tail, c)
}

#[test]
fn uncaught_std_exception() {
    let (tail, c) = run("runtime_error");
    assert_eq!(c.kind, "std::runtime_error");
    assert_eq!(c.value, "cannot open /etc/app.conf");
    assert_eq!(c.thread, None);
    assert!(tail.text(c.first_line).starts_with("terminate called after throwing"));
    assert!(tail.text(c.last_line).starts_with("  what():"));
    assert_interleaving_harmless(&tail);
}

#[test]
fn uncaught_non_std_exception_has_no_what() {
    let (tail, c) = run("custom");
    assert_eq!((c.kind.as_str(), c.value.as_str()), ("ParseError", ""));
    assert_eq!(c.first_line, c.last_line);
    assert!(tail.text(c.first_line).ends_with("'ParseError'"));
}

#[test]
fn terminate_without_active_exception() {
    let (_, c) = run("no_active");
    assert_eq!((c.kind.as_str(), c.value.as_str()), ("std::terminate", "terminate called without an active exception"));
}

/// libc++ (clang, macOS) wording, transcribed: no libc++ on this machine.
#[test]
fn libcxx_wording() {
    let c = Tail::stderr("libc++abi: terminating due to uncaught exception of type std::out_of_range: vector::at\n")
        .crash();
    assert_eq!((c.runtime, c.kind.as_str(), c.value.as_str()), (Runtime::Cpp, "std::out_of_range", "vector::at"));
    let c = Tail::stderr("libc++abi: terminating with uncaught exception of type my::Error\n").crash();
    assert_eq!((c.kind.as_str(), c.value.as_str()), ("my::Error", ""));
}
