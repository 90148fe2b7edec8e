//! Release Health sessions and cron check-ins of the runs of the child.
//!
//! Each run is a session (with a release and a DSN, unless
//! `--no-sessions`) and, under `--monitor SLUG`, a monitored job run:
//!
//! ```text
//! Started ── session: admit ─ individual: queue {init, ok}  ─┐
//!         │                 └ aggregated: nothing yet        │ one background flush
//!         └─ monitor: queue {in_progress}  ─────────────────┘
//!    …the run…
//! Ended ─── session: withdraw the start if unsent; the final update
//!         │   says `init` exactly when Relay never got the start
//!         ├─ a report is filed: the final update rides in its envelope,
//!         │   the crash event carries the check-in's trace id
//!         ├─ not carried (no report, or one kept locally): queued alone
//!         ├─ aggregated: counted in its minute's bucket
//!         └─ monitor: withdraw the in_progress if unsent; queue {ok|error}
//! ```
//!
//! Everything goes through the outbox like reports: durable, retried, and
//! never in the way of the child, which runs whatever Sentry does.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::commands::delivery::Delivery;
use crate::config::RunConfig;
use crate::errors::Chain;
use crate::sentry::SystemClock;
use crate::sentry::check_in::{self, Monitor};
use crate::sentry::deliver::Mode;
use crate::sentry::envelope::{Envelope, Item, ItemType};
use crate::sentry::outbox::Withdrawal;
use crate::sentry::session::{self, Aggregates, Attrs, Outcome, Session};
use crate::sentry::session_budget::{Admission, SessionBudget};

/// What every run of one `crashwatch run` shares.
pub struct Health {
    sessions: Option<Sessions>,
    monitor: Option<Monitor>,
}

struct Sessions {
    did: String,
    attrs: Attrs,
    budget: SessionBudget,
}

/// Why a `crashwatch run` with a DSN sends no sessions, if it sends none.
pub fn no_sessions_because(config: &RunConfig) -> Option<&'static str> {
    if !config.sessions {
        Some("--no-sessions")
    } else if config.release.is_none() {
        Some("no release: sessions are per release (--release or SENTRY_RELEASE)")
    } else {
        None
    }
}

impl Health {
    pub fn new(config: &RunConfig, delivery: &Delivery) -> Health {
        let sessions = match (no_sessions_because(config), &config.release, delivery.spool_dir()) {
            (None, Some(release), Some(root)) => Some(Sessions {
                did: session::host_id(),
                attrs: Attrs { release: release.clone(), environment: config.environment.clone() },
                budget: SessionBudget::new(root, config.max_sessions_per_hour, Arc::new(SystemClock)),
            }),
            (Some(why), _, Some(_)) => {
                tracing::debug!("no Release Health sessions: {why}");
                None
            }
            _ => None,
        };
        let monitor = config.monitor.clone().filter(|_| delivery.spool_dir().is_some());
        if config.monitor.is_some() && monitor.is_none() {
            tracing::warn!("no check-ins for --monitor: they need a DSN and a usable spool");
        }
        Health { sessions, monitor }
    }

    /// The state of one run.
    pub fn run(&self) -> RunHealth<'_> {
        RunHealth { health: self, session: None, job: None, live: Arc::new(Mutex::new(None)) }
    }

    /// Queues the counts of aggregated runs that are due; with `now`, all of
    /// them (a `--restart` loop is over).
    pub fn queue_aggregates(&self, delivery: &Delivery, now: bool) {
        let Some(sessions) = &self.sessions else { return };
        let queued = sessions.budget.due(now, &mut |aggregates: &Aggregates| {
            let item = Item::json(ItemType::Sessions, aggregates);
            item.is_ok_and(|item| enqueue_item(delivery, item).is_some())
        });
        if let Err(e) = queued {
            tracing::warn!("{}; the session counts wait for a later run", Chain(&e));
        }
    }
}

/// One run's session and check-in.
pub struct RunHealth<'a> {
    health: &'a Health,
    session: Option<RunSession>,
    job: Option<Job>,
    /// The run's individual session, once it started, for the updates of
    /// problems it survives (sent from the thread that reports them).
    live: LiveSession,
}

/// A run's session, shared with the reporter of its live problems.
pub type LiveSession = Arc<Mutex<Option<Session>>>;

/// The update that says a running session has had `errors` errors
/// (`ok` with errors: errored once it ends), to travel with the event of
/// a problem it survived; `None` without an individual session.
pub fn errored_update(live: &LiveSession, errors: u64) -> Option<session::Update> {
    let mut slot = live.lock().unwrap_or_else(|e| e.into_inner());
    slot.as_mut().map(|session| session.errored(errors, SystemTime::now()))
}

enum RunSession {
    /// The session itself is in [`RunHealth::live`].
    Individual {
        start: Option<String>,
    },
    Aggregated {
        started: SystemTime,
    },
}

struct Job {
    run: check_in::Run,
    in_progress: Option<String>,
}

