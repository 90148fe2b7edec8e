//! Sanitizer reports: produced live with gcc -fsanitize=… when the sanitizer
//! runtimes are installed, and from the recorded copies in
//! testdata/sanitizers (see its README) always. Both go through the same
//! checks.

#[path = "story_common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use crashwatch::story::{Crash, Runtime};

fn fixture(name: &str) -> Tail {
    let path = crate_path(&format!("testdata/sanitizers/{name}.txt"));
    Tail::stderr(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Builds testdata/sanitizers/src/`name`.c with `flag` and runs it with
/// `env`. The sanitizer runtimes come with Debian's gcc (libasan, libubsan,
/// libtsan, liblsan); a machine without them fails here rather than skip.
fn live(name: &str, flag: &str, env: &[(&str, &str)]) -> Tail {
    require("gcc");
    // Named like the program so `(…/name+0x…)` module paths match the fixtures.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sanitizers");
    std::fs::create_dir_all(&dir).expect("create build dir");
    let out = dir.join(name);
    let built = Command::new("gcc")
        .current_dir(crate_path("testdata/sanitizers/src"))
        .args(["-g", "-O0", flag, &format!("{name}.c"), "-lpthread", "-o"])
        .arg(&out)
        .output()
        .expect("run gcc");
    assert!(built.status.success(), "gcc {flag} {name}.c failed:\n{}", String::from_utf8_lossy(&built.stderr));
    let run = Command::new(&out).envs(env.iter().copied()).output().expect("run sanitized program");
    Tail::streams(&String::from_utf8_lossy(&run.stdout), &String::from_utf8_lossy(&run.stderr))
}

/// (function, file suffix or package suffix, line) oldest first.
fn stack(c: &Crash) -> Vec<(String, String, Option<u32>)> {
    c.frames
        .iter()
        .map(|f| {
            let loc = f.filename.as_deref().or(f.package.as_deref()).unwrap_or("");
            let short = loc.rsplit('/').next().unwrap_or(loc);
            (f.function.clone().unwrap_or_default(), short.to_owned(), f.lineno)
        })
        .collect()
}

fn owned(v: &[(&str, &str, Option<u32>)]) -> Vec<(String, String, Option<u32>)> {
    v.iter().map(|(f, l, n)| (f.to_string(), l.to_string(), *n)).collect()
}

fn check_use_after_free(tail: &Tail) {
    let c = tail.crash();
    assert_eq!(c.runtime, Runtime::AddressSanitizer);
    assert_eq!(c.kind, "heap-use-after-free");
    assert!(c.value.starts_with("heap-use-after-free on address 0x"), "{}", c.value);
    assert_eq!(c.thread.as_deref(), Some("T0"));
    assert_eq!(
        stack(&c),
        owned(&[
            ("_start", "heap_use_after_free", None),
            ("__libc_start_main_impl", "libc-start.c", Some(360)),
            ("__libc_start_call_main", "libc_start_call_main.h", Some(58)),
            ("main", "heap_use_after_free.c", Some(12)),
            ("read_refs", "heap_use_after_free.c", Some(5)),
        ])
    );
    let in_app: Vec<bool> = c.frames.iter().map(|f| f.in_app).collect();
    assert_eq!(in_app, [false, false, false, true, true]);
    assert!(c.frames.iter().all(|f| f.instruction_addr.is_some()));
    assert!(tail.text(c.first_line).starts_with("====="));
    assert!(tail.text(c.first_line + 1).contains("ERROR: AddressSanitizer: heap-use-after-free"));
    assert!(tail.text(c.last_line).ends_with("==ABORTING"));
    assert_interleaving_harmless(tail);
}

#[test]
fn heap_use_after_free() {
    check_use_after_free(&fixture("heap_use_after_free"));
    {
        let t = live("heap_use_after_free", "-fsanitize=address", &[]);
        check_use_after_free(&t);
    }
}

fn check_stack_buffer_overflow(tail: &Tail) {
    let c = tail.crash();
    assert_eq!((c.runtime, c.kind.as_str()), (Runtime::AddressSanitizer, "stack-buffer-overflow"));
    assert_eq!(c.thread.as_deref(), Some("T0"));
    let s = stack(&c);
    assert_eq!(s.len(), 5);
    assert_eq!(s[0].0, "_start");
    assert_eq!(s[3], ("main".to_string(), "stack_buffer_overflow.c".to_string(), Some(11)));
    assert_eq!(s[4], ("checksum".to_string(), "stack_buffer_overflow.c".to_string(), Some(7)));
}

#[test]
fn stack_buffer_overflow() {
    check_stack_buffer_overflow(&fixture("stack_buffer_overflow"));
    {
        let t = live("stack_buffer_overflow", "-fsanitize=address", &[]);
        check_stack_buffer_overflow(&t);
    }
}

fn check_leak(tail: &Tail) {
    let c = tail.crash();
    assert_eq!(c.runtime, Runtime::LeakSanitizer);
    assert_eq!(c.kind, "detected memory leaks");
    assert_eq!(c.value, "6 byte(s) leaked in 1 allocation(s).");
    assert_eq!(c.thread, None);
    assert_eq!(
        stack(&c),
        owned(&[
            ("__libc_start_call_main", "libc_start_call_main.h", Some(58)),
            ("main", "leak.c", Some(11)),
            ("copy_name", "leak.c", Some(5)),
            ("__interceptor_malloc", "asan_malloc_linux.cpp", Some(69)),
        ])
    );
    assert!(!c.frames[3].in_app);
    assert!(tail.text(c.last_line).starts_with("SUMMARY: AddressSanitizer: 6 byte(s) leaked"));
    assert_interleaving_harmless(tail);
}

#[test]
fn leak() {
    check_leak(&fixture("leak"));
    {
        let t = live("leak", "-fsanitize=address", &[]);
        check_leak(&t);
    }
}

fn check_signed_overflow(tail: &Tail) {
    let c = tail.crash();
    assert_eq!(c.runtime, Runtime::UndefinedBehaviorSanitizer);
    assert_eq!(c.kind, "undefined-behavior");
    assert_eq!(c.value, "signed integer overflow: 2147483647 + 1 cannot be represented in type 'int'");
    let s = stack(&c);
    assert_eq!(s.len(), 5);
    assert_eq!(s[0].0, "_start");
    assert_eq!(s[3], ("main".to_string(), "signed_overflow.c".to_string(), Some(8)));
    assert_eq!(s[4], ("add_credit".to_string(), "signed_overflow.c".to_string(), Some(4)));
    assert!(tail.text(c.first_line).starts_with("signed_overflow.c:4:65: runtime error:"));
}

fn check_signed_overflow_without_stack(tail: &Tail) {
    let c = tail.crash();
    assert_eq!(c.runtime, Runtime::UndefinedBehaviorSanitizer);
    assert_eq!(c.frames.len(), 1);
    let f = &c.frames[0];
    assert_eq!(
        (f.filename.as_deref(), f.lineno, f.colno, f.function.as_deref()),
        (Some("signed_overflow.c"), Some(4), Some(65), None)
    );
    assert_eq!(c.first_line, c.last_line);
}

#[test]
fn signed_overflow() {
    check_signed_overflow(&fixture("signed_overflow"));
    check_signed_overflow_without_stack(&fixture("signed_overflow_nostack"));
    // UBSan reports and carries on; make it stop like a crash would.
    let env = [("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")];
    {
        let t = live("signed_overflow", "-fsanitize=undefined", &env);
        check_signed_overflow(&t);
    }
    {
        let t = live("signed_overflow", "-fsanitize=undefined", &[("UBSAN_OPTIONS", "halt_on_error=1")]);
        check_signed_overflow_without_stack(&t);
    }
}

fn check_data_race(tail: &Tail) {
    let c = tail.crash();
    assert_eq!(c.runtime, Runtime::ThreadSanitizer);
    assert_eq!(c.kind, "data race");
    assert!(c.value.starts_with("data race ") && c.value.ends_with("data_race.c:7 in bump"), "{}", c.value);
    // Which of the two threads is reported first depends on scheduling.
    assert!(matches!(c.thread.as_deref(), Some("T1" | "T2")), "{:?}", c.thread);
    assert_eq!(stack(&c), owned(&[("bump", "data_race.c", Some(7))]));
    assert_eq!(c.frames[0].package.as_deref().map(|p| p.ends_with("data_race")), Some(true));
    assert_eq!(tail.text(c.first_line), "==================");
    assert_eq!(tail.text(c.last_line), "ThreadSanitizer: reported 1 warnings");
}

#[test]
fn data_race() {
    check_data_race(&fixture("data_race"));
    {
        let t = live("data_race", "-fsanitize=thread", &[]);
        check_data_race(&t);
    }
}

#[test]
fn evicted_report_head_recovers_kind_from_summary() {
    let tail = fixture("heap_use_after_free");
    let full = tail.crash();
    // Lose the rule, the ERROR line, the access line and frame #0.
    let c = tail.evict(4).crash();
    assert_eq!((c.runtime, c.kind.as_str(), c.value.as_str()), (Runtime::AddressSanitizer, "heap-use-after-free", ""));
    assert_eq!(c.frames[..], full.frames[..4]);
    assert_eq!(c.last_line, tail.0.len() - 5);

    let tail = fixture("leak");
    let c = tail.evict(5).crash();
    assert_eq!((c.runtime, c.kind.as_str()), (Runtime::LeakSanitizer, "detected memory leaks"));
    assert_eq!(c.frames.len(), 4);
}

fn check_null_deref(tail: &Tail) {
    let c = tail.crash();
    assert_eq!(c.runtime, Runtime::AddressSanitizer);
    assert_eq!(c.kind, "SEGV");
    assert!(c.value.starts_with("SEGV on unknown address 0x000000000000 (pc 0x"), "{}", c.value);
    assert_eq!(c.thread.as_deref(), Some("T0"));
    let s = stack(&c);
    assert_eq!(s.len(), 5);
    assert_eq!(s[0].0, "_start");
    assert_eq!(s[3], ("main".to_string(), "null_deref.c".to_string(), Some(9)));
    assert_eq!(s[4], ("port_of".to_string(), "null_deref.c".to_string(), Some(5)));
    assert_eq!(tail.text(c.first_line), "AddressSanitizer:DEADLYSIGNAL");
    assert!(tail.text(c.last_line).ends_with("==ABORTING"));
    assert_interleaving_harmless(tail);
}

#[test]
fn null_deref() {
    check_null_deref(&fixture("null_deref"));
    {
        let t = live("null_deref", "-fsanitize=address", &[]);
        check_null_deref(&t);
    }
}
