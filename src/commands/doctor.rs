//! `crashwatch doctor`: can crashwatch do its job on this machine? Each check
//! is one line, `OK`, `WARN` or `FAIL`, with what to do about anything that
//! is not OK. Checks try the real thing (trace a real child, write a real
//! file) rather than guess from settings; the settings are read to explain a
//! failure.

use std::fmt::Write as _;
use std::process::{Command, Stdio};

use nix::sys::ptrace;
use nix::unistd::Pid;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::DoctorArgs;
use crate::commands::{Failure, ran};
use crate::errors::Chain;
use crate::memory::cgroup::{MemoryCgroup, Version};
use crate::memory::kmsg::KernelLog;
use crate::memory::notify::Notifier;
use crate::memory::sampler::CHECK_INTERVAL;
use crate::sentry::Dsn;
use crate::supervise::spawn::resolve;
use crate::symbolicate::{DebugInfo, SYSTEM_DEBUG_DIR, debug_info};
use crate::sys;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Verdict {
    Ok,
    Warn,
    Fail,
}

pub(super) struct Check {
    pub verdict: Verdict,
    pub name: &'static str,
    pub text: String,
}

pub fn doctor(spool: &Path, args: &DoctorArgs) -> Result<i32, Failure> {
    let mut checks = vec![check_ptrace()];
    checks.extend(super::doctor_spool::check(spool, args));
    checks.extend([check_cgroup(), check_kernel_log()]);
    if let Some(dsn) = args.dsn.as_deref().filter(|d| !d.trim().is_empty()) {
        checks.push(check_dsn(dsn));
    }
    if let Some(program) = &args.program {
        checks.push(check_debug_info(program));
    }
    if args.dsn.as_deref().is_some_and(|d| !d.trim().is_empty()) {
        checks.push(check_sessions(args));
    }
    checks.push(check_oom_snapshot());
    let mut out = String::new();
    for c in &checks {
        let tag = match c.verdict {
            Verdict::Ok => "OK  ",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        let _ = writeln!(out, "{tag}  {:<7} {}", c.name, c.text);
    }
    super::write_stdout(out.as_bytes())?;
    let worst = checks.iter().map(|c| c.verdict).max().unwrap_or(Verdict::Ok);
    Ok(if worst == Verdict::Fail { 1 } else { 0 })
}

/// Whether runs are sent as Release Health sessions, and why not.
fn check_sessions(args: &DoctorArgs) -> Check {
    let name = "release";
    match args.release.as_deref().filter(|r| !r.is_empty()) {
        _ if args.no_sessions => Check {
            verdict: Verdict::Ok,
            name,
            text: "--no-sessions: runs are not sent as Release Health sessions".into(),
        },
        Some(release) => Check {
            verdict: Verdict::Ok,
            name,
            text: format!(
                "each run is a Release Health session of {release} (host id {})",
                crate::sentry::session::host_id()
            ),
        },
        None => Check {
            verdict: Verdict::Warn,
            name,
            text: "no release (--release or SENTRY_RELEASE): Sentry keeps sessions per release, so runs are not \
                   sent as Release Health sessions; crash reports are sent all the same"
                .into(),
        },
    }
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

/// Whether `--memory-limit` can work: makes and removes a child cgroup.
fn check_cgroup() -> Check {
    let name = "cgroup";
    let cg = match MemoryCgroup::of_process(0) {
        Ok(cg) => cg,
        Err(e) => {
            return Check {
                verdict: Verdict::Warn,
                name,
                text: format!(
                    "{}: OOM kills are told only by the kernel log, and --memory-limit cannot work",
                    Chain(&e)
                ),
            };
        }
    };
    let version = match cg.version {
        Version::V1 => "v1",
        Version::V2 => "v2",
    };
    // On v2 a cgroup counts OOM kills only where its parent gives it the
    // memory controller, and the root cgroup not at all.
    let counted = match (cg.oom_kills(), cg.version) {
        (Some(_), _) => "OOM kills are counted",
        (None, Version::V1) => "OOM kills are not counted there (no memory.oom_control)",
        (None, Version::V2) => "OOM kills are not counted there (no memory.events)",
    };
    let probe = format!("crashwatch-doctor-{}", std::process::id());
    match cg.create_child(&probe, 1 << 30) {
        Ok(child) => {
            if let Err(e) = child.remove() {
                tracing::warn!("{}", Chain(&e));
            }
            Check {
                verdict: Verdict::Ok,
                name,
                text: format!(
                    "cgroup {version} memory controller at {}: {counted}, --memory-limit works",
                    cg.dir.display()
                ),
            }
        }
        Err(e) => Check {
            verdict: Verdict::Warn,
            name,
            text: format!(
                "cgroup {version} at {}: {counted}, but --memory-limit will fail: {}",
                cg.dir.display(),
                Chain(&e)
            ),
        },
    }
}

/// How `--oom-snapshot` learns that the memory reached its point: the
/// kernel's notification armed for real, on a probe cgroup like the one
/// `--memory-limit` makes (its memory.high given back, the probe removed),
/// and on the cgroup crashwatch runs in if that has a limit (never changed).
fn check_oom_snapshot() -> Check {
    let name = "oomsnap";
    let polling = format!("a check every {} ms, which a faster spike escapes", CHECK_INTERVAL.as_millis());
    let cg = match MemoryCgroup::of_process(0) {
        Ok(cg) => cg,
        Err(e) => {
            return Check { verdict: Verdict::Warn, name, text: format!("--oom-snapshot cannot work: {}", Chain(&e)) };
        }
    };
    const PROBE_LIMIT: u64 = 1 << 30;
    let probe = format!("crashwatch-doctor-oom-{}", std::process::id());
    let limited = match cg.create_child(&probe, PROBE_LIMIT) {
        Ok(child) => {
            let armed = Notifier::arm(&child.cgroup, PROBE_LIMIT / 2, true).map(|n| n.mechanism().describe());
            if let Err(e) = child.remove() {
                tracing::warn!("{}", Chain(&e));
            }
            armed.map_err(|e| Chain(&e).to_string())
        }
        Err(e) => Err(format!("--memory-limit fails here ({})", Chain(&e))),
    };
    let own = cg.limit().map(|limit| match Notifier::arm(&cg, limit / 2, false) {
        Ok(notifier) => format!("in {}, with its own limit: {}", cg.dir.display(), notifier.mechanism().describe()),
        Err(e) => format!("in {}, with its own limit: {polling} ({})", cg.dir.display(), Chain(&e)),
    });
    let own = own.map(|own| format!("; {own}")).unwrap_or_default();
    match limited {
        Ok(mechanism) => {
            let throttle = if cg.version == Version::V2 {
                ", which holds the child at the point (memory.high) until its snapshot is taken"
            } else {
                ""
            };
            Check {
                verdict: Verdict::Ok,
                name,
                text: format!("--oom-snapshot with --memory-limit is woken by the kernel: {mechanism}{throttle}{own}"),
            }
        }
        Err(why) => Check {
            verdict: Verdict::Warn,
            name,
            text: format!("--oom-snapshot with --memory-limit relies on {polling}: {why}{own}"),
        },
    }
}

fn check_kernel_log() -> Check {
    match KernelLog::open_at_end() {
        Some(_) => Check {
            verdict: Verdict::Ok,
            name: "kmsg",
            text: "the kernel log is readable: an OOM kill is confirmed by the kernel's own line".into(),
        },
        None => Check {
            verdict: Verdict::Warn,
            name: "kmsg",
            text: "the kernel log (/dev/kmsg) is not readable (kernel.dmesg_restrict, or not root): OOM kills \
                   rest on the cgroup counter alone"
                .into(),
        },
    }
}

/// The DSN parses and its Relay answers HTTP (any status: a GET on the
/// envelope endpoint is refused, which proves it is there).
fn check_dsn(text: &str) -> Check {
    let name = "dsn";
    let dsn: Dsn = match text.trim().parse() {
        Ok(dsn) => dsn,
        Err(e) => return Check { verdict: Verdict::Fail, name, text: format!("not valid: {}", Chain(&e)) },
    };
    let url = dsn.envelope_url();
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|runtime| {
            runtime.block_on(async {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .map_err(|e| Chain(&e).to_string())?;
                client.get(url.as_str()).send().await.map(|r| r.status().as_u16()).map_err(|e| Chain(&e).to_string())
            })
        });
    match answer {
        Ok(status) => Check {
            verdict: Verdict::Ok,
            name,
            text: format!("{dsn} is valid and its Relay answers (HTTP {status}); `crashwatch test` sends a test event"),
        },
        Err(e) => Check {
            verdict: Verdict::Fail,
            name,
            text: format!("{dsn} is valid, but {url} cannot be reached: {e}; reports will wait in the spool"),
        },
    }
}

fn check_debug_info(program: &std::ffi::OsStr) -> Check {
    let name = "symbols";
    let path = match resolve(program, std::env::var_os("PATH").as_deref()) {
        Ok(path) => path,
        Err(e) => return Check { verdict: Verdict::Fail, name, text: Chain(&e).to_string() },
    };
    // A script (a shim such as pyenv's `python3`): what matters is the
    // program it runs.
    let (path, via) = if ran::is_script(&path) {
        match ran::programs_run_by(&path) {
            Ok(ran) => {
                let program = ran.last().cloned().unwrap_or_else(|| path.clone());
                let via = format!("{} is a script that runs {}: ", path.display(), program.display());
                (program, via)
            }
            Err(e) => {
                return Check {
                    verdict: Verdict::Warn,
                    name,
                    text: format!("{} is a script; which program it runs is not known: {e}", path.display()),
                };
            }
        }
    } else {
        (path, String::new())
    };
    let shown = path.display();
    let (verdict, text) = match debug_info(&path, &[PathBuf::from(SYSTEM_DEBUG_DIR)]) {
        Ok(DebugInfo::Embedded) => {
            (Verdict::Ok, format!("{shown} has DWARF: its frames get functions, files and lines"))
        }
        Ok(DebugInfo::Separate(file)) => {
            (Verdict::Ok, format!("{shown} has its debug information in {}", file.display()))
        }
        Ok(DebugInfo::SymbolsOnly) => (
            Verdict::Warn,
            format!(
                "{shown} has function names but no lines: build with -g (debug = \"line-tables-only\" for Rust), \
                 or install its debug file under /usr/lib/debug/.build-id"
            ),
        ),
        Ok(DebugInfo::MiniDebugInfo) => (
            Verdict::Warn,
            format!(
                "{shown} has function names (MiniDebugInfo) but no lines: install its debug file under \
                 /usr/lib/debug/.build-id"
            ),
        ),
        Ok(DebugInfo::DynsymOnly) => (
            Verdict::Warn,
            format!(
                "{shown} is stripped to its exported symbols (.dynsym): frames in its other functions will be \
                 addresses only; install its debug file under /usr/lib/debug/.build-id"
            ),
        ),
        Ok(DebugInfo::Stripped) => {
            (Verdict::Warn, format!("{shown} is stripped: its frames will be addresses only; keep its debug file"))
        }
        Err(e) => (Verdict::Fail, e.describe(&path)),
    };
    Check { verdict, name, text: format!("{via}{text}") }
}
