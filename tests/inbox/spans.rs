//! The `periskope.attempt` span (feature `tracing`): one per attempt, a consumer's, with the
//! job id, the attempt number, the event kind, the wait since receipt, the outcome and the
//! duration; the handler's own spans nest under it; no field carries the chat or its phone
//! number.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use periskope_webhook::inbox::{Attempt, Inbox, InboxStore, MemoryInboxStore, SqliteStore};
use tower::service_fn;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::support::{TempDir, chat_message, delivery, fast};

/// The chat of the delivery, a phone number: no span field may hold it.
const CHAT: &str = "919999912345@c.us";

/// One span as it was opened and recorded.
#[derive(Clone, Debug, Default)]
struct SpanSeen {
    name: &'static str,
    parent: Option<&'static str>,
    fields: BTreeMap<String, String>,
}

/// Every span opened on this thread while installed, in order, by its id.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<(u64, SpanSeen)>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let mut seen = SpanSeen { name: attributes.metadata().name(), ..SpanSeen::default() };
        seen.parent = context.span(id).and_then(|span| span.parent()).map(|parent| parent.name());
        attributes.record(&mut Fields(&mut seen.fields));
        self.0.lock().unwrap().push((id.into_u64(), seen));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.0.lock().unwrap();
        if let Some((_, seen)) = spans.iter_mut().rev().find(|(seen_id, _)| *seen_id == id.into_u64()) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }
}

/// A job that fails its first attempt and is handled by its second, on `store`: two attempt
/// spans, each the parent of the handler's own span.
async fn each_attempt_runs_in_its_span<St: InboxStore>(store: St) {
    let spans = Spans::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let body = chat_message(CHAT, "m1");
    store.insert(delivery(body)).await.unwrap();
    let handler = service_fn(|request: Request<Full<Bytes>>| async move {
        let attempt = request.extensions().get::<Attempt>().expect("the attempt").number();
        tracing::info_span!("crm.call").in_scope(|| {});
        let status = if attempt == 1 { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
        Ok::<_, Infallible>(Response::builder().status(status).body(Full::<Bytes>::default()).unwrap())
    });
    Inbox::new(store).worker(handler).config(fast()).run_until_idle().await;

    let seen: Vec<SpanSeen> = spans.0.lock().unwrap().iter().map(|(_, seen)| seen.clone()).collect();
    let attempts: Vec<&SpanSeen> = seen.iter().filter(|span| span.name == "periskope.attempt").collect();
    assert_eq!(attempts.len(), 2, "{seen:#?}");
    for (number, (span, outcome)) in attempts.iter().zip(["failed", "handled"]).enumerate() {
        let field = |name: &str| span.fields.get(name).map(String::as_str);
        assert_eq!(field("otel.kind"), Some("consumer"), "{span:?}");
        assert_eq!(field("job_id"), Some("1"), "{span:?}");
        assert_eq!(field("attempt"), Some((number + 1).to_string().as_str()), "{span:?}");
        assert_eq!(field("event_kind"), Some("message.created"), "{span:?}");
        assert_eq!(field("outcome"), Some(outcome), "{span:?}");
        assert!(field("waited_ms").is_some() && field("duration_ms").is_some(), "{span:?}");
    }
    let handler_spans: Vec<&SpanSeen> = seen.iter().filter(|span| span.name == "crm.call").collect();
    assert_eq!(handler_spans.len(), 2, "{seen:#?}");
    assert!(handler_spans.iter().all(|span| span.parent == Some("periskope.attempt")), "{seen:#?}");
    let phone = CHAT.split('@').next().unwrap();
    for span in &seen {
        assert!(span.fields.values().all(|value| !value.contains(phone)), "{span:?}");
    }
}

#[tokio::test]
async fn each_attempt_runs_in_its_span_in_memory() {
    each_attempt_runs_in_its_span(MemoryInboxStore::new()).await;
}

#[tokio::test]
async fn each_attempt_runs_in_its_span_on_sqlite() {
    let dir = TempDir::new("spans");
    each_attempt_runs_in_its_span(SqliteStore::open(dir.db()).unwrap()).await;
}
