//! Signal numbers as people read them: names (`SIGSEGV`, `SIGRTMIN+3`) and
//! short descriptions, for every signal Linux can deliver.

/// Signals whose default action means the program crashed: a fault it
/// caused (or an abort it called), not a request from outside.
pub const CRASH: [i32; 7] =
    [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGABRT, libc::SIGSYS, libc::SIGTRAP];

/// Signals that ask a program to stop (systemctl stop, docker stop, ^C).
pub const STOP: [i32; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// The stop signals that also end a `--restart` loop. Not SIGHUP: many
/// servers take it as "reload" and run on, and a crash hours later must
/// still be restarted.
pub const END_RESTARTS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT];

/// Whether crashwatch passes `signal` on to its child when it receives it.
/// As tini: every signal a process can catch, real-time ones included,
/// except SIGCHLD (crashwatch's own: a child of its changed state), SIGTTIN
/// and SIGTTOU (the terminal stopping crashwatch's own reads and writes:
/// ignored) and the C library's reserved real-time signals (32 and 33 with
/// glibc). Unlike tini, the fault signals are forwarded too: one sent by
/// another process says nothing about crashwatch (README, "Signals").
pub fn is_forwarded(signal: i32) -> bool {
    let reserved = signal > 31 && signal < libc::SIGRTMIN();
    (1..=libc::SIGRTMAX()).contains(&signal)
        && !reserved
        && !matches!(signal, libc::SIGKILL | libc::SIGSTOP | libc::SIGCHLD | libc::SIGTTIN | libc::SIGTTOU)
}

/// Every signal [`is_forwarded`] says yes to, lowest first.
pub fn forwarded() -> impl Iterator<Item = i32> {
    (1..=libc::SIGRTMAX()).filter(|&s| is_forwarded(s))
}

/// The conventional name of signal `n`, e.g. `SIGSEGV` or `SIGRTMIN+2`.
pub fn name(n: i32) -> String {
    if let Some((name, _)) = known(n) {
        return name.to_string();
    }
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    if (min..=max).contains(&n) {
        return if n == min { "SIGRTMIN".into() } else { format!("SIGRTMIN+{}", n - min) };
    }
    format!("signal {n}")
}

/// A few words on what signal `n` means, e.g. "segmentation fault".
pub fn describe(n: i32) -> &'static str {
    known(n).map_or("real-time or unknown signal", |(_, what)| what)
}

/// The name of a `si_code`, which says why the kernel sent `signal`:
/// `SEGV_MAPERR` (no mapping at the address), `SI_USER` (kill(2)), …
pub fn code_name(signal: i32, code: i32) -> Option<&'static str> {
    // Codes <= 0 and SI_KERNEL mean the same for every signal.
    let generic = match code {
        0 => Some("SI_USER"),
        0x80 => Some("SI_KERNEL"),
        -1 => Some("SI_QUEUE"),
        -2 => Some("SI_TIMER"),
        -3 => Some("SI_MESGQ"),
        -4 => Some("SI_ASYNCIO"),
        -5 => Some("SI_SIGIO"),
        -6 => Some("SI_TKILL"),
        _ => None,
    };
    if generic.is_some() {
        return generic;
    }
    let names: &[&str] = match signal {
        libc::SIGSEGV => &[
            "SEGV_MAPERR",
            "SEGV_ACCERR",
            "SEGV_BNDERR",
            "SEGV_PKUERR",
            "SEGV_ACCADI",
            "SEGV_ADIDERR",
            "SEGV_ADIPERR",
            "SEGV_MTEAERR",
            "SEGV_MTESERR",
            "SEGV_CPERR",
        ],
        libc::SIGBUS => &["BUS_ADRALN", "BUS_ADRERR", "BUS_OBJERR", "BUS_MCEERR_AR", "BUS_MCEERR_AO"],
        libc::SIGILL => &[
            "ILL_ILLOPC",
            "ILL_ILLOPN",
            "ILL_ILLADR",
            "ILL_ILLTRP",
            "ILL_PRVOPC",
            "ILL_PRVREG",
            "ILL_COPROC",
            "ILL_BADSTK",
            "ILL_BADIADDR",
        ],
        libc::SIGFPE => &[
            "FPE_INTDIV",
            "FPE_INTOVF",
            "FPE_FLTDIV",
            "FPE_FLTOVF",
            "FPE_FLTUND",
            "FPE_FLTRES",
            "FPE_FLTINV",
            "FPE_FLTSUB",
            "FPE_FLTUNK",
            "FPE_CONDTRAP",
        ],
        libc::SIGTRAP => &["TRAP_BRKPT", "TRAP_TRACE", "TRAP_BRANCH", "TRAP_HWBKPT", "TRAP_UNK", "TRAP_PERF"],
        libc::SIGSYS => &["SYS_SECCOMP", "SYS_USER_DISPATCH"],
        _ => &[],
    };
    usize::try_from(code).ok().and_then(|c| c.checked_sub(1)).and_then(|i| names.get(i).copied())
}

