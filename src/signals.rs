//! Signal numbers as people read them: names (`SIGSEGV`, `SIGRTMIN+3`) and
//! short descriptions, for every signal Linux can deliver.

/// Signals whose default action means the program crashed: a fault it
/// caused (or an abort it called), not a request from outside.
pub const CRASH: [i32; 7] =
    [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGABRT, libc::SIGSYS, libc::SIGTRAP];

/// Signals that ask a program to stop (systemctl stop, docker stop, ^C).
pub const STOP: [i32; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

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
}
