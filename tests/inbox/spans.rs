//! The `periskope.attempt` span (feature `tracing`): one per attempt, a consumer's, with the
//! job id, the attempt number, the event kind, the wait since receipt, the outcome and the
//! duration; the handler's own spans nest under it; no field carries the chat or its phone
//! number.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use periskope_webhook::inbox::{Attempt, Inbox, InboxStore, MemoryInboxStore, SqliteStore};
use tower::service_fn;

use crate::common::spans::{SpanSeen, Spans};
use crate::support::{TempDir, chat_message, delivery, fast};

/// The chat of the delivery, a phone number: no span field may hold it.
const CHAT: &str = "919999912345@c.us";

/// A job that fails its first attempt and is handled by its second, on `store`: two attempt
/// spans, each the parent of the handler's own span.
async fn each_attempt_runs_in_its_span<St: InboxStore>(store: St) {
    let (spans, _guard) = Spans::start();
    let body = chat_message(CHAT, "m1");
    store.insert(delivery(body)).await.unwrap();
    Spans::listen_everywhere();
    let handler = service_fn(|request: Request<Full<Bytes>>| async move {
        let attempt = request.extensions().get::<Attempt>().expect("the attempt").number();
        tracing::info_span!("crm.call").in_scope(|| {});
        let status = if attempt == 1 { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
        Ok::<_, Infallible>(Response::builder().status(status).body(Full::<Bytes>::default()).unwrap())
    });
    Inbox::new(store).worker(handler).config(fast()).run_until_idle().await;

    let seen = spans.seen();
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
