//! `crashwatch run -- PROGRAM ARGS…`: the main job. Wires the child's
//! output to the pumps, supervises and traces it to its end, and turns an
//! abnormal end into a report in the spool and a summary on stderr.
//!
//! Crashes arrive on the tracer thread while the crashed process is dying.
//! The child's own crash is kept until the child has been reaped and its
//! pipes drained, then becomes part of its report; a descendant's crash
//! (`--follow-forks`) is reported at once, since the child may run on for
//! days.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::capture::{self, CrashCapture};
use crate::cli::RunArgs;
use crate::commands::Failure;
use crate::commands::delivery::{self, Delivery};
use crate::commands::filing::{self, Filer};
use crate::commands::hang::{self, Hangs};
use crate::commands::health::Health;
use crate::commands::oom_snapshot::OomSnapshot;
use crate::config::RunConfig;
use crate::errors::Chain;
use crate::exit;
use crate::hang::watchdog::Proxy;
use crate::logs::{self, Pumps, Ring};
use crate::memory::cgroup::MemoryCgroup;
use crate::memory::oom::OomWatch;
use crate::memory::sampler::Sampler;
use crate::metrics::{self, Metrics};
use crate::process::{ChildStatus, signals};
use crate::ptrace::TraceOptions;
use crate::report::{CrashReport, Ending, Kind};
use crate::restart::{self, Ended, Policy, StopSignals, Wait, Why};
use crate::sentry::deliver::Mode;
use crate::sentry::scrub::Scrubber;
use crate::sentry::session::Outcome;
use crate::spool::Spool;
use crate::supervise::{self, Event, Finished, Prepared, Spec};
use crate::sys;

/// How long to wait, once the child has ended, for its pipes to reach EOF.
/// Only a descendant that inherited them can hold them open that long.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// How long the crash path waits for each group of threads to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the child's memory is sampled.
const MEMORY_INTERVAL: Duration = Duration::from_secs(1);

