//! A Periskope webhook endpoint with axum.
//!
//! `PeriskopeWebhookLayer` sits on `POST /webhooks/periskope`: it bounds the body, checks the
//! `x-periskope-signature` HMAC, decodes the event, and only then calls the handler, which takes
//! the event as an extractor (feature `axum`). A second route, `/webhooks/periskope/tickets`,
//! takes only ticket events with the typed `TicketEvent` extractor. Rejected requests never
//! reach a handler; they are printed by the layer's `on_rejection` hook (see
//! `examples/support/mod.rs`).
//!
//! ```text
//! PERISKOPE_SIGNING_KEY=peri_... ADDR=127.0.0.1:3000 cargo run --example axum
//! # in another terminal: every sample delivery, signed with the same key
//! cargo run -p periskope-webhook-cli -- send --key peri_... http://127.0.0.1:3000/webhooks/periskope tests/fixtures/deliveries
//! ```
//!
//! Without `PERISKOPE_SIGNING_KEY` it uses Periskope's public demo key (local testing only).
//!
//! With `METRICS=1` it also serves what the layer counts (feature `metrics`) as Prometheus text
//! on `GET /metrics`, outside the webhook layer:
//!
//! ```text
//! METRICS=1 cargo run --example axum
//! curl http://127.0.0.1:3000/metrics
//! ```
//!
//! With `REDIS_URL` (e.g. `redis://127.0.0.1:6379`) it de-duplicates in that Redis instead of
//! in memory, so that several copies of this server behind one load balancer handle each
//! occurrence once (feature `redis`). `REDIS_LEASE_MS` sets how long a claim outlives a copy
//! that died while handling it (default 60 s). Each delivery that reaches the handler then also
//! prints `handled <event name> <first 16 hex digits of the SHA-256 of the body> <dedup outcome>`
//! (`new`, or `store_unavailable` when Redis could not answer): a line to count, with no id in it.

mod support;

use std::fmt::Write as _;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use periskope_webhook::dedup::{DedupOutcome, RedisStore};
use periskope_webhook::extract::TicketEvent;
use periskope_webhook::{DeliveryMetadata, WebhookEvent};
use sha2::{Digest, Sha256};

/// Whether each handled delivery also gets a `handled ...` line (when de-duplicating in Redis).
#[derive(Clone, Copy)]
struct CountHandled(bool);

async fn webhook(
    State(CountHandled(count)): State<CountHandled>,
    event: WebhookEvent,
    metadata: DeliveryMetadata,
) -> &'static str {
    support::log_delivery(&event, Some(&metadata));
    if count {
        println!("handled {} {} {}", event.name(), short_digest(event.body()), outcome_name(metadata.dedup));
    }
    // Answer quickly: Periskope waits for the response. Hand slow work to a task or a queue
    // (`WebhookEvent` is `'static`, `Send` and cheap to clone).
    "ok"
}

/// Only ticket events reach this handler; any other kind is answered 422 by the extractor.
async fn tickets(event: TicketEvent) -> &'static str {
    let ticket = event.ticket().ticket.as_ref();
    println!(
        "ticket {} status {:?}",
        ticket.and_then(|t| t.ticket_id.as_deref()).unwrap_or("?"),
        ticket.and_then(|t| t.status.as_ref()).map(|s| s.as_str())
    );
    "ok"
}

/// The first 16 hex digits of the SHA-256 of `body`: tells deliveries apart without naming them.
fn short_digest(body: &[u8]) -> String {
    Sha256::digest(body).iter().take(8).fold(String::with_capacity(16), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

fn outcome_name(outcome: DedupOutcome) -> &'static str {
    match outcome {
        DedupOutcome::New => "new",
        DedupOutcome::StoreUnavailable => "store_unavailable",
        DedupOutcome::Duplicate => "duplicate",
        DedupOutcome::InFlight => "in_flight",
        _ => "off",
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let redis_url = std::env::var("REDIS_URL").ok();
    let routes = Router::new()
        .route(support::PATH, post(webhook))
        .route(&format!("{}/tickets", support::PATH), post(tickets))
        .with_state(CountHandled(redis_url.is_some()));
    let mut app = match redis_url {
        Some(url) => {
            let mut store = RedisStore::connect(&url).await.map_err(std::io::Error::other)?;
            if let Ok(lease) = std::env::var("REDIS_LEASE_MS") {
                let lease = lease.parse().map_err(|_| {
                    std::io::Error::other("REDIS_LEASE_MS must be a whole number of milliseconds")
                })?;
                store = store.lease(Duration::from_millis(lease));
            }
            routes.layer(support::webhook_layer_on(store))
        }
        None => routes.layer(support::webhook_layer()),
    };
    if std::env::var_os("METRICS").is_some_and(|value| value == "1") {
        // Each histogram with its recommended buckets: without them, the exporter renders
        // summaries, which cannot be summed across replicas.
        let mut builder = PrometheusBuilder::new();
        for (name, buckets) in periskope_webhook::metrics::histogram_buckets() {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
                .map_err(std::io::Error::other)?;
        }
        let prometheus = builder.install_recorder().map_err(std::io::Error::other)?;
        periskope_webhook::metrics::describe();
        // Added after `.layer(...)`, so the webhook layer does not wrap it.
        app = app.route("/metrics", get(move || std::future::ready(prometheus.render())));
    }

    let listener = tokio::net::TcpListener::bind(support::addr()).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
