//! The symbolication helper of `crashwatch run` is bounded: a helper that
//! hangs on a hostile file is killed at `--symbolicate-timeout`, one that
//! runs out of `--symbolicate-memory` is stopped, and either way the
//! report is filed and sent with its minidump and says why it has no
//! stacks. Paths reach the helper byte for byte.

mod common;
#[path = "sentry_common/mod.rs"]
mod sentry_common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use sentry_common::relay::FakeRelay;

/// A copy of a crasher whose debug information is in a separate file named
/// by `.gnu_debuglink`, next to it; that file is then replaced by a FIFO
/// nobody writes to, so opening it blocks forever.
fn crasher_with_a_fifo_for_its_debug_file(dir: &Path) -> PathBuf {
    let exe = dir.join("prog");
    std::fs::copy(fixture("segv_nested"), &exe).unwrap();
    let objcopy = |args: &[&str]| {
        let status = Command::new("objcopy").args(args).current_dir(dir).status().expect("objcopy (binutils)");
        assert!(status.success(), "objcopy {args:?}");
    };
    objcopy(&["--only-keep-debug", "prog", "prog.debug"]);
    objcopy(&["--strip-debug", "--add-gnu-debuglink=prog.debug", "prog"]);
    std::fs::remove_file(dir.join("prog.debug")).unwrap();
    nix::unistd::mkfifo(&dir.join("prog.debug"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    exe
}

/// Processes whose command line holds `needle`.
fn processes_with(needle: &[u8]) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if cmdline.windows(needle.len()).any(|w| w == needle) {
            found.push(pid);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_helper_is_killed_and_the_report_is_filed_and_sent_with_its_dump() {
    let relay = FakeRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let exe = crasher_with_a_fifo_for_its_debug_file(dir.path());
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--dsn", &relay.dsn(), "--symbolicate-timeout", "1s", "--"]).arg(&exe);
    let out = tokio::task::spawn_blocking(move || run_with_timeout(cmd, LIMIT)).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + 11), "{stderr}");

    let said = "symbolication timed out after 1s (--symbolicate-timeout); the helper was killed";
    let report = only_report(spool.path());
    let crash = &report["crash"];
    assert_eq!(crash["stacks_error"], said);
    assert_eq!(crash.get("stacks"), None);
    // The dump is kept, whole, for `crashwatch symbolicate` to read later.
    let dir_of_report = spool.path().join("reports").join(report["id"].as_str().unwrap());
    let dump = dir_of_report.join(crash["minidump"]["file"].as_str().unwrap());
    assert_eq!(std::fs::metadata(&dump).unwrap().len(), crash["minidump"]["size"].as_u64().unwrap());
    assert_eq!(read_dump(&dump).exception_code, 11);
    assert!(stderr.contains(&format!("crashwatch: stacks: none: {said}\n")), "{stderr}");
    // The helper is gone: nothing holds the dump's path on its command line.
    assert_eq!(processes_with(dump.as_os_str().as_bytes()), Vec::<i32>::new());
    // The report went out, with its minidump and the reason for no stacks.
    relay.with(|s| {
        assert!(s.invalid().is_empty(), "{:?}", s.invalid());
        let events = s.accepted_events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_id(), report["id"].as_str());
        let minidumps = events[0].items.iter().filter(|i| i.payload.starts_with(b"MDMP")).count();
        assert_eq!(minidumps, 1, "{:?}", events[0].item_types());
        let event = events[0].event().unwrap();
        assert_eq!(event["contexts"]["crashwatch"]["stacks_error"], said);
        assert_eq!(event["exception"]["values"][0]["mechanism"]["meta"]["signal"]["number"], 11);
    });
}

#[test]
fn a_helper_out_of_memory_is_stopped_and_the_report_says_so() {
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--symbolicate-memory", "1M", "--"]).arg(fixture("segv_nested"));
    let out = run_with_timeout(cmd, LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + 11), "{stderr}");
    let said = "symbolication ran out of memory (--symbolicate-memory 1.0 MiB)";
    let report = only_report(spool.path());
    assert_eq!(report["crash"]["stacks_error"], said);
    assert!(report["crash"]["minidump"]["size"].as_u64().unwrap() > 0);
    assert!(stderr.contains(&format!("crashwatch: stacks: none: {said}\n")), "{stderr}");

    // The same dump, symbolicated without the bound: it is a whole dump.
    let id = report["id"].as_str().unwrap();
    let out = crashwatch(spool.path()).args(["symbolicate", id]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("level3"), "{text}");
}

#[test]
fn paths_with_equals_signs_and_bytes_that_are_not_utf8_reach_the_helper_intact() {
    // A spool whose path is not UTF-8 and has `=` in it; a program with `=`
    // in its path that deletes itself before it crashes, so that its stacks
    // can come only from the copy preserved in that spool, which the helper
    // gets as `--replace RECORDED COPY`.
    let root = tempfile::tempdir().unwrap();
    let spool = root.path().join(OsStr::from_bytes(b"spool\xff=\xfe"));
    let bin = root.path().join("bin=x");
    std::fs::create_dir(&bin).unwrap();
    let exe = bin.join("vic=tim");
    std::fs::copy(fixture("self_delete"), &exe).unwrap();
    let mut cmd = crashwatch(&spool);
    cmd.args(["run", "--"]).arg(&exe);
    let out = run_with_timeout(cmd, LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + 11), "{stderr}");
    assert!(!exe.exists());
    assert!(stderr.contains("crashwatch:   #0 vic=tim!main (self_delete.c:13)\n"), "{stderr}");
    let report = only_report(&spool);
    assert_eq!(report["crash"]["preserved"][0]["original"], exe.to_str().unwrap());
    assert_eq!(report["crash"].get("stacks_error"), None);
}

#[test]
fn a_program_whose_path_is_not_utf8_is_reported_with_its_exact_path() {
    let root = tempfile::tempdir().unwrap();
    let exe = root.path().join(OsStr::from_bytes(b"vic\xfetim"));
    std::fs::copy(fixture("segv_nested"), &exe).unwrap();
    let spool = root.path().join("spool");
    let mut cmd = crashwatch(&spool);
    cmd.args(["run", "--"]).arg(&exe);
    let out = run_with_timeout(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(128 + 11), "{}", String::from_utf8_lossy(&out.stderr));
    let report = only_report(&spool);
    // The path's bytes, in hex, and a readable form.
    let hex: String = exe.as_os_str().as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(report["program"]["exe"]["hex"], hex);
    assert_eq!(report["program"]["exe"]["lossy"], exe.to_string_lossy().as_ref());
    assert_eq!(report["crash"]["signal"], 11);
}

#[test]
fn replace_takes_two_arguments_and_a_dump() {
    // The old one-argument form is a usage error, not a silent
    // symbolication of some other report.
    let spool = tempfile::tempdir().unwrap();
    let out = crashwatch(spool.path()).args(["symbolicate", "--replace", "/old=/new", "some.dmp"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("<DUMP|ID>"), "{stderr}");
}
