//! `crashwatch send`: finishes and queues what a killed crashwatch left,
//! delivers every report waiting in the spool's outbox, says what became of
//! them, and prunes the spool. Exits 1 if anything could not be sent. On a
//! spool with nothing to send it creates nothing.

use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::SendArgs;
use crate::commands::delivery::{self, Delivery, Intent};
use crate::commands::{Failure, filing, recover};
use crate::errors::Chain;
use crate::metrics::Metrics;
use crate::sentry::scrub::Scrubber;
use crate::sentry::throttle::Throttle;
use crate::sentry::{Dsn, FlushSummary, Outbox, SystemClock, deliver};
use crate::spool::{Spool, SpoolDir};

pub fn send(spool: &Spool, args: &SendArgs) -> Result<i32, Failure> {
    let dsn = super::parse_dsn(args.dsn.as_deref())?
        .ok_or_else(|| Failure::new(2, anyhow::anyhow!("no DSN to send to: give --dsn or set SENTRY_DSN")))?;
    let limits = crate::config::retention(&args.retention);
    let outbox = match spool.dir() {
        Some(dir) => outbox(spool, dir, &dsn)?,
        None => None,
    };
    let summary = match &outbox {
        Some(outbox) => {
            queue_ended_loops(spool.dir(), &dsn, outbox);
            deliver::flush_for(outbox, &dsn, Duration::from_secs(args.timeout), deliver::Mode::Now)
                .map_err(|e| Failure::new(1, e))?
        }
        None => FlushSummary::default(),
    };
    if outbox.is_some() || spool.dir().is_some() {
        let waiting: HashSet<String> = outbox
            .as_ref()
            .and_then(|o| o.pending().ok())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|entry| entry.rsplit('-').next().map(str::to_owned))
            .collect();
        filing::prune_keeping(spool, &limits, &waiting);
    }
    if args.json {
        let mut line = serde_json::to_vec(&summary).expect("a summary always serialises");
        line.push(b'\n');
        let _ = std::io::stdout().write_all(&line);
    }
    let left = summary.left_behind() + summary.rejected;
    let text = format!("{} to {dsn}", summary.describe());
    if left > 0 {
        tracing::warn!("{text}");
        Ok(1)
    } else {
        tracing::info!("{text}");
        Ok(0)
    }
}

/// The outbox, after the reports a killed crashwatch left are finished and
/// queued into it; `None` when there is nothing to send.
fn outbox(spool: &Spool, dir: &SpoolDir, dsn: &Dsn) -> Result<Option<Outbox>, Failure> {
    let found = recover::survey(spool).map_err(|e| Failure::new(1, e))?;
    if !found.left_over() {
        if found.abandoned > 0 {
            // Empty scratch directories of crashwatches that are gone.
            let by = format!("`crashwatch send` (pid {})", std::process::id());
            recover::recover(spool, None, &by).map_err(|e| Failure::new(1, e))?;
        }
        return deliver::existing_outbox(dir, None).map_err(|e| Failure::new(1, e));
    }
    let options = delivery::Options {
        max_bytes: None,
        flush_timeout: Duration::ZERO,
        scrubber: Scrubber::new(&[]).map_err(|e| Failure::new(1, e))?,
        // Reports carry how they are to be sent; this is for those whose
        // record of it is lost.
        intent: Intent { minidump: Some("host".into()), ..Intent::default() },
    };
    let delivery = Delivery::new(Some(dsn.clone()), Some(spool), options, Arc::new(Metrics::default()));
    let by = format!("`crashwatch send` (pid {})", std::process::id());
    let done = recover::recover(spool, Some(&delivery), &by).map_err(|e| Failure::new(1, e))?;
    recover::log(&done);
    Ok(delivery.outbox().cloned())
}

/// Queues the summaries of crash loops whose window has ended (their
/// repeats were kept locally), so that they go out with the rest.
fn queue_ended_loops(spool: Option<&SpoolDir>, dsn: &Dsn, outbox: &Outbox) {
    let Some(spool) = spool else { return };
    let throttle = Throttle::for_send(spool, Arc::new(SystemClock));
    let queued = throttle.due(None, &mut |summary| super::delivery::enqueue_summary(outbox, dsn, summary));
    if let Err(e) = queued {
        tracing::warn!("{}; crash-loop summaries wait for a later send", Chain(&e));
    }
}
