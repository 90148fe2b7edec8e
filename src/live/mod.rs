//! Problems of a program that goes on running: a panic or uncaught
//! exception in a thread it survives, and (opt-in) error lines of its
//! structured logs. Each becomes a Sentry event at once, while the program
//! lives.
//!
//! The pumps hand a copy of every read to the [`crate::logs::tap`]; one
//! worker thread here takes it, cuts it into lines per stream and looks at
//! each: one [`regex::RegexSet`] match for the shapes of [`detect`], and
//! with `--events-from-logs` the [`level`] of the line. Nothing here can
//! slow the child: the tap drops (and counts) what the worker cannot take.
//!
//! A trigger line waits [`SETTLE`] for the rest of its story (the frames
//! come on the following lines) before the runtime's parser reads it. A
//! program that dies meanwhile closes its pipes, and the waiting stories are
//! dropped: its death is a crash, reported with them when the child ends.
//!
//! Grouping: the first problem of a signature is [`Found::Problem`]; later
//! ones are only counted, and the counts go out as [`Found::Repeats`] once a
//! second, so a storm of 100,000 lines is one event and a number. Whoever
//! receives them applies the crash-loop budget (`sentry::throttle`).

pub mod detect;
pub mod event;
pub mod level;
pub mod ship;

use std::collections::{HashMap, VecDeque};
use std::sync::LazyLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use regex::Regex;

use crate::logs::{Stream, TapReceiver};
use crate::sentry::throttle::Signature;

pub use level::Level;

/// How long a trigger line waits for the rest of its story.
pub const SETTLE: Duration = Duration::from_millis(500);
/// How often counts of repeats are handed on.
const REPEATS_EVERY: Duration = Duration::from_secs(1);
/// Lines kept per stream for stories.
const WINDOW: usize = 400;
/// Lines of both streams kept as an event's breadcrumbs.
const BREADCRUMBS: usize = 50;
/// A longer line is cut (stories never need more).
const MAX_LINE: usize = 16 << 10;
/// Stories waiting to settle, at most: a storm of panics must not make
/// the worker parse every one (the first of a signature is what is sent).
const MAX_PENDING: usize = 64;
/// Signatures remembered for grouping; past it, the oldest are forgotten.
const MAX_SIGNATURES: usize = 1024;

/// What to look for.
pub struct Settings {
    /// `--forward-logs`: where lines at or above its level go.
    pub forward: Option<ship::Shipper>,
    /// Panics and uncaught exceptions the program survives.
    pub problems: bool,
    /// Lines at or above this level become events.
    pub events_from_logs: Option<Level>,
    /// What the events say of the program.
    pub origin: Origin,
}

/// The program the events are about.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// Its name, for tags and signatures.
    pub program: String,
    pub argv: Vec<String>,
    pub release: Option<String>,
    pub environment: Option<String>,
}

/// What the worker hands on.
#[derive(Debug)]
pub enum Found {
    /// The first problem of its signature: its event.
    Problem(Problem),
    /// More of a signature handed on before.
    Repeats { key: String, count: u64 },
}

/// One problem's event.
#[derive(Debug)]
pub struct Problem {
    pub signature: Signature,
    /// The event id, also in `event`.
    pub id: String,
    pub event: serde_json::Value,
}

/// What the worker saw, for crashwatch's own log.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub lines: u64,
    pub problems: u64,
    pub repeats: u64,
    /// Problems the receiver could not take (it was behind).
    pub unsent: u64,
    /// Stories not read: too many were waiting at once.
    pub unread: u64,
    /// Chunks and bytes the tap dropped.
    pub dropped_chunks: u64,
    pub dropped_bytes: u64,
}

/// Starts the worker on `tap`; it ends when the pumps have ended and
/// `failed` has said whether the run failed (dropped unsaid: it did).
pub fn start(
    tap: TapReceiver,
    settings: Settings,
    out: SyncSender<Found>,
    failed: Receiver<bool>,
) -> std::io::Result<JoinHandle<Stats>> {
    std::thread::Builder::new().name("live".into()).spawn(move || {
        let mut worker = Worker::new(settings, out);
        worker.run(&tap, &failed);
        let (chunks, bytes) = tap.dropped();
        worker.stats.dropped_chunks = chunks;
        worker.stats.dropped_bytes = bytes;
        worker.stats
    })
}

