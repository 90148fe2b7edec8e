//! `crashwatch send`: delivers every report waiting in the spool's outbox
//! and says what became of them. Exits 1 if anything could not be sent.

use std::io::Write;
use std::time::Duration;

use crate::cli::SendArgs;
use crate::commands::Failure;
use crate::errors::Chain;
use crate::sentry::throttle::Throttle;
use crate::sentry::{Dsn, Outbox, SystemClock, deliver};
use crate::spool::Spool;

pub fn send(spool: &Spool, args: &SendArgs) -> Result<i32, Failure> {
    let dsn = super::parse_dsn(args.dsn.as_deref())?
        .ok_or_else(|| Failure::new(2, anyhow::anyhow!("no DSN to send to: give --dsn or set SENTRY_DSN")))?;
    let outbox = deliver::open_outbox(spool.root(), None).map_err(|e| Failure::new(1, e))?;
    queue_ended_loops(spool, &dsn, &outbox);
    let summary = deliver::flush_for(&outbox, &dsn, Duration::from_secs(args.timeout), deliver::Mode::Now)
        .map_err(|e| Failure::new(1, e))?;
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

/// Queues the summaries of crash loops whose window has ended (their
/// repeats were kept locally), so that they go out with the rest.
fn queue_ended_loops(spool: &Spool, dsn: &Dsn, outbox: &Outbox) {
    let throttle = Throttle::for_send(spool.root(), std::sync::Arc::new(SystemClock));
    let queued = throttle.due(None, &mut |summary| super::delivery::enqueue_summary(outbox, dsn, summary));
    if let Err(e) = queued {
        tracing::warn!("{}; crash-loop summaries wait for a later send", Chain(&e));
    }
}
