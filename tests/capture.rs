//! Crash capture through the real binary: real crashers run under
//! `crashwatch run`, and each test checks what a user would — the exit
//! status, the report, and the minidump read back with the `minidump` crate
//! (exception code = signal, flags = si_code, blamed thread, thread count).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::Value;

/// One `crashwatch run` of a crasher, with its private spool.
struct Run {
    out: Output,
    spool: tempfile::TempDir,
}

impl Run {
    fn new(exe: &Path, args: &[&str], flags: &[&str]) -> Run {
        let spool = tempfile::tempdir().unwrap();
        let mut cmd = crashwatch(spool.path());
        cmd.arg("run").args(flags).arg("--").arg(exe).args(args);
        let out = run_with_timeout(cmd, LIMIT);
        Run { out, spool }
    }

    fn report(&self) -> Value {
        only_report(self.spool.path())
    }

    fn dump_path(&self) -> PathBuf {
        let report = self.report();
        let file = report["crash"]["minidump"]["file"].as_str().unwrap_or_else(|| panic!("no minidump: {report:#}"));
        self.spool.path().join("reports").join(report["id"].as_str().unwrap()).join(file)
    }

    fn printed(&self, key: &str) -> i64 {
        printed(&self.out.stdout, key)
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    /// The facts every capture must have; returns the dump's.
    fn check(&self, signal: i32, threads: usize) -> DumpFacts {
        assert_eq!(self.out.status.code(), Some(128 + signal), "stderr: {}", self.stderr());
        let report = self.report();
        assert_eq!(report["kind"], "signal");
        assert_eq!(report["status"]["signaled"]["signal"], signal, "died of its real signal");
        let crash = &report["crash"];
        assert_eq!(crash["signal"], signal, "{report:#}");
        assert_eq!(crash["pid"], report["program"]["pid"]);
        assert_eq!(crash["threads"], threads, "threads at stop time: {crash:#}");
        let dump_path = self.dump_path();
        let meta = std::fs::metadata(&dump_path).unwrap();
        assert_eq!(crash["minidump"]["size"], meta.len());
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o600);
        let facts = read_dump(&dump_path);
        assert_eq!(facts.exception_code, signal as u32, "exception code = signal");
        assert_eq!(facts.exception_flags, crash["code"].as_i64().unwrap() as u32, "exception flags = si_code");
        assert_eq!(facts.crashing_tid as i64, crash["tid"].as_i64().unwrap(), "blamed thread");
        assert_eq!(facts.thread_ids.len(), threads, "threads in dump: {:?}", facts.thread_ids);
        facts
    }
}

fn crash_field(run: &Run, field: &str) -> Value {
    run.report()["crash"][field].clone()
}

#[test]
fn null_write_in_a_nested_call_is_segv_at_zero() {
    let run = Run::new(&fixture("segv_nested"), &[], &[]);
    let facts = run.check(libc::SIGSEGV, 1);
    assert_eq!(crash_field(&run, "code_name"), "SEGV_MAPERR");
    assert_eq!(crash_field(&run, "fault_address"), "0x0");
    assert!(facts.rip_in_main_module, "the crash context, not a signal frame");
    let stderr = run.stderr();
    assert!(stderr.contains("crashwatch: caught SIGSEGV (SEGV_MAPERR) at 0x0 in thread 'segv_nested-O0g"), "{stderr}");
    // Symbolicated at crash time: the diagnosis and the top frames, with
    // lines, in the summary and in the report's stacks.
    assert!(stderr.contains("crashwatch: diagnosis: null pointer dereference\n"), "{stderr}");
    for (i, (function, line)) in [("level3", 4), ("level2", 5), ("level1", 6), ("main", 9)].iter().enumerate() {
        let frame = format!(
            "crashwatch:   #{i} segv_nested-O0gWallWerrorpthreadfnoomitframepointer!{function} (segv_nested.c:{line})\n"
        );
        assert!(stderr.contains(&frame), "{frame} missing in {stderr}");
    }
    assert_eq!(crash_field(&run, "diagnosis"), "null pointer dereference");
    let stacks: Value =
        serde_json::from_slice(&std::fs::read(run.dump_path().with_file_name("stacks.json")).unwrap()).unwrap();
    let crashed = &stacks["threads"][stacks["crashing_thread"].as_u64().unwrap() as usize];
    assert_eq!(crashed["frames"][0]["function"], "level3");
    assert_eq!(crashed["frames"][0]["line"], 4);
    // `show` prints them.
    let id = run.report()["id"].as_str().unwrap().to_string();
    let show = crashwatch(run.spool.path()).args(["show", &id]).output().unwrap();
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(show.contains("Thread 0 (crashed)") && show.contains("!level2 ("), "{show}");
}

