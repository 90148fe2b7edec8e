//! Runtimes whose own signal handler sees the fault first, under the real
//! binary: the JVM (it writes `hs_err_pid*.log` and aborts) and Python with
//! faulthandler (it prints the Python stack and raises the signal again).

#[path = "common/mod.rs"]
mod bin;
#[path = "sentry_common/mod.rs"]
mod sentry_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use bin::{LIMIT, crashwatch, only_report, run_with_timeout};
use sentry_common::relay::FakeRelay;
use serde_json::Value;

async fn blocking(cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || run_with_timeout(cmd, LIMIT)).await.unwrap()
}

fn report_dir(spool: &Path, report: &Value) -> PathBuf {
    spool.join("reports").join(report["id"].as_str().unwrap())
}

/// The crashing thread's function names from the report's `stacks.json`.
fn crashing_functions(spool: &Path, report: &Value) -> Vec<String> {
    let stacks: Value =
        serde_json::from_slice(&std::fs::read(report_dir(spool, report).join("stacks.json")).unwrap()).unwrap();
    let thread = &stacks["threads"][stacks["crashing_thread"].as_u64().unwrap() as usize];
    thread["frames"].as_array().unwrap().iter().filter_map(|f| f["function"].as_str().map(str::to_owned)).collect()
}

fn hard_crash_class() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("java-hard-crash");
        let status = Command::new("javac")
            .arg("-nowarn")
            .arg("-d")
            .arg(&out)
            .arg(bin::testdata("programs/HardCrash.java"))
            .status()
            .expect("javac is needed (installed by .ci/test)");
        assert!(status.success(), "javac failed");
        out
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jvm_hard_crash_names_the_real_signal_and_attaches_hs_err_scrubbed() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = crashwatch(spool.path());
    cmd.current_dir(cwd.path())
        .args(["run", "--dsn", &relay.dsn(), "--", "java", "-Ddb.password=hunter2", "-cp"])
        .arg(hard_crash_class())
        .arg("HardCrash");
    let out = blocking(cmd).await;
    // The JVM handles the SIGSEGV, then aborts.
    assert_eq!(out.status.code(), Some(128 + 6), "{}", String::from_utf8_lossy(&out.stderr));
    let report = only_report(spool.path());
    let pid = report["program"]["pid"].as_i64().unwrap();
    assert_eq!(report["crash"]["signal_name"], "SIGABRT");
    let story = &report["panic"];
    assert_eq!((story["runtime"].as_str(), story["kind"].as_str()), (Some("Java"), Some("SIGSEGV")));
    let value = story["value"].as_str().unwrap();
    assert!(value.starts_with("SIGSEGV at pc=0x"), "{value}");
    let problematic = regex::Regex::new(r" in V  \[libjvm\.so\+0x[0-9a-f]+\]  Unsafe_PutLong\+0x[0-9a-f]+$").unwrap();
    assert!(problematic.is_match(value), "{value}");
    let frame = &story["frames"][0];
    assert_eq!((frame["function"].as_str(), frame["package"].as_str()), (Some("Unsafe_PutLong"), Some("libjvm.so")));
    let hs_err = cwd.path().join(format!("hs_err_pid{pid}.log"));
    assert_eq!(story["report_file"], hs_err.to_str().unwrap());

    // The dump's stack goes through the JVM's handler into the code that
    // faulted.
    let dumped = crashing_functions(spool.path(), &report);
    let handler = dumped.iter().position(|f| f == "JVM_handle_linux_signal").unwrap_or_else(|| panic!("{dumped:#?}"));
    assert_eq!(dumped[handler + 1..].iter().find(|f| !f.is_empty()).map(String::as_str), Some("Unsafe_PutLong"));
    assert!(dumped.iter().any(|f| f.starts_with("JavaCalls::call_helper")), "{dumped:#?}");

    // Kept byte for byte with the report; sent scrubbed.
    let original = std::fs::read(&hs_err).unwrap();
    assert!(String::from_utf8_lossy(&original).contains("-Ddb.password=hunter2"));
    let name = format!("hs_err_pid{pid}.log");
    assert_eq!(report["attachments"][0]["name"], name.as_str());
    assert_eq!(report["attachments"][0]["size"], original.len());
    assert_eq!(report["attachments"][0]["truncated"], false);
    let kept =
        std::fs::read(report_dir(spool.path(), &report).join(report["attachments"][0]["file"].as_str().unwrap()))
            .unwrap();
    assert_eq!(kept, original);
    relay.with(|s| {
        let events = s.accepted_events();
        assert_eq!(events.len(), 1, "{:?}", s.invalid());
        let item = events[0]
            .items
            .iter()
            .find(|i| i.header.get("filename").and_then(Value::as_str) == Some(name.as_str()))
            .expect("hs_err attached");
        assert_eq!(item.header["content_type"], "text/plain");
        let sent = String::from_utf8(item.payload.clone()).unwrap();
        assert!(!sent.contains("hunter2"), "a secret left the host");
        assert!(sent.contains("-Ddb.password=[Filtered]"));
        assert_eq!(sent.lines().count(), String::from_utf8_lossy(&original).lines().count());
        let exception = &events[0].event().unwrap()["exception"]["values"][0];
        assert_eq!(exception["type"], "SIGSEGV");
    });
}

