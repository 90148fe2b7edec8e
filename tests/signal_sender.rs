//! A fault signal sent by another process (`kill -SEGV`) is no fault: the
//! report says who sent it, never "null pointer dereference" (the siginfo
//! of a sent signal holds the sender's pid where a fault's holds the
//! address, and the dump records an address of 0).

mod common;

use std::process::Stdio;

use common::*;

#[test]
fn kill_segv_from_another_process_names_the_sender() {
    let spool = tempfile::tempdir().unwrap();
    let (child, lines) = start_ready(
        crashwatch(spool.path()).args(["run", "--", "sh", "-c", "echo ready $$; exec sleep 60"]).stdin(Stdio::null()),
    );
    let pid: i32 = lines.seen[0].strip_prefix("ready ").unwrap().parse().unwrap();
    // Sent by this test process: its name is in /proc while it waits.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGSEGV).unwrap();
    let out = wait_output(child, LIMIT);
    assert_eq!(out.status.code(), Some(128 + 11));

    let me = std::process::id();
    let comm = std::fs::read_to_string(format!("/proc/{me}/comm")).unwrap().trim_end().to_owned();
    let report = only_report(spool.path());
    let crash = &report["crash"];
    assert_eq!(crash["code_name"], "SI_USER");
    assert_eq!(crash["sender"]["pid"], me);
    assert_eq!(crash["sender"]["comm"], comm.as_str());
    assert_eq!(crash["diagnosis"], format!("sent by pid {me} ({comm}) with SI_USER, not raised by a fault"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("diagnosis: sent by pid {me} ({comm})")), "{stderr}");
    assert!(!stderr.contains("null pointer"), "{stderr}");

    // The dump alone (`crashwatch symbolicate`) says the signal was sent.
    let dir = report_dir(spool.path(), &report);
    let stacks: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("stacks.json")).unwrap()).unwrap();
    assert_eq!(stacks["diagnosis"], "the signal was sent (si_code 0: kill), not raised by a fault");
}

#[test]
fn a_segv_the_process_sends_itself_is_not_a_fault_either() {
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--", "python3", "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]);
    let out = run_with_timeout(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(128 + 11), "{}", String::from_utf8_lossy(&out.stderr));
    let report = only_report(spool.path());
    assert_eq!(report["crash"]["sender"]["pid"], report["program"]["pid"]);
    assert_eq!(report["crash"]["diagnosis"], "raised by the process itself (SI_USER), not by a fault");
}

fn report_dir(spool: &std::path::Path, report: &serde_json::Value) -> std::path::PathBuf {
    spool.join("reports").join(report["id"].as_str().unwrap())
}
