//! What a hang leads to in `crashwatch run` (the checks are
//! [`crate::hang`]): one snapshot of the live child's stacks, one `hang`
//! event, then the restart policy.
//!
//! ```text
//!  check thread           hang worker (one per run)           tracer / run loop
//!  N failures, or a  ──►  request a snapshot (SIGURG,    ──►  the child dumped,
//!  silent watchdog        queued, as --oom-snapshot does)     runs on; the capture
//!                    ◄──────────────────────────────────────  is handed back here
//!                         symbolicate (helper process), event through the outbox
//!                         with the session's errored update; dump deleted
//!                         --restart on-hang|on-failure|always: SIGTERM, then
//!                         SIGKILL after HANG_STOP_GRACE; the run ends, restarts
//! ```
//!
//! The event: level `error`, an exception `Hang` with mechanism `hang`
//! (`--health-url`) or `watchdog`, `handled: false`, `synthetic: true` (its
//! type and value are crashwatch's words, so Sentry groups it by the stack).
//! The stack is the main thread's (as Sentry's own ANR events take the main
//! thread: the one a server's loop runs on); every thread is in `threads`.
//! Tags and the `hang` context say which check failed, how often, for how
//! long. The dump itself is deleted once symbolicated: the event carries
//! its stacks.
//!
//! A hang that systemd ends (`--restart never`: its watchdog's SIGABRT,
//! which crashwatch forwards) is then a crash of its own; its report says
//! it followed the hang, with the hang event's id (see [`Summary::note`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::capture::{self, SnapshotCapture};
use crate::commands::delivery::{Delivery, Queued};
use crate::commands::health::{self, LiveSession};
use crate::config::RunConfig;
use crate::errors::Chain;
use crate::hang::watchdog::{Cover, Proxy};
use crate::hang::{Check, Detected, OnHang, health as health_check};
use crate::live::{Origin, Problem};
use crate::logs::Ring;
use crate::ptrace;
use crate::sentry::deliver::Mode;
use crate::sentry::event::{crashed_thread_frames, images, is_in_app, threads};
use crate::sentry::throttle::Signature;
use crate::supervise;
use crate::symbolicate::Symbolicated;

/// Between the SIGTERM that ends a hung child and the SIGKILL.
pub const HANG_STOP_GRACE: Duration = Duration::from_secs(10);
/// Beyond the grace and the restart delay, how long crashwatch pings
/// systemd's watchdog for a restarted child that has not said `READY=1`.
const COVER_START: Duration = Duration::from_secs(60);
/// How long the worker waits for the tracer's snapshot.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(30);
/// Lines of the child's output in the event, as breadcrumbs.
const BREADCRUMBS: usize = 50;

/// What the hang worker of a run needs.
pub struct Context<'a> {
    pub config: &'a RunConfig,
    pub delivery: &'a Arc<Delivery>,
    pub ring: &'a Arc<Mutex<Ring>>,
    pub session: LiveSession,
    /// The count of the run's live problems (`--events-from-logs`, panics it
    /// survived), which hangs add to: the session's errors are both.
    pub errors: Option<Arc<AtomicU64>>,
    pub proxy: Option<&'a Proxy>,
    /// The child is traced: a snapshot can be taken.
    pub traced: bool,
}

enum Message {
    Detected(Detected),
    Snapshot(Box<SnapshotCapture>),
    /// The run is over.
    Ended,
}

#[derive(Default)]
struct State {
    wants_snapshot: AtomicBool,
    hangs: AtomicU64,
    ended_it: AtomicBool,
    last: Mutex<Option<(String, String)>>,
}

/// The hang checks of one run and their worker.
pub struct Hangs {
    tx: Sender<Message>,
    state: Arc<State>,
    worker: Option<JoinHandle<()>>,
    checks: (Option<health_check::Running>, Option<crate::hang::watchdog::Watching>),
}

/// What the hangs of a run came to, for its end.
#[derive(Debug, Default)]
pub struct Summary {
    /// Hangs caught (each one event).
    pub hangs: u64,
    /// crashwatch ended the child for a hang.
    pub ended_it: bool,
    /// The last hang's event id and headline.
    pub last: Option<(String, String)>,
}

