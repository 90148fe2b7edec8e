//! crashwatch and tini side by side, as tini's own test suite (krallin/tini
//! `test/`) runs tini: as PID 1 of a new PID namespace (`unshare --pid
//! --fork --mount-proc`, as in a container) and as a subreaper. Each test
//! runs the same program under both and expects the same facts, except
//! where crashwatch differs on purpose (the README says where).
#![allow(dead_code)] // Each test binary uses its own subset.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{LIMIT, Lines, wait_output};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    Crashwatch,
    Tini,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// PID 1 of a new PID namespace.
    Pid1,
    /// `--subreaper` / `tini -s`.
    Subreaper,
    /// Neither: orphans go to whoever is above.
    Plain,
}

/// Every supervisor under test in the places both support.
pub const BOTH: [(Who, Place); 4] = [
    (Who::Crashwatch, Place::Pid1),
    (Who::Crashwatch, Place::Subreaper),
    (Who::Tini, Place::Pid1),
    (Who::Tini, Place::Subreaper),
];

/// How to run one program under one supervisor.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub who: Who,
    pub place: Place,
    /// `--signal-group` / `tini -g`.
    pub group: bool,
}

impl Setup {
    pub fn new((who, place): (Who, Place)) -> Setup {
        Setup { who, place, group: false }
    }

    /// The command that runs `program` (and its arguments) under this
    /// supervisor, its reports kept in `spool`.
    pub fn command(&self, spool: &Path, program: &[&str]) -> Command {
        self.command_after(&[], spool, program)
    }

    /// [`Setup::command`], started through `before` (a program that execs
    /// the rest of its arguments).
    pub fn command_after(&self, before: &[&str], spool: &Path, program: &[&str]) -> Command {
        let mut argv: Vec<&str> = before.to_vec();
        if self.place == Place::Pid1 {
            argv.extend(["unshare", "--pid", "--fork", "--mount-proc"]);
        }
        argv.push(self.supervisor());
        match self.who {
            Who::Crashwatch => {
                argv.push("run");
                if self.place == Place::Subreaper {
                    argv.push("--subreaper");
                }
                if self.group {
                    argv.push("--signal-group");
                }
            }
            Who::Tini => {
                if self.place == Place::Subreaper {
                    argv.push("-s");
                }
                if self.group {
                    argv.push("-g");
                }
            }
        }
        argv.push("--");
        argv.extend(program);
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..]);
        cmd.env("CRASHWATCH_SPOOL_DIR", spool).env_remove("CRASHWATCH_LOG").env_remove("SENTRY_DSN");
        cmd
    }

    fn supervisor(&self) -> &'static str {
        match self.who {
            Who::Crashwatch => env!("CARGO_BIN_EXE_crashwatch"),
            Who::Tini => "tini",
        }
    }

    /// Starts `program` and waits for its line `ready`.
    pub fn start(&self, spool: &Path, program: &[&str]) -> Running {
        start(*self, &mut self.command(spool, program))
    }
}

/// Starts `cmd`, made by `setup` ([`Setup::command`] or
/// [`Setup::command_after`] a program that execs the rest), and waits for
/// the line `ready`.
pub fn start(setup: Setup, cmd: &mut Command) -> Running {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = Lines::new(child.stdout.take().unwrap());
    lines.wait_for("ready", LIMIT);
    let supervisor = match setup.place {
        // unshare's one child.
        Place::Pid1 => one_child(child.id() as i32),
        _ => child.id() as i32,
    };
    Running { setup, child, lines, supervisor }
}

/// A program running under a supervisor, ready.
pub struct Running {
    pub setup: Setup,
    child: Child,
    pub lines: Lines,
    /// crashwatch's or tini's pid, as this test sees it.
    pub supervisor: i32,
}

impl Running {
    /// The supervised program's pid, as this test sees it.
    pub fn program(&self) -> i32 {
        one_child(self.supervisor)
    }

    /// Sends `signal` to the supervisor.
    pub fn signal(&self, signal: i32) {
        kill(self.supervisor, signal);
    }

    /// Waits for the end; stdout is what came after `ready`.
    pub fn finish(self) -> (Output, Vec<String>) {
        let out = wait_output(self.child, LIMIT);
        (out, self.lines.rest())
    }
}

/// Sends signal number `signal` to `pid` with kill(1), as an operator
/// would (nix's `kill` takes no real-time signal).
pub fn kill(pid: i32, signal: i32) {
    let status = Command::new("kill").args(["-s", &signal.to_string(), &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -s {signal} {pid} failed");
}

/// The children of every thread of `pid` (crashwatch forks on its tracer
/// thread, so the main thread's list is not enough).
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut all = Vec::new();
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        all.extend(text.split_whitespace().map(|p| p.parse::<i32>().unwrap()));
    }
    all.sort_unstable();
    all
}

/// The one child of `pid`, waited for.
fn one_child(pid: i32) -> i32 {
    let mut found = Vec::new();
    wait_until(&format!("a child of {pid}"), || {
        found = children(pid);
        found.len() == 1
    });
    found[0]
}

/// The state letter of process `pid` (`S`, `T`, `t`…), `None` once gone.
pub fn state(pid: i32) -> Option<char> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text[text.rfind(')')? + 1..].trim_start().chars().next()
}

/// The signals pending for the whole of process `pid` (`ShdPnd`).
pub fn shared_pending(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status.lines().find_map(|l| l.strip_prefix("ShdPnd:")).unwrap().trim();
    u64::from_str_radix(hex, 16).unwrap()
}

/// Polls `cond` (there is no event to wait on for a state in /proc) until
/// it holds, or fails the test after [`LIMIT`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "never saw {what} within {LIMIT:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The exit code, or 128+N for death by signal N, as a shell shows it.
pub fn status_code(out: &Output) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    out.status.code().or(out.status.signal().map(|s| 128 + s)).unwrap()
}
