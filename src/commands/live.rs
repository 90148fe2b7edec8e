//! The receiving end of [`crate::live`] in `crashwatch run`: queues each
//! problem's event through the outbox (durable, retried, budgeted like a
//! crash), counts repeats, and tells the run how many errors it had, so
//! that its Release Health session ends `errored` rather than healthy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::commands::delivery::{Delivery, Queued};
use crate::commands::health::{self, LiveSession};
use crate::config::RunConfig;
use crate::live::ship::{LogSettings, Shipper};
use crate::live::{self, Found, Origin, Settings};
use crate::logs::Tap;
use crate::sentry::deliver::Mode;
use crate::sentry::scrub::Scrubber;

/// Problems waiting for the reporter, at most; the worker counts the rest.
const QUEUE: usize = 256;

/// The live detection of one run.
pub struct Live {
    worker: JoinHandle<live::Stats>,
    reporter: JoinHandle<()>,
    done: Receiver<()>,
    /// Whether the run failed, for the stories still settling at its end.
    failed: mpsc::Sender<bool>,
    /// Problems of this run (sent or counted): its session's errors.
    pub errors: Arc<AtomicU64>,
}

impl Live {
    /// Starts detection for a run when `config` asks for any; the tap to
    /// hand the pumps.
    pub fn start(config: &RunConfig, delivery: &Arc<Delivery>, session: LiveSession) -> Option<(Tap, Live)> {
        if !config.live_problems && config.events_from_logs.is_none() && config.forward_logs.is_none() {
            return None;
        }
        let origin = Origin {
            program: config
                .command
                .first()
                .map(|c| std::path::Path::new(c).file_name().unwrap_or(c).to_string_lossy().into_owned())
                .unwrap_or_default(),
            argv: config.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
            release: config.release.clone(),
            environment: config.environment.clone(),
        };
        let forward = match (config.forward_logs, delivery.dsn()) {
            (Some(level), Some(dsn)) => {
                let settings = LogSettings {
                    level,
                    release: config.release.clone(),
                    environment: config.environment.clone(),
                    // Valid: the same patterns made the delivery's scrubber.
                    scrubber: Scrubber::new(&config.scrub).ok()?,
                };
                Shipper::start(dsn.clone(), settings)
                    .inspect_err(|e| tracing::warn!("failed to start forwarding logs (--forward-logs): {e}"))
                    .ok()
            }
            (Some(_), None) => {
                tracing::warn!("--forward-logs needs a DSN (--dsn or SENTRY_DSN); no logs are sent");
                None
            }
            _ => None,
        };
        let settings = Settings {
            forward,
            problems: config.live_problems,
            events_from_logs: config.events_from_logs,
            origin: origin.clone(),
        };
        let (tap, receiver) = crate::logs::tap::tap();
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let (failed, failed_rx) = mpsc::channel();
        let worker = live::start(receiver, settings, tx, failed_rx)
            .inspect_err(|e| tracing::warn!("failed to start looking for live problems: {e}"))
            .ok()?;
        let errors = Arc::new(AtomicU64::new(0));
        let (done_tx, done) = mpsc::channel();
        let reporter = {
            let (delivery, errors) = (Arc::clone(delivery), Arc::clone(&errors));
            std::thread::Builder::new().name("live-report".into()).spawn(move || {
                report(&delivery, &origin, &rx, &errors, &session);
                let _ = done_tx.send(());
            })
        };
        let reporter = reporter.inspect_err(|e| tracing::warn!("failed to start reporting live problems: {e}")).ok()?;
        Some((tap, Live { worker, reporter, done, failed, errors }))
    }

    /// Waits, at most `limit`, until every problem of the run has been
    /// handled (the pumps have ended); returns the run's problem count.
    /// `failed`: the run ended in a report, which the stories printed at
    /// its very end belong to.
    pub fn finish(self, limit: Duration, failed: bool) -> u64 {
        let _ = self.failed.send(failed);
        if self.done.recv_timeout(limit).is_ok() {
            let _ = self.reporter.join();
            if let Ok(stats) = self.worker.join() {
                tracing::debug!(?stats, "live problems");
                if stats.dropped_chunks > 0 {
                    tracing::warn!(
                        "the child printed faster than its lines could be looked at: {} bytes were passed \
                         through but not checked for problems",
                        stats.dropped_bytes
                    );
                }
            }
        }
        self.errors.load(Ordering::SeqCst)
    }
}

fn report(delivery: &Arc<Delivery>, origin: &Origin, rx: &Receiver<Found>, errors: &AtomicU64, session: &LiveSession) {
    let mut keys = Vec::new();
    for found in rx {
        match found {
            Found::Problem(problem) => {
                let count = errors.fetch_add(1, Ordering::SeqCst) + 1;
                let title = problem.signature.title.clone();
                keys.push(problem.signature.key.clone());
                // The session says so at once, beside the event (as an SDK's
                // does for a handled error).
                let update = health::errored_update(session, count);
                match delivery.queue_live(problem, origin, update) {
                    Queued::Yes => {
                        tracing::info!("{} had a problem it survived: {title}; sending it", origin.program);
                        delivery.flush_in_background(Mode::Due);
                    }
                    other => tracing::info!(
                        "{} had a problem it survived: {title}; {}",
                        origin.program,
                        other.why_not().unwrap_or_default()
                    ),
                }
            }
            Found::Repeats { key, count } => {
                errors.fetch_add(count, Ordering::SeqCst);
                delivery.count_live_repeats(&key, count);
            }
        }
    }
    // The run is over: no more repeats come from it.
    if !keys.is_empty() {
        delivery.queue_summaries_of(&keys);
        delivery.flush_in_background(Mode::Due);
    }
}