fn python_faulthandler(spool: &Path, dsn: Option<&str>, how: &str) -> Command {
    let mut cmd = crashwatch(spool);
    cmd.arg("run");
    if let Some(dsn) = dsn {
        cmd.args(["--dsn", dsn]);
    }
    cmd.args(["--", "python3"]);
    match how {
        "-X" => {
            cmd.args(["-X", "faulthandler"]);
        }
        _ => {
            cmd.env("PYTHONFAULTHANDLER", "1");
        }
    }
    cmd.arg(bin::testdata("programs/python/segfault.py"));
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_faulthandler_keeps_the_native_stack_and_gives_its_python_frames() {
    let relay = FakeRelay::start().await;
    for how in ["-X", "PYTHONFAULTHANDLER"] {
        let spool = tempfile::tempdir().unwrap();
        let out = blocking(python_faulthandler(spool.path(), Some(&relay.dsn()), how)).await;
        assert_eq!(out.status.code(), Some(128 + 11), "{how}: {}", String::from_utf8_lossy(&out.stderr));
        let report = only_report(spool.path());
        let crash = &report["crash"];
        // The fault faulthandler caught, not its re-raise.
        assert_eq!((crash["code_name"].as_str(), crash["fault_address"].as_str()), (Some("SEGV_MAPERR"), Some("0x0")));
        assert_eq!(crash["diagnosis"], "null pointer dereference");
        assert!(crash["sender"].is_null());
        assert_eq!(
            crash["notes"][0],
            "the program's signal handler caught this SIGSEGV on an alternate stack and raised it again; the \
             minidump shows the code that faulted, not the handler"
        );
        // The native stack: the C function that faulted, down to _start,
        // nothing of faulthandler's.
        let dumped = crashing_functions(spool.path(), &report);
        assert!(dumped.iter().position(|f| f == "string_at").is_some_and(|i| i <= 2), "{dumped:#?}");
        assert!(dumped.iter().any(|f| f == "_PyEval_EvalFrameDefault"), "{dumped:#?}");
        assert_eq!(dumped.last().map(String::as_str), Some("_start"));
        assert!(!dumped.iter().any(|f| f.contains("faulthandler")), "{dumped:#?}");

        // faulthandler's trace is the exception's frames.
        let story = &report["panic"];
        assert_eq!(
            (story["kind"].as_str(), story["value"].as_str()),
            (Some("Fatal Python error"), Some("Segmentation fault"))
        );
        let script = bin::testdata("programs/python/segfault.py");
        let frames = story["frames"].as_array().unwrap();
        let got: Vec<(&str, &str, Option<u64>)> = frames
            .iter()
            .map(|f| (f["function"].as_str().unwrap(), f["filename"].as_str().unwrap(), f["lineno"].as_u64()))
            .collect();
        assert_eq!(
            got[..2],
            [("<module>", script.to_str().unwrap(), Some(9)), ("poke", script.to_str().unwrap(), Some(6))]
        );
        assert_eq!(got[2].0, "string_at");
        assert!(got[2].1.ends_with("/ctypes/__init__.py"), "{got:?}");
        let id = report["id"].as_str().unwrap().to_owned();
        relay.with(|s| {
            let envelope = s.accepted_events().into_iter().find(|e| e.event_id() == Some(id.as_str())).expect("sent");
            let event = envelope.event().unwrap();
            let sent = &event["exception"]["values"][0]["stacktrace"]["frames"];
            assert_eq!(sent[0]["function"], "<module>");
            assert_eq!(sent[1]["function"], "poke");
            assert_eq!(sent[1]["lineno"], 6);
            // The native stack is the crashed thread's.
            let threads = event["threads"]["values"].as_array().unwrap();
            let crashed = threads.iter().find(|t| t["crashed"] == true).unwrap();
            let native = crashed["stacktrace"]["frames"].as_array().unwrap();
            assert_eq!(native[0]["function"], "_start");
        });
    }
}
