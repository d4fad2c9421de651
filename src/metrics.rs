//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`): every
//! delivery and rejection, the time and bytes each request costs, and with the inbox each
//! attempt, for whichever exporter the application installs (Prometheus, StatsD,
//! OpenTelemetry, ...).
//!
//! ```
//! # #[cfg(feature = "metrics")] {
//! use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
//!
//! // Once, at start-up: each histogram with its recommended buckets (without them the
//! // Prometheus exporter renders summaries), then the exporter as the global recorder.
//! let mut builder = PrometheusBuilder::new();
//! for (name, buckets) in periskope_webhook::metrics::histogram_buckets() {
//!     builder = builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets).expect("buckets");
//! }
//! let prometheus = builder.install_recorder().expect("no other recorder yet");
//! periskope_webhook::metrics::describe();
//! // Then serve `prometheus.render()` on `GET /metrics` (see `examples/axum.rs`, `METRICS=1`).
//! # let _ = prometheus;
//! # }
//! ```
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `periskope_webhook_deliveries_total` | counter | `kind` (the event name, or `unknown`), `outcome` (`handled`, `ignored`, `duplicate`; with the inbox also `unavailable`, `full`) |
//! | `periskope_webhook_rejections_total` | counter | `code` ([`Rejection::code`]) |
//! | `periskope_webhook_response_seconds` | histogram | |
//! | `periskope_webhook_verify_seconds` | histogram | |
//! | `periskope_webhook_decode_seconds` | histogram | |
//! | `periskope_webhook_body_bytes` | histogram | |
//! | `periskope_webhook_inbox_attempt_seconds` | histogram (feature `inbox`) | `kind`, `outcome` (`handled`, `failed`, `timed_out`, `released`, `abandoned`) |
//! | `periskope_webhook_inbox_wait_seconds` | histogram | `kind` |
//! | `periskope_webhook_inbox_retries_total` | counter | `kind` |
//! | `periskope_webhook_inbox_dead_letters_total` | counter | `kind` |
//! | `periskope_webhook_inbox_queue_depth` | gauge, by [`inbox::record_metrics`] | |
//! | `periskope_webhook_inbox_attempts` | gauge, by [`inbox::record_metrics`] | |
//! | `periskope_webhook_inbox_dead_letters` | gauge, by [`inbox::record_metrics`] | |
//! | `periskope_webhook_inbox_oldest_pending_seconds` | gauge, by [`inbox::record_metrics`] | |
//!
//! [`ALL`] lists them once, with their type, labels and recommended buckets; everything else
//! (the exporter's buckets, the descriptions, the shipped dashboard and alert rules, checked by
//! `tests/metrics.rs`) is derived from it.
//!
//! Every verified delivery counts once: `handled` when it reached the inner service (a
//! duplicate forwarded in pass-through mode counts as `duplicate`), `ignored` when the event
//! filter answered it, `duplicate` when de-duplication answered it. Behind the inbox's
//! [`Acceptor`](crate::inbox::Acceptor), `handled` means stored; a copy already stored counts
//! as `duplicate`, a delivery the store could not take as `unavailable`, and one refused by a
//! full file as `full` (both answered `503`). Labels come from closed
//! sets (the 20 event names and `unknown`, the rejection codes, the outcomes above): never an
//! id, a phone number or an unknown event's name. The histograms record the time from each
//! request's call to its answer (every request, refused ones included), the size of each body
//! read in full, the time of each successful verification, and the time of each decode that
//! yields an event for the inner service (an event the filter refuses is not typed, so not
//! timed).
//!
//! With the inbox, the worker records each attempt's duration by kind and outcome (`abandoned`:
//! its lease could not be renewed, so it stopped without settling), the wait from receipt to
//! each first attempt (a job an operator retries or replays starts again at attempt 1, and
//! counts its wait from receipt again), and counts each failure it schedules for a retry and
//! each job it makes a dead letter. A job whose last attempt's lease expired (its worker
//! crashed or hung) becomes a dead letter inside the next claim, and shows in the
//! `inbox_dead_letters` gauge only.
//!
//! # Why the inbox does not appear here
//! The layer and the inbox both record through this module, and this module imports neither
//! the inbox nor its stores: dependencies point one way (layer → metrics ← inbox). The inbox
//! reads its own gauges ([`inbox::record_metrics`] asks the store, then sets them through
//! here), and the worker hands over plain values: an event kind, an outcome, a duration. A
//! trait the inbox would report through, implemented here, would break the cycle too, but
//! for a single implementation it would add a type parameter (or a dynamic call) to the
//! acceptor and the worker, and a second place naming what is recorded.
//!
//! Without the feature the recording functions are empty and compile to nothing.
//!
//! [`inbox::record_metrics`]: crate::inbox::record_metrics

