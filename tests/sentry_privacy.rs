//! What leaves the host carries no secret of the child's environment or
//! command line: a crasher started with `DB_PASSWORD=…` in its environment
//! and `--password=…` among its arguments crashes under `crashwatch run`,
//! and not one byte Relay receives holds either secret, while the minidump
//! it receives is still a minidump whose threads, modules, exception and
//! stacks are those of the crash. The dump kept in the spool is untouched.

mod common;
#[path = "sentry_common/mod.rs"]
mod sentry_common;

use std::path::Path;

use common::{LIMIT, crashwatch, fixture, only_report, run_with_timeout};
use minidump::format::MINIDUMP_STREAM_TYPE;
use minidump::{Minidump, MinidumpLinuxEnviron, MinidumpMemoryList};
use sentry_common::relay::FakeRelay;
use serde_json::Value;

const ENV_SECRET: &str = "hunter2-env-4f9c1d";
const ARG_SECRET: &str = "s3cr3t-arg-8e2b7a";

fn contains(haystack: &[u8], needle: &str) -> bool {
    memchr::memmem::find(haystack, needle.as_bytes()).is_some()
}

fn cmdline(dump: &Minidump<'_, &[u8]>) -> Vec<String> {
    let raw = dump.get_raw_stream(MINIDUMP_STREAM_TYPE::LinuxCmdLine as u32).unwrap();
    raw.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

/// The crashing thread's function names, innermost first, from
/// `crashwatch symbolicate --json`.
fn crashing_functions(dump: &Path) -> Vec<String> {
    let mut cmd = crashwatch(dump.parent().unwrap());
    cmd.args(["symbolicate", "--json"]).arg(dump);
    let out = run_with_timeout(cmd, LIMIT);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stacks: Value = serde_json::from_slice(&out.stdout).unwrap();
    let thread = &stacks["threads"][stacks["crashing_thread"].as_u64().unwrap() as usize];
    thread["frames"].as_array().unwrap().iter().filter_map(|f| f["function"].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_of_the_environment_and_argv_never_reach_relay() {
    let relay = FakeRelay::start().await;
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = crashwatch(spool.path());
    cmd.env("DB_PASSWORD", ENV_SECRET).args(["run", "--dsn", &relay.dsn(), "--"]);
    cmd.arg(fixture("thread5_of_6")).arg(format!("--password={ARG_SECRET}")).args(["--port", "8080"]);
    let out = tokio::task::spawn_blocking(move || run_with_timeout(cmd, LIMIT)).await.unwrap();
    assert_eq!(out.status.code(), Some(128 + 11), "{}", String::from_utf8_lossy(&out.stderr));

    // The dump kept on the host is as it was written: both secrets in it,
    // in its streams and in the main thread's stack.
    let report = only_report(spool.path());
    let dir = spool.path().join("reports").join(report["id"].as_str().unwrap());
    let kept_path = dir.join(report["crash"]["minidump"]["file"].as_str().unwrap());
    let kept_bytes = std::fs::read(&kept_path).unwrap();
    assert!(contains(&kept_bytes, ENV_SECRET) && contains(&kept_bytes, ARG_SECRET));
    let kept = Minidump::read(&kept_bytes[..]).unwrap();
    assert!(cmdline(&kept).contains(&format!("--password={ARG_SECRET}")));

    let received = relay.with(|s| {
        assert_eq!(s.requests.len(), s.accepted.len(), "every request accepted: {:?}", s.requests);
        // Every byte of every envelope received, decompressed.
        for envelope in &s.accepted {
            assert!(!contains(&envelope.body, ENV_SECRET), "the environment's secret reached relay");
            assert!(!contains(&envelope.body, ARG_SECRET), "the command line's secret reached relay");
        }
        let events = s.accepted_events();
        assert_eq!(events.len(), 1);
        let event = events[0].event().unwrap();
        assert_eq!(event["extra"]["argv"][1], "--password=[Filtered]");
        let dump = events[0]
            .items
            .iter()
            .find(|i| i.header.get("filename").is_some_and(|f| f == "minidump.dmp"))
            .expect("the minidump");
        assert_eq!(dump.header["attachment_type"], "event.attachment");
        assert_eq!(dump.header["content_type"], "application/x-dmp");
        dump.payload.clone()
    });

    // A minidump still: the environment's names without values, the command
    // line as the event has it, every other stream as it was.
    let sent = Minidump::read(&received[..]).unwrap();
    // (The stream is NUL-separated, which `MinidumpLinuxEnviron::iter` does
    // not split on.)
    let environ: MinidumpLinuxEnviron = sent.get_stream().unwrap();
    let pairs: Vec<(String, String)> = environ
        .raw_bytes()
        .split(|&b| b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (k, v) = String::from_utf8_lossy(e).split_once('=').map(|(k, v)| (k.into(), v.into())).unwrap();
            (k, v)
        })
        .collect();
    assert!(pairs.iter().any(|(k, v)| k == "DB_PASSWORD" && v == "[Filtered]"), "{pairs:?}");
    assert!(pairs.iter().all(|(_, v)| v == "[Filtered]"), "{pairs:?}");
    assert_eq!(cmdline(&sent)[1..], ["--password=[Filtered]", "--port", "8080"]);
    let scrubbed = [MINIDUMP_STREAM_TYPE::LinuxEnviron as u32, MINIDUMP_STREAM_TYPE::LinuxCmdLine as u32];
    let mut compared = 0;
    for stream in kept.all_streams().filter(|s| !scrubbed.contains(&s.stream_type)) {
        let ty = stream.stream_type;
        assert_eq!(sent.get_raw_stream(ty).ok(), kept.get_raw_stream(ty).ok(), "stream {ty:#x}");
        compared += 1;
    }
    assert!(compared >= 10, "{compared} streams compared");

    // Memory: the same regions, differing only where a secret was masked.
    let (kept_memory, sent_memory): (MinidumpMemoryList, MinidumpMemoryList) =
        (kept.get_stream().unwrap(), sent.get_stream().unwrap());
    let regions = |list: &MinidumpMemoryList<'_>| {
        list.iter().map(|m| (m.base_address, m.bytes.to_vec())).collect::<Vec<(u64, Vec<u8>)>>()
    };
    let (kept_regions, sent_regions) = (regions(&kept_memory), regions(&sent_memory));
    assert_eq!(kept_regions.len(), sent_regions.len());
    let mut masked = 0;
    for ((base, before), (sent_base, after)) in kept_regions.iter().zip(&sent_regions) {
        assert_eq!((base, before.len()), (sent_base, after.len()));
        for (a, b) in before.iter().zip(after) {
            if a != b {
                assert_eq!(*b, b'*', "region {base:#x}: only masked bytes differ");
                masked += 1;
            }
        }
    }
    assert!(masked >= ENV_SECRET.len() + ARG_SECRET.len(), "{masked} bytes masked");

    // And its stacks still walk to the faulting function.
    let sent_path = spool.path().join("received.dmp");
    std::fs::write(&sent_path, &received).unwrap();
    assert_eq!(crashing_functions(&sent_path)[0], "crash_here");
    assert_eq!(crashing_functions(&sent_path), crashing_functions(&kept_path));
}