impl Summary {
    /// What the report of the run's end says of its hang, if it had one.
    pub fn note(&self) -> Option<String> {
        let (id, headline) = self.last.as_ref()?;
        Some(if self.ended_it {
            format!("crashwatch ended the program after it hung: {headline} (hang event {id})")
        } else {
            format!("the program had hung before it ended: {headline} (hang event {id})")
        })
    }
}

impl Hangs {
    /// Starts the checks for the child `pid`, started at `started`; `None`
    /// when there is none to run.
    pub fn start(ctx: &Context<'_>, pid: i32, started: SystemTime) -> Option<Hangs> {
        let config = ctx.config;
        let watchdog = ctx.proxy.filter(|_| config.systemd.as_ref().is_some_and(|s| s.watchdog.is_some()));
        if config.hang.health.is_none() && watchdog.is_none() {
            return None;
        }
        let (tx, rx) = mpsc::channel();
        let state = Arc::new(State::default());
        let on_hang: OnHang = {
            let tx = Mutex::new(tx.clone());
            Arc::new(move |d| drop(tx.lock().unwrap_or_else(PoisonError::into_inner).send(Message::Detected(d))))
        };
        let worker = Worker {
            pid,
            rx,
            state: Arc::clone(&state),
            delivery: Arc::clone(ctx.delivery),
            ring: Arc::clone(ctx.ring),
            session: Arc::clone(&ctx.session),
            errors: ctx.errors.clone(),
            origin: origin(config),
            traced: ctx.traced,
            limits: config.symbolicate,
            end_it: config.restart.policy.ends_hangs(),
            cover: watchdog.map(|proxy| (proxy.cover(), HANG_STOP_GRACE + config.restart.max_delay + COVER_START)),
            group: config.signal_group,
        };
        let worker = std::thread::Builder::new().name("hang".into()).spawn(move || worker.run());
        let worker = worker.inspect_err(|e| tracing::warn!("failed to start watching for hangs: {e}")).ok()?;
        let health = config.hang.health.clone().and_then(|check| {
            health_check::start(check, started, Arc::clone(&on_hang))
                .inspect_err(|e| tracing::warn!("failed to start the --health-url checks: {e}"))
                .ok()
        });
        let watching = watchdog.and_then(|proxy| {
            proxy.watch(on_hang).inspect_err(|e| tracing::warn!("failed to start watching the watchdog: {e}")).ok()
        });
        Some(Hangs { tx, state, worker: Some(worker), checks: (health, watching) })
    }

    /// Whether the snapshot the tracer just took is the one asked for a hang.
    pub fn wants_snapshot(&self) -> bool {
        self.state.wants_snapshot.swap(false, Ordering::SeqCst)
    }

    /// Hands the worker its snapshot.
    pub fn deliver(&self, snapshot: Box<SnapshotCapture>) {
        if let Err(mpsc::SendError(Message::Snapshot(snapshot))) = self.tx.send(Message::Snapshot(snapshot)) {
            capture::discard_snapshot(&snapshot);
        }
    }

    /// The child has ended: the checks stop, a hang being reported is
    /// finished (its event queued) before this returns.
    pub fn finish(mut self) -> Summary {
        self.checks = (None, None);
        let _ = self.tx.send(Message::Ended);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
        Summary {
            hangs: self.state.hangs.load(Ordering::SeqCst),
            ended_it: self.state.ended_it.load(Ordering::SeqCst),
            last: self.state.last.lock().unwrap_or_else(PoisonError::into_inner).take(),
        }
    }
}

fn origin(config: &RunConfig) -> Origin {
    let program = config.command.first().map(|c| std::path::Path::new(c).file_name().unwrap_or(c));
    Origin {
        program: program.map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
        argv: config.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        release: config.release.clone(),
        environment: config.environment.clone(),
    }
}

struct Worker {
    pid: i32,
    rx: Receiver<Message>,
    state: Arc<State>,
    delivery: Arc<Delivery>,
    ring: Arc<Mutex<Ring>>,
    session: LiveSession,
    errors: Option<Arc<AtomicU64>>,
    origin: Origin,
    traced: bool,
    limits: crate::config::HelperLimits,
    end_it: bool,
    group: bool,
    /// Pings systemd's watchdog while the hung child is ended and started
    /// again, for at most this long.
    cover: Option<(Cover, Duration)>,
}

