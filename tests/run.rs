//! `crashwatch run` as a supervisor: exit statuses, signals, output
//! pass-through and the report of an abnormal end, on the real binary.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

fn sh(spool: &std::path::Path, script: &str) -> Command {
    let mut cmd = crashwatch(spool);
    cmd.args(["run", "--", "sh", "-c", script]);
    cmd
}

#[test]
fn every_exit_code_passes_through() {
    let spool = tempfile::tempdir().unwrap();
    for code in 0..=255 {
        let out = run_with_timeout(sh(spool.path(), &format!("exit {code}")), LIMIT);
        assert_eq!(out.status.code(), Some(code), "child exit {code}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Exit 0 is not abnormal: 255 reports, one per non-zero code.
    assert_eq!(reports(spool.path()).len(), 255);
}

#[test]
fn death_by_signal_gives_128_plus_n_and_a_report() {
    for (signal, name) in [(15, "SIGTERM"), (9, "SIGKILL"), (11, "SIGSEGV")] {
        let spool = tempfile::tempdir().unwrap();
        let out = run_with_timeout(sh(spool.path(), &format!("echo before; kill -{signal} $$")), LIMIT);
        assert_eq!(out.status.code(), Some(128 + signal), "{name}");
        assert_eq!(out.stdout, b"before\n");
        let report = only_report(spool.path());
        assert_eq!(report["kind"], "signal");
        assert_eq!(report["status"]["signaled"]["signal"], signal);
        assert_eq!(report["exit_code"], 128 + signal);
        assert_eq!(tail_texts(&report), ["before"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("was killed by {name}")), "{stderr}");
        // Local mode says once, in the summary, that the report was not sent.
        assert!(stderr.ends_with("crashwatch: not sent: no DSN (--dsn or SENTRY_DSN)\n"), "{stderr}");
    }
}

#[test]
fn sigterm_reaches_a_child_that_traps_it_and_its_code_comes_back() {
    let spool = tempfile::tempdir().unwrap();
    let (mut child, lines) = start_ready(crashwatch(spool.path()).args(["run", "--", "python3", "-c"]).arg(
        "import signal, sys, time\n\
         def bye(*_):\n    print('got SIGTERM'); sys.exit(42)\n\
         signal.signal(signal.SIGTERM, bye)\n\
         print('ready')\n\
         time.sleep(60)\n",
    ));
    send_signal(&child, nix::sys::signal::Signal::SIGTERM);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(42));
    assert_eq!(lines.rest(), ["ready", "got SIGTERM"]);
    // An orderly stop is recorded, but not as a crash.
    let report = only_report(spool.path());
    assert_eq!(report["kind"], "stopped");
    assert_eq!(report["stop_requested"], 15);
}

#[test]
fn a_stop_is_not_a_crash_but_a_crash_during_a_stop_is() {
    // Killed by the forwarded SIGTERM: stopped. Crashing while handling it:
    // a crash (SIGSEGV is never a stop).
    for (on_term, kind, code) in [("pass", "stopped", 128 + 15), ("ctypes.string_at(0)", "signal", 128 + 11)] {
        let spool = tempfile::tempdir().unwrap();
        let script = format!(
            "import ctypes, signal, time\n\
             def on_term(*_):\n    signal.signal(signal.SIGTERM, signal.SIG_DFL); {on_term}; signal.raise_signal(signal.SIGTERM)\n\
             signal.signal(signal.SIGTERM, on_term)\n\
             print('ready')\n\
             time.sleep(60)\n"
        );
        let (mut child, _lines) = start_ready(crashwatch(spool.path()).args(["run", "--", "python3", "-c", &script]));
        send_signal(&child, nix::sys::signal::Signal::SIGTERM);
        assert_eq!(child.wait().unwrap().code(), Some(code), "{kind}");
        let report = only_report(spool.path());
        assert_eq!(report["kind"], kind);
        assert_eq!(report["stop_requested"], 15);
    }
}

#[test]
fn a_million_lines_on_each_stream_arrive_complete_and_in_order() {
    let spool = tempfile::tempdir().unwrap();
    let producer = fixture("producer");
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--"]).arg(&producer).args(["1000000", "both"]);
    let out = run_with_timeout(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(0));
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = std::str::from_utf8(bytes).unwrap();
        let mut n = 0u64;
        for line in text.lines() {
            assert_eq!(line, n.to_string(), "{name}: line {n}");
            n += 1;
        }
        assert_eq!(n, 1_000_000, "{name} line count");
    }
    assert!(reports(spool.path()).is_empty(), "exit 0 leaves no report");
}