fn known(n: i32) -> Option<(&'static str, &'static str)> {
    Some(match n {
        libc::SIGHUP => ("SIGHUP", "hangup"),
        libc::SIGINT => ("SIGINT", "interrupt"),
        libc::SIGQUIT => ("SIGQUIT", "quit"),
        libc::SIGILL => ("SIGILL", "illegal instruction"),
        libc::SIGTRAP => ("SIGTRAP", "trace/breakpoint trap"),
        libc::SIGABRT => ("SIGABRT", "aborted"),
        libc::SIGBUS => ("SIGBUS", "bus error"),
        libc::SIGFPE => ("SIGFPE", "arithmetic exception"),
        libc::SIGKILL => ("SIGKILL", "killed"),
        libc::SIGUSR1 => ("SIGUSR1", "user signal 1"),
        libc::SIGSEGV => ("SIGSEGV", "segmentation fault"),
        libc::SIGUSR2 => ("SIGUSR2", "user signal 2"),
        libc::SIGPIPE => ("SIGPIPE", "broken pipe"),
        libc::SIGALRM => ("SIGALRM", "alarm clock"),
        libc::SIGTERM => ("SIGTERM", "terminated"),
        libc::SIGSTKFLT => ("SIGSTKFLT", "stack fault"),
        libc::SIGCHLD => ("SIGCHLD", "child exited"),
        libc::SIGCONT => ("SIGCONT", "continued"),
        libc::SIGSTOP => ("SIGSTOP", "stopped (signal)"),
        libc::SIGTSTP => ("SIGTSTP", "stopped"),
        libc::SIGTTIN => ("SIGTTIN", "stopped (tty input)"),
        libc::SIGTTOU => ("SIGTTOU", "stopped (tty output)"),
        libc::SIGURG => ("SIGURG", "urgent I/O condition"),
        libc::SIGXCPU => ("SIGXCPU", "CPU time limit exceeded"),
        libc::SIGXFSZ => ("SIGXFSZ", "file size limit exceeded"),
        libc::SIGVTALRM => ("SIGVTALRM", "virtual timer expired"),
        libc::SIGPROF => ("SIGPROF", "profiling timer expired"),
        libc::SIGWINCH => ("SIGWINCH", "window changed"),
        libc::SIGIO => ("SIGIO", "I/O possible"),
        libc::SIGPWR => ("SIGPWR", "power failure"),
        libc::SIGSYS => ("SIGSYS", "bad system call"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_standard_and_realtime_signals() {
        assert_eq!(name(11), "SIGSEGV");
        assert_eq!(name(libc::SIGRTMIN()), "SIGRTMIN");
        assert_eq!(name(libc::SIGRTMIN() + 3), "SIGRTMIN+3");
        assert_eq!(name(99), "signal 99");
        assert_eq!(describe(6), "aborted");
    }

    #[test]
    fn forwards_every_catchable_signal_but_chld_ttin_ttou() {
        let all: Vec<i32> = forwarded().collect();
        // 31 standard signals less KILL, STOP, CHLD, TTIN, TTOU; then
        // SIGRTMIN..=SIGRTMAX (34..=64 with glibc).
        let realtime = (libc::SIGRTMAX() - libc::SIGRTMIN() + 1) as usize;
        assert_eq!(all.len(), 26 + realtime);
        for signal in [libc::SIGALRM, libc::SIGPWR, libc::SIGTSTP, libc::SIGCONT, libc::SIGURG, libc::SIGSEGV] {
            assert!(all.contains(&signal), "{}", name(signal));
        }
        assert!(all.contains(&(libc::SIGRTMIN() + 3)) && all.contains(&libc::SIGRTMAX()));
        for signal in [libc::SIGKILL, libc::SIGSTOP, libc::SIGCHLD, libc::SIGTTIN, libc::SIGTTOU, 32, 0, 65] {
            assert!(!is_forwarded(signal), "{signal}");
        }
    }

    #[test]
    fn names_signal_codes() {
        assert_eq!(code_name(libc::SIGSEGV, 1), Some("SEGV_MAPERR"));
        assert_eq!(code_name(libc::SIGFPE, 1), Some("FPE_INTDIV"));
        assert_eq!(code_name(libc::SIGBUS, 2), Some("BUS_ADRERR"));
        assert_eq!(code_name(libc::SIGSYS, 1), Some("SYS_SECCOMP"));
        assert_eq!(code_name(libc::SIGABRT, -6), Some("SI_TKILL"));
        assert_eq!(code_name(libc::SIGSEGV, 0x80), Some("SI_KERNEL"));
        assert_eq!(code_name(libc::SIGSEGV, 77), None);
    }
}
