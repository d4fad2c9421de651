//! One delivery's trace, exported by OpenTelemetry's SDK (feature `opentelemetry`): a real
//! request over 127.0.0.1 whose `traceparent` the app extracts, its `periskope.delivery` span,
//! the job stored with that span's context, and the attempts of a worker and of the worker
//! started after it, on every store. The first attempt is the delivery's child, every attempt
//! links to it, a retry starts a trace of its own, and no exported value holds the chat's
//! phone number. A malformed `traceparent`, in the request or in the store, changes nothing
//! else.

#[path = "../common/mod.rs"]
mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::middleware::{self, Next};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use opentelemetry::context::FutureExt;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanId, SpanKind, TraceId, TracerProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use periskope_webhook::dedup::{EventKeys, KeyFn};
use periskope_webhook::inbox::{
    Attempt, Inbox, InboxStore, MemoryInboxStore, NewDelivery, PostgresStore, SqliteStore, WorkerConfig,
};
use periskope_webhook::{PeriskopeWebhookLayer, WebhookEvent};
use tokio::sync::Notify;
use tower::service_fn;
use tracing_subscriber::layer::SubscriberExt;

use common::{KEY, PATH, client, send, signed};

/// The phone number of the delivery's chat and sender: no exported value may hold it.
const PHONE: &str = "919999912345";
/// The incoming request's trace and the span that sent it, as its `traceparent` names them.
const INCOMING_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const INCOMING_SPAN: &str = "00f067aa0ba902b7";

/// A message in the chat of [`PHONE`], whose ids hold the number too.
fn message(id: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"event":"message.created","data":{{"message_id":"true_{PHONE}@c.us_{id}","chat_id":"{PHONE}@c.us","sender_phone":"{PHONE}","body":"hello"}},"org_id":"org-1"}}"#
    ))
}

/// Spans exported through `tracing-opentelemetry` to the SDK's in-memory exporter, for the
/// tasks of this thread (the current-thread runtime of `#[tokio::test]` runs the server's and
/// the worker's there) until dropped.
struct Exported {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Exported {
    fn install() -> Exported {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("periskope-webhook-tests"));
        let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        // A span site first reached by another test's thread, without a subscriber, may keep
        // the answer "never": ask every site again now that this one is in place.
        tracing::callsite::rebuild_interest_cache();
        Exported { exporter, provider, _guard: guard }
    }

    fn spans(&self) -> Vec<SpanData> {
        self.provider.force_flush().expect("flushed");
        self.exporter.get_finished_spans().expect("the exported spans")
    }
}

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

/// What an app does so that `periskope.delivery` is the child of the incoming request's
/// context: extract it (a malformed or missing `traceparent` gives an empty context), and call
/// the webhook's stack with it current, which the span takes as its parent.
async fn with_incoming_context(request: axum::extract::Request, next: Next) -> axum::response::Response {
    let incoming = TraceContextPropagator::new().extract(&Headers(request.headers()));
    next.run(request).with_context(incoming).await
}

/// The webhook route with the layer and the acceptor of `inbox`, under the extraction above,
/// served on 127.0.0.1: its URL.
async fn serve<St: InboxStore>(inbox: &Inbox<St>) -> String {
    let app = Router::new()
        .route_service(PATH, PeriskopeWebhookLayer::new(KEY).service(inbox.acceptor()))
        .layer(middleware::from_fn(with_incoming_context));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{PATH}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// A handler that fails every first attempt and handles the others, in a span of its own,
/// and tells `first_failed` once a first attempt ran.
fn failing_first(
    first_failed: Arc<Notify>,
) -> impl tower::Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(move |request: Request<Full<Bytes>>| {
        let first_failed = Arc::clone(&first_failed);
        async move {
            let attempt = request.extensions().get::<Attempt>().expect("the attempt").number();
            tracing::info_span!("crm.call").in_scope(|| {});
            let status = if attempt == 1 {
                first_failed.notify_one();
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            };
            Ok(Response::builder().status(status).body(Full::default()).unwrap())
        }
    })
}

fn fast() -> WorkerConfig {
    let mut config = WorkerConfig::default();
    config.backoff_base = std::time::Duration::from_millis(5);
    config.backoff_max = std::time::Duration::from_millis(20);
    config.poll_interval = std::time::Duration::from_millis(10);
    config
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|span| span.name == name).collect()
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|pair| pair.key.as_str() == key).map(|pair| pair.value.to_string())
}