pub fn run(args: RunArgs, spool_dir: Option<PathBuf>) -> Result<i32, Failure> {
    let config = RunConfig::new(args, spool_dir).map_err(|e| Failure::new(exit::USAGE, e))?;
    // A bad DSN stops crashwatch before the child starts, with the reason.
    let dsn = super::parse_dsn(config.dsn.as_deref())?;
    let scrubber = Scrubber::new(&config.scrub).map_err(|e| Failure::new(exit::USAGE, e))?;
    let spool = match Spool::create(&config.spool_dir) {
        Ok(spool) => Some(spool),
        Err(e) => {
            // The program must run even when its reports cannot be kept
            // (or must not be, in a spool someone else controls).
            tracing::error!("{}; the program runs, but its crashes are NOT recorded", Chain(&e));
            None
        }
    };
    let pid1 = nix::unistd::getpid().as_raw() == 1;
    let reap_orphans = pid1
        || (config.subreaper
            && supervise::become_subreaper()
                .inspect_err(|e| tracing::warn!("failed to become a subreaper, orphans of the child go to init: {e}"))
                .is_ok());
    // Before any thread is started: from here on every signal crashwatch
    // forwards is collected, none takes its default action.
    let signals = supervise::signals::take_over(reap_orphans)
        .context("failed to take over the signals to forward")
        .map_err(|e| Failure::new(exit::CANNOT_SUPERVISE, e))?;
    let metrics = Arc::new(Metrics::default());
    let options = delivery::Options {
        max_bytes: config.spool_max_bytes,
        flush_timeout: config.flush_timeout,
        send_directly: config.send_directly,
        scrubber,
        intent: delivery::Intent::of(&config),
    };
    let delivery = Arc::new(Delivery::new(dsn, spool.as_ref(), options, Arc::clone(&metrics)));
    let health = Health::new(&config, &delivery);
    let filer = Arc::new(Filer::new(spool, Arc::clone(&delivery), config.retention, config.symbolicate));
    if let Some(addr) = &config.metrics_addr {
        let pending = {
            let delivery = Arc::clone(&delivery);
            move || delivery.pending()
        };
        match metrics::serve(addr, Arc::clone(&metrics), pending) {
            Ok(bound) => tracing::info!("metrics at http://{bound}/metrics"),
            // Prometheus shows the target down; the program still runs.
            Err(e) => tracing::warn!("{}; serving no metrics", Chain(&e)),
        }
    }
    // A stop signal between two runs must end the restart loop: listen for
    // it for the whole run.
    let (mut stops, _listening): (Box<dyn Wait>, _) = match config.restart.policy {
        Policy::Never => (Box::new(NoRestart), None),
        _ => {
            let (tx, rx) = std::sync::mpsc::channel();
            let listening = signals.listen(Box::new(move |signal| tx.send(signal).is_ok()));
            (Box::new(StopSignals::new(rx)), Some(listening))
        }
    };
    // Under systemd, the child's notifications pass through crashwatch, the
    // unit's main process (see crate::hang::watchdog).
    let proxy = config.systemd.as_ref().and_then(|systemd| {
        Proxy::start(systemd)
            .inspect_err(|e| tracing::warn!("failed to proxy NOTIFY_SOCKET ({e}); the child talks to systemd directly"))
            .ok()
    });
    let shared = Shared {
        config: &config,
        proxy: proxy.as_ref(),
        filer: &filer,
        delivery: &delivery,
        reap_orphans,
        signals,
        own_cgroup: MemoryCgroup::of_process(0).inspect_err(|e| tracing::debug!("no memory cgroup: {}", Chain(e))).ok(),
        metrics: &metrics,
        health: &health,
    };
    // Reports an earlier run could not deliver (or finish: it was killed)
    // go out now, beside the child, with the summaries of crash loops whose
    // window has ended meanwhile.
    delivery.queue_due_summaries(false);
    health.queue_aggregates(&delivery, false);
    let recovery = super::recover::in_background(Arc::clone(&filer));
    delivery.close_windows_periodically();
    let ran = restart::run_loop(&config.restart, &mut *stops, |n| run_child(&shared, n));
    if let Ok((_, Why::GaveUp { restarts })) = ran {
        tracing::error!(
            "giving up after {restarts} restarts without a run of {} or longer; exiting with the last status",
            humantime::format_duration(config.restart.healthy_after)
        );
    }
    // A --restart loop that is over sends the counts of its repeats now,
    // even when it ended because a run could not start: the reports of the
    // runs before it must not be cut off by crashwatch's exit.
    delivery.queue_due_summaries(config.restart.policy != Policy::Never);
    health.queue_aggregates(&delivery, config.restart.policy != Policy::Never);
    if let Some(recovery) = recovery {
        let _ = recovery.join();
    }
    // Whatever is waiting (this report, a descendant's, an earlier run's)
    // goes out now, within the flush deadline.
    delivery.finish();
    ran.map(|(code, _)| code)
}

/// What every run of the child shares.
struct Shared<'a> {
    config: &'a RunConfig,
    filer: &'a Arc<Filer>,
    delivery: &'a Arc<Delivery>,
    reap_orphans: bool,
    signals: &'static supervise::Hub,
    /// crashwatch's own memory cgroup.
    own_cgroup: Option<MemoryCgroup>,
    metrics: &'a Arc<Metrics>,
    /// Release Health sessions and cron check-ins.
    health: &'a Health,
    /// The NOTIFY_SOCKET proxy, under systemd.
    proxy: Option<&'a Proxy>,
}

/// `--restart never`: there is no wait, since there is no restart.
struct NoRestart;

impl Wait for NoRestart {
    fn wait(&mut self, _: Duration) -> bool {
        false
    }
}

