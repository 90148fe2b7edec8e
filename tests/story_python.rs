//! Python crashes produced by the real python3 (testdata/programs/python/*.py).

#[path = "story_common/mod.rs"]
mod common;

use std::process::Command;

use common::*;
use crashwatch::story::{Crash, Runtime};

fn script(name: &str) -> String {
    crate_path(&format!("testdata/programs/python/{name}")).to_string_lossy().into_owned()
}

/// Runs python3 with `args` and returns the tail (stdout first, then stderr).
fn python(args: &[&str]) -> Tail {
    require("python3");
    let (stdout, stderr) = run_crashing(Command::new("python3").args(args).env_remove("PYTHONSTARTUP"));
    Tail::streams(&stdout, &stderr)
}

fn py_crash(tail: &Tail) -> Crash {
    let c = tail.crash();
    assert_eq!(c.runtime, Runtime::Python);
    c
}

#[test]
fn zero_division() {
    let tail = python(&[&script("zero_division.py")]);
    let c = py_crash(&tail);
    assert_eq!(c.kind, "ZeroDivisionError");
    assert_eq!(c.value, "division by zero");
    assert_eq!(c.thread, None);
    assert_eq!(c.frames.len(), 3);
    assert_frame(&c.frames[0], Some("<module>"), "zero_division.py", 11);
    assert_frame(&c.frames[1], Some("report"), "zero_division.py", 8);
    assert_frame(&c.frames[2], Some("ratio"), "zero_division.py", 3);
    assert!(c.frames.iter().all(|f| f.in_app && f.abs_path.is_some()));
    assert!(c.chained.is_empty());
    assert_eq!(tail.text(c.first_line), "Traceback (most recent call last):");
    assert_eq!(tail.text(c.last_line), "ZeroDivisionError: division by zero");
    assert_interleaving_harmless(&tail);
}

#[test]
fn cause_and_context_chain() {
    let tail = python(&[&script("chained.py")]);
    let c = py_crash(&tail);
    // The last exception printed is the one that killed the program.
    assert_eq!((c.kind.as_str(), c.value.as_str()), ("ZeroDivisionError", "division by zero"));
    assert_eq!(c.frames.len(), 2);
    assert_frame(&c.frames[0], Some("<module>"), "chained.py", 26);
    assert_frame(&c.frames[1], Some("main"), "chained.py", 23);
    // Nearest cause first: the ConfigError it was handling, then the
    // KeyError that ConfigError was raised from.
    assert_eq!(c.chained.len(), 2);
    let config = &c.chained[0];
    assert_eq!((config.kind.as_str(), config.value.as_str()), ("ConfigError", "port missing"));
    assert_eq!(config.frames.len(), 2);
    assert_frame(&config.frames[0], Some("main"), "chained.py", 20);
    assert_frame(&config.frames[1], Some("start"), "chained.py", 15);
    let key = &c.chained[1];
    assert_eq!((key.kind.as_str(), key.value.as_str()), ("KeyError", "'port'"));
    assert_frame(&key.frames[0], Some("start"), "chained.py", 13);
    assert_frame(&key.frames[1], Some("load"), "chained.py", 8);
    // The story spans all three tracebacks.
    assert_eq!(c.first_line, key.first_line);
    assert_eq!(tail.text(c.first_line), "Traceback (most recent call last):");
    assert_eq!(tail.text(key.last_line), "KeyError: 'port'");
    assert_eq!(tail.text(c.last_line), "ZeroDivisionError: division by zero");
    assert!(key.last_line < config.first_line && config.last_line < c.last_line);
    assert_interleaving_harmless(&tail);
}

#[test]
fn syntax_error_in_main_script_has_no_traceback_header() {
    let tail = python(&[&script("bad_syntax.py")]);
    let c = py_crash(&tail);
    assert_eq!((c.kind.as_str(), c.value.as_str()), ("SyntaxError", "invalid syntax"));
    assert_eq!(c.frames.len(), 1);
    assert_frame(&c.frames[0], None, "bad_syntax.py", 1);
    assert!(tail.text(c.first_line).starts_with("  File "));
}

#[test]
fn syntax_error_while_importing() {
    let tail = python(&[&script("imports_bad_syntax.py")]);
    let c = py_crash(&tail);
    assert_eq!((c.kind.as_str(), c.value.as_str()), ("SyntaxError", "invalid syntax"));
    // The importing frame, then the location of the error (no function).
    assert_eq!(c.frames.len(), 2);
    assert_frame(&c.frames[0], Some("<module>"), "imports_bad_syntax.py", 2);
    assert_frame(&c.frames[1], None, "bad_syntax.py", 1);
}

#[test]
fn module_qualified_type_and_library_frames() {
    let tail = python(&[&script("multiline_and_module.py"), "json"]);
    let c = py_crash(&tail);
    assert_eq!(c.kind, "json.decoder.JSONDecodeError");
    assert_eq!(c.value, "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)");
    assert_frame(&c.frames[0], Some("<module>"), "multiline_and_module.py", 7);
    assert!(c.frames[0].in_app);
    // The json frames are the standard library's.
    assert!(c.frames.len() >= 2);
    assert!(c.frames[1..].iter().all(|f| !f.in_app && f.filename.as_deref().unwrap().contains("json/")));
    assert_eq!(c.frames.last().unwrap().function.as_deref(), Some("raw_decode"));
}

