//! De-duplication through the middleware: duplicates answered without the handler, failures
//! retried, concurrent copies held off, pass-through marking, and a pluggable async store.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::Full;
use periskope_webhook::dedup::{Claim, Dedup, DedupKey, DedupStore, EventKeys, MemoryStore};
use periskope_webhook::{DeliveryMetadata, DuplicateDelivery, PeriskopeWebhookLayer, Rejection, testing};
use tokio::sync::Notify;
use tower::{Layer, ServiceExt, service_fn};

const KEY: &str = "peri_dedup-test-key";

fn store() -> MemoryStore {
    MemoryStore::new(1000, Duration::from_secs(60))
}

fn delivery(message_id: &str, org_phone: &str) -> Request<Full<Bytes>> {
    let body = format!(
        r#"{{"event":"message.created","data":{{"message_id":"{message_id}","org_phone":"{org_phone}","body":"hi"}},"org_id":"o"}}"#
    );
    testing::signed_request_for_body(KEY, "/webhooks/periskope", body)
}

/// A handler answering `status`, counting its calls and recording the metadata it saw.
#[derive(Clone, Default)]
struct Handler {
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<DeliveryMetadata>>>,
}

impl Handler {
    fn service(
        &self,
        status: StatusCode,
    ) -> impl tower::Service<
        Request<Full<Bytes>>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
    > + Clone {
        let handler = self.clone();
        service_fn(move |request: Request<Full<Bytes>>| {
            let handler = handler.clone();
            async move {
                handler.calls.fetch_add(1, Ordering::SeqCst);
                let metadata = request.extensions().get::<DeliveryMetadata>().cloned().expect("metadata");
                handler.seen.lock().unwrap().push(metadata);
                let mut response = Response::new(Full::<Bytes>::from("handled"));
                *response.status_mut() = status;
                Ok::<_, Infallible>(response)
            }
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn code_of<B: http_body::Body<Data = Bytes>>(response: Response<B>) -> String
where
    B::Error: std::fmt::Debug,
{
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    json["code"].as_str().unwrap_or("").to_owned()
}

#[tokio::test]
async fn a_repeated_delivery_is_answered_without_the_handler() {
    let handler = Handler::default();
    let service = PeriskopeWebhookLayer::new(KEY)
        .deduplicate(Dedup::new(store()))
        .layer(handler.service(StatusCode::OK));

    let first = service.clone().oneshot(delivery("m1", "a@c.us")).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(handler.calls(), 1);

    let again = service.clone().oneshot(delivery("m1", "a@c.us")).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.extensions().get::<DuplicateDelivery>(), Some(&DuplicateDelivery));
    assert_eq!(code_of(again).await, "duplicate");
    assert_eq!(handler.calls(), 1, "the duplicate never reached the handler");

    let other = service.oneshot(delivery("m2", "a@c.us")).await.unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(handler.calls(), 2);
}

#[tokio::test]
async fn one_copy_per_group_message_unless_keys_are_per_phone() {
    let handler = Handler::default();
    let service = PeriskopeWebhookLayer::new(KEY)
        .deduplicate(Dedup::new(store()))
        .layer(handler.service(StatusCode::OK));
    for phone in ["a@c.us", "b@c.us", "c@c.us"] {
        assert_eq!(service.clone().oneshot(delivery("g1", phone)).await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(handler.calls(), 1, "one copy of a message delivered through three org phones");

    let handler = Handler::default();
    let per_phone = Dedup::new(store()).keys(EventKeys::per_phone());
    let service =
        PeriskopeWebhookLayer::new(KEY).deduplicate(per_phone).layer(handler.service(StatusCode::OK));
    for phone in ["a@c.us", "b@c.us", "a@c.us"] {
        service.clone().oneshot(delivery("g1", phone)).await.unwrap();
    }
    assert_eq!(handler.calls(), 2, "one copy per org phone");
}

#[tokio::test]
async fn a_failed_delivery_is_handled_again_when_retried() {
    let handler = Handler::default();
    let store = store();
    let failing = PeriskopeWebhookLayer::new(KEY)
        .deduplicate(Dedup::new(store.clone()))
        .layer(handler.service(StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(
        failing.oneshot(delivery("m1", "a@c.us")).await.unwrap().status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert!(store.is_empty(), "the claim was released");

    let working = PeriskopeWebhookLayer::new(KEY)
        .deduplicate(Dedup::new(store.clone()))
        .layer(handler.service(StatusCode::OK));
    assert_eq!(working.clone().oneshot(delivery("m1", "a@c.us")).await.unwrap().status(), StatusCode::OK);
    assert_eq!(handler.calls(), 2, "the retry reached the handler");
    assert_eq!(code_of(working.oneshot(delivery("m1", "a@c.us")).await.unwrap()).await, "duplicate");
    assert_eq!(handler.calls(), 2);
}

#[tokio::test]
async fn pass_through_forwards_duplicates_marked() {
    let handler = Handler::default();
    let policy = Dedup::new(store()).pass_through(true);
    let service = PeriskopeWebhookLayer::new(KEY).deduplicate(policy).layer(handler.service(StatusCode::OK));
    for _ in 0..2 {
        assert_eq!(service.clone().oneshot(delivery("m1", "a@c.us")).await.unwrap().status(), StatusCode::OK);
    }
    let seen = handler.seen.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|metadata| metadata.duplicate).collect::<Vec<_>>(), [false, true]);
}

#[tokio::test]
async fn a_copy_arriving_while_the_first_is_handled_gets_409_over_http() {
    let release = Arc::new(Notify::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let app = {
        let (release, calls) = (release.clone(), calls.clone());
        Router::new()
            .route(
                "/webhooks/periskope",
                post(move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    release.notified().await;
                    "handled"
                }),
            )
            .layer(PeriskopeWebhookLayer::new(KEY).deduplicate(Dedup::new(store())))
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/periskope", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let send = |client: hyper_util::client::legacy::Client<_, http_body_util::Full<Bytes>>| {
        let url = url.clone();
        async move {
            let request: Request<Bytes> = delivery_bytes("m1");
            let (mut parts, body) = request.into_parts();
            parts.uri = url.parse().unwrap();
            let response =
                client.request(Request::from_parts(parts, http_body_util::Full::new(body))).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<serde_json::Value>(&body).ok())
        }
    };

    let first = tokio::spawn(send(client.clone()));
    tokio::time::timeout(Duration::from_secs(5), async {
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first delivery reached the handler");

    let (status, body) = tokio::time::timeout(Duration::from_secs(5), send(client.clone())).await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body.unwrap()["code"], "duplicate_in_flight");

    release.notify_one();
    let (status, _) = tokio::time::timeout(Duration::from_secs(5), first).await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK);

    let (status, body) = tokio::time::timeout(Duration::from_secs(5), send(client)).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.unwrap()["code"], "duplicate");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    server.abort();
}

fn delivery_bytes(message_id: &str) -> Request<Bytes> {
    let body = format!(r#"{{"event":"message.created","data":{{"message_id":"{message_id}"}}}}"#);
    testing::signed_request_for_body(KEY, "/webhooks/periskope", body)
}

/// A store that answers asynchronously, as one over the network would, and records its calls.
#[derive(Clone, Default)]
struct SlowStore {
    log: Arc<Mutex<Vec<String>>>,
    memory: Arc<Mutex<std::collections::HashSet<DedupKey>>>,
}

impl DedupStore for SlowStore {
    type ClaimFuture = Pin<Box<dyn Future<Output = Claim> + Send>>;
    type SettleFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn claim(&self, key: &DedupKey) -> Self::ClaimFuture {
        let (store, key) = (self.clone(), key.clone());
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            store.log.lock().unwrap().push(format!("claim {key}"));
            if store.memory.lock().unwrap().contains(&key) { Claim::Delivered } else { Claim::New }
        })
    }

    fn settle(&self, key: DedupKey, delivered: bool) -> Self::SettleFuture {
        let store = self.clone();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            store.log.lock().unwrap().push(format!("settle {key} {delivered}"));
            if delivered {
                store.memory.lock().unwrap().insert(key);
            }
        })
    }
}

#[tokio::test]
async fn a_custom_asynchronous_store_plugs_in() {
    let handler = Handler::default();
    let store = SlowStore::default();
    let service = PeriskopeWebhookLayer::new(KEY)
        .deduplicate(Dedup::new(store.clone()))
        .layer(handler.service(StatusCode::OK));
    assert_eq!(service.clone().oneshot(delivery("m9", "a@c.us")).await.unwrap().status(), StatusCode::OK);
    let second = service.oneshot(delivery("m9", "a@c.us")).await.unwrap();
    assert_eq!(code_of(second).await, "duplicate");
    assert_eq!(handler.calls(), 1);
    assert_eq!(
        *store.log.lock().unwrap(),
        ["claim message.created|m9", "settle message.created|m9 true", "claim message.created|m9"]
    );
}

#[tokio::test]
async fn rejections_do_not_touch_the_store() {
    let handler = Handler::default();
    let store = store();
    let service = PeriskopeWebhookLayer::new(KEY)
        .deduplicate(Dedup::new(store.clone()))
        .layer(handler.service(StatusCode::OK));
    let mut forged = delivery("m1", "a@c.us");
    forged.headers_mut().insert("x-periskope-signature", "0".repeat(64).parse().unwrap());
    let response = service.oneshot(forged).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.extensions().get::<Rejection>().is_some());
    assert!(store.is_empty());
    assert_eq!(handler.calls(), 0);
}
