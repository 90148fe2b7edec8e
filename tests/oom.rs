//! OOM kills as reports, with real OOM kills: `--memory-limit` puts the
//! child in a fresh memory cgroup (this project's machines have a writable
//! cgroup v1 memory controller) and the child allocates past the limit.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

const LIMIT_MIB: u64 = 64;

fn run_hog(spool: &Path, mib: u64, limit: bool) -> std::process::Output {
    let mut cmd = crashwatch(spool);
    cmd.arg("run");
    if limit {
        cmd.args(["--memory-limit", &format!("{LIMIT_MIB}M")]);
    }
    cmd.arg("--").arg(fixture("hog")).arg(mib.to_string());
    run_with_timeout(cmd, LIMIT)
}

#[test]
fn a_real_oom_kill_is_reported_with_the_limit_and_the_peak() {
    let spool = tempfile::tempdir().unwrap();
    let out = run_hog(spool.path(), 4 * LIMIT_MIB, true);
    assert_eq!(out.status.code(), Some(128 + 9), "{}", String::from_utf8_lossy(&out.stderr));
    let report = only_report(spool.path());
    assert_eq!(report["kind"], "oom");
    let pid = report["program"]["pid"].as_i64().unwrap();
    assert_eq!(report["oom"]["cgroup_oom_kills"], 1);
    let kernel = report["oom"]["kernel_line"].as_str().unwrap();
    assert!(kernel.contains(&format!("Killed process {pid} (hog")), "{kernel}");
    let cgroup = &report["memory"]["cgroup"];
    assert_eq!(cgroup["version"], "v1");
    assert_eq!(cgroup["limit"], LIMIT_MIB << 20);
    let peak = cgroup["peak"].as_u64().unwrap();
    assert!(peak <= LIMIT_MIB << 20 && peak > (LIMIT_MIB << 20) / 2, "peak {peak}");
    // The last lines it printed before it died are there.
    let tail = tail_texts(&report);
    assert!(tail.last().unwrap().starts_with("allocated "), "{tail:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the kernel's OOM killer killed it: peak RSS "), "{stderr}");
    assert!(
        stderr.contains(&format!("cgroup peak {}", "64.0 MiB of a 64.0 MiB limit")) || stderr.contains("cgroup peak "),
        "{stderr}"
    );
    // The cgroup crashwatch made for the child is gone.
    let path = cgroup["path"].as_str().unwrap();
    assert!(path.contains("/crashwatch-"), "{path}");
    assert!(!Path::new(path).exists(), "{path} was left behind");
}

#[test]
fn a_plain_sigkill_is_not_called_an_oom_kill() {
    for limit in [false, true] {
        let spool = tempfile::tempdir().unwrap();
        let mut cmd = crashwatch(spool.path());
        cmd.arg("run");
        if limit {
            cmd.args(["--memory-limit", "64M"]);
        }
        cmd.args(["--", "sh", "-c", "kill -9 $$"]);
        let out = run_with_timeout(cmd, LIMIT);
        assert_eq!(out.status.code(), Some(128 + 9));
        let report = only_report(spool.path());
        assert_eq!(report["kind"], "signal", "limit={limit}");
        assert_eq!(report["oom"], Value::Null);
    }
}

#[test]
fn a_child_within_its_limit_runs_normally() {
    let spool = tempfile::tempdir().unwrap();
    let out = run_hog(spool.path(), LIMIT_MIB / 2, true);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("done\n"));
    assert!(reports(spool.path()).is_empty());
}

#[test]
fn memory_is_recorded_in_any_report() {
    // The child waits for the test, so it is surely alive when crashwatch
    // takes its first sample.
    let spool = tempfile::tempdir().unwrap();
    let (mut child, _lines) = start_ready(
        crashwatch(spool.path())
            .args(["run", "--memory-limit", "64M", "--", "python3", "-c"])
            .arg("import sys; print('ready', flush=True); sys.stdin.read(); sys.exit(3)")
            .stdin(std::process::Stdio::piped()),
    );
    drop(child.stdin.take());
    let out = wait_output(child, LIMIT);
    assert_eq!(out.status.code(), Some(3));
    let report = only_report(spool.path());
    let samples = report["memory"]["samples"].as_array().unwrap();
    assert!(samples[0]["rss"].as_u64().unwrap() > 0, "{samples:#?}");
    assert!(report["memory"]["peak_rss"].as_u64().unwrap() >= samples[0]["rss"].as_u64().unwrap());
    let cgroup = &report["memory"]["cgroup"];
    assert_eq!(cgroup["limit"], 64 << 20);
    // A limited cgroup of the child's own, removed once it ended.
    assert!(!Path::new(cgroup["path"].as_str().unwrap()).exists());
}
