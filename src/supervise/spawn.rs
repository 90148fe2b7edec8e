//! Starting the child by hand: fork, hold, exec.
//!
//! `std::process::Command` forks and execs in one call, so nothing can happen
//! between the two. crashwatch needs that gap: the child must be its ptrace
//! tracee before the program's first instruction, or a crash in a static
//! initialiser would be missed. So the child is forked, blocks on a sync
//! pipe, and execs only when the parent writes the byte that releases it.
//!
//! Exec failures travel back on a second, close-on-exec pipe: EOF means the
//! exec happened, four bytes are the errno of a failed one.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::{exit, sys};

/// Why the child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot run {program}: command not found in PATH")]
    NotFound { program: String },
    #[error("cannot run {path}")]
    Exec {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot run {path}: not executable (check its mode and the filesystem's noexec flag)")]
    NotExecutable { path: String },
    #[error("failed to prepare the child process")]
    Setup(#[source] io::Error),
}

impl SpawnError {
    /// The exit status a shell would give: 127 for a program that is not
    /// there, 126 for one that is there but cannot run, 125 when crashwatch
    /// itself failed.
    pub fn exit_code(&self) -> i32 {
        match self {
            SpawnError::NotFound { .. } => exit::NOT_FOUND,
            SpawnError::Exec { source, .. } if source.raw_os_error() == Some(libc::ENOENT) => exit::NOT_FOUND,
            SpawnError::Exec { .. } | SpawnError::NotExecutable { .. } => exit::NOT_EXECUTABLE,
            SpawnError::Setup(_) => exit::CANNOT_SUPERVISE,
        }
    }
}

/// What to run, ready to fork.
pub struct Prepared {
    /// The file that will be executed (PATH already searched).
    pub path: PathBuf,
    plan: sys::ExecPlan,
}

impl Prepared {
    /// Resolves `argv[0]` against the `PATH` in `env` (as `execvp` would) and
    /// prepares the exec arguments.
    pub fn new(argv: &[OsString], env: &[(OsString, OsString)]) -> Result<Prepared, SpawnError> {
        let program = argv.first().ok_or_else(|| SpawnError::NotFound { program: String::new() })?;
        let path_var = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_os_str());
        let path = resolve(program, path_var)?;
        let plan = sys::ExecPlan::new(
            &path,
            argv.iter().map(OsString::as_os_str),
            env.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str())),
        )
        .map_err(SpawnError::Setup)?;
        Ok(Prepared { path, plan })
    }
}

/// Finds `program` the way `execvp` does: as given when it contains a
/// slash, else in the directories of `PATH`.
pub fn resolve(program: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf, SpawnError> {
    let display = || program.to_string_lossy().into_owned();
    if program.is_empty() {
        return Err(SpawnError::NotFound { program: display() });
    }
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let path_var = path_var.unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    let mut not_executable = None;
    for dir in path_var.as_bytes().split(|&b| b == b':') {
        // An empty PATH entry means the current directory.
        let dir = if dir.is_empty() { Path::new(".") } else { Path::new(OsStr::from_bytes(dir)) };
        let candidate = dir.join(program);
        let Ok(meta) = std::fs::metadata(&candidate) else { continue };
        if !meta.is_file() {
            continue;
        }
        if meta.permissions().mode() & 0o111 != 0
            && nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok()
        {
            return Ok(candidate);
        }
        not_executable.get_or_insert(candidate);
    }
    match not_executable {
        Some(path) => Err(SpawnError::NotExecutable { path: path.display().to_string() }),
        None => Err(SpawnError::NotFound { program: display() }),
    }
}

/// A forked child, held before exec until [`Held::release`].
pub struct Held {
    pub pid: libc::pid_t,
    sync_write: OwnedFd,
    error_read: OwnedFd,
    path: PathBuf,
}

/// Forks the child with `stdout` and `stderr` as its fds 1 and 2. The
/// caller's copies of those fds can be dropped once this returns.
pub fn fork(prepared: &Prepared, stdout: &OwnedFd, stderr: &OwnedFd, take_terminal: bool) -> Result<Held, SpawnError> {
    let (sync_read, sync_write) = sys::pipe_cloexec().map_err(SpawnError::Setup)?;
    let (error_read, error_write) = sys::pipe_cloexec().map_err(SpawnError::Setup)?;
    let fds = sys::ChildFds {
        stdout: stdout.as_fd(),
        stderr: stderr.as_fd(),
        sync_read: sync_read.as_fd(),
        error_write: error_write.as_fd(),
        take_terminal,
    };
    let pid = sys::fork_held(&prepared.plan, &fds).map_err(SpawnError::Setup)?;
    Ok(Held { pid, sync_write, error_read, path: prepared.path.clone() })
}

impl Held {
    /// Lets the child exec. Returns once the exec has happened, or with the
    /// reason it failed (the child has then exited with 127; reap it).
    pub fn release(self) -> Result<libc::pid_t, SpawnError> {
        sys::write_all(self.sync_write.as_fd(), b"x").map_err(SpawnError::Setup)?;
        drop(self.sync_write);
        let mut errno = [0u8; 4];
        let mut got = 0;
        while got < errno.len() {
            match nix::unistd::read(self.error_read.as_fd(), &mut errno[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(SpawnError::Setup(e.into())),
            }
        }
        if got == 0 {
            return Ok(self.pid);
        }
        let errno = i32::from_ne_bytes(errno);
        let path = self.path.display().to_string();
        Err(match errno {
            libc::EACCES | libc::EPERM => SpawnError::NotExecutable { path },
            _ => SpawnError::Exec { path, source: io::Error::from_raw_os_error(errno) },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_execvp() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let noexec = dir.path().join("data");
        std::fs::write(&noexec, "").unwrap();
        std::fs::set_permissions(&noexec, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::create_dir(dir.path().join("adir")).unwrap();
        let path = OsString::from(format!("/nonexistent:{}", dir.path().display()));

        assert_eq!(resolve(OsStr::new("tool"), Some(&path)).unwrap(), exe);
        assert!(matches!(resolve(OsStr::new("adir"), Some(&path)), Err(SpawnError::NotFound { .. })));
        assert!(matches!(resolve(OsStr::new("nope"), Some(&path)), Err(SpawnError::NotFound { .. })));
        assert_eq!(resolve(OsStr::new("./x/y"), Some(&path)).unwrap(), Path::new("./x/y"));
        // Root may execute anything with an x bit; without one, nobody may.
        let err = resolve(OsStr::new("data"), Some(&path)).unwrap_err();
        assert!(matches!(err, SpawnError::NotExecutable { .. }), "{err}");
        assert_eq!(err.exit_code(), 126);
    }
}
