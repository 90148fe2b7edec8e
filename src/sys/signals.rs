//! crashwatch's own signal state: what it inherited, blocking and waiting
//! for the signals it collects, and giving the child back what was
//! inherited.
//!
//! The mask and the ignored signals crashwatch was started with are read by
//! a constructor in `.init_array`, which the C library runs before `main`:
//! before the Rust runtime sets SIGPIPE to `SIG_IGN` and before crashwatch
//! blocks anything. The child gets exactly those back between fork and
//! exec ([`restore_in_child`]), as it would have had crashwatch not been
//! there (`nohup`'s ignored SIGHUP, a parent's blocked SIGTERM).
#![allow(unsafe_code)] // sigaction, sigprocmask, sigwaitinfo and a constructor: see the module doc.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The highest signal number Linux has (SIGRTMAX on every architecture
/// crashwatch runs on).
const MAX_SIGNAL: i32 = 64;

/// A set of signals 1–64: bit `n-1` for signal `n`, the layout of the
/// masks in `/proc/PID/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalSet(pub u64);

impl SignalSet {
    pub fn of(signals: impl IntoIterator<Item = i32>) -> SignalSet {
        signals.into_iter().fold(SignalSet(0), |set, s| set.with(s))
    }

    /// `self` plus `signal` (unchanged for a number outside 1–64).
    pub fn with(self, signal: i32) -> SignalSet {
        match bit(signal) {
            Some(bit) => SignalSet(self.0 | bit),
            None => self,
        }
    }

    pub fn contains(self, signal: i32) -> bool {
        bit(signal).is_some_and(|bit| self.0 & bit != 0)
    }

    pub fn signals(self) -> impl Iterator<Item = i32> {
        (1..=MAX_SIGNAL).filter(move |&s| self.contains(s))
    }

    fn to_sigset(self) -> libc::sigset_t {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it and
        // sigaddset only fails for numbers the C library reserves, which
        // are then left out.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in self.signals() {
                libc::sigaddset(&mut set, signal);
            }
            set
        }
    }

    fn from_sigset(set: &libc::sigset_t) -> SignalSet {
        // SAFETY: sigismember reads an initialised set.
        SignalSet::of((1..=MAX_SIGNAL).filter(|&s| unsafe { libc::sigismember(set, s) } == 1))
    }
}

fn bit(signal: i32) -> Option<u64> {
    (1..=MAX_SIGNAL).contains(&signal).then(|| 1u64 << (signal - 1))
}

/// The signal state a process hands on to what it execs: its blocked mask
/// and the signals it ignores (handlers do not survive exec).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inherited {
    pub blocked: SignalSet,
    pub ignored: SignalSet,
}

static INHERITED_BLOCKED: AtomicU64 = AtomicU64::new(0);
static INHERITED_IGNORED: AtomicU64 = AtomicU64::new(0);
static INHERITED_READ: AtomicBool = AtomicBool::new(false);

/// Reads the signal state crashwatch was started with. Runs from
/// `.init_array`, single-threaded, before the Rust runtime's own setup.
extern "C" fn read_inherited() {
    // SAFETY: queries only (null new-set and new-action pointers), into
    // zeroed plain-data out-parameters.
    unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        if libc::sigprocmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask) == 0 {
            INHERITED_BLOCKED.store(SignalSet::from_sigset(&mask).0, Ordering::Relaxed);
        }
        let mut ignored = SignalSet(0);
        for signal in 1..=MAX_SIGNAL {
            if kernel_sigaction(signal, None) == Some(libc::SIG_IGN) {
                ignored = ignored.with(signal);
            }
        }
        INHERITED_IGNORED.store(ignored.0, Ordering::Relaxed);
    }
    INHERITED_READ.store(true, Ordering::Release);
}

#[used]
#[unsafe(link_section = ".init_array")]
static READ_INHERITED_AT_START: extern "C" fn() = read_inherited;

/// The signal state crashwatch was started with.
pub fn inherited() -> Inherited {
    // The reference keeps the constructor's object file in the link: an
    // unreferenced `#[used]` static of a library may be left out of it.
    std::hint::black_box(&READ_INHERITED_AT_START);
    if !INHERITED_READ.load(Ordering::Acquire) {
        // Only if the C library ran no constructor: read it now, when the
        // runtime's SIGPIPE has replaced the inherited one.
        read_inherited();
    }
    Inherited {
        blocked: SignalSet(INHERITED_BLOCKED.load(Ordering::Relaxed)),
        ignored: SignalSet(INHERITED_IGNORED.load(Ordering::Relaxed)),
    }
}

/// Adds `set` to the calling thread's blocked mask; threads it starts from
/// then on inherit it.
pub fn block(set: SignalSet) -> io::Result<()> {
    let set = set.to_sigset();
    // SAFETY: a valid set; the old mask is not asked for.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// The calling thread's blocked mask.
pub fn blocked() -> io::Result<SignalSet> {
    // SAFETY: a query into a zeroed plain-data out-parameter.
    unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        let r = libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(SignalSet::from_sigset(&mask))
    }
}

