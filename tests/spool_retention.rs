//! Retention: a crash loop stays under `--spool-max-use`, the newest report
//! of each kind of crash is kept, reports waiting in the outbox are kept
//! until they are sent, and `--spool-max-age` removes old ones.

#[path = "common/mod.rs"]
mod bin;
#[path = "sentry_common/mod.rs"]
mod sentry_common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bin::{LIMIT, crashwatch, reports, run_with_timeout};
use sentry_common::relay::{FakeRelay, dsn_for, unused_port};

/// Bytes on disk under `dir`, as `du` counts them (the directories too).
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        total += meta.blocks() * 512;
        if meta.is_dir() {
            total += du(&entry.path());
        }
    }
    total
}

fn run(spool: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = crashwatch(spool);
    cmd.args(args);
    run_with_timeout(cmd, LIMIT)
}

fn causes(spool: &Path) -> Vec<String> {
    reports(spool).iter().map(|r| r["status"].to_string()).collect()
}

#[test]
fn a_crash_loop_of_500_stays_under_the_cap_and_the_rare_crash_stays() {
    let spool = tempfile::tempdir().unwrap();
    // The rare crash: one of its kind, and the oldest.
    assert_eq!(run(spool.path(), &["run", "--", "sh", "-c", "exit 4"]).status.code(), Some(4));
    let cap = 64 * 1024;
    let out = run(
        spool.path(),
        &[
            "run",
            "--restart",
            "always",
            "--restart-delay",
            "0",
            "--max-restarts",
            "499",
            "--spool-max-use",
            "64K",
            "--spool-keep-free",
            "0",
            "--",
            "sh",
            "-c",
            "echo run; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    // 500 runs.
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 500);
    let used = du(&spool.path().join("reports"));
    assert!(used <= cap, "the reports use {used} bytes, over the cap of {cap}");
    let all = reports(spool.path());
    assert!(all.len() >= 2 && all.len() < 500, "{} reports", all.len());
    // Newest first: the last run's report is there, and so is the rare one.
    assert_eq!(all[0]["exit_code"], 3);
    assert_eq!(all.iter().filter(|r| r["exit_code"] == 4).count(), 1, "{:?}", causes(spool.path()));
    // Nothing half-deleted is left.
    let names: Vec<String> = std::fs::read_dir(spool.path().join("reports"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.len() == 32), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_waiting_in_the_outbox_are_kept_until_they_are_sent() {
    let addr = unused_port();
    let dsn = dsn_for(addr);
    let spool = tempfile::tempdir().unwrap();
    let path = spool.path().to_path_buf();
    let dsn_run = dsn.clone();
    // Relay is down: ten reports wait in the outbox, over a cap of 1 byte.
    let out = tokio::task::spawn_blocking(move || {
        run(
            &path,
            &[
                "run",
                "--dsn",
                &dsn_run,
                "--report-exit-codes",
                "--group-window",
                "0",
                "--max-reports-per-hour",
                "0",
                "--flush-timeout",
                "1",
                "--restart",
                "always",
                "--restart-delay",
                "0",
                "--max-restarts",
                "9",
                "--spool-max-use",
                "1",
                "--",
                "sh",
                "-c",
                "exit 3",
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let waiting = reports(spool.path());
    assert_eq!(waiting.len(), 10);

    // Sent: now they may go, but the newest of the kind.
    let relay = FakeRelay::start_on(addr).await;
    let path = spool.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || run(&path, &["send", "--dsn", &dsn, "--spool-max-use", "1"]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(relay.with(|s| s.accepted_events().len()), 10);
    let left = reports(spool.path());
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], waiting[0]["id"], "the newest is kept");
}

/// Makes report `id` as old as if it had been filed in 2001: the time it
/// ended, and the time its record was written.
fn age(spool: &Path, id: &str) {
    let path = spool.join("reports").join(id).join("report.json");
    let mut report: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    report["ended_at"] = "2001-01-01T00:00:00Z".into();
    std::fs::write(&path, serde_json::to_vec(&report).unwrap()).unwrap();
    let then = std::time::UNIX_EPOCH + std::time::Duration::from_secs(978_307_200);
    std::fs::File::options().write(true).open(&path).unwrap().set_modified(then).unwrap();
}

#[test]
fn reports_past_the_maximum_age_go_unless_they_wait_to_be_sent() {
    let dsn = dsn_for(unused_port());
    let spool = tempfile::tempdir().unwrap();
    // A report kept locally, and one waiting in the outbox (Relay is down).
    assert_eq!(run(spool.path(), &["run", "--", "sh", "-c", "exit 4"]).status.code(), Some(4));
    let args = ["run", "--dsn", &dsn, "--report-exit-codes", "--flush-timeout", "1", "--", "sh", "-c", "exit 5"];
    assert_eq!(run(spool.path(), &args).status.code(), Some(5));
    let all = reports(spool.path());
    assert_eq!(all.len(), 2);
    for report in &all {
        age(spool.path(), report["id"].as_str().unwrap());
    }
    let out = run(spool.path(), &["send", "--dsn", &dsn, "--timeout", "1", "--spool-max-age", "30d"]);
    // Relay is still down: the waiting report is not sent.
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let left = reports(spool.path());
    assert_eq!(left.len(), 1, "{:?}", causes(spool.path()));
    assert_eq!(left[0]["exit_code"], 5);
}
