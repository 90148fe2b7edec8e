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
//! The frame's layout is the architecture's (`sys::arch::sigframe`).

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::process::siginfo::SigInfo;
use crate::sys::arch::sigframe::{self, GREGS, RESTORE_RT, SIGINFO};
use crate::sys::arch::{Regs, stack_pointer};
use crate::sys::ptrace::RawSigInfo;

/// How far above the stack pointer the signal frame is looked for: the
/// handler's own frames lie in between. An alternate signal stack is
/// usually 8 to 64 KiB.
const SEARCH: u64 = 64 << 10;

/// The interrupted fault, when thread state `regs` is inside a handler
/// running on an alternate stack of process `pid`.
pub(super) struct Handled {
    pub regs: Regs,
    pub info: SigInfo,
}

/// Looks for the signal frame above the stack pointer. `None` unless the frame is
/// there, the interrupted stack pointer lies outside the stack being run
/// on, and the interrupted code took the fault that raises `signal`.
pub(super) fn find(pid: i32, signal: i32, regs: &Regs) -> Option<Handled> {
    let sp = stack_pointer(regs);
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let mappings: Vec<(u64, u64, bool)> = maps.lines().filter_map(mapping).collect();
    let in_mapping = |address: u64| mappings.iter().find(|(start, end, _)| (*start..*end).contains(&address));
    let &(_, stack_end, _) = in_mapping(sp)?;
    let mem = File::open(format!("/proc/{pid}/mem")).ok()?;
    let read = |address: u64, buffer: &mut [u8]| mem.read_exact_at(buffer, address).ok();
    let word = |address: u64| {
        let mut bytes = [0u8; 8];
        read(address, &mut bytes).map(|()| u64::from_ne_bytes(bytes))
    };

    let top = stack_end.min(sp.saturating_add(SEARCH));
    let mut stack = vec![0u8; usize::try_from(top.checked_sub(sp)?).ok()?];
    read(sp, &mut stack)?;
    let frame = stack.chunks_exact(8).enumerate().find_map(|(i, chunk)| {
        let candidate = u64::from_ne_bytes(chunk.try_into().ok()?);
        in_mapping(candidate).filter(|(_, _, executable)| *executable)?;
        let mut code = [0u8; RESTORE_RT.len()];
        read(candidate, &mut code)?;
        (code == RESTORE_RT).then(|| sp + 8 * i as u64)
    })?;

    let greg = |index: u64| word(frame + GREGS + 8 * index);
    let interrupted_sp = greg(sigframe::STACK_POINTER)?;
    // Same stack: the unwinder crosses the signal frame by itself.
    if in_mapping(interrupted_sp).is_some_and(|(start, end, _)| (*start..*end).contains(&sp)) {
        return None;
    }
    let info = interrupted_siginfo(signal, frame, &word, &greg)?;
    let interrupted = sigframe::interrupted_regs(regs, greg)?;
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
    let (signo, code, address) = sigframe::fault_of(greg)?;
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
