//! `crashwatch symbolicate DUMP|ID`: a minidump's stacks, readable, offline
//! (like minidump-stackwalk), from a file or a report in the spool.
//! `crashwatch run` also runs it as a short-lived helper process (`--json`),
//! so that the memory symbolication takes never stays in the supervisor.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cli::SymbolicateArgs;
use crate::commands::Failure;
use crate::commands::dump::kept_dump;
use crate::errors::Chain;
use crate::spool::Spool;
use crate::symbolicate::{SymbolOptions, Symbolicated, render_text, symbolicate};

/// `spool` is opened only when the argument names a report: the helper
/// process, given a file, must not create a default spool as a side effect.
pub fn run(spool: impl FnOnce() -> Result<Spool, Failure>, args: &SymbolicateArgs) -> Result<i32, Failure> {
    let mut opts = SymbolOptions::default();
    opts.symbol_dirs.extend(args.symbols.iter().cloned());
    opts.symbol_urls.extend(args.symbol_url.iter().cloned());
    opts.cache_dir = args.symbol_cache.clone();
    opts.debug_dirs.extend(args.debug_dir.iter().cloned());
    for replace in &args.replace {
        let (recorded, copy) = replace
            .split_once('=')
            .ok_or_else(|| Failure::new(2, anyhow::anyhow!("--replace takes RECORDED=COPY, got '{replace}'")))?;
        opts.replacements.push((PathBuf::from(recorded), PathBuf::from(copy)));
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
    let stacks = symbolicate(&dump, &opts).map_err(|e| Failure::new(1, anyhow::anyhow!("{}", Chain(&e))))?;
    let text = if args.json {
        serde_json::to_string(&stacks).expect("stacks always serialise") + "\n"
    } else {
        render_text(&stacks)
    };
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(0)
}

/// `arg` as a report id (hex digits, possibly the start of one).
fn report_id(arg: &OsStr) -> Option<&str> {
    arg.to_str().filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Symbolicates `dump` in a child process (this same binary, `symbolicate
/// --json`), with `replacements` (recorded path, preserved copy) for files
/// that were deleted on disk. Errors are the helper's own words.
pub fn in_helper(dump: &Path, replacements: &[(PathBuf, PathBuf)]) -> Result<Symbolicated, String> {
    // /proc/self/exe, not the path crashwatch was started from: a deploy may
    // have replaced or removed that file while crashwatch ran; this is
    // always the very binary that is running.
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(["symbolicate", "--json"]);
    for (recorded, copy) in replacements {
        cmd.arg("--replace").arg(format!("{}={}", recorded.display(), copy.display()));
    }
    let out = cmd
        .arg(dump)
        .env("CRASHWATCH_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start the symbolication helper: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let reason = stderr.trim().trim_start_matches("crashwatch: error: ");
        return Err(format!("symbolication failed ({}): {reason}", out.status));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("the symbolication helper's answer is unreadable: {e}"))
}
