//! Safe reading of a raw `siginfo_t` (x86_64 / 64-bit Linux layout).
//!
//! The kernel's siginfo is a tagged union whose active member depends on the
//! signal *and* on `si_code`: a SIGSEGV raised by a fault (`si_code > 0`)
//! carries `si_addr`, the same SIGSEGV sent with `kill` (`si_code <= 0`)
//! carries the sender's pid and uid at the same offset. Reading the wrong
//! member gives plausible-looking garbage, so every accessor here checks
//! which member is live before returning it.

use crate::sys::ptrace::RawSigInfo;

/// `si_code` value of signals the kernel generated for its own reasons
/// (e.g. a general-protection fault); no meaningful address is attached.
pub const SI_KERNEL: i32 = 0x80;

/// A decoded view of a `siginfo_t`.
#[derive(Clone, Copy, Debug)]
pub struct SigInfo {
    raw: RawSigInfo,
}

impl SigInfo {
    /// Wraps raw bytes obtained from `PTRACE_GETSIGINFO`.
    pub fn new(raw: RawSigInfo) -> Self {
        Self { raw }
    }

    /// The raw bytes, e.g. to re-queue the signal with its original siginfo.
    pub fn raw(&self) -> &RawSigInfo {
        &self.raw
    }

    fn bytes(&self) -> [u8; 128] {
        let mut out = [0u8; 128];
        for (chunk, word) in out.chunks_exact_mut(8).zip(self.raw.words.iter()) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        out
    }

    fn i32_at(&self, offset: usize) -> i32 {
        let b = self.bytes();
        i32::from_ne_bytes([b[offset], b[offset + 1], b[offset + 2], b[offset + 3]])
    }

    fn u64_at(&self, offset: usize) -> u64 {
        self.raw.words[offset / 8]
    }

    /// `si_signo`.
    pub fn signo(&self) -> i32 {
        self.i32_at(0)
    }

    /// `si_errno`.
    pub fn errno(&self) -> i32 {
        self.i32_at(4)
    }

    /// `si_code`: > 0 kernel-generated with a signal-specific reason,
    /// `SI_USER` (0) from `kill`, < 0 from user space (`SI_TKILL`, `SI_QUEUE`…).
    pub fn code(&self) -> i32 {
        self.i32_at(8)
    }

    /// True if the kernel raised this signal because of what the thread did
    /// (a fault, a trap, a seccomp filter), as opposed to someone sending it.
    pub fn is_synchronous_fault(&self) -> bool {
        let code = self.code();
        code > 0
            && code != SI_KERNEL
            && matches!(
                self.signo(),
                libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE | libc::SIGTRAP | libc::SIGSYS
            )
    }

    /// The faulting address (`si_addr`; for SIGSYS the `si_call_addr` of the
    /// trapped syscall), when the signal is a fault that carries one.
    pub fn fault_addr(&self) -> Option<u64> {
        self.is_synchronous_fault().then(|| self.u64_at(16))
    }

    /// The sender's pid and uid, for signals sent with `kill`, `tgkill`,
    /// `sigqueue` and friends (`si_code <= 0`).
    pub fn sender(&self) -> Option<(i32, u32)> {
        (self.code() <= 0).then(|| (self.i32_at(16), self.i32_at(20) as u32))
    }

    /// For SIGSYS raised by seccomp: the syscall number and audit arch.
    pub fn seccomp_syscall(&self) -> Option<(i32, u32)> {
        (self.signo() == libc::SIGSYS && self.code() > 0 && self.code() != SI_KERNEL)
            .then(|| (self.i32_at(24), self.i32_at(28) as u32))
    }

    /// The `sigval` payload (`si_ptr`/`si_int`) of a queued signal
    /// (`SI_QUEUE`, POSIX timers, message queues).
    pub fn value(&self) -> Option<u64> {
        matches!(self.code(), libc::SI_QUEUE | libc::SI_TIMER | libc::SI_MESGQ).then(|| self.u64_at(24))
    }

    /// Whether `rt_tgsigqueueinfo` from another process may re-send this exact
    /// siginfo: the kernel forbids forging kernel-generated (`si_code >= 0`)
    /// and `tkill` (`SI_TKILL`) siginfo.
    pub fn can_requeue_verbatim(&self) -> bool {
        self.code() < 0 && self.code() != libc::SI_TKILL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(signo: i32, code: i32, w2: u64, w3: u64) -> SigInfo {
        let mut words = [0u64; 16];
        words[0] = signo as u32 as u64; // si_errno (high half) = 0
        words[1] = code as u32 as u64;
        words[2] = w2;
        words[3] = w3;
        SigInfo::new(RawSigInfo { words })
    }

    #[test]
    fn segv_fault_has_address() {
        let info = make(libc::SIGSEGV, 1 /* SEGV_MAPERR */, 0x28, 0);
        assert_eq!(info.signo(), libc::SIGSEGV);
        assert_eq!(info.code(), 1);
        assert_eq!(info.fault_addr(), Some(0x28));
        assert_eq!(info.sender(), None);
    }

    #[test]
    fn killed_segv_has_sender_not_address() {
        // kill(pid, SIGSEGV) from pid 4242, uid 1000.
        let info = make(libc::SIGSEGV, 0, (1000u64 << 32) | 4242, 0);
        assert_eq!(info.fault_addr(), None);
        assert_eq!(info.sender(), Some((4242, 1000)));
    }

    #[test]
    fn si_kernel_has_no_address() {
        let info = make(libc::SIGSEGV, SI_KERNEL, 0, 0);
        assert_eq!(info.fault_addr(), None);
    }

    #[test]
    fn seccomp_sigsys_reports_syscall() {
        // si_call_addr, then si_syscall = 39 (getpid), si_arch = AUDIT_ARCH_X86_64.
        let info = make(libc::SIGSYS, 1, 0x7f00_0000_1234, (0xc000_003eu64 << 32) | 39);
        assert_eq!(info.fault_addr(), Some(0x7f00_0000_1234));
        assert_eq!(info.seccomp_syscall(), Some((39, 0xc000_003e)));
    }

    #[test]
    fn queued_rt_signal_keeps_value_and_can_be_requeued() {
        let rt = libc::SIGRTMIN() + 3;
        let info = make(rt, libc::SI_QUEUE, 77, 0xdead_beef);
        assert_eq!(info.value(), Some(0xdead_beef));
        assert!(info.can_requeue_verbatim());
        let tkill = make(libc::SIGUSR1, libc::SI_TKILL, 77, 0);
        assert!(!tkill.can_requeue_verbatim());
        assert_eq!(tkill.value(), None);
    }
}
