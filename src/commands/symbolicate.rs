//! `crashwatch symbolicate DUMP|ID`: a minidump's stacks, readable, offline
//! (like minidump-stackwalk), from a file or a report in the spool.
//! `crashwatch run` also runs it as a short-lived helper process (`--json`),
//! so that the memory symbolication takes never stays in the supervisor.
//!
//! The helper reads files a crashed program named (its binary, libraries,
//! debug links), any of which may be hostile: a FIFO where a debug file is
//! expected blocks an `open` forever, a crafted ELF can cost gigabytes. So
//! it is bounded: it limits its own private memory (`RLIMIT_DATA`, set
//! before it reads anything) and the supervisor kills it at a deadline.
//! Paths travel as separate arguments, byte for byte.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::cli::SymbolicateArgs;
use crate::commands::Failure;
use crate::commands::dump::kept_dump;
use crate::config::HelperLimits;
use crate::errors::Chain;
use crate::exit;
use crate::report::human_bytes;
use crate::spool::Spool;
use crate::symbolicate::{SymbolOptions, Symbolicated, render_text, symbolicate};

/// How much of the helper's stderr is kept for the error message.
const STDERR_KEPT: usize = 16 << 10;

/// `spool` is opened only when the argument names a report: the helper
/// process, given a file, must not create a default spool as a side effect.
pub fn run(spool: impl FnOnce() -> Result<Spool, Failure>, args: &SymbolicateArgs) -> Result<i32, Failure> {
    if let Some(bytes) = args.max_memory.filter(|b| *b > 0) {
        limit_own_memory(bytes).map_err(|e| Failure::new(exit::FAILURE, e))?;
    }
    let mut opts = SymbolOptions::default();
    opts.symbol_dirs.extend(args.symbols.iter().cloned());
    opts.symbol_urls.extend(args.symbol_url.iter().cloned());
    opts.cache_dir = args.symbol_cache.clone();
    opts.debug_dirs.extend(args.debug_dir.iter().cloned());
    // clap gives the values of every `--replace RECORDED COPY` in order.
    for pair in args.replace.chunks_exact(2) {
        opts.replacements.push((pair[0].clone(), pair[1].clone()));
    }
    let dump = match args.dump.as_deref() {
        Some(arg) if Path::new(arg).exists() || report_id(arg).is_none() => PathBuf::from(arg),
        arg => {
            let kept = kept_dump(&spool()?, arg.and_then(report_id)).map_err(|failure| match arg {
                Some(arg) => Failure {
                    error: failure.error.context(format!("'{}' is neither a file nor a report", arg.display())),
                    ..failure
                },
                None => failure,
            })?;
            // The report's own preserved copies of files deleted at crash
            // time, after any the user gave.
            opts.replacements.extend(kept.preserved);
            kept.path
        }
    };
    let stacks =
        symbolicate(&dump, &opts).map_err(|e| Failure::new(exit::FAILURE, anyhow::anyhow!("{}", Chain(&e))))?;
    let text = if args.json {
        serde_json::to_string(&stacks).expect("stacks always serialise") + "\n"
    } else {
        render_text(&stacks)
    };
    super::write_stdout(text.as_bytes())
}

/// Sets RLIMIT_DATA (private writable memory: the heap, thread stacks; not
/// the read-only mappings of the files it reads) to `bytes`.
fn limit_own_memory(bytes: u64) -> anyhow::Result<()> {
    use nix::sys::resource::{Resource, setrlimit};
    setrlimit(Resource::RLIMIT_DATA, bytes, bytes)
        .map_err(|e| anyhow::anyhow!("failed to limit the memory of symbolication to {bytes} bytes: {e}"))
}

/// Why the helper gave no stacks.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("failed to start the symbolication helper")]
    Start(#[source] io::Error),
    #[error("symbolication timed out after {} (--symbolicate-timeout); the helper was killed",
            humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error("symbolication ran out of memory (--symbolicate-memory {})", human_bytes(*.0))]
    OutOfMemory(u64),
    #[error("symbolication failed ({status}): {reason}")]
    Failed { status: ExitStatus, reason: String },
    #[error("the symbolication helper's answer is unreadable")]
    Unreadable(#[source] serde_json::Error),
}