#[test]
fn ignored_or_blocked_segv_is_still_fatal_and_captured() {
    // The kernel resets a blocked or ignored fault signal to SIG_DFL.
    for mode in ["ignore", "block"] {
        let run = Run::new(&fixture("segv_masked"), &[mode], &[]);
        run.check(libc::SIGSEGV, 1);
        assert_eq!(crash_field(&run, "fault_address"), "0x100", "{mode}");
    }
}

#[test]
fn abort_is_sigabrt_from_tkill() {
    let run = Run::new(&fixture("abort"), &[], &[]);
    run.check(libc::SIGABRT, 1);
    assert_eq!(crash_field(&run, "code_name"), "SI_TKILL");
}

#[test]
fn division_by_zero_is_sigfpe() {
    let run = Run::new(&fixture("fpe"), &[], &[]);
    run.check(libc::SIGFPE, 1);
    assert_eq!(crash_field(&run, "code_name"), "FPE_INTDIV");
}

#[test]
fn illegal_instruction_is_sigill() {
    let run = Run::new(&fixture("ill"), &[], &[]);
    run.check(libc::SIGILL, 1);
    assert_eq!(crash_field(&run, "code_name"), "ILL_ILLOPN");
}

#[test]
fn store_past_the_end_of_a_mapped_file_is_sigbus() {
    let run = Run::new(&fixture("bus"), &[], &[]);
    run.check(libc::SIGBUS, 1);
    assert_eq!(crash_field(&run, "code_name"), "BUS_ADRERR");
    // A deleted data file is not an executable: nothing preserved.
    assert_eq!(crash_field(&run, "preserved"), Value::Null);
}

#[test]
fn seccomp_trap_is_sigsys() {
    let run = Run::new(&fixture("sigsys"), &[], &[]);
    run.check(libc::SIGSYS, 1);
    assert_eq!(crash_field(&run, "code_name"), "SYS_SECCOMP");
}

#[test]
fn int3_is_sigtrap() {
    let run = Run::new(&fixture("trap"), &[], &[]);
    run.check(libc::SIGTRAP, 1);
    assert_eq!(crash_field(&run, "code_name"), "SI_KERNEL");
}

#[test]
fn crash_on_thread_5_of_6_blames_that_thread() {
    let run = Run::new(&fixture("thread5_of_6"), &[], &[]);
    let facts = run.check(libc::SIGSEGV, 6);
    let crash_tid = run.printed("crash_tid");
    assert_eq!(crash_field(&run, "tid"), crash_tid);
    assert_ne!(crash_tid, run.report()["program"]["pid"].as_i64().unwrap());
    assert_eq!(crash_field(&run, "thread_name"), "crasher-5");
    assert_eq!(crash_field(&run, "fault_address"), "0x10");
    assert_eq!(facts.crashing_thread_name.as_deref(), Some("crasher-5"));
    assert!(facts.rip_in_main_module);
}

#[test]
fn fifty_threads_and_200_mb_of_heap() {
    let run = Run::new(&fixture("many_threads"), &["50", "200"], &[]);
    run.check(libc::SIGSEGV, 51);
    assert_eq!(crash_field(&run, "tid"), run.printed("crash_tid"));
    // Stacks and a few pages per thread, never the heap.
    let size = crash_field(&run, "minidump")["size"].as_u64().unwrap();
    assert!(size < 16 << 20, "dump of {size} bytes");
}

