//! Go crash output recorded from go1.19 (testdata/go, see its README): the
//! product's CI has no Go toolchain, so these are fixtures.

#[path = "story_common/mod.rs"]
mod common;

use common::*;
use crashwatch::story::{Crash, Runtime};

fn fixture(name: &str) -> Tail {
    let path = crate_path(&format!("testdata/go/{name}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tail::stderr(&text)
}

fn go_crash(name: &str) -> (Tail, Crash) {
    let tail = fixture(name);
    let c = tail.crash();
    assert_eq!(c.runtime, Runtime::Go);
    (tail, c)
}

/// (module, function, file suffix, line), oldest first.
fn go_frames(c: &Crash) -> Vec<(Option<&str>, &str, &str, Option<u32>)> {
    c.frames
        .iter()
        .map(|f| {
            let file = f.filename.as_deref().unwrap_or("");
            let short = file.rsplit('/').take(2).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>();
            let short = &file[file.len() - short.join("/").len()..];
            (f.module.as_deref(), f.function.as_deref().unwrap_or("?"), short, f.lineno)
        })
        .collect()
}

#[test]
fn plain_panic() {
    let (tail, c) = go_crash("panic");
    assert_eq!(c.kind, "panic");
    assert_eq!(c.value, "config: missing field \"listen\"");
    assert_eq!(c.thread.as_deref(), Some("goroutine 1 [running]"));
    assert_eq!(
        go_frames(&c),
        [(Some("main"), "main", "crashy/main.go", Some(79)), (Some("main"), "plainPanic", "crashy/main.go", Some(19)),]
    );
    assert!(c.frames.iter().all(|f| f.in_app));
    assert_eq!(c.frames[0].abs_path.as_deref(), c.frames[0].filename.as_deref());
    assert_eq!((c.first_line, c.last_line), (0, tail.0.len() - 1));
    assert_interleaving_harmless(&tail);
}

#[test]
fn nil_map_write() {
    let (_, c) = go_crash("nil_map");
    assert_eq!((c.kind.as_str(), c.value.as_str()), ("panic", "assignment to entry in nil map"));
    assert_eq!(
        go_frames(&c),
        [
            (Some("main"), "main", "crashy/main.go", Some(81)),
            (Some("main"), "nilMap", "crashy/main.go", Some(24)),
            (Some("main"), "(*Server).register", "crashy/main.go", Some(15)),
        ]
    );
}

#[test]
fn nil_pointer_with_signal_line() {
    let (tail, c) = go_crash("nil_pointer");
    assert_eq!(c.value, "runtime error: invalid memory address or nil pointer dereference");
    assert_eq!(go_frames(&c), [(Some("main"), "main", "crashy/main.go", Some(94))]);
    assert_eq!(c.last_line, tail.0.len() - 1);
}

#[test]
fn all_goroutines_asleep() {
    let (_, c) = go_crash("deadlock");
    assert_eq!(c.kind, "fatal error");
    assert_eq!(c.value, "all goroutines are asleep - deadlock!");
    assert_eq!(c.thread.as_deref(), Some("goroutine 1 [chan receive]"));
    assert_eq!(
        go_frames(&c),
        [(Some("main"), "main", "crashy/main.go", Some(83)), (Some("main"), "deadlock", "crashy/main.go", Some(29))]
    );
}

#[test]
fn concurrent_map_writes_uses_first_goroutine() {
    let (tail, c) = go_crash("concurrent_map_writes");
    assert_eq!(c.kind, "fatal error");
    assert_eq!(c.value, "concurrent map writes");
    // The goroutine id varies between runs; the state does not.
    let thread = c.thread.as_deref().unwrap();
    assert!(thread.starts_with("goroutine ") && thread.ends_with(" [running]"), "{thread}");
    // `created by` is the oldest frame.
    assert_eq!(
        go_frames(&c),
        [
            (Some("main"), "concurrentMapWrites", "crashy/main.go", Some(37)),
            (Some("main"), "concurrentMapWrites.func1", "crashy/main.go", Some(40)),
        ]
    );
    // All the other goroutines belong to the story.
    assert_eq!(c.last_line, tail.0.len() - 1);
    assert_interleaving_harmless(&tail);
}

#[test]
fn index_out_of_range_in_goroutine() {
    let (_, c) = go_crash("index_out_of_range_goroutine");
    assert_eq!(c.value, "runtime error: index out of range [5] with length 3");
    assert!(c.thread.as_deref().unwrap().ends_with("[running]"));
    assert_ne!(c.thread.as_deref(), Some("goroutine 1 [running]"));
    assert_eq!(
        go_frames(&c),
        [
            (Some("main"), "indexInGoroutine", "crashy/main.go", Some(50)),
            (Some("main"), "indexInGoroutine.func1", "crashy/main.go", Some(51)),
            (Some("main"), "worker", "crashy/main.go", Some(58)),
        ]
    );
}

#[test]
fn recovered_then_repanicked() {
    let (_, c) = go_crash("repanic_recovered");
    assert_eq!(c.value, "cleanup failed after: first failure");
    assert_eq!(c.chained.len(), 1);
    assert_eq!((c.chained[0].kind.as_str(), c.chained[0].value.as_str()), ("panic", "first failure"));
    assert_eq!(
        go_frames(&c),
        [
            (Some("main"), "main", "crashy/main.go", Some(89)),
            (Some("main"), "repanic", "crashy/main.go", Some(66)),
            (None, "panic", "runtime/panic.go", Some(884)),
            (Some("main"), "repanic.func1", "crashy/main.go", Some(64)),
        ]
    );
    assert!(!c.frames[2].in_app, "runtime frame is not in-app");
}

#[test]
fn multiline_panic_message() {
    let (_, c) = go_crash("multiline_panic");
    assert_eq!(c.value, "line one\nline two");
    assert_eq!(c.frames.len(), 1);
}

#[test]
fn cgo_segfault_prefers_goroutine_over_runtime_stack() {
    let (tail, c) = go_crash("cgo_sigsegv");
    assert_eq!(c.kind, "fatal error");
    assert_eq!(c.value, "unexpected signal during runtime execution");
    assert_eq!(c.thread.as_deref(), Some("goroutine 1 [syscall]"));
    assert_eq!(
        go_frames(&c),
        [
            (Some("runtime"), "goexit", "runtime/asm_amd64.s", Some(1594)),
            (Some("runtime"), "main", "runtime/proc.go", Some(250)),
            (Some("main"), "main", "cgocrash/main.go", Some(16)),
            (Some("main"), "crashInC", "cgocrash/main.go", Some(11)),
            (Some("main"), "_Cfunc_deref", "_cgo_gotypes.go", Some(43)),
            (Some("runtime"), "cgocall", "runtime/cgocall.go", Some(158)),
        ]
    );
    let in_app: Vec<bool> = c.frames.iter().map(|f| f.in_app).collect();
    assert_eq!(in_app, [false, false, true, true, true, false]);
    assert_eq!(c.last_line, tail.0.len() - 1);
}

#[test]
fn signal_block_with_register_dump() {
    let (tail, c) = go_crash("sigabrt");
    assert_eq!((c.kind.as_str(), c.value.as_str()), ("SIGABRT", "abort"));
    assert_eq!(c.thread.as_deref(), Some("goroutine 1 [running]"));
    assert_eq!(c.frames.len(), 8);
    assert_eq!(go_frames(&c)[0], (Some("runtime"), "goexit", "runtime/asm_amd64.s", Some(1594)));
    assert_eq!(go_frames(&c)[3], (Some("main"), "sigabrt", "crashy/main.go", Some(71)));
    assert_eq!(go_frames(&c)[7], (Some("runtime/internal/syscall"), "Syscall6", "syscall/asm_linux_amd64.s", Some(36)));
    // The register dump closes the story.
    assert!(tail.text(c.last_line).starts_with("gs "), "{}", tail.text(c.last_line));
}

#[test]
fn restart_loop_reports_the_last_panic() {
    let tail = fixture("deadlock")
        .then(&Tail(vec![(false, "supervisor: restarting".into()), (true, "starting up".into())]))
        .then(&fixture("nil_map"));
    let c = tail.crash();
    assert_eq!(c.value, "assignment to entry in nil map");
    assert_eq!(tail.text(c.first_line), "panic: assignment to entry in nil map");
}

#[test]
fn evicted_head_keeps_goroutine_frames() {
    let tail = fixture("concurrent_map_writes");
    let full = tail.crash();
    // Lose the `fatal error:` line and the blank after it.
    let c = tail.evict(2).crash();
    assert_eq!(c.runtime, Runtime::Go);
    assert_eq!(c.kind, "");
    assert_eq!(c.thread, full.thread);
    assert_eq!(c.frames, full.frames);
    // Mid-goroutine: the rest of the first goroutine's frames survive.
    let c = fixture("nil_map").evict(5).crash();
    assert_eq!(
        go_frames(&c),
        [(Some("main"), "main", "crashy/main.go", Some(81)), (Some("main"), "nilMap", "crashy/main.go", Some(24))]
    );
    assert_eq!(c.thread, None);
}

#[test]
fn bare_go_header_needs_evidence() {
    // On stdout, in the middle of a log: not a crash.
    let t = Tail(vec![
        (false, "panic: at the disco".into()),
        (false, "INFO next request".into()),
        (true, "fatal error: tune failed".into()),
        (true, "INFO still running".into()),
    ]);
    assert_eq!(t.detect(), None);
    // Last thing on stderr, GOTRACEBACK=none style: a crash.
    let t = Tail(vec![(false, "INFO serving".into()), (true, "panic: out of tokens".into()), (true, "".into())]);
    let c = t.crash();
    assert_eq!((c.kind.as_str(), c.value.as_str(), c.first_line, c.last_line), ("panic", "out of tokens", 1, 1));
}

#[test]
fn bare_go_header_keeps_only_its_line() {
    // A header followed by unrelated stderr output and then the end: without
    // a goroutine trace the following lines are not taken as message.
    let t = Tail(vec![(true, "panic: out of tokens".into()), (true, "worker 3 stopped".into())]);
    assert_eq!(t.detect(), None);
    let t = Tail(vec![
        (true, "panic: runtime error: invalid memory address or nil pointer dereference".into()),
        (true, "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x48390b]".into()),
    ]);
    let c = t.crash();
    assert_eq!(c.value, "runtime error: invalid memory address or nil pointer dereference");
    assert_eq!((c.first_line, c.last_line), (0, 1));
}
