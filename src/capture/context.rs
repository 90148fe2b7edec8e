//! Building minidump-writer's crash context from ptrace data.
//!
//! minidump-writer was designed for in-process handlers: its
//! `crash_context::CrashContext` holds the `ucontext_t` a signal handler
//! receives, the FP state, and a `signalfd_siginfo`. Out of process we have
//! the same facts from `PTRACE_GETREGS`/`GETFPREGS`/`GETSIGINFO` taken in
//! the crashing thread's signal-delivery-stop, i.e. the registers at the
//! faulting instruction — exactly what a handler's ucontext would show.
//!
//! The context's structs have private padding fields, so they cannot be
//! built with literals; the context starts as all zeroes (a valid value: the
//! only pointers in it are never dereferenced across processes) via the
//! crate's own `from_bytes`, and the public fields are filled in.

use minidump_writer::crash_context::CrashContext;

use crate::process::siginfo::SigInfo;
use crate::sys::arch::{self, FpRegs, Regs};

/// Builds the crash context of thread `tid` of process `pid`.
///
/// Returns `None` only if `crash-context`'s layout check rejects a zeroed
/// buffer of its own size, which would mean a broken build of that crate.
pub fn build(pid: i32, tid: i32, regs: &Regs, fpregs: &FpRegs, info: &SigInfo) -> Option<CrashContext> {
    let zeroes = vec![0u8; std::mem::size_of::<CrashContext>()];
    let mut ctx = CrashContext::from_bytes(&zeroes)?;
    ctx.pid = pid;
    ctx.tid = tid;
    // A handler would see the faulting address in cr2 for page faults.
    arch::fill_crash_context(&mut ctx, regs, fpregs, info.fault_addr().unwrap_or(0));
    fill_siginfo(&mut ctx.siginfo, info);
    Some(ctx)
}

/// Translates `siginfo_t` into the `signalfd_siginfo` layout the context
/// uses; minidump-writer writes `ssi_signo`, `ssi_code` and `ssi_addr` into
/// the exception stream.
fn fill_siginfo(out: &mut libc::signalfd_siginfo, info: &SigInfo) {
    out.ssi_signo = info.signo() as u32;
    out.ssi_errno = info.errno();
    out.ssi_code = info.code();
    if let Some(addr) = info.fault_addr() {
        out.ssi_addr = addr;
    }
    if let Some((pid, uid)) = info.sender() {
        out.ssi_pid = pid as u32;
        out.ssi_uid = uid;
    }
    if let Some((syscall, arch)) = info.seccomp_syscall() {
        out.ssi_syscall = syscall;
        out.ssi_arch = arch;
        out.ssi_call_addr = info.fault_addr().unwrap_or(0);
    }
    if let Some(value) = info.value() {
        out.ssi_ptr = value;
        out.ssi_int = value as u32 as i32;
    }
}
