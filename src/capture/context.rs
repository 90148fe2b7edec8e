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
use crate::sys::ptrace::{FpRegs, Regs};

/// Builds the crash context of thread `tid` of process `pid`.
///
/// Returns `None` only if `crash-context`'s layout check rejects a zeroed
/// buffer of its own size, which would mean a broken build of that crate.
pub fn build(pid: i32, tid: i32, regs: &Regs, fpregs: &FpRegs, info: &SigInfo) -> Option<CrashContext> {
    let zeroes = vec![0u8; std::mem::size_of::<CrashContext>()];
    let mut ctx = CrashContext::from_bytes(&zeroes)?;
    ctx.pid = pid;
    ctx.tid = tid;
    fill_gregs(&mut ctx.context.uc_mcontext.gregs, regs, info);
    fill_fpregs(&mut ctx.float_state, fpregs);
    fill_siginfo(&mut ctx.siginfo, info);
    Some(ctx)
}

/// Maps `user_regs_struct` onto the `gregs` array of a `ucontext_t`
/// (indices are glibc's `REG_*`).
fn fill_gregs(gregs: &mut [i64; 23], regs: &Regs, info: &SigInfo) {
    let mut set = |index: libc::c_int, value: u64| gregs[index as usize] = value as i64;
    set(libc::REG_R8, regs.r8);
    set(libc::REG_R9, regs.r9);
    set(libc::REG_R10, regs.r10);
    set(libc::REG_R11, regs.r11);
    set(libc::REG_R12, regs.r12);
    set(libc::REG_R13, regs.r13);
    set(libc::REG_R14, regs.r14);
    set(libc::REG_R15, regs.r15);
    set(libc::REG_RDI, regs.rdi);
    set(libc::REG_RSI, regs.rsi);
    set(libc::REG_RBP, regs.rbp);
    set(libc::REG_RBX, regs.rbx);
    set(libc::REG_RDX, regs.rdx);
    set(libc::REG_RAX, regs.rax);
    set(libc::REG_RCX, regs.rcx);
    set(libc::REG_RSP, regs.rsp);
    set(libc::REG_RIP, regs.rip);
    set(libc::REG_EFL, regs.eflags);
    // The kernel's sigcontext packs cs, gs, fs, ss as four u16 in this slot;
    // minidump-writer unpacks cs from bits 0..16, gs 16..32, fs 32..48.
    let csgsfs =
        (regs.cs & 0xffff) | ((regs.gs & 0xffff) << 16) | ((regs.fs & 0xffff) << 32) | ((regs.ss & 0xffff) << 48);
    set(libc::REG_CSGSFS, csgsfs);
    // A handler would see the faulting address in cr2 for page faults.
    set(libc::REG_CR2, info.fault_addr().unwrap_or(0));
}

fn fill_fpregs(out: &mut minidump_writer::crash_context::fpregset_t, fp: &FpRegs) {
    out.cwd = fp.cwd;
    out.swd = fp.swd;
    out.ftw = fp.ftw;
    out.fop = fp.fop;
    out.rip = fp.rip;
    out.rdp = fp.rdp;
    out.mxcsr = fp.mxcsr;
    out.mxcr_mask = fp.mxcr_mask;
    out.st_space = fp.st_space;
    out.xmm_space = fp.xmm_space;
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
