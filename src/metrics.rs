//! `--metrics-addr`: crashwatch's own health as Prometheus metrics.
//!
//! The counters live in [`Metrics`] (atomics, updated by the run loop and
//! the delivery); a thread of its own serves them as the Prometheus text
//! format at `/metrics`, on a current-thread tokio runtime with hyper, both
//! already in the build for sending to Relay. The outbox is read when
//! scraped, so `crashwatch_reports_pending` counts what another crashwatch
//! (or `crashwatch send`) did too.
//!
//! The server is best effort: a port that cannot be bound is a warning, not
//! a reason to keep the program from running; Prometheus shows the target
//! down.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::report::Kind;

/// The kinds of abnormal end counted as crashes (an orderly stop is not one).
const CRASH_KINDS: [Kind; 4] = [Kind::Signal, Kind::Oom, Kind::Panic, Kind::Exit];

/// How long a scraper may take to send its request.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; more wait to be accepted. Prometheus needs
/// one; the bound keeps a flood on an exposed port from taking the file
/// descriptors the child's pipes and the spool need.
const MAX_CONNECTIONS: usize = 8;

/// crashwatch's counters since it started.
#[derive(Debug, Default)]
pub struct Metrics {
    child_up: AtomicBool,
    starts: AtomicU64,
    restarts: AtomicU64,
    /// Indexed like [`CRASH_KINDS`].
    crashes: [AtomicU64; 4],
    /// Unix seconds of the last crash; 0 before the first.
    last_crash: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    repeats: AtomicU64,
    over_budget: AtomicU64,
}

impl Metrics {
    pub fn child_started(&self, restart: bool) {
        self.child_up.store(true, Ordering::Relaxed);
        self.starts.fetch_add(1, Ordering::Relaxed);
        if restart {
            self.restarts.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn child_ended(&self) {
        self.child_up.store(false, Ordering::Relaxed);
    }

    /// Counts an abnormal end of kind `kind` at `at`; orderly stops are not.
    pub fn crashed(&self, kind: Kind, at: SystemTime) {
        let Some(i) = CRASH_KINDS.iter().position(|k| *k == kind) else { return };
        self.crashes[i].fetch_add(1, Ordering::Relaxed);
        let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.last_crash.fetch_max(secs, Ordering::Relaxed);
    }

    /// Reports accepted by Relay.
    pub fn sent(&self, n: usize) {
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Reports that will never be delivered: rejected by Relay, or that
    /// could not be queued.
    pub fn failed(&self, n: usize) {
        self.failed.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A report kept locally as a repeat of one already sent.
    pub fn repeat(&self) {
        self.repeats.fetch_add(1, Ordering::Relaxed);
    }

    /// A report kept locally because the hourly budget was spent.
    pub fn over_budget(&self) {
        self.over_budget.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text format (version 0.0.4). `pending` is the number
    /// of reports waiting in the outbox, when there is one.
    pub fn render(&self, pending: Option<usize>) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let one = |v: u64| [(String::new(), v)];
        family(
            "crashwatch_child_up",
            "gauge",
            "Whether the supervised program is running.",
            &one(u64::from(self.child_up.load(Ordering::Relaxed))),
        );
        family("crashwatch_child_starts_total", "counter", "Times the program was started.", &one(get(&self.starts)));
        family(
            "crashwatch_restarts_total",
            "counter",
            "Times --restart ran the program again.",
            &one(get(&self.restarts)),
        );
        let crashes: Vec<_> = CRASH_KINDS
            .iter()
            .zip(&self.crashes)
            .map(|(kind, n)| (format!("{{kind=\"{}\"}}", kind.name()), get(n)))
            .collect();
        family(
            "crashwatch_crashes_total",
            "counter",
            "Abnormal ends of the program by kind: signal (a crash), oom, panic, exit (a non-zero code).",
            &crashes,
        );
        family(
            "crashwatch_last_crash_timestamp_seconds",
            "gauge",
            "Unix time of the last abnormal end; 0 if none yet.",
            &one(get(&self.last_crash)),
        );
        if let Some(pending) = pending {
            family(
                "crashwatch_reports_pending",
                "gauge",
                "Reports waiting in the outbox to be sent.",
                &one(pending as u64),
            );
        }
        family("crashwatch_reports_sent_total", "counter", "Reports accepted by Sentry.", &one(get(&self.sent)));
        family(
            "crashwatch_reports_failed_total",
            "counter",
            "Reports that will not be delivered: rejected by Sentry or impossible to queue.",
            &one(get(&self.failed)),
        );
        family(
            "crashwatch_reports_suppressed_total",
            "counter",
            "Reports kept locally, not sent: repeats of a crash already sent, or over the hourly budget.",
            &[
                ("{reason=\"repeat\"}".into(), get(&self.repeats)),
                ("{reason=\"budget\"}".into(), get(&self.over_budget)),
            ],
        );
        out
    }
}

/// Why the metrics cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--metrics-addr {addr} is not a HOST:PORT address")]
    Address { addr: String, source: std::io::Error },
    #[error("failed to listen on {addr} for --metrics-addr (is the port in use, or the address not this host's?)")]
    Bind { addr: String, source: std::io::Error },
    #[error("failed to start the metrics server")]
    Start(#[source] std::io::Error),
}

/// Serves `metrics` at `addr` on a thread of its own for the rest of the
/// process; returns the address bound (the port, when `addr` said 0).
pub fn serve(
    addr: &str,
    metrics: Arc<Metrics>,
    pending: impl Fn() -> Option<usize> + Send + Sync + 'static,
) -> Result<SocketAddr, ServeError> {
    let resolved: Vec<SocketAddr> =
        addr.to_socket_addrs().map_err(|source| ServeError::Address { addr: addr.to_owned(), source })?.collect();
    let listener =
        TcpListener::bind(&resolved[..]).map_err(|source| ServeError::Bind { addr: addr.to_owned(), source })?;
    let bound = listener.local_addr().map_err(ServeError::Start)?;
    listener.set_nonblocking(true).map_err(ServeError::Start)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ServeError::Start)?;
    let pending: Arc<dyn Fn() -> Option<usize> + Send + Sync> = Arc::new(pending);
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || runtime.block_on(accept(listener, metrics, pending)))
        .map_err(ServeError::Start)?;
    Ok(bound)
}

async fn accept(listener: TcpListener, metrics: Arc<Metrics>, pending: Arc<dyn Fn() -> Option<usize> + Send + Sync>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!("metrics server stopped: {e}");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: pause, go on.
                tracing::debug!("metrics server: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (metrics, pending) = (Arc::clone(&metrics), Arc::clone(&pending));
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |request| {
                let response = respond(&request, &metrics, &*pending);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!("metrics server: connection ended: {e}");
            }
        });
    }
}

