//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`): every
//! delivery and rejection, and the time and bytes each request costs, for whichever exporter
//! the application installs (Prometheus, StatsD, OpenTelemetry, ...).
//!
//! ```
//! # #[cfg(feature = "metrics")] {
//! use metrics_exporter_prometheus::PrometheusBuilder;
//!
//! // Once, at start-up: the exporter becomes the global recorder the layer records into.
//! let prometheus = PrometheusBuilder::new().install_recorder().expect("no other recorder yet");
//! // Then serve `prometheus.render()` on `GET /metrics` (see `examples/axum.rs`, `METRICS=1`).
//! # let _ = prometheus;
//! # }
//! ```
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `periskope_webhook_deliveries_total` | counter | `kind` (the event name, or `unknown`), `outcome` (`handled`, `ignored`, `duplicate`; with the inbox also `unavailable`, `full`) |
//! | `periskope_webhook_rejections_total` | counter | `code` ([`Rejection::code`]) |
//! | `periskope_webhook_verify_seconds` | histogram | |
//! | `periskope_webhook_decode_seconds` | histogram | |
//! | `periskope_webhook_body_bytes` | histogram | |
//! | `periskope_webhook_inbox_queue_depth` | gauge, by [`record_inbox`] (feature `inbox`) | |
//! | `periskope_webhook_inbox_attempts` | gauge, by [`record_inbox`] | |
//! | `periskope_webhook_inbox_dead_letters` | gauge, by [`record_inbox`] | |
//! | `periskope_webhook_inbox_oldest_pending_seconds` | gauge, by [`record_inbox`] | |
//!
//! Every verified delivery counts once: `handled` when it reached the inner service (a
//! duplicate forwarded in pass-through mode counts as `duplicate`), `ignored` when the event
//! filter answered it, `duplicate` when de-duplication answered it. Behind the inbox's
//! [`Acceptor`](crate::inbox::Acceptor), `handled` means stored; a copy already stored counts
//! as `duplicate`, a delivery the store could not take as `unavailable`, and one refused by a
//! full file as `full` (both answered `503`). Labels come from closed
//! sets (the 20 event names and `unknown`, the rejection codes): never an id, a phone number or
//! an unknown event's name. The histograms record the size of each body read in full, the time
//! of each successful verification, and the time of each decode that yields an event for the
//! inner service (an event the filter refuses is not typed, so not timed).
//!
//! Without the feature the recording functions are empty and compile to nothing.

#[cfg(feature = "metrics")]
use std::time::Instant;

use http::{Request, Response};

#[cfg(feature = "metrics")]
use crate::dedup::DedupOutcome;
use crate::event::{EventKind, WebhookEvent};
#[cfg(feature = "metrics")]
use crate::metadata::DeliveryMetadata;
use crate::rejection::Rejection;

/// Counter of verified deliveries, by `kind` and `outcome`.
pub const DELIVERIES_TOTAL: &str = "periskope_webhook_deliveries_total";
/// Counter of refused requests, by `code`.
pub const REJECTIONS_TOTAL: &str = "periskope_webhook_rejections_total";
/// Histogram of the seconds each successful signature verification took.
pub const VERIFY_SECONDS: &str = "periskope_webhook_verify_seconds";
/// Histogram of the seconds each decode of an event for the inner service took.
pub const DECODE_SECONDS: &str = "periskope_webhook_decode_seconds";
/// Histogram of the size in bytes of each body read in full.
pub const BODY_BYTES: &str = "periskope_webhook_body_bytes";

/// What became of a verified delivery: the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    Handled,
    Ignored,
    Duplicate,
    /// The inbox could not store it (answered `503`).
    #[cfg_attr(not(feature = "inbox"), allow(dead_code))]
    Unavailable,
    /// The inbox is full (answered `503`).
    #[cfg_attr(not(feature = "inbox"), allow(dead_code))]
    Full,
}

impl Outcome {
    #[cfg(feature = "metrics")]
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Handled => "handled",
            Outcome::Ignored => "ignored",
            Outcome::Duplicate => "duplicate",
            Outcome::Unavailable => "unavailable",
            Outcome::Full => "full",
        }
    }
}

/// Counts a verified delivery.
#[inline]
pub(crate) fn delivery(kind: EventKind, outcome: Outcome) {
    #[cfg(feature = "metrics")]
    metrics::counter!(DELIVERIES_TOTAL, "kind" => kind.as_str(), "outcome" => outcome.as_str()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, outcome);
}

/// A verified delivery handed to the inner service, counted once: when the service answers, or
/// when the answer is dropped unawaited. Its outcome is `handled`, or `duplicate` when
/// de-duplication forwards a copy in pass-through mode, unless the service's response reports
/// its own ([`report`]: the inbox's acceptor).
pub(crate) struct Forwarded {
    #[cfg(feature = "metrics")]
    uncounted: Option<(EventKind, Outcome)>,
}

impl Forwarded {
    #[inline]
    pub(crate) fn new<B>(request: &Request<B>) -> Self {
        #[cfg(not(feature = "metrics"))]
        let _ = request;
        Forwarded {
            #[cfg(feature = "metrics")]
            uncounted: {
                let extensions = request.extensions();
                extensions.get::<WebhookEvent>().map(|event| {
                    let copy = extensions.get::<DeliveryMetadata>().is_some_and(|metadata| {
                        matches!(metadata.dedup, DedupOutcome::Duplicate | DedupOutcome::InFlight)
                    });
                    (event.kind(), if copy { Outcome::Duplicate } else { Outcome::Handled })
                })
            },
        }
    }

