//! Reports reach Relay from the real binary: a fake Relay on loopback that
//! validates what Relay validates, real crashers under `crashwatch run`.

#[path = "common/mod.rs"]
mod bin;
#[path = "sentry_common/mod.rs"]
mod sentry_common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

use bin::{LIMIT, crashwatch, fixture, only_report, run_with_timeout};
use sentry_common::WAIT;
use sentry_common::relay::{FakeRelay, Outcome, Reply, dsn_for, unused_port};
use serde_json::Value;

/// Runs a blocking command off the runtime's threads, so the fake Relay
/// keeps answering.
async fn blocking(cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || run_with_timeout(cmd, LIMIT)).await.unwrap()
}

/// A crasher that prints a line (`crash_tid=N`) before thread 5 of 6 dies.
fn run_crasher(spool: &std::path::Path, dsn: &str, flags: &[&str]) -> Command {
    let mut cmd = crashwatch(spool);
    cmd.args(["run", "--dsn", dsn]).args(flags).arg("--").arg(fixture("thread5_of_6"));
    cmd
}

fn send(spool: &std::path::Path, dsn: &str) -> Command {
    let mut cmd = crashwatch(spool);
    cmd.args(["send", "--json", "--dsn", dsn]);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_arrives_once_with_event_minidump_and_log() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    let out = blocking(run_crasher(spool.path(), &relay.dsn(), &[])).await;
    assert_eq!(out.status.code(), Some(128 + 11), "{}", String::from_utf8_lossy(&out.stderr));
    let report = only_report(spool.path());
    relay.with(|s| {
        assert!(s.invalid().is_empty(), "{:?}", s.invalid());
        let events = s.accepted_events();
        assert_eq!(events.len(), 1);
        let envelope = events[0];
        assert_eq!(envelope.event_id(), report["id"].as_str());
        // The minidump is a plain attachment: Sentry keeps the stacks
        // symbolicated here instead of walking the dump again.
        assert_eq!(envelope.item_types(), ["event", "attachment:event.attachment", "attachment:event.attachment"]);
        let event = envelope.event().unwrap();
        assert_eq!((event["level"].as_str(), event["platform"].as_str()), (Some("fatal"), Some("native")));
        let exception = &event["exception"]["values"][0];
        assert_eq!(exception["type"], "SIGSEGV");
        assert_eq!(exception["mechanism"]["type"], "signalhandler");
        assert_eq!(exception["mechanism"]["handled"], false);
        assert_eq!(exception["mechanism"]["meta"]["signal"]["number"], 11);
        assert_eq!(exception["mechanism"]["meta"]["signal"]["code_name"], "SEGV_MAPERR");
        assert_eq!(exception["thread_id"], report["crash"]["tid"]);
        assert_eq!(event["tags"]["exit_status"], "139");
        // Symbolicated: the exception's stack ends in the faulting function
        // (frames oldest first), every thread is there, and the images carry
        // their build-ids.
        let frames = exception["stacktrace"]["frames"].as_array().unwrap();
        let top = frames.last().unwrap();
        assert_eq!(top["function"], "crash_here");
        assert_eq!(top["lineno"], 11);
        assert_eq!(top["in_app"], true);
        assert!(top["instruction_addr"].as_str().unwrap().starts_with("0x"));
        let threads = event["threads"]["values"].as_array().unwrap();
        assert_eq!(threads.len(), 6);
        assert_eq!(threads.iter().filter(|t| t["crashed"] == true).count(), 1);
        let images = event["debug_meta"]["images"].as_array().unwrap();
        let main = images.iter().find(|i| i["code_file"].as_str().unwrap().contains("thread5_of_6")).unwrap();
        assert_eq!(main["type"], "elf");
        let code_id = main["code_id"].as_str().unwrap();
        assert_eq!(code_id.len(), 40, "a GNU build-id: {code_id}");
        assert_eq!(main["debug_id"].as_str().unwrap().len(), 36);
        // A write to 0x10: a field of a null struct pointer.
        assert_eq!(event["contexts"]["crashwatch"]["diagnosis"], "null pointer dereference");
        let minidump = &envelope.items[1];
        assert_eq!(
            (&minidump.header["filename"], &minidump.header["content_type"]),
            (&"minidump.dmp".into(), &"application/x-dmp".into())
        );
        // The scrubbed environment and command line are appended to it.
        assert!(minidump.payload.len() as u64 > report["crash"]["minidump"]["size"].as_u64().unwrap());
        assert!(minidump.payload.starts_with(b"MDMP"));
        let log = &envelope.items[2];
        assert_eq!(log.header["content_type"], "text/plain");
        let log = String::from_utf8_lossy(&log.payload);
        assert!(log.trim_end().ends_with(&format!("stdout| crash_tid={}", report["crash"]["tid"])), "{log}");
        assert_eq!(event["breadcrumbs"]["values"][0]["message"], format!("crash_tid={}", report["crash"]["tid"]));
    });
    // Delivered and gone from the outbox: a send finds nothing.
    let out = blocking(send(spool.path(), &relay.dsn())).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(relay.with(|s| s.requests.len()), 1);
}

