//! A fault the program's own handler caught on an alternate signal stack
//! and then raised again (Python's faulthandler, which prints the Python
//! stack, restores the default action and re-raises).
//!
//! The thread then dies inside the handler, on the alternate stack: its
//! registers, and so the dump's stack, are the handler's, and the stack of
//! the code that faulted is elsewhere (a dump holds one stack per thread,
//! so the unwinder cannot cross from one to the other). The kernel left the
//! interrupted state in the signal frame on the alternate stack: a return
//! address to the `rt_sigreturn` trampoline, the `ucontext`, the original
//! `siginfo`. When that frame is found, the dump is written with the
//! faulting code's registers and the original fault's siginfo: the stack
//! walked is the one that faulted, and the exception is the real one.
//!
//! x86_64 only: the frame layout is the kernel's `struct rt_sigframe`.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::process::siginfo::SigInfo;
use crate::sys::ptrace::{RawSigInfo, Regs};

/// `mov $0xf, %rax; syscall`: glibc's `__restore_rt` (`rt_sigreturn`).
const RESTORE_RT: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];
/// `gregs` indices of the kernel's `sigcontext` beyond the registers.
const REG_EFL: u64 = 17;
const REG_ERR: u64 = 19;
const REG_TRAPNO: u64 = 20;
const REG_CR2: u64 = 22;

/// How far above the stack pointer the signal frame is looked for: the
/// handler's own frames lie in between. An alternate signal stack is
/// usually 8 to 64 KiB.
const SEARCH: u64 = 64 << 10;
/// `struct rt_sigframe`: `pretcode`, then the kernel's `struct ucontext`
/// (`uc_flags`, `uc_link`, `stack_t`: 40 bytes; `sigcontext`: 32 words;
/// `uc_sigmask`: 8 bytes), then the `siginfo`.
const GREGS: u64 = 8 + 40;
const SIGINFO: u64 = 8 + 40 + 256 + 8;

/// The interrupted fault, when thread state `regs` is inside a handler
/// running on an alternate stack of process `pid`.
pub(super) struct Handled {
    pub regs: Regs,
    pub info: SigInfo,
}

/// Looks for the signal frame above `regs.rsp`. `None` unless the frame is
/// there, the interrupted stack pointer lies outside the stack being run
/// on, and the interrupted code took the fault that raises `signal`.
pub(super) fn find(pid: i32, signal: i32, regs: &Regs) -> Option<Handled> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let mappings: Vec<(u64, u64, bool)> = maps.lines().filter_map(mapping).collect();
    let in_mapping = |address: u64| mappings.iter().find(|(start, end, _)| (*start..*end).contains(&address));
    let &(_, stack_end, _) = in_mapping(regs.rsp)?;
    let mem = File::open(format!("/proc/{pid}/mem")).ok()?;
    let read = |address: u64, buffer: &mut [u8]| mem.read_exact_at(buffer, address).ok();
    let word = |address: u64| {
        let mut bytes = [0u8; 8];
        read(address, &mut bytes).map(|()| u64::from_ne_bytes(bytes))
    };

    let top = stack_end.min(regs.rsp.saturating_add(SEARCH));
    let mut stack = vec![0u8; usize::try_from(top.checked_sub(regs.rsp)?).ok()?];
    read(regs.rsp, &mut stack)?;
    let frame = stack.chunks_exact(8).enumerate().find_map(|(i, chunk)| {
        let candidate = u64::from_ne_bytes(chunk.try_into().ok()?);
        in_mapping(candidate).filter(|(_, _, executable)| *executable)?;
        let mut code = [0u8; RESTORE_RT.len()];
        read(candidate, &mut code)?;
        (code == RESTORE_RT).then(|| regs.rsp + 8 * i as u64)
    })?;

    let greg = |index: u64| word(frame + GREGS + 8 * index);
    let interrupted_rsp = greg(15)?;
    // Same stack: the unwinder crosses the signal frame by itself.
    if in_mapping(interrupted_rsp).is_some_and(|(start, end, _)| (*start..*end).contains(&regs.rsp)) {
        return None;
    }
    let info = interrupted_siginfo(signal, frame, &word, &greg)?;
    let mut interrupted = *regs;
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
    interrupted.eflags = greg(REG_EFL)?;
    Some(Handled { regs: interrupted, info })
}

/// The siginfo of the interrupted fault: the frame's own copy when the
/// handler asked for one (`SA_SIGINFO`) and it is the same signal, else
/// made from the CPU exception the kernel saved in the `sigcontext` (trap
/// number, error code, `cr2`), as the kernel would have filled it.
/// `None` when that exception does not raise `signal`.
fn interrupted_siginfo(
    signal: i32,
    frame: u64,
    word: &dyn Fn(u64) -> Option<u64>,
    greg: &dyn Fn(u64) -> Option<u64>,
) -> Option<SigInfo> {
    let mut raw = RawSigInfo { words: [0; 16] };
    for (i, slot) in raw.words.iter_mut().enumerate() {
        *slot = word(frame + SIGINFO + 8 * i as u64).unwrap_or(0);
    }
    let copied = SigInfo::new(raw);
    if copied.signo() == signal && copied.code() > 0 {
        return Some(copied);
    }
    const PAGE_FAULT: u64 = 14;
    const GENERAL_PROTECTION: u64 = 13;
    const DIVIDE_ERROR: u64 = 0;
    const INVALID_OPCODE: u64 = 6;
    let (trap, error) = (greg(REG_TRAPNO)?, greg(REG_ERR)?);
    let (signo, code, address) = match trap {
        // Bit 0 of the error code: the page was present (a protection
        // fault), not unmapped.
        PAGE_FAULT => (libc::SIGSEGV, if error & 1 == 0 { 1 } else { 2 }, greg(REG_CR2)?),
        GENERAL_PROTECTION => (libc::SIGSEGV, 0x80, 0),
        DIVIDE_ERROR => (libc::SIGFPE, 1, greg(16)?),
        INVALID_OPCODE => (libc::SIGILL, 2, greg(16)?),
        _ => return None,
    };
    if signo != signal {
        return None;
    }
    let mut words = [0u64; 16];
    words[0] = signo as u32 as u64;
    words[1] = code as u32 as u64;
    words[2] = address;
    Some(SigInfo::new(RawSigInfo { words }))
}

/// `(start, end, executable)` of a `/proc/PID/maps` line.
fn mapping(line: &str) -> Option<(u64, u64, bool)> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?;
    Some((u64::from_str_radix(start, 16).ok()?, u64::from_str_radix(end, 16).ok()?, perms.contains('x')))
}
