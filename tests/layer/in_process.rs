//! What does not cross HTTP: the `Rejection` in response extensions, and `poll_ready`.

use std::convert::Infallible;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use periskope_webhook::signature::SignatureError;
use periskope_webhook::testing::signed_request_for_body;
use periskope_webhook::{EventKind, IgnoredEvent, KindSet, PeriskopeWebhookLayer, Rejection};
use tower::limit::ConcurrencyLimit;
use tower::{Layer, Service, ServiceExt, service_fn};

use crate::over_http::custom_responder;
use crate::support::{KEY, OTHER_KEY, PATH, fixture, message, message_of_len, within};

type Req = Request<Full<Bytes>>;

async fn inner(request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = request.into_body().collect().await.unwrap().to_bytes();
    Ok(Response::new(Full::new(body)))
}

fn post(body: impl Into<Bytes>) -> Req {
    Request::builder().method(Method::POST).uri(PATH).body(Full::new(body.into())).unwrap()
}

fn signed(key: &str, body: impl Into<Bytes>) -> Req {
    signed_request_for_body(key, PATH, body)
}

async fn body_text<B: http_body::Body>(response: Response<B>) -> String
where
    B::Error: std::fmt::Debug,
{
    String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn custom_responder_response_carries_the_rejection() {
    let layer = PeriskopeWebhookLayer::new(KEY).body_limit(1024).on_rejection(custom_responder);
    let service = layer.layer(service_fn(inner));
    let body = message("under the limit");
    let mut get = post(Bytes::new());
    *get.method_mut() = Method::GET;

    let cases: Vec<(Req, Rejection)> = vec![
        (post(body.clone()), Rejection::Signature(SignatureError::Missing)),
        (signed(OTHER_KEY, body.clone()), Rejection::Signature(SignatureError::Mismatch)),
        (signed(KEY, message_of_len(1025)), Rejection::PayloadTooLarge { limit: 1024 }),
        (get, Rejection::MethodNotAllowed),
    ];
    for (request, expected) in cases {
        let response = within("oneshot", service.clone().oneshot(request)).await.unwrap();
        assert_eq!(response.status(), expected.status());
        assert_eq!(response.extensions().get::<Rejection>(), Some(&expected));
        assert_eq!(response.headers()["x-custom-rejection"], "1");
        let text = body_text(response).await;
        assert!(text.contains(&format!("custom.{}", expected.code())), "{text}");
    }

    let response = within("oneshot", service.clone().oneshot(signed(KEY, body.clone()))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.extensions().get::<Rejection>().is_none());
    assert_eq!(body_text(response).await.as_bytes(), &body[..], "the inner service replied");
}

#[tokio::test]
async fn default_responder_also_carries_the_rejection_and_ignored_events_are_marked() {
    let tickets: KindSet = [EventKind::TicketCreated].into_iter().collect();
    let service = PeriskopeWebhookLayer::new(KEY).filter_events(tickets).layer(service_fn(inner));

    let malformed = Bytes::from_static(b"{\"event\":");
    let response = within("oneshot", service.clone().oneshot(signed(KEY, malformed))).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let rejection = response.extensions().get::<Rejection>().expect("Rejection extension");
    assert!(matches!(rejection, Rejection::Decode(_)), "{rejection:?}");
    assert_eq!(rejection.code(), "malformed_json");

    let message = fixture("message.created.envelope.json");
    let response = within("oneshot", service.clone().oneshot(signed(KEY, message))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.extensions().get::<IgnoredEvent>(), Some(&IgnoredEvent(EventKind::MessageCreated)));
    assert!(response.extensions().get::<Rejection>().is_none());
    assert!(body_text(response).await.contains("event_ignored"));
}

fn poll_ready_now<S: Service<Req>>(service: &mut S) -> Poll<Result<(), S::Error>> {
    service.poll_ready(&mut Context::from_waker(Waker::noop()))
}

/// A service that is never ready, or fails to become ready.
#[derive(Clone)]
struct NotReady {
    fail: bool,
}

impl Service<Request<Full<Bytes>>> for NotReady {
    type Response = Response<Full<Bytes>>;
    type Error = &'static str;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.fail { Poll::Ready(Err("inner failed")) } else { Poll::Pending }
    }

    fn call(&mut self, _request: Request<Full<Bytes>>) -> Self::Future {
        panic!("called without being ready")
    }
}

