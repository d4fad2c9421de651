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
//! cargo run -p periskope-webhook-cli -- send --key peri_... http://127.0.0.1:3000/webhooks/periskope tests/fixtures
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

mod support;

use axum::Router;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusBuilder;
use periskope_webhook::extract::TicketEvent;
use periskope_webhook::{DeliveryMetadata, WebhookEvent};

async fn webhook(event: WebhookEvent, metadata: DeliveryMetadata) -> &'static str {
    support::log_delivery(&event, Some(&metadata));
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

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut app = Router::new()
        .route(support::PATH, post(webhook))
        .route(&format!("{}/tickets", support::PATH), post(tickets))
        .layer(support::webhook_layer());
    if std::env::var_os("METRICS").is_some_and(|value| value == "1") {
        let prometheus = PrometheusBuilder::new().install_recorder().map_err(std::io::Error::other)?;
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