#[cfg(feature = "inbox")]
use std::time::Duration;
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
/// Histogram of the seconds from each request's call to its answer.
pub const RESPONSE_SECONDS: &str = "periskope_webhook_response_seconds";
/// Histogram of the seconds each successful signature verification took.
pub const VERIFY_SECONDS: &str = "periskope_webhook_verify_seconds";
/// Histogram of the seconds each decode of an event for the inner service took.
pub const DECODE_SECONDS: &str = "periskope_webhook_decode_seconds";
/// Histogram of the size in bytes of each body read in full.
pub const BODY_BYTES: &str = "periskope_webhook_body_bytes";
/// Histogram of the seconds each inbox attempt ran, by `kind` and `outcome`.
pub const INBOX_ATTEMPT_SECONDS: &str = "periskope_webhook_inbox_attempt_seconds";
/// Histogram of the seconds from a delivery's receipt to its job's first attempt, by `kind`.
pub const INBOX_WAIT_SECONDS: &str = "periskope_webhook_inbox_wait_seconds";
/// Counter of failed inbox attempts scheduled for a retry, by `kind`.
pub const INBOX_RETRIES_TOTAL: &str = "periskope_webhook_inbox_retries_total";
/// Counter of inbox jobs the worker made dead letters, by `kind`.
pub const INBOX_DEAD_LETTERS_TOTAL: &str = "periskope_webhook_inbox_dead_letters_total";
/// Gauge of the inbox's pending and running jobs.
pub const INBOX_QUEUE_DEPTH: &str = "periskope_webhook_inbox_queue_depth";
/// Gauge of the attempts counted on the inbox's pending and running jobs.
pub const INBOX_ATTEMPTS: &str = "periskope_webhook_inbox_attempts";
/// Gauge of the inbox's dead letters.
pub const INBOX_DEAD_LETTERS: &str = "periskope_webhook_inbox_dead_letters";
/// Gauge of the age in seconds of the inbox's oldest pending or running job (0 when none).
pub const INBOX_OLDEST_PENDING_SECONDS: &str = "periskope_webhook_inbox_oldest_pending_seconds";

/// How an exporter types a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// Only ever grows.
    Counter,
    /// Set to the latest value.
    Gauge,
    /// A distribution of observed values.
    Histogram,
}

impl MetricType {
    /// The type as Prometheus names it: `counter`, `gauge` or `histogram`.
    pub const fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// One metric the crate records: an entry of [`ALL`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Metric {
    /// Its name, as recorded.
    pub name: &'static str,
    /// Its type.
    pub metric_type: MetricType,
    /// Every label it carries; each label's values come from a closed set.
    pub labels: &'static [&'static str],
    /// What it measures, in one line.
    pub help: &'static str,
    /// For a histogram, the upper bounds of the buckets suited to its range; empty otherwise.
    pub buckets: &'static [f64],
}

/// Steps from 10 µs to 100 ms: an HMAC or a decode takes microseconds for a usual body, tens of
/// milliseconds near the 25 MiB limit.
const CPU_SECONDS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
];
/// Steps from 1 ms to 30 s: an answer waits for the inbox's durable insert (group commit, a
/// network round trip to PostgreSQL), bounded by the acceptor's 10 s store timeout.
const ANSWER_SECONDS: &[f64] =
    &[0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Steps from 5 ms to 5 min: handlers call other services, bounded by the attempt timeout (30 s
/// by default).
const HANDLER_SECONDS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];
/// Steps from 10 ms to a day: a job is normally claimed at once, but waits behind its chat and
/// through a backlog or an outage.
const QUEUE_SECONDS: &[f64] =
    &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1_800.0, 3_600.0, 21_600.0, 86_400.0];