#[test]
fn poll_ready_is_forwarded() {
    let mut pending = PeriskopeWebhookLayer::new(KEY).layer(NotReady { fail: false });
    assert!(poll_ready_now(&mut pending).is_pending());

    let mut failing = PeriskopeWebhookLayer::new(KEY).layer(NotReady { fail: true });
    assert!(matches!(poll_ready_now(&mut failing), Poll::Ready(Err("inner failed"))));
}

#[tokio::test]
async fn readiness_of_a_concurrency_limit_is_respected() {
    let limited = ConcurrencyLimit::new(service_fn(inner), 1);
    let mut service = PeriskopeWebhookLayer::new(KEY).layer(limited);
    let body = fixture("reaction.created.envelope.json");

    assert!(matches!(poll_ready_now(&mut service), Poll::Ready(Ok(()))));
    // The call holds the only permit until its future completes or is dropped.
    let first = service.call(signed(KEY, body.clone()));
    assert!(poll_ready_now(&mut service).is_pending(), "no permit left while a call is in flight");

    // The service that took the permit is the one called: ConcurrencyLimit panics otherwise.
    let response = within("first call", first).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response).await.as_bytes(), &body[..]);

    within("ready again", ServiceExt::<Req>::ready(&mut service)).await.unwrap();
    let second = service.call(signed(KEY, body.clone()));
    assert!(poll_ready_now(&mut service).is_pending());
    drop(second);
    within("ready after drop", ServiceExt::<Req>::ready(&mut service)).await.unwrap();

    // A request refused before reading does not consume the permit.
    let mut get = post(Bytes::new());
    *get.method_mut() = Method::GET;
    let response = within("refused", service.call(get)).await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(matches!(poll_ready_now(&mut service), Poll::Ready(Ok(()))));
    let response = within("after refusal", service.call(signed(KEY, body.clone()))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// A known event whose `data` is a JSON array does not fit its type (an object), so it must be
/// forwarded as `Undecodable` by default and refused with 422 in strict mode.
///
/// KNOWN BUG (src, decoder): serde's derived `Deserialize` also accepts a sequence for a struct,
/// filling its fields by position, so `"data":["chat-1","hello"]` arrives as a *typed*
/// `MessageCreated` with `message_id = "chat-1"` and `org_id = "hello"` (and `"data":[]` as an
/// empty typed object), and strict mode lets it through with 200.
#[tokio::test]
async fn array_data_is_undecodable_not_typed() {
    let bodies = [
        Bytes::from_static(br#"{"event":"message.created","data":["chat-1","hello"]}"#),
        Bytes::from_static(br#"{"event":"ticket.created","data":[]}"#),
    ];
    for body in bodies {
        let lenient =
            PeriskopeWebhookLayer::new(KEY).layer(service_fn(|request: Request<Full<Bytes>>| async move {
                let event = request.extensions().get::<periskope_webhook::WebhookEvent>().unwrap();
                let typed = event.event().is_typed();
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!("typed={typed}")))))
            }));
        let response = within("lenient", lenient.oneshot(signed(KEY, body.clone()))).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_text(response).await, "typed=false", "{body:?} must be forwarded as Undecodable");

        let strict = PeriskopeWebhookLayer::new(KEY).strict(true).layer(service_fn(inner));
        let response = within("strict", strict.oneshot(signed(KEY, body.clone()))).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body:?} in strict mode");
    }
}
