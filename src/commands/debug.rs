//! `crashwatch debug [ID]`: a report's minidump opened in lldb, as
//! `coredumpctl debug` opens a core in gdb (gdb cannot read minidumps).
//! The debugger replaces crashwatch, so it owns the terminal and its exit
//! status is the command's.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::anyhow;

use crate::cli::DebugArgs;
use crate::commands::Failure;
use crate::commands::dump::{KeptDump, kept_dump};
use crate::spool::Spool;

/// Exit code when the debugger is not installed: the shell's "command not
/// found", as `crashwatch run` uses it for a missing PROGRAM.
pub const DEBUGGER_NOT_FOUND: i32 = 127;
/// Exit code when the debugger exists but could not be started.
pub const DEBUGGER_NOT_EXECUTABLE: i32 = 126;

pub fn debug(spool: &Spool, args: &DebugArgs) -> Result<i32, Failure> {
    let kept = kept_dump(spool, args.id.as_deref())?;
    let mut cmd = Command::new(&args.debugger);
    if let Some(exe) = executable(&kept) {
        cmd.arg(exe);
    }
    cmd.arg("--core").arg(&kept.path).args(&args.debugger_args);
    let error = cmd.exec();
    let debugger = args.debugger.to_string_lossy();
    Err(if error.kind() == std::io::ErrorKind::NotFound {
        Failure::new(
            DEBUGGER_NOT_FOUND,
            anyhow!(
                "{debugger} was not found: install lldb (Debian and Ubuntu: apt-get install lldb) or name a debugger \
                 with --debugger; the minidump is {}",
                kept.path.display()
            ),
        )
    } else {
        Failure::new(DEBUGGER_NOT_EXECUTABLE, anyhow!("failed to start {debugger}: {error}"))
    })
}

/// The program that crashed, for the debugger's target: the copy preserved
/// at crash time if it had been deleted on disk, else the recorded path if
/// it is still there (lldb otherwise finds the modules from the dump alone).
fn executable(kept: &KeptDump) -> Option<PathBuf> {
    let exe = kept.report.crash.as_ref().map_or(&kept.report.program.exe, |c| &c.exe);
    // /proc/PID/exe of a deleted file reads `PATH (deleted)`.
    let exe = exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")).map_or_else(|| exe.clone(), PathBuf::from);
    let preserved = kept.preserved.iter().find(|(original, _)| *original == exe).map(|(_, copy)| copy.clone());
    preserved.or_else(|| exe.is_file().then_some(exe))
}
