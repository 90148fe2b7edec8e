//! Node.js under the real binary: an uncaught exception and an unhandled
//! rejection are panic reports sent with their JavaScript frames; V8's
//! fatal out-of-memory and `process.abort()` are SIGABRT reports with a
//! minidump and node's own story. Programs: `testdata/programs/node/`.

#[path = "common/mod.rs"]
mod bin;
#[path = "sentry_common/mod.rs"]
mod sentry_common;

use std::path::PathBuf;
use std::process::{Command, Output};

use bin::{LIMIT, crashwatch, only_report, run_with_timeout};
use sentry_common::relay::FakeRelay;
use serde_json::Value;

fn program(name: &str) -> PathBuf {
    bin::testdata(&format!("programs/node/{name}"))
}

/// Runs node with `args` under crashwatch (with `dsn`, if any).
fn run(spool: &std::path::Path, dsn: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = crashwatch(spool);
    cmd.arg("run");
    if let Some(dsn) = dsn {
        cmd.args(["--dsn", dsn]);
    }
    cmd.args(["--", "node"]).args(args);
    cmd
}

async fn blocking(cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || run_with_timeout(cmd, LIMIT)).await.unwrap()
}

/// `(function, file, line, column, in_app)` of a story frame.
type JsFrame = (String, String, Option<u64>, Option<u64>, bool);

