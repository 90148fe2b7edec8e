//! Rust panics from a real program (testdata/programs/crashy.rs) built with the
//! rustc running these tests, plus transcribed output of older rustc
//! versions whose format differs.

#[path = "story_common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use crashwatch::story::{Crash, Runtime};

fn crashy() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("crashy");
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        // Built from the programs directory so the panic location reads
        // `crashy.rs:L:C`, like a crate's `src/main.rs:L:C`.
        let status = Command::new(rustc)
            .current_dir(crate_path("testdata/programs"))
            .args(["-g", "--edition", "2021", "-A", "warnings", "crashy.rs", "-o"])
            .arg(&out)
            .status()
            .expect("run rustc");
        assert!(status.success(), "rustc failed to build testdata/programs/crashy.rs");
        out
    })
}

/// Runs crashy in `mode` with RUST_BACKTRACE=`bt` and returns its tail.
fn run(mode: &str, bt: &str) -> Tail {
    let (stdout, stderr) = run_crashing(Command::new(crashy()).arg(mode).env("RUST_BACKTRACE", bt));
    Tail::streams(&stdout, &stderr)
}

fn numbered_frames(tail: &Tail) -> usize {
    tail.0
        .iter()
        .filter(|(_, t)| t.trim_start().split_once(": ").is_some_and(|(n, _)| n.parse::<u32>().is_ok()))
        .count()
}

#[test]
fn named_thread_without_backtrace() {
    let tail = run("thread", "0");
    let c = tail.crash();
    assert_eq!(c.runtime, Runtime::Rust);
    assert_eq!(c.kind, "panic");
    assert_eq!(c.value, "index out of bounds: the len is 3 but the index is 7");
    assert_eq!(c.thread.as_deref(), Some("ingest-worker"));
    // Only the panic location is known.
    assert_eq!(c.frames.len(), 1);
    assert_frame(&c.frames[0], None, "crashy.rs", 6);
    assert_eq!(c.frames[0].colno, Some(5));
    assert!(c.frames[0].in_app);
    assert!(c.chained.is_empty());
    assert!(tail.text(c.first_line).starts_with("thread 'ingest-worker'"));
    assert!(tail.text(c.last_line).starts_with("note: run with `RUST_BACKTRACE=1`"));
    assert_interleaving_harmless(&tail);
}

#[test]
fn named_thread_with_backtrace() {
    let tail = run("thread", "1");
    let c = tail.crash();
    assert_eq!(c.value, "index out of bounds: the len is 3 but the index is 7");
    assert_eq!(c.thread.as_deref(), Some("ingest-worker"));
    assert_eq!(c.frames.len(), numbered_frames(&tail));
    // Oldest first: the thread's closure, then our function, then std.
    let first = &c.frames[0];
    assert_frame(first, Some("crashy::main::{{closure}}"), "crashy.rs", 32);
    assert!(first.in_app);
    let last = c.frames.last().unwrap();
    assert!(last.function.as_deref().unwrap().ends_with("rust_begin_unwind"), "{last:?}");
    assert!(last.filename.as_deref().unwrap().ends_with("std/src/panicking.rs"));
    assert!(!last.in_app);
    let app: Vec<&str> = c.frames.iter().filter(|f| f.in_app).map(|f| f.function.as_deref().unwrap()).collect();
    assert_eq!(app, ["crashy::main::{{closure}}", "crashy::lookup"]);
    let lookup = c.frames.iter().find(|f| f.function.as_deref() == Some("crashy::lookup")).unwrap();
    assert_eq!((lookup.lineno, lookup.colno), (Some(6), Some(5)));
    assert!(tail.text(c.last_line).starts_with("note: Some details are omitted"));
    assert_interleaving_harmless(&tail);
}