/// Runs the child once (run `number`, 0 for the first) to its end and files
/// its report; returns its exit code for crashwatch and how it ended.
fn run_child(shared: &Shared<'_>, number: u32) -> Result<(i32, Ended), Failure> {
    let Shared { config, delivery, reap_orphans, metrics, .. } = *shared;
    let filer = shared.filer;
    let env = shared.proxy.map(|proxy| {
        proxy.new_run();
        proxy.child_env(&config.env)
    });
    let prepared = Prepared::new(&config.command, env.as_deref().unwrap_or(&config.env))
        .map_err(|e| Failure::new(e.exit_code(), e))?;
    // Memory: the child's cgroup (a new one under --memory-limit), the
    // witnesses of an OOM kill, and a sampler while it runs.
    let limited = match config.memory_limit {
        Some(limit) => {
            let parent = shared.own_cgroup.as_ref().ok_or_else(|| {
                Failure::new(
                    exit::CANNOT_SUPERVISE,
                    anyhow::anyhow!("--memory-limit needs the memory cgroup controller, which is not mounted here"),
                )
            })?;
            let name = format!("crashwatch-{}-{number}", std::process::id());
            Some(parent.create_child(&name, limit).map_err(|e| Failure::new(exit::CANNOT_SUPERVISE, e))?)
        }
        None => None,
    };
    let child_cgroup = limited.as_ref().map(|cg| cg.cgroup.clone()).or_else(|| shared.own_cgroup.clone());
    let oom_watch = OomWatch::start(child_cgroup.clone());
    let oom_snapshot =
        OomSnapshot::arm(config.oom_snapshot, child_cgroup.as_ref(), filer.scratch_path().is_some() && config.ptrace);
    let cannot_supervise = |e| Failure::new(exit::CANNOT_SUPERVISE, e);
    let (stdout_read, stdout_write) = if config.pty { pty_pair() } else { pipe() }.map_err(cannot_supervise)?;
    let (stderr_read, stderr_write) = pipe().map_err(cannot_supervise)?;
    let ring = Arc::new(Mutex::new(Ring::new(config.ring)));
    let mut health = shared.health.run();
    // Problems the child survives, looked for off the pumps' path.
    let (tap, live) = super::live::Live::start(config, delivery, health.live_session()).unzip();
    let mut pumps = Pumps::start(stdout_read, stderr_read, Arc::clone(&ring), tap)
        .context("failed to start the threads that read the child's output")
        .map_err(cannot_supervise)?;
    let exe = prepared.path.clone();
    // Without a spool there is nowhere to keep a minidump.
    let traced = filer.scratch_path().is_some() && config.ptrace;
    let trace = filer.scratch_path().filter(|_| config.ptrace).map(|scratch_dir| TraceOptions {
        follow_forks: config.follow_forks,
        scratch_dir,
        stop_timeout: STOP_TIMEOUT,
    });
    let mut supervisor = supervise::start(Spec {
        prepared,
        stdout: stdout_write,
        stderr: stderr_write,
        take_terminal: true,
        signal_group: config.signal_group,
        reap_orphans,
        trace,
        cgroup: limited.as_ref().map(|cg| cg.cgroup.clone()),
        signals: shared.signals,
    })
    .map_err(|e| Failure::new(e.exit_code(), e))?;

    // The child's life, every input in the order it came.
    let mut sampler = None;
    let mut own_crash = None;
    let mut hangs = None;
    // Reports of descendants' crashes being filed; joined before the run
    // ends, so none is lost.
    let mut filings = Vec::new();
    let finished = loop {
        match supervisor.next_event() {
            Event::Started { pid } => {
                metrics.child_started(number > 0);
                health.started(delivery);
                let ctx = hang::Context {
                    config,
                    delivery,
                    ring: &ring,
                    session: health.live_session(),
                    errors: live.as_ref().map(|live| Arc::clone(&live.errors)),
                    proxy: shared.proxy,
                    traced,
                };
                hangs = Hangs::start(&ctx, pid, SystemTime::now());
                let trigger = oom_snapshot.as_ref().map(|s| s.trigger(pid));
                match Sampler::start(pid, child_cgroup.clone(), limited.is_some(), MEMORY_INTERVAL, trigger) {
                    Ok(started) => sampler = Some(started),
                    Err(e) => tracing::warn!("failed to start sampling the child's memory: {e}"),
                }
            }
            Event::Signal(signal) => supervisor.forward(signal),
            Event::Crash(capture) => {
                filing::announce(&capture);
                if Some(capture.pid) == supervisor.pid() {
                    // Kept at once, filed with the child's end, once its
                    // last lines are in.
                    let tail = ring.lock().unwrap_or_else(|e| e.into_inner()).snapshot();
                    let begun = filer.begin(&capture, &crash_record(config, &capture, &tail));
                    own_crash = Some((capture, begun));
                } else {
                    metrics.crashed(Kind::Signal, SystemTime::now());
                    let tail = ring.lock().unwrap_or_else(|e| e.into_inner()).snapshot();
                    filings.extend(file_descendant_crash(shared, capture, &tail));
                }
            }
            Event::Snapshot(snapshot) => match (&hangs, &oom_snapshot) {
                (Some(hangs), _) if hangs.wants_snapshot() => hangs.deliver(snapshot),
                (_, armed) => {
                    // A memory.high held at the point for it is given back.
                    if let Some(sampler) = &sampler {
                        sampler.snapshot_taken();
                    }
                    match armed {
                        Some(armed) => armed.keep(snapshot),
                        None => capture::discard_snapshot(&snapshot),
                    }
                }
            },
            Event::Ended(end) => break end,
        }
    };
    // A hang being reported is queued before the run's session ends.
    let hang = hangs.map(Hangs::finish).unwrap_or_default();
    // Everything the cgroup knows is read before it is removed.
    let mut memory = sampler.map(Sampler::finish);
    // The kernel's count is exact where the samples may have missed the
    // peak (a child that dies within a second of its start, or of a spike).
    if let (Some(memory), Ok(Finished { peak_rss: Some(peak), .. })) = (memory.as_mut(), &finished) {
        memory.peak_rss = memory.peak_rss.max(Some(*peak));
    }
    let oom = match &finished {
        Ok(Finished { pid, status, .. }) => {
            oom_watch.assess(*pid, matches!(status, ChildStatus::Signaled { signal: libc::SIGKILL, .. }))
        }
        Err(_) => Default::default(),
    };
    // Removed, and crashwatch's own cgroup given back as it was.
    drop(limited);
    let finished = finished.map_err(|e| Failure::new(e.exit_code(), e))?;

    // The child is gone; its last lines may still be in the pipes.
    let complete = pumps.drain(DRAIN_LIMIT);
    if !complete {
        tracing::warn!(
            "a descendant of the child still holds its output open; taking the last lines without waiting for it"
        );
    }
    metrics.child_ended();
    let mut snapshot = oom_snapshot.and_then(OomSnapshot::take);
    let code = finished.status.exit_code();
    let ended = Ended {
        failed: finished.status.is_abnormal() || own_crash.is_some(),
        stop_requested: finished.stop_requested.is_some_and(|s| signals::END_RESTARTS.contains(&s)),
        ran_for: finished.ran_for,
        hung: hang.ended_it,
    };
    // Every problem the child printed before its end is counted (and
    // queued) before its session's end is decided.
    // Hangs are counted with the live problems when both are watched.
    let live_errors = live.map_or(hang.hangs, |live| live.finish(DRAIN_LIMIT, ended.failed));
    let mut ending = None;
    if ended.failed {
        let argv: Vec<String> = config.command.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let mut report = CrashReport::new(Ending {
            argv: &argv,
            // What ran, not the script or shim started.
            exe: finished.exe.clone().unwrap_or(exe),
            pid: finished.pid,
            status: finished.status,
            started_at: Some(finished.started_at),
            ended_at: finished.ended_at,
            stop_requested: finished.stop_requested,
            log_tail: &pumps.snapshot(),
            log_tail_complete: complete,
            release: config.release.clone(),
            environment: config.environment.clone(),
        });
        if oom.child.is_some() {
            report.kind = Kind::Oom;
        }
        report.panic = filing::runtime_crash(&report);
        if report.panic.is_some() && report.kind == Kind::Exit {
            report.kind = Kind::Panic;
        }
        report.oom = oom.child;
        report.oom_victims = oom.others;
        report.notes.extend(oom.notes);
        report.memory = memory;
        if let Some(note) = hang.note() {
            report.notes.push(note);
            report.hang_event = hang.last.as_ref().map(|(id, _)| id.clone());
            // Ended by crashwatch for its hang, already reported: not a crash.
            let ours = matches!(finished.status, ChildStatus::Signaled { signal: libc::SIGTERM | libc::SIGKILL, .. });
            if hang.ended_it && ours && own_crash.is_none() {
                report.kind = Kind::Stopped;
            }
        }
        metrics.crashed(report.kind, SystemTime::now());
        // A memory snapshot belongs in the report of an OOM kill only.
        let snapshot = snapshot.take_if(|_| report.kind == Kind::Oom);
        let outcome = Outcome::of(finished.status, Some(report.kind), own_crash.is_some()).with_errors(live_errors);
        let link = health.ending(delivery, outcome, finished.ran_for);
        let carried = match own_crash {
            Some((capture, begun)) => {
                if let Some(snapshot) = snapshot {
                    snapshot.discard("the child's crash has a minidump of its own");
                }
                filer.file_caught(report, &capture, begun, Some(&link))
            }
            None => filer.file(report, None, snapshot, Some(&link)),
        };
        ending = Some((outcome, link, carried));
    }
    let (outcome, link, carried) = ending.unwrap_or_else(|| {
        let outcome = Outcome::of(finished.status, None, false).with_errors(live_errors);
        (outcome, health.ending(delivery, outcome, finished.ran_for), false)
    });
    health.finish(delivery, link, carried, outcome, !ended.failed, finished.ran_for);
    if let Some(snapshot) = snapshot {
        snapshot.discard("the child did not die of an OOM kill");
    }
    for filing in filings {
        let _ = filing.join();
    }
    if config.restart.policy != Policy::Never {
        // The loop goes on: send beside the next run rather than at the end.
        delivery.flush_in_background(Mode::Due);
    }
    Ok((code, ended))
}

