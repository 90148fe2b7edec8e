//! What `crashwatch run` does with a report once it is saved: queue it for
//! Sentry, durably, and try to send it before crashwatch exits.
//!
//! Nothing here may fail the run. The report is already in the spool; the
//! envelope is written to the outbox (fsync'd) before any network I/O, and
//! whatever is not delivered within the flush deadline stays there for
//! `crashwatch send` or the next `crashwatch run`.
//!
//! How a report is to be sent is recorded beside it ([`Intent`], the
//! report's `deliver.json`) until it is queued, so that a report whose
//! crashwatch was killed is sent by whichever crashwatch finishes it as the
//! one that caught it would have sent it (its scrub patterns above all).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::commands::health::Link;
use crate::errors::Chain;
use crate::metrics::Metrics;
use crate::report::CrashReport;
use crate::sentry::deliver;
use crate::sentry::envelope::{Envelope, Item, ItemType};
use crate::sentry::outbox::Withdrawal;
use crate::sentry::scrub::Scrubber;
use crate::sentry::throttle::{self, Origin, Summary, Throttle, Verdict};
use crate::sentry::{Dsn, Outbox, SystemClock, event};
use crate::spool::{Spool, SpoolDir};
use crate::symbolicate::Symbolicated;

mod intent;

pub use intent::Intent;
use intent::kept_local_because;

/// How often a long run checks for crash-loop windows that have ended.
const WINDOW_CHECK: Duration = Duration::from_secs(60);

/// The settings a report is queued with.
#[derive(Clone, Copy)]
struct How<'a> {
    intent: &'a Intent,
    scrubber: &'a Scrubber,
    throttle: Option<&'a Throttle>,
}

/// What became of a report handed to [`Delivery::queue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queued {
    /// In the outbox.
    Yes,
    /// Kept locally for good, and why (no DSN, a repeat, over budget…).
    KeptLocal(String),
    /// Could not be queued now; worth trying again later.
    Failed(String),
}

impl Queued {
    /// The line of the summary: `None` when queued.
    pub fn why_not(&self) -> Option<String> {
        match self {
            Queued::Yes => None,
            Queued::KeptLocal(why) | Queued::Failed(why) => Some(why.clone()),
        }
    }
}

pub struct Delivery {
    target: Option<(Dsn, Outbox)>,
    /// With a DSN but no usable outbox: why reports cannot be queued.
    unusable: Option<String>,
    /// The spool's directory (with a target only), for throttles of
    /// recorded intents.
    spool: Option<SpoolDir>,
    /// This crashwatch's own settings.
    intent: Intent,
    scrubber: Scrubber,
    flush_timeout: Duration,
    /// `--delivery direct`: this process sends; else it only queues.
    send_directly: bool,
    /// Crash-loop groups and the hourly budget (with a target only).
    throttle: Option<Throttle>,
    /// Signatures this crashwatch sent in full: a `--restart` loop that
    /// gives up summarises their repeats at once.
    sent_signatures: Mutex<Vec<String>>,
    metrics: Arc<Metrics>,
    /// Flushes running beside the child; [`Delivery::finish`] waits for them
    /// so that no upload is cut off by crashwatch's exit.
    background: Mutex<Vec<JoinHandle<()>>>,
}

/// How [`Delivery`] treats reports.
pub struct Options {
    /// Bound on the outbox.
    pub max_bytes: Option<u64>,
    pub flush_timeout: Duration,
    /// Send from this process; otherwise only queue (`--delivery spool`).
    pub send_directly: bool,
    pub scrubber: Scrubber,
    /// The settings recorded with each report (`scrub` must be the patterns
    /// `scrubber` was made of).
    pub intent: Intent,
}

impl Delivery {
    /// Local mode (reports stay in the spool) without a DSN or a spool.
    pub fn new(dsn: Option<Dsn>, spool: Option<&Spool>, options: Options, metrics: Arc<Metrics>) -> Delivery {
        let spool = spool.and_then(Spool::dir);
        let (target, unusable) = match (dsn, spool) {
            // Local mode: each report's summary says it was not sent.
            (None, _) => (None, None),
            (Some(dsn), None) => {
                tracing::warn!("reports cannot be sent to {dsn}: there is no usable spool to queue them in");
                (None, Some("there is no usable spool to queue it in".to_string()))
            }
            (Some(dsn), Some(spool)) => match deliver::open_outbox(spool, options.max_bytes) {
                Ok(outbox) => (Some((dsn, outbox)), None),
                Err(e) => {
                    tracing::warn!("reports cannot be sent to {dsn}: {}", Chain(&e));
                    (None, Some(format!("the outbox is unusable: {}", Chain(&e))))
                }
            },
        };
        let spool = spool.filter(|_| target.is_some()).cloned();
        let intent = options.intent;
        let throttle = spool.as_ref().map(|spool| {
            let window = Duration::from_millis(intent.group_window_ms);
            Throttle::new(spool, window, intent.max_per_hour, Arc::new(SystemClock))
        });
        Delivery {
            target,
            unusable,
            spool,
            intent,
            scrubber: options.scrubber,
            flush_timeout: options.flush_timeout,
            send_directly: options.send_directly,
            throttle,
            sent_signatures: Mutex::new(Vec::new()),
            metrics,
            background: Mutex::new(Vec::new()),
        }
    }