impl Worker {
    fn run(self) {
        while let Ok(message) = self.rx.recv() {
            match message {
                Message::Detected(hang) => {
                    let (snapshot, ended) = self.snapshot();
                    self.report(&hang, snapshot);
                    if ended {
                        return;
                    }
                    if self.end_it {
                        self.end_child();
                        return;
                    }
                }
                // A snapshot that came too late for its hang.
                Message::Snapshot(snapshot) => capture::discard_snapshot(&snapshot),
                Message::Ended => return,
            }
        }
    }

    /// Asks the tracer for a snapshot and waits for it; whether the run
    /// ended meanwhile.
    fn snapshot(&self) -> (Option<Box<SnapshotCapture>>, bool) {
        if !self.traced {
            tracing::warn!("the child is not traced (--no-ptrace, or no usable spool): the hang event has no stacks");
            return (None, false);
        }
        self.state.wants_snapshot.store(true, Ordering::SeqCst);
        if let Err(e) = ptrace::request_snapshot(self.pid) {
            self.state.wants_snapshot.store(false, Ordering::SeqCst);
            tracing::warn!(pid = self.pid, "no snapshot of the hung child: {}", Chain(&e));
            return (None, false);
        }
        let deadline = std::time::Instant::now() + SNAPSHOT_WAIT;
        loop {
            match self.rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                Ok(Message::Snapshot(snapshot)) => return (Some(snapshot), false),
                // The other check saw the same hang.
                Ok(Message::Detected(_)) => {}
                Ok(Message::Ended) | Err(RecvTimeoutError::Disconnected) => return (None, true),
                Err(RecvTimeoutError::Timeout) => {
                    tracing::warn!(pid = self.pid, "no snapshot of the hung child within {SNAPSHOT_WAIT:?}");
                    return (None, false);
                }
            }
        }
    }

    fn report(&self, hang: &Detected, snapshot: Option<Box<SnapshotCapture>>) {
        let stacks = snapshot.as_deref().and_then(|s| self.symbolicate(s));
        if let Some(snapshot) = &snapshot {
            capture::discard_snapshot(snapshot);
        }
        let crumbs: Vec<_> = {
            let lines = self.ring.lock().unwrap_or_else(PoisonError::into_inner).snapshot();
            let skip = lines.len().saturating_sub(BREADCRUMBS);
            lines[skip..].iter().map(|l| (l.at, l.stream, String::from_utf8_lossy(&l.bytes).into_owned())).collect()
        };
        let (id, event, signature) = hang_event(&self.origin, hang, self.pid, snapshot.as_deref(), stacks, &crumbs);
        let count = self.state.hangs.fetch_add(1, Ordering::SeqCst) + 1;
        let count = self.errors.as_ref().map_or(count, |errors| errors.fetch_add(1, Ordering::SeqCst) + 1);
        *self.state.last.lock().unwrap_or_else(PoisonError::into_inner) = Some((id, hang.headline()));
        let update = health::errored_update(&self.session, count);
        let problem = Problem { signature, id: event["event_id"].as_str().unwrap_or_default().into(), event };
        match self.delivery.queue_live(problem, &self.origin, update) {
            Queued::Yes => {
                tracing::error!("{} hung: {}; sending a hang event", self.origin.program, hang.headline());
                self.delivery.flush_in_background(Mode::Due);
            }
            other => tracing::error!(
                "{} hung: {}; {}",
                self.origin.program,
                hang.headline(),
                other.why_not().unwrap_or_default()
            ),
        }
    }

    fn symbolicate(&self, snapshot: &SnapshotCapture) -> Option<Symbolicated> {
        let dump =
            snapshot.dump.as_ref().inspect_err(|e| tracing::warn!("no snapshot of the hung child: {}", Chain(*e)));
        // The scratch directory is named through crashwatch's own
        // descriptor (/proc/self/fd/N/…): the helper reads it through ours.
        let path =
            dump.ok()?.path.to_string_lossy().replacen("/proc/self/", &format!("/proc/{}/", std::process::id()), 1);
        let result = super::symbolicate::in_helper(std::path::Path::new(&path), &[], self.limits);
        result.inspect_err(|e| tracing::warn!("the hung child's stacks are not symbolicated: {}", Chain(e))).ok()
    }

    /// SIGTERM to the child (its group with --signal-group), SIGKILL if it
    /// is still there after [`HANG_STOP_GRACE`].
    fn end_child(&self) {
        self.state.ended_it.store(true, Ordering::SeqCst);
        if let Some((cover, limit)) = &self.cover {
            cover.start(*limit);
        }
        tracing::warn!(pid = self.pid, "ending the hung program (SIGTERM, SIGKILL after {HANG_STOP_GRACE:?})");
        supervise::forward(self.pid, libc::SIGTERM, self.group);
        loop {
            match self.rx.recv_timeout(HANG_STOP_GRACE) {
                Ok(Message::Snapshot(snapshot)) => capture::discard_snapshot(&snapshot),
                Ok(Message::Detected(_)) => {}
                Ok(Message::Ended) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {
                    tracing::warn!(pid = self.pid, "the hung program is still there after SIGTERM: SIGKILL");
                    supervise::forward(self.pid, libc::SIGKILL, self.group);
                    return;
                }
            }
        }
    }
}

