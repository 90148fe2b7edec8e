//! `crashwatch send`: delivers every report waiting in the spool's outbox
//! and says what became of them; `--watch` keeps doing so as a service
//! ([`super::watch`]).
//!
//! Exit codes: 0 when nothing is left, [`exit::REPORTS_WAITING`] (1) when
//! some reports still wait (Relay unreachable or slow, rate limited),
//! [`exit::REPORTS_REJECTED`] (3) when this send set reports aside for good
//! in the outbox's `rejected/` (Relay refused them, or their file was
//! corrupt), which wins over waiting ones.

use std::time::Duration;

use crate::cli::SendArgs;
use crate::commands::Failure;
use crate::errors::Chain;
use crate::exit;
use crate::sentry::throttle::Throttle;
use crate::sentry::{Dsn, FlushSummary, Outbox, SystemClock, deliver};
use crate::spool::Spool;

pub fn send(spool: &Spool, args: &SendArgs) -> Result<i32, Failure> {
    let dsn = super::parse_dsn(args.dsn.as_deref())?
        .ok_or_else(|| Failure::new(exit::USAGE, anyhow::anyhow!("no DSN to send to: give --dsn or set SENTRY_DSN")))?;
    let outbox = deliver::open_outbox(spool.root(), None).map_err(|e| Failure::new(exit::FAILURE, e))?;
    if args.watch {
        return super::watch::watch(spool, &dsn, &outbox);
    }
    queue_ended_loops(spool, &dsn, &outbox);
    let summary = deliver::flush_for(&outbox, &dsn, Duration::from_secs(args.timeout), deliver::Mode::Now)
        .map_err(|e| Failure::new(exit::FAILURE, e))?;
    if args.json {
        let mut line = serde_json::to_vec(&summary).expect("a summary always serialises");
        line.push(b'\n');
        super::write_stdout(&line)?;
    }
    let mut text = format!("{} to {dsn}", summary.describe());
    // Entries set aside by earlier sends or runs are worth a mention; they
    // do not change the exit code, which is about this send.
    let earlier = outbox.rejected().map(|r| r.len().saturating_sub(summary.set_aside())).unwrap_or(0);
    if earlier > 0 {
        text.push_str(&format!(
            "; {earlier} report{} set aside earlier {} in {}",
            if earlier == 1 { "" } else { "s" },
            if earlier == 1 { "is" } else { "are" },
            outbox.dir().join("rejected").display()
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

/// Queues the summaries of crash loops whose window has ended (their
/// repeats were kept locally), so that they go out with the rest.
pub fn queue_ended_loops(spool: &Spool, dsn: &Dsn, outbox: &Outbox) {
    let throttle = Throttle::for_send(spool.root(), std::sync::Arc::new(SystemClock));
    let queued = throttle.due(None, &mut |summary| super::delivery::enqueue_summary(outbox, dsn, summary));
    if let Err(e) = queued {
        tracing::warn!("{}; crash-loop summaries wait for a later send", Chain(&e));
    }
}