    /// Whether reports can be queued (there is a DSN and an outbox).
    pub fn has_target(&self) -> bool {
        self.target.is_some()
    }

    /// This crashwatch's own settings, to record with a report it files.
    pub fn intent(&self) -> &Intent {
        &self.intent
    }

    /// The DSN reports go to, when they can be queued.
    pub fn dsn(&self) -> Option<&Dsn> {
        self.target.as_ref().map(|(dsn, _)| dsn)
    }

    /// The outbox, when there is one.
    pub fn outbox(&self) -> Option<&Outbox> {
        self.target.as_ref().map(|(_, outbox)| outbox)
    }

    /// Why `report` is not sent, for its summary, judging by its kind and
    /// whether there is a DSN; `None` when it would be queued.
    pub fn kept_local_because(&self, report: &CrashReport) -> Option<String> {
        match &self.unusable {
            Some(why) => Some(format!("not sent: {why}; the report is kept in the spool")),
            None => kept_local_because(self.target.is_some(), report, &self.intent),
        }
    }

    /// The spool's directory when there is somewhere to send to.
    pub fn spool_dir(&self) -> Option<&SpoolDir> {
        self.spool.as_ref()
    }

    /// Queues an envelope without a report (sessions, check-ins); its
    /// outbox entry, or `None` (logged) when it could not be queued.
    pub fn enqueue(&self, envelope: Envelope) -> Option<String> {
        let (dsn, outbox) = self.target.as_ref()?;
        outbox
            .enqueue(dsn, envelope)
            .inspect_err(|e| tracing::warn!("failed to queue a session or check-in for Sentry: {}", Chain(e)))
            .ok()
    }

    /// Takes back outbox entry `id` unless it has left the outbox (see
    /// [`Outbox::withdraw`]); an entry that cannot be looked at counts as gone.
    pub fn withdraw(&self, id: &str) -> Withdrawal {
        let Some((_, outbox)) = &self.target else { return Withdrawal::Gone };
        outbox.withdraw(id).unwrap_or_else(|e| {
            tracing::warn!("{}", Chain(&e));
            Withdrawal::Gone
        })
    }

    /// Queues `report` (whose files are in `dir`) with this crashwatch's
    /// own settings; see [`Delivery::queue_as`].
    pub fn queue(
        &self,
        report: &CrashReport,
        dir: &Path,
        stacks: Option<&Symbolicated>,
        link: Option<&Link>,
    ) -> Queued {
        let how = How { intent: &self.intent, scrubber: &self.scrubber, throttle: self.throttle.as_ref() };
        self.queue_with(report, dir, stacks, how, link)
    }

    /// Queues `report` as `intent` (recorded by the crashwatch that caught
    /// it) says, if it deserves sending: it is a crash, not a repeat of one
    /// sent within the group window, and the hour's budget allows. Its
    /// envelope carries what `link` says of the run's session and check-in.
    pub fn queue_as(
        &self,
        report: &CrashReport,
        dir: &Path,
        stacks: Option<&Symbolicated>,
        intent: &Intent,
        link: Option<&Link>,
    ) -> Queued {
        if *intent == self.intent {
            return self.queue(report, dir, stacks, link);
        }
        let scrubber = match Scrubber::new(&intent.scrub) {
            Ok(scrubber) => scrubber,
            // Better kept than sent with a secret in it.
            Err(e) => return Queued::KeptLocal(format!("not sent: its --scrub patterns are not valid: {}", Chain(&e))),
        };
        let throttle = self.spool.as_ref().map(|spool| {
            let window = Duration::from_millis(intent.group_window_ms);
            Throttle::new(spool, window, intent.max_per_hour, Arc::new(SystemClock))
        });
        self.queue_with(report, dir, stacks, How { intent, scrubber: &scrubber, throttle: throttle.as_ref() }, link)
    }