#[test]
fn last_lines_of_a_child_killed_at_once_are_in_its_report() {
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--log-lines", "100", "--"]).arg(fixture("producer")).args(["500", "out", "0", "kill"]);
    let out = run_with_timeout(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(128 + 9));
    let report = only_report(spool.path());
    let expected: Vec<String> = (400..500).map(|n| n.to_string()).collect();
    assert_eq!(tail_texts(&report), expected);
    assert_eq!(report["log_tail_complete"], true);
}

#[test]
fn non_utf8_and_a_50_mb_line_pass_through_byte_exact() {
    let spool = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let expected: Vec<u8> =
        [b"\xff\xfe\x00 not utf-8\n".as_slice(), &vec![b'x'; 50 << 20], b"\n", b"no newline at the end"].concat();
    let input = dir.path().join("input");
    std::fs::write(&input, &expected).unwrap();
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--", "sh", "-c", "cat \"$1\"; exit 3", "sh"]).arg(&input);
    let out = run_with_timeout(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout == expected, "stdout differs: {} bytes, expected {}", out.stdout.len(), expected.len());

    let report = only_report(spool.path());
    let tail = report["log_tail"].as_array().unwrap();
    assert_eq!(tail.len(), 2, "{tail:#?}");
    // The 50 MB line is cut to 16 KiB in the report, the rest counted; the
    // ring (256 KiB) lost its head, which is counted too.
    let long = &tail[0];
    assert_eq!(long["text"].as_str().unwrap().len(), 16 << 10);
    assert_eq!(long["omitted"].as_u64().unwrap() + (16 << 10), 50 << 20);
    assert_eq!(tail[1]["text"], "no newline at the end");
    assert_eq!(tail[1]["newline"], false);

    // A ring that holds everything keeps the non-UTF-8 line, marked lossy.
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--", "sh", "-c", "printf '\\377\\376 bad\\n'; exit 1"]);
    let out = run_with_timeout(cmd, LIMIT);
    assert_eq!(out.stdout, b"\xff\xfe bad\n");
    let report = only_report(spool.path());
    assert_eq!(report["log_tail"][0]["text"], "\u{fffd}\u{fffd} bad");
    assert_eq!(report["log_tail"][0]["lossy"], true);
}

#[test]
fn missing_or_unrunnable_program_gives_127_or_126_with_the_path() {
    let spool = tempfile::tempdir().unwrap();
    let out = crashwatch(spool.path()).args(["run", "--", "no-such-program-here"]).output().unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "crashwatch: error: cannot run no-such-program-here: command not found in PATH\n"
    );

    let out = crashwatch(spool.path()).args(["run", "--", "/no/such/file"]).output().unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "crashwatch: error: cannot run /no/such/file: No such file or directory (os error 2)\n"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = crashwatch(spool.path()).args(["run", "--"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(126));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("cannot run {}", dir.path().display())), "{stderr}");

    let file = dir.path().join("plain");
    std::fs::write(&file, "data").unwrap();
    let out = crashwatch(spool.path()).args(["run", "--"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(126));
    assert!(reports(spool.path()).is_empty(), "a program that never ran leaves no report");
}