#[test]
fn named_thread_with_full_backtrace() {
    let tail = run("thread", "full");
    let c = tail.crash();
    assert_eq!(c.thread.as_deref(), Some("ingest-worker"));
    assert_eq!(c.frames.len(), numbered_frames(&tail));
    assert!(c.frames.iter().all(|f| f.instruction_addr.as_deref().is_some_and(|a| a.starts_with("0x"))));
    // Hashes and crate disambiguators are stripped.
    for f in &c.frames {
        let func = f.function.as_deref().unwrap();
        assert!(!func.contains("::h") || !func.rsplit("::h").next().unwrap().chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!func.contains("std["), "{func}");
    }
    let names = functions(&c.frames);
    let closure = names.iter().position(|f| *f == "crashy::main::{{closure}}").expect("closure frame");
    let lookup = names.iter().position(|f| *f == "crashy::lookup").expect("lookup frame");
    assert!(closure < lookup, "oldest first: {names:?}");
    assert_frame(&c.frames[lookup], Some("crashy::lookup"), "crashy.rs", 6);
    // The newest frame is the unwinder inside std.
    let newest = c.frames.last().unwrap();
    assert!(newest.function.as_deref().unwrap().starts_with("std::"), "{newest:?}");
    assert!(!newest.in_app);
    assert_interleaving_harmless(&tail);
}

#[test]
fn multiline_message() {
    let tail = run("multiline", "0");
    let c = tail.crash();
    assert_eq!(c.value, "config invalid:\n  port: missing\n  host: empty");
    assert_eq!(c.thread.as_deref(), Some("main"));
    assert_frame(&c.frames[0], None, "crashy.rs", 38);
    assert_interleaving_harmless(&tail);
}

#[test]
fn unwrap_on_err() {
    let c = run("unwrap", "1").crash();
    assert_eq!(c.value, "called `Result::unwrap()` on an `Err` value: \"not a number\"");
    let app: Vec<&str> = c.frames.iter().filter(|f| f.in_app).map(|f| f.function.as_deref().unwrap()).collect();
    assert_eq!(app, ["crashy::main"]);
    assert_frame(c.frames.iter().find(|f| f.in_app).unwrap(), Some("crashy::main"), "crashy.rs", 46);
}

#[test]
fn stack_overflow() {
    let tail = run("overflow", "0");
    let c = tail.crash();
    assert_eq!(c.runtime, Runtime::Rust);
    assert_eq!(c.kind, "stack overflow");
    assert_eq!(c.value, "thread 'main' has overflowed its stack");
    assert_eq!(c.thread.as_deref(), Some("main"));
    assert!(c.frames.is_empty());
    assert!(tail.text(c.first_line).contains("has overflowed its stack"));
    assert!(tail.text(c.last_line).starts_with("fatal runtime error: stack overflow"));
}

#[test]
fn double_panic_is_one_story() {
    for bt in ["0", "1"] {
        let tail = run("double", bt);
        let c = tail.crash();
        // The abort comes from a panic in a destructor while unwinding; the
        // panics that led there are chained, nearest first.
        assert_eq!(c.kind, "panic");
        assert_eq!(c.value, "panic in a destructor during cleanup");
        assert_eq!(c.thread.as_deref(), Some("main"));
        assert_eq!(c.chained.len(), 2, "{c:#?}");
        assert_eq!(c.chained[0].value, "guard dropped while unwinding");
        assert_eq!(c.chained[1].value, "request failed: 503");
        // std always prints the second panic's backtrace in full.
        let drop = c.chained[0].frames.iter().find(|f| f.in_app && f.lineno == Some(13)).expect("drop frame");
        assert!(drop.function.as_deref().unwrap().contains("Drop>::drop"), "{drop:?}");
        let outer = &c.chained[1];
        if bt == "0" {
            assert_eq!(outer.frames.len(), 1);
            assert_frame(&outer.frames[0], None, "crashy.rs", 42);
        } else {
            assert!(functions(&outer.frames).contains(&"crashy::main"));
        }
        assert_eq!(c.first_line, outer.first_line);
        assert!(tail.text(c.first_line).starts_with("thread 'main'"));
        assert_eq!(tail.text(c.last_line), "thread caused non-unwinding panic. aborting.");
        assert_interleaving_harmless(&tail);
    }
}

#[test]
fn restarted_loop_reports_last_crash() {
    let tail = run("thread", "1").then(&run("unwrap", "0")).then(&Tail(vec![(false, "restarting".into())]));
    let c = tail.crash();
    assert_eq!(c.value, "called `Result::unwrap()` on an `Err` value: \"not a number\"");
    assert_eq!(c.thread.as_deref(), Some("main"));
}

