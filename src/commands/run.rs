//! `crashwatch run -- PROGRAM ARGS…`: the main job. Wires the child's
//! output to the pumps, supervises it to its end, and turns an abnormal end
//! into a report in the spool and a summary on stderr.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use crate::cli::RunArgs;
use crate::commands::Failure;
use crate::config::RunConfig;
use crate::errors::Chain;
use crate::logs::{self, Console, Pumps, Ring};
use crate::report::{self, CrashReport, Ending, Kind};
use crate::spool::Spool;
use crate::supervise::{self, ChildStatus, Prepared, Spec, SuperviseError};
use crate::sys;

/// How long to wait, once the child has ended, for its pipes to reach EOF.
/// Only a descendant that inherited them can hold them open that long.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// How many of the last lines the summary on stderr repeats.
const SUMMARY_LINES: usize = 10;

pub fn run(args: RunArgs, spool_dir: Option<PathBuf>) -> Result<i32, Failure> {
    let config = RunConfig::new(args, spool_dir).map_err(|e| Failure::new(2, e))?;
    let spool = Spool::at(&config.spool_dir);
    let spool = match spool.create() {
        Ok(()) => Some(spool),
        Err(e) => {
            // The program must run even when its reports cannot be kept.
            tracing::warn!("{}; reports of this run will not be kept", Chain(&e));
            None
        }
    };
    if config.dsn.is_some() {
        tracing::debug!("a DSN is set; delivery to Sentry is not built yet, reports stay in the spool");
    }
    if config.subreaper || nix::unistd::getpid().as_raw() == 1 {
        if let Err(e) = supervise::become_subreaper() {
            tracing::warn!("failed to become a subreaper, orphans of the child go to init: {e}");
        }
    }

    let prepared = Prepared::new(&config.command, &config.env).map_err(|e| Failure::new(e.exit_code(), e))?;
    let exe = prepared.path.clone();
    let (stdout_read, stdout_write) = if config.pty { pty_pair() } else { pipe() }.map_err(|e| Failure::new(125, e))?;
    let (stderr_read, stderr_write) = pipe().map_err(|e| Failure::new(125, e))?;
    let ring = Arc::new(Mutex::new(Ring::new(config.ring)));
    let mut pumps = Pumps::start(stdout_read, stderr_read, ring)
        .context("failed to start the threads that read the child's output")
        .map_err(|e| Failure::new(125, e))?;

    let spec = Spec {
        prepared,
        stdout: stdout_write,
        stderr: stderr_write,
        take_terminal: true,
        signal_group: config.signal_group,
    };
    let finished = supervise::supervise(spec).map_err(|e| match e {
        SuperviseError::Spawn(e) => Failure::new(e.exit_code(), e),
        e => Failure::new(125, e),
    })?;

    // The child is gone; its last lines may still be in the pipes.
    let complete = pumps.drain(DRAIN_LIMIT);
    if !complete {
        tracing::warn!(
            "a descendant of the child still holds its output open; taking the last lines without waiting for it"
        );
    }
    if finished.status.is_abnormal() {
        let argv: Vec<String> = config.command.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let report = CrashReport::new(Ending {
            argv: &argv,
            exe,
            finished,
            log_tail: &pumps.snapshot(),
            log_tail_complete: complete,
            release: config.release.clone(),
            environment: config.environment.clone(),
        });
        let saved = spool.as_ref().map(|spool| spool.save(&report));
        summarize(&report, saved);
    }
    Ok(finished.status.exit_code())
}

fn pipe() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = sys::pipe_cloexec().context("failed to create a pipe for the child's output")?;
    sys::grow_pipe(read.as_fd(), logs::READ_SIZE as i32);
    Ok((read, write))
}

/// A pseudo-terminal for the child's stdout: the master (ours, to read) and
/// the slave (the child's). Raw mode, so the bytes pass unchanged (no
/// `\n` → `\r\n`).
fn pty_pair() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use nix::sys::termios;
    let pty = nix::pty::openpty(None, None).context("failed to open a pseudo-terminal for --pty")?;
    let mut attrs = termios::tcgetattr(&pty.slave).context("failed to read the pseudo-terminal's settings")?;
    termios::cfmakeraw(&mut attrs);
    termios::tcsetattr(&pty.slave, termios::SetArg::TCSANOW, &attrs)
        .context("failed to set the pseudo-terminal to raw mode")?;
    for fd in [&pty.master, &pty.slave] {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).context("failed to mark the pseudo-terminal close-on-exec")?;
    }
    Ok((pty.master, pty.slave))
}

/// The few lines a person at the terminal (or in the journal) needs.
fn summarize(report: &CrashReport, saved: Option<Result<PathBuf, crate::spool::SpoolError>>) {
    let verb = if matches!(report.status, ChildStatus::Signaled { .. }) { "was " } else { "" };
    let mut text = format!(
        "{} (pid {}) {verb}{} after {}",
        report.program_name(),
        report.program.pid,
        report.status,
        report::human_duration(report.duration())
    );
    // An orderly stop needs one line; a crash gets the last lines and where
    // its report is.
    let stopped = report.kind == Kind::Stopped;
    if let Some(signal) = report.stop_requested.filter(|_| stopped) {
        text.push_str(&format!(" (stop requested by {})", crate::signals::name(signal)));
    }
    text.push('\n');
    if !report.log_tail.is_empty() && !stopped {
        let shown = report.log_tail.len().min(SUMMARY_LINES);
        text.push_str(&format!("last {shown} lines of output:\n"));
        text.push_str(&report.render_log_tail(SUMMARY_LINES));
    }
    match saved {
        Some(Ok(_)) if stopped => {}
        Some(Ok(dir)) => text.push_str(&format!(
            "report {} saved in {}; `crashwatch show {}` prints it\n",
            report.short_id(),
            dir.display(),
            report.short_id()
        )),
        Some(Err(e)) => text.push_str(&format!("error: the report could not be saved: {}\n", Chain(&e))),
        None => text.push_str("the report was not saved: the spool directory is unusable\n"),
    }
    let prefixed: String = text.lines().map(|l| format!("crashwatch: {l}\n")).collect();
    Console::get().own_lines(prefixed.as_bytes());
}