struct StreamState {
    /// A line not ended yet.
    partial: Vec<u8>,
    /// The last lines, with the number of the first.
    window: VecDeque<String>,
    first: u64,
}

struct Pending {
    stream: Stream,
    line: u64,
    shape: detect::Shape,
    due: Instant,
    at: SystemTime,
}

struct Worker {
    settings: Settings,
    out: SyncSender<Found>,
    streams: [StreamState; 2],
    breadcrumbs: VecDeque<(SystemTime, Stream, String)>,
    pending: Vec<Pending>,
    /// Signatures handed on, with their repeats not yet handed on.
    seen: HashMap<String, u64>,
    order: VecDeque<String>,
    last_repeats: Instant,
    stats: Stats,
}

impl Worker {
    fn new(settings: Settings, out: SyncSender<Found>) -> Worker {
        let stream = || StreamState { partial: Vec::new(), window: VecDeque::new(), first: 0 };
        Worker {
            settings,
            out,
            streams: [stream(), stream()],
            breadcrumbs: VecDeque::new(),
            pending: Vec::new(),
            seen: HashMap::new(),
            order: VecDeque::new(),
            last_repeats: Instant::now(),
            stats: Stats::default(),
        }
    }

    fn run(&mut self, tap: &TapReceiver, failed: &Receiver<bool>) {
        loop {
            let wait = self
                .pending
                .iter()
                .map(|p| p.due)
                .min()
                .map_or(REPEATS_EVERY, |due| due.saturating_duration_since(Instant::now()).min(REPEATS_EVERY));
            match tap.recv_timeout(wait) {
                Ok(chunk) => {
                    let index = chunk.stream as usize;
                    if chunk.after_gap {
                        self.streams[index].partial.clear();
                    }
                    self.take(chunk.stream, chunk.at, &chunk.bytes);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.settle(false);
            if self.last_repeats.elapsed() >= REPEATS_EVERY {
                self.hand_on_repeats();
            }
        }
        // The pumps ended: the child closed its output, most likely by
        // ending. Stories still settling belong to the report of a run
        // that failed; after a clean exit there is none, and they are
        // problems the program survived (a worker's panic just before
        // `exit(0)`), never dropped.
        if failed.recv() == Ok(false) {
            self.settle(true);
        }
        self.hand_on_repeats();
    }

    fn take(&mut self, stream: Stream, at: SystemTime, mut bytes: &[u8]) {
        while let Some(end) = memchr::memchr(b'\n', bytes) {
            let state = &mut self.streams[stream as usize];
            let line = if state.partial.is_empty() {
                String::from_utf8_lossy(&bytes[..end.min(MAX_LINE)]).into_owned()
            } else {
                let room = MAX_LINE.saturating_sub(state.partial.len());
                state.partial.extend_from_slice(&bytes[..end.min(room)]);
                let line = String::from_utf8_lossy(&state.partial).into_owned();
                state.partial.clear();
                line
            };
            bytes = &bytes[end + 1..];
            self.line(stream, at, line);
        }
        let state = &mut self.streams[stream as usize];
        let room = MAX_LINE.saturating_sub(state.partial.len());
        state.partial.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn line(&mut self, stream: Stream, at: SystemTime, line: String) {
        let line = match line.strip_suffix('\r') {
            Some(l) => l.to_owned(),
            None => line,
        };
        self.stats.lines += 1;
        if let Some(shipper) = &self.settings.forward {
            let level = level::parse(&line).map_or(Level::Info, |l| l.level);
            if level >= shipper.level() {
                shipper.push(at, level, stream, &line);
            }
        }
        if self.settings.problems
            && let Some(shape) = detect::trigger(&line)
        {
            let state = &self.streams[stream as usize];
            let number = state.first + state.window.len() as u64;
            if self.pending.len() >= MAX_PENDING {
                self.stats.unread += 1;
            } else {
                self.pending.push(Pending { stream, line: number, shape, due: Instant::now() + SETTLE, at });
            }
        } else if let Some(threshold) = self.settings.events_from_logs
            && let Some(found) = level::parse(&line).filter(|l| l.level >= threshold)
        {
            let (key, title) = log_signature(&self.settings.origin.program, &found);
            let signature = Signature { key, title };
            if self.first_of(&signature.key) {
                let crumbs: Vec<_> = self.breadcrumbs.iter().cloned().collect();
                let (id, event) =
                    event::log_event(&self.settings.origin, &found, &line, stream, at, &crumbs, &signature);
                self.hand_on(Problem { signature, id, event });
            }
        }
        let state = &mut self.streams[stream as usize];
        state.window.push_back(line.clone());
        if state.window.len() > WINDOW {
            state.window.pop_front();
            state.first += 1;
        }
        self.breadcrumbs.push_back((at, stream, line));
        if self.breadcrumbs.len() > BREADCRUMBS {
            self.breadcrumbs.pop_front();
        }
    }

    /// Reads the stories whose time has come (all of them with `all`).
    fn settle(&mut self, all: bool) {
        let now = Instant::now();
        let (due, waiting): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|p| all || p.due <= now);
        self.pending = waiting;
        for pending in due {
            let state = &self.streams[pending.stream as usize];
            let Some(start) = pending.line.checked_sub(state.first) else { continue };
            let lines: Vec<&str> = state.window.iter().skip(start as usize).map(String::as_str).collect();
            let Some(crash) = detect::read(pending.shape, &lines) else { continue };
            let lines = lines.len();
            let signature = problem_signature(&self.settings.origin.program, &crash);
            if self.first_of(&signature.key) {
                // The lines before the story, not the story itself.
                let story_lines = lines;
                let crumbs: Vec<_> =
                    self.breadcrumbs.iter().take(self.breadcrumbs.len().saturating_sub(story_lines)).cloned().collect();
                let (id, event) =
                    event::problem_event(&self.settings.origin, &crash, pending.shape, pending.at, &crumbs);
                self.hand_on(Problem { signature, id, event });
            }
        }
    }

    /// Whether `key` is new; counts it as a repeat if not.
    fn first_of(&mut self, key: &str) -> bool {
        if let Some(repeats) = self.seen.get_mut(key) {
            *repeats += 1;
            self.stats.repeats += 1;
            return false;
        }
        if self.order.len() >= MAX_SIGNATURES
            && let Some(oldest) = self.order.pop_front()
            && let Some(count) = self.seen.remove(&oldest).filter(|c| *c > 0)
        {
            self.send(Found::Repeats { key: oldest, count });
        }
        self.seen.insert(key.to_owned(), 0);
        self.order.push_back(key.to_owned());
        true
    }

    fn hand_on(&mut self, problem: Problem) {
        self.stats.problems += 1;
        self.send(Found::Problem(problem));
    }

    fn hand_on_repeats(&mut self) {
        self.last_repeats = Instant::now();
        let counts: Vec<(String, u64)> =
            self.seen.iter_mut().filter(|(_, c)| **c > 0).map(|(k, c)| (k.clone(), std::mem::take(c))).collect();
        for (key, count) in counts {
            self.send(Found::Repeats { key, count });
        }
    }

    fn send(&mut self, found: Found) {
        match self.out.try_send(found) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.stats.unsent += 1,
        }
    }
}

/// Numbers, hex and ids in a message: what differs between two lines of
/// one problem.
static VARIABLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|0x[0-9a-f]+|[0-9a-f]*\d[0-9a-f]*")
        .expect("constant pattern")
});

