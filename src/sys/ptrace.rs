//! The one place that talks to the kernel through raw syscalls.
//!
//! Everything `unsafe` in the crate lives here, behind small safe functions
//! that take and return plain values. Each function documents the request it
//! makes and the errors a caller has to expect, because the ptrace state
//! machine is defined mostly by its failure modes:
//!
//! - `ESRCH` from a ptrace request means "the task is gone, is not traced by
//!   this thread, or is not in a ptrace-stop" (for requests that need one).
//!   The tracer treats it as "gone" and moves on; `/proc` is the truth.
//! - ptrace requests must come from the thread that attached: the kernel
//!   records the tracer as a *thread*, not a process.
//! - `waitpid` statuses are returned raw (`i32`): `nix` cannot represent
//!   real-time signals, which glibc uses internally, and the ptrace event bits
//!   in the upper half of the status would be lost by most wrappers.
//!
//! Nothing here retries except on `EINTR`, and nothing here logs: the callers
//! decide what a failure means.
#![allow(unsafe_code)] // the crate's only unsafe module: raw ptrace/wait/signal syscalls

use std::ffi::{c_int, c_long, c_void};
use std::io;
use std::ptr;

pub use super::arch::{FpRegs, Regs, get_fpregs, get_regs};

/// `PTRACE_EVENT_STOP`: a group-stop, an interrupt-stop, or the first stop of
/// an auto-attached task (`status >> 16` of a seized tracee's stop).
pub const PTRACE_EVENT_STOP: i32 = 128;

/// A `siginfo_t` kept as the kernel's 128 raw bytes.
///
/// `libc::siginfo_t` hides its union behind unsafe accessors; the fields the
/// crash path needs are at fixed offsets of the x86_64 ABI, so they are read
/// from the bytes in safe code (see `crate::process::siginfo`).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub struct RawSigInfo {
    /// The raw bytes; `[u64; 16]` only to give the buffer siginfo's alignment.
    pub words: [u64; 16],
}

impl std::fmt::Debug for RawSigInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSigInfo").field("signo", &(self.words[0] as u32 as i32)).finish_non_exhaustive()
    }
}

// The kernel copies exactly `sizeof(siginfo_t)` bytes; make sure the buffer
// handed to it is at least that large.
const _: () = assert!(std::mem::size_of::<RawSigInfo>() >= std::mem::size_of::<libc::siginfo_t>());

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// Turns a `-1`-means-errno return value into a `Result`.
pub(super) fn check(rc: c_long) -> io::Result<c_long> {
    if rc == -1 { Err(last_error()) } else { Ok(rc) }
}

/// `ptrace(request, pid, addr, data)` where `addr` and `data` are integers,
/// not pointers (SEIZE, INTERRUPT, LISTEN, CONT, DETACH).
fn ptrace_no_memory(request: libc::c_uint, pid: i32, addr: usize, data: usize) -> io::Result<()> {
    // SAFETY: for the requests this helper is used with, the kernel interprets
    // `addr` and `data` as integers (options, signal numbers) and never
    // dereferences them, so no memory of ours is read or written.
    let rc = unsafe { libc::ptrace(request, pid, addr as *mut c_void, data as *mut c_void) };
    check(rc).map(drop)
}

/// `PTRACE_SEIZE`: become the tracer of `pid` without stopping it.
///
/// `options` is a set of `PTRACE_O_*` bits. Unlike `PTRACE_ATTACH` this sends
/// no `SIGSTOP`, group-stops are reported as `PTRACE_EVENT_STOP`, and
/// `PTRACE_INTERRUPT`/`PTRACE_LISTEN` become available.
/// Errors: `EPERM` (already traced, or not allowed), `ESRCH` (no such task).
pub fn seize(pid: i32, options: c_int) -> io::Result<()> {
    ptrace_no_memory(libc::PTRACE_SEIZE, pid, 0, options as usize)
}

/// `PTRACE_INTERRUPT`: ask a seized tracee to enter a ptrace-stop.
///
/// Returns at once; the stop is reported later through `waitpid` (as
/// `PTRACE_EVENT_STOP`, or as whatever stop the task had already queued).
/// `ESRCH`: the task is gone or is not our tracee.
pub fn interrupt(tid: i32) -> io::Result<()> {
    ptrace_no_memory(libc::PTRACE_INTERRUPT, tid, 0, 0)
}

