//! Sending what the outbox holds, until done or until a deadline.
//!
//! A container gets 10 seconds between SIGTERM and SIGKILL, so a flush takes a
//! deadline and stops starting requests at it; a request in flight is cut at
//! the deadline too (its timeout never reaches past it). Whatever did not make
//! it stays pending for the next process: the outbox is the only state.
//!
//! For each pending entry, oldest first:
//!
//! ```text
//! claim ── busy (another process) ─────────────────────────► skip
//!   │
//!   ├── backoff not over ──────────────────────────────────► retry_later
//!   ├── error/default category limited ────────────────────► rate_limited
//!   ├── attachments limited, for less than the patience ───► rate_limited
//!   ├── attachments limited for longer: send without them (client report)
//!   ├── sessions / check-ins limited: sent without them, counted in the
//!   │   client report; an entry of nothing else is deleted   dropped
//!   ▼
//! send ── 2xx ─► delete                                      sent
//!   ├── 429 ─► persist the limits, entry untouched           rate_limited
//!   │          (sessions or check-ins alone: deleted, Relay
//!   │           counted them)                                dropped
//!   ├── 413 ─► rewrite without the minidump, then without
//!   │          any attachment, and send again; an event
//!   │          alone that is still too large is rejected
//!   ├── other 4xx ─► rejected/ with Relay's detail           rejected
//!   └── 5xx, timeout, refused ─► backoff                     retry_later
//!        (a network error also ends this flush: Relay is
//!         not reachable, the other entries would only wait
//!         for the same timeout)
//! ```
//!
//! A request cut short by the deadline counts no failed attempt. Losses tied
//! to the envelope being sent (the minidump after a 413, rate-limited
//! attachments) travel in that envelope's own `client_report` item; the others
//! (rejections, outbox evictions) are counted in the outbox and sent at the end
//! as one standalone `client_report`.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::time::Instant;

use crate::errors::Chain;
use crate::sentry::client_report::{DiscardReason, DiscardedCounts};
use crate::sentry::clock::unix_millis;
use crate::sentry::dsn::Dsn;
use crate::sentry::envelope::{self, EnvelopeError, ItemType, RawEnvelope, RawItem};
use crate::sentry::outbox::{Claim, Outbox, OutboxError, Rejection};
use crate::sentry::rate_limit::LimitedPart;
use crate::sentry::upload::{UploadError, Uploader};

/// What one flush did. Every pending entry looked at lands in one field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FlushSummary {
    /// Accepted by Relay and deleted.
    pub sent: usize,
    /// Still pending because of a retryable failure or a backoff not over.
    pub retry_later: usize,
    /// Refused by Relay for good and moved to `rejected/`.
    pub rejected: usize,
    /// Held back by a rate limit.
    pub rate_limited: usize,
    /// Being sent by another process.
    pub busy: usize,
    /// Sessions or check-ins alone that a rate limit made us (or Relay)
    /// drop, as Sentry's SDKs do; not kept for later.
    pub dropped: usize,
    /// Not looked at: the deadline passed or Relay was unreachable.
    pub not_attempted: usize,
    /// Sent, but Relay did not answer in time (it most likely has the
    /// envelope); still pending, to be sent again.
    pub unanswered: usize,
    /// The longest an unanswered request waited, milliseconds.
    pub unanswered_within_ms: u64,
    /// Our own file no longer parses: moved aside to `rejected/`, not sent.
    pub corrupt: usize,
    /// Whether the deadline ended the flush.
    pub deadline_reached: bool,
}