    fn queue_with(
        &self,
        report: &CrashReport,
        dir: &Path,
        stacks: Option<&Symbolicated>,
        how: How<'_>,
        link: Option<&Link>,
    ) -> Queued {
        let How { intent, scrubber, throttle } = how;
        if let Some(why) = kept_local_because(self.target.is_some(), report, intent) {
            tracing::debug!(report = %report.short_id(), kind = report.kind.name(), "kept locally, not sent");
            return Queued::KeptLocal(why);
        }
        let Some((dsn, outbox)) = self.target.as_ref() else {
            return Queued::Failed("not sent: no outbox".into());
        };
        let mut admitted = None;
        if let Some(throttle) = throttle {
            let signature = throttle::signature(report, stacks);
            let origin = Origin {
                program: report.program_name(),
                release: report.release.clone(),
                environment: report.environment.clone(),
            };
            match throttle.admit(&signature, &report.id, &origin, &mut |s: &Summary| self.queue_summary(s)) {
                Ok(Verdict::Send) => admitted = Some((throttle, signature)),
                Ok(Verdict::Repeat { first_report, repeats }) => {
                    self.metrics.repeat();
                    return Queued::KeptLocal(format!(
                        "not sent: repeat {repeats} of report {} ({}) within --group-window; \
                         the count is sent as one summary",
                        crate::report::short_id(&first_report),
                        signature.title
                    ));
                }
                Ok(Verdict::OverBudget { per_hour }) => {
                    self.metrics.over_budget();
                    tracing::warn!(
                        report = %report.short_id(),
                        "kept locally, not sent: the budget of {per_hour} reports and summaries per hour \
                         (--max-reports-per-hour) is spent"
                    );
                    return Queued::KeptLocal(format!("not sent: over the budget of {per_hour} reports per hour"));
                }
                // Better one report too many than one lost.
                Err(e) => tracing::warn!("{}; sending the report without crash-loop grouping", Chain(&e)),
            }
        }
        let queued = event::envelope(report, dir, stacks, scrubber, intent.minidump())
            .and_then(|mut envelope| {
                if let Some(link) = link {
                    linked(&mut envelope, link)?;
                }
                Ok(envelope)
            })
            .map_err(|e| Chain(&e).to_string())
            .and_then(|envelope| outbox.enqueue(dsn, envelope).map_err(|e| Chain(&e).to_string()));
        match queued {
            Ok(_) => {
                if let Some((_, signature)) = admitted {
                    self.sent_signatures.lock().unwrap_or_else(|e| e.into_inner()).push(signature.key);
                }
                if !self.send_directly {
                    tracing::info!(
                        report = %report.short_id(),
                        "queued in {} for `crashwatch send --watch` (--delivery spool)",
                        outbox.dir().display()
                    );
                }
                Queued::Yes
            }
            Err(e) => {
                self.metrics.failed(1);
                tracing::error!(report = %report.short_id(), "failed to queue the report for Sentry: {e}");
                // Its repeats must not be counted against a report Sentry
                // never got.
                if let Some((throttle, signature)) = admitted
                    && let Err(e) = throttle.withdraw(&signature, &report.id)
                {
                    tracing::warn!("{}", Chain(&e));
                }
                Queued::Failed(format!("not sent: failed to queue it for Sentry: {e}"))
            }
        }
    }