/// `CRASHWATCH_MINIDUMP_PROCESSING=server` (`--minidump-processing
/// server`): the minidump goes as `event.minidump`, for Sentry to walk with
/// the debug files uploaded to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_processing_sends_the_dump_as_event_minidump() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = run_crasher(spool.path(), &relay.dsn(), &[]);
    cmd.env("CRASHWATCH_MINIDUMP_PROCESSING", "server");
    let out = blocking(cmd).await;
    assert_eq!(out.status.code(), Some(128 + 11), "{}", String::from_utf8_lossy(&out.stderr));
    relay.with(|s| {
        let events = s.accepted_events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].item_types(), ["event", "attachment:event.minidump", "attachment:event.attachment"]);
        let minidump = &events[0].items[1];
        assert_eq!(minidump.header["filename"], "minidump.dmp");
        assert_eq!(minidump.header["content_type"], "application/x-dmp");
        assert!(minidump.payload.starts_with(b"MDMP"));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_down_for_the_whole_run_then_send_delivers() {
    let addr = unused_port();
    let dsn = dsn_for(addr);
    let spool = tempfile::tempdir().unwrap();
    let out = blocking(run_crasher(spool.path(), &dsn, &[])).await;
    assert_eq!(out.status.code(), Some(128 + 11));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stays in the spool") || stderr.contains("stay in the spool"), "{stderr}");

    // Still down: send fails, saying so.
    let out = blocking(send(spool.path(), &dsn)).await;
    assert_eq!(out.status.code(), Some(1));

    let relay = FakeRelay::start_on(addr).await;
    let out = blocking(send(spool.path(), &dsn)).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["sent"], 1);
    relay.with(|s| assert_eq!(s.accepted_events().len(), 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_down_for_the_whole_run_then_the_next_run_delivers() {
    let addr = unused_port();
    let dsn = dsn_for(addr);
    let spool = tempfile::tempdir().unwrap();
    let out = blocking(run_crasher(spool.path(), &dsn, &[])).await;
    assert_eq!(out.status.code(), Some(128 + 11));

    let relay = FakeRelay::start_on(addr).await;
    // The next run, of a program that does not crash, sends it beside it.
    let mut next = crashwatch(spool.path());
    next.args(["run", "--dsn", &dsn, "--", "true"]);
    assert_eq!(blocking(next).await.status.code(), Some(0));
    relay.with(|s| {
        assert_eq!(s.accepted_events().len(), 1);
        assert_eq!(s.accepted_events()[0].event().unwrap()["exception"]["values"][0]["type"], "SIGSEGV");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_upload_then_send_delivers_exactly_once() {
    let relay = FakeRelay::start().await;
    relay.script([Reply::Hold]);
    let spool = tempfile::tempdir().unwrap();
    let mut run = tokio::process::Command::from(run_crasher(spool.path(), &relay.dsn(), &["--flush-timeout", "600"]));
    let mut run =
        run.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).kill_on_drop(true).spawn().unwrap();
    relay
        .wait_until("crashwatch's upload to be in flight", WAIT, |s| {
            s.requests.iter().any(|r| r.outcome == Outcome::Holding)
        })
        .await;
    run.start_kill().unwrap(); // SIGKILL
    assert_eq!(run.wait().await.unwrap().signal(), Some(9));
    relay
        .wait_until("the killed upload to be abandoned", WAIT, |s| {
            s.requests.iter().any(|r| r.outcome == Outcome::Abandoned)
        })
        .await;

    let out = blocking(send(spool.path(), &relay.dsn())).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    relay.with(|s| {
        let outcomes: Vec<_> = s.requests.iter().map(|r| r.outcome.clone()).collect();
        assert_eq!(outcomes, [Outcome::Abandoned, Outcome::Accepted]);
        assert_eq!(s.accepted_events().len(), 1);
    });
}

#[test]
fn bad_dsns_stop_crashwatch_before_the_child_starts() {
    let spool = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let cases = [
        ("not a url", "not a URL"),
        ("ftp://0123456789abcdef0123456789abcdef@relay.example/42", "scheme"),
        ("https://relay.example/42", "public key"),
        ("https://0123456789abcdef0123456789abcdef@relay.example/", "project id"),
        ("https://0123456789abcdef0123456789abcdef@relay.example/project", "project id"),
    ];
    for (dsn, reason) in cases {
        let out = crashwatch(spool.path()).args(["run", "--dsn", dsn, "--", "touch"]).arg(&marker).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{dsn}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("crashwatch: error: the DSN (--dsn or SENTRY_DSN) is not valid: ")
                && stderr.to_lowercase().contains(&reason.to_lowercase()),
            "{dsn}: {stderr}"
        );
        assert!(!marker.exists(), "{dsn}: the child ran");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_and_plain_exits_are_kept_local_unless_asked() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--dsn", &relay.dsn(), "--", "sh", "-c", "exit 3"]);
    assert_eq!(blocking(cmd).await.status.code(), Some(3));
    assert_eq!(only_report(spool.path())["kind"], "exit");
    assert_eq!(relay.with(|s| s.requests.len()), 0, "a plain exit is not sent by default");

    let spool = tempfile::tempdir().unwrap();
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--report-exit-codes", "--dsn", &relay.dsn(), "--", "sh", "-c", "exit 3"]);
    assert_eq!(blocking(cmd).await.status.code(), Some(3));
    relay.with(|s| {
        let events = s.accepted_events();
        assert_eq!(events.len(), 1);
        let exception = &events[0].event().unwrap()["exception"]["values"][0];
        assert_eq!(exception["type"], "NonZeroExit");
        assert_eq!(exception["value"], "exited with code 3");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashwatch_test_reports_relays_answer() {
    let relay = FakeRelay::start().await;
    let mut cmd = crashwatch(std::path::Path::new("/nonexistent"));
    cmd.args(["test", "--dsn", &relay.dsn()]);
    let out = blocking(cmd).await;
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("OK: ") && stdout.contains("accepted test event"), "{stdout}");
    relay.with(|s| {
        let event = s.accepted_events()[0].event().unwrap();
        assert_eq!(event["tags"]["crashwatch_test"], "true");
    });

    relay.script([Reply::Error { status: 403, detail: "event submission rejected with_reason: ProjectId".into() }]);
    let mut cmd = crashwatch(std::path::Path::new("/nonexistent"));
    cmd.args(["test", "--dsn", &relay.dsn()]);
    let out = blocking(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("FAIL: ") && stdout.contains("ProjectId"), "{stdout}");
}

#[test]
fn a_full_disk_is_a_clear_error_and_the_child_is_untouched() {
    // The spool on a 64 KiB tmpfs, filled up first.
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"]).arg(dir.path()).status();
    assert!(mounted.unwrap().success(), "mounting a tmpfs needs root");
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(dir.path());
    let spool = dir.path().join("spool");
    crashwatch(&spool).args(["run", "--", "true"]).status().unwrap(); // creates the spool
    let filler = std::fs::File::create(dir.path().join("filler")).unwrap();
    let mut filler = std::io::BufWriter::new(filler);
    while std::io::Write::write_all(&mut filler, &[0u8; 4096]).is_ok() {}
    drop(filler);

    let mut cmd = crashwatch(&spool);
    cmd.args(["run", "--", "sh", "-c", "echo still running; exit 3"]);
    let out = run_with_timeout(cmd, LIMIT);
    // The child ran and its status came back.
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout, b"still running\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("crashwatch: error: the report could not be saved: failed to write ")
            && stderr.contains("No space left on device"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_leave_the_host() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    let script = "echo \"connecting with password=hunter2\"; \
                  echo 'Authorization: Bearer sk_live_abcdef123456' >&2; \
                  echo 'order card 4111-1111' >&2; kill -SEGV $$";
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--dsn", &relay.dsn(), "--scrub", r"card \d{4}-\d{4}", "--minidump", "local", "--"]).args([
        "sh",
        "-c",
        script,
        "sh",
        "--db-password=letmein",
    ]);
    assert_eq!(blocking(cmd).await.status.code(), Some(128 + 11));
    relay.with(|s| {
        let events = s.accepted_events();
        assert_eq!(events.len(), 1);
        // --minidump local: the dump stays home.
        assert_eq!(events[0].item_types(), ["event", "attachment:event.attachment"]);
        let everything: Vec<u8> = events[0].items.iter().flat_map(|i| i.payload.clone()).collect();
        let everything = String::from_utf8_lossy(&everything);
        for secret in ["hunter2", "sk_live_abcdef123456", "4111-1111", "letmein"] {
            assert!(!everything.contains(secret), "{secret} left the host: {everything}");
        }
        assert!(everything.contains("connecting with password=[Filtered]"), "{everything}");
    });
    // The local report keeps what the child printed. (Where the stdout line
    // stands among the stderr lines is read order: two pipes, no common clock.)
    let report = only_report(spool.path());
    assert!(bin::tail_texts(&report).contains(&"connecting with password=hunter2".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_stop_delivers_what_is_pending_before_crashwatch_exits() {
    use std::process::Stdio;
    // crashwatch as a container's PID 1 (a PID namespace), a worker of the
    // server crashes while Relay answers 503: the report waits in its retry
    // backoff. Then `docker stop`: SIGTERM to PID 1.
    let relay = FakeRelay::start().await;
    relay.script([Reply::Error { status: 503, detail: "overloaded".into() }]);
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", env!("CARGO_BIN_EXE_crashwatch"), "run", "--follow-forks"])
        .args(["--dsn", &relay.dsn(), "--", "sh", "-c", "sh -c 'kill -SEGV $$'; echo ready; exec sleep 1000"])
        .env("CRASHWATCH_SPOOL_DIR", spool.path())
        .env_remove("SENTRY_DSN");
    let mut unshare = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = bin::Lines::new(unshare.stdout.take().unwrap());
    out.wait_for("ready", LIMIT);
    relay.wait_until("the first attempt", WAIT, |s| !s.requests.is_empty()).await;
    assert!(relay.with(|s| s.accepted_events().is_empty()));
    // unshare's child is crashwatch, PID 1 inside.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id())).unwrap();
    let pid1: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid1), nix::sys::signal::Signal::SIGTERM).unwrap();
    let done = tokio::task::spawn_blocking(move || bin::wait_output(unshare, LIMIT)).await.unwrap();
    assert_eq!(done.status.code(), Some(143), "{}", String::from_utf8_lossy(&done.stderr));
    // Delivered before crashwatch exited, though its backoff was not over.
    relay.with(|s| {
        let events = s.accepted_events();
        assert_eq!(events.len(), 1, "{:?}", s.requests);
        assert_eq!(events[0].event().unwrap()["exception"]["values"][0]["type"], "SIGSEGV");
    });
}