/// The signature of an error line: program, level, logger and the message
/// with its numbers and ids taken out.
pub fn log_signature(program: &str, line: &level::Leveled<'_>) -> (String, String) {
    let message: String = line.message.chars().take(200).collect();
    let shape = VARIABLE.replace_all(&message, "<n>");
    let key = format!("{program}|log|{}|{}|{shape}", line.level.sentry(), line.logger.as_deref().unwrap_or(""));
    let title: String = shape.chars().take(100).collect();
    (key, format!("{} log line: {title}", line.level.sentry()))
}

/// The signature of a story: program, runtime, type and the innermost
/// frames (the app's own if any).
pub fn problem_signature(program: &str, crash: &crate::story::Crash) -> Signature {
    let name = |f: &crate::story::Frame| f.function.clone().or_else(|| f.filename.clone());
    let in_app: Vec<String> = crash.frames.iter().rev().filter(|f| f.in_app).filter_map(name).take(3).collect();
    let frames = if in_app.is_empty() { crash.frames.iter().rev().filter_map(name).take(3).collect() } else { in_app };
    let kind = if crash.kind.is_empty() { format!("{:?}", crash.runtime) } else { crash.kind.clone() };
    let mut key = format!("{program}|live|{:?}|{kind}", crash.runtime);
    // Without frames, the message (numbers out) tells problems apart.
    if frames.is_empty() {
        key.push('|');
        key.push_str(&VARIABLE.replace_all(&crash.value.chars().take(200).collect::<String>(), "<n>"));
    }
    for frame in &frames {
        key.push('|');
        key.push_str(frame);
    }
    let title = match frames.first() {
        Some(top) => format!("{kind} in {top} (survived)"),
        None => format!("{kind} (survived)"),
    };
    Signature { key, title }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn worker(events_from_logs: Option<Level>) -> (Worker, mpsc::Receiver<Found>) {
        let (tx, rx) = mpsc::sync_channel(16);
        let settings = Settings {
            forward: None,
            problems: true,
            events_from_logs,
            origin: Origin { program: "server".into(), ..Origin::default() },
        };
        (Worker::new(settings, tx), rx)
    }

    #[test]
    fn a_storm_of_one_error_is_one_problem_and_a_count() {
        let (mut w, rx) = worker(Some(Level::Error));
        let mut text = Vec::new();
        for i in 0..10_000 {
            text.extend_from_slice(format!("{{\"level\":\"error\",\"msg\":\"user {i} not found\"}}\n").as_bytes());
            text.extend_from_slice(format!("level=info msg=\"request {i}\"\n").as_bytes());
        }
        // Split mid-line, as reads are.
        let (a, b) = text.split_at(12_345);
        w.take(Stream::Stdout, SystemTime::now(), a);
        w.take(Stream::Stdout, SystemTime::now(), b);
        w.hand_on_repeats();
        let found: Vec<Found> = rx.try_iter().collect();
        assert_eq!(found.len(), 2, "{found:?}");
        let Found::Problem(problem) = &found[0] else { panic!("{found:?}") };
        assert_eq!(problem.event["logentry"]["formatted"], "user 0 not found");
        assert!(matches!(&found[1], Found::Repeats { count: 9_999, .. }));
        assert_eq!(w.stats.lines, 20_000);
    }

    #[test]
    fn a_storm_of_panics_waits_bounded() {
        let (mut w, _rx) = worker(None);
        let line = "thread 'w' panicked at src/a.rs:1:1:\nboom\n";
        for _ in 0..1000 {
            w.take(Stream::Stderr, SystemTime::now(), line.as_bytes());
        }
        assert_eq!((w.pending.len(), w.stats.unread), (MAX_PENDING, 1000 - MAX_PENDING as u64));
    }

    #[test]
    fn a_story_waits_for_its_frames_then_is_read_once() {
        let (mut w, rx) = worker(None);
        let text = "serving\nthread 'worker-2' panicked at src/main.rs:7:9:\nbad request 17\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\nstill serving\n";
        w.take(Stream::Stderr, SystemTime::now(), text.as_bytes());
        assert_eq!(w.pending.len(), 1);
        w.settle(true);
        let found: Vec<Found> = rx.try_iter().collect();
        let [Found::Problem(problem)] = &found[..] else { panic!("{found:?}") };
        let exception = &problem.event["exception"]["values"][0];
        assert_eq!(exception["value"], "bad request 17");
        assert_eq!(exception["mechanism"]["handled"], false);
        assert_eq!(problem.event["tags"]["crashwatch.live"], "true");
        assert_eq!(problem.event["breadcrumbs"]["values"][0]["message"], "serving");
    }
}
