//! `EventRouter` behind `PeriskopeWebhookLayer`, over real HTTP on 127.0.0.1, on each stack of
//! `tests/common` (axum, hyper, tonic): each event reaches the handler named for its kind, and
//! every outcome gets its documented status and code.
//!
//! Each case is written once against a `Stack` and instantiated for each by `for_each_stack!`.

mod common;

use std::convert::Infallible;
use std::error::Error;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{
    KEY, OTHER_KEY, PATH, Reply, Server, Stack, client, fixture, for_each_stack, send, serve, signed,
};
use http::{Request, StatusCode};
use http_body_util::Full;
use periskope_webhook::inbox::Attempt;
use periskope_webhook::router::HandlerError;
use periskope_webhook::testing::signed_request_for_body;
use periskope_webhook::{EventKind, EventRouter, PeriskopeWebhookLayer, WebhookEvent};
use tower::{Layer, Service, ServiceExt};

/// What the failing handler returns; it must never reach a response body.
const SECRET: &str = "db password hunter2 rejected";

const UNKNOWN: &str = r#"{"event":"chat.label.updated","data":{"label":"vip"},"org_id":"org-1"}"#;

// ---------------------------------------------------------------------------------------------
// Recording handlers

/// One handler call: the handler's name, the event name, and a field value it read.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Call {
    handler: &'static str,
    event: String,
    detail: Option<String>,
}

#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<Call>>>);

impl Calls {
    fn record(&self, handler: &'static str, event: &WebhookEvent, detail: Option<&str>) {
        let call = Call { handler, event: event.name().to_owned(), detail: detail.map(str::to_owned) };
        self.0.lock().unwrap().push(call);
    }

    /// The single call since the last `take`.
    #[track_caller]
    fn one(&self) -> Call {
        let mut all = std::mem::take(&mut *self.0.lock().unwrap());
        assert_eq!(all.len(), 1, "expected exactly one handler call, got {all:#?}");
        all.pop().unwrap()
    }

    #[track_caller]
    fn none(&self) {
        let all = self.0.lock().unwrap().clone();
        assert!(all.is_empty(), "no handler should have run, saw {all:#?}");
    }
}

/// A router with a named handler for several kinds, one that fails, and `on_unknown`.
fn full_router(calls: &Calls) -> EventRouter {
    let c = calls.clone();
    let message = move |event: WebhookEvent| {
        let calls = c.clone();
        async move {
            let body = event.event().message().and_then(|message| message.body.as_deref());
            calls.record("message_created", &event, body);
            Ok::<_, Infallible>(())
        }
    };
    let c = calls.clone();
    let ticket = move |event: WebhookEvent| {
        let calls = c.clone();
        async move {
            let id = event.event().ticket().and_then(|info| info.ticket.as_ref()?.ticket_id.as_deref());
            calls.record("ticket_updated", &event, id);
            Ok::<_, std::io::Error>(())
        }
    };
    let c = calls.clone();
    let reaction = move |event: WebhookEvent| {
        let calls = c.clone();
        async move {
            calls.record(
                "reaction_created",
                &event,
                event.event().reaction().and_then(|r| r.reaction.as_deref()),
            );
            Ok::<_, &'static str>(())
        }
    };
    let c = calls.clone();
    let note = move |event: WebhookEvent| {
        let calls = c.clone();
        async move {
            calls.record("note_created", &event, event.event().note().and_then(|note| note.body.as_deref()));
            Ok::<_, String>(())
        }
    };
    let c = calls.clone();
    let phone = move |event: WebhookEvent| {
        let calls = c.clone();
        async move {
            calls.record(
                "org_phone_connected",
                &event,
                event.event().phone().and_then(|p| p.phone_id.as_deref()),
            );
            Ok::<_, Infallible>(())
        }
    };
    let c = calls.clone();
    let chat = move |event: WebhookEvent| {
        let calls = c.clone();
        async move {
            calls.record(
                "on(chat.created)",
                &event,
                event.event().chat().and_then(|chat| chat.chat_id.as_deref()),
            );
            Ok::<_, Infallible>(())
        }
    };
    let c = calls.clone();
    let failing = move |event: WebhookEvent| {
        let calls = c.clone();
        async move {
            calls.record("message_deleted", &event, None);
            Err::<(), _>(std::io::Error::other(SECRET))
        }
    };
    let c = calls.clone();
    let unknown = move |event: WebhookEvent| {
        let calls = c.clone();
        async move {
            calls.record("unknown", &event, event.raw_data().as_ref().map(|raw| raw.get()));
            Ok::<_, Infallible>(())
        }
    };
    EventRouter::new()
        .on_message_created(message)
        .on_ticket_updated(ticket)
        .on_reaction_created(reaction)
        .on_note_created(note)
        .on_org_phone_connected(phone)
        .on(EventKind::ChatCreated, chat)
        .on_message_deleted(failing)
        .on_unknown(unknown)
}