/// Every text an exporter would send for `spans`: names, attributes, events, links, statuses.
fn exported_texts(spans: &[SpanData]) -> Vec<String> {
    let mut texts = Vec::new();
    for span in spans {
        texts.push(span.name.to_string());
        texts.push(format!("{:?}", span.status));
        texts.extend(span.attributes.iter().map(|pair| format!("{}={}", pair.key, pair.value)));
        for event in &span.events.events {
            texts.push(event.name.to_string());
            texts.extend(event.attributes.iter().map(|pair| format!("{}={}", pair.key, pair.value)));
        }
        for link in &span.links.links {
            texts.extend(link.attributes.iter().map(|pair| format!("{}={}", pair.key, pair.value)));
        }
    }
    texts
}

/// The whole path on `store`: a request carrying a `traceparent`, its delivery span, and the
/// job's two attempts, the first failed by one worker, the second handled by the worker
/// started after it on the same store.
async fn a_delivery_is_traced_from_the_request_to_its_last_attempt<St: InboxStore>(store: St) {
    let exported = Exported::install();
    let inbox = Inbox::new(store);
    let url = serve(&inbox).await;

    let mut request = signed(&url, KEY, message("3EB0A1"));
    let incoming = format!("00-{INCOMING_TRACE}-{INCOMING_SPAN}-01");
    request.headers_mut().insert("traceparent", HeaderValue::from_str(&incoming).unwrap());
    tracing::callsite::rebuild_interest_cache();
    send(&client(), request).await.assert(StatusCode::OK, "accepted");

    // The first worker stops once the first attempt ran (and settles it in its grace period);
    // a new worker on the same store runs the retry.
    let first_failed = Arc::new(Notify::new());
    let handler = failing_first(Arc::clone(&first_failed));
    inbox.worker(handler.clone()).config(fast()).run(first_failed.notified()).await;
    assert_eq!(inbox.store().stats(SystemTime::now()).await.unwrap().pending, 1, "the retry waits");
    inbox.worker(handler).config(fast()).run_until_idle().await;
    assert_eq!(inbox.store().stats(SystemTime::now()).await.unwrap().done, 1);

    let spans = exported.spans();
    let [delivery] = named(&spans, "periskope.delivery")[..] else { panic!("one delivery span: {spans:#?}") };
    assert_eq!(delivery.span_context.trace_id(), TraceId::from_hex(INCOMING_TRACE).unwrap());
    assert_eq!(delivery.parent_span_id, SpanId::from_hex(INCOMING_SPAN).unwrap(), "the request's child");
    assert!(delivery.parent_span_is_remote);
    assert_eq!(attribute(delivery, "event_kind").as_deref(), Some("message.created"));
    assert_eq!(attribute(delivery, "status").as_deref(), Some("200"));

    let mut attempts = named(&spans, "periskope.attempt");
    attempts.sort_by_key(|span| attribute(span, "attempt"));
    let [first, retry] = attempts[..] else { panic!("two attempt spans: {spans:#?}") };
    assert_eq!(attribute(first, "attempt").as_deref(), Some("1"));
    assert_eq!(attribute(first, "outcome").as_deref(), Some("failed"));
    assert_eq!(attribute(retry, "attempt").as_deref(), Some("2"));
    assert_eq!(attribute(retry, "outcome").as_deref(), Some("handled"));
    // The first attempt is the delivery's child, in the request's trace.
    assert_eq!(first.span_context.trace_id(), delivery.span_context.trace_id());
    assert_eq!(first.parent_span_id, delivery.span_context.span_id());
    // The retry, in the worker started after the first one stopped, has a trace of its own.
    assert_ne!(retry.span_context.trace_id(), delivery.span_context.trace_id());
    assert_eq!(retry.parent_span_id, SpanId::INVALID);
    for attempt in [first, retry] {
        // Read back from the store, the delivery's context is a remote one.
        let linked: Vec<_> = attempt
            .links
            .links
            .iter()
            .map(|link| {
                (link.span_context.trace_id(), link.span_context.span_id(), link.span_context.is_sampled())
            })
            .collect();
        let delivery_context = &delivery.span_context;
        assert_eq!(
            linked,
            [(delivery_context.trace_id(), delivery_context.span_id(), true)],
            "every attempt links to its delivery"
        );
        assert_eq!(attempt.span_kind, SpanKind::Consumer);
        assert_eq!(attribute(attempt, "messaging.system").as_deref(), Some("periskope_inbox"));
        assert_eq!(attribute(attempt, "messaging.operation.type").as_deref(), Some("process"));
        assert_eq!(attribute(attempt, "event_kind").as_deref(), Some("message.created"));
        assert_eq!(attribute(attempt, "job_id").as_deref(), Some("1"));
        assert!(attribute(attempt, "messaging.message.id").is_none(), "{attempt:?}");
    }
    // The handler's own spans nest under their attempt.
    let handler_spans = named(&spans, "crm.call");
    assert_eq!(handler_spans.len(), 2, "{spans:#?}");
    for (handler_span, attempt) in handler_spans.iter().zip([first, retry]) {
        assert_eq!(handler_span.parent_span_id, attempt.span_context.span_id());
    }

    for text in exported_texts(&spans) {
        assert!(!text.contains(PHONE), "an exported value holds the phone number: {text}");
    }
}

