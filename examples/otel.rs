//! A Periskope webhook server with the durable inbox whose traces go to an OpenTelemetry
//! collector over OTLP (HTTP/protobuf): each delivery's request, its `periskope.delivery` span,
//! and each attempt of its job, as Jaeger or Tempo show them.
//!
//! ```text
//! docker run --rm -p 16686:16686 -p 4318:4318 jaegertracing/all-in-one   # or any OTLP collector
//! cargo run --example otel          # exports to OTEL_EXPORTER_OTLP_ENDPOINT (http://localhost:4318)
//! cargo run -p periskope-webhook-cli -- send --key peri_ea194594-c433-4ea7-8c94-af9e63c5df47 \
//!     http://127.0.0.1:3000/webhooks/periskope tests/fixtures/deliveries
//! ```
//!
//! - `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector (default `http://localhost:4318`; spans go to
//!   its `/v1/traces`); `OTEL_SERVICE_NAME` (default `periskope-webhook`); the batch
//!   processor's `OTEL_BSP_*` settings.
//! - `PERISKOPE_INBOX`: the inbox file (default `periskope-inbox.db` in the current directory).
//! - `ADDR`, `PERISKOPE_SIGNING_KEY`: as in the other examples.
//! - `HANDLER_FAIL_FIRST=1`: the handler fails each job's first attempt, so that the retry shows
//!   too: a trace of its own, linked to the delivery.
//!
//! A request that carries a W3C `traceparent` header (a sender that traces, or a proxy) makes
//! `periskope.delivery` its child; the job's first attempt is the delivery's child, and every
//! attempt links to it. For each attempt it prints `attempt <number> <event name>`.

// Only the configuration helpers are used.
#[allow(dead_code)]
mod support;

use axum::Router;
use axum::middleware::{self, Next};
use http::HeaderMap;
use opentelemetry::context::FutureExt;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use periskope_webhook::inbox::{Attempt, Inbox, SqliteStore};
use periskope_webhook::{EventRouter, PeriskopeWebhookLayer, WebhookEvent, shutdown_signal};
use tracing_subscriber::layer::SubscriberExt;

/// A request's headers, as OpenTelemetry's propagators read them.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// Makes the incoming request's context (its `traceparent`) the parent of the spans the stack
/// opens, `periskope.delivery` among them. A missing or malformed header gives an empty context:
/// the delivery then starts its own trace.
async fn with_incoming_context(request: axum::extract::Request, next: Next) -> axum::response::Response {
    let incoming = TraceContextPropagator::new().extract(&Headers(request.headers()));
    next.run(request).with_context(incoming).await
}

/// The handler the worker runs, inside the attempt's span: its own span nests under it.
async fn on_event(event: WebhookEvent, attempt: Attempt, fail_first: bool) -> Result<(), std::io::Error> {
    println!("attempt {} {}", attempt.number(), event.name());
    let _span = tracing::info_span!("crm.sync", event_kind = event.kind().as_str()).entered();
    if fail_first && attempt.number() == 1 {
        return Err(std::io::Error::other("the CRM is down (HANDLER_FAIL_FIRST)"));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A batch processor exports from a thread of its own, through a blocking HTTP client.
    let exporter = SpanExporter::builder().with_http().with_protocol(Protocol::HttpBinary).build()?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "periskope-webhook".to_owned());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let tracing_layer =
        tracing_opentelemetry::layer().with_tracer(provider.tracer("periskope-webhook-example"));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(tracing_layer))?;

    let path = std::env::var("PERISKOPE_INBOX").unwrap_or_else(|_| "periskope-inbox.db".to_owned());
    let inbox = Inbox::new(SqliteStore::open(path)?);
    let fail_first = std::env::var("HANDLER_FAIL_FIRST").is_ok_and(|value| value == "1");
    let events = EventRouter::new()
        .fallback(move |event: WebhookEvent, attempt: Attempt| on_event(event, attempt, fail_first));
    let worker = inbox.worker(events).spawn();

    let layer = PeriskopeWebhookLayer::new(support::signing_key());
    let app = Router::new()
        .route_service(support::PATH, layer.service(inbox.acceptor()))
        .layer(middleware::from_fn(with_incoming_context));
    let listener = tokio::net::TcpListener::bind(support::addr()).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    worker.shutdown().await?;
    // The spans still in the batch.
    provider.shutdown()?;
    Ok(())
}
