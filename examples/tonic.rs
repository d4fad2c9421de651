//! A Periskope webhook endpoint inside a tonic gRPC server, beside the standard gRPC health
//! service, on one port.
//!
//! tonic's `Routes` is an axum router: the webhook is an ordinary axum route behind
//! `PeriskopeWebhookLayer`, and the health service is added to it as a gRPC service. The server
//! accepts HTTP/1.1 (how Periskope delivers webhooks) as well as HTTP/2 (gRPC).
//!
//! ```text
//! PERISKOPE_SIGNING_KEY=peri_... ADDR=127.0.0.1:3000 cargo run --example tonic
//! # in another terminal: every sample delivery, signed with the same key
//! cargo run -p periskope-webhook-cli -- send --key peri_... http://127.0.0.1:3000/webhooks/periskope tests/fixtures/deliveries
//! grpcurl -plaintext 127.0.0.1:3000 grpc.health.v1.Health/Check
//! ```
//!
//! Without `PERISKOPE_SIGNING_KEY` it uses Periskope's public demo key (local testing only).

mod support;

use axum::Router;
use axum::routing::post;
use periskope_webhook::{DeliveryMetadata, WebhookEvent};
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

async fn webhook(event: WebhookEvent, metadata: DeliveryMetadata) -> &'static str {
    support::log_delivery(&event, Some(&metadata));
    "ok"
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Reports SERVING for the whole server ("") until told otherwise.
    let (_health_reporter, health) = tonic_health::server::health_reporter();
    // Start from a plain axum router rather than `Routes::new(health)`: that one answers every
    // unknown path with gRPC "unimplemented" in a 200 response, so a mistyped webhook URL would
    // look delivered to Periskope. Here unknown paths get 404 (which gRPC clients also read as
    // unimplemented).
    let app = Router::new().route(support::PATH, post(webhook).layer(support::webhook_layer()));
    let routes = Routes::from(app).add_service(health);

    let listener = tokio::net::TcpListener::bind(support::addr()).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    println!("gRPC health check (plaintext, no TLS): grpcurl -plaintext {addr} grpc.health.v1.Health/Check");
    Server::builder()
        .accept_http1(true)
        .add_routes(routes)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
