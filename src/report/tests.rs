use super::*;

#[test]
fn shared_dump_fields_stay_where_reports_on_disk_have_them() {
    // A crash record as earlier versions wrote it: every field flat.
    let written = serde_json::json!({
        "signal": 11, "signal_name": "SIGSEGV", "code": 1, "pid": 7, "tid": 8,
        "thread_name": "worker", "exe": "/srv/app", "threads": 2,
        "minidump": {"file": "minidump.dmp", "size": 10}, "capture_ms": 1.5,
    });
    let crash: Crash = serde_json::from_value(written.clone()).unwrap();
    assert_eq!((crash.dumped.pid, crash.dumped.tid, crash.dumped.thread_name.as_str()), (7, 8, "worker"));
    assert_eq!(serde_json::to_value(&crash).unwrap(), written);
}

#[test]
fn a_snapshot_says_when_and_at_what_share_of_the_limit() {
    let taken_at = time::macros::datetime!(2026-11-22 03:15:02 UTC);
    let snapshot = MemorySnapshot {
        crossed_at: taken_at - time::Duration::milliseconds(40),
        taken_at,
        usage: 34_000_000,
        limit: 64 << 20,
        threshold_percent: 50,
        noticed_by: Some(crate::memory::notify::Mechanism::CgroupV1Threshold),
        dumped: Dumped {
            pid: 7,
            tid: 7,
            thread_name: "server".into(),
            threads: 3,
            minidump: None,
            minidump_error: None,
            stacks: None,
            stacks_error: None,
            capture_ms: Some(1.5),
            notes: Vec::new(),
        },
    };
    assert_eq!(
        snapshot.headline(taken_at + time::Duration::milliseconds(1250)),
        "at 51% of the memory limit (32.4 MiB of 64.0 MiB), taken 2026-11-22 03:15:02 UTC, 1.25s before the end"
    );
    assert_eq!(MemorySnapshot { limit: 0, ..snapshot }.percent(), 0.0);
}