/// A router with one named handler and a fallback.
fn fallback_router(calls: &Calls) -> EventRouter {
    let c = calls.clone();
    let note = move |event: WebhookEvent| {
        let calls = c.clone();
        async move {
            calls.record("note_created", &event, None);
            Ok::<_, Infallible>(())
        }
    };
    let c = calls.clone();
    let fallback = move |event: WebhookEvent| {
        let calls = c.clone();
        async move {
            calls.record("fallback", &event, Some(event.kind().as_str()));
            Ok::<_, Infallible>(())
        }
    };
    EventRouter::new().on_note_created(note).fallback(fallback)
}

// ---------------------------------------------------------------------------------------------
// The server and the client side

/// Serves `router` at every path on `stack`, behind the layer when `layered`.
async fn start(stack: Stack, router: EventRouter, layered: bool) -> Server {
    if layered {
        serve(stack, PeriskopeWebhookLayer::new(KEY).layer(router)).await
    } else {
        serve(stack, router).await
    }
}

/// POSTs `body`, signed with [`KEY`], and reads the reply.
async fn post(url: &str, body: impl Into<Bytes>) -> Reply {
    send(&client(), signed(url, KEY, body)).await
}

// ---------------------------------------------------------------------------------------------
// Cases

async fn each_event_reaches_its_named_handler(stack: Stack) {
    let calls = Calls::default();
    let server = start(stack, full_router(&calls), true).await;
    let cases = [
        ("message.created", "message_created", Some("Hello, world")),
        ("ticket.updated", "ticket_updated", Some("TICKET-12345")),
        ("reaction.created", "reaction_created", Some("😀")),
        ("note.created", "note_created", Some("Hello World")),
        ("org.phone.connected", "org_phone_connected", Some("phone-bqzvyibhmwkaergr")),
        ("chat.created", "on(chat.created)", Some("919537851844@c.us")),
    ];
    for (event, handler, detail) in cases {
        let reply = post(&server.url, fixture(&format!("{event}.envelope.json"))).await;
        reply.assert(StatusCode::OK, "handled");
        let expected = Call { handler, event: event.to_owned(), detail: detail.map(str::to_owned) };
        assert_eq!(calls.one(), expected, "{stack:?}");
    }
}