    /// Queues the event of a problem the child survived ([`crate::live`]),
    /// through the outbox like a crash's, scrubbed, and under the same
    /// crash-loop budget: the first of its signature in the group window is
    /// sent, the rest are counted.
    pub fn queue_live(
        &self,
        problem: crate::live::Problem,
        origin: &crate::live::Origin,
        session: Option<crate::sentry::session::Update>,
    ) -> Queued {
        let Some((dsn, outbox)) = self.target.as_ref() else {
            return Queued::KeptLocal("not sent: no DSN (--dsn or SENTRY_DSN)".into());
        };
        let crate::live::Problem { signature, id, mut event } = problem;
        if let Some(throttle) = &self.throttle {
            let origin = Origin {
                program: origin.program.clone(),
                release: origin.release.clone(),
                environment: origin.environment.clone(),
            };
            match throttle.admit(&signature, &id, &origin, &mut |s: &Summary| self.queue_summary(s)) {
                Ok(Verdict::Send) => {}
                Ok(Verdict::Repeat { first_report, repeats }) => {
                    self.metrics.repeat();
                    return Queued::KeptLocal(format!(
                        "not sent: repeat {repeats} of event {first_report} ({}) within --group-window",
                        signature.title
                    ));
                }
                Ok(Verdict::OverBudget { per_hour }) => {
                    self.metrics.over_budget();
                    return Queued::KeptLocal(format!("not sent: over the budget of {per_hour} reports per hour"));
                }
                Err(e) => tracing::warn!("{}; sending the event without crash-loop grouping", Chain(&e)),
            }
        }
        self.scrubber.scrub_json(&mut event);
        let queued = id
            .parse()
            .and_then(|id| Envelope::new(id, event))
            .and_then(|mut envelope| {
                if let Some(update) = &session {
                    envelope.add_item(Item::json(ItemType::Session, update)?)?;
                }
                Ok(envelope)
            })
            .map_err(|e| Chain(&e).to_string())
            .and_then(|envelope| outbox.enqueue(dsn, envelope).map_err(|e| Chain(&e).to_string()));
        match queued {
            Ok(_) => {
                self.sent_signatures.lock().unwrap_or_else(|e| e.into_inner()).push(signature.key);
                Queued::Yes
            }
            Err(e) => {
                self.metrics.failed(1);
                if let Some(throttle) = &self.throttle
                    && let Err(e) = throttle.withdraw(&signature, &id)
                {
                    tracing::warn!("{}", Chain(&e));
                }
                tracing::error!("failed to queue the event of a live problem for Sentry: {e}");
                Queued::Failed(format!("not sent: failed to queue it for Sentry: {e}"))
            }
        }
    }

    /// Counts `count` repeats of the live problem of signature `key`.
    pub fn count_live_repeats(&self, key: &str, count: u64) {
        let Some(throttle) = &self.throttle else { return };
        if let Err(e) = throttle.count_repeats(key, count) {
            tracing::warn!("{}; {count} repeats of a live problem are not counted", Chain(&e));
        }
    }

    /// Queues the summaries of the groups of `keys` (a run's live problems,
    /// which end with the run), whatever their window.
    pub fn queue_summaries_of(&self, keys: &[String]) {
        let Some(throttle) = &self.throttle else { return };
        if let Err(e) = throttle.due(Some(keys), &mut |s: &Summary| self.queue_summary(s)) {
            tracing::warn!("{}; the counts of live problems wait for a later run", Chain(&e));
        }
    }

    /// Queues the summaries of crash-loop groups that are due: those whose
    /// window has ended, and with `loop_ended` those this crashwatch opened
    /// (its `--restart` loop is over, no more repeats will come from it).
    /// Returns how many were queued.
    pub fn queue_due_summaries(&self, loop_ended: bool) -> usize {
        let Some(throttle) = &self.throttle else { return 0 };
        let mine = loop_ended.then(|| self.sent_signatures.lock().unwrap_or_else(|e| e.into_inner()).clone());
        let mut queued = 0;
        let result = throttle.due(mine.as_deref(), &mut |s: &Summary| {
            let ok = self.queue_summary(s);
            queued += usize::from(ok);
            ok
        });
        if let Err(e) = result {
            tracing::warn!("{}; crash-loop summaries wait for a later run", Chain(&e));
        }
        queued
    }

    fn queue_summary(&self, summary: &Summary) -> bool {
        let Some((dsn, outbox)) = &self.target else { return false };
        tracing::info!(
            "{} crashed {} more time(s) like report {} ({}); sending the count",
            summary.origin.program,
            summary.repeats,
            crate::report::short_id(&summary.first_report),
            summary.title
        );
        let queued = enqueue_summary(outbox, dsn, summary);
        if !queued {
            self.metrics.failed(1);
        }
        queued
    }

    /// While the child runs (for days, perhaps), a thread checks once a
    /// minute for crash-loop windows that have ended — repeats may come from
    /// other crashwatch processes sharing the spool, as in a systemd crash
    /// loop — and sends their summaries.
    pub fn close_windows_periodically(self: &Arc<Self>) {
        if self.throttle.is_none() {
            return;
        }
        let delivery = Arc::downgrade(self);
        let thread = std::thread::Builder::new().name("windows".into()).spawn(move || {
            loop {
                std::thread::sleep(WINDOW_CHECK);
                let Some(delivery) = delivery.upgrade() else { return };
                if delivery.queue_due_summaries(false) > 0 {
                    delivery.flush_in_background(deliver::Mode::Due);
                }
            }
        });
        if let Err(e) = thread {
            tracing::warn!("failed to start checking crash-loop windows: {e}");
        }
    }

    /// Reports waiting in the outbox, when there is one.
    pub fn pending(&self) -> Option<usize> {
        let (_, outbox) = self.target.as_ref()?;
        outbox.pending().ok().map(|p| p.len())
    }