#[test]
fn every_thread_of_a_200_thread_crasher_is_in_the_dump_with_its_own_stack() {
    use minidump::{
        Minidump, MinidumpException, MinidumpMemoryList, MinidumpSystemInfo, MinidumpThreadList, UnifiedMemoryList,
    };
    let run = Run::new(&fixture("many_threads"), &["199", "0"], &[]);
    let facts = run.check(libc::SIGSEGV, 200);
    let mut ids = facts.thread_ids.clone();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200, "thread ids are not distinct");

    let dump = Minidump::read_path(run.dump_path()).unwrap();
    let system: MinidumpSystemInfo = dump.get_stream().unwrap();
    let threads: MinidumpThreadList = dump.get_stream().unwrap();
    let memory = UnifiedMemoryList::Memory(dump.get_stream::<MinidumpMemoryList>().unwrap());
    let exception: MinidumpException = dump.get_stream().unwrap();
    let mut stack_starts = Vec::new();
    for thread in &threads.threads {
        let tid = thread.raw.thread_id;
        // The crashing thread's context is the crash's (the exception
        // stream's); every other one was read from its ptrace-stop.
        let context = if tid == facts.crashing_tid {
            exception.context(&system, None).map(|c| c.into_owned())
        } else {
            thread.context(&system, None).map(|c| c.into_owned())
        }
        .unwrap_or_else(|| panic!("thread {tid} has no context"));
        let sp = context.get_stack_pointer();
        let ip = context.get_instruction_pointer();
        assert!(sp != 0 && ip != 0, "thread {tid}: sp {sp:#x}, ip {ip:#x}");
        // Its stack was captured, and the stack pointer is in it (the
        // capture starts at the page of the stack pointer).
        let stack = thread.stack_memory(&memory).unwrap_or_else(|| panic!("thread {tid} has no stack"));
        let (start, size) = (stack.base_address(), stack.size());
        assert!(size > 0, "thread {tid}: empty stack");
        assert!((start..start + size).contains(&sp), "thread {tid}: sp {sp:#x} outside its stack {start:#x}+{size:#x}");
        stack_starts.push(start);
    }
    // 200 threads, 200 different stacks.
    stack_starts.sort_unstable();
    stack_starts.dedup();
    assert_eq!(stack_starts.len(), 200);
}

#[test]
fn crash_during_thread_churn() {
    for _ in 0..3 {
        let run = Run::new(&fixture("churn"), &[], &[]);
        assert_eq!(run.out.status.code(), Some(128 + libc::SIGSEGV));
        assert_eq!(crash_field(&run, "tid"), run.printed("crash_tid"));
        assert_eq!(crash_field(&run, "fault_address"), "0x8");
        let threads = crash_field(&run, "threads").as_u64().unwrap() as usize;
        // main + 4 spawners + however many short-lived threads were alive.
        assert!(threads >= 5, "{threads} threads");
        run.check(libc::SIGSEGV, threads);
    }
}

#[test]
fn zombie_leader_crash_is_dumped_through_the_crashing_thread() {
    let run = Run::new(&fixture("zombie_leader"), &[], &[]);
    assert_eq!(run.printed("leader_zombie"), 1);
    // The zombie leader cannot be stopped or dumped: one live thread.
    let facts = run.check(libc::SIGSEGV, 1);
    let crash_tid = run.printed("crash_tid");
    assert_eq!(crash_field(&run, "tid"), crash_tid);
    assert_eq!(facts.thread_ids, [crash_tid as u32]);
    assert!(facts.rip_in_main_module);
}

#[test]
fn exec_from_a_non_leader_thread_is_followed() {
    let run = Run::new(&fixture("exec_from_thread"), &[], &[]);
    let facts = run.check(libc::SIGSEGV, 1);
    // The exec'ing thread took the leader's pid.
    let pid = run.report()["program"]["pid"].as_i64().unwrap();
    assert_eq!(run.printed("exec_pid"), pid);
    assert_eq!(facts.crashing_tid as i64, pid);
}

