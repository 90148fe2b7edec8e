//! A fault handler that gives up: the tracer lets the handled faults pass
//! and must still capture the one that kills. Runtimes do this — Rust's
//! SIGSEGV handler sets `SIG_DFL` and returns when the fault is not a stack
//! overflow, the JVM's handler aborts on a fault it does not own — and the
//! tracer answers "is it handled?" from a file it keeps open per process, so
//! these tests guard against an answer that outlives the handler.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

/// `crashwatch run -- PROGRAM…` with a private spool.
fn run(program: &mut Command) -> (Output, tempfile::TempDir) {
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = crashwatch(spool.path());
    cmd.arg("run").arg("--").arg(program.get_program()).args(program.get_args());
    if let Some(dir) = program.get_current_dir() {
        cmd.current_dir(dir);
    }
    (run_with_timeout(cmd, LIMIT), spool)
}

fn report_dir(spool: &Path, report: &Value) -> PathBuf {
    spool.join("reports").join(report["id"].as_str().unwrap())
}

/// The crash of the only report, checked against its minidump; returns the
/// report and the functions of the blamed thread's stack, innermost first.
fn captured(out: &Output, spool: &Path, signal: i32) -> (Value, Vec<String>) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + signal), "{stderr}");
    let report = only_report(spool);
    assert_eq!(report["status"]["signaled"]["signal"], signal, "died of its real signal");
    let crash = &report["crash"];
    assert_eq!(crash["signal"], signal, "{report:#}");
    let dir = report_dir(spool, &report);
    let file = crash["minidump"]["file"].as_str().unwrap_or_else(|| panic!("no minidump: {report:#}"));
    let facts = read_dump(&dir.join(file));
    assert_eq!(facts.exception_code, signal as u32);
    assert_eq!(i64::from(facts.crashing_tid), crash["tid"].as_i64().unwrap());
    assert_eq!(facts.thread_ids.len() as u64, crash["threads"].as_u64().unwrap());
    let stacks: Value = serde_json::from_slice(&std::fs::read(dir.join("stacks.json")).unwrap()).unwrap();
    let blamed = &stacks["threads"][stacks["crashing_thread"].as_u64().unwrap() as usize];
    let functions =
        blamed["frames"].as_array().unwrap().iter().filter_map(|f| f["function"].as_str()).map(String::from);
    (report.clone(), functions.collect())
}

/// `segv_reset MODE`: 100 faults recovered by the handler, then one it
/// gives up on; the refault is captured on the faulting thread.
fn check_segv_reset(mode: &str) {
    let (out, spool) = run(Command::new(fixture("segv_reset")).arg(mode));
    let (report, functions) = captured(&out, spool.path(), libc::SIGSEGV);
    assert_eq!(printed(&out.stdout, "handled"), 100, "the handled faults reached the program");
    let crash = &report["crash"];
    assert_eq!(crash["tid"].as_i64().unwrap(), printed(&out.stdout, "tid"));
    assert_eq!((crash["code_name"].as_str(), crash["fault_address"].as_str()), (Some("SEGV_MAPERR"), Some("0x40")));
    assert_eq!(crash["threads"], 1);
    assert_eq!(functions.first().map(String::as_str), Some("load_from_0x40"), "{functions:?}");
}

#[test]
fn a_handler_that_sets_sig_dfl_and_returns_is_captured_on_the_refault() {
    check_segv_reset("return");
}

#[test]
fn a_one_shot_handler_reset_by_the_kernel_is_captured_on_the_refault() {
    check_segv_reset("oneshot");
}

#[test]
fn a_handler_removed_by_another_thread_is_captured_on_the_next_fault() {
    check_segv_reset("other-thread");
}

#[test]
fn rusts_handler_gives_a_null_write_back_and_the_refault_is_captured() {
    let (out, spool) = run(Command::new(rust_fixture("rust_crasher")).arg("null"));
    let (report, functions) = captured(&out, spool.path(), libc::SIGSEGV);
    assert_eq!(report["crash"]["fault_address"], "0x40");
    assert_eq!(report["crash"]["tid"], report["crash"]["pid"], "the main thread");
    assert!(functions.iter().any(|f| f == "rust_crasher::main"), "{functions:?}");
}

fn java_classes() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("java-hard-crash");
        // Its output is only warnings about sun.misc.Unsafe, unless it fails.
        let javac = Command::new("javac")
            .arg("-d")
            .arg(&out)
            .arg(testdata("programs/HardCrash.java"))
            .output()
            .expect("javac is needed for the JVM test (Debian: default-jdk-headless)");
        assert!(javac.status.success(), "javac failed: {}", String::from_utf8_lossy(&javac.stderr));
        out
    })
}

/// `key=N` in the JVM's fatal error header line
/// `#  SIGSEGV (0xb) at pc=0x…, pid=P, tid=T`.
fn header_value(lines: &[String], key: &str) -> i64 {
    let header = lines.iter().find(|l| l.starts_with("#  SIGSEGV (0xb) at pc=")).expect("the JVM's error header");
    header
        .split(", ")
        .find_map(|part| part.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {header:?}"))
}

#[test]
fn a_jvm_hard_crash_passes_its_sigsegv_to_the_jvm_and_captures_the_abort() {
    let work = tempfile::tempdir().unwrap();
    let error_file = work.path().join("hs_err.log");
    let mut java = Command::new("java");
    java.arg(format!("-XX:ErrorFile={}", error_file.display()))
        .arg("-cp")
        .arg(java_classes())
        .arg("HardCrash")
        .current_dir(work.path());
    let (out, spool) = run(&mut java);
    let (report, functions) = captured(&out, spool.path(), libc::SIGABRT);
    // The JVM's handler saw the SIGSEGV: it wrote its error report, naming
    // the thread that faulted, and then aborted on that same thread.
    let hs_err = std::fs::read_to_string(&error_file).expect("the JVM wrote its error file");
    assert!(hs_err.contains("SIGSEGV (0xb)"), "{hs_err}");
    let tail = tail_texts(&report);
    let crash = &report["crash"];
    assert_eq!(crash["pid"].as_i64().unwrap(), header_value(&tail, "pid"));
    assert_eq!(crash["tid"].as_i64().unwrap(), header_value(&tail, "tid"));
    assert_eq!(crash["code_name"], "SI_TKILL", "abort() raised it");
    assert!(functions.iter().any(|f| f.starts_with("VMError::report_and_die")), "{functions:?}");
}