#[test]
fn bad_options_are_usage_errors() {
    let spool = tempfile::tempdir().unwrap();
    for args in [
        &["run"][..],
        &["run", "--log-lines", "0", "--", "true"],
        &["run", "--log-bytes", "12Q", "--", "true"],
        &["nope"],
    ] {
        let out = crashwatch(spool.path()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "), "{args:?}");
    }
    // A mistyped option is not run as the program (it used to exit 127).
    let out = crashwatch(spool.path()).args(["run", "--signal-grup", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: unexpected argument '--signal-grup' found"), "{stderr}");
    assert!(stderr.contains("tip: a similar argument exists: '--signal-group'"), "{stderr}");
}

#[test]
fn the_programs_own_options_pass_through_with_or_without_dashes() {
    let spool = tempfile::tempdir().unwrap();
    for args in [
        &["run", "sh", "-c", "echo $0 \"$@\"", "-x", "--pty", "-e"][..],
        &["run", "--", "sh", "-c", "echo $0 \"$@\"", "-x", "--pty", "-e"],
    ] {
        let out = crashwatch(spool.path()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, b"-x --pty -e\n", "{args:?}");
    }
}

#[test]
fn pty_keeps_the_line_that_a_pipe_would_lose_in_the_stdio_buffer() {
    let crasher = fixture("printf_then_crash");
    for (pty, expected) in [(false, vec![]), (true, vec!["last words before the crash".to_string()])] {
        let spool = tempfile::tempdir().unwrap();
        let mut cmd = crashwatch(spool.path());
        cmd.arg("run");
        if pty {
            cmd.arg("--pty");
        }
        cmd.arg("--").arg(&crasher);
        let out = run_with_timeout(cmd, LIMIT);
        assert_eq!(out.status.code(), Some(128 + 11), "pty={pty}");
        assert_eq!(tail_texts(&only_report(spool.path())), expected, "pty={pty}");
        // Raw mode: the newline passes unchanged, no \r added.
        if pty {
            assert_eq!(out.stdout, b"last words before the crash\n");
        }
    }
}

#[test]
fn our_lines_never_split_a_line_of_the_child() {
    // The child leaves a line open on stderr and exits: crashwatch's summary
    // must start on a line of its own.
    let spool = tempfile::tempdir().unwrap();
    let out = run_with_timeout(sh(spool.path(), "printf 'half a line' >&2; exit 5"), LIMIT);
    assert_eq!(out.status.code(), Some(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Named after the program that ran: `sh` is dash on Debian.
    let sh = std::fs::canonicalize(
        String::from_utf8(Command::new("sh").args(["-c", "command -v sh"]).output().unwrap().stdout).unwrap().trim(),
    )
    .unwrap();
    let name = sh.file_name().unwrap().to_str().unwrap();
    assert!(stderr.starts_with(&format!("half a line\ncrashwatch: {name} (pid ")), "{stderr}");
    assert!(stderr.contains(") exited with code 5 after "), "{stderr}");
}

#[test]
fn stdin_is_passed_to_the_child() {
    let spool = tempfile::tempdir().unwrap();
    let mut child = crashwatch(spool.path())
        .args(["run", "--", "sh", "-c", "read line; echo \"got $line\""])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = wait_output(child, LIMIT);
    assert_eq!(out.stdout, b"got hello\n");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn as_pid_1_it_forwards_a_signal_its_child_sends_it() {
    // A new PID namespace makes crashwatch PID 1 there, as in a container.
    // The child sends SIGTERM to PID 1 (which ignores any signal it has no
    // handler for): crashwatch must forward it back to the child.
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", env!("CARGO_BIN_EXE_crashwatch"), "run", "--", "python3", "-c"])
        .arg(
            "import os, signal, sys, time\n\
             def bye(*_):\n    print('got SIGTERM from PID 1'); sys.exit(42)\n\
             signal.signal(signal.SIGTERM, bye)\n\
             assert os.getppid() == 1, os.getppid()\n\
             os.kill(1, signal.SIGTERM)\n\
             time.sleep(60)\n",
        )
        .env("CRASHWATCH_SPOOL_DIR", spool.path());
    let out = run_with_timeout(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(42), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"got SIGTERM from PID 1\n");
    // Every other signal, orphans, the process group: tests/pid1_*.rs.
}
