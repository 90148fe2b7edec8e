//! The outbox of a spool and one flush of it, for the commands that deliver
//! (`run` at the child's end, `send`, `test`). Delivery is async (reqwest);
//! crashwatch is not, so each flush runs on a current-thread runtime of its
//! own, which exists only while it sends.

use std::sync::Arc;
use std::time::Duration;

use crate::sentry::{Dsn, FlushError, FlushSummary, Outbox, OutboxConfig, OutboxError, SystemClock};
use crate::sentry::{UploadError, Uploader, UploaderConfig, flush, flush_now};
use crate::spool::SpoolDir;

/// Which entries a flush tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Those whose retry backoff is over (automatic delivery).
    Due,
    /// All of them (an operator's `crashwatch send`).
    Now,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("failed to set up the HTTP client")]
    Client(#[source] UploadError),
    #[error("failed to start the delivery runtime")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Flush(#[from] FlushError),
}

fn config(max_bytes: Option<u64>) -> OutboxConfig {
    let mut config = OutboxConfig::default();
    if let Some(max) = max_bytes {
        config.max_bytes = max;
    }
    config
}

/// The outbox of the spool whose directory is `spool`: `SPOOL/outbox`,
/// created if missing.
pub fn open_outbox(spool: &SpoolDir, max_bytes: Option<u64>) -> Result<Outbox, OutboxError> {
    Outbox::open_in(spool, config(max_bytes), Arc::new(SystemClock))
}

/// The outbox of the spool, if there is one (for commands that create
/// nothing).
pub fn existing_outbox(spool: &SpoolDir, max_bytes: Option<u64>) -> Result<Option<Outbox>, OutboxError> {
    Outbox::existing(spool, config(max_bytes), Arc::new(SystemClock))
}

/// Sends what `mode` selects in `outbox` to `dsn` until done or `limit`
/// passes.
pub fn flush_for(outbox: &Outbox, dsn: &Dsn, limit: Duration, mode: Mode) -> Result<FlushSummary, DeliverError> {
    let uploader =
        Uploader::new(dsn.clone(), UploaderConfig::default(), Arc::new(SystemClock)).map_err(DeliverError::Client)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(DeliverError::Runtime)?;
    runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + limit;
        Ok(match mode {
            Mode::Due => flush(outbox, &uploader, deadline).await?,
            Mode::Now => flush_now(outbox, &uploader, deadline).await?,
        })
    })
}

impl FlushSummary {
    /// Whether anything is still waiting after this flush.
    pub fn left_behind(&self) -> usize {
        self.retry_later + self.rate_limited + self.busy + self.not_attempted + self.unanswered
    }

    /// Set aside for good by this flush: refused by Relay, or corrupt.
    pub fn set_aside(&self) -> usize {
        self.rejected + self.corrupt
    }

    /// `1 sent, 2 waiting (rate limited), 1 rejected by Relay (…)`
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("{} sent", self.sent)];
        let unanswered =
            format!("sent, no answer within {}; will retry", crate::sentry::flush::seconds(self.unanswered_within_ms));
        let waiting = [
            (self.unanswered, unanswered.as_str()),
            (self.retry_later, "to retry"),
            (self.rate_limited, "rate limited"),
            (self.busy, "being sent by another crashwatch"),
            (self.not_attempted, "not attempted"),
        ];
        for (n, why) in waiting {
            if n > 0 {
                parts.push(format!("{n} waiting ({why})"));
            }
        }
        if self.dropped > 0 {
            parts.push(format!("{} dropped (sessions or check-ins under a rate limit)", self.dropped));
        }
        if self.rejected > 0 {
            parts.push(format!("{} rejected by Relay (kept in the outbox's rejected/)", self.rejected));
        }
        if self.corrupt > 0 {
            parts.push(format!("{} corrupt, not sent (moved aside to the outbox's rejected/)", self.corrupt));
        }
        parts.join(", ")
    }
}
