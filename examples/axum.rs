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

mod support;

use axum::Router;
use axum::routing::post;
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
    let app = Router::new()
        .route(support::PATH, post(webhook))
        .route(&format!("{}/tickets", support::PATH), post(tickets))
        .layer(support::webhook_layer());

    let listener = tokio::net::TcpListener::bind(support::addr()).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
