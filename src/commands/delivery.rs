//! What `crashwatch run` does with a report once it is saved: queue it for
//! Sentry, durably, and try to send it before crashwatch exits.
//!
//! Nothing here may fail the run. The report is already in the spool; the
//! envelope is written to the outbox (fsync'd) before any network I/O, and
//! whatever is not delivered within the flush deadline stays there for
//! `crashwatch send` or the next `crashwatch run`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::errors::Chain;
use crate::report::CrashReport;
use crate::sentry::deliver;
use crate::sentry::scrub::Scrubber;
use crate::sentry::{Dsn, Outbox, event};
use crate::spool::Spool;
use crate::symbolicate::Symbolicated;

pub struct Delivery {
    target: Option<(Dsn, Outbox)>,
    scrubber: Scrubber,
    with_minidump: bool,
    flush_timeout: Duration,
    report_exit_codes: bool,
    /// Flushes running beside the child; [`Delivery::finish`] waits for them
    /// so that no upload is cut off by crashwatch's exit.
    background: Mutex<Vec<JoinHandle<()>>>,
}

impl Delivery {
    /// Local mode (reports stay in the spool) without a DSN or a spool.
    pub fn new(
        dsn: Option<Dsn>,
        spool: Option<&Spool>,
        max_bytes: Option<u64>,
        flush_timeout: Duration,
        report_exit_codes: bool,
        scrubber: Scrubber,
        with_minidump: bool,
    ) -> Delivery {
        let target = match (dsn, spool) {
            // Local mode: each report's summary says it was not sent.
            (None, _) => None,
            (Some(dsn), None) => {
                tracing::warn!("reports cannot be sent to {dsn}: there is no usable spool to queue them in");
                None
            }
            (Some(dsn), Some(spool)) => match deliver::open_outbox(spool.root(), max_bytes) {
                Ok(outbox) => Some((dsn, outbox)),
                Err(e) => {
                    tracing::warn!("reports cannot be sent to {dsn}: {}", Chain(&e));
                    None
                }
            },
        };
        Delivery {
            target,
            scrubber,
            with_minidump,
            flush_timeout,
            report_exit_codes,
            background: Mutex::new(Vec::new()),
        }
    }

    /// Why `report` is not sent, for its summary; `None` when it is queued.
    pub fn kept_local_because(&self, report: &CrashReport) -> Option<&'static str> {
        if self.target.is_none() {
            Some("not sent: no DSN (--dsn or SENTRY_DSN)")
        } else if !event::should_send(report, self.report_exit_codes) {
            Some(match report.kind {
                crate::report::Kind::Stopped => "not sent: an orderly stop is not a crash",
                _ => "not sent: a plain non-zero exit is sent only with --report-exit-codes",
            })
        } else {
            None
        }
    }

    /// Queues `report` (whose files are in `dir`) if it deserves sending.
    /// Returns whether it was queued.
    pub fn queue(&self, report: &CrashReport, dir: &Path, stacks: Option<&Symbolicated>) -> bool {
        let Some((dsn, outbox)) = &self.target else { return false };
        if !event::should_send(report, self.report_exit_codes) {
            tracing::debug!(report = %report.short_id(), kind = report.kind.name(), "kept locally, not sent");
            return false;
        }
        let queued = event::envelope(report, dir, stacks, &self.scrubber, self.with_minidump)
            .map_err(|e| Chain(&e).to_string())
            .and_then(|envelope| outbox.enqueue(dsn, envelope).map_err(|e| Chain(&e).to_string()));
        match queued {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(report = %report.short_id(), "failed to queue the report for Sentry: {e}");
                false
            }
        }
    }

    /// Sends what is waiting on a thread of its own, while the child runs.
    /// At start, `mode` is [`deliver::Mode::Now`]: a new crashwatch is a
    /// natural moment to retry what an earlier one could not send (a crash
    /// loop makes one attempt per restart); Relay's rate limits still hold.
    pub fn flush_in_background(self: &Arc<Self>, mode: deliver::Mode) {
        if self.target.is_none() {
            return;
        }
        let delivery = Arc::clone(self);
        let thread =
            std::thread::Builder::new().name("send".into()).spawn(move || delivery.flush(delivery.flush_timeout, mode));
        match thread {
            Ok(handle) => self.background.lock().unwrap_or_else(|e| e.into_inner()).push(handle),
            Err(e) => tracing::warn!("failed to start sending reports in the background: {e}"),
        }
    }

    /// At crashwatch's end: lets the background sends finish, then sends
    /// what is still waiting, all within one flush timeout.
    pub fn finish(&self) {
        let deadline = Instant::now() + self.flush_timeout;
        // Each background flush has its own deadline, at most one flush
        // timeout after it started, so these joins are bounded.
        let handles: Vec<_> = self.background.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
        for handle in handles {
            let _ = handle.join();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if !left.is_zero() {
            self.flush(left, deliver::Mode::Due);
        }
    }

    /// Sends what is waiting within `limit`, and says how it went.
    fn flush(&self, limit: Duration, mode: deliver::Mode) {
        let Some((dsn, outbox)) = &self.target else { return };
        match deliver::flush_for(outbox, dsn, limit, mode) {
            Ok(summary) if summary.left_behind() + summary.rejected == 0 => {
                if summary.sent > 0 {
                    tracing::info!("{} to {dsn}", summary.describe());
                }
            }
            Ok(summary) => tracing::warn!(
                "{} to {dsn}; what is waiting stays in the spool for `crashwatch send` or the next run",
                summary.describe()
            ),
            Err(e) => tracing::warn!("failed to deliver reports to {dsn}: {}; they stay in the spool", Chain(&e)),
        }
    }
}
