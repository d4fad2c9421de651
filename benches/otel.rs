//! What tracing through OpenTelemetry costs a request and an inbox attempt, against no
//! subscriber, in one run.
//!
//! `cargo bench --bench otel`. First with no subscriber ever installed, then with a `tracing`
//! subscriber exporting through `tracing-opentelemetry` to the SDK's batch span processor, whose
//! exporter discards the batches (the cost an app pays on its own threads; the processor's
//! thread runs beside them). Each setup runs in batches; the fastest batch counts, as the
//! machine is shared:
//! - a request through the layer and a no-op handler: the `periskope.delivery` span;
//! - a request through the layer and the inbox's acceptor, on an in-memory store that already
//!   holds the delivery (answered `200 duplicate`, so the store does not grow): the span, and the
//!   `traceparent` the acceptor reads from it;
//! - an attempt: a worker running stored jobs (each with a `traceparent`, over 64 chats) with a
//!   no-op handler, on an in-memory store: the `periskope.attempt` span, its parent and its link.

#[path = "support/drive.rs"]
mod drive;
#[allow(dead_code)] // The bodies are shared; this benchmark uses one of them.
mod support;
#[path = "support/unique.rs"]
mod unique;

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use periskope_webhook::dedup::{EventKeys, KeyFn};
use periskope_webhook::inbox::{Inbox, InboxStore, MemoryInboxStore, NewDelivery, WorkerConfig};
use periskope_webhook::signature::{SIGNATURE_HEADER, SigningKey, sign};
use periskope_webhook::{PeriskopeWebhookLayer, WebhookEvent};
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tower::{Layer, service_fn};
use tracing_subscriber::layer::SubscriberExt;

use drive::call;
use unique::UniqueMessages;

const KEY: &str = "peri_ea194594-c433-4ea7-8c94-af9e63c5df47";
/// A job's stored context, as the acceptor writes it.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// An exporter that drops what the batch processor hands it.
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

/// How much of each setup to run: a full measurement under `cargo bench`, a smoke run
/// otherwise (`cargo test --benches`).
struct Plan {
    batches: usize,
    requests: usize,
    jobs: usize,
}

/// The fastest per-item time of the plan's batches of `run`, which runs `items` and returns how
/// long they took.
fn fastest(batches: usize, items: usize, mut run: impl FnMut() -> Duration) -> Duration {
    (0..batches).map(|_| run() / u32::try_from(items).expect("a small batch")).min().expect("a batch")
}

/// The per-request and per-attempt times of one setup.
struct Costs {
    layer: Duration,
    acceptor: Duration,
    attempt: Duration,
}

fn measure(runtime: &Runtime, plan: &Plan) -> Costs {
    let body = Bytes::from(support::compact("message.created.envelope.json"));
    let signature = sign(&SigningKey::new(KEY).expect("non-empty"), &body);
    let request = || {
        Request::post("/webhooks/periskope")
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature.as_str())
            .body(Full::new(body.clone()))
            .expect("valid request")
    };
    let noop = service_fn(|request: Request<Full<Bytes>>| async move {
        black_box(&request);
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let mut layered = PeriskopeWebhookLayer::new(KEY).layer(noop);
    assert_eq!(call(&mut layered, request()).status(), 200);
    let layer = fastest(plan.batches, plan.requests, || {
        let start = Instant::now();
        for _ in 0..plan.requests {
            black_box(call(&mut layered, request()));
        }
        start.elapsed()
    });

    // The acceptor's insert deadline is a tokio timer: made inside the runtime, never awaited
    // (the memory store answers at once).
    let _entered = runtime.enter();
    let inbox = Inbox::new(MemoryInboxStore::new());
    let mut accepting = PeriskopeWebhookLayer::new(KEY).layer(inbox.acceptor());
    assert_eq!(call(&mut accepting, request()).status(), 200);
    let acceptor = fastest(plan.batches, plan.requests, || {
        let start = Instant::now();
        for _ in 0..plan.requests {
            black_box(call(&mut accepting, request()));
        }
        start.elapsed()
    });

    let bodies = UniqueMessages::new().over_chats(64);
    let attempt = fastest(plan.batches, plan.jobs, || runtime.block_on(attempts(&bodies, plan.jobs)));
    Costs { layer, acceptor, attempt }
}

/// How long a worker takes to run `jobs` fresh jobs, each stored with a `traceparent`, with a
/// no-op handler: from its start until the last one is handled and settled.
async fn attempts(bodies: &UniqueMessages, jobs: usize) -> Duration {
    let store = MemoryInboxStore::new();
    for _ in 0..jobs {
        let event = WebhookEvent::decode(bodies.next()).expect("a delivery");
        let mut delivery = NewDelivery::new(&event, &EventKeys::default().key(&event), SystemTime::now());
        delivery.traceparent = Some(TRACEPARENT.to_owned());
        store.insert(delivery).await.expect("stored");
    }
    let handled = Arc::new(AtomicUsize::new(0));
    let all_handled = Arc::new(Notify::new());
    let handler = {
        let (handled, all_handled) = (Arc::clone(&handled), Arc::clone(&all_handled));
        service_fn(move |request: Request<Full<Bytes>>| {
            black_box(&request);
            if handled.fetch_add(1, Ordering::Relaxed) + 1 == jobs {
                all_handled.notify_one();
            }
            std::future::ready(Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))))
        })
    };
    let mut config = WorkerConfig::default();
    config.poll_interval = Duration::from_millis(1);
    let start = Instant::now();
    Inbox::new(store.clone()).worker(handler).config(config).run(all_handled.notified()).await;
    let elapsed = start.elapsed();
    assert_eq!(store.stats(SystemTime::now()).await.expect("stats").done, jobs as u64, "every job handled");
    elapsed
}

fn main() {
    let plan = if std::env::args().any(|arg| arg == "--bench") {
        // Many short batches: the fastest of them is the one the machine's other work spared.
        Plan { batches: 300, requests: 200, jobs: 500 }
    } else {
        Plan { batches: 1, requests: 2, jobs: 4 }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");

    // Before any subscriber is installed: the layer opens no span at all.
    let plain = measure(&runtime, &plan);

    let provider = SdkTracerProvider::builder().with_batch_exporter(Discard).build();
    let exporting = tracing_opentelemetry::layer().with_tracer(provider.tracer("periskope-webhook-bench"));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(exporting))
        .expect("the first subscriber");
    let traced = measure(&runtime, &plan);
    provider.shutdown().expect("the batch processor stops");

    println!("| per item | no subscriber | tracing-opentelemetry, batch processor | ratio | added |");
    println!("|---|---:|---:|---:|---:|");
    for (name, plain, traced) in [
        ("request: layer + no-op handler", plain.layer, traced.layer),
        ("request: layer + acceptor (200 duplicate)", plain.acceptor, traced.acceptor),
        ("attempt: worker, no-op handler", plain.attempt, traced.attempt),
    ] {
        println!(
            "| {name} | {:.2} µs | {:.2} µs | {:.2}x | +{:.2} µs |",
            plain.as_secs_f64() * 1e6,
            traced.as_secs_f64() * 1e6,
            traced.as_secs_f64() / plain.as_secs_f64(),
            (traced.as_secs_f64() - plain.as_secs_f64()) * 1e6,
        );
    }
}
