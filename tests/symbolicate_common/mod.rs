//! Test harness: builds crashers and gets real minidumps of them from
//! proto-capture's tracer, the way the product will.
//!
//! The child is started as `sh -c 'read -r _ && exec PROGRAM ARGS'`: the
//! shell blocks on its stdin pipe while the test seizes it with ptrace, then
//! execs the crasher under trace. This gives proto-capture the same "traced
//! from the first instruction" child as its own fork-based harness without
//! any `unsafe` here.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crashwatch::symbolicate::{Frame, Symbolicated};

pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/symbolicate").join(name)
}

pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("crashwatch-symbolicate-").tempdir().unwrap()
}

fn run_checked(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Compiles `testdata/SOURCE` with gcc into `out`. The compiler runs in
/// testdata/ with a relative source name, so DWARF records
/// `testdata/SOURCE` as comp_dir + name, as a normal build would.
pub fn gcc(source: &str, out: &Path, flags: &[&str]) {
    run_checked(
        Command::new("gcc")
            .current_dir(testdata(""))
            .args(["-g", "-Wall", "-Werror", "-Wl,--build-id"])
            .args(flags)
            .arg("-o")
            .arg(out)
            .arg(source),
    );
}

/// Compiles `testdata/SOURCE` (a single-file Rust program) with rustc.
pub fn rustc(source: &str, out: &Path, flags: &[&str]) {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    run_checked(
        Command::new(rustc)
            .current_dir(testdata(""))
            .args(["--edition", "2021", "-g", "-C", "panic=abort"])
            .args(flags)
            .arg("-o")
            .arg(out)
            .arg(source),
    );
}

pub fn run_tool(program: &str, args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// A crash captured by `crashwatch run`: the dump is in the report.
pub struct Crash {
    pub dir: tempfile::TempDir,
    dump: PathBuf,
}

impl Crash {
    pub fn dump(&self) -> &Path {
        &self.dump
    }
}

/// Runs `program args` under the real `crashwatch run` until it crashes;
/// returns the minidump of its report.
pub fn crash(program: &Path, args: &[&str]) -> Crash {
    let dir = scratch();
    let out = Command::new(env!("CARGO_BIN_EXE_crashwatch"))
        .arg("--spool-dir")
        .arg(dir.path())
        .args(["run", "--"])
        .arg(program)
        .args(args)
        .env_remove("SENTRY_DSN")
        .stdin(Stdio::null())
        .output()
        .expect("run crashwatch");
    assert!(!out.status.success(), "{program:?} did not crash: {}", String::from_utf8_lossy(&out.stderr));
    let reports: Vec<PathBuf> = std::fs::read_dir(dir.path().join("reports"))
        .expect("a report")
        .map(|e| e.unwrap().path().join("minidump.dmp"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(reports.len(), 1, "one minidump expected: {}", String::from_utf8_lossy(&out.stderr));
    let dump = reports.into_iter().next().unwrap();
    Crash { dir, dump }
}

/// `(function, line)` of the crashing thread's frames, innermost first.
pub fn crashing_frames(s: &Symbolicated) -> Vec<&Frame> {
    let thread = &s.threads[s.crashing_thread.expect("crashing thread")];
    thread.frames.iter().collect()
}

/// The crashing thread's frames as `(function, line, inlined)`.
pub fn names_lines(s: &Symbolicated) -> Vec<(Option<String>, Option<u32>, bool)> {
    crashing_frames(s).into_iter().map(|f| (f.function.clone(), f.line, f.inlined)).collect()
}

/// Redacts what changes from run to run (addresses, ids, tids, temporary
/// paths) so that a rendered report can be compared with a snapshot.
pub fn redact(text: &str, tmp: &Path) -> String {
    let text = text.replace(tmp.to_str().unwrap(), "<tmp>").replace(env!("CARGO_MANIFEST_DIR"), "<src>");
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut words = Vec::new();
        let mut previous = "";
        for word in line.split(' ') {
            let redacted = if word.starts_with("0x") {
                "0x…".to_owned()
            } else if previous == "tid" {
                "…".to_owned()
            } else {
                word.to_owned()
            };
            previous = word;
            words.push(redacted);
        }
        let line = words.join(" ");
        out.push_str(&redact_hex_runs(&line));
        out.push('\n');
    }
    out
}

/// Long hex strings (build-ids inside `problem` texts).
fn redact_hex_runs(line: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for c in line.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        if run.len() >= 16 {
            out.push('…');
        } else {
            out.push_str(&run);
        }
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}

/// Compares `actual` with `tests/snapshots/NAME.txt`; rewrites the file
/// instead when `UPDATE_SNAPSHOTS=1`.
pub fn assert_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e} (run with UPDATE_SNAPSHOTS=1 to create it)\n--- actual ---\n{actual}", path.display())
    });
    assert_eq!(actual, expected, "snapshot {} differs (UPDATE_SNAPSHOTS=1 to accept)", path.display());
}
