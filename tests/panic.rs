//! Panics and runtime crashes that end in an exit code, told on stderr, as
//! reports: real programs under the real binary.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn run(spool: &std::path::Path, flags: &[&str], program: &[&str]) -> std::process::Output {
    let mut cmd = crashwatch(spool);
    cmd.env_remove("RUST_BACKTRACE").arg("run").args(flags).arg("--").args(program);
    run_with_timeout(cmd, LIMIT)
}

#[test]
fn a_panicking_thread_that_main_survives_leaves_no_report() {
    let exe = rust_fixture_with("rust_crasher", "unwind");
    let spool = tempfile::tempdir().unwrap();
    let out = run(spool.path(), &[], &[exe.to_str().unwrap(), "panic"]);
    // The panicking thread is joined; main returns normally: exit 0, no
    // report at all, although the text is there.
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("panicked at"));
    assert!(reports(spool.path()).is_empty());
}

#[test]
fn a_rust_main_thread_panic_with_and_without_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("main_panic.rs");
    std::fs::write(&src, "fn parse(s: &str) -> u32 { s.parse().expect(\"config value\") }\nfn main() { println!(\"starting\"); parse(\"x\"); }\n").unwrap();
    let exe = dir.path().join("main_panic");
    let built = Command::new("rustc").args(["-g", "-o"]).arg(&exe).arg(&src).status().unwrap();
    assert!(built.success());

    let spool = tempfile::tempdir().unwrap();
    let out = run(spool.path(), &[], &[exe.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(101));
    let report = only_report(spool.path());
    assert_eq!(report["kind"], "panic");
    let panic = &report["panic"];
    assert_eq!(panic["runtime"], "Rust");
    assert_eq!(panic["thread"], "main");
    assert_eq!(panic["value"], "config value: ParseIntError { kind: InvalidDigit }");
    // Without a backtrace the location is the only frame.
    let frames = panic["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 1, "{frames:#?}");
    assert_eq!(frames[0]["lineno"], 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("crashwatch: panic: Rust panic in thread 'main': config value"), "{stderr}");

    // --rust-backtrace: the frames of the stack, oldest first, ours among them.
    let spool = tempfile::tempdir().unwrap();
    run(spool.path(), &["--rust-backtrace"], &[exe.to_str().unwrap()]);
    let report = only_report(spool.path());
    let functions: Vec<&str> =
        report["panic"]["frames"].as_array().unwrap().iter().filter_map(|f| f["function"].as_str()).collect();
    let main = functions.iter().position(|f| *f == "main_panic::main").expect("main in the frames");
    let parse = functions.iter().position(|f| *f == "main_panic::parse").expect("parse in the frames");
    assert!(main < parse, "oldest first: {functions:#?}");
}

#[test]
fn a_python_traceback_is_a_panic_report_with_frames_in_order() {
    let spool = tempfile::tempdir().unwrap();
    let script =
        "def ratio(a, b):\n    return a / b\n\ndef handler():\n    return ratio(1, 0)\n\nprint('serving')\nhandler()\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.py");
    std::fs::write(&path, script).unwrap();
    let out = run(spool.path(), &[], &["python3", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let report = only_report(spool.path());
    assert_eq!(report["kind"], "panic");
    let panic = &report["panic"];
    assert_eq!(panic["runtime"], "Python");
    assert_eq!(panic["kind"], "ZeroDivisionError");
    assert_eq!(panic["value"], "division by zero");
    let frames: Vec<(&str, i64)> = panic["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["function"].as_str().unwrap(), f["lineno"].as_i64().unwrap()))
        .collect();
    assert_eq!(frames, [("<module>", 8), ("handler", 5), ("ratio", 2)]);
}

#[test]
fn panic_text_from_a_program_that_exits_0_is_no_report() {
    let spool = tempfile::tempdir().unwrap();
    let out = run(
        spool.path(),
        &[],
        &["sh", "-c", "echo \"thread 'main' panicked at src/main.rs:1:1:\" >&2; echo boom >&2; exit 0"],
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(reports(spool.path()).is_empty());
}

#[test]
fn a_traceback_logged_long_before_the_end_is_not_the_cause() {
    // The program logged a handled traceback, served on, then exited 3.
    let spool = tempfile::tempdir().unwrap();
    let script = "import traceback, sys\ntry:\n    1/0\nexcept Exception:\n    traceback.print_exc()\nfor i in range(50):\n    print('request', i, file=sys.stderr)\nsys.exit(3)\n";
    let out = run(spool.path(), &[], &["python3", "-c", script]);
    assert_eq!(out.status.code(), Some(3));
    let report = only_report(spool.path());
    assert_eq!(report["kind"], "exit");
    assert_eq!(report["panic"], Value::Null);
}
