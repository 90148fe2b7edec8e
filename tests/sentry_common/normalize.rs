//! Relay's own event normalizer (`sentry_relay.processing.StoreNormalizer`
//! from the `sentry-relay` wheel, which `.ci/test` installs), and the check
//! that an event survives it intact: every value sent is in the normalized
//! event, under the same path, equal, apart from the forms Relay writes the
//! same fact in (a timestamp as seconds, tags as pairs).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::relay::PROJECT;

/// Like tests/common's: the child's output with a limit.
fn wait_output(child: std::process::Child) -> std::process::Output {
    child.wait_with_output().unwrap()
}

/// The Python of the virtualenv `.ci/test` installs `sentry-relay` into.
pub fn relay_python() -> PathBuf {
    std::env::var_os("CRASHWATCH_TEST_RELAY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/relay-venv/bin/python"))
}

/// `events` as Relay's store normalizer leaves them.
pub fn normalize(events: &[Value]) -> Vec<Value> {
    let python = relay_python();
    assert!(
        python.exists(),
        "{} is missing: run .ci/test, which installs Relay's normalizer (pip sentry-relay) there, \
         or point CRASHWATCH_TEST_RELAY_PYTHON at a Python that has it",
        python.display()
    );
    let mut child = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/relay_normalizer/normalize.py"))
        .arg(PROJECT.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = serde_json::to_vec(events).unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = wait_output(child);
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "the normalizer failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What Relay's normalizer did to the event `sent`: the errors it added,
/// and what of `sent` did not survive in `normalized` (empty: nothing).
pub fn changed(sent: &Value, normalized: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(errors) = normalized.get("errors") {
        problems.push(format!("errors: {errors}"));
    }
    survives("event", sent, normalized, &mut problems);
    problems
}

/// Asserts that every event of `sent` passes Relay's normalizer as sent.
pub fn assert_normalized_as_sent(sent: &[Value]) {
    let normalized = normalize(sent);
    assert_eq!(normalized.len(), sent.len());
    let problems: Vec<String> = sent.iter().zip(&normalized).flat_map(|(s, n)| changed(s, n)).collect();
    assert!(problems.is_empty(), "what Relay's normalizer changed:\n{}", problems.join("\n"));
}

/// Checks that `sent` survives in `normalized` (see the module docs).
pub fn survives(at: &str, sent: &Value, normalized: &Value, problems: &mut Vec<String>) {
    let key = at.rsplit('.').next().unwrap_or("");
    match (sent, normalized) {
        (Value::String(text), Value::Number(seconds)) if key == "timestamp" => {
            let sent = OffsetDateTime::parse(text, &Rfc3339).map(|t| t.unix_timestamp_nanos() as f64 / 1e9);
            let close = sent.as_ref().is_ok_and(|s| (s - seconds.as_f64().unwrap_or(0.0)).abs() < 1e-3);
            if !close {
                problems.push(format!("{at}: sent {text}, normalized {seconds}"));
            }
        }
        (Value::Object(tags), Value::Array(pairs)) if key == "tags" => {
            for (name, value) in tags {
                if !pairs.iter().any(|p| p[0] == name.as_str() && &p[1] == value) {
                    problems.push(format!("{at}: tag {name}={value} lost, normalized {normalized}"));
                }
            }
        }
        (Value::Object(sent), Value::Object(kept_object)) => {
            for (name, value) in sent {
                match kept_object.get(name) {
                    Some(kept) => survives(&format!("{at}.{name}"), value, kept, problems),
                    // Relay keeps the host as a tag.
                    None if at == "event" && name == "server_name" => {
                        let tags = normalized["tags"].as_array().into_iter().flatten();
                        if !tags.clone().any(|p| p[0] == "server_name" && &p[1] == value) {
                            problems.push(format!("event.server_name: {value} neither kept nor a tag"));
                        }
                    }
                    None => problems.push(format!("{at}.{name}: dropped (was {value})")),
                }
            }
        }
        (Value::Array(sent), Value::Array(normalized)) => {
            if sent.len() != normalized.len() {
                problems.push(format!("{at}: {} items sent, {} after normalization", sent.len(), normalized.len()));
            }
            for (i, (value, kept)) in sent.iter().zip(normalized).enumerate() {
                survives(&format!("{at}[{i}]"), value, kept, problems);
            }
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        (a, b) if a == b => {}
        (a, b) => problems.push(format!("{at}: sent {a}, normalized {b}")),
    }
}
