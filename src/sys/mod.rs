//! The raw syscalls crashwatch needs and `std` does not offer: a fork whose
//! child is held before `execve` and the child-subreaper flag here; ptrace,
//! raw `waitpid` statuses and thread-directed signals in [`ptrace`]; what
//! differs between CPU architectures (registers, signal frame) in [`arch`];
//! crashwatch's own signal mask and dispositions, and the ones it inherited,
//! in [`signals`]; the read-only file mappings symbolication reads debug
//! information from in [`mapped`]; an eventfd and `poll` to wait on the
//! kernel's memory notifications in [`wakeup`]; datagrams with descriptors
//! for the systemd notify proxy in [`notify`].
//!
//! This module and its children are the only code allowed `unsafe`. Everything
//! between `fork` and `execve` runs in a child forked from a multithreaded
//! process, so it may only call async-signal-safe functions: no allocation,
//! no locks, no `std::io`. Every buffer the child touches is prepared by
//! [`ExecPlan::new`] before the fork.
#![allow(unsafe_code)] // fork/exec: see the module doc.

pub mod arch;
pub mod mapped;
pub mod notify;
pub mod ptrace;
pub mod signals;
pub mod wakeup;

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Everything the forked child needs, allocated before the fork.
pub struct ExecPlan {
    path: CString,
    // Keep the strings alive: `argv_ptrs` and `envp_ptrs` point into them.
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
}

impl ExecPlan {
    /// `path` is what `execve` opens; `argv[0]` is what the program sees.
    /// Fails if any string holds a NUL byte.
    pub fn new<'a>(
        path: &Path,
        argv: impl IntoIterator<Item = &'a OsStr>,
        envp: impl IntoIterator<Item = (&'a OsStr, &'a OsStr)>,
    ) -> io::Result<ExecPlan> {
        let nul = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} contains a NUL byte"));
        let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| nul("the program path"))?;
        let argv = argv
            .into_iter()
            .map(|a| CString::new(a.as_bytes()).map_err(|_| nul("an argument")))
            .collect::<io::Result<Vec<_>>>()?;
        let envp = envp
            .into_iter()
            .map(|(k, v)| {
                let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
                kv.extend_from_slice(k.as_bytes());
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).map_err(|_| nul("an environment variable"))
            })
            .collect::<io::Result<Vec<_>>>()?;
        let argv_ptrs = argv.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
        let envp_ptrs = envp.iter().map(|e| e.as_ptr()).chain([std::ptr::null()]).collect();
        Ok(ExecPlan { path, _argv: argv, _envp: envp, argv_ptrs, envp_ptrs })
    }
}

// SAFETY: the raw pointers point into the heap buffers of the CStrings the
// plan owns; moving the plan to another thread moves those owners with it,
// and nothing mutates them after construction.
unsafe impl Send for ExecPlan {}

/// The file descriptors the child is wired to.
pub struct ChildFds<'a> {
    /// Becomes the child's fd 1.
    pub stdout: BorrowedFd<'a>,
    /// Becomes the child's fd 2.
    pub stderr: BorrowedFd<'a>,
    /// The child blocks reading one byte from this before it execs.
    pub sync_read: BorrowedFd<'a>,
    /// On exec failure the child writes its errno (4 bytes, native endian)
    /// here. Must be close-on-exec so a successful exec shows up as EOF.
    pub error_write: BorrowedFd<'a>,
    /// Give the child the terminal's foreground when fd 0 is a terminal, so
    /// that it can read from it and receives ^C directly (as tini does).
    pub take_terminal: bool,
}

/// Forks a child that puts itself in a new process group, wires its fds,
/// waits for one byte on `sync_read`, gives back the signal dispositions and
/// mask crashwatch inherited ([`signals::inherited`]), then execs `plan`.
/// Returns the child's pid in the parent.
///
/// The hold before exec is what lets the parent seize the child with ptrace
/// before the program's first instruction.
pub fn fork_held(plan: &ExecPlan, fds: &ChildFds<'_>) -> io::Result<libc::pid_t> {
    let inherited = signals::inherited();
    // SAFETY: fork has no memory-safety preconditions; the child branch below
    // only makes async-signal-safe calls on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => child_after_fork(plan, fds, &inherited),
        pid => {
            // Also set the group from the parent: whichever of the two runs
            // first, the group exists before anyone signals it.
            // SAFETY: plain syscall on a pid we own.
            unsafe { libc::setpgid(pid, pid) };
            Ok(pid)
        }
    }
}

fn child_after_fork(plan: &ExecPlan, fds: &ChildFds<'_>, inherited: &signals::Inherited) -> ! {
    // SAFETY: only async-signal-safe libc calls, on fds the parent keeps open
    // across the fork and on pointers into `plan`, which outlives this call
    // (the child's copy of the address space is never freed before exec).
    unsafe {
        libc::setpgid(0, 0);
        if fds.take_terminal && libc::isatty(0) == 1 {
            // tcsetpgrp from a background group raises SIGTTOU; ignore it for
            // the call (the inherited disposition is restored below).
            libc::signal(libc::SIGTTOU, libc::SIG_IGN);
            libc::tcsetpgrp(0, libc::getpid());
        }
        if libc::dup2(fds.stdout.as_raw_fd(), 1) < 0 || libc::dup2(fds.stderr.as_raw_fd(), 2) < 0 {
            child_fail(fds.error_write.as_raw_fd());
        }
        let mut byte = 0u8;
        loop {
            let n = libc::read(fds.sync_read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
            if n == 1 {
                break;
            }
            if n == 0 || *libc::__errno_location() != libc::EINTR {
                // The parent gave up on us before releasing us.
                libc::_exit(crate::exit::CANNOT_SUPERVISE);
            }
        }
        // Last, so that a signal sent to the held child stays pending
        // (crashwatch blocks what it forwards) until the program can take
        // it. What crashwatch ignores for itself (SIGPIPE, the Rust
        // runtime's; SIGTTIN, SIGTTOU) or blocks is given back as it was.
        signals::restore_in_child(inherited);
        libc::execve(plan.path.as_ptr(), plan.argv_ptrs.as_ptr(), plan.envp_ptrs.as_ptr());
        child_fail(fds.error_write.as_raw_fd())
    }
}

/// Reports errno to the parent and exits. Async-signal-safe.
unsafe fn child_fail(error_fd: RawFd) -> ! {
    // SAFETY: errno location is thread-local and valid; write/_exit are
    // async-signal-safe.
    unsafe {
        let errno = *libc::__errno_location();
        let bytes = errno.to_ne_bytes();
        libc::write(error_fd, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(crate::exit::NOT_FOUND)
    }
}

/// Creates a pipe with both ends close-on-exec: `(read, write)`.
pub fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

/// Grows a pipe's buffer (best effort): fewer wake-ups when a child writes
/// fast, and more room for it to write while crashwatch is busy.
pub fn grow_pipe(fd: BorrowedFd<'_>, bytes: i32) {
    let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(bytes));
}

/// Makes this process a child subreaper: orphaned descendants are
/// reparented to it instead of to init, so it can reap them.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes a plain integer argument.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Writes all of `buf` to `fd` with plain `write(2)` calls: no buffering
/// (pass-through must be immediate) and no `LineWriter` splitting at newlines.
pub fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
