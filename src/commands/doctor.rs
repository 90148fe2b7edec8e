//! `crashwatch doctor`: can crashwatch do its job on this machine? Each check
//! is one line, `OK`, `WARN` or `FAIL`, with what to do about anything that
//! is not OK. Checks try the real thing (trace a real child, write a real
//! file) rather than guess from settings; the settings are read to explain a
//! failure.

use std::fmt::Write as _;
use std::process::{Command, Stdio};

use nix::sys::ptrace;
use nix::unistd::Pid;

use crate::commands::Failure;
use crate::spool::Spool;
use crate::sys;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Ok,
    Warn,
    Fail,
}

struct Check {
    verdict: Verdict,
    name: &'static str,
    text: String,
}

pub fn doctor(spool: &Spool) -> Result<i32, Failure> {
    let checks = [check_ptrace(), check_spool(spool)];
    let mut out = String::new();
    for c in &checks {
        let tag = match c.verdict {
            Verdict::Ok => "OK  ",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        let _ = writeln!(out, "{tag}  {:<7} {}", c.name, c.text);
    }
    print!("{out}");
    let worst = checks.iter().map(|c| c.verdict).max().unwrap_or(Verdict::Ok);
    Ok(if worst == Verdict::Fail { 1 } else { 0 })
}

/// Seizes a real child and interrupts it, exactly as `crashwatch run` does.
fn check_ptrace() -> Check {
    let name = "ptrace";
    let context = ptrace_context();
    let mut child = match Command::new("sleep").arg("30").stdin(Stdio::null()).spawn() {
        Ok(child) => child,
        Err(e) => {
            return Check {
                verdict: Verdict::Warn,
                name,
                text: format!("could not start `sleep` to test tracing ({e}); {context}"),
            };
        }
    };
    let pid = Pid::from_raw(child.id() as i32);
    let result = ptrace::seize(pid, ptrace::Options::PTRACE_O_EXITKILL)
        .and_then(|()| ptrace::interrupt(pid))
        .map_err(std::io::Error::from)
        .and_then(|()| sys::ptrace::waitpid(pid.as_raw(), libc::__WALL).map(|_| ()));
    let _ = child.kill();
    let _ = child.wait();
    match result {
        Ok(()) => Check {
            verdict: Verdict::Ok,
            name,
            text: format!("a child can be traced, so crashes can be captured as minidumps ({context})"),
        },
        Err(e) => Check {
            verdict: Verdict::Fail,
            name,
            text: format!(
                "tracing a child failed: {e} ({context}). Without ptrace crashwatch records only exit statuses and \
                 logs (run with --no-ptrace to say so); to allow it, lower kernel.yama.ptrace_scope to 1 or \
                 less, grant CAP_SYS_PTRACE, or allow ptrace in the container's seccomp profile"
            ),
        },
    }
}

/// The capability's bit number (linux/capability.h), which libc does not export.
const CAP_SYS_PTRACE: u32 = 19;

/// What the kernel's settings say about tracing, to explain a result.
fn ptrace_context() -> String {
    let mut parts = Vec::new();
    match std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope") {
        Ok(scope) => {
            let scope = scope.trim();
            let meaning = match scope {
                "0" => "classic",
                "1" => "descendants only, which is all crashwatch needs",
                "2" => "CAP_SYS_PTRACE needed",
                "3" => "no tracing at all",
                _ => "unknown",
            };
            parts.push(format!("Yama ptrace_scope {scope}: {meaning}"));
        }
        Err(_) => parts.push("no Yama LSM".to_string()),
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).map(str::to_owned);
        match field("Seccomp:").as_deref() {
            Some("0") | None => {}
            Some("1") => parts.push("seccomp strict mode".into()),
            Some(_) => parts.push("a seccomp filter is active".into()),
        }
        if let Some(caps) = field("CapEff:").and_then(|c| u64::from_str_radix(&c, 16).ok()) {
            let has = caps & (1 << CAP_SYS_PTRACE) != 0;
            parts.push(format!("CAP_SYS_PTRACE {}", if has { "held" } else { "not held" }));
        }
    }
    parts.join(", ")
}

/// Creates the spool and writes a file in it.
fn check_spool(spool: &Spool) -> Check {
    let name = "spool";
    let root = spool.root();
    let probe = root.join(".doctor-probe");
    let result = spool
        .create()
        .map_err(|e| crate::errors::Chain(&e).to_string())
        .and_then(|()| crate::spool::write_atomic(&probe, b"ok").map_err(|e| crate::errors::Chain(&e).to_string()));
    let _ = std::fs::remove_file(&probe);
    match result {
        Ok(()) => Check {
            verdict: Verdict::Ok,
            name,
            text: format!("{} is writable ({} reports kept)", root.display(), count_reports(spool)),
        },
        Err(e) => Check { verdict: Verdict::Fail, name, text: format!("{e}; reports could not be kept") },
    }
}

fn count_reports(spool: &Spool) -> usize {
    spool.reports().map(|r| r.len()).unwrap_or(0)
}