#[test]
fn deleted_executable_is_preserved_in_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim-bin");
    std::fs::copy(fixture("self_delete"), &victim).unwrap();
    let original = std::fs::read(&victim).unwrap();
    let run = Run::new(&victim, &[], &[]);
    run.check(libc::SIGSEGV, 1);
    assert!(!victim.exists());
    let crash = run.report()["crash"].clone();
    assert_eq!(crash["exe"], format!("{} (deleted)", victim.display()));
    let preserved = crash["preserved"].as_array().unwrap();
    assert_eq!(preserved.len(), 1, "{preserved:#?}");
    assert_eq!(preserved[0]["original"], victim.display().to_string());
    let kept = run.dump_path().with_file_name(preserved[0]["file"].as_str().unwrap());
    assert_eq!(std::fs::read(kept).unwrap(), original);
    // The binary is gone from disk, yet the stacks have its names: the
    // preserved copy was used.
    let stderr = run.stderr();
    assert!(stderr.contains("crashwatch:   #0 victim-bin!main (self_delete.c:"), "{stderr}");
}

#[test]
fn follow_forks_captures_a_crashing_grandchild_while_the_child_lives_on() {
    let run = Run::new(&fixture("forker"), &[], &["--follow-forks"]);
    assert_eq!(run.out.status.code(), Some(0), "{}", run.stderr());
    // The child's own parent saw the grandchild die of its real signal.
    assert_eq!(run.printed("signaled"), 1);
    assert_eq!(run.printed("signal"), libc::SIGSEGV as i64);
    let report = run.report();
    assert_eq!(report["crash"]["pid"], run.printed("grandchild"));
    assert_eq!(report["crash"]["tid"], run.printed("grandchild"));
    let facts = read_dump(&run.dump_path());
    assert_eq!(facts.exception_code, libc::SIGSEGV as u32);
    assert_eq!(facts.crashing_tid as i64, run.printed("grandchild"));

    // Without the flag the grandchild is not traced: no report at all.
    let run = Run::new(&fixture("forker"), &[], &[]);
    assert_eq!(run.out.status.code(), Some(0));
    assert!(reports(run.spool.path()).is_empty());
}

#[test]
fn a_program_that_handles_segv_and_recovers_runs_on_untouched() {
    let run = Run::new(&fixture("segv_recover"), &[], &[]);
    assert_eq!(run.out.status.code(), Some(0), "{}", run.stderr());
    assert_eq!(String::from_utf8_lossy(&run.out.stdout), "recovered=3\n");
    assert!(reports(run.spool.path()).is_empty());
}

#[test]
fn handled_and_realtime_signals_pass_through() {
    let run = Run::new(&fixture("signals"), &[], &[]);
    assert_eq!(run.out.status.code(), Some(0), "{}", run.stderr());
    assert!(reports(run.spool.path()).is_empty());
    // SIGUSR1, an RT signal with its payload, handled SIGABRT and SIGTRAP,
    // and a SIGSTOP/SIGCONT round trip all reached the program.
    assert_eq!(String::from_utf8_lossy(&run.out.stdout), "ok usr1=1 rt=1234 abrt=1 trap=1 resumed=1\n");
}

#[test]
fn rust_panic_abort_in_a_named_thread() {
    let run = Run::new(&rust_fixture("rust_crasher"), &["panic"], &[]);
    let facts = run.check(libc::SIGABRT, 2);
    assert_eq!(crash_field(&run, "thread_name"), "worker");
    assert_eq!(facts.crashing_thread_name.as_deref(), Some("worker"));
    let tail = tail_texts(&run.report());
    assert!(tail.iter().any(|l| l.starts_with("thread 'worker'") && l.contains("panicked at")), "{tail:#?}");
    assert!(tail.iter().any(|l| l == "the answer was 42"), "{tail:#?}");
    // One report: the minidump and the parsed panic together.
    let report = run.report();
    assert_eq!(report["kind"], "signal");
    assert_eq!(report["panic"]["runtime"], "Rust");
    assert_eq!(report["panic"]["thread"], "worker");
    assert_eq!(report["panic"]["value"], "the answer was 42");
}