#[test]
fn evicted_header_keeps_frames() {
    let tail = run("thread", "1");
    let full = tail.crash();
    // Drop everything up to and including frame 1's `at` line.
    let cut = tail.0.iter().position(|(_, t)| t.trim_start().starts_with("2: ")).unwrap();
    let c = tail.evict(cut).crash();
    assert_eq!(c.runtime, Runtime::Rust);
    assert_eq!(c.kind, "panic");
    assert_eq!(c.value, "");
    assert_eq!(c.frames.len(), full.frames.len() - 2);
    assert_eq!(c.frames[..], full.frames[..full.frames.len() - 2]);
}

/// Output of rustc before 1.73 (quoted message, location after it),
/// transcribed; today's rustc cannot produce it.
#[test]
fn pre_1_73_format() {
    let c = Tail::stderr(
        "thread 'main' panicked at 'called `Option::unwrap()` on a `None` value', src/main.rs:4:37\n\
         note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
    )
    .crash();
    assert_eq!(c.value, "called `Option::unwrap()` on a `None` value");
    assert_eq!(c.thread.as_deref(), Some("main"));
    assert_frame(&c.frames[0], None, "src/main.rs", 4);
    assert_eq!(c.last_line, 1);

    let c = Tail::stderr("thread 'db-pool' panicked at 'first\nsecond', src/pool.rs:10:5\nmore output").crash();
    assert_eq!(c.value, "first\nsecond");
    assert_eq!(c.thread.as_deref(), Some("db-pool"));
    assert_eq!((c.first_line, c.last_line), (0, 1));
}

/// Double panic as rustc < 1.71 printed it, transcribed.
#[test]
fn pre_1_71_double_panic() {
    let tail = Tail::stderr(
        "thread 'main' panicked at 'outer', src/main.rs:9:5\n\
         note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\
         thread 'main' panicked at 'in drop', src/main.rs:4:9\n\
         thread panicked while processing panic. aborting.\n",
    );
    let c = tail.crash();
    assert_eq!(c.value, "in drop");
    assert_eq!(c.chained.len(), 1);
    assert_eq!(c.chained[0].value, "outer");
    assert_eq!((c.first_line, c.last_line), (0, 3));
}

#[test]
fn panic_without_terminator_keeps_first_line() {
    // A custom hook printed the header shape but never a note; many lines of
    // unrelated output follow. Only the first line is the message.
    let mut text = String::from("thread 'main' panicked at src/main.rs:1:1:\nboom\n");
    for i in 0..100 {
        text.push_str(&format!("log line {i}\n"));
    }
    let c: Crash = Tail::stderr(&text).crash();
    assert_eq!(c.value, "boom");
    assert_eq!((c.first_line, c.last_line), (0, 1));
}

#[test]
fn allocation_failure() {
    require("rustc");
    let dir = tempdir();
    let src = dir.path().join("oom.rs");
    std::fs::write(
        &src,
        "fn main() {\n    let v: Vec<u8> = Vec::with_capacity(1 << 46);\n    println!(\"{}\", v.capacity());\n}\n",
    )
    .unwrap();
    let bin = dir.path().join("oom");
    let status = Command::new("rustc").arg(&src).arg("-o").arg(&bin).status().expect("rustc");
    assert!(status.success());
    // Cap the address space so the allocation fails instead of overcommitting.
    let (stdout, stderr) =
        run_crashing(Command::new("sh").arg("-c").arg(format!("ulimit -v 1000000; exec {}", bin.display())));
    let c = Tail::streams(&stdout, &stderr).crash();
    assert_eq!((c.runtime, c.kind.as_str()), (Runtime::Rust, "out of memory"));
    assert_eq!(c.value, format!("memory allocation of {} bytes failed", 1u64 << 46));
}

#[test]
fn message_that_looks_like_another_header() {
    let tail = Tail::stderr(
        "thread 'main' panicked at src/main.rs:3:5:\n\
         panic: disk full\n\
         note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
    );
    let c = tail.crash();
    assert_eq!((c.runtime, c.kind.as_str(), c.value.as_str()), (Runtime::Rust, "panic", "panic: disk full"));
    assert_eq!((c.first_line, c.last_line), (0, 2));
}