    /// Sends what is waiting on a thread of its own, while the child runs.
    /// At start, `mode` is [`deliver::Mode::Now`]: a new crashwatch is a
    /// natural moment to retry what an earlier one could not send (a crash
    /// loop makes one attempt per restart); Relay's rate limits still hold.
    pub fn flush_in_background(self: &Arc<Self>, mode: deliver::Mode) {
        if self.target.is_none() || !self.send_directly {
            return;
        }
        let delivery = Arc::clone(self);
        let thread =
            std::thread::Builder::new().name("send".into()).spawn(move || delivery.flush(delivery.flush_timeout, mode));
        match thread {
            Ok(handle) => {
                let mut background = self.background.lock().unwrap_or_else(|e| e.into_inner());
                // A long run (restarts, descendants' crashes, window checks)
                // must not keep every finished thread it ever started.
                let (done, running): (Vec<_>, Vec<_>) = background.drain(..).partition(|h| h.is_finished());
                for handle in done {
                    let _ = handle.join();
                }
                *background = running;
                background.push(handle);
            }
            Err(e) => tracing::warn!("failed to start sending reports in the background: {e}"),
        }
    }

    /// At crashwatch's end: lets the background sends finish, then sends
    /// what is still waiting, all within one flush timeout. Entries still in
    /// their retry backoff are tried too (Relay's rate limits still hold):
    /// this may be the last chance, in a container whose spool goes with it
    /// after `docker stop`, and it is one attempt per crashwatch.
    pub fn finish(&self) {
        if !self.send_directly {
            return;
        }
        let deadline = Instant::now() + self.flush_timeout;
        // Each background flush has its own deadline, at most one flush
        // timeout after it started, so these joins are bounded.
        let handles: Vec<_> = self.background.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
        for handle in handles {
            let _ = handle.join();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if !left.is_zero() {
            self.flush(left, deliver::Mode::Now);
        }
    }

    /// Sends what is waiting within `limit`, and says how it went.
    fn flush(&self, limit: Duration, mode: deliver::Mode) {
        let Some((dsn, outbox)) = &self.target else { return };
        match deliver::flush_for(outbox, dsn, limit, mode) {
            Ok(summary) if summary.left_behind() + summary.set_aside() == 0 => {
                self.metrics.sent(summary.sent);
                if summary.sent > 0 {
                    tracing::info!("{} to {dsn}", summary.describe());
                }
            }
            Ok(summary) => {
                self.metrics.sent(summary.sent);
                self.metrics.failed(summary.set_aside());
                tracing::warn!(
                    "{} to {dsn}; what is waiting stays in the spool for `crashwatch send` or the next run",
                    summary.describe()
                )
            }
            Err(e) => tracing::warn!("failed to deliver reports to {dsn}: {}; they stay in the spool", Chain(&e)),
        }
    }
}

/// Adds to a crash's envelope what ties it to its run: the session's final
/// update, and the check-in's trace and monitor as contexts of the event.
fn linked(envelope: &mut Envelope, link: &Link) -> Result<(), crate::sentry::EnvelopeError> {
    if let Some(update) = &link.session {
        envelope.add_item(Item::json(ItemType::Session, update)?)?;
    }
    if let (Some(monitor), Some(event)) = (&link.monitor, envelope.event_mut()) {
        let contexts = event
            .as_object_mut()
            .and_then(|e| e.entry("contexts").or_insert_with(|| serde_json::json!({})).as_object_mut());
        if let Some(contexts) = contexts {
            let span_id = &uuid::Uuid::new_v4().simple().to_string()[..16];
            contexts.insert(
                "trace".into(),
                serde_json::json!({"type": "trace", "trace_id": monitor.trace_id, "span_id": span_id}),
            );
            contexts.insert(
                "monitor".into(),
                serde_json::json!({"type": "monitor", "slug": monitor.slug, "check_in_id": monitor.check_in_id}),
            );
        }
    }
    Ok(())
}

/// Queues the event of a crash-loop summary; false (and logged) if it could
/// not be.
pub fn enqueue_summary(outbox: &Outbox, dsn: &Dsn, summary: &Summary) -> bool {
    let queued = event::summary_envelope(summary)
        .map_err(|e| Chain(&e).to_string())
        .and_then(|envelope| outbox.enqueue(dsn, envelope).map_err(|e| Chain(&e).to_string()));
    if let Err(e) = &queued {
        tracing::error!("failed to queue the summary of {} repeats: {e}", summary.repeats);
    }
    queued.is_ok()
}
