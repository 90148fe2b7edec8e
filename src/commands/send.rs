//! `crashwatch send`: finishes and queues what a killed crashwatch left,
//! delivers every report waiting in the spool's outbox, says what became of
//! them, and prunes the spool; `--watch` keeps doing so as a service
//! ([`super::watch`]). On a spool with nothing to send it creates nothing.
//!
//! Exit codes: 0 when nothing is left, [`exit::REPORTS_WAITING`] (1) when
//! some reports still wait (Relay unreachable or slow, rate limited),
//! [`exit::REPORTS_REJECTED`] (3) when this send set reports aside for good
//! in the outbox's `rejected/` (Relay refused them, or their file was
//! corrupt), which wins over waiting ones.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::SendArgs;
use crate::commands::delivery::{self, Delivery, Intent};
use crate::commands::{Failure, filing, recover};
use crate::errors::Chain;
use crate::exit;
use crate::metrics::Metrics;
use crate::sentry::scrub::Scrubber;
use crate::sentry::throttle::Throttle;
use crate::sentry::{Dsn, FlushSummary, Outbox, SystemClock, deliver};
use crate::spool::{Spool, SpoolDir};

pub fn send(spool: &Spool, args: &SendArgs) -> Result<i32, Failure> {
    let dsn = super::parse_dsn(args.dsn.as_deref())?
        .ok_or_else(|| Failure::new(exit::USAGE, anyhow::anyhow!("no DSN to send to: give --dsn or set SENTRY_DSN")))?;
    let limits = crate::config::retention(&args.retention);
    if args.watch {
        // A service: it makes the spool and its outbox if they are not there yet.
        let spool = Spool::create(spool.root()).map_err(|e| Failure::new(exit::FAILURE, e))?;
        let dir = spool.dir().expect("a created spool has its directory");
        let outbox = match outbox(&spool, dir, &dsn)? {
            Some(outbox) => outbox,
            None => deliver::open_outbox(dir, None).map_err(|e| Failure::new(exit::FAILURE, e))?,
        };
        return super::watch::watch(&spool, &dsn, &outbox);
    }
    let outbox = match spool.dir() {
        Some(dir) => outbox(spool, dir, &dsn)?,
        None => None,
    };
    let summary = match &outbox {
        Some(outbox) => {
            queue_ended_loops(spool.dir(), &dsn, outbox);
            deliver::flush_for(outbox, &dsn, Duration::from_secs(args.timeout), deliver::Mode::Now)
                .map_err(|e| Failure::new(exit::FAILURE, e))?
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
        super::write_stdout(&line)?;
    }
    let mut text = format!("{} to {dsn}", summary.describe());
    // Entries set aside by earlier sends or runs are worth a mention; they
    // do not change the exit code, which is about this send.
    let rejected = outbox.as_ref().and_then(|o| Some((o.rejected().ok()?.len(), o.dir().join("rejected"))));
    if let Some((count, dir)) = rejected
        && count > summary.set_aside()
    {
        let earlier = count - summary.set_aside();
        text.push_str(&format!(
            "; {earlier} report{} set aside earlier {} in {}",
            if earlier == 1 { "" } else { "s" },
            if earlier == 1 { "is" } else { "are" },
            dir.display()
        ));
    }
    let code = exit_code(&summary);
    if code == exit::SUCCESS {
        tracing::info!("{text}");
    } else {
        tracing::warn!("{text}");
    }
    Ok(code)
}

/// The exit code of a send that ended with `summary`.
pub fn exit_code(summary: &FlushSummary) -> i32 {
    if summary.set_aside() > 0 {
        exit::REPORTS_REJECTED
    } else if summary.left_behind() > 0 {
        exit::REPORTS_WAITING
    } else {
        exit::SUCCESS
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
        send_directly: true,
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
pub fn queue_ended_loops(spool: Option<&SpoolDir>, dsn: &Dsn, outbox: &Outbox) {
    let Some(spool) = spool else { return };
    let throttle = Throttle::for_send(spool, Arc::new(SystemClock));
    let queued = throttle.due(None, &mut |summary| super::delivery::enqueue_summary(outbox, dsn, summary));
    if let Err(e) = queued {
        tracing::warn!("{}; crash-loop summaries wait for a later send", Chain(&e));
    }
}
