//! A Periskope webhook endpoint with plain hyper 1 and hyper-util, no framework.
//!
//! The layer wraps an `EventRouter`, which calls one async function per event kind (here one
//! for new messages and a fallback for the rest); a small router sends `/webhooks/periskope` to
//! it and answers 404 elsewhere. The layer answers non-POST requests, oversized or unsigned
//! bodies and undecodable envelopes itself; the handlers only see verified, decoded deliveries.
//!
//! ```text
//! PERISKOPE_SIGNING_KEY=peri_... ADDR=127.0.0.1:3000 cargo run --example hyper
//! # in another terminal: every sample delivery, signed with the same key
//! cargo run -p periskope-webhook-cli -- send --key peri_... http://127.0.0.1:3000/webhooks/periskope tests/fixtures/deliveries
//! ```
//!
//! Without `PERISKOPE_SIGNING_KEY` it uses Periskope's public demo key (local testing only).

mod support;

use std::convert::Infallible;

use http::{Request, Response, StatusCode};
use http_body_util::{Either, Empty};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use periskope_webhook::{EventRouter, WebhookEvent};
use tower::{ServiceBuilder, ServiceExt};

/// Called for `message.created` only: `event.event().message()` is its typed `Message`.
async fn message_created(event: WebhookEvent) -> Result<(), Infallible> {
    support::log_delivery(&event, None);
    Ok(())
}

async fn any_other_event(event: WebhookEvent) -> Result<(), Infallible> {
    support::log_delivery(&event, None);
    Ok(())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let events = EventRouter::new().on_message_created(message_created).fallback(any_other_event);
    let endpoint = ServiceBuilder::new().layer(support::webhook_layer()).service(events);
    let router = hyper::service::service_fn(move |request: Request<Incoming>| {
        let endpoint = endpoint.clone();
        async move {
            if request.uri().path() == support::PATH {
                Ok(endpoint.oneshot(request).await?.map(Either::Left))
            } else {
                let mut not_found = Response::new(Either::Right(Empty::<Bytes>::new()));
                *not_found.status_mut() = StatusCode::NOT_FOUND;
                Ok::<_, Infallible>(not_found)
            }
        }
    });

    let listener = tokio::net::TcpListener::bind(support::addr()).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let server = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        eprintln!("accept failed: {error}");
                        continue;
                    }
                };
                let connection = server.serve_connection(TokioIo::new(stream), router.clone());
                let connection = graceful.watch(connection.into_owned());
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        eprintln!("connection error: {error}");
                    }
                });
            }
            _ = &mut ctrl_c => break,
        }
    }
    // Stop accepting, let requests in flight finish (for at most 10 seconds).
    drop(listener);
    if tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown()).await.is_err() {
        eprintln!("gave up waiting for open connections");
    }
    Ok(())
}
