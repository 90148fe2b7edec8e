//! `crashwatch send --watch`: delivery as a service beside the servers, so
//! that `crashwatch run --delivery spool` only files a report and exits,
//! and a server's restart never waits for a slow Relay.
//!
//! One loop on a current-thread runtime:
//!
//! ```text
//! queue due crash-loop summaries
//!   → one pass over the outbox: entries whose backoff is over, Relay's
//!     rate limits honoured (what `run` does at a crash)
//!   → wait for the first of: a new envelope in outbox/pending (inotify),
//!     the earliest retry or rate-limit expiry, a minute
//!   → again
//! ```
//!
//! SIGTERM or SIGINT ends it at once, an upload in flight included: an
//! entry leaves the outbox only when Relay answered for it, so a cut upload
//! stays pending (delivery is at least once; Sentry drops a duplicate by
//! event id). The exit code is then 0.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::sync::Notify;

use crate::commands::Failure;
use crate::commands::send::queue_ended_loops;
use crate::errors::Chain;
use crate::exit;
use crate::sentry::rate_limit::LimitedPart;
use crate::sentry::{Dsn, FlushSummary, Outbox, SystemClock, Uploader, UploaderConfig, flush};
use crate::spool::Spool;

/// How long one pass over the outbox may take (large minidumps included).
const PASS_LIMIT: Duration = Duration::from_secs(300);

/// The longest wait between passes: a new entry missed by inotify (a
/// watch that could not be set up) waits at most this long.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// How soon to look again at entries another process is sending.
const BUSY_RECHECK: Duration = Duration::from_secs(5);