/// The story's frames, oldest first.
fn frames(story: &Value) -> Vec<JsFrame> {
    story["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["function"].as_str().unwrap_or("").to_owned(),
                f["filename"].as_str().unwrap_or("").to_owned(),
                f["lineno"].as_u64(),
                f["colno"].as_u64(),
                f["in_app"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// The crashing thread's function names from the report's `stacks.json`.
fn crashing_functions(spool: &std::path::Path, report: &Value) -> Vec<String> {
    let dir = spool.join("reports").join(report["id"].as_str().unwrap());
    let stacks: Value = serde_json::from_slice(&std::fs::read(dir.join("stacks.json")).unwrap()).unwrap();
    let thread = &stacks["threads"][stacks["crashing_thread"].as_u64().unwrap() as usize];
    thread["frames"].as_array().unwrap().iter().filter_map(|f| f["function"].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncaught_exception_is_a_panic_sent_with_its_javascript_frames() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    let script = program("uncaught.js");
    let out = blocking(run(spool.path(), Some(&relay.dsn()), &[script.to_str().unwrap()])).await;
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));

    let report = only_report(spool.path());
    assert_eq!(report["kind"], "panic");
    let story = &report["panic"];
    assert_eq!(story["runtime"], "Node");
    assert_eq!(story["kind"], "SyntaxError");
    assert_eq!(story["value"], "Expected property name or '}' in JSON at position 1");
    let file = script.to_str().unwrap().to_owned();
    let all = frames(story);
    let app: Vec<_> = all.iter().filter(|f| f.4).cloned().collect();
    assert_eq!(
        app,
        [
            ("Object.<anonymous>".to_owned(), file.clone(), Some(8), Some(1), true),
            ("start".to_owned(), file.clone(), Some(6), Some(3), true),
            ("parseConfig".to_owned(), file.clone(), Some(3), Some(15), true),
        ]
    );
    // Newest last: the built-in that threw, with no file.
    assert_eq!(all.last().unwrap(), &("JSON.parse".to_owned(), String::new(), None, None, false));
    assert!(all.iter().any(|f| f.1 == "node:internal/modules/cjs/loader" && !f.4), "{all:?}");

    // Sent, with the JavaScript frames as the exception's stack.
    relay.with(|s| {
        let events = s.accepted_events();
        assert_eq!(events.len(), 1, "{:?}", s.invalid());
        let event = events[0].event().unwrap();
        assert_eq!(event["platform"], "node");
        let exception = &event["exception"]["values"][0];
        assert_eq!(exception["type"], "SyntaxError");
        assert_eq!(exception["mechanism"]["type"], "panic");
        let top = exception["stacktrace"]["frames"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(top["function"], "JSON.parse");
        let frames = exception["stacktrace"]["frames"].as_array().unwrap();
        let parse = &frames[frames.len() - 2];
        assert_eq!(
            (parse["function"].as_str(), parse["lineno"].as_u64(), parse["colno"].as_u64()),
            (Some("parseConfig"), Some(3), Some(15))
        );
    });
}

#[test]
fn unhandled_rejections_are_panics() {
    let spool = tempfile::tempdir().unwrap();
    let script = program("rejection.js");
    let out = run_with_timeout(run(spool.path(), None, &[script.to_str().unwrap()]), LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let report = only_report(spool.path());
    assert_eq!(report["kind"], "panic");
    assert_eq!(
        (report["panic"]["kind"].as_str(), report["panic"]["value"].as_str()),
        (Some("Error"), Some("connection refused: db.internal"))
    );
    let file = script.to_str().unwrap().to_owned();
    let app: Vec<_> = frames(&report["panic"]).into_iter().filter(|f| f.4).collect();
    assert_eq!(
        app,
        [
            ("Object.<anonymous>".to_owned(), file.clone(), Some(9), Some(3), true),
            ("connect".to_owned(), file.clone(), Some(4), Some(9), true),
        ]
    );

    // A promise rejected with a plain value: node's own error says so.
    let spool = tempfile::tempdir().unwrap();
    let out = run_with_timeout(run(spool.path(), None, &[script.to_str().unwrap(), "value"]), LIMIT);
    assert_eq!(out.status.code(), Some(1));
    let report = only_report(spool.path());
    assert_eq!(report["kind"], "panic");
    assert_eq!(report["panic"]["kind"], "UnhandledPromiseRejection");
    let value = report["panic"]["value"].as_str().unwrap();
    assert!(value.ends_with("The promise rejected with the reason \"plain string reason\"."), "{value}");
    assert_eq!(frames(&report["panic"]).last().unwrap().0, "throwUnhandledRejectionsMode");
}

#[test]
fn v8_out_of_memory_is_an_abort_with_its_native_stack_and_a_minidump() {
    let spool = tempfile::tempdir().unwrap();
    let script = program("oom.js");
    let out = run_with_timeout(run(spool.path(), None, &["--max-old-space-size=16", script.to_str().unwrap()]), LIMIT);
    assert_eq!(out.status.code(), Some(128 + 6), "{}", String::from_utf8_lossy(&out.stderr));
    let report = only_report(spool.path());
    assert_eq!(report["kind"], "signal");
    assert_eq!(report["crash"]["signal_name"], "SIGABRT");
    assert_eq!(report["crash"]["minidump"]["file"], "minidump.dmp");
    let story = &report["panic"];
    assert_eq!((story["runtime"].as_str(), story["kind"].as_str()), (Some("Node"), Some("FATAL ERROR")));
    assert_eq!(story["value"], "Reached heap limit Allocation failed - JavaScript heap out of memory");
    // node's printed stack, newest last, and the dump's agree on where.
    let printed = frames(story);
    let handler = "node::OOMErrorHandler(char const*, v8::OOMDetails const&)";
    assert_eq!(printed.last().unwrap().0, handler);
    assert_eq!(story["frames"].as_array().unwrap().last().unwrap()["package"], "node");
    let dumped = crashing_functions(spool.path(), &report);
    assert!(dumped.iter().any(|f| f == handler), "{dumped:#?}");
    assert!(dumped.iter().any(|f| f == "v8::internal::Heap::CollectGarbage(v8::internal::AllocationSpace, v8::internal::GarbageCollectionReason, v8::GCCallbackFlags)"), "{dumped:#?}");
}

#[test]
fn process_abort_is_sigabrt_with_the_dump_and_the_javascript_stack() {
    let spool = tempfile::tempdir().unwrap();
    let script = program("abort.js");
    let out = run_with_timeout(run(spool.path(), None, &[script.to_str().unwrap()]), LIMIT);
    assert_eq!(out.status.code(), Some(128 + 6));
    let report = only_report(spool.path());
    assert_eq!(report["kind"], "signal");
    assert_eq!(report["crash"]["signal_name"], "SIGABRT");
    let story = &report["panic"];
    assert_eq!((story["runtime"].as_str(), story["kind"].as_str()), (Some("Node"), Some("Abort")));
    let file = script.to_str().unwrap().to_owned();
    let app: Vec<_> = frames(story).into_iter().filter(|f| f.4).collect();
    assert_eq!(
        app,
        [
            (String::new(), file.clone(), Some(9), Some(1), true),
            ("onFatal".to_owned(), file.clone(), Some(7), Some(3), true),
            ("shutdown".to_owned(), file.clone(), Some(4), Some(11), true),
        ]
    );
    let dumped = crashing_functions(spool.path(), &report);
    assert_eq!(dumped[..3], ["__pthread_kill_implementation", "raise", "abort"]);
    assert_eq!(dumped[3], "node::Abort(v8::FunctionCallbackInfo<v8::Value> const&)");
    assert!(dumped.iter().any(|f| f == "Builtins_InterpreterEntryTrampoline"), "{dumped:#?}");
    // The tail keeps what it printed first.
    assert_eq!(bin::tail_texts(&report)[0], "aborting: state corrupt");
}