#[test]
fn rust_stack_overflow_passes_through_rusts_handler_and_aborts() {
    let run = Run::new(&rust_fixture("rust_crasher"), &["overflow"], &[]);
    // Rust's SIGSEGV handler is installed, so the guard-page fault is its;
    // it reports the overflow and aborts, and that abort is captured.
    run.check(libc::SIGABRT, 1);
    let tail = tail_texts(&run.report());
    assert!(tail.iter().any(|l| l.contains("has overflowed its stack")), "{tail:#?}");
}

#[test]
fn no_ptrace_records_the_crash_without_a_minidump() {
    let run = Run::new(&fixture("segv_nested"), &[], &["--no-ptrace"]);
    assert_eq!(run.out.status.code(), Some(128 + libc::SIGSEGV));
    let report = run.report();
    assert_eq!(report["kind"], "signal");
    assert_eq!(report["crash"], Value::Null);
}

#[test]
fn where_ptrace_is_forbidden_the_program_still_runs() {
    // A seccomp filter makes ptrace fail, as in a locked-down container.
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(fixture("deny_ptrace"));
    cmd.arg(env!("CARGO_BIN_EXE_crashwatch"))
        .args(["run", "--"])
        .arg(fixture("segv_nested"))
        .env("CRASHWATCH_SPOOL_DIR", spool.path());
    let out = run_with_timeout(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(128 + libc::SIGSEGV));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("crashwatch: warning: failed to seize process ")
            && stderr.contains("Operation not permitted")
            && stderr.contains("`crashwatch doctor` says why"),
        "{stderr}"
    );
    let report = only_report(spool.path());
    assert_eq!(report["kind"], "signal");
    assert_eq!(report["crash"], Value::Null);

    // And doctor says so, exiting 1.
    let mut cmd = Command::new(fixture("deny_ptrace"));
    cmd.arg(env!("CARGO_BIN_EXE_crashwatch")).arg("doctor").env("CRASHWATCH_SPOOL_DIR", spool.path());
    let out = run_with_timeout(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAIL  ptrace  tracing a child failed: Operation not permitted"), "{stdout}");
    assert!(stdout.contains("a seccomp filter is active"), "{stdout}");
}

