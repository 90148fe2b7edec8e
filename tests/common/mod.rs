//! Helpers shared by the integration tests: the built binary, fixtures
//! compiled from `testdata/`, and waiting on events with a timeout (never a
//! sleep).
#![allow(dead_code)] // Each test binary uses its own subset.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

/// The crashwatch binary under test, with a private spool.
pub fn crashwatch(spool: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crashwatch"));
    cmd.env("CRASHWATCH_SPOOL_DIR", spool).env_remove("CRASHWATCH_LOG").env_remove("SENTRY_DSN");
    cmd
}

pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(name)
}

/// Compiles `testdata/NAME.c` (once per test process) and returns the binary.
pub fn fixture(name: &str) -> PathBuf {
    fixture_with(name, &["-O0", "-g", "-Wall", "-Werror", "-pthread", "-fno-omit-frame-pointer"])
}

pub fn fixture_with(name: &str, flags: &[&str]) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let tag: String = flags.concat().chars().filter(char::is_ascii_alphanumeric).collect();
    let out = dir.join(format!("{name}-{tag}"));
    let src = testdata(&format!("{name}.c"));
    let fresh = |out: &Path| {
        let (Ok(o), Ok(s)) = (std::fs::metadata(out), std::fs::metadata(&src)) else { return false };
        o.modified().unwrap() >= s.modified().unwrap()
    };
    if !fresh(&out) {
        // Several test binaries may build the same fixture at once: build to
        // a private name, then rename into place.
        let tmp = dir.join(format!("{name}-{tag}.{}", std::process::id()));
        let status = Command::new("gcc")
            .args(flags)
            .arg("-o")
            .arg(&tmp)
            .arg(&src)
            .status()
            .expect("gcc is needed to build the test fixtures");
        assert!(status.success(), "gcc failed on {}", src.display());
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

/// Runs to completion, with a generous limit so a hang fails instead of
/// blocking the suite.
pub fn run_with_timeout(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_output(child, limit)
}

pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    // Read whichever pipes the caller has not taken, each on its own thread.
    fn collect(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut pipe) = pipe {
                pipe.read_to_end(&mut v).unwrap();
            }
            v
        })
    }
    let out = collect(child.stdout.take());
    let err = collect(child.stderr.take());
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(limit) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("crashwatch (pid {pid}) did not finish within {limit:?}");
        }
    };
    Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

/// Reads lines from `reader` on a thread; [`Lines::wait_for`] blocks until
/// a line satisfies a predicate or the timeout passes.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Lines {
    pub fn new(reader: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { rx, seen: Vec::new() }
    }

    pub fn wait_for(&mut self, what: &str, limit: Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(what) {
                        return line;
                    }
                }
                Err(_) => panic!("no line containing {what:?} within {limit:?}; saw {:?}", self.seen),
            }
        }
    }

    /// Everything until EOF.
    pub fn rest(mut self) -> Vec<String> {
        while let Ok(line) = self.rx.recv_timeout(Duration::from_secs(60)) {
            self.seen.push(line);
        }
        self.seen
    }
}

/// Starts `cmd` with stdout and stderr on pipes and waits until the child
/// prints a line containing `ready`; the caller sets stdin beforehand if the
/// child needs one. stderr is left to the caller (`wait_output` reads it).
pub fn start_ready(cmd: &mut Command) -> (Child, Lines) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = Lines::new(child.stdout.take().unwrap());
    lines.wait_for("ready", LIMIT);
    (child, lines)
}

/// Sends `signal` to a child the test started.
pub fn send_signal(child: &Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
}

/// The reports in a spool, as `crashwatch list --json` gives them.
pub fn reports(spool: &Path) -> Vec<serde_json::Value> {
    let out = crashwatch(spool).args(["list", "--json"]).output().unwrap();
    assert!(out.status.success(), "list failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The only report in a spool.
pub fn only_report(spool: &Path) -> serde_json::Value {
    let mut all = reports(spool);
    assert_eq!(all.len(), 1, "expected one report, found {all:#?}");
    all.remove(0)
}

/// The text lines of a report's log tail.
pub fn tail_texts(report: &serde_json::Value) -> Vec<String> {
    report["log_tail"].as_array().unwrap().iter().map(|l| l["text"].as_str().unwrap().to_string()).collect()
}

pub const LIMIT: Duration = Duration::from_secs(120);

/// Builds `testdata/NAME.rs` with rustc (panic=abort, debug info).
pub fn rust_fixture(name: &str) -> PathBuf {
    rust_fixture_with(name, "abort")
}

/// Builds `testdata/NAME.rs` with rustc, debug info and `-C panic=PANIC`.
pub fn rust_fixture_with(name: &str, panic: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{name}-{panic}-rs"));
    let tmp = dir.join(format!("{name}-{panic}-rs.{}", std::process::id()));
    let status = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .args(["-C", &format!("panic={panic}"), "-g", "--edition", "2021", "-o"])
        .arg(&tmp)
        .arg(testdata(&format!("{name}.rs")))
        .status()
        .expect("rustc is needed to build the Rust fixtures");
    assert!(status.success(), "rustc failed on {name}.rs");
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// What a minidump says about the crash, read back with the `minidump` crate.
#[derive(Debug)]
pub struct DumpFacts {
    pub exception_code: u32,
    pub exception_flags: u32,
    pub crashing_tid: u32,
    pub thread_ids: Vec<u32>,
    pub crashing_thread_name: Option<String>,
    /// Whether the crashing thread's instruction pointer lies in the main
    /// module: the crash context was recorded, not a signal frame.
    pub rip_in_main_module: bool,
}

pub fn read_dump(path: &Path) -> DumpFacts {
    use minidump::{Minidump, MinidumpException, MinidumpModuleList, MinidumpThreadList, MinidumpThreadNames, Module};
    let dump = Minidump::read_path(path).unwrap_or_else(|e| panic!("unreadable dump {}: {e}", path.display()));
    let exception: MinidumpException = dump.get_stream().expect("exception stream");
    let threads: MinidumpThreadList = dump.get_stream().expect("thread list");
    let names: Option<MinidumpThreadNames> = dump.get_stream().ok();
    let modules: Option<MinidumpModuleList> = dump.get_stream().ok();
    let system: minidump::MinidumpSystemInfo = dump.get_stream().expect("system info");
    let crashing_tid = exception.get_crashing_thread_id();
    let rip = exception.context(&system, None).map(|ctx| ctx.get_instruction_pointer());
    let main = modules.as_ref().and_then(|m| m.main_module().map(|m| (m.base_address(), m.size())));
    DumpFacts {
        exception_code: exception.raw.exception_record.exception_code,
        exception_flags: exception.raw.exception_record.exception_flags,
        crashing_tid,
        thread_ids: threads.threads.iter().map(|t| t.raw.thread_id).collect(),
        crashing_thread_name: names.and_then(|n| n.get_name(crashing_tid).map(|s| s.into_owned())),
        rip_in_main_module: matches!((rip, main), (Some(rip), Some((base, size))) if (base..base + size).contains(&rip)),
    }
}

/// The value of `key=N` printed by a fixture on stdout.
pub fn printed(stdout: &[u8], key: &str) -> i64 {
    let text = String::from_utf8_lossy(stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {text:?}"))
        .parse()
        .unwrap()
}