/// `PTRACE_LISTEN`: let a tracee that reported a group-stop stay stopped
/// while still reporting the next event (e.g. `SIGCONT`).
///
/// Only valid in a group-stop (`PTRACE_EVENT_STOP` with a stop signal);
/// `EINVAL` otherwise, `ESRCH` if the task is gone or not stopped.
pub fn listen(tid: i32) -> io::Result<()> {
    ptrace_no_memory(libc::PTRACE_LISTEN, tid, 0, 0)
}

/// `PTRACE_CONT`: resume a stopped tracee, delivering `signal` (0 = none).
///
/// From a signal-delivery-stop, `signal` is the signal the task will act on;
/// passing the reported signal back is how a signal "passes through".
/// `ESRCH`: gone or not stopped.
pub fn cont(tid: i32, signal: i32) -> io::Result<()> {
    ptrace_no_memory(libc::PTRACE_CONT, tid, 0, signal as usize)
}

/// `PTRACE_DETACH`: stop tracing a stopped tracee, delivering `signal`
/// (0 = none; from a signal-delivery-stop, 0 discards that signal).
///
/// `ESRCH`: gone, not our tracee, or *not stopped* — a running tracee cannot
/// be detached.
pub fn detach(tid: i32, signal: i32) -> io::Result<()> {
    ptrace_no_memory(libc::PTRACE_DETACH, tid, 0, signal as usize)
}

/// `PTRACE_GETSIGINFO`: the siginfo of the signal a tracee is stopped for
/// (meaningful in a signal-delivery-stop; `EINVAL` in a group-stop).
pub fn get_siginfo(tid: i32) -> io::Result<RawSigInfo> {
    let mut info = RawSigInfo { words: [0; 16] };
    // SAFETY: `info` is a live, writable 128-byte buffer, at least the size of
    // the kernel's siginfo_t (checked at compile time above); the kernel
    // writes at most that many bytes to `data` and keeps no reference.
    let rc = unsafe {
        libc::ptrace(libc::PTRACE_GETSIGINFO, tid, ptr::null_mut::<c_void>(), (&raw mut info).cast::<c_void>())
    };
    check(rc)?;
    Ok(info)
}

/// `PTRACE_GETEVENTMSG`: the message of the last ptrace event (for
/// clone/fork/vfork stops: the new task's id).
pub fn get_event_msg(tid: i32) -> io::Result<u64> {
    let mut msg: libc::c_ulong = 0;
    // SAFETY: `msg` is a writable c_ulong, the exact type the kernel stores.
    let rc = unsafe {
        libc::ptrace(libc::PTRACE_GETEVENTMSG, tid, ptr::null_mut::<c_void>(), (&raw mut msg).cast::<c_void>())
    };
    check(rc)?;
    Ok(msg)
}

/// `waitpid(pid, &status, options)`, retried on `EINTR`.
///
/// Returns `Ok(None)` when `WNOHANG` is in `options` and nothing is ready,
/// otherwise the task id and its raw status. `ECHILD`: nothing to wait for.
pub fn waitpid(pid: i32, options: c_int) -> io::Result<Option<(i32, i32)>> {
    wait4(pid, options, std::ptr::null_mut())
}

