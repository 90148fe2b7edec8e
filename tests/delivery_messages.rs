//! What crashwatch says about delivery is what happened: a corrupt outbox
//! file is called corrupt (not "rejected by Relay"), an unusable outbox is
//! not "no DSN", an upload Relay received but did not answer is not "not
//! attempted", `send` exits with a code of its own when it set reports
//! aside, and a command whose output cannot be written fails.

#[path = "common/mod.rs"]
mod bin;
#[path = "sentry_common/mod.rs"]
mod sentry_common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use bin::{LIMIT, crashwatch, fixture, only_report, run_with_timeout};
use sentry_common::relay::{FakeRelay, Outcome, Reply, dsn_for, unused_port};
use serde_json::Value;

/// Runs a blocking command off the runtime's threads, so the fake Relay
/// keeps answering.
async fn blocking(cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || run_with_timeout(cmd, LIMIT)).await.unwrap()
}

fn crash(spool: &Path, dsn: &str, flags: &[&str]) -> Command {
    let mut cmd = crashwatch(spool);
    cmd.args(["run", "--dsn", dsn]).args(flags).arg("--").arg(fixture("segv_nested"));
    cmd
}

fn send(spool: &Path, dsn: &str) -> Command {
    let mut cmd = crashwatch(spool);
    cmd.args(["send", "--dsn", dsn]);
    cmd
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_outbox_file_is_called_corrupt_and_moved_aside() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    let pending = spool.path().join("outbox/pending");
    std::fs::create_dir_all(&pending).unwrap();
    let id = "1796473000000-0123456789abcdef0123456789abcdef";
    let file = pending.join(format!("{id}.envelope"));
    std::fs::write(&file, b"not an envelope\n").unwrap();

    let out = blocking(send(spool.path(), &relay.dsn())).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let aside = spool.path().join(format!("outbox/rejected/{id}.envelope"));
    assert!(
        err.contains(&format!(
            "outbox entry {} is corrupt (stored envelope has an invalid header: expected ident at line 1 column 2): \
             not sent, moved aside to {}",
            file.display(),
            aside.display()
        )),
        "{err}"
    );
    assert!(err.contains("0 sent, 1 corrupt, not sent (moved aside to the outbox's rejected/)"), "{err}");
    assert!(!err.contains("rejected by Relay") && !err.contains("status=0"), "{err}");
    assert_eq!(std::fs::read(&aside).unwrap(), b"not an envelope\n");
    assert!(!file.exists());
    let record: Value =
        serde_json::from_slice(&std::fs::read(spool.path().join(format!("outbox/rejected/{id}.json"))).unwrap())
            .unwrap();
    assert_eq!(record["corrupt"], true);
    // Nothing of it was sent; its loss is reported as Sentry's clients do.
    relay.with(|s| {
        assert!(s.accepted_events().is_empty());
        let reports: Vec<Value> = s.accepted.iter().filter_map(|e| e.client_report()).collect();
        assert_eq!(reports.len(), 1, "{:?}", s.requests);
        let discarded = &reports[0]["discarded_events"][0];
        assert_eq!((&discarded["reason"], &discarded["category"]), (&"internal_sdk_error".into(), &"error".into()));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_outbox_is_not_called_a_missing_dsn() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    // A file where the outbox keeps its pending entries.
    std::fs::create_dir(spool.path().join("outbox")).unwrap();
    std::fs::write(spool.path().join("outbox/pending"), b"").unwrap();
    let out = blocking(crash(spool.path(), &relay.dsn(), &[])).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(128 + 11), "{err}");
    let pending = spool.path().join("outbox/pending");
    assert!(
        err.contains(&format!(
            "crashwatch: not sent: the outbox is unusable: refusing the spool directory {}: {} is not a \
             directory; the report is kept in the spool\n",
            pending.display(),
            pending.display()
        )),
        "{err}"
    );
    assert!(!err.contains("no DSN"), "{err}");
    assert_eq!(only_report(spool.path())["crash"]["signal"], 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_relay_received_but_did_not_answer_is_not_called_not_attempted() {
    let relay = FakeRelay::start().await;
    relay.script([Reply::Hold]);
    let spool = tempfile::tempdir().unwrap();
    let out = blocking(crash(spool.path(), &relay.dsn(), &["--flush-timeout", "1"])).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(128 + 11), "{err}");
    // The relay had the whole body when crashwatch gave up waiting (and
    // may have seen it hang up since).
    relay.with(|s| assert!(matches!(s.requests[0].outcome, Outcome::Holding | Outcome::Abandoned), "{:?}", s.requests));
    // It waited what was left of the 1 s flush timeout.
    let waited = |text: &str, before: &str, after: &str| -> f64 {
        let start = text.find(before).unwrap_or_else(|| panic!("{before:?} in {text}")) + before.len();
        text[start..start + text[start..].find(after).unwrap()].parse().unwrap()
    };
    let within = waited(&err, "0 sent, 1 waiting (sent, no answer within ", "s; will retry) to ");
    assert!(within > 0.0 && within <= 1.0, "{err}");
    assert!(!err.contains("not attempted"), "{err}");
    let pending: Vec<_> = std::fs::read_dir(spool.path().join("outbox/pending"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    let state: Value =
        serde_json::from_slice(&std::fs::read(spool.path().join("outbox/pending").join(&pending[0])).unwrap()).unwrap();
    let note = state["last_error"].as_str().unwrap();
    assert_eq!(waited(note, "sent, no answer within ", "s (the flush deadline)"), within, "{note}");
    assert_eq!(state["attempts"], 0);

    // The next send delivers it.
    relay.release();
    let out = blocking(send(spool.path(), &relay.dsn())).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    relay.with(|s| assert_eq!(s.accepted_events().len(), 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_exits_3_when_it_set_a_report_aside_and_names_what_earlier_ones_left() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    // Relay down for the run: the report waits in the outbox.
    let out = blocking(crash(spool.path(), &dsn_for(unused_port()), &[])).await;
    assert_eq!(out.status.code(), Some(128 + 11));
    relay.script([Reply::Error { status: 400, detail: "invalid event".into() }]);

    let out = blocking(send(spool.path(), &relay.dsn())).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("0 sent, 1 rejected by Relay (kept in the outbox's rejected/) to "), "{err}");
    let rejected = spool.path().join("outbox/rejected");
    assert_eq!(std::fs::read_dir(&rejected).unwrap().count(), 2, "the envelope and Relay's reasons");

    // Nothing left to send: 0, and what an earlier send set aside is named.
    let out = blocking(send(spool.path(), &relay.dsn())).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains(&format!("0 sent to {}", "http://")), "{err}");
    assert!(err.contains(&format!("; 1 report set aside earlier is in {}\n", rejected.display())), "{err}");
}

/// Runs `crashwatch ARGS` with stdout on `stdout`.
fn printing(spool: &Path, args: &[&str], stdout: Stdio) -> Output {
    let child = crashwatch(spool).args(args).stdin(Stdio::null()).stdout(stdout).stderr(Stdio::piped()).spawn();
    bin::wait_output(child.unwrap(), LIMIT)
}

#[test]
fn printing_to_a_full_disk_fails_and_to_a_closed_pipe_does_not() {
    let spool = tempfile::tempdir().unwrap();
    let out = run_with_timeout(crash(spool.path(), "", &["--no-ptrace"]), LIMIT);
    assert_eq!(out.status.code(), Some(128 + 11));
    let id = only_report(spool.path())["id"].as_str().unwrap().to_owned();
    for args in [&["list"][..], &["list", "--json"], &["show"], &["show", "--json", &id]] {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let out = printing(spool.path(), args, Stdio::from(full));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err, "crashwatch: error: failed to write to stdout: No space left on device (os error 28)\n");

        // A reader that went away (`crashwatch list | head -1`) is fine.
        let (read, write) = nix::unistd::pipe().unwrap();
        drop(read);
        let out = printing(spool.path(), args, Stdio::from(write));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    }
}