/// Sets `signal` to `SIG_IGN` for the whole process.
pub fn ignore(signal: i32) -> io::Result<()> {
    // SAFETY: a zeroed sigaction with SIG_IGN and an empty mask is valid.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_IGN;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One signal taken by [`wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    pub signal: i32,
    /// `si_code`: `SI_USER` for kill(2), `SI_KERNEL` for the terminal's
    /// SIGWINCH or SIGHUP, …
    pub code: i32,
    /// The sending process for kill(2), sigqueue(3) and tgkill(2).
    pub sender: Option<libc::pid_t>,
}

/// Waits until one signal of `set` is pending for the process (or the
/// calling thread) and takes it. Every signal of `set` must be blocked in
/// every thread, or one may take it with its disposition instead.
pub fn wait(set: SignalSet) -> io::Result<Received> {
    let set = set.to_sigset();
    loop {
        // SAFETY: a valid set and a zeroed plain-data out-parameter.
        let (r, info) = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            (libc::sigwaitinfo(&set, &mut info), info)
        };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        let code = info.si_code;
        // SAFETY: si_pid is valid for the codes kill, sigqueue and tgkill
        // set (SI_USER, SI_QUEUE, SI_TKILL).
        let sender = matches!(code, libc::SI_USER | libc::SI_QUEUE | libc::SI_TKILL).then(|| unsafe { info.si_pid() });
        return Ok(Received { signal: r, code, sender });
    }
}

/// In the forked child, before exec: every signal to the disposition it
/// had when crashwatch started (`SIG_IGN` where it was ignored, else the
/// default: handlers do not survive exec anyway), then the blocked mask.
///
/// Async-signal-safe (rt_sigaction and sigprocmask only, no allocation):
/// for the child between fork and exec of a multithreaded process. Not for
/// a process that goes on running: glibc's own handlers are reset too.
pub fn restore_in_child(inherited: &Inherited) {
    for signal in 1..=MAX_SIGNAL {
        if signal != libc::SIGKILL && signal != libc::SIGSTOP {
            let handler = if inherited.ignored.contains(signal) { libc::SIG_IGN } else { libc::SIG_DFL };
            kernel_sigaction(signal, Some(handler));
        }
    }
    let mask = inherited.blocked.to_sigset();
    // SAFETY: a valid set; the old mask is not asked for.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut()) };
}

/// The kernel's `struct sigaction` on x86_64 and arm64.
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: libc::sighandler_t,
    mask: u64,
}

/// `rt_sigaction` itself, not the C library's wrapper, which refuses the
/// signals it reserves (32 and 33 with glibc) though they are inherited
/// like any other: sets `signal` to `handler` (`SIG_IGN` or `SIG_DFL`
/// only) if given, and returns the handler it had, `None` on failure.
/// Async-signal-safe.
fn kernel_sigaction(signal: i32, handler: Option<libc::sighandler_t>) -> Option<libc::sighandler_t> {
    let new = handler.map(|handler| KernelSigaction { handler, flags: 0, restorer: 0, mask: 0 });
    let new_ptr = new.as_ref().map_or(std::ptr::null(), |n| n as *const KernelSigaction);
    let mut old = KernelSigaction { handler: 0, flags: 0, restorer: 0, mask: 0 };
    // SAFETY: both pointers are to live values of the kernel's layout, or
    // null for "no change"; the sigset size is the kernel's (8 bytes). No
    // handler is installed, so no restorer is needed.
    let r = unsafe {
        libc::syscall(libc::SYS_rt_sigaction, signal, new_ptr, &mut old as *mut KernelSigaction, size_of::<u64>())
    };
    (r == 0).then_some(old.handler)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_of_signals() {
        let set = SignalSet::of([libc::SIGINT, libc::SIGSEGV, libc::SIGTTOU, 64, 0, 65]);
        // The layout of /proc/PID/status: bit n-1 for signal n.
        assert_eq!(set.0, 0x2 | 0x400 | 0x20_0000 | 1 << 63);
        assert!(set.contains(libc::SIGSEGV) && !set.contains(libc::SIGTERM) && !set.contains(0));
        assert_eq!(set.signals().collect::<Vec<_>>(), [2, 11, 22, 64]);
        assert_eq!(SignalSet::from_sigset(&set.to_sigset()), set);
    }

    #[test]
    fn the_kernels_sigaction_reads_every_signal() {
        // SIGPIPE: ignored by this binary's runtime; SIGSEGV: its handler.
        assert_eq!(kernel_sigaction(libc::SIGPIPE, None), Some(libc::SIG_IGN));
        assert!(kernel_sigaction(libc::SIGSEGV, None).is_some_and(|h| h != libc::SIG_IGN && h != libc::SIG_DFL));
        // glibc's own, which its sigaction refuses.
        assert!(kernel_sigaction(32, None).is_some());
        assert_eq!(kernel_sigaction(65, None), None);
    }

    #[test]
    fn the_inherited_state_is_read_before_the_runtime_ignores_sigpipe() {
        // cargo starts test binaries with SIGPIPE at its default (Rust's
        // Command resets it); the runtime of this binary then ignored it.
        assert!(!inherited().ignored.contains(libc::SIGPIPE));
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let ignored = status.lines().find_map(|l| l.strip_prefix("SigIgn:")).unwrap().trim();
        let now = u64::from_str_radix(ignored, 16).unwrap();
        assert!(SignalSet(now).contains(libc::SIGPIPE), "{ignored}");
    }
}
