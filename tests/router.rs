//! `EventRouter` behind `PeriskopeWebhookLayer`, over real HTTP on 127.0.0.1, served by hyper 1
//! (hyper-util) and by axum 0.8 (`route_service`): each event reaches the handler named for
//! its kind, and every outcome gets its documented status and code.
//!
//! Each case is written once against a [`Stack`] and instantiated for both by `for_each_stack!`.

use std::convert::Infallible;
use std::error::Error;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use periskope_webhook::router::HandlerError;
use periskope_webhook::testing::signed_request_for_body;
use periskope_webhook::{EventKind, EventRouter, PeriskopeWebhookLayer, WebhookEvent};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tower::{Layer, Service, ServiceExt};

const KEY: &str = "peri_ea194594-c433-4ea7-8c94-af9e63c5df47";
const PATH: &str = "/webhooks/periskope";
const STEP: Duration = Duration::from_secs(5);
/// What the failing handler returns; it must never reach a response body.
const SECRET: &str = "db password hunter2 rejected";

fn fixture(name: &str) -> Bytes {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    Bytes::from(std::fs::read(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display())))
}

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
            calls.record("unknown", &event, event.raw_data().map(|raw| raw.get()));
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
// The stacks

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stack {
    /// hyper 1 via hyper-util's auto builder, the layer around the router.
    Hyper,
    /// axum 0.8: `Router::route_service(PATH, layer.layer(router))`.
    Axum,
}

struct Server {
    url: String,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` at [`PATH`] on `stack`, behind the layer when `layered`.
async fn start(stack: Stack, router: EventRouter, layered: bool) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let layer = PeriskopeWebhookLayer::new(KEY);
    let task = match (stack, layered) {
        (Stack::Hyper, true) => serve_hyper(listener, layer.layer(router)),
        (Stack::Hyper, false) => serve_hyper(listener, router),
        (Stack::Axum, true) => {
            serve_axum(listener, axum::Router::new().route_service(PATH, layer.layer(router)))
        }
        (Stack::Axum, false) => serve_axum(listener, axum::Router::new().route_service(PATH, router)),
    };
    Server { url: url(addr), task }
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}{PATH}")
}

fn serve_axum(listener: TcpListener, app: axum::Router) -> JoinHandle<()> {
    tokio::spawn(async move { axum::serve(listener, app).await.expect("axum serves") })
}

fn serve_hyper<S, B>(listener: TcpListener, service: S) -> JoinHandle<()>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    tokio::spawn(async move {
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let mut connections = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let service = TowerToHyperService::new(service.clone());
            let builder = builder.clone();
            connections.spawn(async move {
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The client side

struct Reply {
    status: StatusCode,
    body: String,
    json: Value,
}

impl Reply {
    #[track_caller]
    fn assert(&self, status: StatusCode, code: &str) {
        assert_eq!((self.status, self.json["code"].as_str()), (status, Some(code)), "{}", self.body);
    }
}

async fn post(url: &str, body: impl Into<Bytes>) -> Reply {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request: Request<Full<Bytes>> = signed_request_for_body(KEY, url, body);
    let response =
        tokio::time::timeout(STEP, client.request(request)).await.expect("in time").expect("reply");
    let status = response.status();
    let body = tokio::time::timeout(STEP, response.into_body().collect())
        .await
        .expect("in time")
        .expect("body")
        .to_bytes();
    let body = String::from_utf8(body.to_vec()).expect("UTF-8");
    let json = serde_json::from_str(&body).unwrap_or_else(|error| panic!("JSON reply ({error}): {body:?}"));
    Reply { status, body, json }
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
    assert!(!reply.body.contains("hunter2") && !reply.body.contains("password"), "leaked: {}", reply.body);
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
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let forged: Request<Full<Bytes>> =
        signed_request_for_body("peri_another-key", &server.url, fixture("message.created.envelope.json"));
    let response = tokio::time::timeout(STEP, client.request(forged)).await.expect("in time").expect("reply");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    calls.none();
}

async fn without_the_layer_the_router_is_misconfigured(stack: Stack) {
    let calls = Calls::default();
    let server = start(stack, full_router(&calls), false).await;
    let reply = post(&server.url, fixture("message.created.envelope.json")).await;
    reply.assert(StatusCode::INTERNAL_SERVER_ERROR, "periskope_layer_missing");
    assert!(reply.json["message"].as_str().is_some_and(|message| message.contains("misconfiguration")));
    calls.none();
}

macro_rules! for_each_stack {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::Stack;

            async fn run(stack: Stack) {
                tokio::time::timeout(std::time::Duration::from_secs(20), super::$case(stack))
                    .await
                    .unwrap_or_else(|_| panic!("{stack:?}: case timed out"));
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn hyper() {
                run(Stack::Hyper).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn axum() {
                run(Stack::Axum).await
            }
        }
    )*};
}

for_each_stack!(
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