/// What a run's crash report carries of its session and check-in.
#[derive(Debug, Clone, Default)]
pub struct Link {
    /// The session's final update, to travel with the crash event.
    pub session: Option<session::Update>,
    /// The job run's check-in.
    pub monitor: Option<MonitorLink>,
}

/// The check-in of a job run, for its crash event.
#[derive(Debug, Clone)]
pub struct MonitorLink {
    pub slug: String,
    pub check_in_id: String,
    /// Shared by the check-ins and the event: how Sentry links them.
    pub trace_id: String,
}

impl RunHealth<'_> {
    /// The child started: opens its session and checks in.
    pub fn started(&mut self, delivery: &Arc<Delivery>) {
        let now = SystemTime::now();
        let mut queued = false;
        if let Some(sessions) = &self.health.sessions {
            let admission = sessions.budget.admit().unwrap_or_else(|e| {
                // Better one session too many than a run not counted.
                tracing::warn!("{}; this run gets a session of its own", Chain(&e));
                Admission::Individual
            });
            self.session = Some(match admission {
                Admission::Individual => {
                    let mut session = Session::new(now, sessions.did.clone(), sessions.attrs.clone());
                    let start = Item::json(ItemType::Session, &session.start(now)).ok();
                    let start = start.and_then(|item| enqueue_item(delivery, item));
                    queued |= start.is_some();
                    *self.live.lock().unwrap_or_else(|e| e.into_inner()) = Some(session);
                    RunSession::Individual { start }
                }
                Admission::Aggregated => {
                    tracing::debug!("many runs this hour: this one is counted in per-minute session aggregates");
                    RunSession::Aggregated { started: now }
                }
            });
        }
        if let Some(monitor) = &self.health.monitor {
            let run = check_in::Run::new();
            let in_progress = Item::json(ItemType::CheckIn, &run.started(monitor)).ok();
            let in_progress = in_progress.and_then(|item| enqueue_item(delivery, item));
            queued |= in_progress.is_some();
            self.job = Some(Job { run, in_progress });
        }
        if queued {
            delivery.flush_in_background(Mode::Due);
        }
    }

    /// The run's session, for the reporter of its live problems.
    pub fn live_session(&self) -> LiveSession {
        Arc::clone(&self.live)
    }

    /// The run ended with `outcome` after `ran_for`: its session's final
    /// update and the ids its crash report carries.
    pub fn ending(&mut self, delivery: &Delivery, outcome: Outcome, ran_for: Duration) -> Link {
        let mut link = Link::default();
        // Taken: nothing the reporter of live problems sends from here on
        // may follow the final update.
        let taken = self.live.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let (Some(RunSession::Individual { start }), Some(mut session)) = (&mut self.session, taken) {
            // `init` exactly once: on the start if Relay got it, else here.
            let init = match start.take() {
                Some(id) => delivery.withdraw(&id) == Withdrawal::Withdrawn,
                None => true,
            };
            link.session = Some(session.end(outcome, init, SystemTime::now(), ran_for));
        }
        if let (Some(job), Some(monitor)) = (&self.job, &self.health.monitor) {
            link.monitor = Some(MonitorLink {
                slug: monitor.slug.clone(),
                check_in_id: job.run.check_in_id(),
                trace_id: job.run.trace_id().to_owned(),
            });
        }
        link
    }

    /// Queues what the crash report did not carry (`carried`: its envelope
    /// has the session's final update) and the job's final check-in.
    pub fn finish(
        self,
        delivery: &Delivery,
        link: Link,
        carried: bool,
        outcome: Outcome,
        exit_ok: bool,
        ran_for: Duration,
    ) {
        if let Some(update) = link.session.filter(|_| !carried)
            && let Ok(item) = Item::json(ItemType::Session, &update)
        {
            enqueue_item(delivery, item);
        }
        if let (Some(RunSession::Aggregated { started }), Some(sessions)) = (&self.session, &self.health.sessions) {
            if let Err(e) = sessions.budget.count(&sessions.attrs, &sessions.did, *started, outcome) {
                tracing::warn!("{}; this run is not counted in Release Health", Chain(&e));
            }
            self.health.queue_aggregates(delivery, false);
        }
        if let (Some(job), Some(monitor)) = (self.job, &self.health.monitor) {
            // An in_progress still waiting is replaced by the final check-in.
            if let Some(id) = &job.in_progress {
                delivery.withdraw(id);
            }
            if let Ok(item) = Item::json(ItemType::CheckIn, &job.run.ended(monitor, exit_ok, ran_for)) {
                enqueue_item(delivery, item);
            }
        }
    }
}

/// Queues `item` alone; its outbox entry, or `None` (logged).
fn enqueue_item(delivery: &Delivery, item: Item) -> Option<String> {
    let ty = item.ty.as_str();
    let mut envelope = Envelope::without_event();
    envelope.add_item(item).inspect_err(|e| tracing::warn!("failed to build a {ty} item: {}", Chain(e))).ok()?;
    delivery.enqueue(envelope)
}