    /// Counts the delivery with the outcome `response` reports, if any (an error counts as
    /// handed on).
    #[inline]
    pub(crate) fn answered<B>(&mut self, response: Option<&Response<B>>) {
        #[cfg(feature = "metrics")]
        if let Some((kind, outcome)) = self.uncounted.take() {
            let reported = response.and_then(|response| response.extensions().get::<Reported>());
            delivery(kind, reported.map_or(outcome, |reported| reported.0));
        }
        #[cfg(not(feature = "metrics"))]
        let _ = response;
    }
}

#[cfg(feature = "metrics")]
impl Drop for Forwarded {
    fn drop(&mut self) {
        if let Some((kind, outcome)) = self.uncounted.take() {
            delivery(kind, outcome);
        }
    }
}

/// The outcome an inner service reports for a delivery, in its response's extensions.
#[cfg(feature = "metrics")]
#[derive(Clone, Copy, Debug)]
struct Reported(Outcome);

/// Marks `response` with what became of the delivery, for the layer to count instead of
/// `handled`.
#[cfg(feature = "inbox")]
#[inline]
pub(crate) fn report<B>(response: &mut Response<B>, outcome: Outcome) {
    #[cfg(feature = "metrics")]
    response.extensions_mut().insert(Reported(outcome));
    #[cfg(not(feature = "metrics"))]
    let _ = (response, outcome);
}

/// Counts a verified delivery that de-duplication answered itself.
#[inline]
pub(crate) fn answered_duplicate<B>(request: &Request<B>) {
    if let Some(event) = request.extensions().get::<WebhookEvent>() {
        delivery(event.kind(), Outcome::Duplicate);
    }
}

/// Counts a refused request.
#[inline]
pub(crate) fn rejected(rejection: &Rejection) {
    #[cfg(feature = "metrics")]
    metrics::counter!(REJECTIONS_TOTAL, "code" => rejection.code()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = rejection;
}

/// Records the size of a body read in full.
#[inline]
pub(crate) fn body_read(bytes: usize) {
    #[cfg(feature = "metrics")]
    metrics::histogram!(BODY_BYTES).record(bytes as f64);
    #[cfg(not(feature = "metrics"))]
    let _ = bytes;
}

/// Times one step; empty without the feature.
pub(crate) struct Stopwatch {
    #[cfg(feature = "metrics")]
    started: Instant,
}

impl Stopwatch {
    #[inline]
    pub(crate) fn start() -> Self {
        Stopwatch {
            #[cfg(feature = "metrics")]
            started: Instant::now(),
        }
    }

    /// Records the time since [`start`](Self::start) as a verification.
    #[inline]
    pub(crate) fn verified(self) {
        #[cfg(feature = "metrics")]
        metrics::histogram!(VERIFY_SECONDS).record(self.started.elapsed());
    }

    /// Records the time since [`start`](Self::start) as a decode.
    #[inline]
    pub(crate) fn decoded(self) {
        #[cfg(feature = "metrics")]
        metrics::histogram!(DECODE_SECONDS).record(self.started.elapsed());
    }
}

/// Gauge of the inbox's pending and running jobs.
#[cfg(all(feature = "metrics", feature = "inbox"))]
pub const INBOX_QUEUE_DEPTH: &str = "periskope_webhook_inbox_queue_depth";
/// Gauge of the attempts counted on the inbox's pending and running jobs.
#[cfg(all(feature = "metrics", feature = "inbox"))]
pub const INBOX_ATTEMPTS: &str = "periskope_webhook_inbox_attempts";
/// Gauge of the inbox's dead letters.
#[cfg(all(feature = "metrics", feature = "inbox"))]
pub const INBOX_DEAD_LETTERS: &str = "periskope_webhook_inbox_dead_letters";
/// Gauge of the age in seconds of the inbox's oldest pending or running job (0 when none).
#[cfg(all(feature = "metrics", feature = "inbox"))]
pub const INBOX_OLDEST_PENDING_SECONDS: &str = "periskope_webhook_inbox_oldest_pending_seconds";

/// Reads the inbox's figures from `store` ([`InboxStore::stats`](crate::inbox::InboxStore::stats))
/// and sets the inbox gauges. The store answers one query per call: call it every few seconds.
///
/// ```no_run
/// # async fn run(store: periskope_webhook::inbox::SqliteStore) {
/// let mut every = tokio::time::interval(std::time::Duration::from_secs(15));
/// loop {
///     every.tick().await;
///     if let Err(error) = periskope_webhook::metrics::record_inbox(&store).await {
///         eprintln!("inbox metrics: {error}");
///     }
/// }
/// # }
/// ```
///
/// # Errors
/// When the store cannot be read; the gauges keep their last values.
#[cfg(all(feature = "metrics", feature = "inbox"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "metrics", feature = "inbox"))))]
pub async fn record_inbox<St: crate::inbox::InboxStore>(store: &St) -> Result<(), crate::inbox::InboxError> {
    let stats = store.stats(std::time::SystemTime::now()).await?;
    metrics::gauge!(INBOX_QUEUE_DEPTH).set(stats.queue_depth() as f64);
    metrics::gauge!(INBOX_ATTEMPTS).set(stats.attempts_in_queue as f64);
    metrics::gauge!(INBOX_DEAD_LETTERS).set(stats.dead as f64);
    metrics::gauge!(INBOX_OLDEST_PENDING_SECONDS)
        .set(stats.oldest_pending_age.map_or(0.0, |age| age.as_secs_f64()));
    Ok(())
}