/// What is known of the child's crash the moment it is caught: its record
/// until the child's end completes it (or, if crashwatch is killed
/// meanwhile, for good).
fn crash_record(config: &RunConfig, capture: &CrashCapture, tail: &[logs::Line]) -> CrashReport {
    let argv: Vec<String> = config.command.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let note = "recorded when the crash was caught: the process's exit status and any lines it printed afterwards \
                are not known";
    caught(config, &argv, capture, tail, note)
}

/// The report of a process caught dying of `capture`'s signal (its status
/// is the signal it was dying of), with `note` saying what is not known.
fn caught(config: &RunConfig, argv: &[String], capture: &CrashCapture, tail: &[logs::Line], note: &str) -> CrashReport {
    let mut report = CrashReport::new(Ending {
        argv,
        exe: capture.exe.clone(),
        pid: capture.pid,
        status: ChildStatus::Signaled { signal: capture.signal, core_dumped: None },
        started_at: None,
        ended_at: SystemTime::now(),
        stop_requested: None,
        log_tail: tail,
        log_tail_complete: false,
        release: config.release.clone(),
        environment: config.environment.clone(),
    });
    report.notes.push(note.into());
    report
}

/// Files the report of a descendant's crash (`--follow-forks`) on a thread
/// of its own, at once: the child may run on for days, and symbolicating
/// here would hold up its events.
fn file_descendant_crash(
    shared: &Shared<'_>,
    capture: Box<CrashCapture>,
    tail: &[logs::Line],
) -> Option<std::thread::JoinHandle<()>> {
    let note = "a descendant of the child crashed; its start time and exit status are not known to crashwatch, \
                which is not its parent (the status shown is the signal it was dying of)";
    let report = caught(shared.config, &[capture.exe.display().to_string()], &capture, tail, note);
    let filer = Arc::clone(shared.filer);
    let filed = std::thread::Builder::new().name("report".into()).spawn(move || {
        filer.file_crash(report, &capture);
        // The child runs on: send now rather than at its end.
        filer.delivery().flush_in_background(Mode::Due);
    });
    filed.inspect_err(|e| tracing::error!("failed to start filing the report of a descendant's crash: {e}")).ok()
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
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
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
