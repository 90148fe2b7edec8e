//! coredumpctl's verbs for crashwatch's reports: `debug` opens a report's
//! minidump in lldb, `dump` copies it out, `symbolicate` takes a report id
//! as well as a file. Each runs the real binary on a real crash.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::*;

/// A crash of `program` kept in a private spool.
struct Crashed {
    spool: tempfile::TempDir,
    report: serde_json::Value,
}

impl Crashed {
    fn new(program: &Path) -> Crashed {
        let spool = tempfile::tempdir().unwrap();
        let mut cmd = crashwatch(spool.path());
        cmd.arg("run").arg("--").arg(program).stdout(Stdio::null()).stderr(Stdio::piped());
        let out = run_with_timeout(cmd, LIMIT);
        assert_eq!(out.status.code(), Some(139), "{}", String::from_utf8_lossy(&out.stderr));
        let report = only_report(spool.path());
        Crashed { spool, report }
    }

    fn id(&self) -> &str {
        self.report["id"].as_str().unwrap()
    }

    fn dump_path(&self) -> PathBuf {
        let file = self.report["crash"]["minidump"]["file"].as_str().unwrap();
        self.spool.path().join("reports").join(self.id()).join(file)
    }

    fn crashwatch(&self, args: &[&str]) -> Output {
        let mut cmd = crashwatch(self.spool.path());
        cmd.args(args).stdin(Stdio::null());
        run_with_timeout(cmd, LIMIT)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The functions of the crashing thread's frames, as `symbolicate --json` gives them.
fn crashed_functions(json: &[u8]) -> Vec<String> {
    let stacks: serde_json::Value = serde_json::from_slice(json).unwrap();
    let crashed = stacks["crashing_thread"].as_u64().unwrap() as usize;
    let frames = stacks["threads"][crashed]["frames"].as_array().unwrap();
    frames.iter().map(|f| f["function"].as_str().unwrap_or("?").to_string()).collect()
}

#[test]
fn debug_opens_the_dump_in_lldb_with_the_crashed_program() {
    let crash = Crashed::new(&fixture("segv_nested"));
    let short = &crash.id()[..12];
    let out = crash.crashwatch(&["debug", short, "--", "--batch", "-o", "bt"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", text(&out.stderr));
    // lldb loaded the program beside the dump: the fault's frames have
    // their names, arguments and lines.
    let bt = stdout.split("(lldb) bt").nth(1).unwrap_or_else(|| panic!("no backtrace: {stdout}"));
    let frames: Vec<&str> = bt.lines().filter(|l| l.trim_start().starts_with(['*', 'f'])).collect();
    assert!(frames[0].contains("* thread #1, stop reason = signal SIGSEGV"), "{bt}");
    assert!(frames[1].contains("`level3(p=0x0000000000000000) at segv_nested.c:4"), "{bt}");
    assert!(frames[2].contains("`level2(p=0x0000000000000000) at segv_nested.c:5"), "{bt}");
    assert!(frames[3].contains("`level1(p=0x0000000000000000) at segv_nested.c:6"), "{bt}");
    assert!(frames[4].contains("`main at segv_nested.c:9"), "{bt}");
}

#[test]
fn debug_opens_the_preserved_copy_of_a_deleted_program() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim-bin");
    std::fs::copy(fixture("self_delete"), &victim).unwrap();
    let crash = Crashed::new(&victim);
    assert!(!victim.exists());
    let out = crash.crashwatch(&["debug", "--", "--batch", "-o", "bt"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", text(&out.stderr));
    let preserved = crash.report["crash"]["preserved"][0]["file"].as_str().unwrap();
    let module = Path::new(preserved).file_name().unwrap().to_str().unwrap();
    let bt = stdout.split("(lldb) bt").nth(1).unwrap_or_else(|| panic!("no backtrace: {stdout}"));
    let frame0 = bt.lines().find(|l| l.contains("frame #0")).unwrap_or_else(|| panic!("{bt}"));
    assert!(frame0.contains(&format!("{module}`main at self_delete.c:13")), "{bt}");
}

#[test]
fn debug_starts_the_debugger_on_the_program_and_the_dump() {
    let crash = Crashed::new(&fixture("segv_nested"));
    let dir = tempfile::tempdir().unwrap();
    let debugger = dir.path().join("debugger");
    std::fs::write(&debugger, "#!/bin/sh\nprintf '%s\\n' \"$@\"\nexit 7\n").unwrap();
    std::fs::set_permissions(&debugger, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The newest report without an id; the debugger's status is crashwatch's.
    let out = crash.crashwatch(&["debug", "--debugger", debugger.to_str().unwrap(), "--", "-o", "bt all"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    let exe = fixture("segv_nested");
    let dump = crash.dump_path();
    assert_eq!(text(&out.stdout), format!("{}\n--core\n{}\n-o\nbt all\n", exe.display(), dump.display()));
}

#[test]
fn debug_without_lldb_says_why_and_exits_127() {
    let crash = Crashed::new(&fixture("segv_nested"));
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = crashwatch(crash.spool.path());
    cmd.arg("debug").env("PATH", empty.path()).stdin(Stdio::null());
    let out = run_with_timeout(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(
        text(&out.stderr),
        format!(
            "crashwatch: error: lldb was not found: install lldb (Debian and Ubuntu: apt-get install lldb) or name a \
             debugger with --debugger; the minidump is {}\n",
            crash.dump_path().display()
        )
    );
    // A debugger that is not executable: 126.
    let not_executable = empty.path().join("lldb");
    std::fs::write(&not_executable, "not a program").unwrap();
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = crash.crashwatch(&["debug", "--debugger", not_executable.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!("crashwatch: error: failed to start {}: Permission denied (os error 13)\n", not_executable.display())
    );
}

#[test]
fn dump_copies_the_minidump_to_a_private_file_or_stdout() {
    let crash = Crashed::new(&fixture("segv_nested"));
    let kept = std::fs::read(crash.dump_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.dmp");
    let out = crash.crashwatch(&["dump", &crash.id()[..8], "-o", copy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&copy).unwrap(), kept);
    assert_eq!(std::fs::metadata(&copy).unwrap().mode() & 0o777, 0o600);
    assert_eq!(
        text(&out.stderr),
        format!(
            "crashwatch: minidump of report {} ({} bytes) written to {}\n",
            &crash.id()[..12],
            kept.len(),
            copy.display()
        )
    );
    // To stdout when it is not a terminal.
    let out = crash.crashwatch(&["dump"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout, kept);
    // The copy is a minidump the rest of the tools read.
    let out = crash.crashwatch(&["symbolicate", copy.to_str().unwrap(), "--json"]);
    assert_eq!(crashed_functions(&out.stdout)[..4], ["level3", "level2", "level1", "main"]);
}

#[test]
fn dump_refuses_to_write_a_minidump_to_a_terminal() {
    let crash = Crashed::new(&fixture("segv_nested"));
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut cmd = crashwatch(crash.spool.path());
    cmd.arg("dump").stdin(Stdio::null()).stdout(std::fs::File::from(pty.slave)).stderr(Stdio::piped());
    let out = wait_output(cmd.spawn().unwrap(), LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "crashwatch: error: refusing to write a binary minidump to a terminal: give -o FILE or redirect stdout\n"
    );
}

#[test]
fn verbs_explain_a_report_without_a_minidump() {
    let spool = tempfile::tempdir().unwrap();
    let mut cmd = crashwatch(spool.path());
    cmd.args(["run", "--", "sh", "-c", "exit 3"]).stderr(Stdio::null());
    assert_eq!(run_with_timeout(cmd, LIMIT).status.code(), Some(3));
    let id = only_report(spool.path())["id"].as_str().unwrap().to_string();
    for verb in ["debug", "dump", "symbolicate"] {
        let mut cmd = crashwatch(spool.path());
        cmd.arg(verb).stdout(Stdio::null());
        let out = run_with_timeout(cmd, LIMIT);
        assert_eq!(out.status.code(), Some(1), "{verb}");
        assert_eq!(
            text(&out.stderr),
            format!(
                "crashwatch: error: report {} has no minidump: it ended with exit 3; minidumps are taken of crash \
                 signals, and of OOM kills with --oom-snapshot\n",
                &id[..12]
            ),
            "{verb}"
        );
    }
    // An empty spool.
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = crashwatch(empty.path());
    cmd.arg("dump").stdout(Stdio::null());
    let out = run_with_timeout(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), format!("crashwatch: error: no reports in {}\n", empty.path().display()));
}

#[test]
fn symbolicate_takes_a_report_id_as_well_as_a_file() {
    let crash = Crashed::new(&fixture("segv_nested"));
    let by_path = crash.crashwatch(&["symbolicate", crash.dump_path().to_str().unwrap(), "--json"]);
    assert_eq!(by_path.status.code(), Some(0), "{}", text(&by_path.stderr));
    assert_eq!(crashed_functions(&by_path.stdout)[..4], ["level3", "level2", "level1", "main"]);
    for id in [&crash.id()[..6], &crash.id()[..12], crash.id()] {
        let by_id = crash.crashwatch(&["symbolicate", id, "--json"]);
        assert_eq!(by_id.status.code(), Some(0), "{}", text(&by_id.stderr));
        assert_eq!(by_id.stdout, by_path.stdout, "{id}");
    }
    // Without an argument: the newest report's dump.
    let newest = crash.crashwatch(&["symbolicate", "--json"]);
    assert_eq!(newest.stdout, by_path.stdout);
    // Hex digits that are neither a file nor a report.
    let out = crash.crashwatch(&["symbolicate", "abc"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "crashwatch: error: 'abc' is neither a file nor a report: no report matches 'abc' in {}; `crashwatch \
             list` shows the reports there\n",
            crash.spool.path().display()
        )
    );
}

#[test]
fn symbolicate_by_id_uses_the_preserved_copy_of_a_deleted_program() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim-bin");
    std::fs::copy(fixture("self_delete"), &victim).unwrap();
    let crash = Crashed::new(&victim);
    assert!(!victim.exists());
    // Given the file alone, the deleted program cannot be read...
    let by_path = crash.crashwatch(&["symbolicate", crash.dump_path().to_str().unwrap(), "--json"]);
    assert_eq!(crashed_functions(&by_path.stdout)[0], "?");
    // ...given the report, its preserved copy is used.
    let by_id = crash.crashwatch(&["symbolicate", crash.id(), "--json"]);
    assert_eq!(by_id.status.code(), Some(0), "{}", text(&by_id.stderr));
    assert_eq!(crashed_functions(&by_id.stdout)[0], "main");
}
