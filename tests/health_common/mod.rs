//! What the Release Health and cron monitor tests share: a run of the real
//! binary driven through the child's stdin, and the checks every session
//! update must pass.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::SystemTime;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::bin::{LIMIT, wait_output};
use crate::sentry_common::relay::{FakeRelay, State};

pub const RELEASE: &str = "server@2.1.0";
pub const ENVIRONMENT: &str = "production";

/// A crashwatch run whose child waits for lines on stdin, with the wall
/// clock around it.
pub struct Driven {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub before: SystemTime,
}

impl Driven {
    pub fn start(mut cmd: Command) -> Driven {
        let before = SystemTime::now();
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stdin = child.stdin.take();
        Driven { child, stdin, before }
    }

    pub fn say(&mut self, line: &str) {
        writeln!(self.stdin.as_mut().unwrap(), "{line}").unwrap();
    }

    /// Waits for crashwatch's end; its output and the wall-clock span of the run.
    pub async fn finish(mut self) -> (Output, SystemTime, SystemTime) {
        drop(self.stdin.take());
        let child = self.child;
        let out = tokio::task::spawn_blocking(move || wait_output(child, LIMIT)).await.unwrap();
        (out, self.before, SystemTime::now())
    }
}

/// A shell command as the program (`sh -c SCRIPT`).
pub fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

pub fn run_cmd(spool: &Path, dsn: &str, flags: &[&str], program: &[String]) -> Command {
    let mut cmd = crate::bin::crashwatch(spool);
    cmd.args(["run", "--dsn", dsn, "--release", RELEASE, "--environment", ENVIRONMENT]).args(flags).arg("--");
    cmd.args(program);
    cmd
}

pub fn time_of(value: &Value) -> SystemTime {
    let text = value.as_str().unwrap_or_else(|| panic!("{value} is not a timestamp"));
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{text}: {e}")).into()
}

/// Session updates at the relay, in arrival order.
pub fn sessions(relay: &FakeRelay) -> Vec<Value> {
    relay.with(|s| s.items_of("session"))
}

/// Waits until the relay has `n` session updates.
pub async fn wait_sessions(relay: &FakeRelay, n: usize) {
    relay
        .wait_until(&format!("{n} session update(s)"), crate::sentry_common::WAIT, |s| s.items_of("session").len() >= n)
        .await;
}

/// The relay saw nothing invalid and would drop nothing it accepted.
pub fn all_valid(state: &State) {
    assert!(state.invalid().is_empty(), "invalid requests: {:?}", state.invalid());
    assert!(state.dropped.is_empty(), "items relay would drop: {:?}", state.dropped);
}

/// Checks what every update of one run's session says: the same sid, did,
/// start, release and environment; `init` on exactly one, the first; `seq`
/// increasing in arrival order; times within the run; the final status;
/// and returns the final update.
pub fn one_run(updates: &[Value], status: &str, errors: u64, span: (SystemTime, SystemTime)) -> Value {
    assert!(!updates.is_empty() && updates.len() <= 2, "{updates:#?}");
    let first = &updates[0];
    let did = crashwatch::sentry::session::host_id();
    for update in updates {
        assert_eq!(update["sid"], first["sid"]);
        assert_eq!(update["did"], did.as_str());
        assert_eq!(update["started"], first["started"]);
        assert_eq!(update["attrs"], serde_json::json!({"release": RELEASE, "environment": ENVIRONMENT}));
        let (started, at) = (time_of(&update["started"]), time_of(&update["timestamp"]));
        assert!(span.0 <= started && started <= at && at <= span.1, "{update} outside the run");
    }
    let inits: Vec<bool> = updates.iter().map(|u| u["init"] == true).collect();
    assert_eq!(inits.iter().filter(|i| **i).count(), 1, "init exactly once: {updates:#?}");
    assert!(inits[0], "init on the first update: {updates:#?}");
    for pair in updates.windows(2) {
        assert!(pair[0]["seq"].as_u64() < pair[1]["seq"].as_u64(), "seq order: {updates:#?}");
        assert_eq!((pair[0]["status"].as_str(), pair[0]["errors"].as_u64()), (Some("ok"), Some(0)));
        assert!(pair[0].get("duration").is_none());
    }
    let last = updates.last().unwrap().clone();
    assert_eq!((last["status"].as_str(), last["errors"].as_u64()), (Some(status), Some(errors)), "{last}");
    let duration = last["duration"].as_f64().expect("a final update has a duration");
    let wall = span.1.duration_since(span.0).unwrap().as_secs_f64();
    assert!(duration > 0.0 && duration <= wall, "duration {duration} s, the run took {wall} s");
    last
}

/// The updates of session `sid`, in arrival order.
pub fn of_sid(updates: &[Value], sid: &Value) -> Vec<Value> {
    updates.iter().filter(|u| &u["sid"] == sid).cloned().collect()
}

/// Runs `payloads` (session, sessions and check-in items) through what the
/// `sentry-relay` wheel offers: Relay's release validation for
/// `attrs.release`, its event normalizer for the environment (Relay applies
/// the same `validate_environment` to sessions), and its data categories
/// for those crashwatch honours. The wheel has no session or check-in
/// normalizer; their shapes are checked by the fake relay, after Relay's
/// own types.
pub fn through_the_wheel(payloads: &[Value]) {
    let python = std::env::var_os("CRASHWATCH_TEST_RELAY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/relay-venv/bin/python"));
    assert!(python.exists(), "{} is missing: run .ci/test, which installs the sentry-relay wheel", python.display());
    let mut child = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/relay_normalizer/health.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(payloads).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = wait_output(child, LIMIT);
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "the wheel's checks failed: {}", String::from_utf8_lossy(&out.stderr));
    let problems: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(problems.is_empty(), "what Relay would refuse: {problems:#?}");
}
