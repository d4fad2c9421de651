//! A Periskope webhook server with the durable inbox: each verified delivery is stored in a
//! SQLite file before the `200`, and a worker handles it from there, with retries.
//!
//! ```text
//! cargo run --example inbox        # terminal 1: stores into ./periskope-inbox.db
//! cargo run --example send         # terminal 2: posts every sample delivery, signed
//! ```
//!
//! - `PERISKOPE_INBOX`: the inbox file (default `periskope-inbox.db` in the current directory).
//! - `ADDR`, `PERISKOPE_SIGNING_KEY`: as in the other examples.
//! - `HANDLER_DELAY_MS`: how long the handler works on each delivery (default 0).
//!
//! For each delivery handled successfully it prints exactly one line,
//! `processed <event name> <first 16 hex digits of the SHA-256 of the body>`. Stopped (Ctrl-C,
//! or killed) and restarted on the same file, it resumes the jobs it had not finished.

// Only the configuration helpers are used: the handler prints its own line.
#[allow(dead_code)]
mod support;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::time::Duration;

use axum::Router;
use periskope_webhook::inbox::{Inbox, SqliteStore};
use periskope_webhook::{EventRouter, PeriskopeWebhookLayer, WebhookEvent};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tower::Layer;

/// The first 16 hex digits of the SHA-256 of `body`.
fn short_digest(body: &[u8]) -> String {
    Sha256::digest(body).iter().take(8).fold(String::with_capacity(16), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

#[tokio::main]
async fn main() {
    let path = std::env::var("PERISKOPE_INBOX").unwrap_or_else(|_| "periskope-inbox.db".to_owned());
    let delay = match std::env::var("HANDLER_DELAY_MS").map(|ms| ms.parse::<u64>()) {
        Err(_) => Duration::ZERO,
        Ok(Ok(ms)) => Duration::from_millis(ms),
        Ok(Err(_)) => exit("HANDLER_DELAY_MS must be a whole number of milliseconds"),
    };
    let store = SqliteStore::open(&path).unwrap_or_else(|error| exit(&error.to_string()));
    let inbox = Inbox::new(store);

    let events = EventRouter::new().fallback(move |event: WebhookEvent| async move {
        tokio::time::sleep(delay).await;
        println!("processed {} {}", event.name(), short_digest(event.body()));
        Ok::<_, Infallible>(())
    });

    let (stop, stopping) = watch::channel(false);
    let shutdown = |mut stopping: watch::Receiver<bool>| async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let worker = tokio::spawn(inbox.worker(events).run(shutdown(stopping.clone())));

    // No `.deduplicate(...)`: the inbox stores each occurrence once.
    let layer = PeriskopeWebhookLayer::new(support::signing_key());
    let app = Router::new().route_service(support::PATH, layer.layer(inbox.acceptor()));
    let listener = tokio::net::TcpListener::bind(support::addr())
        .await
        .unwrap_or_else(|error| exit(&format!("cannot listen on {}: {error}", support::addr())));
    match listener.local_addr() {
        Ok(addr) => println!("listening on http://{addr}"),
        Err(error) => exit(&error.to_string()),
    }
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop.send(true);
    });
    if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown(stopping)).await {
        eprintln!("server error: {error}");
    }
    // The worker finishes or releases the jobs in flight.
    let _ = worker.await;
}

fn exit(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
