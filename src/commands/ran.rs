//! Which program a script ends up running, for `crashwatch doctor PROGRAM`.
//!
//! A shim such as pyenv's `python3` is a bash script that execs
//! `pyenv exec`, another script, which execs the interpreter it picks: the
//! symbols that matter are those of that last program, and only running
//! the chain tells which it is. So the script is started traced (stdin,
//! stdout and stderr on `/dev/null`), each exec is read from
//! `/proc/PID/exe`, and it is killed at the exec of the first program that
//! is not a shell or `env` — before that program's first instruction. A
//! script that execs nothing is the shell's: the last program seen is the
//! answer when it exits, or after [`LIMIT`].

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use crate::errors::Chain;
use crate::process::procfs;
use crate::process::wait_status::WaitStatus;
use crate::supervise::spawn::{self, Prepared};
use crate::sys::ptrace as sys;

/// Programs that run a script rather than being the program: `env` (of
/// `#!/usr/bin/env bash`) and the shells.
const TRAMPOLINES: [&str; 8] = ["env", "sh", "bash", "dash", "zsh", "ksh", "mksh", "busybox"];

/// How long a script may take to exec its program.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Whether `path` is a script (starts with `#!`).
pub fn is_script(path: &Path) -> bool {
    let mut head = [0u8; 2];
    File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head == b"#!"
}

/// The programs the script at `path` exec'd, in order, up to the first
/// that is not a shell or `env` (or all of them when it ran none).
pub fn programs_run_by(path: &Path) -> Result<Vec<PathBuf>, String> {
    let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let prepared = Prepared::new(&[path.as_os_str().to_owned()], &env).map_err(|e| Chain(&e).to_string())?;
    let null = |write: bool| -> Result<OwnedFd, String> {
        File::options()
            .read(!write)
            .write(write)
            .open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|e| format!("failed to open /dev/null: {e}"))
    };
    let held = spawn::fork(&prepared, &null(true)?, &null(true)?, false).map_err(|e| Chain(&e).to_string())?;
    let pid = held.pid;
    let options = libc::PTRACE_O_TRACEEXEC | libc::PTRACE_O_EXITKILL;
    if let Err(e) = sys::seize(pid, options) {
        let _ = sys::kill(pid, libc::SIGKILL);
        let _ = sys::waitpid(pid, libc::__WALL);
        return Err(format!("failed to trace {}: {e}", path.display()));
    }
    if let Err(e) = held.release() {
        let _ = sys::waitpid(pid, libc::__WALL);
        return Err(Chain(&e).to_string());
    }
    // Ends a script that runs on without exec'ing a program.
    let (done, cancelled) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if cancelled.recv_timeout(LIMIT) == Err(mpsc::RecvTimeoutError::Timeout) {
            let _ = sys::kill(pid, libc::SIGKILL);
        }
    });
    let ran = follow(pid);
    let _ = sys::kill(pid, libc::SIGKILL);
    // Reap it (EXITKILL: a tracee dies with its tracer anyway).
    while let Ok(Some((_, status))) = sys::waitpid(pid, libc::__WALL) {
        if WaitStatus::decode(status).is_exit() {
            break;
        }
    }
    let _ = done.send(());
    let _ = watchdog.join();
    if ran.is_empty() {
        return Err(format!("{} ended before it ran anything", path.display()));
    }
    Ok(ran)
}

/// Follows the execs of tracee `pid` until a program that is not a
/// trampoline, or its end.
fn follow(pid: i32) -> Vec<PathBuf> {
    let mut ran = Vec::new();
    while let Ok(Some((_, status))) = sys::waitpid(pid, libc::__WALL) {
        let signal = match WaitStatus::decode(status) {
            WaitStatus::EventStop { event: libc::PTRACE_EVENT_EXEC, .. } => {
                if let Some(exe) = procfs::executable(pid) {
                    let trampoline = exe.file_name().and_then(|n| n.to_str()).is_some_and(|n| TRAMPOLINES.contains(&n));
                    ran.push(exe);
                    if !trampoline {
                        break;
                    }
                }
                0
            }
            WaitStatus::EventStop { .. } | WaitStatus::Continued | WaitStatus::Unknown(_) => 0,
            WaitStatus::SignalStop(signal) => signal,
            WaitStatus::Exited(_) | WaitStatus::Signaled { .. } => break,
        };
        if sys::cont(pid, signal).is_err() {
            break;
        }
    }
    ran
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A shim of pyenv's shape: `env bash` runs a script that execs another
    /// script, which execs the program.
    #[test]
    fn follows_a_chain_of_scripts_to_the_program() {
        let dir = tempfile::tempdir().unwrap();
        let cat = std::fs::canonicalize("/bin/cat").unwrap();
        let inner = script(dir.path(), "inner", &format!("#!/bin/sh\nexec {} /nonexistent\n", cat.display()));
        let shim =
            script(dir.path(), "shim", &format!("#!/usr/bin/env bash\nset -e\nexec {} \"$@\"\n", inner.display()));
        assert!(is_script(&shim));
        assert!(!is_script(&cat));
        let ran = programs_run_by(&shim).unwrap();
        assert_eq!(ran.last(), Some(&cat), "{ran:?}");
        assert_eq!(ran.len(), 4, "env, bash, sh, cat: {ran:?}");
        assert_eq!(ran[0].file_name().unwrap(), "env");
    }

    #[test]
    fn a_script_that_execs_nothing_is_its_shell() {
        let dir = tempfile::tempdir().unwrap();
        let shell = script(dir.path(), "plain", "#!/bin/sh\nexit 0\n");
        let ran = programs_run_by(&shell).unwrap();
        assert_eq!(ran, [std::fs::canonicalize("/bin/sh").unwrap()]);
    }
}
