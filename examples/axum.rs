//! A Periskope webhook endpoint with axum.
//!
//! `PeriskopeWebhookLayer` sits on `POST /webhooks/periskope`: it bounds the body, checks the
//! `x-periskope-signature` HMAC, decodes the event, and only then calls the handler, which finds
//! the event in the request extensions. Rejected requests never reach the handler; they are
//! printed by the layer's `on_rejection` hook (see `examples/support/mod.rs`).
//!
//! ```text
//! PERISKOPE_SIGNING_KEY=peri_... ADDR=127.0.0.1:3000 cargo run --example axum
//! cargo run --example send          # in another terminal: replays the fixtures, signed
//! ```
//!
//! Without `PERISKOPE_SIGNING_KEY` it uses Periskope's public demo key (local testing only).

mod support;

use axum::routing::post;
use axum::{Extension, Router};
use periskope_webhook::WebhookEvent;

async fn webhook(Extension(event): Extension<WebhookEvent>) -> &'static str {
    support::log_delivery(&event);
    // Answer quickly: Periskope waits for the response. Hand slow work to a task or a queue
    // (`WebhookEvent` is `'static`, `Send` and cheap to clone).
    "ok"
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let app = Router::new().route(support::PATH, post(webhook).layer(support::webhook_layer()));

    let listener = tokio::net::TcpListener::bind(support::addr()).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