/// The `hang` event: its id, JSON and signature.
fn hang_event(
    origin: &Origin,
    hang: &Detected,
    pid: i32,
    snapshot: Option<&SnapshotCapture>,
    stacks: Option<Symbolicated>,
    crumbs: &[(SystemTime, crate::logs::Stream, String)],
) -> (String, Value, Signature) {
    let (id, mut event) = crate::live::event::base(origin, hang.at, "error", crumbs);
    let mechanism = match hang.check {
        Check::Health { .. } => "hang",
        Check::Watchdog { .. } => "watchdog",
    };
    let mut exception = json!({
        "type": "Hang",
        "value": hang.headline(),
        "mechanism": {"type": mechanism, "handled": false, "synthetic": true},
    });
    let mut context = json!({
        "check": hang.check.name(),
        "pid": pid,
        "hung_seconds": hang.hung_for().as_secs_f64(),
        "since": rfc3339(hang.since),
        "detected_at": rfc3339(hang.at),
    });
    match &hang.check {
        Check::Health { url, failures, last_error } => {
            context["url"] = json!(url);
            context["failures"] = json!(failures);
            context["last_error"] = json!(last_error);
            event["tags"]["hang.failures"] = json!(failures.to_string());
        }
        Check::Watchdog { interval, pings } => {
            context["watchdog_seconds"] = json!(interval.as_secs_f64());
            context["pings"] = json!(pings);
        }
    }
    let mut top = Vec::new();
    if let Some(snapshot) = snapshot {
        context["threads"] = json!(snapshot.threads);
        context["capture_ms"] = json!(snapshot.elapsed.as_secs_f64() * 1000.0);
    }
    if let Some(mut stacks) = stacks {
        // The main thread stands for the program, as in Sentry's ANR events.
        let main = stacks.threads.iter().position(|t| t.tid as i32 == pid);
        stacks.crashing_thread = main.or(stacks.crashing_thread);
        if let Some(thread) = stacks.crashing_thread.and_then(|i| stacks.threads.get(i)) {
            exception["thread_id"] = json!(thread.tid);
            top = top_functions(thread, &stacks);
        }
        if let Some(frames) = crashed_thread_frames(&stacks) {
            exception["stacktrace"] = frames;
        }
        event["platform"] = json!("native");
        event["threads"] = json!({"values": threads(&stacks)});
        event["debug_meta"] = json!({"images": images(&stacks)});
    }
    event["exception"] = json!({"values": [exception]});
    event["tags"]["hang.check"] = json!(hang.check.name());
    event["contexts"] = json!({"hang": context});
    let key = format!("{}|hang {}|{}", origin.program, hang.check.name(), top.join("|"));
    let title = match top.first() {
        Some(f) => format!("hang ({}) in {f}", hang.check.name()),
        None => format!("hang ({})", hang.check.name()),
    };
    (id, event, Signature { key, title })
}

/// The first few functions of `thread` in the program's own code (all its
/// frames when none is): what groups one hang with its repeats.
fn top_functions(thread: &crate::symbolicate::Thread, stacks: &Symbolicated) -> Vec<String> {
    let in_app = |f: &&crate::symbolicate::Frame| {
        let module = f.module_base.and_then(|b| stacks.modules.iter().find(|m| m.base == b));
        module.is_some_and(|m| is_in_app(&m.code_file))
    };
    let named = |f: &crate::symbolicate::Frame| f.function.clone();
    let own: Vec<String> = thread.frames.iter().filter(in_app).filter_map(named).take(3).collect();
    if own.is_empty() { thread.frames.iter().filter_map(named).take(3).collect() } else { own }
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