pub fn watch(spool: &Spool, dsn: &Dsn, outbox: &Outbox) -> Result<i32, Failure> {
    let failed = |e: anyhow::Error| Failure::new(exit::FAILURE, e);
    // SIGTERM and SIGINT write a byte to a socket the loop waits on.
    let (stop, stop_writer) = UnixStream::pair().map_err(|e| failed(anyhow::Error::new(e)))?;
    let hub = crate::supervise::signals::take_over(false)
        .map_err(|e| failed(anyhow::Error::new(e).context("failed to listen for SIGTERM and SIGINT")))?;
    let _stopping = hub.listen(Box::new(move |signal| {
        if signal == libc::SIGTERM || signal == libc::SIGINT {
            let _ = (&stop_writer).write(&[1]);
        }
        true
    }));
    stop.set_nonblocking(true).map_err(|e| failed(anyhow::Error::new(e)))?;
    let pending = outbox.dir().join("pending");
    let changes = match new_envelopes(&pending) {
        Ok(changes) => Some(changes),
        Err(e) => {
            tracing::warn!(
                "failed to watch {} for new reports ({e}); looking every {}s instead",
                pending.display(),
                MAX_WAIT.as_secs()
            );
            None
        }
    };
    let uploader = Uploader::new(dsn.clone(), UploaderConfig::default(), Arc::new(SystemClock))
        .map_err(|e| failed(anyhow::Error::new(e).context("failed to set up the HTTP client")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(anyhow::Error::new(e).context("failed to start the delivery runtime")))?;
    tracing::info!("sending the reports queued in {} to {dsn} as they come", outbox.dir().display());
    runtime.block_on(async {
        let stop = tokio::net::UnixStream::from_std(stop).map_err(|e| failed(anyhow::Error::new(e)))?;
        serve(spool, dsn, outbox, &uploader, &stop, changes.as_deref()).await;
        Ok::<(), Failure>(())
    })?;
    let waiting = outbox.pending().map(|p| p.len()).unwrap_or(0);
    tracing::info!(
        "stopped; {waiting} report{} waiting in {}",
        if waiting == 1 { "" } else { "s" },
        outbox.dir().display()
    );
    Ok(exit::SUCCESS)
}

/// The loop; returns when a stop signal arrives.
async fn serve(
    spool: &Spool,
    dsn: &Dsn,
    outbox: &Outbox,
    uploader: &Uploader,
    stop: &tokio::net::UnixStream,
    changes: Option<&Notify>,
) {
    loop {
        queue_ended_loops(spool.dir(), dsn, outbox);
        let deadline = tokio::time::Instant::now() + PASS_LIMIT;
        let pass = tokio::select! {
            biased;
            _ = stop.readable() => return,
            pass = flush(outbox, uploader, deadline) => pass,
        };
        let summary = match pass {
            Ok(summary) => {
                say(&summary, dsn);
                Some(summary)
            }
            // The outbox could not be read or updated: try again later.
            Err(e) => {
                tracing::warn!("{}; trying again in {}s", Chain(&e), MAX_WAIT.as_secs());
                None
            }
        };
        let wait = next_wake(outbox, uploader, summary.as_ref());
        tokio::select! {
            biased;
            _ = stop.readable() => return,
            _ = new_envelope(changes) => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One line for a pass that did something worth knowing.
fn say(summary: &FlushSummary, dsn: &Dsn) {
    if summary.set_aside() > 0 {
        tracing::warn!("{} to {dsn}", summary.describe());
    } else if summary.sent > 0 {
        tracing::info!("{} to {dsn}", summary.describe());
    }
}

/// How long to wait before the next pass: until the first pending entry
/// is due (its retry backoff and Relay's rate limits over), at most
/// [`MAX_WAIT`].
fn next_wake(outbox: &Outbox, uploader: &Uploader, summary: Option<&FlushSummary>) -> Duration {
    let Some(summary) = summary else { return MAX_WAIT };
    if summary.deadline_reached {
        return Duration::ZERO; // the pass ran out of time with work left
    }
    // Relay was unreachable: the entries after the one that failed were not
    // tried; they wait for its retry rather than fail one by one now.
    let relay_down = summary.not_attempted > 0;
    let now = SystemTime::now();
    let limits = uploader.rate_limits();
    let event_limit = limits.limited_until(LimitedPart::Event, now);
    let patience = uploader.config().attachment_limit_patience;
    let attachment_limit = limits
        .limited_until(LimitedPart::Attachments, now)
        .filter(|until| until.duration_since(now).unwrap_or_default() <= patience);
    let mut wake = MAX_WAIT;
    for id in outbox.pending().unwrap_or_default() {
        let Ok(state) = outbox.state(&id) else { continue };
        let mut due = state.next_attempt_at().max(event_limit.unwrap_or(now));
        if state.summary.attachments > 0 {
            due = due.max(attachment_limit.unwrap_or(now));
        }
        let after = due.duration_since(now).unwrap_or_default();
        if relay_down && after.is_zero() {
            continue;
        }
        wake = wake.min(after);
    }
    if summary.busy > 0 {
        // In flight in another process: it finishes or gives it back.
        wake = wake.max(BUSY_RECHECK.min(MAX_WAIT));
    }
    wake
}

/// Resolves when a new envelope was renamed into `outbox/pending`; never
/// without a watch.
async fn new_envelope(changes: Option<&Notify>) {
    match changes {
        Some(changes) => changes.notified().await,
        None => std::future::pending().await,
    }
}

/// Watches the outbox's `pending/` (inotify, on a thread of its own that
/// blocks in `read`) and notifies for each envelope renamed into it: how
/// the outbox commits an entry. Only renames of `.envelope` files count,
/// so that a pass's own bookkeeping (state files) does not wake the loop.
/// A notification with nobody waiting is kept for the next wait.
fn new_envelopes(dir: &Path) -> std::io::Result<Arc<Notify>> {
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC)?;
    inotify.add_watch(dir, AddWatchFlags::IN_MOVED_TO)?;
    let notify = Arc::new(Notify::new());
    let notifier = Arc::clone(&notify);
    std::thread::Builder::new().name("inotify".into()).spawn(move || {
        while let Ok(events) = inotify.read_events() {
            if events.iter().any(|e| e.name.as_ref().is_some_and(|n| n.as_encoded_bytes().ends_with(b".envelope"))) {
                notifier.notify_one();
            }
        }
    })?;
    Ok(notify)
}