/// `arg` as a report id (hex digits, possibly the start of one).
fn report_id(arg: &OsStr) -> Option<&str> {
    arg.to_str().filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Symbolicates `dump` in a child process (this same binary, `symbolicate
/// --json`), with `replacements` (recorded path, preserved copy) for files
/// that were deleted on disk, within `limits`.
pub fn in_helper(
    dump: &Path,
    replacements: &[(PathBuf, PathBuf)],
    limits: HelperLimits,
) -> Result<Symbolicated, HelperError> {
    // /proc/self/exe, not the path crashwatch was started from: a deploy may
    // have replaced or removed that file while crashwatch ran; this is
    // always the very binary that is running.
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(helper_args(dump, replacements, limits.memory));
    let mut child = cmd
        .env("CRASHWATCH_LOG", "error")
        // A panic's backtrace allocates, which under the memory limit can
        // deadlock the panicking helper; its message is all that is used.
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(HelperError::Start)?;
    // Both pipes are read to their end (the helper's exit) on threads of
    // their own, so that neither can fill and block it; the stdout reader
    // says when it is done, which is what the deadline is measured against.
    let (done, finished) = mpsc::channel();
    let stdout = child.stdout.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let read = pipe.read_to_end(&mut bytes);
            let _ = done.send(());
            read.map(|_| bytes)
        })
    });
    let stderr = child.stderr.take().map(|pipe| std::thread::spawn(move || tail_of(pipe, STDERR_KEPT)));
    let in_time = match limits.timeout {
        Some(timeout) => !matches!(finished.recv_timeout(timeout), Err(mpsc::RecvTimeoutError::Timeout)),
        None => {
            let _ = finished.recv();
            true
        }
    };
    if !in_time {
        // SIGKILL: it may be blocked in an open() that nothing else ends.
        let _ = child.kill();
    }
    let status = child.wait().map_err(HelperError::Start)?;
    let stdout = stdout.and_then(|t| t.join().ok()).and_then(Result::ok).unwrap_or_default();
    let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr);
    // Running out of memory can end in a hang (an allocation failing while
    // a lock is held): its words on stderr say which it was.
    if let Some(bytes) = limits.memory.filter(|_| !status.success() && ran_out_of_memory(&stderr)) {
        return Err(HelperError::OutOfMemory(bytes));
    }
    if !in_time {
        return Err(HelperError::TimedOut(limits.timeout.unwrap_or_default()));
    }
    if !status.success() {
        let reason = stderr.trim().trim_start_matches("crashwatch: error: ").to_string();
        return Err(HelperError::Failed { status, reason });
    }
    serde_json::from_slice(&stdout).map_err(HelperError::Unreadable)
}

/// The helper's command line: every path its own argument, as bytes.
fn helper_args(dump: &Path, replacements: &[(PathBuf, PathBuf)], memory: Option<u64>) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["symbolicate".into(), "--json".into()];
    if let Some(bytes) = memory {
        args.extend(["--max-memory".into(), bytes.to_string().into()]);
    }
    for (recorded, copy) in replacements {
        args.extend(["--replace".into(), recorded.into(), copy.into()]);
    }
    // `--`: a dump path that starts with `-` is still a path.
    args.extend(["--".into(), dump.into()]);
    args
}

/// What a Rust program says when an allocation fails (it then aborts), or
/// a thread's stack cannot be mapped, under its memory limit.
fn ran_out_of_memory(stderr: &str) -> bool {
    ["memory allocation of ", "Cannot allocate memory", "failed to spawn thread"].iter().any(|m| stderr.contains(m))
}

/// The last `keep` bytes of what `pipe` carries, read to its end.
fn tail_of(mut pipe: impl Read, keep: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * keep {
                    kept.drain(..kept.len() - keep);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if kept.len() > keep {
        kept.drain(..kept.len() - keep);
    }
    kept
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    #[test]
    fn paths_are_separate_arguments_byte_for_byte() {
        let odd = Path::new(std::ffi::OsStr::from_bytes(b"/srv/app=1/\xff\xfe=bin"));
        let copy = Path::new(std::ffi::OsStr::from_bytes(b"/spool/r/preserved/\xff.7"));
        let args = helper_args(Path::new("-dump.dmp"), &[(odd.into(), copy.into())], Some(1 << 30));
        let expected: Vec<&[u8]> = vec![
            b"symbolicate",
            b"--json",
            b"--max-memory",
            b"1073741824",
            b"--replace",
            b"/srv/app=1/\xff\xfe=bin",
            b"/spool/r/preserved/\xff.7",
            b"--",
            b"-dump.dmp",
        ];
        assert_eq!(args.iter().map(|a| a.as_bytes()).collect::<Vec<_>>(), expected);
    }

    #[test]
    fn the_helpers_command_line_parses_back_to_the_same_paths() {
        use clap::Parser;
        let odd = Path::new(std::ffi::OsStr::from_bytes(b"/srv/a=b/\xff"));
        let mut argv: Vec<OsString> = vec!["crashwatch".into()];
        argv.extend(helper_args(Path::new("/d.dmp"), &[(odd.into(), "/c=d".into()), ("/x".into(), "/y".into())], None));
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        let crate::cli::Command::Symbolicate(args) = cli.command else { panic!("not symbolicate") };
        assert_eq!(args.replace, [odd.to_path_buf(), "/c=d".into(), "/x".into(), "/y".into()]);
        assert_eq!(args.dump.as_deref(), Some(OsStr::new("/d.dmp")));
    }

    #[test]
    fn only_the_tail_of_a_long_stderr_is_kept() {
        let text: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        assert_eq!(tail_of(&text[..], 1000), &text[text.len() - 1000..]);
        assert_eq!(tail_of(&b"short"[..], 1000), b"short");
    }
}