async fn unknown_events_reach_on_unknown(stack: Stack) {
    let calls = Calls::default();
    let server = start(stack, full_router(&calls), true).await;
    let reply = post(&server.url, UNKNOWN).await;
    reply.assert(StatusCode::OK, "handled");
    let expected = Call {
        handler: "unknown",
        event: "chat.label.updated".to_owned(),
        detail: Some(r#"{"label":"vip"}"#.into()),
    };
    assert_eq!(calls.one(), expected);
}

async fn the_fallback_takes_what_has_no_handler(stack: Stack) {
    let calls = Calls::default();
    let server = start(stack, fallback_router(&calls), true).await;

    post(&server.url, fixture("note.created.envelope.json")).await.assert(StatusCode::OK, "handled");
    assert_eq!(calls.one().handler, "note_created");

    post(&server.url, fixture("ticket.deleted.envelope.json")).await.assert(StatusCode::OK, "handled");
    let call = calls.one();
    assert_eq!((call.handler, call.event.as_str()), ("fallback", "ticket.deleted"));

    // Without `on_unknown`, the fallback also takes unknown events.
    post(&server.url, UNKNOWN).await.assert(StatusCode::OK, "handled");
    assert_eq!(
        calls.one(),
        Call { handler: "fallback", event: "chat.label.updated".to_owned(), detail: Some("unknown".into()) }
    );
}

async fn a_failing_handler_is_a_500_without_its_error(stack: Stack) {
    let calls = Calls::default();
    let server = start(stack, full_router(&calls), true).await;
    let reply = post(&server.url, fixture("message.deleted.envelope.json")).await;
    reply.assert(StatusCode::INTERNAL_SERVER_ERROR, "handler_failed");
    let body = String::from_utf8_lossy(&reply.body);
    assert!(!body.contains("hunter2") && !body.contains("password"), "leaked: {body}");
    assert_eq!(calls.one().handler, "message_deleted");
}

async fn no_handler_is_a_200_so_periskope_does_not_retry(stack: Stack) {
    let calls = Calls::default();
    let server = start(stack, full_router(&calls), true).await;
    for event in ["message.flagged", "ticket.created", "org.phone.qr"] {
        let reply = post(&server.url, fixture(&format!("{event}.envelope.json"))).await;
        reply.assert(StatusCode::OK, "no_handler");
    }
    calls.none();

    let server = start(stack, EventRouter::new(), true).await;
    post(&server.url, UNKNOWN).await.assert(StatusCode::OK, "no_handler");
}

async fn the_layer_still_rejects_before_the_router(stack: Stack) {
    let calls = Calls::default();
    let server = start(stack, full_router(&calls), true).await;
    let forged = signed(&server.url, OTHER_KEY, fixture("message.created.envelope.json"));
    send(&client(), forged).await.assert(StatusCode::UNAUTHORIZED, "signature_mismatch");
    calls.none();
}

async fn without_the_layer_the_router_is_misconfigured(stack: Stack) {
    let calls = Calls::default();
    let server = start(stack, full_router(&calls), false).await;
    let reply = post(&server.url, fixture("message.created.envelope.json")).await;
    reply.assert(StatusCode::INTERNAL_SERVER_ERROR, "periskope_layer_missing");
    assert!(reply.json()["message"].as_str().is_some_and(|message| message.contains("misconfiguration")));
    calls.none();
}

async fn a_handler_taking_the_attempt_answers_500_outside_the_inbox(stack: Stack) {
    let calls = Calls::default();
    let c = calls.clone();
    let with_attempt = move |event: WebhookEvent, _attempt: Attempt| {
        let calls = c.clone();
        async move {
            calls.record("with_attempt", &event, None);
            Ok::<_, Infallible>(())
        }
    };
    let c = calls.clone();
    let without = move |event: WebhookEvent| {
        let calls = c.clone();
        async move {
            calls.record("without", &event, None);
            Ok::<_, Infallible>(())
        }
    };
    let router = EventRouter::new().on_message_created(with_attempt).on_note_created(without);
    let server = start(stack, router, true).await;

    // Behind the layer alone, no worker made an attempt: a setup error, before the handler runs.
    let reply = post(&server.url, fixture("message.created.envelope.json")).await;
    reply.assert(StatusCode::INTERNAL_SERVER_ERROR, "inbox_attempt_missing");
    assert!(reply.json()["message"].as_str().is_some_and(|message| message.contains("misconfiguration")));
    calls.none();

    // The event-only shape, in the same router, is served as before.
    post(&server.url, fixture("note.created.envelope.json")).await.assert(StatusCode::OK, "handled");
    assert_eq!(calls.one().handler, "without");
}

for_each_stack!(
    a_handler_taking_the_attempt_answers_500_outside_the_inbox,
    each_event_reaches_its_named_handler,
    unknown_events_reach_on_unknown,
    the_fallback_takes_what_has_no_handler,
    a_failing_handler_is_a_500_without_its_error,
    no_handler_is_a_200_so_periskope_does_not_retry,
    the_layer_still_rejects_before_the_router,
    without_the_layer_the_router_is_misconfigured,
);

// ---------------------------------------------------------------------------------------------
// In process: what does not cross HTTP

#[tokio::test]
async fn the_handler_error_is_in_the_response_extensions() {
    let calls = Calls::default();
    let service = PeriskopeWebhookLayer::new(KEY).layer(full_router(&calls));
    let request: Request<Full<Bytes>> =
        signed_request_for_body(KEY, PATH, fixture("message.deleted.envelope.json"));
    let response = service.oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let error = response.extensions().get::<HandlerError>().expect("the handler error");
    assert_eq!(error.kind(), EventKind::MessageDeleted);
    assert_eq!(error.error().to_string(), SECRET);
    assert_eq!(error.to_string(), "the message.deleted handler failed");
    assert_eq!(error.source().map(ToString::to_string).as_deref(), Some(SECRET));
}

#[tokio::test]
async fn the_router_is_always_ready_and_a_clone_dispatches() {
    let calls = Calls::default();
    let router = full_router(&calls);
    assert!(router.handles(EventKind::MessageCreated));
    assert!(router.handles(EventKind::Unknown));
    assert!(!router.handles(EventKind::TicketCreated));
    assert!(fallback_router(&calls).handles(EventKind::TicketCreated));
    let debug = format!("{router:?}");
    assert!(debug.contains("MessageCreated") && debug.contains("fallback: false"), "{debug}");

    let mut clone = router.clone();
    std::future::poll_fn(|cx| Service::<Request<()>>::poll_ready(&mut clone, cx)).await.expect("ready");
    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert(WebhookEvent::decode(fixture("note.created.envelope.json")).expect("decodes"));
    let response = clone.call(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.one().handler, "note_created");
}
