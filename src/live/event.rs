//! The Sentry events of live problems: level `error` (or the log line's
//! own), an exception whose mechanism says `handled: false` — nothing in
//! the program caught it — and `crashwatch.live: true` as a tag and in
//! `extra`, with the lines before it as breadcrumbs.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::Origin;
use super::detect::Shape;
use super::level::Leveled;
use crate::logs::Stream;
use crate::sentry::envelope::EventId;
use crate::sentry::event::{exception_type, story_stacktrace};
use crate::sentry::throttle::Signature;
use crate::story::Crash;

/// The event of a story the program survived: its id and JSON.
pub fn problem_event(
    origin: &Origin,
    crash: &Crash,
    shape: Shape,
    at: SystemTime,
    crumbs: &[(SystemTime, Stream, String)],
) -> (String, Value) {
    let mechanism = match shape {
        Shape::RustPanic => "panic",
        Shape::PythonThread => "threading.excepthook",
        Shape::JavaThread => "UncaughtExceptionHandler",
        Shape::GoHttp => "http.panic",
        Shape::NodeRejection => "onunhandledrejection",
        Shape::Sanitizer => "sanitizer",
    };
    let mut values = Vec::new();
    for cause in crash.chained.iter().rev() {
        let mut value = json!({
            "type": exception_type(cause),
            "value": cause.value,
            "mechanism": {"type": "chained", "handled": false},
        });
        let stack = story_stacktrace(cause);
        if !stack.is_null() {
            value["stacktrace"] = stack;
        }
        values.push(value);
    }
    let mut exception = json!({
        "type": exception_type(crash),
        "value": crash.value,
        "mechanism": {"type": mechanism, "handled": false},
    });
    let stack = story_stacktrace(crash);
    if !stack.is_null() {
        exception["stacktrace"] = stack;
    }
    values.push(exception);
    let (id, mut event) = base(origin, at, "error", crumbs);
    event["platform"] = json!(crash.runtime.platform());
    event["exception"] = json!({"values": values});
    event["tags"]["runtime"] = json!(format!("{:?}", crash.runtime).to_lowercase());
    if let Some(thread) = &crash.thread {
        event["tags"]["thread"] = json!(thread);
        event["extra"]["thread"] = json!(thread);
    }
    (id, event)
}

/// The event of an error line of the program's logs.
pub fn log_event(
    origin: &Origin,
    line: &Leveled<'_>,
    raw: &str,
    stream: Stream,
    at: SystemTime,
    crumbs: &[(SystemTime, Stream, String)],
    signature: &Signature,
) -> (String, Value) {
    let (id, mut event) = base(origin, at, line.level.sentry(), crumbs);
    event["logentry"] = json!({"formatted": line.message});
    event["fingerprint"] = json!(["crashwatch-log", signature.key]);
    event["tags"]["stream"] = json!(stream.name());
    event["extra"]["line"] = json!(raw);
    if let Some(logger) = &line.logger {
        event["logger"] = json!(logger);
    }
    (id, event)
}

pub(crate) fn base(
    origin: &Origin,
    at: SystemTime,
    level: &str,
    crumbs: &[(SystemTime, Stream, String)],
) -> (String, Value) {
    let id = EventId::new_v4().to_string();
    let rfc3339 = |t: SystemTime| {
        time::OffsetDateTime::from(t).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
    };
    let mut event = json!({
        "event_id": id,
        "timestamp": rfc3339(at),
        "platform": "other",
        "level": level,
        "logger": "crashwatch",
        "server_name": nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
        "tags": {"crashwatch.live": "true", "program": origin.program},
        "extra": {"crashwatch.live": true, "argv": origin.argv},
    });
    if let Some(release) = &origin.release {
        event["release"] = json!(release);
    }
    if let Some(environment) = &origin.environment {
        event["environment"] = json!(environment);
    }
    if !crumbs.is_empty() {
        let values: Vec<Value> = crumbs
            .iter()
            .map(|(at, stream, text)| {
                json!({
                    "timestamp": rfc3339(*at),
                    "type": "default",
                    "category": stream.name(),
                    "level": if *stream == Stream::Stderr { "warning" } else { "info" },
                    "message": text,
                })
            })
            .collect();
        event["breadcrumbs"] = json!({"values": values});
    }
    (id, event)
}