/// Powers of four from 256 B to the 25 MiB default body limit.
const BODY_SIZE_BYTES: &[f64] =
    &[256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 26214400.0];

/// Every metric the crate records, once: the single list the exporter's buckets
/// ([`histogram_buckets`]), the descriptions ([`describe`]) and the shipped dashboard and rules
/// (`docs/observability/`, checked against it by `tests/metrics.rs`) derive from. The inbox's
/// are recorded with feature `inbox` only.
pub const ALL: &[Metric] = &[
    Metric {
        name: DELIVERIES_TOTAL,
        metric_type: MetricType::Counter,
        labels: &["kind", "outcome"],
        help: "Verified deliveries, by event kind and what became of them.",
        buckets: &[],
    },
    Metric {
        name: REJECTIONS_TOTAL,
        metric_type: MetricType::Counter,
        labels: &["code"],
        help: "Refused requests, by rejection code.",
        buckets: &[],
    },
    Metric {
        name: RESPONSE_SECONDS,
        metric_type: MetricType::Histogram,
        labels: &[],
        help: "Seconds from each request's call to its answer.",
        buckets: ANSWER_SECONDS,
    },
    Metric {
        name: VERIFY_SECONDS,
        metric_type: MetricType::Histogram,
        labels: &[],
        help: "Seconds each successful signature verification took.",
        buckets: CPU_SECONDS,
    },
    Metric {
        name: DECODE_SECONDS,
        metric_type: MetricType::Histogram,
        labels: &[],
        help: "Seconds each decode of an event for the inner service took.",
        buckets: CPU_SECONDS,
    },
    Metric {
        name: BODY_BYTES,
        metric_type: MetricType::Histogram,
        labels: &[],
        help: "Size in bytes of each body read in full.",
        buckets: BODY_SIZE_BYTES,
    },
    Metric {
        name: INBOX_ATTEMPT_SECONDS,
        metric_type: MetricType::Histogram,
        labels: &["kind", "outcome"],
        help: "Seconds each inbox attempt ran, by event kind and outcome.",
        buckets: HANDLER_SECONDS,
    },
    Metric {
        name: INBOX_WAIT_SECONDS,
        metric_type: MetricType::Histogram,
        labels: &["kind"],
        help: "Seconds from a delivery's receipt to its job's first attempt, by event kind.",
        buckets: QUEUE_SECONDS,
    },
    Metric {
        name: INBOX_RETRIES_TOTAL,
        metric_type: MetricType::Counter,
        labels: &["kind"],
        help: "Failed inbox attempts scheduled for a retry, by event kind.",
        buckets: &[],
    },
    Metric {
        name: INBOX_DEAD_LETTERS_TOTAL,
        metric_type: MetricType::Counter,
        labels: &["kind"],
        help: "Inbox jobs the worker made dead letters, by event kind.",
        buckets: &[],
    },
    Metric {
        name: INBOX_QUEUE_DEPTH,
        metric_type: MetricType::Gauge,
        labels: &[],
        help: "Pending and running inbox jobs.",
        buckets: &[],
    },
    Metric {
        name: INBOX_ATTEMPTS,
        metric_type: MetricType::Gauge,
        labels: &[],
        help: "Attempts counted on pending and running inbox jobs.",
        buckets: &[],
    },
    Metric {
        name: INBOX_DEAD_LETTERS,
        metric_type: MetricType::Gauge,
        labels: &[],
        help: "Inbox dead letters.",
        buckets: &[],
    },
    Metric {
        name: INBOX_OLDEST_PENDING_SECONDS,
        metric_type: MetricType::Gauge,
        labels: &[],
        help: "Age in seconds of the oldest pending or running inbox job (0 when none).",
        buckets: &[],
    },
];

/// Each histogram's name with its recommended buckets, from [`ALL`]: give them to the exporter
/// (`PrometheusBuilder::set_buckets_for_metric` with `Matcher::Full`), which otherwise renders
/// summaries that cannot be aggregated across replicas.
pub fn histogram_buckets() -> impl Iterator<Item = (&'static str, &'static [f64])> {
    ALL.iter()
        .filter(|metric| metric.metric_type == MetricType::Histogram)
        .map(|metric| (metric.name, metric.buckets))
}

