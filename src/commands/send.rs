//! `crashwatch send`: delivers every report waiting in the spool's outbox
//! and says what became of them. Exits 1 if anything could not be sent.

use std::io::Write;
use std::time::Duration;

use crate::cli::SendArgs;
use crate::commands::Failure;
use crate::sentry::deliver;
use crate::spool::Spool;

pub fn send(spool: &Spool, args: &SendArgs) -> Result<i32, Failure> {
    let dsn = super::parse_dsn(args.dsn.as_deref())?
        .ok_or_else(|| Failure::new(2, anyhow::anyhow!("no DSN to send to: give --dsn or set SENTRY_DSN")))?;
    let outbox = deliver::open_outbox(spool.root(), None).map_err(|e| Failure::new(1, e))?;
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