/// `wait4(2)`, retried on EINTR; `usage` is null or a writable `rusage`.
fn wait4(pid: i32, options: c_int, usage: *mut libc::rusage) -> io::Result<Option<(i32, i32)>> {
    loop {
        let mut status: c_int = 0;
        // SAFETY: `status` is a valid, writable c_int for the duration of the
        // call, and `usage` is null or valid and writable (our callers);
        // the kernel writes only those.
        let rc = unsafe { libc::wait4(pid, &mut status, options, usage) };
        match rc {
            -1 => {
                let err = last_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            0 => return Ok(None),
            reaped => return Ok(Some((reaped, status))),
        }
    }
}

/// The tracer loop's blocking wait: `wait4(-1, __WALL | __WNOTHREAD)`.
/// Returns the task, its raw status, and its peak resident set in bytes
/// (`ru_maxrss`; 0 for a stop): the exact high-water mark of a child that
/// died between two memory samples.
///
/// `__WALL` includes clone children (threads) and tracees. `__WNOTHREAD`
/// limits the wait to children and tracees of the *calling thread*: without
/// it the tracer thread would also reap processes that other threads of the
/// supervisor spawned (e.g. a `std::process::Command` helper), and those
/// threads' own `wait` would then fail.
pub fn wait_any() -> io::Result<(i32, i32, u64)> {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    match wait4(-1, libc::__WALL | libc::__WNOTHREAD, &mut usage)? {
        Some((task, status)) => Ok((task, status, u64::try_from(usage.ru_maxrss).unwrap_or(0).saturating_mul(1024))),
        // Cannot happen without WNOHANG; report it rather than panic.
        None => Err(io::Error::other("wait4 returned 0 without WNOHANG")),
    }
}

/// Non-blocking wait for one specific task (thread or process) of ours.
pub fn try_wait_task(tid: i32) -> io::Result<Option<(i32, i32)>> {
    waitpid(tid, libc::__WALL | libc::__WNOTHREAD | libc::WNOHANG)
}

/// `tgkill(tgid, tid, signal)`: send `signal` to one thread, checking that it
/// still belongs to `tgid` (protects against tid reuse).
pub fn tgkill(tgid: i32, tid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: tgkill takes three integers and touches no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, tgid as c_long, tid as c_long, signal as c_long) };
    check(rc).map(drop)
}

/// `rt_tgsigqueueinfo(tgid, tid, signo, info)`: queue a signal to one thread
/// with a caller-supplied siginfo, preserving e.g. the `sigval` payload of a
/// real-time signal.
///
/// The kernel refuses (`EPERM`) siginfo that claims to come from the kernel or
/// from `kill`/`tkill` (`si_code >= 0` or `SI_TKILL`) when sent by another
/// process; callers fall back to [`tgkill`] for those.
pub fn tgsigqueueinfo(tgid: i32, tid: i32, signal: i32, info: &RawSigInfo) -> io::Result<()> {
    // The kernel reads the siginfo; it does not write it. Copy so the pointer
    // we hand over is to memory we own mutably for the call's duration.
    let mut copy = *info;
    // SAFETY: `copy` is a live 128-byte siginfo buffer, which is what the
    // syscall reads (copy_from_user of sizeof(siginfo_t)); no reference is
    // kept after return.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            tgid as c_long,
            tid as c_long,
            signal as c_long,
            (&raw mut copy).cast::<c_void>(),
        )
    };
    check(rc).map(drop)
}

/// `sigqueue(pid, signal, value)`: queue a process-directed signal whose
/// siginfo says `SI_QUEUE`, carries our pid and uid as the sender and `value`
/// as its `sigval` payload (what `SigInfo::value` reads back). Any thread of
/// `pid` that does not block `signal` may take it.
///
/// `ESRCH`: no such process; `EAGAIN`: its queue of pending signals is full.
pub fn sigqueue(pid: i32, signal: i32, value: u64) -> io::Result<()> {
    // The payload is an integer carried in the pointer member of the union;
    // nobody dereferences it.
    let sigval = libc::sigval { sival_ptr: value as usize as *mut c_void };
    // SAFETY: sigqueue takes two integers and a sigval by value; glibc builds
    // the siginfo on its own stack and the kernel copies it. No memory of
    // ours is read through the payload or kept after the call.
    let rc = unsafe { libc::sigqueue(pid, signal, sigval) };
    check(rc as c_long).map(drop)
}

/// `kill(pid, signal)`: send a process-directed signal.
pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill takes two integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, signal) };
    check(rc as c_long).map(drop)
}

/// True if `err` is `ESRCH`: the task is gone (or not traced/stopped, for
/// ptrace requests).
pub fn is_esrch(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ESRCH)
}

/// True if `err` is `ECHILD`: no such child/tracee to wait for.
pub fn is_echild(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ECHILD)
}