/// Why a flush could not go on.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// The outbox could not be read or updated.
    #[error("failed to use the outbox")]
    Outbox(#[from] OutboxError),
    /// A background task (reading, compressing) died.
    #[error("failed to read an outbox entry")]
    Task(#[source] tokio::task::JoinError),
}

enum Next {
    Continue,
    StopNetwork,
}

/// Sends everything due in `outbox` through `uploader` until `deadline`.
pub async fn flush(outbox: &Outbox, uploader: &Uploader, deadline: Instant) -> Result<FlushSummary, FlushError> {
    flush_entries(outbox, uploader, deadline, false).await
}

/// Like [`flush`], but also tries the entries still in their retry backoff:
/// an operator asked for it (`crashwatch send`). Relay's rate limits are
/// still honoured; those are Relay's orders, not our caution.
pub async fn flush_now(outbox: &Outbox, uploader: &Uploader, deadline: Instant) -> Result<FlushSummary, FlushError> {
    flush_entries(outbox, uploader, deadline, true).await
}

async fn flush_entries(
    outbox: &Outbox,
    uploader: &Uploader,
    deadline: Instant,
    ignore_backoff: bool,
) -> Result<FlushSummary, FlushError> {
    let mut summary = FlushSummary::default();
    uploader.merge_rate_limits(&outbox.rate_limits()?);
    let ids = outbox.pending()?;
    let mut network_down = false;

    for (index, id) in ids.iter().enumerate() {
        if Instant::now() >= deadline {
            summary.deadline_reached = true;
            summary.not_attempted += ids.len() - index;
            break;
        }
        if network_down {
            summary.not_attempted += ids.len() - index;
            break;
        }
        let Some(claim) = outbox.claim(id)? else {
            summary.busy += 1;
            continue;
        };
        match flush_entry(outbox, uploader, claim, deadline, ignore_backoff, &mut summary).await? {
            Next::Continue => {}
            Next::StopNetwork => network_down = true,
        }
    }

    if !network_down && Instant::now() < deadline {
        send_client_report(outbox, uploader, deadline).await?;
    }
    tracing::debug!(?summary, "outbox flushed");
    Ok(summary)
}

async fn flush_entry(
    outbox: &Outbox,
    uploader: &Uploader,
    mut claim: Claim<'_>,
    deadline: Instant,
    ignore_backoff: bool,
    summary: &mut FlushSummary,
) -> Result<Next, FlushError> {
    let now = uploader.clock().now();
    if !ignore_backoff && !claim.is_due(now) {
        summary.retry_later += 1;
        return Ok(Next::Continue);
    }
    let limits = uploader.rate_limits();
    let contents = claim.state().summary;
    // Session updates and check-ins are not kept while their category is
    // limited: Sentry's SDKs drop them and say so in a client report.
    let mut strip_items = Vec::new();
    if contents.sessions > 0 && limits.limited_until(LimitedPart::Sessions, now).is_some() {
        strip_items.extend([ItemType::Session, ItemType::Sessions]);
    }
    if contents.check_ins > 0 && limits.limited_until(LimitedPart::CheckIns, now).is_some() {
        strip_items.push(ItemType::CheckIn);
    }
    let only_items = contents.events == 0 && contents.attachments == 0;
    let all_limited = (contents.sessions == 0 || strip_items.contains(&ItemType::Session))
        && (contents.check_ins == 0 || strip_items.contains(&ItemType::CheckIn));
    if only_items && !strip_items.is_empty() && all_limited {
        let mut lost = DiscardedCounts::default();
        contents.discard_all(DiscardReason::RatelimitBackoff, &mut lost);
        outbox.record_discarded(&lost)?;
        tracing::info!(entry = claim.id(), "dropped sessions or check-ins: their category is rate limited");
        claim.complete()?;
        summary.dropped += 1;
        return Ok(Next::Continue);
    }
    if contents.events > 0
        && let Some(until) = limits.limited_until(LimitedPart::Event, now)
    {
        claim.note(&format!("rate limited until {}", envelope::format_timestamp(until)))?;
        summary.rate_limited += 1;
        return Ok(Next::Continue);
    }
    let mut strip_attachments = false;
    if claim.state().summary.attachments > 0
        && let Some(until) = limits.limited_until(LimitedPart::Attachments, now)
    {
        let wait = until.duration_since(now).unwrap_or_default();
        if wait <= uploader.config().attachment_limit_patience {
            claim.note(&format!("attachments rate limited until {}", envelope::format_timestamp(until)))?;
            summary.rate_limited += 1;
            return Ok(Next::Continue);
        }
        strip_attachments = true;
    }

    let event_id = claim.state().event_id.clone();
    // 413 is answered by shrinking: at most minidump, then all attachments.
    for _ in 0..3 {
        let stored = read_entry(&claim).await?;
        let sent_at = uploader.clock().now();
        let body = match prepare_body(&stored, sent_at, uploader.dsn(), strip_attachments, &strip_items) {
            Ok(body) => body,
            Err(error) => {
                // Our own file no longer parses: sending it would only earn a
                // 400, so it is set aside where a person can look at it.
                set_aside_corrupt(outbox, claim, &Chain(&error).to_string(), summary)?;
                return Ok(Next::Continue);
            }
        };
        let full_timeout = uploader.config().timeout_for(body.len());
        let remaining = deadline.saturating_duration_since(Instant::now());
        let cut_by_deadline = remaining < full_timeout;
        let timeout = full_timeout.min(remaining);
        let result = uploader.send(body, timeout).await;
        match result {
            Ok(accepted) => {
                if !accepted.rate_limits.is_empty() {
                    outbox.record_rate_limits(&accepted.rate_limits)?;
                }
                tracing::info!(entry = claim.id(), event_id, "crash report delivered");
                claim.complete()?;
                summary.sent += 1;
                return Ok(Next::Continue);
            }
            Err(UploadError::RateLimited { limits }) if only_items => {
                // Relay counted them; Sentry's SDKs do not keep sessions or
                // check-ins for after a limit, and neither do we.
                outbox.record_rate_limits(&limits)?;
                tracing::warn!(entry = claim.id(), "relay rate limited sessions or check-ins; dropped");
                claim.complete()?;
                summary.dropped += 1;
                return Ok(Next::Continue);
            }
            Err(UploadError::RateLimited { limits }) => {
                // The envelope is kept: a crash is worth sending once the limit
                // is over, and Relay already counted this one as rate limited.
                outbox.record_rate_limits(&limits)?;
                claim.note("rate limited by relay (429)")?;
                tracing::warn!(entry = claim.id(), event_id, "relay rate limited the crash report");
                summary.rate_limited += 1;
                return Ok(Next::Continue);
            }
            Err(UploadError::PayloadTooLarge { detail }) => {
                tracing::warn!(entry = claim.id(), event_id, ?detail, "relay refused the crash report as too large");
                if !shrink(&mut claim, &stored, uploader.clock().now())? {
                    reject(outbox, claim, 413, detail, Vec::new(), summary)?;
                    return Ok(Next::Continue);
                }
            }
            Err(UploadError::Rejected { status, detail, causes }) => {
                reject(outbox, claim, status, detail, causes, summary)?;
                return Ok(Next::Continue);
            }
            Err(UploadError::Timeout { body_sent, .. }) if cut_by_deadline => {
                // Our deadline, not Relay, ended the request: no attempt is
                // counted and the entry keeps its schedule.
                summary.deadline_reached = true;
                if body_sent {
                    let waited = seconds(timeout.as_millis() as u64);
                    claim.note(&format!("sent, no answer within {waited} (the flush deadline)"))?;
                    tracing::warn!(
                        entry = claim.id(),
                        event_id,
                        "sent, but relay did not answer before the flush deadline"
                    );
                    unanswered(summary, timeout);
                } else {
                    claim.note("interrupted by the flush deadline")?;
                    tracing::warn!(entry = claim.id(), event_id, "flush deadline cut an upload short");
                    summary.not_attempted += 1;
                }
                return Ok(Next::Continue);
            }
            Err(error) => {
                let message = Chain(&error).to_string();
                let next = claim.retry_later(&message)?;
                tracing::warn!(
                    entry = claim.id(),
                    event_id,
                    error = message,
                    next_attempt_at = unix_millis(next),
                    "crash report not delivered, will retry"
                );
                match error {
                    UploadError::Timeout { body_sent: true, .. } => unanswered(summary, timeout),
                    _ => summary.retry_later += 1,
                }
                return Ok(if error.is_network_error() { Next::StopNetwork } else { Next::Continue });
            }
        }
    }
    // Three 413s in a row cannot happen with the shrinking above (the third
    // body is the event alone, rejected on its 413), but if it did, waiting
    // is the safe answer.
    claim.retry_later("relay kept refusing the envelope as too large")?;
    summary.retry_later += 1;
    Ok(Next::Continue)
}

async fn read_entry(claim: &Claim<'_>) -> Result<Vec<u8>, FlushError> {
    // A minidump envelope of tens of MiB is read off the async threads.
    let file = claim.envelope_file();
    let read = tokio::task::spawn_blocking(move || file.read()).await.map_err(FlushError::Task)?;
    read.map_err(FlushError::Outbox)
}

/// The body to send: the stored envelope with a fresh `sent_at` (Relay uses it
/// to correct clock drift, so it must be the time of *this* request) and the
/// current DSN, minus attachments and the session or check-in items of
/// `strip_items` when they are rate limited.
fn prepare_body(
    stored: &[u8],
    sent_at: SystemTime,
    dsn: &Dsn,
    strip_attachments: bool,
    strip_items: &[ItemType],
) -> Result<Vec<u8>, EnvelopeError> {
    if !strip_attachments && strip_items.is_empty() {
        return envelope::with_fresh_header(stored, sent_at, dsn);
    }
    let mut raw = RawEnvelope::parse(stored)?;
    raw.refresh_header(sent_at, dsn);
    if strip_attachments {
        raw.drop_attachments(|_| true, DiscardReason::RatelimitBackoff, "attachments rate limited", sent_at);
    }
    raw.drop_items(strip_items, DiscardReason::RatelimitBackoff, sent_at);
    Ok(raw.to_vec())
}

/// Rewrites the stored entry smaller after a 413. Returns false when there is
/// nothing left to drop.
fn shrink(claim: &mut Claim<'_>, stored: &[u8], now: SystemTime) -> Result<bool, FlushError> {
    let Ok(mut raw) = RawEnvelope::parse(stored) else {
        return Ok(false);
    };
    let before = raw.summary();
    let dropped = if before.has_minidump {
        raw.drop_attachments(RawItem::is_minidump, DiscardReason::SendError, "too large for relay (413)", now)
    } else {
        raw.drop_attachments(|_| true, DiscardReason::SendError, "too large for relay (413)", now)
    };
    if dropped == 0 && before.attachments == 0 {
        return Ok(false);
    }
    let after = raw.summary();
    claim.replace(&raw.to_vec(), after)?;
    Ok(true)
}

/// `0.3s`, `8.0s`, `30s`: a wait as a person reads it, to a tenth of a
/// second under ten seconds.
pub fn seconds(ms: u64) -> String {
    if ms < 10_000 { format!("{:.1}s", ms as f64 / 1000.0) } else { format!("{}s", ms.div_ceil(1000)) }
}

/// Counts an envelope sent without an answer within `waited`.
fn unanswered(summary: &mut FlushSummary, waited: Duration) {
    summary.unanswered += 1;
    summary.unanswered_within_ms = summary.unanswered_within_ms.max(waited.as_millis() as u64);
}

/// Moves an entry whose file no longer parses to `rejected/`, marked as
/// corrupt (it was never sent), and says which file it was.
fn set_aside_corrupt(
    outbox: &Outbox,
    claim: Claim<'_>,
    reason: &str,
    summary: &mut FlushSummary,
) -> Result<(), FlushError> {
    let (from, state) = (claim.envelope_path(), claim.state().clone());
    let rejection = Rejection {
        event_id: state.event_id.clone(),
        status: 0,
        detail: Some(reason.to_owned()),
        causes: Vec::new(),
        rejected_at_ms: unix_millis(outbox.clock().now()),
        corrupt: true,
    };
    let to = claim.reject(&rejection)?;
    tracing::error!(
        event_id = state.event_id,
        "outbox entry {} is corrupt ({reason}): not sent, moved aside to {}",
        from.display(),
        to.display()
    );
    let mut lost = DiscardedCounts::default();
    state.summary.discard_all(DiscardReason::InternalSdkError, &mut lost);
    outbox.record_discarded(&lost)?;
    summary.corrupt += 1;
    Ok(())
}

fn reject(
    outbox: &Outbox,
    claim: Claim<'_>,
    status: u16,
    detail: Option<String>,
    causes: Vec<String>,
    summary: &mut FlushSummary,
) -> Result<(), FlushError> {
    let state = claim.state().clone();
    tracing::error!(
        entry = claim.id(),
        event_id = state.event_id,
        status,
        ?detail,
        ?causes,
        "relay rejected the crash report; moved to rejected/"
    );
    let rejection = Rejection {
        event_id: state.event_id.clone(),
        status,
        detail,
        causes,
        rejected_at_ms: unix_millis(outbox.clock().now()),
        corrupt: false,
    };
    claim.reject(&rejection)?;
    let mut lost = DiscardedCounts::default();
    state.summary.discard_all(DiscardReason::SendError, &mut lost);
    outbox.record_discarded(&lost)?;
    summary.rejected += 1;
    Ok(())
}

async fn send_client_report(outbox: &Outbox, uploader: &Uploader, deadline: Instant) -> Result<(), FlushError> {
    let pending = outbox.discarded()?;
    let now = uploader.clock().now();
    if pending.is_empty() || uploader.rate_limits().all_limited_until(now).is_some() {
        return Ok(());
    }
    let body = envelope::client_report_envelope(uploader.dsn(), &pending, now);
    let timeout = uploader.config().request_timeout.min(deadline.saturating_duration_since(Instant::now()));
    match uploader.send(body, timeout).await {
        Ok(_) => outbox.forget_discarded(&pending)?,
        Err(UploadError::RateLimited { limits }) => {
            outbox.record_rate_limits(&limits)?;
        }
        // Client reports are best effort; a rejected one is not retried.
        Err(error @ UploadError::Rejected { .. }) => {
            tracing::warn!(error = %Chain(&error), "relay rejected the client report");
            outbox.forget_discarded(&pending)?;
        }
        Err(error) => {
            tracing::debug!(error = %Chain(&error), "client report not delivered");
        }
    }
    Ok(())
}