/// Registers each metric's description ([`Metric::help`]) with the installed recorder, for the
/// exporter's `# HELP` lines. Call it once, after installing the recorder; empty without the
/// feature.
pub fn describe() {
    #[cfg(feature = "metrics")]
    for metric in ALL {
        match metric.metric_type {
            MetricType::Counter => metrics::describe_counter!(metric.name, metric.help),
            MetricType::Gauge => metrics::describe_gauge!(metric.name, metric.help),
            MetricType::Histogram => metrics::describe_histogram!(metric.name, metric.help),
        }
    }
}

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

    /// Records the time since [`start`](Self::start) as a request's answer.
    #[inline]
    pub(crate) fn answered(&self) {
        #[cfg(feature = "metrics")]
        metrics::histogram!(RESPONSE_SECONDS).record(self.started.elapsed());
    }
}

/// How an inbox attempt ended: the `outcome` label of [`INBOX_ATTEMPT_SECONDS`].
#[cfg(feature = "inbox")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttemptEnd {
    Handled,
    /// The handler failed, answered an error or panicked.
    Failed,
    TimedOut,
    /// Shutdown gave the job back before it finished.
    Released,
    /// Its lease could not be renewed: it stopped without settling.
    Abandoned,
}

#[cfg(all(feature = "inbox", any(feature = "metrics", feature = "tracing")))]
impl AttemptEnd {
    /// The label, and the attempt span's `outcome`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AttemptEnd::Handled => "handled",
            AttemptEnd::Failed => "failed",
            AttemptEnd::TimedOut => "timed_out",
            AttemptEnd::Released => "released",
            AttemptEnd::Abandoned => "abandoned",
        }
    }
}

/// Records how long an inbox attempt ran and how it ended.
#[cfg(feature = "inbox")]
#[inline]
pub(crate) fn attempt_ended(kind: EventKind, end: AttemptEnd, ran: Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!(INBOX_ATTEMPT_SECONDS, "kind" => kind.as_str(), "outcome" => end.as_str())
        .record(ran);
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, end, ran);
}

/// Records how long a job waited from its receipt to its first attempt.
#[cfg(feature = "inbox")]
#[inline]
pub(crate) fn first_attempt_waited(kind: EventKind, waited: Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!(INBOX_WAIT_SECONDS, "kind" => kind.as_str()).record(waited);
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, waited);
}

/// Counts a failed attempt scheduled for a retry.
#[cfg(feature = "inbox")]
#[inline]
pub(crate) fn retry_scheduled(kind: EventKind) {
    #[cfg(feature = "metrics")]
    metrics::counter!(INBOX_RETRIES_TOTAL, "kind" => kind.as_str()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = kind;
}

/// Counts a job the worker made a dead letter.
#[cfg(feature = "inbox")]
#[inline]
pub(crate) fn dead_letter(kind: EventKind) {
    #[cfg(feature = "metrics")]
    metrics::counter!(INBOX_DEAD_LETTERS_TOTAL, "kind" => kind.as_str()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = kind;
}

/// The inbox's figures, as its gauges show them: what the inbox hands over, so that this module
/// need not know its stores.
#[cfg(all(feature = "metrics", feature = "inbox"))]
pub(crate) struct InboxGauges {
    pub(crate) queue_depth: u64,
    pub(crate) attempts: u64,
    pub(crate) dead_letters: u64,
    pub(crate) oldest_pending: Option<Duration>,
}

/// Sets the inbox gauges.
#[cfg(all(feature = "metrics", feature = "inbox"))]
pub(crate) fn inbox_gauges(figures: InboxGauges) {
    metrics::gauge!(INBOX_QUEUE_DEPTH).set(figures.queue_depth as f64);
    metrics::gauge!(INBOX_ATTEMPTS).set(figures.attempts as f64);
    metrics::gauge!(INBOX_DEAD_LETTERS).set(figures.dead_letters as f64);
    metrics::gauge!(INBOX_OLDEST_PENDING_SECONDS)
        .set(figures.oldest_pending.map_or(0.0, |age| age.as_secs_f64()));
}
