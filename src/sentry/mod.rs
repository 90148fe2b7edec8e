//! Delivery of crash reports to a Sentry Relay.
//!
//! The product builds the event JSON and hands it, with its attachments, to
//! this crate. Delivery is split so that each stage only knows the one before
//! it:
//!
//! ```text
//!  dsn ──► envelope ──► outbox (disk) ──► flush ──► upload ──► Relay
//!            │             ▲                 │
//!            │             └── state, rate limits, client-report counts
//!            └── size limits, minidump dropping, client_report items
//! ```
//!
//! * [`dsn`] parses and validates the DSN and derives the envelope endpoint
//!   and the `X-Sentry-Auth` header.
//! * [`envelope`] frames the envelope exactly as Relay parses it.
//! * [`outbox`] is the durable spool: a report is on disk (fsynced) before any
//!   network I/O and leaves it only after Relay answered.
//! * [`upload`] performs one HTTP request and classifies the answer the way
//!   Relay classifies its own upstream errors.
//! * [`flush`] drives the outbox through the uploader until everything due is
//!   sent or a deadline passes.

pub mod check_in;
pub mod client_report;
pub mod clock;
pub mod deliver;
pub mod dsn;
pub mod envelope;
pub mod event;
pub mod flush;
pub mod minidump_scrub;
pub mod outbox;
pub mod rate_limit;
pub mod scrub;
pub mod session;
pub mod session_budget;
pub mod throttle;
pub mod upload;

pub use client_report::{Category, DiscardReason, DiscardedCounts};
pub use clock::{Clock, ManualClock, SystemClock};
pub use dsn::{Dsn, DsnError};
pub use envelope::{Attachment, AttachmentSource, Envelope, EnvelopeError, EventId, MinidumpProcessing, Rewrite};
pub use flush::{FlushError, FlushSummary, flush, flush_now};
pub use outbox::{Outbox, OutboxConfig, OutboxError};
pub use rate_limit::RateLimits;
pub use upload::{UploadError, Uploader, UploaderConfig};

/// The `sentry_client` value sent with every request: `crashwatch/VERSION`.
pub const CLIENT_NAME: &str = concat!("crashwatch/", env!("CARGO_PKG_VERSION"));