#[test]
fn doctor_passes_here() {
    let spool = tempfile::tempdir().unwrap();
    // A Relay stand-in that answers any request with 405, as Relay answers
    // a GET on its envelope endpoint.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut conn, &mut buf);
            let _ =
                std::io::Write::write_all(&mut conn, b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let dsn = format!("http://0123456789abcdef0123456789abcdef@127.0.0.1:{port}/42");
    let out = crashwatch(spool.path())
        .args(["doctor", "--dsn", &dsn, "--release", "server@1.0"])
        .arg(fixture("segv_nested"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("OK    ptrace  a child can be traced"), "{stdout}");
    assert!(
        lines[1]
            .starts_with(&format!("OK    spool   {} is writable (0 reports kept, 0 waiting", spool.path().display())),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("OK    cgroup  cgroup v1 memory controller at ")
            && lines[2].ends_with("--memory-limit works"),
        "{stdout}"
    );
    assert!(lines[3].starts_with("OK    kmsg    the kernel log is readable"), "{stdout}");
    assert!(lines[4].starts_with("OK    dsn     http://***@127.0.0.1:") && lines[4].contains("(HTTP 405)"), "{stdout}");
    assert!(
        lines[5].starts_with("OK    symbols ")
            && lines[5].ends_with("has DWARF: its frames get functions, files and lines"),
        "{stdout}"
    );
    assert!(
        lines[6].starts_with("OK    release each run is a Release Health session of server@1.0 (host id "),
        "{stdout}"
    );
    // The DSN key is never printed.
    assert!(!stdout.contains("0123456789abcdef0123456789abcdef"));
}

#[test]
fn doctor_says_what_is_wrong() {
    let spool = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stripped = dir.path().join("stripped");
    let status = Command::new("strip").arg("-o").arg(&stripped).arg(fixture("segv_nested")).status().unwrap();
    assert!(status.success());
    // Port 9 (discard) is not listening here.
    let dsn = "http://0123456789abcdef0123456789abcdef@127.0.0.1:9/42";
    let out = crashwatch(spool.path()).args(["doctor", "--dsn", dsn]).arg(&stripped).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAIL  dsn     http://***@127.0.0.1:9/42 is valid, but http://127.0.0.1:9/api/42/envelope/ cannot be reached: "), "{stdout}");
    assert!(
        stdout
            .contains(&format!("WARN  symbols {} is stripped: its frames will be addresses only", stripped.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains("WARN  release no release (--release or SENTRY_RELEASE): Sentry keeps sessions per release"),
        "{stdout}"
    );
    let out = crashwatch(spool.path()).args(["doctor", "--dsn", "not-a-dsn"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL  dsn     not valid: "));
}

#[test]
fn a_failed_dump_still_lets_the_child_die_of_its_signal() {
    // The scratch directory disappears while the child runs: the dump
    // cannot be written, the child must still die of SIGSEGV, and the report
    // must say why there is no minidump.
    let spool = tempfile::tempdir().unwrap();
    let (mut child, _lines) = start_ready(
        crashwatch(spool.path())
            .args([
                "run",
                "--",
                "python3",
                "-c",
                "import ctypes, sys; print('ready', flush=True); sys.stdin.readline(); ctypes.string_at(0)",
            ])
            .stdin(Stdio::piped()),
    );
    // (This crashwatch's own scratch directory is in it.)
    std::fs::remove_dir_all(spool.path().join("tmp")).unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = wait_output(child, LIMIT);
    assert_eq!(out.status.code(), Some(128 + libc::SIGSEGV));
    let report = only_report(spool.path());
    assert_eq!(report["crash"]["signal"], libc::SIGSEGV);
    let error = report["crash"]["minidump_error"].as_str().unwrap();
    assert!(
        error.starts_with("failed to create dump file ") && error.ends_with("No such file or directory (os error 2)"),
        "{error}"
    );
}

#[test]
fn a_thread_stuck_in_vfork_is_left_behind_without_hanging() {
    // A thread in uninterruptible vfork cannot be ptrace-stopped; the
    // capture goes ahead without it after the stop timeout.
    let run = Run::new(&fixture("vfork_laggard"), &[], &[]);
    assert_eq!(run.out.status.code(), Some(128 + libc::SIGSEGV));
    let crash = run.report()["crash"].clone();
    assert_eq!(crash["threads"], 2);
    let stuck = run.printed("stuck_tid");
    let pid = run.report()["program"]["pid"].as_i64().unwrap();
    assert_eq!(crash["notes"][0], format!("threads [{stuck}] of process {pid} did not stop within 2s"));
    // The dump has the thread that could be stopped.
    let facts = read_dump(&run.dump_path());
    assert_eq!(facts.exception_code, libc::SIGSEGV as u32);
    assert_eq!(facts.thread_ids, [pid as u32]);
}

#[test]
fn the_kernels_own_core_dump_still_happens_after_the_capture() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "ulimit -c unlimited && exec \"$@\"", "sh", env!("CARGO_BIN_EXE_crashwatch"), "run", "--"])
        .arg(fixture("segv_nested"))
        .current_dir(dir.path())
        .env("CRASHWATCH_SPOOL_DIR", &spool);
    let out = run_with_timeout(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(128 + libc::SIGSEGV));
    let report = only_report(&spool);
    assert!(report["crash"]["minidump"].is_object());
    assert_eq!(report["status"]["signaled"]["core_dumped"], true, "{report:#}");
    // Where the kernel puts it depends on core_pattern; with the default
    // pattern it is a file named core in the working directory.
    if std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap().trim() == "core" {
        assert!(dir.path().join("core").metadata().unwrap().len() > 0);
    }
}