#[tokio::test]
async fn a_delivery_is_traced_from_the_request_to_its_last_attempt_in_memory() {
    a_delivery_is_traced_from_the_request_to_its_last_attempt(MemoryInboxStore::new()).await;
}

#[tokio::test]
async fn a_delivery_is_traced_from_the_request_to_its_last_attempt_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("periskope-otel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(dir.join("inbox.db")).unwrap();
    a_delivery_is_traced_from_the_request_to_its_last_attempt(store).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_delivery_is_traced_from_the_request_to_its_last_attempt_on_postgres() {
    let Some(cluster) = common::postgres::cluster() else { return };
    let database = cluster.database();
    let store = PostgresStore::connect(&database.url()).await.unwrap();
    a_delivery_is_traced_from_the_request_to_its_last_attempt(store).await;
}

/// A `traceparent` header that is not one is ignored: the delivery is accepted, its span is a
/// root, and its job's attempt still hangs under it.
#[tokio::test]
async fn a_malformed_traceparent_header_is_ignored() {
    let exported = Exported::install();
    let inbox = Inbox::new(MemoryInboxStore::new());
    let url = serve(&inbox).await;
    let mut request = signed(&url, KEY, message("3EB0A2"));
    request.headers_mut().insert("traceparent", HeaderValue::from_static("00-not-a-trace-context-01"));
    tracing::callsite::rebuild_interest_cache();
    send(&client(), request).await.assert(StatusCode::OK, "accepted");
    inbox.worker(failing_first(Arc::new(Notify::new()))).config(fast()).run_until_idle().await;

    let spans = exported.spans();
    let [delivery] = named(&spans, "periskope.delivery")[..] else { panic!("one delivery span: {spans:#?}") };
    assert_eq!(delivery.parent_span_id, SpanId::INVALID, "a root");
    let attempts = named(&spans, "periskope.attempt");
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    assert!(attempts.iter().any(|attempt| attempt.parent_span_id == delivery.span_context.span_id()));
}

/// A job whose stored `traceparent` is malformed (written by another program, or damaged) is
/// run as any other: its attempt is a root with no link.
#[tokio::test]
async fn a_malformed_stored_traceparent_is_ignored() {
    let exported = Exported::install();
    let store = MemoryInboxStore::new();
    let event = WebhookEvent::decode(message("3EB0A3")).unwrap();
    let mut delivery = NewDelivery::new(&event, &EventKeys::default().key(&event), SystemTime::now());
    delivery.traceparent = Some(format!("00-{INCOMING_TRACE}-0000000000000000-01"));
    store.insert(delivery).await.unwrap();
    tracing::callsite::rebuild_interest_cache();
    let handled = service_fn(|_request: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
    });
    Inbox::new(store.clone()).worker(handled).config(fast()).run_until_idle().await;
    assert_eq!(store.stats(SystemTime::now()).await.unwrap().done, 1);

    let spans = exported.spans();
    let [attempt] = named(&spans, "periskope.attempt")[..] else { panic!("one attempt span: {spans:#?}") };
    assert_eq!(attempt.parent_span_id, SpanId::INVALID);
    assert!(attempt.links.links.is_empty(), "{attempt:?}");
    assert_ne!(attempt.span_context.trace_id(), TraceId::from_hex(INCOMING_TRACE).unwrap());
}