#[test]
fn multiline_message() {
    let tail = python(&[&script("multiline_and_module.py"), "rows"]);
    let c = py_crash(&tail);
    assert_eq!(c.kind, "ValueError");
    assert_eq!(c.value, "bad rows:\nrow 1: empty\nrow 2: empty");
    assert_eq!(tail.text(c.last_line), "row 2: empty");
    assert_interleaving_harmless(&tail);
}

#[test]
fn faulthandler_segfault() {
    let tail = python(&["-X", "faulthandler", &script("segfault.py")]);
    let c = py_crash(&tail);
    assert_eq!((c.kind.as_str(), c.value.as_str()), ("Fatal Python error", "Segmentation fault"));
    assert!(c.thread.as_deref().is_some_and(|t| t.starts_with("0x")), "{:?}", c.thread);
    // faulthandler prints most recent first; frames are oldest first.
    assert_eq!(c.frames.len(), 3);
    assert_frame(&c.frames[0], Some("<module>"), "segfault.py", 9);
    assert_frame(&c.frames[1], Some("poke"), "segfault.py", 6);
    assert_eq!(c.frames[2].function.as_deref(), Some("string_at"));
    assert!(c.frames[2].filename.as_deref().unwrap().ends_with("ctypes/__init__.py"));
    assert!(!c.frames[2].in_app);
    assert_eq!(tail.text(c.first_line), "Fatal Python error: Segmentation fault");
    assert!(tail.text(c.last_line).contains("segfault.py\", line 9 in <module>"));
    assert_interleaving_harmless(&tail);
}

#[test]
fn exception_group() {
    let tail = python(&[&script("group.py")]);
    let c = py_crash(&tail);
    assert_eq!((c.kind.as_str(), c.value.as_str()), ("ExceptionGroup", "2 jobs failed (2 sub-exceptions)"));
    assert_eq!(c.frames.len(), 2);
    assert_frame(&c.frames[0], Some("<module>"), "group.py", 6);
    assert_frame(&c.frames[1], Some("run_all"), "group.py", 3);
    assert_eq!(tail.text(c.last_line), "    +------------------------------------");
}

#[test]
fn recursion_error_with_repeated_lines() {
    let tail = python(&["-c", "def r(n):\n    return r(n + 1)\nr(0)\n"]);
    let c = py_crash(&tail);
    assert_eq!(c.kind, "RecursionError");
    assert_eq!(c.value, "maximum recursion depth exceeded");
    assert_eq!(functions(&c.frames), ["<module>", "r", "r", "r"]);
    assert_eq!(c.frames[0].filename.as_deref(), Some("<string>"));
    assert_eq!(c.frames[0].abs_path, None);
}

#[test]
fn evicted_head_still_yields_chain() {
    let tail = python(&[&script("chained.py")]);
    let full = py_crash(&tail);
    // stdout's "cleaning up" is line 0; stderr starts at 1. Dropping the
    // header and the first frame leaves the tail starting on a code line.
    let header = tail.0.iter().position(|(_, t)| t.starts_with("Traceback")).unwrap();
    let c = py_crash(&tail.evict(header + 2));
    assert_eq!(c.kind, "ZeroDivisionError");
    assert_eq!(c.frames, full.frames);
    assert_eq!(c.chained.len(), 2);
    assert_eq!(positionless(&c.chained[0]), positionless(&full.chained[0]));
    let key = &c.chained[1];
    assert_eq!(key.kind, "KeyError");
    assert_eq!(functions(&key.frames), ["load"]);

    // Only the last traceback's tail survives.
    let last_header = tail.0.iter().rposition(|(_, t)| t.starts_with("Traceback")).unwrap();
    let c = py_crash(&tail.evict(last_header + 3));
    assert_eq!(c.kind, "ZeroDivisionError");
    assert_eq!(functions(&c.frames), ["main"]);
    assert!(c.chained.is_empty());
}

#[test]
fn traceback_text_inside_a_log_line_is_not_a_story() {
    let t = Tail(vec![
        (true, "INFO got Traceback (most recent call last): from worker".into()),
        (true, "WARN   File \"x.py\", line 3, in f".into()),
        (true, "ValueError: nope".into()),
    ]);
    assert_eq!(t.detect(), None);
}

#[test]
fn restarted_program_after_traceback() {
    let first = python(&[&script("zero_division.py")]);
    let boot = Tail(vec![(true, "worker booting".into()), (true, "worker ready".into())]);
    let second = python(&[&script("multiline_and_module.py"), "json"]);
    let all = first.clone().then(&boot).then(&second);
    let c = all.crash();
    assert_eq!(c.kind, "json.decoder.JSONDecodeError");
    assert_eq!(all.text(c.first_line), "Traceback (most recent call last):");
    // Known limit: with nothing after them, lines following a traceback
    // cannot be told from a multi-line message.
    let c = first.then(&boot).crash();
    assert_eq!(c.value, "division by zero\nworker booting\nworker ready");
}
