//! Unwinding through a signal handler's frame (x86_64 Linux).
//!
//! A handler that never returns (faulthandler, the JVM's crash handler,
//! any handler that ends in `abort` or re-raises the signal) leaves on the
//! stack a call from the kernel's signal frame: its return address is
//! glibc's `__restore_rt`, and the registers of the interrupted code are in
//! the `ucontext_t` the kernel pushed. glibc describes that frame in
//! `.eh_frame` with DWARF expressions, which the unwinder does not evaluate,
//! so the stack used to end there, just above the code that faulted. Here
//! the trampoline is recognised by its instructions (`mov $15, %rax;
//! syscall`: `rt_sigreturn`, as gdb and libunwind recognise it) and the
//! caller's registers are read from the `ucontext_t`.

use std::path::Path;

use minidump_unwind::FrameWalker;

use super::layout;

/// `mov $0xf, %rax; syscall`: glibc's `__restore_rt` (musl's is the same).
const RESTORE_RT: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];

/// Offset of `uc_mcontext.gregs` in `ucontext_t`: `uc_flags`, `uc_link`
/// and the 24-byte `stack_t` come first.
const GREGS: u64 = 40;

/// The general registers in `gregs` order (`REG_R8` = 0 … `REG_RCX` = 14),
/// then `REG_RSP` = 15 and `REG_RIP` = 16.
const REGISTERS: [&str; 15] =
    ["r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx", "rdx", "rax", "rcx"];
const RSP: u64 = 15;
const RIP: u64 = 16;

/// If the frame being walked is the signal trampoline of the module whose
/// file is `file` (first segment at `image_base`), sets the caller's
/// registers to those of the interrupted code.
pub(crate) fn unwind(file: &Path, image_base: u64, walker: &mut (dyn FrameWalker + Send)) -> Option<()> {
    // A caller frame's instruction is its return address less one.
    let return_address = walker.get_instruction().checked_add(1)?;
    let mut code = [0u8; RESTORE_RT.len()];
    layout::read_mapped(file, image_base, return_address, &mut code)?;
    if code != RESTORE_RT {
        return None;
    }
    // The handler's `ret` popped the trampoline's address: the stack
    // pointer is at the ucontext_t.
    let context = walker.get_callee_register("rsp")?;
    let greg = |index: u64| walker.get_register_at_address(context.checked_add(GREGS + 8 * index)?);
    let (rsp, rip) = (greg(RSP)?, greg(RIP)?);
    let values: Vec<Option<u64>> = (0..REGISTERS.len() as u64).map(greg).collect();
    for (name, value) in REGISTERS.iter().zip(values) {
        match value {
            Some(value) => {
                walker.set_caller_register(name, value)?;
            }
            None => walker.clear_caller_register(name),
        }
    }
    walker.set_cfa(rsp)?;
    walker.set_ra(rip)
}