type Response = hyper::Response<http_body_util::Full<hyper::body::Bytes>>;

fn respond<B>(request: &hyper::Request<B>, metrics: &Metrics, pending: &dyn Fn() -> Option<usize>) -> Response {
    use hyper::{Method, StatusCode, header};
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut response = hyper::Response::new(http_body_util::Full::new(hyper::body::Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = header::HeaderValue::from_str(content_type) {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        response
    };
    match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", metrics.render(pending()))
        }
        (&Method::GET | &Method::HEAD, "/") => {
            reply(StatusCode::OK, "text/plain; charset=utf-8", "crashwatch: metrics are at /metrics\n".into())
        }
        (&Method::GET | &Method::HEAD, _) => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        _ => reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_as_prometheus_text() {
        let metrics = Metrics::default();
        metrics.child_started(false);
        metrics.crashed(Kind::Signal, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        metrics.crashed(Kind::Signal, UNIX_EPOCH + Duration::from_secs(1_600_000_000));
        metrics.crashed(Kind::Stopped, UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        metrics.child_ended();
        metrics.child_started(true);
        metrics.sent(2);
        metrics.repeat();
        let text = metrics.render(Some(3));
        for line in [
            "crashwatch_child_up 1",
            "crashwatch_child_starts_total 2",
            "crashwatch_restarts_total 1",
            "crashwatch_crashes_total{kind=\"signal\"} 2",
            "crashwatch_crashes_total{kind=\"oom\"} 0",
            "crashwatch_last_crash_timestamp_seconds 1700000000",
            "crashwatch_reports_pending 3",
            "crashwatch_reports_sent_total 2",
            "crashwatch_reports_suppressed_total{reason=\"repeat\"} 1",
            "# TYPE crashwatch_crashes_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // An orderly stop is no crash, and without an outbox there is no
        // pending count.
        assert!(!text.contains("stopped"));
        assert!(!metrics.render(None).contains("crashwatch_reports_pending"));
    }

    #[test]
    fn a_bad_address_is_explained() {
        let e = serve("no-port-here", Arc::new(Metrics::default()), || None).unwrap_err();
        assert!(e.to_string().contains("not a HOST:PORT"), "{e}");
    }
}
