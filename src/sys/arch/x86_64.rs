//! x86_64: `user_regs_struct` from `PTRACE_GETREGS`, the FXSAVE area from
//! `PTRACE_GETFPREGS`, their place in a `ucontext_t`, and the kernel's
//! `struct rt_sigframe`.
#![allow(unsafe_code)] // PTRACE_GETREGS/GETFPREGS write into our buffers

use std::ffi::c_void;
use std::io;
use std::mem::MaybeUninit;
use std::ptr;

use minidump_writer::crash_context::CrashContext;

use super::super::ptrace::check;

/// General-purpose registers as `PTRACE_GETREGS` returns them.
pub type Regs = libc::user_regs_struct;
/// x87/SSE state as `PTRACE_GETFPREGS` returns it (the FXSAVE layout).
pub type FpRegs = libc::user_fpregs_struct;

/// The stack pointer.
pub fn stack_pointer(regs: &Regs) -> u64 {
    regs.rsp
}

/// `PTRACE_GETREGS`: general-purpose registers of a stopped tracee.
pub fn get_regs(tid: i32) -> io::Result<Regs> {
    let mut regs = MaybeUninit::<Regs>::uninit();
    // SAFETY: `regs` points to writable memory of exactly
    // sizeof(struct user_regs_struct), which is what PTRACE_GETREGS writes.
    let rc = unsafe {
        libc::ptrace(libc::PTRACE_GETREGS, tid, ptr::null_mut::<c_void>(), regs.as_mut_ptr().cast::<c_void>())
    };
    check(rc)?;
    // SAFETY: the call succeeded, so the kernel filled the whole struct
    // (copy_to_user of the full regset or an error, never a partial write).
    Ok(unsafe { regs.assume_init() })
}

/// `PTRACE_GETFPREGS`: x87/SSE registers (FXSAVE area) of a stopped tracee.
pub fn get_fpregs(tid: i32) -> io::Result<FpRegs> {
    let mut regs = MaybeUninit::<FpRegs>::uninit();
    // SAFETY: `regs` points to writable memory of exactly
    // sizeof(struct user_fpregs_struct) (512 bytes), which is what
    // PTRACE_GETFPREGS writes.
    let rc = unsafe {
        libc::ptrace(libc::PTRACE_GETFPREGS, tid, ptr::null_mut::<c_void>(), regs.as_mut_ptr().cast::<c_void>())
    };
    check(rc)?;
    // SAFETY: the call succeeded, so the 512-byte area was fully written.
    Ok(unsafe { regs.assume_init() })
}

/// Fills the registers of a handler's `ucontext_t` and its FP state, as the
/// kernel would for a signal taken with `regs`; `fault_address` goes where
/// a handler finds it for page faults (`cr2`).
pub fn fill_crash_context(ctx: &mut CrashContext, regs: &Regs, fpregs: &FpRegs, fault_address: u64) {
    let gregs = &mut ctx.context.uc_mcontext.gregs;
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
    set(libc::REG_CR2, fault_address);

    let out = &mut ctx.float_state;
    out.cwd = fpregs.cwd;
    out.swd = fpregs.swd;
    out.ftw = fpregs.ftw;
    out.fop = fpregs.fop;
    out.rip = fpregs.rip;
    out.rdp = fpregs.rdp;
    out.mxcsr = fpregs.mxcsr;
    out.mxcr_mask = fpregs.mxcr_mask;
    out.st_space = fpregs.st_space;
    out.xmm_space = fpregs.xmm_space;
}

/// The kernel's signal frame, as a handler running on it leaves it on its
/// stack (`struct rt_sigframe`): a return address to the `rt_sigreturn`
/// trampoline, then the `ucontext` with the interrupted registers, then the
/// `siginfo`.
pub mod sigframe {
    use super::Regs;

    /// `mov $0xf, %rax; syscall`: glibc's `__restore_rt` (`rt_sigreturn`),
    /// the code the frame's return address points at.
    pub const RESTORE_RT: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];
    /// From the frame's start to the `sigcontext`'s registers: `pretcode`,
    /// then `uc_flags`, `uc_link` and `stack_t` (40 bytes).
    pub const GREGS: u64 = 8 + 40;
    /// From the frame's start to its `siginfo`: after the `sigcontext` (32
    /// words) and `uc_sigmask` (8 bytes).
    pub const SIGINFO: u64 = 8 + 40 + 256 + 8;
    /// Index of the stack pointer among the `sigcontext` registers.
    pub const STACK_POINTER: u64 = 15;

    /// The interrupted thread's registers, read with `greg(index)` from the
    /// frame's `sigcontext`; the registers the frame does not hold are
    /// `current`'s.
    pub fn interrupted_regs(current: &Regs, greg: impl Fn(u64) -> Option<u64>) -> Option<Regs> {
        let mut interrupted = *current;
        let targets: [&mut u64; 17] = [
            &mut interrupted.r8,
            &mut interrupted.r9,
            &mut interrupted.r10,
            &mut interrupted.r11,
            &mut interrupted.r12,
            &mut interrupted.r13,
            &mut interrupted.r14,
            &mut interrupted.r15,
            &mut interrupted.rdi,
            &mut interrupted.rsi,
            &mut interrupted.rbp,
            &mut interrupted.rbx,
            &mut interrupted.rdx,
            &mut interrupted.rax,
            &mut interrupted.rcx,
            &mut interrupted.rsp,
            &mut interrupted.rip,
        ];
        for (index, target) in targets.into_iter().enumerate() {
            *target = greg(index as u64)?;
        }
        const EFLAGS: u64 = 17;
        interrupted.eflags = greg(EFLAGS)?;
        Some(interrupted)
    }

    /// The `(signo, si_code, address)` the kernel sends for the CPU
    /// exception the frame's `sigcontext` saved (trap number, error code,
    /// `cr2`); `None` for an exception that raises no fault signal.
    pub fn fault_of(greg: impl Fn(u64) -> Option<u64>) -> Option<(i32, i32, u64)> {
        const INSTRUCTION_POINTER: u64 = 16;
        const ERROR_CODE: u64 = 19;
        const TRAP_NUMBER: u64 = 20;
        const CR2: u64 = 22;
        const PAGE_FAULT: u64 = 14;
        const GENERAL_PROTECTION: u64 = 13;
        const DIVIDE_ERROR: u64 = 0;
        const INVALID_OPCODE: u64 = 6;
        let (trap, error) = (greg(TRAP_NUMBER)?, greg(ERROR_CODE)?);
        Some(match trap {
            // Bit 0 of the error code: the page was present (a protection
            // fault, SEGV_ACCERR), not unmapped (SEGV_MAPERR).
            PAGE_FAULT => (libc::SIGSEGV, if error & 1 == 0 { 1 } else { 2 }, greg(CR2)?),
            // SI_KERNEL: no address.
            GENERAL_PROTECTION => (libc::SIGSEGV, 0x80, 0),
            DIVIDE_ERROR => (libc::SIGFPE, 1 /* FPE_INTDIV */, greg(INSTRUCTION_POINTER)?),
            INVALID_OPCODE => (libc::SIGILL, 2 /* ILL_ILLOPN */, greg(INSTRUCTION_POINTER)?),
            _ => return None,
        })
    }
}
